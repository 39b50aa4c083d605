/*
 * shm_error_suite: the one error table (shm/shm_error.h) and the error
 * context.  Every code has a name, a message and a producer: some source
 * outside the table and the tests returns or sets it (a code nothing can
 * return is a lie in the contract).  The context helpers build one line
 * from the innermost failure outwards and never overrun.
 */
#include "tests/shmex_test.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "shm/shm_error.h"

START_TEST(every_code_has_a_name_and_a_message)
{
	for (int i = 0; i < SHMEX_ERR_COUNT; i++) {
		int code = shmex_err_at(i);
		ck_assert(shmex_err_is_valid(code));
		const char *name = shmex_errname(code), *msg = shmex_strerror(code);
		ck_assert_msg(!strncmp(name, "SHMEX_E", 7), "code %d: name %s", code,
			      name);
		ck_assert_msg(msg && strlen(msg) > 3, "%s: no message", name);
		ck_assert_str_ne(msg, "Unknown error");
		for (int j = 0; j < i; j++)
			ck_assert_str_ne(name, shmex_errname(shmex_err_at(j)));
	}
	ck_assert(!shmex_err_is_valid(shmex_err_at(SHMEX_ERR_COUNT)));
	ck_assert(!shmex_err_is_valid(0));
	ck_assert_str_eq(shmex_errname(-ENOENT), "ENOENT");
	ck_assert_str_eq(shmex_strerror(-ENOENT), strerror(ENOENT));
}
END_TEST

/* Appends every regular .c file below dir (recursively) to buf. */
static void slurp_tree(const char *dir, char **buf, size_t *len, size_t *cap)
{
	DIR *d = opendir(dir);
	ck_assert_msg(d != NULL, "%s: %s", dir, strerror(errno));
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		char path[1024];
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		struct stat st;
		if (stat(path, &st) != 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			if (strcmp(e->d_name, "third_party") != 0)
				slurp_tree(path, buf, len, cap);
			continue;
		}
		size_t n = strlen(e->d_name);
		if (n < 3 || strcmp(e->d_name + n - 2, ".c") != 0 ||
		    strcmp(e->d_name, "shm_error.c") == 0)
			continue;
		FILE *f = fopen(path, "r");
		ck_assert_ptr_nonnull(f);
		if (*len + (size_t)st.st_size + 2 > *cap) {
			*cap = (*len + (size_t)st.st_size + 2) * 2;
			*buf = realloc(*buf, *cap);
			ck_assert_ptr_nonnull(*buf);
		}
		*len += fread(*buf + *len, 1, (size_t)st.st_size, f);
		(*buf)[(*len)++] = '\n';
		(*buf)[*len] = 0;
		fclose(f);
	}
	closedir(d);
}

/* Some source of a process (shm/, engine/, gateway/, tests excluded) names
 * the code other than in a comparison or a lookup table. */
START_TEST(every_code_has_a_producer)
{
	const char *src = getenv("SHMEX_SRC_DIR");
	ck_assert_msg(src != NULL, "SHMEX_SRC_DIR is not set (make check sets it)");
	char *buf = NULL;
	size_t len = 0, cap = 0;
	const char *dirs[] = {"shm", "engine", "gateway"};
	for (size_t i = 0; i < 3; i++) {
		char d[1024];
		snprintf(d, sizeof(d), "%s/%s", src, dirs[i]);
		slurp_tree(d, &buf, &len, &cap);
	}
	ck_assert_uint_gt(len, 10000);
	for (int i = 0; i < SHMEX_ERR_COUNT; i++) {
		const char *name = shmex_errname(shmex_err_at(i));
		size_t nl = strlen(name);
		bool produced = false;
		for (const char *p = buf; (p = strstr(p, name)) != NULL; p += nl) {
			char next = p[nl];
			if ((next >= 'A' && next <= 'Z') || next == '_' ||
			    (next >= '0' && next <= '9'))
				continue; /* a longer name */
			/* Anything but a comparison (==, !=, case) or an entry
			 * of a lookup table ({SHMEX_..., "text"}) produces it:
			 * a return, an assignment, an argument. */
			const char *q = p;
			while (q > buf &&
			       (q[-1] == ' ' || q[-1] == '\t' || q[-1] == '\n'))
				q--;
			bool compared = (q - buf >= 2 && (!strncmp(q - 2, "==", 2) ||
							  !strncmp(q - 2, "!=", 2))) ||
					(q - buf >= 4 && !strncmp(q - 4, "case", 4));
			bool table = q > buf && q[-1] == '{';
			produced = !compared && !table;
			if (produced)
				break;
		}
		ck_assert_msg(produced,
			      "%s: nothing in shm/, engine/ or gateway/ returns "
			      "or sets it",
			      name);
	}
	free(buf);
}
END_TEST

START_TEST(context_is_set_then_wrapped)
{
	struct shmex_error e = {0};
	ck_assert_str_eq(shmex_error_msg(&e, SHMEX_ENOFUNDS),
			 shmex_strerror(SHMEX_ENOFUNDS));
	ck_assert_int_eq(shmex_error_set(&e, -ENOENT, "shm_open %s: %s",
					 "/shmex.x.book.0", strerror(ENOENT)),
			 -ENOENT);
	ck_assert_int_eq(shmex_error_wrap(&e, -ENOENT, "shard %u", 0), -ENOENT);
	ck_assert_str_eq(shmex_error_msg(&e, -ENOENT),
			 "shard 0: shm_open /shmex.x.book.0: No such file or directory");
	/* Wrapping an empty context uses the code's text. */
	shmex_error_clear(&e);
	shmex_error_wrap(&e, SHMEX_EBOOKFULL, "order 7");
	ck_assert_str_eq(e.msg, "order 7: Book full");
	/* NULL is allowed and only passes the code through. */
	ck_assert_int_eq(shmex_error_set(NULL, SHMEX_EBUSY, "x"), SHMEX_EBUSY);
	ck_assert_int_eq(shmex_error_wrap(NULL, SHMEX_EBUSY, "x"), SHMEX_EBUSY);
	/* Long context is cut at the buffer, never past it. */
	char big[2 * SHMEX_ERROR_MAX];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	for (int i = 0; i < 4; i++)
		shmex_error_wrap(&e, -EIO, "%s", big);
	ck_assert_uint_eq(strlen(e.msg), SHMEX_ERROR_MAX - 1);
}
END_TEST

static Suite *shm_error_suite(void)
{
	Suite *s = suite_create("shm_error");
	TCase *tc = tcase_create("table");
	tcase_add_test(tc, every_code_has_a_name_and_a_message);
	tcase_add_test(tc, every_code_has_a_producer);
	tcase_add_test(tc, context_is_set_then_wrapped);
	suite_add_tcase(s, tc);
	return s;
}

SHMEX_TEST_MAIN(shm_error_suite)

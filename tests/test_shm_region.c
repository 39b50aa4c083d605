/*
 * shm_region_suite: creating, attaching, validating and removing regions.
 */
#include "tests/shmex_test.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <stdio.h>
#include <unistd.h>

#include "shm/shm_error.h"
#include "shm/shm_proc.h"
#include "shm/shm_region.h"

static char inst[64];

static void setup(void)
{
	test_instance(inst, sizeof(inst));
}

static void teardown(void)
{
	test_cleanup_instance(inst);
}

static void make_ready(struct shm_region *r, const char *region, size_t body)
{
	uint64_t caps[2] = {7, 9};
	int rc = shm_region_create(r, inst, region, SHM_KIND_TEST, body, caps, 2, 0640);
	ck_assert_msg(rc == 0, "create: %s", r->err.msg);
	memset(shm_region_body(r), 0xab, body);
	shm_region_publish(r);
}

START_TEST(create_attach_roundtrip)
{
	struct shm_region w, r;
	make_ready(&w, "t", 4096);
	ck_assert_int_eq(shm_region_attach(&r, inst, "t", SHM_KIND_TEST, SHM_RDONLY), 0);
	ck_assert(!r.writable);
	ck_assert_uint_eq(shm_region_body_size(&r), 4096);
	ck_assert_uint_eq(shm_region_hdr(&r)->capacity[0], 7);
	ck_assert_uint_eq(shm_region_hdr(&r)->capacity[1], 9);
	ck_assert_int_eq(shm_region_hdr(&r)->creator_pid, getpid());
	ck_assert_uint_eq(((unsigned char *)shm_region_body(&r))[4095], 0xab);
	char name[128];
	ck_assert_int_eq(shm_name_format(name, sizeof(name), inst, "t"), 0);
	ck_assert_str_eq(r.name, name);
	shm_region_detach(&r);
	shm_region_detach(&w);
	ck_assert_int_eq(shm_region_unlink(inst, "t"), 0);
	ck_assert_int_eq(test_count_objects(inst), 0);
}
END_TEST

START_TEST(create_is_exclusive_with_mode)
{
	struct shm_region w, w2;
	/* A umask that would narrow 0640 to 0600 without the fchmod. */
	mode_t old_mask = umask(077);
	make_ready(&w, "t", 64);
	umask(old_mask);
	ck_assert_int_eq(
		shm_region_create(&w2, inst, "t", SHM_KIND_TEST, 64, NULL, 0, 0600),
		-EEXIST);
	ck_assert_ptr_nonnull(strstr(w2.err.msg, "shm_open /shmex."));
	ck_assert_ptr_nonnull(strstr(w2.err.msg, "File exists"));
	/* fchmod after umask: the mode is exactly what was asked for. */
	char path[256];
	snprintf(path, sizeof(path), "/dev/shm%s", w.name);
	struct stat st;
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0640);
	shm_region_detach(&w);
}
END_TEST

START_TEST(bad_names_rejected)
{
	struct shm_region r;
	ck_assert_int_eq(shm_region_attach(&r, "bad/name", "t", 0, SHM_RDONLY),
			 SHMEX_EBADNAME);
	ck_assert_int_eq(shm_region_attach(&r, "", "t", 0, SHM_RDONLY), SHMEX_EBADNAME);
	ck_assert_int_eq(shm_region_attach(&r, inst, "UPPER", 0, SHM_RDONLY),
			 SHMEX_EBADNAME);
	ck_assert_int_eq(shm_region_create(&r, "a b", "t", 0, 64, NULL, 0, 0600),
			 SHMEX_EBADNAME);
}
END_TEST

START_TEST(missing_region_names_object)
{
	struct shm_region r;
	ck_assert_int_eq(shm_region_attach(&r, inst, "nothere", 0, SHM_RDONLY), -ENOENT);
	ck_assert_ptr_nonnull(strstr(r.err.msg, "nothere: No such file or directory"));
}
END_TEST

/* Corrupts one header field of a ready region and checks the attach error. */
static int attach_after(void (*poke)(struct shm_region_hdr_sh *))
{
	struct shm_region w, r;
	make_ready(&w, "t", 256);
	poke(shm_region_hdr(&w));
	int rc = shm_region_attach(&r, inst, "t", SHM_KIND_TEST, SHM_RDONLY);
	if (rc == 0)
		shm_region_detach(&r);
	shm_region_detach(&w);
	return rc;
}

static void poke_magic(struct shm_region_hdr_sh *h)
{
	h->magic ^= 1;
}
static void poke_version(struct shm_region_hdr_sh *h)
{
	h->version++;
}
static void poke_sig(struct shm_region_hdr_sh *h)
{
	h->signature ^= 0x10;
}
static void poke_state(struct shm_region_hdr_sh *h)
{
	h->state = SHM_STATE_CREATING;
}
static void poke_kind(struct shm_region_hdr_sh *h)
{
	h->kind = SHM_KIND_BOOK;
}
static void poke_size(struct shm_region_hdr_sh *h)
{
	h->size += 4096;
}

START_TEST(header_errors_are_distinct)
{
	ck_assert_int_eq(attach_after(poke_magic), SHMEX_EBADMAGIC);
	teardown();
	ck_assert_int_eq(attach_after(poke_version), SHMEX_EBADVERSION);
	teardown();
	ck_assert_int_eq(attach_after(poke_sig), SHMEX_EBADLAYOUT);
	teardown();
	ck_assert_int_eq(attach_after(poke_state), SHMEX_ENOTREADY);
	teardown();
	ck_assert_int_eq(attach_after(poke_kind), SHMEX_EBADKIND);
	teardown();
	ck_assert_int_eq(attach_after(poke_size), SHMEX_ETOOSHORT);
}
END_TEST

START_TEST(truncated_object)
{
	char name[128];
	ck_assert_int_eq(shm_name_format(name, sizeof(name), inst, "t"), 0);
	int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, 17), 0);
	close(fd);
	struct shm_region r;
	ck_assert_int_eq(shm_region_attach(&r, inst, "t", 0, SHM_RDONLY),
			 SHMEX_ETOOSHORT);
	/* An empty object (a creator that died before ftruncate) too. */
	fd = shm_open(name, O_RDWR | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(shm_region_attach(&r, inst, "t", 0, SHM_RDONLY),
			 SHMEX_ETOOSHORT);
}
END_TEST

START_TEST(readonly_mapping_cannot_be_written)
{
	struct shm_region w;
	make_ready(&w, "t", 4096);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct shm_region r;
		if (shm_region_attach(&r, inst, "t", SHM_KIND_TEST, SHM_RDONLY))
			_exit(3);
		/* Sanitizers catch SIGSEGV themselves; die the plain way. */
		signal(SIGSEGV, SIG_DFL);
		((volatile char *)shm_region_body(&r))[0] = 1; /* must fault */
		_exit(0);
	}
	int status = test_wait_pid(pid, 5000);
	ck_assert(WIFSIGNALED(status));
	ck_assert_int_eq(WTERMSIG(status), SIGSEGV);
	ck_assert_uint_eq(((unsigned char *)shm_region_body(&w))[0], 0xab);
	shm_region_detach(&w);
}
END_TEST

START_TEST(readwrite_attach_shares_memory)
{
	struct shm_region w;
	make_ready(&w, "t", 4096);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct shm_region r;
		if (shm_region_attach(&r, inst, "t", SHM_KIND_TEST, SHM_RDWR))
			_exit(3);
		((char *)shm_region_body(&r))[100] = 42;
		_exit(0);
	}
	int status = test_wait_pid(pid, 5000);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ck_assert_int_eq(((char *)shm_region_body(&w))[100], 42);
	shm_region_detach(&w);
}
END_TEST

START_TEST(two_instances_side_by_side)
{
	char other[64];
	test_instance(other, sizeof(other));
	struct shm_region a, b, ra, rb;
	make_ready(&a, "t", 64);
	ck_assert_int_eq(
		shm_region_create(&b, other, "t", SHM_KIND_TEST, 64, NULL, 0, 0600), 0);
	((char *)shm_region_body(&b))[0] = 5;
	shm_region_publish(&b);
	ck_assert_int_eq(shm_region_attach(&ra, inst, "t", 0, SHM_RDONLY), 0);
	ck_assert_int_eq(shm_region_attach(&rb, other, "t", 0, SHM_RDONLY), 0);
	ck_assert_uint_eq(((unsigned char *)shm_region_body(&ra))[0], 0xab);
	ck_assert_int_eq(((char *)shm_region_body(&rb))[0], 5);
	shm_region_detach(&ra);
	shm_region_detach(&rb);
	shm_region_detach(&a);
	shm_region_detach(&b);
	ck_assert_int_eq(test_cleanup_instance(other), 1);
}
END_TEST

START_TEST(stale_region_detected_and_removed)
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct shm_region w;
		if (shm_region_create(&w, inst, "t", SHM_KIND_TEST, 64, NULL, 0, 0600))
			_exit(3);
		shm_region_publish(&w);
		_exit(0); /* dies without unlinking: a crashed run */
	}
	int status = test_wait_pid(pid, 5000);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	struct shm_region_info info;
	ck_assert_int_eq(shm_region_inspect(inst, "t", &info), 0);
	ck_assert_int_eq(info.creator_pid, pid);
	ck_assert(!info.creator_alive);
	ck_assert_int_eq(shm_region_remove_stale(inst, "t"), 0);
	ck_assert_int_eq(test_count_objects(inst), 0);

	/* A live creator's region is kept. */
	struct shm_region w;
	make_ready(&w, "t", 64);
	ck_assert_int_eq(shm_region_remove_stale(inst, "t"), SHMEX_EINUSE);
	ck_assert_int_eq(test_count_objects(inst), 1);
	shm_region_detach(&w);
}
END_TEST

/* An object of another user (or one we may not read) is never our
 * leftover, whatever its header says: it is refused and left alone
 * (before: an unreadable object was unlinked as a leftover, and a
 * squatter's object with a live pid of its own blocked us as "in use"). */
START_TEST(foreign_object_is_refused_not_removed)
{
	struct shm_region w;
	make_ready(&w, "t", 64);
	char path[256];
	snprintf(path, sizeof(path), "/dev/shm/shmex.%s.t", inst);
	if (geteuid() == 0)
		ck_assert_int_eq(chown(path, 4242, 4242), 0);
	else
		ck_assert_int_eq(chmod(path, 0), 0);
	ck_assert_int_eq(shm_region_remove_stale(inst, "t"), SHMEX_EFOREIGN);
	ck_assert_int_eq(test_count_objects(inst), 1);
	shm_region_detach(&w);
	/* Detached: still refused while it is another user's. */
	ck_assert_int_eq(shm_region_remove_stale(inst, "t"), SHMEX_EFOREIGN);
	ck_assert_int_eq(test_count_objects(inst), 1);
	ck_assert_int_eq(unlink(path), 0);
}
END_TEST

/* Reads a whole file (NUL-terminated, heap). */
static char *read_all(const char *path)
{
	FILE *f = fopen(path, "r");
	ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	size_t got = fread(buf, 1, (size_t)n, f);
	buf[got] = 0;
	fclose(f);
	return buf;
}

/* Blanks out C comments in place. */
static void strip_comments(char *s)
{
	for (char *p = s; *p; p++) {
		if (p[0] == '/' && p[1] == '*') {
			char *e = strstr(p + 2, "*"
						"/");
			char *end = e ? e + 2 : p + strlen(p);
			memset(p, ' ', (size_t)(end - p));
			p = end - 1;
		}
	}
}

/* Every field of every struct *_sh in the headers of shm/ is in the layout signature
 * (shm_layout_list.h, SHM_LAYOUT_FIELDS): before, only a few offsets were,
 * and two builds that swapped same-size fields attached to each other. */
START_TEST(every_shared_field_is_signed)
{
	const char *src = getenv("SHMEX_SRC_DIR");
	ck_assert_msg(src != NULL, "SHMEX_SRC_DIR is not set (make check sets it)");
	char path[1024];
	snprintf(path, sizeof(path), "%s/shm/shm_layout_list.h", src);
	char *list = read_all(path);
	snprintf(path, sizeof(path), "%s/shm", src);
	DIR *d = opendir(path);
	ck_assert_ptr_nonnull(d);
	int structs = 0, fields = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		size_t nl = strlen(e->d_name);
		if (nl < 3 || strcmp(e->d_name + nl - 2, ".h") != 0)
			continue;
		char hp[1200];
		snprintf(hp, sizeof(hp), "%s/%s", path, e->d_name);
		char *h = read_all(hp);
		strip_comments(h);
		for (char *p = h; (p = strstr(p, "\nstruct ")) != NULL;) {
			p += 8;
			char tag[64];
			int tl = 0;
			while ((isalnum((unsigned char)p[tl]) || p[tl] == '_') && tl < 63)
				tag[tl] = p[tl], tl++;
			tag[tl] = 0;
			if (tl < 4 || strcmp(tag + tl - 3, "_sh") ||
			    strncmp(p + tl, " {", 2))
				continue;
			structs++;
			char *body = p + tl + 2;
			char *end = strstr(body, "\n}");
			ck_assert_ptr_nonnull(end);
			/* Each declaration's names: the identifiers before ';' or
			 * ',' that are not inside brackets or parentheses. */
			for (char *q = body; q < end;) {
				char *semi = memchr(q, ';', (size_t)(end - q));
				if (!semi)
					break;
				char decl[512];
				size_t dl = (size_t)(semi - q) < sizeof(decl) - 1
						    ? (size_t)(semi - q)
						    : sizeof(decl) - 1;
				memcpy(decl, q, dl);
				decl[dl] = 0;
				q = semi + 1;
				/* Cut [..] and (..) and split on commas. */
				for (char *c = decl; *c; c++) {
					if (*c == '[' || *c == '(') {
						char close = *c == '[' ? ']' : ')';
						char *x = strchr(c, close);
						if (x)
							memset(c, ' ',
							       (size_t)(x - c + 1));
					}
				}
				char *save = NULL;
				bool first = true;
				for (char *part = strtok_r(decl, ",", &save); part;
				     part = strtok_r(NULL, ",", &save), first = false) {
					char *t = part + strlen(part);
					while (t > part &&
					       !isalnum((unsigned char)t[-1]) &&
					       t[-1] != '_')
						t--;
					char *b = t;
					while (b > part &&
					       (isalnum((unsigned char)b[-1]) ||
						b[-1] == '_'))
						b--;
					if (b == t || (first && b == part))
						continue; /* no name, or only a type word */
					char want[160];
					snprintf(want, sizeof(want), "F(%s, %.*s", tag,
						 (int)(t - b), b);
					char *hit = strstr(list, want);
					bool ok = false;
					for (; hit; hit = strstr(hit + 1, want)) {
						char nx = hit[strlen(want)];
						if (nx == ')' || nx == '[') {
							ok = true;
							break;
						}
					}
					ck_assert_msg(
						ok,
						"%s: field %.*s of struct %s is not in "
						"SHM_LAYOUT_FIELDS",
						e->d_name, (int)(t - b), b, tag);
					fields++;
				}
			}
		}
		free(h);
	}
	closedir(d);
	free(list);
	ck_assert_int_ge(structs, 20);
	ck_assert_int_ge(fields, 150);
}
END_TEST

START_TEST(proc_identity)
{
	uint64_t s;
	ck_assert_int_eq(shm_proc_start_time(getpid(), &s), 0);
	ck_assert_uint_eq(s, shm_proc_self_start());
	ck_assert(shm_proc_alive(getpid(), s));
	ck_assert(!shm_proc_alive(getpid(), s + 1));
	ck_assert(!shm_proc_alive(0, 0));
	/* The start time is stable while the process changes (it is not
	 * some other field of /proc/PID/stat, such as vsize). */
	void *big = mmap(NULL, 64 << 20, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	ck_assert_ptr_ne(big, MAP_FAILED);
	uint64_t s2;
	ck_assert_int_eq(shm_proc_start_time(getpid(), &s2), 0);
	ck_assert_uint_eq(s, s2);
	munmap(big, 64 << 20);
	/* pid 1 started no later than we did. */
	uint64_t s1;
	if (shm_proc_start_time(1, &s1) == 0)
		ck_assert_uint_le(s1, s);
}
END_TEST

START_TEST(zombie_is_not_alive)
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(0);
	uint64_t start = 0;
	/* Wait until the child has exited but is not reaped: a zombie. */
	for (int i = 0; i < 2000; i++) {
		char path[64], buf[256];
		snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
		FILE *f = fopen(path, "r");
		ck_assert_ptr_nonnull(f);
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = 0;
		char *p = strrchr(buf, ')');
		if (p && p[2] == 'Z')
			break;
		usleep(1000);
	}
	ck_assert_int_eq(shm_proc_start_time(pid, &start), 0);
	ck_assert(!shm_proc_alive(pid, start));
	ck_assert_int_eq(test_wait_pid(pid, 5000), 0);
}
END_TEST

START_TEST(error_table)
{
	ck_assert_str_eq(shmex_strerror(SHMEX_ENOFUNDS), "Insufficient funds");
	ck_assert_str_eq(shmex_errname(SHMEX_EBADMAGIC), "SHMEX_EBADMAGIC");
	ck_assert_str_eq(shmex_strerror(-ENOENT), "No such file or directory");
	ck_assert(shmex_err_is_valid(SHMEX_EINTERNAL));
	ck_assert(!shmex_err_is_valid(SHMEX_ERR_LAST_ - 1));
	ck_assert(!shmex_err_is_valid(-5));
	ck_assert_str_eq(shmex_strerror(12345), "Unknown error");
}
END_TEST

static Suite *shm_region_suite(void)
{
	Suite *s = suite_create("shm_region");
	TCase *tc = tcase_create("region");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, create_attach_roundtrip);
	tcase_add_test(tc, create_is_exclusive_with_mode);
	tcase_add_test(tc, bad_names_rejected);
	tcase_add_test(tc, missing_region_names_object);
	tcase_add_test(tc, header_errors_are_distinct);
	tcase_add_test(tc, truncated_object);
	tcase_add_test(tc, readonly_mapping_cannot_be_written);
	tcase_add_test(tc, readwrite_attach_shares_memory);
	tcase_add_test(tc, two_instances_side_by_side);
	tcase_add_test(tc, stale_region_detected_and_removed);
	tcase_add_test(tc, foreign_object_is_refused_not_removed);
	tcase_add_test(tc, every_shared_field_is_signed);
	tcase_add_test(tc, proc_identity);
	tcase_add_test(tc, zombie_is_not_alive);
	tcase_add_test(tc, error_table);
	suite_add_tcase(s, tc);
	return s;
}

SHMEX_TEST_MAIN(shm_region_suite)

/*
 * shm_history's reader against files it did not write: a record whose
 * fill count the file (or the shard's fill pool) cannot hold is refused
 * before anything is allocated for it, and a chain that does not go down
 * in generation ends with an error instead of looping.
 */
#include "tests/shmex_test.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shm/shm_history.h"
#include "shm/shm_shard.h"

#define CAP 64

static char dir[256];

/* One shard (0 of 1) whose slot 1 points at the record at offset 0. */
static void write_files(const struct shm_hist_rec *r, uint64_t entry1)
{
	snprintf(dir, sizeof(dir), "/tmp/shmex-test-hist-%d", (int)getpid());
	mkdir(dir, 0700);
	char p[300];
	snprintf(p, sizeof(p), "%s/%s", dir, SHM_HIST_SLOTS_FILE);
	int fd = open(p, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	ck_assert_int_ge(fd, 0);
	struct shm_hist_slots_hdr h = {.magic = SHM_HIST_SLOTS_MAGIC,
				       .version = SHM_HIST_VERSION,
				       .shard = 0,
				       .nshards = 1,
				       .cap_orders = CAP};
	uint64_t slots[CAP] = {0};
	slots[1] = entry1;
	ck_assert_int_eq(write(fd, &h, sizeof(h)), (ssize_t)sizeof(h));
	ck_assert_int_eq(write(fd, slots, sizeof(slots)), (ssize_t)sizeof(slots));
	close(fd);
	snprintf(p, sizeof(p), "%s/%s", dir, SHM_HIST_FILE);
	fd = open(p, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, r, sizeof(*r)), (ssize_t)sizeof(*r));
	close(fd);
}

static void remove_files(void)
{
	char p[300];
	snprintf(p, sizeof(p), "%s/%s", dir, SHM_HIST_SLOTS_FILE);
	unlink(p);
	snprintf(p, sizeof(p), "%s/%s", dir, SHM_HIST_FILE);
	unlink(p);
	rmdir(dir);
}

START_TEST(huge_fill_count_is_refused_before_allocating)
{
	/* Order (slot 1, gen 0) claiming 2^25 fills (1.5 GB), in a file of
	 * one header.  Under a 256 MB address-space limit an allocation of
	 * that size fails: the answer must still be "corrupt", not "out of
	 * memory". */
	struct shm_hist_rec r = {.magic = SHM_HIST_MAGIC,
				 .nfills = UINT32_C(1) << 25,
				 .id = shm_order_id_make(0, 1, 1, 0, CAP),
				 .gen = 0};
	write_files(&r, 1);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
#ifndef __SANITIZE_ADDRESS__ /* its shadow memory needs the address space */
		struct rlimit lim = {256u << 20, 256u << 20};
		setrlimit(RLIMIT_AS, &lim);
#endif
		struct shm_history h;
		struct shmex_error e = {0};
		if (shm_history_open(&h, dir, 0, 1, CAP, &e) != 0)
			_exit(10);
		struct shm_snap_order o;
		struct shm_snap_fill f[4];
		size_t nf;
		int rc = shm_history_find(&h, r.id, &o, f, 4, &nf, &e);
		shm_history_close(&h);
		_exit(rc == SHMEX_EJCORRUPT ? 0 : rc == -ENOMEM ? 11 : 12);
	}
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	remove_files();
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status 0x%x", st);
}
END_TEST

START_TEST(chain_that_does_not_descend_is_an_error)
{
	/* A record whose prev is itself, with a higher generation than the
	 * one asked for: a writer never makes it; the walk must stop. */
	struct shm_hist_rec r = {.magic = SHM_HIST_MAGIC,
				 .prev = 1,
				 .id = shm_order_id_make(0, 1, 1, 5, CAP),
				 .gen = 5};
	shm_hist_seal(&r, NULL);
	write_files(&r, 1);
	struct shm_history h;
	struct shmex_error e = {0};
	ck_assert_int_eq(shm_history_open(&h, dir, 0, 1, CAP, &e), 0);
	struct shm_snap_order o;
	size_t nf;
	int rc = shm_history_find(&h, shm_order_id_make(0, 1, 1, 2, CAP), &o, NULL, 0,
				  &nf, &e);
	shm_history_close(&h);
	remove_files();
	ck_assert_int_eq(rc, SHMEX_EJCORRUPT);
	ck_assert_msg(strstr(e.msg, "history of shard 0"), "%s", e.msg);
}
END_TEST

static Suite *history_suite(void)
{
	Suite *s = suite_create("shm_history");
	TCase *tc = tcase_create("bad_files");
	tcase_add_test(tc, huge_fill_count_is_refused_before_allocating);
	tcase_add_test(tc, chain_that_does_not_descend_is_an_error);
	suite_add_tcase(s, tc);
	return s;
}

SHMEX_TEST_MAIN(history_suite)

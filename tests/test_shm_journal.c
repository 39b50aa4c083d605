/*
 * shm_journal_suite: the on-disk contract (shm/shm_journal.h).  CRC32C
 * against its published check value, records sealed and checked, and the
 * reader on real files: a clean journal across segments, a torn tail (cut
 * at every byte of the last record), a corrupted record in the middle
 * (named by file and byte offset), a gap between segments, a segment of
 * another shard; and the data directory's lock (live: refused; stale:
 * taken over).
 */
#include "tests/shmex_test.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shm/shm_journal.h"

static char dir[256], sdir[300];

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/shmex-test-journal-%d", (int)getpid());
	struct shmex_error e = {0};
	ck_assert_int_eq(shm_journal_mkdirs(dir, &e), 0);
	ck_assert_int_eq(shm_journal_shard_dir(sdir, sizeof(sdir), dir, 0), 0);
	ck_assert_int_eq(shm_journal_mkdirs(sdir, &e), 0);
}

static void teardown(void)
{
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}

/* A segment of `n` ORDER records from `first`; returns its path. */
static const char *write_segment(uint32_t shard, uint64_t first, unsigned n,
				 size_t *offsets)
{
	static char path[400];
	snprintf(path, sizeof(path), "%s/journal-%016llx.log", sdir,
		 (unsigned long long)first);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0640);
	ck_assert_int_ge(fd, 0);
	struct shm_jseg_hdr h;
	shm_jseg_hdr_init(&h, shard, 2, first, 1);
	ck_assert_int_eq(write(fd, &h, sizeof(h)), sizeof(h));
	size_t off = sizeof(h);
	for (unsigned i = 0; i < n; i++) {
		struct shm_jrec r;
		memset(&r, 0, sizeof(r));
		r.h.seq = first + i;
		r.h.time_ns = 1000 + first + i;
		r.h.type = SHM_JREC_ORDER;
		r.h.shard = (uint16_t)shard;
		r.u.order.order_id = 2 * (first + i) + 1;
		r.u.order.qty = 10000;
		size_t len = shm_jrec_seal(&r);
		ck_assert_int_eq(write(fd, &r, len), (ssize_t)len);
		if (offsets)
			offsets[i] = off;
		off += len;
	}
	close(fd);
	return path;
}

/* Reads every record; returns how many, the final result in *end. */
static unsigned read_all(uint64_t from, int *end, struct shmex_error *e)
{
	struct shm_jreader r;
	ck_assert_int_eq(shm_jreader_open(&r, sdir, 0, 2, from, e), 0);
	struct shm_jrec rec;
	unsigned n = 0;
	int rc;
	uint64_t want = from ? from : 1;
	while ((rc = shm_jreader_next(&r, &rec, e)) == 1) {
		ck_assert_uint_eq(rec.h.seq, want);
		ck_assert_uint_eq(rec.u.order.order_id, 2 * want + 1);
		want++;
		n++;
	}
	*end = rc;
	shm_jreader_close(&r);
	return n;
}

START_TEST(crc32c_check_value)
{
	/* The CRC-32C check value of "123456789" (RFC 3720, iSCSI). */
	ck_assert_uint_eq(shm_crc32c(0, "123456789", 9), 0xe3069283u);
	/* Incremental equals one shot, at every split, hardware or not. */
	const char *s = "The quick brown fox jumps over the lazy dog, twice over.";
	uint32_t whole = shm_crc32c(0, s, strlen(s));
	for (size_t k = 0; k <= strlen(s); k++)
		ck_assert_uint_eq(shm_crc32c(shm_crc32c(0, s, k), s + k, strlen(s) - k),
				  whole);
}
END_TEST

START_TEST(records_seal_and_check)
{
	struct shm_jrec r;
	memset(&r, 0xaa, sizeof(r));
	r.h.seq = 7;
	r.h.time_ns = 9;
	r.h.type = SHM_JREC_FILL;
	r.h.shard = 1;
	size_t len = shm_jrec_seal(&r);
	ck_assert_uint_eq(len % 8, 0);
	ck_assert_uint_eq(len, SHM_JREC_HDR + sizeof(struct shm_jrec_fill));
	size_t got;
	ck_assert_int_eq(shm_jrec_check(&r, len, &got), 0);
	ck_assert_uint_eq(got, len);
	ck_assert_int_eq(shm_jrec_check(&r, len - 1, &got), SHMEX_EJTORN);
	ck_assert_int_eq(shm_jrec_check(&r, 10, &got), SHMEX_EJTORN);
	/* Any flipped bit after the CRC field is caught. */
	for (size_t i = 8; i < len; i++) {
		struct shm_jrec c = r;
		((uint8_t *)&c)[i] ^= 0x10;
		ck_assert_msg(shm_jrec_check(&c, len, &got) == SHMEX_EJCORRUPT,
			      "byte %zu", i);
	}
	r.h.type = 99;
	ck_assert_int_eq(shm_jrec_check(&r, len, &got), SHMEX_EJCORRUPT);
}
END_TEST

/* Snapshots are version 3 (128-bit positions); a version 2 one, sealed
 * correctly otherwise, is refused naming both versions.  Segments stay at
 * version 2. */
START_TEST(snapshot_of_version_2_is_refused)
{
	struct shm_jsnap_hdr h;
	memset(&h, 0, sizeof(h));
	shm_jsnap_hdr_seal(&h);
	struct shmex_error e = {0};
	ck_assert_int_eq(shm_jsnap_hdr_check(&h, &e), 0);
	ck_assert_uint_eq(h.version, 3);
	h.version = 2;
	h.hdr_crc = 0;
	h.hdr_crc = shm_crc32c(0, &h, sizeof(h));
	ck_assert_int_eq(shm_jsnap_hdr_check(&h, &e), SHMEX_EJCORRUPT);
	ck_assert_msg(strstr(e.msg, "snapshot version 2") && strstr(e.msg, "reads 3"),
		      "%s", e.msg);
	struct shm_jseg_hdr g;
	shm_jseg_hdr_init(&g, 0, 1, 1, 0);
	ck_assert_uint_eq(g.version, 2);
	ck_assert_int_eq(shm_jseg_hdr_check(&g, &e), 0);
}
END_TEST

START_TEST(clean_journal_across_segments)
{
	write_segment(0, 1, 100, NULL);
	write_segment(0, 101, 50, NULL);
	struct shmex_error e = {0};
	int end;
	ck_assert_uint_eq(read_all(0, &end, &e), 150);
	ck_assert_int_eq(end, 0);
	/* From a snapshot's point on. */
	ck_assert_uint_eq(read_all(120, &end, &e), 31);
	ck_assert_int_eq(end, 0);
}
END_TEST

START_TEST(torn_tail_is_detected_at_every_cut)
{
	size_t off[20];
	const char *path = write_segment(0, 1, 20, off);
	struct stat st;
	ck_assert_int_eq(stat(path, &st), 0);
	for (off_t cut = (off_t)off[19] + 1; cut < st.st_size; cut++) {
		write_segment(0, 1, 20, off); /* whole again, then cut */
		ck_assert_int_eq(truncate(path, cut), 0);
		struct shmex_error e = {0};
		int end;
		ck_assert_uint_eq(read_all(0, &end, &e), 19);
		ck_assert_msg(end == SHMEX_EJTORN, "cut at %jd: %d", (intmax_t)cut, end);
		ck_assert_ptr_nonnull(strstr(e.msg, "torn"));
	}
	/* Cut exactly at a record boundary: a clean end. */
	ck_assert_int_eq(truncate(path, (off_t)off[19]), 0);
	struct shmex_error e = {0};
	int end;
	ck_assert_uint_eq(read_all(0, &end, &e), 19);
	ck_assert_int_eq(end, 0);
}
END_TEST

START_TEST(corrupt_middle_names_file_and_offset)
{
	size_t off[20];
	const char *path = write_segment(0, 1, 20, off);
	int fd = open(path, O_RDWR);
	ck_assert_int_ge(fd, 0);
	uint8_t b;
	ck_assert_int_eq(pread(fd, &b, 1, (off_t)off[7] + 40), 1);
	b ^= 1;
	ck_assert_int_eq(pwrite(fd, &b, 1, (off_t)off[7] + 40), 1);
	close(fd);
	struct shmex_error e = {0};
	int end;
	ck_assert_uint_eq(read_all(0, &end, &e), 7);
	ck_assert_int_eq(end, SHMEX_EJCORRUPT);
	char want[64];
	snprintf(want, sizeof(want), "byte %zu", off[7]);
	ck_assert_msg(strstr(e.msg, path) && strstr(e.msg, want), "%s", e.msg);
}
END_TEST

START_TEST(gaps_and_foreign_segments_are_refused)
{
	write_segment(0, 1, 10, NULL);
	write_segment(0, 12, 10, NULL); /* record 11 is missing */
	struct shmex_error e = {0};
	int end;
	ck_assert_uint_eq(read_all(0, &end, &e), 10);
	ck_assert_int_eq(end, SHMEX_EJCORRUPT);
	ck_assert_ptr_nonnull(strstr(e.msg, "starts at sequence 12"));
	teardown();
	setup();
	write_segment(1, 1, 3, NULL); /* shard 1's records in shard 0's dir */
	struct shm_jreader r;
	ck_assert_int_eq(shm_jreader_open(&r, sdir, 0, 2, 0, &e), SHMEX_EJCORRUPT);
	ck_assert_ptr_nonnull(strstr(e.msg, "written by shard 1"));
	/* The same journal read by an exchange of another size. */
	teardown();
	setup();
	write_segment(0, 1, 3, NULL);
	ck_assert_int_eq(shm_jreader_open(&r, sdir, 0, 3, 0, &e), SHMEX_EJCORRUPT);
	ck_assert_ptr_nonnull(strstr(e.msg, "2 shards"));
}
END_TEST

START_TEST(lock_refuses_a_live_owner_and_replaces_a_stale_one)
{
	struct shmex_error e = {0};
	int fd;
	ck_assert_int_eq(shm_journal_lock(dir, &fd, &e), 0);
	/* A second exchange (another process) is refused, with the pid. */
	pid_t me = getpid();
	pid_t k = fork();
	if (k == 0) {
		struct shmex_error e2 = {0};
		int f2;
		int rc = shm_journal_lock(dir, &f2, &e2);
		char want[32];
		snprintf(want, sizeof(want), "pid %d", (int)me);
		_exit(rc == SHMEX_EINUSE && strstr(e2.msg, want) ? 0 : 1);
	}
	int st = test_wait_pid(k, 5000);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	shm_journal_unlock(dir, fd);
	/* A lock left by a dead process is taken over. */
	k = fork();
	if (k == 0) {
		struct shmex_error e2 = {0};
		int f2;
		_exit(shm_journal_lock(dir, &f2, &e2) == 0 ? 0 : 1); /* dies holding it */
	}
	st = test_wait_pid(k, 5000);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	char path[400];
	snprintf(path, sizeof(path), "%s/lock", dir);
	ck_assert_int_eq(access(path, F_OK), 0);
	ck_assert_int_eq(shm_journal_lock(dir, &fd, &e), 0);
	shm_journal_unlock(dir, fd);
	ck_assert_int_ne(access(path, F_OK), 0);
}
END_TEST

START_TEST(unwritable_and_missing_directories)
{
	struct shmex_error e = {0};
	char p[400];
	snprintf(p, sizeof(p), "%s/a/b/c", dir);
	ck_assert_int_eq(shm_journal_mkdirs(p, &e), 0);
	struct shm_jreader r;
	snprintf(p, sizeof(p), "%s/nothere", dir);
	ck_assert_int_eq(shm_jreader_open(&r, p, 0, 2, 0, &e), -ENOENT);
	ck_assert_ptr_nonnull(strstr(e.msg, "nothere"));
	/* A file in the way. */
	snprintf(p, sizeof(p), "%s/file", dir);
	FILE *f = fopen(p, "w");
	fclose(f);
	char q[500];
	snprintf(q, sizeof(q), "%s/sub", p);
	ck_assert_int_lt(shm_journal_mkdirs(q, &e), 0);
	ck_assert_ptr_nonnull(strstr(e.msg, "file"));
	if (geteuid() != 0) {
		snprintf(p, sizeof(p), "%s/ro", dir);
		ck_assert_int_eq(mkdir(p, 0500), 0);
		ck_assert_int_eq(shm_journal_mkdirs(p, &e), -EACCES);
	}
}
END_TEST

static Suite *shm_journal_suite(void)
{
	Suite *s = suite_create("shm_journal");
	TCase *tc = tcase_create("format");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, crc32c_check_value);
	tcase_add_test(tc, records_seal_and_check);
	tcase_add_test(tc, snapshot_of_version_2_is_refused);
	tcase_add_test(tc, clean_journal_across_segments);
	tcase_add_test(tc, torn_tail_is_detected_at_every_cut);
	tcase_add_test(tc, corrupt_middle_names_file_and_offset);
	tcase_add_test(tc, gaps_and_foreign_segments_are_refused);
	tcase_add_test(tc, lock_refuses_a_live_owner_and_replaces_a_stale_one);
	tcase_add_test(tc, unwritable_and_missing_directories);
	suite_add_tcase(s, tc);
	return s;
}

SHMEX_TEST_MAIN(shm_journal_suite)

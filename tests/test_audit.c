/*
 * audit_suite: the audit log and shmex-journal (docs/durability.md,
 * "Audit log").  Real processes: the `shmex` supervisor with its own
 * data directory, load from forked clients over TCP, SIGKILL of
 * shmex-audit (twice) and of a matcher in the middle of the load.  The
 * audit log must then be sorted by (time, shard, seq), hold every record
 * of every shard's journal exactly once, and be byte-identical to
 * `shmex-journal merge` of the journals; a torn tail left by a crash is
 * cut on the next start; `shmex-journal verify` names the file and byte
 * of a corrupted record; `dump --json` is JSON.
 */
#include "tests/shmex_test.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shm/journal/jnl.h"
#include "shm/shm_journal.h"
#include "shm/shm_shard.h"
#include "shm/shm_snap.h"
#include "tests/client.h"

#define T_MS 15000
#define NSHARDS 2
#define ACCOUNTS 6
#define CLIENTS 2

static char inst[64];
static char ddir[PATH_MAX];
static struct exchange ex;

/* As in test_durability: a failed assertion skips the checked teardown,
 * so the runner removes the instances its tests noted. */
static void note_instance(const char *name)
{
	test_note_instance("audit", name);
}

static void cleanup_noted(void)
{
	test_cleanup_noted("audit");
}

static void fresh(void)
{
	test_instance(inst, sizeof(inst));
	note_instance(inst);
	const char *root = getenv("SHMEX_TEST_DATA");
	snprintf(ddir, sizeof(ddir), "%s/%s", root && *root ? root : "/tmp", inst);
}

static void start_with(const char *const *more)
{
	char dd[PATH_MAX + 16];
	snprintf(dd, sizeof(dd), "--data-dir=%s", ddir);
	const char *argv[32] = {"--orders",    "65536", "--fills",    "262144",
				"--symbols",   "64",    "--accounts", "4096",
				"--positions", "16384", "--idle-ms",  "20",
				"--quiet",     dd};
	int n = 0;
	while (argv[n])
		n++;
	for (int i = 0; more && more[i] && n < 31; i++)
		argv[n++] = more[i];
	argv[n] = NULL;
	ck_assert_msg(exchange_start(&ex, test_bin("shmex"), inst, argv, 30000) == 0,
		      "shmex did not start");
}

static void start(void)
{
	start_with(NULL);
}

static void stop_clean(void)
{
	int st = exchange_stop(&ex, 30000);
	ck_assert_msg(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "shmex exit status 0x%x", st);
	ex.pid = 0;
	ck_assert_int_eq(test_count_objects(inst), 0);
}

static void teardown(void)
{
	unsetenv("SHMEX_FAULT_HOLD");
	if (ex.pid > 0) {
		pid_t all[64];
		int n = exchange_children(&ex, all, 64);
		kill(ex.pid, SIGKILL);
		waitpid(ex.pid, NULL, 0);
		for (int i = 0; i < n; i++)
			kill(all[i], SIGKILL);
		ex.pid = 0;
	}
	if (ex.out_fd >= 0)
		close(ex.out_fd);
	ex.out_fd = -1;
	usleep(50000);
	test_cleanup_instance(inst);
}

/* The supervisor's shmex-audit child, or -1. */
static pid_t audit_pid(void)
{
	pid_t pids[64];
	int n = exchange_children(&ex, pids, 64);
	for (int i = 0; i < n; i++) {
		char path[64], buf[512];
		snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pids[i]);
		FILE *f = fopen(path, "re");
		if (!f)
			continue;
		size_t len = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[len] = 0;
		size_t l = strlen(buf);
		if (l >= 11 && strcmp(buf + l - 11, "shmex-audit") == 0)
			return pids[i];
	}
	return -1;
}

/* Runs a program with argv (argv[0] a program name in the build),
 * stdout and stderr into files (NULL: /dev/null); its exit status. */
static int run(const char *const *argv, const char *out, const char *err)
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int o = open(out ? out : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int e = open(err ? err : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (o < 0 || e < 0)
			_exit(127);
		dup2(o, 1);
		dup2(e, 2);
		execv(test_bin(argv[0]), (char *const *)argv);
		_exit(127);
	}
	int st = test_wait_pid(pid, 20000);
	ck_assert_msg(st >= 0, "%s did not finish", argv[0]);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *b = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(b);
	size_t got = fread(b, 1, (size_t)n, f);
	fclose(f);
	b[got] = 0;
	*len = got;
	return b;
}

/* Is audit.log byte-identical to `shmex-journal merge` of the journals? */
static bool same_as_merge(void)
{
	char audit[PATH_MAX + 16], merged[PATH_MAX + 16];
	snprintf(audit, sizeof(audit), "%s/audit.log", ddir);
	snprintf(merged, sizeof(merged), "%s.merged", ddir);
	const char *argv[] = {"shmex-journal", "--output", merged, "merge", ddir, NULL};
	ck_assert_int_eq(run(argv, NULL, NULL), 0);
	size_t la = 0, lm = 0;
	char *a = slurp(audit, &la), *m = slurp(merged, &lm);
	bool same = a && m && la == lm && memcmp(a, m, la) == 0;
	free(a);
	free(m);
	return same;
}

static void wait_same_as_merge(void)
{
	for (int i = 0; i < 200; i++) {
		if (same_as_merge())
			return;
		usleep(50000);
	}
	ck_abort_msg("audit.log never became identical to shmex-journal merge");
}

/* Sorted, and every record of every shard's journal exactly once. */
static uint64_t check_sorted_and_complete(void)
{
	uint64_t last[NSHARDS] = {0};
	for (uint32_t k = 0; k < NSHARDS; k++) {
		char dir[PATH_MAX];
		ck_assert_int_eq(shm_journal_shard_dir(dir, sizeof(dir), ddir, k), 0);
		struct shm_jreader rd;
		struct shmex_error e = {0};
		ck_assert_int_eq(shm_jreader_open(&rd, dir, k, NSHARDS, 0, &e), 0);
		struct shm_jrec r;
		int rc;
		while ((rc = shm_jreader_next(&rd, &r, &e)) == 1)
			last[k] = r.h.seq;
		ck_assert_msg(rc == 0, "%s", shmex_error_msg(&e, rc));
		shm_jreader_close(&rd);
	}
	char path[PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/audit.log", ddir);
	size_t len = 0;
	uint8_t *b = (uint8_t *)slurp(path, &len);
	ck_assert_ptr_nonnull(b);
	struct jnl_audit_hdr h;
	ck_assert_uint_ge(len, sizeof(h));
	memcpy(&h, b, sizeof(h));
	ck_assert_int_eq(jnl_audit_hdr_check(&h, NULL), 0);
	ck_assert_uint_eq(h.nshards, NSHARDS);
	uint64_t seen[NSHARDS] = {0}, n = 0;
	struct shm_jrec_hdr prev;
	size_t off = sizeof(h);
	while (off < len) {
		size_t rl;
		ck_assert_msg(shm_jrec_check(b + off, len - off, &rl) == 0,
			      "bad record at byte %zu", off);
		struct shm_jrec_hdr rh;
		memcpy(&rh, b + off, sizeof(rh));
		ck_assert_uint_lt(rh.shard, NSHARDS);
		if (n)
			ck_assert_msg(jnl_key_cmp(&prev, &rh) < 0,
				      "byte %zu: not after the previous record", off);
		ck_assert_msg(rh.seq == seen[rh.shard] + 1,
			      "shard %u: seq %llu after %llu (gap or duplicate)",
			      rh.shard, (unsigned long long)rh.seq,
			      (unsigned long long)seen[rh.shard]);
		seen[rh.shard] = rh.seq;
		prev = rh;
		n++;
		off += rl;
	}
	free(b);
	for (uint32_t k = 0; k < NSHARDS; k++)
		ck_assert_msg(seen[k] == last[k], "shard %u: %llu of %llu records merged",
			      k, (unsigned long long)seen[k],
			      (unsigned long long)last[k]);
	return n;
}

/* A symbol of shard k. */
static const char *sym_on(uint32_t k)
{
	static char names[NSHARDS][8];
	for (int i = 0; i < 1000; i++) {
		char s[8];
		snprintf(s, sizeof(s), "S%d", i);
		if (shm_shard_of_symbol(s, strlen(s), NSHARDS) == k) {
			snprintf(names[k], sizeof(names[k]), "%s", s);
			return names[k];
		}
	}
	ck_abort_msg("no symbol of shard %u", k);
	return NULL;
}

static void setup_accounts(void)
{
	struct client c;
	ck_assert_int_eq(client_connect(&c, "127.0.0.1", ex.port, T_MS), 0);
	char xml[2048];
	int n = snprintf(xml, sizeof(xml), "<create>");
	for (int i = 1; i <= ACCOUNTS; i++)
		n += snprintf(xml + n, sizeof(xml) - (size_t)n,
			      "<account id=\"%d\" balance=\"100000\"/>", i);
	for (uint32_t k = 0; k < NSHARDS; k++) {
		n += snprintf(xml + n, sizeof(xml) - (size_t)n, "<symbol sym=\"%s\">",
			      sym_on(k));
		for (int i = 1; i <= ACCOUNTS; i++)
			n += snprintf(xml + n, sizeof(xml) - (size_t)n,
				      "<account id=\"%d\">1000</account>", i);
		n += snprintf(xml + n, sizeof(xml) - (size_t)n, "</symbol>");
	}
	snprintf(xml + n, sizeof(xml) - (size_t)n, "</create>");
	const char *rep;
	size_t len;
	ck_assert_int_eq(client_request(&c, xml, &rep, &len, T_MS), 0);
	ck_assert_msg(strstr(rep, "error") == NULL, "%.*s", (int)len, rep);
	client_close(&c);
}

/* Orders on both shards until `until` (or `max` requests); replies are
 * not judged here (a killed matcher's are "not executed"). */
static void load(int seed, int max, unsigned long long until)
{
	struct client c;
	bool up = false;
	uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(seed + 1);
	for (int sent = 0; sent < max && test_now_ns() < until; sent++) {
		if (!up) {
			up = client_connect(&c, "127.0.0.1", ex.port, 2000) == 0;
			if (!up) {
				usleep(10000);
				continue;
			}
		}
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		char xml[256];
		snprintf(xml, sizeof(xml),
			 "<transactions id=\"%d\"><order sym=\"%s\" amount=\"%s%d\" "
			 "limit=\"%d\"/></transactions>",
			 1 + (int)(x % ACCOUNTS), sym_on((uint32_t)(x >> 32) & 1),
			 (x >> 24) & 1 ? "-" : "", 1 + (int)((x >> 8) % 5),
			 95 + (int)((x >> 16) % 11));
		const char *rep;
		size_t len;
		if (client_request(&c, xml, &rep, &len, 5000) != 0) {
			client_close(&c);
			up = false;
		}
	}
	if (up)
		client_close(&c);
}

START_TEST(sorted_complete_and_identical_across_kills)
{
	fresh();
	start();
	setup_accounts();
	pid_t kid[CLIENTS];
	unsigned long long t0 = test_now_ns(), until = t0 + 1500000000ull;
	for (int i = 0; i < CLIENTS; i++) {
		kid[i] = fork();
		ck_assert_int_ge(kid[i], 0);
		if (kid[i] == 0) {
			load(i, 3000, until);
			_exit(0);
		}
	}
	/* The audit writer, a matcher, the audit writer again. */
	static const struct {
		int at_ms;
		bool audit;
	} chaos[] = {{300, true}, {650, false}, {1000, true}};
	for (size_t k = 0; k < sizeof(chaos) / sizeof(chaos[0]); k++) {
		while (test_now_ns() <
		       t0 + (unsigned long long)chaos[k].at_ms * 1000000ull)
			usleep(1000);
		pid_t v = -1;
		/* A restarted audit writer may still be on its way (backoff). */
		for (int t = 0; t < 300 && v <= 0; t++) {
			v = chaos[k].audit ? audit_pid()
					   : exchange_child(&ex, "shmex-matcher", 1);
			if (v <= 0)
				usleep(10000);
		}
		ck_assert_int_gt(v, 0);
		kill(v, SIGKILL);
	}
	for (int i = 0; i < CLIENTS; i++) {
		int st = test_wait_pid(kid[i], 20000);
		ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	/* Live: the audit log catches up with every durable record. */
	wait_same_as_merge();
	uint64_t n = check_sorted_and_complete();
	ck_assert_uint_gt(n, 200);
	/* And after a clean stop. */
	stop_clean();
	ck_assert(same_as_merge());
	check_sorted_and_complete();
	const char *verify[] = {"shmex-journal", "verify", ddir, NULL};
	ck_assert_int_eq(run(verify, NULL, NULL), 0);
	fprintf(stderr, "audit: %llu records merged across 2 audit and 1 matcher kills\n",
		(unsigned long long)n);
}
END_TEST

START_TEST(torn_tail_is_cut_and_merge_resumes)
{
	fresh();
	start();
	setup_accounts();
	load(7, 40, test_now_ns() + 5000000000ull);
	wait_same_as_merge();
	stop_clean();
	/* A crash in the middle of a write: half of a record at the end. */
	char path[PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/audit.log", ddir);
	size_t len = 0;
	char *b = slurp(path, &len);
	ck_assert_ptr_nonnull(b);
	ck_assert_uint_gt(len, 64 + 40);
	int fd = open(path, O_WRONLY | O_APPEND);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, b + 64, 40), 40);
	close(fd);
	free(b);
	start();
	load(8, 40, test_now_ns() + 5000000000ull);
	wait_same_as_merge();
	check_sorted_and_complete();
	stop_clean();
}
END_TEST

static off_t file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? st.st_size : -1;
}

/*
 * The merge rule itself: while shard 1 holds a request whose record is
 * not durable (its journal held back by fault injection), shard 1 has
 * not advanced past that request's time, so nothing later may be
 * merged: shard 0's records that follow are durable in shard 0's
 * journal and still absent from the audit log.  Once shard 1's record
 * is durable, everything is merged.
 */
START_TEST(nothing_is_merged_past_a_shard_that_has_not_advanced)
{
	fresh();
	setenv("SHMEX_FAULT_HOLD", "1", 1);
	start();
	setup_accounts();
	wait_same_as_merge();
	char audit[PATH_MAX + 16], seg0[PATH_MAX + 64], hold[PATH_MAX + 16];
	snprintf(audit, sizeof(audit), "%s/audit.log", ddir);
	snprintf(seg0, sizeof(seg0), "%s/shard-0/journal-0000000000000001.log", ddir);
	snprintf(hold, sizeof(hold), "%s/shard-1/hold", ddir);
	off_t merged = file_size(audit), journal0 = file_size(seg0);
	ck_assert_int_gt(merged, 64);

	struct shm_snap rd;
	ck_assert_int_eq(shm_snap_open(&rd, inst, 1), 0);
	struct shm_snap_shard_stats st;
	shm_snap_stats(&rd, &st);
	uint64_t created = st.orders_created;
	int fd = open(hold, O_CREAT | O_WRONLY, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	struct client held, c;
	ck_assert_int_eq(client_connect(&held, "127.0.0.1", ex.port, T_MS), 0);
	char xml[256];
	snprintf(xml, sizeof(xml),
		 "<transactions id=\"1\"><order sym=\"%s\" amount=\"1\" "
		 "limit=\"50\"/></transactions>",
		 sym_on(1));
	ck_assert_int_eq(client_send(&held, xml, T_MS), 0);
	/* Matcher 1 took it (its record waits for the journal). */
	for (int t = 0; t < 1000 && st.orders_created == created; t++) {
		usleep(2000);
		shm_snap_stats(&rd, &st);
	}
	shm_snap_close(&rd);
	ck_assert_uint_gt(st.orders_created, created);

	ck_assert_int_eq(client_connect(&c, "127.0.0.1", ex.port, T_MS), 0);
	snprintf(xml, sizeof(xml),
		 "<transactions id=\"2\"><order sym=\"%s\" amount=\"1\" "
		 "limit=\"50\"/></transactions>",
		 sym_on(0));
	for (int i = 0; i < 5; i++) {
		const char *rep;
		size_t len;
		ck_assert_int_eq(client_request(&c, xml, &rep, &len, T_MS), 0);
		ck_assert_msg(strstr(rep, "<opened"), "%.*s", (int)len, rep);
	}
	client_close(&c);
	/* Many idle ticks (20 ms) of shard 0 and polls of the audit writer. */
	usleep(300000);
	ck_assert_int_gt(file_size(seg0), journal0); /* durable on shard 0 */
	ck_assert_int_eq(file_size(audit), merged);  /* and not merged */

	unlink(hold);
	const char *rep;
	size_t len;
	ck_assert_int_eq(client_recv(&held, &rep, &len, T_MS), 0);
	ck_assert_msg(strstr(rep, "<opened"), "%.*s", (int)len, rep);
	client_close(&held);
	wait_same_as_merge();
	ck_assert_int_gt(file_size(audit), merged);
	check_sorted_and_complete();
	stop_clean();
}
END_TEST

/* Journal segments and snapshots of shard k. */
static void shard_files(uint32_t k, struct shm_jdir *d)
{
	char dir[PATH_MAX];
	ck_assert_int_eq(shm_journal_shard_dir(dir, sizeof(dir), ddir, k), 0);
	struct shmex_error e = {0};
	ck_assert_int_eq(shm_jdir_list(d, dir, &e), 0);
}

/* 9000 SHARES records (88 bytes each, ~0.8 MB of journal) on shard k. */
static void big_request(struct client *c, uint32_t k)
{
	size_t cap = 9000 * 40 + 256, n = 0;
	char *xml = malloc(cap);
	ck_assert_ptr_nonnull(xml);
	n += (size_t)snprintf(xml + n, cap - n, "<create><symbol sym=\"%s\">", sym_on(k));
	for (int i = 0; i < 9000; i++)
		n += (size_t)snprintf(xml + n, cap - n, "<account id=\"%d\">1</account>",
				      1 + i % ACCOUNTS);
	snprintf(xml + n, cap - n, "</symbol></create>");
	const char *rep;
	size_t len;
	ck_assert_int_eq(client_request(c, xml, &rep, &len, T_MS), 0);
	ck_assert_msg(strstr(rep, "error") == NULL, "%.200s", rep);
	free(xml);
}

/* Would snapshots let shard k's first segment go (the older of the two
 * newest covers it)?  *present: is it still there? */
static bool first_segment_covered(uint32_t k, bool *present)
{
	struct shm_jdir d;
	shard_files(k, &d);
	*present = d.nseg >= 1 && d.seg_first[0] == 1;
	bool covered = d.nsnap >= 2 &&
		       (!*present ||
			(d.nseg >= 2 && d.snap_last[d.nsnap - 2] + 1 >= d.seg_first[1]));
	shm_jdir_free(&d);
	return covered;
}

/*
 * Snapshots remove journal segments they cover, but never one the audit
 * log has not merged: with shmex-audit stopped (SIGSTOP), segments
 * covered by two snapshots stay; once it has caught up (DIR/audit.pos),
 * the next snapshot removes them.
 */
START_TEST(segments_wait_for_the_audit_log)
{
	fresh();
	static const char *const small[] = {
		"--segment-mb", "1", "--snapshot-mb", "1", "--sync", "none", NULL};
	start_with(small);
	setup_accounts();
	wait_same_as_merge();
	pid_t ap = audit_pid();
	ck_assert_int_gt(ap, 0);
	ck_assert_int_eq(kill(ap, SIGSTOP), 0);
	struct client c;
	ck_assert_int_eq(client_connect(&c, "127.0.0.1", ex.port, T_MS), 0);
	bool present = false, covered = false;
	for (int r = 0; r < 40 && !covered; r++) {
		big_request(&c, 0);
		covered = first_segment_covered(0, &present);
	}
	ck_assert_msg(covered, "no two snapshots past shard 0's first segment");
	ck_assert_msg(present, "shard 0's first segment was removed before the audit "
			       "log merged it");
	ck_assert_int_eq(kill(ap, SIGCONT), 0);
	wait_same_as_merge();
	check_sorted_and_complete();
	/* Merged now: the next snapshots may remove it. */
	for (int r = 0; r < 40 && present; r++) {
		usleep(150000); /* audit.pos is rewritten every 100 ms */
		big_request(&c, 0);
		first_segment_covered(0, &present);
	}
	ck_assert_msg(!present, "shard 0's first segment stays after being merged");
	client_close(&c);
	const char *verify[] = {"shmex-journal", "verify", ddir, NULL};
	ck_assert_int_eq(run(verify, NULL, NULL), 0);
	stop_clean();
}
END_TEST

/* The JSON lines of `shmex-journal --json dump path`: each parses; the
 * (file, offset) of the record with sequence `seq` of shard `shard`. */
static void dump_json(const char *path, uint32_t shard, uint64_t seq, char *file,
		      size_t cap, long long *offset, int *lines)
{
	char out[PATH_MAX + 16];
	snprintf(out, sizeof(out), "%s.json", ddir);
	const char *argv[] = {"shmex-journal", "--json", "dump", path, NULL};
	ck_assert_int_eq(run(argv, out, NULL), 0);
	FILE *f = fopen(out, "r");
	ck_assert_ptr_nonnull(f);
	char line[4096];
	*lines = 0;
	*offset = -1;
	while (fgets(line, sizeof(line), f)) {
		json_error_t je;
		json_t *j = json_loads(line, 0, &je);
		ck_assert_msg(j != NULL, "not JSON: %s (%s)", line, je.text);
		ck_assert(json_is_integer(json_object_get(j, "seq")));
		ck_assert(json_is_integer(json_object_get(j, "time_ns")));
		ck_assert(json_is_string(json_object_get(j, "type")));
		if (json_integer_value(json_object_get(j, "shard")) == shard &&
		    (uint64_t)json_integer_value(json_object_get(j, "seq")) == seq) {
			snprintf(file, cap, "%s",
				 json_string_value(json_object_get(j, "file")));
			*offset = json_integer_value(json_object_get(j, "offset"));
		}
		json_decref(j);
		(*lines)++;
	}
	fclose(f);
	unlink(out);
}

static void flip(const char *file, long long at)
{
	int fd = open(file, O_RDWR);
	ck_assert_int_ge(fd, 0);
	unsigned char c;
	ck_assert_int_eq(pread(fd, &c, 1, at), 1);
	c ^= 0x40;
	ck_assert_int_eq(pwrite(fd, &c, 1, at), 1);
	close(fd);
}

/* verify exits 1 and its message names file and byte. */
static void verify_names(const char *path, const char *file, long long offset)
{
	char err[PATH_MAX + 16], want[PATH_MAX + 64];
	snprintf(err, sizeof(err), "%s.err", ddir);
	const char *argv[] = {"shmex-journal", "verify", path, NULL};
	ck_assert_int_eq(run(argv, NULL, err), 1);
	size_t len;
	char *msg = slurp(err, &len);
	ck_assert_ptr_nonnull(msg);
	snprintf(want, sizeof(want), "%s: byte %lld:", file, offset);
	ck_assert_msg(strstr(msg, want) != NULL, "verify said \"%s\", not \"%s\"", msg,
		      want);
	free(msg);
	unlink(err);
}

START_TEST(verify_names_file_and_byte_of_a_corrupted_record)
{
	fresh();
	start();
	setup_accounts();
	load(3, 30, test_now_ns() + 5000000000ull);
	wait_same_as_merge();
	stop_clean();
	const char *ok[] = {"shmex-journal", "verify", ddir, NULL};
	ck_assert_int_eq(run(ok, NULL, NULL), 0);

	/* dump --json of a shard and of the audit log parse, line by line. */
	char shard0[PATH_MAX + 16], audit[PATH_MAX + 16], file[PATH_MAX];
	snprintf(shard0, sizeof(shard0), "%s/shard-0", ddir);
	snprintf(audit, sizeof(audit), "%s/audit.log", ddir);
	long long off;
	int lines;
	dump_json(audit, 1, 2, file, sizeof(file), &off, &lines);
	ck_assert_int_gt(lines, 10);
	ck_assert_int_gt(off, 64);
	/* A flipped bit in the audit log's record of shard 1, seq 2. */
	flip(audit, off + 9);
	verify_names(audit, audit, off);
	flip(audit, off + 9);

	/* Records that are all valid, sorted and without gaps, but are not
	 * the journals' merge: the first two of the shard whose first record
	 * does not come first in the merge. */
	size_t alen = 0, slen = 0;
	char *orig = slurp(audit, &alen);
	ck_assert_ptr_nonnull(orig);
	struct shm_jrec_hdr first;
	memcpy(&first, orig + 64, sizeof(first));
	char seg1[PATH_MAX + 64];
	snprintf(seg1, sizeof(seg1), "%s/shard-%u/journal-0000000000000001.log", ddir,
		 1u - first.shard);
	char *seg = slurp(seg1, &slen);
	ck_assert_ptr_nonnull(seg);
	struct shm_jrec_hdr r1, r2;
	memcpy(&r1, seg + 64, sizeof(r1));
	memcpy(&r2, seg + 64 + r1.len, sizeof(r2));
	FILE *f = fopen(audit, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(orig, 1, 64, f), 64);
	ck_assert_uint_eq(fwrite(seg + 64, 1, r1.len + r2.len, f), r1.len + r2.len);
	fclose(f);
	char err[PATH_MAX + 16];
	snprintf(err, sizeof(err), "%s.err", ddir);
	ck_assert_int_eq(run(ok, NULL, err), 1);
	size_t elen;
	char *msg = slurp(err, &elen);
	ck_assert_ptr_nonnull(msg);
	ck_assert_msg(strstr(msg, "audit.log: byte 64: not the journals' merge"), "%s",
		      msg);
	free(msg);
	f = fopen(audit, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(orig, 1, alen, f), alen);
	fclose(f);
	free(orig);
	free(seg);
	ck_assert_int_eq(run(ok, NULL, NULL), 0);

	dump_json(shard0, 0, 3, file, sizeof(file), &off, &lines);
	ck_assert_int_gt(lines, 3);
	ck_assert_int_gt(off, 64);
	/* A flipped bit in the time of shard 0's third record. */
	flip(file, off + 17);
	verify_names(ddir, file, off);
	verify_names(shard0, file, off);

	/* Usage and path errors. */
	const char *bad[] = {"shmex-journal", "frobnicate", ddir, NULL};
	ck_assert_int_eq(run(bad, NULL, NULL), 2);
	const char *none[] = {"shmex-journal", "verify", "/nonexistent/shmex", NULL};
	ck_assert_int_eq(run(none, NULL, NULL), 1);
	const char *stats[] = {"shmex-journal", "stats", audit, NULL};
	ck_assert_int_eq(run(stats, NULL, NULL), 0);
}
END_TEST

/* ---- finding the end of an audit log (no processes) ---- */

static char tail_path[PATH_MAX];

/* An audit log of nshards with n RECYCLE records (40 bytes each) of
 * alternating shards, then `junk` bytes of `fill` (0: none). */
static int tail_log(uint32_t nshards, int n, size_t junk, int fill)
{
	const char *root = getenv("SHMEX_TEST_DATA");
	snprintf(tail_path, sizeof(tail_path), "%s/tail-%d.log",
		 root && *root ? root : "/tmp", (int)getpid());
	int fd = open(tail_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	struct jnl_audit_hdr h;
	jnl_audit_hdr_init(&h, nshards);
	ck_assert_int_eq(write(fd, &h, sizeof(h)), (ssize_t)sizeof(h));
	for (int i = 0; i < n; i++) {
		struct shm_jrec r;
		memset(&r, 0, sizeof(r));
		r.h.type = SHM_JREC_RECYCLE;
		r.h.shard = (uint16_t)(i % 2);
		r.h.seq = (uint64_t)(i / 2 + 1);
		r.h.time_ns = 1000u + (uint64_t)i;
		r.h.flags = SHM_JREC_END;
		r.u.recycle.count = (uint64_t)i;
		size_t len = shm_jrec_seal(&r);
		ck_assert_int_eq(write(fd, &r, len), (ssize_t)len);
	}
	char *j = malloc(junk + 1);
	ck_assert_ptr_nonnull(j);
	memset(j, fill, junk);
	if (junk)
		ck_assert_int_eq(write(fd, j, junk), (ssize_t)junk);
	free(j);
	return fd;
}

static void expect_tail(int fd, off_t want_end, int want_last_index)
{
	off_t end = -1;
	bool has = false;
	struct shm_jrec_hdr last;
	struct shmex_error e = {0};
	int rc = jnl_audit_tail(fd, tail_path, 2, &end, &has, &last, &e);
	ck_assert_msg(rc == 0, "%s", shmex_error_msg(&e, rc));
	ck_assert_int_eq(end, want_end);
	ck_assert(has == (want_last_index >= 0));
	if (has) {
		ck_assert_uint_eq(last.time_ns, 1000u + (uint64_t)want_last_index);
		ck_assert_uint_eq(last.shard, (unsigned)(want_last_index % 2));
	}
	close(fd);
	unlink(tail_path);
}

START_TEST(tail_of_a_clean_log)
{
	expect_tail(tail_log(2, 300, 0, 0), 64 + 300 * 40, 299);
	expect_tail(tail_log(2, 0, 0, 0), 64, -1);
	expect_tail(tail_log(2, 3, 0, 0), 64 + 3 * 40, 2);
}
END_TEST

START_TEST(tail_cut_after_a_torn_or_damaged_end)
{
	/* Half a record (its first 20 bytes are a real record's). */
	int fd = tail_log(2, 300, 0, 0);
	struct shm_jrec r;
	ck_assert_int_eq(pread(fd, &r, 40, 64), 40);
	ck_assert_int_eq(write(fd, &r, 20), 20);
	expect_tail(fd, 64 + 300 * 40, 299);
	/* Garbage shorter than the window, and longer (no record boundary
	 * in the last 4 KiB: the whole log is scanned). */
	expect_tail(tail_log(2, 300, 1000, 0xa5), 64 + 300 * 40, 299);
	expect_tail(tail_log(2, 300, 6000, 0xa5), 64 + 300 * 40, 299);
	expect_tail(tail_log(2, 5, 6000, 0), 64 + 5 * 40, 4);
	/* A record with one flipped bit ends the good part there. */
	fd = tail_log(2, 300, 0, 0);
	unsigned char c;
	off_t at = 64 + 290 * 40 + 12;
	ck_assert_int_eq(pread(fd, &c, 1, at), 1);
	c ^= 1;
	ck_assert_int_eq(pwrite(fd, &c, 1, at), 1);
	expect_tail(fd, 64 + 290 * 40, 289);
}
END_TEST

START_TEST(tail_refuses_a_foreign_log)
{
	off_t end;
	bool has;
	struct shm_jrec_hdr last;
	struct shmex_error e = {0};
	int fd = tail_log(3, 10, 0, 0);
	ck_assert_int_eq(jnl_audit_tail(fd, tail_path, 2, &end, &has, &last, &e),
			 SHMEX_EJCORRUPT);
	ck_assert_msg(strstr(e.msg, "merges 3 shards, this exchange has 2"), "%s", e.msg);
	close(fd);
	/* An audit log of an older format (its records are older journal
	 * records): refused with both versions, not cut off as torn. */
	fd = tail_log(2, 10, 0, 0);
	struct jnl_audit_hdr old;
	ck_assert_int_eq(pread(fd, &old, sizeof(old), 0), (ssize_t)sizeof(old));
	old.version = 1;
	old.hdr_crc = 0;
	old.hdr_crc = shm_crc32c(0, &old, sizeof(old));
	ck_assert_int_eq(pwrite(fd, &old, sizeof(old), 0), (ssize_t)sizeof(old));
	ck_assert_int_eq(jnl_audit_tail(fd, tail_path, 2, &end, &has, &last, &e),
			 SHMEX_EJCORRUPT);
	ck_assert_msg(strstr(e.msg, "audit log version 1, this build reads 2"), "%s",
		      e.msg);
	close(fd);
	/* Not an audit log at all. */
	fd = open(tail_path, O_RDWR | O_TRUNC);
	ck_assert_int_ge(fd, 0);
	char junk[100];
	memset(junk, 'x', sizeof(junk));
	ck_assert_int_eq(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	ck_assert_int_eq(jnl_audit_tail(fd, tail_path, 2, &end, &has, &last, &e),
			 SHMEX_EJCORRUPT);
	ck_assert_msg(strstr(e.msg, "not a shmex audit log"), "%s", e.msg);
	/* A header cut short: a new log. */
	ck_assert_int_eq(ftruncate(fd, 30), 0);
	ck_assert_int_eq(jnl_audit_tail(fd, tail_path, 2, &end, &has, &last, &e), 0);
	ck_assert_int_eq(end, 0);
	ck_assert(!has);
	close(fd);
	unlink(tail_path);
}
END_TEST

static Suite *audit_suite(void)
{
	Suite *s = suite_create("audit");
	TCase *tc = tcase_create("audit");
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, sorted_complete_and_identical_across_kills);
	tcase_add_test(tc, torn_tail_is_cut_and_merge_resumes);
	tcase_add_test(tc, nothing_is_merged_past_a_shard_that_has_not_advanced);
	tcase_add_test(tc, segments_wait_for_the_audit_log);
	tcase_add_test(tc, verify_names_file_and_byte_of_a_corrupted_record);
	suite_add_tcase(s, tc);
	TCase *tt = tcase_create("tail");
	tcase_add_test(tt, tail_of_a_clean_log);
	tcase_add_test(tt, tail_cut_after_a_torn_or_damaged_end);
	tcase_add_test(tt, tail_refuses_a_foreign_log);
	suite_add_tcase(s, tt);
	return s;
}

int main(void)
{
	int failed = test_run(audit_suite());
	cleanup_noted();
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/*
 * conformance_suite: the external batteries through the real matching core
 * (engine/replay/rpl.c adapter, engine/eng_core.c core):
 *
 *  - all 34 flash1 edge cases and all 16 Liquibook IOC/FOK cases: every
 *    report line, the report hash, and the book state after every message
 *    where the case gives one (best bid/ask, both sides' levels, probe);
 *  - the 1,996,097-message orders_normal_s23 workload, streamed from .xz:
 *    its published report hash and per-type counts;
 *  - the SHA-256 module against FIPS 180-2 vectors, the MEBW_001 reader
 *    against bad files, and the shmex-replay program's exit statuses.
 *
 * Expected data is never edited; the adapter translates (docs/matching.md).
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/replay/rpl.h"
#include "engine/eng_core.h"
#include "engine/replay/rpl_sha256.h"
#include "tests/shmex_test.h"

#define WORKLOAD "flash1-workloads/orders_normal_s23_n1000000.bin.xz"
#define WORKLOAD_SHA "e9b2e3926854410b01a035aeb25dd05f1e597c233be8263de9eb49b6713d367e"

static void sha_hex(const void *data, size_t len, char out[65])
{
	struct rpl_sha256 c;
	uint8_t d[32];
	rpl_sha256_init(&c);
	rpl_sha256_update(&c, data, len);
	rpl_sha256_final(&c, d);
	rpl_sha256_hex(d, out);
}

START_TEST(sha256_fips_vectors)
{
	char hex[65];
	sha_hex("abc", 3, hex);
	ck_assert_str_eq(
		hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	sha_hex("", 0, hex);
	ck_assert_str_eq(
		hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	sha_hex(m, strlen(m), hex);
	ck_assert_str_eq(
		hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
	/* One million 'a', fed in odd-sized pieces across block borders. */
	struct rpl_sha256 c;
	uint8_t d[32];
	char buf[997];
	memset(buf, 'a', sizeof(buf));
	rpl_sha256_init(&c);
	size_t left = 1000000;
	while (left) {
		size_t n = left < sizeof(buf) ? left : sizeof(buf);
		rpl_sha256_update(&c, buf, n);
		left -= n;
	}
	rpl_sha256_final(&c, d);
	rpl_sha256_hex(d, hex);
	ck_assert_str_eq(
		hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}
END_TEST

/* The expected hash must be the hash of the expected lines (checks both
 * the data and our SHA-256 before anything is blamed on the engine). */
static void expected_hash_consistent(const struct rpl_case *c)
{
	struct rpl_sha256 s;
	uint8_t d[32];
	char hex[65];
	rpl_sha256_init(&s);
	for (size_t i = 0; i < c->nreports; i++) {
		if (i)
			rpl_sha256_update(&s, "\n", 1);
		rpl_sha256_update(&s, c->reports[i], strlen(c->reports[i]));
	}
	rpl_sha256_final(&s, d);
	rpl_sha256_hex(d, hex);
	ck_assert_msg(!strcmp(hex, c->sha256),
		      "%s: expected_sha256 is not the hash of "
		      "expected_reports",
		      c->name);
}

static void run_battery(const char *rel, size_t want_cases, size_t min_states)
{
	char err[512];
	struct rpl_battery *b;
	int rc = rpl_battery_load(test_conformance(rel), &b, err, sizeof(err));
	ck_assert_msg(rc == 0, "%s", err);
	ck_assert_uint_eq(b->ncases, want_cases);
	size_t states = 0;
	for (size_t i = 0; i < b->ncases; i++) {
		const struct rpl_case *c = &b->cases[i];
		expected_hash_consistent(c);
		struct rpl_cfg cfg;
		rpl_cfg_default(&cfg, true);
		struct rpl_result res;
		ck_assert_int_eq(rpl_case_run(c, &cfg, &res), 0);
		ck_assert_msg(res.pass, "%s: %s", c->name, res.why);
		ck_assert_uint_eq(res.nlines, c->nreports);
		ck_assert_str_eq(res.sha256, c->sha256);
		ck_assert_uint_eq(res.nstates_checked, c->nstates);
		states += res.nstates_checked;
	}
	ck_assert_uint_ge(states, min_states);
	rpl_battery_free(b);
}

START_TEST(flash1_edge_cases)
{
	/* 144 states: one per message, except the sweep (its last only). */
	run_battery("flash1-edge-cases/cases.json", 34, 144);
}
END_TEST

START_TEST(liquibook_ioc_fok)
{
	run_battery("liquibook-ioc-fok/cases.json", 16, 16);
}
END_TEST

/* A case replayed through a plain .bin file gives the same lines as the
 * JSON run: exercises the uncompressed reader. */
struct lines {
	char **v;
	size_t n;
};

static void keep_line(void *ctx, const char *s, size_t len)
{
	struct lines *l = ctx;
	l->v = realloc(l->v, (l->n + 1) * sizeof(char *));
	l->v[l->n] = strndup(s, len);
	l->n++;
}

static void put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static char *write_bin(const struct rpl_case *c, size_t truncate_to, uint64_t magic)
{
	static char path[64];
	snprintf(path, sizeof(path), "/tmp/shmex-test-%d.bin", (int)getpid());
	FILE *f = fopen(path, "wb");
	ck_assert_ptr_nonnull(f);
	uint8_t hdr[16];
	put_le(hdr, magic, 8);
	put_le(hdr + 8, 1, 4);
	put_le(hdr + 12, c->nmsgs, 4);
	fwrite(hdr, 1, 16, f);
	for (size_t i = 0; i < c->nmsgs && i < truncate_to; i++) {
		const struct rpl_msg *m = &c->msgs[i];
		uint8_t rec[40] = {0};
		rec[0] = m->type;
		rec[1] = m->side;
		rec[2] = m->tif != 0;
		put_le(rec + 4, (uint64_t)m->qty, 4);
		put_le(rec + 8, m->seq, 8);
		put_le(rec + 16, m->order_id, 8);
		put_le(rec + 24, (uint64_t)m->price, 8);
		fwrite(rec, 1, 40, f);
	}
	fclose(f);
	return path;
}

START_TEST(bin_workload_matches_json_case)
{
	char err[512];
	struct rpl_battery *b;
	ck_assert_int_eq(
		rpl_battery_load(test_conformance("flash1-edge-cases/cases.json"), &b,
				 err, sizeof(err)),
		0);
	const struct rpl_case *c = NULL;
	for (size_t i = 0; i < b->ncases; i++)
		if (!strcmp(b->cases[i].name, "deep_fifo_scattered_cancel"))
			c = &b->cases[i];
	ck_assert_ptr_nonnull(c);
	const char *path = write_bin(c, SIZE_MAX, RPL_WL_MAGIC);
	struct rpl_wl *w;
	ck_assert_int_eq(rpl_wl_open(&w, path, err, sizeof(err)), 0);
	ck_assert_uint_eq(rpl_wl_count(w), c->nmsgs);
	struct lines got = {0};
	struct rpl_cfg cfg;
	rpl_cfg_default(&cfg, true);
	cfg.line = keep_line;
	cfg.ctx = &got;
	struct rpl *r;
	ck_assert_int_eq(rpl_open(&r, &cfg), 0);
	struct rpl_msg m;
	int rc;
	while ((rc = rpl_wl_next(w, &m)) == 1)
		ck_assert_int_eq(rpl_apply(r, &m), 0);
	ck_assert_int_eq(rc, 0);
	rpl_wl_close(w);
	char hex[65];
	rpl_report_hex(r, hex);
	rpl_close(r);
	ck_assert_uint_eq(got.n, c->nreports);
	for (size_t i = 0; i < got.n; i++) {
		ck_assert_str_eq(got.v[i], c->reports[i]);
		free(got.v[i]);
	}
	free(got.v);
	ck_assert_str_eq(hex, c->sha256);

	/* Truncated: fewer records than announced is an error. */
	path = write_bin(c, c->nmsgs - 1, RPL_WL_MAGIC);
	ck_assert_int_eq(rpl_wl_open(&w, path, err, sizeof(err)), 0);
	while ((rc = rpl_wl_next(w, &m)) == 1)
		;
	ck_assert_int_eq(rc, -EIO);
	rpl_wl_close(w);
	/* Wrong magic. */
	path = write_bin(c, SIZE_MAX, RPL_WL_MAGIC + 1);
	ck_assert_int_eq(rpl_wl_open(&w, path, err, sizeof(err)), -EINVAL);
	/* Missing file. */
	ck_assert_int_eq(rpl_wl_open(&w, "/nonexistent/x.bin", err, sizeof(err)),
			 -ENOENT);
	unlink(path);
	rpl_battery_free(b);
}
END_TEST

START_TEST(workload_orders_normal_s23)
{
	char err[512];
	struct rpl_wl *w;
	int rc = rpl_wl_open(&w, test_conformance(WORKLOAD), err, sizeof(err));
	ck_assert_msg(rc == 0, "%s", err);
	ck_assert_uint_eq(rpl_wl_count(w), 1996097);
	struct rpl_cfg cfg;
	rpl_cfg_default(&cfg, false);
	struct rpl *r;
	ck_assert_int_eq(rpl_open(&r, &cfg), 0);
	struct rpl_msg m;
	size_t n = 0;
	while ((rc = rpl_wl_next(w, &m)) == 1) {
		ck_assert_int_eq(rpl_apply(r, &m), 0);
		n++;
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_uint_eq(n, 1996097);
	rpl_wl_close(w);
	uint64_t c[6];
	rpl_counts(r, c);
	ck_assert_uint_eq(c[0], 1000000);
	ck_assert_uint_eq(c[1], 62474);
	ck_assert_uint_eq(c[2], 931363);
	ck_assert_uint_eq(c[3], 164857);
	ck_assert_uint_eq(c[4], 38131);
	ck_assert_uint_eq(c[5], 7818);
	ck_assert_uint_eq(rpl_rejected(r), 0);
	char why[256];
	ck_assert_msg(eng_core_check(rpl_book(r), why, sizeof(why)) == 0, "%s", why);
	char hex[65];
	rpl_report_hex(r, hex);
	ck_assert_str_eq(hex, WORKLOAD_SHA);
	rpl_close(r);
}
END_TEST

static int run_replay(const char *a1, const char *a2, const char *a3)
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (!freopen("/dev/null", "w", stdout) ||
		    !freopen("/dev/null", "w", stderr))
			_exit(99);
		const char *bin = test_bin("shmex-replay");
		execl(bin, bin, a1, a2, a3, (char *)NULL);
		_exit(127);
	}
	int st = test_wait_pid(pid, 60000);
	ck_assert_int_ne(st, -1);
	ck_assert(WIFEXITED(st));
	return WEXITSTATUS(st);
}

START_TEST(replay_program)
{
	const char *f1 = test_conformance("flash1-edge-cases/cases.json");
	const char *f2 = test_conformance("liquibook-ioc-fok/cases.json");
	ck_assert_int_eq(run_replay("--check", f1, f2), 0);
	ck_assert_int_eq(run_replay("--sha256", f2, NULL), 0);
	ck_assert_int_eq(run_replay("--help", NULL, NULL), 0);
	ck_assert_int_eq(run_replay("--bogus", NULL, NULL), 2);
	ck_assert_int_eq(run_replay(NULL, NULL, NULL), 2);
	/* --through-shm (a real shmex-matcher over rings) is checked by
	 * tests/test_eng_matcher.c. */
	ck_assert_int_eq(run_replay("--check", "/nonexistent.json", NULL), 1);
	ck_assert_int_eq(run_replay("--case", "no_such_case", f1), 1);
}
END_TEST

static Suite *conformance_suite(void)
{
	Suite *s = suite_create("conformance");
	TCase *tc = tcase_create("batteries");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, sha256_fips_vectors);
	tcase_add_test(tc, flash1_edge_cases);
	tcase_add_test(tc, liquibook_ioc_fok);
	tcase_add_test(tc, bin_workload_matches_json_case);
	tcase_add_test(tc, replay_program);
	suite_add_tcase(s, tc);
	tc = tcase_create("workload");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, workload_orders_normal_s23);
	suite_add_tcase(s, tc);
	return s;
}

SHMEX_TEST_MAIN(conformance_suite)

/*
 * qc_suite: the QuantCup 2011 API over shmex's core (tests/qc.h), which
 * the anchors benchmark runs beside the contest's engines.  The contest's
 * own 14-test autotester (test.c, unmodified, built over the adapter as
 * qc-autotester) must pass; and the adapter's mapping: ids from 1, each
 * trade reported buyer then seller at the resting order's price, cancels
 * of unknown or finished ids ignored, a new session restarting the ids
 * on the same book.
 */
#include "tests/shmex_test.h"

#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/eng_core.h"
#include "tests/qc.h"

START_TEST(contest_autotester_passes)
{
	/* $SHMEX_BIN_DIR/../tests/qc-autotester */
	char path[4096];
	snprintf(path, sizeof(path), "%s", test_bin("shmex"));
	char *slash = strrchr(path, '/');
	ck_assert_ptr_nonnull(slash);
	snprintf(slash, sizeof(path) - (size_t)(slash - path), "/../tests/qc-autotester");
	ck_assert_msg(access(path, X_OK) == 0, "%s not built", path);
	FILE *p = popen(path, "r");
	ck_assert_ptr_nonnull(p);
	char line[512], last[512] = "";
	while (fgets(line, sizeof(line), p))
		if (strstr(line, "tests correct"))
			snprintf(last, sizeof(last), "%s", line);
	int st = pclose(p);
	ck_assert_int_eq(st, 0);
	ck_assert_str_eq(last, "You got 14/14 tests correct.\n");
}
END_TEST

static t_execution got[16];
static int ngot;

static void record(void *ctx, const t_execution *x)
{
	(void)ctx;
	ck_assert_int_lt(ngot, 16);
	got[ngot++] = *x;
}

static struct qc *open_small(void)
{
	struct qc_cfg cfg = {
		.caps = {.symbols = 4, .levels = 64, .orders = 64, .fills = 128},
		.max_ids = 32,
	};
	struct qc *q;
	ck_assert_int_eq(qc_open(&q, &cfg, record, NULL), 0);
	ngot = 0;
	return q;
}

static t_order order(const char *trader, int side, unsigned price, unsigned long size)
{
	t_order o;
	memset(&o, 0, sizeof(o));
	memcpy(o.symbol, "SYM", 4);
	snprintf(o.trader, sizeof(o.trader), "%s", trader);
	o.side = side;
	o.price = (t_price)price;
	o.size = size;
	return o;
}

static void expect(int i, const char *trader, int side, unsigned price,
		   unsigned long size)
{
	ck_assert_str_eq(got[i].trader, trader);
	ck_assert_str_eq(got[i].symbol, "SYM");
	ck_assert_int_eq(got[i].side, side);
	ck_assert_uint_eq(got[i].price, price);
	ck_assert_uint_eq(got[i].size, size);
}

START_TEST(buyer_then_seller_at_the_resting_price)
{
	struct qc *q = open_small();
	t_order a = order("ASK1", 1, 101, 100), b = order("BID1", 0, 103, 150);
	ck_assert_uint_eq(qc_limit(q, &a), 1);
	ck_assert_uint_eq(qc_limit(q, &b), 2);
	ck_assert_int_eq(ngot, 2);
	expect(0, "BID1", 0, 101, 100);
	expect(1, "ASK1", 1, 101, 100);
	/* The incoming sell trades with the resting bid's 50: buyer first. */
	t_order s = order("ASK2", 1, 100, 80);
	ck_assert_uint_eq(qc_limit(q, &s), 3);
	ck_assert_int_eq(ngot, 4);
	expect(2, "BID1", 0, 103, 50);
	expect(3, "ASK2", 1, 103, 50);
	qc_close(q);
}
END_TEST

START_TEST(cancels_of_unknown_or_finished_ids_are_ignored)
{
	struct qc *q = open_small();
	qc_cancel(q, 0);
	qc_cancel(q, 7);
	t_order a = order("A", 1, 101, 10), b = order("B", 1, 101, 10);
	ck_assert_uint_eq(qc_limit(q, &a), 1);
	ck_assert_uint_eq(qc_limit(q, &b), 2);
	qc_cancel(q, 1);
	qc_cancel(q, 1);
	t_order c = order("C", 0, 101, 20);
	ck_assert_uint_eq(qc_limit(q, &c), 3);
	/* Only B's 10 was left. */
	ck_assert_int_eq(ngot, 2);
	expect(0, "C", 0, 101, 10);
	expect(1, "B", 1, 101, 10);
	qc_cancel(q, 2); /* filled */
	qc_cancel(q, 3); /* its 10 open: cancelled */
	t_order d = order("D", 1, 101, 5);
	ck_assert_uint_eq(qc_limit(q, &d), 4);
	ck_assert_int_eq(ngot, 2);
	qc_close(q);
}
END_TEST

START_TEST(a_session_restarts_ids_on_the_same_book)
{
	struct qc *q = open_small();
	t_order a = order("A", 1, 101, 10), b = order("B", 1, 102, 10);
	ck_assert_uint_eq(qc_limit(q, &a), 1);
	qc_session(q, 0); /* keeps A's order resting */
	ck_assert_uint_eq(qc_limit(q, &b), 1);
	qc_session(q, 1); /* cancels B's, the only one of this session */
	t_order c = order("C", 0, 110, 30);
	ck_assert_uint_eq(qc_limit(q, &c), 1);
	ck_assert_int_eq(ngot, 2);
	expect(0, "C", 0, 101, 10);
	expect(1, "A", 1, 101, 10);
	ck_assert_int_eq(qc_reset(q), 0);
	ck_assert_uint_eq(qc_limit(q, &a), 1);
	ck_assert_int_eq(ngot, 2); /* the reset book was empty */
	qc_close(q);
}
END_TEST

START_TEST(ids_beyond_the_session_bound_are_refused)
{
	struct qc *q = open_small();
	t_order a = order("A", 1, 200, 1);
	for (t_orderid i = 1; i <= 32; i++)
		ck_assert_uint_eq(qc_limit(q, &a), i);
	ck_assert_uint_eq(qc_limit(q, &a), 0);
	qc_close(q);
}
END_TEST

static Suite *qc_suite(void)
{
	Suite *s = suite_create("qc");
	TCase *tc = tcase_create("adapter");
	tcase_add_test(tc, contest_autotester_passes);
	tcase_add_test(tc, buyer_then_seller_at_the_resting_price);
	tcase_add_test(tc, cancels_of_unknown_or_finished_ids_are_ignored);
	tcase_add_test(tc, a_session_restarts_ids_on_the_same_book);
	tcase_add_test(tc, ids_beyond_the_session_bound_are_refused);
	suite_add_tcase(s, tc);
	return s;
}

SHMEX_TEST_MAIN(qc_suite)

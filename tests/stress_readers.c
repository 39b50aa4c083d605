/*
 * readers_stress_suite (make stress): the reader invariant machinery of
 * tests/test_reader_invariants.c, longer and rougher, bounded to about a
 * minute in all:
 *
 *  - 16 reader processes check every snapshot while the core applies
 *    millions of random requests, and reader processes are killed with
 *    SIGKILL at random moments (often inside a read-side section) and
 *    replaced; every dead reader's slot must be reaped by the writer's
 *    poll and none of the violations counters may move;
 *  - rounds of a pinned reader (nothing it saw is reused until it leaves)
 *    and of a reader killed while pinned (reaped, whether its pid is gone
 *    or it is still a zombie);
 *  - the same checks against a real shmex-matcher fed a million requests
 *    through its ring.
 *
 * The scenarios and helpers are the check suite's own: this file includes
 * it with RI_STRESS defined, which leaves out its tests and main.
 */
#define RI_STRESS 1
#include "tests/test_reader_invariants.c"

/* The kill -9 churn applies at least MIN requests, then goes on while its
 * wall-clock budget lasts, up to MAX (no assertion depends on the time). */
#define STRESS_CHURN_NS 20000000000ull
#define STRESS_CHURN_MIN 1000000ull
#define STRESS_CHURN_MAX 20000000ull

START_TEST(churn_with_kill9)
{
	struct ri_writer W;
	pid_t pids[16];
	const int n = 16;
	uint64_t kills = 0, snaps = 0, orders = 0, statuses = 0;
	uint64_t rng = UINT64_C(0x5851f42d4c957f2d) ^ (uint64_t)getpid();
	new_instance();
	writer_open(&W, 4096, 8192, 65536, 32, 8);
	warm_up(&W);
	for (int i = 0; i < n; i++)
		pids[i] = spawn_reader(&W, i);
	wait_ready(&W, n);
	unsigned long long end = test_now_ns() + STRESS_CHURN_NS;
	while (W.requests < STRESS_CHURN_MIN ||
	       (W.requests < STRESS_CHURN_MAX && test_now_ns() < end)) {
		writer_run(&W, 20000);
		/* Kill one reader wherever it is, account for what it
		 * checked, start a replacement. */
		int i = (int)(rnd(&rng) % (uint64_t)n);
		kill(pids[i], SIGKILL);
		ck_assert_int_ne(test_wait_pid(pids[i], 10000), -1);
		const struct ri_stat *r = &ctl->r[i];
		ck_assert_msg(r->violations == 0, "reader %d: %" PRIu64 " violations: %s",
			      i, r->violations, r->first);
		snaps += r->snaps;
		orders += r->orders;
		statuses += r->statuses;
		kills++;
		pids[i] = spawn_reader(&W, i);
		wait_ready(&W, n);
	}
	finish_readers(pids, n, (uint64_t)n);
	/* Every killed reader's slot is reaped by the writer's poll. */
	unsigned long long deadline = test_now_ns() + 10000000000ull;
	struct shm_rcu_stats rs;
	for (;;) {
		writer_batch(&W, RI_BATCH);
		shm_rcu_stats(&W.w, &rs);
		if (rs.registered == 0)
			break;
		ck_assert_msg(test_now_ns() < deadline, "%u slots never reaped",
			      rs.registered);
		usleep(1000);
	}
	ck_assert_uint_ge(rs.reaped, kills);
	fprintf(stderr,
		"  writer: %" PRIu64 " requests (%" PRIu64 " accepted, %" PRIu64
		" book full), %" PRIu64
		" readers killed with SIGKILL and reaped (%" PRIu64
		" slots reaped); the killed ones had checked %" PRIu64
		" snapshots (%" PRIu64 " orders), %" PRIu64 " statuses, 0 violations\n",
		W.requests, W.accepted, W.full, kills, rs.reaped, snaps, orders,
		statuses);
	writer_close(&W);
}
END_TEST

START_TEST(pinned_rounds)
{
	for (int i = 0; i < 5; i++) {
		scenario_pinned(50000);
		ctl_reset();
		scenario_killed(i % 2 == 0);
		ctl_reset();
	}
}
END_TEST

START_TEST(full_table_rounds)
{
	scenario_full_table(500000);
}
END_TEST

START_TEST(real_matcher_long)
{
	scenario_real_matcher(4, 1000000);
}
END_TEST

static Suite *readers_stress_suite(void)
{
	Suite *s = suite_create("readers_stress");
	TCase *tc = tcase_create("stress");
	tcase_add_unchecked_fixture(tc, ctl_setup, ctl_teardown);
	tcase_add_checked_fixture(tc, ctl_reset, NULL);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, churn_with_kill9);
	tcase_add_test(tc, pinned_rounds);
	tcase_add_test(tc, full_table_rounds);
	tcase_add_test(tc, real_matcher_long);
	suite_add_tcase(s, tc);
	return s;
}

SHMEX_TEST_MAIN(readers_stress_suite)

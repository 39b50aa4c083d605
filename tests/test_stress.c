/*
 * stress_suite: the short run of shmex-stress that `make check` does on
 * every change (`make stress` runs the full minute).  One test: the
 * harness starts its exchange, trades, reads and kills for 10 seconds
 * with chaos every 200 ms, checks at a checkpoint and at the end, and
 * must end with exit status 0 and a RESULT line with no violation, at
 * least one kill and some events.  On failure its whole output (every
 * violation with its evidence and the seed) is in the test's message.
 */
#include "tests/shmex_test.h"

#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define OUT_CAP (1 << 20)

START_TEST(short_run_with_kills_has_no_violation)
{
	char inst[64], ddir[PATH_MAX];
	test_instance(inst, sizeof(inst));
	const char *root = getenv("SHMEX_TEST_DATA");
	snprintf(ddir, sizeof(ddir), "%s/%s", root && *root ? root : "/tmp", inst);
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(p[1], 1);
		dup2(p[1], 2);
		close(p[0]);
		close(p[1]);
		char dd[PATH_MAX + 16];
		snprintf(dd, sizeof(dd), "--data-dir=%s", ddir);
		execl(test_bin("shmex-stress"), "shmex-stress", "--seconds", "10",
		      "--checkpoint-s", "5", "--chaos-ms", "200", "--instance", inst, dd,
		      (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	char *out = malloc(OUT_CAP);
	ck_assert_ptr_nonnull(out);
	size_t got = 0;
	ssize_t r;
	while ((r = read(p[0], out + got, OUT_CAP - 1 - got)) > 0 && got + 1 < OUT_CAP)
		got += (size_t)r;
	out[got] = 0;
	close(p[0]);
	int st = test_wait_pid(pid, 120000);
	const char *res = strstr(out, "RESULT stress ");
	unsigned long long events = 0, kills = 0, viol = 1;
	if (res)
		sscanf(res, "RESULT stress events=%llu kills=%llu violations=%llu",
		       &events, &kills, &viol);
	/* The tail of the output says what went wrong. */
	const char *tail = got > 6000 ? out + got - 6000 : out;
	ck_assert_msg(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 && res &&
			      viol == 0,
		      "shmex-stress exit 0x%x:\n%s", (unsigned)st, tail);
	ck_assert_msg(kills > 0 && events > 100, "no chaos or no load:\n%s", tail);
	fprintf(stderr, "%.*s",
		(int)(strchr(res, '\n') ? strchr(res, '\n') - res + 1 : 0), res);
	free(out);
	test_cleanup_instance(inst);
}
END_TEST

static Suite *stress_suite(void)
{
	Suite *s = suite_create("stress");
	TCase *tc = tcase_create("short");
	tcase_set_timeout(tc, 150);
	tcase_add_test(tc, short_run_with_kills_has_no_violation);
	suite_add_tcase(s, tc);
	return s;
}

SHMEX_TEST_MAIN(stress_suite)

/*
 * stress_suite: the short run of shmex-stress that `make check` does on
 * every change (`make stress` runs the full minute).  One test: the
 * harness starts its exchange, trades, reads and kills for 10 seconds
 * with chaos every 200 ms, checks at a checkpoint and at the end, and
 * must end with exit status 0 and a RESULT line with no violation, at
 * least one kill and some events.  On failure the tail of its output
 * (every violation with its evidence and the seed) is in the test's
 * message.  A second, 3-second run plants two faults in the harness's own
 * bookkeeping (SHMEX_STRESS_FAULT) and must fail with both found: the
 * checks are able to fail.
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

/* Runs shmex-stress with args (NULL-terminated); its exit status, the
 * output in *out (owned by the caller). */
static int run_stress(const char *const *args, char **out)
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
		const char *argv[32] = {"shmex-stress", "--instance", inst, dd};
		int n = 4;
		for (int i = 0; args[i] && n < 31; i++)
			argv[n++] = args[i];
		argv[n] = NULL;
		execv(test_bin("shmex-stress"), (char *const *)argv);
		_exit(127);
	}
	close(p[1]);
	char *buf = malloc(OUT_CAP);
	ck_assert_ptr_nonnull(buf);
	size_t got = 0;
	ssize_t r;
	while (got + 1 < OUT_CAP && (r = read(p[0], buf + got, OUT_CAP - 1 - got)) > 0)
		got += (size_t)r;
	buf[got] = 0;
	close(p[0]);
	int st = test_wait_pid(pid, 120000);
	test_cleanup_instance(inst);
	*out = buf;
	return st;
}

/* The numbers of the RESULT line; -1 when there is none. */
static int result(const char *out, unsigned long long *events, unsigned long long *kills,
		  unsigned long long *viol)
{
	const char *res = strstr(out, "RESULT stress ");
	if (!res || sscanf(res, "RESULT stress events=%llu kills=%llu violations=%llu",
			   events, kills, viol) != 3)
		return -1;
	return 0;
}

static const char *tail_of(const char *out)
{
	size_t n = strlen(out);
	return n > 6000 ? out + n - 6000 : out;
}

START_TEST(short_run_with_kills_has_no_violation)
{
	static const char *const args[] = {
		"--seconds", "10", "--checkpoint-s", "5", "--chaos-ms", "200", NULL};
	char *out;
	int st = run_stress(args, &out);
	unsigned long long events = 0, kills = 0, viol = 1;
	int rc = result(out, &events, &kills, &viol);
	ck_assert_msg(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 && rc == 0 &&
			      viol == 0,
		      "shmex-stress exit 0x%x:\n%s", (unsigned)st, tail_of(out));
	ck_assert_msg(kills > 0 && events > 100, "no chaos or no load:\n%s",
		      tail_of(out));
	const char *res = strstr(out, "RESULT stress ");
	fprintf(stderr, "%.*s", (int)strcspn(res, "\n") + 1, res);
	free(out);
}
END_TEST

/* The checks can fail: with two faults planted in the harness's own
 * bookkeeping, the run must report both, fail, and print the seed. */
START_TEST(planted_faults_are_found)
{
	setenv("SHMEX_STRESS_FAULT", "status,deposit", 1);
	static const char *const args[] = {"--seconds", "3", "--no-chaos",
					   "--seed",    "7", NULL};
	char *out;
	int st = run_stress(args, &out);
	unsetenv("SHMEX_STRESS_FAULT");
	unsigned long long events = 0, kills = 1, viol = 0;
	int rc = result(out, &events, &kills, &viol);
	ck_assert_msg(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 1 && rc == 0 &&
			      viol >= 2 && kills == 0,
		      "shmex-stress exit 0x%x:\n%s", (unsigned)st, tail_of(out));
	ck_assert_msg(strstr(out, "VIOLATION: setup account 1: deposited") &&
			      strstr(out, "(seed=7)"),
		      "%s", tail_of(out));
	ck_assert_msg(strstr(out, "a reply said") || strstr(out, "reply's fill"), "%s",
		      tail_of(out));
	free(out);
}
END_TEST

static Suite *stress_suite(void)
{
	Suite *s = suite_create("stress");
	TCase *tc = tcase_create("short");
	tcase_set_timeout(tc, 150);
	tcase_add_test(tc, short_run_with_kills_has_no_violation);
	tcase_add_test(tc, planted_faults_are_found);
	suite_add_tcase(s, tc);
	return s;
}

SHMEX_TEST_MAIN(stress_suite)

/*
 * Helpers shared by the check suites (see shmex_test.h).
 */
#include "tests/shmex_test.h"

#include "shm/shm_instance.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* SHMEX_TEST_TAG (set by tests/run-tests.sh to its own pid) keeps the
 * objects of concurrent test runs apart, so each run's leftover check sees
 * only its own.  Only up to 8 alphanumeric characters of it are used. */
static const char *test_tag(void)
{
	static char tag[9];
	static int done;
	if (!done) {
		const char *t = getenv("SHMEX_TEST_TAG");
		size_t n = 0;
		while (t && t[n] && n < 8 &&
		       ((t[n] >= '0' && t[n] <= '9') || (t[n] >= 'a' && t[n] <= 'z') ||
			(t[n] >= 'A' && t[n] <= 'Z'))) {
			tag[n] = t[n];
			n++;
		}
		tag[n] = 0;
		done = 1;
	}
	return tag;
}

/* The runner's pid (set by test_run before the forks), 0 outside one. */
static pid_t runner_pid;

static void instances_path(char *buf, size_t len, pid_t runner)
{
	snprintf(buf, len, "/tmp/shmex-instances.%d", (int)runner);
}

void test_instance(char *buf, size_t len)
{
	static unsigned counter;
	snprintf(buf, len, "test%s-%d-%u", test_tag(), (int)getpid(), counter++);
	if (runner_pid) {
		/* For test_run: a failed assertion skips the checked teardown
		 * that would have removed the instance. */
		char path[64];
		instances_path(path, sizeof(path), runner_pid);
		FILE *f = fopen(path, "a");
		if (f) {
			fprintf(f, "%s\n", buf);
			fclose(f);
		}
	}
}

int test_run(Suite *suite)
{
	runner_pid = getpid();
	SRunner *sr = srunner_create(suite);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	char path[64], line[128];
	instances_path(path, sizeof(path), runner_pid);
	FILE *f = fopen(path, "r");
	/* Only after a failure: a passing test must clean up by itself, and
	 * run-tests.sh's leftover check says when one did not. */
	while (failed && f && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		if (line[0])
			test_cleanup_instance(line);
	}
	if (f)
		fclose(f);
	unlink(path);
	runner_pid = 0;
	return failed;
}

static int walk_instance(const char *instance, int do_unlink)
{
	char prefix[128];
	snprintf(prefix, sizeof(prefix), "shmex.%s.", instance);
	size_t plen = strlen(prefix);
	DIR *d = opendir("/dev/shm");
	if (!d)
		return 0;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, prefix, plen) != 0)
			continue;
		n++;
		if (do_unlink) {
			char path[512];
			snprintf(path, sizeof(path), "/dev/shm/%s", e->d_name);
			unlink(path);
		}
	}
	closedir(d);
	return n;
}

int test_cleanup_instance(const char *instance)
{
	return walk_instance(instance, 1);
}

int test_count_objects(const char *instance)
{
	return walk_instance(instance, 0);
}

const char *test_bin(const char *name)
{
	static char path[8][512];
	static int next;
	const char *dir = getenv("SHMEX_BIN_DIR");
	char *p = path[next++ % 8];
	snprintf(p, sizeof(path[0]), "%s/%s", dir ? dir : "build/bin", name);
	return p;
}

const char *test_conformance(const char *relpath)
{
	static char path[8][512];
	static int next;
	const char *dir = getenv("SHMEX_CONFORMANCE_DIR");
	char *p = path[next++ % 8];
	snprintf(p, sizeof(path[0]), "%s/%s", dir ? dir : "tests/data/conformance",
		 relpath);
	return p;
}

unsigned long long test_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

int test_wait_pid(pid_t pid, int timeout_ms)
{
	unsigned long long deadline = test_now_ns() + timeout_ms * 1000000ull;
	int status;
	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			return status;
		if (r < 0 && errno != EINTR)
			return -1;
		if (test_now_ns() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return -1;
		}
		usleep(1000);
	}
}

void test_instance_cfg(struct shm_instance_cfg *cfg, uint32_t nshards, uint32_t ngw,
		       uint32_t ring_cap)
{
	memset(cfg, 0, sizeof(*cfg));
	shm_settings_default(&cfg->s);
	cfg->s.shards = nshards;
	cfg->s.gateways = ngw;
	if (ring_cap)
		cfg->s.ring_capacity = ring_cap;
	cfg->s.orders = 65536;
	cfg->s.levels = 16384;
	cfg->s.fills = 131072;
	cfg->s.symbols = 1024;
	cfg->s.accounts = 4096;
	cfg->s.positions = 65536;
	cfg->mode = 0600;
}

void test_note_instance(const char *suite, const char *instance)
{
	char path[128];
	snprintf(path, sizeof(path), "/tmp/shmex-%s.%d", suite, (int)getppid());
	FILE *f = fopen(path, "a");
	if (f) {
		fprintf(f, "%s\n", instance);
		fclose(f);
	}
}

void test_cleanup_noted(const char *suite)
{
	char path[128], line[128];
	snprintf(path, sizeof(path), "/tmp/shmex-%s.%d", suite, (int)getpid());
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		if (line[0])
			test_cleanup_instance(line);
	}
	fclose(f);
	unlink(path);
}

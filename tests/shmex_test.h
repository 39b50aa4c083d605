/*
 * Helpers shared by the check suites.
 *
 * Each test file defines one suite named after its module and ends with
 * SHMEX_TEST_MAIN(shm_region_suite).  check forks per test, so a crash
 * fails one test, not the run.  Shared-memory names are unique per test
 * (test_instance), and test_cleanup_instance removes whatever an instance
 * left in /dev/shm.
 */
#ifndef SHMEX_TESTS_SHMEX_TEST_H
#define SHMEX_TESTS_SHMEX_TEST_H

#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/types.h>

/* Writes a fresh instance name "test<tag>-<pid>-<n>" into buf (>= 40 bytes);
 * <tag> is $SHMEX_TEST_TAG (tests/run-tests.sh sets it to its pid). */
void test_instance(char *buf, size_t len);
/* An instance configuration for tests: the default settings with nshards
 * shards, ngw gateways, rings of ring_cap messages (0: default), mode
 * 0600, and capacities small enough for many short-lived instances
 * (orders 65536, levels 16384, fills 131072, symbols 1024, accounts 4096,
 * positions 65536).  Tests change single settings on top. */
struct shm_instance_cfg;
void test_instance_cfg(struct shm_instance_cfg *cfg, uint32_t nshards, uint32_t ngw,
		       uint32_t ring_cap);
/* Removes every /dev/shm object of the instance; returns how many. */
int test_cleanup_instance(const char *instance);
/*
 * A failed assertion skips a test's checked teardown, so suites that start
 * exchanges note each instance (from the forked test, in a file named by
 * `suite` and the runner's pid) and their unchecked teardown, in the
 * runner, removes what the noted instances left: test_cleanup_noted.
 */
void test_note_instance(const char *suite, const char *instance);
void test_cleanup_noted(const char *suite);
/* Count of /dev/shm objects of the instance. */
int test_count_objects(const char *instance);
/* Path of a built program ($SHMEX_BIN_DIR/name, default build/bin/name). */
const char *test_bin(const char *name);
/* Path inside the conformance data ($SHMEX_CONFORMANCE_DIR). */
const char *test_conformance(const char *relpath);
/* Waits for pid up to timeout_ms; returns its wait status, or -1 on timeout
 * (the child is then killed with SIGKILL and reaped). */
int test_wait_pid(pid_t pid, int timeout_ms);
/* Monotonic time in nanoseconds. */
unsigned long long test_now_ns(void);

/*
 * Runs the suite and returns how many tests failed.  When one failed, the
 * /dev/shm objects of every instance test_instance named during the run
 * are removed (a failed assertion skips the checked teardown); after a
 * passing run nothing is, so that a test that leaks is still seen.
 */
int test_run(Suite *suite);

#define SHMEX_TEST_MAIN(suite_fn)                                          \
	int main(void)                                                     \
	{                                                                  \
		return test_run(suite_fn()) ? EXIT_FAILURE : EXIT_SUCCESS; \
	}

#endif

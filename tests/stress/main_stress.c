/*
 * shmex-stress: tries hard to break a running exchange and checks that it
 * did not (docs/stress.md).
 *
 *   shmex-stress [--seconds N] [--seed N] [--clients N] [--readers N]
 *                [--chaos-ms MS] [--checkpoint-s N] [--no-chaos]
 *                [--instance NAME] [--data-dir DIR]
 *
 * The parent starts the real `shmex` supervisor (2 shards, 2 gateways, a
 * journal in a fresh data directory), creates the setup accounts and
 * shares, forks the clients (stress_client.c) and readers
 * (stress_reader.c), and then runs the chaos schedule: every --chaos-ms
 * one seeded random action -- SIGKILL or SIGSTOP (+SIGCONT after 50-400
 * ms) of a reader, a client, a gateway or a matcher (the supervisor
 * restarts the exchange's processes; the parent restarts its own), and
 * rarely SIGKILL of the whole exchange at once, restarted from its
 * journals.  Every
 * --checkpoint-s, and at the end, it makes the exchange quiescent (every
 * stopped process continued, every client paused after its reply, both
 * matchers and both gateways up and answering) and runs st_check.  At the
 * end it also checks that nothing leaked: reader slots, file descriptors
 * of the exchange's processes and of itself, processes, /dev/shm objects.
 *
 * Output: a progress line per second, the checks' summaries, every
 * violation with its evidence as it is found, and last
 *   RESULT stress events=<n> kills=<n> violations=<n> seed=<n>
 * Exit status 0 when there was no violation, 1 otherwise, 2 on a usage
 * error.  SHMEX_STRESS_FAULT=status,deposit plants two faults in the
 * harness's own bookkeeping (a client remembers a status reply wrong; the
 * parent expects a wrong deposit), so that a test can see the checks
 * fail.  The same --seed gives the same schedule of actions and the same
 * requests per client incarnation; the interleaving is the machine's.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shm/shm_atomic.h"
#include "shm/shm_dec.h"
#include "shm/shm_opt.h"
#include "shm/shm_shard.h"
#include "shm/shm_snap.h"
#include "tests/client.h"
#include "tests/shmex_test.h"
#include "tests/stress/stress.h"

#define SETUP_BALANCE 200000
#define SETUP_SHARES 5000
#define T_MS 20000

struct st_ctl *st;

void st_violation(const char *fmt, ...)
{
	uint64_t n = __atomic_fetch_add(&st->nviol, 1, __ATOMIC_RELAXED);
	if (n >= ST_VIOL_MAX)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(st->viol[n], ST_VIOL_LEN, fmt, ap);
	va_end(ap);
}

static struct {
	int seconds, clients, readers, chaos_ms, checkpoint_s;
	bool chaos;
	uint64_t seed;
	char instance[64];
	char ddir[PATH_MAX];
	bool own_ddir;
} O = {60, 6, 3, 250, 15, true, 0, "", "", false};

static struct exchange ex;
static uint64_t rng;
static uint64_t kills, stops;
static uint64_t printed; /* violations printed so far */

struct stopped {
	pid_t pid;
	unsigned long long until;
};
static struct stopped stopped[64];
static int nstopped;

/* ---- small helpers ---- */

static unsigned long long now_ns(void)
{
	return test_now_ns();
}

static void print_violations(void)
{
	uint64_t n = __atomic_load_n(&st->nviol, __ATOMIC_RELAXED);
	for (; printed < n && printed < ST_VIOL_MAX; printed++)
		printf("VIOLATION: %s (seed=%" PRIu64 ")\n", st->viol[printed], O.seed);
	if (n > ST_VIOL_MAX && printed == ST_VIOL_MAX) {
		printf("VIOLATION: ... %" PRIu64 " more not kept\n", n - ST_VIOL_MAX);
		printed++;
	}
	fflush(stdout);
}

static int count_fds(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	DIR *d = opendir(path);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		/* A shard's order history, opened once on first use and
		 * kept (one per shard, not per client): not a leak. */
		char fd[400], to[PATH_MAX];
		snprintf(fd, sizeof(fd), "%s/%s", path, e->d_name);
		ssize_t len = readlink(fd, to, sizeof(to) - 1);
		if (len > 0) {
			to[len] = 0;
			const char *base = strrchr(to, '/');
			if (base && !strcmp(base, "/history"))
				continue;
		}
		n++;
	}
	closedir(d);
	return n - 1; /* the directory's own */
}

/* Processes other than this one whose arguments name our instance. */
static int instance_procs(pid_t *out, int max)
{
	DIR *d = opendir("/proc");
	if (!d)
		return 0;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9' ||
		    atoi(e->d_name) == getpid())
			continue;
		char path[300], buf[4096];
		snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		ssize_t len = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (len <= 0)
			continue;
		buf[len] = 0;
		for (ssize_t off = 0; off < len; off += (ssize_t)strlen(buf + off) + 1)
			if (!strcmp(buf + off, O.instance)) {
				if (n < max)
					out[n] = atoi(e->d_name);
				n++;
				break;
			}
	}
	closedir(d);
	return n;
}

/* ---- our own processes ---- */

static void spawn_client(int slot)
{
	struct st_client_sh *c = &st->c[slot];
	c->gen++;
	c->paused = 0;
	uint64_t seed = O.seed ^ ((uint64_t)(slot + 1) << 32) ^
			((uint64_t)c->gen * 0x9e3779b97f4a7c15ull);
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		st_client_main(slot, seed);
	}
	c->pid = pid > 0 ? pid : 0;
}

static void spawn_reader(int slot)
{
	uint64_t seed = O.seed ^ ((uint64_t)(slot + 101) << 32) ^ (uint64_t)now_ns();
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0)
		st_reader_main(slot, seed);
	st->r[slot].pid = pid > 0 ? pid : 0;
}

/* Reaps our dead children and, unless `respawn` is false, replaces them. */
static void reap(bool respawn)
{
	for (int i = 0; i < O.clients; i++) {
		pid_t p = st->c[i].pid;
		if (p > 0 && waitpid(p, NULL, WNOHANG) == p) {
			st->c[i].pid = 0;
			if (respawn)
				spawn_client(i);
		}
	}
	for (int i = 0; i < O.readers; i++) {
		pid_t p = st->r[i].pid;
		if (p > 0 && waitpid(p, NULL, WNOHANG) == p) {
			st->r[i].pid = 0;
			if (respawn)
				spawn_reader(i);
		}
	}
}

/* ---- chaos ---- */

static void resume_due(bool all)
{
	unsigned long long t = now_ns();
	for (int i = 0; i < nstopped;) {
		if (all || t >= stopped[i].until) {
			kill(stopped[i].pid, SIGCONT);
			stopped[i] = stopped[--nstopped];
		} else {
			i++;
		}
	}
}

static void do_stop(pid_t pid, int max_ms)
{
	if (pid <= 0 || nstopped >= 64)
		return;
	for (int i = 0; i < nstopped; i++)
		if (stopped[i].pid == pid)
			return;
	if (kill(pid, SIGSTOP) != 0)
		return;
	stopped[nstopped].pid = pid;
	stopped[nstopped].until =
		now_ns() + (50 + st_below(&rng, (uint64_t)max_ms)) * 1000000ull;
	nstopped++;
	stops++;
}

static void do_kill(pid_t pid)
{
	if (pid > 0 && kill(pid, SIGKILL) == 0)
		kills++;
}

static unsigned long long last_matcher_kill, last_full_kill;

/* The arguments every start of the exchange gets (main sets them). */
static const char *const *ex_args;

/*
 * The power cut: SIGKILL of the supervisor and every one of its children
 * at the same moment, then a new `shmex` on the same instance and data
 * directory, which recovers everything from the journals (on a new port:
 * the clients read st->port at each connect).
 */
/* Until pid has died (gone, or a zombie): a SIGKILLed process tearing
 * down its mappings still counts as alive to shmex's in-use check, while
 * its /proc cmdline already reads empty.  30 s at most. */
static void wait_dead(pid_t pid)
{
	for (int t = 0; t < 3000; t++) {
		char path[64], buf[256];
		snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return;
		ssize_t n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n <= 0)
			return;
		buf[n] = 0;
		const char *p = strrchr(buf, ')');
		if (!p || p[1] == 0 || p[2] == 'Z' || p[2] == 'X')
			return;
		usleep(10000);
	}
}

static void kill_exchange(void)
{
	pid_t all[64];
	/* The supervisor is stopped first, so that it forks no successor
	 * for a child it sees die (test_durability's kill_everything). */
	kill(ex.pid, SIGSTOP);
	int n = exchange_children(&ex, all, 64);
	for (int i = 0; i < n; i++)
		do_kill(all[i]);
	do_kill(ex.pid);
	waitpid(ex.pid, NULL, 0);
	for (int i = 0; i < n; i++)
		wait_dead(all[i]);
	close(ex.out_fd);
	ex.out_fd = -1;
	/* A child the supervisor was forking as it died is not in the
	 * list: every process that names the instance goes too (they get
	 * SIGTERM from PR_SET_PDEATHSIG, but a recovering matcher may take
	 * its time), or the new start would find the instance in use. */
	/* A SIGKILLed process inside a long fdatasync on a loaded disk
	 * lingers until the call returns: wait for it (30 s at most). */
	for (int t = 0; t < 1500; t++) {
		pid_t left[16];
		int nl = instance_procs(left, 16);
		if (!nl)
			break;
		for (int i = 0; i < nl && i < 16; i++) {
			do_kill(left[i]);
			wait_dead(left[i]);
		}
	}
	last_full_kill = now_ns();
	printf("stress: killed the whole exchange (supervisor and %d children); restarting it\n",
	       n);
	if (exchange_start(&ex, test_bin("shmex"), O.instance, ex_args, 120000) != 0) {
		st_violation(
			"shmex did not start again after the whole exchange was killed");
		return;
	}
	store_release(&st->port, ex.port);
}

static bool matchers_up(void)
{
	for (int k = 0; k < ST_NSHARDS; k++) {
		pid_t m = exchange_child(&ex, "shmex-matcher", k);
		if (m <= 0)
			return false;
		for (int i = 0; i < nstopped; i++)
			if (stopped[i].pid == m)
				return false;
	}
	return true;
}

static void chaos_step(void)
{
	unsigned r = (unsigned)st_below(&rng, 100);
	int g = (int)st_below(&rng, 2);
	if (r < 25 && O.readers) {
		do_kill(st->r[st_below(&rng, (uint64_t)O.readers)].pid);
	} else if (r < 37 && O.readers) {
		do_stop(st->r[st_below(&rng, (uint64_t)O.readers)].pid, 300);
	} else if (r < 52) {
		do_kill(st->c[st_below(&rng, (uint64_t)O.clients)].pid);
	} else if (r < 62) {
		do_stop(st->c[st_below(&rng, (uint64_t)O.clients)].pid, 400);
	} else if (r < 76) {
		do_kill(exchange_child(&ex, "shmex-gateway", g));
	} else if (r < 82) {
		do_stop(exchange_child(&ex, "shmex-gateway", g), 300);
	} else if (r < 95) {
		/* One matcher at a time, once both are back; rarely both at
		 * once (the supervisor then restarts everything from the
		 * journals). */
		if (!matchers_up() || now_ns() < last_matcher_kill + 1500000000ull)
			return;
		last_matcher_kill = now_ns();
		if (st_below(&rng, 12) == 0) {
			do_kill(exchange_child(&ex, "shmex-matcher", 0));
			do_kill(exchange_child(&ex, "shmex-matcher", 1));
		} else {
			do_kill(exchange_child(&ex, "shmex-matcher", g));
		}
	} else if (r < 98 || now_ns() < last_full_kill + 15000000000ull ||
		   !matchers_up()) {
		if (matchers_up())
			do_stop(exchange_child(&ex, "shmex-matcher", g), 200);
	} else {
		kill_exchange();
	}
}

/* ---- quiescence ---- */

static uint64_t events(void)
{
	uint64_t n = 0;
	for (int i = 0; i < ST_MAX_CLIENTS; i++)
		n += __atomic_load_n(&st->c[i].requests, __ATOMIC_RELAXED);
	return n;
}

/* A create of an existing account of each home shard: answered by both
 * matchers through a gateway. */
static bool probe(void)
{
	struct client c;
	if (client_connect(&c, "127.0.0.1", ex.port, 2000) != 0)
		return false;
	bool ok = true;
	for (int k = 1; k <= 2 && ok; k++) {
		char xml[128];
		snprintf(xml, sizeof(xml),
			 "<create><account id=\"%d\" balance=\"1\"/></create>", k);
		const char *rep;
		size_t len;
		ok = client_request(&c, xml, &rep, &len, 5000) == 0 &&
		     strstr(rep, "Account already exists") != NULL;
	}
	client_close(&c);
	return ok;
}

static uint64_t shard_events(void)
{
	uint64_t sum = 0;
	for (int k = 0; k < ST_NSHARDS; k++) {
		struct shm_snap rd;
		memset(&rd, 0, sizeof(rd));
		if (shm_snap_open(&rd, O.instance, (unsigned)k) != 0)
			return UINT64_MAX - (uint64_t)now_ns();
		struct shm_snap_shard_stats ss;
		shm_snap_stats(&rd, &ss);
		sum += ss.events + ss.last_seq;
		shm_snap_close(&rd);
	}
	return sum;
}

/* Everything continued, every client paused, the exchange settled. */
static bool quiesce(void)
{
	resume_due(true);
	store_release(&st->pause, 1u);
	unsigned long long deadline = now_ns() + 40000000000ull;
	for (;;) {
		reap(false);
		int waiting = 0;
		for (int i = 0; i < O.clients; i++)
			if (st->c[i].pid > 0 && !load_acquire(&st->c[i].paused))
				waiting++;
		if (!waiting)
			break;
		if (now_ns() > deadline) {
			for (int i = 0; i < O.clients; i++)
				if (st->c[i].pid > 0 && !load_acquire(&st->c[i].paused))
					do_kill(st->c[i].pid);
			usleep(100000);
			reap(false);
			break;
		}
		usleep(5000);
	}
	/* Both matchers and gateways present, both shards answering, and
	 * nothing moving for half a second. */
	deadline = now_ns() + 60000000000ull;
	uint64_t last = 0;
	int stable = 0;
	while (now_ns() < deadline) {
		bool up = true;
		for (int k = 0; k < ST_NSHARDS; k++)
			up &= exchange_child(&ex, "shmex-matcher", k) > 0 &&
			      exchange_child(&ex, "shmex-gateway", k) > 0;
		if (up && probe()) {
			uint64_t e = shard_events();
			stable = e == last ? stable + 1 : 0;
			last = e;
			if (stable >= 5)
				return true;
		} else {
			stable = 0;
		}
		usleep(100000);
	}
	return false;
}

static struct st_check_in chk;

static void checkpoint(const char *when, bool resume)
{
	unsigned long long t0 = now_ns();
	chk.when = when;
	chk.data_dir = O.ddir;
	if (!quiesce()) {
		st_violation("%s: the exchange did not become quiescent within 60 s",
			     when);
	} else {
		printf("%s (quiescent after %.1f s):\n", when,
		       (double)(now_ns() - t0) / 1e9);
		st_check(&chk);
	}
	print_violations();
	if (resume) {
		store_release(&st->pause, 0u);
		reap(true);
	}
}

/* ---- setup ---- */

static void pick_symbols(void)
{
	int have[ST_NSHARDS] = {0};
	int n = 0;
	for (int i = 0; n < ST_NSYMS; i++) {
		char s[16];
		snprintf(s, sizeof(s), "SX%d", i);
		uint32_t k = shm_shard_of_symbol(s, strlen(s), ST_NSHARDS);
		if (have[k] >= ST_NSYMS / ST_NSHARDS)
			continue;
		have[k]++;
		snprintf(st->syms[n++], sizeof(st->syms[0]), "%s", s);
	}
}

static int setup_exchange(void)
{
	static char buf[65536];
	int n = snprintf(buf, sizeof(buf), "<create>");
	for (int i = 1; i <= ST_NACC; i++) {
		n += snprintf(buf + n, sizeof(buf) - (size_t)n,
			      "<account id=\"%d\" balance=\"%d\"/>", i, SETUP_BALANCE);
		chk.setup_cash[i] = (int64_t)SETUP_BALANCE * SHM_CASH_ONE;
		if (i == 1 && st->fault_deposit)
			chk.setup_cash[i] += 1;
	}
	for (int s = 0; s < ST_NSYMS; s++) {
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, "<symbol sym=\"%s\">",
			      st->syms[s]);
		for (int i = 1; i <= ST_NACC; i++)
			n += snprintf(buf + n, sizeof(buf) - (size_t)n,
				      "<account id=\"%d\">%d</account>", i, SETUP_SHARES);
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, "</symbol>");
		chk.setup_shares[s] = (int64_t)ST_NACC * SETUP_SHARES * SHM_QTY_ONE;
	}
	snprintf(buf + n, sizeof(buf) - (size_t)n, "</create>");
	struct client c;
	if (client_connect(&c, "127.0.0.1", ex.port, T_MS) != 0) {
		fprintf(stderr, "shmex-stress: cannot connect to port %d\n", ex.port);
		return -1;
	}
	const char *rep;
	size_t len;
	int rc = client_request(&c, buf, &rep, &len, T_MS);
	int created = 0;
	for (const char *p = rep; rc == 0 && (p = strstr(p, "<created ")) != NULL; p++)
		created++;
	client_close(&c);
	if (rc != 0 || created != ST_NACC * (1 + ST_NSYMS)) {
		fprintf(stderr, "shmex-stress: setup failed (%d of %d created): %.400s\n",
			created, ST_NACC * (1 + ST_NSYMS), rc == 0 ? rep : strerror(-rc));
		return -1;
	}
	return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *f)
{
	(void)sb;
	(void)flag;
	(void)f;
	return remove(path);
}

/* Reader slots registered per shard (our own probe handle excluded). */
static int reader_slots(uint32_t out[ST_NSHARDS])
{
	for (int k = 0; k < ST_NSHARDS; k++) {
		struct shm_snap rd;
		memset(&rd, 0, sizeof(rd));
		if (shm_snap_open(&rd, O.instance, (unsigned)k) != 0)
			return -1;
		struct shm_snap_shard_stats ss;
		shm_snap_stats(&rd, &ss);
		out[k] = ss.readers.registered - 1;
		shm_snap_close(&rd);
	}
	return 0;
}

/* Open fds of each gateway and matcher, by role (gateways first). */
static void role_fds(int out[2 * ST_NSHARDS])
{
	for (int k = 0; k < ST_NSHARDS; k++) {
		out[k] = count_fds(exchange_child(&ex, "shmex-gateway", k));
		out[ST_NSHARDS + k] = count_fds(exchange_child(&ex, "shmex-matcher", k));
	}
}

/* ---- the end ---- */

static void finish(int fds_at_start, const uint32_t slots0[ST_NSHARDS], const int fds0[])
{
	store_release(&st->stop, 1u);
	store_release(&st->pause, 0u);
	resume_due(true);
	for (int i = 0; i < O.clients; i++)
		if (st->c[i].pid > 0 && test_wait_pid(st->c[i].pid, T_MS) < 0)
			st_violation("client %d did not stop", i);
	for (int i = 0; i < O.readers; i++)
		if (st->r[i].pid > 0 && test_wait_pid(st->r[i].pid, T_MS) < 0)
			st_violation("reader %d did not stop", i);
	/* Every reader slot of a killed reader is reaped (the matcher polls
	 * on its idle tick). */
	uint32_t slots[ST_NSHARDS] = {0};
	unsigned long long deadline = now_ns() + 15000000000ull;
	for (;;) {
		bool back = reader_slots(slots) == 0;
		for (int k = 0; back && k < ST_NSHARDS; k++)
			back = slots[k] <= slots0[k];
		if (back || now_ns() > deadline)
			break;
		usleep(50000);
	}
	for (int k = 0; k < ST_NSHARDS; k++)
		if (slots[k] > slots0[k])
			st_violation(
				"shard %d: %u reader slots registered after every reader "
				"left, %u at the start",
				k, slots[k], slots0[k]);
	/* The exchange's processes hold what they held before the load. */
	int fds[2 * ST_NSHARDS];
	role_fds(fds);
	for (int i = 0; i < 2 * ST_NSHARDS; i++)
		if (fds[i] != fds0[i])
			st_violation(
				"%s %d: %d open file descriptors with no client, %d at the "
				"start",
				i < ST_NSHARDS ? "gateway" : "matcher", i % ST_NSHARDS,
				fds[i], fds0[i]);
	printf("leaks: reader slots %u/%u, exchange fds", slots[0], slots[1]);
	for (int i = 0; i < 2 * ST_NSHARDS; i++)
		printf(" %d", fds[i]);
	printf(" (at the start %u/%u,", slots0[0], slots0[1]);
	for (int i = 0; i < 2 * ST_NSHARDS; i++)
		printf(" %d", fds0[i]);
	printf(")\n");
	/* Stopped cleanly: exit 0, no process and no object left. */
	int status = exchange_stop(&ex, 30000);
	if (status < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		st_violation("shmex stopped with status 0x%x", (unsigned)status);
	pid_t left[16];
	int nleft = 0;
	for (int t = 0; t < 100; t++) {
		nleft = instance_procs(left, 16);
		if (!nleft)
			break;
		usleep(50000);
	}
	for (int i = 0; i < nleft && i < 16; i++)
		st_violation("process %d of instance %s still runs after the stop",
			     (int)left[i], O.instance);
	int objs = test_count_objects(O.instance);
	if (objs)
		st_violation("%d /dev/shm objects of instance %s left after the stop",
			     objs, O.instance);
	if (ex.out_fd >= 0) {
		close(ex.out_fd);
		ex.out_fd = -1;
	}
	int fds_now = count_fds(getpid());
	if (fds_now != fds_at_start)
		st_violation("shmex-stress holds %d file descriptors, %d at the start",
			     fds_now, fds_at_start);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: shmex-stress [options]\n"
		"Starts an exchange, trades over TCP, reads its shared memory, kills and\n"
		"stops its processes, and checks every invariant at quiescent points.\n\n"
		"      --seconds N       length of the run (1..86400; default 60)\n"
		"      --seed N          seed of the schedule and of the requests (default:\n"
		"                        from the clock; printed)\n"
		"      --clients N       TCP client processes (1..%d; default 6)\n"
		"      --readers N       read-side processes (0..%d; default 3)\n"
		"      --chaos-ms MS     time between chaos actions (1..60000; default 250)\n"
		"      --checkpoint-s N  time between quiescent checks (1..86400; default 15)\n"
		"      --no-chaos        kill and stop nothing\n"
		"      --instance NAME   shmex instance (default test<tag>-<pid>-0)\n"
		"      --data-dir DIR    journals (default: a fresh directory, removed after\n"
		"                        a clean run)\n"
		"  -h, --help            this help\n"
		"      --version         program and layout versions\n",
		ST_MAX_CLIENTS, ST_MAX_READERS);
}

static int num(const char *opt, const char *s, long long lo, long long hi, long long *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi) {
		fprintf(stderr, "shmex-stress: %s: '%s' is not a number in %lld..%lld\n",
			opt, s, lo, hi);
		return -1;
	}
	*out = v;
	return 0;
}

static int parse(int argc, char **argv)
{
	static const struct option opts[] = {
		{"seconds", required_argument, NULL, 's'},
		{"seed", required_argument, NULL, 'S'},
		{"clients", required_argument, NULL, 'c'},
		{"readers", required_argument, NULL, 'r'},
		{"chaos-ms", required_argument, NULL, 'k'},
		{"checkpoint-s", required_argument, NULL, 'p'},
		{"no-chaos", no_argument, NULL, 'n'},
		{"instance", required_argument, NULL, 'i'},
		{"data-dir", required_argument, NULL, 'd'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	bool seeded = false;
	int ch;
	long long v;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 's':
			if (num("--seconds", optarg, 1, 86400, &v))
				return 2;
			O.seconds = (int)v;
			break;
		case 'S': {
			char *end;
			errno = 0;
			O.seed = strtoull(optarg, &end, 10);
			if (errno || end == optarg || *end || optarg[0] == '-') {
				fprintf(stderr,
					"shmex-stress: --seed: '%s' is not a number\n",
					optarg);
				return 2;
			}
			seeded = true;
			break;
		}
		case 'c':
			if (num("--clients", optarg, 1, ST_MAX_CLIENTS, &v))
				return 2;
			O.clients = (int)v;
			break;
		case 'r':
			if (num("--readers", optarg, 0, ST_MAX_READERS, &v))
				return 2;
			O.readers = (int)v;
			break;
		case 'k':
			if (num("--chaos-ms", optarg, 1, 60000, &v))
				return 2;
			O.chaos_ms = (int)v;
			break;
		case 'p':
			if (num("--checkpoint-s", optarg, 1, 86400, &v))
				return 2;
			O.checkpoint_s = (int)v;
			break;
		case 'n':
			O.chaos = false;
			break;
		case 'i':
			if (strlen(optarg) >= sizeof(O.instance) - 8 || !optarg[0]) {
				fprintf(stderr,
					"shmex-stress: --instance: '%s' is too long\n",
					optarg);
				return 2;
			}
			snprintf(O.instance, sizeof(O.instance), "%s", optarg);
			break;
		case 'd':
			if (strlen(optarg) >= sizeof(O.ddir) - 32) {
				fprintf(stderr, "shmex-stress: --data-dir: too long\n");
				return 2;
			}
			snprintf(O.ddir, sizeof(O.ddir), "%s", optarg);
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case 'V':
			shm_opt_version(stdout, "shmex-stress (shmex)");
			exit(0);
		default:
			/* getopt said what was wrong: one line, as every tool. */
			fprintf(stderr,
				"Try 'shmex-stress --help' for more information.\n");
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr,
			"shmex-stress: unexpected argument '%s'\n"
			"Try 'shmex-stress --help' for more information.\n",
			argv[optind]);
		return 2;
	}
	if (!seeded)
		O.seed = (uint64_t)time(NULL) * 1000003u ^ (uint64_t)getpid();
	return 0;
}

/* Programs next to this one unless SHMEX_BIN_DIR says otherwise. */
static void find_bin_dir(void)
{
	if (getenv("SHMEX_BIN_DIR"))
		return;
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return;
	self[n] = 0;
	char *slash = strrchr(self, '/');
	if (slash) {
		*slash = 0;
		setenv("SHMEX_BIN_DIR", self, 1);
	}
}

int main(int argc, char **argv)
{
	int rc = parse(argc, argv);
	if (rc)
		return rc;
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	find_bin_dir();
	if (!O.instance[0])
		test_instance(O.instance, sizeof(O.instance));
	if (!O.ddir[0]) {
		const char *root = getenv("SHMEX_TEST_DATA");
		if (!root || !*root)
			root = getenv("TMPDIR");
		snprintf(O.ddir, sizeof(O.ddir), "%s/shmex-stress.XXXXXX",
			 root && *root ? root : "/tmp");
		if (!mkdtemp(O.ddir)) {
			fprintf(stderr, "shmex-stress: cannot create %s: %s\n", O.ddir,
				strerror(errno));
			return 1;
		}
		O.own_ddir = true;
	}
	rng = O.seed ? O.seed : 1;

	size_t bytes = sizeof(struct st_ctl) +
		       (size_t)O.clients * ST_LOG_CAP * sizeof(struct st_rec);
	void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m == MAP_FAILED) {
		fprintf(stderr, "shmex-stress: mmap of %zu bytes: %s\n", bytes,
			strerror(errno));
		return 1;
	}
	st = m;
	st->seed = O.seed;
	const char *fault = getenv("SHMEX_STRESS_FAULT");
	if (fault) {
		st->fault_status = strstr(fault, "status") != NULL;
		st->fault_deposit = strstr(fault, "deposit") != NULL;
		printf("stress: planted faults: %s%s\n",
		       st->fault_status ? "status " : "",
		       st->fault_deposit ? "deposit" : "");
	}
	snprintf(st->instance, sizeof(st->instance), "%s", O.instance);
	for (int i = 0; i < O.clients; i++)
		st->c[i].log = (struct st_rec *)((char *)m + sizeof(struct st_ctl)) +
			       (size_t)i * ST_LOG_CAP;
	pick_symbols();

	int fds_at_start = count_fds(getpid());
	char dd[PATH_MAX + 16];
	snprintf(dd, sizeof(dd), "--data-dir=%s", O.ddir);
	const char *args[] = {
		dd,      "--shards",      "2",   "--gateways", "2",     "--accounts",
		"4096",  "--symbols",     "64",  "--levels",   "16384", "--positions",
		"65536", "--done-window", "128", "--quiet",    NULL};
	printf("stress: instance %s, data %s, %d s, %d clients, %d readers, chaos %s every %d "
	       "ms, seed=%" PRIu64 "\n",
	       O.instance, O.ddir, O.seconds, O.clients, O.readers,
	       O.chaos ? "on" : "off", O.chaos_ms, O.seed);
	ex_args = args;
	if (exchange_start(&ex, test_bin("shmex"), O.instance, args, 60000) != 0) {
		fprintf(stderr, "shmex-stress: %s did not start\n", test_bin("shmex"));
		return 1;
	}
	st->port = ex.port;
	if (setup_exchange() != 0) {
		exchange_stop(&ex, 30000);
		return 1;
	}
	/* Baselines of the leak checks, with no client connected. */
	uint32_t slots0[ST_NSHARDS] = {0};
	int fds0[2 * ST_NSHARDS];
	usleep(200000);
	if (reader_slots(slots0) != 0)
		st_violation("cannot read the reader tables at the start");
	role_fds(fds0);

	for (int i = 0; i < O.readers; i++)
		spawn_reader(i);
	for (int i = 0; i < O.clients; i++)
		spawn_client(i);

	unsigned long long t0 = now_ns(),
			   end = t0 + (unsigned long long)O.seconds * 1000000000ull;
	unsigned long long next_chaos = t0 + (unsigned long long)O.chaos_ms * 1000000ull;
	unsigned long long next_print = t0 + 1000000000ull;
	unsigned long long next_cp =
		t0 + (unsigned long long)O.checkpoint_s * 1000000000ull;
	uint64_t last_events = 0;
	int ncp = 0;
	while (now_ns() < end) {
		unsigned long long t = now_ns();
		resume_due(false);
		reap(true);
		if (O.chaos && t >= next_chaos) {
			chaos_step();
			next_chaos = t + (unsigned long long)O.chaos_ms * 1000000ull;
		}
		if (t >= next_print) {
			uint64_t e = events(), reads = 0;
			for (int i = 0; i < O.readers; i++)
				reads += __atomic_load_n(&st->r[i].reads,
							 __ATOMIC_RELAXED);
			printf("stress: %4.0fs events=%" PRIu64 " (%" PRIu64
			       "/s) reads=%" PRIu64 " kills=%" PRIu64 " stops=%" PRIu64
			       " violations=%" PRIu64 "\n",
			       (double)(t - t0) / 1e9, e, e - last_events, reads, kills,
			       stops, __atomic_load_n(&st->nviol, __ATOMIC_RELAXED));
			last_events = e;
			next_print = t + 1000000000ull;
			print_violations();
		}
		if (t >= next_cp && end - t > 3000000000ull) {
			char when[32];
			snprintf(when, sizeof(when), "checkpoint %d", ++ncp);
			checkpoint(when, true);
			next_cp = now_ns() +
				  (unsigned long long)O.checkpoint_s * 1000000000ull;
			next_print = now_ns() + 1000000000ull;
		}
		usleep(2000);
	}
	checkpoint("final", false);
	finish(fds_at_start, slots0, fds0);
	print_violations();
	uint64_t nv = __atomic_load_n(&st->nviol, __ATOMIC_RELAXED);
	uint64_t reads = 0, busy = 0, books = 0, dips = 0, lost = 0, errs = 0;
	for (int i = 0; i < O.readers; i++) {
		reads += st->r[i].reads;
		busy += st->r[i].busy;
		books += st->r[i].books;
		dips += st->r[i].dips;
	}
	for (int i = 0; i < O.clients; i++) {
		lost += st->c[i].lost;
		errs += st->c[i].errors;
	}
	printf("stress: %" PRIu64 " replies (%" PRIu64 " error items, %" PRIu64
	       " requests cut off by kills), %" PRIu64 " reads (%" PRIu64
	       " full books checked, %" PRIu64 " busy, %" PRIu64
	       " balances seen below zero), %" PRIu64 " SIGKILLs, %" PRIu64 " SIGSTOPs\n",
	       events(), errs, lost, reads, books, busy, dips, kills, stops);
	if (O.own_ddir && nv == 0)
		nftw(O.ddir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	else if (nv)
		printf("stress: data directory kept for inspection: %s\n", O.ddir);
	printf("RESULT stress events=%" PRIu64 " kills=%" PRIu64 " violations=%" PRIu64
	       " seed=%" PRIu64 "\n",
	       events(), kills, nv, O.seed);
	munmap(m, bytes);
	return nv ? 1 : 0;
}

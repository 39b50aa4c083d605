/*
 * shmex: the command a user runs.  Starts and supervises one complete
 * exchange: creates the shared memory, starts one shmex-matcher per shard
 * and G shmex-gateway processes that share one listening socket, prints
 * one line saying where it listens, restarts gateways that die, restarts
 * a matcher that dies from its journal while the other shards keep
 * trading (without a journal, a matcher's death stops the exchange),
 * runs (and restarts) shmex-audit, which merges the shards' journals into
 * DIR/audit.log, when there is a data directory, and
 * on SIGINT/SIGTERM drains and stops the children and unlinks every
 * shared-memory object of the instance.  The data directory (journals,
 * lock, exchange.conf) stays: the next start recovers from it.
 *
 * Why it is shaped so:
 *  - The listening socket is opened here and inherited by every gateway
 *    (--listen-fd).  A port conflict fails before anything else starts;
 *    --port 0 works (the line says which port); and while a gateway
 *    restarts, connections wait in the shared accept queue for the others
 *    instead of being refused.
 *  - The supervisor is single-threaded and waits for signals with
 *    sigtimedwait (SIGCHLD included), so child exits, stop requests and
 *    restart timers are handled in one place, never in a signal handler.
 *  - Children get PR_SET_PDEATHSIG(SIGTERM) between fork and exec, so no
 *    process outlives a supervisor that is killed; the next start of the
 *    same instance then finds the leftovers (creator dead) and removes them.
 *
 * Startup order: stale check -> listening socket -> data directory
 * (created, locked, exchange.conf checked) -> control + rings + ledgers
 * (shm_instance_create) and accounts regions -> all matchers (each
 * recovers its shard from its journal, together), then each
 * awaited: ready when its book.<k>, readers.<k> and positions.<k> regions
 * attach and its member slot in the control region names it -> the audit
 * writer (not awaited: it follows the matchers on its own) -> all
 * gateways, each ready when its member slot names it -> the line on
 * stdout.  Stopping goes the other way: gateways, matchers, then the
 * audit writer, so that it merges what the matchers made durable last.
 *
 * Matcher deaths (docs/durability.md): one dead matcher is restarted at
 * once (then with the gateways' backoff), and the new one recovers its
 * shard from its journal and the shard ledgers while the others trade.
 * When that is impossible (a second matcher died before the first was
 * back, or a matcher exits with status 3, "recovery impossible in this
 * instance"), the whole exchange starts over: gateways and matchers are
 * stopped, the shared memory is removed and everything is recovered from
 * the journals, on the same listening socket (connections wait in its
 * queue meanwhile).  A matcher killed by a signal while the matchers
 * recover together makes that start begin again (launch_retrying).
 *
 * Damaged rings (docs/ring.md, "Corruption and repair"): every
 * RING_CHECK_MS the supervisor looks at every ring.  One that an end
 * reported corrupt, or whose indexes are inconsistent, is logged by name
 * and repaired with the two ends of its gateway-to-shard path: both rings
 * of the path are asked to quiesce, each live end acknowledges, then both
 * are reset to a new generation and the ends resume.  A gateway that does
 * not acknowledge within RING_ACK_MS is killed (restarted like any dead
 * gateway, it attaches to the ring under repair and acknowledges at once);
 * a matcher is only waited for (it may be recovering).
 *
 * FIX (docs/fix.md): unless --no-fix, one shmex-fix process serves FIX 4.4
 * on its own listening socket (opened here too, --fix-port, for the same
 * reasons).  It is one more gateway of the instance: gateway index G
 * after the XML gateways 0..G-1, with its own rings, so the instance is
 * created with G + 1 gateways; it is started, awaited and restarted like
 * them.
 *
 * Limits: at most SHM_INSTANCE_SHARDS_MAX shards and
 * SHM_INSTANCE_GATEWAYS_MAX gateways; a gateway or matcher that keeps
 * dying is restarted forever, with a backoff from 100 ms doubling to 5 s
 * (reset once it has run for 10 s).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gateway/gw_listen.h"
#include "shm/shm_accounts.h"
#include "shm/shm_clock.h"
#include "shm/shm_error.h"
#include "shm/shm_instance.h"
#include "shm/shm_journal.h"
#include "shm/shm_opt.h"
#include "shm/shm_region.h"
#include "shm/shm_ring.h"
#include "shm/shm_settings.h"

#define BACKOFF_MIN_MS 100u
#define BACKOFF_MAX_MS 5000u
#define STABLE_RUN_MS 10000u
#define MATCHER_STOP_MS 10000u
#define MATCHER_RESTART_MS 10u /* first restart of a dead matcher */
#define AUDIT_STOP_MS 5000u
#define EXIT_RECOVERY_IMPOSSIBLE 3 /* shmex-matcher: SHMEX_ERECOVERY */
#define RING_CHECK_MS 100u         /* how often every ring is looked at */
#define RING_ACK_MS 10000u         /* a gateway's time to acknowledge a quiesce */

enum child_kind { K_MATCHER = 0, K_GATEWAY = 1, K_AUDIT = 2 };

struct child {
	pid_t pid; /* 0: not running */
	uint32_t idx;
	uint64_t started_ns;
	uint64_t restart_at_ns; /* waiting for its restart; 0: none */
	uint32_t backoff_ms;
	unsigned restarts;
	int status; /* its last wait status, once it exited */
};

#define DEFAULT_PORT 12345u
#define DEFAULT_FIX_PORT 9878u
#define DEFAULT_FIX_COMP_ID "SHMEX"
#define DEFAULT_BIND "127.0.0.1"
#define DEFAULT_START_TIMEOUT_MS 15000u

/* The supervisor's own options; everything else is a setting of the
 * exchange (shm_settings.h), recorded in the control region. */
struct opts {
	const char *instance;
	const char *bind;
	const char *data_dir; /* NULL: shmex-data/<instance> */
	uint64_t port;
	uint64_t fix_port;
	bool no_fix;
	const char *fix_comp_id;
	const char *fix_sessions; /* NULL: any SenderCompID */
	uint64_t start_timeout_ms;
	struct shm_settings set;
	/* Copies of the settings the supervisor itself uses. */
	uint32_t shards, gateways, drain_ms;
	bool quiet;
};

/* A gateway-to-shard path under repair (private). */
struct path_repair {
	bool active;
	bool fenced; /* its gateway was killed for not acknowledging */
	bool warned; /* the matcher's slowness was logged */
	uint64_t since_ns;
};

struct sup {
	struct opts o;
	char dir[PATH_MAX];
	int listen_fd;
	int port;
	int fix_fd; /* FIX listening socket, -1: none */
	int fix_port;
	uint32_t ngw; /* gateway processes: XML ones + the FIX one */
	struct shm_instance inst;
	bool inst_ok;
	struct shm_accounts accts;
	bool accts_ok;
	struct child matchers[SHM_INSTANCE_SHARDS_MAX];
	struct child gateways[SHM_INSTANCE_GATEWAYS_MAX + 1];
	struct child audit; /* shmex-audit, with a data directory only */
	/* The rings, for their repair: [g * shards + s] (no fast path here:
	 * shm_ring.h's repair calls only). */
	struct shm_ring *req, *rep;
	struct path_repair *paths;
	uint64_t next_ring_check;
	sigset_t sigs;
	bool owns; /* we created control + rings: the name is ours */
	bool stopping;
	bool start_over; /* a full restart from the journals is due */
	bool quiescing;  /* stopping every child for that restart */
	/* A matcher was killed while the matchers recovered together: the
	 * launch starts over (launch_retrying). */
	bool relaunch;
	int exit_code;
	/* The data directory (absolute), "" without a journal. */
	char data[SHM_DATA_DIR_MAX];
	int lock_fd; /* its lock, -1: not held */
};

static void logf_(const struct sup *s, bool always, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void logf_(const struct sup *s, bool always, const char *fmt, ...)
{
	if (s->o.quiet && !always)
		return;
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, "shmex: %s\n", buf);
}

/* ---- leftovers and unlinking ---- */

/* Calls fn(s, region) for every /dev/shm object of the instance; stops at
 * the first non-zero return, which it returns. */
static int for_each_object(struct sup *s, int (*fn)(struct sup *, const char *))
{
	char prefix[SHM_NAME_MAX];
	snprintf(prefix, sizeof(prefix), "shmex.%s.", s->o.instance);
	size_t plen = strlen(prefix);
	DIR *d = opendir("/dev/shm");
	if (!d)
		return 0;
	int rc = 0;
	struct dirent *e;
	while (rc == 0 && (e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, prefix, plen) == 0 && e->d_name[plen])
			rc = fn(s, e->d_name + plen);
	}
	closedir(d);
	return rc;
}

static double mib(uint64_t b)
{
	return (double)b / (1024.0 * 1024.0);
}

/*
 * Refuses a start that cannot fit in /dev/shm before anything is created,
 * saying how much it needs, how much is free and which options shrink
 * which part (before: "No space left on device" from the middle of the
 * start, and a misleading "book of that shard is gone").
 */
static int check_shm_space(struct sup *s)
{
	struct shm_footprint f;
	shm_instance_footprint(&s->o.set, &f);
	struct statvfs v;
	if (statvfs("/dev/shm", &v) != 0)
		return 0; /* cannot tell: the creation will say */
	uint64_t avail = (uint64_t)v.f_bavail * v.f_frsize;
	if (f.total <= avail)
		return 0;
	logf_(s, true,
	      "instance %s needs %.1f MiB of shared memory and /dev/shm has %.1f MiB free; "
	      "nothing was created.  Per shard (--shards %u): book %.1f MiB (--orders, "
	      "--fills, --levels, --symbols), positions %.1f MiB (--positions, "
	      "--symbols), reader table and ledger %.1f MiB (--readers, --accounts); "
	      "accounts %.1f MiB (--accounts); rings %.1f MiB (--ring-capacity, "
	      "--gateways).  Shrink those (shmex --help lists the defaults) or give "
	      "/dev/shm more room (a container: --shm-size)",
	      s->o.instance, mib(f.total), mib(avail), s->o.shards, mib(f.book),
	      mib(f.positions), mib(f.shard_rest), mib(f.accounts), mib(f.rings));
	return -1;
}

static int remove_stale_one(struct sup *s, const char *region)
{
	struct shm_region_info info;
	/* A creator that exited but was not reaped yet (a zombie, e.g. a
	 * child of a killed supervisor) counts as dead (shm_proc_alive). */
	int rc = shm_region_remove_stale(s->o.instance, region);
	if (rc == SHMEX_EINUSE) {
		int pid = 0;
		const char *build = "";
		if (shm_region_inspect(s->o.instance, region, &info) == 0) {
			pid = info.creator_pid;
			if (info.version != SHM_LAYOUT_VERSION ||
			    info.signature != shm_layout_signature())
				build = ", made by another build of shmex (layout "
					"version or signature differs)";
		}
		logf_(s, true,
		      "instance %s is in use by a running exchange "
		      "(region %s, pid %d%s); choose another --instance",
		      s->o.instance, region, pid, build);
		return rc;
	}
	if (rc == SHMEX_EFOREIGN) {
		bool known =
			shm_region_inspect(s->o.instance, region, &info) != -EACCES &&
			info.have_owner;
		if (known)
			logf_(s, true,
			      "region %s of instance %s (/dev/shm/shmex.%s.%s) belongs to "
			      "uid %u, not to us (uid %u): another user's exchange or a "
			      "squatter; choose another --instance, or have its owner "
			      "remove it",
			      region, s->o.instance, s->o.instance, region,
			      (unsigned)info.owner_uid, (unsigned)geteuid());
		else
			logf_(s, true,
			      "region %s of instance %s (/dev/shm/shmex.%s.%s) cannot be "
			      "read by us, so it is not our leftover; choose another "
			      "--instance, or have its owner remove it",
			      region, s->o.instance, s->o.instance, region);
		return rc;
	}
	if (rc) {
		logf_(s, true, "cannot remove leftover region %s of instance %s: %s",
		      region, s->o.instance, shmex_strerror(rc));
		return rc;
	}
	logf_(s, false, "removed %s, left over by a crashed run of instance %s", region,
	      s->o.instance);
	return 0;
}

static int unlink_one(struct sup *s, const char *region)
{
	int rc = shm_region_unlink(s->o.instance, region);
	if (rc && rc != -ENOENT)
		logf_(s, true, "unlink %s: %s", region, shmex_strerror(rc));
	return 0;
}

static void unlink_all(struct sup *s)
{
	(void)!shm_instance_unlink(s->o.instance);
	(void)!shm_accounts_unlink(s->o.instance);
	for_each_object(s, unlink_one);
}

/* ---- children ---- */

static const char *kind_name(enum child_kind k)
{
	return k == K_MATCHER ? "matcher" : k == K_GATEWAY ? "gateway" : "audit";
}

static const char *kind_prog(enum child_kind k)
{
	return k == K_MATCHER   ? "shmex-matcher"
	       : k == K_GATEWAY ? "shmex-gateway"
				: "shmex-audit";
}

static struct child *child_of(struct sup *s, enum child_kind k, uint32_t idx)
{
	return k == K_MATCHER   ? &s->matchers[idx]
	       : k == K_GATEWAY ? &s->gateways[idx]
				: &s->audit;
}

/* The FIX gateway is the gateway after the XML ones. */
static bool is_fix(const struct sup *s, enum child_kind k, uint32_t idx)
{
	return k == K_GATEWAY && s->fix_fd >= 0 && idx == s->o.gateways;
}

/* Children get only the instance and their index (and a gateway the
 * inherited listening socket): the rest is in the control region. */
static pid_t spawn(struct sup *s, enum child_kind k, uint32_t idx)
{
	char path[PATH_MAX + 32], idbuf[16], fdbuf[16];
	const char *argv[16];
	int n = 0;
	bool fix = is_fix(s, k, idx);
	snprintf(path, sizeof(path), "%s/%s", s->dir, fix ? "shmex-fix" : kind_prog(k));
	snprintf(idbuf, sizeof(idbuf), "%u", idx);
	argv[n++] = path;
	argv[n++] = "--instance";
	argv[n++] = s->o.instance;
	if (k == K_MATCHER) {
		argv[n++] = "--shard";
		argv[n++] = idbuf;
	} else if (k == K_GATEWAY) {
		snprintf(fdbuf, sizeof(fdbuf), "%d", fix ? s->fix_fd : s->listen_fd);
		argv[n++] = "--id";
		argv[n++] = idbuf;
		argv[n++] = "--listen-fd";
		argv[n++] = fdbuf;
		if (fix) {
			argv[n++] = "--comp-id";
			argv[n++] = s->o.fix_comp_id;
			if (s->o.fix_sessions) {
				argv[n++] = "--sessions";
				argv[n++] = s->o.fix_sessions;
			}
		}
	}
	argv[n] = NULL;
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		logf_(s, true, "fork %s %u: %s", kind_name(k), idx, strerror(errno));
		return -1;
	}
	if (pid == 0) {
		/* No orphans: the child gets SIGTERM when we die, and checks
		 * that we did not die before the request took effect. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(1);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		/* stdout is the supervisor's one line; children log to stderr. */
		dup2(2, 1);
		if (k == K_GATEWAY) {
			int lfd = fix ? s->fix_fd : s->listen_fd;
			int fl = fcntl(lfd, F_GETFD);
			fcntl(lfd, F_SETFD, fl & ~FD_CLOEXEC);
		}
		execv(path, (char *const *)argv);
		fprintf(stderr, "shmex: exec %s: %s\n", path, strerror(errno));
		_exit(127);
	}
	struct child *c = child_of(s, k, idx);
	c->pid = pid;
	c->idx = idx;
	c->started_ns = shm_clock_ns(CLOCK_MONOTONIC);
	c->restart_at_ns = 0;
	return pid;
}

static void describe_status(char *buf, size_t len, int status)
{
	if (WIFEXITED(status))
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "was killed by signal %d (%s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	else
		snprintf(buf, len, "stopped (status 0x%x)", status);
}

static struct child *find_child(struct sup *s, pid_t pid, enum child_kind *k)
{
	for (uint32_t i = 0; i < s->o.shards; i++)
		if (s->matchers[i].pid == pid) {
			*k = K_MATCHER;
			return &s->matchers[i];
		}
	for (uint32_t i = 0; i < s->ngw; i++)
		if (s->gateways[i].pid == pid) {
			*k = K_GATEWAY;
			return &s->gateways[i];
		}
	if (s->audit.pid == pid) {
		*k = K_AUDIT;
		return &s->audit;
	}
	return NULL;
}

/* A dead matcher that cannot simply be restarted: it said recovery is
 * impossible in this instance, or another matcher is down too (a
 * restarting matcher needs every other shard live to pause them). */
static bool matcher_needs_full_restart(const struct sup *s, const struct child *dead,
				       int status)
{
	if (WIFEXITED(status) && WEXITSTATUS(status) == EXIT_RECOVERY_IMPOSSIBLE)
		return true;
	for (uint32_t i = 0; i < s->o.shards; i++)
		if (&s->matchers[i] != dead && s->matchers[i].pid == 0)
			return true;
	return false;
}

/* Reaps every exited child and reacts. */
static void reap(struct sup *s)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		enum child_kind k;
		struct child *c = find_child(s, pid, &k);
		if (!c)
			continue;
		c->pid = 0;
		c->status = status;
		char how[96];
		describe_status(how, sizeof(how), status);
		if (s->stopping || s->quiescing) {
			if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
				logf_(s, true, "%s %u (pid %d) %s while stopping",
				      kind_name(k), c->idx, (int)pid, how);
			continue;
		}
		if (k == K_MATCHER && !s->data[0]) {
			logf_(s, true,
			      "matcher of shard %u (pid %d) %s; without a journal "
			      "(--no-journal) the book of that shard is gone, "
			      "stopping the exchange",
			      c->idx, (int)pid, how);
			s->stopping = true;
			s->exit_code = 1;
			continue;
		}
		if (k == K_MATCHER && matcher_needs_full_restart(s, c, status)) {
			logf_(s, true,
			      "matcher of shard %u (pid %d) %s; recovering the "
			      "whole exchange from its journals",
			      c->idx, (int)pid, how);
			s->start_over = true;
			continue;
		}
		uint64_t ran_ms =
			(shm_clock_ns(CLOCK_MONOTONIC) - c->started_ns) / 1000000u;
		if (ran_ms >= STABLE_RUN_MS || c->backoff_ms == 0)
			c->backoff_ms = BACKOFF_MIN_MS;
		else if (c->backoff_ms < BACKOFF_MAX_MS)
			c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS
						? BACKOFF_MAX_MS
						: c->backoff_ms * 2;
		/* A matcher's first restart is at once: its shard is down. */
		uint32_t wait_ms = k == K_MATCHER && c->backoff_ms == BACKOFF_MIN_MS
					   ? MATCHER_RESTART_MS
					   : c->backoff_ms;
		c->restart_at_ns =
			shm_clock_ns(CLOCK_MONOTONIC) + (uint64_t)wait_ms * 1000000u;
		if (k == K_MATCHER)
			logf_(s, true,
			      "matcher of shard %u (pid %d) %s; restarting it in %u "
			      "ms, it recovers the shard from its journal",
			      c->idx, (int)pid, how, wait_ms);
		else if (k == K_GATEWAY)
			logf_(s, true, "gateway %u (pid %d) %s; restarting it in %u ms",
			      c->idx, (int)pid, how, wait_ms);
		else
			logf_(s, true,
			      "audit writer (pid %d) %s; restarting it in %u ms, it "
			      "resumes where audit.log ends",
			      (int)pid, how, wait_ms);
	}
}

/* Waits up to timeout_ms for a signal, then handles every pending one
 * (SIGCHLD reaps; SIGINT/SIGTERM set `stopping`). */
static void take_signals(struct sup *s, int timeout_ms)
{
	struct timespec ts = {timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L};
	siginfo_t si;
	int sig = sigtimedwait(&s->sigs, &si, &ts);
	while (sig > 0) {
		if (sig == SIGCHLD) {
			reap(s);
		} else if (sig == SIGINT || sig == SIGTERM) {
			if (!s->stopping)
				logf_(s, false, "%s: stopping instance %s",
				      strsignal(sig), s->o.instance);
			s->stopping = true;
		}
		struct timespec zero = {0, 0};
		sig = sigtimedwait(&s->sigs, &si, &zero);
	}
}

/* Waits until child idx of kind k is ready; false when it died, the time
 * ran out, or a stop was requested. */
static bool wait_ready(struct sup *s, enum child_kind k, uint32_t idx)
{
	uint64_t deadline = shm_clock_ns(CLOCK_MONOTONIC) +
			    (uint64_t)s->o.start_timeout_ms * 1000000u;
	struct child *c = k == K_MATCHER ? &s->matchers[idx] : &s->gateways[idx];
	for (;;) {
		/* SV1 (inside): the member slot names the child we started,
		 * and a matcher's regions attach (shm_instance.h). */
		if (k == K_MATCHER ? shm_instance_matcher_ready(&s->inst, idx, c->pid)
				   : shm_instance_gateway_ready(&s->inst, idx, c->pid))
			return true;
		take_signals(s, 2);
		if (s->stopping)
			return false;
		if (k == K_MATCHER) {
			/* Matchers recover together (they wait for one another):
			 * one killed by a signal meanwhile, by an operator or a
			 * torture test, makes them all start over. */
			for (uint32_t j = 0; j < s->o.shards; j++)
				if (s->matchers[j].pid == 0 &&
				    WIFSIGNALED(s->matchers[j].status)) {
					logf_(s, true,
					      "matcher %u was killed while the matchers "
					      "recovered; all of them start over",
					      j);
					s->relaunch = true;
					return false;
				}
		}
		if (c->pid == 0) {
			/* reap() logged a gateway's death; a matcher's stops
			 * everything. */
			logf_(s, true, "%s %u died during startup", kind_name(k), idx);
			s->stopping = true;
			s->exit_code = 1;
			return false;
		}
		if (shm_clock_ns(CLOCK_MONOTONIC) > deadline) {
			logf_(s, true, "%s %u (pid %d) did not get ready within %u ms",
			      kind_name(k), idx, (int)c->pid,
			      (unsigned)s->o.start_timeout_ms);
			s->stopping = true;
			s->exit_code = 1;
			return false;
		}
	}
}

/* ---- ring repair (docs/ring.md) ---- */

static void rings_close(struct sup *s)
{
	free(s->req);
	free(s->rep);
	free(s->paths);
	s->req = s->rep = NULL;
	s->paths = NULL;
}

/* Handles on every ring (the instance was just created: all consistent). */
static int rings_open(struct sup *s)
{
	uint32_t n = s->ngw * s->o.shards;
	s->req = calloc(n, sizeof(*s->req));
	s->rep = calloc(n, sizeof(*s->rep));
	s->paths = calloc(n, sizeof(*s->paths));
	if (!s->req || !s->rep || !s->paths) {
		rings_close(s);
		return -ENOMEM;
	}
	for (uint32_t g = 0; g < s->ngw; g++)
		for (uint32_t k = 0; k < s->o.shards; k++) {
			uint32_t i = g * s->o.shards + k;
			int rc = shm_instance_request_ring(&s->inst, g, k, &s->req[i]);
			if (!rc)
				rc = shm_instance_reply_ring(&s->inst, k, g, &s->rep[i]);
			if (rc) {
				rings_close(s);
				return rc;
			}
		}
	return 0;
}

/* What an end said, or what is wrong now, for the log line. */
static void ring_story(struct sup *s, bool request, uint32_t g, uint32_t k, char *buf,
		       size_t len)
{
	struct shm_ring *r =
		request ? &s->req[g * s->o.shards + k] : &s->rep[g * s->o.shards + k];
	struct shm_ring_stats st;
	shm_ring_stats(r, &st);
	const char *prod = request ? "gateway" : "matcher";
	const char *cons = request ? "matcher" : "gateway";
	/* RNG10: acquire of the reports (pairs with the ends' RNG9). */
	bool pb = load_acquire(&r->sh->prod.bad_gen) == st.gen;
	bool cb = load_acquire(&r->sh->cons.bad_gen) == st.gen;
	char how[96] = "";
	if (st.corrupt_now && (int64_t)(st.head - st.tail) < 0)
		snprintf(how, sizeof(how), ": head is %llu behind tail",
			 (unsigned long long)(st.tail - st.head));
	else if (st.corrupt_now)
		snprintf(how, sizeof(how), ": head is %llu ahead of tail",
			 (unsigned long long)(st.head - st.tail));
	snprintf(buf, len, "head %llu, tail %llu (capacity %u)%s%s%s%s",
		 (unsigned long long)st.head, (unsigned long long)st.tail, st.capacity,
		 how, pb || cb ? ", reported corrupt by the " : "",
		 pb   ? prod
		 : cb ? cons
		      : "",
		 pb && cb ? " and the other end" : "");
}

static void repair_begin(struct sup *s, uint32_t g, uint32_t k, uint64_t now)
{
	uint32_t i = g * s->o.shards + k;
	for (int q = 0; q < 2; q++) {
		bool request = q == 0;
		struct shm_ring *r = request ? &s->req[i] : &s->rep[i];
		if (!shm_ring_reported(r))
			continue;
		char name[160], story[256];
		shm_instance_ring_name(&s->inst, request, g, k, name, sizeof(name));
		ring_story(s, request, g, k, story, sizeof(story));
		logf_(s, true,
		      "ring %s is corrupt (generation %u): %s; repairing the rings of "
		      "gateway %u and shard %u with both ends",
		      name, load_acquire(&r->sh->hdr.gen), story, g, k);
	}
	/* RNG7 inside, then INS6 and both doorbells. */
	shm_ring_request_quiesce(&s->req[i]);
	shm_ring_request_quiesce(&s->rep[i]);
	shm_instance_ring_repairs_bump(&s->inst, g, k);
	s->paths[i] = (struct path_repair){.active = true, .since_ns = now};
}

/* One look at a path under repair: reset once every live end acknowledged. */
static void repair_step(struct sup *s, uint32_t g, uint32_t k, uint64_t now)
{
	uint32_t i = g * s->o.shards + k;
	struct path_repair *p = &s->paths[i];
	struct shm_ring *rq = &s->req[i], *rp = &s->rep[i];
	bool gw = shm_instance_member_alive(&s->inst, SHM_ROLE_GATEWAY, g);
	bool mt = shm_instance_member_alive(&s->inst, SHM_ROLE_MATCHER, k);
	/* RNG12 inside each: pairs with the end's RNG11. */
	bool gw_req = gw && shm_ring_acked(rq, SHM_RING_PRODUCER);
	bool gw_rep = gw && shm_ring_acked(rp, SHM_RING_CONSUMER);
	bool mt_req = mt && shm_ring_acked(rq, SHM_RING_CONSUMER);
	bool mt_rep = mt && shm_ring_acked(rp, SHM_RING_PRODUCER);
	bool gw_ok = !gw || (gw_req && gw_rep);
	bool mt_ok = !mt || (mt_req && mt_rep);
	uint64_t waited_ms = (now - p->since_ns) / 1000000u;
	if (!gw_ok && waited_ms >= RING_ACK_MS && !p->fenced) {
		struct child *c = &s->gateways[g];
		logf_(s, true,
		      "gateway %u did not stop using its rings of shard %u within %u ms "
		      "(request ring %s, reply ring %s; the matcher %s); killing it (it "
		      "is restarted and joins the repair)",
		      g, k, RING_ACK_MS, gw_req ? "acknowledged" : "not acknowledged",
		      gw_rep ? "acknowledged" : "not acknowledged",
		      !mt     ? "is not running"
		      : mt_ok ? "acknowledged"
			      : "did not acknowledge");
		if (c->pid > 0)
			kill(c->pid, SIGKILL);
		p->fenced = true;
	}
	if (!mt_ok && waited_ms >= RING_ACK_MS && !p->warned) {
		logf_(s, true,
		      "the matcher of shard %u has not stopped using its rings of gateway "
		      "%u after %u ms; still waiting",
		      k, g, RING_ACK_MS);
		p->warned = true;
	}
	if (!gw_ok || !mt_ok)
		return;
	uint64_t base_req, base_rep;
	uint32_t gen = shm_ring_reset(rq, gw_req, mt_req, &base_req);
	(void)shm_ring_reset(rp, mt_rep, gw_rep, &base_rep);
	/* INS6 after both RNG5: the ends resume both rings at once. */
	shm_instance_ring_repairs_bump(&s->inst, g, k);
	p->active = false;
	logf_(s, true,
	      "rings of gateway %u and shard %u repaired: generation %u, requests "
	      "resume at position %llu, replies at %llu%s",
	      g, k, gen, (unsigned long long)base_req, (unsigned long long)base_rep,
	      gw && mt ? "" : " (one end was not running)");
}

/* Every RING_CHECK_MS: new reports, and the repairs under way. */
static void check_rings(struct sup *s)
{
	if (!s->paths || !s->inst_ok)
		return;
	uint64_t now = shm_clock_ns(CLOCK_MONOTONIC);
	if (now < s->next_ring_check)
		return;
	s->next_ring_check = now + (uint64_t)RING_CHECK_MS * 1000000u;
	for (uint32_t g = 0; g < s->ngw; g++)
		for (uint32_t k = 0; k < s->o.shards; k++) {
			uint32_t i = g * s->o.shards + k;
			if (!s->paths[i].active && (shm_ring_reported(&s->req[i]) ||
						    shm_ring_reported(&s->rep[i])))
				repair_begin(s, g, k, now);
			if (s->paths[i].active)
				repair_step(s, g, k, now);
		}
}

/* Sends sig to every running child of kind k and waits up to ms for them;
 * SIGKILLs what is left. */
static void stop_kind(struct sup *s, enum child_kind k, int sig, uint32_t ms)
{
	struct child *cs = child_of(s, k, 0);
	uint32_t n = k == K_MATCHER ? s->o.shards : k == K_GATEWAY ? s->ngw : 1;
	for (uint32_t i = 0; i < n; i++) {
		cs[i].restart_at_ns = 0;
		if (cs[i].pid > 0)
			kill(cs[i].pid, sig);
	}
	uint64_t deadline = shm_clock_ns(CLOCK_MONOTONIC) + (uint64_t)ms * 1000000u;
	for (;;) {
		bool any = false;
		for (uint32_t i = 0; i < n; i++)
			any |= cs[i].pid > 0;
		if (!any)
			return;
		if (shm_clock_ns(CLOCK_MONOTONIC) > deadline)
			break;
		take_signals(s, 5);
	}
	for (uint32_t i = 0; i < n; i++) {
		if (cs[i].pid > 0) {
			logf_(s, true, "%s %u (pid %d) did not stop in time; killing it",
			      kind_name(k), i, (int)cs[i].pid);
			kill(cs[i].pid, SIGKILL);
			waitpid(cs[i].pid, NULL, 0);
			cs[i].pid = 0;
		}
	}
}

/* Stops every child and removes the instance's shared memory; the
 * listening socket and the data directory stay. */
static void stop_children(struct sup *s)
{
	stop_kind(s, K_GATEWAY, SIGTERM, s->o.drain_ms + 2000);
	/* SV2: release (INS1 inside) after every gateway has exited, so the
	 * matchers that see it (INS2) find the gateways' last messages in
	 * their rings and drain them. */
	if (s->inst_ok)
		shm_instance_set_stopping(&s->inst);
	stop_kind(s, K_MATCHER, SIGTERM, MATCHER_STOP_MS);
	/* Last: the audit writer merges what the matchers made durable. */
	stop_kind(s, K_AUDIT, SIGTERM, AUDIT_STOP_MS);
	if (s->accts_ok)
		shm_accounts_detach(&s->accts);
	s->accts_ok = false;
	rings_close(s);
	if (s->inst_ok)
		shm_instance_detach(&s->inst);
	s->inst_ok = false;
	/* Never unlink another exchange's objects: only once our exclusive
	 * creation made the name ours. */
	if (s->owns)
		unlink_all(s);
	s->owns = false;
}

static void shutdown_all(struct sup *s)
{
	s->stopping = true;
	if (s->listen_fd >= 0) {
		close(s->listen_fd);
		s->listen_fd = -1;
	}
	if (s->fix_fd >= 0) {
		close(s->fix_fd);
		s->fix_fd = -1;
	}
	stop_children(s);
	if (s->lock_fd >= 0)
		shm_journal_unlock(s->data, s->lock_fd);
	s->lock_fd = -1;
}

/* ---- options ---- */

static int parse_opts(int argc, char **argv, struct opts *o)
{
	*o = (struct opts){
		.instance = "default",
		.bind = DEFAULT_BIND,
		.port = DEFAULT_PORT,
		.fix_port = DEFAULT_FIX_PORT,
		.fix_comp_id = DEFAULT_FIX_COMP_ID,
		.start_timeout_ms = DEFAULT_START_TIMEOUT_MS,
	};
	shm_settings_default(&o->set);
	struct shm_opt opts[9 + SHM_SETTINGS_COUNT] = {
		{.name = "instance",
		 .type = SHM_OPT_INSTANCE,
		 .arg = "NAME",
		 .dst = &o->instance,
		 .show_default = true,
		 .help = "instance name, 1..40 of A-Z a-z 0-9 _ - (names the "
			 "shared-memory objects /shmex.NAME.*)"},
		{.name = "port",
		 .type = SHM_OPT_NUM,
		 .arg = "P",
		 .dst = &o->port,
		 .max = 65535,
		 .show_default = true,
		 .help = "TCP port of the XML protocol, 0 = any free one"},
		{.name = "fix-port",
		 .type = SHM_OPT_NUM,
		 .arg = "P",
		 .dst = &o->fix_port,
		 .max = 65535,
		 .show_default = true,
		 .help = "TCP port of FIX 4.4 order entry (shmex-fix), 0 = any free one"},
		{.name = "no-fix",
		 .type = SHM_OPT_FLAG,
		 .dst = &o->no_fix,
		 .help = "do not serve FIX"},
		{.name = "fix-comp-id",
		 .type = SHM_OPT_STR,
		 .arg = "ID",
		 .dst = &o->fix_comp_id,
		 .show_default = true,
		 .help = "the exchange's FIX CompID (the clients' TargetCompID)"},
		{.name = "fix-sessions",
		 .type = SHM_OPT_STR,
		 .arg = "FILE",
		 .dst = &o->fix_sessions,
		 .help = "FIX sessions allowed: lines \"SENDERCOMPID ACCOUNT... | *\" "
			 "(default: any SenderCompID, any account)"},
		{.name = "bind",
		 .type = SHM_OPT_STR,
		 .arg = "ADDR",
		 .dst = &o->bind,
		 .show_default = true,
		 .help = "IPv4 address to listen on"},
		{.name = "start-timeout-ms",
		 .type = SHM_OPT_NUM,
		 .arg = "MS",
		 .dst = &o->start_timeout_ms,
		 .min = 1,
		 .max = SHM_SETTINGS_MS_MAX,
		 .show_default = true,
		 .help = "time for each child to get ready"},
		{.name = "data-dir",
		 .type = SHM_OPT_STR,
		 .arg = "DIR",
		 .dst = &o->data_dir,
		 .help = "journals and lock of the exchange (created if missing; "
			 "default shmex-data/INSTANCE under the working directory); "
			 "a start with journals in it recovers them"},
	};
	shm_opt_settings(opts + 9, &o->set);
	const struct shm_opt_prog prog = {
		.name = "shmex",
		.synopsis = "[options]",
		.about =
			"Starts an exchange: matchers, gateways and their shared memory, in the\n"
			"foreground.  Stop it with Ctrl-C or SIGTERM.",
		.opts = opts,
		.nopts = sizeof(opts) / sizeof(opts[0]),
	};
	enum shm_opt_result r = shm_opt_parse(&prog, argc, argv, NULL);
	if (r != SHM_OPT_RUN)
		return r;
	if (!shm_instance_name_valid(o->instance))
		return shm_opt_usage_error(&prog,
					   "--instance: invalid name '%s' (1..%u "
					   "of A-Z a-z 0-9 _ -)",
					   o->instance, SHM_INSTANCE_MAX);
	if (!o->no_fix && o->set.gateways >= SHM_INSTANCE_GATEWAYS_MAX)
		return shm_opt_usage_error(
			&prog,
			"--gateways %u leaves no gateway for FIX: at most %u "
			"with FIX, or --no-fix",
			(unsigned)o->set.gateways, SHM_INSTANCE_GATEWAYS_MAX - 1);
	size_t idl = strlen(o->fix_comp_id);
	bool id_ok = idl >= 1 && idl <= 64;
	for (size_t i = 0; i < idl; i++) {
		char c = o->fix_comp_id[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
			id_ok = false;
	}
	if (!id_ok)
		return shm_opt_usage_error(
			&prog,
			"--fix-comp-id: invalid CompID '%s' (1..64 of A-Z "
			"a-z 0-9 _ - .)",
			o->fix_comp_id);
	o->shards = (uint32_t)o->set.shards;
	o->gateways = (uint32_t)o->set.gateways;
	o->drain_ms = (uint32_t)o->set.drain_ms;
	o->quiet = o->set.quiet != 0;
	return SHM_OPT_RUN;
}

/* ---- the data directory ---- */

static int launch(struct sup *s);

/* DIR/exchange.conf records what the journals depend on (the shard
 * count routes symbols to shards); a start with another count is
 * refused rather than replaying journals into the wrong shards. */
static int check_conf(struct sup *s)
{
	char path[SHM_DATA_DIR_MAX + 32], tmp[SHM_DATA_DIR_MAX + 40];
	snprintf(path, sizeof(path), "%s/exchange.conf", s->data);
	FILE *f = fopen(path, "r");
	if (f) {
		char line[128];
		unsigned long shards = 0;
		bool seen = false;
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "shards %lu", &shards) == 1)
				seen = true;
		fclose(f);
		if (!seen) {
			logf_(s, true, "%s: no \"shards N\" line; the file is damaged",
			      path);
			return -1;
		}
		if (shards != s->o.shards) {
			logf_(s, true,
			      "data directory %s holds an exchange of %lu shard%s; start "
			      "it with --shards %lu, or use another --data-dir",
			      s->data, shards, shards == 1 ? "" : "s", shards);
			return -1;
		}
		return 0;
	}
	if (errno != ENOENT) {
		logf_(s, true, "%s: %s", path, strerror(errno));
		return -1;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	bool ok = f && fprintf(f,
			       "# shmex data directory: the journals depend on these\n"
			       "shards %u\n",
			       s->o.shards) > 0;
	ok = ok && fflush(f) == 0 && fdatasync(fileno(f)) == 0;
	if (f && fclose(f) != 0)
		ok = false;
	ok = ok && rename(tmp, path) == 0 && shm_journal_sync_dir(s->data) == 0;
	if (!ok) {
		logf_(s, true, "writing %s: %s", path, strerror(errno));
		(void)unlink(tmp);
		return -1;
	}
	return 0;
}

/* Creates and locks the data directory (refused while another live
 * exchange holds it), or notes that there is none (--no-journal). */
static int open_data_dir(struct sup *s)
{
	s->data[0] = 0;
	if (s->o.set.no_journal) {
		logf_(s, false,
		      "running without a journal (--no-journal): a crash of any "
		      "matcher loses every order and balance");
		return 0;
	}
	char want[PATH_MAX];
	if (s->o.data_dir)
		snprintf(want, sizeof(want), "%s", s->o.data_dir);
	else
		snprintf(want, sizeof(want), "shmex-data/%s", s->o.instance);
	struct shmex_error e = {0};
	int rc = shm_journal_mkdirs(want, &e);
	if (rc) {
		logf_(s, true, "data directory %s: %s", want, shmex_error_msg(&e, rc));
		return -1;
	}
	char *abs = realpath(want, NULL);
	if (!abs || strlen(abs) >= sizeof(s->data)) {
		logf_(s, true, "data directory %s: %s", want,
		      abs ? "path too long" : strerror(errno));
		free(abs);
		return -1;
	}
	snprintf(s->data, sizeof(s->data), "%s", abs);
	free(abs);
	rc = shm_journal_lock(s->data, &s->lock_fd, &e);
	if (rc) {
		s->lock_fd = -1;
		logf_(s, true, "data directory %s: %s", s->data, shmex_error_msg(&e, rc));
		s->data[0] = 0;
		return -1;
	}
	if (check_conf(s) != 0)
		return -1;
	logf_(s, false, "data directory %s (journal, --sync %s)", s->data,
	      s->o.set.sync ? "none" : "fsync");
	return 0;
}

static int launch(struct sup *s);

/* How many times a launch starts over because a matcher was killed
 * during it, before the start fails. */
#define LAUNCH_ATTEMPTS 8

/* launch(), started over (every child stopped, the shared memory
 * removed) while a matcher is killed during the matchers' recovery. */
static int launch_retrying(struct sup *s)
{
	for (unsigned attempt = 1;; attempt++) {
		s->relaunch = false;
		int rc = launch(s);
		if (rc == 0 || !s->relaunch || s->stopping)
			return rc;
		if (attempt == LAUNCH_ATTEMPTS) {
			logf_(s, true,
			      "matchers killed during %u starts in a row; giving up",
			      attempt);
			return -1;
		}
		s->quiescing = true;
		stop_children(s);
		s->quiescing = false;
		for (uint32_t k = 0; k < s->o.shards; k++) {
			s->matchers[k].restart_at_ns = 0;
			s->matchers[k].status = 0;
		}
		for (uint32_t g = 0; g < s->ngw; g++)
			s->gateways[g].restart_at_ns = 0;
		s->audit.restart_at_ns = 0;
	}
}

/* Every matcher of a new instance recovers at once, from the journals:
 * used when one matcher cannot be restarted alone. */
static int start_over(struct sup *s)
{
	s->start_over = false;
	s->quiescing = true;
	stop_children(s);
	s->quiescing = false;
	for (uint32_t k = 0; k < s->o.shards; k++)
		s->matchers[k].restart_at_ns = 0;
	for (uint32_t g = 0; g < s->ngw; g++)
		s->gateways[g].restart_at_ns = 0;
	s->audit.restart_at_ns = 0;
	if (s->stopping)
		return 0;
	if (launch_retrying(s) != 0)
		return -1;
	logf_(s, true, "instance %s recovered from %s and running again", s->o.instance,
	      s->data);
	return 0;
}

/* ---- main ---- */

static int start(struct sup *s)
{
	ssize_t n = readlink("/proc/self/exe", s->dir, sizeof(s->dir) - 1);
	if (n <= 0) {
		logf_(s, true, "cannot find my own program: %s", strerror(errno));
		return -1;
	}
	s->dir[n] = 0;
	char *slash = strrchr(s->dir, '/');
	if (slash)
		*slash = 0;
	for (int k = 0; k < (s->o.no_fix ? 3 : 4); k++) {
		char p[PATH_MAX + 32];
		snprintf(p, sizeof(p), "%s/%s", s->dir,
			 k == 3 ? "shmex-fix" : kind_prog((enum child_kind)k));
		if (access(p, X_OK) != 0) {
			logf_(s, true, "%s: %s (it must sit next to shmex)", p,
			      strerror(errno));
			return -1;
		}
	}
	if (for_each_object(s, remove_stale_one) != 0)
		return -1;
	if (check_shm_space(s) != 0)
		return -1;
	int rc = gw_listen_open(s->o.bind, (int)s->o.port, false, 4096, &s->listen_fd,
				&s->port);
	if (rc) {
		logf_(s, true, "cannot listen on %s:%u: %s", s->o.bind,
		      (unsigned)s->o.port, strerror(-rc));
		return -1;
	}
	if (!s->o.no_fix) {
		rc = gw_listen_open(s->o.bind, (int)s->o.fix_port, false, 1024,
				    &s->fix_fd, &s->fix_port);
		if (rc) {
			s->fix_fd = -1;
			logf_(s, true,
			      "cannot listen for FIX on %s:%u: %s (--fix-port, or --no-fix)",
			      s->o.bind, (unsigned)s->o.fix_port, strerror(-rc));
			return -1;
		}
		s->ngw = s->o.gateways + 1;
	}
	if (s->o.fix_sessions && access(s->o.fix_sessions, R_OK) != 0) {
		logf_(s, true, "--fix-sessions %s: %s", s->o.fix_sessions,
		      strerror(errno));
		return -1;
	}
	if (open_data_dir(s) != 0)
		return -1;
	return launch_retrying(s);
}

/* Creates the shared memory and starts every child (each matcher
 * recovering its shard from the journal); the listening socket and the
 * data directory are open. */
static int launch(struct sup *s)
{
	struct shm_instance_cfg icfg = {.s = s->o.set,
					.mode = 0640,
					.data_dir = s->data[0] ? s->data : NULL,
					.port = (uint32_t)s->port};
	/* The FIX gateway has rings of its own: one gateway more. */
	icfg.s.gateways = s->ngw;
	int rc;
	rc = shm_instance_create(s->o.instance, &icfg, &s->inst);
	if (rc) {
		logf_(s, true, "create instance %s: %s", s->o.instance,
		      shmex_error_msg(&s->inst.err, rc));
		return -1;
	}
	s->inst_ok = true;
	/* control and rings were created O_EXCL: from now on the name is
	 * ours (a concurrent start of the same instance failed here). */
	s->owns = true;
	rc = shm_accounts_create(&s->accts, s->o.instance, s->o.set.accounts, 0640);
	if (rc) {
		logf_(s, true, "create accounts of %s: %s", s->o.instance,
		      shmex_strerror(rc));
		return -1;
	}
	s->accts_ok = true;
	rc = rings_open(s);
	if (rc) {
		logf_(s, true, "rings of %s: %s", s->o.instance, shmex_strerror(rc));
		return -1;
	}
	/* All matchers start at once (each pre-faults its regions), then
	 * each is awaited; gateways only once every book exists. */
	for (uint32_t k = 0; k < s->o.shards; k++)
		if (spawn(s, K_MATCHER, k) < 0)
			return -1;
	for (uint32_t k = 0; k < s->o.shards; k++)
		if (!wait_ready(s, K_MATCHER, k))
			return -1;
	/* The audit writer follows the journals (docs/durability.md). */
	if (s->data[0] && spawn(s, K_AUDIT, 0) < 0)
		return -1;
	for (uint32_t g = 0; g < s->ngw; g++)
		if (spawn(s, K_GATEWAY, g) < 0)
			return -1;
	for (uint32_t g = 0; g < s->ngw; g++)
		if (!wait_ready(s, K_GATEWAY, g))
			return -1;
	return 0;
}

int main(int argc, char **argv)
{
	struct sup s;
	memset(&s, 0, sizeof(s));
	s.listen_fd = -1;
	s.fix_fd = -1;
	s.lock_fd = -1;
	int rc = parse_opts(argc, argv, &s.o);
	if (rc != SHM_OPT_RUN)
		return rc == SHM_OPT_EXIT ? 0 : 2;
	s.ngw = s.o.gateways;
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&s.sigs);
	sigaddset(&s.sigs, SIGCHLD);
	sigaddset(&s.sigs, SIGINT);
	sigaddset(&s.sigs, SIGTERM);
	sigprocmask(SIG_BLOCK, &s.sigs, NULL);

	if (start(&s) != 0) {
		/* A stop requested during startup (SIGINT/SIGTERM) is a clean
		 * stop; anything else is a failure. */
		bool asked = s.stopping && s.exit_code == 0;
		if (!asked)
			s.exit_code = 1;
		shutdown_all(&s);
		if (asked)
			logf_(&s, false, "instance %s stopped during startup",
			      s.o.instance);
		else
			logf_(&s, true, "instance %s did not start", s.o.instance);
		return s.exit_code;
	}
	/* The XML port stays the last ":N" of the line (scripts take it). */
	char fixinfo[96] = "";
	if (s.fix_fd >= 0)
		snprintf(fixinfo, sizeof(fixinfo), ", FIX port %d as %s", s.fix_port,
			 s.o.fix_comp_id);
	printf("shmex: instance %s listening on %s:%d (%u shard%s, %u gateway%s%s)\n",
	       s.o.instance, s.o.bind, s.port, s.o.shards, s.o.shards == 1 ? "" : "s",
	       s.o.gateways, s.o.gateways == 1 ? "" : "s", fixinfo);
	fflush(stdout);

	while (!s.stopping) {
		if (s.start_over && start_over(&s) != 0) {
			/* A stop asked (SIGINT/SIGTERM) while the matchers
			 * recovered is a clean stop; anything else a failure. */
			if (!s.stopping || s.exit_code != 0)
				s.exit_code = 1;
			break;
		}
		uint64_t now = shm_clock_ns(CLOCK_MONOTONIC), next = 0;
		for (uint32_t i = 0; i < s.o.shards + s.ngw + 1; i++) {
			enum child_kind k = i < s.o.shards           ? K_MATCHER
					    : i < s.o.shards + s.ngw ? K_GATEWAY
								     : K_AUDIT;
			uint32_t idx = k == K_MATCHER   ? i
				       : k == K_GATEWAY ? i - s.o.shards
							: 0;
			struct child *c = child_of(&s, k, idx);
			if (c->pid == 0 && c->restart_at_ns) {
				if (now >= c->restart_at_ns) {
					c->restarts++;
					if (spawn(&s, k, idx) > 0)
						logf_(&s, false,
						      "%s %u restarted "
						      "(pid %d, restart %u)",
						      kind_name(k), idx, (int)c->pid,
						      c->restarts);
					else
						c->restart_at_ns = now + 1000000000u;
				}
				if (c->restart_at_ns &&
				    (!next || c->restart_at_ns < next))
					next = c->restart_at_ns;
			}
		}
		check_rings(&s);
		int wait_ms = RING_CHECK_MS;
		if (next) {
			uint64_t left = next > now ? (next - now) / 1000000u + 1 : 0;
			if (left < (uint64_t)wait_ms)
				wait_ms = (int)left;
		}
		take_signals(&s, wait_ms);
	}
	shutdown_all(&s);
	logf_(&s, s.exit_code != 0, "instance %s stopped%s", s.o.instance,
	      s.exit_code ? " after a failure"
			  : "; shared memory removed, journals kept");
	return s.exit_code;
}

/*
 * shmex-replay: feeds recorded order flow through the real matching core
 * and prints the canonical report lines of the conformance batteries
 * (engine/eng_replay.h), their SHA-256, or a PASS/FAIL verdict per case.
 *
 *   shmex-replay [--sha256] [--check] [--case NAME] [--counts]
 *                [--expect HEX] [--limit N] [--through-shm] FILE...
 *
 * FILE is a JSON battery (*.json: each case on a fresh book) or a MEBW_001
 * workload (*.bin, *.bin.xz: one book for the whole flow, streamed).
 * Exit status: 0 success, 1 a check failed or a file could not be read,
 * 2 usage error.
 *
 * --through-shm drives the same flow through a real shmex-matcher process
 * instead of an in-process book: it creates a private instance
 * (control, rings, accounts; named "replay-<pid>"), starts the matcher
 * next to this program, creates one account with a huge balance and gives
 * it a huge number of shares of each symbol, so that account checks never
 * refuse what the core would accept.  Every message goes as one ring
 * message and waits for its reply (lock-step, so the book read afterwards
 * is exactly the state after that message); the report lines are rebuilt
 * from the reply and from the book region, read like any other reader
 * does (shm_read: reader table + seqcount snapshots): the new order's
 * fills (counterparty = maker), its state (IOC/FOK remainder cancelled),
 * a modify's new fills.  Each JSON case gets a fresh symbol ("C<n>") in
 * the same matcher, i.e. a fresh empty book.  The report is byte for byte
 * the in-process one (tests/test_eng_matcher.c checks it); docs/matcher.md
 * lists the assumptions (quantities whose q x limit fits the cash range).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine/eng_replay.h"
#include "engine/eng_sha256.h"
#include "shm/shm_accounts.h"
#include "shm/shm_atomic.h"
#include "shm/shm_book.h"
#include "shm/shm_clock.h"
#include "shm/shm_dec.h"
#include "shm/shm_error.h"
#include "shm/shm_instance.h"
#include "shm/shm_msg.h"
#include "shm/shm_opt.h"
#include "shm/shm_positions.h"
#include "shm/shm_read.h"
#include "shm/shm_readers.h"
#include "shm/shm_region.h"
#include "shm/shm_ring.h"

struct opts {
	bool sha256;
	bool check;
	bool counts;
	bool through_shm;
	const char *only_case;
	const char *expect;
	const char *matcher;     /* --matcher PATH */
	uint64_t limit;          /* --limit N: workload prefix; 0 = all */
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: shmex-replay [OPTIONS] FILE...\n"
		"Replays conformance batteries (*.json) or MEBW_001 workloads\n"
		"(*.bin, *.bin.xz) through the matching core and prints the\n"
		"canonical report lines.\n"
		"\n"
		"  --sha256        print only the SHA-256 of each report stream\n"
		"  --check         batteries: compare every case with its expected\n"
		"                  reports, hash and book states; print PASS/FAIL\n"
		"  --case NAME     only the battery case NAME\n"
		"  --counts        workloads: print the report counts per type\n"
		"  --expect HEX    workloads: exit 1 unless the SHA-256 is HEX\n"
		"  --limit N       workloads: only the first N messages\n"
		"  --through-shm   drive the flow through a real shmex-matcher\n"
		"                  process over shared-memory rings (same report)\n"
		"  --matcher PATH  the shmex-matcher program for --through-shm\n"
		"                  (default: next to this program)\n"
		"  -h, --help      this help\n"
		"  --version       program and layout versions\n");
}

static void print_line(void *ctx, const char *s, size_t len)
{
	fwrite(s, 1, len, (FILE *)ctx);
	fputc('\n', (FILE *)ctx);
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && !strcmp(s + n - k, suffix);
}

/* What a workload run prints after its last message (--sha256, --counts,
 * --expect); 1 when --expect does not match, else 0. */
static int workload_report(const char *path, const struct opts *o, uint64_t k,
			   const char hex[65], const uint64_t c[6], uint64_t rejected)
{
	if (o->sha256)
		printf("%s\n", hex);
	if (o->counts)
		printf("messages %llu accept %llu trade %llu cancel %llu modify %llu "
		       "cancel_reject %llu modify_reject %llu rejected_new %llu\n",
		       (unsigned long long)k, (unsigned long long)c[0],
		       (unsigned long long)c[1], (unsigned long long)c[2],
		       (unsigned long long)c[3], (unsigned long long)c[4],
		       (unsigned long long)c[5], (unsigned long long)rejected);
	if (o->expect) {
		bool ok = !strcmp(hex, o->expect);
		printf("%s %s\n", ok ? "PASS" : "FAIL", path);
		if (!ok) {
			fprintf(stderr, "shmex-replay: sha256 %s, expected %s\n", hex, o->expect);
			return 1;
		}
	}
	return 0;
}

static int run_workload(const char *path, const struct opts *o)
{
	char err[512];
	struct eng_replay_wl *w;
	if (eng_replay_wl_open(&w, path, err, sizeof(err)) != 0) {
		fprintf(stderr, "shmex-replay: %s\n", err);
		return 1;
	}
	struct eng_replay_cfg cfg;
	eng_replay_cfg_default(&cfg, false);
	bool print = !o->sha256 && !o->counts && !o->expect;
	if (print) {
		cfg.line = print_line;
		cfg.ctx = stdout;
	}
	struct eng_replay *r;
	if (eng_replay_open(&r, &cfg) != 0) {
		fprintf(stderr, "shmex-replay: out of memory\n");
		eng_replay_wl_close(w);
		return 1;
	}
	int rc = 0, n;
	struct eng_replay_msg m;
	uint64_t k = 0;
	while ((!o->limit || k < o->limit) && (n = eng_replay_wl_next(w, &m)) == 1) {
		if (eng_replay_apply(r, &m) != 0) {
			fprintf(stderr, "shmex-replay: out of memory\n");
			rc = 1;
			break;
		}
		k++;
	}
	if (n < 0) {
		fprintf(stderr, "shmex-replay: %s: bad or truncated record %llu\n", path,
			(unsigned long long)k);
		rc = 1;
	}
	char hex[65];
	eng_replay_sha256_hex(r, hex);
	uint64_t c[6];
	eng_replay_counts(r, c);
	rc |= workload_report(path, o, k, hex, c, eng_replay_rejected(r));
	eng_replay_close(r);
	eng_replay_wl_close(w);
	return rc;
}

/* ------------------------------------------------------------------ */
/* --through-shm: the same flow through a shmex-matcher process        */

#define SR_ACCOUNT 1
/* Cash and shares given to the one account: far above what any flow
 * holds at once, and both below INT64_MAX so the deposit and creation
 * totals of the regions accept them. */
#define SR_BALANCE (INT64_MAX / 4)
#define SR_SHARES (INT64_MAX / 4)
#define SR_REPLY_TIMEOUT_MS 10000
/* Messages in flight at once (<= the ring capacity, 1024 by default). */
#define SR_WINDOW 256u

static int sr_signalled; /* SIGINT/SIGTERM seen; relaxed (same thread) */

static void sr_on_signal(int sig)
{
	(void)sig;
	store_relaxed(&sr_signalled, 1);
}

struct sr_line {
	uint32_t off, len;
	uint8_t type;
};

/* Report lines of one message, canonical order, hash and counts. */
struct sr_report {
	char *buf;
	size_t len, cap;
	struct sr_line *lines;
	size_t n, lcap;
	bool any;
	uint64_t counts[6];
	uint64_t rejected;
	struct eng_sha256 sha;
	eng_replay_line_fn sink;
	void *ctx;
	bool oom;
};

/* One message in flight (or answered locally, waiting for its turn). */
struct sr_pend {
	struct eng_replay_msg m;
	uint64_t req_id;
	uint64_t id;              /* CANCEL/MODIFY: the target's shmex id */
	bool local;               /* unknown client id: 4/5 line, no ring trip */
};

struct sr {
	char inst[48];
	struct shm_instance si;
	bool si_ok;
	struct shm_accounts acc;
	bool acc_ok;
	pid_t pid;
	struct shm_ring req, rep;
	struct shm_read rd;
	bool rd_ok;
	uint64_t next_req;
	struct shm_book_caps caps;
	uint32_t nsyms;           /* symbols created */
	char sym[16];             /* the current symbol, packed */
	uint32_t symi;            /* its book index */
	/* client id -> shmex id (0 = empty), and record slot -> client id */
	uint64_t *map_key, *map_val;
	size_t map_mask, map_used;
	uint64_t *cid_of_slot;
	struct shm_read_fill *fills;
	size_t fills_cap;
	struct shm_read_level *bids, *asks;
	int64_t (*lv)[2];         /* both sides as [price, qty]: 2 x levels */
	struct sr_report rep_lines;
	/* Messages in flight, oldest at pend_head, and replies read ahead. */
	struct sr_pend pend[SR_WINDOW];
	uint32_t pend_head, pend_n;
	struct shm_msg rx[SR_WINDOW];
	uint32_t rx_next, rx_n, rx_waits;
	uint64_t last_event;      /* u.r.seq of the last reply processed */
};

static int sr_fail(const char *what, int rc)
{
	fprintf(stderr, "shmex-replay: --through-shm: %s: %s\n", what,
		shmex_strerror(rc));
	return rc ? rc : -EINVAL;
}

/* ---- report lines ---- */

static void sr_line(struct sr_report *r, unsigned type, int n, const int64_t *f)
{
	r->counts[type]++;
	if (r->len + 200 > r->cap) {
		size_t cap = r->cap ? 2 * r->cap : 4096;
		char *nb = realloc(r->buf, cap);
		if (!nb) {
			r->oom = true;
			return;
		}
		r->buf = nb;
		r->cap = cap;
	}
	if (r->n == r->lcap) {
		size_t cap = r->lcap ? 2 * r->lcap : 64;
		struct sr_line *nl = realloc(r->lines, cap * sizeof(*nl));
		if (!nl) {
			r->oom = true;
			return;
		}
		r->lines = nl;
		r->lcap = cap;
	}
	int k = snprintf(r->buf + r->len, r->cap - r->len, "%u", type);
	for (int i = 0; i < n; i++)
		k += snprintf(r->buf + r->len + k, r->cap - r->len - k, ",%lld",
			      (long long)f[i]);
	r->lines[r->n].off = (uint32_t)r->len;
	r->lines[r->n].len = (uint32_t)k;
	r->lines[r->n].type = (uint8_t)type;
	r->n++;
	r->len += (size_t)k;
}

/* Sends one message's lines out stable-sorted by type (as eng_replay). */
static void sr_flush(struct sr_report *r)
{
	for (unsigned t = 0; t < 6; t++) {
		for (size_t i = 0; i < r->n; i++) {
			const struct sr_line *l = &r->lines[i];
			if (l->type != t)
				continue;
			const char *p = r->buf + l->off;
			if (r->any)
				eng_sha256_update(&r->sha, "\n", 1);
			eng_sha256_update(&r->sha, p, l->len);
			r->any = true;
			if (r->sink)
				r->sink(r->ctx, p, l->len);
		}
	}
	r->n = 0;
	r->len = 0;
}

static void sr_report_reset(struct sr_report *r, eng_replay_line_fn sink, void *ctx)
{
	r->n = r->len = 0;
	r->any = false;
	memset(r->counts, 0, sizeof(r->counts));
	r->rejected = 0;
	eng_sha256_init(&r->sha);
	r->sink = sink;
	r->ctx = ctx;
}

static void sr_report_hex(struct sr_report *r, char out[65])
{
	uint8_t d[32];
	eng_sha256_final(&r->sha, d);
	eng_sha256_hex(d, out);
}

/* ---- client id map ---- */

static size_t sr_hash(uint64_t k)
{
	k ^= k >> 33;
	k *= UINT64_C(0xff51afd7ed558ccd);
	k ^= k >> 33;
	return (size_t)k;
}

static int sr_map_init(struct sr *s, size_t cap)
{
	free(s->map_key);
	free(s->map_val);
	s->map_key = calloc(cap, sizeof(uint64_t));
	s->map_val = calloc(cap, sizeof(uint64_t));
	s->map_mask = cap - 1;
	s->map_used = 0;
	return s->map_key && s->map_val ? 0 : -ENOMEM;
}

static uint64_t sr_map_get(const struct sr *s, uint64_t k)
{
	for (size_t i = sr_hash(k) & s->map_mask; s->map_val[i];
	     i = (i + 1) & s->map_mask)
		if (s->map_key[i] == k)
			return s->map_val[i];
	return 0;
}

static void sr_map_put_nogrow(struct sr *s, uint64_t k, uint64_t v)
{
	size_t i = sr_hash(k) & s->map_mask;
	for (; s->map_val[i]; i = (i + 1) & s->map_mask) {
		if (s->map_key[i] == k) {
			s->map_val[i] = v;
			return;
		}
	}
	s->map_key[i] = k;
	s->map_val[i] = v;
	s->map_used++;
}

static int sr_map_put(struct sr *s, uint64_t k, uint64_t v)
{
	if (2 * (s->map_used + 1) > s->map_mask + 1) {
		uint64_t *ok = s->map_key, *ov = s->map_val;
		size_t ocap = s->map_mask + 1;
		s->map_key = s->map_val = NULL;
		if (sr_map_init(s, 2 * ocap) != 0) {
			free(ok);
			free(ov);
			return -ENOMEM;
		}
		for (size_t i = 0; i < ocap; i++)
			if (ov[i])
				sr_map_put_nogrow(s, ok[i], ov[i]);
		free(ok);
		free(ov);
	}
	sr_map_put_nogrow(s, k, v);
	return 0;
}

static uint64_t sr_cid_of(const struct sr *s, uint64_t id)
{
	return s->cid_of_slot[shm_order_slot(id, 1, s->caps.orders)];
}

/* ---- the matcher process and its rings ---- */

/* One request and its reply, with nothing else in flight (setup). */
static int sr_call(struct sr *s, struct shm_msg *q, struct shm_msg *a)
{
	q->req_id = ++s->next_req;
	unsigned done = 0;
	int rc = shm_ring_enqueue_batch(&s->req, q, 1, &done);
	if (rc)
		return sr_fail("request ring", rc);
	if (done != 1)
		return sr_fail("request ring unexpectedly full", SHMEX_EINTERNAL);
	uint64_t waited_ms = 0;
	for (;;) {
		unsigned got = 0;
		rc = shm_ring_dequeue_batch(&s->rep, a, 1, &got);
		if (rc)
			return sr_fail("reply ring", rc);
		if (got == 1)
			break;
		if (load_relaxed(&sr_signalled))
			return sr_fail("interrupted", -EINTR);
		rc = shm_ring_wait(&s->rep, 100);
		if (rc == SHMEX_ETIMEDOUT) {
			waited_ms += 100;
			int st;
			if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
				s->pid = 0;
				return sr_fail("the matcher died", SHMEX_EINTERNAL);
			}
			if (waited_ms >= SR_REPLY_TIMEOUT_MS)
				return sr_fail("no reply from the matcher", SHMEX_ETIMEDOUT);
		} else if (rc && rc != -EINTR) {
			return sr_fail("waiting for a reply", rc);
		}
	}
	if (shm_msg_validate_reply(a) != 0 || a->req_id != q->req_id ||
	    a->req_type != q->type)
		return sr_fail("malformed reply", SHMEX_EBADMSG);
	s->last_event = a->u.r.seq;
	return 0;
}

static void sr_stop(struct sr *s)
{
	if (s->rd_ok)
		shm_read_close(&s->rd);
	s->rd_ok = false;
	if (s->pid > 0) {
		kill(s->pid, SIGTERM);
		int st;
		while (waitpid(s->pid, &st, 0) < 0 && errno == EINTR)
			;
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			fprintf(stderr, "shmex-replay: the matcher did not exit cleanly "
					"(status 0x%x)\n", st);
		s->pid = 0;
	}
	if (s->acc_ok)
		shm_accounts_detach(&s->acc);
	s->acc_ok = false;
	if (s->si_ok)
		shm_instance_detach(&s->si);
	s->si_ok = false;
	(void)!shm_instance_unlink(s->inst);
	(void)!shm_accounts_unlink(s->inst);
	(void)!shm_region_unlink(s->inst, "book.0");
	(void)!shm_positions_unlink(s->inst, 0);
	(void)!shm_readers_unlink(s->inst, 0);
	free(s->map_key);
	free(s->map_val);
	free(s->cid_of_slot);
	free(s->fills);
	free(s->bids);
	free(s->asks);
	free(s->lv);
	free(s->rep_lines.buf);
	free(s->rep_lines.lines);
}

static bool sr_ready(struct sr *s)
{
	int32_t pid;
	uint64_t start;
	shm_instance_member(&s->si, SHM_ROLE_MATCHER, 0, &pid, &start);
	if (pid != s->pid)
		return false;
	return shm_read_open(&s->rd, s->inst, 0) == 0;
}

static int sr_start(struct sr *s, const struct shm_book_caps *caps,
		    const char *matcher)
{
	memset(s, 0, sizeof(*s));
	s->caps = *caps;
	snprintf(s->inst, sizeof(s->inst), "replay-%d", (int)getpid());
	char path[PATH_MAX];
	if (matcher) {
		snprintf(path, sizeof(path), "%s", matcher);
	} else {
		ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 32);
		if (n <= 0)
			return sr_fail("/proc/self/exe", -errno);
		path[n] = 0;
		char *slash = strrchr(path, '/');
		snprintf(slash ? slash + 1 : path, 32, "shmex-matcher");
	}
	if (access(path, X_OK) != 0)
		return sr_fail(path, -errno);

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = sr_on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	struct shm_instance_cfg icfg = {.nshards = 1, .ngateways = 1, .mode = 0600};
	icfg.limits[SHM_LIMIT_ORDERS_PER_SHARD] = caps->orders;
	icfg.limits[SHM_LIMIT_LEVELS_PER_SHARD] = caps->levels;
	icfg.limits[SHM_LIMIT_SYMBOLS] = caps->symbols;
	int rc = shm_instance_create(s->inst, &icfg, &s->si);
	if (rc) {
		fprintf(stderr, "shmex-replay: %s\n", s->si.err);
		return rc;
	}
	s->si_ok = true;
	rc = shm_accounts_create(&s->acc, s->inst, 16, 0600);
	if (rc) {
		sr_fail("creating the accounts region", rc);
		goto out_stop;
	}
	s->acc_ok = true;
	char a_orders[16], a_levels[16], a_fills[16], a_syms[16];
	snprintf(a_orders, sizeof(a_orders), "%u", caps->orders);
	snprintf(a_levels, sizeof(a_levels), "%u", caps->levels);
	snprintf(a_fills, sizeof(a_fills), "%u", caps->fills);
	snprintf(a_syms, sizeof(a_syms), "%u", caps->symbols);
	pid_t parent = getpid();
	s->pid = fork();
	if (s->pid < 0) {
		rc = sr_fail("fork", -errno);
		s->pid = 0;
		goto out_stop;
	}
	if (s->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(1);
		execl(path, path, "--instance", s->inst, "--shard", "0", "--orders",
		      a_orders, "--levels", a_levels, "--fills", a_fills, "--symbols",
		      a_syms, "--positions", "64", "--quiet", (char *)NULL);
		fprintf(stderr, "shmex-replay: exec %s: %s\n", path, strerror(errno));
		_exit(127);
	}
	for (int i = 0; !sr_ready(s); i++) {
		int st;
		if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
			s->pid = 0;
			rc = sr_fail("the matcher failed to start", SHMEX_EINTERNAL);
			goto out_stop;
		}
		if (i > 10000 || load_relaxed(&sr_signalled)) {
			rc = sr_fail("the matcher did not get ready", SHMEX_ETIMEDOUT);
			goto out_stop;
		}
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	s->rd_ok = true;
	rc = shm_instance_request_ring(&s->si, 0, 0, &s->req);
	if (!rc)
		rc = shm_instance_reply_ring(&s->si, 0, 0, &s->rep);
	if (rc) {
		sr_fail("attaching the rings", rc);
		goto out_stop;
	}
	s->rep.spin_ns = 100000; /* lock-step: the reply comes in microseconds */
	rc = -ENOMEM;
	s->cid_of_slot = calloc(caps->orders, sizeof(uint64_t));
	s->bids = calloc(caps->levels, sizeof(*s->bids));
	s->asks = calloc(caps->levels, sizeof(*s->asks));
	s->lv = calloc(2 * (size_t)caps->levels, sizeof(*s->lv));
	if (!s->cid_of_slot || !s->bids || !s->asks || !s->lv ||
	    sr_map_init(s, 1u << 12)) {
		sr_fail("out of memory", rc);
		goto out_stop;
	}
	struct shm_msg q, a;
	memset(&q, 0, sizeof(q));
	q.type = SHM_MSG_CREATE_ACCOUNT;
	q.account = SR_ACCOUNT;
	q.price = SR_BALANCE;
	rc = sr_call(s, &q, &a);
	if (!rc && a.status)
		rc = sr_fail("creating the account", a.status);
	if (rc)
		goto out_stop;
	return 0;

out_stop:
	sr_stop(s);
	return rc;
}

/* A fresh symbol (a fresh empty book) with the account's shares. */
static int sr_new_symbol(struct sr *s)
{
	char name[16];
	int n = snprintf(name, sizeof(name), "C%u", s->nsyms++);
	if (!shm_symbol_pack(s->sym, name, (size_t)n))
		return sr_fail("symbol name", SHMEX_EBADSYMBOL);
	struct shm_msg q, a;
	memset(&q, 0, sizeof(q));
	q.type = SHM_MSG_ADD_SHARES;
	q.account = SR_ACCOUNT;
	q.qty = SR_SHARES;
	memcpy(q.u.symbol, s->sym, 16);
	int rc = sr_call(s, &q, &a);
	if (rc)
		return rc;
	if (a.status)
		return sr_fail("creating the symbol", a.status);
	rc = shm_read_symbol_find(&s->rd, name, (size_t)n, &s->symi);
	if (rc)
		return sr_fail("finding the symbol in the book", rc);
	return sr_map_init(s, 1u << 12);
}

/* Status and every fill of order id, through the book region.  A busy
 * read (the matcher kept changing the symbol through all of shm_read's
 * snapshot attempts, which happens on a loaded or sanitized build) is tried
 * again, for up to SR_BUSY_MS: the replay needs the answer, not speed. */
#define SR_BUSY_MS 10000u
static int sr_read_order(struct sr *s, uint64_t id, struct shm_read_order *o,
			 size_t *nf)
{
	uint64_t give_up = 0;
	for (;;) {
		int rc = shm_read_order(&s->rd, id, o, s->fills, s->fills_cap, nf);
		if (rc == SHMEX_EBUSY) {
			uint64_t now = shm_clock_ns(CLOCK_MONOTONIC);
			if (!give_up)
				give_up = now + SR_BUSY_MS * UINT64_C(1000000);
			if (now < give_up) {
				sched_yield();
				continue;
			}
		}
		if (rc)
			return rc;
		if (o->nfills <= s->fills_cap)
			return 0;
		size_t cap = (size_t)o->nfills * 2;
		struct shm_read_fill *f = realloc(s->fills, cap * sizeof(*f));
		if (!f)
			return -ENOMEM;
		s->fills = f;
		s->fills_cap = cap;
	}
}

/* Trade lines of the fills order `id` took as the taker in the request
 * whose events are (lo, hi]: later requests may have added fills by the
 * time we read (the pipeline), the event range picks out this one's. */
static int sr_taker_lines(struct sr *s, uint64_t id, int64_t cid, uint64_t seq,
			  uint64_t lo, uint64_t hi)
{
	struct shm_read_order o;
	size_t nf = 0;
	int rc = sr_read_order(s, id, &o, &nf);
	if (rc) {
		/* ENOORDER: the record was recycled before we read it. */
		return sr_fail("reading an order's fills from the book", rc);
	}
	int64_t f[5];
	f[0] = (int64_t)seq;
	for (size_t i = 0; i < nf; i++) {
		const struct shm_read_fill *x = &s->fills[i];
		if (x->maker || x->event <= lo || x->event > hi)
			continue;
		f[1] = x->price;
		f[2] = x->qty;
		f[3] = (int64_t)sr_cid_of(s, x->counterparty);
		f[4] = cid;
		sr_line(&s->rep_lines, 1, 5, f);
	}
	return 0;
}

/* Renders the lines of the oldest message in flight, waiting for its
 * reply when it went to the matcher. */
static int sr_process_one(struct sr *s)
{
	struct sr_pend *p = &s->pend[s->pend_head];
	const struct eng_replay_msg *m = &p->m;
	struct sr_report *r = &s->rep_lines;
	int64_t f[5];
	f[0] = (int64_t)m->seq;
	if (p->local) {
		f[1] = (int64_t)m->order_id;
		sr_line(r, m->type == ENG_REPLAY_CANCEL ? 4 : 5, 2, f);
		goto out;
	}
	while (s->rx_next == s->rx_n) {
		unsigned got = 0;
		int rc = shm_ring_dequeue_batch(&s->rep, s->rx, SR_WINDOW, &got);
		if (rc)
			return sr_fail("reply ring", rc);
		if (got) {
			s->rx_n = got;
			s->rx_next = 0;
			break;
		}
		if (load_relaxed(&sr_signalled))
			return sr_fail("interrupted", -EINTR);
		rc = shm_ring_wait(&s->rep, 100);
		if (rc == SHMEX_ETIMEDOUT) {
			int st;
			if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
				s->pid = 0;
				return sr_fail("the matcher died", SHMEX_EINTERNAL);
			}
			if (++s->rx_waits >= SR_REPLY_TIMEOUT_MS / 100)
				return sr_fail("no reply from the matcher", SHMEX_ETIMEDOUT);
		} else if (rc && rc != -EINTR) {
			return sr_fail("waiting for a reply", rc);
		}
	}
	s->rx_waits = 0;
	const struct shm_msg *a = &s->rx[s->rx_next++];
	if (shm_msg_validate_reply(a) != 0 || a->req_id != p->req_id)
		return sr_fail("malformed or unexpected reply", SHMEX_EBADMSG);
	uint64_t lo = s->last_event, hi = a->u.r.seq;
	if (hi < lo)
		return sr_fail("event sequence went backwards", SHMEX_EBADMSG);
	s->last_event = hi;
	int rc;
	switch (m->type) {
	case ENG_REPLAY_NEW:
		if (a->status) {
			r->rejected++;
			break;
		}
		s->cid_of_slot[shm_order_slot(a->order_id, 1, s->caps.orders)] =
			m->order_id;
		if (sr_map_put(s, m->order_id, a->order_id) != 0)
			return -ENOMEM;
		f[1] = m->side;
		f[2] = (int64_t)m->order_id;
		f[3] = m->price;
		f[4] = m->qty;
		sr_line(r, 0, 5, f);
		if (a->qty > 0) {
			rc = sr_taker_lines(s, a->order_id, (int64_t)m->order_id, m->seq,
					    lo, hi);
			if (rc)
				return rc;
		}
		/* IOC and FOK never rest: what they did not trade is cancelled
		 * in the same request (self-trades are allowed here). */
		if (m->tif != SHM_TIF_GTC && a->qty < m->qty) {
			f[1] = m->side;
			f[2] = (int64_t)m->order_id;
			f[3] = m->price;
			sr_line(r, 2, 4, f);
		}
		break;
	case ENG_REPLAY_CANCEL:
		if (a->status) {
			f[1] = (int64_t)m->order_id;
			sr_line(r, 4, 2, f);
			break;
		}
		f[1] = a->side;
		f[2] = (int64_t)sr_cid_of(s, p->id);
		f[3] = a->price;
		sr_line(r, 2, 4, f);
		break;
	default: { /* ENG_REPLAY_MODIFY */
		if (a->status) {
			f[1] = (int64_t)m->order_id;
			sr_line(r, 5, 2, f);
			break;
		}
		int64_t cid = (int64_t)sr_cid_of(s, p->id);
		if (m->qty == 0) {
			/* Modify to zero: the core cancels (one CANCEL event). */
			f[1] = a->side;
			f[2] = cid;
			f[3] = a->price;
			sr_line(r, 2, 4, f);
			break;
		}
		if (a->qty < m->qty) {
			rc = sr_taker_lines(s, p->id, cid, m->seq, lo, hi);
			if (rc)
				return rc;
		}
		f[1] = a->side;
		f[2] = cid;
		f[3] = m->price;
		f[4] = m->qty;
		sr_line(r, 3, 5, f);
		break;
	}
	}
out:
	s->pend_head = (s->pend_head + 1) % SR_WINDOW;
	s->pend_n--;
	sr_flush(r);
	return r->oom ? -ENOMEM : 0;
}

/* Waits for every message in flight. */
static int sr_sync(struct sr *s)
{
	while (s->pend_n) {
		int rc = sr_process_one(s);
		if (rc)
			return rc;
	}
	return 0;
}

/* True when a NEW of client id cid is still in flight (its shmex id, if
 * it gets one, is not known yet). */
static bool sr_new_in_flight(const struct sr *s, uint64_t cid)
{
	for (uint32_t i = 0, k = s->pend_head; i < s->pend_n;
	     i++, k = (k + 1) % SR_WINDOW)
		if (s->pend[k].m.type == ENG_REPLAY_NEW && s->pend[k].m.order_id == cid)
			return true;
	return false;
}

/* Sends one battery message (up to SR_WINDOW in flight); its lines come
 * out, in order, when it is processed. */
static int sr_submit(struct sr *s, const struct eng_replay_msg *m)
{
	int rc;
	if (s->pend_n == SR_WINDOW && (rc = sr_process_one(s)) != 0)
		return rc;
	struct shm_msg q;
	memset(&q, 0, sizeof(q));
	q.account = SR_ACCOUNT;
	q.price = m->price;
	q.qty = m->qty;
	uint64_t id = 0;
	bool local = false;
	switch (m->type) {
	case ENG_REPLAY_NEW:
		q.type = SHM_MSG_ORDER;
		q.side = m->side;
		q.tif = m->tif;
		memcpy(q.u.symbol, s->sym, 16);
		break;
	case ENG_REPLAY_CANCEL:
	case ENG_REPLAY_MODIFY:
		while (sr_new_in_flight(s, m->order_id))
			if ((rc = sr_process_one(s)) != 0)
				return rc;
		id = sr_map_get(s, m->order_id);
		/* Never seen: the batteries' "not resting", answered here. */
		local = id == 0;
		q.type = m->type == ENG_REPLAY_CANCEL ? SHM_MSG_CANCEL : SHM_MSG_MODIFY;
		q.order_id = id;
		break;
	default:
		/* eng_replay_wl_next never gives another type. */
		return sr_fail("message type", -EINVAL);
	}
	uint32_t k = (s->pend_head + s->pend_n) % SR_WINDOW;
	struct sr_pend *p = &s->pend[k];
	p->m = *m;
	p->local = local;
	p->id = id;
	p->req_id = 0;
	if (!local) {
		q.req_id = p->req_id = ++s->next_req;
		unsigned done = 0;
		rc = shm_ring_enqueue_batch(&s->req, &q, 1, &done);
		if (rc)
			return sr_fail("request ring", rc);
		if (done != 1)
			return sr_fail("request ring unexpectedly full", SHMEX_EINTERNAL);
	}
	s->pend_n++;
	return 0;
}

/* ---- the runner of a battery case (eng_replay_case_drive) ---- */

static int sr_begin(void *ctx, eng_replay_line_fn line, void *line_ctx)
{
	struct sr *s = ctx;
	sr_report_reset(&s->rep_lines, line, line_ctx);
	return sr_new_symbol(s);
}

static int sr_apply(void *ctx, const struct eng_replay_msg *m)
{
	return sr_submit(ctx, m);
}

/* The book of the current symbol, read through shm_read, against an
 * expected state. */
static int sr_state(void *ctx, const struct eng_replay_state *want, char *why,
		    size_t len)
{
	struct sr *s = ctx;
	/* The book exactly after the last message sent: nothing later sent. */
	int rc = sr_sync(s);
	if (rc)
		return rc;
	struct shm_read_depth d = {.bids = s->bids, .asks = s->asks,
				   .max = s->caps.levels};
	rc = shm_read_depth(&s->rd, s->symi, &d);
	if (rc) {
		snprintf(why, len, "reading the depth: %s", shmex_strerror(rc));
		return 1;
	}
	struct eng_replay_levels got = {.nbids = d.nbids, .nasks = d.nasks,
					.bids = s->lv, .asks = s->lv + s->caps.levels};
	for (size_t i = 0; i < d.nbids; i++) {
		got.bids[i][0] = d.bids[i].price;
		got.bids[i][1] = d.bids[i].qty;
	}
	for (size_t i = 0; i < d.nasks; i++) {
		got.asks[i][0] = d.asks[i].price;
		got.asks[i][1] = d.asks[i].qty;
	}
	return eng_replay_levels_check(&got, want, why, len) ? 1 : 0;
}

static int sr_finish(void *ctx, char hex[65])
{
	struct sr *s = ctx;
	int rc = sr_sync(s);
	if (rc)
		return rc;
	sr_report_hex(&s->rep_lines, hex);
	return 0;
}

/* ---- batteries and workloads through the matcher ---- */

/* One battery case through the in-process book, or through the matcher
 * when s is set; the lines go to stdout when print. */
static int run_case(struct sr *s, const struct eng_replay_case *c, bool print,
		    struct eng_replay_result *res)
{
	eng_replay_line_fn line = print ? print_line : NULL;
	if (s) {
		const struct eng_replay_runner run = {
			.ctx = s, .begin = sr_begin, .apply = sr_apply,
			.state = sr_state, .finish = sr_finish,
		};
		return eng_replay_case_drive(c, &run, line, stdout, res);
	}
	struct eng_replay_cfg cfg;
	eng_replay_cfg_default(&cfg, true);
	cfg.line = line;
	cfg.ctx = stdout;
	return eng_replay_case_run(c, &cfg, res);
}

/* Every case of a battery (or the one --case names), each on a fresh
 * book: in process, or through the matcher when s is set. */
static int run_battery(struct sr *s, const char *path, const struct opts *o)
{
	char err[512];
	struct eng_replay_battery *bat;
	if (eng_replay_battery_load(path, &bat, err, sizeof(err)) != 0) {
		fprintf(stderr, "shmex-replay: %s\n", err);
		return 1;
	}
	int rc = 0;
	size_t pass = 0, ran = 0;
	for (size_t i = 0; i < bat->ncases; i++) {
		const struct eng_replay_case *c = &bat->cases[i];
		if (o->only_case && strcmp(o->only_case, c->name))
			continue;
		ran++;
		bool print = !o->sha256 && !o->check;
		if (print)
			printf("== %s\n", c->name);
		struct eng_replay_result res;
		if (run_case(s, c, print, &res) != 0) {
			if (s)
				fprintf(stderr, "shmex-replay: %s: case %s failed to run\n",
					path, c->name);
			else
				fprintf(stderr, "shmex-replay: %s: out of memory\n", c->name);
			rc = 1;
			break;
		}
		if (o->sha256)
			printf("%s  %s\n", res.sha256, c->name);
		if (o->check) {
			printf("%s %s", res.pass ? "PASS" : "FAIL", c->name);
			if (!res.pass)
				printf(": %s", res.why);
			printf("\n");
		}
		pass += res.pass;
		if (o->check && !res.pass)
			rc = 1;
	}
	if (o->only_case && ran == 0) {
		fprintf(stderr, "shmex-replay: %s: no case named %s\n", path, o->only_case);
		rc = 1;
	}
	if (o->check)
		printf("%s: %zu/%zu passed\n", path, pass, ran);
	eng_replay_battery_free(bat);
	return rc;
}

static int run_workload_shm(struct sr *s, const char *path, const struct opts *o)
{
	char err[512];
	struct eng_replay_wl *w;
	if (eng_replay_wl_open(&w, path, err, sizeof(err)) != 0) {
		fprintf(stderr, "shmex-replay: %s\n", err);
		return 1;
	}
	bool print = !o->sha256 && !o->counts && !o->expect;
	sr_report_reset(&s->rep_lines, print ? print_line : NULL, stdout);
	int rc = sr_new_symbol(s) ? 1 : 0, n = 0;
	struct eng_replay_msg m;
	uint64_t k = 0;
	while (!rc && (!o->limit || k < o->limit) && (n = eng_replay_wl_next(w, &m)) == 1) {
		if (sr_submit(s, &m) != 0) {
			fprintf(stderr, "shmex-replay: %s: message %llu failed\n", path,
				(unsigned long long)k);
			rc = 1;
			break;
		}
		k++;
	}
	if (n < 0) {
		fprintf(stderr, "shmex-replay: %s: bad or truncated record %llu\n", path,
			(unsigned long long)k);
		rc = 1;
	}
	if (sr_sync(s) != 0)
		rc = 1;
	char hex[65];
	sr_report_hex(&s->rep_lines, hex);
	rc |= workload_report(path, o, k, hex, s->rep_lines.counts,
			      s->rep_lines.rejected);
	eng_replay_wl_close(w);
	return rc;
}

/* Runs every file through one matcher process. */
static int run_through_shm(int argc, char **argv, int first, const struct opts *o)
{
	/* Capacities: the larger of eng_replay's two defaults, since one
	 * matcher serves every case (each on its own symbol). */
	struct eng_replay_cfg big;
	eng_replay_cfg_default(&big, false);
	struct shm_book_caps caps = big.caps;
	caps.symbols = 4096;
	struct sr s;
	if (sr_start(&s, &caps, o->matcher) != 0)
		return 1;
	int rc = 0;
	for (int i = first; i < argc && !load_relaxed(&sr_signalled); i++) {
		const char *f = argv[i];
		if (ends_with(f, ".json"))
			rc |= run_battery(&s, f, o);
		else
			rc |= run_workload_shm(&s, f, o);
		fflush(stdout);
	}
	sr_stop(&s);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"sha256", no_argument, NULL, 's'},
		{"check", no_argument, NULL, 'c'},
		{"case", required_argument, NULL, 'n'},
		{"counts", no_argument, NULL, 'k'},
		{"expect", required_argument, NULL, 'e'},
		{"through-shm", no_argument, NULL, 't'},
		{"matcher", required_argument, NULL, 'm'},
		{"limit", required_argument, NULL, 'l'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	struct opts o;
	memset(&o, 0, sizeof(o));
	int c;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			o.sha256 = true;
			break;
		case 'c':
			o.check = true;
			break;
		case 'n':
			o.only_case = optarg;
			break;
		case 'k':
			o.counts = true;
			break;
		case 'e':
			o.expect = optarg;
			break;
		case 't':
			o.through_shm = true;
			break;
		case 'm':
			o.matcher = optarg;
			break;
		case 'l':
			if (shm_opt_u64(optarg, 1, UINT64_MAX, &o.limit) != 0) {
				fprintf(stderr, "shmex-replay: --limit: expected a positive "
						"number, got \"%s\"\n", optarg);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			shm_opt_version(stdout, "shmex-replay (shmex)");
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	for (int i = optind; i < argc; i++) {
		const char *f = argv[i];
		if (!ends_with(f, ".json") && !ends_with(f, ".bin") &&
		    !ends_with(f, ".bin.xz")) {
			fprintf(stderr, "shmex-replay: %s: expected *.json, *.bin or *.bin.xz\n", f);
			return 2;
		}
	}
	if (o.through_shm)
		return run_through_shm(argc, argv, optind, &o);
	int rc = 0;
	for (int i = optind; i < argc; i++) {
		const char *f = argv[i];
		if (ends_with(f, ".json"))
			rc |= run_battery(NULL, f, &o);
		else
			rc |= run_workload(f, &o);
	}
	return rc;
}

/*
 * rpl_shm: the replay through a real matcher (contract in rpl_shm.h).
 */
#include "engine/replay/rpl_shm.h"

#include <errno.h>
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

#include "shm/shm_accounts.h"
#include "shm/shm_atomic.h"
#include "shm/shm_clock.h"
#include "shm/shm_error.h"
#include "shm/shm_instance.h"
#include "shm/shm_msg.h"
#include "shm/shm_ring.h"
#include "shm/shm_snap.h"

static int ids_reset_impl(struct rpl_shm *s);
#define ids_reset(s) ids_reset_impl(s)

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

/* One message in flight (or answered locally, waiting for its turn). */
struct sr_pend {
	struct rpl_msg m;
	uint64_t req_id;
	uint64_t id; /* CANCEL/MODIFY: the target's shmex id */
	bool local;  /* unknown client id: 4/5 line, no ring trip */
};

struct rpl_shm {
	char inst[48];
	struct shm_instance si;
	bool si_ok;
	struct shm_accounts acc;
	bool acc_ok;
	pid_t pid;
	struct shm_ring req, rep;
	struct shm_snap rd;
	bool rd_ok;
	uint64_t next_req;
	struct shm_book_caps caps;
	uint32_t nsyms;        /* symbols created */
	char sym[16];          /* the current symbol, packed */
	uint32_t symi;         /* its book index */
	struct rpl_idmap ids;  /* client id -> shmex id */
	uint64_t *cid_of_slot; /* record slot -> client id */
	struct shm_snap_fill *fills;
	size_t fills_cap;
	struct shm_snap_level *bids, *asks;
	int64_t (*lv)[2]; /* both sides as [price, qty]: 2 x levels */
	struct rpl_report rep_lines;
	/* Messages in flight, oldest at pend_head, and replies read ahead. */
	struct sr_pend pend[SR_WINDOW];
	uint32_t pend_head, pend_n;
	struct shm_msg rx[SR_WINDOW];
	uint32_t rx_next, rx_n, rx_waits;
	uint64_t last_event; /* u.r.seq of the last reply processed */
};

static int sr_fail(const char *what, int rc)
{
	fprintf(stderr, "shmex-replay: --through-shm: %s: %s\n", what,
		shmex_strerror(rc));
	return rc ? rc : -EINVAL;
}

static uint64_t sr_cid_of(const struct rpl_shm *s, uint64_t id)
{
	return s->cid_of_slot[shm_order_slot(id, 1, s->caps.orders)];
}

/* ---- the matcher process and its rings ---- */

/* One request and its reply, with nothing else in flight (setup). */
static int sr_call(struct rpl_shm *s, struct shm_msg *q, struct shm_msg *a)
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
				return sr_fail("no reply from the matcher",
					       SHMEX_ETIMEDOUT);
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

static void sr_stop(struct rpl_shm *s)
{
	if (s->rd_ok)
		shm_snap_close(&s->rd);
	s->rd_ok = false;
	if (s->pid > 0) {
		kill(s->pid, SIGTERM);
		int st;
		while (waitpid(s->pid, &st, 0) < 0 && errno == EINTR)
			;
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			fprintf(stderr,
				"shmex-replay: the matcher did not exit cleanly "
				"(status 0x%x)\n",
				st);
		s->pid = 0;
	}
	if (s->acc_ok)
		shm_accounts_detach(&s->acc);
	s->acc_ok = false;
	if (s->si_ok)
		shm_instance_detach(&s->si);
	s->si_ok = false;
	for (enum shm_region_kind k = SHM_KIND_RINGS; k <= SHM_KIND_LEDGER; k++) {
		char name[SHM_REGION_NAME_MAX];
		if (shm_region_name(name, k, 0) == 0)
			(void)!shm_region_unlink(s->inst, name);
	}
	rpl_idmap_free(&s->ids);
	free(s->cid_of_slot);
	free(s->fills);
	free(s->bids);
	free(s->asks);
	free(s->lv);
	rpl_report_free(&s->rep_lines);
}

/* Ready exactly as the supervisor judges it (shm_instance_matcher_ready),
 * then our reader slot in its book. */
static bool sr_ready(struct rpl_shm *s)
{
	return shm_instance_matcher_ready(&s->si, 0, s->pid) &&
	       shm_snap_open(&s->rd, s->inst, 0) == 0;
}

static int sr_start(struct rpl_shm *s, const struct shm_book_caps *caps,
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

	/* The matcher reads its capacities from the instance's settings. */
	struct shm_instance_cfg icfg = {.mode = 0600};
	shm_settings_default(&icfg.s);
	icfg.s.shards = 1;
	icfg.s.gateways = 1;
	icfg.s.orders = caps->orders;
	icfg.s.levels = caps->levels;
	icfg.s.fills = caps->fills;
	icfg.s.symbols = caps->symbols;
	icfg.s.positions = 64;
	icfg.s.accounts = 16;
	icfg.s.quiet = 1;
	int rc = shm_instance_create(s->inst, &icfg, &s->si);
	if (rc) {
		fprintf(stderr, "shmex-replay: %s\n", shmex_error_msg(&s->si.err, rc));
		return rc;
	}
	s->si_ok = true;
	rc = shm_accounts_create(&s->acc, s->inst, 16, 0600);
	if (rc) {
		sr_fail("creating the accounts region", rc);
		goto out_stop;
	}
	s->acc_ok = true;
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
		execl(path, path, "--instance", s->inst, "--shard", "0", (char *)NULL);
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
	if (!s->cid_of_slot || !s->bids || !s->asks || !s->lv || ids_reset(s)) {
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
static int sr_new_symbol(struct rpl_shm *s)
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
	rc = shm_snap_symbol_find(&s->rd, name, (size_t)n, &s->symi);
	if (rc)
		return sr_fail("finding the symbol in the book", rc);
	return ids_reset(s);
}

/* Status and every fill of order id, through the book region.  A busy
 * read (the matcher kept changing the symbol through all of shm_snap's
 * snapshot attempts, which happens on a loaded or sanitized build) is tried
 * again, for up to SR_BUSY_MS: the replay needs the answer, not speed. */
#define SR_BUSY_MS 10000u
static int sr_read_order(struct rpl_shm *s, uint64_t id, struct shm_snap_order *o,
			 size_t *nf)
{
	uint64_t give_up = 0;
	for (;;) {
		int rc = shm_snap_order(&s->rd, id, o, s->fills, s->fills_cap, nf);
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
		struct shm_snap_fill *f = realloc(s->fills, cap * sizeof(*f));
		if (!f)
			return -ENOMEM;
		s->fills = f;
		s->fills_cap = cap;
	}
}

/* Trade lines of the fills order `id` took as the taker in the request
 * whose events are (lo, hi]: later requests may have added fills by the
 * time we read (the pipeline), the event range picks out this one's. */
static int sr_taker_lines(struct rpl_shm *s, uint64_t id, int64_t cid, uint64_t seq,
			  uint64_t lo, uint64_t hi)
{
	struct shm_snap_order o;
	size_t nf = 0;
	int rc = sr_read_order(s, id, &o, &nf);
	if (rc) {
		/* ENOORDER: the record was recycled before we read it. */
		return sr_fail("reading an order's fills from the book", rc);
	}
	int64_t f[5];
	f[0] = (int64_t)seq;
	for (size_t i = 0; i < nf; i++) {
		const struct shm_snap_fill *x = &s->fills[i];
		if (x->maker || x->event <= lo || x->event > hi)
			continue;
		f[1] = x->price;
		f[2] = x->qty;
		f[3] = (int64_t)sr_cid_of(s, x->counterparty);
		f[4] = cid;
		rpl_report_line(&s->rep_lines, 1, 5, f);
	}
	return 0;
}

/* Renders the lines of the oldest message in flight, waiting for its
 * reply when it went to the matcher. */
static int sr_process_one(struct rpl_shm *s)
{
	struct sr_pend *p = &s->pend[s->pend_head];
	const struct rpl_msg *m = &p->m;
	struct rpl_report *r = &s->rep_lines;
	int64_t f[5];
	f[0] = (int64_t)m->seq;
	if (p->local) {
		f[1] = (int64_t)m->order_id;
		rpl_report_line(r, m->type == RPL_CANCEL ? 4 : 5, 2, f);
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
				return sr_fail("no reply from the matcher",
					       SHMEX_ETIMEDOUT);
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
	case RPL_NEW:
		if (a->status) {
			r->rejected++;
			break;
		}
		s->cid_of_slot[shm_order_slot(a->order_id, 1, s->caps.orders)] =
			m->order_id;
		if (rpl_idmap_put(&s->ids, m->order_id, a->order_id) != 0)
			return -ENOMEM;
		f[1] = m->side;
		f[2] = (int64_t)m->order_id;
		f[3] = m->price;
		f[4] = m->qty;
		rpl_report_line(r, 0, 5, f);
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
			rpl_report_line(r, 2, 4, f);
		}
		break;
	case RPL_CANCEL:
		if (a->status) {
			f[1] = (int64_t)m->order_id;
			rpl_report_line(r, 4, 2, f);
			break;
		}
		f[1] = a->side;
		f[2] = (int64_t)sr_cid_of(s, p->id);
		f[3] = a->price;
		rpl_report_line(r, 2, 4, f);
		break;
	default: { /* RPL_MODIFY */
		if (a->status) {
			f[1] = (int64_t)m->order_id;
			rpl_report_line(r, 5, 2, f);
			break;
		}
		int64_t cid = (int64_t)sr_cid_of(s, p->id);
		if (m->qty == 0) {
			/* Modify to zero: the core cancels (one CANCEL event). */
			f[1] = a->side;
			f[2] = cid;
			f[3] = a->price;
			rpl_report_line(r, 2, 4, f);
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
		rpl_report_line(r, 3, 5, f);
		break;
	}
	}
out:
	s->pend_head = (s->pend_head + 1) % SR_WINDOW;
	s->pend_n--;
	rpl_report_flush(r);
	return r->oom ? -ENOMEM : 0;
}

/* Waits for every message in flight. */
static int sr_sync(struct rpl_shm *s)
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
static bool sr_new_in_flight(const struct rpl_shm *s, uint64_t cid)
{
	for (uint32_t i = 0, k = s->pend_head; i < s->pend_n;
	     i++, k = (k + 1) % SR_WINDOW)
		if (s->pend[k].m.type == RPL_NEW && s->pend[k].m.order_id == cid)
			return true;
	return false;
}

/* Sends one battery message (up to SR_WINDOW in flight); its lines come
 * out, in order, when it is processed. */
static int sr_submit(struct rpl_shm *s, const struct rpl_msg *m)
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
	case RPL_NEW:
		q.type = SHM_MSG_ORDER;
		q.side = m->side;
		q.tif = m->tif;
		memcpy(q.u.symbol, s->sym, 16);
		break;
	case RPL_CANCEL:
	case RPL_MODIFY:
		while (sr_new_in_flight(s, m->order_id))
			if ((rc = sr_process_one(s)) != 0)
				return rc;
		id = rpl_idmap_get(&s->ids, m->order_id);
		/* Never seen: the batteries' "not resting", answered here. */
		local = id == 0;
		q.type = m->type == RPL_CANCEL ? SHM_MSG_CANCEL : SHM_MSG_MODIFY;
		q.order_id = id;
		break;
	default:
		/* rpl_wl_next never gives another type. */
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

/* ---- the runner of a battery case (rpl_case_drive) ---- */

static int sr_begin(void *ctx, rpl_line_fn line, void *line_ctx)
{
	struct rpl_shm *s = ctx;
	rpl_report_reset(&s->rep_lines, true, true, line, line_ctx);
	return sr_new_symbol(s);
}

static int sr_apply(void *ctx, const struct rpl_msg *m)
{
	return sr_submit(ctx, m);
}

/* The book of the current symbol, read through shm_snap, against an
 * expected state. */
static int sr_state(void *ctx, const struct rpl_state *want, char *why, size_t len)
{
	struct rpl_shm *s = ctx;
	/* The book exactly after the last message sent: nothing later sent. */
	int rc = sr_sync(s);
	if (rc)
		return rc;
	struct shm_snap_depth d = {
		.bids = s->bids, .asks = s->asks, .max = s->caps.levels};
	rc = shm_snap_depth(&s->rd, s->symi, &d);
	if (rc) {
		snprintf(why, len, "reading the depth: %s", shmex_strerror(rc));
		return 1;
	}
	struct rpl_levels got = {.nbids = d.nbids,
				 .nasks = d.nasks,
				 .bids = s->lv,
				 .asks = s->lv + s->caps.levels};
	for (size_t i = 0; i < d.nbids; i++) {
		got.bids[i][0] = d.bids[i].price;
		got.bids[i][1] = d.bids[i].qty;
	}
	for (size_t i = 0; i < d.nasks; i++) {
		got.asks[i][0] = d.asks[i].price;
		got.asks[i][1] = d.asks[i].qty;
	}
	return rpl_levels_check(&got, want, why, len) ? 1 : 0;
}

static int sr_finish(void *ctx, char hex[65])
{
	struct rpl_shm *s = ctx;
	int rc = sr_sync(s);
	if (rc)
		return rc;
	rpl_report_sha256_hex(&s->rep_lines, hex);
	return 0;
}

static int ids_reset_impl(struct rpl_shm *s)
{
	rpl_idmap_free(&s->ids);
	return rpl_idmap_init(&s->ids, 1u << 12);
}

int rpl_shm_start(struct rpl_shm **out, const struct shm_book_caps *caps,
		  const char *matcher)
{
	*out = NULL;
	struct rpl_shm *s = malloc(sizeof(*s));
	if (!s)
		return sr_fail("out of memory", -ENOMEM);
	int rc = sr_start(s, caps, matcher);
	if (rc) {
		free(s);
		return rc;
	}
	*out = s;
	return 0;
}

void rpl_shm_stop(struct rpl_shm *s)
{
	if (!s)
		return;
	sr_stop(s);
	free(s);
}

struct rpl_runner rpl_shm_runner(struct rpl_shm *s)
{
	return (struct rpl_runner){.ctx = s,
				   .begin = sr_begin,
				   .apply = sr_apply,
				   .state = sr_state,
				   .finish = sr_finish};
}

int rpl_shm_begin(struct rpl_shm *s, rpl_line_fn line, void *ctx)
{
	return sr_begin(s, line, ctx);
}

int rpl_shm_submit(struct rpl_shm *s, const struct rpl_msg *m)
{
	return sr_submit(s, m);
}

int rpl_shm_finish(struct rpl_shm *s, char hex[65])
{
	return sr_finish(s, hex);
}

const struct rpl_report *rpl_shm_report(const struct rpl_shm *s)
{
	return &s->rep_lines;
}

bool rpl_shm_interrupted(void)
{
	return load_relaxed(&sr_signalled) != 0;
}

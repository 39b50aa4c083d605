/*
 * eng_matcher: the matcher process of one shard (contract in eng_matcher.h,
 * the whole story in docs/matcher.md).
 *
 * Shape.  One thread, one loop, no locks.  A round visits every gateway's
 * request ring: it first tries to deliver replies parked for that gateway,
 * and only when none are parked copies up to `batch` messages out of the
 * ring (one acquire of head, one release of tail: shm_ring.h), applies
 * each copy and enqueues the replies on the (shard, gateway) ring in one
 * batch (one release of head, one doorbell ring).  Replies that do not fit
 * stay parked in this process and the gateway's requests wait in its ring:
 * each request has exactly one reply, so the private buffer never needs
 * more than one batch per gateway, and a stuck or dead gateway never
 * blocks the other gateways or the loop.  After a round that took
 * messages the reader epoch advances once and reclamation is polled
 * (shm_rcu_safe_epoch -> eng_core_reclaim); the writer never waits for
 * a reader.  With nothing to do the loop spins briefly and then sleeps on
 * the shard's doorbell (a futex in the control region; shm_doorbell.h),
 * waking on a gateway's ring, a signal, the supervisor's stop, or the idle
 * tick.
 *
 * Applying a request.  The message is a private copy; shm_msg_validate_
 * request checks its type, enums, ranges and shard ownership, and the
 * apply function checks everything else (account exists, symbol exists,
 * funds or shares suffice) BEFORE anything changes, so a reject changes
 * nothing.  An order reserves its hold (eng_acct_place) before the core
 * sees it; the core's events then move money and shares from inside its
 * callback (on_event): every FILL settles both parties, every CANCEL (a
 * cancel, an IOC/FOK remainder, a self-trade cancel, a modify to zero)
 * gives back exactly the open part's hold, a MODIFY gives back a smaller
 * hold (a larger one was reserved before the core was called).  A core
 * rejection (book full, overflow) gives the whole placement back.  Because
 * the holds are q x limit, exact, the fills and the final give-back add up
 * to exactly what was reserved.
 *
 * Invariants between requests (checked by tests/test_eng_matcher.c):
 *  - per account: reserved cash == sum over its open buys of open x limit;
 *  - per position: reserved shares == sum over its open sells of open;
 *  - sum of balances + reserved == sum of deposits; per symbol sum of
 *    amounts + reserved == shares created.
 *
 * Limits: at most SHM_INSTANCE_GATEWAYS_MAX rings; `batch` messages per
 * ring per round; the account steps inside the callback can fail only on a
 * corrupted region (counted in stats.internal and logged, never ignored).
 */
#include "engine/eng_matcher.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/eng_acct.h"
#include "engine/eng_core.h"
#include "shm/shm_accounts.h"
#include "shm/shm_atomic.h"
#include "shm/shm_book.h"
#include "shm/shm_doorbell.h"
#include "shm/shm_error.h"
#include "shm/shm_instance.h"
#include "shm/shm_positions.h"
#include "shm/shm_rcu.h"
#include "shm/shm_region.h"
#include "shm/shm_ring.h"
#include "shm/shm_clock.h"

#define NO_SIDX UINT32_MAX
#define SPIN_STEP_NS 1000u /* growth step of the adaptive spin budget */

/* What the event callback needs to know about the request being applied. */
struct apply_state {
	uint64_t target;   /* the request's own order (0 until accepted) */
	int64_t executed;  /* shares the target traded in this request */
	int64_t cancelled; /* shares of the target cancelled */
	bool prereserved;  /* MODIFY: the larger hold is already reserved */
};

struct eng_matcher {
	struct shm_settings set; /* the instance's, validated copy */
	uint32_t batch, spin_ns, idle_ms, drain_ms, positions; /* from set */
	bool verbose;
	char instance[SHM_INSTANCE_MAX + 1];
	uint32_t shard, nshards, ngateways;
	struct eng_core_cfg bcfg;
	uint32_t nreaders;
	uint64_t full_seen; /* book's rejects_full at the last reclaim */

	struct shm_instance inst;
	bool inst_ok;
	struct shm_accounts accounts;
	bool accounts_ok;
	struct shm_positions positions_reg;
	bool positions_ok;
	struct shm_rcu readers;
	bool readers_ok;
	struct shm_region book_region;
	bool book_ok;
	struct eng_core *book;
	struct eng_acct_ctx acct;

	struct shm_doorbell_sh *db; /* this shard's doorbell */
	struct shm_ring *req;       /* [ngateways] request rings (consumer) */
	struct shm_ring *rep;       /* [ngateways] reply rings (producer) */
	bool *ring_bad;             /* [ngateways] request ring corrupt */
	bool *rep_bad;              /* [ngateways] reply ring corrupt */
	struct shm_msg *in;         /* [batch] copies of one ring's batch */
	struct shm_msg *out;        /* [ngateways * batch] replies */
	uint32_t *out_off, *out_n;  /* [ngateways] parked replies */
	uint32_t *sidx_of;          /* book symbol -> positions symbol */

	uint64_t seq;    /* last request sequence number */
	uint64_t events; /* last core event number seen */
	int stop;        /* eng_matcher_stop; relaxed */
	bool retry_bad;  /* this round also retries bad rings */
	struct apply_state applying;
	struct eng_matcher_stats st;
};

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */

static void logm(const struct eng_matcher *m, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void logm(const struct eng_matcher *m, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, "shmex-matcher[%u]: %s\n", m->shard, buf);
}

static bool stop_requested(const struct eng_matcher *m)
{
	/* MT7: relaxed load of our own stop flag (written by a signal
	 * handler of this thread; nothing is published with it).  The
	 * supervisor's flag is an acquire load inside shm_instance_stopping
	 * [INS2, pairs with INS1]. */
	return load_relaxed(&m->stop) != 0 || shm_instance_stopping(&m->inst);
}

static uint32_t sidx_of_sym(const struct eng_matcher *m, uint32_t sym)
{
	return sym < m->bcfg.caps.symbols ? m->sidx_of[sym] : NO_SIDX;
}

static void internal_error(struct eng_matcher *m, const char *what, int rc, uint64_t id)
{
	m->st.internal++;
	logm(m, "internal error: %s (order %llu): %s", what, (unsigned long long)id,
	     shmex_strerror(rc));
}

/* ------------------------------------------------------------------ */
/* Events of the core: money and shares follow the book                */

static void on_event(void *ctx, const struct eng_event *ev)
{
	struct eng_matcher *m = ctx;
	uint32_t sidx = sidx_of_sym(m, ev->sym);
	int rc;
	m->events = ev->event;
	switch (ev->type) {
	case ENG_EV_ACCEPT:
		m->applying.target = ev->order_id;
		break;
	case ENG_EV_FILL: {
		struct eng_acct_fill f = {
			.maker_account = ev->maker_account,
			.taker_account = ev->account,
			.maker_limit = ev->maker_price,
			.taker_limit = ev->taker_price,
			.price = ev->price,
			.qty = ev->qty,
			.taker_side = ev->side,
		};
		m->st.fills++;
		if (ev->order_id == m->applying.target)
			m->applying.executed += ev->qty;
		rc = sidx == NO_SIDX ? SHMEX_EINTERNAL
				     : eng_acct_settle(&m->acct, sidx, &f);
		if (rc)
			internal_error(m, "settling a fill", rc, ev->order_id);
		break;
	}
	case ENG_EV_CANCEL:
		if (ev->order_id == m->applying.target)
			m->applying.cancelled += ev->qty;
		rc = sidx == NO_SIDX ? SHMEX_EINTERNAL
				     : eng_acct_unhold(&m->acct, ev->account, sidx,
						       ev->side, ev->qty, ev->price);
		if (rc)
			internal_error(m, "giving back a cancelled hold", rc,
				       ev->order_id);
		break;
	case ENG_EV_MODIFY: {
		struct eng_acct_hold d;
		rc = eng_acct_modify_delta(ev->side, ev->old_qty, ev->old_price, ev->qty,
					   ev->price, &d);
		if (rc) {
			internal_error(m, "modify delta", rc, ev->order_id);
			break;
		}
		if (d.cash > 0 || d.shares > 0) {
			/* Reserved by apply_modify before the core ran. */
			if (!m->applying.prereserved)
				internal_error(m, "modify grew without a reservation",
					       SHMEX_EINTERNAL, ev->order_id);
			break;
		}
		rc = sidx == NO_SIDX ? SHMEX_EINTERNAL
				     : eng_acct_modify(&m->acct, ev->account, sidx,
						       ev->side, ev->old_qty,
						       ev->old_price, ev->qty, ev->price);
		if (rc)
			internal_error(m, "giving back a modify's hold", rc,
				       ev->order_id);
		break;
	}
	default: /* ENG_EV_REJECT: nothing changed; the caller answers. */
		break;
	}
}

/* ------------------------------------------------------------------ */
/* Requests                                                            */

static void req_init(struct eng_matcher *m, struct eng_req *q, const struct shm_msg *req,
		     const struct shm_msg *rep)
{
	memset(q, 0, sizeof(*q));
	q->seq = m->seq;
	q->time_ns = rep->u.r.time_ns;
	q->epoch = shm_rcu_epoch(&m->readers);
	q->account = req->account;
	q->order_id = req->order_id;
	q->price = req->price;
	q->qty = req->qty;
	q->side = req->side;
	q->tif = req->tif;
	memset(&m->applying, 0, sizeof(m->applying));
}

static int apply_create_account(struct eng_matcher *m, const struct shm_msg *req,
				struct shm_msg *rep)
{
	int rc = eng_acct_create_account(&m->acct, req->account, req->price);
	if (rc)
		return rc;
	m->st.accounts++;
	rep->price = req->price;
	return 0;
}

static int apply_add_shares(struct eng_matcher *m, const struct shm_msg *req,
			    struct shm_msg *rep)
{
	uint32_t aidx, bsym, sidx;
	int rc = shm_accounts_find(&m->accounts, req->account, &aidx);
	if (rc)
		return rc;
	size_t len = shm_symbol_unpack_len(req->u.symbol);
	/* Finds the symbol or creates it empty; a later failure below leaves
	 * at most an empty symbol entry (docs/matcher.md). */
	rc = eng_core_symbol_add(m->book, req->u.symbol, len, &bsym);
	if (rc)
		return rc == -ENOMEM ? SHMEX_EINTERNAL : rc;
	if (bsym >= m->bcfg.caps.symbols)
		return SHMEX_EINTERNAL;
	rc = eng_acct_add_shares(&m->acct, req->account, req->u.symbol, req->qty, &sidx);
	if (rc)
		return rc;
	m->sidx_of[bsym] = sidx;
	m->st.add_shares++;
	rep->qty = req->qty;
	return 0;
}

static int apply_order(struct eng_matcher *m, const struct shm_msg *req,
		       struct shm_msg *rep)
{
	uint32_t aidx, bsym;
	int rc = shm_accounts_find(&m->accounts, req->account, &aidx);
	if (rc)
		return rc;
	size_t len = shm_symbol_unpack_len(req->u.symbol);
	rc = eng_core_symbol_find(m->book, req->u.symbol, len, &bsym);
	if (rc)
		return rc;
	uint32_t sidx = sidx_of_sym(m, bsym);
	if (sidx == NO_SIDX)
		return SHMEX_ENOSYMBOL; /* in the book, never given shares */
	rc = eng_acct_place(&m->acct, req->account, sidx, req->side, req->qty,
			    req->price);
	if (rc)
		return rc;
	struct eng_req q;
	req_init(m, &q, req, rep);
	q.sym = bsym;
	uint64_t id;
	rc = eng_core_submit(m->book, &q, &id);
	if (rc) {
		/* Nothing happened in the book: the placement goes back. */
		int r2 = eng_acct_unhold(&m->acct, req->account, sidx, req->side,
					 req->qty, req->price);
		if (r2)
			internal_error(m, "giving back a rejected order's hold", r2, 0);
		return rc;
	}
	m->st.orders++;
	rep->order_id = id;
	rep->qty = m->applying.executed;
	rep->price = req->price;
	return 0;
}

static int apply_cancel(struct eng_matcher *m, const struct shm_msg *req,
			struct shm_msg *rep)
{
	struct eng_req q;
	req_init(m, &q, req, rep);
	m->applying.target = req->order_id;
	rep->order_id = req->order_id;
	int rc = eng_core_cancel(m->book, &q);
	if (rc)
		return rc;
	m->st.cancels++;
	const struct shm_book_order_sh *o = eng_core_order(m->book, req->order_id);
	rep->qty = m->applying.cancelled;
	if (o) {
		rep->price = o->price;
		rep->side = o->side;
		rep->tif = o->tif;
	}
	return 0;
}

static int apply_modify(struct eng_matcher *m, const struct shm_msg *req,
			struct shm_msg *rep)
{
	struct eng_req q;
	req_init(m, &q, req, rep);
	m->applying.target = req->order_id;
	rep->order_id = req->order_id;
	const struct shm_book_order_sh *o = eng_core_order(m->book, req->order_id);
	uint32_t sidx = NO_SIDX;
	int64_t old_open = 0, old_price = 0;
	uint8_t side = 0;
	int rc;
	/* A modify that needs a larger hold reserves it before the core runs
	 * (the re-queued order may trade at once); a smaller hold is given
	 * back by on_event once the core applied the modify.  Requests the
	 * core will reject (no such order, not the owner, nothing open) go
	 * to it untouched, so its reasons are the answer. */
	if (o && o->account == req->account && o->state == SHM_BOOK_ORDER_LIVE) {
		struct eng_acct_hold d;
		side = o->side;
		old_open = o->open;
		old_price = o->price;
		sidx = sidx_of_sym(m, o->sym);
		rc = eng_acct_modify_delta(side, old_open, old_price, req->qty,
					   req->price, &d);
		if (rc)
			return rc;
		if (d.cash > 0 || d.shares > 0) {
			if (sidx == NO_SIDX)
				return SHMEX_EINTERNAL;
			rc = eng_acct_modify(&m->acct, req->account, sidx, side, old_open,
					     old_price, req->qty, req->price);
			if (rc)
				return rc;
			m->applying.prereserved = true;
		}
	}
	rc = eng_core_modify(m->book, &q);
	if (rc) {
		if (m->applying.prereserved) {
			int r2 = eng_acct_modify(&m->acct, req->account, sidx, side,
						 req->qty, req->price, old_open,
						 old_price);
			if (r2)
				internal_error(m, "giving back a rejected modify's hold",
					       r2, req->order_id);
		}
		return rc;
	}
	m->st.modifies++;
	o = eng_core_order(m->book, req->order_id);
	rep->price = req->price;
	if (o) {
		rep->qty = o->open;
		rep->price = o->price; /* a modify to 0 keeps the old limit */
		rep->side = o->side;
		rep->tif = o->tif;
	}
	return 0;
}

void eng_matcher_apply(struct eng_matcher *m, const struct shm_msg *req,
		       struct shm_msg *rep)
{
	memset(rep, 0, sizeof(*rep));
	rep->type = SHM_MSG_REPLY;
	rep->req_type = req->type;
	rep->req_id = req->req_id;
	rep->account = req->account;
	rep->side = req->side;
	rep->tif = req->tif;
	m->seq++;
	rep->u.r.time_ns = shm_clock_ns(CLOCK_REALTIME);
	m->st.requests++;
	int rc = shm_msg_validate_request(req, m->shard, m->nshards);
	if (rc) {
		m->st.invalid++;
	} else {
		switch (req->type) {
		case SHM_MSG_CREATE_ACCOUNT:
			rc = apply_create_account(m, req, rep);
			break;
		case SHM_MSG_ADD_SHARES:
			rc = apply_add_shares(m, req, rep);
			break;
		case SHM_MSG_ORDER:
			rc = apply_order(m, req, rep);
			break;
		case SHM_MSG_CANCEL:
			rc = apply_cancel(m, req, rep);
			break;
		case SHM_MSG_MODIFY:
			rc = apply_modify(m, req, rep);
			break;
		default:
			rc = SHMEX_EBADMSG;
			break;
		}
	}
	rep->status = rc;
	rep->u.r.seq = m->events;
	if (rc) {
		m->st.rejects++;
		if (m->verbose)
			logm(m, "request %llu (type %u, account %llu) rejected: %s",
			     (unsigned long long)req->req_id, req->type,
			     (unsigned long long)req->account, shmex_strerror(rc));
	}
}

/* ------------------------------------------------------------------ */
/* The loop                                                            */

/* Delivers what is parked for gateway g; true when nothing is left. */
static bool flush_replies(struct eng_matcher *m, uint32_t g)
{
	uint32_t n = m->out_n[g];
	if (n == 0)
		return true;
	unsigned done = 0;
	struct shm_msg *base = m->out + (size_t)g * m->batch + m->out_off[g];
	/* MT4: one publication of the batch's replies [RNG1], then one
	 * doorbell ring of gateway g [DB4] (inside shm_ring_enqueue_batch).
	 * The replies describe state we wrote before: the gateway that
	 * acquires them [RNG2] and then reads the book sees it. */
	int rc = shm_ring_enqueue_batch(&m->rep[g], base, n, &done);
	if (rc) {
		if (!m->rep_bad[g])
			logm(m, "reply ring to gateway %u: %s; its replies wait", g,
			     shmex_strerror(rc));
		m->rep_bad[g] = true;
		m->st.ring_errors++;
		return false;
	}
	m->rep_bad[g] = false;
	m->out_off[g] += done;
	m->out_n[g] -= done;
	if (m->out_n[g] == 0) {
		m->out_off[g] = 0;
		return true;
	}
	m->st.replies_parked++;
	return false;
}

/* One visit of every gateway's ring; returns the messages taken. */
static unsigned round_once(struct eng_matcher *m)
{
	unsigned total = 0;
	for (uint32_t g = 0; g < m->ngateways; g++) {
		if (!flush_replies(m, g))
			continue; /* its requests wait until the replies fit */
		if (m->ring_bad[g] && !m->retry_bad)
			continue;
		unsigned got = 0;
		/* MT5: copy the batch out once [RNG2 acquire of head, RNG3
		 * release of tail]; only the private copies are validated
		 * and used, so the producer cannot change a message under
		 * us. */
		int rc = shm_ring_dequeue_batch(&m->req[g], m->in, m->batch, &got);
		if (rc) {
			if (!m->ring_bad[g])
				logm(m,
				     "request ring of gateway %u: %s; ignoring it "
				     "until it is consistent again",
				     g, shmex_strerror(rc));
			m->ring_bad[g] = true;
			m->st.ring_errors++;
			continue;
		}
		m->ring_bad[g] = false;
		struct shm_msg *out = m->out + (size_t)g * m->batch;
		for (unsigned i = 0; i < got; i++)
			eng_matcher_apply(m, &m->in[i], &out[i]);
		m->out_off[g] = 0;
		m->out_n[g] = got;
		(void)flush_replies(m, g);
		total += got;
	}
	m->retry_bad = false;
	return total;
}

static bool any_parked(const struct eng_matcher *m)
{
	for (uint32_t g = 0; g < m->ngateways; g++)
		if (m->out_n[g])
			return true;
	return false;
}

/* Doorbell predicate: work we would take now, or a stop. */
static bool ready(void *arg)
{
	struct eng_matcher *m = arg;
	if (stop_requested(m))
		return true;
	for (uint32_t g = 0; g < m->ngateways; g++) {
		if (m->out_n[g] || m->ring_bad[g])
			continue;
		if (shm_ring_readable(&m->req[g]))
			return true;
	}
	return false;
}

static void reclaim(struct eng_matcher *m, bool advance)
{
	/* MT2: after the round's unlinks (the core's release stores [BK1]),
	 * publish epoch E + 1 [RD3]; nodes of this round carry tag E. */
	if (advance)
		(void)shm_rcu_advance(&m->readers);
	/* MT3: poll, never wait: full fence and scan [RD4] (or the
	 * rate-limited membarrier [RD15] in asymmetric mode); only nodes
	 * retired before the oldest active reader's epoch are reused.  A
	 * round that rejected requests for lack of free records asks for the
	 * urgent poll, so reuse is not held back by the rate limit. */
	/* Relaxed: a statistic of our own book (stats_publish in
	 * eng_core.c, this thread); nothing is published with it. */
	uint64_t full = load_relaxed(&eng_core_view(m->book)->hdr->rejects_full);
	bool pressed = full != m->full_seen;
	m->full_seen = full;
	uint64_t safe = pressed ? shm_rcu_safe_epoch_urgent(&m->readers)
				: shm_rcu_safe_epoch(&m->readers);
	m->st.levels_reclaimed += eng_core_reclaim(m->book, safe);
	m->st.safe_epoch = safe;
	m->st.epoch = shm_rcu_epoch(&m->readers);
}

/* After a stop: takes what is still in the rings and delivers every reply,
 * giving up on parked replies after drain_ms. */
static void drain(struct eng_matcher *m)
{
	uint64_t deadline =
		shm_clock_ns(CLOCK_MONOTONIC) + (uint64_t)m->drain_ms * 1000000u;
	for (;;) {
		unsigned n = round_once(m);
		if (n) {
			m->st.rounds++;
			reclaim(m, true);
			if (shm_clock_ns(CLOCK_MONOTONIC) < deadline)
				continue;
		}
		if (!any_parked(m) && n == 0)
			break;
		if (shm_clock_ns(CLOCK_MONOTONIC) >= deadline) {
			uint64_t dropped = 0;
			for (uint32_t g = 0; g < m->ngateways; g++) {
				dropped += m->out_n[g];
				m->out_n[g] = 0;
			}
			m->st.replies_dropped += dropped;
			if (dropped)
				logm(m,
				     "stop: %llu replies could not be delivered "
				     "(their gateways do not read) and were dropped",
				     (unsigned long long)dropped);
			break;
		}
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
}

/*
 * Adaptive spin budget (policy, no memory ordering involved): a wait that
 * ended within (or shortly after) the budget says traffic is flowing and
 * doubles it, up to spin_ns; a wait that had to sleep long halves it.
 * So a busy shard polls (yielding the CPU between polls, shm_doorbell.c)
 * and a shard that sees sporadic requests goes to sleep almost at once
 * instead of burning spin_ns after each one.
 */
static uint32_t spin_adapt(const struct eng_matcher *m, uint32_t cur, uint64_t waited_ns,
			   int rc)
{
	uint32_t max = m->spin_ns;
	if (rc == 0 && waited_ns <= 4 * (uint64_t)max) {
		uint64_t next = (uint64_t)cur * 2 + SPIN_STEP_NS;
		return next > max ? max : (uint32_t)next;
	}
	return cur / 2;
}

int eng_matcher_run(struct eng_matcher *m)
{
	uint32_t park_ms = 1;
	uint32_t spin = m->spin_ns;
	for (;;) {
		unsigned n = round_once(m);
		if (n) {
			m->st.rounds++;
			reclaim(m, true);
			park_ms = 1;
			continue;
		}
		if (stop_requested(m))
			break;
		bool parked = any_parked(m);
		int timeout = (int)(parked ? park_ms : m->idle_ms);
		/* Relaxed: a statistic of which we are the only writer. */
		uint64_t sleeps0 = load_relaxed(&m->db->sleeps);
		/* MT6: Dekker sleep [DB1/DB2]: `ready` re-reads every ring's
		 * head [RNG2] and the stop flags after the announcement, and
		 * every producer rings after publishing [RNG1, DB4]. */
		uint64_t t0 = shm_clock_ns(CLOCK_MONOTONIC);
		int rc = shm_doorbell_wait(m->db, ready, m, spin, timeout);
		spin = spin_adapt(m, spin, shm_clock_ns(CLOCK_MONOTONIC) - t0, rc);
		/* Relaxed: our own counter (the consumer is its only writer). */
		if (load_relaxed(&m->db->sleeps) != sleeps0)
			m->st.sleeps++;
		if (rc == SHMEX_ETIMEDOUT) {
			/* Idle tick: let retired nodes go once readers left, and
			 * look at rings that were corrupt again. */
			reclaim(m, false);
			m->retry_bad = true;
			if (parked && park_ms < m->idle_ms)
				park_ms *= 2;
		} else if (rc && rc != -EINTR) {
			logm(m, "waiting on the shard doorbell: %s", shmex_strerror(rc));
			return rc;
		}
	}
	drain(m);
	return 0;
}

void eng_matcher_stop(struct eng_matcher *m)
{
	/* MT7: relaxed; async-signal-safe, polled by the loop. */
	store_relaxed(&m->stop, 1);
}

void eng_matcher_get_stats(const struct eng_matcher *m, struct eng_matcher_stats *st)
{
	*st = m->st;
	st->epoch = shm_rcu_epoch(&m->readers);
}

/* ------------------------------------------------------------------ */
/* Startup and shutdown                                                */

/* Step 1: the instance's shape and settings. */
static int read_config(struct eng_matcher *m, struct shmex_error *err)
{
	struct shm_instance obs;
	int rc = shm_instance_attach(m->instance, SHM_ROLE_OBSERVER, 0, &obs);
	if (rc) {
		if (err)
			*err = obs.err;
		return rc;
	}
	m->nshards = obs.nshards;
	m->ngateways = obs.ngateways;
	m->set = obs.settings;
	shm_instance_detach(&obs);
	if (m->shard >= m->nshards)
		return shmex_error_set(
			err, SHMEX_EBADINDEX,
			"shard %u is out of range: instance %s has %u shard%s", m->shard,
			m->instance, m->nshards, m->nshards == 1 ? "" : "s");
	/* In range: shm_settings_load validated every row. */
	const struct shm_settings *st = &m->set;
	m->bcfg.caps.orders = (uint32_t)st->orders;
	m->bcfg.caps.levels = (uint32_t)st->levels;
	m->bcfg.caps.fills = (uint32_t)st->fills;
	m->bcfg.caps.symbols = (uint32_t)st->symbols;
	m->positions = (uint32_t)st->positions;
	m->nreaders = (uint32_t)st->readers;
	m->batch = (uint32_t)st->batch;
	m->spin_ns = (uint32_t)st->matcher_spin_us * 1000u;
	m->idle_ms = (uint32_t)st->idle_ms;
	m->drain_ms = (uint32_t)st->drain_ms;
	m->verbose = st->verbose != 0;
	m->bcfg.shard = m->shard;
	m->bcfg.nshards = m->nshards;
	m->bcfg.stp_mode = (uint32_t)st->stp;
	if (eng_core_bytes(&m->bcfg) == 0)
		return shmex_error_set(err, -EINVAL,
				       "invalid book capacities: orders "
				       "%u, levels %u, fills %u, symbols %u",
				       m->bcfg.caps.orders, m->bcfg.caps.levels,
				       m->bcfg.caps.fills, m->bcfg.caps.symbols);
	return 0;
}

/* The shard's own regions, in the order they are published. */
static const enum shm_region_kind shard_kinds[3] = {
	SHM_KIND_POSITIONS,
	SHM_KIND_READERS,
	SHM_KIND_BOOK,
};

/* Step 2. */
static int remove_stale(struct eng_matcher *m, struct shmex_error *err)
{
	for (int i = 0; i < 3; i++) {
		char name[SHM_REGION_NAME_MAX];
		int rc = shm_region_name(name, shard_kinds[i], m->shard);
		if (!rc)
			rc = shm_region_remove_stale(m->instance, name);
		if (rc == SHMEX_EINUSE) {
			struct shm_region_info info;
			int pid = 0;
			if (shm_region_inspect(m->instance, name, &info) == 0)
				pid = info.creator_pid;
			return shmex_error_set(
				err, rc,
				"/shmex.%s.%s is in use by live "
				"process %d (another matcher of shard %u?)",
				m->instance, name, pid, m->shard);
		}
		if (rc)
			return shmex_error_set(err, rc, "removing stale /shmex.%s.%s: %s",
					       m->instance, name, shmex_strerror(rc));
	}
	return 0;
}

static int alloc_private(struct eng_matcher *m)
{
	uint32_t g = m->ngateways, b = m->batch;
	m->req = calloc(g, sizeof(*m->req));
	m->rep = calloc(g, sizeof(*m->rep));
	m->ring_bad = calloc(g, sizeof(bool));
	m->rep_bad = calloc(g, sizeof(bool));
	m->in = calloc(b, sizeof(*m->in));
	m->out = calloc((size_t)g * b, sizeof(*m->out));
	m->out_off = calloc(g, sizeof(uint32_t));
	m->out_n = calloc(g, sizeof(uint32_t));
	m->sidx_of = malloc((size_t)m->bcfg.caps.symbols * sizeof(uint32_t));
	if (!m->req || !m->rep || !m->ring_bad || !m->rep_bad || !m->in || !m->out ||
	    !m->out_off || !m->out_n || !m->sidx_of)
		return -ENOMEM;
	for (uint32_t i = 0; i < m->bcfg.caps.symbols; i++)
		m->sidx_of[i] = NO_SIDX;
	return 0;
}

static void free_private(struct eng_matcher *m)
{
	free(m->req);
	free(m->rep);
	free(m->ring_bad);
	free(m->rep_bad);
	free(m->in);
	free(m->out);
	free(m->out_off);
	free(m->out_n);
	free(m->sidx_of);
}

/* Steps 3-6. */
static int create_regions(struct eng_matcher *m, struct shmex_error *err)
{
	int rc = shm_accounts_attach(&m->accounts, m->instance, SHM_RDWR);
	if (rc) {
		if (err)
			*err = m->accounts.region.err;
		return rc;
	}
	m->accounts_ok = true;
	uint64_t abandoned = 0;
	rc = shm_accounts_recover(&m->accounts, m->shard, m->nshards, &abandoned);
	if (rc)
		return shmex_error_set(err, rc, "recovering accounts of shard %u: %s",
				       m->shard, shmex_strerror(rc));
	if (abandoned)
		logm(m, "%llu account creations of a previous matcher were abandoned",
		     (unsigned long long)abandoned);
	m->acct.accounts = &m->accounts;

	rc = shm_positions_create(&m->positions_reg, m->instance, m->shard,
				  m->bcfg.caps.symbols, m->positions, 0660);
	if (rc) {
		if (err)
			*err = m->positions_reg.region.err;
		return shmex_error_wrap(err, rc, "positions of shard %u", m->shard);
	}
	m->positions_ok = true;
	m->acct.positions = &m->positions_reg;

	rc = shm_rcu_create(&m->readers, m->instance, m->shard, m->nreaders, 0660);
	if (rc) {
		if (err)
			*err = m->readers.region.err;
		return shmex_error_wrap(err, rc, "reader table of shard %u", m->shard);
	}
	m->readers_ok = true;

	rc = shm_book_region_create(&m->book_region, m->instance, &m->bcfg.caps, m->shard,
				    m->nshards, 0);
	if (rc) {
		if (err)
			*err = m->book_region.err;
		return rc;
	}
	m->book_ok = true;
	rc = eng_core_init(&m->book, shm_region_body(&m->book_region),
			   shm_region_body_size(&m->book_region), &m->bcfg, on_event, m);
	if (rc)
		return shmex_error_set(err, rc, "laying out the book in %s: %s",
				       m->book_region.name, shmex_strerror(rc));
	/* Nothing retired yet; start the core's safe epoch at the table's. */
	(void)eng_core_reclaim(m->book, shm_rcu_safe_epoch(&m->readers));

	rc = shm_instance_attach(m->instance, SHM_ROLE_MATCHER, m->shard, &m->inst);
	if (rc) {
		if (err)
			*err = m->inst.err;
		return rc;
	}
	m->inst_ok = true;
	if (m->inst.nshards != m->nshards || m->inst.ngateways != m->ngateways)
		return shmex_error_set(err, SHMEX_EBADLAYOUT,
				       "instance %s changed shape while starting",
				       m->instance);
	m->db = shm_instance_shard_doorbell(&m->inst, m->shard);
	if (!m->db)
		return SHMEX_EBADINDEX;
	for (uint32_t g = 0; g < m->ngateways; g++) {
		rc = shm_instance_request_ring(&m->inst, g, m->shard, &m->req[g]);
		if (!rc)
			rc = shm_instance_reply_ring(&m->inst, m->shard, g, &m->rep[g]);
		if (rc)
			return shmex_error_set(err, rc,
					       "rings of gateway %u in "
					       "/shmex.%s.rings: %s",
					       g, m->instance, shmex_strerror(rc));
	}
	/* MT1: release store of the book region's state [R0], the last
	 * step of startup and the readiness signal: the supervisor's attach
	 * [A0] then sees the laid-out book, and (program order) the
	 * positions and readers regions published before it and our member
	 * slot [INS3]. */
	shm_region_publish(&m->book_region);
	return 0;
}

static void detach_all(struct eng_matcher *m)
{
	if (m->inst_ok)
		shm_instance_detach(&m->inst);
	m->inst_ok = false;
	if (m->book)
		eng_core_destroy(m->book);
	m->book = NULL;
	if (m->book_ok)
		shm_region_detach(&m->book_region);
	if (m->readers_ok)
		shm_rcu_detach(&m->readers);
	if (m->positions_ok)
		shm_positions_detach(&m->positions_reg);
	if (m->accounts_ok)
		shm_accounts_detach(&m->accounts);
}

int eng_matcher_open(struct eng_matcher **out, const char *instance, uint32_t shard,
		     struct shmex_error *err)
{
	*out = NULL;
	shmex_error_clear(err);
	if (!shm_instance_name_valid(instance))
		return shmex_error_set(err, SHMEX_EBADNAME,
				       "invalid instance name \"%s\"",
				       instance ? instance : "");
	if (shard >= SHM_INSTANCE_SHARDS_MAX)
		return shmex_error_set(err, SHMEX_EBADINDEX,
				       "shard %u is out of range "
				       "(0..%u)",
				       shard, SHM_INSTANCE_SHARDS_MAX - 1);
	struct eng_matcher *m = calloc(1, sizeof(*m));
	if (!m)
		return shmex_error_set(err, -ENOMEM, "out of memory");
	snprintf(m->instance, sizeof(m->instance), "%s", instance);
	m->shard = shard;

	int rc = read_config(m, err);
	if (rc)
		goto out_free;
	rc = remove_stale(m, err);
	if (rc)
		goto out_free;
	rc = alloc_private(m);
	if (rc) {
		shmex_error_set(err, rc, "out of memory");
		goto out_private;
	}
	rc = create_regions(m, err);
	if (rc)
		goto out_unlink;
	*out = m;
	return 0;

out_unlink : {
	bool made[3] = {m->positions_ok, m->readers_ok, m->book_ok};
	detach_all(m);
	for (int i = 0; i < 3; i++) {
		char name[SHM_REGION_NAME_MAX];
		if (made[i] && shm_region_name(name, shard_kinds[i], m->shard) == 0)
			(void)shm_region_unlink(m->instance, name);
	}
}
out_private:
	free_private(m);
out_free:
	free(m);
	return rc;
}

const struct shm_settings *eng_matcher_settings(const struct eng_matcher *m)
{
	return &m->set;
}

void eng_matcher_close(struct eng_matcher *m)
{
	if (!m)
		return;
	detach_all(m);
	free_private(m);
	free(m);
}

/*
 * eng_matcher: the matcher process of one shard (contract in eng_matcher.h,
 * the whole story in docs/matcher.md and docs/durability.md).
 *
 * Shape.  One thread, one loop, no locks, plus the journal's writer thread
 * (eng_journal).  A round visits every gateway's request ring, copies up to
 * `batch` messages out of it (one acquire of head, one release of tail:
 * shm_ring.h), applies each copy, and queues its reply, tagged with the
 * journal sequence of the last record the request wrote.  After the round
 * the batch of records is sealed and handed to the writer; the loop then
 * commits what the writer has made durable: the queued credits of those
 * records are applied to the cash accounts (eng_cash), the book's
 * durable_event moves on [BK9], and the replies up to that tag go out on
 * their rings (one release of head and one doorbell per ring).  So a reply
 * never leaves before the record that justifies it is on disk, yet the
 * matcher keeps applying the next round while the previous one is synced.
 * Replies that do not fit a ring wait in this process, and a gateway with
 * too many waiting replies is not read until they drain: a stuck gateway
 * stalls only its own rings.  After a round the reader epoch advances and
 * reclamation is polled (the writer never waits for a reader).  With
 * nothing to do the loop spins briefly and sleeps on the shard's doorbell,
 * which the gateways ring for requests and the journal writer for
 * durability.
 *
 * Applying a request.  The message is a private copy; shm_msg_validate_
 * request checks its type, enums, ranges and shard ownership, and the
 * apply functions check everything else BEFORE anything changes, so a
 * reject changes nothing that matters (the exceptions are journaled as
 * side effects: a symbol entry, an empty position, recycled records).  An
 * order reserves its hold before the core sees it; the core's events then
 * move money and shares from inside its callback (on_event), and each
 * event is journaled first: the ORDER (the acceptance, with its id and
 * hold), every FILL, a DONE for a cancelled open part, a MODIFIED.
 *
 * Recovery (eng_matcher_open, with a data directory).  The shard's journal
 * is replayed through the same apply path into fresh regions: each request
 * group is applied only when it is complete, and the records the replay
 * produces must equal the journal's byte for byte (the core is pure and
 * deterministic), else recovery stops naming the record.  Cash goes to a
 * private part (eng_cash in replay mode) that eng_recover then puts into
 * the shared accounts.  A restarted matcher also answers again, on every
 * reply ring, the requests its predecessor journaled but may not have
 * answered, then tells each gateway where its predecessor stopped taking
 * requests (SHM_MSG_RESTART), so the gateway can say "not executed" of
 * the rest, truthfully.
 *
 * Damaged rings (docs/ring.md, "Corruption and repair").  A ring whose
 * indexes are inconsistent is reported (shm_ring_report, a log line that
 * names it, stats.ring_errors) and left alone; the supervisor repairs it
 * with both ends.  When the instance's ring_repairs word moves, the loop
 * looks at the repair state of its rings (repair_check): asked to quiesce,
 * it stops taking requests from gateway g and stops publishing to it,
 * acknowledges with its positions and keeps the replies it owes; told of a
 * new generation, it re-reads the rings, and queues a SHM_MSG_REPAIR
 * notice behind those replies that says up to which request position it
 * had taken requests.  Every request taken is answered before the notice,
 * so the gateway can say "not executed" of what is still waiting.
 *
 * Invariants between requests (checked by tests/test_eng_matcher.c):
 *  - per account: reserved cash == sum over its open buys of open x limit;
 *  - per position: reserved shares == sum over its open sells of open;
 *  - sum of balances + reserved == sum of deposits; per symbol sum of
 *    amounts + reserved == shares created (both at quiescent points: no
 *    credit queued);
 *  - accounts == deposits + the ledgers of every shard (shm_ledger.h).
 *
 * Limits: at most SHM_INSTANCE_GATEWAYS_MAX rings; `batch` messages per
 * ring per round; the account steps inside the callback can fail only on a
 * corrupted region (counted in stats.internal and logged, never ignored).
 */
#include "engine/eng_matcher.h"
#include "engine/eng_alloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/eng_acct.h"
#include "engine/eng_cash.h"
#include "engine/eng_core.h"
#include "engine/eng_history.h"
#include "engine/eng_journal.h"
#include "engine/eng_recover.h"
#include "engine/eng_snapshot.h"
#include "shm/shm_accounts.h"
#include "shm/shm_atomic.h"
#include "shm/shm_book.h"
#include "shm/shm_clock.h"
#include "shm/shm_doorbell.h"
#include "shm/shm_error.h"
#include "shm/shm_instance.h"
#include "shm/shm_journal.h"
#include "shm/shm_ledger.h"
#include "shm/shm_positions.h"
#include "shm/shm_rcu.h"
#include "shm/shm_region.h"
#include "shm/shm_ring.h"

#define NO_SIDX UINT32_MAX
#define SPIN_STEP_NS 1000u /* growth step of the adaptive spin budget */
#define RECOVER_TIMEOUT_MS 30000u
#define PROGRESS_NS 1000000000ull
#define REFUSE_RETRY_MS 1000u

/* What the event callback needs to know about the request being applied. */
struct apply_state {
	uint64_t target;   /* the request's own order (0 until accepted) */
	int64_t executed;  /* shares the target traded in this request */
	int64_t cancelled; /* shares of the target cancelled */
	bool prereserved;  /* MODIFY: the larger hold is already reserved */
	/* The request's own record (CANCEL, MODIFY), written before the
	 * first event it causes; has_req false once written (or for none). */
	bool has_req;
	struct shm_jrec req;
	/* ORDER: what the acceptance record says. */
	const struct shm_msg *msg;
	struct shm_jrec_origin origin;
	int64_t hold;
};

/* A reply waiting until its tag is durable and its ring has room. */
struct pend {
	struct shm_msg m;
	uint64_t tag;
};

struct outq {
	struct pend *v;
	uint32_t head, n, cap;
};

/* Where a sealed batch ends: the journal sequence and the core's event. */
struct evmark {
	uint64_t seq, event;
	uint64_t time_ns; /* every later record has a time at or above it */
};

/* Replay of one request group: its records, the next to compare. */
struct group {
	struct shm_jrec *r;
	size_t n, cap, next;
	char start_path[SHM_JOURNAL_PATH_MAX];
	off_t start_off;
};

struct eng_matcher {
	struct shm_settings set; /* the instance's, validated copy */
	uint32_t batch, spin_ns, idle_ms, drain_ms, positions; /* from set */
	uint32_t done_window; /* finished orders kept; 0: no trimming */
	bool verbose, quiet;
	char instance[SHM_INSTANCE_MAX + 1];
	uint32_t shard, nshards, ngateways;
	struct eng_core_cfg bcfg;
	uint32_t nreaders;
	uint64_t full_seen; /* book's rejects_full at the last reclaim */

	struct shm_instance inst;
	bool inst_ok;
	struct shm_accounts accounts;
	bool accounts_ok;
	struct shm_ledger ledger;
	bool ledger_ok;
	struct shm_positions positions_reg;
	bool positions_ok;
	struct shm_rcu readers;
	bool readers_ok;
	struct shm_region book_region;
	bool book_ok;
	struct eng_core *book;
	struct eng_cash *cash; /* live (or, while replaying, the replay's) */
	struct eng_acct_ctx acct;

	/* Journal. */
	bool journaling;                      /* a data directory is set */
	char shard_dir[SHM_JOURNAL_PATH_MAX]; /* DIR/shard-<k> */
	struct eng_journal *journal;          /* NULL: none, or refusing */
	/* Finished orders that left the book (NULL without a journal), and
	 * the history length the loaded snapshot covers. */
	struct eng_history *hist;
	uint64_t hist_from;
	bool hist_failed; /* the last flush failed (logged once) */
	bool refusing;    /* journal cannot be written */
	uint64_t refuse_retry_ns;
	struct shmex_error jerr; /* why it cannot */
	uint64_t jlast;          /* last sequence appended */
	uint64_t now_ns;         /* time of this request */
	uint64_t last_time_ns;   /* records' times never go back */
	uint64_t incarnation;
	struct evmark *marks;
	uint32_t mhead, mn, mcap;
	uint64_t durable_seq, durable_event; /* last committed */
	uint64_t durable_time_ns;            /* the audit watermark [BK11] */
	/* Snapshots. */
	uint64_t snap_seq;   /* last record the newest snapshot covers */
	uint64_t snap_bytes; /* journal bytes written when it was taken */
	uint32_t snap_tick;  /* rounds until the next look */
	/* Replay. */
	bool replaying;
	struct shm_jreader rd;
	struct group grp;
	struct shmex_error replay_err;
	int replay_rc;
	uint64_t resend_after[SHM_INSTANCE_GATEWAYS_MAX]; /* predecessor's LG7 */
	bool restarted;
	uint64_t consumed_at_start[SHM_INSTANCE_GATEWAYS_MAX];

	struct shm_doorbell_sh *db; /* this shard's doorbell */
	struct shm_ring *req;       /* [ngateways] request rings (consumer) */
	struct shm_ring *rep;       /* [ngateways] reply rings (producer) */
	bool *ring_bad;             /* [ngateways] request ring corrupt */
	bool *rep_bad;              /* [ngateways] reply ring corrupt */
	bool *paused;               /* [ngateways] its rings are being repaired */
	uint64_t *repair_taken;     /* [ngateways] requests taken at the pause */
	uint32_t repairs_seen;      /* the instance's ring_repairs, last look */
	struct shm_msg *in;         /* [batch] copies of one ring's batch */
	struct outq *outq;          /* [ngateways] replies waiting */
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
	char buf[768];
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
/* Records                                                             */

static void rec_init(struct shm_jrec *r, uint16_t type)
{
	memset(r, 0, sizeof(*r));
	r->h.type = type;
}

/* Replay: the next record of the group, or an error. */
static const struct shm_jrec *expected(struct eng_matcher *m)
{
	struct group *g = &m->grp;
	if (g->next < g->n)
		return &g->r[g->next++];
	return NULL;
}

static void replay_fail(struct eng_matcher *m, const struct shm_jrec *got,
			const struct shm_jrec *want)
{
	if (m->replay_rc)
		return;
	m->replay_rc = SHMEX_ERECOVERY;
	if (!want)
		shmex_error_set(&m->replay_err, SHMEX_ERECOVERY,
				"replay of record %" PRIu64
				" produced a %s record that the journal does not have",
				m->grp.n ? m->grp.r[0].h.seq : 0,
				shm_jrec_type_name(got->h.type));
	else
		shmex_error_set(&m->replay_err, SHMEX_ERECOVERY,
				"record %" PRIu64
				" (%s) differs from what the replay produced (%s): the "
				"journal and this build's matching disagree",
				want->h.seq, shm_jrec_type_name(want->h.type),
				shm_jrec_type_name(got->h.type));
}

/* Writes a record (live), or checks it against the journal (replay).
 * Returns its sequence. */
static uint64_t jput(struct eng_matcher *m, struct shm_jrec *r)
{
	r->h.time_ns = m->now_ns;
	if (m->replaying) {
		const struct shm_jrec *want = expected(m);
		if (!want) {
			replay_fail(m, r, NULL);
			return 0;
		}
		r->h.seq = want->h.seq;
		r->h.shard = (uint16_t)m->shard;
		r->h.flags = want->h.flags & SHM_JREC_END;
		size_t len = shm_jrec_seal(r);
		if (len != want->h.len || memcmp(r, want, len) != 0)
			replay_fail(m, r, want);
		m->jlast = want->h.seq;
		return want->h.seq;
	}
	if (!m->journal)
		return 0;
	m->jlast = eng_journal_append(m->journal, r);
	return m->jlast;
}

/* The request's own record, written before the first event it causes. */
static void put_request_record(struct eng_matcher *m)
{
	if (!m->applying.has_req)
		return;
	m->applying.has_req = false;
	jput(m, &m->applying.req);
}

static void origin_of(struct shm_jrec_origin *o, uint32_t g, const struct shm_msg *req,
		      uint64_t pos)
{
	memset(o, 0, sizeof(*o));
	o->gateway = g;
	o->req_id = req->req_id;
	o->ring_pos = pos;
}

/* ------------------------------------------------------------------ */
/* Events of the core: money and shares follow the book                */

static void journal_accept(struct eng_matcher *m, const struct eng_event *ev)
{
	const struct shm_msg *q = m->applying.msg;
	struct shm_jrec r;
	rec_init(&r, SHM_JREC_ORDER);
	r.u.order.o = m->applying.origin;
	r.u.order.order_id = ev->order_id;
	r.u.order.account = ev->account;
	r.u.order.price = ev->price;
	r.u.order.qty = ev->qty;
	if (q)
		memcpy(r.u.order.symbol, q->u.symbol, 16);
	r.u.order.side = ev->side;
	r.u.order.tif = ev->tif;
	if (q && q->type == SHM_MSG_ORDER)
		r.u.order.flags = (uint8_t)(q->flags & SHM_MSG_POST_ONLY);
	r.u.order.hold = m->applying.hold;
	r.u.order.event = ev->event;
	jput(m, &r);
}

/* The core recycles a finished order: its final state goes to the
 * history first (eng_history.h). */
static void on_recycle(void *ctx, const struct shm_book_view *v, uint32_t oi)
{
	struct eng_matcher *m = ctx;
	if (m->hist)
		eng_history_add(m->hist, v, oi);
}

/* Writes the history buffered in this round; a failure is logged once and
 * retried every round (readers answer those orders busy meanwhile). */
static void history_flush(struct eng_matcher *m)
{
	if (!m->hist)
		return;
	struct shmex_error e = {0};
	int rc = eng_history_flush(m->hist, &e);
	if (rc && !m->hist_failed)
		logm(m, "order history not written (retried every round): %s",
		     shmex_error_msg(&e, rc));
	m->hist_failed = rc != 0;
}

static void on_event(void *ctx, const struct eng_event *ev)
{
	struct eng_matcher *m = ctx;
	uint32_t sidx = sidx_of_sym(m, ev->sym);
	int rc;
	if (ev->event)
		m->events = ev->event; /* rejects carry no number */
	if (ev->type != ENG_EV_REJECT)
		put_request_record(m);
	struct shm_jrec r;
	switch (ev->type) {
	case ENG_EV_ACCEPT:
		m->applying.target = ev->order_id;
		journal_accept(m, ev);
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
		struct eng_acct_settlement s;
		memset(&s, 0, sizeof(s));
		rc = eng_acct_settle_for(&f, &s);
		rec_init(&r, SHM_JREC_FILL);
		r.u.fill.taker_id = ev->order_id;
		r.u.fill.maker_id = ev->maker_id;
		r.u.fill.taker_account = ev->account;
		r.u.fill.maker_account = ev->maker_account;
		r.u.fill.price = ev->price;
		r.u.fill.qty = ev->qty;
		r.u.fill.taker_limit = ev->taker_price;
		r.u.fill.maker_limit = ev->maker_price;
		r.u.fill.buyer_refund = s.buyer_refund;
		r.u.fill.seller_credit = s.seller_credit;
		r.u.fill.event = ev->event;
		r.u.fill.taker_side = ev->side;
		eng_cash_set_tag(m->cash, jput(m, &r));
		m->st.fills++;
		if (ev->order_id == m->applying.target)
			m->applying.executed += ev->qty;
		if (!rc)
			rc = sidx == NO_SIDX ? SHMEX_EINTERNAL
					     : eng_acct_settle(&m->acct, sidx, &f);
		if (rc)
			internal_error(m, "settling a fill", rc, ev->order_id);
		break;
	}
	case ENG_EV_CANCEL:
		rec_init(&r, SHM_JREC_DONE);
		r.u.done.order_id = ev->order_id;
		r.u.done.account = ev->account;
		r.u.done.qty = ev->qty;
		r.u.done.price = ev->price;
		r.u.done.event = ev->event;
		r.u.done.reason = ev->reason;
		r.u.done.side = ev->side;
		eng_cash_set_tag(m->cash, jput(m, &r));
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
		rec_init(&r, SHM_JREC_MODIFIED);
		r.u.modified.order_id = ev->order_id;
		r.u.modified.account = ev->account;
		r.u.modified.old_price = ev->old_price;
		r.u.modified.old_qty = ev->old_qty;
		r.u.modified.new_price = ev->price;
		r.u.modified.new_qty = ev->qty;
		r.u.modified.event = ev->event;
		r.u.modified.side = ev->side;
		eng_cash_set_tag(m->cash, jput(m, &r));
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
		rc = sidx == NO_SIDX
			     ? SHMEX_EINTERNAL
			     : eng_acct_modify(&m->acct, ev->account, sidx, ev->side,
					       ev->old_qty, ev->old_price, ev->qty,
					       ev->price, false);
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

static void req_init(struct eng_matcher *m, struct eng_req *q, const struct shm_msg *req)
{
	memset(q, 0, sizeof(*q));
	q->seq = m->seq;
	q->time_ns = m->now_ns;
	q->epoch = m->replaying ? 0 : shm_rcu_epoch(&m->readers);
	q->account = req->account;
	q->order_id = req->order_id;
	q->price = req->price;
	q->qty = req->qty;
	q->side = req->side;
	q->tif = req->tif;
	q->flags = req->type == SHM_MSG_ORDER && (req->flags & SHM_MSG_POST_ONLY)
			   ? ENG_REQ_POST_ONLY
			   : 0;
}

/* Side effects of a request that was otherwise rejected (journaled so the
 * replay repeats them; each is its own group). */
static void side_effect(struct eng_matcher *m, struct shm_jrec *r)
{
	jput(m, r);
	if (m->journal && !m->replaying)
		eng_journal_mark_end(m->journal);
}

static void journal_recycled(struct eng_matcher *m, uint64_t before)
{
	uint64_t n = eng_core_recycled(m->book) - before;
	if (!n)
		return;
	struct shm_jrec r;
	rec_init(&r, SHM_JREC_RECYCLE);
	r.u.recycle.count = n;
	side_effect(m, &r);
}

static int apply_create_account(struct eng_matcher *m, const struct shm_msg *req,
				struct shm_msg *rep)
{
	struct shm_jrec r;
	rec_init(&r, SHM_JREC_ACCOUNT);
	r.u.account.o = m->applying.origin;
	r.u.account.account = req->account;
	shm_cash_t balance = shm_msg_balance(req);
	shm_jrec_set_balance(&r.u.account, balance);
	/* The tag of the publication is the record's own sequence. */
	uint64_t next =
		m->replaying || !m->journal ? 0 : eng_journal_last(m->journal) + 1;
	eng_cash_set_tag(m->cash, next);
	int rc = eng_acct_create_account(&m->acct, req->account, balance);
	if (rc)
		return rc;
	jput(m, &r);
	m->st.accounts++;
	shm_msg_set_balance(rep, balance);
	return 0;
}

static int apply_add_shares(struct eng_matcher *m, const struct shm_msg *req,
			    struct shm_msg *rep)
{
	struct eng_cash_acct a;
	uint32_t bsym, sidx;
	int rc = eng_cash_find(m->cash, req->account, &a);
	if (rc)
		return rc;
	size_t len = shm_symbol_unpack_len(req->u.symbol);
	bool existed = eng_core_symbol_find(m->book, req->u.symbol, len, &bsym) == 0;
	/* Finds the symbol or creates it empty; a later failure below leaves
	 * the empty symbol entry, journaled as a side effect. */
	rc = eng_core_symbol_add(m->book, req->u.symbol, len, &bsym);
	if (rc)
		return rc == -ENOMEM ? SHMEX_EINTERNAL : rc;
	if (bsym >= m->bcfg.caps.symbols)
		return SHMEX_EINTERNAL;
	rc = eng_acct_add_shares(&m->acct, req->account, req->u.symbol, req->qty, &sidx);
	struct shm_jrec r;
	if (rc) {
		if (!existed) {
			rec_init(&r, SHM_JREC_SYMBOL);
			memcpy(r.u.symbol.symbol, req->u.symbol, 16);
			side_effect(m, &r);
		}
		return rc;
	}
	rec_init(&r, SHM_JREC_SHARES);
	r.u.shares.o = m->applying.origin;
	r.u.shares.account = req->account;
	r.u.shares.qty = req->qty;
	memcpy(r.u.shares.symbol, req->u.symbol, 16);
	jput(m, &r);
	m->sidx_of[bsym] = sidx;
	m->st.add_shares++;
	rep->qty = req->qty;
	return 0;
}

static int apply_order(struct eng_matcher *m, const struct shm_msg *req,
		       struct shm_msg *rep)
{
	struct eng_cash_acct a;
	uint32_t bsym, pidx;
	int rc = eng_cash_find(m->cash, req->account, &a);
	if (rc)
		return rc;
	size_t len = shm_symbol_unpack_len(req->u.symbol);
	rc = eng_core_symbol_find(m->book, req->u.symbol, len, &bsym);
	if (rc)
		return rc;
	uint32_t sidx = sidx_of_sym(m, bsym);
	if (sidx == NO_SIDX)
		return SHMEX_ENOSYMBOL; /* in the book, never given shares */
	struct eng_acct_hold h;
	rc = eng_acct_hold_for(req->side, req->qty, req->price, &h);
	if (rc)
		return rc;
	bool had_pos =
		shm_positions_find(&m->positions_reg, req->account, sidx, &pidx) == 0;
	rc = eng_acct_place(&m->acct, req->account, sidx, req->side, req->qty,
			    req->price);
	if (rc)
		return rc;
	struct eng_req q;
	req_init(m, &q, req);
	q.sym = bsym;
	m->applying.msg = req;
	m->applying.hold = req->side == SHM_SIDE_BUY ? h.cash : h.shares;
	uint64_t recycled = eng_core_recycled(m->book);
	uint64_t id;
	rc = eng_core_submit(m->book, &q, &id);
	if (rc) {
		/* Nothing happened in the book: the placement goes back at
		 * once (it was this request's, and never journaled). */
		int r2 = eng_acct_unplace(&m->acct, req->account, sidx, req->side,
					  req->qty, req->price);
		if (r2)
			internal_error(m, "giving back a rejected order's hold", r2, 0);
		journal_recycled(m, recycled);
		if (!had_pos && shm_positions_find(&m->positions_reg, req->account, sidx,
						   &pidx) == 0) {
			struct shm_jrec r;
			rec_init(&r, SHM_JREC_POSITION);
			r.u.position.account = req->account;
			memcpy(r.u.position.symbol, req->u.symbol, 16);
			side_effect(m, &r);
		}
		return rc;
	}
	m->st.orders++;
	rep->order_id = id;
	rep->qty = m->applying.executed;
	rep->price = req->price;
	return 0;
}

/* The core does not know a finished order whose record it recycled
 * (SHMEX_ENOORDER); the answer to a cancel or modify of it is the one it
 * gave while it knew it: the owner is told nothing is open, anyone else
 * that the order is another account's. */
static int recycled_reason(struct eng_matcher *m, uint64_t id, uint64_t account, int rc)
{
	const struct shm_book_view *v = eng_core_view(m->book);
	uint64_t owner;
	if (rc != SHMEX_ENOORDER || !m->hist ||
	    shm_shard_of_order(id, v->nshards) != v->shard ||
	    !shm_book_order_issued(v, id) ||
	    eng_history_account(m->hist, id, &owner) != 0)
		return rc;
	return owner == account ? SHMEX_ENOTOPEN : SHMEX_ENOTOWNER;
}

static int apply_cancel(struct eng_matcher *m, const struct shm_msg *req,
			struct shm_msg *rep)
{
	struct eng_req q;
	req_init(m, &q, req);
	m->applying.target = req->order_id;
	rec_init(&m->applying.req, SHM_JREC_CANCEL);
	m->applying.req.u.cancel.o = m->applying.origin;
	m->applying.req.u.cancel.order_id = req->order_id;
	m->applying.req.u.cancel.account = req->account;
	m->applying.has_req = true;
	rep->order_id = req->order_id;
	int rc = eng_core_cancel(m->book, &q);
	m->applying.has_req = false;
	if (rc)
		return recycled_reason(m, req->order_id, req->account, rc);
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
	req_init(m, &q, req);
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
					     old_price, req->qty, req->price, false);
			if (rc)
				return rc;
			m->applying.prereserved = true;
		}
	}
	rec_init(&m->applying.req, SHM_JREC_MODIFY);
	m->applying.req.u.modify.o = m->applying.origin;
	m->applying.req.u.modify.order_id = req->order_id;
	m->applying.req.u.modify.account = req->account;
	m->applying.req.u.modify.price = req->price;
	m->applying.req.u.modify.qty = req->qty;
	m->applying.has_req = true;
	uint64_t recycled = eng_core_recycled(m->book);
	rc = eng_core_modify(m->book, &q);
	m->applying.has_req = false;
	if (rc) {
		if (m->applying.prereserved) {
			int r2 = eng_acct_modify(&m->acct, req->account, sidx, side,
						 req->qty, req->price, old_open,
						 old_price, true);
			if (r2)
				internal_error(m, "giving back a rejected modify's hold",
					       r2, req->order_id);
		}
		journal_recycled(m, recycled);
		return recycled_reason(m, req->order_id, req->account, rc);
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

static bool commit(struct eng_matcher *m);

/* A request for an account this shard created a moment ago, whose
 * creation is not yet durable (a producer that pipelines on the ring; a
 * gateway waits for each reply): makes everything so far durable and
 * commits it, so the account exists.  Rare, so it may cost a flush. */
static void settle_creations(struct eng_matcher *m)
{
	if (m->journal) {
		struct shmex_error e = {0};
		if (eng_journal_flush(m->journal, &e) != 0)
			return; /* the loop finds the error and stops */
	}
	(void)commit(m);
}

/* Applies one request that came from gateway g at ring position pos. */
static void apply(struct eng_matcher *m, const struct shm_msg *req, struct shm_msg *rep,
		  uint32_t g, uint64_t pos)
{
	memset(rep, 0, sizeof(*rep));
	rep->type = SHM_MSG_REPLY;
	rep->req_type = req->type;
	rep->req_id = req->req_id;
	rep->account = req->account;
	rep->side = req->side;
	rep->tif = req->tif;
	m->seq++;
	if (!m->replaying) {
		/* Records' times never go back (the audit merge needs it),
		 * whatever the realtime clock does. */
		uint64_t now = shm_clock_ns(CLOCK_REALTIME);
		m->now_ns = now > m->last_time_ns ? now : m->last_time_ns;
		m->last_time_ns = m->now_ns;
	}
	rep->u.r.time_ns = m->now_ns;
	m->st.requests++;
	memset(&m->applying, 0, sizeof(m->applying));
	origin_of(&m->applying.origin, g, req, pos);
	uint64_t before = m->jlast;
	int rc = shm_msg_validate_request(req, m->shard, m->nshards);
	if (rc) {
		m->st.invalid++;
	} else if (m->refusing) {
		/* The journal cannot be written: nothing is acknowledged. */
		rc = SHMEX_EJOURNAL;
	} else {
		if (req->type != SHM_MSG_CREATE_ACCOUNT &&
		    eng_cash_creating(m->cash, req->account))
			settle_creations(m);
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
	/* The group of records this request wrote ends here. */
	if (m->jlast != before && m->journal && !m->replaying)
		eng_journal_mark_end(m->journal);
	rep->status = rc;
	rep->u.r.seq = m->events;
	if (rc) {
		m->st.rejects++;
		if (!m->replaying) {
			/* Statistics for tools (relaxed, only we write). */
			struct shm_book_hdr_sh *h = eng_core_view(m->book)->hdr;
			uint64_t *c = &h->rejects_by[shm_book_reject_cause(rc)];
			store_relaxed(c, load_relaxed(c) + 1);
		}
		if (m->verbose)
			logm(m, "request %llu (type %u, account %llu) rejected: %s",
			     (unsigned long long)req->req_id, req->type,
			     (unsigned long long)req->account, shmex_strerror(rc));
	}
}

void eng_matcher_apply(struct eng_matcher *m, const struct shm_msg *req,
		       struct shm_msg *rep)
{
	apply(m, req, rep, 0, 0);
}

/* ------------------------------------------------------------------ */
/* Replies and durability                                              */

static int outq_push(struct outq *q, const struct shm_msg *msg, uint64_t tag)
{
	if (q->head + q->n == q->cap) {
		if (q->head > 0) {
			memmove(q->v, q->v + q->head, q->n * sizeof(*q->v));
			q->head = 0;
		} else {
			uint32_t cap = q->cap ? 2 * q->cap : 256;
			struct pend *nv = eng_alloc_realloc(q->v, cap * sizeof(*nv));
			if (!nv)
				return -ENOMEM;
			q->v = nv;
			q->cap = cap;
		}
	}
	q->v[q->head + q->n].m = *msg;
	q->v[q->head + q->n].tag = tag;
	q->n++;
	return 0;
}

/* A ring of gateway g's path is damaged: reported for the supervisor
 * (RNG9 inside shm_ring_report) and logged once with what was wrong. */
static void ring_damaged(struct eng_matcher *m, uint32_t g, bool request)
{
	struct shm_ring *r = request ? &m->req[g] : &m->rep[g];
	enum shm_ring_side side = request ? SHM_RING_CONSUMER : SHM_RING_PRODUCER;
	char name[128], why[160];
	shm_instance_ring_name(&m->inst, request, g, m->shard, name, sizeof(name));
	shm_ring_describe(r, side, why, sizeof(why));
	shm_ring_report(r, side);
	logm(m, "ring %s: %s (generation %u); %s until it is repaired", name, why, r->gen,
	     request ? "its requests are not taken" : "its replies wait");
}

/* Sends gateway g's replies whose tag is <= upto, in order, as far as its
 * ring has room.  Returns true when none of those is left. */
static bool publish_replies(struct eng_matcher *m, uint32_t g, uint64_t upto)
{
	struct outq *q = &m->outq[g];
	if (m->paused[g] || m->rep_bad[g])
		return q->n == 0; /* they wait for the repair */
	uint32_t n = 0;
	while (n < q->n && q->v[q->head + n].tag <= upto)
		n++;
	if (n == 0)
		return true;
	struct shm_msg buf[64];
	uint32_t sent = 0;
	while (sent < n) {
		uint32_t k = n - sent < 64 ? n - sent : 64;
		for (uint32_t i = 0; i < k; i++)
			buf[i] = q->v[q->head + sent + i].m;
		unsigned done = 0;
		/* MT4: one publication of the batch's replies [RNG1], then
		 * one doorbell ring of gateway g [DB4] (inside
		 * shm_ring_enqueue_batch).  The replies describe state that
		 * is durable and published: the gateway that acquires them
		 * [RNG2] and then reads the book sees it. */
		int rc = shm_ring_enqueue_batch(&m->rep[g], buf, k, &done);
		if (rc) {
			if (!m->rep_bad[g])
				ring_damaged(m, g, false);
			m->rep_bad[g] = true;
			m->st.ring_errors++;
			break;
		}
		m->rep_bad[g] = false;
		sent += done;
		if (done < k) {
			m->st.replies_parked++;
			break;
		}
	}
	if (sent) {
		uint64_t tag = q->v[q->head + sent - 1].tag;
		q->head += sent;
		q->n -= sent;
		if (q->n == 0)
			q->head = 0;
		/* LG7: release, after the ring's release [RNG1]: a successor
		 * that reads it answers again only what comes after. */
		if (m->ledger_ok && tag > load_relaxed(&m->ledger.hdr->replied[g]))
			store_release(&m->ledger.hdr->replied[g], tag);
	}
	return sent == n;
}

/* The records handed to the writer so far end here. */
static void mark_batch(struct eng_matcher *m)
{
	if (!m->journal || m->jlast == 0)
		return;
	if (m->mn && m->marks[(m->mhead + m->mn - 1) % m->mcap].seq == m->jlast)
		return;
	if (m->mn == m->mcap) {
		uint32_t cap = m->mcap ? 2 * m->mcap : 64;
		struct evmark *nm = eng_alloc_malloc(cap * sizeof(*nm));
		if (!nm)
			return; /* durable_event then lags; replies do not */
		for (uint32_t i = 0; i < m->mn; i++)
			nm[i] = m->marks[(m->mhead + i) % m->mcap];
		eng_alloc_free(m->marks);
		m->marks = nm;
		m->mhead = 0;
		m->mcap = cap;
	}
	m->marks[(m->mhead + m->mn) % m->mcap] =
		(struct evmark){m->jlast, m->events, m->last_time_ns};
	m->mn++;
}

/* What the journal has made durable takes effect: queued credits, the
 * book's durable_event, and the replies.  Returns true when replies are
 * still waiting (for durability or for room). */
static bool commit(struct eng_matcher *m)
{
	uint64_t durable = m->journal ? eng_journal_durable(m->journal) : m->jlast;
	if (!m->journal) {
		m->durable_event = m->events;
	} else {
		while (m->mn && m->marks[m->mhead].seq <= durable) {
			m->durable_event = m->marks[m->mhead].event;
			m->durable_time_ns = m->marks[m->mhead].time_ns;
			m->mhead = (m->mhead + 1) % m->mcap;
			m->mn--;
		}
	}
	/* Everything appended is durable: every later record is stamped at
	 * or after the last request's time. */
	if (durable >= m->jlast)
		m->durable_time_ns = m->last_time_ns;
	m->durable_seq = durable;
	eng_cash_commit(m->cash, durable);
	/* BK9: release; pairs with the gateways' BK10: an order whose last
	 * change is at or below it may be shown to a client. */
	store_release(&eng_core_view(m->book)->hdr->durable_event, m->durable_event);
	/* BK11: release; pairs with the audit's BK12: records below it are
	 * on disk (JR2 acquired them above) and no later one goes below. */
	store_release(&eng_core_view(m->book)->hdr->durable_time_ns, m->durable_time_ns);
	bool waiting = false;
	for (uint32_t g = 0; g < m->ngateways; g++)
		if (!publish_replies(m, g, durable) || m->outq[g].n)
			waiting = true;
	return waiting;
}

/* Between requests, with nothing waiting for the journal: the audit
 * watermark moves to the clock, so that the merge of every shard's
 * journal never waits for a shard that has nothing to say.  Later
 * records are stamped at or after it (last_time_ns only grows). */
static void publish_idle_time(struct eng_matcher *m)
{
	if (m->replaying || m->durable_seq < m->jlast)
		return;
	uint64_t now = shm_clock_ns(CLOCK_REALTIME);
	if (now > m->last_time_ns)
		m->last_time_ns = now;
	m->durable_time_ns = m->last_time_ns;
	/* BK11, as in commit. */
	store_release(&eng_core_view(m->book)->hdr->durable_time_ns, m->durable_time_ns);
}

/* The journal failed: what it did not make durable is answered "not
 * accepted" (a successor will not have it), and this matcher stops. */
static void journal_failed(struct eng_matcher *m)
{
	uint64_t durable = eng_journal_durable(m->journal);
	logm(m,
	     "%s; the requests it did not write are answered \"not executed\", "
	     "and this matcher stops",
	     shmex_error_msg(&m->jerr, SHMEX_EJOURNAL));
	for (uint32_t g = 0; g < m->ngateways; g++) {
		struct outq *q = &m->outq[g];
		for (uint32_t i = 0; i < q->n; i++) {
			struct pend *p = &q->v[q->head + i];
			if (p->tag <= durable)
				continue;
			p->m.status = SHMEX_EJOURNAL;
			p->m.order_id =
				p->m.req_type == SHM_MSG_ORDER ? 0 : p->m.order_id;
			p->tag = 0;
		}
	}
	store_relaxed(&m->stop, 1);
}

/* ------------------------------------------------------------------ */
/* The loop                                                            */

/* A gateway with this many replies waiting is not read until they drain:
 * memory stays bounded and a stuck gateway stalls only itself. */
static uint32_t outq_limit(const struct eng_matcher *m)
{
	return 4 * m->batch;
}

/* After a round: finished orders beyond the done window go back to the
 * free stack (eng_core_trim), so new orders take recently used records
 * and the records in use stay in cache.  Which records that frees
 * depends on the readers' safe epoch, which a replay does not have: it is
 * journaled as a RECYCLE record, which the replay repeats
 * (replay_side_effect); a replay never trims on its own. */
static void trim_done(struct eng_matcher *m)
{
	if (m->done_window == 0 || m->replaying)
		return;
	uint32_t n = eng_core_trim(m->book, m->done_window);
	if (!n)
		return;
	struct shm_jrec r;
	rec_init(&r, SHM_JREC_RECYCLE);
	r.u.recycle.count = n;
	side_effect(m, &r);
}

/* One visit of every gateway's ring; returns the messages taken. */
static unsigned round_once(struct eng_matcher *m)
{
	unsigned total = 0;
	for (uint32_t g = 0; g < m->ngateways; g++) {
		if (m->outq[g].n >= outq_limit(m))
			continue; /* its requests wait until its replies drain */
		if ((m->ring_bad[g] && !m->retry_bad) || m->paused[g])
			continue;
		unsigned got = 0;
		uint64_t pos = shm_ring_consumed(&m->req[g]);
		/* MT5: copy the batch out once [RNG2 acquire of head, RNG3
		 * release of tail]; only the private copies are validated
		 * and used, so the producer cannot change a message under
		 * us. */
		int rc = shm_ring_dequeue_batch(&m->req[g], m->in, m->batch, &got);
		if (rc) {
			if (!m->ring_bad[g])
				ring_damaged(m, g, true);
			m->ring_bad[g] = true;
			m->st.ring_errors++;
			continue;
		}
		m->ring_bad[g] = false;
		for (unsigned i = 0; i < got; i++) {
			struct shm_msg rep;
			apply(m, &m->in[i], &rep, g, pos + i);
			if (outq_push(&m->outq[g], &rep, m->jlast) != 0)
				internal_error(m, "queueing a reply", -ENOMEM, 0);
		}
		total += got;
	}
	m->retry_bad = false;
	if (total) {
		/* The round's quotes (BK13/BK14), once per symbol, before any
		 * of its replies can leave (commit, MT4). */
		eng_core_publish(m->book);
		trim_done(m);
		history_flush(m);
	}
	if (total && m->journal) {
		mark_batch(m);
		eng_journal_seal(m->journal);
	}
	return total;
}

/* Doorbell predicate: work we would take now, durability to commit, a
 * freeze to join, or a stop. */
static bool ready(void *arg)
{
	struct eng_matcher *m = arg;
	if (stop_requested(m))
		return true;
	if (m->journal && eng_journal_durable(m->journal) != m->durable_seq)
		return true;
	/* FZ3 (predicate): a freeze of another shard wants our ack. */
	uint32_t owner = load_acquire(&m->inst.ctl->freeze_owner);
	if (owner && owner != m->shard + 1)
		return true;
	/* INS7 (predicate): a ring repair wants our part. */
	if (shm_instance_ring_repairs(&m->inst) != m->repairs_seen)
		return true;
	for (uint32_t g = 0; g < m->ngateways; g++) {
		if (m->outq[g].n >= outq_limit(m) || m->ring_bad[g] || m->paused[g])
			continue;
		if (shm_ring_readable(&m->req[g]))
			return true;
	}
	return false;
}

/* After a round (busy) or at an idle tick: advance the reader epoch, poll
 * the reader table and let the core reuse what no reader can see.  After
 * a round only when the core says it is due (eng_core_reclaim_due: every
 * ENG_RECLAIM_EVERY requests or ENG_RECLAIM_NS, sooner when a pool runs
 * low or a request found the book full): each advance and poll costs a cross-core transfer
 * while readers are active (docs/concurrency.md, "Reclamation pacing"). */
static void reclaim(struct eng_matcher *m, bool busy)
{
	if (busy && !eng_core_reclaim_due(m->book, shm_clock_ns(CLOCK_MONOTONIC)))
		return;
	/* MT2: after the rounds' unlinks (the core's release stores [BK1]),
	 * publish epoch E + 1 [RD3]; nodes retired since the last advance
	 * carry tag E. */
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

/* Journal trouble: a failed writer stops the matcher; a refusing one
 * (the journal could not be opened) tries again now and then. */
static void journal_health(struct eng_matcher *m);

/* After a stop: takes what is still in the rings, makes it durable and
 * delivers every reply, giving up on replies after drain_ms. */
static void drain(struct eng_matcher *m)
{
	uint64_t deadline =
		shm_clock_ns(CLOCK_MONOTONIC) + (uint64_t)m->drain_ms * 1000000u;
	for (;;) {
		unsigned n = m->journal && eng_journal_error(m->journal, NULL)
				     ? 0
				     : round_once(m);
		if (n) {
			m->st.rounds++;
			reclaim(m, true);
		}
		if (m->journal && eng_journal_error(m->journal, &m->jerr) &&
		    load_relaxed(&m->stop) == 0)
			journal_failed(m);
		if (m->journal && !eng_journal_error(m->journal, NULL)) {
			struct shmex_error e = {0};
			if (eng_journal_flush(m->journal, &e) != 0) {
				m->jerr = e;
				journal_failed(m);
			}
		}
		bool waiting = commit(m);
		if (n && shm_clock_ns(CLOCK_MONOTONIC) < deadline)
			continue;
		if (!waiting && n == 0) {
			publish_idle_time(m);
			break;
		}
		if (shm_clock_ns(CLOCK_MONOTONIC) >= deadline) {
			uint64_t dropped = 0;
			for (uint32_t g = 0; g < m->ngateways; g++) {
				dropped += m->outq[g].n;
				m->outq[g].n = 0;
				m->outq[g].head = 0;
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

/* ------------------------------------------------------------------ */
/* Snapshots                                                           */

/* The capacities a snapshot is valid for (shm_jsnap_hdr.caps). */
static void snapshot_caps(const struct eng_matcher *m, uint64_t caps[8])
{
	memset(caps, 0, 8 * sizeof(caps[0]));
	caps[0] = m->bcfg.caps.orders;
	caps[1] = m->bcfg.caps.levels;
	caps[2] = m->bcfg.caps.fills;
	caps[3] = m->bcfg.caps.symbols;
	caps[4] = m->positions;
	caps[5] = m->accounts.capacity;
}

/* Keeps the two newest snapshots: removes the older ones and every journal
 * segment that the older of the two covers entirely (a bad newest
 * snapshot still leaves a way back). */
static void collect(struct eng_matcher *m)
{
	struct shm_jdir d;
	struct shmex_error e = {0};
	if (shm_jdir_list(&d, m->shard_dir, &e) != 0)
		return;
	unsigned removed = 0;
	if (d.nsnap >= 2) {
		uint64_t keep = d.snap_last[d.nsnap - 2];
		/* Nor what the audit log has not merged yet (shmex-audit
		 * publishes its progress in DIR/audit.pos). */
		uint64_t audited;
		if (shm_jaudit_pos_read(m->shard_dir, m->shard, &audited) == 0 &&
		    audited < keep)
			keep = audited;
		for (uint32_t i = 0; i + 2 < d.nsnap; i++)
			removed += unlink(d.snap[i]) == 0;
		for (uint32_t i = 0; i + 1 < d.nseg && d.seg_first[i + 1] <= keep + 1;
		     i++)
			removed += unlink(d.seg[i]) == 0;
	}
	shm_jdir_free(&d);
	if (removed && shm_journal_sync_dir(m->shard_dir) != 0)
		logm(m, "fsync %s after removing old files: %s", m->shard_dir,
		     strerror(errno));
}

/*
 * Writes a snapshot when one is due (snapshot_mb of journal since the
 * last one) or at stop, at a point where the shard's state is exactly
 * what its journal says: everything appended durable, every credit
 * applied, no reply waiting.  Otherwise it tries again later.  A failure
 * is logged and costs nothing but disk: the journal still has it all.
 */
static void maybe_snapshot(struct eng_matcher *m, bool at_stop)
{
	if (!m->journal || m->refusing || m->st.journal_failed || m->jlast == m->snap_seq)
		return;
	struct eng_journal_stats js;
	eng_journal_get_stats(m->journal, &js);
	uint64_t due = m->set.snapshot_mb << 20;
	if (!at_stop && (due == 0 || js.bytes - m->snap_bytes < due))
		return;
	struct shmex_error e = {0};
	if (eng_journal_flush(m->journal, &e) != 0)
		return; /* journal_health reports it */
	if (commit(m) || eng_cash_pending(m->cash))
		return;
	uint64_t t0 = shm_clock_ns(CLOCK_MONOTONIC);
	struct eng_snapshot_matcher ms = {
		.last_time_ns = m->last_time_ns,
		.incarnation = m->incarnation,
		.seq = m->seq,
		.events = m->events,
		.full_seen = m->full_seen,
		.nsidx = m->bcfg.caps.symbols,
	};
	struct eng_snapshot_in in = {
		.shard = m->shard,
		.nshards = m->nshards,
		.last_seq = m->jlast,
		.matcher = &ms,
		.sidx_of = m->sidx_of,
		.core = m->book,
		.book = shm_region_body(&m->book_region),
		.book_len = eng_core_bytes(&m->bcfg),
		.positions = shm_region_body(&m->positions_reg.region),
		.positions_len = shm_region_body_size(&m->positions_reg.region),
		.ledger = &m->ledger,
	};
	snapshot_caps(m, in.caps);
	/* The history the snapshot's journal records made must be on disk
	 * before those records may go (collect). */
	if (m->hist && eng_history_sync(m->hist, &in.history_len, &e) != 0) {
		logm(m, "snapshot not written (the journal still has everything): %s",
		     e.msg);
		return;
	}
	char path[SHM_JOURNAL_PATH_MAX];
	int rc = eng_snapshot_write(m->shard_dir, &in, path, &e);
	m->snap_bytes = js.bytes;
	if (rc) {
		logm(m, "snapshot not written (the journal still has everything): %s",
		     shmex_error_msg(&e, rc));
		return;
	}
	m->snap_seq = m->jlast;
	m->st.snapshots++;
	m->st.snapshot_ns = shm_clock_ns(CLOCK_MONOTONIC) - t0;
	if (m->verbose)
		logm(m, "snapshot of records 1..%" PRIu64 " written in %.3f s: %s",
		     m->jlast, (double)m->st.snapshot_ns / 1e9, path);
	collect(m);
}

/* Rounds between two looks at whether a snapshot is due. */
#define SNAP_TICK 256u

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

/* Our part in the repair of gateway g's rings (the top of the file). */
static void repair_path(struct eng_matcher *m, uint32_t g)
{
	enum shm_ring_repair rq = shm_ring_repair_state(&m->req[g]);
	enum shm_ring_repair rp = shm_ring_repair_state(&m->rep[g]);
	if (rq == SHM_RING_QUIESCE || rp == SHM_RING_QUIESCE) {
		if (!m->paused[g]) {
			m->paused[g] = true;
			m->repair_taken[g] = shm_ring_consumed(&m->req[g]);
			if (!m->quiet)
				logm(m,
				     "rings of gateway %u: repair begins; %" PRIu64
				     " requests taken, %u replies kept",
				     g, m->repair_taken[g], m->outq[g].n);
		}
		/* RNG11 inside: after our last use of each ring. */
		if (rq == SHM_RING_QUIESCE)
			shm_ring_ack(&m->req[g], SHM_RING_CONSUMER);
		if (rp == SHM_RING_QUIESCE)
			shm_ring_ack(&m->rep[g], SHM_RING_PRODUCER);
	}
	if (rq == SHM_RING_RESET) {
		if (shm_ring_resume(&m->req[g]) == 0)
			m->ring_bad[g] = false;
		else
			ring_damaged(m, g, true);
	}
	if (rp == SHM_RING_RESET) {
		if (shm_ring_resume(&m->rep[g]) == 0)
			m->rep_bad[g] = false;
		else
			ring_damaged(m, g, false);
	}
	if (!m->paused[g] || rq == SHM_RING_QUIESCE || rp == SHM_RING_QUIESCE ||
	    shm_ring_repair_state(&m->req[g]) == SHM_RING_QUIESCE ||
	    shm_ring_repair_state(&m->rep[g]) == SHM_RING_QUIESCE)
		return;
	/* Both rings are in their new generation: the notice goes behind
	 * every reply we owe gateway g (tag jlast: after all of them). */
	m->paused[g] = false;
	m->st.ring_repairs++;
	struct shm_msg mk;
	memset(&mk, 0, sizeof(mk));
	mk.type = SHM_MSG_REPAIR;
	mk.req_type = SHM_MSG_REPAIR;
	mk.req_id = m->req[g].gen;
	mk.order_id = m->repair_taken[g];
	if (outq_push(&m->outq[g], &mk, m->jlast) != 0)
		internal_error(m, "queueing a repair notice", -ENOMEM, 0);
	if (!m->quiet)
		logm(m,
		     "rings of gateway %u repaired (generation %u); taking requests "
		     "again",
		     g, m->req[g].gen);
}

/* Once per loop turn: one acquire of ring_repairs [INS7, pairs with the
 * supervisor's INS6]; the rings' states only when it moved. */
static void repair_check(struct eng_matcher *m)
{
	uint32_t seq = shm_instance_ring_repairs(&m->inst);
	if (seq == m->repairs_seen)
		return;
	m->repairs_seen = seq;
	for (uint32_t g = 0; g < m->ngateways; g++)
		repair_path(m, g);
}

int eng_matcher_run(struct eng_matcher *m)
{
	uint32_t park_ms = 1;
	uint32_t spin = m->spin_ns;
	for (;;) {
		/* A clean point: every cash step applied and in the ledger. */
		if (eng_recover_freeze_point(&m->inst, &m->ledger, m->shard, &m->stop))
			m->st.freezes++;
		journal_health(m);
		if (stop_requested(m))
			break;
		repair_check(m);
		unsigned n = round_once(m);
		bool waiting = commit(m);
		if (m->snap_tick-- == 0) {
			m->snap_tick = SNAP_TICK;
			maybe_snapshot(m, false);
		}
		if (n) {
			m->st.rounds++;
			reclaim(m, true);
			park_ms = 1;
			continue;
		}
		publish_idle_time(m);
		/* Replies that wait for the journal: the writer rings our
		 * doorbell when they are durable.  Replies that wait for
		 * room: a short timeout (gateways do not ring us). */
		bool for_room = waiting && m->durable_seq >= m->jlast;
		int timeout = (int)(for_room ? park_ms : waiting ? 5 : m->idle_ms);
		if (m->refusing && timeout > (int)REFUSE_RETRY_MS)
			timeout = REFUSE_RETRY_MS;
		/* Relaxed: a statistic of which we are the only writer. */
		uint64_t sleeps0 = load_relaxed(&m->db->sleeps);
		/* MT6: Dekker sleep [DB1/DB2]: `ready` re-reads every ring's
		 * head [RNG2], the journal's durable sequence [JR2], the
		 * freeze [FZ3] and the stop flags after the announcement,
		 * and every producer (and the journal writer) rings after
		 * publishing [RNG1, DB4]. */
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
			if (for_room && park_ms < m->idle_ms)
				park_ms *= 2;
		} else if (rc && rc != -EINTR) {
			logm(m, "waiting on the shard doorbell: %s", shmex_strerror(rc));
			return rc;
		}
	}
	drain(m);
	maybe_snapshot(m, true);
	return m->st.journal_failed ? SHMEX_EJOURNAL : 0;
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
	st->internal += eng_cash_internal_errors(m->cash);
}

/* ------------------------------------------------------------------ */
/* The journal                                                         */

/* Opens the writer at the next sequence and writes the START record.
 * On failure the matcher refuses orders (and tries again later). */
static int journal_start(struct eng_matcher *m)
{
	struct eng_journal_cfg jc = {
		.shard_dir = m->shard_dir,
		.shard = m->shard,
		.nshards = m->nshards,
		.sync = m->set.sync == 0,
		.segment_bytes = m->set.segment_mb << 20,
		.next_seq = m->jlast + 1,
		.wake = m->db,
	};
	struct shmex_error e = {0};
	int rc = eng_journal_open(&m->journal, &jc, &e);
	if (!rc) {
		struct shm_jrec r;
		rec_init(&r, SHM_JREC_START);
		r.u.start.incarnation = m->incarnation + 1;
		r.u.start.pid = (int32_t)getpid();
		r.u.start.nshards = m->nshards;
		r.u.start.recovered = m->jlast;
		uint64_t now = shm_clock_ns(CLOCK_REALTIME);
		m->now_ns = now > m->last_time_ns ? now : m->last_time_ns;
		m->last_time_ns = m->now_ns;
		jput(m, &r);
		eng_journal_mark_end(m->journal);
		rc = eng_journal_flush(m->journal, &e);
		if (rc) {
			eng_journal_close(m->journal);
			m->journal = NULL;
		}
	}
	if (rc) {
		if (!m->refusing)
			logm(m,
			     "the journal cannot be written (%s): no order is accepted "
			     "until it can",
			     shmex_error_msg(&e, rc));
		m->jerr = e;
		m->refusing = true;
		m->refuse_retry_ns = shm_clock_ns(CLOCK_MONOTONIC) +
				     (uint64_t)REFUSE_RETRY_MS * 1000000u;
		return rc;
	}
	if (m->refusing)
		logm(m, "the journal can be written again: accepting orders");
	m->refusing = false;
	m->durable_seq = m->jlast;
	return 0;
}

static void journal_health(struct eng_matcher *m)
{
	if (m->journal && !m->st.journal_failed &&
	    eng_journal_error(m->journal, &m->jerr) != 0) {
		m->st.journal_failed = 1;
		journal_failed(m);
		return;
	}
	if (m->refusing && shm_clock_ns(CLOCK_MONOTONIC) >= m->refuse_retry_ns)
		(void)journal_start(m);
}

/* ------------------------------------------------------------------ */
/* Replay                                                              */

/* Truncates `path` at `off` (a torn tail, or a cut asked for), syncing. */
static int cut_file(struct eng_matcher *m, const char *path, off_t off,
		    struct shmex_error *e)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || ftruncate(fd, off) != 0 || fdatasync(fd) != 0) {
		int rc = -errno;
		if (fd >= 0)
			close(fd);
		return shmex_error_set(e, rc, "truncating %s: %s", path, strerror(-rc));
	}
	close(fd);
	return 0;
}

/* Removes the segments after `path` (they follow a cut). */
static int drop_after(struct eng_matcher *m, const char *path, struct shmex_error *e)
{
	const struct shm_jdir *d = &m->rd.dir;
	bool after = false;
	for (uint32_t i = 0; i < d->nseg; i++) {
		if (after) {
			logm(m, "removing %s (after the cut)", d->seg[i]);
			if (unlink(d->seg[i]) != 0)
				return shmex_error_set(e, -errno, "unlink %s: %s",
						       d->seg[i], strerror(errno));
		}
		if (strcmp(d->seg[i], path) == 0)
			after = true;
	}
	return 0;
}

/* Replays the side-effect records (no request behind them). */
static int replay_side_effect(struct eng_matcher *m, const struct shm_jrec *r)
{
	switch (r->h.type) {
	case SHM_JREC_START:
		m->incarnation = r->u.start.incarnation;
		return 0;
	case SHM_JREC_SYMBOL: {
		uint32_t bsym;
		size_t len = shm_symbol_unpack_len(r->u.symbol.symbol);
		if (!len ||
		    eng_core_symbol_add(m->book, r->u.symbol.symbol, len, &bsym) != 0)
			return SHMEX_ERECOVERY;
		return 0;
	}
	case SHM_JREC_POSITION: {
		uint32_t bsym, sidx, pidx;
		size_t len = shm_symbol_unpack_len(r->u.position.symbol);
		if (!len ||
		    eng_core_symbol_find(m->book, r->u.position.symbol, len, &bsym) ||
		    (sidx = sidx_of_sym(m, bsym)) == NO_SIDX ||
		    shm_positions_ensure(&m->positions_reg, r->u.position.account, sidx,
					 &pidx) != 0)
			return SHMEX_ERECOVERY;
		return 0;
	}
	case SHM_JREC_RECYCLE:
		return eng_core_recycle(m->book, r->u.recycle.count) == r->u.recycle.count
			       ? 0
			       : SHMEX_ERECOVERY;
	default:
		return SHMEX_ERECOVERY;
	}
}

/* The request a request record stands for. */
static bool request_of(const struct shm_jrec *r, struct shm_msg *q, uint32_t *g,
		       uint64_t *pos)
{
	memset(q, 0, sizeof(*q));
	const struct shm_jrec_origin *o;
	switch (r->h.type) {
	case SHM_JREC_ACCOUNT:
		q->type = SHM_MSG_CREATE_ACCOUNT;
		q->account = r->u.account.account;
		shm_msg_set_balance(q, shm_jrec_balance(&r->u.account));
		o = &r->u.account.o;
		break;
	case SHM_JREC_SHARES:
		q->type = SHM_MSG_ADD_SHARES;
		q->account = r->u.shares.account;
		q->qty = r->u.shares.qty;
		memcpy(q->u.symbol, r->u.shares.symbol, 16);
		o = &r->u.shares.o;
		break;
	case SHM_JREC_ORDER:
		q->type = SHM_MSG_ORDER;
		q->account = r->u.order.account;
		q->price = r->u.order.price;
		q->qty = r->u.order.qty;
		q->side = r->u.order.side;
		q->tif = r->u.order.tif;
		q->flags = r->u.order.flags;
		memcpy(q->u.symbol, r->u.order.symbol, 16);
		o = &r->u.order.o;
		break;
	case SHM_JREC_CANCEL:
		q->type = SHM_MSG_CANCEL;
		q->account = r->u.cancel.account;
		q->order_id = r->u.cancel.order_id;
		o = &r->u.cancel.o;
		break;
	case SHM_JREC_MODIFY:
		q->type = SHM_MSG_MODIFY;
		q->account = r->u.modify.account;
		q->order_id = r->u.modify.order_id;
		q->price = r->u.modify.price;
		q->qty = r->u.modify.qty;
		o = &r->u.modify.o;
		break;
	default:
		return false;
	}
	q->req_id = o->req_id;
	*g = o->gateway;
	*pos = o->ring_pos;
	return true;
}

static int group_push(struct group *g, const struct shm_jrec *r)
{
	if (g->n == g->cap) {
		size_t cap = g->cap ? 2 * g->cap : 64;
		struct shm_jrec *nr = eng_alloc_realloc(g->r, cap * sizeof(*nr));
		if (!nr)
			return -ENOMEM;
		g->r = nr;
		g->cap = cap;
	}
	g->r[g->n++] = *r;
	return 0;
}

/* Applies one complete group (a request and what it did, or a side
 * effect); the replies of requests the predecessor may not have answered
 * are queued for sending again. */
static int replay_group(struct eng_matcher *m)
{
	struct group *gp = &m->grp;
	const struct shm_jrec *first = &gp->r[0];
	m->now_ns = first->h.time_ns;
	m->last_time_ns = first->h.time_ns;
	struct shm_msg q;
	uint32_t g;
	uint64_t pos;
	if (!request_of(first, &q, &g, &pos)) {
		if (gp->n != 1)
			return shmex_error_set(
				&m->replay_err, SHMEX_ERECOVERY,
				"record %" PRIu64 " (%s) starts a group of %zu records",
				first->h.seq, shm_jrec_type_name(first->h.type), gp->n);
		int rc = replay_side_effect(m, first);
		m->jlast = first->h.seq;
		if (rc)
			return shmex_error_set(&m->replay_err, rc,
					       "record %" PRIu64 " (%s) "
					       "cannot be replayed",
					       first->h.seq,
					       shm_jrec_type_name(first->h.type));
		return 0;
	}
	gp->next = 0;
	m->replay_rc = 0;
	struct shm_msg rep;
	apply(m, &q, &rep, g, pos);
	/* Everything is reusable at once: no reader sees this book yet. */
	eng_core_reclaim(m->book, UINT64_MAX);
	if (m->replay_rc)
		return m->replay_rc;
	if (rep.status != 0)
		return shmex_error_set(&m->replay_err, SHMEX_ERECOVERY,
				       "record %" PRIu64 " (%s)"
				       " was rejected on replay: %s",
				       first->h.seq, shm_jrec_type_name(first->h.type),
				       shmex_strerror(rep.status));
	if (gp->next != gp->n)
		return shmex_error_set(&m->replay_err, SHMEX_ERECOVERY,
				       "record %" PRIu64 " (%s):"
				       " the journal has %zu records for it, the replay "
				       "produced %zu",
				       first->h.seq, shm_jrec_type_name(first->h.type),
				       gp->n, gp->next);
	if (m->restarted && g < m->ngateways && m->jlast > m->resend_after[g] &&
	    outq_push(&m->outq[g], &rep, 0) != 0)
		return shmex_error_set(&m->replay_err, -ENOMEM, "out of memory");
	return 0;
}

/* Loads the snapshot at path into the fresh book, positions and replay
 * part, or changes nothing and says why. */
static int load_snapshot(struct eng_matcher *m, const char *path, struct shmex_error *e)
{
	struct eng_snapshot s;
	int rc = eng_snapshot_open(&s, path, e);
	if (rc)
		return rc;
	const struct shm_jsnap_hdr *h = s.hdr;
	uint64_t caps[8];
	snapshot_caps(m, caps);
	void *book = shm_region_body(&m->book_region);
	size_t blen = eng_core_bytes(&m->bcfg);
	void *pos = shm_region_body(&m->positions_reg.region);
	size_t plen = shm_region_body_size(&m->positions_reg.region);
	if (h->shard != m->shard || h->nshards != m->nshards)
		rc = shmex_error_set(e, SHMEX_ERECOVERY, "%s is of shard %u of %u", path,
				     h->shard, h->nshards);
	else if (h->signature != shm_layout_signature())
		rc = shmex_error_set(e, SHMEX_ERECOVERY,
				     "%s was written by a build with another layout",
				     path);
	else if (memcmp(h->caps, caps, sizeof(caps)) != 0)
		rc = shmex_error_set(
			e, SHMEX_ERECOVERY,
			"%s was taken with other capacities (--orders %" PRIu64
			" --levels %" PRIu64 " --fills %" PRIu64 " --symbols %" PRIu64
			" --positions %" PRIu64 " --accounts %" PRIu64 ")",
			path, h->caps[0], h->caps[1], h->caps[2], h->caps[3], h->caps[4],
			h->caps[5]);
	else if (s.matcher->nsidx != m->bcfg.caps.symbols ||
		 eng_snapshot_pages(&s, SHM_JSNAP_BOOK, book, blen, false) != 0 ||
		 eng_snapshot_pages(&s, SHM_JSNAP_POSITIONS, pos, plen, false) != 0 ||
		 s.nparts > m->accounts.capacity || h->last_seq == 0)
		rc = shmex_error_set(e, SHMEX_EJCORRUPT,
				     "%s: its contents do not fit this shard", path);
	for (uint32_t i = 0; !rc && i < s.matcher->nsidx; i++)
		if (s.sidx_of[i] != NO_SIDX && s.sidx_of[i] >= m->positions_reg.sym_slots)
			rc = shmex_error_set(
				e, SHMEX_EJCORRUPT,
				"%s: symbol %u maps to positions symbol slot %u of %u",
				path, i, s.sidx_of[i], m->positions_reg.sym_slots);
	if (rc) {
		eng_snapshot_close(&s);
		return rc;
	}
	/* The geometry (lines 0-1 of the body header) is the one this
	 * matcher laid out for its capacities; readers trust it, so the saved
	 * one must be the same byte for byte. */
	unsigned char geo[2 * SHM_CACHE_LINE];
	memcpy(geo, book, sizeof(geo));
	rc = eng_snapshot_pages(&s, SHM_JSNAP_BOOK, book, blen, true);
	if (!rc && memcmp(geo, book, sizeof(geo)) != 0)
		rc = SHMEX_EJCORRUPT;
	char why[160] = "";
	if (!rc)
		rc = eng_core_load(m->book, s.sect[SHM_JSNAP_CORE],
				   s.sect_len[SHM_JSNAP_CORE], why, sizeof(why));
	if (!rc && eng_core_events(m->book) != s.matcher->events)
		rc = SHMEX_EJCORRUPT;
	if (rc) {
		/* Lay the book out afresh: nothing of the snapshot stays. */
		eng_core_destroy(m->book);
		m->book = NULL;
		int rc2 = eng_core_init(&m->book, book,
					shm_region_body_size(&m->book_region), &m->bcfg,
					on_event, m);
		if (!rc2)
			eng_core_set_recycle_hook(m->book, on_recycle, m);
		eng_snapshot_close(&s);
		if (rc2)
			return shmex_error_set(e, rc2, "laying out the book again: %s",
					       shmex_strerror(rc2));
		if (rc == -ENOMEM)
			return shmex_error_set(e, rc, "%s: checking its book: %s", path,
					       why[0] ? why : "out of memory");
		if (why[0])
			return shmex_error_set(e, SHMEX_EJCORRUPT,
					       "%s: the book it holds is not whole: %s",
					       path, why);
		return shmex_error_set(
			e, SHMEX_EJCORRUPT,
			"%s: its book geometry, core section or event count "
			"does not match",
			path);
	}
	rc = eng_snapshot_pages(&s, SHM_JSNAP_POSITIONS, pos, plen, true);
	for (uint64_t i = 0; i < s.nparts && !rc; i++)
		rc = eng_cash_load_part(m->cash, &s.parts[i]);
	if (rc) {
		eng_snapshot_close(&s);
		return shmex_error_set(e, rc, "loading %s: %s", path, shmex_strerror(rc));
	}
	const struct eng_snapshot_matcher *mt = s.matcher;
	memcpy(m->sidx_of, s.sidx_of, (size_t)mt->nsidx * sizeof(uint32_t));
	m->jlast = h->last_seq;
	m->snap_seq = h->last_seq;
	m->last_time_ns = mt->last_time_ns;
	m->incarnation = mt->incarnation;
	m->seq = mt->seq;
	m->events = mt->events;
	m->full_seen = mt->full_seen;
	m->st.snapshot_seq = h->last_seq;
	m->hist_from = h->history_len;
	eng_snapshot_close(&s);
	return 0;
}

/* A snapshot-*.snap.tmp is one a matcher was killed while writing: it was
 * never renamed, so nothing relies on it. */
static void remove_unfinished_snapshots(struct eng_matcher *m)
{
	DIR *d = opendir(m->shard_dir);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		size_t n = strlen(de->d_name);
		if (strncmp(de->d_name, "snapshot-", 9) != 0 || n < 9 + 9 ||
		    strcmp(de->d_name + n - 9, ".snap.tmp") != 0)
			continue;
		char p[SHM_JOURNAL_PATH_MAX + 256];
		snprintf(p, sizeof(p), "%s/%s", m->shard_dir, de->d_name);
		if (unlink(p) == 0 && !m->quiet)
			logm(m, "removed %s (a snapshot its writer did not finish)", p);
	}
	closedir(d);
}

/*
 * The newest snapshot that loads; *from = the first journal record after
 * it (1 when there is none).  A snapshot that does not load is said and
 * skipped for an older one (or the whole journal); only running out of
 * memory, or a book that cannot be laid out again, is an error.
 */
static int start_from_snapshot(struct eng_matcher *m, uint64_t *from,
			       struct shmex_error *e)
{
	*from = 1;
	remove_unfinished_snapshots(m);
	struct shm_jdir d;
	struct shmex_error le = {0};
	int rc = shm_jdir_list(&d, m->shard_dir, &le);
	if (rc)
		return rc == -ENOENT ? 0 : (*e = le, rc);
	for (uint32_t i = d.nsnap; i-- > 0;) {
		rc = load_snapshot(m, d.snap[i], &le);
		if (rc == 0) {
			*from = d.snap_last[i] + 1;
			if (!m->quiet)
				logm(m, "recovering from %s (records 1..%" PRIu64 ")",
				     d.snap[i], d.snap_last[i]);
			break;
		}
		if (rc == -ENOMEM || !m->book) {
			*e = le;
			break;
		}
		logm(m, "%s; recovering from %s instead", le.msg,
		     i ? "an older snapshot" : "the journal alone");
		rc = 0;
	}
	shm_jdir_free(&d);
	return rc;
}

/* Opens the shard's order history and keeps what the snapshot covers;
 * the replay appends the rest again. */
static int history_start(struct eng_matcher *m, struct shmex_error *e)
{
	if (!m->hist) {
		int rc = eng_history_open(&m->hist, m->shard_dir, m->shard, m->nshards,
					  m->bcfg.caps.orders, e);
		if (rc)
			return rc;
	}
	struct shmex_error warn = {0};
	int rc = eng_history_reset(m->hist, m->hist_from, &warn, e);
	if (!rc && warn.code)
		logm(m, "%s", warn.msg);
	return rc;
}

/* Replays the shard's journal into the fresh book, positions and part. */
static int replay(struct eng_matcher *m, struct shmex_error *e)
{
	struct shmex_error le = {0};
	int rc = shm_journal_mkdirs(m->shard_dir, &le);
	if (rc) {
		if (e)
			*e = le;
		return rc;
	}
	uint64_t from;
	m->hist_from = 0;
	rc = start_from_snapshot(m, &from, &le);
	if (!rc)
		rc = history_start(m, &le);
	if (rc) {
		if (e)
			*e = le;
		return rc;
	}
	rc = shm_jreader_open(&m->rd, m->shard_dir, m->shard, m->nshards, from, &le);
	if (rc) {
		if (e)
			*e = le;
		return rc;
	}
	m->replaying = true;
	uint64_t t0 = shm_clock_ns(CLOCK_MONOTONIC), next_progress = t0 + PROGRESS_NS;
	uint64_t records = 0, groups = 0;
	struct shm_jrec r;
	struct group *gp = &m->grp;
	gp->n = 0;
	for (;;) {
		if (gp->n == 0) {
			snprintf(gp->start_path, sizeof(gp->start_path), "%s",
				 m->rd.good_path);
			gp->start_off = m->rd.good_end;
		}
		rc = shm_jreader_next(&m->rd, &r, &le);
		if (rc != 1)
			break;
		records++;
		if (group_push(gp, &r) != 0) {
			rc = shmex_error_set(&le, -ENOMEM, "out of memory");
			break;
		}
		if (!(r.h.flags & SHM_JREC_END))
			continue;
		rc = replay_group(m);
		if (rc) {
			le = m->replay_err;
			break;
		}
		gp->n = 0;
		groups++;
		uint64_t now = shm_clock_ns(CLOCK_MONOTONIC);
		if (now >= next_progress && !m->quiet) {
			logm(m, "recovering: %" PRIu64 " records replayed (%.1f M/s)",
			     records, (double)records * 1e3 / (double)(now - t0));
			next_progress = now + PROGRESS_NS;
		}
	}
	bool cut = false;
	if (rc == 0 && gp->n) {
		/* The journal ends inside a group: its writer died writing
		 * it.  Nothing of it was acknowledged. */
		logm(m,
		     "%s: the last request's records are incomplete (a torn write): "
		     "cutting the journal at byte %jd",
		     gp->start_path, (intmax_t)gp->start_off);
		cut = true;
	} else if (rc == SHMEX_EJTORN) {
		logm(m, "%s; cutting it off at byte %jd", le.msg,
		     (intmax_t)(gp->n ? gp->start_off : m->rd.good_end));
		cut = true;
		rc = 0;
	} else if (rc == SHMEX_EJCORRUPT && m->set.truncate_corrupt) {
		logm(m,
		     "%s; --truncate-corrupt: starting from the last good record "
		     "before it",
		     le.msg);
		cut = true;
		rc = 0;
	}
	if (cut) {
		const char *path = gp->n ? gp->start_path : m->rd.good_path;
		off_t off = gp->n ? gp->start_off : m->rd.good_end;
		rc = cut_file(m, path, off, &le);
		if (!rc)
			rc = drop_after(m, path, &le);
	}
	m->replaying = false;
	shm_jreader_close(&m->rd);
	history_flush(m);
	if (rc) {
		if (e)
			*e = le;
		return shmex_error_wrap(e, rc, "recovering shard %u from %s", m->shard,
					m->shard_dir);
	}
	m->st.recovered_records = records;
	uint64_t ns = shm_clock_ns(CLOCK_MONOTONIC) - t0;
	m->st.recovery_ns = ns;
	if (records && !m->quiet)
		logm(m, "recovered %" PRIu64 " records (%" PRIu64 " requests) in %.3f s",
		     records, groups, (double)ns / 1e9);
	return 0;
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
	char dir[SHM_DATA_DIR_MAX];
	memcpy(dir, obs.data_dir, sizeof(dir));
	shm_instance_detach(&obs);
	if (m->shard >= m->nshards)
		return shmex_error_set(
			err, SHMEX_EBADINDEX,
			"shard %u is out of range: instance %s has %u shard%s", m->shard,
			m->instance, m->nshards, m->nshards == 1 ? "" : "s");
	m->journaling = dir[0] != 0 && m->set.no_journal == 0;
	if (m->journaling &&
	    shm_journal_shard_dir(m->shard_dir, sizeof(m->shard_dir), dir, m->shard) != 0)
		return shmex_error_set(err, -ENAMETOOLONG, "data directory %s: too long",
				       dir);
	/* In range: shm_settings_load validated every row. */
	const struct shm_settings *st = &m->set;
	m->bcfg.caps.orders = (uint32_t)st->orders;
	m->bcfg.caps.levels = (uint32_t)st->levels;
	m->bcfg.caps.fills = (uint32_t)st->fills;
	m->bcfg.caps.symbols = (uint32_t)st->symbols;
	m->positions = (uint32_t)st->positions;
	m->nreaders = (uint32_t)st->readers;
	m->batch = (uint32_t)st->batch;
	m->done_window = (uint32_t)st->done_window;
	m->spin_ns = (uint32_t)st->matcher_spin_us * 1000u;
	m->idle_ms = (uint32_t)st->idle_ms;
	m->drain_ms = (uint32_t)st->drain_ms;
	m->verbose = st->verbose != 0;
	m->quiet = st->quiet != 0;
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
	m->req = eng_alloc_calloc(g, sizeof(*m->req));
	m->rep = eng_alloc_calloc(g, sizeof(*m->rep));
	m->ring_bad = eng_alloc_calloc(g, sizeof(bool));
	m->rep_bad = eng_alloc_calloc(g, sizeof(bool));
	m->paused = eng_alloc_calloc(g, sizeof(bool));
	m->repair_taken = eng_alloc_calloc(g, sizeof(uint64_t));
	/* The first turn looks at every ring (one may be under repair). */
	m->repairs_seen = UINT32_MAX;
	m->in = eng_alloc_calloc(b, sizeof(*m->in));
	m->outq = eng_alloc_calloc(g, sizeof(*m->outq));
	m->sidx_of = eng_alloc_malloc((size_t)m->bcfg.caps.symbols * sizeof(uint32_t));
	if (!m->req || !m->rep || !m->ring_bad || !m->rep_bad || !m->paused ||
	    !m->repair_taken || !m->in || !m->outq || !m->sidx_of)
		return -ENOMEM;
	for (uint32_t i = 0; i < m->bcfg.caps.symbols; i++)
		m->sidx_of[i] = NO_SIDX;
	return 0;
}

static void free_private(struct eng_matcher *m)
{
	eng_alloc_free(m->req);
	eng_alloc_free(m->rep);
	eng_alloc_free(m->ring_bad);
	eng_alloc_free(m->rep_bad);
	eng_alloc_free(m->paused);
	eng_alloc_free(m->repair_taken);
	eng_alloc_free(m->in);
	if (m->outq)
		for (uint32_t g = 0; g < m->ngateways; g++)
			eng_alloc_free(m->outq[g].v);
	eng_alloc_free(m->outq);
	eng_alloc_free(m->sidx_of);
	eng_alloc_free(m->marks);
	eng_alloc_free(m->grp.r);
}

/* Steps 3-5: the regions (the book laid out, not yet published). */
static int create_regions(struct eng_matcher *m, struct shmex_error *err)
{
	int rc = shm_accounts_attach(&m->accounts, m->instance, SHM_RDWR);
	if (rc) {
		if (err)
			*err = m->accounts.region.err;
		return rc;
	}
	m->accounts_ok = true;
	rc = shm_ledger_attach(&m->ledger, m->instance, m->shard, SHM_RDWR);
	if (rc) {
		if (err)
			*err = m->ledger.region.err;
		return rc;
	}
	m->ledger_ok = true;

	rc = shm_positions_create(&m->positions_reg, m->instance, m->shard,
				  m->bcfg.caps.symbols, m->positions, 0640);
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
	eng_core_set_recycle_hook(m->book, on_recycle, m);

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
		/* A damaged ring is attached all the same and reported: it is
		 * repaired with us, never a reason not to start. */
		rc = shm_instance_request_ring(&m->inst, g, m->shard, &m->req[g]);
		if (rc == SHMEX_ERINGCORRUPT) {
			m->ring_bad[g] = true;
			ring_damaged(m, g, true);
			rc = 0;
		}
		if (!rc)
			rc = shm_instance_reply_ring(&m->inst, m->shard, g, &m->rep[g]);
		if (rc == SHMEX_ERINGCORRUPT) {
			m->rep_bad[g] = true;
			ring_damaged(m, g, false);
			rc = 0;
		}
		if (rc)
			return shmex_error_set(err, rc,
					       "rings of gateway %u in "
					       "/shmex.%s.rings: %s",
					       g, m->instance, shmex_strerror(rc));
	}
	return 0;
}

/* Step 6: the shard's state from its journal, and its cash back. */
static int recover(struct eng_matcher *m, struct shmex_error *err)
{
	/* LG4: acquire; pairs with a predecessor's LG3. */
	uint64_t prev = load_acquire(&m->ledger.hdr->incarnation);
	m->restarted = prev > 0;
	if (m->restarted && !m->journaling)
		return shmex_error_set(err, SHMEX_ERECOVERY,
				       "shard %u restarts, but the exchange runs "
				       "without a journal: its state is lost",
				       m->shard);
	for (uint32_t g = 0; g < m->ngateways; g++) {
		/* LG8: acquire; pairs with the predecessor's LG7. */
		m->resend_after[g] = load_acquire(&m->ledger.hdr->replied[g]);
		m->consumed_at_start[g] = shm_ring_consumed(&m->req[g]);
	}
	int rc = eng_cash_open(&m->cash, NULL, NULL);
	if (rc)
		return shmex_error_set(err, rc, "out of memory");
	m->acct.cash = m->cash;
	if (m->journaling) {
		rc = replay(m, err);
		if (rc)
			return rc;
	}
	struct eng_recover_in in = {
		.inst = &m->inst,
		.accounts = &m->accounts,
		.ledger = &m->ledger,
		.parts = m->cash,
		.shard = m->shard,
		.nshards = m->nshards,
		.timeout_ms = RECOVER_TIMEOUT_MS,
	};
	struct eng_recover_stats rs;
	rc = m->restarted ? eng_recover_restart(&in, &rs, err)
			  : eng_recover_full(&in, &rs, err);
	if (rc)
		return rc;
	if (m->restarted && !m->quiet)
		logm(m,
		     "cash of shard %u back: %" PRIu64 " accounts corrected, %" PRIu64
		     " creations abandoned, others paused %.3f ms",
		     m->shard, rs.corrected, rs.abandoned, (double)rs.freeze_ns / 1e6);
	/* From now on cash is live. */
	eng_cash_close(m->cash);
	m->cash = NULL;
	rc = eng_cash_open(&m->cash, &m->accounts, &m->ledger);
	if (rc)
		return shmex_error_set(err, rc, "out of memory");
	m->acct.cash = m->cash;
	if (m->journaling)
		(void)journal_start(m); /* refusing, when it cannot */
	m->durable_seq = m->jlast;
	m->durable_event = m->events;
	m->durable_time_ns = m->last_time_ns;
	return 0;
}

/* After publication: a restarted matcher answers again what its
 * predecessor journaled, then says where it stopped taking requests. */
static void restart_markers(struct eng_matcher *m)
{
	if (!m->restarted)
		return;
	for (uint32_t g = 0; g < m->ngateways; g++) {
		struct shm_msg mk;
		memset(&mk, 0, sizeof(mk));
		mk.type = SHM_MSG_RESTART;
		mk.req_type = SHM_MSG_RESTART;
		mk.req_id = m->incarnation;
		mk.order_id = m->consumed_at_start[g];
		if (outq_push(&m->outq[g], &mk, 0) != 0)
			internal_error(m, "queueing a restart notice", -ENOMEM, 0);
	}
}

static void detach_all(struct eng_matcher *m)
{
	if (m->journal)
		eng_journal_close(m->journal);
	m->journal = NULL;
	if (m->hist) {
		history_flush(m);
		eng_history_close(m->hist);
	}
	m->hist = NULL;
	if (m->inst_ok)
		shm_instance_detach(&m->inst);
	m->inst_ok = false;
	if (m->book)
		eng_core_destroy(m->book);
	m->book = NULL;
	eng_cash_close(m->cash);
	m->cash = NULL;
	if (m->book_ok)
		shm_region_detach(&m->book_region);
	if (m->readers_ok)
		shm_rcu_detach(&m->readers);
	if (m->positions_ok)
		shm_positions_detach(&m->positions_reg);
	if (m->ledger_ok)
		shm_ledger_detach(&m->ledger);
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
	struct eng_matcher *m = eng_alloc_calloc(1, sizeof(*m));
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
	if (!rc)
		rc = recover(m, err);
	if (rc)
		goto out_unlink;
	/* Nothing retired yet; start the core's safe epoch at the table's. */
	(void)eng_core_reclaim(m->book, shm_rcu_safe_epoch(&m->readers));
	/* From now on quotes are published once per round (round_once);
	 * recovery published them per request. */
	eng_core_set_batched(m->book, true);
	store_release(&eng_core_view(m->book)->hdr->durable_event, m->events); /* BK9 */
	store_release(&eng_core_view(m->book)->hdr->durable_time_ns,
		      m->durable_time_ns); /* BK11 */
	/* MT1: release store of the book region's state [R0], the last step
	 * of startup and the readiness signal: the supervisor's attach [A0]
	 * then sees the laid-out (recovered) book, and (program order) the
	 * positions and readers regions published before it and our member
	 * slot [INS3]. */
	shm_region_publish(&m->book_region);
	/* LG3: release; pairs with LG4 of a successor. */
	store_release(&m->ledger.hdr->incarnation,
		      load_relaxed(&m->ledger.hdr->incarnation) + 1);
	restart_markers(m);
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
	eng_alloc_free(m);
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
	eng_alloc_free(m);
}

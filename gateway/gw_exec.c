/*
 * gw_exec: request execution for one gateway (see gw_exec.h).
 *
 * Shape.  One job per connection slot (a connection executes one request at
 * a time), reused from request to request so that the parsed request and
 * the reply buffer keep their storage.  A job runs its items in document
 * order until one needs a matcher; it then waits in the send queue of that
 * shard (W_SEND), then for the reply (W_REPLY), and resumes.  The loop turn
 * (gw_exec_poll) drains every reply ring, then flushes every send queue in
 * batches (one ring publication and at most one doorbell per batch).
 *
 * Request ids: req_id = (counter << 16) | slot.  The counter starts at the
 * monotonic clock in ns when the gateway starts and grows by one per
 * message, so a restarted gateway (same rings) never takes a reply meant
 * for its predecessor as its own; a reply is accepted only when its req_id
 * and req_type equal the job's outstanding message, so a reply for a
 * closed connection, or a forged one, is counted and dropped.
 *
 * Queries read the order's record and fills from the shard's book region
 * through the read-side API (shm_snap.h: one reader slot per shard, a
 * read-side section of the shard's reader table and a seqcount snapshot of
 * the order's symbol, every index bounds-checked).  A snapshot that keeps
 * changing is answered "Exchange busy, try again".
 *
 * Waking (GW2 labels, docs/concurrency.md): the helper thread sleeps on the
 * gateway's doorbell only while `armed` [GW2-1/GW2-2]; when a reply ring
 * becomes readable it disarms and writes the eventfd, which the loop
 * watches.  The helper's readiness test reads each reply ring's head and
 * tail from shared memory (acquire) and never touches the loop thread's
 * ring handles.  Lost wake-ups are impossible: the loop re-arms after it
 * drained, and the helper always re-reads the rings (through the
 * doorbell's Dekker protocol) before it sleeps.  Under load the helper is
 * bypassed: while replies are awaited and the loop made progress within
 * spin_ns, gw_exec_poll yields the CPU and asks the loop not to block, so
 * replies are found by polling instead of a futex -> helper -> eventfd
 * chain (see gw_exec_poll); the helper is armed only after spin_ns
 * without progress.
 *
 * Damaged rings (docs/ring.md, "Corruption and repair").  A ring of
 * shard s found inconsistent is reported (shm_ring_report) and logged by
 * name.  The supervisor repairs the two rings of the path with both ends;
 * the gateway's part (repair_path), looked at when the instance's
 * ring_repairs word moves: asked to quiesce, it stops sending to s (items
 * wait in the send queue, and get "busy" after busy_ms as for a full
 * ring), takes the replies the matcher published until the matcher has
 * acknowledged too and the reply ring is empty (or damaged), acknowledges,
 * and touches neither ring until their new generation; then it re-reads
 * them and sends again.  The matcher's SHM_MSG_REPAIR notice comes after
 * every reply it owed (repair_notice): an item of the old generation still
 * waiting then was not executed, except when the reply ring lost replies
 * and the matcher had taken the item: "Outcome unknown".
 *
 * Limits: max_conns jobs; a status with at most the book's fill capacity
 * fills; RX_BATCH replies per dequeue (RX_ROUNDS per shard per turn),
 * SEND_BATCH messages per enqueue.
 */
#include "gateway/gw_exec.h"

#include <errno.h>
#include <inttypes.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "gateway/gw_reply.h"
#include "shm/shm_accounts.h"
#include "shm/shm_atomic.h"
#include "shm/shm_book.h"
#include "shm/shm_error.h"
#include "shm/shm_history.h"
#include "shm/shm_instance.h"
#include "shm/shm_msg.h"
#include "shm/shm_snap.h"
#include "shm/shm_proc.h"
#include "shm/shm_region.h"
#include "shm/shm_ring.h"
#include "shm/shm_clock.h"

#define RX_BATCH 64
#define SEND_BATCH 64
#define RX_ROUNDS 8 /* dequeues per shard per loop turn */
#define Q_NIL UINT32_MAX
/* Streaming: buffered reply bytes above this go to the connection. */
#define STREAM_CHUNK (64u << 10)
/* A job gives the loop back after SLICE_NS (checked every SLICE_ITEMS
 * items) or SLICE_MAX items, whichever comes first. */
#define SLICE_NS 1000000u
#define SLICE_ITEMS 16u
#define SLICE_MAX 1024u
/* The answer deadline is checked this often. */
#define ANSWER_SCAN_NS 50000000u
#define LATE_MAX 64
#define PUBLISH_NS 100000000u

/* Where gateway-to-shard path s is in a repair (docs/ring.md). */
enum path_repair {
	P_IN_USE = 0,   /* normal */
	P_DRAINING = 1, /* quiesce asked: no sends, replies still taken */
	P_ACKED = 2,    /* acknowledged: neither ring is touched */
	P_NOTICE = 3,   /* new generation in use; the matcher's notice due */
};

/* What a parked job waits for: room in its shard's ring (W_SEND), the
 * matcher's reply (W_REPLY), the next loop turn to retry a book read
 * whose snapshot kept changing (W_RETRY), or room on its connection or
 * the end of its time slice (W_OUTPUT). */
enum job_wait { W_NONE = 0, W_SEND, W_REPLY, W_RETRY, W_OUTPUT };

/* An item answered "outcome unknown": its reply, should it still come, is
 * logged with the ref the client was given. */
struct late {
	uint64_t req_id;
	uint64_t account;
	uint8_t type;
};

/* What a query (or a cancel's reply) shows of an order. */
struct status {
	uint64_t account;
	int64_t open;
	int64_t cancelled;
	uint64_t cancel_time_ns;
	uint32_t nfills;
};

struct job {
	bool active;
	bool acct_ok;       /* transactions: the account exists */
	bool busy_fail;     /* a ring item was answered busy: later ones too */
	bool skip_fail;     /* a ring item has no answer: later ones skipped */
	bool stop;          /* drain: answer every item left at once */
	bool cancel_done;   /* the current CANCEL succeeded; its <canceled>
			      * waits for a status read of the order */
	int64_t cancel_qty; /* that cancel's reply: shares and time */
	uint64_t cancel_time_ns;
	uint64_t retry_since; /* first busy read of the current item, 0: none */
	uint8_t wait;         /* enum job_wait */
	struct gw_conn_ref conn;
	uint32_t next;      /* next item to execute */
	uint32_t shard;     /* shard of the outstanding message */
	uint32_t qnext;     /* send-queue link */
	uint64_t since_ns;  /* entered the send queue at */
	uint64_t ring_pos;  /* the outstanding message's request-ring position */
	uint64_t sent_ns;   /* the outstanding message entered the ring at */
	struct shm_msg msg; /* the outstanding message */
	struct gw_xml_req req;
	struct gw_reply reply;
};

struct sendq {
	uint32_t head, tail, n;
};

struct gw_exec {
	uint32_t gateway;   /* this gateway's index */
	uint32_t max_conns; /* from the settings */
	uint32_t busy_ms;
	char instance[SHM_INSTANCE_MAX + 1];
	struct gw_server *srv;
	struct gw_xml_parser *xp;
	struct gw_xml_limits xml;
	struct shm_instance inst;
	bool inst_ok;
	uint32_t nshards;
	struct shm_ring *req_ring;  /* [nshards]: this gateway -> shard */
	struct shm_ring *rep_ring;  /* [nshards]: shard -> this gateway */
	struct shm_doorbell_sh *db; /* this gateway's doorbell */
	struct shm_accounts accts;
	bool accts_ok;
	struct shm_snap *rd;      /* [nshards]: book readers */
	uint8_t *rd_ok;           /* [nshards] */
	struct shm_history *hist; /* [nshards]: finished orders on disk */
	struct job *jobs;         /* [max_conns] */
	struct sendq *q;          /* [nshards] */
	struct sendq retryq;      /* jobs in W_RETRY */
	struct sendq outq;        /* jobs in W_OUTPUT */
	bool framed;              /* replies carry a length line: no streaming */
	size_t max_reply;
	uint64_t answer_ns; /* answer deadline of a sent item */
	uint64_t next_scan; /* next answer-deadline scan */
	struct late late[LATE_MAX];
	uint32_t late_next;
	uint64_t next_publish; /* counters to the member slot, ns */
	struct shm_gateway_counters published;
	uint8_t *ring_bad;     /* [nshards]: corruption logged (bit 0
				       * request ring, bit 1 reply ring) */
	uint8_t *path;         /* [nshards]: enum path_repair */
	uint8_t *path_lost;    /* [nshards]: the repair lost replies */
	uint64_t *path_base;   /* [nshards]: first position of the new generation */
	uint32_t repairs_seen; /* the instance's ring_repairs, loop's last look */
	/* The helper's last look at ring_repairs (helper thread only). */
	uint32_t helper_repairs;
	uint32_t nactive;
	uint32_t nwaiting; /* jobs in W_REPLY */
	uint64_t next_id;
	struct shm_snap_fill *fills; /* scratch for status reads */
	size_t fills_cap;
	int efd;
	pthread_t helper;
	bool helper_started;
	/* Helper handshake (private memory, two threads of this process).
	 * armed: W: loop 0 -> 1, release [GW2-1] + futex wake; helper
	 * 1 -> 0, relaxed, before it writes the eventfd.  R: helper,
	 * acquire [GW2-2] (pairs with GW2-1) before watching the rings.
	 * The loop reads armed relaxed before re-arming: a stale 1 can only
	 * be a helper that is about to write the eventfd, which makes the
	 * loop poll (and re-arm) once more, so no wake-up is lost.
	 * stop: W: loop, release [GW2-3]; R: helper, acquire [GW2-4]. */
	uint32_t armed;
	uint32_t stop;
	uint64_t spin_ns;    /* loop's poll-and-yield budget */
	uint64_t spin_until; /* ns; polling goes on until then */
	struct gw_exec_stats st;
	struct shm_msg rx[RX_BATCH];
	struct shm_msg tx[SEND_BATCH];
	uint32_t txjob[SEND_BATCH];
};

static long futex_private(uint32_t *uaddr, int op, uint32_t val,
			  const struct timespec *ts)
{
	return syscall(SYS_futex, uaddr, op | FUTEX_PRIVATE_FLAG, val, ts, NULL, 0);
}

/* ---- the helper thread ---- */

/* Doorbell predicate: some reply ring holds unconsumed replies, or the
 * helper must stop.  Reads only shared ring indexes. */
static bool replies_ready(void *arg)
{
	struct gw_exec *r = arg;
	/* GW2-4: acquire; pairs with GW2-3 in gw_exec_close. */
	if (load_acquire(&r->stop))
		return true;
	/* INS7: a ring repair wants the loop (pairs with INS6). */
	if (shm_instance_ring_repairs(&r->inst) != r->helper_repairs)
		return true;
	for (uint32_t s = 0; s < r->nshards; s++) {
		/* GW2-5: shared head and tail only (shm_ring_pending): the
		 * loop thread owns the handle's cursors and dequeues. */
		if (shm_ring_pending(&r->rep_ring[s]))
			return true;
	}
	return false;
}

/* Helper: wakes the loop when the instance's ring_repairs moved [INS7]. */
static void helper_repairs(struct gw_exec *r)
{
	uint32_t v = shm_instance_ring_repairs(&r->inst);
	if (v == r->helper_repairs)
		return;
	r->helper_repairs = v;
	uint64_t one = 1;
	(void)!write(r->efd, &one, sizeof(one));
}

static void *helper_main(void *arg)
{
	struct gw_exec *r = arg;
	for (;;) {
		/* GW2-2: acquire; pairs with the loop's GW2-1.  An idle
		 * gateway learns of a ring repair within a second. */
		while (!load_acquire(&r->armed) && !load_acquire(&r->stop) /* GW2-4 */) {
			struct timespec ts = {1, 0};
			futex_private(&r->armed, FUTEX_WAIT, 0, &ts);
			helper_repairs(r);
		}
		if (load_acquire(&r->stop)) /* GW2-4 */
			break;
		/* No spinning here: the loop thread already polled for
		 * spin_ns before it armed us. */
		int rc = shm_doorbell_wait(r->db, replies_ready, r, 0, 1000);
		if (load_acquire(&r->stop)) /* GW2-4 */
			break;
		if (rc == 0) {
			/* Relaxed: the eventfd write is the signal; a stale
			 * 1 seen by the loop only skips one re-arm, and the
			 * loop re-arms after its next drain. */
			store_relaxed(&r->armed, 0u);
			r->helper_repairs = shm_instance_ring_repairs(&r->inst);
			uint64_t one = 1;
			(void)!write(r->efd, &one, sizeof(one));
		}
	}
	return NULL;
}

static void helper_arm(struct gw_exec *r)
{
	/* Relaxed: see the comment on `armed`. */
	if (load_relaxed(&r->armed))
		return;
	/* GW2-1: release; pairs with the helper's GW2-2. */
	store_release(&r->armed, 1u);
	futex_private(&r->armed, FUTEX_WAKE, 1, NULL);
}

/* ---- order status from the book ---- */

/*
 * Reads order `id` of shard s through the read-side API (shm_snap: a
 * read-side section of the shard's reader table and a seqcount snapshot of
 * the order's symbol; every index bounds-checked): owner, open and
 * cancelled shares, and every fill (into r->fills).  Returns 0,
 * SHMEX_ENOORDER, SHMEX_EBUSY (the snapshot kept changing), or
 * SHMEX_EBADINDEX / -ENOMEM.
 */
/* Maps shard s's current book (after its matcher restarted); a failure
 * leaves it unmapped, and reads answer "busy" until a later one works. */
static int reopen_book(struct gw_exec *r, uint32_t s)
{
	if (r->rd_ok[s])
		shm_snap_close(&r->rd[s]);
	r->rd_ok[s] = 0;
	int rc = shm_snap_open(&r->rd[s], r->instance, s);
	if (rc == 0)
		r->rd_ok[s] = 1;
	else
		fprintf(stderr, "shmex-gateway %u: book of shard %u: %s\n", r->gateway, s,
			r->rd[s].err.msg);
	return rc;
}

/* False when the book we map of shard s was made by a matcher that is
 * gone.  A gateway that started while a dead matcher's successor was not
 * yet up maps the dead one's book, and the successor's restart notice may
 * not reach it; so the mapping is checked before "no such order" is
 * said. */
static bool book_current(const struct gw_exec *r, uint32_t s)
{
	/* creator_pid/creator_start are written before the region's R0 and
	 * never change; our attach read them after A0 (shm_region.h). */
	const struct shm_region_hdr_sh *h = shm_region_hdr(&r->rd[s].book);
	return shm_proc_alive(h->creator_pid, h->creator_start);
}

static int read_status(struct gw_exec *r, uint32_t s, uint64_t id, struct status *out)
{
	struct shm_snap_order o;
	size_t got = 0;
	r->st.queries++;
	if (!r->rd_ok[s]) {
		/* A full reader table is said as what it is; anything else
		 * (the book being remade by a restarting matcher) is busy. */
		int rc = reopen_book(r, s);
		if (!r->rd_ok[s])
			return rc == SHMEX_ENOREADERSLOT ? rc : SHMEX_EBUSY;
	}
	bool from_history = false;
	for (int round = 0; round < 4; round++) {
		int rc = shm_snap_order(&r->rd[s], id, &o, r->fills, r->fills_cap, &got);
		if (rc == SHMEX_ENOORDER && book_current(r, s)) {
			/* Finished and recycled: its final state is on disk. */
			struct shmex_error e = {0};
			rc = shm_history_lookup(&r->hist[s], &r->rd[s], r->inst.data_dir,
						id, &o, r->fills, r->fills_cap, &got, &e);
			if (rc && rc != SHMEX_ENOORDER && rc != SHMEX_EBUSY)
				fprintf(stderr,
					"shmex-gateway %u: order %" PRIu64 ": %s\n",
					r->gateway, id, shmex_error_msg(&e, rc));
			from_history = true;
		}
		if (rc == SHMEX_ENOORDER && !book_current(r, s)) {
			/* Not current (or its matcher is restarting): read the
			 * current one, or answer busy until there is one. */
			if (reopen_book(r, s) != 0 || !book_current(r, s))
				return SHMEX_EBUSY;
			r->st.stale_books++;
			continue;
		}
		if (rc)
			return rc;
		if (got >= o.nfills)
			break;
		/* More fills than room: grow (bounded by the fill pool) and
		 * read again. */
		uint32_t want = o.nfills;
		if (want > r->rd[s].view.cap_fills)
			return from_history ? SHMEX_EJCORRUPT : SHMEX_EBADINDEX;
		struct shm_snap_fill *nf = realloc(r->fills, (size_t)want * sizeof(*nf));
		if (!nf)
			return -ENOMEM;
		r->fills = nf;
		r->fills_cap = want;
	}
	if (got < o.nfills)
		return SHMEX_EBUSY;
	/* Not yet durable: a crash could still take it back, so it waits
	 * (parked and read again, like a snapshot that kept changing). */
	if (o.mod_event > shm_snap_durable_event(&r->rd[s]))
		return SHMEX_EBUSY;
	out->account = o.account;
	out->open = o.open;
	out->cancelled = o.cancelled;
	out->cancel_time_ns = o.cancel_time_ns;
	out->nfills = (uint32_t)got;
	return 0;
}

/* ---- jobs ---- */

static uint64_t secs(uint64_t ns)
{
	return ns / 1000000000u;
}

static void q_push(struct gw_exec *r, struct sendq *q, uint32_t slot)
{
	r->jobs[slot].qnext = Q_NIL;
	if (q->n == 0)
		q->head = slot;
	else
		r->jobs[q->tail].qnext = slot;
	q->tail = slot;
	q->n++;
}

static uint32_t q_pop(struct gw_exec *r, struct sendq *q)
{
	uint32_t slot = q->head;
	q->head = r->jobs[slot].qnext;
	q->n--;
	return slot;
}

static void q_remove(struct gw_exec *r, struct sendq *q, uint32_t slot)
{
	uint32_t prev = Q_NIL;
	for (uint32_t i = q->head, k = 0; k < q->n; prev = i, i = r->jobs[i].qnext, k++) {
		if (i != slot)
			continue;
		if (prev == Q_NIL)
			q->head = r->jobs[i].qnext;
		else
			r->jobs[prev].qnext = r->jobs[i].qnext;
		if (q->tail == i)
			q->tail = prev;
		q->n--;
		return;
	}
}

/* Queues the job's message for shard s. */
static void job_send(struct gw_exec *r, uint32_t slot, uint32_t s)
{
	struct job *j = &r->jobs[slot];
	j->msg.req_id = (r->next_id++ << 16) | slot;
	j->shard = s;
	j->wait = W_SEND;
	j->since_ns = shm_clock_ns(CLOCK_MONOTONIC);
	q_push(r, &r->q[s], slot);
}

static void job_finish(struct gw_exec *r, uint32_t slot)
{
	struct job *j = &r->jobs[slot];
	const char *out;
	size_t len;
	int rc = gw_reply_finish(&j->reply, &out, &len);
	if (rc && gw_reply_taken(&j->reply) > 0) {
		/* Part of the document is on its way: end it well-formed. */
		out = j->reply.open ? "  <error>Internal error</error>\n</results>\n"
				    : "<results>\n  <error>Internal error</error>\n"
				      "</results>\n";
		len = strlen(out);
	} else if (rc) {
		gw_reply_error_doc(&j->reply, rc, NULL, &out, &len);
	}
	j->active = false;
	r->nactive--;
	(void)gw_server_reply(r->srv, j->conn, out, len);
}

static void reply_status(struct gw_exec *r, struct gw_reply *rep, const struct status *st,
			 bool with_open)
{
	if (with_open && st->open > 0)
		gw_reply_open(rep, st->open);
	else if (st->cancelled > 0)
		gw_reply_canceled_part(rep, st->cancelled, secs(st->cancel_time_ns));
	for (uint32_t i = 0; i < st->nfills; i++)
		gw_reply_executed(rep, r->fills[i].qty, r->fills[i].price,
				  secs(r->fills[i].time_ns));
}

/*
 * A book read said SHMEX_EBUSY (the order's symbol kept changing under a
 * busy matcher).  The reader never waits for the writer, so instead of
 * spinning, the job is parked and retried on the next loop turns, for up
 * to busy_ms since the item's first attempt.  Returns true when parked,
 * false when the time is up (the item is then answered "busy").
 */
static bool park_retry(struct gw_exec *r, uint32_t slot)
{
	struct job *j = &r->jobs[slot];
	uint64_t now = shm_clock_ns(CLOCK_MONOTONIC);
	if (!j->retry_since)
		j->retry_since = now;
	if (now - j->retry_since >= (uint64_t)r->busy_ms * 1000000u)
		return false;
	j->wait = W_RETRY;
	q_push(r, &r->retryq, slot);
	r->st.retries++;
	return true;
}

static int reply_err(int rc)
{
	if (rc == SHMEX_EBADINDEX || rc == -ENOMEM || rc == SHMEX_EWRONGSHARD)
		return SHMEX_EINTERNAL;
	return rc;
}

/*
 * Streaming: a listing of nfills fills is limited by what is buffered
 * with it (gw_reply), so when the buffered reply could crowd it out, the
 * buffered part goes to the connection first.  Small replies stay one
 * send.  False when the connection is gone.
 */
static bool make_room(struct gw_exec *r, uint32_t slot, uint32_t nfills)
{
	struct job *j = &r->jobs[slot];
	size_t have = gw_reply_buffered(&j->reply);
	if (r->framed || j->stop || have == 0 ||
	    have + (size_t)nfills * 128u + 512u <= r->max_reply)
		return true;
	const char *out;
	size_t len;
	if (gw_reply_take(&j->reply, &out, &len) != 0)
		return true; /* the sticky failure ends the reply anyway */
	struct gw_conn_ref c = j->conn;
	int rc = gw_server_reply_part(r->srv, c, out, len);
	return rc == 0 && j->active && j->conn.gen == c.gen;
}

/* Answers a <query>; false when parked for a retry. */
static bool do_query(struct gw_exec *r, uint32_t slot, const struct gw_item *it)
{
	struct job *j = &r->jobs[slot];
	uint32_t s = shm_shard_of_order(it->order_id, r->nshards);
	struct status st;
	int rc = read_status(r, s, it->order_id, &st);
	if (rc == SHMEX_EBUSY && park_retry(r, slot))
		return false;
	if (rc == 0 && st.account != j->req.account)
		rc = SHMEX_ENOTOWNER;
	if (rc) {
		gw_reply_item_error(&j->reply, &j->req, it, reply_err(rc), NULL);
		return true;
	}
	if (!make_room(r, slot, st.nfills))
		return false;
	gw_reply_mark(&j->reply);
	gw_reply_status_begin(&j->reply, gw_xml_text(&j->req, it->id));
	reply_status(r, &j->reply, &st, true);
	gw_reply_status_end(&j->reply);
	if (gw_reply_too_big(&j->reply)) {
		gw_reply_rollback(&j->reply);
		gw_reply_item_error(&j->reply, &j->req, it, SHMEX_EREPLYBIG, NULL);
	}
	return true;
}

/* Answers a <cancel> the matcher accepted: <canceled id> with the cancelled
 * part and the executed parts, read from the book (the matcher replies
 * only once the cancel is published).  False when parked for a retry.
 * Should the record be unreadable (recycled already, or busy for too
 * long), the reply's own figures still say what was cancelled. */
static bool finish_cancel(struct gw_exec *r, uint32_t slot, const struct gw_item *it)
{
	struct job *j = &r->jobs[slot];
	struct status st;
	int rc = j->stop ? SHMEX_EBUSY : read_status(r, j->shard, it->order_id, &st);
	if (rc == SHMEX_EBUSY && !j->stop && park_retry(r, slot))
		return false;
	if (rc != 0) {
		memset(&st, 0, sizeof(st));
		st.cancelled = j->cancel_qty;
		st.cancel_time_ns = j->cancel_time_ns;
	}
	if (!make_room(r, slot, st.nfills))
		return false;
	gw_reply_mark(&j->reply);
	gw_reply_cancel_begin(&j->reply, gw_xml_text(&j->req, it->id));
	reply_status(r, &j->reply, &st, false);
	gw_reply_cancel_end(&j->reply);
	if (gw_reply_too_big(&j->reply)) {
		/* The cancel happened: the error says so. */
		gw_reply_rollback(&j->reply);
		gw_reply_item_error(&j->reply, &j->req, it, SHMEX_EREPLYBIG,
				    "the order was canceled");
	}
	j->cancel_done = false;
	return true;
}

/* Builds the ring message of a ring item; returns its shard. */
static uint32_t item_msg(struct gw_exec *r, const struct gw_xml_req *req,
			 const struct gw_item *it, struct shm_msg *m)
{
	memset(m, 0, sizeof(*m));
	struct gw_str sym = gw_xml_text(req, it->sym_val);
	switch (it->kind) {
	case GW_ITEM_ACCOUNT:
		m->type = SHM_MSG_CREATE_ACCOUNT;
		m->account = it->account;
		shm_msg_set_balance(m, it->balance);
		return shm_shard_of_account(it->account, r->nshards);
	case GW_ITEM_SYMBOL:
		m->type = SHM_MSG_ADD_SHARES;
		m->account = it->account;
		m->qty = it->qty;
		(void)shm_symbol_pack(m->u.symbol, sym.p, sym.len);
		return shm_shard_of_symbol(sym.p, sym.len, r->nshards);
	case GW_ITEM_ORDER:
		m->type = SHM_MSG_ORDER;
		m->account = req->account;
		m->side = it->side;
		m->tif = it->tif;
		m->flags = it->post_only ? SHM_MSG_POST_ONLY : 0;
		m->price = it->limit;
		m->qty = it->qty;
		(void)shm_symbol_pack(m->u.symbol, sym.p, sym.len);
		return shm_shard_of_symbol(sym.p, sym.len, r->nshards);
	default: /* GW_ITEM_CANCEL */
		m->type = SHM_MSG_CANCEL;
		m->account = req->account;
		m->order_id = it->order_id;
		return shm_shard_of_order(it->order_id, r->nshards);
	}
}

/*
 * Streaming (unframed replies): once the buffered reply passes
 * STREAM_CHUNK, its bytes go to the connection, so a job holds at most
 * about one chunk plus one item.  When the connection (or the gateway in
 * total) has too much unsent, the job parks in W_OUTPUT until the client
 * reads.  Returns false when the job parked or its connection is gone.
 */
static bool job_stream(struct gw_exec *r, uint32_t slot)
{
	struct job *j = &r->jobs[slot];
	if (r->framed || j->stop)
		return true;
	if (gw_reply_buffered(&j->reply) >= STREAM_CHUNK) {
		const char *out;
		size_t len;
		if (gw_reply_take(&j->reply, &out, &len) == 0) {
			struct gw_conn_ref c = j->conn;
			int rc = gw_server_reply_part(r->srv, c, out, len);
			if (rc || !j->active || j->conn.gen != c.gen)
				return false; /* closed: aborted meanwhile */
		}
	}
	if (gw_server_may_send(r->srv, j->conn))
		return true;
	j->wait = W_OUTPUT;
	q_push(r, &r->outq, slot);
	r->st.held++;
	return false;
}

/* Runs items until one waits (for a matcher, to retry a busy read, for its
 * client to read, or because the job used its time slice) or the request
 * is done. */
static void job_run(struct gw_exec *r, uint32_t slot)
{
	struct job *j = &r->jobs[slot];
	uint64_t t0 = shm_clock_ns(CLOCK_MONOTONIC);
	uint32_t n = 0;
	while (j->next < j->req.nitems) {
		const struct gw_item *it = &j->req.items[j->next];
		if (!j->cancel_done && !job_stream(r, slot))
			return;
		if (!j->stop && ++n % SLICE_ITEMS == 0 &&
		    (n >= SLICE_MAX || shm_clock_ns(CLOCK_MONOTONIC) - t0 >= SLICE_NS)) {
			/* Long enough: the other connections get the loop;
			 * this job goes on next turn. */
			j->wait = W_OUTPUT;
			q_push(r, &r->outq, slot);
			r->st.slices++;
			return;
		}
		if (j->cancel_done) {
			if (!finish_cancel(r, slot, it))
				return;
			goto next;
		}
		if (it->err) {
			gw_reply_item_error(&j->reply, &j->req, it, 0, NULL);
			goto next;
		}
		bool tx = j->req.root == GW_ROOT_TRANSACTIONS;
		if (tx && !j->acct_ok) {
			gw_reply_item_error(&j->reply, &j->req, it, SHMEX_ENOACCOUNT,
					    NULL);
			goto next;
		}
		switch (it->kind) {
		case GW_ITEM_QUERY:
			if (j->stop) {
				gw_reply_item_error(&j->reply, &j->req, it,
						    SHMEX_ESTOPPING, NULL);
				goto next;
			}
			if (!do_query(r, slot, it))
				return;
			goto next;
		case GW_ITEM_ACCOUNT:
		case GW_ITEM_SYMBOL:
		case GW_ITEM_ORDER:
		case GW_ITEM_CANCEL:
			if (j->stop || j->skip_fail) {
				gw_reply_item_error(
					&j->reply, &j->req, it,
					j->stop ? SHMEX_ESTOPPING : SHMEX_ESKIPPED, NULL);
				goto next;
			}
			if (j->busy_fail) {
				r->st.busy++;
				gw_reply_item_error(&j->reply, &j->req, it, SHMEX_EBUSY,
						    NULL);
				goto next;
			}
			job_send(r, slot, item_msg(r, &j->req, it, &j->msg));
			return;
		default:
			gw_reply_item_error(&j->reply, &j->req, it, SHMEX_EUNKNOWNELEM,
					    NULL);
			goto next;
		}
	next:
		r->st.items++;
		j->retry_since = 0;
		j->next++;
	}
	job_finish(r, slot);
}

/* The matcher answered the job's outstanding item. */
static void job_reply(struct gw_exec *r, uint32_t slot, const struct shm_msg *m,
		      int status)
{
	struct job *j = &r->jobs[slot];
	const struct gw_item *it = &j->req.items[j->next];
	if (status == 0 && it->kind == GW_ITEM_CANCEL) {
		/* job_run builds the <canceled> from the book. */
		j->cancel_done = true;
		j->cancel_qty = m->qty;
		j->cancel_time_ns = m->u.r.time_ns;
		job_run(r, slot);
		return;
	}
	if (status) {
		gw_reply_item_error(&j->reply, &j->req, it, status, NULL);
	} else {
		switch (it->kind) {
		case GW_ITEM_ACCOUNT:
		case GW_ITEM_SYMBOL:
			gw_reply_item_created(&j->reply, &j->req, it);
			break;
		case GW_ITEM_ORDER:
			gw_reply_item_opened(&j->reply, &j->req, it, m->order_id);
			break;
		default:
			gw_reply_item_error(&j->reply, &j->req, it, SHMEX_EINTERNAL,
					    NULL);
			break;
		}
	}
	r->st.items++;
	j->next++;
	job_run(r, slot);
}

void gw_exec_request(void *route, struct gw_conn_ref c, const char *xml, size_t len)
{
	struct gw_exec *r = route;
	r->st.requests++;
	if (c.slot >= r->max_conns) {
		const char *out;
		size_t olen;
		struct gw_reply tmp;
		gw_reply_init(&tmp, 0, false);
		gw_reply_error_doc(&tmp, SHMEX_EINTERNAL, NULL, &out, &olen);
		(void)gw_server_reply(r->srv, c, out, olen);
		gw_reply_free(&tmp);
		return;
	}
	struct job *j = &r->jobs[c.slot];
	j->active = true;
	r->nactive++;
	j->conn = c;
	j->next = 0;
	j->wait = W_NONE;
	j->busy_fail = false;
	j->skip_fail = false;
	j->stop = false;
	j->acct_ok = false;
	j->cancel_done = false;
	j->retry_since = 0;
	gw_reply_begin(&j->reply);
	int rc = gw_xml_parse(r->xp, xml, len, &j->req);
	if (rc) {
		const char *out;
		size_t olen;
		gw_reply_error_doc(&j->reply, rc, j->req.detail[0] ? j->req.detail : NULL,
				   &out, &olen);
		j->active = false;
		r->nactive--;
		(void)gw_server_reply(r->srv, c, out, olen);
		return;
	}
	if (j->req.root == GW_ROOT_TRANSACTIONS && j->req.account_err == 0) {
		uint32_t idx;
		j->acct_ok = r->accts_ok &&
			     shm_accounts_find(&r->accts, j->req.account, &idx) == 0;
	}
	job_run(r, c.slot);
}

void gw_exec_abort(void *route, struct gw_conn_ref c)
{
	struct gw_exec *r = route;
	if (c.slot >= r->max_conns)
		return;
	struct job *j = &r->jobs[c.slot];
	if (!j->active || j->conn.gen != c.gen)
		return;
	if (j->wait == W_SEND)
		q_remove(r, &r->q[j->shard], c.slot);
	else if (j->wait == W_RETRY)
		q_remove(r, &r->retryq, c.slot);
	else if (j->wait == W_OUTPUT)
		q_remove(r, &r->outq, c.slot);
	else if (j->wait == W_REPLY)
		r->nwaiting--;
	/* A reply still on its way is dropped as stale. */
	j->wait = W_NONE;
	j->active = false;
	r->nactive--;
}

static void answer_unknown(struct gw_exec *r, uint32_t slot, const char *why);

/* A job waiting for a reply that will not come: "outcome unknown" when
 * its reply may have been lost with the item executed, else "not
 * executed" with code. */
static void settle_waiting(struct gw_exec *r, uint32_t slot, bool maybe_executed,
			   int code)
{
	struct job *j = &r->jobs[slot];
	if (maybe_executed) {
		answer_unknown(r, slot, "its reply was lost in a repaired ring; ");
		job_run(r, slot);
		return;
	}
	j->wait = W_NONE;
	r->nwaiting--;
	r->st.not_executed++;
	job_reply(r, slot, &j->msg, code);
}

/* Shard s's matcher restarted, and every message of ours before ring
 * position `taken` went to its predecessor.  The successor re-sent the
 * answers its journal kept (before this notice, on the same ring), so a
 * job still waiting for one of those messages was never executed: it
 * is answered so, truthfully (docs/durability.md). */
static void restart_notice(struct gw_exec *r, uint32_t s, uint64_t taken)
{
	r->st.restarts++;
	/* The new matcher made a new book and reader table: read those. */
	(void)reopen_book(r, s);
	for (uint32_t slot = 0; slot < r->max_conns; slot++) {
		struct job *j = &r->jobs[slot];
		if (!j->active || j->wait != W_REPLY || j->shard != s ||
		    j->ring_pos >= taken)
			continue;
		/* Its reply may have been in a repaired reply ring, which the
		 * successor does not answer again. */
		settle_waiting(r, slot,
			       r->path[s] == P_NOTICE && r->path_lost[s] &&
				       j->ring_pos < r->path_base[s],
			       SHMEX_ENOTEXEC);
	}
	/* A successor that joined the repair still sends its repair notice,
	 * which answers the items of the reset generation (P_NOTICE stays). */
}

/* A reply for nobody: if it answers an item that was told "outcome
 * unknown", the operator learns the outcome under the ref the client got. */
static void late_reply(struct gw_exec *r, uint32_t s, const struct shm_msg *m, bool bad)
{
	for (uint32_t i = 0; i < LATE_MAX; i++) {
		struct late *l = &r->late[i];
		if (!l->req_id || l->req_id != m->req_id)
			continue;
		r->st.late++;
		static const char *const kind[] = {
			[SHM_MSG_ORDER] = "order",
			[SHM_MSG_CANCEL] = "cancel",
			[SHM_MSG_CREATE_ACCOUNT] = "create account",
			[SHM_MSG_ADD_SHARES] = "add shares",
		};
		const char *what =
			l->type < sizeof(kind) / sizeof(kind[0]) && kind[l->type]
				? kind[l->type]
				: "request";
		const char *res = bad         ? "a malformed reply"
				  : m->status ? shmex_strerror(m->status)
					      : "done";
		if (!bad && m->status == 0 && l->type == SHM_MSG_ORDER)
			fprintf(stderr,
				"shmex-gateway %u: late answer from shard %u to ref "
				"%016" PRIx64 " (account %" PRIu64 ", %s): done, order "
				"id %" PRIu64 "\n",
				r->gateway, s, m->req_id, l->account, what, m->order_id);
		else
			fprintf(stderr,
				"shmex-gateway %u: late answer from shard %u to ref "
				"%016" PRIx64 " (account %" PRIu64 ", %s): %s\n",
				r->gateway, s, m->req_id, l->account, what, res);
		l->req_id = 0;
		return;
	}
}

/* The job's sent item got no answer within answer_ms (a matcher that
 * stopped answering, a corrupt reply ring): it may or may not have been
 * executed, and the client is told exactly that, with a ref the gateway
 * logs the late answer under.  Later ring items of the request are not
 * sent (they might depend on it). */
static void answer_unknown(struct gw_exec *r, uint32_t slot, const char *why)
{
	struct job *j = &r->jobs[slot];
	struct late *l = &r->late[r->late_next++ % LATE_MAX];
	l->req_id = j->msg.req_id;
	l->account = j->msg.account;
	l->type = j->msg.type;
	char detail[96];
	snprintf(detail, sizeof(detail), "%sref %016" PRIx64, why, j->msg.req_id);
	j->wait = W_NONE;
	r->nwaiting--;
	r->st.unknown++;
	j->skip_fail = true;
	gw_reply_item_error(&j->reply, &j->req, &j->req.items[j->next], SHMEX_EUNKNOWN,
			    detail);
	r->st.items++;
	j->next++;
}

/* Items sent longer than answer_ns ago are answered "outcome unknown". */
static void expire_answers(struct gw_exec *r, uint64_t now)
{
	if (now < r->next_scan)
		return;
	r->next_scan = now + ANSWER_SCAN_NS;
	for (uint32_t slot = 0; slot < r->max_conns && r->nwaiting; slot++) {
		struct job *j = &r->jobs[slot];
		if (!j->active || j->wait != W_REPLY || now - j->sent_ns < r->answer_ns)
			continue;
		answer_unknown(r, slot, "");
		job_run(r, slot);
	}
}

/* The rings of path s were repaired, and the matcher had taken our
 * requests before position `taken` of the old generation; every reply it
 * owed for them came before this notice.  So an item of the old
 * generation still waiting was not executed (the matcher never took it:
 * the message was lost in the damaged ring), unless the reply ring lost
 * replies and the item is one the matcher took: then its outcome is
 * unknown (docs/ring.md). */
static void repair_notice(struct gw_exec *r, uint32_t s, uint64_t taken)
{
	if (r->path[s] != P_NOTICE) {
		r->st.stale++; /* we joined the repair with nothing waiting */
		return;
	}
	r->path[s] = P_IN_USE;
	r->st.repairs++;
	for (uint32_t slot = 0; slot < r->max_conns; slot++) {
		struct job *j = &r->jobs[slot];
		if (!j->active || j->wait != W_REPLY || j->shard != s ||
		    j->ring_pos >= r->path_base[s])
			continue;
		settle_waiting(r, slot, r->path_lost[s] && j->ring_pos < taken,
			       SHMEX_ENOTEXECRING);
	}
}

/* m is the loop's private copy (r->rx), so every field read here and in
 * job_reply is the value that was validated. */
static void handle_reply(struct gw_exec *r, uint32_t s, const struct shm_msg *m)
{
	if (m->type == SHM_MSG_RESTART || m->type == SHM_MSG_REPAIR) {
		if (shm_msg_validate_reply(m) != 0)
			r->st.bad_replies++;
		else if (m->type == SHM_MSG_RESTART)
			restart_notice(r, s, m->order_id);
		else
			repair_notice(r, s, m->order_id);
		return;
	}
	bool bad = shm_msg_validate_reply(m) != 0;
	int status = bad ? SHMEX_EINTERNAL : m->status;
	uint32_t slot = (uint32_t)(m->req_id & 0xffff);
	if (slot >= r->max_conns) {
		r->st.stale++;
		return;
	}
	struct job *j = &r->jobs[slot];
	if (!j->active || j->wait != W_REPLY || j->msg.req_id != m->req_id ||
	    j->shard != s) {
		r->st.stale++;
		late_reply(r, s, m, bad);
		return;
	}
	if (!bad && m->req_type != j->msg.type)
		bad = true;
	/* A successful ORDER names the new id, which must exist and belong
	 * to the shard that answered; a cancel's share count is not
	 * negative.  Both are echoed or shown to the client. */
	if (!bad && status == 0 && m->req_type == SHM_MSG_ORDER &&
	    (m->order_id == 0 || shm_shard_of_order(m->order_id, r->nshards) != s))
		bad = true;
	if (!bad && status == 0 && m->req_type == SHM_MSG_CANCEL && m->qty < 0)
		bad = true;
	if (bad) {
		r->st.bad_replies++;
		status = SHMEX_EINTERNAL;
	}
	j->wait = W_NONE;
	r->nwaiting--;
	r->st.replies++;
	job_reply(r, slot, m, status);
}

/* A ring of path s is damaged: reported for the supervisor (RNG9 inside
 * shm_ring_report) and logged once, by name, with what was wrong. */
static void ring_damaged(struct gw_exec *r, uint32_t s, bool request)
{
	uint8_t bit = request ? 1 : 2;
	struct shm_ring *ring = request ? &r->req_ring[s] : &r->rep_ring[s];
	enum shm_ring_side side = request ? SHM_RING_PRODUCER : SHM_RING_CONSUMER;
	shm_ring_report(ring, side);
	if (r->ring_bad[s] & bit)
		return;
	r->ring_bad[s] |= bit;
	r->st.ring_errors++;
	char name[128], why[160];
	shm_instance_ring_name(&r->inst, request, r->gateway, s, name, sizeof(name));
	shm_ring_describe(ring, side, why, sizeof(why));
	fprintf(stderr,
		"shmex-gateway %u: ring %s: %s (generation %u); not used until it is "
		"repaired\n",
		r->gateway, name, why, ring->gen);
}

/* Our part in the repair of path s (the top of the file). */
static void repair_path(struct gw_exec *r, uint32_t s)
{
	enum shm_ring_repair rq = shm_ring_repair_state(&r->req_ring[s]);
	enum shm_ring_repair rp = shm_ring_repair_state(&r->rep_ring[s]);
	bool quiesce = rq == SHM_RING_QUIESCE || rp == SHM_RING_QUIESCE;
	if (quiesce && r->path[s] != P_ACKED) {
		if (r->path[s] != P_DRAINING)
			fprintf(stderr,
				"shmex-gateway %u: rings of shard %u: repair begins; "
				"requests to it wait\n",
				r->gateway, s);
		r->path[s] = P_DRAINING;
		/* Everything the matcher published is taken first: it has
		 * acknowledged (it publishes no more [RNG12]) and the ring
		 * is empty, or the ring is damaged, or no matcher runs. */
		struct shm_ring *rr = &r->rep_ring[s];
		bool bad = (r->ring_bad[s] & 2) != 0;
		bool done = shm_ring_acked(rr, SHM_RING_PRODUCER) ||
			    !shm_instance_member_alive(&r->inst, SHM_ROLE_MATCHER, s);
		if (!bad && (!done || shm_ring_readable(rr)))
			return;
		r->path_lost[s] = bad;
		/* RNG11 inside: after our last use of each ring. */
		shm_ring_ack(&r->req_ring[s], SHM_RING_PRODUCER);
		shm_ring_ack(rr, SHM_RING_CONSUMER);
		r->path[s] = P_ACKED;
		return;
	}
	if (quiesce || (rq != SHM_RING_RESET && rp != SHM_RING_RESET))
		return;
	int rc = 0;
	if (rq == SHM_RING_RESET && shm_ring_resume(&r->req_ring[s]) != 0)
		rc = -1;
	if (rp == SHM_RING_RESET && shm_ring_resume(&r->rep_ring[s]) != 0)
		rc = -2;
	bool was_acked = r->path[s] == P_ACKED;
	r->ring_bad[s] = 0;
	if (rc)
		ring_damaged(r, s, rc == -1);
	if (!was_acked) {
		/* Not ours to wait for (we attached during the repair, with
		 * nothing sent): carry on. */
		r->path[s] = P_IN_USE;
		return;
	}
	r->path_base[s] = shm_ring_produced(&r->req_ring[s]);
	r->path[s] = P_NOTICE;
	fprintf(stderr,
		"shmex-gateway %u: rings of shard %u repaired (generation %u); sending "
		"again\n",
		r->gateway, s, r->req_ring[s].gen);
}

/* Once per loop turn: one acquire of ring_repairs [INS7, pairs with the
 * supervisor's INS6]; the rings' states when it moved, or while a path
 * drains.  Returns true while a path drains (the loop then polls). */
static bool repair_check(struct gw_exec *r)
{
	uint32_t seq = shm_instance_ring_repairs(&r->inst);
	bool moved = seq != r->repairs_seen;
	r->repairs_seen = seq;
	bool draining = false;
	for (uint32_t s = 0; s < r->nshards; s++) {
		if (moved || r->path[s] == P_DRAINING)
			repair_path(r, s);
		draining |= r->path[s] == P_DRAINING;
	}
	return draining;
}

/* Takes every reply waiting in the reply rings; returns how many. */
static unsigned drain_replies(struct gw_exec *r)
{
	unsigned total = 0;
	for (uint32_t s = 0; s < r->nshards; s++) {
		if ((r->ring_bad[s] & 2) || r->path[s] == P_ACKED)
			continue; /* left alone until its repair */
		for (int round = 0; round < RX_ROUNDS; round++) {
			unsigned got = 0;
			int rc = shm_ring_dequeue_batch(&r->rep_ring[s], r->rx, RX_BATCH,
							&got);
			if (rc) {
				/* Nothing is consumed from a corrupt ring; it
				 * is reported for repair.  Logged once. */
				ring_damaged(r, s, false);
				break;
			}
			for (unsigned i = 0; i < got; i++)
				handle_reply(r, s, &r->rx[i]);
			total += got;
			if (got < RX_BATCH)
				break;
		}
	}
	return total;
}

/* Sends queued messages; answers "busy" for those that waited too long.
 * Returns true when something is still queued. */
static bool flush_sends(struct gw_exec *r)
{
	bool left = false;
	uint64_t now = shm_clock_ns(CLOCK_MONOTONIC);
	uint64_t busy_ns = (uint64_t)r->busy_ms * 1000000u;
	for (uint32_t s = 0; s < r->nshards; s++) {
		struct sendq *q = &r->q[s];
		/* A path under repair, or a damaged request ring: the items
		 * wait (then get "busy", as for a full ring). */
		bool blocked = (r->ring_bad[s] & 1) || r->path[s] == P_DRAINING ||
			       r->path[s] == P_ACKED;
		while (q->n > 0 && !blocked) {
			unsigned n = 0;
			for (uint32_t i = q->head; n < q->n && n < SEND_BATCH;
			     i = r->jobs[i].qnext) {
				r->tx[n] = r->jobs[i].msg;
				r->txjob[n++] = i;
			}
			unsigned done = 0;
			uint64_t base = shm_ring_produced(&r->req_ring[s]);
			int rc = shm_ring_enqueue_batch(&r->req_ring[s], r->tx, n, &done);
			if (rc) {
				/* Treated as full: the items wait, then get
				 * "busy".  Reported for repair. */
				ring_damaged(r, s, true);
				done = 0;
			}
			for (unsigned k = 0; k < done; k++) {
				uint32_t slot = q_pop(r, q);
				r->jobs[slot].wait = W_REPLY;
				r->jobs[slot].ring_pos = base + k;
				r->jobs[slot].sent_ns = now;
				r->nwaiting++;
				r->st.sent++;
			}
			if (done < n)
				break;
		}
		/* The queue is in arrival order: expired jobs are a prefix. */
		while (q->n > 0 && now - r->jobs[q->head].since_ns >= busy_ns) {
			uint32_t slot = q_pop(r, q);
			struct job *j = &r->jobs[slot];
			j->wait = W_NONE;
			j->busy_fail = true;
			r->st.busy++;
			gw_reply_item_error(&j->reply, &j->req, &j->req.items[j->next],
					    SHMEX_EBUSY, NULL);
			r->st.items++;
			j->next++;
			job_run(r, slot);
		}
		if (q->n > 0)
			left = true;
	}
	return left;
}

/* Resumes the jobs parked for a busy book read (those parked again go to
 * the back and wait for the next turn). */
static void run_retries(struct gw_exec *r)
{
	for (uint32_t k = r->retryq.n; k > 0; k--) {
		uint32_t slot = q_pop(r, &r->retryq);
		r->jobs[slot].wait = W_NONE;
		job_run(r, slot);
	}
}

/* Resumes the jobs parked for their client or their slice whose
 * connection may take more now.  Returns true when one of them is
 * runnable after this turn (a job that used its slice again). */
static bool run_output(struct gw_exec *r)
{
	bool runnable = false;
	for (uint32_t k = r->outq.n; k > 0; k--) {
		uint32_t slot = q_pop(r, &r->outq);
		struct job *j = &r->jobs[slot];
		if (!gw_server_may_send(r->srv, j->conn)) {
			q_push(r, &r->outq, slot);
			continue;
		}
		j->wait = W_NONE;
		job_run(r, slot);
	}
	for (uint32_t i = r->outq.head, k = 0; k < r->outq.n; i = r->jobs[i].qnext, k++)
		if (gw_server_may_send(r->srv, r->jobs[i].conn))
			runnable = true;
	return runnable;
}

/*
 * The gateway's drain time is over (gw_server_stop + drain_ms): every
 * request still executing is answered now.  Items never sent are "Not
 * executed: the exchange is stopping"; an item sent and not answered is
 * "Outcome unknown" (its matcher may have executed it); nothing is left
 * without an answer.
 */
void gw_exec_drain(void *route)
{
	struct gw_exec *r = route;
	for (uint32_t slot = 0; slot < r->max_conns; slot++) {
		struct job *j = &r->jobs[slot];
		if (!j->active)
			continue;
		r->st.drained++;
		j->stop = true;
		if (j->wait == W_SEND)
			q_remove(r, &r->q[j->shard], slot);
		else if (j->wait == W_RETRY)
			q_remove(r, &r->retryq, slot);
		else if (j->wait == W_OUTPUT)
			q_remove(r, &r->outq, slot);
		if (j->wait == W_REPLY)
			answer_unknown(r, slot, "the exchange is stopping; ");
		j->wait = W_NONE;
		job_run(r, slot);
	}
}

/* At most every PUBLISH_NS: the counters tools read (shmex-query stats,
 * metrics) go to this gateway's member slot.  Returns true while a change
 * waits for its turn (the loop then wakes for it). */
static bool publish_counters(struct gw_exec *r, uint64_t now)
{
	if (!r->srv)
		return false;
	struct gw_server_stats ss;
	gw_server_get_stats(r->srv, &ss);
	struct shm_gateway_counters c;
	memset(&c, 0, sizeof(c));
	c.requests = r->st.requests;
	c.refused = ss.refused + ss.refused_peer;
	c.unknown = r->st.unknown;
	c.busy = r->st.busy;
	c.open = ss.open;
	if (!memcmp(&c, &r->published, sizeof(c)))
		return false;
	if (now < r->next_publish)
		return true;
	r->next_publish = now + PUBLISH_NS;
	r->published = c;
	shm_instance_gateway_publish(&r->inst, r->gateway, &c);
	return false;
}

/*
 * Once per loop turn.  While replies are awaited and the gateway made
 * progress within the last spin_ns, the loop does not block: it yields the
 * CPU (sched_yield, so a matcher or a client that shares this CPU runs at
 * once instead of being woken through futex -> helper -> eventfd later)
 * and polls again; sched_yield returns at once when nobody else wants the
 * CPU.  Only after spin_ns without progress is the helper armed and the
 * loop allowed to sleep in epoll_wait.  An idle gateway (nothing awaited)
 * never spins.
 */
int gw_exec_poll(void *route)
{
	struct gw_exec *r = route;
	bool progress = false;
	bool pub_pending = publish_counters(r, shm_clock_ns(CLOCK_MONOTONIC_COARSE));
	bool draining = repair_check(r);
	/* Parked reads too: a restart notice (which maps the new book)
	 * may be what they wait for. */
	if (r->nwaiting || r->retryq.n || draining)
		progress = drain_replies(r) > 0;
	if (r->retryq.n)
		run_retries(r);
	uint64_t sent0 = r->st.sent;
	bool runnable = r->outq.n ? run_output(r) : false;
	bool left = flush_sends(r) || r->retryq.n > 0;
	if (r->nwaiting)
		expire_answers(r, shm_clock_ns(CLOCK_MONOTONIC));
	progress = progress || r->st.sent != sent0;
	if (r->nwaiting && r->spin_ns) {
		uint64_t now = shm_clock_ns(CLOCK_MONOTONIC);
		if (progress)
			r->spin_until = now + r->spin_ns;
		if (now < r->spin_until) {
			sched_yield();
			return 0;
		}
	}
	/* Replies may have come in while we sent: the helper re-checks the
	 * rings before sleeping, so arming after the drain loses nothing. */
	if (r->nwaiting)
		helper_arm(r);
	if (runnable)
		return 0;
	if (left || draining)
		return 1;
	/* Sleep no longer than the next answer-deadline scan, nor (while
	 * connections are open) the next publication of the counters. */
	if (r->nwaiting)
		return (int)(ANSWER_SCAN_NS / 1000000u);
	return pub_pending ? (int)(PUBLISH_NS / 1000000u) : -1;
}

void gw_exec_wake(void *route)
{
	struct gw_exec *r = route;
	uint64_t v;
	(void)!read(r->efd, &v, sizeof(v));
	r->st.wakes++;
}

int gw_exec_wake_fd(const struct gw_exec *r)
{
	return r->efd;
}

void gw_exec_bind(struct gw_exec *r, struct gw_server *srv)
{
	r->srv = srv;
}

uint32_t gw_exec_active(const struct gw_exec *r)
{
	return r->nactive;
}

void gw_exec_get_stats(const struct gw_exec *r, struct gw_exec_stats *st)
{
	*st = r->st;
}

/* ---- open / close ---- */

static int open_shard(struct gw_exec *r, uint32_t s, struct shmex_error *err)
{
	/* A damaged ring is attached all the same and reported: it is
	 * repaired with us, never a reason to exit (and crash-loop). */
	int rc = shm_instance_request_ring(&r->inst, r->gateway, s, &r->req_ring[s]);
	if (rc == SHMEX_ERINGCORRUPT) {
		ring_damaged(r, s, true);
		rc = 0;
	}
	if (!rc)
		rc = shm_instance_reply_ring(&r->inst, s, r->gateway, &r->rep_ring[s]);
	if (rc == SHMEX_ERINGCORRUPT) {
		ring_damaged(r, s, false);
		rc = 0;
	}
	if (rc)
		return shmex_error_set(err, rc, "rings of shard %u: %s", s,
				       shmex_strerror(rc));
	rc = shm_snap_open(&r->rd[s], r->instance, s);
	if (rc == -ENOENT || rc == SHMEX_ENOTREADY || rc == SHMEX_ETOOSHORT ||
	    rc == SHMEX_EBADMAGIC) {
		/* A restarted matcher is laying its book out: serve the other
		 * shards; this one's queries are busy until it is there
		 * (read_status reopens it). */
		fprintf(stderr,
			"shmex-gateway %u: book of shard %u not there yet (%s); "
			"its queries answer busy until it is\n",
			r->gateway, s, shmex_strerror(rc));
		return 0;
	}
	if (rc) {
		if (err)
			*err = r->rd[s].err;
		return shmex_error_wrap(err, rc, "book of shard %u", s);
	}
	r->rd_ok[s] = 1;
	if (r->rd[s].view.nshards != r->nshards)
		return shmex_error_set(err, SHMEX_EBADLAYOUT,
				       "book of shard %u: made "
				       "for %u shards, not %u",
				       s, r->rd[s].view.nshards, r->nshards);
	return 0;
}

int gw_exec_open(struct gw_exec **out, const char *instance, uint32_t gateway,
		 struct shmex_error *err)
{
	*out = NULL;
	shmex_error_clear(err);
	if (!shm_instance_name_valid(instance))
		return shmex_error_set(err, SHMEX_EBADNAME,
				       "invalid instance name "
				       "\"%s\"",
				       instance ? instance : "");
	struct gw_exec *r = calloc(1, sizeof(*r));
	if (!r)
		return shmex_error_set(err, -ENOMEM, "out of memory");
	snprintf(r->instance, sizeof(r->instance), "%s", instance);
	r->gateway = gateway;
	r->efd = -1;
	r->next_id = shm_clock_ns(CLOCK_MONOTONIC) & ((UINT64_C(1) << 48) - 1);
	int rc = shm_instance_attach(r->instance, SHM_ROLE_GATEWAY, gateway, &r->inst);
	if (rc) {
		if (err)
			*err = r->inst.err;
		shmex_error_wrap(err, rc, "attach instance %s as gateway %u", r->instance,
				 gateway);
		goto out_close;
	}
	r->inst_ok = true;
	/* Validated, in range (shm_settings_load). */
	const struct shm_settings *st = &r->inst.settings;
	r->max_conns = (uint32_t)st->max_conns;
	r->busy_ms = (uint32_t)st->busy_ms;
	r->spin_ns = st->spin_us * 1000u;
	r->framed = st->frame_replies != 0;
	r->max_reply = (size_t)st->max_reply;
	r->answer_ns = st->answer_ms * 1000000u;
	gw_xml_limits_default(&r->xml);
	r->xml.max_elems = (uint32_t)st->max_elements;
	rc = gw_xml_parser_create(&r->xp, &r->xml);
	if (rc) {
		shmex_error_set(err, rc, "xml parser: %s", shmex_strerror(rc));
		goto out_close;
	}
	r->nshards = r->inst.nshards;
	r->db = shm_instance_gateway_doorbell(&r->inst, gateway);
	rc = shm_accounts_attach(&r->accts, r->instance, SHM_RDONLY);
	if (rc) {
		if (err)
			*err = r->accts.region.err;
		goto out_close;
	}
	r->accts_ok = true;
	uint32_t n = r->nshards;
	r->req_ring = calloc(n, sizeof(*r->req_ring));
	r->rep_ring = calloc(n, sizeof(*r->rep_ring));
	r->rd = calloc(n, sizeof(*r->rd));
	r->rd_ok = calloc(n, 1);
	r->hist = calloc(n, sizeof(*r->hist));
	r->q = calloc(n, sizeof(*r->q));
	r->ring_bad = calloc(n, 1);
	r->path = calloc(n, 1);
	r->path_lost = calloc(n, 1);
	r->path_base = calloc(n, sizeof(uint64_t));
	/* The first turn looks at every ring (one may be under repair). */
	r->repairs_seen = UINT32_MAX;
	r->helper_repairs = UINT32_MAX;
	r->jobs = calloc(r->max_conns, sizeof(*r->jobs));
	if (!r->req_ring || !r->rep_ring || !r->rd || !r->rd_ok || !r->hist || !r->q ||
	    !r->jobs || !r->db || !r->ring_bad || !r->path || !r->path_lost ||
	    !r->path_base) {
		rc = shmex_error_set(err, -ENOMEM, "out of memory");
		goto out_close;
	}
	for (uint32_t i = 0; i < r->max_conns; i++) {
		gw_xml_req_init(&r->jobs[i].req);
		gw_reply_init(&r->jobs[i].reply, r->max_reply, false);
	}
	for (uint32_t s = 0; s < n; s++) {
		rc = open_shard(r, s, err);
		if (rc)
			goto out_close;
	}
	r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (r->efd < 0) {
		rc = shmex_error_set(err, -errno, "eventfd: %s", strerror(errno));
		goto out_close;
	}
	/* The helper must not take the process's signals (the loop reads
	 * them from a signalfd): block everything while creating it. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = -pthread_create(&r->helper, NULL, helper_main, r);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		shmex_error_set(err, rc, "helper thread: %s", strerror(-rc));
		goto out_close;
	}
	r->helper_started = true;
	*out = r;
	return 0;
out_close:
	gw_exec_close(r);
	return rc;
}

const struct shm_settings *gw_exec_settings(const struct gw_exec *r)
{
	return &r->inst.settings;
}

void gw_exec_close(struct gw_exec *r)
{
	if (!r)
		return;
	if (r->helper_started) {
		/* GW2-3: release; pairs with the helper's GW2-4. */
		store_release(&r->stop, 1u);
		futex_private(&r->armed, FUTEX_WAKE, 1, NULL);
		if (r->db)
			shm_doorbell_ring(r->db);
		pthread_join(r->helper, NULL);
	}
	if (r->efd >= 0)
		close(r->efd);
	for (uint32_t s = 0; s < r->nshards && r->rd_ok; s++)
		if (r->rd_ok[s])
			shm_snap_close(&r->rd[s]);
	for (uint32_t s = 0; s < r->nshards && r->hist; s++)
		shm_history_close(&r->hist[s]);
	if (r->jobs) {
		for (uint32_t i = 0; i < r->max_conns; i++) {
			gw_xml_req_free(&r->jobs[i].req);
			gw_reply_free(&r->jobs[i].reply);
		}
	}
	if (r->accts_ok)
		shm_accounts_detach(&r->accts);
	if (r->inst_ok)
		shm_instance_detach(&r->inst);
	gw_xml_parser_destroy(r->xp);
	free(r->req_ring);
	free(r->rep_ring);
	free(r->rd);
	free(r->rd_ok);
	free(r->hist);
	free(r->q);
	free(r->ring_bad);
	free(r->path);
	free(r->path_lost);
	free(r->path_base);
	free(r->jobs);
	free(r->fills);
	free(r);
}

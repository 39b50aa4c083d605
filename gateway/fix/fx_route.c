/*
 * fx_route: the FIX process's rings and book reads (see fx_route.h).
 *
 * Shape.  A FIFO of requests per shard waits for room in the shard's
 * request ring; fx_route_flush publishes as many as fit, in one batch per
 * shard (one release store and at most one doorbell per batch).  Each
 * request's ring position is known when it is queued (FIFO, one
 * producer), so the caller can record it before the request can reach a
 * matcher.  Replies are copied out of the reply rings in batches
 * (shm_ring_peek_batch) and consumed only after the caller has handled
 * and committed the whole batch, so a reply is never lost to a kill of
 * this process between taking it and recording its outcome; validated
 * (shm_msg_validate_reply, plus the ORDER reply's id belonging to the
 * shard that answered), and handed over.  Matching a reply to its request
 * is the caller's (by req_id), so a reply meant for a predecessor process
 * or forged is the caller's to drop.
 *
 * Book reads go through the read-side API (shm_snap.h), one reader handle
 * per shard, and report an order only when its last change is durable
 * (mod_event <= durable_event [BK10]), as the XML gateway does: a client is
 * never told of a fill that a crash could take back.
 *
 * Waking (FX1 labels, docs/concurrency.md): as in the XML gateway
 * (gw_exec.c, GW2), a helper thread sleeps on this gateway's doorbell only
 * while the loop armed it [FX1-1/FX1-2], and writes an eventfd the loop's
 * epoll watches once a reply ring is readable; the loop polls instead while
 * it makes progress.  The helper reads only shared ring indexes.
 *
 * Damaged rings (docs/ring.md, "Corruption and repair"): as in the XML
 * gateway (gw_exec.c), a damaged ring is reported and left alone, and the
 * loop takes part in its repair: asked to quiesce, it stops sending to
 * that shard, takes what the matcher published until the matcher has
 * acknowledged, acknowledges, and resumes in the new generation.  The
 * matcher's SHM_MSG_REPAIR notice reaches the caller as a restart notice
 * at the position below which every waiting request was not executed:
 * the new generation's first position, or (when the reply ring lost
 * replies) the position the matcher had taken requests up to, so that
 * nothing it may have executed is called "not executed".
 *
 * Limits: the queues grow without bound (the caller bounds what it
 * submits); RX_BATCH replies and TX_BATCH requests per ring operation.
 */
#include "gateway/fix/fx_route.h"

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shm/shm_accounts.h"
#include "shm/shm_atomic.h"
#include "shm/shm_doorbell.h"
#include "shm/shm_error.h"
#include "shm/shm_instance.h"
#include "shm/shm_msg.h"
#include "shm/shm_ring.h"
#include "shm/shm_shard.h"
#include "shm/shm_snap.h"

#define RX_BATCH 64
#define TX_BATCH 64

struct queue {
	struct shm_msg *m;
	size_t head, n, cap; /* a circular array */
};

struct fx_route {
	uint32_t gateway, nshards;
	char instance[SHM_INSTANCE_MAX + 1];
	struct shm_instance inst;
	bool inst_ok;
	struct shm_accounts accts;
	bool accts_ok;
	struct shm_ring *req, *rep; /* [nshards] */
	struct shm_snap *rd;        /* [nshards] */
	uint8_t *rd_ok;             /* [nshards] */
	struct queue *q;            /* [nshards] */
	struct shm_msg rx[RX_BATCH];
	struct shm_msg tx[TX_BATCH];
	struct shm_snap_fill *fills; /* scratch */
	size_t fills_cap;
	struct shm_snap_level *lv; /* scratch for depth reads */
	size_t lv_cap;
	struct shm_doorbell_sh *db; /* this gateway's */
	int efd;
	pthread_t helper;
	bool helper_started;
	/* Private to this process (loop thread and helper).  armed: W: loop
	 * 0 -> 1, release [FX1-1] + futex wake; helper 1 -> 0, relaxed,
	 * before it writes the eventfd; R: helper, acquire [FX1-2].  stop:
	 * W: close, release [FX1-3]; R: helper, acquire [FX1-4]. */
	uint32_t armed;
	uint32_t stop;
	/* Ring repair (loop thread only): per shard, bit 0 request ring and
	 * bit 1 reply ring damaged; the path's phase (0 in use, 1 draining,
	 * 2 acknowledged, 3 new generation, notice due), whether replies
	 * were lost, and the new generation's first position. */
	uint8_t *ring_bad, *path, *lost;
	uint64_t *base;
	uint32_t repairs_seen;
};

enum { FXP_IN_USE = 0, FXP_DRAINING = 1, FXP_ACKED = 2, FXP_NOTICE = 3 };

/* A ring of shard s is damaged: reported (RNG9) and logged once. */
static void fx_ring_damaged(struct fx_route *r, uint32_t s, bool request)
{
	uint8_t bit = request ? 1 : 2;
	struct shm_ring *ring = request ? &r->req[s] : &r->rep[s];
	enum shm_ring_side side = request ? SHM_RING_PRODUCER : SHM_RING_CONSUMER;
	shm_ring_report(ring, side);
	if (r->ring_bad[s] & bit)
		return;
	r->ring_bad[s] |= bit;
	char name[128], why[160];
	shm_instance_ring_name(&r->inst, request, r->gateway, s, name, sizeof(name));
	shm_ring_describe(ring, side, why, sizeof(why));
	fprintf(stderr,
		"shmex-fix: ring %s: %s (generation %u); not used until repaired\n", name,
		why, ring->gen);
}

/* Our part in the repair of shard s's rings (as gw_exec.c repair_path). */
static void fx_repair_path(struct fx_route *r, uint32_t s)
{
	enum shm_ring_repair rq = shm_ring_repair_state(&r->req[s]);
	enum shm_ring_repair rp = shm_ring_repair_state(&r->rep[s]);
	bool quiesce = rq == SHM_RING_QUIESCE || rp == SHM_RING_QUIESCE;
	if (quiesce && r->path[s] != FXP_ACKED) {
		r->path[s] = FXP_DRAINING;
		bool bad = (r->ring_bad[s] & 2) != 0;
		bool done = shm_ring_acked(&r->rep[s], SHM_RING_PRODUCER) ||
			    !shm_instance_member_alive(&r->inst, SHM_ROLE_MATCHER, s);
		if (!bad && (!done || shm_ring_readable(&r->rep[s])))
			return;
		r->lost[s] = bad;
		/* RNG11 inside: after our last use of each ring. */
		shm_ring_ack(&r->req[s], SHM_RING_PRODUCER);
		shm_ring_ack(&r->rep[s], SHM_RING_CONSUMER);
		r->path[s] = FXP_ACKED;
		return;
	}
	if (quiesce || (rq != SHM_RING_RESET && rp != SHM_RING_RESET))
		return;
	int rc = 0;
	if (rq == SHM_RING_RESET && shm_ring_resume(&r->req[s]) != 0)
		rc = -1;
	if (rp == SHM_RING_RESET && shm_ring_resume(&r->rep[s]) != 0)
		rc = -2;
	bool was_acked = r->path[s] == FXP_ACKED;
	r->ring_bad[s] = 0;
	if (rc)
		fx_ring_damaged(r, s, rc == -1);
	r->base[s] = shm_ring_produced(&r->req[s]);
	r->path[s] = was_acked ? FXP_NOTICE : FXP_IN_USE;
}

/* Once per loop turn [INS7]; the rings' states when ring_repairs moved
 * or while a path drains. */
static void fx_repair_check(struct fx_route *r)
{
	uint32_t seq = shm_instance_ring_repairs(&r->inst);
	bool moved = seq != r->repairs_seen;
	r->repairs_seen = seq;
	for (uint32_t s = 0; s < r->nshards; s++)
		if (moved || r->path[s] == FXP_DRAINING)
			fx_repair_path(r, s);
}

static long futex_private(uint32_t *uaddr, int op, uint32_t val,
			  const struct timespec *ts)
{
	return syscall(SYS_futex, uaddr, op | FUTEX_PRIVATE_FLAG, val, ts, NULL, 0);
}

/* Doorbell predicate: a reply ring holds replies, or stop. */
static bool replies_ready(void *arg)
{
	struct fx_route *r = arg;
	if (load_acquire(&r->stop)) /* FX1-4, pairs with FX1-3 */
		return true;
	for (uint32_t s = 0; s < r->nshards; s++)
		if (shm_ring_pending(&r->rep[s])) /* shared head/tail only */
			return true;
	return false;
}

static void *helper_main(void *arg)
{
	struct fx_route *r = arg;
	for (;;) {
		/* FX1-2: acquire; pairs with the loop's FX1-1. */
		while (!load_acquire(&r->armed) && !load_acquire(&r->stop) /* FX1-4 */) {
			struct timespec ts = {1, 0};
			futex_private(&r->armed, FUTEX_WAIT, 0, &ts);
		}
		if (load_acquire(&r->stop)) /* FX1-4 */
			break;
		int rc = shm_doorbell_wait(r->db, replies_ready, r, 0, 1000);
		if (load_acquire(&r->stop)) /* FX1-4 */
			break;
		if (rc == 0) {
			/* Relaxed: the eventfd write is the signal; a stale 1
			 * seen by the loop only skips one re-arm. */
			store_relaxed(&r->armed, 0u);
			uint64_t one = 1;
			(void)!write(r->efd, &one, sizeof(one));
		}
	}
	return NULL;
}

void fx_route_arm(struct fx_route *r)
{
	if (load_relaxed(&r->armed))
		return;
	/* FX1-1: release; pairs with the helper's FX1-2. */
	store_release(&r->armed, 1u);
	futex_private(&r->armed, FUTEX_WAKE, 1, NULL);
}

int fx_route_wake_fd(const struct fx_route *r)
{
	return r->efd;
}

void fx_route_woken(struct fx_route *r)
{
	uint64_t v;
	(void)!read(r->efd, &v, sizeof(v));
}

static int q_push(struct queue *q, const struct shm_msg *m)
{
	if (q->n == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 256;
		struct shm_msg *nm = malloc(cap * sizeof(*nm));
		if (!nm)
			return -ENOMEM;
		for (size_t i = 0; i < q->n; i++)
			nm[i] = q->m[(q->head + i) % q->cap];
		free(q->m);
		q->m = nm;
		q->cap = cap;
		q->head = 0;
	}
	q->m[(q->head + q->n) % q->cap] = *m;
	q->n++;
	return 0;
}

static void reopen_book(struct fx_route *r, uint32_t s)
{
	if (r->rd_ok[s])
		shm_snap_close(&r->rd[s]);
	r->rd_ok[s] = 0;
	if (shm_snap_open(&r->rd[s], r->instance, s) == 0)
		r->rd_ok[s] = 1;
}

int fx_route_open(struct fx_route **out, const char *instance, uint32_t gateway,
		  char *err, size_t errlen)
{
	*out = NULL;
	if (!shm_instance_name_valid(instance)) {
		snprintf(err, errlen, "invalid instance name \"%s\"",
			 instance ? instance : "");
		return SHMEX_EBADNAME;
	}
	struct fx_route *r = calloc(1, sizeof(*r));
	if (!r) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	snprintf(r->instance, sizeof(r->instance), "%s", instance);
	r->gateway = gateway;
	r->efd = -1;
	int rc = shm_instance_attach(instance, SHM_ROLE_GATEWAY, gateway, &r->inst);
	if (rc) {
		snprintf(err, errlen, "attach instance %s as gateway %u: %s", instance,
			 gateway, shmex_error_msg(&r->inst.err, rc));
		goto out_close;
	}
	r->inst_ok = true;
	r->nshards = r->inst.nshards;
	rc = shm_accounts_attach(&r->accts, instance, SHM_RDONLY);
	if (rc) {
		snprintf(err, errlen, "accounts of %s: %s", instance, shmex_strerror(rc));
		goto out_close;
	}
	r->accts_ok = true;
	uint32_t n = r->nshards;
	r->req = calloc(n, sizeof(*r->req));
	r->rep = calloc(n, sizeof(*r->rep));
	r->rd = calloc(n, sizeof(*r->rd));
	r->rd_ok = calloc(n, 1);
	r->q = calloc(n, sizeof(*r->q));
	r->ring_bad = calloc(n, 1);
	r->path = calloc(n, 1);
	r->lost = calloc(n, 1);
	r->base = calloc(n, sizeof(uint64_t));
	r->repairs_seen = UINT32_MAX; /* the first turn looks */
	if (!r->req || !r->rep || !r->rd || !r->rd_ok || !r->q || !r->ring_bad ||
	    !r->path || !r->lost || !r->base) {
		rc = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto out_close;
	}
	for (uint32_t s = 0; s < n; s++) {
		/* A damaged ring is attached all the same and reported: it
		 * is repaired with us, never a reason to exit. */
		rc = shm_instance_request_ring(&r->inst, gateway, s, &r->req[s]);
		if (rc == SHMEX_ERINGCORRUPT) {
			fx_ring_damaged(r, s, true);
			rc = 0;
		}
		if (!rc)
			rc = shm_instance_reply_ring(&r->inst, s, gateway, &r->rep[s]);
		if (rc == SHMEX_ERINGCORRUPT) {
			fx_ring_damaged(r, s, false);
			rc = 0;
		}
		if (rc) {
			snprintf(err, errlen, "rings of shard %u: %s", s,
				 shmex_strerror(rc));
			goto out_close;
		}
		rc = shm_snap_open(&r->rd[s], instance, s);
		if (rc) {
			snprintf(err, errlen, "book of shard %u: %s", s,
				 r->rd[s].err.msg);
			goto out_close;
		}
		r->rd_ok[s] = 1;
	}
	r->db = shm_instance_gateway_doorbell(&r->inst, gateway);
	r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (!r->db || r->efd < 0) {
		rc = -errno;
		snprintf(err, errlen, "doorbell or eventfd: %s", strerror(errno));
		goto out_close;
	}
	/* The helper takes no signals (the loop reads them from a signalfd). */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = -pthread_create(&r->helper, NULL, helper_main, r);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		snprintf(err, errlen, "helper thread: %s", strerror(-rc));
		goto out_close;
	}
	r->helper_started = true;
	*out = r;
	return 0;
out_close:
	fx_route_close(r);
	return rc;
}

void fx_route_close(struct fx_route *r)
{
	if (!r)
		return;
	if (r->helper_started) {
		store_release(&r->stop, 1u); /* FX1-3, pairs with FX1-4 */
		futex_private(&r->armed, FUTEX_WAKE, 1, NULL);
		shm_doorbell_ring(r->db);
		pthread_join(r->helper, NULL);
	}
	if (r->efd >= 0)
		close(r->efd);
	for (uint32_t s = 0; r->rd_ok && s < r->nshards; s++)
		if (r->rd_ok[s])
			shm_snap_close(&r->rd[s]);
	for (uint32_t s = 0; r->q && s < r->nshards; s++)
		free(r->q[s].m);
	if (r->accts_ok)
		shm_accounts_detach(&r->accts);
	if (r->inst_ok)
		shm_instance_detach(&r->inst);
	free(r->req);
	free(r->rep);
	free(r->rd);
	free(r->rd_ok);
	free(r->q);
	free(r->ring_bad);
	free(r->path);
	free(r->lost);
	free(r->base);
	free(r->fills);
	free(r->lv);
	free(r);
}

uint32_t fx_route_nshards(const struct fx_route *r)
{
	return r->nshards;
}

const char *fx_route_data_dir(const struct fx_route *r)
{
	return r->inst.data_dir;
}

uint64_t fx_route_max_request(const struct fx_route *r)
{
	return r->inst.settings.max_request;
}

uint64_t fx_route_deadline_ms(const struct fx_route *r)
{
	return r->inst.settings.deadline_ms;
}

uint64_t fx_route_max_conns(const struct fx_route *r)
{
	return r->inst.settings.max_conns;
}

uint64_t fx_route_spin_us(const struct fx_route *r)
{
	return r->inst.settings.spin_us;
}

bool fx_route_quiet(const struct fx_route *r)
{
	return r->inst.settings.quiet != 0;
}

bool fx_route_stopping(const struct fx_route *r)
{
	return shm_instance_stopping(&r->inst);
}

uint32_t fx_route_shard_of_order(const struct fx_route *r, uint64_t order_id)
{
	return shm_shard_of_order(order_id, r->nshards);
}

uint32_t fx_route_shard_of_symbol(const struct fx_route *r, const char *sym)
{
	return shm_shard_of_symbol(sym, strlen(sym), r->nshards);
}

int fx_route_send(struct fx_route *r, const struct fx_req *q, uint32_t *shard,
		  uint64_t *pos)
{
	struct shm_msg m;
	memset(&m, 0, sizeof(m));
	m.type = q->kind;
	m.req_id = q->req_id;
	m.account = q->account;
	uint32_t s;
	switch (q->kind) {
	case FX_REQ_ORDER:
		if (!shm_symbol_pack(m.u.symbol, q->symbol, strnlen(q->symbol, 16)))
			return SHMEX_EBADSYMBOL;
		m.side = q->side;
		m.tif = q->tif;
		m.flags = q->post_only ? SHM_MSG_POST_ONLY : 0;
		m.price = q->price;
		m.qty = q->qty;
		s = shm_shard_of_symbol(q->symbol, strlen(q->symbol), r->nshards);
		break;
	case FX_REQ_CANCEL:
	case FX_REQ_MODIFY:
		m.order_id = q->order_id;
		m.price = q->price;
		m.qty = q->qty;
		s = shm_shard_of_order(q->order_id, r->nshards);
		break;
	default:
		return SHMEX_EBADMSG;
	}
	/* The matcher validates again; checking here answers a bad request
	 * without a round trip and keeps the ring free of it. */
	int rc = shm_msg_validate_request(&m, s, r->nshards);
	if (rc)
		return rc;
	uint64_t at = shm_ring_produced(&r->req[s]) + r->q[s].n;
	rc = q_push(&r->q[s], &m);
	if (rc)
		return rc;
	*shard = s;
	*pos = at;
	return 0;
}

uint64_t fx_route_produced(const struct fx_route *r, uint32_t s)
{
	return s < r->nshards ? shm_ring_produced(&r->req[s]) : 0;
}

void fx_route_rings_id(const struct fx_route *r, char *out, size_t len)
{
	const struct shm_region_hdr_sh *h = r->inst.rings.base;
	snprintf(out, len, "%d.%llu", (int)h->creator_pid,
		 (unsigned long long)h->creator_start);
}

size_t fx_route_flush(struct fx_route *r, void (*sent)(void *, uint64_t, uint64_t),
		      void *ctx)
{
	size_t left = 0;
	for (uint32_t s = 0; s < r->nshards; s++) {
		struct queue *q = &r->q[s];
		bool blocked = (r->ring_bad[s] & 1) || r->path[s] == FXP_DRAINING ||
			       r->path[s] == FXP_ACKED;
		while (q->n > 0 && !blocked) {
			unsigned n = 0;
			while (n < TX_BATCH && n < q->n) {
				r->tx[n] = q->m[(q->head + n) % q->cap];
				n++;
			}
			unsigned done = 0;
			uint64_t base = shm_ring_produced(&r->req[s]);
			if (shm_ring_enqueue_batch(&r->req[s], r->tx, n, &done) != 0) {
				fx_ring_damaged(r, s, true);
				done = 0; /* corrupt: treated as full */
			}
			for (unsigned k = 0; k < done; k++)
				sent(ctx, r->tx[k].req_id, base + k);
			q->head = (q->head + done) % q->cap;
			q->n -= done;
			if (done < n)
				break;
		}
		left += q->n;
	}
	return left;
}

unsigned fx_route_replies(struct fx_route *r, void (*fn)(void *, const struct fx_reply *),
			  void (*commit)(void *), void *ctx)
{
	unsigned total = 0;
	fx_repair_check(r);
	for (uint32_t s = 0; s < r->nshards; s++) {
		if ((r->ring_bad[s] & 2) || r->path[s] == FXP_ACKED)
			continue; /* left alone until its repair */
		for (int round = 0; round < 8; round++) {
			unsigned got = 0;
			if (shm_ring_peek_batch(&r->rep[s], r->rx, RX_BATCH, &got) != 0) {
				fx_ring_damaged(r, s, false);
				break;
			}
			for (unsigned i = 0; i < got; i++) {
				const struct shm_msg *m = &r->rx[i];
				struct fx_reply y = {
					.kind = m->req_type,
					.shard = s,
					.status = m->status,
					.req_id = m->req_id,
					.order_id = m->order_id,
					.price = m->price,
					.qty = m->qty,
					.time_ns = m->u.r.time_ns,
				};
				if (shm_msg_validate_reply(m) != 0) {
					y.status = SHMEX_EINTERNAL;
				} else if (m->type == SHM_MSG_RESTART) {
					y.kind = FX_REPLY_RESTART;
					reopen_book(r, s);
					/* After a repair that lost replies, the
					 * successor cannot vouch for what waits:
					 * nothing is called "not executed". */
					if (r->path[s] == FXP_NOTICE && r->lost[s])
						y.order_id = 0;
					if (r->path[s] == FXP_NOTICE)
						r->path[s] = FXP_IN_USE;
				} else if (m->type == SHM_MSG_REPAIR) {
					if (r->path[s] != FXP_NOTICE)
						continue; /* not one we wait for */
					/* Below this position, a waiting request
					 * was not executed (the top of the file). */
					y.kind = FX_REPLY_RESTART;
					y.order_id =
						r->lost[s] ? m->order_id : r->base[s];
					r->path[s] = FXP_IN_USE;
				} else if (m->status == 0 &&
					   m->req_type == SHM_MSG_ORDER &&
					   (m->order_id == 0 ||
					    shm_shard_of_order(m->order_id, r->nshards) !=
						    s)) {
					y.status = SHMEX_EINTERNAL;
				}
				fn(ctx, &y);
			}
			/* Consumed only once their outcome is recorded. */
			if (got && commit)
				commit(ctx);
			shm_ring_consume(&r->rep[s], got);
			total += got;
			if (got < RX_BATCH)
				break;
		}
	}
	return total;
}

int fx_route_account_exists(const struct fx_route *r, uint64_t account)
{
	uint32_t idx;
	return shm_accounts_find(&r->accts, account, &idx) == 0;
}

int fx_route_order(struct fx_route *r, uint64_t id, struct fx_order *o,
		   struct fx_fill *fills, size_t max, size_t *n)
{
	uint32_t s = shm_shard_of_order(id, r->nshards);
	*n = 0;
	if (!r->rd_ok[s]) {
		reopen_book(r, s);
		if (!r->rd_ok[s])
			return SHMEX_EBUSY;
	}
	if (r->fills_cap < max) {
		struct shm_snap_fill *nf = realloc(r->fills, max * sizeof(*nf));
		if (!nf)
			return -ENOMEM;
		r->fills = nf;
		r->fills_cap = max;
	}
	struct shm_snap_order so;
	size_t got = 0;
	int rc = shm_snap_order(&r->rd[s], id, &so, r->fills, max, &got);
	if (rc)
		return rc;
	if (so.mod_event > shm_snap_durable_event(&r->rd[s]))
		return SHMEX_EBUSY;
	*o = (struct fx_order){
		.id = so.id,
		.account = so.account,
		.side = so.side,
		.tif = so.tif,
		.live = so.state == SHM_BOOK_ORDER_LIVE,
		.done_reason = so.done_reason,
		.price = so.price,
		.amount = so.amount,
		.open = so.open,
		.executed = so.executed,
		.cancelled = so.cancelled,
		.nfills = so.nfills,
	};
	for (size_t i = 0; i < got; i++)
		fills[i] = (struct fx_fill){
			.qty = r->fills[i].qty,
			.price = r->fills[i].price,
			.time_ns = r->fills[i].time_ns,
			.counterparty = r->fills[i].counterparty,
			.event = r->fills[i].event,
			.maker = r->fills[i].maker,
		};
	*n = got;
	return 0;
}

int fx_route_levels(struct fx_route *r, const char *sym, int side, struct fx_level *out,
		    size_t max, size_t *n)
{
	*n = 0;
	uint32_t s = shm_shard_of_symbol(sym, strlen(sym), r->nshards);
	if (!r->rd_ok[s]) {
		reopen_book(r, s);
		if (!r->rd_ok[s])
			return SHMEX_EBUSY;
	}
	uint32_t idx;
	int rc = shm_snap_symbol_find(&r->rd[s], sym, strlen(sym), &idx);
	if (rc)
		return rc;
	if (r->lv_cap < 2 * max) {
		struct shm_snap_level *nl = realloc(r->lv, 2 * max * sizeof(*nl));
		if (!nl)
			return -ENOMEM;
		r->lv = nl;
		r->lv_cap = 2 * max;
	}
	struct shm_snap_depth d = {.bids = r->lv, .asks = r->lv + max, .max = max};
	rc = shm_snap_depth(&r->rd[s], idx, &d);
	if (rc)
		return rc;
	const struct shm_snap_level *src = side == FX_BUY ? d.bids : d.asks;
	size_t k = side == FX_BUY ? d.nbids : d.nasks;
	for (size_t i = 0; i < k; i++)
		out[i] = (struct fx_level){.price = src[i].price, .qty = src[i].qty};
	*n = k;
	return 0;
}

uint64_t fx_route_events(const struct fx_route *r, uint32_t s)
{
	if (!r->rd_ok[s])
		return 0;
	return shm_snap_durable_event(&r->rd[s]);
}

const char *fx_route_strerror(int rc)
{
	return shmex_strerror(rc);
}

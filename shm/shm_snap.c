/*
 * shm_snap: consistent, bounds-checked reads of a shard's book from another
 * process (contract in shm_snap.h).
 *
 * Shape.  A public read that follows links into reused pools is one call
 * of shm_snap_section(): enter a read-side section of the shard's reader
 * table (RCU: nothing reachable is reused while we are inside), then try
 * a snapshot function up to max_retries times.  A read of records that
 * are never freed (the quote, an order record without fills) is the same
 * loop without the section (snap_unsectioned).  A snapshot function
 * reads its seqcount (the symbol's, the quote's or the record's) with
 * acquire [BK5]/[BK15]/[BK19], loads
 * what it needs (links with acquire [BK2], everything else relaxed), checks
 * the seqcount again after an acquire fence [BK6] and returns SNAP_RETRY
 * when it moved.  Only a stable snapshot is validated for corruption: an
 * impossible value seen while the seqcount was moving is just a torn read
 * and is retried, the same value in a stable snapshot is SHMEX_EBADINDEX.
 * After leave, a reader slot that was taken from us (SHMEX_ESLOTLOST)
 * voids the result: the handle re-registers and reads once more.
 *
 * Invariants checked on every stable snapshot: indexes below their pool's
 * capacity, lists no longer than their pool, levels strictly sorted (bids
 * descending, asks ascending: this also rules out cycles), each level live,
 * of this symbol and side, with positive quantity and count, a top of book
 * that is not crossed, an order whose open + executed + cancelled equals
 * its amount and whose fills are its own and add up to executed.
 *
 * Limits.  A writer preempted inside its window, or dead there, makes
 * reads of that symbol SHMEX_EBUSY until it moves on (the reader yields
 * every 16 tries).  The handle holds one reader slot for its lifetime.
 */
#include "shm/shm_snap.h"

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shm/shm_dec.h"
#include "shm/shm_error.h"
#include "shm/shm_msg.h"
#include "shm/shm_rcu_inline.h"

/* A snapshot function's "the seqcount moved, try again". */
#define SNAP_RETRY SHM_SNAP_RETRY

/* --- open / close ----------------------------------------------------------- */

int shm_snap_open(struct shm_snap *rd, const char *instance, unsigned shard)
{
	char name[SHM_REGION_NAME_MAX];
	memset(rd, 0, sizeof(*rd));
	rd->shard = shard;
	rd->max_retries = SHM_SNAP_RETRIES_DEFAULT;
	int rc = shm_region_name(name, SHM_KIND_BOOK, shard);
	if (!rc)
		rc = shm_region_attach(&rd->book, instance, name, SHM_KIND_BOOK,
				       SHM_RDONLY);
	if (rc) {
		rd->err = rd->book.err;
		return rc;
	}
	rc = shm_book_view_init(&rd->view, shm_region_body(&rd->book),
				shm_region_body_size(&rd->book));
	if (rc == 0 && rd->view.shard != shard)
		rc = SHMEX_EBADLAYOUT;
	if (rc) {
		shmex_error_set(&rd->err, rc, "book %s: %s", rd->book.name,
				shmex_strerror(rc));
		goto out_book;
	}
	rc = shm_rcu_attach(&rd->table, instance, shard, SHM_RCU_READER);
	if (rc) {
		/* The region error names the object; else say which. */
		if (rd->table.region.err.msg[0])
			rd->err = rd->table.region.err;
		else
			shmex_error_set(&rd->err, rc, "reader table of shard %u: %s",
					shard, shmex_strerror(rc));
		goto out_book;
	}
	rc = shm_rcu_register(&rd->table, &rd->reader);
	if (rc) {
		shmex_error_set(&rd->err, rc, "reader table of shard %u: %s", shard,
				shmex_strerror(rc));
		goto out_table;
	}
	rd->registered = true;
	return 0;

out_table:
	shm_rcu_detach(&rd->table);
out_book:
	shm_region_detach(&rd->book);
	return rc;
}

void shm_snap_close(struct shm_snap *rd)
{
	if (rd->registered)
		(void)!shm_rcu_unregister(&rd->reader);
	rd->registered = false;
	shm_rcu_detach(&rd->table);
	shm_region_detach(&rd->book);
	memset(&rd->view, 0, sizeof(rd->view));
}

/* --- the section and retry loop ---------------------------------------------- */

/* Takes a new slot after ours was taken from us. */
static int reregister(struct shm_snap *rd)
{
	rd->lost++;
	if (rd->registered)
		(void)!shm_rcu_unregister(&rd->reader);
	rd->registered = false;
	int rc = shm_rcu_register(&rd->table, &rd->reader);
	if (rc == 0)
		rd->registered = true;
	return rc;
}

/* 0, or why no section could be entered: SHMEX_ENOREADERSLOT when the
 * reader table is full (said as such, not as a busy book). */
static int section_enter(struct shm_snap *rd)
{
	int rc;
	if (!rd->registered && (rc = reregister(rd)) != 0)
		return rc;
	rc = shm_rcu_enter_inline(&rd->reader);
	if (rc == SHMEX_ESLOTLOST) {
		if ((rc = reregister(rd)) != 0)
			return rc;
		rc = shm_rcu_enter_inline(&rd->reader);
	}
	return rc;
}

/* The bounded seqcount retries of every read: fn until it stops answering
 * SNAP_RETRY, at most max_retries times, yielding now and then (a writer
 * preempted inside its window keeps the count odd). */
static int snap_attempts(struct shm_snap *rd, shm_snap_snap_fn fn, void *arg)
{
	unsigned tries = rd->max_retries ? rd->max_retries : 1;
	int res = SNAP_RETRY;
	for (unsigned t = 0; t < tries && res == SNAP_RETRY; t++) {
		if (t) {
			rd->retries++;
			if (t % 16 == 0)
				sched_yield();
			else
				cpu_relax();
		}
		res = fn(rd, arg);
	}
	return res;
}

/*
 * A read of records that are never freed (a symbol's quote, an order
 * record at the slot its id names) under their own seqcount alone, with
 * no read-side section: nothing it reads is a node that leaves a
 * structure and is reused after a grace period, so it holds no grace
 * period either.  A reader descheduled in the middle of such a read
 * costs the writer nothing; one descheduled inside a section keeps every
 * record retired since from reuse for its time slice.
 */
static int snap_unsectioned(struct shm_snap *rd, shm_snap_snap_fn fn, void *arg)
{
	rd->reads++;
	int res = snap_attempts(rd, fn, arg);
	if (res == SNAP_RETRY) {
		rd->busy++;
		return SHMEX_EBUSY;
	}
	return res;
}

/* shm_snap_section without counting a read (the caller did). */
static int sectioned(struct shm_snap *rd, shm_snap_snap_fn fn, void *arg)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		int rc = section_enter(rd);
		if (rc == SHMEX_ENOREADERSLOT)
			return rc;
		if (rc)
			break;
		int res = snap_attempts(rd, fn, arg);
		if (shm_rcu_leave_inline(&rd->reader) == 0) {
			if (res == SNAP_RETRY) {
				rd->busy++;
				return SHMEX_EBUSY;
			}
			return res;
		}
		/* The slot was taken during the section: what we read may
		 * be inconsistent.  Read again with a new slot. */
		rc = reregister(rd);
		if (rc == SHMEX_ENOREADERSLOT)
			return rc;
		if (rc)
			break;
	}
	rd->busy++;
	return SHMEX_EBUSY;
}

int shm_snap_section(struct shm_snap *rd, shm_snap_snap_fn fn, void *arg)
{
	rd->reads++;
	return sectioned(rd, fn, arg);
}

/* --- snapshot helpers ---------------------------------------------------------- */

/* What to answer when something impossible was seen: a torn read if the
 * snapshot moved, corruption if it did not. */
static int bad(const struct shm_book_sym_sh *s, uint64_t s1)
{
	return shm_book_seq_stable(s, s1) ? SHMEX_EBADINDEX : SNAP_RETRY;
}

uint32_t shm_snap_nsymbols(const struct shm_snap *rd)
{
	/* BK8: acquire; pairs with BK7 (entries below it are written). */
	uint32_t n = load_acquire(&rd->view.hdr->nsymbols);
	return n < rd->view.cap_symbols ? n : rd->view.cap_symbols;
}

/*
 * The symbol entry for a snapshot.  nsymbols only grows, and an entry
 * below a value this handle has loaded with acquire [BK8] stays visible to
 * it, so the header is read again only for an index at or above the last
 * value seen: a snapshot of a known symbol does not touch header line 2,
 * which the matcher writes on every request (its statistics).
 */
static const struct shm_book_sym_sh *symbol(struct shm_snap *rd, uint32_t sym)
{
	if (sym >= rd->nsym_seen)
		rd->nsym_seen = shm_snap_nsymbols(rd);
	return sym < rd->nsym_seen ? shm_book_sym_at(&rd->view, sym) : NULL;
}

/* One level of a side list, read relaxed (its price is immutable while it
 * is live; qty and count are covered by the seqcount).  False when the
 * record is impossible for (sym, side). */
static bool level_read(const struct shm_book_level_sh *l, uint32_t sym, unsigned side,
		       struct shm_snap_level *out)
{
	out->price = load_relaxed(&l->price);
	out->qty = load_relaxed(&l->qty);
	out->count = load_relaxed(&l->count);
	return load_relaxed(&l->state) == SHM_BOOK_LEVEL_LIVE &&
	       load_relaxed(&l->sym) == sym && load_relaxed(&l->side) == side &&
	       out->price > 0 && out->qty > 0 && out->count > 0;
}

/* --- symbols ------------------------------------------------------------------- */

int shm_snap_symbol_find(struct shm_snap *rd, const char *name, size_t len, uint32_t *sym)
{
	char packed[16];
	if (!shm_symbol_pack(packed, name, len))
		return SHMEX_EBADSYMBOL;
	uint32_t n = shm_snap_nsymbols(rd);
	for (uint32_t i = 0; i < n; i++) {
		/* Immutable after BK7, which BK8 made visible. */
		if (memcmp(rd->view.symbols[i].name, packed, sizeof(packed)) == 0) {
			*sym = i;
			return 0;
		}
	}
	return SHMEX_ENOSYMBOL;
}

int shm_snap_symbol_name(struct shm_snap *rd, uint32_t sym, char out[16])
{
	const struct shm_book_sym_sh *s = symbol(rd, sym);
	if (!s)
		return SHMEX_ENOSYMBOL;
	memcpy(out, s->name, 16);
	size_t len = shm_symbol_unpack_len(out);
	if (len > SHM_SYMBOL_MAX || !shm_symbol_valid(out, len)) {
		out[0] = '\0';
		return SHMEX_EBADINDEX;
	}
	memset(out + len, 0, 16 - len);
	return 0;
}

/* --- quotes: top of book and shallow depth -------------------------------------- */

/*
 * A snapshot of a symbol's quote (shm_book.h, BK15/BK16): the published
 * copy of its best levels and totals, which the matcher writes only when
 * it publishes, so that reading it touches no line the matcher writes
 * while it applies requests.  The levels are checked as the live list
 * would be: ndepth == min(nlevels, SHM_BOOK_QUOTE_LEVELS), each level
 * positive and strictly worse than the one before, the book not crossed.
 */
struct quote_copy {
	uint64_t book_seq;
	uint32_t nlevels[2], norders[2], ndepth[2];
	int64_t open_qty[2];
	int64_t last_price, last_qty, volume;
	uint64_t last_time_ns, trades;
	struct shm_snap_level lv[2][SHM_BOOK_QUOTE_LEVELS];
};

/* Copies the totals and the best `want` levels per side; SNAP_RETRY,
 * SHMEX_EBADINDEX for a stable but impossible quote, or 0. */
static int quote_read(const struct shm_book_quote_sh *q, size_t want,
		      struct quote_copy *c)
{
	uint64_t s1;
	bool ok = true;
	if (!shm_book_seqword_begin(&q->seq, &s1)) /* BK15 */
		return SNAP_RETRY;
	c->book_seq = load_relaxed(&q->book_seq);
	for (unsigned side = 0; side < 2; side++) {
		c->nlevels[side] = load_relaxed(&q->nlevels[side]);
		c->norders[side] = load_relaxed(&q->norders[side]);
		c->open_qty[side] = load_relaxed(&q->open_qty[side]);
		uint32_t nd = load_relaxed(&q->ndepth[side]);
		uint32_t exp = c->nlevels[side] < SHM_BOOK_QUOTE_LEVELS
				       ? c->nlevels[side]
				       : SHM_BOOK_QUOTE_LEVELS;
		ok = ok && nd == exp;
		nd = nd < want ? nd : (uint32_t)want;
		c->ndepth[side] = nd;
		for (uint32_t k = 0; ok && k < nd; k++) {
			const struct shm_book_quote_level_sh *x = &q->level[k][side];
			struct shm_snap_level *l = &c->lv[side][k];
			l->price = load_relaxed(&x->price);
			l->qty = load_relaxed(&x->qty);
			l->count = load_relaxed(&x->count);
			ok = l->price > 0 && l->qty > 0 && l->count > 0 &&
			     (k == 0 || (side == SHM_SIDE_BUY ? l->price < l[-1].price
							      : l->price > l[-1].price));
		}
	}
	c->last_price = load_relaxed(&q->last_price);
	c->last_qty = load_relaxed(&q->last_qty);
	c->last_time_ns = load_relaxed(&q->last_time_ns);
	c->trades = load_relaxed(&q->trades);
	c->volume = load_relaxed(&q->volume);
	bool stable = shm_book_seqword_stable(&q->seq, s1); /* BK16 */
	if (!stable)
		return SNAP_RETRY;
	if (!ok || (c->ndepth[0] > 0 && c->ndepth[1] > 0 &&
		    c->lv[0][0].price >= c->lv[1][0].price))
		return SHMEX_EBADINDEX; /* impossible, or crossed */
	return 0;
}

struct quote_arg {
	const struct shm_book_quote_sh *q;
	size_t want;
	struct quote_copy c;
};

static int quote_snap(struct shm_snap *rd, void *p)
{
	struct quote_arg *a = p;
	return quote_read(a->q, a->want, &a->c);
}

int shm_snap_top(struct shm_snap *rd, uint32_t sym, struct shm_snap_top *out)
{
	if (!symbol(rd, sym))
		return SHMEX_ENOSYMBOL;
	struct quote_arg a = {.q = shm_book_quote_at(&rd->view, sym), .want = 1};
	int rc = snap_unsectioned(rd, quote_snap, &a);
	if (rc)
		return rc;
	const struct quote_copy *c = &a.c;
	struct shm_snap_top t;
	memset(&t, 0, sizeof(t));
	for (unsigned side = 0; side < 2; side++) {
		t.nlevels[side] = c->nlevels[side];
		t.norders[side] = c->norders[side];
		t.open_qty[side] = c->open_qty[side];
	}
	t.has_bid = c->ndepth[0] > 0;
	t.has_ask = c->ndepth[1] > 0;
	if (t.has_bid) {
		t.bid_price = c->lv[0][0].price;
		t.bid_qty = c->lv[0][0].qty;
		t.bid_orders = c->lv[0][0].count;
	}
	if (t.has_ask) {
		t.ask_price = c->lv[1][0].price;
		t.ask_qty = c->lv[1][0].qty;
		t.ask_orders = c->lv[1][0].count;
	}
	t.last_price = c->last_price;
	t.last_qty = c->last_qty;
	t.last_time_ns = c->last_time_ns;
	t.trades = c->trades;
	t.volume = c->volume;
	t.seq = c->book_seq;
	*out = t;
	return 0;
}

/* --- depth -------------------------------------------------------------------------- */

struct depth_arg {
	uint32_t sym;
	const struct shm_book_sym_sh *s;
	struct shm_snap_depth *d;
};

/* Walks one side into out[0..max); returns false on an impossible list. */
static bool side_walk(const struct shm_snap *rd, const struct shm_book_sym_sh *s,
		      uint32_t sym, unsigned side, struct shm_snap_level *out, size_t max,
		      size_t *n, bool *more)
{
	/* BK2: acquire; pairs with BK1. */
	uint32_t i = load_acquire(&s->head[side]);
	size_t k = 0;
	*more = false;
	while (i != SHM_BOOK_NIL) {
		if (k == max) {
			*more = true;
			break;
		}
		const struct shm_book_level_sh *l = shm_book_level_at(&rd->view, i);
		if (!l || k >= rd->view.cap_levels || !level_read(l, sym, side, &out[k]))
			return false;
		/* Strictly worse than the previous level: sorted, no cycle. */
		if (k > 0 && (side == SHM_SIDE_BUY ? out[k].price >= out[k - 1].price
						   : out[k].price <= out[k - 1].price))
			return false;
		k++;
		i = load_acquire(&l->next); /* BK2 */
	}
	*n = k;
	return true;
}

/* Deeper than the quote: the live lists, under the symbol's seqcount. */
static int depth_snap(struct shm_snap *rd, void *p)
{
	struct depth_arg *a = p;
	struct shm_snap_depth *d = a->d;
	uint64_t s1;
	if (!shm_book_seq_begin(a->s, &s1))
		return SNAP_RETRY;
	size_t nb = 0, na = 0;
	bool mb = false, ma = false;
	if (!side_walk(rd, a->s, a->sym, SHM_SIDE_BUY, d->bids, d->max, &nb, &mb) ||
	    !side_walk(rd, a->s, a->sym, SHM_SIDE_SELL, d->asks, d->max, &na, &ma))
		return bad(a->s, s1);
	if (!shm_book_seq_stable(a->s, s1))
		return SNAP_RETRY;
	if (nb > 0 && na > 0 && d->bids[0].price >= d->asks[0].price)
		return SHMEX_EBADINDEX; /* crossed book */
	d->nbids = nb;
	d->nasks = na;
	d->more_bids = mb;
	d->more_asks = ma;
	d->seq = s1;
	return 0;
}

int shm_snap_depth(struct shm_snap *rd, uint32_t sym, struct shm_snap_depth *d)
{
	struct depth_arg a = {sym, symbol(rd, sym), d};
	d->nbids = d->nasks = 0;
	d->more_bids = d->more_asks = false;
	if (!a.s)
		return SHMEX_ENOSYMBOL;
	if (d->max > 0 && (!d->bids || !d->asks))
		return -EINVAL;
	if (d->max > SHM_BOOK_QUOTE_LEVELS)
		return shm_snap_section(rd, depth_snap, &a);
	struct quote_arg q = {.q = shm_book_quote_at(&rd->view, sym), .want = d->max};
	int rc = snap_unsectioned(rd, quote_snap, &q);
	if (rc)
		return rc;
	memcpy(d->bids, q.c.lv[0], q.c.ndepth[0] * sizeof(*d->bids));
	memcpy(d->asks, q.c.lv[1], q.c.ndepth[1] * sizeof(*d->asks));
	d->nbids = q.c.ndepth[0];
	d->nasks = q.c.ndepth[1];
	d->more_bids = q.c.nlevels[0] > q.c.ndepth[0];
	d->more_asks = q.c.nlevels[1] > q.c.ndepth[1];
	d->seq = q.c.book_seq;
	return 0;
}

/* --- order status --------------------------------------------------------------------- */

struct order_arg {
	uint64_t id;
	const struct shm_book_order_sh *o;
	struct shm_snap_order *out;
	struct shm_snap_fill *fills;
	size_t max_fills;
	size_t *nfills;
	bool sectioned; /* false: the record alone, SNAP_FILLS if it has fills */
};

/* order_snap outside a section met a record with fills: the fill records
 * are pool nodes, so the read is done again inside one. */
#define SNAP_FILLS 2

/* a + b + c == want, without overflow, all >= 0. */
static bool sums_to(int64_t a, int64_t b, int64_t c, int64_t want)
{
	int64_t ab, abc;
	if (a < 0 || b < 0 || c < 0)
		return false;
	if (__builtin_add_overflow(a, b, &ab) || __builtin_add_overflow(ab, c, &abc))
		return false;
	return abc == want;
}

/* What to answer for an impossible record: a torn read if the record
 * moved, corruption if it did not. */
static int order_bad(const struct shm_book_order_sh *o, uint64_t s1)
{
	return shm_book_seqword_stable(&o->seq, s1) ? SHMEX_EBADINDEX : SNAP_RETRY;
}

/* A snapshot of one order record under its own seqcount [BK19]/[BK20]:
 * no symbol entry is read (the matcher writes those on every request),
 * only the record and its fills. */
static int order_snap(struct shm_snap *rd, void *p)
{
	struct order_arg *a = p;
	const struct shm_book_order_sh *o = a->o;
	struct shm_snap_order r;
	uint64_t s1;
	if (!shm_book_seqword_begin(&o->seq, &s1)) /* BK19 */
		return SNAP_RETRY;
	memset(&r, 0, sizeof(r));
	r.id = load_relaxed(&o->id);
	r.state = load_relaxed(&o->state);
	bool mine = r.id == a->id && r.state != SHM_BOOK_ORDER_FREE;
	size_t copied = 0;
	bool ok = true;
	int64_t sum = 0;
	uint32_t walked = 0;
	if (mine) {
		r.account = load_relaxed(&o->account);
		r.sym = load_relaxed(&o->sym);
		r.side = load_relaxed(&o->side);
		r.tif = load_relaxed(&o->tif);
		r.done_reason = load_relaxed(&o->done_reason);
		r.price = load_relaxed(&o->price);
		r.amount = load_relaxed(&o->amount);
		r.open = load_relaxed(&o->open);
		r.executed = load_relaxed(&o->executed);
		r.cancelled = load_relaxed(&o->cancelled);
		r.time_ns = load_relaxed(&o->time_ns);
		r.cancel_time_ns = load_relaxed(&o->cancel_time_ns);
		r.nfills = load_relaxed(&o->nfills);
		r.mod_event = load_relaxed(&o->mod_event);
		/* BK2: acquire of each link; pairs with BK1. */
		uint32_t f = load_acquire(&o->fill_head);
		if (!a->sectioned && (r.nfills != 0 || f != SHM_BOOK_NIL)) {
			/* Seen stable, it has fills: walk them in a section. */
			if (!shm_book_seqword_stable(&o->seq, s1))
				return SNAP_RETRY;
			return SNAP_FILLS;
		}
		while (f != SHM_BOOK_NIL) {
			const struct shm_book_fill_sh *fl =
				shm_book_fill_at(&rd->view, f);
			if (!fl || walked >= rd->view.cap_fills) {
				ok = false;
				break;
			}
			int64_t q = load_relaxed(&fl->qty);
			if (q <= 0 || load_relaxed(&fl->order_id) != a->id ||
			    __builtin_add_overflow(sum, q, &sum)) {
				ok = false;
				break;
			}
			if (copied < a->max_fills) {
				struct shm_snap_fill *x = &a->fills[copied++];
				x->qty = q;
				x->price = load_relaxed(&fl->price);
				x->time_ns = load_relaxed(&fl->time_ns);
				x->counterparty = load_relaxed(&fl->counterparty);
				x->event = load_relaxed(&fl->event);
				x->maker = load_relaxed(&fl->maker) != 0;
			}
			walked++;
			f = load_acquire(&fl->next);
		}
	}
	if (!ok)
		return order_bad(o, s1);
	if (!shm_book_seqword_stable(&o->seq, s1)) /* BK20 */
		return SNAP_RETRY;
	if (!mine)
		return SHMEX_ENOORDER;
	/* Stable: check what a status promises.  The symbol was published
	 * before any order of it existed [BK7]; an index our handle has not
	 * seen published yet is looked up again (symbol()). */
	if (!symbol(rd, r.sym))
		return SHMEX_EBADINDEX;
	if ((r.state != SHM_BOOK_ORDER_LIVE && r.state != SHM_BOOK_ORDER_DONE) ||
	    r.side > SHM_SIDE_SELL || r.tif > SHM_TIF_FOK ||
	    r.done_reason > SHM_BOOK_DONE_MODIFY || r.amount <= 0 || r.price <= 0 ||
	    !sums_to(r.open, r.executed, r.cancelled, r.amount) || sum != r.executed ||
	    walked != r.nfills || (r.state == SHM_BOOK_ORDER_LIVE) != (r.open > 0))
		return SHMEX_EBADINDEX;
	*a->out = r;
	*a->nfills = copied;
	return 0;
}

int shm_snap_order(struct shm_snap *rd, uint64_t id, struct shm_snap_order *o,
		   struct shm_snap_fill *fills, size_t max_fills, size_t *nfills)
{
	const struct shm_book_view *v = &rd->view;
	*nfills = 0;
	if (max_fills > 0 && !fills)
		return -EINVAL;
	if (id == 0)
		return SHMEX_ENOORDER;
	if (shm_shard_of_order(id, v->nshards) != v->shard)
		return SHMEX_EWRONGSHARD;
	uint64_t slot = shm_order_slot(id, v->nshards, v->cap_orders);
	struct order_arg a = {
		id,   shm_book_order_at(v, (uint32_t)slot), o, fills, max_fills, nfills,
		false};
	if (!a.o)
		return SHMEX_EBADINDEX;
	/* The record is at a fixed slot and has a seqcount of its own: an
	 * order without fills is read without a section. */
	int rc = snap_unsectioned(rd, order_snap, &a);
	if (rc != SNAP_FILLS)
		return rc;
	a.sectioned = true;
	return sectioned(rd, order_snap, &a); /* the same read: counted once */
}

bool shm_snap_order_issued(const struct shm_snap *rd, uint64_t id)
{
	const struct shm_book_view *v = &rd->view;
	return id != 0 && shm_shard_of_order(id, v->nshards) == v->shard &&
	       shm_book_order_issued(v, id);
}

/* --- statistics ------------------------------------------------------------------------- */

void shm_snap_stats(struct shm_snap *rd, struct shm_snap_shard_stats *st)
{
	const struct shm_book_view *v = &rd->view;
	const struct shm_book_hdr_sh *h = v->hdr;
	memset(st, 0, sizeof(*st));
	st->shard = v->shard;
	st->nshards = v->nshards;
	st->cap_symbols = v->cap_symbols;
	st->cap_levels = v->cap_levels;
	st->cap_orders = v->cap_orders;
	st->cap_fills = v->cap_fills;
	st->nsymbols = shm_snap_nsymbols(rd);
	/* Relaxed: statistics (shm_book.h), informative only. */
	st->levels_live = load_relaxed(&h->levels_live);
	st->orders_live = load_relaxed(&h->orders_live);
	st->orders_used = load_relaxed(&h->orders_used);
	st->fills_used = load_relaxed(&h->fills_used);
	st->events = load_relaxed(&h->events);
	st->last_seq = load_relaxed(&h->last_seq);
	st->last_time_ns = load_relaxed(&h->last_time_ns);
	st->orders_created = load_relaxed(&h->orders_created);
	st->rejects_full = load_relaxed(&h->rejects_full);
	for (int i = 0; i < SHM_BOOK_REJECT_CAUSES; i++)
		st->rejects_by[i] = load_relaxed(&h->rejects_by[i]);
	st->book_safe_epoch = load_relaxed(&h->safe_epoch);
	shm_rcu_stats(&rd->table, &st->readers);
}

/* Decimal text of a fixed-point value, for violation messages. */
struct snap_num {
	char s[48];
};

static struct snap_num snap_dec(int64_t v, int digits)
{
	struct snap_num n;
	if (shm_dec_format(n.s, sizeof(n.s), v, digits) < 0)
		snprintf(n.s, sizeof(n.s), "?");
	return n;
}

#define PX(v) (snap_dec((v), SHM_PRICE_DIGITS).s)
#define QTY(v) (snap_dec((v), SHM_QTY_DIGITS).s)

static const char *side_name(unsigned side)
{
	return side == SHM_SIDE_BUY ? "buy" : side == SHM_SIDE_SELL ? "sell" : "?";
}

/* --- full-book snapshot ------------------------------------------------------ */

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	size_t n = *cap ? *cap : 64;
	while (n < need)
		n *= 2;
	void *p = realloc(*arr, n * elem);
	if (!p)
		return -ENOMEM;
	*arr = p;
	*cap = n;
	return 0;
}

struct walk {
	struct shm_snap *rd;
	const struct shm_book_sym_sh *ss;
	struct shm_snap_book *s;
	size_t max_levels;
	bool orders;
	unsigned attempts; /* calls of snap_attempt */
};

/* One attempt: 0 (stable, in bounds), SNAP_RETRY, SHMEX_EBADINDEX (stable
 * but out of bounds), -ENOMEM. */
static int snap_try(struct walk *w)
{
	const struct shm_book_view *v = &w->rd->view;
	const struct shm_book_sym_sh *ss = w->ss;
	struct shm_snap_book *s = w->s;
	int err = 0;
	uint32_t walked_lev = 0, walked_ord = 0;

	uint64_t s1;
	if (!shm_book_seq_begin(ss, &s1)) /* BK5 */
		return SNAP_RETRY;
	s->nlev = s->nord = 0;
	for (unsigned side = 0; side < 2 && !err; side++) {
		s->side_first[side] = s->nlev;
		s->side_n[side] = 0;
		s->more[side] = false;
		/* BK2: acquire; pairs with BK1 (the level is initialised). */
		uint32_t li = load_acquire(&ss->head[side]);
		while (li != SHM_BOOK_NIL) {
			if (w->max_levels && s->side_n[side] == w->max_levels) {
				s->more[side] = true;
				break;
			}
			const struct shm_book_level_sh *l = shm_book_level_at(v, li);
			if (!l || walked_lev++ >= v->cap_levels) {
				err = SHMEX_EBADINDEX;
				break;
			}
			if (grow((void **)&s->levels, &s->cap_lev, s->nlev + 1,
				 sizeof(*s->levels))) {
				err = -ENOMEM;
				break;
			}
			struct shm_snap_book_level *L = &s->levels[s->nlev++];
			s->side_n[side]++;
			/* Relaxed: covered by the seqcount (BK5/BK6). */
			L->price = load_relaxed(&l->price);
			L->qty = load_relaxed(&l->qty);
			L->count = load_relaxed(&l->count);
			L->sym = load_relaxed(&l->sym);
			L->side = load_relaxed(&l->side);
			L->state = load_relaxed(&l->state);
			L->index = li;
			L->first = (uint32_t)s->nord;
			L->n = 0;
			/* BK2 */
			uint32_t oi = w->orders ? load_acquire(&l->head) : SHM_BOOK_NIL;
			while (oi != SHM_BOOK_NIL) {
				const struct shm_book_order_sh *o =
					shm_book_order_at(v, oi);
				if (!o || walked_ord++ >= v->cap_orders) {
					err = SHMEX_EBADINDEX;
					break;
				}
				if (grow((void **)&s->ords, &s->cap_ord, s->nord + 1,
					 sizeof(*s->ords))) {
					err = -ENOMEM;
					break;
				}
				struct shm_snap_book_order *O = &s->ords[s->nord++];
				L->n++;
				/* Relaxed: covered by the seqcount. */
				O->id = load_relaxed(&o->id);
				O->account = load_relaxed(&o->account);
				O->price = load_relaxed(&o->price);
				O->amount = load_relaxed(&o->amount);
				O->open = load_relaxed(&o->open);
				O->executed = load_relaxed(&o->executed);
				O->cancelled = load_relaxed(&o->cancelled);
				O->time_ns = load_relaxed(&o->time_ns);
				O->sym = load_relaxed(&o->sym);
				O->side = load_relaxed(&o->side);
				O->tif = load_relaxed(&o->tif);
				O->state = load_relaxed(&o->state);
				O->level = load_relaxed(&o->level);
				O->index = oi;
				oi = load_acquire(&o->next); /* BK2 */
			}
			if (err)
				break;
			li = load_acquire(&l->next); /* BK2 */
		}
	}
	for (unsigned side = 0; side < 2; side++) {
		s->nlevels[side] = load_relaxed(&ss->nlevels[side]);
		s->norders[side] = load_relaxed(&ss->norders[side]);
		s->open_qty[side] = load_relaxed(&ss->open_qty[side]);
	}
	s->last_price = load_relaxed(&ss->last_price);
	s->last_qty = load_relaxed(&ss->last_qty);
	s->last_time_ns = load_relaxed(&ss->last_time_ns);
	s->trades = load_relaxed(&ss->trades);
	s->volume = load_relaxed(&ss->volume);
	if (!shm_book_seq_stable(ss, s1)) /* BK6 */
		return SNAP_RETRY;
	if (err)
		return err;
	s->seq = s1;
	return 0;
}

/* shm_snap_section's snapshot function: one attempt of snap_try. */
static int snap_attempt(struct shm_snap *rd, void *arg)
{
	struct walk *w = arg;
	(void)rd;
	w->attempts++;
	return snap_try(w);
}

int shm_snap_book_read(struct shm_snap *rd, uint32_t sym, size_t max_levels, bool orders,
		       struct shm_snap_book *s)
{
	uint32_t nsym = shm_snap_nsymbols(rd);
	const struct shm_book_sym_sh *ss =
		sym < nsym ? shm_book_sym_at(&rd->view, sym) : NULL;
	if (!ss)
		return SHMEX_ENOSYMBOL;
	/* Immutable after publication [BK7], which nsymbols' BK8 made visible.
	 */
	memcpy(s->name, ss->name, sizeof(s->name));
	s->name[15] = '\0';
	s->sym = sym;
	s->shard = rd->view.shard;
	s->orders = orders;
	s->retries = 0;
	struct walk w = {rd, ss, s, max_levels, orders, 0};
	int rc = shm_snap_section(rd, snap_attempt, &w);
	s->retries = w.attempts ? w.attempts - 1 : 0;
	return rc;
}

void shm_snap_book_free(struct shm_snap_book *s)
{
	free(s->levels);
	free(s->ords);
	memset(s, 0, sizeof(*s));
}

#define VIOLATION(...)                           \
	do {                                     \
		snprintf(why, len, __VA_ARGS__); \
		return SHMEX_EINTERNAL;          \
	} while (0)

static int check_order(const struct shm_snap_book *s, const struct shm_book_view *v,
		       const struct shm_snap_book_level *L,
		       const struct shm_snap_book_order *O, char *why, size_t len)
{
	const char *sd = side_name(L->side);
	if (O->state != SHM_BOOK_ORDER_LIVE)
		VIOLATION("%s %s level %s: order %" PRIu64
			  " (record %u) is not live (state %u)",
			  s->name, sd, PX(L->price), O->id, O->index, O->state);
	if (O->id == 0 || shm_shard_of_order(O->id, v->nshards) != v->shard ||
	    shm_order_slot(O->id, v->nshards, v->cap_orders) != O->index)
		VIOLATION("%s: record %u holds id %" PRIu64
			  ", which names another record",
			  s->name, O->index, O->id);
	if (O->sym != s->sym || O->side != L->side || O->price != L->price ||
	    O->level != L->index)
		VIOLATION("%s %s level %s: order %" PRIu64 " belongs elsewhere "
			  "(sym %u side %u price %s level %u)",
			  s->name, sd, PX(L->price), O->id, O->sym, O->side, PX(O->price),
			  O->level);
	if (O->open <= 0 || O->amount <= 0 ||
	    !sums_to(O->open, O->executed, O->cancelled, O->amount))
		VIOLATION("%s: order %" PRIu64 ": open %s + executed %s + cancelled %s "
			  "!= amount %s",
			  s->name, O->id, QTY(O->open), QTY(O->executed),
			  QTY(O->cancelled), QTY(O->amount));
	return 0;
}

int shm_snap_book_check(const struct shm_snap_book *s, const struct shm_book_view *v,
			char *why, size_t len)
{
	for (unsigned side = 0; side < 2; side++) {
		const char *sd = side == SHM_SIDE_BUY ? "bid" : "ask";
		uint32_t sum_count = 0;
		int64_t sum_qty = 0;
		for (size_t k = 0; k < s->side_n[side]; k++) {
			const struct shm_snap_book_level *L =
				&s->levels[s->side_first[side] + k];
			if (L->state != SHM_BOOK_LEVEL_LIVE || L->sym != s->sym ||
			    L->side != side)
				VIOLATION("%s %s level %u (price %s) is not a live "
					  "level "
					  "of this side (state %u sym %u side %u)",
					  s->name, sd, L->index, PX(L->price), L->state,
					  L->sym, L->side);
			if (L->price <= 0 || L->qty <= 0 || L->count == 0)
				VIOLATION("%s %s level %s: empty or negative "
					  "(qty %s, %u orders)",
					  s->name, sd, PX(L->price), QTY(L->qty),
					  L->count);
			if (k > 0) {
				int64_t prev =
					s->levels[s->side_first[side] + k - 1].price;
				if (side == SHM_SIDE_BUY ? L->price >= prev
							 : L->price <= prev)
					VIOLATION("%s %ss not strictly "
						  "ordered: %s after %s",
						  s->name, sd, PX(L->price), PX(prev));
			}
			if (__builtin_add_overflow(sum_qty, L->qty, &sum_qty))
				VIOLATION("%s %s side: quantity overflows", s->name, sd);
			sum_count += L->count;
			if (!s->orders)
				continue;
			int64_t open = 0;
			for (uint32_t j = 0; j < L->n; j++) {
				const struct shm_snap_book_order *O =
					&s->ords[L->first + j];
				int rc = check_order(s, v, L, O, why, len);
				if (rc)
					return rc;
				if (__builtin_add_overflow(open, O->open, &open))
					VIOLATION("%s %s level %s: open "
						  "quantity overflows",
						  s->name, sd, PX(L->price));
			}
			if (L->n != L->count)
				VIOLATION("%s %s level %s: count %u but %u "
					  "orders queued",
					  s->name, sd, PX(L->price), L->count, L->n);
			if (open != L->qty)
				VIOLATION("%s %s level %s: qty %s but its "
					  "orders hold %s",
					  s->name, sd, PX(L->price), QTY(L->qty),
					  QTY(open));
		}
		if (s->more[side])
			continue;
		if (s->nlevels[side] != s->side_n[side] ||
		    s->norders[side] != sum_count || s->open_qty[side] != sum_qty)
			VIOLATION("%s %s side: counters say %u levels, %u "
				  "orders, %s shares; "
				  "the list has %zu, %u, %s",
				  s->name, sd, s->nlevels[side], s->norders[side],
				  QTY(s->open_qty[side]), s->side_n[side], sum_count,
				  QTY(sum_qty));
	}
	if (s->side_n[0] && s->side_n[1]) {
		int64_t bid = s->levels[s->side_first[0]].price;
		int64_t ask = s->levels[s->side_first[1]].price;
		if (bid >= ask)
			VIOLATION("%s is crossed: best bid %s >= best ask %s", s->name,
				  PX(bid), PX(ask));
	}
	return 0;
}

/*
 * eng_core: the pure matching core of one shard (contract in eng_core.h,
 * shared layout and reader protocol in shm/shm_book.h, rules in
 * docs/matching.md).
 *
 * Shape.  The book is split in two:
 *
 *  - what readers need lives in the shared area (shm_book.h): per symbol a
 *    best-to-worst singly linked list of price levels per side, per level a
 *    FIFO queue of order records, per order a list of fill records, all
 *    addressed by uint32 index;
 *  - what only the writer needs lives in this handle: per symbol side a
 *    sorted array of (key, level) with the BEST price at the END, so the
 *    touch is a[n-1], a sweep pops from the end, and inserting or removing
 *    a level near the touch moves only a few entries (QuantCup-style
 *    integer arrays; a search looks at the last few entries first, then
 *    bisects); a hash (symbol, side, price) -> LIVE level, so resting an
 *    order at an existing level never searches the array; free stacks
 *    and retirement FIFOs (with the retire epochs) of the pools; the first
 *    fill indexes of every order slot; a hash of symbol names.
 *
 * Memory behaviour.  Order records are recycled oldest-DONE-first, so in
 * steady state every new order takes the coldest record of the pool; the
 * record PREFETCH_AHEAD steps ahead in the done FIFO (both lines, and its
 * private fill indexes) is prefetched into all cache levels (not NTA: an
 * NTA line evicted from L1 before use goes back to memory).  Its fills are
 * freed from the private index array instead of by walking its cold fill
 * list, and prefetched as they are pushed: the fill free stack is LIFO, so
 * they are the next fills written, and they are as cold as the order.
 * Order id -> slot uses shifts and masks when nshards and cap_orders are
 * powers of two (three 64-bit divisions otherwise).  Events are built
 * field by field (a zeroing initializer of the 136-byte event compiles to
 * `rep stos`, measurably slower).
 *
 * Keys: bids use key = price, asks key = -price, so for both sides
 * "ascending key" means "worse to better" and one code path serves both.
 * Prices are > 0, so the negation never overflows.
 *
 * Invariants (eng_core_check verifies all of them):
 *  - side array a[0..n) strictly ascending; level a[i].next == a[i-1]
 *    (a[0].next == NIL) and sym.head[side] == a[n-1] (NIL when n == 0);
 *  - a LIVE level holds >= 1 order, except transiently inside a request;
 *    its qty/count are the sums over its queue;
 *  - every LIVE order rests in exactly one queue between requests; a
 *    record satisfies open + executed + cancelled == amount between
 *    requests; executed is the sum of its fills;
 *  - the book is never crossed between requests;
 *  - pools: every level is FREE (free stack or never used), LIVE or
 *    RETIRED (in the retirement FIFO); every order slot is FREE (free
 *    stack or never used), LIVE, or DONE (in the done FIFO); every fill is
 *    free or owned by exactly one non-FREE order, and the first
 *    ORDER_FILLS of an order's fills are mirrored in ofills[slot].
 *
 * Shared-memory writes.  Each request that changes a symbol runs inside
 * that symbol's seqcount window [BK3]..[BK4]; every field readers read is
 * written with store_relaxed inside the window (the window orders them),
 * every link with store_release [BK1] after the node it names is fully
 * written.  Recycling a DONE order record also opens the window of the
 * record's old symbol.
 *
 * Capacity.  Every request checks, before it changes anything, that it can
 * complete: an order record, 2 fill records per maker it could touch, and
 * a level if its remainder may rest at a new price (unless it will surely
 * fill completely).  So pools never run out mid-match and a full pool is a
 * per-request SHMEX_EBOOKFULL.
 *
 * Limits: quantities and prices are int64 > 0; per-side open totals are
 * checked for overflow (the level totals are bounded by them); traded
 * volume saturates.  Capacities <= 2^30 each.
 */
#include "engine/eng_core.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shm/shm_error.h"
#include "shm/shm_msg.h"

#include "engine/eng_alloc.h"
#include "engine/eng_core_impl.h"

#define NIL SHM_BOOK_NIL

/* Inside a seqcount window: relaxed, ordered for readers by BK3/BK4. */
#define window_store(lv, v) store_relaxed(&(lv), (v))

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */

/* True when a resting price px on the opposite side trades with a taker of
 * side `side` and limit `limit`. */
static inline bool crosses(unsigned side, int64_t limit, int64_t px)
{
	return side == SHM_SIDE_BUY ? px <= limit : px >= limit;
}

static inline void ring_push(struct eng_ring *r, uint32_t x, uint64_t epoch)
{
	uint32_t at = r->head + r->count;
	if (at >= r->cap)
		at -= r->cap;
	r->v[at] = x;
	r->epoch[at] = epoch;
	r->count++;
}

static inline uint32_t ring_pop(struct eng_ring *r)
{
	uint32_t x = r->v[r->head];
	if (++r->head == r->cap)
		r->head = 0;
	r->count--;
	return x;
}

/* First position whose key is >= key (n when none).  Looks at the best
 * few entries first: most prices are near the touch. */
static uint32_t side_lower_bound(const struct eng_side *s, int64_t key)
{
	uint32_t hi = s->n;
	for (int i = 0; i < 8 && hi > 0; i++) {
		if (s->a[hi - 1].key < key)
			return hi;
		hi--;
	}
	uint32_t lo = 0;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (s->a[mid].key < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Adds (tag, price) -> lvl; the key is not in the table. */
static void lvl_hash_put(struct eng_core *b, uint32_t tag, int64_t price, uint32_t lvl)
{
	uint32_t i = lvl_hash_home(b, tag, price);
	while (b->lvl_hash[i].tag != 0)
		i = (i + 1) & b->lvl_hash_mask;
	b->lvl_hash[i].price = price;
	b->lvl_hash[i].lvl = lvl;
	b->lvl_hash[i].tag = tag;
}

/* Removes (tag, price), which is in the table (backward-shift deletion:
 * no tombstones, so a miss stops at the first empty entry). */
static void lvl_hash_del(struct eng_core *b, uint32_t tag, int64_t price)
{
	uint32_t m = b->lvl_hash_mask;
	uint32_t i = lvl_hash_home(b, tag, price);
	while (b->lvl_hash[i].tag != tag || b->lvl_hash[i].price != price)
		i = (i + 1) & m;
	for (uint32_t j = i;;) {
		j = (j + 1) & m;
		const struct eng_lvl_slot *e = &b->lvl_hash[j];
		if (e->tag == 0)
			break;
		/* e may move to the hole at i unless its home lies
		 * cyclically in (i, j]. */
		uint32_t k = lvl_hash_home(b, e->tag, e->price);
		if (((j - k) & m) >= ((j - i) & m)) {
			b->lvl_hash[i] = *e;
			i = j;
		}
	}
	b->lvl_hash[i].tag = 0;
}

/* Seqcount window of a symbol. */
static inline void seq_begin(struct shm_book_sym_sh *s)
{
	store_relaxed(&s->seq, s->seq + 1);
	/* [BK3] orders the odd seq before every store of the window; pairs
	 * with the readers' fence [BK6]. */
	fence_release();
}

static inline void seq_end(struct shm_book_sym_sh *s)
{
	/* [BK4] publishes the window's stores with the even seq; pairs with
	 * the readers' acquire load [BK5]. */
	store_release(&s->seq, s->seq + 1);
}

/* Opens order record o's own seqcount window for the rest of the request,
 * if it is not open yet. */
static inline void order_open(struct eng_core *b, struct shm_book_order_sh *o)
{
	if (o->seq & 1)
		return;
	store_relaxed(&o->seq, o->seq + 1);
	/* [BK17] orders the odd seq before the record's stores; pairs with
	 * the status readers' fence [BK20]. */
	fence_release();
	b->otouched[b->notouched++] = (uint32_t)(o - b->v.orders);
}

static void orders_close(struct eng_core *b)
{
	for (uint32_t i = 0; i < b->notouched; i++) {
		struct shm_book_order_sh *o = &b->v.orders[b->otouched[i]];
		/* [BK18] publishes the record's changes with the even seq;
		 * pairs with the status readers' acquire load [BK19]. */
		store_release(&o->seq, o->seq + 1);
	}
	b->notouched = 0;
}

/* ------------------------------------------------------------------ */
/* Quotes (shm_book.h, BK13/BK14)                                      */

/* A quote word is stored only when it changes: a line a reader holds is
 * taken back only when there is something new on it.  The quote's window
 * opens at the first word that differs (nothing before it was stored), so
 * an unchanged quote costs one pass of loads and no store. */
#define quote_word(lv, v)                                   \
	do {                                                \
		if ((lv) != (v)) {                          \
			if (!open)                          \
				open = quote_open(b, symi); \
			store_relaxed(&(lv), (v));          \
		}                                           \
	} while (0)

static bool quote_open(struct eng_core *b, uint32_t symi)
{
	struct shm_book_quote_sh *q = &b->v.quotes[symi];
	store_relaxed(&q->seq, q->seq + 1);
	/* [BK13] orders the odd seq before the quote's stores; pairs with
	 * the readers' fence [BK16]. */
	fence_release();
	store_relaxed(&q->book_seq, b->v.symbols[symi].seq);
	return true;
}

/* Publishes symbol symi's quote, if it differs from its book. */
static void quote_publish(struct eng_core *b, uint32_t symi)
{
	const struct shm_book_sym_sh *s = &b->v.symbols[symi];
	struct shm_book_quote_sh *q = &b->v.quotes[symi];
	const struct eng_sym *p = &b->syms[symi];
	bool open = false;
	for (unsigned side = 0; side < 2; side++) {
		const struct eng_side *e = &p->side[side];
		uint32_t n = e->n < SHM_BOOK_QUOTE_LEVELS ? e->n : SHM_BOOK_QUOTE_LEVELS;
		for (uint32_t k = 0; k < SHM_BOOK_QUOTE_LEVELS; k++) {
			struct shm_book_quote_level_sh *x = &q->level[k][side];
			if (k >= n) {
				/* Beyond the depth: zero, so that the quote is a
				 * function of the book alone. */
				if (k >= q->ndepth[side])
					break;
				quote_word(x->price, 0);
				quote_word(x->qty, 0);
				quote_word(x->count, 0);
				continue;
			}
			const struct shm_book_level_sh *l =
				&b->v.levels[e->a[e->n - 1 - k].lvl];
			quote_word(x->price, l->price);
			quote_word(x->qty, l->qty);
			quote_word(x->count, l->count);
		}
		quote_word(q->ndepth[side], n);
		quote_word(q->nlevels[side], s->nlevels[side]);
		quote_word(q->norders[side], s->norders[side]);
		quote_word(q->open_qty[side], s->open_qty[side]);
	}
	quote_word(q->last_price, s->last_price);
	quote_word(q->last_qty, s->last_qty);
	quote_word(q->last_time_ns, s->last_time_ns);
	quote_word(q->trades, s->trades);
	quote_word(q->volume, s->volume);
	if (open)
		/* [BK14] publishes the quote with the even seq; pairs with
		 * the readers' acquire load [BK15]. */
		store_release(&q->seq, q->seq + 1);
}

/* After a request changed symbol symi's book: its quote is published now,
 * or at the next eng_core_publish when the writer batches. */
static void book_changed(struct eng_core *b, uint32_t symi)
{
	if (!b->batched) {
		quote_publish(b, symi);
		return;
	}
	if (!b->syms[symi].dirty) {
		b->syms[symi].dirty = true;
		b->dirty[b->ndirty++] = symi;
	}
}

void eng_core_publish(struct eng_core *b)
{
	for (uint32_t i = 0; i < b->ndirty; i++) {
		uint32_t symi = b->dirty[i];
		b->syms[symi].dirty = false;
		quote_publish(b, symi);
	}
	b->ndirty = 0;
}

void eng_core_set_batched(struct eng_core *b, bool on)
{
	b->batched = on;
	if (!on)
		eng_core_publish(b);
}

/* Every field of an event, assigned one by one: a zeroing initializer of
 * this 136-byte struct compiles to `rep stos`, measurably slow here. */
static inline void ev_init(struct eng_event *ev, uint8_t type)
{
	ev->type = type;
	ev->side = 0;
	ev->tif = 0;
	ev->reason = 0;
	ev->err = 0;
	ev->sym = 0;
	ev->pad0 = 0;
	ev->event = 0;
	ev->seq = 0;
	ev->time_ns = 0;
	ev->order_id = 0;
	ev->account = 0;
	ev->price = 0;
	ev->qty = 0;
	ev->maker_id = 0;
	ev->maker_account = 0;
	ev->maker_price = 0;
	ev->taker_price = 0;
	ev->maker_open = 0;
	ev->taker_open = 0;
	ev->old_price = 0;
	ev->old_qty = 0;
}

static void emit(struct eng_core *b, struct eng_event *ev)
{
	/* Only what changes the book is numbered: a rejection is not an
	 * event of the shard's history (and is not journaled). */
	ev->event = ev->type == ENG_EV_REJECT ? 0 : ++b->events;
	ev->seq = b->req->seq;
	ev->time_ns = b->req->time_ns;
	if (b->fn)
		b->fn(b->ctx, ev);
}

/* Statistics in the shared header: relaxed, informative only. */
/* The end of every request, applied or rejected: the order windows it
 * opened close, the header's statistics are published. */
static void request_end(struct eng_core *b)
{
	orders_close(b);
	struct shm_book_hdr_sh *h = b->hdr;
	store_relaxed(&h->events, b->events);
	store_relaxed(&h->last_seq, b->req->seq);
	store_relaxed(&h->last_time_ns, b->req->time_ns);
	store_relaxed(&h->levels_live, b->levels_live);
	store_relaxed(&h->orders_live, b->orders_live);
	store_relaxed(&h->orders_used, b->ord_unused);
	store_relaxed(&h->fills_used, b->fill_unused - b->fill_nfree);
	store_relaxed(&h->orders_created, b->orders_created);
	store_relaxed(&h->rejects_full, b->rejects_full);
	b->since_reclaim++;
}

static int reject(struct eng_core *b, enum eng_req_type what, int err)
{
	const struct eng_req *r = b->req;
	struct eng_event ev;
	ev_init(&ev, ENG_EV_REJECT);
	ev.reason = (uint8_t)what;
	ev.err = err;
	ev.sym = r->sym;
	ev.side = r->side;
	ev.tif = r->tif;
	ev.order_id = r->order_id;
	ev.account = r->account;
	ev.price = r->price;
	ev.qty = r->qty;
	if (err == SHMEX_EBOOKFULL)
		b->rejects_full++;
	emit(b, &ev);
	request_end(b);
	return err;
}

/* ------------------------------------------------------------------ */
/* Pools                                                               */

static uint32_t levels_reclaim(struct eng_core *b, uint64_t safe)
{
	uint32_t n = 0;
	while (b->lvl_retired.count) {
		if (!(b->lvl_retired.epoch[b->lvl_retired.head] < safe))
			break;
		uint32_t li = ring_pop(&b->lvl_retired);
		struct shm_book_level_sh *l = &b->v.levels[li];
		window_store(l->state, SHM_BOOK_LEVEL_FREE);
		b->lvl_free[b->lvl_nfree++] = li;
		n++;
	}
	return n;
}

static bool level_available(const struct eng_core *b)
{
	if (b->lvl_nfree || b->lvl_unused < b->v.cap_levels)
		return true;
	return b->lvl_retired.count &&
	       b->lvl_retired.epoch[b->lvl_retired.head] < b->safe_epoch;
}

static uint32_t level_alloc(struct eng_core *b)
{
	if (!b->lvl_nfree)
		levels_reclaim(b, b->safe_epoch);
	if (b->lvl_nfree)
		return b->lvl_free[--b->lvl_nfree];
	if (b->lvl_unused < b->v.cap_levels)
		return b->lvl_unused++;
	return NIL;
}

static inline uint32_t fills_free(const struct eng_core *b)
{
	return b->fill_nfree + (b->v.cap_fills - b->fill_unused);
}

static bool done_head_eligible(const struct eng_core *b)
{
	return b->ord_done.count && b->ord_done.epoch[b->ord_done.head] < b->safe_epoch;
}

/* Takes the oldest DONE order out of the book: frees its fills, makes the
 * record FREE (id 0) inside the window of its symbol.  The caller checked
 * done_head_eligible. */
static uint32_t order_recycle(struct eng_core *b)
{
	b->ord_recycled++;
	uint32_t oi = ring_pop(&b->ord_done);
	if (b->recycle_fn)
		b->recycle_fn(b->recycle_ctx, &b->v, oi);
	/* The done FIFO walks the whole order pool, coldest record first:
	 * prefetch the record PREFETCH_AHEAD places behind this one (and its
	 * private fill indexes), so it is in cache when its turn comes. */
	if (b->ord_done.count > PREFETCH_AHEAD) {
		uint32_t na = ring_at(&b->ord_done, PREFETCH_AHEAD);
		__builtin_prefetch(&b->v.orders[na], 1, 3);
		__builtin_prefetch((char *)&b->v.orders[na] + 64, 1, 3);
		__builtin_prefetch(&b->ofills[na], 1, 3);
	}
	struct shm_book_order_sh *o = &b->v.orders[oi];
	struct shm_book_sym_sh *s = &b->v.symbols[o->sym];
	seq_begin(s);
	uint32_t n = o->nfills;
	for (uint32_t k = 0; k < n && k < ORDER_FILLS; k++) {
		uint32_t fi = b->ofills[oi][k];
		/* The free stack is LIFO: these are the next fills written,
		 * and they are as cold as the order. */
		__builtin_prefetch(&b->v.fills[fi], 1, 3);
		b->fill_free[b->fill_nfree++] = fi;
	}
	if (n > ORDER_FILLS) {
		/* Rare: walk the rest of the list from the last known one. */
		uint32_t fi = b->fill_next[b->ofills[oi][ORDER_FILLS - 1]];
		for (uint32_t k = ORDER_FILLS; k < n && fi != NIL; k++) {
			b->fill_free[b->fill_nfree++] = fi;
			fi = b->fill_next[fi];
		}
	}
	order_open(b, o);
	window_store(o->state, SHM_BOOK_ORDER_FREE);
	window_store(o->id, 0);
	window_store(o->nfills, 0);
	window_store(o->mod_event, 0);
	window_store(o->fill_tail, NIL);
	store_release(&o->fill_head, NIL); /* [BK1] */
	seq_end(s);
	return oi;
}

/* Makes sure `need` fill records are free, recycling old DONE orders (into
 * the order free stack) when it must. */
static int fills_ensure(struct eng_core *b, uint64_t need)
{
	while (fills_free(b) < need) {
		if (!done_head_eligible(b))
			return SHMEX_EBOOKFULL;
		b->ord_free[b->ord_nfree++] = order_recycle(b);
	}
	return 0;
}

static bool order_available(const struct eng_core *b)
{
	return b->ord_nfree || b->ord_unused < b->v.cap_orders || done_head_eligible(b);
}

/* A slot for a new order (order_available said yes); *used says whether
 * the slot held an order before (gen + 1). */
static uint32_t order_alloc(struct eng_core *b, bool *used)
{
	*used = true;
	if (b->ord_nfree) {
		/* The free stack is as deep as reclamation fell behind (a
		 * reader held the grace period): its records are cold.  Start
		 * the one FREE_AHEAD allocations from now coming. */
		if (b->ord_nfree > FREE_AHEAD) {
			const struct shm_book_order_sh *nx =
				&b->v.orders[b->ord_free[b->ord_nfree - 1 - FREE_AHEAD]];
			__builtin_prefetch(nx, 1, 3);
			__builtin_prefetch((const char *)nx + 64, 1, 3);
		}
		return b->ord_free[--b->ord_nfree];
	}
	if (b->ord_unused < b->v.cap_orders) {
		*used = false;
		/* Never used, so never seen: a count left odd (a loaded
		 * snapshot vouches only for the records below ord_unused)
		 * would read as a window already open, never closed. */
		struct shm_book_order_sh *o = &b->v.orders[b->ord_unused];
		if (o->seq & 1)
			store_relaxed(&o->seq, o->seq + 1);
		return b->ord_unused++;
	}
	return order_recycle(b);
}

static void fill_append(struct eng_core *b, struct shm_book_order_sh *o, int64_t qty,
			int64_t px, uint64_t counterparty, uint64_t evno, uint8_t maker)
{
	uint32_t fi = b->fill_nfree ? b->fill_free[--b->fill_nfree] : b->fill_unused++;
	struct shm_book_fill_sh *f = &b->v.fills[fi];
	window_store(f->qty, qty);
	window_store(f->price, px);
	window_store(f->time_ns, b->req->time_ns);
	window_store(f->counterparty, counterparty);
	window_store(f->event, evno);
	window_store(f->order_id, o->id);
	window_store(f->maker, maker);
	window_store(f->next, NIL);
	b->fill_next[fi] = NIL;
	order_open(b, o);
	/* [BK1] the fill is complete before it is linked. */
	if (o->fill_tail == NIL) {
		store_release(&o->fill_head, fi);
	} else {
		store_release(&b->v.fills[o->fill_tail].next, fi);
		b->fill_next[o->fill_tail] = fi;
	}
	uint32_t n = o->nfills;
	if (n < ORDER_FILLS)
		b->ofills[o - b->v.orders][n] = fi;
	window_store(o->fill_tail, fi);
	window_store(o->nfills, n + 1);
}

/* ------------------------------------------------------------------ */
/* Levels and queues                                                   */

/* Creates a level at (side, price) at insertion point pos and links it. */
static uint32_t level_insert(struct eng_core *b, uint32_t symi, struct shm_book_sym_sh *s,
			     struct eng_sym *p, unsigned side, int64_t price,
			     uint32_t pos)
{
	struct eng_side *sd = &p->side[side];
	uint32_t li = level_alloc(b); /* checked available by the caller */
	struct shm_book_level_sh *l = &b->v.levels[li];
	window_store(l->price, price);
	window_store(l->qty, 0);
	window_store(l->count, 0);
	window_store(l->head, NIL);
	window_store(l->tail, NIL);
	window_store(l->sym, symi);
	window_store(l->side, (uint8_t)side);
	window_store(l->state, SHM_BOOK_LEVEL_LIVE);
	window_store(l->retire_epoch, 0);
	window_store(l->next, pos > 0 ? sd->a[pos - 1].lvl : NIL);
	/* [BK1] link after the level is complete. */
	if (pos < sd->n)
		store_release(&b->v.levels[sd->a[pos].lvl].next, li);
	else
		store_release(&s->head[side], li);
	memmove(&sd->a[pos + 1], &sd->a[pos], (size_t)(sd->n - pos) * sizeof(sd->a[0]));
	sd->a[pos].key = side_key(side, price);
	sd->a[pos].lvl = li;
	sd->n++;
	window_store(s->nlevels[side], sd->n);
	lvl_hash_put(b, lvl_tag(symi, side), price, li);
	b->levels_live++;
	return li;
}

/* Unlinks the (empty) level at position pos and retires it. */
static void level_unlink(struct eng_core *b, struct shm_book_sym_sh *s, struct eng_sym *p,
			 unsigned side, uint32_t pos)
{
	struct eng_side *sd = &p->side[side];
	uint32_t li = sd->a[pos].lvl;
	struct shm_book_level_sh *l = &b->v.levels[li];
	/* [BK1] the successor is already published; l->next stays intact. */
	if (pos + 1 < sd->n)
		store_release(&b->v.levels[sd->a[pos + 1].lvl].next, l->next);
	else
		store_release(&s->head[side], l->next);
	memmove(&sd->a[pos], &sd->a[pos + 1],
		(size_t)(sd->n - pos - 1) * sizeof(sd->a[0]));
	sd->n--;
	window_store(s->nlevels[side], sd->n);
	lvl_hash_del(b, lvl_tag(l->sym, side), l->price);
	window_store(l->state, SHM_BOOK_LEVEL_RETIRED);
	window_store(l->retire_epoch, b->req->epoch);
	ring_push(&b->lvl_retired, li, b->req->epoch);
	b->levels_live--;
}

/* Appends order oi at the back of level li's queue. */
static void queue_append(struct eng_core *b, struct shm_book_sym_sh *s, uint32_t li,
			 struct shm_book_order_sh *o, uint32_t oi)
{
	struct shm_book_level_sh *l = &b->v.levels[li];
	window_store(o->level, li);
	window_store(o->next, NIL);
	window_store(o->prev, l->tail);
	/* [BK1] the order record is complete before it is linked. */
	if (l->tail == NIL)
		store_release(&l->head, oi);
	else
		store_release(&b->v.orders[l->tail].next, oi);
	window_store(l->tail, oi);
	window_store(l->count, l->count + 1);
	window_store(l->qty, l->qty + o->open);
	window_store(s->norders[o->side], s->norders[o->side] + 1);
	window_store(s->open_qty[o->side], s->open_qty[o->side] + o->open);
}

/* Removes order o from its level's queue (the level stays linked even when
 * it becomes empty; the caller decides).  o->next stays intact. */
static void queue_remove(struct eng_core *b, struct shm_book_sym_sh *s,
			 struct shm_book_order_sh *o)
{
	struct shm_book_level_sh *l = &b->v.levels[o->level];
	/* [BK1] o->next is already published (or NIL). */
	if (o->prev == NIL)
		store_release(&l->head, o->next);
	else
		store_release(&b->v.orders[o->prev].next, o->next);
	if (o->next == NIL)
		window_store(l->tail, o->prev);
	else
		window_store(b->v.orders[o->next].prev, o->prev);
	window_store(l->count, l->count - 1);
	window_store(l->qty, l->qty - o->open);
	window_store(s->norders[o->side], s->norders[o->side] - 1);
	window_store(s->open_qty[o->side], s->open_qty[o->side] - o->open);
	window_store(o->level, NIL);
	window_store(o->prev, NIL);
}

/* Takes a resting order off the book; retires its level if it empties. */
static void order_unrest(struct eng_core *b, struct shm_book_sym_sh *s, struct eng_sym *p,
			 struct shm_book_order_sh *o)
{
	struct shm_book_level_sh *l = &b->v.levels[o->level];
	queue_remove(b, s, o);
	if (l->count == 0) {
		/* It is there: the position of its key. */
		uint32_t pos =
			side_lower_bound(&p->side[o->side], side_key(o->side, l->price));
		level_unlink(b, s, p, o->side, pos);
	}
}

/* Puts a live order (open > 0) at the back of its price level. */
static void order_rest(struct eng_core *b, uint32_t symi, struct shm_book_sym_sh *s,
		       struct eng_sym *p, struct shm_book_order_sh *o, uint32_t oi)
{
	uint32_t li = lvl_hash_get(b, lvl_tag(symi, o->side), o->price);
	if (li == NIL) {
		uint32_t pos =
			side_lower_bound(&p->side[o->side], side_key(o->side, o->price));
		li = level_insert(b, symi, s, p, o->side, o->price, pos);
	}
	queue_append(b, s, li, o, oi);
}

static void order_done(struct eng_core *b, struct shm_book_order_sh *o, uint32_t oi,
		       uint8_t reason)
{
	order_open(b, o);
	window_store(o->state, SHM_BOOK_ORDER_DONE);
	window_store(o->done_reason, reason);
	ring_push(&b->ord_done, oi, b->req->epoch);
	b->orders_live--;
}

/* Cancels the open part of a live order that is not resting, or has just
 * been taken off the book, and emits the CANCEL event. */
static void order_cancel_open(struct eng_core *b, struct shm_book_order_sh *o,
			      uint32_t oi, uint8_t reason)
{
	int64_t q = o->open;
	order_open(b, o);
	window_store(o->cancelled, o->cancelled + q);
	window_store(o->open, 0);
	window_store(o->cancel_time_ns, b->req->time_ns);
	window_store(o->mod_event, b->events + 1); /* the CANCEL below */
	order_done(b, o, oi, reason);
	struct eng_event ev;
	ev_init(&ev, ENG_EV_CANCEL);
	ev.reason = reason;
	ev.sym = o->sym;
	ev.side = o->side;
	ev.tif = o->tif;
	ev.order_id = o->id;
	ev.account = o->account;
	ev.price = o->price;
	ev.qty = q;
	emit(b, &ev);
}

/* ------------------------------------------------------------------ */
/* Pre-checks (no side effects)                                         */

/*
 * True when an order (side, limit, qty, account) would surely fill
 * completely against the current opposite side, given the STP mode.
 */
static bool fills_completely(const struct eng_core *b, const struct eng_sym *p,
			     unsigned side, int64_t limit, int64_t qty, uint64_t account)
{
	const struct eng_side *os = &p->side[!side];
	int64_t need = qty;
	for (uint32_t i = os->n; i-- > 0;) {
		const struct shm_book_level_sh *l = &b->v.levels[os->a[i].lvl];
		if (!crosses(side, limit, l->price))
			return false;
		if (b->stp == SHM_BOOK_STP_NONE) {
			if (l->qty >= need)
				return true;
			need -= l->qty;
			continue;
		}
		for (uint32_t oi = l->head; oi != NIL; oi = b->v.orders[oi].next) {
			const struct shm_book_order_sh *m = &b->v.orders[oi];
			if (m->account == account) {
				if (b->stp == SHM_BOOK_STP_CANCEL_OLDEST)
					continue; /* cancelled, not traded */
				return false;     /* the taker would be cancelled */
			}
			if (m->open >= need)
				return true;
			need -= m->open;
		}
	}
	return false;
}

/* Upper bound of the resting orders a taker can touch. */
static uint64_t makers_bound(const struct eng_core *b, const struct eng_sym *p,
			     unsigned side, int64_t limit, int64_t qty)
{
	const struct eng_side *os = &p->side[!side];
	uint64_t n = 0;
	int64_t left = qty;
	for (uint32_t i = os->n; i-- > 0;) {
		const struct shm_book_level_sh *l = &b->v.levels[os->a[i].lvl];
		if (!crosses(side, limit, l->price))
			break;
		n += l->count;
		if (b->stp == SHM_BOOK_STP_NONE) {
			if (l->qty >= left)
				break;
			left -= l->qty;
		}
	}
	return n;
}

/*
 * Everything a taker (new order, or a re-queued modify) needs before it
 * may change the book: fill records for every maker it may touch, and a
 * level if its remainder may rest at a price that has none.  May recycle
 * DONE orders to free fill records.
 */
static int taker_precheck(struct eng_core *b, const struct shm_book_sym_sh *s,
			  const struct eng_sym *p, unsigned side, int64_t limit,
			  int64_t qty, uint64_t account, bool may_rest)
{
	uint64_t opp = s->norders[!side];
	if (fills_free(b) < 2 * opp) {
		int rc = fills_ensure(b, 2 * makers_bound(b, p, side, limit, qty));
		if (rc)
			return rc;
	}
	if (may_rest && !level_available(b)) {
		if (lvl_hash_get(b, lvl_tag((uint32_t)(p - b->syms), side), limit) ==
			    NIL &&
		    !fills_completely(b, p, side, limit, qty, account))
			return SHMEX_EBOOKFULL;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Matching                                                            */

static void trade(struct eng_core *b, struct shm_book_sym_sh *s,
		  struct shm_book_level_sh *l, struct shm_book_order_sh *t,
		  struct shm_book_order_sh *m, int64_t x)
{
	int64_t px = l->price;
	uint64_t evno = b->events + 1;
	order_open(b, m);
	order_open(b, t);
	window_store(m->open, m->open - x);
	window_store(m->executed, m->executed + x);
	window_store(m->mod_event, evno);
	window_store(t->open, t->open - x);
	window_store(t->executed, t->executed + x);
	window_store(t->mod_event, evno);
	window_store(l->qty, l->qty - x);
	window_store(s->open_qty[m->side], s->open_qty[m->side] - x);
	window_store(s->last_price, px);
	window_store(s->last_qty, x);
	window_store(s->last_time_ns, b->req->time_ns);
	window_store(s->trades, s->trades + 1);
	window_store(s->volume, s->volume > INT64_MAX - x ? INT64_MAX : s->volume + x);
	fill_append(b, m, x, px, t->id, evno, 1);
	fill_append(b, t, x, px, m->id, evno, 0);

	struct eng_event ev;
	ev_init(&ev, ENG_EV_FILL);
	ev.sym = t->sym;
	ev.side = t->side;
	ev.tif = t->tif;
	ev.order_id = t->id;
	ev.account = t->account;
	ev.price = px;
	ev.qty = x;
	ev.maker_id = m->id;
	ev.maker_account = m->account;
	ev.maker_price = m->price;
	ev.taker_price = t->price;
	ev.maker_open = m->open;
	ev.taker_open = t->open;
	emit(b, &ev);
}

/*
 * Matches live order t against the opposite side while it crosses.
 * Returns true when self-trade prevention stopped it (its remainder must
 * then be cancelled, not rested).
 */
static bool match(struct eng_core *b, struct shm_book_sym_sh *s, struct eng_sym *p,
		  struct shm_book_order_sh *t)
{
	unsigned opp = !t->side;
	struct eng_side *os = &p->side[opp];
	bool stopped = false;
	while (t->open > 0 && os->n > 0 && !stopped) {
		uint32_t li = os->a[os->n - 1].lvl;
		struct shm_book_level_sh *l = &b->v.levels[li];
		if (!crosses(t->side, t->price, l->price))
			break;
		while (t->open > 0 && l->head != NIL) {
			uint32_t mi = l->head;
			struct shm_book_order_sh *m = &b->v.orders[mi];
			if (b->stp != SHM_BOOK_STP_NONE && m->account == t->account) {
				if (b->stp != SHM_BOOK_STP_CANCEL_NEWEST) {
					queue_remove(b, s, m);
					order_cancel_open(b, m, mi, SHM_BOOK_DONE_STP);
				}
				if (b->stp != SHM_BOOK_STP_CANCEL_OLDEST) {
					stopped = true;
					break;
				}
				continue;
			}
			int64_t x = t->open < m->open ? t->open : m->open;
			trade(b, s, l, t, m, x);
			if (m->open == 0) {
				/* The head leaves with its quantity already
				 * traded out of the level. */
				queue_remove(b, s, m);
				order_done(b, m, mi, SHM_BOOK_DONE_FILLED);
			}
		}
		if (l->count == 0)
			level_unlink(b, s, p, opp, os->n - 1);
	}
	return stopped;
}

/* After matching: rest, cancel or complete the taker. */
static void taker_finish(struct eng_core *b, uint32_t symi, struct shm_book_sym_sh *s,
			 struct eng_sym *p, struct shm_book_order_sh *t, uint32_t ti,
			 bool stopped)
{
	if (t->open == 0) {
		order_done(b, t, ti, SHM_BOOK_DONE_FILLED);
		return;
	}
	if (stopped) {
		order_cancel_open(b, t, ti, SHM_BOOK_DONE_STP);
		return;
	}
	switch (t->tif) {
	case SHM_TIF_GTC:
		order_rest(b, symi, s, p, t, ti);
		break;
	case SHM_TIF_IOC:
		order_cancel_open(b, t, ti, SHM_BOOK_DONE_IOC);
		break;
	default:
		order_cancel_open(b, t, ti, SHM_BOOK_DONE_FOK);
		break;
	}
}

/* ------------------------------------------------------------------ */
/* Requests                                                            */

int eng_core_submit(struct eng_core *b, const struct eng_req *r, uint64_t *id)
{
	*id = 0;
	b->req = r;
	int err = 0;
	if (r->sym >= b->nsymbols)
		err = SHMEX_ENOSYMBOL;
	else if (r->side > SHM_SIDE_SELL)
		err = SHMEX_EBADREQUEST;
	else if (r->tif > SHM_TIF_FOK)
		err = SHMEX_EBADTIF;
	else if (r->qty <= 0)
		err = SHMEX_EBADAMOUNT;
	else if (r->price <= 0)
		err = SHMEX_EBADPRICE;
	else if (r->flags & ~ENG_REQ_POST_ONLY)
		err = SHMEX_EBADREQUEST;
	if (err)
		return reject(b, ENG_REQ_NEW, err);

	uint32_t symi = r->sym;
	struct shm_book_sym_sh *s = &b->v.symbols[symi];
	struct eng_sym *p = &b->syms[symi];
	unsigned side = r->side;
	bool may_rest = r->tif == SHM_TIF_GTC;
	if (r->flags & ENG_REQ_POST_ONLY) {
		/* Post-only: the best opposite level (a[n-1]) decides, before
		 * anything (fills_ensure's recycling included) can change. */
		const struct eng_side *os = &p->side[!side];
		if (os->n > 0 &&
		    crosses(side, r->price, b->v.levels[os->a[os->n - 1].lvl].price))
			return reject(b, ENG_REQ_NEW, SHMEX_EWOULDCROSS);
	}
	if (may_rest && s->open_qty[side] > INT64_MAX - r->qty)
		return reject(b, ENG_REQ_NEW, SHMEX_EOVERFLOW);
	bool kill = r->tif == SHM_TIF_FOK &&
		    !fills_completely(b, p, side, r->price, r->qty, r->account);
	if (!kill) {
		err = taker_precheck(b, s, p, side, r->price, r->qty, r->account,
				     may_rest);
		if (err)
			return reject(b, ENG_REQ_NEW, err);
	}
	/* A slot whose next id would not fit 64 bits (shm_order_gen_max:
	 * 2^28 reuses at the largest capacities) is never used again. */
	uint32_t oi;
	struct shm_book_order_sh *o;
	uint64_t gen;
	for (;;) {
		if (!order_available(b))
			return reject(b, ENG_REQ_NEW, SHMEX_EBOOKFULL);
		bool used;
		oi = order_alloc(b, &used);
		o = &b->v.orders[oi];
		gen = used ? o->gen + 1 : 0;
		if (gen <= b->gen_max)
			break;
		b->slots_retired++;
	}
	uint64_t oid =
		shm_order_id_make(b->v.shard, b->v.nshards, oi, gen, b->v.cap_orders);

	seq_begin(s);
	order_open(b, o);
	window_store(o->id, oid);
	window_store(o->account, r->account);
	window_store(o->price, r->price);
	window_store(o->amount, r->qty);
	window_store(o->open, r->qty);
	window_store(o->executed, 0);
	window_store(o->cancelled, 0);
	window_store(o->time_ns, r->time_ns);
	window_store(o->cancel_time_ns, 0);
	window_store(o->gen, gen);
	window_store(o->sym, symi);
	window_store(o->side, (uint8_t)side);
	window_store(o->tif, r->tif);
	window_store(o->state, SHM_BOOK_ORDER_LIVE);
	window_store(o->done_reason, SHM_BOOK_DONE_NONE);
	window_store(o->level, NIL);
	window_store(o->next, NIL);
	window_store(o->prev, NIL);
	window_store(o->fill_tail, NIL);
	window_store(o->nfills, 0);
	window_store(o->mod_event, b->events + 1); /* the ACCEPT below */
	store_release(&o->fill_head, NIL);         /* [BK1] (empty list) */
	b->orders_live++;
	b->orders_created++;

	struct eng_event ev;
	ev_init(&ev, ENG_EV_ACCEPT);
	ev.sym = symi;
	ev.side = (uint8_t)side;
	ev.tif = r->tif;
	ev.order_id = oid;
	ev.account = r->account;
	ev.price = r->price;
	ev.qty = r->qty;
	emit(b, &ev);

	if (kill) {
		order_cancel_open(b, o, oi, SHM_BOOK_DONE_FOK);
	} else {
		bool stopped = match(b, s, p, o);
		taker_finish(b, symi, s, p, o, oi, stopped);
	}
	seq_end(s);
	book_changed(b, symi);
	request_end(b);
	*id = oid;
	return 0;
}

/* The slot an id of this shard names (shm_order_slot), false when the id
 * is 0 or another shard's.  Shifts and masks instead of the three 64-bit
 * divisions when nshards and cap_orders are powers of two. */
static inline bool id_slot(const struct eng_core *b, uint64_t id, uint32_t *slot)
{
	if (id == 0)
		return false;
	uint64_t x = id - 1, q;
	if (b->ns_pow2) {
		if ((x & (b->v.nshards - 1)) != b->v.shard)
			return false;
		q = x >> b->ns_shift;
	} else {
		if (x % b->v.nshards != b->v.shard)
			return false;
		q = x / b->v.nshards;
	}
	*slot = (uint32_t)(b->cap_pow2 ? q & b->cap_mask : q % b->v.cap_orders);
	return true;
}

/* Finds a live order of `account` by id. */
static int order_lookup(const struct eng_core *b, uint64_t id, uint64_t account,
			uint32_t *slot)
{
	uint32_t oi;
	if (!id_slot(b, id, &oi))
		return SHMEX_ENOORDER;
	const struct shm_book_order_sh *o = &b->v.orders[oi];
	if (o->id != id || o->state == SHM_BOOK_ORDER_FREE)
		return SHMEX_ENOORDER;
	if (o->account != account)
		return SHMEX_ENOTOWNER;
	if (o->state != SHM_BOOK_ORDER_LIVE)
		return SHMEX_ENOTOPEN;
	*slot = oi;
	return 0;
}

int eng_core_cancel(struct eng_core *b, const struct eng_req *r)
{
	b->req = r;
	uint32_t oi;
	int err = order_lookup(b, r->order_id, r->account, &oi);
	if (err)
		return reject(b, ENG_REQ_CANCEL, err);
	struct shm_book_order_sh *o = &b->v.orders[oi];
	struct shm_book_sym_sh *s = &b->v.symbols[o->sym];
	struct eng_sym *p = &b->syms[o->sym];
	seq_begin(s);
	order_unrest(b, s, p, o);
	order_cancel_open(b, o, oi, SHM_BOOK_DONE_CANCEL);
	seq_end(s);
	book_changed(b, o->sym);
	request_end(b);
	return 0;
}

int eng_core_modify(struct eng_core *b, const struct eng_req *r)
{
	b->req = r;
	uint32_t oi;
	int err = order_lookup(b, r->order_id, r->account, &oi);
	if (!err && r->price <= 0)
		err = SHMEX_EBADPRICE;
	if (!err && r->qty < 0)
		err = SHMEX_EBADAMOUNT;
	if (err)
		return reject(b, ENG_REQ_MODIFY, err);
	struct shm_book_order_sh *o = &b->v.orders[oi];
	uint32_t symi = o->sym;
	struct shm_book_sym_sh *s = &b->v.symbols[symi];
	struct eng_sym *p = &b->syms[symi];
	unsigned side = o->side;

	if (r->qty == 0) {
		seq_begin(s);
		order_unrest(b, s, p, o);
		order_cancel_open(b, o, oi, SHM_BOOK_DONE_MODIFY);
		seq_end(s);
		book_changed(b, symi);
		request_end(b);
		return 0;
	}

	bool same_px = r->price == o->price;
	bool keep = same_px && r->qty <= o->open;
	if (!keep) {
		/* The order leaves the book with o->open and comes back with
		 * r->qty: the side total must hold the difference, and the
		 * amount executed + r->qty must fit. */
		if (s->open_qty[side] - o->open > INT64_MAX - r->qty ||
		    o->executed > INT64_MAX - r->qty)
			return reject(b, ENG_REQ_MODIFY, SHMEX_EOVERFLOW);
		if (!same_px) {
			err = taker_precheck(b, s, p, side, r->price, r->qty, o->account,
					     true);
			if (err)
				return reject(b, ENG_REQ_MODIFY, err);
		}
	}

	struct eng_event ev;
	ev_init(&ev, ENG_EV_MODIFY);
	ev.sym = symi;
	ev.side = (uint8_t)side;
	ev.tif = o->tif;
	ev.order_id = o->id;
	ev.account = o->account;
	ev.price = r->price;
	ev.qty = r->qty;
	ev.old_price = o->price;
	ev.old_qty = o->open;

	seq_begin(s);
	order_open(b, o);
	window_store(o->mod_event, b->events + 1); /* the MODIFY emitted below */
	if (keep) {
		/* Pure size reduction (or no change): keeps its place. */
		int64_t d = o->open - r->qty;
		struct shm_book_level_sh *l = &b->v.levels[o->level];
		window_store(o->open, r->qty);
		window_store(o->amount, o->amount - d);
		window_store(l->qty, l->qty - d);
		window_store(s->open_qty[side], s->open_qty[side] - d);
		emit(b, &ev);
	} else if (same_px) {
		/* Size increase: back of the same level; it cannot cross (it
		 * rested at this price), and the level stays linked. */
		uint32_t li = o->level;
		queue_remove(b, s, o);
		window_store(o->open, r->qty);
		window_store(o->amount, o->executed + o->cancelled + r->qty);
		window_store(o->time_ns, r->time_ns);
		queue_append(b, s, li, o, oi);
		emit(b, &ev);
	} else {
		/* New price: leaves the book, then comes back as a taker. */
		order_unrest(b, s, p, o);
		window_store(o->price, r->price);
		window_store(o->open, r->qty);
		window_store(o->amount, o->executed + o->cancelled + r->qty);
		window_store(o->time_ns, r->time_ns);
		emit(b, &ev);
		bool stopped = match(b, s, p, o);
		taker_finish(b, symi, s, p, o, oi, stopped);
	}
	seq_end(s);
	book_changed(b, symi);
	request_end(b);
	return 0;
}

/* Whether at least k + 1 entries of a retirement FIFO have a retire epoch
 * below safe (epochs are pushed in non-decreasing order). */
static bool ring_eligible(const struct eng_ring *r, uint32_t k, uint64_t safe)
{
	return r->count > k && r->epoch[(r->head + k) % r->cap] < safe;
}

/* A pool is low when fewer than `low` records can be had without a newer
 * safe epoch: free, never used, or retired before the last safe epoch. */
static bool pool_low(uint32_t nfree, uint32_t unused, uint32_t cap,
		     const struct eng_ring *retired, uint64_t safe)
{
	uint32_t low = cap / 4 < 2 * ENG_RECLAIM_EVERY ? cap / 4 : 2 * ENG_RECLAIM_EVERY;
	uint64_t now = (uint64_t)nfree + (cap - unused);
	return now < low && !ring_eligible(retired, low - (uint32_t)now - 1, safe);
}

bool eng_core_reclaim_due(struct eng_core *b, uint64_t now_ns)
{
	if (b->reclaim_from_ns == 0 || now_ns < b->reclaim_from_ns)
		b->reclaim_from_ns = now_ns;
	return b->since_reclaim >= ENG_RECLAIM_EVERY ||
	       now_ns - b->reclaim_from_ns >= ENG_RECLAIM_NS ||
	       b->rejects_full != b->rejects_full_seen ||
	       pool_low(b->lvl_nfree, b->lvl_unused, b->v.cap_levels, &b->lvl_retired,
			b->safe_epoch) ||
	       pool_low(b->ord_nfree, b->ord_unused, b->v.cap_orders, &b->ord_done,
			b->safe_epoch);
}

uint32_t eng_core_reclaim(struct eng_core *b, uint64_t safe_epoch)
{
	b->since_reclaim = 0;
	b->reclaim_from_ns = 0;
	b->rejects_full_seen = b->rejects_full;
	b->safe_epoch = safe_epoch;
	store_relaxed(&b->hdr->safe_epoch, safe_epoch);
	return levels_reclaim(b, safe_epoch);
}

/* ------------------------------------------------------------------ */
/* Symbols                                                             */

static uint32_t sym_hash(const char name[16])
{
	uint32_t h = 2166136261u;
	for (int i = 0; i < 16 && name[i]; i++) {
		h ^= (unsigned char)name[i];
		h *= 16777619u;
	}
	return h;
}

/* Slot of the hash where the name is, or the empty slot where it goes. */
static uint32_t sym_slot(const struct eng_core *b, const char name[16])
{
	uint32_t i = sym_hash(name) & b->sym_hash_mask;
	for (;;) {
		uint32_t e = b->sym_hash[i];
		if (e == 0 || memcmp(b->v.symbols[e - 1].name, name, 16) == 0)
			return i;
		i = (i + 1) & b->sym_hash_mask;
	}
}

int eng_core_symbol_find(const struct eng_core *b, const char *name, size_t len,
			 uint32_t *idx)
{
	char packed[16];
	if (!shm_symbol_pack(packed, name, len))
		return SHMEX_EBADSYMBOL;
	uint32_t e = b->sym_hash[sym_slot(b, packed)];
	if (e == 0)
		return SHMEX_ENOSYMBOL;
	*idx = e - 1;
	return 0;
}

/* The private price arrays of a new symbol, both sides empty. */
static int sym_map(const struct eng_core *b, struct eng_sym *p)
{
	size_t per = (size_t)b->v.cap_levels * sizeof(struct eng_px);
	p->map_len = 2 * per;
	p->map = eng_alloc_reserve(p->map_len);
	if (!p->map)
		return -ENOMEM;
	p->side[0].a = p->map;
	p->side[1].a = (struct eng_px *)((char *)p->map + per);
	p->side[0].n = p->side[1].n = 0;
	return 0;
}

int eng_core_symbol_add(struct eng_core *b, const char *name, size_t len, uint32_t *idx)
{
	char packed[16];
	if (!shm_symbol_pack(packed, name, len))
		return SHMEX_EBADSYMBOL;
	uint32_t slot = sym_slot(b, packed);
	if (b->sym_hash[slot]) {
		*idx = b->sym_hash[slot] - 1;
		return 0;
	}
	if (b->nsymbols >= b->v.cap_symbols)
		return SHMEX_ESYMBOLSFULL;
	uint32_t n = b->nsymbols;
	if (sym_map(b, &b->syms[n]) != 0)
		return -ENOMEM;

	struct shm_book_sym_sh *s = &b->v.symbols[n];
	/* Not yet visible (index >= nsymbols): plain initialisation, then
	 * published by BK7.  Every byte, entry and quote: a loaded snapshot
	 * only vouches for the entries below its symbol count. */
	memset(s, 0, sizeof(*s));
	memset(&b->v.quotes[n], 0, sizeof(b->v.quotes[n]));
	window_store(s->seq, 0);
	memcpy(s->name, packed, 16);
	window_store(s->head[0], NIL);
	window_store(s->head[1], NIL);
	window_store(s->index, n);
	b->sym_hash[slot] = n + 1;
	b->nsymbols = n + 1;
	/* [BK7] the entry is complete before readers may index it; pairs
	 * with the readers' acquire load of nsymbols [BK8]. */
	store_release(&b->hdr->nsymbols, n + 1);
	*idx = n;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Life cycle                                                          */

size_t eng_core_bytes(const struct eng_core_cfg *cfg)
{
	if (cfg->nshards == 0 || cfg->shard >= cfg->nshards ||
	    cfg->stp_mode > SHM_BOOK_STP_CANCEL_BOTH)
		return 0;
	return shm_book_body_bytes(&cfg->caps);
}

int eng_core_init(struct eng_core **out, void *mem, size_t len,
		  const struct eng_core_cfg *cfg, eng_event_fn fn, void *ctx)
{
	*out = NULL;
	size_t need = eng_core_bytes(cfg);
	if (need == 0 || len < need || ((uintptr_t)mem % SHM_CACHE_LINE) != 0)
		return -EINVAL;
	memset(mem, 0, need);
	if (shm_book_layout(mem, &cfg->caps, cfg->shard, cfg->nshards, cfg->stp_mode) !=
	    0)
		return -EINVAL;
	struct eng_core *b = eng_alloc_calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	if (shm_book_view_init(&b->v, mem, need) != 0)
		goto out_free;
	b->hdr = b->v.hdr;
	b->gen_max = shm_order_gen_max(b->v.cap_orders, b->v.nshards);
	b->fn = fn;
	b->ctx = ctx;
	b->stp = cfg->stp_mode;
	uint32_t hs = 16;
	while (hs < 2 * cfg->caps.symbols)
		hs <<= 1;
	b->sym_hash_mask = hs - 1;
	b->sym_hash = eng_alloc_calloc(hs, sizeof(uint32_t));
	b->syms = eng_alloc_calloc(cfg->caps.symbols, sizeof(struct eng_sym));
	b->lvl_free = eng_alloc_calloc(cfg->caps.levels, sizeof(uint32_t));
	b->lvl_retired.v = eng_alloc_calloc(cfg->caps.levels, sizeof(uint32_t));
	b->lvl_retired.epoch = eng_alloc_calloc(cfg->caps.levels, sizeof(uint64_t));
	b->ord_free = eng_alloc_calloc(cfg->caps.orders, sizeof(uint32_t));
	b->ord_done.v = eng_alloc_calloc(cfg->caps.orders, sizeof(uint32_t));
	b->ord_done.epoch = eng_alloc_calloc(cfg->caps.orders, sizeof(uint64_t));
	b->ofills = eng_alloc_calloc(cfg->caps.orders, sizeof(*b->ofills));
	b->fill_free = eng_alloc_calloc(cfg->caps.fills, sizeof(uint32_t));
	b->fill_next = eng_alloc_calloc(cfg->caps.fills, sizeof(uint32_t));
	b->dirty = eng_alloc_calloc(cfg->caps.symbols, sizeof(uint32_t));
	b->otouched = eng_alloc_calloc(cfg->caps.orders, sizeof(uint32_t));
	if (!b->sym_hash || !b->syms || !b->lvl_free || !b->lvl_retired.v ||
	    !b->lvl_retired.epoch || !b->ord_free || !b->ord_done.v ||
	    !b->ord_done.epoch || !b->ofills || !b->fill_free || !b->fill_next ||
	    !b->dirty || !b->otouched) {
		eng_core_destroy(b);
		return -ENOMEM;
	}
	b->lvl_retired.cap = cfg->caps.levels;
	b->ord_done.cap = cfg->caps.orders;
	/* >= 2 entries per level: load factor <= 1/2. */
	uint32_t bits = 4;
	while ((UINT64_C(1) << bits) < 2 * (uint64_t)cfg->caps.levels)
		bits++;
	b->lvl_hash_len = (sizeof(struct eng_lvl_slot)) << bits;
	b->lvl_hash = eng_alloc_reserve(b->lvl_hash_len);
	if (!b->lvl_hash) {
		eng_core_destroy(b);
		return -ENOMEM;
	}
	b->lvl_hash_mask = (uint32_t)((UINT64_C(1) << bits) - 1);
	b->lvl_hash_shift = 64 - bits;
	b->ns_pow2 = (cfg->nshards & (cfg->nshards - 1)) == 0;
	b->ns_shift = (uint32_t)__builtin_ctz(cfg->nshards);
	b->cap_pow2 = (cfg->caps.orders & (cfg->caps.orders - 1)) == 0;
	b->cap_mask = (uint64_t)cfg->caps.orders - 1;
	*out = b;
	return 0;

out_free:
	eng_alloc_free(b);
	return -EINVAL;
}

void eng_core_destroy(struct eng_core *b)
{
	if (!b)
		return;
	if (b->syms) {
		for (uint32_t i = 0; i < b->nsymbols; i++)
			eng_alloc_unreserve(b->syms[i].map, b->syms[i].map_len);
	}
	eng_alloc_free(b->syms);
	eng_alloc_free(b->dirty);
	eng_alloc_free(b->otouched);
	eng_alloc_free(b->sym_hash);
	eng_alloc_unreserve(b->lvl_hash, b->lvl_hash_len);
	eng_alloc_free(b->lvl_free);
	eng_alloc_free(b->lvl_retired.v);
	eng_alloc_free(b->lvl_retired.epoch);
	eng_alloc_free(b->ord_free);
	eng_alloc_free(b->ord_done.v);
	eng_alloc_free(b->ord_done.epoch);
	eng_alloc_free(b->ofills);
	eng_alloc_free(b->fill_free);
	eng_alloc_free(b->fill_next);
	eng_alloc_free(b);
}

void eng_core_set_callback(struct eng_core *b, eng_event_fn fn, void *ctx)
{
	b->fn = fn;
	b->ctx = ctx;
}

void eng_core_set_recycle_hook(struct eng_core *b, eng_recycle_fn fn, void *ctx)
{
	b->recycle_fn = fn;
	b->recycle_ctx = ctx;
}

const struct shm_book_view *eng_core_view(const struct eng_core *b)
{
	return &b->v;
}

/* ------------------------------------------------------------------ */
/* Inspection                                                          */

size_t eng_core_depth(const struct eng_core *b, uint32_t sym, unsigned side,
		      struct eng_core_level_info *out, size_t max)
{
	if (sym >= b->nsymbols || side > 1)
		return 0;
	const struct eng_side *sd = &b->syms[sym].side[side];
	size_t k = 0;
	for (uint32_t i = sd->n; i-- > 0 && k < max;) {
		const struct shm_book_level_sh *l = &b->v.levels[sd->a[i].lvl];
		out[k].price = l->price;
		out[k].qty = l->qty;
		out[k].count = l->count;
		k++;
	}
	return k;
}

const struct shm_book_order_sh *eng_core_order(const struct eng_core *b, uint64_t id)
{
	uint32_t oi;
	if (!id_slot(b, id, &oi))
		return NULL;
	const struct shm_book_order_sh *o = &b->v.orders[oi];
	if (o->id != id || o->state == SHM_BOOK_ORDER_FREE)
		return NULL;
	return o;
}

void eng_core_stats(const struct eng_core *b, struct eng_core_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->levels_live = b->levels_live;
	st->levels_retired = b->lvl_retired.count;
	st->levels_free = b->lvl_nfree + (b->v.cap_levels - b->lvl_unused);
	st->orders_live = b->orders_live;
	st->orders_done = b->ord_done.count;
	st->orders_free = b->ord_nfree;
	st->orders_unused = b->v.cap_orders - b->ord_unused;
	st->fills_used = b->fill_unused - b->fill_nfree;
	st->fills_free = fills_free(b);
	st->events = b->events;
	st->orders_recycled = b->ord_recycled;
}

uint64_t eng_core_recycled(const struct eng_core *b)
{
	return b->ord_recycled;
}

uint32_t eng_core_recycle(struct eng_core *b, uint64_t n)
{
	uint32_t done = 0;
	for (uint64_t i = 0; i < n && done_head_eligible(b); i++) {
		b->ord_free[b->ord_nfree++] = order_recycle(b);
		done++;
	}
	orders_close(b); /* not a request: close the records' windows now */
	return done;
}

uint32_t eng_core_trim(struct eng_core *b, uint32_t keep)
{
	uint32_t n = 0;
	while (b->ord_done.count > keep && done_head_eligible(b)) {
		b->ord_free[b->ord_nfree++] = order_recycle(b);
		n++;
	}
	orders_close(b); /* not a request: close the records' windows now */
	return n;
}

uint64_t eng_core_events(const struct eng_core *b)
{
	return b->events;
}

/* ------------------------------------------------------------------ */
/* Snapshots                                                           */

/* The counters of a saved core (the lists and arrays follow it). */
struct core_snap_hdr {
	uint32_t nsymbols, lvl_nfree, lvl_unused, lvl_retired;
	uint32_t ord_nfree, ord_unused, ord_done, fill_nfree;
	uint32_t fill_unused, levels_live, orders_live, pad;
	uint64_t slots_retired, ord_recycled, events, orders_created, rejects_full;
};

/* The FIFO's entries, oldest first (their epochs are not saved). */
static int put_ring(const struct eng_ring *r, eng_core_put_fn put, void *ctx)
{
	uint32_t first = r->cap - r->head < r->count ? r->cap - r->head : r->count;
	int rc = put(ctx, r->v + r->head, (size_t)first * sizeof(uint32_t));
	if (!rc && first < r->count)
		rc = put(ctx, r->v, (size_t)(r->count - first) * sizeof(uint32_t));
	return rc;
}

int eng_core_save(const struct eng_core *b, eng_core_put_fn put, void *ctx)
{
	struct core_snap_hdr h = {
		.nsymbols = b->nsymbols,
		.lvl_nfree = b->lvl_nfree,
		.lvl_unused = b->lvl_unused,
		.lvl_retired = b->lvl_retired.count,
		.ord_nfree = b->ord_nfree,
		.ord_unused = b->ord_unused,
		.ord_done = b->ord_done.count,
		.fill_nfree = b->fill_nfree,
		.fill_unused = b->fill_unused,
		.levels_live = b->levels_live,
		.orders_live = b->orders_live,
		.slots_retired = b->slots_retired,
		.ord_recycled = b->ord_recycled,
		.events = b->events,
		.orders_created = b->orders_created,
		.rejects_full = b->rejects_full,
	};
	int rc = put(ctx, &h, sizeof(h));
	for (uint32_t i = 0; i < b->nsymbols && !rc; i++) {
		const struct eng_sym *p = &b->syms[i];
		uint32_t n[2] = {p->side[0].n, p->side[1].n};
		rc = put(ctx, n, sizeof(n));
		for (int sd = 0; sd < 2 && !rc; sd++)
			rc = put(ctx, p->side[sd].a,
				 (size_t)n[sd] * sizeof(struct eng_px));
	}
	if (!rc)
		rc = put(ctx, b->lvl_free, (size_t)b->lvl_nfree * sizeof(uint32_t));
	if (!rc)
		rc = put_ring(&b->lvl_retired, put, ctx);
	if (!rc)
		rc = put(ctx, b->ord_free, (size_t)b->ord_nfree * sizeof(uint32_t));
	if (!rc)
		rc = put_ring(&b->ord_done, put, ctx);
	if (!rc)
		rc = put(ctx, b->fill_free, (size_t)b->fill_nfree * sizeof(uint32_t));
	if (!rc)
		rc = put(ctx, b->ofills, (size_t)b->ord_unused * sizeof(*b->ofills));
	return rc;
}

/* A bounds-checked cursor over a saved core. */
struct snap_cursor {
	const unsigned char *p;
	size_t left;
};

static const void *take(struct snap_cursor *c, size_t n)
{
	if (n > c->left)
		return NULL;
	const void *at = c->p;
	c->p += n;
	c->left -= n;
	return at;
}

/* n indexes, each below `below`. */
static const uint32_t *take_idx(struct snap_cursor *c, uint32_t n, uint32_t below)
{
	const uint32_t *v = take(c, (size_t)n * sizeof(uint32_t));
	for (uint32_t i = 0; v && i < n; i++)
		if (v[i] >= below)
			return NULL;
	return v;
}

/* Checks the whole saved core against the capacities (apply: false), or
 * loads it (apply: true, after a check passed). */
static int core_walk(struct eng_core *b, const void *data, size_t len, bool apply)
{
	struct snap_cursor c = {data, len};
	const struct shm_book_view *v = &b->v;
	const struct core_snap_hdr *h = take(&c, sizeof(*h));
	if (!h || h->nsymbols > v->cap_symbols ||
	    h->nsymbols != load_relaxed(&v->hdr->nsymbols) ||
	    h->lvl_unused > v->cap_levels || h->lvl_nfree > h->lvl_unused ||
	    h->lvl_retired > h->lvl_unused - h->lvl_nfree ||
	    h->ord_unused > v->cap_orders || h->ord_nfree > h->ord_unused ||
	    h->ord_done > h->ord_unused - h->ord_nfree || h->fill_unused > v->cap_fills ||
	    h->fill_nfree > h->fill_unused || h->levels_live > h->lvl_unused ||
	    h->orders_live > h->ord_unused)
		return SHMEX_EJCORRUPT;
	if (apply) {
		b->lvl_nfree = h->lvl_nfree;
		b->lvl_unused = h->lvl_unused;
		b->ord_nfree = h->ord_nfree;
		b->ord_unused = h->ord_unused;
		b->fill_nfree = h->fill_nfree;
		b->fill_unused = h->fill_unused;
		b->levels_live = h->levels_live;
		b->orders_live = h->orders_live;
		b->slots_retired = h->slots_retired;
		b->ord_recycled = h->ord_recycled;
		b->events = h->events;
		b->orders_created = h->orders_created;
		b->rejects_full = h->rejects_full;
	}
	/* The price arrays hold the live levels: the hash they fill has room
	 * for cap_levels of them, not for every array full. */
	uint64_t listed = 0;
	for (uint32_t i = 0; i < h->nsymbols; i++) {
		const char *name = v->symbols[i].name;
		size_t nlen = shm_symbol_unpack_len(name);
		if (nlen == 0 || nlen > SHM_SYMBOL_MAX || !shm_symbol_valid(name, nlen))
			return SHMEX_EJCORRUPT;
		const uint32_t *n = take(&c, 2 * sizeof(uint32_t));
		if (!n || n[0] > v->cap_levels || n[1] > v->cap_levels)
			return SHMEX_EJCORRUPT;
		listed += (uint64_t)n[0] + n[1];
		if (listed > h->levels_live)
			return SHMEX_EJCORRUPT;
		if (apply) {
			struct eng_sym *p = &b->syms[i];
			if (sym_map(b, p) != 0)
				return -ENOMEM;
			b->nsymbols = i + 1;
			uint32_t slot = sym_slot(b, v->symbols[i].name);
			if (b->sym_hash[slot])
				return SHMEX_EJCORRUPT; /* two symbols of one name */
			b->sym_hash[slot] = i + 1;
		}
		for (unsigned sd = 0; sd < 2; sd++) {
			const struct eng_px *a = take(&c, (size_t)n[sd] * sizeof(*a));
			if (!a)
				return SHMEX_EJCORRUPT;
			/* Prices are positive: bid keys > 0, ask keys < 0 (and
			 * never INT64_MIN, whose negation overflows). */
			for (uint32_t k = 0; k < n[sd]; k++)
				if (a[k].lvl >= h->lvl_unused ||
				    (k && a[k].key <= a[k - 1].key) ||
				    (sd == SHM_SIDE_BUY
					     ? a[k].key <= 0
					     : a[k].key >= 0 || a[k].key == INT64_MIN))
					return SHMEX_EJCORRUPT;
			if (!apply)
				continue;
			struct eng_side *s = &b->syms[i].side[sd];
			memcpy(s->a, a, (size_t)n[sd] * sizeof(*a));
			s->n = n[sd];
			for (uint32_t k = 0; k < n[sd]; k++)
				lvl_hash_put(b, i * 2 + sd + 1,
					     sd == SHM_SIDE_BUY ? a[k].key : -a[k].key,
					     a[k].lvl);
		}
	}
	const uint32_t *lf = take_idx(&c, h->lvl_nfree, h->lvl_unused);
	const uint32_t *lr = take_idx(&c, h->lvl_retired, h->lvl_unused);
	const uint32_t *of = take_idx(&c, h->ord_nfree, h->ord_unused);
	const uint32_t *od = take_idx(&c, h->ord_done, h->ord_unused);
	const uint32_t *ff = take_idx(&c, h->fill_nfree, h->fill_unused);
	const uint32_t(*ofl)[ORDER_FILLS] =
		take(&c, (size_t)h->ord_unused * sizeof(*b->ofills));
	if (!lf || !lr || !of || !od || !ff || !ofl || c.left != 0 ||
	    listed != h->levels_live)
		return SHMEX_EJCORRUPT;
	for (uint32_t i = 0; i < h->ord_unused; i++)
		for (int k = 0; k < ORDER_FILLS; k++)
			if (ofl[i][k] >= v->cap_fills && ofl[i][k] != NIL)
				return SHMEX_EJCORRUPT;
	if (!apply)
		return 0;
	memcpy(b->lvl_free, lf, (size_t)h->lvl_nfree * sizeof(uint32_t));
	memcpy(b->ord_free, of, (size_t)h->ord_nfree * sizeof(uint32_t));
	memcpy(b->fill_free, ff, (size_t)h->fill_nfree * sizeof(uint32_t));
	memcpy(b->ofills, ofl, (size_t)h->ord_unused * sizeof(*b->ofills));
	/* The private links from the shared ones (a link out of range ends
	 * the list: at worst its fills are never reused, nothing is read out
	 * of bounds). */
	for (uint32_t fi = 0; fi < h->fill_unused; fi++) {
		uint32_t nx = v->fills[fi].next;
		b->fill_next[fi] = nx < v->cap_fills ? nx : NIL;
	}
	/* Epoch 0: no reader has seen this book, every retired record may be
	 * reused at once. */
	b->lvl_retired.head = b->ord_done.head = 0;
	b->lvl_retired.count = b->ord_done.count = 0;
	for (uint32_t i = 0; i < h->lvl_retired; i++)
		ring_push(&b->lvl_retired, lr[i], 0);
	for (uint32_t i = 0; i < h->ord_done; i++)
		ring_push(&b->ord_done, od[i], 0);
	return 0; /* the published counters came with the body */
}

int eng_core_load(struct eng_core *b, const void *data, size_t len, char *why,
		  size_t why_len)
{
	char scratch[1];
	if (!why) {
		why = scratch;
		why_len = sizeof(scratch);
	}
	if (why_len)
		why[0] = 0;
	if (b->nsymbols != 0)
		return -EINVAL;
	int rc = core_walk(b, data, len, false);
	if (!rc)
		rc = core_walk(b, data, len, true);
	if (rc == SHMEX_EJCORRUPT && why_len)
		snprintf(
			why, why_len,
			"a count, index, price or symbol name of the core section out of range");
	if (rc)
		return rc;
	/* A snapshot is taken between requests, so every record's own
	 * window is closed; one that is not (a damaged snapshot) would look
	 * open to order_open and never close. */
	for (uint32_t i = 0; i < b->ord_unused; i++) {
		struct shm_book_order_sh *o = &b->v.orders[i];
		if (o->seq & 1)
			store_release(&o->seq, o->seq + 1); /* [BK18] */
	}
	/* The quotes are derived: publish every symbol's from the book, each
	 * from a closed window (an odd count that came with the bytes would
	 * otherwise be flipped by the next window, and stay odd). */
	for (uint32_t i = 0; i < b->nsymbols; i++) {
		struct shm_book_sym_sh *s = &b->v.symbols[i];
		if (s->seq & 1)
			store_release(&s->seq, s->seq + 1); /* [BK4] */
		struct shm_book_quote_sh *q = &b->v.quotes[i];
		if (q->seq & 1)
			store_release(&q->seq, q->seq + 1); /* [BK14] */
		quote_publish(b, i);
	}
	/* The counts and indexes were in range; now the structure. */
	rc = eng_core_check(b, why, why_len);
	return rc == SHMEX_EINTERNAL ? SHMEX_EJCORRUPT : rc;
}

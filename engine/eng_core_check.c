/*
 * The matching core's invariant checker (eng_core_check in eng_core.h):
 * list order, aggregates, counts, open + executed + cancelled == amount,
 * pool accounting, the private price hash against the live levels, every
 * record's own seqcount closed, each published quote (of a symbol not
 * waiting for eng_core_publish) equal to the book, and ownership: every
 * level, order and fill record below its watermark is in exactly one
 * place (a side's price array or a retirement FIFO or the free stack; a
 * level's queue or the done FIFO or the free stack; one order's fill list
 * or the free stack).  Tests run it after every step; eng_core_load runs
 * it on every loaded snapshot, whose checksums prove only that the bytes
 * are the ones written, not that they were written by a core.  Every walk
 * is bounded by the marks, so a forged cycle ends the walk with an error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/eng_core_impl.h"
#include "shm/shm_error.h"
#include "shm/shm_shard.h"

#define NIL SHM_BOOK_NIL

#define CHECK(cond, ...)                                 \
	do {                                             \
		if (!(cond)) {                           \
			snprintf(why, len, __VA_ARGS__); \
			return SHMEX_EINTERNAL;          \
		}                                        \
	} while (0)

/* One bit per record of each pool: the record has an owner already. */
struct marks {
	uint64_t *lvl, *ord, *fill;
};

/* Marks record i; false when it was marked already. */
static bool mark(uint64_t *m, uint32_t i)
{
	uint64_t bit = UINT64_C(1) << (i & 63);
	if (m[i >> 6] & bit)
		return false;
	m[i >> 6] |= bit;
	return true;
}

static int check_side(const struct eng_core *b, struct marks *mk, uint32_t si,
		      unsigned side, uint64_t *live, char *why, size_t len)
{
	const struct shm_book_sym_sh *s = &b->v.symbols[si];
	const struct eng_side *sd = &b->syms[si].side[side];
	int64_t total = 0;
	uint32_t norders = 0;
	CHECK(s->nlevels[side] == sd->n, "sym %u side %u: nlevels", si, side);
	CHECK(s->head[side] == (sd->n ? sd->a[sd->n - 1].lvl : NIL),
	      "sym %u side %u: head", si, side);
	for (uint32_t i = 0; i < sd->n; i++) {
		uint32_t li = sd->a[i].lvl;
		CHECK(li < b->lvl_unused, "sym %u side %u: level index %u", si, side, li);
		CHECK(mark(mk->lvl, li), "level %u listed twice", li);
		const struct shm_book_level_sh *l = &b->v.levels[li];
		CHECK(i == 0 || sd->a[i - 1].key < sd->a[i].key, "sym %u side %u: order",
		      si, side);
		CHECK(l->state == SHM_BOOK_LEVEL_LIVE, "level %u not live", li);
		CHECK(l->price > 0, "level %u price %lld", li, (long long)l->price);
		CHECK(l->sym == si && l->side == side, "level %u sym/side", li);
		CHECK(side_key(side, l->price) == sd->a[i].key, "level %u key", li);
		CHECK(l->next == (i ? sd->a[i - 1].lvl : NIL), "level %u next", li);
		CHECK(lvl_hash_get(b, lvl_tag(si, side), l->price) == li,
		      "level %u not in the price hash", li);
		CHECK(l->count > 0, "level %u empty", li);
		int64_t q = 0;
		uint32_t c = 0, prev = NIL;
		for (uint32_t oi = l->head; oi != NIL; oi = b->v.orders[oi].next) {
			CHECK(oi < b->ord_unused, "level %u: queue index %u", li, oi);
			CHECK(mark(mk->ord, oi), "order %u queued twice", oi);
			const struct shm_book_order_sh *o = &b->v.orders[oi];
			CHECK(o->state == SHM_BOOK_ORDER_LIVE, "order %u not live", oi);
			CHECK(o->level == li && o->prev == prev, "order %u links", oi);
			CHECK(o->price == l->price && o->side == side && o->sym == si,
			      "order %u price/side", oi);
			CHECK(o->open > 0 && o->open <= INT64_MAX - q, "order %u open",
			      oi);
			q += o->open;
			c++;
			prev = oi;
		}
		CHECK(l->tail == prev, "level %u tail", li);
		CHECK(l->qty == q && l->count == c, "level %u aggregates", li);
		CHECK(q <= INT64_MAX - total, "sym %u side %u open_qty", si, side);
		total += q;
		norders += c;
	}
	CHECK(s->open_qty[side] == total, "sym %u side %u open_qty", si, side);
	CHECK(s->norders[side] == norders, "sym %u side %u norders", si, side);
	*live += norders;
	return 0;
}

/* A symbol's quote against its book (called when it is not dirty). */
static int check_quote(const struct eng_core *b, uint32_t si, char *why, size_t len)
{
	const struct shm_book_sym_sh *s = &b->v.symbols[si];
	const struct shm_book_quote_sh *q = &b->v.quotes[si];
	CHECK((q->seq & 1) == 0, "sym %u quote window open", si);
	/* Recycling a finished order moves the symbol's seq, not its quote. */
	CHECK((q->book_seq & 1) == 0 && q->book_seq <= s->seq,
	      "sym %u quote taken at seq %llu, book at %llu", si,
	      (unsigned long long)q->book_seq, (unsigned long long)s->seq);
	for (unsigned side = 0; side < 2; side++) {
		const struct eng_side *sd = &b->syms[si].side[side];
		uint32_t n =
			sd->n < SHM_BOOK_QUOTE_LEVELS ? sd->n : SHM_BOOK_QUOTE_LEVELS;
		CHECK(q->ndepth[side] == n && q->nlevels[side] == s->nlevels[side] &&
			      q->norders[side] == s->norders[side] &&
			      q->open_qty[side] == s->open_qty[side],
		      "sym %u side %u quote totals", si, side);
		for (uint32_t k = 0; k < SHM_BOOK_QUOTE_LEVELS; k++) {
			const struct shm_book_quote_level_sh *x = &q->level[k][side];
			if (k >= n) {
				CHECK(x->price == 0 && x->qty == 0 && x->count == 0,
				      "sym %u side %u quote level %u not cleared", si,
				      side, k);
				continue;
			}
			const struct shm_book_level_sh *l =
				&b->v.levels[sd->a[sd->n - 1 - k].lvl];
			CHECK(x->price == l->price && x->qty == l->qty &&
				      x->count == l->count,
			      "sym %u side %u quote level %u", si, side, k);
		}
	}
	CHECK(q->last_price == s->last_price && q->last_qty == s->last_qty &&
		      q->last_time_ns == s->last_time_ns && q->trades == s->trades &&
		      q->volume == s->volume,
	      "sym %u quote trade statistics", si);
	return 0;
}

/* A free stack (stack, n) or a FIFO (ring) of record indexes. */
struct list {
	const uint32_t *stack;
	const struct eng_ring *ring;
	uint32_t n;
	const char *name;
};

enum pool { POOL_LEVEL, POOL_ORDER, POOL_FILL };

/* Every entry of l owns its record of pool p (below the pool's watermark,
 * listed nowhere else) and the record is in `state` (fills have none). */
static int check_list(const struct eng_core *b, struct marks *mk, enum pool p,
		      struct list l, unsigned state, char *why, size_t len)
{
	static const char *const kind[] = {"level", "order", "fill"};
	uint64_t *m = p == POOL_LEVEL ? mk->lvl : p == POOL_ORDER ? mk->ord : mk->fill;
	uint32_t below = p == POOL_LEVEL   ? b->lvl_unused
			 : p == POOL_ORDER ? b->ord_unused
					   : b->fill_unused;
	for (uint32_t i = 0; i < l.n; i++) {
		uint32_t x = l.ring ? ring_at(l.ring, i) : l.stack[i];
		CHECK(x < below && mark(m, x), "%s %s %u: out of range or listed twice",
		      l.name, kind[p], x);
		unsigned st = p == POOL_LEVEL   ? b->v.levels[x].state
			      : p == POOL_ORDER ? b->v.orders[x].state
						: state;
		CHECK(st == state, "%s %s %u: in state %u", l.name, kind[p], x, st);
		/* Recycling a done order opens its symbol's window. */
		CHECK(p != POOL_ORDER || state != SHM_BOOK_ORDER_DONE ||
			      b->v.orders[x].sym < b->nsymbols,
		      "done order %u: symbol %u", x, b->v.orders[x].sym);
	}
	return 0;
}

/* The free stacks and retirement FIFOs: each entry owns its record, in
 * the state of its list. */
static int check_lists(const struct eng_core *b, struct marks *mk, char *why, size_t len)
{
	int rc = check_list(b, mk, POOL_LEVEL,
			    (struct list){b->lvl_free, NULL, b->lvl_nfree, "free"},
			    SHM_BOOK_LEVEL_FREE, why, len);
	if (!rc)
		rc = check_list(b, mk, POOL_LEVEL,
				(struct list){NULL, &b->lvl_retired, b->lvl_retired.count,
					      "retired"},
				SHM_BOOK_LEVEL_RETIRED, why, len);
	if (!rc)
		rc = check_list(b, mk, POOL_ORDER,
				(struct list){b->ord_free, NULL, b->ord_nfree, "free"},
				SHM_BOOK_ORDER_FREE, why, len);
	if (!rc)
		rc = check_list(
			b, mk, POOL_ORDER,
			(struct list){NULL, &b->ord_done, b->ord_done.count, "done"},
			SHM_BOOK_ORDER_DONE, why, len);
	if (!rc)
		rc = check_list(b, mk, POOL_FILL,
				(struct list){b->fill_free, NULL, b->fill_nfree, "free"},
				0, why, len);
	return rc;
}

/* Order oi's quantities and fill list (each fill owned once). */
static int check_order(const struct eng_core *b, struct marks *mk, uint32_t oi,
		       uint64_t *fills, char *why, size_t len)
{
	const struct shm_book_order_sh *o = &b->v.orders[oi];
	/* What readers check of a status, and what the core relies on. */
	CHECK(o->sym < b->nsymbols && o->side <= SHM_SIDE_SELL && o->tif <= SHM_TIF_FOK &&
		      o->price > 0 && o->amount > 0,
	      "order %u: symbol, side, tif, price or amount", oi);
	CHECK(o->id == shm_order_id_make(b->v.shard, b->v.nshards, oi, o->gen,
					 b->v.cap_orders),
	      "order %u: its id names another slot or generation", oi);
	CHECK(o->state == SHM_BOOK_ORDER_LIVE
		      ? o->done_reason == SHM_BOOK_DONE_NONE && o->tif == SHM_TIF_GTC
		      : o->done_reason != SHM_BOOK_DONE_NONE &&
				o->done_reason <= SHM_BOOK_DONE_MODIFY,
	      "order %u: done reason %u, tif %u", oi, o->done_reason, o->tif);
	CHECK(o->open >= 0 && o->executed >= 0 && o->cancelled >= 0, "order %u negative",
	      oi);
	CHECK(o->open <= o->amount && o->executed <= o->amount - o->open &&
		      o->cancelled == o->amount - o->open - o->executed,
	      "order %u quantities", oi);
	/* Only a finished order has a cancelled part, and every finish but a
	 * fill cancels one. */
	CHECK(o->state == SHM_BOOK_ORDER_LIVE
		      ? o->cancelled == 0
		      : (o->done_reason == SHM_BOOK_DONE_FILLED) == (o->cancelled == 0),
	      "order %u: cancelled %lld with done reason %u", oi, (long long)o->cancelled,
	      o->done_reason);
	/* Events to come would make a gateway wait for them for ever. */
	CHECK(o->mod_event <= b->events, "order %u: event %llu of %llu", oi,
	      (unsigned long long)o->mod_event, (unsigned long long)b->events);
	CHECK((o->state == SHM_BOOK_ORDER_LIVE) == (o->open > 0),
	      "order %u state vs open", oi);
	int64_t ex = 0;
	uint32_t k = 0, fi = o->fill_head, last = NIL;
	for (; fi != NIL && k <= o->nfills; k++) {
		CHECK(fi < b->fill_unused, "order %u: fill index %u", oi, fi);
		CHECK(mark(mk->fill, fi), "fill %u has two owners", fi);
		const struct shm_book_fill_sh *f = &b->v.fills[fi];
		CHECK(f->order_id == o->id && f->qty > 0 && f->qty <= o->executed - ex,
		      "fill %u owner", fi);
		CHECK(f->event > 0 && f->event <= b->events, "fill %u event", fi);
		CHECK(k >= ORDER_FILLS || b->ofills[oi][k] == fi, "order %u ofills", oi);
		CHECK(b->fill_next[fi] == f->next, "fill %u private link", fi);
		ex += f->qty;
		last = fi;
		fi = f->next;
	}
	CHECK(k == o->nfills && fi == NIL && last == o->fill_tail, "order %u fill list",
	      oi);
	CHECK(ex == o->executed, "order %u executed vs fills", oi);
	*fills += k;
	return 0;
}

static int check_all(const struct eng_core *b, struct marks *mk, char *why, size_t len)
{
	uint64_t live = 0;
	for (uint32_t si = 0; si < b->nsymbols; si++) {
		const struct shm_book_sym_sh *s = &b->v.symbols[si];
		CHECK((s->seq & 1) == 0, "sym %u window open", si);
		CHECK(s->volume >= 0 && s->last_price >= 0 && s->last_qty >= 0,
		      "sym %u trade statistics", si);
		for (unsigned side = 0; side < 2; side++) {
			int rc = check_side(b, mk, si, side, &live, why, len);
			if (rc)
				return rc;
		}
		const struct eng_side *bid = &b->syms[si].side[0];
		const struct eng_side *ask = &b->syms[si].side[1];
		if (bid->n && ask->n)
			CHECK(-ask->a[ask->n - 1].key > bid->a[bid->n - 1].key,
			      "sym %u crossed", si);
		if (!b->syms[si].dirty) {
			int rc = check_quote(b, si, why, len);
			if (rc)
				return rc;
		}
	}
	int rc = check_lists(b, mk, why, len);
	if (rc)
		return rc;
	CHECK(b->notouched == 0, "%u order windows left open", b->notouched);
	CHECK(live == b->orders_live, "orders_live %u vs %llu resting", b->orders_live,
	      (unsigned long long)live);
	CHECK(b->events <= INT64_MAX, "event count %llu", (unsigned long long)b->events);
	uint32_t nlive = 0, ndone = 0, nfree = 0;
	uint64_t fills = 0, uses = 0;
	for (uint32_t oi = 0; oi < b->ord_unused; oi++) {
		const struct shm_book_order_sh *o = &b->v.orders[oi];
		CHECK((o->seq & 1) == 0, "order %u window open", oi);
		/* Past gen_max the slot's next id would not fit 64 bits (or
		 * wrap to an id issued before). */
		CHECK(o->gen <= b->gen_max, "order %u: generation %llu", oi,
		      (unsigned long long)o->gen);
		uses += o->gen + 1; /* fits: gen_max bounds every id */
		if (o->state == SHM_BOOK_ORDER_FREE) {
			nfree++;
			continue;
		}
		CHECK(o->state == SHM_BOOK_ORDER_LIVE || o->state == SHM_BOOK_ORDER_DONE,
		      "order %u state %u", oi, o->state);
		nlive += o->state == SHM_BOOK_ORDER_LIVE;
		ndone += o->state == SHM_BOOK_ORDER_DONE;
		rc = check_order(b, mk, oi, &fills, why, len);
		if (rc)
			return rc;
	}
	/* With the marks, the counts say every record below its watermark
	 * is in exactly one place. */
	CHECK(nlive == b->orders_live, "live count");
	CHECK(ndone == b->ord_done.count, "done count %u vs %u", ndone,
	      b->ord_done.count);
	/* Slot k has held gen + 1 orders: a generation lowered would issue
	 * an id again. */
	CHECK(uses == b->orders_created, "%llu orders created, slots held %llu",
	      (unsigned long long)b->orders_created, (unsigned long long)uses);
	/* A slot retired at gen_max is free and on no list. */
	CHECK(nfree == b->ord_nfree + b->slots_retired, "free order count");
	CHECK(fills == (uint64_t)(b->fill_unused - b->fill_nfree), "fill accounting");
	CHECK(b->levels_live + b->lvl_retired.count + b->lvl_nfree == b->lvl_unused,
	      "level accounting");
	uint32_t hashed = 0;
	for (uint32_t i = 0; i <= b->lvl_hash_mask; i++)
		hashed += b->lvl_hash[i].tag != 0;
	CHECK(hashed == b->levels_live, "price hash holds %u entries, %u live levels",
	      hashed, b->levels_live);
	return 0;
}

int eng_core_check(const struct eng_core *b, char *why, size_t len)
{
	struct marks mk = {
		.lvl = calloc(b->v.cap_levels / 64 + 1, sizeof(uint64_t)),
		.ord = calloc(b->v.cap_orders / 64 + 1, sizeof(uint64_t)),
		.fill = calloc(b->v.cap_fills / 64 + 1, sizeof(uint64_t)),
	};
	int rc = -ENOMEM;
	if (mk.lvl && mk.ord && mk.fill)
		rc = check_all(b, &mk, why, len);
	else
		snprintf(why, len, "out of memory for the checker's marks");
	free(mk.lvl);
	free(mk.ord);
	free(mk.fill);
	return rc;
}

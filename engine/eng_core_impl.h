/*
 * eng_core_impl: the private state of the matching core, for eng_core.c
 * and for its invariant checker (eng_core_check.c), which must see the
 * writer's private structures to check them against the shared book.
 * Nothing else may include it: the contract is eng_core.h.
 */
#ifndef SHMEX_ENGINE_ENG_CORE_IMPL_H
#define SHMEX_ENGINE_ENG_CORE_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/eng_core.h"
#include "shm/shm_msg.h"

struct eng_px {
	int64_t key;  /* bids: price; asks: -price; ascending = better */
	uint32_t lvl; /* level index */
	uint32_t pad;
};

struct eng_side {
	struct eng_px *a; /* a[0] worst ... a[n-1] best */
	uint32_t n;
};

struct eng_sym {
	struct eng_side side[2];
	void *map; /* both sides' arrays, MAP_NORESERVE */
	size_t map_len;
	bool dirty; /* changed since its quote was last published */
};

/* FIFO ring of indexes in retirement order, with each one's retire epoch
 * (a private copy: checking the oldest entry touches no shared memory). */
struct eng_ring {
	uint32_t *v;
	uint64_t *epoch;
	uint32_t head;
	uint32_t count;
	uint32_t cap;
};

#define ORDER_FILLS 4
/* How far ahead in the done FIFO order_recycle prefetches the record to
 * recycle (about 2 x as many requests ahead; 2, 4, 8 and 16 measured
 * alike within noise, 8 slightly best). */
#define PREFETCH_AHEAD 8
/* How many allocations ahead order_alloc prefetches the free stack. */
#define FREE_AHEAD 16

/* One entry of the private price -> level hash (open addressing, linear
 * probing, backward-shift deletion).  tag = sym * 2 + side + 1, 0 = empty. */
struct eng_lvl_slot {
	int64_t price;
	uint32_t tag;
	uint32_t lvl;
};

struct eng_core {
	struct shm_book_view v;
	struct shm_book_hdr_sh *hdr;
	eng_event_fn fn;
	void *ctx;
	eng_recycle_fn recycle_fn; /* NULL: no hook */
	void *recycle_ctx;
	uint32_t stp;
	uint32_t nsymbols;
	struct eng_sym *syms;
	uint32_t *sym_hash; /* symbol index + 1, 0 = empty */
	uint32_t sym_hash_mask;

	/* LIVE levels by (symbol, side, price); MAP_NORESERVE, >= 2 x
	 * cap_levels entries so probes stay short. */
	struct eng_lvl_slot *lvl_hash;
	size_t lvl_hash_len; /* bytes mapped */
	uint32_t lvl_hash_mask;
	uint32_t lvl_hash_shift; /* 64 - log2(entries) */

	/* Order id -> slot without 64-bit divisions when nshards and
	 * cap_orders are powers of two (ns_shift/cap_mask valid then). */
	bool ns_pow2, cap_pow2;
	uint32_t ns_shift;
	uint64_t cap_mask;

	uint32_t *lvl_free;
	uint32_t lvl_nfree;
	uint32_t lvl_unused; /* never-used watermark */
	struct eng_ring lvl_retired;

	uint32_t *ord_free;
	uint32_t ord_nfree;
	uint64_t gen_max;       /* shm_order_gen_max of this book */
	uint64_t slots_retired; /* slots never reused again (gen_max) */
	uint32_t ord_unused;
	uint64_t ord_recycled; /* order_recycle calls */
	struct eng_ring ord_done;

	uint32_t *fill_free; /* stack of free fill records */
	uint32_t fill_nfree;
	uint32_t fill_unused;
	/* The first ORDER_FILLS fill indexes of each order slot: recycling an
	 * order frees them without walking its (cold) fill list. */
	uint32_t (*ofills)[ORDER_FILLS];
	/* Private copy of every fill's `next` link: recycling an order with
	 * more than ORDER_FILLS fills walks this dense array (16 links per
	 * line) instead of one cold shared fill record per link. */
	uint32_t *fill_next;

	uint32_t levels_live;
	uint32_t orders_live;
	uint64_t safe_epoch;
	uint64_t events;
	uint64_t orders_created;
	uint64_t rejects_full;

	/* Reclamation pacing (eng_core_reclaim_due): requests applied and
	 * book-full rejects at the last eng_core_reclaim, and the time of
	 * the first eng_core_reclaim_due after it. */
	uint32_t since_reclaim;
	uint64_t reclaim_from_ns;
	uint64_t rejects_full_seen;

	/* Order records whose own seqcount window is open in this request
	 * (order_open); closed at its end (request_end). */
	uint32_t *otouched;
	uint32_t notouched;

	/* Quote publication (eng_core_publish): symbols changed since. */
	uint32_t *dirty;
	uint32_t ndirty;
	bool batched; /* publish only in eng_core_publish, not per request */

	const struct eng_req *req; /* the request being applied */
};

/* Helpers the checker shares with the core. */

/* The k-th oldest entry of a FIFO (k < count). */
static inline uint32_t ring_at(const struct eng_ring *r, uint32_t k)
{
	uint32_t at = r->head + k;
	if (at >= r->cap)
		at -= r->cap;
	return r->v[at];
}

/* Sort key of a price on a side: ascending = better. */
static inline int64_t side_key(unsigned side, int64_t price)
{
	return side == SHM_SIDE_BUY ? price : -price;
}

/* Private price -> level hash of the LIVE levels. */
static inline uint32_t lvl_tag(uint32_t symi, unsigned side)
{
	return symi * 2 + side + 1;
}

static inline uint32_t lvl_hash_home(const struct eng_core *b, uint32_t tag,
				     int64_t price)
{
	uint64_t x =
		((uint64_t)price ^ ((uint64_t)tag << 40)) * UINT64_C(0x9e3779b97f4a7c15);
	return (uint32_t)(x >> b->lvl_hash_shift);
}

/* Level index of the LIVE level (tag, price), or SHM_BOOK_NIL. */
static inline uint32_t lvl_hash_get(const struct eng_core *b, uint32_t tag, int64_t price)
{
	uint32_t i = lvl_hash_home(b, tag, price);
	for (;;) {
		const struct eng_lvl_slot *e = &b->lvl_hash[i];
		if (e->tag == tag && e->price == price)
			return e->lvl;
		if (e->tag == 0)
			return SHM_BOOK_NIL;
		i = (i + 1) & b->lvl_hash_mask;
	}
}

#endif

/*
 * eng_core: the pure matching core of one shard.
 *
 * Book + request in, events out.  No I/O, no clock reads, no allocation
 * after eng_core_init and eng_core_symbol_add: time, the request sequence
 * number and the reader epoch are fields of the request, so a recorded flow
 * replays to byte-identical events.
 *
 * The book lives in a caller-provided memory area of eng_core_bytes(cfg)
 * bytes laid out as shm/shm_book.h: the body of a SHM_KIND_BOOK region (the
 * matcher; readers in other processes walk it concurrently) or plain memory
 * (shmex-replay, tests, benchmarks).  The writer's private acceleration
 * structures (a sorted price array per symbol side, free lists, the
 * retirement queues, the symbol hash) live in the handle, in this process,
 * in memory from eng_alloc.h (the heap and private mappings, unless a
 * benchmark put them in shared memory).
 *
 * Concurrency: every function here is called by one thread, the shard's
 * single writer.  Readers in any process may run at the same time (see the
 * contract in shm/shm_book.h); the writer never waits for them.
 *
 * Rules (docs/matching.md has the full list):
 *  - limit orders, price-time priority, execution at the resting order's
 *    price; a partly filled order keeps its place;
 *  - GTC rests, IOC cancels its remainder, FOK fills completely or is killed
 *    without any trade (accept event, then one cancel event);
 *  - cancel cancels the open part; modify sets a new limit and a new OPEN
 *    quantity: a pure size reduction keeps priority, anything else
 *    re-queues at the back (and trades if it crosses); modify to 0 cancels;
 *  - self-trades are allowed unless the book's stp_mode says otherwise.
 *
 * Every request either applies completely or is rejected before anything
 * visible changes (a rejection may still recycle old DONE order records to
 * make room, which only shortens how long they stay queryable).
 */
#ifndef SHMEX_ENGINE_ENG_CORE_H
#define SHMEX_ENGINE_ENG_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shm/shm_book.h"

struct eng_core;

struct eng_core_cfg {
	struct shm_book_caps caps; /* symbols, levels, orders, fills */
	uint32_t shard;            /* this shard (order id scheme) */
	uint32_t nshards;          /* >= 1 */
	uint32_t stp_mode;         /* enum shm_book_stp */
};

enum eng_ev_type {
	ENG_EV_ACCEPT = 0, /* a new order got an id (IOC and FOK too) */
	ENG_EV_FILL = 1,   /* one trade, in match order */
	ENG_EV_CANCEL = 2, /* an order's open part was cancelled */
	ENG_EV_MODIFY = 3, /* a modify was applied (before its own fills) */
	ENG_EV_REJECT = 4, /* a request was rejected; nothing changed */
};

enum eng_req_type {
	ENG_REQ_NEW = 1,
	ENG_REQ_CANCEL = 2,
	ENG_REQ_MODIFY = 3,
};

/*
 * One event.  Fields not listed for a type are zero.
 *
 *   ACCEPT  order_id, account, sym, side, tif, price = limit, qty = amount
 *   FILL    order_id/account/side/taker_price/taker_open: the incoming
 *           (taker) order; maker_*: the resting order (side = !side);
 *           price = execution price (= maker_price), qty = traded
 *   CANCEL  order_id, account, sym, side, tif, price = the order's limit,
 *           qty = the open quantity cancelled (what its reservation still
 *           holds), reason = enum shm_book_done_reason (CANCEL, IOC, FOK,
 *           STP, MODIFY)
 *   MODIFY  order_id, account, sym, side, price/qty = new limit and new
 *           open quantity, old_price/old_qty = limit and open before
 *   REJECT  reason = enum eng_req_type, err = the shmex error, order_id =
 *           the target of a cancel/modify, other fields from the request
 *
 * For accounts: a FILL settles qty at price for both sides (a buyer
 * reserved qty x its own limit); a CANCEL releases qty (x price for a
 * buy); a MODIFY re-reserves old_qty x old_price -> qty x price.
 */
struct eng_event {
	uint8_t type;   /* enum eng_ev_type */
	uint8_t side;   /* enum shm_side of order_id */
	uint8_t tif;    /* enum shm_tif of order_id */
	uint8_t reason; /* see above */
	int32_t err;    /* REJECT: shmex error */
	uint32_t sym;   /* symbol index */
	uint32_t pad0;
	uint64_t event;   /* per-shard event sequence number, from 1 */
	uint64_t seq;     /* the request's seq */
	uint64_t time_ns; /* the request's time */
	uint64_t order_id;
	uint64_t account;
	int64_t price;
	int64_t qty;
	/* FILL */
	uint64_t maker_id;
	uint64_t maker_account;
	int64_t maker_price; /* maker's limit */
	int64_t taker_price; /* taker's limit */
	int64_t maker_open;  /* maker's open quantity after the fill */
	int64_t taker_open;  /* taker's open quantity after the fill */
	/* MODIFY */
	int64_t old_price;
	int64_t old_qty;
};

/* Called synchronously for every event, in order; must not call back into
 * the book. */
typedef void (*eng_event_fn)(void *ctx, const struct eng_event *ev);

/* One request.  Inputs only: the core reads no clock. */
struct eng_req {
	uint64_t seq;      /* request sequence number (echoed in events) */
	uint64_t time_ns;  /* request time (stored in records and events) */
	uint64_t epoch;    /* current reader epoch: the retire tag */
	uint64_t account;  /* the requester (owner check on cancel/modify) */
	uint64_t order_id; /* CANCEL, MODIFY: the target */
	int64_t price;     /* NEW, MODIFY: limit, > 0 */
	int64_t qty;       /* NEW: amount > 0; MODIFY: new open qty >= 0 */
	uint32_t sym;      /* NEW: symbol index */
	uint8_t side;      /* NEW: enum shm_side */
	uint8_t tif;       /* NEW: enum shm_tif */
	uint8_t flags;     /* NEW: ENG_REQ_POST_ONLY; 0 otherwise */
	uint8_t pad;
};

/* eng_req.flags.  POST_ONLY: the order may only add liquidity; it is
 * rejected (SHMEX_EWOULDCROSS, nothing changed) when any opposite order
 * rests at a price it would trade with at the moment it is applied.  It
 * is an attribute of the request only: once resting the order is like
 * any other (the order record does not keep it; a later modify that
 * crosses trades). */
#define ENG_REQ_POST_ONLY 1u

/* Bytes of memory the book needs (0 when cfg is invalid). */
size_t eng_core_bytes(const struct eng_core_cfg *cfg);

/*
 * Lays the book out in mem (len >= eng_core_bytes, 64-byte aligned; it is
 * zeroed here) and allocates the private structures.  fn may be NULL.
 * Returns 0, -EINVAL (bad cfg, short or misaligned memory) or -ENOMEM.
 */
int eng_core_init(struct eng_core **out, void *mem, size_t len,
		  const struct eng_core_cfg *cfg, eng_event_fn fn, void *ctx)
	__attribute__((warn_unused_result));

/* Frees the private structures; the memory area is left as it is. */
void eng_core_destroy(struct eng_core *b);

/* Replaces the event callback. */
void eng_core_set_callback(struct eng_core *b, eng_event_fn fn, void *ctx);

/* Called with the record of a finished order just before the core
 * recycles it (every path: the done window, a new order's slot, room for
 * fills), while the record and its fills are still intact in the book
 * region; the matcher keeps the order's final state on disk with it
 * (eng_history.h).  Deterministic: a replay recycles the same records in
 * the same order. */
typedef void (*eng_recycle_fn)(void *ctx, const struct shm_book_view *v, uint32_t order);
void eng_core_set_recycle_hook(struct eng_core *b, eng_recycle_fn fn, void *ctx);

/* The shared view (geometry and pools) of the book. */
const struct shm_book_view *eng_core_view(const struct eng_core *b);

/*
 * Adds a symbol (or finds it when it exists) and returns its index.
 * SHMEX_EBADSYMBOL for an invalid name, SHMEX_ESYMBOLSFULL, -ENOMEM.
 * Allocates the symbol's private price arrays: call it off the hot path.
 */
int eng_core_symbol_add(struct eng_core *b, const char *name, size_t len, uint32_t *idx)
	__attribute__((warn_unused_result));
/* SHMEX_ENOSYMBOL when the symbol does not exist. */
int eng_core_symbol_find(const struct eng_core *b, const char *name, size_t len,
			 uint32_t *idx) __attribute__((warn_unused_result));

/*
 * New order.  On acceptance returns 0 and its id (also when an IOC or FOK
 * order ends up cancelled: the events say so).  Rejections (nothing
 * changed, a REJECT event is emitted): SHMEX_ENOSYMBOL, SHMEX_EBADREQUEST
 * (side), SHMEX_EBADTIF, SHMEX_EBADAMOUNT (qty <= 0), SHMEX_EBADPRICE
 * (price <= 0), SHMEX_EOVERFLOW (the side's open total would overflow),
 * SHMEX_EBOOKFULL (no order record, fill records or level available),
 * SHMEX_EWOULDCROSS (ENG_REQ_POST_ONLY and the order would trade: checked
 * before anything else may change, so not even an old record is recycled),
 * SHMEX_EBADREQUEST also for unknown flags.
 */
int eng_core_submit(struct eng_core *b, const struct eng_req *r, uint64_t *id)
	__attribute__((warn_unused_result));

/*
 * Cancels the open part of r->order_id.  SHMEX_ENOORDER (no such order:
 * never issued, other shard, or its record was recycled), SHMEX_ENOTOWNER
 * (r->account is not the owner), SHMEX_ENOTOPEN (filled or cancelled).
 */
int eng_core_cancel(struct eng_core *b, const struct eng_req *r)
	__attribute__((warn_unused_result));

/*
 * Modifies r->order_id to limit r->price and open quantity r->qty.
 * Errors as eng_core_cancel, plus SHMEX_EBADPRICE, SHMEX_EBADAMOUNT
 * (qty < 0), SHMEX_EOVERFLOW, SHMEX_EBOOKFULL.
 */
int eng_core_modify(struct eng_core *b, const struct eng_req *r)
	__attribute__((warn_unused_result));

/*
 * Tells the book the oldest epoch any reader may still be reading
 * (shm_rcu_safe_epoch, or UINT64_MAX without readers): retired levels
 * with retire epoch < safe_epoch return to the free pool now; DONE order
 * records whose retire epoch < safe_epoch become recyclable (lazily, when
 * a new order needs a slot).  Returns the number of levels freed.
 */
uint32_t eng_core_reclaim(struct eng_core *b, uint64_t safe_epoch);

/*
 * Reclamation pacing (docs/concurrency.md, "Reclamation pacing").  Every
 * advance of the reader epoch writes a line each reader reads on entry,
 * and every poll of the reader table reads lines the readers write, so a
 * writer that did both after every few requests paid a cross-core
 * transfer or two each time a reader was active.  A writer asks this
 * instead, after a round of requests, and advances + polls +
 * eng_core_reclaim only when it says yes: after ENG_RECLAIM_EVERY
 * requests or ENG_RECLAIM_NS of its clock (now_ns, any monotonic clock:
 * the first call after a reclaim starts the interval), when a request was rejected for lack of records since the
 * last reclaim, or when the level or order pool is low (fewer than
 * min(capacity / 4, 2 x ENG_RECLAIM_EVERY) records obtainable without a
 * newer safe epoch), so a small or busy book reclaims as often as before.
 * A retired record is reused about two polls after the last reader that
 * could see it left (a poll publishes the epoch the next one waits for).
 */
#define ENG_RECLAIM_EVERY 256u
#define ENG_RECLAIM_NS 1000000u
bool eng_core_reclaim_due(struct eng_core *b, uint64_t now_ns);

/*
 * Quotes (shm_book.h, BK13-BK16): each symbol's published copy of its best
 * levels and totals, which readers of top of book and shallow depth read
 * instead of the live book.  By default the core publishes a changed
 * symbol's quote at the end of each request.  A writer that applies
 * requests in rounds calls eng_core_set_batched(b, true) and then
 * eng_core_publish(b) after each round, before any reply of the round
 * leaves: each quote is then written once per round however many
 * requests changed it.  Turning batching off publishes what is pending.
 */
void eng_core_set_batched(struct eng_core *b, bool on);
void eng_core_publish(struct eng_core *b);

/* Writer-side inspection (tests, replay; not for other processes). */
struct eng_core_level_info {
	int64_t price;
	int64_t qty;
	uint32_t count;
};
/* Up to max levels of one side, best first; returns how many. */
size_t eng_core_depth(const struct eng_core *b, uint32_t sym, unsigned side,
		      struct eng_core_level_info *out, size_t max);
/* The order record of id, or NULL when the id is not (or no longer) in
 * the book. */
const struct shm_book_order_sh *eng_core_order(const struct eng_core *b, uint64_t id);

struct eng_core_stats {
	uint32_t levels_live, levels_retired, levels_free;
	uint32_t orders_live, orders_done, orders_free, orders_unused;
	uint32_t fills_used, fills_free;
	uint64_t orders_recycled; /* finished records given to new orders */
	uint64_t events;
};
void eng_core_stats(const struct eng_core *b, struct eng_core_stats *st);

/* Finished order records recycled so far (every path: a new order's slot,
 * making room for fills). */
uint64_t eng_core_recycled(const struct eng_core *b);

/*
 * Replay of a rejected request's side effect: recycles the n oldest
 * finished order records into the free list, exactly as a request that
 * made room for fills and was then rejected did (the journal's RECYCLE
 * record).  Returns how many could be recycled (n on a faithful replay).
 */
uint32_t eng_core_recycle(struct eng_core *b, uint64_t n);

/*
 * Keeps at most `keep` finished order records queryable: recycles the
 * oldest DONE records beyond that (those whose grace period has passed,
 * see eng_core_reclaim) onto the free stack, where the next new orders
 * take them youngest first.  So the records in use cycle over the live
 * orders and the last `keep` finished ones (cache-resident when that is
 * small) instead of the whole pool.  Returns how many were recycled;
 * that is exactly what eng_core_recycle(n) repeats (the matcher journals
 * it as a RECYCLE record).  Not called: every record stays until a new
 * order needs it (oldest first).
 */
uint32_t eng_core_trim(struct eng_core *b, uint32_t keep);

/* The core's event count (the number of the last event emitted). */
uint64_t eng_core_events(const struct eng_core *b);

/*
 * Snapshots.  The book body is shared memory and the caller saves it as
 * such; eng_core_save writes the rest, the core's private state (counters,
 * free lists, retirement FIFOs, each symbol's sorted price arrays, the
 * first fill indexes of every order record), through `put` (0 or an
 * error, which it returns).  eng_core_load reads that back into a core
 * freshly made by eng_core_init whose body the caller has since
 * overwritten with the saved body: it first checks every count and index
 * against the capacities and the body (SHMEX_EJCORRUPT, nothing changed),
 * then loads, then checks the loaded book with eng_core_check (a snapshot
 * whose checksums are right may still not be one a core wrote: a fill
 * with two owners would be freed twice, a cyclic queue would never end).
 * That check failing returns SHMEX_EJCORRUPT with what failed in why[]
 * (may be NULL), and the core is then unusable: destroy it and lay the
 * book out again with eng_core_init.  Retirement epochs are not saved: a
 * loaded book has never been seen by a reader, so every retired record
 * may be reused at once.
 */
typedef int (*eng_core_put_fn)(void *ctx, const void *p, size_t n);
int eng_core_save(const struct eng_core *b, eng_core_put_fn put, void *ctx)
	__attribute__((warn_unused_result));
int eng_core_load(struct eng_core *b, const void *data, size_t len, char *why,
		  size_t why_len) __attribute__((warn_unused_result));

/*
 * Checks every invariant of the book (list order, aggregates, counts,
 * open + executed + cancelled == amount, pool accounting, the price hash,
 * the published quotes, and that every level, order and fill record has
 * exactly one owner).  Returns 0, SHMEX_EINTERNAL with what failed in
 * why[], or -ENOMEM.  Walks every record: for tests and for loading.
 */
int eng_core_check(const struct eng_core *b, char *why, size_t len)
	__attribute__((warn_unused_result));

#endif

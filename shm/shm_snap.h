/*
 * shm_snap: the read-side API over a shard's book, for processes other than
 * the matcher (gateways, shmex-query, stress checkers).
 *
 * A handle maps the shard's book region read-only (the kernel then
 * guarantees the reader cannot corrupt it), attaches the shard's reader
 * table and registers one reader slot (shm_rcu.h).  A read that follows
 * links into pools whose nodes are reused (depth deeper than the quote,
 * an order's fills, the full book) runs inside one read-side section, so
 * no node it reaches is reused under it (RCU, [RD1]-[RD7], or
 * [RD13]/[RD14] on the asymmetric path); a read of records that are never
 * freed (top of book and depth up to the quote's levels from the symbol's
 * quote [BK15]/[BK16], an order without fills from its record [BK19]/
 * [BK20]) takes no section and holds no grace period.  Every read is a
 * seqcount snapshot, so what it returns is one state of the book: a depth
 * snapshot never mixes two states of a level, an order's open + executed
 * + cancelled equals its amount.  A snapshot that keeps changing is
 * retried a bounded number of times, then SHMEX_EBUSY.
 *
 * Everything read from the region is checked before use: every index
 * against its pool's capacity, every walk against the pool's size, every
 * enum against its range, and the invariants of a stable snapshot (sorted
 * levels, positive aggregates, quantities that add up).  A corrupted region
 * gives SHMEX_EBADINDEX, never a crash or an endless loop.
 *
 * Concurrency: a handle belongs to one thread (it holds one reader slot);
 * open one handle per thread and per shard.  Any number of handles in any
 * number of processes read while the matcher writes; none of them ever
 * blocks the matcher.
 */
#ifndef SHMEX_SHM_SNAP_H
#define SHMEX_SHM_SNAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shm/shm_book.h"
#include "shm/shm_rcu.h"
#include "shm/shm_region.h"

/* Snapshot attempts per read before SHMEX_EBUSY (a writer preempted inside
 * its window keeps the seqcount odd; the reader yields between tries). */
#define SHM_SNAP_RETRIES_DEFAULT 256u

struct shm_snap {
	struct shm_region book;       /* book.<shard>, PROT_READ */
	struct shm_book_view view;    /* validated geometry */
	struct shm_rcu table;         /* readers.<shard>, reader role */
	struct shm_rcu_reader reader; /* our slot */
	bool registered;
	unsigned shard;
	unsigned max_retries; /* settable; >= 1 */
	/* hdr.nsymbols as this handle last loaded it [BK8] (clamped): the
	 * symbols below it need no new load of the header. */
	uint32_t nsym_seen;
	/* Counters of this handle. */
	uint64_t reads;         /* reads attempted */
	uint64_t retries;       /* snapshots that changed and were redone */
	uint64_t busy;          /* reads answered SHMEX_EBUSY */
	uint64_t lost;          /* reader slots lost and re-registered */
	struct shmex_error err; /* after a failed open: what and why */
};

/* Best level of each side and the symbol's trade statistics. */
struct shm_snap_top {
	bool has_bid, has_ask;
	int64_t bid_price, bid_qty; /* best bid level: price, open qty */
	uint32_t bid_orders;        /* orders in it */
	int64_t ask_price, ask_qty;
	uint32_t ask_orders;
	uint32_t nlevels[2];          /* live levels per side (shm_side) */
	uint32_t norders[2];          /* resting orders per side */
	int64_t open_qty[2];          /* resting quantity per side */
	int64_t last_price, last_qty; /* last trade, 0 before the first */
	uint64_t last_time_ns;
	uint64_t trades;
	int64_t volume;
	uint64_t seq; /* the symbol's seqcount the quote was taken at */
};

struct shm_snap_level {
	int64_t price;
	int64_t qty;    /* open quantity at this price */
	uint32_t count; /* orders at this price */
};

/* Depth of both sides of one symbol, best first, from one snapshot. */
struct shm_snap_depth {
	struct shm_snap_level *bids; /* caller's arrays of max entries each */
	struct shm_snap_level *asks;
	size_t max;
	size_t nbids, nasks;       /* out: levels returned */
	bool more_bids, more_asks; /* out: the book has more levels */
	uint64_t seq;              /* out */
};

struct shm_snap_order {
	uint64_t id;
	uint64_t account;
	uint32_t sym;        /* symbol index */
	uint8_t side;        /* enum shm_side */
	uint8_t tif;         /* enum shm_tif */
	uint8_t state;       /* SHM_BOOK_ORDER_LIVE or _DONE */
	uint8_t done_reason; /* enum shm_book_done_reason */
	int64_t price;       /* limit */
	int64_t amount;      /* open + executed + cancelled */
	int64_t open;
	int64_t executed; /* sum of all fills' qty */
	int64_t cancelled;
	uint64_t time_ns;        /* acceptance (or last modify) */
	uint64_t cancel_time_ns; /* 0 when not cancelled */
	uint32_t nfills;         /* fills the order has (may exceed max) */
	uint64_t mod_event;      /* last event that changed it (BK9/BK10) */
};

struct shm_snap_fill {
	int64_t qty;
	int64_t price; /* execution price */
	uint64_t time_ns;
	uint64_t counterparty; /* the other order's id */
	uint64_t event;        /* shard event sequence of the trade */
	bool maker;            /* this order was the resting one */
};

struct shm_snap_shard_stats {
	uint32_t shard, nshards;
	uint32_t cap_symbols, cap_levels, cap_orders, cap_fills;
	uint32_t nsymbols;
	uint32_t levels_live, orders_live, orders_used, fills_used;
	uint64_t events, last_seq, last_time_ns;
	uint64_t orders_created, rejects_full;
	uint64_t rejects_by[SHM_BOOK_REJECT_CAUSES]; /* shm_book_reject_cause */
	uint64_t book_safe_epoch; /* last safe epoch the matcher used */
	struct shm_rcu_stats readers;
};

/* Opens shard `shard` of an exchange instance: maps book.<shard>
 * read-only, validates its geometry, attaches readers.<shard> and
 * registers a reader slot.  Region errors, SHMEX_EBADLAYOUT /
 * SHMEX_ETOOSHORT (bad book header), SHMEX_ENOREADERSLOT; rd->err says
 * which object failed. */
int shm_snap_open(struct shm_snap *rd, const char *instance, unsigned shard)
	__attribute__((warn_unused_result));

/* Unregisters and unmaps.  Safe on a zeroed or failed handle. */
void shm_snap_close(struct shm_snap *rd);

/* Symbol index of name[0..len) (SHMEX_EBADSYMBOL for an invalid name,
 * SHMEX_ENOSYMBOL when the book does not have it). */
int shm_snap_symbol_find(struct shm_snap *rd, const char *name, size_t len, uint32_t *sym)
	__attribute__((warn_unused_result));

/* Name of symbol `sym` into out (NUL-terminated, >= 16 bytes).
 * SHMEX_ENOSYMBOL past the published symbols. */
int shm_snap_symbol_name(struct shm_snap *rd, uint32_t sym, char out[16])
	__attribute__((warn_unused_result));

/* Number of published symbols (clamped to the capacity). */
uint32_t shm_snap_nsymbols(const struct shm_snap *rd);

/* Top of book of one symbol, from its quote (shm_book.h): the book as
 * the matcher last published it, at the end of its last round of
 * requests (before any reply of the round left).  0, SHMEX_ENOSYMBOL,
 * SHMEX_EBUSY, SHMEX_EBADINDEX. */
int shm_snap_top(struct shm_snap *rd, uint32_t sym, struct shm_snap_top *out)
	__attribute__((warn_unused_result));

/* Up to d->max levels per side of one symbol: from its quote when d->max
 * <= SHM_BOOK_QUOTE_LEVELS (as shm_snap_top), else from the live book
 * under the symbol's seqcount (as of the last request applied; under a
 * busy matcher such a walk may be retried and cost it more).  Errors as
 * shm_snap_top. */
int shm_snap_depth(struct shm_snap *rd, uint32_t sym, struct shm_snap_depth *d)
	__attribute__((warn_unused_result));

/* Status of order `id` and up to max_fills of its fills (oldest first;
 * fills may be NULL when max_fills is 0; *nfills gets how many were
 * copied, o->nfills how many there are).  0, SHMEX_ENOORDER (never issued
 * by this shard, or its record was recycled), SHMEX_EWRONGSHARD (the id
 * belongs to another shard), SHMEX_EBUSY, SHMEX_EBADINDEX. */
/* Every event up to this number is durable (the book header's
 * durable_event, acquire [BK10]): a reader that tells a client about an
 * order shows it only when its mod_event is at or below. */
static inline uint64_t shm_snap_durable_event(const struct shm_snap *rd)
{
	return load_acquire(&rd->view.hdr->durable_event);
}

int shm_snap_order(struct shm_snap *rd, uint64_t id, struct shm_snap_order *o,
		   struct shm_snap_fill *fills, size_t max_fills, size_t *nfills)
	__attribute__((warn_unused_result));

/* Whether order `id` (which shm_snap_order did not find) was issued by
 * this shard and its record recycled since: its slot has moved on to a
 * later generation, or holds the same generation freed after use.  An
 * order for which this is true is in the shard's history
 * (shm_history.h), or about to be. */
bool shm_snap_order_issued(const struct shm_snap *rd, uint64_t id);

/*
 * Runs fn inside one read-side section with the same bounded seqcount
 * retries as the functions above, for readers that take snapshots of
 * their own (shm_snap_book_read).  fn returns SHM_SNAP_RETRY when the
 * seqcount moved (it is called again), or its result.  Returns fn's
 * result, SHMEX_EBUSY after the retries, or SHMEX_ENOREADERSLOT when the
 * reader table is full (so can every read that takes a section).
 * A slot lost during the section makes the whole read run again on a new
 * slot.
 */
#define SHM_SNAP_RETRY 1
typedef int (*shm_snap_snap_fn)(struct shm_snap *rd, void *arg);
int shm_snap_section(struct shm_snap *rd, shm_snap_snap_fn fn, void *arg)
	__attribute__((warn_unused_result));

/* Shard statistics (relaxed counters; informative, never indexes). */
void shm_snap_stats(struct shm_snap *rd, struct shm_snap_shard_stats *st);

/* --- full-book snapshot ------------------------------------------------ */

struct shm_snap_book_order {
	uint64_t id;
	uint64_t account;
	int64_t price;
	int64_t amount, open, executed, cancelled;
	uint64_t time_ns;
	uint32_t index; /* order record index */
	uint32_t level; /* the record's level field */
	uint32_t sym;
	uint8_t side, tif, state, pad;
};

struct shm_snap_book_level {
	int64_t price;
	int64_t qty;
	uint32_t count;
	uint32_t index; /* level record index */
	uint32_t sym;
	uint8_t side, state, pad[2];
	uint32_t first; /* its orders: orders[first .. first + n) */
	uint32_t n;     /* orders walked (only when orders are walked) */
};

/* One state of one symbol's book.  Arrays are owned by the struct and
 * reused across calls; zero-initialise it before the first call. */
struct shm_snap_book {
	uint32_t sym;
	uint32_t shard;
	char name[16];
	uint64_t seq; /* the symbol's seqcount */
	bool orders;  /* orders were walked */
	/* The symbol's own counters. */
	uint32_t nlevels[2], norders[2];
	int64_t open_qty[2];
	int64_t last_price, last_qty;
	uint64_t last_time_ns, trades;
	int64_t volume;
	/* levels[side_first[s] .. + side_n[s]) best first, per side. */
	struct shm_snap_book_level *levels;
	size_t nlev, cap_lev;
	size_t side_first[2], side_n[2];
	bool more[2]; /* the side has more than max_levels */
	struct shm_snap_book_order *ords;
	size_t nord, cap_ord;
	/* Statistics of the last call. */
	uint32_t retries;
};

/*
 * Reads up to max_levels levels per side (0: all) of symbol `sym` and,
 * when `orders`, every order of those levels, in one snapshot.  Returns 0
 * for a stable snapshot whose indexes were all in bounds (its contents are
 * then for shm_snap_book_check to judge); SHMEX_ENOSYMBOL, SHMEX_EBUSY
 * (changing for rd->max_retries tries), SHMEX_EBADINDEX (a stable
 * snapshot with an index out of bounds or a list longer than its pool),
 * -ENOMEM.
 */
int shm_snap_book_read(struct shm_snap *rd, uint32_t sym, size_t max_levels, bool orders,
		       struct shm_snap_book *s) __attribute__((warn_unused_result));
void shm_snap_book_free(struct shm_snap_book *s);

/*
 * The invariants of a book state: levels live, of this symbol and side,
 * strictly ordered (bids descending, asks ascending), the book not
 * crossed, every level non-empty; with orders walked and all levels read:
 * each level's qty = sum of its orders' open quantity and count = number
 * of its orders, each order live, resting in that level at its price,
 * open > 0 and open + executed + cancelled == amount, its id naming its
 * record; the symbol's counters equal the sums.  Returns 0, or
 * SHMEX_EINTERNAL with the first violation in why[].
 */
int shm_snap_book_check(const struct shm_snap_book *s, const struct shm_book_view *v,
			char *why, size_t len) __attribute__((warn_unused_result));

#endif

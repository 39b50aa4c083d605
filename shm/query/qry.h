/*
 * qry: read-only inspection of a running exchange, the library behind
 * `shmex-query` (shm/query/main_query.c).  It depends on shm/ only.
 *
 * A handle attaches the instance's control region as an observer (mapped
 * PROT_READ) and opens, on first use, one read handle per shard
 * (shm_snap.h: book.<k> mapped PROT_READ, one slot in readers.<k>, the only
 * region a query maps writable).  Accounts and positions are mapped
 * PROT_READ.  Every command prints to a caller's FILE, as text or as one
 * line of JSON, so the formatting is testable without a process.
 *
 * The full-book snapshot (qry_snapshot) is also the invariant checker
 * of the reader tests: it walks every level of one symbol and, optionally,
 * every order of every level, inside one read-side section and one
 * seqcount snapshot of the symbol ([QY1]/[QY2], pairs with the matcher's
 * [BK4]/[BK3]), so what it returns is one state of the book.
 * qry_snap_check then verifies the book's invariants on it.
 *
 * Concurrency: a handle belongs to one thread.  Any number of query
 * processes run while the matchers write; none of them blocks a matcher
 * (reads retry a bounded number of times, then SHMEX_EBUSY).
 */
#ifndef SHMEX_SHM_QUERY_QRY_H
#define SHMEX_SHM_QUERY_QRY_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "shm/shm_instance.h"
#include "shm/shm_snap.h"

#define QRY_DEPTH_DEFAULT 10u
#define QRY_WATCH_INTERVAL_MS 200u

/* Output flags of the commands. */
enum {
	QRY_JSON = 1u << 0,        /* one line of JSON instead of text */
	QRY_ORDERS = 1u << 1,      /* book: every order of every level */
	QRY_CLEAR_STALE = 1u << 2, /* readers: free dead owners' slots */
	QRY_ANSI = 1u << 3,        /* watch: clear the screen per frame */
};

/* Per-process handle of one instance. */
struct qry {
	char instance[SHM_INSTANCE_MAX + 1];
	struct shm_instance inst;  /* SHM_ROLE_OBSERVER: read-only mapping */
	uint32_t nshards, ngateways;
	struct shm_snap *rd;       /* [nshards], opened on first use */
	bool *rd_open;
	struct shmex_error err;    /* after a failed call: one line, what and why */
};

/* Attaches the instance read-only.  On failure q->err says e.g.
 * "instance 'x' is not running: shm_open /shmex.x.control: No such file
 * or directory". */
int qry_open(struct qry *q, const char *instance)
	__attribute__((warn_unused_result));
/* Closes every shard handle (freeing their reader slots) and detaches.
 * Safe on a zeroed or failed handle. */
void qry_close(struct qry *q);
/* The read handle of shard k, opened on first use. */
int qry_shard(struct qry *q, uint32_t k, struct shm_snap **rd)
	__attribute__((warn_unused_result));

/* --- full-book snapshot ------------------------------------------------ */

struct qry_order {
	uint64_t id;
	uint64_t account;
	int64_t price;
	int64_t amount, open, executed, cancelled;
	uint64_t time_ns;
	uint32_t index;   /* order record index */
	uint32_t level;   /* the record's level field */
	uint32_t sym;
	uint8_t side, tif, state, pad;
};

struct qry_level {
	int64_t price;
	int64_t qty;
	uint32_t count;
	uint32_t index;   /* level record index */
	uint32_t sym;
	uint8_t side, state, pad[2];
	uint32_t first;   /* its orders: orders[first .. first + n) */
	uint32_t n;       /* orders walked (only with QRY_ORDERS) */
};

/* One state of one symbol's book.  Arrays are owned by the struct and
 * reused across calls; zero-initialise it before the first call. */
struct qry_snap {
	uint32_t sym;
	uint32_t shard;
	char name[16];
	uint64_t seq;                  /* the symbol's seqcount */
	bool orders;                   /* orders were walked */
	/* The symbol's own counters. */
	uint32_t nlevels[2], norders[2];
	int64_t open_qty[2];
	int64_t last_price, last_qty;
	uint64_t last_time_ns, trades;
	int64_t volume;
	/* levels[side_first[s] .. + side_n[s]) best first, per side. */
	struct qry_level *levels;
	size_t nlev, cap_lev;
	size_t side_first[2], side_n[2];
	bool more[2];                  /* the side has more than max_levels */
	struct qry_order *ords;
	size_t nord, cap_ord;
	/* Statistics of the last call. */
	uint32_t retries;
};

/*
 * Reads up to max_levels levels per side (0: all) of symbol `sym` and,
 * when `orders`, every order of those levels, in one snapshot.  Returns 0
 * for a stable snapshot whose indexes were all in bounds (its contents are
 * then for qry_snap_check to judge); SHMEX_ENOSYMBOL, SHMEX_EBUSY
 * (changing for rd->max_retries tries), SHMEX_EBADINDEX (a stable
 * snapshot with an index out of bounds or a list longer than its pool),
 * -ENOMEM.
 */
int qry_snapshot(struct shm_snap *rd, uint32_t sym, size_t max_levels,
		       bool orders, struct qry_snap *s)
	__attribute__((warn_unused_result));
void qry_snap_free(struct qry_snap *s);

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
int qry_snap_check(const struct qry_snap *s,
			 const struct shm_book_view *v, char *why, size_t len)
	__attribute__((warn_unused_result));

/* --- commands ------------------------------------------------------------ */

/* book SYMBOL: depth levels per side (0: all). */
int qry_book(struct qry *q, FILE *out, unsigned flags,
		   const char *symbol, size_t depth)
	__attribute__((warn_unused_result));
/* order ID: status and fills. */
int qry_order(struct qry *q, FILE *out, unsigned flags, uint64_t id)
	__attribute__((warn_unused_result));
/* account ID: cash and the positions in every shard. */
int qry_account(struct qry *q, FILE *out, unsigned flags,
		      uint64_t id) __attribute__((warn_unused_result));
/* readers: every claimed slot of every shard (QRY_CLEAR_STALE
 * first frees dead owners' slots). */
int qry_readers(struct qry *q, FILE *out, unsigned flags)
	__attribute__((warn_unused_result));
/* stats: per shard pools, counters, reader lag, ring depths. */
int qry_stats(struct qry *q, FILE *out, unsigned flags)
	__attribute__((warn_unused_result));
/* check [SYMBOL]: full-book invariants of one symbol or of every symbol
 * of every shard; SHMEX_EINTERNAL when a violation was found. */
int qry_check(struct qry *q, FILE *out, unsigned flags,
		    const char *symbol) __attribute__((warn_unused_result));
/* watch SYMBOL: a frame every interval_ms until *stop becomes non-zero or
 * `count` frames were drawn (0: no limit). */
int qry_watch(struct qry *q, FILE *out, unsigned flags,
		    const char *symbol, size_t depth, unsigned long count,
		    unsigned interval_ms, const volatile sig_atomic_t *stop)
	__attribute__((warn_unused_result));

#endif

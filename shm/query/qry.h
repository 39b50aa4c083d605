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
	QRY_STATE_HASH = 1u << 4,  /* stats: add the state hash */
};

/* Per-process handle of one instance. */
struct qry {
	char instance[SHM_INSTANCE_MAX + 1];
	struct shm_instance inst; /* SHM_ROLE_OBSERVER: read-only mapping */
	uint32_t nshards, ngateways;
	struct shm_snap *rd; /* [nshards], opened on first use */
	bool *rd_open;
	struct shmex_error err; /* after a failed call: one line, what and why */
};

/* Attaches the instance read-only.  On failure q->err says e.g.
 * "instance 'x' is not running: shm_open /shmex.x.control: No such file
 * or directory". */
int qry_open(struct qry *q, const char *instance) __attribute__((warn_unused_result));
/* Closes every shard handle (freeing their reader slots) and detaches.
 * Safe on a zeroed or failed handle. */
void qry_close(struct qry *q);
/* The read handle of shard k, opened on first use. */
int qry_shard(struct qry *q, uint32_t k, struct shm_snap **rd)
	__attribute__((warn_unused_result));

/* --- commands ------------------------------------------------------------ */

/* book SYMBOL: depth levels per side (0: all). */
int qry_book(struct qry *q, FILE *out, unsigned flags, const char *symbol, size_t depth)
	__attribute__((warn_unused_result));
/* order ID: status and fills. */
int qry_order(struct qry *q, FILE *out, unsigned flags, uint64_t id)
	__attribute__((warn_unused_result));
/* account ID: cash and the positions in every shard. */
int qry_account(struct qry *q, FILE *out, unsigned flags, uint64_t id)
	__attribute__((warn_unused_result));
/* readers: every claimed slot of every shard (QRY_CLEAR_STALE
 * first frees dead owners' slots). */
int qry_readers(struct qry *q, FILE *out, unsigned flags)
	__attribute__((warn_unused_result));
/* stats: per shard pools, counters, reader lag, ring depths. */
int qry_stats(struct qry *q, FILE *out, unsigned flags)
	__attribute__((warn_unused_result));

/*
 * The state hash: FNV-1a (64 bits) over everything a client can learn of
 * the exchange, in a canonical order: per shard, each symbol's counters
 * and its book (levels best first, orders in time priority), each order
 * record's status with all its fills, the shard's order and event counts;
 * the positions sorted by (account, symbol) and the accounts sorted by
 * id.  Equal states give equal hashes whatever the physical placement of
 * accounts and positions in their tables.  Exact only while the exchange
 * is quiescent (no request in flight).
 */
int qry_state_hash(struct qry *q, uint64_t *hash) __attribute__((warn_unused_result));
/* check [SYMBOL]: full-book invariants of one symbol or of every symbol
 * of every shard; SHMEX_EINTERNAL when a violation was found. */
int qry_check(struct qry *q, FILE *out, unsigned flags, const char *symbol)
	__attribute__((warn_unused_result));
/* metrics: the stats in the Prometheus text exposition format (version
 * 0.0.4): one gauge or counter per line, labelled instance and shard. */
int qry_metrics(struct qry *q, FILE *out, unsigned flags)
	__attribute__((warn_unused_result));
/* instances: every instance with a control region in /dev/shm, whether
 * its supervisor is alive, and its shape (no --instance needed). */
int qry_instances(FILE *out, unsigned flags) __attribute__((warn_unused_result));
/* watch SYMBOL: a frame every interval_ms until *stop becomes non-zero or
 * `count` frames were drawn (0: no limit). */
int qry_watch(struct qry *q, FILE *out, unsigned flags, const char *symbol, size_t depth,
	      unsigned long count, unsigned interval_ms,
	      const volatile sig_atomic_t *stop) __attribute__((warn_unused_result));

#endif

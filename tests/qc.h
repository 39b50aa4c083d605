/*
 * qc: the QuantCup 2011 engine API (tests/bench/third_party/quantcup-2011/
 * engine.h: limit, cancel, an execution callback) over shmex's matching
 * core, for the anchors benchmark (tests/bench/bench_anchors.c) and for the
 * contest's own autotester (test.c, built as $(BUILD)/tests/qc-autotester
 * over tests/qc_engine_api.h).
 *
 * Mapping:
 *  - one shmex account per trader name (the first trader seen is account
 *    1, and so on), one shmex symbol per symbol name;
 *  - QuantCup ids are 1, 2, 3, ... in the order limit() is called, mapped
 *    to the id the core gave (an array indexed by the QuantCup id);
 *    cancel() of an id that is unknown, filled or already cancelled is
 *    ignored, as the API says;
 *  - side 0 is a bid (SHM_SIDE_BUY), 1 an ask; every order is GTC;
 *  - each trade is reported as two executions, the buyer's then the
 *    seller's, both at the trade's price: the resting order's limit in
 *    shmex (QuantCup's engines report the incoming order's limit; parties
 *    and sizes are the same).
 *
 * Time and the request sequence number are the message count; the epoch
 * is 0 and the safe epoch UINT64_MAX (no readers), so everything retired
 * is reusable at once, as in shmex-replay.  Not thread-safe; one writer.
 */
#ifndef SHMEX_TESTS_QC_H
#define SHMEX_TESTS_QC_H

#include <stddef.h>
#include <stdint.h>

#include "shm/shm_book.h"

/* The contest's types.h defines is_ask as an external function in the
 * header; keep a private copy per translation unit instead. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wold-style-declaration"
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include "tests/bench/third_party/quantcup-2011/limits.h"
#define is_ask static inline __attribute__((unused)) qc_is_ask
#include "tests/bench/third_party/quantcup-2011/types.h"
#undef is_ask
#pragma GCC diagnostic pop

struct qc;

/* Called for every execution report, in order. */
typedef void (*qc_exec_fn)(void *ctx, const t_execution *x);

struct qc_cfg {
	struct shm_book_caps caps; /* the core's pools */
	uint32_t max_ids;          /* QuantCup ids per session (see qc_session) */
	/* Finished orders kept queryable (eng_core_trim every QC_ROUND
	 * messages, as a matcher does once per round); 0: no trimming,
	 * records are reused oldest first when the pool is exhausted. */
	uint32_t window;
};

/* Messages per trimming round: the matcher's default batch. */
#define QC_ROUND 64

/* A core with the given pools; 0, -EINVAL or -ENOMEM. */
int qc_open(struct qc **out, const struct qc_cfg *cfg, qc_exec_fn fn, void *ctx)
	__attribute__((warn_unused_result));
void qc_close(struct qc *q);
/* An empty book again (a new core over the same memory, names and ids
 * forgotten); 0 or the error of eng_core_init, after which q may only be
 * closed. */
int qc_reset(struct qc *q) __attribute__((warn_unused_result));

/* engine.h's limit(): the QuantCup id (from 1), 0 when the core refused
 * the order (pools full, or more than max_ids orders this session). */
t_orderid qc_limit(struct qc *q, const t_order *o);
/* engine.h's cancel(). */
void qc_cancel(struct qc *q, t_orderid id);

/*
 * A new session on the same book: QuantCup ids start again at 1 (the
 * feed's cancels name ids of its own replay).  With cancel_open, every
 * order of the ending session that is still open is cancelled first (so
 * a book kept across many replays of the feed does not grow).
 */
void qc_session(struct qc *q, int cancel_open);

/* The core (statistics: eng_core_stats, eng_core_recycled). */
struct eng_core *qc_core(struct qc *q);

#endif

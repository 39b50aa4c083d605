/*
 * rpl: drives recorded order flow through the real matching core
 * (eng_core) and renders the canonical report lines of the external
 * conformance batteries (conformance/README.md):
 *
 *   0,seq,side,order_id,price,qty          order accepted
 *   1,seq,price,qty,maker_id,taker_id      trade (maker's price)
 *   2,seq,side,order_id,price              cancel / IOC-FOK remainder
 *   3,seq,side,order_id,new_price,new_qty  modify done
 *   4,seq,order_id                         cancel rejected
 *   5,seq,order_id                         modify rejected
 *
 * one per event, stable-sorted by (seq, type).  The adapter is where the
 * batteries' contract meets shmex's: client order ids (reusable once the
 * order is dead) are translated to shmex ids and back, all orders belong
 * to one account on one symbol, the message's seq is the request's seq
 * and time, and the core's events (modify before its own trades) are
 * re-ordered by type per message.  See docs/matching.md.
 *
 * Inputs: JSON batteries (jansson) and MEBW_001 workload files, plain or
 * .xz (liblzma, streamed: never decompressed to disk).
 *
 * Single-threaded; nothing here is shared between processes.
 */
#ifndef SHMEX_ENGINE_REPLAY_RPL_H
#define SHMEX_ENGINE_REPLAY_RPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/eng_core.h"
#include "engine/replay/rpl_report.h"

enum rpl_type {
	RPL_NEW = 0,
	RPL_CANCEL = 1,
	RPL_MODIFY = 2,
};

/* One message of the batteries' flow. */
struct rpl_msg {
	uint64_t seq;
	uint64_t order_id; /* the client's id */
	int64_t price;     /* ticks */
	int64_t qty;       /* NEW: amount; MODIFY: new open quantity */
	uint8_t type;      /* enum rpl_type */
	uint8_t side;      /* 0 buy, 1 sell */
	uint8_t tif;       /* enum shm_tif */
	uint8_t pad[5];
};

struct rpl_cfg {
	struct shm_book_caps caps;
	uint32_t stp_mode;
	bool format;      /* render lines (else only count them) */
	bool sha256;      /* hash the lines joined by '\n' */
	rpl_line_fn line; /* may be NULL */
	void *ctx;
};

/* Defaults: caps sized for the 1M-order workload (small = false) or for
 * the short JSON cases (small = true); format and sha256 on. */
void rpl_cfg_default(struct rpl_cfg *cfg, bool small);

struct rpl;

int rpl_open(struct rpl **out, const struct rpl_cfg *cfg)
	__attribute__((warn_unused_result));
void rpl_close(struct rpl *r);

/* Applies one message and emits its report lines.  Returns 0; -ENOMEM
 * when the line buffer cannot grow.  A NEW that the core rejects (book
 * full, bad quantity or price) has no line in the batteries' contract: it
 * is counted (rpl_rejected) and otherwise ignored. */
int rpl_apply(struct rpl *r, const struct rpl_msg *m) __attribute__((warn_unused_result));

/* Report lines so far per type 0..5. */
void rpl_counts(const struct rpl *r, uint64_t counts[6]);
/* NEW messages the core rejected. */
uint64_t rpl_rejected(const struct rpl *r);
/* SHA-256 of the lines so far (cfg.sha256); may be called once. */
void rpl_report_hex(struct rpl *r, char out[65]);
struct eng_core *rpl_book(struct rpl *r);

/* ---- JSON batteries ---- */

/* Expected book state after one message (or after the last one). */
struct rpl_state {
	bool has_after_seq; /* else: after the case's last message */
	uint64_t after_seq;
	bool has_best_bid, has_best_ask; /* null -> false */
	int64_t best_bid, best_ask;
	size_t nbids, nasks;
	int64_t (*bids)[2]; /* [price, aggregate qty], best first */
	int64_t (*asks)[2];
	bool has_probe;
	int64_t probe[3]; /* price, side, depth at that price */
};

struct rpl_case {
	char *name;
	size_t nmsgs;
	struct rpl_msg *msgs;
	size_t nreports;
	char **reports;
	char sha256[65]; /* expected, "" when absent */
	size_t nstates;
	struct rpl_state *states;
};

struct rpl_battery {
	char *format;
	size_t ncases;
	struct rpl_case *cases;
};

/* Loads and validates a battery file; err gets the reason on failure. */
int rpl_battery_load(const char *path, struct rpl_battery **out, char *err, size_t errlen)
	__attribute__((warn_unused_result));
void rpl_battery_free(struct rpl_battery *b);

/* A book's levels as the expected states give them: [price, aggregate
 * qty], best first, every level of each side. */
struct rpl_levels {
	size_t nbids, nasks;
	int64_t (*bids)[2];
	int64_t (*asks)[2];
};

/* THE expected-state comparison (best bid/ask, every level, the probe),
 * whoever read the levels: the in-process book (rpl_state_check)
 * or the book region through shm_snap (shmex-replay --through-shm).
 * 0, or -1 with the first difference in why[]. */
int rpl_levels_check(const struct rpl_levels *got, const struct rpl_state *want,
		     char *why, size_t len);

/* Compares the in-process book with an expected state; 0 or -1 with why[]
 * (also "out of memory"). */
int rpl_state_check(struct rpl *r, const struct rpl_state *want, char *why, size_t len);

struct rpl_result {
	bool pass; /* reports, hash and every state match */
	bool reports_ok, sha_ok, states_ok;
	size_t nlines; /* lines produced */
	size_t nstates_checked;
	char sha256[65]; /* of the produced lines */
	char why[512];   /* first difference */
};

/* Runs one case on a fresh book (cfg: caps, stp_mode; its sink is also
 * called when set) and checks it against everything it expects. */
int rpl_case_run(const struct rpl_case *c, const struct rpl_cfg *cfg,
		 struct rpl_result *res) __attribute__((warn_unused_result));

/* Whatever executes a case's messages: the in-process book
 * (rpl_case_run) or a matcher process (shmex-replay --through-shm).
 * rpl_case_drive calls begin once, apply for each message in order,
 * state whenever an expected state is due (at most until one fails), and
 * finish last; a negative return from any of them ends the case with that
 * error.  Each runs on the caller's thread. */
struct rpl_runner {
	void *ctx;
	/* Starts on a fresh empty book; every report line goes to
	 * line(line_ctx), in canonical order. */
	int (*begin)(void *ctx, rpl_line_fn line, void *line_ctx);
	/* Sends one message; its lines may come out later, but before the
	 * next state or finish returns. */
	int (*apply)(void *ctx, const struct rpl_msg *m);
	/* The book exactly after every message applied so far against want
	 * (rpl_levels_check): 0 same, 1 different or unreadable (why[]
	 * says which), or a negative error. */
	int (*state)(void *ctx, const struct rpl_state *want, char *why, size_t len);
	/* Every line out; hex gets the SHA-256 of them joined by '\n'. */
	int (*finish)(void *ctx, char hex[65]);
};

/* Runs case c through run, passing each line on to line(line_ctx) when
 * line is set, and checks it (reports, hash, states) as
 * rpl_case_run does.  0 with *res, or the runner's error. */
int rpl_case_drive(const struct rpl_case *c, const struct rpl_runner *run,
		   rpl_line_fn line, void *line_ctx, struct rpl_result *res)
	__attribute__((warn_unused_result));

/* ---- MEBW_001 workloads ---- */

#define RPL_WL_MAGIC UINT64_C(0x4D4542575F303031)

struct rpl_wl;

/* Opens a workload (.xz decompressed on the fly); checks the header. */
int rpl_wl_open(struct rpl_wl **out, const char *path, char *err, size_t errlen)
	__attribute__((warn_unused_result));
/* Record count announced by the header. */
uint32_t rpl_wl_count(const struct rpl_wl *w);
/* Next message: 1, 0 at the end, or a negative error (truncated file,
 * corrupt stream, bad record: type/side/ioc out of range). */
int rpl_wl_next(struct rpl_wl *w, struct rpl_msg *m) __attribute__((warn_unused_result));
void rpl_wl_close(struct rpl_wl *w);

/* Reads a whole workload into memory (*msgs malloc'd). */
int rpl_wl_load(const char *path, struct rpl_msg **msgs, size_t *n, char *err,
		size_t errlen) __attribute__((warn_unused_result));

#endif

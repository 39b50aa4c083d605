/*
 * rpl_shm: shmex-replay --through-shm, the same flow through a real
 * shmex-matcher process instead of an in-process core.
 *
 * It creates a private instance ("replay-<pid>": control, rings with one
 * gateway and one shard, accounts) whose settings carry the replay's
 * capacities, starts shmex-matcher with only --instance and --shard, waits
 * until it is ready as the supervisor judges it
 * (shm_instance_matcher_ready), creates one account with a huge balance
 * and, for every JSON case (and once for a workload), a fresh symbol
 * "C<n>" with a huge number of shares: a fresh empty book per case, and
 * account checks that never refuse what the core accepts.  Then it plays
 * the gateway: messages are pipelined (up to SR_WINDOW in flight), and
 * the report lines are rebuilt from each reply and from the book region,
 * read like any reader reads it (shm_snap).  docs/matcher.md has the
 * details and the one assumption (no single order's q x limit passes the
 * cash range).
 *
 * Single-threaded; SIGINT/SIGTERM interrupt a run cleanly.
 */
#ifndef SHMEX_ENGINE_REPLAY_RPL_SHM_H
#define SHMEX_ENGINE_REPLAY_RPL_SHM_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/replay/rpl.h"
#include "engine/replay/rpl_report.h"
#include "shm/shm_book.h"

struct rpl_shm;

/* Starts the instance and the matcher (`matcher`: its path, NULL for the
 * shmex-matcher next to this program).  Errors are printed on stderr. */
int rpl_shm_start(struct rpl_shm **out, const struct shm_book_caps *caps,
		  const char *matcher) __attribute__((warn_unused_result));
/* Stops the matcher, removes the instance, frees. */
void rpl_shm_stop(struct rpl_shm *s);

/* A runner for rpl_case_drive: each case on a fresh symbol. */
struct rpl_runner rpl_shm_runner(struct rpl_shm *s);

/* A flow outside the batteries (a workload): begin (fresh symbol, report
 * to line/ctx), submit each message, finish (wait for every reply; the
 * report's hash in hex).  Each returns 0 or an error (printed). */
int rpl_shm_begin(struct rpl_shm *s, rpl_line_fn line, void *ctx)
	__attribute__((warn_unused_result));
int rpl_shm_submit(struct rpl_shm *s, const struct rpl_msg *m)
	__attribute__((warn_unused_result));
int rpl_shm_finish(struct rpl_shm *s, char hex[65]) __attribute__((warn_unused_result));
/* The report of the current flow (counts, rejected). */
const struct rpl_report *rpl_shm_report(const struct rpl_shm *s);

/* True once SIGINT or SIGTERM arrived during a run. */
bool rpl_shm_interrupted(void);

#endif

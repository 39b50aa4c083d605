/*
 * shm_settings: the settings of one exchange, each stated once.
 *
 * Every setting that more than one process must know (the shape of the
 * exchange, the capacities of every region, the matching rules, the
 * gateways' limits) is one row of SHM_SETTINGS: its field, its option
 * name, its range, its default (a SHM_DEFAULT_* constant), its unit and
 * what it means.  From that one table come
 *   - struct shm_settings, the private copy every process works with;
 *   - struct shm_settings_sh, where the creator of an instance stores them
 *     in the control region (shm_instance.h) before publishing it;
 *   - the supervisor's command-line options, their --help lines with range
 *     and default, and their validation (shm_settings_opts, shm_opt.h);
 *   - the layout signature (every row's name and position).
 * Children (matchers, gateways) therefore take only --instance and their
 * index on the command line and read everything else from the control
 * region; nothing is passed twice and no two defaults can disagree.
 *
 * Concurrency: the shared copy is written once by the creator before the
 * control region is published [R0] and never changes; attachers copy it
 * once after A0 (shm_settings_load) and validate the copy, never the
 * shared words again.
 */
#ifndef SHMEX_SHM_SETTINGS_H
#define SHMEX_SHM_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shm/shm_error.h"

/* Ranges that other modules also enforce. */
#define SHM_INSTANCE_SHARDS_MAX 64u
#define SHM_INSTANCE_GATEWAYS_MAX 64u
#define SHM_SETTINGS_CAP_MAX (UINT64_C(1) << 30) /* = SHM_BOOK_CAP_MAX */
#define SHM_SETTINGS_RING_MIN 2u                 /* = SHM_RING_CAPACITY_MIN */
#define SHM_SETTINGS_RING_MAX (1u << 20)         /* = SHM_RING_CAPACITY_MAX */
#define SHM_SETTINGS_READERS_MAX 4096u           /* = SHM_RCU_MAX_SLOTS */
#define SHM_SETTINGS_BATCH_MAX 1024u
#define SHM_SETTINGS_CONNS_MAX 65535u
#define SHM_SETTINGS_REQUEST_MAX (UINT64_C(1) << 30)
#define SHM_SETTINGS_MS_MAX 3600000u

/* Defaults: what `shmex` with no option runs. */
#define SHM_DEFAULT_SHARDS 2u
#define SHM_DEFAULT_GATEWAYS 2u
#define SHM_DEFAULT_RING_CAPACITY 1024u
#define SHM_DEFAULT_ORDERS 262144u
#define SHM_DEFAULT_LEVELS 65536u
#define SHM_DEFAULT_FILLS 524288u
#define SHM_DEFAULT_SYMBOLS 4096u
#define SHM_DEFAULT_ACCOUNTS 262144u
#define SHM_DEFAULT_POSITIONS 524288u
#define SHM_DEFAULT_READERS 64u
#define SHM_DEFAULT_STP 0u /* self-trades allowed */
/* Finished orders kept queryable per shard (docs/matching.md, "Order
 * records"): small enough that the records in use stay in cache. */
#define SHM_DEFAULT_DONE_WINDOW 8192u
#define SHM_DEFAULT_BATCH 64u
#define SHM_DEFAULT_MATCHER_SPIN_US 30u
#define SHM_DEFAULT_IDLE_MS 200u
#define SHM_DEFAULT_MAX_CONNS 1024u
#define SHM_DEFAULT_MAX_REQUEST (UINT64_C(1) << 20)
#define SHM_DEFAULT_MAX_ELEMENTS 10000u
#define SHM_DEFAULT_DEADLINE_MS 10000u
#define SHM_DEFAULT_BUSY_MS 2000u
#define SHM_DEFAULT_DRAIN_MS 5000u
#define SHM_DEFAULT_SPIN_US 50u
#define SHM_DEFAULT_MAX_REPLY (UINT64_C(64) << 20)
#define SHM_DEFAULT_MAX_UNSENT (UINT64_C(64) << 20)
#define SHM_DEFAULT_ANSWER_MS 30000u
#define SHM_DEFAULT_CLIENT_IDLE_MS 60000u
#define SHM_DEFAULT_MAX_CONNS_PER_PEER 512u
#define SHM_DEFAULT_SYNC 0u /* fsync */
#define SHM_DEFAULT_SNAPSHOT_MB 256u
#define SHM_DEFAULT_SEGMENT_MB 64u

/* How a row's value is read and shown. */
enum shm_setting_kind {
	SHM_SET_NUM = 0,  /* decimal in [min, max] */
	SHM_SET_POW2 = 1, /* decimal in [min, max], a power of two */
	SHM_SET_FLAG = 2, /* an option without argument: 0 or 1 */
	SHM_SET_STP = 3,  /* a self-trade prevention mode name */
	SHM_SET_SYNC = 4, /* a journal sync mode name */
};

/*
 * X(field, option, kind, min, max, default, arg, help), in the order the
 * supervisor's --help lists them.  Adding a row changes the layout
 * signature (a new field of the control region).
 */
#define SHM_SETTINGS(X)                                                                  \
	X(shards, "shards", SHM_SET_NUM, 1, SHM_INSTANCE_SHARDS_MAX, SHM_DEFAULT_SHARDS, \
	  "N", "matcher processes, one per symbol shard")                                \
	X(gateways, "gateways", SHM_SET_NUM, 1, SHM_INSTANCE_GATEWAYS_MAX,               \
	  SHM_DEFAULT_GATEWAYS, "N", "gateway processes")                                \
	X(ring_capacity, "ring-capacity", SHM_SET_POW2, SHM_SETTINGS_RING_MIN,           \
	  SHM_SETTINGS_RING_MAX, SHM_DEFAULT_RING_CAPACITY, "N", "messages per ring")    \
	X(orders, "orders", SHM_SET_NUM, 1, SHM_SETTINGS_CAP_MAX, SHM_DEFAULT_ORDERS,    \
	  "N", "order records per shard")                                                \
	X(levels, "levels", SHM_SET_NUM, 1, SHM_SETTINGS_CAP_MAX, SHM_DEFAULT_LEVELS,    \
	  "N", "price levels per shard")                                                 \
	X(fills, "fills", SHM_SET_NUM, 1, SHM_SETTINGS_CAP_MAX, SHM_DEFAULT_FILLS, "N",  \
	  "fill records per shard")                                                      \
	X(symbols, "symbols", SHM_SET_NUM, 1, SHM_SETTINGS_CAP_MAX, SHM_DEFAULT_SYMBOLS, \
	  "N", "symbols per shard")                                                      \
	X(done_window, "done-window", SHM_SET_NUM, 0, SHM_SETTINGS_CAP_MAX,              \
	  SHM_DEFAULT_DONE_WINDOW, "N",                                                  \
	  "finished orders a shard keeps queryable at least, when the order pool "       \
	  "allows (0: as many as it allows; more costs speed)")                          \
	X(accounts, "accounts", SHM_SET_NUM, 1, SHM_SETTINGS_CAP_MAX,                    \
	  SHM_DEFAULT_ACCOUNTS, "N", "accounts of the exchange")                         \
	X(positions, "positions", SHM_SET_NUM, 1, SHM_SETTINGS_CAP_MAX,                  \
	  SHM_DEFAULT_POSITIONS, "N", "account positions per shard")                     \
	X(readers, "readers", SHM_SET_NUM, 1, SHM_SETTINGS_READERS_MAX,                  \
	  SHM_DEFAULT_READERS, "N", "reader slots per shard")                            \
	X(stp, "stp", SHM_SET_STP, 0, 3, SHM_DEFAULT_STP, "MODE",                        \
	  "self-trade prevention for orders meeting their own account's"                 \
	  " resting orders")                                                             \
	X(batch, "batch", SHM_SET_NUM, 1, SHM_SETTINGS_BATCH_MAX, SHM_DEFAULT_BATCH,     \
	  "N", "messages a matcher takes per ring per round")                            \
	X(matcher_spin_us, "matcher-spin-us", SHM_SET_NUM, 0, 1000000,                   \
	  SHM_DEFAULT_MATCHER_SPIN_US, "US",                                             \
	  "matchers poll their rings this long before sleeping (0: never)")              \
	X(idle_ms, "idle-ms", SHM_SET_NUM, 1, 60000, SHM_DEFAULT_IDLE_MS, "MS",          \
	  "matchers' idle tick (reclamation while nothing arrives)")                     \
	X(max_conns, "max-conns", SHM_SET_NUM, 1, SHM_SETTINGS_CONNS_MAX,                \
	  SHM_DEFAULT_MAX_CONNS, "N", "connections per gateway")                         \
	X(max_request, "max-request", SHM_SET_NUM, 1, SHM_SETTINGS_REQUEST_MAX,          \
	  SHM_DEFAULT_MAX_REQUEST, "BYTES", "largest request")                           \
	X(max_elements, "max-elements", SHM_SET_NUM, 2, 100000000,                       \
	  SHM_DEFAULT_MAX_ELEMENTS, "N", "XML elements per request")                     \
	X(deadline_ms, "deadline-ms", SHM_SET_NUM, 1, SHM_SETTINGS_MS_MAX,               \
	  SHM_DEFAULT_DEADLINE_MS, "MS",                                                 \
	  "time for a started request to arrive and for replies to drain")               \
	X(busy_ms, "busy-ms", SHM_SET_NUM, 1, SHM_SETTINGS_MS_MAX, SHM_DEFAULT_BUSY_MS,  \
	  "MS", "full-ring wait before an item is answered \"Exchange busy\"")           \
	X(drain_ms, "drain-ms", SHM_SET_NUM, 1, SHM_SETTINGS_MS_MAX,                     \
	  SHM_DEFAULT_DRAIN_MS, "MS",                                                    \
	  "on stop, time granted to requests being executed")                            \
	X(spin_us, "spin-us", SHM_SET_NUM, 0, 1000000, SHM_DEFAULT_SPIN_US, "US",        \
	  "gateways poll for replies this long before sleeping (0: never)")              \
	X(answer_ms, "answer-ms", SHM_SET_NUM, 1, SHM_SETTINGS_MS_MAX,                   \
	  SHM_DEFAULT_ANSWER_MS, "MS",                                                   \
	  "time a matcher has to answer an item sent to it before the item is "          \
	  "answered \"Outcome unknown\"")                                                \
	X(client_idle_ms, "client-idle-ms", SHM_SET_NUM, 0, SHM_SETTINGS_MS_MAX,         \
	  SHM_DEFAULT_CLIENT_IDLE_MS, "MS",                                              \
	  "a connection idle this long is closed (0: never)")                            \
	X(max_conns_per_peer, "max-conns-per-peer", SHM_SET_NUM, 1,                      \
	  SHM_SETTINGS_CONNS_MAX, SHM_DEFAULT_MAX_CONNS_PER_PEER, "N",                   \
	  "connections per gateway from one client address")                             \
	X(max_reply, "max-reply", SHM_SET_NUM, 4096, SHM_SETTINGS_REQUEST_MAX,           \
	  SHM_DEFAULT_MAX_REPLY, "BYTES",                                                \
	  "largest reply buffer one order's fill listing may need")                      \
	X(max_unsent, "max-unsent", SHM_SET_NUM, 65536, UINT64_C(1) << 40,               \
	  SHM_DEFAULT_MAX_UNSENT, "BYTES",                                               \
	  "unsent reply bytes a gateway holds for all its clients before it "            \
	  "stops reading")                                                               \
	X(frame_replies, "frame-replies", SHM_SET_FLAG, 0, 1, 0, NULL,                   \
	  "put a length line in front of every reply")                                   \
	X(no_journal, "no-journal", SHM_SET_FLAG, 0, 1, 0, NULL,                         \
	  "run without a journal: a crash or a stop loses every account, "               \
	  "order and fill")                                                              \
	X(sync, "sync", SHM_SET_SYNC, 0, 1, SHM_DEFAULT_SYNC, "MODE",                    \
	  "fsync: a reply leaves once its journal record is on disk; none: "             \
	  "once written (survives process crashes, not power loss)")                     \
	X(truncate_corrupt, "truncate-corrupt", SHM_SET_FLAG, 0, 1, 0, NULL,             \
	  "recovery: cut a journal at its first corrupted record instead of "            \
	  "refusing to start")                                                           \
	X(snapshot_mb, "snapshot-mb", SHM_SET_NUM, 0, 1000000, SHM_DEFAULT_SNAPSHOT_MB,  \
	  "MB", "journal written between snapshots of a shard (0: at stop only)")        \
	X(segment_mb, "segment-mb", SHM_SET_NUM, 1, 65536, SHM_DEFAULT_SEGMENT_MB, "MB", \
	  "size of a journal segment file")                                              \
	X(quiet, "quiet", SHM_SET_FLAG, 0, 1, 0, NULL,                                   \
	  "only errors on stderr, from every process")                                   \
	X(verbose, "verbose", SHM_SET_FLAG, 0, 1, 0, NULL,                               \
	  "matchers log every rejected request")

/* The private copy.  Every value is a uint64_t in its row's range. */
struct shm_settings {
#define SHM_SETTINGS_FIELD_(f, ...) uint64_t f;
	SHM_SETTINGS(SHM_SETTINGS_FIELD_)
#undef SHM_SETTINGS_FIELD_
};

enum {
#define SHM_SETTINGS_COUNT_(f, ...) SHM_SETTING_IDX_##f,
	SHM_SETTINGS(SHM_SETTINGS_COUNT_)
#undef SHM_SETTINGS_COUNT_
		SHM_SETTINGS_COUNT
};

/* Slots of the shared copy; rows beyond SHM_SETTINGS_COUNT are zero. */
#define SHM_SETTINGS_SLOTS 64
_Static_assert(SHM_SETTINGS_COUNT <= SHM_SETTINGS_SLOTS, "settings fit");

/* In the control region (8 cache lines).  slot[i] holds row i.
 * W: creator, plain stores before R0; R: attachers after A0, copied once
 * with shm_settings_load.  Immutable. */
struct shm_settings_sh {
	uint64_t slot[SHM_SETTINGS_SLOTS];
};
_Static_assert(sizeof(struct shm_settings_sh) == 512, "settings are 8 lines");

/* One row of the table, for code that walks it (options, printing). */
struct shm_setting_desc {
	const char *field;  /* "ring_capacity" */
	const char *option; /* "ring-capacity" */
	enum shm_setting_kind kind;
	uint64_t min, max, def;
	const char *arg; /* metavariable in --help; NULL for flags */
	const char *help;
	size_t offset; /* of the field in struct shm_settings */
};
extern const struct shm_setting_desc shm_settings_desc[SHM_SETTINGS_COUNT];

/* Names of the self-trade prevention modes, in enum shm_book_stp order. */
extern const char *const shm_stp_names[5]; /* NULL-terminated */
/* Names of the journal sync modes: 0 fsync, 1 none. */
extern const char *const shm_sync_names[3]; /* NULL-terminated */

/* Every row at its default. */
void shm_settings_default(struct shm_settings *s);

/* Value of row i. */
uint64_t shm_settings_get(const struct shm_settings *s, size_t i);

/* Checks every row against its range (and POW2); on failure e names the
 * option, the value and the range.  Returns 0 or -EINVAL. */
int shm_settings_validate(const struct shm_settings *s, struct shmex_error *e)
	__attribute__((warn_unused_result));

/* Creator: writes s into the shared copy (before the region's R0). */
void shm_settings_store(struct shm_settings_sh *sh, const struct shm_settings *s);

/* Attacher: copies the shared words once (relaxed loads, after A0) and
 * validates the copy: 0, or SHMEX_EBADLAYOUT with the offending row in e. */
int shm_settings_load(const struct shm_settings_sh *sh, struct shm_settings *s,
		      struct shmex_error *e) __attribute__((warn_unused_result));

#endif

/*
 * eng_history: the writer of a shard's order history (the files are
 * shm_history.h's; docs/durability.md draws them).
 *
 * The matcher hands it every finished order the core recycles
 * (eng_core_set_recycle_hook); it copies the order's final state and
 * fills into a buffer at once, and eng_history_flush writes the buffer
 * with one write() and then publishes the slot entries [HS1].  The matcher
 * flushes after every round, before the round's replies leave, so a
 * query that no longer finds an order in the book finds it here at the
 * latest one round later (the gateway answers busy and reads again
 * meanwhile).
 *
 * The files are derived from the journal, so nothing here is synced on
 * the way: eng_history_sync (fdatasync) runs before a snapshot, the one
 * point after which the journal may no longer hold what a record says.
 *
 * Concurrency: the matcher thread only.
 */
#ifndef SHMEX_ENGINE_ENG_HISTORY_H
#define SHMEX_ENGINE_ENG_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include "shm/shm_book.h"
#include "shm/shm_error.h"

struct eng_history;

/* Opens (creating them when missing) the history files of a shard in
 * shard_dir.  Nothing is trusted yet: eng_history_reset must follow. */
int eng_history_open(struct eng_history **out, const char *shard_dir, uint32_t shard,
		     uint32_t nshards, uint64_t cap_orders, struct shmex_error *e)
	__attribute__((warn_unused_result));
void eng_history_close(struct eng_history *h);

/*
 * Keeps the first `len` bytes of the history file (what the loaded
 * snapshot covers; 0 when recovery starts from the journal alone), cuts
 * the rest, and rebuilds the slot table from the records kept.  A file
 * shorter than len, or a record that fails its checks, is cut at the
 * last good record with a warning in *warn (the replay cannot bring that
 * part back; queries of those orders answer busy).  *warn is empty when
 * all is well.
 */
int eng_history_reset(struct eng_history *h, uint64_t len, struct shmex_error *warn,
		      struct shmex_error *e) __attribute__((warn_unused_result));

/* Adds the finished order in record `oi` of the book v (the recycle
 * hook's arguments).  Never fails: a record that cannot be buffered is
 * counted as lost (eng_history_lost). */
void eng_history_add(struct eng_history *h, const struct shm_book_view *v, uint32_t oi);

/* Writes what was added and publishes it.  On a write error the records
 * stay buffered for the next flush and the error is returned (e names the
 * file); readers answer those orders busy until then. */
int eng_history_flush(struct eng_history *h, struct shmex_error *e)
	__attribute__((warn_unused_result));

/* Flushes and fdatasyncs the history file; its length into *len. */
int eng_history_sync(struct eng_history *h, uint64_t *len, struct shmex_error *e)
	__attribute__((warn_unused_result));

/* The account of recycled order `id` as its history record says,
 * flushed or still buffered.  SHMEX_ENOORDER when there is none. */
int eng_history_account(const struct eng_history *h, uint64_t id, uint64_t *account)
	__attribute__((warn_unused_result));

/* Records written so far, and records lost (out of memory). */
uint64_t eng_history_records(const struct eng_history *h);
uint64_t eng_history_lost(const struct eng_history *h);

#endif

/*
 * eng_journal: a matcher's journal writer, with group commit.
 *
 * The matcher thread appends records (shm_journal.h) to the current batch
 * as it applies requests, and seals the batch once per loop round.  A
 * writer thread takes every sealed batch there is, writes them with one
 * write(), makes them durable with one fdatasync() (or not, with sync off:
 * safe against process crashes, because the kernel keeps written pages,
 * not against power loss), publishes the last durable sequence, and rings
 * the matcher's doorbell.  So many requests share one fdatasync, and the
 * matcher keeps matching while the previous batch is being synced: the
 * replies of a batch leave only once eng_journal_durable() covers it (the
 * matcher's job, eng_matcher.c).
 *
 * Files: DIR/shard-<k>/journal-<first seq>.log, a 64-byte header then
 * records; a new segment is started at open and whenever the current one
 * passes segment_bytes (its first record's sequence names it, and the
 * directory is synced after creating it).
 *
 * Failure: the first write or sync that fails (ENOSPC, EFBIG under a file
 * size limit, EIO) stops the writer for good: eng_journal_error() returns
 * it, nothing after it becomes durable, and the matcher must stop
 * acknowledging (it exits; its successor recovers what was durable and
 * refuses orders while the journal cannot be written).
 *
 * Concurrency: append, seal, durable, error and pending from the matcher
 * thread; the writer thread is internal.  `durable` is the only field both
 * read: W: writer, release [JR1] after the sync; R: matcher, acquire [JR2].
 */
#ifndef SHMEX_ENGINE_ENG_JOURNAL_H
#define SHMEX_ENGINE_ENG_JOURNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "shm/shm_doorbell.h"
#include "shm/shm_error.h"
#include "shm/shm_journal.h"

#define ENG_JOURNAL_SEGMENT_DEFAULT (UINT64_C(64) << 20)

struct eng_journal;

struct eng_journal_cfg {
	const char *shard_dir; /* DIR/shard-<k>, existing */
	uint32_t shard, nshards;
	bool sync;                    /* fdatasync every batch */
	uint64_t segment_bytes;       /* 0: ENG_JOURNAL_SEGMENT_DEFAULT */
	uint64_t next_seq;            /* sequence of the first record appended */
	struct shm_doorbell_sh *wake; /* rung after each durable batch */
};

/* Creates the first segment and starts the writer thread.  Errors name
 * the file ("open DIR/shard-0/journal-...: Permission denied"). */
int eng_journal_open(struct eng_journal **out, const struct eng_journal_cfg *cfg,
		     struct shmex_error *e) __attribute__((warn_unused_result));

/* Appends r to the current batch: sets r's sequence (the next one) and
 * shard, seals it (length, CRC) and copies it.  r->h.type, time_ns and the
 * payload must be set.  Returns the record's sequence. */
uint64_t eng_journal_append(struct eng_journal *j, struct shm_jrec *r);

/* Marks the last record appended as its request's last (SHM_JREC_END),
 * sealing it again.  No-op when it was already handed to the writer. */
void eng_journal_mark_end(struct eng_journal *j);

/* The sequence of the last record appended (0 before the first). */
uint64_t eng_journal_last(const struct eng_journal *j);

/* Ends the current batch (if it holds records) and hands it to the writer. */
void eng_journal_seal(struct eng_journal *j);

/* The last sequence that is durable [JR2]. */
uint64_t eng_journal_durable(const struct eng_journal *j);

/* 0, or the error that stopped the writer (with its message in *e). */
int eng_journal_error(const struct eng_journal *j, struct shmex_error *e);

/* Seals, waits until everything appended is durable (or the writer
 * failed), and returns eng_journal_error. */
int eng_journal_flush(struct eng_journal *j, struct shmex_error *e)
	__attribute__((warn_unused_result));

struct eng_journal_stats {
	uint64_t records, bytes, batches, syncs, segments;
	uint64_t sync_ns; /* time spent in fdatasync */
};
void eng_journal_get_stats(const struct eng_journal *j, struct eng_journal_stats *st);

/* Flushes, stops the writer and closes.  Safe on NULL. */
void eng_journal_close(struct eng_journal *j);

#endif

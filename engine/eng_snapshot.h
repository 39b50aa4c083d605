/*
 * eng_snapshot: a shard's snapshot files (the format is shm_journal.h's
 * struct shm_jsnap_hdr and its sections; docs/durability.md draws it).
 *
 * A snapshot holds the whole state of one shard at the end of journal
 * record last_seq: the book region's body and the positions region's body
 * (shared memory, saved as memory: runs of pages that are not all zero),
 * the core's private state (eng_core_save), the shard's ledger (its part
 * of every account's cash) and the matcher's own counters.  It is written
 * to snapshot-<seq>.snap.tmp, synced, renamed and the directory synced,
 * so a crash leaves either the old set of snapshots or the new one.
 *
 * Reading maps the file and checks it whole (header, every section's
 * length and CRC32C, the END section at the end of the file) before any
 * byte of it is used; the page runs are checked again against the region
 * they go into.  A bad snapshot is an error naming the file and why, and
 * changes nothing.
 *
 * Concurrency: the matcher thread only.
 */
#ifndef SHMEX_ENGINE_ENG_SNAPSHOT_H
#define SHMEX_ENGINE_ENG_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/eng_core.h"
#include "shm/shm_error.h"
#include "shm/shm_journal.h"
#include "shm/shm_ledger.h"

/* The matcher's counters (section SHM_JSNAP_MATCHER); `nsidx` uint32
 * entries of its book symbol -> positions symbol map follow. */
struct eng_snapshot_matcher {
	uint64_t last_time_ns; /* time of record last_seq */
	uint64_t incarnation;  /* matchers of this shard started */
	uint64_t seq;          /* requests applied */
	uint64_t events;       /* last core event seen */
	uint64_t full_seen;
	uint32_t nsidx, pad;
};

/* What a snapshot is made of. */
struct eng_snapshot_in {
	uint32_t shard, nshards;
	uint64_t caps[8]; /* as shm_jsnap_hdr.caps */
	uint64_t last_seq;
	const struct eng_snapshot_matcher *matcher;
	const uint32_t *sidx_of;
	const struct eng_core *core;
	const void *book;
	size_t book_len;
	const void *positions;
	size_t positions_len;
	const struct shm_ledger *ledger;
	uint64_t history_len; /* the synced history file's length */
};

/* Writes DIR/snapshot-<last_seq>.snap (shard_dir = DIR); its path into
 * path (SHM_JOURNAL_PATH_MAX).  Errors name the file. */
int eng_snapshot_write(const char *shard_dir, const struct eng_snapshot_in *in,
		       char *path, struct shmex_error *e)
	__attribute__((warn_unused_result));

/* A snapshot file, mapped and checked. */
struct eng_snapshot {
	void *map;
	size_t len;
	const struct shm_jsnap_hdr *hdr;
	const void *sect[SHM_JSNAP_LEDGER + 1]; /* by enum shm_jsnap_kind */
	uint64_t sect_len[SHM_JSNAP_LEDGER + 1];
	/* Decoded from the MATCHER and LEDGER sections. */
	const struct eng_snapshot_matcher *matcher;
	const uint32_t *sidx_of;
	const struct shm_ledger_part *parts;
	uint64_t nparts;
};

/* Maps and checks path.  SHMEX_EJCORRUPT (e: the file, the byte offset,
 * why), or an I/O error. */
int eng_snapshot_open(struct eng_snapshot *s, const char *path, struct shmex_error *e)
	__attribute__((warn_unused_result));
void eng_snapshot_close(struct eng_snapshot *s);

/*
 * Page runs of section `kind` (BOOK or POSITIONS) into the region body
 * mem[0, len): with apply false only checks that they describe exactly
 * len bytes (SHMEX_EJCORRUPT otherwise); with apply true zeroes mem and
 * copies them (after a check passed).
 */
int eng_snapshot_pages(const struct eng_snapshot *s, unsigned kind, void *mem, size_t len,
		       bool apply) __attribute__((warn_unused_result));

#endif

/*
 * shm_history: finished orders that have left shared memory, on disk.
 *
 * A shard keeps the last --done-window finished orders in its book; when
 * the matcher recycles an older finished record (or takes one for a new
 * order), it first appends the order's final state and every fill to
 * DIR/shard-<k>/history, and points the order's slot at it in
 * DIR/shard-<k>/history.slots.  Queries of such an order are answered
 * from there (docs/protocol.md, "How long an order answers").
 *
 *   history          records, appended, never rewritten:
 *     +0   struct shm_hist_rec     (128 bytes)
 *     +128 struct shm_hist_fill[nfills] (48 bytes each)
 *   history.slots    struct shm_hist_slots_hdr (64 bytes), then one
 *                    uint64 per order slot of the shard: 1 + the offset of
 *                    the newest record of that slot, 0 when none
 *
 * The records of one slot form a chain, newest first (`prev`), with
 * strictly decreasing generations, so the order with id (slot, gen) is
 * found by walking the chain from the slot's entry.  Every record carries
 * a CRC32C of its bytes; a reader trusts no offset, length or count it
 * has not checked against the file.
 *
 * Both files are derived from the journal: the history file is cut back
 * to the length the loaded snapshot names (shm_jsnap_hdr.history_len) and
 * the replay appends the same records again, byte for byte; the slot table
 * is rebuilt from the history file at every start.  A snapshot is written
 * only after the history file is synced, so journal segments it makes
 * removable are never the only source of a history record.
 *
 * Concurrency: one writer (the shard's matcher), which publishes a slot
 * entry with a release store after the record's write() returned [HS1];
 * any number of readers (gateways, shmex-query), acquire [HS2], pread.
 */
#ifndef SHMEX_SHM_HISTORY_H
#define SHMEX_SHM_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shm/shm_error.h"
#include "shm/shm_snap.h"

#define SHM_HIST_MAGIC UINT32_C(0x54534948)       /* "HIST" */
#define SHM_HIST_SLOTS_MAGIC UINT32_C(0x534c5348) /* "HSLS" */
#define SHM_HIST_VERSION 1
/* Fills one record may hold (an order's fill count is bounded by the
 * shard's fill pool, far below this). */
#define SHM_HIST_FILLS_MAX (UINT32_C(1) << 26)

struct shm_hist_rec {
	uint32_t magic;  /* SHM_HIST_MAGIC */
	uint32_t crc;    /* CRC32C of the record (header and fills), crc = 0 */
	uint32_t nfills; /* fills that follow */
	uint32_t sym;    /* symbol index in the shard's book */
	uint64_t prev;   /* 1 + offset of the slot's previous record, or 0 */
	uint64_t id;
	uint64_t gen; /* the slot's generation of this order (id scheme) */
	uint64_t account;
	int64_t price;
	int64_t amount;
	int64_t open;
	int64_t executed;
	int64_t cancelled;
	uint64_t time_ns;
	uint64_t cancel_time_ns;
	uint64_t mod_event;
	uint8_t side, tif, state, done_reason;
	uint32_t pad;
	uint64_t reserved[1];
};
_Static_assert(sizeof(struct shm_hist_rec) == 128, "history record header");

struct shm_hist_fill {
	int64_t qty;
	int64_t price;
	uint64_t time_ns;
	uint64_t counterparty;
	uint64_t event;
	uint64_t maker; /* 0 or 1 */
};
_Static_assert(sizeof(struct shm_hist_fill) == 48, "history fill");

/* Every field: W the matcher, plain stores in eng_history_reset before
 * the entries are stored (HS1), rewritten only with the same values while
 * the capacities stay; R readers once, at shm_history_open, checked
 * against the book they map. */
struct shm_hist_slots_hdr {
	uint32_t magic; /* SHM_HIST_SLOTS_MAGIC */
	uint32_t version;
	uint32_t shard, nshards;
	uint64_t cap_orders; /* entries that follow */
	uint64_t reserved[5];
};
_Static_assert(sizeof(struct shm_hist_slots_hdr) == 64, "history slots header");

/* File names inside a shard directory. */
#define SHM_HIST_FILE "history"
#define SHM_HIST_SLOTS_FILE "history.slots"

/* Seals a record: computes its CRC over the header and fills. */
void shm_hist_seal(struct shm_hist_rec *r, const struct shm_hist_fill *fills);
/* Checks a record and its fills as read from the file: magic, fill
 * count, CRC.  fills may be NULL when nfills is 0. */
bool shm_hist_valid(const struct shm_hist_rec *r, const struct shm_hist_fill *fills);

/* pread of exactly len bytes at off: 0, -errno, or SHMEX_EJCORRUPT when
 * the file ends first. */
int shm_history_pread(int fd, void *buf, size_t len, uint64_t off)
	__attribute__((warn_unused_result));

/* A reader of one shard's history. */
struct shm_history {
	bool ok; /* open (a zeroed handle is closed) */
	int fd;  /* history */
	int slots_fd;
	const struct shm_hist_slots_hdr *map; /* history.slots, read-only */
	size_t map_len;
	const uint64_t *slot; /* cap_orders entries */
	uint32_t shard, nshards;
	uint64_t cap_orders;
	/* Fills an order of this shard can have (its fill pool); 0: only
	 * SHM_HIST_FILLS_MAX.  Set by shm_history_lookup. */
	uint64_t cap_fills;
};

/* Opens DIR/shard-<k>/history{,.slots} for reading.  -ENOENT when the
 * shard has none yet (nothing was recycled), SHMEX_EJCORRUPT (e names the
 * file and why) when the slot table is not this shard's. */
int shm_history_open(struct shm_history *h, const char *shard_dir, uint32_t shard,
		     uint32_t nshards, uint64_t cap_orders, struct shmex_error *e)
	__attribute__((warn_unused_result));
void shm_history_close(struct shm_history *h);

/*
 * The recorded final state of order `id`: its status into *o and up to
 * max_fills fills (their total count in o->nfills, copied in *nfills).
 * Returns 0; SHMEX_ENOORDER when the history has no such order (yet);
 * SHMEX_EJCORRUPT when what the chain leads to fails its checks (e says
 * where); an I/O error.
 */
int shm_history_find(struct shm_history *h, uint64_t id, struct shm_snap_order *o,
		     struct shm_snap_fill *fills, size_t max_fills, size_t *nfills,
		     struct shmex_error *e) __attribute__((warn_unused_result));

/*
 * What a query of an order that the book does not have should answer:
 * the order's recorded state when the book says the id was issued and
 * recycled (shm_snap_order_issued) and the history of the shard has it
 * (opened on first use from data_dir, the instance's data directory).
 * Returns 0 (as shm_history_find); SHMEX_ENOORDER when the id was never
 * issued, or the exchange keeps no history (no data directory);
 * SHMEX_EBUSY when the order was recycled but its record is not written
 * yet (the matcher writes it at the end of its round: ask again);
 * SHMEX_EJCORRUPT with e saying where, when the record cannot be trusted.
 */
int shm_history_lookup(struct shm_history *h, const struct shm_snap *rd,
		       const char *data_dir, uint64_t id, struct shm_snap_order *o,
		       struct shm_snap_fill *fills, size_t max_fills, size_t *nfills,
		       struct shmex_error *e) __attribute__((warn_unused_result));

#endif

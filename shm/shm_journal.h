/*
 * shm_journal: the on-disk contract of durability.  What a matcher writes
 * to its shard's journal, and what recovery, the audit writer and
 * shmex-journal read back: the record format, the segment files, the
 * snapshot file header, the data directory's layout and its lock.  It is
 * in shm/ because several processes must agree on it byte for byte (the
 * matcher that writes, the matcher that recovers, the audit process that
 * merges, the tools that dump and verify), exactly like the shared-memory
 * layouts; docs/durability.md draws every byte.
 *
 * Data directory (shmex --data-dir DIR, default shmex-data/<instance>):
 *
 *   DIR/lock                          the live exchange's pid and start time
 *   DIR/exchange.conf                 settings of the first start (shards)
 *   DIR/shard-<k>/journal-<seq>.log   journal segments of shard k; <seq>
 *                                     (16 hex digits) is the first record's
 *   DIR/shard-<k>/snapshot-<seq>.snap snapshots; <seq> the last record they
 *                                     cover
 *   DIR/audit.log                     all shards' records merged by time
 *   DIR/audit.pos                     how far audit.log has merged each shard
 *
 * A segment is a 64-byte file header (struct shm_jseg_hdr) followed by
 * records.  A record is a 32-byte header (struct shm_jrec_hdr) and a
 * type-specific payload; its length is a multiple of 8; its CRC32C covers
 * every byte after the CRC field.  Records of one shard have sequence
 * numbers 1, 2, 3, ... without gaps across segments, and non-decreasing
 * times.  A torn last record (a write cut short by a crash) is detected
 * by its length or CRC and cut off; a bad record followed by good ones is
 * corruption and stops recovery, unless told to truncate there.
 *
 * All integers are little-endian (the native order of the only platform
 * shmex builds on, x86-64), structs are written as they are in memory
 * (every one has fixed-width fields, explicit padding and a static size).
 *
 * Concurrency: pure encoding and file reading; the writer is
 * engine/eng_journal.  A reader may read a segment while the writer
 * appends to it: it stops at the first incomplete record, which is not an
 * error while the writer lives.
 */
#ifndef SHMEX_SHM_JOURNAL_H
#define SHMEX_SHM_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "shm/shm_dec.h"
#include "shm/shm_error.h"

#define SHM_JSEG_MAGIC UINT64_C(0x4c4e524a584d4853)  /* "SHMXJRNL" */
#define SHM_JSNAP_MAGIC UINT64_C(0x50414e53584d4853) /* "SHMXSNAP" */
/* 2: 128-bit cash (the account record's balance, the snapshot's ledger
 * parts); files of version 1 are refused with their name and version. */
#define SHM_JOURNAL_VERSION 2u
/* Snapshots: 3: 128-bit share totals and positions in the POSITIONS
 * section (a positions region body of layout 4); snapshots of version 2
 * are refused with their name and version (segments are unchanged). */
#define SHM_JSNAP_VERSION 3u
#define SHM_JREC_HDR 32u
#define SHM_JREC_MAX 256u /* longest record */
#define SHM_JOURNAL_PATH_MAX 1024

/* CRC32C (Castagnoli), the iSCSI/ext4 polynomial; SSE4.2 when the CPU has
 * it.  crc is the running value (0 to start). */
uint32_t shm_crc32c(uint32_t crc, const void *data, size_t len);

/* ---- records ---------------------------------------------------------- */

enum shm_jrec_type {
	SHM_JREC_START = 1, /* a matcher began writing (incarnation) */
	/* Requests that changed state, in the order they were applied. */
	SHM_JREC_ACCOUNT = 2, /* account created on its home shard */
	SHM_JREC_SHARES = 3,  /* shares created in a position */
	SHM_JREC_ORDER = 4,   /* order accepted (its id, its hold) */
	SHM_JREC_CANCEL = 5,  /* cancel request applied */
	SHM_JREC_MODIFY = 6,  /* modify request applied */
	/* What a request did as it went (checked again on replay). */
	SHM_JREC_FILL = 7,     /* one trade, both sides, the refund */
	SHM_JREC_DONE = 8,     /* an order's open part cancelled */
	SHM_JREC_MODIFIED = 9, /* an order's new limit and open size */
	/* Side effects of requests that were otherwise rejected. */
	SHM_JREC_SYMBOL = 10,   /* a symbol entered the book, without shares */
	SHM_JREC_POSITION = 11, /* an empty position entry was made */
	SHM_JREC_RECYCLE = 12,  /* finished order records were recycled */
	SHM_JREC_TYPE_LAST_ = SHM_JREC_RECYCLE,
};

/* Every record starts with this (32 bytes). */
struct shm_jrec_hdr {
	uint32_t len;     /* bytes of the record, this header included */
	uint32_t crc;     /* CRC32C of bytes [8, len) */
	uint64_t seq;     /* the shard's record sequence, from 1, no gaps */
	uint64_t time_ns; /* CLOCK_REALTIME of the request, non-decreasing */
	uint16_t type;    /* enum shm_jrec_type */
	uint16_t shard;   /* the shard that wrote it */
	uint32_t flags;   /* SHM_JREC_END on a request's last record */
};

/* flags: the last record of the records one request (or one side effect,
 * or a START) wrote.  Recovery applies a request only when its whole
 * group is there: a group cut short is the torn tail. */
#define SHM_JREC_END 1u
_Static_assert(sizeof(struct shm_jrec_hdr) == SHM_JREC_HDR, "record header");

/* Where a request came from, so that a restarted matcher can answer it
 * again: the gateway, its request id and the request's position in that
 * gateway's ring (the ring's consumer count before it was taken). */
struct shm_jrec_origin {
	uint32_t gateway;
	uint32_t pad;
	uint64_t req_id;
	uint64_t ring_pos;
};

struct shm_jrec_start {
	uint64_t incarnation; /* matchers of this shard started so far */
	int32_t pid;
	uint32_t nshards;
	uint64_t recovered; /* last sequence recovered before this start */
	uint64_t pad;
};

struct shm_jrec_account {
	struct shm_jrec_origin o;
	uint64_t account;
	/* The deposit, CASH scale, a shm_cash_t in two words (records are
	 * only 8-aligned): shm_jrec_balance() / shm_jrec_set_balance(). */
	uint64_t balance_lo;
	int64_t balance_hi;
};

static inline shm_cash_t shm_jrec_balance(const struct shm_jrec_account *a)
{
	return (shm_cash_t)(((unsigned __int128)(uint64_t)a->balance_hi << 64) |
			    a->balance_lo);
}
static inline void shm_jrec_set_balance(struct shm_jrec_account *a, shm_cash_t v)
{
	a->balance_lo = (uint64_t)v;
	a->balance_hi = (int64_t)(uint64_t)((unsigned __int128)v >> 64);
}

struct shm_jrec_shares {
	struct shm_jrec_origin o;
	uint64_t account;
	int64_t qty;     /* QTY scale */
	char symbol[16]; /* NUL-padded */
};

struct shm_jrec_order {
	struct shm_jrec_origin o;
	uint64_t order_id;
	uint64_t account;
	int64_t price; /* limit, PRICE scale */
	int64_t qty;   /* amount, QTY scale */
	char symbol[16];
	uint8_t side, tif;
	uint8_t flags; /* the request's SHM_MSG_POST_ONLY; 0 in journals
			* written before post-only existed (and replayed
			* the same: a post-only order that was accepted
			* did not cross) */
	uint8_t pad[5];
	int64_t hold;   /* what placement reserved: cash or shares */
	uint64_t event; /* the core's event number of the acceptance */
};

struct shm_jrec_cancel {
	struct shm_jrec_origin o;
	uint64_t order_id;
	uint64_t account;
};

struct shm_jrec_modify {
	struct shm_jrec_origin o;
	uint64_t order_id;
	uint64_t account;
	int64_t price; /* the new limit */
	int64_t qty;   /* the new open quantity */
};

struct shm_jrec_fill {
	uint64_t taker_id, maker_id;
	uint64_t taker_account, maker_account;
	int64_t price; /* execution price: the maker's limit */
	int64_t qty;
	int64_t taker_limit, maker_limit;
	int64_t buyer_refund;  /* CASH back to the buyer's balance */
	int64_t seller_credit; /* CASH to the seller's balance */
	uint64_t event;        /* the core's event number */
	uint8_t taker_side, pad[7];
};

struct shm_jrec_done {
	uint64_t order_id;
	uint64_t account;
	int64_t qty;   /* open quantity cancelled */
	int64_t price; /* the order's limit */
	uint64_t event;
	uint8_t reason; /* enum shm_book_done_reason */
	uint8_t side, pad[6];
};

struct shm_jrec_modified {
	uint64_t order_id;
	uint64_t account;
	int64_t old_price, old_qty;
	int64_t new_price, new_qty;
	uint64_t event;
	uint8_t side, pad[7];
};

struct shm_jrec_symbol {
	char symbol[16];
};

struct shm_jrec_position {
	uint64_t account;
	char symbol[16];
};

struct shm_jrec_recycle {
	uint64_t count;
};

/* A record as read or about to be written: header and payload. */
struct shm_jrec {
	struct shm_jrec_hdr h;
	union {
		struct shm_jrec_start start;
		struct shm_jrec_account account;
		struct shm_jrec_shares shares;
		struct shm_jrec_order order;
		struct shm_jrec_cancel cancel;
		struct shm_jrec_modify modify;
		struct shm_jrec_fill fill;
		struct shm_jrec_done done;
		struct shm_jrec_modified modified;
		struct shm_jrec_symbol symbol;
		struct shm_jrec_position position;
		struct shm_jrec_recycle recycle;
		uint8_t raw[SHM_JREC_MAX - SHM_JREC_HDR];
	} u;
};

/* Payload bytes of a type (0 for an unknown type). */
size_t shm_jrec_payload_len(uint16_t type);
/* Name of a type ("ORDER"), "?" for an unknown one. */
const char *shm_jrec_type_name(uint16_t type);

/* Fills h.len and h.crc of r (type, seq, time, shard, flags and the
 * payload set) and returns the record's length. */
size_t shm_jrec_seal(struct shm_jrec *r);

/*
 * Checks one record at p with `avail` bytes available: 0 and *len when it
 * is complete and valid; SHMEX_EJTORN when it is incomplete (fewer bytes
 * than its length, or not even a header); SHMEX_EJCORRUPT when its length,
 * type or CRC is wrong.  Copies nothing.
 */
int shm_jrec_check(const void *p, size_t avail, size_t *len)
	__attribute__((warn_unused_result));

/* ---- segments ---------------------------------------------------------- */

/* The first 64 bytes of a segment. */
struct shm_jseg_hdr {
	uint64_t magic;   /* SHM_JSEG_MAGIC */
	uint32_t version; /* SHM_JOURNAL_VERSION */
	uint32_t shard;
	uint32_t nshards;
	uint32_t hdr_crc;   /* CRC32C of this header with hdr_crc = 0 */
	uint64_t first_seq; /* sequence of its first record */
	uint64_t created_ns;
	uint64_t reserved[3];
};
_Static_assert(sizeof(struct shm_jseg_hdr) == 64, "segment header");

/* Fills a segment header. */
void shm_jseg_hdr_init(struct shm_jseg_hdr *h, uint32_t shard, uint32_t nshards,
		       uint64_t first_seq, uint64_t now_ns);
/* Validates one: 0 or SHMEX_EJCORRUPT (magic, version, CRC), with the
 * reason in e. */
int shm_jseg_hdr_check(const struct shm_jseg_hdr *h, struct shmex_error *e)
	__attribute__((warn_unused_result));

/* "DIR/shard-<k>" into out. */
int shm_journal_shard_dir(char *out, size_t len, const char *dir, uint32_t shard)
	__attribute__((warn_unused_result));

/* The segments and snapshots found in a shard directory, sorted by their
 * sequence.  Paths are owned by the list. */
struct shm_jdir {
	uint32_t nseg, nsnap;
	char **seg; /* journal-*.log, by first sequence */
	uint64_t *seg_first;
	char **snap; /* snapshot-*.snap, by last sequence */
	uint64_t *snap_last;
};
/* Lists a shard directory (-ENOENT when it does not exist). */
int shm_jdir_list(struct shm_jdir *d, const char *shard_dir, struct shmex_error *e)
	__attribute__((warn_unused_result));
void shm_jdir_free(struct shm_jdir *d);

/*
 * Reading a shard's journal in order, across its segments.  The reader
 * returns records one by one, each valid and with the next sequence.  At
 * the end of the last segment it reports where the good records end
 * (file and offset), and whether a torn tail follows.
 */
struct shm_jreader {
	struct shm_jdir dir;
	uint32_t shard, nshards; /* expected (nshards 0: take the first) */
	uint32_t si;             /* current segment */
	int fd;
	uint8_t *buf;       /* read buffer */
	size_t cap, lo, hi; /* buf[lo, hi) holds unread bytes */
	off_t file_off;     /* file offset of buf[lo] */
	uint64_t next_seq;  /* sequence the next record must have */
	uint64_t skip_to;   /* records before it are read, not returned */
	uint64_t last_time;
	bool follow;         /* tailing a live journal (audit) */
	bool at_torn_header; /* the last segment's header is cut short */
	/* Where the last good record ends, for truncation and messages. */
	char good_path[SHM_JOURNAL_PATH_MAX];
	off_t good_end;
};

/* Opens the journal of one shard; from_seq: skip records before it (after
 * a snapshot).  Errors: -ENOENT (no directory), segment header errors;
 * after an error there is nothing to close. */
int shm_jreader_open(struct shm_jreader *r, const char *shard_dir, uint32_t shard,
		     uint32_t nshards, uint64_t from_seq, struct shmex_error *e)
	__attribute__((warn_unused_result));

/*
 * The next record into *out.  Returns 1 with a record, 0 at the clean end
 * (no more bytes), SHMEX_EJTORN at a torn tail of the last segment (the
 * good records end at good_path:good_end), SHMEX_EJCORRUPT for a bad
 * record followed by more data, a gap or a step back in sequence or time,
 * or a segment that does not continue the previous one; e says which file,
 * which byte offset and why.
 */
int shm_jreader_next(struct shm_jreader *r, struct shm_jrec *out, struct shmex_error *e)
	__attribute__((warn_unused_result));
void shm_jreader_close(struct shm_jreader *r);

/* ---- snapshots --------------------------------------------------------- */

/* The first 128 bytes of a snapshot file; the sections follow.  Each
 * section is a struct shm_jsnap_sect followed by `len` bytes, and the
 * file ends with a section of kind SHM_JSNAP_END. */
struct shm_jsnap_hdr {
	uint64_t magic;   /* SHM_JSNAP_MAGIC */
	uint32_t version; /* SHM_JSNAP_VERSION */
	uint32_t shard;
	uint32_t nshards;
	uint32_t hdr_crc;   /* CRC32C of this header with hdr_crc = 0 */
	uint64_t signature; /* shm_layout_signature() of the writer */
	uint64_t last_seq;  /* the journal record it covers up to */
	uint64_t last_time_ns;
	uint64_t created_ns;
	uint64_t caps[8]; /* orders, levels, fills, symbols, positions,
				* accounts, 0, 0 */
	/* Bytes of the shard's history file (shm_history.h) at last_seq,
	 * synced before this snapshot was written. */
	uint64_t history_len;
};
_Static_assert(sizeof(struct shm_jsnap_hdr) == 128, "snapshot header");

struct shm_jsnap_sect {
	uint32_t kind; /* enum shm_jsnap_kind */
	uint32_t crc;  /* CRC32C of the section's bytes */
	uint64_t len;
};
_Static_assert(sizeof(struct shm_jsnap_sect) == 16, "snapshot section");

enum shm_jsnap_kind {
	SHM_JSNAP_END = 0,
	SHM_JSNAP_MATCHER = 1,   /* the matcher's counters */
	SHM_JSNAP_BOOK = 2,      /* the book region's body */
	SHM_JSNAP_CORE = 3,      /* the core's private allocation state */
	SHM_JSNAP_POSITIONS = 4, /* the positions region's body */
	SHM_JSNAP_LEDGER = 5,    /* the shard's account ledger */
};

void shm_jsnap_hdr_seal(struct shm_jsnap_hdr *h);
int shm_jsnap_hdr_check(const struct shm_jsnap_hdr *h, struct shmex_error *e)
	__attribute__((warn_unused_result));

/* ---- how far the audit log has merged -------------------------------- */

/*
 * DIR/audit.pos: for each shard, the last sequence that DIR/audit.log
 * holds.  Written by shmex-audit (a new file renamed over the old one,
 * so a reader sees one or the other), read by a matcher before it
 * removes old journal segments: a segment is removed only once the audit
 * log has merged it.  Values only grow; a lost or stale file only makes
 * a matcher keep more.
 */
#define SHM_JAUDIT_POS_MAGIC UINT64_C(0x534f5041584d4853) /* "SHMXAPOS" */
#define SHM_JAUDIT_POS_SHARDS 64

struct shm_jaudit_pos {
	uint64_t magic; /* SHM_JAUDIT_POS_MAGIC */
	uint32_t nshards;
	uint32_t crc;                           /* CRC32C of the struct with crc = 0 */
	uint64_t merged[SHM_JAUDIT_POS_SHARDS]; /* 0: nothing of that shard */
};
_Static_assert(sizeof(struct shm_jaudit_pos) == 16 + 8 * SHM_JAUDIT_POS_SHARDS,
	       "audit position");

/* The last sequence of shard `shard` in the audit log of the data
 * directory that holds shard_dir (DIR/shard-<k>/../audit.pos): 0 and
 * *seq; -ENOENT when no audit writer ever ran on it; a file that is not
 * valid gives *seq = 0 (keep everything). */
int shm_jaudit_pos_read(const char *shard_dir, uint32_t shard, uint64_t *seq)
	__attribute__((warn_unused_result));
/* Writes DIR/audit.pos (temporary file, rename). */
int shm_jaudit_pos_write(const char *dir, const struct shm_jaudit_pos *p)
	__attribute__((warn_unused_result));

/* ---- the data directory's lock ----------------------------------------- */

/*
 * Takes DIR/lock for this process: O_EXCL create with "pid start\n".  An
 * existing lock whose (pid, start time) is alive is refused with
 * SHMEX_EINUSE and e naming the pid; a stale one (its process is gone) is
 * replaced.  *fd (kept open) is the lock file.
 */
int shm_journal_lock(const char *dir, int *fd, struct shmex_error *e)
	__attribute__((warn_unused_result));
/* Releases it (unlinks DIR/lock when it is still ours). */
void shm_journal_unlock(const char *dir, int fd);

/* mkdir -p with mode 0750; e names the directory that failed. */
int shm_journal_mkdirs(const char *dir, struct shmex_error *e)
	__attribute__((warn_unused_result));

/* fsync of a directory (after creating, renaming or removing a file). */
int shm_journal_sync_dir(const char *dir) __attribute__((warn_unused_result));

#endif

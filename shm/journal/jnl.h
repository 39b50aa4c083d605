/*
 * jnl: reading a data directory's journals in time order, and the audit
 * log (DIR/audit.log) that holds them merged.  Shared by shmex-journal
 * (dump, verify, merge, stats: offline) and shmex-audit (the live merge
 * the supervisor runs); both depend on shm/ only.
 *
 * The audit log is a 64-byte header (struct jnl_audit_hdr) followed by
 * the shards' journal records, each copied byte for byte (its own length,
 * CRC, shard, sequence and time), in (time_ns, shard, seq) order: the
 * merge key.  Because every byte of it comes from the journals and the
 * header holds no time or pid, the live audit log and an offline merge of
 * the same journals are byte-identical (docs/durability.md, "Audit log").
 *
 * Which records are merged: those of complete request groups (up to the
 * last record carrying SHM_JREC_END in each shard), i.e. what recovery
 * keeps.  The live merge takes only durable records (below each shard's
 * published watermark, which only covers complete groups); the offline
 * merge takes every complete group on disk.
 *
 * Concurrency: none inside (one thread per handle).  Sources read files a
 * matcher may be appending to (follow mode), which shm_jreader allows.
 */
#ifndef SHMEX_SHM_JOURNAL_JNL_H
#define SHMEX_SHM_JOURNAL_JNL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "shm/shm_error.h"
#include "shm/shm_journal.h"

#define JNL_AUDIT_MAGIC UINT64_C(0x54445541584d4853) /* "SHMXAUDT" */
/* 2: the journal records it holds are version 2 (128-bit cash in the
 * ACCOUNT record); a version-1 log is refused, never cut as torn. */
#define JNL_AUDIT_VERSION 2u
#define JNL_AUDIT_NAME "audit.log"

/* The first 64 bytes of an audit log. */
struct jnl_audit_hdr {
	uint64_t magic;   /* JNL_AUDIT_MAGIC */
	uint32_t version; /* JNL_AUDIT_VERSION */
	uint32_t nshards; /* shards merged */
	uint32_t hdr_crc; /* CRC32C of these 64 bytes with hdr_crc = 0 */
	uint32_t pad;
	uint64_t reserved[5]; /* zero */
};
_Static_assert(sizeof(struct jnl_audit_hdr) == 64, "audit log header");

void jnl_audit_hdr_init(struct jnl_audit_hdr *h, uint32_t nshards);
/* 0 or SHMEX_EJCORRUPT with the reason in e. */
int jnl_audit_hdr_check(const struct jnl_audit_hdr *h, struct shmex_error *e)
	__attribute__((warn_unused_result));

/* The merge order: <0, 0, >0 as a comes before, is, or comes after b. */
int jnl_key_cmp(const struct shm_jrec_hdr *a, const struct shm_jrec_hdr *b);

/* The shard count of a data directory: its exchange.conf ("shards N"),
 * else the number of consecutive shard-<k> directories from 0.
 * SHMEX_EJCORRUPT / -ENOENT with e naming the directory. */
int jnl_data_shards(const char *dir, uint32_t *n, struct shmex_error *e)
	__attribute__((warn_unused_result));

/* ---- one shard's records, in order --------------------------------- */

struct jnl_src {
	char dir[SHM_JOURNAL_PATH_MAX]; /* DIR/shard-<k> (DIR/shard-k) */
	uint32_t shard, nshards;
	bool follow;    /* a live journal: an incomplete tail is "not yet" */
	bool open;      /* rd is open */
	bool exhausted; /* nothing more below the step's bound (per step) */
	struct shm_jreader rd;
	bool has_head;
	struct shm_jrec head; /* the next record to merge */
	uint64_t limit_seq;   /* records after it are not merged */
	bool has_cursor;      /* records at or before it are merged already */
	struct shm_jrec_hdr cursor;
	uint64_t last_seq; /* last record taken or skipped as merged (0: none) */
	uint64_t taken;    /* records taken */
	bool torn;         /* offline: the journal ends in a torn tail */
	char torn_msg[SHMEX_ERROR_MAX];
};

/* Opens shard `shard` of data directory dir (nshards 0: take the
 * segments' own).  Records up to and including `cursor` (when given) are
 * skipped: they are in the audit log already.  -ENOENT when the shard
 * has no directory yet. */
int jnl_src_open(struct jnl_src *s, const char *dir, uint32_t shard, uint32_t nshards,
		 bool follow, const struct shm_jrec_hdr *cursor, struct shmex_error *e)
	__attribute__((warn_unused_result));

/* Reopens after the last record taken (a matcher restart may have cut a
 * torn tail and started a new segment where it was). */
int jnl_src_reopen(struct jnl_src *s, struct shmex_error *e)
	__attribute__((warn_unused_result));

void jnl_src_close(struct jnl_src *s);

/* Offline: reads the whole shard once and sets limit_seq to its last
 * record with SHM_JREC_END, then rewinds.  Errors as shm_jreader_next
 * (a torn tail is not one: torn/torn_msg say so). */
int jnl_src_find_limit(struct jnl_src *s, struct shmex_error *e)
	__attribute__((warn_unused_result));

/*
 * One merge step over n sources: takes, in merge order, every record
 * whose time is below `below` that the sources hold now, up to `max`
 * records, and calls put for each (put returns 0 or an error, which
 * stops the step).  Returns the number of records taken, or a negative
 * error (a corrupted journal, with e naming the file and byte).
 *
 * Why it is right: the caller knows that every record of shard k with a
 * time below W_k is on disk (the watermark, or the end of an offline
 * journal), and passes below <= min W_k.  A source whose reader has no
 * further complete record then has none below `below` either, so the
 * smallest head is the smallest record not merged yet.
 */
typedef int (*jnl_put_fn)(void *arg, const struct shm_jrec *r);
int64_t jnl_merge_step(struct jnl_src *src, uint32_t n, uint64_t below, uint64_t max,
		       jnl_put_fn put, void *arg, struct shmex_error *e);

/* ---- writing and recovering an audit log ----------------------------- */

/* Buffered output of records to a file descriptor. */
struct jnl_out {
	int fd;
	uint8_t *buf;
	size_t len, cap;
	uint64_t bytes, records; /* written so far (header included) */
	int err;
	struct shm_jrec_hdr last; /* the last record put */
	bool has_last;
};

int jnl_out_init(struct jnl_out *o, int fd) __attribute__((warn_unused_result));
/* Appends a record (a jnl_put_fn). */
int jnl_out_put(void *o, const struct shm_jrec *r);
/* Appends raw bytes (the header). */
int jnl_out_raw(struct jnl_out *o, const void *p, size_t len)
	__attribute__((warn_unused_result));
/* Writes what is buffered (write(2) until done); 0 or -errno. */
int jnl_out_flush(struct jnl_out *o) __attribute__((warn_unused_result));
void jnl_out_free(struct jnl_out *o);

/*
 * Finds where the good part of an audit log ends, reading only its end:
 * the last 4 KiB are searched for a record boundary (every record starts
 * at a multiple of 8, and a record is accepted only with its length,
 * type and CRC right), the chain of records from there is followed to
 * its end, and what follows (a torn write) is reported in *end < size.
 * Checks the header (and nshards when non-zero).  *has_last and *last: the
 * last good record (none in an empty log).  Errors name the file.
 */
int jnl_audit_tail(int fd, const char *path, uint32_t nshards, off_t *end, bool *has_last,
		   struct shm_jrec_hdr *last, struct shmex_error *e)
	__attribute__((warn_unused_result));

/* Merges every complete record group of data directory dir into fd,
 * header first: the offline form of the audit log.  *records gets the
 * count; warnings (torn tails) go to stderr prefixed by prog. */
int jnl_merge_dir(const char *dir, int fd, const char *prog, uint64_t *records,
		  struct shmex_error *e) __attribute__((warn_unused_result));

#endif

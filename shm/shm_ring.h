/*
 * shm_ring: a single-producer single-consumer ring of 64-byte messages
 * (struct shm_msg) in shared memory, for processes that do not trust each
 * other.
 *
 * A ring is a block of memory inside some region (the instance's "rings"
 * region, or any other): shm_ring_init() lays it out once, then a producer
 * and a consumer each shm_ring_attach() a private handle (struct shm_ring)
 * to it, possibly at different addresses in different processes.  The
 * layout (docs/ring.md has the byte diagram):
 *
 *   offset   0  header line: magic, capacity, mask (immutable after init)
 *   offset  64  producer line: head               (W: producer only)
 *   offset 128  doorbell line (used when no external doorbell is given)
 *   offset 256  consumer line: tail               (W: consumer only)
 *   offset 384  capacity slots of 64 bytes each
 *
 * head and tail are free-running 64-bit message counts (never wrap in
 * practice); slot i holds message number n with n & mask == i; the ring
 * holds head - tail messages, 0 <= head - tail <= capacity.
 *
 * Trust: each side validates what the other side wrote before following
 * it.  The consumer refuses a head that went backwards or is more than
 * capacity ahead of its own tail, the producer a tail that went backwards
 * or passed its head; both return SHMEX_ERINGCORRUPT and touch nothing.
 * capacity and mask come from the handle (validated once at attach), never
 * again from shared memory.  The messages themselves are copied out once
 * and the caller validates the copy (shm_msg_validate_request/_reply).
 *
 * Back-pressure: "full" and "empty" are results, not errors: enqueue
 * reports how many messages it took (*done < n means the ring was full)
 * and dequeue how many it gave (*got == 0 means empty).  Nothing is ever
 * dropped or overwritten.
 *
 * Corruption and repair (docs/ring.md, "Corruption and repair"): a ring
 * has a generation.  An end that meets a bad index reports it
 * (shm_ring_report: "generation n is corrupt") and leaves the ring alone;
 * the supervisor then asks both ends to stop using generation n
 * (shm_ring_request_quiesce), each live end acknowledges with its private
 * index (shm_ring_ack), and the supervisor resets the ring (head = tail =
 * the larger acknowledged index, generation n + 1: shm_ring_reset).  Each
 * end then re-reads the indexes (shm_ring_resume) and carries on.  Every
 * check of this protocol is on a slow path (after an error, or when the
 * instance's repair sequence moved): enqueue and dequeue are unchanged.
 *
 * Concurrency: at most one producer and one consumer per ring at a time,
 * in any processes.  Producer calls (enqueue_batch, claim, publish) may run
 * concurrently with consumer calls (dequeue_batch, readable, wait);
 * shm_ring_stats may run anywhere, including on a read-only mapping.  A
 * producer that dies at any instant leaves only whole published messages
 * behind; a new producer attaches and continues from the published head.
 */
#ifndef SHMEX_SHM_RING_H
#define SHMEX_SHM_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shm/shm_atomic.h"
#include "shm/shm_doorbell.h"
#include "shm/shm_msg.h"

#define SHM_RING_MAGIC UINT64_C(0x31474e4952584d53) /* "SMXRING1" */
#define SHM_RING_CAPACITY_MIN 2u
#define SHM_RING_CAPACITY_MAX (1u << 20)

/* Line 0.  The first 32 bytes: W: shm_ring_init, before the enclosing
 * region is published (region R0); R: shm_ring_attach only, after region
 * A0; immutable.  gen and quiesce belong to the repair protocol and are
 * written only by the supervisor (or a test), never on a fast path. */
struct shm_ring_hdr_sh {
	uint64_t magic;        /* SHM_RING_MAGIC */
	uint32_t capacity;     /* slots, a power of two */
	uint32_t mask;         /* capacity - 1 */
	uint32_t msg_size;     /* sizeof(struct shm_msg) */
	uint32_t slots_offset; /* offsetof(struct shm_ring_sh, slots) */
	uint64_t bytes;        /* shm_ring_bytes(capacity) */
	/* Generation: 1 at init, + 1 per reset.  W: the resetter, release
	 * [RNG5] after head and tail; R: ends, acquire [RNG6] before they
	 * re-read head and tail (shm_ring_resume, attach), tools. */
	uint32_t gen;
	/* The generation the supervisor asks both ends to stop using (==
	 * gen while a repair is under way).  W: the resetter, release
	 * [RNG7]; R: ends, acquire [RNG8] (shm_ring_repair_state). */
	uint32_t quiesce;
	uint64_t reserved[3];
} shm_aligned;

/* Line 1: written only by the producer. */
struct shm_ring_prod_sh {
	/* Messages published so far.  W: producer, release [RNG1] after
	 * the slots are written; R: consumer, acquire [RNG2] before reading
	 * slots.  Only grows. */
	uint64_t head;
	/* Statistics.  W: producer only, relaxed (single writer); R: any,
	 * relaxed.  full: enqueue calls that could not take all they were
	 * given; batches: publications; corrupt: bad tails seen. */
	uint64_t full;
	uint64_t batches;
	uint64_t corrupt;
	/* Repair protocol, producer's side (slow paths only).  bad_gen: the
	 * generation this producer found corrupt (0: none); W: producer,
	 * release [RNG9]; R: supervisor, acquire [RNG10].  ack_gen: the
	 * generation it stopped using, after ack_pos (its private head);
	 * W: producer, ack_pos relaxed then ack_gen release [RNG11]; R:
	 * supervisor, acquire [RNG12] then ack_pos. */
	uint32_t bad_gen;
	uint32_t ack_gen;
	uint64_t ack_pos;
	uint64_t reserved[2];
} shm_aligned;

/* Lines 4-5: written only by the consumer (its own 128-byte pair, away
 * from the producer's line and from the adjacent-line prefetcher). */
struct shm_ring_cons_sh {
	/* Messages consumed so far.  W: consumer, release [RNG3] after the
	 * slots are copied out; R: producer, acquire [RNG4] before reusing
	 * slots.  Only grows. */
	uint64_t tail;
	/* Statistics.  W: consumer only, relaxed; R: any, relaxed.
	 * batches: non-empty dequeues; corrupt: bad heads seen. */
	uint64_t batches;
	uint64_t corrupt;
	/* Repair protocol, consumer's side: as the producer's (RNG9-12),
	 * ack_pos being the consumer's private tail. */
	uint32_t bad_gen;
	uint32_t ack_gen;
	uint64_t ack_pos;
	uint64_t reserved[3];
} shm_aligned;

struct shm_ring_sh {
	struct shm_ring_hdr_sh hdr;   /*   0 */
	struct shm_ring_prod_sh prod; /*  64 */
	struct shm_doorbell_sh db;    /* 128: the ring's own doorbell */
	uint8_t pad_db[SHM_CACHE_LINE];
	struct shm_ring_cons_sh cons; /* 256 */
	uint8_t pad_cons[SHM_CACHE_LINE];
	struct shm_msg slots[]; /* 384 */
} shm_aligned;
_Static_assert(offsetof(struct shm_ring_sh, prod) == 64, "ring layout");
_Static_assert(offsetof(struct shm_ring_sh, db) == 128, "ring layout");
_Static_assert(offsetof(struct shm_ring_sh, cons) == 256, "ring layout");
_Static_assert(offsetof(struct shm_ring_sh, slots) == 384, "ring layout");
_Static_assert(sizeof(struct shm_ring_sh) == 384, "ring header size");
_Static_assert(offsetof(struct shm_ring_sh, hdr.gen) == 32, "ring layout");
_Static_assert(offsetof(struct shm_ring_sh, prod.bad_gen) == 96, "ring layout");
_Static_assert(offsetof(struct shm_ring_sh, cons.bad_gen) == 280, "ring layout");

/* Which end of a ring a handle is (the repair protocol's calls). */
enum shm_ring_side { SHM_RING_PRODUCER = 0, SHM_RING_CONSUMER = 1 };

/* What the repair protocol asks of an end (shm_ring_repair_state). */
enum shm_ring_repair {
	SHM_RING_IN_USE = 0,  /* carry on */
	SHM_RING_QUIESCE = 1, /* stop using this generation: shm_ring_ack,
			       * then touch nothing until RESET */
	SHM_RING_RESET = 2,   /* a new generation: shm_ring_resume */
};

/* The last bad index a handle refused (for the caller's log line). */
enum shm_ring_bad {
	SHM_RING_BAD_NONE = 0,
	SHM_RING_BAD_AHEAD = 1,  /* the other index is too far ahead of ours */
	SHM_RING_BAD_BEHIND = 2, /* the other index is behind ours */
	SHM_RING_BAD_BACK = 3,   /* the other index went backwards */
	SHM_RING_BAD_PAIR = 4,   /* attach/resume: head and tail inconsistent */
};

/* Per-process handle (never in shared memory).  Producer fields are used
 * only by the producer, consumer fields only by the consumer. */
struct shm_ring {
	struct shm_ring_sh *sh;
	struct shm_msg *slots;
	struct shm_doorbell_sh *db; /* rung by the producer, slept on by
				     * the consumer */
	uint32_t capacity;          /* validated copy of hdr.capacity */
	uint32_t mask;
	uint32_t spin_ns; /* shm_ring_wait spin phase */
	uint32_t claimed; /* producer: slots claimed, unpublished */
	/* Producer: next message number to publish, and the last tail it
	 * read (free space is at least capacity - (head - tail_cache)). */
	uint64_t prod_head;
	uint64_t prod_tail_cache;
	/* Consumer: next message number to read, and the last head it read
	 * (at least head_cache - tail messages are ready). */
	uint64_t cons_tail;
	uint64_t cons_head_cache;
	/* The generation this handle works in (attach, resume). */
	uint32_t gen;
	/* The last refusal: what, the index read and our own (or cached)
	 * value it was checked against.  Written only by the handle's
	 * owner on the error path. */
	uint8_t bad_kind; /* enum shm_ring_bad */
	uint64_t bad_index, bad_ref;
};

struct shm_ring_stats {
	uint64_t head, tail; /* a consistent snapshot (see corrupt_now) */
	uint32_t capacity;
	uint32_t depth;   /* head - tail, clamped to capacity */
	bool corrupt_now; /* head/tail inconsistent (or never stable) */
	uint64_t full;    /* producer's enqueue calls that hit "full" */
	uint64_t enq_batches;
	uint64_t deq_batches;
	uint64_t corrupt; /* corruption detections, both sides */
	uint32_t gen;     /* generation: 1 + repairs */
	bool quiescing;   /* a repair is under way */
	bool reported;    /* an end reported this generation corrupt */
	struct shm_doorbell_stats db;
};

/* Bytes a ring of `capacity` slots occupies (a multiple of 128), or 0 when
 * capacity is not a power of two in [SHM_RING_CAPACITY_MIN, _MAX]. */
size_t shm_ring_bytes(uint32_t capacity);

/* Lays out an empty ring in mem (64-byte aligned, at least
 * shm_ring_bytes(capacity) bytes, nobody attached yet).  -EINVAL on a bad
 * capacity, alignment or size. */
int shm_ring_init(void *mem, size_t bytes, uint32_t capacity)
	__attribute__((warn_unused_result));

/*
 * Validates the ring at mem (at most `bytes` long) and fills the handle.
 * db: the doorbell the producer rings and the consumer sleeps on; NULL
 * means the ring's own.  Writes nothing to shared memory, so a read-only
 * mapping may be attached for shm_ring_stats.  Errors: -EINVAL (bad
 * arguments or alignment), SHMEX_EBADMAGIC, SHMEX_ETOOSHORT (bytes smaller
 * than the ring claims), SHMEX_EBADLAYOUT (capacity, mask, message size or
 * slot offset inconsistent), SHMEX_ERINGCORRUPT (head/tail inconsistent:
 * the handle is filled all the same, so that the caller can report the
 * ring and take part in its repair instead of giving up on it).
 */
int shm_ring_attach(struct shm_ring *r, void *mem, size_t bytes,
		    struct shm_doorbell_sh *db) __attribute__((warn_unused_result));

/*
 * Producer: copies up to n messages into the ring, publishes them with one
 * release store of head [RNG1] and rings the doorbell once.  *done gets how
 * many were taken (0..n; fewer than n means the ring is full: wait or
 * reject, nothing was dropped).  Returns 0, SHMEX_ERINGCORRUPT when the
 * consumer's tail is inconsistent (nothing written), or -EINVAL while a
 * claim is outstanding.
 */
int shm_ring_enqueue_batch(struct shm_ring *r, const struct shm_msg *msgs, unsigned n,
			   unsigned *done) __attribute__((warn_unused_result));

/*
 * Producer, zero-copy: claims up to n free slots that are contiguous in
 * memory (fewer at the wrap point or when nearly full; *got == 0 when
 * full) and points *slots at the first.  The caller fills them and calls
 * shm_ring_publish.  Only one claim at a time.  Errors as enqueue.
 */
int shm_ring_claim(struct shm_ring *r, unsigned n, struct shm_msg **slots, unsigned *got)
	__attribute__((warn_unused_result));

/* Producer: publishes the first `count` claimed slots (count <= *got of
 * the claim; the rest are released unpublished) and rings the doorbell
 * when count > 0. */
void shm_ring_publish(struct shm_ring *r, unsigned count);

/*
 * Consumer: copies up to max messages out into out[] and releases their
 * slots with one release store of tail [RNG3].  *got == 0 means empty.
 * Returns 0, or SHMEX_ERINGCORRUPT when head is inconsistent with the
 * consumer's tail or went backwards (nothing consumed; the bad head is
 * never followed).  The copies are what the caller validates.
 */
int shm_ring_dequeue_batch(struct shm_ring *r, struct shm_msg *out, unsigned max,
			   unsigned *got) __attribute__((warn_unused_result));

/*
 * Consumer, in two steps, for a consumer that must not lose a message by
 * dying after it took it (the FIX gateway: a reply is consumed only once
 * its outcome is recorded).  shm_ring_peek_batch copies up to max
 * messages from the tail as dequeue does [RNG2] but consumes nothing: a
 * second peek returns the same ones, and so does a new consumer that
 * attaches after this one died.  shm_ring_consume(r, n) then consumes the
 * first n of them (n <= what the last peek returned) with one release of
 * tail [RNG3].  Errors as shm_ring_dequeue_batch.
 */
int shm_ring_peek_batch(struct shm_ring *r, struct shm_msg *out, unsigned max,
			unsigned *got) __attribute__((warn_unused_result));
void shm_ring_consume(struct shm_ring *r, unsigned n);

/* Consumer: true when the producer published messages not consumed yet
 * (or head is corrupt, which the next dequeue reports).  Reads head
 * afresh; usable as a doorbell predicate. */
bool shm_ring_readable(const struct shm_ring *r);

/* Producer: messages enqueued through this handle's ring so far (the
 * position the next message will have).  Consumer: messages consumed so
 * far (the position of the next one).  Positions name a message for the
 * life of the ring: a restarted matcher tells a gateway "everything before
 * position T was taken by my predecessor" (docs/durability.md). */
static inline uint64_t shm_ring_produced(const struct shm_ring *r)
{
	return r->prod_head;
}

static inline uint64_t shm_ring_consumed(const struct shm_ring *r)
{
	return r->cons_tail;
}

/* Any thread or process, without touching the handle's private cursors
 * (e.g. a helper thread watching the ring for the consumer thread): true
 * when head differs from tail in shared memory, i.e. published messages
 * wait to be consumed.  Only a hint: it never makes slots readable (the
 * consumer's dequeue acquires head itself). */
bool shm_ring_pending(const struct shm_ring *r);

/*
 * Consumer with a single input ring: waits until it is readable, spinning
 * r->spin_ns first and then sleeping on r->db (see shm_doorbell_wait for
 * timeout_ms and results: 0, SHMEX_ETIMEDOUT, -EINTR).
 */
int shm_ring_wait(struct shm_ring *r, int timeout_ms) __attribute__((warn_unused_result));

/* Snapshot of the indexes (a consistent pair, acquired as at attach:
 * RNG2/RNG4) and of the counters (relaxed), from any side or a read-only
 * observer. */
void shm_ring_stats(const struct shm_ring *r, struct shm_ring_stats *st);

/* ---- Repair (slow paths only; docs/ring.md "Corruption and repair") ---- */

/* An end, after a call returned SHMEX_ERINGCORRUPT (or attach did): records
 * that the handle's generation is corrupt, for the supervisor [RNG9].  The
 * end then leaves the ring alone until shm_ring_repair_state says RESET. */
void shm_ring_report(struct shm_ring *r, enum shm_ring_side side);

/* An end: what the protocol asks of it now [RNG6, RNG8]. */
enum shm_ring_repair shm_ring_repair_state(const struct shm_ring *r);

/* An end asked to QUIESCE: publishes its private index and that it has
 * stopped using the generation [RNG11].  After this it neither enqueues
 * nor dequeues until RESET. */
void shm_ring_ack(struct shm_ring *r, enum shm_ring_side side);

/* An end told RESET: takes the new generation and re-reads head and tail
 * as at attach.  0, or SHMEX_ERINGCORRUPT (the new generation is already
 * inconsistent: report it again). */
int shm_ring_resume(struct shm_ring *r) __attribute__((warn_unused_result));

/* Writes one line about the handle's last refusal ("head 12345 is 70000
 * ahead of tail 1 (capacity 1024)"), from the side's point of view. */
void shm_ring_describe(const struct shm_ring *r, enum shm_ring_side side, char *buf,
		       size_t len);

/* Supervisor: true when an end reported the current generation corrupt
 * [RNG10], or the indexes are inconsistent now. */
bool shm_ring_reported(const struct shm_ring *r);

/* Supervisor: asks both ends to stop using the current generation
 * [RNG7].  Idempotent. */
void shm_ring_request_quiesce(struct shm_ring *r);

/* Supervisor: true when that end acknowledged the quiesce [RNG12]. */
bool shm_ring_acked(const struct shm_ring *r, enum shm_ring_side side);

/*
 * Supervisor, once every live end acknowledged (an end that is not
 * attached cannot use the ring; one that attaches during the quiesce sees
 * it and acknowledges): head = tail = the largest acknowledged index of
 * the ends named live (or the current tail when none), then a new
 * generation [RNG5].  Positions stay increasing across generations, so a
 * position names one message for the life of the ring.  Returns the new
 * generation; *base gets where it starts.
 */
uint32_t shm_ring_reset(struct shm_ring *r, bool prod_acked, bool cons_acked,
			uint64_t *base);

#endif

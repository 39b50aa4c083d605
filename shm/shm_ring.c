/*
 * shm_ring: the SPSC message ring between gateways and matchers (see
 * shm_ring.h for the layout and the contract).
 *
 * Why this shape (Lamport's ring as DPDK and Aeron refine it):
 *  - head and tail live on lines of their own, each in its own 128-byte
 *    pair, so the producer's stores never invalidate the consumer's line
 *    and vice versa (Intel's adjacent-line prefetcher moves lines in pairs).
 *  - each side keeps a private copy of the other side's index and reads the
 *    shared one only when its copy says "full" (producer) or "not enough"
 *    (consumer), so the common case touches only lines the caller owns plus
 *    the slots.
 *  - a batch costs one release store of the index, one full fence and one
 *    load of the doorbell's `sleeping` flag; a system call happens only when
 *    the consumer sleeps (shm_doorbell.c).
 *  - slots are copied with memcpy in at most two runs (before and after the
 *    wrap point).
 *
 * Invariants, for well-behaved peers: cons_tail <= head, prod_head - tail
 * <= capacity, both indexes only grow.  Each side checks the other's index
 * against these before using it and reports SHMEX_ERINGCORRUPT instead of
 * following a bad one.  The handle's capacity and mask were validated at
 * attach and are never re-read from shared memory.
 *
 * Repair.  A bad index is never followed, and after a report the ring is
 * not used again in that generation; the supervisor resets it with both
 * ends (shm_ring.h, docs/ring.md): each end acknowledges the quiesce with
 * its private index, head and tail are set to the larger of those, and the
 * new generation is released last [RNG5], so an end that acquires it
 * [RNG6] reads the reset indexes.  Nothing here runs on the fast path.
 *
 * Limits: a hostile producer can still scribble on slots the consumer is
 * copying (the copy may be torn); that is why the consumer validates every
 * field of the copy, not of the slot.  A stray writer that advances head
 * by fewer messages than the real producer later publishes is not
 * detected by the indexes (the consumer takes stale slots, whose copies
 * are validated like any message); only one that leaves the indexes
 * inconsistent is.
 */
#include "shm/shm_ring.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "shm/shm_error.h"

_Static_assert(sizeof(struct shm_msg) == SHM_CACHE_LINE, "slot = one line");

static bool capacity_ok(uint32_t cap)
{
	return cap >= SHM_RING_CAPACITY_MIN && cap <= SHM_RING_CAPACITY_MAX &&
	       (cap & (cap - 1)) == 0;
}

size_t shm_ring_bytes(uint32_t capacity)
{
	if (!capacity_ok(capacity))
		return 0;
	/* 384 + 64 * capacity, capacity >= 2: a multiple of 128. */
	return sizeof(struct shm_ring_sh) + (size_t)capacity * sizeof(struct shm_msg);
}

int shm_ring_init(void *mem, size_t bytes, uint32_t capacity)
{
	size_t need = shm_ring_bytes(capacity);
	if (!mem || need == 0 || bytes < need || ((uintptr_t)mem & (SHM_CACHE_LINE - 1)))
		return -EINVAL;
	struct shm_ring_sh *sh = mem;
	memset(sh, 0, sizeof(*sh));
	sh->hdr.magic = SHM_RING_MAGIC;
	sh->hdr.capacity = capacity;
	sh->hdr.mask = capacity - 1;
	sh->hdr.msg_size = sizeof(struct shm_msg);
	sh->hdr.slots_offset = (uint32_t)offsetof(struct shm_ring_sh, slots);
	sh->hdr.bytes = need;
	sh->hdr.gen = 1;
	shm_doorbell_init(&sh->db);
	/* The slots need no initialisation: none is readable until head
	 * passes it.  Publication of all of this to other processes is the
	 * enclosing region's R0. */
	return 0;
}

/*
 * Reads a consistent (head, tail) pair even while both peers run: tail,
 * head, tail again; when tail did not move, the head read in between was
 * within [tail, tail + capacity] for a well-behaved pair.  False when the
 * pair is inconsistent (or tail kept moving for every try); *head and
 * *tail then hold the last values read.
 */
static bool read_indexes(const struct shm_ring_sh *sh, uint32_t capacity, uint64_t *head,
			 uint64_t *tail)
{
	*head = *tail = 0;
	for (int i = 0; i < 100; i++) {
		/* RNG4/RNG2 (attach): acquire both indexes so that the
		 * slots after tail and before head are seen as their owners
		 * left them; pair with RNG3 and RNG1. */
		uint64_t t = load_acquire(&sh->cons.tail);
		uint64_t h = load_acquire(&sh->prod.head);
		*head = h;
		*tail = t;
		/* RNG4 again: the re-read that proves t was current. */
		if (load_acquire(&sh->cons.tail) != t)
			continue;
		return h - t <= capacity;
	}
	return false;
}

int shm_ring_attach(struct shm_ring *r, void *mem, size_t bytes,
		    struct shm_doorbell_sh *db)
{
	if (!r || !mem || ((uintptr_t)mem & (SHM_CACHE_LINE - 1)))
		return -EINVAL;
	memset(r, 0, sizeof(*r));
	if (bytes < sizeof(struct shm_ring_sh))
		return SHMEX_ETOOSHORT;
	struct shm_ring_sh *sh = mem;
	/* Plain loads: the header is immutable and was published by the
	 * enclosing region's R0, which our caller acquired (A0). */
	struct shm_ring_hdr_sh hdr = sh->hdr;
	if (hdr.magic != SHM_RING_MAGIC)
		return SHMEX_EBADMAGIC;
	if (!capacity_ok(hdr.capacity) || hdr.mask != hdr.capacity - 1 ||
	    hdr.msg_size != sizeof(struct shm_msg) ||
	    hdr.slots_offset != offsetof(struct shm_ring_sh, slots) ||
	    hdr.bytes != shm_ring_bytes(hdr.capacity))
		return SHMEX_EBADLAYOUT;
	if (hdr.bytes > bytes)
		return SHMEX_ETOOSHORT;

	/* RNG6: acquire the generation before the indexes it covers; pairs
	 * with a reset's RNG5. */
	uint32_t gen = load_acquire(&sh->hdr.gen);
	uint64_t head, tail;
	bool ok = read_indexes(sh, hdr.capacity, &head, &tail);

	r->gen = gen;
	r->sh = sh;
	r->slots = sh->slots;
	r->db = db ? db : &sh->db;
	r->capacity = hdr.capacity;
	r->mask = hdr.mask;
	r->spin_ns = SHM_DOORBELL_SPIN_NS_DEFAULT;
	r->prod_head = head;
	r->prod_tail_cache = tail;
	r->cons_tail = tail;
	r->cons_head_cache = head;
	if (!ok) {
		r->bad_kind = SHM_RING_BAD_PAIR;
		r->bad_index = head;
		r->bad_ref = tail;
		return SHMEX_ERINGCORRUPT;
	}
	return 0;
}

/* Records a refusal in the handle (error path only). */
static void note_bad(struct shm_ring *r, enum shm_ring_bad kind, uint64_t index,
		     uint64_t ref)
{
	r->bad_kind = (uint8_t)kind;
	r->bad_index = index;
	r->bad_ref = ref;
}

/* Relaxed increment of a counter that only the caller's side writes. */
static inline void stat_inc(uint64_t *c)
{
	store_relaxed(c, load_relaxed(c) + 1);
}

/* Producer: free slots, refreshing the cached tail when fewer than `want`
 * seem free.  Returns the count, or SHMEX_ERINGCORRUPT (as a negative
 * int64) when the shared tail is inconsistent. */
static int64_t prod_free(struct shm_ring *r, unsigned want)
{
	uint64_t room = r->capacity - (r->prod_head - r->prod_tail_cache);
	if (room >= want)
		return (int64_t)room;
	/* RNG4: the consumer copied slots [old tail, t) out before its
	 * release (RNG3); after this acquire we may overwrite them. */
	uint64_t t = load_acquire(&r->sh->cons.tail);
	if (r->prod_head - t > r->capacity || (int64_t)(t - r->prod_tail_cache) < 0) {
		if ((int64_t)(t - r->prod_tail_cache) < 0)
			note_bad(r, SHM_RING_BAD_BACK, t, r->prod_tail_cache);
		else if ((int64_t)(r->prod_head - t) < 0)
			note_bad(r, SHM_RING_BAD_AHEAD, t, r->prod_head);
		else
			note_bad(r, SHM_RING_BAD_BEHIND, t, r->prod_head);
		stat_inc(&r->sh->prod.corrupt);
		return SHMEX_ERINGCORRUPT;
	}
	r->prod_tail_cache = t;
	return (int64_t)(r->capacity - (r->prod_head - t));
}

static void prod_publish(struct shm_ring *r, unsigned k)
{
	r->prod_head += k;
	/* RNG1: publishes the k slots written before it; pairs with RNG2
	 * in the consumer (and with the attach of a later producer). */
	store_release(&r->sh->prod.head, r->prod_head);
	stat_inc(&r->sh->prod.batches);
	/* DB4 inside: fence, then wake only a sleeping consumer. */
	shm_doorbell_ring(r->db);
}

int shm_ring_enqueue_batch(struct shm_ring *r, const struct shm_msg *msgs, unsigned n,
			   unsigned *done)
{
	*done = 0;
	if (r->claimed)
		return -EINVAL;
	if (n == 0)
		return 0;
	int64_t room = prod_free(r, n);
	if (room < 0)
		return (int)room;
	unsigned k = (uint64_t)room < n ? (unsigned)room : n;
	if (k < n)
		stat_inc(&r->sh->prod.full);
	if (k == 0)
		return 0;
	uint32_t idx = (uint32_t)r->prod_head & r->mask;
	unsigned first = r->capacity - idx;
	if (first > k)
		first = k;
	memcpy(&r->slots[idx], msgs, (size_t)first * sizeof(*msgs));
	if (k > first)
		memcpy(&r->slots[0], msgs + first, (size_t)(k - first) * sizeof(*msgs));
	prod_publish(r, k);
	*done = k;
	return 0;
}

int shm_ring_claim(struct shm_ring *r, unsigned n, struct shm_msg **slots, unsigned *got)
{
	*got = 0;
	*slots = NULL;
	if (r->claimed)
		return -EINVAL;
	if (n == 0)
		return 0;
	int64_t room = prod_free(r, n);
	if (room < 0)
		return (int)room;
	unsigned k = (uint64_t)room < n ? (unsigned)room : n;
	if (k < n)
		stat_inc(&r->sh->prod.full);
	uint32_t idx = (uint32_t)r->prod_head & r->mask;
	if (k > r->capacity - idx)
		k = r->capacity - idx; /* contiguous run only */
	if (k == 0)
		return 0;
	r->claimed = k;
	*slots = &r->slots[idx];
	*got = k;
	return 0;
}

void shm_ring_publish(struct shm_ring *r, unsigned count)
{
	if (count > r->claimed)
		count = r->claimed;
	r->claimed = 0;
	if (count)
		prod_publish(r, count);
}

/* Copies up to max published messages from the consumer's tail into
 * out, without releasing them: the one copy both dequeue and peek use. */
static inline int cons_copy(struct shm_ring *r, struct shm_msg *out, unsigned max,
			    unsigned *got)
{
	*got = 0;
	if (max == 0)
		return 0;
	uint64_t avail = r->cons_head_cache - r->cons_tail;
	if (avail < max) {
		/* RNG2: the producer wrote slots [tail, h) before its
		 * release (RNG1); after this acquire we may read them. */
		uint64_t h = load_acquire(&r->sh->prod.head);
		if (h - r->cons_tail > r->capacity ||
		    (int64_t)(h - r->cons_head_cache) < 0) {
			if ((int64_t)(h - r->cons_head_cache) < 0)
				note_bad(r, SHM_RING_BAD_BACK, h, r->cons_head_cache);
			else if ((int64_t)(h - r->cons_tail) < 0)
				note_bad(r, SHM_RING_BAD_BEHIND, h, r->cons_tail);
			else
				note_bad(r, SHM_RING_BAD_AHEAD, h, r->cons_tail);
			stat_inc(&r->sh->cons.corrupt);
			return SHMEX_ERINGCORRUPT;
		}
		r->cons_head_cache = h;
		avail = h - r->cons_tail;
	}
	if (avail == 0)
		return 0;
	unsigned k = avail < max ? (unsigned)avail : max;
	uint32_t idx = (uint32_t)r->cons_tail & r->mask;
	unsigned first = r->capacity - idx;
	if (first > k)
		first = k;
	memcpy(out, &r->slots[idx], (size_t)first * sizeof(*out));
	if (k > first)
		memcpy(out + first, &r->slots[0], (size_t)(k - first) * sizeof(*out));
	*got = k;
	return 0;
}

int shm_ring_peek_batch(struct shm_ring *r, struct shm_msg *out, unsigned max,
			unsigned *got)
{
	return cons_copy(r, out, max, got);
}

void shm_ring_consume(struct shm_ring *r, unsigned n)
{
	if (n == 0)
		return;
	/* Never past what the last peek saw published. */
	uint64_t avail = r->cons_head_cache - r->cons_tail;
	if (n > avail)
		n = (unsigned)avail;
	r->cons_tail += n;
	/* RNG3: our copies of the n slots are complete before the producer
	 * can see them free; pairs with RNG4. */
	store_release(&r->sh->cons.tail, r->cons_tail);
	stat_inc(&r->sh->cons.batches);
}

int shm_ring_dequeue_batch(struct shm_ring *r, struct shm_msg *out, unsigned max,
			   unsigned *got)
{
	int rc = cons_copy(r, out, max, got);
	if (rc == 0 && *got)
		shm_ring_consume(r, *got);
	return rc;
}

bool shm_ring_readable(const struct shm_ring *r)
{
	/* RNG2 (predicate): acquire so that a true answer also makes the
	 * slots visible; the dequeue re-reads head anyway. */
	return r->cons_head_cache != r->cons_tail ||
	       load_acquire(&r->sh->prod.head) != r->cons_tail;
}

bool shm_ring_pending(const struct shm_ring *r)
{
	/* RNG2/RNG4 (watcher): acquire loads of both shared indexes; only
	 * compared, never used to read a slot, so a stale pair costs one
	 * extra wake-up or one extra look, never a wrong message.  Called
	 * inside a doorbell predicate, after the doorbell's DB2 fence. */
	return load_acquire(&r->sh->prod.head) != load_acquire(&r->sh->cons.tail);
}

static bool ring_ready(void *arg)
{
	return shm_ring_readable(arg);
}

int shm_ring_wait(struct shm_ring *r, int timeout_ms)
{
	return shm_doorbell_wait(r->db, ring_ready, r, r->spin_ns, timeout_ms);
}

void shm_ring_stats(const struct shm_ring *r, struct shm_ring_stats *st)
{
	const struct shm_ring_sh *sh = r->sh;
	memset(st, 0, sizeof(*st));
	st->corrupt_now = !read_indexes(sh, r->capacity, &st->head, &st->tail);
	st->capacity = r->capacity;
	uint64_t d = st->head - st->tail;
	st->depth = d > r->capacity ? r->capacity : (uint32_t)d;
	/* Relaxed: counters for humans, no ordering needed. */
	st->full = load_relaxed(&sh->prod.full);
	st->enq_batches = load_relaxed(&sh->prod.batches);
	st->deq_batches = load_relaxed(&sh->cons.batches);
	st->corrupt = load_relaxed(&sh->prod.corrupt) + load_relaxed(&sh->cons.corrupt);
	/* RNG6/RNG8/RNG10 (observer): acquire, for a consistent story in
	 * the tools; nothing is read through them. */
	st->gen = load_acquire(&sh->hdr.gen);
	st->quiescing = load_acquire(&sh->hdr.quiesce) == st->gen;
	st->reported = load_acquire(&sh->prod.bad_gen) == st->gen ||
		       load_acquire(&sh->cons.bad_gen) == st->gen;
	shm_doorbell_stats(r->db, &st->db);
}

/* ---- repair ---- */

void shm_ring_report(struct shm_ring *r, enum shm_ring_side side)
{
	uint32_t *bad =
		side == SHM_RING_PRODUCER ? &r->sh->prod.bad_gen : &r->sh->cons.bad_gen;
	/* RNG9: release; pairs with the supervisor's RNG10.  Only the
	 * generation is published: the supervisor re-reads what it needs. */
	if (load_relaxed(bad) != r->gen)
		store_release(bad, r->gen);
}

enum shm_ring_repair shm_ring_repair_state(const struct shm_ring *r)
{
	/* RNG6: a new generation (pairs with RNG5) comes with its reset
	 * indexes, which shm_ring_resume reads. */
	uint32_t gen = load_acquire(&r->sh->hdr.gen);
	if (gen != r->gen)
		return SHM_RING_RESET;
	/* RNG8: pairs with RNG7. */
	return load_acquire(&r->sh->hdr.quiesce) == gen ? SHM_RING_QUIESCE
							: SHM_RING_IN_USE;
}

void shm_ring_ack(struct shm_ring *r, enum shm_ring_side side)
{
	bool prod = side == SHM_RING_PRODUCER;
	uint64_t *pos = prod ? &r->sh->prod.ack_pos : &r->sh->cons.ack_pos;
	uint32_t *ack = prod ? &r->sh->prod.ack_gen : &r->sh->cons.ack_gen;
	/* Relaxed, published by the release below. */
	store_relaxed(pos, prod ? r->prod_head : r->cons_tail);
	/* RNG11: release after ack_pos and after every store this end made
	 * to the ring; pairs with the supervisor's RNG12. */
	store_release(ack, r->gen);
}

int shm_ring_resume(struct shm_ring *r)
{
	/* RNG6: pairs with the reset's RNG5: the indexes read below are the
	 * reset ones (or later). */
	uint32_t gen = load_acquire(&r->sh->hdr.gen);
	uint64_t head, tail;
	bool ok = read_indexes(r->sh, r->capacity, &head, &tail);
	r->gen = gen;
	r->claimed = 0;
	r->prod_head = head;
	r->prod_tail_cache = tail;
	r->cons_tail = tail;
	r->cons_head_cache = head;
	if (!ok) {
		note_bad(r, SHM_RING_BAD_PAIR, head, tail);
		return SHMEX_ERINGCORRUPT;
	}
	r->bad_kind = SHM_RING_BAD_NONE;
	return 0;
}

void shm_ring_describe(const struct shm_ring *r, enum shm_ring_side side, char *buf,
		       size_t len)
{
	/* The producer checks tail against its head, the consumer head
	 * against its tail. */
	const char *other = side == SHM_RING_PRODUCER ? "tail" : "head";
	const char *own = side == SHM_RING_PRODUCER ? "head" : "tail";
	unsigned long long i = r->bad_index, ref = r->bad_ref;
	switch (r->bad_kind) {
	case SHM_RING_BAD_AHEAD:
		snprintf(buf, len, "%s %llu is %llu ahead of %s %llu (capacity %u)",
			 other, i, i - ref, own, ref, r->capacity);
		break;
	case SHM_RING_BAD_BEHIND:
		snprintf(buf, len, "%s %llu is %llu behind %s %llu", other, i, ref - i,
			 own, ref);
		break;
	case SHM_RING_BAD_BACK:
		snprintf(buf, len, "%s went back from %llu to %llu", other, ref, i);
		break;
	case SHM_RING_BAD_PAIR: /* i = head, ref = tail */
		if ((int64_t)(i - ref) < 0)
			snprintf(buf, len, "head %llu is %llu behind tail %llu", i,
				 ref - i, ref);
		else
			snprintf(buf, len,
				 "head %llu is %llu ahead of tail %llu (capacity %u)", i,
				 i - ref, ref, r->capacity);
		break;
	default:
		snprintf(buf, len, "indexes inconsistent");
		break;
	}
}

bool shm_ring_reported(const struct shm_ring *r)
{
	const struct shm_ring_sh *sh = r->sh;
	uint32_t gen = load_relaxed(&sh->hdr.gen); /* our own store */
	uint64_t h, t;
	/* RNG10: acquire; pairs with an end's RNG9. */
	return load_acquire(&sh->prod.bad_gen) == gen ||
	       load_acquire(&sh->cons.bad_gen) == gen ||
	       !read_indexes(sh, r->capacity, &h, &t);
}

void shm_ring_request_quiesce(struct shm_ring *r)
{
	uint32_t gen = load_relaxed(&r->sh->hdr.gen); /* our own store */
	/* RNG7: release; pairs with the ends' RNG8. */
	if (load_relaxed(&r->sh->hdr.quiesce) != gen)
		store_release(&r->sh->hdr.quiesce, gen);
}

bool shm_ring_acked(const struct shm_ring *r, enum shm_ring_side side)
{
	const uint32_t *ack =
		side == SHM_RING_PRODUCER ? &r->sh->prod.ack_gen : &r->sh->cons.ack_gen;
	/* RNG12: acquire; pairs with the end's RNG11 (ack_pos is read
	 * after it, in shm_ring_reset). */
	return load_acquire(ack) == load_relaxed(&r->sh->hdr.gen);
}

uint32_t shm_ring_reset(struct shm_ring *r, bool prod_acked, bool cons_acked,
			uint64_t *base)
{
	struct shm_ring_sh *sh = r->sh;
	uint64_t b = 0;
	bool any = false;
	/* Relaxed: ordered after RNG12 of shm_ring_acked by the caller's
	 * acquire; ack_pos is written before the end's RNG11. */
	if (prod_acked) {
		b = load_relaxed(&sh->prod.ack_pos);
		any = true;
	}
	if (cons_acked) {
		uint64_t c = load_relaxed(&sh->cons.ack_pos);
		b = !any || c > b ? c : b;
		any = true;
	}
	if (!any)
		b = load_relaxed(&sh->cons.tail);
	/* Relaxed: published by RNG5.  Nobody uses the ring now: every live
	 * end acknowledged the quiesce, and an end that attaches meanwhile
	 * waits for the new generation. */
	store_relaxed(&sh->cons.tail, b);
	store_relaxed(&sh->prod.head, b);
	uint32_t gen = load_relaxed(&sh->hdr.gen) + 1;
	if (gen == 0)
		gen = 1; /* 0 means "none" in bad_gen and ack_gen */
	/* RNG5: release after head and tail; pairs with the ends' RNG6. */
	store_release(&sh->hdr.gen, gen);
	/* The shared doorbell wakes a consumer asleep on this ring. */
	shm_doorbell_ring(r->db);
	*base = b;
	return gen;
}

/*
 * shm_rcu_inline: the read-side fast path of shm_rcu, inline for
 * callers that enter and leave on every query (gateways, the read API).
 * Same contract as shm_rcu_enter / shm_rcu_leave in shm_rcu.h,
 * which are out-of-line copies of these (liburcu splits urcu/x.h and
 * urcu/static/x.h the same way).
 *
 * Two paths, chosen per registration at shm_rcu_register (r->asym):
 *
 * Fence path (fence-mode tables; any reader may use it).  Enter is one
 * acquire load of the global epoch (a plain load on x86-64), one CAS on
 * the reader's own cache line and two loads of that line; leave is one CAS
 * and two loads.  The CASes are liburcu's uatomic_cmpxchg, documented to
 * imply a full memory barrier before and after, which is exactly the
 * store-then-full-fence the protocol needs (on x86-64 a lock cmpxchg, no
 * separate mfence).  A CAS instead of a plain store lets a reader whose
 * slot was taken from it notice instead of overwriting a slot that may
 * already belong to someone else.
 *
 * Asymmetric path (asymmetric tables, process registered for membarrier).
 * Enter: two loads of the own line (is the slot still ours?), an acquire
 * load of the epoch, a release store of the section word and a compiler
 * barrier; leave: an acquire fence (free on x86-64), the same two loads, a
 * release store.  No locked instruction and no fence instruction: the
 * writer's membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) runs the full
 * barrier on this thread's CPU when the writer needs it [RD15].  The
 * compiler barrier is essential: the membarrier acts at an instruction
 * boundary, so the store must precede the section's loads in the machine
 * code.  A reader that lost its slot checks before every store, so it does
 * not write over the slot's next owner; should it lose the slot between
 * its check and its store (a window of a few instructions), its stale word
 * carries its own, older generation and the writer's scan treats a word of
 * another generation as "hold everything" until the owner rewrites it.
 */
#ifndef SHMEX_SHM_RCU_INLINE_H
#define SHMEX_SHM_RCU_INLINE_H

#include <errno.h>

#include <urcu/compiler.h>
#include <urcu/uatomic.h>

#include "shm/shm_error.h"
#include "shm/shm_rcu.h"

/* True while the slot is still ours: owner and generation unchanged. */
static inline bool shm_rcu_slot_ours_(const struct shm_rcu_reader *r)
{
	/* RD6: acquire load of the owner; pairs with RD11 (reaper's release
	 * CAS, preceded by its generation bump RD10) so that a slot freed
	 * and re-claimed with the same owner word (a sibling thread) still
	 * shows the bumped generation below. */
	if (load_acquire(&r->slot->owner) != r->ident)
		return false;
	/* Relaxed: ordered after RD6. */
	return load_relaxed(&r->slot->gen) == r->gen;
}

/* Reads the global epoch for a new outermost section. */
static inline uint64_t shm_rcu_read_epoch_(const struct shm_rcu_reader *r)
{
	/* RD1: acquire load of the global epoch; pairs with RD3.  Reading
	 * epoch E + 1 makes every unlink the writer did before advancing
	 * visible, so this section cannot reach nodes retired with tag E. */
	uint64_t e = load_acquire(r->gp);
	/* A corrupted epoch (0 would read as "idle", too large would not fit
	 * the section word): claim the oldest epoch instead, which only
	 * delays reuse. */
	if (caa_unlikely(e - 1 >= SHM_RCU_EPOCH_MAX))
		e = 1;
	return e;
}

static inline __attribute__((warn_unused_result)) int shm_rcu_enter_inline(
	struct shm_rcu_reader *r)
{
	if (r->nesting > 0) {
		r->nesting++;
		/* Relaxed: display only. */
		store_relaxed(&r->slot->nesting, r->nesting);
		return 0;
	}
	if (caa_unlikely(r->lost))
		return SHMEX_ESLOTLOST;
	if (caa_likely(r->asym)) {
		/* Never write a slot that is no longer ours (RD6). */
		if (caa_unlikely(!shm_rcu_slot_ours_(r)))
			goto lost;
		uint64_t e = shm_rcu_read_epoch_(r);
		/* RD13: release store of the section word, then a compiler
		 * barrier only; pairs with RD15 (the writer's membarrier
		 * puts a full barrier between this store and this section's
		 * loads, or before both) and RD8.  Release: a scan that
		 * reads this word also sees the previous section's loads as
		 * done (they precede RD14 and this store). */
		store_release(&r->slot->section, r->idle | e);
		fence_compiler();
		r->epoch = e;
		r->nesting = 1;
		store_relaxed(&r->slot->nesting, 1u); /* display only */
		return 0;
	}
	uint64_t e = shm_rcu_read_epoch_(r);
	uint64_t busy = r->idle | e;
	/* RD2: section word idle -> busy, full barrier before and after
	 * (liburcu); pairs with RD4: either the writer's scan sees e, or
	 * this section's loads see the writer's unlinks. */
	if (caa_unlikely(uatomic_cmpxchg(&r->slot->section, r->idle, busy) != r->idle))
		goto lost;
	if (caa_unlikely(!shm_rcu_slot_ours_(r))) {
		/* Taken from us, not yet re-claimed: undo our mark. */
		(void)uatomic_cmpxchg(&r->slot->section, busy, r->idle);
		goto lost;
	}
	r->epoch = e;
	r->nesting = 1;
	store_relaxed(&r->slot->nesting, 1u); /* display only */
	return 0;
lost:
	r->lost = true;
	return SHMEX_ESLOTLOST;
}

static inline __attribute__((warn_unused_result)) int shm_rcu_leave_inline(
	struct shm_rcu_reader *r)
{
	if (r->nesting > 1) {
		r->nesting--;
		store_relaxed(&r->slot->nesting, r->nesting); /* display only */
		return 0;
	}
	if (caa_unlikely(r->nesting == 0))
		return -EINVAL;
	r->nesting = 0;
	if (caa_likely(r->asym)) {
		/* RD14: acquire fence, ownership check (RD6), release store
		 * of the idle word.  The fence orders the section's loads
		 * before the check: if one of them read a node the writer
		 * reused after a reaper freed our slot, the reaper's RD11 is
		 * visible to the check (writer's RD8a acquire, BK3 release
		 * fence before the reuse), so a passed check means nothing
		 * read here was reused.  The release store pairs with RD8:
		 * a scan that reads idle sees all of this section's loads
		 * done.  A lost reader does not touch the word. */
		fence_acquire();
		if (caa_unlikely(!shm_rcu_slot_ours_(r))) {
			r->lost = true;
			return SHMEX_ESLOTLOST;
		}
		store_release(&r->slot->section, r->idle);
		store_relaxed(&r->slot->nesting, 0u); /* display only */
		return 0;
	}
	store_relaxed(&r->slot->nesting, 0u); /* display only */
	uint64_t busy = r->idle | r->epoch;
	/* RD7: section word busy -> idle, full barrier (liburcu): every load
	 * of the section is ordered before it; pairs with RD8 (writer's
	 * acquire load of the section word).  It fails when the slot was
	 * re-claimed: the new owner's word carries another generation. */
	bool ok = uatomic_cmpxchg(&r->slot->section, busy, r->idle) == busy;
	if (caa_unlikely(!ok || !shm_rcu_slot_ours_(r))) {
		r->lost = true;
		return SHMEX_ESLOTLOST;
	}
	return 0;
}

#endif

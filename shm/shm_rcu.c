/*
 * shm_rcu: the cross-process RCU reader table (contract in
 * shm_rcu.h; protocol and proof sketch in docs/concurrency.md, "Reader
 * protocol").
 *
 * Why this shape.  An LMDB-style table of cache-line slots in a region of
 * its own, because readers must write their slot while the book region is
 * read-only for them.  The owner (pid and start time packed into one word)
 * is claimed and freed with CAS, so claiming needs no lock that a dying
 * process could leave held.  Two fence protocols share the layout:
 *  - fence mode: the section word (generation | epoch) changes only by CAS
 *    from a value the changer expects, so a reader that lost its slot
 *    cannot overwrite the section of the slot's new owner, even one that
 *    read the same epoch; liburcu's uatomic_cmpxchg provides the full
 *    barrier the Dekker-style handshake needs in the same instruction;
 *  - asymmetric mode: readers store their section word with plain release
 *    stores and a compiler barrier; the writer supplies the other half of
 *    the Dekker handshake for every reader at once with
 *    membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED), rate-limited to one call
 *    per barrier interval, and remembers up to which epoch the last call
 *    covers (t->covered).  Nodes retired after it wait for the next call,
 *    so the syscall is amortised over every advance of the interval.
 * The creator picks the mode and records it in the header; readers and a
 * restarted writer follow it.  A fence-path reader is correct in either
 * table (its own full barriers pair with the writer's RD4 fence).
 *
 * Invariants.
 *  - The global epoch only grows; the writer keeps its own copy and never
 *    reads the shared one back after attach.
 *  - A slot with owner 0 is ignored by the scan; a claimed slot whose
 *    section epoch is 0 is idle; one with epoch e > 0 holds back reuse of
 *    every node retired with a tag >= e; one whose section word carries
 *    another generation than the slot holds back everything.
 *  - Asymmetric mode: covered <= epoch; every node with tag < covered was
 *    unlinked before a membarrier that followed a scan in which the
 *    readers then holding slots were registered for membarrier (or before
 *    a fenced scan that found no claimed slot at all).
 *  - Only the writer handle scans and advances; reaping may happen in any
 *    read-write process.  A claim ends (unregister or reap) with exactly
 *    one gen CAS g -> g + 1, then CAS owner -> 0, so the generation names
 *    one claim.
 *  - Everything read from the region is a number whose range is checked or
 *    is harmless: the slot count and the mode are validated once at attach
 *    and kept in the handle; epochs out of range count as the oldest;
 *    owners are only compared and passed to /proc lookups.
 *
 * Limits.  Liveness comes from /proc: a reader in another pid namespace, or
 * hidden by hidepid, looks dead and loses its slot (it is told so by
 * SHMEX_ESLOTLOST).  The writer's liveness pass reads /proc only for slots
 * that stayed in the same section since the previous pass, slots holding a
 * word of another generation, plus one idle slot per pass (round robin), so
 * its cost is bounded per interval.  A membarrier call interrupts every CPU
 * that runs a registered reader (0.2-2 us, more on a busy virtual machine);
 * at the default 1 ms interval that is at most 0.2% of the writer's time.
 */
#include "shm/shm_rcu.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <linux/membarrier.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "shm/shm_error.h"
#include "shm/shm_proc.h"
#include "shm/shm_rcu_inline.h"
#include "shm/shm_clock.h"

/* Bounds of the barrier rate limit: (burst - 1) * interval + now stays
 * far below 2^64. */
#define BARRIER_MAX_NS (UINT64_C(1) << 42) /* 73 minutes */
#define BARRIER_MAX_BURST 1024u

static void guard_install(void);

/* True when descriptor fd is the object mapped at base: same size as
 * written in its header (a cheap identity check: the creator's pid and
 * start time are in the header we compare). */
static bool same_object(int fd, const void *base)
{
	struct shm_region_hdr_sh h;
	if (pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h))
		return false;
	return memcmp(&h, base, offsetof(struct shm_region_hdr_sh, state)) == 0;
}

/* What the writer saw of a slot at the previous liveness pass. */
struct shm_rcu_seen {
	uint64_t owner;
	uint64_t word;
	uint32_t gen;
	uint64_t since_ns; /* first pass that saw exactly this */
};

/* A reader slot's or the writer's owner word (shm_proc_ident); a zombie
 * is dead (shm_proc_alive), so a process that died inside a read-side
 * section and was not reaped yet does not pin reclamation. */
static bool owner_alive(uint64_t ident)
{
	return shm_proc_ident_alive(ident);
}

/* --- membarrier --------------------------------------------------------- */

static long sys_membarrier(int cmd)
{
	return syscall(__NR_membarrier, cmd, 0u, 0);
}

bool shm_rcu_asym_supported(void)
{
	/* 0: not asked yet, 1: supported, -1: not.  Relaxed: every thread
	 * that races here computes the same answer. */
	static int cached;
	int c = load_relaxed(&cached);
	if (c == 0) {
		const long need = MEMBARRIER_CMD_GLOBAL_EXPEDITED |
				  MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED;
		long q = sys_membarrier(MEMBARRIER_CMD_QUERY);
		c = q >= 0 && (q & need) == need ? 1 : -1;
		store_relaxed(&cached, c);
	}
	return c > 0;
}

/* SHMEX_READERS_FENCE set to anything but "" or "0". */
static bool env_wants_fence(void)
{
	const char *v = getenv(SHM_RCU_FENCE_ENV);
	return v && *v && strcmp(v, "0") != 0;
}

static bool word_gen_matches(uint64_t word, uint32_t gen)
{
	return (word >> SHM_RCU_GEN_SHIFT) == (gen & 0xfffu);
}

/* Takes hdr->writer for this process: SHMEX_EINUSE while another live
 * process holds it. */
static int writer_claim(struct shm_rcu *t)
{
	uint64_t me = shm_proc_self_ident();
	if (!me)
		return -EOVERFLOW;
	/* RD12: acq_rel CAS on the advisory writer word; pairs with the
	 * release of RD12 in writer_release (a restarted matcher sees the
	 * old one gone). */
	uint64_t cur = load_acquire(&t->hdr->writer);
	for (int tries = 0; tries < 8; tries++) {
		if (cur != 0 && cur != me && owner_alive(cur))
			return SHMEX_EINUSE;
		if (cas_acq_rel(&t->hdr->writer, &cur, me)) {
			t->ident = me;
			return 0;
		}
	}
	return SHMEX_EINUSE;
}

static void writer_release(struct shm_rcu *t)
{
	uint64_t me = t->ident;
	if (t->role == SHM_RCU_WRITER && me && t->region.writable)
		(void)cas_acq_rel(&t->hdr->writer, &me, 0); /* RD12 */
}

static int writer_init(struct shm_rcu *t)
{
	t->reap_interval_ns = SHM_RCU_REAP_INTERVAL_NS;
	t->next_reap_ns = 0;
	t->lease_ns = SHM_RCU_LEASE_NS;
	t->barrier_interval_ns = SHM_RCU_BARRIER_INTERVAL_NS;
	t->barrier_urgent_ns = SHM_RCU_BARRIER_URGENT_NS;
	t->barrier_burst = SHM_RCU_BARRIER_BURST;
	t->barrier_tat_ns = 0;
	t->last_barrier_ns = 0;
	/* Nothing covered yet: tags start at 1. */
	t->covered = 1;
	t->seen = calloc(t->nslots, sizeof(*t->seen));
	if (!t->seen)
		return -ENOMEM;
	return writer_claim(t);
}

int shm_rcu_create(struct shm_rcu *t, const char *instance, unsigned shard,
		   uint32_t nslots, mode_t mode)
{
	return shm_rcu_create_mode(t, instance, shard, nslots, mode, SHM_RCU_MODE_AUTO);
}

int shm_rcu_create_mode(struct shm_rcu *t, const char *instance, unsigned shard,
			uint32_t nslots, mode_t perm, enum shm_rcu_mode mode)
{
	char name[SHM_REGION_NAME_MAX];
	memset(t, 0, sizeof(*t));
	if (nslots == 0)
		nslots = SHM_RCU_DEFAULT_SLOTS;
	if (nslots > SHM_RCU_MAX_SLOTS)
		return -EINVAL;
	if (mode == SHM_RCU_MODE_AUTO)
		mode = !env_wants_fence() && shm_rcu_asym_supported()
			       ? SHM_RCU_MODE_ASYM
			       : SHM_RCU_MODE_FENCE;
	else if (mode == SHM_RCU_MODE_ASYM && !shm_rcu_asym_supported())
		return -ENOSYS;
	else if (mode != SHM_RCU_MODE_FENCE && mode != SHM_RCU_MODE_ASYM)
		return -EINVAL;
	int rc = shm_region_name(name, SHM_KIND_READERS, shard);
	if (rc)
		return rc;
	uint64_t caps[2];
	caps[SHM_RCU_CAP_SLOTS] = nslots;
	caps[SHM_RCU_CAP_SHARD] = shard;
	rc = shm_region_create(&t->region, instance, name, SHM_KIND_READERS,
			       shm_rcu_body_size(nslots), caps, 2, perm);
	if (rc)
		return rc;
	t->hdr = shm_region_body(&t->region);
	t->slots = (struct shm_rcu_slot_sh *)(t->hdr + 1);
	t->nslots = nslots;
	t->shard = shard;
	t->role = SHM_RCU_WRITER;
	t->epoch = 1;
	t->safe = 1;
	/* Private until R0 (shm_region_publish): plain stores suffice. */
	t->hdr->epoch = 1;
	t->hdr->nslots = nslots;
	t->hdr->shard = shard;
	t->hdr->mode = (uint32_t)mode;
	t->mode = mode;
	rc = writer_init(t);
	if (rc)
		goto out_unlink;
	shm_region_publish(&t->region);
	/* Our own descriptor of the object, for guard_repair.  Should
	 * someone have replaced the name in the instant since creation, the
	 * inode differs and the descriptor is not used. */
	char full[SHM_NAME_MAX];
	t->fd = -1;
	if (shm_name_format(full, sizeof(full), instance, name) == 0)
		t->fd = shm_open(full, O_RDWR | O_CLOEXEC, 0);
	if (t->fd >= 0 && !same_object(t->fd, t->region.base)) {
		close(t->fd);
		t->fd = -1;
	}
	memcpy(t->hdr_copy, t->region.base, sizeof(t->hdr_copy));
	guard_install();
	return 0;

out_unlink:
	free(t->seen);
	t->seen = NULL;
	shm_region_detach(&t->region);
	(void)shm_region_unlink(instance, name);
	return rc;
}

int shm_rcu_attach(struct shm_rcu *t, const char *instance, unsigned shard,
		   enum shm_rcu_role role)
{
	char name[SHM_REGION_NAME_MAX];
	memset(t, 0, sizeof(*t));
	t->fd = -1;
	if (role != SHM_RCU_OBSERVER && role != SHM_RCU_READER && role != SHM_RCU_WRITER)
		return -EINVAL;
	int rc = shm_region_name(name, SHM_KIND_READERS, shard);
	if (rc)
		return rc;
	rc = shm_region_attach(&t->region, instance, name, SHM_KIND_READERS,
			       role == SHM_RCU_OBSERVER ? SHM_RDONLY : SHM_RDWR);
	if (rc)
		return rc;
	/* The header was validated at A0; its capacities are immutable. */
	const struct shm_region_hdr_sh *h = shm_region_hdr(&t->region);
	uint64_t n = h->capacity[SHM_RCU_CAP_SLOTS];
	rc = SHMEX_EBADINDEX;
	if (n == 0 || n > SHM_RCU_MAX_SLOTS ||
	    shm_region_body_size(&t->region) < shm_rcu_body_size((uint32_t)n) ||
	    h->capacity[SHM_RCU_CAP_SHARD] != shard)
		goto out_detach;
	t->hdr = shm_region_body(&t->region);
	/* Relaxed: immutable after R0, acquired by A0; validated once and
	 * kept in the handle. */
	uint32_t m = load_relaxed(&t->hdr->mode);
	if (m != SHM_RCU_MODE_FENCE && m != SHM_RCU_MODE_ASYM)
		goto out_detach;
	t->mode = (enum shm_rcu_mode)m;
	t->slots = (struct shm_rcu_slot_sh *)(t->hdr + 1);
	t->nslots = (uint32_t)n;
	t->shard = shard;
	t->role = role;
	if (role == SHM_RCU_WRITER) {
		/* The readers store plainly: this writer must be able to
		 * issue the barrier they rely on. */
		rc = -ENOSYS;
		if (t->mode == SHM_RCU_MODE_ASYM && !shm_rcu_asym_supported())
			goto out_detach;
		rc = SHMEX_EBADINDEX;
		/* Relaxed: the region was published at R0/A0 and only this
		 * (single) writer stores the epoch. */
		uint64_t e = load_relaxed(&t->hdr->epoch);
		if (e == 0 || e > SHM_RCU_EPOCH_MAX)
			goto out_detach;
		t->epoch = e;
		t->safe = 1;
		rc = writer_init(t);
		if (rc)
			goto out_free;
	}
	return 0;

out_free:
	free(t->seen);
	t->seen = NULL;
out_detach:
	shm_region_detach(&t->region);
	memset(t, 0, sizeof(*t));
	return rc;
}

void shm_rcu_detach(struct shm_rcu *t)
{
	if (t->hdr)
		writer_release(t);
	if (t->role == SHM_RCU_WRITER && t->fd > 0)
		close(t->fd);
	free(t->seen);
	shm_region_detach(&t->region);
	memset(t, 0, sizeof(*t));
}

int shm_rcu_unlink(const char *instance, unsigned shard)
{
	char name[SHM_REGION_NAME_MAX];
	int rc = shm_region_name(name, SHM_KIND_READERS, shard);
	if (rc)
		return rc;
	return shm_region_unlink(instance, name);
}

/* --- reaping -------------------------------------------------------------- */

/* Frees slot i if its owner is still `owner`.  The generation is bumped
 * first so that the old owner, should it be alive after all, sees the
 * change at its next enter or leave even if a sibling thread (same owner
 * word) re-claims the slot.  Every claim ends with exactly one bump (by
 * its owner's unregister or by one reaper), each a CAS from the
 * generation read before the owner was seen: a reaper that read the
 * generation of an earlier claim, or lost the race to another reaper or to
 * the owner's unregister, fails its CAS and touches nothing, so a bump
 * never lands on a claim it was not meant for. */
static bool reap_slot(struct shm_rcu *t, uint32_t i, uint64_t owner)
{
	struct shm_rcu_slot_sh *s = &t->slots[i];
	/* RD10: acquire load of gen, before the owner (so that a gen
	 * unchanged at the CAS below belongs to the claim seen now). */
	uint32_t g = load_acquire(&s->gen);
	if (load_acquire(&s->owner) != owner) /* RD8a */
		return false;
	/* RD10: CAS gen g -> g + 1 (acq_rel), published to the next claimer
	 * and to the old owner by RD11's release. */
	if (!cas_acq_rel(&s->gen, &g, g + 1))
		return false;
	/* RD11: acq_rel CAS owner -> 0; pairs with RD5 (next claimer) and
	 * RD6 (old owner's check).  It cannot fail short of corruption: the
	 * claim can only end through a bump, and ours won. */
	if (!cas_acq_rel(&s->owner, &owner, 0))
		return false;
	fetch_add_relaxed(&t->hdr->reaped, 1u); /* statistic */
	t->reaped++;
	return true;
}

/* --- reader side ---------------------------------------------------------- */

static int claim_slot(struct shm_rcu *t, struct shm_rcu_reader *r, uint64_t me,
		      uint32_t i)
{
	struct shm_rcu_slot_sh *s = &t->slots[i];
	uint64_t expected = 0;
	/* Relaxed pre-check: avoids a CAS on every busy slot. */
	if (load_relaxed(&s->owner) != 0)
		return -EBUSY;
	/* RD5: acq_rel CAS owner 0 -> me; pairs with RD9/RD11 (the previous
	 * owner or reaper freeing the slot) and with the writer's RD8a: a
	 * scan that sees the claim also sees RD16 (our membarrier
	 * registration) done.  The full barrier of RD5b orders this store
	 * before any read of the book, which is what the scan's RD8a needs. */
	if (!cas_acq_rel(&s->owner, &expected, me))
		return -EBUSY;
	memset(r, 0, sizeof(*r));
	r->slot = s;
	r->gp = &t->hdr->epoch;
	r->ident = me;
	r->gen = load_relaxed(&s->gen); /* ordered after RD5's acquire */
	r->idle = shm_rcu_section_idle(r->gen);
	r->index = i;
	/* RD5b: replace what a dead or evicted owner left in the section
	 * word by our idle word (full barrier, liburcu xchg).  An evicted
	 * owner still in its section then sees its leave CAS fail. */
	(void)uatomic_xchg(&s->section, r->idle);
	store_relaxed(&s->nesting, 0u); /* display only */
	return 0;
}

int shm_rcu_register(struct shm_rcu *t, struct shm_rcu_reader *r)
{
	if (t->role == SHM_RCU_OBSERVER || !t->region.writable)
		return -EPERM;
	uint64_t me = shm_proc_self_ident();
	if (!me)
		return -EOVERFLOW;
	/* RD16: in an asymmetric table, register the process for global
	 * expedited membarrier before claiming (RD5), so that a writer whose
	 * scan sees the claim issues its next membarrier after the
	 * registration and interrupts this thread.  Idempotent and cheap
	 * once done; not inherited across exec.  If it fails, this
	 * registration uses the fence path, which needs no membarrier. */
	bool asym = t->mode == SHM_RCU_MODE_ASYM && !env_wants_fence() &&
		    shm_rcu_asym_supported() &&
		    sys_membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) == 0;
	/* Start at a pid-dependent slot so processes spread over the table. */
	uint32_t start = (uint32_t)shm_proc_ident_pid(me) % t->nslots;
	for (int pass = 0; pass < 2; pass++) {
		for (uint32_t k = 0; k < t->nslots; k++) {
			uint32_t i = (start + k) % t->nslots;
			if (claim_slot(t, r, me, i) == 0) {
				r->asym = asym;
				return 0;
			}
		}
		if (pass == 0) {
			unsigned cleared = 0;
			int rc = shm_rcu_clear_stale(t, &cleared);
			if (rc)
				return rc;
			if (cleared == 0)
				break;
		}
	}
	return SHMEX_ENOREADERSLOT;
}

int shm_rcu_enter(struct shm_rcu_reader *r)
{
	return shm_rcu_enter_inline(r);
}

int shm_rcu_leave(struct shm_rcu_reader *r)
{
	return shm_rcu_leave_inline(r);
}

int shm_rcu_unregister(struct shm_rcu_reader *r)
{
	int rc = 0;
	if (!r->slot)
		return 0;
	if (r->nesting > 0) {
		r->nesting = 1;
		rc = shm_rcu_leave_inline(r);
	}
	if (!r->lost) {
		uint64_t expected = r->ident;
		uint32_t g = r->gen;
		/* RD9: CAS gen g -> g + 1 (the claim ends; fails if a reaper
		 * ended it first), then acq_rel CAS owner -> 0; pairs with
		 * RD5 of the next claimer (our epoch reset at RD7/RD14 is
		 * visible to it) and the writer's RD8a. */
		if (!cas_acq_rel(&r->slot->gen, &g, g + 1) ||
		    !cas_acq_rel(&r->slot->owner, &expected, 0))
			rc = SHMEX_ESLOTLOST;
	}
	memset(r, 0, sizeof(*r));
	return rc;
}

/* --- surviving a reader that truncates the table (writer) ----------------
 *
 * Readers must map the table read-write (they write their slot), so any of
 * them can ftruncate the object, and the writer's next access past the new
 * end faults with SIGBUS.  The writer therefore makes every access to the
 * table under a guard: a SIGBUS whose address lies in the table, while the
 * guard is armed in this thread, jumps back to the guarded call, which
 * restores the object's size through the writer's own descriptor (the
 * lost pages come back as zeros: free slots), rewrites both headers from
 * its private copy, and carries on.  Readers whose slots were lost learn
 * it (SHMEX_ESLOTLOST) and register again; their sections are unprotected
 * meanwhile, which the book tolerates (memory stays mapped, every index is
 * checked, seqcounts retry).  Any other SIGBUS gets the default action.
 * The guard costs a sigsetjmp without signal mask (no system call): the
 * handler runs with SA_NODEFER, so SIGBUS is never left blocked.
 */
static __thread sigjmp_buf *guard_jb;
static __thread const char *guard_lo, *guard_hi;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	const char *a = si->si_addr;
	if (guard_jb && a >= guard_lo && a < guard_hi) {
		sigjmp_buf *jb = guard_jb;
		guard_jb = NULL;
		siglongjmp(*jb, 1);
	}
	/* Not ours: the faulting access repeats and gets the default. */
	signal(sig, SIG_DFL);
}

static void guard_install(void)
{
	static int installed; /* W/R: writer threads at create, relaxed:
			       * installing twice is harmless */
	if (load_relaxed(&installed))
		return;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigbus;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	(void)sigaction(SIGBUS, &sa, NULL);
	store_relaxed(&installed, 1);
}

static void guard_arm(struct shm_rcu *t, sigjmp_buf *jb)
{
	guard_lo = (const char *)t->region.base;
	guard_hi = guard_lo + t->region.map_size;
	guard_jb = jb;
}

static void guard_disarm(void)
{
	guard_jb = NULL;
}

/* The table was truncated under us: make it whole again. */
static void guard_repair(struct shm_rcu *t)
{
	guard_disarm();
	if (t->fd < 0 || ftruncate(t->fd, (off_t)t->region.map_size) != 0) {
		fprintf(stderr,
			"shm_rcu: reader table %s was truncated by a reader and "
			"cannot be restored (%s)\n",
			t->region.name, t->fd < 0 ? "no descriptor" : strerror(errno));
		abort();
	}
	memcpy(t->region.base, t->hdr_copy, sizeof(t->hdr_copy));
	/* Plain stores: the header fields the copy held stale. */
	store_release(&t->hdr->epoch, t->epoch); /* RD3 */
	store_release(&t->hdr->writer, t->ident);
	memset(t->seen, 0, t->nslots * sizeof(*t->seen));
	t->truncations++;
	fprintf(stderr,
		"shm_rcu: reader table %s was truncated by a reader; restored "
		"(%" PRIu64 " times), its readers register again\n",
		t->region.name, t->truncations);
}

#define WRITER_GUARD(t)                      \
	sigjmp_buf guard_jb_;                \
	if ((t)->role == SHM_RCU_WRITER) {   \
		if (sigsetjmp(guard_jb_, 0)) \
			guard_repair(t);     \
		guard_arm((t), &guard_jb_);  \
	}

/* --- writer side ---------------------------------------------------------- */

uint64_t shm_rcu_advance(struct shm_rcu *t)
{
	if (t->epoch < SHM_RCU_EPOCH_MAX)
		t->epoch++;
	WRITER_GUARD(t);
	/* RD3: release store of the new epoch; pairs with RD1.  Every unlink
	 * the writer did before is visible to a reader that reads it. */
	store_release(&t->hdr->epoch, t->epoch);
	guard_disarm();
	return t->epoch;
}

void shm_rcu_set_lease(struct shm_rcu *t, uint64_t ns)
{
	t->lease_ns = ns;
}

void shm_rcu_set_reap_interval(struct shm_rcu *t, uint64_t ns)
{
	t->reap_interval_ns = ns;
	t->next_reap_ns = 0;
}

void shm_rcu_set_barrier_interval(struct shm_rcu *t, uint64_t interval_ns,
				  uint64_t urgent_ns)
{
	/* Clamped so that the bucket arithmetic cannot overflow. */
	t->barrier_interval_ns =
		interval_ns < BARRIER_MAX_NS ? interval_ns : BARRIER_MAX_NS;
	t->barrier_urgent_ns = urgent_ns < BARRIER_MAX_NS ? urgent_ns : BARRIER_MAX_NS;
	t->barrier_tat_ns = 0;
}

void shm_rcu_set_barrier_burst(struct shm_rcu *t, uint32_t burst)
{
	t->barrier_burst = burst == 0                  ? 1
			   : burst < BARRIER_MAX_BURST ? burst
						       : BARRIER_MAX_BURST;
	t->barrier_tat_ns = 0;
}

/* Records what slot i holds for the next reap pass; true when it is
 * exactly what the previous pass saw (same claim, same word). */
static bool seen_again(struct shm_rcu *t, uint32_t i, uint64_t owner, uint64_t word,
		       uint32_t gen, uint64_t now)
{
	struct shm_rcu_seen *sn = &t->seen[i];
	bool same = sn->owner == owner && sn->word == word && sn->gen == gen;
	sn->owner = owner;
	sn->word = word;
	sn->gen = gen;
	if (!same)
		sn->since_ns = now;
	return same;
}

/* Result of one pass over the slots. */
struct scan_result {
	uint64_t min;     /* oldest epoch held (UINT64_MAX: none) */
	uint32_t claimed; /* claimed slots left after reaping */
};

/* One pass over the slots, after RD4 (or RD15).  With reap, also the
 * rate-limited liveness pass: /proc is read only for slots stuck in one
 * section since the previous pass, slots holding a word of another
 * generation, and one idle slot in round robin. */
static struct scan_result scan(struct shm_rcu *t, uint64_t gp, bool reap, uint64_t now)
{
	struct scan_result res = {UINT64_MAX, 0};
	for (uint32_t i = 0; i < t->nslots; i++) {
		struct shm_rcu_slot_sh *s = &t->slots[i];
		/* RD8a: acquire load of the owner; pairs with RD5, RD9 and
		 * RD11.  A free slot holds nobody back. */
		uint64_t owner = load_acquire(&s->owner);
		if (owner == 0)
			continue;
		/* RD8: acquire load of the section word; pairs with RD7 and
		 * RD14 (a reader's section ended before we reuse its nodes)
		 * and RD13/RD5b (a word of a later section or claim). */
		uint64_t word = load_acquire(&s->section);
		/* Relaxed: after RD8.  Read after the word, so a word written
		 * after a re-claim is never taken for the old claim's. */
		uint32_t gen = load_relaxed(&s->gen);
		uint64_t e = shm_rcu_section_epoch(word);
		/* Liveness pass: is the slot exactly as the previous pass saw
		 * it (same claim, same word)? */
		bool same = reap && seen_again(t, i, owner, word, gen, now);
		if (!word_gen_matches(word, gen)) {
			/* Another claim's word (a reader that lost the slot
			 * stored late, or a claimer between RD5 and RD5b), or
			 * garbage: it may hide the owner's section, so hold
			 * everything.  The owner's next store repairs it; a
			 * word that stays for a whole reap interval, or a
			 * dead owner, frees the slot (a live owner is told
			 * SHMEX_ESLOTLOST and registers again). */
			t->held++;
			if (reap && (same || !owner_alive(owner)) &&
			    reap_slot(t, i, owner)) {
				if (same)
					t->repaired++;
				continue;
			}
			e = 1;
		} else if (e == 0) {
			if (reap && i == t->idle_cursor % t->nslots &&
			    !owner_alive(owner) && reap_slot(t, i, owner))
				continue;
			res.claimed++;
			continue;
		} else {
			if (same && !owner_alive(owner) && reap_slot(t, i, owner))
				continue;
			/* A live reader in the same section past its lease
			 * (stopped, stuck): revoked, so the book can reclaim
			 * past it; it is told at leave and retries. */
			if (same && t->lease_ns &&
			    now - t->seen[i].since_ns >= t->lease_ns &&
			    reap_slot(t, i, owner)) {
				t->revoked++;
				continue;
			}
			if (e > gp) {
				/* Corrupt (readers never see a future epoch):
				 * the oldest possible, so nothing is reused
				 * early. */
				t->bad_epochs++;
				e = 1;
			}
		}
		res.claimed++;
		if (e < res.min)
			res.min = e;
	}
	return res;
}

/* Asymmetric mode: may a membarrier call be issued now?  A token bucket
 * (generic cell rate algorithm): one call per interval on average, up to
 * `burst` calls back to back after a quiet period, so a writer that
 * advances rarely (an idle exchange, a test) reclaims at once as in fence
 * mode, and a busy one pays at most one call per interval.  An urgent poll
 * only waits for the urgent gap since the previous call. */
static bool barrier_due(struct shm_rcu *t, bool urgent)
{
	uint64_t now = shm_clock_ns(CLOCK_MONOTONIC);
	uint64_t iv = t->barrier_interval_ns;
	bool ok;
	if (urgent)
		ok = t->last_barrier_ns == 0 ||
		     now - t->last_barrier_ns >= t->barrier_urgent_ns;
	else
		ok = t->barrier_tat_ns <= now + (uint64_t)(t->barrier_burst - 1) * iv;
	if (ok)
		t->barrier_tat_ns =
			(t->barrier_tat_ns > now ? t->barrier_tat_ns : now) + iv;
	return ok;
}

/* RD15: membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED): a full barrier on
 * every CPU running a thread of a registered process, and in the caller.
 * True when it was done. */
static bool issue_barrier(struct shm_rcu *t)
{
	uint64_t t0 = shm_clock_ns(CLOCK_MONOTONIC);
	long rc = sys_membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED);
	uint64_t t1 = shm_clock_ns(CLOCK_MONOTONIC);
	t->last_barrier_ns = t1 ? t1 : 1;
	if (rc != 0) {
		t->barrier_errors++;
		return false;
	}
	t->barriers++;
	t->barrier_ns += t1 - t0;
	fetch_add_relaxed(&t->hdr->barriers, 1u); /* statistic */
	return true;
}

static uint64_t poll(struct shm_rcu *t, bool urgent)
{
	const uint64_t gp = t->epoch;
	bool reap = false;
	if (t->role != SHM_RCU_WRITER)
		return 1;
	uint64_t now = shm_clock_ns(CLOCK_MONOTONIC_COARSE);
	if (t->reap_interval_ns == 0) {
		reap = true;
	} else {
		if (now >= t->next_reap_ns) {
			reap = true;
			t->next_reap_ns = now + t->reap_interval_ns;
		}
	}
	/* RD4: full fence; pairs with RD2 and RD5b.  Orders the writer's
	 * unlinks and RD3 before the slot loads below (store-buffering pair:
	 * a reader not seen in its slot, or a claimer whose claim is not
	 * seen, sees the unlinks). */
	fence_full();
	struct scan_result res = scan(t, gp, reap, now);
	if (reap)
		t->idle_cursor++;
	uint64_t bound = gp;
	if (t->mode == SHM_RCU_MODE_ASYM) {
		if (t->covered < gp) {
			if (res.claimed == 0) {
				/* No slot claimed after RD4: every later
				 * claimer's RD5b full barrier orders its
				 * reads after our unlinks. */
				t->covered = gp;
			} else if (barrier_due(t, urgent) && issue_barrier(t)) {
				/* The scan above saw every claim whose
				 * owner may read old links; their
				 * registrations (RD16) precede RD15.  Scan
				 * again after it. */
				t->covered = gp;
				res = scan(t, gp, false, now);
			}
		}
		bound = t->covered;
	}
	uint64_t safe = res.min < bound ? res.min : bound;
	t->safe = safe;
	return safe;
}

uint64_t shm_rcu_safe_epoch(struct shm_rcu *t)
{
	WRITER_GUARD(t);
	uint64_t safe = poll(t, false);
	guard_disarm();
	return safe;
}

uint64_t shm_rcu_safe_epoch_urgent(struct shm_rcu *t)
{
	WRITER_GUARD(t);
	uint64_t safe = poll(t, true);
	guard_disarm();
	return safe;
}

/* --- administration -------------------------------------------------------- */

int shm_rcu_clear_stale(struct shm_rcu *t, unsigned *cleared)
{
	unsigned n = 0;
	if (t->role == SHM_RCU_OBSERVER || !t->region.writable)
		return -EPERM;
	for (uint32_t i = 0; i < t->nslots; i++) {
		uint64_t owner = load_acquire(&t->slots[i].owner); /* RD8a */
		if (owner != 0 && !owner_alive(owner) && reap_slot(t, i, owner))
			n++;
	}
	if (cleared)
		*cleared = n;
	return 0;
}

int shm_rcu_evict(struct shm_rcu *t, uint32_t slot)
{
	if (t->role == SHM_RCU_OBSERVER || !t->region.writable)
		return -EPERM;
	if (slot >= t->nslots)
		return SHMEX_EBADINDEX;
	uint64_t owner = load_acquire(&t->slots[slot].owner); /* RD8a */
	if (owner == 0)
		return -ENOENT;
	return reap_slot(t, slot, owner) ? 0 : -EAGAIN;
}

int shm_rcu_list(const struct shm_rcu *t, struct shm_rcu_reader_info *out, size_t max,
		 size_t *n)
{
	size_t k = 0;
	/* Relaxed: a display snapshot; each field is read once. */
	uint64_t gp = t->role == SHM_RCU_WRITER ? t->epoch : load_relaxed(&t->hdr->epoch);
	for (uint32_t i = 0; i < t->nslots; i++) {
		const struct shm_rcu_slot_sh *s = &t->slots[i];
		uint64_t owner = load_acquire(&s->owner); /* RD8a */
		if (owner == 0)
			continue;
		if (k < max) {
			struct shm_rcu_reader_info *o = &out[k];
			memset(o, 0, sizeof(*o));
			o->slot = i;
			o->pid = shm_proc_ident_pid(owner);
			o->start = shm_proc_ident_start(owner);
			o->epoch = shm_rcu_section_epoch(
				load_acquire(&s->section)); /* RD8 */
			o->in_section = o->epoch != 0;
			o->lag = o->in_section && gp > o->epoch ? gp - o->epoch : 0;
			o->nesting = load_relaxed(&s->nesting);
			o->gen = load_relaxed(&s->gen);
			o->alive = owner_alive(owner);
		}
		k++;
	}
	*n = k;
	return 0;
}

void shm_rcu_stats(const struct shm_rcu *t, struct shm_rcu_stats *st)
{
	memset(st, 0, sizeof(*st));
	bool writer = t->role == SHM_RCU_WRITER;
	/* Relaxed: display snapshot. */
	st->epoch = writer ? t->epoch : load_relaxed(&t->hdr->epoch);
	st->nslots = t->nslots;
	st->reaped = load_relaxed(&t->hdr->reaped);
	st->bad_epochs = t->bad_epochs;
	st->mode = t->mode;
	st->covered_epoch =
		writer && t->mode == SHM_RCU_MODE_ASYM ? t->covered : st->epoch;
	st->barriers = load_relaxed(&t->hdr->barriers); /* statistic */
	st->barrier_ns = t->barrier_ns;
	st->barrier_errors = t->barrier_errors;
	st->held = t->held;
	st->repaired = t->repaired;
	st->truncations = t->truncations;
	st->revoked = t->revoked;
	uint64_t safe = st->epoch;
	for (uint32_t i = 0; i < t->nslots; i++) {
		const struct shm_rcu_slot_sh *s = &t->slots[i];
		if (load_acquire(&s->owner) == 0) /* RD8a */
			continue;
		st->registered++;
		uint64_t e = shm_rcu_section_epoch(load_acquire(&s->section)); /* RD8 */
		if (e == 0)
			continue;
		st->active++;
		if (e <= st->epoch && st->epoch - e > st->max_lag)
			st->max_lag = st->epoch - e;
		if (e < safe)
			safe = e;
	}
	st->safe_epoch = writer ? t->safe : safe;
}

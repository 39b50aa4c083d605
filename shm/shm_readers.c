/*
 * shm_readers: the cross-process RCU reader table (contract in
 * shm_readers.h; protocol and proof sketch in docs/concurrency.md, "Reader
 * protocol").
 *
 * Why this shape.  An LMDB-style table of cache-line slots in a region of
 * its own, because readers must write their slot while the book region is
 * read-only for them.  The owner (pid and start time packed into one word)
 * is claimed and freed with CAS, so claiming needs no lock that a dying
 * process could leave held.  The section word (generation | epoch) changes
 * only by CAS from a value the changer expects, so a reader that lost its
 * slot cannot overwrite the section of the slot's new owner, even one that
 * read the same epoch; liburcu's uatomic_cmpxchg provides the full barrier
 * the Dekker-style handshake needs in the same instruction.
 *
 * Invariants.
 *  - The global epoch only grows; the writer keeps its own copy and never
 *    reads the shared one back after attach.
 *  - A slot with owner 0 is ignored by the scan; a claimed slot whose
 *    section epoch is 0 is idle; one with epoch e > 0 holds back reuse of
 *    every node retired with a tag >= e.
 *  - Only the writer handle scans and advances; reaping may happen in any
 *    read-write process, always gen++ then CAS owner -> 0.
 *  - Everything read from the region is a number whose range is checked or
 *    is harmless: the slot count is validated once at attach and kept in the
 *    handle; epochs out of range count as the oldest; owners are only
 *    compared and passed to /proc lookups.
 *
 * Limits.  Liveness comes from /proc: a reader in another pid namespace, or
 * hidden by hidepid, looks dead and loses its slot (it is told so by
 * SHMEX_ESLOTLOST).  The writer's liveness pass reads /proc only for slots
 * that stayed in the same section since the previous pass, plus one idle
 * slot per pass (round robin), so its cost is bounded per interval.
 */
#include "shm/shm_readers.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shm/shm_error.h"
#include "shm/shm_proc.h"
#include "shm/shm_readers_inline.h"

/* What the writer saw of a slot at the previous liveness pass. */
struct shm_readers_seen {
	uint64_t owner;
	uint64_t epoch;
};

static uint64_t ident_pack(pid_t pid, uint64_t start)
{
	if (pid <= 0 || (uint64_t)pid >= (UINT64_C(1) << SHM_READERS_PID_BITS) ||
	    start >= (UINT64_C(1) << SHM_READERS_START_BITS))
		return 0;
	return (start << SHM_READERS_PID_BITS) | (uint64_t)pid;
}

static pid_t ident_pid(uint64_t ident)
{
	return (pid_t)(ident & ((UINT64_C(1) << SHM_READERS_PID_BITS) - 1));
}

static uint64_t ident_start(uint64_t ident)
{
	return ident >> SHM_READERS_PID_BITS;
}

static uint64_t self_ident(void)
{
	return ident_pack(getpid(), shm_proc_self_start());
}

/* A zombie still has its /proc entry and start time but will never leave
 * a read-side section. */
static bool proc_is_zombie(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	const char *p = strrchr(buf, ')');
	return p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
}

/* True when the owner word names a live (non-zombie) process. */
static bool owner_alive(uint64_t ident)
{
	pid_t pid = ident_pid(ident);
	if (!shm_proc_alive(pid, ident_start(ident)))
		return false;
	return !proc_is_zombie(pid);
}

static uint64_t now_coarse_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int shm_readers_region_name(char *out, size_t len, unsigned shard)
{
	int n = snprintf(out, len, "readers.%u", shard);
	if (n < 0 || (size_t)n >= len)
		return SHMEX_EBADNAME;
	return 0;
}

/* Takes hdr->writer for this process: SHMEX_EINUSE while another live
 * process holds it. */
static int writer_claim(struct shm_readers *t)
{
	uint64_t me = self_ident();
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

static void writer_release(struct shm_readers *t)
{
	uint64_t me = t->ident;
	if (t->role == SHM_READERS_WRITER && me && t->region.writable)
		(void)cas_acq_rel(&t->hdr->writer, &me, 0); /* RD12 */
}

static int writer_init(struct shm_readers *t)
{
	t->reap_interval_ns = SHM_READERS_REAP_INTERVAL_NS;
	t->next_reap_ns = 0;
	t->seen = calloc(t->nslots, sizeof(*t->seen));
	if (!t->seen)
		return -ENOMEM;
	return writer_claim(t);
}

int shm_readers_create(struct shm_readers *t, const char *instance,
		       unsigned shard, uint32_t nslots, mode_t mode)
{
	char name[32];
	memset(t, 0, sizeof(*t));
	if (nslots == 0)
		nslots = SHM_READERS_DEFAULT_SLOTS;
	if (nslots > SHM_READERS_MAX_SLOTS)
		return -EINVAL;
	int rc = shm_readers_region_name(name, sizeof(name), shard);
	if (rc)
		return rc;
	uint64_t caps[2];
	caps[SHM_READERS_CAP_SLOTS] = nslots;
	caps[SHM_READERS_CAP_SHARD] = shard;
	rc = shm_region_create(&t->region, instance, name, SHM_KIND_READERS,
			       shm_readers_body_size(nslots), caps, 2, mode);
	if (rc)
		return rc;
	t->hdr = shm_region_body(&t->region);
	t->slots = (struct shm_reader_slot_sh *)(t->hdr + 1);
	t->nslots = nslots;
	t->shard = shard;
	t->role = SHM_READERS_WRITER;
	t->epoch = 1;
	t->safe = 1;
	/* Private until R0 (shm_region_publish): plain stores suffice. */
	t->hdr->epoch = 1;
	t->hdr->nslots = nslots;
	t->hdr->shard = shard;
	rc = writer_init(t);
	if (rc)
		goto out_unlink;
	shm_region_publish(&t->region);
	return 0;

out_unlink:
	free(t->seen);
	t->seen = NULL;
	shm_region_detach(&t->region);
	(void)shm_region_unlink(instance, name);
	return rc;
}

int shm_readers_attach(struct shm_readers *t, const char *instance,
		       unsigned shard, enum shm_readers_role role)
{
	char name[32];
	memset(t, 0, sizeof(*t));
	if (role != SHM_READERS_OBSERVER && role != SHM_READERS_READER &&
	    role != SHM_READERS_WRITER)
		return -EINVAL;
	int rc = shm_readers_region_name(name, sizeof(name), shard);
	if (rc)
		return rc;
	rc = shm_region_attach(&t->region, instance, name, SHM_KIND_READERS,
			       role == SHM_READERS_OBSERVER ? SHM_RDONLY : SHM_RDWR);
	if (rc)
		return rc;
	/* The header was validated at A0; its capacities are immutable. */
	const struct shm_region_hdr_sh *h = shm_region_hdr(&t->region);
	uint64_t n = h->capacity[SHM_READERS_CAP_SLOTS];
	rc = SHMEX_EBADINDEX;
	if (n == 0 || n > SHM_READERS_MAX_SLOTS ||
	    shm_region_body_size(&t->region) < shm_readers_body_size((uint32_t)n) ||
	    h->capacity[SHM_READERS_CAP_SHARD] != shard)
		goto out_detach;
	t->hdr = shm_region_body(&t->region);
	t->slots = (struct shm_reader_slot_sh *)(t->hdr + 1);
	t->nslots = (uint32_t)n;
	t->shard = shard;
	t->role = role;
	if (role == SHM_READERS_WRITER) {
		/* Relaxed: the region was published at R0/A0 and only this
		 * (single) writer stores the epoch. */
		uint64_t e = load_relaxed(&t->hdr->epoch);
		if (e == 0 || e > SHM_READERS_EPOCH_MAX)
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

void shm_readers_detach(struct shm_readers *t)
{
	if (t->hdr)
		writer_release(t);
	free(t->seen);
	shm_region_detach(&t->region);
	memset(t, 0, sizeof(*t));
}

int shm_readers_unlink(const char *instance, unsigned shard)
{
	char name[32];
	int rc = shm_readers_region_name(name, sizeof(name), shard);
	if (rc)
		return rc;
	return shm_region_unlink(instance, name);
}

/* --- reaping -------------------------------------------------------------- */

/* Frees slot i if its owner is still `owner`.  The generation is bumped
 * first so that the old owner, should it be alive after all, sees the
 * change at its next enter or leave even if a sibling thread (same owner
 * word) re-claims the slot. */
static bool reap_slot(struct shm_readers *t, uint32_t i, uint64_t owner)
{
	struct shm_reader_slot_sh *s = &t->slots[i];
	if (load_acquire(&s->owner) != owner) /* RD8a */
		return false;
	/* RD10: relaxed increment, published by RD11's release. */
	fetch_add_relaxed(&s->gen, 1u);
	/* RD11: acq_rel CAS owner -> 0; pairs with RD5 (next claimer) and
	 * RD6 (old owner's check). */
	if (!cas_acq_rel(&s->owner, &owner, 0))
		return false;
	fetch_add_relaxed(&t->hdr->reaped, 1u); /* statistic */
	t->reaped++;
	return true;
}

/* --- reader side ---------------------------------------------------------- */

static int claim_slot(struct shm_readers *t, struct shm_reader *r,
		      uint64_t me, uint32_t i)
{
	struct shm_reader_slot_sh *s = &t->slots[i];
	uint64_t expected = 0;
	/* Relaxed pre-check: avoids a CAS on every busy slot. */
	if (load_relaxed(&s->owner) != 0)
		return -EBUSY;
	/* RD5: acq_rel CAS owner 0 -> me; pairs with RD9/RD11 (the previous
	 * owner or reaper freeing the slot).  The full barrier of the first
	 * enter (RD2) orders this store before any read of the book, which
	 * is what the scan's RD8a needs. */
	if (!cas_acq_rel(&s->owner, &expected, me))
		return -EBUSY;
	memset(r, 0, sizeof(*r));
	r->slot = s;
	r->gp = &t->hdr->epoch;
	r->ident = me;
	r->gen = load_relaxed(&s->gen); /* ordered after RD5's acquire */
	r->idle = shm_readers_section_idle(r->gen);
	r->index = i;
	/* RD5b: replace what a dead or evicted owner left in the section
	 * word by our idle word (full barrier, liburcu xchg).  An evicted
	 * owner still in its section then sees its leave CAS fail. */
	(void)uatomic_xchg(&s->section, r->idle);
	store_relaxed(&s->nesting, 0u); /* display only */
	return 0;
}

int shm_readers_register(struct shm_readers *t, struct shm_reader *r)
{
	if (t->role == SHM_READERS_OBSERVER || !t->region.writable)
		return -EPERM;
	uint64_t me = self_ident();
	if (!me)
		return -EOVERFLOW;
	/* Start at a pid-dependent slot so processes spread over the table. */
	uint32_t start = (uint32_t)ident_pid(me) % t->nslots;
	for (int pass = 0; pass < 2; pass++) {
		for (uint32_t k = 0; k < t->nslots; k++) {
			uint32_t i = (start + k) % t->nslots;
			if (claim_slot(t, r, me, i) == 0)
				return 0;
		}
		if (pass == 0) {
			unsigned cleared = 0;
			int rc = shm_readers_clear_stale(t, &cleared);
			if (rc)
				return rc;
			if (cleared == 0)
				break;
		}
	}
	return SHMEX_ENOREADERSLOT;
}

int shm_readers_enter(struct shm_reader *r)
{
	return shm_readers_enter_inline(r);
}

int shm_readers_leave(struct shm_reader *r)
{
	return shm_readers_leave_inline(r);
}

int shm_readers_unregister(struct shm_reader *r)
{
	int rc = 0;
	if (!r->slot)
		return 0;
	if (r->nesting > 0) {
		r->nesting = 1;
		rc = shm_readers_leave_inline(r);
	}
	if (!r->lost) {
		uint64_t expected = r->ident;
		/* RD9: acq_rel CAS owner -> 0; pairs with RD5 of the next
		 * claimer (our epoch reset at RD7 is visible to it). */
		if (load_relaxed(&r->slot->gen) != r->gen ||
		    !cas_acq_rel(&r->slot->owner, &expected, 0))
			rc = SHMEX_ESLOTLOST;
	}
	memset(r, 0, sizeof(*r));
	return rc;
}

/* --- writer side ---------------------------------------------------------- */

uint64_t shm_readers_advance(struct shm_readers *t)
{
	if (t->epoch < SHM_READERS_EPOCH_MAX)
		t->epoch++;
	/* RD3: release store of the new epoch; pairs with RD1.  Every unlink
	 * the writer did before is visible to a reader that reads it. */
	store_release(&t->hdr->epoch, t->epoch);
	return t->epoch;
}

void shm_readers_set_reap_interval(struct shm_readers *t, uint64_t ns)
{
	t->reap_interval_ns = ns;
	t->next_reap_ns = 0;
}

/* Liveness check of an active slot during a reap pass: only a slot that
 * stayed in the same section since the previous pass costs a /proc read.
 * True when slot i was reaped. */
static bool stuck_and_dead(struct shm_readers *t, uint32_t i, uint64_t owner,
			   uint64_t e)
{
	struct shm_readers_seen *sn = &t->seen[i];
	bool same = sn->owner == owner && sn->epoch == e;
	sn->owner = owner;
	sn->epoch = e;
	if (!same || owner_alive(owner))
		return false;
	return reap_slot(t, i, owner);
}

uint64_t shm_readers_safe_epoch(struct shm_readers *t)
{
	const uint64_t gp = t->epoch;
	uint64_t safe = gp;
	bool reap = false;
	if (t->role != SHM_READERS_WRITER)
		return 1;
	if (t->reap_interval_ns == 0) {
		reap = true;
	} else {
		uint64_t now = now_coarse_ns();
		if (now >= t->next_reap_ns) {
			reap = true;
			t->next_reap_ns = now + t->reap_interval_ns;
		}
	}
	/* RD4: full fence; pairs with RD2.  Orders the writer's unlinks and
	 * RD3 before the slot loads below (store-buffering pair: a reader
	 * not seen in its slot sees the unlinks). */
	fence_full();
	for (uint32_t i = 0; i < t->nslots; i++) {
		struct shm_reader_slot_sh *s = &t->slots[i];
		/* RD8a: acquire load of the owner; pairs with RD5, RD9 and
		 * RD11.  A free slot holds nobody back. */
		uint64_t owner = load_acquire(&s->owner);
		if (owner == 0)
			continue;
		/* RD8: acquire load of the section word; pairs with RD7 (a
		 * reader's section ended before we reuse its nodes). */
		uint64_t e = shm_readers_section_epoch(load_acquire(&s->section));
		if (e == 0) {
			if (reap && i == t->idle_cursor % t->nslots &&
			    !owner_alive(owner))
				(void)reap_slot(t, i, owner);
			continue;
		}
		if (reap && stuck_and_dead(t, i, owner, e))
			continue;
		if (e > gp) {
			/* Corrupt (readers never see a future epoch): the
			 * oldest possible, so nothing is reused early. */
			t->bad_epochs++;
			e = 1;
		}
		if (e < safe)
			safe = e;
	}
	if (reap)
		t->idle_cursor++;
	t->safe = safe;
	return safe;
}

/* --- administration -------------------------------------------------------- */

int shm_readers_clear_stale(struct shm_readers *t, unsigned *cleared)
{
	unsigned n = 0;
	if (t->role == SHM_READERS_OBSERVER || !t->region.writable)
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

int shm_readers_evict(struct shm_readers *t, uint32_t slot)
{
	if (t->role == SHM_READERS_OBSERVER || !t->region.writable)
		return -EPERM;
	if (slot >= t->nslots)
		return SHMEX_EBADINDEX;
	uint64_t owner = load_acquire(&t->slots[slot].owner); /* RD8a */
	if (owner == 0)
		return -ENOENT;
	return reap_slot(t, slot, owner) ? 0 : -EAGAIN;
}

int shm_readers_list(const struct shm_readers *t, struct shm_reader_info *out,
		     size_t max, size_t *n)
{
	size_t k = 0;
	/* Relaxed: a display snapshot; each field is read once. */
	uint64_t gp = t->role == SHM_READERS_WRITER ? t->epoch
						    : load_relaxed(&t->hdr->epoch);
	for (uint32_t i = 0; i < t->nslots; i++) {
		const struct shm_reader_slot_sh *s = &t->slots[i];
		uint64_t owner = load_acquire(&s->owner); /* RD8a */
		if (owner == 0)
			continue;
		if (k < max) {
			struct shm_reader_info *o = &out[k];
			memset(o, 0, sizeof(*o));
			o->slot = i;
			o->pid = ident_pid(owner);
			o->start = ident_start(owner);
			o->epoch = shm_readers_section_epoch(
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

void shm_readers_stats(const struct shm_readers *t, struct shm_readers_stats *st)
{
	memset(st, 0, sizeof(*st));
	bool writer = t->role == SHM_READERS_WRITER;
	/* Relaxed: display snapshot. */
	st->epoch = writer ? t->epoch : load_relaxed(&t->hdr->epoch);
	st->nslots = t->nslots;
	st->reaped = load_relaxed(&t->hdr->reaped);
	st->bad_epochs = t->bad_epochs;
	uint64_t safe = st->epoch;
	for (uint32_t i = 0; i < t->nslots; i++) {
		const struct shm_reader_slot_sh *s = &t->slots[i];
		if (load_acquire(&s->owner) == 0) /* RD8a */
			continue;
		st->registered++;
		uint64_t e = shm_readers_section_epoch(
			load_acquire(&s->section)); /* RD8 */
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

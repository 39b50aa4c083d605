/*
 * shm_rcu: the cross-process RCU reader table of one shard.
 *
 * liburcu's reader registry lives in each process's private memory, so its
 * synchronize_rcu cannot see readers in other processes.  Each shard
 * therefore has a small shared region /shmex.<instance>.readers.<k> (kind
 * SHM_KIND_READERS) that readers map read-write while the book region stays
 * read-only for them.  It holds the shard's global epoch, written only by
 * the shard's matcher, and one cache-line slot per registered reader: owner
 * (pid + process start time), the epoch it is reading, nesting.
 *
 * Epoch-based reclamation (full argument in docs/concurrency.md, "Reader
 * protocol"), in one of two modes chosen by the table's creator and recorded
 * in the table header (every process follows it):
 *
 *   fence mode
 *   reader  enter: e = gp [RD1]; slot epoch 0 -> e by a full-barrier CAS
 *           [RD2]; read the book; leave: slot epoch e -> 0 by a
 *           full-barrier CAS [RD7].
 *   writer  unlink nodes (release); retire them tagged E =
 *           shm_rcu_epoch(); shm_rcu_advance() stores gp = E + 1
 *           [RD3]; shm_rcu_safe_epoch() runs a full fence [RD4], scans
 *           the slots and returns S = min(active epochs, gp); a node retired
 *           with tag E may be reused when E < S.
 *
 *   asymmetric mode (membarrier; the default where the kernel has it)
 *   reader  enter: e = gp [RD1]; release store of the slot epoch e, then a
 *           compiler barrier only [RD13]; leave: check the slot is still
 *           ours, release store of 0 [RD14].  No locked instruction.
 *   writer  as above, but the reader's missing full barrier is supplied by
 *           membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) [RD15], issued from
 *           safe_epoch at most once per barrier interval (default 1 ms) on
 *           average, in bursts of up to 16 after a quiet period, or sooner
 *           when the caller's pools are low
 *           (shm_rcu_safe_epoch_urgent).  S = min(active epochs, C)
 *           where C, the covered epoch, is the epoch at the last membarrier:
 *           nodes retired after it wait for the next one.
 *
 * The writer never waits for a reader: safe_epoch is a poll, and the
 * membarrier call costs a bounded, amortised system call.  A stalled reader
 * only delays reuse.  Slots whose owner died (pid gone, start time changed,
 * or zombie) are reaped by the writer's poll (rate-limited: /proc is read
 * only for slots stuck since the previous reap pass, at most once per reap
 * interval), by shm_rcu_clear_stale (shmex-query readers --clear-stale)
 * and by a register call that finds the table full.  A reader whose slot was
 * taken from it while it was alive (evicted by an operator, or judged dead
 * by a /proc that hides it) is never harmed silently: its next enter or
 * leave returns SHMEX_ESLOTLOST, meaning "what you read in this section may
 * be inconsistent; unregister, register again and retry".
 *
 * Concurrency: one writer handle per shard (the matcher; SHMEX_EINUSE for a
 * second live one).  Any number of processes attach as readers; a struct
 * shm_rcu_reader is one registration and belongs to one thread (a process that
 * reads with several threads registers once per thread; a process that
 * reads several shards registers in each shard's table).  List, stats and
 * clear_stale may run in any process at any time.
 *
 * Limits: pid < 2^22 (Linux PID_MAX_LIMIT) and start time < 2^42 ticks, so
 * that the owner fits one CAS-able word; readers in another pid namespace
 * than the writer cannot be checked for liveness (they would be judged dead
 * and get SHMEX_ESLOTLOST).  Asymmetric mode needs Linux >= 4.16
 * (MEMBARRIER_CMD_GLOBAL_EXPEDITED); without it, or with
 * SHMEX_READERS_FENCE=1 in the creator's environment, tables are created in
 * fence mode.
 */
#ifndef SHMEX_SHM_RCU_H
#define SHMEX_SHM_RCU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shm/shm_atomic.h"
#include "shm/shm_proc.h"
#include "shm/shm_region.h"

#define SHM_RCU_DEFAULT_SLOTS 64u
#define SHM_RCU_MAX_SLOTS 4096u
/* Default interval between the writer's liveness passes (/proc reads). */
#define SHM_RCU_REAP_INTERVAL_NS 100000000ull
/* A reader's lease on one read-side section: a live reader seen in the
 * same section for longer than this (a process stopped with SIGSTOP, a
 * debugger, a stuck thread) loses its slot, so reclamation goes past it;
 * it learns it at leave (SHMEX_ESLOTLOST), re-registers and retries.
 * Sections of shmex's readers last microseconds. */
#define SHM_RCU_LEASE_NS 1000000000ull
/* Region header capacities. */
/* Asymmetric mode: the writer's membarrier calls are limited to one per
 * interval on average, with bursts of up to BURST calls after a quiet
 * period; an urgent poll waits only URGENT since the previous call. */
#define SHM_RCU_BARRIER_INTERVAL_NS 1000000ull
#define SHM_RCU_BARRIER_BURST 16u
#define SHM_RCU_BARRIER_URGENT_NS 50000ull
/* Environment variable: set (and not "0") to create tables in fence mode
 * and to make this process's readers use the fence path. */
#define SHM_RCU_FENCE_ENV "SHMEX_READERS_FENCE"
#define SHM_RCU_CAP_SLOTS 0 /* capacity[0]: number of slots */
#define SHM_RCU_CAP_SHARD 1 /* capacity[1]: shard index */

/* Owner words are process identities (shm_proc_ident); 0 = free slot. */

/* Fence protocol of a table (hdr.mode). */
enum shm_rcu_mode {
	SHM_RCU_MODE_FENCE = 0, /* readers: full-barrier CAS */
	SHM_RCU_MODE_ASYM = 1,  /* readers: plain stores; writer: membarrier */
	SHM_RCU_MODE_AUTO = 2,  /* shm_rcu_create_mode only: ASYM unless
				     * unsupported or SHMEX_READERS_FENCE is set */
};

/* First cache line of the body. */
struct shm_rcu_hdr_sh {
	/* Global epoch: starts at 1, only grows, 0 is never valid.
	 * W: matcher (shm_rcu_advance), release [RD3];
	 * R: readers at outermost enter, acquire [RD1].  The writer keeps a
	 * private copy and never reads this field back (readers could
	 * corrupt it). */
	uint64_t epoch;
	/* Immutable after publish (creator, before R0). */
	uint32_t nslots;
	uint32_t shard;
	/* Owner word of the live writer handle, 0 when none.
	 * W: writer at attach/detach, acq_rel CAS [RD12] (advisory: a second
	 * writer is refused while the first is alive); R: writer attach,
	 * acquire [RD12]; tools. */
	uint64_t writer;
	/* Slots reaped so far.  W: any reaper, relaxed fetch_add (a
	 * statistic, orders nothing); R: tools. */
	uint64_t reaped;
	/* enum shm_rcu_mode: FENCE or ASYM (never AUTO).  Immutable:
	 * W: creator before publish (R0); R: every attach after A0 (relaxed),
	 * validated; readers and a restarted writer follow it. */
	uint32_t mode;
	uint32_t pad32;
	/* membarrier calls issued by writers of this table.  W: writer,
	 * relaxed (a statistic); R: tools. */
	uint64_t barriers;
	uint64_t pad[2];
} shm_aligned;

/* Section word of a slot: (claim generation mod 2^12) << 52 | epoch.
 * Epoch 0 means "not in a read-side section".  The generation bits make
 * the word differ between two owners of one slot even when both read the
 * same epoch, so a CAS by a reader that lost its slot cannot succeed on
 * the new owner's word (no ABA short of 4096 reclaims of one slot during
 * one section). */
#define SHM_RCU_GEN_SHIFT 52
#define SHM_RCU_EPOCH_MASK ((UINT64_C(1) << SHM_RCU_GEN_SHIFT) - 1)
/* Largest epoch: 2^52 - 1 advances, 28 years at 5 million per second. */
#define SHM_RCU_EPOCH_MAX SHM_RCU_EPOCH_MASK

static inline uint64_t shm_rcu_section_epoch(uint64_t section)
{
	return section & SHM_RCU_EPOCH_MASK;
}

static inline uint64_t shm_rcu_section_idle(uint32_t gen)
{
	return (uint64_t)(gen & 0xfffu) << SHM_RCU_GEN_SHIFT;
}

/* One reader slot: one cache line, written by its owner on every section. */
struct shm_rcu_slot_sh {
	/* Owner identity, 0 = free.
	 * W: claimer CAS 0 -> id, acq_rel [RD5]; owner CAS id -> 0 at
	 * unregister, acq_rel [RD9]; reaper CAS id -> 0, acq_rel [RD11].
	 * R: writer scan, acquire [RD8a]; owner's check, acquire [RD6]. */
	uint64_t owner;
	/* Section word (see above): the epoch of the owner's current
	 * read-side section, 0 outside one, tagged with the generation.
	 * W: fence mode: owner CAS idle -> idle|e at enter [RD2] and back at
	 * leave [RD7] (liburcu uatomic_cmpxchg: full barrier both sides);
	 * asymmetric mode: owner release store at enter [RD13] and leave
	 * [RD14]; claimer xchg -> idle of its generation after claiming
	 * [RD5b].  R: writer scan, acquire [RD8]; a word whose generation is
	 * not the slot's holds reuse back (it may hide another section). */
	uint64_t section;
	/* Claim generation, bumped once when a claim ends.  W: reaper CAS
	 * g -> g + 1 before freeing the owner [RD10] (published by RD11's
	 * release), owner CAS g -> g + 1 at unregister [RD9]; R: claimer
	 * after RD5, owner at enter/leave after RD6, writer scan after RD8
	 * (relaxed, ordered by those acquires), reaper before RD8a
	 * (acquire). */
	uint32_t gen;
	/* Nesting depth, display only.  W: owner, relaxed; R: tools. */
	uint32_t nesting;
	uint64_t pad[5];
} shm_aligned;

_Static_assert(sizeof(struct shm_rcu_hdr_sh) == SHM_CACHE_LINE,
	       "reader table header is one cache line");
_Static_assert(sizeof(struct shm_rcu_slot_sh) == SHM_CACHE_LINE,
	       "reader slot is one cache line");
_Static_assert(offsetof(struct shm_rcu_hdr_sh, mode) == 32,
	       "table mode offset is part of the layout");
_Static_assert(offsetof(struct shm_rcu_slot_sh, section) == 8,
	       "slot section offset is part of the layout");
_Static_assert(offsetof(struct shm_rcu_slot_sh, gen) == 16,
	       "slot gen offset is part of the layout");

/* Body size for n slots. */
static inline size_t shm_rcu_body_size(uint32_t nslots)
{
	return sizeof(struct shm_rcu_hdr_sh) +
	       (size_t)nslots * sizeof(struct shm_rcu_slot_sh);
}

enum shm_rcu_role {
	SHM_RCU_OBSERVER = 0, /* read-only mapping: list and stats */
	SHM_RCU_READER = 1,   /* read-write: register, clear_stale */
	SHM_RCU_WRITER = 2,   /* the shard's matcher */
};

/* Per-process handle of one shard's reader table (never in shared memory). */
struct shm_rcu {
	struct shm_region region;
	struct shm_rcu_hdr_sh *hdr;
	struct shm_rcu_slot_sh *slots;
	uint32_t nslots; /* validated at attach, never re-read */
	uint32_t shard;
	enum shm_rcu_role role;
	/* Writer only. */
	uint64_t ident; /* our owner word in hdr->writer */
	uint64_t epoch; /* private copy of the global epoch */
	uint64_t safe;  /* last safe epoch computed */
	uint64_t reap_interval_ns;
	uint64_t next_reap_ns;
	uint32_t idle_cursor;      /* round-robin liveness check of idle slots */
	uint64_t reaped;           /* slots this handle reaped */
	uint64_t bad_epochs;       /* out-of-range slot epochs seen */
	struct shm_rcu_seen *seen; /* per slot, last reap pass */
	/* Mode (all roles, from hdr.mode at attach) and, for the writer in
	 * asymmetric mode, the membarrier bookkeeping. */
	enum shm_rcu_mode mode;
	uint64_t covered; /* tags below it: membarrier done */
	uint64_t barrier_interval_ns;
	uint64_t barrier_urgent_ns;
	uint32_t barrier_burst;
	uint64_t barrier_tat_ns; /* token bucket: theoretical arrival */
	uint64_t last_barrier_ns;
	uint64_t barriers;       /* membarrier calls by this handle */
	uint64_t barrier_ns;     /* time spent in them */
	uint64_t barrier_errors; /* failed calls (nothing covered) */
	uint64_t held;           /* scans that found a foreign word */
	uint64_t repaired;       /* slots freed because of one */
	uint64_t lease_ns;       /* writer: see SHM_RCU_LEASE_NS; 0 none */
	uint64_t revoked;        /* writer: live readers whose lease ended */
	/* Writer that created the table: its own descriptor of the object
	 * (-1 otherwise), so a table a reader truncated can be restored to
	 * its size (SIGBUS guard, shm_rcu.c), and how often that happened. */
	int fd;
	uint64_t truncations;
	uint8_t hdr_copy[SHM_REGION_HDR_SIZE + sizeof(struct shm_rcu_hdr_sh)];
};

/* One registration: a claimed slot, used by one thread. */
struct shm_rcu_reader {
	struct shm_rcu_slot_sh *slot;
	const uint64_t *gp; /* &hdr->epoch */
	uint64_t ident;     /* our owner word */
	uint64_t idle;      /* our section word outside a section */
	uint64_t epoch;     /* epoch of the current section */
	uint32_t gen;       /* slot generation when claimed */
	uint32_t nesting;   /* authoritative nesting depth */
	uint32_t index;     /* slot index */
	bool lost;          /* the slot was taken from us */
	bool asym;          /* asymmetric fast path (see register) */
};

/* One claimed slot, for shmex-query readers. */
struct shm_rcu_reader_info {
	uint32_t slot;
	int32_t pid;
	uint64_t start; /* process start time (clock ticks) */
	uint64_t epoch; /* 0: not in a read-side section */
	uint64_t lag;   /* global epoch - epoch, in a section */
	uint32_t nesting;
	uint32_t gen;
	bool in_section;
	bool alive; /* (pid, start) is a live process */
};

struct shm_rcu_stats {
	uint64_t epoch;      /* global epoch (writer: private copy) */
	uint64_t safe_epoch; /* writer: last computed; else computed now */
	uint32_t nslots;
	uint32_t registered;     /* claimed slots */
	uint32_t active;         /* slots inside a read-side section */
	uint64_t max_lag;        /* largest lag of an active slot */
	uint64_t reaped;         /* slots reaped (all processes) */
	uint64_t bad_epochs;     /* writer: out-of-range epochs seen */
	enum shm_rcu_mode mode;  /* the table's mode */
	uint64_t covered_epoch;  /* writer, asymmetric: epoch at the last
				       * membarrier (or reader-free scan) */
	uint64_t barriers;       /* membarrier calls (all writers) */
	uint64_t barrier_ns;     /* writer: time in its own calls */
	uint64_t barrier_errors; /* writer: failed calls */
	uint64_t held;           /* writer: scans that met a foreign word */
	uint64_t repaired;       /* writer: slots freed for one */
	uint64_t revoked;        /* writer: live readers revoked for
				  * holding one section past the lease */
	uint64_t truncations;    /* writer: times the table was found
				  * truncated (by a reader) and restored */
};

/* Creates the shard's table (nslots in 1..SHM_RCU_MAX_SLOTS, 0 means
 * the default), epoch 1, all slots free, and publishes it.  The handle is
 * the writer handle; a supervisor that only creates detaches it, and the
 * matcher then attaches as SHM_RCU_WRITER.  Same as
 * shm_rcu_create_mode(..., SHM_RCU_MODE_AUTO). */
int shm_rcu_create(struct shm_rcu *t, const char *instance, unsigned shard,
		   uint32_t nslots, mode_t mode) __attribute__((warn_unused_result));

/* As shm_rcu_create, with the fence protocol chosen explicitly: FENCE,
 * ASYM (-ENOSYS when the kernel lacks MEMBARRIER_CMD_GLOBAL_EXPEDITED), or
 * AUTO (ASYM when supported and SHMEX_READERS_FENCE is unset or "0"). */
int shm_rcu_create_mode(struct shm_rcu *t, const char *instance, unsigned shard,
			uint32_t nslots, mode_t perm, enum shm_rcu_mode mode)
	__attribute__((warn_unused_result));

/* True when this kernel supports the asymmetric mode (cached). */
bool shm_rcu_asym_supported(void);

/* The table's mode (FENCE or ASYM), as recorded in its header. */
static inline enum shm_rcu_mode shm_rcu_table_mode(const struct shm_rcu *t)
{
	return t->mode;
}

/* Attaches an existing table.  Observers map it read-only.  A writer
 * continues from the epoch stored in the region (SHMEX_EBADINDEX when that
 * is out of range) and gets SHMEX_EINUSE while another writer is alive.
 * The mode comes from the header: SHMEX_EBADINDEX when it is not a known
 * one; -ENOSYS for a writer of an asymmetric table on a kernel without
 * membarrier. */
int shm_rcu_attach(struct shm_rcu *t, const char *instance, unsigned shard,
		   enum shm_rcu_role role) __attribute__((warn_unused_result));

/* Unmaps (a writer first gives up hdr->writer).  Registrations made through
 * the handle must be unregistered before.  Safe on a zeroed handle. */
void shm_rcu_detach(struct shm_rcu *t);

/* Removes the name (like shm_region_unlink): 0 or -ENOENT. */
int shm_rcu_unlink(const char *instance, unsigned shard);

/* --- reader side ------------------------------------------------------ */

/* Claims a free slot for the calling thread.  When none is free, reaps the
 * slots of dead owners and tries once more: SHMEX_ENOREADERSLOT when the
 * table is still full (no other reader is affected).  -EPERM for an
 * observer handle; -EOVERFLOW when pid or start time do not fit.
 * In an asymmetric table the process registers for membarrier first
 * (MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, [RD16]) and the registration
 * uses the asymmetric fast path (r->asym); if that registration fails, or
 * SHMEX_READERS_FENCE is set, it uses the fence path, which is correct in
 * either kind of table. */
int shm_rcu_register(struct shm_rcu *t, struct shm_rcu_reader *r)
	__attribute__((warn_unused_result));

/* Begins a read-side section; sections nest.  0, or SHMEX_ESLOTLOST when
 * the slot was taken from this reader: the section is then NOT entered
 * (do not read, do not call leave), and every later enter fails the same
 * way until the reader unregisters and registers again.
 * The inline fast path is shm_rcu_enter_inline (shm_rcu_inline.h). */
int shm_rcu_enter(struct shm_rcu_reader *r) __attribute__((warn_unused_result));

/* Ends a read-side section.  0; SHMEX_ESLOTLOST when the slot was taken
 * during the section (what was read may be inconsistent: unregister,
 * register again, retry); -EINVAL when no section is open. */
int shm_rcu_leave(struct shm_rcu_reader *r) __attribute__((warn_unused_result));

/* Leaves any open section and frees the slot.  0, or SHMEX_ESLOTLOST when
 * the slot had been taken and this is the first time it is reported. */
int shm_rcu_unregister(struct shm_rcu_reader *r) __attribute__((warn_unused_result));

/* --- writer side (the shard's matcher) -------------------------------- */

/* Current epoch: the tag of nodes retired now. */
static inline uint64_t shm_rcu_epoch(const struct shm_rcu *t)
{
	return t->epoch;
}

/* Publishes epoch + 1 [RD3] and returns it.  Call after unlinking and
 * retiring a batch of nodes (at most once per matcher loop iteration that
 * retired something), before shm_rcu_safe_epoch.  Saturates at
 * SHM_RCU_EPOCH_MAX (reuse then stops: a bounded-memory error, never an
 * unsafe reuse). */
uint64_t shm_rcu_advance(struct shm_rcu *t);

/* Poll, never waits: full fence [RD4], then the oldest epoch still read
 * (min over active slots, or the current epoch if none).  Nodes retired
 * with a tag < the result may be reused.  Reaps dead owners at most once
 * per reap interval.  Corrupt slot contents never crash it: an epoch
 * greater than the current one counts as the oldest possible (reuse is
 * delayed, never made unsafe) until its owner is reaped; a section word of
 * another claim generation holds reuse back until its owner writes it
 * again, and a slot that keeps one for a whole reap interval is freed.
 * Asymmetric mode: the result is also at most the covered epoch, which a
 * membarrier call [RD15] moves to the current epoch, rate-limited by the
 * barrier interval and burst (and at once while no slot is claimed). */
uint64_t shm_rcu_safe_epoch(struct shm_rcu *t);

/* As shm_rcu_safe_epoch, for a caller whose free pools are low: in
 * asymmetric mode the membarrier is issued now if an epoch is uncovered,
 * subject only to the urgent interval (default 50 us). */
uint64_t shm_rcu_safe_epoch_urgent(struct shm_rcu *t);

/* Interval between liveness passes of safe_epoch (0: every poll). */
void shm_rcu_set_reap_interval(struct shm_rcu *t, uint64_t ns);

/* Writer: the lease of one read-side section (SHM_RCU_LEASE_NS by default;
 * 0: none).  Checked at the reap pass, so a revocation happens between
 * lease and lease + reap interval after the section began. */
void shm_rcu_set_lease(struct shm_rcu *t, uint64_t ns);

/* Asymmetric mode: safe_epoch issues at most one membarrier call per
 * interval_ns on average (default 1 ms; bursts: see below), and
 * safe_epoch_urgent waits at least urgent_ns (default 50 us) since the
 * previous call; 0 means "whenever an epoch is uncovered".  Values are
 * capped at 2^42 ns (73 minutes).  Resets the bucket. */
void shm_rcu_set_barrier_interval(struct shm_rcu *t, uint64_t interval_ns,
				  uint64_t urgent_ns);

/* Asymmetric mode: calls safe_epoch may issue back to back after a quiet
 * period (default 16, at most 1024; 1 gives a strict minimum gap of one
 * interval).  At most burst + T / interval calls in any time T. */
void shm_rcu_set_barrier_burst(struct shm_rcu *t, uint32_t burst);

/* --- administration (any role but observer unless stated) ------------- */

/* Frees every slot whose owner is dead; *cleared gets the count (may be
 * NULL).  -EPERM for an observer. */
int shm_rcu_clear_stale(struct shm_rcu *t, unsigned *cleared)
	__attribute__((warn_unused_result));

/* Frees one slot even though its owner may be alive (operator override for
 * a stuck reader); that reader gets SHMEX_ESLOTLOST.  -ENOENT when the slot
 * is free, SHMEX_EBADINDEX when out of range, -EAGAIN on a concurrent
 * change. */
int shm_rcu_evict(struct shm_rcu *t, uint32_t slot) __attribute__((warn_unused_result));

/* Claimed slots into out[0..max) (any role); *n gets how many were found
 * (may exceed max).  Reads /proc for each to fill `alive`. */
int shm_rcu_list(const struct shm_rcu *t, struct shm_rcu_reader_info *out, size_t max,
		 size_t *n) __attribute__((warn_unused_result));

/* Counters (any role). */
void shm_rcu_stats(const struct shm_rcu *t, struct shm_rcu_stats *st);

#endif

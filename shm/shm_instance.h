/*
 * shm_instance: the shared memory that ties one exchange's processes
 * together: the "control" region (configuration, run state, who is
 * attached, one doorbell per shard and one per gateway) and the "rings"
 * region (one request ring per gateway x shard, one reply ring per
 * shard x gateway).
 *
 *   /shmex.<instance>.control   kind SHM_KIND_CONTROL   struct shm_control_sh
 *   /shmex.<instance>.rings     kind SHM_KIND_RINGS     2*G*S rings
 *
 * Ring numbering inside the rings region (each ring shm_ring_bytes(cap)
 * bytes, back to back, 128-byte aligned):
 *
 *   request ring gateway g -> shard s:  index g*S + s
 *   reply ring   shard s -> gateway g:  index G*S + s*G + g
 *
 * A request ring (g, s) is bound to shard s's doorbell (matcher s sleeps on
 * it; every gateway rings it), a reply ring (s, g) to gateway g's doorbell.
 * Each ring has one producer and one consumer, so a gateway that crashes
 * affects only its own rings: the matcher keeps draining the other
 * gateways' rings, a restarted gateway re-attaches and continues from the
 * published heads and tails, and whatever a dying gateway left half-written
 * in a slot was never published.  (A gateway maps the whole rings region
 * writable, so this isolates crashes, not malice; against a hostile writer
 * the consumers still validate every index and every message.)
 *
 * The configuration is immutable after creation.  It carries spare room
 * (limits[], cfg_reserved[], run_reserved[], the member slots' reserved
 * words) so that the supervisor can record more without a layout change
 * of the fields below.
 *
 * Concurrency: create and unlink from the supervisor; attach/detach from any
 * process at any time after create; accessors are process-local.  The only
 * mutable shared fields are the doorbells (shm_doorbell.h), the member
 * slots and `stopping` (see their comments).
 */
#ifndef SHMEX_SHM_INSTANCE_H
#define SHMEX_SHM_INSTANCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shm/shm_atomic.h"
#include "shm/shm_doorbell.h"
#include "shm/shm_region.h"
#include "shm/shm_ring.h"

#define SHM_INSTANCE_SHARDS_MAX 64u
#define SHM_INSTANCE_GATEWAYS_MAX 64u
#define SHM_INSTANCE_RING_CAPACITY_DEFAULT 1024u
/* Upper bound on the rings region (G*S*2 rings), a sanity limit. */
#define SHM_INSTANCE_RINGS_BYTES_MAX (UINT64_C(1) << 32)
#define SHM_INSTANCE_LIMITS 16
#define SHM_INSTANCE_REGION_CONTROL "control"
#define SHM_INSTANCE_REGION_RINGS "rings"

/* Names of limits[] entries; the supervisor fills what it chose, 0 means
 * "not set", the rest are free for later use. */
enum shm_instance_limit {
	SHM_LIMIT_ORDERS_PER_SHARD = 0,
	SHM_LIMIT_LEVELS_PER_SHARD = 1,
	SHM_LIMIT_ACCOUNTS = 2,
	SHM_LIMIT_SYMBOLS = 3,
	SHM_LIMIT_READER_SLOTS = 4,
	SHM_LIMIT_FILLS_PER_SHARD = 5,
	SHM_LIMIT_POSITIONS_PER_SHARD = 6,
	SHM_LIMIT_SYMBOLS_PER_SHARD = 7,
};

/* What the creator asks for (private, never in shared memory). */
struct shm_instance_cfg {
	uint32_t nshards;       /* 1..SHM_INSTANCE_SHARDS_MAX */
	uint32_t ngateways;     /* 1..SHM_INSTANCE_GATEWAYS_MAX */
	uint32_t ring_capacity; /* power of two; 0: the default */
	mode_t mode;            /* 0: 0660 */
	uint64_t limits[SHM_INSTANCE_LIMITS];
};

/* One process attached in a role (one cache line). */
struct shm_instance_member_sh {
	/* W: the member at attach (its pid) and detach (0), release [INS3]
	 * after `start`; R: supervisor and tools, acquire [INS4] before
	 * `start`.  0: nobody attached. */
	int32_t pid;
	uint32_t pad0;
	/* shm_proc start time of pid.  W: the member, relaxed, before
	 * INS3; R: after INS4.  A reader that races a re-attach may see a
	 * mismatched pair, which reads as "dead": check twice. */
	uint64_t start;
	/* Who holds the slot, as one word: (start << 22) | pid, 0 = free.
	 * Claimed with a CAS [INS5] from 0 or from a dead owner, so at most
	 * one live process is gateway g (or matcher k) and the rings keep
	 * one producer and one consumer; freed with a CAS at detach.
	 * W: members, CAS acq_rel [INS5]; R: members, acquire in the CAS. */
	uint64_t owner;
	uint64_t reserved[5];
} shm_aligned;

/* A doorbell in its own 128-byte pair of lines. */
struct shm_instance_db_sh {
	struct shm_doorbell_sh db;
	uint8_t pad[SHM_CACHE_LINE];
} __attribute__((aligned(2 * SHM_CACHE_LINE)));

/* Body of the control region. */
struct shm_control_sh {
	/* Lines 0-3: configuration.  W: creator, before region R0; R:
	 * attachers after region A0, validated once.  Immutable. */
	uint32_t nshards;
	uint32_t ngateways;
	uint32_t ring_capacity;
	uint32_t flags;         /* 0; reserved */
	uint64_t ring_bytes;    /* shm_ring_bytes(ring_capacity) */
	uint64_t limits[SHM_INSTANCE_LIMITS];
	uint64_t cfg_reserved[13];
	/* Line 4: run state. */
	/* 1 once the supervisor began a clean shutdown.  W: supervisor,
	 * release [INS1]; R: every process, acquire [INS2].  0 -> 1 only. */
	uint32_t stopping;
	uint32_t pad0;
	uint64_t run_reserved[7];
	uint8_t pad1[SHM_CACHE_LINE];
	/* Lines 6...: who is attached. */
	struct shm_instance_member_sh gateways[SHM_INSTANCE_GATEWAYS_MAX];
	struct shm_instance_member_sh shards[SHM_INSTANCE_SHARDS_MAX];
	/* Doorbells: shard s's matcher sleeps on shard_db[s]; gateway g on
	 * gateway_db[g] (shm_doorbell.h has the protocol). */
	struct shm_instance_db_sh shard_db[SHM_INSTANCE_SHARDS_MAX];
	struct shm_instance_db_sh gateway_db[SHM_INSTANCE_GATEWAYS_MAX];
};
_Static_assert(offsetof(struct shm_control_sh, limits) == 24, "control layout");
_Static_assert(offsetof(struct shm_control_sh, stopping) == 256,
	       "control layout");
_Static_assert(offsetof(struct shm_control_sh, gateways) == 384,
	       "control layout");
_Static_assert(offsetof(struct shm_control_sh, shard_db) == 8576,
	       "control layout");
_Static_assert(sizeof(struct shm_control_sh) == 8576 + 2 * 64 * 128,
	       "control layout");

enum shm_instance_role {
	SHM_ROLE_SUPERVISOR = 0, /* read-write; the creator's role */
	SHM_ROLE_GATEWAY = 1,    /* read-write; index = gateway number */
	SHM_ROLE_MATCHER = 2,    /* read-write; index = shard number */
	SHM_ROLE_OBSERVER = 3,   /* read-only mappings (stats tools) */
};

/* Per-process handle. */
struct shm_instance {
	struct shm_region control;
	struct shm_region rings;
	struct shm_control_sh *ctl;
	/* Validated copies of the configuration. */
	uint32_t nshards;
	uint32_t ngateways;
	uint32_t ring_capacity;
	size_t ring_bytes;
	enum shm_instance_role role;
	uint32_t index;
	char err[256]; /* after a failure: what failed and why */
};

/*
 * Creates both regions (O_EXCL, mode cfg->mode), lays out every ring and
 * doorbell, publishes rings then control, and leaves h attached as
 * SHM_ROLE_SUPERVISOR.  Errors: -EINVAL (bad configuration), -EEXIST (an
 * instance of that name exists: see shm_region_remove_stale), -ENOSPC and
 * other region errors; on failure nothing is left in /dev/shm.
 */
int shm_instance_create(const char *instance,
			const struct shm_instance_cfg *cfg,
			struct shm_instance *h)
	__attribute__((warn_unused_result));

/*
 * Attaches to a running instance in a role.  index is the gateway or shard
 * number for SHM_ROLE_GATEWAY / SHM_ROLE_MATCHER (SHMEX_EBADINDEX when out
 * of range) and is ignored otherwise; those two roles record their pid and
 * start time in their member slot.  SHM_ROLE_OBSERVER maps read-only.
 * Errors: region errors (-ENOENT, SHMEX_EBADMAGIC, ...), SHMEX_EBADLAYOUT
 * when the configuration is inconsistent with the regions.
 */
int shm_instance_attach(const char *instance, enum shm_instance_role role,
			uint32_t index, struct shm_instance *h)
	__attribute__((warn_unused_result));

/* Clears the member slot if it is still ours, then unmaps.  Safe on a
 * zeroed or failed handle. */
void shm_instance_detach(struct shm_instance *h);

/* Unlinks both regions (mappings stay valid until detached): 0 when
 * something was removed, -ENOENT when neither existed. */
int shm_instance_unlink(const char *instance);

/* Attaches out to request ring gateway g -> shard s, bound to shard s's
 * doorbell.  SHMEX_EBADINDEX when g or s is out of range; ring errors. */
int shm_instance_request_ring(struct shm_instance *h, uint32_t g, uint32_t s,
			      struct shm_ring *out)
	__attribute__((warn_unused_result));

/* Attaches out to reply ring shard s -> gateway g, bound to gateway g's
 * doorbell. */
int shm_instance_reply_ring(struct shm_instance *h, uint32_t s, uint32_t g,
			    struct shm_ring *out)
	__attribute__((warn_unused_result));

/* Doorbells (NULL when out of range). */
struct shm_doorbell_sh *shm_instance_shard_doorbell(struct shm_instance *h,
						    uint32_t s);
struct shm_doorbell_sh *shm_instance_gateway_doorbell(struct shm_instance *h,
						      uint32_t g);

/* Supervisor: marks the instance stopping [INS1] and rings every doorbell,
 * so consumers whose wait predicate includes shm_instance_stopping wake. */
void shm_instance_set_stopping(struct shm_instance *h);
/* True once stopping was set [INS2]. */
bool shm_instance_stopping(const struct shm_instance *h);

/* Snapshot of a member slot: pid 0 when nobody is attached. */
void shm_instance_member(const struct shm_instance *h,
			 enum shm_instance_role role, uint32_t index,
			 int32_t *pid, uint64_t *start);

#endif

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
 * The settings (shm_settings.h: shape, capacities, rules, gateway limits)
 * are written by the creator and immutable after creation; every attacher
 * copies and validates them once.  This is how a child learns everything
 * but its own identity: matchers and gateways are started with only the
 * instance name and their index.  Spare room (the settings' unused slots,
 * run_reserved[], the member slots' reserved words) lets later versions
 * record more.
 *
 * Readiness, as every process judges it (shm_instance_matcher_ready,
 * shm_instance_gateway_ready): a gateway is ready when its member slot
 * names it; a matcher when its member slot names it and its book, positions
 * and reader-table regions attach (it publishes the book last).
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
#include "shm/shm_settings.h"

/* Longest data directory path kept in the control region. */
#define SHM_DATA_DIR_MAX 1024
/* Upper bound on the rings region (G*S*2 rings), a sanity limit. */
#define SHM_INSTANCE_RINGS_BYTES_MAX (UINT64_C(1) << 32)

/* What the creator asks for (private, never in shared memory). */
struct shm_instance_cfg {
	struct shm_settings s; /* shm_settings_default(), then changes */
	mode_t mode;           /* 0: 0640 (group may read, not write) */
	const char *data_dir;  /* NULL or "": no journal */
	uint32_t port;         /* the TCP port the gateways serve (0: none) */
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
	/* Who holds the slot, as one word (shm_proc_ident), 0 = free.
	 * Claimed with a CAS [INS5] from 0 or from a dead owner, so at most
	 * one live process is gateway g (or matcher k) and the rings keep
	 * one producer and one consumer; freed with a CAS at detach.
	 * W: members, CAS acq_rel [INS5]; R: members, acquire in the CAS. */
	uint64_t owner;
	/* A gateway's counters, for tools (shmex-query stats, metrics).
	 * W: gateway g, relaxed stores at most every 100 ms; R: tools,
	 * relaxed (statistics: each word alone is a value the gateway had).
	 * Zero in a matcher's slot. */
	uint64_t gw_requests; /* requests answered */
	uint32_t gw_open;     /* connections open now */
	uint32_t gw_pad;
	uint64_t gw_refused; /* connections turned away (cap, per address) */
	uint64_t gw_unknown; /* items answered "Outcome unknown" */
	uint64_t gw_busy;    /* items answered "Exchange busy" */
} shm_aligned;

/* What a gateway publishes in its member slot. */
struct shm_gateway_counters {
	uint64_t requests, refused, unknown, busy;
	uint32_t open;
};

/* A doorbell in its own 128-byte pair of lines. */
struct shm_instance_db_sh {
	struct shm_doorbell_sh db;
	uint8_t pad[SHM_CACHE_LINE];
} __attribute__((aligned(2 * SHM_CACHE_LINE)));

/* Body of the control region. */
struct shm_control_sh {
	/* Lines 0-7: the settings.  W: creator, before region R0; R:
	 * attachers after region A0, copied and validated once
	 * (shm_settings_load).  Immutable. */
	struct shm_settings_sh settings;
	/* Line 8: geometry derived from the settings; as above. */
	uint64_t ring_bytes; /* shm_ring_bytes(ring_capacity) */
	uint32_t port;       /* TCP port the gateways serve; 0 unknown */
	uint32_t geo_pad;
	uint64_t geo_reserved[6];
	/* Line 9: run state. */
	/* 1 once the supervisor began a clean shutdown.  W: supervisor,
	 * release [INS1]; R: every process, acquire [INS2].  0 -> 1 only. */
	uint32_t stopping;
	/* The cash freeze of a matcher restart (docs/durability.md): shard
	 * + 1 of the matcher that holds it, 0 when none.  W: matchers, CAS
	 * 0 -> k + 1 [FZ1], release 0 [FZ2]; R: every matcher at the start
	 * of its rounds, acquire [FZ3]. */
	uint32_t freeze_owner;
	/* Generation of the current freeze, bumped by its owner before it
	 * waits for the acks (shm_ledger_hdr_sh.freeze_ack).  W: the owner,
	 * release [FZ4]; R: matchers, acquire [FZ5]. */
	uint32_t freeze_gen;
	/* Ring repairs: bumped by the supervisor whenever it asks the ends
	 * of a ring to quiesce or has reset one (shm_ring.h, docs/ring.md),
	 * so that gateways and matchers look at their rings' repair state
	 * only when it moved.  W: supervisor, release [INS6]; R: matchers
	 * and gateways, acquire [INS7], once per loop turn (the line of
	 * `stopping`, which they read anyway). */
	uint32_t ring_repairs;
	uint64_t run_reserved[6];
	uint8_t pad1[SHM_CACHE_LINE];
	/* Lines 11...: who is attached. */
	struct shm_instance_member_sh gateways[SHM_INSTANCE_GATEWAYS_MAX];
	struct shm_instance_member_sh shards[SHM_INSTANCE_SHARDS_MAX];
	/* Doorbells: shard s's matcher sleeps on shard_db[s]; gateway g on
	 * gateway_db[g] (shm_doorbell.h has the protocol). */
	struct shm_instance_db_sh shard_db[SHM_INSTANCE_SHARDS_MAX];
	struct shm_instance_db_sh gateway_db[SHM_INSTANCE_GATEWAYS_MAX];
	/* The data directory (journals, snapshots, audit log), NUL-padded;
	 * empty with --no-journal.  W: creator before R0; immutable. */
	char data_dir[SHM_DATA_DIR_MAX];
};
_Static_assert(offsetof(struct shm_control_sh, ring_bytes) == 512, "control layout");
_Static_assert(offsetof(struct shm_control_sh, stopping) == 576, "control layout");
_Static_assert(offsetof(struct shm_control_sh, gateways) == 704, "control layout");
_Static_assert(offsetof(struct shm_control_sh, shard_db) == 8960, "control layout");
_Static_assert(sizeof(struct shm_control_sh) == 8960 + 2 * 64 * 128 + SHM_DATA_DIR_MAX,
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
	char name[SHM_INSTANCE_MAX + 1]; /* the instance */
	/* Validated copy of the settings, and what follows from them. */
	struct shm_settings settings;
	char data_dir[SHM_DATA_DIR_MAX]; /* "" without a journal */
	uint32_t nshards;
	uint32_t ngateways;
	uint32_t ring_capacity;
	size_t ring_bytes;
	enum shm_instance_role role;
	uint32_t index;
	struct shmex_error err; /* after a failure: what failed and why */
};

/*
 * Creates both regions (O_EXCL, mode cfg->mode), lays out every ring and
 * doorbell, publishes rings then control, and leaves h attached as
 * SHM_ROLE_SUPERVISOR.  Errors: -EINVAL (bad configuration), -EEXIST (an
 * instance of that name exists: see shm_region_remove_stale), -ENOSPC and
 * other region errors; on failure nothing is left in /dev/shm.
 */
int shm_instance_create(const char *instance, const struct shm_instance_cfg *cfg,
			struct shm_instance *h) __attribute__((warn_unused_result));

/*
 * Attaches to a running instance in a role.  index is the gateway or shard
 * number for SHM_ROLE_GATEWAY / SHM_ROLE_MATCHER (SHMEX_EBADINDEX when out
 * of range) and is ignored otherwise; those two roles record their pid and
 * start time in their member slot.  SHM_ROLE_OBSERVER maps read-only.
 * Errors: region errors (-ENOENT, SHMEX_EBADMAGIC, ...), SHMEX_EBADLAYOUT
 * when the configuration is inconsistent with the regions.
 */
int shm_instance_attach(const char *instance, enum shm_instance_role role, uint32_t index,
			struct shm_instance *h) __attribute__((warn_unused_result));

/* Clears the member slot if it is still ours, then unmaps.  Safe on a
 * zeroed or failed handle. */
void shm_instance_detach(struct shm_instance *h);

/* Unlinks both regions (mappings stay valid until detached): 0 when
 * something was removed, -ENOENT when neither existed. */
int shm_instance_unlink(const char *instance);

/* Attaches out to request ring gateway g -> shard s, bound to shard s's
 * doorbell.  SHMEX_EBADINDEX when g or s is out of range; ring errors. */
int shm_instance_request_ring(struct shm_instance *h, uint32_t g, uint32_t s,
			      struct shm_ring *out) __attribute__((warn_unused_result));

/* Attaches out to reply ring shard s -> gateway g, bound to gateway g's
 * doorbell. */
int shm_instance_reply_ring(struct shm_instance *h, uint32_t s, uint32_t g,
			    struct shm_ring *out) __attribute__((warn_unused_result));

/* Doorbells (NULL when out of range). */
struct shm_doorbell_sh *shm_instance_shard_doorbell(struct shm_instance *h, uint32_t s);
struct shm_doorbell_sh *shm_instance_gateway_doorbell(struct shm_instance *h, uint32_t g);

/* Supervisor: marks the instance stopping [INS1] and rings every doorbell,
 * so consumers whose wait predicate includes shm_instance_stopping wake. */
void shm_instance_set_stopping(struct shm_instance *h);
/* True once stopping was set [INS2]. */
bool shm_instance_stopping(const struct shm_instance *h);

/* Supervisor: a ring's repair state changed (quiesce asked, or reset):
 * bumps ring_repairs [INS6] and rings shard s's and gateway g's
 * doorbells, so both ends look. */
void shm_instance_ring_repairs_bump(struct shm_instance *h, uint32_t g, uint32_t s);
/* Ends: the current ring_repairs [INS7]. */
uint32_t shm_instance_ring_repairs(const struct shm_instance *h);
/* "/shmex.<instance>.rings req g1->s0" (request ring) or "... rep s0->g1"
 * (reply ring), for log lines. */
void shm_instance_ring_name(const struct shm_instance *h, bool request, uint32_t g,
			    uint32_t s, char *buf, size_t len);

/* Gateway g: publishes its counters in its member slot (relaxed). */
void shm_instance_gateway_publish(struct shm_instance *h, uint32_t g,
				  const struct shm_gateway_counters *c);
/* Tools: gateway g's last published counters. */
void shm_instance_gateway_counters(const struct shm_instance *h, uint32_t g,
				   struct shm_gateway_counters *c);
/* The TCP port the supervisor listens on (0: unknown). */
uint32_t shm_instance_port(const struct shm_instance *h);

/* Snapshot of a member slot: pid 0 when nobody is attached. */
void shm_instance_member(const struct shm_instance *h, enum shm_instance_role role,
			 uint32_t index, int32_t *pid, uint64_t *start);

/*
 * Readiness (see the top).  pid > 0 asks for that process exactly (the
 * supervisor after starting it); pid 0 accepts any live member.  [SV1]:
 * the member pid is loaded with acquire (INS4, pairs with the member's
 * INS3); the matcher's regions are then validated by A0 (pairs with its
 * R0, book.<k> last [MT1]).
 */
bool shm_instance_gateway_ready(const struct shm_instance *h, uint32_t g, int32_t pid);
/* True when a live process holds the member slot (pid and start time
 * match a running process); no region is attached to find out. */
bool shm_instance_member_alive(const struct shm_instance *h, enum shm_instance_role role,
			       uint32_t index);
bool shm_instance_matcher_ready(const struct shm_instance *h, uint32_t k, int32_t pid);

/*
 * What an exchange with settings s occupies in /dev/shm, every region
 * (header included, rounded to pages) counted, in bytes: the books, the
 * positions and reader tables and ledgers of every shard, the accounts,
 * the rings and the control region.  For refusing a start that cannot fit
 * before anything is created, and saying which options shrink what.
 */
struct shm_footprint {
	uint64_t book;       /* per shard: --orders, --levels, --fills, --symbols */
	uint64_t positions;  /* per shard: --positions, --symbols */
	uint64_t shard_rest; /* per shard: reader table (--readers), ledger */
	uint64_t accounts;   /* --accounts */
	uint64_t rings;      /* --shards x --gateways x 2 x --ring-capacity */
	uint64_t total;      /* everything, all shards */
};
void shm_instance_footprint(const struct shm_settings *s, struct shm_footprint *f);

/* True for a valid instance name: 1..SHM_INSTANCE_MAX of [A-Za-z0-9_-]. */
bool shm_instance_name_valid(const char *name);

#endif

/*
 * shm_region: named POSIX shared-memory regions with a validated header.
 *
 * A region is the object /shmex.<instance>.<region> in /dev/shm.  It starts
 * with a 128-byte header (struct shm_region_hdr_sh) followed by a body whose
 * layout depends on the region's kind.  Creation protocol:
 *
 *   creator: shm_open(O_CREAT|O_EXCL) -> fchmod(mode) -> posix_fallocate
 *            (a full /dev/shm fails here, not with SIGBUS later) -> mmap
 *            (MAP_POPULATE: pages pre-faulted) -> header fields -> caller
 *            initialises the body -> shm_region_publish(): state = READY
 *            with a release store [R0].
 *   attacher: shm_open -> fstat -> mmap -> load state with acquire [A0]
 *            (pairs with R0) -> check magic, version, layout signature,
 *            kind, size.  Each mismatch is its own error.
 *
 * Read-only attach opens O_RDONLY and maps PROT_READ, so the kernel makes
 * every write through that mapping fault.
 *
 * Concurrency: create/publish run once in the creating process; attach and
 * detach may run in any process at any time after publish; the header is
 * immutable after publish except `state`, which only the creator (or the
 * supervisor on shutdown) changes.
 */
#ifndef SHMEX_SHM_REGION_H
#define SHMEX_SHM_REGION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shm/shm_atomic.h"
#include "shm/shm_error.h"

#define SHM_REGION_MAGIC UINT64_C(0x31474552584d4853) /* "SHMXREG1" */
#define SHM_LAYOUT_VERSION 4u
#define SHM_REGION_HDR_SIZE 128u
#define SHM_NAME_MAX 96
#define SHM_INSTANCE_MAX 40

/* Region kinds: the header says what the body holds. */
enum shm_region_kind {
	SHM_KIND_ANY = 0, /* attach only: accept any kind */
	SHM_KIND_TEST = 1,
	SHM_KIND_RINGS = 2,
	SHM_KIND_CONTROL = 3,
	SHM_KIND_BOOK = 4,
	SHM_KIND_ACCOUNTS = 5,
	SHM_KIND_READERS = 6,
	SHM_KIND_POSITIONS = 7,
	SHM_KIND_LEDGER = 8,
};

enum shm_region_state {
	SHM_STATE_CREATING = 0,         /* zero-filled object: not ready */
	SHM_STATE_READY = 0x59444552u,  /* "REDY" */
	SHM_STATE_CLOSED = 0x534f4c43u, /* "CLOS": exchange shut down */
};

/* Region header.  All fields but `state` are written by the creator before
 * R0 and never change after; readers read them after A0. */
struct shm_region_hdr_sh {
	uint64_t magic;         /* SHM_REGION_MAGIC */
	uint32_t version;       /* SHM_LAYOUT_VERSION */
	uint32_t kind;          /* enum shm_region_kind */
	uint64_t signature;     /* shm_layout_signature() of the creator */
	uint64_t size;          /* bytes of the whole object, header included */
	uint64_t capacity[6];   /* kind-specific capacities (see each kind) */
	int32_t creator_pid;    /* process that created the region */
	uint32_t cache_line;    /* SHM_CACHE_LINE of the creator */
	uint64_t creator_start; /* its start time (shm_proc.h) */
	/* W: creator (publish) / supervisor (close), release [R0];
	 * R: attachers, acquire [A0] before reading anything else. */
	uint32_t state;
	uint32_t pad0;
	uint64_t reserved[3];
};
_Static_assert(sizeof(struct shm_region_hdr_sh) == SHM_REGION_HDR_SIZE,
	       "region header is 128 bytes");
_Static_assert(offsetof(struct shm_region_hdr_sh, state) == 96,
	       "state offset is part of the layout");

/* Per-process handle of a mapped region (never in shared memory). */
struct shm_region {
	void *base;              /* start of the mapping (the header) */
	size_t size;             /* bytes usable (the header's size) */
	size_t map_size;         /* bytes mapped (munmap length) */
	bool writable;           /* mapped PROT_WRITE */
	char name[SHM_NAME_MAX]; /* "/shmex.<instance>.<region>" */
	struct shmex_error err;  /* after a failure: what failed and why */
};

enum shm_attach_mode { SHM_RDONLY = 0, SHM_RDWR = 1 };

/*
 * The name of the region of a kind: the one place where region names are
 * composed.  Instance-wide kinds ignore shard; per-shard kinds append it:
 *
 *   SHM_KIND_CONTROL   "control"         SHM_KIND_BOOK       "book.<k>"
 *   SHM_KIND_RINGS     "rings"           SHM_KIND_READERS    "readers.<k>"
 *   SHM_KIND_ACCOUNTS  "accounts"        SHM_KIND_POSITIONS  "positions.<k>"
 *                                        SHM_KIND_LEDGER     "ledger.<k>"
 *
 * Returns 0, or SHMEX_EBADNAME for a kind without a region name.
 */
#define SHM_REGION_NAME_MAX 32
#define SHM_REGION_CONTROL "control"
#define SHM_REGION_RINGS "rings"
#define SHM_REGION_ACCOUNTS "accounts"
int shm_region_name(char out[SHM_REGION_NAME_MAX], enum shm_region_kind kind,
		    unsigned shard) __attribute__((warn_unused_result));

/* True for the kinds that exist once per shard. */
bool shm_region_kind_per_shard(enum shm_region_kind kind);

/* "/shmex.<instance>.<region>".  Instance: 1..40 of [A-Za-z0-9_-];
 * region: 1..40 of [a-z0-9._-].  Returns 0 or SHMEX_EBADNAME. */
int shm_name_format(char *out, size_t len, const char *instance, const char *region)
	__attribute__((warn_unused_result));

/* Creates and maps the region read-write, body zero-filled, state
 * CREATING.  caps may be NULL.  mode is applied with fchmod (umask does not
 * narrow it).  Fails with -EEXIST when the object exists. */
int shm_region_create(struct shm_region *r, const char *instance, const char *region,
		      uint32_t kind, size_t body_size, const uint64_t *caps, size_t ncaps,
		      mode_t mode) __attribute__((warn_unused_result));

/* Marks a created region ready [R0]. */
void shm_region_publish(struct shm_region *r);

/* Maps an existing region and validates its header. */
int shm_region_attach(struct shm_region *r, const char *instance, const char *region,
		      uint32_t kind, enum shm_attach_mode mode)
	__attribute__((warn_unused_result));

/* Unmaps; the handle may be reused.  Safe on a zeroed handle. */
void shm_region_detach(struct shm_region *r);

/* Removes the name; mappings stay valid until detached.  -ENOENT when
 * there is nothing to remove. */
int shm_region_unlink(const char *instance, const char *region);

/* Inspects an existing object without validating the body: its creator
 * and whether that process is still alive. */
struct shm_region_info {
	int32_t creator_pid;
	uint64_t creator_start;
	uint32_t state;
	bool creator_alive;
	bool have_owner;    /* the object could be opened: owner_uid is valid */
	uint32_t version;   /* the creator's SHM_LAYOUT_VERSION */
	uint64_t signature; /* the creator's shm_layout_signature() */
	uint32_t owner_uid;
	size_t size;
};
int shm_region_inspect(const char *instance, const char *region,
		       struct shm_region_info *info) __attribute__((warn_unused_result));

/* Unlinks a region left over by a crashed run: 0 when removed (or absent),
 * SHMEX_EINUSE when its creator is alive, SHMEX_EFOREIGN (nothing is
 * removed) when the object belongs to another user or we may not read it:
 * that is another user's exchange or a squatter, never our leftover. */
int shm_region_remove_stale(const char *instance, const char *region)
	__attribute__((warn_unused_result));

/* Layout signature: a hash over the size of every shared struct, the
 * offset and size of each of its fields, and the cache-line size.  Two builds agree on it exactly when they
 * can share memory. */
uint64_t shm_layout_signature(void);

static inline struct shm_region_hdr_sh *shm_region_hdr(const struct shm_region *r)
{
	return (struct shm_region_hdr_sh *)r->base;
}

static inline void *shm_region_body(const struct shm_region *r)
{
	return (char *)r->base + SHM_REGION_HDR_SIZE;
}

static inline size_t shm_region_body_size(const struct shm_region *r)
{
	return r->size - SHM_REGION_HDR_SIZE;
}

#endif

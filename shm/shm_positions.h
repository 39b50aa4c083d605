/*
 * shm_positions: the share positions of one symbol shard, in the region
 * /shmex.<instance>.positions.<shard> (kind SHM_KIND_POSITIONS).
 *
 * A position (account, symbol) belongs to the shard that owns the symbol,
 * and that shard's matcher is its only writer: no read-modify-write is
 * needed, each field is written with a plain atomic release store.  Readers
 * (gateways, query tools; read-only mappings included) use acquire loads
 * through shm_positions_read() and friends, which bounds-check every index
 * they take from the region.
 *
 * Two insert-only open-addressing tables (nothing is ever deleted):
 *   symbols    packed name (shm_symbol_pack) -> shares created so far
 *              (the conservation total of the symbol);
 *   positions  (account id, symbol index) -> amount available, and amount
 *              reserved by open sells.
 * A slot is written completely, then published by a release store of its
 * state [PS1]; a reader that acquires READY [PS2] sees the whole slot.
 *
 * Shares are QTY scale (shm_dec.h).  created, amount and reserved are
 * shm_shares_t (128-bit, 16-byte aligned, shm_atomic16.h's load16_acquire
 * and store16_release: one writer, so no CAS).  Conservation, per symbol,
 * at quiescent points: sum of amounts + sum of reserved == created.  A
 * grant that would take created past SHM_SHARES_MAX (10^30 units, 10^26
 * shares) is refused with SHMEX_ESHARESRANGE; every position is therefore
 * at most 10^30 < 2^126, and an order moves at most INT64_MAX units, so
 * no move of a consistent region can overflow (a buyer's credit in the
 * middle of a match cannot fail).  Overflow is still checked everywhere.
 * Every process that maps positions needs 16-byte atomics: create and
 * attach refuse a CPU without them (SHMEX_ENOATOMIC16).
 *
 * Concurrency contract:
 *   writer functions (symbol_add, add_shares, ensure, reserve, release,
 *       settle_sell, credit): ONE process, the shard's matcher, through a
 *       RDWR handle (the supervisor runs one matcher per shard).
 *   reader functions (symbol_find, find, read, read_slot, totals): any
 *       process at any time, concurrently with the writer; never block it.
 *   A reader's (amount, reserved) pair may straddle one writer operation
 *   (each value is one the field really had, never negative).
 */
#ifndef SHMEX_SHM_POSITIONS_H
#define SHMEX_SHM_POSITIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shm/shm_atomic.h"
#include "shm/shm_atomic16.h"
#include "shm/shm_region.h"

/* Share totals and positions, QTY scale: signed 128-bit. */
typedef __int128 shm_shares_t;
/* Most shares a symbol may have been granted in all (its created total):
 * 10^30 units, i.e. 10^26 shares; far below 2^126, so a position plus any
 * order's quantity (<= INT64_MAX) always fits. */
#define SHM_SHARES_MAX ((shm_shares_t)1000000000000000 * 1000000000000000)

/* Capacity limits; tables have at least twice as many slots (powers of
 * two) so probes stay short. */
#define SHM_POSITIONS_MAX_SYMBOLS (UINT64_C(1) << 20)
#define SHM_POSITIONS_MAX_CAP (UINT64_C(1) << 30)

/* Region header capacity[] of a positions region. */
enum {
	SHM_POSITIONS_CAP_SHARD = 0,     /* the shard this region belongs to */
	SHM_POSITIONS_CAP_SYMBOLS = 1,   /* symbols that may be created */
	SHM_POSITIONS_CAP_SYM_SLOTS = 2, /* symbol hash slots (power of 2) */
	SHM_POSITIONS_CAP_POSITIONS = 3, /* positions that may be created */
	SHM_POSITIONS_CAP_POS_SLOTS = 4, /* position hash slots (power of 2) */
};

enum shm_position_state {
	SHM_POSITION_EMPTY = 0,
	SHM_POSITION_READY = 1,
};

/* Body header.  W: the matcher, relaxed (statistics and the writer's own
 * bookkeeping; no reader synchronises on them) [PS5]; R: tools, relaxed. */
struct shm_positions_sh {
	uint64_t nsymbols;   /* symbols created */
	uint64_t npositions; /* positions created */
	uint64_t pad[6];
} shm_aligned;

/* One symbol of the shard, 48 bytes. */
struct shm_possym_sh {
	/* NUL-padded name (shm_symbol_pack).  W: matcher before PS1, never
	 * changed after; R: readers after PS2 (validated by unpacking). */
	char name[16];
	/* enum shm_position_state.  W: matcher, release READY [PS1];
	 * R: readers, acquire [PS2]. */
	uint32_t state;
	uint32_t pad0;
	uint64_t pad1;
	/* Shares created so far (add_shares), QTY scale, <= SHM_SHARES_MAX.
	 * W: matcher, store16_release [PS3]; R: readers, load16_acquire
	 * [PS4]. */
	shm_shares_t created;
};

/* One position, 48 bytes. */
struct shm_position_sh {
	/* Account id.  W: matcher before PS1, never changed after. */
	uint64_t account;
	/* Symbol slot index (< symbol slots).  W: matcher before PS1, never
	 * changed after; R: readers, bounds-checked. */
	uint32_t sym;
	/* enum shm_position_state.  W: matcher, release READY [PS1];
	 * R: readers, acquire [PS2]. */
	uint32_t state;
	/* Shares available to sell, QTY scale, 0..SHM_SHARES_MAX.
	 * W: matcher, store16_release [PS3]; R: readers, load16_acquire
	 * [PS4]. */
	shm_shares_t amount;
	/* Shares held by open sells, QTY scale, 0..SHM_SHARES_MAX.  W/R as
	 * amount. */
	shm_shares_t reserved;
};

/* __int128 is 16-byte aligned (x86-64 ABI) and slots are 16-byte
 * multiples after a 64-byte header, so every 128-bit field is 16-byte
 * aligned in the mapping (shm_atomic16.h). */
_Static_assert(_Alignof(shm_shares_t) == 16, "16-byte atomics");
_Static_assert(sizeof(struct shm_positions_sh) == 64, "one cache line");
_Static_assert(sizeof(struct shm_possym_sh) == 48, "layout");
_Static_assert(sizeof(struct shm_position_sh) == 48, "layout");
_Static_assert(offsetof(struct shm_possym_sh, created) == 32, "layout");
_Static_assert(offsetof(struct shm_position_sh, amount) == 16, "layout");
_Static_assert(offsetof(struct shm_position_sh, reserved) == 32, "layout");

/* Per-process handle (never in shared memory). */
struct shm_positions {
	struct shm_region region;
	struct shm_positions_sh *sh;
	struct shm_possym_sh *sym;   /* sym_slots symbol slots */
	struct shm_position_sh *pos; /* pos_slots position slots */
	uint32_t shard;
	uint32_t sym_cap, sym_slots, sym_mask;
	uint32_t pos_cap, pos_slots, pos_mask;
};

/* What a reader sees of one position. */
struct shm_position_view {
	uint64_t account;
	uint32_t sym;    /* symbol slot index */
	char symbol[16]; /* its packed name */
	shm_shares_t amount;
	shm_shares_t reserved;
};

/* Sums over one symbol's positions (an audit; exact at quiescent points). */
struct shm_positions_totals {
	uint64_t positions;
	shm_shares_t amount;
	shm_shares_t reserved;
	shm_shares_t created;
};

/* Creates, initialises and publishes the region of `shard` for up to
 * `max_symbols` symbols and `max_positions` positions; handle writable. */
/* Bytes of the body of a positions region (for sizing /dev/shm). */
size_t shm_positions_bytes(uint64_t max_symbols, uint64_t max_positions);

int shm_positions_create(struct shm_positions *p, const char *instance, uint32_t shard,
			 uint64_t max_symbols, uint64_t max_positions, mode_t mode)
	__attribute__((warn_unused_result));
/* Attaches and validates capacities against the size.  Both refuse a CPU
 * without 16-byte atomics (SHMEX_ENOATOMIC16, with the reason in the
 * region's err). */
int shm_positions_attach(struct shm_positions *p, const char *instance, uint32_t shard,
			 enum shm_attach_mode mode) __attribute__((warn_unused_result));
void shm_positions_detach(struct shm_positions *p);
int shm_positions_unlink(const char *instance, uint32_t shard);

/* ---- Writer (the shard's matcher only; -EROFS on a read-only handle). */

/* Index of the symbol `name` (16 bytes, NUL-padded), created with nothing
 * in it when new.  SHMEX_EBADSYMBOL, SHMEX_ESYMBOLSFULL. */
int shm_positions_symbol_add(struct shm_positions *p, const char name[16], uint32_t *sidx)
	__attribute__((warn_unused_result));
/* Creates qty (> 0) shares of symbol `name` in `account`'s position,
 * creating the symbol and the position if new: amount += qty,
 * created += qty.  Checks everything before changing anything:
 * SHMEX_EBADSYMBOL, SHMEX_EBADAMOUNT, SHMEX_ESYMBOLSFULL,
 * SHMEX_EPOSITIONSFULL, SHMEX_ESHARESRANGE (created would pass
 * SHM_SHARES_MAX).  sidx/pidx may be NULL. */
int shm_positions_add_shares(struct shm_positions *p, uint64_t account,
			     const char name[16], int64_t qty, uint32_t *sidx,
			     uint32_t *pidx) __attribute__((warn_unused_result));
/* Index of (account, sidx), created empty if new, so that crediting a
 * buyer later cannot fail.  SHMEX_EBADINDEX, SHMEX_EPOSITIONSFULL. */
int shm_positions_ensure(struct shm_positions *p, uint64_t account, uint32_t sidx,
			 uint32_t *pidx) __attribute__((warn_unused_result));
/* Open sell: amount -= q, reserved += q; SHMEX_ENOSHARES when short. */
int shm_positions_reserve(struct shm_positions *p, uint32_t pidx, int64_t q)
	__attribute__((warn_unused_result));
/* Cancel / kill of an open sell: reserved -= q, amount += q.
 * SHMEX_EINTERNAL when less than q is reserved. */
int shm_positions_release(struct shm_positions *p, uint32_t pidx, int64_t q)
	__attribute__((warn_unused_result));
/* Sell fill: reserved -= q (the shares leave).  SHMEX_EINTERNAL. */
int shm_positions_settle_sell(struct shm_positions *p, uint32_t pidx, int64_t q)
	__attribute__((warn_unused_result));
/* Buy fill: amount += q.  Cannot fail on a consistent region (amount <=
 * SHM_SHARES_MAX); SHMEX_EOVERFLOW only for a corrupted one. */
int shm_positions_credit(struct shm_positions *p, uint32_t pidx, int64_t q)
	__attribute__((warn_unused_result));

/* ---- Readers (any process; every index bounds-checked). */

/* Symbol index of `name`, or SHMEX_ENOSYMBOL (SHMEX_EBADSYMBOL when the
 * name is not a valid packed symbol). */
int shm_positions_symbol_find(const struct shm_positions *p, const char name[16],
			      uint32_t *sidx) __attribute__((warn_unused_result));
/* Position index of (account, sidx), or SHMEX_ENOSHARES (no position). */
int shm_positions_find(const struct shm_positions *p, uint64_t account, uint32_t sidx,
		       uint32_t *pidx) __attribute__((warn_unused_result));
/* The position of `account` in symbol `name`: SHMEX_ENOSYMBOL,
 * SHMEX_ENOSHARES when there is none. */
int shm_positions_read(const struct shm_positions *p, uint64_t account,
		       const char name[16], struct shm_position_view *v)
	__attribute__((warn_unused_result));
/* Position slot `pidx` (iteration over 0..pos_slots-1): SHMEX_ENOSHARES
 * for an empty slot, SHMEX_EBADINDEX past the end or for a corrupted
 * symbol index. */
int shm_positions_read_slot(const struct shm_positions *p, uint32_t pidx,
			    struct shm_position_view *v)
	__attribute__((warn_unused_result));
/* Audit of symbol sidx: sums over its positions and its created total.
 * SHMEX_EBADINDEX / SHMEX_ENOSYMBOL, SHMEX_EOVERFLOW (a corrupted
 * region: a sum past 2^127). */
int shm_positions_totals(const struct shm_positions *p, uint32_t sidx,
			 struct shm_positions_totals *t)
	__attribute__((warn_unused_result));

#endif

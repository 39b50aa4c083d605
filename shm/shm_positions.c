/*
 * shm_positions: per-shard share positions (see shm_positions.h for the
 * contract and docs/accounts.md for the layout).
 *
 * Why this shape.  Positions of a symbol are changed only by the matcher of
 * the symbol's shard, so each one has a single writer and needs no
 * read-modify-write: the writer reads its own fields with relaxed loads
 * (it wrote them itself; nobody else does) and writes new values with
 * release stores.  Atomic stores, rather than plain C ones, are what keep a
 * concurrent reader from seeing a torn value; release makes everything the
 * writer did before (the slot's creation, earlier changes) visible to a
 * reader that acquires the field.  A dying writer leaves every field at a
 * value it really had, and there is nothing to unlock.
 *
 * Invariants: amount >= 0 and reserved >= 0 for every position; per symbol,
 * sum of amounts + sum of reserved == created whenever the writer is
 * between operations; created <= SHM_SHARES_MAX (10^30) bounds every
 * position, so adding any int64 quantity to one cannot overflow 128 bits.
 * The 128-bit fields are read and written whole by 16-byte SSE moves
 * (shm_atomic16.h); a single writer needs no cmpxchg16b.  Slots
 * are published after they are complete [PS1] and never unpublished.
 * Every writer operation checks all its failure conditions before its
 * first store, so a failed operation changes nothing.
 *
 * Limits: up to 2^20 symbols and 2^30 positions per shard.
 */
#include "shm/shm_positions.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "shm/shm_error.h"
#include "shm/shm_hash.h"
#include "shm/shm_msg.h"

static uint32_t hash_name(const char name[16])
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (int i = 0; i < 16; i++) {
		h ^= (unsigned char)name[i];
		h *= 16777619u;
	}
	return h;
}

static uint32_t hash_pos(uint64_t account, uint32_t sidx)
{
	uint64_t x = account ^ ((uint64_t)sidx * UINT64_C(0x9e3779b97f4a7c15));
	x ^= x >> 30;
	x *= UINT64_C(0xbf58476d1ce4e5b9);
	x ^= x >> 27;
	x *= UINT64_C(0x94d049bb133111eb);
	x ^= x >> 31;
	return (uint32_t)x;
}

static size_t body_bytes(uint64_t sym_slots, uint64_t pos_slots)
{
	return sizeof(struct shm_positions_sh) +
	       sym_slots * sizeof(struct shm_possym_sh) +
	       pos_slots * sizeof(struct shm_position_sh);
}

size_t shm_positions_bytes(uint64_t max_symbols, uint64_t max_positions)
{
	return body_bytes(shm_hash_slots(max_symbols), shm_hash_slots(max_positions));
}

static bool pow2_ok(uint64_t slots, uint64_t cap, uint64_t max)
{
	return cap >= 1 && cap <= max && slots > cap && slots <= 2 * max &&
	       (slots & (slots - 1)) == 0;
}

static int cpu_check(struct shm_positions *p)
{
	if (shm_atomic16_check())
		return 0;
	return shmex_error_set(&p->region.err, SHMEX_ENOATOMIC16,
			       "positions: this CPU lacks CMPXCHG16B or AVX, so 128-bit "
			       "share amounts cannot be read atomically");
}

static int check_layout(struct shm_positions *p, uint32_t shard)
{
	const struct shm_region_hdr_sh *h = shm_region_hdr(&p->region);
	const uint64_t *c = h->capacity;
	if (c[SHM_POSITIONS_CAP_SHARD] != shard ||
	    !pow2_ok(c[SHM_POSITIONS_CAP_SYM_SLOTS], c[SHM_POSITIONS_CAP_SYMBOLS],
		     SHM_POSITIONS_MAX_SYMBOLS) ||
	    !pow2_ok(c[SHM_POSITIONS_CAP_POS_SLOTS], c[SHM_POSITIONS_CAP_POSITIONS],
		     SHM_POSITIONS_MAX_CAP))
		return SHMEX_EBADLAYOUT;
	if (shm_region_body_size(&p->region) <
	    body_bytes(c[SHM_POSITIONS_CAP_SYM_SLOTS], c[SHM_POSITIONS_CAP_POS_SLOTS]))
		return SHMEX_ETOOSHORT;
	p->shard = shard;
	p->sym_cap = (uint32_t)c[SHM_POSITIONS_CAP_SYMBOLS];
	p->sym_slots = (uint32_t)c[SHM_POSITIONS_CAP_SYM_SLOTS];
	p->sym_mask = p->sym_slots - 1;
	p->pos_cap = (uint32_t)c[SHM_POSITIONS_CAP_POSITIONS];
	p->pos_slots = (uint32_t)c[SHM_POSITIONS_CAP_POS_SLOTS];
	p->pos_mask = p->pos_slots - 1;
	p->sh = shm_region_body(&p->region);
	p->sym = (struct shm_possym_sh *)(p->sh + 1);
	p->pos = (struct shm_position_sh *)(p->sym + p->sym_slots);
	return 0;
}

int shm_positions_create(struct shm_positions *p, const char *instance, uint32_t shard,
			 uint64_t max_symbols, uint64_t max_positions, mode_t mode)
{
	memset(p, 0, sizeof(*p));
	if (max_symbols == 0 || max_symbols > SHM_POSITIONS_MAX_SYMBOLS ||
	    max_positions == 0 || max_positions > SHM_POSITIONS_MAX_CAP)
		return -EINVAL;
	uint64_t caps[5];
	caps[SHM_POSITIONS_CAP_SHARD] = shard;
	caps[SHM_POSITIONS_CAP_SYMBOLS] = max_symbols;
	caps[SHM_POSITIONS_CAP_SYM_SLOTS] = shm_hash_slots(max_symbols);
	caps[SHM_POSITIONS_CAP_POSITIONS] = max_positions;
	caps[SHM_POSITIONS_CAP_POS_SLOTS] = shm_hash_slots(max_positions);
	int rc = cpu_check(p);
	if (rc)
		return rc;
	char name[SHM_REGION_NAME_MAX];
	(void)!shm_region_name(name, SHM_KIND_POSITIONS, shard);
	size_t body = body_bytes(caps[SHM_POSITIONS_CAP_SYM_SLOTS],
				 caps[SHM_POSITIONS_CAP_POS_SLOTS]);
	rc = shm_region_create(&p->region, instance, name, SHM_KIND_POSITIONS, body, caps,
			       5, mode);
	if (rc)
		return rc;
	rc = check_layout(p, shard);
	if (rc)
		goto out_unlink;
	/* Zero-filled body: every slot EMPTY, no symbols.  Publish [R0]. */
	shm_region_publish(&p->region);
	return 0;

out_unlink:
	shm_region_detach(&p->region);
	(void)shm_region_unlink(instance, name);
	return rc;
}

int shm_positions_attach(struct shm_positions *p, const char *instance, uint32_t shard,
			 enum shm_attach_mode mode)
{
	memset(p, 0, sizeof(*p));
	int rc = cpu_check(p);
	if (rc)
		return rc;
	char name[SHM_REGION_NAME_MAX];
	(void)!shm_region_name(name, SHM_KIND_POSITIONS, shard);
	rc = shm_region_attach(&p->region, instance, name, SHM_KIND_POSITIONS, mode);
	if (rc)
		return rc;
	rc = check_layout(p, shard);
	if (rc)
		goto out_detach;
	return 0;

out_detach:
	shm_positions_detach(p);
	return rc;
}

void shm_positions_detach(struct shm_positions *p)
{
	shm_region_detach(&p->region);
	p->sh = NULL;
	p->sym = NULL;
	p->pos = NULL;
	p->sym_cap = p->sym_slots = p->sym_mask = 0;
	p->pos_cap = p->pos_slots = p->pos_mask = 0;
}

int shm_positions_unlink(const char *instance, uint32_t shard)
{
	char name[SHM_REGION_NAME_MAX];
	(void)!shm_region_name(name, SHM_KIND_POSITIONS, shard);
	return shm_region_unlink(instance, name);
}

/* PS2: pairs with PS1; a READY slot's immutable fields are complete. */
static bool slot_ready(const uint32_t *state)
{
	return load_acquire(state) == SHM_POSITION_READY;
}

/*
 * Probes.  Both return true with *at = the slot holding the key, or false
 * with *at = the first empty slot of the key's probe sequence (UINT32_MAX
 * when there is none, which only a corrupted region can cause).  A slot the
 * writer is still filling looks empty to a reader: its key is not in the
 * table yet.
 */
static bool sym_probe(const struct shm_positions *p, const char name[16], uint32_t *at)
{
	*at = UINT32_MAX;
	if (!p->sym)
		return false;
	uint32_t i = hash_name(name) & p->sym_mask;
	for (uint32_t n = 0; n < p->sym_slots; n++, i = (i + 1) & p->sym_mask) {
		const struct shm_possym_sh *s = &p->sym[i];
		if (!slot_ready(&s->state)) { /* PS2 */
			*at = i;
			return false;
		}
		if (memcmp(s->name, name, 16) == 0) {
			*at = i;
			return true;
		}
	}
	return false;
}

static bool pos_probe(const struct shm_positions *p, uint64_t account, uint32_t sidx,
		      uint32_t *at)
{
	*at = UINT32_MAX;
	if (!p->pos)
		return false;
	uint32_t i = hash_pos(account, sidx) & p->pos_mask;
	for (uint32_t n = 0; n < p->pos_slots; n++, i = (i + 1) & p->pos_mask) {
		const struct shm_position_sh *s = &p->pos[i];
		if (!slot_ready(&s->state)) { /* PS2 */
			*at = i;
			return false;
		}
		if (s->account == account && s->sym == sidx) {
			*at = i;
			return true;
		}
	}
	return false;
}

static bool writer_ok(const struct shm_positions *p)
{
	return p->sh && p->region.writable;
}

/* Fills and publishes a new symbol slot (the writer has checked room). */
static void sym_insert(struct shm_positions *p, uint32_t at, const char name[16])
{
	struct shm_possym_sh *s = &p->sym[at];
	memcpy(s->name, name, 16);
	/* Unpublished until PS1 (the release is stronger than needed). */
	store16_release(&s->created, 0);
	/* PS1: publishes name and created; pairs with PS2. */
	store_release(&s->state, (uint32_t)SHM_POSITION_READY);
	/* PS5, relaxed: the writer's own count, a statistic for others. */
	store_relaxed(&p->sh->nsymbols, load_relaxed(&p->sh->nsymbols) + 1);
}

static void pos_insert(struct shm_positions *p, uint32_t at, uint64_t account,
		       uint32_t sidx)
{
	struct shm_position_sh *s = &p->pos[at];
	/* Relaxed: unpublished until PS1. */
	store_relaxed(&s->account, account);
	store_relaxed(&s->sym, sidx);
	store16_release(&s->amount, 0);
	store16_release(&s->reserved, 0);
	/* PS1: publishes the key and zero amounts; pairs with PS2. */
	store_release(&s->state, (uint32_t)SHM_POSITION_READY);
	/* PS5, relaxed: see sym_insert. */
	store_relaxed(&p->sh->npositions, load_relaxed(&p->sh->npositions) + 1);
}

static uint64_t count_of(const uint64_t *c)
{
	return load_relaxed(c); /* PS5: the writer's own count */
}

int shm_positions_symbol_add(struct shm_positions *p, const char name[16], uint32_t *sidx)
{
	if (!writer_ok(p))
		return -EROFS;
	if (shm_symbol_unpack_len(name) == 0)
		return SHMEX_EBADSYMBOL;
	uint32_t at;
	if (!sym_probe(p, name, &at)) {
		if (at == UINT32_MAX || count_of(&p->sh->nsymbols) >= p->sym_cap)
			return SHMEX_ESYMBOLSFULL;
		sym_insert(p, at, name);
	}
	*sidx = at;
	return 0;
}

int shm_positions_add_shares(struct shm_positions *p, uint64_t account,
			     const char name[16], int64_t qty, uint32_t *sidx,
			     uint32_t *pidx)
{
	if (!writer_ok(p))
		return -EROFS;
	if (shm_symbol_unpack_len(name) == 0)
		return SHMEX_EBADSYMBOL;
	if (qty <= 0)
		return SHMEX_EBADAMOUNT;

	/* Every check first: a failure changes nothing. */
	uint32_t s_at, p_at = UINT32_MAX;
	bool sym_found = sym_probe(p, name, &s_at);
	bool pos_found = false;
	shm_shares_t created = 0, amount = 0;
	if (!sym_found &&
	    (s_at == UINT32_MAX || count_of(&p->sh->nsymbols) >= p->sym_cap))
		return SHMEX_ESYMBOLSFULL;
	if (sym_found) {
		/* The writer reads back its own stores. */
		created = load16_acquire(&p->sym[s_at].created);
		pos_found = pos_probe(p, account, s_at, &p_at);
		if (pos_found)
			amount = load16_acquire(&p->pos[p_at].amount);
	}
	/* created <= SHM_SHARES_MAX and qty <= INT64_MAX: no overflow here,
	 * and amount <= created. */
	if (created < 0 || created > SHM_SHARES_MAX - qty)
		return SHMEX_ESHARESRANGE;
	if (amount < 0 || amount > created)
		return SHMEX_EINTERNAL; /* a corrupted region */
	if (!pos_found && count_of(&p->sh->npositions) >= p->pos_cap)
		return SHMEX_EPOSITIONSFULL;

	if (!sym_found)
		sym_insert(p, s_at, name);
	if (!pos_found) {
		/* The symbol may be new, so probe with its final index. */
		if (pos_probe(p, account, s_at, &p_at) || p_at == UINT32_MAX)
			return SHMEX_EINTERNAL;
		pos_insert(p, p_at, account, s_at);
	}
	/* PS3: each pairs with the readers' PS4. */
	store16_release(&p->pos[p_at].amount, amount + qty);
	store16_release(&p->sym[s_at].created, created + qty);
	if (sidx)
		*sidx = s_at;
	if (pidx)
		*pidx = p_at;
	return 0;
}

int shm_positions_ensure(struct shm_positions *p, uint64_t account, uint32_t sidx,
			 uint32_t *pidx)
{
	if (!writer_ok(p))
		return -EROFS;
	if (sidx >= p->sym_slots || !slot_ready(&p->sym[sidx].state))
		return SHMEX_EBADINDEX;
	uint32_t at;
	if (!pos_probe(p, account, sidx, &at)) {
		if (at == UINT32_MAX || count_of(&p->sh->npositions) >= p->pos_cap)
			return SHMEX_EPOSITIONSFULL;
		pos_insert(p, at, account, sidx);
	}
	*pidx = at;
	return 0;
}

/* The published position at pidx, for a writer operation on q >= 0. */
static int writer_pos(struct shm_positions *p, uint32_t pidx, int64_t q,
		      struct shm_position_sh **out)
{
	if (!writer_ok(p))
		return -EROFS;
	if (q < 0)
		return -EINVAL;
	if (pidx >= p->pos_slots || !slot_ready(&p->pos[pidx].state))
		return SHMEX_EBADINDEX;
	*out = &p->pos[pidx];
	return 0;
}

/*
 * The four moves.  The writer's loads read back its own stores.  Stores
 * are 16-byte releases [PS3], pairing with the readers' 16-byte acquire
 * loads [PS4]; the decrement is stored first.  Readers load reserved,
 * then amount, so a reader that sees a reservation's increment of reserved
 * also sees its decrement of amount; a release (reserved down, then amount
 * up) may be seen half done, over-counted by the quantity in flight
 * (docs/accounts.md, "What a concurrent reader may observe").
 */
int shm_positions_reserve(struct shm_positions *p, uint32_t pidx, int64_t q)
{
	struct shm_position_sh *s;
	int rc = writer_pos(p, pidx, q, &s);
	if (rc)
		return rc;
	shm_shares_t amount = load16_acquire(&s->amount);
	shm_shares_t reserved = load16_acquire(&s->reserved);
	shm_shares_t nr;
	if (amount < q)
		return SHMEX_ENOSHARES;
	if (__builtin_add_overflow(reserved, (shm_shares_t)q, &nr))
		return SHMEX_EOVERFLOW;
	store16_release(&s->amount, amount - q); /* PS3 */
	store16_release(&s->reserved, nr);       /* PS3 */
	return 0;
}

int shm_positions_release(struct shm_positions *p, uint32_t pidx, int64_t q)
{
	struct shm_position_sh *s;
	int rc = writer_pos(p, pidx, q, &s);
	if (rc)
		return rc;
	shm_shares_t amount = load16_acquire(&s->amount);
	shm_shares_t reserved = load16_acquire(&s->reserved);
	shm_shares_t na;
	if (reserved < q)
		return SHMEX_EINTERNAL;
	if (__builtin_add_overflow(amount, (shm_shares_t)q, &na))
		return SHMEX_EOVERFLOW;
	store16_release(&s->reserved, reserved - q); /* PS3 */
	store16_release(&s->amount, na);             /* PS3 */
	return 0;
}

int shm_positions_settle_sell(struct shm_positions *p, uint32_t pidx, int64_t q)
{
	struct shm_position_sh *s;
	int rc = writer_pos(p, pidx, q, &s);
	if (rc)
		return rc;
	shm_shares_t reserved = load16_acquire(&s->reserved);
	if (reserved < q)
		return SHMEX_EINTERNAL;
	store16_release(&s->reserved, reserved - q); /* PS3 */
	return 0;
}

int shm_positions_credit(struct shm_positions *p, uint32_t pidx, int64_t q)
{
	struct shm_position_sh *s;
	int rc = writer_pos(p, pidx, q, &s);
	if (rc)
		return rc;
	/* amount <= SHM_SHARES_MAX on a consistent region, so this never
	 * overflows; checked all the same (a corrupted region). */
	shm_shares_t na;
	if (__builtin_add_overflow(load16_acquire(&s->amount), (shm_shares_t)q, &na))
		return SHMEX_EOVERFLOW;
	store16_release(&s->amount, na); /* PS3 */
	return 0;
}

int shm_positions_symbol_find(const struct shm_positions *p, const char name[16],
			      uint32_t *sidx)
{
	if (shm_symbol_unpack_len(name) == 0)
		return SHMEX_EBADSYMBOL;
	uint32_t at;
	if (!sym_probe(p, name, &at))
		return SHMEX_ENOSYMBOL;
	*sidx = at;
	return 0;
}

int shm_positions_find(const struct shm_positions *p, uint64_t account, uint32_t sidx,
		       uint32_t *pidx)
{
	uint32_t at;
	if (!pos_probe(p, account, sidx, &at))
		return SHMEX_ENOSHARES;
	*pidx = at;
	return 0;
}

static int view_of(const struct shm_positions *p, uint32_t pidx,
		   struct shm_position_view *v)
{
	const struct shm_position_sh *s = &p->pos[pidx];
	if (!slot_ready(&s->state)) /* PS2 */
		return SHMEX_ENOSHARES;
	uint32_t sidx = s->sym;
	/* Everything read from the region is checked before use. */
	if (sidx >= p->sym_slots || !slot_ready(&p->sym[sidx].state))
		return SHMEX_EBADINDEX;
	memcpy(v->symbol, p->sym[sidx].name, 16);
	if (shm_symbol_unpack_len(v->symbol) == 0)
		return SHMEX_EBADINDEX;
	v->account = s->account;
	v->sym = sidx;
	/* PS4: pair with PS3.  reserved first: see the four moves. */
	v->reserved = load16_acquire(&s->reserved);
	v->amount = load16_acquire(&s->amount);
	/* A consistent region never holds a value outside 0..SHM_SHARES_MAX
	 * (created bounds every position): anything else is damage, reported
	 * rather than shown as shares. */
	if (v->amount < 0 || v->amount > SHM_SHARES_MAX || v->reserved < 0 ||
	    v->reserved > SHM_SHARES_MAX)
		return SHMEX_EBADINDEX;
	return 0;
}

int shm_positions_read(const struct shm_positions *p, uint64_t account,
		       const char name[16], struct shm_position_view *v)
{
	uint32_t sidx, pidx;
	int rc = shm_positions_symbol_find(p, name, &sidx);
	if (rc)
		return rc;
	rc = shm_positions_find(p, account, sidx, &pidx);
	if (rc)
		return rc;
	return view_of(p, pidx, v);
}

int shm_positions_read_slot(const struct shm_positions *p, uint32_t pidx,
			    struct shm_position_view *v)
{
	if (!p->pos || pidx >= p->pos_slots)
		return SHMEX_EBADINDEX;
	return view_of(p, pidx, v);
}

int shm_positions_totals(const struct shm_positions *p, uint32_t sidx,
			 struct shm_positions_totals *t)
{
	memset(t, 0, sizeof(*t));
	if (!p->sym || sidx >= p->sym_slots)
		return SHMEX_EBADINDEX;
	if (!slot_ready(&p->sym[sidx].state)) /* PS2 */
		return SHMEX_ENOSYMBOL;
	shm_shares_t amount = 0, reserved = 0;
	bool over = false;
	for (uint32_t i = 0; i < p->pos_slots; i++) {
		struct shm_position_view v;
		if (view_of(p, i, &v) != 0 || v.sym != sidx)
			continue;
		t->positions++;
		/* Bounded by created on a consistent region; a corrupted one
		 * may hold anything. */
		over |= __builtin_add_overflow(amount, v.amount, &amount);
		over |= __builtin_add_overflow(reserved, v.reserved, &reserved);
	}
	t->created = load16_acquire(&p->sym[sidx].created); /* PS4 */
	if (over)
		return SHMEX_EOVERFLOW;
	t->amount = amount;
	t->reserved = reserved;
	return 0;
}

/*
 * shm_ledger: a shard's part of the cash accounts (contract in
 * shm_ledger.h).
 *
 * An insert-only open-addressing table like the accounts' own, hashed the
 * same way (shm_hash.h).  One writer, so an entry is claimed with a plain
 * store of its key after its fields are zero: a reader that races the
 * insert sees the key with zero parts, which is what the part was.
 */
#include "shm/shm_ledger.h"

#include <errno.h>
#include <string.h>

#include "shm/shm_error.h"
#include "shm/shm_hash.h"

#define HDR_BYTES sizeof(struct shm_ledger_hdr_sh)

static int check_layout(struct shm_ledger *l, uint32_t shard)
{
	const struct shm_region_hdr_sh *h = shm_region_hdr(&l->region);
	uint64_t slots = h->capacity[SHM_LEDGER_CAP_SLOTS];
	if (h->capacity[SHM_LEDGER_CAP_SHARD] != shard || slots < 2 ||
	    slots > (UINT64_C(1) << 31) || (slots & (slots - 1)))
		return SHMEX_EBADLAYOUT;
	if (shm_region_body_size(&l->region) < HDR_BYTES + slots * sizeof(*l->ent))
		return SHMEX_ETOOSHORT;
	l->hdr = shm_region_body(&l->region);
	l->ent = (struct shm_ledger_ent_sh *)((char *)l->hdr + HDR_BYTES);
	l->shard = shard;
	l->nslots = (uint32_t)slots;
	l->mask = (uint32_t)slots - 1;
	return 0;
}

size_t shm_ledger_bytes(uint64_t accounts)
{
	return HDR_BYTES + shm_hash_slots(accounts) * sizeof(struct shm_ledger_ent_sh);
}

int shm_ledger_create(struct shm_ledger *l, const char *instance, uint32_t shard,
		      uint64_t accounts, mode_t mode)
{
	memset(l, 0, sizeof(*l));
	if (accounts == 0 || accounts > SHM_SETTINGS_CAP_MAX)
		return -EINVAL;
	if (!shm_atomic16_check())
		return SHMEX_ENOATOMIC16; /* 128-bit cash (shm_atomic16.h) */
	char name[SHM_REGION_NAME_MAX];
	int rc = shm_region_name(name, SHM_KIND_LEDGER, shard);
	if (rc)
		return rc;
	uint64_t caps[2];
	caps[SHM_LEDGER_CAP_SHARD] = shard;
	caps[SHM_LEDGER_CAP_SLOTS] = shm_hash_slots(accounts);
	rc = shm_region_create(&l->region, instance, name, SHM_KIND_LEDGER,
			       HDR_BYTES + caps[1] * sizeof(struct shm_ledger_ent_sh),
			       caps, 2, mode);
	if (rc)
		return rc;
	rc = check_layout(l, shard);
	if (rc) {
		shm_region_detach(&l->region);
		(void)shm_region_unlink(instance, name);
		return rc;
	}
	/* Zero-filled: no entries, phase NONE, incarnation 0.  [R0] */
	shm_region_publish(&l->region);
	return 0;
}

int shm_ledger_attach(struct shm_ledger *l, const char *instance, uint32_t shard,
		      enum shm_attach_mode mode)
{
	memset(l, 0, sizeof(*l));
	if (!shm_atomic16_check())
		return SHMEX_ENOATOMIC16; /* 128-bit cash (shm_atomic16.h) */
	char name[SHM_REGION_NAME_MAX];
	int rc = shm_region_name(name, SHM_KIND_LEDGER, shard);
	if (!rc)
		rc = shm_region_attach(&l->region, instance, name, SHM_KIND_LEDGER, mode);
	if (rc)
		return rc;
	rc = check_layout(l, shard);
	if (rc) {
		shm_region_detach(&l->region);
		return shmex_error_set(&l->region.err, rc, "%s: %s", l->region.name,
				       shmex_strerror(rc));
	}
	return 0;
}

void shm_ledger_detach(struct shm_ledger *l)
{
	shm_region_detach(&l->region);
	l->hdr = NULL;
	l->ent = NULL;
}

/* Slot of key, or of the empty slot where it would go; false when the
 * table is full without it. */
static bool probe(const struct shm_ledger *l, uint64_t key, uint32_t *at)
{
	uint32_t i = shm_hash_u64(key) & l->mask;
	for (uint32_t n = 0; n < l->nslots; n++, i = (i + 1) & l->mask) {
		/* Relaxed: the single writer set it; see the top. */
		uint64_t k = load_relaxed(&l->ent[i].key);
		if (k == key || k == 0) {
			*at = i;
			return true;
		}
	}
	return false;
}

int shm_ledger_add(struct shm_ledger *l, uint64_t account, shm_cash_t deposit,
		   shm_cash_t balance, shm_cash_t reserved)
{
	if (!l->ent || !l->region.writable)
		return -EROFS;
	uint64_t key = account + 1;
	uint32_t i;
	if (!probe(l, key, &i))
		return SHMEX_EACCOUNTSFULL;
	struct shm_ledger_ent_sh *e = &l->ent[i];
	/* Relaxed stores: one writer; exact readers read it paused (LG2). */
	if (load_relaxed(&e->key) == 0) {
		store_relaxed(&e->key, key);
		store_relaxed(&l->hdr->used, load_relaxed(&l->hdr->used) + 1);
	}
	store16_release(&e->deposit, load16_acquire(&e->deposit) + deposit);
	store16_release(&e->balance, load16_acquire(&e->balance) + balance);
	store16_release(&e->reserved, load16_acquire(&e->reserved) + reserved);
	return 0;
}

void shm_ledger_clear(struct shm_ledger *l)
{
	if (!l->ent || !l->region.writable)
		return;
	memset(l->ent, 0, (size_t)l->nslots * sizeof(*l->ent));
	store_relaxed(&l->hdr->used, (uint64_t)0);
}

void shm_ledger_get(const struct shm_ledger *l, uint64_t account,
		    struct shm_ledger_part *p)
{
	memset(p, 0, sizeof(*p));
	p->account = account;
	uint32_t i;
	if (!l->ent || !probe(l, account + 1, &i) || load_relaxed(&l->ent[i].key) == 0)
		return;
	const struct shm_ledger_ent_sh *e = &l->ent[i];
	p->deposit = load16_acquire(&e->deposit);
	p->balance = load16_acquire(&e->balance);
	p->reserved = load16_acquire(&e->reserved);
}

bool shm_ledger_slot(const struct shm_ledger *l, uint32_t i, struct shm_ledger_part *p)
{
	if (!l->ent || i >= l->nslots)
		return false;
	const struct shm_ledger_ent_sh *e = &l->ent[i];
	uint64_t k = load_relaxed(&e->key);
	if (k == 0)
		return false;
	memset(p, 0, sizeof(*p));
	p->account = k - 1;
	p->deposit = load16_acquire(&e->deposit);
	p->balance = load16_acquire(&e->balance);
	p->reserved = load16_acquire(&e->reserved);
	return true;
}

/*
 * shm_shard: who owns what.  The maps every process uses to route, and the
 * order-id scheme that makes an order id name its shard and its record:
 *
 *   symbol     -> shard   FNV-1a of the symbol's bytes, mixed (murmur3
 *                         fmix32), mod nshards
 *   account id -> shard   id mod nshards (its "home" shard, where
 *                         CREATE_ACCOUNT is applied)
 *   order id   -> shard   (id - 1) mod nshards
 *   order id   -> record  ((id - 1) / nshards) mod cap (the book's order
 *                         record capacity)
 *
 * A process that disagrees on any of these must not share an exchange:
 * shm_layout_signature probes them with fixed inputs.  Pure functions,
 * safe from any thread.
 */
#ifndef SHMEX_SHM_SHARD_H
#define SHMEX_SHM_SHARD_H

#include <stddef.h>
#include <stdint.h>

/* Shard that owns a symbol. */
uint32_t shm_shard_of_symbol(const char *sym, size_t len, uint32_t nshards);

/* Home shard of an account (where CREATE_ACCOUNT is applied). */
static inline uint32_t shm_shard_of_account(uint64_t account, uint32_t nshards)
{
	return (uint32_t)(account % nshards);
}

/*
 * Order ids are unique across all shards and say which shard owns them and
 * where the record lives:  id = (gen * cap + slot) * nshards + shard + 1,
 * with cap the shard's order-record capacity and gen how many times the
 * slot was reused.  So the first orders of shard 0 of 2 are 1, 3, 5, ...
 * An id must fit 64 bits: gen may grow to shm_order_gen_max(cap, nshards)
 * (2^28 reuses of every slot at the largest capacities, 2^64 / (cap *
 * nshards) in general); the writer never reuses a slot past it.
 */
static inline uint32_t shm_shard_of_order(uint64_t id, uint32_t nshards)
{
	return (uint32_t)((id - 1) % nshards);
}

static inline uint64_t shm_order_id_make(uint32_t shard, uint32_t nshards, uint64_t slot,
					 uint64_t gen, uint64_t cap)
{
	return (gen * cap + slot) * nshards + shard + 1;
}

static inline uint64_t shm_order_slot(uint64_t id, uint32_t nshards, uint64_t cap)
{
	return ((id - 1) / nshards) % cap;
}

/* Largest gen for which every id of the scheme fits in 64 bits. */
static inline uint64_t shm_order_gen_max(uint64_t cap, uint32_t nshards)
{
	/* (gen * cap + cap - 1) * nshards + nshards <= UINT64_MAX */
	return (UINT64_MAX / nshards) / cap - 1;
}

#endif

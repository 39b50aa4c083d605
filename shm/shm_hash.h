/*
 * shm_hash: the hashing of the shared open-addressing tables (accounts,
 * positions, ledgers), stated once: every process that probes a table must
 * hash exactly like the process that filled it.
 */
#ifndef SHMEX_SHM_HASH_H
#define SHMEX_SHM_HASH_H

#include <stdint.h>

/* splitmix64's finaliser: sequential keys spread over the table. */
static inline uint32_t shm_hash_u64(uint64_t key)
{
	key ^= key >> 30;
	key *= UINT64_C(0xbf58476d1ce4e5b9);
	key ^= key >> 27;
	key *= UINT64_C(0x94d049bb133111eb);
	key ^= key >> 31;
	return (uint32_t)key;
}

/* Slots of a table for `capacity` keys: a power of two, at least twice the
 * capacity, so probes stay short and an empty slot always remains. */
static inline uint32_t shm_hash_slots(uint64_t capacity)
{
	uint64_t n = 2;
	while (n < 2 * capacity)
		n <<= 1;
	return (uint32_t)n;
}

#endif

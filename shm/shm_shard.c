/*
 * shm_shard: the symbol map (contract in shm_shard.h).
 */
#include "shm/shm_shard.h"

uint32_t shm_shard_of_symbol(const char *sym, size_t len, uint32_t nshards)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)sym[i];
		h *= 16777619u;
	}
	/* FNV-1a's low bits depend only on the low bits of the characters
	 * (mod 2 it is the parity of their XOR), so finish with murmur3's
	 * fmix32 before taking the remainder. */
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return nshards ? h % nshards : 0;
}

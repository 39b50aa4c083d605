/*
 * rpl_sha256: SHA-256 (FIPS 180-4), streaming, for the report hashes of
 * shmex-replay and the conformance tests (the batteries publish the
 * SHA-256 of their canonical report streams).  No dependencies.
 */
#ifndef SHMEX_ENGINE_REPLAY_RPL_SHA256_H
#define SHMEX_ENGINE_REPLAY_RPL_SHA256_H

#include <stddef.h>
#include <stdint.h>

struct rpl_sha256 {
	uint32_t h[8];
	uint64_t bytes; /* message length so far */
	uint8_t buf[64];
	uint32_t nbuf; /* bytes waiting in buf */
};

void rpl_sha256_init(struct rpl_sha256 *c);
void rpl_sha256_update(struct rpl_sha256 *c, const void *data, size_t len);
void rpl_sha256_final(struct rpl_sha256 *c, uint8_t out[32]);
/* Lower-case hex of a digest: 64 characters and a NUL. */
void rpl_sha256_hex(const uint8_t d[32], char out[65]);

#endif

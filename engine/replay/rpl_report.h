/*
 * rpl_report: the two pieces every replay path shares, whether the flow
 * runs through an in-process core (rpl.c) or a real matcher process over
 * shared memory (rpl_shm.c):
 *
 *  - the report of one flow: the canonical lines of each message are
 *    collected, then sent out stable-sorted by type (the batteries'
 *    canonical order), counted per type, hashed (SHA-256 of the lines
 *    joined by '\n') and passed to an optional sink;
 *  - the map from the batteries' client order ids to shmex order ids
 *    (open addressing, u64 -> u64, 0 meaning "absent").
 *
 * Single-threaded.  Limits: one message's lines grow without bound (a
 * sweep of the whole book); the map doubles when half full.
 */
#ifndef SHMEX_ENGINE_REPLAY_RPL_REPORT_H
#define SHMEX_ENGINE_REPLAY_RPL_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/replay/rpl_sha256.h"

/* Report line sink: one call per line, in canonical order, no newline. */
typedef void (*rpl_line_fn)(void *ctx, const char *line, size_t len);

struct rpl_line_ref {
	uint32_t off, len;
	uint8_t type;
};

struct rpl_report {
	bool format;      /* render lines (else only count them) */
	bool sha256;      /* hash the rendered lines */
	rpl_line_fn sink; /* may be NULL */
	void *ctx;
	uint64_t counts[6]; /* lines per type so far */
	uint64_t rejected;  /* NEW messages the core refused (no line) */
	bool oom;           /* a line could not be stored */
	/* private */
	char *buf;
	size_t len, cap;
	struct rpl_line_ref *lines;
	size_t n, lcap;
	bool any;
	struct rpl_sha256 sha;
};

/* Starts a report (keeps buffers of a previous one). */
void rpl_report_reset(struct rpl_report *r, bool format, bool sha256, rpl_line_fn sink,
		      void *ctx);
/* One line of the current message: type then the fields, comma separated. */
void rpl_report_line(struct rpl_report *r, unsigned type, int n, const int64_t *f);
/* The current message is complete: its lines go out in canonical order. */
void rpl_report_flush(struct rpl_report *r);
/* SHA-256 of every line so far, as hex; ends the hash (call once). */
void rpl_report_sha256_hex(struct rpl_report *r, char out[65]);
void rpl_report_free(struct rpl_report *r);

struct rpl_idmap {
	uint64_t *key, *val;
	size_t mask, used;
};

/* cap: a power of two.  Returns 0 or -ENOMEM. */
int rpl_idmap_init(struct rpl_idmap *m, size_t cap) __attribute__((warn_unused_result));
uint64_t rpl_idmap_get(const struct rpl_idmap *m, uint64_t k);
/* v != 0.  Returns 0 or -ENOMEM (the map is then unchanged). */
int rpl_idmap_put(struct rpl_idmap *m, uint64_t k, uint64_t v)
	__attribute__((warn_unused_result));
void rpl_idmap_free(struct rpl_idmap *m);

#endif

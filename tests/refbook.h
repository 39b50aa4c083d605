/*
 * refbook: a small, obviously correct reference order book for the
 * differential test of eng_core and the naive baseline of the match
 * benchmark.  It follows the same rules and emits the same events
 * (struct eng_event) as the core, computed the simplest possible way:
 * every step scans all resting orders for the best price and the earliest
 * arrival; FOK runs the match on a copy first.  Ids are given by the
 * caller (the core's ids in the differential test).  No capacities: it
 * never rejects with SHMEX_EBOOKFULL.
 */
#ifndef SHMEX_TESTS_REFBOOK_H
#define SHMEX_TESTS_REFBOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/eng_core.h"

struct refbook;

struct refbook *refbook_new(uint32_t nsymbols, uint32_t stp_mode, eng_event_fn fn,
			    void *ctx);
void refbook_free(struct refbook *rb);
/* Same contract as eng_core_submit, with the id chosen by the caller. */
int refbook_submit(struct refbook *rb, const struct eng_req *r, uint64_t id);
int refbook_cancel(struct refbook *rb, const struct eng_req *r);
int refbook_modify(struct refbook *rb, const struct eng_req *r);
/* Aggregated levels of one side, best first. */
size_t refbook_depth(const struct refbook *rb, uint32_t sym, unsigned side,
		     struct eng_core_level_info *out, size_t max);
/* True when the id was ever accepted. */
bool refbook_has(const struct refbook *rb, uint64_t id);
/* Resting orders. */
size_t refbook_live(const struct refbook *rb);

#endif

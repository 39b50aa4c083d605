/*
 * eng_alloc: where the engine's private memory comes from.
 *
 * The engine's handles keep private structures in the memory of the
 * process that made them: the matching core's free lists, retirement
 * FIFOs, symbol hash, per-symbol price arrays and level hash (eng_core),
 * the cash module's credit queue and allowance map (eng_cash), the
 * matcher's ring handles, reply queues and batch marks (eng_matcher), the
 * journal's buffers.  Every one of those allocations goes through the
 * functions below.  By default they are malloc, calloc, realloc and free,
 * and, for the core's large areas that are touched lazily, a private
 * MAP_NORESERVE mapping: exactly what the engine called before.
 *
 * eng_alloc_set replaces them, for the whole process, with the caller's
 * functions (as sqlite3_config(SQLITE_CONFIG_MALLOC) or jansson's
 * json_set_alloc_funcs do).  Its one user is the global-lock baseline of
 * the scaling benchmark (tests/bench/bench_scaling.c): it hands out memory
 * from one MAP_SHARED arena mapped before fork(), so that a matcher handle
 * opened before the fork is the same state, at the same address, in every
 * worker process, and the workers can run the very same apply code on one
 * book behind one process-shared lock.
 *
 * Contract:
 *  - set the hooks while the process runs one thread, before the first
 *    engine call that allocates, and keep them until the last close or
 *    destroy: memory is given back through the hooks set at that time;
 *  - eng_alloc_reserve hands its large areas to the hooks' calloc, so a
 *    calloc that zeroes eagerly commits memory that the default keeps
 *    lazy (an arena that never reuses memory can skip the zeroing);
 *  - the shm/ handles the engine holds are not covered (shm_rcu's table
 *    of reader slots seen, used only by the matcher loop's reclamation).
 *
 * Cost: each function tests one flag.  No hot path of the engine
 * allocates (eng_core.h: nothing after init and symbol_add; the queues
 * grow by doubling).
 */
#ifndef SHMEX_ENGINE_ENG_ALLOC_H
#define SHMEX_ENGINE_ENG_ALLOC_H

#include <stddef.h>

struct eng_alloc_hooks {
	void *(*malloc)(size_t size);
	void *(*calloc)(size_t n, size_t size); /* zeroed, like calloc */
	void *(*realloc)(void *p, size_t size);
	void (*free)(void *p);
};

/* Installs copies of *h (all four must be set), or the defaults again
 * when h is NULL.  Not thread-safe: see the contract above. */
void eng_alloc_set(const struct eng_alloc_hooks *h);

/* For the engine's modules: malloc, calloc, realloc and free, or the
 * hooks. */
void *eng_alloc_malloc(size_t size) __attribute__((malloc, alloc_size(1)));
void *eng_alloc_calloc(size_t n, size_t size) __attribute__((malloc, alloc_size(1, 2)));
void *eng_alloc_realloc(void *p, size_t size) __attribute__((alloc_size(2)));
void eng_alloc_free(void *p);

/* A large zeroed area whose pages are backed only when first touched
 * (default: a private MAP_NORESERVE mapping; hooked: the hooks' calloc).
 * NULL when it cannot be had.  eng_alloc_unreserve(p, len) gives it back
 * (p may be NULL). */
void *eng_alloc_reserve(size_t len) __attribute__((malloc, alloc_size(1)));
void eng_alloc_unreserve(void *p, size_t len);

#endif

/*
 * shm_atomic: the few atomic operations shmex uses on shared memory, named
 * after their ordering so that every call site says what it means.
 *
 * Every acquire/release at a call site carries a label naming its pair, and
 * docs/concurrency.md lists all labels.  Full fences and the CPU pause come
 * from liburcu (cmm_smp_mb, caa_cpu_relax); loads, stores and
 * read-modify-writes are the compiler's __atomic builtins, which implement
 * the C11 memory model that liburcu's own CMM_ and uatomic_ primitives map
 * to on x86-64 and arm64.  Never use volatile for synchronisation.
 */
#ifndef SHMEX_SHM_ATOMIC_H
#define SHMEX_SHM_ATOMIC_H

#include <stdbool.h>
#include <stdint.h>

#include <urcu/arch.h>

/* Relaxed: the caller's comment must say why no ordering is needed. */
#define load_relaxed(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define store_relaxed(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
/* Acquire load: pairs with a store_release of the same location. */
#define load_acquire(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
/* Release store: publishes every earlier write to an acquiring reader. */
#define store_release(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
/* Sequentially consistent store+fence, for Dekker-style sleep/wake. */
#define store_seq_cst(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#define load_seq_cst(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)

#define fetch_add_relaxed(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)
#define fetch_add_acq_rel(p, v) __atomic_fetch_add((p), (v), __ATOMIC_ACQ_REL)
#define exchange_acq_rel(p, v) __atomic_exchange_n((p), (v), __ATOMIC_ACQ_REL)

/* Strong compare-and-swap; on failure *expected gets the current value. */
#define cas_acq_rel(p, expected, desired)                                                \
	__atomic_compare_exchange_n((p), (expected), (desired), false, __ATOMIC_ACQ_REL, \
				    __ATOMIC_ACQUIRE)

/* Full barrier (liburcu): orders earlier loads and stores before later ones. */
#define fence_full() cmm_smp_mb()
#define fence_acquire() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define fence_release() __atomic_thread_fence(__ATOMIC_RELEASE)
/* Compiler-only barrier. */
#define fence_compiler() cmm_barrier()
/* Polite spin-wait hint (pause on x86). */
#define cpu_relax() caa_cpu_relax()

#define SHM_CACHE_LINE 64
#define shm_aligned __attribute__((aligned(SHM_CACHE_LINE)))

#endif

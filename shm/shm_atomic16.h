/*
 * shm_atomic16: the 16-byte atomics of 128-bit cash (shm_cash_t) in shared
 * memory, x86-64 only.
 *
 * Why these and not the __atomic builtins: on __int128 GCC's __atomic_*
 * call libatomic, which may take a lock (not lock-free, and a lock in a
 * process-private table protects nothing across processes).  Instead:
 *   cas16    lock cmpxchg16b, written as the instruction (inline,
 *            lock-free, a full barrier; see cas16 for why not the
 *            __sync builtin);
 *   load16   an aligned 16-byte SSE load (movdqa), which does not write:
 *            cmpxchg16b would fault on a read-only mapping, and readers
 *            (gateways, shmex-query) map accounts read-only;
 *   store16  an aligned 16-byte SSE store (movdqa).
 * A 16-byte aligned movdqa is atomic on every processor that enumerates
 * AVX (Intel SDM vol. 3A 9.1.1 "Guaranteed Atomic Operations", AMD APM
 * vol. 2 7.3.2), so shm_atomic16_check() requires both CPUID.1:ECX.CX16
 * and CPUID.1:ECX.AVX, and every process that maps cash calls it before
 * it touches any (shm_accounts, shm_ledger attach and create): a CPU
 * without them is refused with SHMEX_ENOATOMIC16, never run with torn
 * cash.  Ordering: x86-64 keeps loads in order with loads and stores with
 * stores (TSO), so each asm also being a compiler barrier ("memory")
 * makes load16 an acquire and store16 a release; cas16 is sequentially
 * consistent.  Every shm_cash_t in shared memory is 16-byte aligned
 * (static asserts next to each struct).
 */
#ifndef SHMEX_SHM_ATOMIC16_H
#define SHMEX_SHM_ATOMIC16_H

#include <cpuid.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <emmintrin.h>

#include "shm/shm_dec.h"

#if !defined(__x86_64__) || !defined(__GCC_HAVE_SYNC_COMPARE_AND_SWAP_16)
#error "128-bit cash needs x86-64 with -mcx16 (see shm/shm_atomic16.h)"
#endif

/* True when this CPU has lock-free 16-byte CAS and atomic 16-byte loads. */
static inline bool shm_atomic16_check(void)
{
	unsigned a, b, c, d;
	if (!__get_cpuid(1, &a, &b, &c, &d))
		return false;
	return (c & bit_CMPXCHG16B) && (c & bit_AVX);
}

/* Acquire load of an aligned shm_cash_t (any mapping, read-only too). */
static inline shm_cash_t load16_acquire(const shm_cash_t *p)
{
	__m128i x;
	__asm__ __volatile__("movdqa %1, %0"
			     : "=x"(x)
			     : "m"(*(const __m128i *)p)
			     : "memory");
	shm_cash_t v;
	memcpy(&v, &x, sizeof(v));
	return v;
}

/* Release store of an aligned shm_cash_t (a single writer's value). */
static inline void store16_release(shm_cash_t *p, shm_cash_t v)
{
	__m128i x;
	memcpy(&x, &v, sizeof(v));
	__asm__ __volatile__("movdqa %1, %0" : "=m"(*(__m128i *)p) : "x"(x) : "memory");
}

/* CAS: when *p == *expected, *p = desired and true; otherwise *expected
 * gets the current value and false.  Full barrier either way.  Written as
 * the instruction itself, not __sync_val_compare_and_swap: under
 * ThreadSanitizer that builtin becomes a call into its runtime, which
 * emulates 16-byte CAS under a lock of its own process, so two processes
 * (two matchers on one account) would lose updates; the instruction is
 * the same in every build. */
static inline bool cas16(shm_cash_t *p, shm_cash_t *expected, shm_cash_t desired)
{
	uint64_t lo = (uint64_t)*expected;
	uint64_t hi = (uint64_t)((unsigned __int128)*expected >> 64);
	bool ok;
	__asm__ __volatile__("lock cmpxchg16b %1"
			     : "=@ccz"(ok), "+m"(*p), "+a"(lo), "+d"(hi)
			     : "b"((uint64_t)desired),
			       "c"((uint64_t)((unsigned __int128)desired >> 64))
			     : "memory");
	if (!ok)
		*expected = (shm_cash_t)(((unsigned __int128)hi << 64) | lo);
	return ok;
}

/* *p += d, returning the old value (a CAS loop; full barrier). */
static inline shm_cash_t fetch_add16(shm_cash_t *p, shm_cash_t d)
{
	shm_cash_t v = load16_acquire(p);
	while (!cas16(p, &v, (shm_cash_t)((unsigned __int128)v + (unsigned __int128)d)))
		;
	return v;
}

#endif

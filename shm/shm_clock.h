/*
 * shm_clock: the one way shmex reads a clock, as nanoseconds.
 *
 * CLOCK_MONOTONIC for deadlines and intervals, CLOCK_MONOTONIC_COARSE where
 * a few milliseconds of error are fine and the call must be cheap,
 * CLOCK_REALTIME for event times that clients see (seconds since the epoch
 * in replies).  The matching core never reads a clock: time is an input.
 */
#ifndef SHMEX_SHM_CLOCK_H
#define SHMEX_SHM_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t shm_clock_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif

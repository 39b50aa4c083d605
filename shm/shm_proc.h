/*
 * shm_proc: identify a process across pid reuse.
 *
 * Anything a process owns in shared memory records its pid and its start
 * time (field 22 of /proc/PID/stat, clock ticks since boot).  A pid alone is
 * not enough: after the owner dies the kernel may hand the pid to another
 * process; the pair (pid, start time) names exactly one process for the life
 * of the machine (LMDB's reader table has the pid-reuse weakness; this
 * closes it).
 */
#ifndef SHMEX_SHM_PROC_H
#define SHMEX_SHM_PROC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * A process identity as one 64-bit word, for owner fields that are
 * claimed with one CAS (member slots, reader slots, the reader table's
 * writer): (start << SHM_PROC_PID_BITS) | pid, 0 meaning "nobody".  Linux
 * pids are below 2^22 (pid_max limit); start times in ticks fit the
 * remaining 42 bits for millennia.
 */
#define SHM_PROC_PID_BITS 22
#define SHM_PROC_START_BITS 42

/* The word for (pid, start); 0 when either does not fit. */
static inline uint64_t shm_proc_ident(pid_t pid, uint64_t start)
{
	if (pid <= 0 || (uint64_t)pid >= (UINT64_C(1) << SHM_PROC_PID_BITS) ||
	    start >= (UINT64_C(1) << SHM_PROC_START_BITS))
		return 0;
	return (start << SHM_PROC_PID_BITS) | (uint64_t)pid;
}

static inline pid_t shm_proc_ident_pid(uint64_t ident)
{
	return (pid_t)(ident & ((UINT64_C(1) << SHM_PROC_PID_BITS) - 1));
}

static inline uint64_t shm_proc_ident_start(uint64_t ident)
{
	return ident >> SHM_PROC_PID_BITS;
}

/* The calling process's word. */
uint64_t shm_proc_self_ident(void);

/* True when the word names a live process (shm_proc_alive). */
bool shm_proc_ident_alive(uint64_t ident);

/* Start time of pid in clock ticks since boot; -ESRCH when it is gone. */
int shm_proc_start_time(pid_t pid, uint64_t *start) __attribute__((warn_unused_result));
/* Start time of the calling process (cached after the first call). */
uint64_t shm_proc_self_start(void);
/* True when (pid, start) still names a live process (a zombie is dead). */
bool shm_proc_alive(pid_t pid, uint64_t start);

#endif

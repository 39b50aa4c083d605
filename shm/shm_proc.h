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

/* Start time of pid in clock ticks since boot; -ESRCH when it is gone. */
int shm_proc_start_time(pid_t pid, uint64_t *start) __attribute__((warn_unused_result));
/* Start time of the calling process (cached after the first call). */
uint64_t shm_proc_self_start(void);
/* True when (pid, start) still names a live process (a zombie is dead). */
bool shm_proc_alive(pid_t pid, uint64_t start);

#endif

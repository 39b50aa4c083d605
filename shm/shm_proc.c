/*
 * shm_proc: process identity from /proc (see shm_proc.h).
 */
#include "shm/shm_proc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Reads /proc/PID/stat: the start time (field 22) and the state letter
 * (field 3).  The command name (field 2) may hold spaces and parentheses,
 * so fields are counted from the last ')'. */
static int read_stat(pid_t pid, uint64_t *start, char *state)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ESRCH : -errno;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	int saved = errno;
	close(fd);
	if (n <= 0)
		return n < 0 ? -saved : -ESRCH;
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	if (!p || p[1] != ' ' || p[2] == '\0')
		return -EINVAL;
	*state = p[2];
	p++;
	for (int field = 3; field < 22; field++) {
		p = strchr(p + 1, ' ');
		if (!p)
			return -EINVAL;
	}
	char *end;
	errno = 0;
	unsigned long long v = strtoull(p + 1, &end, 10);
	if (errno || end == p + 1)
		return -EINVAL;
	*start = v;
	return 0;
}

int shm_proc_start_time(pid_t pid, uint64_t *start)
{
	char state;
	return read_stat(pid, start, &state);
}

uint64_t shm_proc_self_start(void)
{
	static pid_t cached_pid;
	static uint64_t cached_start;
	pid_t me = getpid();
	if (cached_pid != me) {
		uint64_t s = 0;
		if (shm_proc_start_time(me, &s) != 0)
			s = 0;
		cached_start = s;
		cached_pid = me;
	}
	return cached_start;
}

uint64_t shm_proc_self_ident(void)
{
	return shm_proc_ident(getpid(), shm_proc_self_start());
}

bool shm_proc_ident_alive(uint64_t ident)
{
	return ident != 0 &&
	       shm_proc_alive(shm_proc_ident_pid(ident), shm_proc_ident_start(ident));
}

bool shm_proc_alive(pid_t pid, uint64_t start)
{
	if (pid <= 0)
		return false;
	uint64_t now;
	char state;
	if (read_stat(pid, &now, &state) != 0)
		return false;
	/* A zombie (Z) or dying (X) process holds nothing any more. */
	return now == start && state != 'Z' && state != 'X';
}

/*
 * shm_rcu_suite: the cross-process RCU reader table.
 *
 * Reader processes are real (fork, then attach by name like any other
 * process would); parent and children synchronise over pipes, never over
 * sleeps.  The sixteen_reader_processes case runs a miniature RCU structure
 * in a test region (publish, retire, reclaim with poisoning) under sixteen
 * reading processes and checks that no reader ever sees a reclaimed node.
 *
 * Every behaviour is tested in both fence protocols: loop tests take the
 * mode from their index (0: fence, 1: asymmetric with a membarrier on every
 * poll that has an uncovered epoch, so the exact expectations of the fence
 * protocol hold; 2, where present: asymmetric with the default rate limit).
 */
#include "tests/shmex_test.h"
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/mman.h>

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shm/shm_error.h"
#include "shm/shm_proc.h"
#include "shm/shm_rcu.h"
#include "shm/shm_rcu_inline.h"
#include "shm/shm_region.h"

static char inst[64];

/* Variant of the current loop test (see the top comment). */
static enum shm_rcu_mode cur_mode;
static bool cur_rate_limited;

static void setup(void)
{
	test_instance(inst, sizeof(inst));
	unsetenv(SHM_RCU_FENCE_ENV);
}

static void teardown(void)
{
	test_cleanup_instance(inst);
}

static void use_mode(int i)
{
	cur_mode = i == 0 ? SHM_RCU_MODE_FENCE : SHM_RCU_MODE_ASYM;
	cur_rate_limited = i == 2;
	if (cur_mode == SHM_RCU_MODE_ASYM && !shm_rcu_asym_supported()) {
		fprintf(stderr,
			"no membarrier here: asymmetric variant runs in fence mode\n");
		cur_mode = SHM_RCU_MODE_FENCE;
	}
}

static void make_table(struct shm_rcu *w, unsigned shard, uint32_t nslots)
{
	int rc = shm_rcu_create_mode(w, inst, shard, nslots, 0600, cur_mode);
	ck_assert_msg(rc == 0, "create: %s (%s)", shmex_strerror(rc), w->region.err.msg);
	ck_assert_uint_eq(shm_rcu_epoch(w), 1);
	ck_assert_int_eq(shm_rcu_table_mode(w), cur_mode);
	ck_assert_uint_eq(w->hdr->mode, (uint32_t)cur_mode);
	if (!cur_rate_limited)
		shm_rcu_set_barrier_interval(w, 0, 0);
}

/* --- child processes ------------------------------------------------------ */

struct child {
	pid_t pid;
	int to_child;   /* parent writes commands */
	int from_child; /* parent reads reports */
};

static void put_u64(int fd, uint64_t v)
{
	if (write(fd, &v, sizeof(v)) != (ssize_t)sizeof(v))
		_exit(90);
}

static uint64_t get_u64(int fd)
{
	uint64_t v = 0;
	ssize_t n = read(fd, &v, sizeof(v));
	return n == (ssize_t)sizeof(v) ? v : UINT64_MAX;
}

/* Forks a child running fn(in, out) and exiting with its result. */
static struct child spawn(int (*fn)(int in, int out, void *arg), void *arg)
{
	int down[2], up[2];
	ck_assert_int_eq(pipe(down), 0);
	ck_assert_int_eq(pipe(up), 0);
	struct child c;
	c.pid = fork();
	ck_assert_int_ge(c.pid, 0);
	if (c.pid == 0) {
		close(down[1]);
		close(up[0]);
		_exit(fn(down[0], up[1], arg));
	}
	close(down[0]);
	close(up[1]);
	c.to_child = down[1];
	c.from_child = up[0];
	return c;
}

static int finish(struct child *c, int timeout_ms)
{
	close(c->to_child);
	close(c->from_child);
	int st = test_wait_pid(c->pid, timeout_ms);
	return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Child: attach, register, enter; report the epoch; wait for a command;
 * leave, unregister.  Exit 0 when every step worked. */
static int pinned_reader(int in, int out, void *arg)
{
	struct shm_rcu t;
	struct shm_rcu_reader r;
	if (shm_rcu_attach(&t, inst, 0, SHM_RCU_READER))
		return 10;
	if (shm_rcu_register(&t, &r))
		return 11;
	if (r.asym != (t.mode == SHM_RCU_MODE_ASYM))
		return 17;
	if (shm_rcu_enter(&r))
		return 12;
	put_u64(out, r.epoch);
	if (get_u64(in) == UINT64_MAX)
		return 13;
	if (shm_rcu_leave(&r))
		return 14;
	put_u64(out, 0);
	if (shm_rcu_unregister(&r))
		return 15;
	shm_rcu_detach(&t);
	return 0;
}

/* --- single process ------------------------------------------------------- */

START_TEST(register_enter_leave_nesting)
{
	use_mode(_i);
	struct shm_rcu w, rd;
	struct shm_rcu_reader r;
	make_table(&w, 0, 8);
	ck_assert_int_eq(shm_rcu_attach(&rd, inst, 0, SHM_RCU_READER), 0);
	ck_assert_uint_eq(rd.nslots, 8);
	ck_assert_int_eq(shm_rcu_register(&rd, &r), 0);
	ck_assert_uint_lt(r.index, 8);
	ck_assert_uint_ne(w.slots[r.index].owner, 0);

	ck_assert_uint_eq(shm_rcu_advance(&w), 2);
	ck_assert_int_eq(shm_rcu_enter(&r), 0);
	ck_assert_uint_eq(shm_rcu_section_epoch(w.slots[r.index].section), 2);
	ck_assert_int_eq(shm_rcu_enter_inline(&r), 0);
	ck_assert_uint_eq(w.slots[r.index].nesting, 2);
	ck_assert_uint_eq(shm_rcu_advance(&w), 3);
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w), 2);
	ck_assert_int_eq(shm_rcu_leave_inline(&r), 0);
	/* Still inside the outer section. */
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w), 2);
	ck_assert_uint_eq(shm_rcu_section_epoch(w.slots[r.index].section), 2);
	ck_assert_int_eq(shm_rcu_leave(&r), 0);
	ck_assert_uint_eq(shm_rcu_section_epoch(w.slots[r.index].section), 0);
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w), 3);
	ck_assert_int_eq(shm_rcu_leave(&r), -EINVAL);

	/* A new section reads the new epoch. */
	ck_assert_int_eq(shm_rcu_enter(&r), 0);
	ck_assert_uint_eq(r.epoch, 3);
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w), 3);
	ck_assert_uint_eq(shm_rcu_advance(&w), 4);
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w), 3);

	struct shm_rcu_reader_info info[4];
	size_t n = 0;
	ck_assert_int_eq(shm_rcu_list(&w, info, 4, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(info[0].pid, getpid());
	ck_assert_uint_eq(info[0].start, shm_proc_self_start());
	ck_assert(info[0].alive);
	ck_assert(info[0].in_section);
	ck_assert_uint_eq(info[0].epoch, 3);
	ck_assert_uint_eq(info[0].lag, 1);
	struct shm_rcu_stats st;
	shm_rcu_stats(&rd, &st);
	ck_assert_uint_eq(st.registered, 1);
	ck_assert_uint_eq(st.active, 1);
	ck_assert_uint_eq(st.epoch, 4);
	ck_assert_uint_eq(st.safe_epoch, 3);

	/* Unregister inside a section leaves it and frees the slot; the claim
	 * ends with one generation bump, so the next claim's words differ. */
	uint32_t idx = r.index, gen = r.gen;
	ck_assert_uint_eq(w.slots[idx].gen, gen);
	ck_assert_int_eq(shm_rcu_unregister(&r), 0);
	ck_assert_uint_eq(w.slots[idx].gen, gen + 1);
	ck_assert_uint_eq(w.slots[idx].owner, 0);
	ck_assert_int_eq(shm_rcu_list(&w, info, 4, &n), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w), 4);
	shm_rcu_detach(&rd);
	shm_rcu_detach(&w);
	ck_assert_int_eq(shm_rcu_unlink(inst, 0), 0);
}
END_TEST

START_TEST(observer_is_read_only)
{
	use_mode(_i);
	struct shm_rcu w, obs;
	struct shm_rcu_reader r;
	unsigned cleared;
	make_table(&w, 2, 4);
	ck_assert_int_eq(shm_rcu_attach(&obs, inst, 2, SHM_RCU_OBSERVER), 0);
	ck_assert(!obs.region.writable);
	ck_assert_int_eq(shm_rcu_register(&obs, &r), -EPERM);
	ck_assert_int_eq(shm_rcu_clear_stale(&obs, &cleared), -EPERM);
	ck_assert_int_eq(shm_rcu_evict(&obs, 0), -EPERM);
	size_t n = 99;
	ck_assert_int_eq(shm_rcu_list(&obs, NULL, 0, &n), 0);
	ck_assert_uint_eq(n, 0);
	shm_rcu_detach(&obs);
	shm_rcu_detach(&w);
}
END_TEST

START_TEST(attach_errors)
{
	use_mode(_i);
	struct shm_rcu t, w;
	ck_assert_int_eq(shm_rcu_attach(&t, inst, 0, SHM_RCU_READER), -ENOENT);
	ck_assert_int_eq(shm_rcu_attach(&t, inst, 0, (enum shm_rcu_role)7), -EINVAL);
	ck_assert_int_eq(shm_rcu_create(&w, inst, 0, SHM_RCU_MAX_SLOTS + 1, 0600),
			 -EINVAL);
	/* A region of another kind under the readers name. */
	struct shm_region other;
	ck_assert_int_eq(shm_region_create(&other, inst, "readers.3", SHM_KIND_TEST, 4096,
					   NULL, 0, 0600),
			 0);
	shm_region_publish(&other);
	ck_assert_int_eq(shm_rcu_attach(&t, inst, 3, SHM_RCU_READER), SHMEX_EBADKIND);
	shm_region_detach(&other);
	/* A capacity the body cannot hold, or of the wrong shard. */
	make_table(&w, 1, 4);
	struct shm_region_hdr_sh *h = shm_region_hdr(&w.region);
	h->capacity[SHM_RCU_CAP_SLOTS] = 5;
	ck_assert_int_eq(shm_rcu_attach(&t, inst, 1, SHM_RCU_READER), SHMEX_EBADINDEX);
	h->capacity[SHM_RCU_CAP_SLOTS] = UINT64_MAX;
	ck_assert_int_eq(shm_rcu_attach(&t, inst, 1, SHM_RCU_READER), SHMEX_EBADINDEX);
	h->capacity[SHM_RCU_CAP_SLOTS] = 4;
	h->capacity[SHM_RCU_CAP_SHARD] = 2;
	ck_assert_int_eq(shm_rcu_attach(&t, inst, 1, SHM_RCU_OBSERVER), SHMEX_EBADINDEX);
	h->capacity[SHM_RCU_CAP_SHARD] = 1;
	ck_assert_int_eq(shm_rcu_attach(&t, inst, 1, SHM_RCU_OBSERVER), 0);
	ck_assert_int_eq(shm_rcu_table_mode(&t), cur_mode);
	shm_rcu_detach(&t);
	/* An unknown fence protocol in the table header. */
	w.hdr->mode = 9;
	ck_assert_int_eq(shm_rcu_attach(&t, inst, 1, SHM_RCU_READER), SHMEX_EBADINDEX);
	ck_assert_int_eq(shm_rcu_attach(&t, inst, 1, SHM_RCU_OBSERVER), SHMEX_EBADINDEX);
	w.hdr->mode = (uint32_t)cur_mode;
	ck_assert_int_eq(shm_rcu_create_mode(&t, inst, 4, 4, 0600, (enum shm_rcu_mode)7),
			 -EINVAL);
	shm_rcu_detach(&w);
}
END_TEST

static int second_writer(int in, int out, void *arg)
{
	struct shm_rcu t;
	int rc = shm_rcu_attach(&t, inst, 0, SHM_RCU_WRITER);
	put_u64(out, (uint64_t)(int64_t)rc);
	if (rc == 0) {
		put_u64(out, shm_rcu_epoch(&t));
		put_u64(out, shm_rcu_advance(&t));
		shm_rcu_detach(&t);
	}
	return 0;
}

START_TEST(one_writer_at_a_time)
{
	use_mode(_i);
	struct shm_rcu w;
	make_table(&w, 0, 4);
	(void)shm_rcu_advance(&w);
	(void)shm_rcu_advance(&w);
	struct child c = spawn(second_writer, NULL);
	ck_assert_int_eq((int)(int64_t)get_u64(c.from_child), SHMEX_EINUSE);
	ck_assert_int_eq(finish(&c, 10000), 0);
	/* The first writer leaves: a restarted matcher continues its epoch. */
	shm_rcu_detach(&w);
	c = spawn(second_writer, NULL);
	ck_assert_int_eq((int)(int64_t)get_u64(c.from_child), 0);
	ck_assert_uint_eq(get_u64(c.from_child), 3);
	ck_assert_uint_eq(get_u64(c.from_child), 4);
	ck_assert_int_eq(finish(&c, 10000), 0);
	/* A writer that died without detaching does not block the next. */
	struct shm_rcu w2;
	ck_assert_int_eq(shm_rcu_attach(&w2, inst, 0, SHM_RCU_WRITER), 0);
	ck_assert_uint_eq(shm_rcu_epoch(&w2), 4);
	w2.hdr->writer = UINT64_C(0x7fffffff) << SHM_PROC_PID_BITS | 1;
	free(w2.seen);
	shm_region_detach(&w2.region);
	ck_assert_int_eq(shm_rcu_attach(&w2, inst, 0, SHM_RCU_WRITER), 0);
	shm_rcu_detach(&w2);
}
END_TEST

START_TEST(reader_of_several_shards)
{
	use_mode(_i);
	struct shm_rcu w0, w1, r0, r1;
	struct shm_rcu_reader a, b;
	make_table(&w0, 0, 4);
	make_table(&w1, 1, 4);
	(void)shm_rcu_advance(&w1);
	ck_assert_int_eq(shm_rcu_attach(&r0, inst, 0, SHM_RCU_READER), 0);
	ck_assert_int_eq(shm_rcu_attach(&r1, inst, 1, SHM_RCU_READER), 0);
	ck_assert_int_eq(shm_rcu_register(&r0, &a), 0);
	ck_assert_int_eq(shm_rcu_register(&r1, &b), 0);
	ck_assert_int_eq(shm_rcu_enter(&a), 0);
	ck_assert_int_eq(shm_rcu_enter(&b), 0);
	(void)shm_rcu_advance(&w0);
	(void)shm_rcu_advance(&w1);
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w0), 1);
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w1), 2);
	ck_assert_int_eq(shm_rcu_leave(&a), 0);
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w0), 2);
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w1), 2);
	ck_assert_int_eq(shm_rcu_leave(&b), 0);
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w1), 3);
	ck_assert_int_eq(shm_rcu_unregister(&a), 0);
	ck_assert_int_eq(shm_rcu_unregister(&b), 0);
	shm_rcu_detach(&r0);
	shm_rcu_detach(&r1);
	shm_rcu_detach(&w0);
	shm_rcu_detach(&w1);
}
END_TEST

/* --- other processes ------------------------------------------------------- */

START_TEST(pinned_reader_holds_safe_epoch)
{
	use_mode(_i);
	struct shm_rcu w;
	make_table(&w, 0, 8);
	(void)shm_rcu_advance(&w); /* 2 */
	struct child c = spawn(pinned_reader, NULL);
	uint64_t e = get_u64(c.from_child);
	ck_assert_uint_eq(e, 2);
	for (int i = 0; i < 50; i++) {
		(void)shm_rcu_advance(&w);
		/* Nodes retired with tag >= e stay unusable. */
		ck_assert_uint_eq(shm_rcu_safe_epoch(&w), e);
	}
	put_u64(c.to_child, 1);
	ck_assert_uint_eq(get_u64(c.from_child), 0); /* it has left */
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w), shm_rcu_epoch(&w));
	ck_assert_int_eq(finish(&c, 10000), 0);
	shm_rcu_detach(&w);
}
END_TEST

static int pinned_forever(int in, int out, void *arg)
{
	struct shm_rcu t;
	struct shm_rcu_reader r;
	bool enter = arg != NULL;
	if (shm_rcu_attach(&t, inst, 0, SHM_RCU_READER))
		return 10;
	if (shm_rcu_register(&t, &r))
		return 11;
	if (enter && shm_rcu_enter(&r))
		return 12;
	put_u64(out, r.epoch);
	/* Until killed, or until the parent closes the pipe: then leave
	 * properly and check that the slot was ours throughout. */
	(void)get_u64(in);
	if (enter && shm_rcu_leave(&r))
		return 14;
	if (shm_rcu_unregister(&r))
		return 15;
	return 0;
}

/* Pinned in a section until told, then leaves: reports 0 when the leave
 * succeeded, 1 when it said the slot was lost. */
static int pinned_then_leave(int in, int out, void *arg)
{
	(void)arg;
	struct shm_rcu t;
	struct shm_rcu_reader r;
	if (shm_rcu_attach(&t, inst, 0, SHM_RCU_READER))
		return 10;
	if (shm_rcu_register(&t, &r))
		return 11;
	if (shm_rcu_enter(&r))
		return 12;
	put_u64(out, r.epoch);
	(void)get_u64(in);
	int rc = shm_rcu_leave(&r);
	put_u64(out, rc == 0 ? 0 : rc == SHMEX_ESLOTLOST ? 1 : 2);
	(void)get_u64(in);
	return 0;
}

/* A process with write access (any reader) truncates the table while a
 * reader is pinned: the writer survives its next accesses (before: SIGBUS
 * killed the matcher), restores the table's size, and reclamation is no
 * longer held; the pinned reader learns nothing wrong happened or that its
 * slot is lost, and new readers register. */
START_TEST(truncated_table_is_restored_by_writer)
{
	use_mode(_i);
	struct shm_rcu w;
	make_table(&w, 0, 8);
	(void)shm_rcu_advance(&w);
	struct child c = spawn(pinned_then_leave, NULL);
	ck_assert_uint_eq(get_u64(c.from_child), 2);
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w), 2);
	char name[128];
	snprintf(name, sizeof(name), "/shmex.%s.readers.0", inst);
	int fd = shm_open(name, O_RDWR, 0);
	ck_assert_int_ge(fd, 0);
	struct stat st0, st1;
	ck_assert_int_eq(fstat(fd, &st0), 0);
	ck_assert_int_eq(ftruncate(fd, 0), 0);
	for (int i = 0; i < 5; i++) {
		(void)shm_rcu_advance(&w);
		ck_assert_uint_eq(shm_rcu_safe_epoch(&w), shm_rcu_epoch(&w));
	}
	struct shm_rcu_stats rs;
	shm_rcu_stats(&w, &rs);
	ck_assert_uint_ge(rs.truncations, 1);
	ck_assert_int_eq(fstat(fd, &st1), 0);
	ck_assert_int_eq(st1.st_size, st0.st_size);
	close(fd);
	put_u64(c.to_child, 1);
	ck_assert_uint_le(get_u64(c.from_child), 1);
	put_u64(c.to_child, 1);
	ck_assert_int_eq(finish(&c, 10000), 0);
	/* The table is whole again: a new reader attaches and registers. */
	struct shm_rcu t;
	struct shm_rcu_reader r;
	ck_assert_int_eq(shm_rcu_attach(&t, inst, 0, SHM_RCU_READER), 0);
	ck_assert_int_eq(shm_rcu_register(&t, &r), 0);
	ck_assert_int_eq(shm_rcu_unregister(&r), 0);
	shm_rcu_detach(&t);
	shm_rcu_detach(&w);
}
END_TEST

/* A live reader stopped inside a section (SIGSTOP, a debugger) holds
 * reclamation only for its lease: then the writer revokes its slot and
 * reclaims past it, and the reader is told at leave (before: reclamation
 * stayed pinned until the reader died, and the shard answered "Book full"
 * on an empty book). */
START_TEST(stalled_reader_loses_its_lease)
{
	use_mode(_i);
	struct shm_rcu w;
	make_table(&w, 0, 8);
	shm_rcu_set_lease(&w, 200000000ull);
	shm_rcu_set_reap_interval(&w, 10000000ull);
	(void)shm_rcu_advance(&w);
	struct child c = spawn(pinned_then_leave, NULL);
	ck_assert_uint_eq(get_u64(c.from_child), 2);
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w), 2);
	unsigned long long deadline = test_now_ns() + 10000000000ull;
	for (;;) {
		(void)shm_rcu_advance(&w);
		if (shm_rcu_safe_epoch(&w) == shm_rcu_epoch(&w))
			break;
		ck_assert_msg(test_now_ns() < deadline, "the stalled reader still pins");
		usleep(5000);
	}
	struct shm_rcu_stats rs;
	shm_rcu_stats(&w, &rs);
	ck_assert_uint_eq(rs.revoked, 1);
	put_u64(c.to_child, 1);
	ck_assert_uint_eq(get_u64(c.from_child), 1); /* SHMEX_ESLOTLOST */
	put_u64(c.to_child, 1);
	ck_assert_int_eq(finish(&c, 10000), 0);
	shm_rcu_detach(&w);
}
END_TEST

START_TEST(killed_reader_is_reaped)
{
	use_mode(_i);
	struct shm_rcu w;
	make_table(&w, 0, 8);
	shm_rcu_set_reap_interval(&w, 0);
	(void)shm_rcu_advance(&w);
	struct child c = spawn(pinned_forever, (void *)1);
	uint64_t e = get_u64(c.from_child);
	ck_assert_uint_eq(e, 2);
	for (int i = 0; i < 5; i++) {
		(void)shm_rcu_advance(&w);
		ck_assert_uint_eq(shm_rcu_safe_epoch(&w), e);
	}
	kill(c.pid, SIGKILL);
	ck_assert_int_eq(finish(&c, 10000), -1); /* killed, reaped by waitpid */
	/* The first pass notes the slot stuck in one section, the next finds
	 * its owner gone.  The writer only polls: never waits. */
	uint64_t safe = 0;
	int polls = 0;
	while (polls < 3 && (safe = shm_rcu_safe_epoch(&w)) != shm_rcu_epoch(&w))
		polls++;
	ck_assert_uint_eq(safe, shm_rcu_epoch(&w));
	ck_assert_uint_eq(w.reaped, 1);
	struct shm_rcu_stats st;
	shm_rcu_stats(&w, &st);
	ck_assert_uint_eq(st.reaped, 1);
	ck_assert_uint_eq(st.registered, 0);
	/* Reclamation continues with new epochs. */
	uint64_t next = shm_rcu_advance(&w);
	ck_assert_uint_eq(next, 8);
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w), next);
	shm_rcu_detach(&w);
}
END_TEST

START_TEST(zombie_reader_is_reaped)
{
	use_mode(_i);
	struct shm_rcu w;
	make_table(&w, 0, 8);
	shm_rcu_set_reap_interval(&w, 0);
	struct child c = spawn(pinned_forever, (void *)1);
	ck_assert_uint_eq(get_u64(c.from_child), 1);
	(void)shm_rcu_advance(&w);
	kill(c.pid, SIGKILL);
	/* Wait until it is a zombie, without reaping it. */
	siginfo_t si;
	ck_assert_int_eq(waitid(P_PID, (id_t)c.pid, &si, WEXITED | WNOWAIT), 0);
	uint64_t start;
	ck_assert_int_eq(shm_proc_start_time(c.pid, &start), 0); /* still in /proc */
	for (int i = 0; i < 3; i++)
		(void)shm_rcu_safe_epoch(&w);
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w), 2);
	ck_assert_uint_eq(w.reaped, 1);
	ck_assert_int_eq(finish(&c, 10000), -1);
	shm_rcu_detach(&w);
}
END_TEST

START_TEST(clear_stale_frees_only_dead_slots)
{
	use_mode(_i);
	struct shm_rcu w, tool;
	make_table(&w, 0, 8);
	struct child live = spawn(pinned_forever, (void *)1);
	struct child dead_in = spawn(pinned_forever, (void *)1);
	struct child dead_idle = spawn(pinned_forever, NULL);
	(void)get_u64(live.from_child);
	(void)get_u64(dead_in.from_child);
	(void)get_u64(dead_idle.from_child);
	kill(dead_in.pid, SIGKILL);
	kill(dead_idle.pid, SIGKILL);
	ck_assert_int_eq(finish(&dead_in, 10000), -1);
	ck_assert_int_eq(finish(&dead_idle, 10000), -1);
	ck_assert_int_eq(shm_rcu_attach(&tool, inst, 0, SHM_RCU_READER), 0);
	struct shm_rcu_reader_info info[8];
	size_t n;
	ck_assert_int_eq(shm_rcu_list(&tool, info, 8, &n), 0);
	ck_assert_uint_eq(n, 3);
	int alive = 0;
	for (size_t i = 0; i < n; i++)
		alive += info[i].alive;
	ck_assert_int_eq(alive, 1);
	unsigned cleared = 0;
	ck_assert_int_eq(shm_rcu_clear_stale(&tool, &cleared), 0);
	ck_assert_uint_eq(cleared, 2);
	ck_assert_int_eq(shm_rcu_list(&tool, info, 8, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(info[0].pid, live.pid);
	ck_assert(info[0].in_section);
	ck_assert_int_eq(shm_rcu_clear_stale(&tool, &cleared), 0);
	ck_assert_uint_eq(cleared, 0);
	/* The live reader was not disturbed: its leave succeeds. */
	ck_assert_int_eq(finish(&live, 10000), 0);
	shm_rcu_detach(&tool);
	shm_rcu_detach(&w);
}
END_TEST

/* Child holding a slot: reports, then on command runs sections. */
static int slot_holder(int in, int out, void *arg)
{
	struct shm_rcu t;
	struct shm_rcu_reader r;
	if (shm_rcu_attach(&t, inst, 0, SHM_RCU_READER))
		return 10;
	if (shm_rcu_register(&t, &r))
		return 11;
	put_u64(out, r.index);
	if (get_u64(in) == UINT64_MAX)
		return 12;
	for (int i = 0; i < 1000; i++) {
		if (shm_rcu_enter(&r))
			return 13;
		if (shm_rcu_leave(&r))
			return 14;
	}
	if (shm_rcu_unregister(&r))
		return 15;
	return 0;
}

START_TEST(slots_exhausted)
{
	use_mode(_i);
	struct shm_rcu w, rd;
	struct shm_rcu_reader r;
	struct child c[4];
	make_table(&w, 0, 4);
	for (int i = 0; i < 4; i++)
		c[i] = spawn(slot_holder, NULL);
	for (int i = 0; i < 4; i++)
		ck_assert_uint_lt(get_u64(c[i].from_child), 4);
	ck_assert_int_eq(shm_rcu_attach(&rd, inst, 0, SHM_RCU_READER), 0);
	ck_assert_int_eq(shm_rcu_register(&rd, &r), SHMEX_ENOREADERSLOT);
	ck_assert_int_eq(shm_rcu_register(&rd, &r), SHMEX_ENOREADERSLOT);
	/* The others are unaffected. */
	for (int i = 1; i < 4; i++) {
		put_u64(c[i].to_child, 1);
		ck_assert_int_eq(finish(&c[i], 20000), 0);
	}
	ck_assert_int_eq(shm_rcu_register(&rd, &r), 0);
	ck_assert_int_eq(shm_rcu_unregister(&r), 0);
	/* A full table whose one dead owner is reaped by register itself. */
	for (int i = 1; i < 4; i++)
		c[i] = spawn(slot_holder, NULL);
	for (int i = 1; i < 4; i++)
		(void)get_u64(c[i].from_child);
	kill(c[0].pid, SIGKILL);
	ck_assert_int_eq(finish(&c[0], 10000), -1);
	ck_assert_int_eq(shm_rcu_register(&rd, &r), 0);
	ck_assert_int_eq(shm_rcu_enter(&r), 0);
	ck_assert_int_eq(shm_rcu_leave(&r), 0);
	for (int i = 1; i < 4; i++) {
		put_u64(c[i].to_child, 1);
		ck_assert_int_eq(finish(&c[i], 20000), 0);
	}
	ck_assert_int_eq(shm_rcu_unregister(&r), 0);
	shm_rcu_detach(&rd);
	shm_rcu_detach(&w);
}
END_TEST

START_TEST(evicted_reader_gets_slot_lost)
{
	use_mode(_i);
	struct shm_rcu w, rd;
	struct shm_rcu_reader a, b;
	make_table(&w, 0, 1);
	ck_assert_int_eq(shm_rcu_attach(&rd, inst, 0, SHM_RCU_READER), 0);
	ck_assert_int_eq(shm_rcu_register(&rd, &a), 0);
	ck_assert_int_eq(shm_rcu_enter(&a), 0);
	(void)shm_rcu_advance(&w);
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w), 1);
	ck_assert_int_eq(shm_rcu_evict(&w, 1), SHMEX_EBADINDEX);
	ck_assert_int_eq(shm_rcu_evict(&w, 0), 0);
	ck_assert_int_eq(shm_rcu_evict(&w, 0), -ENOENT);
	/* The writer no longer waits for it... */
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w), 2);
	/* ...and the reader is told, not harmed silently. */
	ck_assert_int_eq(shm_rcu_leave(&a), SHMEX_ESLOTLOST);
	ck_assert_int_eq(shm_rcu_enter(&a), SHMEX_ESLOTLOST);
	ck_assert_int_eq(shm_rcu_unregister(&a), 0);
	ck_assert_int_eq(shm_rcu_register(&rd, &a), 0);
	ck_assert_int_eq(shm_rcu_enter(&a), 0);
	ck_assert_int_eq(shm_rcu_leave(&a), 0);

	/* Evicted while idle: the next enter fails and touches nothing. */
	ck_assert_int_eq(shm_rcu_evict(&w, 0), 0);
	ck_assert_int_eq(shm_rcu_enter(&a), SHMEX_ESLOTLOST);
	ck_assert_uint_eq(shm_rcu_section_epoch(w.slots[0].section), 0);
	ck_assert_int_eq(shm_rcu_unregister(&a), 0);

	/* Evicted inside a section and the slot re-claimed by another
	 * registration with the same owner word (a sibling thread): the
	 * evicted one is told at leave, the new one keeps its section. */
	ck_assert_int_eq(shm_rcu_register(&rd, &a), 0);
	ck_assert_int_eq(shm_rcu_enter(&a), 0);
	ck_assert_int_eq(shm_rcu_evict(&w, 0), 0);
	ck_assert_int_eq(shm_rcu_register(&rd, &b), 0);
	ck_assert_uint_eq(b.index, 0);
	ck_assert_int_eq(shm_rcu_enter(&b), 0);
	(void)shm_rcu_advance(&w);
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w), b.epoch);
	ck_assert_int_eq(shm_rcu_leave(&a), SHMEX_ESLOTLOST);
	ck_assert_uint_eq(shm_rcu_section_epoch(w.slots[0].section), b.epoch);
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w), b.epoch);
	ck_assert_int_eq(shm_rcu_leave(&b), 0);
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w), shm_rcu_epoch(&w));
	ck_assert_int_eq(shm_rcu_unregister(&a), 0);
	ck_assert_int_eq(shm_rcu_unregister(&b), 0);
	/* An unreported loss is reported by unregister. */
	ck_assert_int_eq(shm_rcu_register(&rd, &a), 0);
	ck_assert_int_eq(shm_rcu_evict(&w, 0), 0);
	ck_assert_int_eq(shm_rcu_unregister(&a), SHMEX_ESLOTLOST);
	shm_rcu_detach(&rd);
	shm_rcu_detach(&w);
}
END_TEST

static uint64_t rng_state = 88172645463325252ull;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

START_TEST(garbage_slots_do_not_crash_writer)
{
	use_mode(_i);
	struct shm_rcu w, rd;
	struct shm_rcu_reader r;
	make_table(&w, 0, 32);
	shm_rcu_set_reap_interval(&w, 0);
	for (int i = 0; i < 10; i++)
		(void)shm_rcu_advance(&w);
	uint64_t gp = shm_rcu_epoch(&w);
	/* Random bytes in every slot; slot 5 looks like a live owner (this
	 * process) reading a future epoch. */
	uint64_t *words = (uint64_t *)w.slots;
	for (size_t i = 0; i < 32 * 8; i++)
		words[i] = rng();
	w.slots[3].owner = 0;
	w.slots[5].owner = ((uint64_t)shm_proc_self_start() << SHM_PROC_PID_BITS) |
			   (uint64_t)getpid();
	w.slots[5].section = SHM_RCU_EPOCH_MAX - 3; /* generation 0 */
	w.slots[5].gen = 4096;
	for (int i = 0; i < 5; i++) {
		uint64_t s = shm_rcu_safe_epoch(&w);
		ck_assert_uint_ge(s, 1);
		ck_assert_uint_le(s, gp);
	}
	/* Garbage owners are dead processes: reaped.  The live one with the
	 * impossible epoch only holds reuse back (counts as the oldest). */
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w), 1);
	ck_assert_uint_gt(w.bad_epochs, 0);
	struct shm_rcu_reader_info info[40];
	size_t n;
	ck_assert_int_eq(shm_rcu_list(&w, info, 40, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(info[0].slot, 5);
	struct shm_rcu_stats st;
	shm_rcu_stats(&w, &st);
	ck_assert_uint_eq(st.registered, 1);
	ck_assert_uint_eq(st.reaped, 31 - 1);
	ck_assert_int_eq(shm_rcu_evict(&w, 5), 0);
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w), gp);

	/* A corrupted global epoch (readers can write the region). */
	ck_assert_int_eq(shm_rcu_attach(&rd, inst, 0, SHM_RCU_READER), 0);
	ck_assert_int_eq(shm_rcu_register(&rd, &r), 0);
	w.hdr->epoch = 0;
	ck_assert_int_eq(shm_rcu_enter(&r), 0);
	ck_assert_uint_eq(r.epoch, 1);
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w), 1);
	ck_assert_int_eq(shm_rcu_leave(&r), 0);
	w.hdr->epoch = UINT64_MAX;
	ck_assert_int_eq(shm_rcu_enter(&r), 0);
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w), 1);
	ck_assert_int_eq(shm_rcu_leave(&r), 0);
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w), gp);
	/* The writer's next advance repairs it. */
	ck_assert_uint_eq(shm_rcu_advance(&w), gp + 1);
	ck_assert_uint_eq(w.hdr->epoch, gp + 1);
	ck_assert_int_eq(shm_rcu_unregister(&r), 0);
	shm_rcu_detach(&rd);
	/* A writer refuses to continue from a corrupt epoch. */
	w.hdr->epoch = 0;
	shm_rcu_detach(&w);
	ck_assert_int_eq(shm_rcu_attach(&w, inst, 0, SHM_RCU_WRITER), SHMEX_EBADINDEX);
}
END_TEST

/* The creator decides the mode and records it; readers follow it, and a
 * reader may always take the fence path (SHMEX_READERS_FENCE=1). */
START_TEST(mode_recorded_and_followed)
{
	struct shm_rcu w, f, rd;
	struct shm_rcu_reader a, b;
	bool asym = shm_rcu_asym_supported();
	ck_assert_int_eq(shm_rcu_create(&w, inst, 0, 4, 0600), 0);
	ck_assert_int_eq(shm_rcu_table_mode(&w),
			 asym ? SHM_RCU_MODE_ASYM : SHM_RCU_MODE_FENCE);
	ck_assert_uint_eq(w.hdr->mode, (uint32_t)shm_rcu_table_mode(&w));
	shm_rcu_set_barrier_interval(&w, 0, 0);
	ck_assert_int_eq(shm_rcu_attach(&rd, inst, 0, SHM_RCU_READER), 0);
	ck_assert_int_eq(rd.mode, w.mode);
	ck_assert_int_eq(shm_rcu_register(&rd, &a), 0);
	ck_assert(a.asym == asym);
	/* A fence-path reader in the same table, both in sections. */
	ck_assert_int_eq(setenv(SHM_RCU_FENCE_ENV, "1", 1), 0);
	ck_assert_int_eq(shm_rcu_register(&rd, &b), 0);
	ck_assert(!b.asym);
	(void)shm_rcu_advance(&w);
	ck_assert_int_eq(shm_rcu_enter(&b), 0);
	(void)shm_rcu_advance(&w);
	ck_assert_int_eq(shm_rcu_enter(&a), 0);
	(void)shm_rcu_advance(&w);
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w), b.epoch);
	ck_assert_int_eq(shm_rcu_leave(&b), 0);
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w), a.epoch);
	ck_assert_int_eq(shm_rcu_leave(&a), 0);
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w), shm_rcu_epoch(&w));
	/* The variable also makes new tables fence tables. */
	ck_assert_int_eq(shm_rcu_create(&f, inst, 1, 4, 0600), 0);
	ck_assert_int_eq(shm_rcu_table_mode(&f), SHM_RCU_MODE_FENCE);
	ck_assert_int_eq(setenv(SHM_RCU_FENCE_ENV, "0", 1), 0);
	shm_rcu_detach(&f);
	ck_assert_int_eq(shm_rcu_unlink(inst, 1), 0);
	ck_assert_int_eq(shm_rcu_create(&f, inst, 1, 4, 0600), 0);
	ck_assert_int_eq(shm_rcu_table_mode(&f), shm_rcu_table_mode(&w));
	shm_rcu_detach(&f);
	unsetenv(SHM_RCU_FENCE_ENV);
	/* An explicit fence table: readers take the fence path. */
	ck_assert_int_eq(shm_rcu_unlink(inst, 1), 0);
	ck_assert_int_eq(shm_rcu_create_mode(&f, inst, 1, 4, 0600, SHM_RCU_MODE_FENCE),
			 0);
	struct shm_rcu fr;
	struct shm_rcu_reader c;
	ck_assert_int_eq(shm_rcu_attach(&fr, inst, 1, SHM_RCU_READER), 0);
	ck_assert_int_eq(shm_rcu_register(&fr, &c), 0);
	ck_assert(!c.asym);
	ck_assert_int_eq(shm_rcu_unregister(&c), 0);
	shm_rcu_detach(&fr);
	shm_rcu_detach(&f);
	struct shm_rcu_stats st;
	shm_rcu_stats(&w, &st);
	ck_assert_int_eq(st.mode, w.mode);
	ck_assert_uint_eq(st.barriers, w.barriers);
	ck_assert_int_eq(shm_rcu_unregister(&a), 0);
	ck_assert_int_eq(shm_rcu_unregister(&b), 0);
	shm_rcu_detach(&rd);
	shm_rcu_detach(&w);
}
END_TEST

/* Asymmetric mode: membarrier only from the poll, at most once per
 * interval unless the caller is short of nodes, and none while no slot is
 * claimed; nodes retired after a barrier wait for the next one. */
START_TEST(barrier_rate_limited)
{
	const uint64_t hour = 3600ull * 1000000000ull;
	struct shm_rcu w, rd;
	struct shm_rcu_reader r;
	if (!shm_rcu_asym_supported())
		return;
	ck_assert_int_eq(shm_rcu_create_mode(&w, inst, 0, 4, 0600, SHM_RCU_MODE_ASYM), 0);
	shm_rcu_set_barrier_interval(&w, hour, hour);
	shm_rcu_set_barrier_burst(&w, 1);
	/* No reader registered: the fenced scan alone covers. */
	for (int i = 0; i < 3; i++)
		(void)shm_rcu_advance(&w);
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w), 4);
	ck_assert_uint_eq(w.barriers, 0);
	ck_assert_int_eq(shm_rcu_attach(&rd, inst, 0, SHM_RCU_READER), 0);
	ck_assert_int_eq(shm_rcu_register(&rd, &r), 0);
	ck_assert(r.asym);
	/* The first barrier is due at once... */
	ck_assert_uint_eq(shm_rcu_advance(&w), 5);
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w), 5);
	ck_assert_uint_eq(w.barriers, 1);
	/* ...the next only after the interval: epoch 5's nodes wait. */
	ck_assert_uint_eq(shm_rcu_advance(&w), 6);
	for (int i = 0; i < 100; i++)
		ck_assert_uint_eq(shm_rcu_safe_epoch(&w), 5);
	ck_assert_uint_eq(shm_rcu_safe_epoch_urgent(&w), 5);
	ck_assert_uint_eq(w.barriers, 1);
	/* Pools low: urgent polls may issue one sooner. */
	shm_rcu_set_barrier_interval(&w, hour, 0);
	ck_assert_uint_eq(shm_rcu_safe_epoch_urgent(&w), 6);
	ck_assert_uint_eq(w.barriers, 2);
	/* Nothing uncovered: no barrier even when urgent. */
	ck_assert_uint_eq(shm_rcu_safe_epoch_urgent(&w), 6);
	ck_assert_uint_eq(w.barriers, 2);
	/* A reader inside a section holds its epoch as in fence mode. */
	ck_assert_int_eq(shm_rcu_enter(&r), 0);
	ck_assert_uint_eq(r.epoch, 6);
	ck_assert_uint_eq(shm_rcu_advance(&w), 7);
	ck_assert_uint_eq(shm_rcu_safe_epoch_urgent(&w), 6);
	ck_assert_uint_eq(w.barriers, 3);
	ck_assert_int_eq(shm_rcu_leave(&r), 0);
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w), 7);
	ck_assert_uint_eq(shm_rcu_advance(&w), 8);
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w), 7);
	/* The last reader leaves the table: covered without a barrier. */
	ck_assert_int_eq(shm_rcu_unregister(&r), 0);
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w), 8);
	ck_assert_uint_eq(w.barriers, 3);
	struct shm_rcu_stats st;
	shm_rcu_stats(&w, &st);
	ck_assert_int_eq(st.mode, SHM_RCU_MODE_ASYM);
	ck_assert_uint_eq(st.barriers, 3);
	ck_assert_uint_eq(st.covered_epoch, 8);
	ck_assert_uint_eq(st.barrier_errors, 0);
	ck_assert_uint_gt(st.barrier_ns, 0);
	uint64_t b0;
	/* After a quiet period, up to `burst` calls back to back. */
	ck_assert_int_eq(shm_rcu_register(&rd, &r), 0);
	shm_rcu_set_barrier_interval(&w, hour, hour);
	shm_rcu_set_barrier_burst(&w, 4);
	b0 = w.barriers;
	for (int i = 0; i < 4; i++) {
		uint64_t e = shm_rcu_advance(&w);
		ck_assert_uint_eq(shm_rcu_safe_epoch(&w), e);
	}
	ck_assert_uint_eq(w.barriers - b0, 4);
	uint64_t e5 = shm_rcu_advance(&w);
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w), e5 - 1);
	ck_assert_uint_eq(w.barriers - b0, 4);
	ck_assert_int_eq(shm_rcu_unregister(&r), 0);
	/* With a real interval, time alone moves the covered epoch, and the
	 * calls never exceed one per interval (burst 1). */
	const uint64_t interval = 2000000;
	shm_rcu_set_barrier_interval(&w, interval, interval);
	shm_rcu_set_barrier_burst(&w, 1);
	ck_assert_int_eq(shm_rcu_register(&rd, &r), 0);
	b0 = w.barriers;
	unsigned long long t0 = test_now_ns(), deadline = t0 + 5000000000ull;
	unsigned advanced = 0;
	while (advanced < 5 && test_now_ns() < deadline) {
		uint64_t e = shm_rcu_advance(&w);
		while (shm_rcu_safe_epoch(&w) != e && test_now_ns() < deadline)
			usleep(50);
		advanced++;
	}
	unsigned long long elapsed = test_now_ns() - t0;
	ck_assert_uint_eq(advanced, 5);
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w), shm_rcu_epoch(&w));
	ck_assert_uint_ge(w.barriers - b0, 4);
	ck_assert_uint_le(w.barriers - b0, elapsed / interval + 1);
	ck_assert_int_eq(shm_rcu_unregister(&r), 0);
	shm_rcu_detach(&rd);
	shm_rcu_detach(&w);
}
END_TEST

/* A reader that lost its slot can leave a late store in it (asymmetric
 * path: between its check and its store).  The scan holds everything while
 * the word is of another generation; the owner's next store repairs it,
 * and a word left for a whole reap interval frees the slot. */
START_TEST(foreign_word_holds_then_repairs)
{
	use_mode(_i);
	struct shm_rcu w, rd;
	struct shm_rcu_reader a, b;
	make_table(&w, 0, 1);
	shm_rcu_set_reap_interval(&w, 0);
	ck_assert_int_eq(shm_rcu_attach(&rd, inst, 0, SHM_RCU_READER), 0);
	ck_assert_int_eq(shm_rcu_register(&rd, &a), 0);
	(void)shm_rcu_advance(&w);
	ck_assert_int_eq(shm_rcu_enter(&a), 0);
	ck_assert_int_eq(shm_rcu_evict(&w, 0), 0);
	ck_assert_int_eq(shm_rcu_register(&rd, &b), 0);
	ck_assert_uint_eq(b.gen, a.gen + 1);
	/* a's section word lands after b's claim. */
	const uint64_t late = shm_rcu_section_idle(a.gen) | a.epoch;
	w.slots[0].section = late;
	for (int i = 0; i < 3; i++)
		(void)shm_rcu_advance(&w);
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w), 1);
	ck_assert_uint_gt(w.held, 0);
	if (b.asym) {
		/* b's own store repairs it. */
		ck_assert_int_eq(shm_rcu_enter(&b), 0);
		ck_assert_uint_eq(shm_rcu_safe_epoch(&w), b.epoch);
		ck_assert_int_eq(shm_rcu_leave(&b), 0);
		ck_assert_uint_eq(shm_rcu_safe_epoch(&w), shm_rcu_epoch(&w));
		/* a learns of the loss at leave and does not touch the word. */
		ck_assert_int_eq(shm_rcu_leave(&a), SHMEX_ESLOTLOST);
		ck_assert_uint_eq(w.slots[0].section, shm_rcu_section_idle(b.gen));
		/* The same late word, and b idle for two reap passes: the
		 * slot is freed and b told. */
		w.slots[0].section = late;
	} else {
		/* Fence path: b's CAS from its idle word fails on the foreign
		 * word (b is told, nothing is overwritten); a's leave CAS
		 * matches its own word, then its check reports the loss. */
		ck_assert_int_eq(shm_rcu_enter(&b), SHMEX_ESLOTLOST);
		ck_assert_uint_eq(w.slots[0].section, late);
		ck_assert_int_eq(shm_rcu_leave(&a), SHMEX_ESLOTLOST);
		ck_assert_uint_eq(w.slots[0].section, shm_rcu_section_idle(a.gen));
	}
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w), 1);
	ck_assert_uint_eq(w.repaired, 0);
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w), shm_rcu_epoch(&w));
	ck_assert_uint_eq(w.repaired, 1);
	ck_assert_int_eq(shm_rcu_enter(&b), SHMEX_ESLOTLOST);
	ck_assert_int_eq(shm_rcu_unregister(&a), 0);
	ck_assert_int_eq(shm_rcu_unregister(&b), 0);
	ck_assert_int_eq(shm_rcu_register(&rd, &b), 0);
	ck_assert_int_eq(shm_rcu_enter(&b), 0);
	ck_assert_int_eq(shm_rcu_leave(&b), 0);
	ck_assert_int_eq(shm_rcu_unregister(&b), 0);
	shm_rcu_detach(&rd);
	shm_rcu_detach(&w);
}
END_TEST

/* Asymmetric mode with the default rate limit: a reader process pinned in
 * a section holds its epoch through many barrier intervals; after it
 * leaves, time alone lets the safe epoch reach the current one. */
START_TEST(pinned_reader_rate_limited)
{
	use_mode(_i);
	struct shm_rcu w;
	make_table(&w, 0, 8);
	ck_assert_uint_eq(w.barrier_interval_ns, SHM_RCU_BARRIER_INTERVAL_NS);
	(void)shm_rcu_advance(&w); /* 2 */
	struct child c = spawn(pinned_reader, NULL);
	uint64_t e = get_u64(c.from_child);
	ck_assert_uint_eq(e, 2);
	unsigned long long t0 = test_now_ns();
	while (test_now_ns() - t0 < 20000000ull) { /* 20 barrier intervals */
		(void)shm_rcu_advance(&w);
		ck_assert_uint_eq(shm_rcu_safe_epoch(&w), e);
		usleep(100);
	}
	if (w.mode == SHM_RCU_MODE_ASYM)
		ck_assert_uint_ge(w.barriers, 2);
	put_u64(c.to_child, 1);
	ck_assert_uint_eq(get_u64(c.from_child), 0); /* it has left */
	unsigned long long deadline = test_now_ns() + 5000000000ull;
	while (shm_rcu_safe_epoch(&w) != shm_rcu_epoch(&w) && test_now_ns() < deadline)
		usleep(100);
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w), shm_rcu_epoch(&w));
	ck_assert_int_eq(finish(&c, 10000), 0);
	shm_rcu_detach(&w);
}
END_TEST

/*
 * A miniature RCU structure in a test region: `head` names the published
 * node; every field of a live node holds its version; a reclaimed node is
 * poisoned before reuse.  The parent publishes, retires and reclaims as
 * fast as it can; sixteen reader processes check every node they reach.
 */
#define NODES 256
#define FIELDS 7
#define POISON UINT64_C(0xdeaddeaddeaddead)

struct node_sh {
	uint64_t v[FIELDS];
	uint64_t pad;
};

struct mini_sh {
	uint64_t head; /* W: parent, release; R: readers, acquire */
	uint64_t stop; /* W: parent, release; R: readers, acquire */
	uint64_t pad[6];
	struct node_sh node[NODES];
};

static int rcu_reader(int in, int out, void *arg)
{
	struct shm_region m;
	struct shm_rcu t;
	struct shm_rcu_reader r;
	uint64_t sections = 0, bad = 0;
	if (shm_region_attach(&m, inst, "mini", SHM_KIND_TEST, SHM_RDONLY))
		return 10;
	if (shm_rcu_attach(&t, inst, 0, SHM_RCU_READER))
		return 11;
	if (shm_rcu_register(&t, &r))
		return 12;
	const struct mini_sh *mini = shm_region_body(&m);
	put_u64(out, 0);
	while (!load_acquire(&mini->stop)) {
		if (shm_rcu_enter_inline(&r))
			return 13;
		uint64_t h = load_acquire(&mini->head);
		if (h >= NODES)
			return 14;
		const struct node_sh *nd = &mini->node[h];
		uint64_t v0 = load_relaxed(&nd->v[0]);
		for (int k = 0; k < 20; k++)
			cpu_relax();
		for (int f = 0; f < FIELDS; f++)
			if (load_relaxed(&nd->v[f]) != v0 || v0 == POISON)
				bad++;
		if (shm_rcu_leave_inline(&r))
			return 15;
		sections++;
	}
	put_u64(out, sections);
	put_u64(out, bad);
	if (shm_rcu_unregister(&r))
		return 16;
	return 0;
}

/* The writer side of the miniature: nreaders reader processes; `batch`
 * nodes published (and the previous head retired) per advance; `reap`
 * makes every poll a liveness pass (/proc reads, so a slower writer);
 * runs at least min_ns and until every node was reused several times. */
static void rcu_torture(const char *name, int nreaders, int batch, bool reap,
			unsigned long long min_ns)
{
	struct shm_rcu w;
	struct shm_region m;
	struct child c[16];
	ck_assert(nreaders > 0 && nreaders <= 16);
	make_table(&w, 0, 16);
	if (reap)
		shm_rcu_set_reap_interval(&w, 0);
	ck_assert_int_eq(shm_region_create(&m, inst, "mini", SHM_KIND_TEST,
					   sizeof(struct mini_sh), NULL, 0, 0600),
			 0);
	struct mini_sh *mini = shm_region_body(&m);
	/* Private writer state: free list and retired list with tags. */
	static uint32_t free_list[NODES];
	static uint32_t retired[NODES];
	static uint64_t tag[NODES];
	uint32_t nfree = 0, nretired = 0;
	for (uint32_t i = 1; i < NODES; i++)
		free_list[nfree++] = i;
	for (int f = 0; f < FIELDS; f++)
		mini->node[0].v[f] = 1;
	mini->head = 0;
	shm_region_publish(&m);
	for (int i = 0; i < nreaders; i++)
		c[i] = spawn(rcu_reader, NULL);
	for (int i = 0; i < nreaders; i++)
		ck_assert_uint_eq(get_u64(c[i].from_child), 0);

	uint64_t version = 1, reclaimed = 0, published = 0;
	/* At least min_ns, and until every node was reused several times
	 * (slow builds, busy machines), but never more than 10 s. */
	unsigned long long t0 = test_now_ns();
	uint32_t cur = 0;
	for (;;) {
		unsigned long long t = test_now_ns() - t0;
		if (t > 10000000000ull || (t > min_ns && reclaimed >= 8 * NODES))
			break;
		for (int k = 0; k < batch && nfree > 0; k++) {
			uint32_t n = free_list[--nfree];
			version++;
			for (int f = 0; f < FIELDS; f++)
				store_relaxed(&mini->node[n].v[f], version);
			store_release(&mini->head, (uint64_t)n); /* publish */
			retired[nretired] = cur;
			tag[nretired++] = shm_rcu_epoch(&w);
			cur = n;
			published++;
		}
		(void)shm_rcu_advance(&w);
		uint64_t safe = shm_rcu_safe_epoch(&w);
		uint32_t keep = 0;
		for (uint32_t i = 0; i < nretired; i++) {
			if (tag[i] < safe) {
				for (int f = 0; f < FIELDS; f++)
					store_relaxed(&mini->node[retired[i]].v[f],
						      POISON);
				free_list[nfree++] = retired[i];
				reclaimed++;
			} else {
				retired[keep] = retired[i];
				tag[keep++] = tag[i];
			}
		}
		nretired = keep;
	}
	store_release(&mini->stop, 1);
	uint64_t sections = 0, bad = 0;
	for (int i = 0; i < nreaders; i++) {
		uint64_t sc = get_u64(c[i].from_child);
		uint64_t bd = get_u64(c[i].from_child);
		ck_assert_int_eq(finish(&c[i], 20000), 0);
		ck_assert_uint_gt(sc, 0);
		sections += sc;
		bad += bd;
	}
	fprintf(stderr,
		"%s (%s%s): %llu published, %llu reclaimed, %llu read sections, "
		"%llu bad, %llu membarrier calls\n",
		name, w.mode == SHM_RCU_MODE_ASYM ? "asymmetric" : "fence",
		w.mode == SHM_RCU_MODE_ASYM
			? (cur_rate_limited ? ", rate-limited" : ", every poll")
			: "",
		(unsigned long long)published, (unsigned long long)reclaimed,
		(unsigned long long)sections, (unsigned long long)bad,
		(unsigned long long)w.barriers);
	ck_assert_uint_eq(bad, 0);
	/* The test means something only if nodes were reused under readers. */
	ck_assert_uint_ge(reclaimed, 8 * NODES);
	struct shm_rcu_stats st;
	shm_rcu_stats(&w, &st);
	ck_assert_uint_eq(st.registered, 0);
	shm_region_detach(&m);
	shm_rcu_detach(&w);
}

START_TEST(sixteen_reader_processes)
{
	use_mode(_i);
	rcu_torture("sixteen_reader_processes", 16, 16, true, 500000000ull);
}
END_TEST

/* One reader process and a writer that grace-periods after every single
 * publication, on a 2-CPU machine both really run at once: the
 * store-buffering window the barriers close is hit millions of times.
 * (With the membarrier call removed from the writer, this test saw 7 bad
 * reads in 3 s; with it, and in fence mode, none.) */
START_TEST(one_reader_tight_writer)
{
	use_mode(_i);
	rcu_torture("one_reader_tight_writer", 1, 1, false, 1000000000ull);
}
END_TEST

static Suite *shm_rcu_suite(void)
{
	Suite *s = suite_create("shm_rcu");
	TCase *tc = tcase_create("single_process");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, register_enter_leave_nesting, 0, 2);
	tcase_add_loop_test(tc, observer_is_read_only, 0, 2);
	tcase_add_loop_test(tc, attach_errors, 0, 2);
	tcase_add_loop_test(tc, reader_of_several_shards, 0, 2);
	tcase_add_loop_test(tc, evicted_reader_gets_slot_lost, 0, 2);
	tcase_add_loop_test(tc, garbage_slots_do_not_crash_writer, 0, 2);
	tcase_add_loop_test(tc, foreign_word_holds_then_repairs, 0, 2);
	tcase_add_test(tc, mode_recorded_and_followed);
	tcase_add_test(tc, barrier_rate_limited);
	suite_add_tcase(s, tc);
	tc = tcase_create("processes");
	tcase_set_timeout(tc, 30);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, one_writer_at_a_time, 0, 2);
	tcase_add_loop_test(tc, pinned_reader_holds_safe_epoch, 0, 2);
	tcase_add_loop_test(tc, truncated_table_is_restored_by_writer, 0, 2);
	tcase_add_loop_test(tc, stalled_reader_loses_its_lease, 0, 2);
	tcase_add_loop_test(tc, pinned_reader_rate_limited, 2, 3);
	tcase_add_loop_test(tc, killed_reader_is_reaped, 0, 2);
	tcase_add_loop_test(tc, zombie_reader_is_reaped, 0, 2);
	tcase_add_loop_test(tc, clear_stale_frees_only_dead_slots, 0, 2);
	tcase_add_loop_test(tc, slots_exhausted, 0, 2);
	tcase_add_loop_test(tc, sixteen_reader_processes, 0, 3);
	tcase_add_loop_test(tc, one_reader_tight_writer, 0, 3);
	suite_add_tcase(s, tc);
	return s;
}

SHMEX_TEST_MAIN(shm_rcu_suite)

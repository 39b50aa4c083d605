/*
 * bench_ring: the shared-memory ring between two processes, against a
 * pipe carrying the same 64-byte messages (one write() per message) as the
 * baseline measured in the same run.
 *
 *   1. throughput: a producer process enqueues batches for ~2.5 s, a
 *      consumer process dequeues and checks every sequence number;
 *      msgs/s = messages received / (consumer's end - producer's start).
 *   2. round trip: ping on one ring, pong on another, both sides busy
 *      polling; one sample per round trip; p50, p99, p99.9.
 *   3. baseline: the throughput test over a pipe.
 *
 * The two processes are pinned to different CPUs when there are two.  The
 * rings live in a real named region (/shmex.bench-<pid>.ring), attached by
 * the child under its own mapping, exactly as gateways and matchers do.
 */
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shm/shm_error.h"
#include "shm/shm_region.h"
#include "shm/shm_ring.h"
#include "tests/bench/bench.h"

int bench_ring(int argc, char **argv);

/* Results a child hands back, in the region's first line. */
struct bench_result_sh {
	uint64_t count;  /* messages received in sequence */
	uint64_t end_ns; /* when the stop marker arrived */
	uint32_t ok;     /* 1: every sequence number matched */
	uint32_t done;   /* W: child, release; R: parent, acquire */
} shm_aligned;

#define STOP_ID UINT64_MAX

struct opts {
	double seconds;     /* throughput phases */
	double rtt_seconds; /* round-trip phase */
	unsigned batch;     /* producer batch */
	unsigned deq_max;   /* consumer batch */
	uint32_t capacity;
};

static void pin(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	/* Best effort: on one CPU the figures are just worse. */
	(void)sched_setaffinity(0, sizeof(set), &set);
}

struct bench_mem {
	struct shm_region reg;
	char inst[40];
	struct bench_result_sh *res;
	void *ring_a, *ring_b;
	size_t ring_bytes;
};

static int mem_create(struct bench_mem *m, uint32_t cap)
{
	snprintf(m->inst, sizeof(m->inst), "bench-%d", (int)getpid());
	m->ring_bytes = shm_ring_bytes(cap);
	if (!m->ring_bytes)
		return -EINVAL;
	size_t body = sizeof(struct bench_result_sh) + 2 * m->ring_bytes;
	int rc = shm_region_create(&m->reg, m->inst, "ring", SHM_KIND_TEST, body, NULL, 0,
				   0600);
	if (rc) {
		fprintf(stderr, "bench ring: %s\n", m->reg.err.msg);
		return rc;
	}
	char *b = shm_region_body(&m->reg);
	m->res = (struct bench_result_sh *)b;
	m->ring_a = b + sizeof(struct bench_result_sh);
	m->ring_b = (char *)m->ring_a + m->ring_bytes;
	if (shm_ring_init(m->ring_a, m->ring_bytes, cap) ||
	    shm_ring_init(m->ring_b, m->ring_bytes, cap))
		return -EINVAL;
	shm_region_publish(&m->reg);
	return 0;
}

static void mem_reset(struct bench_mem *m, uint32_t cap)
{
	memset(m->res, 0, sizeof(*m->res));
	if (shm_ring_init(m->ring_a, m->ring_bytes, cap) ||
	    shm_ring_init(m->ring_b, m->ring_bytes, cap))
		abort(); /* sizes were checked at creation */
}

/* Child side: the region mapped anew, rings attached from it. */
static int child_attach(const struct bench_mem *m, struct shm_region *reg,
			struct shm_ring *a, struct shm_ring *b,
			struct bench_result_sh **res)
{
	if (shm_region_attach(reg, m->inst, "ring", SHM_KIND_TEST, SHM_RDWR))
		return -1;
	char *body = shm_region_body(reg);
	*res = (struct bench_result_sh *)body;
	char *ra = body + sizeof(struct bench_result_sh);
	if (shm_ring_attach(a, ra, m->ring_bytes, NULL) ||
	    shm_ring_attach(b, ra + m->ring_bytes, m->ring_bytes, NULL))
		return -1;
	return 0;
}

static void child_report(struct bench_result_sh *res, uint64_t count, bool ok)
{
	res->count = count;
	res->end_ns = bench_now_ns();
	res->ok = ok;
	/* Publishes count/end/ok to the parent's acquire below. */
	store_release(&res->done, 1u);
}

static int wait_child(pid_t pid)
{
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* ---- 1. ring throughput ---- */

/* A side that finds its ring empty (full) for a long time yields the CPU:
 * on a loaded machine its peer may be waiting for that very CPU. */
static void idle_poll(unsigned *idle)
{
	if (++*idle % 4096 == 0)
		sched_yield();
	else
		cpu_relax();
}

static int ring_consumer(const struct bench_mem *m, const struct opts *o)
{
	struct shm_region reg;
	struct shm_ring a, b;
	struct bench_result_sh *res;
	pin(1);
	if (child_attach(m, &reg, &a, &b, &res))
		return 1;
	struct shm_msg *out = calloc(o->deq_max, sizeof(*out));
	if (!out)
		return 1;
	uint64_t expect = 0;
	unsigned idle = 0;
	bool ok = true;
	for (;;) {
		unsigned got;
		if (shm_ring_dequeue_batch(&a, out, o->deq_max, &got))
			return 1;
		for (unsigned i = 0; i < got; i++) {
			if (out[i].req_id == STOP_ID) {
				child_report(res, expect, ok);
				free(out);
				return 0;
			}
			ok &= out[i].req_id == expect;
			expect++;
		}
		if (got == 0)
			idle_poll(&idle);
		else
			idle = 0;
	}
}

static int ring_throughput(struct bench_mem *m, const struct opts *o, double *msgs_per_s)
{
	mem_reset(m, o->capacity);
	pid_t c = fork();
	if (c < 0)
		return -1;
	if (c == 0)
		_exit(ring_consumer(m, o));
	pin(0);
	struct shm_ring r;
	if (shm_ring_attach(&r, m->ring_a, m->ring_bytes, NULL))
		return -1;
	struct shm_msg *buf = calloc(o->batch, sizeof(*buf));
	if (!buf)
		return -1;
	for (unsigned i = 0; i < o->batch; i++)
		buf[i].type = SHM_MSG_ORDER;
	uint64_t seq = 0, start = bench_now_ns();
	uint64_t deadline = start + (uint64_t)(o->seconds * 1e9);
	unsigned idle = 0;
	for (unsigned rounds = 1;; rounds++) {
		for (unsigned i = 0; i < o->batch; i++)
			buf[i].req_id = seq + i;
		unsigned off = 0;
		while (off < o->batch) {
			unsigned done;
			if (shm_ring_enqueue_batch(&r, buf + off, o->batch - off, &done))
				return -1;
			off += done;
			if (!done)
				idle_poll(&idle);
			else
				idle = 0;
		}
		seq += o->batch;
		if ((rounds & 255) == 0 && bench_now_ns() >= deadline)
			break;
	}
	struct shm_msg stop = {.req_id = STOP_ID};
	unsigned done = 0;
	while (!done)
		if (shm_ring_enqueue_batch(&r, &stop, 1, &done))
			return -1;
	free(buf);
	if (wait_child(c))
		return -1;
	/* Pairs with the child's release in child_report. */
	if (!load_acquire(&m->res->done) || !m->res->ok || m->res->count != seq) {
		fprintf(stderr, "bench ring: consumer saw %llu of %llu, ok=%u\n",
			(unsigned long long)m->res->count, (unsigned long long)seq,
			m->res->ok);
		return -1;
	}
	*msgs_per_s = (double)seq / ((double)(m->res->end_ns - start) / 1e9);
	return 0;
}

/* ---- 2. ring round trip ---- */

static int ring_echo(const struct bench_mem *m)
{
	struct shm_region reg;
	struct shm_ring ping, pong;
	struct bench_result_sh *res;
	pin(1);
	if (child_attach(m, &reg, &ping, &pong, &res))
		return 1;
	for (;;) {
		struct shm_msg msg;
		unsigned got, done = 0;
		if (shm_ring_dequeue_batch(&ping, &msg, 1, &got))
			return 1;
		if (!got) {
			cpu_relax();
			continue;
		}
		while (!done)
			if (shm_ring_enqueue_batch(&pong, &msg, 1, &done))
				return 1;
		if (msg.req_id == STOP_ID)
			return 0;
	}
}

static int ring_rtt(struct bench_mem *m, const struct opts *o, uint64_t pct[3])
{
	mem_reset(m, o->capacity);
	pid_t c = fork();
	if (c < 0)
		return -1;
	if (c == 0)
		_exit(ring_echo(m));
	pin(0);
	struct shm_ring ping, pong;
	if (shm_ring_attach(&ping, m->ring_a, m->ring_bytes, NULL) ||
	    shm_ring_attach(&pong, m->ring_b, m->ring_bytes, NULL))
		return -1;
	size_t cap = 8u << 20, n = 0;
	uint64_t *samples = malloc(cap * sizeof(*samples));
	if (!samples)
		return -1;
	uint64_t warm = 20000;
	uint64_t deadline = bench_now_ns() + (uint64_t)(o->rtt_seconds * 1e9);
	struct shm_msg msg = {.type = SHM_MSG_ORDER};
	for (uint64_t i = 0;; i++) {
		msg.req_id = i;
		unsigned done, got;
		uint64_t t0 = bench_now_ns();
		if (shm_ring_enqueue_batch(&ping, &msg, 1, &done) || done != 1)
			return -1;
		struct shm_msg back;
		do {
			if (shm_ring_dequeue_batch(&pong, &back, 1, &got))
				return -1;
		} while (!got);
		uint64_t t1 = bench_now_ns();
		if (back.req_id != i)
			return -1;
		if (i >= warm && n < cap)
			samples[n++] = t1 - t0;
		if ((i & 1023) == 0 && (t1 >= deadline || n == cap))
			break;
	}
	msg.req_id = STOP_ID;
	unsigned done;
	if (shm_ring_enqueue_batch(&ping, &msg, 1, &done) || wait_child(c))
		return -1;
	fprintf(stderr, "bench ring:   %zu round trips\n", n);
	pct[0] = bench_percentile(samples, n, 50);
	pct[1] = bench_percentile(samples, n, 99);
	pct[2] = bench_percentile(samples, n, 99.9);
	free(samples);
	return 0;
}

/* ---- 3. pipe baseline ---- */

static int pipe_reader(int fd, const struct bench_mem *m)
{
	struct shm_region reg;
	struct shm_ring a, b;
	struct bench_result_sh *res;
	pin(1);
	if (child_attach(m, &reg, &a, &b, &res))
		return 1;
	static struct shm_msg buf[1024];
	uint64_t expect = 0;
	size_t have = 0; /* bytes of a partial message at the front */
	bool ok = true;
	for (;;) {
		ssize_t k = read(fd, (char *)buf + have, sizeof(buf) - have);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return 1;
		have += (size_t)k;
		size_t whole = have / sizeof(buf[0]);
		for (size_t i = 0; i < whole; i++) {
			if (buf[i].req_id == STOP_ID) {
				child_report(res, expect, ok);
				return 0;
			}
			ok &= buf[i].req_id == expect;
			expect++;
		}
		have -= whole * sizeof(buf[0]);
		memmove(buf, (char *)buf + whole * sizeof(buf[0]), have);
	}
}

static int pipe_throughput(struct bench_mem *m, const struct opts *o, double *msgs_per_s)
{
	mem_reset(m, o->capacity);
	int fds[2];
	if (pipe(fds))
		return -1;
	pid_t c = fork();
	if (c < 0)
		return -1;
	if (c == 0) {
		close(fds[1]);
		_exit(pipe_reader(fds[0], m));
	}
	close(fds[0]);
	pin(0);
	struct shm_msg msg = {.type = SHM_MSG_ORDER};
	uint64_t seq = 0, start = bench_now_ns();
	uint64_t deadline = start + (uint64_t)(o->seconds * 1e9);
	for (;; seq++) {
		msg.req_id = seq;
		if (write(fds[1], &msg, sizeof(msg)) != (ssize_t)sizeof(msg))
			return -1;
		if ((seq & 255) == 255 && bench_now_ns() >= deadline) {
			seq++;
			break;
		}
	}
	msg.req_id = STOP_ID;
	if (write(fds[1], &msg, sizeof(msg)) != (ssize_t)sizeof(msg))
		return -1;
	close(fds[1]);
	if (wait_child(c))
		return -1;
	if (!load_acquire(&m->res->done) || !m->res->ok || m->res->count != seq)
		return -1;
	*msgs_per_s = (double)seq / ((double)(m->res->end_ns - start) / 1e9);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: shmex-bench ring [--seconds S] [--rtt-seconds S] "
		   "[--batch N] [--dequeue N] [--capacity N]\n"
		   "  shared-memory ring vs pipe between two processes:\n"
		   "  throughput (msgs/s), round-trip latency percentiles\n");
}

static int parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{"seconds", required_argument, NULL, 's'},
		{"rtt-seconds", required_argument, NULL, 'r'},
		{"batch", required_argument, NULL, 'b'},
		{"dequeue", required_argument, NULL, 'd'},
		{"capacity", required_argument, NULL, 'c'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	optind = 1;
	int ch;
	while ((ch = getopt_long(argc, argv, "s:r:b:d:c:h", lo, NULL)) != -1) {
		char *end = NULL;
		errno = 0;
		switch (ch) {
		case 's':
		case 'r': {
			double v = strtod(optarg, &end);
			if (errno || *end || v <= 0 || v > 60)
				return 2;
			*(ch == 's' ? &o->seconds : &o->rtt_seconds) = v;
			break;
		}
		case 'b':
		case 'd':
		case 'c': {
			long long v = strtoll(optarg, &end, 10);
			if (errno || *end || v < 1 || v > (1 << 20))
				return 2;
			if (ch == 'b')
				o->batch = (unsigned)v;
			else if (ch == 'd')
				o->deq_max = (unsigned)v;
			else
				o->capacity = (uint32_t)v;
			break;
		}
		case 'h':
			usage(stdout);
			return 1;
		default:
			return 2;
		}
	}
	if (optind != argc || !shm_ring_bytes(o->capacity) || o->batch > o->capacity)
		return 2;
	return 0;
}

int bench_ring(int argc, char **argv)
{
	struct opts o = {.seconds = 2.5,
			 .rtt_seconds = 2.0,
			 .batch = 64,
			 .deq_max = 256,
			 .capacity = 4096};
	int prc = parse(argc, argv, &o);
	if (prc == 1)
		return 0;
	if (prc) {
		usage(stderr);
		return 2;
	}
	cpu_set_t saved;
	bool have_saved = sched_getaffinity(0, sizeof(saved), &saved) == 0;
	struct bench_mem m;
	if (mem_create(&m, o.capacity))
		return 1;
	int rc = 1;
	double ring_tp = 0, pipe_tp = 0;
	uint64_t pct[3] = {0};

	fprintf(stderr,
		"bench ring: throughput, ring (capacity %u, batch %u/%u, %.1f s)\n",
		o.capacity, o.batch, o.deq_max, o.seconds);
	if (ring_throughput(&m, &o, &ring_tp))
		goto out_unlink;
	fprintf(stderr, "bench ring:   %.0f msgs/s\n", ring_tp);
	fprintf(stderr, "bench ring: round trip, two rings, busy polling (%.1f s)\n",
		o.rtt_seconds);
	if (ring_rtt(&m, &o, pct))
		goto out_unlink;
	fprintf(stderr, "bench ring:   p50 %llu ns, p99 %llu ns, p99.9 %llu ns\n",
		(unsigned long long)pct[0], (unsigned long long)pct[1],
		(unsigned long long)pct[2]);
	fprintf(stderr, "bench ring: baseline, pipe, one write() per message (%.1f s)\n",
		o.seconds);
	if (pipe_throughput(&m, &o, &pipe_tp))
		goto out_unlink;
	fprintf(stderr, "bench ring:   %.0f msgs/s\n", pipe_tp);
	printf("RESULT ring msgs_per_s=%.0f rtt_p50_ns=%llu rtt_p99_ns=%llu "
	       "rtt_p999_ns=%llu pipe_msgs_per_s=%.0f ratio_vs_pipe=%.1f\n",
	       ring_tp, (unsigned long long)pct[0], (unsigned long long)pct[1],
	       (unsigned long long)pct[2], pipe_tp,
	       pipe_tp > 0 ? ring_tp / pipe_tp : 0.0);
	fflush(stdout);
	rc = 0;
out_unlink:
	if (rc)
		fprintf(stderr, "bench ring: failed\n");
	shm_region_detach(&m.reg);
	(void)shm_region_unlink(m.inst, "ring");
	if (have_saved) /* the other benchmarks run unpinned */
		(void)sched_setaffinity(0, sizeof(saved), &saved);
	return rc;
}

/*
 * shm_ring_suite: the SPSC ring and its doorbell, within one process and
 * between real processes (fork; children re-attach the region by name, so
 * they map it at another address).
 */
#include "tests/shmex_test.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shm/shm_doorbell.h"
#include "shm/shm_error.h"
#include "shm/shm_region.h"
#include "shm/shm_ring.h"

static char inst[64];

static void setup(void)
{
	test_instance(inst, sizeof(inst));
}

static void teardown(void)
{
	test_cleanup_instance(inst);
}

/* ---- messages that can be checked: sequence number and checksum ---- */

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= UINT64_C(0xff51afd7ed558ccd);
	x ^= x >> 33;
	x *= UINT64_C(0xc4ceb9fe1a85ec53);
	x ^= x >> 33;
	return x;
}

/* Checksum of the first 56 bytes; stored in the last 8 (u.r.seq). */
static uint64_t msg_sum(const struct shm_msg *m)
{
	uint64_t w[7];
	memcpy(w, m, sizeof(w));
	uint64_t h = UINT64_C(0x9e3779b97f4a7c15);
	for (int i = 0; i < 7; i++)
		h = mix64(h ^ w[i]) + (uint64_t)i;
	return h;
}

static void msg_fill(struct shm_msg *m, uint64_t producer, uint64_t seq)
{
	memset(m, 0, sizeof(*m));
	m->type = SHM_MSG_ORDER;
	m->side = (uint8_t)(seq & 1);
	m->req_id = seq;
	m->account = producer;
	m->order_id = mix64(seq);
	m->price = (int64_t)(seq * 3);
	m->qty = (int64_t)(mix64(seq ^ producer) >> 1);
	m->u.r.time_ns = mix64(seq + 17);
	m->u.r.seq = msg_sum(m);
}

static bool msg_ok(const struct shm_msg *m)
{
	return m->u.r.seq == msg_sum(m) && m->order_id == mix64(m->req_id) &&
	       m->type == SHM_MSG_ORDER;
}

/* ---- rings in a named test region ---- */

static void *make_ring(struct shm_region *reg, const char *name, uint32_t cap)
{
	size_t bytes = shm_ring_bytes(cap);
	ck_assert_uint_gt(bytes, 0);
	int rc = shm_region_create(reg, inst, name, SHM_KIND_TEST, bytes, NULL, 0, 0600);
	ck_assert_msg(rc == 0, "create: %s", reg->err.msg);
	ck_assert_int_eq(shm_ring_init(shm_region_body(reg), bytes, cap), 0);
	shm_region_publish(reg);
	return shm_region_body(reg);
}

/* In a forked child: attach the region by name (another mapping). */
static int child_attach(struct shm_region *reg, const char *name, struct shm_ring *r,
			struct shm_doorbell_sh *db)
{
	int rc = shm_region_attach(reg, inst, name, SHM_KIND_TEST, SHM_RDWR);
	if (rc)
		return rc;
	return shm_ring_attach(r, shm_region_body(reg), shm_region_body_size(reg), db);
}

static void attach_local(struct shm_ring *r, struct shm_region *reg)
{
	int rc =
		shm_ring_attach(r, shm_region_body(reg), shm_region_body_size(reg), NULL);
	ck_assert_int_eq(rc, 0);
}

static unsigned enq_seq(struct shm_ring *r, uint64_t producer, uint64_t first, unsigned n)
{
	struct shm_msg m[64];
	ck_assert_uint_le(n, 64);
	for (unsigned i = 0; i < n; i++)
		msg_fill(&m[i], producer, first + i);
	unsigned done = 99;
	ck_assert_int_eq(shm_ring_enqueue_batch(r, m, n, &done), 0);
	return done;
}

/* Child exit codes that say what went wrong. */
enum {
	CHILD_OK = 0,
	CHILD_ATTACH = 10,
	CHILD_CORRUPT,
	CHILD_SEQ,
	CHILD_SUM,
	CHILD_WAIT,
	CHILD_ERR
};

static int wait_child(pid_t pid, int timeout_ms)
{
	int st = test_wait_pid(pid, timeout_ms);
	ck_assert_msg(st != -1, "child %d timed out", (int)pid);
	ck_assert_msg(WIFEXITED(st), "child died with signal %d",
		      WIFSIGNALED(st) ? WTERMSIG(st) : 0);
	return WEXITSTATUS(st);
}

/* ---- single process ---- */

START_TEST(empty_ring_dequeues_nothing)
{
	struct shm_region reg;
	struct shm_ring r;
	make_ring(&reg, "r", 8);
	attach_local(&r, &reg);
	struct shm_msg out[4];
	unsigned got = 99;
	ck_assert_int_eq(shm_ring_dequeue_batch(&r, out, 4, &got), 0);
	ck_assert_uint_eq(got, 0);
	ck_assert(!shm_ring_readable(&r));
	struct shm_ring_stats st;
	shm_ring_stats(&r, &st);
	ck_assert_uint_eq(st.depth, 0);
	ck_assert_uint_eq(st.capacity, 8);
	ck_assert_uint_eq(st.deq_batches, 0);
	shm_region_detach(&reg);
}
END_TEST

START_TEST(full_ring_reports_full)
{
	struct shm_region reg;
	struct shm_ring r;
	make_ring(&reg, "r", 8);
	attach_local(&r, &reg);
	ck_assert_uint_eq(enq_seq(&r, 1, 0, 8), 8);
	ck_assert_uint_eq(enq_seq(&r, 1, 100, 1), 0);
	ck_assert_uint_eq(enq_seq(&r, 1, 100, 3), 0);
	struct shm_ring_stats st;
	shm_ring_stats(&r, &st);
	ck_assert_uint_eq(st.depth, 8);
	ck_assert_uint_eq(st.full, 2);
	/* Nothing was overwritten: the first 8 come out intact. */
	struct shm_msg out[16];
	unsigned got;
	ck_assert_int_eq(shm_ring_dequeue_batch(&r, out, 16, &got), 0);
	ck_assert_uint_eq(got, 8);
	for (unsigned i = 0; i < 8; i++) {
		ck_assert(msg_ok(&out[i]));
		ck_assert_uint_eq(out[i].req_id, i);
	}
	/* Space again after the consumer released it. */
	ck_assert_uint_eq(enq_seq(&r, 1, 8, 8), 8);
	shm_region_detach(&reg);
}
END_TEST

START_TEST(partial_batch_when_nearly_full)
{
	struct shm_region reg;
	struct shm_ring r;
	make_ring(&reg, "r", 8);
	attach_local(&r, &reg);
	ck_assert_uint_eq(enq_seq(&r, 1, 0, 5), 5);
	ck_assert_uint_eq(enq_seq(&r, 1, 5, 5), 3);
	struct shm_msg out[3];
	unsigned got;
	ck_assert_int_eq(shm_ring_dequeue_batch(&r, out, 3, &got), 0);
	ck_assert_uint_eq(got, 3);
	ck_assert_uint_eq(out[2].req_id, 2);
	ck_assert_uint_eq(enq_seq(&r, 1, 8, 5), 3);
	shm_region_detach(&reg);
}
END_TEST

/* Odd batch sizes on both sides across many wraps: order and content. */
START_TEST(wraparound)
{
	struct shm_region reg;
	struct shm_ring r;
	make_ring(&reg, "r", 8);
	attach_local(&r, &reg);
	uint64_t next_in = 0, next_out = 0;
	struct shm_msg out[8];
	for (unsigned it = 0; it < 5000; it++) {
		unsigned n = 1 + it % 7, max = 1 + (it * 5) % 8;
		next_in += enq_seq(&r, 7, next_in, n);
		unsigned got;
		ck_assert_int_eq(shm_ring_dequeue_batch(&r, out, max, &got), 0);
		for (unsigned i = 0; i < got; i++) {
			ck_assert(msg_ok(&out[i]));
			ck_assert_uint_eq(out[i].req_id, next_out++);
		}
		ck_assert_uint_le(next_in - next_out, 8);
	}
	ck_assert_uint_gt(next_out, 5000);
	shm_region_detach(&reg);
}
END_TEST

/* The free-running 64-bit indexes wrap around 2^64 without a hiccup. */
START_TEST(index_wraps_at_2_64)
{
	struct shm_region reg;
	struct shm_ring r;
	struct shm_ring_sh *sh = make_ring(&reg, "r", 8);
	sh->prod.head = sh->cons.tail = UINT64_MAX - 10;
	attach_local(&r, &reg);
	uint64_t next_in = 0, next_out = 0;
	struct shm_msg out[8];
	for (unsigned it = 0; it < 40; it++) {
		next_in += enq_seq(&r, 7, next_in, 3);
		unsigned got;
		ck_assert_int_eq(shm_ring_dequeue_batch(&r, out, 2, &got), 0);
		for (unsigned i = 0; i < got; i++)
			ck_assert_uint_eq(out[i].req_id, next_out++);
	}
	ck_assert_uint_lt(sh->prod.head, 100); /* really wrapped */
	ck_assert_uint_gt(next_out, 30);
	shm_region_detach(&reg);
}
END_TEST

START_TEST(batch_publishes_once)
{
	struct shm_region reg;
	struct shm_ring r;
	make_ring(&reg, "r", 64);
	attach_local(&r, &reg);
	ck_assert_uint_eq(enq_seq(&r, 1, 0, 32), 32);
	struct shm_ring_stats st;
	shm_ring_stats(&r, &st);
	ck_assert_uint_eq(st.enq_batches, 1);
	ck_assert_uint_eq(st.head, 32);
	struct shm_msg out[64];
	unsigned got;
	ck_assert_int_eq(shm_ring_dequeue_batch(&r, out, 64, &got), 0);
	ck_assert_uint_eq(got, 32);
	shm_ring_stats(&r, &st);
	ck_assert_uint_eq(st.deq_batches, 1);
	ck_assert_uint_eq(st.tail, 32);
	/* The consumer was never asleep: no wake-up system call. */
	ck_assert_uint_eq(st.db.wakes, 0);
	shm_region_detach(&reg);
}
END_TEST

START_TEST(claim_publish_zero_copy)
{
	struct shm_region reg;
	struct shm_ring r;
	make_ring(&reg, "r", 8);
	attach_local(&r, &reg);
	ck_assert_uint_eq(enq_seq(&r, 1, 0, 6), 6);
	struct shm_msg out[8], *slots;
	unsigned got;
	ck_assert_int_eq(shm_ring_dequeue_batch(&r, out, 6, &got), 0);
	/* At index 6 only 2 slots are contiguous before the wrap. */
	ck_assert_int_eq(shm_ring_claim(&r, 5, &slots, &got), 0);
	ck_assert_uint_eq(got, 2);
	/* No second claim, no enqueue, while one is outstanding. */
	unsigned g2;
	struct shm_msg *s2;
	ck_assert_int_eq(shm_ring_claim(&r, 1, &s2, &g2), -EINVAL);
	ck_assert_int_eq(shm_ring_enqueue_batch(&r, out, 1, &g2), -EINVAL);
	msg_fill(&slots[0], 2, 6);
	msg_fill(&slots[1], 2, 7);
	ck_assert(!shm_ring_readable(&r));
	shm_ring_publish(&r, 1); /* the second slot goes back unpublished */
	ck_assert(shm_ring_readable(&r));
	ck_assert_int_eq(shm_ring_claim(&r, 8, &slots, &got), 0);
	ck_assert_uint_eq(got, 1); /* index 7: one slot before the wrap */
	msg_fill(&slots[0], 2, 7);
	shm_ring_publish(&r, 1);
	ck_assert_int_eq(shm_ring_dequeue_batch(&r, out, 8, &got), 0);
	ck_assert_uint_eq(got, 2);
	ck_assert_uint_eq(out[0].req_id, 6);
	ck_assert_uint_eq(out[1].req_id, 7);
	ck_assert(msg_ok(&out[1]));
	shm_region_detach(&reg);
}
END_TEST

START_TEST(init_and_attach_validate)
{
	ck_assert_uint_eq(shm_ring_bytes(0), 0);
	ck_assert_uint_eq(shm_ring_bytes(1), 0);
	ck_assert_uint_eq(shm_ring_bytes(12), 0);
	ck_assert_uint_eq(shm_ring_bytes(SHM_RING_CAPACITY_MAX * 2), 0);
	ck_assert_uint_eq(shm_ring_bytes(8), 384 + 8 * 64);

	struct shm_region reg;
	struct shm_ring r;
	struct shm_ring_sh *sh = make_ring(&reg, "r", 8);
	size_t bytes = shm_ring_bytes(8);
	ck_assert_int_eq(shm_ring_init(sh, bytes - 1, 8), -EINVAL);
	ck_assert_int_eq(shm_ring_init((char *)sh + 8, bytes, 8), -EINVAL);
	ck_assert_int_eq(shm_ring_init(sh, bytes, 6), -EINVAL);
	ck_assert_int_eq(shm_ring_attach(&r, (char *)sh + 8, bytes, NULL), -EINVAL);
	ck_assert_int_eq(shm_ring_attach(&r, sh, 100, NULL), SHMEX_ETOOSHORT);
	ck_assert_int_eq(shm_ring_attach(&r, sh, bytes - 64, NULL), SHMEX_ETOOSHORT);

	sh->hdr.magic ^= 1;
	ck_assert_int_eq(shm_ring_attach(&r, sh, bytes, NULL), SHMEX_EBADMAGIC);
	sh->hdr.magic ^= 1;
	sh->hdr.mask = 15;
	ck_assert_int_eq(shm_ring_attach(&r, sh, bytes, NULL), SHMEX_EBADLAYOUT);
	sh->hdr.mask = 7;
	sh->hdr.capacity = 16; /* claims more slots than the memory has */
	sh->hdr.mask = 15;
	ck_assert_int_eq(shm_ring_attach(&r, sh, bytes, NULL), SHMEX_EBADLAYOUT);
	sh->hdr.bytes = shm_ring_bytes(16);
	ck_assert_int_eq(shm_ring_attach(&r, sh, bytes, NULL), SHMEX_ETOOSHORT);
	sh->hdr.capacity = 6;
	sh->hdr.mask = 5;
	ck_assert_int_eq(shm_ring_attach(&r, sh, bytes, NULL), SHMEX_EBADLAYOUT);
	ck_assert_int_eq(shm_ring_init(sh, bytes, 8), 0);
	sh->hdr.msg_size = 128;
	ck_assert_int_eq(shm_ring_attach(&r, sh, bytes, NULL), SHMEX_EBADLAYOUT);
	ck_assert_int_eq(shm_ring_init(sh, bytes, 8), 0);
	sh->prod.head = 9; /* 9 messages in 8 slots */
	ck_assert_int_eq(shm_ring_attach(&r, sh, bytes, NULL), SHMEX_ERINGCORRUPT);
	sh->prod.head = 0;
	sh->cons.tail = 1; /* consumed more than was produced */
	ck_assert_int_eq(shm_ring_attach(&r, sh, bytes, NULL), SHMEX_ERINGCORRUPT);
	sh->cons.tail = 0;
	ck_assert_int_eq(shm_ring_attach(&r, sh, bytes, NULL), 0);
	shm_region_detach(&reg);
}
END_TEST

/* A producer writes nonsense into head: the consumer reports it and never
 * reads a slot because of it. */
START_TEST(corrupt_head_detected)
{
	struct shm_region reg;
	struct shm_ring r;
	struct shm_ring_sh *sh = make_ring(&reg, "r", 8);
	attach_local(&r, &reg);
	ck_assert_uint_eq(enq_seq(&r, 1, 0, 4), 4);
	struct shm_msg out[8];
	unsigned got;
	ck_assert_int_eq(shm_ring_dequeue_batch(&r, out, 2, &got), 0);
	ck_assert_uint_eq(got, 2);

	uint64_t good = sh->prod.head;
	uint64_t bad[] = {2 + 8 + 1, UINT64_MAX, 1, 0, good - 1};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		sh->prod.head = bad[i];
		got = 99;
		ck_assert_int_eq(shm_ring_dequeue_batch(&r, out, 8, &got),
				 SHMEX_ERINGCORRUPT);
		ck_assert_uint_eq(got, 0);
		ck_assert_uint_eq(sh->cons.tail, 2); /* nothing consumed */
	}
	struct shm_ring_stats st;
	shm_ring_stats(&r, &st);
	ck_assert_uint_eq(st.corrupt, 5);
	/* Back to sane: the ring works again from where it was. */
	sh->prod.head = good;
	ck_assert_int_eq(shm_ring_dequeue_batch(&r, out, 8, &got), 0);
	ck_assert_uint_eq(got, 2);
	ck_assert_uint_eq(out[0].req_id, 2);
	ck_assert(msg_ok(&out[1]));
	shm_region_detach(&reg);
}
END_TEST

/* The stray-writer case: another process publishes through a producer
 * handle of its own, the consumer takes its messages, and the real
 * producer's next publication moves head back.  The consumer reports the
 * generation corrupt, the supervisor's quiesce is acknowledged by both
 * ends with their private indexes, the reset starts the new generation at
 * the larger of them, and both ends resume and work; a producer that
 * attaches to the corrupt ring gets its handle filled (so it can take
 * part) instead of a useless error alone. */
START_TEST(stray_writer_reset_new_generation)
{
	struct shm_region reg;
	struct shm_ring prod, cons, stray, sup;
	struct shm_ring_sh *sh = make_ring(&reg, "r", 8);
	attach_local(&prod, &reg);
	attach_local(&cons, &reg);
	attach_local(&sup, &reg);
	ck_assert_uint_eq(prod.gen, 1);
	ck_assert_uint_eq(enq_seq(&prod, 1, 0, 3), 3);
	struct shm_msg out[8];
	unsigned got;
	ck_assert_int_eq(shm_ring_dequeue_batch(&cons, out, 8, &got), 0);
	ck_assert_uint_eq(got, 3);
	ck_assert(!shm_ring_reported(&sup));
	ck_assert_int_eq(shm_ring_repair_state(&prod), SHM_RING_IN_USE);

	/* The stray publishes 4; the consumer takes them. */
	attach_local(&stray, &reg);
	ck_assert_uint_eq(enq_seq(&stray, 9, 0, 4), 4);
	ck_assert_int_eq(shm_ring_dequeue_batch(&cons, out, 8, &got), 0);
	ck_assert_uint_eq(got, 4);
	/* The real producer publishes at its own head: 4, behind tail 7. */
	ck_assert_uint_eq(enq_seq(&prod, 1, 3, 1), 1);
	ck_assert_uint_eq(sh->prod.head, 4);
	ck_assert_int_eq(shm_ring_dequeue_batch(&cons, out, 8, &got), SHMEX_ERINGCORRUPT);
	char why[160];
	shm_ring_describe(&cons, SHM_RING_CONSUMER, why, sizeof(why));
	ck_assert_str_eq(why, "head went back from 7 to 4");
	/* A producer restarted now attaches, filled in, and is told so. */
	struct shm_ring late;
	ck_assert_int_eq(shm_ring_attach(&late, sh, shm_region_body_size(&reg), NULL),
			 SHMEX_ERINGCORRUPT);
	ck_assert_ptr_eq(late.sh, sh);
	shm_ring_describe(&late, SHM_RING_PRODUCER, why, sizeof(why));
	ck_assert_str_eq(why, "head 4 is 3 behind tail 7");

	/* Reported (by the consumer) and inconsistent now. */
	shm_ring_report(&cons, SHM_RING_CONSUMER);
	ck_assert_uint_eq(sh->cons.bad_gen, 1);
	ck_assert(shm_ring_reported(&sup));
	struct shm_ring_stats st;
	shm_ring_stats(&sup, &st);
	ck_assert(st.reported && st.corrupt_now && !st.quiescing);

	/* Quiesce: both ends are asked, acknowledge with their indexes. */
	shm_ring_request_quiesce(&sup);
	ck_assert_int_eq(shm_ring_repair_state(&prod), SHM_RING_QUIESCE);
	ck_assert_int_eq(shm_ring_repair_state(&cons), SHM_RING_QUIESCE);
	ck_assert(!shm_ring_acked(&sup, SHM_RING_PRODUCER));
	shm_ring_ack(&prod, SHM_RING_PRODUCER);
	shm_ring_ack(&cons, SHM_RING_CONSUMER);
	ck_assert(shm_ring_acked(&sup, SHM_RING_PRODUCER));
	ck_assert(shm_ring_acked(&sup, SHM_RING_CONSUMER));
	ck_assert_uint_eq(sh->prod.ack_pos, 4);
	ck_assert_uint_eq(sh->cons.ack_pos, 7);

	/* Reset: both indexes at the larger position, a new generation. */
	uint64_t base = 0;
	ck_assert_uint_eq(shm_ring_reset(&sup, true, true, &base), 2);
	ck_assert_uint_eq(base, 7);
	ck_assert_uint_eq(sh->prod.head, 7);
	ck_assert_uint_eq(sh->cons.tail, 7);
	ck_assert(!shm_ring_reported(&sup));
	ck_assert_int_eq(shm_ring_repair_state(&prod), SHM_RING_RESET);
	ck_assert_int_eq(shm_ring_repair_state(&cons), SHM_RING_RESET);
	ck_assert_int_eq(shm_ring_resume(&prod), 0);
	ck_assert_int_eq(shm_ring_resume(&cons), 0);
	ck_assert_int_eq(shm_ring_resume(&late), 0);
	ck_assert_uint_eq(prod.gen, 2);
	ck_assert_int_eq(shm_ring_repair_state(&prod), SHM_RING_IN_USE);
	ck_assert_int_eq(shm_ring_repair_state(&cons), SHM_RING_IN_USE);
	/* Positions keep growing: the next message is number 7. */
	ck_assert_uint_eq(shm_ring_produced(&prod), 7);
	ck_assert_uint_eq(enq_seq(&prod, 1, 100, 8), 8); /* the whole ring */
	ck_assert_int_eq(shm_ring_dequeue_batch(&cons, out, 8, &got), 0);
	ck_assert_uint_eq(got, 8);
	ck_assert_uint_eq(out[0].req_id, 100);
	ck_assert(msg_ok(&out[7]));
	shm_ring_stats(&sup, &st);
	ck_assert_uint_eq(st.gen, 2);
	ck_assert(!st.reported && !st.corrupt_now && !st.quiescing);

	/* A reset with no end acknowledged starts at the tail. */
	shm_ring_request_quiesce(&sup);
	ck_assert_uint_eq(shm_ring_reset(&sup, false, false, &base), 3);
	ck_assert_uint_eq(base, 15);
	shm_region_detach(&reg);
}
END_TEST

/* A consumer writes nonsense into tail: the producer reports it and never
 * overwrites an unconsumed slot because of it. */
START_TEST(corrupt_tail_detected)
{
	struct shm_region reg;
	struct shm_ring r;
	struct shm_ring_sh *sh = make_ring(&reg, "r", 8);
	attach_local(&r, &reg);
	ck_assert_uint_eq(enq_seq(&r, 1, 0, 8), 8);
	struct shm_msg one;
	msg_fill(&one, 1, 8);
	unsigned done;
	uint64_t bad[] = {9, UINT64_MAX, 8 + 100};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		sh->cons.tail = bad[i];
		done = 99;
		ck_assert_int_eq(shm_ring_enqueue_batch(&r, &one, 1, &done),
				 SHMEX_ERINGCORRUPT);
		ck_assert_uint_eq(done, 0);
		ck_assert_uint_eq(sh->prod.head, 8);
	}
	/* A tail that moves forward legitimately, then backwards. */
	sh->cons.tail = 4;
	ck_assert_int_eq(shm_ring_enqueue_batch(&r, &one, 1, &done), 0);
	ck_assert_uint_eq(done, 1);
	ck_assert_uint_eq(enq_seq(&r, 1, 9, 8), 3); /* fills to 12 = 4 + 8 */
	sh->cons.tail = 2;
	ck_assert_int_eq(shm_ring_enqueue_batch(&r, &one, 1, &done), SHMEX_ERINGCORRUPT);
	ck_assert_uint_eq(sh->prod.head, 12);
	/* Backwards but within capacity of head: only the "went backwards"
	 * check can catch it.  Tail 6 (cached), head 13, then tail 5:
	 * head - tail = 8 <= capacity, yet slots 5.. were already freed. */
	sh->cons.tail = 6;
	ck_assert_int_eq(shm_ring_enqueue_batch(&r, &one, 1, &done), 0);
	ck_assert_uint_eq(done, 1);
	ck_assert_uint_eq(sh->prod.head, 13);
	sh->cons.tail = 5;
	struct shm_msg four[4];
	for (unsigned i = 0; i < 4; i++)
		msg_fill(&four[i], 1, 20 + i);
	ck_assert_int_eq(shm_ring_enqueue_batch(&r, four, 4, &done), SHMEX_ERINGCORRUPT);
	ck_assert_uint_eq(done, 0);
	ck_assert_uint_eq(sh->prod.head, 13);
	shm_region_detach(&reg);
}
END_TEST

START_TEST(wait_times_out_when_idle)
{
	struct shm_region reg;
	struct shm_ring r;
	make_ring(&reg, "r", 8);
	attach_local(&r, &reg);
	r.spin_ns = 1000;
	ck_assert_int_eq(shm_ring_wait(&r, 0), SHMEX_ETIMEDOUT);
	ck_assert_int_eq(shm_ring_wait(&r, 30), SHMEX_ETIMEDOUT);
	struct shm_ring_stats st;
	shm_ring_stats(&r, &st);
	ck_assert_uint_ge(st.db.sleeps, 1);
	ck_assert(!st.db.sleeping);
	ck_assert_uint_eq(enq_seq(&r, 1, 0, 1), 1);
	ck_assert_int_eq(shm_ring_wait(&r, 30), 0);
	shm_region_detach(&reg);
}
END_TEST

/* ---- between processes ---- */

#define TEN_MILLION 10000000u

static int consume_seq(const char *name, uint64_t count, uint32_t spin_ns)
{
	struct shm_region reg;
	struct shm_ring r;
	if (child_attach(&reg, name, &r, NULL))
		return CHILD_ATTACH;
	r.spin_ns = spin_ns;
	struct shm_msg out[256];
	uint64_t next = 0;
	while (next < count) {
		unsigned got;
		if (shm_ring_dequeue_batch(&r, out, 256, &got))
			return CHILD_CORRUPT;
		if (got == 0) {
			/* A lost wake-up would show as a timeout here. */
			if (shm_ring_wait(&r, 10000) == SHMEX_ETIMEDOUT)
				return CHILD_WAIT;
			continue;
		}
		for (unsigned i = 0; i < got; i++) {
			if (out[i].req_id != next++)
				return CHILD_SEQ;
			if (!msg_ok(&out[i]))
				return CHILD_SUM;
		}
	}
	/* Nothing extra after the last one. */
	unsigned got;
	if (shm_ring_dequeue_batch(&r, out, 256, &got) || got != 0)
		return CHILD_SEQ;
	shm_region_detach(&reg);
	return CHILD_OK;
}

/* Fails the test when the peer process already exited (so a producer
 * never waits forever on a ring nobody drains). */
static void check_peer(pid_t peer)
{
	int st;
	pid_t w = waitpid(peer, &st, WNOHANG);
	ck_assert_msg(w == 0, "consumer exited early (status %d)",
		      WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

/* Producer side: batches of varying size; waits (yields) when full. */
static void produce_seq(struct shm_ring *r, uint64_t count, unsigned pause_every,
			pid_t peer)
{
	unsigned fulls = 0;
	struct shm_msg buf[64];
	uint64_t next = 0;
	unsigned rounds = 0;
	while (next < count) {
		unsigned n = 1 + (unsigned)(mix64(next) % 64);
		if (n > count - next)
			n = (unsigned)(count - next);
		for (unsigned i = 0; i < n; i++)
			msg_fill(&buf[i], 1, next + i);
		unsigned off = 0;
		while (off < n) {
			unsigned done;
			ck_assert_int_eq(
				shm_ring_enqueue_batch(r, buf + off, n - off, &done), 0);
			off += done;
			if (off < n) {
				if (++fulls % 4096 == 0)
					check_peer(peer);
				sched_yield();
			}
		}
		next += n;
		if (pause_every && ++rounds % pause_every == 0)
			usleep(200);
	}
}

START_TEST(ten_million_across_processes)
{
	struct shm_region reg;
	struct shm_ring r;
	make_ring(&reg, "r", 4096);
	pid_t c = fork();
	ck_assert_int_ge(c, 0);
	if (c == 0)
		_exit(consume_seq("r", TEN_MILLION, SHM_DOORBELL_SPIN_NS_DEFAULT));
	/* The producer attaches through its own handle on the creator's
	 * mapping; the consumer mapped the region anew. */
	attach_local(&r, &reg);
	produce_seq(&r, TEN_MILLION, 0, c);
	ck_assert_int_eq(wait_child(c, 120000), CHILD_OK);
	struct shm_ring_stats st;
	shm_ring_stats(&r, &st);
	ck_assert_uint_eq(st.head, TEN_MILLION);
	ck_assert_uint_eq(st.tail, TEN_MILLION);
	ck_assert_uint_eq(st.corrupt, 0);
	shm_region_detach(&reg);
}
END_TEST

/* The consumer goes to sleep whenever the ring is empty (no spin), the
 * producer sends in small bursts with pauses: every burst must wake it. */
START_TEST(no_lost_wakeups)
{
	struct shm_region reg;
	struct shm_ring r;
	make_ring(&reg, "r", 64);
	const uint64_t n = 200000;
	pid_t c = fork();
	ck_assert_int_ge(c, 0);
	if (c == 0)
		_exit(consume_seq("r", n, 0));
	attach_local(&r, &reg);
	produce_seq(&r, n, 16, c);
	ck_assert_int_eq(wait_child(c, 60000), CHILD_OK);
	struct shm_ring_stats st;
	shm_ring_stats(&r, &st);
	ck_assert_uint_gt(st.db.sleeps, 10); /* it really slept, often */
	ck_assert_uint_gt(st.db.wakes, 0);
	shm_region_detach(&reg);
}
END_TEST

/* Fields 3 (state), 14 (utime) and 15 (stime) of /proc/pid/stat. */
static int proc_state(pid_t pid, char *state, unsigned long *ticks)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	unsigned long ut, st;
	if (!p || sscanf(p + 2, "%c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
			 state, &ut, &st) != 3)
		return -1;
	*ticks = ut + st;
	return 0;
}

static int consume_one_after_sleep(const char *name)
{
	struct shm_region reg;
	struct shm_ring r;
	if (child_attach(&reg, name, &r, NULL))
		return CHILD_ATTACH;
	int rc = shm_ring_wait(&r, 30000);
	if (rc)
		return CHILD_WAIT;
	struct shm_msg m;
	unsigned got;
	if (shm_ring_dequeue_batch(&r, &m, 1, &got) || got != 1)
		return CHILD_ERR;
	if (!msg_ok(&m) || m.req_id != 42)
		return CHILD_SUM;
	return CHILD_OK;
}

/* Waits until the doorbell says the consumer sleeps and the kernel agrees
 * (state S); returns the consumer's CPU ticks then. */
static unsigned long wait_asleep(struct shm_ring *r, pid_t c)
{
	struct shm_ring_stats st;
	char state = '?';
	unsigned long ticks = 0;
	for (int i = 0; i < 5000; i++) {
		shm_ring_stats(r, &st);
		if (st.db.sleeping && proc_state(c, &state, &ticks) == 0 && state == 'S')
			return ticks;
		usleep(1000);
	}
	ck_abort_msg("consumer never went to sleep (state %c)", state);
	return 0;
}

START_TEST(consumer_sleeps_and_wakes)
{
	struct shm_region reg;
	struct shm_ring r;
	make_ring(&reg, "r", 8);
	attach_local(&r, &reg);
	pid_t c = fork();
	ck_assert_int_ge(c, 0);
	if (c == 0)
		_exit(consume_one_after_sleep("r"));
	unsigned long t0 = wait_asleep(&r, c);
	/* Asleep means asleep: hardly any CPU over 300 ms (a spinning
	 * consumer would use about 30 ticks). */
	usleep(300000);
	char state;
	unsigned long t1;
	ck_assert_int_eq(proc_state(c, &state, &t1), 0);
	ck_assert_msg(t1 - t0 <= 5, "idle consumer used %lu ticks", t1 - t0);
	ck_assert_int_eq(state, 'S');
	struct shm_ring_stats st;
	shm_ring_stats(&r, &st);
	ck_assert_uint_eq(st.db.sleeps, 1);
	ck_assert_uint_eq(st.db.wakes, 0);

	ck_assert_uint_eq(enq_seq(&r, 1, 42, 1), 1);
	ck_assert_int_eq(wait_child(c, 10000), CHILD_OK);
	shm_ring_stats(&r, &st);
	ck_assert_uint_eq(st.db.wakes, 1); /* exactly one system call */
	ck_assert(!st.db.sleeping);
	shm_region_detach(&reg);
}
END_TEST

/* One doorbell, two rings: the consumer sleeps on both and wakes for
 * either (the matcher's situation). */
struct two_rings {
	struct shm_ring *a, *b;
};

static bool either_readable(void *arg)
{
	struct two_rings *t = arg;
	return shm_ring_readable(t->a) || shm_ring_readable(t->b);
}

static int consume_two(void)
{
	struct shm_region rd, ra, rb;
	struct shm_ring a, b;
	if (shm_region_attach(&rd, inst, "db", SHM_KIND_TEST, SHM_RDWR))
		return CHILD_ATTACH;
	struct shm_doorbell_sh *db = shm_region_body(&rd);
	if (child_attach(&ra, "a", &a, db) || child_attach(&rb, "b", &b, db))
		return CHILD_ATTACH;
	struct two_rings t = {&a, &b};
	if (shm_doorbell_wait(db, either_readable, &t, 0, 30000))
		return CHILD_WAIT;
	struct shm_msg m;
	unsigned got;
	if (shm_ring_dequeue_batch(&a, &m, 1, &got) || got != 0)
		return CHILD_ERR; /* nothing on a */
	if (shm_ring_dequeue_batch(&b, &m, 1, &got) || got != 1)
		return CHILD_ERR;
	return msg_ok(&m) && m.req_id == 42 ? CHILD_OK : CHILD_SUM;
}

START_TEST(shared_doorbell_serves_two_rings)
{
	struct shm_region rd, ra, rb;
	struct shm_ring a, b;
	ck_assert_int_eq(shm_region_create(&rd, inst, "db", SHM_KIND_TEST,
					   sizeof(struct shm_doorbell_sh), NULL, 0, 0600),
			 0);
	struct shm_doorbell_sh *db = shm_region_body(&rd);
	shm_doorbell_init(db);
	shm_region_publish(&rd);
	make_ring(&ra, "a", 8);
	make_ring(&rb, "b", 8);
	ck_assert_int_eq(
		shm_ring_attach(&a, shm_region_body(&ra), shm_region_body_size(&ra), db),
		0);
	ck_assert_int_eq(
		shm_ring_attach(&b, shm_region_body(&rb), shm_region_body_size(&rb), db),
		0);
	pid_t c = fork();
	ck_assert_int_ge(c, 0);
	if (c == 0)
		_exit(consume_two());
	struct shm_doorbell_stats st;
	for (int i = 0; i < 5000; i++) {
		shm_doorbell_stats(db, &st);
		if (st.sleeping && st.sleeps == 1)
			break;
		usleep(1000);
	}
	ck_assert(st.sleeping);
	ck_assert_uint_eq(enq_seq(&b, 1, 42, 1), 1);
	ck_assert_int_eq(wait_child(c, 10000), CHILD_OK);
	shm_doorbell_stats(db, &st);
	ck_assert_uint_eq(st.wakes, 1);
	/* The rings' own doorbells were never used. */
	struct shm_ring_sh *sha = shm_region_body(&ra);
	ck_assert_uint_eq(sha->db.sleeps, 0);
	shm_region_detach(&rd);
	shm_region_detach(&ra);
	shm_region_detach(&rb);
}
END_TEST

/* Producer tagged `tag` that writes claimed slots field by field (so a
 * kill can land in the middle of a message) until killed or done. */
static int produce_slowly(const char *name, uint64_t tag, uint64_t count)
{
	struct shm_region reg;
	struct shm_ring r;
	if (child_attach(&reg, name, &r, NULL))
		return CHILD_ATTACH;
	uint64_t next = 0;
	while (next < count) {
		struct shm_msg *s, tmp;
		unsigned got;
		uint64_t want = 1 + next % 13;
		if (want > count - next)
			want = count - next;
		if (shm_ring_claim(&r, (unsigned)want, &s, &got))
			return CHILD_CORRUPT;
		if (got == 0) {
			sched_yield();
			continue;
		}
		for (unsigned i = 0; i < got; i++) {
			msg_fill(&tmp, tag, next + i);
			/* Field by field, checksum last. */
			s[i].type = tmp.type;
			s[i].req_id = tmp.req_id;
			s[i].account = tmp.account;
			s[i].order_id = tmp.order_id;
			s[i].price = tmp.price;
			s[i].qty = tmp.qty;
			s[i].side = tmp.side;
			s[i].u.r.time_ns = tmp.u.r.time_ns;
			s[i].u.r.seq = tmp.u.r.seq;
		}
		shm_ring_publish(&r, got);
		next += got;
	}
	return CHILD_OK;
}

/* Consumer check: every message whole, per-producer sequence contiguous. */
static void check_msgs(const struct shm_msg *m, unsigned n, uint64_t tag, uint64_t *next)
{
	for (unsigned i = 0; i < n; i++) {
		ck_assert_msg(msg_ok(&m[i]), "torn message at seq %llu",
			      (unsigned long long)*next);
		ck_assert_uint_eq(m[i].account, tag);
		ck_assert_uint_eq(m[i].req_id, *next);
		(*next)++;
	}
}

START_TEST(producer_killed_midstream)
{
	struct shm_region reg;
	struct shm_ring r;
	make_ring(&reg, "r", 256);
	attach_local(&r, &reg);
	pid_t p1 = fork();
	ck_assert_int_ge(p1, 0);
	if (p1 == 0)
		_exit(produce_slowly("r", 1, UINT64_MAX));
	struct shm_msg out[64];
	uint64_t next = 0;
	unsigned got;
	unsigned long long deadline = test_now_ns() + 20000000000ull;
	while (next < 100000 && test_now_ns() < deadline) {
		ck_assert_int_eq(shm_ring_dequeue_batch(&r, out, 64, &got), 0);
		check_msgs(out, got, 1, &next);
	}
	ck_assert_uint_ge(next, 100000);
	/* The producer is running flat out: the kill lands mid-stream. */
	kill(p1, SIGKILL);
	int status;
	ck_assert_int_eq(waitpid(p1, &status, 0), p1);
	ck_assert(WIFSIGNALED(status));
	/* Drain what it published before dying: all whole, in order. */
	do {
		ck_assert_int_eq(shm_ring_dequeue_batch(&r, out, 64, &got), 0);
		check_msgs(out, got, 1, &next);
	} while (got);

	/* A new producer picks up from the published head. */
	const uint64_t n2 = 20000;
	pid_t p2 = fork();
	ck_assert_int_ge(p2, 0);
	if (p2 == 0)
		_exit(produce_slowly("r", 2, n2));
	uint64_t next2 = 0;
	deadline = test_now_ns() + 20000000000ull;
	while (next2 < n2 && test_now_ns() < deadline) {
		ck_assert_int_eq(shm_ring_dequeue_batch(&r, out, 64, &got), 0);
		check_msgs(out, got, 2, &next2);
	}
	ck_assert_uint_eq(next2, n2);
	ck_assert_int_eq(wait_child(p2, 10000), CHILD_OK);
	ck_assert_int_eq(shm_ring_dequeue_batch(&r, out, 64, &got), 0);
	ck_assert_uint_eq(got, 0);
	shm_region_detach(&reg);
}
END_TEST

/* Deterministic version: a producer dies with half-written, claimed but
 * unpublished slots.  The consumer sees none of it. */
static int die_mid_write(const char *name)
{
	struct shm_region reg;
	struct shm_ring r;
	if (child_attach(&reg, name, &r, NULL))
		return CHILD_ATTACH;
	struct shm_msg *s;
	unsigned got;
	if (shm_ring_claim(&r, 4, &s, &got) || got != 4)
		return CHILD_ERR;
	msg_fill(&s[0], 3, 0);
	memset(&s[1], 0xee, 32); /* half a message of garbage */
	raise(SIGKILL);
	return CHILD_ERR;
}

START_TEST(dead_producer_mid_write)
{
	struct shm_region reg;
	struct shm_ring r;
	make_ring(&reg, "r", 8);
	pid_t p = fork();
	ck_assert_int_ge(p, 0);
	if (p == 0)
		_exit(die_mid_write("r"));
	int status;
	ck_assert_int_eq(waitpid(p, &status, 0), p);
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	attach_local(&r, &reg);
	struct shm_msg out[8];
	unsigned got;
	ck_assert(!shm_ring_readable(&r));
	ck_assert_int_eq(shm_ring_dequeue_batch(&r, out, 8, &got), 0);
	ck_assert_uint_eq(got, 0);
	/* The next producer overwrites the abandoned slots. */
	ck_assert_uint_eq(enq_seq(&r, 4, 0, 2), 2);
	ck_assert_int_eq(shm_ring_dequeue_batch(&r, out, 8, &got), 0);
	ck_assert_uint_eq(got, 2);
	check_msgs(out, 2, 4, &(uint64_t){0});
	shm_region_detach(&reg);
}
END_TEST

/* An observer attaching while producer and consumer both run always gets
 * a consistent snapshot (no false corruption report). */
START_TEST(observer_attaches_busy_ring)
{
	struct shm_region reg;
	make_ring(&reg, "r", 64);
	const uint64_t n = 300000;
	pid_t c = fork();
	ck_assert_int_ge(c, 0);
	if (c == 0)
		_exit(consume_seq("r", n, SHM_DOORBELL_SPIN_NS_DEFAULT));
	pid_t p = fork();
	ck_assert_int_ge(p, 0);
	if (p == 0)
		_exit(produce_slowly("r", 1, n));
	unsigned snaps = 0;
	int st;
	while (waitpid(p, &st, WNOHANG) == 0) {
		struct shm_ring r;
		struct shm_ring_stats rs;
		ck_assert_int_eq(shm_ring_attach(&r, shm_region_body(&reg),
						 shm_region_body_size(&reg), NULL),
				 0);
		shm_ring_stats(&r, &rs);
		ck_assert(!rs.corrupt_now);
		ck_assert_uint_le(rs.depth, 64);
		if (++snaps % 64 == 0)
			sched_yield(); /* leave the CPUs to the pair */
	}
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == CHILD_OK);
	ck_assert_int_eq(wait_child(c, 30000), CHILD_OK);
	ck_assert_uint_gt(snaps, 100);
	shm_region_detach(&reg);
}
END_TEST

/* A restarted consumer continues from the published tail. */
START_TEST(consumer_restart_resumes)
{
	struct shm_region reg;
	struct shm_ring r, r2;
	make_ring(&reg, "r", 8);
	attach_local(&r, &reg);
	ck_assert_uint_eq(enq_seq(&r, 1, 0, 6), 6);
	struct shm_msg out[8];
	unsigned got;
	ck_assert_int_eq(shm_ring_dequeue_batch(&r, out, 4, &got), 0);
	attach_local(&r2, &reg);
	ck_assert_int_eq(shm_ring_dequeue_batch(&r2, out, 8, &got), 0);
	ck_assert_uint_eq(got, 2);
	ck_assert_uint_eq(out[0].req_id, 4);
	shm_region_detach(&reg);
}
END_TEST

/* A peek consumes nothing: peeking again, or a consumer that attaches
 * after this one died between its peek and its consume, sees the same
 * messages; consume frees exactly what it is told (never more than the
 * peek saw). */
START_TEST(peek_then_consume)
{
	struct shm_region reg;
	struct shm_ring r, r2, p;
	make_ring(&reg, "r", 8);
	attach_local(&r, &reg);
	attach_local(&p, &reg);
	ck_assert_uint_eq(enq_seq(&p, 1, 0, 6), 6);
	struct shm_msg out[8];
	unsigned got;
	ck_assert_int_eq(shm_ring_peek_batch(&r, out, 4, &got), 0);
	ck_assert_uint_eq(got, 4);
	ck_assert_uint_eq(out[0].req_id, 0);
	ck_assert_int_eq(shm_ring_peek_batch(&r, out, 8, &got), 0);
	ck_assert_uint_eq(got, 6);
	ck_assert_uint_eq(out[0].req_id, 0);
	ck_assert_uint_eq(shm_ring_consumed(&r), 0);
	/* "Dies" here: a new consumer gets all six. */
	attach_local(&r2, &reg);
	ck_assert_int_eq(shm_ring_peek_batch(&r2, out, 8, &got), 0);
	ck_assert_uint_eq(got, 6);
	shm_ring_consume(&r2, 2);
	ck_assert_uint_eq(shm_ring_consumed(&r2), 2);
	ck_assert_int_eq(shm_ring_peek_batch(&r2, out, 8, &got), 0);
	ck_assert_uint_eq(got, 4);
	ck_assert_uint_eq(out[0].req_id, 2);
	shm_ring_consume(&r2, 100); /* clamped to what was seen */
	ck_assert_uint_eq(shm_ring_consumed(&r2), 6);
	ck_assert_int_eq(shm_ring_peek_batch(&r2, out, 8, &got), 0);
	ck_assert_uint_eq(got, 0);
	/* The producer sees the slots free again. */
	ck_assert_uint_eq(enq_seq(&p, 1, 6, 8), 8);
	shm_region_detach(&reg);
}
END_TEST

static Suite *shm_ring_suite(void)
{
	Suite *s = suite_create("shm_ring");
	TCase *tc = tcase_create("single_process");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, empty_ring_dequeues_nothing);
	tcase_add_test(tc, full_ring_reports_full);
	tcase_add_test(tc, partial_batch_when_nearly_full);
	tcase_add_test(tc, wraparound);
	tcase_add_test(tc, index_wraps_at_2_64);
	tcase_add_test(tc, batch_publishes_once);
	tcase_add_test(tc, claim_publish_zero_copy);
	tcase_add_test(tc, init_and_attach_validate);
	tcase_add_test(tc, corrupt_head_detected);
	tcase_add_test(tc, corrupt_tail_detected);
	tcase_add_test(tc, stray_writer_reset_new_generation);
	tcase_add_test(tc, wait_times_out_when_idle);
	tcase_add_test(tc, consumer_restart_resumes);
	tcase_add_test(tc, peek_then_consume);
	suite_add_tcase(s, tc);

	TCase *tp = tcase_create("processes");
	tcase_add_checked_fixture(tp, setup, teardown);
	tcase_set_timeout(tp, 60);
	tcase_add_test(tp, ten_million_across_processes);
	tcase_add_test(tp, no_lost_wakeups);
	tcase_add_test(tp, consumer_sleeps_and_wakes);
	tcase_add_test(tp, shared_doorbell_serves_two_rings);
	tcase_add_test(tp, producer_killed_midstream);
	tcase_add_test(tp, dead_producer_mid_write);
	tcase_add_test(tp, observer_attaches_busy_ring);
	suite_add_tcase(s, tp);
	return s;
}

SHMEX_TEST_MAIN(shm_ring_suite)

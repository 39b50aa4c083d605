/*
 * shm_instance_suite: the control and rings regions of an exchange
 * instance: creation, attachment in every role, ring addressing, and a
 * request/reply round trip between real gateway and matcher processes.
 */
#include "tests/shmex_test.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shm/shm_error.h"
#include "shm/shm_instance.h"
#include "shm/shm_msg.h"
#include "shm/shm_proc.h"
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

static void create(struct shm_instance *h, uint32_t ns, uint32_t ng, uint32_t cap)
{
	struct shm_instance_cfg cfg;
	test_instance_cfg(&cfg, ns, ng, cap);
	cfg.s.accounts = 1000;
	int rc = shm_instance_create(inst, &cfg, h);
	ck_assert_msg(rc == 0, "create: %s", h->err.msg);
}

/* One process per member slot: a second live gateway or matcher on the
 * same index would break the single-producer rule of its rings. */
START_TEST(member_slot_is_exclusive)
{
	struct shm_instance sup, gw, gw2;
	create(&sup, 1, 2, 64);
	int ready[2], go[2];
	ck_assert_int_eq(pipe(ready), 0);
	ck_assert_int_eq(pipe(go), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct shm_instance h;
		char c = 'x';
		if (shm_instance_attach(inst, SHM_ROLE_GATEWAY, 1, &h) != 0)
			_exit(3);
		if (write(ready[1], &c, 1) != 1 || read(go[0], &c, 1) != 1)
			_exit(4);
		shm_instance_detach(&h);
		_exit(0);
	}
	char c;
	ck_assert_int_eq(read(ready[0], &c, 1), 1);
	/* The child holds gateway 1: a second attach is refused ... */
	ck_assert_int_eq(shm_instance_attach(inst, SHM_ROLE_GATEWAY, 1, &gw2),
			 SHMEX_EINUSE);
	ck_assert_ptr_nonnull(strstr(gw2.err.msg, "gateway 1"));
	/* ... other slots are free ... */
	ck_assert_int_eq(shm_instance_attach(inst, SHM_ROLE_GATEWAY, 0, &gw), 0);
	shm_instance_detach(&gw);
	/* ... and after a clean detach the slot can be taken. */
	ck_assert_int_eq(write(go[1], "g", 1), 1);
	ck_assert_int_eq(test_wait_pid(pid, 5000), 0);
	ck_assert_int_eq(shm_instance_attach(inst, SHM_ROLE_GATEWAY, 1, &gw), 0);
	shm_instance_detach(&gw);

	/* A holder killed with SIGKILL (no detach) leaves a dead owner: its
	 * slot is taken over. */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct shm_instance h;
		if (shm_instance_attach(inst, SHM_ROLE_MATCHER, 0, &h) != 0)
			_exit(3);
		if (write(ready[1], "r", 1) != 1)
			_exit(4);
		pause();
		_exit(0);
	}
	ck_assert_int_eq(read(ready[0], &c, 1), 1);
	ck_assert_int_eq(shm_instance_attach(inst, SHM_ROLE_MATCHER, 0, &gw),
			 SHMEX_EINUSE);
	kill(pid, SIGKILL);
	ck_assert_int_ne(test_wait_pid(pid, 5000), -1);
	ck_assert_int_eq(shm_instance_attach(inst, SHM_ROLE_MATCHER, 0, &gw), 0);
	shm_instance_detach(&gw);
	close(ready[0]);
	close(ready[1]);
	close(go[0]);
	close(go[1]);
	shm_instance_detach(&sup);
}
END_TEST

START_TEST(create_attach_unlink)
{
	struct shm_instance sup, obs, gw;
	create(&sup, 2, 3, 64);
	/* control, rings and one ledger per shard */
	ck_assert_int_eq(test_count_objects(inst), 4);

	ck_assert_int_eq(shm_instance_attach(inst, SHM_ROLE_OBSERVER, 0, &obs), 0);
	ck_assert_uint_eq(obs.nshards, 2);
	ck_assert_uint_eq(obs.ngateways, 3);
	ck_assert_uint_eq(obs.ring_capacity, 64);
	/* Every setting reaches the attacher, validated. */
	ck_assert_uint_eq(obs.settings.accounts, 1000);
	ck_assert_uint_eq(obs.settings.shards, 2);
	ck_assert_uint_eq(obs.settings.orders, 65536);
	ck_assert(!obs.control.writable && !obs.rings.writable);

	ck_assert_int_eq(shm_instance_attach(inst, SHM_ROLE_GATEWAY, 2, &gw), 0);
	int32_t pid;
	uint64_t start;
	shm_instance_member(&obs, SHM_ROLE_GATEWAY, 2, &pid, &start);
	ck_assert_int_eq(pid, getpid());
	ck_assert_uint_eq(start, shm_proc_self_start());
	shm_instance_member(&obs, SHM_ROLE_GATEWAY, 1, &pid, &start);
	ck_assert_int_eq(pid, 0);
	shm_instance_detach(&gw);
	shm_instance_member(&obs, SHM_ROLE_GATEWAY, 2, &pid, &start);
	ck_assert_int_eq(pid, 0);

	ck_assert(!shm_instance_stopping(&obs));
	shm_instance_set_stopping(&obs); /* read-only: ignored */
	ck_assert(!shm_instance_stopping(&obs));
	shm_instance_set_stopping(&sup);
	ck_assert(shm_instance_stopping(&obs));

	shm_instance_detach(&obs);
	shm_instance_detach(&sup);
	ck_assert_int_eq(shm_instance_unlink(inst), 0);
	ck_assert_int_eq(test_count_objects(inst), 0);
	ck_assert_int_eq(shm_instance_unlink(inst), -ENOENT);
	ck_assert_int_eq(shm_instance_attach(inst, SHM_ROLE_MATCHER, 0, &obs), -ENOENT);
	ck_assert_ptr_nonnull(strstr(obs.err.msg, ".control"));
	shm_instance_detach(&obs); /* safe on a failed handle */
}
END_TEST

START_TEST(bad_configuration_rejected)
{
	struct shm_instance h;
	static const struct {
		uint32_t ns, ng, cap;
		uint64_t orders;
	} bad[] = {
		{0, 1, 0, 1},
		{1, 0, 0, 1},
		{SHM_INSTANCE_SHARDS_MAX + 1, 1, 0, 1},
		{1, SHM_INSTANCE_GATEWAYS_MAX + 1, 0, 1},
		{1, 1, 3, 1},
		{1, 1, 1, 1},
		{64, 64, SHM_RING_CAPACITY_MAX, 1},
		{1, 1, 0, 0}, /* a capacity of 0 */
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct shm_instance_cfg cfg;
		test_instance_cfg(&cfg, bad[i].ns, bad[i].ng, bad[i].cap);
		cfg.s.orders = bad[i].orders;
		ck_assert_int_eq(shm_instance_create(inst, &cfg, &h), -EINVAL);
		ck_assert_int_eq(test_count_objects(inst), 0);
	}
	struct shm_instance_cfg bad_name;
	test_instance_cfg(&bad_name, 1, 1, 0);
	ck_assert_int_eq(shm_instance_create("no/slash", &bad_name, &h), SHMEX_EBADNAME);

	/* A second create of the same name fails and harms nothing. */
	struct shm_instance a, b;
	create(&a, 1, 1, 0);
	ck_assert_uint_eq(a.ring_capacity, SHM_DEFAULT_RING_CAPACITY);
	struct shm_instance_cfg cfg;
	test_instance_cfg(&cfg, 1, 1, 0);
	ck_assert_int_eq(shm_instance_create(inst, &cfg, &b), -EEXIST);
	ck_assert_int_eq(shm_instance_attach(inst, SHM_ROLE_MATCHER, 0, &b), 0);
	shm_instance_detach(&b);
	/* Role indexes out of range. */
	ck_assert_int_eq(shm_instance_attach(inst, SHM_ROLE_MATCHER, 1, &b),
			 SHMEX_EBADINDEX);
	ck_assert_int_eq(shm_instance_attach(inst, SHM_ROLE_GATEWAY, 7, &b),
			 SHMEX_EBADINDEX);
	ck_assert_int_eq(shm_instance_attach(inst, (enum shm_instance_role)9, 0, &b),
			 -EINVAL);
	shm_instance_detach(&a);
	ck_assert_int_eq(shm_instance_unlink(inst), 0);
}
END_TEST

/* A control region whose configuration disagrees with the regions is
 * refused before any address is computed from it. */
START_TEST(inconsistent_control_rejected)
{
	struct shm_instance sup, h;
	create(&sup, 2, 2, 16);
	struct shm_control_sh *ctl = sup.ctl;
	uint64_t *nshards = &ctl->settings.slot[SHM_SETTING_IDX_shards];
	uint64_t *ringcap = &ctl->settings.slot[SHM_SETTING_IDX_ring_capacity];
	uint64_t *orders = &ctl->settings.slot[SHM_SETTING_IDX_orders];
	uint64_t save = *nshards;
	*nshards = 0;
	ck_assert_int_eq(shm_instance_attach(inst, SHM_ROLE_MATCHER, 0, &h),
			 SHMEX_EBADLAYOUT);
	ck_assert_ptr_nonnull(strstr(h.err.msg, "shards = 0 is out of range"));
	*nshards = 3; /* in range, but not what the rings were made for */
	ck_assert_int_eq(shm_instance_attach(inst, SHM_ROLE_MATCHER, 0, &h),
			 SHMEX_EBADLAYOUT);
	*nshards = save;
	*ringcap = 32;
	ck_assert_int_eq(shm_instance_attach(inst, SHM_ROLE_MATCHER, 0, &h),
			 SHMEX_EBADLAYOUT);
	*ringcap = 16;
	/* A capacity out of its range (another build, or a stray write). */
	uint64_t so = *orders;
	*orders = UINT64_C(1) << 40;
	ck_assert_int_eq(shm_instance_attach(inst, SHM_ROLE_OBSERVER, 0, &h),
			 SHMEX_EBADLAYOUT);
	*orders = so;
	ck_assert_int_eq(shm_instance_attach(inst, SHM_ROLE_MATCHER, 0, &h), 0);
	shm_instance_detach(&h);
	shm_instance_detach(&sup);
}
END_TEST

/* Ring (g, s) and reply ring (s, g) are distinct, in bounds, bound to the
 * right doorbells, and hold what was put in them. */
START_TEST(ring_mapping)
{
	enum { S = 3, G = 2 };
	struct shm_instance sup, h;
	create(&sup, S, G, 8);
	ck_assert_int_eq(shm_instance_attach(inst, SHM_ROLE_SUPERVISOR, 0, &h), 0);
	char *lo = shm_region_body(&h.rings);
	char *hi = lo + shm_region_body_size(&h.rings);
	void *seen[2 * S * G];
	unsigned nseen = 0;
	for (uint32_t g = 0; g < G; g++) {
		for (uint32_t s = 0; s < S; s++) {
			struct shm_ring req, rep;
			ck_assert_int_eq(shm_instance_request_ring(&h, g, s, &req), 0);
			ck_assert_int_eq(shm_instance_reply_ring(&h, s, g, &rep), 0);
			ck_assert_ptr_eq(req.db, shm_instance_shard_doorbell(&h, s));
			ck_assert_ptr_eq(rep.db, shm_instance_gateway_doorbell(&h, g));
			seen[nseen++] = req.sh;
			seen[nseen++] = rep.sh;
			struct shm_msg m = {.type = SHM_MSG_ORDER, .req_id = g * 100 + s};
			unsigned done;
			ck_assert_int_eq(shm_ring_enqueue_batch(&req, &m, 1, &done), 0);
			ck_assert_uint_eq(done, 1);
			m.type = SHM_MSG_REPLY;
			m.req_id = 1000 + s * 100 + g;
			ck_assert_int_eq(shm_ring_enqueue_batch(&rep, &m, 1, &done), 0);
		}
	}
	for (unsigned i = 0; i < nseen; i++) {
		ck_assert((char *)seen[i] >= lo);
		ck_assert((char *)seen[i] + h.ring_bytes <= hi);
		ck_assert_uint_eq((uintptr_t)seen[i] % 128, 0);
		for (unsigned j = 0; j < i; j++)
			ck_assert_ptr_ne(seen[i], seen[j]);
	}
	/* Another mapping's view (the supervisor's handle, mapped
	 * separately at create) agrees. */
	for (uint32_t g = 0; g < G; g++) {
		for (uint32_t s = 0; s < S; s++) {
			struct shm_ring req, rep;
			struct shm_msg m;
			unsigned got;
			ck_assert_int_eq(shm_instance_request_ring(&sup, g, s, &req), 0);
			ck_assert_int_eq(shm_ring_dequeue_batch(&req, &m, 1, &got), 0);
			ck_assert_uint_eq(got, 1);
			ck_assert_uint_eq(m.req_id, g * 100 + s);
			ck_assert_int_eq(shm_instance_reply_ring(&sup, s, g, &rep), 0);
			ck_assert_int_eq(shm_ring_dequeue_batch(&rep, &m, 1, &got), 0);
			ck_assert_uint_eq(m.req_id, 1000 + s * 100 + g);
		}
	}
	struct shm_ring r;
	ck_assert_int_eq(shm_instance_request_ring(&h, G, 0, &r), SHMEX_EBADINDEX);
	ck_assert_int_eq(shm_instance_request_ring(&h, 0, S, &r), SHMEX_EBADINDEX);
	ck_assert_int_eq(shm_instance_reply_ring(&h, S, 0, &r), SHMEX_EBADINDEX);
	ck_assert_int_eq(shm_instance_reply_ring(&h, 0, G, &r), SHMEX_EBADINDEX);
	ck_assert_ptr_null(shm_instance_shard_doorbell(&h, S));
	ck_assert_ptr_null(shm_instance_gateway_doorbell(&h, G));
	shm_instance_detach(&h);
	shm_instance_detach(&sup);
}
END_TEST

/* An observer maps read-only: it can read statistics, and a write through
 * its mapping faults (the kernel enforces it). */
START_TEST(observer_is_read_only)
{
	struct shm_instance sup;
	create(&sup, 1, 1, 8);
	pid_t c = fork();
	ck_assert_int_ge(c, 0);
	if (c == 0) {
		struct shm_instance obs;
		struct shm_ring r;
		if (shm_instance_attach(inst, SHM_ROLE_OBSERVER, 0, &obs) ||
		    shm_instance_request_ring(&obs, 0, 0, &r))
			_exit(10);
		struct shm_ring_stats st;
		shm_ring_stats(&r, &st);
		if (st.capacity != 8 || st.depth != 0)
			_exit(11);
		signal(SIGSEGV, SIG_DFL); /* no sanitizer report, just die */
		r.sh->prod.head = 5;      /* must fault */
		_exit(12);
	}
	int st = test_wait_pid(c, 10000);
	ck_assert(WIFSIGNALED(st));
	ck_assert_int_eq(WTERMSIG(st), SIGSEGV);
	struct shm_ring r;
	ck_assert_int_eq(shm_instance_request_ring(&sup, 0, 0, &r), 0);
	ck_assert_uint_eq(r.sh->prod.head, 0);
	shm_instance_detach(&sup);
}
END_TEST

/* ---- a gateway process and matcher processes ---- */

enum { RT_SHARDS = 2, RT_GATEWAYS = 2, RT_GW = 1, RT_N = 2000 };
static const char *const rt_symbols[] = {"AAPL", "MSFT", "GOOG", "IBM",
					 "NVDA", "META", "BA",   "JPM"};

struct matcher_ctx {
	struct shm_instance *h;
	struct shm_ring in[RT_GATEWAYS];
};

static bool matcher_ready(void *arg)
{
	struct matcher_ctx *m = arg;
	for (unsigned g = 0; g < RT_GATEWAYS; g++)
		if (shm_ring_readable(&m->in[g]))
			return true;
	return shm_instance_stopping(m->h);
}

/* Shard s: answers every request with the shard number in qty; exits 0
 * once stopping is set and its rings are drained. */
static int run_matcher(uint32_t s)
{
	struct shm_instance h;
	if (shm_instance_attach(inst, SHM_ROLE_MATCHER, s, &h))
		return 10;
	struct matcher_ctx m = {.h = &h};
	struct shm_ring out[RT_GATEWAYS];
	for (uint32_t g = 0; g < RT_GATEWAYS; g++)
		if (shm_instance_request_ring(&h, g, s, &m.in[g]) ||
		    shm_instance_reply_ring(&h, s, g, &out[g]))
			return 11;
	struct shm_doorbell_sh *db = shm_instance_shard_doorbell(&h, s);
	for (;;) {
		int rc = shm_doorbell_wait(db, matcher_ready, &m,
					   SHM_DOORBELL_SPIN_NS_DEFAULT, 20000);
		if (rc == SHMEX_ETIMEDOUT)
			return 12;
		bool any = false;
		for (uint32_t g = 0; g < RT_GATEWAYS; g++) {
			struct shm_msg req[32];
			unsigned got;
			if (shm_ring_dequeue_batch(&m.in[g], req, 32, &got))
				return 13;
			any |= got > 0;
			for (unsigned i = 0; i < got; i++) {
				size_t len = shm_symbol_unpack_len(req[i].u.symbol);
				struct shm_msg rep = {
					.type = SHM_MSG_REPLY,
					.req_type = req[i].type,
					.req_id = req[i].req_id,
					.qty = s,
				};
				if (req[i].type != SHM_MSG_ORDER || len == 0 ||
				    shm_shard_of_symbol(req[i].u.symbol, len,
							RT_SHARDS) != s)
					rep.status = SHMEX_EWRONGSHARD;
				unsigned done = 0;
				while (done == 0) {
					if (shm_ring_enqueue_batch(&out[g], &rep, 1,
								   &done))
						return 14;
				}
			}
		}
		if (!any && shm_instance_stopping(&h))
			break;
	}
	shm_instance_detach(&h);
	return 0;
}

struct gw_ctx {
	struct shm_ring in[RT_SHARDS];
};

static bool gw_ready(void *arg)
{
	struct gw_ctx *c = arg;
	for (unsigned s = 0; s < RT_SHARDS; s++)
		if (shm_ring_readable(&c->in[s]))
			return true;
	return false;
}

/* Gateway RT_GW: sends RT_N orders routed by symbol, checks every reply
 * came from the shard that owns the symbol. */
static int run_gateway(void)
{
	struct shm_instance h;
	if (shm_instance_attach(inst, SHM_ROLE_GATEWAY, RT_GW, &h))
		return 20;
	struct shm_ring req[RT_SHARDS];
	struct gw_ctx c;
	for (uint32_t s = 0; s < RT_SHARDS; s++)
		if (shm_instance_request_ring(&h, RT_GW, s, &req[s]) ||
		    shm_instance_reply_ring(&h, s, RT_GW, &c.in[s]))
			return 21;
	uint32_t want[RT_N];
	unsigned sent = 0, answered = 0;
	while (answered < RT_N) {
		if (sent < RT_N) {
			const char *sym = rt_symbols[sent % 8];
			struct shm_msg m = {
				.type = SHM_MSG_ORDER, .req_id = sent + 1, .qty = 1};
			if (!shm_symbol_pack(m.u.symbol, sym, strlen(sym)))
				return 22;
			uint32_t s = shm_shard_of_symbol(sym, strlen(sym), RT_SHARDS);
			want[sent] = s;
			unsigned done;
			if (shm_ring_enqueue_batch(&req[s], &m, 1, &done))
				return 23;
			sent += done;
		}
		int rc = shm_doorbell_wait(shm_instance_gateway_doorbell(&h, RT_GW),
					   gw_ready, &c, 1000, sent < RT_N ? 0 : 20000);
		if (rc == SHMEX_ETIMEDOUT && sent == RT_N)
			return 24;
		for (uint32_t s = 0; s < RT_SHARDS; s++) {
			struct shm_msg rep[16];
			unsigned got;
			if (shm_ring_dequeue_batch(&c.in[s], rep, 16, &got))
				return 25;
			for (unsigned i = 0; i < got; i++) {
				uint64_t id = rep[i].req_id;
				if (shm_msg_validate_reply(&rep[i]) || id < 1 ||
				    id > sent)
					return 26;
				if (rep[i].status != 0 || rep[i].qty != (int64_t)s ||
				    want[id - 1] != s)
					return 27;
				answered++;
			}
		}
	}
	shm_instance_detach(&h);
	return 0;
}

START_TEST(gateway_to_matcher_and_back)
{
	struct shm_instance sup;
	create(&sup, RT_SHARDS, RT_GATEWAYS, 16);
	/* The symbols must cover both shards for the test to mean much. */
	unsigned per_shard[RT_SHARDS] = {0};
	for (unsigned i = 0; i < 8; i++)
		per_shard[shm_shard_of_symbol(rt_symbols[i], strlen(rt_symbols[i]),
					      RT_SHARDS)]++;
	ck_assert_uint_gt(per_shard[0], 0);
	ck_assert_uint_gt(per_shard[1], 0);

	pid_t mpid[RT_SHARDS];
	for (uint32_t s = 0; s < RT_SHARDS; s++) {
		mpid[s] = fork();
		ck_assert_int_ge(mpid[s], 0);
		if (mpid[s] == 0)
			_exit(run_matcher(s));
	}
	/* Wait until both matchers are attached and asleep on their
	 * doorbells, so the gateway's first requests must wake them. */
	for (uint32_t s = 0; s < RT_SHARDS; s++) {
		struct shm_doorbell_stats st = {0};
		int32_t pid = 0;
		uint64_t start;
		for (int i = 0; i < 5000 && !(st.sleeping && pid == mpid[s]); i++) {
			usleep(1000);
			shm_doorbell_stats(shm_instance_shard_doorbell(&sup, s), &st);
			shm_instance_member(&sup, SHM_ROLE_MATCHER, s, &pid, &start);
		}
		ck_assert_int_eq(pid, mpid[s]);
		ck_assert(st.sleeping);
	}
	pid_t gpid = fork();
	ck_assert_int_ge(gpid, 0);
	if (gpid == 0)
		_exit(run_gateway());
	int st = test_wait_pid(gpid, 30000);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "gateway status %d", st);
	/* Both shards were woken from sleep at least once. */
	for (uint32_t s = 0; s < RT_SHARDS; s++) {
		struct shm_doorbell_stats dst;
		shm_doorbell_stats(shm_instance_shard_doorbell(&sup, s), &dst);
		ck_assert_uint_ge(dst.wakes, 1);
	}
	shm_instance_set_stopping(&sup);
	for (uint32_t s = 0; s < RT_SHARDS; s++) {
		st = test_wait_pid(mpid[s], 30000);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
			      "matcher %u status %d", s, st);
		int32_t pid;
		uint64_t start;
		shm_instance_member(&sup, SHM_ROLE_MATCHER, s, &pid, &start);
		ck_assert_int_eq(pid, 0); /* it detached */
	}
	/* Gateway 0 never ran: its rings are untouched. */
	struct shm_ring r;
	struct shm_ring_stats rs;
	ck_assert_int_eq(shm_instance_request_ring(&sup, 0, 0, &r), 0);
	shm_ring_stats(&r, &rs);
	ck_assert_uint_eq(rs.head, 0);
	ck_assert_int_eq(shm_instance_request_ring(&sup, RT_GW, 1, &r), 0);
	shm_ring_stats(&r, &rs);
	ck_assert_uint_eq(rs.head, per_shard[1] * RT_N / 8);
	ck_assert_uint_eq(rs.tail, rs.head);
	shm_instance_detach(&sup);
	ck_assert_int_eq(shm_instance_unlink(inst), 0);
	ck_assert_int_eq(test_count_objects(inst), 0);
}
END_TEST

static Suite *shm_instance_suite(void)
{
	Suite *s = suite_create("shm_instance");
	TCase *tc = tcase_create("regions");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, create_attach_unlink);
	tcase_add_test(tc, member_slot_is_exclusive);
	tcase_add_test(tc, bad_configuration_rejected);
	tcase_add_test(tc, inconsistent_control_rejected);
	tcase_add_test(tc, ring_mapping);
	tcase_add_test(tc, observer_is_read_only);
	tcase_add_test(tc, gateway_to_matcher_and_back);
	suite_add_tcase(s, tc);
	return s;
}

SHMEX_TEST_MAIN(shm_instance_suite)

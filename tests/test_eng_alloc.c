/*
 * eng_alloc_suite: the engine's allocations go through the hooks when they
 * are set, all of them come back, and a core made in a shared arena before
 * fork() is one state for the parent and the child (what the global-lock
 * benchmark relies on).
 */
#include "tests/shmex_test.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/eng_alloc.h"
#include "engine/eng_core.h"
#include "shm/shm_msg.h"

/* ---- counting hooks over the C library ---- */

static long calls, live;

static void *count_malloc(size_t size)
{
	void *p = malloc(size);
	calls++;
	live += p != NULL;
	return p;
}

static void *count_calloc(size_t n, size_t size)
{
	void *p = calloc(n, size);
	calls++;
	live += p != NULL;
	return p;
}

static void *count_realloc(void *p, size_t size)
{
	void *q = realloc(p, size);
	calls++;
	live += !p && q;
	return q;
}

static void count_free(void *p)
{
	live -= p != NULL;
	free(p);
}

static const struct eng_alloc_hooks counting = {
	.malloc = count_malloc,
	.calloc = count_calloc,
	.realloc = count_realloc,
	.free = count_free,
};

static struct eng_core_cfg small_cfg(void)
{
	struct eng_core_cfg cfg = {
		.caps = {.symbols = 4, .levels = 64, .orders = 256, .fills = 512},
		.shard = 0,
		.nshards = 1,
	};
	return cfg;
}

static struct eng_req order(uint64_t seq, uint8_t side, int64_t price, int64_t qty)
{
	struct eng_req r;
	memset(&r, 0, sizeof(r));
	r.seq = seq;
	r.time_ns = seq;
	r.account = 1 + seq % 2;
	r.side = side;
	r.tif = SHM_TIF_GTC;
	r.price = price;
	r.qty = qty;
	return r;
}

START_TEST(hooks_get_every_allocation_of_a_core)
{
	struct eng_core_cfg cfg = small_cfg();
	size_t bytes = eng_core_bytes(&cfg);
	void *mem = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
	ck_assert_ptr_nonnull(mem);
	calls = live = 0;
	eng_alloc_set(&counting);
	struct eng_core *b;
	ck_assert_int_eq(eng_core_init(&b, mem, bytes, &cfg, NULL, NULL), 0);
	uint32_t sym;
	ck_assert_int_eq(eng_core_symbol_add(b, "X", 1, &sym), 0);
	long after_setup = calls;
	/* init: the handle, its arrays and the level hash; symbol_add: the
	 * symbol's price arrays (a reservation, through calloc). */
	ck_assert_int_ge(after_setup, 12);
	for (uint64_t i = 1; i <= 100; i++) {
		struct eng_req r = order(i, (uint8_t)(i % 2), 100 + (int64_t)(i % 7), 3);
		r.sym = sym;
		uint64_t id;
		ck_assert_int_eq(eng_core_submit(b, &r, &id), 0);
	}
	ck_assert_int_eq(calls, after_setup); /* matching allocates nothing */
	eng_core_destroy(b);
	ck_assert_int_eq(live, 0);
	eng_alloc_set(NULL);
	free(mem);
}
END_TEST

START_TEST(null_restores_the_defaults)
{
	eng_alloc_set(&counting);
	eng_alloc_set(NULL);
	calls = 0;
	struct eng_core_cfg cfg = small_cfg();
	size_t bytes = eng_core_bytes(&cfg);
	void *mem = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
	ck_assert_ptr_nonnull(mem);
	struct eng_core *b;
	ck_assert_int_eq(eng_core_init(&b, mem, bytes, &cfg, NULL, NULL), 0);
	uint32_t sym;
	ck_assert_int_eq(eng_core_symbol_add(b, "X", 1, &sym), 0);
	eng_core_destroy(b);
	ck_assert_int_eq(calls, 0);
	void *r = eng_alloc_reserve(1 << 20);
	ck_assert_ptr_nonnull(r);
	ck_assert_int_eq(((char *)r)[12345], 0);
	eng_alloc_unreserve(r, 1 << 20);
	free(mem);
}
END_TEST

/* ---- a bump arena in shared memory, as the benchmark's ---- */

#define ARENA (64u << 20)
static char *arena;
static size_t arena_top;

static void *arena_malloc(size_t size)
{
	size_t at = (arena_top + 63) & ~(size_t)63;
	if (at + size > ARENA)
		return NULL;
	arena_top = at + size;
	return arena + at;
}

static void *arena_calloc(size_t n, size_t size)
{
	return arena_malloc(n * size); /* never reused: zero */
}

static void *arena_realloc(void *p, size_t size)
{
	void *q = arena_malloc(size);
	if (p && q)
		memcpy(q, p, size); /* the test never grows a block */
	return q;
}

static void arena_free(void *p)
{
	(void)p;
}

START_TEST(core_made_in_a_shared_arena_is_one_state_after_fork)
{
	arena = mmap(NULL, ARENA, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1,
		     0);
	ck_assert_ptr_ne(arena, MAP_FAILED);
	arena_top = 0;
	const struct eng_alloc_hooks hooks = {
		.malloc = arena_malloc,
		.calloc = arena_calloc,
		.realloc = arena_realloc,
		.free = arena_free,
	};
	eng_alloc_set(&hooks);
	struct eng_core_cfg cfg = small_cfg();
	size_t bytes = eng_core_bytes(&cfg);
	void *mem = arena_malloc(bytes); /* the book body too */
	struct eng_core *b;
	ck_assert_int_eq(eng_core_init(&b, mem, bytes, &cfg, NULL, NULL), 0);
	uint32_t sym;
	ck_assert_int_eq(eng_core_symbol_add(b, "X", 1, &sym), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* The child rests a bid and takes half of it with a sell. */
		struct eng_req r = order(1, SHM_SIDE_BUY, 100, 10);
		r.sym = sym;
		uint64_t id;
		int rc = eng_core_submit(b, &r, &id);
		r = order(2, SHM_SIDE_SELL, 100, 4);
		r.sym = sym;
		rc |= eng_core_submit(b, &r, &id);
		_exit(rc == 0 ? 0 : 1);
	}
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	/* The parent's handle sees what the child did: its private indexes
	 * (the price arrays the depth walks) were the child's too. */
	struct eng_core_level_info lv[4];
	ck_assert_uint_eq(eng_core_depth(b, sym, SHM_SIDE_BUY, lv, 4), 1);
	ck_assert_int_eq(lv[0].price, 100);
	ck_assert_int_eq(lv[0].qty, 6);
	ck_assert_uint_eq(eng_core_events(b), 3); /* two accepts, one fill */
	eng_core_destroy(b);
	eng_alloc_set(NULL);
	munmap(arena, ARENA);
}
END_TEST

static Suite *eng_alloc_suite(void)
{
	Suite *s = suite_create("eng_alloc");
	TCase *tc = tcase_create("hooks");
	tcase_add_test(tc, hooks_get_every_allocation_of_a_core);
	tcase_add_test(tc, null_restores_the_defaults);
	tcase_add_test(tc, core_made_in_a_shared_arena_is_one_state_after_fork);
	suite_add_tcase(s, tc);
	return s;
}

SHMEX_TEST_MAIN(eng_alloc_suite)

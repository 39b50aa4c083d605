/*
 * shm_shard_suite: who owns what (shm/shm_shard.h): the symbol map spreads
 * real tickers, order ids name their shard and record, and no id of the
 * scheme ever passes 64 bits.
 */
#include "tests/shmex_test.h"

#include <stdio.h>
#include <string.h>

#include "shm/shm_settings.h"
#include "shm/shm_shard.h"

START_TEST(first_ids_are_small_and_unique)
{
	/* Shard 0 of 2 hands out 1, 3, 5, ...; shard 1 hands out 2, 4, ... */
	ck_assert_uint_eq(shm_order_id_make(0, 2, 0, 0, 100), 1);
	ck_assert_uint_eq(shm_order_id_make(1, 2, 0, 0, 100), 2);
	ck_assert_uint_eq(shm_order_id_make(0, 2, 1, 0, 100), 3);
	/* A reused slot gets a new id. */
	ck_assert_uint_ne(shm_order_id_make(0, 2, 1, 1, 100),
			  shm_order_id_make(0, 2, 1, 0, 100));
}
END_TEST

START_TEST(symbols_spread_over_shards)
{
	/* Real tickers must not all land on one shard (FNV-1a mod 2 alone
	 * sends AAPL, MSFT, GOOG, IBM, ... to the same one). */
	const char *syms[] = {"AAPL", "MSFT", "GOOG", "IBM",  "TSLA", "XOM",
			      "GE",   "F",    "SPY",  "AMZN", "BTC",  "ETH"};
	for (uint32_t n = 2; n <= 4; n++) {
		int count[4] = {0};
		for (size_t i = 0; i < sizeof(syms) / sizeof(syms[0]); i++)
			count[shm_shard_of_symbol(syms[i], strlen(syms[i]), n)]++;
		for (uint32_t s = 0; s < n; s++)
			ck_assert_msg(count[s] > 0, "shard %u of %u gets no symbol", s,
				      n);
	}
	/* Over many generated symbols, two shards are within 10% of even. */
	int c2[2] = {0};
	char sym[8];
	for (int i = 0; i < 10000; i++) {
		int n = snprintf(sym, sizeof(sym), "S%d", i);
		c2[shm_shard_of_symbol(sym, (size_t)n, 2)]++;
	}
	ck_assert_int_gt(c2[0], 4500);
	ck_assert_int_gt(c2[1], 4500);
}
END_TEST

/* At every capacity and shard count the settings allow, the largest id
 * the writer may hand out (last slot, last shard, gen = gen_max) fits 64
 * bits, and gen_max + 1 would not; at the largest ones that is 2^28
 * reuses of a slot (the comment once claimed 2^40). */
START_TEST(ids_never_overflow)
{
	static const uint64_t caps[] = {1, 2, 1000, 65536, 262144, SHM_SETTINGS_CAP_MAX};
	static const uint32_t shards[] = {1, 2, 3, 7, 64};
	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		for (size_t j = 0; j < sizeof(shards) / sizeof(shards[0]); j++) {
			uint64_t cap = caps[i];
			uint32_t ns = shards[j];
			uint64_t g = shm_order_gen_max(cap, ns);
			unsigned __int128 top =
				((unsigned __int128)g * cap + (cap - 1)) * ns + ns;
			ck_assert_msg(top <= UINT64_MAX,
				      "cap %llu shards %u: gen_max %llu overflows",
				      (unsigned long long)cap, ns, (unsigned long long)g);
			unsigned __int128 next =
				((unsigned __int128)(g + 1) * cap + (cap - 1)) * ns + ns;
			ck_assert_msg(
				next > UINT64_MAX,
				"cap %llu shards %u: gen_max %llu is not the largest",
				(unsigned long long)cap, ns, (unsigned long long)g);
			/* The id of the last slot maps back to it and its shard. */
			uint64_t id = shm_order_id_make(ns - 1, ns, cap - 1, g, cap);
			ck_assert_uint_eq(shm_shard_of_order(id, ns), ns - 1);
			ck_assert_uint_eq(shm_order_slot(id, ns, cap), cap - 1);
		}
	}
	ck_assert_uint_eq(shm_order_gen_max(SHM_SETTINGS_CAP_MAX, 64),
			  (UINT64_C(1) << 28) - 2);
}
END_TEST

static Suite *shm_shard_suite(void)
{
	Suite *s = suite_create("shm_shard");
	TCase *tc = tcase_create("shard");
	tcase_add_test(tc, first_ids_are_small_and_unique);
	tcase_add_test(tc, symbols_spread_over_shards);
	tcase_add_test(tc, ids_never_overflow);
	suite_add_tcase(s, tc);
	return s;
}

SHMEX_TEST_MAIN(shm_shard_suite)

/*
 * shm_msg_suite: validation of ring messages (requests and replies).
 */
#include "tests/shmex_test.h"

#include <stdio.h>
#include <string.h>

#include "shm/shm_error.h"
#include "shm/shm_msg.h"

static struct shm_msg order(const char *sym, uint32_t nshards)
{
	struct shm_msg m;
	memset(&m, 0, sizeof(m));
	m.type = SHM_MSG_ORDER;
	m.side = SHM_SIDE_BUY;
	m.tif = SHM_TIF_GTC;
	m.account = 7;
	m.price = 1250000;
	m.qty = 10000;
	ck_assert(shm_symbol_pack(m.u.symbol, sym, strlen(sym)));
	(void)nshards;
	return m;
}

START_TEST(valid_order_accepted_on_its_shard_only)
{
	struct shm_msg m = order("SPY", 4);
	uint32_t k = shm_shard_of_symbol("SPY", 3, 4);
	for (uint32_t s = 0; s < 4; s++)
		ck_assert_int_eq(shm_msg_validate_request(&m, s, 4),
				 s == k ? 0 : SHMEX_EWRONGSHARD);
}
END_TEST

START_TEST(hostile_fields_rejected)
{
	uint32_t k = shm_shard_of_symbol("SPY", 3, 2);
	struct shm_msg m = order("SPY", 2);
	m.type = 99;
	ck_assert_int_eq(shm_msg_validate_request(&m, k, 2), SHMEX_EBADMSG);
	m = order("SPY", 2);
	m.side = 2;
	ck_assert_int_eq(shm_msg_validate_request(&m, k, 2), SHMEX_EBADMSG);
	m = order("SPY", 2);
	m.tif = 3;
	ck_assert_int_eq(shm_msg_validate_request(&m, k, 2), SHMEX_EBADTIF);
	m = order("SPY", 2);
	m.price = 0;
	ck_assert_int_eq(shm_msg_validate_request(&m, k, 2), SHMEX_EBADPRICE);
	m.price = INT64_MIN;
	ck_assert_int_eq(shm_msg_validate_request(&m, k, 2), SHMEX_EBADPRICE);
	m = order("SPY", 2);
	m.qty = -5;
	ck_assert_int_eq(shm_msg_validate_request(&m, k, 2), SHMEX_EBADAMOUNT);
	m = order("SPY", 2);
	m.u.symbol[5] = 'X'; /* byte after the terminator */
	ck_assert_int_eq(shm_msg_validate_request(&m, k, 2), SHMEX_EBADSYMBOL);
	m = order("SPY", 2);
	memset(m.u.symbol, 'A', 16); /* no terminator at all */
	ck_assert_int_eq(shm_msg_validate_request(&m, k, 2), SHMEX_EBADSYMBOL);
	m = order("SPY", 2);
	m.u.symbol[1] = '-';
	ck_assert_int_eq(shm_msg_validate_request(&m, k, 2), SHMEX_EBADSYMBOL);
	m = order("SPY", 2);
	ck_assert_int_eq(shm_msg_validate_request(&m, 5, 2), SHMEX_EINTERNAL);
	/* Flags: post-only on an order only, no unknown bit. */
	m = order("SPY", 2);
	m.flags = SHM_MSG_POST_ONLY;
	ck_assert_int_eq(shm_msg_validate_request(&m, k, 2), 0);
	m.flags = 2;
	ck_assert_int_eq(shm_msg_validate_request(&m, k, 2), SHMEX_EBADMSG);
	m.type = SHM_MSG_ADD_SHARES;
	m.flags = SHM_MSG_POST_ONLY;
	ck_assert_int_eq(shm_msg_validate_request(&m, k, 2), SHMEX_EBADMSG);
	m.type = SHM_MSG_CANCEL;
	m.order_id = 1;
	ck_assert_int_eq(shm_msg_validate_request(&m, shm_shard_of_order(1, 2), 2),
			 SHMEX_EBADMSG);
}
END_TEST

START_TEST(cancel_and_account_routing)
{
	struct shm_msg m;
	memset(&m, 0, sizeof(m));
	m.type = SHM_MSG_CANCEL;
	m.order_id = shm_order_id_make(1, 2, 17, 3, 1000);
	ck_assert_uint_eq(shm_shard_of_order(m.order_id, 2), 1);
	ck_assert_uint_eq(shm_order_slot(m.order_id, 2, 1000), 17);
	ck_assert_int_eq(shm_msg_validate_request(&m, 1, 2), 0);
	ck_assert_int_eq(shm_msg_validate_request(&m, 0, 2), SHMEX_EWRONGSHARD);
	m.order_id = 0;
	ck_assert_int_eq(shm_msg_validate_request(&m, 1, 2), SHMEX_ENOORDER);

	/* MODIFY: a positive price, a new open quantity >= 0. */
	m.type = SHM_MSG_MODIFY;
	m.order_id = shm_order_id_make(1, 2, 17, 3, 1000);
	m.price = 1250000;
	m.qty = 0;
	ck_assert_int_eq(shm_msg_validate_request(&m, 1, 2), 0);
	ck_assert_int_eq(shm_msg_validate_request(&m, 0, 2), SHMEX_EWRONGSHARD);
	m.qty = -1;
	ck_assert_int_eq(shm_msg_validate_request(&m, 1, 2), SHMEX_EBADAMOUNT);
	m.qty = 10000;
	m.price = 0;
	ck_assert_int_eq(shm_msg_validate_request(&m, 1, 2), SHMEX_EBADPRICE);

	memset(&m, 0, sizeof(m));
	m.type = SHM_MSG_CREATE_ACCOUNT;
	m.account = 123457;
	/* The balance is 128 bits: price holds the low word, qty the high. */
	shm_msg_set_balance(&m, -1);
	ck_assert_int_eq(shm_msg_validate_request(&m, 1, 2), SHMEX_EBADBALANCE);
	shm_msg_set_balance(&m, SHM_CASH_INPUT_MAX + 1);
	ck_assert_int_eq(shm_msg_validate_request(&m, 1, 2), SHMEX_ECASHRANGE);
	shm_msg_set_balance(&m, SHM_CASH_INPUT_MAX);
	ck_assert_int_eq(shm_msg_validate_request(&m, 1, 2), 0);
	ck_assert(shm_msg_balance(&m) == SHM_CASH_INPUT_MAX);
	m.price = -1; /* a low word with its top bit set is not negative */
	m.qty = 0;
	ck_assert_int_eq(shm_msg_validate_request(&m, 1, 2), 0);
	shm_msg_set_balance(&m, 0);
	ck_assert_int_eq(shm_msg_validate_request(&m, 1, 2), 0);
	ck_assert_int_eq(shm_msg_validate_request(&m, 0, 2), SHMEX_EWRONGSHARD);
}
END_TEST

START_TEST(reply_validation)
{
	struct shm_msg m;
	memset(&m, 0, sizeof(m));
	m.type = SHM_MSG_REPLY;
	m.req_type = SHM_MSG_ORDER;
	ck_assert_int_eq(shm_msg_validate_reply(&m), 0);
	m.status = SHMEX_ENOFUNDS;
	ck_assert_int_eq(shm_msg_validate_reply(&m), 0);
	m.status = 12345;
	ck_assert_int_eq(shm_msg_validate_reply(&m), SHMEX_EBADMSG);
	m.status = 0;
	m.req_type = 77;
	ck_assert_int_eq(shm_msg_validate_reply(&m), SHMEX_EBADMSG);
}
END_TEST

START_TEST(symbol_rules)
{
	char b[16];
	ck_assert(shm_symbol_valid("T5asdf", 6));
	ck_assert(!shm_symbol_valid("", 0));
	ck_assert(!shm_symbol_valid("A B", 3));
	ck_assert(!shm_symbol_valid("ABCDEFGHIJKLMNOP", 16));
	ck_assert(shm_symbol_pack(b, "ABCDEFGHIJKLMNO", 15));
	ck_assert_uint_eq(shm_symbol_unpack_len(b), 15);
	ck_assert(!shm_symbol_pack(b, "A.B", 3));
}
END_TEST

static Suite *shm_msg_suite(void)
{
	Suite *s = suite_create("shm_msg");
	TCase *tc = tcase_create("msg");
	tcase_add_test(tc, valid_order_accepted_on_its_shard_only);
	tcase_add_test(tc, hostile_fields_rejected);
	tcase_add_test(tc, cancel_and_account_routing);
	tcase_add_test(tc, reply_validation);
	tcase_add_test(tc, symbol_rules);
	suite_add_tcase(s, tc);
	return s;
}

SHMEX_TEST_MAIN(shm_msg_suite)

/*
 * shm_dec_suite: exact fixed-point parsing, formatting and arithmetic.
 */
#include "tests/shmex_test.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "shm/shm_dec.h"
#include "shm/shm_error.h"

static int parse(const char *s, int digits, int64_t *out)
{
	return shm_dec_parse(s, strlen(s), digits, out);
}

static void ok(const char *s, int digits, int64_t want)
{
	int64_t v = 12345;
	int rc = parse(s, digits, &v);
	ck_assert_msg(rc == 0, "\"%s\" rejected: %s", s, shmex_errname(rc));
	ck_assert_msg(v == want, "\"%s\" -> %lld, want %lld", s, (long long)v,
		      (long long)want);
}

static void bad(const char *s, int digits, int want_rc)
{
	int64_t v = 777;
	int rc = parse(s, digits, &v);
	ck_assert_msg(rc == want_rc, "\"%s\": got %s, want %s", s, shmex_errname(rc),
		      shmex_errname(want_rc));
	ck_assert_msg(v == 777, "\"%s\": output written on error", s);
}

static void fmt(int64_t v, int digits, const char *want)
{
	char buf[32];
	int n = shm_dec_format(buf, sizeof(buf), v, digits);
	ck_assert_int_eq(n, (int)strlen(want));
	ck_assert_str_eq(buf, want);
}

START_TEST(valid_forms)
{
	ok("125", 4, 1250000);
	ok("125.5", 4, 1255000);
	ok("+3", 4, 30000);
	ok("-0.0001", 4, -1);
	ok("0.5", 4, 5000);
	ok("145.67", 4, 1456700);
	ok("0", 4, 0);
	ok("-0", 4, 0);
	ok("007", 4, 70000);
	ok("1000", 8, 100000000000);
	ok("0.00000001", 8, 1);
	ok("42", 0, 42);
}
END_TEST

START_TEST(lone_dot_forms_are_accepted)
{
	ok(".5", 4, 5000);
	ok("-.5", 4, -5000);
	ok("+.0001", 4, 1);
	ok("5.", 4, 50000);
	ok("-5.", 4, -50000);
}
END_TEST

START_TEST(trailing_zeros_beyond_scale_are_exact)
{
	ok("1.00000", 4, 10000);
	ok("145.670000", 4, 1456700);
	ok("2.000000000000000000000000000000", 4, 20000);
	/* but a non-zero digit beyond the scale would need rounding */
	bad("1.00001", 4, -EINVAL);
	bad("1.000000001", 8, -EINVAL);
	bad("0.5", 0, -EINVAL);
	ok("5.000", 0, 5);
}
END_TEST

START_TEST(rejected_forms)
{
	static const char *const forms[] = {
		"",    "+",   "-",   ".",   "+.",  "-.",   "1e5",  "1E5",  " 1",
		"1 ",  "1 0", "nan", "NaN", "inf", "-inf", "0x10", "1..2", "1.2.3",
		"--1", "+-1", "1-",  "1,5", "١",   "12a",  "\t1",  "1\n",  "0b1",
	};
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++)
		bad(forms[i], 4, -EINVAL);
}
END_TEST

START_TEST(embedded_nul_is_rejected)
{
	int64_t v;
	ck_assert_int_eq(shm_dec_parse("1\0"
				       "2",
				       3, 4, &v),
			 -EINVAL);
	ck_assert_int_eq(shm_dec_parse("12", 0, 4, &v), -EINVAL);
	/* length bounds the text: "123" read as 2 bytes is 12 */
	ck_assert_int_eq(shm_dec_parse("123", 2, 0, &v), 0);
	ck_assert_int_eq(v, 12);
}
END_TEST

START_TEST(digits_out_of_range_is_einval)
{
	int64_t v;
	char buf[32];
	ck_assert_int_eq(shm_dec_parse("1", 1, -1, &v), -EINVAL);
	ck_assert_int_eq(shm_dec_parse("1", 1, 19, &v), -EINVAL);
	ck_assert_int_eq(shm_dec_format(buf, sizeof(buf), 1, 19), -EINVAL);
	ck_assert_int_eq(shm_dec_parse("1", 1, 18, &v), 0);
	ck_assert_int_eq(v, INT64_C(1000000000000000000));
}
END_TEST

START_TEST(int64_edges)
{
	/* 4 digits: int64 holds +-922337203685477.5807/.5808 */
	ok("922337203685477.5807", 4, INT64_MAX);
	ok("-922337203685477.5808", 4, INT64_MIN);
	bad("922337203685477.5808", 4, SHMEX_EOVERFLOW);
	bad("-922337203685477.5809", 4, SHMEX_EOVERFLOW);
	ok("9223372036854775807", 0, INT64_MAX);
	ok("-9223372036854775808", 0, INT64_MIN);
	bad("9223372036854775808", 0, SHMEX_EOVERFLOW);
	/* beyond uint64 while accumulating */
	bad("18446744073709551616", 0, SHMEX_EOVERFLOW);
	bad("99999999999999999999999999999999999999", 4, SHMEX_EOVERFLOW);
	bad("-99999999999999999999999999999999999999", 4, SHMEX_EOVERFLOW);
	/* cash: +-92,233,720,368 */
	ok("92233720368.54775807", 8, INT64_MAX);
	bad("92233720369", 8, SHMEX_EOVERFLOW);
	/* leading zeros never overflow by themselves */
	ok("000000000000000000000000000000001", 4, 10000);
	/* a syntax error wins over an overflow that precedes it */
	bad("99999999999999999999999x", 4, -EINVAL);
}
END_TEST

START_TEST(format_shortest_exact)
{
	fmt(1250000, 4, "125");
	fmt(1255000, 4, "125.5");
	fmt(1456700, 4, "145.67");
	fmt(-1, 4, "-0.0001");
	fmt(0, 4, "0");
	fmt(10000, 4, "1");
	fmt(-10000, 4, "-1");
	fmt(5000, 4, "0.5");
	fmt(100000, 4, "10");
	fmt(1, 8, "0.00000001");
	fmt(100000000000, 8, "1000");
	fmt(INT64_MAX, 4, "922337203685477.5807");
	fmt(INT64_MIN, 4, "-922337203685477.5808");
	fmt(INT64_MIN, 0, "-9223372036854775808");
	fmt(INT64_MIN, 18, "-9.223372036854775808");
	fmt(1, 18, "0.000000000000000001");
	fmt(42, 0, "42");
}
END_TEST

START_TEST(format_never_prints_trailing_zero)
{
	char buf[32];
	for (int64_t v = -20000; v <= 20000; v += 7) {
		int n = shm_dec_format(buf, sizeof(buf), v, 4);
		ck_assert_int_gt(n, 0);
		if (strchr(buf, '.'))
			ck_assert_msg(buf[n - 1] != '0' && buf[n - 1] != '.',
				      "%lld -> %s", (long long)v, buf);
		int64_t back;
		ck_assert_int_eq(shm_dec_parse(buf, (size_t)n, 4, &back), 0);
		ck_assert_int_eq(back, v);
	}
}
END_TEST

START_TEST(format_buffer_too_small)
{
	char buf[8];
	memset(buf, 'x', sizeof(buf));
	ck_assert_int_eq(shm_dec_format(buf, 5, 1255000, 4), -ENOSPC);
	ck_assert_int_eq(shm_dec_format(buf, 6, 1255000, 4), 5);
	ck_assert_str_eq(buf, "125.5");
	ck_assert_int_eq(shm_dec_format(buf, 0, 0, 4), -ENOSPC);
	ck_assert_int_eq(shm_dec_format(buf, 1, 0, 4), -ENOSPC);
	ck_assert_int_eq(shm_dec_format(buf, 2, 0, 4), 1);
	ck_assert_str_eq(buf, "0");
}
END_TEST

START_TEST(parse_format_roundtrip_edges)
{
	const int64_t vals[] = {INT64_MIN, INT64_MIN + 1, -10001,   -1, 0, 1, 9999, 10000,
				10001,     INT64_MAX - 1, INT64_MAX};
	for (int d = 0; d <= 18; d++)
		for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
			char buf[32];
			int n = shm_dec_format(buf, sizeof(buf), vals[i], d);
			ck_assert_int_gt(n, 0);
			int64_t back;
			ck_assert_int_eq(shm_dec_parse(buf, (size_t)n, d, &back), 0);
			ck_assert_int_eq(back, vals[i]);
		}
}
END_TEST

START_TEST(cash_product_exact)
{
	int64_t c = -1;
	/* 100 shares x 145.67 = 14567 */
	ck_assert_int_eq(shm_dec_cash(100 * SHM_QTY_ONE, 1456700, &c), 0);
	ck_assert_int_eq(c, INT64_C(14567) * SHM_CASH_ONE);
	/* 0.0001 x 0.0001 = 0.00000001, the smallest cash unit */
	ck_assert_int_eq(shm_dec_cash(1, 1, &c), 0);
	ck_assert_int_eq(c, 1);
	ck_assert_int_eq(shm_dec_cash(-3 * SHM_QTY_ONE, 2 * SHM_PRICE_ONE, &c), 0);
	ck_assert_int_eq(c, -6 * SHM_CASH_ONE);
}
END_TEST

START_TEST(cash_overflow)
{
	int64_t c = 99;
	/* 1e6 shares x 1e6 = 1e12 cash > 9.2e10 */
	ck_assert_int_eq(shm_dec_cash(INT64_C(1000000) * SHM_QTY_ONE,
				      INT64_C(1000000) * SHM_PRICE_ONE, &c),
			 SHMEX_EOVERFLOW);
	ck_assert_int_eq(c, 99);
	ck_assert_int_eq(shm_dec_cash(INT64_MAX, INT64_MAX, &c), SHMEX_EOVERFLOW);
	ck_assert_int_eq(shm_dec_cash(INT64_MIN, -1, &c), SHMEX_EOVERFLOW);
	ck_assert_int_eq(shm_dec_cash(INT64_MIN, 1, &c), 0);
	ck_assert_int_eq(c, INT64_MIN);
	ck_assert_int_eq(shm_dec_cash(INT64_MAX, 1, &c), 0);
	ck_assert_int_eq(c, INT64_MAX);
	/* just at the edge: 92233720368 x 1 fits; x 2 does not */
	ck_assert_int_eq(
		shm_dec_cash(INT64_C(92233720368) * SHM_QTY_ONE, SHM_PRICE_ONE, &c), 0);
	ck_assert_int_eq(
		shm_dec_cash(INT64_C(92233720368) * SHM_QTY_ONE, 2 * SHM_PRICE_ONE, &c),
		SHMEX_EOVERFLOW);
}
END_TEST

START_TEST(add_checks_overflow)
{
	int64_t acc = 5;
	ck_assert_int_eq(shm_dec_add(&acc, 7), 0);
	ck_assert_int_eq(acc, 12);
	ck_assert_int_eq(shm_dec_add(&acc, -20), 0);
	ck_assert_int_eq(acc, -8);
	acc = INT64_MAX;
	ck_assert_int_eq(shm_dec_add(&acc, 1), SHMEX_EOVERFLOW);
	ck_assert_int_eq(acc, INT64_MAX);
	acc = INT64_MIN;
	ck_assert_int_eq(shm_dec_add(&acc, -1), SHMEX_EOVERFLOW);
	ck_assert_int_eq(acc, INT64_MIN);
	ck_assert_int_eq(shm_dec_add(&acc, INT64_MAX), 0);
	ck_assert_int_eq(acc, -1);
}
END_TEST

static void cash_ok(const char *s, shm_cash_t want, const char *formatted)
{
	shm_cash_t v = 12345;
	int rc = shm_dec_parse_cash(s, strlen(s), &v);
	ck_assert_msg(rc == 0, "\"%s\" rejected: %s", s, shmex_errname(rc));
	ck_assert_msg(v == want, "\"%s\" parsed to a different value", s);
	char buf[SHM_DEC_CASH_BUF];
	int n = shm_dec_format_cash(buf, sizeof(buf), v);
	ck_assert_int_eq(n, (int)strlen(formatted));
	ck_assert_str_eq(buf, formatted);
}

static void cash_bad(const char *s, int want_rc)
{
	shm_cash_t v = 777;
	int rc = shm_dec_parse_cash(s, strlen(s), &v);
	ck_assert_msg(rc == want_rc, "\"%s\": got %s, want %s", s, shmex_errname(rc),
		      shmex_errname(want_rc));
	ck_assert_msg(v == 777, "\"%s\": output written on error", s);
}

/* 128-bit cash: far past the int64 range, exact to the last unit, and a
 * clear "out of range" past SHM_CASH_INPUT_MAX (10^18 dollars). */
START_TEST(cash128_parse_format_edges)
{
	const shm_cash_t one = SHM_CASH_ONE;
	cash_ok("0", 0, "0");
	cash_ok("92233720368.54775807", INT64_MAX, "92233720368.54775807");
	cash_ok("92233720368.54775808", (shm_cash_t)INT64_MAX + 1,
		"92233720368.54775808");
	cash_ok("1000000000000000", one * 1000000000000000, "1000000000000000");
	cash_ok("1000000000000000.00000001", one * 1000000000000000 + 1,
		"1000000000000000.00000001");
	cash_ok("1000000000000000000", SHM_CASH_INPUT_MAX, "1000000000000000000");
	cash_ok("1000000000000000000.000000000", SHM_CASH_INPUT_MAX,
		"1000000000000000000");
	cash_ok("-1000000000000000000", -SHM_CASH_INPUT_MAX, "-1000000000000000000");
	cash_ok("-0.00000001", -1, "-0.00000001");
	cash_ok("+123456789012345678.9", one * 123456789012345678 + one * 9 / 10,
		"123456789012345678.9");
	cash_ok(".5", one / 2, "0.5");
	cash_bad("1000000000000000000.00000001", SHMEX_ECASHRANGE);
	cash_bad("-1000000000000000000.00000001", SHMEX_ECASHRANGE);
	cash_bad("99999999999999999999999999999999999999999", SHMEX_ECASHRANGE);
	cash_bad("1.000000001", -EINVAL);
	cash_bad("1e3", -EINVAL);
	cash_bad("", -EINVAL);
	cash_bad("-", -EINVAL);
	cash_bad(".", -EINVAL);
	cash_bad("1.2.3", -EINVAL);
	/* The most negative and positive 128-bit values format exactly. */
	shm_cash_t max = (shm_cash_t)(((unsigned __int128)1 << 127) - 1);
	char buf[SHM_DEC_CASH_BUF];
	ck_assert_int_gt(shm_dec_format_cash(buf, sizeof(buf), max), 0);
	ck_assert_str_eq(buf, "1701411834604692317316873037158.84105727");
	ck_assert_int_gt(shm_dec_format_cash(buf, sizeof(buf), -max - 1), 0);
	ck_assert_str_eq(buf, "-1701411834604692317316873037158.84105728");
	ck_assert_int_eq(shm_dec_format_cash(buf, 5, max), -ENOSPC);
}
END_TEST

/* 128-bit values at any scale (share positions use QTY digits); the
 * same text as shm_dec_format below 2^63. */
START_TEST(format128_at_qty_digits)
{
	char buf[SHM_DEC_128_BUF], ref[32];
	const __int128 max = (__int128)(((unsigned __int128)1 << 127) - 1);
	const int64_t vals[] = {0, 1, -1, 10000, 12345, INT64_MAX, INT64_MIN + 1};
	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		ck_assert_int_gt(shm_dec_format128(buf, sizeof(buf), vals[i], 4), 0);
		ck_assert_int_gt(shm_dec_format(ref, sizeof(ref), vals[i], 4), 0);
		ck_assert_str_eq(buf, ref);
	}
	ck_assert_int_gt(shm_dec_format128(buf, sizeof(buf), (__int128)INT64_MAX * 2, 4),
			 0);
	ck_assert_str_eq(buf, "1844674407370955.1614");
	ck_assert_int_gt(shm_dec_format128(buf, sizeof(buf), max, 4), 0);
	ck_assert_str_eq(buf, "17014118346046923173168730371588410.5727");
	ck_assert_int_gt(shm_dec_format128(buf, sizeof(buf), -max - 1, 0), 0);
	ck_assert_str_eq(buf, "-170141183460469231731687303715884105728");
	ck_assert_int_gt(shm_dec_format128(buf, sizeof(buf), -max - 1, 18), 0);
	ck_assert_str_eq(buf, "-170141183460469231731.687303715884105728");
	ck_assert_int_eq(shm_dec_format128(buf, sizeof(buf), 1, 19), -EINVAL);
	ck_assert_int_eq(shm_dec_format128(buf, sizeof(buf), 1, -1), -EINVAL);
	ck_assert_int_eq(shm_dec_format128(buf, 4, 12345, 4), -ENOSPC);
}
END_TEST

static Suite *shm_dec_suite(void)
{
	Suite *s = suite_create("shm_dec");
	TCase *tc = tcase_create("parse");
	tcase_add_test(tc, valid_forms);
	tcase_add_test(tc, lone_dot_forms_are_accepted);
	tcase_add_test(tc, trailing_zeros_beyond_scale_are_exact);
	tcase_add_test(tc, rejected_forms);
	tcase_add_test(tc, embedded_nul_is_rejected);
	tcase_add_test(tc, digits_out_of_range_is_einval);
	tcase_add_test(tc, int64_edges);
	suite_add_tcase(s, tc);
	tc = tcase_create("format");
	tcase_add_test(tc, format_shortest_exact);
	tcase_add_test(tc, format_never_prints_trailing_zero);
	tcase_add_test(tc, format_buffer_too_small);
	tcase_add_test(tc, parse_format_roundtrip_edges);
	suite_add_tcase(s, tc);
	tc = tcase_create("arith");
	tcase_add_test(tc, cash_product_exact);
	tcase_add_test(tc, cash_overflow);
	tcase_add_test(tc, add_checks_overflow);
	suite_add_tcase(s, tc);
	tc = tcase_create("cash128");
	tcase_add_test(tc, cash128_parse_format_edges);
	tcase_add_test(tc, format128_at_qty_digits);
	suite_add_tcase(s, tc);
	return s;
}

SHMEX_TEST_MAIN(shm_dec_suite)

/*
 * shm_opt_suite: the command-line number parser every shmex program uses
 * (shm/shm_opt.h): which forms it accepts, which it rejects and with what
 * error, and that a rejected argument never touches the output.
 */
#include "tests/shmex_test.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "shm/shm_opt.h"

static void ok64(const char *s, uint64_t min, uint64_t max, uint64_t want)
{
	uint64_t v = 777;
	int rc = shm_opt_u64(s, min, max, &v);
	ck_assert_msg(rc == 0, "\"%s\" in [%llu, %llu] rejected: %d", s,
		      (unsigned long long)min, (unsigned long long)max, rc);
	ck_assert_msg(v == want, "\"%s\" -> %llu, want %llu", s, (unsigned long long)v,
		      (unsigned long long)want);
}

static void bad64(const char *s, uint64_t min, uint64_t max, int want_rc)
{
	uint64_t v = 777;
	int rc = shm_opt_u64(s, min, max, &v);
	ck_assert_msg(rc == want_rc, "\"%s\" in [%llu, %llu]: got %d, want %d",
		      s ? s : "(null)", (unsigned long long)min, (unsigned long long)max,
		      rc, want_rc);
	ck_assert_msg(v == 777, "\"%s\": output written on error", s ? s : "(null)");
}

static void bad32(const char *s, uint32_t min, uint32_t max, int want_rc)
{
	uint32_t v = 777;
	int rc = shm_opt_u32(s, min, max, &v);
	ck_assert_msg(rc == want_rc, "\"%s\" in [%u, %u]: got %d, want %d", s, min, max,
		      rc, want_rc);
	ck_assert_msg(v == 777, "\"%s\": output written on error", s);
}

START_TEST(plain_decimals_are_accepted)
{
	ok64("0", 0, 10, 0);
	ok64("7", 0, 10, 7);
	ok64("10", 0, 10, 10);
	ok64("65535", 0, 65535, 65535);
	ok64("3600000", 1, 3600000, 3600000);
	/* Leading zeros are still decimal, not octal. */
	ok64("010", 0, 100, 10);
	ok64("0000", 0, 0, 0);
}
END_TEST

START_TEST(u64_edges)
{
	ok64("18446744073709551615", 0, UINT64_MAX, UINT64_MAX);
	ok64("18446744073709551614", 0, UINT64_MAX, UINT64_MAX - 1);
	/* One past UINT64_MAX overflows strtoull: out of range, not clamped. */
	bad64("18446744073709551616", 0, UINT64_MAX, -ERANGE);
	bad64("99999999999999999999999", 0, UINT64_MAX, -ERANGE);
}
END_TEST

START_TEST(syntax_errors_are_einval)
{
	static const char *const forms[] =
		{
			"",    "12x", "x12",  "-1",       "+1",  " 1",
			"1 ",  "\t1", "0x10", "1e3",      "1.0", "1,0",
			"--1", "-0",  "1\n",  "\xd9\xa1", /* ARABIC-INDIC DIGIT ONE: not an ASCII digit */
		};
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++)
		bad64(forms[i], 0, UINT64_MAX, -EINVAL);
	bad64(NULL, 0, UINT64_MAX, -EINVAL);
	/* Syntax is judged before range: "-1" is not "out of [0, max]". */
	bad64("-1", 5, 10, -EINVAL);
}
END_TEST

START_TEST(out_of_range_is_erange)
{
	bad64("0", 1, 10, -ERANGE);
	bad64("11", 1, 10, -ERANGE);
	bad64("4", 5, 5, -ERANGE);
	ok64("5", 5, 5, 5);
	bad64("65536", 0, 65535, -ERANGE);
}
END_TEST

START_TEST(u32_range_and_width)
{
	uint32_t v = 0;
	ck_assert_int_eq(shm_opt_u32("4294967295", 0, UINT32_MAX, &v), 0);
	ck_assert_uint_eq(v, UINT32_MAX);
	ck_assert_int_eq(shm_opt_u32("42", 2, 100, &v), 0);
	ck_assert_uint_eq(v, 42);
	/* Never truncated to 32 bits: 2^32 would wrap to 0. */
	bad32("4294967296", 0, UINT32_MAX, -ERANGE);
	bad32("1", 2, 100, -ERANGE);
	bad32("101", 2, 100, -ERANGE);
	bad32("12x", 0, UINT32_MAX, -EINVAL);
	bad32("-1", 0, UINT32_MAX, -EINVAL);
	bad32("", 0, UINT32_MAX, -EINVAL);
}
END_TEST

START_TEST(version_string_is_dotted)
{
	unsigned a, b, c;
	char tail;
	ck_assert_int_eq(sscanf(SHMEX_VERSION, "%u.%u.%u%c", &a, &b, &c, &tail), 3);
}
END_TEST

static Suite *shm_opt_suite(void)
{
	Suite *s = suite_create("shm_opt");
	TCase *tc = tcase_create("parse");
	tcase_add_test(tc, plain_decimals_are_accepted);
	tcase_add_test(tc, u64_edges);
	tcase_add_test(tc, syntax_errors_are_einval);
	tcase_add_test(tc, out_of_range_is_erange);
	tcase_add_test(tc, u32_range_and_width);
	suite_add_tcase(s, tc);
	tc = tcase_create("version");
	tcase_add_test(tc, version_string_is_dotted);
	suite_add_tcase(s, tc);
	return s;
}

SHMEX_TEST_MAIN(shm_opt_suite)

/*
 * shm_dec: exact fixed-point decimals (see shm_dec.h for the contract).
 *
 * Why it is shaped so: money and shares arrive as text from the network and
 * leave as text in replies; in between they are int64 multiples of 10^-d.
 * Parsing accumulates the magnitude in an unsigned 64-bit value, checking
 * every step for overflow, so no input can wrap; the sign is applied at the
 * end, which lets the most negative int64 parse exactly.  Multiplication
 * widens to 128 bits before checking the range.  Nothing here allocates,
 * reads a clock or touches shared state: every function is pure and may run
 * in any process or thread.
 *
 * Accepted text (decision recorded in docs/protocol.md):
 *   [+|-] digits [ '.' [digits] ]   or   [+|-] '.' digits
 * with at least one digit overall, so "125", "+3", "-0.0001", "0.5", ".5"
 * and "5." are all accepted (each has exactly one reading).  Leading zeros
 * are accepted.  Fractional digits beyond the scale are accepted only when
 * they are zeros ("1.50000" is exactly 1.5: nothing is rounded); a non-zero
 * digit beyond the scale ("1.00001" at 4 digits) is -EINVAL.  Everything else
 * is -EINVAL: empty text, a lone sign or '.', spaces anywhere, exponents,
 * hex, "inf"/"nan", a second '.', any other byte (NULs included).
 *
 * Limits: digits must be 0..18 (10^18 is the largest power of ten in an
 * int64); anything else is -EINVAL for parse and format.
 */
#include "shm/shm_dec.h"

#include <errno.h>
#include <string.h>

#include "shm/shm_error.h"

#define DEC_MAX_DIGITS 18

static uint64_t pow10_u64(int n)
{
	uint64_t p = 1;
	while (n-- > 0)
		p *= 10;
	return p;
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* mag = mag * 10 + d, false on uint64 overflow. */
static int mag_push(uint64_t *mag, unsigned d)
{
	uint64_t m;
	if (__builtin_mul_overflow(*mag, 10u, &m))
		return 0;
	if (__builtin_add_overflow(m, (uint64_t)d, &m))
		return 0;
	*mag = m;
	return 1;
}

/* The text of a decimal, split: sign, integer digits, and the fractional
 * digits that count at `digits` of scale (those beyond it must be zeros).
 * Syntax is checked over the whole text first, so that a syntax error is
 * always -EINVAL even when the digits before it would overflow. */
struct dec_text {
	int neg;
	size_t int_start, int_end; /* integer digits */
	size_t frac_start;         /* fractional digits */
	size_t frac_used;          /* of them, those within the scale */
};

static int dec_scan(const char *s, size_t len, size_t digits, struct dec_text *t)
{
	size_t i = 0;
	t->neg = 0;
	if (i < len && (s[i] == '+' || s[i] == '-')) {
		t->neg = s[i] == '-';
		i++;
	}
	t->int_start = i;
	while (i < len && is_digit(s[i]))
		i++;
	t->int_end = i;
	size_t frac_start = i, frac_end = i;
	if (i < len && s[i] == '.') {
		i++;
		frac_start = i;
		while (i < len && is_digit(s[i]))
			i++;
		frac_end = i;
	}
	if (i != len || (t->int_end == t->int_start && frac_end == frac_start))
		return -EINVAL;
	t->frac_start = frac_start;
	t->frac_used = frac_end - frac_start;
	if (t->frac_used > digits) {
		for (size_t k = frac_start + digits; k < frac_end; k++)
			if (s[k] != '0')
				return -EINVAL;
		t->frac_used = digits;
	}
	return 0;
}

int shm_dec_parse(const char *s, size_t len, int digits, int64_t *out)
{
	if (s == NULL || out == NULL || digits < 0 || digits > DEC_MAX_DIGITS)
		return -EINVAL;
	struct dec_text t;
	int rc = dec_scan(s, len, (size_t)digits, &t);
	if (rc)
		return rc;
	const size_t int_start = t.int_start, int_end = t.int_end,
		     frac_start = t.frac_start, frac_used = t.frac_used;
	const int neg = t.neg;

	uint64_t mag = 0;
	for (size_t k = int_start; k < int_end; k++)
		if (!mag_push(&mag, (unsigned)(s[k] - '0')))
			return SHMEX_EOVERFLOW;
	for (size_t k = 0; k < (size_t)digits; k++) {
		unsigned d = k < frac_used ? (unsigned)(s[frac_start + k] - '0') : 0;
		if (!mag_push(&mag, d))
			return SHMEX_EOVERFLOW;
	}

	if (neg) {
		if (mag > (uint64_t)INT64_MAX + 1)
			return SHMEX_EOVERFLOW;
		/* Two's complement negation of the magnitude, defined for 2^63.
		 */
		*out = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
	} else {
		if (mag > (uint64_t)INT64_MAX)
			return SHMEX_EOVERFLOW;
		*out = (int64_t)mag;
	}
	return 0;
}

int shm_dec_format(char *buf, size_t len, int64_t v, int digits)
{
	if (buf == NULL || digits < 0 || digits > DEC_MAX_DIGITS)
		return -EINVAL;

	uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
	uint64_t scale = pow10_u64(digits);
	uint64_t ip = mag / scale, fp = mag % scale;

	/* Built backwards into tmp: fraction (trailing zeros dropped), '.',
	 * integer part, sign.  At most 1 + 20 + 1 + 18 bytes. */
	char tmp[48];
	size_t n = 0;
	if (fp != 0) {
		int fd = digits;
		while (fp % 10 == 0) {
			fp /= 10;
			fd--;
		}
		while (fd-- > 0) {
			tmp[n++] = (char)('0' + fp % 10);
			fp /= 10;
		}
		tmp[n++] = '.';
	}
	do {
		tmp[n++] = (char)('0' + ip % 10);
		ip /= 10;
	} while (ip != 0);
	if (v < 0)
		tmp[n++] = '-';

	if (n + 1 > len)
		return -ENOSPC;
	for (size_t k = 0; k < n; k++)
		buf[k] = tmp[n - 1 - k];
	buf[n] = '\0';
	return (int)n;
}

int shm_dec_cash(int64_t qty, int64_t price, int64_t *cash)
{
	/* QTY (10^4) x PRICE (10^4) = CASH (10^8): the raw product is already
	 * at the cash scale, so only the range needs checking. */
	_Static_assert(SHM_QTY_DIGITS + SHM_PRICE_DIGITS == SHM_CASH_DIGITS,
		       "qty x price must land exactly on the cash scale");
	__int128 p = (__int128)qty * (__int128)price;
	if (p > INT64_MAX || p < INT64_MIN)
		return SHMEX_EOVERFLOW;
	*cash = (int64_t)p;
	return 0;
}

int shm_dec_add(int64_t *acc, int64_t v)
{
	int64_t r;
	if (__builtin_add_overflow(*acc, v, &r))
		return SHMEX_EOVERFLOW;
	*acc = r;
	return 0;
}

int shm_dec_parse_cash(const char *s, size_t len, shm_cash_t *out)
{
	if (s == NULL || out == NULL)
		return -EINVAL;
	/* Accumulated in unsigned 128 bits with a bound check after every
	 * digit (SHM_CASH_INPUT_MAX < 2^87, so nothing can wrap before the
	 * check fires). */
	struct dec_text t;
	int rc = dec_scan(s, len, SHM_CASH_DIGITS, &t);
	if (rc)
		return rc;
	const size_t int_start = t.int_start, int_end = t.int_end,
		     frac_start = t.frac_start, frac_used = t.frac_used;
	const int neg = t.neg;
	const unsigned __int128 max = (unsigned __int128)SHM_CASH_INPUT_MAX;
	unsigned __int128 mag = 0;
	for (size_t k = int_start; k < int_end; k++) {
		mag = mag * 10 + (unsigned)(s[k] - '0');
		if (mag > max)
			return SHMEX_ECASHRANGE;
	}
	for (size_t k = 0; k < SHM_CASH_DIGITS; k++) {
		unsigned d = k < frac_used ? (unsigned)(s[frac_start + k] - '0') : 0;
		mag = mag * 10 + d;
		if (mag > max)
			return SHMEX_ECASHRANGE;
	}
	*out = neg ? -(shm_cash_t)mag : (shm_cash_t)mag;
	return 0;
}

int shm_dec_format128(char *buf, size_t len, __int128 v, int digits)
{
	if (buf == NULL || digits < 0 || digits > 18)
		return -EINVAL;
	uint64_t one = 1;
	for (int i = 0; i < digits; i++)
		one *= 10;
	unsigned __int128 mag = v < 0 ? (unsigned __int128)0 - (unsigned __int128)v
				      : (unsigned __int128)v;
	uint64_t ip_lo;
	unsigned __int128 ip = mag / one;
	uint64_t fp = (uint64_t)(mag % one);
	/* Built backwards as in shm_dec_format: at most 1 + 39 + 1 + 18. */
	char tmp[64];
	size_t n = 0;
	if (fp != 0) {
		int fd = digits;
		while (fp % 10 == 0) {
			fp /= 10;
			fd--;
		}
		while (fd-- > 0) {
			tmp[n++] = (char)('0' + fp % 10);
			fp /= 10;
		}
		tmp[n++] = '.';
	}
	do {
		ip_lo = (uint64_t)(ip % 10);
		tmp[n++] = (char)('0' + ip_lo);
		ip /= 10;
	} while (ip != 0);
	if (v < 0)
		tmp[n++] = '-';
	if (n + 1 > len)
		return -ENOSPC;
	for (size_t k = 0; k < n; k++)
		buf[k] = tmp[n - 1 - k];
	buf[n] = '\0';
	return (int)n;
}

int shm_dec_format_cash(char *buf, size_t len, shm_cash_t v)
{
	return shm_dec_format128(buf, len, v, SHM_CASH_DIGITS);
}

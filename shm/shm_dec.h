/*
 * shm_dec: exact fixed-point decimals for money and shares.
 *
 * Never floating point.  Three scales, fixed for the whole project:
 *   amounts (shares)  SHM_QTY_DIGITS   = 4 fractional digits  (x 10^4)
 *   prices            SHM_PRICE_DIGITS = 4 fractional digits  (x 10^4)
 *   cash (balances)   SHM_CASH_DIGITS  = 8 fractional digits  (x 10^8)
 * so amount x price is exactly representable as cash (4 + 4 = 8 digits).
 * Each is an int64_t; the range of cash is therefore +-92,233,720,368.
 * Text with more significant fractional digits than the scale, values out of
 * range, or anything but [+-]digits[.digits] is rejected, never rounded
 * (".5" and "5." are accepted; see shm_dec.c and docs/protocol.md).
 * Multiplication uses 128-bit intermediates and reports overflow.
 */
#ifndef SHMEX_SHM_DEC_H
#define SHMEX_SHM_DEC_H

#include <stddef.h>
#include <stdint.h>

#define SHM_QTY_DIGITS 4
#define SHM_PRICE_DIGITS 4
#define SHM_CASH_DIGITS 8
#define SHM_QTY_ONE INT64_C(10000)
#define SHM_PRICE_ONE INT64_C(10000)
#define SHM_CASH_ONE INT64_C(100000000)

/* Parses len bytes of text (no terminator needed) with the given number of
 * fractional digits.  Accepts an optional sign, digits, and an optional '.'
 * followed by at most `digits` digits; at least one digit overall.  No
 * spaces, exponents, hex, or "inf".  Extra fractional digits are accepted
 * only when they are zeros (exact, nothing is rounded).  Returns 0, -EINVAL
 * (syntax, non-zero digit beyond the scale, digits outside 0..18) or
 * SHMEX_EOVERFLOW (out of int64 range). */
int shm_dec_parse(const char *s, size_t len, int digits, int64_t *out)
	__attribute__((warn_unused_result));

/* Writes the shortest exact decimal ("125", "125.5", "-0.0001") and a NUL.
 * Returns the length, or -ENOSPC when buf is too small (32 always fits). */
int shm_dec_format(char *buf, size_t len, int64_t v, int digits);

/* cash = qty x price (QTY and PRICE scales in, CASH scale out), exact;
 * SHMEX_EOVERFLOW when the product does not fit. */
int shm_dec_cash(int64_t qty, int64_t price, int64_t *cash)
	__attribute__((warn_unused_result));

/* *acc += v, SHMEX_EOVERFLOW (and *acc unchanged) on overflow. */
int shm_dec_add(int64_t *acc, int64_t v) __attribute__((warn_unused_result));

#endif

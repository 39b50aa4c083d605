/*
 * shm_dec: exact fixed-point decimals for money and shares.
 *
 * Never floating point.  Three scales, fixed for the whole project:
 *   amounts (shares)  SHM_QTY_DIGITS   = 4 fractional digits  (x 10^4)
 *   prices            SHM_PRICE_DIGITS = 4 fractional digits  (x 10^4)
 *   cash (balances)   SHM_CASH_DIGITS  = 8 fractional digits  (x 10^8)
 * so amount x price is exactly representable as cash (4 + 4 = 8 digits).
 * Amounts and prices are int64_t.  Cash that accumulates (balances,
 * reservations, deposits, totals) is shm_cash_t, a signed 128-bit integer
 * at the same scale: its range is +-1.7 x 10^30 dollars, so no sum of
 * deposits a run can make reaches it.  The cash of one order or one fill
 * (qty x price) is still an int64 (at most 92,233,720,368.54775807
 * dollars): a buy reserving more is refused, and every fill's cash is
 * bounded by the buyer's reservation.  Cash from the network (a balance)
 * is accepted up to SHM_CASH_INPUT_MAX.
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

/* Accumulated cash, CASH scale (see above). */
typedef __int128 shm_cash_t;
/* Largest cash value accepted as text from outside (a balance in a
 * create request): 10^18 dollars, i.e. 10^26 units.  A million times the
 * 10^12 dollar balances of load clients, and 10^12 such deposits still
 * fit in a shm_cash_t. */
#define SHM_CASH_INPUT_MAX ((shm_cash_t)1000000000000000000 * 100000000)

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

/* Cash text: as shm_dec_parse at SHM_CASH_DIGITS, into a shm_cash_t.
 * SHMEX_ECASHRANGE when the magnitude passes SHM_CASH_INPUT_MAX (never
 * SHMEX_EOVERFLOW: nothing overflows, the value is beyond the limit). */
int shm_dec_parse_cash(const char *s, size_t len, shm_cash_t *out)
	__attribute__((warn_unused_result));

/* shm_dec_format for a shm_cash_t at SHM_CASH_DIGITS.  Returns the length
 * or -ENOSPC (SHM_DEC_CASH_BUF always fits). */
#define SHM_DEC_CASH_BUF 48
int shm_dec_format_cash(char *buf, size_t len, shm_cash_t v);

/* shm_dec_format for a 128-bit value (cash, share totals and positions)
 * at `digits` (0..18) fractional digits.  Returns the length, -EINVAL or
 * -ENOSPC (SHM_DEC_128_BUF always fits). */
#define SHM_DEC_128_BUF 64
int shm_dec_format128(char *buf, size_t len, __int128 v, int digits);

/* cash = qty x price (QTY and PRICE scales in, CASH scale out), exact;
 * SHMEX_EOVERFLOW when the product does not fit. */
int shm_dec_cash(int64_t qty, int64_t price, int64_t *cash)
	__attribute__((warn_unused_result));

/* *acc += v, SHMEX_EOVERFLOW (and *acc unchanged) on overflow. */
int shm_dec_add(int64_t *acc, int64_t v) __attribute__((warn_unused_result));

#endif

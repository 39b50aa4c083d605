/*
 * gw_frame_suite: the length-line framing parser, fed in every way a socket
 * can deliver bytes.
 */
#include "tests/shmex_test.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "gateway/gw_frame.h"
#include "shm/shm_error.h"

/* The handout's example, byte for byte. */
static const char handout[] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
			      "<create>\n"
			      "  <account id=\"123456\" balance=\"1000\"/>\n"
			      "  <symbol sym=\"SPY\">\n"
			      "    <account id=\"123456\">100000</account>\n"
			      "  </symbol>\n"
			      "</create>\n";

#define MAXREQ 16

struct got {
	int n;
	size_t len[MAXREQ];
	char body[MAXREQ][4096];
	int err;
};

/* Feeds data in pieces of `step` bytes (0: all at once), collecting every
 * request; stops at the first error. */
static void feed_all(struct gw_frame *f, const char *data, size_t len, size_t step,
		     struct got *g)
{
	memset(g, 0, sizeof(*g));
	size_t off = 0;
	while (off < len) {
		size_t piece = step ? step : len;
		if (piece > len - off)
			piece = len - off;
		size_t pos = 0;
		while (pos < piece) {
			size_t used = 99999;
			const char *req = NULL;
			size_t req_len = 0;
			int rc = gw_frame_feed(f, data + off + pos, piece - pos, &used,
					       &req, &req_len);
			ck_assert_uint_le(used, piece - pos);
			pos += used;
			if (rc < 0) {
				g->err = rc;
				return;
			}
			if (rc == 1) {
				ck_assert_int_lt(g->n, MAXREQ);
				ck_assert_uint_le(req_len, sizeof(g->body[0]));
				memcpy(g->body[g->n], req, req_len);
				g->len[g->n++] = req_len;
			} else {
				ck_assert_int_eq(rc, 0);
				ck_assert_uint_eq(pos, piece);
			}
		}
		off += piece;
	}
}

static size_t frame(char *out, size_t cap, const char *body, const char *eol)
{
	int n = snprintf(out, cap, "%zu%s%s", strlen(body), eol, body);
	ck_assert(n > 0 && (size_t)n < cap);
	return (size_t)n;
}

START_TEST(handout_example_is_173_bytes)
{
	ck_assert_uint_eq(strlen(handout), 173);
	char buf[512];
	size_t n = frame(buf, sizeof(buf), handout, "\n");
	ck_assert(memcmp(buf, "173\n", 4) == 0);

	struct gw_frame f;
	ck_assert_int_eq(gw_frame_init(&f, 0), 0);
	size_t used;
	const char *req;
	size_t req_len;
	ck_assert_int_eq(gw_frame_feed(&f, buf, n, &used, &req, &req_len), 1);
	ck_assert_uint_eq(used, n);
	ck_assert_uint_eq(req_len, 173);
	/* one feed holding the whole body: no copy, no allocation */
	ck_assert_ptr_eq(req, buf + 4);
	ck_assert_ptr_null(f.buf);
	ck_assert(!gw_frame_in_request(&f));
	gw_frame_free(&f);
}
END_TEST

START_TEST(one_byte_feeds)
{
	char buf[2048];
	size_t n = frame(buf, sizeof(buf), handout, "\n");
	n += frame(buf + n, sizeof(buf) - n, "<transactions id=\"1\"/>", "\r\n");
	n += frame(buf + n, sizeof(buf) - n, handout, "\n");

	struct gw_frame f;
	struct got g;
	ck_assert_int_eq(gw_frame_init(&f, 0), 0);
	feed_all(&f, buf, n, 1, &g);
	ck_assert_int_eq(g.err, 0);
	ck_assert_int_eq(g.n, 3);
	ck_assert_uint_eq(g.len[0], 173);
	ck_assert(memcmp(g.body[0], handout, 173) == 0);
	ck_assert_uint_eq(g.len[1], 22);
	ck_assert(memcmp(g.body[1], "<transactions id=\"1\"/>", 22) == 0);
	ck_assert(memcmp(g.body[2], handout, 173) == 0);
	ck_assert_uint_eq(f.requests, 3);
	gw_frame_free(&f);
}
END_TEST

START_TEST(back_to_back_in_one_buffer)
{
	char buf[2048];
	size_t n = 0;
	const char *bodies[] = {"<a/>", handout, "<create></create>", "x"};
	for (int i = 0; i < 4; i++)
		n += frame(buf + n, sizeof(buf) - n, bodies[i], "\n");

	struct gw_frame f;
	ck_assert_int_eq(gw_frame_init(&f, 0), 0);
	size_t pos = 0;
	for (int i = 0; i < 4; i++) {
		size_t used;
		const char *req;
		size_t req_len;
		ck_assert_int_eq(
			gw_frame_feed(&f, buf + pos, n - pos, &used, &req, &req_len), 1);
		pos += used;
		ck_assert_uint_eq(req_len, strlen(bodies[i]));
		ck_assert(memcmp(req, bodies[i], req_len) == 0);
	}
	ck_assert_uint_eq(pos, n);
	size_t used;
	const char *req;
	size_t req_len;
	ck_assert_int_eq(gw_frame_feed(&f, buf + n, 0, &used, &req, &req_len), 0);
	ck_assert_uint_eq(used, 0);
	ck_assert_ptr_null(f.buf);
	gw_frame_free(&f);
}
END_TEST

START_TEST(every_split_point)
{
	char buf[2048];
	size_t n = frame(buf, sizeof(buf), handout, "\r\n");
	n += frame(buf + n, sizeof(buf) - n, "<q/>", "\n");
	for (size_t cut = 0; cut <= n; cut++) {
		struct gw_frame f;
		ck_assert_int_eq(gw_frame_init(&f, 0), 0);
		struct got g1, g2;
		feed_all(&f, buf, cut, 0, &g1);
		feed_all(&f, buf + cut, n - cut, 0, &g2);
		ck_assert_int_eq(g1.err, 0);
		ck_assert_int_eq(g2.err, 0);
		ck_assert_int_eq(g1.n + g2.n, 2);
		const char *first = g1.n ? g1.body[0] : g2.body[0];
		ck_assert(memcmp(first, handout, 173) == 0);
		const char *second = g1.n == 2 ? g1.body[1] : g2.body[g2.n - 1];
		ck_assert(memcmp(second, "<q/>", 4) == 0);
		gw_frame_free(&f);
	}
}
END_TEST

START_TEST(crlf_and_blanks_are_tolerated)
{
	/* CRLF, blanks after the digits, blank lines between requests (a
	 * trailing newline the client did not count) */
	static const char s[] = "4\r\n<a/>\n\r\n3 \t\r\n<b>  \n\n2\n<c";
	struct gw_frame f;
	struct got g;
	ck_assert_int_eq(gw_frame_init(&f, 0), 0);
	feed_all(&f, s, sizeof(s) - 1, 0, &g);
	ck_assert_int_eq(g.err, 0);
	ck_assert_int_eq(g.n, 3);
	ck_assert(memcmp(g.body[0], "<a/>", 4) == 0);
	ck_assert(memcmp(g.body[1], "<b>", 3) == 0);
	ck_assert(memcmp(g.body[2], "<c", 2) == 0);
	gw_frame_free(&f);
}
END_TEST

START_TEST(zero_length_request)
{
	struct gw_frame f;
	struct got g;
	ck_assert_int_eq(gw_frame_init(&f, 0), 0);
	feed_all(&f, "0\n1\nx", 5, 0, &g);
	ck_assert_int_eq(g.err, 0);
	ck_assert_int_eq(g.n, 2);
	ck_assert_uint_eq(g.len[0], 0);
	ck_assert_uint_eq(g.len[1], 1);
	gw_frame_free(&f);
}
END_TEST

static int first_error(const char *s, size_t max, size_t step)
{
	struct gw_frame f;
	struct got g;
	ck_assert_int_eq(gw_frame_init(&f, max), 0);
	feed_all(&f, s, strlen(s), step, &g);
	ck_assert_int_eq(g.n, 0);
	ck_assert_ptr_null(f.buf);
	gw_frame_free(&f);
	return g.err;
}

START_TEST(length_not_a_number)
{
	static const char *const bad[] = {
		"<?xml version=\"1.0\"?>\n",
		"12a\n",
		"-5\n",
		"+5\n",
		"1 2\n",
		"12\r3\n",
		"0x10\n",
		"1e3\n",
		"12\r\r\n",
		"abc",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_int_eq(first_error(bad[i], 0, 0), SHMEX_EBADLENGTH);
		ck_assert_int_eq(first_error(bad[i], 0, 1), SHMEX_EBADLENGTH);
	}
	/* the NUL case needs its explicit length */
	struct gw_frame f;
	size_t used;
	const char *req;
	size_t req_len;
	ck_assert_int_eq(gw_frame_init(&f, 0), 0);
	ck_assert_int_eq(gw_frame_feed(&f, "5\0\n", 3, &used, &req, &req_len),
			 SHMEX_EBADLENGTH);
	gw_frame_free(&f);
}
END_TEST

START_TEST(length_too_many_digits)
{
	ck_assert_int_eq(first_error("00000000001\n", 0, 0), SHMEX_ELENGTHDIGITS);
	ck_assert_int_eq(first_error("00000000001\n", 0, 1), SHMEX_ELENGTHDIGITS);
	/* ten digits are fine */
	struct gw_frame f;
	struct got g;
	ck_assert_int_eq(gw_frame_init(&f, 0), 0);
	feed_all(&f, "0000000002\nab", 13, 0, &g);
	ck_assert_int_eq(g.err, 0);
	ck_assert_int_eq(g.n, 1);
	ck_assert_uint_eq(g.len[0], 2);
	gw_frame_free(&f);
}
END_TEST

START_TEST(length_above_max_rejected_before_body)
{
	ck_assert_int_eq(first_error("1001\n", 1000, 0), SHMEX_ETOOBIG);
	ck_assert_int_eq(first_error("1048577\n", 0, 0), SHMEX_ETOOBIG);
	ck_assert_int_eq(first_error("99999999999999999999999\n", 0, 0), SHMEX_ETOOBIG);

	/* detected as soon as the digits exceed the maximum: no newline, no
	 * body byte needed */
	struct gw_frame f;
	size_t used;
	const char *req;
	size_t req_len;
	ck_assert_int_eq(gw_frame_init(&f, 1000), 0);
	ck_assert_int_eq(gw_frame_feed(&f, "100", 3, &used, &req, &req_len), 0);
	ck_assert(gw_frame_in_request(&f));
	ck_assert_int_eq(gw_frame_feed(&f, "1", 1, &used, &req, &req_len), SHMEX_ETOOBIG);
	ck_assert_ptr_null(f.buf);
	gw_frame_free(&f);

	/* exactly the maximum is accepted */
	static char big[1000 + 16];
	int n = snprintf(big, sizeof(big), "1000\n");
	memset(big + n, 'x', 1000);
	struct got g;
	ck_assert_int_eq(gw_frame_init(&f, 1000), 0);
	feed_all(&f, big, (size_t)n + 1000, 7, &g);
	ck_assert_int_eq(g.err, 0);
	ck_assert_int_eq(g.n, 1);
	ck_assert_uint_eq(g.len[0], 1000);
	ck_assert_uint_le(f.cap, 1000);
	gw_frame_free(&f);
}
END_TEST

START_TEST(errors_are_sticky)
{
	struct gw_frame f;
	size_t used = 5;
	const char *req;
	size_t req_len;
	ck_assert_int_eq(gw_frame_init(&f, 0), 0);
	ck_assert_int_eq(gw_frame_feed(&f, "x\n3\nabc", 7, &used, &req, &req_len),
			 SHMEX_EBADLENGTH);
	ck_assert_uint_eq(used, 0);
	ck_assert_int_eq(gw_frame_feed(&f, "3\nabc", 5, &used, &req, &req_len),
			 SHMEX_EBADLENGTH);
	ck_assert_uint_eq(used, 0);
	ck_assert_int_eq(f.state, GW_FRAME_FAILED);
	gw_frame_free(&f);
}
END_TEST

START_TEST(in_request_tracks_partial_requests)
{
	struct gw_frame f;
	size_t used;
	const char *req;
	size_t req_len;
	ck_assert_int_eq(gw_frame_init(&f, 0), 0);
	ck_assert(!gw_frame_in_request(&f));
	ck_assert_int_eq(gw_frame_feed(&f, "\r\n\n ", 4, &used, &req, &req_len), 0);
	ck_assert(!gw_frame_in_request(&f)); /* blanks start nothing */
	ck_assert_int_eq(gw_frame_feed(&f, "1", 1, &used, &req, &req_len), 0);
	ck_assert(gw_frame_in_request(&f));
	ck_assert_int_eq(gw_frame_feed(&f, "0\nabc", 5, &used, &req, &req_len), 0);
	ck_assert(gw_frame_in_request(&f));
	ck_assert_int_eq(gw_frame_feed(&f, "defghij", 7, &used, &req, &req_len), 1);
	ck_assert_uint_eq(req_len, 10);
	ck_assert(memcmp(req, "abcdefghij", 10) == 0);
	ck_assert(!gw_frame_in_request(&f));
	gw_frame_free(&f);
}
END_TEST

START_TEST(large_split_body_is_buffered_then_released)
{
	const size_t body = 300000;
	static char data[300000 + 32];
	int n = snprintf(data, sizeof(data), "%zu\n", body);
	for (size_t i = 0; i < body; i++)
		data[n + i] = (char)('a' + i % 26);
	struct gw_frame f;
	ck_assert_int_eq(gw_frame_init(&f, 0), 0);
	size_t pos = 0, total = (size_t)n + body;
	const char *req = NULL;
	size_t req_len = 0;
	int rc = 0;
	while (pos < total) {
		size_t used;
		size_t piece = total - pos < 1000 ? total - pos : 1000;
		rc = gw_frame_feed(&f, data + pos, piece, &used, &req, &req_len);
		ck_assert_int_ge(rc, 0);
		pos += used;
		/* the buffer grows with the bytes that arrived */
		ck_assert_uint_le(f.cap, 2 * (pos + 4096));
	}
	ck_assert_int_eq(rc, 1);
	ck_assert_uint_eq(req_len, body);
	ck_assert(memcmp(req, data + n, body) == 0);
	ck_assert_uint_le(f.cap, body);
	/* the next feed drops the big buffer */
	size_t used;
	ck_assert_int_eq(gw_frame_feed(&f, "", 0, &used, &req, &req_len), 0);
	ck_assert_ptr_null(f.buf);
	gw_frame_free(&f);
}
END_TEST

START_TEST(init_rejects_absurd_max)
{
	struct gw_frame f;
	ck_assert_int_eq(gw_frame_init(&f, GW_FRAME_MAX_LIMIT + 1), -EINVAL);
	ck_assert_int_eq(gw_frame_init(&f, GW_FRAME_MAX_LIMIT), 0);
	ck_assert_uint_eq(f.max_len, GW_FRAME_MAX_LIMIT);
	ck_assert_int_eq(gw_frame_init(&f, 0), 0);
	ck_assert_uint_eq(f.max_len, GW_FRAME_MAX_DEFAULT);
}
END_TEST

static Suite *gw_frame_suite(void)
{
	Suite *s = suite_create("gw_frame");
	TCase *tc = tcase_create("requests");
	tcase_add_test(tc, handout_example_is_173_bytes);
	tcase_add_test(tc, one_byte_feeds);
	tcase_add_test(tc, back_to_back_in_one_buffer);
	tcase_add_test(tc, every_split_point);
	tcase_add_test(tc, crlf_and_blanks_are_tolerated);
	tcase_add_test(tc, zero_length_request);
	tcase_add_test(tc, in_request_tracks_partial_requests);
	tcase_add_test(tc, large_split_body_is_buffered_then_released);
	suite_add_tcase(s, tc);
	tc = tcase_create("errors");
	tcase_add_test(tc, length_not_a_number);
	tcase_add_test(tc, length_too_many_digits);
	tcase_add_test(tc, length_above_max_rejected_before_body);
	tcase_add_test(tc, errors_are_sticky);
	tcase_add_test(tc, init_rejects_absurd_max);
	suite_add_tcase(s, tc);
	return s;
}

SHMEX_TEST_MAIN(gw_frame_suite)

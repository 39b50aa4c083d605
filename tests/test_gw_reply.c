/*
 * gw_reply_suite: <results> documents, escaping, numbers, framing, limits.
 */
#include "tests/shmex_test.h"

#include <errno.h>
#include <expat.h>
#include <stdio.h>
#include <string.h>

#include "gateway/gw_reply.h"
#include "gateway/gw_xml.h"
#include "shm/shm_dec.h"
#include "shm/shm_error.h"

#define DECL "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"

static struct gw_reply R;

static void setup(void)
{
	gw_reply_init(&R, 0, false);
	gw_reply_begin(&R);
}

static void teardown(void)
{
	gw_reply_free(&R);
}

static struct gw_str S(const char *s) {
	struct gw_str v = {s, s ? strlen(s) : 0};
	return v;
}

static void
finish_is(const char *want)
{
	const char *out;
	size_t len;
	int rc = gw_reply_finish(&R, &out, &len);
	ck_assert_msg(rc == 0, "finish: %s", shmex_errname(rc));
	ck_assert_msg(len == strlen(want) && memcmp(out, want, len) == 0,
		      "got:\n%.*s\nwant:\n%s", (int)len, out, want);
}

START_TEST(empty_results)
{
	finish_is(DECL "<results/>\n");
	/* begin starts over */
	gw_reply_begin(&R);
	gw_reply_created(&R, S("1"));
	gw_reply_begin(&R);
	finish_is(DECL "<results/>\n");
}
END_TEST

START_TEST(created_and_opened)
{
	gw_reply_created(&R, S("123456"));
	gw_reply_created_sym(&R, S("SPY"), S("123456"));
	gw_reply_opened(&R, S("SPY"), S("100"), S("145.67"), 42);
	gw_reply_opened(&R, S("X"), S("-0.50"), S("1"), UINT64_MAX);
	finish_is(DECL "<results>\n"
		       "  <created id=\"123456\"/>\n"
		       "  <created sym=\"SPY\" id=\"123456\"/>\n"
		       "  <opened sym=\"SPY\" amount=\"100\" limit=\"145.67\" "
		       "id=\"42\"/>\n"
		       "  <opened sym=\"X\" amount=\"-0.50\" limit=\"1\" "
		       "id=\"18446744073709551615\"/>\n"
		       "</results>\n");
}
END_TEST

START_TEST(status_and_canceled_with_shortest_numbers)
{
	gw_reply_status_begin(&R, S("7"));
	gw_reply_open(&R, 1255000);
	gw_reply_executed(&R, 2000000, 1270000, 1700000000);
	gw_reply_executed(&R, 1, 1250001, 1700000001);
	gw_reply_status_end(&R);
	gw_reply_cancel_begin(&R, S("1"));
	gw_reply_canceled_part(&R, 1000000, 1700000002);
	gw_reply_executed(&R, 2000000, 1250000, 1700000000);
	gw_reply_cancel_end(&R);
	gw_reply_status_begin(&R, S("9"));
	gw_reply_status_end(&R);
	finish_is(DECL
		  "<results>\n"
		  "  <status id=\"7\">\n"
		  "    <open shares=\"125.5\"/>\n"
		  "    <executed shares=\"200\" price=\"127\" time=\"1700000000\"/>\n"
		  "    <executed shares=\"0.0001\" price=\"125.0001\" "
		  "time=\"1700000001\"/>\n"
		  "  </status>\n"
		  "  <canceled id=\"1\">\n"
		  "    <canceled shares=\"100\" time=\"1700000002\"/>\n"
		  "    <executed shares=\"200\" price=\"125\" time=\"1700000000\"/>\n"
		  "  </canceled>\n"
		  "  <status id=\"9\">\n"
		  "  </status>\n"
		  "</results>\n");
}
END_TEST

START_TEST(errors_with_attributes_and_reasons)
{
	static const char *const names[] = {"sym", "amount", "limit"};
	struct gw_str v[3] = {S("SPY"), S("0"), {NULL, 0}};
	gw_reply_error(&R, names, v, 3, SHMEX_EBADAMOUNT, "zero amount");
	gw_reply_error(&R, names, v, 1, SHMEX_ENOFUNDS, NULL);
	/* A system error or an operator-only code means nothing to a
	 * client: it reads "Internal error", never "ring indexes are
	 * corrupted" or an errno text. */
	gw_reply_error(&R, NULL, NULL, 0, -ENOENT, NULL);
	gw_reply_error(&R, NULL, NULL, 0, SHMEX_ERINGCORRUPT, NULL);
	gw_reply_error(&R, NULL, NULL, 0, SHMEX_ENOREADERSLOT, NULL);
	finish_is(DECL
		  "<results>\n"
		  "  <error sym=\"SPY\" amount=\"0\">Invalid amount: zero amount"
		  "</error>\n"
		  "  <error sym=\"SPY\">Insufficient funds</error>\n"
		  "  <error>Internal error</error>\n"
		  "  <error>Internal error</error>\n"
		  "  <error>Too many concurrent readers of the book, try again</error>\n"
		  "</results>\n");
}
END_TEST

/* Every code has a wire text; the ones a client can cause or act on have
 * their own, and the operator's table never leaks into a reply. */
START_TEST(every_code_has_a_wire_text)
{
	int own = 0;
	for (int i = 0; i < SHMEX_ERR_COUNT; i++) {
		int code = shmex_err_at(i);
		const char *t = gw_reply_text(code);
		ck_assert_ptr_nonnull(t);
		ck_assert_uint_gt(strlen(t), 3);
		own += strcmp(t, "Internal error") != 0;
	}
	ck_assert_int_gt(own, 25);
	ck_assert_str_eq(gw_reply_text(SHMEX_EBADMAGIC), "Internal error");
	ck_assert_str_eq(gw_reply_text(SHMEX_ENOFUNDS), "Insufficient funds");
	ck_assert_str_eq(gw_reply_text(SHMEX_EBUSY), "Exchange busy, try again");
	ck_assert_str_eq(gw_reply_text(0), "Internal error");
	/* A grant past a symbol's share limit says so, not "Numeric overflow". */
	ck_assert_ptr_nonnull(strstr(gw_reply_text(SHMEX_ESHARESRANGE), "out of range"));
}
END_TEST

START_TEST(escaping_of_echoed_values)
{
	gw_reply_created(&R, S("a&b<c>\"d'e"));
	gw_reply_created(&R, S("tab\there\nnl\rcr\x01x"));
	static const char *const n[] = {"id"};
	struct gw_str v[1] = {S("<&>")};
	gw_reply_error(&R, n, v, 1, SHMEX_ENOORDER, "x < y & \"z\"\n");
	finish_is(DECL "<results>\n"
		       "  <created id=\"a&amp;b&lt;c&gt;&quot;d&apos;e\"/>\n"
		       "  <created id=\"tab&#9;here&#10;nl&#13;cr?x\"/>\n"
		       "  <error id=\"&lt;&amp;&gt;\">Order does not exist: "
		       "x &lt; y &amp; &quot;z&quot;\n</error>\n"
		       "</results>\n");
}
END_TEST

/* The reply parses back, and the escaped value decodes to the original. */
struct rt {
	char id[64];
	int elems;
};

static void XMLCALL rt_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
	struct rt *rt = ud;
	rt->elems++;
	for (int i = 0; atts[i]; i += 2)
		if (strcmp(atts[i], "id") == 0)
			snprintf(rt->id, sizeof(rt->id), "%s", atts[i + 1]);
}

START_TEST(escaped_reply_round_trips_through_expat)
{
	const char *nasty = "q\"uo'te<&>\t\n\r end";
	gw_reply_created(&R, S(nasty));
	const char *out;
	size_t len;
	ck_assert_int_eq(gw_reply_finish(&R, &out, &len), 0);
	XML_Parser xp = XML_ParserCreate(NULL);
	struct rt rt = {{0}, 0};
	XML_SetUserData(xp, &rt);
	XML_SetStartElementHandler(xp, rt_start);
	ck_assert_int_eq(XML_Parse(xp, out, (int)len, 1), XML_STATUS_OK);
	XML_ParserFree(xp);
	ck_assert_int_eq(rt.elems, 2);
	ck_assert_str_eq(rt.id, nasty);
}
END_TEST

START_TEST(items_from_a_parsed_request)
{
	struct gw_xml_parser *p;
	struct gw_xml_req req;
	ck_assert_int_eq(gw_xml_parser_create(&p, NULL), 0);
	gw_xml_req_init(&req);
	const char *doc = "<transactions id=\"1\">"
			  "<order sym=\"SPY\" amount=\"0\" limit=\"1&amp;2\"/>"
			  "<order sym=\"SPY\" amount=\"100\" limit=\"145.67\"/>"
			  "<query id=\"x\"/>"
			  "<cancel id=\"5\"/>"
			  "<weird a=\"1\"/>"
			  "</transactions>";
	ck_assert_int_eq(gw_xml_parse(p, doc, strlen(doc), &req), 0);
	ck_assert_uint_eq(req.nitems, 5);
	gw_reply_item_error(&R, &req, &req.items[0], 0, NULL);
	gw_reply_item_opened(&R, &req, &req.items[1], 3);
	gw_reply_item_error(&R, &req, &req.items[2], 0, NULL);
	gw_reply_item_error(&R, &req, &req.items[3], SHMEX_ENOTOWNER, NULL);
	gw_reply_item_error(&R, &req, &req.items[4], 0, NULL);
	finish_is(DECL
		  "<results>\n"
		  "  <error sym=\"SPY\" amount=\"0\" limit=\"1&amp;2\">"
		  "Invalid amount: zero amount</error>\n"
		  "  <opened sym=\"SPY\" amount=\"100\" limit=\"145.67\" id=\"3\"/>\n"
		  "  <error id=\"x\">Invalid order id: not a decimal number</error>\n"
		  "  <error id=\"5\">Order belongs to another account</error>\n"
		  "  <error>Unknown element: &lt;weird&gt;</error>\n"
		  "</results>\n");

	const char *cdoc = "<create><account id=\"007\" balance=\"1\"/>"
			   "<symbol sym=\"T5asdf\"><account id=\"8\">1</account>"
			   "</symbol><account balance=\"1\"/>"
			   "<symbol sym=\"BAD!\"><account id=\"8\">1</account>"
			   "</symbol></create>";
	ck_assert_int_eq(gw_xml_parse(p, cdoc, strlen(cdoc), &req), 0);
	ck_assert_uint_eq(req.nitems, 4);
	gw_reply_begin(&R);
	gw_reply_item_created(&R, &req, &req.items[0]);
	gw_reply_item_created(&R, &req, &req.items[1]);
	gw_reply_item_error(&R, &req, &req.items[2], 0, NULL);
	gw_reply_item_error(&R, &req, &req.items[3], 0, NULL);
	finish_is(DECL "<results>\n"
		       "  <created id=\"007\"/>\n"
		       "  <created sym=\"T5asdf\" id=\"8\"/>\n"
		       "  <error>Invalid account id: missing id</error>\n"
		       "  <error sym=\"BAD!\" id=\"8\">Invalid symbol: "
		       "not 1-15 letters or digits</error>\n"
		       "</results>\n");
	gw_xml_req_free(&req);
	gw_xml_parser_destroy(p);
}
END_TEST

START_TEST(whole_request_error_document)
{
	const char *out;
	size_t len;
	gw_reply_error_doc(&R, SHMEX_EBADXML, "mismatched tag at line 2", &out, &len);
	const char *want =
		DECL "<results>\n"
		     "  <error>Malformed XML: mismatched tag at line 2</error>\n"
		     "</results>\n";
	ck_assert_uint_eq(len, strlen(want));
	ck_assert(memcmp(out, want, len) == 0);
}
END_TEST

START_TEST(framed_replies_carry_a_length_line)
{
	struct gw_reply f;
	gw_reply_init(&f, 0, true);
	for (int round = 0; round < 2; round++) {
		gw_reply_begin(&f);
		gw_reply_created(&f, S("1"));
		if (round)
			for (int i = 0; i < 2000; i++)
				gw_reply_created(&f, S("22"));
		const char *out;
		size_t len;
		ck_assert_int_eq(gw_reply_finish(&f, &out, &len), 0);
		const char *nl = memchr(out, '\n', len);
		ck_assert_ptr_nonnull(nl);
		unsigned long n = strtoul(out, NULL, 10);
		ck_assert_uint_eq(n, len - (size_t)(nl + 1 - out));
		ck_assert(memcmp(nl + 1, DECL, strlen(DECL)) == 0);
		ck_assert(memcmp(out + len - 11, "</results>\n", 11) == 0);
	}
	gw_reply_free(&f);
}
END_TEST

/* Only a group's fill listing is limited: one that would pass max is rolled
 * back to its mark and replaced, so every other child keeps its answer; the
 * children outside groups are never refused for size. */
START_TEST(listing_above_max_rolls_back)
{
	struct gw_reply r;
	const char *out;
	size_t len;
	gw_reply_init(&r, 300, false);
	gw_reply_begin(&r);
	for (int i = 0; i < 20; i++)
		gw_reply_created(&r, S("123456"));
	ck_assert_uint_gt(gw_reply_buffered(&r), 300);
	gw_reply_mark(&r);
	gw_reply_status_begin(&r, S("7"));
	for (int i = 0; i < 20; i++)
		gw_reply_executed(&r, 10000, 1000000, 1);
	gw_reply_status_end(&r);
	ck_assert(gw_reply_too_big(&r));
	gw_reply_rollback(&r);
	ck_assert(!gw_reply_too_big(&r));
	static const char *const n[] = {"id"};
	struct gw_str v[1] = {S("7")};
	gw_reply_error(&r, n, v, 1, SHMEX_EREPLYBIG, NULL);
	gw_reply_created(&r, S("8"));
	ck_assert_int_eq(gw_reply_finish(&r, &out, &len), 0);
	ck_assert_ptr_null(strstr(out, "<status"));
	ck_assert_ptr_null(strstr(out, "executed"));
	ck_assert_ptr_nonnull(strstr(out, "<error id=\"7\">Reply too large"));
	ck_assert_ptr_nonnull(strstr(out, "<created id=\"8\"/>\n</results>\n"));
	/* A group that fits stays. */
	gw_reply_begin(&r);
	gw_reply_mark(&r);
	gw_reply_status_begin(&r, S("7"));
	gw_reply_open(&r, 10000);
	gw_reply_status_end(&r);
	ck_assert(!gw_reply_too_big(&r));
	ck_assert_int_eq(gw_reply_finish(&r, &out, &len), 0);
	ck_assert_ptr_nonnull(strstr(out, "<status id=\"7\">"));
	gw_reply_free(&r);
}
END_TEST

/* Streaming: the bytes taken plus the finished rest are the same document
 * as one built whole, and a group rolled back after a take loses nothing
 * that was taken. */
START_TEST(take_streams_the_same_document)
{
	struct gw_reply whole, parts;
	const char *out;
	size_t len;
	char got[4096];
	size_t glen = 0;
	gw_reply_init(&whole, 0, false);
	gw_reply_init(&parts, 0, false);
	gw_reply_begin(&whole);
	gw_reply_begin(&parts);
	for (int i = 0; i < 6; i++) {
		gw_reply_created(&whole, S("42"));
		gw_reply_created(&parts, S("42"));
		if (i % 2 == 0) {
			ck_assert_int_eq(gw_reply_take(&parts, &out, &len), 0);
			memcpy(got + glen, out, len);
			glen += len;
			ck_assert_uint_eq(gw_reply_buffered(&parts), 0);
		}
	}
	ck_assert_uint_eq(gw_reply_taken(&parts), glen);
	ck_assert_int_eq(gw_reply_finish(&parts, &out, &len), 0);
	memcpy(got + glen, out, len);
	glen += len;
	ck_assert_int_eq(gw_reply_finish(&whole, &out, &len), 0);
	ck_assert_uint_eq(glen, len);
	ck_assert(memcmp(got, out, len) == 0);
	gw_reply_free(&whole);
	gw_reply_free(&parts);
}
END_TEST

START_TEST(unbalanced_groups_are_internal_errors)
{
	const char *out;
	size_t len;
	gw_reply_status_begin(&R, S("1"));
	ck_assert_int_eq(gw_reply_finish(&R, &out, &len), SHMEX_EINTERNAL);
	gw_reply_begin(&R);
	gw_reply_status_end(&R);
	ck_assert_int_eq(gw_reply_finish(&R, &out, &len), SHMEX_EINTERNAL);
	gw_reply_begin(&R);
	gw_reply_status_begin(&R, S("1"));
	gw_reply_cancel_begin(&R, S("1"));
	ck_assert_int_eq(gw_reply_finish(&R, &out, &len), SHMEX_EINTERNAL);
	/* and a new document is fine again */
	gw_reply_begin(&R);
	finish_is(DECL "<results/>\n");
}
END_TEST

START_TEST(large_reply_buffer_is_not_kept)
{
	for (int i = 0; i < 10000; i++)
		gw_reply_executed(&R, 1, 1, 1);
	const char *out;
	size_t len;
	ck_assert_int_eq(gw_reply_finish(&R, &out, &len), 0);
	ck_assert_uint_gt(R.cap, GW_REPLY_KEEP_BUF);
	gw_reply_begin(&R);
	ck_assert_uint_le(R.cap, GW_REPLY_KEEP_BUF);
	finish_is(DECL "<results/>\n");
}
END_TEST

static Suite *gw_reply_suite(void)
{
	Suite *s = suite_create("gw_reply");
	TCase *tc = tcase_create("documents");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, empty_results);
	tcase_add_test(tc, created_and_opened);
	tcase_add_test(tc, status_and_canceled_with_shortest_numbers);
	tcase_add_test(tc, errors_with_attributes_and_reasons);
	tcase_add_test(tc, every_code_has_a_wire_text);
	tcase_add_test(tc, escaping_of_echoed_values);
	tcase_add_test(tc, escaped_reply_round_trips_through_expat);
	tcase_add_test(tc, items_from_a_parsed_request);
	tcase_add_test(tc, whole_request_error_document);
	suite_add_tcase(s, tc);
	tc = tcase_create("limits");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, framed_replies_carry_a_length_line);
	tcase_add_test(tc, listing_above_max_rolls_back);
	tcase_add_test(tc, take_streams_the_same_document);
	tcase_add_test(tc, unbalanced_groups_are_internal_errors);
	tcase_add_test(tc, large_reply_buffer_is_not_kept);
	suite_add_tcase(s, tc);
	return s;
}

SHMEX_TEST_MAIN(gw_reply_suite)

/*
 * gw_xml_suite: request documents into items: document order, values in
 * fixed point, echo text, per-item errors and whole-request errors.
 */
#include "tests/shmex_test.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "gateway/gw_xml.h"
#include "shm/shm_dec.h"
#include "shm/shm_error.h"
#include "shm/shm_msg.h"

static const char handout[] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
			      "<create>\n"
			      "  <account id=\"123456\" balance=\"1000\"/>\n"
			      "  <symbol sym=\"SPY\">\n"
			      "    <account id=\"123456\">100000</account>\n"
			      "  </symbol>\n"
			      "</create>\n";

static struct gw_xml_parser *P;
static struct gw_xml_req R;

static void setup(void)
{
	ck_assert_int_eq(gw_xml_parser_create(&P, NULL), 0);
	gw_xml_req_init(&R);
}

static void teardown(void)
{
	gw_xml_req_free(&R);
	gw_xml_parser_destroy(P);
	P = NULL;
}

static int parse(const char *doc)
{
	return gw_xml_parse(P, doc, strlen(doc), &R);
}

/* Parses a document that must be a valid request. */
static void parse_ok(const char *doc)
{
	int rc = parse(doc);
	ck_assert_msg(rc == 0, "%s: %s (%s)", doc, shmex_errname(rc), R.detail);
	ck_assert_int_eq(R.err, 0);
	ck_assert_int_ne(R.root, GW_ROOT_NONE);
}

/* Parses a document that must fail as a whole with err. */
static void parse_fails(const char *doc, int err)
{
	int rc = parse(doc);
	ck_assert_msg(rc == err, "%.80s: got %s, want %s (%s)", doc, shmex_errname(rc),
		      shmex_errname(err), R.detail);
	ck_assert_int_eq(R.err, err);
	ck_assert_int_eq(R.root, GW_ROOT_NONE);
	ck_assert_uint_eq(R.nitems, 0);
	ck_assert_msg(R.detail[0] != '\0', "no detail for %s", shmex_errname(err));
}

static void text_is(struct gw_text t, const char *want)
{
	struct gw_str s = gw_xml_text(&R, t);
	if (want == NULL) {
		ck_assert_ptr_null(s.p);
		return;
	}
	ck_assert_ptr_nonnull(s.p);
	ck_assert_msg(s.len == strlen(want) && memcmp(s.p, want, s.len) == 0,
		      "text \"%.*s\", want \"%s\"", (int)s.len, s.p, want);
}

static void item_err(uint32_t i, int err, const char *why)
{
	ck_assert_uint_lt(i, R.nitems);
	const struct gw_item *it = &R.items[i];
	ck_assert_msg(it->err == err, "item %u: got %s, want %s (%s)", i,
		      shmex_errname(it->err), shmex_errname(err), it->why ? it->why : "");
	if (why) {
		ck_assert_ptr_nonnull(it->why);
		ck_assert_str_eq(it->why, why);
	}
}

START_TEST(handout_create)
{
	ck_assert_uint_eq(strlen(handout), 173);
	parse_ok(handout);
	ck_assert_int_eq(R.root, GW_ROOT_CREATE);
	ck_assert_uint_eq(R.nitems, 2);
	const struct gw_item *a = &R.items[0], *s = &R.items[1];
	ck_assert_int_eq(a->kind, GW_ITEM_ACCOUNT);
	ck_assert_int_eq(a->err, 0);
	ck_assert_uint_eq(a->account, 123456);
	ck_assert_int_eq(a->balance, 1000 * SHM_CASH_ONE);
	text_is(a->id, "123456");
	text_is(a->balance_t, "1000");
	ck_assert_int_eq(s->kind, GW_ITEM_SYMBOL);
	ck_assert_int_eq(s->err, 0);
	ck_assert_uint_eq(s->account, 123456);
	ck_assert_int_eq(s->qty, 100000 * SHM_QTY_ONE);
	text_is(s->sym, "SPY");
	text_is(s->sym_val, "SPY");
	text_is(s->id, "123456");
}
END_TEST

START_TEST(handout_transactions)
{
	parse_ok("<transactions id=\"123456\">\n"
		 "  <order sym=\"SPY\" amount=\"100\" limit=\"145.67\"/>\n"
		 "  <query id=\"1\"/>\n"
		 "  <cancel id=\"1\"/>\n"
		 "</transactions>\n");
	ck_assert_int_eq(R.root, GW_ROOT_TRANSACTIONS);
	ck_assert_uint_eq(R.account, 123456);
	ck_assert_int_eq(R.account_err, 0);
	text_is(R.account_t, "123456");
	ck_assert_uint_eq(R.nitems, 3);
	const struct gw_item *o = &R.items[0];
	ck_assert_int_eq(o->kind, GW_ITEM_ORDER);
	ck_assert_int_eq(o->err, 0);
	ck_assert_int_eq(o->side, SHM_SIDE_BUY);
	ck_assert_int_eq(o->qty, 100 * SHM_QTY_ONE);
	ck_assert_int_eq(o->limit, 1456700);
	text_is(o->sym, "SPY");
	text_is(o->amount, "100");
	text_is(o->limit_t, "145.67");
	ck_assert_int_eq(R.items[1].kind, GW_ITEM_QUERY);
	ck_assert_uint_eq(R.items[1].order_id, 1);
	text_is(R.items[1].id, "1");
	ck_assert_int_eq(R.items[2].kind, GW_ITEM_CANCEL);
	ck_assert_uint_eq(R.items[2].order_id, 1);
}
END_TEST

START_TEST(sell_is_negative_amount)
{
	parse_ok("<transactions id=\"1\"><order sym=\"X\" amount=\"-400\" "
		 "limit=\"124\"/><order sym=\"X\" amount=\"0.0001\" "
		 "limit=\".5\"/></transactions>");
	ck_assert_int_eq(R.items[0].side, SHM_SIDE_SELL);
	ck_assert_int_eq(R.items[0].qty, 400 * SHM_QTY_ONE);
	ck_assert_int_eq(R.items[0].limit, 124 * SHM_PRICE_ONE);
	text_is(R.items[0].amount, "-400");
	ck_assert_int_eq(R.items[1].side, SHM_SIDE_BUY);
	ck_assert_int_eq(R.items[1].qty, 1);
	ck_assert_int_eq(R.items[1].limit, 5000);
}
END_TEST

/* Unknown attributes are refused by name (before: silently ignored, so
 * tif="IOC" rested as GTC); the XML namespace ones are not ours. */
START_TEST(unknown_attributes_are_refused_by_name)
{
	parse_ok("<create><account id=\"1\" balance=\"1\" color=\"red\"/>"
		 "<symbol sym=\"X\" size=\"2\"><account id=\"1\">5</account></symbol>"
		 "<symbol sym=\"Y\"><account id=\"1\" x=\"1\">5</account></symbol>"
		 "</create>");
	ck_assert_uint_eq(R.nitems, 3);
	for (uint32_t i = 0; i < 3; i++)
		item_err(i, SHMEX_EUNKNOWNATTR, NULL);
	text_is(R.items[0].name, "color");
	text_is(R.items[1].name, "size");
	text_is(R.items[2].name, "x");
	parse_ok("<transactions id=\"1\"><order sym=\"X\" amount=\"1\" limit=\"1\" "
		 "when=\"now\"/><query id=\"3\" all=\"1\"/><cancel id=\"3\" q=\"\"/>"
		 "<order sym=\"X\" amount=\"1\" limit=\"1\" xml:lang=\"en\"/>"
		 "</transactions>");
	item_err(0, SHMEX_EUNKNOWNATTR, NULL);
	text_is(R.items[0].name, "when");
	item_err(1, SHMEX_EUNKNOWNATTR, NULL);
	item_err(2, SHMEX_EUNKNOWNATTR, NULL);
	item_err(3, 0, NULL);
	parse_fails("<transactions id=\"1\" mode=\"x\"><query id=\"3\"/></transactions>",
		    SHMEX_EUNKNOWNATTR);
	ck_assert_ptr_nonnull(strstr(R.detail, "mode"));
	parse_fails("<create x=\"1\"/>", SHMEX_EUNKNOWNATTR);
}
END_TEST

/* The order types of the engine, as extension attributes. */
START_TEST(order_tif_and_type_extensions)
{
	parse_ok("<transactions id=\"1\">"
		 "<order sym=\"X\" amount=\"1\" limit=\"1\"/>"
		 "<order sym=\"X\" amount=\"1\" limit=\"1\" tif=\"IOC\"/>"
		 "<order sym=\"X\" amount=\"1\" limit=\"1\" tif=\"fok\" type=\"limit\"/>"
		 "<order sym=\"X\" amount=\"1\" limit=\"1\" tif=\"GTC\"/>"
		 "<order sym=\"X\" amount=\"1\" limit=\"1\" tif=\"DAY\"/>"
		 "<order sym=\"X\" amount=\"1\" limit=\"1\" type=\"market\"/>"
		 "<order sym=\"X\" amount=\"1\" limit=\"1\" postonly=\"YES\"/>"
		 "<order sym=\"X\" amount=\"1\" limit=\"1\" postonly=\"no\"/>"
		 "<order sym=\"X\" amount=\"1\" limit=\"1\" postonly=\"maybe\"/>"
		 "</transactions>");
	ck_assert_int_eq(R.items[0].tif, SHM_TIF_GTC);
	ck_assert_int_eq(R.items[1].tif, SHM_TIF_IOC);
	ck_assert_int_eq(R.items[2].tif, SHM_TIF_FOK);
	ck_assert_int_eq(R.items[3].tif, SHM_TIF_GTC);
	for (uint32_t i = 0; i < 4; i++)
		item_err(i, 0, NULL);
	item_err(4, SHMEX_EBADTIF, "not GTC, IOC or FOK");
	item_err(5, SHMEX_EBADTYPE, NULL);
	ck_assert_int_eq(R.items[0].post_only, 0);
	ck_assert_int_eq(R.items[6].post_only, 1);
	ck_assert_int_eq(R.items[7].post_only, 0);
	item_err(6, 0, NULL);
	item_err(7, 0, NULL);
	item_err(8, SHMEX_EBADREQUEST, "postonly is not yes or no");
}
END_TEST

START_TEST(account_alias)
{
	parse_ok("<transactions account=\"77\"><query id=\"5\"/></transactions>");
	ck_assert_uint_eq(R.account, 77);
	ck_assert_int_eq(R.account_err, 0);
	ck_assert_int_eq(R.items[0].err, 0);
	/* both, agreeing as numbers */
	parse_ok("<transactions id=\"77\" account=\"077\"/>");
	ck_assert_int_eq(R.account_err, 0);
	ck_assert_uint_eq(R.account, 77);
}
END_TEST

START_TEST(bad_transactions_account_spoils_every_item)
{
	const char *docs[] = {
		"<transactions><order sym=\"A\" amount=\"1\" limit=\"1\"/>"
		"<query id=\"1\"/><x/><cancel id=\"1\"/></transactions>",
		"<transactions id=\"12a\"><order sym=\"A\" amount=\"1\" "
		"limit=\"1\"/><query id=\"1\"/><x/><cancel id=\"1\"/>"
		"</transactions>",
		"<transactions id=\"1\" account=\"2\"><order sym=\"A\" "
		"amount=\"1\" limit=\"1\"/><query id=\"1\"/><x/>"
		"<cancel id=\"1\"/></transactions>",
		"<transactions id=\"12345678901234567890\"><order sym=\"A\" "
		"amount=\"1\" limit=\"1\"/><query id=\"1\"/><x/>"
		"<cancel id=\"1\"/></transactions>",
	};
	const char *whys[] = {"missing id", "not a decimal number",
			      "id and account differ", "too many digits"};
	for (int d = 0; d < 4; d++) {
		parse_ok(docs[d]);
		ck_assert_int_eq(R.account_err, SHMEX_EBADACCOUNT);
		ck_assert_str_eq(R.account_why, whys[d]);
		ck_assert_uint_eq(R.nitems, 4);
		item_err(0, SHMEX_EBADACCOUNT, whys[d]);
		item_err(1, SHMEX_EBADACCOUNT, whys[d]);
		item_err(2, SHMEX_EUNKNOWNELEM, NULL); /* keeps its reason */
		item_err(3, SHMEX_EBADACCOUNT, whys[d]);
	}
}
END_TEST

START_TEST(unknown_elements_in_position)
{
	parse_ok("<transactions id=\"1\">"
		 "<order sym=\"A\" amount=\"1\" limit=\"1\"/>"
		 "<foo a=\"1\"/>"
		 "<query id=\"2\"/>"
		 "<bar><order sym=\"B\" amount=\"1\" limit=\"1\"/></bar>"
		 "<Order sym=\"C\" amount=\"1\" limit=\"1\"/>"
		 "<cancel id=\"3\"/>"
		 "</transactions>");
	ck_assert_uint_eq(R.nitems, 6);
	static const int kinds[] = {GW_ITEM_ORDER,   GW_ITEM_UNKNOWN, GW_ITEM_QUERY,
				    GW_ITEM_UNKNOWN, GW_ITEM_UNKNOWN, GW_ITEM_CANCEL};
	for (uint32_t i = 0; i < 6; i++)
		ck_assert_int_eq(R.items[i].kind, kinds[i]);
	item_err(0, 0, NULL);
	item_err(1, SHMEX_EUNKNOWNELEM, NULL);
	text_is(R.items[1].name, "foo");
	text_is(R.items[3].name, "bar");   /* its inner order is skipped */
	text_is(R.items[4].name, "Order"); /* names are case-sensitive */
	ck_assert_uint_eq(R.items[5].order_id, 3);

	parse_ok("<create><account id=\"1\" balance=\"1\"/><transactions/>"
		 "<symbol sym=\"S\"><account id=\"1\">5</account><acct id=\"2\">"
		 "5</acct><account id=\"3\">6</account></symbol></create>");
	ck_assert_uint_eq(R.nitems, 5);
	ck_assert_int_eq(R.items[0].kind, GW_ITEM_ACCOUNT);
	ck_assert_int_eq(R.items[1].kind, GW_ITEM_UNKNOWN);
	text_is(R.items[1].name, "transactions");
	ck_assert_int_eq(R.items[2].kind, GW_ITEM_SYMBOL);
	ck_assert_int_eq(R.items[3].kind, GW_ITEM_UNKNOWN);
	ck_assert_int_eq(R.items[4].kind, GW_ITEM_SYMBOL);
	ck_assert_uint_eq(R.items[4].account, 3);
	ck_assert_int_eq(R.items[4].qty, 6 * SHM_QTY_ONE);
}
END_TEST

START_TEST(create_document_order_and_multiple_symbols)
{
	parse_ok("<create>"
		 "<symbol sym=\"A\"><account id=\"9\">1</account></symbol>"
		 "<account id=\"9\" balance=\"10.5\"/>"
		 "<symbol sym=\"B\"><account id=\"9\">2</account>"
		 "<account id=\"10\">3.25</account></symbol>"
		 "</create>");
	ck_assert_uint_eq(R.nitems, 4);
	ck_assert_int_eq(R.items[0].kind, GW_ITEM_SYMBOL);
	text_is(R.items[0].sym, "A");
	ck_assert_int_eq(R.items[1].kind, GW_ITEM_ACCOUNT);
	ck_assert_int_eq(R.items[1].balance, 1050000000);
	text_is(R.items[2].sym, "B");
	text_is(R.items[3].sym, "B");
	ck_assert_uint_eq(R.items[3].account, 10);
	ck_assert_int_eq(R.items[3].qty, 32500);
	for (uint32_t i = 0; i < 4; i++)
		item_err(i, 0, NULL);
}
END_TEST

START_TEST(empty_roots_are_requests)
{
	parse_ok("<create/>");
	ck_assert_int_eq(R.root, GW_ROOT_CREATE);
	ck_assert_uint_eq(R.nitems, 0);
	parse_ok("<transactions id=\"1\">\n  \n</transactions>");
	ck_assert_int_eq(R.root, GW_ROOT_TRANSACTIONS);
	ck_assert_uint_eq(R.nitems, 0);
}
END_TEST

START_TEST(stray_text_and_comments_are_ignored)
{
	parse_ok("<?xml version=\"1.0\"?><!-- hi --><transactions id=\"1\">"
		 "hello<query id=\"1\">text</query> more &amp; more "
		 "<?pi x?><![CDATA[<order/>]]><cancel id=\"2\"/>tail"
		 "</transactions><!-- bye -->\n");
	ck_assert_uint_eq(R.nitems, 2);
	item_err(0, 0, NULL);
	item_err(1, 0, NULL);
}
END_TEST

START_TEST(order_validation_errors)
{
	static const struct {
		const char *attrs;
		int err;
		const char *why;
	} cases[] = {
		{"amount=\"1\" limit=\"1\"", SHMEX_EBADSYMBOL, "missing sym"},
		{"sym=\"\" amount=\"1\" limit=\"1\"", SHMEX_EBADSYMBOL,
		 "not 1-15 letters or digits"},
		{"sym=\"S-P\" amount=\"1\" limit=\"1\"", SHMEX_EBADSYMBOL,
		 "not 1-15 letters or digits"},
		{"sym=\"ABCDEFGHIJKLMNOP\" amount=\"1\" limit=\"1\"", SHMEX_EBADSYMBOL,
		 "longer than 15 characters"},
		{"sym=\"A\" limit=\"1\"", SHMEX_EBADAMOUNT, "missing amount"},
		{"sym=\"A\" amount=\"\" limit=\"1\"", SHMEX_EBADAMOUNT, "empty"},
		{"sym=\"A\" amount=\"abc\" limit=\"1\"", SHMEX_EBADAMOUNT,
		 "not a decimal number"},
		{"sym=\"A\" amount=\"1e5\" limit=\"1\"", SHMEX_EBADAMOUNT,
		 "not a decimal number"},
		{"sym=\"A\" amount=\"1.00001\" limit=\"1\"", SHMEX_EBADAMOUNT,
		 "more than 4 fractional digits"},
		{"sym=\"A\" amount=\"0\" limit=\"1\"", SHMEX_EBADAMOUNT, "zero amount"},
		{"sym=\"A\" amount=\"-0.0000\" limit=\"1\"", SHMEX_EBADAMOUNT,
		 "zero amount"},
		{"sym=\"A\" amount=\"99999999999999999999\" limit=\"1\"",
		 SHMEX_EBADAMOUNT, "out of range"},
		{"sym=\"A\" amount=\"-922337203685477.5808\" limit=\"1\"",
		 SHMEX_EBADAMOUNT, "out of range"},
		{"sym=\"A\" amount=\"1\"", SHMEX_EBADPRICE, "missing limit"},
		{"sym=\"A\" amount=\"1\" limit=\"0\"", SHMEX_EBADPRICE,
		 "limit must be positive"},
		{"sym=\"A\" amount=\"1\" limit=\"-5\"", SHMEX_EBADPRICE,
		 "limit must be positive"},
		{"sym=\"A\" amount=\"1\" limit=\"nan\"", SHMEX_EBADPRICE,
		 "not a decimal number"},
		{"sym=\"A\" amount=\"1\" limit=\"0.00001\"", SHMEX_EBADPRICE,
		 "more than 4 fractional digits"},
		{"sym=\"A\" amount=\"1000000000\" limit=\"1000000\"", SHMEX_EOVERFLOW,
		 "amount x limit out of range"},
		/* the first problem wins */
		{"sym=\"!\" amount=\"0\" limit=\"0\"", SHMEX_EBADSYMBOL, NULL},
		{"sym=\"A\" amount=\"0\" limit=\"0\"", SHMEX_EBADAMOUNT, NULL},
	};
	char doc[512];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(doc, sizeof(doc),
			 "<transactions id=\"1\"><order %s/><query id=\"1\"/>"
			 "</transactions>",
			 cases[i].attrs);
		parse_ok(doc);
		ck_assert_uint_eq(R.nitems, 2);
		item_err(0, cases[i].err, cases[i].why);
		item_err(1, 0, NULL); /* the neighbour is unaffected */
	}
}
END_TEST

START_TEST(order_values_accepted_at_edges)
{
	parse_ok("<transactions id=\"1\"><order sym=\"ABCDEFGHIJKLMNO\" "
		 "amount=\" 100 \" limit=\"\n145.670000\t\"/></transactions>");
	item_err(0, 0, NULL);
	text_is(R.items[0].sym_val, "ABCDEFGHIJKLMNO");
	/* validated without blanks, echoed as decoded (attribute value
	 * normalisation turned the newline and tab into spaces) */
	ck_assert_int_eq(R.items[0].qty, 100 * SHM_QTY_ONE);
	text_is(R.items[0].amount, " 100 ");
	text_is(R.items[0].limit_t, " 145.670000 ");
	ck_assert_int_eq(R.items[0].limit, 1456700);
	/* blanks around the symbol are trimmed for validation only */
	parse_ok("<transactions id=\"1\"><order sym=\" SPY \" amount=\"1\" "
		 "limit=\"1\"/></transactions>");
	item_err(0, 0, NULL);
	text_is(R.items[0].sym, " SPY ");
	text_is(R.items[0].sym_val, "SPY");
}
END_TEST

START_TEST(order_id_validation_errors)
{
	static const struct {
		const char *attr;
		int err;
		const char *why;
		uint64_t want;
	} cases[] = {
		{"", SHMEX_EBADORDERID, "missing id", 0},
		{"id=\"\"", SHMEX_EBADORDERID, "empty", 0},
		{"id=\"abc\"", SHMEX_EBADORDERID, "not a decimal number", 0},
		{"id=\"-1\"", SHMEX_EBADORDERID, "not a decimal number", 0},
		{"id=\"1.5\"", SHMEX_EBADORDERID, "not a decimal number", 0},
		{"id=\"0\"", SHMEX_EBADORDERID, "zero", 0},
		{"id=\"18446744073709551616\"", SHMEX_EBADORDERID, "out of range", 0},
		{"id=\"000000000000000000001\"", SHMEX_EBADORDERID, "too many digits", 0},
		{"id=\"18446744073709551615\"", 0, NULL, UINT64_MAX},
		{"id=\" 42 \"", 0, NULL, 42},
		{"id=\"0042\"", 0, NULL, 42},
	};
	char doc[256];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (int k = 0; k < 2; k++) {
			snprintf(doc, sizeof(doc),
				 "<transactions id=\"1\"><%s %s/></transactions>",
				 k ? "cancel" : "query", cases[i].attr);
			parse_ok(doc);
			item_err(0, cases[i].err, cases[i].why);
			if (cases[i].err == 0)
				ck_assert_uint_eq(R.items[0].order_id, cases[i].want);
		}
	}
}
END_TEST

START_TEST(create_account_validation_errors)
{
	static const struct {
		const char *attrs;
		int err;
		const char *why;
	} cases[] = {
		{"balance=\"1\"", SHMEX_EBADACCOUNT, "missing id"},
		{"id=\"12a\" balance=\"1\"", SHMEX_EBADACCOUNT, "not a decimal number"},
		{"id=\"-1\" balance=\"1\"", SHMEX_EBADACCOUNT, "not a decimal number"},
		{"id=\"12345678901234567890\" balance=\"1\"", SHMEX_EBADACCOUNT,
		 "too many digits"},
		{"id=\"1\"", SHMEX_EBADBALANCE, "missing balance"},
		{"id=\"1\" balance=\"-1\"", SHMEX_EBADBALANCE, "negative"},
		{"id=\"1\" balance=\"1.123456789\"", SHMEX_EBADBALANCE,
		 "more than 8 fractional digits"},
		{"id=\"1\" balance=\"1000000000000000000.00000001\"", SHMEX_EBADBALANCE,
		 "out of range (at most 1000000000000000000)"},
		{"id=\"1\" balance=\"lots\"", SHMEX_EBADBALANCE, "not a decimal number"},
	};
	char doc[256];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(doc, sizeof(doc),
			 "<create><account %s/><account id=\"2\" "
			 "balance=\"0\"/></create>",
			 cases[i].attrs);
		parse_ok(doc);
		ck_assert_uint_eq(R.nitems, 2);
		item_err(0, cases[i].err, cases[i].why);
		item_err(1, 0, NULL);
	}
	/* 19 digits, compared as numbers: leading zeros do not matter */
	parse_ok("<create><account id=\"9999999999999999999\" "
		 "balance=\"0.00000001\"/>"
		 "<account id=\"0000000000000000007\" balance=\"92233720368\"/>"
		 "</create>");
	item_err(0, 0, NULL);
	ck_assert_uint_eq(R.items[0].account, UINT64_C(9999999999999999999));
	ck_assert_int_eq(R.items[0].balance, 1);
	item_err(1, 0, NULL);
	/* 128-bit balances: far past the old int64 limit, exact. */
	parse_ok("<create><account id=\"3\" balance=\"92233720369\"/>"
		 "<account id=\"4\" balance=\"1000000000000000000\"/></create>");
	item_err(0, 0, NULL);
	item_err(1, 0, NULL);
	ck_assert(R.items[0].balance == (shm_cash_t)92233720369 * SHM_CASH_ONE);
	ck_assert(R.items[1].balance == SHM_CASH_INPUT_MAX);
	parse_ok("<create><account id=\"9999999999999999999\" "
		 "balance=\"0.00000001\"/>"
		 "<account id=\"0000000000000000007\" balance=\"92233720368\"/>"
		 "</create>");
	ck_assert_uint_eq(R.items[1].account, 7);
	text_is(R.items[1].id, "0000000000000000007");
}
END_TEST

START_TEST(symbol_validation_errors)
{
	/* bad symbol: every inner account says so */
	parse_ok("<create><symbol sym=\"S P\"><account id=\"1\">1</account>"
		 "<account id=\"2\">1</account></symbol></create>");
	ck_assert_uint_eq(R.nitems, 2);
	item_err(0, SHMEX_EBADSYMBOL, "not 1-15 letters or digits");
	item_err(1, SHMEX_EBADSYMBOL, NULL);
	text_is(R.items[1].sym, "S P");

	parse_ok("<create><symbol><account id=\"1\">1</account></symbol>"
		 "</create>");
	item_err(0, SHMEX_EBADSYMBOL, "missing sym");
	text_is(R.items[0].sym, NULL);

	/* inner account problems */
	parse_ok("<create><symbol sym=\"S\">"
		 "<account id=\"x\">1</account>"
		 "<account id=\"1\"></account>"
		 "<account id=\"1\">0</account>"
		 "<account id=\"1\">-5</account>"
		 "<account id=\"1\">1.23456</account>"
		 "<account id=\"1\">many</account>"
		 "<account id=\"1\">\n   12.5\n  </account>"
		 "<account id=\"1\"><![CDATA[7]]></account>"
		 "<account id=\"1\">1<b/>2</account>"
		 "</symbol></create>");
	ck_assert_uint_eq(R.nitems, 9);
	item_err(0, SHMEX_EBADACCOUNT, "not a decimal number");
	item_err(1, SHMEX_EBADAMOUNT, "missing shares");
	item_err(2, SHMEX_EBADAMOUNT, "shares must be positive");
	item_err(3, SHMEX_EBADAMOUNT, "shares must be positive");
	item_err(4, SHMEX_EBADAMOUNT, "more than 4 fractional digits");
	item_err(5, SHMEX_EBADAMOUNT, "not a decimal number");
	item_err(6, 0, NULL);
	ck_assert_int_eq(R.items[6].qty, 125000);
	item_err(7, 0, NULL);
	ck_assert_int_eq(R.items[7].qty, 70000);
	item_err(8, SHMEX_EBADREQUEST, "unexpected child element");

	/* a symbol without any account still answers, in its position */
	parse_ok("<create><account id=\"1\" balance=\"1\"/><symbol sym=\"Q\">"
		 " </symbol><account id=\"2\" balance=\"1\"/></create>");
	ck_assert_uint_eq(R.nitems, 3);
	ck_assert_int_eq(R.items[1].kind, GW_ITEM_SYMBOL);
	item_err(1, SHMEX_EBADREQUEST, "symbol without account");
	text_is(R.items[1].sym, "Q");
	text_is(R.items[1].id, NULL);
}
END_TEST

START_TEST(child_of_leaf_is_an_item_error)
{
	parse_ok("<transactions id=\"1\"><query id=\"1\"><x/></query>"
		 "<order sym=\"A\" amount=\"1\" limit=\"1\"><y><z/></y></order>"
		 "<cancel id=\"2\"/></transactions>");
	ck_assert_uint_eq(R.nitems, 3);
	item_err(0, SHMEX_EBADREQUEST, "unexpected child element");
	item_err(1, SHMEX_EBADREQUEST, "unexpected child element");
	item_err(2, 0, NULL);
}
END_TEST

START_TEST(malformed_xml_is_a_whole_request_error)
{
	static const char *const docs[] = {
		"",
		"   ",
		"not xml at all",
		"<create>",
		"<create></transactions>",
		"<create><account id=\"1\" id=\"2\"/></create>",
		"<create/><create/>",
		"<create/>junk",
		"<transactions id=1/>",
		"<transactions id=\"1\"><order sym=\"A&\"/></transactions>",
		"<create>&undefined;</create>",
		"<create>&#0;</create>",
		"<?xml version=\"1.0\" encoding=\"NOPE-99\"?><create/>",
		"<create><account id=\"1\"></create>",
	};
	for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++)
		parse_fails(docs[i], SHMEX_EBADXML);
	/* the detail carries expat's message and the position */
	parse_fails("<create>\n<account></create>", SHMEX_EBADXML);
	ck_assert_msg(strstr(R.detail, "line 2") != NULL, "%s", R.detail);
	/* an embedded NUL byte */
	int rc = gw_xml_parse(P, "<create>\0</create>", 18, &R);
	ck_assert_int_eq(rc, SHMEX_EBADXML);
	/* and the parser is usable afterwards */
	parse_ok(handout);
	ck_assert_uint_eq(R.nitems, 2);
}
END_TEST

START_TEST(wrong_root_is_a_whole_request_error)
{
	parse_fails("<results/>", SHMEX_EBADREQUEST);
	parse_fails("<Create/>", SHMEX_EBADREQUEST);
	parse_fails("<order sym=\"A\" amount=\"1\" limit=\"1\"/>", SHMEX_EBADREQUEST);
}
END_TEST

START_TEST(entity_attacks_are_rejected)
{
	/* billion laughs */
	parse_fails("<?xml version=\"1.0\"?>\n"
		    "<!DOCTYPE lolz [\n"
		    " <!ENTITY lol \"lol\">\n"
		    " <!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n"
		    " <!ENTITY lol2 \"&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;\">\n"
		    " <!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">\n"
		    "]>\n"
		    "<create><account id=\"1\" balance=\"&lol3;\"/></create>",
		    SHMEX_ENODTD);
	/* external entity (XXE) */
	parse_fails("<!DOCTYPE create SYSTEM \"file:///etc/passwd\">"
		    "<create/>",
		    SHMEX_ENODTD);
	parse_fails("<!DOCTYPE c [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>"
		    "<create><account id=\"&x;\"/></create>",
		    SHMEX_ENODTD);
	/* a bare DOCTYPE is refused too */
	parse_fails("<!DOCTYPE create><create/>", SHMEX_ENODTD);
	/* predefined entities and character references are plain text */
	parse_ok("<transactions id=\"&#49;\"><order sym=\"A&amp;B\" "
		 "amount=\"&#x31;0\" limit=\"1\"/></transactions>");
	ck_assert_uint_eq(R.account, 1);
	item_err(0, SHMEX_EBADSYMBOL, NULL);
	text_is(R.items[0].sym, "A&B");
	text_is(R.items[0].amount, "10");
}
END_TEST

static void make_parser(uint32_t elems, uint32_t depth, uint32_t text)
{
	struct gw_xml_limits lim;
	gw_xml_limits_default(&lim);
	if (elems)
		lim.max_elems = elems;
	if (depth)
		lim.max_depth = depth;
	if (text)
		lim.max_text = text;
	gw_xml_parser_destroy(P);
	ck_assert_int_eq(gw_xml_parser_create(&P, &lim), 0);
}

START_TEST(too_many_elements)
{
	make_parser(10, 0, 0);
	char doc[1024] = "<transactions id=\"1\">";
	for (int i = 0; i < 9; i++)
		strcat(doc, "<query id=\"1\"/>");
	strcat(doc, "</transactions>");
	parse_ok(doc); /* exactly 10 elements */
	ck_assert_uint_eq(R.nitems, 9);
	strcpy(doc, "<transactions id=\"1\">");
	for (int i = 0; i < 10; i++)
		strcat(doc, "<query id=\"1\"/>");
	strcat(doc, "</transactions>");
	parse_fails(doc, SHMEX_ETOOMANY);
	/* skipped elements count too */
	parse_fails("<transactions id=\"1\"><x><a/><a/><a/><a/><a/><a/><a/><a/>"
		    "<a/></x></transactions>",
		    SHMEX_ETOOMANY);
}
END_TEST

START_TEST(default_limit_of_elements)
{
	/* 10000 elements by default: 9999 queries pass, 10000 fail */
	size_t cap = 30 + 10000 * 16;
	char *doc = malloc(cap);
	ck_assert_ptr_nonnull(doc);
	for (int n = 9999; n <= 10000; n++) {
		size_t len = (size_t)sprintf(doc, "<transactions id=\"1\">");
		for (int i = 0; i < n; i++)
			len += (size_t)sprintf(doc + len, "<query id=\"%d\"/>",
					       i % 10 + 1);
		len += (size_t)sprintf(doc + len, "</transactions>");
		ck_assert_uint_lt(len, cap);
		int rc = gw_xml_parse(P, doc, len, &R);
		if (n == 9999) {
			ck_assert_int_eq(rc, 0);
			ck_assert_uint_eq(R.nitems, 9999);
			ck_assert_uint_eq(R.items[9998].order_id, 9998 % 10 + 1);
		} else {
			ck_assert_int_eq(rc, SHMEX_ETOOMANY);
		}
	}
	free(doc);
	/* a big request does not keep its storage for the next one */
	parse_ok(handout);
	ck_assert_uint_le(R.items_cap, 1024);
}
END_TEST

START_TEST(too_deep)
{
	make_parser(0, 4, 0);
	parse_ok("<transactions id=\"1\"><x><y><z/></y></x></transactions>");
	parse_fails("<transactions id=\"1\"><x><y><z><w/></z></y></x>"
		    "</transactions>",
		    SHMEX_ETOODEEP);
	/* default: 8 */
	make_parser(0, 0, 0);
	parse_ok("<create><a><a><a><a><a><a><a/></a></a></a></a></a></a>"
		 "</create>");
	parse_fails("<create><a><a><a><a><a><a><a><a/></a></a></a></a></a>"
		    "</a></a></create>",
		    SHMEX_ETOODEEP);
}
END_TEST

START_TEST(too_long_text)
{
	make_parser(0, 0, 16);
	parse_ok("<transactions id=\"1234567890123456\"/>");
	parse_fails("<transactions id=\"12345678901234567\"/>", SHMEX_ETOOLONG);
	parse_fails("<transactions id=\"1\"><query id=\"1\" "
		    "junk=\"aaaaaaaaaaaaaaaaa\"/></transactions>",
		    SHMEX_ETOOLONG);
	parse_fails("<transactions id=\"1\"><abcdefghijklmnopq/></transactions>",
		    SHMEX_ETOOLONG);
	parse_fails("<transactions id=\"1\"><query abcdefghijklmnopq=\"1\"/>"
		    "</transactions>",
		    SHMEX_ETOOLONG);
	parse_ok("<create><symbol sym=\"A\"><account id=\"1\">"
		 "1234567890123456</account></symbol></create>");
	parse_fails("<create><symbol sym=\"A\"><account id=\"1\">"
		    "12345678901234567</account></symbol></create>",
		    SHMEX_ETOOLONG);
	/* text outside <account> is not stored, so it is not limited */
	parse_ok("<create>aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa</create>");
}
END_TEST

START_TEST(limits_are_validated)
{
	struct gw_xml_parser *q = NULL;
	struct gw_xml_limits lim;
	gw_xml_limits_default(&lim);
	ck_assert_uint_eq(lim.max_elems, 10000);
	ck_assert_uint_eq(lim.max_depth, 8);
	lim.max_depth = 1;
	ck_assert_int_eq(gw_xml_parser_create(&q, &lim), -EINVAL);
	lim.max_depth = GW_XML_MAX_DEPTH_LIMIT + 1;
	ck_assert_int_eq(gw_xml_parser_create(&q, &lim), -EINVAL);
	gw_xml_limits_default(&lim);
	lim.max_elems = 0;
	ck_assert_int_eq(gw_xml_parser_create(&q, &lim), -EINVAL);
	gw_xml_limits_default(&lim);
	lim.max_text = 0;
	ck_assert_int_eq(gw_xml_parser_create(&q, &lim), -EINVAL);
	ck_assert_ptr_null(q);
}
END_TEST

START_TEST(parser_and_request_are_reusable)
{
	/* alternate good and bad documents on the same objects */
	for (int i = 0; i < 200; i++) {
		parse_ok(handout);
		ck_assert_uint_eq(R.nitems, 2);
		text_is(R.items[1].sym, "SPY");
		parse_fails("<create>", SHMEX_EBADXML);
		parse_ok("<transactions id=\"5\"><query id=\"3\"/></transactions>");
		ck_assert_uint_eq(R.account, 5);
		ck_assert_uint_eq(R.items[0].order_id, 3);
	}
	/* two requests parsed by one parser stay independent */
	struct gw_xml_req other;
	gw_xml_req_init(&other);
	ck_assert_int_eq(gw_xml_parse(P, handout, strlen(handout), &other), 0);
	parse_ok("<transactions id=\"5\"><query id=\"3\"/></transactions>");
	ck_assert_int_eq(other.root, GW_ROOT_CREATE);
	ck_assert_uint_eq(other.nitems, 2);
	struct gw_str s = gw_xml_text(&other, other.items[1].sym);
	ck_assert(s.len == 3 && memcmp(s.p, "SPY", 3) == 0);
	gw_xml_req_free(&other);
}
END_TEST

START_TEST(latin1_and_utf16_documents)
{
	/* ISO-8859-1 bytes come out as UTF-8 */
	parse_ok("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>"
		 "<transactions id=\"1\"><order sym=\"\xe9\" amount=\"1\" "
		 "limit=\"1\"/></transactions>");
	item_err(0, SHMEX_EBADSYMBOL, NULL);
	text_is(R.items[0].sym, "\xc3\xa9");
	/* UTF-16LE with a byte order mark */
	const char *ascii = "<create><account id=\"3\" balance=\"2\"/></create>";
	char doc[256];
	size_t n = 0;
	doc[n++] = (char)0xff;
	doc[n++] = (char)0xfe;
	for (const char *c = ascii; *c; c++) {
		doc[n++] = *c;
		doc[n++] = 0;
	}
	ck_assert_int_eq(gw_xml_parse(P, doc, n, &R), 0);
	ck_assert_uint_eq(R.nitems, 1);
	ck_assert_uint_eq(R.items[0].account, 3);
	text_is(R.items[0].balance_t, "2");
}
END_TEST

static Suite *gw_xml_suite(void)
{
	Suite *s = suite_create("gw_xml");
	TCase *tc = tcase_create("requests");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, handout_create);
	tcase_add_test(tc, handout_transactions);
	tcase_add_test(tc, sell_is_negative_amount);
	tcase_add_test(tc, account_alias);
	tcase_add_test(tc, unknown_attributes_are_refused_by_name);
	tcase_add_test(tc, order_tif_and_type_extensions);
	tcase_add_test(tc, unknown_elements_in_position);
	tcase_add_test(tc, create_document_order_and_multiple_symbols);
	tcase_add_test(tc, empty_roots_are_requests);
	tcase_add_test(tc, stray_text_and_comments_are_ignored);
	tcase_add_test(tc, parser_and_request_are_reusable);
	tcase_add_test(tc, latin1_and_utf16_documents);
	suite_add_tcase(s, tc);
	tc = tcase_create("item_errors");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, bad_transactions_account_spoils_every_item);
	tcase_add_test(tc, order_validation_errors);
	tcase_add_test(tc, order_values_accepted_at_edges);
	tcase_add_test(tc, order_id_validation_errors);
	tcase_add_test(tc, create_account_validation_errors);
	tcase_add_test(tc, symbol_validation_errors);
	tcase_add_test(tc, child_of_leaf_is_an_item_error);
	suite_add_tcase(s, tc);
	tc = tcase_create("request_errors");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, malformed_xml_is_a_whole_request_error);
	tcase_add_test(tc, wrong_root_is_a_whole_request_error);
	tcase_add_test(tc, entity_attacks_are_rejected);
	tcase_add_test(tc, too_many_elements);
	tcase_add_test(tc, default_limit_of_elements);
	tcase_add_test(tc, too_deep);
	tcase_add_test(tc, too_long_text);
	tcase_add_test(tc, limits_are_validated);
	suite_add_tcase(s, tc);
	return s;
}

SHMEX_TEST_MAIN(gw_xml_suite)

/*
 * gw_e2e_suite: whole exchanges end to end.  Each test starts the real
 * `shmex` supervisor (matchers and gateways as processes) with a unique
 * instance name on a free port of 127.0.0.1, talks ECE 568 XML to it over
 * TCP, checks the replies element by element (canonical text of the parsed
 * reply, see tests/client.h), reads the shared memory read-only where the
 * effect must be visible there, and stops it with SIGTERM, checking exit
 * status 0, that no child process is left and that nothing is left in
 * /dev/shm.
 */
#include "tests/shmex_test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>

#include "shm/shm_accounts.h"
#include "shm/shm_dec.h"
#include "shm/shm_instance.h"
#include "shm/shm_region.h"
#include "shm/shm_ring.h"
#include "shm/shm_positions.h"
#include "shm/shm_msg.h"
#include "tests/client.h"

#define T_MS 10000

static char inst[64];
static struct exchange ex;
static pid_t kids[64];
static int nkids;

/* Small capacities: every test starts its own exchange. */
#define SMALL_CAPS                                                                     \
	"--orders", "8192", "--levels", "1024", "--fills", "32768", "--symbols", "64", \
		"--accounts", "4096", "--positions", "16384", "--quiet"

/*
 * A failing check assertion ends the test process at once: no teardown
 * runs, and check kills the test's process group (the exchange with it),
 * so its shared memory would stay behind.  Each test therefore records its
 * instance name in a file named after the runner's pid, and the runner
 * removes those instances after the test case (unchecked teardown, in the
 * runner process).
 */
static void note_instance(const char *name)
{
	test_note_instance("gw-e2e", name);
}

static void cleanup_noted(void)
{
	test_cleanup_noted("gw-e2e");
}

static void start_with(const char *const *extra)
{
	test_instance(inst, sizeof(inst));
	note_instance(inst);
	int rc = exchange_start(&ex, test_bin("shmex"), inst, extra, 20000);
	ck_assert_msg(rc == 0, "shmex did not start");
	nkids = exchange_children(&ex, kids, 64);
}

static void start_default(void)
{
	static const char *const extra[] = {SMALL_CAPS, NULL};
	start_with(extra);
}

static bool pid_gone(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return true;
	char buf[512];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	const char *rp = strrchr(buf, ')');
	return rp && rp[1] == ' ' && rp[2] == 'Z';
}

/* SIGTERM, exit 0, no child left, nothing in /dev/shm. */
static void stop_clean(void)
{
	pid_t all[64];
	int n = exchange_children(&ex, all, 64);
	int st = exchange_stop(&ex, 30000);
	ck_assert_msg(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "shmex exit status 0x%x", st);
	for (int i = 0; i < n; i++) {
		for (int t = 0; t < 200 && !pid_gone(all[i]); t++)
			usleep(10000);
		ck_assert_msg(pid_gone(all[i]), "child %d outlived shmex", (int)all[i]);
	}
	ck_assert_int_eq(test_count_objects(inst), 0);
}

static void teardown(void)
{
	if (ex.pid > 0) {
		pid_t all[64];
		int n = exchange_children(&ex, all, 64);
		kill(ex.pid, SIGKILL);
		waitpid(ex.pid, NULL, 0);
		for (int i = 0; i < n; i++)
			kill(all[i], SIGKILL);
		ex.pid = 0;
	}
	if (ex.out_fd >= 0)
		close(ex.out_fd);
	ex.out_fd = -1;
	usleep(50000);
	test_cleanup_instance(inst);
}

static void conn(struct client *c)
{
	int rc = client_connect(c, "127.0.0.1", ex.port, T_MS);
	ck_assert_msg(rc == 0, "connect: %s", strerror(-rc));
}

static struct xdoc last; /* the last reply ask() parsed */

/* Sends xml, returns the canonical reply (times masked); the parsed reply
 * stays in `last`. */
static const char *ask(struct client *c, const char *xml, unsigned flags)
{
	static char out[32768];
	const char *rep;
	size_t len;
	int rc = client_request(c, xml, &rep, &len, T_MS);
	ck_assert_msg(rc == 0, "request failed: %s", strerror(-rc));
	xdoc_free(&last);
	if (xdoc_parse(&last, rep, len) != 0)
		ck_abort_msg("malformed reply: %s", rep);
	xdoc_canon(&last, out, sizeof(out), flags | CANON_TIME);
	return out;
}

/* Text of the k-th child of the last reply's root. */
static const char *text_of(int k)
{
	int i = xdoc_child(&last, 0, k);
	ck_assert_int_ge(i, 0);
	return last.nodes[i].text;
}

static void text_starts(int k, const char *prefix)
{
	const char *t = text_of(k);
	ck_assert_msg(!strncmp(t, prefix, strlen(prefix)),
		      "child %d says '%s', expected '%s...'", k, t, prefix);
}

static void expect(struct client *c, const char *xml, const char *canon)
{
	ck_assert_str_eq(ask(c, xml, 0), canon);
}

/* The id of the opened order in the reply to one <order>. */
static uint64_t order(struct client *c, const char *account, const char *sym,
		      const char *amount, const char *limit)
{
	char xml[512];
	snprintf(xml, sizeof(xml),
		 "<transactions id=\"%s\"><order sym=\"%s\" amount=\"%s\" "
		 "limit=\"%s\"/></transactions>",
		 account, sym, amount, limit);
	const char *rep;
	size_t len;
	ck_assert_int_eq(client_request(c, xml, &rep, &len, T_MS), 0);
	struct xdoc d;
	ck_assert_int_eq(xdoc_parse(&d, rep, len), 0);
	int k = xdoc_child(&d, 0, 0);
	ck_assert_msg(k > 0 && !strcmp(d.nodes[k].name, "opened"), "order not opened: %s",
		      rep);
	ck_assert_str_eq(xnode_attr(&d.nodes[k], "sym"), sym);
	ck_assert_str_eq(xnode_attr(&d.nodes[k], "amount"), amount);
	ck_assert_str_eq(xnode_attr(&d.nodes[k], "limit"), limit);
	uint64_t id = strtoull(xnode_attr(&d.nodes[k], "id"), NULL, 10);
	xdoc_free(&d);
	ck_assert_uint_gt(id, 0);
	return id;
}

static int64_t cash(const char *s)
{
	int64_t v;
	ck_assert_int_eq(shm_dec_parse(s, strlen(s), SHM_CASH_DIGITS, &v), 0);
	return v;
}

static int64_t qty(const char *s)
{
	int64_t v;
	ck_assert_int_eq(shm_dec_parse(s, strlen(s), SHM_QTY_DIGITS, &v), 0);
	return v;
}

static void account_is(uint64_t id, const char *balance, const char *reserved)
{
	struct shm_accounts a;
	ck_assert_int_eq(shm_accounts_attach(&a, inst, SHM_RDONLY), 0);
	struct shm_account_view v;
	ck_assert_int_eq(shm_accounts_read(&a, id, &v), 0);
	ck_assert_int_eq(v.balance, cash(balance));
	ck_assert_int_eq(v.reserved, cash(reserved));
	shm_accounts_detach(&a);
}

static void position_is(uint64_t id, const char *sym, const char *amount,
			const char *reserved)
{
	char name[16];
	ck_assert(shm_symbol_pack(name, sym, strlen(sym)));
	struct shm_positions p;
	uint32_t shard = shm_shard_of_symbol(sym, strlen(sym), 2);
	ck_assert_int_eq(shm_positions_attach(&p, inst, shard, SHM_RDONLY), 0);
	struct shm_position_view v;
	ck_assert_int_eq(shm_positions_read(&p, id, name, &v), 0);
	ck_assert_int_eq(v.amount, qty(amount));
	ck_assert_int_eq(v.reserved, qty(reserved));
	shm_positions_detach(&p);
}

/* ---- the handout ---- */

static const char handout_create[] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
				     "<create>\n"
				     "  <account id=\"123456\" balance=\"1000\"/>\n"
				     "  <symbol sym=\"SPY\">\n"
				     "    <account id=\"123456\">100000</account>\n"
				     "  </symbol>\n"
				     "</create>\n";

START_TEST(handout_create_example)
{
	ck_assert_uint_eq(strlen(handout_create), 173);
	start_default();
	struct client c;
	conn(&c);
	expect(&c, handout_create,
	       "results(created[id=123456] created[id=123456 sym=SPY])");
	/* Again: both exist now (the shares are simply added). */
	expect(&c, handout_create,
	       "results(error[id=123456]\"Account already exists\" "
	       "created[id=123456 sym=SPY])");
	account_is(123456, "1000", "0");
	position_is(123456, "SPY", "200000", "0");
	client_close(&c);
	stop_clean();
}
END_TEST

START_TEST(handout_worked_example)
{
	start_default();
	struct client c;
	conn(&c);
	expect(&c,
	       "<create><account id=\"1\" balance=\"1000000\"/>"
	       "<account id=\"2\" balance=\"1000\"/>"
	       "<symbol sym=\"X\"><account id=\"2\">10000</account></symbol>"
	       "</create>",
	       "results(created[id=1] created[id=2] created[id=2 sym=X])");
	uint64_t id[8];
	id[1] = order(&c, "1", "X", "300", "125");
	id[2] = order(&c, "2", "X", "-100", "130");
	id[3] = order(&c, "1", "X", "200", "127");
	id[4] = order(&c, "2", "X", "-500", "128");
	id[5] = order(&c, "2", "X", "-200", "140");
	id[6] = order(&c, "1", "X", "400", "125");
	/* Nothing has traded yet: best bid 127 < best ask 128. */
	char xml[512], want[512];
	snprintf(xml, sizeof(xml),
		 "<transactions id=\"1\"><query id=\"%llu\"/>"
		 "</transactions>",
		 (unsigned long long)id[3]);
	snprintf(want, sizeof(want), "results(status[id=%llu](open[shares=200]))",
		 (unsigned long long)id[3]);
	expect(&c, xml, want);
	id[7] = order(&c, "2", "X", "-400", "124");
	for (int i = 1; i <= 7; i++)
		for (int k = 1; k < i; k++)
			ck_assert_uint_ne(id[i], id[k]);
	/* Order 7: 200 @127 against order 3, then 200 @125 against order 1
	 * (order 1 came before order 6 at the same price). */
	snprintf(xml, sizeof(xml),
		 "<transactions id=\"2\"><query id=\"%llu\"/>"
		 "</transactions>",
		 (unsigned long long)id[7]);
	snprintf(want, sizeof(want),
		 "results(status[id=%llu](executed[price=127 "
		 "shares=200 time=T] executed[price=125 shares=200 time=T]))",
		 (unsigned long long)id[7]);
	expect(&c, xml, want);
	/* Order 1 keeps 100 open; 3 is done; 6 untouched. */
	snprintf(xml, sizeof(xml),
		 "<transactions id=\"1\"><query id=\"%llu\"/>"
		 "<query id=\"%llu\"/><query id=\"%llu\"/></transactions>",
		 (unsigned long long)id[1], (unsigned long long)id[3],
		 (unsigned long long)id[6]);
	snprintf(want, sizeof(want),
		 "results(status[id=%llu](open[shares=100] executed[price=125 "
		 "shares=200 time=T]) status[id=%llu](executed[price=127 shares=200 "
		 "time=T]) status[id=%llu](open[shares=400]))",
		 (unsigned long long)id[1], (unsigned long long)id[3],
		 (unsigned long long)id[6]);
	expect(&c, xml, want);
	/* Order 1 still has time priority over order 6 for its remainder. */
	uint64_t id8 = order(&c, "2", "X", "-150", "125");
	snprintf(xml, sizeof(xml),
		 "<transactions id=\"1\"><query id=\"%llu\"/>"
		 "<query id=\"%llu\"/></transactions>",
		 (unsigned long long)id[1], (unsigned long long)id[6]);
	snprintf(
		want, sizeof(want),
		"results(status[id=%llu](executed[price=125 shares=200 time=T] "
		"executed[price=125 shares=100 time=T]) status[id=%llu](open[shares=350] "
		"executed[price=125 shares=50 time=T]))",
		(unsigned long long)id[1], (unsigned long long)id[6]);
	expect(&c, xml, want);
	(void)id8;
	/* Cash: account 1 paid 300@125 + 200@127 + 50@125 and holds 350@125
	 * for order 6; account 2 received the same. */
	account_is(1, "887100", "43750");
	account_is(2, "70150", "0");
	position_is(1, "X", "550", "0");
	position_is(2, "X", "8650", "800");
	client_close(&c);
	stop_clean();
}
END_TEST

/* ---- every reply and error of the protocol ---- */

START_TEST(create_replies_and_errors)
{
	start_default();
	struct client c;
	conn(&c);
	expect(&c, "<create></create>", "results");
	ck_assert_str_eq(
		ask(&c,
		    "<create><account id=\"7\" balance=\"12.5\"/>"
		    "<account id=\"7\" balance=\"1\"/>"
		    "<account id=\"8\" balance=\"-1\"/>"
		    "<account id=\"x9\" balance=\"1\"/>"
		    "<account id=\"10\" balance=\"1.000000001\"/>"
		    "<symbol sym=\"AB1\"><account id=\"7\">5</account>"
		    "<account id=\"99\">5</account>"
		    "<account id=\"7\">0.5</account></symbol>"
		    "<symbol sym=\"B-D\"><account id=\"7\">1</account></symbol>"
		    "<symbol sym=\"AB1\"><account id=\"7\">0</account></symbol>"
		    "</create>",
		    CANON_NO_TEXT),
		"results(created[id=7] error[id=7] error[id=8] error[id=x9] "
		"error[id=10] created[id=7 sym=AB1] error[id=99 sym=AB1] "
		"created[id=7 sym=AB1] error[id=7 sym=B-D] error[id=7 sym=AB1])");
	ck_assert_str_eq(text_of(1), "Account already exists");
	text_starts(2, "Invalid balance");
	text_starts(3, "Invalid account id");
	text_starts(4, "Invalid balance");
	ck_assert_str_eq(text_of(6), "Account does not exist");
	text_starts(8, "Invalid symbol");
	text_starts(9, "Invalid amount");
	account_is(7, "12.5", "0");
	position_is(7, "AB1", "5.5", "0");
	/* Attribute values are echoed exactly as written, escapes included. */
	/* Account ids compare as numbers (007 is 7), and are echoed as
	 * written. */
	expect(&c, "<create><account id=\"007\" balance=\"3\"/></create>",
	       "results(error[id=007]\"Account already exists\")");
	ck_assert_str_eq(ask(&c,
			     "<create><account id=\"8\" balance=\"3\"/>"
			     "<symbol sym=\"a&amp;b\"><account id=\"8\">1</account>"
			     "</symbol></create>",
			     CANON_NO_TEXT),
			 "results(created[id=8] error[id=8 sym=a&b])");
	text_starts(1, "Invalid symbol");
	client_close(&c);
	stop_clean();
}
END_TEST

START_TEST(transaction_replies_and_errors)
{
	start_default();
	struct client c;
	conn(&c);
	expect(&c,
	       "<create><account id=\"1\" balance=\"1000\"/>"
	       "<account id=\"2\" balance=\"1000\"/>"
	       "<symbol sym=\"S\"><account id=\"1\">10</account></symbol></create>",
	       "results(created[id=1] created[id=2] created[id=1 sym=S])");
	/* Empty transactions. */
	expect(&c, "<transactions id=\"1\"></transactions>", "results");
	/* Funds, shares, symbols, amounts, limits. */
	ck_assert_str_eq(ask(&c,
			     "<transactions id=\"1\">"
			     "<order sym=\"S\" amount=\"11\" limit=\"100\"/>"
			     "<order sym=\"S\" amount=\"-11\" limit=\"1\"/>"
			     "<order sym=\"NOPE\" amount=\"1\" limit=\"1\"/>"
			     "<order sym=\"S\" amount=\"0\" limit=\"1\"/>"
			     "<order sym=\"S\" amount=\"1\" limit=\"0\"/>"
			     "<order sym=\"S\" amount=\"1\" limit=\"-5\"/>"
			     "<order sym=\"S\" amount=\"1.00001\" limit=\"1\"/>"
			     "<query id=\"424242\"/>"
			     "<cancel id=\"424242\"/>"
			     "<query id=\"abc\"/>"
			     "</transactions>",
			     CANON_NO_TEXT),
			 "results(error[amount=11 limit=100 sym=S] "
			 "error[amount=-11 limit=1 sym=S] "
			 "error[amount=1 limit=1 sym=NOPE] "
			 "error[amount=0 limit=1 sym=S] error[amount=1 limit=0 sym=S] "
			 "error[amount=1 limit=-5 sym=S] "
			 "error[amount=1.00001 limit=1 sym=S] "
			 "error[id=424242] error[id=424242] error[id=abc])");
	ck_assert_str_eq(text_of(0), "Insufficient funds");
	ck_assert_str_eq(text_of(1), "Insufficient shares");
	ck_assert_str_eq(text_of(2), "Symbol does not exist");
	text_starts(3, "Invalid amount");
	text_starts(4, "Invalid limit price");
	text_starts(5, "Invalid limit price");
	text_starts(6, "Invalid amount");
	ck_assert_str_eq(text_of(7), "Order does not exist");
	ck_assert_str_eq(text_of(8), "Order does not exist");
	text_starts(9, "Invalid order id");
	/* Nothing changed. */
	account_is(1, "1000", "0");
	position_is(1, "S", "10", "0");
	/* A sell reserves shares; another account cannot see or cancel it. */
	uint64_t id = order(&c, "1", "S", "-4", "2.5");
	position_is(1, "S", "6", "4");
	char xml[512], want[512];
	snprintf(xml, sizeof(xml),
		 "<transactions account=\"2\"><query id=\"%llu\"/>"
		 "<cancel id=\"%llu\"/></transactions>",
		 (unsigned long long)id, (unsigned long long)id);
	snprintf(want, sizeof(want), "results(error[id=%llu] error[id=%llu])",
		 (unsigned long long)id, (unsigned long long)id);
	ck_assert_str_eq(ask(&c, xml, CANON_NO_TEXT), want);
	ck_assert_str_eq(text_of(0), "Order belongs to another account");
	ck_assert_str_eq(text_of(1), "Order belongs to another account");
	/* A buy reserves amount x limit and is refunded the difference when
	 * it executes below its limit; cancel refunds exactly the open part. */
	uint64_t buy = order(&c, "2", "S", "3", "3");
	/* Reserved 3 x 3, executed at the resting 2.5: 1.5 refunded. */
	account_is(2, "992.5", "0");
	position_is(1, "S", "6", "1");
	snprintf(xml, sizeof(xml),
		 "<transactions id=\"1\"><query id=\"%llu\"/>"
		 "<cancel id=\"%llu\"/><query id=\"%llu\"/><cancel id=\"%llu\"/>"
		 "</transactions>",
		 (unsigned long long)id, (unsigned long long)id, (unsigned long long)id,
		 (unsigned long long)id);
	snprintf(want, sizeof(want),
		 "results(status[id=%llu](open[shares=1] executed[price=2.5 shares=3 "
		 "time=T]) canceled[id=%llu](canceled[shares=1 time=T] "
		 "executed[price=2.5 shares=3 time=T]) status[id=%llu](canceled[shares=1 "
		 "time=T] executed[price=2.5 shares=3 time=T]) error[id=%llu])",
		 (unsigned long long)id, (unsigned long long)id, (unsigned long long)id,
		 (unsigned long long)id);
	ck_assert_str_eq(ask(&c, xml, CANON_NO_TEXT), want);
	position_is(1, "S", "7", "0");
	account_is(1, "1007.5", "0");
	/* The executed buy: status has no open part, cancel is refused. */
	snprintf(xml, sizeof(xml),
		 "<transactions id=\"2\"><cancel id=\"%llu\"/>"
		 "<query id=\"%llu\"/></transactions>",
		 (unsigned long long)buy, (unsigned long long)buy);
	snprintf(want, sizeof(want),
		 "results(error[id=%llu] status[id=%llu]("
		 "executed[price=2.5 shares=3 time=T]))",
		 (unsigned long long)buy, (unsigned long long)buy);
	ck_assert_str_eq(ask(&c, xml, CANON_NO_TEXT), want);
	/* Cancel of an open buy refunds amount x limit. */
	uint64_t b2 = order(&c, "2", "S", "10", "1.5");
	account_is(2, "977.5", "15");
	snprintf(xml, sizeof(xml),
		 "<transactions id=\"2\"><cancel id=\"%llu\"/>"
		 "</transactions>",
		 (unsigned long long)b2);
	snprintf(want, sizeof(want),
		 "results(canceled[id=%llu](canceled[shares=10 "
		 "time=T]))",
		 (unsigned long long)b2);
	expect(&c, xml, want);
	account_is(2, "992.5", "0");
	position_is(2, "S", "3", "0");
	client_close(&c);
	stop_clean();
}
END_TEST

START_TEST(invalid_account_answers_every_child)
{
	start_default();
	struct client c;
	conn(&c);
	ck_assert_str_eq(
		ask(&c,
		    "<transactions id=\"55\">"
		    "<order sym=\"S\" amount=\"1\" limit=\"1\"/>"
		    "<query id=\"3\"/><cancel id=\"4\"/>"
		    "<order sym=\"T\" amount=\"-2\" limit=\"9.5\"/>"
		    "</transactions>",
		    0),
		"results(error[amount=1 limit=1 sym=S]\"Account does not exist\" "
		"error[id=3]\"Account does not exist\" "
		"error[id=4]\"Account does not exist\" "
		"error[amount=-2 limit=9.5 sym=T]\"Account does not exist\")");
	ck_assert_str_eq(ask(&c,
			     "<transactions id=\"x\"><query id=\"3\"/>"
			     "<cancel id=\"4\"/></transactions>",
			     CANON_NO_TEXT),
			 "results(error[id=3] error[id=4])");
	text_starts(0, "Invalid account id");
	client_close(&c);
	stop_clean();
}
END_TEST

START_TEST(unknown_elements_answered_in_position)
{
	start_default();
	struct client c;
	conn(&c);
	expect(&c, "<create><account id=\"1\" balance=\"10\"/></create>",
	       "results(created[id=1])");
	ck_assert_str_eq(ask(&c,
			     "<transactions id=\"1\">stray text<bogus a=\"1\"/>"
			     "<query id=\"9\"/> more <frob><x/></frob></transactions>",
			     CANON_NO_TEXT),
			 "results(error error[id=9] error)");
	text_starts(0, "Unknown element");
	ck_assert_ptr_nonnull(strstr(text_of(0), "bogus"));
	ck_assert_str_eq(text_of(1), "Order does not exist");
	ck_assert_ptr_nonnull(strstr(text_of(2), "frob"));
	ck_assert_str_eq(ask(&c,
			     "<create><account id=\"2\" balance=\"1\"/><what/>"
			     "</create>",
			     CANON_NO_TEXT),
			 "results(created[id=2] error)");
	ck_assert_str_eq(ask(&c, "<hello/>", CANON_NO_TEXT), "results(error)");
	client_close(&c);
	stop_clean();
}
END_TEST

START_TEST(order_then_query_in_one_request)
{
	static const char *const extra[] = {SMALL_CAPS, "--shards", "1", NULL};
	start_with(extra);
	struct client c;
	conn(&c);
	expect(&c,
	       "<create><account id=\"1\" balance=\"100\"/>"
	       "<symbol sym=\"Q\"><account id=\"1\">100</account></symbol></create>",
	       "results(created[id=1] created[id=1 sym=Q])");
	uint64_t first = order(&c, "1", "Q", "-1", "50");
	/* One shard: the next order takes the next record, id + 1. */
	char xml[512], want[512];
	snprintf(xml, sizeof(xml),
		 "<transactions id=\"1\">"
		 "<order sym=\"Q\" amount=\"-2\" limit=\"60\"/><query id=\"%llu\"/>"
		 "<cancel id=\"%llu\"/><query id=\"%llu\"/></transactions>",
		 (unsigned long long)first + 1, (unsigned long long)first + 1,
		 (unsigned long long)first + 1);
	snprintf(want, sizeof(want),
		 "results(opened[amount=-2 id=%llu limit=60 sym=Q] "
		 "status[id=%llu](open[shares=2]) canceled[id=%llu](canceled[shares=2 "
		 "time=T]) status[id=%llu](canceled[shares=2 time=T]))",
		 (unsigned long long)first + 1, (unsigned long long)first + 1,
		 (unsigned long long)first + 1, (unsigned long long)first + 1);
	expect(&c, xml, want);
	client_close(&c);
	stop_clean();
}
END_TEST

/* ---- replies that are large ---- */

/* Sends raw xml and returns the whole reply (heap, NUL-terminated), read
 * with a scan that only looks at the new bytes, so large replies are
 * cheap to read. */
static char *ask_big(struct client *c, const char *xml, size_t *outlen)
{
	ck_assert_int_eq(client_send(c, xml, T_MS), 0);
	size_t cap = 1 << 20, len = 0;
	char *buf = malloc(cap);
	ck_assert_ptr_nonnull(buf);
	for (;;) {
		if (cap - len < 65536) {
			cap *= 2;
			buf = realloc(buf, cap);
			ck_assert_ptr_nonnull(buf);
		}
		struct pollfd pf = {.fd = c->fd, .events = POLLIN};
		ck_assert_int_eq(poll(&pf, 1, T_MS), 1);
		ssize_t n = recv(c->fd, buf + len, cap - len - 1, 0);
		ck_assert_int_gt(n, 0);
		len += (size_t)n;
		buf[len] = 0;
		if (len >= 11 && !memcmp(buf + len - 11, "</results>\n", 11))
			break;
	}
	*outlen = len;
	return buf;
}

static size_t count_of(const char *hay, const char *needle)
{
	size_t n = 0;
	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	return n;
}

/* Account 2 sells `fills` single shares of X at 10, account 1 buys them
 * all (plus `extra` that rest): returns the buy's id. */
static uint64_t order_with_fills(struct client *c, int fills, int extra)
{
	size_t cap = (size_t)fills * 64 + 128, len;
	char *xml = malloc(cap);
	int n = snprintf(xml, cap, "<transactions id=\"2\">");
	for (int i = 0; i < fills; i++)
		n += snprintf(xml + n, cap - (size_t)n,
			      "<order sym=\"X\" amount=\"-1\" limit=\"10\"/>");
	snprintf(xml + n, cap - (size_t)n, "</transactions>");
	char *rep = ask_big(c, xml, &len);
	ck_assert_uint_eq(count_of(rep, "<opened"), (size_t)fills);
	free(rep);
	free(xml);
	char amount[16];
	snprintf(amount, sizeof(amount), "%d", fills + extra);
	return order(c, "1", "X", amount, "10");
}

static void create_traders(struct client *c)
{
	expect(c,
	       "<create><account id=\"1\" balance=\"1000000\"/>"
	       "<account id=\"2\" balance=\"0\"/>"
	       "<symbol sym=\"X\"><account id=\"2\">100000</account></symbol></create>",
	       "results(created[id=1] created[id=2] created[id=2 sym=X])");
}

/* A fill listing above --max-reply costs only its own item an error that
 * says so; the orders around it are placed and answered with their ids
 * (before: the whole reply became "Request too large" while the orders
 * were placed).  A cancel whose listing does not fit says it canceled.
 * And a reply far larger than --max-reply in total streams whole. */
START_TEST(listing_above_max_reply_answers_every_item)
{
	static const char *const extra[] = {SMALL_CAPS, "--max-reply", "4096", NULL};
	start_with(extra);
	struct client c;
	conn(&c);
	create_traders(&c);
	uint64_t big = order_with_fills(&c, 100, 0);
	char xml[512], want[512];
	snprintf(xml, sizeof(xml),
		 "<transactions id=\"1\"><order sym=\"X\" amount=\"1\" limit=\"1\"/>"
		 "<query id=\"%llu\"/><order sym=\"X\" amount=\"2\" limit=\"1\"/>"
		 "</transactions>",
		 (unsigned long long)big);
	ask(&c, xml, 0);
	ck_assert_int_eq(xdoc_nchildren(&last, 0), 3);
	ck_assert_str_eq(last.nodes[xdoc_child(&last, 0, 0)].name, "opened");
	ck_assert_str_eq(last.nodes[xdoc_child(&last, 0, 2)].name, "opened");
	snprintf(want, sizeof(want), "error[id=%llu]", (unsigned long long)big);
	ck_assert_str_eq(last.nodes[xdoc_child(&last, 0, 1)].name, "error");
	ck_assert_str_eq(text_of(1),
			 "Reply too large: this order's fills do not fit in a reply");
	/* Both orders rest: 1 + 2 shares at 1 are reserved. */
	account_is(1, "998997", "3");

	/* A cancel of a partly filled order whose fills do not fit. */
	uint64_t part = order_with_fills(&c, 100, 5);
	snprintf(xml, sizeof(xml),
		 "<transactions id=\"1\"><cancel id=\"%llu\"/></transactions>",
		 (unsigned long long)part);
	ask(&c, xml, 0);
	ck_assert_str_eq(text_of(0),
			 "Reply too large: this order's fills do not fit in a "
			 "reply: the order was canceled");
	account_is(1, "997997", "3");

	/* 30 queries of a 30-fill order: each listing fits, the reply (about
	 * 50 KB) is far above 4096 and arrives whole. */
	uint64_t mid = order_with_fills(&c, 30, 0);
	size_t cap = 30 * 32 + 64, n = 0, len;
	char *qx = malloc(cap);
	n += (size_t)snprintf(qx + n, cap - n, "<transactions id=\"1\">");
	for (int i = 0; i < 30; i++)
		n += (size_t)snprintf(qx + n, cap - n, "<query id=\"%llu\"/>",
				      (unsigned long long)mid);
	snprintf(qx + n, cap - n, "</transactions>");
	char *rep = ask_big(&c, qx, &len);
	ck_assert_uint_gt(len, 4096 * 8);
	ck_assert_uint_eq(count_of(rep, "<status"), 30);
	ck_assert_uint_eq(count_of(rep, "<executed"), 900);
	ck_assert_uint_eq(count_of(rep, "<?xml"), 1);
	free(rep);
	free(qx);
	(void)want;
	client_close(&c);
	stop_clean();
}
END_TEST

/* Peak resident memory of a process, in KiB. */
static long vm_hwm_kb(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "re");
	ck_assert_ptr_nonnull(f);
	long kb = -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmHWM:", 6))
			kb = strtol(line + 6, NULL, 10);
	fclose(f);
	return kb;
}

/* A small request with a huge reply (150 queries of an order with 1,000
 * fills: about 9 MB) for a client that does not read: the gateway holds
 * about its unsent-output bound, not the reply (before: the whole reply,
 * twice), and serves another client meanwhile; once read, it is whole. */
START_TEST(huge_reply_is_streamed_with_back_pressure)
{
	static const char *const extra[] = {SMALL_CAPS, "--gateways", "1", NULL};
#ifdef __SANITIZE_ADDRESS__
	/* AddressSanitizer keeps freed memory out of use (its quarantine),
	 * so every buffer the gateway frees and allocates again would count
	 * as new: without it, peak memory is the program's again (plus the
	 * sanitizer's shadow, an eighth of what is touched). */
	setenv("ASAN_OPTIONS", "quarantine_size_mb=0", 1);
#endif
	start_with(extra);
	pid_t gwp = exchange_child(&ex, "shmex-gateway", 0);
	ck_assert_int_gt(gwp, 0);
	struct client c, other;
	conn(&c);
	conn(&other);
	create_traders(&c);
	uint64_t big = order_with_fills(&c, 1000, 0);
	long before = vm_hwm_kb(gwp);
	size_t cap = 150 * 32 + 64, n = 0;
	char *qx = malloc(cap);
	n += (size_t)snprintf(qx + n, cap - n, "<transactions id=\"1\">");
	for (int i = 0; i < 150; i++)
		n += (size_t)snprintf(qx + n, cap - n, "<query id=\"%llu\"/>",
				      (unsigned long long)big);
	snprintf(qx + n, cap - n, "</transactions>");
	ck_assert_int_eq(client_send(&c, qx, T_MS), 0);
	usleep(300000);
	/* The held client does not stop the others. */
	expect(&other, "<create><account id=\"7\" balance=\"1\"/></create>",
	       "results(created[id=7])");
	/* Counted in (the previous 8 bytes + this read): "<executed" is 9
	 * bytes long, so a match is never counted twice nor missed. */
	size_t total = 0, executed = 0, keep = 0;
	char *buf = malloc((1 << 16) + 16);
	for (;;) {
		struct pollfd pf = {.fd = c.fd, .events = POLLIN};
		ck_assert_int_eq(poll(&pf, 1, T_MS), 1);
		ssize_t got = recv(c.fd, buf + keep, 1 << 16, 0);
		ck_assert_int_gt(got, 0);
		size_t have = keep + (size_t)got;
		buf[have] = 0;
		executed += count_of(buf, "<executed");
		total += (size_t)got;
		if (have >= 11 && !memcmp(buf + have - 11, "</results>\n", 11))
			break;
		keep = have < 8 ? have : 8;
		memmove(buf, buf + have - keep, keep);
	}
	free(buf);
	free(qx);
	ck_assert_uint_eq(executed, 150000);
	ck_assert_uint_gt(total, 8u << 20);
	long after = vm_hwm_kb(gwp);
	/* ThreadSanitizer's shadow takes memory beside every byte the
	 * gateway touches (twice to four times as much, by its documents);
	 * the bound is the program's, times that. */
	long bound_kb = 6 * 1024;
#ifdef __SANITIZE_THREAD__
	bound_kb *= 3;
#endif
	fprintf(stderr, "huge reply: gateway peak memory grew by %ld KiB for %zu bytes\n",
		after - before, total);
	ck_assert_msg(after - before < bound_kb,
		      "gateway peak memory grew by %ld KiB for a %zu-byte reply",
		      after - before, total);
	client_close(&c);
	client_close(&other);
	stop_clean();
}
END_TEST

/* Shared memory: the group may read every region but write only the
 * reader tables (a group member's shmex-query registers there); before,
 * accounts, positions, rings and control were group-writable. */
START_TEST(shared_memory_is_group_read_only)
{
	start_default();
	char prefix[96];
	snprintf(prefix, sizeof(prefix), "shmex.%s.", inst);
	DIR *d = opendir("/dev/shm");
	ck_assert_ptr_nonnull(d);
	int seen = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, prefix, strlen(prefix)))
			continue;
		char path[512];
		snprintf(path, sizeof(path), "/dev/shm/%s", e->d_name);
		struct stat st;
		ck_assert_int_eq(stat(path, &st), 0);
		bool readers = !strncmp(e->d_name + strlen(prefix), "readers.", 8);
		ck_assert_msg(!(st.st_mode & S_IWOTH), "%s is world-writable", e->d_name);
		ck_assert_msg(readers || !(st.st_mode & S_IWGRP),
			      "%s is group-writable (%o)", e->d_name,
			      (unsigned)(st.st_mode & 0777));
		seen++;
	}
	closedir(d);
	ck_assert_int_ge(seen, 6);
	stop_clean();
}
END_TEST

/* tif="IOC" reaches the matcher (before: ignored, the order rested); an
 * unknown attribute is named in the item's error and changes nothing;
 * postonly="yes" reaches the matcher, which refuses one that would cross. */
START_TEST(order_types_over_xml)
{
	static const char *const extra[] = {SMALL_CAPS, "--shards", "1", NULL};
	start_with(extra);
	struct client c;
	conn(&c);
	expect(&c,
	       "<create><account id=\"1\" balance=\"100\"/>"
	       "<symbol sym=\"Q\"><account id=\"1\">1</account></symbol></create>",
	       "results(created[id=1] created[id=1 sym=Q])");
	uint64_t id = 0;
	ask(&c,
	    "<transactions id=\"1\"><order sym=\"Q\" amount=\"2\" limit=\"5\" "
	    "tif=\"IOC\"/><order sym=\"Q\" amount=\"2\" limit=\"5\" when=\"now\"/>"
	    "</transactions>",
	    0);
	int k = xdoc_child(&last, 0, 0);
	ck_assert_msg(!strcmp(last.nodes[k].name, "opened"), "IOC order: %s", text_of(0));
	id = strtoull(xnode_attr(&last.nodes[k], "id"), NULL, 10);
	ck_assert_str_eq(text_of(1), "Unknown attribute: when");
	char xml[256], want[256];
	snprintf(xml, sizeof(xml),
		 "<transactions id=\"1\"><query id=\"%llu\"/></transactions>",
		 (unsigned long long)id);
	snprintf(want, sizeof(want),
		 "results(status[id=%llu](canceled[shares=2 time=T]))",
		 (unsigned long long)id);
	expect(&c, xml, want);
	/* Nothing rests and nothing stays reserved. */
	account_is(1, "100", "0");
	/* postonly="yes": against a resting sell at 5 (the account's own:
	 * crossing is crossing), a buy at 5 is refused by the matcher and
	 * reserves nothing; one at 4 rests. */
	ask(&c,
	    "<transactions id=\"1\"><order sym=\"Q\" amount=\"-1\" limit=\"5\"/>"
	    "<order sym=\"Q\" amount=\"1\" limit=\"5\" postonly=\"yes\"/>"
	    "<order sym=\"Q\" amount=\"1\" limit=\"4\" postonly=\"yes\"/>"
	    "</transactions>",
	    0);
	ck_assert_str_eq(last.nodes[xdoc_child(&last, 0, 0)].name, "opened");
	ck_assert_str_eq(text_of(1), "Post-only order would cross the book");
	ck_assert_str_eq(last.nodes[xdoc_child(&last, 0, 2)].name, "opened");
	account_is(1, "96", "4");
	client_close(&c);
	stop_clean();
}
END_TEST

/* What a start needs in /dev/shm is known before anything is created: a
 * start that cannot fit is refused with the need, the free space and the
 * options that shrink it, and creates nothing (before: "No space left on
 * device" from a matcher and "the book of that shard is gone"); and the
 * figure is what a running exchange really occupies. */
START_TEST(shm_space_is_checked_before_anything_is_created)
{
	test_instance(inst, sizeof(inst));
	note_instance(inst);
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(p[1], 2);
		int devnull = open("/dev/null", O_WRONLY);
		dup2(devnull, 1);
		execl(test_bin("shmex"), "shmex", "--instance", inst, "--port", "0",
		      "--orders", "1000000000", "--fills", "1000000000", "--no-journal",
		      (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	char err[4096];
	size_t n = 0;
	ssize_t got;
	while (n < sizeof(err) - 1 &&
	       (got = read(p[0], err + n, sizeof(err) - 1 - n)) > 0)
		n += (size_t)got;
	err[n] = 0;
	close(p[0]);
	int st = test_wait_pid(pid, T_MS);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1);
	ck_assert_msg(strstr(err, "MiB of shared memory and /dev/shm has") &&
			      strstr(err, "nothing was created") &&
			      strstr(err, "--orders"),
		      "%s", err);
	ck_assert_ptr_null(strstr(err, "No space left"));
	ck_assert_int_eq(test_count_objects(inst), 0);

	/* The estimate of a real start matches what it occupies. */
	start_default();
	struct shm_instance si;
	ck_assert_int_eq(shm_instance_attach(inst, SHM_ROLE_OBSERVER, 0, &si), 0);
	struct shm_footprint f;
	shm_instance_footprint(&si.settings, &f);
	shm_instance_detach(&si);
	char prefix[96];
	snprintf(prefix, sizeof(prefix), "shmex.%s.", inst);
	DIR *d = opendir("/dev/shm");
	ck_assert_ptr_nonnull(d);
	unsigned long long used = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, prefix, strlen(prefix)))
			continue;
		char path[512];
		snprintf(path, sizeof(path), "/dev/shm/%s", e->d_name);
		struct stat sb;
		ck_assert_int_eq(stat(path, &sb), 0);
		used += ((unsigned long long)sb.st_size + 4095) & ~4095ull;
	}
	closedir(d);
	ck_assert_msg(used <= f.total && used * 100 >= f.total * 95,
		      "estimated %llu bytes, occupied %llu", (unsigned long long)f.total,
		      used);
	stop_clean();
}
END_TEST

/* Runs shmex with extra arguments and returns its exit status; its
 * stderr goes to err. */
static int run_shmex(const char *const *args, char *err, size_t cap)
{
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(p[1], 2);
		int devnull = open("/dev/null", O_WRONLY);
		dup2(devnull, 1);
		const char *argv[16] = {"shmex"};
		for (int i = 0; args[i] && i < 14; i++)
			argv[1 + i] = args[i];
		execv(test_bin("shmex"), (char *const *)argv);
		_exit(127);
	}
	close(p[1]);
	size_t n = 0;
	ssize_t got;
	while (n < cap - 1 && (got = read(p[0], err + n, cap - 1 - n)) > 0)
		n += (size_t)got;
	err[n] = 0;
	close(p[0]);
	return test_wait_pid(pid, T_MS);
}

/* An object of the instance held by a live process of another build is
 * refused with that reason, not just "in use". */
START_TEST(object_of_another_build_is_named)
{
	test_instance(inst, sizeof(inst));
	note_instance(inst);
	struct shm_region r;
	ck_assert_int_eq(
		shm_region_create(&r, inst, "book.0", SHM_KIND_BOOK, 64, NULL, 0, 0600),
		0);
	shm_region_hdr(&r)->signature ^= 1; /* "another build" */
	shm_region_publish(&r);
	char err[4096];
	const char *const args[] = {"--instance", inst, "--port", "0", NULL};
	int st = run_shmex(args, err, sizeof(err));
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1);
	ck_assert_msg(strstr(err, "made by another build of shmex"), "%s", err);
	ck_assert_int_eq(test_count_objects(inst), 1); /* left alone */
	shm_region_detach(&r);
	test_cleanup_instance(inst);
}
END_TEST

/* ---- framing and connection behaviour ---- */

START_TEST(malformed_xml_keeps_connection)
{
	start_default();
	struct client c;
	conn(&c);
	ck_assert_str_eq(ask(&c, "<create><account id=\"1\"", CANON_NO_TEXT),
			 "results(error)");
	text_starts(0, "Malformed XML");
	ck_assert_str_eq(
		ask(&c, "<!DOCTYPE x [<!ENTITY a \"aaaa\">]><create/>", CANON_NO_TEXT),
		"results(error)");
	ck_assert_str_eq(ask(&c, "", CANON_NO_TEXT), "results(error)");
	/* Same connection, still usable. */
	expect(&c, "<create><account id=\"1\" balance=\"1\"/></create>",
	       "results(created[id=1])");
	client_close(&c);
	stop_clean();
}
END_TEST

START_TEST(bad_and_huge_length_lines_close)
{
	static const char *const extra[] = {SMALL_CAPS, "--max-request", "4096", NULL};
	start_with(extra);
	struct client c;
	const char *rep;
	size_t len;
	char canon[256];
	conn(&c);
	ck_assert_int_eq(client_send_raw(&c, "hello\n", 6, T_MS), 0);
	ck_assert_int_eq(client_recv(&c, &rep, &len, T_MS), 0);
	xml_canon(rep, len, canon, sizeof(canon), 0);
	ck_assert_str_eq(canon, "results(error\"Invalid request length line\")");
	ck_assert_int_eq(client_wait_closed(&c, T_MS), 0);
	client_close(&c);
	conn(&c);
	ck_assert_int_eq(client_send_raw(&c, "4097\n", 5, T_MS), 0);
	ck_assert_int_eq(client_recv(&c, &rep, &len, T_MS), 0);
	xml_canon(rep, len, canon, sizeof(canon), 0);
	ck_assert_str_eq(canon, "results(error\"Request too large\")");
	ck_assert_int_eq(client_wait_closed(&c, T_MS), 0);
	client_close(&c);
	conn(&c);
	ck_assert_int_eq(client_send_raw(&c, "123456789012345\n", 16, T_MS), 0);
	ck_assert_int_eq(client_recv(&c, &rep, &len, T_MS), 0);
	ck_assert_ptr_nonnull(strstr(rep, "<error>"));
	ck_assert_int_eq(client_wait_closed(&c, T_MS), 0);
	client_close(&c);
	/* \r\n and several requests in one write still work. */
	conn(&c);
	const char *doc = "<create><account id=\"5\" balance=\"1\"/></create>";
	char two[256];
	snprintf(two, sizeof(two), "%zu\r\n%s17\n<create></create>\n", strlen(doc), doc);
	ck_assert_int_eq(client_send_raw(&c, two, strlen(two), T_MS), 0);
	ck_assert_int_eq(client_recv(&c, &rep, &len, T_MS), 0);
	xml_canon(rep, len, canon, sizeof(canon), 0);
	ck_assert_str_eq(canon, "results(created[id=5])");
	ck_assert_int_eq(client_recv(&c, &rep, &len, T_MS), 0);
	xml_canon(rep, len, canon, sizeof(canon), 0);
	ck_assert_str_eq(canon, "results");
	client_close(&c);
	stop_clean();
}
END_TEST

START_TEST(one_byte_writes)
{
	start_default();
	struct client c;
	conn(&c);
	char msg[512];
	int n = snprintf(msg, sizeof(msg), "%zu\n%s", strlen(handout_create),
			 handout_create);
	for (int i = 0; i < n; i++) {
		ck_assert_int_eq(client_send_raw(&c, msg + i, 1, T_MS), 0);
		if (i % 16 == 0)
			usleep(1000);
	}
	const char *rep;
	size_t len;
	char canon[256];
	ck_assert_int_eq(client_recv(&c, &rep, &len, T_MS), 0);
	xml_canon(rep, len, canon, sizeof(canon), 0);
	ck_assert_str_eq(canon, "results(created[id=123456] created[id=123456 sym=SPY])");
	client_close(&c);
	stop_clean();
}
END_TEST

START_TEST(stalled_request_hits_deadline)
{
	static const char *const extra[] = {SMALL_CAPS, "--deadline-ms", "400", NULL};
	start_with(extra);
	struct client slow, ok;
	conn(&slow);
	conn(&ok);
	ck_assert_int_eq(client_send_raw(&slow, "60\n<create><acc", 15, T_MS), 0);
	unsigned long long t0 = test_now_ns();
	expect(&ok, "<create><account id=\"1\" balance=\"1\"/></create>",
	       "results(created[id=1])");
	const char *rep;
	size_t len;
	char canon[256];
	ck_assert_int_eq(client_recv(&slow, &rep, &len, T_MS), 0);
	xml_canon(rep, len, canon, sizeof(canon), 0);
	ck_assert_str_eq(canon, "results(error\"Request not completed in time\")");
	ck_assert_int_eq(client_wait_closed(&slow, T_MS), 0);
	ck_assert_uint_ge(test_now_ns() - t0, 300000000ull);
	expect(&ok, "<create><account id=\"2\" balance=\"1\"/></create>",
	       "results(created[id=2])");
	client_close(&slow);
	client_close(&ok);
	stop_clean();
}
END_TEST

START_TEST(framed_replies_option)
{
	static const char *const extra[] = {SMALL_CAPS, "--frame-replies", NULL};
	start_with(extra);
	struct client c;
	conn(&c);
	c.framed = true;
	const char *rep;
	size_t len;
	ck_assert_int_eq(client_request(&c, "<create></create>", &rep, &len, T_MS), 0);
	char canon[64];
	xml_canon(rep, len, canon, sizeof(canon), 0);
	ck_assert_str_eq(canon, "results");
	ck_assert_int_eq(client_request(&c, handout_create, &rep, &len, T_MS), 0);
	ck_assert_ptr_nonnull(strstr(rep, "<created id=\"123456\"/>"));
	client_close(&c);
	stop_clean();
}
END_TEST

/* ---- many clients ---- */

#define NCONN 200
#define ROUNDS 8

START_TEST(concurrent_connections_conserve)
{
	start_default();
	static struct client cl[NCONN];
	static uint64_t ids[NCONN][ROUNDS];
	static int nids[NCONN];
	static const char *syms[] = {"AA", "BB", "CC", "DD"};
	struct client c;
	conn(&c);
	/* 200 accounts with 1000 cash and 100 of each symbol. */
	for (int i = 0; i < NCONN; i += 50) {
		char xml[16384];
		int n = snprintf(xml, sizeof(xml), "<create>");
		for (int k = i; k < i + 50; k++)
			n += snprintf(xml + n, sizeof(xml) - (size_t)n,
				      "<account id=\"%d\" balance=\"1000\"/>", 1000 + k);
		for (int s = 0; s < 4; s++) {
			n += snprintf(xml + n, sizeof(xml) - (size_t)n,
				      "<symbol sym=\"%s\">", syms[s]);
			for (int k = i; k < i + 50; k++)
				n += snprintf(xml + n, sizeof(xml) - (size_t)n,
					      "<account id=\"%d\">100</account>",
					      1000 + k);
			n += snprintf(xml + n, sizeof(xml) - (size_t)n, "</symbol>");
		}
		snprintf(xml + n, sizeof(xml) - (size_t)n, "</create>");
		const char *out = ask(&c, xml, 0);
		ck_assert(strstr(out, "error") == NULL);
	}
	for (int i = 0; i < NCONN; i++)
		conn(&cl[i]);
	unsigned seed = 12345;
	for (int r = 0; r < ROUNDS; r++) {
		/* Every connection sends, then every reply is collected: all
		 * 200 requests are in the exchange at the same time. */
		for (int i = 0; i < NCONN; i++) {
			seed = seed * 1103515245u + 12345u;
			int side = (seed >> 8) & 1;
			int amt = 1 + (int)((seed >> 12) % 20);
			int lim = 95 + (int)((seed >> 20) % 11);
			char xml[512];
			int n = snprintf(xml, sizeof(xml),
					 "<transactions id=\"%d\"><order sym=\"%s\" "
					 "amount=\"%s%d\" limit=\"%d\"/>",
					 1000 + i, syms[(seed >> 4) & 3], side ? "-" : "",
					 amt, lim);
			if (nids[i])
				n += snprintf(xml + n, sizeof(xml) - (size_t)n,
					      "<query id=\"%llu\"/>",
					      (unsigned long long)ids[i][nids[i] - 1]);
			snprintf(xml + n, sizeof(xml) - (size_t)n, "</transactions>");
			ck_assert_int_eq(client_send(&cl[i], xml, T_MS), 0);
		}
		for (int i = 0; i < NCONN; i++) {
			const char *rep;
			size_t len;
			ck_assert_int_eq(client_recv(&cl[i], &rep, &len, T_MS), 0);
			struct xdoc d;
			ck_assert_int_eq(xdoc_parse(&d, rep, len), 0);
			ck_assert_int_eq(xdoc_nchildren(&d, 0), nids[i] ? 2 : 1);
			int k = xdoc_child(&d, 0, 0);
			if (!strcmp(d.nodes[k].name, "opened"))
				ids[i][nids[i]++] =
					strtoull(xnode_attr(&d.nodes[k], "id"), NULL, 10);
			else
				ck_assert_str_eq(d.nodes[k].name, "error");
			if (xdoc_nchildren(&d, 0) == 2)
				ck_assert_msg(!strcmp(d.nodes[xdoc_child(&d, 0, 1)].name,
						      "status"),
					      "query answered: %s", rep);
			xdoc_free(&d);
		}
	}
	/* Order ids are unique across all connections and shards. */
	static uint64_t all[NCONN * ROUNDS];
	int nall = 0;
	for (int i = 0; i < NCONN; i++)
		for (int k = 0; k < nids[i]; k++)
			all[nall++] = ids[i][k];
	ck_assert_int_gt(nall, NCONN);
	for (int a = 0; a < nall; a++)
		for (int b = a + 1; b < nall; b++)
			ck_assert_uint_ne(all[a], all[b]);
	/* Cancel everything still open, then audit. */
	for (int i = 0; i < NCONN; i++) {
		char xml[4096];
		int n = snprintf(xml, sizeof(xml), "<transactions id=\"%d\">", 1000 + i);
		for (int k = 0; k < nids[i]; k++)
			n += snprintf(xml + n, sizeof(xml) - (size_t)n,
				      "<cancel id=\"%llu\"/>",
				      (unsigned long long)ids[i][k]);
		snprintf(xml + n, sizeof(xml) - (size_t)n, "</transactions>");
		ck_assert_int_eq(client_send(&cl[i], xml, T_MS), 0);
	}
	for (int i = 0; i < NCONN; i++) {
		const char *rep;
		size_t len;
		ck_assert_int_eq(client_recv(&cl[i], &rep, &len, T_MS), 0);
		client_close(&cl[i]);
	}
	struct shm_accounts a;
	ck_assert_int_eq(shm_accounts_attach(&a, inst, SHM_RDONLY), 0);
	struct shm_accounts_totals t;
	ck_assert_int_eq(shm_accounts_totals(&a, &t), 0);
	ck_assert_uint_eq(t.accounts, NCONN);
	ck_assert_int_eq(t.reserved, 0);
	ck_assert_int_eq(t.balance, cash("200000"));
	ck_assert_int_eq(t.deposited, cash("200000"));
	shm_accounts_detach(&a);
	for (int s = 0; s < 4; s++) {
		char name[16];
		ck_assert(shm_symbol_pack(name, syms[s], 2));
		struct shm_positions p;
		ck_assert_int_eq(shm_positions_attach(&p, inst,
						      shm_shard_of_symbol(syms[s], 2, 2),
						      SHM_RDONLY),
				 0);
		uint32_t sidx;
		ck_assert_int_eq(shm_positions_symbol_find(&p, name, &sidx), 0);
		struct shm_positions_totals pt;
		ck_assert_int_eq(shm_positions_totals(&p, sidx, &pt), 0);
		ck_assert_int_eq(pt.created, qty("20000"));
		ck_assert_int_eq(pt.amount, qty("20000"));
		ck_assert_int_eq(pt.reserved, 0);
		shm_positions_detach(&p);
	}
	client_close(&c);
	stop_clean();
}
END_TEST

/* Pid of the gateway process that holds the server side of c, or -1. */
static pid_t conn_owner(const struct client *c, const pid_t *gws, int ngw)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	if (getsockname(c->fd, (struct sockaddr *)&sa, &sl) != 0)
		return -1;
	unsigned cport = ntohs(sa.sin_port);
	FILE *f = fopen("/proc/net/tcp", "re");
	if (!f)
		return -1;
	char line[512];
	unsigned long inode = 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned lport, rport;
		unsigned long ino;
		if (sscanf(line,
			   " %*d: %*8x:%x %*8x:%x %*x %*x:%*x %*x:%*x %*x %*d %*d %lu",
			   &lport, &rport, &ino) != 3)
			continue;
		if ((int)lport == ex.port && rport == cport) {
			inode = ino;
			break;
		}
	}
	fclose(f);
	if (!inode)
		return -1;
	char want[64];
	snprintf(want, sizeof(want), "socket:[%lu]", inode);
	for (int g = 0; g < ngw; g++) {
		char dir[64];
		snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)gws[g]);
		DIR *d = opendir(dir);
		if (!d)
			continue;
		struct dirent *e;
		while ((e = readdir(d)) != NULL) {
			char path[400], target[128];
			snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
			ssize_t n = readlink(path, target, sizeof(target) - 1);
			if (n <= 0)
				continue;
			target[n] = 0;
			if (!strcmp(target, want)) {
				closedir(d);
				return gws[g];
			}
		}
		closedir(d);
	}
	return -1;
}

START_TEST(killed_gateway_is_restarted)
{
	start_default();
	pid_t gw[2] = {exchange_child(&ex, "shmex-gateway", 0),
		       exchange_child(&ex, "shmex-gateway", 1)};
	ck_assert_int_gt(gw[0], 0);
	ck_assert_int_gt(gw[1], 0);
	struct client c;
	conn(&c);
	expect(&c, "<create><account id=\"1\" balance=\"100\"/></create>",
	       "results(created[id=1])");
	client_close(&c);
	/* Open clients until both gateways hold some (bounded). */
	enum { N = 40 };
	static struct client cl[N];
	pid_t owner[N];
	int on[2] = {0, 0};
	int n = 0;
	for (; n < N && (n < 8 || !on[0] || !on[1]); n++) {
		conn(&cl[n]);
		expect(&cl[n], "<transactions id=\"1\"><query id=\"1\"/></transactions>",
		       "results(error[id=1]\"Order does not exist\")");
		owner[n] = conn_owner(&cl[n], gw, 2);
		ck_assert_int_gt(owner[n], 0);
		on[owner[n] == gw[1]]++;
	}
	/* Kill the gateway that has clients (gateway 1 if both do). */
	int victim = on[1] ? 1 : 0;
	ck_assert_int_eq(kill(gw[victim], SIGKILL), 0);
	for (int i = 0; i < n; i++) {
		if (owner[i] == gw[victim]) {
			ck_assert_int_eq(client_wait_closed(&cl[i], T_MS), 0);
		} else {
			/* The other gateway's clients notice nothing. */
			expect(&cl[i],
			       "<transactions id=\"1\"><query id=\"2\"/>"
			       "</transactions>",
			       "results(error[id=2]\"Order does not exist\")");
		}
		client_close(&cl[i]);
	}
	/* New clients are served at once, by whichever gateway is up. */
	conn(&c);
	expect(&c, "<create><account id=\"2\" balance=\"100\"/></create>",
	       "results(created[id=2])");
	client_close(&c);
	/* The supervisor restarts the dead one (new pid, same id). */
	pid_t again = -1;
	for (int t = 0; t < 500; t++) {
		again = exchange_child(&ex, "shmex-gateway", victim);
		if (again > 0 && again != gw[victim])
			break;
		usleep(10000);
	}
	ck_assert_int_gt(again, 0);
	ck_assert_int_ne(again, gw[victim]);
	ck_assert(pid_gone(gw[victim]));
	/* And it serves.  An idle gateway that waits longer in the shared
	 * accept queue takes every new connection (EPOLLEXCLUSIVE wakes the
	 * first waiter), so hold the other one still for a moment. */
	pid_t other = exchange_child(&ex, "shmex-gateway", 1 - victim);
	ck_assert_int_gt(other, 0);
	ck_assert_int_eq(kill(other, SIGSTOP), 0);
	for (int i = 0; i < 3; i++) {
		conn(&c);
		expect(&c, "<transactions id=\"2\"><query id=\"1\"/></transactions>",
		       "results(error[id=1]\"Order does not exist\")");
		ck_assert_int_eq(conn_owner(&c, &again, 1), again);
		client_close(&c);
	}
	ck_assert_int_eq(kill(other, SIGCONT), 0);
	stop_clean();
}
END_TEST

START_TEST(full_ring_answers_busy_and_loses_nothing)
{
	static const char *const extra[] = {
		SMALL_CAPS,        "--shards", "1",         "--gateways", "1",
		"--ring-capacity", "2",        "--busy-ms", "300",        NULL};
	start_with(extra);
	pid_t m = exchange_child(&ex, "shmex-matcher", 0);
	ck_assert_int_gt(m, 0);
	struct client c[3];
	for (int i = 0; i < 3; i++)
		conn(&c[i]);
	/* With the matcher stopped, two messages fill the ring; the third
	 * waits in the gateway, then is answered "busy" (and so is the
	 * rest of its request), never sent. */
	ck_assert_int_eq(kill(m, SIGSTOP), 0);
	ck_assert_int_eq(client_send(&c[0],
				     "<create><account id=\"1\" balance=\"1\"/>"
				     "</create>",
				     T_MS),
			 0);
	usleep(50000);
	ck_assert_int_eq(client_send(&c[1],
				     "<create><account id=\"2\" balance=\"1\"/>"
				     "</create>",
				     T_MS),
			 0);
	usleep(50000);
	unsigned long long t0 = test_now_ns();
	ck_assert_str_eq(ask(&c[2],
			     "<create><account id=\"3\" balance=\"1\"/>"
			     "<account id=\"4\" balance=\"1\"/></create>",
			     0),
			 "results(error[id=3]\"Exchange busy, try again\" "
			 "error[id=4]\"Exchange busy, try again\")");
	ck_assert_uint_ge(test_now_ns() - t0, 250000000ull);
	ck_assert_int_eq(kill(m, SIGCONT), 0);
	const char *rep;
	size_t len;
	char canon[256];
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(client_recv(&c[i], &rep, &len, T_MS), 0);
		xml_canon(rep, len, canon, sizeof(canon), 0);
		char want[64];
		snprintf(want, sizeof(want), "results(created[id=%d])", i + 1);
		ck_assert_str_eq(canon, want);
	}
	/* Exactly once: 1 and 2 exist, 3 and 4 were never created. */
	expect(&c[2],
	       "<create><account id=\"1\" balance=\"1\"/>"
	       "<account id=\"3\" balance=\"1\"/><account id=\"4\" "
	       "balance=\"1\"/></create>",
	       "results(error[id=1]\"Account already exists\" created[id=3] "
	       "created[id=4])");
	for (int i = 0; i < 3; i++)
		client_close(&c[i]);
	stop_clean();
}
END_TEST

/* ---- the supervisor ---- */

START_TEST(instance_in_use_is_refused_and_leftovers_removed)
{
	start_default();
	/* A second exchange with the same name refuses to start. */
	char port[8];
	snprintf(port, sizeof(port), "%d", 0);
	pid_t pid = fork();
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);
		dup2(devnull, 1);
		execl(test_bin("shmex"), "shmex", "--instance", inst, "--port", port,
		      "--no-fix", "--quiet", (char *)NULL);
		_exit(127);
	}
	int st = test_wait_pid(pid, T_MS);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1);
	ck_assert_int_gt(test_count_objects(inst), 0);
	/* The first one is unharmed. */
	struct client c;
	conn(&c);
	expect(&c, "<create><account id=\"1\" balance=\"1\"/></create>",
	       "results(created[id=1])");
	client_close(&c);
	/* Kill the supervisor: its children follow (PDEATHSIG), the shared
	 * memory stays behind... */
	pid_t all[64];
	int n = exchange_children(&ex, all, 64);
	ck_assert_int_eq(n, 5); /* 2 matchers, 2 gateways, shmex-audit */
	kill(ex.pid, SIGKILL);
	waitpid(ex.pid, NULL, 0);
	ex.pid = 0;
	close(ex.out_fd);
	ex.out_fd = -1;
	for (int i = 0; i < n; i++) {
		for (int t = 0; t < 500 && !pid_gone(all[i]); t++)
			usleep(10000);
		ck_assert_msg(pid_gone(all[i]), "child %d outlived its supervisor",
			      (int)all[i]);
	}
	ck_assert_int_gt(test_count_objects(inst), 0);
	/* ...and the next start of the same instance removes it, and
	 * recovers from the journal what the crashed run acknowledged. */
	char name[64];
	snprintf(name, sizeof(name), "%s", inst);
	static const char *const extra[] = {SMALL_CAPS, NULL};
	ck_assert_int_eq(exchange_start(&ex, test_bin("shmex"), name, extra, 20000), 0);
	conn(&c);
	expect(&c,
	       "<create><account id=\"1\" balance=\"1\"/>"
	       "<account id=\"2\" balance=\"1\"/></create>",
	       "results(error[id=1]\"Account already exists\" created[id=2])");
	client_close(&c);
	stop_clean();
}
END_TEST

/* Without a journal nothing can bring a shard back (restarts from the
 * journal: test_durability). */
/* Without a journal a dead matcher stops the exchange; a client whose
 * item that matcher had (and never answered) is told, before the close,
 * that its outcome is unknown, and that the item behind it never ran
 * (before: a bare close). */
START_TEST(matcher_death_answers_waiting_clients)
{
	static const char *const extra[] = {SMALL_CAPS, "--no-journal", "--drain-ms",
					    "300", NULL};
	start_with(extra);
	pid_t m0 = exchange_child(&ex, "shmex-matcher", 0);
	pid_t m1 = exchange_child(&ex, "shmex-matcher", 1);
	ck_assert_int_gt(m0, 0);
	ck_assert_int_gt(m1, 0);
	struct client c;
	conn(&c);
	kill(m0, SIGSTOP);
	kill(m1, SIGSTOP);
	ck_assert_int_eq(client_send(&c,
				     "<create><account id=\"1\" balance=\"1\"/>"
				     "<account id=\"2\" balance=\"1\"/></create>",
				     T_MS),
			 0);
	usleep(200000);
	kill(m0, SIGKILL);
	kill(m1, SIGKILL);
	const char *rep;
	size_t len;
	ck_assert_int_eq(client_recv(&c, &rep, &len, T_MS), 0);
	ck_assert_msg(strstr(rep, "<error id=\"1\">Outcome unknown: ") &&
			      strstr(rep, "the exchange is stopping; ref "),
		      "%s", rep);
	ck_assert_msg(strstr(rep, "<error id=\"2\">Not executed: the exchange is "
				  "stopping</error>"),
		      "%s", rep);
	ck_assert_int_eq(client_wait_closed(&c, T_MS), 0);
	client_close(&c);
	int st = test_wait_pid(ex.pid, 30000);
	ex.pid = 0;
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1);
	ck_assert_int_eq(test_count_objects(inst), 0);
}
END_TEST

START_TEST(matcher_death_without_journal_stops_exchange)
{
	static const char *const extra[] = {SMALL_CAPS, "--no-journal", NULL};
	start_with(extra);
	pid_t m = exchange_child(&ex, "shmex-matcher", 1);
	ck_assert_int_gt(m, 0);
	pid_t all[64];
	int n = exchange_children(&ex, all, 64);
	kill(m, SIGKILL);
	int st = test_wait_pid(ex.pid, 30000);
	ex.pid = 0;
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1);
	for (int i = 0; i < n; i++) {
		for (int t = 0; t < 200 && !pid_gone(all[i]); t++)
			usleep(10000);
		ck_assert(pid_gone(all[i]));
	}
	ck_assert_int_eq(test_count_objects(inst), 0);
}
END_TEST

/* Messages waiting in all request rings of the instance. */
static uint32_t ring_depth(void)
{
	struct shm_instance h;
	ck_assert_int_eq(shm_instance_attach(inst, SHM_ROLE_OBSERVER, 0, &h), 0);
	uint32_t depth = 0;
	for (uint32_t g = 0; g < h.ngateways; g++)
		for (uint32_t k = 0; k < h.nshards; k++) {
			struct shm_ring r;
			struct shm_ring_stats st;
			ck_assert_int_eq(shm_instance_request_ring(&h, g, k, &r), 0);
			shm_ring_stats(&r, &st);
			depth += st.depth;
		}
	shm_instance_detach(&h);
	return depth;
}

START_TEST(clean_shutdown_finishes_requests)
{
	start_default();
	pid_t m[2] = {exchange_child(&ex, "shmex-matcher", 0),
		      exchange_child(&ex, "shmex-matcher", 1)};
	ck_assert(m[0] > 0 && m[1] > 0);
	struct client c, idle;
	conn(&c);
	conn(&idle);
	expect(&c, "<create><account id=\"1\" balance=\"100\"/></create>",
	       "results(created[id=1])");
	/* Hold the matchers so that the request is surely executing (its
	 * first item in a ring) when SIGTERM arrives. */
	char xml[8192];
	int n = snprintf(xml, sizeof(xml), "<create>");
	for (int i = 0; i < 100; i++)
		n += snprintf(xml + n, sizeof(xml) - (size_t)n,
			      "<account id=\"%d\" balance=\"1\"/>", 100 + i);
	snprintf(xml + n, sizeof(xml) - (size_t)n, "</create>");
	kill(m[0], SIGSTOP);
	kill(m[1], SIGSTOP);
	ck_assert_int_eq(client_send(&c, xml, T_MS), 0);
	for (int t = 0; t < 1000 && ring_depth() == 0; t++)
		usleep(2000);
	ck_assert_uint_eq(ring_depth(), 1);
	kill(ex.pid, SIGTERM);
	usleep(200000);
	kill(m[0], SIGCONT);
	kill(m[1], SIGCONT);
	/* The executing request runs to its end; then everyone is closed. */
	const char *rep;
	size_t len;
	ck_assert_int_eq(client_recv(&c, &rep, &len, T_MS), 0);
	struct xdoc d;
	ck_assert_int_eq(xdoc_parse(&d, rep, len), 0);
	ck_assert_int_eq(xdoc_nchildren(&d, 0), 100);
	for (int i = 0; i < 100; i++)
		ck_assert_str_eq(d.nodes[xdoc_child(&d, 0, i)].name, "created");
	xdoc_free(&d);
	ck_assert_int_eq(client_wait_closed(&c, T_MS), 0);
	ck_assert_int_eq(client_wait_closed(&idle, T_MS), 0);
	client_close(&c);
	client_close(&idle);
	stop_clean();
}
END_TEST

START_TEST(command_lines)
{
	struct {
		const char *prog;
		const char *arg;
		int code;
		const char *more[3]; /* further arguments, NULL-terminated */
	} cases[] = {
		{"shmex", "--help", 0, {NULL}},
		{"shmex", "--version", 0, {NULL}},
		{"shmex", "--bogus", 2, {NULL}},
		{"shmex", "--shards=0", 2, {NULL}},
		{"shmex", "--port=70000", 2, {NULL}},
		{"shmex", "--ring-capacity=1000", 2, {NULL}},
		{"shmex", "--instance=a/b", 2, {NULL}},
		{"shmex", "--gateways=64", 2, {NULL}},
		{"shmex", "--fix-comp-id=a/b", 2, {NULL}},
		{"shmex-gateway", "--help", 0, {NULL}},
		{"shmex-gateway", "--version", 0, {NULL}},
		{"shmex-gateway", "--id=1", 2, {NULL}},
		/* A bad instance name is a usage error (2) in every program
		 * (before: 1 in three of them), even when all else is fine. */
		{"shmex-gateway", "--instance=a/b", 2, {"--id=0", "--port=0"}},
		{"shmex-matcher", "--instance=a/b", 2, {"--shard=0"}},
		{"shmex-query", "--instance=a/b", 2, {"stats"}},
		{"shmex-audit", "--instance=a/b", 2, {NULL}},
		{"shmex-fix", "--instance=a/b", 2, {"--id=0", "--port=0"}},
		{"shmex-stress", "--bogus", 2, {NULL}},
		{"shmex-stress", "--seconds=0", 2, {NULL}},
		{"shmex-journal", "--bogus", 2, {NULL}},
		{"shmex-replay", "--bogus", 2, {NULL}},
		{"shmex-query", "--bogus", 2, {NULL}},
		{"shmex-bench", "--version", 0, {NULL}},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int p[2], pe[2];
		ck_assert_int_eq(pipe(p), 0);
		ck_assert_int_eq(pipe(pe), 0);
		pid_t pid = fork();
		if (pid == 0) {
			dup2(p[1], 1);
			dup2(pe[1], 2);
			const char *argv[6] = {cases[i].prog, cases[i].arg};
			for (int k = 0; k < 3 && cases[i].more[k]; k++)
				argv[2 + k] = cases[i].more[k];
			execv(test_bin(cases[i].prog), (char *const *)argv);
			_exit(127);
		}
		close(p[1]);
		close(pe[1]);
		char buf[4096], ebuf[4096];
		ssize_t got = read(p[0], buf, sizeof(buf) - 1);
		ssize_t egot = read(pe[0], ebuf, sizeof(ebuf) - 1);
		close(p[0]);
		close(pe[0]);
		int st = test_wait_pid(pid, T_MS);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == cases[i].code,
			      "%s %s: status 0x%x", cases[i].prog, cases[i].arg, st);
		if (cases[i].code == 0)
			ck_assert_int_gt(got, 10);
		/* A usage error is its message and where to read more: no
		 * screenful of usage burying it. */
		int lines = 0;
		for (ssize_t k = 0; k < egot; k++)
			lines += ebuf[k] == '\n';
		if (cases[i].code == 2)
			ck_assert_msg(egot > 0 && lines <= 2,
				      "%s %s: %d lines on stderr: %.*s", cases[i].prog,
				      cases[i].arg, lines, (int)egot, ebuf);
	}
}
END_TEST

static Suite *gw_e2e_suite(void)
{
	Suite *s = suite_create("gw_e2e");
	TCase *tc = tcase_create("exchange");
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_add_unchecked_fixture(tc, NULL, cleanup_noted);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, handout_create_example);
	tcase_add_test(tc, handout_worked_example);
	tcase_add_test(tc, create_replies_and_errors);
	tcase_add_test(tc, transaction_replies_and_errors);
	tcase_add_test(tc, invalid_account_answers_every_child);
	tcase_add_test(tc, unknown_elements_answered_in_position);
	tcase_add_test(tc, order_then_query_in_one_request);
	tcase_add_test(tc, listing_above_max_reply_answers_every_item);
	tcase_add_test(tc, huge_reply_is_streamed_with_back_pressure);
	tcase_add_test(tc, shared_memory_is_group_read_only);
	tcase_add_test(tc, order_types_over_xml);
	tcase_add_test(tc, shm_space_is_checked_before_anything_is_created);
	tcase_add_test(tc, object_of_another_build_is_named);
	tcase_add_test(tc, malformed_xml_keeps_connection);
	tcase_add_test(tc, bad_and_huge_length_lines_close);
	tcase_add_test(tc, one_byte_writes);
	tcase_add_test(tc, stalled_request_hits_deadline);
	tcase_add_test(tc, framed_replies_option);
	tcase_add_test(tc, concurrent_connections_conserve);
	tcase_add_test(tc, full_ring_answers_busy_and_loses_nothing);
	tcase_add_test(tc, killed_gateway_is_restarted);
	tcase_add_test(tc, instance_in_use_is_refused_and_leftovers_removed);
	tcase_add_test(tc, matcher_death_without_journal_stops_exchange);
	tcase_add_test(tc, matcher_death_answers_waiting_clients);
	tcase_add_test(tc, clean_shutdown_finishes_requests);
	tcase_add_test(tc, command_lines);
	suite_add_tcase(s, tc);
	return s;
}

SHMEX_TEST_MAIN(gw_e2e_suite)

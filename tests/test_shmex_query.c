/*
 * shmex_query_suite: the `shmex-query` program against a real running
 * exchange (the `shmex` supervisor with real matchers and a gateway),
 * driven over TCP with a known order flow (the ECE 568 handout example,
 * plus a fractional order and a cancel), so that every output can be
 * compared with an exact expected string.  Times and event numbers are the
 * only values masked (after checking the times are within a day of now).
 *
 * The read-only guarantee is checked twice: the mappings of a running
 * `shmex-query watch` (/proc/PID/maps: book, control, no 'w'; only the
 * reader table writable), and a write through the same attach path in a
 * forked child, which must fault.
 *
 * `readers --clear-stale` runs against an instance this test lays out
 * itself (control, rings and one reader table, no matcher), so nobody but
 * the tool can reap the dead reader it plants.
 */
#include "tests/shmex_test.h"

#include <poll.h>

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shm/shm_book.h"
#include "shm/shm_error.h"
#include "shm/shm_instance.h"
#include "shm/shm_msg.h"
#include "shm/shm_opt.h"
#include "shm/shm_snap.h"
#include "shm/shm_rcu.h"
#include "tests/client.h"

#define T_MS 10000

static char inst[64];
static struct exchange ex;

/* --- running shmex-query -------------------------------------------------- */

struct qres {
	int status; /* exit code, or 128 + signal */
	char out[32768];
	char err[4096];
};

static void read_all(int fd, char *buf, size_t cap)
{
	ssize_t n = pread(fd, buf, cap - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
	close(fd);
}

/* Runs shmex-query with the NULL-terminated arguments. */
static void qrun_v(struct qres *r, const char *const *args)
{
	const char *argv[32];
	int n = 0;
	argv[n++] = "shmex-query";
	for (int i = 0; args[i] && n < 31; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	int fo = memfd_create("qout", MFD_CLOEXEC);
	int fe = memfd_create("qerr", MFD_CLOEXEC);
	ck_assert(fo >= 0 && fe >= 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(fo, 1);
		dup2(fe, 2);
		unsetenv("SHMEX_INSTANCE");
		execv(test_bin("shmex-query"), (char *const *)argv);
		_exit(127);
	}
	int st = test_wait_pid(pid, 30000);
	ck_assert_msg(st != -1, "shmex-query did not finish");
	r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	read_all(fo, r->out, sizeof(r->out));
	read_all(fe, r->err, sizeof(r->err));
}

#define QRUN(r, ...)                                          \
	do {                                                  \
		const char *const a_[] = {__VA_ARGS__, NULL}; \
		qrun_v((r), a_);                              \
	} while (0)

/* Exit 0, nothing on stderr. */
static void ok(const struct qres *r)
{
	ck_assert_msg(r->status == 0, "exit %d, stderr: %s", r->status, r->err);
	ck_assert_str_eq(r->err, "");
}

/* Replaces every time (ISO text or a 19-digit time_ns value) by T after
 * checking it lies within a day of now, and every "event":N by "event":E. */
static const char *mask(const char *in)
{
	static char out[32768];
	time_t now = time(NULL);
	size_t o = 0;
	for (const char *p = in; *p && o < sizeof(out) - 16;) {
		struct tm tm;
		memset(&tm, 0, sizeof(tm));
		const char *e = strptime(p, "%Y-%m-%dT%H:%M:%S", &tm);
		if (e && p[4] == '-' && *e == '.' && strspn(e + 1, "0123456789") == 9 &&
		    e[10] == 'Z') {
			time_t t = timegm(&tm);
			out[o++] = 'T';
			if (t < now - 86400 || t > now + 86400)
				o += (size_t)snprintf(out + o, 8, "BAD");
			p = e + 11;
			continue;
		}
		if (!strncmp(p, "time_ns\":", 9) && p[9] >= '1' && p[9] <= '9') {
			char *end;
			unsigned long long v = strtoull(p + 9, &end, 10);
			memcpy(out + o, p, 9);
			o += 9;
			out[o++] = 'T';
			if (v / 1000000000ull < (unsigned long long)now - 86400 ||
			    v / 1000000000ull > (unsigned long long)now + 86400)
				o += (size_t)snprintf(out + o, 8, "BAD");
			p = end;
			continue;
		}
		if (!strncmp(p, "\"event\":", 8) && p[8] >= '1' && p[8] <= '9') {
			char *end;
			(void)strtoull(p + 8, &end, 10);
			memcpy(out + o, "\"event\":E", 9);
			o += 9;
			p = end;
			continue;
		}
		out[o++] = *p++;
	}
	out[o] = '\0';
	return out;
}

/* --- cleanup that survives a failed test ---------------------------------- */

/*
 * A failed assertion ends the forked test process without its checked
 * teardown, so every instance and supervisor a test starts is also noted
 * in memory shared with the parent, whose unchecked teardown removes them.
 */
#define NOTED_MAX 16
struct noted {
	int n;
	char inst[NOTED_MAX][64];
	pid_t pid[NOTED_MAX];
};
static struct noted *noted;

static void note(const char *name, pid_t pid)
{
	if (!noted || noted->n >= NOTED_MAX)
		return;
	snprintf(noted->inst[noted->n], sizeof(noted->inst[0]), "%s", name);
	noted->pid[noted->n] = pid;
	noted->n++;
}

/* True when pid is still a process whose command line names `name`. */
static bool runs_instance(pid_t pid, const char *name)
{
	char path[64], buf[4096];
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return false;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	for (size_t i = 0; i < n; i++)
		if (buf[i] == '\0')
			buf[i] = ' ';
	buf[n] = '\0';
	return strstr(buf, name) != NULL;
}

static void noted_setup(void)
{
	noted = mmap(NULL, sizeof(*noted), PROT_READ | PROT_WRITE,
		     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert(noted != MAP_FAILED);
	memset(noted, 0, sizeof(*noted));
}

static void noted_teardown(void)
{
	for (int i = 0; i < noted->n; i++) {
		if (noted->pid[i] > 0 && runs_instance(noted->pid[i], noted->inst[i])) {
			kill(noted->pid[i], SIGKILL);
			usleep(200000); /* its children get SIGTERM (PDEATHSIG) */
		}
		test_cleanup_instance(noted->inst[i]);
	}
	munmap(noted, sizeof(*noted));
	noted = NULL;
}

static void new_instance(void)
{
	test_instance(inst, sizeof(inst));
	note(inst, 0);
}

/* --- the exchange --------------------------------------------------------- */

static void start_exchange(void)
{
	static const char *const extra[] = {"--shards",   "2",    "--gateways",  "1",
					    "--orders",   "1024", "--levels",    "256",
					    "--fills",    "4096", "--symbols",   "16",
					    "--accounts", "1024", "--positions", "1024",
					    "--readers",  "8",    "--quiet",     NULL};
	new_instance();
	int rc = exchange_start(&ex, test_bin("shmex"), inst, extra, 20000);
	ck_assert_msg(rc == 0, "shmex did not start");
	note(inst, ex.pid);
}

static void stop_exchange(void)
{
	pid_t kids[16];
	int n = exchange_children(&ex, kids, 16);
	int st = exchange_stop(&ex, 30000);
	ex.pid = 0;
	ck_assert_msg(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "shmex exit status 0x%x", st);
	for (int i = 0; i < n; i++) {
		for (int t = 0; t < 300 && kill(kids[i], 0) == 0; t++)
			usleep(10000);
		ck_assert_msg(kill(kids[i], 0) != 0, "child %d outlived shmex",
			      (int)kids[i]);
	}
	ck_assert_int_eq(test_count_objects(inst), 0);
}

static void setup(void)
{
	memset(&ex, 0, sizeof(ex));
	ex.out_fd = -1;
	inst[0] = '\0';
}

static void teardown(void)
{
	if (ex.pid > 0) {
		pid_t kids[16];
		int n = exchange_children(&ex, kids, 16);
		kill(ex.pid, SIGKILL);
		waitpid(ex.pid, NULL, 0);
		for (int i = 0; i < n; i++)
			kill(kids[i], SIGKILL);
		ex.pid = 0;
		usleep(50000);
	}
	if (ex.out_fd >= 0)
		close(ex.out_fd);
	ex.out_fd = -1;
	if (inst[0])
		test_cleanup_instance(inst);
}

static const char *request(struct client *c, const char *xml)
{
	const char *rep;
	size_t len;
	int rc = client_request(c, xml, &rep, &len, T_MS);
	ck_assert_msg(rc == 0, "request failed: %s", strerror(-rc));
	ck_assert_msg(!strstr(rep, "<error"), "request %s failed: %s", xml, rep);
	return rep;
}

static uint64_t order(struct client *c, int account, const char *sym, const char *amount,
		      const char *limit)
{
	char xml[512];
	snprintf(xml, sizeof(xml),
		 "<transactions id=\"%d\"><order sym=\"%s\" amount=\"%s\" "
		 "limit=\"%s\"/></transactions>",
		 account, sym, amount, limit);
	const char *rep = request(c, xml);
	struct xdoc d;
	ck_assert_int_eq(xdoc_parse(&d, rep, strlen(rep)), 0);
	int k = xdoc_child(&d, 0, 0);
	ck_assert_msg(k > 0 && !strcmp(d.nodes[k].name, "opened"), "not opened: %s", rep);
	uint64_t id = strtoull(xnode_attr(&d.nodes[k], "id"), NULL, 10);
	xdoc_free(&d);
	return id;
}

/* A symbol of the other shard than X's. */
static const char *other_symbol(uint32_t sx, uint32_t *sy)
{
	static const char *const cand[] = {"Y", "Z", "AB", "CD", "EF", "GH", "IJ", "KL"};
	for (size_t i = 0; i < sizeof(cand) / sizeof(cand[0]); i++) {
		*sy = shm_shard_of_symbol(cand[i], strlen(cand[i]), 2);
		if (*sy != sx)
			return cand[i];
	}
	ck_abort_msg("no symbol on the other shard");
	return NULL;
}

/* The known book: ids of its orders. */
struct known {
	uint64_t o[10];
	uint32_t sx, sy;
	const char *y;
};

/*
 * Accounts 1 (200000 cash, 50 Y) and 2 (1000 cash, 2000 X); the handout's
 * orders 1-7 (7 trades 200 @ 127 with 3 and 200 @ 125 with 1), then
 * 8: sell 0.5 @ 141.25, and 9: buy 10 @ 100, cancelled.
 */
static void known_flow(struct known *k)
{
	struct client c;
	char xml[512];
	k->sx = shm_shard_of_symbol("X", 1, 2);
	k->y = other_symbol(k->sx, &k->sy);
	ck_assert_int_eq(client_connect(&c, "127.0.0.1", ex.port, T_MS), 0);
	snprintf(xml, sizeof(xml),
		 "<create><account id=\"1\" balance=\"200000\"/>"
		 "<account id=\"2\" balance=\"1000\"/>"
		 "<symbol sym=\"X\"><account id=\"2\">2000</account></symbol>"
		 "<symbol sym=\"%s\"><account "
		 "id=\"1\">50</account></symbol></create>",
		 k->y);
	(void)request(&c, xml);
	k->o[1] = order(&c, 1, "X", "300", "125");
	k->o[2] = order(&c, 2, "X", "-100", "130");
	k->o[3] = order(&c, 1, "X", "200", "127");
	k->o[4] = order(&c, 2, "X", "-500", "128");
	k->o[5] = order(&c, 2, "X", "-200", "140");
	k->o[6] = order(&c, 1, "X", "400", "125");
	k->o[7] = order(&c, 2, "X", "-400", "124");
	k->o[8] = order(&c, 2, "X", "-0.5", "141.25");
	k->o[9] = order(&c, 1, "X", "10", "100");
	snprintf(xml, sizeof(xml),
		 "<transactions id=\"1\"><cancel id=\"%" PRIu64 "\"/></transactions>",
		 k->o[9]);
	(void)request(&c, xml);
	client_close(&c);
}

/* One level line of the text book: columns of 14, 14 and 7. */
static const char *row(const char *side, const char *price, const char *qty, unsigned n)
{
	static char buf[8][128];
	static int i;
	char *b = buf[i++ % 8];
	snprintf(b, 128, "  %s %14s %14s %7u\n", side, price, qty, n);
	return b;
}

static const char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static const char *fmt(const char *f, ...)
{
	static char buf[4][8192];
	static int i;
	char *b = buf[i++ % 4];
	va_list ap;
	va_start(ap, f);
	vsnprintf(b, 8192, f, ap);
	va_end(ap);
	return b;
}

#define HEADER "  side          price            qty  orders\n"
#define SUMMARY                                                           \
	"bids: 1 level, 2 orders, 500 shares; asks: 4 levels, 4 orders, " \
	"800.5 shares\n"                                                  \
	"last trade: 200 @ 125; 2 trades, volume 400\n"

START_TEST(book_text_and_json)
{
	struct known k;
	struct qres r;
	start_exchange();
	known_flow(&k);

	QRUN(&r, "--instance", inst, "book", "X");
	ok(&r);
	ck_assert_str_eq(r.out,
			 fmt("X (shard %u)\n" HEADER "%s%s%s%s  ----\n%s" SUMMARY, k.sx,
			     row("ask", "141.25", "0.5", 1), row("ask", "140", "200", 1),
			     row("ask", "130", "100", 1), row("ask", "128", "500", 1),
			     row("bid", "125", "500", 2)));

	QRUN(&r, "--instance", inst, "book", "X", "--depth", "1");
	ok(&r);
	ck_assert_str_eq(r.out,
			 fmt("X (shard %u)\n" HEADER "  ask  ...\n%s  ----\n%s" SUMMARY,
			     k.sx, row("ask", "128", "500", 1),
			     row("bid", "125", "500", 2)));

	QRUN(&r, "book", "--orders", "X", "--instance", inst);
	ok(&r);
	ck_assert_str_eq(r.out,
			 fmt("X (shard %u)\n" HEADER "%s        order %" PRIu64
			     ", account 2: 0.5 of 0.5\n"
			     "%s        order %" PRIu64 ", account 2: 200 of 200\n"
			     "%s        order %" PRIu64 ", account 2: 100 of 100\n"
			     "%s        order %" PRIu64 ", account 2: 500 of 500\n"
			     "  ----\n"
			     "%s        order %" PRIu64 ", account 1: 100 of 300\n"
			     "        order %" PRIu64 ", account 1: 400 of 400\n" SUMMARY,
			     k.sx, row("ask", "141.25", "0.5", 1), k.o[8],
			     row("ask", "140", "200", 1), k.o[5],
			     row("ask", "130", "100", 1), k.o[2],
			     row("ask", "128", "500", 1), k.o[4],
			     row("bid", "125", "500", 2), k.o[1], k.o[6]));

	QRUN(&r, "--instance", inst, "--json", "book", "X");
	ok(&r);
	ck_assert_str_eq(r.out, fmt("{\"symbol\":\"X\",\"shard\":%u,\"bids\":[{"
				    "\"price\":\"125\",\"qty\":\"500\","
				    "\"orders\":2}],\"asks\":[{\"price\":"
				    "\"128\",\"qty\":\"500\",\"orders\":1},"
				    "{\"price\":\"130\",\"qty\":\"100\","
				    "\"orders\":1},{\"price\":\"140\","
				    "\"qty\":\"200\",\"orders\":1},{\"price\":"
				    "\"141.25\",\"qty\":\"0.5\","
				    "\"orders\":1}],\"more_bids\":false,\"more_"
				    "asks\":false,\"bid_levels\":1,"
				    "\"bid_orders\":2,\"bid_qty\":\"500\","
				    "\"ask_levels\":4,\"ask_orders\":4,"
				    "\"ask_qty\":\"800.5\",\"trades\":2,"
				    "\"volume\":\"400\",\"last\":"
				    "{\"price\":\"125\",\"qty\":\"200\"}}\n",
				    k.sx));

	QRUN(&r, "--instance", inst, "--json", "book", "X", "--orders", "--depth", "1");
	ok(&r);
	ck_assert_str_eq(
		mask(r.out),
		fmt("{\"symbol\":\"X\",\"shard\":%u,\"bids\":[{\"price\":\"125\","
		    "\"qty\":\"500\","
		    "\"orders\":2,\"queue\":[{\"id\":%" PRIu64
		    ",\"account\":1,\"open\":\"100\","
		    "\"amount\":\"300\",\"time_ns\":T},{\"id\":%" PRIu64 ",\"account\":1,"
		    "\"open\":\"400\",\"amount\":\"400\",\"time_ns\":T}]}],"
		    "\"asks\":[{\"price\":"
		    "\"128\",\"qty\":\"500\",\"orders\":1,\"queue\":[{\"id\":"
		    "%" PRIu64 ",\"account\":2,\"open\":\"500\",\"amount\":\"500\","
		    "\"time_ns\":T}]}],"
		    "\"more_bids\":false,\"more_asks\":true,\"bid_levels\":1,\"bid_"
		    "orders\":2,"
		    "\"bid_qty\":\"500\",\"ask_levels\":4,\"ask_orders\":4,\"ask_"
		    "qty\":\"800.5\","
		    "\"trades\":2,\"volume\":\"400\",\"last\":{\"price\":\"125\","
		    "\"qty\":\"200\"}}\n",
		    k.sx, k.o[1], k.o[6], k.o[4]));

	/* A symbol with shares but no orders. */
	QRUN(&r, "--instance", inst, "book", k.y);
	ok(&r);
	ck_assert_str_eq(r.out, fmt("%s (shard %u)\n" HEADER "  (no asks)\n  ----\n"
				    "  (no bids)\nbids: 0 levels, 0 orders, 0 shares; "
				    "asks: 0 levels, 0 orders, 0 shares\nno trades\n",
				    k.y, k.sy));

	/* The books are consistent. */
	QRUN(&r, "--instance", inst, "check");
	ok(&r);
	ck_assert_msg(strstr(r.out, fmt("X (shard %u): ok, 5 levels, 6 orders\n", k.sx)),
		      "%s", r.out);
	ck_assert(strstr(r.out, "2 symbols checked, 0 violations, 0 busy\n"));
	/* One symbol: only its own shard is visited. */
	QRUN(&r, "--instance", inst, "check", "X");
	ok(&r);
	ck_assert_str_eq(r.out, fmt("X (shard %u): ok, 5 levels, 6 orders\n"
				    "1 symbols checked, 0 violations, 0 busy\n",
				    k.sx));
	QRUN(&r, "--instance", inst, "check", k.y);
	ok(&r);
	ck_assert_str_eq(r.out, fmt("%s (shard %u): ok, 0 levels, 0 orders\n"
				    "1 symbols checked, 0 violations, 0 busy\n",
				    k.y, k.sy));

	/* Errors: one line, exit 1, nothing on stdout. */
	QRUN(&r, "--instance", inst, "book", "NOPE");
	ck_assert_int_eq(r.status, 1);
	ck_assert_str_eq(r.out, "");
	ck_assert_str_eq(r.err,
			 fmt("shmex-query: symbol 'NOPE' does not exist (shard %u)\n",
			     shm_shard_of_symbol("NOPE", 4, 2)));
	stop_exchange();
}
END_TEST

/* The state hash of an exchange with one account of `balance`. */
static char *hash_of_balance(const char *balance)
{
	start_exchange();
	struct client c;
	ck_assert_int_eq(client_connect(&c, "127.0.0.1", ex.port, T_MS), 0);
	char xml[256];
	snprintf(xml, sizeof(xml), "<create><account id=\"1\" balance=\"%s\"/></create>",
		 balance);
	request(&c, xml);
	client_close(&c);
	struct qres r;
	QRUN(&r, "--instance", inst, "--json", "stats", "--state-hash");
	ok(&r);
	const char *h = strstr(r.out, "\"state_hash\":\"");
	ck_assert_msg(h, "no state_hash in %s", r.out);
	char *out = strndup(h + 14, 16);
	stop_exchange();
	return out;
}

/* Balances that differ by 2^64 units (184,467,440,737.09551616 dollars)
 * are different states: their hashes differ (the hash used to take only
 * the low 64 bits of 128-bit cash). */
START_TEST(state_hash_sees_the_high_word_of_cash)
{
	char *zero = hash_of_balance("0");
	char *wrap = hash_of_balance("184467440737.09551616");
	char *one = hash_of_balance("0.00000001");
	ck_assert_str_ne(zero, wrap);
	ck_assert_str_ne(zero, one);
	free(zero);
	free(wrap);
	free(one);
}
END_TEST

START_TEST(order_and_account)
{
	struct known k;
	struct qres r;
	start_exchange();
	known_flow(&k);

	QRUN(&r, "--instance", inst, "order", fmt("%" PRIu64, k.o[7]));
	ok(&r);
	ck_assert_str_eq(mask(r.out),
			 fmt("order %" PRIu64
			     ": sell 400 X @ 124 GTC, account 2, shard %u\n"
			     "  status     filled\n"
			     "  open       0\n"
			     "  executed   400\n"
			     "  cancelled  0\n"
			     "  accepted   T\n"
			     "  fills      2\n"
			     "    200 @ 127  T  taker, counterparty %" PRIu64 "\n"
			     "    200 @ 125  T  taker, counterparty %" PRIu64 "\n",
			     k.o[7], k.sx, k.o[3], k.o[1]));

	QRUN(&r, "--instance", inst, "order", fmt("%" PRIu64, k.o[9]));
	ok(&r);
	ck_assert_str_eq(mask(r.out), fmt("order %" PRIu64
					  ": buy 10 X @ 100 GTC, account 1, shard %u\n"
					  "  status     cancelled\n"
					  "  open       0\n"
					  "  executed   0\n"
					  "  cancelled  10\n"
					  "  accepted   T\n"
					  "  cancel at  T\n"
					  "  fills      0\n",
					  k.o[9], k.sx));

	QRUN(&r, "--json", "--instance", inst, "order", fmt("%" PRIu64, k.o[1]));
	ok(&r);
	ck_assert_str_eq(
		mask(r.out),
		fmt("{\"id\":%" PRIu64 ",\"shard\":%u,\"account\":1,\"symbol\":\"X\","
		    "\"side\":\"buy\",\"tif\":\"GTC\",\"price\":\"125\",\"amount\":"
		    "\"300\","
		    "\"status\":\"open\",\"open\":\"100\",\"executed\":\"200\","
		    "\"cancelled\":\"0\",\"time_ns\":T,\"cancel_time_ns\":0,"
		    "\"fills\":"
		    "[{\"qty\":\"200\",\"price\":\"125\",\"time_ns\":T,"
		    "\"counterparty\":%" PRIu64 ",\"event\":E,\"maker\":true}]}\n",
		    k.o[1], k.sx, k.o[7]));

	QRUN(&r, "--json", "--instance", inst, "order", fmt("%" PRIu64, k.o[8]));
	ok(&r);
	ck_assert_str_eq(mask(r.out),
			 fmt("{\"id\":%" PRIu64
			     ",\"shard\":%u,\"account\":2,\"symbol\":\"X\","
			     "\"side\":\"sell\",\"tif\":\"GTC\",\"price\":"
			     "\"141.25\",\"amount\":"
			     "\"0.5\",\"status\":\"open\",\"open\":\"0.5\","
			     "\"executed\":\"0\","
			     "\"cancelled\":\"0\",\"time_ns\":T,\"cancel_time_"
			     "ns\":0,\"fills\":[]}\n",
			     k.o[8], k.sx));

	/* Account 1: 200000 - 37500 - 25400 - 50000 (- 1000 + 1000 cancelled)
	 * = 87100 free; 100 x 125 + 400 x 125 = 62500 still reserved. */
	bool y_first = strcmp(k.y, "X") < 0;
	QRUN(&r, "--instance", inst, "account", "1");
	ok(&r);
	const char *lx = fmt("  %-15s %6u %14s %14s\n", "X", k.sx, "400", "0");
	char lxs[128];
	snprintf(lxs, sizeof(lxs), "%s", lx);
	const char *ly = fmt("  %-15s %6u %14s %14s\n", k.y, k.sy, "50", "0");
	ck_assert_str_eq(
		r.out, fmt("account 1\n"
			   "  balance    87100\n"
			   "  reserved   62500\n"
			   "  deposited  200000\n"
			   "  symbol           shard         amount       reserved\n%s%s",
			   y_first ? ly : lxs, y_first ? lxs : ly));

	/* Account 2: 1000 + 200 x 127 + 200 x 125 = 51400; X: 2000 created,
	 * 1200.5 offered, 400 sold: 799.5 free, 800.5 reserved. */
	QRUN(&r, "--instance", inst, "--json", "account", "2");
	ok(&r);
	ck_assert_str_eq(
		r.out,
		fmt("{\"account\":2,\"balance\":\"51400\",\"reserved\":\"0\","
		    "\"deposited\":\"1000\",\"positions\":[{\"symbol\":\"X\","
		    "\"shard\":%u,\"amount\":\"799.5\",\"reserved\":\"800.5\"}]}\n",
		    k.sx));

	/* Not found: exit 1, one line. */
	QRUN(&r, "--instance", inst, "order", "999999");
	ck_assert_int_eq(r.status, 1);
	ck_assert_str_eq(r.out, "");
	ck_assert_str_eq(r.err, "shmex-query: order 999999 does not exist\n");
	QRUN(&r, "--instance", inst, "account", "3");
	ck_assert_int_eq(r.status, 1);
	ck_assert_str_eq(r.err, "shmex-query: account 3 does not exist\n");

	/* stats: the counters of X's shard. */
	QRUN(&r, "--instance", inst, "--json", "stats");
	ok(&r);
	json_error_t jerr;
	json_t *j = json_loads(r.out, 0, &jerr);
	ck_assert_msg(j != NULL, "stats is not JSON: %s: %s", jerr.text, r.out);
	ck_assert_int_eq(json_integer_value(json_object_get(j, "nshards")), 2);
	json_t *shx = json_array_get(json_object_get(j, "shards"), k.sx);
	ck_assert_ptr_nonnull(shx);
	ck_assert(json_is_true(json_object_get(shx, "matcher_alive")));
	ck_assert_int_eq(json_integer_value(json_object_get(shx, "orders_live")), 6);
	ck_assert_int_eq(json_integer_value(json_object_get(shx, "orders_created")), 9);
	ck_assert_int_eq(json_integer_value(json_object_get(shx, "levels_live")), 5);
	ck_assert_int_eq(json_integer_value(json_object_get(shx, "symbols")), 1);
	ck_assert_int_eq(json_integer_value(json_object_get(shx, "cap_orders")), 1024);
	json_t *rin = json_object_get(shx, "rings_in");
	ck_assert_uint_eq(json_array_size(rin), 1);
	ck_assert_int_eq(
		json_integer_value(json_object_get(json_array_get(rin, 0), "depth")), 0);
	json_decref(j);
	stop_exchange();
}
END_TEST

/* --- read-only ------------------------------------------------------------ */

/* The permission field of every mapping of pid whose path contains `name`;
 * returns how many were found. */
static int maps_of(pid_t pid, const char *name, char perms[][8], int max)
{
	char path[64], line[512];
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	FILE *f = fopen(path, "re");
	ck_assert_ptr_nonnull(f);
	int n = 0;
	while (fgets(line, sizeof(line), f)) {
		if (!strstr(line, name) || n >= max)
			continue;
		char range[64];
		if (sscanf(line, "%63s %7s", range, perms[n]) == 2)
			n++;
	}
	fclose(f);
	return n;
}

static void segv_exit(int sig)
{
	(void)sig;
	_exit(42);
}

START_TEST(cannot_write_the_book)
{
	struct known k;
	char name[128], perms[8][8];
	start_exchange();
	known_flow(&k);

	/* A running watch: book and control mapped without 'w'. */
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	pid_t w = fork();
	ck_assert_int_ge(w, 0);
	if (w == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(p[1], 1);
		close(p[0]);
		execl(test_bin("shmex-query"), "shmex-query", "--instance", inst, "watch",
		      "X", "--interval-ms", "50", (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	char buf[4096] = "";
	size_t got = 0;
	while (got < sizeof(buf) - 1 && !strstr(buf, "last trade")) {
		ssize_t n = read(p[0], buf + got, sizeof(buf) - 1 - got);
		ck_assert_int_gt(n, 0);
		got += (size_t)n;
		buf[got] = '\0';
	}
	ck_assert_msg(!strncmp(buf, "\033[H\033[2J", 7), "no ANSI clear: %s", buf);
	ck_assert(strstr(buf, row("bid", "125", "500", 2)));

	snprintf(name, sizeof(name), "/shmex.%s.book.%u", inst, k.sx);
	ck_assert_int_eq(maps_of(w, name, perms, 8), 1);
	ck_assert_msg(!strchr(perms[0], 'w') && perms[0][0] == 'r', "book mapped %s",
		      perms[0]);
	snprintf(name, sizeof(name), "/shmex.%s.control", inst);
	ck_assert_int_eq(maps_of(w, name, perms, 8), 1);
	ck_assert_msg(!strchr(perms[0], 'w'), "control mapped %s", perms[0]);
	snprintf(name, sizeof(name), "/shmex.%s.readers.%u", inst, k.sx);
	ck_assert_int_eq(maps_of(w, name, perms, 8), 1);
	ck_assert_msg(strchr(perms[0], 'w'), "reader table mapped %s", perms[0]);
	/* The matcher itself maps its book writable: the check can fail. */
	pid_t m = exchange_child(&ex, "shmex-matcher", (int)k.sx);
	ck_assert_int_gt(m, 0);
	snprintf(name, sizeof(name), "/shmex.%s.book.%u", inst, k.sx);
	ck_assert_int_ge(maps_of(m, name, perms, 8), 1);
	ck_assert(strchr(perms[0], 'w'));

	/* The watch is a registered reader; Ctrl-C ends it with 0 and frees
	 * its slot. */
	struct qres r;
	QRUN(&r, "--instance", inst, "readers");
	ok(&r);
	ck_assert_msg(strstr(r.out, fmt(" %8d  yes ", (int)w)), "%s", r.out);
	kill(w, SIGINT);
	int st = test_wait_pid(w, 10000);
	ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "watch status 0x%x", st);
	close(p[0]);
	QRUN(&r, "--instance", inst, "readers");
	ok(&r);
	ck_assert_msg(!strstr(r.out, fmt(" %8d  ", (int)w)), "%s", r.out);

	/* --count stops by itself. */
	QRUN(&r, "--instance", inst, "watch", "X", "--count", "3", "--interval-ms", "10");
	ok(&r);
	ck_assert(strstr(r.out, "frame 3\n"));
	ck_assert(!strstr(r.out, "frame 4\n"));

	/* The same attach path, then a write: the kernel refuses it. */
	pid_t c = fork();
	ck_assert_int_ge(c, 0);
	if (c == 0) {
		struct shm_snap rd;
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = segv_exit;
		sigaction(SIGSEGV, &sa, NULL);
		sigaction(SIGBUS, &sa, NULL);
		if (shm_snap_open(&rd, inst, k.sx) != 0)
			_exit(3);
		store_relaxed(&rd.view.hdr->pad1, 1u);
		_exit(0);
	}
	st = test_wait_pid(c, 10000);
	ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 42,
		      "a write through the read-only mapping did not fault (0x%x)", st);
	stop_exchange();
}
END_TEST

/* metrics: Prometheus text (every sample line "name{labels} value", every
 * family with HELP and TYPE); instances: the running exchange is listed. */
/* metrics --listen-port 0: an HTTP scrape answers the same metrics, a
 * wrong path 404, and SIGTERM ends it with status 0. */
static void http_metrics(void)
{
	int pfd[2];
	ck_assert_int_eq(pipe(pfd), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(pfd[1], 1);
		close(pfd[0]);
		execl(test_bin("shmex-query"), "shmex-query", "--instance", inst,
		      "metrics", "--listen-port", "0", (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	char line[256];
	FILE *f = fdopen(pfd[0], "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(fgets(line, sizeof(line), f));
	const char *p = strstr(line, "http://127.0.0.1:");
	ck_assert_msg(p, "%s", line);
	int port = atoi(p + strlen("http://127.0.0.1:"));
	ck_assert_int_gt(port, 0);
	for (int k = 0; k < 2; k++) {
		int s = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in a = {.sin_family = AF_INET,
					.sin_port = htons((uint16_t)port)};
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		ck_assert_int_eq(connect(s, (struct sockaddr *)&a, sizeof(a)), 0);
		const char *get = k == 0 ? "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n"
					 : "GET /nothing HTTP/1.0\r\n\r\n";
		ck_assert_int_eq(write(s, get, strlen(get)), (ssize_t)strlen(get));
		static char resp[1 << 16];
		size_t n = 0;
		ssize_t r;
		while (n < sizeof(resp) - 1 &&
		       (r = read(s, resp + n, sizeof(resp) - 1 - n)) > 0)
			n += (size_t)r;
		resp[n] = 0;
		close(s);
		if (k == 0) {
			ck_assert_msg(!strncmp(resp, "HTTP/1.0 200 OK\r\n", 17), "%s",
				      resp);
			ck_assert_msg(strstr(resp, "text/plain; version=0.0.4"), "%s",
				      resp);
			ck_assert_msg(strstr(resp, fmt("shmex_matcher_up{instance=\"%s\"",
						       inst)),
				      "%s", resp);
		} else {
			ck_assert_msg(!strncmp(resp, "HTTP/1.0 404", 12), "%s", resp);
		}
	}
	kill(pid, SIGTERM);
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status 0x%x", st);
	fclose(f);
}

START_TEST(metrics_and_instances)
{
	struct known k;
	struct qres r;
	start_exchange();
	known_flow(&k);
	/* One reject for lack of cash, on X's shard. */
	struct client c;
	ck_assert_int_eq(client_connect(&c, "127.0.0.1", ex.port, T_MS), 0);
	const char *rej;
	size_t rlen;
	ck_assert_int_eq(
		client_request(&c,
			       "<transactions id=\"2\"><order sym=\"X\" "
			       "amount=\"100000\" limit=\"100\"/></transactions>",
			       &rej, &rlen, T_MS),
		0);
	ck_assert_msg(strstr(rej, "Insufficient funds"), "%s", rej);
	client_close(&c);
	QRUN(&r, "--instance", inst, "metrics");
	ck_assert_msg(
		strstr(r.out, fmt("shmex_requests_rejected_total{instance=\"%s\",shard="
				  "\"%u\",cause=\"insufficient_funds\"} 1\n",
				  inst, k.sx)),
		"%s", r.out);
	ok(&r);
	ck_assert_msg(
		strstr(r.out, fmt("shmex_matcher_up{instance=\"%s\",shard=\"%u\"} 1\n",
				  inst, k.sx)),
		"%s", r.out);
	ck_assert(strstr(r.out, "# TYPE shmex_orders_accepted_total counter\n"));
	ck_assert(strstr(r.out, "# TYPE shmex_ring_depth gauge\n"));
	ck_assert(strstr(
		r.out, fmt("shmex_gateway_requests_total{instance=\"%s\",gateway=\"0\"} ",
			   inst)));
	/* stats says where the exchange listens and what each gateway did. */
	struct qres st;
	QRUN(&st, "--instance", inst, "stats");
	ok(&st);
	ck_assert_msg(strstr(st.out, fmt("listening on port %d\n", ex.port)), "%s",
		      st.out);
	ck_assert_msg(strstr(st.out, "gateway 0: pid "), "%s", st.out);
	int samples = 0;
	for (char *line = strtok(r.out, "\n"); line; line = strtok(NULL, "\n")) {
		if (line[0] == '#') {
			ck_assert_msg(!strncmp(line, "# HELP shmex_", 13) ||
					      !strncmp(line, "# TYPE shmex_", 13),
				      "%s", line);
			continue;
		}
		char name[64], labels[256];
		unsigned long long v;
		ck_assert_msg(
			sscanf(line, "%63[a-z_]{%255[^}]} %llu", name, labels, &v) == 3,
			"not a sample: %s", line);
		samples++;
	}
	ck_assert_int_ge(samples, 30);
	http_metrics();
	QRUN(&r, "instances");
	ok(&r);
	ck_assert_msg(strstr(r.out,
			     fmt("%s: running, supervisor pid %d, 2 shards, 1 gateways\n",
				 inst, (int)ex.pid)),
		      "%s", r.out);
	stop_exchange();
}
END_TEST

/* A watch whose matcher dies says so and exits 1 (before: it kept drawing
 * the dead matcher's last book forever). */
START_TEST(watch_ends_when_its_matcher_is_gone)
{
	struct known k;
	start_exchange();
	known_flow(&k);
	int p[2], e[2];
	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(pipe(e), 0);
	pid_t w = fork();
	ck_assert_int_ge(w, 0);
	if (w == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(p[1], 1);
		dup2(e[1], 2);
		close(p[0]);
		close(e[0]);
		execl(test_bin("shmex-query"), "shmex-query", "--instance", inst, "watch",
		      "X", "--interval-ms", "20", (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	close(e[1]);
	char buf[4096] = "";
	size_t got = 0;
	while (got < sizeof(buf) - 1 && !strstr(buf, "last trade")) {
		ssize_t n = read(p[0], buf + got, sizeof(buf) - 1 - got);
		ck_assert_int_gt(n, 0);
		got += (size_t)n;
		buf[got] = '\0';
	}
	pid_t m = exchange_child(&ex, "shmex-matcher", (int)k.sx);
	ck_assert_int_gt(m, 0);
	kill(m, SIGKILL);
	/* Drain its stdout so it never blocks on a full pipe. */
	int st = -1;
	for (int i = 0; i < 1000; i++) {
		char tmp[4096];
		struct pollfd pf = {.fd = p[0], .events = POLLIN};
		if (poll(&pf, 1, 10) == 1 && read(p[0], tmp, sizeof(tmp)) <= 0)
			break;
		if (waitpid(w, &st, WNOHANG) == w)
			break;
	}
	if (st == -1)
		st = test_wait_pid(w, 10000);
	char err[1024] = "";
	ssize_t n = read(e[0], err, sizeof(err) - 1);
	err[n > 0 ? n : 0] = 0;
	close(p[0]);
	close(e[0]);
	ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1,
		      "watch status 0x%x: %s", st, err);
	ck_assert_msg(strstr(err, fmt("the matcher of shard %u", k.sx)), "%s", err);
	stop_exchange();
}
END_TEST

/* --- without an exchange -------------------------------------------------- */

START_TEST(missing_instance)
{
	struct qres r;
	new_instance();
	QRUN(&r, "--instance", inst, "book", "X");
	ck_assert_int_eq(r.status, 1);
	ck_assert_str_eq(r.out, "");
	ck_assert_str_eq(r.err, fmt("shmex-query: instance '%s' is not running: shm_open "
				    "/shmex.%s.control: No such file or directory\n",
				    inst, inst));
	QRUN(&r, "--instance", inst, "--json", "stats");
	ck_assert_int_eq(r.status, 1);
	ck_assert_str_eq(r.out, "");
	ck_assert_int_eq(test_count_objects(inst), 0);
}
END_TEST

START_TEST(help_version_usage)
{
	struct qres r;
	QRUN(&r, "--help");
	ok(&r);
	ck_assert(!strncmp(r.out, "usage: shmex-query [--instance NAME] [--json] COMMAND",
			   53));
	ck_assert(strstr(r.out, "watch SYMBOL"));
	QRUN(&r, "--version");
	ok(&r);
	ck_assert_str_eq(
		r.out,
		fmt("shmex-query (shmex) %s, shared-memory layout %u (signature %016" PRIx64
		    ")\n",
		    SHMEX_VERSION, SHM_LAYOUT_VERSION, shm_layout_signature()));

	/* Usage errors: exit 2, nothing on stdout, a hint on stderr. */
	static const char *const bad[][6] = {
		{NULL},
		{"frobnicate", NULL},
		{"book", NULL},
		{"book", "X", "Y", NULL},
		{"book", "X-1", NULL},
		{"book", "X", "--depth", "ten", NULL},
		{"book", "X", "--depth", NULL},
		{"order", "abc", NULL},
		{"order", "0", NULL},
		{"order", "-5", NULL},
		{"account", "99999999999999999999999", NULL},
		{"stats", "--count", "3", NULL},
		{"book", "X", "--clear-stale", NULL},
		{"watch", "X", "--count", "0", NULL},
		{"--bogus", "stats", NULL},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *a[8] = {"--instance", "nosuch-q"};
		int n = 2;
		for (int j = 0; bad[i][j]; j++)
			a[n++] = bad[i][j];
		a[n] = NULL;
		qrun_v(&r, a);
		ck_assert_msg(r.status == 2, "case %zu (%s): exit %d, %s", i,
			      bad[i][0] ? bad[i][0] : "-", r.status, r.err);
		ck_assert_str_eq(r.out, "");
		ck_assert_msg(strstr(r.err, "Try 'shmex-query --help'"), "%s", r.err);
		int lines = 0;
		for (const char *q = r.err; *q; q++)
			lines += *q == '\n';
		ck_assert_msg(lines == 2, "%s", r.err); /* the error, the hint */
	}
}
END_TEST

/* --- readers --clear-stale ------------------------------------------------ */

/* A reader process: registers, enters a section, says so, waits. */
static pid_t pinned_reader(int *ready_fd)
{
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct shm_rcu t;
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		struct shm_rcu_reader me;
		close(p[0]);
		if (shm_rcu_attach(&t, inst, 0, SHM_RCU_READER) ||
		    shm_rcu_register(&t, &me) || shm_rcu_enter(&me))
			_exit(3);
		if (write(p[1], "r", 1) != 1)
			_exit(4);
		for (;;)
			pause();
	}
	close(p[1]);
	char c;
	ck_assert_int_eq(read(p[0], &c, 1), 1);
	*ready_fd = p[0];
	return pid;
}

static json_t *shard0_readers(json_t *j)
{
	json_t *sh = json_array_get(json_object_get(j, "shards"), 0);
	ck_assert_ptr_nonnull(sh);
	return sh;
}

static json_t *reader_of(json_t *sh, pid_t pid)
{
	json_t *a = json_object_get(sh, "readers"), *x;
	size_t i;
	json_array_foreach(a, i, x)
	{
		if (json_integer_value(json_object_get(x, "pid")) == pid)
			return x;
	}
	return NULL;
}

START_TEST(readers_clear_stale)
{
	struct shm_instance h;
	struct shm_rcu w;
	struct shm_instance_cfg cfg;
	test_instance_cfg(&cfg, 1, 1, 0);
	struct qres r;
	int fd_dead, fd_live;
	new_instance();
	ck_assert_int_eq(shm_instance_create(inst, &cfg, &h), 0);
	ck_assert_int_eq(shm_rcu_create(&w, inst, 0, 4, 0600), 0);

	pid_t dead = pinned_reader(&fd_dead);
	pid_t live = pinned_reader(&fd_live);
	for (int i = 0; i < 3; i++)
		(void)shm_rcu_advance(&w);
	kill(dead, SIGKILL);
	ck_assert_int_ne(test_wait_pid(dead, 10000), -1);
	close(fd_dead);

	QRUN(&r, "--instance", inst, "--json", "readers");
	ok(&r);
	json_error_t jerr;
	json_t *j = json_loads(r.out, 0, &jerr);
	ck_assert_msg(j != NULL, "%s: %s", jerr.text, r.out);
	json_t *sh = shard0_readers(j);
	ck_assert_int_eq(json_integer_value(json_object_get(sh, "epoch")), 4);
	ck_assert_int_eq(json_integer_value(json_object_get(sh, "slots")), 4);
	ck_assert_int_eq(json_integer_value(json_object_get(sh, "registered")), 2);
	ck_assert_int_eq(json_integer_value(json_object_get(sh, "active")), 2);
	ck_assert_int_eq(json_integer_value(json_object_get(sh, "max_lag")), 3);
	json_t *xd = reader_of(sh, dead), *xl = reader_of(sh, live);
	ck_assert_ptr_nonnull(xd);
	ck_assert_ptr_nonnull(xl);
	ck_assert(json_is_false(json_object_get(xd, "alive")));
	ck_assert(json_is_true(json_object_get(xl, "alive")));
	ck_assert(json_is_true(json_object_get(xl, "in_section")));
	ck_assert_int_eq(json_integer_value(json_object_get(xl, "epoch")), 1);
	ck_assert_int_eq(json_integer_value(json_object_get(xl, "lag")), 3);
	ck_assert_int_eq(json_integer_value(json_object_get(xl, "nesting")), 1);
	int slot_d = (int)json_integer_value(json_object_get(xd, "slot"));
	int slot_l = (int)json_integer_value(json_object_get(xl, "slot"));
	json_decref(j);

	/* The text form of the same table. */
	QRUN(&r, "--instance", inst, "readers");
	ok(&r);
	const char *ld = fmt("  %5d %8d  %-5s %16s %10s %8u\n", slot_d, (int)dead, "no",
			     "1", "3", 1u);
	char lds[128];
	snprintf(lds, sizeof(lds), "%s", ld);
	const char *ll = fmt("  %5d %8d  %-5s %16s %10s %8u\n", slot_l, (int)live, "yes",
			     "1", "3", 1u);
	ck_assert_str_eq(
		r.out,
		fmt("shard 0: epoch 4, safe epoch 1, 2 of 4 slots registered, "
		    "2 in a section, oldest lag 3, 0 reaped\n"
		    "   slot      pid  alive            epoch        lag  nesting\n"
		    "%s%s",
		    slot_d < slot_l ? lds : ll, slot_d < slot_l ? ll : lds));

	/* --clear-stale frees exactly the dead one. */
	QRUN(&r, "--instance", inst, "readers", "--clear-stale");
	ok(&r);
	ck_assert_msg(!strncmp(r.out, "shard 0: cleared 1 stale slot\n", 30), "%s",
		      r.out);
	ck_assert(strstr(r.out, "1 of 4 slots registered, 1 in a section, "
				"oldest lag 3, 1 reaped\n"));
	ck_assert(!strstr(r.out, fmt(" %8d  ", (int)dead)));
	ck_assert(strstr(r.out, fmt(" %8d  yes ", (int)live)));
	QRUN(&r, "--instance", inst, "--json", "readers", "--clear-stale");
	ok(&r);
	ck_assert(strstr(r.out, "\"cleared\":0"));
	/* The writer sees the live reader's epoch as the oldest. */
	ck_assert_uint_eq(shm_rcu_safe_epoch(&w), 1);

	kill(live, SIGKILL);
	ck_assert_int_ne(test_wait_pid(live, 10000), -1);
	close(fd_live);
	shm_rcu_detach(&w);
	shm_instance_detach(&h);
	test_cleanup_instance(inst);
	ck_assert_int_eq(test_count_objects(inst), 0);
}
END_TEST

static Suite *shmex_query_suite(void)
{
	Suite *s = suite_create("shmex_query");
	TCase *tc = tcase_create("exchange");
	tcase_add_unchecked_fixture(tc, noted_setup, noted_teardown);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, book_text_and_json);
	tcase_add_test(tc, order_and_account);
	tcase_add_test(tc, state_hash_sees_the_high_word_of_cash);
	tcase_add_test(tc, cannot_write_the_book);
	tcase_add_test(tc, watch_ends_when_its_matcher_is_gone);
	tcase_add_test(tc, metrics_and_instances);
	suite_add_tcase(s, tc);
	tc = tcase_create("tool");
	tcase_add_unchecked_fixture(tc, noted_setup, noted_teardown);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, missing_instance);
	tcase_add_test(tc, help_version_usage);
	tcase_add_test(tc, readers_clear_stale);
	suite_add_tcase(s, tc);
	return s;
}

SHMEX_TEST_MAIN(shmex_query_suite)

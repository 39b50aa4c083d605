/*
 * shmex-fix-client: a QuickFIX initiator (the C++ library from Debian's
 * libquickfix-dev, unmodified) that runs one scenario against a running
 * shmex with FIX on and exits 0 when every expectation held, 1 with the
 * first failed expectation (and what the session had received) otherwise.
 * tests/test_fix.c starts the exchange, creates the accounts through the
 * XML protocol and runs the scenarios.
 *
 *   shmex-fix-client --port P --dict FIX44.xml --store DIR --scenario NAME
 *                    [--buyer ACCT --seller ACCT --symbol SYM --kill PID
 *                     --xml-port P]
 *
 * Sessions: BUYER and SELLER (SenderCompIDs) to TargetCompID SHMEX, each
 * validating what it receives against the FIX 4.4 data dictionary, with a
 * FileStore under DIR.  Scenarios: orders, resend, restart, inflight,
 * second_logon, sessions.
 */
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <quickfix/Application.h>
#include <quickfix/FileStore.h>
#include <quickfix/Log.h>
#include <quickfix/Session.h>
#include <quickfix/SessionSettings.h>
#include <quickfix/SocketInitiator.h>
#include <quickfix/Values.h>
#include <quickfix/fix44/Logon.h>
#include <quickfix/fix44/NewOrderSingle.h>
#include <quickfix/fix44/News.h>
#include <quickfix/fix44/OrderCancelReplaceRequest.h>
#include <quickfix/fix44/OrderCancelRequest.h>
#include <quickfix/fix44/OrderStatusRequest.h>

#include "gateway/fix/fx_store.h"

static const int T_MS = 10000;

struct Client : public FIX::Application {
	std::mutex mu;
	std::condition_variable cv;
	std::map<std::string, std::deque<FIX::Message>> inbox;
	std::map<std::string, bool> on;
	std::map<std::string, int> logons;    /* Logons received */
	std::map<std::string, int> logon_seq; /* MsgSeqNum of the last one */

	static std::string who(const FIX::SessionID &s)
	{
		return s.getSenderCompID().getString();
	}
	void onCreate(const FIX::SessionID &) override
	{
	}
	void onLogon(const FIX::SessionID &s) override
	{
		std::lock_guard<std::mutex> g(mu);
		on[who(s)] = true;
		cv.notify_all();
	}
	void onLogout(const FIX::SessionID &s) override
	{
		std::lock_guard<std::mutex> g(mu);
		on[who(s)] = false;
		cv.notify_all();
	}
	void toAdmin(FIX::Message &, const FIX::SessionID &) override
	{
	}
	void toApp(FIX::Message &, const FIX::SessionID &) throw(FIX::DoNotSend) override
	{
	}
	void fromAdmin(const FIX::Message &m,
		       const FIX::SessionID &s) throw(FIX::FieldNotFound,
						      FIX::IncorrectDataFormat,
						      FIX::IncorrectTagValue,
						      FIX::RejectLogon) override
	{
		std::string t = m.getHeader().getField(FIX::FIELD::MsgType);
		std::lock_guard<std::mutex> g(mu);
		if (t == "A") {
			logons[who(s)]++;
			logon_seq[who(s)] = atoi(
				m.getHeader().getField(FIX::FIELD::MsgSeqNum).c_str());
		}
		if (t == "3" || t == "5") {
			inbox[who(s)].push_back(m);
			cv.notify_all();
		}
	}
	void fromApp(const FIX::Message &m,
		     const FIX::SessionID &s) throw(FIX::FieldNotFound,
						    FIX::IncorrectDataFormat,
						    FIX::IncorrectTagValue,
						    FIX::UnsupportedMessageType) override
	{
		std::lock_guard<std::mutex> g(mu);
		inbox[who(s)].push_back(m);
		cv.notify_all();
	}
};

static Client app;
static std::string target = "SHMEX";
static std::string symbol = "SYM";
static std::string buyer_acct = "1", seller_acct = "2";
static int next_id = 0;
static int xml_port = 0;

/* One ECE 568 XML request (length line + document); returns the reply. */
static std::string xml_request(const std::string &doc)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)xml_port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	std::string got;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
		std::string req = std::to_string(doc.size()) + "\n" + doc;
		(void)!write(fd, req.data(), req.size());
		char buf[4096];
		struct timeval tv = {5, 0};
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		while (got.find("</results>") == std::string::npos &&
		       got.find("<results/>") == std::string::npos) {
			ssize_t k = read(fd, buf, sizeof(buf));
			if (k <= 0)
				break;
			got.append(buf, (size_t)k);
		}
	}
	close(fd);
	return got;
}

static void fail(const std::string &why, const std::string &who)
{
	fprintf(stderr, "FAIL: %s\n", why.c_str());
	std::lock_guard<std::mutex> g(app.mu);
	for (auto &m : app.inbox[who]) {
		std::string s = m.toString();
		for (auto &c : s)
			if (c == '\001')
				c = '|';
		fprintf(stderr, "  %s had: %s\n", who.c_str(), s.c_str());
	}
	exit(1);
}

static std::string field(const FIX::Message &m, int tag)
{
	if (m.isSetField(tag))
		return m.getField(tag);
	if (m.getHeader().isSetField(tag))
		return m.getHeader().getField(tag);
	return "";
}

/* Takes the first message of `who` that has every tag=value of want
 * (tag 35 and 43 are looked up in the header too). */
static FIX::Message expect(const std::string &who, const std::map<int, std::string> &want,
			   const char *what, int ms = T_MS)
{
	auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
	std::unique_lock<std::mutex> g(app.mu);
	for (;;) {
		auto &q = app.inbox[who];
		for (auto it = q.begin(); it != q.end(); ++it) {
			bool ok = true;
			for (auto &kv : want)
				if (field(*it, kv.first) != kv.second) {
					ok = false;
					break;
				}
			if (ok) {
				FIX::Message m = *it;
				q.erase(it);
				return m;
			}
		}
		if (app.cv.wait_until(g, until) == std::cv_status::timeout)
			break;
	}
	g.unlock();
	std::string w;
	for (auto &kv : want)
		w += " " + std::to_string(kv.first) + "=" + kv.second;
	fail(std::string(what) + ": no message with" + w, who);
	return FIX::Message();
}

static void wait_on(const std::string &who, bool state, int ms = T_MS)
{
	std::unique_lock<std::mutex> g(app.mu);
	if (!app.cv.wait_for(g, std::chrono::milliseconds(ms),
			     [&] { return app.on[who] == state; })) {
		g.unlock();
		fail(std::string("session never ") + (state ? "logged on" : "logged out"),
		     who);
	}
}

static FIX::SessionID sid(const std::string &who)
{
	return FIX::SessionID(FIX::BeginString_FIX44, who, target);
}

static void send(const std::string &who, FIX::Message &m)
{
	if (!FIX::Session::sendToTarget(m, sid(who)))
		fail("sendToTarget failed", who);
}

static std::string order(const std::string &who, const std::string &clid, char side,
			 const std::string &qty, const std::string &price, char tif = '1',
			 const std::string &acct = "", char type = '2',
			 const char *inst = nullptr)
{
	FIX44::NewOrderSingle o(FIX::ClOrdID(clid), FIX::Side(side),
				FIX::TransactTime(FIX::UtcTimeStamp(), 3),
				FIX::OrdType(type));
	o.setField(FIX::FIELD::Symbol, symbol);
	std::string a = acct.empty() ? (who == "BUYER" ? buyer_acct : seller_acct) : acct;
	if (a != "-")
		o.setField(FIX::FIELD::Account, a);
	o.setField(FIX::FIELD::OrderQty, qty);
	if (!price.empty())
		o.setField(FIX::FIELD::Price, price);
	o.setField(FIX::TimeInForce(tif));
	if (inst)
		o.setField(FIX::FIELD::ExecInst, inst);
	send(who, o);
	return clid;
}

static void cancel(const std::string &who, const std::string &clid,
		   const std::string &orig, char side)
{
	FIX44::OrderCancelRequest c(FIX::OrigClOrdID(orig), FIX::ClOrdID(clid),
				    FIX::Side(side),
				    FIX::TransactTime(FIX::UtcTimeStamp(), 3));
	c.setField(FIX::FIELD::Symbol, symbol);
	send(who, c);
}

static void replace(const std::string &who, const std::string &clid,
		    const std::string &orig, char side, const std::string &qty,
		    const std::string &price)
{
	FIX44::OrderCancelReplaceRequest c(
		FIX::OrigClOrdID(orig), FIX::ClOrdID(clid), FIX::Side(side),
		FIX::TransactTime(FIX::UtcTimeStamp(), 3), FIX::OrdType('2'));
	c.setField(FIX::FIELD::Symbol, symbol);
	c.setField(FIX::FIELD::OrderQty, qty);
	c.setField(FIX::FIELD::Price, price);
	send(who, c);
}

static std::string uid(const char *p)
{
	return std::string(p) + std::to_string(getpid()) + "-" +
	       std::to_string(++next_id);
}

typedef std::map<int, std::string> W;

static void scenario_orders()
{
	const std::string B = "BUYER", S = "SELLER";
	/* A resting limit buy, then a crossing sell from the other session:
	 * both hear the fill, at the resting order's price. */
	std::string c1 = order(B, uid("c"), '1', "10", "100");
	FIX::Message n = expect(
		B, W{{35, "8"}, {11, c1}, {150, "0"}, {39, "0"}, {151, "10"}, {14, "0"}},
		"New of a resting buy");
	std::string oid = field(n, 37);
	std::string s1 = order(S, uid("s"), '2', "4", "99", '0');
	expect(S, W{{11, s1}, {150, "0"}}, "New of the crossing sell");
	expect(S,
	       W{{11, s1},
		 {150, "F"},
		 {39, "2"},
		 {32, "4"},
		 {31, "100"},
		 {14, "4"},
		 {151, "0"},
		 {6, "100"}},
	       "aggressor's Trade at the resting price");
	expect(B,
	       W{{11, c1},
		 {37, oid},
		 {150, "F"},
		 {39, "1"},
		 {32, "4"},
		 {31, "100"},
		 {14, "4"},
		 {151, "6"},
		 {6, "100"}},
	       "resting side's Trade");
	/* Replace down: 10 -> 8 (6 open -> 4), then cancel. */
	std::string r1 = uid("r");
	replace(B, r1, c1, '1', "8", "100");
	expect(B,
	       W{{11, r1},
		 {41, c1},
		 {150, "5"},
		 {39, "1"},
		 {38, "8"},
		 {151, "4"},
		 {14, "4"}},
	       "Replaced");
	std::string x1 = uid("x");
	cancel(B, x1, r1, '1');
	expect(B,
	       W{{11, x1},
		 {41, r1},
		 {150, "4"},
		 {39, "4"},
		 {14, "4"},
		 {151, "0"},
		 {37, oid}},
	       "Canceled");
	/* Cancels that cannot work. */
	std::string x2 = uid("x");
	cancel(B, x2, "no-such-order", '1');
	expect(B, W{{35, "9"}, {11, x2}, {102, "1"}, {434, "1"}},
	       "cancel of an unknown order");
	std::string x3 = uid("x");
	cancel(B, x3, r1, '1');
	expect(B, W{{35, "9"}, {11, x3}, {102, "0"}}, "cancel of a cancelled order");
	/* Rejects that change nothing. */
	std::string c2 = order(B, uid("c"), '1', "1", "100", '1', "999999");
	FIX::Message rj = expect(B, W{{11, c2}, {150, "8"}, {39, "8"}, {103, "15"}},
				 "unknown account");
	if (field(rj, 58).find("Account") == std::string::npos)
		fail("unknown account: Text is " + field(rj, 58), B);
	order(B, c1, '1', "1", "100");
	rj = expect(B, W{{11, c1}, {150, "8"}, {103, "6"}}, "duplicate ClOrdID");
	std::string c3 = order(B, uid("c"), '1', "0", "100");
	expect(B, W{{11, c3}, {150, "8"}, {103, "13"}}, "zero quantity");
	std::string c4 = order(B, uid("c"), '1', "1", "100.00001");
	expect(B, W{{11, c4}, {150, "8"}}, "price with 5 decimals");
	std::string c5 = order(B, uid("c"), '1', "1", "100", '1', "-");
	/* Account is not required by FIX 4.4 itself, only by this venue:
	 * QuickFIX answers a conditionally required field that is missing
	 * with BusinessMessageReject reason 5, naming the tag. */
	expect(B, W{{35, "j"}, {372, "D"}, {380, "5"}},
	       "missing Account: BusinessMessageReject");
	/* A bad value of a dictionary field: session Reject with the tag. */
	{
		FIX44::NewOrderSingle o(FIX::ClOrdID(uid("c")), FIX::Side('1'),
					FIX::TransactTime(FIX::UtcTimeStamp(), 3),
					FIX::OrdType('2'));
		o.setField(FIX::FIELD::Symbol, symbol);
		o.setField(FIX::FIELD::Account, buyer_acct);
		o.setField(FIX::FIELD::OrderQty, "abc");
		o.setField(FIX::FIELD::Price, "1");
		send(B, o);
		expect(B, W{{35, "3"}, {371, "38"}, {373, "6"}},
		       "OrderQty abc: Reject 35=3");
	}
	std::string c6 = order(B, uid("c"), '1', "1", "100", '1', "", '2');
	(void)c6;
	expect(B, W{{11, c6}, {150, "0"}}, "a good order after the rejects");
	FIX44::News news(FIX::Headline("hello"));
	FIX44::News::NoLinesOfText line;
	line.set(FIX::Text("a message this venue does not take"));
	news.addGroup(line);
	send(B, news);
	expect(B, W{{35, "j"}, {380, "3"}}, "unsupported message: BusinessMessageReject");
	/* IOC: 5 of 8 fill, the rest is cancelled; the maker hears its fill. */
	std::string s2 = order(S, uid("s"), '2', "5", "101");
	expect(S, W{{11, s2}, {150, "0"}}, "New of a resting sell");
	std::string c7 = order(B, uid("c"), '1', "8", "101", '3');
	expect(B, W{{11, c7}, {150, "0"}}, "IOC New");
	expect(B, W{{11, c7}, {150, "F"}, {32, "5"}, {31, "101"}, {14, "5"}, {151, "3"}},
	       "IOC Trade");
	expect(B, W{{11, c7}, {150, "4"}, {39, "4"}, {14, "5"}, {151, "0"}},
	       "IOC remainder Canceled");
	expect(S, W{{11, s2}, {150, "F"}, {39, "2"}, {32, "5"}, {31, "101"}},
	       "maker of the IOC");
	/* FOK that cannot fill: killed whole. */
	std::string c8 = order(B, uid("c"), '1', "8", "101", '4');
	expect(B, W{{11, c8}, {150, "0"}}, "FOK New");
	expect(B, W{{11, c8}, {150, "4"}, {39, "4"}, {14, "0"}}, "FOK Canceled");
	/* Post-only that would cross is rejected; one that rests is not. */
	std::string s3 = order(S, uid("s"), '2', "3", "102");
	expect(S, W{{11, s3}, {150, "0"}}, "New of a resting sell");
	std::string c9 = order(B, uid("c"), '1', "1", "102", '1', "", '2', "6");
	/* The matcher decides (SHMEX_EWOULDCROSS), not a read of the book
	 * at arrival: its reason is the engine's. */
	expect(B,
	       W{{11, c9}, {150, "8"}, {39, "8"}, {58, "Post-only order would cross the book"}},
	       "post-only that would cross");
	std::string c9r = order(B, uid("c"), '1', "1", "101.5", '1', "", '2', "6");
	expect(B, W{{11, c9r}, {150, "0"}, {39, "0"}}, "post-only inside the spread rests");
	std::string x9 = uid("x");
	cancel(B, x9, c9r, '1');
	expect(B, W{{11, x9}, {41, c9r}, {150, "4"}}, "resting post-only Canceled");
	/* Market buy: takes the ask at its price, never rests. */
	std::string c10 = order(B, uid("c"), '1', "2", "", '0', "", '1');
	expect(B, W{{11, c10}, {150, "0"}}, "market New");
	expect(B, W{{11, c10}, {150, "F"}, {39, "2"}, {32, "2"}, {31, "102"}},
	       "market Trade");
	expect(S, W{{11, s3}, {150, "F"}, {39, "1"}, {32, "2"}, {151, "1"}},
	       "maker of the market buy");
	/* Status from shared memory. */
	FIX44::OrderStatusRequest st(FIX::ClOrdID(s3), FIX::Side('2'));
	st.setField(FIX::FIELD::Symbol, symbol);
	send(S, st);
	expect(S, W{{11, s3}, {150, "I"}, {39, "1"}, {151, "1"}}, "OrderStatusRequest");
	/* An XML client takes the rest of s3: the FIX maker hears of it. */
	if (xml_port) {
		std::string rep = xml_request(
			"<transactions id=\"" + buyer_acct + "\"><order sym=\"" + symbol +
			"\" amount=\"1\" limit=\"102\"/></transactions>");
		if (rep.find("<opened") == std::string::npos)
			fail("XML order: " + rep, S);
		expect(S,
		       W{{11, s3},
			 {150, "F"},
			 {39, "2"},
			 {32, "1"},
			 {31, "102"},
			 {14, "3"},
			 {151, "0"}},
		       "maker's fill by an XML aggressor");
	}
	(void)c5;
}

static void scenario_resend()
{
	const std::string B = "BUYER", S = "SELLER";
	std::string c1 = order(B, uid("c"), '1', "5", "50");
	expect(B, W{{11, c1}, {150, "0"}}, "New of a resting buy");
	int seq_before = app.logon_seq[B];
	FIX::Session::lookupSession(sid(B))->logout("bye");
	wait_on(B, false);
	/* The fill happens while BUYER is logged out. */
	std::string s1 = order(S, uid("s"), '2', "5", "50");
	expect(S, W{{11, s1}, {150, "F"}, {39, "2"}}, "the aggressor's fill");
	FIX::Session::lookupSession(sid(B))->logon();
	wait_on(B, true);
	/* The exchange's numbers went on (no reset), and the report sent
	 * while BUYER was away comes by resend, as a possible duplicate. */
	if (app.logon_seq[B] <= seq_before + 1)
		fail("the second Logon's MsgSeqNum did not move on", B);
	expect(B, W{{11, c1}, {150, "F"}, {39, "2"}, {32, "5"}, {43, "Y"}},
	       "the fill, resent after the logon");
	/* And the session works on. */
	std::string c2 = order(B, uid("c"), '1', "1", "40");
	expect(B, W{{11, c2}, {150, "0"}, {43, ""}}, "a new order after the resend");
}

static void scenario_restart(pid_t victim)
{
	const std::string B = "BUYER";
	std::string c1 = order(B, uid("c"), '1', "1", "30");
	expect(B, W{{11, c1}, {150, "0"}}, "New before the kill");
	if (kill(victim, SIGKILL) != 0)
		fail("cannot kill the FIX gateway", B);
	wait_on(B, false);
	/* The supervisor restarts shmex-fix; QuickFIX reconnects; the FIX
	 * gateway's FileStore resumes the numbers (a reset would make this
	 * client log out: MsgSeqNum too low). */
	wait_on(B, true, 20000);
	wait_on("SELLER", true, 20000);
	/* The order placed before the kill is still ours: its fill reaches
	 * BUYER (the restarted gateway read its order log). */
	std::string s1 = order("SELLER", uid("s"), '2', "1", "30");
	expect("SELLER", W{{11, s1}, {150, "F"}, {39, "2"}},
	       "aggressor after the restart");
	expect(B, W{{11, c1}, {150, "F"}, {39, "2"}, {32, "1"}, {31, "30"}, {14, "1"}},
	       "fill of an order placed before the restart");
	/* ClOrdIDs used before the restart stay refused. */
	order(B, c1, '1', "1", "30");
	expect(B, W{{11, c1}, {150, "8"}, {103, "6"}},
	       "duplicate ClOrdID across a restart");
	std::string c2 = order(B, uid("c"), '1', "1", "31");
	expect(B, W{{11, c2}, {150, "0"}}, "New after the restart");
	std::string x = uid("x");
	cancel(B, x, c2, '1');
	expect(B, W{{11, x}, {150, "4"}}, "Canceled after the restart");
}

/* The answer to ClOrdID `clid`: for an order a New (150=0) or a Rejected
 * (150=8), for a cancel its Canceled (150=4) or OrderCancelReject (35=9).
 * Waits up to ms; "" when none came.  The message stays in the inbox. */
static std::string answer_of(const std::string &who, const std::string &clid, bool cxl,
			     int ms, FIX::Message *out = nullptr)
{
	auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
	std::unique_lock<std::mutex> g(app.mu);
	for (;;) {
		for (auto &m : app.inbox[who]) {
			if (field(m, 11) != clid)
				continue;
			std::string t = field(m, 35), x = field(m, 150);
			bool ok = cxl ? (t == "9" || (t == "8" && x == "4"))
				      : (t == "8" && (x == "0" || x == "8"));
			if (ok) {
				if (out)
					*out = m;
				return t == "9" ? "9" : x;
			}
		}
		if (app.cv.wait_until(g, until) == std::cv_status::timeout)
			return "";
	}
}

static size_t reports_of(const std::string &who)
{
	std::lock_guard<std::mutex> g(app.mu);
	return app.inbox[who].size();
}

/* Reserved cash of an account, read with shmex-query (SHMEX_BIN_DIR). */
static std::string instance_name;
static double reserved_cash(const std::string &acct)
{
	const char *bin = getenv("SHMEX_BIN_DIR");
	std::string cmd = std::string(bin ? bin : "build/bin") + "/shmex-query --instance " +
			  instance_name + " account " + acct;
	FILE *p = popen(cmd.c_str(), "r");
	if (!p)
		fail("popen " + cmd, "BUYER");
	char line[512];
	double r = -1;
	while (fgets(line, sizeof(line), p))
		if (sscanf(line, " reserved %lf", &r) == 1)
			break;
	pclose(p);
	return r;
}

/*
 * The FIX gateway SIGKILLed with requests in flight: BUYER pipelines
 * orders and cancels of earlier orders, the gateway is killed after the
 * first answers, the supervisor restarts it, QuickFIX reconnects.  Every
 * ClOrdID sent gets exactly one kind of answer, and the answers agree
 * with the exchange: each order reported New and not Canceled is open
 * (XML query), each Canceled one is cancelled, and the account's reserved
 * cash is exactly what the open orders hold (so no order the client was
 * told Rejected exists).
 */
static void scenario_inflight(pid_t victim)
{
	const std::string B = "BUYER";
	const int K = 40, N = 400;
	std::vector<std::string> early, ids, cxl;
	for (int i = 0; i < K; i++)
		early.push_back(order(B, uid("e"), '1', "1", "20"));
	std::map<std::string, std::string> oid; /* ClOrdID -> OrderID */
	for (auto &c : early) {
		FIX::Message m;
		if (answer_of(B, c, false, T_MS, &m) != "0")
			fail("New of an early order " + c, B);
		oid[c] = field(m, 37);
	}
	size_t base = reports_of(B);
	for (int i = 0; i < N; i++) {
		ids.push_back(order(B, uid("p"), '1', "1", "20"));
		if (i % 10 == 5 && (int)cxl.size() < K) {
			std::string x = uid("x");
			cancel(B, x, early[cxl.size()], '1');
			cxl.push_back(x);
		}
	}
	/* Kill once the first answers of the burst came: the rest are in
	 * flight somewhere between the socket, the gateway and the matcher. */
	auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(T_MS);
	while (reports_of(B) < base + 10 && std::chrono::steady_clock::now() < until)
		usleep(200);
	size_t before_kill = reports_of(B) - base;
	if (kill(victim, SIGKILL) != 0)
		fail("cannot kill the FIX gateway", B);
	wait_on(B, false);
	wait_on(B, true, 20000);
	int news = 0, rejected = 0, canceled = 0, cxl_rejected = 0;
	std::set<std::string> gone; /* ClOrdIDs of orders cancelled */
	for (auto &c : ids) {
		FIX::Message m;
		std::string a = answer_of(B, c, false, 20000, &m);
		if (a.empty())
			fail("no answer to the order " + c, B);
		if (a == "0") {
			news++;
			oid[c] = field(m, 37);
		} else {
			rejected++;
		}
	}
	for (size_t i = 0; i < cxl.size(); i++) {
		std::string a = answer_of(B, cxl[i], true, 20000);
		if (a.empty())
			fail("no answer to the cancel " + cxl[i], B);
		if (a == "4") {
			canceled++;
			gone.insert(early[i]);
		} else {
			cxl_rejected++;
		}
	}
	usleep(300 * 1000); /* late duplicates, if any, arrive */
	{
		/* Never two kinds of answer to one ClOrdID (a repeat of the
		 * same report, same ExecID, is allowed). */
		std::lock_guard<std::mutex> g(app.mu);
		std::map<std::string, std::string> kind;
		for (auto &m : app.inbox[B]) {
			std::string t = field(m, 35), x = field(m, 150);
			if (!(t == "9" || (t == "8" && (x == "0" || x == "8" || x == "4"))))
				continue;
			std::string k = t == "9" ? "9" : x, &have = kind[field(m, 11)];
			if (!have.empty() && have != k) {
				fprintf(stderr, "FAIL: ClOrdID %s answered %s and %s\n",
					field(m, 11).c_str(), have.c_str(), k.c_str());
				exit(1);
			}
			have = k;
		}
	}
	/* The exchange agrees: open orders are open, cancelled ones are not,
	 * and the reserved cash is what the open ones hold (1 x 20 each). */
	int open = 0;
	for (auto &kv : oid) {
		std::string r = xml_request("<transactions id=\"" + buyer_acct +
					    "\"><query id=\"" + kv.second +
					    "\"/></transactions>");
		bool is_open = r.find("<open shares=\"1") != std::string::npos;
		bool was_cancelled = gone.count(kv.first) != 0;
		if (is_open == was_cancelled)
			fail("order " + kv.first + " (" + kv.second + ") is " +
				     (is_open ? "open" : "not open") + " over XML: " + r,
			     B);
		open += is_open;
	}
	double want = 20.0 * open, got = reserved_cash(buyer_acct);
	if (got != want)
		fail("reserved cash " + std::to_string(got) + ", the open orders hold " +
			     std::to_string(want),
		     B);
	fprintf(stderr,
		"inflight: %d orders + %zu cancels sent, %zu answers before the kill; "
		"%d New, %d Rejected, %d Canceled, %d cancel rejects\n",
		N, cxl.size(), before_kill, news, rejected, canceled, cxl_rejected);
}

/* The order log named ghost-1 as queued and never sent (test_fix.c wrote
 * it): BUYER is told it was not executed, and may send it again. */
static void scenario_ghost()
{
	FIX::Message r = expect("BUYER", W{{11, "ghost-1"}, {150, "8"}, {39, "8"}},
				"Rejected for the request that never left");
	if (field(r, 58).find("Not executed") == std::string::npos)
		fail("Text is " + field(r, 58), "BUYER");
	order("BUYER", "ghost-1", '1', "1", "20");
	expect("BUYER", W{{11, "ghost-1"}, {150, "8"}, {103, "6"}},
	       "its ClOrdID stays used");
}

/* The order log named lost-1 as sent to a ring of the exchange's previous
 * run, and every process died (test_fix.c): BUYER is told the outcome is
 * unknown, not that it was or was not executed. */
static void scenario_lost()
{
	FIX::Message r = expect("BUYER", W{{11, "lost-1"}, {150, "I"}, {39, "A"}},
				"Order status for the request in flight at the restart");
	if (field(r, 58).find("Outcome unknown") == std::string::npos)
		fail("Text is " + field(r, 58), "BUYER");
}

/* Connects to the FIX port (with garbage on a second connection first when
 * asked), sends a Logon as `sender` and returns what came back until the
 * exchange closed the connection. */
static std::string raw_logon(int port, const std::string &sender, bool garbage,
			     const std::string &to = target)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
		fail("connect", "BUYER");
	int g = -1;
	if (garbage) {
		g = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(g, (struct sockaddr *)&a, sizeof(a)) == 0) {
			const char junk[] =
				"8=FIX.4.4\0019=5\00135=A\001garbage garbage\n\n";
			(void)!write(g, junk, sizeof(junk));
		}
	}
	FIX44::Logon lo(FIX::EncryptMethod(0), FIX::HeartBtInt(30));
	lo.getHeader().setField(FIX::SenderCompID(sender));
	lo.getHeader().setField(FIX::TargetCompID(to));
	lo.getHeader().setField(FIX::MsgSeqNum(1));
	lo.getHeader().setField(FIX::SendingTime(FIX::UtcTimeStamp(), 3));
	std::string s = lo.toString();
	(void)!write(fd, s.data(), s.size());
	std::string got;
	char buf[4096];
	struct timeval tv = {5, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	for (;;) {
		ssize_t k = read(fd, buf, sizeof(buf));
		if (k <= 0)
			break;
		got.append(buf, (size_t)k);
	}
	close(fd);
	if (g >= 0)
		close(g);
	return got;
}

/* A second connection that logs on as BUYER while BUYER is logged on gets
 * a Logout with a reason; garbage on a third is dropped; BUYER's session
 * is not disturbed. */
static void scenario_second_logon(int port)
{
	std::string got = raw_logon(port, "BUYER", true);
	if (got.find("\00135=5\001") == std::string::npos ||
	    got.find("already logged on") == std::string::npos)
		fail("second logon: no Logout with a reason, got '" + got + "'", "BUYER");
	/* A Logon to another TargetCompID: a Logout that says why. */
	got = raw_logon(port, "NEWCOMER", false, "NOTUS");
	if (got.find("\00135=5\001") == std::string::npos ||
	    got.find("Unknown TargetCompID") == std::string::npos)
		fail("wrong TargetCompID: no Logout with a reason, got '" + got + "'",
		     "BUYER");
	std::string c1 = order("BUYER", uid("c"), '1', "1", "20");
	expect("BUYER", W{{11, c1}, {150, "0"}}, "BUYER still trades");
}

/* --fix-sessions "BUYER <buyer account>" and "SELLER *": BUYER may not
 * trade the seller's account, an unlisted SenderCompID is logged out. */
static void scenario_sessions(int port)
{
	std::string c1 = order("BUYER", uid("c"), '1', "1", "20", '1', seller_acct);
	FIX::Message r = expect("BUYER", W{{11, c1}, {150, "8"}, {103, "15"}},
				"an account the session may not trade");
	if (field(r, 58).find("may not trade") == std::string::npos)
		fail("Text is " + field(r, 58), "BUYER");
	std::string c2 = order("BUYER", uid("c"), '1', "1", "20");
	expect("BUYER", W{{11, c2}, {150, "0"}}, "its own account");
	std::string got = raw_logon(port, "STRANGER", false);
	if (got.find("\00135=5\001") == std::string::npos ||
	    got.find("not a session") == std::string::npos)
		fail("unlisted SenderCompID: no Logout with a reason, got '" + got + "'",
		     "BUYER");
}

/* --store-check DIR: shmex-fix's store (fx_store) and QuickFIX's own
 * FileStore read each other's files, and fx_store serves what it has not
 * written yet and refuses a damaged header entry.  Exit 0 when all holds. */
static int store_fail(const std::string &what)
{
	fprintf(stderr, "store-check: %s\n", what.c_str());
	return 1;
}

static int store_check(const std::string &dir)
{
	FIX::SessionID id("FIX.4.4", "SHMEX", "CHECK");
	std::vector<std::string> got;
	std::string err;
	{
		/* QuickFIX writes three messages and the sequence numbers. */
		FIX::FileStore q(dir, id);
		q.reset();
		for (int i = 1; i <= 3; i++)
			q.set(i, "8=FIX.4.4\0019=5\00135=0\001" + std::to_string(i));
		q.setNextSenderMsgSeqNum(4);
		q.setNextTargetMsgSeqNum(9);
	}
	{
		fx::StoreFactory f(dir);
		FIX::MessageStore *m = f.create(id);
		if (m->getNextSenderMsgSeqNum() != 4 || m->getNextTargetMsgSeqNum() != 9)
			return store_fail("sequence numbers of FileStore's files not read");
		m->get(1, 3, got);
		if (got.size() != 3 || got[1] != "8=FIX.4.4\0019=5\00135=0\0012")
			return store_fail("messages of FileStore's files not read");
		/* Not flushed yet: served from memory, nothing on disk. */
		m->set(4, "four");
		m->set(5, "five");
		m->incrNextSenderMsgSeqNum();
		m->incrNextSenderMsgSeqNum();
		m->incrNextTargetMsgSeqNum();
		m->get(3, 5, got);
		if (got.size() != 3 || got[1] != "four" || got[2] != "five")
			return store_fail("unflushed messages not served");
		{
			FIX::FileStore q(dir, id);
			if (q.getNextSenderMsgSeqNum() != 4)
				return store_fail("sequence numbers written before the flush");
		}
		if (!f.flush(&err))
			return store_fail("flush: " + err);
		f.destroy(m);
	}
	{
		/* QuickFIX reads what fx_store wrote. */
		FIX::FileStore q(dir, id);
		if (q.getNextSenderMsgSeqNum() != 6 || q.getNextTargetMsgSeqNum() != 10)
			return store_fail("FileStore does not read fx_store's sequence numbers");
		q.get(1, 5, got);
		if (got.size() != 5 || got[3] != "four" || got[4] != "five")
			return store_fail("FileStore does not read fx_store's messages");
	}
	{
		/* A header entry past the end of the body is dropped, with the
		 * ones after it; those before it stay. */
		FILE *h = fopen((dir + "/FIX.4.4-SHMEX-CHECK.header").c_str(), "a");
		if (!h)
			return store_fail("open header");
		fprintf(h, "6,999999,4 7,0,4 ");
		fclose(h);
		fx::StoreFactory f(dir);
		FIX::MessageStore *m = f.create(id);
		m->get(1, 7, got);
		if (got.size() != 5 || got[4] != "five")
			return store_fail("damaged header entry not refused");
		m->reset();
		m->get(1, 7, got);
		if (!got.empty() || m->getNextSenderMsgSeqNum() != 1)
			return store_fail("reset kept messages");
		f.destroy(m);
	}
	/* Entries with a field missing, or the last one cut short (no
	 * space after it): the index ends before them. */
	const char *const headers[] = {"1,0,4 2,4,4 3,,4 ", "1,0,4 2,4,4 3,8", "1,0,4 2,4,4 3,8,0 "};
	for (const char *hd : headers) {
		FILE *b = fopen((dir + "/FIX.4.4-SHMEX-CHECK.body").c_str(), "w");
		FILE *h = fopen((dir + "/FIX.4.4-SHMEX-CHECK.header").c_str(), "w");
		if (!b || !h)
			return store_fail("rewrite the files");
		fputs("abcdefghijkl", b);
		fputs(hd, h);
		fclose(b);
		fclose(h);
		fx::StoreFactory f(dir);
		FIX::MessageStore *m = f.create(id);
		m->get(1, 3, got);
		if (got.size() != 2 || got[1] != "efgh")
			return store_fail(std::string("header '") + hd + "' not cut at its bad entry");
		f.destroy(m);
	}
	return 0;
}

int main(int argc, char **argv)
{
	std::string dict, store, scen;
	int port = 0;
	pid_t victim = 0;
	if (argc == 3 && !strcmp(argv[1], "--store-check"))
		return store_check(argv[2]);
	for (int i = 1; i + 1 < argc; i += 2) {
		std::string k = argv[i], v = argv[i + 1];
		if (k == "--port")
			port = atoi(v.c_str());
		else if (k == "--dict")
			dict = v;
		else if (k == "--store")
			store = v;
		else if (k == "--scenario")
			scen = v;
		else if (k == "--buyer")
			buyer_acct = v;
		else if (k == "--seller")
			seller_acct = v;
		else if (k == "--symbol")
			symbol = v;
		else if (k == "--xml-port")
			xml_port = atoi(v.c_str());
		else if (k == "--kill")
			victim = (pid_t)atoi(v.c_str());
		else if (k == "--instance")
			instance_name = v;
		else {
			fprintf(stderr, "shmex-fix-client: unknown option %s\n",
				k.c_str());
			return 2;
		}
	}
	if (!port || dict.empty() || store.empty() || scen.empty()) {
		fprintf(stderr,
			"usage: shmex-fix-client --port P --dict FILE --store DIR "
			"--scenario NAME\n");
		return 2;
	}
	try {
		FIX::SessionSettings settings;
		FIX::Dictionary d;
		d.setString("ConnectionType", "initiator");
		d.setString("SocketConnectHost", "127.0.0.1");
		d.setInt("SocketConnectPort", port);
		d.setInt("HeartBtInt", 30);
		d.setInt("ReconnectInterval", 1);
		d.setString("StartTime", "00:00:00");
		d.setString("EndTime", "00:00:00");
		d.setString("FileStorePath", store);
		d.setString("UseDataDictionary", "Y");
		d.setString("DataDictionary", dict);
		d.setString("ResetOnLogon", "N");
		settings.set(d);
		for (const char *who : {"BUYER", "SELLER"})
			settings.set(sid(who), FIX::Dictionary());
		FIX::FileStoreFactory sf(store);
		FIX::ScreenLogFactory lf(false, false, false);
		FIX::SocketInitiator ini(app, sf, settings);
		ini.start();
		wait_on("BUYER", true);
		wait_on("SELLER", true);
		if (scen == "orders")
			scenario_orders();
		else if (scen == "resend")
			scenario_resend();
		else if (scen == "restart")
			scenario_restart(victim);
		else if (scen == "inflight")
			scenario_inflight(victim);
		else if (scen == "ghost")
			scenario_ghost();
		else if (scen == "lost")
			scenario_lost();
		else if (scen == "second_logon")
			scenario_second_logon(port);
		else if (scen == "sessions")
			scenario_sessions(port);
		else {
			fprintf(stderr, "unknown scenario %s\n", scen.c_str());
			return 2;
		}
		ini.stop();
	} catch (std::exception &e) {
		fprintf(stderr, "FAIL: %s\n", e.what());
		return 1;
	}
	fprintf(stderr, "scenario %s: passed\n", scen.c_str());
	return 0;
}

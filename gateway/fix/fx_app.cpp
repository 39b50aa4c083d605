/*
 * fx_app: shmex-fix, FIX 4.4 order entry (see fx_app.h, docs/fix.md).
 *
 * Why it is shaped so.  The FIX session layer (Logon, Heartbeat,
 * TestRequest, ResendRequest served from the stored messages with
 * PossDupFlag and SequenceReset-GapFill, SequenceReset, Logout, sequence
 * number checks, BodyLength/CheckSum, Reject with SessionRejectReason and
 * RefTagID) is QuickFIX's FIX::Session, its reference implementation, with
 * its messages stored in <data-dir>/fix/ in FIX::FileStore's format, but
 * written in batches, before each write of the order log (fx_store.h; a
 * MemoryStore without a data directory).  QuickFIX's own SocketAcceptor is not used: it accepts only
 * the sessions its configuration lists, binds its own port and runs its
 * own loop.  Instead this file owns the sockets: the listening socket is
 * inherited from the supervisor (so `--fix-port 0` works, a port conflict
 * fails before anything starts, and connections wait in the accept queue
 * while this process restarts), each connection's bytes are framed with
 * FIX::Parser and handed to its FIX::Session, and the Session writes
 * through a FIX::Responder that is the connection.  A Session is created
 * on the first Logon of a SenderCompID (any, unless --fix-sessions lists
 * them) and kept, so its sequence numbers and stored messages survive
 * disconnects.
 *
 * One thread does everything (the epoll loop, QuickFIX, the rings), so
 * nothing here locks.  While replies are awaited and keep coming within
 * --spin-us the loop polls the reply rings (yielding between polls); then
 * it arms fx_route's helper thread, which wakes the epoll_wait through an
 * eventfd when a reply arrives.  Idle it sleeps in epoll_wait, waking
 * every SCAN_MS while orders of ours rest on a book.
 *
 * Both sides hear every fill: the matcher replies only to the request's
 * gateway, so each order this process placed is re-read from the book
 * (fx_route_order, a read-only snapshot that costs the matcher nothing)
 * whenever its shard's durable event counter moved; every fill not
 * reported yet becomes a Trade report, in fill order, and the order's end
 * (filled, cancelled, IOC/FOK remainder, self-trade prevention) one last
 * report.  A report to a session that is logged out is stored by
 * QuickFIX under the next sequence number and delivered by resend when
 * the session logs on again.
 *
 * Requests in flight survive a kill of this process: each is written to
 * the order log (a P line with its ring position) before it can reach a
 * ring, replies are consumed from the reply rings only after their outcome
 * is in the log, and the log lines of an incoming message are written
 * before QuickFIX counts it as received.  A successor reads the log and
 * answers every request its predecessor left open: from the matcher's
 * reply when the request reached the ring (the reply waits there), "not
 * executed" when it never did (see load_log and resolve_restored).
 *
 * Limits: orders, ClOrdIDs and sessions are remembered for the life of
 * the process (in memory) and in the order log (docs/fix.md, "Not done").
 */
#include "gateway/fix/fx_app.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include <quickfix/Application.h>
#include <quickfix/DataDictionary.h>
#include <quickfix/DataDictionaryProvider.h>
#include <quickfix/Exceptions.h>
#include <quickfix/Message.h>
#include <quickfix/MessageStore.h>
#include <quickfix/Parser.h>
#include <quickfix/Session.h>
#include <quickfix/TimeRange.h>
#include <quickfix/Values.h>
#include <quickfix/fix44/ExecutionReport.h>
#include <quickfix/fix44/Logout.h>
#include <quickfix/fix44/OrderCancelReject.h>

#include "gateway/fix/fx_route.h"
#include "gateway/fix/fx_store.h"
extern "C" {
#include "shm/shm_dec.h"
#include "shm/shm_error.h"
}

/* FIX44.xml, built into the program: nothing is read from the source tree
 * or an installed path at run time. */
asm(".section .rodata\n"
    ".global fx_dict_xml\n"
    "fx_dict_xml:\n"
    ".incbin \"gateway/fix/spec/FIX44.xml\"\n"
    ".byte 0\n"
    ".previous\n");
extern "C" const char fx_dict_xml[];

namespace
{

const int SCAN_MS = 2;           /* resting orders re-read at least this often */
const int TIMER_MS = 200;        /* QuickFIX session timers */
const size_t MAX_OUT = 64 << 20; /* unsent bytes before a slow peer is cut */
const int MAX_LEVELS = 64;       /* depth a market buy may take */

uint64_t now_us()
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t now_ms()
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

std::string dec(int64_t v, int digits)
{
	char b[40];
	shm_dec_format(b, sizeof(b), v, digits);
	return b;
}

/* Average price of `cum` shares worth `notional` (QTY x PRICE units), as
 * text with up to 8 decimals (AvgPx is informative; CumQty and the fills
 * are exact). */
std::string avg_px(__int128 notional, int64_t cum)
{
	if (cum <= 0)
		return "0";
	/* price units x 10^4 = 8 decimals of the price */
	__int128 q = notional * 10000 / cum;
	return dec((int64_t)q, SHM_PRICE_DIGITS + 4);
}

/* Order-log fields: no spaces or line ends inside. */
std::string esc(const std::string &s)
{
	std::string o;
	for (char c : s) {
		if (c == '%' || c == ' ' || c == '\n' || c == '\r' || c == '\t') {
			char b[4];
			snprintf(b, sizeof(b), "%%%02X", (unsigned char)c);
			o += b;
		} else {
			o += c;
		}
	}
	return o;
}

std::string unesc(const std::string &s)
{
	std::string o;
	for (size_t i = 0; i < s.size(); i++) {
		if (s[i] == '%' && i + 2 < s.size()) {
			o += (char)strtol(s.substr(i + 1, 2).c_str(), nullptr, 16);
			i += 2;
		} else {
			o += s[i];
		}
	}
	return o;
}

class App;

struct Conn : public FIX::Responder {
	App *app = nullptr;
	int fd = -1;
	FIX::Session *session = nullptr;
	FIX::Parser parser;
	std::string out;
	size_t pending_in = 0; /* bytes since the last complete message */
	uint64_t accepted_ms = 0;
	bool closing = false;
	bool detached = false; /* the session dropped us as its responder */
	bool want_out = false; /* out has bytes for the loop to write */
	bool epollout = false; /* EPOLLOUT is armed */
	bool send(const std::string &s) override;
	void disconnect() override
	{
		detached = true;
		closing = true;
	}
};

/* An order this process placed. */
struct Ord {
	std::string sender; /* the session's SenderCompID */
	std::string clordid, orig_clordid;
	std::string cancel_clordid; /* a cancel or replace in flight */
	uint64_t id = 0, account = 0;
	std::string symbol;
	int side = 0; /* FX_BUY / FX_SELL */
	char ordtype = '2';
	char fix_tif = '0';
	int64_t qty = 0, price = 0; /* the FIX order's quantity and limit */
	int64_t cum = 0;
	__int128 notional = 0;
	uint32_t reported = 0; /* fills reported */
	uint32_t shard = 0;
	int inflight = 0; /* cancel/replace requests outstanding */
	bool done = false;
	bool rescan = false;  /* last read was busy */
	bool rebuild = false; /* loaded from the order log: cum and notional
			       * are recomputed from the first `reported`
			       * fills at the next read */
};

/* A string field of a P line: never empty (a leading '='). */
std::string fld(const std::string &s)
{
	return "=" + esc(s);
}

std::string unfld(const std::string &s)
{
	return s.empty() ? s : unesc(s.substr(1));
}

/* "O id sender clordid account side ordtype tif qty price symbol shard" */
std::string order_line(const Ord &o)
{
	return "O " + std::to_string(o.id) + " " + esc(o.sender) + " " + esc(o.clordid) +
	       " " + std::to_string(o.account) + " " + std::to_string(o.side) + " " +
	       std::string(1, o.ordtype) + " " + std::string(1, o.fix_tif) + " " +
	       std::to_string(o.qty) + " " + std::to_string(o.price) + " " +
	       esc(o.symbol) + " " + std::to_string(o.shard);
}

enum pend_kind { P_NEW, P_CANCEL, P_REPLACE };

struct Pend {
	pend_kind kind;
	std::string sender, clordid, orig_clordid;
	uint64_t order_id = 0;
	uint32_t shard = 0;
	uint64_t ring_pos = UINT64_MAX; /* UINT64_MAX: not on the ring yet */
	uint64_t log_pos = 0;           /* its position, known when queued */
	bool restored = false;          /* from the order log of a predecessor */
	Ord ord;                        /* P_NEW: the order to be; P_REPLACE:
					 * the new qty/price in qty/price */
};

struct SessState {
	std::unordered_map<std::string, uint64_t> clords; /* ClOrdID -> order (0: none) */
	Conn *conn = nullptr;
};

class App : public FIX::Application
{
      public:
	struct fx_route *route = nullptr;
	std::string comp_id;
	bool quiet = false;
	bool restrict_sessions = false;
	std::map<std::string, std::set<uint64_t>> allowed; /* sender -> accounts */
	std::set<std::string> any_account;                 /* senders allowed all */
	std::unique_ptr<FIX::MessageStoreFactory> store;
	fx::StoreFactory *fstore = nullptr; /* store, with a data directory */
	bool store_failed = false;	    /* said so once */
	/* Writes the messages the store holds (fx_store): called first by
	 * every log_sync. */
	void store_flush()
	{
		std::string err;
		if (fstore && !fstore->flush(&err) && !store_failed) {
			store_failed = true;
			fprintf(stderr,
				"shmex-fix: %s; the session's messages from here on "
				"are not sent (it resumes after a restart of shmex-fix "
				"from what was written)\n",
				err.c_str());
		}
	}
	FIX::DataDictionaryProvider ddp;
	std::map<std::string, std::unique_ptr<FIX::Session>> sessions;
	std::map<std::string, SessState> sstate;
	std::unordered_map<uint64_t, Ord> orders; /* live or not yet ended */
	std::unordered_map<uint64_t, Pend> pend;  /* req_id -> request */
	std::vector<uint64_t> shard_events;
	uint64_t next_req = 0;
	uint64_t nsent = 0; /* requests put on the rings */
	std::vector<fx_fill> fills;
	int olog = -1;    /* <data-dir>/fix/orders.log, -1: none */
	std::string obuf; /* lines not yet written */
	std::string rings_id;

	/* Lines are collected and written by log_sync, in one write: before
	 * requests are published (their P lines), before replies are
	 * consumed from a ring (their outcomes), and once per loop turn. */
	void log(const std::string &line)
	{
		if (olog < 0)
			return;
		obuf += line;
		obuf += '\n';
	}
	/* The stored messages, then the order log's lines.  In that order:
	 * a line that says a report was sent (F, A, D) is never on disk
	 * without the report, so a kill in between at worst sends a report
	 * again after the restart (same ExecID), never loses one.  The lines
	 * of an incoming message are written at the end of fromApp, before
	 * QuickFIX counts it as received (its sequence number reaches the
	 * store at the next call). */
	void log_sync()
	{
		store_flush();
		size_t off = 0;
		while (off < obuf.size()) {
			ssize_t k = write(olog, obuf.data() + off, obuf.size() - off);
			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0) {
				fprintf(stderr, "shmex-fix: writing the order log: %s\n",
					strerror(errno));
				break;
			}
			off += (size_t)k;
		}
		obuf.clear();
	}
	std::string pend_line(uint64_t req, const Pend &p) const;
	int load_log(const std::string &path);
	void resolve_restored();
	void not_sent(uint64_t req, const Pend &p, const std::string &why);

	void onCreate(const FIX::SessionID &) override
	{
	}
	void onLogon(const FIX::SessionID &sid) override
	{
		if (!quiet)
			fprintf(stderr, "shmex-fix: %s logged on\n",
				sid.getTargetCompID().getString().c_str());
	}
	void onLogout(const FIX::SessionID &sid) override
	{
		if (!quiet)
			fprintf(stderr, "shmex-fix: %s logged out\n",
				sid.getTargetCompID().getString().c_str());
	}
	void toAdmin(FIX::Message &, const FIX::SessionID &) override
	{
	}
	void toApp(FIX::Message &, const FIX::SessionID &) throw(FIX::DoNotSend) override
	{
	}
	void fromAdmin(const FIX::Message &,
		       const FIX::SessionID &) throw(FIX::FieldNotFound,
						     FIX::IncorrectDataFormat,
						     FIX::IncorrectTagValue,
						     FIX::RejectLogon) override
	{
	}
	void fromApp(const FIX::Message &m, const FIX::SessionID &sid) throw(
		FIX::FieldNotFound, FIX::IncorrectDataFormat, FIX::IncorrectTagValue,
		FIX::UnsupportedMessageType) override;

	FIX::Session *session_for(const std::string &sender);
	void on_reply(const fx_reply *y);
	void on_sent(uint64_t req_id, uint64_t pos);
	void scan(Ord &o);
	void scan_all();

      private:
	void new_order(const FIX::Message &m, const std::string &sender);
	void cancel(const FIX::Message &m, const std::string &sender, bool replace);
	void status(const FIX::Message &m, const std::string &sender);
	bool may_trade(const std::string &sender, uint64_t account) const;
	void send_er(const std::string &sender, const Ord &o, char exec_type,
		     char ord_status, const std::string &exec_id, int64_t leaves,
		     const std::string &text = "", const fx_fill *f = nullptr,
		     int rej_reason = -1);
	void reject_order(const std::string &sender, const Ord &o, int reason,
			  const std::string &text, uint64_t req_id);
	void cancel_reject(const std::string &sender, const std::string &clordid,
			   const std::string &orig, uint64_t order_id, bool replace,
			   int reason, const std::string &text);
	uint64_t req_id()
	{
		return ++next_req;
	}
};

/* Queued, never written here: the loop writes each connection's output
 * once per turn (one send for every report of the turn, instead of one
 * send and one trip through the loopback device for each), and a close
 * writes what is left. */
bool Conn::send(const std::string &s)
{
	if (fd < 0 || closing)
		return false;
	out.append(s);
	if (out.size() > MAX_OUT)
		closing = true;
	want_out = true;
	return true;
}

/* ---- tags ---- */

bool get(const FIX::FieldMap &m, int tag, std::string &v)
{
	if (!m.isSetField(tag))
		return false;
	v = m.getField(tag);
	return true;
}

std::string need(const FIX::FieldMap &m, int tag)
{
	std::string v;
	if (!get(m, tag, v))
		throw FIX::FieldNotFound(tag);
	return v;
}

/* A decimal field at the engine's scale: > 0 and at most `digits` decimals,
 * or a Rejected report saying which. */
bool parse_dec(const std::string &s, int digits, int64_t &out)
{
	return shm_dec_parse(s.data(), s.size(), digits, &out) == 0;
}

bool poss_dup(const FIX::Message &m)
{
	const FIX::Header &h = m.getHeader();
	return h.isSetField(FIX::FIELD::PossDupFlag) &&
	       h.getField(FIX::FIELD::PossDupFlag) == "Y";
}

bool parse_u64(const std::string &s, uint64_t &out)
{
	if (s.empty() || s.size() > 20)
		return false;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s.c_str(), &end, 10);
	if (errno || *end || s[0] == '-' || s[0] == '+')
		return false;
	out = v;
	return true;
}

/* ---- the application layer ---- */

FIX::Session *App::session_for(const std::string &sender)
{
	auto it = sessions.find(sender);
	if (it != sessions.end())
		return it->second.get();
	FIX::SessionID sid(FIX::BeginString_FIX44, comp_id, sender);
	/* 00:00-00:00 UTC: always in session (QuickFIX resets a session's
	 * numbers when its store was created on an earlier day). */
	FIX::TimeRange tr(FIX::UtcTimeOnly(0, 0, 0), FIX::UtcTimeOnly(0, 0, 0));
	std::unique_ptr<FIX::Session> s(
		new FIX::Session(*this, *store, sid, ddp, tr, 0, nullptr));
	s->setResetOnLogon(false);
	s->setResetOnLogout(false);
	s->setResetOnDisconnect(false);
	s->setPersistMessages(true);
	s->setValidateLengthAndChecksum(true);
	s->setCheckLatency(false);
	s->setMillisecondsInTimeStamp(true);
	FIX::Session *p = s.get();
	sessions[sender] = std::move(s);
	return p;
}

bool App::may_trade(const std::string &sender, uint64_t account) const
{
	if (!restrict_sessions || any_account.count(sender))
		return true;
	auto it = allowed.find(sender);
	return it != allowed.end() && it->second.count(account);
}

void App::send_er(const std::string &sender, const Ord &o, char exec_type,
		  char ord_status, const std::string &exec_id, int64_t leaves,
		  const std::string &text, const fx_fill *f, int rej_reason)
{
	FIX44::ExecutionReport er;
	er.setField(FIX::FIELD::OrderID,
		    o.id ? std::to_string(o.id) : std::string("NONE"));
	er.setField(FIX::FIELD::ExecID, exec_id);
	er.setField(FIX::ExecType(exec_type));
	er.setField(FIX::OrdStatus(ord_status));
	if (!o.clordid.empty())
		er.setField(FIX::FIELD::ClOrdID, o.clordid);
	if (!o.orig_clordid.empty())
		er.setField(FIX::FIELD::OrigClOrdID, o.orig_clordid);
	if (o.account)
		er.setField(FIX::FIELD::Account, std::to_string(o.account));
	if (!o.symbol.empty())
		er.setField(FIX::FIELD::Symbol, o.symbol);
	er.setField(FIX::Side(o.side == FX_SELL ? FIX::Side_SELL : FIX::Side_BUY));
	er.setField(FIX::OrdType(o.ordtype));
	er.setField(FIX::TimeInForce(o.fix_tif));
	if (o.qty > 0)
		er.setField(FIX::FIELD::OrderQty, dec(o.qty, SHM_QTY_DIGITS));
	if (o.ordtype == FIX::OrdType_LIMIT && o.price > 0)
		er.setField(FIX::FIELD::Price, dec(o.price, SHM_PRICE_DIGITS));
	er.setField(FIX::FIELD::LeavesQty, dec(leaves < 0 ? 0 : leaves, SHM_QTY_DIGITS));
	er.setField(FIX::FIELD::CumQty, dec(o.cum, SHM_QTY_DIGITS));
	er.setField(FIX::FIELD::AvgPx, avg_px(o.notional, o.cum));
	if (f) {
		er.setField(FIX::FIELD::LastQty, dec(f->qty, SHM_QTY_DIGITS));
		er.setField(FIX::FIELD::LastPx, dec(f->price, SHM_PRICE_DIGITS));
		er.setField(FIX::FIELD::SecondaryExecID, std::to_string(f->counterparty));
		er.setField(FIX::LastLiquidityInd(f->maker ? 1 : 2));
	}
	er.setField(FIX::TransactTime(FIX::UtcTimeStamp(), 3));
	if (!text.empty())
		er.setField(FIX::FIELD::Text, text);
	if (rej_reason >= 0)
		er.setField(FIX::OrdRejReason(rej_reason));
	FIX::Session *s = session_for(sender);
	FIX::Message &m = er;
	m.getHeader().setField(FIX::SenderCompID(comp_id));
	m.getHeader().setField(FIX::TargetCompID(sender));
	/* Logged out: stored under the next sequence number and delivered by
	 * resend after the next Logon. */
	s->send(m);
}

int ord_rej_reason(int rc)
{
	switch (rc) {
	case SHMEX_ENOSYMBOL:
	case SHMEX_EBADSYMBOL:
		return FIX::OrdRejReason_UNKNOWN_SYMBOL;
	case SHMEX_ENOACCOUNT:
	case SHMEX_EBADACCOUNT:
		return FIX::OrdRejReason_UNKNOWN_ACCOUNT;
	case SHMEX_ENOFUNDS:
	case SHMEX_ENOSHARES:
		return FIX::OrdRejReason_ORDER_EXCEEDS_LIMIT;
	case SHMEX_EBADAMOUNT:
		return FIX::OrdRejReason_INCORRECT_QUANTITY;
	default:
		return FIX::OrdRejReason_OTHER;
	}
}

void App::reject_order(const std::string &sender, const Ord &o, int reason,
		       const std::string &text, uint64_t req)
{
	Ord r = o;
	r.id = 0;
	send_er(sender, r, FIX::ExecType_REJECTED, FIX::OrdStatus_REJECTED,
		"J" + std::to_string(req) + "." + std::to_string(now_ms()), 0, text,
		nullptr, reason);
}

void App::cancel_reject(const std::string &sender, const std::string &clordid,
			const std::string &orig, uint64_t order_id, bool replace,
			int reason, const std::string &text)
{
	FIX44::OrderCancelReject r;
	r.setField(FIX::FIELD::OrderID,
		   order_id ? std::to_string(order_id) : std::string("NONE"));
	r.setField(FIX::FIELD::ClOrdID, clordid);
	r.setField(FIX::FIELD::OrigClOrdID, orig);
	r.setField(FIX::OrdStatus(reason == FIX::CxlRejReason_TOO_LATE_TO_CANCEL
					  ? FIX::OrdStatus_FILLED
					  : FIX::OrdStatus_REJECTED));
	r.setField(FIX::CxlRejResponseTo(
		replace ? FIX::CxlRejResponseTo_ORDER_CANCEL_REPLACE_REQUEST
			: FIX::CxlRejResponseTo_ORDER_CANCEL_REQUEST));
	r.setField(FIX::CxlRejReason(reason));
	if (!text.empty())
		r.setField(FIX::FIELD::Text, text);
	FIX::Message &m = r;
	m.getHeader().setField(FIX::SenderCompID(comp_id));
	m.getHeader().setField(FIX::TargetCompID(sender));
	session_for(sender)->send(m);
}

void App::fromApp(const FIX::Message &m,
		  const FIX::SessionID &sid) throw(FIX::FieldNotFound,
						   FIX::IncorrectDataFormat,
						   FIX::IncorrectTagValue,
						   FIX::UnsupportedMessageType)
{
	std::string type = m.getHeader().getField(FIX::FIELD::MsgType);
	std::string sender = sid.getTargetCompID().getString();
	/* What this message made us log (its ClOrdID, its request) is
	 * written before QuickFIX counts the message as received: a kill
	 * after that point finds it in the order log; before it, the client
	 * sends the message again (ResendRequest). */
	struct Sync {
		App *a;
		~Sync()
		{
			a->log_sync();
		}
	} sync{this};
	/* Only the exceptions of the throw() list may leave (QuickFIX turns
	 * each into its Reject); anything else would abort the process. */
	try {
		if (type == FIX::MsgType_NewOrderSingle)
			new_order(m, sender);
		else if (type == FIX::MsgType_OrderCancelRequest)
			cancel(m, sender, false);
		else if (type == FIX::MsgType_OrderCancelReplaceRequest)
			cancel(m, sender, true);
		else if (type == FIX::MsgType_OrderStatusRequest)
			status(m, sender);
		else
			throw FIX::UnsupportedMessageType();
	} catch (FIX::FieldNotFound &) {
		throw;
	} catch (FIX::IncorrectDataFormat &) {
		throw;
	} catch (FIX::IncorrectTagValue &) {
		throw;
	} catch (FIX::UnsupportedMessageType &) {
		throw;
	} catch (std::exception &e) {
		if (!quiet)
			fprintf(stderr, "shmex-fix: %s from %s: %s\n", type.c_str(),
				sender.c_str(), e.what());
	}
}

void App::new_order(const FIX::Message &m, const std::string &sender)
{
	Ord o;
	o.sender = sender;
	o.clordid = need(m, FIX::FIELD::ClOrdID);
	std::string side = need(m, FIX::FIELD::Side);
	std::string ordtype = need(m, FIX::FIELD::OrdType);
	o.symbol = need(m, FIX::FIELD::Symbol);
	std::string acct = need(m, FIX::FIELD::Account);
	std::string qty = need(m, FIX::FIELD::OrderQty);
	std::string tif, price, inst;
	get(m, FIX::FIELD::TimeInForce, tif);
	get(m, FIX::FIELD::Price, price);
	get(m, FIX::FIELD::ExecInst, inst);
	if (side != "1" && side != "2")
		throw FIX::IncorrectTagValue(FIX::FIELD::Side);
	o.side = side == "1" ? FX_BUY : FX_SELL;
	o.ordtype = ordtype.size() == 1 ? ordtype[0] : '?';
	o.fix_tif = tif.empty() ? FIX::TimeInForce_DAY : tif[0];
	uint64_t req = req_id();
	SessState &ss = sstate[sender];
	if (ss.clords.count(o.clordid) && poss_dup(m)) {
		/* A resend (PossDupFlag) of an order already taken: it has
		 * been or will be answered (also across a restart of this
		 * process: the order log keeps the request). */
		return;
	}
	if (ss.clords.count(o.clordid)) {
		reject_order(sender, o, FIX::OrdRejReason_DUPLICATE_ORDER,
			     "Duplicate ClOrdID (11) in this session", req);
		return;
	}
	ss.clords[o.clordid] = 0;
	log("C " + esc(sender) + " " + esc(o.clordid));
	if (!parse_u64(acct, o.account)) {
		reject_order(sender, o, FIX::OrdRejReason_UNKNOWN_ACCOUNT,
			     "Account (1) must be a shmex account id", req);
		return;
	}
	if (!parse_dec(qty, SHM_QTY_DIGITS, o.qty) || o.qty <= 0) {
		reject_order(sender, o, FIX::OrdRejReason_INCORRECT_QUANTITY,
			     "OrderQty (38) must be > 0 with at most 4 decimals", req);
		return;
	}
	if (o.ordtype != FIX::OrdType_LIMIT && o.ordtype != FIX::OrdType_MARKET) {
		reject_order(sender, o,
			     FIX::OrdRejReason_UNSUPPORTED_ORDER_CHARACTERISTIC,
			     "OrdType (40) must be 1 (market) or 2 (limit)", req);
		return;
	}
	int tif_engine;
	switch (o.fix_tif) {
	case FIX::TimeInForce_DAY:
	case FIX::TimeInForce_GOOD_TILL_CANCEL:
		tif_engine = FX_GTC;
		break;
	case FIX::TimeInForce_IMMEDIATE_OR_CANCEL:
		tif_engine = FX_IOC;
		break;
	case FIX::TimeInForce_FILL_OR_KILL:
		tif_engine = FX_FOK;
		break;
	default:
		reject_order(sender, o,
			     FIX::OrdRejReason_UNSUPPORTED_ORDER_CHARACTERISTIC,
			     "TimeInForce (59) must be 0, 1, 3 or 4", req);
		return;
	}
	if (tif.size() > 1) {
		reject_order(sender, o,
			     FIX::OrdRejReason_UNSUPPORTED_ORDER_CHARACTERISTIC,
			     "TimeInForce (59) must be 0, 1, 3 or 4", req);
		return;
	}
	bool post_only = inst.find('6') != std::string::npos;
	if (o.ordtype == FIX::OrdType_LIMIT) {
		if (price.empty())
			throw FIX::FieldNotFound(FIX::FIELD::Price);
		if (!parse_dec(price, SHM_PRICE_DIGITS, o.price) || o.price <= 0) {
			reject_order(sender, o, FIX::OrdRejReason_OTHER,
				     "Price (44) must be > 0 with at most 4 decimals",
				     req);
			return;
		}
	} else if (post_only) {
		reject_order(sender, o,
			     FIX::OrdRejReason_UNSUPPORTED_ORDER_CHARACTERISTIC,
			     "ExecInst 6 (post-only) needs a limit order", req);
		return;
	}
	if (o.symbol.empty() || o.symbol.size() > 15) {
		reject_order(sender, o, FIX::OrdRejReason_UNKNOWN_SYMBOL,
			     "Invalid symbol", req);
		return;
	}
	if (!fx_route_account_exists(route, o.account)) {
		reject_order(sender, o, FIX::OrdRejReason_UNKNOWN_ACCOUNT,
			     "Account does not exist", req);
		return;
	}
	if (!may_trade(sender, o.account)) {
		reject_order(sender, o, FIX::OrdRejReason_UNKNOWN_ACCOUNT,
			     "This session may not trade account " + acct, req);
		return;
	}
	fx_req q;
	memset(&q, 0, sizeof(q));
	q.req_id = req;
	q.kind = FX_REQ_ORDER;
	q.side = (uint8_t)o.side;
	q.tif = (uint8_t)tif_engine;
	q.account = o.account;
	q.qty = o.qty;
	snprintf(q.symbol, sizeof(q.symbol), "%s", o.symbol.c_str());
	fx_level lv[MAX_LEVELS];
	size_t nlv = 0;
	if (o.ordtype == FIX::OrdType_MARKET) {
		/* A market order never rests: IOC (FOK when asked).  A sell
		 * takes any bid (limit one tick); a buy reserves cash for the
		 * ask levels it would take: its limit is the price of the
		 * level where the asks in view cover its quantity (or the
		 * last level in view), so it can never pay more than that. */
		if (tif_engine == FX_GTC)
			q.tif = FX_IOC;
		if (o.side == FX_SELL) {
			q.price = 1;
		} else {
			int rc = fx_route_levels(route, q.symbol, FX_SELL, lv, MAX_LEVELS,
						 &nlv);
			if (rc == SHMEX_ENOSYMBOL || rc == SHMEX_EBADSYMBOL) {
				reject_order(sender, o, ord_rej_reason(rc),
					     fx_route_strerror(rc), req);
				return;
			}
			if (rc || nlv == 0) {
				reject_order(
					sender, o, FIX::OrdRejReason_OTHER,
					rc ? fx_route_strerror(rc)
					   : "No offers: a market buy needs asks to price "
					     "its cash reservation",
					req);
				return;
			}
			int64_t need_qty = o.qty;
			q.price = lv[nlv - 1].price;
			for (size_t i = 0; i < nlv; i++) {
				need_qty -= lv[i].qty;
				if (need_qty <= 0) {
					q.price = lv[i].price;
					break;
				}
			}
		}
	} else {
		/* Post-only: the matcher rejects it (SHMEX_EWOULDCROSS) if
		 * it would cross when it is applied, atomically with the
		 * match; no read of the book here could promise that. */
		q.price = o.price;
		q.post_only = post_only;
	}
	uint32_t shard;
	uint64_t pos;
	int rc = fx_route_send(route, &q, &shard, &pos);
	if (rc) {
		reject_order(sender, o, ord_rej_reason(rc), fx_route_strerror(rc), req);
		return;
	}
	Pend p;
	p.kind = P_NEW;
	p.sender = sender;
	p.clordid = o.clordid;
	p.shard = shard;
	p.log_pos = pos;
	p.ord = o;
	p.ord.shard = shard;
	/* Recorded before the request can reach the ring (log_sync runs
	 * before fx_route_flush publishes it). */
	log(pend_line(req, p));
	pend.emplace(req, std::move(p));
}

void App::cancel(const FIX::Message &m, const std::string &sender, bool replace)
{
	std::string clordid = need(m, FIX::FIELD::ClOrdID);
	std::string orig = need(m, FIX::FIELD::OrigClOrdID);
	std::string oid;
	get(m, FIX::FIELD::OrderID, oid);
	SessState &ss = sstate[sender];
	uint64_t id = 0;
	auto it = ss.clords.find(orig);
	if (it != ss.clords.end())
		id = it->second;
	if (!id && !oid.empty()) {
		uint64_t x;
		if (parse_u64(oid, x)) {
			auto o = orders.find(x);
			if (o != orders.end() && o->second.sender == sender)
				id = x;
		}
	}
	if (ss.clords.count(clordid) && poss_dup(m))
		return; /* a resend of one already taken (see new_order) */
	if (ss.clords.count(clordid)) {
		cancel_reject(sender, clordid, orig, id, replace,
			      FIX::CxlRejReason_DUPLICATE_CLORDID_RECEIVED,
			      "Duplicate ClOrdID (11) in this session");
		return;
	}
	ss.clords[clordid] = 0;
	log("C " + esc(sender) + " " + esc(clordid));
	auto o = orders.find(id);
	if (!id || o == orders.end()) {
		cancel_reject(sender, clordid, orig, id, replace,
			      id ? FIX::CxlRejReason_TOO_LATE_TO_CANCEL
				 : FIX::CxlRejReason_UNKNOWN_ORDER,
			      id ? "Order has nothing open"
				 : "Unknown order (OrigClOrdID 41)");
		return;
	}
	Ord &ord = o->second;
	if (ord.inflight) {
		cancel_reject(
			sender, clordid, orig, id, replace,
			FIX::CxlRejReason_ORDER_ALREADY_IN_PENDING_CANCEL_OR_PENDING_REPLACE_STATUS,
			"A cancel or replace of this order is in flight");
		return;
	}
	fx_req q;
	memset(&q, 0, sizeof(q));
	q.req_id = req_id();
	q.account = ord.account;
	q.order_id = id;
	Pend p;
	p.kind = replace ? P_REPLACE : P_CANCEL;
	p.sender = sender;
	p.clordid = clordid;
	p.orig_clordid = orig;
	p.order_id = id;
	if (replace) {
		std::string qty = need(m, FIX::FIELD::OrderQty);
		std::string price, side;
		get(m, FIX::FIELD::Price, price);
		get(m, FIX::FIELD::Side, side);
		int64_t nq, np = ord.price;
		if (!parse_dec(qty, SHM_QTY_DIGITS, nq) || nq <= 0) {
			cancel_reject(
				sender, clordid, orig, id, true, FIX::CxlRejReason_OTHER,
				"OrderQty (38) must be > 0 with at most 4 decimals");
			return;
		}
		if (!price.empty() &&
		    (!parse_dec(price, SHM_PRICE_DIGITS, np) || np <= 0)) {
			cancel_reject(sender, clordid, orig, id, true,
				      FIX::CxlRejReason_OTHER,
				      "Price (44) must be > 0 with at most 4 decimals");
			return;
		}
		if (ord.ordtype != FIX::OrdType_LIMIT ||
		    side != (ord.side == FX_BUY ? "1" : "2")) {
			cancel_reject(
				sender, clordid, orig, id, true, FIX::CxlRejReason_OTHER,
				"A replace may change only OrderQty and Price of a limit order");
			return;
		}
		if (nq <= ord.cum) {
			cancel_reject(sender, clordid, orig, id, true,
				      FIX::CxlRejReason_TOO_LATE_TO_CANCEL,
				      "OrderQty (38) is not above the executed quantity");
			return;
		}
		q.kind = FX_REQ_MODIFY;
		q.price = np;
		q.qty = nq - ord.cum; /* the new open quantity */
		p.ord.qty = nq;
		p.ord.price = np;
	} else {
		q.kind = FX_REQ_CANCEL;
	}
	uint32_t shard;
	uint64_t pos;
	int rc = fx_route_send(route, &q, &shard, &pos);
	if (rc) {
		cancel_reject(sender, clordid, orig, id, replace, FIX::CxlRejReason_OTHER,
			      fx_route_strerror(rc));
		return;
	}
	p.shard = shard;
	p.log_pos = pos;
	ord.inflight++;
	log(pend_line(q.req_id, p));
	pend.emplace(q.req_id, std::move(p));
}

void App::status(const FIX::Message &m, const std::string &sender)
{
	std::string clordid = need(m, FIX::FIELD::ClOrdID);
	SessState &ss = sstate[sender];
	auto it = ss.clords.find(clordid);
	uint64_t id = it == ss.clords.end() ? 0 : it->second;
	Ord o;
	o.clordid = clordid;
	o.id = id;
	get(m, FIX::FIELD::Symbol, o.symbol);
	auto lo = orders.find(id);
	if (lo != orders.end()) {
		o = lo->second;
		o.orig_clordid.clear();
	}
	fx_order so;
	size_t n = 0;
	int rc = id ? fx_route_order(route, id, &so, nullptr, 0, &n) : SHMEX_ENOORDER;
	if (rc) {
		o.id = 0;
		send_er(sender, o, FIX::ExecType_ORDER_STATUS, FIX::OrdStatus_REJECTED,
			"S" + std::to_string(req_id()), 0,
			rc == SHMEX_ENOORDER ? "Unknown order" : fx_route_strerror(rc));
		return;
	}
	char st = so.live ? (so.executed > 0 ? FIX::OrdStatus_PARTIALLY_FILLED
					     : FIX::OrdStatus_NEW)
			  : (so.executed == so.amount ? FIX::OrdStatus_FILLED
						      : FIX::OrdStatus_CANCELED);
	send_er(sender, o, FIX::ExecType_ORDER_STATUS, st, "S" + std::to_string(req_id()),
		so.live ? so.open : 0);
}

void App::on_sent(uint64_t req, uint64_t pos)
{
	nsent++;
	auto it = pend.find(req);
	if (it != pend.end())
		it->second.ring_pos = pos;
}

void App::on_reply(const fx_reply *y)
{
	if (y->kind == FX_REPLY_RESTART) {
		/* Every request of ours before ring position order_id that is
		 * not answered by now was not executed (docs/durability.md). */
		std::vector<uint64_t> lost;
		for (auto &kv : pend)
			if (kv.second.shard == y->shard &&
			    kv.second.ring_pos < y->order_id)
				lost.push_back(kv.first);
		for (uint64_t req : lost) {
			fx_reply r = *y;
			r.req_id = req;
			r.status = SHMEX_ENOTEXEC;
			r.kind = pend[req].kind == P_NEW      ? (uint8_t)FX_REQ_ORDER
				 : pend[req].kind == P_CANCEL ? (uint8_t)FX_REQ_CANCEL
							      : (uint8_t)FX_REQ_MODIFY;
			on_reply(&r);
		}
		return;
	}
	auto it = pend.find(y->req_id);
	if (it == pend.end() || it->second.shard != y->shard)
		return; /* stale: answered already, or forged */
	Pend p = std::move(it->second);
	pend.erase(it);
	/* "A req" after every line its outcome writes: a restart that finds
	 * the P line without it answers the request again (the reply is
	 * still on the ring: fx_route_replies consumes only after commit). */
	struct Answered {
		App *a;
		uint64_t req;
		~Answered()
		{
			a->log("A " + std::to_string(req));
		}
	} answered{this, y->req_id};
	if (p.kind == P_NEW) {
		if (y->kind != FX_REQ_ORDER)
			return;
		if (y->status) {
			reject_order(p.sender, p.ord, ord_rej_reason(y->status),
				     fx_route_strerror(y->status), y->req_id);
			return;
		}
		Ord &o = orders[y->order_id];
		o = p.ord;
		o.id = y->order_id;
		sstate[p.sender].clords[o.clordid] = o.id;
		log(order_line(o));
		send_er(p.sender, o, FIX::ExecType_NEW, FIX::OrdStatus_NEW,
			"N" + std::to_string(o.id), o.qty);
		scan(o);
		return;
	}
	auto oi = orders.find(p.order_id);
	if (oi == orders.end()) {
		/* Not ours any more (cannot happen while the cancel is in
		 * flight, which keeps the order): still answered. */
		if (y->status)
			cancel_reject(p.sender, p.clordid, p.orig_clordid, p.order_id,
				      p.kind == P_REPLACE, FIX::CxlRejReason_OTHER,
				      fx_route_strerror(y->status));
		else
			fprintf(stderr, "shmex-fix: request %llu applied to order %llu, "
					"which is not ours\n",
				(unsigned long long)y->req_id,
				(unsigned long long)p.order_id);
		return;
	}
	Ord &o = oi->second;
	o.inflight--;
	bool replace = p.kind == P_REPLACE;
	if (y->status) {
		int reason = y->status == SHMEX_ENOTOPEN || y->status == SHMEX_ENOORDER
				     ? FIX::CxlRejReason_TOO_LATE_TO_CANCEL
				     : FIX::CxlRejReason_OTHER;
		cancel_reject(p.sender, p.clordid, p.orig_clordid, o.id, replace, reason,
			      fx_route_strerror(y->status));
		scan(o);
		return;
	}
	/* Fills before the cancel or replace are reported first. */
	if (replace) {
		scan(o);
		o.orig_clordid = p.orig_clordid;
		o.clordid = p.clordid;
		o.qty = p.ord.qty;
		o.price = p.ord.price;
		sstate[p.sender].clords[p.clordid] = o.id;
		log("R " + std::to_string(o.id) + " " + esc(o.clordid) + " " +
		    esc(o.orig_clordid) + " " + std::to_string(o.qty) + " " +
		    std::to_string(o.price));
		if (!o.done)
			send_er(p.sender, o, FIX::ExecType_REPLACED,
				o.cum > 0 ? FIX::OrdStatus_PARTIALLY_FILLED
					  : FIX::OrdStatus_NEW,
				"R" + std::to_string(o.id) + "." +
					std::to_string(y->time_ns),
				o.qty - o.cum);
	} else {
		o.cancel_clordid = p.clordid;
		o.orig_clordid = p.orig_clordid;
		log("X " + std::to_string(o.id) + " " + esc(o.cancel_clordid) + " " +
		    esc(o.orig_clordid));
	}
	scan(o);
}

/* Reports what changed in order o since the last read: each new fill,
 * then its end. */
void App::scan(Ord &o)
{
	if (o.done || o.inflight)
		return;
	fx_order so;
	size_t n = 0;
	size_t want = o.reported + 16;
	for (int round = 0; round < 4; round++) {
		if (fills.size() < want)
			fills.resize(want);
		int rc = fx_route_order(route, o.id, &so, fills.data(), want, &n);
		if (rc) {
			/* Busy or not durable yet: next round. */
			o.rescan = rc == SHMEX_EBUSY;
			if (rc == SHMEX_ENOORDER) {
				o.done = true;
				log("D " + std::to_string(o.id));
			}
			return;
		}
		if (n >= so.nfills)
			break;
		want = so.nfills;
	}
	if (n < so.nfills) {
		o.rescan = true;
		return;
	}
	o.rescan = false;
	if (o.rebuild) {
		o.cum = 0;
		o.notional = 0;
		for (size_t i = 0; i < o.reported && i < n; i++) {
			o.cum += fills[i].qty;
			o.notional += (__int128)fills[i].qty * fills[i].price;
		}
		o.rebuild = false;
	}
	for (size_t i = o.reported; i < n; i++) {
		const fx_fill &f = fills[i];
		o.cum += f.qty;
		o.notional += (__int128)f.qty * f.price;
		o.reported = (uint32_t)(i + 1);
		bool full = o.cum >= o.qty;
		send_er(o.sender, o, FIX::ExecType_TRADE,
			full ? FIX::OrdStatus_FILLED : FIX::OrdStatus_PARTIALLY_FILLED,
			"F" + std::to_string(o.id) + "." + std::to_string(i),
			o.qty - o.cum, "", &f);
		log("F " + std::to_string(o.id) + " " + std::to_string(o.reported));
	}
	if (so.live)
		return;
	o.done = true;
	log("D " + std::to_string(o.id));
	if (so.done_reason == 1 /* SHM_BOOK_DONE_FILLED */)
		return;
	const char *why = "";
	switch (so.done_reason) {
	case 2: /* cancel */
		break;
	case 3:
		why = "IOC remainder cancelled";
		break;
	case 4:
		why = "FOK order could not fill completely";
		break;
	case 5:
		why = "Cancelled by self-trade prevention";
		break;
	case 6:
		why = "Replaced to a zero open quantity";
		break;
	}
	Ord r = o;
	if (!o.cancel_clordid.empty())
		r.clordid = o.cancel_clordid;
	else
		r.orig_clordid.clear();
	send_er(o.sender, r, FIX::ExecType_CANCELED, FIX::OrdStatus_CANCELED,
		"C" + std::to_string(o.id), 0, why);
}

/*
 * The order log (<data-dir>/fix/orders.log): what this process must know
 * after a restart to go on reporting -- which orders are ours, for which
 * session, under which ClOrdIDs, and how many fills each session has been
 * told of.  One line per fact, flushed (not fsynced: it protects against
 * a crash of this process; the exchange's own journal is what protects
 * against power loss).  Loaded at start, then rewritten with only what is
 * still needed.
 *
 *   C sender clordid          a ClOrdID used (duplicates stay refused)
 *   O id sender clordid ...   an accepted order (order_line)
 *   R id clordid orig qty px  replaced
 *   X id clordid orig         a cancel accepted
 *   F id n                    n fills reported
 *   D id                      ended: nothing more to report
 *   I rings-id                the instance's rings the positions below
 *                             refer to (fx_route_rings_id)
 *   P req kind shard pos ...  a request queued for a matcher, written
 *                             before it can reach the ring (pend_line)
 *   A req                     that request answered
 *
 * A request with a P line and no A line was in flight when a predecessor
 * died.  resolve_restored decides what it became: at or above the ring's
 * published count it never left (answered "not executed"); below it, the
 * matcher took or will take it and its reply is on the reply ring
 * (replies are consumed only once their outcome is written here), so it
 * is answered when that reply is read, as if this process had sent it.
 */
std::string App::pend_line(uint64_t req, const Pend &p) const
{
	const Ord &o = p.ord;
	return "P " + std::to_string(req) + " " + std::to_string((int)p.kind) + " " +
	       std::to_string(p.shard) + " " + std::to_string(p.log_pos) + " " +
	       fld(p.sender) + " " + fld(p.clordid) + " " + fld(p.orig_clordid) + " " +
	       std::to_string(p.order_id) + " " + std::to_string(o.account) + " " +
	       std::to_string(o.side) + " " + std::string(1, o.ordtype) + " " +
	       std::string(1, o.fix_tif) + " " + std::to_string(o.qty) + " " +
	       std::to_string(o.price) + " " + fld(o.symbol);
}
int App::load_log(const std::string &path)
{
	std::ifstream in(path);
	std::string line, log_rings;
	/* A line that does not parse, or names a shard this exchange does not
	 * have, changes nothing and is reported (the last one may have been
	 * cut short by a kill). */
	unsigned lineno = 0, bad = 0, first_bad = 0;
	uint32_t ns = fx_route_nshards(route);
	auto skip = [&]() {
		if (!bad++)
			first_bad = lineno;
	};
	while (in && std::getline(in, line)) {
		lineno++;
		std::istringstream is(line);
		std::string k;
		is >> k;
		if (k == "C") {
			std::string sd, cl;
			if (is >> sd >> cl)
				sstate[unesc(sd)].clords.emplace(unesc(cl), 0);
			else
				skip();
		} else if (k == "O") {
			Ord o;
			std::string sd, cl, sym, ot, tf;
			if (!(is >> o.id >> sd >> cl >> o.account >> o.side >> ot >> tf >>
			      o.qty >> o.price >> sym >> o.shard) ||
			    o.shard >= ns || ot.empty() || tf.empty()) {
				skip();
				continue;
			}
			o.sender = unesc(sd);
			o.clordid = unesc(cl);
			o.symbol = unesc(sym);
			o.ordtype = ot[0];
			o.fix_tif = tf[0];
			o.rebuild = true;
			sstate[o.sender].clords[o.clordid] = o.id;
			orders[o.id] = o;
		} else if (k == "I") {
			is >> log_rings;
		} else if (k == "P") {
			uint64_t req;
			int kind;
			Pend p;
			std::string sd, cl, orig, sym, ot, tf;
			if (!(is >> req >> kind >> p.shard >> p.log_pos >> sd >> cl >> orig >>
			      p.order_id >> p.ord.account >> p.ord.side >> ot >> tf >>
			      p.ord.qty >> p.ord.price >> sym) ||
			    kind < P_NEW || kind > P_REPLACE || ot.empty() || tf.empty() ||
			    p.shard >= ns) {
				skip();
				continue;
			}
			p.kind = (pend_kind)kind;
			p.sender = unfld(sd);
			p.clordid = unfld(cl);
			p.orig_clordid = unfld(orig);
			p.ord.sender = p.sender;
			p.ord.clordid = p.clordid;
			p.ord.ordtype = ot[0];
			p.ord.fix_tif = tf[0];
			p.ord.symbol = unfld(sym);
			p.ord.shard = p.shard;
			p.restored = true;
			pend[req] = p;
		} else if (k == "A") {
			uint64_t req;
			if (is >> req)
				pend.erase(req);
			else
				skip();
		} else if (k == "F" || k == "D" || k == "R" || k == "X") {
			uint64_t id;
			if (!(is >> id)) {
				skip();
				continue;
			}
			auto it = orders.find(id);
			if (it == orders.end())
				continue;
			Ord &o = it->second;
			if (k == "F") {
				is >> o.reported;
			} else if (k == "D") {
				orders.erase(it);
			} else if (k == "R") {
				std::string cl, orig;
				if (is >> cl >> orig >> o.qty >> o.price) {
					o.clordid = unesc(cl);
					o.orig_clordid = unesc(orig);
					sstate[o.sender].clords[o.clordid] = o.id;
				}
			} else {
				std::string cl, orig;
				if (is >> cl >> orig) {
					o.cancel_clordid = unesc(cl);
					o.orig_clordid = unesc(orig);
				}
			}
		} else if (!k.empty()) {
			skip();
		}
	}
	if (bad)
		fprintf(stderr,
			"shmex-fix: %s: %u unreadable line%s ignored (the first is line %u)\n",
			path.c_str(), bad, bad == 1 ? "" : "s", first_bad);
	/* Requests in flight in another instance's rings: their positions
	 * mean nothing here (the whole exchange restarted). */
	if (!pend.empty() && log_rings != rings_id) {
		fprintf(stderr,
			"shmex-fix: %zu requests were in flight when an earlier run of "
			"the exchange stopped; they are answered \"outcome unknown\"\n",
			pend.size());
		for (auto &kv : pend)
			kv.second.log_pos = UINT64_MAX; /* see resolve_restored */
	}
	/* Rewrite: every ClOrdID, the orders still open, the requests in
	 * flight. */
	std::string tmp = path + ".tmp";
	int f = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0660);
	if (f < 0)
		return -errno;
	olog = f;
	log("I " + rings_id);
	for (auto &ss : sstate)
		for (auto &c : ss.second.clords)
			if (!orders.count(c.second))
				log("C " + esc(ss.first) + " " + esc(c.first));
	for (auto &kv : orders) {
		const Ord &o = kv.second;
		log(order_line(o));
		if (!o.orig_clordid.empty() && o.cancel_clordid.empty())
			log("R " + std::to_string(o.id) + " " + esc(o.clordid) + " " +
			    esc(o.orig_clordid) + " " + std::to_string(o.qty) + " " +
			    std::to_string(o.price));
		if (!o.cancel_clordid.empty())
			log("X " + std::to_string(o.id) + " " + esc(o.cancel_clordid) +
			    " " + esc(o.orig_clordid));
		log("F " + std::to_string(o.id) + " " + std::to_string(o.reported));
	}
	for (auto &kv : pend)
		log(pend_line(kv.first, kv.second));
	log_sync();
	if (fdatasync(f) != 0 || rename(tmp.c_str(), path.c_str()) != 0)
		return -errno;
	return 0;
}

/* A request the predecessor logged and never published: nothing happened. */
void App::not_sent(uint64_t req, const Pend &p, const std::string &why)
{
	if (p.kind == P_NEW)
		reject_order(p.sender, p.ord, FIX::OrdRejReason_OTHER, why, req);
	else
		cancel_reject(p.sender, p.clordid, p.orig_clordid, p.order_id,
			      p.kind == P_REPLACE, FIX::CxlRejReason_OTHER, why);
	log("A " + std::to_string(req));
}

/* What became of the requests in flight when the predecessor died (see
 * the order log's comment). */
void App::resolve_restored()
{
	std::vector<uint64_t> done;
	for (auto &kv : pend) {
		Pend &p = kv.second;
		if (!p.restored)
			continue;
		if (p.log_pos == UINT64_MAX) {
			/* Another run's rings: whether its matcher made it
			 * durable before the whole exchange stopped is in that
			 * shard's journal, which is not read here. */
			std::string why = "Outcome unknown: the exchange restarted with "
					  "this request in flight; check the order "
					  "status before sending it again";
			if (p.kind == P_NEW)
				send_er(p.sender, p.ord, FIX::ExecType_ORDER_STATUS,
					FIX::OrdStatus_PENDING_NEW,
					"U" + std::to_string(kv.first), 0, why);
			else
				cancel_reject(p.sender, p.clordid, p.orig_clordid,
					      p.order_id, p.kind == P_REPLACE,
					      FIX::CxlRejReason_OTHER, why);
			log("A " + std::to_string(kv.first));
			done.push_back(kv.first);
		} else if (p.log_pos >= fx_route_produced(route, p.shard)) {
			not_sent(kv.first, p,
				 "Not executed: the FIX gateway restarted before "
				 "sending it; send it again");
			done.push_back(kv.first);
		} else {
			/* On the ring: its reply comes (or waits) on the reply
			 * ring, or a matcher's restart notice covers it. */
			p.ring_pos = p.log_pos;
			if (p.kind != P_NEW) {
				auto o = orders.find(p.order_id);
				if (o != orders.end())
					o->second.inflight++;
			}
		}
	}
	for (uint64_t req : done)
		pend.erase(req);
	if (!quiet && (!pend.empty() || !done.empty()))
		fprintf(stderr,
			"shmex-fix: %zu requests in flight at the last stop: %zu answered "
			"now, %zu wait for their matcher's reply\n",
			pend.size() + done.size(), done.size(), pend.size());
	log_sync();
}

void App::scan_all()
{
	uint32_t ns = fx_route_nshards(route);
	std::vector<bool> moved(ns);
	bool any = false;
	for (uint32_t s = 0; s < ns; s++) {
		uint64_t e = fx_route_events(route, s);
		moved[s] = e != shard_events[s];
		shard_events[s] = e;
		any = any || moved[s];
	}
	std::vector<uint64_t> ended;
	for (auto &kv : orders) {
		Ord &o = kv.second;
		if ((any && moved[o.shard]) || o.rescan)
			scan(o);
		if (o.done && !o.inflight)
			ended.push_back(kv.first);
	}
	for (uint64_t id : ended)
		orders.erase(id);
}

/* ---- sockets and the loop ---- */

struct Loop {
	App app;
	int ep = -1, lfd = -1, sfd = -1;
	uint32_t max_conns = 1024;
	size_t max_msg = 1 << 20;
	uint64_t deadline_ms = 10000;
	std::map<int, std::unique_ptr<Conn>> conns;
	bool stopping = false;
	uint64_t stop_at = 0;
};

/* Extracts tag=value from a raw message (first occurrence). */
std::string raw_tag(const std::string &msg, const char *tag)
{
	std::string key = std::string(tag) + "=";
	size_t p = 0;
	for (;;) {
		if (msg.compare(p, key.size(), key) == 0) {
			p += key.size();
			size_t e = msg.find('\001', p);
			return msg.substr(p, e == std::string::npos ? std::string::npos
								    : e - p);
		}
		p = msg.find('\001', p);
		if (p == std::string::npos)
			return "";
		p++;
	}
}

bool comp_id_ok(const std::string &s)
{
	if (s.empty() || s.size() > 64)
		return false;
	for (char c : s)
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
			return false;
	return true;
}

/* A Logout outside any session (the peer is not, or not yet, a session):
 * MsgSeqNum 1, so it touches no session's numbers. */
void raw_logout(Conn *c, const std::string &us, const std::string &them,
		const std::string &text)
{
	FIX44::Logout lo;
	lo.setField(FIX::FIELD::Text, text);
	FIX::Header &h = lo.getHeader();
	h.setField(FIX::SenderCompID(us));
	h.setField(FIX::TargetCompID(them.empty() ? "UNKNOWN" : them));
	h.setField(FIX::MsgSeqNum(1));
	h.setField(FIX::SendingTime(FIX::UtcTimeStamp(), 3));
	c->send(lo.toString());
	c->closing = true;
}

void conn_close(Loop &L, Conn *c)
{
	L.app.log_sync();
	if (c->session && !c->detached) {
		c->detached = true;
		c->session->disconnect();
	}
	if (c->session) {
		SessState &ss = L.app.sstate[c->session->getSessionID()
						     .getTargetCompID()
						     .getString()];
		if (ss.conn == c)
			ss.conn = nullptr;
	}
	if (!c->out.empty())
		(void)!::send(c->fd, c->out.data(), c->out.size(),
			      MSG_NOSIGNAL | MSG_DONTWAIT);
	epoll_ctl(L.ep, EPOLL_CTL_DEL, c->fd, nullptr);
	close(c->fd);
	L.conns.erase(c->fd);
}

void first_message(Loop &L, Conn *c, const std::string &msg)
{
	App &a = L.app;
	std::string begin = raw_tag(msg, "8"), type = raw_tag(msg, "35"),
		    sender = raw_tag(msg, "49"), target = raw_tag(msg, "56");
	if (type != "A") {
		/* Not a Logon: the spec says disconnect without a word. */
		c->closing = true;
		return;
	}
	if (begin != "FIX.4.4") {
		raw_logout(c, a.comp_id, sender,
			   "Only FIX.4.4 is supported (BeginString)");
		return;
	}
	if (target != a.comp_id) {
		raw_logout(c, a.comp_id, sender,
			   "Unknown TargetCompID: this is " + a.comp_id);
		return;
	}
	if (!comp_id_ok(sender)) {
		raw_logout(c, a.comp_id, sender,
			   "SenderCompID must be 1..64 of A-Z a-z 0-9 _ - .");
		return;
	}
	if (a.restrict_sessions && !a.allowed.count(sender) &&
	    !a.any_account.count(sender)) {
		raw_logout(c, a.comp_id, sender,
			   "SenderCompID " + sender +
				   " is not a session of this exchange");
		return;
	}
	SessState &ss = a.sstate[sender];
	if (ss.conn) {
		raw_logout(c, a.comp_id, sender,
			   "Session " + sender +
				   " is already logged on from another connection");
		return;
	}
	FIX::Session *s = a.session_for(sender);
	ss.conn = c;
	c->session = s;
	s->setResponder(c);
	s->next(msg, FIX::UtcTimeStamp());
}

void conn_read(Loop &L, Conn *c)
{
	char buf[65536];
	for (;;) {
		ssize_t k = recv(c->fd, buf, sizeof(buf), 0);
		if (k == 0) {
			c->closing = true;
			return;
		}
		if (k < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				c->closing = true;
			return;
		}
		c->parser.addToStream(buf, (size_t)k);
		c->pending_in += (size_t)k;
		std::string msg;
		for (;;) {
			bool got;
			try {
				got = c->parser.readFixMessage(msg);
			} catch (FIX::MessageParseError &) {
				/* Garbled framing: dropped, as the spec says; the
				 * parser has skipped it. */
				continue;
			}
			if (!got)
				break;
			c->pending_in = 0;
			try {
				if (!c->session)
					first_message(L, c, msg);
				else if (!c->detached)
					c->session->next(msg, FIX::UtcTimeStamp());
			} catch (std::exception &e) {
				if (!L.app.quiet)
					fprintf(stderr, "shmex-fix: %s\n", e.what());
			}
			if (c->closing)
				return;
		}
		if (c->pending_in > L.max_msg) {
			/* A message longer than the limit (or endless garbage). */
			c->closing = true;
			return;
		}
	}
}

void conn_write(Conn *c)
{
	while (!c->out.empty()) {
		ssize_t k = ::send(c->fd, c->out.data(), c->out.size(), MSG_NOSIGNAL);
		if (k < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				c->closing = true;
			return;
		}
		c->out.erase(0, (size_t)k);
	}
}

void do_accept(Loop &L)
{
	for (;;) {
		int fd = accept4(L.lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		if (L.conns.size() >= L.max_conns || L.stopping) {
			close(fd);
			continue;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		std::unique_ptr<Conn> c(new Conn);
		c->app = &L.app;
		c->fd = fd;
		c->accepted_ms = now_ms();
		struct epoll_event ev;
		ev.events = EPOLLIN;
		ev.data.fd = fd;
		if (epoll_ctl(L.ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
			close(fd);
			continue;
		}
		L.conns[fd] = std::move(c);
	}
}

int load_sessions(App &a, const char *path)
{
	std::ifstream f(path);
	if (!f) {
		fprintf(stderr, "shmex-fix: --fix-sessions %s: %s\n", path,
			strerror(errno));
		return -1;
	}
	a.restrict_sessions = true;
	std::string line;
	int n = 0;
	while (std::getline(f, line)) {
		n++;
		size_t h = line.find('#');
		if (h != std::string::npos)
			line.erase(h);
		std::istringstream is(line);
		std::string sender, acct;
		if (!(is >> sender))
			continue;
		if (!comp_id_ok(sender)) {
			fprintf(stderr, "shmex-fix: %s:%d: bad SenderCompID '%s'\n", path,
				n, sender.c_str());
			return -1;
		}
		a.allowed[sender];
		while (is >> acct) {
			uint64_t id;
			if (acct == "*")
				a.any_account.insert(sender);
			else if (parse_u64(acct, id))
				a.allowed[sender].insert(id);
			else {
				fprintf(stderr, "shmex-fix: %s:%d: bad account '%s'\n",
					path, n, acct.c_str());
				return -1;
			}
		}
	}
	return 0;
}

void route_sent(void *ctx, uint64_t req, uint64_t pos)
{
	static_cast<App *>(ctx)->on_sent(req, pos);
}

void route_reply(void *ctx, const fx_reply *y)
{
	static_cast<App *>(ctx)->on_reply(y);
}

void route_commit(void *ctx)
{
	static_cast<App *>(ctx)->log_sync();
}

int run(const fx_app_cfg *cfg)
{
	/* Blocked before attaching: the supervisor may stop us as soon as
	 * our member slot says we are there; the signal then waits in the
	 * signalfd instead of killing a process that is still loading. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigprocmask(SIG_BLOCK, &sigs, nullptr);
	signal(SIGPIPE, SIG_IGN);
	std::unique_ptr<Loop> Lp(new Loop);
	Loop &L = *Lp;
	App &a = L.app;
	char err[512] = "";
	int rc = fx_route_open(&a.route, cfg->instance, cfg->gateway, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "shmex-fix: %s\n", err);
		return 1;
	}
	a.comp_id = cfg->comp_id;
	a.quiet = fx_route_quiet(a.route);
	a.shard_events.assign(fx_route_nshards(a.route), 0);
	/* Request ids: unique across restarts of this process (a reply for a
	 * predecessor is then nobody's). */
	a.next_req = (uint64_t)time(nullptr) << 24;
	L.max_conns = (uint32_t)fx_route_max_conns(a.route);
	L.max_msg = (size_t)fx_route_max_request(a.route);
	L.deadline_ms = fx_route_deadline_ms(a.route);
	if (cfg->sessions && load_sessions(a, cfg->sessions) != 0)
		return 1;
	try {
		std::istringstream dict(fx_dict_xml);
		std::shared_ptr<FIX::DataDictionary> dd(new FIX::DataDictionary(dict));
		dd->checkFieldsOutOfOrder(false);
		a.ddp.addTransportDataDictionary(FIX::BeginString(FIX::BeginString_FIX44),
						 dd);
		a.ddp.addApplicationDataDictionary(FIX::ApplVerID(FIX::ApplVerID_FIX44),
						   dd);
		const char *data = fx_route_data_dir(a.route);
		if (data && *data) {
			std::string dir = std::string(data) + "/fix";
			if (mkdir(dir.c_str(), 0770) != 0 && errno != EEXIST) {
				fprintf(stderr, "shmex-fix: %s: %s\n", dir.c_str(),
					strerror(errno));
				return 1;
			}
			a.fstore = new fx::StoreFactory(dir);
			a.store.reset(a.fstore);
			std::string lp = dir + "/orders.log";
			char rid[64];
			fx_route_rings_id(a.route, rid, sizeof(rid));
			a.rings_id = rid;
			int lrc = a.load_log(lp);
			if (lrc) {
				fprintf(stderr, "shmex-fix: %s: %s\n", lp.c_str(),
					strerror(-lrc));
				return 1;
			}
			if (!a.quiet && !a.orders.empty())
				fprintf(stderr, "shmex-fix: %zu open orders from %s\n",
					a.orders.size(), lp.c_str());
			a.resolve_restored();
		} else {
			a.store.reset(new FIX::MemoryStoreFactory());
		}
	} catch (std::exception &e) {
		fprintf(stderr, "shmex-fix: FIX setup: %s\n", e.what());
		return 1;
	}
	L.sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
	L.lfd = cfg->listen_fd;
	fcntl(L.lfd, F_SETFL, fcntl(L.lfd, F_GETFL) | O_NONBLOCK);
	fcntl(L.lfd, F_SETFD, FD_CLOEXEC);
	L.ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev;
	ev.events = EPOLLIN;
	ev.data.fd = L.lfd;
	epoll_ctl(L.ep, EPOLL_CTL_ADD, L.lfd, &ev);
	ev.data.fd = L.sfd;
	epoll_ctl(L.ep, EPOLL_CTL_ADD, L.sfd, &ev);
	int wfd = fx_route_wake_fd(a.route);
	ev.data.fd = wfd;
	epoll_ctl(L.ep, EPOLL_CTL_ADD, wfd, &ev);
	uint64_t spin_us = fx_route_spin_us(a.route);
	if (!a.quiet)
		fprintf(stderr, "shmex-fix: serving instance %s as %s (pid %d)\n",
			cfg->instance, a.comp_id.c_str(), (int)getpid());
	uint64_t last_timer = 0, last_progress = now_us();
	struct epoll_event evs[64];
	for (;;) {
		/* While replies are awaited and came within spin_us, poll;
		 * then arm the helper, which makes wfd readable when one
		 * comes (the XML gateway's scheme, gw_exec.c). */
		int timeout = !a.orders.empty() ? SCAN_MS : TIMER_MS;
		if (!a.pend.empty()) {
			if (now_us() - last_progress < spin_us)
				timeout = 0;
			else
				fx_route_arm(a.route);
		}
		if (L.stopping)
			timeout = 10;
		int n = epoll_wait(L.ep, evs, 64, timeout);
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd == L.lfd) {
				do_accept(L);
			} else if (fd == wfd) {
				fx_route_woken(a.route);
			} else if (fd == L.sfd) {
				struct signalfd_siginfo si;
				while (read(L.sfd, &si, sizeof(si)) ==
				       (ssize_t)sizeof(si)) {
					if (!L.stopping && !a.quiet)
						fprintf(stderr,
							"shmex-fix: %s, logging out\n",
							strsignal((int)si.ssi_signo));
					if (!L.stopping) {
						L.stopping = true;
						L.stop_at = now_ms();
						for (auto &kv : a.sessions)
							kv.second->logout(
								"Exchange shutting down");
					}
				}
			} else {
				auto it = L.conns.find(fd);
				if (it == L.conns.end())
					continue;
				Conn *c = it->second.get();
				if (evs[i].events & (EPOLLERR | EPOLLHUP))
					c->closing =
						c->closing || !(evs[i].events & EPOLLIN);
				if (evs[i].events & EPOLLIN)
					conn_read(L, c);
				if (evs[i].events & EPOLLOUT)
					conn_write(c);
			}
		}
		/* The exchange. */
		unsigned got = fx_route_replies(a.route, route_reply, route_commit, &a);
		uint64_t sent0 = a.nsent;
		a.log_sync(); /* the P lines before their requests leave */
		fx_route_flush(a.route, route_sent, &a);
		if (got || a.nsent != sent0 || a.pend.empty())
			last_progress = now_us();
		/* Polling: let a matcher or client that shares our CPU run
		 * first (sched_yield returns at once when nobody waits). */
		if (timeout == 0 && !a.pend.empty())
			sched_yield();
		a.scan_all();
		/* Session timers: heartbeats, test requests, logout timeouts. */
		uint64_t t = now_ms();
		if (t - last_timer >= (uint64_t)TIMER_MS) {
			last_timer = t;
			for (auto &kv : a.sessions) {
				try {
					kv.second->next(FIX::UtcTimeStamp());
				} catch (std::exception &) {
				}
			}
		}
		/* Writes and closes: what they carry is stored first. */
		a.log_sync();
		std::vector<Conn *> dead;
		for (auto &kv : L.conns) {
			Conn *c = kv.second.get();
			if (!c->session && t - c->accepted_ms > L.deadline_ms)
				c->closing = true; /* no Logon in time */
			if (c->want_out) {
				conn_write(c);
				bool more = !c->out.empty();
				c->want_out = more;
				if (more != c->epollout) {
					/* Woken when the socket takes more. */
					c->epollout = more;
					struct epoll_event e2;
					e2.events = EPOLLIN | (more ? (uint32_t)EPOLLOUT : 0u);
					e2.data.fd = c->fd;
					epoll_ctl(L.ep, EPOLL_CTL_MOD, c->fd, &e2);
				}
			}
			if (c->closing)
				dead.push_back(c);
		}
		for (Conn *c : dead)
			conn_close(L, c);
		a.log_sync();
		if (L.stopping && (L.conns.empty() || t - L.stop_at > 2000) &&
		    a.pend.empty())
			break;
		if (L.stopping && t - L.stop_at > 5000)
			break;
	}
	while (!L.conns.empty())
		conn_close(L, L.conns.begin()->second.get());
	a.sessions.clear();
	if (a.olog >= 0) {
		a.log_sync();
		close(a.olog);
	}
	fx_route_close(a.route);
	return 0;
}

} // namespace

extern "C" int fx_app_run(const struct fx_app_cfg *cfg)
{
	try {
		return run(cfg);
	} catch (std::exception &e) {
		fprintf(stderr, "shmex-fix: %s\n", e.what());
		return 1;
	}
}

/*
 * fx_store: see fx_store.h.
 *
 * Files (the FIX::FileStore format, so either reads the other's):
 *   .body     the messages, one after another, nothing between them
 *   .header   "<seq>,<offset>,<size> " per message, in the order set
 *   .seqnums  "<next sender seq> : <next target seq>", ten digits each,
 *             rewritten in place
 *   .session  the creation time, "YYYYMMDD-HH:MM:SS"
 * The body is written before the header that points into it, so a kill
 * between the two leaves bytes no entry names, never an entry past the
 * end (and an entry that does point past the end, from a damaged file, is
 * dropped with a message at load).
 */
#include "gateway/fix/fx_store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <unordered_map>
#include <utility>
#include <vector>

#include <quickfix/FieldConvertors.h>
#include <quickfix/SessionID.h>

namespace fx {

namespace {

bool read_all(const std::string &path, std::string &out)
{
	out.clear();
	int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT;
	char buf[65536];
	for (;;) {
		ssize_t n = ::read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			::close(fd);
			return n == 0;
		}
		out.append(buf, (size_t)n);
	}
}

bool pwrite_all(int fd, const char *p, size_t n, off_t at)
{
	while (n) {
		ssize_t k = ::pwrite(fd, p, n, at);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return false;
		p += k;
		n -= (size_t)k;
		at += k;
	}
	return true;
}

/* A decimal number of 1 to 18 digits at p (advanced past it). */
bool digits(const char *&p, const char *end, unsigned long long &v)
{
	const char *s0 = p;
	v = 0;
	while (p < end && *p >= '0' && *p <= '9' && p - s0 < 18)
		v = v * 10 + (unsigned)(*p++ - '0');
	return p > s0 && (p == end || *p < '0' || *p > '9');
}

struct Store : public FIX::MessageStore {
	std::string name[4]; /* body, header, seqnums, session */
	int fd[4] = {-1, -1, -1, -1};
	std::unordered_map<int, std::pair<off_t, size_t>> index;
	std::string body_buf, header_buf; /* not on disk yet */
	off_t body_disk = 0, header_disk = 0;
	int next_sender = 1, next_target = 1;
	bool seq_dirty = false;
	FIX::UtcTimeStamp created;
	std::string failure; /* a write failed: why */

	Store(const std::string &dir, const FIX::SessionID &s)
	{
		std::string id = s.getBeginString().getString() + "-" +
				 s.getSenderCompID().getString() + "-" +
				 s.getTargetCompID().getString();
		if (!s.getSessionQualifier().empty())
			id += "-" + s.getSessionQualifier();
		static const char *const ext[4] = {"body", "header", "seqnums", "session"};
		for (int i = 0; i < 4; i++)
			name[i] = dir + "/" + id + "." + ext[i];
		open_files(false);
	}
	~Store() override
	{
		std::string err;
		flush(&err);
		close_files();
	}

	void close_files()
	{
		for (int &f : fd) {
			if (f >= 0)
				::close(f);
			f = -1;
		}
	}

	[[noreturn]] void fail_io(const std::string &what, int i)
	{
		throw FIX::IOException(what + " " + name[i] + ": " + strerror(errno));
	}

	/* Loads what the files hold (all of it, wipe: nothing) and opens
	 * them for writing. */
	void open_files(bool wipe)
	{
		close_files();
		index.clear();
		body_buf.clear();
		header_buf.clear();
		next_sender = next_target = 1;
		created = FIX::UtcTimeStamp();
		if (wipe)
			for (const std::string &n : name)
				if (::unlink(n.c_str()) != 0 && errno != ENOENT)
					throw FIX::IOException("unlink " + n + ": " +
							       strerror(errno));
		for (int i = 0; i < 4; i++) {
			fd[i] = ::open(name[i].c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
			if (fd[i] < 0)
				fail_io("open", i);
		}
		struct stat st;
		if (fstat(fd[0], &st) != 0)
			fail_io("stat", 0);
		body_disk = st.st_size;
		std::string t;
		if (!read_all(name[1], t))
			fail_io("read", 1);
		header_disk = (off_t)t.size();
		load_header(t);
		if (!read_all(name[2], t))
			fail_io("read", 2);
		int snd, tgt;
		if (sscanf(t.c_str(), "%d : %d", &snd, &tgt) == 2 && snd > 0 && tgt > 0) {
			next_sender = snd;
			next_target = tgt;
		} else if (!t.empty()) {
			/* Said, not silently taken as 1 : 1 (the counterparty
			 * then sees sequence numbers go back and logs out). */
			fprintf(stderr,
				"shmex-fix: %s: not \"<sender seq> : <target seq>\"; "
				"the session starts again at 1 (a Logon with "
				"ResetSeqNumFlag=Y resumes it)\n",
				name[2].c_str());
		}
		if (!read_all(name[3], t))
			fail_io("read", 3);
		bool have_time = false;
		if (!t.empty()) {
			try {
				created = FIX::UtcTimeStampConvertor::convert(t);
				have_time = true;
			} catch (std::exception &) {
				fprintf(stderr,
					"shmex-fix: %s: not a creation time; the "
					"session starts a new one\n",
					name[3].c_str());
			}
		}
		if (!have_time)
			write_session();
		seq_dirty = true;
		write_seqnums();
	}

	/* "<seq>,<offset>,<size> " entries; the first that does not parse
	 * or points past the body ends the index (said on stderr). */
	void load_header(const std::string &t)
	{
		const char *p = t.c_str(), *end = p + t.size();
		while (p < end) {
			while (p < end && (*p == ' ' || *p == '\n'))
				p++;
			if (p == end)
				break;
			/* Digits only (no sign, no spaces), each field present,
			 * the entry ended by its space (a last entry without
			 * it was cut short), a message never empty. */
			const char *q = p;
			unsigned long long seq = 0, off = 0, size = 0;
			bool ok = digits(q, end, seq) && q < end && *q++ == ',' &&
				  digits(q, end, off) && q < end && *q++ == ',' &&
				  digits(q, end, size) && q < end && *q == ' ' && seq > 0 &&
				  seq <= 0x7fffffff && size > 0 &&
				  off <= (unsigned long long)body_disk &&
				  size <= (unsigned long long)body_disk - off;
			if (!ok) {
				fprintf(stderr,
					"shmex-fix: %s: byte %zu: not a message entry "
					"(or past the end of %s); the messages from "
					"there on are not kept for resends\n",
					name[1].c_str(), (size_t)(p - t.c_str()),
					name[0].c_str());
				return;
			}
			index[(int)seq] = std::make_pair((off_t)off, (size_t)size);
			p = q;
		}
	}

	void write_session()
	{
		std::string s = FIX::UtcTimeStampConvertor::convert(created);
		if (::ftruncate(fd[3], 0) != 0 || !pwrite_all(fd[3], s.data(), s.size(), 0))
			fail_io("write", 3);
	}

	bool write_seqnums()
	{
		if (!seq_dirty)
			return true;
		char b[32];
		int n = snprintf(b, sizeof(b), "%10.10d : %10.10d", next_sender, next_target);
		if (!pwrite_all(fd[2], b, (size_t)n, 0))
			return false;
		seq_dirty = false;
		return true;
	}

	bool flush(std::string *err)
	{
		int bad = -1;
		if (!body_buf.empty()) {
			if (pwrite_all(fd[0], body_buf.data(), body_buf.size(), body_disk)) {
				body_disk += (off_t)body_buf.size();
				body_buf.clear();
			} else {
				bad = 0;
			}
		}
		if (bad < 0 && !header_buf.empty()) {
			if (pwrite_all(fd[1], header_buf.data(), header_buf.size(),
				       header_disk)) {
				header_disk += (off_t)header_buf.size();
				header_buf.clear();
			} else {
				bad = 1;
			}
		}
		if (bad < 0 && !write_seqnums())
			bad = 2;
		if (bad < 0)
			return true;
		failure = "write " + name[bad] + ": " + strerror(errno);
		*err = failure;
		return false;
	}

	bool set(int seq, const std::string &msg) throw(FIX::IOException) override
	{
		if (!failure.empty())
			throw FIX::IOException(failure);
		off_t off = body_disk + (off_t)body_buf.size();
		char h[64];
		int n = snprintf(h, sizeof(h), "%d,%lld,%zu ", seq, (long long)off,
				 msg.size());
		header_buf.append(h, (size_t)n);
		body_buf += msg;
		index[seq] = std::make_pair(off, msg.size());
		return true;
	}

	void get(int begin, int end,
		 std::vector<std::string> &out) const throw(FIX::IOException) override
	{
		out.clear();
		for (int i = begin; i <= end && i > 0; i++) {
			auto it = index.find(i);
			if (it == index.end())
				continue;
			off_t off = it->second.first;
			size_t size = it->second.second;
			if (off >= body_disk) {
				out.push_back(body_buf.substr((size_t)(off - body_disk), size));
				continue;
			}
			std::string m(size, '\0');
			ssize_t k = ::pread(fd[0], &m[0], size, off);
			if (k != (ssize_t)size)
				throw FIX::IOException("read " + name[0] + ": " +
						       (k < 0 ? strerror(errno) : "cut short"));
			out.push_back(m);
		}
	}

	int getNextSenderMsgSeqNum() const throw(FIX::IOException) override
	{
		return next_sender;
	}
	int getNextTargetMsgSeqNum() const throw(FIX::IOException) override
	{
		return next_target;
	}
	void setNextSenderMsgSeqNum(int v) throw(FIX::IOException) override
	{
		next_sender = v;
		seq_dirty = true;
	}
	void setNextTargetMsgSeqNum(int v) throw(FIX::IOException) override
	{
		next_target = v;
		seq_dirty = true;
	}
	void incrNextSenderMsgSeqNum() throw(FIX::IOException) override
	{
		next_sender++;
		seq_dirty = true;
	}
	void incrNextTargetMsgSeqNum() throw(FIX::IOException) override
	{
		next_target++;
		seq_dirty = true;
	}
	FIX::UtcTimeStamp getCreationTime() const throw(FIX::IOException) override
	{
		return created;
	}
	void reset() throw(FIX::IOException) override
	{
		failure.clear();
		open_files(true);
	}
	void refresh() throw(FIX::IOException) override
	{
		std::string err;
		if (!flush(&err))
			throw FIX::IOException(err);
		open_files(false);
	}
};

} // namespace

struct StoreFactory::Impl {
	std::string dir;
	std::vector<Store *> stores;
};

StoreFactory::StoreFactory(const std::string &dir) : impl(new Impl)
{
	impl->dir = dir;
}

StoreFactory::~StoreFactory()
{
	delete impl;
}

FIX::MessageStore *StoreFactory::create(const FIX::SessionID &s)
{
	if (::mkdir(impl->dir.c_str(), 0755) != 0 && errno != EEXIST)
		throw FIX::ConfigError("mkdir " + impl->dir + ": " + strerror(errno));
	Store *st;
	try {
		st = new Store(impl->dir, s);
	} catch (FIX::IOException &e) {
		throw FIX::ConfigError(e.what());
	}
	impl->stores.push_back(st);
	return st;
}

void StoreFactory::destroy(FIX::MessageStore *m)
{
	for (size_t i = 0; i < impl->stores.size(); i++)
		if (impl->stores[i] == m) {
			impl->stores.erase(impl->stores.begin() + (long)i);
			break;
		}
	delete m;
}

bool StoreFactory::flush(std::string *err)
{
	bool ok = true;
	for (Store *s : impl->stores) {
		std::string e;
		if (!s->flush(&e) && ok) {
			ok = false;
			*err = e;
		}
	}
	return ok;
}

} // namespace fx

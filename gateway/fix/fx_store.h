/*
 * fx_store: the FIX sessions' message store, written in batches.
 *
 * The same four files as QuickFIX's FIX::FileStore, in the same format
 * (<begin>-<sender>-<target>.body, .header, .seqnums, .session; a store
 * either of them wrote, the other reads), but a message set and a sequence
 * number moved are kept in memory until StoreFactory::flush(), which
 * shmex-fix calls before every write of its order log (so a log line that
 * says a report was sent is never on disk before the report) and so before
 * any connection's bytes are written: what a client receives is in the
 * store first, as with FileStore, at the price of at most three writes per
 * flush instead of about a dozen system calls per message (FileStore
 * seeks, stats, re-reads its buffer and flushes for each; docs/fix.md,
 * "Performance").  Neither syncs to the disk: both survive a kill of the
 * process, not of the machine.
 */
#ifndef SHMEX_FX_STORE_H
#define SHMEX_FX_STORE_H

#include <string>

#include <quickfix/MessageStore.h>

namespace fx
{

/* Stores under dir (created if missing).  flush() writes what every store
 * it created holds back; on a write error it returns false with *err
 * naming the file and the reason, and every later set() of that store
 * throws (the session then fails as with FileStore). */
class StoreFactory : public FIX::MessageStoreFactory
{
      public:
	explicit StoreFactory(const std::string &dir);
	~StoreFactory() override;
	FIX::MessageStore *create(const FIX::SessionID &s) override;
	void destroy(FIX::MessageStore *m) override;
	bool flush(std::string *err);

      private:
	struct Impl;
	Impl *impl;
};

} // namespace fx

#endif

/*
 * eng_history: the writer of a shard's order history (eng_history.h).
 */
#include "engine/eng_history.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/eng_alloc.h"
#include "shm/shm_atomic.h"
#include "shm/shm_history.h"
#include "shm/shm_journal.h"
#include "shm/shm_shard.h"

/* A flush happens at the latest when this much is buffered. */
#define FLUSH_BYTES (1u << 20)

struct pending {
	uint64_t slot, at; /* entry value: 1 + offset */
};

struct eng_history {
	int fd, slots_fd;
	char path[SHM_JOURNAL_PATH_MAX], slots_path[SHM_JOURNAL_PATH_MAX];
	struct shm_hist_slots_hdr *map;
	size_t map_len;
	uint64_t *slot;   /* published table (shared with readers) */
	uint64_t *latest; /* the table as it will be after the next flush */
	uint32_t shard, nshards;
	uint64_t cap_orders;
	uint64_t len; /* bytes written to the file */
	unsigned char *buf;
	size_t nbuf, capbuf;
	struct pending *pend;
	size_t npend, cappend;
	uint64_t records, lost;
};

int eng_history_open(struct eng_history **out, const char *shard_dir, uint32_t shard,
		     uint32_t nshards, uint64_t cap_orders, struct shmex_error *e)
{
	*out = NULL;
	struct eng_history *h = eng_alloc_calloc(1, sizeof(*h));
	if (!h)
		return shmex_error_set(e, -ENOMEM, "out of memory");
	h->fd = h->slots_fd = -1;
	h->shard = shard;
	h->nshards = nshards;
	h->cap_orders = cap_orders;
	snprintf(h->path, sizeof(h->path), "%s/%s", shard_dir, SHM_HIST_FILE);
	snprintf(h->slots_path, sizeof(h->slots_path), "%s/%s", shard_dir,
		 SHM_HIST_SLOTS_FILE);
	int rc;
	h->latest = eng_alloc_calloc(cap_orders ? cap_orders : 1, sizeof(*h->latest));
	if (!h->latest) {
		rc = shmex_error_set(e, -ENOMEM, "out of memory");
		goto fail;
	}
	h->fd = open(h->path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	if (h->fd < 0) {
		rc = shmex_error_set(e, -errno, "open %s: %s", h->path, strerror(errno));
		goto fail;
	}
	/* The same file (inode) across restarts: a gateway that has it
	 * mapped keeps seeing the entries of the matcher that follows. */
	h->slots_fd = open(h->slots_path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	if (h->slots_fd < 0) {
		rc = shmex_error_set(e, -errno, "open %s: %s", h->slots_path,
				     strerror(errno));
		goto fail;
	}
	h->map_len = sizeof(struct shm_hist_slots_hdr) + cap_orders * sizeof(uint64_t);
	if (ftruncate(h->slots_fd, (off_t)h->map_len) != 0) {
		rc = shmex_error_set(e, -errno, "ftruncate %s: %s", h->slots_path,
				     strerror(errno));
		goto fail;
	}
	void *m = mmap(NULL, h->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, h->slots_fd,
		       0);
	if (m == MAP_FAILED) {
		rc = shmex_error_set(e, -errno, "mmap %s: %s", h->slots_path,
				     strerror(errno));
		goto fail;
	}
	h->map = m;
	h->slot = (uint64_t *)(h->map + 1);
	*out = h;
	return 0;
fail:
	eng_history_close(h);
	return rc;
}

void eng_history_close(struct eng_history *h)
{
	if (!h)
		return;
	if (h->map)
		munmap(h->map, h->map_len);
	if (h->fd >= 0)
		close(h->fd);
	if (h->slots_fd >= 0)
		close(h->slots_fd);
	eng_alloc_free(h->latest);
	eng_alloc_free(h->buf);
	eng_alloc_free(h->pend);
	eng_alloc_free(h);
}

int eng_history_reset(struct eng_history *h, uint64_t len, struct shmex_error *warn,
		      struct shmex_error *e)
{
	shmex_error_clear(warn);
	h->nbuf = h->npend = 0;
	memset(h->latest, 0, h->cap_orders * sizeof(*h->latest));
	struct stat st;
	if (fstat(h->fd, &st) != 0)
		return shmex_error_set(e, -errno, "fstat %s: %s", h->path,
				       strerror(errno));
	if ((uint64_t)st.st_size < len) {
		shmex_error_set(warn, SHMEX_EJCORRUPT,
				"%s: %lld bytes, the snapshot covers %llu: the orders of "
				"the missing part are lost (queries of them answer busy)",
				h->path, (long long)st.st_size, (unsigned long long)len);
		len = (uint64_t)st.st_size;
	}
	/* Walk the records kept; the newest of each slot is its entry. */
	uint64_t off = 0;
	struct shm_hist_fill *fl = NULL;
	size_t flcap = 0;
	int rc = 0;
	while (off < len) {
		struct shm_hist_rec r;
		const char *why = NULL;
		if (len - off < sizeof(r) ||
		    shm_history_pread(h->fd, &r, sizeof(r), off) != 0)
			why = "a record cut short";
		else if (r.magic != SHM_HIST_MAGIC || r.nfills > SHM_HIST_FILLS_MAX ||
			 (len - off - sizeof(r)) / sizeof(*fl) < r.nfills)
			why = "not a record";
		if (!why && r.nfills > flcap) {
			struct shm_hist_fill *n =
				eng_alloc_realloc(fl, (size_t)r.nfills * sizeof(*fl));
			if (!n) {
				rc = shmex_error_set(e, -ENOMEM, "out of memory");
				break;
			}
			fl = n;
			flcap = r.nfills;
		}
		if (!why && r.nfills &&
		    shm_history_pread(h->fd, fl, (size_t)r.nfills * sizeof(*fl),
				      off + sizeof(r)) != 0)
			why = "a record cut short";
		if (!why && (!shm_hist_valid(&r, fl) ||
			     shm_shard_of_order(r.id, h->nshards) != h->shard))
			why = "a record that fails its checksum";
		if (why) {
			shmex_error_set(
				warn, SHMEX_EJCORRUPT,
				"%s: byte %llu: %s; the history is cut there (the "
				"orders after it are lost: queries of them answer busy)",
				h->path, (unsigned long long)off, why);
			len = off;
			break;
		}
		h->latest[shm_order_slot(r.id, h->nshards, h->cap_orders)] = off + 1;
		off += sizeof(r) + (uint64_t)r.nfills * sizeof(*fl);
	}
	eng_alloc_free(fl);
	if (rc)
		return rc;
	if (ftruncate(h->fd, (off_t)len) != 0)
		return shmex_error_set(e, -errno, "ftruncate %s: %s", h->path,
				       strerror(errno));
	h->len = len;
	struct shm_hist_slots_hdr sh = {
		.magic = SHM_HIST_SLOTS_MAGIC,
		.version = SHM_HIST_VERSION,
		.shard = h->shard,
		.nshards = h->nshards,
		.cap_orders = h->cap_orders,
	};
	*h->map = sh;
	for (uint64_t i = 0; i < h->cap_orders; i++)
		store_release(&h->slot[i], h->latest[i]);
	return 0;
}

static bool reserve(struct eng_history *h, size_t bytes)
{
	if (h->nbuf + bytes > h->capbuf) {
		size_t n = h->capbuf ? h->capbuf : 64 * 1024;
		while (n < h->nbuf + bytes)
			n *= 2;
		unsigned char *b = eng_alloc_realloc(h->buf, n);
		if (!b)
			return false;
		h->buf = b;
		h->capbuf = n;
	}
	if (h->npend == h->cappend) {
		size_t n = h->cappend ? 2 * h->cappend : 1024;
		struct pending *p = eng_alloc_realloc(h->pend, n * sizeof(*p));
		if (!p)
			return false;
		h->pend = p;
		h->cappend = n;
	}
	return true;
}

void eng_history_add(struct eng_history *h, const struct shm_book_view *v, uint32_t oi)
{
	const struct shm_book_order_sh *o = &v->orders[oi];
	uint32_t nf = o->nfills;
	size_t bytes =
		sizeof(struct shm_hist_rec) + (size_t)nf * sizeof(struct shm_hist_fill);
	if (nf > SHM_HIST_FILLS_MAX || !reserve(h, bytes)) {
		h->lost++;
		return;
	}
	uint64_t slot = shm_order_slot(o->id, v->nshards, v->cap_orders);
	struct shm_hist_rec r = {
		.nfills = nf,
		.sym = o->sym,
		.prev = h->latest[slot],
		.id = o->id,
		.gen = o->gen,
		.account = o->account,
		.price = o->price,
		.amount = o->amount,
		.open = o->open,
		.executed = o->executed,
		.cancelled = o->cancelled,
		.time_ns = o->time_ns,
		.cancel_time_ns = o->cancel_time_ns,
		.mod_event = o->mod_event,
		.side = o->side,
		.tif = o->tif,
		.state = o->state,
		.done_reason = o->done_reason,
	};
	struct shm_hist_fill *fl =
		(struct shm_hist_fill *)(h->buf + h->nbuf + sizeof(struct shm_hist_rec));
	uint32_t k = 0;
	for (uint32_t f = o->fill_head; f != SHM_BOOK_NIL && k < nf; k++) {
		const struct shm_book_fill_sh *x = &v->fills[f];
		struct shm_hist_fill y = {
			.qty = x->qty,
			.price = x->price,
			.time_ns = x->time_ns,
			.counterparty = x->counterparty,
			.event = x->event,
			.maker = x->maker,
		};
		memcpy(&fl[k], &y, sizeof(y));
		f = x->next;
	}
	r.nfills = k; /* the list is the truth */
	shm_hist_seal(&r, fl);
	memcpy(h->buf + h->nbuf, &r, sizeof(r));
	uint64_t at = h->len + h->nbuf + 1;
	h->nbuf += sizeof(r) + (size_t)k * sizeof(*fl);
	h->latest[slot] = at;
	h->pend[h->npend++] = (struct pending){slot, at};
	h->records++;
	if (h->nbuf >= FLUSH_BYTES) {
		struct shmex_error e = {0};
		if (eng_history_flush(h, &e) != 0) {
			/* Kept buffered; the matcher's next flush reports it. */
		}
	}
}

int eng_history_flush(struct eng_history *h, struct shmex_error *e)
{
	size_t done = 0;
	while (done < h->nbuf) {
		ssize_t n = pwrite(h->fd, h->buf + done, h->nbuf - done,
				   (off_t)(h->len + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int rc = -errno;
			/* What did get written is rewritten whole next time. */
			return shmex_error_set(e, rc, "write %s: %s", h->path,
					       strerror(-rc));
		}
		done += (size_t)n;
	}
	h->len += h->nbuf;
	h->nbuf = 0;
	/* HS1: release; the record is in the file (page cache) before. */
	for (size_t i = 0; i < h->npend; i++)
		store_release(&h->slot[h->pend[i].slot], h->pend[i].at);
	h->npend = 0;
	return 0;
}

int eng_history_sync(struct eng_history *h, uint64_t *len, struct shmex_error *e)
{
	int rc = eng_history_flush(h, e);
	if (rc)
		return rc;
	if (fdatasync(h->fd) != 0)
		return shmex_error_set(e, -errno, "fdatasync %s: %s", h->path,
				       strerror(errno));
	*len = h->len;
	return 0;
}

uint64_t eng_history_records(const struct eng_history *h)
{
	return h->records;
}

uint64_t eng_history_lost(const struct eng_history *h)
{
	return h->lost;
}

int eng_history_account(const struct eng_history *h, uint64_t id, uint64_t *account)
{
	if (id == 0 || shm_shard_of_order(id, h->nshards) != h->shard)
		return SHMEX_ENOORDER;
	uint64_t slot = shm_order_slot(id, h->nshards, h->cap_orders);
	uint64_t gen = ((id - 1) / h->nshards) / h->cap_orders;
	/* The private table includes what is still buffered. */
	/* Generations go strictly down along a chain: it ends. */
	uint64_t last_gen = UINT64_MAX;
	for (uint64_t at = h->latest[slot]; at != 0;) {
		uint64_t off = at - 1;
		struct shm_hist_rec r;
		if (off >= h->len) {
			if (off - h->len + sizeof(r) > h->nbuf)
				return SHMEX_EJCORRUPT;
			memcpy(&r, h->buf + (off - h->len), sizeof(r));
		} else if (shm_history_pread(h->fd, &r, sizeof(r), off) != 0) {
			return SHMEX_EJCORRUPT;
		}
		if (r.gen >= last_gen)
			return SHMEX_EJCORRUPT;
		last_gen = r.gen;
		if (r.gen < gen)
			break;
		if (r.gen == gen) {
			if (r.id != id)
				return SHMEX_EJCORRUPT;
			*account = r.account;
			return 0;
		}
		at = r.prev;
	}
	return SHMEX_ENOORDER;
}

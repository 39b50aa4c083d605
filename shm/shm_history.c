/*
 * shm_history: the reader of a shard's order history (shm_history.h).
 */
#include "shm/shm_history.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shm/shm_atomic.h"
#include "shm/shm_journal.h"
#include "shm/shm_shard.h"

static uint32_t rec_crc(const struct shm_hist_rec *r, const struct shm_hist_fill *fills)
{
	struct shm_hist_rec c = *r;
	c.crc = 0;
	uint32_t crc = shm_crc32c(0, &c, sizeof(c));
	return r->nfills ? shm_crc32c(crc, fills, (size_t)r->nfills * sizeof(*fills))
			 : crc;
}

void shm_hist_seal(struct shm_hist_rec *r, const struct shm_hist_fill *fills)
{
	r->magic = SHM_HIST_MAGIC;
	r->crc = rec_crc(r, fills);
}

bool shm_hist_valid(const struct shm_hist_rec *r, const struct shm_hist_fill *fills)
{
	return r->magic == SHM_HIST_MAGIC && r->nfills <= SHM_HIST_FILLS_MAX &&
	       (r->nfills == 0 || fills) && r->crc == rec_crc(r, fills);
}

int shm_history_open(struct shm_history *h, const char *shard_dir, uint32_t shard,
		     uint32_t nshards, uint64_t cap_orders, struct shmex_error *e)
{
	memset(h, 0, sizeof(*h));
	h->fd = h->slots_fd = -1;
	h->ok = true;
	char path[SHM_JOURNAL_PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", shard_dir, SHM_HIST_SLOTS_FILE);
	h->slots_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (h->slots_fd < 0) {
		int rc = shmex_error_set(e, -errno, "open %s: %s", path, strerror(errno));
		shm_history_close(h);
		return rc;
	}
	struct stat st;
	size_t want = sizeof(struct shm_hist_slots_hdr) + cap_orders * sizeof(uint64_t);
	if (fstat(h->slots_fd, &st) != 0) {
		int rc =
			shmex_error_set(e, -errno, "fstat %s: %s", path, strerror(errno));
		shm_history_close(h);
		return rc;
	}
	if ((uint64_t)st.st_size != want) {
		shm_history_close(h);
		return shmex_error_set(e, SHMEX_EJCORRUPT,
				       "%s: %lld bytes, a table of %llu slots needs %zu",
				       path, (long long)st.st_size,
				       (unsigned long long)cap_orders, want);
	}
	void *m = mmap(NULL, want, PROT_READ, MAP_SHARED, h->slots_fd, 0);
	if (m == MAP_FAILED) {
		int rc = shmex_error_set(e, -errno, "mmap %s: %s", path, strerror(errno));
		shm_history_close(h);
		return rc;
	}
	h->map = m;
	h->map_len = want;
	/* The mapping is all we need of it. */
	close(h->slots_fd);
	h->slots_fd = -1;
	const struct shm_hist_slots_hdr *sh = h->map;
	if (sh->magic != SHM_HIST_SLOTS_MAGIC || sh->version != SHM_HIST_VERSION ||
	    sh->shard != shard || sh->nshards != nshards ||
	    sh->cap_orders != cap_orders) {
		shm_history_close(h);
		return shmex_error_set(
			e, SHMEX_EJCORRUPT,
			"%s: not the slot table of shard %u of %u with %llu "
			"order slots",
			path, shard, nshards, (unsigned long long)cap_orders);
	}
	h->slot = (const uint64_t *)(sh + 1);
	snprintf(path, sizeof(path), "%s/%s", shard_dir, SHM_HIST_FILE);
	h->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (h->fd < 0) {
		int rc = shmex_error_set(e, -errno, "open %s: %s", path, strerror(errno));
		shm_history_close(h);
		return rc;
	}
	h->shard = shard;
	h->nshards = nshards;
	h->cap_orders = cap_orders;
	return 0;
}

void shm_history_close(struct shm_history *h)
{
	if (!h->ok)
		return;
	if (h->map)
		munmap((void *)h->map, h->map_len);
	if (h->fd >= 0)
		close(h->fd);
	if (h->slots_fd >= 0)
		close(h->slots_fd);
	memset(h, 0, sizeof(*h));
	h->fd = h->slots_fd = -1;
}

int shm_history_pread(int fd, void *buf, size_t len, uint64_t off)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = pread(fd, (char *)buf + got, len - got, (off_t)(off + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return SHMEX_EJCORRUPT; /* past the end */
		got += (size_t)n;
	}
	return 0;
}

int shm_history_find(struct shm_history *h, uint64_t id, struct shm_snap_order *o,
		     struct shm_snap_fill *fills, size_t max_fills, size_t *nfills,
		     struct shmex_error *e)
{
	*nfills = 0;
	if (id == 0 || shm_shard_of_order(id, h->nshards) != h->shard)
		return SHMEX_ENOORDER;
	uint64_t slot = shm_order_slot(id, h->nshards, h->cap_orders);
	uint64_t gen = ((id - 1) / h->nshards) / h->cap_orders;
	/* HS2: acquire; pairs with the writer's HS1 (the record it names was
	 * written before). */
	uint64_t at = load_acquire(&h->slot[slot]);
	uint64_t last_gen = UINT64_MAX;
	struct shm_hist_rec r;
	while (at != 0) {
		uint64_t off = at - 1;
		int rc = shm_history_pread(h->fd, &r, sizeof(r), off);
		/* Every step goes strictly down in generation, so a chain ends
		 * after at most gen + 1 steps even in a forged file. */
		if (rc == 0 && (r.magic != SHM_HIST_MAGIC || r.gen >= last_gen ||
				shm_order_slot(r.id, h->nshards, h->cap_orders) != slot))
			rc = SHMEX_EJCORRUPT;
		if (rc)
			return shmex_error_set(e, rc,
					       "history of shard %u: record at byte %llu "
					       "(slot %llu): %s",
					       h->shard, (unsigned long long)off,
					       (unsigned long long)slot,
					       rc == SHMEX_EJCORRUPT
						       ? "not a valid record"
						       : strerror(-rc));
		if (r.gen < gen)
			return SHMEX_ENOORDER;
		last_gen = r.gen;
		if (r.gen > gen) {
			at = r.prev;
			continue;
		}
		/* Nothing is allocated for a count the file or the shard
		 * cannot hold: an order's fills all sat in its fill pool. */
		struct stat st;
		bool fits = fstat(h->fd, &st) == 0 &&
			    (uint64_t)st.st_size >= off + sizeof(r) &&
			    ((uint64_t)st.st_size - off - sizeof(r)) /
					    sizeof(struct shm_hist_fill) >=
				    r.nfills &&
			    (h->cap_fills == 0 || r.nfills <= h->cap_fills);
		if (r.id != id || r.nfills > SHM_HIST_FILLS_MAX || !fits)
			return shmex_error_set(
				e, SHMEX_EJCORRUPT,
				"history of shard %u: record at byte %llu "
				"holds id %llu (wanted %llu) or more fills than "
				"it or the shard can hold",
				h->shard, (unsigned long long)off,
				(unsigned long long)r.id, (unsigned long long)id);
		struct shm_hist_fill *fl = NULL;
		if (r.nfills) {
			fl = malloc((size_t)r.nfills * sizeof(*fl));
			if (!fl)
				return shmex_error_set(e, -ENOMEM, "out of memory");
			rc = shm_history_pread(h->fd, fl, (size_t)r.nfills * sizeof(*fl),
					       off + sizeof(r));
		}
		if (rc == 0 && !shm_hist_valid(&r, fl))
			rc = SHMEX_EJCORRUPT;
		if (rc) {
			free(fl);
			return shmex_error_set(
				e, rc, "history of shard %u: record at byte %llu: %s",
				h->shard, (unsigned long long)off,
				rc == SHMEX_EJCORRUPT ? "checksum mismatch"
						      : strerror(-rc));
		}
		memset(o, 0, sizeof(*o));
		o->id = r.id;
		o->account = r.account;
		o->sym = r.sym;
		o->side = r.side;
		o->tif = r.tif;
		o->state = r.state;
		o->done_reason = r.done_reason;
		o->price = r.price;
		o->amount = r.amount;
		o->open = r.open;
		o->executed = r.executed;
		o->cancelled = r.cancelled;
		o->time_ns = r.time_ns;
		o->cancel_time_ns = r.cancel_time_ns;
		o->nfills = r.nfills;
		o->mod_event = r.mod_event;
		size_t n = r.nfills < max_fills ? r.nfills : max_fills;
		for (size_t k = 0; k < n; k++) {
			fills[k].qty = fl[k].qty;
			fills[k].price = fl[k].price;
			fills[k].time_ns = fl[k].time_ns;
			fills[k].counterparty = fl[k].counterparty;
			fills[k].event = fl[k].event;
			fills[k].maker = fl[k].maker != 0;
		}
		*nfills = n;
		free(fl);
		return 0;
	}
	return SHMEX_ENOORDER;
}

int shm_history_lookup(struct shm_history *h, const struct shm_snap *rd,
		       const char *data_dir, uint64_t id, struct shm_snap_order *o,
		       struct shm_snap_fill *fills, size_t max_fills, size_t *nfills,
		       struct shmex_error *e)
{
	*nfills = 0;
	if (!shm_snap_order_issued(rd, id) || !data_dir || !data_dir[0])
		return SHMEX_ENOORDER;
	const struct shm_book_view *v = &rd->view;
	if (!h->ok) {
		char dir[SHM_JOURNAL_PATH_MAX];
		if (shm_journal_shard_dir(dir, sizeof(dir), data_dir, v->shard) != 0)
			return shmex_error_set(e, -ENAMETOOLONG, "%s: name too long",
					       data_dir);
		int rc = shm_history_open(h, dir, v->shard, v->nshards, v->cap_orders, e);
		/* Not there yet: the first recycling of the shard creates it. */
		if (rc)
			return rc == -ENOENT ? SHMEX_EBUSY : rc;
	}
	h->cap_fills = v->cap_fills;
	int rc = shm_history_find(h, id, o, fills, max_fills, nfills, e);
	return rc == SHMEX_ENOORDER ? SHMEX_EBUSY : rc;
}

/*
 * shm_layout: the layout signature of every struct that lives in shared
 * memory.  Add each new shared struct (and any offset that readers depend
 * on) to the list below; two builds that disagree on any of these refuse to
 * attach to each other's regions (SHMEX_EBADLAYOUT).
 */
#include "shm/shm_error.h"
#include "shm/shm_region.h"
#include "shm/shm_layout_list.h"

#include <stddef.h>
#include <string.h>

static uint64_t mix(uint64_t h, uint64_t v)
{
	/* FNV-1a over the 8 bytes of v. */
	for (int i = 0; i < 8; i++) {
		h ^= (v >> (8 * i)) & 0xff;
		h *= UINT64_C(0x100000001b3);
	}
	return h;
}

uint64_t shm_layout_signature(void)
{
	static uint64_t sig;
	if (sig)
		return sig;
	uint64_t h = UINT64_C(0xcbf29ce484222325);
	h = mix(h, SHM_CACHE_LINE);
	h = mix(h, SHM_LAYOUT_VERSION);
#define SHM_LAYOUT_ENTRY_(value) h = mix(h, (uint64_t)(value));
	SHM_LAYOUT_LIST(SHM_LAYOUT_ENTRY_)
#undef SHM_LAYOUT_ENTRY_
#define SHM_LAYOUT_FIELD_(s, f)                      \
	h = mix(h, (uint64_t)offsetof(struct s, f)); \
	h = mix(h, (uint64_t)sizeof(((struct s *)0)->f));
	SHM_LAYOUT_FIELDS(SHM_LAYOUT_FIELD_)
#undef SHM_LAYOUT_FIELD_
	/* The settings table: every row's position, name and range, so a
	 * build that reads slot i as another setting refuses to attach. */
	for (size_t i = 0; i < SHM_SETTINGS_COUNT; i++) {
		const struct shm_setting_desc *d = &shm_settings_desc[i];
		for (const char *c = d->option; *c; c++)
			h = mix(h, (uint64_t)(unsigned char)*c);
		h = mix(h, i);
		h = mix(h, d->min);
		h = mix(h, d->max);
		h = mix(h, d->kind);
	}
	/* The error table: a reply's status means the same to both ends. */
	for (int i = 0; i < SHMEX_ERR_COUNT; i++)
		for (const char *c = shmex_errname(shmex_err_at(i)); *c; c++)
			h = mix(h, (uint64_t)(unsigned char)*c);
	/* Routing is part of the contract too: processes that disagree on
	 * which shard owns a symbol, an order or an account must not share
	 * an exchange.  Probe the maps with fixed inputs. */
	static const char *const probes[] = {"SPY", "AAPL", "MSFT", "X", "BTC9"};
	for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++)
		h = mix(h, shm_shard_of_symbol(probes[i], strlen(probes[i]), 65521));
	h = mix(h, shm_shard_of_order(UINT64_C(123456789), 7));
	h = mix(h, shm_order_slot(UINT64_C(123456789), 7, 1000));
	h = mix(h, shm_shard_of_account(UINT64_C(987654321), 13));
	sig = h;
	return sig;
}

/*
 * shm_msg: validation of ring messages (see shm_msg.h).
 *
 * Validation works on a private copy of the message: the producer may
 * still be scribbling on the slot, so nothing is read from the ring twice.
 */
#include "shm/shm_msg.h"

#include <string.h>

#include "shm/shm_error.h"

static bool sym_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool shm_symbol_valid(const char *sym, size_t len)
{
	if (len == 0 || len > SHM_SYMBOL_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!sym_char(sym[i]))
			return false;
	return true;
}

bool shm_symbol_pack(char dst[16], const char *sym, size_t len)
{
	if (!shm_symbol_valid(sym, len))
		return false;
	memset(dst, 0, 16);
	memcpy(dst, sym, len);
	return true;
}

size_t shm_symbol_unpack_len(const char src[16])
{
	size_t n = 0;
	while (n < 16 && src[n] != '\0')
		n++;
	if (n == 0 || n > SHM_SYMBOL_MAX)
		return 0;
	for (size_t i = n; i < 16; i++)
		if (src[i] != '\0')
			return 0;
	return shm_symbol_valid(src, n) ? n : 0;
}

int shm_msg_validate_request(const struct shm_msg *m, uint32_t shard, uint32_t nshards)
{
	if (nshards == 0 || shard >= nshards)
		return SHMEX_EINTERNAL;
	size_t symlen;
	switch (m->type) {
	case SHM_MSG_CREATE_ACCOUNT:
		if (m->flags != 0)
			return SHMEX_EBADMSG;
		if (shm_shard_of_account(m->account, nshards) != shard)
			return SHMEX_EWRONGSHARD;
		if (shm_msg_balance(m) < 0)
			return SHMEX_EBADBALANCE;
		if (shm_msg_balance(m) > SHM_CASH_INPUT_MAX)
			return SHMEX_ECASHRANGE;
		return 0;
	case SHM_MSG_ADD_SHARES:
	case SHM_MSG_ORDER:
		if (m->flags & ~(m->type == SHM_MSG_ORDER ? SHM_MSG_FLAGS_ALL : 0u))
			return SHMEX_EBADMSG;
		symlen = shm_symbol_unpack_len(m->u.symbol);
		if (symlen == 0)
			return SHMEX_EBADSYMBOL;
		if (shm_shard_of_symbol(m->u.symbol, symlen, nshards) != shard)
			return SHMEX_EWRONGSHARD;
		if (m->qty <= 0)
			return SHMEX_EBADAMOUNT;
		if (m->type == SHM_MSG_ADD_SHARES)
			return 0;
		if (m->side != SHM_SIDE_BUY && m->side != SHM_SIDE_SELL)
			return SHMEX_EBADMSG;
		if (m->tif > SHM_TIF_FOK)
			return SHMEX_EBADTIF;
		if (m->price <= 0)
			return SHMEX_EBADPRICE;
		return 0;
	case SHM_MSG_CANCEL:
	case SHM_MSG_MODIFY:
		if (m->flags != 0)
			return SHMEX_EBADMSG;
		if (m->order_id == 0)
			return SHMEX_ENOORDER;
		if (shm_shard_of_order(m->order_id, nshards) != shard)
			return SHMEX_EWRONGSHARD;
		if (m->type == SHM_MSG_CANCEL)
			return 0;
		if (m->price <= 0)
			return SHMEX_EBADPRICE;
		if (m->qty < 0)
			return SHMEX_EBADAMOUNT;
		return 0;
	default:
		return SHMEX_EBADMSG;
	}
}

int shm_msg_validate_reply(const struct shm_msg *m)
{
	if (m->type == SHM_MSG_RESTART || m->type == SHM_MSG_REPAIR)
		return m->req_type == m->type && m->status == 0 ? 0 : SHMEX_EBADMSG;
	if (m->type != SHM_MSG_REPLY)
		return SHMEX_EBADMSG;
	if (m->req_type < SHM_MSG_CREATE_ACCOUNT || m->req_type > SHM_MSG_REQUEST_LAST_)
		return SHMEX_EBADMSG;
	if (m->status != 0 && !shmex_err_is_valid(m->status))
		return SHMEX_EBADMSG;
	return 0;
}

/*
 * The sizes and offsets that make up the layout signature (shm_layout.c).
 * Every header that defines a shared struct is included here and its struct
 * listed; X(value) is applied to each.
 */
#ifndef SHMEX_SHM_LAYOUT_LIST_H
#define SHMEX_SHM_LAYOUT_LIST_H

#include "shm/shm_region.h"
#include "shm/shm_msg.h"
#include "shm/shm_accounts.h"
#include "shm/shm_positions.h"
#include "shm/shm_doorbell.h"
#include "shm/shm_ring.h"
#include "shm/shm_instance.h"
#include "shm/shm_book.h"
#include "shm/shm_rcu.h"

#define SHM_LAYOUT_LIST(X)                                \
	X(sizeof(struct shm_region_hdr_sh))               \
	X(offsetof(struct shm_region_hdr_sh, state))      \
	X(sizeof(struct shm_msg))                         \
	X(sizeof(struct shm_doorbell_sh))                 \
	X(offsetof(struct shm_doorbell_sh, sleeping))     \
	X(sizeof(struct shm_ring_sh))                     \
	X(offsetof(struct shm_ring_sh, prod.head))        \
	X(offsetof(struct shm_ring_sh, cons.tail))        \
	X(offsetof(struct shm_ring_sh, slots))            \
	X(sizeof(struct shm_control_sh))                  \
	X(offsetof(struct shm_control_sh, ring_bytes))    \
	X(offsetof(struct shm_control_sh, stopping))      \
	X(sizeof(struct shm_settings_sh))                 \
	X(SHM_SETTINGS_COUNT)                             \
	X(offsetof(struct shm_instance_member_sh, owner)) \
	X(offsetof(struct shm_control_sh, shards))        \
	X(offsetof(struct shm_control_sh, shard_db))      \
	X(offsetof(struct shm_control_sh, gateway_db))    \
	X(sizeof(struct shm_book_hdr_sh))                 \
	X(offsetof(struct shm_book_hdr_sh, nsymbols))     \
	X(sizeof(struct shm_book_sym_sh))                 \
	X(offsetof(struct shm_book_sym_sh, head))         \
	X(sizeof(struct shm_book_level_sh))               \
	X(offsetof(struct shm_book_level_sh, next))       \
	X(sizeof(struct shm_book_order_sh))               \
	X(offsetof(struct shm_book_order_sh, sym))        \
	X(offsetof(struct shm_book_order_sh, fill_head))  \
	X(sizeof(struct shm_book_fill_sh))                \
	X(offsetof(struct shm_book_fill_sh, next))        \
	X(sizeof(struct shm_rcu_hdr_sh))                  \
	X(offsetof(struct shm_rcu_hdr_sh, mode))          \
	X(sizeof(struct shm_rcu_slot_sh))                 \
	X(offsetof(struct shm_rcu_slot_sh, section))      \
	X(sizeof(struct shm_accounts_sh))                 \
	X(sizeof(struct shm_account_sh))                  \
	X(offsetof(struct shm_account_sh, balance))       \
	X(offsetof(struct shm_account_sh, deposited))     \
	X(sizeof(struct shm_positions_sh))                \
	X(sizeof(struct shm_possym_sh))                   \
	X(offsetof(struct shm_possym_sh, created))        \
	X(sizeof(struct shm_position_sh))                 \
	X(offsetof(struct shm_position_sh, amount))

#endif

/*
 * The sizes and offsets that make up the layout signature (shm_layout.c).
 * Every header that defines a shared struct is included here, its size
 * listed (X(value) is applied to each) and every one of its fields
 * (SHM_LAYOUT_FIELDS).
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
#include "shm/shm_ledger.h"

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
	X(sizeof(struct shm_book_quote_sh))               \
	X(offsetof(struct shm_book_quote_sh, level))      \
	X(SHM_BOOK_QUOTE_LEVELS)                          \
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
	X(offsetof(struct shm_position_sh, amount))       \
	X(offsetof(struct shm_position_sh, reserved))     \
	X(sizeof(struct shm_ledger_hdr_sh))               \
	X(sizeof(struct shm_ledger_ent_sh))               \
	X(sizeof(struct shm_instance_db_sh))              \
	X(sizeof(struct shm_ring_hdr_sh))                 \
	X(sizeof(struct shm_ring_prod_sh))                \
	X(sizeof(struct shm_ring_cons_sh))                \
	X(sizeof(struct shm_instance_member_sh))

/*
 * Every field of every shared struct, F(struct tag, field) in declaration
 * order: the signature mixes each one's offset and size, so two builds that
 * swap, resize or move any field refuse each other (SHMEX_EBADLAYOUT).
 * tests/test_shm_region.c (every_shared_field_is_signed) parses the
 * headers and fails when a field of a *_sh struct is missing here.
 */
#define SHM_LAYOUT_FIELDS(F)                   \
	F(shm_accounts_sh, claimed)            \
	F(shm_accounts_sh, naccounts)          \
	F(shm_accounts_sh, total_deposited)    \
	F(shm_accounts_sh, pad)                \
	F(shm_account_sh, key)                 \
	F(shm_account_sh, state)               \
	F(shm_account_sh, pad0)                \
	F(shm_account_sh, balance)             \
	F(shm_account_sh, reserved)            \
	F(shm_account_sh, deposited)           \
	F(shm_book_hdr_sh, magic)              \
	F(shm_book_hdr_sh, shard)              \
	F(shm_book_hdr_sh, nshards)            \
	F(shm_book_hdr_sh, cap_symbols)        \
	F(shm_book_hdr_sh, cap_levels)         \
	F(shm_book_hdr_sh, cap_orders)         \
	F(shm_book_hdr_sh, cap_fills)          \
	F(shm_book_hdr_sh, off_symbols)        \
	F(shm_book_hdr_sh, off_levels)         \
	F(shm_book_hdr_sh, off_orders)         \
	F(shm_book_hdr_sh, off_fills)          \
	F(shm_book_hdr_sh, body_size)          \
	F(shm_book_hdr_sh, stp_mode)           \
	F(shm_book_hdr_sh, pad0)               \
	F(shm_book_hdr_sh, reserved0)          \
	F(shm_book_hdr_sh, nsymbols)           \
	F(shm_book_hdr_sh, levels_live)        \
	F(shm_book_hdr_sh, orders_live)        \
	F(shm_book_hdr_sh, orders_used)        \
	F(shm_book_hdr_sh, fills_used)         \
	F(shm_book_hdr_sh, pad1)               \
	F(shm_book_hdr_sh, events)             \
	F(shm_book_hdr_sh, last_seq)           \
	F(shm_book_hdr_sh, last_time_ns)       \
	F(shm_book_hdr_sh, orders_created)     \
	F(shm_book_hdr_sh, rejects_full)       \
	F(shm_book_hdr_sh, safe_epoch)         \
	F(shm_book_hdr_sh, durable_event)      \
	F(shm_book_hdr_sh, durable_time_ns)    \
	F(shm_book_hdr_sh, rejects_by)         \
	F(shm_book_sym_sh, seq)                \
	F(shm_book_sym_sh, name)               \
	F(shm_book_sym_sh, head)               \
	F(shm_book_sym_sh, nlevels)            \
	F(shm_book_sym_sh, norders)            \
	F(shm_book_sym_sh, open_qty)           \
	F(shm_book_sym_sh, last_price)         \
	F(shm_book_sym_sh, last_qty)           \
	F(shm_book_sym_sh, last_time_ns)       \
	F(shm_book_sym_sh, trades)             \
	F(shm_book_sym_sh, volume)             \
	F(shm_book_sym_sh, index)              \
	F(shm_book_sym_sh, pad0)               \
	F(shm_book_sym_sh, reserved)           \
	F(shm_book_level_sh, price)            \
	F(shm_book_level_sh, qty)              \
	F(shm_book_level_sh, count)            \
	F(shm_book_level_sh, next)             \
	F(shm_book_level_sh, head)             \
	F(shm_book_level_sh, tail)             \
	F(shm_book_level_sh, sym)              \
	F(shm_book_level_sh, side)             \
	F(shm_book_level_sh, state)            \
	F(shm_book_level_sh, pad0)             \
	F(shm_book_level_sh, retire_epoch)     \
	F(shm_book_level_sh, reserved)         \
	F(shm_book_order_sh, id)               \
	F(shm_book_order_sh, account)          \
	F(shm_book_order_sh, price)            \
	F(shm_book_order_sh, amount)           \
	F(shm_book_order_sh, open)             \
	F(shm_book_order_sh, executed)         \
	F(shm_book_order_sh, cancelled)        \
	F(shm_book_order_sh, time_ns)          \
	F(shm_book_order_sh, cancel_time_ns)   \
	F(shm_book_order_sh, gen)              \
	F(shm_book_order_sh, seq)              \
	F(shm_book_order_sh, sym)              \
	F(shm_book_order_sh, side)             \
	F(shm_book_order_sh, tif)              \
	F(shm_book_order_sh, state)            \
	F(shm_book_order_sh, done_reason)      \
	F(shm_book_order_sh, level)            \
	F(shm_book_order_sh, next)             \
	F(shm_book_order_sh, prev)             \
	F(shm_book_order_sh, fill_head)        \
	F(shm_book_order_sh, fill_tail)        \
	F(shm_book_order_sh, nfills)           \
	F(shm_book_order_sh, mod_event)        \
	F(shm_book_hdr_sh, off_quotes)         \
	F(shm_book_quote_sh, seq)              \
	F(shm_book_quote_sh, book_seq)         \
	F(shm_book_quote_sh, nlevels)          \
	F(shm_book_quote_sh, norders)          \
	F(shm_book_quote_sh, open_qty)         \
	F(shm_book_quote_sh, last_price)       \
	F(shm_book_quote_sh, last_qty)         \
	F(shm_book_quote_sh, last_time_ns)     \
	F(shm_book_quote_sh, trades)           \
	F(shm_book_quote_sh, volume)           \
	F(shm_book_quote_sh, ndepth)           \
	F(shm_book_quote_sh, reserved)         \
	F(shm_book_quote_sh, level)            \
	F(shm_book_quote_sh, pad1)             \
	F(shm_book_quote_level_sh, price)      \
	F(shm_book_quote_level_sh, qty)        \
	F(shm_book_quote_level_sh, count)      \
	F(shm_book_quote_level_sh, pad0)       \
	F(shm_book_fill_sh, qty)               \
	F(shm_book_fill_sh, price)             \
	F(shm_book_fill_sh, time_ns)           \
	F(shm_book_fill_sh, counterparty)      \
	F(shm_book_fill_sh, event)             \
	F(shm_book_fill_sh, order_id)          \
	F(shm_book_fill_sh, next)              \
	F(shm_book_fill_sh, maker)             \
	F(shm_book_fill_sh, pad0)              \
	F(shm_book_fill_sh, reserved)          \
	F(shm_doorbell_sh, seq)                \
	F(shm_doorbell_sh, sleeping)           \
	F(shm_doorbell_sh, sleeps)             \
	F(shm_doorbell_sh, wakes)              \
	F(shm_doorbell_sh, reserved)           \
	F(shm_instance_member_sh, pid)         \
	F(shm_instance_member_sh, pad0)        \
	F(shm_instance_member_sh, start)       \
	F(shm_instance_member_sh, owner)       \
	F(shm_instance_member_sh, gw_requests) \
	F(shm_instance_member_sh, gw_open)     \
	F(shm_instance_member_sh, gw_pad)      \
	F(shm_instance_member_sh, gw_refused)  \
	F(shm_instance_member_sh, gw_unknown)  \
	F(shm_instance_member_sh, gw_busy)     \
	F(shm_instance_db_sh, db)              \
	F(shm_instance_db_sh, pad)             \
	F(shm_control_sh, settings)            \
	F(shm_control_sh, ring_bytes)          \
	F(shm_control_sh, port)                \
	F(shm_control_sh, geo_pad)             \
	F(shm_control_sh, geo_reserved)        \
	F(shm_control_sh, stopping)            \
	F(shm_control_sh, freeze_owner)        \
	F(shm_control_sh, freeze_gen)          \
	F(shm_control_sh, ring_repairs)        \
	F(shm_control_sh, run_reserved)        \
	F(shm_control_sh, pad1)                \
	F(shm_control_sh, gateways)            \
	F(shm_control_sh, shards)              \
	F(shm_control_sh, shard_db)            \
	F(shm_control_sh, gateway_db)          \
	F(shm_control_sh, data_dir)            \
	F(shm_ledger_hdr_sh, incarnation)      \
	F(shm_ledger_hdr_sh, phase)            \
	F(shm_ledger_hdr_sh, freeze_ack)       \
	F(shm_ledger_hdr_sh, applied_seq)      \
	F(shm_ledger_hdr_sh, used)             \
	F(shm_ledger_hdr_sh, pad0)             \
	F(shm_ledger_hdr_sh, replied)          \
	F(shm_ledger_ent_sh, key)              \
	F(shm_ledger_ent_sh, pad)              \
	F(shm_ledger_ent_sh, deposit)          \
	F(shm_ledger_ent_sh, balance)          \
	F(shm_ledger_ent_sh, reserved)         \
	F(shm_positions_sh, nsymbols)          \
	F(shm_positions_sh, npositions)        \
	F(shm_positions_sh, pad)               \
	F(shm_possym_sh, name)                 \
	F(shm_possym_sh, state)                \
	F(shm_possym_sh, pad0)                 \
	F(shm_possym_sh, pad1)                 \
	F(shm_possym_sh, created)              \
	F(shm_position_sh, account)            \
	F(shm_position_sh, sym)                \
	F(shm_position_sh, state)              \
	F(shm_position_sh, amount)             \
	F(shm_position_sh, reserved)           \
	F(shm_rcu_hdr_sh, epoch)               \
	F(shm_rcu_hdr_sh, nslots)              \
	F(shm_rcu_hdr_sh, shard)               \
	F(shm_rcu_hdr_sh, writer)              \
	F(shm_rcu_hdr_sh, reaped)              \
	F(shm_rcu_hdr_sh, mode)                \
	F(shm_rcu_hdr_sh, pad32)               \
	F(shm_rcu_hdr_sh, barriers)            \
	F(shm_rcu_hdr_sh, pad)                 \
	F(shm_rcu_slot_sh, owner)              \
	F(shm_rcu_slot_sh, section)            \
	F(shm_rcu_slot_sh, gen)                \
	F(shm_rcu_slot_sh, nesting)            \
	F(shm_rcu_slot_sh, pad)                \
	F(shm_region_hdr_sh, magic)            \
	F(shm_region_hdr_sh, version)          \
	F(shm_region_hdr_sh, kind)             \
	F(shm_region_hdr_sh, signature)        \
	F(shm_region_hdr_sh, size)             \
	F(shm_region_hdr_sh, capacity)         \
	F(shm_region_hdr_sh, creator_pid)      \
	F(shm_region_hdr_sh, cache_line)       \
	F(shm_region_hdr_sh, creator_start)    \
	F(shm_region_hdr_sh, state)            \
	F(shm_region_hdr_sh, pad0)             \
	F(shm_region_hdr_sh, reserved)         \
	F(shm_ring_hdr_sh, magic)              \
	F(shm_ring_hdr_sh, capacity)           \
	F(shm_ring_hdr_sh, mask)               \
	F(shm_ring_hdr_sh, msg_size)           \
	F(shm_ring_hdr_sh, slots_offset)       \
	F(shm_ring_hdr_sh, bytes)              \
	F(shm_ring_hdr_sh, gen)                \
	F(shm_ring_hdr_sh, quiesce)            \
	F(shm_ring_hdr_sh, reserved)           \
	F(shm_ring_prod_sh, head)              \
	F(shm_ring_prod_sh, full)              \
	F(shm_ring_prod_sh, batches)           \
	F(shm_ring_prod_sh, corrupt)           \
	F(shm_ring_prod_sh, bad_gen)           \
	F(shm_ring_prod_sh, ack_gen)           \
	F(shm_ring_prod_sh, ack_pos)           \
	F(shm_ring_prod_sh, reserved)          \
	F(shm_ring_cons_sh, tail)              \
	F(shm_ring_cons_sh, batches)           \
	F(shm_ring_cons_sh, corrupt)           \
	F(shm_ring_cons_sh, bad_gen)           \
	F(shm_ring_cons_sh, ack_gen)           \
	F(shm_ring_cons_sh, ack_pos)           \
	F(shm_ring_cons_sh, reserved)          \
	F(shm_ring_sh, hdr)                    \
	F(shm_ring_sh, prod)                   \
	F(shm_ring_sh, db)                     \
	F(shm_ring_sh, pad_db)                 \
	F(shm_ring_sh, cons)                   \
	F(shm_ring_sh, pad_cons)               \
	F(shm_ring_sh, slots[0])               \
	F(shm_settings_sh, slot)               \
	F(shm_msg, type)                       \
	F(shm_msg, side)                       \
	F(shm_msg, tif)                        \
	F(shm_msg, req_type)                   \
	F(shm_msg, status)                     \
	F(shm_msg, flags)                      \
	F(shm_msg, req_id)                     \
	F(shm_msg, account)                    \
	F(shm_msg, order_id)                   \
	F(shm_msg, price)                      \
	F(shm_msg, qty)                        \
	F(shm_msg, u)                          \
	F(shm_msg, u.symbol)                   \
	F(shm_msg, u.r.time_ns)                \
	F(shm_msg, u.r.seq)

#endif

/*
 * The QuantCup 2011 naive reference engine (third_party/quantcup-2011/
 * engine.c, unmodified) under prefixed names, so that shmex-bench can run
 * it beside the adapter over shmex's core in the same process.  Compiled
 * without warnings (third-party code).
 */
#include "tests/bench/qc_reference.h"

#define init qcref_init
#define destroy qcref_destroy
#define limit qcref_limit
#define cancel qcref_cancel
#define is_ask qc_is_ask
#define execution qcref_execution
/* Its other global names, out of the way of everything else. */
#define find_node qcref_find_node
#define send_exec qcref_send_exec
#define trade qcref_trade
#define hit_ask qcref_hit_ask
#define hit_bid qcref_hit_bid
#define cross qcref_cross
#define priority_ask qcref_priority_ask
#define priority_bid qcref_priority_bid
#define queue qcref_queue
#define bids qcref_bids
#define asks qcref_asks
#define nextid qcref_nextid
#define new_node qcref_new_node
#define new_node_empty qcref_new_node_empty
#define new_list qcref_new_list
#define delete_list qcref_delete_list
#define insert_before qcref_insert_before
#define insert_after qcref_insert_after
#define remove_node qcref_remove_node
#include "tests/bench/third_party/quantcup-2011/engine.c"

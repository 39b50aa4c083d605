/*
 * shmex-stress: the torture harness (docs/stress.md).  One run starts a
 * real exchange (the `shmex` supervisor, 2 shards, a data directory),
 * forks client workers that trade over TCP and reader processes that
 * hammer the read-side API, and kills and stops processes on a seeded
 * chaos schedule.  At checkpoints, with the exchange quiescent, the parent
 * checks the invariants against the shared memory and against everything
 * the clients were told.
 *
 * Everything the processes of the harness share lives in one anonymous
 * MAP_SHARED mapping made before the first fork (struct st_ctl): the
 * phase flags, per-process counters, the violation log and one append-only
 * reply log per client slot.  A client appends a record, then publishes
 * the new count with a release store; the parent reads the logs only while
 * every client is paused or dead (quiescent), so a record a killed client
 * was writing is simply not counted.  No /dev/shm object and no file
 * descriptor belongs to the harness's bookkeeping, so its own leak checks
 * see only the exchange.
 */
#ifndef SHMEX_TESTS_STRESS_STRESS_H
#define SHMEX_TESTS_STRESS_STRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define ST_NSHARDS 2
#define ST_NSYMS 8         /* 4 symbols per shard */
#define ST_NACC 32         /* setup accounts 1..ST_NACC */
#define ST_NEW_ACC_LO 1000 /* clients create ids ST_NEW_ACC_LO.. */
#define ST_NEW_ACC_N 400   /* ..ST_NEW_ACC_LO + ST_NEW_ACC_N - 1 */
#define ST_MAX_ACC 2048    /* every account id is below this */
#define ST_MAX_CLIENTS 16
#define ST_MAX_READERS 8
#define ST_LOG_CAP 262144 /* records per client slot */
#define ST_VIOL_MAX 64    /* violation messages kept */
#define ST_VIOL_LEN 512

/* One thing a client was told (or tried, for creates). */
enum st_rec_type {
	R_OPENED = 1, /* id, account, sym, side, a = amount, b = limit */
	R_STATUS,     /* id, account, a = open, b = canceled, c = executed */
	R_CANCELED,   /* as R_STATUS, from a <cancel> reply */
	R_ACCT_TRY,   /* serial, account, a = balance: about to send */
	R_ACCT_OK,    /* serial, account, a = balance: <created> */
	R_ACCT_NO,    /* serial, account: an <error> (not created) */
	R_SH_TRY,     /* serial, account, sym, a = shares */
	R_SH_OK,      /* serial */
	R_SH_NO,      /* serial */
};

struct st_rec {
	uint8_t type;
	uint8_t side; /* R_OPENED: 0 buy, 1 sell (enum shm_side) */
	uint16_t sym; /* index into the run's symbol table */
	uint32_t nfills;
	uint64_t id; /* order id, or the attempt serial of a create */
	uint64_t account;
	int64_t a, b, c;
	int64_t last_qty, last_price; /* R_STATUS/R_CANCELED: newest fill */
	uint64_t last_time;           /* seconds */
};

struct st_client_sh {
	pid_t pid;
	uint32_t gen;    /* incarnations of this slot */
	uint32_t paused; /* W: client, release; R: parent, acquire */
	uint32_t pad;
	uint64_t requests;  /* replies received (relaxed; progress only) */
	uint64_t errors;    /* <error> children */
	uint64_t lost;      /* requests whose connection died */
	uint64_t nlog;      /* W: client, release after the record */
	struct st_rec *log; /* inside the mapping; set before fork */
};

struct st_reader_sh {
	pid_t pid;
	uint32_t pad;
	uint64_t reads; /* read-side calls (relaxed) */
	uint64_t busy;  /* SHMEX_EBUSY answers (not violations) */
	uint64_t books; /* full-book snapshots checked (relaxed) */
	uint64_t dips;  /* reads of a balance below zero (relaxed) */
};

struct st_ctl {
	uint32_t stop;  /* W: parent, release; R: children, acquire */
	uint32_t pause; /* W: parent, release; R: clients, acquire */
	int port;
	/* Planted faults (SHMEX_STRESS_FAULT, the harness's own test):
	 * clients log a wrong status; the parent expects a wrong deposit. */
	uint32_t fault_status, fault_deposit;
	uint64_t seed;
	char instance[64];
	char syms[ST_NSYMS][16];
	struct st_client_sh c[ST_MAX_CLIENTS];
	struct st_reader_sh r[ST_MAX_READERS];
	uint64_t nviol; /* atomic add */
	char viol[ST_VIOL_MAX][ST_VIOL_LEN];
};

extern struct st_ctl *st;

/* Records a violation (any process): counts it and keeps the message. */
void st_violation(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* xorshift64*: the harness's only random source, seeded per process. */
static inline uint64_t st_rand(uint64_t *x)
{
	*x ^= *x >> 12;
	*x ^= *x << 25;
	*x ^= *x >> 27;
	return *x * UINT64_C(2685821657736338717);
}

static inline uint64_t st_below(uint64_t *x, uint64_t n)
{
	return st_rand(x) % n;
}

/* The body of a client worker process (never returns). */
void st_client_main(int slot, uint64_t seed) __attribute__((noreturn));
/* The body of a reader process (never returns). */
void st_reader_main(int slot, uint64_t seed) __attribute__((noreturn));

/* What the parent knows for the quiescent checks. */
struct st_check_in {
	int64_t setup_cash[ST_MAX_ACC]; /* deposits of the setup */
	int64_t setup_shares[ST_NSYMS]; /* shares created by the setup */
	const char *when;               /* "checkpoint 2", "final" */
	const char *data_dir;           /* the exchange's (order history) */
};
/* Every quiescent invariant; returns the violations found (printed). */
int st_check(const struct st_check_in *in);

#endif

/*
 * shmex-replay: feeds recorded order flow through the real matching core
 * and prints the canonical report lines of the conformance batteries
 * (engine/replay/rpl.h), their SHA-256, or a PASS/FAIL verdict per case.
 *
 *   shmex-replay [--sha256] [--check] [--case NAME] [--counts]
 *                [--expect HEX] [--limit N] [--through-shm] FILE...
 *
 * FILE is a JSON battery (*.json: each case on a fresh book) or a MEBW_001
 * workload (*.bin, *.bin.xz: one book for the whole flow, streamed).
 * Exit status: 0 success, 1 a check failed or a file could not be read,
 * 2 usage error.
 *
 * --through-shm drives the same flow through a real shmex-matcher process
 * instead of an in-process book: it creates a private instance
 * (control, rings, accounts; named "replay-<pid>"), starts the matcher
 * next to this program, creates one account with a huge balance and gives
 * it a huge number of shares of each symbol, so that account checks never
 * refuse what the core would accept.  Every message goes as one ring
 * message and waits for its reply (lock-step, so the book read afterwards
 * is exactly the state after that message); the report lines are rebuilt
 * from the reply and from the book region, read like any other reader
 * does (shm_snap: reader table + seqcount snapshots): the new order's
 * fills (counterparty = maker), its state (IOC/FOK remainder cancelled),
 * a modify's new fills.  Each JSON case gets a fresh symbol ("C<n>") in
 * the same matcher, i.e. a fresh empty book.  The report is byte for byte
 * the in-process one (tests/test_eng_matcher.c checks it); docs/matcher.md
 * lists the assumptions (quantities whose q x limit fits the cash range).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/replay/rpl.h"
#include "engine/replay/rpl_shm.h"
#include "shm/shm_error.h"
#include "shm/shm_opt.h"

struct opts {
	bool sha256;
	bool check;
	bool counts;
	bool through_shm;
	const char *only_case;
	const char *expect;
	const char *matcher; /* --matcher PATH */
	uint64_t limit;      /* --limit N: workload prefix; 0 = all */
};

static void print_line(void *ctx, const char *s, size_t len)
{
	fwrite(s, 1, len, (FILE *)ctx);
	fputc('\n', (FILE *)ctx);
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && !strcmp(s + n - k, suffix);
}

/* What a workload run prints after its last message (--sha256, --counts,
 * --expect); 1 when --expect does not match, else 0. */
static int workload_report(const char *path, const struct opts *o, uint64_t k,
			   const char hex[65], const uint64_t c[6], uint64_t rejected)
{
	if (o->sha256)
		printf("%s\n", hex);
	if (o->counts)
		printf("messages %llu accept %llu trade %llu cancel %llu modify %llu "
		       "cancel_reject %llu modify_reject %llu rejected_new %llu\n",
		       (unsigned long long)k, (unsigned long long)c[0],
		       (unsigned long long)c[1], (unsigned long long)c[2],
		       (unsigned long long)c[3], (unsigned long long)c[4],
		       (unsigned long long)c[5], (unsigned long long)rejected);
	if (o->expect) {
		bool ok = !strcmp(hex, o->expect);
		printf("%s %s\n", ok ? "PASS" : "FAIL", path);
		if (!ok) {
			fprintf(stderr, "shmex-replay: sha256 %s, expected %s\n", hex,
				o->expect);
			return 1;
		}
	}
	return 0;
}

static int run_workload(const char *path, const struct opts *o)
{
	char err[512];
	struct rpl_wl *w;
	if (rpl_wl_open(&w, path, err, sizeof(err)) != 0) {
		fprintf(stderr, "shmex-replay: %s\n", err);
		return 1;
	}
	struct rpl_cfg cfg;
	rpl_cfg_default(&cfg, false);
	bool print = !o->sha256 && !o->counts && !o->expect;
	if (print) {
		cfg.line = print_line;
		cfg.ctx = stdout;
	}
	struct rpl *r;
	if (rpl_open(&r, &cfg) != 0) {
		fprintf(stderr, "shmex-replay: out of memory\n");
		rpl_wl_close(w);
		return 1;
	}
	int rc = 0, n;
	struct rpl_msg m;
	uint64_t k = 0;
	while ((!o->limit || k < o->limit) && (n = rpl_wl_next(w, &m)) == 1) {
		if (rpl_apply(r, &m) != 0) {
			fprintf(stderr, "shmex-replay: out of memory\n");
			rc = 1;
			break;
		}
		k++;
	}
	if (n < 0) {
		fprintf(stderr, "shmex-replay: %s: bad or truncated record %llu\n", path,
			(unsigned long long)k);
		rc = 1;
	}
	char hex[65];
	rpl_report_hex(r, hex);
	uint64_t c[6];
	rpl_counts(r, c);
	rc |= workload_report(path, o, k, hex, c, rpl_rejected(r));
	rpl_close(r);
	rpl_wl_close(w);
	return rc;
}

/* ------------------------------------------------------------------ */
/* --through-shm: the same flow through a shmex-matcher process        */

/* ---- batteries and workloads through the matcher ---- */

/* One battery case through the in-process book, or through the matcher
 * when s is set; the lines go to stdout when print. */
static int run_case(struct rpl_shm *s, const struct rpl_case *c, bool print,
		    struct rpl_result *res)
{
	rpl_line_fn line = print ? print_line : NULL;
	if (s) {
		const struct rpl_runner run = rpl_shm_runner(s);
		return rpl_case_drive(c, &run, line, stdout, res);
	}
	struct rpl_cfg cfg;
	rpl_cfg_default(&cfg, true);
	cfg.line = line;
	cfg.ctx = stdout;
	return rpl_case_run(c, &cfg, res);
}

/* Every case of a battery (or the one --case names), each on a fresh
 * book: in process, or through the matcher when s is set. */
static int run_battery(struct rpl_shm *s, const char *path, const struct opts *o)
{
	char err[512];
	struct rpl_battery *bat;
	if (rpl_battery_load(path, &bat, err, sizeof(err)) != 0) {
		fprintf(stderr, "shmex-replay: %s\n", err);
		return 1;
	}
	int rc = 0;
	size_t pass = 0, ran = 0;
	for (size_t i = 0; i < bat->ncases; i++) {
		const struct rpl_case *c = &bat->cases[i];
		if (o->only_case && strcmp(o->only_case, c->name))
			continue;
		ran++;
		bool print = !o->sha256 && !o->check;
		if (print)
			printf("== %s\n", c->name);
		struct rpl_result res;
		if (run_case(s, c, print, &res) != 0) {
			if (s)
				fprintf(stderr,
					"shmex-replay: %s: case %s failed to run\n", path,
					c->name);
			else
				fprintf(stderr, "shmex-replay: %s: out of memory\n",
					c->name);
			rc = 1;
			break;
		}
		if (o->sha256)
			printf("%s  %s\n", res.sha256, c->name);
		if (o->check) {
			printf("%s %s", res.pass ? "PASS" : "FAIL", c->name);
			if (!res.pass)
				printf(": %s", res.why);
			printf("\n");
		}
		pass += res.pass;
		if (o->check && !res.pass)
			rc = 1;
	}
	if (o->only_case && ran == 0) {
		fprintf(stderr, "shmex-replay: %s: no case named %s\n", path,
			o->only_case);
		rc = 1;
	}
	if (o->check)
		printf("%s: %zu/%zu passed\n", path, pass, ran);
	rpl_battery_free(bat);
	return rc;
}

static int run_workload_shm(struct rpl_shm *s, const char *path, const struct opts *o)
{
	char err[512];
	struct rpl_wl *w;
	if (rpl_wl_open(&w, path, err, sizeof(err)) != 0) {
		fprintf(stderr, "shmex-replay: %s\n", err);
		return 1;
	}
	bool print = !o->sha256 && !o->counts && !o->expect;
	int rc = rpl_shm_begin(s, print ? print_line : NULL, stdout) ? 1 : 0, n = 0;
	struct rpl_msg m;
	uint64_t k = 0;
	while (!rc && (!o->limit || k < o->limit) && (n = rpl_wl_next(w, &m)) == 1) {
		if (rpl_shm_submit(s, &m) != 0) {
			fprintf(stderr, "shmex-replay: %s: message %llu failed\n", path,
				(unsigned long long)k);
			rc = 1;
			break;
		}
		k++;
	}
	if (n < 0) {
		fprintf(stderr, "shmex-replay: %s: bad or truncated record %llu\n", path,
			(unsigned long long)k);
		rc = 1;
	}
	char hex[65];
	if (rpl_shm_finish(s, hex) != 0)
		rc = 1;
	const struct rpl_report *r = rpl_shm_report(s);
	rc |= workload_report(path, o, k, hex, r->counts, r->rejected);
	rpl_wl_close(w);
	return rc;
}

/* Runs every file through one matcher process. */
static int run_through_shm(int argc, char **argv, int first, const struct opts *o)
{
	/* Capacities: the larger of rpl's two defaults, since one
	 * matcher serves every case (each on its own symbol). */
	struct rpl_cfg big;
	rpl_cfg_default(&big, false);
	struct shm_book_caps caps = big.caps;
	caps.symbols = 4096;
	struct rpl_shm *s;
	if (rpl_shm_start(&s, &caps, o->matcher) != 0)
		return 1;
	int rc = 0;
	for (int i = first; i < argc && !rpl_shm_interrupted(); i++) {
		const char *f = argv[i];
		if (ends_with(f, ".json"))
			rc |= run_battery(s, f, o);
		else
			rc |= run_workload_shm(s, f, o);
		fflush(stdout);
	}
	rpl_shm_stop(s);
	return rc;
}

int main(int argc, char **argv)
{
	struct opts o;
	memset(&o, 0, sizeof(o));
	const struct shm_opt opts[] = {
		{.name = "sha256",
		 .type = SHM_OPT_FLAG,
		 .dst = &o.sha256,
		 .help = "print only the SHA-256 of each report stream"},
		{.name = "check",
		 .type = SHM_OPT_FLAG,
		 .dst = &o.check,
		 .help = "batteries: compare every case with its expected reports, "
			 "hash and book states; print PASS/FAIL"},
		{.name = "case",
		 .type = SHM_OPT_STR,
		 .arg = "NAME",
		 .dst = &o.only_case,
		 .help = "only the battery case NAME"},
		{.name = "counts",
		 .type = SHM_OPT_FLAG,
		 .dst = &o.counts,
		 .help = "workloads: print the report counts per type"},
		{.name = "expect",
		 .type = SHM_OPT_STR,
		 .arg = "HEX",
		 .dst = &o.expect,
		 .help = "workloads: exit 1 unless the SHA-256 is HEX"},
		{.name = "limit",
		 .type = SHM_OPT_NUM,
		 .arg = "N",
		 .dst = &o.limit,
		 .min = 1,
		 .max = UINT64_MAX,
		 .help = "workloads: only the first N messages"},
		{.name = "through-shm",
		 .type = SHM_OPT_FLAG,
		 .dst = &o.through_shm,
		 .help = "drive the flow through a real shmex-matcher process over "
			 "shared-memory rings (same report)"},
		{.name = "matcher",
		 .type = SHM_OPT_STR,
		 .arg = "PATH",
		 .dst = &o.matcher,
		 .help = "the shmex-matcher program for --through-shm (default: next "
			 "to this program)"},
	};
	const struct shm_opt_prog prog = {
		.name = "shmex-replay",
		.synopsis = "[options] FILE...",
		.about = "Replays conformance batteries (*.json) or MEBW_001 workloads\n"
			 "(*.bin, *.bin.xz) through the matching core and prints the\n"
			 "canonical report lines.",
		.opts = opts,
		.nopts = sizeof(opts) / sizeof(opts[0]),
		.min_args = 1,
		.max_args = -1,
		.operands =
			"Exit status: 0 success, 1 a check failed or a file could not "
			"be read, 2 usage error.",
	};
	int first;
	enum shm_opt_result pr = shm_opt_parse(&prog, argc, argv, &first);
	if (pr != SHM_OPT_RUN)
		return pr == SHM_OPT_EXIT ? 0 : 2;
	for (int i = first; i < argc; i++) {
		const char *f = argv[i];
		if (!ends_with(f, ".json") && !ends_with(f, ".bin") &&
		    !ends_with(f, ".bin.xz"))
			return shm_opt_usage_error(&prog,
						   "%s: expected *.json, *.bin or "
						   "*.bin.xz",
						   f);
	}
	if (o.through_shm)
		return run_through_shm(argc, argv, first, &o);
	int rc = 0;
	for (int i = first; i < argc; i++) {
		const char *f = argv[i];
		if (ends_with(f, ".json"))
			rc |= run_battery(NULL, f, &o);
		else
			rc |= run_workload(f, &o);
	}
	return rc;
}

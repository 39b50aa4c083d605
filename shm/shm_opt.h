/*
 * shm_opt: the command lines of every shmex program, from one table each.
 *
 * A program describes its options once, as an array of struct shm_opt:
 * name, argument, help, range or choices, and where the value goes.  From
 * that array shm_opt_parse builds the getopt_long table, parses, checks
 * every value against its range (strict decimals: "12x", "", " 12", "+12",
 * "-1" and out-of-range values are usage errors, never clamped or wrapped)
 * and shm_opt_usage prints --help with each option's range and default
 * (read from the destination before parsing, so the default shown is the
 * one used).  Every program gets -h/--help (stdout, exit 0), --version and
 * the same usage-error form: one line naming the option, the value and
 * what is valid, then a pointer to --help, exit status 2.
 *
 * The exchange's settings (shm_settings.h) become options with
 * shm_opt_settings, so the supervisor's options, ranges and defaults are
 * the settings table itself.
 */
#ifndef SHMEX_SHM_OPT_H
#define SHMEX_SHM_OPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "shm/shm_settings.h"

/* The tools' version, printed by --version next to SHM_LAYOUT_VERSION. */
#define SHMEX_VERSION "0.2.0"

enum shm_opt_type {
	SHM_OPT_FLAG = 0,     /* no argument; dst: bool */
	SHM_OPT_NUM = 1,      /* decimal in [min, max]; dst: uint64_t */
	SHM_OPT_POW2 = 2,     /* as NUM, and a power of two */
	SHM_OPT_STR = 3,      /* any string; dst: const char * */
	SHM_OPT_CHOICE = 4,   /* one of choices[]; dst: uint64_t, its index */
	SHM_OPT_UFLAG = 5,    /* no argument; dst: uint64_t, set to 1 */
	SHM_OPT_INSTANCE = 6, /* an instance name (shm_instance_name_valid),
			       * a usage error otherwise; dst: const char * */
};

struct shm_opt {
	const char *name; /* long name, without "--" */
	char key;         /* short option, 0 for none */
	enum shm_opt_type type;
	const char *arg;            /* metavariable in --help ("N", "MS") */
	const char *help;           /* one sentence, no default or range */
	uint64_t min, max;          /* NUM, POW2 */
	const char *const *choices; /* CHOICE: NULL-terminated */
	void *dst;
	bool *given;       /* optional: set when the option is seen */
	bool required;     /* a usage error when absent */
	bool show_default; /* print "default X" from dst in --help */
};

struct shm_opt_prog {
	const char *name;     /* "shmex-matcher" */
	const char *synopsis; /* after the name: "--instance NAME ..." */
	const char *about;    /* what the program does (lines) */
	const struct shm_opt *opts;
	size_t nopts;
	int min_args, max_args; /* operands allowed (max < 0: any) */
	const char *operands;   /* extra --help text about operands */
};

enum shm_opt_result {
	SHM_OPT_RUN = 0,   /* parsed: go on */
	SHM_OPT_EXIT = 1,  /* --help or --version printed: exit 0 */
	SHM_OPT_USAGE = 2, /* a usage error was printed: exit 2 */
};

/* Parses argv.  *first gets the index of the first operand (operands are
 * argv[*first .. argc-1]; getopt permutes them to the end). */
enum shm_opt_result shm_opt_parse(const struct shm_opt_prog *p, int argc, char **argv,
				  int *first) __attribute__((warn_unused_result));

/* --help text on f. */
void shm_opt_usage(const struct shm_opt_prog *p, FILE *f);

/* A usage error in the standard form (for checks across options). */
enum shm_opt_result shm_opt_usage_error(const struct shm_opt_prog *p, const char *fmt,
					...) __attribute__((format(printf, 2, 3)));

/* Fills out[0 .. SHM_SETTINGS_COUNT-1] with one option per setting,
 * writing into s (which holds the defaults shown by --help). */
void shm_opt_settings(struct shm_opt *out, struct shm_settings *s);

/* Every program's --version line on f:
 *   "<name> <SHMEX_VERSION>, shared-memory layout <N> (signature <hex>)" */
void shm_opt_version(FILE *f, const char *name);

/* Parses a decimal unsigned integer (digits only) in [min, max].  Returns
 * 0, -EINVAL (s NULL, empty, not all digits) or -ERANGE (above UINT64_MAX
 * or outside [min, max]); *out is written only on success. */
int shm_opt_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
	__attribute__((warn_unused_result));

/* Same for uint32_t. */
int shm_opt_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out)
	__attribute__((warn_unused_result));

#endif

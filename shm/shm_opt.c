/*
 * shm_opt: table-driven command lines (contract in shm_opt.h).
 *
 * Why not strtoull alone for numbers: it takes leading blanks, a sign
 * ("-1" wraps to a huge value) and stops silently at trailing junk.  So
 * the first character must be a digit, the end pointer must reach the
 * terminator, and overflow (errno ERANGE) is an error like any other
 * out-of-range value.
 *
 * The getopt_long table is built on the stack from the program's table
 * (long options get the codes 256 + index), so the two can never
 * disagree.  Not reentrant (getopt's globals); programs call it once.
 */
#include "shm/shm_opt.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "shm/shm_instance.h"
#include "shm/shm_region.h"

#define OPT_MAX 96
#define CODE_HELP 1000
#define CODE_VERSION 1001
#define HELP_COL 24
#define LINE_WIDTH 79

void shm_opt_version(FILE *f, const char *name)
{
	fprintf(f, "%s %s, shared-memory layout %u (signature %016" PRIx64 ")\n", name,
		SHMEX_VERSION, SHM_LAYOUT_VERSION, shm_layout_signature());
}

int shm_opt_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (*end != '\0')
		return -EINVAL;
	if (errno == ERANGE || v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

int shm_opt_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
	uint64_t v;
	int rc = shm_opt_u64(s, min, max, &v);
	if (rc == 0)
		*out = (uint32_t)v;
	return rc;
}

enum shm_opt_result shm_opt_usage_error(const struct shm_opt_prog *p, const char *fmt,
					...)
{
	va_list ap;
	fprintf(stderr, "%s: ", p->name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '%s --help' for more information.\n", p->name);
	return SHM_OPT_USAGE;
}

/* "a, b or c" of a choice list into buf. */
static void choice_list(const char *const *c, char *buf, size_t len)
{
	size_t at = 0;
	buf[0] = 0;
	for (size_t i = 0; c[i]; i++) {
		const char *sep = i == 0 ? "" : c[i + 1] ? ", " : " or ";
		int n = snprintf(buf + at, len - at, "%s%s", sep, c[i]);
		if (n < 0 || (size_t)n >= len - at)
			break;
		at += (size_t)n;
	}
}

/* Parses one value into its destination; a usage error names why. */
static enum shm_opt_result take(const struct shm_opt_prog *p, const struct shm_opt *o,
				const char *val)
{
	uint64_t v = 0;
	switch (o->type) {
	case SHM_OPT_FLAG:
		*(bool *)o->dst = true;
		break;
	case SHM_OPT_UFLAG:
		*(uint64_t *)o->dst = 1;
		break;
	case SHM_OPT_STR:
		*(const char **)o->dst = val;
		break;
	case SHM_OPT_INSTANCE:
		/* Every program refuses a bad name the same way: exit 2. */
		if (!shm_instance_name_valid(val))
			return shm_opt_usage_error(
				p,
				"--%s: invalid name '%s' (1..%u of A-Z "
				"a-z 0-9 _ -)",
				o->name, val, SHM_INSTANCE_MAX);
		*(const char **)o->dst = val;
		break;
	case SHM_OPT_CHOICE:
		for (size_t i = 0; o->choices[i]; i++) {
			if (strcmp(o->choices[i], val) == 0) {
				*(uint64_t *)o->dst = i;
				goto given;
			}
		}
		{
			char list[256];
			choice_list(o->choices, list, sizeof(list));
			return shm_opt_usage_error(p, "--%s: '%s' is not one of %s",
						   o->name, val, list);
		}
	case SHM_OPT_NUM:
	case SHM_OPT_POW2: {
		int rc = shm_opt_u64(val, o->min, o->max, &v);
		if (rc == -EINVAL)
			return shm_opt_usage_error(p,
						   "--%s: '%s' is not a decimal number "
						   "(valid: %" PRIu64 "..%" PRIu64 ")",
						   o->name, val, o->min, o->max);
		if (rc)
			return shm_opt_usage_error(
				p,
				"--%s: %s is out of range (valid: %" PRIu64 "..%" PRIu64
				")",
				o->name, val, o->min, o->max);
		if (o->type == SHM_OPT_POW2 && (v & (v - 1)))
			return shm_opt_usage_error(p,
						   "--%s: %s is not a power of two "
						   "(valid: %" PRIu64 "..%" PRIu64 ")",
						   o->name, val, o->min, o->max);
		*(uint64_t *)o->dst = v;
		break;
	}
	}
given:
	if (o->given)
		*o->given = true;
	return SHM_OPT_RUN;
}

enum shm_opt_result shm_opt_parse(const struct shm_opt_prog *p, int argc, char **argv,
				  int *first)
{
	struct option lo[OPT_MAX + 3];
	char shorts[2 * OPT_MAX + 4];
	size_t ns = 0, n = p->nopts < OPT_MAX ? p->nopts : OPT_MAX;
	bool seen[OPT_MAX] = {false};
	shorts[ns++] = ':'; /* missing arguments reported as ':' */
	shorts[ns++] = 'h';
	for (size_t i = 0; i < n; i++) {
		const struct shm_opt *o = &p->opts[i];
		bool has_arg = o->type != SHM_OPT_FLAG && o->type != SHM_OPT_UFLAG;
		lo[i] = (struct option){o->name,
					has_arg ? required_argument : no_argument, NULL,
					256 + (int)i};
		if (o->key) {
			shorts[ns++] = o->key;
			if (has_arg)
				shorts[ns++] = ':';
		}
	}
	shorts[ns] = 0;
	lo[n] = (struct option){"help", no_argument, NULL, CODE_HELP};
	lo[n + 1] = (struct option){"version", no_argument, NULL, CODE_VERSION};
	lo[n + 2] = (struct option){NULL, 0, NULL, 0};
	opterr = 0;
	optind = 1;
	int c;
	while ((c = getopt_long(argc, argv, shorts, lo, NULL)) != -1) {
		if (c == 'h' || c == CODE_HELP) {
			shm_opt_usage(p, stdout);
			return SHM_OPT_EXIT;
		}
		if (c == CODE_VERSION) {
			char name[128];
			snprintf(name, sizeof(name),
				 strcmp(p->name, "shmex") ? "%s (shmex)" : "%s", p->name);
			shm_opt_version(stdout, name);
			return SHM_OPT_EXIT;
		}
		if (c == ':')
			return shm_opt_usage_error(p, "%s needs a value",
						   argv[optind - 1]);
		if (c == '?') {
			if (optopt)
				return shm_opt_usage_error(p, "unknown option '-%c'",
							   optopt);
			return shm_opt_usage_error(p, "unknown option '%s'",
						   argv[optind - 1]);
		}
		size_t i = n;
		if (c >= 256 && (size_t)(c - 256) < n) {
			i = (size_t)(c - 256);
		} else {
			for (size_t k = 0; k < n; k++)
				if (p->opts[k].key == c)
					i = k;
		}
		if (i == n)
			return shm_opt_usage_error(p, "unknown option");
		seen[i] = true;
		enum shm_opt_result r = take(p, &p->opts[i], optarg);
		if (r != SHM_OPT_RUN)
			return r;
	}
	for (size_t i = 0; i < n; i++)
		if (p->opts[i].required && !seen[i])
			return shm_opt_usage_error(p, "--%s is required",
						   p->opts[i].name);
	int nargs = argc - optind;
	if (nargs < p->min_args)
		return shm_opt_usage_error(p, "missing operand%s",
					   p->min_args > 1 ? "s" : "");
	if (p->max_args >= 0 && nargs > p->max_args)
		return shm_opt_usage_error(p, "unexpected argument '%s'",
					   argv[optind + p->max_args]);
	if (first)
		*first = optind;
	return SHM_OPT_RUN;
}

/* Writes text at column col of f, wrapped at LINE_WIDTH; the cursor is at
 * column `at` when called. */
static void wrap(FILE *f, const char *text, int at, int col)
{
	const char *w = text;
	while (*w) {
		while (*w == ' ')
			w++;
		const char *e = w;
		while (*e && *e != ' ')
			e++;
		int len = (int)(e - w);
		if (at > col && at + 1 + len > LINE_WIDTH) {
			fprintf(f, "\n%*s", col, "");
			at = col;
		} else if (at > col) {
			fputc(' ', f);
			at++;
		}
		fprintf(f, "%.*s", len, w);
		at += len;
		w = e;
	}
	fputc('\n', f);
}

void shm_opt_usage(const struct shm_opt_prog *p, FILE *f)
{
	fprintf(f, "usage: %s %s\n", p->name, p->synopsis ? p->synopsis : "[options]");
	if (p->about)
		fprintf(f, "%s\n", p->about);
	fprintf(f, "\n");
	for (size_t i = 0; i < p->nopts; i++) {
		const struct shm_opt *o = &p->opts[i];
		char head[96], tail[320], list[256];
		int n = o->key ? snprintf(head, sizeof(head), "  -%c, --%s", o->key,
					  o->name)
			       : snprintf(head, sizeof(head), "      --%s", o->name);
		if (o->arg && n > 0 && (size_t)n < sizeof(head))
			snprintf(head + n, sizeof(head) - (size_t)n, " %s", o->arg);
		tail[0] = 0;
		switch (o->type) {
		case SHM_OPT_NUM:
		case SHM_OPT_POW2:
			if (o->show_default)
				snprintf(tail, sizeof(tail),
					 " (%" PRIu64 "..%" PRIu64 "%s; default %" PRIu64
					 ")",
					 o->min, o->max,
					 o->type == SHM_OPT_POW2 ? ", a power of two"
								 : "",
					 *(const uint64_t *)o->dst);
			else
				snprintf(tail, sizeof(tail),
					 " (%" PRIu64 "..%" PRIu64 ")", o->min, o->max);
			break;
		case SHM_OPT_CHOICE:
			choice_list(o->choices, list, sizeof(list));
			if (o->show_default)
				snprintf(tail, sizeof(tail), " (%s; default %s)", list,
					 o->choices[*(const uint64_t *)o->dst]);
			else
				snprintf(tail, sizeof(tail), " (%s)", list);
			break;
		case SHM_OPT_STR:
		case SHM_OPT_INSTANCE:
			if (o->show_default && *(const char *const *)o->dst)
				snprintf(tail, sizeof(tail), " (default %s)",
					 *(const char *const *)o->dst);
			break;
		default:
			break;
		}
		char text[768];
		snprintf(text, sizeof(text), "%s%s%s", o->help ? o->help : "", tail,
			 o->required ? " (required)" : "");
		int at = fprintf(f, "%s", head);
		if (at >= HELP_COL) {
			fprintf(f, "\n%*s", HELP_COL, "");
		} else {
			fprintf(f, "%*s", HELP_COL - at, "");
		}
		wrap(f, text, HELP_COL, HELP_COL);
	}
	fprintf(f, "%-*s%s\n%-*s%s\n", HELP_COL, "  -h, --help", "this help", HELP_COL,
		"      --version", "program and shared-memory layout versions");
	if (p->operands)
		fprintf(f, "\n%s\n", p->operands);
}

void shm_opt_settings(struct shm_opt *out, struct shm_settings *s)
{
	for (size_t i = 0; i < SHM_SETTINGS_COUNT; i++) {
		const struct shm_setting_desc *d = &shm_settings_desc[i];
		struct shm_opt *o = &out[i];
		memset(o, 0, sizeof(*o));
		o->name = d->option;
		o->arg = d->arg;
		o->help = d->help;
		o->min = d->min;
		o->max = d->max;
		o->dst = (char *)s + d->offset;
		o->show_default = true;
		switch (d->kind) {
		case SHM_SET_NUM:
			o->type = SHM_OPT_NUM;
			break;
		case SHM_SET_POW2:
			o->type = SHM_OPT_POW2;
			break;
		case SHM_SET_FLAG:
			o->type = SHM_OPT_UFLAG;
			o->show_default = false;
			break;
		case SHM_SET_STP:
			o->type = SHM_OPT_CHOICE;
			o->choices = shm_stp_names;
			break;
		case SHM_SET_SYNC:
			o->type = SHM_OPT_CHOICE;
			o->choices = shm_sync_names;
			break;
		}
	}
}

/*
 * The QuantCup 2011 engine.h API (init, destroy, limit, cancel) as global
 * functions over tests/qc.h, for the contest's unmodified autotester
 * test.c.  test.c includes "engine.c"; the Makefile builds it in
 * $(BUILD)/qc/, where engine.c is a one-line file that includes this
 * header.  Only that program includes it: the functions have the
 * contest's global names.
 */
#ifndef SHMEX_TESTS_QC_ENGINE_API_H
#define SHMEX_TESTS_QC_ENGINE_API_H

#include <stdio.h>
#include <stdlib.h>

#include "tests/qc.h"

void execution(t_execution exec);

static struct qc *qc_api;

static void qc_api_exec(void *ctx, const t_execution *x)
{
	(void)ctx;
	execution(*x);
}

void init(void)
{
	/* The contest's bound on live orders, and room for every id. */
	struct qc_cfg cfg = {
		.caps = {.symbols = 16,
			 .levels = 4096,
			 .orders = MAX_LIVE_ORDERS,
			 .fills = 2 * MAX_LIVE_ORDERS},
		.max_ids = MAX_LIVE_ORDERS,
	};
	if (qc_open(&qc_api, &cfg, qc_api_exec, NULL) != 0) {
		fprintf(stderr, "qc: cannot open a core\n");
		exit(1);
	}
}

void destroy(void)
{
	qc_close(qc_api);
	qc_api = NULL;
}

t_orderid limit(t_order order)
{
	return qc_limit(qc_api, &order);
}

void cancel(t_orderid orderid)
{
	qc_cancel(qc_api, orderid);
}

#endif

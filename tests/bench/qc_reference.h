/*
 * The QuantCup 2011 reference engine under prefixed names
 * (tests/bench/qc_reference.c).  qcref_execution is the caller's.
 */
#ifndef SHMEX_TESTS_BENCH_QC_REFERENCE_H
#define SHMEX_TESTS_BENCH_QC_REFERENCE_H

#include "tests/qc.h"

void qcref_init(void);
void qcref_destroy(void);
t_orderid qcref_limit(t_order order);
void qcref_cancel(t_orderid orderid);
void qcref_execution(t_execution exec);

#endif

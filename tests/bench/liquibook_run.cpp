// shmex-bench-liquibook: Liquibook's insert benchmark
// (third_party/liquibook/test/perf/pt_order_book.cpp), timed once around
// the whole loop (this thread's CPU time: the machines are shared) instead
// of calling clock() after every add.
//
//   shmex-bench-liquibook ORDERS SEED RUNS
//
// The stream is the original's: srand(SEED), then for order i a buy when
// i is even at 1880 + rand() % 10, else a sell at 1884 + rand() % 10,
// quantity (rand() % 10 + 1) * 100; shmex-bench anchors generates the same
// stream with the same libc and feeds it to shmex's core.  The orders are
// allocated before the clock starts; each run uses a new book.  Prints
//   liquibook depth_inserts_per_s=<n> nodepth_inserts_per_s=<n> remain=<n>
// (SimpleOrderBook<5>, the original's first case, and OrderBook without
// depth, its fastest; best of RUNS each; remain = resting orders after
// the last run).
#include <simple/simple_order_book.h>
#include <book/types.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <vector>

using namespace liquibook;

static double now_s()
{
	timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

template <class Book>
static double run_once(unsigned n, unsigned seed, size_t *remain)
{
	srand(seed);
	std::vector<simple::SimpleOrder *> orders(n);
	for (unsigned i = 0; i < n; ++i) {
		bool is_buy = (i % 2) == 0;
		unsigned delta = is_buy ? 1880 : 1884;
		book::Price price = (rand() % 10) + delta;
		book::Quantity qty = ((rand() % 10) + 1) * 100;
		orders[i] = new simple::SimpleOrder(is_buy, price, qty);
	}
	double rate;
	{
		Book b;
		double t0 = now_s();
		for (unsigned i = 0; i < n; ++i)
			b.add(orders[i]);
		double t = now_s() - t0;
		rate = n / t;
		*remain = b.bids().size() + b.asks().size();
	}
	for (unsigned i = 0; i < n; ++i)
		delete orders[i];
	return rate;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: shmex-bench-liquibook ORDERS SEED RUNS\n");
		return 2;
	}
	unsigned n = unsigned(strtoul(argv[1], nullptr, 10));
	unsigned seed = unsigned(strtoul(argv[2], nullptr, 10));
	unsigned runs = unsigned(strtoul(argv[3], nullptr, 10));
	if (n == 0 || runs == 0) {
		fprintf(stderr, "shmex-bench-liquibook: ORDERS and RUNS must be > 0\n");
		return 2;
	}
	double depth = 0, nodepth = 0;
	size_t remain = 0;
	for (unsigned r = 0; r < runs; ++r) {
		double a = run_once<simple::SimpleOrderBook<5> >(n, seed, &remain);
		double b = run_once<book::OrderBook<simple::SimpleOrder *> >(n, seed, &remain);
		if (a > depth)
			depth = a;
		if (b > nodepth)
			nodepth = b;
	}
	printf("liquibook depth_inserts_per_s=%.0f nodepth_inserts_per_s=%.0f remain=%zu\n",
	       depth, nodepth, remain);
	return 0;
}

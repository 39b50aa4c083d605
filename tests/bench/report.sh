#!/bin/sh
# make bench-report: measures and draws the figures of docs/performance.md.
#
#   tests/bench/report.sh BIN_DIR OUT_DIR
#
# 1. shmex-bench scaling over 1..N CPUs of this machine (N from its CPU
#    list) plus 2N (more shards than CPUs), REPS repetitions per point:
#    shmex matchers fed from pre-filled rings against T threads around one
#    book behind one mutex and against P processes sharing one book in
#    shared memory behind one process-shared lock (the global-lock
#    server).  -> scaling.csv, scaling.png
# 2. shmex-bench e2e (TCP, load generator included) under taskset over the
#    first 1..N CPUs, REPS repetitions: throughput, p50, p99, and the load
#    generator's share of the CPU.  -> e2e.csv, e2e-throughput.png,
#    e2e-latency.png
# 3. The latency distribution of one e2e run on all CPUs, 1 gateway x 1
#    shard and 2 x 2.  -> latency-cdf.png
# Then report.txt with the tables (means and standard errors) and the
# machine.  The same command on a 16-core machine draws the 16-core curves.
#
# Environment: REPS (default 3), OPS (orders per shard of the scaling
# runs, default 500000), E2E_SECONDS (default 2), PLOT_ONLY=1 (draw again
# from the data files of the last run, measure nothing).
set -eu
bin=${1:?usage: report.sh BIN_DIR OUT_DIR}
out=${2:?usage: report.sh BIN_DIR OUT_DIR}
REPS=${REPS:-3}
OPS=${OPS:-500000}
E2E_SECONDS=${E2E_SECONDS:-2}
command -v gnuplot >/dev/null || {
	echo "bench-report: gnuplot not found (Debian: apt-get install gnuplot-nox)" >&2
	exit 1
}
command -v taskset >/dev/null || {
	echo "bench-report: taskset not found (Debian: util-linux)" >&2
	exit 1
}
mkdir -p "$out"
# The e2e exchanges journal into a scratch directory, removed at the end.
SHMEX_TEST_DATA=$(mktemp -d "${TMPDIR:-/tmp}/shmex-bench-report.XXXXXX")
export SHMEX_TEST_DATA
trap 'rm -rf "$SHMEX_TEST_DATA"' EXIT
# The CPUs this process may use, as a list: "0 1 2 ...".
cpus=$(taskset -pc $$ | sed 's/.*: //' | tr ',' '\n' |
	awk -F- '{ if (NF == 2) for (i = $1; i <= $2; i++) print i; else print $1 }' | tr '\n' ' ')
ncpu=$(echo $cpus | wc -w)
first() { echo $cpus | tr ' ' '\n' | head -n "$1" | paste -sd, -; }
points=$(seq -s, 1 "$ncpu"),$((2 * ncpu))

measure() {
echo "bench-report: CPUs $cpus; scaling points $points; $REPS repetitions"
{
	echo "machine: $(uname -srm); $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'); CPUs: $cpus"
	echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "REPS=$REPS OPS=$OPS E2E_SECONDS=$E2E_SECONDS"
} >"$out/machine.txt"
# ---- 1. scaling ----
rm -f "$out/scaling.csv"
"$bin/shmex-bench" scaling --shards "$points" --reps "$REPS" --ops "$OPS" \
	--cpus "$(first "$ncpu")" --csv "$out/scaling.csv" 2>/dev/null | tee "$out/scaling.txt"

# mean, standard error and mean CPUs used per (design, n): "n mean se cpus"
summ() { # file design
	awk -F, -v d="$2" '$1 == d { n[$2]++; s[$2] += $4; q[$2] += $4 * $4; c[$2] += $5 }
	END { for (k in n) { m = s[k] / n[k]; v = n[k] > 1 ? (q[k] - n[k] * m * m) / (n[k] - 1) : 0;
	      if (v < 0) v = 0; printf "%d %.0f %.0f %.2f\n", k, m, sqrt(v / n[k]), c[k] / n[k] } }' "$1" |
		sort -n
}
summ "$out/scaling.csv" shmex >"$out/scaling-shmex.dat"
summ "$out/scaling.csv" mutex >"$out/scaling-mutex.dat"
summ "$out/scaling.csv" global >"$out/scaling-global.dat"

# ---- 2. e2e over 1..N CPUs ----
echo "cpus,rep,req_per_s,p50_us,p99_us,gen_cpu_pct" >"$out/e2e.csv"
# Interleaved like the scaling runs: every CPU count once, then again.
r=0
while [ "$r" -lt "$REPS" ]; do
	c=1
	while [ "$c" -le "$ncpu" ]; do
		line=$(taskset -c "$(first "$c")" "$bin/shmex-bench" e2e --only defaults \
			--seconds "$E2E_SECONDS" 2>/dev/null | grep '^RESULT e2e') || line=""
		v() { echo "$line" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
		echo "$c,$r,$(v req_per_s),$(v p50_us),$(v p99_us),$(v gen_cpu_pct)" >>"$out/e2e.csv"
		echo "bench-report: e2e on $c CPU(s), run $r: $line"
		c=$((c + 1))
	done
	r=$((r + 1))
done
awk -F, 'NR > 1 { n[$1]++; for (i = 3; i <= 6; i++) { s[$1, i] += $i; q[$1, i] += $i * $i } }
END { for (k in n) { printf "%d", k; for (i = 3; i <= 6; i++) { m = s[k, i] / n[k];
      v = n[k] > 1 ? (q[k, i] - n[k] * m * m) / (n[k] - 1) : 0; if (v < 0) v = 0;
      printf " %.1f %.1f", m, sqrt(v / n[k]) } printf "\n" } }' "$out/e2e.csv" |
	sort -n >"$out/e2e.dat"

# ---- 3. latency distribution ----
"$bin/shmex-bench" e2e --seconds "$E2E_SECONDS" --cdf-out "$out/latency" 2>/dev/null |
	grep '^RESULT' | tee "$out/e2e-cdf.txt"

}
# PLOT_ONLY=1 redraws the plots and tables from the data of the last run.
if [ -n "${PLOT_ONLY:-}" ]; then
	eval "$(sed -n 's/^REPS=\([0-9]*\) OPS=\([0-9]*\) E2E_SECONDS=\([0-9.]*\)$/REPS=\1 OPS=\2 E2E_SECONDS=\3/p' "$out/machine.txt")"
else
	measure
fi

# ---- plots ----
gnuplot <<EOF
set terminal pngcairo size 900,560 font "sans,11"
set grid
set key top left
set output "$out/scaling.png"
set title "Matcher throughput, pre-filled rings ($ncpu CPUs; points beyond $ncpu oversubscribe)"
set xlabel "shards (shmex) / threads (mutex book) / processes (global lock)"
set ylabel "orders per second"
set xrange [0.5:$((2 * ncpu)) + 0.5]
set yrange [0:*]
set xtics 1
plot "$out/scaling-shmex.dat" using 1:2:3 with yerrorlines lw 2 pt 7 title "shmex: one matcher process per shard", \
     "$out/scaling-mutex.dat" using 1:2:3 with yerrorlines lw 2 pt 5 title "one book behind one mutex, T threads", \
     "$out/scaling-global.dat" using 1:2:3 with yerrorlines lw 2 pt 9 title "global-lock server: one book in shm, P processes, one lock"
set output "$out/e2e-throughput.png"
set title "End to end over TCP (2 gateways x 2 shards, load generator on the same CPUs)"
set xlabel "CPUs (taskset)"
set ylabel "requests per second"
set xrange [0.5:$ncpu + 0.5]
plot "$out/e2e.dat" using 1:2:3 with yerrorlines lw 2 pt 7 title "requests/s"
set output "$out/e2e-latency.png"
set ylabel "microseconds"
set title "End to end latency over TCP (32 connections, closed loop)"
plot "$out/e2e.dat" using 1:4:5 with yerrorlines lw 2 pt 7 title "p50", \
     "$out/e2e.dat" using 1:6:7 with yerrorlines lw 2 pt 5 title "p99"
set output "$out/latency-cdf.png"
set title "Latency distribution over TCP, all CPUs (32 connections)"
set xlabel "microseconds (log)"
set ylabel "fraction of requests"
set logscale x
set xtics autofreq
set format x "%g"
set xrange [*:*]
set yrange [0:1]
set key bottom right
plot "$out/latency-1x1.dat" using 1:2 with lines lw 2 title "1 gateway x 1 shard", \
     "$out/latency-2x2.dat" using 1:2 with lines lw 2 title "2 gateways x 2 shards"
EOF

# ---- tables ----
{
	cat "$out/machine.txt"
	echo
	echo "scaling (orders/s, mean +- standard error of $REPS runs, $OPS orders per shard/thread)"
	echo "n shmex se cpus mutex se cpus global se cpus"
	paste -d' ' "$out/scaling-shmex.dat" "$out/scaling-mutex.dat" "$out/scaling-global.dat" |
		awk '{ print $1, $2, $3, $4, $6, $7, $8, $10, $11, $12 }'
	echo
	echo "e2e over TCP under taskset (mean, se of $REPS runs)"
	echo "cpus req/s se p50_us se p99_us se gen_cpu_pct se"
	cat "$out/e2e.dat"
	echo
	grep '^RESULT' "$out/scaling.txt"
	cat "$out/e2e-cdf.txt"
} | tee "$out/report.txt"

#!/bin/sh
# Runs each check test program given as an argument, shows its progress and
# prints one closing line "N passed, N failed" over all of them.
# Exit status: 0 when every test passed.
passed=0
failed=0
bad_progs=""
# check's lines for the failed checks, printed again at the end: a log cut
# to its last lines (a CI summary) still says what failed and where.
bad_lines=""
# Every instance a test creates is named test<tag>-..., so objects of other
# runs (another checkout testing at the same time) are never counted here.
SHMEX_TEST_TAG=${SHMEX_TEST_TAG:-$$}
export SHMEX_TEST_TAG
mine="^shmex\.test${SHMEX_TEST_TAG}-"
# Data directories of the exchanges the tests start (exchange_start).
SHMEX_TEST_DATA=$(mktemp -d "${TMPDIR:-/tmp}/shmex-test-data.XXXXXX")
export SHMEX_TEST_DATA
trap 'rm -rf "$SHMEX_TEST_DATA"' EXIT
for prog in "$@"; do
	name=$(basename "$prog")
	start=$(date +%s)
	out=$("$prog" 2>&1)
	rc=$?
	secs=$(( $(date +%s) - start ))
	line=$(printf '%s\n' "$out" | grep -E '^[0-9]+%: Checks: ' | tail -n 1)
	if [ -n "$line" ]; then
		n=$(echo "$line" | sed -E 's/.*Checks: ([0-9]+).*/\1/')
		f=$(echo "$line" | sed -E 's/.*Failures: ([0-9]+).*/\1/')
		e=$(echo "$line" | sed -E 's/.*Errors: ([0-9]+).*/\1/')
		passed=$((passed + n - f - e))
		failed=$((failed + f + e))
	else
		failed=$((failed + 1))
	fi
	if [ $rc -ne 0 ] || [ -z "$line" ]; then
		bad_progs="$bad_progs $name"
		printf '%s\n' "$out"
		found=$(printf '%s\n' "$out" | grep -E ':[FE]:' | head -n 5 | cut -c1-400)
		bad_lines="$bad_lines${found:-$name: exit $rc, no failed check named}
"
	fi
	printf '%-28s %s (%ss)\n' "$name" "${line:-no check summary (exit $rc)}" "$secs"
done
leftover=$(ls /dev/shm 2>/dev/null | grep "$mine" || true)
if [ -n "$leftover" ]; then
	echo "run-tests: shared-memory objects left behind in /dev/shm:" $leftover
	failed=$((failed + 1))
fi
if [ -n "$bad_progs" ]; then
	printf 'failed checks:\n%s' "$bad_lines"
	echo "failing:$bad_progs"
fi
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]

#!/bin/sh
# Checks the folder rules of docs/architecture.md on the sources as they
# are: every #include "..." in a folder names a header of that folder or of
# a folder it may use, and nothing in the build or the tests reads the
# specification folder outside the repository.  Prints each violation;
# exit status 1 when there is one.
cd "$(dirname "$0")/.." || exit 2
out=$(mktemp) || exit 2
trap 'rm -f "$out"' EXIT
# folder | what it may include besides its own headers (folders or headers)
while IFS='|' read -r dir allowed; do
	for f in "$dir"/*.c "$dir"/*.h "$dir"/*.cpp; do
		[ -f "$f" ] || continue
		sed -n 's/^#include "\(.*\)"$/\1/p' "$f" | while read -r inc; do
			idir=$(dirname "$inc")
			ok=0
			[ "$idir" = "$dir" ] && ok=1
			for a in $allowed; do
				if [ "$idir" = "$a" ] || [ "$inc" = "$a" ]; then ok=1; fi
			done
			[ $ok -eq 1 ] || echo "layout-check: $f includes $inc;" \
				"$dir may include its own headers and: ${allowed:-nothing else}" >>"$out"
		done
	done
done <<'RULES'
shm|
shm/query|shm
shm/journal|shm
engine|shm
engine/replay|engine shm
gateway|shm
gateway/fix|gateway shm
gateway/supervisor|shm gateway/gw_listen.h
RULES
if command -v git >/dev/null && git rev-parse --git-dir >/dev/null 2>&1; then
	git grep -n '\.\./shared' -- Makefile '.ci/*' 'tests/*' '*.c' '*.h' '*.cpp' \
		':!tests/layout-check.sh' 2>/dev/null |
		sed 's/^/layout-check: reads outside the repository: /' >>"$out"
fi
if [ -s "$out" ]; then
	cat "$out"
	exit 1
fi
echo "layout-check: every folder includes only what it may use"

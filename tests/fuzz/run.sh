#!/usr/bin/env bash
# Fuzz ext2 mount and lookup for a bounded time: tests/fuzz/run.sh SECONDS
# The committed corpus seeds the run; new inputs go to a scratch copy.
# Prints "1 passed, 0 failed" or "0 passed, 1 failed" (a crash, hang or
# sanitizer report).
set -u
cd "$(dirname "$0")/../.."
secs=${1:-60}
bin=build/fuzz/fuzz_ext2
if ! command -v clang >/dev/null 2>&1; then
	echo "fuzz: skipped (no clang)"
	exit 0
fi
make -s "$bin" || { echo "0 passed, 1 failed"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp tests/fuzz/corpus/* "$work/"
export ASAN_OPTIONS="${ASAN_OPTIONS:-allow_user_segv_handler=1:detect_leaks=0}"
if "$bin" -max_total_time="$secs" -timeout=20 -max_len=1048576 -rss_limit_mb=4096 \
	-artifact_prefix="$work/" "$work" >"$work/log" 2>&1; then
	tail -n 3 "$work/log"
	echo "1 passed, 0 failed"
else
	tail -n 60 "$work/log"
	for a in "$work"/crash-* "$work"/timeout-* "$work"/leak-*; do
		[ -e "$a" ] && cp "$a" tests/fuzz/ && echo "fuzz: kept $(basename "$a") in tests/fuzz/"
	done
	echo "0 passed, 1 failed"
	exit 1
fi

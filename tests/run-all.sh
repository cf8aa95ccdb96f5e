#!/usr/bin/env bash
# Runs the test binaries of every build variant and adds up the results.
# The last line is "N passed, N failed"; skipped tests (TEST_SKIP, e.g. no
# loop devices for the kernel interop tests) are added up on the line
# before it, "N skipped", when there are any.
set -u
cd "$(dirname "$0")/.."
total_pass=0; total_fail=0; total_skip=0
run() {
	local label=$1; shift
	echo "=== $label: $*"
	local out
	out=$(mktemp)
	"$@" 2> >(tee -a "$out" >&2) | tee -a "$out"
	local line
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -n 1)
	local skip
	skip=$(grep -E '^[0-9]+ skipped$' "$out" | tail -n 1)
	skip=${skip%% skipped}
	rm -f "$out"
	if [ -z "$line" ]; then
		echo "$label: runner printed no result line"
		total_fail=$((total_fail + 1))
		return
	fi
	local p f
	p=${line%% passed*}; f=${line#*, }; f=${f%% failed*}
	total_pass=$((total_pass + p)); total_fail=$((total_fail + f))
	total_skip=$((total_skip + ${skip:-0}))
	echo "=== $label: $line${skip:+, $skip skipped}"
}
export ASAN_OPTIONS="${ASAN_OPTIONS:-allow_user_segv_handler=1:detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:history_size=7:suppressions=$PWD/tests/tsan.supp}"
run "plain" build/rel/test-runner
run "asan+ubsan" build/asan/test-runner
run "tsan (threaded tests)" build/tsan/test-runner --threaded-only
run "faulting-copy build (deadlock tests must hang)" build/fault/test-runner --expect-hang --timeout 10
replay_corpus() {
	build/asan/fuzz_ext2_replay tests/fuzz/corpus/* && echo "1 passed, 0 failed" || echo "0 passed, 1 failed"
}
run "ext2 fuzz corpus replay (asan)" replay_corpus
run "ext2 fuzzing, bounded (libFuzzer)" tests/fuzz/run.sh "${FUZZ_SECONDS:-60}"
# The FUSE suite runs over both transports where this kernel has FUSE over
# io_uring and this user may switch it on (root): once with requests through
# io_uring (enable_uring=Y for the run, put back after), with the server
# built under AddressSanitizer+UBSan, once through /dev/fuse
# (PAGEWRIGHT_FUSE_URING=0).  Elsewhere: /dev/fuse only.
uring_param=/sys/module/fuse/parameters/enable_uring
if [ -w "$uring_param" ]; then
	uring_was=$(cat "$uring_param")
	if echo Y >"$uring_param" 2>/dev/null; then
		run "FUSE over io_uring, server under asan+ubsan: pagewright mount" \
			env PW_TEST_TRANSPORT=io_uring PW_SERVER="$PWD/build/asan/pagewright" \
			ASAN_OPTIONS="allow_user_segv_handler=1:detect_leaks=0:abort_on_error=1" \
			tests/fuse/run.sh
	fi
	echo "$uring_was" >"$uring_param" 2>/dev/null
fi
run "FUSE over /dev/fuse: pagewright mount, driven from another process" \
	env PAGEWRIGHT_FUSE_URING=0 PW_TEST_TRANSPORT=/dev/fuse tests/fuse/run.sh
echo
[ "$total_skip" -eq 0 ] || echo "$total_skip skipped"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]

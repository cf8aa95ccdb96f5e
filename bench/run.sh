#!/bin/sh
# bench/run.sh - build the benchmark programs and run them all, in order,
# printing every table.  This is the run the README cites.
#
#   bench/run.sh                 build (make bench) and run everything
#   bench/run.sh write mmap      run only bench_write and bench_mmap
#
# Environment:
#   BENCH_BATCH_MS   batch length for bench_write / bench_read (default 40)
#   TMPDIR           where bench_legacy makes its host directory and
#                    bench_ext2 its images (/tmp)
#   BENCH_EXT2_REPS  repetitions of bench_ext2 (default 3)
#   BENCH_WB_MB, BENCH_WB_REPS, BENCH_WB_SYNC_MB   bench_writeback (1024, 3, 64)
#   BENCH_RECLAIM_REPS                              bench_reclaim (5)
#   BENCH_FSYNC_MB, BENCH_FSYNC_DIRTY, BENCH_FSYNC_REPS   bench_fsync (256, 16, 15)
#
# bench_ext2 and bench_mount need root (loop mounts, FUSE, drop_caches),
# mke2fs/e2fsck and fuse2fs (Debian: apt-get install fuse2fs); a missing
# contender is printed as skipped, not an error.  bench_mount also runs
# build/pagewright (BENCH_MOUNT_REPS, default 3), and switches the fuse
# module's enable_uring on for its run where the kernel has it (put back
# at the end; BENCH_MOUNT_URING=0 leaves it alone).
#
# Each program measures its own references (memcpy, the kernel) in the same
# run and prints ratios against them; there are no pass/fail thresholds.
# Run it on an otherwise idle machine: the banner of each program prints the
# load average so a reader can tell.  bench_writeback and bench_reclaim
# write about 2.5 GiB and 0.8 GiB under $TMPDIR and need the disk to
# themselves.
set -eu
cd "$(dirname "$0")/.."

make bench >/dev/null

progs=${*:-"write read mmap legacy meta writeback fsync reclaim ext2 mount"}
start=$(date +%s)
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
	rev="$rev + uncommitted changes"
fi
echo "pagewright benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $rev"
echo
for p in $progs; do
	"build/bench/bench_$p"
	echo
done
echo "total: $(( $(date +%s) - start )) s; load at the end: $(cat /proc/loadavg)"

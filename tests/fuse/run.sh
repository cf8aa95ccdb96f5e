#!/usr/bin/env bash
# tests/fuse/run.sh - `pagewright mount` end to end.
#
# Mounts ramfs, hostfs and ext2 images with build/pagewright, drives them
# from a separate process (build/fuse-check: ordinary system calls,
# mappings included), unmounts with fusermount3 -u and checks the server
# exited 0, the host files, and the images with e2fsck -fn.  The random
# exerciser (build/fuse-random) on ext2 and hostfs, checked against its
# oracle after the unmount too.  Then the
# daemon mode, the one-line errors, a read-only mount, SIGTERM with files
# open, unmount while busy, pagewright stat, sync and umount (a busy mount, a
# killed server, a failed write-back), the lock on the image, pagewright
# demo, and kill -9 of the server in the middle of writes (e2fsck -fy
# repairs, e2fsck -fn is then clean, fsync'd files are intact).
#
# Skipped (with a message and "0 passed, 0 failed") where /dev/fuse or
# fusermount3 is missing or this user may not mount.  Last line:
# "N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
PW=${PW_SERVER:-$PWD/build/pagewright}   # PW_SERVER: another build of it
CHECK=$PWD/build/fuse-check
pass=0
fail=0
servers=()
mounts=()

ok() { echo "ok - $*"; pass=$((pass + 1)); }
nok() { echo "not ok - $*"; fail=$((fail + 1)); }
check() { # check NAME COMMAND...: one test from a command's status
	local name=$1; shift
	if "$@"; then ok "$name"; else nok "$name"; fi
}
skip() {
	echo "fuse tests skipped: $*"
	echo "0 passed, 0 failed"
	exit 0
}

cleanup() {
	for m in "${mounts[@]}"; do
		grep -q " $m " /proc/mounts && fusermount3 -u -z "$m" 2>/dev/null
	done
	for p in "${servers[@]}"; do
		kill -0 "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null
	done
	[ -n "${T:-}" ] && rm -rf "$T"
}

[ -e /dev/fuse ] || skip "/dev/fuse is missing"
command -v fusermount3 >/dev/null || skip "fusermount3 is missing"
command -v mke2fs >/dev/null && command -v e2fsck >/dev/null || skip "e2fsprogs is missing"
[ -x "$PW" ] && [ -x "$CHECK" ] || { echo "build/pagewright or build/fuse-check missing"; echo "0 passed, 1 failed"; exit 1; }
T=$(mktemp -d "${TMPDIR:-/tmp}/pw-fuse.XXXXXX")
trap cleanup EXIT

is_mounted() { grep -q " $1 fuse" /proc/mounts; }
# gone PID: the process has exited (a zombie counts: where PID 1 does not
# reap, a daemon's zombie stays, holding no files).
gone() { ! kill -0 "$1" 2>/dev/null || grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }
umount_gone() { "$PW" umount "$1" && gone "$2"; }

# mount_fg MOUNTPOINT ARGS...: a foreground server in the background;
# sets $server; fails if the mount is not up within 10 s.  The server's
# stderr goes to $SERVER_LOG if set, else $T/server.log.
mount_fg() {
	local mp=$1; shift
	mkdir -p "$mp"
	"$PW" mount -f "$@" "$mp" 2>>"${SERVER_LOG:-$T/server.log}" &
	server=$!
	servers+=("$server")
	mounts+=("$mp")
	for _ in $(seq 100); do
		is_mounted "$mp" && return 0
		kill -0 "$server" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# unmount_wait MOUNTPOINT PID: fusermount3 -u, then the server's status.
unmount_wait() {
	local mp=$1 pid=$2
	fusermount3 -u "$mp" || return 1
	wait "$pid"
}

# run_check ARGS...: fuse-check's own ok/not ok lines count as tests.
run_check() {
	local out line p f
	out=$("$CHECK" "$@" 2>&1)
	echo "$out" | grep -v '^[0-9]* passed, [0-9]* failed$'
	line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -n 1)
	if [ -z "$line" ]; then
		nok "fuse-check $1 printed no result"
		return
	fi
	p=${line%% passed*}; f=${line#*, }; f=${f%% failed*}
	pass=$((pass + p)); fail=$((fail + f))
}

one_line_error() { # one_line_error NAME PATTERN COMMAND...
	local name=$1 pat=$2; shift 2
	local rc=0
	"$@" >"$T/out" 2>"$T/err" || rc=$?
	local lines
	lines=$(wc -l <"$T/err")
	if [ "$rc" -ne 0 ] && [ "$lines" -eq 1 ] && grep -q -- "$pat" "$T/err"; then
		ok "error: $name"
	else
		nok "error: $name (status $rc, $lines lines: $(cat "$T/err"))"
	fi
}
fsck_clean() { e2fsck -fn "$1" >"$T/fsck.log" 2>&1 || { cat "$T/fsck.log"; return 1; }; }

# ------------------------------------------------------------- probe
if ! "$PW" mount -t ramfs none "$T/probe" >/dev/null 2>"$T/probe.err"; then
	mkdir -p "$T/probe"
	if ! "$PW" mount -t ramfs none "$T/probe" 2>"$T/probe.err"; then
		skip "cannot mount FUSE here: $(cat "$T/probe.err")"
	fi
fi
fusermount3 -u "$T/probe"

# --------------------------------------------- each kind, each cache mode
make_image() { rm -f "$1"; mke2fs -q -F -t ext2 -b "${2:-4096}" "$1" "${3:-64M}" >/dev/null 2>&1; }

serve_kind() { # serve_kind KIND SOURCE OPTIONS
	local kind=$1 src=$2 cache=$3 mp=$T/mnt-$1
	echo "# $kind ($src), -o $cache"
	if ! mount_fg "$mp" -t "$kind" "$src" -o "$cache"; then
		nok "$kind $cache: mount"; cat "$T/server.log"; return
	fi
	mkdir "$mp/t"
	run_check posix "$mp/t"
	# Extended attributes: ext2 keeps them, hostfs where the host does;
	# never with cache=writeback (docs/fuse.md).
	local xa=no
	if [[ $cache != cache=writeback* ]]; then
		case $kind in
		ext2) xa=yes ;;
		hostfs) "$CHECK" xattr-probe "$src" && xa=yes ;;
		esac
	fi
	run_check xattr "$mp/t" "$xa"
	run_check concurrent "$mp/t"
	run_check fill "$mp"
	check "$kind $cache: rm -r of the test tree" rm -rf "$mp/t"
	check "$kind $cache: unmount, the server exits 0" unmount_wait "$mp" "$server"
	case $kind in
	ext2)
		check "$kind $cache: e2fsck -fn clean" fsck_clean "$src"
		if mount_fg "$mp" -t ext2 "$src" -o "$cache"; then
			run_check refill "$mp"
			rm -rf "$mp/keep"
			check "$kind $cache: second unmount exits 0" unmount_wait "$mp" "$server"
			check "$kind $cache: e2fsck -fn clean after the second mount" fsck_clean "$src"
		else
			nok "$kind $cache: second mount"
		fi ;;
	hostfs)
		run_check refill "$src"
		rm -rf "${src:?}/keep" ;;
	ramfs) ;;
	esac
}

mkdir -p "$T/host"
make_image "$T/a.img" 4096
make_image "$T/b.img" 1024
# timeout=0: every stat reaches the server, which the rename race needs.
serve_kind ramfs none cache=direct
serve_kind hostfs "$T/host" cache=direct
serve_kind ext2 "$T/a.img" cache=direct,timeout=0
serve_kind ext2 "$T/b.img" cache=kernel
serve_kind hostfs "$T/host" cache=kernel,legacy_aops
make_image "$T/c.img" 4096
serve_kind ext2 "$T/c.img" cache=writeback

# Small files in cache=writeback: no SETATTR at close for a file created
# and written within one clock tick (the server stamps times from the
# coarse clock, as the kernel does, so the kernel has no times to send;
# docs/fuse.md).  A few may cross a tick.
make_image "$T/z.img"
if PW_FUSE_PROFILE=1 SERVER_LOG=$T/z.prof mount_fg "$T/zmnt" -t ext2 "$T/z.img" -o cache=writeback; then
	for i in $(seq 200); do printf 'small file %d' "$i" >"$T/zmnt/s$i"; done
	unmount_wait "$T/zmnt" "$server"
	setattrs=$(awk '$1 == "op" && $2 == 4 { print $3 }' "$T/z.prof")
	writes=$(awk '$1 == "op" && $2 == 16 { print $3 }' "$T/z.prof")
	check "small files, cache=writeback: 200 WRITEs, SETATTR for fewer than 50 (${setattrs:-0})" \
		test "${writes:-0}" -ge 200 -a "${setattrs:-0}" -lt 50
else
	nok "small files, cache=writeback: mount"
fi

# ------------------------------------- the random exerciser, through the mount
# build/fuse-random: threads of pwrite/pread/truncate/append, writes from
# mappings, mapped loads and stores, msync, fsync..., checked against an
# oracle that it then writes to $T/oracle-*; after the unmount, the files
# must equal it: on a new mount of the image, or in the host directory.
RANDOM_BIN=$PWD/build/fuse-random
random_on() { # random_on KIND SOURCE OPTIONS
	local kind=$1 src=$2 opts=$3 mp=$T/rmnt o=$T/oracle-$1
	echo "# random exerciser: $kind ($src), -o $opts"
	rm -rf "$o"; mkdir -p "$o"
	if ! mount_fg "$mp" -t "$kind" "$src" -o "$opts"; then
		nok "random $kind $opts: mount"; cat "$T/server.log"; return
	fi
	local rc=0
	mkdir "$mp/rand"
	timeout 300 "$RANDOM_BIN" "$mp/rand" "$o" >"$T/random.out" 2>&1 || rc=$?
	grep -v '^[0-9]* passed' "$T/random.out"
	check "random $kind $opts: the exerciser agrees with its oracle (status $rc)" test "$rc" -eq 0
	check "random $kind $opts: unmount, the server exits 0" unmount_wait "$mp" "$server"
	[ "$rc" -eq 0 ] || return
	if [ "$kind" = hostfs ]; then
		check "random $kind $opts: the host files equal the oracle" \
			sh -c "for f in '$o'/*; do cmp \"\$f\" '$src/rand/'\$(basename \"\$f\") || exit 1; done"
		rm -rf "${src:?}/rand"
		return
	fi
	check "random $kind $opts: e2fsck -fn clean" fsck_clean "$src"
	if mount_fg "$mp" -t "$kind" "$src" -o ro; then
		check "random $kind $opts: after a new mount the files equal the oracle" \
			sh -c "for f in '$o'/*; do cmp \"\$f\" '$mp/rand/'\$(basename \"\$f\") || exit 1; done"
		unmount_wait "$mp" "$server"
	else
		nok "random $kind $opts: mount again"
	fi
}
if [ -x "$RANDOM_BIN" ]; then
	make_image "$T/r4.img" 4096
	make_image "$T/r1.img" 1024
	random_on ext2 "$T/r4.img" cache=direct
	random_on ext2 "$T/r1.img" cache=kernel
	random_on hostfs "$T/host" cache=direct
	make_image "$T/r4.img" 4096
	random_on ext2 "$T/r4.img" cache=writeback
else
	nok "build/fuse-random is missing"
fi

# ------------------------------------------------------------ daemon mode
echo "# daemon mode"
make_image "$T/d.img"
mkdir -p "$T/dmnt"
mounts+=("$T/dmnt")
if "$PW" mount -t ext2 "$T/d.img" "$T/dmnt" 2>"$T/d.err" && is_mounted "$T/dmnt"; then
	ok "daemon: exits 0 with the mount up"
	dpid=$(pgrep -f -x "$PW mount -t ext2 $T/d.img $T/dmnt" | head -n 1)
	servers+=("$dpid")
	check "daemon: write a file" sh -c "echo daemon > '$T/dmnt/file'"
	fusermount3 -u "$T/dmnt"
	for _ in $(seq 100); do gone "$dpid" && break; sleep 0.1; done
	check "daemon: exits after fusermount3 -u" gone "$dpid"
	check "daemon: e2fsck -fn clean" fsck_clean "$T/d.img"
else
	nok "daemon: exits 0 with the mount up ($(cat "$T/d.err"))"
fi

# ---------------------------------------------------------------- errors
echo "# errors"
mkdir -p "$T/emnt"
one_line_error "missing mount point" "No such file" "$PW" mount -t ramfs none "$T/nonexistent"
one_line_error "missing image" "No such file" "$PW" mount -t ext2 "$T/none.img" "$T/emnt"
head -c 4M /dev/urandom >"$T/garbage.img"
one_line_error "not an ext2 image" "not an ext2 image" "$PW" mount -t ext2 "$T/garbage.img" "$T/emnt"
one_line_error "corrupt image, in the foreground too" "corrupt" "$PW" mount -f -t ext2 "$T/garbage.img" "$T/emnt"
one_line_error "unknown type" "unknown filesystem type" "$PW" mount -t xfs "$T/a.img" "$T/emnt"
one_line_error "unknown option" "unknown option" "$PW" mount -t ramfs none "$T/emnt" -o bogus
if mount_fg "$T/emnt" -t ramfs none; then
	one_line_error "busy mount point" "busy" "$PW" mount -t ramfs none "$T/emnt"
	unmount_wait "$T/emnt" "$server"
fi
if unshare -m true 2>/dev/null; then
	one_line_error "missing /dev/fuse" "/dev/fuse is missing" \
		unshare -m sh -c "mount -t tmpfs none /dev && exec '$PW' mount -t ramfs none '$T/emnt'"
fi
if [ "$(id -u)" -eq 0 ] && id nobody >/dev/null 2>&1 && command -v setpriv >/dev/null; then
	chmod 755 "$T"
	one_line_error "no permission" "permission" \
		setpriv --reuid=nobody --regid=nogroup --clear-groups "$PW" mount -t ext2 "$T/a.img" "$T/emnt"
fi

# ------------------------------------------------------------- read-only
echo "# read-only"
make_image "$T/ro.img"
sum_before=$(md5sum <"$T/ro.img")
if mount_fg "$T/romnt" -t ext2 "$T/ro.img" -o ro; then
	check "ro: writing fails with EROFS" sh -c "! echo x 2>'$T/ro.err' > '$T/romnt/x' && grep -q 'Read-only' '$T/ro.err'"
	check "ro: reading works" ls "$T/romnt/lost+found"
	check "ro: unmount exits 0" unmount_wait "$T/romnt" "$server"
	check "ro: the image is unchanged" test "$(md5sum <"$T/ro.img")" = "$sum_before"
else
	nok "ro: mount"
fi

# ---------------------------------------- SIGTERM with a file held open
echo "# SIGTERM"
make_image "$T/s.img"
if mount_fg "$T/smnt" -t ext2 "$T/s.img"; then
	exec 3>"$T/smnt/held"
	echo "written before SIGTERM" >&3
	kill -TERM "$server"
	wait "$server"
	check "SIGTERM: the server exits 0 with a file open" test $? -eq 0
	exec 3>&-
	check "SIGTERM: the mount is gone" sh -c "! grep -q ' $T/smnt ' /proc/mounts"
	check "SIGTERM: e2fsck -fn clean" fsck_clean "$T/s.img"
	if mount_fg "$T/smnt" -t ext2 "$T/s.img"; then
		check "SIGTERM: the held file's data was written back" grep -q "written before" "$T/smnt/held"
		unmount_wait "$T/smnt" "$server"
	fi
fi

# SIGTERM while the kernel holds dirty pages (a shared mapping; everything
# written, with cache=writeback): the server has the kernel write them first.
for mode in direct writeback; do
	make_image "$T/h.img"
	if mount_fg "$T/hmnt" -t ext2 "$T/h.img" -o cache=$mode; then
		coproc HOLD { exec "$CHECK" hold-dirty "$T/hmnt"; }
		read -r -t 20 line <&"${HOLD[0]}"
		kill -TERM "$server"
		wait "$server"
		check "SIGTERM, cache=$mode, dirty pages in the kernel: the server exits 0" test $? -eq 0
		kill "$HOLD_PID" 2>/dev/null
		wait "$HOLD_PID" 2>/dev/null
		fusermount3 -u -z "$T/hmnt" 2>/dev/null
		check "SIGTERM, cache=$mode: e2fsck -fn clean" fsck_clean "$T/h.img"
		if mount_fg "$T/hmnt" -t ext2 "$T/h.img" -o ro; then
			run_check held-intact "$T/hmnt"
			unmount_wait "$T/hmnt" "$server"
		fi
	fi
done

# pagewright sync while the kernel holds dirty pages (cache=writeback: a
# shared mapping's stores): sync has the kernel send them first, so they
# are on the image even if the server dies right after.
make_image "$T/y.img"
if mount_fg "$T/ymnt" -t ext2 "$T/y.img" -o cache=writeback; then
	coproc HOLD { exec "$CHECK" hold-dirty "$T/ymnt"; }
	read -r -t 20 line <&"${HOLD[0]}"
	check "sync, cache=writeback, dirty pages in the kernel: pagewright sync succeeds" \
		"$PW" sync "$T/ymnt"
	kill -9 "$server"
	wait "$server" 2>/dev/null
	kill "$HOLD_PID" 2>/dev/null
	wait "$HOLD_PID" 2>/dev/null
	fusermount3 -u -z "$T/ymnt" 2>/dev/null
	e2fsck -fy "$T/y.img" >"$T/fsck.log" 2>&1
	check "sync then kill -9: e2fsck -fn clean after -fy" fsck_clean "$T/y.img"
	if mount_fg "$T/ymnt" -t ext2 "$T/y.img" -o ro; then
		run_check held-intact "$T/ymnt"
		unmount_wait "$T/ymnt" "$server"
	fi
fi

# --------------------------------------------------- unmount while busy
echo "# unmount while busy"
if mount_fg "$T/bmnt" -t ext2 "$T/s.img"; then
	exec 3<"$T/bmnt/held"
	check "busy: fusermount3 -u refuses while a file is open" sh -c "! fusermount3 -u '$T/bmnt' 2>/dev/null"
	check "busy: the mount and server stay" sh -c "grep -q ' $T/bmnt ' /proc/mounts && kill -0 $server"
	exec 3<&-
	check "busy: unmount once closed, the server exits 0" unmount_wait "$T/bmnt" "$server"
	check "busy: e2fsck -fn clean" fsck_clean "$T/s.img"
fi

# ------------------------------------- pagewright stat, umount, the lock
echo "# pagewright stat, pagewright umount, the lock on the image"
make_image "$T/u.img"
mkdir -p "$T/umnt" "$T/umnt2"
mounts+=("$T/umnt" "$T/umnt2")
if "$PW" mount -t ext2 "$T/u.img" "$T/umnt" 2>"$T/u.err"; then
	upid=$("$PW" stat -r "$T/umnt" | sed -n 's/^pid //p')
	servers+=("$upid")
	check "stat: names the image and the server's pid" \
		sh -c "'$PW' stat '$T/umnt' | grep -q 'ext2 on $T/u.img, server pid $upid'"
	ls "$T/umnt" >/dev/null
	if [ -n "${PW_TEST_TRANSPORT:-}" ]; then
		check "stat -r: requests came through ${PW_TEST_TRANSPORT}" \
			sh -c "[ \"\$('$PW' stat -r '$T/umnt' | sed -n 's/^transport //p')\" = '$PW_TEST_TRANSPORT' ]"
	fi
	head -c 3M /dev/urandom >"$T/umnt/f"
	check "stat -r: the 3 MiB written are dirty in pagewright's cache" \
		sh -c "[ \$('$PW' stat -r '$T/umnt' | sed -n 's/^dirty_pages //p') -ge 768 ]"
	check "stat -r: the kernel's WRITE requests are counted" \
		sh -c "[ \$('$PW' stat -r '$T/umnt' | sed -n 's/^fuse_write_bytes //p') -ge 3145728 ]"
	check "sync: pagewright sync leaves no dirty page" \
		sh -c "'$PW' sync '$T/umnt' && [ \$('$PW' stat -r '$T/umnt' | sed -n 's/^dirty_pages //p') -eq 0 ]"
	check "stat without a mount point lists this mount" \
		sh -c "'$PW' stat | grep -q '^$T/umnt: ext2'"
	check "stat -w -c 2: a header and two lines" \
		sh -c "[ \$('$PW' stat -w -n 0.2 -c 2 '$T/umnt' | wc -l) -eq 4 ]"
	one_line_error "stat of a directory with nothing mounted" \
		"$T is not a pagewright mount (nothing is mounted there)" "$PW" stat "$T"
	one_line_error "stat of another filesystem" "/proc is not a pagewright mount (it is proc)" \
		"$PW" stat /proc
	one_line_error "a second server of one image" "$T/u.img is in use by another pagewright (pid $upid)" \
		"$PW" mount -t ext2 "$T/u.img" "$T/umnt2"
	one_line_error "a read-only server of an image in use" "in use by another pagewright (pid $upid)" \
		"$PW" mount -t ext2 "$T/u.img" "$T/umnt2" -o ro
	exec 3<"$T/umnt/f"
	one_line_error "umount while a file is open" "is busy" "$PW" umount "$T/umnt"
	check "umount while busy: the mount and the server stay" \
		sh -c "grep -q ' $T/umnt ' /proc/mounts && kill -0 $upid"
	exec 3<&-
	check "umount: exits 0 once the server has written back and exited" \
		umount_gone "$T/umnt" "$upid"
	check "umount: e2fsck -fn clean at once" fsck_clean "$T/u.img"
	one_line_error "umount of a directory with nothing mounted" "not a pagewright mount" \
		"$PW" umount "$T/umnt"
else
	nok "stat/umount: mount ($(cat "$T/u.err"))"
fi
# cache=kernel stays on /dev/fuse even where io_uring is offered (stale
# reads seen there over io_uring; docs/fuse.md, "Transport").
if [ "${PW_TEST_TRANSPORT:-}" = io_uring ]; then
	mkdir -p "$T/kmnt" "$T/khost"
	mounts+=("$T/kmnt")
	if "$PW" mount -t hostfs "$T/khost" "$T/kmnt" -o cache=kernel 2>"$T/k.err"; then
		kpid=$("$PW" stat -r "$T/kmnt" | sed -n 's/^pid //p')
		servers+=("$kpid")
		ls "$T/kmnt" >/dev/null
		check "stat -r: a cache=kernel mount's requests came through /dev/fuse" \
			sh -c "[ \"\$('$PW' stat -r '$T/kmnt' | sed -n 's/^transport //p')\" = /dev/fuse ]"
		check "cache=kernel: umount" umount_gone "$T/kmnt" "$kpid"
	else
		nok "cache=kernel mount ($(cat "$T/k.err"))"
	fi
fi
# Two read-only servers may share an image.
if "$PW" mount -t ext2 "$T/u.img" "$T/umnt" -o ro 2>"$T/u.err" &&
	"$PW" mount -t ext2 "$T/u.img" "$T/umnt2" -o ro 2>>"$T/u.err"; then
	ok "lock: two read-only servers share an image"
	check "lock: both read the file" cmp "$T/umnt/f" "$T/umnt2/f"
	check "umount -l of a busy read-only mount detaches it" \
		sh -c "exec 3<'$T/umnt2/f'; '$PW' umount -l '$T/umnt2' 3<&- & sleep 0.5; exec 3<&-; wait \$!"
	check "umount of the other" "$PW" umount "$T/umnt"
else
	nok "lock: two read-only servers share an image ($(cat "$T/u.err"))"
fi
# A killed server: umount still clears the mount, and says the image needs a check.
if "$PW" mount -t ext2 "$T/u.img" "$T/umnt" 2>"$T/u.err"; then
	kpid=$("$PW" stat -r "$T/umnt" | sed -n 's/^pid //p')
	servers+=("$kpid")
	kill -9 "$kpid"
	for _ in $(seq 50); do gone "$kpid" && break; sleep 0.1; done
	one_line_error "stat of a mount whose server was killed" "does not answer" "$PW" stat "$T/umnt"
	one_line_error "umount of a mount whose server was killed" "already gone" "$PW" umount "$T/umnt"
	check "... and the mount is gone" sh -c "! grep -q ' $T/umnt ' /proc/mounts"
fi
# A failed write-back reaches pagewright umount: the image sits on a
# 6 MiB tmpfs, and 12 MiB of dirty data cannot all be written.
if [ "$(id -u)" -eq 0 ] && mkdir -p "$T/tiny" && mount -t tmpfs -o size=6m none "$T/tiny" 2>/dev/null; then
	make_image "$T/tiny/full.img" 4096 64M
	if "$PW" mount -t ext2 "$T/tiny/full.img" "$T/umnt" 2>"$T/u.err"; then
		head -c 12M /dev/urandom >"$T/umnt/big"
		one_line_error "umount reports a failed write-back" "writing back $T/tiny/full.img failed" \
			"$PW" umount "$T/umnt"
	fi
	umount "$T/tiny"
fi

# --------------------------------------------------------- pagewright demo
echo "# pagewright demo"
check "pagewright demo exits 0 (e2fsck clean, every byte read back)" \
	sh -c "TMPDIR='$T' '$PW' demo >'$T/demo.out' 2>&1 || { cat '$T/demo.out'; false; }"
check "pagewright demo --in-process exits 0" \
	sh -c "TMPDIR='$T' '$PW' demo --in-process >'$T/demo.out' 2>&1 || { cat '$T/demo.out'; false; }"

# ------------------------------------------------ kill -9 in mid-write
echo "# kill -9 of the server during writes"
make_image "$T/k.img" 4096 256M
if mount_fg "$T/kmnt" -t ext2 "$T/k.img"; then
	"$CHECK" writer "$T/kmnt" >"$T/fsynced" 2>/dev/null &
	writer=$!
	sleep 2
	kill -9 "$server"
	wait "$server" 2>/dev/null
	wait "$writer"
	fusermount3 -u "$T/kmnt" 2>/dev/null || fusermount3 -u -z "$T/kmnt" 2>/dev/null
	echo "# $(wc -l <"$T/fsynced") files were fsync'd before the kill"
	check "kill -9: files were written before the kill" test -s "$T/fsynced"
	e2fsck -fy "$T/k.img" >"$T/fsck-y.log" 2>&1
	rc=$?
	check "kill -9: e2fsck -fy repairs (status $rc)" test "$rc" -le 1
	check "kill -9: then e2fsck -fn is clean" fsck_clean "$T/k.img"
	if mount_fg "$T/kmnt" -t ext2 "$T/k.img"; then
		run_check verify "$T/kmnt" "$T/fsynced"
		check "kill -9: unmount after the check exits 0" unmount_wait "$T/kmnt" "$server"
	else
		nok "kill -9: mount after repair"
	fi
fi

echo
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

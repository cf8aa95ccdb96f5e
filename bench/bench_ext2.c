/*
 * bench_ext2.c - an ext2 image through pagewright, the kernel and fuse2fs.
 *
 * Question (issue 3): on the same image type, in one run, how do
 * pagewright's in-process ext2 (pw_mount("ext2", image, ...)), the
 * kernel's ext2 on a loop mount and fuse2fs (the existing userspace ext2)
 * compare on
 *   - sequential writes, 1 MiB and 4 KiB per call, into a new file;
 *   - sequential reads of that file, 1 MiB and 4 KiB per call, "cached"
 *     (right after it was written and synced) and "cold" (every cache
 *     dropped, see below);
 *   - random 4 KiB overwrites inside a 64 MiB file;
 *   - creating 10,000 files of 100 bytes in 10 directories of 1,000;
 * each write row without and with a final fsync (timed with it)?
 * Targets (printed, not asserted): pagewright ahead of fuse2fs on every
 * row, and within 1.5 times the kernel's time on the sequential rows.
 *
 * Each contender gets its own image, made by
 *   mke2fs -q -F -t ext2 -b 4096 IMAGE 512M
 * (a sparse file in $TMPDIR or /tmp; smaller if the disk is short), and
 * keeps it for the whole run: every write row unlinks the previous file
 * first, every create row removes the previous tree first (not timed).
 *
 *   kernel      mount -o loop IMAGE DIR; open/write/read/fsync/syncfs
 *   fuse2fs     fuse2fs IMAGE DIR -f -o fakeroot,big_writes (override the
 *               options with BENCH_FUSE2FS_OPTS); the same system calls
 *   pagewright  pw_mount("ext2", IMAGE, "/e", NULL); the pw_ calls
 *
 * A contender that cannot be set up is printed as "skipped: <reason>"
 * and the others still run; one that fails during the run (an error, or
 * data read back that is not what was written) is dropped from there on
 * with the reason.  pagewright's ext2 may not exist yet (ENODEV).
 *
 * Timing: CLOCK_MONOTONIC around one whole operation (open .. close, with
 * the fsync when the row has one), never around one call.  Rows run
 * BENCH_EXT2_REPS times (default 3), the contenders taking turns within
 * each repetition (the order rotates), and the median is reported with
 * the spread.  After every timed operation the contender is synced
 * (not timed) so that no dirty data is carried into the next one.
 *
 * "Final fsync" is fsync(2) of the file for the file rows.  For the create
 * rows it is a whole-filesystem sync: syncfs(2) for the kernel, pw_sync()
 * for pagewright, and for fuse2fs an fsync(2) of a file open for writing,
 * because fuse2fs flushes the whole filesystem (ext2fs_flush2 and fsync of
 * the image) on any fsync, while syncfs(2) does not reach a libfuse2
 * daemon.
 *
 * Cold reads: the contender is unmounted and mounted again (the kernel:
 * umount + mount -o loop; fuse2fs: unmount, wait for the daemon to exit,
 * start it again; pagewright: pw_umount + pw_mount), the image file is
 * dropped from the host's cache (posix_fadvise DONTNEED) and
 * /proc/sys/vm/drop_caches gets 3.  So a cold read comes from the disk
 * for all three.
 *
 * After the run every image is unmounted and checked with e2fsck -fn.
 *
 * Environment: BENCH_EXT2_REPS (repetitions, default 3), BENCH_EXT2_BIG_MB
 * (size of the 1 MiB rows' file, default 256), BENCH_EXT2_VERBOSE=1 (print
 * every timed operation), BENCH_FUSE2FS_OPTS, BENCH_EXT2_TIMEOUT, TMPDIR.
 *
 * The program runs in a private mount namespace when it can, and fuse2fs
 * gets PR_SET_PDEATHSIG, so a crash leaves no mount behind.  A watchdog
 * (BENCH_EXT2_TIMEOUT seconds, default 600) bounds the whole run.
 */
#include "bench_common.h"

#include <pagewright/pagewright.h>

#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>

#define MAX_REPS 15
#define NFILES 10000
#define NDIRS 10
#define SMALL 100 /* bytes per created file */

enum ct { KERN, FUSE, PW, NCT };
static const char *ct_name[NCT] = {"kernel ext2", "fuse2fs", "pagewright ext2"};

struct contender {
	enum ct kind;
	bool ok;          /* set up and not failed */
	bool mounted;
	char why[512];    /* why skipped or dropped */
	char img[320];
	char dir[320];      /* host mount point (kernel, fuse2fs) */
	pid_t fuse_pid;
	char fuse_log[320];
};

static struct contender ct[NCT];
static char workdir[256];
static char fuse2fs_opts[256] = "fakeroot,big_writes";
static size_t img_mb = 512, big_bytes = 256 * MiB, f64_bytes = 64 * MiB;
static long rand_ops = 16384;
static char *src; /* 1 MiB pattern; byte at file offset o is src[o % MiB] */
static bool have_drop_caches = true;
static char drop_note[256] = "";
static volatile sig_atomic_t fuse_pid_sig = 0;

/* ------------------------------------------------------------ commands */

/* Run argv with stdout+stderr captured into out, bounded by timeout_ms.
 * Returns the exit status, 128+signal, or -1 (could not run / timed out). */
static int
run_cmd(char *const argv[], char *out, size_t outlen, int timeout_ms)
{
	int p[2];
	if (out && outlen)
		out[0] = 0;
	if (pipe2(p, O_CLOEXEC) != 0)
		return -1;
	pid_t pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0) {
		dup2(p[1], 1);
		dup2(p[1], 2);
		int nul = open("/dev/null", O_RDONLY);
		if (nul >= 0)
			dup2(nul, 0);
		execvp(argv[0], argv);
		fprintf(stderr, "exec %s: %s", argv[0], strerror(errno));
		_exit(127);
	}
	close(p[1]);
	size_t used = 0;
	char sink[512];
	uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000u;
	bool timed_out = false;
	for (;;) {
		uint64_t now = now_ns();
		if (now >= deadline) {
			timed_out = true;
			break;
		}
		struct pollfd pf = {p[0], POLLIN, 0};
		int r = poll(&pf, 1, (int)((deadline - now) / 1000000u) + 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			continue;
		bool keep = out && used + 1 < outlen;
		ssize_t n = keep ? read(p[0], out + used, outlen - used - 1)
		                 : read(p[0], sink, sizeof(sink));
		if (n <= 0)
			break;
		if (keep) {
			used += (size_t)n;
			out[used] = 0;
		}
	}
	close(p[0]);
	int st = 0;
	if (timed_out) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		if (out && outlen)
			snprintf(out + strlen(out), outlen - strlen(out), " [timed out]");
		return -1;
	}
	/* The pipe closed: the command is exiting; still bound the wait. */
	for (int k = 0; k < 2000; k++) {
		pid_t w = waitpid(pid, &st, WNOHANG);
		if (w == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		if (w < 0)
			return -1;
		usleep(5000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return -1;
}

static void
chomp(char *s)
{
	size_t n = strlen(s);
	while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
		s[--n] = 0;
	for (char *p = s; *p; p++)
		if (*p == '\n')
			*p = ' ';
}

static bool
in_path(const char *name)
{
	const char *path = getenv("PATH");
	char buf[PATH_MAX * 2];
	snprintf(buf, sizeof(buf), "%s:/usr/sbin:/sbin:/usr/bin:/bin", path ? path : "");
	for (char *save = NULL, *d = strtok_r(buf, ":", &save); d;
	     d = strtok_r(NULL, ":", &save)) {
		char p[PATH_MAX + 64];
		snprintf(p, sizeof(p), "%s/%s", d, name);
		if (access(p, X_OK) == 0)
			return true;
	}
	return false;
}

/* A host directory is a mount point when its device differs from its
 * parent's. */
static bool
is_mountpoint(const char *dir)
{
	char parent[PATH_MAX + 4];
	struct stat a, b;
	snprintf(parent, sizeof(parent), "%s/..", dir);
	if (stat(dir, &a) != 0 || stat(parent, &b) != 0)
		return false;
	return a.st_dev != b.st_dev;
}

/* ------------------------------------------------------ mount / unmount */

static int
make_image(struct contender *c)
{
	char size[32], out[1024];
	snprintf(size, sizeof(size), "%zuM", img_mb);
	unlink(c->img);
	char *argv[] = {"mke2fs", "-q", "-F", "-t", "ext2", "-b", "4096", c->img,
	                size, NULL};
	int st = run_cmd(argv, out, sizeof(out), 60000);
	if (st != 0) {
		chomp(out);
		snprintf(c->why, sizeof(c->why), "mke2fs failed (status %d): %.400s", st, out);
		return -1;
	}
	return 0;
}

static int
host_umount(const char *dir)
{
	for (int k = 0; k < 100; k++) {
		if (umount2(dir, 0) == 0)
			return 0;
		if (errno != EBUSY)
			break;
		usleep(20000);
	}
	int e = errno;
	umount2(dir, MNT_DETACH);
	errno = e;
	return -1;
}

/* Wait for a fuse2fs daemon to exit, bounded; kill it if it does not. */
static void
fuse_reap(struct contender *c, int timeout_ms)
{
	if (c->fuse_pid <= 0)
		return;
	int st;
	for (int k = 0; k < timeout_ms / 10; k++) {
		if (waitpid(c->fuse_pid, &st, WNOHANG) != 0)
			goto done;
		usleep(10000);
	}
	fprintf(stderr, "bench_ext2: fuse2fs (pid %d) did not exit, SIGTERM\n",
	        (int)c->fuse_pid);
	kill(c->fuse_pid, SIGTERM);
	for (int k = 0; k < 200; k++) {
		if (waitpid(c->fuse_pid, &st, WNOHANG) != 0)
			goto done;
		usleep(10000);
	}
	kill(c->fuse_pid, SIGKILL);
	waitpid(c->fuse_pid, &st, 0);
done:
	c->fuse_pid = 0;
	fuse_pid_sig = 0;
}

static int
fuse_start(struct contender *c)
{
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(c->why, sizeof(c->why), "fork: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(1);
		int fd = open(c->fuse_log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		int nul = open("/dev/null", O_RDONLY);
		if (nul >= 0)
			dup2(nul, 0);
		execlp("fuse2fs", "fuse2fs", c->img, c->dir, "-f", "-o", fuse2fs_opts,
		       (char *)NULL);
		fprintf(stderr, "exec fuse2fs: %s\n", strerror(errno));
		_exit(127);
	}
	c->fuse_pid = pid;
	fuse_pid_sig = pid;
	for (int k = 0; k < 1000; k++) { /* 10 s */
		if (is_mountpoint(c->dir)) {
			c->mounted = true;
			return 0;
		}
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			c->fuse_pid = 0;
			fuse_pid_sig = 0;
			char log[400] = "";
			FILE *f = fopen(c->fuse_log, "r");
			if (f) {
				size_t n = fread(log, 1, sizeof(log) - 1, f);
				log[n] = 0;
				fclose(f);
			}
			chomp(log);
			snprintf(c->why, sizeof(c->why), "fuse2fs exited (status %d): %s",
			         WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), log);
			return -1;
		}
		usleep(10000);
	}
	snprintf(c->why, sizeof(c->why), "fuse2fs did not mount within 10 s");
	kill(pid, SIGTERM);
	fuse_reap(c, 2000);
	return -1;
}

static int
ct_mount(struct contender *c)
{
	if (c->kind == KERN) {
		char out[1024];
		char *argv[] = {"mount", "-o", "loop", c->img, c->dir, NULL};
		int st = run_cmd(argv, out, sizeof(out), 20000);
		if (st != 0) {
			chomp(out);
			snprintf(c->why, sizeof(c->why), "mount -o loop failed (status %d): %.400s",
			         st, out);
			return -1;
		}
	} else if (c->kind == FUSE) {
		if (fuse_start(c) != 0)
			return -1;
	} else {
		if (pw_mount("ext2", c->img, "/e", NULL) != 0) {
			snprintf(c->why, sizeof(c->why), "pw_mount: %s", strerror(errno));
			return -1;
		}
	}
	c->mounted = true;
	return 0;
}

static int
ct_umount(struct contender *c)
{
	if (!c->mounted)
		return 0;
	c->mounted = false;
	if (c->kind == PW) {
		if (pw_umount("/e") != 0) {
			snprintf(c->why, sizeof(c->why), "pw_umount: %s", strerror(errno));
			return -1;
		}
		return 0;
	}
	int r = host_umount(c->dir);
	int e = errno;
	if (c->kind == FUSE)
		fuse_reap(c, 30000); /* the daemon writes the image out on exit */
	if (r != 0) {
		snprintf(c->why, sizeof(c->why), "umount %.300s: %s", c->dir, strerror(e));
		return -1;
	}
	return 0;
}

/* --------------------------------------------------- file operations */

static void
cpath(const struct contender *c, const char *rel, char *out, size_t len)
{
	if (c->kind == PW)
		snprintf(out, len, "/e/%s", rel);
	else
		snprintf(out, len, "%s/%s", c->dir, rel);
}

static int
c_open(const struct contender *c, const char *rel, int flags, mode_t mode)
{
	char p[PATH_MAX + 64];
	cpath(c, rel, p, sizeof(p));
	return c->kind == PW ? pw_open(p, flags, mode) : open(p, flags, mode);
}

static int
c_close(const struct contender *c, int fd)
{
	return c->kind == PW ? pw_close(fd) : close(fd);
}

static int
c_fsync(const struct contender *c, int fd)
{
	return c->kind == PW ? pw_fsync(fd) : fsync(fd);
}

static ssize_t
c_write(const struct contender *c, int fd, const void *b, size_t n)
{
	return c->kind == PW ? pw_write(fd, b, n) : write(fd, b, n);
}

static ssize_t
c_pwrite(const struct contender *c, int fd, const void *b, size_t n, off_t o)
{
	return c->kind == PW ? pw_pwrite(fd, b, n, o) : pwrite(fd, b, n, o);
}

static ssize_t
c_read(const struct contender *c, int fd, void *b, size_t n)
{
	return c->kind == PW ? pw_read(fd, b, n) : read(fd, b, n);
}

static int
c_unlink(const struct contender *c, const char *rel)
{
	char p[PATH_MAX + 64];
	cpath(c, rel, p, sizeof(p));
	return c->kind == PW ? pw_unlink(p) : unlink(p);
}

static int
c_mkdir(const struct contender *c, const char *rel)
{
	char p[PATH_MAX + 64];
	cpath(c, rel, p, sizeof(p));
	return c->kind == PW ? pw_mkdir(p, 0755) : mkdir(p, 0755);
}

static int
c_rmdir(const struct contender *c, const char *rel)
{
	char p[PATH_MAX + 64];
	cpath(c, rel, p, sizeof(p));
	return c->kind == PW ? pw_rmdir(p) : rmdir(p);
}

/* Make the whole filesystem durable (see the header). */
static int
c_syncfs(const struct contender *c)
{
	int fd, r;
	switch (c->kind) {
	case KERN:
		fd = open(c->dir, O_RDONLY | O_DIRECTORY);
		if (fd < 0)
			return -1;
		r = syncfs(fd);
		close(fd);
		return r;
	case FUSE:
		fd = c_open(c, ".pwsync", O_WRONLY | O_CREAT, 0644);
		if (fd < 0)
			return -1;
		r = fsync(fd);
		close(fd);
		return r;
	default:
		return pw_sync();
	}
}

/* Record a failure; the contender takes no further part. */
static int
fail(struct contender *c, const char *what)
{
	int e = errno;
	snprintf(c->why, sizeof(c->why), "%s: %s", what, e ? strerror(e) : "failed");
	c->ok = false;
	return -1;
}

/* Not timed: nothing dirty is carried into the next measurement. */
static int
settle(struct contender *c)
{
	if (c_syncfs(c) != 0)
		return fail(c, "sync after the row");
	sync();
	return 0;
}

/* Not timed: drop every cache that holds the image's data (cold reads). */
static int
drop_all(struct contender *c)
{
	if (ct_umount(c) != 0 || ct_mount(c) != 0) {
		c->ok = false;
		return -1;
	}
	sync();
	int fd = open(c->img, O_RDONLY);
	if (fd >= 0) {
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		close(fd);
	}
	if (have_drop_caches) {
		int d = open("/proc/sys/vm/drop_caches", O_WRONLY);
		if (d < 0 || write(d, "3", 1) != 1) {
			have_drop_caches = false;
			snprintf(drop_note, sizeof(drop_note),
			         "drop_caches not writable (%s): cold reads relied on remount "
			         "+ posix_fadvise of the image only",
			         strerror(errno));
		}
		if (d >= 0)
			close(d);
	}
	return 0;
}

/* ------------------------------------------------------------ the rows */

enum kind { SEQW, SEQR, RANDW, CREATE };

struct row {
	const char *name;
	enum kind kind;
	size_t io;      /* bytes per call */
	bool sync;      /* timed final fsync / fs sync */
	bool cold;      /* reads: caches dropped first */
	bool seq;       /* a "sequential row" for the 1.5x-kernel target */
	const char *file;
};

static const struct row rows[] = {
	{"seq write 1 MiB", SEQW, MiB, false, false, true, "big"},
	{"seq write 1 MiB +fsync", SEQW, MiB, true, false, true, "big"},
	{"seq read 1 MiB cached", SEQR, MiB, false, false, true, "big"},
	{"seq read 1 MiB cold", SEQR, MiB, false, true, true, "big"},
	{"seq write 4 KiB", SEQW, 4 * KiB, false, false, true, "f64"},
	{"seq write 4 KiB +fsync", SEQW, 4 * KiB, true, false, true, "f64"},
	{"seq read 4 KiB cached", SEQR, 4 * KiB, false, false, true, "f64"},
	{"seq read 4 KiB cold", SEQR, 4 * KiB, false, true, true, "f64"},
	{"rand overwrite 4 KiB", RANDW, 4 * KiB, false, false, false, "f64"},
	{"rand overwrite 4 KiB +fsync", RANDW, 4 * KiB, true, false, false, "f64"},
	{"create 10k x 100 B", CREATE, SMALL, false, false, false, NULL},
	{"create 10k x 100 B +sync", CREATE, SMALL, true, false, false, NULL},
};
#define NROWS (sizeof(rows) / sizeof(rows[0]))

static size_t
row_bytes(const struct row *r)
{
	return strcmp(r->file ? r->file : "", "big") == 0 ? big_bytes : f64_bytes;
}

/* Work done by one operation of the row: bytes, or operations. */
static double
row_units(const struct row *r)
{
	if (r->kind == RANDW)
		return (double)rand_ops;
	if (r->kind == CREATE)
		return NFILES;
	return (double)row_bytes(r);
}

static int
remove_tree(struct contender *c)
{
	char p[64];
	int fd = c_open(c, "t", O_RDONLY | O_DIRECTORY, 0);
	if (fd < 0)
		return errno == ENOENT ? 0 : fail(c, "open t");
	c_close(c, fd);
	for (int d = 0; d < NDIRS; d++) {
		for (int f = 0; f < NFILES / NDIRS; f++) {
			snprintf(p, sizeof(p), "t/d%d/f%d", d, f);
			if (c_unlink(c, p) != 0 && errno != ENOENT)
				return fail(c, "unlink (removing the previous tree)");
		}
		snprintf(p, sizeof(p), "t/d%d", d);
		if (c_rmdir(c, p) != 0 && errno != ENOENT)
			return fail(c, "rmdir (removing the previous tree)");
	}
	if (c_rmdir(c, "t") != 0)
		return fail(c, "rmdir t");
	return 0;
}

static uint64_t
xorshift(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

/* One timed operation of row r by contender c.  Returns seconds, or -1
 * (the contender is then dropped, with the reason in c->why). */
static double
one_op(struct contender *c, const struct row *r, char *buf)
{
	size_t total = row_bytes(r);
	uint64_t t0 = 0, t1;
	int fd;

	/* Set-up, not timed. */
	if (r->kind == SEQW) {
		if (c_unlink(c, r->file) != 0 && errno != ENOENT)
			return fail(c, "unlink (before a write row)");
		if (settle(c) != 0)
			return -1;
	} else if (r->kind == SEQR && r->cold) {
		if (drop_all(c) != 0)
			return -1;
	} else if (r->kind == CREATE) {
		if (remove_tree(c) != 0 || settle(c) != 0)
			return -1;
	}

	t0 = now_ns();
	switch (r->kind) {
	case SEQW:
		fd = c_open(c, r->file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0)
			return fail(c, "open (write row)");
		for (size_t off = 0; off < total; off += r->io)
			if (c_write(c, fd, src + off % MiB, r->io) != (ssize_t)r->io)
				return fail(c, "write");
		if (r->sync && c_fsync(c, fd) != 0)
			return fail(c, "fsync");
		if (c_close(c, fd) != 0)
			return fail(c, "close");
		break;
	case SEQR: {
		fd = c_open(c, r->file, O_RDONLY, 0);
		if (fd < 0)
			return fail(c, "open (read row)");
		size_t off = 0;
		for (;;) {
			ssize_t n = c_read(c, fd, buf, r->io);
			if (n < 0)
				return fail(c, "read");
			if (n == 0)
				break;
			/* A cheap check that the data is what was written. */
			size_t k = (size_t)n < 64 ? (size_t)n : 64;
			if (memcmp(buf, src + off % MiB, k) != 0) {
				snprintf(c->why, sizeof(c->why),
				         "data read back at offset %zu differs from what was written",
				         off);
				c->ok = false;
				return -1;
			}
			off += (size_t)n;
		}
		c_close(c, fd);
		if (off != total) {
			snprintf(c->why, sizeof(c->why), "read %zu bytes of a %zu-byte file", off,
			         total);
			c->ok = false;
			return -1;
		}
		break;
	}
	case RANDW: {
		uint64_t seed = 0x9e3779b97f4a7c15ull;
		size_t pages = total / (4 * KiB);
		fd = c_open(c, r->file, O_WRONLY, 0);
		if (fd < 0)
			return fail(c, "open (random overwrite)");
		for (long k = 0; k < rand_ops; k++) {
			size_t off = (size_t)(xorshift(&seed) % pages) * 4 * KiB;
			/* The same bytes the file already holds there. */
			if (c_pwrite(c, fd, src + off % MiB, 4 * KiB, (off_t)off) !=
			    (ssize_t)(4 * KiB))
				return fail(c, "pwrite");
		}
		if (r->sync && c_fsync(c, fd) != 0)
			return fail(c, "fsync");
		if (c_close(c, fd) != 0)
			return fail(c, "close");
		break;
	}
	case CREATE: {
		char p[64];
		if (c_mkdir(c, "t") != 0)
			return fail(c, "mkdir t");
		for (int d = 0; d < NDIRS; d++) {
			snprintf(p, sizeof(p), "t/d%d", d);
			if (c_mkdir(c, p) != 0)
				return fail(c, "mkdir");
			for (int f = 0; f < NFILES / NDIRS; f++) {
				snprintf(p, sizeof(p), "t/d%d/f%d", d, f);
				fd = c_open(c, p, O_WRONLY | O_CREAT | O_EXCL, 0644);
				if (fd < 0)
					return fail(c, "create");
				if (c_write(c, fd, src, SMALL) != SMALL)
					return fail(c, "write (create row)");
				if (c_close(c, fd) != 0)
					return fail(c, "close (create row)");
			}
		}
		if (r->sync && c_syncfs(c) != 0)
			return fail(c, "final sync (create row)");
		break;
	}
	}
	t1 = now_ns();

	if (r->kind == CREATE) { /* check one file, not timed */
		char p[64];
		snprintf(p, sizeof(p), "t/d%d/f%d", NDIRS - 1, NFILES / NDIRS - 1);
		fd = c_open(c, p, O_RDONLY, 0);
		if (fd < 0 || c_read(c, fd, buf, 4096) != SMALL ||
		    memcmp(buf, src, SMALL) != 0) {
			snprintf(c->why, sizeof(c->why), "created file %s does not read back", p);
			c->ok = false;
			return -1;
		}
		c_close(c, fd);
	}
	if (r->kind != SEQR && settle(c) != 0)
		return -1;
	return (double)(t1 - t0) / 1e9;
}

/* -------------------------------------------------------------- set-up */

static void
cleanup(void)
{
	static bool done;
	if (done)
		return;
	done = true;
	for (int k = 0; k < NCT; k++) {
		struct contender *c = &ct[k];
		if (c->mounted)
			ct_umount(c);
		if (c->kind == FUSE)
			fuse_reap(c, 5000);
		if (c->img[0])
			unlink(c->img);
		if (c->fuse_log[0])
			unlink(c->fuse_log);
		if (c->dir[0])
			rmdir(c->dir);
	}
	if (workdir[0])
		rmdir(workdir);
}

static void
on_signal(int sig)
{
	/* Async-signal-safe only.  The private mount namespace (if we have
	 * one) takes the mounts with it when we exit. */
	if (fuse_pid_sig > 0)
		kill((pid_t)fuse_pid_sig, SIGTERM);
	for (int k = 0; k < NCT; k++) {
		if (ct[k].kind != PW && ct[k].dir[0])
			umount2(ct[k].dir, MNT_DETACH);
		if (ct[k].img[0])
			unlink(ct[k].img);
	}
	static const char msg[] = "bench_ext2: interrupted or timed out; cleaned up\n";
	if (write(2, msg, sizeof(msg) - 1) < 0) {
	}
	_exit(128 + sig);
}

static void
host_fstype(const char *path, char *out, size_t len)
{
	FILE *m = fopen("/proc/self/mountinfo", "r");
	char line[1024];
	size_t bestlen = 0;
	snprintf(out, len, "?");
	while (m && fgets(line, sizeof(line), m)) {
		char mp[256], fs[64];
		if (sscanf(line, "%*s %*s %*s %*s %255s", mp) != 1)
			continue;
		char *dash = strstr(line, " - ");
		if (!dash || sscanf(dash + 3, "%63s", fs) != 1)
			continue;
		size_t l = strlen(mp);
		if (strncmp(path, mp, l) == 0 && (path[l] == '/' || l == 1) && l >= bestlen) {
			bestlen = l;
			snprintf(out, len, "%s", fs);
		}
	}
	if (m)
		fclose(m);
}

/* Fault in pagewright's pool frames up front through a throw-away ramfs
 * file: first touch of fresh memory costs tens of us a page on some VMs
 * (BENCHMARKS.md), which is not what this program measures. */
static void
prefault_pool(size_t bytes)
{
	if (pw_mkdir("/m", 0755) != 0 || pw_mount("ramfs", NULL, "/m", NULL) != 0)
		return;
	int fd = pw_open("/m/warm", O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd >= 0) {
		for (size_t off = 0; off < bytes; off += MiB)
			if (pw_write(fd, src, MiB) != (ssize_t)MiB)
				break;
		pw_close(fd);
		pw_unlink("/m/warm");
	}
}

static const char *
fmt_rate(double units, double secs, bool bytes, char *b, size_t len)
{
	if (secs <= 0)
		snprintf(b, len, "-");
	else if (bytes)
		snprintf(b, len, "%.0f", units / secs / 1e6);
	else
		snprintf(b, len, "%.0f", units / secs);
	return b;
}

int
main(void)
{
	int reps = 3;
	const char *e = getenv("BENCH_EXT2_REPS");
	if (e && atoi(e) > 0)
		reps = atoi(e) > MAX_REPS ? MAX_REPS : atoi(e);
	int timeout = 600;
	if ((e = getenv("BENCH_EXT2_TIMEOUT")) && atoi(e) > 0)
		timeout = atoi(e);
	bool verbose = (e = getenv("BENCH_EXT2_VERBOSE")) && atoi(e) > 0;
	if ((e = getenv("BENCH_FUSE2FS_OPTS")) && *e)
		snprintf(fuse2fs_opts, sizeof(fuse2fs_opts), "%s", e);

	/* Before the library starts any thread: unshare needs one thread. */
	char ns_note[128] = "private mount namespace";
	if (unshare(CLONE_NEWNS) != 0 ||
	    mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		snprintf(ns_note, sizeof(ns_note), "host mount namespace (unshare: %s)",
		         strerror(errno));

	setvbuf(stdout, NULL, _IOLBF, 0);
	print_machine("bench_ext2: an ext2 image via pagewright, the kernel (loop) "
	              "and fuse2fs");

	const char *tmp = getenv("TMPDIR");
	if (!tmp || !*tmp)
		tmp = "/tmp";
	snprintf(workdir, sizeof(workdir), "%s/pw-bench-ext2.XXXXXX", tmp);
	die_if(!mkdtemp(workdir), "mkdtemp");
	atexit(cleanup);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGALRM, &sa, NULL);
	alarm((unsigned)timeout);

	/* Free space: three sparse images, each filled to about 80%. */
	struct statvfs vfs;
	if (statvfs(workdir, &vfs) == 0) {
		double avail = (double)vfs.f_bavail * (double)vfs.f_frsize;
		while (img_mb > 64 && 3.0 * (double)img_mb * MiB * 0.9 > avail)
			img_mb /= 2;
		if (img_mb < 512) {
			big_bytes = img_mb / 2 * MiB;
			f64_bytes = (img_mb / 8 < 64 ? img_mb / 8 : 64) * MiB;
			rand_ops = (long)(f64_bytes / (4 * KiB));
		}
		if ((e = getenv("BENCH_EXT2_BIG_MB")) && atoi(e) > 0 &&
		    (size_t)atoi(e) * MiB < img_mb * MiB / 2 + MiB)
			big_bytes = (size_t)atoi(e) * MiB;
		char fs[64];
		host_fstype(workdir, fs, sizeof(fs));
		printf("images: %s (%s, %.1f GiB free), mke2fs -q -F -t ext2 -b 4096 IMAGE "
		       "%zuM, one per contender\n",
		       workdir, fs, avail / (1024.0 * MiB), img_mb);
	}
	printf("run in: %s; repetitions: %d (BENCH_EXT2_REPS), contenders take "
	       "turns in each, order rotating\n",
	       ns_note, reps);
	printf("files: %zu MiB (1 MiB rows), %zu MiB (4 KiB rows); %ld random "
	       "overwrites in the %zu MiB file;\n       %d files of %d B in %d "
	       "directories\n",
	       big_bytes / MiB, f64_bytes / MiB, rand_ops, f64_bytes / MiB, NFILES,
	       SMALL, NDIRS);

	src = malloc(MiB);
	char *buf = malloc(MiB);
	die_if(!src || !buf, "malloc");
	fill_pattern(src, MiB, 3);

	for (int k = 0; k < NCT; k++) {
		struct contender *c = &ct[k];
		static const char *tag[NCT] = {"kernel", "fuse2fs", "pw"};
		c->kind = (enum ct)k;
		snprintf(c->img, sizeof(c->img), "%.256s/%s.img", workdir, tag[k]);
		if (k != PW) {
			snprintf(c->dir, sizeof(c->dir), "%.256s/%s.mnt", workdir, tag[k]);
			die_if(mkdir(c->dir, 0755) != 0, c->dir);
		}
		if (k == FUSE)
			snprintf(c->fuse_log, sizeof(c->fuse_log), "%.256s/fuse2fs.log", workdir);
	}
	/* Set-up; a contender that cannot be set up is skipped. */
	for (int k = 0; k < NCT; k++) {
		struct contender *c = &ct[k];
		if (k == FUSE && access("/dev/fuse", R_OK | W_OK) != 0) {
			snprintf(c->why, sizeof(c->why), "/dev/fuse: %s", strerror(errno));
			continue;
		}
		if (k == FUSE && !in_path("fuse2fs")) {
			snprintf(c->why, sizeof(c->why),
			         "fuse2fs not installed (Debian: apt-get install fuse2fs)");
			continue;
		}
		if (k == PW && pw_mkdir("/e", 0755) != 0) {
			snprintf(c->why, sizeof(c->why), "pw_mkdir /e: %s", strerror(errno));
			continue;
		}
		if (make_image(c) != 0 || ct_mount(c) != 0)
			continue;
		c->ok = true;
	}
	{
		char out[256] = "";
		char *argv[] = {"fuse2fs", "-V", NULL};
		if (ct[FUSE].ok)
			run_cmd(argv, out, sizeof(out), 5000);
		char *nl = strchr(out, '\n');
		if (nl)
			*nl = 0;
		printf("kernel:     mount -o loop IMAGE DIR (ext2 driver), open/read/"
		       "write/fsync/syncfs\n");
		printf("fuse2fs:    fuse2fs IMAGE DIR -f -o %s%s%s\n", fuse2fs_opts,
		       out[0] ? "  -- " : "", out);
		printf("pagewright: pw_mount(\"ext2\", IMAGE, \"/e\", NULL), pw_open/"
		       "pw_read/pw_write/pw_fsync/pw_sync\n");
	}
	for (int k = 0; k < NCT; k++)
		if (!ct[k].ok)
			printf("%s: skipped (%s)\n", ct_name[k], ct[k].why);
	if (ct[PW].ok)
		prefault_pool(big_bytes + f64_bytes + 64 * MiB);
	printf("method: CLOCK_MONOTONIC around a whole operation (open..close, "
	       "with the fsync/sync\n        when the row has one); each contender "
	       "synced after it (not timed);\n        median of the repetitions, "
	       "spread = min..max\n");
	printf("cold: contender unmounted and mounted again, image dropped from the "
	       "host cache\n      (posix_fadvise DONTNEED), drop_caches=3; cached: "
	       "the file as left by the write rows\n");
	printf("final sync in the create rows: kernel syncfs(2), pagewright "
	       "pw_sync(), fuse2fs fsync(2)\n      of a file open for writing (fuse2fs "
	       "flushes the whole fs on any fsync)\n\n");

	static double t[NROWS][NCT][MAX_REPS];
	static int nt[NROWS][NCT];
	uint64_t run0 = now_ns();
	for (int rep = 0; rep < reps; rep++) {
		uint64_t r0 = now_ns();
		for (size_t ri = 0; ri < NROWS; ri++) {
			for (int j = 0; j < NCT; j++) {
				struct contender *c = &ct[(rep + j) % NCT];
				if (!c->ok)
					continue;
				double s = one_op(c, &rows[ri], buf);
				if (s < 0) {
					printf("%s: dropped at \"%s\" (repetition %d): %s\n",
					       ct_name[c->kind], rows[ri].name, rep + 1, c->why);
					continue;
				}
				t[ri][c->kind][nt[ri][c->kind]++] = s;
				if (verbose)
					printf("#   %-28s %-16s %8.1f ms\n", rows[ri].name,
					       ct_name[c->kind], s * 1e3);
			}
		}
		printf("# repetition %d/%d: %.1f s\n", rep + 1, reps,
		       (double)(now_ns() - r0) / 1e9);
	}
	double run_s = (double)(now_ns() - run0) / 1e9;

	/* Table. */
	struct sample s[NROWS][NCT];
	for (size_t ri = 0; ri < NROWS; ri++)
		for (int k = 0; k < NCT; k++)
			s[ri][k] = nt[ri][k] ? summarise(t[ri][k], nt[ri][k])
			                     : (struct sample){-1, -1, -1};
	printf("\nrates: MB/s = 10^6 bytes/s for seq rows; ops/s (4 KiB writes) "
	       "for rand rows; files/s for create rows\n");
	printf("pw/kern = pagewright time / kernel time (target <= 1.5 on seq "
	       "rows); pw/fuse, kern/fuse = rate / fuse2fs rate (target pw/fuse > 1)"
	       "\n\n");
	printf("%-28s %-7s %21s %21s %21s %7s %7s %7s\n", "row", "unit",
	       "kernel ext2", "fuse2fs", "pagewright", "pw/kern", "pw/fuse",
	       "kern/fuse");
	for (size_t ri = 0; ri < NROWS; ri++) {
		const struct row *r = &rows[ri];
		bool bytes = r->kind == SEQW || r->kind == SEQR;
		double u = row_units(r);
		char cell[NCT][64];
		for (int k = 0; k < NCT; k++) {
			char a[16], b[16], m[16];
			if (s[ri][k].med < 0) {
				snprintf(cell[k], sizeof(cell[k]), "-");
				continue;
			}
			snprintf(cell[k], sizeof(cell[k]), "%s (%s..%s)",
			         fmt_rate(u, s[ri][k].med, bytes, m, sizeof(m)),
			         fmt_rate(u, s[ri][k].max, bytes, a, sizeof(a)),
			         fmt_rate(u, s[ri][k].min, bytes, b, sizeof(b)));
		}
		char pk[16] = "-", pf[16] = "-", kf[16] = "-";
		if (s[ri][PW].med > 0 && s[ri][KERN].med > 0)
			snprintf(pk, sizeof(pk), "%.2f", s[ri][PW].med / s[ri][KERN].med);
		if (s[ri][PW].med > 0 && s[ri][FUSE].med > 0)
			snprintf(pf, sizeof(pf), "%.2fx", s[ri][FUSE].med / s[ri][PW].med);
		if (s[ri][KERN].med > 0 && s[ri][FUSE].med > 0)
			snprintf(kf, sizeof(kf), "%.2fx", s[ri][FUSE].med / s[ri][KERN].med);
		printf("%-28s %-7s %21s %21s %21s %7s %7s %7s\n", r->name,
		       bytes ? "MB/s" : r->kind == CREATE ? "files/s" : "ops/s", cell[KERN],
		       cell[FUSE], cell[PW], pk, pf, kf);
	}

	/* Targets. */
	printf("\ntargets (issue 3):\n");
	if (s[0][PW].med < 0) {
		printf("  not evaluated: pagewright ext2 did not run (%s)\n", ct[PW].why);
	} else {
		int missed = 0;
		for (size_t ri = 0; ri < NROWS; ri++) {
			const struct row *r = &rows[ri];
			double p = s[ri][PW].med, k = s[ri][KERN].med, f = s[ri][FUSE].med;
			if (p < 0)
				continue;
			if (f > 0 && f / p <= 1.0) {
				printf("  MISSED %-28s pagewright/fuse2fs rate %.2fx (fuse2fs is "
				       "%.0f%% faster)\n",
				       r->name, f / p, (p / f - 1) * 100);
				missed++;
			}
			if (r->seq && k > 0 && p / k > 1.5) {
				printf("  MISSED %-28s pagewright takes %.2fx the kernel's time "
				       "(%.0f%% over 1.5x)\n",
				       r->name, p / k, (p / k / 1.5 - 1) * 100);
				missed++;
			}
		}
		printf("  %d miss(es)%s\n", missed,
		       ct[KERN].ok && ct[FUSE].ok ? "" : " (with a reference missing)");
	}
	if (drop_note[0])
		printf("note: %s\n", drop_note);

	/* Unmount and check every image: a benchmark must not hide corruption. */
	printf("\nimage check after the run (e2fsck -fn):\n");
	for (int k = 0; k < NCT; k++) {
		struct contender *c = &ct[k];
		if (c->mounted && ct_umount(c) != 0) {
			printf("  %-11s unmount failed: %s\n", ct_name[k], c->why);
			continue;
		}
		if (access(c->img, F_OK) != 0) {
			printf("  %-11s - (no image)\n", ct_name[k]);
			continue;
		}
		char out[4096];
		char *argv[] = {"e2fsck", "-fn", c->img, NULL};
		int st = run_cmd(argv, out, sizeof(out), 120000);
		if (st == 0) {
			char *last = strrchr(out, ':');
			char summary[200] = "";
			if (last) {
				snprintf(summary, sizeof(summary), "%s", last + 1);
				chomp(summary);
			}
			printf("  %-11s clean (%s)\n", ct_name[k], summary);
		} else {
			printf("  %-11s NOT CLEAN (e2fsck status %d):\n%s\n", ct_name[k], st, out);
		}
	}
	char load[128] = "?";
	FILE *lf = fopen("/proc/loadavg", "r");
	if (lf) {
		if (fgets(load, sizeof(load), lf))
			load[strcspn(load, "\n")] = 0;
		fclose(lf);
	}
	printf("\nbench_ext2: %.0f s of repetitions; load at the end: %s\n", run_s,
	       load);
	cleanup();
	free(src);
	free(buf);
	return 0;
}

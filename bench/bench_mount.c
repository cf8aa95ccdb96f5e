/*
 * bench_mount.c - `pagewright mount` against fuse2fs and the kernel's
 * ext2, all three through a host mount point with ordinary system calls.
 *
 * Question (issue 4): served over FUSE, is pagewright's ext2 ahead of
 * fuse2fs on every row, and at least twice its rate on small files and
 * random writes?  And how far is it from the kernel's own ext2?
 *
 * Contenders, each on its own image made by
 *     mke2fs -q -F -t ext2 -b 4096 IMAGE 1G
 * (sparse, in $TMPDIR or /tmp) and mounted on its own directory:
 *   kernel      mount -o loop IMAGE DIR
 *   fuse2fs     fuse2fs IMAGE DIR -f -o fakeroot,big_writes
 *               (BENCH_FUSE2FS_OPTS overrides the options)
 *   pagewright  build/pagewright mount -f -t ext2 IMAGE DIR [-o BENCH_PW_OPTS]
 *               (default options: cache=direct; BENCH_PAGEWRIGHT names the
 *               binary, default ../pagewright beside this program); its
 *               requests go through io_uring where the kernel has it: the
 *               run switches the fuse module's enable_uring on and back
 *               (BENCH_MOUNT_URING=0 leaves it alone; the banner says)
 *
 * Rows: sequential writes of a new file (1 MiB calls, 256 MiB; 4 KiB calls,
 * 64 MiB), with and without a final fsync in the timed part; sequential
 * reads (cached: as the write rows left the file; cold: see below);
 * random 4 KiB writes and reads in the 64 MiB file (16,384 calls); reads
 * of every page of the 64 MiB file through a shared read-only mapping;
 * creating 10,000 files of 100 bytes in 10 directories, without and with
 * a final sync of the whole filesystem.
 *
 * Between timed operations (not timed) every contender is synced all the
 * way: the kernel with syncfs(2), fuse2fs with fsync(2) of any file (it
 * flushes the whole filesystem then), pagewright with `pagewright sync`
 * (syncfs(2) does not reach a FUSE server); then sync(2) for the images
 * in the host's cache.  The create rows' "+sync" is that same sync, timed.
 *
 * Cold: the contender is unmounted (pagewright: `pagewright umount`,
 * which waits for the server) and mounted again, its image dropped from
 * the host's cache (posix_fadvise DONTNEED) and drop_caches set to 3.
 *
 * Timing: CLOCK_MONOTONIC around one whole operation (open..close, with
 * the fsync or sync when the row has one).  BENCH_MOUNT_REPS repetitions
 * (default 3), contenders taking turns within each (order rotating);
 * median and spread (min..max); BENCH_MOUNT_EACH=1 also prints every
 * timed operation's rate with its repetition and turn.  Data read back is checked (the first 64
 * bytes of every call).  After the run every image is unmounted and
 * checked with e2fsck -fn.
 *
 * Needs root (loop mounts, drop_caches), /dev/fuse, mke2fs, e2fsck and
 * fuse2fs (Debian: apt-get install fuse2fs); a contender that cannot run
 * is printed as skipped.  Runs in a private mount namespace when it can.
 */
#include "bench_common.h"

#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define MAX_REPS 9
#define NFILES 10000
#define NDIRS 10
#define SMALL 100
#define RAND_OPS 16384

enum ct { KERN, FUSE2FS, PWD, PWW, NCT };
static const char *ct_name[NCT] = {"kernel ext2", "fuse2fs", "pagewright", "pagewright wb"};
static const char *ct_tag[NCT] = {"kernel", "fuse2fs", "pw", "pwwb"};
#define IS_PW(k) ((k) == PWD || (k) == PWW)

struct contender {
	enum ct kind;
	bool ok, mounted;
	char why[512];
	char img[PATH_MAX], dir[PATH_MAX], log[PATH_MAX];
	pid_t pid;          /* fuse2fs or pagewright, a child in the foreground */
	char opts[256];     /* pagewright's -o */
};

static struct contender ct[NCT];
static char workdir[256], pw_bin[PATH_MAX];
static char fuse2fs_opts[256] = "fakeroot,big_writes";
static const char *only_rows, *only_cts; /* BENCH_MOUNT_ROWS, BENCH_MOUNT_ONLY */
static bool each;                        /* BENCH_MOUNT_EACH=1: every timed operation */
static size_t big_bytes = 256 * MiB, f64_bytes = 64 * MiB;
static char *src; /* byte at file offset o is src[o % MiB] */

/* ------------------------------------------------------------ commands */

/* Run argv, output to log (or /dev/null), bounded by timeout_s.
 * Return: its exit status, 128 + signal, or -1. */
static int
run_cmd(char *const argv[], const char *log, int timeout_s)
{
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open(log ? log : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	if (pid < 0)
		return -1;
	int st;
	for (int k = 0; k < timeout_s * 200; k++) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		usleep(5000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return -1;
}

static void
log_line(const char *log, char *out, size_t size)
{
	FILE *f = fopen(log, "r");
	out[0] = 0;
	if (f) {
		size_t n = fread(out, 1, size - 1, f);
		out[n] = 0;
		fclose(f);
	}
	for (char *p = out; *p; p++)
		if (*p == '\n')
			*p = ' ';
}

static bool
is_mountpoint(const char *dir)
{
	char parent[PATH_MAX + 4];
	struct stat a, b;
	snprintf(parent, sizeof(parent), "%s/..", dir);
	return stat(dir, &a) == 0 && stat(parent, &b) == 0 && a.st_dev != b.st_dev;
}

/* ------------------------------------------------------ mount / unmount */

static int
start_daemon(struct contender *c)
{
	pid_t parent = getpid();
	c->pid = fork();
	if (c->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(1);
		int fd = open(c->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		if (c->kind == FUSE2FS)
			execlp("fuse2fs", "fuse2fs", c->img, c->dir, "-f", "-o", fuse2fs_opts,
			       (char *)NULL);
		else
			execl(pw_bin, pw_bin, "mount", "-f", "-t", "ext2", c->img, c->dir, "-o", c->opts,
			      (char *)NULL);
		fprintf(stderr, "exec: %s\n", strerror(errno));
		_exit(127);
	}
	for (int k = 0; c->pid > 0 && k < 1000; k++) {
		if (is_mountpoint(c->dir))
			return 0;
		int st;
		if (waitpid(c->pid, &st, WNOHANG) == c->pid) {
			char log[400];
			log_line(c->log, log, sizeof(log));
			snprintf(c->why, sizeof(c->why), "%s exited: %s", ct_name[c->kind], log);
			c->pid = 0;
			return -1;
		}
		usleep(10000);
	}
	snprintf(c->why, sizeof(c->why), "%s did not mount within 10 s", ct_name[c->kind]);
	return -1;
}

/* Wait for a daemon to exit (it writes back first); its status. */
static int
reap(struct contender *c, int timeout_s)
{
	int st = 0;
	for (int k = 0; c->pid > 0 && k < timeout_s * 100; k++) {
		if (waitpid(c->pid, &st, WNOHANG) == c->pid) {
			c->pid = 0;
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		}
		usleep(10000);
	}
	if (c->pid > 0) {
		kill(c->pid, SIGKILL);
		waitpid(c->pid, &st, 0);
		c->pid = 0;
		return -1;
	}
	return 0;
}

static int
ct_mount(struct contender *c)
{
	if (c->kind == KERN) {
		char *argv[] = {"mount", "-o", "loop", c->img, c->dir, NULL};
		if (run_cmd(argv, c->log, 30) != 0) {
			char log[400];
			log_line(c->log, log, sizeof(log));
			snprintf(c->why, sizeof(c->why), "mount -o loop: %s", log);
			return -1;
		}
	} else if (start_daemon(c) != 0) {
		return -1;
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
	int r;
	if (IS_PW(c->kind)) {
		char *argv[] = {pw_bin, "umount", c->dir, NULL};
		r = run_cmd(argv, NULL, 300);
		if (r == 0)
			r = reap(c, 300);
	} else {
		r = -1;
		for (int k = 0; k < 100 && r != 0; k++)
			if ((r = umount2(c->dir, 0)) != 0)
				usleep(20000);
		if (c->kind == FUSE2FS && reap(c, 300) != 0)
			r = -1;
	}
	if (r != 0)
		snprintf(c->why, sizeof(c->why), "unmount failed");
	return r ? -1 : 0;
}

/* ------------------------------------------------------------- syncing */

/* Everything the contender holds reaches its image (see the header). */
static int
ct_sync(struct contender *c)
{
	char path[PATH_MAX + 16];
	int fd, r;
	switch (c->kind) {
	case KERN:
		fd = open(c->dir, O_RDONLY | O_DIRECTORY);
		r = fd < 0 ? -1 : syncfs(fd);
		break;
	case FUSE2FS:
		snprintf(path, sizeof(path), "%s/.sync", c->dir);
		fd = open(path, O_WRONLY | O_CREAT, 0644);
		r = fd < 0 ? -1 : fsync(fd);
		break;
	default: {
		char *argv[] = {pw_bin, "sync", c->dir, NULL};
		return run_cmd(argv, NULL, 300) == 0 ? 0 : -1;
	}
	}
	if (fd >= 0)
		close(fd);
	return r;
}

static int
fail(struct contender *c, const char *what)
{
	snprintf(c->why, sizeof(c->why), "%s: %s", what, errno ? strerror(errno) : "failed");
	c->ok = false;
	return -1;
}

static int
settle(struct contender *c)
{
	if (ct_sync(c) != 0)
		return fail(c, "sync after the row");
	sync();
	return 0;
}

static int
drop_caches(struct contender *c)
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
	fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
	if (fd >= 0) {
		if (write(fd, "3", 1) != 1)
			fprintf(stderr, "bench_mount: drop_caches: %s\n", strerror(errno));
		close(fd);
	}
	return 0;
}

/* ------------------------------------------------------------ the rows */

enum kind { SEQW, SEQR, RANDW, RANDR, MAPR, CREATE };

struct row {
	const char *name;
	enum kind kind;
	size_t io;          /* bytes per call */
	bool sync;          /* a final fsync or sync in the timed part */
	bool cold;          /* caches dropped first */
	bool target2x;      /* the issue wants twice fuse2fs's rate here */
	const char *file;
};

/* The small-file rows come first: after the big write rows (the
 * kernel's above all) every FUSE server's creates stay slower for the
 * rest of the run on this VM, fuse2fs's and pagewright's alike (docs/
 * fuse.md).  Cached reads follow the writes that leave the file cached;
 * the cold rows come last, as each one drops every cache. */
static const struct row rows[] = {
	{"create 10k x 100 B", CREATE, SMALL, false, false, true, NULL},
	{"create 10k x 100 B +sync", CREATE, SMALL, true, false, true, NULL},
	{"seq write 1 MiB", SEQW, MiB, false, false, false, "big"},
	{"seq write 1 MiB +fsync", SEQW, MiB, true, false, false, "big"},
	{"seq read 1 MiB", SEQR, MiB, false, false, false, "big"},
	{"seq write 4 KiB +fsync", SEQW, 4 * KiB, true, false, false, "f64"},
	{"seq read 4 KiB", SEQR, 4 * KiB, false, false, false, "f64"},
	{"rand write 4 KiB", RANDW, 4 * KiB, false, false, true, "f64"},
	{"rand write 4 KiB +fsync", RANDW, 4 * KiB, true, false, true, "f64"},
	{"rand read 4 KiB", RANDR, 4 * KiB, false, false, false, "f64"},
	{"mapped read", MAPR, 4 * KiB, false, false, false, "f64"},
	{"seq read 1 MiB cold", SEQR, MiB, false, true, false, "big"},
	{"rand read 4 KiB cold", RANDR, 4 * KiB, false, true, false, "f64"},
	{"mapped read cold", MAPR, 4 * KiB, false, true, false, "f64"},
};
#define NROWS (sizeof(rows) / sizeof(rows[0]))

static size_t
row_bytes(const struct row *r)
{
	return r->file && strcmp(r->file, "big") == 0 ? big_bytes : f64_bytes;
}

/* Units of work per operation: bytes, calls or files. */
static double
row_units(const struct row *r)
{
	return r->kind == CREATE ? NFILES : r->kind == RANDW || r->kind == RANDR
	                                        ? RAND_OPS : (double)row_bytes(r);
}

static void
path_of(const struct contender *c, const char *rel, char *out, size_t size)
{
	snprintf(out, size, "%s/%s", c->dir, rel);
}

static int
remove_tree(struct contender *c)
{
	char p[PATH_MAX + 64];
	for (int d = 0; d < NDIRS; d++) {
		for (int f = 0; f < NFILES / NDIRS; f++) {
			snprintf(p, sizeof(p), "%s/t/d%d/f%d", c->dir, d, f);
			if (unlink(p) != 0 && errno != ENOENT)
				return fail(c, "unlink (removing the last tree)");
		}
		snprintf(p, sizeof(p), "%s/t/d%d", c->dir, d);
		if (rmdir(p) != 0 && errno != ENOENT)
			return fail(c, "rmdir (removing the last tree)");
	}
	snprintf(p, sizeof(p), "%s/t", c->dir);
	return rmdir(p) != 0 && errno != ENOENT ? fail(c, "rmdir t") : 0;
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

static bool
data_ok(struct contender *c, const char *buf, size_t off, size_t n)
{
	size_t k = n < 64 ? n : 64;
	if (memcmp(buf, src + off % MiB, k) == 0)
		return true;
	snprintf(c->why, sizeof(c->why), "data read back at offset %zu is not what was written",
	         off);
	c->ok = false;
	return false;
}

static int
op_seq_write(struct contender *c, const struct row *r, const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return fail(c, "open (write row)");
	for (size_t off = 0; off < row_bytes(r); off += r->io)
		if (write(fd, src + off % MiB, r->io) != (ssize_t)r->io)
			return fail(c, errno ? "write" : "write (short: out of space?)");
	if (r->sync && fsync(fd) != 0)
		return fail(c, "fsync");
	return close(fd) ? fail(c, "close") : 0;
}

static int
op_seq_read(struct contender *c, const struct row *r, const char *path, char *buf)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return fail(c, "open (read row)");
	size_t off = 0;
	for (ssize_t n; (n = read(fd, buf, r->io)) != 0; off += (size_t)n)
		if (n < 0 || !data_ok(c, buf, off, (size_t)n))
			return n < 0 ? fail(c, "read") : -1;
	close(fd);
	if (off == row_bytes(r))
		return 0;
	snprintf(c->why, sizeof(c->why), "read %zu bytes of %zu", off, row_bytes(r));
	c->ok = false;
	return -1;
}

/* Random 4 KiB calls: writes put back the bytes already there. */
static int
op_random(struct contender *c, const struct row *r, const char *path, char *buf)
{
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	size_t pages = f64_bytes / (4 * KiB);
	bool wr = r->kind == RANDW;
	int fd = open(path, wr ? O_WRONLY : O_RDONLY);
	if (fd < 0)
		return fail(c, "open (random row)");
	for (long k = 0; k < RAND_OPS; k++) {
		size_t off = (size_t)(xorshift(&seed) % pages) * 4 * KiB;
		ssize_t n = wr ? pwrite(fd, src + off % MiB, 4 * KiB, (off_t)off)
		               : pread(fd, buf, 4 * KiB, (off_t)off);
		if (n != (ssize_t)(4 * KiB))
			return fail(c, wr ? "pwrite" : "pread");
		if (!wr && !data_ok(c, buf, off, 4 * KiB))
			return -1;
	}
	if (r->sync && fsync(fd) != 0)
		return fail(c, "fsync");
	return close(fd) ? fail(c, "close") : 0;
}

static int
op_mapped(struct contender *c, const char *path, char *buf)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return fail(c, "open (mapped row)");
	char *m = mmap(NULL, f64_bytes, PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		return fail(c, "mmap");
	for (size_t off = 0; off < f64_bytes; off += 4 * KiB) {
		memcpy(buf, m + off, 4 * KiB);
		clobber();
		if (!data_ok(c, buf, off, 4 * KiB))
			return -1;
	}
	munmap(m, f64_bytes);
	close(fd);
	return 0;
}

static int
op_create(struct contender *c, const struct row *r)
{
	char p[PATH_MAX + 64];
	snprintf(p, sizeof(p), "%s/t", c->dir);
	if (mkdir(p, 0755) != 0)
		return fail(c, "mkdir t");
	for (int d = 0; d < NDIRS; d++) {
		snprintf(p, sizeof(p), "%s/t/d%d", c->dir, d);
		if (mkdir(p, 0755) != 0)
			return fail(c, "mkdir");
		for (int f = 0; f < NFILES / NDIRS; f++) {
			snprintf(p, sizeof(p), "%s/t/d%d/f%d", c->dir, d, f);
			int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0644);
			if (fd < 0 || write(fd, src, SMALL) != SMALL || close(fd) != 0)
				return fail(c, "create");
		}
	}
	return r->sync && ct_sync(c) != 0 ? fail(c, "sync (create row)") : 0;
}

/* One timed operation of row r by c: seconds, or -1 (c is dropped). */
static double
one_op(struct contender *c, const struct row *r, char *buf)
{
	char path[PATH_MAX + 16] = "";
	if (r->file)
		path_of(c, r->file, path, sizeof(path));
	if (r->kind == SEQW && ((unlink(path) != 0 && errno != ENOENT) || settle(c) != 0))
		return fail(c, "unlink (before a write row)");
	if (r->kind == CREATE && (remove_tree(c) != 0 || settle(c) != 0))
		return -1;
	if (r->cold && drop_caches(c) != 0)
		return -1;
	errno = 0;
	uint64_t t0 = now_ns();
	int err;
	switch (r->kind) {
	case SEQW: err = op_seq_write(c, r, path); break;
	case SEQR: err = op_seq_read(c, r, path, buf); break;
	case RANDW:
	case RANDR: err = op_random(c, r, path, buf); break;
	case MAPR: err = op_mapped(c, path, buf); break;
	default: err = op_create(c, r); break;
	}
	uint64_t t1 = now_ns();
	if (err || (r->kind != SEQR && r->kind != RANDR && r->kind != MAPR && settle(c) != 0))
		return -1;
	return (double)(t1 - t0) / 1e9;
}

/* -------------------------------------------------------------- set-up */

/*
 * FUSE over io_uring (src/fuse/uring.c) needs the fuse module's
 * enable_uring, off by default.  The run switches it on (BENCH_MOUNT_URING=0:
 * leaves it alone) and puts the old value back at the end; fuse2fs (libfuse
 * 3.14) does not use it either way.  Returns the transport pagewright will
 * get, for the banner.
 */
#define URING_PARAM "/sys/module/fuse/parameters/enable_uring"
static char uring_was;   /* 'Y' or 'N' if switched, else 0 */

static const char *
uring_setup(void)
{
	char v = 0;
	FILE *f = fopen(URING_PARAM, "r");
	if (!f)
		return "/dev/fuse (this kernel has no FUSE over io_uring)";
	if (fscanf(f, " %c", &v) != 1)
		v = 'N';
	fclose(f);
	const char *e = getenv("BENCH_MOUNT_URING");
	if (e && strcmp(e, "0") == 0)
		return v == 'Y' ? "io_uring (enable_uring was on)" : "/dev/fuse (BENCH_MOUNT_URING=0)";
	if (v == 'Y')
		return "io_uring (enable_uring was on)";
	f = fopen(URING_PARAM, "w");
	if (!f || fputs("Y\n", f) < 0 || fclose(f) != 0)
		return "/dev/fuse (cannot switch enable_uring on)";
	uring_was = v;
	return "io_uring (enable_uring switched on for the run)";
}

static void
uring_restore(void)
{
	if (!uring_was)
		return;
	FILE *f = fopen(URING_PARAM, "w");
	if (f) {
		fprintf(f, "%c\n", uring_was);
		fclose(f);
	}
	uring_was = 0;
}

static void
cleanup(void)
{
	static bool done;
	if (done)
		return;
	done = true;
	uring_restore();
	for (int k = 0; k < NCT; k++) {
		struct contender *c = &ct[k];
		if (c->mounted)
			ct_umount(c);
		if (c->pid > 0) {
			kill(c->pid, SIGTERM);
			reap(c, 30);
		}
		unlink(c->img);
		unlink(c->log);
		rmdir(c->dir);
	}
	if (workdir[0])
		rmdir(workdir);
}

static void
on_signal(int sig)
{
	for (int k = 0; k < NCT; k++) {
		if (ct[k].pid > 0)
			kill(ct[k].pid, SIGTERM);
		if (ct[k].dir[0])
			umount2(ct[k].dir, MNT_DETACH);
	}
	static const char msg[] = "bench_mount: interrupted or timed out\n";
	if (write(2, msg, sizeof(msg) - 1) < 0) {
	}
	_exit(128 + sig);
}

/* Not timed: a file as large as the two the rows use, written and
 * removed, so that no contender's first row pays for growing its memory
 * (pagewright's page pool; the kernel's page cache is warm already). */
static int
warm_up(struct contender *c)
{
	char path[PATH_MAX + 16];
	path_of(c, "warm", path, sizeof(path));
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return fail(c, "open (warm-up)");
	for (size_t off = 0; off < big_bytes + f64_bytes; off += MiB)
		if (write(fd, src, MiB) != (ssize_t)MiB)
			return fail(c, "write (warm-up)");
	close(fd);
	return unlink(path) != 0 ? fail(c, "unlink (warm-up)") : settle(c);
}

static int
set_up(struct contender *c)
{
	if (c->kind != KERN && access("/dev/fuse", R_OK | W_OK) != 0)
		return snprintf(c->why, sizeof(c->why), "/dev/fuse: %s", strerror(errno)), -1;
	if (only_cts && !strstr(only_cts, ct_tag[c->kind]))
		return snprintf(c->why, sizeof(c->why), "not in BENCH_MOUNT_ONLY"), -1;
	if (IS_PW(c->kind) && access(pw_bin, X_OK) != 0)
		return snprintf(c->why, sizeof(c->why), "%.300s: %s (make build/pagewright)",
		                pw_bin, strerror(errno)), -1;
	char *mk[] = {"mke2fs", "-q", "-F", "-t", "ext2", "-b", "4096", c->img, "1G", NULL};
	if (run_cmd(mk, c->log, 60) != 0)
		return snprintf(c->why, sizeof(c->why), "mke2fs failed"), -1;
	if (ct_mount(c) != 0)
		return -1;
	c->ok = true;
	return warm_up(c);
}

static void
find_pagewright(const char *argv0)
{
	const char *e = getenv("BENCH_PAGEWRIGHT");
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (e && *e) {
		snprintf(pw_bin, sizeof(pw_bin), "%s", e);
		return;
	}
	self[n > 0 ? n : 0] = 0;
	char *slash = strrchr(n > 0 ? self : (char *)argv0, '/');
	if (n > 0 && slash)
		snprintf(pw_bin, sizeof(pw_bin), "%.*s/../pagewright", (int)(slash - self), self);
	else
		snprintf(pw_bin, sizeof(pw_bin), "build/pagewright");
}

/* One cell: the median rate and its spread. */
static void
cell(char *out, size_t size, const struct sample *x, double units, double div)
{
	if (x->med < 0)
		snprintf(out, size, "-");
	else
		snprintf(out, size, "%.0f (%.0f..%.0f)", units / x->med / div, units / x->max / div,
		         units / x->min / div);
}

/* pagewright contender k against fuse2fs on row r: "1.23x", and a miss. */
static int
ratio(char *out, size_t size, const struct row *r, struct sample *s, enum ct k)
{
	double p = s[k].med, f = s[FUSE2FS].med;
	snprintf(out, size, "-");
	if (p <= 0 || f <= 0)
		return 0;
	bool miss = f / p < (r->target2x ? 2.0 : 1.0);
	snprintf(out, size, "%.2fx%s", f / p, miss ? "!" : "");
	return miss;
}

static void
print_table(double t[][NCT][MAX_REPS], int nt[][NCT])
{
	struct sample s[NROWS][NCT];
	for (size_t ri = 0; ri < NROWS; ri++)
		for (int k = 0; k < NCT; k++)
			s[ri][k] = nt[ri][k] ? summarise(t[ri][k], nt[ri][k])
			                     : (struct sample){-1, -1, -1};
	printf("\nrates: MB/s (10^6 bytes/s) for seq and mapped rows, calls/s for rand rows, "
	       "files/s for create rows;\nmedian (slowest..fastest).  pw/f2fs, wb/f2fs, wb/kern: "
	       "pagewright's rate (cache=direct,\ncache=writeback) over fuse2fs's and the "
	       "kernel's; \"!\" marks a missed target\n\n");
	printf("%-24s %-7s %18s %17s %17s %17s %7s %7s %7s\n", "row", "unit", "kernel ext2",
	       "fuse2fs", "pw direct", "pw writeback", "pw/f2fs", "wb/f2fs", "wb/kern");
	int missed[NCT] = {0};
	for (size_t ri = 0; ri < NROWS; ri++) {
		const struct row *r = &rows[ri];
		bool bytes = r->kind == SEQW || r->kind == SEQR || r->kind == MAPR;
		char c[NCT][64], rd[16], rw[16], wk[16] = "-";
		for (int k = 0; k < NCT; k++)
			cell(c[k], sizeof(c[k]), &s[ri][k], row_units(r), bytes ? 1e6 : 1);
		missed[PWD] += ratio(rd, sizeof(rd), r, s[ri], PWD);
		missed[PWW] += ratio(rw, sizeof(rw), r, s[ri], PWW);
		if (s[ri][PWW].med > 0 && s[ri][KERN].med > 0)
			snprintf(wk, sizeof(wk), "%.2fx", s[ri][KERN].med / s[ri][PWW].med);
		printf("%-24s %-7s %18s %17s %17s %17s %7s %7s %7s\n", r->name,
		       bytes ? "MB/s" : r->kind == CREATE ? "files/s" : "calls/s", c[KERN], c[FUSE2FS],
		       c[PWD], c[PWW], rd, rw, wk);
	}
	printf("\ntargets (issue 4): ahead of fuse2fs on every row, 2x on random writes and "
	       "small files:\n  cache=direct %d miss(es), cache=writeback %d miss(es)%s\n",
	       missed[PWD], missed[PWW], ct[FUSE2FS].ok ? "" : " (fuse2fs missing)");
}

static void
check_images(void)
{
	printf("\nimages after the run (e2fsck -fn):\n");
	for (int k = 0; k < NCT; k++) {
		struct contender *c = &ct[k];
		if (c->mounted && ct_umount(c) != 0) {
			printf("  %-11s unmount failed\n", ct_name[k]);
			continue;
		}
		if (access(c->img, F_OK) != 0)
			continue;
		char *argv[] = {"e2fsck", "-fn", c->img, NULL};
		int st = run_cmd(argv, c->log, 120);
		printf("  %-11s %s (e2fsck status %d)\n", ct_name[k], st == 0 ? "clean" : "NOT CLEAN",
		       st);
	}
}

int
main(int argc, char **argv)
{
	(void)argc;
	int reps = 3;
	const char *e;
	if ((e = getenv("BENCH_MOUNT_REPS")) && atoi(e) > 0)
		reps = atoi(e) > MAX_REPS ? MAX_REPS : atoi(e);
	if ((e = getenv("BENCH_FUSE2FS_OPTS")) && *e)
		snprintf(fuse2fs_opts, sizeof(fuse2fs_opts), "%s", e);
	snprintf(ct[PWD].opts, sizeof(ct[PWD].opts), "%s",
	         (e = getenv("BENCH_PW_OPTS")) && *e ? e : "cache=direct");
	snprintf(ct[PWW].opts, sizeof(ct[PWW].opts), "%s",
	         (e = getenv("BENCH_PW_WB_OPTS")) && *e ? e : "cache=writeback");
	only_rows = getenv("BENCH_MOUNT_ROWS");
	each = getenv("BENCH_MOUNT_EACH") && *getenv("BENCH_MOUNT_EACH") == '1';
	only_cts = getenv("BENCH_MOUNT_ONLY");
	find_pagewright(argv[0]);
	char ns[128] = "private mount namespace";
	if (unshare(CLONE_NEWNS) != 0 || mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		snprintf(ns, sizeof(ns), "host mount namespace (unshare: %s)", strerror(errno));
	setvbuf(stdout, NULL, _IOLBF, 0);
	print_machine("bench_mount: an ext2 image through pagewright mount, fuse2fs and the "
	              "kernel (loop)");
	const char *tmp = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	snprintf(workdir, sizeof(workdir), "%s/pw-bench-mount.XXXXXX", tmp);
	die_if(!mkdtemp(workdir), "mkdtemp");
	atexit(cleanup);
	const char *transport = uring_setup();
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGALRM, &sa, NULL);
	alarm(getenv("BENCH_MOUNT_TIMEOUT") ? (unsigned)atoi(getenv("BENCH_MOUNT_TIMEOUT")) : 1800);
	src = malloc(MiB);
	char *buf = malloc(MiB);
	die_if(!src || !buf, "malloc");
	fill_pattern(src, MiB, 3);
	for (int k = 0; k < NCT; k++) {
		struct contender *c = &ct[k];
		c->kind = (enum ct)k;
		snprintf(c->img, sizeof(c->img), "%s/%s.img", workdir, ct_tag[k]);
		snprintf(c->dir, sizeof(c->dir), "%s/%s.mnt", workdir, ct_tag[k]);
		snprintf(c->log, sizeof(c->log), "%s/%s.log", workdir, ct_tag[k]);
		die_if(mkdir(c->dir, 0755) != 0, c->dir);
		if (set_up(c) != 0)
			printf("%s: skipped (%s)\n", ct_name[k], c->why);
	}
	printf("images: mke2fs -q -F -t ext2 -b 4096 IMAGE 1G in %s; run in: %s\n", workdir, ns);
	printf("kernel:     mount -o loop IMAGE DIR\nfuse2fs:    fuse2fs IMAGE DIR -f -o %s\n"
	       "pagewright: %s mount -f -t ext2 IMAGE DIR -o %s (pw direct), -o %s (pw "
	       "writeback)\n", fuse2fs_opts, pw_bin, ct[PWD].opts, ct[PWW].opts);
	printf("pagewright's requests: through %s\n", transport);
	printf("files: %zu MiB (1 MiB rows), %zu MiB (4 KiB, random and mapped rows); %d random "
	       "calls; %d files of %d B in %d directories\n", big_bytes / MiB, f64_bytes / MiB,
	       RAND_OPS, NFILES, SMALL, NDIRS);
	printf("method: one whole operation timed (open..close, with the fsync/sync of the "
	       "row); everything synced\n        after each (not timed); %d repetitions, "
	       "contenders in rotating order\n", reps);

	static double t[NROWS][NCT][MAX_REPS];
	static int nt[NROWS][NCT];
	uint64_t run0 = now_ns();
	for (int rep = 0; rep < reps; rep++) {
		uint64_t r0 = now_ns();
		for (size_t ri = 0; ri < NROWS; ri++) {
			if (only_rows && !strstr(only_rows, rows[ri].name))
				continue;
			for (int j = 0; j < NCT; j++) {
				struct contender *c = &ct[(rep + j) % NCT];
				if (!c->ok)
					continue;
				double s = one_op(c, &rows[ri], buf);
				if (s < 0)
					printf("%s: dropped at \"%s\": %s\n", ct_name[c->kind], rows[ri].name,
					       c->why);
				else
					t[ri][c->kind][nt[ri][c->kind]++] = s;
				if (s > 0 && each)
					printf("  rep %d, %d%s: %-24s %-12s %.0f\n", rep + 1, j + 1,
					       j == 0 ? "st" : j == 1 ? "nd" : j == 2 ? "rd" : "th",
					       rows[ri].name, ct_name[c->kind],
					       row_units(&rows[ri]) / s /
					           (rows[ri].kind == SEQW || rows[ri].kind == SEQR ||
					                    rows[ri].kind == MAPR
					                ? 1e6
					                : 1));
			}
		}
		printf("# repetition %d/%d: %.0f s, load %s", rep + 1, reps,
		       (double)(now_ns() - r0) / 1e9, "");
		FILE *lf = fopen("/proc/loadavg", "r");
		char load[128] = "?\n";
		if (lf) {
			if (!fgets(load, sizeof(load), lf))
				snprintf(load, sizeof(load), "?\n");
			fclose(lf);
		}
		fputs(load, stdout);
	}
	print_table(t, nt);
	check_images();
	printf("\nbench_mount: %.0f s of repetitions\n", (double)(now_ns() - run0) / 1e9);
	cleanup();
	return 0;
}

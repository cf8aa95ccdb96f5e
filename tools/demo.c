/*
 * demo.c - `pagewright demo`: the embedded default of the README's first
 * command.
 *
 *   1. make a 256 MiB ext2 image with mke2fs in a temporary directory;
 *   2. serve it with `pagewright mount -f` (a child process) on a
 *      directory beside it;
 *   3. run a short workload on the mount with ordinary system calls from
 *      this process, a progress line per step: sequential writes and
 *      fsync, small files, random 4 KiB writes, reads checked against what
 *      was written, loads and stores through a shared mapping, renames and
 *      unlinks;
 *   4. print what pagewright's cache did (`pagewright stat`);
 *   5. `pagewright umount`, which waits until the server has written
 *      everything back and exited, and take the server's exit status;
 *   6. `e2fsck -fn` the image, then mount it in this process through the
 *      pw_ API (no FUSE) and check every byte the workload left.
 *
 * Without FUSE (no /dev/fuse, a build without libfuse3, or a mount that
 * fails: the reason is printed) or with --in-process, step 3 runs the same
 * workload through pagewright's API in this process, on the same kind of
 * image; steps 2 and 5 become pw_mount and pw_umount.
 *
 * The workload is one table of calls (struct io): the kernel's system
 * calls, or the pw_ calls of the same names and types.  Every failure is
 * one line and exit status 1; --keep leaves the directory behind.
 */
#include "tool.h"
#include "ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pagewright/pagewright.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum {
	NBIG = 4,                   /* large files */
	BIG = 16 << 20,             /* bytes each */
	BLK = 4096,
	NBLK = BIG / BLK,
	CHUNK = 1 << 20,            /* sequential I/O size */
	NDIRS = 10,
	NSMALL = 1000,              /* small files, 4 KiB each */
	NRANDOM = 2000,             /* random 4 KiB writes, and as many reads */
	NSTORES = 256,              /* pages stored to through the mapping */
	NSTEPS = 6,
};

/* The calls the workload makes: the kernel's or pagewright's. */
struct io {
	const char *root;
	int (*open)(const char *path, int flags, ...);
	int (*close)(int fd);
	ssize_t (*pread)(int fd, void *buf, size_t n, off_t off);
	ssize_t (*pwrite)(int fd, const void *buf, size_t n, off_t off);
	int (*fsync)(int fd);
	int (*mkdir)(const char *path, mode_t mode);
	int (*unlink)(const char *path);
	int (*rename)(const char *from, const char *to);
	void *(*mmap)(void *addr, size_t len, int prot, int flags, int fd, off_t off);
	int (*munmap)(void *addr, size_t len);
	int (*msync)(void *addr, size_t len, int flags);
};

static const struct io kernel_io = {
	.open = open, .close = close, .pread = pread, .pwrite = pwrite, .fsync = fsync,
	.mkdir = mkdir, .unlink = unlink, .rename = rename, .mmap = mmap,
	.munmap = munmap, .msync = msync,
};

static const struct io pw_io = {
	.open = pw_open, .close = pw_close, .pread = pw_pread, .pwrite = pw_pwrite,
	.fsync = pw_fsync, .mkdir = pw_mkdir, .unlink = pw_unlink, .rename = pw_rename,
	.mmap = pw_mmap, .munmap = pw_munmap, .msync = pw_msync,
};

/* What the files should hold: each 4 KiB block of a large file has a
 * generation (0: as first written), each small file a state. */
enum { SMALL_GONE, SMALL_AT_NAME, SMALL_RENAMED };
static struct {
	uint8_t gen[NBIG][NBLK];
	uint8_t small[NSMALL];
	unsigned char *buf, *want;  /* CHUNK each */
} model;

static struct {
	char dir[PATH_MAX];         /* the temporary directory */
	char image[PATH_MAX + 16];
	char mnt[PATH_MAX + 16];
	char log[PATH_MAX + 16];    /* the server's stderr */
	char self[PATH_MAX];        /* this program */
	pid_t server;
	bool mounted;               /* the FUSE mount is up */
	bool tty;
	int step;
	double t0;                  /* when the demo started */
} demo;

static double
now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int
failf(const char *fmt, ...)
{
	va_list ap;
	if (demo.tty)
		fputs("\n", stdout);
	fflush(stdout);
	fputs("pagewright demo: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return -1;
}

/* --------------------------------------------------------- data pattern */

static uint64_t
mix(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* The 4 KiB block blk of file id at generation gen. */
static void
fill_block(unsigned char *p, unsigned id, unsigned blk, unsigned gen)
{
	uint64_t seed = ((uint64_t)id << 40) ^ ((uint64_t)gen << 32) ^ ((uint64_t)blk << 9);
	for (unsigned w = 0; w < BLK / 8; w++) {
		uint64_t v = mix(seed + w);
		memcpy(p + 8 * w, &v, 8);
	}
}

/* What bytes [off, off + len) of large file f should hold (block-aligned). */
static void
expect_big(unsigned f, size_t off, size_t len, unsigned char *p)
{
	for (size_t b = off / BLK; b < (off + len) / BLK; b++, p += BLK)
		fill_block(p, f, (unsigned)b, model.gen[f][b]);
}

/* ------------------------------------------------------------ progress */

static struct {
	const char *what;
	double start, last;
} step;

static void
step_begin(const char *what)
{
	demo.step++;
	step.what = what;
	step.start = step.last = now();
	if (demo.tty) {
		printf("\r  [%d/%d] %-18s ...\033[K", demo.step, NSTEPS, what);
		fflush(stdout);
	}
}

/* On a terminal, "\r" updates at most every 50 ms. */
static void
step_progress(long done, long total, const char *unit)
{
	double t = now();
	if (!demo.tty || t - step.last < 0.05)
		return;
	step.last = t;
	printf("\r  [%d/%d] %-18s %ld/%ld %s\033[K", demo.step, NSTEPS, step.what, done, total,
	       unit);
	fflush(stdout);
}

static void
step_end(const char *fmt, ...)
{
	char what[160];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	printf("%s  [%d/%d] %-18s %5.2f s  %s%s\n", demo.tty ? "\r" : "", demo.step, NSTEPS,
	       step.what, now() - step.start, what, demo.tty ? "\033[K" : "");
	fflush(stdout);
}

static double
mbps(double bytes)
{
	double t = now() - step.start;
	return t > 0 ? bytes / t / 1e6 : 0;
}

/* ------------------------------------------------------------- workload */

static void
big_path(const struct io *io, unsigned f, char *buf, size_t size)
{
	snprintf(buf, size, "%s/big%u", io->root, f);
}

static void
small_path(const struct io *io, unsigned k, bool renamed, char *buf, size_t size)
{
	snprintf(buf, size, "%s/small/d%02u/%s%04u", io->root, k % NDIRS,
	         renamed ? "renamed" : "f", k);
}

static int
write_big(const struct io *io)
{
	step_begin("sequential writes");
	for (unsigned f = 0; f < NBIG; f++) {
		char path[PATH_MAX + 32];
		big_path(io, f, path, sizeof(path));
		int fd = io->open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
		if (fd < 0)
			return failf("create %s: %s", path, strerror(errno));
		for (size_t off = 0; off < BIG; off += CHUNK) {
			expect_big(f, off, CHUNK, model.buf);
			if (io->pwrite(fd, model.buf, CHUNK, (off_t)off) != CHUNK)
				return failf("write %s: %s", path, strerror(errno));
			step_progress((long)((f * BIG + off + CHUNK) >> 20), NBIG * BIG >> 20, "MiB");
		}
		if (io->fsync(fd) != 0 || io->close(fd) != 0)
			return failf("fsync %s: %s", path, strerror(errno));
	}
	step_end("%d MiB in %d files, 1 MiB writes, fsync (%.0f MB/s)", NBIG * BIG >> 20, NBIG,
	         mbps((double)NBIG * BIG));
	return 0;
}

static int
write_small(const struct io *io)
{
	char path[PATH_MAX + 32];
	step_begin("small files");
	snprintf(path, sizeof(path), "%s/small", io->root);
	if (io->mkdir(path, 0755) != 0)
		return failf("mkdir %s: %s", path, strerror(errno));
	for (unsigned d = 0; d < NDIRS; d++) {
		snprintf(path, sizeof(path), "%s/small/d%02u", io->root, d);
		if (io->mkdir(path, 0755) != 0)
			return failf("mkdir %s: %s", path, strerror(errno));
	}
	for (unsigned k = 0; k < NSMALL; k++) {
		small_path(io, k, false, path, sizeof(path));
		int fd = io->open(path, O_CREAT | O_EXCL | O_WRONLY, 0644);
		fill_block(model.buf, 100 + k, 0, 0);
		if (fd < 0 || io->pwrite(fd, model.buf, BLK, 0) != BLK || io->close(fd) != 0)
			return failf("create %s: %s", path, strerror(errno));
		model.small[k] = SMALL_AT_NAME;
		step_progress(k + 1, NSMALL, "files");
	}
	step_end("%d files of 4 KiB in %d directories (%.0f files/s)", NSMALL, NDIRS,
	         NSMALL / (now() - step.start));
	return 0;
}

static int
write_random(const struct io *io, uint64_t *rng)
{
	char path[PATH_MAX + 32];
	step_begin("random writes");
	big_path(io, 0, path, sizeof(path));
	int fd = io->open(path, O_RDWR);
	if (fd < 0)
		return failf("open %s: %s", path, strerror(errno));
	for (unsigned k = 0; k < NRANDOM; k++) {
		unsigned b = (unsigned)(mix(++*rng) % NBLK);
		model.gen[0][b]++;
		fill_block(model.buf, 0, b, model.gen[0][b]);
		if (io->pwrite(fd, model.buf, BLK, (off_t)b * BLK) != BLK)
			return failf("write %s: %s", path, strerror(errno));
		step_progress(k + 1, NRANDOM, "writes");
	}
	if (io->fsync(fd) != 0 || io->close(fd) != 0)
		return failf("fsync %s: %s", path, strerror(errno));
	step_end("%d writes of 4 KiB at random places, fsync (%.0f/s)", NRANDOM,
	         NRANDOM / (now() - step.start));
	return 0;
}

/* Read every large file and every small one, checking each byte.  Also
 * the last step of the demo, on the image mounted in this process. */
static int
check_all(const struct io *io, bool progress)
{
	char path[PATH_MAX + 32];
	for (unsigned f = 0; f < NBIG; f++) {
		big_path(io, f, path, sizeof(path));
		int fd = io->open(path, O_RDONLY);
		if (fd < 0)
			return failf("open %s: %s", path, strerror(errno));
		for (size_t off = 0; off < BIG; off += CHUNK) {
			expect_big(f, off, CHUNK, model.want);
			ssize_t n = io->pread(fd, model.buf, CHUNK, (off_t)off);
			if (n != CHUNK)
				return failf("read %s: %s", path, n < 0 ? strerror(errno) : "short read");
			if (memcmp(model.buf, model.want, CHUNK) != 0)
				return failf("%s: wrong data near byte %zu", path, off);
			if (progress)
				step_progress((long)((f * BIG + off + CHUNK) >> 20), NBIG * BIG >> 20, "MiB");
		}
		io->close(fd);
	}
	for (unsigned k = 0; k < NSMALL; k++) {
		if (model.small[k] == SMALL_GONE)
			continue;
		small_path(io, k, model.small[k] == SMALL_RENAMED, path, sizeof(path));
		int fd = io->open(path, O_RDONLY);
		fill_block(model.want, 100 + k, 0, 0);
		if (fd < 0 || io->pread(fd, model.buf, BLK + 1, 0) != BLK ||
		    memcmp(model.buf, model.want, BLK) != 0)
			return failf("%s: %s", path, fd < 0 ? strerror(errno) : "wrong data");
		io->close(fd);
	}
	return 0;
}

static int
read_all(const struct io *io, uint64_t *rng)
{
	char path[PATH_MAX + 32];
	step_begin("reads, checked");
	if (check_all(io, true) != 0)
		return -1;
	big_path(io, 0, path, sizeof(path));
	int fd = io->open(path, O_RDONLY);
	if (fd < 0)
		return failf("open %s: %s", path, strerror(errno));
	for (unsigned k = 0; k < NRANDOM; k++) {
		unsigned b = (unsigned)(mix(++*rng) % NBLK);
		fill_block(model.want, 0, b, model.gen[0][b]);
		if (io->pread(fd, model.buf, BLK, (off_t)b * BLK) != BLK ||
		    memcmp(model.buf, model.want, BLK) != 0)
			return failf("%s: wrong data in block %u", path, b);
	}
	io->close(fd);
	step_end("%d MiB and %d small files, then %d random 4 KiB (%.0f MB/s)",
	         NBIG * BIG >> 20, NSMALL, NRANDOM,
	         mbps((double)NBIG * BIG + (double)(NSMALL + NRANDOM) * BLK));
	return 0;
}

/* Loads of every page of big1 through a shared mapping, stores into some,
 * msync, and the stores read back with pread. */
static int
mapped(const struct io *io, uint64_t *rng)
{
	char path[PATH_MAX + 32];
	step_begin("shared mapping");
	big_path(io, 1, path, sizeof(path));
	int fd = io->open(path, O_RDWR);
	if (fd < 0)
		return failf("open %s: %s", path, strerror(errno));
	unsigned char *map = io->mmap(NULL, BIG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		int err = errno;
		io->close(fd);
		if (err == ENODEV) {
			step_end("skipped: this kernel refuses shared mmap of direct_io files "
			         "(Linux 6.6+ allows it; -o cache=kernel works)");
			return 0;
		}
		return failf("mmap %s: %s", path, strerror(err));
	}
	for (unsigned b = 0; b < NBLK; b++) {
		fill_block(model.want, 1, b, model.gen[1][b]);
		if (memcmp(map + (size_t)b * BLK, model.want, BLK) != 0)
			return failf("%s: the mapping shows wrong data in block %u", path, b);
		step_progress(b + 1, NBLK + NSTORES, "pages");
	}
	for (unsigned k = 0; k < NSTORES; k++) {
		unsigned b = (unsigned)(mix(++*rng) % NBLK);
		model.gen[1][b]++;
		fill_block(map + (size_t)b * BLK, 1, b, model.gen[1][b]);
		step_progress(NBLK + k + 1, NBLK + NSTORES, "pages");
	}
	if (io->msync(map, BIG, MS_SYNC) != 0)
		return failf("msync %s: %s", path, strerror(errno));
	io->munmap(map, BIG);
	for (unsigned b = 0; b < NBLK; b++) {
		if (model.gen[1][b] == 0)
			continue;
		fill_block(model.want, 1, b, model.gen[1][b]);
		if (io->pread(fd, model.buf, BLK, (off_t)b * BLK) != BLK ||
		    memcmp(model.buf, model.want, BLK) != 0)
			return failf("%s: a store through the mapping is missing from block %u", path, b);
	}
	io->close(fd);
	step_end("%d pages loaded, %d stored to, msync, read back", NBLK, NSTORES);
	return 0;
}

static int
namespace_ops(const struct io *io)
{
	char from[PATH_MAX + 32], to[PATH_MAX + 32];
	step_begin("renames, unlinks");
	int renamed = 0, unlinked = 0;
	for (unsigned k = 0; k < NSMALL; k++) {
		small_path(io, k, false, from, sizeof(from));
		if (k % 4 == 1) {
			small_path(io, k, true, to, sizeof(to));
			if (io->rename(from, to) != 0)
				return failf("rename %s: %s", from, strerror(errno));
			model.small[k] = SMALL_RENAMED;
			renamed++;
		} else if (k % 4 == 3) {
			if (io->unlink(from) != 0)
				return failf("unlink %s: %s", from, strerror(errno));
			model.small[k] = SMALL_GONE;
			unlinked++;
		}
	}
	step_end("%d small files renamed, %d unlinked", renamed, unlinked);
	return 0;
}

static int
workload(const struct io *io)
{
	uint64_t rng = (uint64_t)time(NULL);
	memset(&model.gen, 0, sizeof(model.gen));
	memset(&model.small, 0, sizeof(model.small));
	demo.step = 0;
	if (write_big(io) || write_small(io) || write_random(io, &rng) || read_all(io, &rng) ||
	    mapped(io, &rng) || namespace_ops(io))
		return -1;
	return 0;
}

/* ----------------------------------------------------- helper programs */

/* Run argv (stdout and stderr to out, or inherited); return its status. */
static int
run(char *const argv[], const char *out)
{
	pid_t pid = fork();
	if (pid == 0) {
		if (out) {
			int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
			if (fd >= 0) {
				dup2(fd, 1);
				dup2(fd, 2);
			}
		}
		execvp(argv[0], argv);
		fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	int status;
	if (pid < 0 || waitpid(pid, &status, 0) < 0)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* mke2fs and e2fsck live in /sbin; a user's PATH may not have it. */
static void
add_sbin_to_path(void)
{
	const char *path = getenv("PATH");
	char buf[8192];
	snprintf(buf, sizeof(buf), "%s:/usr/sbin:/sbin", path ? path : "/usr/bin:/bin");
	setenv("PATH", buf, 1);
}

/* The first line of a file, for error messages. */
static const char *
first_line(const char *file, char *buf, size_t size)
{
	FILE *f = fopen(file, "r");
	buf[0] = 0;
	if (f) {
		if (!fgets(buf, (int)size, f))
			buf[0] = 0;
		fclose(f);
	}
	buf[strcspn(buf, "\n")] = 0;
	return buf;
}

static int
make_image(void)
{
	char out[PATH_MAX + 16];
	snprintf(out, sizeof(out), "%s/mke2fs.log", demo.dir);
	char *argv[] = {"mke2fs", "-q", "-F", "-t", "ext2", "-b", "4096", demo.image, "256M", NULL};
	int st = run(argv, out);
	if (st != 0) {
		char line[512];
		return failf("mke2fs failed (status %d): %s", st, first_line(out, line, sizeof(line)));
	}
	printf("made a 256 MiB ext2 image with mke2fs: %s\n", demo.image);
	return 0;
}

/* e2fsck -fn: print its verdict.  Return: 0 if clean. */
static int
fsck(void)
{
	char out[PATH_MAX + 16], line[512], last[512] = "";
	snprintf(out, sizeof(out), "%s/e2fsck.log", demo.dir);
	char *argv[] = {"e2fsck", "-fn", demo.image, NULL};
	int st = run(argv, out);
	FILE *f = fopen(out, "r");
	while (f && fgets(line, sizeof(line), f))
		if (strstr(line, " files ("))
			snprintf(last, sizeof(last), "%.*s", (int)strcspn(line, "\n"), line);
	if (f)
		fclose(f);
	if (st != 0)
		return failf("e2fsck -fn found errors (status %d); its report: %s", st, out);
	printf("e2fsck -fn: clean (%s)\n", last[0] ? last : "no summary");
	return 0;
}

/* ---------------------------------------------------------- FUSE mode */

static bool
fuse_usable(char *why, size_t size)
{
	int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		close(fd);
		return true;
	}
	snprintf(why, size, "%s", errno == ENOENT ? "/dev/fuse is missing (no FUSE here)"
	                                           : "/dev/fuse cannot be opened");
	return false;
}

/* Start `pagewright mount -f` and wait until the mount is up.  Return: 0,
 * or -1 with the server's reason in why. */
static int
start_server(char *why, size_t size)
{
	demo.server = fork();
	if (demo.server == 0) {
		int fd = open(demo.log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd >= 0)
			dup2(fd, 2);
		execl(demo.self, demo.self, "mount", "-f", "-t", "ext2", demo.image, demo.mnt,
		      (char *)NULL);
		fprintf(stderr, "cannot run %s: %s\n", demo.self, strerror(errno));
		_exit(127);
	}
	if (demo.server < 0) {
		snprintf(why, size, "fork: %s", strerror(errno));
		return -1;
	}
	for (int k = 0; k < 200; k++) {
		struct mnt_entry e;
		if (mnt_find(demo.mnt, &e) == 0 && mnt_is_pagewright(&e)) {
			demo.mounted = true;
			return 0;
		}
		int status;
		if (waitpid(demo.server, &status, WNOHANG) == demo.server) {
			char line[512];
			snprintf(why, size, "%s", first_line(demo.log, line, sizeof(line)));
			demo.server = 0;
			return -1;
		}
		usleep(50000);
	}
	snprintf(why, size, "the mount did not come up within 10 s");
	return -1;
}

/* pagewright umount, then the server's exit status. */
static int
stop_server(void)
{
	double t = now();
	char *argv[] = {demo.self, "umount", demo.mnt, NULL};
	if (run(argv, NULL) != 0)
		return failf("pagewright umount %s failed", demo.mnt);
	demo.mounted = false;
	int status;
	if (waitpid(demo.server, &status, 0) != demo.server)
		return failf("lost the server: %s", strerror(errno));
	demo.server = 0;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		char line[512];
		return failf("the server failed: %s", first_line(demo.log, line, sizeof(line)));
	}
	printf("pagewright umount: the server wrote everything back and exited 0 (%.2f s)\n",
	       now() - t);
	return 0;
}

static int
fetch_stats(char *text, size_t size)
{
	struct mnt_entry e;
	pid_t pid;
	int fd = mnt_find(demo.mnt, &e) == 0 ? ctl_connect(&e, &pid) : -ENOENT;
	ssize_t n = fd < 0 ? fd : ctl_request(fd, "stats", text, size, false);
	if (fd >= 0)
		close(fd);
	return n > 0 ? 0 : failf("pagewright stat %s: %s", demo.mnt, strerror(n ? (int)-n : EPROTO));
}

/* What the figures say, in words. */
static void
explain(const char *text, bool fuse)
{
	uint64_t hits = stats_num(text, "hits"), misses = stats_num(text, "misses");
	uint64_t dirty = stats_num(text, "dirty_pages");
	printf("so:\n  - %llu of %llu page lookups of reads found the page in pagewright's cache%s\n",
	       (unsigned long long)hits, (unsigned long long)(hits + misses),
	       fuse ? "; the kernel kept no copy of the files (cache=direct)" : "");
	if (fuse && stats_num(text, "faults") == 0)
		printf("  - the shared mapping's pages sat in the kernel's page cache, filled by READ "
		       "requests and\n    written back by WRITE requests at msync: pagewright's own "
		       "fault handler is for mappings\n    made with pw_mmap (pagewright demo "
		       "--in-process shows it)\n");
	else if (!fuse)
		printf("  - pagewright's fault handler served the mapping: %llu faults, each mapping "
		       "up to 64 pages\n", (unsigned long long)stats_num(text, "faults"));
	printf("  - %llu pages were still dirty (written, not yet fsync'd nor old enough for "
	       "the flusher):\n    the unmount writes them back\n\n", (unsigned long long)dirty);
}

static int
run_fuse(void)
{
	struct io io = kernel_io;
	io.root = demo.mnt;
	printf("serving it over FUSE: %s mount -f -t ext2 %s %s\n", demo.self, demo.image,
	       demo.mnt);
	printf("a workload of ordinary system calls on %s:\n", demo.mnt);
	fflush(stdout);
	if (workload(&io) != 0)
		return -1;
	char text[8192];
	if (fetch_stats(text, sizeof(text)) != 0)
		return -1;
	printf("\nwhat pagewright's cache did (pagewright stat %s):\n", demo.mnt);
	stats_report(text);
	explain(text, true);
	return stop_server();
}

/* ------------------------------------------------------ in-process mode */

static int
run_in_process(void)
{
	struct io io = pw_io;
	io.root = "/demo";
	printf("pw_mount(\"ext2\", \"%s\", \"/demo\") in this process\n", demo.image);
	if ((pw_mkdir("/demo", 0755) != 0 && errno != EEXIST) ||
	    pw_mount("ext2", demo.image, "/demo", NULL) != 0)
		return failf("pw_mount %s: %s", demo.image, strerror(errno));
	printf("the same workload through pw_ calls:\n");
	fflush(stdout);
	if (workload(&io) != 0)
		return -1;
	struct pw_stats s;
	char text[4096];
	pw_get_stats(&s);
	stats_format_cache(text, sizeof(text), &s);
	printf("\nwhat pagewright's cache did (pw_get_stats):\n");
	stats_report(text);
	explain(text, false);
	double t = now();
	if (pw_umount("/demo") != 0)
		return failf("pw_umount: writing back failed: %s", strerror(errno));
	printf("pw_umount wrote everything back (%.2f s)\n", now() - t);
	return 0;
}

/* After the image is checked: mount it here, read-only, and check every
 * byte the workload left. */
static int
check_in_process(void)
{
	struct io io = pw_io;
	io.root = "/check";
	double t = now();
	if ((pw_mkdir("/check", 0755) != 0 && errno != EEXIST) ||
	    pw_mount("ext2", demo.image, "/check", "ro") != 0)
		return failf("pw_mount %s: %s", demo.image, strerror(errno));
	int r = check_all(&io, false);
	pw_umount("/check");
	if (r == 0)
		printf("read back in this process (pw_mount, ro): %d MiB and %d small files, "
		       "every byte as written (%.2f s)\n", NBIG * BIG >> 20,
		       NSMALL - NSMALL / 4, now() - t);
	return r;
}

/* --------------------------------------------------------------- main */

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static void
cleanup(bool keep)
{
	if (demo.mounted) {
		char *argv[] = {"fusermount3", "-u", "-z", demo.mnt, NULL};
		run(argv, "/dev/null");
	}
	if (demo.server > 0) {
		int status;
		for (int k = 0; k < 100 && waitpid(demo.server, &status, WNOHANG) == 0; k++)
			usleep(100000);
	}
	if (keep)
		printf("kept %s\n", demo.dir);
	else if (demo.dir[0])
		nftw(demo.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

static int
setup(void)
{
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	snprintf(demo.dir, sizeof(demo.dir), "%s/pagewright-demo.XXXXXX", tmp);
	if (!mkdtemp(demo.dir)) {
		int err = errno;
		demo.dir[0] = 0;
		return failf("cannot make a directory in %s: %s", tmp, strerror(err));
	}
	snprintf(demo.image, sizeof(demo.image), "%s/disk.img", demo.dir);
	snprintf(demo.mnt, sizeof(demo.mnt), "%s/mnt", demo.dir);
	snprintf(demo.log, sizeof(demo.log), "%s/server.log", demo.dir);
	ssize_t n = readlink("/proc/self/exe", demo.self, sizeof(demo.self) - 1);
	if (n <= 0)
		return failf("cannot find this program: %s", strerror(errno));
	demo.self[n] = 0;
	model.buf = malloc(CHUNK + 1);
	model.want = malloc(CHUNK);
	if (!model.buf || !model.want)
		return failf("out of memory");
	if (mkdir(demo.mnt, 0755) != 0)
		return failf("mkdir %s: %s", demo.mnt, strerror(errno));
	return 0;
}

int
cmd_demo(int argc, char **argv)
{
	bool in_process = false, keep = false;
	for (int k = 1; k < argc; k++) {
		if (strcmp(argv[k], "--in-process") == 0) {
			in_process = true;
		} else if (strcmp(argv[k], "--keep") == 0) {
			keep = true;
		} else {
			fprintf(stderr, "usage: pagewright demo [--in-process] [--keep]\n"
			                "       pagewright demo --same-page\n");
			return 2;
		}
	}
	demo.tty = isatty(1);
	demo.t0 = now();
	signal(SIGPIPE, SIG_IGN);
	add_sbin_to_path();
	printf("pagewright demo: an ext2 image, served by pagewright's page cache\n");
	int r = setup() != 0 || make_image() != 0 ? -1 : 0;
	char why[512];
	if (r == 0 && !in_process) {
		/* A build without libfuse3 has a `mount` that says so. */
		if (!fuse_usable(why, sizeof(why)) || start_server(why, sizeof(why)) != 0)
			in_process = true;
		if (in_process)
			printf("no FUSE mount: %s.\nfalling back: the workload runs in this process, "
			       "through pagewright's API instead of system calls on a mount\n", why);
	}
	if (r == 0)
		r = in_process ? run_in_process() : run_fuse();
	if (r == 0)
		r = fsck();
	if (r == 0)
		r = check_in_process();
	cleanup(keep || r != 0);
	if (r == 0)
		printf("demo done in %.1f s: everything written was read back, on the mount and "
		       "from the image\n", now() - demo.t0);
	else
		fprintf(stderr, "pagewright demo: FAILED\n");
	return r == 0 ? 0 : 1;
}

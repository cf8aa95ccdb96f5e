/*
 * bench_writeback.c - dirty throttling against the device's bandwidth.
 *
 * Question: with a dirty limit small enough to matter (32 MiB, under a
 * 256 MiB memory cap), does a
 * writer that produces data much faster than the disk takes it still
 * write at the device's bandwidth (within 10%), without collapse and
 * without a stall longer than a second?
 *
 * The device is the disk under $TMPDIR.  Its bandwidth is measured in the
 * same run with plain pwrite(2) of the same chunks to a file in the same
 * directory, made durable with fdatasync(2) exactly where pagewright's
 * run calls pw_fsync.  Two regimes:
 *   end      one sync at the end: everything the kernel buffers counts,
 *            on both sides (pagewright writes back into the same kernel
 *            cache, and its fsync is the kernel's fdatasync);
 *   every N  a sync after every N MiB: the disk bounds the whole run.
 * pagewright runs on hostfs (a directory there) and on ext2 (an image
 * file there, 4 KiB blocks).  Contenders are interleaved run by run, and
 * the median of BENCH_WB_REPS runs is reported.
 *
 * For each run: end-to-end MB/s (write + sync), the final sync's time, the
 * write rate in 100 ms windows (min / median / max: a collapse shows as a
 * low minimum), the longest gap between two 1 MiB chunks written (the
 * stall: a write call, with the periodic sync after it if any; the worst
 * of all runs), pagewright's throttling time, and its pages written back
 * per write call (writepages batching).  The
 * last table repeats pagewright's runs with PAGEWRIGHT_WRITEPAGES=0
 * (page-by-page writeback, the state before batching) in a child process.
 *
 * Environment: BENCH_WB_MB (default 1024) bytes per run, BENCH_WB_REPS
 * (default 3), BENCH_WB_SYNC_MB (default 64), TMPDIR.
 */
#include "bench_common.h"

#include <pagewright/pagewright.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define CHUNK MiB
#define WINDOW 0.1 /* s */
#define MAXREPS 9
#define PW_WARMUP (320 * MiB) /* past the memory cap */

enum who { KERNEL, PW_HOSTFS, PW_EXT2, NWHO };
static const char *who_name[NWHO] = {"kernel pwrite", "pagewright hostfs", "pagewright ext2"};

struct run {
	double total;     /* s, write + sync */
	double sync;      /* s, of it the last sync */
	double wmin, wmed, wmax; /* MB/s over windows of the writing */
	double stall;     /* s, the longest gap between two chunks written
	                   * (a write call, and a periodic sync after it) */
	double throttle;  /* s, pagewright's throttling */
	double pages_per_io;
};

static char dir[256];
static size_t total_bytes;
static size_t sync_every; /* bytes; 0 = at the end only */
static char *chunk;

static double
max_d(double a, double b)
{
	return a > b ? a : b;
}

static double
secs(void)
{
	return (double)now_ns() / 1e9;
}

static int
cmp_dbl(const void *a, const void *b)
{
	return cmp_double(a, b);
}

/* Windows of WINDOW seconds over the completion times of the chunks. */
static void
window_rates(const double *done, size_t n, double t0, struct run *r)
{
	size_t nw = (size_t)((done[n - 1] - t0) / WINDOW) + 1;
	double *w = calloc(nw, sizeof(double));
	die_if(!w, "calloc");
	for (size_t k = 0; k < n; k++)
		w[(size_t)((done[k] - t0) / WINDOW)] += (double)CHUNK / 1e6 / WINDOW;
	if (nw > 1)
		nw--; /* the last window is partial */
	qsort(w, nw, sizeof(double), cmp_dbl);
	r->wmin = w[0];
	r->wmed = w[nw / 2];
	r->wmax = w[nw - 1];
	free(w);
}

/* ------------------------------------------------------------- writers */

static void
kernel_run(struct run *r)
{
	char path[400];
	snprintf(path, sizeof(path), "%s/ref", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	die_if(fd < 0, path);
	size_t n = total_bytes / CHUNK;
	double *done = malloc(n * sizeof(double)), t0 = secs(), stall = 0;
	for (size_t k = 0; k < n; k++) {
		double a = secs();
		die_if(pwrite(fd, chunk, CHUNK, (off_t)(k * CHUNK)) != (ssize_t)CHUNK, "pwrite");
		if (sync_every && ((k + 1) * CHUNK) % sync_every == 0)
			die_if(fdatasync(fd) != 0, "fdatasync");
		done[k] = secs();
		stall = max_d(stall, done[k] - a);
	}
	double a = secs();
	die_if(fdatasync(fd) != 0, "fdatasync");
	double end = secs();
	r->total = end - t0;
	r->sync = end - a;
	r->stall = stall;
	r->throttle = 0;
	r->pages_per_io = 0;
	window_rates(done, n, t0, r);
	free(done);
	close(fd);
	unlink(path);
}

static void
pw_run(const char *mnt, struct run *r)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/big", mnt);
	int fd = pw_open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	die_if(fd < 0, path);
	struct pw_stats s0, s1;
	pw_get_stats(&s0);
	size_t n = total_bytes / CHUNK;
	double *done = malloc(n * sizeof(double)), t0 = secs(), stall = 0;
	for (size_t k = 0; k < n; k++) {
		double a = secs();
		die_if(pw_pwrite(fd, chunk, CHUNK, (off_t)(k * CHUNK)) != (ssize_t)CHUNK, "pw_pwrite");
		if (sync_every && ((k + 1) * CHUNK) % sync_every == 0)
			die_if(pw_fsync(fd) != 0, "pw_fsync");
		done[k] = secs();
		stall = max_d(stall, done[k] - a);
	}
	double a = secs();
	die_if(pw_fsync(fd) != 0, "pw_fsync");
	double end = secs();
	pw_get_stats(&s1);
	r->total = end - t0;
	r->sync = end - a;
	r->stall = stall;
	r->throttle = (double)(s1.throttle_ms - s0.throttle_ms) / 1e3;
	uint64_t ios = s1.writeback_ios - s0.writeback_ios;
	r->pages_per_io = ios ? (double)(s1.written_pages - s0.written_pages) / (double)ios : 0;
	window_rates(done, n, t0, r);
	free(done);
	die_if(pw_close(fd) != 0, "pw_close");
	die_if(pw_unlink(path) != 0, "pw_unlink");
}

/* ------------------------------------------------------------- mounts */

static void
mount_all(void)
{
	char host[400], img[400], cmd[900];
	snprintf(host, sizeof(host), "%s/host", dir);
	die_if(mkdir(host, 0700) != 0, host);
	die_if(pw_mkdir("/h", 0755) != 0 || pw_mount("hostfs", host, "/h", NULL) != 0,
	       "mount hostfs");
	snprintf(img, sizeof(img), "%s/ext2.img", dir);
	snprintf(cmd, sizeof(cmd), "mke2fs -q -F -t ext2 -b 4096 '%s' %zuM >/dev/null 2>&1",
	         img, total_bytes / MiB + total_bytes / MiB / 8 + 64);
	die_if(system(cmd) != 0, "mke2fs");
	die_if(pw_mkdir("/e", 0755) != 0 || pw_mount("ext2", img, "/e", NULL) != 0,
	       "mount ext2");
}

static void
umount_all(void)
{
	char cmd[400];
	die_if(pw_umount("/h") != 0 || pw_umount("/e") != 0, "pw_umount");
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
}

/* --------------------------------------------------------------- report */

static int
cmp_run(const void *a, const void *b)
{
	double x = ((const struct run *)a)->total, y = ((const struct run *)b)->total;
	return x < y ? -1 : x > y;
}

static void
regime(const char *label, bool per_page, int reps)
{
	struct run runs[NWHO][MAXREPS];
	for (int r = 0; r < reps; r++)
		for (int w = per_page ? PW_HOSTFS : KERNEL; w < NWHO; w++) {
			if (w == KERNEL)
				kernel_run(&runs[w][r]);
			else
				pw_run(w == PW_HOSTFS ? "/h" : "/e", &runs[w][r]);
		}
	printf("\n%s%s: %zu MiB in 1 MiB writes, median of %d runs\n", label,
	       per_page ? ", page-by-page writeback (PAGEWRIGHT_WRITEPAGES=0)" : "",
	       total_bytes / MiB, reps);
	printf("%-20s %7s %6s %7s  %-22s %8s %8s %8s\n", "writer", "MB/s", "ratio",
	       "sync s", "windows MB/s min/med/max", "stall s", "thrott s", "pages/io");
	double ref = 0;
	for (int w = per_page ? PW_HOSTFS : KERNEL; w < NWHO; w++) {
		qsort(runs[w], (size_t)reps, sizeof(struct run), cmp_run);
		struct run *m = &runs[w][reps / 2];
		double mbs = (double)total_bytes / 1e6 / m->total;
		double worst_stall = 0;
		for (int r = 0; r < reps; r++)
			worst_stall = max_d(worst_stall, runs[w][r].stall);
		if (w == KERNEL)
			ref = mbs;
		char win[64], ratio[16] = "-";
		snprintf(win, sizeof(win), "%.0f / %.0f / %.0f", m->wmin, m->wmed, m->wmax);
		if (ref > 0)
			snprintf(ratio, sizeof(ratio), "%.2f", mbs / ref);
		printf("%-20s %7.0f %6s %7.2f  %-22s %8.2f %8.2f %8.1f\n", who_name[w], mbs, ratio,
		       m->sync, win, worst_stall, m->throttle, m->pages_per_io);
	}
	fflush(stdout);
}

int
main(int argc, char **argv)
{
	bool per_page = argc > 1 && strcmp(argv[1], "--per-page") == 0;
	const char *e = getenv("BENCH_WB_MB");
	total_bytes = (size_t)(e && atoi(e) > 0 ? atoi(e) : 1024) * MiB;
	e = getenv("BENCH_WB_REPS");
	int reps = e && atoi(e) > 0 ? (atoi(e) < MAXREPS ? atoi(e) : MAXREPS) : 3;
	e = getenv("BENCH_WB_SYNC_MB");
	size_t every = (size_t)(e && atoi(e) > 0 ? atoi(e) : 64) * MiB;
	/* a limit small enough to matter, before the library starts; and a
	 * memory cap, so that the cache reuses its frames as a long-running
	 * writer's would (the first touch of a frame costs more than the
	 * copy into it) */
	setenv("PAGEWRIGHT_DIRTY_LIMIT", "32M", 1);
	setenv("PAGEWRIGHT_DIRTY_BACKGROUND", "16M", 1);
	setenv("PAGEWRIGHT_MEM_LIMIT", "256M", 1);
	if (per_page)
		setenv("PAGEWRIGHT_WRITEPAGES", "0", 1);
	const char *tmp = getenv("TMPDIR");
	snprintf(dir, sizeof(dir), "%s/pw-bench-wb.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	die_if(!mkdtemp(dir), "mkdtemp");
	chunk = malloc(CHUNK);
	die_if(!chunk, "malloc");
	fill_pattern(chunk, CHUNK, 5);
	if (!per_page) {
		print_machine("bench_writeback: a sustained writer against the device");
		printf("device: the disk under %s; dirty limit 32 MiB, background 16 MiB,\n"
		       "        memory cap 256 MiB; warm-up: 320 MiB per writer, not reported\n", dir);
	}
	mount_all();
	/* warm-up, not reported: the pool grows to its cap, the kernel's
	 * allocator and the disk settle */
	size_t full = total_bytes;
	total_bytes = PW_WARMUP;
	struct run warm;
	kernel_run(&warm);
	pw_run("/h", &warm);
	pw_run("/e", &warm);
	total_bytes = full;
	sync_every = 0;
	regime("one sync at the end", per_page, reps);
	sync_every = every;
	char label[64];
	snprintf(label, sizeof(label), "a sync every %zu MiB", every / MiB);
	regime(label, per_page, reps);
	umount_all();
	if (!per_page) {
		fflush(stdout);
		char self[512], cmd[600];
		ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
		die_if(len <= 0, "readlink /proc/self/exe");
		self[len] = 0;
		snprintf(cmd, sizeof(cmd), "'%s' --per-page", self);
		if (system(cmd) != 0)
			fprintf(stderr, "the page-by-page run failed\n");
		char load[128] = "?";
		FILE *f = fopen("/proc/loadavg", "r");
		if (f) {
			if (fgets(load, sizeof(load), f))
				load[strcspn(load, "\n")] = 0;
			fclose(f);
		}
		printf("\nload at the end (/proc/loadavg): %s\n", load);
	}
	return 0;
}

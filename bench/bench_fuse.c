/*
 * bench_fuse.c - which data cache should `pagewright mount` give the
 * kernel?  The same workload through the two modes of the FUSE server and,
 * as the reference, through the kernel's tmpfs.
 *
 *   cache=direct   files opened FOPEN_DIRECT_IO: every read and write is a
 *                  request to the server, pagewright's cache the only one;
 *                  shared mmap through FUSE_DIRECT_IO_ALLOW_MMAP
 *   cache=kernel   the kernel's page cache in front, written through
 *
 * The server serves ramfs, so the figures are the FUSE path and the caches,
 * not a disk.  Each row is the median of BENCH_FUSE_REPS passes (default 5)
 * over one file of BENCH_FUSE_MIB MiB (default 64):
 *
 *   write 1M       sequential 1 MiB writes into an emptied file, MB/s
 *   read 1M        sequential 1 MiB reads, the file read before, MB/s
 *   pread 4K       random 4 KiB reads, us each
 *   pwrite 4K      random 4 KiB writes, us each
 *   mmap read      a fresh shared mapping, one load per 4 KiB page, us per page
 *   mmap write     a fresh shared mapping, one store per page + msync, us per page
 *   kernel cache   growth of the kernel's page cache (Cached - Shmem in
 *                  /proc/meminfo) over write + read of the file, MiB;
 *                  pagewright's pool is shared memory, so it is not counted
 *                  (nor is tmpfs: "-" in its column)
 *   ... mapped     the same over one mmap read pass
 *
 * Needs /dev/fuse and permission to mount, and build/pagewright (run it
 * from the top of the tree, or set PAGEWRIGHT=path).  Prints "skipped"
 * when it cannot mount.
 */
#include "bench_common.h"

#include <stdbool.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

static size_t file_size;
static int reps = 5;

struct mode {
	const char *name;
	const char *cache;   /* NULL: tmpfs reference */
	char dir[512];
	bool ok;
};

static double
secs(void)
{
	return (double)now_ns() / 1e9;
}

static int
cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double
median_of(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_d);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static long
meminfo(const char *key)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[256];
	long v = 0;
	size_t klen = strlen(key);
	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, key, klen) == 0 && line[klen] == ':')
			v = atol(line + klen + 1);
	if (f)
		fclose(f);
	return v; /* KiB */
}

static int
run(char *const argv[])
{
	pid_t pid = fork();
	if (pid == 0) {
		execvp(argv[0], argv);
		_exit(127);
	}
	int st;
	if (pid < 0 || waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void
mount_mode(struct mode *m, const char *tmp, const char *tool)
{
	if (!m->cache) {
		snprintf(m->dir, sizeof(m->dir), "/dev/shm/bench_fuse.%d", (int)getpid());
		m->ok = mkdir(m->dir, 0755) == 0;
		return;
	}
	snprintf(m->dir, sizeof(m->dir), "%s/bench_fuse.%d.%s", tmp, (int)getpid(), m->cache);
	if (mkdir(m->dir, 0755) != 0)
		return;
	char opt[64];
	snprintf(opt, sizeof(opt), "cache=%s", m->cache);
	char *argv[] = {(char *)tool, "mount", "-t", "ramfs", "none", m->dir, "-o", opt, NULL};
	m->ok = run(argv) == 0;
}

static void
unmount_mode(struct mode *m)
{
	if (m->cache && m->ok) {
		char *argv[] = {"fusermount3", "-u", m->dir, NULL};
		for (int k = 0; k < 50 && run(argv) != 0; k++)
			usleep(100000);
	}
	char path[600];
	snprintf(path, sizeof(path), "%s/f", m->dir);
	if (!m->cache)
		unlink(path);
	rmdir(m->dir);
}

static double
pass_write(int fd, char *buf)
{
	die_if(ftruncate(fd, 0) != 0, "ftruncate");
	double t = secs();
	for (size_t off = 0; off < file_size; off += MiB)
		die_if(pwrite(fd, buf, MiB, (off_t)off) != (ssize_t)MiB, "pwrite");
	return (double)file_size / MiB / (secs() - t);
}

static double
pass_read(int fd, char *buf)
{
	double t = secs();
	for (size_t off = 0; off < file_size; off += MiB)
		die_if(pread(fd, buf, MiB, (off_t)off) != (ssize_t)MiB, "pread");
	return (double)file_size / MiB / (secs() - t);
}

static double
pass_random(int fd, char *buf, bool write)
{
	const int n = 4096;
	size_t pages = file_size / 4096;
	uint64_t x = 88172645463325252ULL;
	double t = secs();
	for (int k = 0; k < n; k++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		off_t off = (off_t)(x % pages) * 4096;
		ssize_t r = write ? pwrite(fd, buf, 4096, off) : pread(fd, buf, 4096, off);
		die_if(r != 4096, write ? "pwrite 4K" : "pread 4K");
	}
	return (secs() - t) / n * 1e6;
}

static double
pass_mmap(int fd, bool write)
{
	double t = secs();
	char *m = mmap(NULL, file_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		return -1;
	volatile char sink = 0;
	for (size_t off = 0; off < file_size; off += 4096) {
		if (write)
			m[off] = (char)off;
		else
			sink += m[off];
	}
	(void)sink;
	if (write)
		msync(m, file_size, MS_SYNC);
	munmap(m, file_size);
	return (secs() - t) / (double)(file_size / 4096) * 1e6;
}

enum { R_WRITE, R_READ, R_PREAD, R_PWRITE, R_MREAD, R_MWRITE, R_CACHE, R_CACHE_MAP, NROWS };
static const char *row_name[NROWS] = {
	"write 1M (MB/s)",  "read 1M (MB/s)",  "pread 4K (us)", "pwrite 4K (us)",
	"mmap read (us/page)", "mmap write (us/page)", "kernel cache (MiB)",
	"... mapped (MiB)"};

static long
kernel_cache_kib(void)
{
	return meminfo("Cached") - meminfo("Shmem");
}

static void
measure_mode(struct mode *m, double *out)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/f", m->dir);
	int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0644);
	die_if(fd < 0, "open");
	char *buf = aligned_alloc(4096, MiB);
	memset(buf, 'x', MiB);
	double v[NROWS][16];
	long before = kernel_cache_kib();
	pass_write(fd, buf);
	pass_read(fd, buf);
	out[R_CACHE] = (double)(kernel_cache_kib() - before) / 1024.0;
	before = kernel_cache_kib();
	pass_mmap(fd, false);
	out[R_CACHE_MAP] = (double)(kernel_cache_kib() - before) / 1024.0;
	for (int r = 0; r < reps; r++) {
		v[R_WRITE][r] = pass_write(fd, buf);
		v[R_READ][r] = pass_read(fd, buf);
		v[R_PREAD][r] = pass_random(fd, buf, false);
		v[R_PWRITE][r] = pass_random(fd, buf, true);
		v[R_MREAD][r] = pass_mmap(fd, false);
		v[R_MWRITE][r] = pass_mmap(fd, true);
	}
	for (int row = 0; row < R_CACHE; row++)
		out[row] = median_of(v[row], reps);
	close(fd);
	free(buf);
}

int
main(void)
{
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	const char *tool = getenv("PAGEWRIGHT") ? getenv("PAGEWRIGHT") : "build/pagewright";
	file_size = (size_t)(getenv("BENCH_FUSE_MIB") ? atol(getenv("BENCH_FUSE_MIB")) : 64) * MiB;
	if (getenv("BENCH_FUSE_REPS"))
		reps = atoi(getenv("BENCH_FUSE_REPS"));
	if (reps < 1 || reps > 16)
		reps = 5;
	struct mode modes[] = {
		{.name = "tmpfs (kernel)"},
		{.name = "cache=direct", .cache = "direct"},
		{.name = "cache=kernel", .cache = "kernel"},
	};
	const int nm = sizeof(modes) / sizeof(modes[0]);
	double res[3][NROWS];
	struct utsname u;
	uname(&u);
	double load[1] = {0};
	getloadavg(load, 1);
	printf("bench_fuse: %zu MiB file, median of %d passes; %s %s, load %.2f\n",
	       file_size / MiB, reps, u.sysname, u.release, load[0]);
	for (int k = 0; k < nm; k++) {
		mount_mode(&modes[k], tmp, tool);
		if (modes[k].ok)
			measure_mode(&modes[k], res[k]);
		unmount_mode(&modes[k]);
		if (!modes[k].ok && modes[k].cache) {
			printf("bench_fuse: skipped (cannot mount with %s: no /dev/fuse or no "
			       "permission?)\n", tool);
			return 0;
		}
	}
	printf("%-22s", "");
	for (int k = 0; k < nm; k++)
		printf("%16s", modes[k].name);
	printf("\n");
	for (int row = 0; row < NROWS; row++) {
		printf("%-22s", row_name[row]);
		for (int k = 0; k < nm; k++) {
			if (row >= R_CACHE && !modes[k].cache)
				printf("%16s", "-");
			else if (row < R_CACHE && res[k][row] < 0)
				printf("%16s", "fails");
			else
				printf("%16.*f", row == R_READ || row == R_WRITE || row >= R_CACHE ? 0 : 2,
				       res[k][row]);
		}
		printf("\n");
	}
	return 0;
}

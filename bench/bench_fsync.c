/*
 * bench_fsync.c - fdatasync of a large cached file with few dirty pages.
 *
 * Question: does the cost of fdatasync follow the number of dirty pages,
 * not the number of cached ones?  A file of BENCH_FSYNC_MB (default 256)
 * MiB is written and synced, so every page is cached and clean; then each
 * round dirties BENCH_FSYNC_DIRTY (default 16) pages spread over the file
 * with 4 KiB pwrites and times the fdatasync that writes them.
 *
 * Contenders, interleaved round by round: the kernel (pwrite(2) and
 * fdatasync(2) on a file in a directory under $TMPDIR, whose pages are
 * all in the kernel's page cache too), pagewright on hostfs (a directory
 * there) and on ext2 (an image file there, 4 KiB blocks).  Reported: the
 * median and minimum of BENCH_FSYNC_REPS (default 15) rounds, the ratio
 * of pagewright's median to the kernel's, and the pages pagewright wrote
 * per fdatasync (pw_get_stats: it should be the dirty count).
 *
 * A second table repeats it with no page dirtied: what is left then is
 * the cost of finding nothing.
 */
#include "bench_common.h"

#include <pagewright/pagewright.h>
#include <stdbool.h>
#include <sys/stat.h>

#define MAXREPS 64

enum who { KERNEL, PW_HOSTFS, PW_EXT2, NWHO };
static const char *who_name[NWHO] = {"kernel", "pagewright hostfs", "pagewright ext2"};

static char dir[256];
static size_t file_bytes;
static unsigned dirty_pages;
static int reps;
static char page_buf[4096];

static void
fill_file(enum who w, int fd)
{
	char *buf = malloc(MiB);
	die_if(!buf, "malloc");
	fill_pattern(buf, MiB, 1);
	for (size_t off = 0; off < file_bytes; off += MiB) {
		ssize_t n = w == KERNEL ? pwrite(fd, buf, MiB, (off_t)off)
		                        : pw_pwrite(fd, buf, MiB, (off_t)off);
		die_if(n != (ssize_t)MiB, "fill");
	}
	die_if((w == KERNEL ? fdatasync(fd) : pw_fdatasync(fd)) != 0, "fdatasync");
	free(buf);
}

/* Dirty `dirty` pages spread over the file, then time fdatasync (s). */
static double
one_round(enum who w, int fd, unsigned dirty, unsigned round, uint64_t *written)
{
	size_t pages = file_bytes / 4096;
	struct pw_stats s0, s1;
	for (unsigned k = 0; k < dirty; k++) {
		size_t page = (k * (pages / dirty) + round * 7 + 3) % pages;
		page_buf[0] = (char)(round + k);
		ssize_t n = w == KERNEL ? pwrite(fd, page_buf, 4096, (off_t)(page * 4096))
		                        : pw_pwrite(fd, page_buf, 4096, (off_t)(page * 4096));
		die_if(n != 4096, "pwrite");
	}
	pw_get_stats(&s0);
	uint64_t t0 = now_ns();
	die_if((w == KERNEL ? fdatasync(fd) : pw_fdatasync(fd)) != 0, "fdatasync");
	uint64_t t1 = now_ns();
	pw_get_stats(&s1);
	*written += s1.written_pages - s0.written_pages;
	return (double)(t1 - t0) / 1e9;
}

static void
table(int fds[NWHO], unsigned dirty)
{
	double t[NWHO][MAXREPS];
	uint64_t written[NWHO] = {0};
	for (int r = 0; r < reps; r++)
		for (int w = 0; w < NWHO; w++)
			t[w][r] = one_round((enum who)w, fds[w], dirty, (unsigned)r, &written[w]);
	printf("\n%u dirty pages of %zu cached (%zu MiB), %d rounds\n", dirty, file_bytes / 4096,
	       file_bytes / MiB, reps);
	printf("%-20s %12s %12s %10s %14s\n", "", "median us", "min us", "x kernel",
	       "pages/fsync");
	double kmed = 0;
	for (int w = 0; w < NWHO; w++) {
		qsort(t[w], (size_t)reps, sizeof(double), cmp_double);
		double med = t[w][reps / 2], min = t[w][0];
		if (w == KERNEL)
			kmed = med;
		printf("%-20s %12.1f %12.1f ", who_name[w], med * 1e6, min * 1e6);
		if (w == KERNEL)
			printf("%10s %14s\n", "1.00", "-");
		else
			printf("%10.2f %14.1f\n", med / kmed, (double)written[w] / reps);
	}
}

int
main(void)
{
	const char *e;
	file_bytes = ((e = getenv("BENCH_FSYNC_MB")) && atoi(e) > 0 ? (size_t)atoi(e) : 256) * MiB;
	dirty_pages = (e = getenv("BENCH_FSYNC_DIRTY")) && atoi(e) > 0 ? (unsigned)atoi(e) : 16;
	reps = (e = getenv("BENCH_FSYNC_REPS")) && atoi(e) > 0 ? atoi(e) : 15;
	if (reps > MAXREPS)
		reps = MAXREPS;
	print_machine("bench_fsync: fdatasync of a cached file with few dirty pages");
	const char *tmp = getenv("TMPDIR");
	snprintf(dir, sizeof(dir), "%s/pw-bench-fsync-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	die_if(!mkdtemp(dir), "mkdtemp");

	char host[400], img[400], kpath[400], cmd[900];
	snprintf(host, sizeof(host), "%s/host", dir);
	die_if(mkdir(host, 0700) != 0, host);
	die_if(pw_mkdir("/h", 0755) != 0 || pw_mount("hostfs", host, "/h", NULL) != 0,
	       "mount hostfs");
	snprintf(img, sizeof(img), "%s/ext2.img", dir);
	snprintf(cmd, sizeof(cmd), "mke2fs -q -F -t ext2 -b 4096 '%s' %zuM >/dev/null 2>&1", img,
	         file_bytes / MiB + file_bytes / MiB / 8 + 64);
	die_if(system(cmd) != 0, "mke2fs");
	die_if(pw_mkdir("/e", 0755) != 0 || pw_mount("ext2", img, "/e", NULL) != 0, "mount ext2");

	int fds[NWHO];
	snprintf(kpath, sizeof(kpath), "%s/kernel-file", dir);
	fds[KERNEL] = open(kpath, O_RDWR | O_CREAT | O_TRUNC, 0600);
	fds[PW_HOSTFS] = pw_open("/h/f", O_RDWR | O_CREAT | O_TRUNC, 0600);
	fds[PW_EXT2] = pw_open("/e/f", O_RDWR | O_CREAT | O_TRUNC, 0600);
	for (int w = 0; w < NWHO; w++) {
		die_if(fds[w] < 0, "open");
		fill_file((enum who)w, fds[w]);
	}
	table(fds, dirty_pages);
	table(fds, 0);

	close(fds[KERNEL]);
	die_if(pw_close(fds[PW_HOSTFS]) != 0 || pw_close(fds[PW_EXT2]) != 0, "pw_close");
	die_if(pw_umount("/h") != 0 || pw_umount("/e") != 0, "pw_umount");
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	return 0;
}

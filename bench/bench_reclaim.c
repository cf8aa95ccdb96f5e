/*
 * bench_reclaim.c - reads under a memory cap against reads with no cache.
 *
 * Question: with the cache capped at a quarter of the working set, what
 * do reads of files twice the cap cost, against the same reads from the
 * device without a cache?  The target (issue 5) is at most 1.5 times.
 *
 * Working set: two files of 128 MiB (each twice the 64 MiB cap) on the
 * disk under $TMPDIR, read one after the other, from start to end, in
 * 128 KiB reads: a cyclic pattern larger than the cache, so pagewright
 * misses on (nearly) every page and evicts all the time; what it costs
 * over the device is the price of the cache under pressure (allocation,
 * reclaim, the copies, for mappings the zaps and faults).  Before every
 * pass the kernel's cache of the backing files is dropped
 * (posix_fadvise DONTNEED after fdatasync), on every side, so each pass
 * reads from the disk.
 *
 * Contenders, interleaved pass by pass, median of BENCH_RECLAIM_REPS:
 *   kernel pread          read(2) of the host files, cold kernel cache
 *   kernel O_DIRECT       the same reads with O_DIRECT: no cache at all
 *   pagewright hostfs     pw_pread through hostfs on those host files
 *   pagewright ext2       pw_pread of the same bytes in an ext2 image
 *   kernel mmap           mmap(2) of the host files, one load per page
 *   pagewright mmap       pw_mmap on hostfs, one load per page
 * Ratios are against "kernel pread" (and the mmap row against "kernel
 * mmap"): the same reads from the device with no (warm) cache.
 *
 * Environment: BENCH_RECLAIM_REPS (default 5), BENCH_RECLAIM_ONLY (one
 * contender and its reference, by its row number from 0), TMPDIR.
 */
#include "bench_common.h"

#include <pagewright/pagewright.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define CAP (64 * MiB)
#define FILESZ (2 * CAP)
#define NFILES 2
#define RDSZ (128 * KiB)
#define MAXREPS 15

enum who { K_PREAD, K_DIRECT, PW_HOST, PW_EXT2, K_MMAP, PW_MMAP, NWHO };
static const char *who_name[NWHO] = {"kernel pread (cold)", "kernel O_DIRECT",
                                     "pagewright hostfs", "pagewright ext2",
                                     "kernel mmap (cold)", "pagewright mmap"};
static const int ref_of[NWHO] = {K_PREAD, K_PREAD, K_PREAD, K_PREAD, K_MMAP, K_MMAP};

static char dir[256], img[400];
static char host_path[NFILES][400];
static char *buf;
static volatile unsigned long sink;

/* Make the kernel forget its cached pages of a host file. */
static void
drop_host_cache(const char *path)
{
	int fd = open(path, O_RDONLY);
	die_if(fd < 0, path);
	fdatasync(fd);
	die_if(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0, "posix_fadvise");
	close(fd);
}

static void
drop_all_host_caches(void)
{
	for (int f = 0; f < NFILES; f++)
		drop_host_cache(host_path[f]);
	drop_host_cache(img);
}

static void
read_kernel(const char *path, bool direct)
{
	int fd = open(path, O_RDONLY | (direct ? O_DIRECT : 0));
	die_if(fd < 0, path);
	for (size_t off = 0; off < FILESZ; off += RDSZ)
		die_if(pread(fd, buf, RDSZ, (off_t)off) != (ssize_t)RDSZ, "pread");
	close(fd);
}

static void
read_pw(const char *path)
{
	int fd = pw_open(path, O_RDONLY);
	die_if(fd < 0, path);
	for (size_t off = 0; off < FILESZ; off += RDSZ)
		die_if(pw_pread(fd, buf, RDSZ, (off_t)off) != (ssize_t)RDSZ, "pw_pread");
	pw_close(fd);
}

static void
touch_pages(const unsigned char *m)
{
	unsigned long s = 0;
	for (size_t off = 0; off < FILESZ; off += 4096)
		s += m[off];
	sink += s;
}

static void
mmap_kernel(const char *path)
{
	int fd = open(path, O_RDONLY);
	die_if(fd < 0, path);
	unsigned char *m = mmap(NULL, FILESZ, PROT_READ, MAP_SHARED, fd, 0);
	die_if(m == MAP_FAILED, "mmap");
	touch_pages(m);
	munmap(m, FILESZ);
	close(fd);
}

static void
mmap_pw(const char *path)
{
	int fd = pw_open(path, O_RDONLY);
	die_if(fd < 0, path);
	unsigned char *m = pw_mmap(NULL, FILESZ, PROT_READ, MAP_SHARED, fd, 0);
	die_if(m == MAP_FAILED, "pw_mmap");
	touch_pages(m);
	pw_munmap(m, FILESZ);
	pw_close(fd);
}

/* One pass of a contender over the working set; seconds. */
static double
pass(enum who w)
{
	char path[64];
	drop_all_host_caches();
	uint64_t t0 = now_ns();
	for (int f = 0; f < NFILES; f++) {
		switch (w) {
		case K_PREAD: read_kernel(host_path[f], false); break;
		case K_DIRECT: read_kernel(host_path[f], true); break;
		case K_MMAP: mmap_kernel(host_path[f]); break;
		case PW_HOST:
		case PW_EXT2:
			snprintf(path, sizeof(path), "/%c/f%d", w == PW_HOST ? 'h' : 'e', f);
			read_pw(path);
			break;
		case PW_MMAP:
			snprintf(path, sizeof(path), "/h/f%d", f);
			mmap_pw(path);
			break;
		default: break;
		}
	}
	return (double)(now_ns() - t0) / 1e9;
}

static void
setup(void)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(dir, sizeof(dir), "%s/pw-bench-reclaim.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	die_if(!mkdtemp(dir), "mkdtemp");
	char host[300], cmd[900];
	snprintf(host, sizeof(host), "%s/host", dir);
	die_if(mkdir(host, 0700) != 0, host);
	snprintf(img, sizeof(img), "%s/ext2.img", dir);
	snprintf(cmd, sizeof(cmd), "mke2fs -q -F -t ext2 -b 4096 '%s' %luM >/dev/null 2>&1", img,
	         (unsigned long)(NFILES * FILESZ / MiB + 64));
	die_if(system(cmd) != 0, "mke2fs");
	die_if(pw_mkdir("/h", 0755) || pw_mount("hostfs", host, "/h", NULL), "mount hostfs");
	die_if(pw_mkdir("/e", 0755) || pw_mount("ext2", img, "/e", NULL), "mount ext2");
	/* the files, written through pagewright (and so under its cap too) */
	char *chunk = malloc(MiB);
	die_if(!chunk, "malloc");
	for (int f = 0; f < NFILES; f++) {
		snprintf(host_path[f], sizeof(host_path[f]), "%s/f%d", host, f);
		for (int m = 0; m < 2; m++) {
			char path[64];
			snprintf(path, sizeof(path), "/%c/f%d", m ? 'e' : 'h', f);
			int fd = pw_open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
			die_if(fd < 0, path);
			for (size_t off = 0; off < FILESZ; off += MiB) {
				fill_pattern(chunk, MiB, (unsigned)(off / MiB + (size_t)f));
				die_if(pw_pwrite(fd, chunk, MiB, (off_t)off) != (ssize_t)MiB, "pw_pwrite");
			}
			die_if(pw_fsync(fd) != 0 || pw_close(fd) != 0, "pw_fsync");
		}
	}
	free(chunk);
	die_if(posix_memalign((void **)&buf, 4096, RDSZ) != 0, "posix_memalign");
}

static void
teardown(void)
{
	char cmd[400];
	die_if(pw_umount("/h") != 0 || pw_umount("/e") != 0, "pw_umount");
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
}

int
main(void)
{
	bench_init();
	const char *e = getenv("BENCH_RECLAIM_REPS");
	int reps = e && atoi(e) > 0 ? (atoi(e) < MAXREPS ? atoi(e) : MAXREPS) : 5;
	setenv("PAGEWRIGHT_MEM_LIMIT", "64M", 1);
	print_machine("bench_reclaim: reads of files twice the cache's cap");
	setup();
	printf("working set: %d files of %lu MiB on the disk under %s, read in %lu KiB\n"
	       "reads (mmap: one load per page); pagewright's cap %lu MiB (a quarter of it);\n"
	       "the kernel's cache of the backing files dropped before every pass\n",
	       NFILES, (unsigned long)(FILESZ / MiB), dir, (unsigned long)(RDSZ / KiB),
	       (unsigned long)(CAP / MiB));
	/* BENCH_RECLAIM_ONLY=N: contender N (0..5, in the table's order) and
	 * its reference only, to profile one. */
	bool on[NWHO];
	const char *only = getenv("BENCH_RECLAIM_ONLY");
	for (enum who w = 0; w < NWHO; w++)
		on[w] = !only || atoi(only) == (int)w || ref_of[atoi(only) % NWHO] == (int)w;
	double t[NWHO][MAXREPS];
	struct pw_stats s0, s1;
	for (enum who w = 0; w < NWHO; w++)
		if (on[w])
			(void)pass(w); /* warm-up: the pool grows to its cap */
	pw_get_stats(&s0);
	for (int r = 0; r < reps; r++)
		for (enum who w = 0; w < NWHO; w++)
			t[w][r] = on[w] ? pass(w) : 1;
	pw_get_stats(&s1);
	printf("\n%-22s %9s %9s %7s   %s\n", "reader", "MB/s", "s/pass", "ratio",
	       "spread (s/pass min..max)");
	double med[NWHO];
	for (enum who w = 0; w < NWHO; w++) {
		if (!on[w])
			continue;
		struct sample sm = summarise(t[w], reps);
		med[w] = sm.med;
		char ratio[16] = "1.00";
		if (ref_of[w] != (int)w)
			snprintf(ratio, sizeof(ratio), "%.2f", med[w] / med[ref_of[w]]);
		printf("%-22s %9.0f %9.3f %7s   %.3f..%.3f\n", who_name[w],
		       (double)(NFILES * FILESZ) / 1e6 / med[w], med[w], ratio, sm.min, sm.max);
	}
	uint64_t hits = s1.hits - s0.hits, misses = s1.misses - s0.misses;
	uint64_t evicted = s1.reclaimed_pages - s0.reclaimed_pages;
	uint64_t zaps = s1.reclaim_unmaps - s0.reclaim_unmaps;
	printf("\npagewright over the timed passes: %llu pages evicted, %llu unmap calls "
	       "(%.0f pages each),\nread lookups %llu hits / %llu misses, pages in use at "
	       "the end %llu (cap %llu)\n",
	       (unsigned long long)evicted, (unsigned long long)zaps,
	       zaps ? (double)evicted / (double)zaps : 0.0, (unsigned long long)hits,
	       (unsigned long long)misses, (unsigned long long)s1.allocated_pages,
	       (unsigned long long)s1.mem_limit_pages);
	teardown();
	char load[128] = "?";
	FILE *f = fopen("/proc/loadavg", "r");
	if (f) {
		if (fgets(load, sizeof(load), f))
			load[strcspn(load, "\n")] = 0;
		fclose(f);
	}
	printf("load at the end (/proc/loadavg): %s\n", load);
	return 0;
}

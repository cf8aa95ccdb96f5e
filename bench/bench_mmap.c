/*
 * bench_mmap.c - first touch of a freshly mapped, cached file.
 *
 * Question: what does it cost to fault in a mapping of a file whose pages
 * are all in the page cache, pagewright's SIGSEGV-served faults against
 * the kernel's own page faults on tmpfs?
 *
 * A 64 MiB file (16384 pages) is written first, so every page is cached.
 * Each round maps the whole file MAP_SHARED at a fresh address, touches one
 * byte per page in order (a load for read faults, a store for write
 * faults), and unmaps it.  Reported per page: the touch loop alone, and
 * map + touch + unmap.  Faults taken are reported per round: pagewright's
 * own counters (faults served by its handler, extra pages mapped by
 * fault-around) and the kernel's minor-fault count (getrusage), which for
 * pagewright counts the kernel faults on the frames it mapped.
 *
 * The kernel's file is touched through a second, throw-away mapping right
 * before each timed round: DESIGN.md notes that the development machines
 * mark page-cache pages idle after a few seconds, which turns the kernel's
 * fault-around off for them.  The warm-up mapping is not timed.
 *
 * Rounds alternate kernel / pagewright so both see the same machine noise.
 */
#include "bench_common.h"

#include <pagewright/pagewright.h>

#include <stdbool.h>
#include <sys/mman.h>

#define NPAGES 16384UL
#define FILESZ (NPAGES * 4096UL)
#define ROUNDS 5

enum impl { KERNEL, PW };

struct result {
	double touch[ROUNDS], total[ROUNDS]; /* ns per page */
	double faults, around, minflt;      /* per round (means) */
};

static volatile unsigned char sink;

static void *
do_map(enum impl impl, int fd, bool write)
{
	int prot = PROT_READ | (write ? PROT_WRITE : 0);
	void *p = impl == KERNEL ? mmap(NULL, FILESZ, prot, MAP_SHARED, fd, 0)
	                         : pw_mmap(NULL, FILESZ, prot, MAP_SHARED, fd, 0);
	die_if(p == MAP_FAILED, impl == KERNEL ? "mmap" : "pw_mmap");
	return p;
}

static void
do_unmap(enum impl impl, void *p)
{
	int r = impl == KERNEL ? munmap(p, FILESZ) : pw_munmap(p, FILESZ);
	die_if(r != 0, "munmap");
}

static void
touch(volatile unsigned char *p, bool write)
{
	if (write) {
		for (size_t i = 0; i < NPAGES; i++)
			p[i * 4096] = (unsigned char)i;
	} else {
		unsigned char s = 0;
		for (size_t i = 0; i < NPAGES; i++)
			s += p[i * 4096];
		sink = s;
	}
}

/* The kernel's warm-up: a throw-away read mapping, touched once. */
static void
warm_kernel(int fd)
{
	void *p = do_map(KERNEL, fd, false);
	touch(p, false);
	do_unmap(KERNEL, p);
}

static void
one_round(enum impl impl, int fd, bool write, struct result *res, int r)
{
	struct pw_stats s0, s1;
	if (impl == KERNEL)
		warm_kernel(fd);
	pw_get_stats(&s0);
	long f0 = minflt();
	uint64_t t0 = now_ns();
	void *p = do_map(impl, fd, write);
	uint64_t t1 = now_ns();
	touch(p, write);
	uint64_t t2 = now_ns();
	do_unmap(impl, p);
	uint64_t t3 = now_ns();
	long f1 = minflt();
	pw_get_stats(&s1);
	res->touch[r] = (double)(t2 - t1) / NPAGES;
	res->total[r] = (double)(t3 - t0) / NPAGES;
	res->minflt += (double)(f1 - f0) / ROUNDS;
	res->faults += (double)(s1.faults - s0.faults) / ROUNDS;
	res->around += (double)(s1.fault_around - s0.fault_around) / ROUNDS;
}

int
main(void)
{
	bench_init();
	print_machine("bench_mmap: first touch of a mapped, cached file");
	printf("file: %lu pages (%lu MiB), all cached; MAP_SHARED, one byte "
	       "touched per page, in order\n"
	       "pagewright: pw_mmap of a ramfs file (faults served by its SIGSEGV "
	       "handler)\n"
	       "kernel:     mmap(2) of a tmpfs file in /dev/shm, re-warmed through "
	       "another mapping\n            just before each round (see "
	       "DESIGN.md, idle pages)\n"
	       "method: CLOCK_MONOTONIC around each round; median of %d rounds (after 1 warm-up\n"
	       "round each), rounds alternating kernel / pagewright; a "
	       "round maps a fresh range\n"
	       "target (not asserted): pagewright read faults within 3x the "
	       "kernel's cost per page\n\n",
	       NPAGES, FILESZ / MiB, ROUNDS);

	die_if(pw_mkdir("/m", 0755) != 0, "pw_mkdir /m");
	die_if(pw_mount("ramfs", NULL, "/m", NULL) != 0, "pw_mount ramfs");

	char *chunk = malloc(MiB);
	die_if(!chunk, "malloc");
	fill_pattern(chunk, MiB, 5);
	char kpath[64];
	snprintf(kpath, sizeof(kpath), "/dev/shm/pw-bench-mmap.%d", (int)getpid());
	int kfd = open(kpath, O_RDWR | O_CREAT | O_TRUNC, 0600);
	die_if(kfd < 0, kpath);
	unlink(kpath);
	int pfd = pw_open("/m/map", O_RDWR | O_CREAT | O_TRUNC, 0600);
	die_if(pfd < 0, "pw_open");
	for (size_t off = 0; off < FILESZ; off += MiB) {
		die_if(pwrite(kfd, chunk, MiB, (off_t)off) != (ssize_t)MiB, "pwrite");
		die_if(pw_pwrite(pfd, chunk, MiB, (off_t)off) != (ssize_t)MiB, "pw_pwrite");
	}
	free(chunk);

	static const char *const access[2] = {"read", "write"};
	struct result res[2][2]; /* [write][impl] */
	memset(res, 0, sizeof(res));
	for (int w = 0; w < 2; w++) {
		/* Warm-up round of each, not reported. */
		struct result junk = {0};
		one_round(KERNEL, kfd, w, &junk, 0);
		one_round(PW, pfd, w, &junk, 0);
		for (int r = 0; r < ROUNDS; r++) {
			one_round(KERNEL, kfd, w, &res[w][KERNEL], r);
			one_round(PW, pfd, w, &res[w][PW], r);
		}
	}

	printf("%-11s %-6s %10s %17s %10s %10s %9s %9s %9s %9s\n", "contender",
	       "access", "ns/page", "spread", "pages/s", "+map+unm", "vs kernel",
	       "pw faults", "pw around", "kern flt");
	printf("%-11s %-6s %10s %17s %10s %10s %9s %9s %9s %9s\n", "", "",
	       "(touch)", "(touch)", "(touch)", "ns/page", "(cost x)", "/round",
	       "/round", "/round");
	for (int w = 0; w < 2; w++) {
		struct sample t[2], tot[2];
		for (int im = 0; im < 2; im++) {
			t[im] = summarise(res[w][im].touch, ROUNDS);
			tot[im] = summarise(res[w][im].total, ROUNDS);
		}
		for (int im = 0; im < 2; im++) {
			char spread[40];
			snprintf(spread, sizeof(spread), "%.0f..%.0f", t[im].min, t[im].max);
			char pwf[16] = "-", pwa[16] = "-";
			if (im == PW) {
				snprintf(pwf, sizeof(pwf), "%.0f", res[w][im].faults);
				snprintf(pwa, sizeof(pwa), "%.0f", res[w][im].around);
			}
			printf("%-11s %-6s %10.0f %17s %10.0f %10.0f %8.2fx %9s %9s %9.0f\n",
			       im == PW ? "pagewright" : "kernel", access[w], t[im].med,
			       spread, 1e9 / t[im].med, tot[im].med,
			       t[im].med / t[KERNEL].med, pwf, pwa, res[w][im].minflt);
		}
		printf("\n");
	}
	struct pw_stats st;
	pw_get_stats(&st);
	printf("'vs kernel' is pagewright's cost per page / the kernel's (lower is "
	       "better; target <= 3x for reads)\n"
	       "'pw faults' = SIGSEGVs served by pagewright; 'pw around' = extra "
	       "pages they mapped;\n'kern flt' = the kernel's minor faults in the "
	       "round (getrusage ru_minflt)\n"
	       "pagewright totals at the end: faults=%llu fault_around=%llu "
	       "mapped_pages=%llu\n",
	       (unsigned long long)st.faults, (unsigned long long)st.fault_around,
	       (unsigned long long)st.mapped_pages);
	close(kfd);
	pw_close(pfd);
	return 0;
}

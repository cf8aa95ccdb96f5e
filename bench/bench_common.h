/*
 * bench_common.h - what every benchmark program shares: the clock, the
 * machine banner, medians, and a sampler that sizes its batches.
 *
 * Not a benchmark itself (the Makefile builds only bench/bench_*.c, and this
 * header is included, not compiled).  Everything here is static so that
 * each program stays one translation unit.
 *
 * Method, the same in every program:
 *  - CLOCK_MONOTONIC (vDSO) around a batch of operations, never around one
 *    operation: a batch is sized so that it lasts at least bench_batch_ns.
 *  - Warm-up batches first (page-cache pages allocated, CPU caches and
 *    branch predictors warm, the pool grown), not reported.
 *  - BENCH_REPS batches per contender, the contenders of one table row
 *    interleaved batch by batch; the median of the per-operation costs is
 *    reported.  The spread (min..max over the batches) is printed too, so a
 *    reader sees how noisy the figure is.
 *  - Every reference (memcpy, the kernel) is measured in the same run, and
 *    ratios are computed from those same-run medians.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define BENCH_REPS 7
#define KiB (1024UL)
#define MiB (1024UL * 1024UL)

/* Each batch lasts at least this long (overridable by BENCH_BATCH_MS). */
static uint64_t bench_batch_ns = 40 * 1000 * 1000;

static inline uint64_t
now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Keep the compiler from dropping or merging stores to memory it cannot
 * see used (the memcpy references). */
static inline void
clobber(void)
{
	__asm__ __volatile__("" ::: "memory");
}

static inline void
die(const char *what)
{
	fprintf(stderr, "bench: %s: %s\n", what, strerror(errno));
	exit(1);
}

static inline void
die_if(int cond, const char *what)
{
	if (cond)
		die(what);
}

static inline int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

struct sample {
	double med, min, max; /* per operation, ns */
};

static inline struct sample
summarise(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	struct sample s = {n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2, v[0],
	                   v[n - 1]};
	return s;
}

/*
 * run(ctx, n) performs n operations and returns the nanoseconds that count
 * (a run may stop its own clock around set-up it does not want timed, such
 * as truncating a file between append passes).
 */
typedef uint64_t (*bench_fn)(void *ctx, long n);

/* Size a batch: grow n until one batch takes bench_batch_ns (this doubles
 * as the first warm-up).  max_n caps a batch. */
static inline long
calibrate(bench_fn fn, void *ctx, long max_n)
{
	long n = 1;
	for (;;) {
		uint64_t t = fn(ctx, n);
		if (t >= bench_batch_ns || n >= max_n)
			return n;
		long next = t > 0 ? (long)((double)n * 1.3 * (double)bench_batch_ns / (double)t) : n * 8;
		if (next > n * 8)
			next = n * 8;
		if (next <= n)
			next = n * 2;
		n = next < max_n ? next : max_n;
	}
}

/*
 * Measure k contenders against each other: calibrate each, run one more
 * full batch of each as the warm-up proper, then BENCH_REPS rounds in
 * which every contender runs one batch in turn.  Interleaving puts the
 * contenders under the same machine noise (a neighbour on the host eating
 * memory bandwidth shows in all of them, not in one).
 */
static inline void
measure_set(int k, bench_fn *fn, void **ctx, long max_n, struct sample *out)
{
	long n[8];
	double v[8][BENCH_REPS];
	for (int j = 0; j < k; j++) {
		n[j] = calibrate(fn[j], ctx[j], max_n);
		(void)fn[j](ctx[j], n[j]);
	}
	for (int r = 0; r < BENCH_REPS; r++)
		for (int j = 0; j < k; j++)
			v[j][r] = (double)fn[j](ctx[j], n[j]) / (double)n[j];
	for (int j = 0; j < k; j++)
		out[j] = summarise(v[j], BENCH_REPS);
}

/* One contender alone. */
static inline struct sample
measure(bench_fn fn, void *ctx, long max_n)
{
	struct sample s;
	measure_set(1, &fn, &ctx, max_n, &s);
	return s;
}

static inline void
bench_init(void)
{
	const char *e = getenv("BENCH_BATCH_MS");
	if (e && atoi(e) > 0)
		bench_batch_ns = (uint64_t)atoi(e) * 1000000u;
}

/* The machine banner: CPU model, online CPUs, kernel release. */
static inline void
print_machine(const char *title)
{
	char model[256] = "unknown";
	FILE *f = fopen("/proc/cpuinfo", "r");
	if (f) {
		char line[512];
		while (fgets(line, sizeof(line), f)) {
			if (strncmp(line, "model name", 10) == 0) {
				char *p = strchr(line, ':');
				if (p) {
					p++;
					while (*p == ' ' || *p == '\t')
						p++;
					p[strcspn(p, "\n")] = 0;
					snprintf(model, sizeof(model), "%s", p);
				}
				break;
			}
		}
		fclose(f);
	}
	struct utsname u;
	if (uname(&u) != 0)
		strcpy(u.release, "unknown");
	char load[128] = "?";
	f = fopen("/proc/loadavg", "r");
	if (f) {
		if (fgets(load, sizeof(load), f))
			load[strcspn(load, "\n")] = 0;
		fclose(f);
	}
	printf("==== %s ====\n", title);
	printf("machine: %s, %ld CPUs online, kernel %s\n", model,
	       sysconf(_SC_NPROCESSORS_ONLN), u.release);
	printf("load at start (/proc/loadavg): %s\n", load);
}

/* The batch method, for programs that use measure_set(). */
static inline void
print_batch_method(void)
{
	printf("method: CLOCK_MONOTONIC around batches of >= %llu ms, warm-up "
	       "batches,\n        median of %d batches, contenders interleaved "
	       "batch by batch\n        (spread = min..max of those batches)\n",
	       (unsigned long long)(bench_batch_ns / 1000000u), BENCH_REPS);
}

static inline const char *
size_name(size_t sz, char *buf, size_t len)
{
	if (sz >= MiB && sz % MiB == 0)
		snprintf(buf, len, "%zu MiB", sz / MiB);
	else if (sz >= KiB && sz % KiB == 0)
		snprintf(buf, len, "%zu KiB", sz / KiB);
	else
		snprintf(buf, len, "%zu B", sz);
	return buf;
}

/* Bytes per ns * 1000 = MB/s (10^6 bytes per second). */
static inline double
mb_per_s(size_t bytes_per_op, double ns_per_op)
{
	return (double)bytes_per_op * 1000.0 / ns_per_op;
}

/* Resident set size in bytes, from /proc/self/statm. */
static inline long
rss_bytes(void)
{
	long size = 0, res = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (!f)
		return -1;
	if (fscanf(f, "%ld %ld", &size, &res) != 2)
		res = -1;
	fclose(f);
	return res < 0 ? -1 : res * sysconf(_SC_PAGESIZE);
}

static inline long
minflt(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_minflt;
}

/* Fill a buffer with a non-zero pattern (so nothing is a zero page). */
static inline void
fill_pattern(void *buf, size_t len, unsigned seed)
{
	unsigned char *p = buf;
	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)(i * 131u + seed + 1u);
}

#endif /* BENCH_COMMON_H */

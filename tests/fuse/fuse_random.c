/*
 * fuse_random.c - the random exerciser of tests/stress/test_random.c, run
 * through a mounted pagewright filesystem by a separate process with
 * ordinary system calls.
 *
 *   fuse-random DIR ORACLE    exercise files in DIR; at the end write each
 *                             file's expected contents to ORACLE/NAME, so
 *                             that the script can compare them with the
 *                             files after an unmount and a new mount
 *
 * Several threads run random operations on a few files in DIR: pwrite,
 * pwritev, write at the file position, O_APPEND writes, writes whose
 * source is a shared mapping of this or another file on the mount, pread,
 * preadv, loads and stores through a shared mapping of each file, ftruncate
 * (up and down), fsync and fdatasync, msync, madvise(MADV_DONTNEED),
 * posix_fadvise(DONTNEED), private mappings (their stores stay theirs),
 * new shared mappings made and unmapped, and whole-file checks.  Every
 * result is checked against an oracle: one byte array and one size per
 * file.
 *
 * The oracle stays exact as in test_random.c: each file has a mutex, held
 * across every operation that changes or observes its contents and the
 * oracle's update or check (both files' mutexes, in file order, for a
 * write whose source is a mapping of another file).  fsync, fdatasync,
 * msync, madvise and fadvise must not change the contents, so they run
 * without it and race with everything else on the same file.
 *
 * The seed is printed first; PW_SEED=N replays each thread's sequence of
 * operations (not their interleaving).  PW_SECONDS (default 6) and PW_OPS
 * bound the run.  A mismatch, or a SIGBUS, prints the seed and the
 * thread's last operations.  Output: "ok - ..." or "not ok - ...", then
 * "N passed, N failed".
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

enum {
	PG = 4096,
	NFILES = 6,
	MAXPAGES = 32,
	NT = 4,
	HIST = 24,
};
#define RMAX ((size_t)MAXPAGES * PG)

struct rfile {
	int idx, fd;
	char path[1024];
	unsigned char *map;       /* MAP_SHARED over RMAX */
	pthread_mutex_t mu;
	unsigned char *oracle;    /* bytes past size are zero */
	size_t size;
};

struct rthread {
	int id;
	uint64_t rng;
	int fds[NFILES], afds[NFILES]; /* own descriptors: plain and O_APPEND */
	char hist[HIST][200];
	long nops, counts[32];
	unsigned char *buf, *buf2;
};

static struct rfile rf[NFILES];
static uint64_t seed;
static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;
static __thread struct rthread *self;

static double
now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

#include "rops.h"

static void note(struct rthread *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void
note(struct rthread *t, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(t->hist[t->nops % HIST], sizeof(t->hist[0]), fmt, ap);
	va_end(ap);
}

static void
print_history(struct rthread *t)
{
	fprintf(stderr, "last operations of thread %d, oldest first:\n", t->id);
	for (long i = t->nops - HIST + 1; i <= t->nops; i++)
		if (i >= 0)
			fprintf(stderr, "  #%ld %s\n", i, t->hist[i % HIST]);
}

/* The first failure ends the process; the others wait for it. */
static void rfail(struct rthread *t, const char *what, ...)
	__attribute__((format(printf, 2, 3), noreturn));
static void
rfail(struct rthread *t, const char *what, ...)
{
	pthread_mutex_lock(&fail_lock);
	va_list ap;
	va_start(ap, what);
	fprintf(stderr, "RANDOM EXERCISER MISMATCH through the mount (seed %" PRIu64
	        ", replay with PW_SEED=%" PRIu64 "), thread %d, op %ld: ", seed, seed,
	        t ? t->id : -1, t ? t->nops : -1);
	vfprintf(stderr, what, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (t)
		print_history(t);
	printf("not ok - random exerciser through the mount (seed %" PRIu64 ")\n", seed);
	printf("0 passed, 1 failed\n");
	fflush(stdout);
	_exit(1);
}

static void
on_sigbus(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	rfail(self, "SIGBUS at %p", si->si_addr);
}

/* Compare n bytes at got with the oracle of f at off. */
static void
rcheck(struct rthread *t, struct rfile *f, const unsigned char *got, size_t off, size_t n,
       const char *how)
{
	for (size_t i = 0; i < n; i++)
		if (got[i] != f->oracle[off + i])
			rfail(t, "%s of %s: byte %zu is 0x%02x, oracle 0x%02x (size %zu)", how, f->path,
			      off + i, got[i], f->oracle[off + i], f->size);
}

static void
oracle_write(struct rfile *f, size_t pos, const unsigned char *src, size_t n)
{
	memcpy(f->oracle + pos, src, n);
	if (pos + n > f->size)
		f->size = pos + n;
}

static void
rverify(struct rthread *t, struct rfile *f, unsigned char *b)
{
	struct stat st;
	if (fstat(f->fd, &st) != 0 || (size_t)st.st_size != f->size)
		rfail(t, "size of %s is %lld, oracle %zu", f->path, (long long)st.st_size, f->size);
	ssize_t r = pread(f->fd, b, RMAX + 1, 0);
	if (r != (ssize_t)f->size)
		rfail(t, "pread of all of %s returned %zd, size %zu (%s)", f->path, r, f->size,
		      strerror(errno));
	rcheck(t, f, b, 0, f->size, "full pread");
	rcheck(t, f, f->map, 0, f->size, "full mapping load");
}

static void
lock2(struct rfile *a, struct rfile *b)
{
	struct rfile *lo = a->idx <= b->idx ? a : b, *hi = lo == a ? b : a;
	pthread_mutex_lock(&lo->mu);
	if (hi != lo)
		pthread_mutex_lock(&hi->mu);
}

static void
unlock2(struct rfile *a, struct rfile *b)
{
	pthread_mutex_unlock(&a->mu);
	if (a != b)
		pthread_mutex_unlock(&b->mu);
}

enum rop {
	OP_PWRITE, OP_PWRITEV, OP_WRITE_FPOS, OP_APPEND, OP_WRITE_FROM_MAP, OP_PREAD, OP_READV,
	OP_LOAD, OP_STORE, OP_TRUNCATE, OP_FSYNC, OP_FADVISE, OP_MADV, OP_MSYNC, OP_PRIVATE,
	OP_MAPCYCLE, OP_VERIFY, OP_N
};
static const char *op_names[OP_N] = {
	"pwrite", "pwritev", "write@fpos", "append", "write<-map", "pread", "preadv", "load",
	"store", "truncate", "fsync", "fadvise", "madvise", "msync", "private", "mapcycle",
	"verify"};
static const int op_weight[OP_N] = {10, 6, 4, 3, 8, 6, 3, 8, 10, 4, 3, 2, 3, 3, 2, 2, 1};

static enum rop
pick_op(struct rthread *t)
{
	int total = 0;
	for (int i = 0; i < OP_N; i++)
		total += op_weight[i];
	int x = (int)rn(t, (size_t)total);
	for (int i = 0; i < OP_N; i++) {
		if (x < op_weight[i])
			return (enum rop)i;
		x -= op_weight[i];
	}
	return OP_VERIFY;
}

/* A position and length for a write that stays within RMAX. */
static void
wrange(struct rthread *t, struct rfile *f, size_t *pos, size_t *len)
{
	size_t n = rlen(t), p;
	switch (rn(t, 3)) {
	case 0: p = rn(t, f->size + 1); break;          /* inside or at EOF */
	case 1: p = f->size + rn(t, 2 * PG); break;     /* a little past EOF */
	default: p = rn(t, RMAX); break;                /* anywhere */
	}
	if (p >= RMAX)
		p = RMAX - 1;
	if (p + n > RMAX)
		n = RMAX - p;
	*pos = p;
	*len = n;
}

static void
op_pwrite(struct rthread *t, struct rfile *f)
{
	size_t pos, len;
	pthread_mutex_lock(&f->mu);
	wrange(t, f, &pos, &len);
	rfill(t, t->buf, len);
	note(t, "pwrite %s pos %zu len %zu", f->path, pos, len);
	ssize_t r = pwrite(f->fd, t->buf, len, (off_t)pos);
	if (r != (ssize_t)len)
		rfail(t, "pwrite returned %zd, want %zu (%s)", r, len, strerror(errno));
	oracle_write(f, pos, t->buf, len);
	pthread_mutex_unlock(&f->mu);
}

/* Segments from the heap, zero-length ones among them. */
static void
op_pwritev(struct rthread *t, struct rfile *f)
{
	size_t pos, len, total = 0;
	pthread_mutex_lock(&f->mu);
	wrange(t, f, &pos, &len);
	int cnt = 1 + (int)rn(t, 5);
	struct iovec iov[6];
	for (int i = 0; i < cnt; i++) {
		size_t rest = len - total;
		size_t sl = (rn(t, 4) == 0 || rest == 0) ? 0 : 1 + rn(t, rest);
		rfill(t, t->buf + total, sl);
		iov[i].iov_base = t->buf + total;
		iov[i].iov_len = sl;
		total += sl;
	}
	note(t, "pwritev %s pos %zu len %zu segs %d", f->path, pos, total, cnt);
	ssize_t r = pwritev(f->fd, iov, cnt, (off_t)pos);
	if (r != (ssize_t)total)
		rfail(t, "pwritev returned %zd, want %zu (%s)", r, total, strerror(errno));
	if (total)
		oracle_write(f, pos, t->buf, total);
	pthread_mutex_unlock(&f->mu);
}

static void
op_write_fpos(struct rthread *t, struct rfile *f, bool append)
{
	size_t pos, len;
	pthread_mutex_lock(&f->mu);
	wrange(t, f, &pos, &len);
	if (append)
		pos = f->size;
	if (pos + len > RMAX) {
		pthread_mutex_unlock(&f->mu);
		return;
	}
	rfill(t, t->buf, len);
	int fd = append ? t->afds[f->idx] : t->fds[f->idx];
	note(t, "%s %s pos %zu len %zu", append ? "append" : "write@fpos", f->path, pos, len);
	if (!append && lseek(fd, (off_t)pos, SEEK_SET) != (off_t)pos)
		rfail(t, "lseek failed (%s)", strerror(errno));
	ssize_t r = write(fd, t->buf, len);
	if (r != (ssize_t)len)
		rfail(t, "write returned %zd, want %zu (%s)", r, len, strerror(errno));
	off_t np = lseek(fd, 0, SEEK_CUR);
	if (np != (off_t)(pos + len))
		rfail(t, "position after write %lld, want %zu", (long long)np, pos + len);
	oracle_write(f, pos, t->buf, len);
	pthread_mutex_unlock(&f->mu);
}

/* The source is a shared mapping of this file or another one on the
 * mount: the kernel faults it in (READ requests) while it sends WRITE. */
static void
op_write_from_map(struct rthread *t, struct rfile *f)
{
	struct rfile *g = rn(t, 2) ? f : &rf[rn(t, NFILES)];
	size_t pos, len;
	lock2(f, g);
	wrange(t, f, &pos, &len);
	if (len > g->size)
		len = g->size;
	size_t so = rn(t, g->size - len + 1);
	/* Overlapping ranges of one file: the result is not defined. */
	if (len == 0 || (g == f && so < pos + len && pos < so + len)) {
		unlock2(f, g);
		return;
	}
	memcpy(t->buf, g->oracle + so, len);
	note(t, "write<-map %s pos %zu len %zu from %s @%zu", f->path, pos, len, g->path, so);
	ssize_t r = pwrite(f->fd, g->map + so, len, (off_t)pos);
	if (r != (ssize_t)len)
		rfail(t, "pwrite from a mapping returned %zd, want %zu (%s)", r, len, strerror(errno));
	oracle_write(f, pos, t->buf, len);
	unlock2(f, g);
}

static void
op_read(struct rthread *t, struct rfile *f, bool vec)
{
	pthread_mutex_lock(&f->mu);
	size_t pos = rn(t, f->size + PG), len = rlen(t);
	size_t want = pos >= f->size ? 0 : pos + len > f->size ? f->size - pos : len;
	note(t, "%s %s pos %zu len %zu", vec ? "preadv" : "pread", f->path, pos, len);
	ssize_t r;
	if (!vec) {
		r = pread(f->fd, t->buf, len, (off_t)pos);
	} else {
		size_t a = rn(t, len + 1);
		struct iovec iov[3] = {{t->buf, a}, {t->buf + a, 0}, {t->buf + a, len - a}};
		r = preadv(f->fd, iov, 3, (off_t)pos);
	}
	if (r != (ssize_t)want)
		rfail(t, "read returned %zd, want %zu (%s)", r, want, strerror(errno));
	rcheck(t, f, t->buf, pos, want, vec ? "preadv" : "pread");
	pthread_mutex_unlock(&f->mu);
}

static void
op_load_store(struct rthread *t, struct rfile *f, bool store)
{
	pthread_mutex_lock(&f->mu);
	if (f->size) {
		size_t pos = rn(t, f->size), len = 1 + rn(t, f->size - pos);
		if (len > 2 * PG)
			len = 2 * PG;
		note(t, "%s %s pos %zu len %zu", store ? "store" : "load", f->path, pos, len);
		if (store) {
			rfill(t, t->buf, len);
			memcpy(f->map + pos, t->buf, len);
			memcpy(f->oracle + pos, t->buf, len);
		} else {
			memcpy(t->buf, f->map + pos, len);
			rcheck(t, f, t->buf, pos, len, "mapped load");
		}
	}
	pthread_mutex_unlock(&f->mu);
}

static void
op_truncate(struct rthread *t, struct rfile *f)
{
	pthread_mutex_lock(&f->mu);
	size_t ns;
	switch (rn(t, 3)) {
	case 0: ns = rn(t, RMAX + 1); break;
	case 1: ns = f->size > 100 ? f->size - rn(t, 100) : 0; break;
	default: ns = f->size + rn(t, PG); break;
	}
	if (ns > RMAX)
		ns = RMAX;
	note(t, "ftruncate %s %zu -> %zu", f->path, f->size, ns);
	if (ftruncate(f->fd, (off_t)ns) != 0)
		rfail(t, "ftruncate failed (%s)", strerror(errno));
	if (ns < f->size)
		memset(f->oracle + ns, 0, f->size - ns);
	f->size = ns;
	pthread_mutex_unlock(&f->mu);
}

/* The calls that must not change the contents: no mutex. */
static void
op_unlocked(struct rthread *t, struct rfile *f, enum rop op)
{
	size_t p0 = rn(t, MAXPAGES), np = 1 + rn(t, MAXPAGES - p0);
	int r = 0;
	note(t, "%s %s pages %zu+%zu", op_names[op], f->path, p0, np);
	if (op == OP_FSYNC)
		r = rn(t, 2) ? fsync(f->fd) : fdatasync(f->fd);
	else if (op == OP_FADVISE)
		r = posix_fadvise(f->fd, (off_t)(p0 * PG), (off_t)(np * PG), POSIX_FADV_DONTNEED);
	else if (op == OP_MADV)
		r = madvise(f->map + p0 * PG, np * PG, MADV_DONTNEED);
	else
		r = msync(f->map + p0 * PG, np * PG, rn(t, 2) ? MS_SYNC : MS_ASYNC);
	if (r != 0)
		rfail(t, "%s failed (%s)", op_names[op], strerror(op == OP_FADVISE ? r : errno));
}

/* A new mapping of part of f: private (its stores stay in it) or shared
 * (they reach the file, seen by the long-lived mapping). */
static void
op_new_map(struct rthread *t, struct rfile *f, bool priv)
{
	pthread_mutex_lock(&f->mu);
	if (f->size == 0) {
		pthread_mutex_unlock(&f->mu);
		return;
	}
	size_t pages = (f->size + PG - 1) / PG, p0 = rn(t, pages), np = 1 + rn(t, pages - p0);
	size_t off = p0 * PG, mlen = np * PG;
	size_t vis = f->size - off < mlen ? f->size - off : mlen;
	note(t, "%s %s pages %zu+%zu", priv ? "private" : "mapcycle", f->path, p0, np);
	unsigned char *m = mmap(NULL, mlen, PROT_READ | PROT_WRITE, priv ? MAP_PRIVATE : MAP_SHARED,
	                        f->fd, (off_t)off);
	if (m == MAP_FAILED)
		rfail(t, "mmap failed (%s)", strerror(errno));
	rcheck(t, f, m, off, vis, priv ? "private mapping load" : "new mapping load");
	size_t so = rn(t, vis), sl = 1 + rn(t, vis - so);
	if (sl > 3 * PG)
		sl = 3 * PG;
	rfill(t, t->buf, sl);
	memcpy(m + so, t->buf, sl);
	if (!priv) {
		memcpy(f->oracle + off + so, t->buf, sl);
	} else {
		if (pread(f->fd, t->buf2, sl, (off_t)(off + so)) != (ssize_t)sl)
			rfail(t, "pread after a private store failed (%s)", strerror(errno));
		rcheck(t, f, t->buf2, off + so, sl, "pread after a private store");
		rcheck(t, f, f->map + off + so, off + so, sl, "shared load after a private store");
		if (memcmp(m + so, t->buf, sl) != 0)
			rfail(t, "a private mapping lost its own store");
	}
	if (munmap(m, mlen) != 0)
		rfail(t, "munmap failed (%s)", strerror(errno));
	pthread_mutex_unlock(&f->mu);
}

static void
do_op(struct rthread *t)
{
	enum rop op = pick_op(t);
	struct rfile *f = &rf[rn(t, NFILES)];
	t->counts[op]++;
	note(t, "%s %s", op_names[op], f->path);
	switch (op) {
	case OP_PWRITE: op_pwrite(t, f); break;
	case OP_PWRITEV: op_pwritev(t, f); break;
	case OP_WRITE_FPOS: op_write_fpos(t, f, false); break;
	case OP_APPEND: op_write_fpos(t, f, true); break;
	case OP_WRITE_FROM_MAP: op_write_from_map(t, f); break;
	case OP_PREAD: op_read(t, f, false); break;
	case OP_READV: op_read(t, f, true); break;
	case OP_LOAD: op_load_store(t, f, false); break;
	case OP_STORE: op_load_store(t, f, true); break;
	case OP_TRUNCATE: op_truncate(t, f); break;
	case OP_FSYNC:
	case OP_FADVISE:
	case OP_MADV:
	case OP_MSYNC: op_unlocked(t, f, op); break;
	case OP_PRIVATE: op_new_map(t, f, true); break;
	case OP_MAPCYCLE: op_new_map(t, f, false); break;
	case OP_VERIFY:
		pthread_mutex_lock(&f->mu);
		rverify(t, f, t->buf);
		pthread_mutex_unlock(&f->mu);
		break;
	case OP_N: break;
	}
}

static long ops_per_thread;
static double deadline;

static void *
run_thread(void *p)
{
	struct rthread *t = p;
	self = t;
	t->buf = malloc(RMAX + PG);
	t->buf2 = malloc(4 * PG);
	for (int i = 0; i < NFILES; i++) {
		t->fds[i] = open(rf[i].path, O_RDWR);
		t->afds[i] = open(rf[i].path, O_RDWR | O_APPEND);
		if (t->fds[i] < 0 || t->afds[i] < 0)
			rfail(t, "open %s: %s", rf[i].path, strerror(errno));
	}
	for (t->nops = 0; t->nops < ops_per_thread && now_s() < deadline; t->nops++)
		do_op(t);
	for (int i = 0; i < NFILES; i++) {
		close(t->fds[i]);
		close(t->afds[i]);
	}
	free(t->buf2);
	return NULL;
}

static void
setup(const char *dir)
{
	for (int i = 0; i < NFILES; i++) {
		struct rfile *f = &rf[i];
		f->idx = i;
		snprintf(f->path, sizeof(f->path), "%s/r%d", dir, i);
		f->fd = open(f->path, O_CREAT | O_TRUNC | O_RDWR, 0644);
		if (f->fd < 0)
			rfail(NULL, "create %s: %s", f->path, strerror(errno));
		f->map = mmap(NULL, RMAX, PROT_READ | PROT_WRITE, MAP_SHARED, f->fd, 0);
		if (f->map == MAP_FAILED)
			rfail(NULL, "mmap %s: %s (shared mappings need Linux 6.6+ with "
			      "cache=direct)", f->path, strerror(errno));
		f->oracle = calloc(1, RMAX);
		pthread_mutex_init(&f->mu, NULL);
	}
}

/* Every file against its oracle (cached, then after fsync and a cold
 * reopen), then the oracle to ORACLE/NAME for the script. */
static void
finish(const char *oracle_dir)
{
	unsigned char *b = malloc(RMAX + PG);
	for (int i = 0; i < NFILES; i++) {
		struct rfile *f = &rf[i];
		rverify(NULL, f, b);
		if (msync(f->map, RMAX, MS_SYNC) != 0 || fsync(f->fd) != 0)
			rfail(NULL, "msync/fsync of %s: %s", f->path, strerror(errno));
		munmap(f->map, RMAX);
		close(f->fd);
		int fd = open(f->path, O_RDONLY);
		ssize_t r = fd < 0 ? -1 : pread(fd, b, RMAX + 1, 0);
		if (r != (ssize_t)f->size)
			rfail(NULL, "reopened %s reads %zd bytes, oracle %zu", f->path, r, f->size);
		rcheck(NULL, f, b, 0, f->size, "pread after reopening");
		close(fd);
		char path[1200];
		snprintf(path, sizeof(path), "%s/r%d", oracle_dir, i);
		fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
		if (fd < 0 || write(fd, f->oracle, f->size) != (ssize_t)f->size || close(fd) != 0)
			rfail(NULL, "write %s: %s", path, strerror(errno));
	}
	free(b);
}

int
main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: fuse-random DIR ORACLE-DIR\n");
		return 2;
	}
	const char *s = getenv("PW_SEED");
	seed = s ? strtoull(s, NULL, 0) : ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid();
	ops_per_thread = getenv("PW_OPS") ? atol(getenv("PW_OPS")) : 1000000;
	double seconds = getenv("PW_SECONDS") ? atof(getenv("PW_SECONDS")) : 6.0;
	printf("# fuse-random: seed %" PRIu64 " (replay: PW_SEED=%" PRIu64 "), %d threads, "
	       "%d files on %s, %.0f s\n", seed, seed, NT, NFILES, argv[1], seconds);
	fflush(stdout);
	struct sigaction sa = {.sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO};
	sigaction(SIGBUS, &sa, NULL);
	setup(argv[1]);
	static struct rthread th[NT];
	pthread_t pt[NT];
	double t0 = now_s();
	deadline = t0 + seconds;
	for (int i = 0; i < NT; i++) {
		th[i].id = i;
		th[i].rng = seed * 1000003u + (uint64_t)i;
		pthread_create(&pt[i], NULL, run_thread, &th[i]);
	}
	long total = 0, counts[OP_N] = {0};
	for (int i = 0; i < NT; i++) {
		pthread_join(pt[i], NULL);
		total += th[i].nops;
		for (int j = 0; j < OP_N; j++)
			counts[j] += th[i].counts[j];
	}
	char line[600];
	size_t lo = 0;
	for (int j = 0; j < OP_N; j++)
		lo += (size_t)snprintf(line + lo, sizeof(line) - lo, "%s %ld%s", op_names[j], counts[j],
		                       j + 1 < OP_N ? ", " : "");
	printf("# %ld operations in %.1f s: %s\n", total, now_s() - t0, line);
	finish(argv[2]);
	bool enough = total >= 1000;
	printf("%s - random exerciser through the mount: %ld operations, all as the oracle "
	       "(seed %" PRIu64 ")\n", enough ? "ok" : "not ok", total, seed);
	printf("%d passed, %d failed\n", enough ? 1 : 0, enough ? 0 : 1);
	return enough ? 0 : 1;
}

/*
 * test_random.c - a model-based random exerciser.  Several threads run
 * random operations on a few files spread over ramfs, hostfs and hostfs
 * with legacy_aops, and every result is checked against an in-memory
 * oracle: one byte array and one size per file.
 *
 * Keeping the oracle exact under concurrency: each file has a mutex, and
 * every operation that changes or observes the file's contents (writes of
 * every kind, reads, mapped loads and stores, truncation, private
 * mappings) holds it across the operation and the oracle update or check.
 * An operation with a source in another file (a write from a mapping of
 * file g) holds both mutexes, taken in file order.  Operations that must
 * not change the contents (fsync, fdatasync, msync, eviction,
 * posix_fadvise DONTNEED, madvise DONTNEED) run WITHOUT the mutex, so they
 * race with the writers, readers, loads and stores of other threads on the
 * same file and pages: writeback against mapped stores, eviction against
 * faults, and so on.  Threads work on different files at once too, and the
 * after_prefault hook sometimes drops a write's source mapping between the
 * prefault and the copy.
 *
 * The seed is printed at the start; PW_SEED=<n> replays a thread's
 * sequence of operations (the interleaving differs).  PW_OPS=<n> sets the
 * operations per thread.  A mismatch prints the seed and the thread's last
 * operations.
 */
#include "../pwt.h"

#include <stdarg.h>

enum {
	R_FILES_PER_KIND = 2,
	R_NFILES = TEST_FS_KINDS * R_FILES_PER_KIND,
	R_MAXPAGES = 20,
	R_NT = 4,
	R_HIST = 24,
};
#define R_MAX ((size_t)R_MAXPAGES * PG)

struct rfile {
	struct tfs *t;
	char name[16];
	int idx, fd;
	unsigned char *map; /* MAP_SHARED over R_MAX */
	pthread_mutex_t mu;
	unsigned char *oracle; /* bytes past size are zero */
	size_t size;
};

static struct rfile rf[R_NFILES];
static uint64_t r_seed;
static _Atomic int r_failed;

struct rthread {
	int id;
	uint64_t rng;
	int fds[R_NFILES], afds[R_NFILES]; /* own descriptors: plain and O_APPEND */
	char hist[R_HIST][160];
	long nops, counts[32];
	unsigned char *buf, *buf2;
};

#include "../rops.h"

static void
note(struct rthread *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void
note(struct rthread *t, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(t->hist[t->nops % R_HIST], sizeof(t->hist[0]), fmt, ap);
	va_end(ap);
}

static void
rfail(struct rthread *t, const char *what, ...) __attribute__((format(printf, 2, 3)));
static void
rfail(struct rthread *t, const char *what, ...)
{
	atomic_store(&r_failed, 1);
	va_list ap;
	va_start(ap, what);
	fprintf(stderr, "RANDOM EXERCISER MISMATCH (seed %" PRIu64 ", replay with PW_SEED=%" PRIu64
	        "), thread %d, op %ld: ", r_seed, r_seed, t ? t->id : -1, t ? t->nops : -1);
	vfprintf(stderr, what, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (t) {
		fprintf(stderr, "last operations of thread %d, oldest first:\n", t->id);
		for (long i = t->nops - R_HIST + 1; i <= t->nops; i++)
			if (i >= 0)
				fprintf(stderr, "  #%ld %s\n", i, t->hist[i % R_HIST]);
	}
	abort();
}

/* Compare n bytes at `got` with the oracle of f at off. */
static void
rcheck(struct rthread *t, struct rfile *f, const unsigned char *got, size_t off, size_t n,
       const char *how)
{
	for (size_t i = 0; i < n; i++)
		if (got[i] != f->oracle[off + i])
			rfail(t, "%s of %s/%s: byte %zu is 0x%02x, oracle 0x%02x (size %zu)", how,
			      f->t->mnt, f->name, off + i, got[i], f->oracle[off + i], f->size);
}

static void
oracle_write(struct rfile *f, size_t pos, const unsigned char *src, size_t n)
{
	memcpy(f->oracle + pos, src, n);
	if (pos + n > f->size)
		f->size = pos + n;
}

static void
rverify(struct rthread *t, struct rfile *f)
{
	off_t sz = fsize(f->fd);
	if ((size_t)sz != f->size)
		rfail(t, "size of %s/%s is %lld, oracle %zu", f->t->mnt, f->name, (long long)sz, f->size);
	unsigned char *b = xmalloc(R_MAX + 1);
	ssize_t r = pw_pread(f->fd, b, R_MAX + 1, 0);
	if (r != (ssize_t)f->size)
		rfail(t, "pread of all of %s/%s returned %zd, size %zu", f->t->mnt, f->name, r, f->size);
	rcheck(t, f, b, 0, f->size, "full pread");
	rcheck(t, f, f->map, 0, f->size, "full mapping load");
	free(b);
}

/* ---- the after_prefault hook: drop this thread's write source once */
static __thread void *hk_addr;
static __thread size_t hk_len;
static __thread long hk_acted;

static void
r_after_prefault(struct file *file, loff_t pos, size_t bytes)
{
	(void)file;
	(void)pos;
	(void)bytes;
	if (!hk_addr)
		return;
	uintptr_t a = (uintptr_t)hk_addr & ~(uintptr_t)(PG - 1);
	size_t l = (((uintptr_t)hk_addr + hk_len + PG - 1) & ~(uintptr_t)(PG - 1)) - a;
	hk_addr = NULL;
	hk_acted++;
	ASSERT_OK(pw_madvise((void *)a, l, MADV_DONTNEED));
}

static void
lock2(struct rfile *a, struct rfile *b)
{
	if (a == b) {
		pthread_mutex_lock(&a->mu);
	} else if (a->idx < b->idx) {
		pthread_mutex_lock(&a->mu);
		pthread_mutex_lock(&b->mu);
	} else {
		pthread_mutex_lock(&b->mu);
		pthread_mutex_lock(&a->mu);
	}
}

static void
unlock2(struct rfile *a, struct rfile *b)
{
	pthread_mutex_unlock(&a->mu);
	if (a != b)
		pthread_mutex_unlock(&b->mu);
}

enum rop {
	OP_PWRITE, OP_PWRITEV, OP_WRITE_FPOS, OP_APPEND, OP_WRITE_FROM_MAP, OP_WRITEV_MIXED,
	OP_PREAD, OP_READV, OP_LOAD, OP_STORE, OP_TRUNCATE, OP_FSYNC, OP_EVICT, OP_MADV,
	OP_MSYNC, OP_PRIVATE, OP_MAPCYCLE, OP_VERIFY, OP_N
};
static const char *op_names[OP_N] = {
    "pwrite", "pwritev", "write@fpos", "append", "write<-map", "writev-mixed", "pread", "readv",
    "load", "store", "truncate", "fsync", "evict", "madvise", "msync", "private", "mapcycle",
    "verify"};
static const int op_weight[OP_N] = {10, 6, 4, 3, 10, 5, 6, 3, 6, 8, 4, 3, 5, 3, 2, 2, 2, 1};

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

/* A position and length for a write that stays within R_MAX. */
static void
wrange(struct rthread *t, struct rfile *f, size_t *pos, size_t *len)
{
	size_t n = rlen(t);
	size_t p;
	switch (rn(t, 3)) {
	case 0: p = rn(t, f->size + 1); break;                 /* inside or at EOF */
	case 1: p = f->size + rn(t, 2 * PG); break;            /* a little past EOF */
	default: p = rn(t, R_MAX); break;                      /* anywhere */
	}
	if (p >= R_MAX)
		p = R_MAX - 1;
	if (p + n > R_MAX)
		n = R_MAX - p;
	*pos = p;
	*len = n;
}

static void
do_op(struct rthread *t)
{
	enum rop op = pick_op(t);
	struct rfile *f = &rf[rn(t, R_NFILES)];
	unsigned char *buf = t->buf, *buf2 = t->buf2;
	size_t pos, len;
	ssize_t r;
	t->counts[op]++;
	note(t, "%s %s/%s", op_names[op], f->t->mnt, f->name);
	switch (op) {
	case OP_PWRITE:
		pthread_mutex_lock(&f->mu);
		wrange(t, f, &pos, &len);
		rfill(t, buf, len);
		note(t, "pwrite %s/%s pos %zu len %zu", f->t->mnt, f->name, pos, len);
		r = pw_pwrite(f->fd, buf, len, (off_t)pos);
		if (r != (ssize_t)len)
			rfail(t, "pwrite returned %zd, want %zu (errno %d)", r, len, errno);
		oracle_write(f, pos, buf, len);
		pthread_mutex_unlock(&f->mu);
		break;
	case OP_PWRITEV:
	case OP_WRITEV_MIXED: {
		/* segments from the heap, zero-length ones among them; mixed:
		 * some segments from mappings of this and another file */
		struct rfile *g = op == OP_WRITEV_MIXED ? &rf[rn(t, R_NFILES)] : f;
		lock2(f, g);
		wrange(t, f, &pos, &len);
		int cnt = 1 + (int)rn(t, 5);
		struct iovec iov[6];
		size_t total = 0, ho = 0;
		for (int i = 0; i < cnt; i++) {
			size_t rest = len - total;
			size_t sl = (rn(t, 4) == 0 || rest == 0) ? 0 : 1 + rn(t, rest);
			iov[i].iov_len = sl;
			bool from_map = op == OP_WRITEV_MIXED && rn(t, 2) && g->size >= sl;
			size_t so = from_map ? rn(t, g->size - sl + 1) : 0;
			/* a source in f must not overlap the destination range */
			if (from_map && g == f && so < pos + len && pos < so + sl)
				from_map = false;
			if (from_map) {
				iov[i].iov_base = g->map + so;
				memcpy(buf2 + total, g->oracle + so, sl);
			} else {
				rfill(t, buf + ho, sl);
				iov[i].iov_base = buf + ho;
				memcpy(buf2 + total, buf + ho, sl);
				ho += sl;
			}
			total += sl;
		}
		note(t, "%s %s/%s pos %zu len %zu segs %d (src %s/%s)", op_names[op], f->t->mnt,
		     f->name, pos, total, cnt, g->t->mnt, g->name);
		if (rn(t, 3) == 0) {
			for (int i = 0; i < cnt; i++)
				if (iov[i].iov_len && (unsigned char *)iov[i].iov_base >= g->map &&
				    (unsigned char *)iov[i].iov_base < g->map + R_MAX) {
					hk_addr = iov[i].iov_base;
					hk_len = iov[i].iov_len;
					break;
				}
		}
		r = pw_pwritev(f->fd, iov, cnt, (off_t)pos);
		hk_addr = NULL;
		if (r != (ssize_t)total)
			rfail(t, "pwritev returned %zd, want %zu (errno %d)", r, total, errno);
		if (total)
			oracle_write(f, pos, buf2, total);
		unlock2(f, g);
		break;
	}
	case OP_WRITE_FPOS:
	case OP_APPEND: {
		bool app = op == OP_APPEND;
		pthread_mutex_lock(&f->mu);
		wrange(t, f, &pos, &len);
		rfill(t, buf, len);
		if (app)
			pos = f->size;
		if (pos + len > R_MAX) {
			pthread_mutex_unlock(&f->mu);
			break;
		}
		int fd = app ? t->afds[f->idx] : t->fds[f->idx];
		note(t, "%s %s/%s pos %zu len %zu", op_names[op], f->t->mnt, f->name, pos, len);
		if (!app && pw_lseek(fd, (off_t)pos, SEEK_SET) != (off_t)pos)
			rfail(t, "lseek failed");
		r = pw_write(fd, buf, len);
		if (r != (ssize_t)len)
			rfail(t, "write returned %zd, want %zu (errno %d)", r, len, errno);
		off_t np = pw_lseek(fd, 0, SEEK_CUR);
		if (np != (off_t)(pos + len))
			rfail(t, "position after write %lld, want %zu", (long long)np, pos + len);
		oracle_write(f, pos, buf, len);
		pthread_mutex_unlock(&f->mu);
		break;
	}
	case OP_WRITE_FROM_MAP: {
		/* the source is a mapping of this file or another one */
		struct rfile *g = rn(t, 2) ? f : &rf[rn(t, R_NFILES)];
		lock2(f, g);
		wrange(t, f, &pos, &len);
		if (len > g->size)
			len = g->size;
		size_t so = rn(t, g->size - len + 1);
		if (g == f && so < pos + len && pos < so + len) {
			unlock2(f, g);
			break; /* overlapping ranges: the result is not defined */
		}
		if (len == 0) {
			unlock2(f, g);
			break;
		}
		memcpy(buf, g->oracle + so, len);
		note(t, "write<-map %s/%s pos %zu len %zu from %s/%s @%zu", f->t->mnt, f->name, pos,
		     len, g->t->mnt, g->name, so);
		if (rn(t, 3) == 0) {
			hk_addr = g->map + so;
			hk_len = len;
		}
		r = pw_pwrite(f->fd, g->map + so, len, (off_t)pos);
		hk_addr = NULL;
		if (r != (ssize_t)len)
			rfail(t, "pwrite from mapping returned %zd, want %zu (errno %d)", r, len, errno);
		oracle_write(f, pos, buf, len);
		unlock2(f, g);
		break;
	}
	case OP_PREAD:
	case OP_READV: {
		pthread_mutex_lock(&f->mu);
		pos = rn(t, f->size + PG);
		len = rlen(t);
		size_t want = pos >= f->size ? 0 : (pos + len > f->size ? f->size - pos : len);
		note(t, "%s %s/%s pos %zu len %zu", op_names[op], f->t->mnt, f->name, pos, len);
		if (op == OP_PREAD) {
			r = pw_pread(f->fd, buf, len, (off_t)pos);
		} else {
			size_t a = rn(t, len + 1);
			struct iovec iov[3] = {{buf, a}, {buf + a, 0}, {buf + a, len - a}};
			r = pw_preadv(f->fd, iov, 3, (off_t)pos);
		}
		if (r != (ssize_t)want)
			rfail(t, "read returned %zd, want %zu (errno %d)", r, want, errno);
		rcheck(t, f, buf, pos, want, "pread");
		pthread_mutex_unlock(&f->mu);
		break;
	}
	case OP_LOAD:
		pthread_mutex_lock(&f->mu);
		if (f->size) {
			pos = rn(t, f->size);
			len = 1 + rn(t, f->size - pos);
			if (len > 3 * PG)
				len = 3 * PG;
			note(t, "load %s/%s pos %zu len %zu", f->t->mnt, f->name, pos, len);
			memcpy(buf, f->map + pos, len);
			rcheck(t, f, buf, pos, len, "mapped load");
		}
		pthread_mutex_unlock(&f->mu);
		break;
	case OP_STORE:
		pthread_mutex_lock(&f->mu);
		if (f->size) {
			pos = rn(t, f->size);
			len = 1 + rn(t, f->size - pos);
			if (len > 2 * PG)
				len = 2 * PG;
			rfill(t, buf, len);
			note(t, "store %s/%s pos %zu len %zu", f->t->mnt, f->name, pos, len);
			memcpy(f->map + pos, buf, len);
			memcpy(f->oracle + pos, buf, len);
		}
		pthread_mutex_unlock(&f->mu);
		break;
	case OP_TRUNCATE: {
		pthread_mutex_lock(&f->mu);
		size_t ns;
		switch (rn(t, 3)) {
		case 0: ns = rn(t, R_MAX + 1); break;
		case 1: ns = f->size > 100 ? f->size - rn(t, 100) : 0; break;
		default: ns = f->size + rn(t, PG); break;
		}
		if (ns > R_MAX)
			ns = R_MAX;
		note(t, "truncate %s/%s %zu -> %zu", f->t->mnt, f->name, f->size, ns);
		if (pw_ftruncate(f->fd, (off_t)ns) != 0)
			rfail(t, "ftruncate failed, errno %d", errno);
		if (ns < f->size)
			memset(f->oracle + ns, 0, f->size - ns);
		f->size = ns;
		pthread_mutex_unlock(&f->mu);
		break;
	}
	case OP_FSYNC:
		note(t, "fsync %s/%s", f->t->mnt, f->name);
		if ((rn(t, 2) ? pw_fsync(f->fd) : pw_fdatasync(f->fd)) != 0)
			rfail(t, "fsync failed, errno %d", errno);
		break;
	case OP_EVICT: {
		int how = (int)rn(t, 4);
		size_t off = rn(t, R_MAXPAGES) * PG;
		note(t, "evict(%d) %s/%s page %zu", how, f->t->mnt, f->name, off / PG);
		if (how == 0)
			(void)pw__test_evict_all(f->fd);
		else if (how == 1) {
			int e = pw_posix_fadvise(f->fd, (off_t)off, (off_t)(PG * (1 + rn(t, 4))),
			                         POSIX_FADV_DONTNEED);
			if (e != 0)
				rfail(t, "posix_fadvise returned %d", e);
		} else
			(void)pw__test_evict(f->fd, (off_t)off);
		break;
	}
	case OP_MADV: {
		size_t p0 = rn(t, R_MAXPAGES), np = 1 + rn(t, R_MAXPAGES - p0);
		note(t, "madvise %s/%s pages %zu+%zu", f->t->mnt, f->name, p0, np);
		if (pw_madvise(f->map + p0 * PG, np * PG, MADV_DONTNEED) != 0)
			rfail(t, "madvise failed, errno %d", errno);
		break;
	}
	case OP_MSYNC: {
		size_t p0 = rn(t, R_MAXPAGES), np = 1 + rn(t, R_MAXPAGES - p0);
		note(t, "msync %s/%s pages %zu+%zu", f->t->mnt, f->name, p0, np);
		if (pw_msync(f->map + p0 * PG, np * PG, rn(t, 2) ? MS_SYNC : MS_ASYNC) != 0)
			rfail(t, "msync failed, errno %d", errno);
		break;
	}
	case OP_PRIVATE:
	case OP_MAPCYCLE:
		pthread_mutex_lock(&f->mu);
		if (f->size) {
			size_t p0 = rn(t, (f->size + PG - 1) / PG);
			size_t maxp = (f->size + PG - 1) / PG - p0;
			size_t np = 1 + rn(t, maxp);
			size_t off = p0 * PG, mlen = np * PG;
			size_t vis = f->size - off < mlen ? f->size - off : mlen;
			bool priv = op == OP_PRIVATE;
			note(t, "%s %s/%s pages %zu+%zu", op_names[op], f->t->mnt, f->name, p0, np);
			unsigned char *m = pw_mmap(NULL, mlen, PROT_READ | PROT_WRITE,
			                           priv ? MAP_PRIVATE : MAP_SHARED, f->fd, (off_t)off);
			if (m == MAP_FAILED)
				rfail(t, "pw_mmap failed, errno %d", errno);
			rcheck(t, f, m, off, vis, priv ? "private mapping load" : "new mapping load");
			size_t so = rn(t, vis), sl = 1 + rn(t, vis - so);
			if (sl > 3 * PG)
				sl = 3 * PG; /* the size of buf and buf2 */
			rfill(t, buf, sl);
			memcpy(m + so, buf, sl);
			if (!priv) {
				memcpy(f->oracle + off + so, buf, sl);
			} else {
				/* not in the file, still in the private mapping */
				r = pw_pread(f->fd, buf2, sl, (off_t)(off + so));
				if (r != (ssize_t)sl)
					rfail(t, "pread after private store returned %zd", r);
				rcheck(t, f, buf2, off + so, sl, "pread after private store");
				rcheck(t, f, f->map + off + so, off + so, sl, "shared load after private store");
				if (memcmp(m + so, buf, sl) != 0)
					rfail(t, "private mapping lost its own store");
			}
			if (pw_munmap(m, mlen) != 0)
				rfail(t, "pw_munmap failed, errno %d", errno);
		}
		pthread_mutex_unlock(&f->mu);
		break;
	case OP_VERIFY:
		pthread_mutex_lock(&f->mu);
		rverify(t, f);
		pthread_mutex_unlock(&f->mu);
		break;
	case OP_N:
		break;
	}
}

static long r_ops_per_thread;
static double r_deadline;

static void *
r_thread(void *p)
{
	struct rthread *t = p;
	t->buf = xmalloc(4 * PG);
	t->buf2 = xmalloc(4 * PG);
	for (int i = 0; i < R_NFILES; i++) {
		char path[128];
		tfs_path(rf[i].t, rf[i].name, path, sizeof(path));
		t->fds[i] = pw_open(path, O_RDWR);
		t->afds[i] = pw_open(path, O_RDWR | O_APPEND);
		ASSERT_GE(t->fds[i], 0);
		ASSERT_GE(t->afds[i], 0);
	}
	for (t->nops = 0; t->nops < r_ops_per_thread && now_s() < r_deadline; t->nops++) {
		do_op(t);
		if (t->nops % 500 == 499) {
			struct rfile *f = &rf[rn(t, R_NFILES)];
			pthread_mutex_lock(&f->mu);
			rverify(t, f);
			pthread_mutex_unlock(&f->mu);
		}
	}
	for (int i = 0; i < R_NFILES; i++) {
		ASSERT_OK(pw_close(t->fds[i]));
		ASSERT_OK(pw_close(t->afds[i]));
	}
	free(t->buf);
	free(t->buf2);
	return NULL;
}

TEST_THREADED(random_exerciser)
{
	const char *s = getenv("PW_SEED");
	r_seed = s ? strtoull(s, NULL, 0) : ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid();
	const char *o = getenv("PW_OPS");
	r_ops_per_thread = o ? atol(o) : 12000;
	TLOG("seed %" PRIu64 " (replay: PW_SEED=%" PRIu64 "), %d threads x %ld ops, %d files", r_seed,
	     r_seed, R_NT, r_ops_per_thread, R_NFILES);
	pw__hooks.after_prefault = r_after_prefault;

	static struct tfs ts[TEST_FS_KINDS];
	for (int k = 0; k < TEST_FS_KINDS; k++)
		tfs_mount(&ts[k], k);
	for (int i = 0; i < R_NFILES; i++) {
		struct rfile *f = &rf[i];
		f->t = &ts[i / R_FILES_PER_KIND];
		f->idx = i;
		XSNPRINTF(f->name, sizeof(f->name), "r%d", i);
		f->fd = tfs_create(f->t, f->name);
		f->map = pw_mmap(NULL, R_MAX, PROT_READ | PROT_WRITE, MAP_SHARED, f->fd, 0);
		ASSERT(f->map != MAP_FAILED);
		f->oracle = calloc(1, R_MAX);
		ASSERT(f->oracle);
		pthread_mutex_init(&f->mu, NULL);
	}
	/* a time cap keeps the slow sanitizer builds within bounds */
	r_deadline = now_s() + (getenv("PW_SECONDS") ? atof(getenv("PW_SECONDS")) : 7.0);
	static struct rthread th[R_NT];
	pthread_t pt[R_NT];
	double t0 = now_s();
	for (int i = 0; i < R_NT; i++) {
		th[i].id = i;
		th[i].rng = r_seed * 1000003u + (uint64_t)i;
		ASSERT_OK(pthread_create(&pt[i], NULL, r_thread, &th[i]));
	}
	for (int i = 0; i < R_NT; i++)
		ASSERT_OK(pthread_join(pt[i], NULL));
	long total = 0, counts[OP_N] = {0};
	for (int i = 0; i < R_NT; i++) {
		total += th[i].nops;
		for (int j = 0; j < OP_N; j++)
			counts[j] += th[i].counts[j];
	}
	TLOG("%ld operations in %.2f s", total, now_s() - t0);
	char line[600];
	size_t lo = 0;
	for (int j = 0; j < OP_N; j++)
		lo += (size_t)snprintf(line + lo, sizeof(line) - lo, "%s %ld%s", op_names[j], counts[j],
		                       j + 1 < OP_N ? ", " : "");
	TLOG("%s", line);
	ASSERT_GE(total, 1000);

	/* the end: every file against its oracle, cached, on the host after
	 * fsync, and again from a cold cache */
	unsigned char *h = xmalloc(R_MAX + 1);
	for (int i = 0; i < R_NFILES; i++) {
		struct rfile *f = &rf[i];
		rverify(NULL, f);
		ASSERT_OK(pw_fsync(f->fd));
		if (f->t->kind) {
			ssize_t hs = host_read(f->t, f->name, h, R_MAX + 1);
			if (hs != (ssize_t)f->size)
				rfail(NULL, "host file %s/%s has size %zd, oracle %zu", f->t->host, f->name, hs,
				      f->size);
			rcheck(NULL, f, h, 0, f->size, "host file");
		}
		evict_all(f->t, f->fd);
		rverify(NULL, f);
		ASSERT_OK(pw_munmap(f->map, R_MAX));
		ASSERT_OK(pw_close(f->fd));
		free(f->oracle);
	}
	struct pw_stats st;
	pw_get_stats(&st);
	TLOG("stats: faults %" PRIu64 ", short copies %" PRIu64 ", write retries %" PRIu64
	     ", hits %" PRIu64 ", misses %" PRIu64,
	     st.faults, st.short_copies, st.write_retries, st.hits, st.misses);
	free(h);
}

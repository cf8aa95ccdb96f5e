/*
 * pwt.h - helpers shared by the write, mmap, deadlock and random tests:
 * mounting each filesystem kind, patterns, whole-file checks, host-side
 * reads, and probing an address for SIGBUS with sigsetjmp.
 *
 * Everything is static inline so that a file using only part of it still
 * compiles with -Werror.
 */
#ifndef PW_TESTS_PWT_H
#define PW_TESTS_PWT_H

#include "test.h"

#include <fcntl.h>
#include <pagewright/pagewright.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define PG ((size_t)PAGE_SIZE)

/* snprintf that must not truncate (and whose result is used, which also
 * keeps -Wformat-truncation quiet) */
#define XSNPRINTF(buf, n, ...)                                                 \
	do {                                                                       \
		int xs_ = snprintf((buf), (n), __VA_ARGS__);                           \
		if (xs_ < 0 || (size_t)xs_ >= (size_t)(n))                             \
			abort();                                                           \
	} while (0)

/* Every filesystem kind of the scenario tests that PW_KINDS selects. */
#define FOR_EACH_KIND(k)                                                       \
	for (int k = 0; k < TEST_FS_KINDS; k++)                                    \
		if (!test_kind_selected(k)) {                                          \
		} else

/* A mounted filesystem of one kind. */
struct tfs {
	int kind;
	char mnt[64];
	char host[512]; /* the host directory behind hostfs, "" for ramfs */
};

static inline void
tfs_mount(struct tfs *t, int kind)
{
	const char *m = test_mount_kind(kind);
	t->kind = kind;
	XSNPRINTF(t->mnt, sizeof(t->mnt), "%s", m);
	t->host[0] = 0;
	if (kind != 0) {
		/* runner.c: mount point "/mntK" is backed by <tmpdir>/host<K+1> */
		int k = atoi(m + 4);
		XSNPRINTF(t->host, sizeof(t->host), "%s/host%d%s", test_tmpdir(), k + 1,
		          test_kind_is_ext2(kind) ? ".img" : "");
	}
}

static inline const char *
tfs_path(const struct tfs *t, const char *name, char *buf, size_t n)
{
	XSNPRINTF(buf, n, "%s/%s", t->mnt, name);
	return buf;
}

static inline int
tfs_open(const struct tfs *t, const char *name, int flags)
{
	char p[128];
	int fd = pw_open(tfs_path(t, name, p, sizeof(p)), flags, 0644);
	if (fd < 0) {
		fprintf(stderr, "pw_open(%s): %s\n", p, strerror(errno));
		abort();
	}
	return fd;
}

static inline int
tfs_create(const struct tfs *t, const char *name)
{
	return tfs_open(t, name, O_RDWR | O_CREAT | O_TRUNC);
}

/* Pattern byte for (seed, position): never zero, so zero-filled garbage
 * is told apart from data. */
static inline unsigned char
pat_byte(unsigned seed, uint64_t pos)
{
	uint64_t x = (pos + 1) * 0x9E3779B97F4A7C15ull ^ ((uint64_t)seed * 0xBF58476D1CE4E5B9ull);
	x ^= x >> 29;
	return (unsigned char)(1 + (x % 255));
}

static inline void
pat_fill(void *buf, size_t n, unsigned seed, uint64_t pos)
{
	unsigned char *b = buf;
	for (size_t i = 0; i < n; i++)
		b[i] = pat_byte(seed, pos + i);
}

static inline void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		abort();
	return p;
}

static inline off_t
fsize(int fd)
{
	struct stat st;
	ASSERT_OK(pw_fstat(fd, &st));
	return st.st_size;
}

/* pread the whole range, looping over short reads. */
static inline void
read_exact(int fd, void *buf, size_t n, off_t off)
{
	size_t done = 0;
	while (done < n) {
		ssize_t r = pw_pread(fd, (char *)buf + done, n - done, off + (off_t)done);
		ASSERT_GT(r, 0);
		done += (size_t)r;
	}
}

static inline void
write_exact(int fd, const void *buf, size_t n, off_t off)
{
	ASSERT_EQ(pw_pwrite(fd, buf, n, off), (int64_t)n);
}

/* A new file `name` of `size` bytes of pattern seed (pat_fill), written
 * 1 MiB at a time; its descriptor. */
static inline int
tfs_pattern_file(const struct tfs *t, const char *name, size_t size, unsigned seed)
{
	int fd = tfs_create(t, name);
	const size_t CH = 1 << 20;
	unsigned char *buf = xmalloc(CH);
	for (size_t off = 0; off < size; off += CH) {
		size_t n = PW_MIN(CH, size - off);
		pat_fill(buf, n, seed, off);
		write_exact(fd, buf, n, (off_t)off);
	}
	free(buf);
	return fd;
}

/* The file's size is `size` and its bytes are exactly `expect`. */
#define CHECK_FILE(fd, expect, size)                                           \
	do {                                                                       \
		size_t cf_n_ = (size);                                                 \
		ASSERT_EQ(fsize(fd), (int64_t)cf_n_);                                  \
		unsigned char *cf_b_ = xmalloc(cf_n_ + 16);                            \
		read_exact((fd), cf_b_, cf_n_, 0);                                     \
		ASSERT_MEM_EQ(cf_b_, (expect), cf_n_);                                 \
		ASSERT_EQ(pw_pread((fd), cf_b_, 16, (off_t)cf_n_), 0);                 \
		free(cf_b_);                                                           \
	} while (0)

/* Write back and drop the page at `off`.  On ramfs that is refused with
 * -EBUSY; the callers then treat the scenario as "not cached yet". */
static inline bool
evict_page(const struct tfs *t, int fd, off_t off)
{
	int r = pw__test_evict(fd, off);
	if (t->kind == 0) {
		ASSERT_EQ(r, -EBUSY);
		return false;
	}
	ASSERT_OK(r);
	return true;
}

static inline void
evict_all(const struct tfs *t, int fd)
{
	int r = pw__test_evict_all(fd);
	if (t->kind != 0)
		ASSERT_OK(r);
}

/* Read a file of an ext2 image with debugfs (after fsync: the image is
 * up to date while mounted).  Returns its size. */
static inline ssize_t
image_read(const struct tfs *t, const char *name, void *buf, size_t n)
{
	char cmd[900];
	XSNPRINTF(cmd, sizeof(cmd), "debugfs -R 'stat /%s' '%s' 2>/dev/null | "
	          "sed -n 's/.*Size: \\([0-9]*\\).*/\\1/p' | head -1", name, t->host);
	FILE *p = popen(cmd, "r");
	ASSERT(p != NULL);
	long long size = -1;
	ASSERT_EQ(fscanf(p, "%lld", &size), 1);
	pclose(p);
	XSNPRINTF(cmd, sizeof(cmd), "debugfs -R 'cat /%s' '%s' 2>/dev/null", name, t->host);
	p = popen(cmd, "r");
	ASSERT(p != NULL);
	size_t want = (size_t)size < n ? (size_t)size : n, done = 0, r;
	while (done < want && (r = fread((char *)buf + done, 1, want - done, p)) > 0)
		done += r;
	pclose(p);
	ASSERT_EQ(done, want);
	return (ssize_t)size;
}

/* Read a file of a hostfs mount from the host side. Returns its size. */
static inline ssize_t
host_read(const struct tfs *t, const char *name, void *buf, size_t n)
{
	if (test_kind_is_ext2(t->kind))
		return image_read(t, name, buf, n);
	char p[700];
	XSNPRINTF(p, sizeof(p), "%s/%s", t->host, name);
	int hfd = open(p, O_RDONLY);
	ASSERT_GE(hfd, 0);
	struct stat st;
	ASSERT_OK(fstat(hfd, &st));
	size_t want = (size_t)st.st_size < n ? (size_t)st.st_size : n, done = 0;
	while (done < want) {
		ssize_t r = pread(hfd, (char *)buf + done, want - done, (off_t)done);
		ASSERT_GT(r, 0);
		done += (size_t)r;
	}
	close(hfd);
	return st.st_size;
}

/* An anonymous 2-page buffer whose second page is PROT_NONE: the first
 * page is readable, everything from base + PG faults. */
static inline unsigned char *
partly_bad_buffer(unsigned seed)
{
	unsigned char *b = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE,
	                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT(b != MAP_FAILED);
	pat_fill(b, PG, seed, 0);
	ASSERT_OK(mprotect(b + PG, PG, PROT_NONE));
	return b;
}

static inline double
now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- probing for SIGBUS (and SIGSEGV) with sigsetjmp.  The handler is
 * only installed for SIGBUS: pagewright owns SIGSEGV and passes faults on
 * addresses that are not its own to the handler installed before it. */
static __thread sigjmp_buf *volatile probe_jb; /* volatile: stores must not be elided */
static __thread volatile int probe_sig;

static inline void
probe_handler(int sig)
{
	if (probe_jb) {
		probe_sig = sig;
		siglongjmp(*probe_jb, sig);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

static inline void
probe_install(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = probe_handler;
	sa.sa_flags = SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	ASSERT_OK(sigaction(SIGBUS, &sa, NULL));
}

/* Load one byte; returns 0 and the byte, or the signal it raised. */
static inline int
probe_load(const volatile unsigned char *p, unsigned char *out)
{
	sigjmp_buf jb;
	int sig = sigsetjmp(jb, 1);
	if (sig) {
		probe_jb = NULL;
		return sig;
	}
	probe_jb = &jb;
	/* Atomic: threads probe the same mapped bytes on purpose. */
	unsigned char v = __atomic_load_n(p, __ATOMIC_RELAXED);
	probe_jb = NULL;
	if (out)
		*out = v;
	return 0;
}

static inline int
probe_store(volatile unsigned char *p, unsigned char v)
{
	sigjmp_buf jb;
	int sig = sigsetjmp(jb, 1);
	if (sig) {
		probe_jb = NULL;
		return sig;
	}
	probe_jb = &jb;
	__atomic_store_n(p, v, __ATOMIC_RELAXED);
	probe_jb = NULL;
	return 0;
}

/* Run fn(arg) on n threads and join them. */
static inline void
run_threads(int n, void *(*fn)(void *), void *args, size_t argsize)
{
	pthread_t th[16];
	ASSERT_LE(n, 16);
	for (int i = 0; i < n; i++)
		ASSERT_OK(pthread_create(&th[i], NULL, fn, (char *)args + (size_t)i * argsize));
	for (int i = 0; i < n; i++)
		ASSERT_OK(pthread_join(th[i], NULL));
}

#endif

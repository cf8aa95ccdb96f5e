/*
 * fuse_check.c - POSIX behaviour through a mounted pagewright filesystem,
 * with ordinary system calls from a separate process.  tests/fuse/run.sh
 * mounts with `pagewright mount` and runs it.
 *
 *   fuse-check posix DIR        files, directories, readdir offsets,
 *                               shared mappings, unlinked open files
 *   fuse-check concurrent DIR   several processes: writers and readers of
 *                               one file, private files, renames racing
 *                               with lookups
 *   fuse-check writer DIR       write and fsync files until killed (for
 *                               the kill -9 test); prints each fsync'd one
 *   fuse-check verify DIR LIST  files named in LIST (from writer) hold
 *                               their pattern
 *   fuse-check hold-dirty DIR   leave written and mapped data in the
 *                               kernel's cache, print "ready", wait
 *   fuse-check held-intact DIR  ... and check it after a new mount
 *   fuse-check fill DIR         a few files to check after unmount
 *   fuse-check refill DIR       ... and check them after a new mount
 *
 * Prints "ok - NAME" or "not ok - NAME: why" per check and, last,
 * "N passed, N failed".
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/xattr.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

static int npass, nfail;
static const char *dir;
static bool cur_failed;

static void
failf(const char *test, const char *fmt, ...)
{
	char why[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	printf("not ok - %s: %s\n", test, why);
	fflush(stdout);
	cur_failed = true;
}

#define CHECK(cond)                                                                  \
	do {                                                                         \
		if (!(cond)) {                                                       \
			failf(test, "line %d: %s (errno %s)", __LINE__, #cond,        \
			      strerror(errno));                                      \
			return;                                                      \
		}                                                                    \
	} while (0)

static void
run_test(const char *name, void (*fn)(const char *test))
{
	cur_failed = false;
	fn(name);
	if (cur_failed) {
		nfail++;
	} else {
		npass++;
		printf("ok - %s\n", name);
	}
	fflush(stdout);
}

static char *
P(const char *fmt, ...)
{
	static char bufs[8][1024];
	static int k;
	char *b = bufs[k++ % 8];
	int n = snprintf(b, sizeof(bufs[0]), "%s/", dir);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(b + n, sizeof(bufs[0]) - (size_t)n, fmt, ap);
	va_end(ap);
	return b;
}

static unsigned char
pattern(uint64_t seed, uint64_t off)
{
	uint64_t x = (seed + 1) * 0x9e3779b97f4a7c15ULL + off / 8;
	x ^= x >> 31;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 29;
	return (unsigned char)(x >> (8 * (off % 8)));
}

static void
fill(unsigned char *buf, size_t len, uint64_t seed, uint64_t off)
{
	for (size_t k = 0; k < len; k++)
		buf[k] = pattern(seed, off + k);
}

static bool
matches(const unsigned char *buf, size_t len, uint64_t seed, uint64_t off)
{
	for (size_t k = 0; k < len; k++)
		if (buf[k] != pattern(seed, off + k))
			return false;
	return true;
}

static bool
write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
	if (fd < 0)
		return false;
	bool ok = write(fd, data, len) == (ssize_t)len;
	return close(fd) == 0 && ok;
}

static ssize_t
read_file(const char *path, void *buf, size_t cap)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	size_t got = 0;
	ssize_t n;
	while (got < cap && (n = read(fd, (char *)buf + got, cap - got)) > 0)
		got += (size_t)n;
	close(fd);
	return (ssize_t)got;
}

/* ---------------------------------------------------------------- posix */

static void
t_create_write_read(const char *test)
{
	char buf[64];
	CHECK(write_file(P("hello"), "hello, world\n", 13));
	CHECK(read_file(P("hello"), buf, sizeof(buf)) == 13);
	CHECK(memcmp(buf, "hello, world\n", 13) == 0);
	struct stat st;
	CHECK(stat(P("hello"), &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 13);
	CHECK(open(P("hello"), O_CREAT | O_EXCL | O_WRONLY, 0644) < 0 && errno == EEXIST);
	CHECK(open(P("missing"), O_RDONLY) < 0 && errno == ENOENT);
}

static void
t_large_file(const char *test)
{
	size_t len = 3 * 1024 * 1024 + 123;
	unsigned char *a = malloc(len), *b = malloc(len);
	CHECK(a && b);
	fill(a, len, 7, 0);
	int fd = open(P("large"), O_CREAT | O_RDWR | O_TRUNC, 0644);
	CHECK(fd >= 0);
	CHECK(write(fd, a, len) == (ssize_t)len);
	CHECK(fsync(fd) == 0);
	CHECK(pread(fd, b, len, 0) == (ssize_t)len && memcmp(a, b, len) == 0);
	/* Unaligned overwrite in the middle, then read around it. */
	fill(a + 5000, 10000, 8, 5000);
	CHECK(pwrite(fd, a + 5000, 10000, 5000) == 10000);
	CHECK(pread(fd, b, 20000, 0) == 20000 && memcmp(a, b, 20000) == 0);
	CHECK(close(fd) == 0);
	free(a);
	free(b);
}

/* The kernel drops its cached pages of a file (POSIX_FADV_DONTNEED; in
 * cache=writeback and cache=kernel it keeps them otherwise): reads ask
 * the server again, which answers from pagewright's cache where it has
 * the pages (written but not yet on the image, after a close) and from
 * the image elsewhere (after an fsync), and never mixes them up. */
static void
t_reread_dropped(const char *test)
{
	size_t len = 2 * 1024 * 1024 + 4000;
	unsigned char *a = malloc(len), *b = malloc(len);
	CHECK(a && b);
	fill(a, len, 21, 0);
	int fd = open(P("dropped"), O_CREAT | O_RDWR | O_TRUNC, 0644);
	CHECK(fd >= 0 && write(fd, a, len) == (ssize_t)len && fsync(fd) == 0);
	fill(a + 100000, 300000, 22, 100000);
	CHECK(pwrite(fd, a + 100000, 300000, 100000) == 300000 && close(fd) == 0);
	for (int round = 0; round < 2; round++) {
		fd = open(P("dropped"), O_RDONLY);
		CHECK(fd >= 0);
		CHECK(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0);
		memset(b, 0, len);
		CHECK(pread(fd, b, len, 0) == (ssize_t)len && memcmp(a, b, len) == 0);
		unsigned char *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
		CHECK(m != MAP_FAILED && memcmp(a, m, len) == 0);
		munmap(m, len);
		CHECK(close(fd) == 0);
	}
	CHECK(unlink(P("dropped")) == 0);
	free(a);
	free(b);
}

static void
t_append(const char *test)
{
	CHECK(write_file(P("log"), "one\n", 4));
	int fd = open(P("log"), O_WRONLY | O_APPEND);
	CHECK(fd >= 0);
	CHECK(write(fd, "two\n", 4) == 4);
	CHECK(pwrite(fd, "three\n", 6, 0) == 6); /* appends too, as on Linux */
	CHECK(close(fd) == 0);
	char buf[64];
	ssize_t n = read_file(P("log"), buf, sizeof(buf));
	CHECK(n == 14 && memcmp(buf, "one\ntwo\nthree\n", 14) == 0);
}

static void
t_truncate(const char *test)
{
	unsigned char buf[20000], want[20000];
	fill(want, sizeof(want), 3, 0);
	CHECK(write_file(P("trunc"), want, sizeof(want)));
	CHECK(truncate(P("trunc"), 5000) == 0);
	struct stat st;
	CHECK(stat(P("trunc"), &st) == 0 && st.st_size == 5000);
	int fd = open(P("trunc"), O_RDWR);
	CHECK(fd >= 0);
	CHECK(ftruncate(fd, 12000) == 0);
	CHECK(fstat(fd, &st) == 0 && st.st_size == 12000);
	CHECK(pread(fd, buf, sizeof(buf), 0) == 12000);
	memset(want + 5000, 0, 7000);
	CHECK(memcmp(buf, want, 12000) == 0);
	CHECK(close(fd) == 0);
	fd = open(P("trunc"), O_WRONLY | O_TRUNC);
	CHECK(fd >= 0 && fstat(fd, &st) == 0 && st.st_size == 0);
	CHECK(close(fd) == 0);
}

static void
t_sparse(const char *test)
{
	int fd = open(P("sparse"), O_CREAT | O_RDWR | O_TRUNC, 0644);
	CHECK(fd >= 0);
	CHECK(pwrite(fd, "end", 3, 10 * 1024 * 1024) == 3);
	char buf[8192], zero[8192] = {0};
	CHECK(pread(fd, buf, sizeof(buf), 4096 * 100) == (ssize_t)sizeof(buf));
	CHECK(memcmp(buf, zero, sizeof(buf)) == 0);
	CHECK(pread(fd, buf, 10, 10 * 1024 * 1024) == 3 && memcmp(buf, "end", 3) == 0);
	CHECK(close(fd) == 0);
	CHECK(unlink(P("sparse")) == 0);
}

static void
t_rename(const char *test)
{
	CHECK(mkdir(P("rd"), 0755) == 0);
	CHECK(mkdir(P("rd/sub"), 0755) == 0);
	CHECK(write_file(P("rd/sub/f"), "inner", 5));
	CHECK(write_file(P("ra"), "A", 1));
	CHECK(write_file(P("rb"), "B", 1));
	/* Over an existing file. */
	CHECK(rename(P("ra"), P("rb")) == 0);
	char buf[8];
	CHECK(read_file(P("rb"), buf, 8) == 1 && buf[0] == 'A');
	CHECK(access(P("ra"), F_OK) != 0 && errno == ENOENT);
	/* A directory with contents, then use the contents by the new path. */
	struct stat before, after;
	CHECK(stat(P("rd/sub/f"), &before) == 0);
	CHECK(rename(P("rd"), P("rd2")) == 0);
	CHECK(stat(P("rd2/sub/f"), &after) == 0 && after.st_ino == before.st_ino);
	CHECK(read_file(P("rd2/sub/f"), buf, 8) == 5 && memcmp(buf, "inner", 5) == 0);
	CHECK(write_file(P("rd2/sub/g"), "new", 3));
	CHECK(access(P("rd/sub/f"), F_OK) != 0 && errno == ENOENT);
	/* Move a file between directories, and a directory into itself. */
	CHECK(rename(P("rb"), P("rd2/sub/moved")) == 0);
	CHECK(read_file(P("rd2/sub/moved"), buf, 8) == 1 && buf[0] == 'A');
	CHECK(rename(P("rd2"), P("rd2/sub/x")) < 0 && errno == EINVAL);
	/* A file open across a rename of its directory keeps working. */
	int fd = open(P("rd2/sub/f"), O_RDWR);
	CHECK(fd >= 0);
	CHECK(rename(P("rd2"), P("rd3")) == 0);
	CHECK(pwrite(fd, "X", 1, 0) == 1 && fstat(fd, &after) == 0);
	CHECK(close(fd) == 0);
	CHECK(read_file(P("rd3/sub/f"), buf, 8) == 5 && buf[0] == 'X');
	/* RENAME_NOREPLACE: refused over an existing name, nothing moved;
	 * done to a free one.  RENAME_EXCHANGE: EINVAL, as the kernel's ext2. */
	CHECK(renameat2(AT_FDCWD, P("rd3/sub/f"), AT_FDCWD, P("rd3/sub/g"),
	                RENAME_NOREPLACE) < 0 && errno == EEXIST);
	CHECK(read_file(P("rd3/sub/f"), buf, 8) == 5 && buf[0] == 'X');
	CHECK(read_file(P("rd3/sub/g"), buf, 8) == 3 && memcmp(buf, "new", 3) == 0);
	CHECK(renameat2(AT_FDCWD, P("rd3/sub/f"), AT_FDCWD, P("rd3/sub/h"),
	                RENAME_NOREPLACE) == 0);
	CHECK(access(P("rd3/sub/f"), F_OK) != 0 && errno == ENOENT);
	CHECK(read_file(P("rd3/sub/h"), buf, 8) == 5 && buf[0] == 'X');
	CHECK(renameat2(AT_FDCWD, P("rd3/sub/h"), AT_FDCWD, P("rd3/sub/g"),
	                RENAME_EXCHANGE) < 0 && errno == EINVAL);
}

static void
t_unlink_open(const char *test)
{
	CHECK(write_file(P("gone"), "still here", 10));
	int fd = open(P("gone"), O_RDWR);
	CHECK(fd >= 0);
	CHECK(unlink(P("gone")) == 0);
	CHECK(access(P("gone"), F_OK) != 0 && errno == ENOENT);
	char buf[16];
	CHECK(pread(fd, buf, 16, 0) == 10 && memcmp(buf, "still here", 10) == 0);
	CHECK(pwrite(fd, "!", 1, 10) == 1);
	struct stat st;
	CHECK(fstat(fd, &st) == 0 && st.st_size == 11 && st.st_nlink == 0);
	/* Attributes of the open, unlinked file: the kernel asks by inode
	 * number alone (no file handle for fchmod, fchown, futimens). */
	CHECK(fchmod(fd, 0600) == 0);
	CHECK(fchown(fd, (uid_t)-1, getegid()) == 0);
	CHECK(ftruncate(fd, 4) == 0);
	struct timespec ts[2] = {{1000000, 0}, {2000000, 0}};
	CHECK(futimens(fd, ts) == 0);
	CHECK(fstat(fd, &st) == 0 && (st.st_mode & 07777) == 0600 && st.st_size == 4 &&
	      st.st_mtim.tv_sec == 2000000 && st.st_atim.tv_sec == 1000000);
	CHECK(pwrite(fd, "still here!", 11, 0) == 11);
	/* Opened again through /proc: the kernel asks the server to open the
	 * inode by number. */
	char proc[64];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	int again = open(proc, O_RDWR);
	CHECK(again >= 0);
	CHECK(pread(again, buf, 16, 0) == 11 && memcmp(buf, "still here!", 11) == 0);
	CHECK(pwrite(again, "S", 1, 0) == 1 && close(again) == 0);
	CHECK(pread(fd, buf, 1, 0) == 1 && buf[0] == 'S');
	CHECK(pwrite(fd, "s", 1, 0) == 1);
	/* A new file of the same name is a different file. */
	CHECK(write_file(P("gone"), "new", 3));
	CHECK(stat(P("gone"), &st) == 0 && st.st_size == 3);
	CHECK(fstat(fd, &st) == 0 && st.st_size == 11);
	CHECK(close(fd) == 0);
	CHECK(unlink(P("gone")) == 0);
}

static void
t_mkdir_rmdir(const char *test)
{
	CHECK(mkdir(P("d1"), 0755) == 0);
	CHECK(mkdir(P("d1"), 0755) < 0 && errno == EEXIST);
	CHECK(write_file(P("d1/f"), "x", 1));
	CHECK(rmdir(P("d1")) < 0 && errno == ENOTEMPTY);
	CHECK(unlink(P("d1")) < 0 && (errno == EISDIR || errno == EPERM));
	CHECK(rmdir(P("d1/f")) < 0 && errno == ENOTDIR);
	CHECK(unlink(P("d1/f")) == 0);
	CHECK(rmdir(P("d1")) == 0);
	CHECK(rmdir(P("d1")) < 0 && errno == ENOENT);
	struct stat st;
	CHECK(mkdir(P("d2"), 0700) == 0 && stat(P("d2"), &st) == 0);
	CHECK(S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700);
	CHECK(rmdir(P("d2")) == 0);
}

/* Read names from the stream until NULL; return how many. */
static int
read_names(DIR *d, char names[][64], int max, bool skip_dots)
{
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (skip_dots && (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")))
			continue;
		if (n < max)
			snprintf(names[n], 64, "%.63s", e->d_name);
		n++;
	}
	return n;
}

static void
t_readdir_offsets(const char *test)
{
	enum { N = 150 };
	static char all[N + 8][64], again[N + 8][64];
	CHECK(mkdir(P("many"), 0755) == 0);
	for (int k = 0; k < N; k++)
		CHECK(write_file(P("many/entry-%03d-with-a-longer-name", k), "", 0));
	DIR *d = opendir(P("many"));
	CHECK(d);
	/* Remember the position after every entry, then seek back to each of
	 * a few and check that the rest of the stream is the same. */
	long pos[N + 8];
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL && n < N + 8) {
		snprintf(all[n], 64, "%.63s", e->d_name);
		pos[n++] = telldir(d);
	}
	CHECK(n == N + 2);
	int seen = 0;
	for (int k = 0; k < n; k++)
		seen += strncmp(all[k], "entry-", 6) == 0;
	CHECK(seen == N);
	for (int k = 0; k < n; k += 37) {
		seekdir(d, pos[k]);
		int m = read_names(d, again, N + 8, false);
		CHECK(m == n - k - 1);
		for (int j = 0; j < m; j++)
			CHECK(strcmp(again[j], all[k + 1 + j]) == 0);
	}
	/* rewinddir sees entries made since. */
	CHECK(write_file(P("many/late"), "", 0));
	rewinddir(d);
	CHECK(read_names(d, again, N + 8, true) == N + 1);
	closedir(d);
	for (int k = 0; k < N; k++)
		CHECK(unlink(P("many/entry-%03d-with-a-longer-name", k)) == 0);
	CHECK(unlink(P("many/late")) == 0);
	CHECK(rmdir(P("many")) == 0);
}

static void
t_fsync(const char *test)
{
	int fd = open(P("synced"), O_CREAT | O_WRONLY | O_TRUNC, 0644);
	CHECK(fd >= 0);
	CHECK(write(fd, "durable", 7) == 7);
	CHECK(fsync(fd) == 0);
	CHECK(fdatasync(fd) == 0);
	CHECK(close(fd) == 0);
	int dfd = open(dir, O_RDONLY | O_DIRECTORY);
	CHECK(dfd >= 0);
	CHECK(fsync(dfd) == 0);
	CHECK(close(dfd) == 0);
}

static void
t_mmap_shared(const char *test)
{
	size_t len = 5 * 4096;
	unsigned char *want = malloc(len), buf[4096];
	CHECK(want);
	fill(want, len, 11, 0);
	int fd = open(P("mapped"), O_CREAT | O_RDWR | O_TRUNC, 0644);
	CHECK(fd >= 0);
	CHECK(write(fd, want, len) == (ssize_t)len);
	unsigned char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(m != MAP_FAILED);
	CHECK(memcmp(m, want, len) == 0);
	/* A store is seen by read(2) from another descriptor... */
	m[4096 + 17] = 0xAB;
	want[4096 + 17] = 0xAB;
	int fd2 = open(P("mapped"), O_RDONLY);
	CHECK(fd2 >= 0);
	CHECK(pread(fd2, buf, 4096, 4096) == 4096 && memcmp(buf, want + 4096, 4096) == 0);
	/* ...and a write(2) by the mapping. */
	CHECK(pwrite(fd2 < 0 ? fd : fd, "hello", 5, 3 * 4096 + 1) == 5);
	memcpy(want + 3 * 4096 + 1, "hello", 5);
	CHECK(memcmp(m, want, len) == 0);
	CHECK(msync(m, len, MS_SYNC) == 0);
	CHECK(munmap(m, len) == 0);
	CHECK(close(fd) == 0);
	unsigned char *back = malloc(len);
	CHECK(back && read_file(P("mapped"), back, len) == (ssize_t)len);
	CHECK(memcmp(back, want, len) == 0);
	close(fd2);
	free(back);
	free(want);
}

static void
t_mmap_private(const char *test)
{
	CHECK(write_file(P("priv"), "private!", 8));
	int fd = open(P("priv"), O_RDONLY);
	CHECK(fd >= 0);
	char *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	CHECK(m != MAP_FAILED);
	CHECK(memcmp(m, "private!", 8) == 0);
	m[0] = 'P';
	char buf[8];
	CHECK(pread(fd, buf, 8, 0) == 8 && buf[0] == 'p');
	munmap(m, 4096);
	close(fd);
}

static void
t_links_and_attrs(const char *test)
{
	struct stat st;
	char buf[256];
	CHECK(write_file(P("attrs"), "abc", 3));
	CHECK(stat(P("attrs"), &st) == 0 && st.st_nlink == 1);
	/* symbolic links: followed by stat and open, not by lstat */
	CHECK(symlink("attrs", P("sym")) == 0);
	ssize_t n = readlink(P("sym"), buf, sizeof(buf));
	CHECK(n == 5 && memcmp(buf, "attrs", 5) == 0);
	CHECK(lstat(P("sym"), &st) == 0 && S_ISLNK(st.st_mode) && st.st_size == 5);
	CHECK(stat(P("sym"), &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 3);
	CHECK(read_file(P("sym"), buf, sizeof(buf)) == 3 && memcmp(buf, "abc", 3) == 0);
	CHECK(symlink("nowhere", P("dangling")) == 0);
	CHECK(stat(P("dangling"), &st) < 0 && errno == ENOENT);
	CHECK(unlink(P("dangling")) == 0);
	/* hard links share data and count */
	CHECK(link(P("attrs"), P("hard")) == 0);
	CHECK(stat(P("attrs"), &st) == 0 && st.st_nlink == 2);
	CHECK(write_file(P("hard"), "xyz", 3));
	CHECK(read_file(P("attrs"), buf, sizeof(buf)) == 3 && memcmp(buf, "xyz", 3) == 0);
	CHECK(unlink(P("hard")) == 0);
	CHECK(stat(P("attrs"), &st) == 0 && st.st_nlink == 1);
	/* chmod, chown, times */
	CHECK(chmod(P("attrs"), 0600) == 0);
	CHECK(stat(P("attrs"), &st) == 0 && (st.st_mode & 07777) == 0600);
	if (geteuid() == 0) {
		CHECK(chown(P("attrs"), 1234, 5678) == 0);
		CHECK(stat(P("attrs"), &st) == 0 && st.st_uid == 1234 && st.st_gid == 5678);
	}
	struct timespec ts[2] = {{1000000000, 5}, {1200000000, 7}};
	CHECK(utimensat(AT_FDCWD, P("attrs"), ts, 0) == 0);
	CHECK(stat(P("attrs"), &st) == 0 && st.st_mtim.tv_sec == 1200000000 &&
	      st.st_atim.tv_sec == 1000000000);
	CHECK(utimensat(AT_FDCWD, P("attrs"), NULL, 0) == 0); /* touch */
	CHECK(stat(P("attrs"), &st) == 0 && st.st_mtim.tv_sec > 1200000000);
	struct statvfs sv;
	CHECK(statvfs(P("attrs"), &sv) == 0 && sv.f_bsize > 0 && sv.f_namemax >= 255);
	CHECK(unlink(P("sym")) == 0);
	CHECK(unlink(P("attrs")) == 0);
}

/* Extended attributes through the mount: the full behaviour where the
 * filesystem keeps them (ext2), ENOTSUP from every call elsewhere. */
static bool xattrs_kept;

static void
t_xattrs(const char *test)
{
	char buf[256];
	CHECK(write_file(P("xa"), "x", 1));
	if (!xattrs_kept) {
		CHECK(setxattr(P("xa"), "user.a", "1", 1, 0) < 0 && errno == ENOTSUP);
		CHECK(getxattr(P("xa"), "user.a", buf, sizeof(buf)) < 0 && errno == ENOTSUP);
		CHECK(unlink(P("xa")) == 0);
		return;
	}
	CHECK(setxattr(P("xa"), "user.a", "value a", 7, 0) == 0);
	CHECK(setxattr(P("xa"), "user.b", "", 0, XATTR_CREATE) == 0);
	CHECK(getxattr(P("xa"), "user.a", NULL, 0) == 7);
	CHECK(getxattr(P("xa"), "user.a", buf, sizeof(buf)) == 7 && memcmp(buf, "value a", 7) == 0);
	CHECK(getxattr(P("xa"), "user.a", buf, 3) < 0 && errno == ERANGE);
	CHECK(getxattr(P("xa"), "user.b", buf, sizeof(buf)) == 0);
	ssize_t n = listxattr(P("xa"), buf, sizeof(buf));
	CHECK(n == (ssize_t)sizeof("user.a\0user.b") && memcmp(buf, "user.a\0user.b", (size_t)n) == 0);
	CHECK(listxattr(P("xa"), NULL, 0) == n);
	CHECK(setxattr(P("xa"), "user.a", "x", 1, XATTR_CREATE) < 0 && errno == EEXIST);
	CHECK(setxattr(P("xa"), "user.c", "x", 1, XATTR_REPLACE) < 0 && errno == ENODATA);
	CHECK(removexattr(P("xa"), "user.b") == 0);
	CHECK(getxattr(P("xa"), "user.b", buf, sizeof(buf)) < 0 && errno == ENODATA);
	CHECK(removexattr(P("xa"), "user.b") < 0 && errno == ENODATA);
	static char big[8192];
	CHECK(setxattr(P("xa"), "user.big", big, sizeof(big), 0) < 0 && errno == ENOSPC);
	CHECK(mkdir(P("xd"), 0755) == 0 && setxattr(P("xd"), "user.d", "d", 1, 0) == 0);
	CHECK(getxattr(P("xd"), "user.d", buf, sizeof(buf)) == 1);
	/* The value survives a rename and is gone with the file. */
	CHECK(rename(P("xa"), P("xd/moved")) == 0);
	CHECK(getxattr(P("xd/moved"), "user.a", buf, sizeof(buf)) == 7);
	CHECK(unlink(P("xd/moved")) == 0 && rmdir(P("xd")) == 0);
	/* An open, unlinked file keeps them; the kernel asks by inode number. */
	int fd = open(P("xu"), O_CREAT | O_RDWR, 0644);
	CHECK(fd >= 0 && unlink(P("xu")) == 0);
	CHECK(fsetxattr(fd, "user.u", "gone", 4, 0) == 0);
	CHECK(fgetxattr(fd, "user.u", buf, sizeof(buf)) == 4 && memcmp(buf, "gone", 4) == 0);
	CHECK(flistxattr(fd, buf, sizeof(buf)) == (ssize_t)sizeof("user.u"));
	CHECK(fremovexattr(fd, "user.u") == 0);
	CHECK(fgetxattr(fd, "user.u", buf, sizeof(buf)) < 0 && errno == ENODATA);
	CHECK(close(fd) == 0);
}

static void
posix(void)
{
	run_test("create, write, read, O_EXCL", t_create_write_read);
	run_test("3 MiB file, fsync, unaligned overwrite", t_large_file);
	run_test("O_APPEND", t_append);
	run_test("reads after the kernel dropped its pages", t_reread_dropped);
	run_test("truncate and ftruncate, O_TRUNC", t_truncate);
	run_test("sparse file reads zeros", t_sparse);
	run_test("rename: over a file, directories, open files", t_rename);
	run_test("unlinked open file", t_unlink_open);
	run_test("mkdir, rmdir, errors", t_mkdir_rmdir);
	run_test("readdir of 150 entries, telldir/seekdir, rewinddir", t_readdir_offsets);
	run_test("fsync, fdatasync, fsync of a directory", t_fsync);
	run_test("shared mapping coherent with read/write", t_mmap_shared);
	run_test("private mapping", t_mmap_private);
	run_test("symlinks, hard links, chmod, chown, utimens, statvfs", t_links_and_attrs);
}

/* ----------------------------------------------------------- concurrent */

enum { C_PROCS = 4, C_ROUNDS = 200, C_CHUNK = 8192, C_SLOTS = C_PROCS * 8, C_STATIC = 16 };

/* The shared file: C_SLOTS chunks the writers rewrite (writer k owns
 * slots k, k + C_PROCS, ...; round r writes slot k + C_PROCS * (r % 8)
 * with seed k * 1000 + r), then C_STATIC chunks written once before the
 * start (seed 5000 + n) that every process reads while the others write.
 * A read concurrent with a write of the same bytes may see either, even
 * on a local filesystem, so the rewritten slots are checked at the end. */
static int
c_worker(int id)
{
	int bad = 0;
	int fd = open(P("shared"), O_RDWR);
	unsigned char buf[C_CHUNK], own[C_CHUNK];
	char mine[64];
	snprintf(mine, sizeof(mine), "%s/own-%d", dir, id);
	for (int r = 0; r < C_ROUNDS && fd >= 0; r++) {
		int slot = id + C_PROCS * (r % 8);
		fill(buf, C_CHUNK, (uint64_t)(id * 1000 + r), 0);
		if (pwrite(fd, buf, C_CHUNK, (off_t)slot * C_CHUNK) != C_CHUNK)
			bad++;
		int st = (id + r) % C_STATIC;
		if (pread(fd, buf, C_CHUNK, (off_t)(C_SLOTS + st) * C_CHUNK) != C_CHUNK ||
		    !matches(buf, C_CHUNK, (uint64_t)(5000 + st), 0)) {
			fprintf(stderr, "worker %d: static chunk %d is wrong\n", id, st);
			bad++;
		}
		fill(own, C_CHUNK, (uint64_t)r, 0);
		if (!write_file(mine, own, C_CHUNK) || read_file(mine, buf, C_CHUNK) != C_CHUNK ||
		    memcmp(buf, own, C_CHUNK) != 0)
			bad++;
	}
	if (fd < 0)
		bad++;
	else
		close(fd);
	unlink(mine);
	return bad;
}

static void
t_concurrent_rw(const char *test)
{
	unsigned char buf[C_CHUNK];
	int fd = open(P("shared"), O_CREAT | O_RDWR | O_TRUNC, 0644);
	CHECK(fd >= 0);
	for (int k = 0; k < C_STATIC; k++) {
		fill(buf, C_CHUNK, (uint64_t)(5000 + k), 0);
		CHECK(pwrite(fd, buf, C_CHUNK, (off_t)(C_SLOTS + k) * C_CHUNK) == C_CHUNK);
	}
	pid_t pids[C_PROCS];
	for (int k = 0; k < C_PROCS; k++) {
		pids[k] = fork();
		CHECK(pids[k] >= 0);
		if (pids[k] == 0)
			_exit(c_worker(k) ? 1 : 0);
	}
	int bad = 0;
	for (int k = 0; k < C_PROCS; k++) {
		int st;
		waitpid(pids[k], &st, 0);
		bad += !WIFEXITED(st) || WEXITSTATUS(st) != 0;
	}
	CHECK(bad == 0);
	for (int slot = 0; slot < C_SLOTS; slot++) {
		int id = slot % C_PROCS, j = slot / C_PROCS, last = -1;
		for (int r = 0; r < C_ROUNDS; r++)
			if (r % 8 == j)
				last = r;
		CHECK(pread(fd, buf, C_CHUNK, (off_t)slot * C_CHUNK) == C_CHUNK);
		CHECK(matches(buf, C_CHUNK, (uint64_t)(id * 1000 + last), 0));
	}
	CHECK(close(fd) == 0);
	CHECK(unlink(P("shared")) == 0);
}

/* One process swaps the names of two directories, sw-a and sw-b (through
 * sw-t), while others stat files inside them, by path and through
 * descriptors opened before.  Any stat may see either directory under a
 * name, but an inode number must come with its own file's size: the
 * server must never build a path from names that have since changed and
 * answer for one file with another's attributes.  Most telling with
 * -o timeout=0, where every stat reaches the server. */
static bool
sw_consistent(const struct stat *st, ino_t ia, ino_t ib)
{
	return (st->st_ino == ia && st->st_size == 5) || (st->st_ino == ib && st->st_size == 7);
}

static int
sw_checker(int fa, int fb, ino_t ia, ino_t ib)
{
	int bad = 0;
	for (int r = 0; r < 600 && !bad; r++) {
		struct stat st;
		if (fstat(fa, &st) != 0 || st.st_ino != ia || st.st_size != 5)
			bad++;
		if (fstat(fb, &st) != 0 || st.st_ino != ib || st.st_size != 7)
			bad++;
		if (stat(P("%s/in/f", r % 2 ? "sw-a" : "sw-b"), &st) == 0 &&
		    !sw_consistent(&st, ia, ib))
			bad++;
		if (bad)
			fprintf(stderr, "swap: round %d: ino %lu size %lld\n", r,
			        (unsigned long)st.st_ino, (long long)st.st_size);
	}
	return bad;
}

static void
t_rename_race(const char *test)
{
	struct stat sa, sb;
	CHECK(mkdir(P("sw-a"), 0755) == 0 && mkdir(P("sw-a/in"), 0755) == 0);
	CHECK(mkdir(P("sw-b"), 0755) == 0 && mkdir(P("sw-b/in"), 0755) == 0);
	CHECK(write_file(P("sw-a/in/f"), "aaaaa", 5) && write_file(P("sw-b/in/f"), "bbbbbbb", 7));
	CHECK(stat(P("sw-a/in/f"), &sa) == 0 && stat(P("sw-b/in/f"), &sb) == 0);
	int fa = open(P("sw-a/in/f"), O_RDONLY), fb = open(P("sw-b/in/f"), O_RDONLY);
	CHECK(fa >= 0 && fb >= 0);
	pid_t pids[3];
	for (int k = 0; k < 3; k++) {
		pids[k] = fork();
		CHECK(pids[k] >= 0);
		if (pids[k] == 0 && k > 0)
			_exit(sw_checker(fa, fb, sa.st_ino, sb.st_ino) ? 1 : 0);
		if (pids[k] == 0) {
			int bad = 0;
			for (int r = 0; r < 300; r++)
				bad += rename(P("sw-a"), P("sw-t")) != 0 ||
				       rename(P("sw-b"), P("sw-a")) != 0 ||
				       rename(P("sw-t"), P("sw-b")) != 0;
			_exit(bad ? 1 : 0);
		}
	}
	int bad = 0;
	for (int k = 0; k < 3; k++) {
		int st;
		waitpid(pids[k], &st, 0);
		bad += !WIFEXITED(st) || WEXITSTATUS(st) != 0;
	}
	close(fa);
	close(fb);
	CHECK(bad == 0);
	for (int k = 0; k < 2; k++) {
		const char *d = k ? "sw-b" : "sw-a";
		CHECK(unlink(P("%s/in/f", d)) == 0 && rmdir(P("%s/in", d)) == 0 && rmdir(P("%s", d)) == 0);
	}
}

static void
concurrent(void)
{
	run_test("4 processes writing and reading one file and their own", t_concurrent_rw);
	run_test("directory name swaps racing with stats inside them", t_rename_race);
}

/* --------------------------------------------------------------- writer */

/* Writes file w-N (256 KiB, pattern N), fsyncs it, prints its name, and
 * goes on until killed or until the mount fails. */
static int
writer(void)
{
	size_t len = 256 * 1024;
	unsigned char *buf = malloc(len);
	for (int n = 0;; n++) {
		fill(buf, len, (uint64_t)n, 0);
		int fd = open(P("w-%d", n), O_CREAT | O_WRONLY | O_TRUNC, 0644);
		if (fd < 0)
			return 0;
		for (size_t off = 0; off < len; off += 16384)
			if (pwrite(fd, buf + off, 16384, (off_t)off) != 16384)
				return 0;
		if (fsync(fd) != 0)
			return 0;
		close(fd);
		printf("w-%d\n", n);
		fflush(stdout);
	}
}

/* Leaves data the kernel holds and has not sent: a file written with
 * write(2) (only in the kernel's cache with cache=writeback) and stores
 * through a shared mapping of it, then prints "ready" and waits, the file
 * open and mapped, to be killed after the server. */
static int
hold_dirty(void)
{
	size_t len = 1 << 20;
	unsigned char *buf = malloc(len);
	fill(buf, len, 77, 0);
	int fd = open(P("held"), O_CREAT | O_RDWR | O_TRUNC, 0644);
	if (fd < 0 || write(fd, buf, len) != (ssize_t)len)
		return 1;
	unsigned char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		return 1;
	for (size_t off = 0; off < len; off += 65536)
		memcpy(m + off, "stored", 6);
	printf("ready\n");
	fflush(stdout);
	for (;;)
		pause();
}

static int
held_intact(void)
{
	size_t len = 1 << 20;
	unsigned char *buf = malloc(len + 1), *want = malloc(len);
	fill(want, len, 77, 0);
	for (size_t off = 0; off < len; off += 65536)
		memcpy(want + off, "stored", 6);
	bool ok = read_file(P("held"), buf, len + 1) == (ssize_t)len && memcmp(buf, want, len) == 0;
	printf("%s - the data and the mapped stores the kernel held reached the image\n",
	       ok ? "ok" : "not ok");
	printf("%d passed, %d failed\n", ok, !ok);
	return !ok;
}

static int
verify(const char *list)
{
	FILE *f = fopen(list, "r");
	if (!f)
		return 1;
	size_t len = 256 * 1024;
	unsigned char *buf = malloc(len);
	char name[64];
	int checked = 0, bad = 0;
	while (fscanf(f, "%63s", name) == 1) {
		int n = atoi(name + 2);
		checked++;
		if (read_file(P("%s", name), buf, len) != (ssize_t)len ||
		    !matches(buf, len, (uint64_t)n, 0)) {
			fprintf(stderr, "verify: %s is wrong\n", name);
			bad++;
		}
	}
	fclose(f);
	printf("%s - %d fsync'd files survive the crash\n", bad ? "not ok" : "ok", checked);
	printf("%d passed, %d failed\n", bad ? 0 : 1, bad ? 1 : 0);
	return bad != 0;
}

/* A few files written before an unmount and read after a new mount. */
static void
t_fill(const char *test)
{
	unsigned char buf[100000];
	CHECK(mkdir(P("keep"), 0755) == 0);
	for (int k = 0; k < 5; k++) {
		fill(buf, sizeof(buf), (uint64_t)k + 100, 0);
		CHECK(write_file(P("keep/f%d", k), buf, sizeof(buf) - (size_t)k * 999));
	}
}

static void
t_refill(const char *test)
{
	unsigned char buf[100000];
	for (int k = 0; k < 5; k++) {
		size_t len = sizeof(buf) - (size_t)k * 999;
		CHECK(read_file(P("keep/f%d", k), buf, sizeof(buf)) == (ssize_t)len);
		CHECK(matches(buf, len, (uint64_t)k + 100, 0));
	}
}

int
main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: fuse-check posix|concurrent|writer|verify|fill|refill DIR "
		                "[LIST]\n");
		return 2;
	}
	dir = argv[2];
	signal(SIGPIPE, SIG_IGN);
	if (strcmp(argv[1], "xattr-probe") == 0) {
		/* Does the filesystem under DIR keep user attributes? */
		int fd = open(P("xattr-probe"), O_CREAT | O_WRONLY, 0644);
		int ok = fd >= 0 && fsetxattr(fd, "user.probe", "p", 1, 0) == 0;
		if (fd >= 0)
			close(fd);
		unlink(P("xattr-probe"));
		return ok ? 0 : 1;
	}
	if (strcmp(argv[1], "writer") == 0)
		return writer();
	if (strcmp(argv[1], "hold-dirty") == 0)
		return hold_dirty();
	if (strcmp(argv[1], "held-intact") == 0)
		return held_intact();
	if (strcmp(argv[1], "verify") == 0 && argc == 4)
		return verify(argv[3]);
	if (strcmp(argv[1], "posix") == 0)
		posix();
	else if (strcmp(argv[1], "concurrent") == 0)
		concurrent();
	else if (strcmp(argv[1], "xattr") == 0 && argc == 4) {
		xattrs_kept = strcmp(argv[3], "yes") == 0;
		run_test(xattrs_kept ? "extended attributes" : "extended attributes: ENOTSUP",
		         t_xattrs);
	} else if (strcmp(argv[1], "fill") == 0)
		run_test("files written before unmount", t_fill);
	else if (strcmp(argv[1], "refill") == 0)
		run_test("files read back after a new mount", t_refill);
	else
		return 2;
	printf("%d passed, %d failed\n", npass, nfail);
	return nfail != 0;
}

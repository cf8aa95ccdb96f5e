/*
 * test_hostfs.c - hostfs seen from both sides: files made through
 * pagewright reach the host directory (after fsync or unmount), host files
 * made before the mount are read through the cache, and namespace changes
 * land on the host.  Each test runs in both aops modes (write_begin and
 * legacy_aops).
 */
#include "../pwt.h"

#include <dirent.h>
#include <sys/resource.h>
#include <sys/xattr.h>

/* A hostfs mount of our own, so the host directory can be filled first. */
struct hmnt {
	char mnt[64];
	char host[512];
	bool legacy;
};

static void
hm_prepare(struct hmnt *h, const char *tag, bool legacy)
{
	snprintf(h->mnt, sizeof(h->mnt), "/h_%s%d", tag, legacy);
	snprintf(h->host, sizeof(h->host), "%s/h_%s%d", test_tmpdir(), tag, legacy);
	h->legacy = legacy;
	ASSERT_OK(mkdir(h->host, 0755));
}

static void
hm_mount(struct hmnt *h, const char *extra)
{
	char opts[64];
	snprintf(opts, sizeof(opts), "%s%s%s", h->legacy ? "legacy_aops" : "",
	         h->legacy && extra ? "," : "", extra ? extra : "");
	struct stat st;
	if (pw_stat(h->mnt, &st) != 0)
		ASSERT_OK(pw_mkdir(h->mnt, 0755));
	ASSERT_OK(pw_mount("hostfs", h->host, h->mnt, opts[0] ? opts : NULL));
}

static const char *
hp(const struct hmnt *h, const char *name)
{
	static __thread char buf[4][700];
	static __thread int n;
	char *b = buf[n++ & 3];
	snprintf(b, sizeof(buf[0]), "%s/%s", h->host, name);
	return b;
}

static const char *
pp(const struct hmnt *h, const char *name)
{
	static __thread char buf[4][200];
	static __thread int n;
	char *b = buf[n++ & 3];
	snprintf(b, sizeof(buf[0]), "%s/%s", h->mnt, name);
	return b;
}

static void
host_write_file(const char *path, const void *buf, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(write(fd, buf, n), (int64_t)n);
	ASSERT_OK(close(fd));
}

/* The host file's size, and its bytes in buf (up to n). */
static off_t
host_file(const char *path, void *buf, size_t n)
{
	int fd = open(path, O_RDONLY);
	ASSERT_GE(fd, 0);
	struct stat st;
	ASSERT_OK(fstat(fd, &st));
	size_t want = PW_MIN((size_t)st.st_size, n), done = 0;
	while (done < want) {
		ssize_t r = pread(fd, (char *)buf + done, want - done, (off_t)done);
		ASSERT_GT(r, 0);
		done += (size_t)r;
	}
	close(fd);
	return st.st_size;
}

static void
check_host(const char *path, const unsigned char *expect, size_t size)
{
	unsigned char *b = xmalloc(size + 1);
	ASSERT_EQ(host_file(path, b, size + 1), (int64_t)size);
	ASSERT_MEM_EQ(b, expect, size);
	free(b);
}

static bool
host_exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

#define FOR_BOTH_MODES(l) for (int l = 0; l < 2; l++)

TEST(hostfs_mount_errors_and_ro)
{
	struct hmnt h;
	hm_prepare(&h, "ro", false);
	char missing[600], file[600];
	snprintf(missing, sizeof(missing), "%s/none", h.host);
	snprintf(file, sizeof(file), "%s/plain", test_tmpdir());
	host_write_file(file, "abc", 3);
	host_write_file(hp(&h, "f"), "hello", 5);
	ASSERT_OK(pw_mkdir("/m", 0755));
	ASSERT_ERR(pw_mount("hostfs", missing, "/m", NULL), ENOENT);
	ASSERT_ERR(pw_mount("hostfs", file, "/m", NULL), ENOTDIR);
	ASSERT_ERR(pw_mount("hostfs", NULL, "/m", NULL), EINVAL);

	ASSERT_OK(pw_mount("hostfs", h.host, "/m", "ro"));
	char buf[8] = {0};
	int fd = pw_open("/m/f", O_RDONLY);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(pw_read(fd, buf, sizeof(buf)), 5);
	ASSERT_MEM_EQ(buf, "hello", 5);
	ASSERT_OK(pw_close(fd));
	ASSERT_ERR(pw_open("/m/f", O_RDWR), EROFS);
	ASSERT_ERR(pw_open("/m/g", O_RDWR | O_CREAT, 0644), EROFS);
	ASSERT_ERR(pw_mkdir("/m/d", 0755), EROFS);
	ASSERT_ERR(pw_unlink("/m/f"), EROFS);
	ASSERT_ERR(pw_truncate("/m/f", 0), EROFS);
	ASSERT_OK(pw_umount("/m"));
	ASSERT(!host_exists(hp(&h, "g")));
	ASSERT_EQ(host_file(hp(&h, "f"), buf, 5), 5);
}

/* Files and directories made on the host before the mount are read
 * through the cache, cold, in both modes; partial overwrites of
 * uncached pages keep the host bytes around them. */
TEST(hostfs_existing_host_files)
{
	FOR_BOTH_MODES(l) {
		struct hmnt h;
		hm_prepare(&h, "old", l);
		TLOG("%s", l ? "legacy_aops" : "write_begin");
		const size_t N = 3 * PG + 123;
		unsigned char *model = xmalloc(N), *b = xmalloc(N + 16);
		pat_fill(model, N, 21, 0);
		ASSERT_OK(mkdir(hp(&h, "sub"), 0750));
		host_write_file(hp(&h, "sub/data"), model, N);
		host_write_file(hp(&h, "empty"), "", 0);
		hm_mount(&h, NULL);

		struct stat st;
		ASSERT_OK(pw_stat(pp(&h, "sub"), &st));
		ASSERT(S_ISDIR(st.st_mode));
		ASSERT_EQ(st.st_mode & 07777, 0750);
		ASSERT_OK(pw_stat(pp(&h, "sub/data"), &st));
		ASSERT(S_ISREG(st.st_mode));
		ASSERT_EQ(st.st_size, (int64_t)N);
		ASSERT_OK(pw_stat(pp(&h, "empty"), &st));
		ASSERT_EQ(st.st_size, 0);

		int fd = pw_open(pp(&h, "sub/data"), O_RDWR);
		ASSERT_GE(fd, 0);
		CHECK_FILE(fd, model, N);
		/* partial overwrites of cold pages: middle, across a boundary,
		 * and the last partial page extended past the old EOF */
		ASSERT_OK(pw__test_evict_all(fd));
		unsigned char src[3000];
		pat_fill(src, sizeof(src), 22, 0);
		write_exact(fd, src, 100, 1000);
		memcpy(model + 1000, src, 100);
		write_exact(fd, src, 3000, 2 * PG - 1500);
		memcpy(model + 2 * PG - 1500, src, 3000);
		model = realloc(model, N + 500);
		write_exact(fd, src, 600, (off_t)N - 100);
		memcpy(model + N - 100, src, 600);
		CHECK_FILE(fd, model, N + 500);
		ASSERT_OK(pw_fsync(fd));
		check_host(hp(&h, "sub/data"), model, N + 500);
		ASSERT_OK(pw__test_evict_all(fd));
		CHECK_FILE(fd, model, N + 500);
		ASSERT_OK(pw_close(fd));
		ASSERT_OK(pw_umount(h.mnt));
		free(model);
		free(b);
	}
}

/* New files: sub-page, multi-page and sparse writes reach the host after
 * fsync, with the host size equal to i_size and zeroes in the holes. */
TEST(hostfs_write_fsync_reaches_host)
{
	FOR_BOTH_MODES(l) {
		struct hmnt h;
		hm_prepare(&h, "w", l);
		TLOG("%s", l ? "legacy_aops" : "write_begin");
		hm_mount(&h, NULL);
		const size_t N = 10 * PG + 77;
		unsigned char *model = calloc(1, N), *src = xmalloc(N);
		pat_fill(src, N, 31, 0);
		int fd = pw_open(pp(&h, "f"), O_RDWR | O_CREAT | O_EXCL, 0644);
		ASSERT_GE(fd, 0);
		ASSERT(host_exists(hp(&h, "f")));
		write_exact(fd, src, 10, 5);
		memcpy(model + 5, src, 10);
		write_exact(fd, src, 2 * PG + 1, PG - 1);
		memcpy(model + PG - 1, src, 2 * PG + 1);
		write_exact(fd, src + 100, 77, 10 * PG); /* sparse: pages 4..9 holes */
		memcpy(model + 10 * PG, src + 100, 77);
		CHECK_FILE(fd, model, N);
		ASSERT_OK(pw_fdatasync(fd));
		check_host(hp(&h, "f"), model, N);
		/* overwrite in the middle of a written page, then fsync again */
		write_exact(fd, src + 500, 300, 2 * PG + 7);
		memcpy(model + 2 * PG + 7, src + 500, 300);
		ASSERT_OK(pw_fsync(fd));
		check_host(hp(&h, "f"), model, N);
		ASSERT_OK(pw__test_evict_all(fd));
		CHECK_FILE(fd, model, N);
		ASSERT_OK(pw_close(fd));

		/* unmount writes back what was never fsynced */
		fd = pw_open(pp(&h, "g"), O_RDWR | O_CREAT, 0600);
		ASSERT_GE(fd, 0);
		write_exact(fd, src, 3 * PG, 0);
		ASSERT_OK(pw_close(fd));
		ASSERT_OK(pw_umount(h.mnt));
		check_host(hp(&h, "g"), src, 3 * PG);
		struct stat st;
		ASSERT_OK(stat(hp(&h, "g"), &st));
		ASSERT_EQ(st.st_mode & 0777, 0600 & ~0);
		free(model);
		free(src);
	}
}

/* Truncation: the host file follows i_size, a partial last page keeps
 * zeroes past the new EOF, regrowing shows zeroes and not old bytes. */
TEST(hostfs_truncate)
{
	FOR_BOTH_MODES(l) {
		struct hmnt h;
		hm_prepare(&h, "t", l);
		TLOG("%s", l ? "legacy_aops" : "write_begin");
		hm_mount(&h, NULL);
		const size_t N = 4 * PG;
		unsigned char *model = xmalloc(N), *src = xmalloc(N);
		pat_fill(src, N, 41, 0);
		memcpy(model, src, N);
		int fd = pw_open(pp(&h, "f"), O_RDWR | O_CREAT, 0644);
		ASSERT_GE(fd, 0);
		write_exact(fd, src, N, 0);
		ASSERT_OK(pw_fsync(fd));

		ASSERT_OK(pw_ftruncate(fd, PG + 300));
		CHECK_FILE(fd, model, PG + 300);
		struct stat st;
		ASSERT_OK(stat(hp(&h, "f"), &st));
		ASSERT_EQ(st.st_size, (int64_t)(PG + 300));
		/* grow again: the bytes past the cut are zeroes, cached or cold */
		ASSERT_OK(pw_ftruncate(fd, 3 * PG));
		memset(model + PG + 300, 0, N - PG - 300);
		CHECK_FILE(fd, model, 3 * PG);
		ASSERT_OK(pw__test_evict_all(fd));
		CHECK_FILE(fd, model, 3 * PG);
		ASSERT_OK(pw_fsync(fd));
		check_host(hp(&h, "f"), model, 3 * PG);

		/* dirty data, then a shrink below it: nothing past EOF reaches
		 * the host, even after a later extension by a write */
		write_exact(fd, src, 2 * PG, PG);
		memcpy(model + PG, src, 2 * PG);
		ASSERT_OK(pw_ftruncate(fd, 100));
		write_exact(fd, src, 10, 3 * PG);
		memset(model + 100, 0, 3 * PG - 100);
		memcpy(model + 3 * PG, src, 10);
		CHECK_FILE(fd, model, 3 * PG + 10);
		ASSERT_OK(pw_fsync(fd));
		check_host(hp(&h, "f"), model, 3 * PG + 10);

		/* O_TRUNC and pw_truncate by path */
		int fd2 = pw_open(pp(&h, "f"), O_RDWR | O_TRUNC);
		ASSERT_GE(fd2, 0);
		ASSERT_EQ(fsize(fd), 0);
		ASSERT_OK(stat(hp(&h, "f"), &st));
		ASSERT_EQ(st.st_size, 0);
		ASSERT_OK(pw_truncate(pp(&h, "f"), 5000));
		ASSERT_OK(stat(hp(&h, "f"), &st));
		ASSERT_EQ(st.st_size, 5000);
		memset(model, 0, 5000);
		CHECK_FILE(fd2, model, 5000);
		ASSERT_OK(pw_close(fd2));
		ASSERT_OK(pw_close(fd));
		ASSERT_OK(pw_umount(h.mnt));
		free(model);
		free(src);
	}
}

/* Namespace operations land on the host: mkdir, rename within and
 * across directories, rename over an existing file, unlink and rmdir;
 * an unlinked file stays usable while open. */
TEST(hostfs_namespace)
{
	FOR_BOTH_MODES(l) {
		struct hmnt h;
		hm_prepare(&h, "ns", l);
		TLOG("%s", l ? "legacy_aops" : "write_begin");
		hm_mount(&h, NULL);
		ASSERT_OK(pw_mkdir(pp(&h, "a"), 0755));
		ASSERT_OK(pw_mkdir(pp(&h, "a/b"), 0700));
		struct stat st;
		ASSERT_OK(stat(hp(&h, "a/b"), &st));
		ASSERT(S_ISDIR(st.st_mode));
		ASSERT_OK(pw_stat(pp(&h, "a"), &st));
		ASSERT_EQ(st.st_nlink, 3);

		int fd = pw_open(pp(&h, "a/b/f"), O_RDWR | O_CREAT, 0644);
		ASSERT_GE(fd, 0);
		write_exact(fd, "first", 5, 0);
		ASSERT_OK(pw_rename(pp(&h, "a/b/f"), pp(&h, "a/g")));
		ASSERT(!host_exists(hp(&h, "a/b/f")));
		/* the open file follows the rename */
		write_exact(fd, "FIRST", 5, 0);
		ASSERT_OK(pw_fsync(fd));
		check_host(hp(&h, "a/g"), (const unsigned char *)"FIRST", 5);

		/* rename over an existing file that is still open */
		int fd2 = pw_open(pp(&h, "v"), O_RDWR | O_CREAT, 0644);
		ASSERT_GE(fd2, 0);
		write_exact(fd2, "victim", 6, 0);
		ASSERT_OK(pw_rename(pp(&h, "a/g"), pp(&h, "v")));
		ASSERT(!host_exists(hp(&h, "a/g")));
		ASSERT_OK(pw_fstat(fd2, &st));
		ASSERT_EQ(st.st_nlink, 0);
		char buf[16];
		ASSERT_EQ(pw_pread(fd2, buf, sizeof(buf), 0), 6);
		ASSERT_MEM_EQ(buf, "victim", 6);
		ASSERT_OK(pw_fsync(fd2));
		ASSERT_OK(pw_close(fd2));
		check_host(hp(&h, "v"), (const unsigned char *)"FIRST", 5);
		ASSERT_OK(pw_stat(pp(&h, "v"), &st));
		ASSERT_EQ(st.st_nlink, 1);

		/* unlink while open: data lives on, the host name is gone */
		ASSERT_OK(pw_unlink(pp(&h, "v")));
		ASSERT(!host_exists(hp(&h, "v")));
		ASSERT_ERR(pw_stat(pp(&h, "v"), &st), ENOENT);
		write_exact(fd, "more", 4, 5);
		ASSERT_EQ(pw_pread(fd, buf, sizeof(buf), 0), 9);
		ASSERT_MEM_EQ(buf, "FIRSTmore", 9);
		ASSERT_OK(pw_fsync(fd));
		ASSERT_OK(pw_close(fd));

		/* directories: rename across parents, rmdir */
		ASSERT_OK(pw_mkdir(pp(&h, "c"), 0755));
		ASSERT_OK(pw_rename(pp(&h, "a/b"), pp(&h, "c/b2")));
		ASSERT(host_exists(hp(&h, "c/b2")) && !host_exists(hp(&h, "a/b")));
		ASSERT_OK(pw_stat(pp(&h, "a"), &st));
		ASSERT_EQ(st.st_nlink, 2);
		ASSERT_OK(pw_stat(pp(&h, "c"), &st));
		ASSERT_EQ(st.st_nlink, 3);
		ASSERT_ERR(pw_rmdir(pp(&h, "c")), ENOTEMPTY);
		ASSERT_OK(pw_rmdir(pp(&h, "c/b2")));
		ASSERT_OK(pw_rmdir(pp(&h, "c")));
		ASSERT(!host_exists(hp(&h, "c")));
		ASSERT_ERR(pw_open(pp(&h, "a"), O_RDWR), EISDIR);
		ASSERT_ERR(pw_mkdir(pp(&h, "a"), 0755), EEXIST);
		ASSERT_ERR(pw_open(pp(&h, "a"), O_RDONLY | O_CREAT | O_EXCL, 0644), EEXIST);
		ASSERT_OK(pw_umount(h.mnt));
	}
}

/* readdir lists the host directory (including entries made on the host
 * behind the mount's back), with types; hard links share one inode;
 * symlinks are shown but not followed. */
TEST(hostfs_readdir_links_symlinks)
{
	FOR_BOTH_MODES(l) {
		struct hmnt h;
		hm_prepare(&h, "rd", l);
		TLOG("%s", l ? "legacy_aops" : "write_begin");
		enum { NF = 300 };
		for (int i = 0; i < NF; i++) {
			char name[32];
			snprintf(name, sizeof(name), "file%03d", i);
			host_write_file(hp(&h, name), name, strlen(name));
		}
		ASSERT_OK(mkdir(hp(&h, "dir"), 0755));
		ASSERT_OK(symlink("/etc", hp(&h, "link")));
		ASSERT_OK(link(hp(&h, "file000"), hp(&h, "hard")));
		ASSERT_OK(mkfifo(hp(&h, "fifo"), 0644));
		hm_mount(&h, NULL);

		PW_DIR *d = pw_opendir(h.mnt);
		ASSERT(d != NULL);
		static bool seen[NF];
		memset(seen, 0, sizeof(seen));
		int other = 0;
		struct dirent *e;
		while ((e = pw_readdir(d)) != NULL) {
			int i;
			if (sscanf(e->d_name, "file%d", &i) == 1) {
				ASSERT(!seen[i]);
				seen[i] = true;
				ASSERT_EQ(e->d_type, DT_REG);
			} else if (!strcmp(e->d_name, "dir")) {
				ASSERT_EQ(e->d_type, DT_DIR);
				other |= 1;
			} else if (!strcmp(e->d_name, "link")) {
				ASSERT_EQ(e->d_type, DT_LNK);
				other |= 2;
			} else if (!strcmp(e->d_name, "hard")) {
				other |= 4;
			} else if (!strcmp(e->d_name, "fifo")) {
				ASSERT_EQ(e->d_type, DT_FIFO);
				other |= 8;
			} else {
				ASSERT(!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."));
			}
		}
		ASSERT_OK(pw_closedir(d));
		for (int i = 0; i < NF; i++)
			ASSERT(seen[i]);
		ASSERT_EQ(other, 15);

		/* hard links: one inode, one cache */
		struct stat a, b;
		ASSERT_OK(pw_stat(pp(&h, "file000"), &a));
		ASSERT_OK(pw_stat(pp(&h, "hard"), &b));
		ASSERT_EQ(a.st_ino, b.st_ino);
		ASSERT_EQ(a.st_nlink, 2);
		int fa = pw_open(pp(&h, "file000"), O_RDWR);
		int fb = pw_open(pp(&h, "hard"), O_RDWR);
		ASSERT(fa >= 0 && fb >= 0);
		write_exact(fa, "XY", 2, 0);
		char buf[8];
		ASSERT_EQ(pw_pread(fb, buf, 2, 0), 2);
		ASSERT_MEM_EQ(buf, "XY", 2);
		ASSERT_OK(pw_unlink(pp(&h, "hard")));
		ASSERT_OK(pw_fstat(fa, &a));
		ASSERT_EQ(a.st_nlink, 1);
		ASSERT_OK(pw_close(fa));
		ASSERT_OK(pw_close(fb));

		/* a symlink is an inode of its own type; its absolute target is
		 * resolved in pagewright's namespace, never the host's /etc */
		ASSERT_OK(pw_lstat(pp(&h, "link"), &a));
		ASSERT(S_ISLNK(a.st_mode));
		ASSERT_EQ(a.st_size, 4);
		ASSERT_ERR(pw_stat(pp(&h, "link"), &a), ENOENT);
		ASSERT_ERR(pw_stat(pp(&h, "link/passwd"), &a), ENOENT);
		errno = 0;
		ASSERT(pw_opendir(pp(&h, "link")) == NULL && errno == ENOENT);
		ASSERT_ERR(pw_open(pp(&h, "link"), O_RDONLY), ENOENT);
		ASSERT_ERR(pw_open(pp(&h, "link"), O_RDONLY | O_NOFOLLOW), ELOOP);
		ASSERT_EQ(pw_readlink(pp(&h, "link"), buf, sizeof(buf)), 4);
		ASSERT_MEM_EQ(buf, "/etc", 4);
		int fl = pw_open(pp(&h, "fifo"), O_RDWR);
		ASSERT_GE(fl, 0);
		ASSERT_ERR(pw_pwrite(fl, "x", 1, 0), EINVAL);
		ASSERT_OK(pw_close(fl));
		ASSERT_OK(pw_stat(pp(&h, "fifo"), &a));
		ASSERT(S_ISFIFO(a.st_mode));
		ASSERT_OK(pw_umount(h.mnt));
	}
}

/* A writeback error (the host refuses the write: RLIMIT_FSIZE) is
 * reported by fsync once, and the host file keeps what it had. */
TEST(hostfs_writeback_error_reported_once)
{
	FOR_BOTH_MODES(l) {
		struct hmnt h;
		hm_prepare(&h, "err", l);
		TLOG("%s", l ? "legacy_aops" : "write_begin");
		hm_mount(&h, NULL);
		unsigned char src[2 * 4096];
		pat_fill(src, sizeof(src), 51, 0);
		int fd = pw_open(pp(&h, "f"), O_RDWR | O_CREAT, 0644);
		ASSERT_GE(fd, 0);
		write_exact(fd, src, PG, 0);
		ASSERT_OK(pw_fsync(fd));
		write_exact(fd, src, sizeof(src), 0);
		signal(SIGXFSZ, SIG_IGN);
		struct rlimit old, rl;
		ASSERT_OK(getrlimit(RLIMIT_FSIZE, &old));
		rl = old;
		rl.rlim_cur = PG;
		ASSERT_OK(setrlimit(RLIMIT_FSIZE, &rl));
		ASSERT_ERR(pw_fsync(fd), EFBIG);
		ASSERT_OK(setrlimit(RLIMIT_FSIZE, &old));
		ASSERT_OK(pw_fsync(fd));
		ASSERT_OK(pw_close(fd));
		ASSERT_EQ(host_file(hp(&h, "f"), src, 0), (int64_t)PG);
		ASSERT_OK(pw_umount(h.mnt));
	}
}

struct race_arg {
	const char *path;
	ino_t ino;
	int rounds;
};

static void *
lookup_racer(void *p)
{
	struct race_arg *a = p;
	for (int i = 0; i < a->rounds; i++) {
		int fd = pw_open(a->path, O_RDWR);
		ASSERT_GE(fd, 0);
		struct stat st;
		ASSERT_OK(pw_fstat(fd, &st));
		if (i == 0)
			a->ino = st.st_ino;
		ASSERT_EQ(st.st_ino, a->ino);
		char c = 0;
		ASSERT_EQ(pw_pread(fd, &c, 1, (off_t)(i % 8) * 1000), 1);
		ASSERT_OK(pw_close(fd));
	}
	return NULL;
}

/* Threads looking up a host file none of them has cached: exactly one
 * inode is made, so every thread sees one inode number and one cache. */
TEST_THREADED(hostfs_concurrent_lookup_one_inode)
{
	struct hmnt h;
	hm_prepare(&h, "race", false);
	enum { NT = 4, NFILES = 20 };
	unsigned char data[8000];
	pat_fill(data, sizeof(data), 61, 0);
	for (int f = 0; f < NFILES; f++) {
		char name[16];
		snprintf(name, sizeof(name), "f%d", f);
		host_write_file(hp(&h, name), data, sizeof(data));
	}
	hm_mount(&h, NULL);
	for (int f = 0; f < NFILES; f++) {
		char name[16];
		snprintf(name, sizeof(name), "f%d", f);
		struct race_arg args[NT];
		for (int i = 0; i < NT; i++)
			args[i] = (struct race_arg){.path = pp(&h, name), .rounds = 50};
		run_threads(NT, lookup_racer, args, sizeof(args[0]));
		for (int i = 1; i < NT; i++)
			ASSERT_EQ(args[i].ino, args[0].ino);
	}
	ASSERT_OK(pw_umount(h.mnt));
}

/* Stores through a shared mapping of a cold host file reach the host. */
TEST(hostfs_mmap_cold_file)
{
	FOR_BOTH_MODES(l) {
		struct hmnt h;
		hm_prepare(&h, "mm", l);
		TLOG("%s", l ? "legacy_aops" : "write_begin");
		const size_t N = 2 * PG + 500;
		unsigned char *model = xmalloc(N);
		pat_fill(model, N, 71, 0);
		host_write_file(hp(&h, "f"), model, N);
		hm_mount(&h, NULL);
		int fd = pw_open(pp(&h, "f"), O_RDWR);
		ASSERT_GE(fd, 0);
		unsigned char *m = pw_mmap(NULL, 3 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		ASSERT(m != MAP_FAILED);
		ASSERT_MEM_EQ(m, model, N);
		for (size_t i = N; i < 3 * PG; i++)
			ASSERT_EQ(m[i], 0);
		m[10] = 0xAA;
		m[2 * PG + 499] = 0xBB;
		m[2 * PG + 600] = 0xCC; /* past EOF in the last page: never written */
		model[10] = 0xAA;
		model[2 * PG + 499] = 0xBB;
		ASSERT_OK(pw_msync(m, 3 * PG, MS_SYNC));
		check_host(hp(&h, "f"), model, N);
		ASSERT_OK(pw_munmap(m, 3 * PG));
		ASSERT_OK(pw_close(fd));
		ASSERT_OK(pw_umount(h.mnt));
		free(model);
	}
}

/* SPEC 10.5 on the block-style write_end: a short copy into a cold page
 * that the write covers whole.  The page is not read from the host (the
 * write covers it), so write_end must refuse the copy rather than keep a
 * page whose tail is garbage; the retry then makes progress.  The hook
 * takes the source's second page away after the prefault, and the pool
 * frames are dirtied with junk first so garbage cannot pass for data. */
static unsigned char *sc_revoke;
static int sc_calls;

static void
sc_after_prefault(struct file *file, loff_t pos, size_t bytes)
{
	(void)file, (void)pos, (void)bytes;
	if (sc_revoke && sc_calls++ == 0)
		ASSERT_OK(mprotect(sc_revoke, PG, PROT_NONE));
}

static void
junk_the_pool(const struct hmnt *h)
{
	enum { JP = 64 };
	unsigned char *junk = xmalloc(JP * PG);
	memset(junk, 0xEE, JP * PG);
	int fd = pw_open(pp(h, "junk"), O_RDWR | O_CREAT, 0644);
	ASSERT_GE(fd, 0);
	write_exact(fd, junk, JP * PG, 0);
	ASSERT_OK(pw_close(fd));
	ASSERT_OK(pw_unlink(pp(h, "junk")));
	free(junk);
}

TEST(hostfs_short_copy_over_whole_cold_page)
{
	FOR_BOTH_MODES(l) {
		struct hmnt h;
		hm_prepare(&h, "sc", l);
		TLOG("%s", l ? "legacy_aops" : "write_begin");
		const size_t N = 3 * PG;
		unsigned char *model = xmalloc(N);
		pat_fill(model, N, 81, 0);
		host_write_file(hp(&h, "f"), model, N);
		hm_mount(&h, NULL);
		junk_the_pool(&h);
		int fd = pw_open(pp(&h, "f"), O_RDWR);
		ASSERT_GE(fd, 0);
		unsigned char *buf = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE,
		                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		ASSERT(buf != MAP_FAILED);
		pat_fill(buf, 2 * PG, 82, 0);
		const unsigned char *src = buf + PG - 1000; /* 1000 bytes stay */
		sc_revoke = buf + PG;
		sc_calls = 0;
		pw__hooks.after_prefault = sc_after_prefault;
		ASSERT_EQ(pw_pwrite(fd, src, PG, PG), 1000);
		pw__hooks.after_prefault = NULL;
		sc_revoke = NULL;
		memcpy(model + PG, src, 1000);
		CHECK_FILE(fd, model, N);
		ASSERT_OK(pw_fsync(fd));
		check_host(hp(&h, "f"), model, N);
		ASSERT_OK(pw__test_evict_all(fd));
		CHECK_FILE(fd, model, N);
		ASSERT_OK(pw_close(fd));
		ASSERT_OK(pw_umount(h.mnt));
		munmap(buf, 2 * PG);
		free(model);
	}
}

/* A write whose source vanishes after the prefault copies nothing and
 * fails with EFAULT: the file must not grow.  On the legacy path the
 * zero-byte step must not reach commit_write as an empty range, which
 * commit_write cannot tell from a zero-length expand (SPEC 6). */
TEST(hostfs_vanished_source_does_not_grow_file)
{
	FOR_BOTH_MODES(l) {
		struct hmnt h;
		hm_prepare(&h, "vs", l);
		TLOG("%s", l ? "legacy_aops" : "write_begin");
		hm_mount(&h, NULL);
		int fd = pw_open(pp(&h, "f"), O_RDWR | O_CREAT, 0644);
		ASSERT_GE(fd, 0);
		unsigned char model[100];
		pat_fill(model, sizeof(model), 91, 0);
		write_exact(fd, model, sizeof(model), 0); /* page 0 cached, uptodate */
		unsigned char *buf = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE,
		                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		ASSERT(buf != MAP_FAILED);
		memset(buf, 0x5A, 2 * PG);
		sc_revoke = buf + PG;
		sc_calls = 0;
		pw__hooks.after_prefault = sc_after_prefault;
		ASSERT_ERR(pw_pwrite(fd, buf + PG, 100, 2000), EFAULT);
		pw__hooks.after_prefault = NULL;
		sc_revoke = NULL;
		CHECK_FILE(fd, model, sizeof(model));
		ASSERT_OK(pw_fsync(fd));
		check_host(hp(&h, "f"), model, sizeof(model));
		ASSERT_OK(pw_close(fd));
		ASSERT_OK(pw_umount(h.mnt));
		munmap(buf, 2 * PG);
	}
}

/* More files than descriptors: unused inodes (each holding a host
 * descriptor) are written back and evicted, so the walk never hits
 * EMFILE and no data is lost. */
TEST(hostfs_many_files_few_descriptors)
{
	struct rlimit old, rl;
	ASSERT_OK(getrlimit(RLIMIT_NOFILE, &old));
	rl = old;
	rl.rlim_cur = 256;
	ASSERT_OK(setrlimit(RLIMIT_NOFILE, &rl));
	char host[300];
	snprintf(host, sizeof(host), "%s/many", test_tmpdir());
	ASSERT_OK(mkdir(host, 0755));
	ASSERT_OK(pw_mkdir("/many", 0755));
	ASSERT_OK(pw_mount("hostfs", host, "/many", NULL));
	char path[64], buf[32];
	for (int k = 0; k < 1000; k++) {
		snprintf(path, sizeof(path), "/many/f%d", k);
		int fd = pw_open(path, O_CREAT | O_RDWR, 0644);
		ASSERT_GE(fd, 0);
		int n = snprintf(buf, sizeof(buf), "file %d", k);
		ASSERT_EQ(pw_write(fd, buf, (size_t)n), n);
		ASSERT_OK(pw_close(fd)); /* dirty, unreferenced */
	}
	for (int k = 0; k < 1000; k++) {
		snprintf(path, sizeof(path), "/many/f%d", k);
		int fd = pw_open(path, O_RDONLY);
		ASSERT_GE(fd, 0);
		char got[32] = {0};
		int n = snprintf(buf, sizeof(buf), "file %d", k);
		ASSERT_EQ(pw_read(fd, got, sizeof(got)), n);
		ASSERT_MEM_EQ(got, buf, (size_t)n);
		ASSERT_OK(pw_close(fd));
	}
	ASSERT_OK(pw_umount("/many"));
	/* every file reached the host */
	char hpath[400];
	snprintf(hpath, sizeof(hpath), "%s/f999", host);
	FILE *f = fopen(hpath, "r");
	ASSERT(f != NULL);
	char got[32] = {0};
	ASSERT_EQ(fread(got, 1, sizeof(got), f), 8);
	fclose(f);
	ASSERT_MEM_EQ(got, "file 999", 8);
	ASSERT_OK(setrlimit(RLIMIT_NOFILE, &old));
}

/* Bounded memory: with a 4 MiB cap, a 24 MiB file is written, read back
 * and mapped correctly, and the pool's pages in use stay near the cap. */
TEST(hostfs_file_larger_than_memory_cap)
{
	ASSERT_OK(pw_set_mem_limit(4 << 20));
	char host[300];
	snprintf(host, sizeof(host), "%s/cap", test_tmpdir());
	ASSERT_OK(mkdir(host, 0755));
	ASSERT_OK(pw_mkdir("/cap", 0755));
	ASSERT_OK(pw_mount("hostfs", host, "/cap", NULL));
	int fd = pw_open("/cap/big", O_CREAT | O_RDWR, 0644);
	ASSERT_GE(fd, 0);
	const size_t SZ = 24 << 20;
	static unsigned char buf[1 << 20];
	uint64_t peak = 0;
	struct pw_stats st;
	for (size_t off = 0; off < SZ; off += sizeof(buf)) {
		for (size_t k = 0; k < sizeof(buf); k += 4096)
			memcpy(buf + k, &(uint64_t){off + k}, 8);
		ASSERT_EQ(pw_pwrite(fd, buf, sizeof(buf), (off_t)off), (ssize_t)sizeof(buf));
		pw_get_stats(&st);
		peak = st.allocated_pages > peak ? st.allocated_pages : peak;
	}
	for (size_t off = 0; off < SZ; off += sizeof(buf)) {
		ASSERT_EQ(pw_pread(fd, buf, sizeof(buf), (off_t)off), (ssize_t)sizeof(buf));
		for (size_t k = 0; k < sizeof(buf); k += 4096) {
			uint64_t v;
			memcpy(&v, buf + k, 8);
			ASSERT_EQ(v, off + k);
		}
		pw_get_stats(&st);
		peak = st.allocated_pages > peak ? st.allocated_pages : peak;
	}
	unsigned char *m = pw_mmap(NULL, SZ, PROT_READ, MAP_SHARED, fd, 0);
	ASSERT(m != MAP_FAILED);
	for (size_t off = 0; off < SZ; off += 4096) {
		uint64_t v;
		memcpy(&v, m + off, 8);
		ASSERT_EQ(v, off);
	}
	pw_get_stats(&st);
	peak = st.allocated_pages > peak ? st.allocated_pages : peak;
	TLOG("peak pages in use %llu for a cap of %d pages and a file of %zu pages",
	     (unsigned long long)peak, 1024, SZ / 4096);
	ASSERT_LE(peak, 1024 + 64 + 64); /* the cap, a reclaim batch, fault-around */
	ASSERT_OK(pw_munmap(m, SZ));
	ASSERT_OK(pw_close(fd));
	ASSERT_OK(pw_umount("/cap"));
	ASSERT_OK(pw_set_mem_limit(0));
}

struct cap_arg {
	int fd;
	int id;
	unsigned char *map;
};

static void *
cap_worker(void *p)
{
	struct cap_arg *a = p;
	const size_t REGION = 2 << 20;
	unsigned char buf[8192];
	for (int round = 0; round < 3; round++) {
		for (size_t off = 0; off < REGION; off += sizeof(buf)) {
			memset(buf, (a->id * 16 + round) & 0xff, sizeof(buf));
			size_t at = (size_t)a->id * REGION + off;
			if (pw_pwrite(a->fd, buf, sizeof(buf), (off_t)at) != (ssize_t)sizeof(buf))
				return (void *)1;
		}
		for (size_t off = 0; off < REGION; off += 4096) {
			size_t at = (size_t)a->id * REGION + off;
			unsigned char want = (a->id * 16 + round) & 0xff;
			if (__atomic_load_n(&a->map[at], __ATOMIC_RELAXED) != want)
				return (void *)2;
		}
	}
	return NULL;
}

/* Many threads writing and reading through mappings under a small cap:
 * reclaim unmaps and evicts pages other threads are using, and every
 * thread still sees its own data. */
TEST_THREADED(hostfs_threads_under_small_cap)
{
	ASSERT_OK(pw_set_mem_limit(2 << 20));
	char host[300];
	snprintf(host, sizeof(host), "%s/capt", test_tmpdir());
	ASSERT_OK(mkdir(host, 0755));
	ASSERT_OK(pw_mkdir("/capt", 0755));
	ASSERT_OK(pw_mount("hostfs", host, "/capt", NULL));
	int fd = pw_open("/capt/f", O_CREAT | O_RDWR, 0644);
	ASSERT_GE(fd, 0);
	const int N = 4;
	ASSERT_OK(pw_ftruncate(fd, (off_t)N * (2 << 20)));
	unsigned char *m = pw_mmap(NULL, (size_t)N * (2 << 20), PROT_READ, MAP_SHARED, fd, 0);
	ASSERT(m != MAP_FAILED);
	pthread_t th[4];
	struct cap_arg args[4];
	for (int k = 0; k < N; k++) {
		args[k] = (struct cap_arg){fd, k, m};
		ASSERT_OK(pthread_create(&th[k], NULL, cap_worker, &args[k]));
	}
	for (int k = 0; k < N; k++) {
		void *r;
		ASSERT_OK(pthread_join(th[k], &r));
		ASSERT_PTR_EQ(r, NULL);
	}
	ASSERT_OK(pw_munmap(m, (size_t)N * (2 << 20)));
	ASSERT_OK(pw_close(fd));
	ASSERT_OK(pw_umount("/capt"));
	ASSERT_OK(pw_set_mem_limit(0));
}

static bool
host_has(const char *path, const char *want, size_t n)
{
	char got[64] = {0};
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	size_t r = fread(got, 1, sizeof(got), f);
	fclose(f);
	return r == n && memcmp(got, want, n) == 0;
}

/* Dirty pages reach the backing store by themselves once they are older
 * than the expiry age, and dirty data stays under the dirty limit while
 * a writer outruns writeback. */
TEST(hostfs_background_writeback_and_dirty_limit)
{
	setenv("PAGEWRIGHT_DIRTY_EXPIRE_MS", "200", 1);
	setenv("PAGEWRIGHT_WRITEBACK_MS", "50", 1);
	setenv("PAGEWRIGHT_DIRTY_LIMIT", "4M", 1);
	char host[300], hpath[400];
	snprintf(host, sizeof(host), "%s/wb", test_tmpdir());
	ASSERT_OK(mkdir(host, 0755));
	ASSERT_OK(pw_mkdir("/wb", 0755));
	ASSERT_OK(pw_mount("hostfs", host, "/wb", NULL));
	int fd = pw_open("/wb/f", O_CREAT | O_RDWR, 0644);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(pw_write(fd, "background", 10), 10);
	snprintf(hpath, sizeof(hpath), "%s/f", host);
	int waited = 0;
	while (!host_has(hpath, "background", 10) && waited < 5000) {
		usleep(20000);
		waited += 20;
	}
	TLOG("dirty data reached the host after about %d ms, no fsync", waited);
	ASSERT(host_has(hpath, "background", 10));
	struct pw_stats st;
	pw_get_stats(&st);
	ASSERT_EQ(st.dirty_pages, 0);

	static unsigned char buf[1 << 20];
	memset(buf, 'w', sizeof(buf));
	uint64_t peak = 0;
	for (int k = 0; k < 32; k++) {
		ASSERT_EQ(pw_pwrite(fd, buf, sizeof(buf), (off_t)k << 20), (ssize_t)sizeof(buf));
		pw_get_stats(&st);
		peak = st.dirty_pages > peak ? st.dirty_pages : peak;
	}
	TLOG("peak dirty pages %llu with a limit of %d", (unsigned long long)peak, 1024);
	ASSERT_LE(peak, 1024 + 256); /* the limit plus one 1 MiB write */
	ASSERT_OK(pw_close(fd));
	ASSERT_OK(pw_umount("/wb"));
}

/* Extended attributes are the host file's own: set on either side, seen
 * on the other; the errors are the host's (skipped where the host's
 * filesystem keeps no user attributes). */
TEST(hostfs_xattrs)
{
	struct hmnt h;
	hm_prepare(&h, "xattr", false);
	host_write_file(hp(&h, "f"), "x", 1);
	if (setxattr(hp(&h, "f"), "user.probe", "p", 1, 0) != 0)
		TEST_SKIP("the host filesystem under %s keeps no user attributes (%s)",
		          test_tmpdir(), strerror(errno));
	ASSERT_OK(mkdir(hp(&h, "d"), 0755));
	ASSERT_OK(symlink("f", hp(&h, "ln")));
	hm_mount(&h, NULL);
	char p[128], got[64];
	snprintf(p, sizeof(p), "%s/f", h.mnt);
	ASSERT_EQ(pw_getxattr(p, "user.probe", got, sizeof(got)), 1);
	ASSERT_OK(pw_setxattr(p, "user.pw", "from pagewright", 15, XATTR_CREATE));
	ASSERT_EQ(getxattr(hp(&h, "f"), "user.pw", got, sizeof(got)), 15);
	ASSERT_MEM_EQ(got, "from pagewright", 15);
	ASSERT_EQ(pw_setxattr(p, "user.pw", "x", 1, XATTR_CREATE), -1);
	ASSERT_EQ(errno, EEXIST);
	ASSERT_EQ(pw_listxattr(p, got, sizeof(got)), (ssize_t)sizeof("user.probe\0user.pw"));
	ASSERT_OK(pw_removexattr(p, "user.probe"));
	ASSERT_EQ(getxattr(hp(&h, "f"), "user.probe", got, sizeof(got)), -1);
	ASSERT_EQ(errno, ENODATA);
	ASSERT_EQ(pw_getxattr(p, "user.probe", got, sizeof(got)), -1);
	ASSERT_EQ(errno, ENODATA);
	/* A directory; a symlink followed (user.* is not for links). */
	snprintf(p, sizeof(p), "%s/d", h.mnt);
	ASSERT_OK(pw_setxattr(p, "user.dir", "d", 1, 0));
	ASSERT_EQ(getxattr(hp(&h, "d"), "user.dir", got, sizeof(got)), 1);
	snprintf(p, sizeof(p), "%s/ln", h.mnt);
	ASSERT_EQ(pw_getxattr(p, "user.pw", got, sizeof(got)), 15);
	ASSERT_EQ(pw_lsetxattr(p, "user.x", "x", 1, 0), -1);
	ASSERT_EQ(errno, EPERM);
	ASSERT_OK(pw_umount(h.mnt));
}

/*
 * test_ext2.c - ext2 images made by mke2fs, read and written through
 * pagewright, checked from the outside with debugfs and e2fsck.
 *
 * Every scenario runs for block sizes 1024, 2048 and 4096 (a page holds
 * four, two or one blocks), unmounts, and then requires `e2fsck -fn` to
 * find nothing to fix (exit status 0; its output is printed otherwise).
 * Files are put into images with `debugfs -w -R write` to test reading,
 * and what pagewright wrote is read back with `debugfs -R cat`.
 */
#include "../pwt.h"

#include <dirent.h>
#include <pagewright/buffer_head.h>
#include <stdarg.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <sys/xattr.h>

static const unsigned block_sizes[] = {1024, 2048, 4096};

struct e2 {
	char img[512];
	char mnt[64];
	unsigned bs;
};

/* Run a shell command; return its exit status, its output in out. */
static int
sh(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int
sh(char *out, size_t n, const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	FILE *p = popen(cmd, "r");
	ASSERT(p != NULL);
	size_t got = 0;
	if (out && n)
		out[0] = 0;
	char buf[4096];
	size_t r;
	while ((r = fread(buf, 1, sizeof(buf), p)) > 0) {
		if (out && got + 1 < n) {
			size_t c = PW_MIN(r, n - 1 - got);
			memcpy(out + got, buf, c);
			got += c;
			out[got] = 0;
		}
	}
	int st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void
e2_make(struct e2 *e, const char *tag, unsigned bs, unsigned size_kb)
{
	static int n;
	e->bs = bs;
	XSNPRINTF(e->img, sizeof(e->img), "%s/%s-%u.img", test_tmpdir(), tag, bs);
	XSNPRINTF(e->mnt, sizeof(e->mnt), "/e2_%s_%u_%d", tag, bs, n++);
	char out[4096];
	int st = sh(out, sizeof(out), "mke2fs -q -F -t ext2 -b %u '%s' %u 2>&1", bs,
	            e->img, size_kb);
	if (st != 0)
		fprintf(stderr, "mke2fs: %s\n", out);
	ASSERT_EQ(st, 0);
	ASSERT_OK(pw_mkdir(e->mnt, 0755));
}

static int
e2_try_mount(struct e2 *e, const char *opts)
{
	return pw_mount("ext2", e->img, e->mnt, opts);
}

static void
e2_mount(struct e2 *e, const char *opts)
{
	if (e2_try_mount(e, opts) != 0) {
		fprintf(stderr, "mount %s: %s\n", e->img, strerror(errno));
		abort();
	}
}

static void
e2_fsck(struct e2 *e)
{
	static char out[1 << 16];
	int st = sh(out, sizeof(out), "e2fsck -fn '%s' 2>&1", e->img);
	if (st != 0)
		fprintf(stderr, "e2fsck -fn %s exited %d:\n%s\n", e->img, st, out);
	ASSERT_EQ(st, 0);
}

static void
e2_umount_fsck(struct e2 *e)
{
	ASSERT_OK(pw_umount(e->mnt));
	e2_fsck(e);
}

static const char *
e2p(const struct e2 *e, const char *name)
{
	static __thread char buf[4][300];
	static __thread int n;
	char *b = buf[n++ & 3];
	XSNPRINTF(b, sizeof(buf[0]), "%s/%s", e->mnt, name);
	return b;
}

/* debugfs exits 0 even when the request failed: look at what it said. */
static void
debugfs_check(const char *req, const char *out)
{
	static const char *bad[] = {"invalid", "nvalid", "not found", "Couldn't",
	                            "sage:", "rror", "annot", "No such"};
	for (size_t k = 0; k < PW_ARRAY_SIZE(bad); k++)
		if (strstr(out, bad[k])) {
			fprintf(stderr, "debugfs %s:\n%s\n", req, out);
			abort();
		}
}

static void
e2_debugfs(struct e2 *e, const char *req)
{
	char out[4096];
	ASSERT_EQ(sh(out, sizeof(out), "debugfs -w -R '%s' '%s' 2>&1", req, e->img), 0);
	debugfs_check(req, out);
}

/* Put host file src into the image as name with debugfs. */
static void
e2_debugfs_write(struct e2 *e, const char *src, const char *name)
{
	char req[1200];
	XSNPRINTF(req, sizeof(req), "write %s %s", src, name);
	e2_debugfs(e, req);
}

/* Read name from the image with debugfs cat; return bytes read. */
static size_t
e2_debugfs_cat(struct e2 *e, const char *name, char *buf, size_t n)
{
	char cmd[1200];
	XSNPRINTF(cmd, sizeof(cmd), "debugfs -R 'cat %s' '%s' 2>/dev/null", name, e->img);
	FILE *p = popen(cmd, "r");
	ASSERT(p != NULL);
	size_t got = 0, r;
	while (got < n && (r = fread(buf + got, 1, n - got, p)) > 0)
		got += r;
	pclose(p);
	return got;
}

static int64_t
ts_ns_of(struct timespec ts)
{
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void
fill_pattern(char *buf, size_t n, unsigned seed)
{
	for (size_t k = 0; k < n; k++)
		buf[k] = (char)((k * 31 + seed * 7 + (k >> 12)) & 0xFF);
}

static void
write_host_file(const char *path, const char *buf, size_t n)
{
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	ASSERT(fd >= 0);
	ASSERT_EQ(write(fd, buf, n), (ssize_t)n);
	close(fd);
}

static void
pw_read_all(const char *path, char *buf, size_t n)
{
	int fd = pw_open(path, O_RDONLY);
	ASSERT(fd >= 0);
	size_t got = 0;
	ssize_t r;
	while (got < n && (r = pw_read(fd, buf + got, n - got)) > 0)
		got += (size_t)r;
	ASSERT_EQ(got, n);
	char extra;
	ASSERT_EQ(pw_read(fd, &extra, 1), 0);
	ASSERT_OK(pw_close(fd));
}

static void
pw_write_all(const char *path, const char *buf, size_t n)
{
	int fd = pw_open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	ASSERT(fd >= 0);
	size_t done = 0;
	while (done < n) {
		ssize_t w = pw_write(fd, buf + done, PW_MIN(n - done, (size_t)100000));
		ASSERT_GT(w, 0);
		done += (size_t)w;
	}
	ASSERT_OK(pw_close(fd));
}

static bool
dir_has(const char *path, const char *name, unsigned char *type)
{
	PW_DIR *d = pw_opendir(path);
	ASSERT(d != NULL);
	struct dirent *de;
	bool found = false;
	while ((de = pw_readdir(d)) != NULL)
		if (strcmp(de->d_name, name) == 0) {
			found = true;
			if (type)
				*type = de->d_type;
		}
	pw_closedir(d);
	return found;
}

/* ------------------------------------------------------------ reading */

TEST(ext2_mount_empty)
{
	for (size_t k = 0; k < PW_ARRAY_SIZE(block_sizes); k++) {
		struct e2 e;
		e2_make(&e, "empty", block_sizes[k], 8192);
		e2_mount(&e, NULL);
		unsigned char t = 0;
		ASSERT(dir_has(e.mnt, "lost+found", &t));
		ASSERT_EQ(t, DT_DIR);
		struct stat st;
		ASSERT_OK(pw_stat(e2p(&e, "lost+found"), &st));
		ASSERT(S_ISDIR(st.st_mode));
		ASSERT_EQ(st.st_nlink, 2);
		ASSERT_OK(pw_stat(e.mnt, &st));
		ASSERT_EQ(st.st_ino, 2);
		ASSERT_EQ(st.st_nlink, 3);
		e2_umount_fsck(&e);
	}
}

TEST(ext2_read_debugfs_files)
{
	for (size_t k = 0; k < PW_ARRAY_SIZE(block_sizes); k++) {
		struct e2 e;
		unsigned bs = block_sizes[k];
		e2_make(&e, "read", bs, 32768);
		char host[600];
		/* small, and large enough for double indirect blocks at 1 KiB */
		size_t sizes[] = {5, 4096 + 17, (12 + 256 + 300) * 1024 + 5};
		const char *names[] = {"small", "mid", "big"};
		char *buf = malloc(sizes[2]), *got = malloc(sizes[2]);
		for (int f = 0; f < 3; f++) {
			fill_pattern(buf, sizes[f], (unsigned)f);
			XSNPRINTF(host, sizeof(host), "%s/h%d", test_tmpdir(), f);
			write_host_file(host, buf, sizes[f]);
			e2_debugfs_write(&e, host, names[f]);
		}
		e2_mount(&e, NULL);
		for (int f = 0; f < 3; f++) {
			fill_pattern(buf, sizes[f], (unsigned)f);
			pw_read_all(e2p(&e, names[f]), got, sizes[f]);
			ASSERT_MEM_EQ(got, buf, sizes[f]);
			unsigned char t;
			ASSERT(dir_has(e.mnt, names[f], &t));
			ASSERT_EQ(t, DT_REG);
		}
		e2_umount_fsck(&e);
		free(buf);
		free(got);
	}
}

TEST(ext2_read_holes)
{
	for (size_t k = 0; k < PW_ARRAY_SIZE(block_sizes); k++) {
		struct e2 e;
		e2_make(&e, "holes", block_sizes[k], 16384);
		char host[600];
		XSNPRINTF(host, sizeof(host), "%s/sparse", test_tmpdir());
		int fd = open(host, O_CREAT | O_TRUNC | O_WRONLY, 0644);
		ASSERT(fd >= 0);
		ASSERT_EQ(pwrite(fd, "head", 4, 0), 4);
		ASSERT_EQ(pwrite(fd, "middle", 6, 300000), 6);
		ASSERT_EQ(pwrite(fd, "tail", 4, 2000000), 4);
		close(fd);
		e2_debugfs_write(&e, host, "sparse");
		e2_mount(&e, NULL);
		size_t n = 2000004;
		char *want = calloc(1, n), *got = malloc(n);
		memcpy(want, "head", 4);
		memcpy(want + 300000, "middle", 6);
		memcpy(want + 2000000, "tail", 4);
		pw_read_all(e2p(&e, "sparse"), got, n);
		ASSERT_MEM_EQ(got, want, n);
		e2_umount_fsck(&e);
		free(want);
		free(got);
	}
}

TEST(ext2_statfs_via_debugfs)
{
	struct e2 e;
	e2_make(&e, "stat", 1024, 4096);
	e2_debugfs(&e, "mkdir sub");
	e2_debugfs(&e, "symlink sub/link /some/where");
	e2_mount(&e, NULL);
	unsigned char t = 0;
	ASSERT(dir_has(e2p(&e, "sub"), "link", &t));
	ASSERT_EQ(t, DT_LNK);
	struct stat st;
	ASSERT_OK(pw_lstat(e2p(&e, "sub/link"), &st));
	ASSERT(S_ISLNK(st.st_mode));
	ASSERT_EQ(st.st_size, 11);
	/* followed, the target is looked up in pagewright's namespace */
	ASSERT_ERR(pw_stat(e2p(&e, "sub/link"), &st), ENOENT);
	char t2[32];
	ASSERT_EQ(pw_readlink(e2p(&e, "sub/link"), t2, sizeof(t2)), 11);
	ASSERT_MEM_EQ(t2, "/some/where", 11);
	e2_umount_fsck(&e);
}

/* ------------------------------------------------------------ writing */

TEST(ext2_write_read_back)
{
	for (size_t k = 0; k < PW_ARRAY_SIZE(block_sizes); k++) {
		struct e2 e;
		unsigned bs = block_sizes[k];
		e2_make(&e, "write", bs, 32768);
		e2_mount(&e, NULL);
		size_t sizes[] = {0, 1, 1000, 4096, 4097, 70000, (12 + 256 + 300) * 1024 + 5};
		char name[32];
		char *buf = malloc(sizes[6]), *got = malloc(sizes[6]);
		for (size_t f = 0; f < PW_ARRAY_SIZE(sizes); f++) {
			XSNPRINTF(name, sizeof(name), "f%zu", f);
			fill_pattern(buf, sizes[f], (unsigned)f + 10);
			pw_write_all(e2p(&e, name), buf, sizes[f]);
			pw_read_all(e2p(&e, name), got, sizes[f]);
			ASSERT_MEM_EQ(got, buf, sizes[f]);
		}
		e2_umount_fsck(&e);
		for (size_t f = 0; f < PW_ARRAY_SIZE(sizes); f++) {
			XSNPRINTF(name, sizeof(name), "f%zu", f);
			fill_pattern(buf, sizes[f], (unsigned)f + 10);
			ASSERT_EQ(e2_debugfs_cat(&e, name, got, sizes[f] + 1), sizes[f]);
			ASSERT_MEM_EQ(got, buf, sizes[f]);
		}
		/* and again through a fresh mount */
		e2_mount(&e, NULL);
		for (size_t f = 0; f < PW_ARRAY_SIZE(sizes); f++) {
			XSNPRINTF(name, sizeof(name), "f%zu", f);
			fill_pattern(buf, sizes[f], (unsigned)f + 10);
			pw_read_all(e2p(&e, name), got, sizes[f]);
			ASSERT_MEM_EQ(got, buf, sizes[f]);
		}
		e2_umount_fsck(&e);
		free(buf);
		free(got);
	}
}

/* ---------------------------------------------------------- namespace */

TEST(ext2_many_files_deep_tree)
{
	for (size_t k = 0; k < PW_ARRAY_SIZE(block_sizes); k++) {
		struct e2 e;
		e2_make(&e, "many", block_sizes[k], 16384);
		e2_mount(&e, NULL);
		char p[512], data[64];
		ASSERT_OK(pw_mkdir(e2p(&e, "flat"), 0755));
		for (int f = 0; f < 400; f++) {
			XSNPRINTF(p, sizeof(p), "%s/flat/a-rather-long-file-name-%04d", e.mnt, f);
			XSNPRINTF(data, sizeof(data), "file %d", f);
			pw_write_all(p, data, strlen(data));
		}
		XSNPRINTF(p, sizeof(p), "%s", e.mnt);
		for (int d = 0; d < 20; d++) {
			size_t l = strlen(p);
			XSNPRINTF(p + l, sizeof(p) - l, "/d%d", d);
			ASSERT_OK(pw_mkdir(p, 0750));
		}
		size_t l = strlen(p);
		XSNPRINTF(p + l, sizeof(p) - l, "/leaf");
		pw_write_all(p, "deep", 4);
		/* remove every other flat file, then add some back */
		for (int f = 0; f < 400; f += 2) {
			XSNPRINTF(p, sizeof(p), "%s/flat/a-rather-long-file-name-%04d", e.mnt, f);
			ASSERT_OK(pw_unlink(p));
		}
		for (int f = 0; f < 50; f++) {
			XSNPRINTF(p, sizeof(p), "%s/flat/n%d", e.mnt, f);
			pw_write_all(p, "x", 1);
		}
		PW_DIR *dir = pw_opendir(e2p(&e, "flat"));
		ASSERT(dir != NULL);
		int n = 0;
		while (pw_readdir(dir))
			n++;
		pw_closedir(dir);
		ASSERT_EQ(n, 2 + 200 + 50);
		struct stat st;
		ASSERT_OK(pw_stat(e2p(&e, "d0"), &st));
		ASSERT_EQ(st.st_nlink, 3);
		ASSERT_EQ(st.st_mode & 07777, 0750);
		e2_umount_fsck(&e);
		char got[16];
		ASSERT_EQ(e2_debugfs_cat(&e, "/flat/a-rather-long-file-name-0399", got, sizeof(got)), 8);
		ASSERT_MEM_EQ(got, "file 399", 8);
		e2_mount(&e, NULL);
		XSNPRINTF(p, sizeof(p), "%s/d0/d1/d2/d3/d4/d5/d6/d7/d8/d9/d10/d11/d12/d13/d14/"
		          "d15/d16/d17/d18/d19/leaf", e.mnt);
		pw_read_all(p, got, 4);
		ASSERT_MEM_EQ(got, "deep", 4);
		e2_umount_fsck(&e);
	}
}

/* The name index of a directory (dir.c) against a model: every change
 * (create, unlink, rename within and across directories, rename over a
 * name) is checked by lookups, positive and negative, while the index is
 * in use, then again after a remount, which builds it from the disk, and
 * by readdir and e2fsck.  Names freed by unlink are reused without the
 * directory growing (the index keeps the room of each block). */
#define NIX_N 700
static uint64_t
nix_rng(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static void
nix_check(struct e2 *e, const char *model, int *live)
{
	char p[256];
	struct stat st;
	int n = 0;
	for (int k = 0; k < NIX_N; k++) {
		XSNPRINTF(p, sizeof(p), "%s/d/name-%d", e->mnt, k);
		if (model[k]) {
			n++;
			char got[16], want[16];
			XSNPRINTF(want, sizeof(want), "v%d", model[k]);
			int len = (int)strlen(want);
			ASSERT_OK(pw_stat(p, &st));
			ASSERT_EQ((int)st.st_size, len);
			pw_read_all(p, got, (size_t)len);
			ASSERT_MEM_EQ(got, want, (size_t)len);
		} else {
			ASSERT_ERR(pw_stat(p, &st), ENOENT);
		}
	}
	PW_DIR *dir = pw_opendir(e2p(e, "d"));
	ASSERT(dir != NULL);
	int listed = 0;
	while (pw_readdir(dir))
		listed++;
	pw_closedir(dir);
	ASSERT_EQ(listed, 2 + n);
	*live = n;
}

TEST(ext2_name_index)
{
	for (size_t k = 0; k < PW_ARRAY_SIZE(block_sizes); k++) {
		struct e2 e;
		e2_make(&e, "nix", block_sizes[k], 16384);
		e2_mount(&e, NULL);
		ASSERT_OK(pw_mkdir(e2p(&e, "d"), 0755));
		ASSERT_OK(pw_mkdir(e2p(&e, "other"), 0755));
		static char model[NIX_N]; /* 0: absent, else the file holds "v<n>" */
		memset(model, 0, sizeof(model));
		char p[256], q[256], v[16];
		uint64_t seed = 77 + k;
		int live = 0;
		for (int i = 0; i < NIX_N; i += 2) { /* half the names */
			XSNPRINTF(p, sizeof(p), "%s/d/name-%d", e.mnt, i);
			model[i] = (char)(1 + i % 100);
			XSNPRINTF(v, sizeof(v), "v%d", model[i]);
			pw_write_all(p, v, strlen(v));
		}
		nix_check(&e, model, &live);
		struct stat st;
		ASSERT_OK(pw_stat(e2p(&e, "d"), &st));
		off_t full = st.st_size;
		for (int step = 0; step < 1500; step++) {
			int a = (int)(nix_rng(&seed) % NIX_N), b = (int)(nix_rng(&seed) % NIX_N);
			XSNPRINTF(p, sizeof(p), "%s/d/name-%d", e.mnt, a);
			XSNPRINTF(q, sizeof(q), "%s/d/name-%d", e.mnt, b);
			switch (nix_rng(&seed) % 5) {
			case 0: /* unlink */
				if (model[a]) {
					ASSERT_OK(pw_unlink(p));
					model[a] = 0;
				} else {
					ASSERT_ERR(pw_unlink(p), ENOENT);
				}
				break;
			case 1: /* create, exclusive */
				if (model[a]) {
					ASSERT_ERR(pw_open(p, O_WRONLY | O_CREAT | O_EXCL, 0644), EEXIST);
				} else {
					model[a] = (char)(1 + step % 100);
					XSNPRINTF(v, sizeof(v), "v%d", model[a]);
					pw_write_all(p, v, strlen(v));
				}
				break;
			case 2: /* rename within the directory, over b if it exists */
				if (model[a] && a != b) {
					ASSERT_OK(pw_rename(p, q));
					model[b] = model[a];
					model[a] = 0;
				}
				break;
			default: { /* out to another directory and back under b */
				if (!model[a] || model[b])
					break;
				char o[256];
				XSNPRINTF(o, sizeof(o), "%s/other/t", e.mnt);
				ASSERT_OK(pw_rename(p, o));
				ASSERT_ERR(pw_stat(p, &st), ENOENT);
				ASSERT_OK(pw_rename(o, q));
				model[b] = model[a];
				if (a != b)
					model[a] = 0;
				break;
			}
			}
			if (step % 300 == 299)
				nix_check(&e, model, &live);
		}
		nix_check(&e, model, &live);
		/* the live names never outnumber the first half, so the space
		 * freed by unlinks was found again */
		ASSERT(live <= NIX_N / 2 + 60);
		ASSERT_OK(pw_stat(e2p(&e, "d"), &st));
		TLOG("  %u-byte blocks: %d names live, directory %lld bytes (%lld after the first half)",
		     block_sizes[k], live, (long long)st.st_size, (long long)full);
		ASSERT(st.st_size <= full + (off_t)block_sizes[k]);
		e2_umount_fsck(&e);
		e2_mount(&e, NULL);
		nix_check(&e, model, &live);
		e2_umount_fsck(&e);
	}
}

/* More inodes than the inode table's first size (it doubles as it
 * fills, inode.c): every one is found by lookups while cached, and sync
 * and unmount, which walk the table, write every one of them. */
TEST(ext2_inode_table_grows)
{
	struct e2 e;
	e2_make(&e, "itab", 1024, 32768);
	e2_mount(&e, NULL);
	enum { N = 3000 };
	char p[256], want[32], got[32];
	for (int k = 0; k < 10; k++) {
		XSNPRINTF(p, sizeof(p), "%s/d%d", e.mnt, k);
		ASSERT_OK(pw_mkdir(p, 0755));
	}
	for (int i = 0; i < N; i++) {
		XSNPRINTF(p, sizeof(p), "%s/d%d/f%d", e.mnt, i % 10, i);
		XSNPRINTF(want, sizeof(want), "file %d", i);
		pw_write_all(p, want, strlen(want));
	}
	for (int i = 0; i < N; i += 7) {
		XSNPRINTF(p, sizeof(p), "%s/d%d/f%d", e.mnt, i % 10, i);
		XSNPRINTF(want, sizeof(want), "file %d", i);
		pw_read_all(p, got, strlen(want));
		ASSERT_MEM_EQ(got, want, strlen(want));
	}
	ASSERT_OK(pw_sync());
	e2_umount_fsck(&e);
	e2_mount(&e, NULL);
	for (int i = 0; i < N; i++) {
		XSNPRINTF(p, sizeof(p), "%s/d%d/f%d", e.mnt, i % 10, i);
		XSNPRINTF(want, sizeof(want), "file %d", i);
		struct stat st;
		ASSERT_OK(pw_stat(p, &st));
		ASSERT_EQ((size_t)st.st_size, strlen(want));
		pw_read_all(p, got, strlen(want));
		ASSERT_MEM_EQ(got, want, strlen(want));
	}
	e2_umount_fsck(&e);
}

TEST(ext2_rmdir_unlink)
{
	for (size_t k = 0; k < PW_ARRAY_SIZE(block_sizes); k++) {
		struct e2 e;
		e2_make(&e, "rm", block_sizes[k], 8192);
		e2_mount(&e, NULL);
		struct statvfs before, after;
		ASSERT_OK(pw_mkdir(e2p(&e, "d"), 0755));
		ASSERT_OK(pw_mkdir(e2p(&e, "d/e"), 0755));
		char *buf = malloc(300000);
		fill_pattern(buf, 300000, 3);
		pw_write_all(e2p(&e, "d/e/f"), buf, 300000);
		ASSERT_ERR(pw_rmdir(e2p(&e, "d")), ENOTEMPTY);
		ASSERT_ERR(pw_rmdir(e2p(&e, "d/e")), ENOTEMPTY);
		ASSERT_ERR(pw_unlink(e2p(&e, "d/e")), EISDIR);
		ASSERT_OK(pw_unlink(e2p(&e, "d/e/f")));
		ASSERT_OK(pw_rmdir(e2p(&e, "d/e")));
		struct stat st;
		ASSERT_OK(pw_stat(e2p(&e, "d"), &st));
		ASSERT_EQ(st.st_nlink, 2);
		ASSERT_OK(pw_rmdir(e2p(&e, "d")));
		ASSERT_ERR(pw_stat(e2p(&e, "d"), &st), ENOENT);
		/* an unlinked file stays readable while open, and is freed after */
		pw_write_all(e2p(&e, "open"), buf, 300000);
		ASSERT_OK(pw_sync());
		int fd = pw_open(e2p(&e, "open"), O_RDONLY);
		ASSERT(fd >= 0);
		struct pw_statvfs_probe { int dummy; };
		(void)before, (void)after;
		ASSERT_OK(pw_unlink(e2p(&e, "open")));
		char got[100];
		ASSERT_EQ(pw_pread(fd, got, 100, 1000), 100);
		ASSERT_MEM_EQ(got, buf + 1000, 100);
		ASSERT_OK(pw_close(fd));
		e2_umount_fsck(&e);
		free(buf);
	}
}

TEST(ext2_rename)
{
	for (size_t k = 0; k < PW_ARRAY_SIZE(block_sizes); k++) {
		struct e2 e;
		e2_make(&e, "ren", block_sizes[k], 8192);
		e2_mount(&e, NULL);
		ASSERT_OK(pw_mkdir(e2p(&e, "a"), 0755));
		ASSERT_OK(pw_mkdir(e2p(&e, "b"), 0755));
		ASSERT_OK(pw_mkdir(e2p(&e, "a/sub"), 0755));
		pw_write_all(e2p(&e, "a/sub/file"), "hello", 5);
		pw_write_all(e2p(&e, "a/f1"), "one", 3);
		pw_write_all(e2p(&e, "b/f2"), "two", 3);
		/* a file across directories, replacing an existing file */
		ASSERT_OK(pw_rename(e2p(&e, "a/f1"), e2p(&e, "b/f2")));
		char got[8];
		pw_read_all(e2p(&e, "b/f2"), got, 3);
		ASSERT_MEM_EQ(got, "one", 3);
		struct stat st;
		ASSERT_ERR(pw_stat(e2p(&e, "a/f1"), &st), ENOENT);
		/* a directory across directories: ".." and link counts follow */
		ASSERT_OK(pw_rename(e2p(&e, "a/sub"), e2p(&e, "b/moved")));
		ASSERT_OK(pw_stat(e2p(&e, "a"), &st));
		ASSERT_EQ(st.st_nlink, 2);
		ASSERT_OK(pw_stat(e2p(&e, "b"), &st));
		ASSERT_EQ(st.st_nlink, 3);
		pw_read_all(e2p(&e, "b/moved/file"), got, 5);
		ASSERT_MEM_EQ(got, "hello", 5);
		/* a directory over an empty directory, and within one directory */
		ASSERT_OK(pw_mkdir(e2p(&e, "a/empty"), 0755));
		ASSERT_OK(pw_rename(e2p(&e, "b/moved"), e2p(&e, "a/empty")));
		ASSERT_OK(pw_rename(e2p(&e, "a/empty"), e2p(&e, "a/renamed")));
		ASSERT_OK(pw_stat(e2p(&e, "a"), &st));
		ASSERT_EQ(st.st_nlink, 3);
		ASSERT_OK(pw_stat(e2p(&e, "b"), &st));
		ASSERT_EQ(st.st_nlink, 2);
		/* over a non-empty directory */
		ASSERT_OK(pw_mkdir(e2p(&e, "b/full"), 0755));
		pw_write_all(e2p(&e, "b/full/x"), "x", 1);
		ASSERT_ERR(pw_rename(e2p(&e, "a/renamed"), e2p(&e, "b/full")), ENOTEMPTY);
		e2_umount_fsck(&e);
		ASSERT_EQ(e2_debugfs_cat(&e, "/a/renamed/file", got, sizeof(got)), 5);
		ASSERT_MEM_EQ(got, "hello", 5);
	}
}

/* ----------------------------------------------------------- truncate */

TEST(ext2_truncate)
{
	for (size_t k = 0; k < PW_ARRAY_SIZE(block_sizes); k++) {
		struct e2 e;
		unsigned bs = block_sizes[k];
		e2_make(&e, "trunc", bs, 32768);
		e2_mount(&e, NULL);
		size_t big = (12 + 256 + 300) * 1024 + 5;
		char *buf = malloc(big), *got = malloc(big);
		fill_pattern(buf, big, 5);
		pw_write_all(e2p(&e, "t"), buf, big);
		struct statvfs full;
		ASSERT_OK(pw_sync());
		struct stat st;
		ASSERT_OK(pw_stat(e2p(&e, "t"), &st));
		ASSERT_GE(st.st_blocks, (blkcnt_t)(big / 512));
		/* down into the middle of a block, then up again: zeroes */
		loff_t cuts[] = {100000 + 3, 12 * 1024 + 1, 5000, 1, 0};
		for (size_t c = 0; c < PW_ARRAY_SIZE(cuts); c++) {
			ASSERT_OK(pw_truncate(e2p(&e, "t"), cuts[c]));
			ASSERT_OK(pw_stat(e2p(&e, "t"), &st));
			ASSERT_EQ(st.st_size, cuts[c]);
			ASSERT_LE(st.st_blocks, (blkcnt_t)((cuts[c] + bs - 1) / bs * (bs / 512) + 4 * (bs / 512)));
		}
		ASSERT_OK(pw_stat(e2p(&e, "t"), &st));
		ASSERT_EQ(st.st_blocks, 0);
		pw_write_all(e2p(&e, "t"), buf, big);
		ASSERT_OK(pw_truncate(e2p(&e, "t"), 7777));
		ASSERT_OK(pw_truncate(e2p(&e, "t"), 300000));
		memset(buf + 7777, 0, big - 7777);
		pw_read_all(e2p(&e, "t"), got, 300000);
		ASSERT_MEM_EQ(got, buf, 300000);
		(void)full;
		e2_umount_fsck(&e);
		ASSERT_EQ(e2_debugfs_cat(&e, "/t", got, big), 300000);
		ASSERT_MEM_EQ(got, buf, 300000);
		free(buf);
		free(got);
	}
}

/* ---------------------------------------------------------- full disk */

TEST(ext2_enospc)
{
	for (size_t k = 0; k < PW_ARRAY_SIZE(block_sizes); k++) {
		struct e2 e;
		e2_make(&e, "full", block_sizes[k], 2048);
		e2_mount(&e, NULL);
		char *buf = malloc(1 << 20);
		fill_pattern(buf, 1 << 20, 9);
		int fd = pw_open(e2p(&e, "big"), O_CREAT | O_WRONLY, 0644);
		ASSERT(fd >= 0);
		ssize_t w;
		size_t total = 0;
		while ((w = pw_write(fd, buf, 1 << 20)) > 0)
			total += (size_t)w;
		ASSERT_EQ(w, -1);
		ASSERT_EQ(errno, ENOSPC);
		ASSERT_GT(total, 1000000);
		ASSERT_OK(pw_close(fd));
		struct statvfs sv;
		/* more files until there is no room for anything */
		char p[128];
		int made = 0;
		for (int f = 0; f < 100; f++) {
			XSNPRINTF(p, sizeof(p), "%s/small%d", e.mnt, f);
			fd = pw_open(p, O_CREAT | O_WRONLY, 0644);
			if (fd < 0)
				break;
			made++;
			pw_write(fd, buf, 5000);
			pw_close(fd);
		}
		(void)sv;
		(void)made;
		struct stat st;
		ASSERT_OK(pw_stat(e2p(&e, "big"), &st));
		ASSERT_EQ((size_t)st.st_size, total);
		e2_umount_fsck(&e);
		/* and free space again after deleting */
		e2_mount(&e, NULL);
		ASSERT_OK(pw_unlink(e2p(&e, "big")));
		pw_write_all(e2p(&e, "after"), buf, 100000);
		e2_umount_fsck(&e);
		free(buf);
	}
}

/* ---------------------------------------------------------- corruption */

/* Overwrite bytes of the image at off. */
static void
patch(struct e2 *e, off_t off, const void *bytes, size_t n)
{
	int fd = open(e->img, O_WRONLY);
	ASSERT(fd >= 0);
	ASSERT_EQ(pwrite(fd, bytes, n, off), (ssize_t)n);
	close(fd);
}

static void
patch32(struct e2 *e, off_t off, uint32_t v)
{
	patch(e, off, &v, 4); /* the test machines are little-endian, as ext2 */
}

/* The first block of name's data, from debugfs. */
static long
first_block(struct e2 *e, const char *name)
{
	char out[4096];
	ASSERT_EQ(sh(out, sizeof(out), "debugfs -R 'blocks %s' '%s' 2>/dev/null", name, e->img), 0);
	return atol(out);
}

TEST(ext2_corrupt_superblock)
{
	struct {
		off_t off;
		uint32_t val;
		int err;
	} cases[] = {
		{1024 + 56, 0x1234, EINVAL},       /* s_magic (with s_state) */
		{1024 + 24, 7, EINVAL},            /* s_log_block_size */
		{1024 + 32, 0, EINVAL},            /* s_blocks_per_group */
		{1024 + 40, 0, EINVAL},            /* s_inodes_per_group */
		{1024 + 0, 12345, EINVAL},         /* s_inodes_count */
		{1024 + 4, 0x7FFFFFF, EINVAL},     /* s_blocks_count past the device */
		{1024 + 20, 5, EINVAL},            /* s_first_data_block */
		{1024 + 84, 3, EINVAL},            /* s_first_ino */
		{1024 + 88, 100, EINVAL},          /* s_inode_size (with s_block_group_nr) */
		{1024 + 96, 0x40, EINVAL},         /* incompat: extents */
		{1024 + 76, 9, EINVAL},            /* s_rev_level */
	};
	for (size_t c = 0; c < PW_ARRAY_SIZE(cases); c++) {
		struct e2 e;
		e2_make(&e, "badsb", 1024, 2048);
		patch32(&e, cases[c].off, cases[c].val);
		ASSERT_ERR(e2_try_mount(&e, NULL), cases[c].err);
	}
	/* a group descriptor whose inode table lies outside its group */
	struct e2 e;
	e2_make(&e, "badgd", 1024, 8192);
	e2_debugfs(&e, "set_bg 0 inode_table 99999");
	ASSERT_ERR(e2_try_mount(&e, NULL), EUCLEAN);
	/* not an image at all */
	struct e2 z;
	e2_make(&z, "zero", 1024, 2048);
	char zeros[2048] = {0};
	patch(&z, 0, zeros, sizeof(zeros));
	ASSERT_ERR(e2_try_mount(&z, NULL), EINVAL);
	ASSERT_ERR(pw_mount("ext2", "/nonexistent/image", z.mnt, NULL), ENOENT);
}

TEST(ext2_corrupt_inodes_and_dirs)
{
	for (size_t k = 0; k < PW_ARRAY_SIZE(block_sizes); k++) {
		struct e2 e;
		unsigned bs = block_sizes[k];
		e2_make(&e, "badino", bs, 8192);
		char host[600];
		XSNPRINTF(host, sizeof(host), "%s/data", test_tmpdir());
		char *buf = malloc(100000);
		fill_pattern(buf, 100000, 1);
		write_host_file(host, buf, 100000);
		const char *files[] = {"nolinks", "farblock", "metablock", "badind", "ok"};
		for (size_t f = 0; f < PW_ARRAY_SIZE(files); f++)
			e2_debugfs_write(&e, host, files[f]);
		e2_debugfs(&e, "mkdir d");
		e2_debugfs(&e, "mkdir d2");
		e2_debugfs(&e, "mkdir d3");
		e2_debugfs_write(&e, host, "d3/victim");
		e2_debugfs(&e, "sif nolinks links_count 0");
		e2_debugfs(&e, "sif farblock block[11] 99999999");
		e2_debugfs(&e, "sif metablock block[0] 3");
		e2_debugfs(&e, "sif badind block[IND] 99999999");
		e2_debugfs(&e, "sif d size 1000");
		/* found by the fuzzer: a size past anything a file can hold */
		e2_debugfs(&e, "sif ok size_hi 0xA1794F28");
		e2_debugfs_write(&e, host, "fine");
		/* d2's block: the entry after ".." gets a broken rec_len */
		long d2 = first_block(&e, "d2");
		ASSERT_GT(d2, 0);
		uint16_t bad = 6;
		patch(&e, (off_t)d2 * bs + 12 + 4, &bad, 2);
		/* d3's entry for "victim" gets an inode number out of range:
		 * find it by its name in d3's block */
		long root = first_block(&e, "d3");
		char *blk = malloc(bs);
		int fd = open(e.img, O_RDONLY);
		ASSERT_EQ(pread(fd, blk, bs, (off_t)root * bs), (ssize_t)bs);
		close(fd);
		char *at = memmem(blk, bs, "victim", 6);
		ASSERT(at != NULL);
		patch32(&e, (off_t)root * bs + (at - 8 - blk), 0x7FFFFFF0);
		free(blk);

		e2_mount(&e, NULL);
		struct stat st;
		char got[100];
		ASSERT_ERR(pw_stat(e2p(&e, "nolinks"), &st), EUCLEAN);
		ASSERT_ERR(pw_stat(e2p(&e, "d3/victim"), &st), EUCLEAN);
		ASSERT_ERR(pw_stat(e2p(&e, "d3/other"), &st), EUCLEAN);
		ASSERT_ERR(pw_stat(e2p(&e, "d"), &st), EUCLEAN);
		ASSERT_OK(pw_stat(e2p(&e, "d2"), &st));
		ASSERT(pw_opendir(e2p(&e, "d2")) == NULL);
		ASSERT_EQ(errno, EUCLEAN);
		ASSERT_ERR(pw_stat(e2p(&e, "d2/x"), &st), EUCLEAN);
		int f1 = pw_open(e2p(&e, "farblock"), O_RDONLY);
		ASSERT(f1 >= 0);
		ASSERT_EQ(pw_pread(f1, got, 10, 0), 10);  /* block 0 is fine */
		ASSERT_ERR(pw_pread(f1, got, 10, 11 * bs), EIO);
		pw_close(f1);
		f1 = pw_open(e2p(&e, "metablock"), O_RDONLY);
		ASSERT_ERR(pw_pread(f1, got, 10, 0), EIO);
		pw_close(f1);
		f1 = pw_open(e2p(&e, "badind"), O_RDONLY);
		ASSERT_ERR(pw_pread(f1, got, 10, 12 * bs), EIO);
		pw_close(f1);
		ASSERT_ERR(pw_stat(e2p(&e, "ok"), &st), EUCLEAN);
		pw_read_all(e2p(&e, "fine"), buf, 100000);
		ASSERT_OK(pw_umount(e.mnt));
		/* the superblock now says e2fsck has work to do */
		char out[256];
		ASSERT_EQ(sh(out, sizeof(out), "dumpe2fs -h '%s' 2>/dev/null | grep '^Filesystem state'",
		             e.img), 0);
		ASSERT(strstr(out, "errors") != NULL);
		free(buf);
	}
}

/* ------------------------------------------------- options and features */

TEST(ext2_ro_option)
{
	struct e2 e;
	e2_make(&e, "ro", 1024, 4096);
	e2_debugfs(&e, "mkdir d");
	char host[600];
	XSNPRINTF(host, sizeof(host), "%s/data", test_tmpdir());
	write_host_file(host, "data", 4);
	e2_debugfs_write(&e, host, "f");
	e2_mount(&e, "ro");
	ASSERT_ERR(pw_open(e2p(&e, "f"), O_WRONLY), EROFS);
	ASSERT_ERR(pw_unlink(e2p(&e, "f")), EROFS);
	ASSERT_ERR(pw_rename(e2p(&e, "f"), e2p(&e, "g")), EROFS);
	ASSERT_ERR(pw_open(e2p(&e, "new"), O_CREAT | O_WRONLY, 0644), EROFS);
	ASSERT_ERR(pw_mkdir(e2p(&e, "d/x"), 0755), EROFS);
	ASSERT_ERR(pw_rmdir(e2p(&e, "d")), EROFS);
	ASSERT_ERR(pw_truncate(e2p(&e, "f"), 0), EROFS);
	struct stat st;
	ASSERT_OK(pw_stat(e2p(&e, "d"), &st));
	struct stat before;
	ASSERT_OK(stat(e.img, &before));
	ASSERT_OK(pw_umount(e.mnt));
	char out[4096];
	ASSERT_EQ(sh(out, sizeof(out), "dumpe2fs -h '%s' 2>/dev/null | grep -c 'Mount count: *0'", e.img), 0);
	e2_fsck(&e);
}

TEST(ext2_ro_compat_forces_ro)
{
	struct e2 e;
	e2_make(&e, "rocompat", 1024, 4096);
	/* a read-only-compatible feature we do not know: huge_file */
	e2_debugfs(&e, "feature huge_file");
	e2_mount(&e, NULL);
	ASSERT_ERR(pw_open(e2p(&e, "new"), O_CREAT | O_WRONLY, 0644), EROFS);
	ASSERT_ERR(pw_mkdir(e2p(&e, "x"), 0755), EROFS);
	ASSERT_OK(pw_umount(e.mnt));
}

TEST(ext2_legacy_aops)
{
	for (size_t k = 0; k < PW_ARRAY_SIZE(block_sizes); k++) {
		struct e2 e;
		e2_make(&e, "legacy", block_sizes[k], 16384);
		e2_mount(&e, "legacy_aops");
		size_t n = 300001;
		char *buf = malloc(n), *got = malloc(n);
		fill_pattern(buf, n, 77);
		pw_write_all(e2p(&e, "f"), buf, n);
		/* unaligned overwrites inside and past EOF */
		int fd = pw_open(e2p(&e, "f"), O_RDWR);
		ASSERT_EQ(pw_pwrite(fd, "XYZ", 3, 4095), 3);
		memcpy(buf + 4095, "XYZ", 3);
		ASSERT_EQ(pw_pwrite(fd, "END", 3, (off_t)n), 3);
		pw_close(fd);
		char *want = malloc(n + 3);
		memcpy(want, buf, n);
		memcpy(want + n, "END", 3);
		char *all = malloc(n + 10);
		pw_read_all(e2p(&e, "f"), all, n + 3);
		ASSERT_MEM_EQ(all, want, n + 3);
		e2_umount_fsck(&e);
		memset(all, 0, n + 10);
		ASSERT_EQ(e2_debugfs_cat(&e, "/f", all, n + 10), n + 3);
		ASSERT_MEM_EQ(all, want, n + 3);
		free(buf), free(got), free(want), free(all);
	}
}

TEST(ext2_dir_index_directory)
{
	struct e2 e;
	e2_make(&e, "htree", 1024, 8192);
	e2_mount(&e, NULL);
	ASSERT_OK(pw_mkdir(e2p(&e, "big"), 0755));
	char p[256];
	for (int f = 0; f < 300; f++) {
		XSNPRINTF(p, sizeof(p), "%s/big/entry-with-a-long-name-%03d", e.mnt, f);
		pw_write_all(p, "z", 1);
	}
	e2_umount_fsck(&e);
	/* let e2fsck build a hash index for it */
	char out[8192];
	sh(out, sizeof(out), "e2fsck -fyD '%s' 2>&1", e.img);
	ASSERT_EQ(sh(out, sizeof(out), "debugfs -R 'stat /big' '%s' 2>/dev/null", e.img), 0);
	ASSERT(strstr(out, "Flags: 0x1000") != NULL);
	e2_fsck(&e);
	e2_mount(&e, NULL);
	for (int f = 0; f < 300; f += 3) {
		XSNPRINTF(p, sizeof(p), "%s/big/entry-with-a-long-name-%03d", e.mnt, f);
		struct stat st;
		ASSERT_OK(pw_stat(p, &st));
		ASSERT_OK(pw_unlink(p));
	}
	XSNPRINTF(p, sizeof(p), "%s/big/added", e.mnt);
	pw_write_all(p, "added", 5);
	PW_DIR *d = pw_opendir(e2p(&e, "big"));
	int n = 0;
	while (pw_readdir(d))
		n++;
	pw_closedir(d);
	ASSERT_EQ(n, 2 + 200 + 1);
	e2_umount_fsck(&e);
	ASSERT_EQ(sh(out, sizeof(out), "debugfs -R 'stat /big' '%s' 2>/dev/null", e.img), 0);
	ASSERT(strstr(out, "Flags: 0x0") != NULL);
}

/* ---------------------------------------------------------------- mmap */

TEST(ext2_mmap_write_holes)
{
	for (size_t k = 0; k < PW_ARRAY_SIZE(block_sizes); k++) {
		struct e2 e;
		e2_make(&e, "mmap", block_sizes[k], 16384);
		e2_mount(&e, NULL);
		size_t n = 10 * PG + 123;
		int fd = pw_open(e2p(&e, "m"), O_CREAT | O_RDWR, 0644);
		ASSERT(fd >= 0);
		ASSERT_OK(pw_ftruncate(fd, (off_t)n));
		char *map = pw_mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		ASSERT(map != MAP_FAILED);
		char *want = calloc(1, n);
		for (size_t off = 0; off < n; off += 3 * PG + 100) {
			map[off] = 'A' + (char)(off % 26);
			want[off] = map[off];
		}
		map[n - 1] = 'Z';
		want[n - 1] = 'Z';
		ASSERT_OK(pw_msync(map, n, MS_SYNC));
		ASSERT_OK(pw_munmap(map, n));
		ASSERT_OK(pw_close(fd));
		char *got = malloc(n);
		pw_read_all(e2p(&e, "m"), got, n);
		ASSERT_MEM_EQ(got, want, n);
		e2_umount_fsck(&e);
		ASSERT_EQ(e2_debugfs_cat(&e, "/m", got, n), n);
		ASSERT_MEM_EQ(got, want, n);
		free(want);
		free(got);
	}
}

TEST(ext2_fsync_and_stat)
{
	struct e2 e;
	e2_make(&e, "fsync", 2048, 8192);
	e2_mount(&e, NULL);
	int fd = pw_open(e2p(&e, "f"), O_CREAT | O_RDWR, 0600);
	ASSERT(fd >= 0);
	char buf[5000];
	fill_pattern(buf, sizeof(buf), 4);
	ASSERT_EQ(pw_write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	ASSERT_OK(pw_fsync(fd));
	/* the image has the data and the inode now, while still mounted */
	char got[6000];
	ASSERT_EQ(e2_debugfs_cat(&e, "/f", got, sizeof(got)), sizeof(buf));
	ASSERT_MEM_EQ(got, buf, sizeof(buf));
	struct stat st;
	ASSERT_OK(pw_fstat(fd, &st));
	ASSERT_EQ(st.st_blocks, 3 * 2048 / 512);
	ASSERT_EQ(st.st_mode, S_IFREG | 0600);
	ASSERT_EQ(st.st_uid, geteuid());
	ASSERT_OK(pw_close(fd));
	struct pw_iattr_probe { int unused; };
	e2_umount_fsck(&e);
	char out[4096];
	ASSERT_EQ(sh(out, sizeof(out), "debugfs -R 'stat /f' '%s' 2>/dev/null", e.img), 0);
	ASSERT(strstr(out, "Mode:  0600") != NULL);
	ASSERT(strstr(out, "Size: 5000") != NULL);
}

/* ------------------------------------------ links, symlinks, xattrs */

TEST(ext2_links_symlinks_xattrs)
{
	for (size_t k = 0; k < PW_ARRAY_SIZE(block_sizes); k++) {
		struct e2 e;
		e2_make(&e, "links", block_sizes[k], 8192);
		char host[600];
		XSNPRINTF(host, sizeof(host), "%s/data", test_tmpdir());
		write_host_file(host, "linked data", 11);
		e2_debugfs_write(&e, host, "f");
		/* a second name for f: debugfs ln does not count links */
		e2_debugfs(&e, "ln f g");
		e2_debugfs(&e, "sif f links_count 2");
		e2_debugfs(&e, "symlink fast /short/target");
		e2_debugfs(&e, "symlink slow /a/very/long/target/that/does/not/fit/in/the/"
		               "inode/itself/because/it/is/longer/than/sixty/bytes");
		/* an extended attribute too large for the inode: a block of its own */
		char val[600];
		memset(val, 'v', sizeof(val) - 1);
		val[sizeof(val) - 1] = 0;
		XSNPRINTF(host, sizeof(host), "%s/val", test_tmpdir());
		write_host_file(host, val, sizeof(val) - 1);
		e2_debugfs_write(&e, host, "x");
		char req[800];
		XSNPRINTF(req, sizeof(req), "ea_set -f %s x user.big", host);
		e2_debugfs(&e, req);
		e2_fsck(&e);
		e2_mount(&e, NULL);
		struct stat st;
		ASSERT_OK(pw_stat(e2p(&e, "g"), &st));
		ASSERT_EQ(st.st_nlink, 2);
		ASSERT_OK(pw_lstat(e2p(&e, "slow"), &st));
		ASSERT(S_ISLNK(st.st_mode));
		ASSERT_GT(st.st_blocks, 0);
		ASSERT_OK(pw_lstat(e2p(&e, "fast"), &st));
		ASSERT_EQ(st.st_blocks, 0);
		char t[128];
		ASSERT_EQ(pw_readlink(e2p(&e, "fast"), t, sizeof(t)), 13);
		ASSERT_MEM_EQ(t, "/short/target", 13);
		const char *slow = "/a/very/long/target/that/does/not/fit/in/the/"
		                   "inode/itself/because/it/is/longer/than/sixty/bytes";
		ASSERT_EQ(pw_readlink(e2p(&e, "slow"), t, sizeof(t)), (int64_t)strlen(slow));
		ASSERT_MEM_EQ(t, slow, strlen(slow));
		ASSERT_OK(pw_unlink(e2p(&e, "g")));
		ASSERT_OK(pw_stat(e2p(&e, "f"), &st));
		ASSERT_EQ(st.st_nlink, 1);
		char got[16];
		pw_read_all(e2p(&e, "f"), got, 11);
		ASSERT_MEM_EQ(got, "linked data", 11);
		ASSERT_OK(pw_unlink(e2p(&e, "fast")));
		ASSERT_OK(pw_unlink(e2p(&e, "slow")));
		ASSERT_OK(pw_unlink(e2p(&e, "x")));
		e2_umount_fsck(&e);
	}
}

/* ------------------------------------------------------ statfs, inodes */

static int
e2_statfs(struct e2 *e, struct statvfs *sv)
{
	int fd = pw_open(e->mnt, O_RDONLY | O_DIRECTORY);
	ASSERT(fd >= 0);
	struct file *f = pw__fget(fd);
	struct super_block *sb = f->f_inode->i_sb;
	int err = sb->s_op->statfs(sb, sv);
	pw__fput(f);
	pw_close(fd);
	return err;
}

/* A number from dumpe2fs -h, by its label. */
static long
dumpe2fs_num(struct e2 *e, const char *label)
{
	char out[256];
	ASSERT_EQ(sh(out, sizeof(out), "dumpe2fs -h '%s' 2>/dev/null | sed -n 's/^%s: *//p'",
	             e->img, label), 0);
	return atol(out);
}

TEST(ext2_statfs_and_inode_enospc)
{
	struct e2 e;
	e2_make(&e, "inodes", 1024, 4096);
	ASSERT_EQ(sh(NULL, 0, "mke2fs -q -F -t ext2 -b 1024 -N 32 '%s' 4096 >/dev/null 2>&1",
	             e.img), 0);
	long free_inodes = dumpe2fs_num(&e, "Free inodes");
	e2_mount(&e, NULL);
	struct statvfs sv;
	ASSERT_OK(e2_statfs(&e, &sv));
	ASSERT_EQ(sv.f_bsize, 1024);
	ASSERT_EQ(sv.f_ffree, free_inodes);
	ASSERT_EQ(sv.f_namemax, 255);
	unsigned long bfree = sv.f_bfree;
	char p[128];
	int made = 0;
	for (;; made++) {
		XSNPRINTF(p, sizeof(p), "%s/i%d", e.mnt, made);
		int fd = pw_open(p, O_CREAT | O_WRONLY, 0644);
		if (fd < 0) {
			ASSERT_EQ(errno, ENOSPC);
			break;
		}
		ASSERT_EQ(pw_write(fd, "1234", 4), 4);
		pw_close(fd);
	}
	ASSERT_EQ(made, free_inodes);
	ASSERT_OK(e2_statfs(&e, &sv));
	ASSERT_EQ(sv.f_ffree, 0);
	ASSERT_EQ(sv.f_bfree, bfree - (unsigned long)made);
	ASSERT_OK(pw_unlink(e2p(&e, "i3")));
	ASSERT_OK(e2_statfs(&e, &sv));
	ASSERT_EQ(sv.f_ffree, 1);
	e2_umount_fsck(&e);
	ASSERT_EQ(dumpe2fs_num(&e, "Free inodes"), 1);
	ASSERT_EQ(dumpe2fs_num(&e, "Free blocks"), (long)bfree - made + 1);
}

/* ------------------------------------------------- big and far files */

TEST(ext2_triple_indirect_and_large_file)
{
	for (size_t k = 0; k < PW_ARRAY_SIZE(block_sizes); k++) {
		struct e2 e;
		unsigned bs = block_sizes[k];
		e2_make(&e, "far", bs, 16384);
		e2_mount(&e, NULL);
		int fd = pw_open(e2p(&e, "far"), O_CREAT | O_RDWR, 0644);
		ASSERT(fd >= 0);
		/* at 1 KiB blocks, 100 MiB is past the double indirect tree */
		off_t offs[] = {5, 100 << 20, (off_t)5 << 30};
		for (size_t o = 0; o < PW_ARRAY_SIZE(offs); o++)
			ASSERT_EQ(pw_pwrite(fd, "far away", 8, offs[o]), 8);
		ASSERT_ERR(pw_pwrite(fd, "x", 1, (off_t)1 << 50), EFBIG);
		ASSERT_OK(pw_close(fd));
		e2_umount_fsck(&e);
		e2_mount(&e, NULL);
		fd = pw_open(e2p(&e, "far"), O_RDWR);
		char got[16];
		for (size_t o = 0; o < PW_ARRAY_SIZE(offs); o++) {
			ASSERT_EQ(pw_pread(fd, got, 9, offs[o] - 1), 9);
			ASSERT_MEM_EQ(got, "\0far away", 9);
		}
		struct stat st;
		ASSERT_OK(pw_fstat(fd, &st));
		ASSERT_EQ(st.st_size, ((off_t)5 << 30) + 8);
		/* and cut it back to the first block: every tree goes */
		ASSERT_OK(pw_ftruncate(fd, 13));
		ASSERT_OK(pw_fstat(fd, &st));
		ASSERT_EQ(st.st_blocks, bs / 512);
		ASSERT_OK(pw_close(fd));
		e2_umount_fsck(&e);
	}
}

TEST(ext2_inode_cache_pruning)
{
	struct e2 e;
	e2_make(&e, "prune", 1024, 16384);
	e2_mount(&e, NULL);
	char p[128], d[32];
	for (int f = 0; f < 1500; f++) {
		XSNPRINTF(p, sizeof(p), "%s/p%d", e.mnt, f);
		XSNPRINTF(d, sizeof(d), "%d", f);
		pw_write_all(p, d, strlen(d));
	}
	for (int f = 0; f < 1500; f += 7) {
		XSNPRINTF(p, sizeof(p), "%s/p%d", e.mnt, f);
		XSNPRINTF(d, sizeof(d), "%d", f);
		char got[32];
		pw_read_all(p, got, strlen(d));
		ASSERT_MEM_EQ(got, d, strlen(d));
	}
	e2_umount_fsck(&e);
}

/* ---------------------------------------------------------- threads */

struct e2_worker {
	struct e2 *e;
	int id;
	_Atomic bool *stop;
};

static void *
e2_writer(void *arg)
{
	struct e2_worker *w = arg;
	char d[128], p[160], q[160];
	XSNPRINTF(d, sizeof(d), "%s/w%d", w->e->mnt, w->id);
	ASSERT_OK(pw_mkdir(d, 0755));
	char *buf = malloc(20000);
	for (int f = 0; f < 60; f++) {
		size_t n = (size_t)(f * 997 + w->id * 131) % 20000;
		fill_pattern(buf, n, (unsigned)(f + w->id));
		XSNPRINTF(p, sizeof(p), "%s/f%d", d, f);
		pw_write_all(p, buf, n);
		if (f % 3 == 0) {
			XSNPRINTF(q, sizeof(q), "%s/renamed%d", d, f);
			ASSERT_OK(pw_rename(p, q));
		} else if (f % 3 == 1) {
			ASSERT_OK(pw_unlink(p));
		}
	}
	for (int f = 2; f < 60; f += 3) {
		size_t n = (size_t)(f * 997 + w->id * 131) % 20000;
		fill_pattern(buf, n, (unsigned)(f + w->id));
		char *got = malloc(n + 1);
		XSNPRINTF(p, sizeof(p), "%s/f%d", d, f);
		pw_read_all(p, got, n);
		ASSERT_MEM_EQ(got, buf, n);
		free(got);
	}
	free(buf);
	return NULL;
}

static void *
e2_reader(void *arg)
{
	struct e2_worker *w = arg;
	char d[128];
	while (!atomic_load(w->stop)) {
		for (int k = 0; k < 4; k++) {
			XSNPRINTF(d, sizeof(d), "%s/w%d", w->e->mnt, k);
			PW_DIR *dir = pw_opendir(d);
			if (!dir)
				continue;
			struct dirent *de;
			while ((de = pw_readdir(dir)) != NULL) {
				/* open, not stat: the VFS's fill_stat reads i_blocks
				 * and the times with no lock (reported), which TSan
				 * flags against the writers */
				char p[400];
				XSNPRINTF(p, sizeof(p), "%s/%s", d, de->d_name);
				int fd = pw_open(p, O_RDONLY);
				ASSERT(fd >= 0 || errno == ENOENT);
				if (fd >= 0)
					pw_close(fd);
			}
			pw_closedir(dir);
		}
	}
	return NULL;
}

TEST_THREADED(ext2_threads)
{
	struct e2 e;
	e2_make(&e, "threads", 1024, 32768);
	e2_mount(&e, NULL);
	_Atomic bool stop = false;
	struct e2_worker ws[5];
	pthread_t th[5];
	for (int k = 0; k < 5; k++) {
		ws[k] = (struct e2_worker){&e, k, &stop};
		ASSERT_OK(pthread_create(&th[k], NULL, k < 4 ? e2_writer : e2_reader, &ws[k]));
	}
	for (int k = 0; k < 4; k++)
		ASSERT_OK(pthread_join(th[k], NULL));
	atomic_store(&stop, true);
	ASSERT_OK(pthread_join(th[4], NULL));
	e2_umount_fsck(&e);
}

TEST(ext2_overwrite_updates_mtime)
{
	struct e2 e;
	e2_make(&e, "mtime", 4096, 4096);
	e2_mount(&e, NULL);
	pw_write_all(e2p(&e, "f"), "0123456789", 10);
	ASSERT_OK(pw_umount(e.mnt));
	sleep(1);
	e2_mount(&e, NULL);
	int fd = pw_open(e2p(&e, "f"), O_WRONLY);
	ASSERT_EQ(pw_pwrite(fd, "x", 1, 3), 1);
	struct stat st;
	ASSERT_OK(pw_fstat(fd, &st));
	ASSERT_OK(pw_close(fd));
	e2_umount_fsck(&e);
	char out[4096], want[32];
	ASSERT_EQ(sh(out, sizeof(out), "debugfs -R 'stat /f' '%s' 2>/dev/null", e.img), 0);
	XSNPRINTF(want, sizeof(want), "mtime: 0x%08x", (unsigned)st.st_mtime);
	if (!strstr(out, want))
		fprintf(stderr, "want %s in:\n%s\n", want, out);
	ASSERT(strstr(out, want) != NULL);
}

/* ------------------------------------------------- write errors */

static struct block_device *
e2_bdev(int fd)
{
	struct file *f = pw__fget(fd);
	ASSERT(f != NULL);
	struct block_device *bdev = f->f_inode->i_sb->s_bdev;
	pw__fput(f);
	return bdev;
}

/* Wait until the background writeback thread has written back every
 * dirty page (the test set a short expiry age). */
static void
wait_no_dirty(void)
{
	for (int k = 0; k < 400; k++) {
		struct pw_stats s;
		pw_get_stats(&s);
		if (s.dirty_pages == 0 && s.writeback_pages == 0)
			return;
		usleep(10000);
	}
	fprintf(stderr, "dirty pages never written back\n");
	abort();
}

/* The image byte where inode `name`'s on-disk record lies (debugfs imap). */
static int64_t
inode_record_at(struct e2 *e, const char *name)
{
	char out[4096];
	ASSERT_EQ(sh(out, sizeof(out), "debugfs -R 'imap %s' '%s' 2>/dev/null", name, e->img), 0);
	const char *at = strstr(out, "located at block ");
	ASSERT(at != NULL);
	unsigned long block = 0, off = 0;
	ASSERT_EQ(sscanf(at, "located at block %lu, offset 0x%lx", &block, &off), 2);
	return (int64_t)block * e->bs + (int64_t)off;
}

/*
 * One write of a file's data block fails, in fsync's own writeback or in
 * the background thread's: fsync reports EIO once to every descriptor
 * open when it happened, never to one opened after, and a rewrite makes
 * the data durable.  One write of its inode-table block fails in the
 * background: the block stays dirty and is written again, so fsync finds
 * nothing wrong and the image stays clean (a metadata block left clean
 * after a failed write would never be rewritten: e2fsck would find the
 * grown file's blocks allocated in the bitmap but not in the inode).
 */
TEST(ext2_write_errors_reported_by_fsync)
{
	/* short expiry: the background thread writes dirty pages soon */
	setenv("PAGEWRIGHT_DIRTY_EXPIRE_MS", "20", 1);
	setenv("PAGEWRIGHT_WRITEBACK_MS", "20", 1);
	enum { LEN = 64 * 1024 };
	unsigned char *a = xmalloc(2 * LEN), *b = xmalloc(LEN), *got = xmalloc(2 * LEN);
	pat_fill(a, 2 * LEN, 41, 0);
	pat_fill(b, LEN, 42, 0);
	for (size_t bi = 0; bi < PW_ARRAY_SIZE(block_sizes); bi++) {
		struct e2 e;
		e2_make(&e, "werr", block_sizes[bi], 8192);
		e2_mount(&e, NULL);
		int fds[3];
		fds[0] = pw_open(e2p(&e, "f"), O_RDWR | O_CREAT, 0644);
		ASSERT_GE(fds[0], 0);
		write_exact(fds[0], a, LEN, 0);
		ASSERT_OK(pw_fsync(fds[0]));
		fds[1] = pw_open(e2p(&e, "f"), O_RDWR);
		fds[2] = pw_open(e2p(&e, "f"), O_RDONLY);
		ASSERT(fds[1] >= 0 && fds[2] >= 0);
		struct block_device *bdev = e2_bdev(fds[0]);
		int64_t data_at = first_block(&e, "/f") * (int64_t)e.bs + 100;

		for (int background = 0; background < 2; background++) {
			TLOG("%u-byte blocks: %s write of a data block fails", e.bs,
			     background ? "the background" : "fsync's");
			write_exact(fds[1], b, LEN, 0);
			atomic_store(&bdev->bd_fail_write_at, data_at);
			if (background)
				wait_no_dirty();
			ASSERT_ERR(pw_fsync(fds[0]), EIO);
			ASSERT_EQ(atomic_load(&bdev->bd_fail_write_at), -1); /* it was that write */
			ASSERT_OK(pw_fsync(fds[0])); /* once per descriptor */
			ASSERT_ERR(pw_fsync(fds[1]), EIO);
			ASSERT_ERR(pw_fdatasync(fds[2]), EIO);
			ASSERT_OK(pw_fsync(fds[2]));
			int late = pw_open(e2p(&e, "f"), O_RDONLY);
			ASSERT_OK(pw_fsync(late)); /* opened after the error */
			ASSERT_OK(pw_close(late));
			/* a rewrite makes it whole */
			write_exact(fds[1], b, LEN, 0);
			ASSERT_OK(pw_fsync(fds[1]));
			ASSERT_OK(pw_fsync(fds[0]));
			ASSERT_OK(pw__test_evict_all(fds[0]));
			read_exact(fds[0], got, LEN, 0);
			ASSERT_MEM_EQ(got, b, LEN);
			write_exact(fds[1], a, LEN, 0);
			ASSERT_OK(pw_fsync(fds[1]));
		}

		TLOG("%u-byte blocks: the background write of the inode table block fails", e.bs);
		int64_t inode_at = inode_record_at(&e, "/f");
		atomic_store(&bdev->bd_fail_write_at, inode_at);
		write_exact(fds[1], a + LEN, LEN, LEN); /* grows: new blocks, new size */
		wait_no_dirty();
		ASSERT_EQ(atomic_load(&bdev->bd_fail_write_at), -1);
		for (int k = 0; k < 3; k++)
			ASSERT_OK(pw_close(fds[k]));
		/* no fsync: only the retried write can fix the disk */
		e2_umount_fsck(&e);
		ASSERT_EQ((size_t)2 * LEN, e2_debugfs_cat(&e, "/f", (char *)got, 2 * LEN));
		ASSERT_MEM_EQ(got, a, 2 * LEN);
	}
	free(a);
	free(b);
	free(got);
}

/* -------------------------------------- symlinks, links and attributes */

/* A field of `debugfs -R 'stat path'`: the number after label, in base. */
static long long
debugfs_stat_num(struct e2 *e, const char *path, const char *label, int base)
{
	static char out[8192];
	ASSERT_EQ(sh(out, sizeof(out), "debugfs -R 'stat %s' '%s' 2>/dev/null", path, e->img), 0);
	const char *p = strstr(out, label);
	if (!p)
		fprintf(stderr, "no \"%s\" in debugfs stat %s:\n%s\n", label, path, out);
	ASSERT(p != NULL);
	return strtoll(p + strlen(label), NULL, base);
}

static bool
debugfs_stat_has(struct e2 *e, const char *path, const char *text)
{
	static char out[8192];
	ASSERT_EQ(sh(out, sizeof(out), "debugfs -R 'stat %s' '%s' 2>/dev/null", path, e->img), 0);
	if (!strstr(out, text))
		fprintf(stderr, "no \"%s\" in debugfs stat %s:\n%s\n", text, path, out);
	return strstr(out, text) != NULL;
}

/* A relative target of exactly len bytes that leads to data/f.txt:
 * "./" steps and slashes in front of it. */
static char *
link_target(size_t len)
{
	const char *tail = "data/f.txt";
	size_t tl = strlen(tail);
	ASSERT_GE(len, tl);
	char *t = xmalloc(len + 1);
	size_t k = 0;
	while (len - tl - k >= 2) {
		memcpy(t + k, "./", 2);
		k += 2;
	}
	if (len - tl - k == 1)
		t[k++] = '/';
	memcpy(t + k, tail, tl + 1);
	ASSERT_EQ(strlen(t), len);
	return t;
}

static unsigned long
e2_bfree(struct e2 *e)
{
	struct statvfs sv;
	ASSERT_OK(pw_statvfs(e->mnt, &sv));
	return sv.f_bfree;
}

/* Fast symlinks (target < 60 bytes, in i_block, no block) and slow ones
 * (one data block), made by pagewright, as the kernel's tools see them,
 * across a remount, and freed on unlink. */
TEST(ext2_symlinks_fast_slow)
{
	for (size_t k = 0; k < PW_ARRAY_SIZE(block_sizes); k++) {
		struct e2 e;
		unsigned bs = block_sizes[k];
		e2_make(&e, "symlinks", bs, 8192);
		long initial_free = dumpe2fs_num(&e, "Free blocks");
		e2_mount(&e, NULL);
		ASSERT_OK(pw_mkdir(e2p(&e, "data"), 0755));
		pw_write_all(e2p(&e, "data/f.txt"), "the target", 10);
		unsigned long bfree = e2_bfree(&e);
		size_t lens[] = {10, 59, 60, 200, bs - 1};
		bool slow[] = {false, false, true, true, true};
		char *targets[5], name[32];
		for (int i = 0; i < 5; i++) {
			targets[i] = link_target(lens[i]);
			XSNPRINTF(name, sizeof(name), "l%zu", lens[i]);
			ASSERT_OK(pw_symlink(targets[i], e2p(&e, name)));
			struct stat st;
			ASSERT_OK(pw_lstat(e2p(&e, name), &st));
			ASSERT(S_ISLNK(st.st_mode));
			ASSERT_EQ(st.st_size, (int64_t)lens[i]);
			ASSERT_EQ(st.st_blocks, slow[i] ? bs / 512 : 0);
		}
		ASSERT_EQ(e2_bfree(&e), bfree - 3);
		/* a target and its NUL must fit in a block */
		char *too_long = link_target(bs);
		ASSERT_ERR(pw_symlink(too_long, e2p(&e, "toolong")), ENAMETOOLONG);
		free(too_long);
		ASSERT_EQ(e2_bfree(&e), bfree - 3);
		e2_umount_fsck(&e);

		for (int i = 0; i < 5; i++) {
			char path[40];
			XSNPRINTF(path, sizeof(path), "/l%zu", lens[i]);
			ASSERT(debugfs_stat_has(&e, path, "Type: symlink"));
			ASSERT_EQ(debugfs_stat_num(&e, path, "Size: ", 10), (long long)lens[i]);
			if (!slow[i]) {
				char want[128];
				XSNPRINTF(want, sizeof(want), "Fast link dest: \"%s\"", targets[i]);
				ASSERT(debugfs_stat_has(&e, path, want));
				ASSERT_EQ(debugfs_stat_num(&e, path, "Blockcount: ", 10), 0);
			} else {
				ASSERT_EQ(debugfs_stat_num(&e, path, "Blockcount: ", 10), bs / 512);
				char got[4096];
				ASSERT_EQ(e2_debugfs_cat(&e, path, got, sizeof(got)), lens[i]);
				ASSERT_MEM_EQ(got, targets[i], lens[i]);
			}
		}

		e2_mount(&e, NULL);
		for (int i = 0; i < 5; i++) {
			char got[4096];
			XSNPRINTF(name, sizeof(name), "l%zu", lens[i]);
			memset(got, 0, sizeof(got));
			ASSERT_EQ(pw_readlink(e2p(&e, name), got, sizeof(got)), (int64_t)lens[i]);
			ASSERT_MEM_EQ(got, targets[i], lens[i]);
			ASSERT_EQ(got[lens[i]], 0);
			/* and followed: every one leads to data/f.txt */
			pw_read_all(e2p(&e, name), got, 10);
			ASSERT_MEM_EQ(got, "the target", 10);
			unsigned char t = 0;
			ASSERT(dir_has(e.mnt, name, &t));
			ASSERT_EQ(t, DT_LNK);
		}
		for (int i = 0; i < 5; i++) {
			XSNPRINTF(name, sizeof(name), "l%zu", lens[i]);
			ASSERT_OK(pw_unlink(e2p(&e, name)));
			free(targets[i]);
		}
		ASSERT_EQ(e2_bfree(&e), bfree);
		ASSERT_OK(pw_unlink(e2p(&e, "data/f.txt")));
		ASSERT_OK(pw_rmdir(e2p(&e, "data")));
		e2_umount_fsck(&e);
		ASSERT_EQ(dumpe2fs_num(&e, "Free blocks"), initial_free);
	}
}

/* Hard links: i_links_count on disk, data shared, unlink of one name
 * keeps the file, the last one frees it; EMLINK at 32000. */
TEST(ext2_hard_links)
{
	for (size_t k = 0; k < PW_ARRAY_SIZE(block_sizes); k++) {
		struct e2 e;
		e2_make(&e, "hardlinks", block_sizes[k], 8192);
		long initial_free = dumpe2fs_num(&e, "Free blocks");
		e2_mount(&e, NULL);
		size_t n = 5000;
		char *data = xmalloc(n), *got = xmalloc(n);
		fill_pattern(data, n, 3);
		pw_write_all(e2p(&e, "f"), data, n);
		ASSERT_OK(pw_mkdir(e2p(&e, "sub"), 0755));
		ASSERT_OK(pw_link(e2p(&e, "f"), e2p(&e, "g")));
		ASSERT_OK(pw_link(e2p(&e, "g"), e2p(&e, "sub/h")));
		e2_umount_fsck(&e);
		ASSERT_EQ(debugfs_stat_num(&e, "/f", "Links: ", 10), 3);
		ASSERT_EQ(debugfs_stat_num(&e, "/sub/h", "Links: ", 10), 3);
		ASSERT_EQ(e2_debugfs_cat(&e, "/sub/h", got, n), n);
		ASSERT_MEM_EQ(got, data, n);

		e2_mount(&e, NULL);
		struct stat a, b;
		ASSERT_OK(pw_stat(e2p(&e, "f"), &a));
		ASSERT_OK(pw_stat(e2p(&e, "sub/h"), &b));
		ASSERT_EQ(a.st_nlink, 3);
		ASSERT_EQ(a.st_ino, b.st_ino);
		ASSERT_OK(pw_unlink(e2p(&e, "f")));
		ASSERT_OK(pw_unlink(e2p(&e, "g")));
		e2_umount_fsck(&e);
		ASSERT_EQ(debugfs_stat_num(&e, "/sub/h", "Links: ", 10), 1);

		e2_mount(&e, NULL);
		pw_read_all(e2p(&e, "sub/h"), got, n);
		ASSERT_MEM_EQ(got, data, n);
		ASSERT_OK(pw_unlink(e2p(&e, "sub/h")));
		ASSERT_OK(pw_rmdir(e2p(&e, "sub")));
		e2_umount_fsck(&e);
		ASSERT_EQ(dumpe2fs_num(&e, "Free blocks"), initial_free);
		free(data);
		free(got);
	}

	/* The link limit, with the count set near it by debugfs. */
	struct e2 e;
	e2_make(&e, "emlink", 1024, 4096);
	e2_mount(&e, NULL);
	pw_write_all(e2p(&e, "m"), "m", 1);
	ASSERT_OK(pw_umount(e.mnt));
	e2_debugfs(&e, "sif m links_count 31999");
	e2_mount(&e, NULL);
	ASSERT_OK(pw_link(e2p(&e, "m"), e2p(&e, "m2")));
	struct stat st;
	ASSERT_OK(pw_stat(e2p(&e, "m"), &st));
	ASSERT_EQ(st.st_nlink, 32000);
	ASSERT_ERR(pw_link(e2p(&e, "m"), e2p(&e, "m3")), EMLINK);
	ASSERT_ERR(pw_lstat(e2p(&e, "m3"), &st), ENOENT);
	ASSERT_OK(pw_unlink(e2p(&e, "m2")));
	ASSERT_OK(pw_umount(e.mnt));
	ASSERT_EQ(debugfs_stat_num(&e, "/m", "Links: ", 10), 31999);
	e2_debugfs(&e, "sif m links_count 1");
	e2_fsck(&e);
}

/* chmod, chown (32-bit ids: the high halves live in osd2) and utimens
 * reach the inode table, for 256- and 128-byte inodes.  Nanoseconds are
 * kept only by a large inode whose i_extra_isize covers them: "pre",
 * made by debugfs, has one; the inodes pagewright makes have none (as the
 * kernel's ext2, which keeps seconds), so for them only seconds are
 * checked. */
TEST(ext2_attrs_persist)
{
	for (int small = 0; small < 2; small++) {
		struct e2 e;
		e2_make(&e, small ? "attrs128" : "attrs256", 1024, 4096);
		if (small)
			ASSERT_EQ(sh(NULL, 0, "mke2fs -q -F -t ext2 -b 1024 -I 128 '%s' 4096 "
			             ">/dev/null 2>&1", e.img), 0);
		ASSERT_EQ(dumpe2fs_num(&e, "Inode size"), small ? 128 : 256);
		char host[600];
		XSNPRINTF(host, sizeof(host), "%s/pre", test_tmpdir());
		write_host_file(host, "pre", 3);
		e2_debugfs_write(&e, host, "pre");
		e2_mount(&e, NULL);
		pw_write_all(e2p(&e, "f"), "attrs", 5);
		ASSERT_OK(pw_symlink("f", e2p(&e, "l")));
		ASSERT_OK(pw_mkdir(e2p(&e, "d"), 0755));
		ASSERT_OK(pw_chown(e2p(&e, "f"), 70000, 80000));
		ASSERT_OK(pw_chmod(e2p(&e, "f"), 04751));
		ASSERT_OK(pw_lchown(e2p(&e, "l"), 300, 65536 + 400));
		ASSERT_OK(pw_chown(e2p(&e, "d"), 5, 6));
		ASSERT_OK(pw_chmod(e2p(&e, "d"), 01710));
		struct timespec ft[2] = {{1234567890, 111222333}, {1300000000, 444555666}};
		struct timespec lt[2] = {{1400000000, 5}, {1500000000, 999999999}};
		ASSERT_OK(pw_utimens(e2p(&e, "f"), ft, 0));
		ASSERT_OK(pw_utimens(e2p(&e, "pre"), ft, 0));
		ASSERT_OK(pw_utimens(e2p(&e, "l"), lt, AT_SYMLINK_NOFOLLOW));
		e2_umount_fsck(&e);

		ASSERT_EQ(debugfs_stat_num(&e, "/f", "Mode: ", 8), 04751);
		ASSERT_EQ(debugfs_stat_num(&e, "/f", "User: ", 10), 70000);
		ASSERT_EQ(debugfs_stat_num(&e, "/f", "Group: ", 10), 80000);
		ASSERT_EQ(debugfs_stat_num(&e, "/l", "User: ", 10), 300);
		ASSERT_EQ(debugfs_stat_num(&e, "/l", "Group: ", 10), 65536 + 400);
		ASSERT_EQ(debugfs_stat_num(&e, "/d", "Mode: ", 8), 01710);
		ASSERT_EQ(debugfs_stat_num(&e, "/d", "User: ", 10), 5);
		ASSERT_EQ(debugfs_stat_num(&e, "/f", "atime: ", 16), ft[0].tv_sec);
		ASSERT_EQ(debugfs_stat_num(&e, "/f", "mtime: ", 16), ft[1].tv_sec);
		ASSERT_EQ(debugfs_stat_num(&e, "/l", "mtime: ", 16), lt[1].tv_sec);
		if (!small) {
			/* "mtime: 0xSECONDS:EXTRA", EXTRA = nsec << 2 */
			char out[4096];
			ASSERT_EQ(sh(out, sizeof(out), "debugfs -R 'stat /pre' '%s' 2>/dev/null | "
			             "sed -n 's/^ *mtime: 0x[0-9a-f]*:\\([0-9a-f]*\\).*/\\1/p'",
			             e.img), 0);
			ASSERT_EQ(strtoll(out, NULL, 16) >> 2, ft[1].tv_nsec);
		}

		e2_mount(&e, NULL);
		struct stat st;
		ASSERT_OK(pw_stat(e2p(&e, "f"), &st));
		ASSERT_EQ(st.st_mode, S_IFREG | 04751);
		ASSERT_EQ(st.st_uid, 70000);
		ASSERT_EQ(st.st_gid, 80000);
		ASSERT_EQ(st.st_atim.tv_sec, ft[0].tv_sec);
		ASSERT_EQ(st.st_mtim.tv_sec, ft[1].tv_sec);
		ASSERT_OK(pw_stat(e2p(&e, "pre"), &st));
		ASSERT_EQ(st.st_atim.tv_sec, ft[0].tv_sec);
		ASSERT_EQ(st.st_mtim.tv_sec, ft[1].tv_sec);
		ASSERT_EQ(st.st_atim.tv_nsec, small ? 0 : ft[0].tv_nsec);
		ASSERT_EQ(st.st_mtim.tv_nsec, small ? 0 : ft[1].tv_nsec);
		ASSERT_OK(pw_lstat(e2p(&e, "l"), &st));
		ASSERT_EQ(st.st_uid, 300);
		ASSERT_EQ(st.st_gid, 65536 + 400);
		ASSERT_EQ(st.st_atim.tv_sec, lt[0].tv_sec);
		ASSERT_EQ(st.st_mtim.tv_sec, lt[1].tv_sec);
		ASSERT_OK(pw_stat(e2p(&e, "d"), &st));
		ASSERT_EQ(st.st_mode, S_IFDIR | 01710);
		ASSERT_EQ(st.st_gid, 6);
		e2_umount_fsck(&e);
	}
}

/* pw_statvfs against the superblock as dumpe2fs reads it, before and
 * after changes. */
TEST(ext2_statvfs_dumpe2fs)
{
	for (size_t k = 0; k < PW_ARRAY_SIZE(block_sizes); k++) {
		struct e2 e;
		e2_make(&e, "statvfs", block_sizes[k], 16384);
		struct statvfs sv;
		for (int round = 0; round < 2; round++) {
			e2_mount(&e, NULL);
			if (round == 1) {
				char *buf = xmalloc(100000);
				fill_pattern(buf, 100000, 9);
				pw_write_all(e2p(&e, "big"), buf, 100000);
				free(buf);
				ASSERT_OK(pw_mkdir(e2p(&e, "dir"), 0755));
				char *t = link_target(300);
				ASSERT_OK(pw_symlink(t, e2p(&e, "slow")));
				free(t);
			}
			ASSERT_OK(pw_statvfs(e.mnt, &sv));
			e2_umount_fsck(&e);
			long first = dumpe2fs_num(&e, "First block");
			ASSERT_EQ(sv.f_bsize, dumpe2fs_num(&e, "Block size"));
			ASSERT_EQ(sv.f_frsize, sv.f_bsize);
			ASSERT_EQ(sv.f_blocks, dumpe2fs_num(&e, "Block count") - first);
			ASSERT_EQ(sv.f_bfree, dumpe2fs_num(&e, "Free blocks"));
			ASSERT_EQ(sv.f_bavail, dumpe2fs_num(&e, "Free blocks") -
			                           dumpe2fs_num(&e, "Reserved block count"));
			ASSERT_EQ(sv.f_files, dumpe2fs_num(&e, "Inode count"));
			ASSERT_EQ(sv.f_ffree, dumpe2fs_num(&e, "Free inodes"));
			ASSERT_EQ(sv.f_namemax, 255);
		}
	}
}

/* A read-only mount reads links and changes nothing. */
TEST(ext2_ro_links_attrs)
{
	struct e2 e;
	e2_make(&e, "rometa", 1024, 4096);
	e2_mount(&e, NULL);
	pw_write_all(e2p(&e, "f"), "x", 1);
	ASSERT_OK(pw_symlink("f", e2p(&e, "l")));
	ASSERT_OK(pw_umount(e.mnt));
	e2_mount(&e, "ro");
	char buf[8];
	ASSERT_EQ(pw_readlink(e2p(&e, "l"), buf, sizeof(buf)), 1);
	struct statvfs sv;
	ASSERT_OK(pw_statvfs(e.mnt, &sv));
	ASSERT_NE(sv.f_flag & ST_RDONLY, 0);
	ASSERT_ERR(pw_symlink("f", e2p(&e, "l2")), EROFS);
	ASSERT_ERR(pw_link(e2p(&e, "f"), e2p(&e, "g")), EROFS);
	ASSERT_ERR(pw_chmod(e2p(&e, "l"), 0600), EROFS);
	ASSERT_ERR(pw_chown(e2p(&e, "f"), 1, 1), EROFS);
	ASSERT_ERR(pw_utimens(e2p(&e, "l"), NULL, AT_SYMLINK_NOFOLLOW), EROFS);
	struct stat before;
	ASSERT_OK(stat(e.img, &before));
	ASSERT_OK(pw_umount(e.mnt));
	struct stat after;
	ASSERT_OK(stat(e.img, &after));
	ASSERT_EQ(ts_ns_of(after.st_mtim), ts_ns_of(before.st_mtim));
	e2_fsck(&e);
}

/* Symlinks with bad sizes or blocks: errors, never a crash or a read
 * past what the inode owns. */
TEST(ext2_corrupt_symlinks)
{
	struct e2 e;
	e2_make(&e, "badlink", 1024, 4096);
	e2_debugfs(&e, "symlink fast /short/target");
	e2_debugfs(&e, "symlink fast2 /short/target");
	e2_debugfs(&e, "symlink slow /a/very/long/target/that/does/not/fit/in/the/"
	               "inode/itself/because/it/is/longer/than/sixty/bytes");
	e2_debugfs(&e, "symlink slow2 /a/very/long/target/that/does/not/fit/in/the/"
	               "inode/itself/because/it/is/longer/than/sixty/bytes");
	e2_debugfs(&e, "sif fast size 70");       /* longer than i_block */
	e2_debugfs(&e, "sif fast2 size 5");       /* shorter: a prefix */
	e2_debugfs(&e, "sif slow block[0] 0");    /* blocks counted, none mapped */
	e2_debugfs(&e, "sif slow2 block[0] 1");   /* the superblock */
	e2_mount(&e, "ro");
	char buf[128];
	struct stat st;
	ASSERT_ERR(pw_readlink(e2p(&e, "fast"), buf, sizeof(buf)), EUCLEAN);
	ASSERT_ERR(pw_stat(e2p(&e, "fast"), &st), EUCLEAN);
	ASSERT_EQ(pw_readlink(e2p(&e, "fast2"), buf, sizeof(buf)), 5);
	ASSERT_MEM_EQ(buf, "/shor", 5);
	ASSERT_ERR(pw_readlink(e2p(&e, "slow"), buf, sizeof(buf)), EUCLEAN);
	ASSERT_ERR(pw_open(e2p(&e, "slow"), O_RDONLY), EUCLEAN);
	ASSERT_ERR(pw_readlink(e2p(&e, "slow2"), buf, sizeof(buf)), EUCLEAN);
	ASSERT_OK(pw_lstat(e2p(&e, "slow2"), &st));
	ASSERT(S_ISLNK(st.st_mode));
	ASSERT_OK(pw_umount(e.mnt));
}

/* ------------------------------------------------- extended attributes */

/* debugfs ea_get of name's attr: its value into buf, the length back. */
static size_t
debugfs_ea_get(struct e2 *e, const char *name, const char *attr, char *buf, size_t n)
{
	char vf[600];
	XSNPRINTF(vf, sizeof(vf), "%s/ea-out", test_tmpdir());
	unlink(vf);
	char out[4096];
	ASSERT_EQ(sh(out, sizeof(out), "debugfs -R 'ea_get -f %s %s %s' '%s' 2>&1", vf, name, attr,
	             e->img), 0);
	int fd = open(vf, O_RDONLY);
	if (fd < 0) {
		fprintf(stderr, "debugfs ea_get %s %s: %s\n", name, attr, out);
		abort();
	}
	ssize_t got = read(fd, buf, n);
	close(fd);
	ASSERT_GE(got, 0);
	return (size_t)got;
}

/*
 * Extended attributes: those other tools wrote (in the inode, in a block
 * of its own, in a block two inodes share) are read; pagewright's are read
 * by debugfs; a change to a shared block leaves the other inode's alone;
 * the errors of getxattr(2) and friends; and e2fsck finds nothing to fix,
 * with every attribute block of a removed file or attribute freed.
 */
TEST(ext2_xattrs)
{
	for (size_t k = 0; k < PW_ARRAY_SIZE(block_sizes); k++) {
		struct e2 e;
		e2_make(&e, "xattr", block_sizes[k], 8192);
		char host[600], val[700], req[1200], got[4096];
		XSNPRINTF(host, sizeof(host), "%s/data", test_tmpdir());
		write_host_file(host, "data", 4);
		const char *files[] = {"f", "big", "s1", "s2", "many"};
		for (size_t j = 0; j < PW_ARRAY_SIZE(files); j++)
			e2_debugfs_write(&e, host, files[j]);
		e2_debugfs(&e, "ea_set f user.small s");    /* fits in the inode */
		memset(val, 'v', 600);
		XSNPRINTF(host, sizeof(host), "%s/val", test_tmpdir());
		write_host_file(host, val, 600);
		XSNPRINTF(req, sizeof(req), "ea_set -f %s big user.big", host);
		e2_debugfs(&e, req);                         /* a block of its own */
		memset(val, 's', 300);
		write_host_file(host, val, 300);
		XSNPRINTF(req, sizeof(req), "ea_set -f %s s1 user.shared", host);
		e2_debugfs(&e, req);
		/* s2 shares s1's block: its reference, its i_blocks, a count of 2. */
		long blk = debugfs_stat_num(&e, "s1", "File ACL: ", 10);
		ASSERT_GT(blk, 0);
		long blocks = debugfs_stat_num(&e, "s2", "Blockcount: ", 10);
		XSNPRINTF(req, sizeof(req), "sif s2 file_acl %ld", blk);
		e2_debugfs(&e, req);
		XSNPRINTF(req, sizeof(req), "sif s2 blocks %ld", blocks + (long)e.bs / 512);
		e2_debugfs(&e, req);
		XSNPRINTF(req, sizeof(req), "zap_block -o 4 -l 1 -p 2 %ld", blk);
		e2_debugfs(&e, req);
		e2_fsck(&e); /* the set-up itself is a clean image */

		e2_mount(&e, NULL);
		ASSERT_EQ(pw_getxattr(e2p(&e, "f"), "user.small", got, sizeof(got)), 1);
		ASSERT_MEM_EQ(got, "s", 1);
		ASSERT_EQ(pw_getxattr(e2p(&e, "big"), "user.big", NULL, 0), 600);
		ASSERT_EQ(pw_getxattr(e2p(&e, "big"), "user.big", got, 599), -1);
		ASSERT_EQ(errno, ERANGE);
		ASSERT_EQ(pw_getxattr(e2p(&e, "big"), "user.big", got, sizeof(got)), 600);
		memset(val, 'v', 600);
		ASSERT_MEM_EQ(got, val, 600);
		ASSERT_EQ(pw_getxattr(e2p(&e, "s2"), "user.shared", got, sizeof(got)), 300);
		/* The shared block: s2's change goes to a block of s2's own. */
		ASSERT_OK(pw_setxattr(e2p(&e, "s2"), "user.shared", "mine", 4, XATTR_REPLACE));
		ASSERT_EQ(pw_getxattr(e2p(&e, "s2"), "user.shared", got, sizeof(got)), 4);
		ASSERT_MEM_EQ(got, "mine", 4);
		ASSERT_EQ(pw_getxattr(e2p(&e, "s1"), "user.shared", got, sizeof(got)), 300);
		ASSERT_EQ(got[0], 's');
		/* New attributes next to in-inode ones; the list has all. */
		ASSERT_OK(pw_setxattr(e2p(&e, "f"), "user.new", "pagewright", 10, XATTR_CREATE));
		ASSERT_OK(pw_setxattr(e2p(&e, "f"), "trusted.t", "", 0, 0));
		ASSERT_OK(pw_setxattr(e2p(&e, "f"), "security.s", "sec", 3, 0));
		ssize_t n = pw_listxattr(e2p(&e, "f"), got, sizeof(got));
		ASSERT_EQ(n, (ssize_t)sizeof("user.small\0user.new\0trusted.t\0security.s"));
		ASSERT_EQ(pw_listxattr(e2p(&e, "f"), NULL, 0), n);
		ASSERT_EQ(pw_listxattr(e2p(&e, "f"), got, 5), -1);
		ASSERT_EQ(errno, ERANGE);
		ASSERT_EQ(pw_getxattr(e2p(&e, "f"), "user.small", got, sizeof(got)), 1);
		/* The flags and the absent. */
		ASSERT_EQ(pw_setxattr(e2p(&e, "f"), "user.new", "x", 1, XATTR_CREATE), -1);
		ASSERT_EQ(errno, EEXIST);
		ASSERT_EQ(pw_setxattr(e2p(&e, "f"), "user.none", "x", 1, XATTR_REPLACE), -1);
		ASSERT_EQ(errno, ENODATA);
		ASSERT_EQ(pw_removexattr(e2p(&e, "f"), "user.none"), -1);
		ASSERT_EQ(errno, ENODATA);
		ASSERT_EQ(pw_getxattr(e2p(&e, "f"), "user.none", got, sizeof(got)), -1);
		ASSERT_EQ(errno, ENODATA);
		ASSERT_EQ(pw_setxattr(e2p(&e, "f"), "system.x", "x", 1, 0), -1);
		ASSERT_EQ(errno, EOPNOTSUPP);
		ASSERT_EQ(pw_setxattr(e2p(&e, "f"), "user.x", "x", 1, 0x100), -1);
		ASSERT_EQ(errno, EINVAL);
		/* Bad pointers: EFAULT, nothing changed. */
		ASSERT_EQ(pw_setxattr(e2p(&e, "f"), "user.bad", (void *)8, 4, 0), -1);
		ASSERT_EQ(errno, EFAULT);
		ASSERT_EQ(pw_setxattr(e2p(&e, "f"), (const char *)8, "x", 1, 0), -1);
		ASSERT_EQ(errno, EFAULT);
		ASSERT_EQ(pw_getxattr(e2p(&e, "f"), "user.new", (void *)8, 64), -1);
		ASSERT_EQ(errno, EFAULT);
		ASSERT_EQ(pw_getxattr(e2p(&e, "f"), "user.bad", got, sizeof(got)), -1);
		ASSERT_EQ(errno, ENODATA);
		/* Full: ENOSPC, and what was there is still there. */
		char *huge = calloc(1, e.bs);
		ASSERT(huge != NULL);
		ASSERT_EQ(pw_setxattr(e2p(&e, "big"), "user.huge", huge, e.bs - 64, 0), -1);
		ASSERT_EQ(errno, ENOSPC);
		free(huge);
		ASSERT_EQ(pw_getxattr(e2p(&e, "big"), "user.big", got, sizeof(got)), 600);
		int added = 0;
		for (;; added++) {
			char name[32], v[40];
			snprintf(name, sizeof(name), "user.a%03d", added);
			memset(v, 'a' + added % 26, sizeof(v));
			if (pw_setxattr(e2p(&e, "many"), name, v, sizeof(v), 0) != 0) {
				ASSERT_EQ(errno, ENOSPC);
				break;
			}
		}
		ASSERT_GT(added, (int)e.bs / 80 - 2);
		for (int j = 0; j < added; j++) {
			char name[32];
			snprintf(name, sizeof(name), "user.a%03d", j);
			ASSERT_EQ(pw_getxattr(e2p(&e, "many"), name, got, sizeof(got)), 40);
			ASSERT_EQ(got[39], 'a' + j % 26);
		}
		/* Symlinks and directories. */
		ASSERT_OK(pw_symlink("f", e2p(&e, "ln")));
		ASSERT_EQ(pw_lsetxattr(e2p(&e, "ln"), "user.x", "x", 1, 0), -1);
		ASSERT_EQ(errno, EPERM);
		ASSERT_EQ(pw_getxattr(e2p(&e, "ln"), "user.new", got, sizeof(got)), 10);
		ASSERT_OK(pw_mkdir(e2p(&e, "d"), 0755));
		ASSERT_OK(pw_setxattr(e2p(&e, "d"), "user.dir", "dir", 3, 0));
		/* Everything of big removed: its block is freed. */
		ASSERT_OK(pw_removexattr(e2p(&e, "big"), "user.big"));
		ASSERT_EQ(pw_listxattr(e2p(&e, "big"), got, sizeof(got)), 0);
		ASSERT_OK(pw_unlink(e2p(&e, "s1")));
		e2_umount_fsck(&e);

		/* debugfs reads what pagewright wrote. */
		ASSERT_EQ(debugfs_ea_get(&e, "f", "user.new", got, sizeof(got)), 10);
		ASSERT_MEM_EQ(got, "pagewright", 10);
		ASSERT_EQ(debugfs_ea_get(&e, "f", "user.small", got, sizeof(got)), 1);
		ASSERT_EQ(debugfs_ea_get(&e, "s2", "user.shared", got, sizeof(got)), 4);
		ASSERT_MEM_EQ(got, "mine", 4);
		ASSERT_EQ(debugfs_ea_get(&e, "d", "user.dir", got, sizeof(got)), 3);
		ASSERT_EQ(debugfs_ea_get(&e, "many", "user.a000", got, sizeof(got)), 40);
		ASSERT_EQ(debugfs_stat_num(&e, "big", "File ACL: ", 10), 0);

		/* Read-only: reads work, changes are EROFS. */
		e2_mount(&e, "ro");
		ASSERT_EQ(pw_getxattr(e2p(&e, "s2"), "user.shared", got, sizeof(got)), 4);
		ASSERT_EQ(pw_setxattr(e2p(&e, "s2"), "user.shared", "x", 1, 0), -1);
		ASSERT_EQ(errno, EROFS);
		ASSERT_OK(pw_umount(e.mnt));
	}
}

/* balloc.c's bitmap scan (internal): every start and end, against a
 * bit-by-bit scan, on bitmaps full but for a few zeros placed around
 * word boundaries. */
uint32_t pw__ext2_find_zero_bit(const uint8_t *map, uint32_t start, uint32_t end);

static uint32_t
zero_bit_slow(const uint8_t *map, uint32_t start, uint32_t end)
{
	for (uint32_t b = start; b < end; b++)
		if (!(map[b >> 3] & (1u << (b & 7))))
			return b;
	return end;
}

TEST(ext2_find_zero_bit)
{
	uint8_t map[40];
	unsigned seed = 7;
	for (int round = 0; round < 200; round++) {
		memset(map, 0xFF, sizeof(map));
		for (int z = round % 4; z > 0; z--) {
			seed = seed * 1103515245u + 12345u;
			uint32_t b = (seed >> 8) % (sizeof(map) * 8);
			map[b >> 3] &= (uint8_t)~(1u << (b & 7));
		}
		for (uint32_t start = 0; start <= sizeof(map) * 8; start += 3)
			for (uint32_t end = start; end <= sizeof(map) * 8; end += 5)
				ASSERT_EQ(pw__ext2_find_zero_bit(map, start, end),
				          zero_bit_slow(map, start, end));
	}
}

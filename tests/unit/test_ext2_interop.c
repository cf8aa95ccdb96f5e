/*
 * test_ext2_interop.c - ext2 images passed back and forth between the
 * kernel's own driver (a loop mount) and pagewright.
 *
 * Each side builds or changes a tree through its own calls (the kernel's:
 * open, pwrite, mmap, ftruncate, rename, link, symlink, mkfifo, lchown,
 * utimensat; pagewright's: pw_open, pw_pwrite, pw_mmap, pw_ftruncate,
 * pw_rename, ...), while a model of the tree records what was done.  The
 * other side then checks every name against the model: type, permission
 * bits, owner, link count, size, inode number, i_blocks and mtime; every
 * directory's listing, with d_type and d_ino; every regular file's bytes,
 * recomputed from the writes and truncations that made them (pat_byte of
 * a seed and the file offset), not copied.  Between the turns `e2fsck -fn`
 * must find nothing to fix.  After pagewright's turns, on the unmounted
 * image: debugfs must count in each inode's i_blocks exactly the blocks
 * that it maps, and each file's last block must be zero past end of file
 * (stores through mappings past EOF must not reach the disk).  While the
 * kernel has the image mounted, its log must show no error or warning
 * about the device (read from /dev/kmsg).
 *
 * Scenarios, each at block sizes 1024, 2048 and 4096:
 *   interop_kernel_writes_*      the kernel builds the tree (small files
 *       around block and page sizes, holes, a sparse file reaching triple-
 *       indirect blocks, a 5 MiB file written in order, a directory of
 *       hundreds of entries with deletions, nested directories, set-id and
 *       sticky bits, owners above 65535, hard links, fast and slow
 *       symlinks, a fifo, deleted files and directories, stores past EOF
 *       through mmap, exact mtimes); pagewright reads it and changes some
 *       of it; e2fsck; the kernel reads it again.  Without dir_index, and
 *       with it (the kernel then hashes the big directory; pagewright must
 *       treat it as linear and clear the index flag when it changes it).
 *   interop_pw_writes_*          pagewright builds the same tree (hard
 *       links, fast and slow symlinks, owners, times; no fifo), with
 *       stores through pw_mmap, truncation down and up, renames of files
 *       and directories across directories and over a file and an empty
 *       directory, unlink, rmdir; e2fsck; the kernel reads it (read-only),
 *       then extends the files pagewright scribbled past EOF through its
 *       mappings and reads zeros; pagewright reads the result.
 *   interop_round_trip_*         the kernel builds; pagewright changes
 *       (append, overwrite, truncate down and up, new and deleted files,
 *       mmap stores, renames, including of the hashed directory); e2fsck;
 *       the kernel checks and changes; e2fsck; pagewright checks, extends
 *       what the kernel cut, checks again.
 *
 * Every test first loop-mounts a small image with the kernel, and skips
 * (TEST_SKIP) if that fails: not root, no loop devices, no ext2 (or ext4
 * serving ext2) in the kernel.  Kernel mounts are made under test_tmpdir()
 * and unmounted by the test; if it dies with one mounted, the runner
 * unmounts it (tests/runner.c, umount_leftovers).
 *
 * Times: ext2 served by the ext4 driver keeps
 * nanoseconds in the inode's extra fields; pagewright writes them only into
 * inodes whose i_extra_isize covers them (as the kernel's ext2 driver, it
 * makes new inodes without).  So an mtime taken from pagewright's memory is
 * compared by its seconds, and by its nanoseconds unless the reader finds
 * none on disk (MT_LOOSE).
 */
#include "../pwt.h"

#include <dirent.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <sys/xattr.h>

#define KiB ((off_t)1024)
#define MiB (1024 * KiB)
#define GiB (1024 * MiB)
#define IMAGE_KB 131072 /* 128 MiB; the big file is sparse, so is the image */

/* Does the kernel keep nanoseconds on disk (ext4 serving ext2)?  Set by
 * kernel_probe. */
static bool kernel_nsec;

/* Run a shell command; return its exit status, its output (truncated) in out. */
static int
sh(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int
sh(char *out, size_t n, const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	va_start(ap, fmt);
	int len = vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	ASSERT(len > 0 && (size_t)len < sizeof(cmd));
	fflush(NULL);
	FILE *p = popen(cmd, "r");
	ASSERT(p != NULL);
	size_t got = 0, r;
	char buf[4096];
	if (out && n)
		out[0] = 0;
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

/* ------------------------------------------------------------ images */

struct img {
	char path[512]; /* the image file */
	char kdir[512]; /* where the kernel mounts it (host path) */
	char pdir[64];  /* where pagewright mounts it (pagewright path) */
	unsigned bs;
	int kmsg;       /* /dev/kmsg, read from the kernel mount on; -1 if unreadable */
	char dev[64];   /* the loop device's name while mounted, "loop3" */
};

static void
img_make(struct img *im, const char *tag, unsigned bs, bool dir_index)
{
	static int n;
	char out[4096];
	im->bs = bs;
	XSNPRINTF(im->path, sizeof(im->path), "%s/%s-%u.img", test_tmpdir(), tag, bs);
	XSNPRINTF(im->kdir, sizeof(im->kdir), "%s/k-%s-%u", test_tmpdir(), tag, bs);
	XSNPRINTF(im->pdir, sizeof(im->pdir), "/ix_%s_%u_%d", tag, bs, n++);
	int st = sh(out, sizeof(out), "mke2fs -q -F -t ext2 -b %u -O %sdir_index '%s' %uk 2>&1",
	            bs, dir_index ? "" : "^", im->path, IMAGE_KB);
	if (st != 0)
		fprintf(stderr, "mke2fs: %s\n", out);
	ASSERT_EQ(st, 0);
	ASSERT_OK(mkdir(im->kdir, 0755));
	ASSERT_OK(pw_mkdir(im->pdir, 0755));
}

/* The device mounted on dir, from mountinfo ("/dev/loop3" gives "loop3"). */
static void
mounted_device(const char *dir, char *dev, size_t n)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	ASSERT(f != NULL);
	char line[4096], mp[4096], src[4096];
	dev[0] = 0;
	while (fgets(line, sizeof(line), f)) {
		const char *sep = strstr(line, " - ");
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) == 1 && strcmp(mp, dir) == 0 &&
		    sep && sscanf(sep + 3, "%*s %4095s", src) == 1) {
			const char *base = strrchr(src, '/');
			XSNPRINTF(dev, n, "%s", base ? base + 1 : src);
		}
	}
	fclose(f);
	ASSERT(dev[0] != 0);
}

/* The kernel's log from the mount on: no error or warning about our
 * device (a bad directory entry or block map that the kernel meets while
 * reading is logged there, as is mounting a filesystem not left clean). */
static void
check_kernel_log(struct img *im)
{
	if (im->kmsg < 0)
		return;
	char rec[8192], tag[80], tag2[80];
	XSNPRINTF(tag, sizeof(tag), "(%s)", im->dev);        /* EXT4-fs (loop0): */
	XSNPRINTF(tag2, sizeof(tag2), "device %s)", im->dev); /* EXT4-fs error (device loop0): */
	int bad = 0;
	ssize_t r;
	while ((r = read(im->kmsg, rec, sizeof(rec) - 1)) != 0) {
		if (r < 0 && errno == EPIPE)
			continue; /* overwritten records: read on */
		if (r < 0)
			break;    /* EAGAIN: the end */
		rec[r] = 0;
		const char *msg = strchr(rec, ';');
		msg = msg ? msg + 1 : rec;
		if ((strstr(msg, tag) || strstr(msg, tag2)) &&
		    (strstr(msg, "error") || strstr(msg, "warning"))) {
			fprintf(stderr, "kernel: %s", msg);
			bad++;
		}
	}
	close(im->kmsg);
	im->kmsg = -1;
	ASSERT_EQ(bad, 0);
}

static void
kmount(struct img *im, bool ro)
{
	char out[4096];
	im->kmsg = open("/dev/kmsg", O_RDONLY | O_NONBLOCK);
	if (im->kmsg >= 0)
		lseek(im->kmsg, 0, SEEK_END);
	else
		TLOG("cannot read /dev/kmsg (%s): the kernel's log goes unchecked", strerror(errno));
	int st = sh(out, sizeof(out), "mount -t ext2 -o loop%s '%s' '%s' 2>&1",
	            ro ? ",ro" : "", im->path, im->kdir);
	if (st != 0)
		fprintf(stderr, "kernel mount of %s failed (%d): %s\n", im->path, st, out);
	ASSERT_EQ(st, 0);
	mounted_device(im->kdir, im->dev, sizeof(im->dev));
}

static void
kumount(struct img *im)
{
	char out[4096];
	int st = sh(out, sizeof(out), "umount '%s' 2>&1", im->kdir);
	if (st != 0)
		fprintf(stderr, "umount %s failed (%d): %s\n", im->kdir, st, out);
	ASSERT_EQ(st, 0);
	check_kernel_log(im);
	/* The loop device detaches after umount returns (autoclear).  Until
	 * it has, a new `mount -o loop` of the image may reuse it, read-only
	 * if it was: wait for it to go. */
	for (int k = 0; k < 500; k++) {
		if (sh(out, sizeof(out), "losetup -j '%s' 2>/dev/null", im->path) != 0 || !out[0])
			return;
		usleep(10000);
	}
	fprintf(stderr, "loop device of %s still attached: %s\n", im->path, out);
	abort();
}

static void
pmount(struct img *im)
{
	if (pw_mount("ext2", im->path, im->pdir, NULL) != 0) {
		fprintf(stderr, "pw_mount %s: %s\n", im->path, strerror(errno));
		abort();
	}
}

static void
pumount(struct img *im)
{
	ASSERT_OK(pw_umount(im->pdir));
}

static void
fsck_clean(const struct img *im, const char *after)
{
	static char out[1 << 16];
	int st = sh(out, sizeof(out), "e2fsck -fn '%s' 2>&1", im->path);
	if (st != 0)
		fprintf(stderr, "e2fsck -fn after %s exited %d:\n%s\n", after, st, out);
	ASSERT_EQ(st, 0);
}

/* The inode flags of path in the image, from debugfs. */
static unsigned long
image_flags(const struct img *im, const char *path)
{
	char out[8192];
	ASSERT_EQ(sh(out, sizeof(out), "debugfs -R 'stat /%s' '%s' 2>/dev/null", path, im->path), 0);
	const char *f = strstr(out, "Flags: ");
	ASSERT(f != NULL);
	return strtoul(f + 7, NULL, 0);
}

/*
 * Skip unless the kernel can loop-mount an ext2 image here; also learn
 * whether it keeps nanosecond times on disk.
 */
static void
kernel_probe(void)
{
	if (geteuid() != 0)
		TEST_SKIP("loop mounts need root (euid %d)", (int)geteuid());
	umask(0); /* the kernel side creates with the model's exact modes */
	char img[600], dir[600], out[4096];
	XSNPRINTF(img, sizeof(img), "%s/probe.img", test_tmpdir());
	XSNPRINTF(dir, sizeof(dir), "%s/probe", test_tmpdir());
	ASSERT_OK(mkdir(dir, 0755));
	int st = sh(out, sizeof(out), "mke2fs -q -F -t ext2 -b 1024 '%s' 4096 2>&1", img);
	if (st != 0)
		fprintf(stderr, "mke2fs: %s\n", out);
	ASSERT_EQ(st, 0);
	st = sh(out, sizeof(out), "mount -t ext2 -o loop '%s' '%s' 2>&1", img, dir);
	if (st != 0) {
		out[strcspn(out, "\n")] = 0;
		char fs[4096];
		bool ext2 = sh(fs, sizeof(fs), "grep -qw ext2 /proc/filesystems") == 0;
		TEST_SKIP("the kernel cannot loop-mount an ext2 image here "
		          "(mount -t ext2 -o loop exited %d: %s)%s%s", st, out,
		          access("/dev/loop-control", F_OK) ? "; no /dev/loop-control" : "",
		          ext2 ? "" : "; no ext2 in /proc/filesystems");
	}
	char f[700];
	XSNPRINTF(f, sizeof(f), "%s/t", dir);
	int fd = open(f, O_CREAT | O_WRONLY, 0644);
	ASSERT_GE(fd, 0);
	struct timespec ts[2] = {{1500000000, 123456789}, {1500000000, 123456789}};
	ASSERT_OK(futimens(fd, ts));
	close(fd);
	ASSERT_EQ(sh(out, sizeof(out), "umount '%s' 2>&1", dir), 0);
	ASSERT_EQ(sh(out, sizeof(out), "debugfs -R 'stat /t' '%s' 2>/dev/null", img), 0);
	const char *m = strstr(out, " mtime: 0x");
	unsigned sec = 0, extra = 0;
	kernel_nsec = m && sscanf(m, " mtime: 0x%x:%x", &sec, &extra) == 2 &&
	              extra >> 2 == 123456789;
	TLOG("the kernel loop-mounts ext2 here; it %s nanosecond times on disk",
	     kernel_nsec ? "keeps" : "does not keep");
}

/* ------------------------------------------------------------- sides */

/* One side: the kernel (syscalls on the loop mount) or pagewright. */
struct side {
	bool kernel;
	char root[512];
};

static void
side_init(struct side *s, const struct img *im, bool kernel)
{
	s->kernel = kernel;
	XSNPRINTF(s->root, sizeof(s->root), "%s", kernel ? im->kdir : im->pdir);
}

static const char *
side_name(const struct side *s)
{
	return s->kernel ? "kernel" : "pagewright";
}

static const char *
spath(const struct side *s, const char *rel)
{
	static char buf[4][700];
	static int n;
	char *b = buf[n++ & 3];
	if (rel[0])
		XSNPRINTF(b, sizeof(buf[0]), "%s/%s", s->root, rel);
	else
		XSNPRINTF(b, sizeof(buf[0]), "%s", s->root);
	return b;
}

static int
x_open(const struct side *s, const char *rel, int flags, mode_t mode)
{
	int fd = s->kernel ? open(spath(s, rel), flags, mode)
	                   : pw_open(spath(s, rel), flags, mode);
	if (fd < 0) {
		fprintf(stderr, "%s: open %s: %s\n", side_name(s), rel, strerror(errno));
		abort();
	}
	return fd;
}

static void
x_close(const struct side *s, int fd)
{
	ASSERT_OK(s->kernel ? close(fd) : pw_close(fd));
}

static void
x_pwrite(const struct side *s, int fd, const void *buf, size_t n, off_t off)
{
	ssize_t w = s->kernel ? pwrite(fd, buf, n, off) : pw_pwrite(fd, buf, n, off);
	ASSERT_EQ(w, (ssize_t)n);
}

static ssize_t
x_pread(const struct side *s, int fd, void *buf, size_t n, off_t off)
{
	return s->kernel ? pread(fd, buf, n, off) : pw_pread(fd, buf, n, off);
}

static int
x_stat(const struct side *s, const char *rel, struct stat *st)
{
	return s->kernel ? lstat(spath(s, rel), st) : pw_lstat(spath(s, rel), st);
}

#define SIDE_OK(s, call, rel)                                                     \
	do {                                                                       \
		if ((call) != 0) {                                                     \
			fprintf(stderr, "%s:%d: %s: %s %s: %s\n", __FILE__, __LINE__,      \
			        side_name(s), #call, (rel), strerror(errno));              \
			abort();                                                           \
		}                                                                      \
	} while (0)

struct dent {
	char name[256];
	unsigned char type;
	ino_t ino;
};

/* Read the directory rel; returns the number of entries (at most max). */
static int
x_list(const struct side *s, const char *rel, struct dent *out, int max)
{
	int n = 0;
	struct dirent *de;
	if (s->kernel) {
		DIR *d = opendir(spath(s, rel));
		ASSERT(d != NULL);
		while ((de = readdir(d)) != NULL && n < max) {
			XSNPRINTF(out[n].name, sizeof(out[n].name), "%s", de->d_name);
			out[n].type = de->d_type;
			out[n++].ino = de->d_ino;
		}
		closedir(d);
	} else {
		PW_DIR *d = pw_opendir(spath(s, rel));
		ASSERT(d != NULL);
		while ((de = pw_readdir(d)) != NULL && n < max) {
			XSNPRINTF(out[n].name, sizeof(out[n].name), "%s", de->d_name);
			out[n].type = de->d_type;
			out[n++].ino = de->d_ino;
		}
		pw_closedir(d);
	}
	ASSERT_LT(n, max);
	return n;
}

/* ------------------------------------------------------------- model */

enum { M_DIR = 1, M_REG, M_LNK, M_FIFO };
enum { MT_UNKNOWN, MT_EXACT, MT_LOOSE };

#define MAX_OPS 16
#define MAX_INODES 800
#define MAX_NAMES 900

/* A write of len bytes pat_byte(seed, pos) at off, or a truncation to off. */
struct mop {
	off_t off;
	size_t len;
	unsigned seed;
	bool trunc;
};

struct minode {
	int type;
	mode_t perm;           /* the 07777 bits */
	uid_t uid;
	gid_t gid;
	off_t size;
	struct mop ops[MAX_OPS];
	int nops;
	char target[200];      /* a symlink's */
	int mt;                /* MT_*: how far mtime can be trusted */
	struct timespec mtime;
	ino_t ino;             /* 0: not known yet */
	blkcnt_t blocks;       /* -1: not known yet */
};

struct mname {
	char path[96]; /* relative to the root; "" is the root */
	int in;        /* index into model.in */
	bool live;
};

struct model {
	struct minode in[MAX_INODES];
	int nin;
	struct mname nm[MAX_NAMES];
	int nnm;
};

static int
m_find(const struct model *M, const char *path)
{
	for (int i = 0; i < M->nnm; i++)
		if (M->nm[i].live && strcmp(M->nm[i].path, path) == 0)
			return i;
	return -1;
}

static struct minode *
m_inode(struct model *M, const char *path)
{
	int i = m_find(M, path);
	if (i < 0) {
		fprintf(stderr, "model: no %s\n", path);
		abort();
	}
	return &M->in[M->nm[i].in];
}

/* The parent directory of path, into buf ("" for the root's children). */
static const char *
m_parent(const char *path, char *buf, size_t n)
{
	const char *slash = strrchr(path, '/');
	size_t len = slash ? (size_t)(slash - path) : 0;
	ASSERT_LT(len, n);
	memcpy(buf, path, len);
	buf[len] = 0;
	return buf;
}

static void
m_touch_parent(struct model *M, const char *path)
{
	char par[96];
	m_inode(M, m_parent(path, par, sizeof(par)))->mt = MT_UNKNOWN;
}

static int
m_new_inode(struct model *M, int type, mode_t perm)
{
	ASSERT_LT(M->nin, MAX_INODES);
	struct minode *mi = &M->in[M->nin];
	memset(mi, 0, sizeof(*mi));
	mi->type = type;
	mi->perm = perm;
	mi->uid = geteuid();
	mi->gid = getegid();
	mi->blocks = -1;
	return M->nin++;
}

static void
m_add_name(struct model *M, const char *path, int in)
{
	ASSERT_LT(M->nnm, MAX_NAMES);
	ASSERT_EQ(m_find(M, path), -1);
	XSNPRINTF(M->nm[M->nnm].path, sizeof(M->nm[0].path), "%s", path);
	M->nm[M->nnm].in = in;
	M->nm[M->nnm++].live = true;
}

static int
m_nlink(const struct model *M, int in)
{
	int n = 0;
	if (M->in[in].type != M_DIR) {
		for (int i = 0; i < M->nnm; i++)
			n += M->nm[i].live && M->nm[i].in == in;
		return n;
	}
	const char *self = NULL;
	for (int i = 0; i < M->nnm && !self; i++)
		if (M->nm[i].live && M->nm[i].in == in)
			self = M->nm[i].path;
	ASSERT(self != NULL);
	n = 2;
	for (int i = 0; i < M->nnm; i++) {
		char par[96];
		if (M->nm[i].live && M->nm[i].path[0] && M->in[M->nm[i].in].type == M_DIR &&
		    strcmp(m_parent(M->nm[i].path, par, sizeof(par)), self) == 0)
			n++;
	}
	return n;
}

/* A fresh image's tree: the root (inode 2) and lost+found (inode 11). */
static struct model *
model_new(void)
{
	struct model *M = xmalloc(sizeof(*M));
	M->nin = M->nnm = 0;
	int r = m_new_inode(M, M_DIR, 0755);
	M->in[r].ino = 2;
	m_add_name(M, "", r);
	int l = m_new_inode(M, M_DIR, 0700);
	M->in[l].ino = 11;
	m_add_name(M, "lost+found", l);
	return M;
}

static void
m_add_op(struct minode *mi, off_t off, size_t len, unsigned seed, bool trunc)
{
	ASSERT_LT(mi->nops, MAX_OPS);
	mi->ops[mi->nops++] = (struct mop){off, len, seed, trunc};
	if (trunc)
		mi->size = off;
	else
		mi->size = PW_MAX(mi->size, off + (off_t)len);
	mi->mt = MT_UNKNOWN;
}

/* ------------------------------------- changes: on one side and the model */

static void
write_pattern(const struct side *s, int fd, off_t off, size_t len, unsigned seed)
{
	size_t chunk = 1 << 20;
	unsigned char *buf = xmalloc(chunk);
	for (size_t done = 0; done < len;) {
		size_t c = PW_MIN(chunk, len - done);
		pat_fill(buf, c, seed, (uint64_t)off + done);
		x_pwrite(s, fd, buf, c, off + (off_t)done);
		done += c;
	}
	free(buf);
}

/* Create rel (it must not exist) with len bytes of pattern seed. */
static void
m_create(struct model *M, const struct side *s, const char *rel, mode_t perm,
         size_t len, unsigned seed)
{
	int fd = x_open(s, rel, O_CREAT | O_EXCL | O_WRONLY, perm);
	if (len)
		write_pattern(s, fd, 0, len, seed);
	x_close(s, fd);
	int in = m_new_inode(M, M_REG, perm);
	if (len)
		m_add_op(&M->in[in], 0, len, seed, false);
	m_add_name(M, rel, in);
	m_touch_parent(M, rel);
}

static void
m_write(struct model *M, const struct side *s, const char *rel, off_t off,
        size_t len, unsigned seed)
{
	int fd = x_open(s, rel, O_WRONLY, 0);
	write_pattern(s, fd, off, len, seed);
	x_close(s, fd);
	m_add_op(m_inode(M, rel), off, len, seed, false);
}

static void
m_append(struct model *M, const struct side *s, const char *rel, size_t len,
         unsigned seed)
{
	m_write(M, s, rel, m_inode(M, rel)->size, len, seed);
}

/* Store the pattern through a shared mapping; the file must cover it. */
static void
m_mmap_write(struct model *M, const struct side *s, const char *rel, off_t off,
             size_t len, unsigned seed)
{
	struct minode *mi = m_inode(M, rel);
	ASSERT_LE(off + (off_t)len, mi->size);
	int fd = x_open(s, rel, O_RDWR, 0);
	off_t moff = off & ~(off_t)(PG - 1);
	size_t mlen = (size_t)(off - moff) + len;
	int prot = PROT_READ | PROT_WRITE;
	unsigned char *map = s->kernel ? mmap(NULL, mlen, prot, MAP_SHARED, fd, moff)
	                               : pw_mmap(NULL, mlen, prot, MAP_SHARED, fd, moff);
	ASSERT(map != MAP_FAILED);
	pat_fill(map + (off - moff), len, seed, (uint64_t)off);
	ASSERT_OK(s->kernel ? msync(map, mlen, MS_SYNC) : pw_msync(map, mlen, MS_SYNC));
	ASSERT_OK(s->kernel ? munmap(map, mlen) : pw_munmap(map, mlen));
	x_close(s, fd);
	m_add_op(mi, off, len, seed, false);
}

/* Store through a shared mapping into the last page past end of file,
 * which is allowed and changes nothing in the file: the writer must zero
 * those bytes before the block goes to disk, or whoever later extends the
 * file will read them. */
static void
m_mmap_scribble(struct model *M, const struct side *s, const char *rel)
{
	struct minode *mi = m_inode(M, rel);
	off_t moff = mi->size & ~(off_t)(PG - 1);
	size_t in = (size_t)(mi->size - moff);
	ASSERT_GT(in, 0);
	int fd = x_open(s, rel, O_RDWR, 0);
	int prot = PROT_READ | PROT_WRITE;
	unsigned char *map = s->kernel ? mmap(NULL, PG, prot, MAP_SHARED, fd, moff)
	                               : pw_mmap(NULL, PG, prot, MAP_SHARED, fd, moff);
	ASSERT(map != MAP_FAILED);
	memset(map + in, 0xEE, PG - in);
	ASSERT_OK(s->kernel ? msync(map, PG, MS_SYNC) : pw_msync(map, PG, MS_SYNC));
	ASSERT_OK(s->kernel ? munmap(map, PG) : pw_munmap(map, PG));
	x_close(s, fd);
}

static void
m_truncate(struct model *M, const struct side *s, const char *rel, off_t size)
{
	int fd = x_open(s, rel, O_WRONLY, 0);
	SIDE_OK(s, s->kernel ? ftruncate(fd, size) : pw_ftruncate(fd, size), rel);
	x_close(s, fd);
	m_add_op(m_inode(M, rel), size, 0, 0, true);
}

static void
m_mkdir(struct model *M, const struct side *s, const char *rel, mode_t perm)
{
	SIDE_OK(s, s->kernel ? mkdir(spath(s, rel), perm) : pw_mkdir(spath(s, rel), perm), rel);
	m_add_name(M, rel, m_new_inode(M, M_DIR, perm));
	m_touch_parent(M, rel);
}

static void
m_unlink(struct model *M, const struct side *s, const char *rel)
{
	SIDE_OK(s, s->kernel ? unlink(spath(s, rel)) : pw_unlink(spath(s, rel)), rel);
	M->nm[m_find(M, rel)].live = false;
	m_touch_parent(M, rel);
}

static void
m_rmdir(struct model *M, const struct side *s, const char *rel)
{
	SIDE_OK(s, s->kernel ? rmdir(spath(s, rel)) : pw_rmdir(spath(s, rel)), rel);
	M->nm[m_find(M, rel)].live = false;
	m_touch_parent(M, rel);
}

/* Rename from to to (replacing a file there); a directory takes its whole
 * subtree along. */
static void
m_rename(struct model *M, const struct side *s, const char *from, const char *to)
{
	SIDE_OK(s, s->kernel ? rename(spath(s, from), spath(s, to))
	                  : pw_rename(spath(s, from), spath(s, to)), from);
	int victim = m_find(M, to);
	if (victim >= 0)
		M->nm[victim].live = false;
	int i = m_find(M, from);
	struct minode *mi = &M->in[M->nm[i].in];
	m_touch_parent(M, from);
	size_t flen = strlen(from);
	for (int k = 0; k < M->nnm; k++) {
		char *p = M->nm[k].path;
		if (!M->nm[k].live || strncmp(p, from, flen) != 0 || (p[flen] && p[flen] != '/'))
			continue;
		char np[96];
		XSNPRINTF(np, sizeof(np), "%s%s", to, p + flen);
		memcpy(p, np, sizeof(np));
	}
	m_touch_parent(M, to);
	if (mi->type == M_DIR)
		mi->mt = MT_UNKNOWN; /* its ".." changed */
}

static void
m_link(struct model *M, const struct side *s, const char *from, const char *to)
{
	SIDE_OK(s, s->kernel ? link(spath(s, from), spath(s, to))
	                     : pw_link(spath(s, from), spath(s, to)), to);
	m_add_name(M, to, M->nm[m_find(M, from)].in);
	m_touch_parent(M, to);
}

static void
m_symlink(struct model *M, const struct side *s, const char *target, const char *rel)
{
	SIDE_OK(s, s->kernel ? symlink(target, spath(s, rel)) : pw_symlink(target, spath(s, rel)),
	        rel);
	int in = m_new_inode(M, M_LNK, 0777);
	XSNPRINTF(M->in[in].target, sizeof(M->in[0].target), "%s", target);
	M->in[in].size = (off_t)strlen(target);
	m_add_name(M, rel, in);
	m_touch_parent(M, rel);
}

/* Kernel only: pagewright has no fifos. */
static void
m_mkfifo(struct model *M, const struct side *s, const char *rel, mode_t perm)
{
	ASSERT(s->kernel);
	SIDE_OK(s, mkfifo(spath(s, rel), perm), rel);
	m_add_name(M, rel, m_new_inode(M, M_FIFO, perm));
	m_touch_parent(M, rel);
}

static void
m_chown(struct model *M, const struct side *s, const char *rel, uid_t uid, gid_t gid)
{
	SIDE_OK(s, s->kernel ? lchown(spath(s, rel), uid, gid) : pw_lchown(spath(s, rel), uid, gid),
	        rel);
	struct minode *mi = m_inode(M, rel);
	mi->uid = uid;
	mi->gid = gid;
}

/* Give every inode a distinct mtime with nanoseconds. */
static void
m_set_times(struct model *M, const struct side *s)
{
	bool *done = calloc((size_t)M->nin, 1);
	ASSERT(done != NULL);
	for (int i = 0; i < M->nnm; i++) {
		int in = M->nm[i].in;
		if (!M->nm[i].live || done[in])
			continue;
		done[in] = true;
		struct minode *mi = &M->in[in];
		struct timespec ts[2];
		ts[1].tv_sec = 1400000000 + 9973 * (time_t)in;
		ts[1].tv_nsec = ((long)in * 104729 + 17) % 1000000000L;
		ts[0] = ts[1];
		const char *path = spath(s, M->nm[i].path);
		SIDE_OK(s, s->kernel ? utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW)
		                     : pw_utimens(path, ts, AT_SYMLINK_NOFOLLOW),
		        M->nm[i].path);
		mi->mtime = ts[1];
		/* pagewright keeps nanoseconds only in inodes with extra fields,
		 * which it does not give the inodes it makes (as ext2) */
		mi->mt = s->kernel && kernel_nsec ? MT_EXACT : MT_LOOSE;
	}
	free(done);
}

/* After a side's turn: learn inode numbers and i_blocks (the writer's
 * word for the reader to agree with), and the mtimes nobody set. */
static void
m_capture(struct model *M, const struct side *s)
{
	if (s->kernel) {
		int dfd = open(s->root, O_RDONLY | O_DIRECTORY);
		ASSERT_GE(dfd, 0);
		ASSERT_OK(syncfs(dfd));
		close(dfd);
	} else {
		ASSERT_OK(pw_sync());
	}
	for (int i = 0; i < M->nnm; i++) {
		struct mname *nm = &M->nm[i];
		struct minode *mi = &M->in[nm->in];
		if (!nm->live || (mi->type == M_LNK && !s->kernel))
			continue;
		struct stat st;
		SIDE_OK(s, x_stat(s, nm->path, &st), nm->path);
		if (mi->ino == 0)
			mi->ino = st.st_ino;
		ASSERT_EQ(st.st_ino, mi->ino);
		mi->blocks = st.st_blocks;
		if (mi->mt == MT_UNKNOWN) {
			mi->mtime = st.st_mtim;
			mi->mt = s->kernel && kernel_nsec ? MT_EXACT : MT_LOOSE;
		}
	}
}

/* --------------------------------------------------------- checking */

#define V_EQ(what, got, want)                                                  \
	do {                                                                       \
		int64_t g_ = (int64_t)(got), w_ = (int64_t)(want);                     \
		if (g_ != w_) {                                                        \
			fprintf(stderr, "%s:%d: %s reads /%s: %s is %" PRId64              \
			        " (0%" PRIo64 "), want %" PRId64 " (0%" PRIo64 ")\n",       \
			        __FILE__, __LINE__, side_name(s), path, what, g_, g_, w_,  \
			        w_);                                                       \
			abort();                                                           \
		}                                                                      \
	} while (0)

/* The bytes [off, off + n) of the model's file. */
static void
m_expect(const struct minode *mi, off_t off, size_t n, unsigned char *buf)
{
	memset(buf, 0, n);
	off_t end = off + (off_t)n;
	for (int k = 0; k < mi->nops; k++) {
		const struct mop *o = &mi->ops[k];
		if (o->trunc) {
			if (o->off < end) {
				off_t lo = PW_MAX(o->off, off);
				memset(buf + (lo - off), 0, (size_t)(end - lo));
			}
			continue;
		}
		off_t lo = PW_MAX(o->off, off), hi = PW_MIN(o->off + (off_t)o->len, end);
		if (lo < hi)
			pat_fill(buf + (lo - off), (size_t)(hi - lo), o->seed, (uint64_t)lo);
	}
}

static void
check_range(const struct side *s, const char *path, int fd,
            const struct minode *mi, off_t off, off_t len)
{
	off = PW_MAX(off, (off_t)0);
	off_t end = PW_MIN(off + len, mi->size);
	if (off >= end)
		return;
	size_t n = (size_t)(end - off);
	unsigned char *got = xmalloc(n), *want = xmalloc(n);
	for (size_t done = 0; done < n;) {
		ssize_t r = x_pread(s, fd, got + done, n - done, off + (off_t)done);
		if (r <= 0) {
			fprintf(stderr, "%s reads /%s: pread at %lld gave %zd (%s)\n", side_name(s),
			        path, (long long)(off + (off_t)done), r, strerror(errno));
			abort();
		}
		done += (size_t)r;
	}
	m_expect(mi, off, n, want);
	for (size_t k = 0; k < n; k++)
		if (got[k] != want[k]) {
			fprintf(stderr, "%s reads /%s: byte %lld is 0x%02x, want 0x%02x\n",
			        side_name(s), path, (long long)(off + (off_t)k), got[k], want[k]);
			abort();
		}
	free(got);
	free(want);
}

/* Every byte of a file up to 8 MiB; of a larger (sparse) one, every write
 * with a few pages around it, 17 samples across, and the end. */
static void
check_content(const struct side *s, const char *path, const struct minode *mi)
{
	int fd = x_open(s, path, O_RDONLY, 0);
	off_t size = mi->size, pg = (off_t)PG;
	if (size <= 8 * MiB) {
		for (off_t off = 0; off < size; off += MiB)
			check_range(s, path, fd, mi, off, MiB);
	} else {
		for (int k = 0; k < mi->nops; k++)
			if (!mi->ops[k].trunc)
				check_range(s, path, fd, mi, (mi->ops[k].off & ~(pg - 1)) - 2 * pg,
				            (off_t)mi->ops[k].len + 5 * pg);
		for (int k = 0; k <= 16; k++)
			check_range(s, path, fd, mi, (size / 16 * k) & ~(pg - 1), 2 * pg);
		check_range(s, path, fd, mi, size - 3 * pg, 3 * pg);
	}
	char c;
	V_EQ("a read at the end", x_pread(s, fd, &c, 1, size), 0);
	x_close(s, fd);
}

static unsigned char
dtype_of(int type)
{
	static const unsigned char dt[] = {[M_DIR] = DT_DIR, [M_REG] = DT_REG,
	                                   [M_LNK] = DT_LNK, [M_FIFO] = DT_FIFO};
	return dt[type];
}

static mode_t
ifmt_of(int type)
{
	static const mode_t fmt[] = {[M_DIR] = S_IFDIR, [M_REG] = S_IFREG,
	                             [M_LNK] = S_IFLNK, [M_FIFO] = S_IFIFO};
	return fmt[type];
}

/* The directory lists ".", ".." and exactly its children in the model. */
static void
check_listing(const struct model *M, const struct side *s, const char *path)
{
	enum { MAXD = 1024 };
	struct dent *d = xmalloc(sizeof(*d) * MAXD);
	int n = x_list(s, path, d, MAXD);
	bool *seen = calloc((size_t)M->nnm, 1);
	ASSERT(seen != NULL);
	char par[96];
	int self = m_find(M, path);
	int parent = m_find(M, path[0] ? m_parent(path, par, sizeof(par)) : "");
	int want = 0, dots = 0;
	for (int i = 0; i < M->nnm; i++)
		if (M->nm[i].live && M->nm[i].path[0] &&
		    strcmp(m_parent(M->nm[i].path, par, sizeof(par)), path) == 0)
			want++;
	for (int k = 0; k < n; k++) {
		int i;
		if (strcmp(d[k].name, ".") == 0 || strcmp(d[k].name, "..") == 0) {
			i = d[k].name[1] ? parent : self;
			dots++;
		} else {
			char child[96];
			XSNPRINTF(child, sizeof(child), "%s%s%s", path, path[0] ? "/" : "", d[k].name);
			i = m_find(M, child);
			if (i < 0 || seen[i]) {
				fprintf(stderr, "%s reads /%s: %s entry %s\n", side_name(s), path,
				        i < 0 ? "unexpected" : "a second", d[k].name);
				abort();
			}
			seen[i] = true;
		}
		const struct minode *mi = &M->in[M->nm[i].in];
		char what[300];
		XSNPRINTF(what, sizeof(what), "d_type of entry %s", d[k].name);
		V_EQ(what, d[k].type, dtype_of(mi->type));
		if (mi->ino) {
			XSNPRINTF(what, sizeof(what), "d_ino of entry %s", d[k].name);
			V_EQ(what, d[k].ino, mi->ino);
		}
	}
	V_EQ("the number of entries", n, want + 2);
	V_EQ("the number of dot entries", dots, 2);
	free(seen);
	free(d);
}

static void
check_mtime(const struct side *s, const char *path, const struct minode *mi,
            const struct stat *st)
{
	if (mi->mt == MT_UNKNOWN)
		return;
	V_EQ("mtime (seconds)", st->st_mtim.tv_sec, mi->mtime.tv_sec);
	if (mi->mt == MT_EXACT || st->st_mtim.tv_nsec != 0)
		V_EQ("mtime (nanoseconds)", st->st_mtim.tv_nsec, mi->mtime.tv_nsec);
}

/* Check the whole tree on side s against the model. */
static void
verify(const struct model *M, const struct side *s)
{
	double t0 = now_s();
	int files = 0, dirs = 0, links = 0, fifos = 0;
	for (int i = 0; i < M->nnm; i++) {
		const struct mname *nm = &M->nm[i];
		const struct minode *mi = &M->in[nm->in];
		const char *path = nm->path;
		if (!nm->live)
			continue;
		struct stat st;
		SIDE_OK(s, x_stat(s, path, &st), path);
		V_EQ("the type", st.st_mode & S_IFMT, ifmt_of(mi->type));
		V_EQ("the permission bits", st.st_mode & 07777, mi->perm);
		V_EQ("the owner", st.st_uid, mi->uid);
		V_EQ("the group", st.st_gid, mi->gid);
		V_EQ("the link count", st.st_nlink, m_nlink(M, nm->in));
		if (mi->ino)
			V_EQ("the inode number", st.st_ino, mi->ino);
		if (mi->blocks >= 0)
			V_EQ("i_blocks", st.st_blocks, mi->blocks);
		check_mtime(s, path, mi, &st);
		if (mi->type != M_DIR)
			V_EQ("the size", st.st_size, mi->size);
		if (mi->type == M_REG) {
			check_content(s, path, mi);
			files++;
		} else if (mi->type == M_DIR) {
			check_listing(M, s, path);
			dirs++;
		} else if (mi->type == M_FIFO) {
			fifos++;
		} else {
			char t[256];
			ssize_t r = s->kernel ? readlink(spath(s, path), t, sizeof(t))
			                      : pw_readlink(spath(s, path), t, sizeof(t));
			V_EQ("the target's length", r, (ssize_t)strlen(mi->target));
			ASSERT_MEM_EQ(t, mi->target, (size_t)r);
			links++;
		}
	}
	TLOG("%s read the tree: %d files, %d directories, %d symlinks, %d fifos, as "
	     "the model says (%.2f s)", side_name(s), files, dirs, links, fifos,
	     now_s() - t0);
}

/*
 * debugfs, on the unmounted image: each inode's i_blocks is what the
 * model has (the writer's stat), and counts exactly the blocks the inode
 * maps (data and indirect, plus an xattr block).
 */
static void
check_blocks_debugfs(const struct model *M, const struct img *im)
{
	char cmds[600];
	XSNPRINTF(cmds, sizeof(cmds), "%s/debugfs-cmds", test_tmpdir());
	FILE *f = fopen(cmds, "w");
	ASSERT(f != NULL);
	int asked = 0;
	bool *done = calloc((size_t)M->nin, 1);
	ASSERT(done != NULL);
	for (int i = 0; i < M->nnm; i++) {
		int in = M->nm[i].in;
		if (!M->nm[i].live || done[in] || !M->in[in].ino)
			continue;
		done[in] = true;
		fprintf(f, "stat <%lu>\n", (unsigned long)M->in[in].ino);
		asked++;
	}
	fclose(f);
	free(done);
	char cmd[1400];
	XSNPRINTF(cmd, sizeof(cmd), "debugfs -f '%s' '%s' 2>&1", cmds, im->path);
	fflush(NULL);
	FILE *p = popen(cmd, "r");
	ASSERT(p != NULL);
	char line[8192];
	unsigned long ino = 0, acl = 0;
	long long count = -1, total = 0;
	int checked = 0;
	for (bool eof = false; !eof;) {
		eof = fgets(line, sizeof(line), p) == NULL;
		if (eof || strncmp(line, "debugfs:", 8) == 0) {
			if (ino) {
				const struct minode *mi = NULL;
				for (int k = 0; k < M->nin; k++)
					if (M->in[k].ino == ino)
						mi = &M->in[k];
				ASSERT(mi != NULL);
				long long maps = total + (acl ? 1 : 0);
				if (count != maps * (im->bs / 512) ||
				    (mi->blocks >= 0 && count != (long long)mi->blocks)) {
					fprintf(stderr, "debugfs: inode %lu has Blockcount %lld; it maps "
					        "%lld blocks of %u bytes; the writer's stat said %lld\n",
					        ino, count, maps, im->bs, (long long)mi->blocks);
					abort();
				}
				checked++;
			}
			ino = acl = 0;
			count = -1;
			total = 0;
			continue;
		}
		const char *q;
		if (strncmp(line, "Inode: ", 7) == 0)
			ino = strtoul(line + 7, NULL, 10);
		else if ((q = strstr(line, "Blockcount: ")) != NULL)
			count = strtoll(q + 12, NULL, 10);
		else if (strncmp(line, "File ACL: ", 10) == 0)
			acl = strtoul(line + 10, NULL, 10);
		else if (strncmp(line, "TOTAL: ", 7) == 0)
			total = strtoll(line + 7, NULL, 10);
		else if (strstr(line, "not found") || strstr(line, "rror"))
			fprintf(stderr, "debugfs: %s", line);
	}
	pclose(p);
	ASSERT_EQ(checked, asked);
	TLOG("debugfs: i_blocks of %d inodes count exactly the blocks they map", checked);
}

/*
 * On the unmounted image: in each file's last block, the bytes past end of
 * file are zero, as Linux keeps them (block_write_full_page zeroes the
 * page past i_size, truncation zeroes the cut block's tail).  The kernel's
 * ext2 driver relies on it when it extends a file, and so do older ext4
 * drivers; newer ones zero the tail themselves, which would hide stores
 * through a mapping past end of file that reached the disk.
 */
static void
check_eof_tails(const struct model *M, const struct img *im)
{
	char cmds[600];
	XSNPRINTF(cmds, sizeof(cmds), "%s/debugfs-bmap", test_tmpdir());
	FILE *f = fopen(cmds, "w");
	ASSERT(f != NULL);
	const struct minode *asked[MAX_INODES];
	int nasked = 0;
	bool *done = calloc((size_t)M->nin, 1);
	ASSERT(done != NULL);
	for (int i = 0; i < M->nnm; i++) {
		int in = M->nm[i].in;
		const struct minode *mi = &M->in[in];
		if (!M->nm[i].live || done[in] || mi->type != M_REG || !mi->ino ||
		    mi->size % im->bs == 0)
			continue;
		done[in] = true;
		fprintf(f, "bmap <%lu> %lld\n", (unsigned long)mi->ino,
		        (long long)(mi->size / im->bs));
		asked[nasked++] = mi;
	}
	fclose(f);
	free(done);
	char cmd[1400];
	XSNPRINTF(cmd, sizeof(cmd), "debugfs -f '%s' '%s' 2>/dev/null", cmds, im->path);
	fflush(NULL);
	FILE *p = popen(cmd, "r");
	ASSERT(p != NULL);
	int fd = open(im->path, O_RDONLY);
	ASSERT_GE(fd, 0);
	unsigned char *blk = xmalloc(im->bs);
	char line[512];
	int k = -1, checked = 0;
	while (fgets(line, sizeof(line), p)) {
		if (strncmp(line, "debugfs: bmap", 13) == 0) {
			k++;
			continue;
		}
		if (k < 0 || k >= nasked)
			continue;
		unsigned long long phys = strtoull(line, NULL, 10);
		if (phys == 0)
			continue; /* a hole */
		const struct minode *mi = asked[k];
		ASSERT_EQ(pread(fd, blk, im->bs, (off_t)(phys * im->bs)), (ssize_t)im->bs);
		for (unsigned b = (unsigned)(mi->size % im->bs); b < im->bs; b++)
			if (blk[b]) {
				fprintf(stderr, "inode %lu (size %lld): byte %u of its last block "
				        "(block %llu), past end of file, is 0x%02x on disk, not 0\n",
				        (unsigned long)mi->ino, (long long)mi->size, b, phys, blk[b]);
				abort();
			}
		checked++;
	}
	pclose(p);
	close(fd);
	free(blk);
	ASSERT_EQ(k + 1, nasked);
	TLOG("on disk, the last blocks of %d files are zero past end of file", checked);
}

/* ------------------------------------------------------ the scenarios */

static const char *
many_name(int i)
{
	static char b[96];
	XSNPRINTF(b, sizeof(b), "many/entry-with-a-fairly-long-name-%04d", i);
	return b;
}

#define NMANY 400

/* The tree, built on either side. */
static void
build_tree(struct model *M, const struct side *s, unsigned bs)
{
	char p[96];
	off_t b = bs, pg = (off_t)PG, per = bs / 4;
	/* small files around block and page boundaries, assorted modes */
	static const mode_t perms[] = {0644, 0600, 0755, 0444, 04755, 02750,
	                               0640, 0666, 0700, 0604, 0755, 0644};
	const off_t sizes[] = {1, 100, b - 1, b, b + 1, pg - 1,
	                       pg, pg + 1, 12 * b - 1, 12 * b + 1, 50000, 300000};
	m_mkdir(M, s, "small", 0755);
	for (int i = 0; i < (int)PW_ARRAY_SIZE(sizes); i++) {
		XSNPRINTF(p, sizeof(p), "small/f%02d", i);
		m_create(M, s, p, perms[i], (size_t)sizes[i], 100 + (unsigned)i);
	}
	m_create(M, s, "empty", 0640, 0, 0);
	/* holes inside and at the end */
	m_create(M, s, "holes", 0644, 5000, 200);
	m_write(M, s, "holes", 3 * pg + 17, 9000, 201);
	m_write(M, s, "holes", 20 * b, 1, 202);
	m_truncate(M, s, "holes", 300000);
	/* sparse: data across the direct/indirect, indirect/double and
	 * double/triple boundaries, at 70 MiB and near 1 GiB */
	off_t l1 = 12 * b, l2 = l1 + per * b, l3 = l2 + per * per * b;
	m_create(M, s, "big", 0644, 3000, 300);
	m_write(M, s, "big", l1 - 100, 200, 301);
	m_write(M, s, "big", l2 - 100, 200, 302);
	m_write(M, s, "big", 70 * MiB + 5, 10000, 303);
	m_write(M, s, "big", GiB - 3000, 6000, 304);
	m_write(M, s, "big", l3 - 100, 200, 305);
	/* a directory of many blocks, with holes left by deletions */
	m_mkdir(M, s, "many", 0755);
	for (int i = 0; i < NMANY; i++)
		m_create(M, s, many_name(i), 0644, (size_t)(i % 37), 1000 + (unsigned)i);
	for (int i = 0; i < NMANY; i += 7)
		m_unlink(M, s, many_name(i));
	/* nested directories, each with a file */
	static const char *const nest[] = {"a", "a/b", "a/b/c", "a/b/c/d", "a/b/c/d/e"};
	static const mode_t nperm[] = {0755, 0750, 0700, 0711, 01777};
	for (int i = 0; i < 5; i++) {
		m_mkdir(M, s, nest[i], nperm[i]);
		XSNPRINTF(p, sizeof(p), "%s/leaf", nest[i]);
		m_create(M, s, p, 0644, 100 * (size_t)(i + 1), 400 + (unsigned)i);
	}
	/* freed inodes and blocks */
	m_create(M, s, "doomed", 0644, 300000, 410);
	m_unlink(M, s, "doomed");
	m_mkdir(M, s, "gone", 0755);
	m_create(M, s, "gone/x", 0644, 5000, 411);
	m_unlink(M, s, "gone/x");
	m_rmdir(M, s, "gone");
	/* stores through a shared mapping, the last page partial */
	m_create(M, s, "mapped", 0644, 0, 0);
	m_truncate(M, s, "mapped", 5 * pg + 100);
	m_mmap_write(M, s, "mapped", 100, 3 * PG, 500);
	m_mmap_write(M, s, "mapped", 5 * pg, 100, 501);
	m_mmap_scribble(M, s, "mapped");
	m_create(M, s, "tail", 0644, (size_t)(2 * pg + b / 2 + 3), 502);
	m_mmap_scribble(M, s, "tail");
	/* truncation down (into the direct blocks) and up, then a write */
	m_create(M, s, "trunc", 0644, 200000, 600);
	m_truncate(M, s, "trunc", 12 * b + 7);
	m_truncate(M, s, "trunc", 100000);
	m_write(M, s, "trunc", 90000, 500, 601);
	/* renames across directories, of a file, a directory, over a file */
	m_create(M, s, "a/b/mv_src", 0644, 7777, 700);
	m_rename(M, s, "a/b/mv_src", "small/mv_dst");
	m_mkdir(M, s, "x", 0755);
	m_mkdir(M, s, "x/y", 0755);
	m_create(M, s, "x/y/z", 0644, 1234, 701);
	m_rename(M, s, "x/y", "a/y2");
	m_rmdir(M, s, "x");
	m_create(M, s, "small/victim", 0644, 999, 702);
	m_create(M, s, "ovr", 0644, 4321, 703);
	m_rename(M, s, "ovr", "small/victim");
	m_mkdir(M, s, "r1", 0750);
	m_create(M, s, "r1/in", 0644, 10, 704);
	m_mkdir(M, s, "a/r2", 0755);
	m_rename(M, s, "r1", "a/r2"); /* over an empty directory */
	/* written in order: contiguous blocks through the indirect ones into
	 * the double-indirect blocks at every block size */
	m_create(M, s, "seq", 0644, (size_t)(5 * MiB + 123), 710);
}

/* Hard links, symlinks, owners, times (and on the kernel's side, which
 * alone can make one, a fifo). */
static void
kernel_extras(struct model *M, const struct side *k)
{
	m_link(M, k, "small/f01", "a/hl1");
	m_link(M, k, "small/f01", "a/b/hl2");
	m_link(M, k, "empty", "empty2");
	m_symlink(M, k, "small/f01", "lnk_fast");
	m_symlink(M, k, "/a/target/long/enough/that/it/does/not/fit/in/the/inode/"
	                "itself/and/so/needs/a/block/of/its/own/0123456789", "lnk_slow");
	m_symlink(M, k, "../empty", "a/lnk");
	m_chown(M, k, "small/f02", 1234, 5678);
	m_chown(M, k, "a/b", 42, 43);
	m_chown(M, k, "small/f06", 70000, 80000); /* needs i_uid_high, i_gid_high */
	if (k->kernel)
		m_mkfifo(M, k, "a/fifo", 0620);
	m_set_times(M, k);
}

/* The big directory: say whether the kernel indexed it. */
static void
log_index(const struct img *im, const char *when)
{
	unsigned long fl = image_flags(im, "many");
	TLOG("%s: /many has %s (flags 0x%lx)", when,
	     fl & 0x1000 ? "a hash index" : "no hash index", fl);
}

static void
kernel_writes(unsigned bs, bool dir_index)
{
	kernel_probe();
	double t0 = now_s();
	struct img im;
	img_make(&im, dir_index ? "kwx" : "kw", bs, dir_index);
	struct side k, p;
	side_init(&k, &im, true);
	side_init(&p, &im, false);
	struct model *M = model_new();

	kmount(&im, false);
	build_tree(M, &k, bs);
	kernel_extras(M, &k);
	m_capture(M, &k);
	kumount(&im);
	fsck_clean(&im, "the kernel's writes");
	log_index(&im, "after the kernel");
	bool indexed = image_flags(&im, "many") & 0x1000;

	pmount(&im);
	verify(M, &p);
	/* change a little next to the symlinks and hard links */
	m_create(M, &p, "pw_new", 0600, 7000, 900);
	m_append(M, &p, "small/f01", 3000, 901); /* three names */
	m_unlink(M, &p, "lnk_slow");             /* frees its block */
	m_unlink(M, &p, "a/hl1");
	m_unlink(M, &p, many_name(1));
	m_create(M, &p, "many/pw-added", 0644, 10, 902);
	m_write(M, &p, "mapped", 7 * (off_t)PG, 10, 903); /* the kernel's scribbles */
	m_truncate(M, &p, "tail", 3 * (off_t)PG);          /* are not on disk */
	m_capture(M, &p);
	pumount(&im);
	fsck_clean(&im, "pagewright's changes");
	check_blocks_debugfs(M, &im);
	check_eof_tails(M, &im);
	if (indexed) {
		ASSERT_EQ(image_flags(&im, "many") & 0x1000, 0);
		TLOG("pagewright changed /many as a linear directory and cleared its index flag");
	}

	kmount(&im, true);
	verify(M, &k);
	kumount(&im);
	free(M);
	TLOG("block size %u%s: %.2f s", bs, dir_index ? ", dir_index" : "", now_s() - t0);
}

static void
pw_writes(unsigned bs)
{
	kernel_probe();
	double t0 = now_s();
	struct img im;
	img_make(&im, "pw", bs, true);
	struct side k, p;
	side_init(&k, &im, true);
	side_init(&p, &im, false);
	struct model *M = model_new();

	pmount(&im);
	build_tree(M, &p, bs);
	kernel_extras(M, &p);
	m_capture(M, &p);
	verify(M, &p);
	pumount(&im);
	fsck_clean(&im, "pagewright's writes");
	check_blocks_debugfs(M, &im);
	check_eof_tails(M, &im);

	kmount(&im, true);
	verify(M, &k);
	kumount(&im);

	/* what pagewright stored past the end of file through its mappings
	 * must not be on disk: the kernel extends those files (by a write
	 * past the end, by truncation) and reads zeros up to the new data */
	kmount(&im, false);
	m_write(M, &k, "mapped", 7 * (off_t)PG, 10, 950);
	m_truncate(M, &k, "tail", 3 * (off_t)PG);
	check_content(&k, "mapped", m_inode(M, "mapped"));
	check_content(&k, "tail", m_inode(M, "tail"));
	m_capture(M, &k);
	kumount(&im);
	fsck_clean(&im, "the kernel's extensions");
	pmount(&im);
	verify(M, &p);
	pumount(&im);
	free(M);
	TLOG("block size %u: %.2f s", bs, now_s() - t0);
}

static void
round_trip(unsigned bs)
{
	kernel_probe();
	double t0 = now_s();
	struct img im;
	img_make(&im, "rt", bs, true);
	struct side k, p;
	side_init(&k, &im, true);
	side_init(&p, &im, false);
	struct model *M = model_new();
	char name[96];

	/* 1. the kernel builds */
	kmount(&im, false);
	build_tree(M, &k, bs);
	kernel_extras(M, &k);
	m_capture(M, &k);
	kumount(&im);
	fsck_clean(&im, "the kernel's writes");
	log_index(&im, "after the kernel");

	/* 2. pagewright checks and changes */
	pmount(&im);
	verify(M, &p);
	m_append(M, &p, "small/f05", 5000, 800);
	m_append(M, &p, "small/f06", 3333, 804);   /* a 32-bit owner to write back */
	m_rename(M, &p, "many", "a/many");          /* ".." of a hashed directory */
	m_rename(M, &p, "a/many", "many");
	m_truncate(M, &p, "tail", 3 * PG);          /* over the kernel's scribbles */
	m_truncate(M, &p, "small/f09", bs / 2 + 3); /* down, mid-block ... */
	m_mmap_scribble(M, &p, "small/f09");        /* ... and garbage past the end */
	m_write(M, &p, "holes", 21 * (off_t)bs + 7, 1, 805); /* a hole block beside data */
	m_write(M, &p, "holes", 2000, 10000, 801);        /* over data and hole */
	m_write(M, &p, "big", 70 * MiB - 5000, 20000, 802);
	m_truncate(M, &p, "small/f10", 1000);
	m_truncate(M, &p, "holes", MiB);                  /* up: a hole */
	m_truncate(M, &p, "big", 80 * MiB);               /* frees the far blocks */
	m_mmap_write(M, &p, "small/f11", 1000, 2 * PG, 803);
	for (int i = 0; i < 50; i++) {
		XSNPRINTF(name, sizeof(name), "many/pw-new-%02d", i);
		m_create(M, &p, name, 0644, (size_t)i * 100, 810 + (unsigned)i);
	}
	for (int i = 1; i < NMANY; i += 5)
		if (m_find(M, many_name(i)) >= 0)
			m_unlink(M, &p, many_name(i));
	m_mkdir(M, &p, "pwdir", 0755);
	m_create(M, &p, "pwdir/f", 0644, 3 * bs + 5, 870);
	m_unlink(M, &p, "a/hl1");
	m_unlink(M, &p, "lnk_fast");
	m_unlink(M, &p, "a/fifo");
	m_unlink(M, &p, "a/b/c/d/e/leaf");
	m_rmdir(M, &p, "a/b/c/d/e");
	m_rename(M, &p, "small/f03", "a/b/c/f03");
	m_rename(M, &p, "a/y2", "pwdir/y3");
	m_capture(M, &p);
	verify(M, &p);
	pumount(&im);
	fsck_clean(&im, "pagewright's changes");
	check_blocks_debugfs(M, &im);
	check_eof_tails(M, &im);
	log_index(&im, "after pagewright");

	/* 3. the kernel checks and changes */
	kmount(&im, false);
	verify(M, &k);
	m_append(M, &k, "small/f05", 3000, 900);
	m_write(M, &k, "pwdir/f", 0, 100, 901);
	m_truncate(M, &k, "big", 3 * MiB);
	m_write(M, &k, "big", 100 * MiB, 4096, 902);
	m_create(M, &k, "k2", 0640, 12345, 903);
	for (int i = 2; i < NMANY; i += 9)
		if (m_find(M, many_name(i)) >= 0)
			m_unlink(M, &k, many_name(i));
	for (int i = 0; i < 20; i++) {
		XSNPRINTF(name, sizeof(name), "many/k-%02d", i);
		m_create(M, &k, name, 0644, (size_t)i * 333, 910 + (unsigned)i);
	}
	m_mkdir(M, &k, "kdir", 0755);
	m_rename(M, &k, "pwdir/y3", "kdir/y4");
	m_mmap_write(M, &k, "trunc", 4096, 8192, 930);
	m_truncate(M, &k, "small/f09", 3 * (off_t)bs); /* pagewright's tail reads as zeros */
	m_write(M, &k, "mapped", 7 * (off_t)PG, 10, 931); /* beyond the scribbles */
	m_write(M, &k, "holes", 22 * (off_t)bs + 9, 1, 932);
	m_truncate(M, &k, "small/f08", 5 * (off_t)bs + 1);
	m_mmap_scribble(M, &k, "small/f08");
	m_capture(M, &k);
	kumount(&im);
	fsck_clean(&im, "the kernel's changes");

	/* 4. pagewright checks, and extends what the kernel cut and scribbled past */
	pmount(&im);
	verify(M, &p);
	m_truncate(M, &p, "small/f08", 8 * (off_t)bs);
	check_content(&p, "small/f08", m_inode(M, "small/f08"));
	m_capture(M, &p);
	pumount(&im);
	fsck_clean(&im, "pagewright's last mount");
	check_blocks_debugfs(M, &im);
	check_eof_tails(M, &im);
	free(M);
	TLOG("block size %u: %.2f s", bs, now_s() - t0);
}

TEST(interop_kernel_writes_1k) { kernel_writes(1024, false); }
TEST(interop_kernel_writes_2k) { kernel_writes(2048, false); }
TEST(interop_kernel_writes_4k) { kernel_writes(4096, false); }
TEST(interop_kernel_writes_dir_index_1k) { kernel_writes(1024, true); }
TEST(interop_kernel_writes_dir_index_2k) { kernel_writes(2048, true); }
TEST(interop_kernel_writes_dir_index_4k) { kernel_writes(4096, true); }
TEST(interop_pw_writes_1k) { pw_writes(1024); }
TEST(interop_pw_writes_2k) { pw_writes(2048); }
TEST(interop_pw_writes_4k) { pw_writes(4096); }
TEST(interop_round_trip_1k) { round_trip(1024); }
TEST(interop_round_trip_2k) { round_trip(2048); }
TEST(interop_round_trip_4k) { round_trip(4096); }

/*
 * An image the kernel has attached to a loop device is not pagewright's
 * to write, nor to read while the kernel writes it: pw_mount says EBUSY
 * (the kernel's ext2 would serve stale blocks, or pagewright would cache
 * blocks changing under it).  A read-only loop device may be shared with
 * a read-only mount.  Once the loop device is gone the mount works.
 */
TEST(interop_image_in_kernel_use_is_refused)
{
	kernel_probe();
	struct img im;
	char out[4096];
	img_make(&im, "busy", 4096, false);
	kmount(&im, false);
	errno = 0;
	ASSERT_EQ(pw_mount("ext2", im.path, im.pdir, NULL), -1);
	ASSERT_EQ(errno, EBUSY);
	ASSERT_EQ(pw_mount("ext2", im.path, im.pdir, "ro"), -1);
	ASSERT_EQ(errno, EBUSY);
	kumount(&im);
	/* A read-only loop device: read-only mounts only. */
	ASSERT_EQ(sh(out, sizeof(out), "losetup -r -f --show '%s'", im.path), 0);
	out[strcspn(out, "\n")] = 0;
	char loopdev[64];
	XSNPRINTF(loopdev, sizeof(loopdev), "%s", out);
	ASSERT_EQ(pw_mount("ext2", im.path, im.pdir, NULL), -1);
	ASSERT_EQ(errno, EBUSY);
	ASSERT_OK(pw_mount("ext2", im.path, im.pdir, "ro"));
	ASSERT_OK(pw_umount(im.pdir));
	ASSERT_EQ(sh(out, sizeof(out), "losetup -d '%s' 2>&1", loopdev), 0);
	pmount(&im);
	pumount(&im);
	fsck_clean(&im, "the refused mounts");
}

/*
 * Extended attributes both ways: the kernel reads what pagewright wrote
 * (an attribute block), pagewright reads what the kernel wrote (its ext4
 * driver puts small ones inside 256-byte inodes) and changes them, and
 * the kernel then reads the change; e2fsck is clean after each side.
 */
TEST(interop_xattrs)
{
	kernel_probe();
	struct img im;
	char kpath[700], got[256];
	img_make(&im, "xattr", 4096, false);
	pmount(&im);
	char p[300];
	XSNPRINTF(p, sizeof(p), "%s/pf", im.pdir);
	int fd = pw_open(p, O_CREAT | O_RDWR, 0644);
	ASSERT_GE(fd, 0);
	ASSERT_OK(pw_close(fd));
	ASSERT_OK(pw_setxattr(p, "user.from_pw", "pagewright wrote this", 21, 0));
	ASSERT_OK(pw_setxattr(p, "trusted.t", "t", 1, 0));
	pumount(&im);
	fsck_clean(&im, "pagewright's attributes");

	kmount(&im, false);
	XSNPRINTF(kpath, sizeof(kpath), "%s/pf", im.kdir);
	ASSERT_EQ(lgetxattr(kpath, "user.from_pw", got, sizeof(got)), 21);
	ASSERT_MEM_EQ(got, "pagewright wrote this", 21);
	ASSERT_EQ(lgetxattr(kpath, "trusted.t", got, sizeof(got)), 1);
	ASSERT_OK(lsetxattr(kpath, "user.from_kernel", "k", 1, 0));
	XSNPRINTF(kpath, sizeof(kpath), "%s/kf", im.kdir);
	fd = open(kpath, O_CREAT | O_WRONLY, 0644);
	ASSERT_GE(fd, 0);
	close(fd);
	ASSERT_OK(lsetxattr(kpath, "user.small", "in the inode", 12, 0));
	kumount(&im);
	fsck_clean(&im, "the kernel's attributes");

	pmount(&im);
	XSNPRINTF(p, sizeof(p), "%s/kf", im.pdir);
	ASSERT_EQ(pw_getxattr(p, "user.small", got, sizeof(got)), 12);
	ASSERT_MEM_EQ(got, "in the inode", 12);
	ASSERT_OK(pw_setxattr(p, "user.second", "2", 1, 0));
	XSNPRINTF(p, sizeof(p), "%s/pf", im.pdir);
	ASSERT_EQ(pw_getxattr(p, "user.from_kernel", got, sizeof(got)), 1);
	ASSERT_EQ(pw_getxattr(p, "user.from_pw", got, sizeof(got)), 21);
	ASSERT_OK(pw_removexattr(p, "user.from_pw"));
	pumount(&im);
	fsck_clean(&im, "pagewright's changes to the kernel's attributes");

	kmount(&im, true);
	XSNPRINTF(kpath, sizeof(kpath), "%s/kf", im.kdir);
	ASSERT_EQ(lgetxattr(kpath, "user.small", got, sizeof(got)), 12);
	ASSERT_EQ(lgetxattr(kpath, "user.second", got, sizeof(got)), 1);
	XSNPRINTF(kpath, sizeof(kpath), "%s/pf", im.kdir);
	ASSERT_EQ(lgetxattr(kpath, "user.from_pw", got, sizeof(got)), -1);
	ASSERT_EQ(errno, ENODATA);
	ASSERT_EQ(lgetxattr(kpath, "user.from_kernel", got, sizeof(got)), 1);
	kumount(&im);
}

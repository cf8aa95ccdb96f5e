/*
 * test_meta.c - symbolic links, hard links, chmod/chown/utimens and
 * statvfs through the application API, on every filesystem kind.
 *
 * These run on all four kinds, ext2 included (TEST_FS_KINDS leaves ext2
 * out of the write scenarios only because of RLIMIT_FSIZE, which these
 * tests do not touch); an ext2 image must pass `e2fsck -fn` after each.
 * The ext2 on-disk details (fast and slow symlinks, link counts, owners
 * and times across a remount, statvfs against dumpe2fs) are in
 * test_ext2.c.
 */
#include "pwt.h"

#include <limits.h>
#include <sys/statvfs.h>
#include <sys/wait.h>

#define META_KINDS 4

/* Unmount; an ext2 image must then be clean. */
static void
meta_umount(struct tfs *t)
{
	ASSERT_OK(pw_umount(t->mnt));
	if (t->kind != 3)
		return;
	char cmd[800];
	XSNPRINTF(cmd, sizeof(cmd), "e2fsck -fn '%s' >%s/fsck.out 2>&1", t->host,
	          test_tmpdir());
	int st = system(cmd);
	if (st != 0) {
		XSNPRINTF(cmd, sizeof(cmd), "cat %s/fsck.out >&2", test_tmpdir());
		if (system(cmd) != 0)
			TLOG("could not show the e2fsck output");
	}
	ASSERT_EQ(st, 0);
}

/* Per-kind path inside the mount (a small rotating set of buffers). */
static const char *
mp(const struct tfs *t, const char *name)
{
	static __thread char buf[8][256];
	static __thread int n;
	char *b = buf[n++ & 7];
	XSNPRINTF(b, sizeof(buf[0]), "%s/%s", t->mnt, name);
	return b;
}

static void
put_file(const struct tfs *t, const char *name, const char *data)
{
	int fd = pw_open(mp(t, name), O_CREAT | O_TRUNC | O_WRONLY, 0644);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(pw_write(fd, data, strlen(data)), (int64_t)strlen(data));
	ASSERT_OK(pw_close(fd));
}

/* The whole content of a path (followed), or -errno. */
static ssize_t
get_file(const char *path, char *buf, size_t n)
{
	int fd = pw_open(path, O_RDONLY);
	if (fd < 0)
		return -errno;
	ssize_t r = pw_read(fd, buf, n);
	ASSERT_OK(pw_close(fd));
	return r;
}

static unsigned char
dtype_of(const struct tfs *t, const char *name)
{
	PW_DIR *d = pw_opendir(t->mnt);
	ASSERT(d != NULL);
	struct dirent *e;
	unsigned char type = 0xff;
	while ((e = pw_readdir(d)) != NULL)
		if (strcmp(e->d_name, name) == 0)
			type = e->d_type;
	ASSERT_OK(pw_closedir(d));
	return type;
}

/* An address the compiler cannot see through (it would warn about the
 * array parameter otherwise). */
static void *
bad_pointer(void)
{
	volatile uintptr_t a = 8;
	return (void *)a;
}

static int64_t
ts_ns(struct timespec ts)
{
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* -------------------------------------------------------------- symlinks */

TEST(meta_symlink_round_trip)
{
	for (int kind = 0; kind < META_KINDS; kind++) {
		struct tfs t;
		tfs_mount(&t, kind);
		TLOG("%s", test_kind_name(kind));
		put_file(&t, "f", "file data");
		ASSERT_OK(pw_symlink("f", mp(&t, "l")));
		char buf[64];
		memset(buf, 'Z', sizeof(buf));
		ASSERT_EQ(pw_readlink(mp(&t, "l"), buf, sizeof(buf)), 1);
		ASSERT_EQ(buf[0], 'f');
		ASSERT_EQ(buf[1], 'Z'); /* no NUL added */
		/* a short buffer truncates, as readlink(2) */
		ASSERT_OK(pw_symlink("0123456789", mp(&t, "ten")));
		memset(buf, 'Z', sizeof(buf));
		ASSERT_EQ(pw_readlink(mp(&t, "ten"), buf, 4), 4);
		ASSERT_MEM_EQ(buf, "0123Z", 5);

		struct stat st, lst;
		ASSERT_OK(pw_lstat(mp(&t, "l"), &lst));
		ASSERT(S_ISLNK(lst.st_mode));
		ASSERT_EQ(lst.st_size, 1);
		ASSERT_OK(pw_lstat(mp(&t, "ten"), &lst));
		ASSERT_EQ(lst.st_size, 10);
		ASSERT_OK(pw_stat(mp(&t, "l"), &st));
		ASSERT(S_ISREG(st.st_mode));
		ASSERT_EQ(st.st_size, 9);
		ASSERT_NE(st.st_ino, lst.st_ino);
		ASSERT_EQ(get_file(mp(&t, "l"), buf, sizeof(buf)), 9);
		ASSERT_MEM_EQ(buf, "file data", 9);
		ASSERT_EQ(dtype_of(&t, "l"), DT_LNK);
		ASSERT_EQ(dtype_of(&t, "f"), DT_REG);

		/* O_NOFOLLOW refuses the link; O_CREAT|O_EXCL never follows */
		ASSERT_ERR(pw_open(mp(&t, "l"), O_RDONLY | O_NOFOLLOW), ELOOP);
		ASSERT_ERR(pw_open(mp(&t, "l"), O_RDWR | O_CREAT | O_EXCL, 0644), EEXIST);
		int fd = pw_open(mp(&t, "f"), O_RDONLY | O_NOFOLLOW);
		ASSERT_GE(fd, 0);
		ASSERT_OK(pw_close(fd));
		/* writing through the link writes the file */
		fd = pw_open(mp(&t, "l"), O_WRONLY | O_TRUNC);
		ASSERT_GE(fd, 0);
		ASSERT_EQ(pw_write(fd, "new", 3), 3);
		ASSERT_OK(pw_close(fd));
		ASSERT_EQ(get_file(mp(&t, "f"), buf, sizeof(buf)), 3);

		/* rename and unlink act on the link, not its target */
		ASSERT_OK(pw_rename(mp(&t, "l"), mp(&t, "l2")));
		ASSERT_OK(pw_lstat(mp(&t, "l2"), &lst));
		ASSERT(S_ISLNK(lst.st_mode));
		ASSERT_ERR(pw_lstat(mp(&t, "l"), &lst), ENOENT);
		ASSERT_OK(pw_unlink(mp(&t, "l2")));
		ASSERT_ERR(pw_lstat(mp(&t, "l2"), &lst), ENOENT);
		ASSERT_OK(pw_stat(mp(&t, "f"), &st));
		ASSERT_EQ(st.st_size, 3);

		/* errors */
		ASSERT_ERR(pw_symlink("x", mp(&t, "f")), EEXIST);
		ASSERT_ERR(pw_symlink("x", mp(&t, "ten")), EEXIST);
		ASSERT_ERR(pw_symlink("", mp(&t, "e")), ENOENT);
		ASSERT_ERR(pw_symlink(NULL, mp(&t, "e")), EFAULT);
		ASSERT_ERR(pw_symlink((const char *)8, mp(&t, "e")), EFAULT);
		ASSERT_ERR(pw_symlink("x", NULL), EFAULT);
		ASSERT_ERR(pw_symlink("x", mp(&t, "nodir/e")), ENOENT);
		ASSERT_ERR(pw_symlink("x", mp(&t, "f/e")), ENOTDIR);
		ASSERT_ERR(pw_symlink("x", t.mnt), EEXIST);
		char *huge = xmalloc(PATH_MAX + 1);
		memset(huge, 'a', PATH_MAX);
		huge[PATH_MAX] = 0;
		ASSERT_ERR(pw_symlink(huge, mp(&t, "e")), ENAMETOOLONG);
		free(huge);
		ASSERT_ERR(pw_lstat(mp(&t, "e"), &lst), ENOENT);
		ASSERT_ERR(pw_readlink(mp(&t, "f"), buf, sizeof(buf)), EINVAL);
		ASSERT_ERR(pw_readlink(t.mnt, buf, sizeof(buf)), EINVAL);
		ASSERT_ERR(pw_readlink(mp(&t, "ten"), buf, 0), EINVAL);
		ASSERT_ERR(pw_readlink(mp(&t, "ten"), NULL, 10), EFAULT);
		ASSERT_ERR(pw_readlink(mp(&t, "nope"), buf, sizeof(buf)), ENOENT);
		ASSERT_ERR(pw_readlink(NULL, buf, sizeof(buf)), EFAULT);
		ASSERT_ERR(pw_lstat(mp(&t, "ten"), NULL), EFAULT);
		meta_umount(&t);
	}
}

TEST(meta_symlink_resolution)
{
	for (int kind = 0; kind < META_KINDS; kind++) {
		struct tfs t;
		tfs_mount(&t, kind);
		TLOG("%s", test_kind_name(kind));
		struct stat st;
		char buf[64];
		ASSERT_OK(pw_mkdir(mp(&t, "d"), 0755));
		ASSERT_OK(pw_mkdir(mp(&t, "d/e"), 0755));
		put_file(&t, "d/in_d", "in d");
		put_file(&t, "top", "at the top");
		/* links in the middle of a path are followed */
		ASSERT_OK(pw_symlink("d/e", mp(&t, "de")));
		ASSERT_OK(pw_stat(mp(&t, "de"), &st));
		ASSERT(S_ISDIR(st.st_mode));
		put_file(&t, "de/via_link", "made through de");
		ASSERT_OK(pw_stat(mp(&t, "d/e/via_link"), &st));
		/* ".." after a link goes to the parent of where it led: d, not
		 * the mount (a lexical ".." would find no in_d there) */
		ASSERT_EQ(get_file(mp(&t, "de/../in_d"), buf, sizeof(buf)), 4);
		ASSERT_ERR(pw_stat(mp(&t, "de/../top"), &st), ENOENT);
		/* a path ending in ".." names a directory, not an entry of one */
		ASSERT_ERR(pw_rmdir(mp(&t, "d/e/..")), EBUSY);
		ASSERT_ERR(pw_mkdir(mp(&t, "d/e/.."), 0755), EEXIST);
		ASSERT_ERR(pw_rmdir(mp(&t, "d/e/.")), EBUSY);
		ASSERT_OK(pw_stat(mp(&t, "d/e"), &st));
		/* relative targets with ".." start at the link's directory */
		ASSERT_OK(pw_symlink("../../top", mp(&t, "d/e/up")));
		ASSERT_EQ(get_file(mp(&t, "d/e/up"), buf, sizeof(buf)), 10);
		ASSERT_EQ(get_file(mp(&t, "de/up"), buf, sizeof(buf)), 10);
		/* absolute targets are pagewright paths */
		char abs[128];
		XSNPRINTF(abs, sizeof(abs), "%s/d/in_d", t.mnt);
		ASSERT_OK(pw_symlink(abs, mp(&t, "abs")));
		ASSERT_EQ(get_file(mp(&t, "abs"), buf, sizeof(buf)), 4);
		ASSERT_MEM_EQ(buf, "in d", 4);
		ASSERT_OK(pw_symlink("/", mp(&t, "root")));
		ASSERT_OK(pw_stat(mp(&t, "root"), &st));
		struct stat rst;
		ASSERT_OK(pw_stat("/", &rst));
		ASSERT_EQ(st.st_ino, rst.st_ino);
		ASSERT_EQ(st.st_dev, rst.st_dev);
		/* a link to a file in the middle of a path, and trailing slashes */
		ASSERT_OK(pw_symlink("top", mp(&t, "lt")));
		ASSERT_ERR(pw_stat(mp(&t, "lt/x"), &st), ENOTDIR);
		ASSERT_ERR(pw_stat(mp(&t, "top/"), &st), ENOTDIR);
		ASSERT_ERR(pw_lstat(mp(&t, "lt/"), &st), ENOTDIR);
		ASSERT_OK(pw_lstat(mp(&t, "de/"), &st)); /* '/' follows the link */
		ASSERT(S_ISDIR(st.st_mode));
		ASSERT_OK(pw_lstat(mp(&t, "de"), &st));
		ASSERT(S_ISLNK(st.st_mode));
		PW_DIR *dir = pw_opendir(mp(&t, "de"));
		ASSERT(dir != NULL);
		ASSERT_OK(pw_closedir(dir));

		/* dangling links */
		ASSERT_OK(pw_symlink("made", mp(&t, "dang")));
		ASSERT_ERR(pw_stat(mp(&t, "dang"), &st), ENOENT);
		ASSERT_OK(pw_lstat(mp(&t, "dang"), &st));
		ASSERT_ERR(pw_open(mp(&t, "dang"), O_RDONLY), ENOENT);
		ASSERT_ERR(pw_open(mp(&t, "dang"), O_WRONLY | O_CREAT | O_EXCL, 0644), EEXIST);
		ASSERT_ERR(pw_stat(mp(&t, "made"), &st), ENOENT);
		/* O_CREAT through a dangling link creates its target, as Linux */
		int fd = pw_open(mp(&t, "dang"), O_WRONLY | O_CREAT, 0644);
		ASSERT_GE(fd, 0);
		ASSERT_EQ(pw_write(fd, "xy", 2), 2);
		ASSERT_OK(pw_close(fd));
		ASSERT_OK(pw_lstat(mp(&t, "made"), &st));
		ASSERT(S_ISREG(st.st_mode));
		ASSERT_EQ(st.st_size, 2);

		/* loops: ELOOP, and at most 40 links per walk */
		ASSERT_OK(pw_symlink("loop2", mp(&t, "loop1")));
		ASSERT_OK(pw_symlink("loop1", mp(&t, "loop2")));
		ASSERT_ERR(pw_stat(mp(&t, "loop1"), &st), ELOOP);
		ASSERT_ERR(pw_stat(mp(&t, "loop1/x"), &st), ELOOP);
		ASSERT_ERR(pw_open(mp(&t, "loop1"), O_RDONLY), ELOOP);
		ASSERT_ERR(pw_open(mp(&t, "loop1"), O_RDWR | O_CREAT, 0644), ELOOP);
		ASSERT_OK(pw_lstat(mp(&t, "loop1"), &st));
		ASSERT_OK(pw_symlink("loop1", mp(&t, "self")));
		ASSERT_OK(pw_symlink("self", mp(&t, "self2")));
		ASSERT_OK(pw_unlink(mp(&t, "self")));
		ASSERT_ERR(pw_stat(mp(&t, "self2"), &st), ENOENT);
		char name[16], target[16];
		for (int k = 0; k <= 40; k++) {
			XSNPRINTF(name, sizeof(name), "c%d", k);
			XSNPRINTF(target, sizeof(target), k ? "c%d" : "top", k - 1);
			ASSERT_OK(pw_symlink(target, mp(&t, name)));
		}
		ASSERT_OK(pw_stat(mp(&t, "c39"), &st)); /* 40 links */
		ASSERT_EQ(st.st_size, 10);
		ASSERT_ERR(pw_stat(mp(&t, "c40"), &st), ELOOP); /* 41 */

		/* a directory cannot move below itself, also through a link */
		ASSERT_OK(pw_mkdir(mp(&t, "ra"), 0755));
		ASSERT_OK(pw_mkdir(mp(&t, "ra/rb"), 0755));
		ASSERT_OK(pw_symlink("ra/rb", mp(&t, "rl")));
		ASSERT_ERR(pw_rename(mp(&t, "ra"), mp(&t, "rl/rc")), EINVAL);
		ASSERT_ERR(pw_rename(mp(&t, "ra"), mp(&t, "ra/rc")), EINVAL);
		ASSERT_OK(pw_stat(mp(&t, "ra/rb"), &st));
		ASSERT_OK(pw_rename(mp(&t, "d/in_d"), mp(&t, "rl/moved")));
		ASSERT_OK(pw_stat(mp(&t, "ra/rb/moved"), &st));
		meta_umount(&t);
	}
}

/* ------------------------------------------------------------ hard links */

TEST(meta_hard_links)
{
	for (int kind = 0; kind < META_KINDS; kind++) {
		struct tfs t;
		tfs_mount(&t, kind);
		TLOG("%s", test_kind_name(kind));
		struct stat a, b;
		char buf[64];
		put_file(&t, "f", "shared");
		ASSERT_OK(pw_stat(mp(&t, "f"), &a));
		ASSERT_EQ(a.st_nlink, 1);
		usleep(30000);
		ASSERT_OK(pw_link(mp(&t, "f"), mp(&t, "g")));
		ASSERT_OK(pw_stat(mp(&t, "g"), &b));
		ASSERT_EQ(b.st_ino, a.st_ino);
		ASSERT_EQ(b.st_nlink, 2);
		ASSERT_GT(ts_ns(b.st_ctim), ts_ns(a.st_ctim));
		ASSERT_OK(pw_stat(mp(&t, "f"), &a));
		ASSERT_EQ(a.st_nlink, 2);
		ASSERT_EQ(dtype_of(&t, "g"), DT_REG);
		/* one file: a write through one name is read through the other */
		int fd = pw_open(mp(&t, "g"), O_WRONLY);
		ASSERT_GE(fd, 0);
		ASSERT_EQ(pw_pwrite(fd, "SH", 2, 0), 2);
		ASSERT_OK(pw_close(fd));
		ASSERT_EQ(get_file(mp(&t, "f"), buf, sizeof(buf)), 6);
		ASSERT_MEM_EQ(buf, "SHared", 6);
		/* a third name in a subdirectory */
		ASSERT_OK(pw_mkdir(mp(&t, "sub"), 0755));
		ASSERT_OK(pw_link(mp(&t, "g"), mp(&t, "sub/h")));
		ASSERT_OK(pw_stat(mp(&t, "f"), &a));
		ASSERT_EQ(a.st_nlink, 3);
		/* unlinking one name keeps the others */
		usleep(30000);
		ASSERT_OK(pw_unlink(mp(&t, "f")));
		ASSERT_OK(pw_stat(mp(&t, "g"), &b));
		ASSERT_EQ(b.st_nlink, 2);
		ASSERT_GT(ts_ns(b.st_ctim), ts_ns(a.st_ctim));
		ASSERT_OK(pw_unlink(mp(&t, "g")));
		ASSERT_OK(pw_stat(mp(&t, "sub/h"), &b));
		ASSERT_EQ(b.st_nlink, 1);
		ASSERT_EQ(get_file(mp(&t, "sub/h"), buf, sizeof(buf)), 6);
		ASSERT_MEM_EQ(buf, "SHared", 6);
		/* rename of one name over another of the same file: nothing */
		ASSERT_OK(pw_link(mp(&t, "sub/h"), mp(&t, "h2")));
		ASSERT_OK(pw_rename(mp(&t, "sub/h"), mp(&t, "h2")));
		ASSERT_OK(pw_stat(mp(&t, "sub/h"), &b));
		ASSERT_EQ(b.st_nlink, 2);
		ASSERT_OK(pw_unlink(mp(&t, "h2")));
		/* a hard link to a symlink is a symlink (oldpath not followed) */
		ASSERT_OK(pw_symlink("sub/h", mp(&t, "sl")));
		ASSERT_OK(pw_link(mp(&t, "sl"), mp(&t, "sl2")));
		ASSERT_OK(pw_lstat(mp(&t, "sl2"), &b));
		ASSERT(S_ISLNK(b.st_mode));
		ASSERT_EQ(b.st_nlink, 2);
		ASSERT_EQ(dtype_of(&t, "sl2"), DT_LNK);
		ASSERT_OK(pw_stat(mp(&t, "sub/h"), &b));
		ASSERT_EQ(b.st_nlink, 1);
		ASSERT_EQ(get_file(mp(&t, "sl2"), buf, sizeof(buf)), 6);
		/* errors */
		ASSERT_ERR(pw_link(mp(&t, "sub"), mp(&t, "sub2")), EPERM);
		ASSERT_ERR(pw_link(mp(&t, "sub/h"), mp(&t, "sl")), EEXIST);
		ASSERT_ERR(pw_link(mp(&t, "sub/h"), mp(&t, "sub")), EEXIST);
		ASSERT_ERR(pw_link(mp(&t, "nope"), mp(&t, "x")), ENOENT);
		ASSERT_ERR(pw_link(mp(&t, "sub/h"), mp(&t, "nodir/x")), ENOENT);
		ASSERT_ERR(pw_link(mp(&t, "sub/h"), "/xdev"), EXDEV);
		ASSERT_ERR(pw_link(NULL, mp(&t, "x")), EFAULT);
		ASSERT_ERR(pw_link(mp(&t, "sub/h"), NULL), EFAULT);
		ASSERT_ERR(pw_lstat("/xdev", &b), ENOENT);
		meta_umount(&t);
	}
}

/* An open file whose last name goes stays readable and cannot be linked
 * back (it has no links left). */
TEST(meta_link_unlinked_open_file)
{
	for (int kind = 0; kind < META_KINDS; kind++) {
		struct tfs t;
		tfs_mount(&t, kind);
		TLOG("%s", test_kind_name(kind));
		put_file(&t, "f", "abc");
		int fd = pw_open(mp(&t, "f"), O_RDONLY);
		ASSERT_GE(fd, 0);
		ASSERT_OK(pw_link(mp(&t, "f"), mp(&t, "g")));
		ASSERT_OK(pw_unlink(mp(&t, "f")));
		ASSERT_OK(pw_unlink(mp(&t, "g")));
		struct stat st;
		ASSERT_OK(pw_fstat(fd, &st));
		ASSERT_EQ(st.st_nlink, 0);
		char buf[8];
		ASSERT_EQ(pw_pread(fd, buf, sizeof(buf), 0), 3);
		ASSERT_OK(pw_close(fd));
		meta_umount(&t);
	}
}

/* ------------------------------------------------------------ attributes */

TEST(meta_chmod_chown)
{
	bool root = geteuid() == 0;
	for (int kind = 0; kind < META_KINDS; kind++) {
		struct tfs t;
		tfs_mount(&t, kind);
		TLOG("%s", test_kind_name(kind));
		struct stat st, before;
		put_file(&t, "f", "x");
		ASSERT_OK(pw_symlink("f", mp(&t, "l")));
		ASSERT_OK(pw_stat(mp(&t, "f"), &before));
		usleep(30000);
		ASSERT_OK(pw_chmod(mp(&t, "f"), 0640));
		ASSERT_OK(pw_stat(mp(&t, "f"), &st));
		ASSERT_EQ(st.st_mode, S_IFREG | 0640);
		ASSERT_GT(ts_ns(st.st_ctim), ts_ns(before.st_ctim));
		ASSERT_EQ(ts_ns(st.st_mtim), ts_ns(before.st_mtim));
		/* through the link: the target changes, the link does not */
		ASSERT_OK(pw_chmod(mp(&t, "l"), 0604));
		ASSERT_OK(pw_stat(mp(&t, "f"), &st));
		ASSERT_EQ(st.st_mode & 07777, 0604);
		ASSERT_OK(pw_lstat(mp(&t, "l"), &st));
		ASSERT_EQ(st.st_mode, S_IFLNK | 0777);
		int fd = pw_open(mp(&t, "f"), O_RDONLY);
		ASSERT_GE(fd, 0);
		ASSERT_OK(pw_fchmod(fd, 0711));
		ASSERT_OK(pw_fstat(fd, &st));
		ASSERT_EQ(st.st_mode & 07777, 0711);
		ASSERT_OK(pw_mkdir(mp(&t, "d"), 0755));
		ASSERT_OK(pw_chmod(mp(&t, "d"), 0700));
		ASSERT_OK(pw_stat(mp(&t, "d"), &st));
		ASSERT_EQ(st.st_mode, S_IFDIR | 0700);

		if (root) {
			ASSERT_OK(pw_chown(mp(&t, "f"), 1234, 5678));
			ASSERT_OK(pw_stat(mp(&t, "f"), &st));
			ASSERT_EQ(st.st_uid, 1234);
			ASSERT_EQ(st.st_gid, 5678);
			ASSERT_OK(pw_chown(mp(&t, "f"), (uid_t)-1, 42));
			ASSERT_OK(pw_stat(mp(&t, "f"), &st));
			ASSERT_EQ(st.st_uid, 1234);
			ASSERT_EQ(st.st_gid, 42);
			/* lchown changes the link only; chown follows it */
			ASSERT_OK(pw_lchown(mp(&t, "l"), 77, 88));
			ASSERT_OK(pw_lstat(mp(&t, "l"), &st));
			ASSERT_EQ(st.st_uid, 77);
			ASSERT_EQ(st.st_gid, 88);
			ASSERT_OK(pw_stat(mp(&t, "f"), &st));
			ASSERT_EQ(st.st_uid, 1234);
			ASSERT_OK(pw_chown(mp(&t, "l"), 99, (gid_t)-1));
			ASSERT_OK(pw_stat(mp(&t, "f"), &st));
			ASSERT_EQ(st.st_uid, 99);
			ASSERT_OK(pw_lstat(mp(&t, "l"), &st));
			ASSERT_EQ(st.st_uid, 77);
			ASSERT_OK(pw_fchown(fd, 5, (gid_t)-1));
			ASSERT_OK(pw_fstat(fd, &st));
			ASSERT_EQ(st.st_uid, 5);
			ASSERT_EQ(st.st_gid, 42);
			/* chown drops set-user-ID, and set-group-ID with group x */
			ASSERT_OK(pw_chmod(mp(&t, "f"), 06755));
			ASSERT_OK(pw_chown(mp(&t, "f"), (uid_t)-1, (gid_t)-1));
			ASSERT_OK(pw_stat(mp(&t, "f"), &st));
			ASSERT_EQ(st.st_mode & 07777, 0755);
			ASSERT_OK(pw_chmod(mp(&t, "f"), 02745));
			ASSERT_OK(pw_chown(mp(&t, "f"), 6, (gid_t)-1));
			ASSERT_OK(pw_stat(mp(&t, "f"), &st));
			ASSERT_EQ(st.st_mode & 07777, 02745);
			ASSERT_OK(pw_chown(mp(&t, "f"), 0, 0));
		} else {
			ASSERT_ERR(pw_chown(mp(&t, "f"), 1234, (gid_t)-1), EPERM);
		}
		ASSERT_OK(pw_close(fd));

		ASSERT_ERR(pw_chmod(mp(&t, "nope"), 0644), ENOENT);
		ASSERT_ERR(pw_chmod(NULL, 0644), EFAULT);
		ASSERT_ERR(pw_chown(NULL, 0, 0), EFAULT);
		ASSERT_ERR(pw_lchown(mp(&t, "nope"), 0, 0), ENOENT);
		ASSERT_ERR(pw_fchmod(-1, 0644), EBADF);
		ASSERT_ERR(pw_fchmod(12345, 0644), EBADF);
		ASSERT_ERR(pw_fchown(-1, 0, 0), EBADF);
		meta_umount(&t);
	}
}

/* pw_set_thread_creds: the thread acts as the user it names (permission
 * checks, owners of new files) and goes back with (-1, -1).  ramfs and
 * ext2 (hostfs asks the host, which knows only the process's IDs).  As
 * root only: another user's IDs are what make a difference. */
TEST(meta_thread_creds)
{
	if (geteuid() != 0) {
		TLOG("not root: skipped");
		return;
	}
	for (int kind = 0; kind < META_KINDS; kind++) {
		if (kind == 1 || kind == 2)
			continue;
		struct tfs t;
		tfs_mount(&t, kind);
		TLOG("%s", test_kind_name(kind));
		struct stat st;
		ASSERT_OK(pw_mkdir(mp(&t, "closed"), 0755));
		ASSERT_OK(pw_mkdir(mp(&t, "open"), 0777));
		put_file(&t, "closed/secret", "x");
		ASSERT_OK(pw_chmod(mp(&t, "closed/secret"), 0600));

		pw_set_thread_creds(1234, 5678);
		ASSERT_ERR(pw_open(mp(&t, "closed/new"), O_WRONLY | O_CREAT, 0644), EACCES);
		ASSERT_ERR(pw_open(mp(&t, "closed/secret"), O_RDONLY), EACCES);
		int fd = pw_open(mp(&t, "open/mine"), O_WRONLY | O_CREAT, 0644);
		ASSERT_GE(fd, 0);
		ASSERT_OK(pw_fstat(fd, &st));
		ASSERT_EQ(st.st_uid, 1234);
		ASSERT_EQ(st.st_gid, 5678);
		ASSERT_OK(pw_fchmod(fd, 0600));        /* the owner may */
		ASSERT_OK(pw_close(fd));
		ASSERT_ERR(pw_chmod(mp(&t, "closed"), 0777), EPERM);
		ASSERT_ERR(pw_chown(mp(&t, "open/mine"), 1, (gid_t)-1), EPERM);

		pw_set_thread_creds((uid_t)-1, (gid_t)-1);
		fd = pw_open(mp(&t, "closed/secret"), O_RDONLY);
		ASSERT_GE(fd, 0);
		ASSERT_OK(pw_close(fd));
		fd = pw_open(mp(&t, "closed/new"), O_WRONLY | O_CREAT, 0644);
		ASSERT_GE(fd, 0);
		ASSERT_OK(pw_fstat(fd, &st));
		ASSERT_EQ(st.st_uid, 0);
		ASSERT_OK(pw_close(fd));
		meta_umount(&t);
	}
}

TEST(meta_utimens)
{
	for (int kind = 0; kind < META_KINDS; kind++) {
		struct tfs t;
		tfs_mount(&t, kind);
		TLOG("%s", test_kind_name(kind));
		struct stat st, lst, before;
		put_file(&t, "f", "x");
		ASSERT_OK(pw_symlink("f", mp(&t, "l")));
		struct timespec set[2] = {{1000000000, 123456789}, {1100000000, 987654321}};
		ASSERT_OK(pw_stat(mp(&t, "f"), &before));
		usleep(30000);
		ASSERT_OK(pw_utimens(mp(&t, "f"), set, 0));
		ASSERT_OK(pw_stat(mp(&t, "f"), &st));
		ASSERT_EQ(ts_ns(st.st_atim), ts_ns(set[0]));
		ASSERT_EQ(ts_ns(st.st_mtim), ts_ns(set[1]));
		ASSERT_GT(ts_ns(st.st_ctim), ts_ns(before.st_ctim));
		/* UTIME_OMIT keeps one, UTIME_NOW takes the clock: the coarse
		 * one, as the kernel's current_time(), so t0 reads that */
		struct timespec t0, t1;
		clock_gettime(CLOCK_REALTIME_COARSE, &t0);
		struct timespec mix[2] = {{0, UTIME_OMIT}, {5, UTIME_NOW}};
		ASSERT_OK(pw_utimens(mp(&t, "f"), mix, 0));
		clock_gettime(CLOCK_REALTIME, &t1);
		ASSERT_OK(pw_stat(mp(&t, "f"), &st));
		ASSERT_EQ(ts_ns(st.st_atim), ts_ns(set[0]));
		ASSERT_GE(ts_ns(st.st_mtim), ts_ns(t0));
		ASSERT_LE(ts_ns(st.st_mtim), ts_ns(t1));
		/* NULL: both now */
		ASSERT_OK(pw_utimens(mp(&t, "f"), NULL, 0));
		ASSERT_OK(pw_stat(mp(&t, "f"), &st));
		ASSERT_GE(ts_ns(st.st_atim), ts_ns(t0));
		ASSERT_GE(ts_ns(st.st_mtim), ts_ns(t0));
		/* both UTIME_OMIT: nothing changes, not even ctime */
		ASSERT_OK(pw_stat(mp(&t, "f"), &before));
		usleep(30000);
		struct timespec omit[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};
		ASSERT_OK(pw_utimens(mp(&t, "f"), omit, 0));
		ASSERT_OK(pw_stat(mp(&t, "f"), &st));
		ASSERT_EQ(ts_ns(st.st_ctim), ts_ns(before.st_ctim));
		/* through the link by default; the link itself with NOFOLLOW */
		ASSERT_OK(pw_utimens(mp(&t, "l"), set, 0));
		ASSERT_OK(pw_stat(mp(&t, "f"), &st));
		ASSERT_EQ(ts_ns(st.st_mtim), ts_ns(set[1]));
		struct timespec lset[2] = {{1200000000, 5}, {1300000000, 7}};
		ASSERT_OK(pw_utimens(mp(&t, "l"), lset, AT_SYMLINK_NOFOLLOW));
		ASSERT_OK(pw_lstat(mp(&t, "l"), &lst));
		ASSERT_EQ(ts_ns(lst.st_atim), ts_ns(lset[0]));
		ASSERT_EQ(ts_ns(lst.st_mtim), ts_ns(lset[1]));
		ASSERT_OK(pw_stat(mp(&t, "f"), &st));
		ASSERT_EQ(ts_ns(st.st_mtim), ts_ns(set[1]));
		/* futimens, also on a read-only descriptor (root or owner) */
		int fd = pw_open(mp(&t, "f"), O_RDONLY);
		ASSERT_GE(fd, 0);
		ASSERT_OK(pw_futimens(fd, lset));
		ASSERT_OK(pw_fstat(fd, &st));
		ASSERT_EQ(ts_ns(st.st_mtim), ts_ns(lset[1]));
		/* errors */
		struct timespec bad[2] = {{0, 1000000000}, {0, 0}};
		ASSERT_ERR(pw_utimens(mp(&t, "f"), bad, 0), EINVAL);
		bad[0].tv_nsec = -5;
		ASSERT_ERR(pw_futimens(fd, bad), EINVAL);
		ASSERT_ERR(pw_utimens(mp(&t, "f"), set, 0x4000), EINVAL);
		ASSERT_ERR(pw_utimens(mp(&t, "f"), bad_pointer(), 0), EFAULT);
		ASSERT_ERR(pw_utimens(NULL, set, 0), EFAULT);
		ASSERT_ERR(pw_utimens(mp(&t, "nope"), set, 0), ENOENT);
		ASSERT_ERR(pw_futimens(-1, set), EBADF);
		ASSERT_OK(pw_fstat(fd, &st));
		ASSERT_EQ(ts_ns(st.st_mtim), ts_ns(lset[1]));
		ASSERT_OK(pw_close(fd));
		meta_umount(&t);
	}
}

/* --------------------------------------------------------------- statvfs */

TEST(meta_statvfs)
{
	struct statvfs root;
	ASSERT_OK(pw_statvfs("/", &root));
	for (int kind = 0; kind < META_KINDS; kind++) {
		struct tfs t;
		tfs_mount(&t, kind);
		TLOG("%s", test_kind_name(kind));
		struct statvfs a, b;
		put_file(&t, "f", "x");
		ASSERT_OK(pw_symlink("f", mp(&t, "l")));
		ASSERT_OK(pw_statvfs(t.mnt, &a));
		ASSERT_GT(a.f_bsize, 0);
		ASSERT_EQ(a.f_namemax, 255);
		ASSERT_NE(a.f_fsid, root.f_fsid);
		ASSERT_EQ(a.f_flag & ST_RDONLY, 0);
		int fd = pw_open(mp(&t, "f"), O_RDONLY);
		ASSERT_GE(fd, 0);
		ASSERT_OK(pw_fstatvfs(fd, &b));
		ASSERT_EQ(b.f_fsid, a.f_fsid);
		ASSERT_EQ(b.f_blocks, a.f_blocks);
		ASSERT_EQ(b.f_bsize, a.f_bsize);
		ASSERT_OK(pw_close(fd));
		ASSERT_OK(pw_statvfs(mp(&t, "l"), &b));
		ASSERT_EQ(b.f_fsid, a.f_fsid);
		if (kind == 0) {
			ASSERT_EQ(a.f_bsize, PAGE_SIZE);
		} else if (kind < 3) {
			struct statvfs h;
			ASSERT_OK(statvfs(t.host, &h));
			ASSERT_EQ(a.f_bsize, h.f_bsize);
			ASSERT_EQ(a.f_blocks, h.f_blocks);
			ASSERT_EQ(a.f_files, h.f_files);
		} else {
			ASSERT_EQ(a.f_bsize, 1024);
			ASSERT_EQ(a.f_blocks, 65536 - 1);
			ASSERT_GT(a.f_bfree, 0);
			ASSERT_LE(a.f_bavail, a.f_bfree);
		}
		ASSERT_ERR(pw_statvfs(mp(&t, "nope"), &b), ENOENT);
		ASSERT_ERR(pw_statvfs(NULL, &b), EFAULT);
		ASSERT_ERR(pw_statvfs(t.mnt, NULL), EFAULT);
		ASSERT_ERR(pw_fstatvfs(-1, &b), EBADF);
		meta_umount(&t);
	}
}

/* ---------------------------------------------------------- read-only */

/* hostfs mounted ro: links are read, nothing changes (ext2's ro is in
 * test_ext2.c). */
TEST(meta_readonly_hostfs)
{
	char host[600], p[700];
	XSNPRINTF(host, sizeof(host), "%s/rohost", test_tmpdir());
	ASSERT_OK(mkdir(host, 0755));
	XSNPRINTF(p, sizeof(p), "%s/f", host);
	int hfd = open(p, O_CREAT | O_WRONLY, 0644);
	ASSERT_GE(hfd, 0);
	close(hfd);
	XSNPRINTF(p, sizeof(p), "%s/l", host);
	ASSERT_OK(symlink("f", p));
	ASSERT_OK(pw_mkdir("/ro", 0755));
	ASSERT_OK(pw_mount("hostfs", host, "/ro", "ro"));
	char buf[8];
	ASSERT_EQ(pw_readlink("/ro/l", buf, sizeof(buf)), 1);
	struct stat st;
	ASSERT_OK(pw_stat("/ro/l", &st));
	ASSERT(S_ISREG(st.st_mode));
	struct statvfs sv;
	ASSERT_OK(pw_statvfs("/ro", &sv));
	ASSERT_NE(sv.f_flag & ST_RDONLY, 0);
	ASSERT_ERR(pw_symlink("f", "/ro/l2"), EROFS);
	ASSERT_ERR(pw_link("/ro/f", "/ro/g"), EROFS);
	ASSERT_ERR(pw_chmod("/ro/f", 0600), EROFS);
	ASSERT_ERR(pw_chown("/ro/f", 1, 1), EROFS);
	ASSERT_ERR(pw_lchown("/ro/l", 1, 1), EROFS);
	ASSERT_ERR(pw_utimens("/ro/l", NULL, AT_SYMLINK_NOFOLLOW), EROFS);
	int fd = pw_open("/ro/f", O_RDONLY);
	ASSERT_GE(fd, 0);
	ASSERT_ERR(pw_fchmod(fd, 0600), EROFS);
	ASSERT_ERR(pw_futimens(fd, NULL), EROFS);
	ASSERT_OK(pw_close(fd));
	ASSERT_OK(lstat(p, &st));
	ASSERT_EQ(st.st_uid, getuid());
	ASSERT_OK(pw_umount("/ro"));
}

/* ---------------------------------------------- bad pointers in paths */

TEST(meta_bad_path_pointers)
{
	/* A path that ends right before an unreadable page is read whole;
	 * one that runs into it is EFAULT, never a crash. */
	char *two = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE,
	                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT(two != MAP_FAILED);
	ASSERT_OK(mprotect(two + PG, PG, PROT_NONE));
	char *end = two + PG - 3;
	memcpy(end, "/a", 3);
	ASSERT_OK(pw_mkdir(end, 0755));
	struct stat st;
	ASSERT_OK(pw_stat("/a", &st));
	memcpy(end, "/ab", 3); /* no NUL before the bad page */
	ASSERT_ERR(pw_stat(end, &st), EFAULT);
	ASSERT_ERR(pw_symlink(end, "/s"), EFAULT);
	ASSERT_ERR(pw_open(end, O_RDONLY), EFAULT);
	ASSERT_ERR(pw_stat((const char *)8, &st), EFAULT);
	ASSERT_ERR(pw_mkdir(NULL, 0755), EFAULT);
	ASSERT_ERR(pw_readlink("/a", two + PG, 4), EINVAL); /* not a link */
	ASSERT_OK(pw_symlink("a", "/s"));
	ASSERT_ERR(pw_readlink("/s", two + PG, 4), EFAULT);
	ASSERT_ERR(pw_stat("/s", (struct stat *)(two + PG)), EFAULT);
	munmap(two, 2 * PG);
}

/* ------------------------------------------------------------- threads */

struct meta_thr {
	const struct tfs *t;
	int role;
	int iters;
};

static void *
meta_thread(void *arg)
{
	struct meta_thr *a = arg;
	const struct tfs *t = a->t;
	struct stat st;
	char buf[64];
	for (int i = 0; i < a->iters; i++) {
		switch (a->role) {
		case 0: /* names come and go */
			ASSERT_OK(pw_link(mp(t, "f"), mp(t, "h")));
			ASSERT_OK(pw_symlink("f", mp(t, "s")));
			ASSERT_OK(pw_unlink(mp(t, "h")));
			ASSERT_OK(pw_unlink(mp(t, "s")));
			break;
		case 1: { /* walks through links while they change */
			int r = pw_stat(mp(t, "s"), &st);
			ASSERT(r == 0 || errno == ENOENT);
			r = pw_stat(mp(t, "h"), &st);
			ASSERT(r == 0 || errno == ENOENT);
			ssize_t n = pw_readlink(mp(t, "s"), buf, sizeof(buf));
			ASSERT(n == 1 || (n < 0 && (errno == ENOENT || errno == EINVAL)));
			ASSERT_OK(pw_stat(mp(t, "ld/../f"), &st));
			ASSERT_EQ(st.st_size, 4);
			r = pw_stat(mp(t, "ld/x"), &st);
			ASSERT(r == 0 || errno == ENOENT);
			ASSERT_EQ(get_file(mp(t, "lf"), buf, sizeof(buf)), 4);
			break;
		}
		case 2: /* attributes of the file the others name */
			ASSERT_OK(pw_chmod(mp(t, "lf"), 0600 | (mode_t)(i & 044)));
			ASSERT_OK(pw_utimens(mp(t, "f"), NULL, 0));
			ASSERT_OK(pw_stat(mp(t, "f"), &st));
			ASSERT_GE(st.st_nlink, 1);
			break;
		default: /* a directory renamed back and forth under a link */
			ASSERT_OK(pw_rename(mp(t, "d/x"), mp(t, "d/y")));
			ASSERT_OK(pw_rename(mp(t, "d/y"), mp(t, "d/x")));
			break;
		}
	}
	return NULL;
}

TEST_THREADED(meta_threads)
{
	int kinds[] = {0, 1, 3};
	for (size_t k = 0; k < PW_ARRAY_SIZE(kinds); k++) {
		struct tfs t;
		tfs_mount(&t, kinds[k]);
		TLOG("%s", test_kind_name(kinds[k]));
		put_file(&t, "f", "data");
		ASSERT_OK(pw_mkdir(mp(&t, "d"), 0755));
		ASSERT_OK(pw_mkdir(mp(&t, "d/x"), 0755));
		ASSERT_OK(pw_symlink("d", mp(&t, "ld")));
		ASSERT_OK(pw_symlink("f", mp(&t, "lf")));
		struct meta_thr args[4];
		for (int r = 0; r < 4; r++)
			args[r] = (struct meta_thr){&t, r, 150};
		run_threads(4, meta_thread, args, sizeof(args[0]));
		struct stat st;
		ASSERT_OK(pw_stat(mp(&t, "f"), &st));
		ASSERT_EQ(st.st_nlink, 1);
		ASSERT_ERR(pw_lstat(mp(&t, "s"), &st), ENOENT);
		meta_umount(&t);
	}
}

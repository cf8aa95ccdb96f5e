/*
 * attrs.c - the FUSE operations on attributes and links: lstat, the owner
 * of new files, chmod/chown/utimens, readlink, symlink, link, mknod and
 * statfs, extended attributes, each onto its pw_ call.  Each returns 0 or -errno; the server
 * turns that into the reply.
 *
 * New files get the caller's owner (the kernel's fuse_ctx) when the
 * server runs as root; otherwise they stay the server's user, who is the
 * only one reaching the mount while allow_other is off.  mknod makes
 * regular files only (pagewright has no device, fifo or socket files).
 */
#include "fuse_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <pagewright/pagewright.h>

static int
neg_errno(int r)
{
	return r < 0 ? -errno : 0;
}

int
pw__fuse_lstat(const char *path, struct stat *st)
{
	return neg_errno(pw_lstat(path, st));
}

int
pw__fuse_chown_new(const char *path, int fd, uid_t uid, gid_t gid, struct stat *st)
{
	if (st->st_uid == uid && st->st_gid == gid)
		return 0;       /* the server's own user made it: the usual case */
	if (geteuid() != 0)
		return 0;
	int err = neg_errno(fd >= 0 ? pw_fchown(fd, uid, gid) : pw_lchown(path, uid, gid));
	if (!err)
		err = neg_errno(fd >= 0 ? pw_fstat(fd, st) : pw_lstat(path, st));
	return err;
}

/* One of the two times a setattr carries: a value, now, or unchanged. */
static struct timespec
setattr_time(int to_set, int set_bit, int now_bit, struct timespec value)
{
	if (to_set & now_bit)
		return (struct timespec){.tv_nsec = UTIME_NOW};
	if (to_set & set_bit)
		return value;
	return (struct timespec){.tv_nsec = UTIME_OMIT};
}

int
pw__fuse_setattr(const char *path, int fd, const struct stat *attr, int to_set)
{
	int err = 0;
	if (to_set & FUSE_SET_ATTR_MODE)
		err = neg_errno(fd >= 0 ? pw_fchmod(fd, attr->st_mode & 07777)
		                        : pw_chmod(path, attr->st_mode & 07777));
	if (!err && (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))) {
		uid_t uid = (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1;
		gid_t gid = (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1;
		err = neg_errno(fd >= 0 ? pw_fchown(fd, uid, gid) : pw_lchown(path, uid, gid));
	}
	if (!err && (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME |
	                       FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW))) {
		struct timespec ts[2] = {
		    setattr_time(to_set, FUSE_SET_ATTR_ATIME, FUSE_SET_ATTR_ATIME_NOW, attr->st_atim),
		    setattr_time(to_set, FUSE_SET_ATTR_MTIME, FUSE_SET_ATTR_MTIME_NOW, attr->st_mtim),
		};
		err = neg_errno(fd >= 0 ? pw_futimens(fd, ts)
		                        : pw_utimens(path, ts, AT_SYMLINK_NOFOLLOW));
	}
	return err;
}

int
pw__fuse_readlink(const char *path, char *buf, size_t size)
{
	ssize_t n = pw_readlink(path, buf, size - 1);
	if (n < 0)
		return -errno;
	buf[n] = 0;
	return 0;
}

int
pw__fuse_symlink(const char *target, const char *path)
{
	return neg_errno(pw_symlink(target, path));
}

int
pw__fuse_link(const char *oldpath, const char *newpath)
{
	return neg_errno(pw_link(oldpath, newpath));
}

int
pw__fuse_mknod(const char *path, mode_t mode, dev_t rdev)
{
	(void)path;
	(void)mode;
	(void)rdev;
	return -EPERM;
}

int
pw__fuse_statvfs(const char *path, struct statvfs *st)
{
	return neg_errno(pw_statvfs(path, st));
}

ssize_t
pw__fuse_getxattr(const char *path, int fd, const char *name, void *buf, size_t size)
{
	ssize_t n = path ? pw_lgetxattr(path, name, buf, size) : pw_fgetxattr(fd, name, buf, size);
	return n < 0 ? -errno : n;
}

ssize_t
pw__fuse_listxattr(const char *path, int fd, char *buf, size_t size)
{
	ssize_t n = path ? pw_llistxattr(path, buf, size) : pw_flistxattr(fd, buf, size);
	return n < 0 ? -errno : n;
}

/* value NULL: remove. */
int
pw__fuse_setxattr(const char *path, int fd, const char *name, const void *value,
                  size_t size, int flags)
{
	if (!path)
		return neg_errno(value ? pw_fsetxattr(fd, name, value, size, flags)
		                       : pw_fremovexattr(fd, name));
	return neg_errno(value ? pw_lsetxattr(path, name, value, size, flags)
	                       : pw_lremovexattr(path, name));
}

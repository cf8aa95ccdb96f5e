/*
 * pending.c - the FUSE operations that wait for pw_ calls.
 *
 * Another branch adds pw_lstat, pw_chmod, pw_chown, pw_utimens,
 * pw_symlink, pw_readlink, pw_link and pw_statvfs.  Until they land, this
 * file answers for them, so that wiring them touches nothing else:
 *
 *   lstat        pw_stat; exact while pagewright has no symbolic links.
 *   owner of new files
 *                left as pagewright makes them (the server's user); only
 *                that user can use the mount while allow_other is off.
 *   chmod/chown/utimens
 *                EOPNOTSUPP (so `touch` of an existing file, `chmod` and
 *                `cp -p` fail on the mount for now).  Times that come with
 *                a size change are handled by the server: pagewright's
 *                truncate sets mtime and ctime itself.
 *   symlink/link EPERM, POSIX's answer for a filesystem that does not
 *                support them; readlink EINVAL (nothing is a link).
 *   mknod        EPERM for anything but a regular file (the server makes
 *                those with pw_open).
 *   statvfs      the block size and name length only; sizes read 0.
 */
#include "fuse_internal.h"

#include <errno.h>
#include <string.h>

#include <pagewright/pagewright.h>

int
pw__pending_lstat(const char *path, struct stat *st)
{
	return pw_stat(path, st) ? -errno : 0;
}

int
pw__pending_chown_new(const char *path, uid_t uid, gid_t gid)
{
	(void)path;
	(void)uid;
	(void)gid;
	return 0;
}

int
pw__pending_setattr(const char *path, int fd, const struct stat *attr, int to_set)
{
	(void)path;
	(void)fd;
	(void)attr;
	if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID |
	              FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME |
	              FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW))
		return -EOPNOTSUPP;
	return 0;
}

int
pw__pending_readlink(const char *path, char *buf, size_t size)
{
	(void)path;
	(void)buf;
	(void)size;
	return -EINVAL;
}

int
pw__pending_symlink(const char *target, const char *path)
{
	(void)target;
	(void)path;
	return -EPERM;
}

int
pw__pending_link(const char *oldpath, const char *newpath)
{
	(void)oldpath;
	(void)newpath;
	return -EPERM;
}

int
pw__pending_mknod(const char *path, mode_t mode, dev_t rdev)
{
	(void)path;
	(void)mode;
	(void)rdev;
	return -EPERM;
}

int
pw__pending_statvfs(const char *path, struct statvfs *st)
{
	(void)path;
	memset(st, 0, sizeof(*st));
	st->f_bsize = 4096;
	st->f_frsize = 4096;
	st->f_namemax = 255;
	return 0;
}

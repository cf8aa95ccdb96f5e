/*
 * namei.c - ext2 namespace operations: create, mkdir, symlink, link,
 * unlink, rmdir, rename, and the inode operations of directories.
 *
 * Link counts: a file has one link per entry naming it; a directory has
 * one from its parent's entry, one from its own ".", and one from each
 * subdirectory's "..".  Each operation changes the counts and the
 * entries together; an inode whose count reaches zero is freed by
 * ext2_evict_inode when its last reference goes (possibly later, if it
 * is still open).
 *
 * Order of changes, so that a failure part way leaves the filesystem
 * consistent: a new inode is written before the entry naming it is
 * added, and if adding fails it is dropped again (no links, so eviction
 * frees it); rename adds or repoints the new entry before removing the
 * old one.
 *
 * Context: the VFS holds the parent's i_rwsem (both parents' and the
 * rename lock for rename) and has checked types, emptiness of nothing,
 * and that a directory is not moved below itself.
 */
#include "ext2.h"

#include <errno.h>
#include <string.h>

static void
ext2_inc_nlink(struct inode *inode)
{
	atomic_fetch_add(&inode->i_nlink, 1);
	mark_inode_dirty(inode);
}

static void
ext2_dec_nlink(struct inode *inode)
{
	if (atomic_load(&inode->i_nlink) > 0)
		atomic_fetch_sub(&inode->i_nlink, 1);
	mark_inode_dirty(inode);
}

static int
ext2_may_change(struct inode *dir)
{
	return ext2_ro(dir->i_sb) ? -EROFS : 0;
}

/* The new inode could not be linked in: drop it (eviction frees it). */
static void
ext2_discard(struct inode *inode)
{
	atomic_store(&inode->i_nlink, 0);
	iput(inode);
}

int
pw__ext2_create(struct inode *dir, const char *name, size_t len, mode_t mode,
                struct inode **res)
{
	struct inode *inode;
	int err = ext2_may_change(dir);
	if (!err && len > EXT2_NAME_LEN)
		err = -ENAMETOOLONG;
	if (!err)
		err = pw__ext2_new_inode(dir, S_IFREG | (mode & 07777), &inode);
	if (err)
		return err;
	if ((err = pw__ext2_add_entry(dir, name, len, inode))) {
		ext2_discard(inode);
		return err;
	}
	*res = inode;
	return 0;
}

int
pw__ext2_mkdir(struct inode *dir, const char *name, size_t len, mode_t mode,
               struct inode **res)
{
	struct inode *inode;
	int err = ext2_may_change(dir);
	if (!err && len > EXT2_NAME_LEN)
		err = -ENAMETOOLONG;
	if (!err && atomic_load(&dir->i_nlink) >= EXT2_LINK_MAX)
		err = -EMLINK;
	if (!err)
		err = pw__ext2_new_inode(dir, S_IFDIR | (mode & 07777), &inode);
	if (err)
		return err;
	if ((err = pw__ext2_make_empty(inode, dir)) ||
	    (err = pw__ext2_add_entry(dir, name, len, inode))) {
		ext2_discard(inode);
		return err;
	}
	ext2_inc_nlink(dir);
	*res = inode;
	return 0;
}

int
pw__ext2_symlink(struct inode *dir, const char *name, size_t len,
                 const char *target, struct inode **res)
{
	struct inode *inode;
	int err = ext2_may_change(dir);
	if (!err && len > EXT2_NAME_LEN)
		err = -ENAMETOOLONG;
	if (!err && strlen(target) + 1 > dir->i_sb->s_blocksize)
		err = -ENAMETOOLONG;
	if (!err)
		err = pw__ext2_new_inode(dir, S_IFLNK | 0777, &inode);
	if (err)
		return err;
	if ((err = pw__ext2_write_link(inode, target, strlen(target))) ||
	    (err = pw__ext2_add_entry(dir, name, len, inode))) {
		ext2_discard(inode);
		return err;
	}
	*res = inode;
	return 0;
}

/* A hard link: the entry first, then the count, as create does. */
int
pw__ext2_link(struct inode *inode, struct inode *dir, const char *name,
              size_t len)
{
	int err = ext2_may_change(dir);
	if (!err && len > EXT2_NAME_LEN)
		err = -ENAMETOOLONG;
	if (!err && atomic_load(&inode->i_nlink) >= EXT2_LINK_MAX)
		err = -EMLINK;
	if (!err)
		err = pw__ext2_add_entry(dir, name, len, inode);
	if (err)
		return err;
	ext2_inc_nlink(inode);
	pw__ext2_touch(inode, false);
	return 0;
}

int
pw__ext2_unlink(struct inode *dir, const char *name, size_t len,
                struct inode *victim)
{
	int err = ext2_may_change(dir);
	if (!err)
		err = pw__ext2_delete_entry(dir, name, len, victim->i_ino);
	if (err)
		return err;
	inode_time_set(&victim->i_ctime, inode_time_get(&dir->i_ctime));
	ext2_dec_nlink(victim);
	return 0;
}

int
pw__ext2_rmdir(struct inode *dir, const char *name, size_t len,
               struct inode *victim)
{
	int err = ext2_may_change(dir);
	if (err)
		return err;
	int empty = pw__ext2_empty_dir(victim);
	if (empty <= 0)
		return empty < 0 ? empty : -ENOTEMPTY;
	if ((err = pw__ext2_delete_entry(dir, name, len, victim->i_ino)))
		return err;
	atomic_store(&victim->i_nlink, 0);
	inode_time_set(&victim->i_ctime, inode_time_get(&dir->i_ctime));
	mark_inode_dirty(victim);
	ext2_dec_nlink(dir);
	return 0;
}

/* The entry nname in ndir named old_ino and now names src: the old
 * inode loses that link (all of them, if a directory). */
static void
ext2_replaced(struct inode *ndir, uint64_t old_ino)
{
	struct inode *old;
	if (pw__ext2_iget(ndir->i_sb, old_ino, &old))
		return;
	if (S_ISDIR(old->i_mode)) {
		atomic_store(&old->i_nlink, 0);
		ext2_dec_nlink(ndir);
	} else {
		ext2_dec_nlink(old);
	}
	pw__ext2_touch(old, false);
	iput(old);
}

/* Put src under nname in ndir, replacing what is there.  *replaced: the
 * inode that lost its entry, 0 if none. */
static int
ext2_rename_target(struct inode *ndir, const char *nname, size_t nlen,
                   struct inode *src, uint64_t *replaced)
{
	uint64_t tino;
	*replaced = 0;
	int err = pw__ext2_find_entry(ndir, nname, nlen, &tino);
	if (err == -ENOENT)
		return pw__ext2_add_entry(ndir, nname, nlen, src);
	if (err)
		return err;
	if (S_ISDIR(src->i_mode)) {
		struct inode *target;
		if ((err = pw__ext2_iget(ndir->i_sb, tino, &target)))
			return err;
		int empty = pw__ext2_empty_dir(target);
		iput(target);
		if (empty <= 0)
			return empty < 0 ? empty : -ENOTEMPTY;
	}
	return pw__ext2_set_entry(ndir, nname, nlen, src, replaced);
}

int
pw__ext2_rename(struct inode *odir, const char *oname, size_t olen,
                struct inode *ndir, const char *nname, size_t nlen)
{
	uint64_t sino, replaced;
	struct inode *src;
	int err = ext2_may_change(odir);
	if (!err)
		err = pw__ext2_find_entry(odir, oname, olen, &sino);
	if (!err)
		err = pw__ext2_iget(odir->i_sb, sino, &src);
	if (err)
		return err;
	uint64_t tino;
	if (pw__ext2_find_entry(ndir, nname, nlen, &tino) == 0 && tino == sino) {
		iput(src); /* two names of one file: POSIX says do nothing */
		return 0;
	}
	bool isdir = S_ISDIR(src->i_mode);
	if (isdir && odir != ndir && atomic_load(&ndir->i_nlink) >= EXT2_LINK_MAX)
		err = -EMLINK;
	if (!err)
		err = ext2_rename_target(ndir, nname, nlen, src, &replaced);
	if (!err)
		err = pw__ext2_delete_entry(odir, oname, olen, sino);
	if (err) {
		iput(src);
		return err;
	}
	if (replaced)
		ext2_replaced(ndir, replaced);
	if (isdir && odir != ndir) {
		err = pw__ext2_set_dotdot(src, ndir);
		ext2_dec_nlink(odir);
		ext2_inc_nlink(ndir);
	}
	/* src's ctime: the VFS sets it under src's i_rwsem, which we lack. */
	iput(src);
	return err;
}

const struct inode_operations pw__ext2_dir_iops = {
	.lookup = pw__ext2_lookup,
	.create = pw__ext2_create,
	.mkdir = pw__ext2_mkdir,
	.unlink = pw__ext2_unlink,
	.rmdir = pw__ext2_rmdir,
	.rename = pw__ext2_rename,
	.setattr = pw__ext2_setattr,
	.readdir = pw__ext2_readdir,
	.symlink = pw__ext2_symlink,
	.link = pw__ext2_link,
	.getxattr = pw__ext2_getxattr,
	.setxattr = pw__ext2_setxattr,
	.listxattr = pw__ext2_listxattr,
};

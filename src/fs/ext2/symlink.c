/*
 * symlink.c - ext2 symbolic links: where the target is kept, and
 * readlink.
 *
 * A target of fewer than 60 bytes is a fast symlink: its bytes, with a
 * NUL after them, sit in i_block itself (60 bytes) and the inode owns no
 * block, so i_blocks is 0 (not counting an extended-attribute block).
 * A longer one is a slow symlink: the target and a NUL fill the start of
 * one data block, logical block 0, the rest of which is zero.  i_size is
 * the target's length either way.  That is the kernel's layout, and
 * e2fsck's checks: a fast symlink's string must end (strnlen) at i_size,
 * a slow one's block must hold a NUL at i_size, and a target with its
 * NUL must fit in one block (longer ones are ENAMETOOLONG).
 *
 * Which kind an inode is follows from i_blocks (pw__ext2_has_blocks), as
 * in the kernel, so a symlink made by other tools reads the same way.
 * The slow block is metadata-like: it is written and read through the
 * block device's cache with sb_getblk/sb_bread, as directory blocks are;
 * the symlink's own page cache is never used.
 *
 * A target never changes after creation, so readlink takes only
 * ei_map_lock (the block map), through pw__ext2_map_block.
 */
#include "ext2.h"

#include <errno.h>
#include <string.h>

static int
ext2_write_slow_link(struct inode *inode, const char *target, size_t len)
{
	struct super_block *sb = inode->i_sb;
	struct buffer_head *bh;
	uint64_t pblk;
	bool new;
	int err = pw__ext2_map_block(inode, 0, true, &pblk, &new);
	if (!err)
		err = sb_getblk(sb, pblk, &bh);
	if (err)
		return err; /* eviction of the discarded inode frees the block */
	lock_buffer(bh);
	memset(bh->b_data, 0, sb->s_blocksize);
	memcpy(bh->b_data, target, len);
	set_buffer_Uptodate(bh);
	unlock_buffer(bh);
	mark_buffer_dirty(bh);
	brelse(bh);
	return 0;
}

/**
 * pw__ext2_write_link - store the target of a new symlink inode (no
 * blocks yet, not linked anywhere yet) and set its i_size.
 * Context: the parent's i_rwsem held.  Return: 0, -ENAMETOOLONG, -ENOSPC.
 */
int
pw__ext2_write_link(struct inode *inode, const char *target, size_t len)
{
	struct ext2_inode_info *ei = EXT2_I(inode);
	int err = 0;
	if (len + 1 > inode->i_sb->s_blocksize)
		return -ENAMETOOLONG;
	if (len < sizeof(ei->ei_data)) {
		pthread_mutex_lock(&ei->ei_map_lock);
		memset(ei->ei_data, 0, sizeof(ei->ei_data));
		memcpy(ei->ei_data, target, len);
		pthread_mutex_unlock(&ei->ei_map_lock);
	} else {
		err = ext2_write_slow_link(inode, target, len);
	}
	if (!err) {
		i_size_write(inode, (loff_t)len);
		mark_inode_dirty(inode);
	}
	return err;
}

static int
ext2_readlink(struct inode *inode, char *buf, size_t size)
{
	struct ext2_inode_info *ei = EXT2_I(inode);
	size_t len = (size_t)i_size_read(inode); /* < s_blocksize: ext2_check_raw */
	size_t n = PW_MIN(len, size);
	if (!pw__ext2_has_blocks(inode)) {
		if (len >= sizeof(ei->ei_data)) {
			ext2_error(inode->i_sb, "symlink %llu: fast, but longer than i_block",
			           (unsigned long long)inode->i_ino);
			return -EUCLEAN;
		}
		pthread_mutex_lock(&ei->ei_map_lock);
		memcpy(buf, ei->ei_data, n);
		pthread_mutex_unlock(&ei->ei_map_lock);
		return (int)n;
	}
	uint64_t pblk;
	bool new;
	struct buffer_head *bh;
	int err = pw__ext2_map_block(inode, 0, false, &pblk, &new);
	if (!err && !pblk) {
		ext2_error(inode->i_sb, "symlink %llu: slow, but no block 0",
		           (unsigned long long)inode->i_ino);
		err = -EUCLEAN;
	}
	if (!err)
		err = sb_bread(inode->i_sb, pblk, &bh);
	if (err)
		return err;
	memcpy(buf, bh->b_data, n);
	brelse(bh);
	return (int)n;
}

const struct inode_operations pw__ext2_symlink_iops = {
	.setattr = pw__ext2_setattr,
	.readlink = ext2_readlink,
	.getxattr = pw__ext2_getxattr,
	.setxattr = pw__ext2_setxattr, /* refuses: see xattr.c */
	.listxattr = pw__ext2_listxattr,
};

/*
 * inode.c - ext2 inodes: reading them from the inode table, writing them
 * back, creating and deleting them, setattr, and the address-space
 * operations of regular files.
 *
 * An inode lives at (ino - 1) % inodes_per_group in the inode table of
 * group (ino - 1) / inodes_per_group.  ext2_iget checks the number (the
 * root, or at least s_first_ino, at most s_inodes_count), reads the
 * record through sb_bread, checks it (a type we know, links, a directory
 * size that is a whole number of blocks, no extents or inline data) and
 * makes the VFS inode; s_iget_lock makes "ilookup, else read and insert"
 * atomic, so one on-disk inode never gets two VFS inodes.
 *
 * ext2_write_inode changes only the fields this code owns inside the
 * record and keeps the rest (extended fields, checksums we do not use)
 * as found; a record never written before (ei_new) is zeroed first.
 *
 * Deletion: when the last reference to an inode with no links goes, the
 * VFS calls ext2_evict_inode, which frees its blocks, stamps i_dtime,
 * writes the record and then frees the inode in its bitmap, in that
 * order, so a number is never reused while its old record is live.
 *
 * Data (regular files, slow symlinks) goes through the buffer-head
 * helpers with pw__ext2_get_block (indirect.c): readpage is
 * block_read_full_page, readahead mpage_readahead (one I/O per run of
 * consecutive blocks), writepage block_write_full_page and writepages
 * mpage_writepages (one I/O per run of consecutive blocks), write_begin
 * block_write_begin and write_end generic_write_end; with legacy_aops,
 * block_prepare_write and generic_commit_write instead.  A write step
 * that fails or is short trims the blocks it allocated past i_size, or
 * e2fsck would find blocks beyond the end of the file.
 *
 * Lock context: write_begin/write_end under i_rwsem; get_block takes
 * ei_map_lock inside the page lock (docs/LOCKING.md).  setattr(ATTR_SIZE)
 * runs under i_rwsem: truncate_setsize drops the pages before the blocks
 * are freed, so no page can be written back into a freed block.
 */
#include "ext2.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct address_space_operations ext2_aops;
static const struct address_space_operations ext2_legacy_aops;

/* ------------------------------------------------- the inode table */

/* Where the record of ino lives: its table block and byte offset. */
static int
ext2_inode_loc(struct super_block *sb, uint64_t ino, uint64_t *block, unsigned *off)
{
	struct ext2_sb_info *sbi = EXT2_SB(sb);
	if (ino == 0 || ino > sbi->s_inodes_count ||
	    (ino != EXT2_ROOT_INO && ino < sbi->s_first_ino)) {
		ext2_error(sb, "bad inode number %llu", (unsigned long long)ino);
		return -EUCLEAN;
	}
	unsigned group = (unsigned)((ino - 1) / sbi->s_inodes_per_group);
	uint64_t index = (ino - 1) % sbi->s_inodes_per_group;
	uint64_t byte = index * sbi->s_inode_size;
	*block = le32(ext2_group_desc(sb, group)->bg_inode_table) +
	         (byte >> sbi->s_blocksize_bits);
	*off = (unsigned)(byte & (sb->s_blocksize - 1));
	return 0;
}

int
pw__ext2_read_raw(struct super_block *sb, uint64_t ino, struct buffer_head **bhp,
                  struct ext2_inode **raw)
{
	uint64_t block;
	unsigned off;
	int err = ext2_inode_loc(sb, ino, &block, &off);
	if (!err)
		err = sb_bread(sb, block, bhp);
	if (!err)
		*raw = (struct ext2_inode *)((*bhp)->b_data + off);
	return err;
}

static void
ext2_get_time(struct timespec *ts, uint32_t sec, const uint32_t *extra)
{
	ts->tv_sec = (int32_t)sec;
	ts->tv_nsec = 0;
	if (extra) {
		ts->tv_sec += (time_t)(le32(*extra) & 3) << 32;
		ts->tv_nsec = (long)(le32(*extra) >> 2) % 1000000000L;
	}
}

static uint32_t
ext2_time_extra(const struct timespec *ts)
{
	uint32_t epoch = (uint32_t)(((int64_t)ts->tv_sec - (int32_t)ts->tv_sec) >> 32) & 3;
	return cpu32(((uint32_t)ts->tv_nsec << 2) | epoch);
}

/* Large inodes keep nanoseconds in the extra fields, if i_extra_isize
 * covers them. */
static bool
ext2_has_extra_times(struct super_block *sb, const struct ext2_inode *raw)
{
	return EXT2_SB(sb)->s_inode_size > EXT2_GOOD_OLD_INODE_SIZE &&
	       le16(raw->i_extra_isize) >= 16 &&
	       le16(raw->i_extra_isize) <= EXT2_SB(sb)->s_inode_size - EXT2_GOOD_OLD_INODE_SIZE;
}

static uint64_t
ext2_raw_size(const struct ext2_inode *raw)
{
	uint64_t size = le32(raw->i_size);
	if (S_ISREG(le16(raw->i_mode)))
		size |= (uint64_t)le32(raw->i_size_high) << 32;
	return size;
}

/* Is the on-disk record usable?  Return: NULL or why not. */
static const char *
ext2_check_raw(struct super_block *sb, const struct ext2_inode *raw)
{
	mode_t mode = le16(raw->i_mode);
	if (le16(raw->i_links_count) == 0)
		return "deleted inode (no links)";
	switch (mode & S_IFMT) {
	case S_IFREG: case S_IFDIR: case S_IFLNK: case S_IFCHR:
	case S_IFBLK: case S_IFIFO: case S_IFSOCK:
		break;
	default:
		return "unknown file type";
	}
	if (le32(raw->i_flags) & (EXT2_EXTENTS_FL | EXT2_INLINE_DATA_FL))
		return "extents or inline data";
	if (S_ISDIR(mode) && (le32(raw->i_size) & (sb->s_blocksize - 1)))
		return "directory size not a multiple of the block size";
	if (S_ISREG(mode) && ext2_raw_size(raw) > (uint64_t)sb->s_maxbytes)
		return "size larger than the largest file";
	if (S_ISLNK(mode) && le32(raw->i_size) >= sb->s_blocksize)
		return "symlink too long";
	return NULL;
}

static void
ext2_fill_inode(struct inode *inode, const struct ext2_inode *raw)
{
	struct ext2_inode_info *ei = EXT2_I(inode);
	const struct ext2_inode *r = raw;
	bool extra = ext2_has_extra_times(inode->i_sb, raw);
	inode->i_mode = le16(r->i_mode);
	inode->i_uid = le16(r->i_uid) | (uid_t)le16(r->i_uid_high) << 16;
	inode->i_gid = le16(r->i_gid) | (gid_t)le16(r->i_gid_high) << 16;
	atomic_store(&inode->i_nlink, le16(r->i_links_count));
	i_size_write(inode, (loff_t)ext2_raw_size(r)); /* checked: <= s_maxbytes */
	ext2_get_time(&inode->i_atime, le32(r->i_atime), extra ? &r->i_atime_extra : NULL);
	ext2_get_time(&inode->i_mtime, le32(r->i_mtime), extra ? &r->i_mtime_extra : NULL);
	ext2_get_time(&inode->i_ctime, le32(r->i_ctime), extra ? &r->i_ctime_extra : NULL);
	inode->i_blocks = le32(r->i_blocks);
	memcpy(ei->ei_data, r->i_block, sizeof(ei->ei_data));
	ei->ei_flags = le32(r->i_flags);
	ei->ei_file_acl = le32(r->i_file_acl);
	ei->ei_generation = le32(r->i_generation);
	ei->ei_dtime = le32(r->i_dtime);
}

static struct ext2_inode_info *
ext2_alloc_info(struct super_block *sb, uint64_t ino)
{
	struct ext2_inode_info *ei = pw__kzalloc(sizeof(*ei));
	if (!ei)
		return NULL;
	pthread_mutex_init(&ei->ei_map_lock, NULL);
	pthread_rwlock_init(&ei->ei_dir_lock, NULL);
	ei->ei_group = (unsigned)((ino - 1) / EXT2_SB(sb)->s_inodes_per_group);
	return ei;
}

static void
ext2_free_info(struct ext2_inode_info *ei)
{
	pw__ext2_dix_drop(ei);
	pthread_mutex_destroy(&ei->ei_map_lock);
	pthread_rwlock_destroy(&ei->ei_dir_lock);
	pw__kfree(ei, sizeof(*ei));
}

static void
ext2_set_ops(struct inode *inode)
{
	if (S_ISDIR(inode->i_mode))
		inode->i_op = &pw__ext2_dir_iops;
	else if (S_ISLNK(inode->i_mode))
		inode->i_op = &pw__ext2_symlink_iops;
	else
		inode->i_op = &pw__ext2_file_iops;
}

static const struct address_space_operations *
ext2_pick_aops(struct super_block *sb)
{
	return EXT2_SB(sb)->s_legacy ? &ext2_legacy_aops : &ext2_aops;
}

/* Read inode ino from disk into a new VFS inode (s_iget_lock held). */
static int
ext2_read_inode(struct super_block *sb, uint64_t ino, struct inode **res)
{
	struct buffer_head *bh;
	struct ext2_inode *raw;
	int err = pw__ext2_read_raw(sb, ino, &bh, &raw);
	if (err)
		return err;
	const char *why = ext2_check_raw(sb, raw);
	if (why) {
		ext2_error(sb, "inode %llu: %s", (unsigned long long)ino, why);
		brelse(bh);
		return -EUCLEAN;
	}
	struct ext2_inode_info *ei = ext2_alloc_info(sb, ino);
	struct inode *inode = ei ? new_inode(sb, ino, ext2_pick_aops(sb)) : NULL;
	if (!inode) {
		if (ei)
			ext2_free_info(ei);
		brelse(bh);
		return -ENOMEM;
	}
	inode->i_private = ei;
	ext2_fill_inode(inode, raw);
	brelse(bh);
	ext2_set_ops(inode);
	insert_inode_hash(inode);
	*res = inode;
	return 0;
}

/**
 * pw__ext2_iget - the inode ino, from the cache or from disk.
 * Context: may sleep; no ext2 lock held.
 * Return: 0 with a reference in *res; -EUCLEAN for a bad number or record.
 */
int
pw__ext2_iget(struct super_block *sb, uint64_t ino, struct inode **res)
{
	struct ext2_sb_info *sbi = EXT2_SB(sb);
	struct inode *inode = ilookup(sb, ino);
	if (inode) {
		*res = inode;
		return 0;
	}
	pthread_mutex_lock(&sbi->s_iget_lock);
	inode = ilookup(sb, ino);
	int err = 0;
	if (inode)
		*res = inode;
	else
		err = ext2_read_inode(sb, ino, res);
	pthread_mutex_unlock(&sbi->s_iget_lock);
	return err;
}

/* Copy the VFS inode into its on-disk record (buffer locked). */
static void
ext2_fill_raw(struct inode *inode, struct ext2_inode *r)
{
	struct ext2_inode_info *ei = EXT2_I(inode);
	loff_t size = i_size_read(inode);
	r->i_mode = cpu16((uint16_t)inode->i_mode);
	r->i_uid = cpu16((uint16_t)inode->i_uid);
	r->i_uid_high = cpu16((uint16_t)(inode->i_uid >> 16));
	r->i_gid = cpu16((uint16_t)inode->i_gid);
	r->i_gid_high = cpu16((uint16_t)(inode->i_gid >> 16));
	r->i_links_count = cpu16((uint16_t)atomic_load(&inode->i_nlink));
	r->i_size = cpu32((uint32_t)size);
	if (S_ISREG(inode->i_mode))
		r->i_size_high = cpu32((uint32_t)((uint64_t)size >> 32));
	struct timespec atime = inode_time_get(&inode->i_atime);
	struct timespec mtime = inode_time_get(&inode->i_mtime);
	struct timespec ctime = inode_time_get(&inode->i_ctime);
	r->i_atime = cpu32((uint32_t)atime.tv_sec);
	r->i_mtime = cpu32((uint32_t)mtime.tv_sec);
	r->i_ctime = cpu32((uint32_t)ctime.tv_sec);
	r->i_dtime = cpu32(ei->ei_dtime);
	r->i_flags = cpu32(__atomic_load_n(&ei->ei_flags, __ATOMIC_RELAXED));
	r->i_generation = cpu32(ei->ei_generation);
	r->i_file_acl = cpu32(__atomic_load_n(&ei->ei_file_acl, __ATOMIC_RELAXED));
	if (ext2_has_extra_times(inode->i_sb, r)) {
		r->i_atime_extra = ext2_time_extra(&atime);
		r->i_mtime_extra = ext2_time_extra(&mtime);
		r->i_ctime_extra = ext2_time_extra(&ctime);
	}
	pthread_mutex_lock(&ei->ei_map_lock);
	r->i_blocks = cpu32((uint32_t)inode->i_blocks);
	memcpy(r->i_block, ei->ei_data, sizeof(r->i_block));
	pthread_mutex_unlock(&ei->ei_map_lock);
}

/**
 * pw__ext2_write_inode - put the inode into its inode-table buffer and
 * dirty it; with sync, write that buffer to the device too.
 * Context: may sleep; takes the buffer lock and ei_map_lock.
 */
int
pw__ext2_write_inode(struct inode *inode, bool sync)
{
	struct super_block *sb = inode->i_sb;
	struct ext2_inode_info *ei = EXT2_I(inode);
	struct buffer_head *bh;
	struct ext2_inode *raw;
	if (ext2_ro(sb) || !ei)
		return 0;
	int err = pw__ext2_read_raw(sb, inode->i_ino, &bh, &raw);
	if (err)
		return err;
	lock_buffer(bh);
	if (ei->ei_new) {
		memset(raw, 0, EXT2_SB(sb)->s_inode_size);
		ei->ei_new = false;
	}
	ext2_fill_raw(inode, raw);
	unlock_buffer(bh);
	mark_buffer_dirty(bh);
	if (sync)
		err = sync_dirty_buffer(bh);
	brelse(bh);
	return err;
}

/* Free what an unlinked inode owns on disk: blocks, then the number. */
static void
ext2_delete_inode(struct inode *inode)
{
	struct ext2_inode_info *ei = EXT2_I(inode);
	struct timespec now;
	pw__current_time(&now);
	if (pw__ext2_has_blocks(inode)) {
		i_size_write(inode, 0);
		int err = pw__ext2_truncate_blocks(inode, 0);
		if (err)
			ext2_error(inode->i_sb, "inode %llu: freeing blocks: %s",
			           (unsigned long long)inode->i_ino, strerror(-err));
	}
	pw__ext2_xattr_release(inode);
	ei->ei_dtime = (uint32_t)now.tv_sec;
	inode_time_set(&inode->i_ctime, now);
	int err = pw__ext2_write_inode(inode, false);
	if (err)
		ext2_error(inode->i_sb, "inode %llu: writing at deletion: %s",
		           (unsigned long long)inode->i_ino, strerror(-err));
	pw__ext2_free_ino(inode->i_sb, inode->i_ino, S_ISDIR(inode->i_mode));
}

/**
 * pw__ext2_evict_inode - the inode leaves memory; with no links left it
 * leaves the disk too.  Its pages are gone already (evict in inode.c of
 * the VFS truncates them first).
 */
void
pw__ext2_evict_inode(struct inode *inode)
{
	struct ext2_inode_info *ei = EXT2_I(inode);
	if (!ei)
		return;
	if (atomic_load(&inode->i_nlink) == 0 && !ext2_ro(inode->i_sb))
		ext2_delete_inode(inode);
	else if (inode_test_clear_dirty(inode))
		pw__ext2_write_inode(inode, false);
	inode->i_private = NULL;
	ext2_free_info(ei);
}

/* ------------------------------------------------------ new inodes */

void
pw__ext2_touch(struct inode *inode, bool mtime)
{
	struct timespec now;
	pw__current_time(&now);
	inode_time_set(&inode->i_ctime, now);
	if (mtime)
		inode_time_set(&inode->i_mtime, now);
	mark_inode_dirty(inode);
}

/**
 * pw__ext2_new_inode - allocate an inode near dir and make it: owner,
 * times, no blocks, one link (two for a directory, whose "." counts).
 * The record is written (zeroed first) into its table buffer at once.
 * Context: dir's i_rwsem held.  Return: 0 with a reference, or -errno.
 */
int
pw__ext2_new_inode(struct inode *dir, mode_t mode, struct inode **res)
{
	struct super_block *sb = dir->i_sb;
	uint64_t ino;
	int err = pw__ext2_alloc_ino(dir, S_ISDIR(mode), &ino);
	if (err)
		return err;
	struct ext2_inode_info *ei = ext2_alloc_info(sb, ino);
	struct inode *inode = ei ? new_inode(sb, ino, ext2_pick_aops(sb)) : NULL;
	if (!inode) {
		if (ei)
			ext2_free_info(ei);
		pw__ext2_free_ino(sb, ino, S_ISDIR(mode));
		return -ENOMEM;
	}
	inode->i_private = ei;
	ei->ei_new = true;
	ei->ei_generation = (uint32_t)random();
	inode->i_mode = mode;
	inode->i_uid = pw__current_uid();
	inode->i_gid = (dir->i_mode & S_ISGID) ? dir->i_gid : pw__current_gid();
	if (S_ISDIR(mode) && (dir->i_mode & S_ISGID))
		inode->i_mode |= S_ISGID;
	atomic_store(&inode->i_nlink, S_ISDIR(mode) ? 2 : 1);
	inode->i_blocks = 0;
	ext2_set_ops(inode);
	insert_inode_hash(inode);
	if ((err = pw__ext2_write_inode(inode, false))) {
		atomic_store(&inode->i_nlink, 0);
		iput(inode);
		return err;
	}
	*res = inode;
	return 0;
}

/* ---------------------------------------------------------- setattr */

/* Truncate or extend under i_rwsem.  Shrinking drops the pages past the
 * new size first, zeroes the tail of the new last block (so growing the
 * file later shows zeroes there), then frees the blocks past it. */
static int
ext2_setsize(struct inode *inode, loff_t size)
{
	if (!S_ISREG(inode->i_mode))
		return -EINVAL;
	if (size > inode->i_sb->s_maxbytes)
		return -EFBIG;
	loff_t old = i_size_read(inode);
	if (size >= old) {
		truncate_setsize(inode, size);
		mark_inode_dirty(inode);
		return 0;
	}
	int err = block_truncate_page(inode->i_mapping, size, pw__ext2_get_block);
	if (err)
		return err;
	truncate_setsize(inode, size);
	err = pw__ext2_truncate_blocks(inode, size);
	mark_inode_dirty(inode);
	return err;
}

int
pw__ext2_setattr(struct inode *inode, const struct pw_iattr *attr)
{
	int err = 0;
	if (ext2_ro(inode->i_sb))
		return -EROFS;
	if (attr->valid & ATTR_SIZE)
		err = ext2_setsize(inode, attr->size);
	if (err)
		return err;
	if (attr->valid & ATTR_MODE)
		inode->i_mode = (inode->i_mode & S_IFMT) | (attr->mode & 07777);
	if (attr->valid & ATTR_UID)
		inode->i_uid = attr->uid;
	if (attr->valid & ATTR_GID)
		inode->i_gid = attr->gid;
	if (attr->valid & ATTR_ATIME)
		inode_time_set(&inode->i_atime, attr->atime);
	if (attr->valid & ATTR_MTIME)
		inode_time_set(&inode->i_mtime, attr->mtime);
	pw__ext2_touch(inode, false);
	return 0;
}

/* ------------------------------------------------ address-space ops */

static int
ext2_readpage(struct file *file, struct page *page)
{
	(void)file;
	return block_read_full_page(page, pw__ext2_get_block);
}

/* A run of new pages: their blocks are mapped first, then each run of
 * consecutive device blocks is read with one I/O. */
static void
ext2_readahead(struct file *file, struct address_space *mapping,
               struct page **pages, unsigned nr)
{
	(void)file, (void)mapping;
	mpage_readahead(pages, nr, pw__ext2_get_block);
}

static int
ext2_writepage(struct page *page, struct writeback_control *wbc)
{
	return block_write_full_page(page, pw__ext2_get_block, wbc);
}

/* Runs of consecutive blocks go out with one write each, across pages. */
static int
ext2_writepages(struct address_space *mapping, struct writeback_control *wbc)
{
	return mpage_writepages(mapping, wbc, pw__ext2_get_block);
}

/* A write step that did not reach end: drop what it may have put past
 * i_size, in the cache and on disk.  i_rwsem held, no page locked. */
static void
ext2_write_failed(struct inode *inode, loff_t end)
{
	loff_t size = i_size_read(inode);
	if (end <= size)
		return;
	truncate_inode_pages(inode->i_mapping, size);
	int err = pw__ext2_truncate_blocks(inode, size);
	if (err)
		ext2_error(inode->i_sb, "inode %llu: trimming after a failed write: %s",
		           (unsigned long long)inode->i_ino, strerror(-err));
}

static int
ext2_write_begin(struct file *file, struct address_space *mapping, loff_t pos,
                 unsigned len, unsigned flags, struct page **pagep, void **fsdata)
{
	(void)file;
	if (ext2_ro(mapping->host->i_sb))
		return -EROFS;
	*pagep = NULL;
	*fsdata = NULL;
	int err = block_write_begin(mapping, pos, len, flags, pagep, pw__ext2_get_block);
	if (err)
		ext2_write_failed(mapping->host, pos + len);
	return err;
}

static int
ext2_write_end(struct file *file, struct address_space *mapping, loff_t pos,
               unsigned len, unsigned copied, struct page *page, void *fsdata)
{
	int ret = generic_write_end(file, mapping, pos, len, copied, page, fsdata);
	if (ret >= 0 && (unsigned)ret < len)
		ext2_write_failed(mapping->host, pos + len);
	/* The VFS set new times but marks the inode dirty only when the
	 * file grew: an overwrite must reach the inode table too. */
	if (ret > 0)
		mark_inode_dirty(mapping->host);
	return ret;
}

static int
ext2_commit_write(struct file *file, struct page *page, unsigned from,
                  unsigned to)
{
	int err = generic_commit_write(file, page, from, to);
	if (!err && to > from)
		mark_inode_dirty(page->mapping->host);
	return err;
}

static int
ext2_prepare_write(struct file *file, struct page *page, unsigned from,
                   unsigned to)
{
	(void)file;
	struct inode *inode = page->mapping->host;
	if (ext2_ro(inode->i_sb))
		return -EROFS;
	int err = block_prepare_write(page, from, to, pw__ext2_get_block);
	/* The page is locked here, so only the blocks can be trimmed; the
	 * caller (legacy_trim) then drops the pages past i_size, whose
	 * buffers lose their mappings to the blocks freed here. */
	loff_t end = ((loff_t)page->index << PAGE_SHIFT) + to;
	if (err && end > i_size_read(inode))
		pw__ext2_truncate_blocks(inode, i_size_read(inode));
	return err;
}

/* A shared mapping is about to make this locked, uptodate page
 * writable: allocate the blocks under it now, so that a full disk is a
 * SIGBUS at the store rather than a writeback error nobody sees.  Runs
 * in the fault handler: get_block allocates without malloc. */
static int
ext2_page_mkwrite(struct vm_area_struct *vma, struct page *page)
{
	if (ext2_ro(page->mapping->host->i_sb))
		return -EROFS;
	return block_page_mkwrite(vma, page, pw__ext2_get_block);
}

static ssize_t
ext2_read_direct(struct inode *inode, void *buf, size_t len, loff_t pos)
{
	return blockdev_read_direct(inode, buf, len, pos, pw__ext2_get_block);
}

static const struct address_space_operations ext2_aops = {
	.readpage = ext2_readpage,
	.readahead = ext2_readahead,
	.writepage = ext2_writepage,
	.writepages = ext2_writepages,
	.write_begin = ext2_write_begin,
	.write_end = ext2_write_end,
	.page_mkwrite = ext2_page_mkwrite,
	.invalidatepage = block_invalidatepage,
	.read_direct = ext2_read_direct,
};

static const struct address_space_operations ext2_legacy_aops = {
	.readpage = ext2_readpage,
	.readahead = ext2_readahead,
	.writepage = ext2_writepage,
	.writepages = ext2_writepages,
	.prepare_write = ext2_prepare_write,
	.commit_write = ext2_commit_write,
	.page_mkwrite = ext2_page_mkwrite,
	.invalidatepage = block_invalidatepage,
	.read_direct = ext2_read_direct,
};

const struct inode_operations pw__ext2_file_iops = {
	.setattr = pw__ext2_setattr,
	.getxattr = pw__ext2_getxattr,
	.setxattr = pw__ext2_setxattr,
	.listxattr = pw__ext2_listxattr,
};

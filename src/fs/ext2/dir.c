/*
 * dir.c - ext2 directories: blocks of variable-length entries.
 *
 * A directory is a file of whole blocks.  Each block is a chain of
 * entries (inode, rec_len, name_len, file_type, name) whose rec_lens add
 * up to exactly the block size; an entry with inode 0 is unused space.
 * Block 0 starts with "." and "..".  Directory blocks are metadata here:
 * they are read and changed through sb_bread in the device cache (as
 * ext4 does), located with pw__ext2_map_block; the directory's own page
 * cache is not used.
 *
 * Every entry is checked before use (ext2_check_entry): rec_len at least
 * 12, a multiple of 4, inside the block, large enough for the name; an
 * inode number no larger than s_inodes_count.  A bad entry makes the
 * operation fail with -EUCLEAN and a log line naming the directory,
 * block and offset.  Holes in a directory are skipped.
 *
 * Hashed (dir_index) directories are read as linear ones, which is what
 * they are underneath: the index lives in entries with inode 0 that span
 * whole blocks.  A change to such a directory clears EXT2_INDEX_FL, so
 * e2fsck does not check a stale index (as the kernel's ext2 does).
 *
 * Adding an entry takes the first unused entry, or splits the first
 * entry with enough slack, large enough; failing that, a new block is
 * appended.  Removing one merges it into the entry before it in the same
 * block, or marks it unused if it is the first.
 *
 * Lock ordering: VFS i_rwsem of the directory -> ei_dir_lock (readers:
 * lookup and readdir, which the VFS calls without i_rwsem; writers:
 * every change) -> ei_map_lock -> s_alloc_lock -> buffer lock;
 * ei_dir_lock -> s_iget_lock (pw__ext2_lookup).
 */
#include "ext2.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>

static struct ext2_dir_entry *
ext2_entry_at(struct buffer_head *bh, unsigned off)
{
	return (struct ext2_dir_entry *)(bh->b_data + off);
}

unsigned
pw__ext2_ftype(mode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG: return EXT2_FT_REG_FILE;
	case S_IFDIR: return EXT2_FT_DIR;
	case S_IFCHR: return EXT2_FT_CHRDEV;
	case S_IFBLK: return EXT2_FT_BLKDEV;
	case S_IFIFO: return EXT2_FT_FIFO;
	case S_IFSOCK: return EXT2_FT_SOCK;
	case S_IFLNK: return EXT2_FT_SYMLINK;
	}
	return EXT2_FT_UNKNOWN;
}

static unsigned
ext2_dtype(struct super_block *sb, unsigned ft)
{
	static const unsigned char dt[EXT2_FT_MAX] = {
		DT_UNKNOWN, DT_REG, DT_DIR, DT_CHR, DT_BLK, DT_FIFO, DT_SOCK, DT_LNK};
	if (!EXT2_SB(sb)->s_filetype || ft >= EXT2_FT_MAX)
		return DT_UNKNOWN;
	return dt[ft];
}

/* Check the entry at off of a directory block.  Return: 0 or -EUCLEAN. */
static int
ext2_check_entry(struct inode *dir, struct buffer_head *bh, uint64_t lblk,
                 unsigned off)
{
	struct super_block *sb = dir->i_sb;
	unsigned bs = (unsigned)sb->s_blocksize;
	const char *why = NULL;
	if (off + 8 > bs) {
		why = "entry header past the block";
	} else {
		struct ext2_dir_entry *de = ext2_entry_at(bh, off);
		unsigned rec = le16(de->rec_len);
		if (rec < EXT2_DIR_REC_LEN(1))
			why = "rec_len too small";
		else if (rec & 3)
			why = "rec_len not a multiple of 4";
		else if (off + rec > bs)
			why = "rec_len past the block";
		else if (EXT2_DIR_REC_LEN(de->name_len) > rec)
			why = "name longer than the record";
		else if (le32(de->inode) > EXT2_SB(sb)->s_inodes_count)
			why = "inode number out of range";
	}
	if (!why)
		return 0;
	ext2_error(sb, "directory %llu, block %llu, offset %u: %s",
	           (unsigned long long)dir->i_ino, (unsigned long long)lblk, off, why);
	return -EUCLEAN;
}

/* Read directory block lblk; *bhp is NULL for a hole. */
static int
ext2_dir_bread(struct inode *dir, uint64_t lblk, struct buffer_head **bhp)
{
	uint64_t pblk;
	bool new;
	*bhp = NULL;
	int err = pw__ext2_map_block(dir, lblk, false, &pblk, &new);
	if (err || !pblk)
		return err;
	return sb_bread(dir->i_sb, pblk, bhp);
}

static uint64_t
ext2_dir_blocks(struct inode *dir)
{
	return (uint64_t)i_size_read(dir) >> EXT2_SB(dir->i_sb)->s_blocksize_bits;
}

static bool
ext2_name_is(const struct ext2_dir_entry *de, const char *name, size_t len)
{
	return de->inode && de->name_len == len && memcmp(de->name, name, len) == 0;
}

/* Find name; ei_dir_lock held.  Return: 0 with slot (bh referenced),
 * -ENOENT, or an error. */
static int
ext2_find_locked(struct inode *dir, const char *name, size_t len,
                 struct ext2_dir_slot *slot)
{
	uint64_t nblocks = ext2_dir_blocks(dir);
	for (uint64_t lblk = 0; lblk < nblocks; lblk++) {
		struct buffer_head *bh;
		int err = ext2_dir_bread(dir, lblk, &bh);
		if (err)
			return err;
		unsigned off = 0, prev = 0;
		while (bh && off < dir->i_sb->s_blocksize) {
			if ((err = ext2_check_entry(dir, bh, lblk, off))) {
				brelse(bh);
				return err;
			}
			struct ext2_dir_entry *de = ext2_entry_at(bh, off);
			if (ext2_name_is(de, name, len)) {
				*slot = (struct ext2_dir_slot){bh, off, prev};
				return 0;
			}
			prev = off;
			off += le16(de->rec_len);
		}
		brelse(bh);
	}
	return -ENOENT;
}

static int
ext2_check_name(const char *name, size_t len)
{
	if (len == 0 || memchr(name, '/', len) || memchr(name, 0, len))
		return -EINVAL;
	return len > EXT2_NAME_LEN ? -ENAMETOOLONG : 0;
}

int
pw__ext2_find_entry(struct inode *dir, const char *name, size_t len, uint64_t *ino)
{
	struct ext2_inode_info *ei = EXT2_I(dir);
	struct ext2_dir_slot slot;
	int err = ext2_check_name(name, len);
	if (err)
		return err;
	pthread_rwlock_rdlock(&ei->ei_dir_lock);
	err = ext2_find_locked(dir, name, len, &slot);
	pthread_rwlock_unlock(&ei->ei_dir_lock);
	if (err)
		return err;
	*ino = le32(ext2_entry_at(slot.bh, slot.offset)->inode);
	brelse(slot.bh);
	return 0;
}

/* The VFS looks up without the directory's i_rwsem, so the inode is
 * taken (iget) before ei_dir_lock is dropped: otherwise an unlink could
 * remove the entry and free the inode in between, and iget would read a
 * deleted record and report corruption.  Lock ordering: ei_dir_lock ->
 * s_iget_lock. */
int
pw__ext2_lookup(struct inode *dir, const char *name, size_t len, struct inode **res)
{
	struct ext2_inode_info *ei = EXT2_I(dir);
	struct ext2_dir_slot slot;
	int err = ext2_check_name(name, len);
	if (err)
		return err;
	pthread_rwlock_rdlock(&ei->ei_dir_lock);
	err = ext2_find_locked(dir, name, len, &slot);
	if (!err) {
		uint64_t ino = le32(ext2_entry_at(slot.bh, slot.offset)->inode);
		brelse(slot.bh);
		err = pw__ext2_iget(dir->i_sb, ino, res);
	}
	pthread_rwlock_unlock(&ei->ei_dir_lock);
	return err;
}

/* Report the live entries of one block except "." and "..";
 * ei_dir_lock held.  Return: 1 if fill asked to stop, 0, or -errno. */
static int
ext2_readdir_block(struct inode *dir, struct buffer_head *bh, uint64_t lblk,
                   void *ctx, filldir_t fill)
{
	for (unsigned off = 0; off < dir->i_sb->s_blocksize;) {
		int err = ext2_check_entry(dir, bh, lblk, off);
		if (err)
			return err;
		struct ext2_dir_entry *de = ext2_entry_at(bh, off);
		off += le16(de->rec_len);
		if (!de->inode || (de->name_len == 1 && de->name[0] == '.') ||
		    (de->name_len == 2 && de->name[0] == '.' && de->name[1] == '.'))
			continue;
		if (fill(ctx, de->name, de->name_len, le32(de->inode),
		         ext2_dtype(dir->i_sb, de->file_type)))
			return 1;
	}
	return 0;
}

int
pw__ext2_readdir(struct inode *dir, void *ctx, filldir_t fill)
{
	struct ext2_inode_info *ei = EXT2_I(dir);
	uint64_t nblocks = ext2_dir_blocks(dir);
	int err = 0;
	pthread_rwlock_rdlock(&ei->ei_dir_lock);
	for (uint64_t lblk = 0; lblk < nblocks && !err; lblk++) {
		struct buffer_head *bh;
		if ((err = ext2_dir_bread(dir, lblk, &bh)) || !bh)
			continue;
		err = ext2_readdir_block(dir, bh, lblk, ctx, fill);
		brelse(bh);
	}
	pthread_rwlock_unlock(&ei->ei_dir_lock);
	return err < 0 ? err : 0;
}

/* --------------------------------------------------------- changes */

/* A directory block changed: dirty it, and the directory loses its
 * (now stale) hash index and gets new times.  The directory's inode goes
 * into its inode-table buffer at once: every ext2 fsync writes the whole
 * device cache, so the fsync of a file created here then carries the
 * directory's size and block map along with the entry that names it
 * (left in memory, a new directory block would be lost at a crash, and
 * the fsynced file with it). */
static void
ext2_dir_changed(struct inode *dir, struct buffer_head *bh)
{
	mark_buffer_dirty(bh);
	__atomic_fetch_and(&EXT2_I(dir)->ei_flags, ~(uint32_t)EXT2_INDEX_FL, __ATOMIC_RELAXED);
	pw__ext2_touch(dir, true);
	if (inode_test_clear_dirty(dir)) {
		int err = pw__ext2_write_inode(dir, false);
		if (err)
			mark_inode_dirty(dir);
	}
}

static void
ext2_fill_entry(struct inode *dir, struct ext2_dir_entry *de, const char *name,
                size_t len, struct inode *inode)
{
	de->inode = cpu32((uint32_t)inode->i_ino);
	de->name_len = (uint8_t)len;
	de->file_type = EXT2_SB(dir->i_sb)->s_filetype ? (uint8_t)pw__ext2_ftype(inode->i_mode) : 0;
	memcpy(de->name, name, len);
}

/* Try to place an entry of `need` bytes in this block.  Return: 1 if
 * placed, 0 if no room, -EUCLEAN. */
static int
ext2_add_to_block(struct inode *dir, struct buffer_head *bh, uint64_t lblk,
                  const char *name, size_t len, struct inode *inode)
{
	unsigned need = EXT2_DIR_REC_LEN(len);
	for (unsigned off = 0; off < dir->i_sb->s_blocksize;) {
		int err = ext2_check_entry(dir, bh, lblk, off);
		if (err)
			return err;
		struct ext2_dir_entry *de = ext2_entry_at(bh, off);
		unsigned rec = le16(de->rec_len);
		unsigned used = de->inode ? EXT2_DIR_REC_LEN(de->name_len) : 0;
		if (rec - used >= need) {
			if (used) {
				de->rec_len = cpu16((uint16_t)used);
				de = ext2_entry_at(bh, off + used);
				de->rec_len = cpu16((uint16_t)(rec - used));
			}
			ext2_fill_entry(dir, de, name, len, inode);
			ext2_dir_changed(dir, bh);
			return 1;
		}
		off += rec;
	}
	return 0;
}

/* Append a new block holding one unused entry that spans it. */
static int
ext2_dir_append(struct inode *dir, struct buffer_head **bhp, uint64_t *lblkp)
{
	struct super_block *sb = dir->i_sb;
	uint64_t lblk = ext2_dir_blocks(dir), pblk;
	bool new;
	int err = pw__ext2_map_block(dir, lblk, true, &pblk, &new);
	struct buffer_head *bh;
	if (!err)
		err = sb_getblk(sb, pblk, &bh);
	if (err) {
		/* An indirect block may have been allocated for nothing. */
		pw__ext2_truncate_blocks(dir, i_size_read(dir));
		return err;
	}
	lock_buffer(bh);
	memset(bh->b_data, 0, sb->s_blocksize);
	ext2_entry_at(bh, 0)->rec_len = cpu16((uint16_t)sb->s_blocksize);
	set_buffer_Uptodate(bh);
	unlock_buffer(bh);
	mark_buffer_dirty(bh);
	i_size_write(dir, (loff_t)(lblk + 1) << EXT2_SB(sb)->s_blocksize_bits);
	mark_inode_dirty(dir);
	*bhp = bh;
	*lblkp = lblk;
	return 0;
}

/**
 * pw__ext2_add_entry - add name -> inode to dir.  The caller has checked
 * that name is not there.
 * Context: dir's i_rwsem held.  Return: 0, -ENOSPC, -ENAMETOOLONG, ...
 */
int
pw__ext2_add_entry(struct inode *dir, const char *name, size_t len,
                   struct inode *inode)
{
	struct ext2_inode_info *ei = EXT2_I(dir);
	int err = ext2_check_name(name, len);
	if (err)
		return err;
	pthread_rwlock_wrlock(&ei->ei_dir_lock);
	uint64_t nblocks = ext2_dir_blocks(dir);
	int placed = 0;
	for (uint64_t lblk = 0; lblk < nblocks && !placed; lblk++) {
		struct buffer_head *bh;
		if ((err = ext2_dir_bread(dir, lblk, &bh)))
			break;
		if (bh) {
			placed = ext2_add_to_block(dir, bh, lblk, name, len, inode);
			brelse(bh);
		}
		if (placed < 0)
			err = placed;
	}
	if (!err && !placed) {
		struct buffer_head *bh;
		uint64_t lblk;
		if (!(err = ext2_dir_append(dir, &bh, &lblk))) {
			placed = ext2_add_to_block(dir, bh, lblk, name, len, inode);
			brelse(bh);
			err = placed == 1 ? 0 : -EIO;
		}
	}
	pthread_rwlock_unlock(&ei->ei_dir_lock);
	return err;
}

/**
 * pw__ext2_delete_entry - remove name from dir, if it still names ino.
 * Context: dir's i_rwsem held.  Return: 0, -ENOENT, -EUCLEAN, -EIO.
 */
int
pw__ext2_delete_entry(struct inode *dir, const char *name, size_t len, uint64_t ino)
{
	struct ext2_inode_info *ei = EXT2_I(dir);
	struct ext2_dir_slot s;
	pthread_rwlock_wrlock(&ei->ei_dir_lock);
	int err = ext2_find_locked(dir, name, len, &s);
	if (!err) {
		struct ext2_dir_entry *de = ext2_entry_at(s.bh, s.offset);
		if (le32(de->inode) != ino) {
			err = -ENOENT;
		} else if (s.prev != s.offset) {
			struct ext2_dir_entry *pde = ext2_entry_at(s.bh, s.prev);
			pde->rec_len = cpu16((uint16_t)(le16(pde->rec_len) + le16(de->rec_len)));
			ext2_dir_changed(dir, s.bh);
		} else {
			de->inode = 0;
			ext2_dir_changed(dir, s.bh);
		}
		brelse(s.bh);
	}
	pthread_rwlock_unlock(&ei->ei_dir_lock);
	return err;
}

/**
 * pw__ext2_set_entry - point the existing entry name at inode (rename
 * over an existing name); *old_ino is what it named.
 * Context: dir's i_rwsem held.
 */
int
pw__ext2_set_entry(struct inode *dir, const char *name, size_t len,
                   struct inode *inode, uint64_t *old_ino)
{
	struct ext2_inode_info *ei = EXT2_I(dir);
	struct ext2_dir_slot s;
	pthread_rwlock_wrlock(&ei->ei_dir_lock);
	int err = ext2_find_locked(dir, name, len, &s);
	if (!err) {
		struct ext2_dir_entry *de = ext2_entry_at(s.bh, s.offset);
		*old_ino = le32(de->inode);
		ext2_fill_entry(dir, de, name, len, inode);
		ext2_dir_changed(dir, s.bh);
		brelse(s.bh);
	}
	pthread_rwlock_unlock(&ei->ei_dir_lock);
	return err;
}

/* The ".." entry of a directory: the second entry of block 0. */
static int
ext2_find_dotdot(struct inode *dir, struct ext2_dir_slot *s)
{
	int err = ext2_dir_bread(dir, 0, &s->bh);
	if (!err && !s->bh)
		err = -EUCLEAN;
	if (err)
		return err;
	unsigned off = le16(ext2_entry_at(s->bh, 0)->rec_len);
	if ((err = ext2_check_entry(dir, s->bh, 0, 0)) ||
	    (err = ext2_check_entry(dir, s->bh, 0, off)) ||
	    !ext2_name_is(ext2_entry_at(s->bh, off), "..", 2)) {
		ext2_error(dir->i_sb, "directory %llu has no \"..\"",
		           (unsigned long long)dir->i_ino);
		brelse(s->bh);
		return -EUCLEAN;
	}
	s->offset = off;
	return 0;
}

/**
 * pw__ext2_set_dotdot - after a directory moved: ".." names its new parent.
 * Context: the directory's i_rwsem is not needed: the VFS holds the
 * rename lock and both parents' i_rwsem, and nothing else changes "..".
 */
int
pw__ext2_set_dotdot(struct inode *dir, struct inode *parent)
{
	struct ext2_inode_info *ei = EXT2_I(dir);
	struct ext2_dir_slot s;
	pthread_rwlock_wrlock(&ei->ei_dir_lock);
	int err = ext2_find_dotdot(dir, &s);
	if (!err) {
		ext2_fill_entry(dir, ext2_entry_at(s.bh, s.offset), "..", 2, parent);
		ext2_dir_changed(dir, s.bh);
		brelse(s.bh);
	}
	pthread_rwlock_unlock(&ei->ei_dir_lock);
	return err;
}

/**
 * pw__ext2_make_empty - the first block of a new directory: "." and "..".
 * Context: the new inode is not visible yet.
 */
int
pw__ext2_make_empty(struct inode *inode, struct inode *parent)
{
	struct buffer_head *bh;
	uint64_t lblk;
	int err = ext2_dir_append(inode, &bh, &lblk);
	if (err)
		return err;
	unsigned bs = (unsigned)inode->i_sb->s_blocksize;
	lock_buffer(bh);
	struct ext2_dir_entry *de = ext2_entry_at(bh, 0);
	ext2_fill_entry(inode, de, ".", 1, inode);
	de->rec_len = cpu16((uint16_t)EXT2_DIR_REC_LEN(1));
	de = ext2_entry_at(bh, EXT2_DIR_REC_LEN(1));
	ext2_fill_entry(inode, de, "..", 2, parent);
	de->rec_len = cpu16((uint16_t)(bs - EXT2_DIR_REC_LEN(1)));
	unlock_buffer(bh);
	mark_buffer_dirty(bh);
	brelse(bh);
	return 0;
}

/**
 * pw__ext2_empty_dir - does the directory hold nothing but "." and ".."?
 * Return: 1 empty, 0 not, or -errno (a corrupt directory is not empty).
 */
int
pw__ext2_empty_dir(struct inode *dir)
{
	struct ext2_inode_info *ei = EXT2_I(dir);
	uint64_t nblocks = ext2_dir_blocks(dir);
	int ret = 1;
	pthread_rwlock_rdlock(&ei->ei_dir_lock);
	for (uint64_t lblk = 0; lblk < nblocks && ret == 1; lblk++) {
		struct buffer_head *bh;
		int err = ext2_dir_bread(dir, lblk, &bh);
		if (err)
			ret = err;
		for (unsigned off = 0; bh && ret == 1 && off < dir->i_sb->s_blocksize;) {
			if ((err = ext2_check_entry(dir, bh, lblk, off))) {
				ret = err;
				break;
			}
			struct ext2_dir_entry *de = ext2_entry_at(bh, off);
			off += le16(de->rec_len);
			if (de->inode && !ext2_name_is(de, ".", 1) && !ext2_name_is(de, "..", 2))
				ret = 0;
		}
		brelse(bh);
	}
	pthread_rwlock_unlock(&ei->ei_dir_lock);
	return ret;
}

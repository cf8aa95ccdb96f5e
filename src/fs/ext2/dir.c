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
 * The name index (ext2_dix): the first lookup in a directory reads it
 * whole and keeps its names in a hash table, with, per block, the largest
 * record a new entry could take there.  Lookups, negative ones included,
 * then read no block, and adding a name reads only a block with room:
 * creating a file used to scan the directory three times (the LOOKUP
 * that fails, the create's own check, the search for room).  Every
 * change of a directory goes through this file and keeps the index
 * exact; a change that cannot (an error half-way, "..") drops it, and the
 * next lookup builds it again.  A directory with a bad entry gets no
 * index and is searched block by block, as before.
 *
 * Lock ordering: VFS i_rwsem of the directory -> ei_dir_lock (readers:
 * lookup and readdir, which the VFS calls without i_rwsem; writers:
 * every change) -> ei_map_lock -> s_alloc_lock -> buffer lock;
 * ei_dir_lock -> s_iget_lock (pw__ext2_lookup).
 */
#include "ext2.h"

#include <dirent.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
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

/* What is wrong with the entry at off of a directory block, or NULL. */
static const char *
ext2_entry_problem(struct inode *dir, struct buffer_head *bh, unsigned off)
{
	struct super_block *sb = dir->i_sb;
	unsigned bs = (unsigned)sb->s_blocksize;
	if (off + 8 > bs)
		return "entry header past the block";
	struct ext2_dir_entry *de = ext2_entry_at(bh, off);
	unsigned rec = le16(de->rec_len);
	if (rec < EXT2_DIR_REC_LEN(1))
		return "rec_len too small";
	if (rec & 3)
		return "rec_len not a multiple of 4";
	if (off + rec > bs)
		return "rec_len past the block";
	if (EXT2_DIR_REC_LEN(de->name_len) > rec)
		return "name longer than the record";
	if (le32(de->inode) > EXT2_SB(sb)->s_inodes_count)
		return "inode number out of range";
	return NULL;
}

/* Check the entry at off of a directory block.  Return: 0 or -EUCLEAN. */
static int
ext2_check_entry(struct inode *dir, struct buffer_head *bh, uint64_t lblk,
                 unsigned off)
{
	const char *why = ext2_entry_problem(dir, bh, off);
	if (!why)
		return 0;
	ext2_error(dir->i_sb, "directory %llu, block %llu, offset %u: %s",
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

/* ------------------------------------------------------- the name index */

struct dix_ent {
	struct dix_ent *next;
	uint64_t lblk;  /* block that holds the entry */
	uint32_t hash, ino;
	uint8_t len;
	char name[];
};

struct ext2_dix {
	struct dix_ent **bucket;
	size_t nbucket, count;
	uint16_t *room;   /* per block: the largest new record it can take */
	uint64_t nblocks; /* blocks room[] covers */
};

static uint32_t
dix_hash(const char *name, size_t len)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (size_t k = 0; k < len; k++)
		h = (h ^ (uint8_t)name[k]) * 16777619u;
	return h;
}

static void
dix_free(struct ext2_dix *x)
{
	if (!x)
		return;
	for (size_t b = 0; b < x->nbucket; b++) {
		for (struct dix_ent *e = x->bucket[b], *next; e; e = next) {
			next = e->next;
			free(e);
		}
	}
	free(x->bucket);
	free(x->room);
	free(x);
}

/* Drop the index; ei_dir_lock held for writing (or the inode dying). */
void
pw__ext2_dix_drop(struct ext2_inode_info *ei)
{
	dix_free(atomic_exchange(&ei->ei_dix, NULL));
}

static struct dix_ent **
dix_slot(struct ext2_dix *x, const char *name, size_t len, uint32_t h)
{
	struct dix_ent **pp = &x->bucket[h & (x->nbucket - 1)];
	for (; *pp; pp = &(*pp)->next)
		if ((*pp)->hash == h && (*pp)->len == len && memcmp((*pp)->name, name, len) == 0)
			break;
	return pp;
}

static bool
dix_insert(struct ext2_dix *x, const char *name, size_t len, uint32_t ino, uint64_t lblk)
{
	if (x->count >= x->nbucket * 2) {
		size_t n = x->nbucket * 2;
		struct dix_ent **t = calloc(n, sizeof(*t));
		if (!t)
			return false;
		for (size_t b = 0; b < x->nbucket; b++) {
			for (struct dix_ent *e = x->bucket[b], *next; e; e = next) {
				next = e->next;
				e->next = t[e->hash & (n - 1)];
				t[e->hash & (n - 1)] = e;
			}
		}
		free(x->bucket);
		x->bucket = t;
		x->nbucket = n;
	}
	struct dix_ent *e = malloc(sizeof(*e) + len);
	if (!e)
		return false;
	e->hash = dix_hash(name, len);
	e->ino = ino;
	e->lblk = lblk;
	e->len = (uint8_t)len;
	memcpy(e->name, name, len);
	struct dix_ent **head = &x->bucket[e->hash & (x->nbucket - 1)];
	e->next = *head;
	*head = e;
	x->count++;
	return true;
}

/* The largest record a new entry could take in this block. */
static unsigned
block_room(struct inode *dir, struct buffer_head *bh)
{
	unsigned best = 0;
	for (unsigned off = 0; off < dir->i_sb->s_blocksize;) {
		if (ext2_entry_problem(dir, bh, off))
			return 0; /* the block-by-block search will report it */
		struct ext2_dir_entry *de = ext2_entry_at(bh, off);
		unsigned rec = le16(de->rec_len);
		unsigned used = de->inode ? EXT2_DIR_REC_LEN(de->name_len) : 0;
		if (rec - used > best)
			best = rec - used;
		off += rec;
	}
	return best;
}

static bool
dix_set_room(struct ext2_dix *x, uint64_t lblk, unsigned room)
{
	if (lblk >= x->nblocks) {
		uint64_t n = x->nblocks ? x->nblocks : 8;
		while (n <= lblk)
			n *= 2;
		uint16_t *r = realloc(x->room, n * sizeof(*r));
		if (!r)
			return false;
		memset(r + x->nblocks, 0, (n - x->nblocks) * sizeof(*r));
		x->room = r;
		x->nblocks = n;
	}
	x->room[lblk] = (uint16_t)(room > UINT16_MAX ? UINT16_MAX : room);
	return true;
}

/* Read the whole directory into a new index; ei_dir_lock held.  NULL
 * when out of memory or when a block cannot be read or has a bad entry
 * (the caller then searches block by block and reports it). */
static struct ext2_dix *
dix_build(struct inode *dir)
{
	struct ext2_dix *x = calloc(1, sizeof(*x));
	if (!x || !(x->bucket = calloc(x->nbucket = 64, sizeof(*x->bucket)))) {
		free(x);
		return NULL;
	}
	uint64_t nblocks = ext2_dir_blocks(dir);
	bool ok = nblocks == 0 || dix_set_room(x, nblocks - 1, 0);
	for (uint64_t lblk = 0; ok && lblk < nblocks; lblk++) {
		struct buffer_head *bh;
		if (ext2_dir_bread(dir, lblk, &bh)) {
			ok = false;
			break;
		}
		for (unsigned off = 0; bh && ok && off < dir->i_sb->s_blocksize;) {
			if (ext2_entry_problem(dir, bh, off)) {
				ok = false;
				break;
			}
			struct ext2_dir_entry *de = ext2_entry_at(bh, off);
			if (de->inode)
				ok = dix_insert(x, de->name, de->name_len, le32(de->inode), lblk);
			off += le16(de->rec_len);
		}
		if (bh && ok)
			ok = dix_set_room(x, lblk, block_room(dir, bh));
		brelse(bh);
	}
	if (!ok) {
		dix_free(x);
		return NULL;
	}
	return x;
}

/* The index, built if need be; ei_dir_lock held (readers build one each
 * and the first to publish it wins).  NULL: search block by block. */
static struct ext2_dix *
dix_get(struct inode *dir)
{
	struct ext2_inode_info *ei = EXT2_I(dir);
	struct ext2_dix *x = atomic_load_explicit(&ei->ei_dix, memory_order_acquire);
	if (x)
		return x;
	x = dix_build(dir);
	struct ext2_dix *none = NULL;
	if (x && !atomic_compare_exchange_strong_explicit(&ei->ei_dix, &none, x,
	                                                  memory_order_acq_rel,
	                                                  memory_order_acquire)) {
		dix_free(x);
		x = none;
	}
	return x;
}

/* Find name in one block; ei_dir_lock held.  Return: 0 with slot,
 * -ENOENT, or an error. */
static int
ext2_find_in_block(struct inode *dir, uint64_t lblk, const char *name, size_t len,
                   struct ext2_dir_slot *slot)
{
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
			*slot = (struct ext2_dir_slot){bh, off, prev, lblk};
			return 0;
		}
		prev = off;
		off += le16(de->rec_len);
	}
	brelse(bh);
	return -ENOENT;
}

/* Find name; ei_dir_lock held.  Return: 0 with slot (bh referenced),
 * -ENOENT, or an error. */
static int
ext2_find_linear(struct inode *dir, const char *name, size_t len,
                 struct ext2_dir_slot *slot)
{
	uint64_t nblocks = ext2_dir_blocks(dir);
	for (uint64_t lblk = 0; lblk < nblocks; lblk++) {
		int err = ext2_find_in_block(dir, lblk, name, len, slot);
		if (err != -ENOENT)
			return err;
	}
	return -ENOENT;
}

/* Find name's inode number, through the index when there is one (built
 * here if need be).  ei_dir_lock held. */
static int
ext2_find_ino(struct inode *dir, const char *name, size_t len, uint64_t *ino)
{
	struct ext2_dix *x = dix_get(dir);
	if (x) {
		struct dix_ent *e = *dix_slot(x, name, len, dix_hash(name, len));
		if (!e)
			return -ENOENT;
		*ino = e->ino;
		return 0;
	}
	struct ext2_dir_slot slot;
	int err = ext2_find_linear(dir, name, len, &slot);
	if (!err) {
		*ino = le32(ext2_entry_at(slot.bh, slot.offset)->inode);
		brelse(slot.bh);
	}
	return err;
}

/* Find name for a change (the slot is wanted): the index names the block.
 * ei_dir_lock held for writing. */
static int
ext2_find_locked(struct inode *dir, const char *name, size_t len,
                 struct ext2_dir_slot *slot)
{
	struct ext2_dix *x = atomic_load_explicit(&EXT2_I(dir)->ei_dix, memory_order_relaxed);
	if (x) {
		struct dix_ent *e = *dix_slot(x, name, len, dix_hash(name, len));
		if (!e)
			return -ENOENT;
		int err = ext2_find_in_block(dir, e->lblk, name, len, slot);
		if (err != -ENOENT)
			return err;
		pw__ext2_dix_drop(EXT2_I(dir)); /* cannot happen: start again without it */
	}
	return ext2_find_linear(dir, name, len, slot);
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
	int err = ext2_check_name(name, len);
	if (err)
		return err;
	pthread_rwlock_rdlock(&ei->ei_dir_lock);
	err = ext2_find_ino(dir, name, len, ino);
	pthread_rwlock_unlock(&ei->ei_dir_lock);
	return err;
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
	int err = ext2_check_name(name, len);
	if (err)
		return err;
	pthread_rwlock_rdlock(&ei->ei_dir_lock);
	uint64_t ino;
	err = ext2_find_ino(dir, name, len, &ino);
	if (!err)
		err = pw__ext2_iget(dir->i_sb, ino, res);
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
	struct ext2_dix *x = atomic_load_explicit(&ei->ei_dix, memory_order_relaxed);
	unsigned need = EXT2_DIR_REC_LEN(len);
	uint64_t nblocks = ext2_dir_blocks(dir), at = 0;
	int placed = 0;
	bool keep = true; /* the index still describes the directory */
	for (uint64_t lblk = 0; lblk < nblocks && !placed; lblk++) {
		if (x && lblk < x->nblocks && x->room[lblk] < need)
			continue;
		struct buffer_head *bh;
		if ((err = ext2_dir_bread(dir, lblk, &bh)))
			break;
		if (bh) {
			placed = ext2_add_to_block(dir, bh, lblk, name, len, inode);
			at = lblk;
			if (x && placed >= 0)
				keep = keep && dix_set_room(x, lblk, block_room(dir, bh));
			brelse(bh);
		}
		if (placed < 0)
			err = placed;
	}
	if (!err && !placed) {
		struct buffer_head *bh;
		if (!(err = ext2_dir_append(dir, &bh, &at))) {
			placed = ext2_add_to_block(dir, bh, at, name, len, inode);
			if (x && placed == 1)
				keep = keep && dix_set_room(x, at, block_room(dir, bh));
			brelse(bh);
			err = placed == 1 ? 0 : -EIO;
		}
	}
	if (x) {
		if (!err && placed == 1)
			keep = keep && dix_insert(x, name, len, (uint32_t)inode->i_ino, at);
		if (err || !keep)
			pw__ext2_dix_drop(EXT2_I(dir));
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
		struct ext2_dix *x = atomic_load_explicit(&ei->ei_dix, memory_order_relaxed);
		if (x && !err) {
			struct dix_ent **pp = dix_slot(x, name, len, dix_hash(name, len));
			struct dix_ent *e = *pp;
			if (e && dix_set_room(x, s.lblk, block_room(dir, s.bh))) {
				*pp = e->next;
				free(e);
				x->count--;
			} else {
				pw__ext2_dix_drop(EXT2_I(dir));
			}
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
		struct ext2_dix *x = atomic_load_explicit(&ei->ei_dix, memory_order_relaxed);
		struct dix_ent *e = x ? *dix_slot(x, name, len, dix_hash(name, len)) : NULL;
		if (e)
			e->ino = (uint32_t)inode->i_ino;
		else if (x)
			pw__ext2_dix_drop(EXT2_I(dir));
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
		pw__ext2_dix_drop(EXT2_I(dir)); /* rare: built again at the next lookup */
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

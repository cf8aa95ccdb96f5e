/*
 * indirect.c - the ext2 block map: from a file's logical block to a
 * device block, through i_block[15].
 *
 *   i_block[0..11]  data blocks 0..11
 *   i_block[12]     an indirect block: P = blocksize/4 block numbers
 *   i_block[13]     a double indirect block: P indirect blocks
 *   i_block[14]     a triple indirect block: P double indirect blocks
 *
 * A zero anywhere on the path is a hole.  ext2_block_path turns a logical
 * block into the offsets along that path (depth 1 to 4).  Every block
 * number read from an inode or an indirect block is checked with
 * pw__ext2_data_block_ok before it is read or returned: a bad one gives
 * -EUCLEAN and a log line.
 *
 * Allocation (create): the missing blocks along the path are allocated
 * top-down; a new indirect block is zeroed in the device cache before
 * the parent points at it.  The goal for a new block is the block after
 * the previous one of the file if the write is sequential
 * (ei_last_lblk/ei_last_pblk), else the block after the nearest non-zero
 * pointer to its left in the same indirect block, else the block after
 * the indirect block itself, else the start of the inode's group.  Each
 * new block adds blocksize/512 to i_blocks.
 *
 * Truncation frees every block past a given size, depth-first: data
 * blocks, then any indirect block left with no pointers.
 *
 * Lock ordering: ei_map_lock -> s_alloc_lock (balloc.c) -> device page
 * and buffer locks (sb_bread).  ei_map_lock guards ei_data, the contents
 * of the file's indirect blocks and i_blocks; get_block takes it inside
 * the data page lock (readpage, write_begin, writepage).  No malloc on
 * the read side: readpage runs in the fault handler.
 */
#include "ext2.h"

#include <errno.h>
#include <string.h>

/* Offsets along the path to iblock; returns the depth, 0 if too far. */
static int
ext2_block_path(struct super_block *sb, uint64_t iblock, unsigned off[4])
{
	unsigned bits = EXT2_SB(sb)->s_addr_per_block_bits;
	uint64_t per = 1ull << bits, mask = per - 1;
	if (iblock < EXT2_NDIR_BLOCKS) {
		off[0] = (unsigned)iblock;
		return 1;
	}
	iblock -= EXT2_NDIR_BLOCKS;
	if (iblock < per) {
		off[0] = EXT2_IND_BLOCK;
		off[1] = (unsigned)iblock;
		return 2;
	}
	iblock -= per;
	if (iblock < per << bits) {
		off[0] = EXT2_DIND_BLOCK;
		off[1] = (unsigned)(iblock >> bits);
		off[2] = (unsigned)(iblock & mask);
		return 3;
	}
	iblock -= per << bits;
	if (iblock < per << (2 * bits)) {
		off[0] = EXT2_TIND_BLOCK;
		off[1] = (unsigned)(iblock >> (2 * bits));
		off[2] = (unsigned)((iblock >> bits) & mask);
		off[3] = (unsigned)(iblock & mask);
		return 4;
	}
	return 0;
}

/* The largest file size for this block size: what the tree addresses,
 * and what i_blocks (2^32 - 1 sectors, indirect blocks included) can
 * count for a dense file. */
loff_t
pw__ext2_max_size(unsigned bits)
{
	unsigned a = bits - 2;
	uint64_t tree = EXT2_NDIR_BLOCKS + (1ull << a) + (1ull << 2 * a) + (1ull << 3 * a);
	uint64_t meta = 1 + (1 + (1ull << a)) + (1 + (1ull << a) + (1ull << 2 * a));
	uint64_t by_iblocks = (0xFFFFFFFFull >> (bits - 9)) - meta;
	uint64_t blocks = PW_MIN(tree, by_iblocks);
	uint64_t max = blocks << bits;
	return (loff_t)PW_MIN(max, (uint64_t)INT64_MAX & PAGE_MASK);
}

/* Does the inode own blocks through i_block (not a fast symlink or a
 * device, whose i_block holds other things)? */
bool
pw__ext2_has_blocks(struct inode *inode)
{
	mode_t m = inode->i_mode;
	if (S_ISREG(m) || S_ISDIR(m))
		return true;
	if (!S_ISLNK(m))
		return false;
	uint64_t acl = __atomic_load_n(&EXT2_I(inode)->ei_file_acl, __ATOMIC_RELAXED)
	                   ? inode->i_sb->s_blocksize >> 9
	                   : 0;
	return inode->i_blocks > acl;
}

static int
ext2_bad_block(struct inode *inode, uint64_t block, const char *where)
{
	ext2_error(inode->i_sb, "inode %llu: bad block %llu in %s",
	           (unsigned long long)inode->i_ino, (unsigned long long)block, where);
	return -EUCLEAN;
}

/* ------------------------------------------------------- allocation */

/* Where to look for a new block of iblock whose pointer sits at
 * slots[k] (slots is i_block or an indirect block, parent its number or
 * 0 for i_block).  ei_map_lock held. */
static uint64_t
ext2_find_goal(struct inode *inode, uint64_t iblock, const uint32_t *slots,
               unsigned k, uint64_t parent)
{
	struct ext2_inode_info *ei = EXT2_I(inode);
	struct ext2_sb_info *sbi = EXT2_SB(inode->i_sb);
	if (ei->ei_last_pblk && iblock == ei->ei_last_lblk + 1)
		return ei->ei_last_pblk + 1;
	while (k-- > 0)
		if (slots[k])
			return (uint64_t)le32(slots[k]) + 1;
	if (parent)
		return parent + 1;
	return ext2_group_first_block(sbi, ei->ei_group);
}

/* Allocate a block for the pointer *slot (in a buffer bh, or in i_block
 * when bh is NULL); an indirect block is zeroed in the device cache
 * first.  ei_map_lock held. */
static int
ext2_alloc_slot(struct inode *inode, uint32_t *slot, struct buffer_head *bh,
                uint64_t goal, bool indirect, uint64_t *out)
{
	struct super_block *sb = inode->i_sb;
	uint64_t nb;
	int err = pw__ext2_new_block(sb, goal, &nb);
	if (err)
		return err;
	if (indirect) {
		struct buffer_head *ibh;
		if ((err = sb_getblk(sb, nb, &ibh))) {
			pw__ext2_free_block(sb, nb);
			return err;
		}
		lock_buffer(ibh);
		memset(ibh->b_data, 0, sb->s_blocksize);
		set_buffer_Uptodate(ibh);
		unlock_buffer(ibh);
		mark_buffer_dirty(ibh);
		brelse(ibh);
	}
	if (bh) {
		lock_buffer(bh); /* writeback may be copying the block out */
		*slot = cpu32((uint32_t)nb);
		unlock_buffer(bh);
		mark_buffer_dirty(bh);
	} else {
		*slot = cpu32((uint32_t)nb);
	}
	inode->i_blocks += sb->s_blocksize >> 9;
	mark_inode_dirty(inode);
	*out = nb;
	return 0;
}

/* Walk (and with create, build) the path; ei_map_lock held.  With
 * *count > 1 (and no create), also count the blocks after iblock that
 * continue *pblk on the device, up to *count, in the same pointer block;
 * *count is then how many blocks from *pblk on are mapped (else 1). */
static int
ext2_map_locked(struct inode *inode, uint64_t iblock, bool create,
                uint64_t *pblk, bool *new, unsigned *count)
{
	struct ext2_inode_info *ei = EXT2_I(inode);
	unsigned off[4];
	int depth = ext2_block_path(inode->i_sb, iblock, off);
	if (depth == 0)
		return create ? -EFBIG : 0;
	uint32_t *slots = ei->ei_data;
	struct buffer_head *bh = NULL;
	int err = 0;
	for (int level = 0; level < depth; level++) {
		uint64_t b = le32(slots[off[level]]);
		bool leaf = level == depth - 1;
		if (b == 0 && !create)
			break;
		if (b == 0) {
			uint64_t goal = ext2_find_goal(inode, iblock, slots, off[level],
			                               bh ? bh->b_blocknr : 0);
			if ((err = ext2_alloc_slot(inode, &slots[off[level]], bh, goal, !leaf, &b)))
				break;
			*new = leaf;
		} else if (!pw__ext2_data_block_ok(inode->i_sb, b)) {
			err = ext2_bad_block(inode, b, level ? "an indirect block" : "i_block");
			break;
		}
		if (leaf) {
			*pblk = b;
			unsigned want = *count, n = 1;
			unsigned room = (depth == 1 ? EXT2_NDIR_BLOCKS
			                            : 1u << EXT2_SB(inode->i_sb)->s_addr_per_block_bits) -
			                off[level];
			while (!create && n < want && n < room && le32(slots[off[level] + n]) == b + n &&
			       pw__ext2_data_block_ok(inode->i_sb, b + n))
				n++;
			*count = n;
			break;
		}
		brelse(bh);
		bh = NULL;
		if ((err = sb_bread(inode->i_sb, b, &bh)))
			break;
		slots = (uint32_t *)bh->b_data;
	}
	brelse(bh);
	return err;
}

/* pw__ext2_map_block, mapping up to *count blocks (see ext2_map_locked). */
static int
ext2_map_blocks(struct inode *inode, uint64_t iblock, bool create, uint64_t *pblk,
                bool *new, unsigned *count)
{
	struct ext2_inode_info *ei = EXT2_I(inode);
	*pblk = 0;
	*new = false;
	if (create && ext2_ro(inode->i_sb))
		return -EROFS;
	pthread_mutex_lock(&ei->ei_map_lock);
	int err = ext2_map_locked(inode, iblock, create, pblk, new, count);
	if (!err && *new) {
		ei->ei_last_lblk = iblock;
		ei->ei_last_pblk = *pblk;
	}
	pthread_mutex_unlock(&ei->ei_map_lock);
	return err;
}

/**
 * pw__ext2_map_block - the device block of logical block iblock.
 * *pblk is 0 for a hole (without create); *new is set when the data
 * block was allocated by this call.
 * Context: takes ei_map_lock; may sleep.  No malloc.
 * Return: 0, -ENOSPC, -EFBIG, -EIO or -EUCLEAN.
 */
int
pw__ext2_map_block(struct inode *inode, uint64_t iblock, bool create,
                   uint64_t *pblk, bool *new)
{
	unsigned one = 1;
	return ext2_map_blocks(inode, iblock, create, pblk, new, &one);
}

/**
 * pw__ext2_get_block - get_block_t for the buffer-head helpers.  Without
 * create, a b_size of several blocks maps as many of them as continue
 * the first on the device, and b_size becomes what was mapped.
 * Context: data page locked; see pw__ext2_map_block.
 */
int
pw__ext2_get_block(struct inode *inode, uint64_t iblock, struct buffer_head *bh,
                   int create)
{
	unsigned bsize = (unsigned)inode->i_sb->s_blocksize;
	unsigned count = create || bh->b_size < bsize ? 1 : (unsigned)(bh->b_size / bsize);
	uint64_t pblk;
	bool new;
	int err = ext2_map_blocks(inode, iblock, create != 0, &pblk, &new, &count);
	if (err || !pblk)
		return err;
	map_bh(bh, inode->i_sb->s_bdev, pblk);
	bh->b_size = (size_t)count * bsize;
	if (new)
		set_buffer_New(bh);
	return 0;
}

/* ------------------------------------------------------- truncation */

static void
ext2_release_block(struct inode *inode, uint64_t block)
{
	pw__ext2_free_block(inode->i_sb, block);
	inode->i_blocks -= PW_MIN(inode->i_blocks, (uint64_t)(inode->i_sb->s_blocksize >> 9));
}

/* Free, in the subtree under the indirect block blk of the given depth
 * (1: it points at data blocks), every data block from logical offset
 * `from` (relative to the subtree) on.  *empty: it has no pointers left.
 * ei_map_lock held. */
static int
ext2_free_tree(struct inode *inode, uint64_t blk, int depth, uint64_t from,
               bool *empty)
{
	struct super_block *sb = inode->i_sb;
	unsigned bits = EXT2_SB(sb)->s_addr_per_block_bits;
	unsigned per = 1u << bits;
	uint64_t span = 1ull << (bits * (unsigned)(depth - 1)); /* blocks per slot */
	struct buffer_head *bh;
	int err = sb_bread(sb, blk, &bh);
	if (err)
		return err;
	uint32_t *slots = (uint32_t *)bh->b_data;
	bool any = false;
	for (uint64_t k = 0; k < per; k++) {
		uint64_t child = le32(slots[k]);
		uint64_t first = k * span;
		if (child == 0)
			continue;
		if (first + span <= from) {
			any = true;
			continue;
		}
		if (!pw__ext2_data_block_ok(sb, child)) {
			err = ext2_bad_block(inode, child, "an indirect block");
			any = true;
			continue;
		}
		bool gone = true;
		if (depth > 1) {
			int e = ext2_free_tree(inode, child, depth - 1,
			                       from > first ? from - first : 0, &gone);
			if (e && !err)
				err = e;
		}
		if (gone) {
			ext2_release_block(inode, child);
			lock_buffer(bh);
			slots[k] = 0;
			unlock_buffer(bh);
			mark_buffer_dirty(bh);
		} else {
			any = true;
		}
	}
	brelse(bh);
	*empty = !any;
	return err;
}

/* Trim the tree hanging off i_block[slot] (depth levels of indirection)
 * whose first logical block is base.  ei_map_lock held. */
static int
ext2_trim_root(struct inode *inode, unsigned slot, int depth, uint64_t base,
               uint64_t from)
{
	struct ext2_inode_info *ei = EXT2_I(inode);
	uint64_t blk = le32(ei->ei_data[slot]);
	unsigned bits = EXT2_SB(inode->i_sb)->s_addr_per_block_bits;
	uint64_t span = 1ull << (bits * (unsigned)depth);
	if (blk == 0 || from >= base + span)
		return 0;
	if (!pw__ext2_data_block_ok(inode->i_sb, blk)) {
		ei->ei_data[slot] = 0;
		return ext2_bad_block(inode, blk, "i_block");
	}
	bool empty;
	int err = ext2_free_tree(inode, blk, depth, from > base ? from - base : 0, &empty);
	if (empty) {
		ext2_release_block(inode, blk);
		ei->ei_data[slot] = 0;
	}
	return err;
}

/**
 * pw__ext2_truncate_blocks - free every block of the inode past size
 * (indirect blocks that end up empty included).  The caller has dropped
 * the pages past size.
 * Context: i_rwsem held, or the inode is being deleted; takes ei_map_lock.
 */
int
pw__ext2_truncate_blocks(struct inode *inode, loff_t size)
{
	struct ext2_inode_info *ei = EXT2_I(inode);
	struct super_block *sb = inode->i_sb;
	unsigned bits = EXT2_SB(sb)->s_addr_per_block_bits;
	uint64_t from = ((uint64_t)size + sb->s_blocksize - 1) >> EXT2_SB(sb)->s_blocksize_bits;
	int err = 0;
	if (!pw__ext2_has_blocks(inode) || ext2_ro(sb))
		return 0;
	pthread_mutex_lock(&ei->ei_map_lock);
	for (uint64_t k = from; k < EXT2_NDIR_BLOCKS; k++) {
		uint64_t b = le32(ei->ei_data[k]);
		if (b && pw__ext2_data_block_ok(sb, b))
			ext2_release_block(inode, b);
		else if (b)
			err = ext2_bad_block(inode, b, "i_block");
		ei->ei_data[k] = 0;
	}
	uint64_t base = EXT2_NDIR_BLOCKS;
	for (int depth = 1; depth <= 3; depth++) {
		int e = ext2_trim_root(inode, EXT2_IND_BLOCK + (unsigned)depth - 1, depth,
		                       base, from);
		if (e && !err)
			err = e;
		base += 1ull << (bits * (unsigned)depth);
	}
	ei->ei_last_lblk = ei->ei_last_pblk = 0;
	pthread_mutex_unlock(&ei->ei_map_lock);
	mark_inode_dirty(inode);
	return err;
}

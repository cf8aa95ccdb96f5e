/*
 * ialloc.c - ext2 inode allocation: the inode bitmaps.
 *
 * Inode ino belongs to group (ino - 1) / inodes_per_group, bit
 * (ino - 1) % inodes_per_group of its inode bitmap.  Numbers below
 * s_first_ino are reserved (the root is 2) and never handed out, even if
 * a corrupt bitmap shows them free.
 *
 * Group choice, after the old ext2 allocator:
 *  - a directory goes to a group with at least the average number of
 *    free inodes, preferring the most free blocks, so that directories
 *    spread over the disk and their files have room near them;
 *  - anything else goes to its parent's group if that has a free inode
 *    and a free block, else to a group found by quadratic hashing from
 *    the parent's, else to the first group with a free inode.
 *
 * Lock ordering: s_alloc_lock -> device page lock (sb_bread of a bitmap).
 */
#include "ext2.h"

#include <errno.h>

static unsigned
gd_free_inodes(struct super_block *sb, unsigned g)
{
	return le16(ext2_group_desc(sb, g)->bg_free_inodes_count);
}

static unsigned
gd_free_blocks(struct super_block *sb, unsigned g)
{
	return le16(ext2_group_desc(sb, g)->bg_free_blocks_count);
}

/* s_alloc_lock held.  Return: a group, or -1. */
static long
ext2_find_group_dir(struct super_block *sb)
{
	struct ext2_sb_info *sbi = EXT2_SB(sb);
	uint64_t avg = sbi->s_free_inodes / sbi->s_groups_count;
	long best = -1;
	for (unsigned g = 0; g < sbi->s_groups_count; g++) {
		if (gd_free_inodes(sb, g) == 0 || gd_free_inodes(sb, g) < avg)
			continue;
		if (best < 0 || gd_free_blocks(sb, g) > gd_free_blocks(sb, (unsigned)best))
			best = g;
	}
	return best;
}

/* s_alloc_lock held.  Return: a group, or -1. */
static long
ext2_find_group_other(struct super_block *sb, unsigned parent)
{
	unsigned n = EXT2_SB(sb)->s_groups_count;
	if (gd_free_inodes(sb, parent) && gd_free_blocks(sb, parent))
		return parent;
	unsigned g = parent;
	for (unsigned step = 1; step < n; step <<= 1) {
		g = (g + step) % n;
		if (gd_free_inodes(sb, g) && gd_free_blocks(sb, g))
			return g;
	}
	for (unsigned k = 0; k < n; k++) {
		g = (parent + k) % n;
		if (gd_free_inodes(sb, g))
			return g;
	}
	return -1;
}

/* Take a free bit in group g's inode bitmap; s_alloc_lock held. */
static int
ext2_take_ino(struct super_block *sb, unsigned g, bool isdir, uint64_t *ino)
{
	struct ext2_sb_info *sbi = EXT2_SB(sb);
	struct ext2_group_desc *gd = ext2_group_desc(sb, g);
	struct buffer_head *bh;
	int err = sb_bread(sb, le32(gd->bg_inode_bitmap), &bh);
	if (err)
		return err;
	uint8_t *map = (uint8_t *)bh->b_data;
	/* Numbers below s_first_ino are reserved, whatever their bits say. */
	uint64_t base = (uint64_t)g * sbi->s_inodes_per_group + 1;
	uint32_t from = base >= sbi->s_first_ino ? 0 : (uint32_t)PW_MIN(sbi->s_first_ino - base,
	                                                               sbi->s_inodes_per_group);
	uint32_t bit = pw__ext2_find_zero_bit(map, from, sbi->s_inodes_per_group);
	if (bit == sbi->s_inodes_per_group) {
		brelse(bh);
		ext2_error(sb, "group %u: descriptor says %u free inodes, bitmap none",
		           g, gd_free_inodes(sb, g));
		return -EUCLEAN;
	}
	ext2_change_bit_locked(bh, map, bit, true);
	brelse(bh);
	ext2_gd_add(sb, g, 0, -1, isdir);
	sbi->s_free_inodes--;
	sbi->s_dirs += isdir;
	*ino = (uint64_t)g * sbi->s_inodes_per_group + bit + 1;
	return 0;
}

/**
 * pw__ext2_alloc_ino - pick a group for a new inode in dir and take a
 * number there.
 * Context: takes s_alloc_lock.  Return: 0 with *ino, -ENOSPC, -EIO,
 * -EUCLEAN.
 */
int
pw__ext2_alloc_ino(struct inode *dir, bool isdir, uint64_t *ino)
{
	struct super_block *sb = dir->i_sb;
	struct ext2_sb_info *sbi = EXT2_SB(sb);
	pthread_mutex_lock(&sbi->s_alloc_lock);
	long g = isdir ? ext2_find_group_dir(sb) : -1;
	if (g < 0)
		g = ext2_find_group_other(sb, EXT2_I(dir)->ei_group);
	int err = g < 0 ? -ENOSPC : ext2_take_ino(sb, (unsigned)g, isdir, ino);
	pthread_mutex_unlock(&sbi->s_alloc_lock);
	return err;
}

/**
 * pw__ext2_free_ino - clear ino's bit; its record must already carry
 * i_dtime and no links.
 * Context: takes s_alloc_lock.
 */
void
pw__ext2_free_ino(struct super_block *sb, uint64_t ino, bool isdir)
{
	struct ext2_sb_info *sbi = EXT2_SB(sb);
	if (ino < sbi->s_first_ino || ino > sbi->s_inodes_count) {
		ext2_error(sb, "freeing reserved or bad inode %llu", (unsigned long long)ino);
		return;
	}
	unsigned g = (unsigned)((ino - 1) / sbi->s_inodes_per_group);
	uint32_t bit = (uint32_t)((ino - 1) % sbi->s_inodes_per_group);
	struct ext2_group_desc *gd = ext2_group_desc(sb, g);
	struct buffer_head *bh;
	pthread_mutex_lock(&sbi->s_alloc_lock);
	int err = sb_bread(sb, le32(gd->bg_inode_bitmap), &bh);
	if (err) {
		pthread_mutex_unlock(&sbi->s_alloc_lock);
		ext2_error(sb, "reading the inode bitmap of group %u: %d", g, err);
		return;
	}
	uint8_t *map = (uint8_t *)bh->b_data;
	if (!(map[bit >> 3] & (1u << (bit & 7)))) {
		ext2_error(sb, "inode %llu is already free", (unsigned long long)ino);
	} else {
		ext2_change_bit_locked(bh, map, bit, false);
		ext2_gd_add(sb, g, 0, 1, -(isdir && le16(gd->bg_used_dirs_count)));
		sbi->s_free_inodes++;
		sbi->s_dirs -= isdir && sbi->s_dirs;
	}
	brelse(bh);
	pthread_mutex_unlock(&sbi->s_alloc_lock);
}

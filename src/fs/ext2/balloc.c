/*
 * balloc.c - ext2 block allocation: the block bitmaps.
 *
 * Group g covers blocks [first_data_block + g * blocks_per_group, ...),
 * and bit k of its bitmap block is the k-th of them.  The allocator looks
 * for a zero bit at the goal, then forward in the goal's group, then in
 * the following groups (wrapping), skipping groups whose descriptor says
 * they are full.  A bit found free is checked against the group's own
 * bitmaps and inode table (a corrupt bitmap must not hand out metadata),
 * then set; the descriptor's and the filesystem's free counts go down by
 * one.  Freeing checks the block the same way and refuses a block whose
 * bit is already clear (a double free on a corrupt image), with a log
 * line either way.
 *
 * The last s_r_blocks_count free blocks are kept for root and the
 * reserved uid/gid, as the kernel does.
 *
 * Lock ordering: s_alloc_lock -> device page lock (sb_bread of a bitmap).
 * s_alloc_lock guards every bitmap, every group descriptor and the free
 * counts in ext2_sb_info.
 */
#include "ext2.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

static bool
test_bit_le(const uint8_t *map, uint32_t bit)
{
	return map[bit >> 3] & (1u << (bit & 7));
}

/**
 * pw__ext2_find_zero_bit - the first zero bit in [start, end) of an ext2
 * bitmap (bit n is bit n%8 of byte n/8), or end.  Full 64-bit words are
 * skipped whole: a new inode's scan passes every number taken before it.
 */
uint32_t
pw__ext2_find_zero_bit(const uint8_t *map, uint32_t start, uint32_t end)
{
	uint32_t bit = start;
	while (bit < end && (bit & 63)) {
		if (!test_bit_le(map, bit))
			return bit;
		bit++;
	}
	for (; bit + 64 <= end; bit += 64) {
		uint64_t w;
		memcpy(&w, map + (bit >> 3), sizeof(w));
		w = le64toh(w);
		if (w != UINT64_MAX)
			return bit + (uint32_t)__builtin_ctzll(~w);
	}
	for (; bit < end; bit++)
		if (!test_bit_le(map, bit))
			return bit;
	return end;
}

static bool
ext2_may_use_reserved(struct ext2_sb_info *sbi)
{
	uid_t uid = pw__current_uid();
	return uid == 0 || uid == sbi->s_resuid || pw__current_gid() == sbi->s_resgid;
}

/* Take one free bit in group g at or after start; s_alloc_lock held.
 * Return: 0 with *out, -ENOSPC if the group has none there. */
static int
ext2_take_in_group(struct super_block *sb, unsigned g, uint32_t start, uint64_t *out)
{
	struct ext2_sb_info *sbi = EXT2_SB(sb);
	struct ext2_group_desc *gd = ext2_group_desc(sb, g);
	uint32_t nbits = ext2_group_blocks(sbi, g);
	struct buffer_head *bh;
	if (le16(gd->bg_free_blocks_count) == 0)
		return -ENOSPC;
	int err = sb_bread(sb, le32(gd->bg_block_bitmap), &bh);
	if (err)
		return err;
	uint8_t *map = (uint8_t *)bh->b_data;
	uint32_t bit = pw__ext2_find_zero_bit(map, start, nbits);
	if (bit == nbits && start > 0)
		bit = pw__ext2_find_zero_bit(map, 0, start);
	if (bit >= nbits) {
		brelse(bh);
		ext2_error(sb, "group %u: descriptor says %u free blocks, bitmap none",
		           g, le16(gd->bg_free_blocks_count));
		return -EUCLEAN;
	}
	uint64_t block = ext2_group_first_block(sbi, g) + bit;
	if (!pw__ext2_data_block_ok(sb, block)) {
		brelse(bh);
		ext2_error(sb, "group %u: bitmap marks metadata block %llu free",
		           g, (unsigned long long)block);
		return -EUCLEAN;
	}
	ext2_change_bit_locked(bh, map, bit, true);
	brelse(bh);
	ext2_gd_add(sb, g, -1, 0, 0);
	sbi->s_free_blocks--;
	*out = block;
	return 0;
}

/**
 * pw__ext2_new_block - allocate one block, as near goal as can be.
 * Context: takes s_alloc_lock; may sleep; no malloc.
 * Return: 0 with *out; -ENOSPC, -EIO or -EUCLEAN.
 */
int
pw__ext2_new_block(struct super_block *sb, uint64_t goal, uint64_t *out)
{
	struct ext2_sb_info *sbi = EXT2_SB(sb);
	if (goal < sbi->s_first_data_block || goal >= sbi->s_blocks_count)
		goal = sbi->s_first_data_block;
	unsigned g0 = (unsigned)((goal - sbi->s_first_data_block) / sbi->s_blocks_per_group);
	uint32_t bit0 = (uint32_t)((goal - sbi->s_first_data_block) % sbi->s_blocks_per_group);
	int err = -ENOSPC;
	pthread_mutex_lock(&sbi->s_alloc_lock);
	if (sbi->s_free_blocks <= sbi->s_r_blocks_count && !ext2_may_use_reserved(sbi))
		goto out;
	for (unsigned n = 0; n < sbi->s_groups_count; n++) {
		unsigned g = (g0 + n) % sbi->s_groups_count;
		err = ext2_take_in_group(sb, g, n == 0 ? bit0 : 0, out);
		if (err != -ENOSPC)
			break;
	}
out:
	pthread_mutex_unlock(&sbi->s_alloc_lock);
	return err;
}

/**
 * pw__ext2_free_block - give a block back.  A block that is out of
 * range, metadata, or already free is logged and left alone.
 * Context: takes s_alloc_lock; may sleep.
 */
void
pw__ext2_free_block(struct super_block *sb, uint64_t block)
{
	struct ext2_sb_info *sbi = EXT2_SB(sb);
	if (!pw__ext2_data_block_ok(sb, block)) {
		ext2_error(sb, "freeing bad block %llu", (unsigned long long)block);
		return;
	}
	unsigned g = (unsigned)((block - sbi->s_first_data_block) / sbi->s_blocks_per_group);
	uint32_t bit = (uint32_t)((block - sbi->s_first_data_block) % sbi->s_blocks_per_group);
	struct ext2_group_desc *gd = ext2_group_desc(sb, g);
	struct buffer_head *bh;
	pthread_mutex_lock(&sbi->s_alloc_lock);
	int err = sb_bread(sb, le32(gd->bg_block_bitmap), &bh);
	if (err) {
		pthread_mutex_unlock(&sbi->s_alloc_lock);
		ext2_error(sb, "reading the bitmap of group %u: %d", g, err);
		return;
	}
	uint8_t *map = (uint8_t *)bh->b_data;
	if (!test_bit_le(map, bit)) {
		ext2_error(sb, "block %llu is already free", (unsigned long long)block);
	} else {
		ext2_change_bit_locked(bh, map, bit, false);
		ext2_gd_add(sb, g, 1, 0, 0);
		sbi->s_free_blocks++;
	}
	brelse(bh);
	pthread_mutex_unlock(&sbi->s_alloc_lock);
}

/*
 * super.c - mounting, syncing and unmounting an ext2 image.
 *
 * Mount reads the superblock with a raw read of bytes [1024, 2048) (the
 * block size is not known before it), checks every field the rest of the
 * code relies on, then sets the device's block size and reads the group
 * descriptor table through sb_bread.  The superblock's buffer and every
 * descriptor block stay referenced for the life of the mount, and are
 * changed in place: descriptors by the allocators under s_alloc_lock,
 * the superblock's free counts and state by ext2_commit_super.
 *
 * Feature policy (as the kernel's ext2):
 *  - an incompatible feature other than filetype refuses the mount
 *    (-EINVAL and a log line naming the feature bits);
 *  - a read-only-compatible feature other than sparse_super and
 *    large_file forces a read-only mount;
 *  - compatible features (dir_index, ext_attr, resize_inode, ...) are
 *    harmless: hashed directories are read and changed as linear ones and
 *    lose EXT2_INDEX_FL when changed; the resize inode and the reserved
 *    descriptor blocks are left alone (the bitmaps mark them in use).
 *
 * State: a read-write mount clears EXT2_VALID_FS on disk at once, and
 * unmount writes back the state found at mount (so a crash shows e2fsck
 * an unclean filesystem), with the free counts summed from the group
 * descriptors.  Corruption found while mounted (ext2_error) adds
 * EXT2_ERROR_FS to what is written.
 *
 * Write-back order at sync and unmount (vfs.c sync_sb): the data pages
 * and the inodes of every cached inode first (write_inode puts them in
 * inode-table buffers), then ext2_sync_fs writes the superblock into its
 * buffer and syncs the whole device cache (bitmaps, descriptors, inode
 * tables, directory and indirect blocks) and flushes the device.
 *
 * Lock ordering: s_alloc_lock -> buffer lock (ext2_commit_super).
 */
#include "ext2.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void
pw__ext2_error(struct super_block *sb, const char *fn, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* The state written at the next sync tells e2fsck to look; no lock
	 * here, callers may hold any of ours. */
	if (sb && sb->s_fs_info)
		atomic_store(&EXT2_SB(sb)->s_error, true);
	pw_log("ext2 error (%s): %s", fn, msg);
}

static bool
is_power_of(unsigned n, unsigned base)
{
	while (n > 1 && n % base == 0)
		n /= base;
	return n == 1;
}

/* Does group g start with a copy of the superblock and descriptors? */
static bool
ext2_group_has_super(struct ext2_sb_info *sbi, unsigned g)
{
	if (!sbi->s_sparse_super || g <= 1)
		return true;
	return is_power_of(g, 3) || is_power_of(g, 5) || is_power_of(g, 7);
}

/* Is block a plausible data or indirect block: inside the filesystem and
 * not a group's superblock copy, descriptors, bitmaps or inode table? */
bool
pw__ext2_data_block_ok(struct super_block *sb, uint64_t block)
{
	struct ext2_sb_info *sbi = EXT2_SB(sb);
	if (block < sbi->s_first_data_block || block >= sbi->s_blocks_count)
		return false;
	unsigned g = (unsigned)((block - sbi->s_first_data_block) / sbi->s_blocks_per_group);
	uint64_t first = ext2_group_first_block(sbi, g);
	if (ext2_group_has_super(sbi, g) && block < first + sbi->s_sb_area)
		return false;
	struct ext2_group_desc *gd = ext2_group_desc(sb, g);
	uint64_t it = le32(gd->bg_inode_table);
	return block != le32(gd->bg_block_bitmap) && block != le32(gd->bg_inode_bitmap) &&
	       (block < it || block >= it + sbi->s_itb_per_group);
}

/* ------------------------------------------------------ superblock */

/* Copy the free counts into the superblock buffer and dirty it. */
static void
ext2_commit_super(struct super_block *sb, uint16_t state)
{
	struct ext2_sb_info *sbi = EXT2_SB(sb);
	struct timespec now;
	pw__current_time(&now);
	pthread_mutex_lock(&sbi->s_alloc_lock);
	lock_buffer(sbi->s_sbh);
	sbi->s_es->s_free_blocks_count = cpu32((uint32_t)sbi->s_free_blocks);
	sbi->s_es->s_free_inodes_count = cpu32((uint32_t)sbi->s_free_inodes);
	sbi->s_es->s_wtime = cpu32((uint32_t)now.tv_sec);
	if (atomic_load(&sbi->s_error))
		state |= EXT2_ERROR_FS;
	sbi->s_es->s_state = cpu16(state);
	unlock_buffer(sbi->s_sbh);
	pthread_mutex_unlock(&sbi->s_alloc_lock);
	mark_buffer_dirty(sbi->s_sbh);
}

static int
ext2_sync_fs(struct super_block *sb, bool wait)
{
	(void)wait;
	if (ext2_ro(sb))
		return 0;
	ext2_commit_super(sb, EXT2_SB(sb)->s_mount_state & ~EXT2_VALID_FS);
	return sync_blockdev(sb->s_bdev);
}

/* The VFS wrote the pages and (unless datasync) the inode: make the
 * metadata they need durable.  The whole device cache is written, which
 * includes this file's indirect blocks and inode. */
static int
ext2_fsync(struct inode *inode, bool datasync)
{
	(void)datasync;
	if (ext2_ro(inode->i_sb))
		return 0;
	return sync_blockdev(inode->i_sb->s_bdev);
}

static void
ext2_free_sbi(struct super_block *sb)
{
	struct ext2_sb_info *sbi = EXT2_SB(sb);
	if (!sbi)
		return;
	for (unsigned k = 0; sbi->s_group_desc && k < sbi->s_gdb_count; k++)
		brelse(sbi->s_group_desc[k]);
	free(sbi->s_group_desc);
	brelse(sbi->s_sbh);
	pthread_mutex_destroy(&sbi->s_alloc_lock);
	pthread_mutex_destroy(&sbi->s_iget_lock);
	free(sbi);
	sb->s_fs_info = NULL;
}

/* Unmount: every inode is written and evicted already; eviction may
 * have freed blocks and inodes (files unlinked while open), so the
 * superblock and the device are written once more. */
static void
ext2_put_super(struct super_block *sb)
{
	struct ext2_sb_info *sbi = EXT2_SB(sb);
	if (!sbi)
		return;
	if (!ext2_ro(sb)) {
		ext2_commit_super(sb, sbi->s_mount_state);
		int err = sync_blockdev(sb->s_bdev);
		if (err)
			ext2_error(sb, "writing back at unmount: %s", strerror(-err));
	}
	ext2_free_sbi(sb);
	invalidate_bdev(sb->s_bdev);
	blkdev_close(sb->s_bdev);
	sb->s_bdev = NULL;
}

static int
ext2_statfs(struct super_block *sb, struct statvfs *st)
{
	struct ext2_sb_info *sbi = EXT2_SB(sb);
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&sbi->s_alloc_lock);
	uint64_t bfree = sbi->s_free_blocks, ifree = sbi->s_free_inodes;
	pthread_mutex_unlock(&sbi->s_alloc_lock);
	st->f_bsize = st->f_frsize = sb->s_blocksize;
	st->f_blocks = sbi->s_blocks_count - sbi->s_first_data_block;
	st->f_bfree = bfree;
	st->f_bavail = bfree > sbi->s_r_blocks_count ? bfree - sbi->s_r_blocks_count : 0;
	st->f_files = sbi->s_inodes_count;
	st->f_ffree = st->f_favail = ifree;
	st->f_fsid = (unsigned long)sb->s_dev;
	st->f_flag = ext2_ro(sb) ? ST_RDONLY : 0;
	st->f_namemax = EXT2_NAME_LEN;
	return 0;
}

static const struct super_operations ext2_sops = {
	.write_inode = pw__ext2_write_inode,
	.evict_inode = pw__ext2_evict_inode,
	.fsync = ext2_fsync,
	.sync_fs = ext2_sync_fs,
	.put_super = ext2_put_super,
	.statfs = ext2_statfs,
};

/* ----------------------------------------------------------- checks */

/* Geometry: sizes, counts and their products, before anything is read
 * through them.  Return: 0 or -EINVAL with a log line. */
static int
ext2_check_geometry(struct ext2_sb_info *sbi, const struct ext2_super_block *es,
                    uint64_t dev_size)
{
	uint32_t bs = 1024u << le32(es->s_log_block_size);
	const char *why = NULL;
	uint64_t groups = 0;
	if (sbi->s_blocks_per_group == 0 || sbi->s_blocks_per_group > 8 * bs)
		why = "blocks per group out of range";
	else if (sbi->s_inodes_per_group == 0 || sbi->s_inodes_per_group > 8 * bs)
		why = "inodes per group out of range";
	else if (sbi->s_first_data_block != (bs == 1024 ? 1u : 0u))
		why = "first data block does not match the block size";
	else if (sbi->s_blocks_count <= sbi->s_first_data_block)
		why = "too few blocks";
	else if ((uint64_t)sbi->s_blocks_count * bs > dev_size)
		why = "the filesystem is larger than the device";
	else if (sbi->s_inode_size < EXT2_GOOD_OLD_INODE_SIZE || sbi->s_inode_size > bs ||
	         (sbi->s_inode_size & (sbi->s_inode_size - 1)))
		why = "bad inode size";
	if (!why) {
		groups = (sbi->s_blocks_count - sbi->s_first_data_block +
		          sbi->s_blocks_per_group - 1) / sbi->s_blocks_per_group;
		if (groups * sbi->s_inodes_per_group != sbi->s_inodes_count)
			why = "inode count does not match the groups";
		else if (sbi->s_first_ino < EXT2_GOOD_OLD_FIRST_INO ||
		         sbi->s_first_ino >= sbi->s_inodes_count)
			why = "bad first inode";
		else if (sbi->s_r_blocks_count > sbi->s_blocks_count)
			why = "more reserved blocks than blocks";
	}
	if (why) {
		pw_log("ext2: cannot mount: %s", why);
		return -EINVAL;
	}
	sbi->s_groups_count = (unsigned)groups;
	sbi->s_itb_per_group = (uint32_t)(((uint64_t)sbi->s_inodes_per_group *
	                                   sbi->s_inode_size + bs - 1) / bs);
	return 0;
}

/* The features we must refuse or can only read. */
static int
ext2_check_features(struct super_block *sb, const struct ext2_super_block *es)
{
	if (le32(es->s_rev_level) == 0)
		return 0;
	uint32_t incompat = le32(es->s_feature_incompat) & ~(uint32_t)EXT2_INCOMPAT_SUPP;
	if (incompat) {
		pw_log("ext2: cannot mount: unsupported incompatible features 0x%x", incompat);
		return -EINVAL;
	}
	uint32_t ro = le32(es->s_feature_ro_compat) & ~(uint32_t)EXT2_RO_COMPAT_SUPP;
	if (ro && !ext2_ro(sb)) {
		pw_log("ext2: unsupported read-only-compatible features 0x%x: "
		       "mounting read-only", ro);
		sb->s_flags |= SB_RDONLY;
	}
	return 0;
}

/* One group descriptor: its bitmaps and table inside its group, and its
 * counts no larger than the group. */
static bool
ext2_check_desc(struct super_block *sb, unsigned g)
{
	struct ext2_sb_info *sbi = EXT2_SB(sb);
	struct ext2_group_desc *gd = ext2_group_desc(sb, g);
	uint64_t first = ext2_group_first_block(sbi, g);
	uint64_t last = first + ext2_group_blocks(sbi, g) - 1;
	uint64_t bb = le32(gd->bg_block_bitmap), ib = le32(gd->bg_inode_bitmap);
	uint64_t it = le32(gd->bg_inode_table);
	const char *why = NULL;
	if (bb < first || bb > last)
		why = "block bitmap outside its group";
	else if (ib < first || ib > last)
		why = "inode bitmap outside its group";
	else if (it < first || it + sbi->s_itb_per_group - 1 > last)
		why = "inode table outside its group";
	else if (le16(gd->bg_free_blocks_count) > ext2_group_blocks(sbi, g) ||
	         le16(gd->bg_free_inodes_count) > sbi->s_inodes_per_group ||
	         le16(gd->bg_used_dirs_count) > sbi->s_inodes_per_group)
		why = "free counts larger than the group";
	if (why)
		ext2_error(sb, "group %u: %s", g, why);
	return why == NULL;
}

static int
ext2_load_descriptors(struct super_block *sb)
{
	struct ext2_sb_info *sbi = EXT2_SB(sb);
	unsigned per = (unsigned)sb->s_blocksize / EXT2_DESC_SIZE;
	sbi->s_gdb_count = (sbi->s_groups_count + per - 1) / per;
	sbi->s_sb_area = 1 + sbi->s_gdb_count + le16(sbi->s_es->s_reserved_gdt_blocks);
	if (sbi->s_sb_area > sbi->s_blocks_per_group) {
		ext2_error(sb, "descriptor blocks do not fit in a group");
		return -EUCLEAN;
	}
	sbi->s_group_desc = calloc(sbi->s_gdb_count, sizeof(*sbi->s_group_desc));
	if (!sbi->s_group_desc)
		return -ENOMEM;
	for (unsigned k = 0; k < sbi->s_gdb_count; k++) {
		int err = sb_bread(sb, sbi->s_first_data_block + 1 + k, &sbi->s_group_desc[k]);
		if (err) {
			sbi->s_gdb_count = k;
			return err;
		}
	}
	for (unsigned g = 0; g < sbi->s_groups_count; g++) {
		if (!ext2_check_desc(sb, g))
			return -EUCLEAN;
		struct ext2_group_desc *gd = ext2_group_desc(sb, g);
		sbi->s_free_blocks += le16(gd->bg_free_blocks_count);
		sbi->s_free_inodes += le16(gd->bg_free_inodes_count);
		sbi->s_dirs += le16(gd->bg_used_dirs_count);
	}
	return 0;
}

/* ------------------------------------------------------------ mount */

static void
ext2_fill_sbi(struct ext2_sb_info *sbi, const struct ext2_super_block *es)
{
	bool rev0 = le32(es->s_rev_level) == 0;
	sbi->s_blocks_count = le32(es->s_blocks_count);
	sbi->s_first_data_block = le32(es->s_first_data_block);
	sbi->s_blocks_per_group = le32(es->s_blocks_per_group);
	sbi->s_inodes_per_group = le32(es->s_inodes_per_group);
	sbi->s_inodes_count = le32(es->s_inodes_count);
	sbi->s_r_blocks_count = le32(es->s_r_blocks_count);
	sbi->s_first_ino = rev0 ? EXT2_GOOD_OLD_FIRST_INO : le32(es->s_first_ino);
	sbi->s_inode_size = rev0 ? EXT2_GOOD_OLD_INODE_SIZE : le16(es->s_inode_size);
	sbi->s_resuid = le16(es->s_def_resuid);
	sbi->s_resgid = le16(es->s_def_resgid);
	sbi->s_sparse_super = !rev0 && (le32(es->s_feature_ro_compat) &
	                                EXT2_FEATURE_RO_COMPAT_SPARSE_SUPER);
	sbi->s_filetype = !rev0 && (le32(es->s_feature_incompat) & EXT2_FEATURE_INCOMPAT_FILETYPE);
	sbi->s_mount_state = le16(es->s_state);
	sbi->s_blocksize_bits = 10 + le32(es->s_log_block_size);
	sbi->s_addr_per_block_bits = sbi->s_blocksize_bits - 2;
}

/* Read and check the superblock; set the block size everywhere. */
static int
ext2_read_super(struct super_block *sb, struct ext2_sb_info *sbi)
{
	struct ext2_super_block raw;
	struct block_device *bdev = sb->s_bdev;
	int err = blkdev_read(bdev, EXT2_SB_OFFSET, &raw, sizeof(raw));
	if (err) {
		pw_log("ext2: cannot read the superblock: %s", strerror(-err));
		return err;
	}
	if (le16(raw.s_magic) != EXT2_SUPER_MAGIC) {
		pw_log("ext2: cannot mount: bad magic 0x%04x", le16(raw.s_magic));
		return -EINVAL;
	}
	if (le32(raw.s_log_block_size) > 2 || le32(raw.s_rev_level) > 1) {
		pw_log("ext2: cannot mount: block size 1024<<%u or revision %u "
		       "not supported", le32(raw.s_log_block_size), le32(raw.s_rev_level));
		return -EINVAL;
	}
	ext2_fill_sbi(sbi, &raw);
	if ((err = ext2_check_geometry(sbi, &raw, bdev->bd_size)) ||
	    (err = ext2_check_features(sb, &raw)))
		return err;
	sb->s_blocksize = 1024ul << le32(raw.s_log_block_size);
	bdev->bd_block_size = (unsigned)sb->s_blocksize;
	uint64_t sb_block = EXT2_SB_OFFSET / sb->s_blocksize;
	if ((err = sb_bread(sb, sb_block, &sbi->s_sbh)))
		return err;
	sbi->s_es = (struct ext2_super_block *)(sbi->s_sbh->b_data +
	                                        EXT2_SB_OFFSET % sb->s_blocksize);
	return 0;
}

/* A read-write mount marks the filesystem not clean on disk until
 * unmount, and counts the mount. */
static int
ext2_setup_super(struct super_block *sb)
{
	struct ext2_sb_info *sbi = EXT2_SB(sb);
	if (!(sbi->s_mount_state & EXT2_VALID_FS))
		pw_log("ext2: warning: mounting an unchecked filesystem");
	else if (sbi->s_mount_state & EXT2_ERROR_FS)
		pw_log("ext2: warning: mounting a filesystem with errors");
	if (ext2_ro(sb))
		return 0;
	struct timespec now;
	pw__current_time(&now);
	lock_buffer(sbi->s_sbh);
	sbi->s_es->s_mnt_count = cpu16((uint16_t)(le16(sbi->s_es->s_mnt_count) + 1));
	sbi->s_es->s_mtime = cpu32((uint32_t)now.tv_sec);
	unlock_buffer(sbi->s_sbh);
	ext2_commit_super(sb, sbi->s_mount_state & ~EXT2_VALID_FS);
	return sync_dirty_buffer(sbi->s_sbh);
}

static int
ext2_fill_super_bdev(struct super_block *sb, struct ext2_sb_info *sbi,
                     const char *options)
{
	int err = ext2_read_super(sb, sbi);
	if (err)
		return err;
	sbi->s_legacy = pw__has_option(options, "legacy_aops");
	sb->s_maxbytes = pw__ext2_max_size(sbi->s_blocksize_bits);
	if (!(le32(sbi->s_es->s_feature_ro_compat) & EXT2_FEATURE_RO_COMPAT_LARGE_FILE) ||
	    le32(sbi->s_es->s_rev_level) == 0)
		sb->s_maxbytes = PW_MIN(sb->s_maxbytes, (loff_t)INT32_MAX);
	sb->s_max_unused = 16384;
	if ((err = ext2_load_descriptors(sb)))
		return err;
	if ((err = pw__ext2_iget(sb, EXT2_ROOT_INO, &sb->s_root)))
		return err;
	if (!S_ISDIR(sb->s_root->i_mode)) {
		ext2_error(sb, "the root inode is not a directory");
		return -EUCLEAN;
	}
	return ext2_setup_super(sb);
}

static int
ext2_fill_super(struct super_block *sb, const char *source, const char *options)
{
	if (!source || !*source)
		return -EINVAL;
	if (pw__has_option(options, "ro"))
		sb->s_flags |= SB_RDONLY;
	struct ext2_sb_info *sbi = calloc(1, sizeof(*sbi));
	if (!sbi)
		return -ENOMEM;
	pthread_mutex_init(&sbi->s_alloc_lock, NULL);
	pthread_mutex_init(&sbi->s_iget_lock, NULL);
	sb->s_fs_info = sbi;
	sb->s_op = &ext2_sops;
	int err = blkdev_open(source, ext2_ro(sb), &sb->s_bdev);
	if (err) {
		pw_log("ext2: cannot open %s: %s", source, strerror(-err));
		ext2_free_sbi(sb);
		return err;
	}
	err = ext2_fill_super_bdev(sb, sbi, options);
	if (err) {
		if (sb->s_root) {
			iput(sb->s_root);
			sb->s_root = NULL;
		}
		pw__evict_all(sb);
		ext2_free_sbi(sb);
		invalidate_bdev(sb->s_bdev);
		blkdev_close(sb->s_bdev);
		sb->s_bdev = NULL;
	}
	return err;
}

const struct file_system_type pw__ext2_type = {
	.name = "ext2",
	.fill_super = ext2_fill_super,
};

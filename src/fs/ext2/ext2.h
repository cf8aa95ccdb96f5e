/*
 * ext2.h - the second extended filesystem: on-disk structures and the
 * in-memory state shared by the files of src/fs/ext2/.
 *
 * The on-disk format (revision 0 and 1, block sizes 1024 to 4096):
 *
 *   byte 1024          the superblock (struct ext2_super_block)
 *   block sb+1         the group descriptor table, 32 bytes per group
 *   per group          block bitmap, inode bitmap, inode table, data
 *
 * Every number on disk is little-endian; le16()/le32() convert, and all
 * structures below are read and written in place inside buffers of the
 * block device's cache (buffer_head.h), never copied whole.  Every number
 * read from disk is checked before it is used as an index or a block
 * number: a bad one gives -EUCLEAN and a pw_log line (ext2_error), never
 * an access outside a buffer.
 *
 * Files:
 *   super.c     mount (superblock and descriptor checks), statfs, sync,
 *               unmount; the superblock operations
 *   inode.c     reading and writing inodes, eviction, setattr, the
 *               address-space operations
 *   indirect.c  the block map: ext2_get_block over the direct, indirect,
 *               double and triple indirect blocks; truncation
 *   balloc.c    block bitmaps: goal-directed allocation and freeing
 *   ialloc.c    inode bitmaps: group choice, allocation and freeing
 *   dir.c       directory blocks: lookup, readdir, adding and removing
 *               entries
 *   namei.c     create, mkdir, symlink, link, unlink, rmdir, rename
 *   symlink.c   fast and slow symlink targets, readlink
 *   xattr.c     extended attributes in an attribute block
 *
 * Lock ordering (outermost first; each edge is named where it is made):
 *   VFS i_rwsem (parent, then child) -> ei_dir_lock (dir.c)
 *     -> ei_map_lock (indirect.c: ext2_map_block, ext2_truncate_blocks)
 *     -> s_alloc_lock (balloc.c, ialloc.c)
 *     -> buffer lock / device page lock (buffer.c)
 *   data page lock -> ei_map_lock (get_block under readpage/write_begin)
 *   ei_dir_lock -> s_iget_lock (lookup takes the inode before it lets
 *     go of the directory) -> s_inode_lock (ilookup, insert_inode_hash)
 * None of these is held across iput(), which may evict and so take
 * ei_map_lock and s_alloc_lock itself.
 */
#ifndef PW_EXT2_H
#define PW_EXT2_H

#include "internal.h"

#include <pagewright/buffer_head.h>

#include <endian.h>

/* ------------------------------------------------------------ constants */

#define EXT2_SUPER_MAGIC 0xEF53
#define EXT2_SB_OFFSET 1024        /* byte offset of the superblock */
#define EXT2_MIN_BLOCK_SIZE 1024
#define EXT2_MAX_BLOCK_SIZE 4096   /* at most one page: buffers live in pages */
#define EXT2_ROOT_INO 2
#define EXT2_GOOD_OLD_FIRST_INO 11
#define EXT2_GOOD_OLD_INODE_SIZE 128
#define EXT2_NDIR_BLOCKS 12
#define EXT2_IND_BLOCK 12
#define EXT2_DIND_BLOCK 13
#define EXT2_TIND_BLOCK 14
#define EXT2_N_BLOCKS 15
#define EXT2_NAME_LEN 255
#define EXT2_LINK_MAX 32000
#define EXT2_DESC_SIZE 32

/* s_state */
#define EXT2_VALID_FS 0x0001
#define EXT2_ERROR_FS 0x0002

/* Features.  Only these are understood; see super.c for the policy. */
#define EXT2_FEATURE_INCOMPAT_FILETYPE 0x0002
#define EXT2_FEATURE_RO_COMPAT_SPARSE_SUPER 0x0001
#define EXT2_FEATURE_RO_COMPAT_LARGE_FILE 0x0002
#define EXT2_INCOMPAT_SUPP EXT2_FEATURE_INCOMPAT_FILETYPE
#define EXT2_RO_COMPAT_SUPP \
	(EXT2_FEATURE_RO_COMPAT_SPARSE_SUPER | EXT2_FEATURE_RO_COMPAT_LARGE_FILE)

/* i_flags */
#define EXT2_INDEX_FL 0x00001000   /* hashed directory: ignored, cleared on change */
#define EXT2_EXTENTS_FL 0x00080000 /* ext4 extents: not ours */
#define EXT2_INLINE_DATA_FL 0x10000000

/* Directory entry file types (the filetype feature). */
enum {
	EXT2_FT_UNKNOWN, EXT2_FT_REG_FILE, EXT2_FT_DIR, EXT2_FT_CHRDEV,
	EXT2_FT_BLKDEV, EXT2_FT_FIFO, EXT2_FT_SOCK, EXT2_FT_SYMLINK, EXT2_FT_MAX
};

/* ------------------------------------------------------ on-disk layout */

struct ext2_super_block {
	uint32_t s_inodes_count;
	uint32_t s_blocks_count;
	uint32_t s_r_blocks_count;    /* reserved for the superuser */
	uint32_t s_free_blocks_count;
	uint32_t s_free_inodes_count;
	uint32_t s_first_data_block;  /* 1 with 1 KiB blocks, else 0 */
	uint32_t s_log_block_size;    /* block size = 1024 << this */
	uint32_t s_log_frag_size;
	uint32_t s_blocks_per_group;
	uint32_t s_frags_per_group;
	uint32_t s_inodes_per_group;
	uint32_t s_mtime;             /* last mount */
	uint32_t s_wtime;             /* last write */
	uint16_t s_mnt_count;
	int16_t s_max_mnt_count;
	uint16_t s_magic;
	uint16_t s_state;             /* EXT2_VALID_FS, EXT2_ERROR_FS */
	uint16_t s_errors;
	uint16_t s_minor_rev_level;
	uint32_t s_lastcheck;
	uint32_t s_checkinterval;
	uint32_t s_creator_os;
	uint32_t s_rev_level;         /* 0 or 1 */
	uint16_t s_def_resuid;
	uint16_t s_def_resgid;
	/* revision 1 */
	uint32_t s_first_ino;         /* first non-reserved inode */
	uint16_t s_inode_size;
	uint16_t s_block_group_nr;
	uint32_t s_feature_compat;
	uint32_t s_feature_incompat;
	uint32_t s_feature_ro_compat;
	uint8_t s_uuid[16];
	char s_volume_name[16];
	char s_last_mounted[64];
	uint32_t s_algorithm_usage_bitmap;
	uint8_t s_prealloc_blocks;
	uint8_t s_prealloc_dir_blocks;
	uint16_t s_reserved_gdt_blocks; /* for online resize (resize_inode) */
	uint8_t s_rest[1024 - 208];   /* preserved as found */
};

struct ext2_group_desc {
	uint32_t bg_block_bitmap;
	uint32_t bg_inode_bitmap;
	uint32_t bg_inode_table;
	uint16_t bg_free_blocks_count;
	uint16_t bg_free_inodes_count;
	uint16_t bg_used_dirs_count;
	uint16_t bg_pad;
	uint32_t bg_reserved[3];
};

struct ext2_inode {
	uint16_t i_mode;
	uint16_t i_uid;               /* low 16 bits */
	uint32_t i_size;              /* low 32 bits */
	uint32_t i_atime;
	uint32_t i_ctime;
	uint32_t i_mtime;
	uint32_t i_dtime;             /* deletion time: 0 while in use */
	uint16_t i_gid;
	uint16_t i_links_count;
	uint32_t i_blocks;            /* 512-byte units, indirect blocks included */
	uint32_t i_flags;
	uint32_t i_osd1;
	uint32_t i_block[EXT2_N_BLOCKS];
	uint32_t i_generation;
	uint32_t i_file_acl;          /* extended attribute block */
	uint32_t i_size_high;         /* regular files (large_file) */
	uint32_t i_faddr;
	uint16_t i_blocks_hi;         /* osd2 (Linux) */
	uint16_t i_file_acl_high;
	uint16_t i_uid_high;
	uint16_t i_gid_high;
	uint16_t i_checksum_lo;
	uint16_t i_reserved;
	/* large inodes (s_inode_size > 128) */
	uint16_t i_extra_isize;
	uint16_t i_checksum_hi;
	uint32_t i_ctime_extra;       /* nsec << 2 | epoch bits */
	uint32_t i_mtime_extra;
	uint32_t i_atime_extra;
};

struct ext2_dir_entry {
	uint32_t inode;               /* 0: unused */
	uint16_t rec_len;             /* to the next entry, multiple of 4 */
	uint8_t name_len;
	uint8_t file_type;            /* with the filetype feature */
	char name[];
};

#define EXT2_DIR_REC_LEN(len) ((8u + (unsigned)(len) + 3u) & ~3u)

_Static_assert(sizeof(struct ext2_super_block) == 1024, "superblock size");
_Static_assert(sizeof(struct ext2_group_desc) == EXT2_DESC_SIZE, "descriptor size");
_Static_assert(offsetof(struct ext2_inode, i_block) == 40, "i_block offset");
_Static_assert(offsetof(struct ext2_inode, i_extra_isize) == 128, "inode size");
_Static_assert(sizeof(struct ext2_dir_entry) == 8, "dirent size");

static inline uint16_t le16(uint16_t x) { return le16toh(x); }
static inline uint32_t le32(uint32_t x) { return le32toh(x); }
static inline uint16_t cpu16(uint16_t x) { return htole16(x); }
static inline uint32_t cpu32(uint32_t x) { return htole32(x); }

/* ------------------------------------------------------- in memory */

struct ext2_sb_info {
	struct buffer_head *s_sbh;        /* (C) the block holding the superblock */
	struct ext2_super_block *s_es;    /* (s_alloc_lock) inside s_sbh */
	struct buffer_head **s_group_desc; /* (C) the descriptor blocks, held */
	unsigned s_gdb_count;             /* (C) number of descriptor blocks */
	unsigned s_groups_count;          /* (C) */
	unsigned s_blocksize_bits;        /* (C) 10..12 */
	unsigned s_addr_per_block_bits;   /* (C) log2(block size / 4) */
	uint32_t s_blocks_count;          /* (C) */
	uint32_t s_first_data_block;      /* (C) */
	uint32_t s_blocks_per_group;      /* (C) */
	uint32_t s_inodes_per_group;      /* (C) */
	uint32_t s_inodes_count;          /* (C) */
	uint32_t s_itb_per_group;         /* (C) inode table blocks per group */
	uint32_t s_sb_area;               /* (C) blocks of superblock, descriptors
	                                   * and reserved descriptors at the
	                                   * start of a group with a backup */
	bool s_sparse_super;              /* (C) backups only in some groups */
	uint32_t s_first_ino;             /* (C) */
	unsigned s_inode_size;            /* (C) */
	uint32_t s_r_blocks_count;        /* (C) */
	uid_t s_resuid;                   /* (C) may use the reserved blocks */
	gid_t s_resgid;                   /* (C) */
	bool s_filetype;                  /* (C) entries carry a file type */
	bool s_legacy;                    /* (C) legacy_aops mount option */
	uint16_t s_mount_state;           /* (C) s_state as found at mount */
	_Atomic bool s_error;             /* (A) corruption seen: EXT2_ERROR_FS */
	/* Free counts: the sums of the group descriptors, copied into the
	 * superblock when it is written. */
	uint64_t s_free_blocks;           /* (s_alloc_lock) */
	uint64_t s_free_inodes;           /* (s_alloc_lock) */
	uint64_t s_dirs;                  /* (s_alloc_lock) */
	pthread_mutex_t s_alloc_lock;     /* bitmaps, descriptors, the counts */
	pthread_mutex_t s_iget_lock;      /* makes ilookup-else-read atomic */
};

struct ext2_inode_info {
	uint32_t ei_data[EXT2_N_BLOCKS]; /* (ei_map_lock) i_block, little-endian */
	uint32_t ei_flags;               /* (W) i_flags; read by write_inode
	                                  * without i_rwsem: __atomic accesses */
	uint32_t ei_file_acl;            /* (W) xattr block; read without
	                                  * i_rwsem: __atomic accesses */
	uint32_t ei_generation;          /* (C) */
	uint32_t ei_dtime;               /* (W) */
	unsigned ei_group;               /* (C) block group of the inode */
	uint64_t ei_last_lblk;           /* (ei_map_lock) last block allocated: */
	uint64_t ei_last_pblk;           /*   logical and physical (goal) */
	bool ei_new;                     /* (W) never written: zero the record */
	pthread_mutex_t ei_map_lock;     /* the block map and i_blocks */
	pthread_rwlock_t ei_dir_lock;    /* directory blocks: readers vs changes */
	/* The name index of a directory (dir.c): published by a reader under
	 * ei_dir_lock, changed and dropped under it held for writing. */
	struct ext2_dix *_Atomic ei_dix;
};

static inline struct ext2_sb_info *EXT2_SB(struct super_block *sb) { return sb->s_fs_info; }
static inline struct ext2_inode_info *EXT2_I(struct inode *inode) { return inode->i_private; }

static inline struct ext2_group_desc *
ext2_group_desc(struct super_block *sb, unsigned group)
{
	struct ext2_sb_info *sbi = EXT2_SB(sb);
	unsigned per = (unsigned)sb->s_blocksize / EXT2_DESC_SIZE;
	return (struct ext2_group_desc *)sbi->s_group_desc[group / per]->b_data + group % per;
}

static inline struct buffer_head *
ext2_group_desc_bh(struct super_block *sb, unsigned group)
{
	return EXT2_SB(sb)->s_group_desc[group / ((unsigned)sb->s_blocksize / EXT2_DESC_SIZE)];
}

/*
 * Metadata bytes in the device's page cache change only under their
 * buffer lock, which writeback holds while it copies the block out
 * (block_write_full_page), so a bitmap or descriptor is never written
 * half-changed.  The allocators also hold s_alloc_lock, which keeps the
 * unlocked reads of these fields stable.
 */
static inline void
ext2_change_bit_locked(struct buffer_head *bh, uint8_t *map, uint32_t bit, bool set)
{
	lock_buffer(bh);
	if (set)
		map[bit >> 3] |= (uint8_t)(1u << (bit & 7));
	else
		map[bit >> 3] &= (uint8_t)~(1u << (bit & 7));
	unlock_buffer(bh);
	mark_buffer_dirty(bh);
}

/* Add to a group's free block, free inode and directory counts;
 * s_alloc_lock held. */
static inline void
ext2_gd_add(struct super_block *sb, unsigned group, int dblocks, int dinodes, int ddirs)
{
	struct ext2_group_desc *gd = ext2_group_desc(sb, group);
	struct buffer_head *bh = ext2_group_desc_bh(sb, group);
	lock_buffer(bh);
	gd->bg_free_blocks_count = cpu16((uint16_t)(le16(gd->bg_free_blocks_count) + dblocks));
	gd->bg_free_inodes_count = cpu16((uint16_t)(le16(gd->bg_free_inodes_count) + dinodes));
	gd->bg_used_dirs_count = cpu16((uint16_t)(le16(gd->bg_used_dirs_count) + ddirs));
	unlock_buffer(bh);
	mark_buffer_dirty(bh);
}

/* The first block of a group, and its number of blocks (the last group
 * may be short). */
static inline uint64_t
ext2_group_first_block(struct ext2_sb_info *sbi, unsigned group)
{
	return (uint64_t)sbi->s_first_data_block + (uint64_t)group * sbi->s_blocks_per_group;
}

static inline uint32_t
ext2_group_blocks(struct ext2_sb_info *sbi, unsigned group)
{
	uint64_t first = ext2_group_first_block(sbi, group);
	return (uint32_t)PW_MIN((uint64_t)sbi->s_blocks_per_group, sbi->s_blocks_count - first);
}

static inline bool
ext2_ro(struct super_block *sb)
{
	return sb->s_flags & SB_RDONLY;
}

/* ------------------------------------------------------- prototypes */

/* super.c */
#define ext2_error(sb, ...) pw__ext2_error((sb), __func__, __VA_ARGS__)
void pw__ext2_error(struct super_block *sb, const char *fn, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
bool pw__ext2_data_block_ok(struct super_block *sb, uint64_t block);

/* inode.c */
int pw__ext2_iget(struct super_block *sb, uint64_t ino, struct inode **res);
int pw__ext2_write_inode(struct inode *inode, bool sync);
/* The inode-table buffer holding ino's record (referenced) and the record. */
int pw__ext2_read_raw(struct super_block *sb, uint64_t ino, struct buffer_head **bhp,
                      struct ext2_inode **raw);
void pw__ext2_evict_inode(struct inode *inode);
int pw__ext2_setattr(struct inode *inode, const struct pw_iattr *attr);
int pw__ext2_new_inode(struct inode *dir, mode_t mode, struct inode **res);
void pw__ext2_touch(struct inode *inode, bool mtime);
extern const struct inode_operations pw__ext2_dir_iops;
extern const struct inode_operations pw__ext2_file_iops;
extern const struct inode_operations pw__ext2_symlink_iops;

/* indirect.c */
int pw__ext2_get_block(struct inode *inode, uint64_t iblock,
                       struct buffer_head *bh, int create);
int pw__ext2_map_block(struct inode *inode, uint64_t iblock, bool create,
                       uint64_t *pblk, bool *new);
int pw__ext2_truncate_blocks(struct inode *inode, loff_t size);
loff_t pw__ext2_max_size(unsigned blocksize_bits);
bool pw__ext2_has_blocks(struct inode *inode);

/* balloc.c */
int pw__ext2_new_block(struct super_block *sb, uint64_t goal, uint64_t *out);
void pw__ext2_free_block(struct super_block *sb, uint64_t block);
uint32_t pw__ext2_find_zero_bit(const uint8_t *map, uint32_t start, uint32_t end);

/* ialloc.c */
int pw__ext2_alloc_ino(struct inode *dir, bool isdir, uint64_t *ino);
void pw__ext2_free_ino(struct super_block *sb, uint64_t ino, bool isdir);

/* dir.c */
struct ext2_dir_slot {
	struct buffer_head *bh;   /* referenced; brelse when done */
	unsigned offset;          /* of the entry in the block */
	unsigned prev;            /* of the entry before it, or offset if first */
	uint64_t lblk;            /* the block's number in the directory */
};
int pw__ext2_find_entry(struct inode *dir, const char *name, size_t len,
                        uint64_t *ino);
int pw__ext2_add_entry(struct inode *dir, const char *name, size_t len,
                       struct inode *inode);
int pw__ext2_delete_entry(struct inode *dir, const char *name, size_t len,
                          uint64_t ino);
int pw__ext2_set_entry(struct inode *dir, const char *name, size_t len,
                       struct inode *inode, uint64_t *old_ino);
int pw__ext2_make_empty(struct inode *inode, struct inode *parent);
/* Forget a directory's name index (dir.c). */
void pw__ext2_dix_drop(struct ext2_inode_info *ei);
int pw__ext2_empty_dir(struct inode *inode);
int pw__ext2_set_dotdot(struct inode *dir, struct inode *parent);
int pw__ext2_readdir(struct inode *dir, void *ctx, filldir_t fill);
int pw__ext2_lookup(struct inode *dir, const char *name, size_t len,
                    struct inode **res);
unsigned pw__ext2_ftype(mode_t mode);

/* namei.c */
int pw__ext2_create(struct inode *dir, const char *name, size_t len,
                    mode_t mode, struct inode **res);
int pw__ext2_mkdir(struct inode *dir, const char *name, size_t len,
                   mode_t mode, struct inode **res);
int pw__ext2_unlink(struct inode *dir, const char *name, size_t len,
                    struct inode *victim);
int pw__ext2_rmdir(struct inode *dir, const char *name, size_t len,
                   struct inode *victim);
int pw__ext2_rename(struct inode *odir, const char *oname, size_t olen,
                    struct inode *ndir, const char *nname, size_t nlen);
int pw__ext2_symlink(struct inode *dir, const char *name, size_t len,
                     const char *target, struct inode **res);
int pw__ext2_link(struct inode *inode, struct inode *dir, const char *name,
                  size_t len);

/* symlink.c */
/* xattr.c; i_rwsem held. */
ssize_t pw__ext2_getxattr(struct inode *inode, const char *name, void *buf, size_t size);
ssize_t pw__ext2_listxattr(struct inode *inode, char *buf, size_t size);
int pw__ext2_setxattr(struct inode *inode, const char *name, const void *value,
                      size_t size, int flags);
void pw__ext2_xattr_release(struct inode *inode);

int pw__ext2_write_link(struct inode *inode, const char *target, size_t len);

#endif /* PW_EXT2_H */

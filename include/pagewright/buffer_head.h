/*
 * buffer_head.h - block devices and buffer heads: the layer block
 * filesystems (ext2) build on, after SPEC section 6.
 *
 * A block device is an image file or device read and written with
 * pread/pwrite.  Its contents are cached in the same page cache as file
 * data: the device has its own address_space (bd_mapping), and metadata
 * blocks (superblock, group descriptors, bitmaps, inode tables,
 * directory and indirect blocks) are buffers on its pages.
 *
 * A buffer_head describes one block inside a page: which device block it
 * maps to and its state.  A page's buffers form a circular list through
 * b_this_page and hang off page->private (PG_private set).
 *
 * Locking: a data page's buffers are guarded by the page lock.  A
 * metadata buffer is also guarded by its own lock bit (BH_Lock), taken by
 * lock_buffer() around reads and writes of that block, because several
 * metadata blocks share a page and are used independently.
 */
#ifndef PAGEWRIGHT_BUFFER_HEAD_H
#define PAGEWRIGHT_BUFFER_HEAD_H

#include <pagewright/fs.h>

/* ------------------------------------------------------- block devices */

struct block_device {
	int bd_fd;                      /* (C) the image file or device */
	uint64_t bd_size;               /* (C) bytes */
	bool bd_rdonly;                 /* (C) */
	struct inode *bd_inode;         /* (C) owns bd_mapping */
	struct address_space *bd_mapping; /* (C) the device's page cache */
	unsigned bd_block_size;         /* block size of the metadata buffers */
	/* Error injection, for tests: fail the Nth read or write from now
	 * (1-based; 0 = never), or every write once writes_left reaches 0
	 * (-1 = never), as a crashed disk would. */
	_Atomic long bd_fail_read_nth, bd_fail_write_nth, bd_writes_left;
	/* ... or the next write that covers this byte of the device (-1:
	 * none), so that a test can fail one block's write whenever the
	 * writeback thread gets to it. */
	_Atomic int64_t bd_fail_write_at;
	_Atomic long bd_reads, bd_writes; /* (A) I/O counters */
	/* Small background writes not yet started on the host
	 * (blkdev_start_write): the range they span and their bytes. */
	pthread_mutex_t bd_start_lock;
	uint64_t bd_start_lo, bd_start_hi; /* (bd_start_lock) */
	size_t bd_start_bytes;             /* (bd_start_lock) */
};

/* Open an image file or device.  -errno (ENOENT, EACCES, ...). */
int blkdev_open(const char *path, bool rdonly, struct block_device **out);
void blkdev_close(struct block_device *bdev);
/* Whole-range I/O at a byte offset; -EIO on a short or failed transfer,
 * -EFAULT when buf is not the caller's writable memory (a read into a
 * user's buffer: blockdev_read_direct). */
int blkdev_read(struct block_device *bdev, uint64_t off, void *buf, size_t len);
int blkdev_write(struct block_device *bdev, uint64_t off, const void *buf,
                 size_t len);
/* Read into several buffers from consecutive device bytes at off. */
int blkdev_readv(struct block_device *bdev, uint64_t off, const struct iovec *iov,
                 int cnt);
/* Write several buffers to consecutive device bytes at off: one write for
 * the error injection and bd_writes. */
int blkdev_writev(struct block_device *bdev, uint64_t off, const struct iovec *iov,
                  int cnt);
/* Make written data durable (fdatasync). */
int blkdev_flush(struct block_device *bdev);
/* Ask the host to start writing [off, off+len) to the disk now, without
 * waiting (background writeback; best effort, errors come at the flush). */
void blkdev_start_write(struct block_device *bdev, uint64_t off, size_t len);

/* -------------------------------------------------------- buffer heads */

enum bh_state_bits {
	BH_Uptodate = 1u << 0, /* contains valid data */
	BH_Dirty = 1u << 1,    /* newer than the device */
	BH_Lock = 1u << 2,     /* I/O in progress or the buffer is held */
	BH_Mapped = 1u << 3,   /* b_blocknr is valid */
	BH_New = 1u << 4,      /* get_block just allocated it: not on disk yet */
	BH_Waiters = 1u << 5,  /* someone sleeps on BH_Lock */
	BH_Boundary = 1u << 6, /* the next block is not contiguous */
	BH_Write_EIO = 1u << 7,
};

struct buffer_head {
	_Atomic uint32_t b_state;          /* (A) enum bh_state_bits */
	_Atomic int b_count;               /* (A) users */
	struct buffer_head *b_this_page;   /* (P) circular list of the page */
	struct page *b_page;               /* (C) */
	uint64_t b_blocknr;                /* (P) device block, if BH_Mapped */
	size_t b_size;                     /* (C) */
	char *b_data;                      /* (C) inside page_address(b_page) */
	struct block_device *b_bdev;       /* (P) */
};

#define BH_FNS(name)                                                            \
	static inline bool buffer_##name(struct buffer_head *bh)                  \
	{ return atomic_load(&bh->b_state) & BH_##name; }                          \
	static inline void set_buffer_##name(struct buffer_head *bh)              \
	{ atomic_fetch_or(&bh->b_state, BH_##name); }                              \
	static inline void clear_buffer_##name(struct buffer_head *bh)            \
	{ atomic_fetch_and(&bh->b_state, ~(uint32_t)BH_##name); }
BH_FNS(Uptodate)
BH_FNS(Dirty)
BH_FNS(Mapped)
BH_FNS(New)
BH_FNS(Boundary)
BH_FNS(Write_EIO)
#undef BH_FNS

/* page->private is published with release semantics once the buffers
 * are built, so readers that do not hold the page lock (sb_bread of a
 * cached device page) see them whole. */
static inline struct buffer_head *page_buffers(struct page *page)
{
	return __atomic_load_n((struct buffer_head **)&page->private, __ATOMIC_ACQUIRE);
}
static inline bool page_has_buffers(struct page *page) { return page_buffers(page) != NULL; }

/* Map iblock of inode to a device block in bh (b_blocknr, BH_Mapped);
 * with create, allocate it and set BH_New.  An unmapped result without
 * create is a hole.  bh->b_size is one block, except from
 * mpage_readahead (without create, a buffer on the stack), which asks
 * for several: a get_block it calls sets b_size to the bytes mapped from
 * b_blocknr on, consecutive in the file and on the device (one block at
 * least; ext2 maps what continues in the same pointer block, as Linux's
 * get_block may).  0 or -errno (ENOSPC, EIO, EUCLEAN). */
typedef int get_block_t(struct inode *inode, uint64_t iblock,
                        struct buffer_head *bh_result, int create);

void map_bh(struct buffer_head *bh, struct block_device *bdev, uint64_t block);
/* Attach buffers of blocksize to a locked page that has none. */
int create_empty_buffers(struct page *page, struct block_device *bdev,
                         unsigned blocksize);
/* Drop a page's buffers (clean, unlocked ones); true if it has none now. */
bool try_to_free_buffers(struct page *page);
void lock_buffer(struct buffer_head *bh);
bool trylock_buffer(struct buffer_head *bh);
void unlock_buffer(struct buffer_head *bh);
void get_bh(struct buffer_head *bh);
void brelse(struct buffer_head *bh);
/* Dirty a buffer: the page becomes dirty and the inode is tagged. */
void mark_buffer_dirty(struct buffer_head *bh);
/* Synchronous read/write of one locked-or-not buffer; 0 or -EIO. */
int bh_read(struct buffer_head *bh);
int sync_dirty_buffer(struct buffer_head *bh);

/* Metadata (sb->s_bdev, in sb->s_blocksize units; the filesystem sets
 * bd_block_size = s_blocksize at mount): block `block` of the device, read
 * and referenced (brelse when done).  -EIO on a read error; -EUCLEAN if
 * the block lies past the end of the device. */
int sb_bread(struct super_block *sb, uint64_t block, struct buffer_head **bhp);
/* The same without reading: for a block about to be overwritten whole. */
int sb_getblk(struct super_block *sb, uint64_t block, struct buffer_head **bhp);
/* Write back every dirty metadata buffer of the device and flush it. */
int sync_blockdev(struct block_device *bdev);
/* Drop the device's cached pages past nothing: used at unmount. */
void invalidate_bdev(struct block_device *bdev);
/* Forget any cached copy of a device block (a freed metadata block that
 * now holds file data, SPEC 6 "invalidate its alias"). */
void clean_bdev_alias(struct block_device *bdev, uint64_t block);

/* The SPEC section 6 helpers. */
int block_read_full_page(struct page *page, get_block_t *get_block);
/* ->readahead for block filesystems: maps the blocks of the pages and
 * reads each run of consecutive device blocks with one I/O.  With blocks
 * of a page, pages without buffers stay without (Linux's mpage reads):
 * whoever needs buffers later attaches them (create_empty_buffers). */
void mpage_readahead(struct page **pages, unsigned nr, get_block_t *get_block);
int block_write_full_page(struct page *page, get_block_t *get_block,
                          struct writeback_control *wbc);
/* ->read_direct for block filesystems: maps the blocks of [pos, pos +
 * len) and reads each run of consecutive device blocks straight into buf
 * (holes zeroed), stopping short before a page that is in the cache once
 * its blocks are mapped (fs.h says why).  Partial blocks at either end
 * go through a bounce block. */
ssize_t blockdev_read_direct(struct inode *inode, void *buf, size_t len, loff_t pos,
                             get_block_t *get_block);
/* ->writepages for block filesystems (and the device's own cache): the
 * buffers to write of every dirty page, merged into one pwritev per run
 * of consecutive device blocks, across pages. */
int mpage_writepages(struct address_space *mapping, struct writeback_control *wbc,
                     get_block_t *get_block);
int block_write_begin(struct address_space *mapping, loff_t pos, unsigned len,
                      unsigned flags, struct page **pagep, get_block_t *get_block);
int block_write_end(struct file *file, struct address_space *mapping, loff_t pos,
                    unsigned len, unsigned copied, struct page *page,
                    void *fsdata);
int generic_write_end(struct file *file, struct address_space *mapping,
                      loff_t pos, unsigned len, unsigned copied,
                      struct page *page, void *fsdata);
void page_zero_new_buffers(struct page *page, unsigned from, unsigned to);
int block_prepare_write(struct page *page, unsigned from, unsigned to,
                        get_block_t *get_block);
int block_commit_write(struct page *page, unsigned from, unsigned to);
int generic_commit_write(struct file *file, struct page *page, unsigned from,
                         unsigned to);
/* page_mkwrite for block filesystems: allocate the blocks of a locked,
 * uptodate page about to be made writable through a shared mapping, so
 * that writeback never meets ENOSPC; its buffers become dirty.  Called
 * without i_rwsem: get_block must do its own locking.  0 or -errno (the
 * fault then raises SIGBUS, as ENOSPC does on Linux). */
int block_page_mkwrite(struct vm_area_struct *vma, struct page *page,
                       get_block_t *get_block);
/* invalidatepage for buffer-backed mappings. */
void block_invalidatepage(struct page *page, unsigned offset);
/* Zero the tail of the block holding `from` on a partial last page (for
 * truncate); 0 or -errno. */
int block_truncate_page(struct address_space *mapping, loff_t from,
                        get_block_t *get_block);

#endif /* PAGEWRIGHT_BUFFER_HEAD_H */

/*
 * fs.h - the filesystem API: pages, address spaces, inodes, their
 * operations, and the helpers a filesystem builds on.
 *
 * Conventions (see docs/LOCKING.md for the full table):
 *  - int functions return 0 or -errno; byte counts are ssize_t, >= 0 or
 *    -errno.  Objects come back through out-parameters.
 *  - Lock letters on fields: (C) constant after creation, (A) atomic,
 *    (P) page lock, (I) the mapping's index lock, (W) the inode's i_rwsem,
 *    (M) the global mmap_lock, (R) the mapping's i_mmap_lock, (S) the
 *    superblock's inode-table lock.
 *  - Lock order, outermost first:
 *      i_rwsem -> mmap_lock -> page lock -> i_mmap_lock -> vma lock
 *      i_rwsem -> m_wb_state (do_writepages) -> page lock
 *      page lock -> index lock;  index lock and vma lock are leaves.
 *    User memory is touched with faults enabled only while holding at most
 *    i_rwsem; under a page lock only atomic copies are made.
 */
#ifndef PAGEWRIGHT_FS_H
#define PAGEWRIGHT_FS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

#define PAGE_SHIFT 12
#define PAGE_SIZE (1UL << PAGE_SHIFT)
#define PAGE_MASK (~(PAGE_SIZE - 1))

typedef uint64_t pgoff_t;
typedef int64_t loff_t;

struct address_space;
struct inode;
struct super_block;
struct file;
struct page;
struct vm_area_struct;
struct writeback_control;
struct block_device;

/* ---------------------------------------------------------------- pages */

/* Page flags (struct page.flags).  PG_locked and PG_waiters form the page
 * lock; the flags word is also the futex that lock waiters sleep on. */
enum pageflags {
	PG_locked = 1u << 0,
	PG_waiters = 1u << 1,   /* someone sleeps on this page's futex */
	PG_uptodate = 1u << 2,  /* every byte of the page is valid */
	PG_dirty = 1u << 3,     /* newer than the backing store */
	PG_writeback = 1u << 4, /* being written back */
	PG_error = 1u << 5,     /* the last read or write failed */
	PG_referenced = 1u << 6,
	PG_private = 1u << 7, /* page->private holds fs data (buffers) */
	/* Mapped writable by a user mapping since its last writeback: a
	 * store may have reached any byte of it, buffers dirty or not (we
	 * have no hardware dirty bit to ask).  Set by the fault path, taken
	 * by block_write_full_page. */
	PG_wrmapped = 1u << 8,
	/* Faulted back through a mapping after reclaim had evicted it from
	 * there (a refault): reclaim gives it one more pass over the LRU
	 * than its PG_referenced alone would (reclaim.c). */
	PG_active = 1u << 9,
};

/*
 * One 4 KiB frame of the page pool.  Metadata lives in an array indexed by
 * frame number, so page_address() and pfn lookups are arithmetic.
 * 56 bytes: at most 64 per page, as DESIGN.md asks.
 */
struct page {
	_Atomic uint32_t flags;         /* (A) enum pageflags */
	_Atomic int32_t refcount;       /* (A) 0 = free frame */
	_Atomic int32_t mapcount;       /* (A) user PTEs mapping this frame */
	uint32_t lru_gen;               /* reserved */
	pgoff_t index;                  /* (P,I) offset in the file, pages */
	struct address_space *mapping;  /* (P,I) owner; NULL once truncated */
	void *private;                  /* (P) fs data, e.g. buffer heads */
	struct page *lru_prev, *lru_next; /* (lru_lock, reclaim.c) the LRU */
};

void *page_address(const struct page *page);
unsigned long page_to_pfn(const struct page *page);

static inline bool PageLocked(struct page *p) { return atomic_load(&p->flags) & PG_locked; }
static inline bool PageUptodate(struct page *p) { return atomic_load_explicit(&p->flags, memory_order_acquire) & PG_uptodate; }
static inline bool PageDirty(struct page *p) { return atomic_load(&p->flags) & PG_dirty; }
static inline bool PageWriteback(struct page *p) { return atomic_load(&p->flags) & PG_writeback; }
static inline bool PageError(struct page *p) { return atomic_load(&p->flags) & PG_error; }
static inline void SetPageUptodate(struct page *p) { atomic_fetch_or_explicit(&p->flags, PG_uptodate, memory_order_release); }
static inline void ClearPageUptodate(struct page *p) { atomic_fetch_and(&p->flags, ~(uint32_t)PG_uptodate); }
static inline void SetPageError(struct page *p) { atomic_fetch_or(&p->flags, PG_error); }
static inline void ClearPageError(struct page *p) { atomic_fetch_and(&p->flags, ~(uint32_t)PG_error); }
/* Reclaim's second chance; a plain load first keeps hot paths cheap. */
static inline void mark_page_accessed(struct page *p)
{
	if (!(atomic_load_explicit(&p->flags, memory_order_relaxed) & PG_referenced))
		atomic_fetch_or(&p->flags, PG_referenced);
}

void get_page(struct page *page);
void put_page(struct page *page);
void lock_page(struct page *page);
bool trylock_page(struct page *page);
void unlock_page(struct page *page);
void wait_on_page_locked(struct page *page);
void wait_on_page_writeback(struct page *page);
/* Mark dirty; accounts it and tags the inode.  Returns true if it was clean. */
bool set_page_dirty(struct page *page);
/* Before writing a locked dirty page back: write-protect its user mappings
 * and clear PG_dirty.  Returns true if the page was dirty. */
bool clear_page_dirty_for_io(struct page *page);
void set_page_writeback(struct page *page);
void end_page_writeback(struct page *page);
void zero_user_segment(struct page *page, unsigned start, unsigned end);

/* --------------------------------------------------------- page cache */

/* Address-space operation flags (SPEC section 2). */
#define AOP_FLAG_UNINTERRUPTIBLE 0x0001 /* the caller guarantees copied == len */
#define AOP_FLAG_CONT_EXPAND 0x0002     /* from generic_cont_expand_simple */
/* readpage: "I unlocked the page and it may be gone; look it up again". */
#define AOP_TRUNCATED_PAGE 0x80001
/* writepage: "I left the page dirty and unlocked it; try later". */
#define AOP_WRITEPAGE_ACTIVATE 0x80000

struct writeback_control {
	loff_t range_start, range_end; /* bytes, inclusive */
	bool sync;                     /* wait for the I/O (fsync) */
	bool range_cyclic;             /* start where the last cyclic pass
	                                * stopped (m_wb_index), wrap around;
	                                * the range is ignored */
	long nr_to_write;              /* stop after this many pages; 0: all */
	bool for_background;           /* the writeback thread: skip a mapping
	                                * another thread is writing back */
	long nr_written;               /* pages submitted */
	long nr_ios;                   /* write system calls made: filesystems
	                                * add one per pwrite/pwritev */
};

struct address_space_operations {
	/* Page locked on entry, not uptodate; unlocks it (also on error). */
	int (*readpage)(struct file *file, struct page *page);
	/* Optional: read nr new pages of consecutive indices, locked and in
	 * the cache, with as few I/Os as possible; unlock each (uptodate, or
	 * not with PG_error).  Without it each page goes to readpage. */
	void (*readahead)(struct file *file, struct address_space *mapping,
	                  struct page **pages, unsigned nr);
	/* Page locked on entry, dirty bit already cleared, writeback set;
	 * unlocks it and ends writeback.  Errors are also recorded on the
	 * mapping with mapping_set_error(). */
	int (*writepage)(struct page *page, struct writeback_control *wbc);
	/* Optional: write back the dirty pages wbc describes with as few
	 * I/Os as possible (usually write_cache_pages with a batch that
	 * merges contiguous pages).  No page locked on entry or return.
	 * Without it each page goes to writepage.  Return: the first error. */
	int (*writepages)(struct address_space *mapping, struct writeback_control *wbc);
	/* SPEC section 2.  i_rwsem held.  On success *pagep is locked with a
	 * reference for the caller. */
	int (*write_begin)(struct file *file, struct address_space *mapping,
	                   loff_t pos, unsigned len, unsigned flags,
	                   struct page **pagep, void **fsdata);
	/* Page locked and referenced on entry; unlocks and releases it. */
	int (*write_end)(struct file *file, struct address_space *mapping,
	                 loff_t pos, unsigned len, unsigned copied,
	                 struct page *page, void *fsdata);
	/* The legacy pair (SPEC section 4); page locked throughout. */
	int (*prepare_write)(struct file *file, struct page *page, unsigned from,
	                     unsigned to);
	int (*commit_write)(struct file *file, struct page *page, unsigned from,
	                    unsigned to);
	/* Optional: a shared mapping is about to make this locked, uptodate
	 * page writable (allocate blocks).  0 or -errno (SIGBUS). */
	int (*page_mkwrite)(struct vm_area_struct *vma, struct page *page);
	/* Optional: the page is leaving the cache or [offset, PAGE_SIZE) is
	 * being truncated; drop fs-private state.  Page locked. */
	void (*invalidatepage)(struct page *page, unsigned offset);
	/* Optional: read [pos, pos + len) of the file from its storage into
	 * buf (the caller's memory: copy_to_user or a system call that fails
	 * with EFAULT, never a plain store), without the page cache; holes
	 * read as zeros.  pos + len is within i_size.  Called by
	 * file_read_nocache with no lock held and the inode's i_dio_count
	 * raised, so truncate does not free blocks under it.  A page of the
	 * range may be in the cache, dirty, its blocks not yet written: the
	 * caller copies the pages it finds cached, and the filesystem must
	 * stop short before a page that enters the cache after the caller
	 * looked (blockdev_read_direct: map, then look again).
	 * Return: bytes read (short: the caller goes on from there), or
	 * -errno. */
	ssize_t (*read_direct)(struct inode *inode, void *buf, size_t len, loff_t pos);
};

/* The page cache of one file. */
struct address_space {
	struct inode *host;                          /* (C) */
	const struct address_space_operations *a_ops; /* (C) */
	pthread_mutex_t i_pages_lock;                /* the index lock */
	void *i_pages;                               /* (I) radix tree root */
	unsigned i_pages_height;                     /* (I) */
	unsigned long nrpages;                       /* (I) */
	_Atomic long nrdirty;                        /* (A) dirty pages */
	pthread_mutex_t i_mmap_lock;                 /* guards i_mmap */
	struct vm_area_struct *i_mmap;               /* (R) vmas mapping us */
	_Atomic uint32_t wb_err_seq;                 /* (A) bumped per error */
	_Atomic int wb_err;                          /* (A) last errno */
	_Atomic pgoff_t m_wb_index;                  /* (A) where the last cyclic
	                                              * writeback stopped */
	_Atomic uint32_t m_wb_state;                 /* (A) one thread at a time
	                                              * writes the mapping back
	                                              * (do_writepages) */
	bool unevictable;                            /* (C) ramfs: no backing */
};

/* Page-cache index: lookups. */
struct page *find_get_page(struct address_space *mapping, pgoff_t index);
struct page *find_lock_page(struct address_space *mapping, pgoff_t index);
/* Insert a locked new page with one extra reference for the cache.
 * -EEXIST if another page is there. */
int add_to_page_cache_locked(struct page *page, struct address_space *mapping,
                             pgoff_t index);
/* Remove a locked page from the cache (drops the cache's reference). */
void delete_from_page_cache(struct page *page);
/* Up to nr pages at index >= start, with references; returns the count. */
unsigned find_get_pages(struct address_space *mapping, pgoff_t start,
                        unsigned nr, struct page **pages);
/* Index tags (index.c): DIRTY follows PG_dirty, WRITEBACK PG_writeback;
 * TOWRITE marks the dirty pages a walk that writes a whole range must
 * write (tag_pages_for_writeback). */
enum {
	PAGECACHE_TAG_DIRTY = 0,
	PAGECACHE_TAG_WRITEBACK = 1,
	PAGECACHE_TAG_TOWRITE = 2,
	PAGECACHE_NR_TAGS = 3,
};
/* Up to nr pages with the tag at indices *index .. end, in order, with
 * references; *index moves past the last returned.  Check the page's
 * flags: a tag may lag its bit by a moment. */
unsigned find_get_pages_tag(struct address_space *mapping, pgoff_t *index,
                            pgoff_t end, int tag, unsigned nr,
                            struct page **pages);
/* Does any page of the mapping have the tag? */
bool mapping_tagged(struct address_space *mapping, int tag);
/* TOWRITE on every DIRTY page at indices start .. end. */
void tag_pages_for_writeback(struct address_space *mapping, pgoff_t start,
                             pgoff_t end);
/* SPEC section 5: find or create, locked, one reference.  NULL = ENOMEM. */
struct page *grab_cache_page_write_begin(struct address_space *mapping,
                                         pgoff_t index, unsigned flags);
/* Allocate a page, near the frame of hint (or any if NULL).  NULL = ENOMEM. */
struct page *page_cache_alloc(struct address_space *mapping, pgoff_t index);
/* Read a page through ->readpage; returns it uptodate and referenced. */
int read_mapping_page(struct address_space *mapping, pgoff_t index,
                      struct file *file, struct page **pagep);

/* Writeback errors: record, and the errseq check done by fsync. */
void mapping_set_error(struct address_space *mapping, int err);
int filemap_write_and_wait_range(struct address_space *mapping, loff_t start,
                                 loff_t end);
int filemap_fdatawrite(struct address_space *mapping);
/* Write back what wbc describes: ->writepages, or ->writepage per page. */
int do_writepages(struct address_space *mapping, struct writeback_control *wbc);

/*
 * A writeback batch, for ->writepages: write_cache_pages hands each dirty
 * page of the range to batch->add, locked, with its dirty bit cleared
 * (user mappings write-protected) and PG_writeback set.  add must unlock
 * the page; it may write the page at once and end its writeback, or keep
 * it in the batch (writeback still set, the page unlocked) until submit
 * writes the batch and ends writeback on each page.  write_cache_pages
 * calls submit before anything that may block (a page lock held by
 * another thread, a page under writeback) and at the end, so a thread
 * never waits for anything while it holds pages under writeback that are
 * not yet written: a thread waiting on one of them (a writer, a write
 * fault: stable pages) always waits for a thread that is making progress.
 * add must keep the same rule for its own waits (submit first).
 */
struct writeback_batch {
	int (*add)(struct writeback_batch *b, struct page *page,
	           struct writeback_control *wbc);
	int (*submit)(struct writeback_batch *b, struct writeback_control *wbc);
	unsigned nr_pages; /* pages held in the batch, not yet written */
};
/* Return: the first error of add or submit (also recorded on the mapping
 * by whoever met it). */
int write_cache_pages(struct address_space *mapping, struct writeback_control *wbc,
                      struct writeback_batch *batch);
/* Remove cached pages at and past byte lstart; unmaps them first. */
void truncate_inode_pages(struct address_space *mapping, loff_t lstart);
/* Unmap user mappings of [start, start+len) bytes of the file. */
void unmap_mapping_range(struct address_space *mapping, loff_t start,
                         loff_t len);
/* i_size grew: write-protect the old EOF page if blocks smaller than a
 * page came inside the file there (locked: a page lock the caller holds,
 * or NULL). */
void pagecache_isize_extended(struct inode *inode, loff_t from, loff_t to,
                              struct page *locked);
/* Set i_size, unmap and drop the pages past it (i_rwsem held). */
void truncate_setsize(struct inode *inode, loff_t newsize);
/* Drop clean, unmapped, unlocked pages of a range; returns the count. */
unsigned long invalidate_mapping_pages(struct address_space *mapping,
                                       pgoff_t start, pgoff_t end);

/* ------------------------------------------------------------ iov_iter */

struct iov_iter {
	const struct iovec *iov; /* current segment */
	unsigned long nr_segs;   /* segments left, current included */
	size_t iov_offset;       /* bytes consumed of the current segment */
	size_t count;            /* bytes left in total */
	bool kernel;             /* library memory: copies cannot fault */
};

void iov_iter_init(struct iov_iter *i, const struct iovec *iov,
                   unsigned long nr_segs, size_t count, size_t written);
static inline size_t iov_iter_count(const struct iov_iter *i) { return i->count; }
void iov_iter_advance(struct iov_iter *i, size_t bytes);
size_t iov_iter_single_seg_count(const struct iov_iter *i);
/* Prefault the first min(bytes, rest of the current segment) bytes.
 * Return: the length of the prefix that is readable (0: none is). */
size_t iov_iter_fault_in_readable(struct iov_iter *i, size_t bytes);
/* Faults must be disabled; never advances the iterator. */
size_t iov_iter_copy_from_user_atomic(struct page *page, struct iov_iter *i,
                                      unsigned long offset, size_t bytes);
/* May fault; no page lock may be held.  Advances. */
size_t copy_page_to_iter(struct page *page, size_t offset, size_t bytes,
                         struct iov_iter *i);
/* Check a vector (SPEC section 5): sums it into *count, -EINVAL on a
 * negative or wrapping length, cuts it at a bad later segment. */
int generic_segment_checks(const struct iovec *iov, unsigned long *nr_segs,
                           size_t *count);

/* -------------------------------------------------------------- uaccess */

void pagefault_disable(void);
void pagefault_enable(void);
bool pagefault_disabled(void);
/* Return the number of bytes NOT copied. */
size_t copy_from_user(void *to, const void *from, size_t n);
size_t copy_to_user(void *to, const void *from, size_t n);
size_t clear_user(void *to, size_t n);
/* Copy a user string: its length, count if it has no NUL in count
 * bytes, or -EFAULT (NULL included). */
long strncpy_from_user(char *dst, const char *src, long count);
int fault_in_pages_readable(const void *uaddr, size_t size);
/* Prefault up to two pages; return the readable prefix (0: none). */
size_t fault_in_readable_prefix(const void *uaddr, size_t size);
int fault_in_pages_writeable(void *uaddr, size_t size);

/* ---------------------------------------------------- inodes and files */

struct pw_iattr {
	unsigned valid; /* ATTR_* */
	mode_t mode;
	uid_t uid;
	gid_t gid;
	loff_t size;
	struct timespec atime, mtime;
};
#define ATTR_MODE 0x1
#define ATTR_UID 0x2
#define ATTR_GID 0x4
#define ATTR_SIZE 0x8
#define ATTR_ATIME 0x10
#define ATTR_MTIME 0x20

/* Callback for ->readdir; returns non-zero to stop. */
typedef int (*filldir_t)(void *ctx, const char *name, size_t len, uint64_t ino,
                         unsigned dtype);

struct inode_operations {
	/* -ENOENT if absent; *res holds a reference. */
	int (*lookup)(struct inode *dir, const char *name, size_t len,
	              struct inode **res);
	int (*create)(struct inode *dir, const char *name, size_t len, mode_t mode,
	              struct inode **res);
	int (*mkdir)(struct inode *dir, const char *name, size_t len, mode_t mode,
	             struct inode **res);
	int (*unlink)(struct inode *dir, const char *name, size_t len,
	              struct inode *victim);
	int (*rmdir)(struct inode *dir, const char *name, size_t len,
	             struct inode *victim);
	/* The target, if it exists, is replaced (the VFS has checked types).
	 * The VFS then sets the renamed inode's ctime under its i_rwsem. */
	int (*rename)(struct inode *odir, const char *oname, size_t olen,
	              struct inode *ndir, const char *nname, size_t nlen);
	/* Attribute changes arrive with the inode's i_rwsem held; the VFS
	 * sets i_ctime and marks the inode dirty after a successful call. */
	int (*setattr)(struct inode *inode, const struct pw_iattr *attr);
	int (*readdir)(struct inode *dir, void *ctx, filldir_t fill);
	/* Optional (else EPERM).  Make name in dir a symbolic link to target,
	 * a C string of 1 to PATH_MAX - 1 bytes (checked by the VFS; a
	 * filesystem that holds less refuses with -ENAMETOOLONG).  The new
	 * inode is S_IFLNK | 0777 with i_size = strlen(target).  dir's
	 * i_rwsem held; *res holds a reference. */
	int (*symlink)(struct inode *dir, const char *name, size_t len,
	               const char *target, struct inode **res);
	/* Optional (else EPERM).  Add name in dir for inode, an existing
	 * non-directory of the same superblock with links left.  The fs
	 * raises i_nlink and sets i_ctime; -EMLINK at its link limit.  dir's
	 * i_rwsem held, then inode's. */
	int (*link)(struct inode *inode, struct inode *dir, const char *name,
	            size_t len);
	/* Symlinks: copy the target into buf, at most size bytes and no NUL
	 * added (readlink(2)).  Return: the bytes copied (size means "maybe
	 * truncated"), or -errno.  No lock held: a target never changes. */
	int (*readlink)(struct inode *inode, char *buf, size_t size);
	/* Optional (else EOPNOTSUPP): extended attributes.  name is the
	 * whole name ("user.x"), checked by the VFS (1..255 bytes, a known
	 * namespace, the caller allowed); a filesystem refuses namespaces it
	 * does not keep with -EOPNOTSUPP.  getxattr: the value's length,
	 * copied into buf when size is not 0 (-ERANGE if it does not fit),
	 * -ENODATA if absent.  listxattr: the names, each NUL-terminated, by
	 * the same size rule.  setxattr: value NULL removes (-ENODATA if
	 * absent); flags XATTR_CREATE (-EEXIST) or XATTR_REPLACE (-ENODATA);
	 * -ENOSPC when it does not fit.  The inode's i_rwsem held; the VFS
	 * sets i_ctime after a successful set. */
	ssize_t (*getxattr)(struct inode *inode, const char *name, void *buf, size_t size);
	ssize_t (*listxattr)(struct inode *inode, char *buf, size_t size);
	int (*setxattr)(struct inode *inode, const char *name, const void *value,
	                size_t size, int flags);
};

struct super_operations {
	/* Write the inode's metadata (size, times) to the backing store. */
	int (*write_inode)(struct inode *inode, bool sync);
	/* Last reference gone and no links left (or unmount): free fs data. */
	void (*evict_inode)(struct inode *inode);
	/* After the VFS wrote the file's dirty pages back: make the data (and
	 * unless datasync, the metadata) durable. */
	int (*fsync)(struct inode *inode, bool datasync);
	int (*sync_fs)(struct super_block *sb, bool wait);
	void (*put_super)(struct super_block *sb);
	int (*statfs)(struct super_block *sb, struct statvfs *st);
};

struct inode {
	uint64_t i_ino;                      /* (C) */
	/* Mode and owner change only under i_rwsem (setattr; the type bits
	 * never change) but are read without it (path walks, permission
	 * checks, read and write): atomic. */
	_Atomic mode_t i_mode;               /* (A) written under i_rwsem */
	_Atomic uid_t i_uid;                 /* (A) written under i_rwsem */
	_Atomic gid_t i_gid;                 /* (A) written under i_rwsem */
	_Atomic unsigned i_nlink;            /* (A) */
	_Atomic loff_t i_size;               /* (A) written under i_rwsem and
	                                      * the page lock of the EOF page */
	struct timespec i_atime, i_mtime, i_ctime; /* (W), and read without
	                                      * i_rwsem: only through inode_time_get/set */
	uint64_t i_blocks;                   /* (W) 512-byte units */
	pthread_mutex_t i_rwsem;             /* the inode's write lock: only ever
	                                      * taken exclusive, so a mutex */
	_Atomic int i_count;                 /* (A) references */
	_Atomic uint32_t i_dio_count;        /* (A) ->read_direct calls in flight */
	_Atomic bool i_dirty;                /* (A) metadata to write back */
	_Atomic bool i_dirty_datasync;       /* (A) ... and it includes the size
	                                      * or block map: fdatasync writes it */
	_Atomic int64_t i_dirtied_when;      /* (A) ms, when nrdirty left 0 */
	struct super_block *i_sb;            /* (C) */
	struct address_space i_data;         /* the page cache */
	struct address_space *i_mapping;     /* (C) &i_data */
	const struct inode_operations *i_op; /* (C) */
	void *i_private;                     /* fs-private */
	struct inode *i_hash_next;           /* (S) superblock inode table */
	struct inode *i_lru_prev, *i_lru_next; /* (S) unused-inode LRU */
	bool i_on_lru;                       /* (S) */
};

/*
 * Inode times are set under i_rwsem but read without it: by write_inode
 * from fsync and the writeback thread, and by stat.  Each word is stored
 * and loaded whole (relaxed atomics, plain moves on x86), so a reader never
 * sees a torn second or nanosecond; like the kernel, it may see a new
 * tv_sec with an old tv_nsec, which write_inode and stat tolerate.
 */
static inline void
inode_time_set(struct timespec *slot, struct timespec v)
{
	__atomic_store_n(&slot->tv_sec, v.tv_sec, __ATOMIC_RELAXED);
	__atomic_store_n(&slot->tv_nsec, v.tv_nsec, __ATOMIC_RELAXED);
}

static inline struct timespec
inode_time_get(const struct timespec *slot)
{
	struct timespec v;
	v.tv_sec = __atomic_load_n(&slot->tv_sec, __ATOMIC_RELAXED);
	v.tv_nsec = __atomic_load_n(&slot->tv_nsec, __ATOMIC_RELAXED);
	return v;
}

struct file_system_type {
	const char *name;
	/* Fill sb (s_root, s_op, s_maxbytes, ...) from source and options. */
	int (*fill_super)(struct super_block *sb, const char *source,
	                  const char *options);
};

#define SB_RDONLY 0x1

struct super_block {
	const struct file_system_type *s_type; /* (C) */
	const struct super_operations *s_op;   /* (C) */
	struct inode *s_root;                  /* (C) after fill_super */
	loff_t s_maxbytes;                     /* (C) */
	unsigned long s_blocksize;             /* (C) */
	unsigned s_flags;                      /* (C) SB_* */
	dev_t s_dev;                           /* (C) st_dev of our files */
	void *s_fs_info;                       /* fs-private */
	struct block_device *s_bdev;           /* (C) block filesystems */
	_Atomic bool s_dying;                  /* (A) unmount is evicting all */
	_Atomic int s_active;                  /* (A) writeback thread users */
	/* Page counts of this filesystem's caches, as the global ones in
	 * pw_get_stats (pw_get_mount_stats adds the device cache's). */
	_Atomic long s_nr_cached, s_nr_dirty, s_nr_writeback, s_nr_mapped; /* (A) */
	_Atomic uint64_t s_written, s_write_ios, s_write_errors; /* (A) since mount */
	/* Unreferenced inodes stay cached (with their pages) on an LRU; past
	 * s_max_unused the oldest are written back and evicted.  0: keep all
	 * (ramfs, whose inodes are their only copy). */
	unsigned long s_max_unused;            /* (C) */
	unsigned long s_nr_unused;             /* (S) */
	struct inode *s_lru_head, *s_lru_tail; /* (S) oldest at the head */
	pthread_mutex_t s_inode_lock;          /* guards the inode table */
	struct inode **s_inodes;               /* (S) hash by i_ino (inode.c) */
	size_t s_inode_buckets;                /* (S) a power of two */
	size_t s_nr_hashed;                    /* (S) inodes in the table */
	struct inode *s_inode_one;             /* (S) the table without memory */
};

struct file {
	struct inode *f_inode;        /* (C) */
	struct address_space *f_mapping; /* (C) */
	int f_flags;                  /* (C) open flags */
	_Atomic int f_count;          /* (A) */
	pthread_mutex_t f_pos_lock;   /* serialises read/write/lseek */
	loff_t f_pos;                 /* (f_pos_lock) */
	_Atomic uint32_t f_wb_err_seq; /* (A) wb_err_seq already reported */
	bool f_readable, f_writable;  /* (C) from the access mode */
	bool f_pos_lock_ready;        /* f_pos_lock initialised (files are reused) */
	struct file_ra_state {
		_Atomic pgoff_t next;  /* index after the last readahead window */
		_Atomic unsigned size; /* current window, pages */
		_Atomic int around_miss; /* read-arounds not yet paid back by hits */
	} f_ra;                       /* (A) advisory */
};

/* Inode table of a superblock. */
struct inode *new_inode(struct super_block *sb, uint64_t ino,
                        const struct address_space_operations *aops);
/* Look up a cached inode by number; with a reference, or NULL. */
struct inode *ilookup(struct super_block *sb, uint64_t ino);
/* Publish a new inode in the table (after new_inode filled it). */
void insert_inode_hash(struct inode *inode);
void ihold(struct inode *inode);
void iput(struct inode *inode);
/* Metadata changed that reading the data needs (size, block map): fsync
 * and fdatasync write the inode. */
void mark_inode_dirty(struct inode *inode);
/* Only times or the like changed: fsync writes the inode, fdatasync not. */
void mark_inode_dirty_sync(struct inode *inode);
/* Take the inode's dirty state before writing it (write_inode). */
static inline bool
inode_test_clear_dirty(struct inode *inode)
{
	if (!atomic_load(&inode->i_dirty))
		return false;
	atomic_store(&inode->i_dirty_datasync, false);
	return atomic_exchange(&inode->i_dirty, false);
}
static inline void inode_lock(struct inode *i) { pthread_mutex_lock(&i->i_rwsem); }
static inline void inode_unlock(struct inode *i) { pthread_mutex_unlock(&i->i_rwsem); }
static inline loff_t i_size_read(struct inode *i) { return atomic_load(&i->i_size); }
static inline void i_size_write(struct inode *i, loff_t s) { atomic_store(&i->i_size, s); }

int register_filesystem(const struct file_system_type *fst);

/* -------------------------------------------------- generic write path */

ssize_t generic_perform_write(struct file *file, struct iov_iter *i, loff_t pos);
ssize_t generic_perform_write_2copy(struct file *file, struct iov_iter *i,
                                    loff_t pos);
int pagecache_write_begin(struct file *file, struct address_space *mapping,
                          loff_t pos, unsigned len, unsigned flags,
                          struct page **pagep, void **fsdata);
int pagecache_write_end(struct file *file, struct address_space *mapping,
                        loff_t pos, unsigned len, unsigned copied,
                        struct page *page, void *fsdata);
/* The whole buffered write: limits, O_APPEND, *ppos, O_SYNC. */
ssize_t generic_file_write_iter(struct file *file, struct iov_iter *from,
                                loff_t *ppos);
ssize_t generic_file_read_iter(struct file *file, struct iov_iter *to,
                               loff_t *ppos);
/* Read count bytes at pos into buf (the caller's memory) without filling
 * the cache: pages in it are copied, the rest comes from ->read_direct
 * (pw_pread_nocache).  Without ->read_direct, a buffered read. */
ssize_t file_read_nocache(struct file *file, void *buf, size_t count, loff_t pos);
/* The byte offset of the first page of [from, to) in the cache (from
 * itself if its page is), or to when none is. */
loff_t filemap_first_cached(struct address_space *mapping, loff_t from, loff_t to);
/* Wait until no ->read_direct of the inode is in flight (truncate). */
void inode_dio_wait(struct inode *inode);
/* Raise i_size to size through a len-0 write_begin/write_end pair. */
int generic_cont_expand_simple(struct inode *inode, loff_t size);

/* libfs: for filesystems without backing store (ramfs). */
int simple_readpage(struct file *file, struct page *page);
int simple_write_begin(struct file *file, struct address_space *mapping,
                       loff_t pos, unsigned len, unsigned flags,
                       struct page **pagep, void **fsdata);
int simple_write_end(struct file *file, struct address_space *mapping,
                     loff_t pos, unsigned len, unsigned copied,
                     struct page *page, void *fsdata);

/* Dirty throttling hook, called once per page written. */
void balance_dirty_pages_ratelimited(struct address_space *mapping);

/* -------------------------------------------------------------- logging */

void pw_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif /* PAGEWRIGHT_FS_H */

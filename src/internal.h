/*
 * internal.h - what crosses modules inside the library and is not part of
 * the filesystem API.  Symbols here take the pw__ prefix.
 */
#ifndef PW_INTERNAL_H
#define PW_INTERNAL_H

#include <pagewright/fs.h>
#include <pagewright/pagewright.h>
#include <stdio.h>
#include <unistd.h>

#define PW_MIN(a, b) ((a) < (b) ? (a) : (b))
#define PW_MAX(a, b) ((a) > (b) ? (a) : (b))
#define PW_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* The IDs pagewright acts with (the kernel's current_fsuid()): the
 * thread's own if pw_set_thread_creds set them, else the process's. */
extern __thread bool pw__tcred_set;
extern __thread uid_t pw__tcred_uid;
extern __thread gid_t pw__tcred_gid;
static inline uid_t
pw__current_uid(void)
{
	return pw__tcred_set ? pw__tcred_uid : geteuid();
}
static inline gid_t
pw__current_gid(void)
{
	return pw__tcred_set ? pw__tcred_gid : getegid();
}

/* Library start-up: pool, fault handler, root filesystem.  Idempotent. */
void pw__init(void);

/* ---- built-in filesystem types (src/fs/) */
extern const struct file_system_type pw__ramfs_type;
extern const struct file_system_type pw__hostfs_type;
extern const struct file_system_type pw__ext2_type;
const struct file_system_type *pw__find_filesystem(const char *name);
void pw__for_each_inode(struct super_block *sb,
                        void (*fn)(struct inode *, void *), void *arg);
void pw__evict_all(struct super_block *sb);
/* Free the inode table of a superblock being freed (inode.c). */
void pw__inode_table_free(struct super_block *sb);
/* Does the comma-separated option list contain this option? */
bool pw__has_option(const char *options, const char *opt);

/* ---- filemap (src/mm/filemap.c) */
ssize_t pw__filemap_pin(struct file *file, loff_t pos, size_t count, struct page **pages,
                        unsigned max, unsigned *npages);

/* ---- pool (src/mm/pool.c) */
int pw__pool_init(void);
int pw__pool_fd(void);
/* Fill pool memory from fd at off without touching it from user space:
 * iov must be whole spans of pool frames (page_address of pages the
 * caller holds).  Return: 0, -ENOTSUP when iov is not pool memory or the
 * kernel cannot splice from fd, or -EIO when fd ends early or fails (the
 * frames may hold part of the data); either way the caller reads it
 * itself. */
int pw__pool_read_fd(int fd, uint64_t off, const struct iovec *iov, int cnt);
struct page *pw__pfn_to_page(unsigned long pfn);
/* Allocate one frame, preferring hint_pfn + 1 so a file's pages are
 * contiguous.  Returns a page with refcount 1, or NULL. */
struct page *pw__alloc_page(long hint_pfn);
/* Map the page's frame (and its group) for access from user space;
 * before the library's own loads and stores to it (pool.c).  The _copy
 * form, before a copy into or out of the page for a user (or a zeroing of
 * it), also tells the pool's warmer that users are at work there. */
void pw__page_populate(struct page *page);
void pw__page_populate_copy(struct page *page);
/* The pool's warmer (pool.c): start it (pw_mount), wake it (any context),
 * and, for tests, whether a frame may be handed out now.  kmem.c keeps
 * its spare chunks filled from the warmer. */
void pw__pool_warm_start(void);
void pw__pool_warm_wake(void);
bool pw__pool_frame_free(unsigned long pfn);
void pw__kmem_fill_spares(void);
void pw__free_page(struct page *page);
/* Private futex wait (while *word == val) and wake-all (pool.c). */
void pw__futex_wait(_Atomic uint32_t *word, uint32_t val);
void pw__futex_wake_all(_Atomic uint32_t *word);
/* Futex bit locks (pool.c): the page lock, writeback, the buffer lock. */
void pw__wait_on_bit(_Atomic uint32_t *word, uint32_t bit, uint32_t waiters_bit,
                     bool take);
void pw__clear_bit_wake(_Atomic uint32_t *word, uint32_t bit, uint32_t waiters_bit);

/* ---- writeback (src/mm/writeback.c) */
int64_t pw__now_ms(void);
int64_t pw__now_ns(void);
uint64_t pw__parse_bytes(const char *s);
void pw__writeback_init(void);
uint64_t pw__dirty_limit_pages(void);
uint64_t pw__dirty_background_pages(void);
void pw__wakeup_flusher(void);
bool pw__flusher_alive(void);
/* PAGEWRIGHT_WRITEPAGES=0 turns ->writepages batching off (comparison). */
extern bool pw__writepages_enabled;
/* PAGEWRIGHT_START_IO=0: background writeback leaves written runs in the
 * host's cache instead of starting their disk write (comparison). */
extern bool pw__start_io_enabled;
/* The mounted superblocks, each with s_active raised; NULL-terminated,
 * free() it after pw__sb_put on each (vfs.c). */
struct super_block **pw__get_supers(void);
void pw__sb_put(struct super_block *sb);

/* ---- reclaim (src/mm/reclaim.c) */
void pw__reclaim_init(void);
void pw__lru_add(struct page *page);
void pw__lru_del(struct page *page);
/* Remove a locked, clean, unmapped page that nobody else references
 * (index.c); false if someone does. */
bool pw__remove_mapping(struct page *page);
void pw__reclaim_for_alloc(void);
/* Index tags (index.c): set the page's DIRTY/WRITEBACK tags from its
 * flags after PG_dirty changed; set PG_writeback with its tag (returns
 * whether it was set); drop the WRITEBACK tag before PG_writeback is
 * cleared. */
void pw__page_tag_sync(struct page *page);
bool pw__page_writeback_set(struct page *page);
void pw__page_writeback_untag(struct page *page);
uint64_t pw__mem_limit_pages(void);

/* Background writeback asks the host to start writing a run of at least
 * this many bytes at once (hostfs, block devices: sync_file_range). */
#define PW_START_IO_MIN (128u << 10)

/* ---- statistics (atomic counters) */
struct pw__counters {
	_Atomic uint64_t cached, dirty, writeback, mapped, hits, misses, faults,
	    fault_around, short_copies, write_retries, pool_pages, allocated;
	_Atomic uint64_t written, writeback_ios, write_errors, throttle_ns, throttled;
	_Atomic uint64_t reclaimed, reclaim_unmaps, map_count, map_drops, map_dropped_vmas,
	    refaults, stuck_pages, warmed;
};
extern struct pw__counters pw__stat;
#define PW_STAT_ADD(f, n) atomic_fetch_add_explicit(&pw__stat.f, (n), memory_order_relaxed)
#define PW_STAT_SUB(f, n) atomic_fetch_sub_explicit(&pw__stat.f, (n), memory_order_relaxed)
/* The superblock whose counters a page of this mapping moves, or NULL. */
static inline struct super_block *
pw__mapping_sb(const struct address_space *m)
{
	return m && m->host ? m->host->i_sb : NULL;
}
#define PW_SB_ADD(sb, f, n)                                                    \
	do {                                                                       \
		struct super_block *sb_ = (sb);                                        \
		if (sb_)                                                               \
			atomic_fetch_add_explicit(&sb_->f, (n), memory_order_relaxed);     \
	} while (0)

/* ---- signal-safe allocator (src/mm/kmem.c): never calls malloc, so the
 * fault handler may use it. */
void *pw__kzalloc(size_t size);
void pw__kfree(void *p, size_t size);

/* ---- user mappings (src/mm/mmap.c) */
enum pw_pte {
	PTE_NONE = 0,   /* PROT_NONE reservation */
	PTE_RO,         /* pool frame mapped read-only */
	PTE_RW,         /* pool frame mapped read-write (shared, dirty) */
	PTE_COW,        /* private copy made by the kernel's COW: ours alone */
	PTE_GONE,       /* as PTE_NONE, but reclaim evicted the page mapped
	                 * here: a fault on it is a refault (mmap.c) */
};
/* Nothing of the file is mapped at this vma page. */
static inline bool
pte_empty(uint8_t pte)
{
	return pte == PTE_NONE || pte == PTE_GONE;
}

struct vm_area_struct {
	uintptr_t vm_start, vm_end;     /* (C) user addresses */
	pgoff_t vm_pgoff;               /* (C) file offset of vm_start, pages */
	int vm_prot;                    /* (C) PROT_* */
	bool vm_shared;                 /* (C) MAP_SHARED */
	struct file *vm_file;           /* (C) holds a reference */
	pthread_mutex_t vm_lock;        /* guards vm_pte and the real mappings */
	uint8_t *vm_pte;                /* (vm_lock) enum pw_pte per page */
	struct vm_area_struct *vm_next; /* (M) all vmas, sorted by address */
	struct vm_area_struct *vm_i_next; /* (R) mapping->i_mmap list */
	_Atomic uint64_t vm_last_fault; /* (A) fault clock at its last fault:
	                                 * the coldest are dropped first near
	                                 * the mapping-count limit */
	unsigned vm_drop_round;         /* (mmap.c maps_busy) last drop pass
	                                 * that visited it */
};

/* Pages mapped per fault (fault-around), and read ahead on a fault miss.
 * The kernel maps 16; a fault here is a signal round trip (about 20 us on
 * the development machines), so 64 pays: first-touch reads cost 1.2x the
 * kernel's instead of 1.7x. */
#define PW_FAULT_AROUND 64

/* Page-fault entry from the signal handler.  Returns 0 if served,
 * SIGSEGV if the address is not a valid access to a pagewright mapping,
 * SIGBUS if it lies past end of file or the read failed. */
int pw__handle_mm_fault(uintptr_t addr, bool write);
/* Write-protect every user mapping of a locked page (writeback); false
 * if some mapping could not be (mprotect failed). */
bool pw__page_mkclean(struct page *page);
/* Unmap every user mapping of a locked page (eviction, truncation). */
void pw__page_unmap(struct page *page);
/* Unmap every user mapping of nr locked pages of one mapping, sorted by
 * index, with one call per run of consecutive pages of a vma (reclaim). */
void pw__pages_unmap(struct address_space *mapping, struct page **pages, unsigned nr);
/* The mapping-count limit (vm.max_map_count): read it at start-up, and
 * drop cold user mappings when the process nears it.  pw__mm_maps_check
 * is called where no page lock is held (the writeback thread). */
void pw__mm_maps_init(void);
void pw__mm_maps_check(void);
long pw__max_map_count(void);
void *pw__do_mmap(void *addr, size_t length, int prot, int flags,
                  struct file *file, off_t offset, int *errp);
int pw__do_munmap(void *addr, size_t length);
void pw__test_munmap_all(void);
int pw__do_msync(void *addr, size_t length, int flags);
int pw__do_madvise(void *addr, size_t length, int advice);
/* fork(): the parent waits for faults in flight; the child detaches from
 * the parent's cache (its mapped pages become private copies). */
void pw__mm_atfork_prepare(void);
void pw__mm_atfork_parent(void);
void pw__mm_atfork_child(void);
extern _Atomic bool pw__forked_child;

/* ---- filemap internals */
void pw__account_page_dirtied(struct address_space *mapping);
void pw__account_page_cleaned(struct address_space *mapping);
/* A write fault on a shared mapping, before it looks the page up. */
void pw__balance_dirty_fault(struct address_space *mapping);
int pw__filemap_fault_page(struct address_space *mapping, struct file *file,
                           pgoff_t index, struct page **pagep);
void pw__zero_eof_tail(struct inode *inode, loff_t newsize);
#include <sys/resource.h>
rlim_t pw__fsize_limit(void);
/* The time a change is stamped with: CLOCK_REALTIME_COARSE, the clock the
 * kernel's current_time() reads (inode.c). */
void pw__current_time(struct timespec *ts);
/* Write back one locked page if dirty; always unlocks it. */
int pw__writeout_locked_page(struct page *page, struct writeback_control *wbc);
int pw__vfs_fsync_range(struct file *file, loff_t start, loff_t end,
                        bool datasync);

/* ---- uaccess internals (src/mm/uaccess.c) */
int pw__uaccess_init(void);

/* ---- test hooks: set only by tests.  Each is called, if set, at the
 * point its name says. */
struct pw__test_hooks {
	/* generic_perform_write and 2copy: after the prefault of a step,
	 * before write_begin / grabbing the page. */
	void (*after_prefault)(struct file *file, loff_t pos, size_t bytes);
	/* generic_perform_write: the page is locked, the copy comes next. */
	void (*after_write_begin)(struct file *file, loff_t pos, size_t bytes);
	/* pagecache_isize_extended: i_size has grown, the old EOF page is
	 * not write-protected yet. */
	void (*isize_extended)(struct inode *inode, loff_t from, loff_t to);
	/* write_cache_pages: a batch of pages is unlocked and under
	 * writeback, and is about to be written. */
	void (*before_writeback_io)(struct address_space *mapping);
	/* mmap.c, before each page-table call (op: 'm' map, 'p' protect,
	 * 'z' zap): return an errno to make the call fail with it. */
	int (*pte_call)(int op);
	/* hostfs, before each write to a host file: return -errno to make
	 * it fail with that (as an EIO from the host would). */
	int (*host_write)(struct inode *inode);
	/* blockdev_read_direct: blocks are mapped, the device read comes
	 * next (tests widen the window truncate must not free them in). */
	void (*direct_read_mapped)(struct inode *inode);
	/* pool.c's warmer: frame is about to be touched; it stays in the
	 * free bitmap, so it may be handed out meanwhile. */
	void (*pool_warm_touch)(void *frame);
};
extern struct pw__test_hooks pw__hooks;
/* Evict one page of an open file: write it back if dirty, unmap it and
 * drop it from the cache.  -EBUSY if it cannot be dropped (ramfs). */
int pw__test_evict(int fd, off_t offset);
/* Evict every page of an open file that can be. */
int pw__test_evict_all(int fd);
/* Unmap every mapping and close every descriptor: the test runner's
 * cleanup before it unmounts and checks what a test left mounted. */
void pw__test_release_all(void);
struct file *pw__fget(int fd);
void pw__fput(struct file *file);
/* Set the mapping-count limit (0: back to vm.max_map_count) and forget
 * the estimate, as if at start-up with PAGEWRIGHT_MAX_MAP_COUNT. */
void pw__test_set_max_map_count(long limit);
/* The process's kernel mappings now (lines of /proc/self/maps). */
long pw__count_kernel_maps(void);
/* 1 if the copy routines were built to fault under page locks
 * (PW_TEST_FAULTING_COPY), a test-only build that must deadlock. */
int pw__test_faulting_copy_build(void);

#endif /* PW_INTERNAL_H */

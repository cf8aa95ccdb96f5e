/*
 * filemap.c - the buffered write path of the seed (SPEC sections 2-4 and
 * 8), the read path, and the page-cache side of the fault path.
 *
 * Writes: generic_file_write_iter takes i_rwsem, applies the limits and
 * O_APPEND, and runs generic_perform_write when the filesystem has
 * write_begin/write_end, or generic_perform_write_2copy when it has only
 * the legacy prepare_write/commit_write.  Internal users (expanding
 * truncate) call pagecache_write_begin/end, which adapt the legacy pair.
 *
 * The rule that shapes all of it (SPEC section 1): user memory is touched
 * with faults enabled only while holding no more than i_rwsem.  Under a
 * page lock copies are atomic and may be short; a short copy is a normal
 * outcome, never garbage.  The call chains of the deadlocks this prevents
 * are in uaccess.c and docs/LOCKING.md.
 *
 * Page state, and who moves it (numbered invariants cited in the code):
 *
 *   (absent) --grab_cache_page_write_begin / readahead--> locked, !uptodate
 *   !uptodate --readpage / write_end with a full copy--> uptodate
 *   uptodate --write_end, write fault--> dirty
 *   dirty --clear_page_dirty_for_io + writepage--> writeback --> clean
 *   clean, unmapped --invalidate / truncate--> (absent)
 *
 *  (1) A page is uptodate only if every byte is valid: a concurrent read
 *      may copy it out at once.
 *  (2) i_size is raised only under the page lock of the page that holds
 *      the new EOF, and never covers bytes write_end did not accept.
 *  (3) The iterator and *ppos advance only by accepted bytes.
 *  (4) A page under writeback does not change: whoever would change its
 *      bytes (write_begin, a write fault, truncation) waits for the
 *      writeback, and its user mappings are read-only (stable pages).
 *  (5) A thread holding pages under writeback that are not written yet
 *      (a writeback batch) waits for nothing before it writes them.
 *  (6) At every instant a page whose data is not yet written is dirty or
 *      under writeback (start_writeback sets PG_writeback first): fsync
 *      writes the dirty ones and waits for the others, without locks,
 *      finding both by the index's tags (index.c, invariant 5).
 *
 * Writeback (the end of the file): do_writepages, one thread per mapping,
 * runs ->writepages or write_cache_pages with a page-at-a-time batch;
 * write_cache_pages hands each dirty page, write-protected and under
 * writeback, to the batch, which unlocks it and writes runs of pages with
 * one I/O.  Throttling: balance_dirty_pages_ratelimited (writers) and
 * pw__balance_dirty_fault (write faults) wait for the writeback thread.
 *
 * Lock ordering:
 *   i_rwsem            (generic_file_write_iter, truncate)
 *     -> m_wb_state    (do_writepages: throttled writers under i_rwsem)
 *       -> page lock   (write_begin .. write_end, write_cache_pages)
 *         -> i_pages_lock (index updates)
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

struct pw__test_hooks pw__hooks;

#define RA_MIN 4   /* first readahead window, pages */
#define RA_MAX 64  /* largest window */

/* --------------------------------------------------------- accounting */

/* Only pages that writeback can clean count as dirty for the limits and
 * the statistics (ramfs pages are dirty for good, as in Linux, where
 * they are not accounted either); nrdirty counts every dirty page. */
static bool
mapping_can_writeback(const struct address_space *mapping)
{
	return !mapping->unevictable &&
	       (mapping->a_ops->writepage || mapping->a_ops->writepages);
}

void
pw__account_page_dirtied(struct address_space *mapping)
{
	if (atomic_fetch_add(&mapping->nrdirty, 1) == 0 && mapping->host)
		atomic_store_explicit(&mapping->host->i_dirtied_when, pw__now_ms(),
		                      memory_order_relaxed);
	if (!mapping_can_writeback(mapping))
		return;
	PW_STAT_ADD(dirty, 1);
	PW_SB_ADD(pw__mapping_sb(mapping), s_nr_dirty, 1);
}

void
pw__account_page_cleaned(struct address_space *mapping)
{
	atomic_fetch_sub(&mapping->nrdirty, 1);
	if (!mapping_can_writeback(mapping))
		return;
	PW_STAT_SUB(dirty, 1);
	PW_SB_ADD(pw__mapping_sb(mapping), s_nr_dirty, -1);
}

/* A throttled writer whose wait sees the dirty count not fall for this
 * long writes back a chunk of its own file (cyclically, where its last
 * chunk stopped) instead of waiting on. */
#define THROTTLE_PATIENCE_MS 100
#define THROTTLE_CHUNK 1024

static void
throttle_own_chunk(struct address_space *mapping)
{
	struct writeback_control wbc = {.range_cyclic = true, .nr_to_write = THROTTLE_CHUNK};
	do_writepages(mapping, &wbc);
}

/*
 * Wait while the dirty pages are over limit, for the writeback thread:
 * 1 ms naps, waking it each time.  A writer (may_write) stops once its own
 * file has nothing dirty, and writes back a chunk of it itself when the
 * thread is gone or made no progress for THROTTLE_PATIENCE_MS; a fault
 * (never writes) just goes on after that long.  The time counts as
 * throttling in pw_get_stats.
 */
static void
throttle_wait(struct address_space *mapping, uint64_t dirty, uint64_t limit, bool may_write)
{
	struct timespec t_start, t_end;
	clock_gettime(CLOCK_MONOTONIC, &t_start);
	int64_t progress = pw__now_ms();
	uint64_t lowest = dirty;
	while (dirty >= limit) {
		bool stalled = pw__now_ms() - progress >= THROTTLE_PATIENCE_MS;
		if (may_write && atomic_load(&mapping->nrdirty) == 0)
			break;
		if (!may_write && stalled)
			break;
		if (may_write && (stalled || !pw__flusher_alive())) {
			throttle_own_chunk(mapping);
			progress = pw__now_ms();
		} else {
			struct timespec ms = {0, 1000000};
			nanosleep(&ms, NULL);
			pw__wakeup_flusher();
		}
		dirty = atomic_load_explicit(&pw__stat.dirty, memory_order_relaxed);
		if (dirty < lowest) {
			lowest = dirty;
			progress = pw__now_ms();
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t_end);
	int64_t ns = (int64_t)(t_end.tv_sec - t_start.tv_sec) * 1000000000 +
	             (t_end.tv_nsec - t_start.tv_nsec);
	PW_STAT_ADD(throttle_ns, (uint64_t)(ns > 0 ? ns : 0));
	PW_STAT_ADD(throttled, 1);
}

/**
 * balance_dirty_pages_ratelimited - the dirty-throttling hook.
 * Called once per page step of a buffered write, with i_rwsem held and no
 * page locked.  Above the background threshold it wakes the writeback
 * thread.  Above the hard limit the writer sleeps, a millisecond at a
 * time, until the writeback thread has brought the dirty pages under the
 * limit (the kernel's I/O-less throttling: one thread writes, in large
 * batches, and writers are paced to what the device takes).  If that
 * thread makes no progress for THROTTLE_PATIENCE_MS (or there is none),
 * the writer writes back a chunk of its own file.  So no writer can fill
 * memory with dirty pages.  The time spent here is the throttling time of
 * pw_get_stats.
 */
void
balance_dirty_pages_ratelimited(struct address_space *mapping)
{
	if (!mapping_can_writeback(mapping))
		return;
	uint64_t dirty = atomic_load_explicit(&pw__stat.dirty, memory_order_relaxed);
	uint64_t limit = pw__dirty_limit_pages();
	if (dirty < pw__dirty_background_pages())
		return;
	pw__wakeup_flusher();
	if (dirty < limit || atomic_load(&mapping->nrdirty) == 0)
		return;
	throttle_wait(mapping, dirty, limit, true);
}

/**
 * pw__balance_dirty_fault - the throttle for stores through shared
 * mappings (Linux calls balance_dirty_pages from its fault path too): a
 * write fault that is about to dirty a page waits while the dirty pages
 * are over the limit, for the writeback thread only.  It cannot write
 * back itself (the fault handler never writes), so after
 * THROTTLE_PATIENCE_MS without progress it goes on.
 * Context: the fault handler, mmap_lock held for read, no page lock; the
 * writeback thread needs nothing the faulting thread may hold (it may
 * hold some i_rwsem: writeback never takes one).
 */
void
pw__balance_dirty_fault(struct address_space *mapping)
{
	if (!mapping_can_writeback(mapping))
		return;
	uint64_t dirty = atomic_load_explicit(&pw__stat.dirty, memory_order_relaxed);
	uint64_t limit = pw__dirty_limit_pages();
	if (dirty < pw__dirty_background_pages())
		return;
	pw__wakeup_flusher();
	if (dirty < limit || !pw__flusher_alive())
		return;
	throttle_wait(mapping, dirty, limit, false);
}

void
mapping_set_error(struct address_space *mapping, int err)
{
	if (err >= 0)
		return;
	atomic_store(&mapping->wb_err, -err);
	atomic_fetch_add(&mapping->wb_err_seq, 1);
	PW_STAT_ADD(write_errors, 1);
	struct super_block *sb = pw__mapping_sb(mapping);
	if (sb)
		atomic_fetch_add(&sb->s_write_errors, 1);
}

/* --------------------------------------------------------- read side */

/* Hand a batch of new locked pages (consecutive indices) to the
 * filesystem: one ->readahead call, or readpage each. */
static void
read_batch(struct address_space *mapping, struct file *file, struct page **pages,
           unsigned n)
{
	if (n == 0)
		return;
	if (mapping->a_ops->readahead && n > 1)
		mapping->a_ops->readahead(file, mapping, pages, n);
	else
		for (unsigned k = 0; k < n; k++)
			mapping->a_ops->readpage(file, pages[k]);
	for (unsigned k = 0; k < n; k++)
		put_page(pages[k]);
}

/* Start reads of the absent pages in [index, index+nr), stopping at EOF.
 * New pages go into the cache locked; each run of consecutive new pages
 * is read as a batch, and the reads unlock them when done. */
static void
page_cache_ra(struct address_space *mapping, struct file *file, pgoff_t index,
              unsigned nr)
{
	loff_t isize = i_size_read(mapping->host);
	struct page *batch[PW_FAULT_AROUND];
	unsigned n = 0;
	if (isize == 0)
		return;
	pgoff_t last = (pgoff_t)(isize - 1) >> PAGE_SHIFT;
	for (pgoff_t pg = index; pg < index + nr && pg <= last; pg++) {
		struct page *page = find_get_page(mapping, pg);
		if (page) {
			put_page(page);
			read_batch(mapping, file, batch, n);
			n = 0;
			continue;
		}
		page = page_cache_alloc(mapping, pg);
		if (!page)
			break;
		atomic_fetch_or(&page->flags, PG_locked);
		if (add_to_page_cache_locked(page, mapping, pg) != 0) {
			atomic_fetch_and(&page->flags, ~(uint32_t)PG_locked);
			put_page(page);
			read_batch(mapping, file, batch, n);
			n = 0;
			continue;
		}
		batch[n++] = page;
		if (n == PW_ARRAY_SIZE(batch)) {
			read_batch(mapping, file, batch, n);
			n = 0;
		}
	}
	read_batch(mapping, file, batch, n);
}

/* Lock a referenced page and make it uptodate.  Return: 0 with the page
 * locked; -EAGAIN if it left the mapping (look it up again; the page is
 * released); -EIO if the read failed (released). */
static int
lock_page_uptodate(struct address_space *mapping, struct file *file,
                   struct page *page)
{
	lock_page(page);
	for (int tries = 0;; tries++) {
		if (page->mapping != mapping) {
			unlock_page(page);
			put_page(page);
			return -EAGAIN;
		}
		if (PageUptodate(page))
			return 0;
		if (tries > 0) {
			unlock_page(page);
			put_page(page);
			return -EIO;
		}
		ClearPageError(page);
		int err = mapping->a_ops->readpage(file, page);
		if (err == AOP_TRUNCATED_PAGE) {
			put_page(page);
			return -EAGAIN;
		}
		lock_page(page);
	}
}

/**
 * pw__filemap_fault_page - the page a fault needs, locked and uptodate.
 * A miss reads a window of pages around it, so that fault-around finds
 * neighbours to map.  A hit marks the page accessed (it was used before,
 * by a read or another mapping); a page just read in is not, like the
 * neighbours fault-around maps with it, so the pages of a window age
 * together (a refault marks it: map_around, mmap.c).
 * Context: mmap_lock held for read, no page lock.
 */
int
pw__filemap_fault_page(struct address_space *mapping, struct file *file,
                       pgoff_t index, struct page **pagep)
{
	for (;;) {
		struct page *page = find_get_page(mapping, index);
		if (page)
			mark_page_accessed(page);
		else {
			PW_STAT_ADD(misses, 1);
			page_cache_ra(mapping, file, index & ~(pgoff_t)(PW_FAULT_AROUND - 1),
			              PW_FAULT_AROUND);
			page = find_get_page(mapping, index);
			if (!page) {
				/* Raced with truncation, or out of memory. */
				if (index >= (pgoff_t)((i_size_read(mapping->host) +
				                        (loff_t)PAGE_SIZE - 1) >> PAGE_SHIFT))
					return -EFAULT;
				page = grab_cache_page_write_begin(mapping, index, 0);
				if (!page)
					return -ENOMEM;
				unlock_page(page);
			}
		}
		int err = lock_page_uptodate(mapping, file, page);
		if (err == -EAGAIN)
			continue;
		if (err)
			return err;
		*pagep = page;
		return 0;
	}
}

int
read_mapping_page(struct address_space *mapping, pgoff_t index,
                  struct file *file, struct page **pagep)
{
	struct page *page;
	int err = pw__filemap_fault_page(mapping, file, index, &page);
	if (err)
		return err;
	unlock_page(page);
	*pagep = page;
	return 0;
}

/* Readahead decision for a miss at index: sequential misses double the
 * window, others start small. */
static unsigned
ra_window(struct file *file, pgoff_t index)
{
	if (!file)
		return RA_MIN;
	pgoff_t next = atomic_load_explicit(&file->f_ra.next, memory_order_relaxed);
	unsigned size = atomic_load_explicit(&file->f_ra.size, memory_order_relaxed);
	size = (index == next && size) ? PW_MIN(size * 2, RA_MAX) : RA_MIN;
	atomic_store_explicit(&file->f_ra.size, size, memory_order_relaxed);
	atomic_store_explicit(&file->f_ra.next, index + size, memory_order_relaxed);
	return size;
}

/* A referenced, uptodate page at index for reading; NULL with *err set. */
static struct page *
filemap_get_read_page(struct file *file, pgoff_t index, int *err)
{
	struct address_space *mapping = file->f_mapping;
	for (;;) {
		struct page *page = find_get_page(mapping, index);
		if (!page) {
			PW_STAT_ADD(misses, 1);
			page_cache_ra(mapping, file, index, ra_window(file, index));
			page = find_get_page(mapping, index);
			if (!page) {
				/* Evicted again before we got it, truncated, or no
				 * memory: only the last two end the read. */
				loff_t isize = i_size_read(mapping->host);
				if ((loff_t)index << PAGE_SHIFT >= isize)
					return NULL;
				page = grab_cache_page_write_begin(mapping, index, 0);
				if (!page) {
					*err = -ENOMEM;
					return NULL;
				}
				unlock_page(page);
			}
		} else if (PageUptodate(page)) {
			PW_STAT_ADD(hits, 1);
			mark_page_accessed(page);
			/* Reaching the end of the last window reads the next. */
			if (index + 1 == atomic_load_explicit(&file->f_ra.next,
			                                      memory_order_relaxed))
				page_cache_ra(mapping, file, index + 1, ra_window(file, index + 1));
			return page;
		}
		if (PageUptodate(page))
			return page;
		int e = lock_page_uptodate(mapping, file, page);
		if (e == -EAGAIN)
			continue;
		if (e) {
			*err = e;
			return NULL;
		}
		unlock_page(page);
		return page;
	}
}

/*
 * A large read of cached pages: the uptodate pages that follow `page` in
 * the file and in the pool (consecutive frames, as the pool hands files
 * contiguous runs) are copied with it in one go, and found with one index
 * lookup.  Up to want more bytes, none past isize.  Returns how many
 * pages it took (referenced, in run[]) and adds their bytes to *nr.
 */
enum { READ_RUN = 31 };
static unsigned
read_run(struct file *file, struct page *page, loff_t isize, size_t want,
         struct page **run, size_t *nr)
{
	struct address_space *mapping = file->f_mapping;
	pgoff_t index = page->index;
	unsigned got = find_get_pages(mapping, index + 1, READ_RUN, run), n = 0;
	loff_t end = ((loff_t)index + 1) << PAGE_SHIFT;
	while (n < got && want > 0 && end < isize && run[n]->index == index + 1 + n &&
	       page_to_pfn(run[n]) == page_to_pfn(page) + 1 + n && PageUptodate(run[n])) {
		size_t bytes = PW_MIN(PW_MIN((size_t)PAGE_SIZE, want), (size_t)(isize - end));
		mark_page_accessed(run[n]);
		*nr += bytes;
		want -= bytes;
		end += (loff_t)bytes;
		n++;
	}
	for (unsigned k = n; k < got; k++)
		put_page(run[k]);
	if (n) {
		PW_STAT_ADD(hits, n);
		/* the last page of a readahead window starts the next one */
		pgoff_t next = atomic_load_explicit(&file->f_ra.next, memory_order_relaxed);
		if (next > index + 1 && next <= index + 1 + n)
			page_cache_ra(mapping, file, next, ra_window(file, next));
	}
	return n;
}

/*
 * One step of a read at pos of at most count bytes: the uptodate page
 * holding pos (referenced), *nr the bytes of it the step takes (to the
 * page's end, count or end of file) and *isize the file size they were
 * cut by.  NULL at end of file, or with *err set.
 */
static struct page *
read_page_at(struct file *file, loff_t pos, size_t count, size_t *nr, loff_t *isize,
             int *err)
{
	struct inode *inode = file->f_inode;
	if (pos >= i_size_read(inode))
		return NULL;
	struct page *page = filemap_get_read_page(file, (pgoff_t)pos >> PAGE_SHIFT, err);
	if (!page)
		return NULL;
	/* i_size is read after the page is uptodate (truncate race). */
	*isize = i_size_read(inode);
	if (pos >= *isize) {
		put_page(page);
		return NULL;
	}
	size_t offset = (size_t)pos & (PAGE_SIZE - 1);
	*nr = PW_MIN(PW_MIN(PAGE_SIZE - offset, (size_t)(*isize - pos)), count);
	return page;
}

/**
 * generic_file_read_iter - read from the page cache into the iterator.
 * Context: no locks; copies to user memory with faults enabled, holding
 * only a page reference (the destination may map the same page).
 * Return: bytes read, or -errno if none.
 */
ssize_t
generic_file_read_iter(struct file *file, struct iov_iter *to, loff_t *ppos)
{
	loff_t pos = *ppos;
	ssize_t done = 0;
	int err = 0;
	if (pos < 0)
		return -EINVAL;
	while (iov_iter_count(to) > 0) {
		size_t offset = (size_t)pos & (PAGE_SIZE - 1), nr;
		loff_t isize;
		struct page *page = read_page_at(file, pos, iov_iter_count(to), &nr, &isize, &err);
		if (!page)
			break;
		struct page *run[READ_RUN];
		unsigned nrun = 0;
		if (offset + nr == PAGE_SIZE && iov_iter_count(to) > nr)
			nrun = read_run(file, page, isize, iov_iter_count(to) - nr, run, &nr);
		size_t copied = copy_page_to_iter(page, offset, nr, to);
		put_page(page);
		for (unsigned k = 0; k < nrun; k++)
			put_page(run[k]);
		pos += (loff_t)copied;
		done += (ssize_t)copied;
		if (copied < nr) {
			err = -EFAULT;
			break;
		}
	}
	*ppos = pos;
	return done ? done : err;
}

/**
 * pw__filemap_pin - generic_file_read_iter without the copy: the pages
 * holding [pos, pos + count) of file, read in the same way (readahead
 * included), each referenced and stored in pages[] (at most max of them).
 * Stops at end of file.  Return: the bytes they hold for the read (the
 * first page from pos's offset in it, the last up to pos + count or end of
 * file), or -errno if none.
 */
ssize_t
pw__filemap_pin(struct file *file, loff_t pos, size_t count, struct page **pages,
                unsigned max, unsigned *npages)
{
	ssize_t done = 0;
	unsigned n = 0;
	int err = 0;
	*npages = 0;
	if (pos < 0)
		return -EINVAL;
	while (count > 0 && n < max) {
		size_t nr;
		loff_t isize;
		struct page *page = read_page_at(file, pos, count, &nr, &isize, &err);
		if (!page)
			break;
		pages[n++] = page;
		pos += (loff_t)nr;
		done += (ssize_t)nr;
		count -= nr;
	}
	*npages = n;
	return done ? done : err;
}

/*
 * Reads past the cache (pw_pread_nocache): for a server whose client
 * caches the data itself (FUSE with the kernel's page cache), filling
 * this cache as well costs a copy and memory for pages nobody reads
 * again.  Pages already cached are copied from the pool, dirty ones
 * included; the others are read by ->read_direct into the caller's
 * buffer.
 *
 * ->read_direct maps blocks without pages, so truncate must not free
 * them meanwhile.  A read counts itself in i_dio_count before it reads
 * i_size; truncate_setsize lowers i_size before it waits for the count
 * to drain (both sequentially consistent): a read sees the new size or
 * is waited for, as the kernel's inode_dio_wait.
 */
static void
inode_dio_end(struct inode *inode)
{
	if (atomic_fetch_sub(&inode->i_dio_count, 1) == 1)
		pw__futex_wake_all(&inode->i_dio_count);
}

void
inode_dio_wait(struct inode *inode)
{
	uint32_t n;
	while ((n = atomic_load(&inode->i_dio_count)) != 0)
		pw__futex_wait(&inode->i_dio_count, n);
}

/* Copy the cached page at pos's index, if uptodate, to buf through the
 * pool file (a pread: its frame need not be mapped here).  Return: bytes
 * copied, 0 if the page is not cached, -EAGAIN if it is but not uptodate,
 * or -errno. */
static ssize_t
copy_cached(struct address_space *mapping, char *buf, size_t count, loff_t pos)
{
	struct page *page = find_get_page(mapping, (pgoff_t)(pos >> PAGE_SHIFT));
	if (!page)
		return 0;
	ssize_t r = -EAGAIN;
	if (PageUptodate(page)) {
		size_t off = (size_t)pos & (PAGE_SIZE - 1), n = PW_MIN(count, PAGE_SIZE - off);
		mark_page_accessed(page);
		r = pread(pw__pool_fd(), buf, n, (off_t)(page_to_pfn(page) * PAGE_SIZE + off));
		if (r < 0)
			r = -errno;
		else if (r == 0)
			r = -EIO;
	}
	put_page(page);
	return r;
}

loff_t
filemap_first_cached(struct address_space *mapping, loff_t from, loff_t to)
{
	for (pgoff_t i = (pgoff_t)(from >> PAGE_SHIFT); (loff_t)i << PAGE_SHIFT < to; i++) {
		struct page *page = find_get_page(mapping, i);
		if (page) {
			put_page(page);
			return PW_MAX((loff_t)i << PAGE_SHIFT, from);
		}
	}
	return to;
}

/* A read of [pos, pos + count) into buf through the cache. */
static ssize_t
read_buffered(struct file *file, void *buf, size_t count, loff_t pos)
{
	struct iovec v = {buf, count};
	struct iov_iter it;
	iov_iter_init(&it, &v, 1, count, 0);
	return generic_file_read_iter(file, &it, &pos);
}

/*
 * Read-around for small reads past the cache.  A small read that misses
 * (the kernel's READ for a random 4 KiB read through a FUSE mount) reads
 * the aligned READ_AROUND pages around it into the cache, as the kernel
 * reads around a page fault, so that later small reads near it are served
 * without I/O.  On a file read at random all over, nothing read around is
 * asked for later: each read-around counts a miss and each small read the
 * cache serves pays one back, and with more than READ_AROUND_MISSES
 * outstanding the file's small reads go back to reading what they ask for.
 */
#define READ_AROUND 16        /* pages: 64 KiB, aligned */
#define READ_AROUND_SMALL (16 << 10) /* reads up to this size are small */
#define READ_AROUND_MISSES 64

static bool
read_around(struct file *file, loff_t at, size_t count)
{
	if (count > READ_AROUND_SMALL ||
	    atomic_load_explicit(&file->f_ra.around_miss, memory_order_relaxed) > READ_AROUND_MISSES)
		return false;
	atomic_fetch_add_explicit(&file->f_ra.around_miss, 1, memory_order_relaxed);
	pgoff_t index = (pgoff_t)(at >> PAGE_SHIFT) & ~(pgoff_t)(READ_AROUND - 1);
	page_cache_ra(file->f_mapping, file, index, READ_AROUND);
	PW_STAT_ADD(misses, 1);
	return true;
}

/* A small read the cache served: one read-around paid back. */
static void
read_around_hit(struct file *file, size_t count)
{
	if (count > READ_AROUND_SMALL)
		return;
	int m = atomic_load_explicit(&file->f_ra.around_miss, memory_order_relaxed);
	if (m > 0)
		atomic_compare_exchange_strong_explicit(&file->f_ra.around_miss, &m, m - 1,
		                                        memory_order_relaxed, memory_order_relaxed);
}

ssize_t
file_read_nocache(struct file *file, void *buf, size_t count, loff_t pos)
{
	struct address_space *mapping = file->f_mapping;
	struct inode *inode = mapping->host;
	if (pos < 0)
		return -EINVAL;
	if (!mapping->a_ops->read_direct)
		return read_buffered(file, buf, count, pos);
	atomic_fetch_add(&inode->i_dio_count, 1);
	loff_t isize = i_size_read(inode);
	size_t done = 0;
	ssize_t err = 0;
	if (pos < isize)
		count = (size_t)PW_MIN((loff_t)count, isize - pos);
	else
		count = 0;
	bool around = false;
	while (done < count) {
		char *dst = (char *)buf + done;
		loff_t at = pos + (loff_t)done;
		ssize_t n = copy_cached(mapping, dst, count - done, at);
		if (n > 0 && done == 0 && !around)
			read_around_hit(file, count);
		if (n == 0 && !around && (around = read_around(file, at, count - done)))
			continue; /* now cached, or being read: copy or wait */
		if (n == -EAGAIN) {
			/* Being read or written: the buffered read waits for it. */
			size_t want = PW_MIN(count - done, PAGE_SIZE - ((size_t)at & (PAGE_SIZE - 1)));
			n = read_buffered(file, dst, want, at);
		} else if (n == 0) {
			/* Not cached: read up to the next cached page. */
			loff_t end = pos + (loff_t)count;
			loff_t next = (loff_t)((at >> PAGE_SHIFT) + 1) << PAGE_SHIFT;
			loff_t upto = next < end ? filemap_first_cached(mapping, next, end) : end;
			n = mapping->a_ops->read_direct(inode, dst, (size_t)(upto - at), at);
			if (n == 0)
				continue; /* a page entered the cache: copy it */
		}
		if (n < 0)
			err = n;
		if (n <= 0)
			break; /* an error, or truncated meanwhile */
		/* Not past a size a truncate set meanwhile: a page read in
		 * since beyond the new end holds zeros, never the file's bytes
		 * (the size is checked after the copy, as filemap_read does). */
		loff_t now = i_size_read(inode);
		if (at + n > now) {
			done += now > at ? (size_t)(now - at) : 0;
			break;
		}
		done += (size_t)n;
	}
	inode_dio_end(inode);
	return done ? (ssize_t)done : err;
}

/* --------------------------------------------------------- write side */

/*
 * Prefault the source of one step with no page locked (SPEC section 3,
 * step 2).  If only a prefix of the current segment is readable, the step
 * is cut to it, so a write makes progress up to a bad address and the
 * next step's prefault reports it.  Return: 0 or -EFAULT.
 */
static long
prefault_step(struct file *file, struct iov_iter *i, loff_t pos, size_t *bytes)
{
	size_t readable = iov_iter_fault_in_readable(i, *bytes);
	if (readable == 0)
		return -EFAULT;
	if (readable < PW_MIN(*bytes, iov_iter_single_seg_count(i)))
		*bytes = readable;
	if (pw__hooks.after_prefault)
		pw__hooks.after_prefault(file, pos, *bytes);
	return 0;
}

/**
 * generic_perform_write - copy user data into the page cache, one page
 * step at a time (SPEC section 3).
 *
 * The source is prefaulted with no page locked, so that a source which is
 * a mapping of the page being written is made present and uptodate
 * before write_begin locks it.  The copy under the page lock is atomic:
 * if the source was unmapped or reclaimed since the prefault it stops
 * short, write_end keeps what the filesystem can, and a zero-progress
 * step retries with the length cut to the rest of the current segment,
 * which the prefault covered, so the loop cannot livelock on a later
 * segment that is not present.
 *
 * Context: i_rwsem held.  Return: bytes written, or -errno if none.
 */
ssize_t
generic_perform_write(struct file *file, struct iov_iter *i, loff_t pos)
{
	struct address_space *mapping = file->f_mapping;
	const struct address_space_operations *a_ops = mapping->a_ops;
	unsigned flags = i->kernel ? AOP_FLAG_UNINTERRUPTIBLE : 0;
	ssize_t written = 0;
	long status = 0;

	do {
		size_t offset = (size_t)pos & (PAGE_SIZE - 1);
		size_t bytes = PW_MIN(PAGE_SIZE - offset, iov_iter_count(i));
		struct page *page;
		void *fsdata = NULL;
	again:
		if ((status = prefault_step(file, i, pos, &bytes)))
			break;
		status = a_ops->write_begin(file, mapping, pos, (unsigned)bytes, flags,
		                            &page, &fsdata);
		if (status) {
			if (status > 0) {
				pw_log("BUG: write_begin returned %ld", status);
				status = -EIO;
			}
			break;
		}
		if (pw__hooks.after_write_begin)
			pw__hooks.after_write_begin(file, pos, bytes);
		pagefault_disable();
		size_t copied = iov_iter_copy_from_user_atomic(page, i, offset, bytes);
		pagefault_enable();
		mark_page_accessed(page);
		status = a_ops->write_end(file, mapping, pos, (unsigned)bytes,
		                          (unsigned)copied, page, fsdata);
		if (status < 0)
			break;
		if ((size_t)status > copied) {
			pw_log("BUG: write_end accepted %ld of %zu bytes", status, copied);
			status = (long)copied;
		}
		copied = (size_t)status;
		if (copied == 0) {
			PW_STAT_ADD(write_retries, 1);
			bytes = PW_MIN(PAGE_SIZE - offset, iov_iter_single_seg_count(i));
			goto again;
		}
		iov_iter_advance(i, copied);
		pos += (loff_t)copied;
		written += (ssize_t)copied;
		balance_dirty_pages_ratelimited(mapping);
	} while (iov_iter_count(i));

	return written ? written : status;
}

/* Trim what a failed legacy step may have instantiated past EOF. */
static void
legacy_trim(struct inode *inode, loff_t end)
{
	if (end > i_size_read(inode))
		truncate_inode_pages(inode->i_mapping, i_size_read(inode));
}

/**
 * pagecache_write_begin - write_begin for internal callers, adapting the
 * legacy prepare_write for filesystems that lack write_begin (SPEC 4).
 */
int
pagecache_write_begin(struct file *file, struct address_space *mapping,
                      loff_t pos, unsigned len, unsigned flags,
                      struct page **pagep, void **fsdata)
{
	const struct address_space_operations *a_ops = mapping->a_ops;
	if (a_ops->write_begin)
		return a_ops->write_begin(file, mapping, pos, len, flags, pagep, fsdata);

	pgoff_t index = (pgoff_t)pos >> PAGE_SHIFT;
	unsigned offset = (unsigned)(pos & (loff_t)(PAGE_SIZE - 1));
	struct page *page;
	for (int reads = 0;; reads++) {
		page = grab_cache_page_write_begin(mapping, index, flags);
		if (!page)
			return -ENOMEM;
		if (!(flags & AOP_FLAG_UNINTERRUPTIBLE) || PageUptodate(page))
			break;
		/* Our caller never copies short, but the legacy prepare_write
		 * cannot know that: read the page first.  A read that keeps
		 * failing must end the loop (the 2.6.24 pitfall). */
		if (reads > 0) {
			unlock_page(page);
			put_page(page);
			return -EIO;
		}
		int err = a_ops->readpage(file, page);
		put_page(page);
		if (err && err != AOP_TRUNCATED_PAGE)
			return err;
	}
	int err = a_ops->prepare_write(file, page, offset, offset + len);
	if (err) {
		unlock_page(page);
		put_page(page);
		legacy_trim(mapping->host, pos + len);
		return err;
	}
	*pagep = page;
	*fsdata = NULL;
	return 0;
}

int
pagecache_write_end(struct file *file, struct address_space *mapping,
                    loff_t pos, unsigned len, unsigned copied, struct page *page,
                    void *fsdata)
{
	const struct address_space_operations *a_ops = mapping->a_ops;
	if (a_ops->write_end) {
		mark_page_accessed(page);
		return a_ops->write_end(file, mapping, pos, len, copied, page, fsdata);
	}
	unsigned offset = (unsigned)(pos & (loff_t)(PAGE_SIZE - 1));
	int ret = a_ops->commit_write(file, page, offset, offset + len);
	unlock_page(page);
	mark_page_accessed(page);
	put_page(page);
	if (ret < 0) {
		legacy_trim(mapping->host, pos + len);
		return ret;
	}
	return ret > 0 ? (int)PW_MIN(copied, (unsigned)ret) : (int)copied;
}

/* The 2copy bounce: copy the user data into a private page with faults
 * allowed (no page locked), so it can be copied in under the lock
 * without faulting.  Return: bytes bounced (0 = EFAULT). */
static size_t
bounce_copy(char *bounce, struct iov_iter *i, size_t bytes)
{
	size_t done = 0;
	struct iov_iter tmp = *i;
	while (done < bytes && iov_iter_count(&tmp)) {
		size_t n = PW_MIN(bytes - done, iov_iter_single_seg_count(&tmp));
		const char *src = (const char *)tmp.iov->iov_base + tmp.iov_offset;
		size_t left = tmp.kernel ? (memcpy(bounce + done, src, n), 0)
		                         : copy_from_user(bounce + done, src, n);
		done += n - left;
		if (left)
			break;
		iov_iter_advance(&tmp, n);
	}
	return done;
}

/* One page step of the legacy path.  Return: bytes accepted, 0 to redo
 * the step, or -errno. */
static long
perform_write_2copy_step(struct file *file, struct iov_iter *i, loff_t pos,
                         size_t bytes, char *bounce)
{
	struct address_space *mapping = file->f_mapping;
	const struct address_space_operations *a_ops = mapping->a_ops;
	pgoff_t index = (pgoff_t)pos >> PAGE_SHIFT;
	unsigned offset = (unsigned)(pos & (loff_t)(PAGE_SIZE - 1));
	size_t copied;
	bool bounced = false;

	struct page *page = grab_cache_page_write_begin(mapping, index, 0);
	if (!page)
		return -ENOMEM;
	if (!PageUptodate(page) && !i->kernel) {
		/* The deadlock-free way into a page that is not uptodate:
		 * unlock it, copy with faults allowed, relock. */
		unlock_page(page);
		copied = bounce_copy(bounce, i, bytes);
		if (copied == 0) {
			put_page(page);
			return -EFAULT;
		}
		bytes = copied;
		lock_page(page);
		if (page->mapping != mapping || PageUptodate(page)) {
			/* Truncated, or made uptodate meanwhile: redo the page. */
			unlock_page(page);
			put_page(page);
			return 0;
		}
		bounced = true;
	}
	int err = a_ops->prepare_write(file, page, offset, offset + (unsigned)bytes);
	if (err)
		goto fail;
	if (bounced) {
		pw__page_populate_copy(page);
		memcpy((char *)page_address(page) + offset, bounce, bytes);
		copied = bytes;
	} else {
		/* The page is uptodate, so a short atomic copy is harmless. */
		pagefault_disable();
		copied = iov_iter_copy_from_user_atomic(page, i, offset, bytes);
		pagefault_enable();
		if (copied == 0) {
			/* An empty commit would look like a zero-length expand to
			 * a legacy commit_write, which raises i_size to pos.
			 * Redo the step: the next prefault decides. */
			unlock_page(page);
			put_page(page);
			return 0;
		}
	}
	/* 2.6.24 committed offset+bytes even after a short atomic copy, so
	 * i_size could cover bytes the caller was never told were written.
	 * Commit what was copied. */
	err = a_ops->commit_write(file, page, offset, offset + (unsigned)copied);
	if (err < 0)
		goto fail;
	if (err > 0)
		copied = PW_MIN(copied, (size_t)err);
	unlock_page(page);
	mark_page_accessed(page);
	put_page(page);
	return (long)copied;
fail:
	unlock_page(page);
	put_page(page);
	legacy_trim(mapping->host, pos + (loff_t)bytes);
	return err;
}

/**
 * generic_perform_write_2copy - the write loop for filesystems with only
 * prepare_write/commit_write (SPEC section 4).  The price of not having
 * write_begin: a second copy through a bounce page whenever the target
 * page is not uptodate.
 * Context: i_rwsem held.  Return: bytes written, or -errno if none.
 */
ssize_t
generic_perform_write_2copy(struct file *file, struct iov_iter *i, loff_t pos)
{
	char *bounce = NULL;
	struct page *bounce_page = pw__alloc_page(-1);
	ssize_t written = 0;
	long status = 0;
	if (!bounce_page)
		return -ENOMEM;
	pw__page_populate(bounce_page);
	bounce = page_address(bounce_page);
	do {
		size_t offset = (size_t)pos & (PAGE_SIZE - 1);
		size_t bytes = PW_MIN(PAGE_SIZE - offset, iov_iter_count(i));
		if ((status = prefault_step(file, i, pos, &bytes)))
			break;
		status = perform_write_2copy_step(file, i, pos, bytes, bounce);
		if (status < 0)
			break;
		if (status == 0) {
			PW_STAT_ADD(write_retries, 1);
			continue;
		}
		iov_iter_advance(i, (size_t)status);
		pos += status;
		written += status;
		balance_dirty_pages_ratelimited(file->f_mapping);
	} while (iov_iter_count(i));
	put_page(bounce_page);
	return written ? written : status;
}

/* RLIMIT_FSIZE, re-read at most every 10 ms: a system call per write
 * would cost more than a small cached write itself.  ts is
 * CLOCK_REALTIME_COARSE (the write path reads it for mtime anyway); a
 * clock stepped backwards refreshes too. */
static rlim_t
fsize_limit(const struct timespec *ts);

/* The file-size limit, as the write path sees it (block devices use it:
 * an image file is a host file, so the kernel applies the limit to its
 * writes and would raise SIGXFSZ). */
rlim_t
pw__fsize_limit(void)
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME_COARSE, &now);
	return fsize_limit(&now);
}

static rlim_t
fsize_limit(const struct timespec *ts)
{
	static _Atomic rlim_t cached;
	static _Atomic long stamp_ms = -1;
	long now = ts->tv_sec * 1000 + ts->tv_nsec / 1000000;
	long then = atomic_load_explicit(&stamp_ms, memory_order_relaxed);
	if (then < 0 || now - then >= 10 || now < then) {
		struct rlimit rl;
		getrlimit(RLIMIT_FSIZE, &rl);
		atomic_store_explicit(&cached, rl.rlim_cur, memory_order_relaxed);
		atomic_store_explicit(&stamp_ms, now, memory_order_relaxed);
	}
	return atomic_load_explicit(&cached, memory_order_relaxed);
}

/* The limits of SPEC section 5; may cut *count.  i_rwsem held. */
static int
generic_write_checks(struct file *file, loff_t pos, size_t *count,
                     const struct timespec *now)
{
	struct inode *inode = file->f_inode;
	if (pos < 0)
		return -EINVAL;
	if (*count > (size_t)(LLONG_MAX - pos))
		*count = (size_t)(LLONG_MAX - pos);
	rlim_t limit = fsize_limit(now);
	if (limit != RLIM_INFINITY) {
		if ((rlim_t)pos >= limit) {
			raise(SIGXFSZ);
			return -EFBIG;
		}
		if (*count > limit - (rlim_t)pos)
			*count = (size_t)(limit - (rlim_t)pos);
	}
	loff_t maxbytes = inode->i_sb->s_maxbytes;
	if (pos >= maxbytes) {
		if (*count || pos > maxbytes)
			return -EFBIG;
	}
	if (*count > (size_t)(maxbytes - pos))
		*count = (size_t)(maxbytes - pos);
	return 0;
}

/* Bytes between the old EOF and the end of its page may hold stores made
 * through a mapping past EOF; they must read as zeroes once the file
 * grows over them.  i_rwsem held. */
void
pw__zero_eof_tail(struct inode *inode, loff_t newsize)
{
	loff_t old = i_size_read(inode);
	if (newsize <= old || (old & (loff_t)(PAGE_SIZE - 1)) == 0)
		return;
	struct page *page = find_lock_page(inode->i_mapping, (pgoff_t)old >> PAGE_SHIFT);
	if (!page)
		return;
	unsigned from = (unsigned)(old & (loff_t)(PAGE_SIZE - 1));
	unsigned to = (unsigned)PW_MIN((loff_t)PAGE_SIZE,
	                               newsize - (old & ~(loff_t)(PAGE_SIZE - 1)));
	wait_on_page_writeback(page);
	zero_user_segment(page, from, to);
	unlock_page(page);
	put_page(page);
}

/**
 * generic_file_write_iter - the buffered write entry (SPEC section 8).
 * Takes i_rwsem.  An O_SYNC/O_DSYNC write is synced after the lock is
 * dropped, and a sync error replaces the byte count.
 * Return: bytes written, or -errno.
 */
ssize_t
generic_file_write_iter(struct file *file, struct iov_iter *from, loff_t *ppos)
{
	struct inode *inode = file->f_inode;
	struct address_space *mapping = file->f_mapping;
	ssize_t written;

	inode_lock(inode);
	loff_t pos = (file->f_flags & O_APPEND) ? i_size_read(inode) : *ppos;
	size_t count = iov_iter_count(from);
	struct timespec now;
	clock_gettime(CLOCK_REALTIME_COARSE, &now);
	int err = generic_write_checks(file, pos, &count, &now);
	if (err || count == 0) {
		inode_unlock(inode);
		return err;
	}
	from->count = count;
	struct timespec mtime = inode_time_get(&inode->i_mtime);
	if (mtime.tv_sec != now.tv_sec || mtime.tv_nsec != now.tv_nsec) {
		inode_time_set(&inode->i_mtime, now);
		inode_time_set(&inode->i_ctime, now);
		mark_inode_dirty_sync(inode);
	}
	if (pos > i_size_read(inode))
		pw__zero_eof_tail(inode, pos);
	if (mapping->a_ops->write_begin)
		written = generic_perform_write(file, from, pos);
	else
		written = generic_perform_write_2copy(file, from, pos);
	if (written > 0)
		*ppos = pos + written;
	inode_unlock(inode);

	if (written > 0 && (file->f_flags & (O_SYNC | O_DSYNC))) {
		bool datasync = (file->f_flags & O_SYNC) != O_SYNC;
		err = pw__vfs_fsync_range(file, pos, pos + written - 1, datasync);
		if (err)
			return err;
	}
	return written;
}

/**
 * generic_cont_expand_simple - grow i_size to size through a zero-length
 * write_begin/write_end pair at the new size (SPEC section 6).
 * Context: i_rwsem held.
 */
int
generic_cont_expand_simple(struct inode *inode, loff_t size)
{
	struct address_space *mapping = inode->i_mapping;
	struct page *page;
	void *fsdata = NULL;
	if (size > inode->i_sb->s_maxbytes)
		return -EFBIG;
	int err = pagecache_write_begin(NULL, mapping, size, 0,
	                                AOP_FLAG_UNINTERRUPTIBLE | AOP_FLAG_CONT_EXPAND,
	                                &page, &fsdata);
	if (err)
		return err;
	err = pagecache_write_end(NULL, mapping, size, 0, 0, page, fsdata);
	if (err > 0) {
		pw_log("BUG: write_end of a zero-length expand returned %d", err);
		err = -EIO;
	}
	return err < 0 ? err : 0;
}

/* --------------------------------------------------------- truncation */

/* Zero the part of the page that holds lstart past lstart, and let the
 * filesystem drop its state there.  The page stays cached. */
static void
truncate_partial_page(struct address_space *mapping, loff_t lstart)
{
	struct page *page = find_lock_page(mapping, (pgoff_t)lstart >> PAGE_SHIFT);
	if (!page)
		return;
	unsigned off = (unsigned)(lstart & (loff_t)(PAGE_SIZE - 1));
	wait_on_page_writeback(page);
	zero_user_segment(page, off, PAGE_SIZE);
	if (mapping->a_ops->invalidatepage && page->private)
		mapping->a_ops->invalidatepage(page, off);
	unlock_page(page);
	put_page(page);
}

/**
 * truncate_inode_pages - drop the cached pages from byte lstart on.
 * Context: i_rwsem held (or the inode is dying); may sleep on page locks.
 */
void
truncate_inode_pages(struct address_space *mapping, loff_t lstart)
{
	pgoff_t start = (pgoff_t)(lstart + (loff_t)PAGE_SIZE - 1) >> PAGE_SHIFT;
	if (lstart & (loff_t)(PAGE_SIZE - 1))
		truncate_partial_page(mapping, lstart);
	struct page *batch[16];
	unsigned n;
	while ((n = find_get_pages(mapping, start, PW_ARRAY_SIZE(batch), batch)) > 0) {
		for (unsigned k = 0; k < n; k++) {
			struct page *page = batch[k];
			start = page->index + 1;
			lock_page(page);
			wait_on_page_writeback(page);
			if (page->mapping == mapping) {
				pw__page_unmap(page);
				delete_from_page_cache(page);
			}
			unlock_page(page);
			put_page(page);
		}
	}
}

/**
 * pagecache_isize_extended - i_size grew from `from` to `to`.  If blocks
 * are smaller than a page, the page that held the old EOF may have had
 * hole blocks past it, which are now inside the file.  A shared mapping
 * may already map that page writable (its other blocks were dirtied by
 * page_mkwrite), and a store there would not fault: the filesystem would
 * never allocate or dirty those blocks.  Write-protect the page, so that
 * the next store faults and goes through page_mkwrite with the new size,
 * which allocates the blocks (ENOSPC is then a SIGBUS at the store, not
 * an error at writeback).  A store between the i_size update and this
 * write-protect still lands without a fault; PG_wrmapped makes writeback
 * write (and allocate) every block of such a page, so it is not lost.
 * Context: i_rwsem held, no page lock (or the old EOF page itself is
 * `locked`).
 */
void
pagecache_isize_extended(struct inode *inode, loff_t from, loff_t to,
                         struct page *locked)
{
	if (pw__hooks.isize_extended)
		pw__hooks.isize_extended(inode, from, to);
	loff_t bsize = (loff_t)inode->i_sb->s_blocksize;
	if (bsize >= (loff_t)PAGE_SIZE || to <= from || !(from & (loff_t)(PAGE_SIZE - 1)))
		return;
	loff_t rounded = (from + bsize - 1) & ~(bsize - 1);
	if (to <= rounded || !(rounded & (loff_t)(PAGE_SIZE - 1)))
		return; /* no new block of the old EOF page came inside */
	pgoff_t index = (pgoff_t)from >> PAGE_SHIFT;
	if (locked && locked->index == index && locked->mapping == inode->i_mapping) {
		pw__page_mkclean(locked);
		return;
	}
	struct page *page = find_get_page(inode->i_mapping, index);
	if (!page)
		return;
	/* Under another page's lock only trylock (lock order); the caller
	 * holding a page lock is the legacy commit path, single per inode. */
	if (locked ? trylock_page(page) : (lock_page(page), true)) {
		if (page->mapping == inode->i_mapping)
			pw__page_mkclean(page);
		unlock_page(page);
	}
	put_page(page);
}

/**
 * truncate_setsize - set i_size and drop what lies past it.
 * Mappings past the new EOF are unmapped before and after the pages go
 * (a fault may map a page again while they are being dropped).
 * Context: i_rwsem held.
 */
void
truncate_setsize(struct inode *inode, loff_t newsize)
{
	loff_t old = i_size_read(inode);
	if (newsize > old)
		pw__zero_eof_tail(inode, newsize);
	i_size_write(inode, newsize);
	if (newsize > old)
		pagecache_isize_extended(inode, old, newsize, NULL);
	if (newsize >= old)
		return;
	inode_dio_wait(inode); /* reads past the cache saw the old size */
	loff_t hole = (newsize + (loff_t)PAGE_SIZE - 1) & ~(loff_t)(PAGE_SIZE - 1);
	unmap_mapping_range(inode->i_mapping, hole, 0);
	truncate_inode_pages(inode->i_mapping, newsize);
	unmap_mapping_range(inode->i_mapping, hole, 0);
}

unsigned long
invalidate_mapping_pages(struct address_space *mapping, pgoff_t start,
                         pgoff_t end)
{
	struct page *batch[16];
	unsigned long dropped = 0;
	unsigned n;
	if (mapping->unevictable)
		return 0;
	while (start <= end &&
	       (n = find_get_pages(mapping, start, PW_ARRAY_SIZE(batch), batch)) > 0) {
		pgoff_t last_seen = batch[n - 1]->index;
		for (unsigned k = 0; k < n; k++) {
			struct page *page = batch[k];
			start = page->index + 1;
			if (page->index <= end && trylock_page(page)) {
				if (page->mapping == mapping && !PageDirty(page) &&
				    !PageWriteback(page) && atomic_load(&page->mapcount) == 0) {
					delete_from_page_cache(page);
					dropped++;
				}
				unlock_page(page);
			}
			put_page(page);
		}
		/* Not batch[n - 1]->index: those pages are released now. */
		if (last_seen > end)
			break;
	}
	return dropped;
}

/* ---------------------------------------------------------- writeback */

/*
 * Move a locked dirty page to writeback: writeback is set *before* the
 * dirty bit is cleared, so that at no instant is a page whose data has
 * not been written neither dirty nor under writeback.  fsync skips clean
 * pages and then waits only for pages under writeback, without their
 * locks: with the opposite order, a fsync racing the writeback thread
 * could find the page in between and return before its data (say an
 * ext2 indirect block on the device cache) was written; a crash then
 * lost what fsync had promised.  Return: false if the page was not dirty
 * after all (writeback ended again).
 */
static bool
start_writeback(struct page *page)
{
	set_page_writeback(page);
	if (clear_page_dirty_for_io(page))
		return true;
	end_page_writeback(page);
	return false;
}

/* Write back one locked page if it is dirty; unlocks it.  Return the
 * writepage result (errors are also recorded on the mapping). */
int
pw__writeout_locked_page(struct page *page, struct writeback_control *wbc)
{
	struct address_space *mapping = page->mapping;
	wait_on_page_writeback(page);
	if (!mapping || !mapping->a_ops->writepage || !PageDirty(page)) {
		unlock_page(page);
		return 0;
	}
	if (!start_writeback(page)) {
		unlock_page(page);
		return 0;
	}
	int err = mapping->a_ops->writepage(page, wbc);
	if (err == AOP_WRITEPAGE_ACTIVATE)
		err = 0;
	wbc->nr_written++;
	return err;
}

/* The batch of filesystems without ->writepages: each page is written
 * at once by ->writepage. */
static int
writepage_add(struct writeback_batch *b, struct page *page,
              struct writeback_control *wbc)
{
	(void)b;
	int err = page->mapping->a_ops->writepage(page, wbc);
	return err == AOP_WRITEPAGE_ACTIVATE ? 0 : err;
}

/* Write what the batch holds.  The test hook runs first: the pages are
 * unlocked and under writeback there, and nothing is written yet. */
static void
batch_submit(struct address_space *mapping, struct writeback_batch *b,
             struct writeback_control *wbc, int *ret)
{
	if (b->nr_pages == 0 || !b->submit)
		return;
	/* Tests set the hook while the writeback thread runs: load it once,
	 * atomically. */
	void (*hook)(struct address_space *) =
	    __atomic_load_n(&pw__hooks.before_writeback_io, __ATOMIC_ACQUIRE);
	if (hook)
		hook(mapping);
	int err = b->submit(b, wbc);
	if (err && !*ret)
		*ret = err;
}

/*
 * Hand one referenced page to the batch if it is dirty.  It is locked
 * without waiting while the batch holds pages not yet written (submit
 * first: see struct writeback_batch), and write-protected in every user
 * mapping by clear_page_dirty_for_io before it goes under writeback.
 * Return: true when wbc->nr_to_write is reached.
 */
static bool
writeback_one(struct address_space *mapping, struct writeback_control *wbc,
              struct writeback_batch *b, struct page *page, int *ret)
{
	if (!PageDirty(page))
		return false;
	if (!trylock_page(page)) {
		batch_submit(mapping, b, wbc, ret);
		lock_page(page);
	}
	if (page->mapping != mapping || !PageDirty(page)) {
		unlock_page(page);
		return false;
	}
	/* Redirtied while a write of it was in flight: a metadata buffer
	 * changed under its buffer lock, or a mapping that mkclean could
	 * not write-protect.  Let that write finish first. */
	if (PageWriteback(page)) {
		batch_submit(mapping, b, wbc, ret);
		wait_on_page_writeback(page);
	}
	if (!start_writeback(page)) {
		unlock_page(page);
		return false;
	}
	int err = b->add(b, page, wbc);
	if (err && !*ret)
		*ret = err;
	wbc->nr_written++;
	return wbc->nr_to_write > 0 && wbc->nr_written >= wbc->nr_to_write;
}

/**
 * write_cache_pages - walk the dirty pages wbc describes in index order
 * and hand each to the batch (struct writeback_batch in fs.h).  The walk
 * visits only pages with the index's DIRTY tag, so its cost follows the
 * dirty pages, not the cached ones.  A walk that must write the whole
 * range (fsync, no cyclic chunk) first gives TOWRITE to the pages dirty
 * now and then walks those: pages dirtied behind it by a writer running
 * ahead cannot keep it going.  With range_cyclic the walk starts where
 * the last cyclic one stopped and wraps around, so writers throttled a
 * chunk at a time (balance_dirty_pages_ratelimited) move through a large
 * file instead of rescanning its head.  Context: no page locked; may
 * sleep.  Return: the first error.
 */
int
write_cache_pages(struct address_space *mapping, struct writeback_control *wbc,
                  struct writeback_batch *b)
{
	bool cyclic = wbc->range_cyclic, wrapped = false, stop = false;
	pgoff_t index = cyclic ? atomic_load(&mapping->m_wb_index)
	                       : (pgoff_t)wbc->range_start >> PAGE_SHIFT;
	pgoff_t first = index, end = cyclic ? ~(pgoff_t)0 : (pgoff_t)wbc->range_end >> PAGE_SHIFT;
	int tag = PAGECACHE_TAG_DIRTY;
	if (!cyclic && wbc->nr_to_write == 0) {
		tag = PAGECACHE_TAG_TOWRITE;
		tag_pages_for_writeback(mapping, index, end);
	}
	struct page *gang[16];
	int ret = 0;
	for (;;) {
		pgoff_t from = index;
		unsigned n = index <= end ? find_get_pages_tag(mapping, &from, end, tag, 16, gang) : 0;
		for (unsigned k = 0; k < n; k++) {
			struct page *page = gang[k];
			if (!stop) {
				index = page->index + 1;
				stop = writeback_one(mapping, wbc, b, page, &ret);
			}
			put_page(page);
		}
		if (stop)
			break;
		if (n < PW_ARRAY_SIZE(gang) || index == 0) {
			/* Nothing tagged is left in [index, end]. */
			if (!cyclic || wrapped || first == 0)
				break;
			wrapped = true;
			index = 0;
			end = first - 1;
		}
	}
	batch_submit(mapping, b, wbc, &ret);
	if (cyclic)
		atomic_store(&mapping->m_wb_index, stop ? index : 0);
	return ret;
}

#define WB_BUSY 0x1    /* m_wb_state: a thread is in do_writepages */
#define WB_WAITERS 0x2 /* ... and others wait for it */

/**
 * do_writepages - write back what wbc describes, through ->writepages
 * if the filesystem has it, else ->writepage one page at a time; and
 * count it (pw_get_stats, pw_get_mount_stats).  One thread at a time per
 * mapping.  Context: no page lock held (it takes them); may sleep.
 */
int
do_writepages(struct address_space *mapping, struct writeback_control *wbc)
{
	const struct address_space_operations *a_ops = mapping->a_ops;
	long written = wbc->nr_written, ios = wbc->nr_ios;
	int err;
	if (!a_ops->writepage && !a_ops->writepages)
		return 0;
	/* One writer per mapping (the kernel's I_SYNC): two threads walking
	 * the same file break each other's batches at every page.  The
	 * writeback thread leaves a busy mapping to its writer. */
	if (wbc->for_background) {
		if (atomic_fetch_or(&mapping->m_wb_state, WB_BUSY) & WB_BUSY)
			return 0;
	} else {
		pw__wait_on_bit(&mapping->m_wb_state, WB_BUSY, WB_WAITERS, true);
	}
	if (a_ops->writepages && (pw__writepages_enabled || !a_ops->writepage)) {
		err = a_ops->writepages(mapping, wbc);
	} else {
		struct writeback_batch b = {.add = writepage_add};
		err = write_cache_pages(mapping, wbc, &b);
	}
	pw__clear_bit_wake(&mapping->m_wb_state, WB_BUSY, WB_WAITERS);
	written = wbc->nr_written - written;
	ios = wbc->nr_ios - ios;
	PW_STAT_ADD(written, (uint64_t)written);
	PW_STAT_ADD(writeback_ios, (uint64_t)ios);
	struct super_block *sb = pw__mapping_sb(mapping);
	if (sb) {
		atomic_fetch_add_explicit(&sb->s_written, (uint64_t)written, memory_order_relaxed);
		atomic_fetch_add_explicit(&sb->s_write_ios, (uint64_t)ios, memory_order_relaxed);
	}
	return err;
}

static int
write_range(struct address_space *mapping, loff_t start, loff_t end, bool sync)
{
	struct writeback_control wbc = {.range_start = start, .range_end = end,
	                                .sync = sync};
	if (atomic_load(&mapping->nrdirty) == 0)
		return 0;
	return do_writepages(mapping, &wbc);
}

int
filemap_fdatawrite(struct address_space *mapping)
{
	return write_range(mapping, 0, LLONG_MAX, false);
}

/**
 * filemap_write_and_wait_range - write back the dirty pages of a range
 * and wait for them, including pages another thread (the writeback
 * thread) had under writeback already.
 * Return: 0, or the first error of this call.
 */
int
filemap_write_and_wait_range(struct address_space *mapping, loff_t start,
                             loff_t end)
{
	int err = write_range(mapping, start, end, true);
	struct page *batch[16];
	pgoff_t index = (pgoff_t)start >> PAGE_SHIFT, last = (pgoff_t)end >> PAGE_SHIFT;
	unsigned n;
	/* The pages under writeback now, found by their tag (invariant (5)
	 * of index.c: every page not yet written has DIRTY or WRITEBACK). */
	while (index <= last &&
	       (n = find_get_pages_tag(mapping, &index, last, PAGECACHE_TAG_WRITEBACK,
	                               PW_ARRAY_SIZE(batch), batch)) > 0) {
		for (unsigned k = 0; k < n; k++) {
			if (PageWriteback(batch[k]))
				wait_on_page_writeback(batch[k]);
			put_page(batch[k]);
		}
		if (index == 0)
			break;
	}
	return err;
}

/*
 * buffer.c - buffer heads: the block layer under block filesystems, after
 * SPEC section 6.
 *
 * A page of a block-backed file is split into buffers, one per block, that
 * record where each block lives on the device (BH_Mapped, b_blocknr),
 * whether its bytes are valid (BH_Uptodate), newer than the device
 * (BH_Dirty), or freshly allocated and not yet written (BH_New).  The
 * write path works per block: block_write_begin reads only the blocks a
 * write covers partly, and zeroes new blocks outside the write, so that
 * stale disk contents never become visible; block_write_end refuses a
 * short copy into a page that is not uptodate (a partly written block
 * cannot be marked uptodate, and a later read would wipe it).
 *
 * Metadata lives in the device's own page cache (blockdev.c): sb_bread()
 * finds or reads the block there and returns its buffer, referenced.
 *
 * Invariants:
 *  (1) A page is uptodate iff all its buffers are (set in commit and read).
 *  (2) BH_Dirty implies the page is dirty.
 *  (3) A BH_New buffer is never left with stale bytes: it is zeroed
 *      (page_zero_new_buffers) or fully overwritten before BH_New clears.
 *  (4) On a write_begin error the page keeps its uptodate state: 2.6.24
 *      cleared it, so a retry zeroed valid data (not copied here).
 *
 * Buffer heads are allocated with pw__kzalloc, never malloc: readpage
 * runs inside the page-fault handler.
 *
 * Lock ordering: page lock -> buffer lock (metadata I/O).
 */
#include "internal.h"

#include <pagewright/buffer_head.h>

#include <errno.h>
#include <string.h>
#include <sys/uio.h>

#define MAX_BUF_PER_PAGE (PAGE_SIZE / 512)

/* ------------------------------------------------------------ basics */

void
map_bh(struct buffer_head *bh, struct block_device *bdev, uint64_t block)
{
	bh->b_bdev = bdev;
	bh->b_blocknr = block;
	set_buffer_Mapped(bh);
	/* One block mapped: a caller that asked for a run (mpage_readahead's
	 * b_size of several blocks) learns so from a get_block that maps
	 * only one; one that maps more sets b_size after this. */
	if (bdev && bdev->bd_block_size && bh->b_size > bdev->bd_block_size)
		bh->b_size = bdev->bd_block_size;
}

void
lock_buffer(struct buffer_head *bh)
{
	pw__wait_on_bit(&bh->b_state, BH_Lock, BH_Waiters, true);
}

bool
trylock_buffer(struct buffer_head *bh)
{
	return !(atomic_fetch_or_explicit(&bh->b_state, BH_Lock, memory_order_acquire) & BH_Lock);
}

void
unlock_buffer(struct buffer_head *bh)
{
	pw__clear_bit_wake(&bh->b_state, BH_Lock, BH_Waiters);
}

void
get_bh(struct buffer_head *bh)
{
	atomic_fetch_add(&bh->b_count, 1);
	get_page(bh->b_page);
}

void
brelse(struct buffer_head *bh)
{
	if (!bh)
		return;
	atomic_fetch_sub(&bh->b_count, 1);
	put_page(bh->b_page);
}

void
mark_buffer_dirty(struct buffer_head *bh)
{
	if (!buffer_Dirty(bh)) {
		set_buffer_Dirty(bh);
		set_page_dirty(bh->b_page);
	}
}

int
create_empty_buffers(struct page *page, struct block_device *bdev,
                     unsigned blocksize)
{
	unsigned n = PAGE_SIZE / blocksize;
	struct buffer_head *bhs[MAX_BUF_PER_PAGE];
	for (unsigned k = 0; k < n; k++) {
		bhs[k] = pw__kzalloc(sizeof(struct buffer_head));
		if (!bhs[k]) {
			while (k--)
				pw__kfree(bhs[k], sizeof(struct buffer_head));
			return -ENOMEM;
		}
	}
	bool uptodate = PageUptodate(page);
	for (unsigned k = 0; k < n; k++) {
		struct buffer_head *bh = bhs[k];
		bh->b_page = page;
		bh->b_size = blocksize;
		bh->b_data = (char *)page_address(page) + k * blocksize;
		bh->b_bdev = bdev;
		bh->b_this_page = bhs[(k + 1) % n];
		if (uptodate)
			set_buffer_Uptodate(bh);
	}
	__atomic_store_n(&page->private, (void *)bhs[0], __ATOMIC_RELEASE);
	atomic_fetch_or(&page->flags, PG_private);
	return 0;
}

/* Free the buffers of a page whose buffers are all clean and unused. */
bool
try_to_free_buffers(struct page *page)
{
	struct buffer_head *head = page_buffers(page), *bh = head;
	if (!head)
		return true;
	do {
		if (buffer_Dirty(bh) || atomic_load(&bh->b_count) ||
		    (atomic_load(&bh->b_state) & BH_Lock))
			return false;
		bh = bh->b_this_page;
	} while (bh != head);
	bh = head;
	do {
		struct buffer_head *next = bh->b_this_page;
		pw__kfree(bh, sizeof(*bh));
		bh = next;
	} while (bh != head);
	__atomic_store_n(&page->private, NULL, __ATOMIC_RELEASE);
	atomic_fetch_and(&page->flags, ~(uint32_t)PG_private);
	return true;
}

/**
 * block_invalidatepage - bytes from offset on are leaving the file
 * (truncation) or the whole page the cache (offset 0).  Buffers that lie
 * wholly past offset forget their data and mapping.  Page locked.
 */
void
block_invalidatepage(struct page *page, unsigned offset)
{
	struct buffer_head *head = page_buffers(page), *bh = head;
	unsigned start = 0;
	if (!head)
		return;
	do {
		if (start >= offset) {
			clear_buffer_Dirty(bh);
			clear_buffer_Uptodate(bh);
			clear_buffer_Mapped(bh);
			clear_buffer_New(bh);
		}
		start += (unsigned)bh->b_size;
		bh = bh->b_this_page;
	} while (bh != head);
	if (offset == 0 && !try_to_free_buffers(page))
		pw_log("invalidatepage: buffers of page %lu still in use",
		       (unsigned long)page->index);
}

/* ---------------------------------------------------------- buffer I/O */

static int
bh_submit(struct buffer_head *bh, bool write)
{
	uint64_t off = bh->b_blocknr * bh->b_size;
	return write ? blkdev_write(bh->b_bdev, off, bh->b_data, bh->b_size)
	             : blkdev_read(bh->b_bdev, off, bh->b_data, bh->b_size);
}

int
bh_read(struct buffer_head *bh)
{
	int err = bh_submit(bh, false);
	if (err == 0)
		set_buffer_Uptodate(bh);
	return err;
}

int
sync_dirty_buffer(struct buffer_head *bh)
{
	lock_buffer(bh);
	int err = 0;
	if (buffer_Dirty(bh)) {
		clear_buffer_Dirty(bh);
		err = bh_submit(bh, true);
		if (err) {
			set_buffer_Write_EIO(bh);
			set_buffer_Dirty(bh);
		}
	}
	unlock_buffer(bh);
	return err;
}

/* Read the mapped, not-uptodate buffers of a page, merging neighbours on
 * the device into one pread.  Buffers already uptodate are skipped. */
static int
read_buffers(struct buffer_head **bhs, unsigned n)
{
	int err = 0;
	for (unsigned k = 0; k < n;) {
		unsigned run = 1;
		while (k + run < n && bhs[k + run]->b_blocknr == bhs[k]->b_blocknr + run &&
		       bhs[k + run]->b_data == bhs[k]->b_data + run * bhs[k]->b_size)
			run++;
		int e = blkdev_read(bhs[k]->b_bdev, bhs[k]->b_blocknr * bhs[k]->b_size,
		                    bhs[k]->b_data, run * bhs[k]->b_size);
		for (unsigned j = k; j < k + run && !e; j++)
			set_buffer_Uptodate(bhs[j]);
		if (e && !err)
			err = e;
		k += run;
	}
	return err;
}

static unsigned
blkbits(unsigned size)
{
	return (unsigned)__builtin_ctz(size);
}

/* -------------------------------------------------- data pages: reads */

/**
 * block_read_full_page - readpage for block filesystems.
 * Holes read as zeroes; mapped blocks are read from the device.
 * Context: page locked, not uptodate; unlocks it.  Runs in the fault
 * handler too: no malloc.
 */
int
block_read_full_page(struct page *page, get_block_t *get_block)
{
	struct inode *inode = page->mapping->host;
	unsigned bsize = (unsigned)inode->i_sb->s_blocksize;
	int err = 0;
	if (!page_has_buffers(page) &&
	    (err = create_empty_buffers(page, inode->i_sb->s_bdev, bsize)))
		goto out;
	uint64_t iblock = (uint64_t)page->index << (PAGE_SHIFT - blkbits(bsize));
	uint64_t lblock = (uint64_t)(i_size_read(inode) + bsize - 1) >> blkbits(bsize);
	struct buffer_head *head = page_buffers(page), *bh = head;
	struct buffer_head *toread[MAX_BUF_PER_PAGE];
	unsigned nr = 0;
	do {
		if (!buffer_Uptodate(bh)) {
			if (!buffer_Mapped(bh) && iblock < lblock &&
			    (err = get_block(inode, iblock, bh, 0)))
				break;
			if (!buffer_Mapped(bh)) {
				memset(bh->b_data, 0, bh->b_size);
				set_buffer_Uptodate(bh);
			} else {
				toread[nr++] = bh;
			}
		}
		iblock++;
		bh = bh->b_this_page;
	} while (bh != head);
	if (!err)
		err = read_buffers(toread, nr);
out:
	if (err) {
		SetPageError(page);
	} else {
		SetPageUptodate(page);
	}
	unlock_page(page);
	return err ? -EIO : 0;
}

/*
 * A run of consecutive device blocks being gathered by mpage_readahead:
 * its buffers, or for a page read without buffers NULL and the page.
 */
struct mpage_run {
	unsigned n;
	struct block_device *bdev;
	uint64_t block;                     /* device block of the first */
	struct iovec iov[PW_FAULT_AROUND];
	struct buffer_head *bh[PW_FAULT_AROUND];
	struct page *page[PW_FAULT_AROUND];
};

/* Read the run with one I/O. */
static void
mpage_read_run(struct mpage_run *r, unsigned bsize)
{
	if (!r->n)
		return;
	int err = blkdev_readv(r->bdev, r->block * bsize, r->iov, (int)r->n);
	for (unsigned k = 0; k < r->n; k++) {
		if (err)
			SetPageError(r->page[k]);
		else if (r->bh[k])
			set_buffer_Uptodate(r->bh[k]);
	}
	r->n = 0;
}

/* Add a mapped block to the run; a block that does not continue it (or
 * a full run) reads the run first. */
static void
mpage_run_add(struct mpage_run *r, unsigned bsize, struct block_device *bdev,
              uint64_t block, struct buffer_head *bh, struct page *page, void *data)
{
	if (r->n && (r->n == PW_FAULT_AROUND || r->bdev != bdev || r->block + r->n != block))
		mpage_read_run(r, bsize);
	if (!r->n) {
		r->bdev = bdev;
		r->block = block;
	}
	r->iov[r->n].iov_base = data;
	r->iov[r->n].iov_len = bsize;
	r->bh[r->n] = bh;
	r->page[r->n] = page;
	r->n++;
}

/**
 * mpage_readahead - read a batch of new pages of one file (->readahead).
 * Maps every block first, then reads each run of consecutive device
 * blocks with one preadv, so a sequential file costs a few large I/Os
 * instead of one per block.  Holes are zeroed.  With blocks of a page,
 * a page that has no buffers gets none, as in Linux: its block is
 * mapped with a buffer on the stack and the page read whole (a write
 * adds buffers when it needs them), which spares allocating and, at
 * eviction, freeing a buffer per page.  Each page is unlocked, uptodate
 * or with PG_error.  Context: as readpage (maybe the fault handler: no
 * malloc; the run is on the stack).
 */
void
mpage_readahead(struct page **pages, unsigned nr, get_block_t *get_block)
{
	struct mpage_run run;
	run.n = 0;
	struct inode *inode = pages[0]->mapping->host;
	unsigned bsize = (unsigned)inode->i_sb->s_blocksize;
	uint64_t lblock = (uint64_t)(i_size_read(inode) + bsize - 1) >> blkbits(bsize);

	/* the blocks [map_lblk, map_lblk + map_n) are at map_pblk on (nobh) */
	uint64_t map_lblk = 0, map_pblk = 0, map_n = 0;
	struct block_device *map_bdev = NULL;
	for (unsigned p = 0; p < nr; p++) {
		struct page *page = pages[p];
		uint64_t iblock = (uint64_t)page->index << (PAGE_SHIFT - blkbits(bsize));
		if (bsize == PAGE_SIZE && !page_has_buffers(page)) {
			if (iblock >= lblock) {
				memset(page_address(page), 0, PAGE_SIZE);
				continue;
			}
			if (!(iblock >= map_lblk && iblock < map_lblk + map_n)) {
				uint64_t want = PW_MIN(PW_MIN((uint64_t)(nr - p), (uint64_t)PW_FAULT_AROUND),
				                       lblock - iblock);
				struct buffer_head tmp = {.b_page = page, .b_size = (size_t)want * bsize,
				                          .b_data = page_address(page)};
				map_n = 0;
				if (get_block(inode, iblock, &tmp, 0)) {
					SetPageError(page);
					continue;
				}
				if (!buffer_Mapped(&tmp)) {
					memset(page_address(page), 0, PAGE_SIZE);
					continue;
				}
				map_lblk = iblock;
				map_pblk = tmp.b_blocknr;
				map_n = PW_MAX(tmp.b_size / bsize, (size_t)1);
				map_bdev = tmp.b_bdev;
			}
			mpage_run_add(&run, bsize, map_bdev, map_pblk + (iblock - map_lblk), NULL, page,
			              page_address(page));
			continue;
		}
		if (!page_has_buffers(page) &&
		    create_empty_buffers(page, inode->i_sb->s_bdev, bsize)) {
			SetPageError(page);
			continue;
		}
		struct buffer_head *head = page_buffers(page), *bh = head;
		do {
			if (!buffer_Uptodate(bh)) {
				if (!buffer_Mapped(bh) && iblock < lblock &&
				    get_block(inode, iblock, bh, 0))
					SetPageError(page);
				if (buffer_Mapped(bh))
					mpage_run_add(&run, bsize, bh->b_bdev, bh->b_blocknr, bh, page,
					              bh->b_data);
				else if (!PageError(page)) {
					memset(bh->b_data, 0, bh->b_size);
					set_buffer_Uptodate(bh);
				}
			}
			iblock++;
			bh = bh->b_this_page;
		} while (bh != head);
	}
	mpage_read_run(&run, bsize);
	for (unsigned p = 0; p < nr; p++) {
		if (!PageError(pages[p]))
			SetPageUptodate(pages[p]);
		unlock_page(pages[p]);
	}
}

/* --------------------------------------------------- reads past the cache */

/* Read len bytes at byte offset `at` inside device block pblk on: whole
 * blocks straight into dst, a partial one through a bounce block. */
static int
read_blocks(struct block_device *bdev, unsigned bsize, uint64_t pblk, size_t at, char *dst,
            size_t len)
{
	uint64_t dev = pblk * bsize + at;
	if (at == 0 && len % bsize == 0)
		return blkdev_read(bdev, dev, dst, len);
	char bounce[PAGE_SIZE];
	for (size_t done = 0; done < len;) {
		size_t in = (size_t)((dev + done) % bsize), k = PW_MIN(bsize - in, len - done);
		if (blkdev_read(bdev, dev + done - in, bounce, bsize))
			return -EIO;
		if (copy_to_user(dst + done, bounce + in, k))
			return -EFAULT;
		done += k;
	}
	return 0;
}

/**
 * blockdev_read_direct - ->read_direct of a block filesystem (fs.h).
 * Each step maps a run of blocks, then looks in the cache for the pages
 * of the run: the bytes up to the first cached one are read from the
 * device, and the read stops there (short) so the caller copies that page
 * from the cache.  Mapping first matters: a block being allocated by a
 * write has its page in the cache from before the allocation until its
 * data is on the device, so a block found mapped with no page after the
 * mapping holds the file's bytes, never a previous owner's.
 * Return: bytes read, or -errno if none.
 */
ssize_t
blockdev_read_direct(struct inode *inode, void *buf, size_t len, loff_t pos,
                     get_block_t *get_block)
{
	unsigned bsize = (unsigned)inode->i_sb->s_blocksize, bits = blkbits(bsize);
	char *dst = buf;
	size_t done = 0;
	int err = 0;
	while (done < len) {
		loff_t at = pos + (loff_t)done;
		uint64_t iblock = (uint64_t)at >> bits;
		size_t in = (size_t)(at & (bsize - 1));
		size_t want = PW_MIN(len - done, (size_t)1 << 20);
		struct buffer_head map = {.b_size = ((in + want + bsize - 1) >> bits) << bits};
		if ((err = get_block(inode, iblock, &map, 0)))
			break;
		void (*hook)(struct inode *) = __atomic_load_n(&pw__hooks.direct_read_mapped,
		                                               __ATOMIC_ACQUIRE);
		if (hook)
			hook(inode);
		size_t span = buffer_Mapped(&map) ? map.b_size : bsize;
		size_t n = PW_MIN(span - in, len - done);
		loff_t upto = filemap_first_cached(inode->i_mapping, at, at + (loff_t)n);
		bool cut = upto < at + (loff_t)n;
		n = (size_t)(upto - at);
		if (n)
			err = buffer_Mapped(&map) ? read_blocks(map.b_bdev, bsize, map.b_blocknr,
			                                        in, dst + done, n)
			                          : clear_user(dst + done, n) ? -EFAULT : 0;
		if (err)
			break;
		done += n;
		if (cut)
			break;
	}
	return done ? (ssize_t)done : err;
}

/* ------------------------------------------------- data pages: writes */

/*
 * Writeback of block-backed pages (write_cache_pages batches, fs.h).
 *
 * mpage_add picks the buffers of a page that go out (below), maps the
 * ones that need it, and appends them to the current run of consecutive
 * device blocks; a buffer that does not continue the run (or a full run)
 * writes the run first.  The page is then unlocked and waits in the batch
 * under writeback; writing a run ends the writeback of every page in the
 * batch, since their buffers all went out with it or before.  So a
 * sequential file costs one pwritev per MPAGE_MAX blocks, not one pwrite
 * per block.
 *
 * Metadata (the device's own cache) changes under each buffer's lock
 * without the page lock (ext2.h), so its buffers stay locked from the
 * moment their dirty bit is taken until their run is written: the block
 * goes out whole.  A buffer lock another thread holds is waited for only
 * after the run is written (the batch rule of fs.h); so is get_block,
 * which may wait for ext2's locks and device pages.
 */
#define MPAGE_MAX 256 /* buffers in one write, 1 MiB at 4 KiB blocks */

struct mpage_wb {
	struct writeback_batch b;   /* b.nr_pages: pages[] in use */
	get_block_t *get_block;
	bool meta;                  /* the device's cache: buffers locked */
	unsigned nbh;               /* buffers in the run */
	struct buffer_head *bhs[MPAGE_MAX];
	struct iovec iov[MPAGE_MAX];
	struct page *pages[MPAGE_MAX]; /* their writeback ends with the run */
};

/* Write the run, then end the writeback of the batched pages.  A failed
 * write fails every page of its run; a metadata buffer is dirtied again
 * before its lock drops, so sync_dirty_buffer never takes it for clean. */
static int
mpage_submit(struct writeback_batch *b, struct writeback_control *wbc)
{
	struct mpage_wb *w = (struct mpage_wb *)b;
	int err = 0;
	if (w->nbh) {
		struct buffer_head *first = w->bhs[0];
		err = blkdev_writev(first->b_bdev, first->b_blocknr * first->b_size, w->iov,
		                    (int)w->nbh);
		wbc->nr_ios++;
		/* Background writeback: the host starts its disk write now
		 * (see hostfs_wb_submit). */
		if (!err && !wbc->sync) {
			size_t len = 0;
			for (unsigned k = 0; k < w->nbh; k++)
				len += w->iov[k].iov_len;
			blkdev_start_write(first->b_bdev, first->b_blocknr * first->b_size, len);
		}
		for (unsigned k = 0; k < w->nbh; k++) {
			struct buffer_head *bh = w->bhs[k];
			if (err) {
				set_buffer_Write_EIO(bh);
				SetPageError(bh->b_page);
				if (w->meta)
					mark_buffer_dirty(bh);
			}
			if (w->meta)
				unlock_buffer(bh);
		}
		if (err)
			mapping_set_error(first->b_page->mapping, err);
		w->nbh = 0;
	}
	for (unsigned k = 0; k < b->nr_pages; k++)
		end_page_writeback(w->pages[k]);
	b->nr_pages = 0;
	return err;
}

/* Append a buffer (locked if metadata) to the run, writing the run
 * first if the buffer does not continue it. */
static int
mpage_queue(struct mpage_wb *w, struct buffer_head *bh, struct writeback_control *wbc)
{
	int err = 0;
	if (w->nbh && (w->nbh == MPAGE_MAX || bh->b_bdev != w->bhs[0]->b_bdev ||
	               bh->b_blocknr != w->bhs[w->nbh - 1]->b_blocknr + 1)) {
		/* Ends the pages batched so far, not the page being added (not
		 * in pages[] yet), whose earlier buffers go out now. */
		err = mpage_submit(&w->b, wbc);
	}
	w->bhs[w->nbh] = bh;
	w->iov[w->nbh].iov_base = bh->b_data;
	w->iov[w->nbh].iov_len = bh->b_size;
	w->nbh++;
	return err;
}

/*
 * The buffers of a locked page under writeback that go out: the dirty
 * ones inside i_size; or, for a page dirtied through a mapping, every
 * buffer inside i_size.  Such a page has no dirty buffers, or dirty ones
 * that do not cover every store: a mapping made writable while EOF was
 * inside the page may have reached blocks that i_size took in later.  The
 * user mappings are read-only now (clear_page_dirty_for_io), and a write
 * fault waits until the writeback ends.  Never on the device's own cache,
 * whose pages hold independent metadata blocks.  Buffers past i_size lose
 * their dirty bit.  *unmapped: some of them need get_block first.
 */
static unsigned
pick_buffers(struct page *page, loff_t isize, struct buffer_head **out, bool *unmapped)
{
	struct inode *inode = page->mapping->host;
	struct buffer_head *head = page_buffers(page), *bh = head;
	bool any_dirty = false;
	do {
		any_dirty |= buffer_Dirty(bh);
		bh = bh->b_this_page;
	} while (bh != head);
	bool wrmapped = atomic_fetch_and(&page->flags, ~(uint32_t)PG_wrmapped) & PG_wrmapped;
	if (wrmapped && PageDirty(page))
		atomic_fetch_or(&page->flags, PG_wrmapped); /* still writable: mkclean failed */
	bool whole = (!any_dirty || wrmapped) && !S_ISBLK(inode->i_mode);
	loff_t off = (loff_t)page->index << PAGE_SHIFT;
	unsigned n = 0;
	*unmapped = false;
	do {
		if (off >= isize) {
			clear_buffer_Dirty(bh);
		} else if (buffer_Dirty(bh) || (whole && (buffer_Uptodate(bh) || PageUptodate(page)))) {
			out[n++] = bh;
			/* A new block's stale alias in the device cache is
			 * dropped with the mapping (map_picked), which waits. */
			*unmapped |= !buffer_Mapped(bh) || buffer_New(bh);
		}
		off += (loff_t)bh->b_size;
		bh = bh->b_this_page;
	} while (bh != head);
	return n;
}

/* Map (allocating) the picked buffers that need it; the batch has been
 * written, so waiting is allowed.  Return: how many are ready, and the
 * error of the first that is not in *errp. */
static unsigned
map_picked(struct page *page, get_block_t *get_block, struct buffer_head **bhs,
           unsigned n, int *errp)
{
	struct inode *inode = page->mapping->host;
	unsigned bsize = (unsigned)bhs[0]->b_size;
	uint64_t first = (uint64_t)page->index << (PAGE_SHIFT - blkbits(bsize));
	for (unsigned k = 0; k < n; k++) {
		struct buffer_head *bh = bhs[k];
		uint64_t iblock = first + (uint64_t)(bh->b_data - (char *)page_address(page)) / bsize;
		if (!buffer_Mapped(bh) && (*errp = get_block(inode, iblock, bh, 1)))
			return k;
		if (buffer_New(bh)) {
			clean_bdev_alias(inode->i_sb->s_bdev, bh->b_blocknr);
			clear_buffer_New(bh);
		}
	}
	return n;
}

/* writeback_batch.add for block-backed pages (see above). */
static int
mpage_add(struct writeback_batch *b, struct page *page, struct writeback_control *wbc)
{
	struct mpage_wb *w = (struct mpage_wb *)b;
	struct address_space *mapping = page->mapping;
	struct inode *inode = mapping->host;
	loff_t isize = i_size_read(inode), pstart = (loff_t)page->index << PAGE_SHIFT;
	struct buffer_head *todo[MAX_BUF_PER_PAGE];
	unsigned n = 0;
	bool unmapped;
	int err = 0, ioerr = 0;

	if (pstart >= isize)
		goto out; /* wholly past EOF (truncated meanwhile) */
	if (isize - pstart < (loff_t)PAGE_SIZE)
		zero_user_segment(page, (unsigned)(isize - pstart), PAGE_SIZE);
	if (!page_has_buffers(page) &&
	    (err = create_empty_buffers(page, inode->i_sb->s_bdev,
	                                (unsigned)inode->i_sb->s_blocksize)))
		goto out;
	n = pick_buffers(page, isize, todo, &unmapped);
	if (n && unmapped) {
		ioerr = mpage_submit(b, wbc);
		n = map_picked(page, w->get_block, todo, n, &err);
	}
	for (unsigned k = 0; k < n; k++) {
		struct buffer_head *bh = todo[k];
		set_buffer_Uptodate(bh);
		if (w->meta && !trylock_buffer(bh)) {
			int e = mpage_submit(b, wbc);
			ioerr = ioerr ? ioerr : e;
			lock_buffer(bh);
		}
		clear_buffer_Dirty(bh);
		int e = mpage_queue(w, bh, wbc);
		ioerr = ioerr ? ioerr : e;
	}
out:
	if (err) {
		mapping_set_error(mapping, err);
		SetPageError(page);
	}
	unlock_page(page);
	if (n && w->nbh)
		w->pages[b->nr_pages++] = page;
	else
		end_page_writeback(page); /* nothing batched of it (or written already) */
	return err ? err : ioerr;
}

static void
mpage_init(struct mpage_wb *w, struct address_space *mapping, get_block_t *get_block)
{
	w->b = (struct writeback_batch){.add = mpage_add, .submit = mpage_submit};
	w->get_block = get_block;
	w->meta = S_ISBLK(mapping->host->i_mode);
	w->nbh = 0;
}

/**
 * block_write_full_page - writepage for block filesystems: the page's
 * buffers that go out (pick_buffers), merged where they are consecutive
 * on the device.  The part of the page past i_size is zeroed first (it
 * may hold stores made through a mapping past EOF).
 * Context: page locked, dirty cleared, writeback set; unlocks, ends
 * writeback.
 */
int
block_write_full_page(struct page *page, get_block_t *get_block,
                      struct writeback_control *wbc)
{
	struct mpage_wb w;
	mpage_init(&w, page->mapping, get_block);
	int err = mpage_add(&w.b, page, wbc);
	int e2 = mpage_submit(&w.b, wbc);
	return err ? err : e2;
}

/**
 * mpage_writepages - ->writepages for block filesystems and the device's
 * cache: every dirty page of the range through one batch, so that runs of
 * consecutive device blocks go out with one pwritev each, across pages.
 * Context: no page locked; may sleep.  Return: the first error.
 */
int
mpage_writepages(struct address_space *mapping, struct writeback_control *wbc,
                 get_block_t *get_block)
{
	struct mpage_wb w;
	mpage_init(&w, mapping, get_block);
	return write_cache_pages(mapping, wbc, &w.b);
}

/**
 * page_zero_new_buffers - zero the new buffers of [from, to) in a locked
 * page that is not uptodate, so that a short copy never exposes stale
 * disk bytes; they become uptodate, lose BH_New and are dirtied.
 */
void
page_zero_new_buffers(struct page *page, unsigned from, unsigned to)
{
	if (!page_has_buffers(page))
		return;
	struct buffer_head *head = page_buffers(page), *bh = head;
	unsigned start = 0;
	do {
		unsigned end = start + (unsigned)bh->b_size;
		if (end > from && start < to && buffer_New(bh)) {
			if (!PageUptodate(page)) {
				zero_user_segment(page, PW_MAX(start, from), PW_MIN(end, to));
				set_buffer_Uptodate(bh);
			}
			clear_buffer_New(bh);
			mark_buffer_dirty(bh);
		}
		start = end;
		bh = bh->b_this_page;
	} while (bh != head);
}

/* The prepare step of SPEC section 6, shared by block_write_begin and the
 * legacy block_prepare_write.  Page locked. */
static int
prepare_buffers(struct inode *inode, struct page *page, unsigned from,
                unsigned to, get_block_t *get_block)
{
	unsigned bsize = (unsigned)inode->i_sb->s_blocksize;
	struct block_device *bdev = inode->i_sb->s_bdev;
	int err = 0;
	if (!page_has_buffers(page) && (err = create_empty_buffers(page, bdev, bsize)))
		return err;
	struct buffer_head *head = page_buffers(page), *bh = head;
	struct buffer_head *toread[MAX_BUF_PER_PAGE];
	unsigned nr = 0, start = 0;
	uint64_t iblock = (uint64_t)page->index << (PAGE_SHIFT - blkbits(bsize));
	bool uptodate = PageUptodate(page);
	do {
		unsigned end = start + bsize;
		if (end <= from || start >= to) {
			if (uptodate)
				set_buffer_Uptodate(bh);
			goto next;
		}
		clear_buffer_New(bh);
		if (!buffer_Mapped(bh)) {
			if ((err = get_block(inode, iblock, bh, 1)))
				break;
			if (buffer_New(bh)) {
				clean_bdev_alias(bdev, bh->b_blocknr);
				if (uptodate) {
					clear_buffer_New(bh);
					set_buffer_Uptodate(bh);
					mark_buffer_dirty(bh);
				} else {
					if (start < from)
						zero_user_segment(page, start, from);
					if (end > to)
						zero_user_segment(page, to, end);
				}
				goto next;
			}
		}
		if (uptodate)
			set_buffer_Uptodate(bh);
		else if (!buffer_Uptodate(bh) && (start < from || end > to))
			toread[nr++] = bh;
	next:
		start = end;
		iblock++;
		bh = bh->b_this_page;
	} while (bh != head);
	if (!err && nr)
		err = read_buffers(toread, nr);
	if (err)
		page_zero_new_buffers(page, from, to);
	return err;
}

/**
 * block_write_begin - write_begin for block filesystems (SPEC 6).
 * Grabs the page unless *pagep is set (a caller-supplied locked page is
 * never unlocked or released here), maps or allocates the blocks of
 * [pos, pos+len) and reads the partly covered ones.  On failure an owned
 * page is unlocked and released; trimming blocks allocated past i_size is
 * the filesystem's job, as in modern Linux.
 */
int
block_write_begin(struct address_space *mapping, loff_t pos, unsigned len,
                  unsigned flags, struct page **pagep, get_block_t *get_block)
{
	struct page *page = *pagep;
	bool owned = page == NULL;
	unsigned from = (unsigned)(pos & (loff_t)(PAGE_SIZE - 1));
	if (owned) {
		page = grab_cache_page_write_begin(mapping, (pgoff_t)pos >> PAGE_SHIFT,
		                                   flags);
		if (!page)
			return -ENOMEM;
	}
	int err = prepare_buffers(mapping->host, page, from, from + len, get_block);
	if (err) {
		if (owned) {
			unlock_page(page);
			put_page(page);
			*pagep = NULL;
		}
		return err;
	}
	*pagep = page;
	return 0;
}

/* Commit [from, to): uptodate and dirty; the page is uptodate if every
 * buffer now is. */
static void
commit_buffers(struct page *page, unsigned from, unsigned to)
{
	struct buffer_head *head = page_buffers(page), *bh = head;
	unsigned start = 0;
	bool partial = false;
	do {
		unsigned end = start + (unsigned)bh->b_size;
		if (end <= from || start >= to) {
			if (!buffer_Uptodate(bh))
				partial = true;
		} else {
			set_buffer_Uptodate(bh);
			mark_buffer_dirty(bh);
		}
		clear_buffer_New(bh);
		start = end;
		bh = bh->b_this_page;
	} while (bh != head);
	if (!partial)
		SetPageUptodate(page);
}

int
block_write_end(struct file *file, struct address_space *mapping, loff_t pos,
                unsigned len, unsigned copied, struct page *page, void *fsdata)
{
	(void)file, (void)mapping, (void)fsdata;
	unsigned start = (unsigned)(pos & (loff_t)(PAGE_SIZE - 1));
	if (copied < len) {
		/* A partly copied block of a page that is not uptodate cannot
		 * become uptodate: accept nothing and let the caller retry. */
		if (!PageUptodate(page))
			copied = 0;
		page_zero_new_buffers(page, start + copied, start + len);
	}
	commit_buffers(page, start, start + copied);
	return (int)copied;
}

/**
 * generic_write_end - block_write_end, then raise i_size under the page
 * lock, then unlock and release.  Return: bytes accepted.
 */
int
generic_write_end(struct file *file, struct address_space *mapping, loff_t pos,
                  unsigned len, unsigned copied, struct page *page, void *fsdata)
{
	struct inode *inode = mapping->host;
	copied = (unsigned)block_write_end(file, mapping, pos, len, copied, page, fsdata);
	/* A step that accepted nothing must not move EOF (Linux raises it to
	 * pos, so a write that fails with EFAULT could still grow the file);
	 * a zero-length step does: that is generic_cont_expand_simple. */
	loff_t old = i_size_read(inode);
	bool grew = (copied > 0 || len == 0) && pos + copied > old;
	if (grew)
		i_size_write(inode, pos + copied);
	unlock_page(page);
	put_page(page);
	/* After unlocking, as modern kernels do (journal lock order). */
	if (grew) {
		pagecache_isize_extended(inode, old, pos + copied, NULL);
		mark_inode_dirty(inode);
	}
	return (int)copied;
}

int
block_prepare_write(struct page *page, unsigned from, unsigned to,
                    get_block_t *get_block)
{
	return prepare_buffers(page->mapping->host, page, from, to, get_block);
}

int
block_commit_write(struct page *page, unsigned from, unsigned to)
{
	commit_buffers(page, from, to);
	return 0;
}

int
generic_commit_write(struct file *file, struct page *page, unsigned from,
                     unsigned to)
{
	(void)file;
	struct inode *inode = page->mapping->host;
	block_commit_write(page, from, to);
	loff_t pos = ((loff_t)page->index << PAGE_SHIFT) + to;
	loff_t old = i_size_read(inode);
	if (pos > old) {
		i_size_write(inode, pos);
		pagecache_isize_extended(inode, old, pos, page);
		mark_inode_dirty(inode);
	}
	return 0;
}

int
block_page_mkwrite(struct vm_area_struct *vma, struct page *page,
                   get_block_t *get_block)
{
	(void)vma;
	struct inode *inode = page->mapping->host;
	loff_t size = i_size_read(inode);
	loff_t start = (loff_t)page->index << PAGE_SHIFT;
	if (start >= size)
		return -EFAULT;
	unsigned end = size - start < (loff_t)PAGE_SIZE ? (unsigned)(size - start)
	                                                  : (unsigned)PAGE_SIZE;
	int err = prepare_buffers(inode, page, 0, end, get_block);
	if (err)
		return err;
	commit_buffers(page, 0, end);
	return 0;
}

/**
 * block_truncate_page - zero the rest of the block that holds `from`, on
 * the page and (through the dirty buffer) on disk, so that growing the
 * file later shows zeroes there.  Context: i_rwsem held.
 */
int
block_truncate_page(struct address_space *mapping, loff_t from,
                    get_block_t *get_block)
{
	struct inode *inode = mapping->host;
	unsigned bsize = (unsigned)inode->i_sb->s_blocksize;
	unsigned offset = (unsigned)(from & (loff_t)(bsize - 1));
	if (offset == 0)
		return 0;
	struct page *page = grab_cache_page_write_begin(mapping, (pgoff_t)from >> PAGE_SHIFT, 0);
	if (!page)
		return -ENOMEM;
	int err = 0;
	if (!page_has_buffers(page) &&
	    (err = create_empty_buffers(page, inode->i_sb->s_bdev, bsize)))
		goto out;
	unsigned pos = (unsigned)(from & (loff_t)(PAGE_SIZE - 1));
	struct buffer_head *bh = page_buffers(page);
	uint64_t iblock = (uint64_t)page->index << (PAGE_SHIFT - blkbits(bsize));
	for (unsigned start = bsize; start <= pos; start += bsize) {
		bh = bh->b_this_page;
		iblock++;
	}
	if (!buffer_Mapped(bh) && (err = get_block(inode, iblock, bh, 0)))
		goto out;
	if (!buffer_Mapped(bh))
		goto out; /* a hole: it reads as zeroes already */
	if (PageUptodate(page))
		set_buffer_Uptodate(bh);
	if (!buffer_Uptodate(bh) && (err = bh_read(bh)))
		goto out;
	zero_user_segment(page, pos, pos - offset + bsize);
	mark_buffer_dirty(bh);
out:
	unlock_page(page);
	put_page(page);
	return err;
}

/* ------------------------------------------------------------ metadata */

/* The locked-free lookup of the buffer for block in the device cache,
 * creating the page and its buffers if needed.  Returns it referenced. */
static int
bdev_getblk(struct block_device *bdev, unsigned bsize, uint64_t block,
            struct buffer_head **bhp)
{
	if ((block + 1) * bsize > bdev->bd_size || block + 1 == 0) {
		pw_log("block %llu is past the end of the device",
		       (unsigned long long)block);
		return -EUCLEAN;
	}
	unsigned per_page = PAGE_SIZE / bsize;
	pgoff_t index = block / per_page;
	struct address_space *mapping = bdev->bd_mapping;
	struct page *page = find_get_page(mapping, index);
	if (!page || !page_has_buffers(page)) {
		if (page)
			put_page(page);
		page = grab_cache_page_write_begin(mapping, index, 0);
		if (!page)
			return -ENOMEM;
		int err = 0;
		if (!page_has_buffers(page))
			err = create_empty_buffers(page, bdev, bsize);
		unlock_page(page);
		if (err) {
			put_page(page);
			return err;
		}
	}
	struct buffer_head *bh = page_buffers(page);
	if (bh->b_size != bsize) {
		put_page(page);
		pw_log("block size changed under a cached device page");
		return -EIO;
	}
	for (unsigned k = 0; k < block % per_page; k++)
		bh = bh->b_this_page;
	if (!buffer_Mapped(bh)) {
		/* Two threads can find a new device buffer unmapped at once
		 * (TSan saw both write b_bdev): map it once, under a leaf lock
		 * held for nothing else.  Readers see BH_Mapped (an atomic)
		 * set after the fields. */
		static pthread_mutex_t map_lock = PTHREAD_MUTEX_INITIALIZER;
		pthread_mutex_lock(&map_lock);
		if (!buffer_Mapped(bh))
			map_bh(bh, bdev, block);
		pthread_mutex_unlock(&map_lock);
	}
	atomic_fetch_add(&bh->b_count, 1); /* the page reference is the bh's */
	*bhp = bh;
	return 0;
}

int
sb_getblk(struct super_block *sb, uint64_t block, struct buffer_head **bhp)
{
	int err = bdev_getblk(sb->s_bdev, (unsigned)sb->s_blocksize, block, bhp);
	if (!err) /* filesystems read and change metadata in place */
		pw__page_populate((*bhp)->b_page);
	return err;
}

int
sb_bread(struct super_block *sb, uint64_t block, struct buffer_head **bhp)
{
	struct buffer_head *bh;
	int err = sb_getblk(sb, block, &bh);
	if (err)
		return err;
	if (!buffer_Uptodate(bh)) {
		lock_buffer(bh);
		if (!buffer_Uptodate(bh))
			err = bh_read(bh);
		unlock_buffer(bh);
	}
	if (err) {
		brelse(bh);
		return err;
	}
	*bhp = bh;
	return 0;
}

void
clean_bdev_alias(struct block_device *bdev, uint64_t block)
{
	unsigned bsize = bdev->bd_block_size;
	struct page *page = find_get_page(bdev->bd_mapping, block / (PAGE_SIZE / bsize));
	if (!page)
		return;
	lock_page(page);
	if (page_has_buffers(page) && page_buffers(page)->b_size == bsize) {
		struct buffer_head *bh = page_buffers(page);
		for (unsigned k = 0; k < block % (PAGE_SIZE / bsize); k++)
			bh = bh->b_this_page;
		lock_buffer(bh);
		clear_buffer_Dirty(bh);
		clear_buffer_Uptodate(bh);
		unlock_buffer(bh);
		ClearPageUptodate(page);
	}
	unlock_page(page);
	put_page(page);
}

int
sync_blockdev(struct block_device *bdev)
{
	int err = filemap_write_and_wait_range(bdev->bd_mapping, 0, INT64_MAX);
	int e2 = blkdev_flush(bdev);
	return err ? err : e2;
}

void
invalidate_bdev(struct block_device *bdev)
{
	truncate_inode_pages(bdev->bd_mapping, 0);
}

/*
 * libfs.c - address-space operations for filesystems without backing
 * store (ramfs): a page that is not uptodate is brand new, so zeroes are
 * its true contents (SPEC section 7).
 */
#include "internal.h"

#include <errno.h>

int
simple_readpage(struct file *file, struct page *page)
{
	(void)file;
	zero_user_segment(page, 0, PAGE_SIZE);
	SetPageUptodate(page);
	unlock_page(page);
	return 0;
}

/**
 * simple_write_begin - grab the page and, if it is new, zero what the
 * write will not cover.  It is not marked uptodate here: write_end does
 * that once the copy is in.
 */
int
simple_write_begin(struct file *file, struct address_space *mapping, loff_t pos,
                   unsigned len, unsigned flags, struct page **pagep,
                   void **fsdata)
{
	(void)file, (void)fsdata;
	struct page *page =
	    grab_cache_page_write_begin(mapping, (pgoff_t)pos >> PAGE_SHIFT, flags);
	if (!page)
		return -ENOMEM;
	if (!PageUptodate(page) && len != PAGE_SIZE) {
		unsigned from = (unsigned)(pos & (loff_t)(PAGE_SIZE - 1));
		zero_user_segment(page, 0, from);
		zero_user_segment(page, from + len, PAGE_SIZE);
	}
	*pagep = page;
	return 0;
}

/**
 * simple_write_end - accept every copied byte.
 * A short copy into a new page zeroes the uncopied part of the range, so
 * the whole page is valid; a short copy into an uptodate page leaves the
 * old bytes alone (the 2.6.24 bug zeroed them too).
 */
int
simple_write_end(struct file *file, struct address_space *mapping, loff_t pos,
                 unsigned len, unsigned copied, struct page *page, void *fsdata)
{
	(void)file, (void)fsdata;
	struct inode *inode = mapping->host;
	if (!PageUptodate(page)) {
		unsigned from = (unsigned)(pos & (loff_t)(PAGE_SIZE - 1));
		if (copied < len)
			zero_user_segment(page, from + copied, from + len);
		SetPageUptodate(page);
	}
	if (copied > 0) {
		if (pos + copied > i_size_read(inode))
			i_size_write(inode, pos + copied);
		set_page_dirty(page);
	}
	unlock_page(page);
	put_page(page);
	return (int)copied;
}

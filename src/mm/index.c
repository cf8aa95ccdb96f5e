/*
 * index.c - the per-file page-cache index.
 *
 * A radix tree of 64-way nodes maps a page index to its struct page.  A
 * tree of height h covers indices [0, 64^h).  Nodes come from pw__kzalloc,
 * never malloc, because the fault handler inserts pages.  The tree is
 * guarded by the mapping's index lock (i_pages_lock), a leaf lock: nothing
 * else is taken under it except the allocator's spin lock.
 *
 * Invariants:
 *  (1) A page in the tree has page->mapping == the mapping and page->index
 *      == its index, and holds one reference owned by the tree.
 *  (2) page->mapping is set and cleared only under both the page lock and
 *      the index lock; so a thread holding either sees a stable value.
 *  (3) A node's count is the number of its non-NULL slots; empty nodes are
 *      freed at once.
 *
 * Lock ordering: page lock -> i_pages_lock.
 */
#include "internal.h"

#include <errno.h>

#define RADIX_SHIFT 6
#define RADIX_SLOTS (1u << RADIX_SHIFT)
#define RADIX_MASK (RADIX_SLOTS - 1)
#define RADIX_MAX_HEIGHT 11 /* 66 bits: every pgoff_t */

struct radix_node {
	void *slots[RADIX_SLOTS];
	unsigned count;
};

static pgoff_t
radix_max_index(unsigned height)
{
	if (height == 0)
		return 0;
	if (height * RADIX_SHIFT >= 64)
		return ~(pgoff_t)0;
	return ((pgoff_t)1 << (height * RADIX_SHIFT)) - 1;
}

static unsigned
slot_of(pgoff_t index, unsigned level)
{
	return (unsigned)(index >> (level * RADIX_SHIFT)) & RADIX_MASK;
}

/* Lookup under the index lock. */
static struct page *
radix_lookup(struct address_space *m, pgoff_t index)
{
	if (m->i_pages_height == 0 || index > radix_max_index(m->i_pages_height))
		return NULL;
	void *node = m->i_pages;
	for (unsigned level = m->i_pages_height; node && level > 0; level--)
		node = ((struct radix_node *)node)->slots[slot_of(index, level - 1)];
	return node;
}

static int
radix_insert(struct address_space *m, pgoff_t index, struct page *page)
{
	while (m->i_pages_height == 0 || index > radix_max_index(m->i_pages_height)) {
		struct radix_node *n = pw__kzalloc(sizeof(*n));
		if (!n)
			return -ENOMEM;
		if (m->i_pages) {
			n->slots[0] = m->i_pages;
			n->count = 1;
		}
		m->i_pages = n;
		m->i_pages_height++;
	}
	struct radix_node *n = m->i_pages;
	for (unsigned level = m->i_pages_height; level > 1; level--) {
		void **slot = &n->slots[slot_of(index, level - 1)];
		if (*slot == NULL) {
			struct radix_node *child = pw__kzalloc(sizeof(*child));
			if (!child)
				return -ENOMEM;
			*slot = child;
			n->count++;
		}
		n = *slot;
	}
	void **slot = &n->slots[slot_of(index, 0)];
	if (*slot)
		return -EEXIST;
	n->count++;
	*slot = page;
	return 0;
}

static void
radix_delete(struct address_space *m, pgoff_t index)
{
	struct radix_node *path[RADIX_MAX_HEIGHT + 1];
	unsigned h = m->i_pages_height;
	if (h == 0 || index > radix_max_index(h))
		return;
	struct radix_node *n = m->i_pages;
	for (unsigned level = h; level > 0; level--) {
		if (n == NULL)
			return;
		path[level] = n;
		n = n->slots[slot_of(index, level - 1)];
	}
	if (n == NULL)
		return;
	for (unsigned level = 1; level <= h; level++) {
		struct radix_node *p = path[level];
		p->slots[slot_of(index, level - 1)] = NULL;
		if (--p->count > 0)
			return;
		pw__kfree(p, sizeof(*p));
		if (level == h) {
			m->i_pages = NULL;
			m->i_pages_height = 0;
		}
	}
}

/* Gather up to nr pages at index >= *start, in order; advances *start. */
static unsigned
radix_gang(void *node, unsigned level, pgoff_t base, pgoff_t *start,
           unsigned nr, struct page **out)
{
	unsigned got = 0;
	if (level == 0) {
		if (base >= *start) {
			out[0] = node;
			*start = base + 1;
			return 1;
		}
		return 0;
	}
	struct radix_node *n = node;
	unsigned shift = (level - 1) * RADIX_SHIFT;
	for (unsigned s = 0; s < RADIX_SLOTS && got < nr; s++) {
		if (!n->slots[s])
			continue;
		pgoff_t child = base + ((pgoff_t)s << shift);
		pgoff_t last = shift >= 64 ? ~(pgoff_t)0 : child + ((pgoff_t)1 << shift) - 1;
		if (shift < 64 && last < *start)
			continue;
		got += radix_gang(n->slots[s], level - 1, child, start, nr - got, out + got);
	}
	return got;
}

/* ----------------------------------------------------------- the API */

struct page *
find_get_page(struct address_space *mapping, pgoff_t index)
{
	pthread_mutex_lock(&mapping->i_pages_lock);
	struct page *page = radix_lookup(mapping, index);
	if (page)
		get_page(page);
	pthread_mutex_unlock(&mapping->i_pages_lock);
	return page;
}

/**
 * find_lock_page - look up a page and lock it.
 * After sleeping for the lock the page may have been truncated; then it
 * is dropped and the lookup repeated.  Context: may sleep.
 * Return: the locked page with a reference, or NULL.
 */
struct page *
find_lock_page(struct address_space *mapping, pgoff_t index)
{
	for (;;) {
		struct page *page = find_get_page(mapping, index);
		if (!page)
			return NULL;
		lock_page(page);
		if (page->mapping == mapping && page->index == index)
			return page;
		unlock_page(page);
		put_page(page);
	}
}

unsigned
find_get_pages(struct address_space *mapping, pgoff_t start, unsigned nr,
               struct page **pages)
{
	pthread_mutex_lock(&mapping->i_pages_lock);
	unsigned got = 0;
	if (mapping->i_pages)
		got = radix_gang(mapping->i_pages, mapping->i_pages_height, 0, &start,
		                 nr, pages);
	for (unsigned k = 0; k < got; k++)
		get_page(pages[k]);
	pthread_mutex_unlock(&mapping->i_pages_lock);
	return got;
}

int
add_to_page_cache_locked(struct page *page, struct address_space *mapping,
                         pgoff_t index)
{
	get_page(page);
	pthread_mutex_lock(&mapping->i_pages_lock);
	page->mapping = mapping;
	page->index = index;
	int err = radix_insert(mapping, index, page);
	if (err == 0)
		mapping->nrpages++;
	else
		page->mapping = NULL;
	pthread_mutex_unlock(&mapping->i_pages_lock);
	if (err) {
		atomic_fetch_sub(&page->refcount, 1);
		return err;
	}
	pw__lru_add(page);
	PW_STAT_ADD(cached, 1);
	PW_SB_ADD(pw__mapping_sb(mapping), s_nr_cached, 1);
	return 0;
}

/**
 * delete_from_page_cache - remove a locked page from its mapping.
 * The caller has unmapped it from user memory.  Dirty data is dropped
 * (truncation); writeback callers clean the page first.
 */
void
delete_from_page_cache(struct page *page)
{
	struct address_space *mapping = page->mapping;
	if (!mapping)
		return;
	if (mapping->a_ops->invalidatepage && page->private)
		mapping->a_ops->invalidatepage(page, 0);
	pthread_mutex_lock(&mapping->i_pages_lock);
	radix_delete(mapping, page->index);
	mapping->nrpages--;
	page->mapping = NULL;
	pthread_mutex_unlock(&mapping->i_pages_lock);
	pw__lru_del(page);
	uint32_t old = atomic_fetch_and(&page->flags, ~(uint32_t)PG_dirty);
	if (old & PG_dirty)
		pw__account_page_cleaned(mapping);
	PW_STAT_SUB(cached, 1);
	PW_SB_ADD(pw__mapping_sb(mapping), s_nr_cached, -1);
	put_page(page);
}

/**
 * pw__remove_mapping - reclaim's delete: take a locked, clean, unmapped
 * page out of its mapping, but only if nobody holds a reference besides
 * the cache and the caller.  The count is checked under the index lock,
 * which every lookup takes to get its reference, so none can appear
 * between the check and the removal (the kernel freezes the count for
 * the same reason).  Without that, a metadata lookup (bdev_getblk) that
 * found the page just before could use its buffers after invalidatepage
 * freed them.  Return: true if removed (the cache's reference dropped).
 */
bool
pw__remove_mapping(struct page *page)
{
	struct address_space *mapping = page->mapping;
	pthread_mutex_lock(&mapping->i_pages_lock);
	if (atomic_load(&page->refcount) != 2 || PageDirty(page)) {
		pthread_mutex_unlock(&mapping->i_pages_lock);
		return false;
	}
	radix_delete(mapping, page->index);
	mapping->nrpages--;
	page->mapping = NULL;
	pthread_mutex_unlock(&mapping->i_pages_lock);
	if (mapping->a_ops->invalidatepage && page->private)
		mapping->a_ops->invalidatepage(page, 0);
	pw__lru_del(page);
	PW_STAT_SUB(cached, 1);
	PW_SB_ADD(pw__mapping_sb(mapping), s_nr_cached, -1);
	put_page(page);
	return true;
}

/* The frame of the page before index, as an allocation hint, or -1. */
static long
neighbour_pfn(struct address_space *mapping, pgoff_t index)
{
	long pfn = -1;
	if (index == 0)
		return -1;
	pthread_mutex_lock(&mapping->i_pages_lock);
	struct page *prev = radix_lookup(mapping, index - 1);
	if (prev)
		pfn = (long)page_to_pfn(prev);
	pthread_mutex_unlock(&mapping->i_pages_lock);
	return pfn;
}

struct page *
page_cache_alloc(struct address_space *mapping, pgoff_t index)
{
	return pw__alloc_page(neighbour_pfn(mapping, index));
}

/**
 * grab_cache_page_write_begin - find or create the page for a write.
 * Context: i_rwsem held; may sleep.
 * Return: the page locked with one reference for the caller, not
 * necessarily uptodate; NULL if no memory.
 */
struct page *
grab_cache_page_write_begin(struct address_space *mapping, pgoff_t index,
                            unsigned flags)
{
	(void)flags;
	for (;;) {
		struct page *page = find_lock_page(mapping, index);
		if (page) {
			/* Stable pages: never change data the device is reading. */
			wait_on_page_writeback(page);
			return page;
		}
		page = page_cache_alloc(mapping, index);
		if (!page)
			return NULL;
		atomic_fetch_or(&page->flags, PG_locked);
		int err = add_to_page_cache_locked(page, mapping, index);
		if (err == 0)
			return page;
		atomic_fetch_and(&page->flags, ~(uint32_t)PG_locked);
		put_page(page);
		if (err != -EEXIST)
			return NULL;
	}
}

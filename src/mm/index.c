/*
 * index.c - the per-file page-cache index.
 *
 * A radix tree of 64-way nodes maps a page index to its struct page.  A
 * tree of height h covers indices [0, 64^h).  Nodes come from pw__kzalloc,
 * never malloc, because the fault handler inserts pages.  The tree is
 * guarded by the mapping's index lock (i_pages_lock), a leaf lock: nothing
 * else is taken under it except the allocator's spin lock.
 *
 * Tags (the kernel's PAGECACHE_TAG_*): every node keeps one 64-bit map per
 * tag; bit s of a bottom node says the page in slot s has the tag, bit s
 * of an upper node that some page below slot s has it.  So the root says
 * whether any page of the file has a tag, and a tagged lookup descends
 * only into tagged slots: fsync of a file with few dirty pages among many
 * cached ones visits the dirty ones, not every page.
 *   DIRTY      follows PG_dirty, WRITEBACK follows PG_writeback: each
 *              change of the bit is followed (set_page_dirty,
 *              clear_page_dirty_for_io) or done (set_page_writeback,
 *              end_page_writeback) under the index lock, and the tag is
 *              set there from the bit as it is then (pw__page_tag_sync).
 *   TOWRITE    set by tag_pages_for_writeback on the DIRTY pages of a
 *              range when a walk that must write all of it starts, and
 *              cleared when a page goes under writeback or is cleaned, so
 *              that the walk does not chase pages dirtied behind it.
 *
 * Invariants:
 *  (1) A page in the tree has page->mapping == the mapping and page->index
 *      == its index, and holds one reference owned by the tree.
 *  (2) page->mapping is set and cleared only under both the page lock and
 *      the index lock; so a thread holding either sees a stable value.
 *  (3) A node's count is the number of its non-NULL slots; empty nodes are
 *      freed at once.
 *  (4) A node's tag bit s is set iff slot s holds a page with the tag
 *      (bottom node) or a node with any bit of that tag set (upper node).
 *  (5) At every instant, a page whose data is not yet written (dirty or
 *      under writeback, invariant (6) of filemap.c) has the DIRTY or the
 *      WRITEBACK tag, once the call that dirtied it has returned: the
 *      WRITEBACK tag is set with PG_writeback, before PG_dirty and its
 *      tag are cleared, and cleared only when the write has completed.
 *      A tag may be left on a page whose bit was cleared a moment before
 *      (lookups check the bit).
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
	uint64_t tags[PAGECACHE_NR_TAGS]; /* invariant (4) */
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
			struct radix_node *old = m->i_pages;
			n->slots[0] = old;
			n->count = 1;
			for (unsigned t = 0; t < PAGECACHE_NR_TAGS; t++)
				n->tags[t] = old->tags[t] != 0;
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

/* The nodes from the root (path[h]) down to the bottom node (path[1])
 * on the way to index; false if there is no page there. */
static bool
radix_path(struct address_space *m, pgoff_t index, struct radix_node **path)
{
	unsigned h = m->i_pages_height;
	if (h == 0 || index > radix_max_index(h))
		return false;
	void *n = m->i_pages;
	for (unsigned level = h; level > 0; level--) {
		if (n == NULL)
			return false;
		path[level] = n;
		n = ((struct radix_node *)n)->slots[slot_of(index, level - 1)];
	}
	return n != NULL;
}

/* Set a tag on the page at index (which must be there) and above it. */
static void
radix_tag_set(struct address_space *m, pgoff_t index, unsigned tag)
{
	struct radix_node *path[RADIX_MAX_HEIGHT + 1];
	if (!radix_path(m, index, path))
		return;
	for (unsigned level = 1; level <= m->i_pages_height; level++) {
		uint64_t bit = (uint64_t)1 << slot_of(index, level - 1);
		if (path[level]->tags[tag] & bit)
			return; /* the levels above have it already (invariant 4) */
		path[level]->tags[tag] |= bit;
	}
}

/* Clear bit s of every tag in mask at path[level], and upwards while a
 * node is left with no bit of a tag. */
static void
radix_tags_clear_up(struct address_space *m, struct radix_node **path, unsigned level,
                    pgoff_t index, unsigned mask)
{
	for (; level <= m->i_pages_height && mask; level++) {
		struct radix_node *n = path[level];
		uint64_t bit = (uint64_t)1 << slot_of(index, level - 1);
		unsigned next = 0;
		for (unsigned t = 0; t < PAGECACHE_NR_TAGS; t++) {
			if (!(mask & (1u << t)) || !(n->tags[t] & bit))
				continue;
			n->tags[t] &= ~bit;
			if (n->tags[t] == 0)
				next |= 1u << t;
		}
		mask = next;
	}
}

static void
radix_tag_clear(struct address_space *m, pgoff_t index, unsigned tag)
{
	struct radix_node *path[RADIX_MAX_HEIGHT + 1];
	if (radix_path(m, index, path))
		radix_tags_clear_up(m, path, 1, index, 1u << tag);
}

static void
radix_delete(struct address_space *m, pgoff_t index)
{
	struct radix_node *path[RADIX_MAX_HEIGHT + 1];
	unsigned h = m->i_pages_height;
	if (!radix_path(m, index, path))
		return;
	radix_tags_clear_up(m, path, 1, index, (1u << PAGECACHE_NR_TAGS) - 1);
	for (unsigned level = 1; level <= h; level++) {
		struct radix_node *p = path[level];
		p->slots[slot_of(index, level - 1)] = NULL;
		if (--p->count > 0)
			return;
		/* An empty node has no tags left (the clear above went up
		 * through every level whose map became empty). */
		pw__kfree(p, sizeof(*p));
		if (level == h) {
			m->i_pages = NULL;
			m->i_pages_height = 0;
		}
	}
}

/* Gather up to nr pages at index >= *start and <= end, in order, that have
 * the tag (tag < 0: every page); advances *start past each one found. */
static unsigned
radix_gang(void *node, unsigned level, pgoff_t base, pgoff_t *start, pgoff_t end,
           int tag, unsigned nr, struct page **out)
{
	if (level == 0) {
		if (base >= *start && base <= end) {
			out[0] = node;
			*start = base + 1;
			return 1;
		}
		return 0;
	}
	struct radix_node *n = node;
	unsigned shift = (level - 1) * RADIX_SHIFT, got = 0;
	uint64_t live = 0;
	if (tag >= 0) {
		live = n->tags[tag];
	} else {
		for (unsigned s = 0; s < RADIX_SLOTS; s++)
			if (n->slots[s])
				live |= (uint64_t)1 << s;
	}
	/* Skip the slots wholly below *start. */
	if (shift < 64 && *start > base) {
		pgoff_t first = (*start - base) >> shift;
		if (first >= RADIX_SLOTS)
			return 0;
		live &= ~(uint64_t)0 << first;
	}
	while (live && got < nr) {
		unsigned s = (unsigned)__builtin_ctzll(live);
		live &= live - 1;
		pgoff_t child = base + ((pgoff_t)s << shift);
		if (child > end)
			break;
		got += radix_gang(n->slots[s], level - 1, child, start, end, tag, nr - got, out + got);
	}
	return got;
}

static unsigned
gang_locked(struct address_space *m, pgoff_t *start, pgoff_t end, int tag, unsigned nr,
            struct page **out)
{
	if (!m->i_pages)
		return 0;
	if (tag >= 0 && ((struct radix_node *)m->i_pages)->tags[tag] == 0)
		return 0;
	return radix_gang(m->i_pages, m->i_pages_height, 0, start, end, tag, nr, out);
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
	unsigned got = gang_locked(mapping, &start, ~(pgoff_t)0, -1, nr, pages);
	for (unsigned k = 0; k < got; k++)
		get_page(pages[k]);
	pthread_mutex_unlock(&mapping->i_pages_lock);
	return got;
}

/**
 * find_get_pages_tag - up to nr pages with the tag, at indices *index ..
 * end, in order, each with a reference.  *index is moved past the last
 * one returned.  The tag may be stale by the time the caller looks:
 * check the page's flags under its lock.
 */
unsigned
find_get_pages_tag(struct address_space *mapping, pgoff_t *index, pgoff_t end, int tag,
                   unsigned nr, struct page **pages)
{
	pthread_mutex_lock(&mapping->i_pages_lock);
	unsigned got = gang_locked(mapping, index, end, tag, nr, pages);
	for (unsigned k = 0; k < got; k++)
		get_page(pages[k]);
	pthread_mutex_unlock(&mapping->i_pages_lock);
	return got;
}

/* Does any page of the mapping have the tag? */
bool
mapping_tagged(struct address_space *mapping, int tag)
{
	pthread_mutex_lock(&mapping->i_pages_lock);
	bool any = mapping->i_pages && ((struct radix_node *)mapping->i_pages)->tags[tag];
	pthread_mutex_unlock(&mapping->i_pages_lock);
	return any;
}

/**
 * tag_pages_for_writeback - give the TOWRITE tag to every DIRTY page at
 * indices start .. end.  A walk that must write the whole range then
 * looks up TOWRITE pages: pages dirtied after it began (a writer running
 * ahead of it) do not keep it going for ever.  The index lock is dropped
 * every 64 pages.
 */
void
tag_pages_for_writeback(struct address_space *mapping, pgoff_t start, pgoff_t end)
{
	struct page *batch[64];
	unsigned n;
	do {
		pthread_mutex_lock(&mapping->i_pages_lock);
		n = gang_locked(mapping, &start, end, PAGECACHE_TAG_DIRTY, 64, batch);
		for (unsigned k = 0; k < n; k++)
			radix_tag_set(mapping, batch[k]->index, PAGECACHE_TAG_TOWRITE);
		pthread_mutex_unlock(&mapping->i_pages_lock);
	} while (n == 64 && start != 0 && start <= end);
}

/* Index lock held, the page in the tree: its DIRTY and WRITEBACK tags
 * as its flags are now; a clean page loses TOWRITE. */
static void
tag_sync_locked(struct address_space *m, struct page *page, bool drop_towrite)
{
	uint32_t flags = atomic_load(&page->flags);
	if (flags & PG_dirty)
		radix_tag_set(m, page->index, PAGECACHE_TAG_DIRTY);
	else
		radix_tag_clear(m, page->index, PAGECACHE_TAG_DIRTY);
	if (flags & PG_writeback)
		radix_tag_set(m, page->index, PAGECACHE_TAG_WRITEBACK);
	else
		radix_tag_clear(m, page->index, PAGECACHE_TAG_WRITEBACK);
	if (drop_towrite || !(flags & PG_dirty))
		radix_tag_clear(m, page->index, PAGECACHE_TAG_TOWRITE);
}

/**
 * pw__page_tag_sync - after PG_dirty changed: set the page's tags from
 * its flags, under the index lock.  Whoever changed a bit last also
 * takes the lock last, so the tags end up as the bits are.
 * Context: the caller holds the page lock or a reference (a page whose
 * mapping changes meanwhile is left alone: it left the index, and its
 * tags with it).
 */
void
pw__page_tag_sync(struct page *page)
{
	struct address_space *mapping = page->mapping;
	if (!mapping)
		return;
	pthread_mutex_lock(&mapping->i_pages_lock);
	if (page->mapping == mapping)
		tag_sync_locked(mapping, page, false);
	pthread_mutex_unlock(&mapping->i_pages_lock);
}

/**
 * pw__page_writeback_set - PG_writeback and the WRITEBACK tag together,
 * TOWRITE dropped (the page is being written now).  Return: whether it
 * was under writeback already.  Context: page locked.
 */
bool
pw__page_writeback_set(struct page *page)
{
	struct address_space *mapping = page->mapping;
	if (!mapping)
		return atomic_fetch_or(&page->flags, PG_writeback) & PG_writeback;
	pthread_mutex_lock(&mapping->i_pages_lock);
	bool was = atomic_fetch_or(&page->flags, PG_writeback) & PG_writeback;
	if (page->mapping == mapping)
		tag_sync_locked(mapping, page, true);
	pthread_mutex_unlock(&mapping->i_pages_lock);
	return was;
}

/**
 * pw__page_writeback_untag - the write of a page under writeback has
 * completed: drop its WRITEBACK tag, just before PG_writeback is cleared
 * (while the bit holds the page in its mapping).
 */
void
pw__page_writeback_untag(struct page *page)
{
	struct address_space *mapping = page->mapping;
	if (!mapping)
		return;
	pthread_mutex_lock(&mapping->i_pages_lock);
	if (page->mapping == mapping)
		radix_tag_clear(mapping, page->index, PAGECACHE_TAG_WRITEBACK);
	pthread_mutex_unlock(&mapping->i_pages_lock);
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
	if (err == 0) {
		mapping->nrpages++;
		if (atomic_load(&page->flags) & (PG_dirty | PG_writeback))
			tag_sync_locked(mapping, page, false);
	} else
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

/* The frame of the page before index, as an allocation hint, or -1.
 * None for a device's pages: metadata blocks are read and written one at
 * a time, and placed without a hint they go after the newest run of
 * frames, sharing groups with the files being created instead of each
 * opening a new one (pw__alloc_page). */
static long
neighbour_pfn(struct address_space *mapping, pgoff_t index)
{
	long pfn = -1;
	if (index == 0 || S_ISBLK(mapping->host->i_mode))
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

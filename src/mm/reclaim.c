/*
 * reclaim.c - a cap on the memory the page pool may use, and the reclaim
 * that keeps to it.
 *
 * Every page in a page cache sits on one global LRU list (oldest at the
 * head).  When an allocation finds the pool at its cap, direct reclaim
 * walks the list from the head with a clock's second chance
 * (PG_referenced, set by reads, writes and faults) and evicts clean pages:
 * it unmaps them from user memory if they are mapped, lets the filesystem
 * drop its buffers, and frees them.
 *
 * Direct reclaim never writes a dirty page back.  It runs inside whatever
 * asked for memory, which may be a filesystem holding its own locks (an
 * ext2 get_block reading an indirect block); writing back a page of the
 * same file from there could deadlock on those locks (the kernel's
 * GFP_NOFS).  Dirty pages are bounded instead by the dirty limit, which
 * follows the cap (balance_dirty_pages_ratelimited makes writers write
 * back their own files, with no filesystem lock held).  Locked pages,
 * pages under writeback and ramfs pages (their only copy) are never
 * evicted.  If nothing can be evicted the allocation still succeeds: the
 * cap is exceeded rather than a caller failed; pw_get_stats shows it.
 *
 * Lock ordering: page lock -> i_pages_lock -> lru_lock.  Reclaim only
 * trylocks pages under lru_lock, and drops lru_lock before evicting.
 * Reentry (an eviction that allocates) is stopped by a thread-local flag.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>

static pthread_mutex_t lru_lock = PTHREAD_MUTEX_INITIALIZER;
static struct page *lru_head, *lru_tail;  /* (lru_lock) oldest first */
static _Atomic uint64_t mem_limit_pages;  /* (A) 0 = no cap */
static _Thread_local bool in_reclaim;

#define RECLAIM_BATCH 32

void
pw__lru_add(struct page *page)
{
	pthread_mutex_lock(&lru_lock);
	page->lru_prev = lru_tail;
	page->lru_next = NULL;
	*(lru_tail ? &lru_tail->lru_next : &lru_head) = page;
	lru_tail = page;
	pthread_mutex_unlock(&lru_lock);
}

/* lru_lock held */
static void
lru_unlink(struct page *page)
{
	*(page->lru_prev ? &page->lru_prev->lru_next : &lru_head) = page->lru_next;
	*(page->lru_next ? &page->lru_next->lru_prev : &lru_tail) = page->lru_prev;
	page->lru_prev = page->lru_next = NULL;
}

void
pw__lru_del(struct page *page)
{
	pthread_mutex_lock(&lru_lock);
	lru_unlink(page);
	pthread_mutex_unlock(&lru_lock);
}

/* Collect up to nr trylocked, referenced eviction candidates. */
static unsigned
isolate(struct page **out, unsigned nr)
{
	unsigned got = 0;
	pthread_mutex_lock(&lru_lock);
	uint64_t budget = 2 * atomic_load(&pw__stat.cached) + 16;
	while (got < nr && lru_head && budget--) {
		struct page *page = lru_head;
		uint32_t flags = atomic_load(&page->flags);
		lru_unlink(page);
		/* Whatever we skip goes to the young end: second chance. */
		bool skip = (flags & (PG_locked | PG_dirty | PG_writeback)) ||
		            !page->mapping || page->mapping->unevictable;
		if (flags & PG_referenced) {
			atomic_fetch_and(&page->flags, ~(uint32_t)PG_referenced);
			skip = true;
		}
		if (!skip && trylock_page(page)) {
			get_page(page);
			out[got++] = page;
			/* Re-added at the tail if it survives. */
		}
		page->lru_prev = lru_tail;
		page->lru_next = NULL;
		*(lru_tail ? &lru_tail->lru_next : &lru_head) = page;
		lru_tail = page;
	}
	pthread_mutex_unlock(&lru_lock);
	return got;
}

/* Evict up to nr clean pages.  Return: pages freed. */
static unsigned long
shrink(unsigned long nr)
{
	struct page *victims[RECLAIM_BATCH];
	unsigned long freed = 0;
	in_reclaim = true;
	while (freed < nr) {
		unsigned n = isolate(victims, RECLAIM_BATCH);
		if (n == 0)
			break;
		for (unsigned k = 0; k < n; k++) {
			struct page *page = victims[k];
			struct address_space *mapping = page->mapping;
			if (mapping && !PageDirty(page) && !PageWriteback(page)) {
				pw__page_unmap(page);
				/* A store may have redirtied it before the unmap. */
				if (!PageDirty(page) && atomic_load(&page->mapcount) == 0) {
					delete_from_page_cache(page);
					freed++;
				}
			}
			unlock_page(page);
			put_page(page);
		}
	}
	in_reclaim = false;
	PW_STAT_ADD(evicted, freed);
	return freed;
}

/**
 * pw__reclaim_for_alloc - called before a frame is allocated: over the
 * cap, evict clean pages first.  Context: any (may be the fault handler);
 * takes no lock the caller may hold except through trylock.
 */
void
pw__reclaim_for_alloc(void)
{
	uint64_t limit = atomic_load_explicit(&mem_limit_pages, memory_order_relaxed);
	if (!limit || in_reclaim)
		return;
	uint64_t used = atomic_load_explicit(&pw__stat.allocated, memory_order_relaxed);
	if (used < limit)
		return;
	shrink(used - limit + RECLAIM_BATCH);
}

uint64_t
pw__mem_limit_pages(void)
{
	return atomic_load_explicit(&mem_limit_pages, memory_order_relaxed);
}

int
pw_set_mem_limit(uint64_t bytes)
{
	uint64_t pages = bytes / PAGE_SIZE;
	if (bytes && pages < 256) {
		errno = EINVAL; /* below 1 MiB the cache cannot work */
		return -1;
	}
	atomic_store(&mem_limit_pages, pages);
	if (pages) {
		uint64_t used = atomic_load(&pw__stat.allocated);
		if (used > pages)
			shrink(used - pages);
	}
	return 0;
}

void
pw__reclaim_init(void)
{
	const char *env = getenv("PAGEWRIGHT_MEM_LIMIT");
	if (!env || !*env)
		return;
	uint64_t bytes = pw__parse_bytes(env);
	if (bytes / PAGE_SIZE < 256) {
		pw_log("PAGEWRIGHT_MEM_LIMIT=%s ignored: want bytes >= 1M, with K/M/G", env);
		return;
	}
	atomic_store(&mem_limit_pages, bytes / PAGE_SIZE);
}

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
 * Mapped pages cost more to evict (a zap now, a fault later), and their
 * use through a mapping sets no PG_referenced (there is no accessed bit
 * to read), so reclaim prefers clean unmapped pages: a scan passes over
 * mapped pages, leaving them in place, and takes them only when it finds
 * no unmapped victim, or when most of the cache is mapped anyway (the
 * kernel, likewise, keeps mapped pages whose PTEs were referenced and
 * reclaims use-once unmapped ones).  Victims are taken a batch at a time,
 * sorted by file and index, and the mapped ones of each file are unmapped
 * together (pw__pages_unmap): one call per run of consecutive pages of a
 * vma, not one per page.  A scan that takes mapped pages takes up to 512
 * (RECLAIM_MAPPED_BATCH), so a reader streaming through a mapping larger
 * than the cap pays one zap per 512 pages; and the first fault of a
 * window marks no page referenced (its pages age together, and no page
 * kept back breaks a run).
 *
 * The one use of a mapped page we do see is a refault: a fault where
 * reclaim had unmapped it (PTE_GONE, mmap.c).  The pages of that window
 * come back PG_referenced and PG_active, and a mapped PG_active page
 * gets one more pass after its referenced bit is spent: a working set
 * used through a mapping is evicted every third turn of the LRU instead
 * of every turn.
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

#define RECLAIM_BATCH 64
/* Mapped victims are taken in larger batches: each run of them costs a
 * zap (an mmap call, a TLB flush on every CPU that runs the process, a
 * split and a merge of kernel mappings) and later a fault, whatever its
 * length, so a reader streaming through a mapping larger than the cap
 * pays one per 512 pages instead of one per 64.  At most a sixteenth of
 * the cap, so a small cache is not emptied at once. */
#define RECLAIM_MAPPED_BATCH 512
static _Thread_local struct page *victims[RECLAIM_MAPPED_BATCH]; /* shrink's:
                                        * not on the stack, which may be a
                                        * signal stack (the fault handler) */

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

/* lru_lock held: move a page to the young end. */
static void
lru_rotate(struct page *page)
{
	lru_unlink(page);
	page->lru_prev = lru_tail;
	page->lru_next = NULL;
	*(lru_tail ? &lru_tail->lru_next : &lru_head) = page;
	lru_tail = page;
}

/* One pass from the old end: referenced pages lose the bit and go to the
 * young end (second chance), busy ones too; mapped ones stay where they
 * are unless take_mapped.  Victims are trylocked, referenced, and go to
 * the young end as well (they are re-found there if they survive). */
static unsigned
isolate_pass(struct page **out, unsigned nr, bool take_mapped, uint64_t budget)
{
	unsigned got = 0;
	for (struct page *page = lru_head, *next; page && got < nr && budget--; page = next) {
		next = page->lru_next;
		uint32_t flags = atomic_load(&page->flags);
		bool busy = (flags & (PG_locked | PG_dirty | PG_writeback)) ||
		            !page->mapping || page->mapping->unevictable;
		if (!busy && !take_mapped && atomic_load(&page->mapcount) > 0)
			continue;
		lru_rotate(page);
		if (flags & PG_referenced)
			atomic_fetch_and(&page->flags, ~(uint32_t)PG_referenced);
		else if ((flags & PG_active) && atomic_load(&page->mapcount) > 0)
			atomic_fetch_and(&page->flags, ~(uint32_t)PG_active);
		else if (!busy && trylock_page(page)) {
			get_page(page);
			out[got++] = page;
		}
	}
	return got;
}

/* How many victims a pass that takes mapped pages may collect. */
static unsigned
mapped_batch(void)
{
	uint64_t cap = atomic_load_explicit(&mem_limit_pages, memory_order_relaxed) / 16;
	return cap >= RECLAIM_MAPPED_BATCH ? RECLAIM_MAPPED_BATCH
	       : cap > RECLAIM_BATCH       ? (unsigned)cap
	                                   : RECLAIM_BATCH;
}

/* Collect trylocked, referenced eviction candidates: up to RECLAIM_BATCH
 * unmapped ones first (see the top of the file); a pass that takes
 * mapped ones too collects up to mapped_batch(). */
static unsigned
isolate(struct page **out)
{
	pthread_mutex_lock(&lru_lock);
	uint64_t cached = atomic_load(&pw__stat.cached), budget = 2 * cached + 16;
	bool mostly_mapped = 2 * atomic_load(&pw__stat.mapped) >= cached;
	unsigned nr = mostly_mapped ? mapped_batch() : RECLAIM_BATCH;
	unsigned got = isolate_pass(out, nr, mostly_mapped, budget);
	if (got == 0 && !mostly_mapped)
		got = isolate_pass(out, mapped_batch(), true, budget);
	pthread_mutex_unlock(&lru_lock);
	return got;
}

/* Order victims by file, then index, so that each file's mapped pages
 * are unmapped together, in runs.  Insertion sort: a batch is small. */
static void
sort_victims(struct page **v, unsigned n)
{
	for (unsigned i = 1; i < n; i++) {
		struct page *p = v[i];
		unsigned j = i;
		for (; j > 0; j--) {
			struct page *q = v[j - 1];
			if ((uintptr_t)q->mapping < (uintptr_t)p->mapping ||
			    (q->mapping == p->mapping && q->index < p->index))
				break;
			v[j] = q;
		}
		v[j] = p;
	}
}

/* Unmap the mapped victims of each file with one pw__pages_unmap (which
 * skips the unmapped ones). */
static void
unmap_victims(struct page **v, unsigned n)
{
	for (unsigned k = 0; k < n;) {
		unsigned first = k;
		bool mapped = false;
		for (; k < n && v[k]->mapping == v[first]->mapping; k++)
			mapped |= atomic_load(&v[k]->mapcount) > 0;
		if (mapped)
			pw__pages_unmap(v[first]->mapping, v + first, k - first);
	}
}

/* Evict up to nr clean pages.  Victims that cannot go (someone holds a
 * reference: a metadata buffer in use) go to the young end; the scan
 * stops after trying about every cached page twice, so a cache full of
 * such pages ends it.  Return: pages freed. */
static unsigned long
shrink(unsigned long nr)
{
	unsigned long freed = 0, tried = 0;
	unsigned long most = 2 * atomic_load(&pw__stat.cached) + RECLAIM_BATCH;
	in_reclaim = true;
	while (freed < nr && tried < most) {
		unsigned n = isolate(victims), keep = 0;
		tried += n;
		if (n == 0)
			break;
		/* Locked by isolate: clean pages stay clean (a store to one
		 * would fault and need the page lock; invariant 2 of mmap.c). */
		for (unsigned k = 0; k < n; k++) {
			struct page *page = victims[k];
			if (page->mapping && !PageDirty(page) && !PageWriteback(page))
				victims[keep++] = page;
			else {
				unlock_page(page);
				put_page(page);
			}
		}
		sort_victims(victims, keep);
		unmap_victims(victims, keep);
		for (unsigned k = 0; k < keep; k++) {
			struct page *page = victims[k];
			/* Still mapped: the kernel refused the zap (mmap.c).  More
			 * references than the cache's and ours: someone uses it,
			 * e.g. a metadata buffer held with sb_bread (the superblock
			 * is held for the life of the mount), which would be left
			 * pointing into a page that left the cache; checked under
			 * the index lock (pw__remove_mapping). */
			if (!PageDirty(page) && atomic_load(&page->mapcount) == 0 &&
			    pw__remove_mapping(page))
				freed++;
			unlock_page(page);
			put_page(page);
		}
	}
	in_reclaim = false;
	PW_STAT_ADD(reclaimed, freed);
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

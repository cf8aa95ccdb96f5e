/*
 * mmap.c - user mappings of cached pages, the page-fault path, and the
 * reverse map used to unmap or write-protect a page.
 *
 * A vma (struct vm_area_struct) is a range of user addresses that maps a
 * range of a pagewright file.  pw_mmap reserves the range as PROT_NONE
 * anonymous memory: every page starts "not present".  A fault on it comes
 * to pw__handle_mm_fault, which brings the file page uptodate and maps
 * the page's pool frame at the faulting address with mmap(MAP_FIXED):
 *
 *   read fault              frame mapped PROT_READ   (PTE_RO), plus up to
 *                           FAULT_AROUND cached neighbours in one call
 *                           per run of consecutive frames
 *   write fault, shared     page dirtied, frame mapped read-write (PTE_RW),
 *                           plus neighbours that are dirty already
 *   write fault, private    a private anonymous copy of the page (PTE_COW)
 *
 * Clean pages are mapped read-only, so the first store to a shared
 * mapping faults, dirties the page and upgrades the mapping: the kernel's
 * dirty-bit tracking.  Writeback write-protects again (pw__page_mkclean).
 *
 * The reverse map is the kernel's i_mmap: each mapping keeps the list of
 * vmas that map it, and each vma keeps a byte per page (vm_pte) saying
 * what is mapped there.  page->mapcount counts PTE_RO/PTE_RW entries that
 * map the frame, so reclaim and writeback can skip unmapped pages.
 *
 * Unmapping for reclaim (pw__pages_unmap) takes a batch of pages and
 * zaps each run of them that sits at consecutive pages of a vma with one
 * call, gaps of unmapped pages included, so evicting a mapped file costs
 * a system call per run, not per page.  It leaves PTE_GONE where it
 * unmapped, so that a fault there is known for a refault: the pages that
 * fault maps back where reclaim had taken them are marked for a longer
 * stay (reclaim.c).
 *
 * The kernel allows a process vm.max_map_count mappings, and every
 * page-table call here may split one in three.  Near that limit the
 * user mappings of the vmas faulted longest ago are dropped (the
 * mapping-count section below), so that faults and write-protection keep
 * working; a dropped mapping is faulted back on the next access.
 *
 * Invariants:
 *  (1) A PTE_RO or PTE_RW entry maps the frame of the page that is in the
 *      page cache at that index.  Removing a page from the cache unmaps
 *      it first, under the page lock.
 *  (2) PTE_RW implies the page is dirty; clean pages are never writable.
 *  (3) No page wholly past EOF is ever mapped; an access there raises
 *      SIGBUS.
 *
 * Lock ordering:
 *   mmap_lock (read: faults, msync; write: mmap, munmap)
 *     -> page lock            (pw__handle_mm_fault)
 *       -> i_mmap_lock        (pw__page_mkclean, pw__page_unmap)
 *         -> vma lock         (map_pages, zap_range)
 *   A fault never waits for a lock that a thread may hold while touching
 *   user memory with faults enabled: mmap_lock is held for write only by
 *   pw_mmap/pw_munmap, which touch no user memory; page locks are held
 *   during copies only with faults disabled.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define FAULT_AROUND PW_FAULT_AROUND

static pthread_rwlock_t mmap_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct vm_area_struct *vmas; /* (mmap_lock) sorted by vm_start */
_Atomic bool pw__forked_child;

static size_t
vma_pages(const struct vm_area_struct *vma)
{
	return (vma->vm_end - vma->vm_start) >> PAGE_SHIFT;
}

static struct vm_area_struct *
find_vma(uintptr_t addr)
{
	for (struct vm_area_struct *v = vmas; v; v = v->vm_next)
		if (addr >= v->vm_start && addr < v->vm_end)
			return v;
	return NULL;
}

static pgoff_t
pages_in_file(struct inode *inode)
{
	return (pgoff_t)((i_size_read(inode) + (loff_t)PAGE_SIZE - 1) >> PAGE_SHIFT);
}

/* ------------------------------------------------ the mapping-count limit */

/*
 * Each page-table call below (map a run of frames, write-protect a page,
 * zap a range) can split one kernel mapping (VMA) in three, and the
 * kernel refuses a process more than vm.max_map_count of them: mmap and
 * mprotect fail with ENOMEM.  maps_est bounds the process's count from
 * above: the exact count at the last recount (lines of /proc/self/maps,
 * the application's own mappings included) plus two per call since.
 * When it reaches maps_trigger (90% of the limit), the next fault or the
 * writeback thread recounts, and if the count really is that high, zaps
 * the user mappings of the vmas faulted longest ago until the count is
 * under 80%: a zapped stretch becomes one PROT_NONE reservation, which
 * the kernel merges with its neighbours.  User mappings are a cache too:
 * the next access faults them back.  Private copies (PTE_COW) are never
 * dropped, being the only copy of the application's stores.  A call that
 * fails with ENOMEM all the same (the application's own mappings grew)
 * forces a drop: the fault retries once after it; a failed write-protect
 * leaves the page dirty (clear_page_dirty_for_io), so no store is lost.
 *
 * PAGEWRIGHT_MAX_MAP_COUNT overrides the limit (tests use a low one).
 */
static _Atomic long maps_limit;    /* (A) 0: unknown, no tracking */
static _Atomic long maps_est;      /* (A) upper bound, see above */
static _Atomic long maps_trigger;  /* (A) recount when maps_est reaches it */
static _Atomic bool maps_busy;     /* (A) one thread recounts and drops */
static unsigned maps_round;        /* (maps_busy) drop pass number */
static _Atomic uint64_t fault_clock; /* (A) ticks once per fault */

static long
maps_high(void)
{
	long l = atomic_load_explicit(&maps_limit, memory_order_relaxed);
	return l - l / 10;
}

static long
maps_low(void)
{
	long l = atomic_load_explicit(&maps_limit, memory_order_relaxed);
	return l - l / 5;
}

/* The next recount comes when the estimate reaches 90% of the limit; or,
 * when dropping every user mapping could not bring the count under it
 * (the application's own mappings), a margin above the count: not at
 * every fault. */
static void
maps_set_count(long count, bool exhausted)
{
	long l = atomic_load(&maps_limit), margin = PW_MAX(l / 50, 64);
	atomic_store(&pw__stat.map_count, (uint64_t)count);
	atomic_store(&maps_est, count);
	atomic_store(&maps_trigger, exhausted ? PW_MAX(maps_high(), count + margin)
	                                      : maps_high());
}

/* A page-table call failed with ENOMEM: recount (and drop) at the next
 * fault or writeback-thread pass. */
static void
maps_note_enomem(void)
{
	atomic_store(&maps_est, atomic_load(&maps_trigger));
}

/**
 * pw__count_kernel_maps - the process's kernel mappings: the lines of
 * /proc/self/maps.  Async-signal-safe (the fault handler calls it): no
 * malloc, a small buffer on the stack (the handler may run on an
 * application's alternate signal stack).  Return: the count, or -1.
 */
long
pw__count_kernel_maps(void)
{
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	char buf[1024];
	long lines = 0;
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n; i++)
			lines += buf[i] == '\n';
	}
	close(fd);
	return lines;
}

/*
 * Page-table changes go to the kernel directly, not through libc's mmap:
 * a sanitizer's mmap interceptor treats the call as a write of the whole
 * range, and would report every application load or store racing with a
 * fault on another thread as a data race.  On hardware such a race is
 * well defined (the access sees the old or the new mapping, or faults and
 * is served), and these calls are the emulated page-table updates.
 * op names the call for the test hook: 'm' map, 'p' protect, 'z' zap.
 */
static bool
pte_injected(int op)
{
	int e = pw__hooks.pte_call ? pw__hooks.pte_call(op) : 0;
	if (e)
		errno = e;
	return e != 0;
}

static void
pte_done(long r)
{
	if (r == -1) {
		if (errno == ENOMEM)
			maps_note_enomem();
		return;
	}
	atomic_fetch_add_explicit(&maps_est, 2, memory_order_relaxed);
}

static void *
pte_mmap(int op, void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	long r = pte_injected(op) ? -1 : syscall(SYS_mmap, addr, len, prot, flags, fd, off);
	pte_done(r);
	return r == -1 ? MAP_FAILED : (void *)r;
}

static int
pte_mprotect(uintptr_t addr, size_t len, int prot)
{
	long r = pte_injected('p') ? -1 : syscall(SYS_mprotect, addr, len, prot);
	pte_done(r);
	return r == -1 ? -errno : 0;
}

/* Replace [addr, addr+len) with a PROT_NONE reservation.  Return: false
 * if the kernel refused (the old mapping is still there). */
static bool
zap_user(uintptr_t addr, size_t len)
{
	if (pte_mmap('z', (void *)addr, len, PROT_NONE,
	             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1,
	             0) != MAP_FAILED)
		return true;
	pw_log("zap of %#lx+%zu failed: %s", (unsigned long)addr, len, strerror(errno));
	return false;
}

/* Map nr consecutive frames starting at first's at vma page idx; the pages
 * are locked by the caller.  vm_lock held. */
static int
map_frames(struct vm_area_struct *vma, size_t idx, struct page *first, size_t nr,
           int prot)
{
	int flags = (vma->vm_shared ? MAP_SHARED : MAP_PRIVATE) | MAP_FIXED | MAP_POPULATE;
	void *want = (void *)(vma->vm_start + idx * PAGE_SIZE);
	void *got = pte_mmap('m', want, nr * PAGE_SIZE, prot, flags, pw__pool_fd(),
	                     (off_t)(page_to_pfn(first) * PAGE_SIZE));
	return got == MAP_FAILED ? -errno : 0;
}

/* Point pte idx at page (RO or RW), keeping mapcount right.  vm_lock held. */
static void
set_pte(struct vm_area_struct *vma, size_t idx, struct page *page, uint8_t pte)
{
	uint8_t old = vma->vm_pte[idx];
	bool had = old == PTE_RO || old == PTE_RW;
	bool has = pte == PTE_RO || pte == PTE_RW;
	struct super_block *sb = pw__mapping_sb(vma->vm_file->f_mapping);
	vma->vm_pte[idx] = pte;
	if (pte == PTE_RW && !(atomic_load(&page->flags) & PG_wrmapped))
		atomic_fetch_or(&page->flags, PG_wrmapped);
	if (has && !had) {
		if (atomic_fetch_add(&page->mapcount, 1) == 0) {
			PW_STAT_ADD(mapped, 1);
			PW_SB_ADD(sb, s_nr_mapped, 1);
		}
	} else if (had && !has && page) {
		if (atomic_fetch_sub(&page->mapcount, 1) == 1) {
			PW_STAT_SUB(mapped, 1);
			PW_SB_ADD(sb, s_nr_mapped, -1);
		}
	}
}

/*
 * Map the locked target page, and the cached, uptodate neighbours in its
 * fault-around window that we can trylock, with one mmap per run of
 * consecutive frames at consecutive indices.  A read fault maps them
 * read-only.  A write fault (shared mapping, the target already dirtied)
 * maps read-write only neighbours that are dirty already, so that clean
 * pages stay write-protected (invariant 2); and only when the filesystem
 * has no page_mkwrite, which must see every page made writable.
 * Neighbours are only trylocked (never waited for) under vm_lock, and the
 * index lock taken by find_get_page is a leaf.
 */
static int
map_around(struct vm_area_struct *vma, size_t idx, struct page *target, bool write)
{
	struct address_space *mapping = target->mapping;
	size_t first = idx & ~(size_t)(FAULT_AROUND - 1);
	size_t last = PW_MIN(first + FAULT_AROUND, vma_pages(vma));
	pgoff_t eof = pages_in_file(mapping->host);
	struct page *pages[FAULT_AROUND] = {0};
	bool around = !write || !mapping->a_ops->page_mkwrite;
	uint8_t pte = write ? PTE_RW : PTE_RO;

	pthread_mutex_lock(&vma->vm_lock);
	/* A refault: reclaim evicted the page mapped here, and it is used
	 * again.  We cannot see accesses through a mapping, but this one we
	 * do: the pages of the window that reclaim had unmapped from here
	 * come back with more time in the cache than a first fault gives
	 * (below), as a working set rather than a page at a time. */
	bool refault = vma->vm_pte[idx] == PTE_GONE;
	if (refault)
		PW_STAT_ADD(refaults, 1);
	pages[idx - first] = target;
	for (size_t k = first; around && k < last; k++) {
		pgoff_t pg = vma->vm_pgoff + k;
		if (k == idx || pg >= eof || !pte_empty(vma->vm_pte[k]))
			continue;
		struct page *p = find_get_page(mapping, pg);
		if (!p)
			continue;
		if (!PageUptodate(p) || (write && !PageDirty(p)) || !trylock_page(p)) {
			put_page(p);
			continue;
		}
		if (p->mapping != mapping || p->index != pg || !PageUptodate(p) ||
		    (write && !PageDirty(p))) {
			unlock_page(p);
			put_page(p);
			continue;
		}
		pages[k - first] = p;
	}
	int err = 0;
	for (size_t k = first; k < last;) {
		struct page *p = pages[k - first];
		if (!p || (p != target && !pte_empty(vma->vm_pte[k]))) {
			k++;
			continue;
		}
		size_t n = 1;
		while (k + n < last && pages[k + n - first] &&
		       pte_empty(vma->vm_pte[k + n]) &&
		       page_to_pfn(pages[k + n - first]) == page_to_pfn(p) + n)
			n++;
		int e = map_frames(vma, k, p, n, write ? PROT_READ | PROT_WRITE : PROT_READ);
		if (e == 0) {
			for (size_t j = k; j < k + n; j++) {
				if (refault && vma->vm_pte[j] == PTE_GONE)
					atomic_fetch_or(&pages[j - first]->flags,
					                PG_referenced | PG_active);
				set_pte(vma, j, pages[j - first], pte);
			}
			PW_STAT_ADD(fault_around, n - 1);
		} else if (k <= idx && idx < k + n) {
			err = e;
		}
		k += n;
	}
	pthread_mutex_unlock(&vma->vm_lock);
	for (size_t k = first; k < last; k++) {
		struct page *p = pages[k - first];
		if (p && p != target) {
			unlock_page(p);
			put_page(p);
		}
	}
	return err;
}

/* Private write fault: give this address its own copy of the page. */
static int
map_cow(struct vm_area_struct *vma, size_t idx, struct page *page)
{
	void *addr = (void *)(vma->vm_start + idx * PAGE_SIZE);
	pthread_mutex_lock(&vma->vm_lock);
	void *got = pte_mmap('m', addr, PAGE_SIZE, PROT_READ | PROT_WRITE,
	                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	int err = got == MAP_FAILED ? -errno : 0;
	if (err == 0) {
		memcpy(addr, page_address(page), PAGE_SIZE);
		set_pte(vma, idx, page, PTE_COW);
	}
	pthread_mutex_unlock(&vma->vm_lock);
	return err;
}

/*
 * Shared write fault: the page becomes dirty and writable here.  Stable
 * pages: a page under writeback is being written out by a thread that
 * holds no page lock (write_cache_pages), and a store now would change
 * the bytes in flight; wait until they are written.  That thread never
 * waits for anything a fault holds (struct writeback_batch, fs.h).
 */
static int
map_write(struct vm_area_struct *vma, size_t idx, struct page *page)
{
	struct address_space *mapping = page->mapping;
	wait_on_page_writeback(page);
	if (mapping->a_ops->page_mkwrite) {
		int err = mapping->a_ops->page_mkwrite(vma, page);
		if (err)
			return err;
	}
	set_page_dirty(page);
	return map_around(vma, idx, page, true);
}

/* The fault proper; mmap_lock held for read. */
static int
do_fault(struct vm_area_struct *vma, uintptr_t addr, bool write)
{
	size_t idx = (addr - vma->vm_start) >> PAGE_SHIFT;
	pgoff_t pgoff = vma->vm_pgoff + idx;
	struct file *file = vma->vm_file;
	struct address_space *mapping = file->f_mapping;
	struct page *page;

	if (pgoff >= pages_in_file(mapping->host))
		return SIGBUS;
	if (write && vma->vm_shared)
		pw__balance_dirty_fault(mapping);
	if (pw__filemap_fault_page(mapping, file, pgoff, &page) != 0)
		return SIGBUS;
	/* Truncation may have raced with the read; i_size is stable now that
	 * we hold the page lock of a page still in the cache. */
	int err = 0;
	if (pgoff >= pages_in_file(mapping->host))
		err = SIGBUS;
	else if (write && vma->vm_shared)
		err = map_write(vma, idx, page);
	else if (write)
		err = map_cow(vma, idx, page);
	else
		err = map_around(vma, idx, page, false);
	unlock_page(page);
	put_page(page);
	/* -ENOMEM: the kernel's mapping count; the caller drops and retries. */
	return err == -ENOMEM ? err : err ? SIGBUS : 0;
}

static bool maps_shrink_locked(bool force);
static void maps_throttle_locked(void);

int
pw__handle_mm_fault(uintptr_t addr, bool write)
{
	if (atomic_load_explicit(&pw__forked_child, memory_order_relaxed))
		return SIGSEGV;
	pthread_rwlock_rdlock(&mmap_lock);
	maps_throttle_locked();
	struct vm_area_struct *vma = find_vma(addr);
	int r = SIGSEGV;
	if (vma && (vma->vm_prot & (write ? PROT_WRITE : PROT_READ))) {
		atomic_store_explicit(&vma->vm_last_fault,
		                      atomic_fetch_add_explicit(&fault_clock, 1,
		                                                memory_order_relaxed),
		                      memory_order_relaxed);
		r = do_fault(vma, addr, write);
		if (r == -ENOMEM) {
			maps_shrink_locked(true);
			r = do_fault(vma, addr, write);
		}
		if (r == 0)
			PW_STAT_ADD(faults, 1);
		else if (r < 0)
			r = SIGBUS;
	}
	pthread_rwlock_unlock(&mmap_lock);
	return r;
}

/* ------------------------------------------------------------ rmap walks */

/* vm_lock held: the vma page that maps mapping index pg, or -1. */
static long
vma_index_of(struct vm_area_struct *vma, pgoff_t pg)
{
	if (pg < vma->vm_pgoff || pg >= vma->vm_pgoff + vma_pages(vma))
		return -1;
	return (long)(pg - vma->vm_pgoff);
}

/**
 * pw__page_mkclean - write-protect every shared mapping of a locked page.
 * Context: page locked; takes i_mmap_lock and vma locks.
 */
bool
pw__page_mkclean(struct page *page)
{
	struct address_space *mapping = page->mapping;
	bool clean = true;
	if (!mapping)
		return true;
	pthread_mutex_lock(&mapping->i_mmap_lock);
	for (struct vm_area_struct *v = mapping->i_mmap; v; v = v->vm_i_next) {
		long k = vma_index_of(v, page->index);
		if (k < 0 || !v->vm_shared)
			continue;
		pthread_mutex_lock(&v->vm_lock);
		if (v->vm_pte[k] == PTE_RW) {
			int err = pte_mprotect(v->vm_start + (size_t)k * PAGE_SIZE, PAGE_SIZE,
			                       PROT_READ);
			if (err == 0)
				v->vm_pte[k] = PTE_RO;
			else {
				pw_log("mkclean: mprotect failed: %s", strerror(-err));
				clean = false;
			}
		}
		pthread_mutex_unlock(&v->vm_lock);
	}
	pthread_mutex_unlock(&mapping->i_mmap_lock);
	return clean;
}

/*
 * The kernel refused to zap vma pages [from, to): they still show their
 * frames.  Forget them as entries (PTE_NONE: a fault there maps afresh,
 * with its own count) but leave each page's mapcount up, so that
 * put_page never returns its frame to the pool: a frame reused for other
 * data would show that data through this address.  The process sees the
 * old bytes there until it unmaps the range.  vm_lock held.
 */
static void
zap_refused(struct vm_area_struct *vma, size_t from, size_t to)
{
	for (size_t k = from; k < to; k++)
		if (vma->vm_pte[k] != PTE_COW && !pte_empty(vma->vm_pte[k]))
			vma->vm_pte[k] = PTE_NONE;
}

/* Zap vma pages [from, to), private copies included, one call per run of
 * present entries.  vm_lock held. */
static void
zap_range(struct vm_area_struct *vma, size_t from, size_t to)
{
	struct address_space *mapping = vma->vm_file->f_mapping;
	size_t run = SIZE_MAX;
	for (size_t k = from; k <= to; k++) {
		if (k < to && !pte_empty(vma->vm_pte[k])) {
			if (run == SIZE_MAX)
				run = k;
			continue;
		}
		if (run == SIZE_MAX)
			continue;
		if (!zap_user(vma->vm_start + run * PAGE_SIZE, (k - run) * PAGE_SIZE)) {
			zap_refused(vma, run, k);
			run = SIZE_MAX;
			continue;
		}
		for (size_t j = run; j < k; j++) {
			struct page *page = NULL;
			if (vma->vm_pte[j] != PTE_COW)
				page = find_get_page(mapping, vma->vm_pgoff + j);
			set_pte(vma, j, page, PTE_NONE);
			if (page)
				put_page(page);
		}
		run = SIZE_MAX;
	}
}

/* Zap vma pages [from, to) with one call, mapped or not, leaving `left`
 * (PTE_GONE for reclaim, else PTE_NONE) where pages were mapped; vm_lock
 * held, and no private copy (PTE_COW) in the range.  Return: false if
 * the kernel refused (the entries are left as they were). */
static bool
zap_span(struct vm_area_struct *vma, size_t from, size_t to, uint8_t left)
{
	struct address_space *mapping = vma->vm_file->f_mapping;
	if (!zap_user(vma->vm_start + from * PAGE_SIZE, (to - from) * PAGE_SIZE))
		return false;
	for (size_t k = from; k < to; k++) {
		if (vma->vm_pte[k] != PTE_RO && vma->vm_pte[k] != PTE_RW)
			continue;
		struct page *page = find_get_page(mapping, vma->vm_pgoff + k);
		set_pte(vma, k, page, left);
		if (page)
			put_page(page);
	}
	return true;
}

/* May vma pages (last, next) join a zap run: are they all unmapped (a
 * zap there changes nothing)?  vm_lock held. */
static bool
gap_unmapped(struct vm_area_struct *vma, size_t last, size_t next)
{
	if (next - last > 4 * FAULT_AROUND)
		return false;
	for (size_t k = last + 1; k < next; k++)
		if (!pte_empty(vma->vm_pte[k]))
			return false;
	return true;
}

/**
 * pw__pages_unmap - remove every user mapping of nr locked pages of one
 * mapping, sorted by index (reclaim).  In each vma, pages at consecutive
 * vma pages (or separated only by unmapped ones) are zapped with one
 * call.  If the kernel refuses a zap, those pages stay mapped (mapcount
 * stays up), so reclaim keeps them.
 * Context: the pages locked; takes i_mmap_lock, then each vma's lock.
 */
void
pw__pages_unmap(struct address_space *mapping, struct page **pages, unsigned nr)
{
	pthread_mutex_lock(&mapping->i_mmap_lock);
	for (struct vm_area_struct *v = mapping->i_mmap; v; v = v->vm_i_next) {
		size_t first = SIZE_MAX, last = 0;
		pthread_mutex_lock(&v->vm_lock);
		for (unsigned k = 0; k <= nr; k++) {
			long i = -1;
			if (k < nr && atomic_load(&pages[k]->mapcount) > 0 &&
			    (i = vma_index_of(v, pages[k]->index)) >= 0 &&
			    v->vm_pte[i] != PTE_RO && v->vm_pte[i] != PTE_RW)
				i = -1;
			if (i < 0 && k < nr)
				continue;
			if (first != SIZE_MAX &&
			    (k == nr || !gap_unmapped(v, last, (size_t)i))) {
				if (zap_span(v, first, last + 1, PTE_GONE))
					PW_STAT_ADD(reclaim_unmaps, 1);
				first = SIZE_MAX;
			}
			if (k < nr) {
				if (first == SIZE_MAX)
					first = (size_t)i;
				last = (size_t)i;
			}
		}
		pthread_mutex_unlock(&v->vm_lock);
	}
	pthread_mutex_unlock(&mapping->i_mmap_lock);
}

/**
 * pw__page_unmap - remove every user mapping of a locked page, before it
 * leaves the page cache.  Private copies are not touched.
 */
void
pw__page_unmap(struct page *page)
{
	struct address_space *mapping = page->mapping;
	if (!mapping || atomic_load(&page->mapcount) == 0)
		return;
	pthread_mutex_lock(&mapping->i_mmap_lock);
	for (struct vm_area_struct *v = mapping->i_mmap; v; v = v->vm_i_next) {
		long k = vma_index_of(v, page->index);
		if (k < 0)
			continue;
		pthread_mutex_lock(&v->vm_lock);
		if (v->vm_pte[k] == PTE_RO || v->vm_pte[k] == PTE_RW) {
			if (zap_user(v->vm_start + (size_t)k * PAGE_SIZE, PAGE_SIZE))
				set_pte(v, (size_t)k, page, PTE_NONE);
			else
				zap_refused(v, (size_t)k, (size_t)k + 1);
		}
		pthread_mutex_unlock(&v->vm_lock);
	}
	pthread_mutex_unlock(&mapping->i_mmap_lock);
}

/**
 * unmap_mapping_range - unmap [start, start+len) of the file (len 0: to
 * the end) from every vma, private copies included, as truncation needs.
 */
void
unmap_mapping_range(struct address_space *mapping, loff_t start, loff_t len)
{
	pgoff_t first = (pgoff_t)start >> PAGE_SHIFT;
	pgoff_t end = len ? (pgoff_t)(start + len + (loff_t)PAGE_SIZE - 1) >> PAGE_SHIFT
	                  : ~(pgoff_t)0;
	pthread_mutex_lock(&mapping->i_mmap_lock);
	for (struct vm_area_struct *v = mapping->i_mmap; v; v = v->vm_i_next) {
		pgoff_t vfirst = v->vm_pgoff, vend = v->vm_pgoff + vma_pages(v);
		if (vend <= first || vfirst >= end)
			continue;
		size_t from = first > vfirst ? first - vfirst : 0;
		size_t to = (end < vend ? end : vend) - vfirst;
		pthread_mutex_lock(&v->vm_lock);
		zap_range(v, from, to);
		pthread_mutex_unlock(&v->vm_lock);
	}
	pthread_mutex_unlock(&mapping->i_mmap_lock);
}

/* ------------------------------------------- dropping cold user mappings */

/* Zap every pool frame v maps, private copies kept: one call per stretch
 * between private copies.  vm_lock held.  Return: the runs of mapped
 * pages it had (each run is at least one kernel mapping, between two
 * PROT_NONE ones: zapping it merges them back). */
static long
zap_vma_shared(struct vm_area_struct *v)
{
	size_t n = vma_pages(v), first = SIZE_MAX, last = 0;
	long runs = 0;
	for (size_t k = 0; k <= n; k++) {
		uint8_t pte = k < n ? v->vm_pte[k] : PTE_COW;
		if (pte == PTE_RO || pte == PTE_RW) {
			if (k == 0 || (v->vm_pte[k - 1] != PTE_RO && v->vm_pte[k - 1] != PTE_RW))
				runs++;
			if (first == SIZE_MAX)
				first = k;
			last = k;
		} else if (pte == PTE_COW && first != SIZE_MAX) {
			zap_span(v, first, last + 1, PTE_NONE);
			first = SIZE_MAX;
		}
	}
	return runs;
}

/* Zap the vmas faulted longest ago until the estimated count is under
 * target.  mmap_lock held (read is enough: each vma under its vm_lock);
 * maps_busy held; no page lock.  Return: the count after; *exhausted if
 * every vma was dropped. */
static long
drop_cold_vmas(long count, long target, bool *exhausted)
{
	unsigned round = ++maps_round;
	long est = count, dropped = 0;
	*exhausted = false;
	while (est > target) {
		struct vm_area_struct *cold = NULL;
		for (struct vm_area_struct *v = vmas; v; v = v->vm_next)
			if (v->vm_drop_round != round &&
			    (!cold || atomic_load(&v->vm_last_fault) < atomic_load(&cold->vm_last_fault)))
				cold = v;
		if (!cold) {
			*exhausted = true;
			break;
		}
		cold->vm_drop_round = round;
		pthread_mutex_lock(&cold->vm_lock);
		long runs = zap_vma_shared(cold);
		pthread_mutex_unlock(&cold->vm_lock);
		if (runs) {
			est -= 2 * runs;
			dropped++;
		}
	}
	if (!dropped)
		return count;
	PW_STAT_ADD(map_drops, 1);
	PW_STAT_ADD(map_dropped_vmas, (uint64_t)dropped);
	long now = pw__count_kernel_maps();
	return now >= 0 ? now : est;
}

/* Recount, and drop cold mappings if the count is near the limit (or
 * force: a page-table call just failed with ENOMEM).  mmap_lock held, no
 * page lock.  Return: false if another thread is at it. */
static bool
maps_shrink_locked(bool force)
{
	if (atomic_load(&maps_limit) == 0)
		return true;
	if (atomic_exchange(&maps_busy, true))
		return false;
	long count = pw__count_kernel_maps();
	if (count >= 0) {
		bool exhausted = false;
		if (force || count >= maps_high()) {
			long target = maps_low();
			if (force)
				target = PW_MIN(target, count - count / 4);
			count = drop_cold_vmas(count, target, &exhausted);
		}
		maps_set_count(count, exhausted);
	}
	atomic_store(&maps_busy, false);
	return true;
}

static bool
maps_over_trigger(void)
{
	return atomic_load_explicit(&maps_est, memory_order_relaxed) >=
	       atomic_load_explicit(&maps_trigger, memory_order_relaxed);
}

/* Before a fault adds mappings: over the trigger, recount and drop, or
 * wait while another thread does (so that threads faulting together do
 * not run past the limit while one of them makes room).  Waiting is
 * allowed: no page lock is held yet, and the other thread takes only
 * vma locks.  mmap_lock held for read. */
static void
maps_throttle_locked(void)
{
	while (maps_over_trigger() && !maps_shrink_locked(false)) {
		struct timespec ts = {0, 50 * 1000};
		nanosleep(&ts, NULL);
	}
}

/**
 * pw__mm_maps_check - the writeback thread's periodic look at the
 * mapping count (faults look at every fault).  Context: no locks held.
 */
void
pw__mm_maps_check(void)
{
	if (!maps_over_trigger())
		return;
	pthread_rwlock_rdlock(&mmap_lock);
	maps_shrink_locked(false);
	pthread_rwlock_unlock(&mmap_lock);
}

static long
read_max_map_count(void)
{
	const char *env = getenv("PAGEWRIGHT_MAX_MAP_COUNT");
	if (env && *env) {
		long v = strtol(env, NULL, 10);
		if (v >= 64)
			return v;
		pw_log("PAGEWRIGHT_MAX_MAP_COUNT=%s ignored: want a count >= 64", env);
	}
	long v = 0;
	FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = 0;
		fclose(f);
	}
	return v > 0 ? v : 65530; /* the kernel's default */
}

long
pw__max_map_count(void)
{
	return atomic_load(&maps_limit);
}

void
pw__mm_maps_init(void)
{
	pw__test_set_max_map_count(read_max_map_count());
}

void
pw__test_set_max_map_count(long limit)
{
	pthread_rwlock_wrlock(&mmap_lock);
	atomic_store(&maps_limit, limit > 0 ? limit : read_max_map_count());
	long count = pw__count_kernel_maps();
	maps_set_count(count >= 0 ? count : 0, false);
	pthread_rwlock_unlock(&mmap_lock);
}

/* ------------------------------------------------------------ the API */

/* Test hook: unmap every mapping (the runner's cleanup). */
void
pw__test_munmap_all(void)
{
	for (;;) {
		pthread_rwlock_rdlock(&mmap_lock);
		uintptr_t start = vmas ? vmas->vm_start : 0, end = vmas ? vmas->vm_end : 0;
		pthread_rwlock_unlock(&mmap_lock);
		if (!start || pw__do_munmap((void *)start, end - start) != 0)
			return;
	}
}

/* The global list, sorted by address; mmap_lock held for write. */
static void
vmas_insert(struct vm_area_struct *vma)
{
	struct vm_area_struct **pp = &vmas;
	while (*pp && (*pp)->vm_start < vma->vm_start)
		pp = &(*pp)->vm_next;
	vma->vm_next = *pp;
	*pp = vma;
}

static void
vmas_remove(struct vm_area_struct *vma)
{
	struct vm_area_struct **pp = &vmas;
	while (*pp != vma)
		pp = &(*pp)->vm_next;
	*pp = vma->vm_next;
}

/* The mapping's reverse map; i_mmap_lock held. */
static void
i_mmap_insert(struct address_space *mapping, struct vm_area_struct *vma)
{
	vma->vm_i_next = mapping->i_mmap;
	mapping->i_mmap = vma;
}

static void
i_mmap_remove(struct address_space *mapping, struct vm_area_struct *vma)
{
	struct vm_area_struct **pp = &mapping->i_mmap;
	while (*pp != vma)
		pp = &(*pp)->vm_i_next;
	*pp = vma->vm_i_next;
}

static void
vma_link(struct vm_area_struct *vma)
{
	struct address_space *mapping = vma->vm_file->f_mapping;
	vmas_insert(vma);
	pthread_mutex_lock(&mapping->i_mmap_lock);
	i_mmap_insert(mapping, vma);
	pthread_mutex_unlock(&mapping->i_mmap_lock);
}

static struct vm_area_struct *
vma_alloc(uintptr_t start, uintptr_t end, pgoff_t pgoff, int prot, bool shared,
          struct file *file)
{
	struct vm_area_struct *v = calloc(1, sizeof(*v));
	if (!v)
		return NULL;
	v->vm_pte = calloc((end - start) >> PAGE_SHIFT, 1);
	if (!v->vm_pte) {
		free(v);
		return NULL;
	}
	v->vm_start = start;
	v->vm_end = end;
	v->vm_pgoff = pgoff;
	v->vm_prot = prot;
	v->vm_shared = shared;
	v->vm_file = file;
	atomic_store(&v->vm_last_fault, atomic_load(&fault_clock));
	atomic_fetch_add(&file->f_count, 1);
	pthread_mutex_init(&v->vm_lock, NULL);
	return v;
}

static void
vma_free(struct vm_area_struct *v)
{
	pw__fput(v->vm_file);
	pthread_mutex_destroy(&v->vm_lock);
	free(v->vm_pte);
	free(v);
}

/* Remove [start, end) from every vma; mmap_lock held for write.  A vma cut
 * in the middle becomes two. */
static int
do_munmap(uintptr_t start, uintptr_t end)
{
	struct vm_area_struct *v = vmas, *next;
	for (; v; v = next) {
		next = v->vm_next;
		if (v->vm_end <= start || v->vm_start >= end)
			continue;
		uintptr_t cut0 = PW_MAX(start, v->vm_start), cut1 = PW_MIN(end, v->vm_end);
		struct vm_area_struct *head = NULL, *tail = NULL;
		if (v->vm_start < cut0) {
			head = vma_alloc(v->vm_start, cut0, v->vm_pgoff, v->vm_prot,
			                 v->vm_shared, v->vm_file);
			if (!head)
				return -ENOMEM;
		}
		if (cut1 < v->vm_end) {
			tail = vma_alloc(cut1, v->vm_end,
			                 v->vm_pgoff + ((cut1 - v->vm_start) >> PAGE_SHIFT),
			                 v->vm_prot, v->vm_shared, v->vm_file);
			if (!tail) {
				if (head)
					vma_free(head);
				return -ENOMEM;
			}
		}
		/*
		 * The pieces inherit the PTE state of their pages, and replace v
		 * in the reverse map in one step under i_mmap_lock: an rmap walk
		 * (eviction, truncation) must never find the pages of head or
		 * tail mapped with no vma to unmap them from, nor see the same
		 * mapping through two vmas.
		 */
		struct address_space *mapping = v->vm_file->f_mapping;
		pthread_mutex_lock(&mapping->i_mmap_lock);
		pthread_mutex_lock(&v->vm_lock);
		if (head)
			memcpy(head->vm_pte, v->vm_pte, vma_pages(head));
		if (tail)
			memcpy(tail->vm_pte, v->vm_pte + ((cut1 - v->vm_start) >> PAGE_SHIFT),
			       vma_pages(tail));
		size_t from = (cut0 - v->vm_start) >> PAGE_SHIFT;
		size_t to = (cut1 - v->vm_start) >> PAGE_SHIFT;
		zap_range(v, from, to);
		pthread_mutex_unlock(&v->vm_lock);
		i_mmap_remove(mapping, v);
		if (head)
			i_mmap_insert(mapping, head);
		if (tail)
			i_mmap_insert(mapping, tail);
		pthread_mutex_unlock(&mapping->i_mmap_lock);
		vmas_remove(v);
		if (head)
			vmas_insert(head);
		if (tail)
			vmas_insert(tail);
		if (munmap((void *)cut0, cut1 - cut0) != 0)
			pw_log("munmap: %s", strerror(errno));
		pte_done(0); /* cutting a reservation in the middle splits it */
		vma_free(v);
	}
	return 0;
}

void *
pw__do_mmap(void *addr, size_t length, int prot, int flags, struct file *file,
            off_t offset, int *errp)
{
	size_t len = (length + PAGE_SIZE - 1) & PAGE_MASK;
	bool fixed = flags & MAP_FIXED;
	bool shared = (flags & MAP_TYPE) != MAP_PRIVATE;
	int reserve = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
	void *base = MAP_FAILED;
	struct vm_area_struct *v = NULL;

	pthread_rwlock_wrlock(&mmap_lock);
	if (fixed) {
		/* MAP_FIXED replaces what was there, our own vmas included. */
		int err = do_munmap((uintptr_t)addr, (uintptr_t)addr + len);
		if (err) {
			*errp = -err;
			goto out;
		}
		base = mmap(addr, len, PROT_NONE, reserve | MAP_FIXED, -1, 0);
	} else {
		base = mmap(NULL, len, PROT_NONE, reserve, -1, 0);
	}
	if (base == MAP_FAILED) {
		*errp = errno;
		goto out;
	}
	pte_done(0);
	v = vma_alloc((uintptr_t)base, (uintptr_t)base + len,
	              (pgoff_t)offset >> PAGE_SHIFT, prot, shared, file);
	if (!v) {
		munmap(base, len);
		base = MAP_FAILED;
		*errp = ENOMEM;
		goto out;
	}
	vma_link(v);
out:
	pthread_rwlock_unlock(&mmap_lock);
	if (base != MAP_FAILED && (flags & MAP_POPULATE)) {
		for (size_t off = 0; off < len; off += PAGE_SIZE) {
			char c;
			if (copy_from_user(&c, (char *)base + off, 1))
				break;
		}
	}
	return base;
}

int
pw__do_munmap(void *addr, size_t length)
{
	uintptr_t start = (uintptr_t)addr;
	if (start & (PAGE_SIZE - 1) || length == 0)
		return -EINVAL;
	uintptr_t end = start + ((length + PAGE_SIZE - 1) & PAGE_MASK);
	pthread_rwlock_wrlock(&mmap_lock);
	int err = do_munmap(start, end);
	pthread_rwlock_unlock(&mmap_lock);
	return err;
}

/* Visit each vma piece overlapping [start, end) with mmap_lock held for
 * read; fn returns non-zero to stop.  -ENOMEM if part of the range is not
 * a pagewright mapping (as msync and madvise report). */
static int
walk_range(uintptr_t start, uintptr_t end,
           int (*fn)(struct vm_area_struct *, uintptr_t, uintptr_t, void *),
           void *arg)
{
	pthread_rwlock_rdlock(&mmap_lock);
	int err = 0;
	uintptr_t at = start;
	for (struct vm_area_struct *v = vmas; v && at < end && !err; v = v->vm_next) {
		if (v->vm_end <= at)
			continue;
		if (v->vm_start > at) {
			err = -ENOMEM;
			break;
		}
		uintptr_t e = PW_MIN(end, v->vm_end);
		err = fn(v, at, e, arg);
		at = e;
	}
	if (!err && at < end)
		err = -ENOMEM;
	pthread_rwlock_unlock(&mmap_lock);
	return err;
}

static int
msync_one(struct vm_area_struct *v, uintptr_t s, uintptr_t e, void *arg)
{
	(void)arg;
	if (!v->vm_shared)
		return 0;
	loff_t off = (loff_t)((v->vm_pgoff << PAGE_SHIFT) + (s - v->vm_start));
	return pw__vfs_fsync_range(v->vm_file, off, off + (loff_t)(e - s) - 1, false);
}

static int
nop_one(struct vm_area_struct *v, uintptr_t s, uintptr_t e, void *arg)
{
	(void)v, (void)s, (void)e, (void)arg;
	return 0;
}

static int
dontneed_one(struct vm_area_struct *v, uintptr_t s, uintptr_t e, void *arg)
{
	(void)arg;
	pthread_mutex_lock(&v->vm_lock);
	zap_range(v, (s - v->vm_start) >> PAGE_SHIFT, (e - v->vm_start) >> PAGE_SHIFT);
	pthread_mutex_unlock(&v->vm_lock);
	return 0;
}

int
pw__do_msync(void *addr, size_t length, int flags)
{
	uintptr_t start = (uintptr_t)addr;
	if (start & (PAGE_SIZE - 1) || (flags & ~(MS_ASYNC | MS_SYNC | MS_INVALIDATE)) ||
	    ((flags & MS_ASYNC) && (flags & MS_SYNC)))
		return -EINVAL;
	uintptr_t end = start + ((length + PAGE_SIZE - 1) & PAGE_MASK);
	/* MS_ASYNC: the kernel only schedules writeback; dirty pages are
	 * already tracked, so there is nothing to do now. */
	if (!(flags & MS_SYNC))
		return walk_range(start, end, nop_one, NULL);
	return walk_range(start, end, msync_one, NULL);
}

int
pw__do_madvise(void *addr, size_t length, int advice)
{
	uintptr_t start = (uintptr_t)addr;
	if (start & (PAGE_SIZE - 1))
		return -EINVAL;
	uintptr_t end = start + ((length + PAGE_SIZE - 1) & PAGE_MASK);
	switch (advice) {
	case MADV_DONTNEED:
		return walk_range(start, end, dontneed_one, NULL);
	case MADV_NORMAL:
	case MADV_RANDOM:
	case MADV_SEQUENTIAL:
	case MADV_WILLNEED:
		return 0;
	default:
		return -EINVAL;
	}
}

/* ------------------------------------------------------------ fork */

void
pw__mm_atfork_prepare(void)
{
	pthread_rwlock_wrlock(&mmap_lock);
}

void
pw__mm_atfork_parent(void)
{
	pthread_rwlock_unlock(&mmap_lock);
}

/*
 * In the child, the pool is still the parent's memory (MAP_SHARED): a
 * store through a mapping would land in the parent's cache.  Each run of
 * mapped pool frames is replaced by a private anonymous copy, so the
 * child keeps seeing its data and its stores stay its own.  Pages that
 * were not mapped stay PROT_NONE: touching them in the child is a
 * SIGSEGV, since the child has no cache to serve them from.  The child is
 * single-threaded here and holds mmap_lock (taken in prepare).
 */
void
pw__mm_atfork_child(void)
{
	atomic_store(&pw__forked_child, true);
	for (struct vm_area_struct *v = vmas; v; v = v->vm_next) {
		size_t n = vma_pages(v);
		for (size_t k = 0; k < n;) {
			if (v->vm_pte[k] != PTE_RO && v->vm_pte[k] != PTE_RW) {
				k++;
				continue;
			}
			size_t run = 1;
			while (k + run < n &&
			       (v->vm_pte[k + run] == PTE_RO || v->vm_pte[k + run] == PTE_RW))
				run++;
			void *addr = (void *)(v->vm_start + k * PAGE_SIZE);
			size_t len = run * PAGE_SIZE;
			void *tmp = mmap(NULL, len, PROT_READ | PROT_WRITE,
			                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (tmp != MAP_FAILED) {
				memcpy(tmp, addr, len);
				if (v->vm_pte[k] == PTE_RO)
					mprotect(tmp, len, PROT_READ);
				if (mremap(tmp, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, addr) ==
				    MAP_FAILED)
					zap_user((uintptr_t)addr, len);
			} else {
				zap_user((uintptr_t)addr, len);
			}
			k += run;
		}
	}
	pthread_rwlock_unlock(&mmap_lock);
}

/*
 * pool.c - physical memory: the page pool, page metadata, and the page
 * primitives (references, the page lock, dirty and writeback state).
 *
 * The pool is one memfd.  Frame n is the 4 KiB at offset n * PAGE_SIZE of
 * that file.  The library maps the whole pool once, read-write, at
 * pool_base (the "direct map": page_address()), inside a virtual range
 * reserved up front so that growing the pool never moves it.  User
 * mappings map the same frames again with mmap(MAP_SHARED|MAP_FIXED), so a
 * store through a user mapping and a copy through the direct map meet in
 * the same physical page, as in the kernel.
 *
 * Page metadata lives in an array indexed by frame number (pool_pages),
 * also in a reserved range, so pfn <-> struct page is arithmetic.
 *
 * The pool grows in chunks of POOL_CHUNK frames.  Free frames are a bitmap
 * (pool_free, 1 = free); pw__alloc_page() prefers the frame after a hint
 * so that consecutive pages of a file sit in consecutive frames, which lets
 * one mmap() call map a run of them and lets the kernel merge the
 * resulting mappings.
 *
 * The page lock is the PG_locked bit of page->flags; sleepers set
 * PG_waiters and wait on the flags word as a futex.  Unlock and
 * end-of-writeback clear PG_waiters and wake every sleeper, who re-check
 * their own condition.  All of it is async-signal-safe, so the fault
 * handler may lock pages.
 *
 * Invariants:
 *  (1) refcount == 0 <=> the frame's bit in pool_free is set.
 *  (2) A page in a page-cache index holds one reference for the index.
 *  (3) A page is freed with no mapping, no PG_dirty and no user PTEs.
 *
 * Lock ordering: pool_lock is a leaf.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define POOL_MAX_FRAMES (1UL << 24) /* 64 GiB of address space */
#define POOL_CHUNK 4096UL           /* frames per growth step: 16 MiB */

static int pool_fd = -1;
static char *pool_base;           /* (C) the direct map */
static struct page *pool_pages;   /* (C) metadata, by frame number */
static uint64_t *pool_free;       /* (pool_lock) 1 bit per frame */
static unsigned long pool_nr;     /* (pool_lock) frames in the pool */
static unsigned long pool_cursor; /* (pool_lock) where the last scan ended */
static unsigned long pool_run_end = ULONG_MAX; /* (pool_lock) last frame of the newest run */
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
/* The most recently freed frames, newest last: reusing them keeps the
 * data cache warm (a truncate-and-append loop would otherwise walk the
 * whole pool).  Entries may have been allocated since; pop checks. */
#define RECENT_MAX 256
static unsigned long recent[RECENT_MAX]; /* (pool_lock) */
static unsigned recent_nr;               /* (pool_lock) */
static unsigned long pool_nfree;         /* (pool_lock) bits set in pool_free */

struct pw__counters pw__stat;

_Static_assert(sizeof(struct page) <= 64, "page metadata must fit 64 bytes");

/*
 * Frames are mapped (populated) lazily, a group of POPULATE_GROUP at a
 * time, by the first access from user space (pw__page_populate, called
 * where the library copies into or out of a frame).  Frames the kernel
 * fills and reads itself (readahead by splice into the memfd, a FUSE
 * READ answered by pread of the memfd) are never mapped: a cold 256 MiB
 * read through a fresh FUSE server ran at 760-830 MB/s this way against
 * 630-690 with every chunk populated as it was added to the pool
 * (interleaved runs on the development VM).  Populating a group at once
 * (MADV_POPULATE_WRITE, Linux 5.14+) costs much less than a fault per
 * page, each a trip through the kernel and, on the development machines,
 * the hypervisor's shadow page tables: creating 100-byte files, which
 * take a fresh frame each, ran 20% slower with a fault per frame.
 */
#define POPULATE_GROUP 64UL        /* frames: 256 KiB */
/* A group's frames are one word of pool_free (the warmer reads them so). */
_Static_assert(POPULATE_GROUP == 8 * sizeof(uint64_t), "a group is one pool_free word");
static _Atomic uint64_t *pool_popul; /* 1 bit per group: mapped */
static _Atomic uint64_t *pool_warm;  /* 1 bit per group: visited by the warmer (below) */
static _Atomic uint64_t *pool_entered; /* 1 bit per group: a user copy touched a frame */

static void warm_poke(void);

/* Bit g of a per-group map (pool_popul, pool_warm, pool_entered). */
static bool
group_test(_Atomic uint64_t *map, unsigned long g)
{
	return atomic_load_explicit(&map[g / 64], memory_order_relaxed) >> (g % 64) & 1;
}

static void
group_set(_Atomic uint64_t *map, unsigned long g)
{
	atomic_fetch_or_explicit(&map[g / 64], 1ULL << (g % 64), memory_order_relaxed);
}

/* Map group g's frames unless done before. */
static void
populate_group(unsigned long g)
{
	if (group_test(pool_popul, g))
		return;
#ifdef MADV_POPULATE_WRITE
	/* Frames of the group in use keep their data: this only maps them. */
	(void)madvise(pool_base + g * POPULATE_GROUP * PAGE_SIZE, POPULATE_GROUP * PAGE_SIZE,
	              MADV_POPULATE_WRITE);
#endif
	group_set(pool_popul, g);
}

void
pw__page_populate(struct page *page)
{
	populate_group(page_to_pfn(page) / POPULATE_GROUP);
}

void
pw__page_populate_copy(struct page *page)
{
	unsigned long g = page_to_pfn(page) / POPULATE_GROUP;
	populate_group(g);
	/* A user copy's first touch of a group, warmed or not: one more
	 * group to warm, so that the warmer keeps ahead of them (were only
	 * groups users populated themselves owed, they would enter every
	 * other group cold).  Readers owe too: the frames the kernel filled
	 * for them are copied out from here.  The warmer leaves the frames it
	 * touches free (warm_group), so a reader's readahead still takes them
	 * in runs. */
	if (!group_test(pool_entered, g)) {
		group_set(pool_entered, g);
		warm_poke();
	}
}

static void *
reserve(size_t len, int prot)
{
	void *p = mmap(NULL, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
	               -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

int
pw__pool_init(void)
{
	pool_fd = memfd_create("pagewright-pool", MFD_CLOEXEC);
	if (pool_fd < 0)
		return -errno;
	pool_base = reserve(POOL_MAX_FRAMES * PAGE_SIZE, PROT_NONE);
	pool_pages = reserve(POOL_MAX_FRAMES * sizeof(struct page),
	                     PROT_READ | PROT_WRITE);
	pool_free = reserve(POOL_MAX_FRAMES / 8, PROT_READ | PROT_WRITE);
	pool_popul = reserve(POOL_MAX_FRAMES / POPULATE_GROUP / 8, PROT_READ | PROT_WRITE);
	pool_warm = reserve(POOL_MAX_FRAMES / POPULATE_GROUP / 8, PROT_READ | PROT_WRITE);
	pool_entered = reserve(POOL_MAX_FRAMES / POPULATE_GROUP / 8, PROT_READ | PROT_WRITE);
	if (!pool_base || !pool_pages || !pool_free || !pool_popul || !pool_warm ||
	    !pool_entered)
		return -ENOMEM;
	return 0;
}

int
pw__pool_fd(void)
{
	return pool_fd;
}

/*
 * Reading into the pool in the kernel.  A read(2) into a pool page is the
 * kernel storing through our mapping of it; on the development VMs (a
 * hypervisor with shadow page tables) the first such access to each page
 * costs several microseconds, and a fresh server's pool is all first
 * accesses: preadv from a cached image into fresh frames ran at 250-400
 * MB/s there, against 2.7-2.9 GB/s for the same bytes moved from the image
 * into the pool's memfd with splice(2) (image -> pipe -> memfd), which
 * copies between the two files' pages inside the kernel and never goes
 * through a user address.  Each thread keeps a pipe for it, closed when
 * the thread ends.
 */
static pthread_key_t splice_key;
static pthread_once_t splice_once = PTHREAD_ONCE_INIT;
static __thread int splice_pipe[2] = {-1, -1};
static __thread bool splice_broken;

static void
splice_pipe_close(void *arg)
{
	(void)arg;
	if (splice_pipe[0] >= 0) {
		close(splice_pipe[0]);
		close(splice_pipe[1]);
	}
	splice_pipe[0] = splice_pipe[1] = -1;
}

static void
splice_key_init(void)
{
	pthread_key_create(&splice_key, splice_pipe_close);
}

static bool
splice_pipe_get(void)
{
	if (splice_pipe[0] >= 0)
		return true;
	if (splice_broken || pipe2(splice_pipe, O_CLOEXEC) != 0) {
		splice_pipe[0] = splice_pipe[1] = -1;
		return false;
	}
	/* One call per mpage run (256 KiB) when the limit allows it. */
	(void)fcntl(splice_pipe[1], F_SETPIPE_SZ, 1 << 20);
	pthread_once(&splice_once, splice_key_init);
	pthread_setspecific(splice_key, splice_pipe);
	return true;
}

/* Move len bytes at *in of fd into the memfd at *out.  0, -ENOTSUP (no
 * byte moved: splice does not work here) or -EIO. */
static int
splice_run(int fd, loff_t *in, loff_t *out, size_t len)
{
	bool moved = false;
	while (len > 0) {
		ssize_t n = splice(fd, in, splice_pipe[1], NULL, len, SPLICE_F_MOVE);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n < 0 && !moved && (errno == EINVAL || errno == ENOSYS ||
			                        errno == EOPNOTSUPP)) {
				splice_broken = true;
				return -ENOTSUP;
			}
			return -EIO;
		}
		moved = true;
		for (ssize_t done = 0; done < n;) {
			ssize_t w = splice(splice_pipe[0], NULL, pool_fd, out, (size_t)(n - done),
			                   SPLICE_F_MOVE);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				return -EIO;
			done += w;
		}
		len -= (size_t)n;
	}
	return 0;
}

#define SPLICE_MIN_RUN (64u << 10) /* bytes, on average per run */

int
pw__pool_read_fd(int fd, uint64_t off, const struct iovec *iov, int cnt)
{
	char *end = pool_base + POOL_MAX_FRAMES * PAGE_SIZE;
	size_t total = 0, runs = 0;
	for (int k = 0; k < cnt; k++) {
		char *b = iov[k].iov_base;
		if (b < pool_base || iov[k].iov_len > (size_t)(end - b))
			return -ENOTSUP;
		total += iov[k].iov_len;
		if (k == 0 || (char *)iov[k - 1].iov_base + iov[k - 1].iov_len != b)
			runs++;
	}
	/* Two splices per run of contiguous frames: where frames are
	 * scattered (a pool recycling frames under a memory cap) that is two
	 * system calls a page, and one preadv is much cheaper (bench_reclaim,
	 * ext2: 5.5x the kernel's cold read with splice, 1.9x with preadv). */
	if (runs == 0 || total / runs < SPLICE_MIN_RUN)
		return -ENOTSUP;
	if (!splice_pipe_get())
		return -ENOTSUP;
	loff_t in = (loff_t)off;
	for (int k = 0; k < cnt;) {
		/* A run of iovecs that are contiguous in the pool. */
		char *b = iov[k].iov_base;
		size_t len = iov[k].iov_len;
		for (k++; k < cnt && (char *)iov[k].iov_base == b + len; k++)
			len += iov[k].iov_len;
		loff_t out = (loff_t)(b - pool_base);
		int err = splice_run(fd, &in, &out, len);
		if (err) {
			/* Whatever is left in the pipe must not reach a later read. */
			splice_pipe_close(NULL);
			return err == -ENOTSUP && in == (loff_t)off ? -ENOTSUP : -EIO;
		}
	}
	return 0;
}

/*
 * The warmer.  On the development VMs (a hypervisor with shadow page
 * tables) the first access to a frame costs about 5 us from user space
 * and again about 5 us from the kernel (a write(2) from the frame), each
 * a trip through the hypervisor, on top of populating it (about 1 us).
 * A fresh server pays that for every new file's page: creating 100-byte
 * files ran at 7100-8500 files/s with fresh frames against 9500-10700
 * once frames were reused.  A thread of the pool does those first
 * accesses ahead of time, on a CPU the request threads leave idle.
 * Demand drives it: each group of frames a user copy into or out of a
 * frame (or a zeroing) touches first (pw__page_populate_copy), one it
 * warmed or not, is one group owed, up to WARM_DEMAND_MAX, so that it
 * stays ahead of its users; frames the kernel fills and reads by itself
 * (readahead by splice, FUSE READs by pread of the memfd) never make it
 * owe, and touching them would buy nothing.  While it owes, and once
 * POOL_WARM_FROM frames are in use (small users never start it), it keeps
 * POOL_WARM_LOW frames free (growing the pool, never past the memory cap)
 * and visits a group of free frames not visited before: it populates the
 * group, stores to each free frame's first word without changing it
 * (touch_frame) and to its struct page (an atomic add of zero), and reads
 * each frame once from the kernel (a one-byte pwritev(2) per frame into a
 * scratch memfd).  The frames stay in the free bitmap meanwhile: an
 * earlier form took them out for the visit, so that no one could be given
 * one while it stored its first word back, and broke the readahead runs
 * of any reader whose next frames it held (an in-process cold read of
 * ext2 took 3-4x the kernel's time).
 * A visited group stays warm: frames freed later have been touched by
 * their users.  With nothing owed it keeps kmem.c's spare chunks and
 * sleeps on a futex.  If the pool cannot grow the thread ends (the pool
 * works as before without it).  Elsewhere the touches cost little;
 * PAGEWRIGHT_POOL_WARM=0 turns the thread off.  Measured: docs/fuse.md.
 */
#define POOL_WARM_LOW 2048UL             /* frames: 8 MiB */
#define POOL_WARM_FROM 1024UL            /* frames in use before it starts: 4 MiB */
static _Atomic uint32_t warm_seq;        /* (A) futex: bumped to wake the warmer */
static _Atomic bool warm_sleeping;      /* (A) it waits on warm_seq */
static _Atomic long warm_demand;         /* (A) groups users touched first, not yet
                                          * answered by warming one */

/* Work for the warmer, pool_lock held: a group to visit (its number), or
 * -1 (grow first) or -2 (nothing). */
static long
warm_next(void)
{
	uint64_t cap = pw__mem_limit_pages();
	if (pool_nr - pool_nfree < POOL_WARM_FROM || atomic_load(&warm_demand) <= 0)
		return -2; /* a small user, or frames the kernel fills: no pass */
	if (pool_nfree < POOL_WARM_LOW && (!cap || pool_nr < cap))
		return -1;
	unsigned long groups = pool_nr / POPULATE_GROUP;
	/* The groups just ahead of the allocator first: it takes frames in
	 * order (pw__alloc_page).  Leave it a group's worth of free frames
	 * besides. */
	unsigned long from = pool_run_end == ULONG_MAX ? 0 : pool_run_end / POPULATE_GROUP + 1;
	for (unsigned long k = 0; k < groups && pool_nfree > 2 * POPULATE_GROUP; k++) {
		unsigned long g = (from + k) % groups;
		if (!group_test(pool_warm, g) && pool_free[g])
			return (long)g;
	}
	return -2;
}

static int pool_grow(void);

/*
 * Store to a frame without changing it: a locked OR of zero reads and
 * writes the word in one indivisible step, so a store by whoever was
 * given the frame meanwhile lands either before it (and is written back
 * as it is) or after it.  In asm, outside ThreadSanitizer's view: to it
 * this would be an atomic access racing with the new owner's memcpy,
 * though it changes no byte.
 */
static void
touch_frame(void *frame)
{
#if defined(__x86_64__)
	__asm__ volatile("lock orq $0, %0" : "+m"(*(uint64_t *)frame) : : "memory");
#else
	__atomic_fetch_or((uint64_t *)frame, 0, __ATOMIC_RELAXED);
#endif
}

static void
warm_group(unsigned long g, uint64_t frames, int scratch)
{
	char *base = pool_base + g * POPULATE_GROUP * PAGE_SIZE;
	struct iovec iov[POPULATE_GROUP];
	int n = 0;
	populate_group(g);
	for (unsigned k = 0; k < POPULATE_GROUP; k++) {
		if (!(frames >> k & 1))
			continue;
		/* The frames stay free meanwhile: the allocator may hand one
		 * out, and touch_frame changes none of its bytes. */
		void (*hook)(void *) = __atomic_load_n(&pw__hooks.pool_warm_touch, __ATOMIC_ACQUIRE);
		if (hook)
			hook(base + k * PAGE_SIZE);
		touch_frame(base + k * PAGE_SIZE);
		struct page *page = &pool_pages[g * POPULATE_GROUP + k];
		atomic_fetch_add_explicit(&page->refcount, 0, memory_order_relaxed);
		iov[n].iov_base = base + k * PAGE_SIZE;
		iov[n++].iov_len = 1;
	}
	if (scratch >= 0 && n)
		(void)pwritev(scratch, iov, n, 0);
	PW_STAT_ADD(warmed, (uint64_t)n);
}

static void *
warm_thread(void *arg)
{
	(void)arg;
	int scratch = memfd_create("pagewright-warm", MFD_CLOEXEC);
	pthread_mutex_lock(&pool_lock);
	for (;;) {
		long g = warm_next();
		if (g == -1) {
			if (pool_grow() != 0)
				break;
			continue;
		}
		if (g == -2) {
			uint32_t seq = atomic_load(&warm_seq);
			atomic_store(&warm_sleeping, true);
			pthread_mutex_unlock(&pool_lock);
			pw__kmem_fill_spares();
			pw__futex_wait(&warm_seq, seq);
			pthread_mutex_lock(&pool_lock);
			atomic_store(&warm_sleeping, false);
			continue;
		}
		uint64_t frames = pool_free[g];
		pthread_mutex_unlock(&pool_lock);
		warm_group((unsigned long)g, frames, scratch);
		pthread_mutex_lock(&pool_lock);
		group_set(pool_warm, (unsigned long)g);
		atomic_fetch_sub(&warm_demand, 1);
	}
	pthread_mutex_unlock(&pool_lock);
	if (scratch >= 0)
		close(scratch);
	return NULL;
}

/* Wake the warmer if it sleeps (kmem.c: a class took its spare chunk).
 * May run in the fault handler: a futex wake is async-signal-safe. */
void
pw__pool_warm_wake(void)
{
	if (atomic_load(&warm_sleeping)) {
		atomic_fetch_add(&warm_seq, 1);
		pw__futex_wake_all(&warm_seq);
	}
}

/* Users entered a group: one more group to warm, up to WARM_DEMAND_MAX
 * owed.  A user faster than the warmer (a large sequential write or read
 * enters a group every 100 us or so, the warmer takes about 700 us a
 * group) gains nothing from a backlog, which would keep the warmer busy
 * long after, on the CPU the next user wants. */
#define WARM_DEMAND_MAX (POOL_WARM_LOW / POPULATE_GROUP)
static void
warm_poke(void)
{
	if (atomic_load(&warm_demand) < (long)WARM_DEMAND_MAX)
		atomic_fetch_add(&warm_demand, 1);
	pw__pool_warm_wake();
}

static void
pool_warm_start_once(void)
{
	const char *e = getenv("PAGEWRIGHT_POOL_WARM");
	if (e && e[0] == '0')
		return;
	pthread_t t;
	pthread_attr_t a;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	(void)pthread_create(&t, &a, warm_thread, NULL); /* best effort */
	pthread_attr_destroy(&a);
}

/**
 * pw__pool_warm_start - start the warmer (once; pw_mount calls it).
 * Context: not the fault handler.
 */
void
pw__pool_warm_start(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, pool_warm_start_once);
}

/* Grow the pool by one chunk; pool_lock held. */
static int
pool_grow(void)
{
	unsigned long n = pool_nr + POOL_CHUNK;
	if (n > POOL_MAX_FRAMES)
		return -ENOMEM;
	if (ftruncate(pool_fd, (off_t)(n * PAGE_SIZE)) != 0)
		return -errno;
	void *p = mmap(pool_base + pool_nr * PAGE_SIZE, POOL_CHUNK * PAGE_SIZE,
	               PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, pool_fd,
	               (off_t)(pool_nr * PAGE_SIZE));
	if (p == MAP_FAILED)
		return -errno;
	for (unsigned long f = pool_nr; f < n; f++)
		pool_free[f / 64] |= 1ULL << (f % 64);
	pool_nfree += POOL_CHUNK;
	pool_nr = n;
	PW_STAT_ADD(pool_pages, POOL_CHUNK);
	return 0;
}

static bool
frame_free(unsigned long f)
{
	return f < pool_nr && (pool_free[f / 64] >> (f % 64)) & 1;
}

/* For tests: may frame pfn be handed out now? */
bool
pw__pool_frame_free(unsigned long pfn)
{
	pthread_mutex_lock(&pool_lock);
	bool r = frame_free(pfn);
	pthread_mutex_unlock(&pool_lock);
	return r;
}

/* Find a free frame scanning from pool_cursor; ULONG_MAX if none. */
static unsigned long
frame_scan(void)
{
	unsigned long words = pool_nr / 64;
	for (unsigned long k = 0; k < words; k++) {
		unsigned long w = (pool_cursor / 64 + k) % words;
		if (pool_free[w])
			return w * 64 + (unsigned long)__builtin_ctzll(pool_free[w]);
	}
	return ULONG_MAX;
}

struct page *
pw__alloc_page(long hint_pfn)
{
	pw__reclaim_for_alloc();
	pthread_mutex_lock(&pool_lock);
	unsigned long f = ULONG_MAX;
	if (hint_pfn >= 0 && frame_free((unsigned long)hint_pfn + 1))
		f = (unsigned long)hint_pfn + 1;
	while (f == ULONG_MAX && recent_nr > 0) {
		unsigned long r = recent[--recent_nr];
		if (frame_free(r))
			f = r;
	}
	/* A new file (or a page with no neighbour cached) goes right after
	 * the newest run: files created one after another share groups of
	 * frames instead of taking a fresh group each, which the warmer could
	 * not keep ahead of. */
	if (f == ULONG_MAX && hint_pfn < 0 && pool_run_end != ULONG_MAX &&
	    frame_free(pool_run_end + 1))
		f = pool_run_end + 1;
	if (f == ULONG_MAX)
		f = frame_scan();
	if (f == ULONG_MAX) {
		if (pool_grow() != 0) {
			pthread_mutex_unlock(&pool_lock);
			return NULL;
		}
		f = frame_scan();
	}
	pool_free[f / 64] &= ~(1ULL << (f % 64));
	pool_nfree--;
	PW_STAT_ADD(allocated, 1);
	/* Leave room after a new file's first page for its next pages. */
	if (hint_pfn < 0 || (unsigned long)hint_pfn + 1 != f)
		pool_cursor = f + 64;
	/* A page without a neighbour starts the newest run, and only the
	 * newest run's own growth extends it: a file whose next frame was
	 * taken goes on elsewhere (from the cursor) and leaves the run to the
	 * new files, so neither breaks the other's run again and again. */
	if (hint_pfn < 0 || (pool_run_end == (unsigned long)hint_pfn && f == pool_run_end + 1))
		pool_run_end = f;
	pthread_mutex_unlock(&pool_lock);

	struct page *page = &pool_pages[f];
	atomic_store(&page->flags, 0);
	atomic_store(&page->mapcount, 0);
	page->mapping = NULL;
	page->private = NULL;
	page->index = 0;
	atomic_store_explicit(&page->refcount, 1, memory_order_release);
	return page;
}

void
pw__free_page(struct page *page)
{
	unsigned long f = page_to_pfn(page);
	pthread_mutex_lock(&pool_lock);
	pool_free[f / 64] |= 1ULL << (f % 64);
	pool_nfree++;
	if (recent_nr == RECENT_MAX) {
		memmove(recent, recent + RECENT_MAX / 2, sizeof(recent) / 2);
		recent_nr = RECENT_MAX / 2;
	}
	recent[recent_nr++] = f;
	PW_STAT_SUB(allocated, 1);
	pthread_mutex_unlock(&pool_lock);
}

struct page *
pw__pfn_to_page(unsigned long pfn)
{
	return &pool_pages[pfn];
}

unsigned long
page_to_pfn(const struct page *page)
{
	return (unsigned long)(page - pool_pages);
}

void *
page_address(const struct page *page)
{
	return pool_base + page_to_pfn(page) * PAGE_SIZE;
}

/* ----------------------------------------------------------- references */

void
get_page(struct page *page)
{
	atomic_fetch_add_explicit(&page->refcount, 1, memory_order_relaxed);
}

void
put_page(struct page *page)
{
	int old = atomic_fetch_sub_explicit(&page->refcount, 1, memory_order_acq_rel);
	if (old == 1) {
		if (atomic_load(&page->mapcount) != 0) {
			/* A user mapping still shows this frame: the kernel
			 * refused to unmap it (mmap.c, stuck entries).  A frame
			 * reused for other data would show that data there, so
			 * it never goes back to the pool. */
			pw_log("page %lu is still mapped by the process: kept out of the pool",
			       page_to_pfn(page));
			PW_STAT_ADD(stuck_pages, 1);
			return;
		}
		if (page->mapping != NULL || PageDirty(page))
			pw_log("BUG: freeing page %lu still in use (flags %#x)",
			       page_to_pfn(page), atomic_load(&page->flags));
		pw__free_page(page);
	} else if (old <= 0) {
		pw_log("BUG: put_page on free page %lu", page_to_pfn(page));
	}
}

/* ------------------------------------------------------------- the lock */

void
pw__futex_wait(_Atomic uint32_t *word, uint32_t val)
{
	syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

void
pw__futex_wake_all(_Atomic uint32_t *word)
{
	syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

bool
trylock_page(struct page *page)
{
	uint32_t old = atomic_fetch_or_explicit(&page->flags, PG_locked,
	                                        memory_order_acquire);
	return !(old & PG_locked);
}

/**
 * pw__wait_on_bit - sleep until (*word & bit) is clear; if take, set it.
 * Sleepers set waiters_bit and wait on the word as a futex; the clearing
 * side (pw__clear_bit_wake) wakes them all.  Used for the page lock,
 * writeback and the buffer lock.  Async-signal-safe.
 */
void
pw__wait_on_bit(_Atomic uint32_t *word, uint32_t bit, uint32_t waiters_bit,
                bool take)
{
	uint32_t v = atomic_load_explicit(word, memory_order_acquire);
	for (;;) {
		if (!(v & bit)) {
			if (!take)
				return;
			if (atomic_compare_exchange_weak_explicit(word, &v, v | bit,
			                                          memory_order_acquire,
			                                          memory_order_acquire))
				return;
			continue;
		}
		if (!(v & waiters_bit)) {
			if (!atomic_compare_exchange_weak(word, &v, v | waiters_bit))
				continue;
			v |= waiters_bit;
		}
		pw__futex_wait(word, v);
		v = atomic_load_explicit(word, memory_order_acquire);
	}
}

/* Clear bit (with release semantics) and wake sleepers if any. */
void
pw__clear_bit_wake(_Atomic uint32_t *word, uint32_t bit, uint32_t waiters_bit)
{
	uint32_t old = atomic_fetch_and_explicit(word, ~(bit | waiters_bit),
	                                         memory_order_release);
	if (old & waiters_bit)
		pw__futex_wake_all(word);
}

/**
 * lock_page - take the page lock, sleeping while another thread holds it.
 * Context: may sleep; see the lock order in fs.h.  Never call it while
 * this thread may fault on user memory that maps this page.
 */
void
lock_page(struct page *page)
{
	if (!trylock_page(page))
		pw__wait_on_bit(&page->flags, PG_locked, PG_waiters, true);
}

void
unlock_page(struct page *page)
{
	pw__clear_bit_wake(&page->flags, PG_locked, PG_waiters);
}

void
wait_on_page_locked(struct page *page)
{
	pw__wait_on_bit(&page->flags, PG_locked, PG_waiters, false);
}

void
wait_on_page_writeback(struct page *page)
{
	pw__wait_on_bit(&page->flags, PG_writeback, PG_waiters, false);
}

/* ------------------------------------------------------ dirty, writeback */

bool
set_page_dirty(struct page *page)
{
	/* Most calls find the page dirty already: skip the locked op. */
	if (atomic_load_explicit(&page->flags, memory_order_relaxed) & PG_dirty)
		return false;
	uint32_t old = atomic_fetch_or(&page->flags, PG_dirty);
	if (old & PG_dirty)
		return false;
	if (page->mapping) {
		pw__account_page_dirtied(page->mapping);
		pw__page_tag_sync(page);
	}
	return true;
}

/**
 * clear_page_dirty_for_io - prepare a locked page for writeback.
 * Write-protects every user mapping first, so that a store made after the
 * data is copied out faults and dirties the page again.
 * Return: true if the page was dirty.
 */
bool
clear_page_dirty_for_io(struct page *page)
{
	if (!PageDirty(page))
		return false;
	/* A mapping left writable (mprotect failed) may still store into the
	 * page: write it now, but leave it dirty for the next writeback. */
	if (atomic_load(&page->mapcount) > 0 && !pw__page_mkclean(page))
		return true;
	uint32_t old = atomic_fetch_and(&page->flags, ~(uint32_t)PG_dirty);
	if (!(old & PG_dirty))
		return false;
	if (page->mapping) {
		pw__account_page_cleaned(page->mapping);
		pw__page_tag_sync(page);
	}
	return true;
}

/* A page under writeback keeps its mapping: truncation and eviction wait
 * for the writeback (or skip the page) before they remove it. */
void
set_page_writeback(struct page *page)
{
	pw__page_writeback_set(page);
	PW_STAT_ADD(writeback, 1);
	PW_SB_ADD(pw__mapping_sb(page->mapping), s_nr_writeback, 1);
}

void
end_page_writeback(struct page *page)
{
	PW_STAT_SUB(writeback, 1);
	PW_SB_ADD(pw__mapping_sb(page->mapping), s_nr_writeback, -1);
	pw__page_writeback_untag(page);
	pw__clear_bit_wake(&page->flags, PG_writeback, PG_waiters);
}

void
zero_user_segment(struct page *page, unsigned start, unsigned end)
{
	if (end > start) {
		pw__page_populate_copy(page);
		memset((char *)page_address(page) + start, 0, end - start);
	}
}

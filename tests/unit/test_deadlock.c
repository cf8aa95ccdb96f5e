/*
 * test_deadlock.c - the deadlocks and the livelock that the write_begin /
 * write_end protocol exists to prevent (SPEC section 1 and 10.7, 10.10-12),
 * on ramfs, hostfs and hostfs with legacy_aops.
 *
 * Every test here is TEST_DEADLOCK: it must pass in the normal builds and
 * must hang in the faulting-copy build (-DPW_TEST_FAULTING_COPY), where the
 * atomic copy under the page lock serves page faults.  To make each one
 * hang there for certain, each has a step whose copy really faults under
 * the page lock: the after_prefault hook drops the source's user mapping
 * (madvise DONTNEED; on hostfs also evicts the source page) between the
 * prefault and the copy.  The normal build then sees a short copy and
 * retries; the faulting build serves the fault under the destination's
 * page lock and waits for a page lock held by itself or by the other
 * thread.  The log names the step before it runs, so a hang in the
 * faulting build shows where.
 */
#include "../pwt.h"


/* ---- the after_prefault hook, configured per thread */
struct hook_cfg {
	void *madv_addr;   /* madvise(DONTNEED) this range, if set */
	size_t madv_len;
	int evict_fd;      /* pw__test_evict(evict_fd, evict_off), if >= 0 */
	off_t evict_off;
	int remaining;     /* act this many more times; -1: always */
	loff_t pos_lt;     /* act only for steps starting before this pos */
	bool once_per_pos; /* act at most once per step position */
	loff_t last_pos;
	long calls, acted;
	/* rendezvous with another thread, once: after this thread's first
	 * prefault (and drop), and again with its destination page locked */
	pthread_barrier_t *meet;
	bool met_prefault, met_locked;
};
static __thread struct hook_cfg *hk;

static void
after_prefault(struct file *file, loff_t pos, size_t bytes)
{
	(void)file;
	(void)bytes;
	struct hook_cfg *h = hk;
	if (!h)
		return;
	h->calls++;
	if (h->remaining == 0 || pos >= h->pos_lt || (h->once_per_pos && pos == h->last_pos))
		return;
	h->last_pos = pos;
	if (h->remaining > 0)
		h->remaining--;
	h->acted++;
	if (h->madv_addr)
		ASSERT_OK(pw_madvise(h->madv_addr, h->madv_len, MADV_DONTNEED));
	if (h->evict_fd >= 0) {
		int r = pw__test_evict(h->evict_fd, h->evict_off);
		ASSERT(r == 0 || r == -EBUSY);
	}
	if (h->meet && !h->met_prefault) {
		h->met_prefault = true;
		pthread_barrier_wait(h->meet);
	}
}

static void
after_write_begin(struct file *file, loff_t pos, size_t bytes)
{
	(void)file;
	(void)pos;
	(void)bytes;
	struct hook_cfg *h = hk;
	if (h && h->meet && h->met_prefault && !h->met_locked) {
		h->met_locked = true;
		pthread_barrier_wait(h->meet);
	}
}

static void
hook_install(void)
{
	pw__hooks.after_prefault = after_prefault;
	pw__hooks.after_write_begin = after_write_begin;
	if (pw__test_faulting_copy_build())
		TLOG("faulting-copy build: the step marked MUST-HANG below must deadlock");
}

/* A hook config that drops [addr, addr+len) of a mapping of page `off` of
 * file `fd` after the first `times` prefaults of a write. */
static struct hook_cfg
drop_after_prefault(const struct tfs *t, void *addr, size_t len, int fd, off_t off, int times)
{
	struct hook_cfg h = {0};
	uintptr_t a = (uintptr_t)addr & ~(uintptr_t)(PG - 1);
	h.madv_addr = (void *)a;
	h.madv_len = (((uintptr_t)addr + len + PG - 1) & ~(uintptr_t)(PG - 1)) - a;
	h.evict_fd = t->kind ? fd : -1;
	h.evict_off = off;
	h.remaining = times;
	h.pos_lt = INT64_MAX;
	h.last_pos = -1;
	return h;
}

static unsigned char *
map_shared(int fd, size_t len)
{
	unsigned char *m = pw_mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT(m != MAP_FAILED);
	return m;
}

/* Write [src, src+n) of the mapping m to pos of the same file, keeping the
 * model; the hook (if h) is armed for this write only. */
static void
same_page_write(int fd, unsigned char *m, unsigned char *model, size_t srcoff, size_t n,
                off_t pos, struct hook_cfg *h)
{
	hk = h;
	ASSERT_EQ(pw_pwrite(fd, m + srcoff, n, pos), (int64_t)n);
	hk = NULL;
	if (h)
		ASSERT_GE(h->acted, 1); /* the scenario really happened */
	memmove(model + pos, model + srcoff, n);
}

static void
check_both(int fd, const unsigned char *m, const unsigned char *model, size_t size)
{
	CHECK_FILE(fd, model, size);
	ASSERT_MEM_EQ(m, model, size);
}

/* SPEC 10.10, source page cached and uptodate: the source is a mapping of
 * the very page being written (ranges apart). */
TEST_DEADLOCK(deadlock_same_page_cached)
{
	hook_install();
	FOR_EACH_KIND(k) {
		struct tfs t;
		tfs_mount(&t, k);
		const size_t SZ = 3 * PG;
		unsigned char *model = xmalloc(SZ);
		pat_fill(model, SZ, 1, 0);
		int fd = tfs_create(&t, "f");
		write_exact(fd, model, SZ, 0);
		unsigned char *m = map_shared(fd, SZ);

		TLOG("%s: cached, mapped", test_kind_name(k));
		ASSERT_EQ(m[0], model[0]);
		same_page_write(fd, m, model, 0, 2048, 2048, NULL);
		check_both(fd, m, model, SZ);

		TLOG("%s: cached, not mapped", test_kind_name(k));
		ASSERT_OK(pw_madvise(m, SZ, MADV_DONTNEED));
		same_page_write(fd, m, model, 3000, 1000, 10, NULL);
		check_both(fd, m, model, SZ);

		TLOG("%s: cached, dirty through the mapping, across pages", test_kind_name(k));
		m[PG + 1600] ^= 0x5a;
		model[PG + 1600] ^= 0x5a;
		same_page_write(fd, m, model, PG + 1500, 2000, PG - 1000, NULL);
		check_both(fd, m, model, SZ);

		TLOG("%s: cached, mapping dropped after the prefault (MUST-HANG)", test_kind_name(k));
		struct hook_cfg h = drop_after_prefault(&t, m + 2 * PG, 1000, fd, 2 * PG, 1);
		h.evict_fd = -1; /* the page stays cached and uptodate */
		same_page_write(fd, m, model, 2 * PG, 1000, 2 * PG + 3000, &h);
		check_both(fd, m, model, SZ);

		ASSERT_OK(pw_munmap(m, SZ));
		ASSERT_OK(pw_close(fd));
		free(model);
	}
}

/* SPEC 10.10, source page not uptodate: evicted (hostfs) or not cached
 * yet (a hole, ramfs); the prefault must read it in before write_begin
 * locks it. */
TEST_DEADLOCK(deadlock_same_page_not_uptodate)
{
	hook_install();
	FOR_EACH_KIND(k) {
		struct tfs t;
		tfs_mount(&t, k);
		const size_t SZ = 4 * PG;
		unsigned char *model = xmalloc(SZ);
		pat_fill(model, SZ, 2, 0);
		int fd = tfs_create(&t, "f");
		write_exact(fd, model, SZ, 0);
		ASSERT_OK(pw_fsync(fd));
		unsigned char *m = map_shared(fd, SZ);

		if (k) {
			TLOG("%s: source page evicted", test_kind_name(k));
			evict_page(&t, fd, 0);
			same_page_write(fd, m, model, 0, 2048, 2048, NULL);
			check_both(fd, m, model, SZ);
			evict_all(&t, fd);
			same_page_write(fd, m, model, PG + 4000, 96, PG + 3, NULL);
			same_page_write(fd, m, model, 3 * PG + 1000, 3000, 2 * PG + 2000, NULL);
			check_both(fd, m, model, SZ);
		}
		TLOG("%s: source page a hole inside the file", test_kind_name(k));
		ASSERT_OK(pw_ftruncate(fd, PG));
		ASSERT_OK(pw_ftruncate(fd, SZ)); /* pages 1..3 are holes now */
		memset(model + PG, 0, SZ - PG);
		same_page_write(fd, m, model, PG, 1000, PG + 2000, NULL);
		check_both(fd, m, model, SZ);
		/* the hole is the source of a write into the page before it */
		same_page_write(fd, m, model, 2 * PG + 100, 200, 2 * PG - 100, NULL);
		check_both(fd, m, model, SZ);

		TLOG("%s: not uptodate, evicted/dropped after the prefault (MUST-HANG)",
		     test_kind_name(k));
		/* make page 3 a hole again (ramfs) or written back and evicted
		 * (hostfs); the hook evicts it again after the prefault, so that
		 * write_begin creates it anew and the copy faults on it */
		if (k) {
			pat_fill(model + 3 * PG, PG, 3, 0);
			write_exact(fd, model + 3 * PG, PG, 3 * PG);
			ASSERT_OK(pw_fsync(fd));
		}
		struct hook_cfg h = drop_after_prefault(&t, m + 3 * PG, 1500, fd, 3 * PG, 1);
		same_page_write(fd, m, model, 3 * PG, 1500, 3 * PG + 2500, &h);
		check_both(fd, m, model, SZ);
		ASSERT_OK(pw_fsync(fd));
		evict_all(&t, fd);
		check_both(fd, m, model, SZ);

		ASSERT_OK(pw_munmap(m, SZ));
		ASSERT_OK(pw_close(fd));
		free(model);
	}
}

/* SPEC 10.10, overlapping source and destination ranges.  What such a
 * copy produces is not defined (the two ranges are one memory); what is
 * defined: the full count, no bytes outside the destination change, no
 * zeroed tail, and pread and the mapping agree.  With the destination
 * below the source, a forward copy (what Linux does) gives memmove's
 * result; that is checked too. */
TEST_DEADLOCK(deadlock_same_page_overlap)
{
	hook_install();
	FOR_EACH_KIND(k) {
		struct tfs t;
		tfs_mount(&t, k);
		const size_t SZ = 4 * PG;
		unsigned char *model = xmalloc(SZ), *before = xmalloc(SZ), *now = xmalloc(SZ);
		int fd = tfs_create(&t, "f");
		unsigned char *m = map_shared(fd, SZ);
		struct {
			size_t src, n;
			off_t dst;
			int hook;
		} c[] = {
		    {100, 3000, 0, 0},          /* dst < src, one page */
		    {0, 3000, 100, 0},          /* dst > src, one page */
		    {50, 2 * PG, 0, 0},         /* dst < src, several pages */
		    {PG - 10, 2 * PG, PG + 5, 0},/* dst > src, several pages */
		    {1, PG - 1, 0, 1},          /* dst < src, mapping dropped (MUST-HANG) */
		};
		for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
			TLOG("%s: src %zu dst %lld len %zu%s", test_kind_name(k), c[i].src,
			     (long long)c[i].dst, c[i].n, c[i].hook ? " (MUST-HANG)" : "");
			pat_fill(model, SZ, 10 + (unsigned)i, 0);
			write_exact(fd, model, SZ, 0);
			ASSERT_OK(pw_fsync(fd));
			if (i & 1)
				evict_all(&t, fd); /* hostfs: source and destination not uptodate */
			memcpy(before, model, SZ);
			struct hook_cfg h = drop_after_prefault(&t, m + c[i].src, c[i].n, fd,
			                                        (off_t)(c[i].src & ~(PG - 1)), 1);
			h.evict_fd = -1;
			hk = c[i].hook ? &h : NULL;
			ASSERT_EQ(pw_pwrite(fd, m + c[i].src, c[i].n, c[i].dst), (int64_t)c[i].n);
			hk = NULL;
			if (c[i].hook)
				ASSERT_GE(h.acted, 1);
			read_exact(fd, now, SZ, 0);
			ASSERT_EQ(fsize(fd), (int64_t)SZ);
			ASSERT_MEM_EQ(m, now, SZ);
			ASSERT_MEM_EQ(now, before, (size_t)c[i].dst);
			size_t end = (size_t)c[i].dst + c[i].n;
			ASSERT_MEM_EQ(now + end, before + end, SZ - end);
			for (size_t j = (size_t)c[i].dst; j < end; j++)
				ASSERT_NE(now[j], 0);
			if ((size_t)c[i].dst < c[i].src) {
				memmove(model + c[i].dst, model + c[i].src, c[i].n);
				ASSERT_MEM_EQ(now, model, SZ);
			}
			ASSERT_OK(pw_fsync(fd));
			evict_all(&t, fd);
			read_exact(fd, before, SZ, 0);
			ASSERT_MEM_EQ(before, now, SZ);
		}
		ASSERT_OK(pw_munmap(m, SZ));
		ASSERT_OK(pw_close(fd));
		free(model);
		free(before);
		free(now);
	}
}

/* SPEC 10.10, the source evicted between prefault and copy, in more
 * shapes: multi-page writes whose every step loses its source once, a
 * writev whose segments all come from the page being written, and a
 * mapping of the page at another address. */
TEST_DEADLOCK(deadlock_same_page_evicted_between_prefault_and_copy)
{
	hook_install();
	FOR_EACH_KIND(k) {
		struct tfs t;
		tfs_mount(&t, k);
		const size_t SZ = 6 * PG;
		unsigned char *model = xmalloc(SZ);
		pat_fill(model, SZ, 4, 0);
		int fd = tfs_create(&t, "f");
		write_exact(fd, model, SZ, 0);
		ASSERT_OK(pw_fsync(fd));
		unsigned char *m = map_shared(fd, SZ);

		TLOG("%s: one page, source dropped once (MUST-HANG)", test_kind_name(k));
		struct hook_cfg h = drop_after_prefault(&t, m, 100, fd, 0, 1);
		same_page_write(fd, m, model, 0, 100, 200, &h);
		check_both(fd, m, model, SZ);

		TLOG("%s: three pages, every step's source dropped once", test_kind_name(k));
		h = drop_after_prefault(&t, m + 3 * PG, 3 * PG, fd, 3 * PG, -1);
		h.evict_fd = -1;
		h.once_per_pos = true;
		same_page_write(fd, m, model, 3 * PG + 10, 2 * PG, PG + 5, &h);
		ASSERT_GE(h.acted, 3);
		check_both(fd, m, model, SZ);

		TLOG("%s: writev, all segments from the destination page", test_kind_name(k));
		h = drop_after_prefault(&t, m + 5 * PG, PG, fd, 5 * PG, 2);
		struct iovec iov[3] = {{m + 5 * PG + 3000, 500}, {m + 5 * PG + 2000, 0},
		                       {m + 5 * PG + 3600, 400}};
		unsigned char expect[900];
		memcpy(expect, model + 5 * PG + 3000, 500);
		memcpy(expect + 500, model + 5 * PG + 3600, 400);
		hk = &h;
		ASSERT_EQ(pw_pwritev(fd, iov, 3, 5 * PG + 100), 900);
		hk = NULL;
		ASSERT_GE(h.acted, 1);
		memcpy(model + 5 * PG + 100, expect, 900);
		check_both(fd, m, model, SZ);

		TLOG("%s: a second mapping of the page as source", test_kind_name(k));
		unsigned char *m2 = pw_mmap(NULL, PG, PROT_READ, MAP_SHARED, fd, 4 * PG);
		ASSERT(m2 != MAP_FAILED);
		h = drop_after_prefault(&t, m2, PG, fd, 4 * PG, 1);
		hk = &h;
		ASSERT_EQ(pw_pwrite(fd, m2 + 2000, 2000, 4 * PG), 2000);
		hk = NULL;
		memmove(model + 4 * PG, model + 4 * PG + 2000, 2000);
		check_both(fd, m, model, SZ);
		ASSERT_OK(pw_munmap(m2, PG));

		ASSERT_OK(pw_fsync(fd));
		evict_all(&t, fd);
		check_both(fd, m, model, SZ);
		ASSERT_OK(pw_munmap(m, SZ));
		ASSERT_OK(pw_close(fd));
		free(model);
	}
}

/* SPEC 10.11, cross-file ABBA: T0 writes A[p] from a mapping of B[q], T1
 * writes B[q] from a mapping of A[p], both pages uncached (hostfs: written
 * back and evicted before each round; ramfs: holes), thousands of rounds.
 * Each thread's source mapping is also dropped after its first prefault,
 * so that the copy faults (the faulting build then holds one page lock
 * and waits for the other). */
enum { AB_PAGES = 16, AB_ROUNDS = 3000 };
struct ab_shared {
	const struct tfs *t;
	int fda, fdb;
	unsigned char *ma, *mb;
	pthread_barrier_t bar, meet;
	bool legacy;
	int rounds;
	_Atomic int stop;
};
struct ab_arg {
	struct ab_shared *s;
	int id;
};

static void
ab_pages(int r, int *p, int *q)
{
	*p = r % AB_PAGES;
	*q = (r * 7 + 3) % AB_PAGES;
}

static void *
ab_thread(void *arg)
{
	struct ab_arg *a = arg;
	struct ab_shared *s = a->s;
	for (int r = 0;; r++) {
		pthread_barrier_wait(&s->bar); /* round set up */
		if (atomic_load(&s->stop))
			break;
		int p, q;
		ab_pages(r, &p, &q);
		/* T0: A[p][0,2048) <- B[q][2048,4096); T1: B[q][0,2048) <- A[p][2048,4096) */
		int dfd = a->id ? s->fdb : s->fda, sfd = a->id ? s->fda : s->fdb;
		int dpage = a->id ? q : p, spage = a->id ? p : q;
		unsigned char *src = (a->id ? s->ma : s->mb) + (size_t)spage * PG + 2048;
		struct hook_cfg h = drop_after_prefault(s->t, src, 2048, sfd, (off_t)spage * PG, 1);
		h.evict_fd = -1; /* evicting the other file here could wait on its writer */
		/* Both threads prefault and drop their sources, then both lock
		 * their destinations, then both copy: every round sets up the
		 * ABBA, so the faulting build deadlocks in the first one.  (The
		 * legacy 2copy path copies before it locks: it passes the
		 * second rendezvous without a page lock, or not at all.) */
		h.meet = s->legacy ? NULL : &s->meet;
		hk = &h;
		ASSERT_EQ(pw_pwrite(dfd, src, 2048, (off_t)dpage * PG), 2048);
		hk = NULL;
		pthread_barrier_wait(&s->bar); /* round done */
	}
	return NULL;
}

TEST_DEADLOCK(deadlock_cross_file_abba)
{
	hook_install();
	FOR_EACH_KIND(k) {
		struct tfs t;
		tfs_mount(&t, k);
		const size_t SZ = AB_PAGES * PG;
		struct ab_shared s = {0};
		s.t = &t;
		s.fda = tfs_create(&t, "a");
		s.fdb = tfs_create(&t, "b");
		ASSERT_OK(pw_ftruncate(s.fda, (off_t)SZ));
		ASSERT_OK(pw_ftruncate(s.fdb, (off_t)SZ));
		s.ma = map_shared(s.fda, SZ);
		s.mb = map_shared(s.fdb, SZ);
		s.rounds = AB_ROUNDS;
		ASSERT_OK(pthread_barrier_init(&s.bar, NULL, 3));
		ASSERT_OK(pthread_barrier_init(&s.meet, NULL, 2));
		s.legacy = k == 2;
		TLOG("%s: up to %d rounds (MUST-HANG)", test_kind_name(k), s.rounds);
		struct ab_arg args[2] = {{&s, 0}, {&s, 1}};
		pthread_t th[2];
		for (int i = 0; i < 2; i++)
			ASSERT_OK(pthread_create(&th[i], NULL, ab_thread, &args[i]));
		unsigned char pa[PG], pb[PG], ga[PG], gb[PG];
		double t0 = now_s();
		int r;
		for (r = 0;; r++) {
			/* a time cap for the sanitizer builds */
			if (r == s.rounds || (r >= 500 && now_s() - t0 > 5.0)) {
				atomic_store(&s.stop, 1);
				pthread_barrier_wait(&s.bar);
				break;
			}
			int p, q;
			ab_pages(r, &p, &q);
			if (k) {
				/* known data on the host, nothing cached */
				pat_fill(pa, PG, (unsigned)r, (uint64_t)p * PG);
				pat_fill(pb, PG, (unsigned)r + 77777, (uint64_t)q * PG);
				write_exact(s.fda, pa, PG, (off_t)p * PG);
				write_exact(s.fdb, pb, PG, (off_t)q * PG);
				ASSERT_OK(pw__test_evict(s.fda, (off_t)p * PG));
				ASSERT_OK(pw__test_evict(s.fdb, (off_t)q * PG));
			} else {
				/* holes: punch both pages out by truncating */
				memset(pa, 0, PG);
				memset(pb, 0, PG);
				off_t cut = (off_t)(p < q ? p : q) * PG;
				ASSERT_OK(pw_ftruncate(s.fda, cut));
				ASSERT_OK(pw_ftruncate(s.fdb, cut));
				ASSERT_OK(pw_ftruncate(s.fda, (off_t)SZ));
				ASSERT_OK(pw_ftruncate(s.fdb, (off_t)SZ));
			}
			pthread_barrier_wait(&s.bar);
			pthread_barrier_wait(&s.bar);
			/* A[p] = B[q][2048..] + A[p][2048..]; B[q] = A[p][2048..] + B[q][2048..] */
			read_exact(s.fda, ga, PG, (off_t)p * PG);
			read_exact(s.fdb, gb, PG, (off_t)q * PG);
			ASSERT_MEM_EQ(ga, pb + 2048, 2048);
			ASSERT_MEM_EQ(ga + 2048, pa + 2048, 2048);
			ASSERT_MEM_EQ(gb, pa + 2048, 2048);
			ASSERT_MEM_EQ(gb + 2048, pb + 2048, 2048);
		}
		for (int i = 0; i < 2; i++)
			ASSERT_OK(pthread_join(th[i], NULL));
		TLOG("%s: %d rounds in %.2f s", test_kind_name(k), r, now_s() - t0);
		pthread_barrier_destroy(&s.bar);
		pthread_barrier_destroy(&s.meet);
		ASSERT_OK(pw_munmap(s.ma, SZ));
		ASSERT_OK(pw_munmap(s.mb, SZ));
		ASSERT_OK(pw_close(s.fda));
		ASSERT_OK(pw_close(s.fdb));
	}
}

/* SPEC 10.12, the mmap_lock ABBA as it applies here: one thread maps,
 * touches, drops and unmaps pages of the file in a loop (mmap_lock
 * exclusive, then faults), while another writes a page of that file from
 * a mapping of the same page, whose user mapping is dropped after the
 * prefault. */
struct ml_arg {
	int fd;
	unsigned char *src;
	_Atomic int *stop;
	long loops;
};

static void *
ml_mapper(void *p)
{
	struct ml_arg *a = p;
	while (!atomic_load(a->stop)) {
		int page = (int)(a->loops % 4);
		unsigned char *x = pw_mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, a->fd,
		                           (off_t)page * PG);
		ASSERT(x != MAP_FAILED);
		volatile unsigned char v = x[10];
		(void)v;
		x[PG + 4095] = (unsigned char)(0x80 | page); /* last byte, never a source */
		if (a->loops % 3 == 0)
			ASSERT_OK(pw_madvise(a->src, 4 * PG, MADV_DONTNEED));
		if (a->loops % 5 == 0)
			ASSERT_OK(pw_msync(x, 2 * PG, MS_ASYNC));
		ASSERT_OK(pw_munmap(x, 2 * PG));
		a->loops++;
	}
	return NULL;
}

TEST_DEADLOCK(deadlock_mmap_lock_abba)
{
	hook_install();
	FOR_EACH_KIND(k) {
		struct tfs t;
		tfs_mount(&t, k);
		const size_t SZ = 5 * PG;
		unsigned char *model = xmalloc(SZ);
		pat_fill(model, SZ, 5, 0);
		int fd = tfs_create(&t, "f");
		write_exact(fd, model, SZ, 0);
		unsigned char *m = map_shared(fd, SZ);
		_Atomic int stop = 0;
		struct ml_arg a = {fd, m, &stop, 0};
		pthread_t th;
		TLOG("%s: writer vs mmap/munmap loop (MUST-HANG)", test_kind_name(k));
		ASSERT_OK(pthread_create(&th, NULL, ml_mapper, &a));
		double t0 = now_s();
		long n = 0;
		while (now_s() - t0 < 1.0 || n < 200) {
			int page = (int)(n % 4);
			unsigned char *src = m + (size_t)page * PG + 2048;
			struct hook_cfg h = drop_after_prefault(&t, src, 1024, fd, (off_t)page * PG,
			                                        n % 2 ? 1 : 0);
			if (n % 4 == 3) {
				h.evict_fd = -1;
				ASSERT_OK(pw_fsync(fd));
			}
			hk = &h;
			ASSERT_EQ(pw_pwrite(fd, src, 1024, (off_t)page * PG + ((n / 4) % 2) * 1024), 1024);
			hk = NULL;
			n++;
			ASSERT_LT(now_s() - t0, 8.0);
		}
		atomic_store(&stop, 1);
		ASSERT_OK(pthread_join(th, NULL));
		TLOG("%s: %ld writes, %ld map/unmap loops", test_kind_name(k), n, a.loops);
		/* every write copied [2048,3072) of its page to [0,1024) or
		 * [1024,2048): both end up equal to the untouched source bytes */
		unsigned char *now = xmalloc(SZ);
		read_exact(fd, now, SZ, 0);
		ASSERT_MEM_EQ(m, now, SZ);
		for (int page = 0; page < 4; page++) {
			unsigned char *pg = now + (size_t)page * PG, *mo = model + (size_t)page * PG;
			ASSERT_MEM_EQ(pg, mo + 2048, 1024);
			ASSERT_MEM_EQ(pg + 1024, mo + 2048, 1024);
			ASSERT_MEM_EQ(pg + 2048, mo + 2048, 2047);
		}
		ASSERT_OK(pw_munmap(m, SZ));
		ASSERT_OK(pw_close(fd));
		free(now);
		free(model);
	}
}

/* SPEC 10.7, the livelock: a writev whose segment 2 is not resident after
 * every prefault of segment 1 (the hook drops it whenever a step starts
 * inside segment 1), onto a destination page that is not uptodate.  A
 * filesystem that accepts 0 bytes of a short copy into a non-uptodate page
 * makes the loop retry; without the "clamp to the current segment" rule it
 * retries forever.  First with segment 2 from another file, then from the
 * destination page itself (MUST-HANG in the faulting build). */
TEST_DEADLOCK(deadlock_livelock_writev_segment2_evicted)
{
	hook_install();
	FOR_EACH_KIND(k) {
		struct tfs t;
		tfs_mount(&t, k);
		const size_t SZ = 4 * PG;
		unsigned char *model = xmalloc(SZ), *gdata = xmalloc(SZ), *heap = xmalloc(PG);
		pat_fill(model, SZ, 6, 0);
		pat_fill(gdata, SZ, 7, 0);
		pat_fill(heap, PG, 8, 0);
		int fd = tfs_create(&t, "f"), gfd = tfs_create(&t, "g");
		write_exact(gfd, gdata, SZ, 0);
		unsigned char *mg = map_shared(gfd, SZ);
		if (k) {
			write_exact(fd, model, SZ, 0);
			ASSERT_OK(pw_fsync(fd));
		} else {
			ASSERT_OK(pw_ftruncate(fd, (off_t)SZ)); /* holes: never uptodate */
			memset(model, 0, SZ);
		}
		unsigned char *m = map_shared(fd, SZ);

		for (int v = 0; v < 2; v++) {
			off_t pos = v ? 2 * PG : PG;
			const size_t l1 = 1000, l2 = v ? 500 : 5000;
			/* v 0: segment 2 from file g, pages 1-2; v 1: from the destination
			 * page itself, bytes [3000, 3500) (apart from [0, 1500)) */
			unsigned char *s2 = v ? m + pos + 3000 : mg + PG + 123;
			unsigned char expect[6000];
			memcpy(expect, heap, l1);
			memcpy(expect + l1, v ? model + pos + 3000 : gdata + PG + 123, l2);
			TLOG("%s: segment 2 from %s%s", test_kind_name(k), v ? "the destination page" :
			     "another file", v ? " (MUST-HANG)" : "");
			if (k)
				evict_all(&t, fd); /* destination not uptodate */
			struct hook_cfg h = drop_after_prefault(&t, s2, l2, v ? fd : gfd,
			                                        (off_t)(((uintptr_t)s2 - (uintptr_t)(v ? m : mg)) & ~(PG - 1)), -1);
			h.pos_lt = pos + (loff_t)l1;
			/* segment 2 inside the destination page: drop only its user
			 * mapping, since evicting the page would also evict the
			 * destination, and a legacy 2copy step that finds the page made
			 * uptodate by its own bounce copy redoes the page: evicting it
			 * every time would then starve any implementation */
			if (v)
				h.evict_fd = -1;
			struct iovec iov[2] = {{heap, l1}, {s2, l2}};
			hk = &h;
			ASSERT_EQ(pw_pwritev(fd, iov, 2, pos), (int64_t)(l1 + l2));
			hk = NULL;
			TLOG("  %ld prefaults, segment 2 dropped %ld times", h.calls, h.acted);
			ASSERT_GE(h.acted, 1);
			memcpy(model + pos, expect, l1 + l2);
			check_both(fd, m, model, SZ);
			ASSERT_OK(pw_fsync(fd));
			evict_all(&t, fd);
			check_both(fd, m, model, SZ);
		}
		CHECK_FILE(gfd, gdata, SZ);
		ASSERT_OK(pw_munmap(m, SZ));
		ASSERT_OK(pw_munmap(mg, SZ));
		ASSERT_OK(pw_close(fd));
		ASSERT_OK(pw_close(gfd));
		free(model);
		free(gdata);
		free(heap);
	}
}

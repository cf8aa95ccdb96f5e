/*
 * test_writeback.c - writeback: writepages batching (hostfs and block
 * filesystems), pages written back without their page lock and kept
 * stable while in flight, stores through mappings around writeback,
 * errors of background writeback, throttling, and the statistics
 * (global and per mount).
 */
#include "pwt.h"

#include <pagewright/buffer_head.h>
#include <pthread.h>
#include <stdatomic.h>

/* ------------------------------------------------------------ helpers */

static unsigned char *
map_shared(int fd, size_t len)
{
	unsigned char *m = pw_mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT(m != MAP_FAILED);
	return m;
}

static void
mount_stats(const char *path, struct pw_mount_stats *st)
{
	ASSERT_OK(pw_get_mount_stats(path, st));
}

/* The block device under an open file of a block filesystem. */
static struct block_device *
file_bdev(int fd)
{
	struct file *f = pw__fget(fd);
	ASSERT(f != NULL);
	struct block_device *bdev = f->f_inode->i_sb->s_bdev;
	pw__fput(f);
	return bdev;
}

/* ------------------------------------------------- writepages batching */

/*
 * Two runs of contiguous dirty pages (256 + 16 pages, 512 KiB apart) and a
 * lone page are written back by fsync with one pwritev per run on hostfs,
 * and with one write per run of consecutive blocks (at most 256 blocks)
 * on ext2 at every block size; the data reaches the backing store.
 */
TEST(writeback_writepages_batches_runs)
{
	FOR_EACH_KIND(k)
	{
		if (k == 0)
			continue; /* ramfs has no writeback */
		struct tfs t;
		tfs_mount(&t, k);
		const size_t SZ = 2 * 1024 * 1024;
		unsigned char *model = xmalloc(SZ), *h = xmalloc(SZ);
		memset(model, 0, SZ);
		int fd = tfs_create(&t, "f");
		pat_fill(model, 256 * PG, 7, 0);
		pat_fill(model + 384 * PG, 16 * PG, 8, 0);
		pat_fill(model + SZ - PG, PG, 9, 0);
		/* Blocks allocated in file order first, so the runs are runs on
		 * disk too; then the data the test counts. */
		write_exact(fd, model, SZ, 0);
		ASSERT_OK(pw_fsync(fd));
		pat_fill(model, 256 * PG, 17, 0);
		pat_fill(model + 384 * PG, 16 * PG, 18, 0);
		pat_fill(model + SZ - PG, PG, 19, 0);
		write_exact(fd, model, 256 * PG, 0);
		write_exact(fd, model + 384 * PG, 16 * PG, 384 * PG);
		write_exact(fd, model + SZ - PG, PG, SZ - PG);
		struct pw_stats a, b;
		struct pw_mount_stats ma, mb;
		pw_get_stats(&a);
		mount_stats(t.mnt, &ma);
		long writes0 = test_kind_is_ext2(k) ? atomic_load(&file_bdev(fd)->bd_writes) : 0;
		ASSERT_OK(pw_fsync(fd));
		pw_get_stats(&b);
		mount_stats(t.mnt, &mb);
		uint64_t pages = b.written_pages - a.written_pages;
		uint64_t ios = b.writeback_ios - a.writeback_ios;
		TLOG("%s: fsync wrote %llu pages with %llu writes", test_kind_name(k),
		     (unsigned long long)pages, (unsigned long long)ios);
		ASSERT_GE(pages, 273);
		ASSERT_EQ(mb.written_pages - ma.written_pages, pages);
		ASSERT_EQ(mb.writeback_ios - ma.writeback_ios, ios);
		if (test_kind_is_ext2(k)) {
			/* 273 pages of data: (256 + 16) pages of blocks in runs of at
			 * most 256 blocks, the lone page, and the metadata the fsync
			 * writes (inode table, maybe a bitmap). */
			long bs = test_kind_blocksize(k), blocks = 272 * (4096 / bs);
			long data_ios = (blocks + 255) / 256 + 2;
			long writes = atomic_load(&file_bdev(fd)->bd_writes) - writes0;
			TLOG("  device writes %ld (data runs need %ld)", writes, data_ios);
			ASSERT_LE(ios, data_ios + 6);
			ASSERT_LE(writes, data_ios + 8);
		} else {
			ASSERT_EQ(ios, 3); /* one pwritev per run */
		}
		ASSERT_EQ(host_read(&t, "f", h, SZ), (int64_t)SZ);
		ASSERT_MEM_EQ(h, model, SZ);
		ASSERT_OK(pw_close(fd));
		ASSERT_OK(pw_umount(t.mnt));
		free(model);
		free(h);
	}
}

/* A run longer than one batch, a partial last page, and a file being
 * truncated between writeback passes: the host file never grows past
 * i_size and holds exactly the data. */
TEST(writeback_writepages_eof_and_long_runs)
{
	FOR_EACH_KIND(k)
	{
		if (k == 0)
			continue;
		struct tfs t;
		tfs_mount(&t, k);
		const size_t SZ = 3 * 1024 * 1024 + 1234;
		unsigned char *model = xmalloc(SZ), *h = xmalloc(SZ);
		pat_fill(model, SZ, 21, 0);
		int fd = tfs_create(&t, "f");
		write_exact(fd, model, SZ, 0);
		ASSERT_OK(pw_fsync(fd));
		ASSERT_EQ(host_read(&t, "f", h, SZ), (int64_t)SZ);
		ASSERT_MEM_EQ(h, model, SZ);
		/* dirty all, cut the file in the middle of a page, sync */
		pat_fill(model, SZ, 22, 0);
		write_exact(fd, model, SZ, 0);
		const size_t CUT = 1024 * 1024 + 77;
		ASSERT_OK(pw_ftruncate(fd, (off_t)CUT));
		ASSERT_OK(pw_fsync(fd));
		ASSERT_EQ(host_read(&t, "f", h, SZ), (int64_t)CUT);
		ASSERT_MEM_EQ(h, model, CUT);
		ASSERT_OK(pw_close(fd));
		ASSERT_OK(pw_umount(t.mnt));
		free(model);
		free(h);
	}
}

/* ------------------------------------- pages under writeback, unlocked */

static _Atomic int hook_state;          /* 0 idle, 1 armed, 2 holding, 3 released */
static struct address_space *hook_mapping;

static void
hold_writeback(struct address_space *mapping)
{
	int armed = 1;
	if (mapping != hook_mapping || !atomic_compare_exchange_strong(&hook_state, &armed, 2))
		return;
	while (atomic_load(&hook_state) == 2)
		usleep(1000);
}

struct toucher {
	unsigned char *addr;
	int fd;
	int what; /* 'l' load, 's' store, 'w' pwrite */
	_Atomic bool done;
	unsigned char got;
};

static void *
touch(void *p)
{
	struct toucher *t = p;
	if (t->what == 'l')
		t->got = __atomic_load_n(t->addr, __ATOMIC_RELAXED);
	else if (t->what == 's')
		__atomic_store_n(t->addr, 0xA5, __ATOMIC_RELAXED);
	else
		ASSERT_EQ(pw_pwrite(t->fd, "\x5a", 1, 6 * (off_t)PG + 1), 1);
	atomic_store(&t->done, true);
	return NULL;
}

static bool
finishes_within(struct toucher *t, int ms)
{
	for (int waited = 0; waited < ms && !atomic_load(&t->done); waited += 2)
		usleep(2000);
	return atomic_load(&t->done);
}

static void *
fsync_thread(void *p)
{
	ASSERT_OK(pw_fsync(*(int *)p));
	return NULL;
}

/*
 * While fsync holds a batch of pages under writeback (stopped by a hook
 * just before the write), the pages are not locked: a read fault on one
 * of them is served at once.  But they are stable: a store through a
 * mapping and a pwrite into one wait until the write is done, then land,
 * and the next fsync takes them to the backing store.  (With writeback
 * under the page lock, the read fault would wait too.)
 */
TEST_THREADED(writeback_pages_unlocked_and_stable_during_io)
{
	FOR_EACH_KIND(k)
	{
		if (k == 0)
			continue;
		struct tfs t;
		tfs_mount(&t, k);
		TLOG("%s", test_kind_name(k));
		const size_t SZ = 8 * PG;
		unsigned char *model = xmalloc(SZ), *h = xmalloc(SZ);
		pat_fill(model, SZ, 31, 0);
		int fd = tfs_create(&t, "f");
		write_exact(fd, model, SZ, 0);
		ASSERT_OK(pw_fsync(fd));
		pat_fill(model, SZ, 32, 0);
		write_exact(fd, model, SZ, 0);
		unsigned char *m = map_shared(fd, SZ);
		/* mapped, then dropped: the loads below fault */
		for (size_t off = 0; off < SZ; off += PG)
			ASSERT_EQ(m[off], model[off]);
		ASSERT_OK(pw_madvise(m, SZ, MADV_DONTNEED));

		struct file *f = pw__fget(fd);
		hook_mapping = f->f_mapping;
		pw__fput(f);
		__atomic_store_n(&pw__hooks.before_writeback_io, hold_writeback, __ATOMIC_RELEASE);
		atomic_store(&hook_state, 1);
		pthread_t ts;
		ASSERT_OK(pthread_create(&ts, NULL, fsync_thread, &fd));
		while (atomic_load(&hook_state) != 2)
			usleep(1000);

		/* pages 6 and 7 are in the held batch at every block size: the
		 * indirect block ends a run at page 3 (1 KiB blocks) or page 6
		 * (2 KiB), and the pages before it are written then */
		struct toucher load = {.addr = m + 7 * PG + 3, .what = 'l'};
		struct toucher store = {.addr = m + 6 * PG, .what = 's'};
		struct toucher pwr = {.fd = fd, .what = 'w'};
		pthread_t tl, tst, tw;
		ASSERT_OK(pthread_create(&tl, NULL, touch, &load));
		ASSERT(finishes_within(&load, 5000));
		ASSERT_EQ(load.got, model[7 * PG + 3]);
		ASSERT_OK(pthread_create(&tst, NULL, touch, &store));
		ASSERT_OK(pthread_create(&tw, NULL, touch, &pwr));
		ASSERT(!finishes_within(&store, 300));
		ASSERT(!atomic_load(&pwr.done));
		struct pw_stats st;
		pw_get_stats(&st);
		ASSERT_GE(st.writeback_pages, 1);
		atomic_store(&hook_state, 3);
		ASSERT_OK(pthread_join(ts, NULL));
		ASSERT_OK(pthread_join(tl, NULL));
		ASSERT_OK(pthread_join(tst, NULL));
		ASSERT_OK(pthread_join(tw, NULL));
		__atomic_store_n(&pw__hooks.before_writeback_io, NULL, __ATOMIC_RELEASE);
		atomic_store(&hook_state, 0);

		model[6 * PG] = 0xA5;
		model[6 * PG + 1] = 0x5a;
		ASSERT_OK(pw_fsync(fd));
		ASSERT_EQ(host_read(&t, "f", h, SZ), (int64_t)SZ);
		ASSERT_MEM_EQ(h, model, SZ);
		ASSERT_OK(pw_munmap(m, SZ));
		ASSERT_OK(pw_close(fd));
		ASSERT_OK(pw_umount(t.mnt));
		free(model);
		free(h);
	}
}

/* ------------------------------------------- stores around writeback */

struct storer {
	unsigned char *map;
	unsigned char *model;
	size_t size;
	int fd;
	_Atomic bool done;
	_Atomic int syncs;
};

/* Store until the other thread has synced 100 times. */
static void *
store_loop(void *p)
{
	struct storer *s = p;
	for (unsigned i = 0; i < (1u << 24) && atomic_load(&s->syncs) < 100; i++) {
		size_t off = ((size_t)i * 4099 + (i >> 4)) % s->size;
		unsigned char v = (unsigned char)(i | 1);
		__atomic_store_n(&s->map[off], v, __ATOMIC_RELAXED);
		s->model[off] = v;
	}
	atomic_store(&s->done, true);
	return NULL;
}

static void *
fsync_loop(void *p)
{
	struct storer *s = p;
	for (int n = 0; !atomic_load(&s->done); n++) {
		if (n & 1)
			ASSERT_OK(pw_fsync(s->fd));
		else
			ASSERT_OK(pw_msync(s->map, s->size, MS_SYNC));
		atomic_fetch_add(&s->syncs, 1);
	}
	return NULL;
}

/*
 * A thread stores through a shared mapping while another fsyncs and
 * msyncs in a loop: every store made while a page was being written back
 * (after its write-protect, during or after the copy-out) faults, waits
 * for the write, and redirties the page, so the last fsync takes it to
 * the backing store.  Nothing is lost.
 */
TEST_THREADED(writeback_stores_racing_fsync_not_lost)
{
	FOR_EACH_KIND(k)
	{
		if (k == 0)
			continue;
		struct tfs t;
		tfs_mount(&t, k);
		const size_t SZ = 16 * PG;
		struct storer s = {.size = SZ};
		s.model = xmalloc(SZ);
		unsigned char *h = xmalloc(SZ);
		pat_fill(s.model, SZ, 41, 0);
		s.fd = tfs_create(&t, "f");
		write_exact(s.fd, s.model, SZ, 0);
		s.map = map_shared(s.fd, SZ);
		pthread_t a, b;
		ASSERT_OK(pthread_create(&a, NULL, store_loop, &s));
		ASSERT_OK(pthread_create(&b, NULL, fsync_loop, &s));
		ASSERT_OK(pthread_join(a, NULL));
		ASSERT_OK(pthread_join(b, NULL));
		ASSERT_OK(pw_fsync(s.fd));
		ASSERT_EQ(host_read(&t, "f", h, SZ), (int64_t)SZ);
		ASSERT_MEM_EQ(h, s.model, SZ);
		struct pw_mount_stats ms;
		mount_stats(t.mnt, &ms);
		TLOG("%s: %llu pages written with %llu writes while storing",
		     test_kind_name(k), (unsigned long long)ms.written_pages,
		     (unsigned long long)ms.writeback_ios);
		ASSERT_EQ(ms.dirty_pages, 0);
		ASSERT_OK(pw_munmap(s.map, SZ));
		ASSERT_OK(pw_close(s.fd));
		ASSERT_OK(pw_umount(t.mnt));
		free(s.model);
		free(h);
	}
}

/* --------------------------------------------- background write errors */

static void
wait_clean(const char *mnt)
{
	struct pw_mount_stats ms;
	for (int waited = 0; waited < 10000; waited += 10) {
		mount_stats(mnt, &ms);
		if (ms.dirty_pages == 0 && ms.writeback_pages == 0)
			return;
		usleep(10000);
	}
	ASSERT_EQ(ms.dirty_pages, 0);
}

/* Fail the next host write (all of its run) with EIO, once. */
static _Atomic int host_eio_left;

static int
host_eio(struct inode *inode)
{
	(void)inode;
	int n = atomic_load(&host_eio_left);
	while (n > 0 && !atomic_compare_exchange_weak(&host_eio_left, &n, n - 1))
		;
	return n > 0 ? -EIO : 0;
}

/*
 * hostfs: the writeback thread's pwritev of a run fails with EIO
 * (injected: pw__hooks.host_write).  fsync reports it once to each of the
 * three descriptors open at the time, not to one opened after, and a
 * rewrite makes the data whole.  (ext2: ext2_write_errors_reported_by_
 * fsync in test_ext2.c.)
 */
TEST(writeback_background_eio_each_descriptor_once)
{
	setenv("PAGEWRIGHT_DIRTY_EXPIRE_MS", "20", 1);
	setenv("PAGEWRIGHT_WRITEBACK_MS", "20", 1);
	struct tfs t;
	tfs_mount(&t, 1);
	unsigned char buf[8 * 4096], old[8 * 4096];
	pat_fill(old, sizeof(old), 50, 0);
	pat_fill(buf, sizeof(buf), 51, 0);
	int fds[3];
	fds[0] = tfs_create(&t, "f");
	fds[1] = tfs_open(&t, "f", O_RDWR);
	fds[2] = tfs_open(&t, "f", O_RDONLY);
	write_exact(fds[0], old, sizeof(old), 0);
	ASSERT_OK(pw_fsync(fds[0]));
	struct pw_stats before, after;
	pw_get_stats(&before);
	__atomic_store_n(&pw__hooks.host_write, host_eio, __ATOMIC_RELEASE);
	atomic_store(&host_eio_left, 1);
	write_exact(fds[1], buf + 4 * PG, 2 * PG, 4 * PG);
	wait_clean(t.mnt);
	ASSERT_EQ(atomic_load(&host_eio_left), 0); /* the writeback thread met it */
	pw_get_stats(&after);
	ASSERT_EQ(after.write_errors - before.write_errors, 2); /* both pages */
	ASSERT_ERR(pw_fsync(fds[0]), EIO);
	ASSERT_OK(pw_fsync(fds[0]));
	ASSERT_ERR(pw_fdatasync(fds[1]), EIO);
	ASSERT_OK(pw_fsync(fds[1]));
	ASSERT_ERR(pw_fsync(fds[2]), EIO);
	ASSERT_OK(pw_fsync(fds[2]));
	int late = tfs_open(&t, "f", O_RDONLY);
	ASSERT_OK(pw_fsync(late));
	/* the pages were left clean (as Linux does); a rewrite makes the
	 * host file whole */
	write_exact(fds[1], buf + 4 * PG, 2 * PG, 4 * PG);
	ASSERT_OK(pw_fsync(fds[1]));
	memcpy(old + 4 * PG, buf + 4 * PG, 2 * PG);
	unsigned char h[8 * 4096];
	ASSERT_EQ(host_read(&t, "f", h, sizeof(h)), (int64_t)sizeof(h));
	ASSERT_MEM_EQ(h, old, sizeof(h));
	__atomic_store_n(&pw__hooks.host_write, NULL, __ATOMIC_RELEASE);
	for (int k = 0; k < 3; k++)
		ASSERT_OK(pw_close(fds[k]));
	ASSERT_OK(pw_close(late));
	ASSERT_OK(pw_umount(t.mnt));
}

/* ---------------------------------------------- throttling and limits */

/*
 * A writer that dirties data much faster than writeback takes it stays
 * under the dirty limit on ext2 too (hostfs: test_hostfs.c), and the
 * time it spent throttled shows in pw_get_stats.
 */
/* The writeback thread, much slower than the writer: 200 ms per batch
 * of file data (up to 1 MiB), so that the writer must hit the limit and
 * write back itself.  Not for metadata: the writer's block allocation
 * waits for bitmap buffers while they are being written. */
static pthread_t writer_thread;

static void
slow_flusher(struct address_space *mapping)
{
	if (!S_ISBLK(mapping->host->i_mode) && !pthread_equal(pthread_self(), writer_thread))
		usleep(200000);
}

TEST(writeback_dirty_limit_ext2_and_throttle_stats)
{
	setenv("PAGEWRIGHT_DIRTY_LIMIT", "4M", 1);
	writer_thread = pthread_self();
	__atomic_store_n(&pw__hooks.before_writeback_io, slow_flusher, __ATOMIC_RELEASE);
	FOR_EACH_KIND(k)
	{
		if (!test_kind_is_ext2(k))
			continue;
		struct tfs t;
		tfs_mount(&t, k);
		int fd = tfs_create(&t, "big");
		const size_t CH = 1 << 20, SZ = 12 * CH;
		unsigned char *buf = xmalloc(CH), *h = xmalloc(SZ);
		uint64_t peak = 0;
		struct pw_stats st, st0;
		pw_get_stats(&st0);
		ASSERT_EQ(st0.dirty_limit_pages, 1024);
		for (size_t off = 0; off < SZ; off += CH) {
			pat_fill(buf, CH, 61, off);
			write_exact(fd, buf, CH, (off_t)off);
			pw_get_stats(&st);
			peak = PW_MAX(peak, st.dirty_pages);
		}
		TLOG("%s: peak dirty %llu pages, limit 1024; throttled %llu times, %llu ms",
		     test_kind_name(k), (unsigned long long)peak,
		     (unsigned long long)(st.throttled - st0.throttled),
		     (unsigned long long)(st.throttle_ms - st0.throttle_ms));
		ASSERT_LE(peak, 1024 + 256 + 64); /* a 1 MiB write, metadata */
		ASSERT_GT(st.throttled, st0.throttled);
		ASSERT_OK(pw_fsync(fd));
		ASSERT_EQ(host_read(&t, "big", h, SZ), (int64_t)SZ);
		for (size_t off = 0; off < SZ; off += CH) {
			pat_fill(buf, CH, 61, off);
			ASSERT_MEM_EQ(h + off, buf, CH);
		}
		ASSERT_OK(pw_close(fd));
		ASSERT_OK(pw_umount(t.mnt));
		free(buf);
		free(h);
	}
}

/* ----------------------------------------------------------- statistics */

/* Dirty, cached, mapped and written pages are counted per mount: the
 * activity of one mount never shows in another's counts. */
TEST(writeback_mount_stats)
{
	struct tfs a, b, e;
	tfs_mount(&a, 1);
	tfs_mount(&b, 1);
	tfs_mount(&e, 5);
	struct pw_mount_stats sa, sb, se;
	unsigned char buf[10 * 4096];
	pat_fill(buf, sizeof(buf), 71, 0);
	int fa = tfs_create(&a, "f"), fe = tfs_create(&e, "f");
	write_exact(fa, buf, sizeof(buf), 0);
	write_exact(fe, buf, sizeof(buf), 0);
	mount_stats(a.mnt, &sa);
	mount_stats(b.mnt, &sb);
	mount_stats(e.mnt, &se);
	ASSERT_EQ(sa.dirty_pages, 10);
	ASSERT_EQ(sa.cached_pages, 10);
	ASSERT_EQ(sb.dirty_pages, 0);
	ASSERT_EQ(sb.cached_pages, 0);
	ASSERT_GE(se.dirty_pages, 10);  /* and metadata on the device */
	ASSERT_GT(se.cached_pages, 10);
	char p[128];
	struct pw_mount_stats sf;
	ASSERT_OK(pw_get_mount_stats(tfs_path(&a, "f", p, sizeof(p)), &sf));
	ASSERT_EQ(sf.dirty_pages, 10); /* any path inside the mount */
	ASSERT_ERR(pw_get_mount_stats("/nonexistent", &sf), ENOENT);

	unsigned char *m = pw_mmap(NULL, sizeof(buf), PROT_READ, MAP_SHARED, fa, 0);
	ASSERT(m != MAP_FAILED);
	ASSERT_EQ(m[0], buf[0]);
	mount_stats(a.mnt, &sa);
	ASSERT_GE(sa.mapped_pages, 1);
	ASSERT_OK(pw_fsync(fa));
	mount_stats(a.mnt, &sa);
	ASSERT_EQ(sa.dirty_pages, 0);
	ASSERT_EQ(sa.writeback_pages, 0);
	ASSERT_EQ(sa.written_pages, 10);
	ASSERT_EQ(sa.writeback_ios, 1);
	ASSERT_OK(pw_munmap(m, sizeof(buf)));
	mount_stats(a.mnt, &sa);
	ASSERT_EQ(sa.mapped_pages, 0);
	mount_stats(b.mnt, &sb);
	ASSERT_EQ(sb.written_pages, 0);
	ASSERT_OK(pw_fsync(fe));
	mount_stats(e.mnt, &se);
	ASSERT_EQ(se.dirty_pages, 0);
	ASSERT_GE(se.written_pages, 10);
	ASSERT_OK(pw_close(fa));
	ASSERT_OK(pw_close(fe));
	ASSERT_OK(pw_umount(a.mnt));
	ASSERT_OK(pw_umount(b.mnt));
	ASSERT_OK(pw_umount(e.mnt));
}

/* Pages of ramfs are dirty for good (they have no backing store): they
 * do not count against the dirty limit, so a full ramfs never throttles
 * a writer of another filesystem, and the statistics leave them out. */
TEST(writeback_ramfs_pages_not_counted_as_dirty)
{
	setenv("PAGEWRIGHT_DIRTY_LIMIT", "4M", 1);
	struct tfs r, h;
	tfs_mount(&r, 0);
	tfs_mount(&h, 1);
	const size_t CH = 1 << 20;
	unsigned char *buf = xmalloc(CH);
	pat_fill(buf, CH, 91, 0);
	int fr = tfs_create(&r, "f"), fh = tfs_create(&h, "f");
	for (size_t off = 0; off < 8 * CH; off += CH)
		write_exact(fr, buf, CH, (off_t)off);
	struct pw_stats st0, st;
	pw_get_stats(&st0);
	ASSERT_EQ(st0.dirty_pages, 0);
	struct pw_mount_stats ms;
	mount_stats(r.mnt, &ms);
	ASSERT_EQ(ms.dirty_pages, 0);
	ASSERT_EQ(ms.cached_pages, 8 * 256);
	write_exact(fh, buf, CH, 0);
	pw_get_stats(&st);
	ASSERT_EQ(st.throttled, st0.throttled);
	ASSERT_EQ(st.dirty_pages, 256);
	unsigned char *got = xmalloc(CH);
	read_exact(fr, got, CH, 7 * (off_t)CH);
	ASSERT_MEM_EQ(got, buf, CH);
	free(got);
	ASSERT_OK(pw_close(fr));
	ASSERT_OK(pw_close(fh));
	ASSERT_OK(pw_umount(h.mnt));
	ASSERT_OK(pw_umount(r.mnt));
	free(buf);
}

/* Stores through a shared mapping, one new page dirtied per store, much
 * faster than writeback: the write faults wake the writeback thread and
 * wait for it over the limit, so the dirty pages stay under it, and
 * every store reaches the backing store. */
TEST(writeback_mapped_writer_stays_under_dirty_limit)
{
	setenv("PAGEWRIGHT_DIRTY_LIMIT", "4M", 1);
	FOR_EACH_KIND(k)
	{
		if (k != 1 && k != 5)
			continue; /* hostfs, ext2 4 KiB */
		struct tfs t;
		tfs_mount(&t, k);
		const size_t NP = 6144, SZ = NP * PG;
		int fd = tfs_create(&t, "m");
		ASSERT_OK(pw_ftruncate(fd, (off_t)SZ));
		unsigned char *m = map_shared(fd, SZ);
		uint64_t peak = 0;
		struct pw_stats st, st0;
		pw_get_stats(&st0);
		for (size_t p = 0; p < NP; p++) {
			m[p * PG + (p % 4000)] = (unsigned char)(p | 1);
			if ((p & 63) == 0) {
				pw_get_stats(&st);
				peak = PW_MAX(peak, st.dirty_pages);
			}
		}
		pw_get_stats(&st);
		TLOG("%s: peak dirty %llu pages for a limit of 1024; throttled %llu times",
		     test_kind_name(k), (unsigned long long)peak,
		     (unsigned long long)(st.throttled - st0.throttled));
		ASSERT_LE(peak, 1024 + 64);
		ASSERT_OK(pw_msync(m, SZ, MS_SYNC));
		unsigned char *h = xmalloc(SZ);
		ASSERT_EQ(host_read(&t, "m", h, SZ), (int64_t)SZ);
		for (size_t p = 0; p < NP; p++)
			ASSERT_EQ(h[p * PG + (p % 4000)], (unsigned char)(p | 1));
		free(h);
		ASSERT_OK(pw_munmap(m, SZ));
		ASSERT_OK(pw_close(fd));
		ASSERT_OK(pw_umount(t.mnt));
	}
}

/*
 * test_nocache.c - pw_pread_nocache: reads that take cached pages from
 * the cache (dirty ones included) and the rest from storage without
 * caching it, on every filesystem kind; small reads that miss read the
 * 64 KiB around them into the cache, until read-arounds stop paying; and
 * truncate never frees blocks under such a read (the blocks could then
 * hold another file's bytes).
 */
#include "pwt.h"

#include <stdatomic.h>

/* Pages of fd's file in the cache now. */
static unsigned long
cached_pages(int fd)
{
	struct file *f = pw__fget(fd);
	ASSERT(f != NULL);
	pthread_mutex_lock(&f->f_mapping->i_pages_lock);
	unsigned long n = f->f_mapping->nrpages;
	pthread_mutex_unlock(&f->f_mapping->i_pages_lock);
	pw__fput(f);
	return n;
}

/* Read [off, off + n) with pw_pread_nocache and compare with want. */
static void
check_nocache(int fd, const unsigned char *want, size_t n, off_t off)
{
	unsigned char *buf = xmalloc(n);
	memset(buf, 0x5a, n);
	ASSERT_EQ(pw_pread_nocache(fd, buf, n, off), (ssize_t)n);
	ASSERT_MEM_EQ(buf, want + off, n);
	free(buf);
}

TEST(nocache_read_kinds)
{
	FOR_EACH_KIND(k) {
		struct tfs t;
		tfs_mount(&t, k);
		const size_t size = 300 * 1024 + 123, big = 1 << 20;
		unsigned char *model = xmalloc(big);
		memset(model, 0, big);
		pat_fill(model, size, 7, 0);
		int fd = tfs_create(&t, "f");
		write_exact(fd, model, size, 0);
		ASSERT_OK(pw_fsync(fd));
		evict_all(&t, fd);
		/* Cold: all from storage, nothing left cached. */
		check_nocache(fd, model, size, 0);
		if (k != 0)
			ASSERT_EQ(cached_pages(fd), 0);
		/* Small reads read around (test below), dropped again. */
		check_nocache(fd, model, 10000, 4097);
		check_nocache(fd, model, 1, (off_t)size - 1);
		unsigned char tail[1000];
		ASSERT_EQ(pw_pread_nocache(fd, tail, sizeof(tail), (off_t)size - 10), 10);
		ASSERT_MEM_EQ(tail, model + size - 10, 10);
		evict_all(&t, fd);
		/* Dirty pages, not written back: their bytes come from the cache. */
		pat_fill(model + 8292, 5000, 9, 8292);
		write_exact(fd, model + 8292, 5000, 8292);
		check_nocache(fd, model, size, 0);
		if (k != 0)
			ASSERT_EQ(cached_pages(fd), 2);
		/* A hole, and a page past it. */
		ASSERT_OK(pw_ftruncate(fd, (off_t)big));
		pat_fill(model + 900 * 1024, 10, 11, 900 * 1024);
		write_exact(fd, model + 900 * 1024, 10, 900 * 1024);
		ASSERT_OK(pw_fsync(fd));
		evict_all(&t, fd);
		check_nocache(fd, model, big - size + 100, (off_t)size - 100);
		check_nocache(fd, model, big, 0);
		if (k != 0)
			ASSERT_EQ(cached_pages(fd), 0);
		/* Errors, and the end of the file. */
		char b[16];
		ASSERT_EQ(pw_pread_nocache(fd, b, sizeof(b), (off_t)big), 0);
		ASSERT_ERR(pw_pread_nocache(fd, b, sizeof(b), -1), EINVAL);
		ASSERT_ERR(pw_pread_nocache(fd, NULL, 4096, 0), EFAULT);
		ASSERT_ERR(pw_pread_nocache(1234, b, sizeof(b), 0), EBADF);
		int wo = tfs_open(&t, "f", O_WRONLY);
		ASSERT_ERR(pw_pread_nocache(wo, b, sizeof(b), 0), EBADF);
		ASSERT_OK(pw_close(wo));
		char p[128];
		int dfd = pw_open(tfs_path(&t, "", p, sizeof(p)), O_RDONLY | O_DIRECTORY);
		ASSERT_GE(dfd, 0);
		ASSERT_ERR(pw_pread_nocache(dfd, b, sizeof(b), 0), EISDIR);
		ASSERT_OK(pw_close(dfd));
		/* A cached read afterwards sees the same bytes. */
		unsigned char *back = xmalloc(big);
		read_exact(fd, back, big, 0);
		ASSERT_MEM_EQ(back, model, big);
		free(back);
		ASSERT_OK(pw_close(fd));
		free(model);
	}
}

/* Is the page at index cached? */
static bool
page_cached(int fd, pgoff_t index)
{
	struct file *f = pw__fget(fd);
	ASSERT(f != NULL);
	struct page *page = find_get_page(f->f_mapping, index);
	pw__fput(f);
	if (page)
		put_page(page);
	return page != NULL;
}

/*
 * A small read that misses reads the aligned 16 pages around it into the
 * cache (to the end of the file), and the next small reads there come
 * from the cache; a large read does not.  Where read-arounds are never
 * used (each small read in a new 64 KiB), after 64 of them small reads
 * read only what they ask for; reads the cache serves pay them back.
 * Checked: with read_around() returning false at once, the first
 * assertion fails; with the miss count never going down the last one.
 */
TEST(nocache_small_reads_read_around)
{
	FOR_EACH_KIND(k) {
		if (k == 0)
			continue; /* ramfs: everything is cached */
		struct tfs t;
		tfs_mount(&t, k);
		const size_t size = 16 << 20;
		int fd = tfs_pattern_file(&t, "f", size, 5);
		ASSERT_OK(pw_fsync(fd));
		evict_all(&t, fd);
		unsigned char *model = xmalloc(size);
		pat_fill(model, size, 5, 0);
		/* Page 21 read: pages 16..31 cached, 15 and 32 not. */
		check_nocache(fd, model, 100, 21 * (off_t)PG + 7);
		for (pgoff_t i = 16; i < 32; i++)
			ASSERT(page_cached(fd, i));
		ASSERT(!page_cached(fd, 15));
		ASSERT(!page_cached(fd, 32));
		/* Neighbours come from the cache: nothing more is cached. */
		check_nocache(fd, model, 4096, 16 * (off_t)PG);
		check_nocache(fd, model, 8192, 30 * (off_t)PG);
		ASSERT_EQ(cached_pages(fd), 16);
		/* Large reads do not read around. */
		check_nocache(fd, model, 64 << 10, 100 * (off_t)PG + 1);
		ASSERT_EQ(cached_pages(fd), 16);
		/* Read-arounds never used: one small read in each of 80 new
		 * 64 KiB stretches.  The first 64 or so read around, the
		 * rest only their page. */
		for (int r = 0; r < 80; r++)
			check_nocache(fd, model, 512, (off_t)(1024 + 32 * r) * (off_t)PG);
		unsigned long before = cached_pages(fd);
		check_nocache(fd, model, 512, 4000 * (off_t)PG);
		ASSERT_EQ(cached_pages(fd), before);
		TLOG("kind %d: %lu pages cached after 80 unused read-arounds", k, before);
		/* Reads the cache serves pay them back: reading around again. */
		for (int r = 0; r < 80; r++)
			for (int p = 0; p < 16; p++)
				check_nocache(fd, model, 512, (off_t)(1024 + 32 * r + p) * (off_t)PG);
		check_nocache(fd, model, 512, 3000 * (off_t)PG);
		ASSERT(page_cached(fd, 3001));
		free(model);
		ASSERT_OK(pw_close(fd));
		ASSERT_OK(pw_umount(t.mnt));
	}
}

/*
 * A reader of file A through pw_pread_nocache against a writer that
 * truncates A, writes file B (which may get A's freed blocks) and
 * rewrites A.  The hook holds the reader between mapping A's blocks and
 * reading them; unless truncate waits for the reader, B's bytes (0xbb)
 * show up in what it read of A (0xaa).  Checked by taking the wait out
 * of truncate_setsize: the reader saw 0xbb within the first rounds.  Every
 * other read is a small one, which reads the 64 KiB around it into the
 * cache while the writer truncates: pages read in after truncate lowered
 * the size are zeros, and without the size check after the copy the
 * reader returned them (under TSan in 5 runs of 6).
 */
static atomic_bool race_stop;
static atomic_long race_reads;
static int race_a;

static void
hold_reader(struct inode *inode)
{
	(void)inode;
	usleep(300);
}

static void *
race_reader(void *arg)
{
	(void)arg;
	const size_t n = 64 * PG;
	unsigned char *buf = xmalloc(n);
	while (!atomic_load(&race_stop)) {
		/* A large read, and a small one, which reads around. */
		long k = atomic_load(&race_reads);
		off_t off = k & 1 ? (off_t)((size_t)(k * 7) % 64 * PG + 100) : 0;
		ssize_t r = pw_pread_nocache(race_a, buf, k & 1 ? 512 : n, off);
		ASSERT_GE(r, 0);
		for (ssize_t i = 0; i < r; i++)
			if (buf[i] != 0xaa) {
				fprintf(stderr, "byte %zd of A at %lld read 0x%02x\n", i, (long long)off,
				        buf[i]);
				abort();
			}
		atomic_fetch_add(&race_reads, 1);
	}
	free(buf);
	return NULL;
}

TEST_THREADED(nocache_truncate_race)
{
	for (int k = 3; k <= 5; k += 2) {
		if (!test_kind_selected(k))
			continue;
		struct tfs t;
		tfs_mount(&t, k);
		const size_t n = 64 * PG;
		unsigned char *aa = xmalloc(n), *bb = xmalloc(n);
		memset(aa, 0xaa, n);
		memset(bb, 0xbb, n);
		race_a = tfs_create(&t, "a");
		int b = tfs_create(&t, "b");
		write_exact(race_a, aa, n, 0);
		ASSERT_OK(pw_fsync(race_a));
		evict_all(&t, race_a);
		atomic_store(&race_stop, false);
		atomic_store(&race_reads, 0);
		__atomic_store_n(&pw__hooks.direct_read_mapped, hold_reader, __ATOMIC_RELEASE);
		pthread_t th;
		ASSERT_OK(pthread_create(&th, NULL, race_reader, NULL));
		for (int round = 0; round < 60; round++) {
			ASSERT_OK(pw_ftruncate(race_a, 0));
			write_exact(b, bb, n, 0);
			ASSERT_OK(pw_fsync(b));
			ASSERT_OK(pw_ftruncate(b, 0));
			write_exact(race_a, aa, n, 0);
			ASSERT_OK(pw_fsync(race_a));
			evict_all(&t, race_a);
			usleep(500);
		}
		atomic_store(&race_stop, true);
		ASSERT_OK(pthread_join(th, NULL));
		__atomic_store_n(&pw__hooks.direct_read_mapped, NULL, __ATOMIC_RELEASE);
		TLOG("%s: %ld reads", test_kind_name(k), atomic_load(&race_reads));
		ASSERT(atomic_load(&race_reads) > 10);
		ASSERT_OK(pw_close(b));
		ASSERT_OK(pw_close(race_a));
		free(aa);
		free(bb);
	}
}

/*
 * test_tags.c - the page index's tags (index.c): DIRTY and WRITEBACK
 * follow PG_dirty and PG_writeback through writes, write faults,
 * writeback, truncation and eviction; tagged lookups return exactly the
 * tagged pages of a range, in order, across every level of the tree;
 * fsync of a large cached file writes only its few dirty pages; and
 * fsync does not chase a writer appending behind it (TOWRITE).
 */
#include "pwt.h"

#include <pagewright/buffer_head.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

/* ------------------------------------------------------------ helpers */

static struct address_space *
fd_mapping(int fd)
{
	struct file *f = pw__fget(fd);
	ASSERT(f != NULL);
	struct address_space *m = f->f_mapping;
	pw__fput(f);
	return m;
}

/* With nothing running on the file: the pages a tagged lookup of
 * [start, end] finds, nr at a time, are exactly the cached pages of the
 * range whose flag says so.  Return: how many there are. */
static unsigned long
check_tag(struct address_space *m, int tag, pgoff_t start, pgoff_t end, unsigned nr)
{
	uint32_t flag = tag == PAGECACHE_TAG_DIRTY ? PG_dirty : PG_writeback;
	struct page *all[16], *tagged[16];
	pgoff_t ti = start;
	unsigned tn = 0, tk = 0;
	unsigned long count = 0;
	pgoff_t ai = start;
	unsigned an;
	ASSERT(nr <= 16);
	while ((an = find_get_pages(m, ai, 16, all)) > 0) {
		pgoff_t last = all[an - 1]->index;
		for (unsigned k = 0; k < an; k++) {
			struct page *p = all[k];
			ai = p->index + 1;
			if (p->index <= end && (atomic_load(&p->flags) & flag)) {
				if (tk == tn) {
					tn = find_get_pages_tag(m, &ti, end, tag, nr, tagged);
					tk = 0;
					ASSERT(tn > 0);
				}
				ASSERT_EQ(tagged[tk]->index, p->index);
				put_page(tagged[tk++]);
				count++;
			}
			put_page(p);
		}
		if (last >= end)
			break;
	}
	while (tk < tn)
		put_page(tagged[tk++]);
	/* Nothing tagged is left past the last flagged page. */
	if (ti <= end && ti != 0) {
		tn = find_get_pages_tag(m, &ti, end, tag, 16, tagged);
		for (unsigned k = 0; k < tn; k++)
			put_page(tagged[k]);
		ASSERT_EQ(tn, 0);
	}
	if (start == 0 && end == ~(pgoff_t)0)
		ASSERT_EQ(mapping_tagged(m, tag), count > 0);
	return count;
}

static unsigned long
check_tags(struct address_space *m)
{
	check_tag(m, PAGECACHE_TAG_WRITEBACK, 0, ~(pgoff_t)0, 16);
	return check_tag(m, PAGECACHE_TAG_DIRTY, 0, ~(pgoff_t)0, 16);
}

static void
write_page(int fd, pgoff_t index, unsigned seed)
{
	unsigned char b[64];
	pat_fill(b, sizeof(b), seed, index);
	write_exact(fd, b, sizeof(b), (off_t)(index * PG + 100));
}

/* -------------------------------------------- tags follow the flags */

static struct address_space *hook_mapping;
static _Atomic int hook_calls, hook_wb_seen;

/* Between batching and the write: the batched pages have WRITEBACK and,
 * being clean now, no DIRTY; the pages not reached yet have DIRTY. */
static void
hook_check_batch(struct address_space *mapping)
{
	if (mapping != hook_mapping)
		return;
	atomic_fetch_add(&hook_calls, 1);
	atomic_fetch_add(&hook_wb_seen, (int)check_tag(mapping, PAGECACHE_TAG_WRITEBACK, 0,
	                                               ~(pgoff_t)0, 16));
	check_tag(mapping, PAGECACHE_TAG_DIRTY, 0, ~(pgoff_t)0, 16);
}

/*
 * Dirty pages scattered over three levels of the tree (indices up to
 * 64^2 * 3): the DIRTY tag is on exactly those, a lookup of a sub-range
 * or a few at a time finds them in order; during fsync's writeback the
 * batched pages carry WRITEBACK instead; afterwards nothing is tagged.
 * A store through a shared mapping tags its page too.
 */
TEST(tags_follow_dirty_and_writeback)
{
	static const pgoff_t idx[] = {0, 1, 63, 64, 65, 700, 4095, 4096, 4097, 12287};
	FOR_EACH_KIND(k)
	{
		if (k == 0 || k == 2)
			continue; /* ramfs: never clean; legacy: same index code */
		struct tfs t;
		tfs_mount(&t, k);
		int fd = tfs_create(&t, "f");
		struct address_space *m = fd_mapping(fd);
		for (size_t i = 0; i < PW_ARRAY_SIZE(idx); i++)
			write_page(fd, idx[i], 1);
		ASSERT_EQ(check_tags(m), PW_ARRAY_SIZE(idx));
		ASSERT_OK(pw_fsync(fd));
		ASSERT_EQ(check_tags(m), 0);
		ASSERT(!mapping_tagged(m, PAGECACHE_TAG_TOWRITE));

		for (size_t i = 0; i < PW_ARRAY_SIZE(idx); i += 2)
			write_page(fd, idx[i], 2);
		ASSERT_EQ(check_tags(m), (PW_ARRAY_SIZE(idx) + 1) / 2);
		for (pgoff_t i = 8000; i < 8040; i++)
			write_page(fd, i, 2);
		ASSERT_EQ(check_tags(m), (PW_ARRAY_SIZE(idx) + 1) / 2 + 40);
		/* a sub-range, one at a time and three at a time */
		ASSERT_EQ(check_tag(m, PAGECACHE_TAG_DIRTY, 64, 4096, 1), 2); /* 65, 4095 */
		ASSERT_EQ(check_tag(m, PAGECACHE_TAG_DIRTY, 1, 12287, 3), 44);
		ASSERT_EQ(check_tag(m, PAGECACHE_TAG_DIRTY, 5000, 12286, 3), 40);
		ASSERT_EQ(check_tag(m, PAGECACHE_TAG_DIRTY, 8040, 12286, 5), 0);

		hook_mapping = m;
		atomic_store(&hook_calls, 0);
		atomic_store(&hook_wb_seen, 0);
		__atomic_store_n(&pw__hooks.before_writeback_io, hook_check_batch, __ATOMIC_RELEASE);
		ASSERT_OK(pw_fsync(fd));
		__atomic_store_n(&pw__hooks.before_writeback_io, NULL, __ATOMIC_RELEASE);
		hook_mapping = NULL;
		TLOG("%s: %d batches, %d pages seen under writeback", test_kind_name(k),
		     atomic_load(&hook_calls), atomic_load(&hook_wb_seen));
		ASSERT_GE(atomic_load(&hook_calls), 1);
		/* hostfs: the last batch is the run of 40 (ext2 writes runs of
		 * blocks from inside the batch when they are not contiguous) */
		ASSERT_GE(atomic_load(&hook_wb_seen), test_kind_is_ext2(k) ? 1 : 40);
		ASSERT_EQ(check_tags(m), 0);

		/* a store through a shared mapping dirties and tags its page */
		unsigned char *map = pw_mmap(NULL, 80 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		ASSERT(map != MAP_FAILED);
		ASSERT_EQ(map[70 * PG], 0);
		ASSERT_EQ(check_tags(m), 0);
		map[70 * PG] = 7;
		map[65 * PG + 100] = 9;
		ASSERT_EQ(check_tags(m), 2);
		ASSERT_OK(pw_msync(map, 80 * PG, MS_SYNC));
		ASSERT_EQ(check_tags(m), 0);
		ASSERT_OK(pw_munmap(map, 80 * PG));
		ASSERT_OK(pw_close(fd));
		ASSERT_OK(pw_umount(t.mnt));
	}
}

/* Truncation and eviction take the tags with the pages; what stays is
 * still tagged, and the tree's upper levels lose the bits of the subtrees
 * that emptied. */
TEST(tags_removed_with_pages)
{
	FOR_EACH_KIND(k)
	{
		if (k == 2)
			continue;
		struct tfs t;
		tfs_mount(&t, k);
		int fd = tfs_create(&t, "f");
		struct address_space *m = fd_mapping(fd);
		for (pgoff_t i = 0; i < 9000; i += 97)
			write_page(fd, i, 3);
		unsigned long n = check_tags(m);
		ASSERT_EQ(n, (9000 + 96) / 97);
		/* cut in the middle of the second level */
		ASSERT_OK(pw_ftruncate(fd, (off_t)(4100 * PG)));
		ASSERT_EQ(check_tags(m), (4100 + 96) / 97);
		pgoff_t from = 4100;
		struct page *p[4];
		ASSERT_EQ(find_get_pages_tag(m, &from, ~(pgoff_t)0, PAGECACHE_TAG_DIRTY, 4, p), 0);
		if (k != 0) {
			/* eviction writes a dirty page back and drops it */
			ASSERT(evict_page(&t, fd, (off_t)(97 * PG)));
			ASSERT_EQ(check_tags(m), (4100 + 96) / 97 - 1);
			evict_all(&t, fd);
			ASSERT_EQ(check_tags(m), 0);
			ASSERT(!mapping_tagged(m, PAGECACHE_TAG_DIRTY));
		}
		ASSERT_OK(pw_ftruncate(fd, 0));
		ASSERT_EQ(check_tags(m), 0);
		ASSERT(!mapping_tagged(m, PAGECACHE_TAG_DIRTY));
		ASSERT_OK(pw_close(fd));
		ASSERT_OK(pw_umount(t.mnt));
	}
}

/* Random writes, truncations, evictions and fsyncs of a sparse file
 * whose pages reach the third level of the tree; after each step the
 * tags are exactly the flags. */
TEST(tags_random_against_flags)
{
	FOR_EACH_KIND(k)
	{
		if (k != 1 && k != 5)
			continue;
		struct tfs t;
		tfs_mount(&t, k);
		int fd = tfs_create(&t, "f");
		struct address_space *m = fd_mapping(fd);
		uint64_t seed = 0x5eed0000u + (unsigned)k;
		for (int step = 0; step < 400; step++) {
			seed = seed * 6364136223846793005ull + 1442695040888963407ull;
			unsigned r = (unsigned)(seed >> 33);
			pgoff_t where = (r >> 4) % 270000;
			switch (r % 16) {
			case 0:
				ASSERT_OK(pw_ftruncate(fd, (off_t)(where * PG + (r & 0xff))));
				break;
			case 1:
				ASSERT_OK(pw_fdatasync(fd));
				break;
			case 2:
				if (where * PG < (pgoff_t)fsize(fd))
					ASSERT_OK(pw__test_evict(fd, (off_t)(where * PG)));
				break;
			default:
				write_page(fd, where, (unsigned)step);
				if (r & 0x100)
					write_page(fd, where + 1, (unsigned)step);
				break;
			}
			check_tags(m);
		}
		ASSERT_OK(pw_fsync(fd));
		ASSERT_EQ(check_tags(m), 0);
		ASSERT_OK(pw_close(fd));
		ASSERT_OK(pw_umount(t.mnt));
	}
}

/* ------------------------------------------------ fsync of a big file */


/*
 * A 24 MiB file, every page cached and clean, five pages dirtied: fsync
 * (and fdatasync) writes exactly those five (pw_get_mount_stats; on
 * ext2 with the device's metadata blocks it writes too), and the data
 * reaches the backing store.
 */
TEST(tags_fsync_writes_only_dirty_pages)
{
	FOR_EACH_KIND(k)
	{
		if (k != 1 && k != 5)
			continue;
		struct tfs t;
		tfs_mount(&t, k);
		const size_t SZ = 24 * 1024 * 1024; /* the ext2 images are 64 MiB */
		unsigned char *model = xmalloc(SZ), *h = xmalloc(SZ);
		pat_fill(model, SZ, 31, 0);
		int fd = tfs_create(&t, "f");
		write_exact(fd, model, SZ, 0);
		ASSERT_OK(pw_fsync(fd));
		ASSERT_EQ(check_tags(fd_mapping(fd)), 0);
		static const pgoff_t dirty[] = {3, 4000, 4001, 5000, SZ / 4096 - 1};
		for (int round = 0; round < 2; round++) {
			for (size_t i = 0; i < PW_ARRAY_SIZE(dirty); i++) {
				pat_fill(model + dirty[i] * PG, PG, 40 + (unsigned)round, dirty[i] * PG);
				write_exact(fd, model + dirty[i] * PG, PG, (off_t)(dirty[i] * PG));
			}
			struct pw_mount_stats a, b;
			ASSERT_OK(pw_get_mount_stats(t.mnt, &a));
			ASSERT_OK(round ? pw_fsync(fd) : pw_fdatasync(fd));
			ASSERT_OK(pw_get_mount_stats(t.mnt, &b));
			TLOG("%s: %s wrote %llu pages", test_kind_name(k), round ? "fsync" : "fdatasync",
			     (unsigned long long)(b.written_pages - a.written_pages));
			/* ext2's fsync writes its whole device cache too: the inode
			 * table block (the writeback thread copies the inode there
			 * after an mtime change), perhaps the superblock. */
			uint64_t written = b.written_pages - a.written_pages;
			if (test_kind_is_ext2(k)) {
				ASSERT_GE(written, PW_ARRAY_SIZE(dirty));
				ASSERT_LE(written, PW_ARRAY_SIZE(dirty) + 2);
			} else {
				ASSERT_EQ(written, PW_ARRAY_SIZE(dirty));
			}
			ASSERT_EQ(b.dirty_pages, 0);
			ASSERT_EQ(b.cached_pages, a.cached_pages);
		}
		ASSERT_EQ(host_read(&t, "f", h, SZ), (ssize_t)SZ);
		ASSERT_MEM_EQ(h, model, SZ);
		ASSERT_OK(pw_close(fd));
		ASSERT_OK(pw_umount(t.mnt));
		free(model);
		free(h);
	}
}

/* --------------------------------------------- fsync against an appender */

static _Atomic long app_pages;
static _Atomic bool app_stop;

static void *
appender(void *arg)
{
	int fd = *(int *)arg;
	unsigned char b[4096];
	memset(b, 0x5a, sizeof(b));
	for (long k = 0; k < 16384 && !atomic_load(&app_stop); k++) {
		b[0] = (unsigned char)k;
		if (pw_pwrite(fd, b, sizeof(b), (off_t)(k * 4096)) != (ssize_t)sizeof(b))
			return (void *)1;
		atomic_store(&app_pages, k + 1);
	}
	return NULL;
}

static struct inode *app_inode;
static _Atomic long app_at_first_write; /* app_pages when fsync's first
                                         * write began, + 1 */

/* The host is slow to take writes: 2 ms per write call.  The first write
 * of the file comes after fsync tagged its pages: note how far the
 * appender had got then. */
static int
slow_host_write(struct inode *inode)
{
	long zero = 0;
	if (inode == app_inode)
		atomic_compare_exchange_strong(&app_at_first_write, &zero,
		                               atomic_load(&app_pages) + 1);
	struct timespec ts = {0, 2 * 1000 * 1000};
	nanosleep(&ts, NULL);
	return 0;
}

/*
 * fsync while another thread appends to the file faster than the host
 * takes writes: fsync writes the pages that were dirty when it began
 * (TOWRITE), not the ones appended behind it, so it returns while the
 * appender is still going instead of chasing it to the end.
 */
TEST_THREADED(tags_fsync_does_not_chase_an_appender)
{
	struct tfs t;
	tfs_mount(&t, 1);
	int fd = tfs_create(&t, "f");
	struct file *f = pw__fget(fd);
	ASSERT(f != NULL);
	app_inode = f->f_inode;
	pw__fput(f);
	atomic_store(&app_pages, 0);
	atomic_store(&app_at_first_write, 0);
	atomic_store(&app_stop, false);
	__atomic_store_n(&pw__hooks.host_write, slow_host_write, __ATOMIC_RELEASE);
	pthread_t th;
	ASSERT_OK(pthread_create(&th, NULL, appender, &fd));
	while (atomic_load(&app_pages) < 512)
		sched_yield();
	struct pw_mount_stats a, b;
	ASSERT_OK(pw_get_mount_stats(t.mnt, &a));
	long before = atomic_load(&app_pages);
	ASSERT_OK(pw_fsync(fd));
	long after = atomic_load(&app_pages);
	ASSERT_OK(pw_get_mount_stats(t.mnt, &b));
	atomic_store(&app_stop, true);
	void *ret;
	ASSERT_OK(pthread_join(th, &ret));
	__atomic_store_n(&pw__hooks.host_write, NULL, __ATOMIC_RELEASE);
	ASSERT(ret == NULL);
	uint64_t written = b.written_pages - a.written_pages;
	long tagged_by = atomic_load(&app_at_first_write);
	TLOG("fsync began at %ld pages appended, wrote the first at %ld, ended at %ld; "
	     "it wrote %llu",
	     before, tagged_by - 1, after, (unsigned long long)written);
	/* What was dirty when it tagged its pages (a page being appended
	 * then included), not what came after: without TOWRITE it wrote
	 * all 16384. */
	ASSERT_GT(tagged_by, 0);
	ASSERT_GE(written, (uint64_t)before);
	ASSERT_LE(written, (uint64_t)tagged_by);
	ASSERT_OK(pw_fsync(fd));
	ASSERT_OK(pw_close(fd));
	ASSERT_OK(pw_umount(t.mnt));
}

/*
 * test_reclaim.c - bounded memory and user mappings: reclaim unmaps in
 * batches and prefers unmapped pages.
 */
#include "pwt.h"

#include <pthread.h>
#include <stdatomic.h>

static int
hostfs_file(const struct tfs *t, const char *name, size_t size, unsigned seed)
{
	int fd = tfs_create(t, name);
	const size_t CH = 1 << 20;
	unsigned char *buf = xmalloc(CH);
	for (size_t off = 0; off < size; off += CH) {
		size_t n = PW_MIN(CH, size - off);
		pat_fill(buf, n, seed, off);
		write_exact(fd, buf, n, (off_t)off);
	}
	free(buf);
	ASSERT_OK(pw_fsync(fd));
	return fd;
}

/* ------------------------------------------------------------- reclaim */

/*
 * A file six times the cap, read through a mapping from start to end:
 * reclaim evicts mapped pages all along, and unmaps them with one call
 * per run of consecutive pages, not one per page.  Every byte is right.
 */
TEST(reclaim_unmaps_mapped_pages_in_batches)
{
	ASSERT_OK(pw_set_mem_limit(4 << 20));
	struct tfs t;
	tfs_mount(&t, 1);
	const size_t SZ = 24 << 20;
	int fd = hostfs_file(&t, "big", SZ, 81);
	ASSERT_OK(pw__test_evict_all(fd));
	unsigned char *m = pw_mmap(NULL, SZ, PROT_READ, MAP_SHARED, fd, 0);
	ASSERT(m != MAP_FAILED);
	struct pw_stats a, b;
	pw_get_stats(&a);
	for (size_t off = 0; off < SZ; off += PG)
		ASSERT_EQ(m[off + 7], pat_byte(81, off + 7));
	pw_get_stats(&b);
	uint64_t evicted = b.reclaimed_pages - a.reclaimed_pages;
	uint64_t calls = b.reclaim_unmaps - a.reclaim_unmaps;
	TLOG("evicted %llu pages with %llu unmap calls; %llu pages in use for a cap of 1024",
	     (unsigned long long)evicted, (unsigned long long)calls,
	     (unsigned long long)b.allocated_pages);
	ASSERT_GE(evicted, SZ / PG - 1024 - 128);
	ASSERT_GT(calls, 0);
	ASSERT_LE(calls * 16, evicted);
	ASSERT_LE(b.allocated_pages, 1024 + 64 + 64);
	ASSERT_OK(pw_munmap(m, SZ));
	ASSERT_OK(pw_close(fd));
	ASSERT_OK(pw_umount(t.mnt));
	ASSERT_OK(pw_set_mem_limit(0));
}

/*
 * Reclaim prefers clean unmapped pages: with a file mapped (and touched
 * once, longest ago of all) and another read with pread until a few
 * hundred pages must go, the mapped pages all stay mapped.
 */
TEST(reclaim_prefers_unmapped_pages)
{
	ASSERT_OK(pw_set_mem_limit(4 << 20));
	struct tfs t;
	tfs_mount(&t, 1);
	int fa = hostfs_file(&t, "mapped", 128 * PG, 82);
	int fb = hostfs_file(&t, "read", 1200 * PG, 83);
	ASSERT_OK(pw__test_evict_all(fa));
	ASSERT_OK(pw__test_evict_all(fb));
	unsigned char *m = pw_mmap(NULL, 128 * PG, PROT_READ, MAP_SHARED, fa, 0);
	ASSERT(m != MAP_FAILED);
	for (size_t off = 0; off < 128 * PG; off += PG)
		ASSERT_EQ(m[off], pat_byte(82, off));
	struct pw_stats st;
	pw_get_stats(&st);
	uint64_t mapped = st.mapped_pages;
	ASSERT_EQ(mapped, 128);
	unsigned char buf[64 * 1024];
	for (size_t off = 0; off < 1200 * PG; off += sizeof(buf))
		ASSERT_GT(pw_pread(fb, buf, sizeof(buf), (off_t)off), 0);
	pw_get_stats(&st);
	TLOG("evicted %llu pages; %llu of 128 still mapped",
	     (unsigned long long)st.reclaimed_pages, (unsigned long long)st.mapped_pages);
	ASSERT_GE(st.reclaimed_pages, 200);
	ASSERT_EQ(st.mapped_pages, 128);
	ASSERT_OK(pw_munmap(m, 128 * PG));
	ASSERT_OK(pw_close(fa));
	ASSERT_OK(pw_close(fb));
	ASSERT_OK(pw_umount(t.mnt));
	ASSERT_OK(pw_set_mem_limit(0));
}

struct cap_worker {
	int fd;
	int id;
	unsigned char *map;
	size_t region;
};

static void *
map_and_write(void *p)
{
	struct cap_worker *w = p;
	unsigned char buf[4096];
	for (int round = 0; round < 3; round++) {
		for (size_t off = 0; off < w->region; off += PG) {
			unsigned char v = (unsigned char)(w->id * 16 + round + 1);
			size_t at = (size_t)w->id * w->region + off;
			if (off & PG) {
				__atomic_store_n(&w->map[at + 5], v, __ATOMIC_RELAXED);
			} else {
				memset(buf, v, sizeof(buf));
				if (pw_pwrite(w->fd, buf, 16, (off_t)at) != 16)
					return (void *)1;
			}
		}
		for (size_t off = 0; off < w->region; off += PG) {
			size_t at = (size_t)w->id * w->region + off;
			unsigned char want = (unsigned char)(w->id * 16 + round + 1);
			size_t byte = (off & PG) ? at + 5 : at;
			if (__atomic_load_n(&w->map[byte], __ATOMIC_RELAXED) != want)
				return (void *)2;
		}
	}
	return NULL;
}

/* Threads storing through one shared mapping and writing with pwrite,
 * each in its own region, on ext2 under a 2 MiB cap: reclaim unmaps and
 * evicts other threads' pages all the time (and dirty pages wait for
 * writeback), and every thread reads back its own data. */
TEST_THREADED(reclaim_threads_map_and_write_ext2_small_cap)
{
	ASSERT_OK(pw_set_mem_limit(2 << 20));
	struct tfs t;
	tfs_mount(&t, 5);
	int fd = tfs_create(&t, "f");
	const int N = 4;
	const size_t REGION = 1 << 20;
	ASSERT_OK(pw_ftruncate(fd, (off_t)(N * REGION)));
	unsigned char *m = pw_mmap(NULL, N * REGION, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT(m != MAP_FAILED);
	struct cap_worker w[4];
	pthread_t th[4];
	for (int k = 0; k < N; k++) {
		w[k] = (struct cap_worker){fd, k, m, REGION};
		ASSERT_OK(pthread_create(&th[k], NULL, map_and_write, &w[k]));
	}
	for (int k = 0; k < N; k++) {
		void *r;
		ASSERT_OK(pthread_join(th[k], &r));
		ASSERT_PTR_EQ(r, NULL);
	}
	ASSERT_OK(pw_msync(m, N * REGION, MS_SYNC));
	ASSERT_OK(pw_munmap(m, N * REGION));
	ASSERT_OK(pw_close(fd));
	ASSERT_OK(pw_umount(t.mnt));
	ASSERT_OK(pw_set_mem_limit(0));
}

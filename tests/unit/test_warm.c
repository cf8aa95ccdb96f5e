/*
 * test_warm.c - the pool's warmer (pool.c): it touches free frames ahead
 * of use, and a frame handed out while it touches it keeps its new
 * owner's bytes;
 * under a memory cap it does not grow the pool; PAGEWRIGHT_POOL_WARM=0
 * turns it off.  And where pw__alloc_page places pages: files created one
 * after another share groups of frames (a fresh group each was the
 * warmer's undoing: users entered groups faster than it could touch
 * them), while a file that grows meanwhile keeps a run of its own.
 */
#include "pwt.h"

#include <stdatomic.h>

static _Atomic int hook_calls, hook_release;
static _Atomic unsigned long held_pfn;

/* Hold the warmer just before it touches its first frame, until the test
 * lets it go. */
static void
warm_touch(void *frame)
{
	char *base = page_address(pw__pfn_to_page(0));
	if (atomic_fetch_add(&hook_calls, 1) == 0) {
		atomic_store(&held_pfn, (unsigned long)((char *)frame - base) / PG);
		while (!atomic_load(&hook_release))
			usleep(1000);
	}
}

static void
check_pattern(int fd, size_t sz, unsigned seed)
{
	const size_t CH = 1 << 20;
	unsigned char *buf = xmalloc(CH), *want = xmalloc(CH);
	for (size_t off = 0; off < sz; off += CH) {
		ASSERT_EQ(pw_pread(fd, buf, CH, (off_t)off), (ssize_t)CH);
		pat_fill(want, CH, seed, off);
		ASSERT_MEM_EQ(buf, want, CH);
	}
	free(buf);
	free(want);
}

/* Wait (up to 20 s) until the warmer has touched at least one frame. */
static uint64_t
wait_warmed(void)
{
	struct pw_stats st;
	for (int k = 0; k < 2000; k++) {
		pw_get_stats(&st);
		if (st.warmed_pages > 0)
			return st.warmed_pages;
		usleep(10000);
	}
	return 0;
}

/*
 * The warmer touches free frames without taking them out of the free
 * bitmap, so one can be handed out while it is being touched; the touch
 * (an indivisible OR of zero) must then leave the new owner's bytes as
 * they are.  A hook holds the warmer just before its first touch while a
 * writer fills 24 MiB, which takes the held frame; every byte reads back.
 * Checked: with the touch a load before the hook and a store of the loaded
 * word after it, file b read back wrong at that frame.
 */
TEST_THREADED(pool_warm_touch_keeps_new_owners_bytes)
{
	__atomic_store_n(&pw__hooks.pool_warm_touch, warm_touch, __ATOMIC_RELEASE);
	struct tfs t;
	tfs_mount(&t, 0);
	const size_t SZ = 24 << 20;
	int a = tfs_pattern_file(&t, "a", SZ, 11);
	for (int k = 0; k < 2000 && atomic_load(&hook_calls) == 0; k++)
		usleep(10000);
	ASSERT_GT(atomic_load(&hook_calls), 0);
	/* The warmer is held at a free frame: allocate around it. */
	int b = tfs_pattern_file(&t, "b", SZ, 12);
	bool taken = !pw__pool_frame_free(atomic_load(&held_pfn));
	atomic_store(&hook_release, 1);
	ASSERT_GT(wait_warmed(), 0);
	__atomic_store_n(&pw__hooks.pool_warm_touch, NULL, __ATOMIC_RELEASE);
	TLOG("warmer held at frame %lu, %s by the writer meanwhile; %d frames through the hook",
	     atomic_load(&held_pfn), taken ? "taken" : "not taken", atomic_load(&hook_calls));
	ASSERT(taken);
	check_pattern(a, SZ, 11);
	check_pattern(b, SZ, 12);
	ASSERT_OK(pw_close(a));
	ASSERT_OK(pw_close(b));
	ASSERT_OK(pw_umount(t.mnt));
}

/*
 * Under a cap of 12 MiB the pool stays at its first chunk (16 MiB): the
 * warmer, which keeps 8 MiB of frames free where there is no cap (4 MiB
 * are free here), does not grow it, but still touches the free frames it
 * has.  Checked: with the cap test taken out of warm_next, the pool grew
 * to 32 MiB.
 */
TEST(pool_warm_respects_cap)
{
	ASSERT_OK(pw_set_mem_limit(12 << 20));
	struct tfs t;
	tfs_mount(&t, 1);
	const size_t SZ = 32 << 20;
	int fd = tfs_pattern_file(&t, "big", SZ, 21);
	ASSERT_OK(pw_fsync(fd));
	ASSERT_GT(wait_warmed(), 0);
	struct pw_stats st;
	pw_get_stats(&st);
	TLOG("pool %llu frames, %llu in use, %llu warmed", (unsigned long long)st.pool_pages,
	     (unsigned long long)st.allocated_pages, (unsigned long long)st.warmed_pages);
	ASSERT_LE(st.pool_pages, (16 << 20) / PG);
	check_pattern(fd, SZ, 21);
	ASSERT_OK(pw_close(fd));
	ASSERT_OK(pw_umount(t.mnt));
	ASSERT_OK(pw_set_mem_limit(0));
}

/* PAGEWRIGHT_POOL_WARM=0: no thread, no frame touched ahead. */
TEST(pool_warm_off)
{
	setenv("PAGEWRIGHT_POOL_WARM", "0", 1);
	struct tfs t;
	tfs_mount(&t, 0);
	int fd = tfs_pattern_file(&t, "a", 24 << 20, 31);
	usleep(200000);
	struct pw_stats st;
	pw_get_stats(&st);
	ASSERT_EQ(st.warmed_pages, 0);
	check_pattern(fd, 24 << 20, 31);
	ASSERT_OK(pw_close(fd));
	ASSERT_OK(pw_umount(t.mnt));
	unsetenv("PAGEWRIGHT_POOL_WARM");
}

/* The pool frame of the page holding byte off of fd (pw_pread_pin). */
static unsigned long
frame_of(int fd, off_t off)
{
	struct pw_span sp[1];
	int ns = 0;
	struct pw_pin *pin = NULL;
	ASSERT_EQ(pw_pread_pin(fd, 1, off, sp, 1, &ns, &pin), 1);
	ASSERT_EQ(ns, 1);
	unsigned long pfn = (unsigned long)(sp[0].off / (off_t)PG);
	pw_unpin(pin);
	return pfn;
}

/*
 * 64 files of three pages, written one after another, fill four groups
 * of 64 frames (a few more if a recently freed frame is reused), each
 * file one run.  Checked: with a new file's first page placed 64 frames
 * after the previous one, as before, they took 64 groups.
 */
TEST(pool_new_files_share_groups)
{
	struct tfs t;
	tfs_mount(&t, 0);
	enum { N = 64, PAGES = 3 };
	static char buf[PAGES * PAGE_SIZE];
	memset(buf, 'x', sizeof(buf));
	int fds[N];
	for (int k = 0; k < N; k++) {
		char name[32];
		XSNPRINTF(name, sizeof(name), "s%d", k);
		fds[k] = tfs_create(&t, name);
		ASSERT_EQ(pw_write(fds[k], buf, sizeof(buf)), (ssize_t)sizeof(buf));
	}
	static unsigned char group_seen[1 << 18];
	unsigned groups = 0, broken = 0;
	for (int k = 0; k < N; k++) {
		for (int p = 0; p < PAGES; p++) {
			unsigned long f = frame_of(fds[k], (off_t)(p * PG));
			ASSERT_LT(f / 64, sizeof(group_seen));
			if (!group_seen[f / 64]++)
				groups++;
			if (p > 0 && f != frame_of(fds[k], (off_t)((p - 1) * PG)) + 1)
				broken++;
		}
		ASSERT_OK(pw_close(fds[k]));
	}
	TLOG("%d files of %d pages: %u groups, %u files broken", N, PAGES, groups, broken);
	ASSERT_LE(groups, 6);
	ASSERT_LE(broken, 2);
	ASSERT_OK(pw_umount(t.mnt));
}

/*
 * A file grows a page at a time while one-page files are created between
 * its pages: the growing file is broken once at most (its second page
 * finds the next frame taken), and the new files still share groups.
 * Checked: placing each new file after the frame allocated last broke
 * the growing file at every page.
 */
TEST(pool_growing_file_keeps_its_run)
{
	struct tfs t;
	tfs_mount(&t, 0);
	enum { N = 48 };
	static char page[PAGE_SIZE];
	memset(page, 'y', sizeof(page));
	int a = tfs_create(&t, "grows");
	int small[N];
	for (int k = 0; k < N; k++) {
		ASSERT_EQ(pw_pwrite(a, page, PG, (off_t)(k * PG)), (ssize_t)PG);
		char name[32];
		XSNPRINTF(name, sizeof(name), "n%d", k);
		small[k] = tfs_create(&t, name);
		ASSERT_EQ(pw_write(small[k], page, 100), 100);
	}
	unsigned runs = 1, groups = 0;
	for (int k = 1; k < N; k++)
		if (frame_of(a, (off_t)(k * PG)) != frame_of(a, (off_t)((k - 1) * PG)) + 1)
			runs++;
	static unsigned char group_seen[1 << 18];
	for (int k = 0; k < N; k++) {
		unsigned long f = frame_of(small[k], 0);
		ASSERT_LT(f / 64, sizeof(group_seen));
		if (!group_seen[f / 64]++)
			groups++;
		ASSERT_OK(pw_close(small[k]));
	}
	TLOG("growing file: %u runs over %d pages; %d new files in %u groups", runs, N, N,
	     groups);
	ASSERT_LE(runs, 3);
	ASSERT_LE(groups, 3);
	ASSERT_OK(pw_close(a));
	ASSERT_OK(pw_umount(t.mnt));
}

/*
 * A reader makes the warmer work too (it copies out of the frames), and
 * the warmer leaves the frames it touches free, so the reader's readahead
 * still takes them in runs: 32 MiB written on the host and read cold
 * through hostfs sit in one run of frames here.  Checked: with the warmer
 * taking a group's free frames out of the bitmap for its visit, as
 * before, the file was in 37 runs (and in-process cold reads of ext2 took
 * 3-4x the kernel's time).
 */
TEST(pool_warm_keeps_readers_runs)
{
	struct tfs t;
	tfs_mount(&t, 1);
	const size_t SZ = 32 << 20, CH = 1 << 20;
	char hp[600];
	XSNPRINTF(hp, sizeof(hp), "%s/cold", t.host);
	int hfd = open(hp, O_CREAT | O_WRONLY | O_TRUNC, 0644);
	ASSERT_GE(hfd, 0);
	unsigned char *buf = xmalloc(CH);
	for (size_t off = 0; off < SZ; off += CH) {
		pat_fill(buf, CH, 41, off);
		ASSERT_EQ(write(hfd, buf, CH), (ssize_t)CH);
	}
	ASSERT_OK(close(hfd));
	free(buf);
	int fd = tfs_open(&t, "cold", O_RDONLY);
	check_pattern(fd, SZ, 41);
	unsigned runs = 1;
	for (size_t p = 1; p < SZ / PG; p++)
		if (frame_of(fd, (off_t)(p * PG)) != frame_of(fd, (off_t)((p - 1) * PG)) + 1)
			runs++;
	struct pw_stats st;
	pw_get_stats(&st);
	TLOG("%zu pages in %u runs of frames; %llu frames warmed", SZ / PG, runs,
	     (unsigned long long)st.warmed_pages);
	ASSERT_GT(wait_warmed(), 0);
	ASSERT_LE(runs, 8);
	ASSERT_OK(pw_close(fd));
	ASSERT_OK(pw_umount(t.mnt));
}

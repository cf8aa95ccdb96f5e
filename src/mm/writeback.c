/*
 * writeback.c - the background writeback thread and the dirty limits.
 *
 * Dirty pages are written back without anyone asking in two cases, as in
 * Linux: when they have been dirty longer than the expiry age (an inode's
 * i_dirtied_when, set when its first page gets dirty), and when the dirty
 * pages of the whole cache pass the background threshold.  One thread,
 * "pw-flush", does both: it wakes every interval, or at once when a
 * writer crosses the background threshold, and walks the inodes of every
 * mounted filesystem, then the filesystem's device cache (metadata),
 * writing at most FLUSH_CHUNK pages of each per pass (cyclically) and
 * passing again at once while one had more, so one busy file cannot hold
 * it.  It skips a mapping another thread is writing back (do_writepages
 * admits one thread per mapping).  Between passes it looks at the
 * process's mapping count (pw__mm_maps_check, mmap.c).
 * Above the hard limit, writers wait for it to bring the dirty pages
 * under the limit, or write back their own files if it makes no progress
 * (balance_dirty_pages_ratelimited), so no writer can fill memory.
 *
 * Thresholds, from the environment at start-up:
 *   PAGEWRIGHT_DIRTY_LIMIT       bytes (K/M/G); default a fifth of the
 *                                machine's memory (Linux's dirty_ratio 20),
 *                                or a quarter of the memory cap if smaller
 *   PAGEWRIGHT_DIRTY_BACKGROUND  bytes; default half the limit
 *   PAGEWRIGHT_DIRTY_EXPIRE_MS   default 30000 (Linux's dirty_expire)
 *   PAGEWRIGHT_WRITEBACK_MS      wake-up interval, default 1000
 *   PAGEWRIGHT_WRITEPAGES        0: write back page by page through
 *                                ->writepage, not in batches (to measure
 *                                what batching saves); default 1
 *
 * Writers hold i_rwsem while they wait; the thread never takes it.  A
 * write fault on a shared mapping waits too (pw__balance_dirty_fault).
 *
 * The thread holds no lock while writing; it pins each superblock with
 * s_active so that unmount waits for it (pw_umount), and each inode with
 * a reference.  Errors land in the mappings' errseq, so fsync reports a
 * failed background write to every descriptor.
 */
#include "internal.h"

#include <pagewright/buffer_head.h>

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t dirty_limit_cfg = 256UL << 20 >> PAGE_SHIFT; /* (C) pages; set
                                                               * from RAM at init */
static uint64_t dirty_background_cfg;                         /* (C) 0: half */
static int64_t expire_ms = 30000;                             /* (C) */
static int64_t interval_ms = 1000;                            /* (C) */
static pthread_mutex_t flush_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t flush_cond = PTHREAD_COND_INITIALIZER;
static bool flush_kicked;                                      /* (flush_lock) */
static _Atomic bool flusher_alive;                             /* (A) */
bool pw__writepages_enabled = true;                            /* (C) */
bool pw__start_io_enabled = true;                              /* (C) */

int64_t
pw__now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
pw__now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

uint64_t
pw__dirty_limit_pages(void)
{
	uint64_t cap = pw__mem_limit_pages();
	return cap && cap / 4 < dirty_limit_cfg ? cap / 4 : dirty_limit_cfg;
}

uint64_t
pw__dirty_background_pages(void)
{
	uint64_t limit = pw__dirty_limit_pages();
	return dirty_background_cfg && dirty_background_cfg < limit ? dirty_background_cfg
	                                                            : limit / 2;
}

/* Is there a writeback thread to wait for (a forked child has none)? */
bool
pw__flusher_alive(void)
{
	return atomic_load_explicit(&flusher_alive, memory_order_relaxed);
}

void
pw__wakeup_flusher(void)
{
	pthread_mutex_lock(&flush_lock);
	if (!flush_kicked) {
		flush_kicked = true;
		pthread_cond_signal(&flush_cond);
	}
	pthread_mutex_unlock(&flush_lock);
}

struct flush_ctx {
	int64_t now;
	bool over_background;
	bool more;            /* a mapping used up its chunk: pass again */
};

/* Pages written back per inode per pass (the kernel writes 1024): a
 * chunk, cyclically, so that one file being dirtied as fast as it is
 * written cannot keep the thread, and a fsync waiting for the mapping
 * (do_writepages), forever. */
#define FLUSH_CHUNK 2048

static void
flush_mapping(struct address_space *mapping, struct flush_ctx *c)
{
	struct writeback_control wbc = {.range_cyclic = true, .nr_to_write = FLUSH_CHUNK,
	                                .for_background = true};
	do_writepages(mapping, &wbc);
	if (wbc.nr_written >= FLUSH_CHUNK)
		c->more = true;
}

static void
flush_inode(struct inode *inode, void *arg)
{
	struct flush_ctx *c = arg;
	const struct super_operations *sop = inode->i_sb->s_op;
	if (atomic_load(&inode->i_data.nrdirty) > 0) {
		int64_t since = atomic_load_explicit(&inode->i_dirtied_when, memory_order_relaxed);
		if (c->over_background || c->now - since >= expire_ms)
			flush_mapping(inode->i_mapping, c);
	}
	if (sop->write_inode && inode_test_clear_dirty(inode))
		sop->write_inode(inode, false);
}

/* One pass over every mounted filesystem.  Return: true if some mapping
 * used up its chunk (there is more to write now). */
static bool
flush_all(void)
{
	struct super_block **sbs = pw__get_supers();
	bool more = false;
	if (!sbs)
		return false;
	for (struct super_block **p = sbs; *p; p++) {
		struct flush_ctx c = {
		    .now = pw__now_ms(),
		    .over_background = atomic_load(&pw__stat.dirty) >= pw__dirty_background_pages(),
		};
		pw__for_each_inode(*p, flush_inode, &c);
		if ((*p)->s_bdev)
			flush_mapping((*p)->s_bdev->bd_mapping, &c);
		more |= c.more;
		pw__sb_put(*p);
	}
	free(sbs);
	return more;
}

static void *
flusher(void *arg)
{
	(void)arg;
	for (;;) {
		pthread_mutex_lock(&flush_lock);
		if (!flush_kicked) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += interval_ms / 1000;
			ts.tv_nsec += (interval_ms % 1000) * 1000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&flush_cond, &flush_lock, &ts);
		}
		flush_kicked = false;
		pthread_mutex_unlock(&flush_lock);
		if (atomic_load(&pw__forked_child)) {
			atomic_store(&flusher_alive, false);
			return NULL;
		}
		while (flush_all() && !atomic_load(&pw__forked_child))
			;
		pw__mm_maps_check();
	}
	return NULL;
}

/**
 * pw__parse_bytes - "64M", "1G", "512k", "4096": a size in bytes, for the
 * PAGEWRIGHT_* settings.  Return: 0 for an empty or malformed value.
 */
uint64_t
pw__parse_bytes(const char *s)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (end == s)
		return 0;
	switch (tolower((unsigned char)*end)) {
	case 'k': v <<= 10; end++; break;
	case 'm': v <<= 20; end++; break;
	case 'g': v <<= 30; end++; break;
	default: break;
	}
	return *end ? 0 : v;
}

static uint64_t
env_bytes(const char *name)
{
	const char *s = getenv(name);
	if (!s || !*s)
		return 0;
	uint64_t v = pw__parse_bytes(s);
	if (!v)
		pw_log("%s=%s ignored: want bytes, with K/M/G", name, s);
	return v;
}

void
pw__writeback_init(void)
{
	uint64_t v;
	long ram = sysconf(_SC_PHYS_PAGES);
	if (ram > 0 && (uint64_t)ram / 5 > 1024)
		dirty_limit_cfg = (uint64_t)ram / 5;
	if ((v = env_bytes("PAGEWRIGHT_DIRTY_LIMIT")) >= PAGE_SIZE * 16)
		dirty_limit_cfg = v >> PAGE_SHIFT;
	if ((v = env_bytes("PAGEWRIGHT_DIRTY_BACKGROUND")) >= PAGE_SIZE)
		dirty_background_cfg = v >> PAGE_SHIFT;
	if ((v = env_bytes("PAGEWRIGHT_DIRTY_EXPIRE_MS")))
		expire_ms = (int64_t)v;
	if ((v = env_bytes("PAGEWRIGHT_WRITEBACK_MS")))
		interval_ms = (int64_t)v;
	const char *wp = getenv("PAGEWRIGHT_WRITEPAGES");
	if (wp && strcmp(wp, "0") == 0)
		pw__writepages_enabled = false;
	const char *sio = getenv("PAGEWRIGHT_START_IO");
	if (sio && strcmp(sio, "0") == 0)
		pw__start_io_enabled = false;
	pthread_t t;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	atomic_store(&flusher_alive, true);
	if (pthread_create(&t, &attr, flusher, NULL) != 0) {
		atomic_store(&flusher_alive, false);
		pw_log("no writeback thread: dirty pages are written by fsync and writers only");
	}
	pthread_attr_destroy(&attr);
}

/*
 * inode.c - inode tables, references and eviction; filesystem types.
 *
 * Each superblock keeps a hash table of its in-memory inodes, so that a
 * file opened twice, or opened and mapped, shares one inode and one page
 * cache.  The table holds no reference: an inode whose count drops to
 * zero stays cached while it has links, and is evicted (pages dropped,
 * ->evict_inode called, memory freed) when it has none, or at unmount.
 *
 * Invariant: i_count changes from 0 to 1 (ilookup) and from 1 to 0 (iput)
 * only under s_inode_lock, so a lookup never resurrects an inode that is
 * being evicted.
 *
 * Lock ordering: s_inode_lock is taken with no page or index lock held.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FSTYPES 8
static const struct file_system_type *fstypes[MAX_FSTYPES];
static pthread_mutex_t fstypes_lock = PTHREAD_MUTEX_INITIALIZER;

int
register_filesystem(const struct file_system_type *fst)
{
	int err = -ENOSPC;
	pthread_mutex_lock(&fstypes_lock);
	for (int k = 0; k < MAX_FSTYPES; k++) {
		if (fstypes[k] && strcmp(fstypes[k]->name, fst->name) == 0) {
			err = -EBUSY;
			break;
		}
		if (!fstypes[k]) {
			fstypes[k] = fst;
			err = 0;
			break;
		}
	}
	pthread_mutex_unlock(&fstypes_lock);
	return err;
}

const struct file_system_type *
pw__find_filesystem(const char *name)
{
	const struct file_system_type *found = NULL;
	pthread_mutex_lock(&fstypes_lock);
	for (int k = 0; k < MAX_FSTYPES && fstypes[k]; k++)
		if (strcmp(fstypes[k]->name, name) == 0)
			found = fstypes[k];
	pthread_mutex_unlock(&fstypes_lock);
	return found;
}

/* The inode table: chains hashed by i_ino, a power-of-two number of
 * buckets that doubles when the chains average more than two inodes (a
 * fixed 256 made lookups walk chains of 40 with 10,000 inodes cached). */
#define IHASH_MIN 256

static size_t
ihash(const struct super_block *sb, uint64_t ino)
{
	return (size_t)((ino * 0x9E3779B97F4A7C15ULL) >> 32) & (sb->s_inode_buckets - 1);
}

/* s_inode_lock held.  Best effort: without memory the chains grow. */
static void
ihash_grow(struct super_block *sb)
{
	bool one = !sb->s_inodes || sb->s_inodes == &sb->s_inode_one;
	size_t n = one ? IHASH_MIN : sb->s_inode_buckets * 2;
	struct inode **t = calloc(n, sizeof(*t));
	if (!t) {
		if (!sb->s_inodes) {
			sb->s_inodes = &sb->s_inode_one;
			sb->s_inode_buckets = 1;
		}
		return;
	}
	struct inode **old = sb->s_inodes;
	size_t old_n = old ? sb->s_inode_buckets : 0;
	sb->s_inodes = t;
	sb->s_inode_buckets = n;
	for (size_t h = 0; h < old_n; h++) {
		for (struct inode *i = old[h], *next; i; i = next) {
			next = i->i_hash_next;
			size_t k = ihash(sb, i->i_ino);
			i->i_hash_next = t[k];
			t[k] = i;
		}
	}
	if (old != &sb->s_inode_one)
		free(old);
}

void
pw__inode_table_free(struct super_block *sb)
{
	if (sb->s_inodes != &sb->s_inode_one)
		free(sb->s_inodes);
	sb->s_inodes = NULL;
	sb->s_inode_buckets = 0;
}

/*
 * Timestamps come from the coarse clock, as the kernel's do: it is what
 * the write path reads for mtime (filemap.c), it costs less, and a FUSE
 * client compares the times we report with its own current_time(): a
 * file created and written within one clock tick then has nothing to
 * update, so the kernel sends no SETATTR for its times at close (one
 * round trip of the five a small file costs in cache=writeback).
 */
void
pw__current_time(struct timespec *ts)
{
	clock_gettime(CLOCK_REALTIME_COARSE, ts);
}

/**
 * new_inode - allocate an inode with one reference, not yet in the table.
 * The filesystem fills it in, then calls insert_inode_hash().
 */
struct inode *
new_inode(struct super_block *sb, uint64_t ino,
          const struct address_space_operations *aops)
{
	struct inode *inode = pw__kzalloc(sizeof(*inode));
	if (!inode)
		return NULL;
	inode->i_ino = ino;
	inode->i_sb = sb;
	atomic_store(&inode->i_count, 1);
	atomic_store(&inode->i_nlink, 1);
	pthread_mutex_init(&inode->i_rwsem, NULL);
	struct address_space *m = &inode->i_data;
	m->host = inode;
	m->a_ops = aops;
	pthread_mutex_init(&m->i_pages_lock, NULL);
	pthread_mutex_init(&m->i_mmap_lock, NULL);
	inode->i_mapping = m;
	struct timespec now;
	pw__current_time(&now);
	inode_time_set(&inode->i_atime, now);
	inode_time_set(&inode->i_mtime, now);
	inode_time_set(&inode->i_ctime, now);
	return inode;
}

void
insert_inode_hash(struct inode *inode)
{
	struct super_block *sb = inode->i_sb;
	pthread_mutex_lock(&sb->s_inode_lock);
	if (!sb->s_inodes || sb->s_nr_hashed > 2 * sb->s_inode_buckets)
		ihash_grow(sb);
	size_t h = ihash(sb, inode->i_ino);
	inode->i_hash_next = sb->s_inodes[h];
	sb->s_inodes[h] = inode;
	sb->s_nr_hashed++;
	pthread_mutex_unlock(&sb->s_inode_lock);
}

/* s_inode_lock held */
static void
lru_del(struct inode *inode)
{
	struct super_block *sb = inode->i_sb;
	if (!inode->i_on_lru)
		return;
	*(inode->i_lru_prev ? &inode->i_lru_prev->i_lru_next : &sb->s_lru_head) =
	    inode->i_lru_next;
	*(inode->i_lru_next ? &inode->i_lru_next->i_lru_prev : &sb->s_lru_tail) =
	    inode->i_lru_prev;
	inode->i_lru_prev = inode->i_lru_next = NULL;
	inode->i_on_lru = false;
	sb->s_nr_unused--;
}

/* s_inode_lock held */
static void
lru_add(struct inode *inode)
{
	struct super_block *sb = inode->i_sb;
	inode->i_lru_prev = sb->s_lru_tail;
	inode->i_lru_next = NULL;
	*(sb->s_lru_tail ? &sb->s_lru_tail->i_lru_next : &sb->s_lru_head) = inode;
	sb->s_lru_tail = inode;
	inode->i_on_lru = true;
	sb->s_nr_unused++;
}

struct inode *
ilookup(struct super_block *sb, uint64_t ino)
{
	pthread_mutex_lock(&sb->s_inode_lock);
	struct inode *i = sb->s_inodes ? sb->s_inodes[ihash(sb, ino)] : NULL;
	while (i && i->i_ino != ino)
		i = i->i_hash_next;
	if (i && atomic_fetch_add(&i->i_count, 1) == 0)
		lru_del(i);
	pthread_mutex_unlock(&sb->s_inode_lock);
	return i;
}

void
ihold(struct inode *inode)
{
	atomic_fetch_add(&inode->i_count, 1);
}

static void
unhash_locked(struct inode *inode)
{
	struct super_block *sb = inode->i_sb;
	if (!sb->s_inodes)
		return;
	struct inode **pp = &sb->s_inodes[ihash(sb, inode->i_ino)];
	while (*pp && *pp != inode)
		pp = &(*pp)->i_hash_next;
	if (*pp) {
		*pp = inode->i_hash_next;
		sb->s_nr_hashed--;
	}
}

/* The inode is out of the table and unreferenced: free it. */
static void
evict(struct inode *inode)
{
	truncate_inode_pages(inode->i_mapping, 0);
	if (inode->i_sb->s_op && inode->i_sb->s_op->evict_inode)
		inode->i_sb->s_op->evict_inode(inode);
	pthread_mutex_destroy(&inode->i_rwsem);
	pthread_mutex_destroy(&inode->i_data.i_pages_lock);
	pthread_mutex_destroy(&inode->i_data.i_mmap_lock);
	pw__kfree(inode, sizeof(*inode));
}

/*
 * Evict the oldest unused inode if the LRU is over its limit.  It is
 * written back while still hashed and held by us, so a lookup that races
 * with the eviction either gets it back (and we leave it) or, once it is
 * unhashed, finds the backing store already up to date.
 */
static void
prune_one(struct super_block *sb)
{
	pthread_mutex_lock(&sb->s_inode_lock);
	struct inode *victim = sb->s_nr_unused > sb->s_max_unused ? sb->s_lru_head : NULL;
	if (victim) {
		lru_del(victim);
		atomic_store(&victim->i_count, 1);
	}
	pthread_mutex_unlock(&sb->s_inode_lock);
	if (!victim)
		return;
	filemap_write_and_wait_range(victim->i_mapping, 0, INT64_MAX);
	if (sb->s_op->write_inode && inode_test_clear_dirty(victim))
		sb->s_op->write_inode(victim, true);
	pthread_mutex_lock(&sb->s_inode_lock);
	bool evictable = atomic_fetch_sub(&victim->i_count, 1) == 1 &&
	                 atomic_load(&victim->i_data.nrdirty) == 0;
	if (evictable)
		unhash_locked(victim);
	else if (atomic_load(&victim->i_count) == 0)
		lru_add(victim);
	pthread_mutex_unlock(&sb->s_inode_lock);
	if (evictable)
		evict(victim);
}

void
iput(struct inode *inode)
{
	if (!inode)
		return;
	struct super_block *sb = inode->i_sb;
	if (atomic_load(&sb->s_dying)) {
		atomic_fetch_sub(&inode->i_count, 1);
		return;
	}
	pthread_mutex_lock(&sb->s_inode_lock);
	int left = atomic_fetch_sub(&inode->i_count, 1) - 1;
	bool dying = left == 0 && atomic_load(&inode->i_nlink) == 0;
	bool prune = false;
	if (dying) {
		lru_del(inode);
		unhash_locked(inode);
	} else if (left == 0 && sb->s_max_unused) {
		lru_add(inode);
		prune = sb->s_nr_unused > sb->s_max_unused;
	}
	pthread_mutex_unlock(&sb->s_inode_lock);
	if (dying)
		evict(inode);
	else if (prune)
		prune_one(sb);
}

void
mark_inode_dirty(struct inode *inode)
{
	atomic_store_explicit(&inode->i_dirty_datasync, true, memory_order_relaxed);
	atomic_store_explicit(&inode->i_dirty, true, memory_order_release);
}

void
mark_inode_dirty_sync(struct inode *inode)
{
	atomic_store_explicit(&inode->i_dirty, true, memory_order_relaxed);
}

/* Visit every cached inode of sb with a reference held; for sync and
 * unmount.  fn must not take s_inode_lock. */
void
pw__for_each_inode(struct super_block *sb, void (*fn)(struct inode *, void *),
                   void *arg)
{
	/* All of them in one pass under the lock: the table may be rehashed
	 * while fn runs. */
	pthread_mutex_lock(&sb->s_inode_lock);
	size_t n = sb->s_nr_hashed, got = 0;
	struct inode **list = n ? malloc(n * sizeof(*list)) : NULL;
	for (size_t h = 0; list && h < sb->s_inode_buckets; h++) {
		for (struct inode *i = sb->s_inodes[h]; i; i = i->i_hash_next) {
			if (atomic_fetch_add(&i->i_count, 1) == 0)
				lru_del(i);
			list[got++] = i;
		}
	}
	pthread_mutex_unlock(&sb->s_inode_lock);
	if (n && !list)
		pw_log("no memory to list %zu inodes: sync skips them", n);
	for (size_t k = 0; k < got; k++) {
		fn(list[k], arg);
		iput(list[k]);
	}
	free(list);
}

/* Unmount: evict every inode regardless of links.  Nothing else may use
 * the superblock any more. */
void
pw__evict_all(struct super_block *sb)
{
	atomic_store(&sb->s_dying, true);
	for (size_t h = 0; h < sb->s_inode_buckets; h++) {
		for (;;) {
			pthread_mutex_lock(&sb->s_inode_lock);
			struct inode *i = sb->s_inodes[h];
			if (i) {
				sb->s_inodes[h] = i->i_hash_next;
				sb->s_nr_hashed--;
			}
			pthread_mutex_unlock(&sb->s_inode_lock);
			if (!i)
				break;
			evict(i);
		}
	}
}

/*
 * ramfs.c - a filesystem that lives only in the page cache.
 *
 * File data is the page cache itself: pages are created by
 * simple_write_begin or, for holes, simple_readpage, and are never
 * written back or evicted (mapping->unevictable).  Directories are arrays
 * of (name, inode) entries in memory, guarded by the directory's i_rwsem
 * for writing and a per-directory mutex for readers.
 *
 * Inode lifetime: a directory entry holds one reference; unlink drops it,
 * and the VFS evicts the inode when the last open file lets go.  A hard
 * link is one more entry, with its own reference.
 *
 * Symbolic links keep their target as a C string in i_private, set at
 * creation and never changed, so readlink needs no lock.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct ramfs_dirent {
	char *name;
	size_t len;
	struct inode *inode; /* holds a reference */
};

struct ramfs_dir {
	pthread_mutex_t lock;          /* guards the entries */
	struct ramfs_dirent *ents;     /* (lock) */
	size_t nr, cap;                /* (lock) */
};

struct ramfs_sb {
	_Atomic uint64_t next_ino;
};

static const struct inode_operations ramfs_iops;
static const struct super_operations ramfs_sops;

static const struct address_space_operations ramfs_aops = {
	.readpage = simple_readpage,
	.write_begin = simple_write_begin,
	.write_end = simple_write_end,
};

static int
ramfs_new_inode(struct super_block *sb, mode_t mode, struct inode **res)
{
	struct ramfs_sb *rs = sb->s_fs_info;
	struct inode *inode = new_inode(sb, atomic_fetch_add(&rs->next_ino, 1),
	                                &ramfs_aops);
	if (!inode)
		return -ENOMEM;
	inode->i_mode = mode;
	inode->i_uid = pw__current_uid();
	inode->i_gid = pw__current_gid();
	inode->i_op = &ramfs_iops;
	inode->i_data.unevictable = true;
	atomic_store(&inode->i_nlink, S_ISDIR(mode) ? 2 : 1);
	if (S_ISDIR(mode)) {
		struct ramfs_dir *d = calloc(1, sizeof(*d));
		if (!d) {
			iput(inode);
			return -ENOMEM;
		}
		pthread_mutex_init(&d->lock, NULL);
		inode->i_private = d;
	}
	insert_inode_hash(inode);
	*res = inode;
	return 0;
}

/* A directory's entries changed: new mtime and ctime. */
static void
ramfs_touch(struct inode *dir)
{
	struct timespec now;
	pw__current_time(&now);
	inode_time_set(&dir->i_mtime, now);
	inode_time_set(&dir->i_ctime, now);
}

/* dir->lock held */
static long
dir_find(struct ramfs_dir *d, const char *name, size_t len)
{
	for (size_t k = 0; k < d->nr; k++)
		if (d->ents[k].len == len && memcmp(d->ents[k].name, name, len) == 0)
			return (long)k;
	return -1;
}

static int
dir_add(struct inode *dir, const char *name, size_t len, struct inode *inode)
{
	struct ramfs_dir *d = dir->i_private;
	char *copy = malloc(len + 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, name, len);
	copy[len] = 0;
	pthread_mutex_lock(&d->lock);
	if (d->nr == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 8;
		struct ramfs_dirent *e = realloc(d->ents, cap * sizeof(*e));
		if (!e) {
			pthread_mutex_unlock(&d->lock);
			free(copy);
			return -ENOMEM;
		}
		d->ents = e;
		d->cap = cap;
	}
	d->ents[d->nr++] = (struct ramfs_dirent){copy, len, inode};
	pthread_mutex_unlock(&d->lock);
	ramfs_touch(dir);
	return 0;
}

/* Remove the entry; returns its inode (the reference passes to caller). */
static struct inode *
dir_remove(struct inode *dir, const char *name, size_t len)
{
	struct ramfs_dir *d = dir->i_private;
	pthread_mutex_lock(&d->lock);
	long k = dir_find(d, name, len);
	struct inode *inode = NULL;
	if (k >= 0) {
		inode = d->ents[k].inode;
		free(d->ents[k].name);
		d->ents[k] = d->ents[--d->nr];
	}
	pthread_mutex_unlock(&d->lock);
	ramfs_touch(dir);
	return inode;
}

static int
ramfs_lookup(struct inode *dir, const char *name, size_t len, struct inode **res)
{
	struct ramfs_dir *d = dir->i_private;
	pthread_mutex_lock(&d->lock);
	long k = dir_find(d, name, len);
	if (k >= 0) {
		*res = d->ents[k].inode;
		ihold(*res);
	}
	pthread_mutex_unlock(&d->lock);
	return k >= 0 ? 0 : -ENOENT;
}

static int
ramfs_mknod(struct inode *dir, const char *name, size_t len, mode_t mode,
            struct inode **res)
{
	struct inode *inode;
	int err = ramfs_new_inode(dir->i_sb, mode, &inode);
	if (err)
		return err;
	err = dir_add(dir, name, len, inode);
	if (err) {
		atomic_store(&inode->i_nlink, 0);
		iput(inode);
		return err;
	}
	if (S_ISDIR(mode))
		atomic_fetch_add(&dir->i_nlink, 1);
	ihold(inode);
	*res = inode;
	return 0;
}

static int
ramfs_create(struct inode *dir, const char *name, size_t len, mode_t mode,
             struct inode **res)
{
	return ramfs_mknod(dir, name, len, S_IFREG | (mode & 07777), res);
}

static int
ramfs_mkdir(struct inode *dir, const char *name, size_t len, mode_t mode,
            struct inode **res)
{
	return ramfs_mknod(dir, name, len, S_IFDIR | (mode & 07777), res);
}

/* i_private of a symlink: its target. */
static int
ramfs_symlink(struct inode *dir, const char *name, size_t len,
              const char *target, struct inode **res)
{
	size_t tlen = strlen(target);
	char *copy = malloc(tlen + 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, target, tlen + 1);
	struct inode *inode;
	int err = ramfs_new_inode(dir->i_sb, S_IFLNK | 0777, &inode);
	if (err) {
		free(copy);
		return err;
	}
	inode->i_private = copy;
	i_size_write(inode, (loff_t)tlen);
	if ((err = dir_add(dir, name, len, inode))) {
		atomic_store(&inode->i_nlink, 0);
		iput(inode);
		return err;
	}
	ihold(inode);
	*res = inode;
	return 0;
}

static int
ramfs_readlink(struct inode *inode, char *buf, size_t size)
{
	const char *target = inode->i_private;
	size_t n = PW_MIN(strlen(target), size);
	memcpy(buf, target, n);
	return (int)n;
}

static int
ramfs_link(struct inode *inode, struct inode *dir, const char *name, size_t len)
{
	int err = dir_add(dir, name, len, inode);
	if (err)
		return err;
	ihold(inode); /* the new entry's */
	atomic_fetch_add(&inode->i_nlink, 1);
	inode->i_ctime = dir->i_ctime;
	return 0;
}

static int
ramfs_unlink(struct inode *dir, const char *name, size_t len, struct inode *victim)
{
	struct inode *inode = dir_remove(dir, name, len);
	if (!inode)
		return -ENOENT;
	atomic_fetch_sub(&victim->i_nlink, 1);
	struct timespec now;
	pw__current_time(&now);
	inode_time_set(&victim->i_ctime, now);
	iput(inode);
	return 0;
}

static int
ramfs_rmdir(struct inode *dir, const char *name, size_t len, struct inode *victim)
{
	struct ramfs_dir *d = victim->i_private;
	pthread_mutex_lock(&d->lock);
	size_t nr = d->nr;
	pthread_mutex_unlock(&d->lock);
	if (nr)
		return -ENOTEMPTY;
	struct inode *inode = dir_remove(dir, name, len);
	if (!inode)
		return -ENOENT;
	atomic_store(&victim->i_nlink, 0);
	atomic_fetch_sub(&dir->i_nlink, 1);
	iput(inode);
	return 0;
}

static int
ramfs_rename(struct inode *odir, const char *oname, size_t olen,
             struct inode *ndir, const char *nname, size_t nlen)
{
	struct inode *inode;
	int err = ramfs_lookup(odir, oname, olen, &inode);
	if (err)
		return err;
	struct inode *old = NULL;
	if (ramfs_lookup(ndir, nname, nlen, &old) == 0) {
		if (old == inode) { /* the same file: nothing to do */
			iput(old);
			iput(inode);
			return 0;
		}
		int e = S_ISDIR(old->i_mode) ? ramfs_rmdir(ndir, nname, nlen, old)
		                             : ramfs_unlink(ndir, nname, nlen, old);
		iput(old);
		if (e) {
			iput(inode);
			return e;
		}
	}
	err = dir_add(ndir, nname, nlen, inode);
	if (err) {
		iput(inode);
		return err;
	}
	iput(dir_remove(odir, oname, olen));
	if (S_ISDIR(inode->i_mode) && odir != ndir) {
		atomic_fetch_sub(&odir->i_nlink, 1);
		atomic_fetch_add(&ndir->i_nlink, 1);
	}
	return 0;
}

static int
ramfs_setattr(struct inode *inode, const struct pw_iattr *attr)
{
	if (attr->valid & ATTR_SIZE)
		truncate_setsize(inode, attr->size);
	if (attr->valid & ATTR_MODE)
		inode->i_mode = (inode->i_mode & S_IFMT) | (attr->mode & 07777);
	if (attr->valid & ATTR_UID)
		inode->i_uid = attr->uid;
	if (attr->valid & ATTR_GID)
		inode->i_gid = attr->gid;
	if (attr->valid & ATTR_ATIME)
		inode_time_set(&inode->i_atime, attr->atime);
	if (attr->valid & ATTR_MTIME)
		inode_time_set(&inode->i_mtime, attr->mtime);
	return 0;
}

static int
ramfs_readdir(struct inode *dir, void *ctx, filldir_t fill)
{
	struct ramfs_dir *d = dir->i_private;
	pthread_mutex_lock(&d->lock);
	for (size_t k = 0; k < d->nr; k++) {
		struct inode *i = d->ents[k].inode;
		if (fill(ctx, d->ents[k].name, d->ents[k].len, i->i_ino,
		         IFTODT(i->i_mode)))
			break;
	}
	pthread_mutex_unlock(&d->lock);
	return 0;
}

static void
ramfs_evict_inode(struct inode *inode)
{
	if (S_ISLNK(inode->i_mode)) {
		free(inode->i_private);
		inode->i_private = NULL;
		return;
	}
	struct ramfs_dir *d = inode->i_private;
	if (!d)
		return;
	/* At unmount every inode is evicted on its own: no references. */
	bool dying = atomic_load(&inode->i_sb->s_dying);
	for (size_t k = 0; k < d->nr; k++) {
		free(d->ents[k].name);
		if (!dying)
			iput(d->ents[k].inode);
	}
	free(d->ents);
	pthread_mutex_destroy(&d->lock);
	free(d);
	inode->i_private = NULL;
}

static void
ramfs_put_super(struct super_block *sb)
{
	free(sb->s_fs_info);
}

static int
ramfs_statfs(struct super_block *sb, struct statvfs *st)
{
	(void)sb;
	memset(st, 0, sizeof(*st));
	st->f_bsize = st->f_frsize = PAGE_SIZE;
	st->f_namemax = 255;
	return 0;
}

static const struct inode_operations ramfs_iops = {
	.lookup = ramfs_lookup,
	.create = ramfs_create,
	.mkdir = ramfs_mkdir,
	.unlink = ramfs_unlink,
	.rmdir = ramfs_rmdir,
	.rename = ramfs_rename,
	.setattr = ramfs_setattr,
	.readdir = ramfs_readdir,
	.symlink = ramfs_symlink,
	.link = ramfs_link,
	.readlink = ramfs_readlink,
};

static const struct super_operations ramfs_sops = {
	.evict_inode = ramfs_evict_inode,
	.put_super = ramfs_put_super,
	.statfs = ramfs_statfs,
};

static int
ramfs_fill_super(struct super_block *sb, const char *source, const char *options)
{
	(void)source, (void)options;
	struct ramfs_sb *rs = calloc(1, sizeof(*rs));
	if (!rs)
		return -ENOMEM;
	atomic_store(&rs->next_ino, 1);
	sb->s_fs_info = rs;
	sb->s_op = &ramfs_sops;
	sb->s_maxbytes = INT64_MAX & ~(loff_t)(PAGE_SIZE - 1);
	sb->s_blocksize = PAGE_SIZE;
	return ramfs_new_inode(sb, S_IFDIR | 0755, &sb->s_root);
}

const struct file_system_type pw__ramfs_type = {
	.name = "ramfs",
	.fill_super = ramfs_fill_super,
};

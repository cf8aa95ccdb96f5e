/*
 * vfs.c - pagewright's namespace and descriptors, and the application API
 * of include/pagewright/pagewright.h.
 *
 * The namespace starts as an empty ramfs at "/".  pw_mount attaches a
 * filesystem on a directory; path lookup crosses into it.  The walk
 * (struct nameidata, below) keeps the directories it went through on a
 * stack, so ".." pops back to where the walk came from, also after a
 * symbolic link, whose target is spliced into the path in its place.
 * Relative paths and relative targets start at "/" and at the link's
 * directory; absolute targets at pagewright's "/", whatever filesystem
 * holds the link.
 *
 * Descriptors index a table of struct file; each call takes a reference
 * on the file for its duration, so a concurrent pw_close never frees a
 * file in use.  Errors inside the library are -errno; this file is the
 * one boundary that turns them into -1 and errno.
 *
 * fork(): the child shares the parent's page pool (a MAP_SHARED memfd), so
 * a child that kept using the cache would corrupt the parent's.  At fork
 * the child detaches: every pagewright call in it fails with EPERM, and
 * the pages it had mapped become private copies (pw__mm_atfork_child), so
 * its loads still see the data and its stores stay its own.
 *
 * Lock ordering: ns_lock (mounts) and fd_lock are leaves taken with no
 * inode lock held; rename_lock -> the parents' i_rwsem in address order.
 */
#include "internal.h"

#include <pagewright/buffer_head.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

struct mount {
	struct super_block *sb;      /* (C) */
	struct inode *mountpoint;    /* (C) the directory it covers; NULL for / */
	struct mount *parent;        /* (C) */
	_Atomic long users;          /* (A) open files and vmas of this mount */
	struct mount *next;          /* (ns_lock) */
};

struct pw_dir {
	struct dirent *ents;
	size_t nr, cap, pos;
};

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_err;
static pthread_rwlock_t ns_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct mount *mounts;        /* (ns_lock) the root mount is last */
static struct mount *root_mount;    /* (C) */
static pthread_mutex_t fd_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t rename_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic dev_t next_dev = 1;

void
pw_log(const char *fmt, ...)
{
	va_list ap;
	char buf[512];
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, "pagewright: %s\n", buf);
}

bool
pw__has_option(const char *options, const char *opt)
{
	size_t n = strlen(opt);
	for (const char *p = options; p && *p;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len == n && strncmp(p, opt, n) == 0)
			return true;
		p = end ? end + 1 : NULL;
	}
	return false;
}

/* ---------------------------------------------------------------- init */

static void atfork_prepare(void);
static void atfork_parent(void);
static void atfork_child(void);

static struct super_block *
sb_alloc(const struct file_system_type *type)
{
	struct super_block *sb = calloc(1, sizeof(*sb));
	if (!sb)
		return NULL;
	sb->s_type = type;
	sb->s_dev = atomic_fetch_add(&next_dev, 1);
	pthread_mutex_init(&sb->s_inode_lock, NULL);
	return sb;
}

static void
do_init(void)
{
	if ((init_err = pw__pool_init()) || (init_err = pw__uaccess_init()))
		return;
	pw__reclaim_init();
	pw__mm_maps_init();
	pw__writeback_init();
	register_filesystem(&pw__ramfs_type);
	register_filesystem(&pw__hostfs_type);
	register_filesystem(&pw__ext2_type);
	struct super_block *sb = sb_alloc(&pw__ramfs_type);
	root_mount = calloc(1, sizeof(*root_mount));
	if (!sb || !root_mount) {
		init_err = -ENOMEM;
		return;
	}
	if ((init_err = pw__ramfs_type.fill_super(sb, NULL, NULL)))
		return;
	root_mount->sb = sb;
	mounts = root_mount;
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* Every API call starts here.  Return: 0 or -errno. */
static int
enter(void)
{
	pthread_once(&init_once, do_init);
	if (init_err)
		return init_err;
	if (atomic_load_explicit(&pw__forked_child, memory_order_relaxed))
		return -EPERM;
	return 0;
}

void
pw__init(void)
{
	pthread_once(&init_once, do_init);
}

static void
atfork_prepare(void)
{
	pthread_rwlock_wrlock(&ns_lock);
	pw__mm_atfork_prepare();
}

static void
atfork_parent(void)
{
	pw__mm_atfork_parent();
	pthread_rwlock_unlock(&ns_lock);
}

static void
atfork_child(void)
{
	pw__mm_atfork_child();
	pthread_rwlock_unlock(&ns_lock);
}

/* Set errno from a -errno result and return -1; pass results through. */
static long
ret(long r)
{
	if (r < 0) {
		errno = (int)-r;
		return -1;
	}
	return r;
}

/* ---------------------------------------------------------------- paths */

/* The mount whose mountpoint is dir, if any; ns_lock held. */
static struct mount *
mounted_on(struct inode *dir)
{
	for (struct mount *m = mounts; m; m = m->next)
		if (m->mountpoint == dir)
			return m;
	return NULL;
}

__thread bool pw__tcred_set;
__thread uid_t pw__tcred_uid;
__thread gid_t pw__tcred_gid;

void
pw_set_thread_creds(uid_t uid, gid_t gid)
{
	pw__tcred_set = uid != (uid_t)-1 || gid != (gid_t)-1;
	pw__tcred_uid = uid != (uid_t)-1 ? uid : geteuid();
	pw__tcred_gid = gid != (gid_t)-1 ? gid : getegid();
}

static int
may_access(struct inode *inode, int mask)
{
	/* Granted to owner, group and others alike: whoever asks may, and
	 * geteuid, a system call per path component, is not needed (for root
	 * too: an exec bit is set). */
	unsigned all = (unsigned)mask * 0111;
	if ((inode->i_mode & all) == all)
		return 0;
	uid_t uid = pw__current_uid();
	if (uid == 0)
		return (mask & 1) && !S_ISDIR(inode->i_mode) && !(inode->i_mode & 0111)
		           ? -EACCES
		           : 0;
	mode_t m = inode->i_mode;
	if (uid == inode->i_uid)
		m >>= 6;
	else if (pw__current_gid() == inode->i_gid)
		m >>= 3;
	return ((m & 7) & mask) == (unsigned)mask ? 0 : -EACCES;
}

struct walk {
	struct inode *inode;   /* with a reference */
	struct mount *mnt;
};

/*
 * The path walk.  A nameidata holds the path still to walk (buf, from p)
 * and the stack of directories walked so far, each referenced: stack[0]
 * is the root, the top is the current directory.  "." stays, ".." pops
 * (and stays at the root), a name pushes what lookup finds there.  A
 * symbolic link met before the final component, or as the final one when
 * the caller follows it, is replaced in buf by its target in front of the
 * rest of the path (nd_follow); an absolute target first pops the stack
 * back to pagewright's root.  So ".." after a symlink leads to the parent
 * of where the link led, as POSIX says, and the stack is the chain of
 * ancestors that rename checks.
 *
 * Limits: MAXSYMLINKS links per walk (ELOOP, as Linux); a target with
 * the rest of the path must fit in PATH_MAX, and directories nest at most
 * NI_DEPTH deep (ENAMETOOLONG).
 */
#define NI_DEPTH 128
#define MAXSYMLINKS 40

struct nameidata {
	char buf[PATH_MAX];          /* the path; names returned point into it */
	char *p;                     /* the part not walked yet */
	struct walk stack[NI_DEPTH]; /* [0] the root; each with a reference */
	int depth;                   /* 0 until nd_init succeeds */
	int links;                   /* symlinks followed so far */
	const char *last;            /* nd_walk_dirs: the final component, */
	size_t last_len;             /*   or 0 if the path ends at the top */
	bool slash;                  /* a '/' follows the final component */
};

static int
nd_init(struct nameidata *nd, const char *path)
{
	nd->depth = 0;
	long n = strncpy_from_user(nd->buf, path, PATH_MAX);
	if (n < 0)
		return (int)n;
	if (n == PATH_MAX)
		return -ENAMETOOLONG;
	if (n == 0)
		return -ENOENT;
	nd->p = nd->buf;
	nd->links = 0;
	nd->slash = false;
	nd->stack[0].mnt = root_mount;
	nd->stack[0].inode = root_mount->sb->s_root;
	ihold(nd->stack[0].inode);
	nd->depth = 1;
	return 0;
}

/* Drop the stack's references (also after a failed nd_init). */
static void
nd_put(struct nameidata *nd)
{
	while (nd->depth > 0)
		iput(nd->stack[--nd->depth].inode);
}

static struct walk *
nd_top(struct nameidata *nd)
{
	return &nd->stack[nd->depth - 1];
}

/* Is inode on the stack (the top or one of its ancestors)? */
static bool
nd_has(struct nameidata *nd, struct inode *inode)
{
	for (int k = 0; k < nd->depth; k++)
		if (nd->stack[k].inode == inode)
			return true;
	return false;
}

/* Take the next component off the path: *len 0 at the end; *final when
 * only slashes follow it. */
static int
nd_next(struct nameidata *nd, char **s, size_t *len, bool *final)
{
	char *p = nd->p;
	while (*p == '/')
		p++;
	*s = p;
	while (*p && *p != '/')
		p++;
	*len = (size_t)(p - *s);
	if (*len > NAME_MAX)
		return -ENAMETOOLONG;
	char *q = p;
	while (*q == '/')
		q++;
	*final = *q == 0;
	nd->slash = *final && q != p;
	nd->p = p;
	return 0;
}

/* Replace the symlink just looked up by its target, in front of the rest
 * of the path.  Drops link's reference. */
static int
nd_follow(struct nameidata *nd, struct walk *link)
{
	struct inode *inode = link->inode;
	int n = -ELOOP;
	if (++nd->links <= MAXSYMLINKS && inode->i_op->readlink) {
		/* Park the rest at the end of buf, read the target in front of
		 * it, then close the gap. */
		size_t rest = strlen(nd->p);
		char *tail = nd->buf + PATH_MAX - rest - 1;
		memmove(tail, nd->p, rest + 1);
		size_t room = (size_t)(tail - nd->buf);
		n = room ? inode->i_op->readlink(inode, nd->buf, room) : -ENAMETOOLONG;
		/* A full buffer is a whole target only if i_size says so. */
		if (n >= 0 && (size_t)n == room && i_size_read(inode) != (loff_t)room)
			n = -ENAMETOOLONG;
		else if (n >= 0 && (n == 0 || memchr(nd->buf, 0, (size_t)n)))
			n = -ENOENT; /* an empty target (or a NUL in it) names nothing */
		if (n > 0) {
			memmove(nd->buf + n, tail, rest + 1);
			nd->p = nd->buf;
			if (nd->buf[0] == '/')
				while (nd->depth > 1)
					iput(nd->stack[--nd->depth].inode);
		}
	}
	iput(inode);
	return n < 0 ? n : 0;
}

/* Look up name in dir, crossing a mount on top of it; ns_lock held. */
static int
lookup_child_locked(struct walk *dir, const char *name, size_t len,
                    struct walk *res)
{
	struct inode *inode;
	int err = dir->inode->i_op->lookup(dir->inode, name, len, &inode);
	if (err)
		return err;
	res->mnt = dir->mnt;
	struct mount *m;
	while ((m = mounted_on(inode)) != NULL) {
		iput(inode);
		res->mnt = m;
		inode = m->sb->s_root;
		ihold(inode);
	}
	res->inode = inode;
	return 0;
}

static int
lookup_child(struct walk *dir, const char *name, size_t len, struct walk *res)
{
	pthread_rwlock_rdlock(&ns_lock);
	int err = lookup_child_locked(dir, name, len, res);
	pthread_rwlock_unlock(&ns_lock);
	return err;
}

/* One step of nd_walk_dirs: the component s/len, not the final one. */
static int
nd_step(struct nameidata *nd, const char *s, size_t len)
{
	struct walk next;
	if (len == 1 && s[0] == '.')
		return 0;
	if (len == 2 && s[0] == '.' && s[1] == '.') {
		if (nd->depth > 1)
			iput(nd->stack[--nd->depth].inode);
		return 0;
	}
	int err = lookup_child_locked(nd_top(nd), s, len, &next);
	if (err)
		return err;
	if (S_ISLNK(next.inode->i_mode))
		return nd_follow(nd, &next);
	if (nd->depth == NI_DEPTH) {
		iput(next.inode);
		return -ENAMETOOLONG;
	}
	nd->stack[nd->depth++] = next;
	return 0;
}

/* Walk all but the final component, following every symlink on the way.
 * Return: 0 with nd->last/last_len set; last_len is 0 when the path
 * ends at the directory on top ("/", "." or ".." last). */
static int
nd_walk_dirs(struct nameidata *nd)
{
	int err = 0;
	pthread_rwlock_rdlock(&ns_lock);
	for (;;) {
		char *s;
		size_t len;
		bool final;
		struct inode *top = nd_top(nd)->inode;
		if ((err = nd_next(nd, &s, &len, &final)))
			break;
		if (len == 0) {
			nd->last_len = 0;
			break;
		}
		if (!S_ISDIR(top->i_mode)) {
			err = -ENOTDIR;
			break;
		}
		if ((err = may_access(top, 1)))
			break;
		bool dots = s[0] == '.' && (len == 1 || (len == 2 && s[1] == '.'));
		if (final && !dots) {
			nd->last = s;
			nd->last_len = len;
			break;
		}
		if ((err = nd_step(nd, s, len)))
			break;
		if (final && dots) {
			nd->last_len = 0;
			break;
		}
	}
	pthread_rwlock_unlock(&ns_lock);
	return err;
}

/* Walk the whole path, following a final symlink if follow is set or a
 * '/' comes after it.  Return: 0 with *res referenced; nd_put after. */
static int
nd_lookup_last(struct nameidata *nd, bool follow, struct walk *res)
{
	for (;;) {
		int err = nd_walk_dirs(nd);
		if (err)
			return err;
		if (nd->last_len == 0) {
			*res = *nd_top(nd);
			ihold(res->inode);
			return 0;
		}
		if ((err = lookup_child(nd_top(nd), nd->last, nd->last_len, res)))
			return err;
		bool lnk = S_ISLNK(res->inode->i_mode);
		if (lnk && (follow || nd->slash)) {
			if ((err = nd_follow(nd, res)))
				return err;
			continue;
		}
		if (nd->slash && !S_ISDIR(res->inode->i_mode)) {
			iput(res->inode);
			return -ENOTDIR;
		}
		return 0;
	}
}

static int
walk_path_flags(const char *path, bool follow, struct walk *w)
{
	struct nameidata nd;
	int err = nd_init(&nd, path);
	if (!err)
		err = nd_lookup_last(&nd, follow, w);
	nd_put(&nd);
	return err;
}

/* Resolve a path, following symlinks everywhere (stat, open, ...). */
static int
walk_path(const char *path, struct walk *w)
{
	return walk_path_flags(path, true, w);
}

/* Resolve the parent directory of the final component, which is not
 * followed; *name and *len are that component (pointing into nd), *name NULL
 * if the path ends at a directory ("/", "." or ".." last).  *dir is the
 * top of nd's stack and has no reference of its own: nd_put(nd) when
 * done.  On an error nothing is held. */
static int
walk_parent(const char *path, struct nameidata *nd, struct walk *dir,
            const char **name, size_t *len)
{
	int err = nd_init(nd, path);
	if (!err)
		err = nd_walk_dirs(nd);
	if (err) {
		nd_put(nd);
		return err;
	}
	*dir = *nd_top(nd);
	*name = nd->last_len ? nd->last : NULL;
	*len = nd->last_len;
	return 0;
}

static bool
is_mountpoint(struct inode *inode)
{
	pthread_rwlock_rdlock(&ns_lock);
	bool r = mounted_on(inode) != NULL;
	for (struct mount *m = mounts; m && !r; m = m->next)
		r = m->sb->s_root == inode;
	pthread_rwlock_unlock(&ns_lock);
	return r;
}

/* ---------------------------------------------------------- descriptors */

/*
 * The descriptor table is read without a lock: a read or write of a
 * small cached buffer costs less than an uncontended mutex pair.  It is a
 * two-level array whose chunks are never freed, and struct file memory is
 * type-stable (freed files go to a free list, never back to malloc), so a
 * reader may increment f_count of a file that is being closed: it uses
 * increment-if-not-zero, then re-checks that the slot still holds that
 * file, and drops it if not.
 */
#define FD_CHUNK 256
#define FD_CHUNKS 1024
static _Atomic(struct file *) *fd_chunks[FD_CHUNKS]; /* (fd_lock to add) */
static struct file *file_free_list;                  /* (fd_lock) */

static _Atomic(struct file *) *
fd_slot(int fd)
{
	if (fd < 0 || fd >= FD_CHUNK * FD_CHUNKS)
		return NULL;
	_Atomic(struct file *) *chunk =
	    __atomic_load_n(&fd_chunks[fd / FD_CHUNK], __ATOMIC_ACQUIRE);
	return chunk ? &chunk[fd % FD_CHUNK] : NULL;
}

struct file *
pw__fget(int fd)
{
	_Atomic(struct file *) *slot = fd_slot(fd);
	if (!slot)
		return NULL;
	for (;;) {
		struct file *f = atomic_load_explicit(slot, memory_order_acquire);
		if (!f)
			return NULL;
		int c = atomic_load_explicit(&f->f_count, memory_order_relaxed);
		bool got = false;
		while (c > 0 && !(got = atomic_compare_exchange_weak_explicit(
		                      &f->f_count, &c, c + 1, memory_order_acquire,
		                      memory_order_relaxed)))
			;
		if (!got)
			continue;
		if (atomic_load_explicit(slot, memory_order_acquire) == f)
			return f;
		pw__fput(f);
	}
}

static struct mount *
mount_of(struct super_block *sb)
{
	pthread_rwlock_rdlock(&ns_lock);
	struct mount *m = mounts;
	while (m && m->sb != sb)
		m = m->next;
	pthread_rwlock_unlock(&ns_lock);
	return m;
}

void
pw__fput(struct file *file)
{
	if (atomic_fetch_sub_explicit(&file->f_count, 1, memory_order_acq_rel) != 1)
		return;
	struct mount *m = mount_of(file->f_inode->i_sb);
	iput(file->f_inode);
	if (m)
		atomic_fetch_sub(&m->users, 1);
	pthread_mutex_lock(&fd_lock);
	file->f_inode = (struct inode *)file_free_list;
	file_free_list = file;
	pthread_mutex_unlock(&fd_lock);
}

static int
fd_install(struct file *file)
{
	pthread_mutex_lock(&fd_lock);
	for (int c = 0; c < FD_CHUNKS; c++) {
		if (!fd_chunks[c]) {
			_Atomic(struct file *) *chunk = calloc(FD_CHUNK, sizeof(*chunk));
			if (!chunk)
				break;
			__atomic_store_n(&fd_chunks[c], chunk, __ATOMIC_RELEASE);
		}
		for (int k = 0; k < FD_CHUNK; k++) {
			if (atomic_load(&fd_chunks[c][k]) == NULL) {
				atomic_store_explicit(&fd_chunks[c][k], file, memory_order_release);
				pthread_mutex_unlock(&fd_lock);
				return c * FD_CHUNK + k;
			}
		}
	}
	pthread_mutex_unlock(&fd_lock);
	return -EMFILE;
}

/* Take the descriptor out of the table; the caller drops the file. */
static struct file *
fd_remove(int fd)
{
	_Atomic(struct file *) *slot = fd_slot(fd);
	if (!slot)
		return NULL;
	pthread_mutex_lock(&fd_lock);
	struct file *f = atomic_exchange(slot, NULL);
	pthread_mutex_unlock(&fd_lock);
	return f;
}

static struct file *
file_alloc(struct walk *w, int flags)
{
	pthread_mutex_lock(&fd_lock);
	struct file *f = file_free_list;
	if (f)
		file_free_list = (struct file *)f->f_inode;
	pthread_mutex_unlock(&fd_lock);
	if (!f && !(f = calloc(1, sizeof(*f))))
		return NULL;
	if (!f->f_pos_lock_ready) {
		pthread_mutex_init(&f->f_pos_lock, NULL);
		f->f_pos_lock_ready = true;
	}
	f->f_pos = 0;
	atomic_store(&f->f_ra.next, 0);
	atomic_store(&f->f_ra.size, 0);
	atomic_store(&f->f_ra.around_miss, 0);
	f->f_inode = w->inode;
	f->f_mapping = w->inode->i_mapping;
	f->f_flags = flags;
	int acc = flags & O_ACCMODE;
	f->f_readable = acc == O_RDONLY || acc == O_RDWR;
	f->f_writable = acc == O_WRONLY || acc == O_RDWR;
	atomic_store_explicit(&f->f_count, 1, memory_order_release);
	atomic_store(&f->f_wb_err_seq, atomic_load(&f->f_mapping->wb_err_seq));
	atomic_fetch_add(&w->mnt->users, 1);
	return f;
}

/* ----------------------------------------------------------- open/close */

static int
do_truncate(struct inode *inode, loff_t length)
{
	if (length < 0)
		return -EINVAL;
	if (length > inode->i_sb->s_maxbytes)
		return -EFBIG;
	inode_lock(inode);
	struct pw_iattr attr = {.valid = ATTR_SIZE | ATTR_MTIME, .size = length};
	pw__current_time(&attr.mtime);
	int err = inode->i_op->setattr ? inode->i_op->setattr(inode, &attr) : -EPERM;
	if (!err) {
		inode_time_set(&inode->i_mtime, attr.mtime);
		inode_time_set(&inode->i_ctime, attr.mtime);
		mark_inode_dirty(inode);
	}
	inode_unlock(inode);
	return err;
}

static int
open_checks(struct walk *w, int flags)
{
	struct inode *inode = w->inode;
	int acc = flags & O_ACCMODE;
	bool wr = acc == O_WRONLY || acc == O_RDWR;
	if (acc == 3)
		return -EINVAL;
	if ((flags & O_DIRECTORY) && !S_ISDIR(inode->i_mode))
		return -ENOTDIR;
	if (S_ISDIR(inode->i_mode) && (wr || (flags & O_TRUNC)))
		return -EISDIR;
	if (wr && (w->mnt->sb->s_flags & SB_RDONLY))
		return -EROFS;
	int mask = (acc != O_WRONLY ? 4 : 0) | (wr ? 2 : 0);
	return may_access(inode, mask);
}

/* O_CREAT found nothing: create the file under dir's lock, unless
 * another thread made the name meanwhile. */
static int
open_create(struct walk *dir, const char *name, size_t len, int flags,
            mode_t mode, struct walk *w, bool *created)
{
	if (dir->mnt->sb->s_flags & SB_RDONLY)
		return -EROFS;
	int err = may_access(dir->inode, 3);
	if (err)
		return err;
	inode_lock(dir->inode);
	err = lookup_child(dir, name, len, w);
	if (err == -ENOENT) {
		err = dir->inode->i_op->create(dir->inode, name, len, mode, &w->inode);
		w->mnt = dir->mnt;
		*created = !err;
	} else if (!err && (flags & O_EXCL)) {
		iput(w->inode);
		err = -EEXIST;
	}
	inode_unlock(dir->inode);
	return err;
}

/* The final component of open: look it up or create it; follow a
 * symlink there unless O_NOFOLLOW (ELOOP) or O_CREAT|O_EXCL (EEXIST,
 * never following).  A dangling symlink with O_CREAT creates its
 * target, as on Linux. */
static int
open_last(struct nameidata *nd, int flags, mode_t mode, struct walk *w,
          bool *created)
{
	*created = false;
	for (;;) {
		int err = nd_walk_dirs(nd);
		if (err)
			return err;
		struct walk *dir = nd_top(nd);
		if (nd->last_len == 0 || ((flags & O_CREAT) && nd->slash)) {
			if (flags & O_CREAT)
				return -EISDIR;
			*w = *dir;
			ihold(w->inode);
			return 0;
		}
		err = lookup_child(dir, nd->last, nd->last_len, w);
		if (err == -ENOENT && (flags & O_CREAT))
			err = open_create(dir, nd->last, nd->last_len, flags, mode, w, created);
		else if (!err && (flags & O_CREAT) && (flags & O_EXCL)) {
			iput(w->inode);
			err = -EEXIST;
		}
		if (err || *created)
			return err;
		if (!S_ISLNK(w->inode->i_mode)) {
			if (nd->slash && !S_ISDIR(w->inode->i_mode)) {
				iput(w->inode);
				return -ENOTDIR;
			}
			return 0;
		}
		if (flags & O_NOFOLLOW) {
			iput(w->inode);
			return -ELOOP;
		}
		if ((err = nd_follow(nd, w)))
			return err;
	}
}

/* The end of an open, w found (or created): the checks, O_TRUNC, a new
 * descriptor.  Consumes w's inode reference.  Return: fd or -errno. */
static int
open_walk(struct walk *w, int flags, bool created)
{
	int err = 0;
	if (created)
		flags &= ~O_TRUNC;
	if (!created && (err = open_checks(w, flags))) {
		iput(w->inode);
		return err;
	}
	if ((flags & O_TRUNC) && S_ISREG(w->inode->i_mode) &&
	    (flags & O_ACCMODE) != O_RDONLY && (err = do_truncate(w->inode, 0))) {
		iput(w->inode);
		return err;
	}
	struct file *f = file_alloc(w, flags);
	if (!f) {
		iput(w->inode);
		return -ENOMEM;
	}
	int fd = fd_install(f);
	if (fd < 0)
		pw__fput(f);
	return fd;
}

static int
do_open(const char *path, int flags, mode_t mode)
{
	struct nameidata nd;
	struct walk w;
	bool created = false;
	int err = nd_init(&nd, path);
	if (!err)
		err = open_last(&nd, flags, mode, &w, &created);
	nd_put(&nd);
	return err ? err : open_walk(&w, flags, created);
}

int
pw_open(const char *path, int flags, ...)
{
	mode_t mode = 0;
	if (flags & O_CREAT) {
		va_list ap;
		va_start(ap, flags);
		mode = (mode_t)va_arg(ap, int);
		va_end(ap);
	}
	int err = enter();
	return (int)ret(err ? err : do_open(path, flags, mode));
}

int
pw_reopen(int fd, int flags)
{
	int err = enter();
	if (err)
		return (int)ret(err);
	struct file *old = pw__fget(fd);
	if (!old)
		return (int)ret(-EBADF);
	/* old's reference keeps the mount busy until the new file has its own. */
	struct walk w = {.inode = old->f_inode, .mnt = mount_of(old->f_inode->i_sb)};
	ihold(w.inode);
	int nfd = -ENOENT;
	if (w.mnt)
		nfd = open_walk(&w, flags & ~(O_CREAT | O_EXCL), false);
	else
		iput(w.inode);
	pw__fput(old);
	return (int)ret(nfd);
}

int
pw_close(int fd)
{
	int err = enter();
	if (err)
		return (int)ret(err);
	struct file *f = fd_remove(fd);
	if (!f)
		return (int)ret(-EBADF);
	pw__fput(f);
	return 0;
}

/* ------------------------------------------------------------- read/write */

/* fget plus the checks every read or write needs. */
static int
rw_file(int fd, bool write, struct file **fp)
{
	int err = enter();
	if (err)
		return err;
	struct file *f = pw__fget(fd);
	if (!f)
		return -EBADF;
	if (write ? !f->f_writable : !f->f_readable) {
		pw__fput(f);
		return -EBADF;
	}
	if (S_ISDIR(f->f_inode->i_mode)) {
		pw__fput(f);
		return -EISDIR;
	}
	*fp = f;
	return 0;
}

/* pos < 0: use and update the file position. */
static ssize_t
do_rw(int fd, const struct iovec *iov, int iovcnt, off_t pos, bool write,
      bool positional)
{
	struct file *f;
	int err = rw_file(fd, write, &f);
	if (err)
		return err;
	unsigned long nr = (unsigned long)iovcnt;
	size_t count;
	if (iovcnt < 0 || iovcnt > IOV_MAX)
		err = -EINVAL;
	else if (positional && pos < 0)
		err = -EINVAL;
	else
		err = generic_segment_checks(iov, &nr, &count);
	if (err) {
		pw__fput(f);
		return err;
	}
	struct iov_iter it;
	iov_iter_init(&it, iov, nr, count, 0);
	ssize_t r;
	if (!positional)
		pthread_mutex_lock(&f->f_pos_lock);
	loff_t p = positional ? pos : f->f_pos;
	if (write) {
		/* pwrite on an O_APPEND file appends, as on Linux. */
		r = generic_file_write_iter(f, &it, &p);
	} else {
		r = generic_file_read_iter(f, &it, &p);
	}
	if (!positional) {
		if (r > 0)
			f->f_pos = p;
		pthread_mutex_unlock(&f->f_pos_lock);
	}
	pw__fput(f);
	return r;
}

ssize_t
pw_read(int fd, void *buf, size_t count)
{
	struct iovec iov = {buf, PW_MIN(count, (size_t)SSIZE_MAX)};
	return ret(do_rw(fd, &iov, 1, -1, false, false));
}

ssize_t
pw_write(int fd, const void *buf, size_t count)
{
	struct iovec iov = {(void *)buf, PW_MIN(count, (size_t)SSIZE_MAX)};
	return ret(do_rw(fd, &iov, 1, -1, true, false));
}

ssize_t
pw_pread(int fd, void *buf, size_t count, off_t offset)
{
	struct iovec iov = {buf, PW_MIN(count, (size_t)SSIZE_MAX)};
	return ret(do_rw(fd, &iov, 1, offset, false, true));
}

ssize_t
pw_pread_nocache(int fd, void *buf, size_t count, off_t offset)
{
	struct file *f;
	int err = rw_file(fd, false, &f);
	if (err)
		return ret(err);
	ssize_t r = offset < 0 ? -EINVAL
	                       : file_read_nocache(f, buf, PW_MIN(count, (size_t)SSIZE_MAX), offset);
	pw__fput(f);
	return ret(r);
}

ssize_t
pw_pwrite(int fd, const void *buf, size_t count, off_t offset)
{
	struct iovec iov = {(void *)buf, PW_MIN(count, (size_t)SSIZE_MAX)};
	return ret(do_rw(fd, &iov, 1, offset, true, true));
}

struct pw_pin {
	unsigned n;
	struct page *pages[];
};

int
pw_pool_fd(void)
{
	int err = enter();
	return err ? (int)ret(err) : pw__pool_fd();
}

ssize_t
pw_pread_pin(int fd, size_t count, off_t offset, struct pw_span *spans, int max,
             int *nspans, struct pw_pin **pin)
{
	*pin = NULL;
	*nspans = 0;
	count = PW_MIN(count, (size_t)SSIZE_MAX - PAGE_SIZE);
	size_t pages = ((size_t)offset % PAGE_SIZE + count + PAGE_SIZE - 1) / PAGE_SIZE;
	if (offset < 0 || max < 0 || pages > (size_t)max)
		return ret(-EINVAL);
	struct file *f;
	int err = rw_file(fd, false, &f);
	if (err)
		return ret(err);
	struct pw_pin *p = pages ? malloc(sizeof(*p) + pages * sizeof(p->pages[0])) : NULL;
	if (pages && !p) {
		pw__fput(f);
		return ret(-ENOMEM);
	}
	unsigned n = 0;
	ssize_t r = pages ? pw__filemap_pin(f, offset, count, p->pages, (unsigned)pages, &n) : 0;
	pw__fput(f);
	if (r <= 0) {
		free(p);
		return ret(r);
	}
	p->n = n;
	/* One span per run of pages in consecutive frames. */
	size_t left = (size_t)r, start = (size_t)offset % PAGE_SIZE;
	int ns = 0;
	for (unsigned k = 0; k < n; k++) {
		size_t len = PW_MIN(PAGE_SIZE - start, left);
		off_t at = (off_t)(page_to_pfn(p->pages[k]) * PAGE_SIZE + start);
		if (ns > 0 && spans[ns - 1].off + (off_t)spans[ns - 1].len == at)
			spans[ns - 1].len += len;
		else
			spans[ns++] = (struct pw_span){at, len};
		left -= len;
		start = 0;
	}
	*nspans = ns;
	*pin = p;
	return r;
}

void
pw_unpin(struct pw_pin *pin)
{
	if (!pin)
		return;
	for (unsigned k = 0; k < pin->n; k++)
		put_page(pin->pages[k]);
	free(pin);
}

ssize_t
pw_readv(int fd, const struct iovec *iov, int iovcnt)
{
	return ret(do_rw(fd, iov, iovcnt, -1, false, false));
}

ssize_t
pw_writev(int fd, const struct iovec *iov, int iovcnt)
{
	return ret(do_rw(fd, iov, iovcnt, -1, true, false));
}

ssize_t
pw_preadv(int fd, const struct iovec *iov, int iovcnt, off_t offset)
{
	return ret(do_rw(fd, iov, iovcnt, offset, false, true));
}

ssize_t
pw_pwritev(int fd, const struct iovec *iov, int iovcnt, off_t offset)
{
	return ret(do_rw(fd, iov, iovcnt, offset, true, true));
}

off_t
pw_lseek(int fd, off_t offset, int whence)
{
	int err = enter();
	if (err)
		return ret(err);
	struct file *f = pw__fget(fd);
	if (!f)
		return ret(-EBADF);
	pthread_mutex_lock(&f->f_pos_lock);
	loff_t size = i_size_read(f->f_inode), np;
	switch (whence) {
	case SEEK_SET: np = offset; break;
	case SEEK_CUR: np = f->f_pos + offset; break;
	case SEEK_END: np = size + offset; break;
	case SEEK_DATA: np = offset < size ? offset : -ENXIO; break;
	case SEEK_HOLE: np = offset < size ? size : -ENXIO; break;
	default: np = -EINVAL;
	}
	if (np < 0 && (whence == SEEK_DATA || whence == SEEK_HOLE) && offset >= 0)
		err = (int)np;
	else if (np < 0)
		err = -EINVAL;
	else
		f->f_pos = np;
	pthread_mutex_unlock(&f->f_pos_lock);
	pw__fput(f);
	return err ? ret(err) : np;
}

/* ------------------------------------------------------------- truncate */

int
pw_ftruncate(int fd, off_t length)
{
	int err = enter();
	if (err)
		return (int)ret(err);
	struct file *f = pw__fget(fd);
	if (!f)
		return (int)ret(-EBADF);
	if (!f->f_writable || !S_ISREG(f->f_inode->i_mode))
		err = -EINVAL;
	else
		err = do_truncate(f->f_inode, length);
	pw__fput(f);
	return (int)ret(err);
}

int
pw_truncate(const char *path, off_t length)
{
	struct walk w;
	int err = enter();
	if (!err)
		err = walk_path(path, &w);
	if (err)
		return (int)ret(err);
	if (S_ISDIR(w.inode->i_mode))
		err = -EISDIR;
	else if (w.mnt->sb->s_flags & SB_RDONLY)
		err = -EROFS;
	else if (!(err = may_access(w.inode, 2)))
		err = do_truncate(w.inode, length);
	iput(w.inode);
	return (int)ret(err);
}

/* ---------------------------------------------------------------- fsync */

/* Report a writeback error once to each file that was open when it
 * happened (the kernel's errseq). */
static int
check_wb_err(struct file *file)
{
	struct address_space *m = file->f_mapping;
	uint32_t seq = atomic_load(&m->wb_err_seq);
	uint32_t seen = atomic_load(&file->f_wb_err_seq);
	if (seq == seen || !atomic_compare_exchange_strong(&file->f_wb_err_seq, &seen, seq))
		return 0;
	return -atomic_load(&m->wb_err);
}

int
pw__vfs_fsync_range(struct file *file, loff_t start, loff_t end, bool datasync)
{
	struct inode *inode = file->f_inode;
	const struct super_operations *sop = inode->i_sb->s_op;
	int err = filemap_write_and_wait_range(file->f_mapping, start, end);
	int e2 = 0;
	if (sop->write_inode && (!datasync || atomic_load(&inode->i_dirty_datasync)) &&
	    inode_test_clear_dirty(inode))
		e2 = sop->write_inode(inode, true);
	int e3 = sop->fsync ? sop->fsync(inode, datasync) : 0;
	int e4 = check_wb_err(file);
	/* A writepage error of this call also advanced the errseq, and
	 * check_wb_err consumed it for this file: report it once. */
	return err ? err : e4 ? e4 : e2 ? e2 : e3;
}

static int
do_fsync(int fd, bool datasync)
{
	int err = enter();
	if (err)
		return err;
	struct file *f = pw__fget(fd);
	if (!f)
		return -EBADF;
	err = pw__vfs_fsync_range(f, 0, LLONG_MAX, datasync);
	pw__fput(f);
	return err;
}

int
pw_fsync(int fd)
{
	return (int)ret(do_fsync(fd, false));
}

int
pw_fdatasync(int fd)
{
	return (int)ret(do_fsync(fd, true));
}

/* ----------------------------------------------------------------- stat */

static void
fill_stat(struct inode *inode, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	/* Times and block counts change under i_rwsem. */
	inode_lock(inode);
	st->st_dev = inode->i_sb->s_dev;
	st->st_ino = inode->i_ino;
	st->st_mode = inode->i_mode;
	st->st_nlink = atomic_load(&inode->i_nlink);
	st->st_uid = inode->i_uid;
	st->st_gid = inode->i_gid;
	st->st_size = i_size_read(inode);
	st->st_blksize = PAGE_SIZE;
	pthread_mutex_lock(&inode->i_data.i_pages_lock);
	unsigned long nrpages = inode->i_data.nrpages;
	pthread_mutex_unlock(&inode->i_data.i_pages_lock);
	st->st_blocks = inode->i_blocks ? (blkcnt_t)inode->i_blocks
	                                : (blkcnt_t)(nrpages * (PAGE_SIZE / 512));
	st->st_atim = inode_time_get(&inode->i_atime);
	st->st_mtim = inode_time_get(&inode->i_mtime);
	st->st_ctim = inode_time_get(&inode->i_ctime);
	inode_unlock(inode);
}

int
pw_fstat(int fd, struct stat *st)
{
	int err = enter();
	if (err)
		return (int)ret(err);
	struct file *f = pw__fget(fd);
	if (!f)
		return (int)ret(-EBADF);
	struct stat tmp;
	fill_stat(f->f_inode, &tmp);
	pw__fput(f);
	if (copy_to_user(st, &tmp, sizeof(tmp)))
		return (int)ret(-EFAULT);
	return 0;
}

static int
do_stat(const char *path, struct stat *st, bool follow)
{
	struct walk w;
	int err = enter();
	if (!err)
		err = walk_path_flags(path, follow, &w);
	if (err)
		return err;
	struct stat tmp;
	fill_stat(w.inode, &tmp);
	iput(w.inode);
	return copy_to_user(st, &tmp, sizeof(tmp)) ? -EFAULT : 0;
}

int
pw_stat(const char *path, struct stat *st)
{
	return (int)ret(do_stat(path, st, true));
}

int
pw_lstat(const char *path, struct stat *st)
{
	return (int)ret(do_stat(path, st, false));
}

/* ------------------------------------------------------------ namespace */

/* Resolve the parent for a namespace change, with the checks they share.
 * On success nd holds dir: nd_put(nd) when done. */
static int
ns_parent(const char *path, struct nameidata *nd, struct walk *dir,
          const char **name, size_t *len)
{
	int err = enter();
	if (!err)
		err = walk_parent(path, nd, dir, name, len);
	if (err)
		return err;
	if (!*name)
		err = -EBUSY;
	else if (dir->mnt->sb->s_flags & SB_RDONLY)
		err = -EROFS;
	else
		err = may_access(dir->inode, 3);
	if (err)
		nd_put(nd);
	return err;
}

/* The caller's clock time, for ctime and UTIME_NOW. */
static struct timespec
current_time(void)
{
	struct timespec now;
	pw__current_time(&now);
	return now;
}

/* The victim, never a directory, is locked too (parent, then child), so
 * that the filesystem may set its ctime.  rmdir does not lock its victim:
 * rename locks two directories in address order, not parent first. */
static int
vfs_unlink(struct walk *dir, const char *name, size_t len, struct inode *victim)
{
	inode_lock(victim);
	int err = dir->inode->i_op->unlink(dir->inode, name, len, victim);
	inode_unlock(victim);
	return err;
}

static int
do_remove(const char *path, bool rmdir)
{
	struct nameidata nd;
	struct walk dir, v;
	const char *name;
	size_t len;
	int err = ns_parent(path, &nd, &dir, &name, &len);
	if (err)
		return err;
	inode_lock(dir.inode);
	err = lookup_child(&dir, name, len, &v);
	if (!err) {
		if (is_mountpoint(v.inode))
			err = -EBUSY;
		else if (rmdir && !S_ISDIR(v.inode->i_mode))
			err = -ENOTDIR;
		else if (!rmdir && S_ISDIR(v.inode->i_mode))
			err = -EISDIR;
		else if (nd.slash && !S_ISDIR(v.inode->i_mode))
			err = -ENOTDIR;
		else if (rmdir)
			err = dir.inode->i_op->rmdir(dir.inode, name, len, v.inode);
		else
			err = vfs_unlink(&dir, name, len, v.inode);
		iput(v.inode);
	}
	inode_unlock(dir.inode);
	nd_put(&nd);
	return err;
}

int
pw_unlink(const char *path)
{
	return (int)ret(do_remove(path, false));
}

int
pw_rmdir(const char *path)
{
	return (int)ret(do_remove(path, true));
}

/* Make a new name with make(dir, name, len, arg) unless it exists. */
static int
ns_create(const char *path,
          int (*make)(struct walk *dir, const char *name, size_t len, void *arg),
          void *arg)
{
	struct nameidata nd;
	struct walk dir, v;
	const char *name;
	size_t len;
	int err = ns_parent(path, &nd, &dir, &name, &len);
	if (err == -EBUSY)
		err = -EEXIST;
	if (err)
		return err;
	inode_lock(dir.inode);
	err = lookup_child(&dir, name, len, &v);
	if (!err) {
		iput(v.inode);
		err = -EEXIST;
	} else if (err == -ENOENT) {
		err = make(&dir, name, len, arg);
	}
	inode_unlock(dir.inode);
	nd_put(&nd);
	return err;
}

static int
make_dir(struct walk *dir, const char *name, size_t len, void *arg)
{
	struct inode *inode;
	int err = dir->inode->i_op->mkdir(dir->inode, name, len, *(mode_t *)arg, &inode);
	if (!err)
		iput(inode);
	return err;
}

int
pw_mkdir(const char *path, mode_t mode)
{
	return (int)ret(ns_create(path, make_dir, &mode));
}

static int
make_symlink(struct walk *dir, const char *name, size_t len, void *arg)
{
	const struct inode_operations *iop = dir->inode->i_op;
	struct inode *inode;
	if (!iop->symlink)
		return -EPERM;
	int err = iop->symlink(dir->inode, name, len, arg, &inode);
	if (!err)
		iput(inode);
	return err;
}

int
pw_symlink(const char *target, const char *linkpath)
{
	char buf[PATH_MAX];
	int err = enter();
	if (err)
		return (int)ret(err);
	long n = strncpy_from_user(buf, target, PATH_MAX);
	if (n == PATH_MAX)
		n = -ENAMETOOLONG;
	else if (n == 0)
		n = -ENOENT;
	return (int)ret(n < 0 ? n : ns_create(linkpath, make_symlink, buf));
}

ssize_t
pw_readlink(const char *path, char *buf, size_t bufsiz)
{
	struct walk w;
	int err = enter();
	if (!err)
		err = walk_path_flags(path, false, &w);
	if (err)
		return ret(err);
	char target[PATH_MAX];
	const struct inode_operations *iop = w.inode->i_op;
	int n = -EINVAL;
	if (S_ISLNK(w.inode->i_mode) && iop->readlink && bufsiz > 0)
		n = iop->readlink(w.inode, target, PW_MIN(bufsiz, sizeof(target)));
	iput(w.inode);
	if (n > 0 && copy_to_user(buf, target, (size_t)n))
		n = -EFAULT;
	return ret(n);
}

/* Add a name for inode in dir (dir's i_rwsem held; then the inode's). */
static int
vfs_link(struct inode *inode, struct walk *dir, const char *name, size_t len)
{
	const struct inode_operations *iop = dir->inode->i_op;
	if (!iop->link)
		return -EPERM;
	inode_lock(inode);
	/* Unlinked since the lookup: it must not come back. */
	int err = atomic_load(&inode->i_nlink) == 0
	              ? -ENOENT
	              : iop->link(inode, dir->inode, name, len);
	inode_unlock(inode);
	return err;
}

/* Like Linux's link(2), oldpath is not followed: a symlink gets a second
 * name itself. */
int
pw_link(const char *oldpath, const char *newpath)
{
	struct nameidata nd;
	struct walk old, dir, v;
	const char *name;
	size_t len;
	int err = enter();
	if (!err)
		err = walk_path_flags(oldpath, false, &old);
	if (err)
		return (int)ret(err);
	if ((err = ns_parent(newpath, &nd, &dir, &name, &len))) {
		iput(old.inode);
		return (int)ret(err == -EBUSY ? -EEXIST : err);
	}
	inode_lock(dir.inode);
	err = lookup_child(&dir, name, len, &v);
	if (!err) {
		iput(v.inode);
		err = -EEXIST;
	} else if (err == -ENOENT) {
		if (dir.mnt != old.mnt)
			err = -EXDEV;
		else if (S_ISDIR(old.inode->i_mode))
			err = -EPERM;
		else
			err = vfs_link(old.inode, &dir, name, len);
	}
	inode_unlock(dir.inode);
	nd_put(&nd);
	iput(old.inode);
	return (int)ret(err);
}

static int
rename_checks(struct walk *src, struct walk *dst_dir, const char *nname,
              size_t nlen)
{
	if (is_mountpoint(src->inode))
		return -EBUSY;
	struct walk t;
	int err = lookup_child(dst_dir, nname, nlen, &t);
	if (err == -ENOENT)
		return 0;
	if (err)
		return err;
	if (t.inode != src->inode) {
		if (is_mountpoint(t.inode))
			err = -EBUSY;
		else if (S_ISDIR(src->inode->i_mode) && !S_ISDIR(t.inode->i_mode))
			err = -ENOTDIR;
		else if (!S_ISDIR(src->inode->i_mode) && S_ISDIR(t.inode->i_mode))
			err = -EISDIR;
	}
	iput(t.inode);
	return err;
}

/* The renamed inode's ctime moves on, as on Linux (parents locked). */
static void
rename_touch(struct inode *inode)
{
	inode_lock(inode);
	inode->i_ctime = current_time();
	mark_inode_dirty(inode);
	inode_unlock(inode);
}

int
pw_rename(const char *oldpath, const char *newpath)
{
	struct nameidata ond, nnd;
	struct walk od, nd, src;
	const char *on, *nn;
	size_t ol, nl;
	int err = ns_parent(oldpath, &ond, &od, &on, &ol);
	if (err)
		return (int)ret(err);
	if ((err = ns_parent(newpath, &nnd, &nd, &nn, &nl))) {
		nd_put(&ond);
		return (int)ret(err);
	}
	if (od.mnt != nd.mnt) {
		err = -EXDEV;
		goto out;
	}
	pthread_mutex_lock(&rename_lock);
	struct inode *a = od.inode, *b = nd.inode;
	if (a > b) {
		struct inode *t = a;
		a = b;
		b = t;
	}
	inode_lock(a);
	if (b != a)
		inode_lock(b);
	err = lookup_child(&od, on, ol, &src);
	if (!err) {
		/* A directory cannot move below itself: the new parent's chain
		 * of ancestors, as the walk met them, must not hold it. */
		if (S_ISDIR(src.inode->i_mode) && nd_has(&nnd, src.inode))
			err = -EINVAL;
		else
			err = rename_checks(&src, &nd, nn, nl);
		if (!err)
			err = od.inode->i_op->rename(od.inode, on, ol, nd.inode, nn, nl);
		if (!err && src.inode != a && src.inode != b)
			rename_touch(src.inode);
		iput(src.inode);
	}
	if (b != a)
		inode_unlock(b);
	inode_unlock(a);
	pthread_mutex_unlock(&rename_lock);
out:
	nd_put(&ond);
	nd_put(&nnd);
	return (int)ret(err);
}

/* ------------------------------------------------------------ attributes */

/*
 * chmod, chown and utimens: the filesystem's setattr under the inode's
 * i_rwsem, then ctime.  There is no permission model beyond what
 * may_access does: only the owner (or root) may change mode, times or
 * group, and only root the owner (EPERM otherwise).
 */
static bool
is_owner(struct inode *inode)
{
	uid_t uid = pw__current_uid();
	return uid == 0 || uid == inode->i_uid;
}

static int
notify_change(struct inode *inode, struct pw_iattr *attr)
{
	if (inode->i_sb->s_flags & SB_RDONLY)
		return -EROFS;
	if (!inode->i_op->setattr)
		return -EPERM;
	struct timespec now = current_time();
	inode_lock(inode);
	int err = inode->i_op->setattr(inode, attr);
	if (!err) {
		inode->i_ctime = now;
		mark_inode_dirty(inode);
	}
	inode_unlock(inode);
	return err;
}

/* The inode a call works on: from fd if by_fd, else from path (follow:
 * the final symlink too). */
struct attr_target {
	struct walk w;   /* w.inode: referenced, or the file's */
	struct file *f;  /* referenced, if by_fd */
};

static int
target_get(struct attr_target *t, bool by_fd, const char *path, int fd,
           bool follow)
{
	int err = enter();
	if (err)
		return err;
	t->f = NULL;
	if (!by_fd)
		return walk_path_flags(path, follow, &t->w);
	if (!(t->f = pw__fget(fd)))
		return -EBADF;
	t->w.inode = t->f->f_inode;
	return 0;
}

static void
target_put(struct attr_target *t)
{
	if (t->f)
		pw__fput(t->f);
	else
		iput(t->w.inode);
}

static int
do_chmod(const char *path, int fd, mode_t mode)
{
	struct attr_target t;
	int err = target_get(&t, !path, path, fd, true);
	if (err)
		return err;
	struct pw_iattr attr = {.valid = ATTR_MODE, .mode = mode & 07777};
	err = is_owner(t.w.inode) ? notify_change(t.w.inode, &attr) : -EPERM;
	target_put(&t);
	return err;
}

int
pw_chmod(const char *path, mode_t mode)
{
	return (int)ret(path ? do_chmod(path, -1, mode) : -EFAULT);
}

int
pw_fchmod(int fd, mode_t mode)
{
	return (int)ret(do_chmod(NULL, fd, mode));
}

static int
do_chown(const char *path, int fd, bool follow, uid_t uid, gid_t gid)
{
	struct attr_target t;
	int err = target_get(&t, !path, path, fd, follow);
	if (err)
		return err;
	struct inode *inode = t.w.inode;
	struct pw_iattr attr = {.uid = uid, .gid = gid};
	if (uid != (uid_t)-1)
		attr.valid |= ATTR_UID;
	if (gid != (gid_t)-1)
		attr.valid |= ATTR_GID;
	bool root = pw__current_uid() == 0;
	if ((!root && uid != (uid_t)-1 && uid != inode->i_uid) ||
	    (!root && gid != (gid_t)-1 && gid != inode->i_gid && gid != pw__current_gid()) ||
	    !is_owner(inode)) {
		err = -EPERM;
	} else {
		/* As Linux: a chown of a non-directory drops set-user-ID, and
		 * set-group-ID if group execute is on, even for root. */
		mode_t m = inode->i_mode;
		mode_t kill = S_ISUID | ((m & S_IXGRP) ? S_ISGID : 0);
		if (!S_ISDIR(m) && !S_ISLNK(m) && (m & kill)) {
			attr.valid |= ATTR_MODE;
			attr.mode = m & 07777 & ~kill;
		}
		err = notify_change(inode, &attr);
	}
	target_put(&t);
	return err;
}

int
pw_chown(const char *path, uid_t owner, gid_t group)
{
	return (int)ret(path ? do_chown(path, -1, true, owner, group) : -EFAULT);
}

int
pw_lchown(const char *path, uid_t owner, gid_t group)
{
	return (int)ret(path ? do_chown(path, -1, false, owner, group) : -EFAULT);
}

int
pw_fchown(int fd, uid_t owner, gid_t group)
{
	return (int)ret(do_chown(NULL, fd, false, owner, group));
}

/* One time of utimensat: UTIME_NOW, UTIME_OMIT or a valid timespec.
 * Return: 1 to set it (*ts filled), 0 to omit it, -EINVAL. */
static int
utime_arg(const struct timespec *in, struct timespec now, bool null,
          struct timespec *ts, bool *explicit_time)
{
	if (null || in->tv_nsec == UTIME_NOW) {
		*ts = now;
		return 1;
	}
	if (in->tv_nsec == UTIME_OMIT)
		return 0;
	if (in->tv_nsec < 0 || in->tv_nsec > 999999999)
		return -EINVAL;
	*ts = *in;
	*explicit_time = true;
	return 1;
}

static int
do_utimens(const char *path, int fd, const struct timespec *times, int flags)
{
	struct timespec in[2];
	struct pw_iattr attr = {0};
	bool explicit_time = false;
	if (flags & ~AT_SYMLINK_NOFOLLOW)
		return -EINVAL;
	if (times && copy_from_user(in, times, sizeof(in)))
		return -EFAULT;
	struct timespec now = current_time();
	int a = utime_arg(&in[0], now, !times, &attr.atime, &explicit_time);
	int m = utime_arg(&in[1], now, !times, &attr.mtime, &explicit_time);
	if (a < 0 || m < 0)
		return -EINVAL;
	attr.valid = (a ? ATTR_ATIME : 0) | (m ? ATTR_MTIME : 0);
	struct attr_target t;
	int err = target_get(&t, !path, path, fd, !(flags & AT_SYMLINK_NOFOLLOW));
	if (err)
		return err;
	struct inode *inode = t.w.inode;
	if (!attr.valid)
		err = 0; /* both UTIME_OMIT: nothing changes, not even ctime */
	else if (explicit_time && !is_owner(inode))
		err = -EPERM;
	else if (!is_owner(inode) && may_access(inode, 2))
		err = -EACCES;
	else
		err = notify_change(inode, &attr);
	target_put(&t);
	return err;
}

int
pw_utimens(const char *path, const struct timespec times[2], int flags)
{
	return (int)ret(path ? do_utimens(path, -1, times, flags) : -EFAULT);
}

int
pw_futimens(int fd, const struct timespec times[2])
{
	return (int)ret(do_utimens(NULL, fd, times, 0));
}

/* ------------------------------------------------------------ statvfs */

static int
do_statvfs(const char *path, int fd, struct statvfs *st)
{
	struct attr_target t;
	int err = target_get(&t, !path, path, fd, true);
	if (err)
		return err;
	struct super_block *sb = t.w.inode->i_sb;
	struct statvfs tmp;
	memset(&tmp, 0, sizeof(tmp));
	err = sb->s_op->statfs ? sb->s_op->statfs(sb, &tmp) : -ENOSYS;
	target_put(&t);
	if (err)
		return err;
	if (sb->s_flags & SB_RDONLY)
		tmp.f_flag |= ST_RDONLY;
	if (!tmp.f_fsid)
		tmp.f_fsid = (unsigned long)sb->s_dev;
	return copy_to_user(st, &tmp, sizeof(tmp)) ? -EFAULT : 0;
}

int
pw_statvfs(const char *path, struct statvfs *st)
{
	return (int)ret(path ? do_statvfs(path, -1, st) : -EFAULT);
}

int
pw_fstatvfs(int fd, struct statvfs *st)
{
	return (int)ret(do_statvfs(NULL, fd, st));
}

/* ------------------------------------------------------- extended attributes */

#define PW_XATTR_NAME_MAX 255
#define PW_XATTR_SIZE_MAX 65536 /* a value, and a list of names */

enum xattr_op { XA_GET, XA_SET, XA_LIST, XA_REMOVE };

/*
 * May the caller read (or, write, set and remove) attribute name of
 * inode?  As the kernel's xattr_permission: trusted.* is root's alone
 * (others see none); security.* anyone reads and root sets; user.* only
 * on files and directories, with the file's read or write permission;
 * other namespaces are not supported.
 */
static int
xattr_permission(struct inode *inode, const char *name, bool write)
{
	bool root = pw__current_uid() == 0;
	if (!strncmp(name, "trusted.", 8))
		return root ? 0 : write ? -EPERM : -ENODATA;
	if (!strncmp(name, "security.", 9))
		return write && !root ? -EPERM : 0;
	if (!strncmp(name, "user.", 5)) {
		if (!S_ISREG(inode->i_mode) && !S_ISDIR(inode->i_mode))
			return write ? -EPERM : -ENODATA;
		return may_access(inode, write ? 2 : 4);
	}
	return -EOPNOTSUPP;
}

/* Keep the names of list (len bytes) the caller may see: all for root,
 * no trusted.* for others.  Return: the new length. */
static size_t
xattr_list_filter(char *list, size_t len)
{
	if (pw__current_uid() == 0)
		return len;
	size_t out = 0;
	for (size_t at = 0; at < len;) {
		size_t l = strnlen(list + at, len - at) + 1;
		if (strncmp(list + at, "trusted.", 8) != 0) {
			memmove(list + out, list + at, l);
			out += l;
		}
		at += l;
	}
	return out;
}

static long
do_xattr(enum xattr_op op, const char *path, int fd, bool follow, const char *uname,
         void *uvalue, size_t size, int flags)
{
	char name[PW_XATTR_NAME_MAX + 1];
	bool write = op == XA_SET || op == XA_REMOVE;
	if (!path && fd < 0)
		return -EBADF;
	if (op != XA_LIST) {
		long n = strncpy_from_user(name, uname, (long)sizeof(name));
		if (n < 0)
			return n;
		if (n == 0 || n >= (long)sizeof(name))
			return -ERANGE;
	}
	if (op == XA_SET && (flags & ~(XATTR_CREATE | XATTR_REPLACE)))
		return -EINVAL;
	if (size > PW_XATTR_SIZE_MAX) {
		if (op == XA_SET)
			return -E2BIG;
		size = PW_XATTR_SIZE_MAX;
	}
	struct attr_target t;
	long r = target_get(&t, !path, path, fd, follow);
	if (r)
		return r;
	struct inode *inode = t.w.inode;
	const struct inode_operations *iop = inode->i_op;
	/* A list is fetched whole and filtered, so its length is known
	 * even when the caller only asks for it. */
	size_t klen = op == XA_LIST ? PW_XATTR_SIZE_MAX : size;
	char *kbuf = klen ? malloc(klen) : NULL;
	if (klen && !kbuf)
		r = -ENOMEM;
	else if (op == XA_SET && size && copy_from_user(kbuf, uvalue, size))
		r = -EFAULT;
	else if (write && (inode->i_sb->s_flags & SB_RDONLY))
		r = -EROFS;
	else if (op != XA_LIST)
		r = xattr_permission(inode, name, write);
	if (!r && !(op == XA_LIST ? (void *)iop->listxattr
	                          : op == XA_GET ? (void *)iop->getxattr : (void *)iop->setxattr))
		r = -EOPNOTSUPP;
	if (!r) {
		inode_lock(inode);
		switch (op) {
		case XA_GET:
			r = iop->getxattr(inode, name, kbuf, size);
			break;
		case XA_LIST:
			r = iop->listxattr(inode, kbuf, klen);
			break;
		case XA_SET:
			r = iop->setxattr(inode, name, kbuf ? kbuf : "", size, flags);
			break;
		case XA_REMOVE:
			r = iop->setxattr(inode, name, NULL, 0, XATTR_REPLACE);
			break;
		}
		if (write && r == 0) {
			inode->i_ctime = current_time();
			mark_inode_dirty(inode);
		}
		inode_unlock(inode);
	}
	if (op == XA_LIST && r > 0) {
		r = (long)xattr_list_filter(kbuf, (size_t)r);
		if (size && (size_t)r > size)
			r = -ERANGE;
	}
	if (r > 0 && size && (op == XA_GET || op == XA_LIST) &&
	    copy_to_user(uvalue, kbuf, (size_t)r))
		r = -EFAULT;
	free(kbuf);
	target_put(&t);
	return r;
}

ssize_t
pw_getxattr(const char *path, const char *name, void *value, size_t size)
{
	return path ? ret(do_xattr(XA_GET, path, -1, true, name, value, size, 0)) : ret(-EFAULT);
}

ssize_t
pw_lgetxattr(const char *path, const char *name, void *value, size_t size)
{
	return path ? ret(do_xattr(XA_GET, path, -1, false, name, value, size, 0)) : ret(-EFAULT);
}

ssize_t
pw_fgetxattr(int fd, const char *name, void *value, size_t size)
{
	return ret(do_xattr(XA_GET, NULL, fd, false, name, value, size, 0));
}

int
pw_setxattr(const char *path, const char *name, const void *value, size_t size, int flags)
{
	return (int)(path ? ret(do_xattr(XA_SET, path, -1, true, name, (void *)value, size, flags))
	                  : ret(-EFAULT));
}

int
pw_lsetxattr(const char *path, const char *name, const void *value, size_t size, int flags)
{
	return (int)(path ? ret(do_xattr(XA_SET, path, -1, false, name, (void *)value, size, flags))
	                  : ret(-EFAULT));
}

int
pw_fsetxattr(int fd, const char *name, const void *value, size_t size, int flags)
{
	return (int)ret(do_xattr(XA_SET, NULL, fd, false, name, (void *)value, size, flags));
}

ssize_t
pw_listxattr(const char *path, char *list, size_t size)
{
	return path ? ret(do_xattr(XA_LIST, path, -1, true, NULL, list, size, 0)) : ret(-EFAULT);
}

ssize_t
pw_llistxattr(const char *path, char *list, size_t size)
{
	return path ? ret(do_xattr(XA_LIST, path, -1, false, NULL, list, size, 0)) : ret(-EFAULT);
}

ssize_t
pw_flistxattr(int fd, char *list, size_t size)
{
	return ret(do_xattr(XA_LIST, NULL, fd, false, NULL, list, size, 0));
}

int
pw_removexattr(const char *path, const char *name)
{
	return (int)(path ? ret(do_xattr(XA_REMOVE, path, -1, true, name, NULL, 0, 0)) : ret(-EFAULT));
}

int
pw_lremovexattr(const char *path, const char *name)
{
	return (int)(path ? ret(do_xattr(XA_REMOVE, path, -1, false, name, NULL, 0, 0))
	                  : ret(-EFAULT));
}

int
pw_fremovexattr(int fd, const char *name)
{
	return (int)ret(do_xattr(XA_REMOVE, NULL, fd, false, name, NULL, 0, 0));
}

/* ----------------------------------------------------------- directories */

static int
dir_fill(void *ctx, const char *name, size_t len, uint64_t ino, unsigned dtype)
{
	struct pw_dir *d = ctx;
	if (len > NAME_MAX)
		return 0;
	if (d->nr == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 16;
		struct dirent *e = realloc(d->ents, cap * sizeof(*e));
		if (!e)
			return 1;
		d->ents = e;
		d->cap = cap;
	}
	struct dirent *e = &d->ents[d->nr];
	memset(e, 0, sizeof(*e));
	e->d_ino = ino;
	e->d_off = (off_t)(d->nr + 1);
	e->d_reclen = sizeof(*e);
	e->d_type = (unsigned char)dtype;
	memcpy(e->d_name, name, len);
	e->d_name[len] = 0;
	d->nr++;
	return 0;
}

/* The inode number ".." names: the parent's, within the filesystem (at a
 * filesystem's root, the root itself, as its own ".." entry says). */
static uint64_t
dotdot_ino(const char *path, struct inode *dir)
{
	if (dir == dir->i_sb->s_root)
		return dir->i_ino;
	size_t len = strnlen(path, PATH_MAX);
	char *up = malloc(len + 4);
	struct walk w;
	uint64_t ino = dir->i_ino;
	if (!up)
		return ino;
	memcpy(up, path, len);
	memcpy(up + len, "/..", 4);
	if (walk_path(up, &w) == 0) {
		if (w.inode->i_sb == dir->i_sb)
			ino = w.inode->i_ino;
		iput(w.inode);
	}
	free(up);
	return ino;
}

/* The stream is a snapshot taken at opendir, which POSIX allows: entries
 * added or removed later may or may not be seen. */
PW_DIR *
pw_opendir(const char *path)
{
	struct walk w;
	int err = enter();
	if (!err)
		err = walk_path(path, &w);
	if (err) {
		ret(err);
		return NULL;
	}
	struct pw_dir *d = NULL;
	if (!S_ISDIR(w.inode->i_mode))
		err = -ENOTDIR;
	else if ((err = may_access(w.inode, 4)) == 0 && !(d = calloc(1, sizeof(*d))))
		err = -ENOMEM;
	if (!err) {
		dir_fill(d, ".", 1, w.inode->i_ino, DT_DIR);
		dir_fill(d, "..", 2, dotdot_ino(path, w.inode), DT_DIR);
		err = w.inode->i_op->readdir(w.inode, d, dir_fill);
		if (err) {
			free(d->ents);
			free(d);
			d = NULL;
		}
	}
	iput(w.inode);
	if (err)
		ret(err);
	return d;
}

struct dirent *
pw_readdir(PW_DIR *dir)
{
	if (!dir) {
		errno = EBADF;
		return NULL;
	}
	return dir->pos < dir->nr ? &dir->ents[dir->pos++] : NULL;
}

int
pw_closedir(PW_DIR *dir)
{
	if (!dir)
		return (int)ret(-EBADF);
	free(dir->ents);
	free(dir);
	return 0;
}

/* -------------------------------------------------------------- mappings */

void *
pw_mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset)
{
	int err = enter();
	if (err) {
		errno = -err;
		return MAP_FAILED;
	}
	int type = flags & MAP_TYPE;
	if (length == 0 || (offset & (off_t)(PAGE_SIZE - 1)) || offset < 0 ||
	    (type != MAP_SHARED && type != MAP_PRIVATE && type != MAP_SHARED_VALIDATE) ||
	    (flags & MAP_ANONYMOUS) || length > (size_t)1 << 46 ||
	    ((flags & MAP_FIXED) && ((uintptr_t)addr & (PAGE_SIZE - 1)))) {
		errno = EINVAL;
		return MAP_FAILED;
	}
	struct file *f = pw__fget(fd);
	if (!f) {
		errno = EBADF;
		return MAP_FAILED;
	}
	if (!S_ISREG(f->f_inode->i_mode))
		err = ENODEV;
	else if (!f->f_readable || (type != MAP_PRIVATE && (prot & PROT_WRITE) &&
	                            !f->f_writable))
		err = EACCES;
	void *p = MAP_FAILED;
	if (!err)
		p = pw__do_mmap(addr, length, prot, flags, f, offset, &err);
	pw__fput(f);
	if (p == MAP_FAILED)
		errno = err;
	return p;
}

int
pw_munmap(void *addr, size_t length)
{
	int err = enter();
	return (int)ret(err ? err : pw__do_munmap(addr, length));
}

void
pw__test_release_all(void)
{
	if (enter())
		return;
	pw__test_munmap_all();
	for (int c = 0; c < FD_CHUNKS; c++) {
		if (!__atomic_load_n(&fd_chunks[c], __ATOMIC_ACQUIRE))
			continue;
		for (int k = 0; k < FD_CHUNK; k++) {
			struct file *f = fd_remove(c * FD_CHUNK + k);
			if (f)
				pw__fput(f);
		}
	}
}

int
pw_msync(void *addr, size_t length, int flags)
{
	int err = enter();
	return (int)ret(err ? err : pw__do_msync(addr, length, flags));
}

int
pw_madvise(void *addr, size_t length, int advice)
{
	int err = enter();
	return (int)ret(err ? err : pw__do_madvise(addr, length, advice));
}

int
pw_posix_fadvise(int fd, off_t offset, off_t len, int advice)
{
	int err = enter();
	if (err)
		return -err;
	struct file *f = pw__fget(fd);
	if (!f)
		return EBADF;
	if (offset < 0 || len < 0 || advice < POSIX_FADV_NORMAL ||
	    advice > POSIX_FADV_NOREUSE)
		err = -EINVAL;
	else if (S_ISDIR(f->f_inode->i_mode))
		err = 0;
	else if (advice == POSIX_FADV_DONTNEED) {
		loff_t end = len ? offset + len - 1 : LLONG_MAX;
		struct address_space *m = f->f_mapping;
		filemap_write_and_wait_range(m, offset, end);
		/* Only whole pages inside the range go, as on Linux. */
		pgoff_t first = (pgoff_t)(offset + (off_t)PAGE_SIZE - 1) >> PAGE_SHIFT;
		pgoff_t last = len ? (pgoff_t)(end + 1) >> PAGE_SHIFT : ~(pgoff_t)0;
		if (last > 0 && (len == 0 || (end + 1) % (off_t)PAGE_SIZE != 0))
			last = len ? last - 1 : last;
		else if (last > 0)
			last--;
		if (first <= last)
			invalidate_mapping_pages(m, first, last);
	}
	pw__fput(f);
	return -err;
}

/* ---------------------------------------------------------------- mounts */

struct sync_ctx {
	int err;
};

static void
sync_inode_cb(struct inode *inode, void *arg)
{
	struct sync_ctx *c = arg;
	int err = filemap_write_and_wait_range(inode->i_mapping, 0, LLONG_MAX);
	const struct super_operations *sop = inode->i_sb->s_op;
	if (!err && sop->write_inode && inode_test_clear_dirty(inode))
		err = sop->write_inode(inode, true);
	if (err && !c->err)
		c->err = err;
}

static int
sync_sb(struct super_block *sb)
{
	struct sync_ctx c = {0};
	pw__for_each_inode(sb, sync_inode_cb, &c);
	int err = sb->s_op->sync_fs ? sb->s_op->sync_fs(sb, true) : 0;
	return c.err ? c.err : err;
}

int
pw_sync(void)
{
	int err = enter();
	if (err)
		return (int)ret(err);
	pthread_rwlock_rdlock(&ns_lock);
	size_t n = 0;
	for (struct mount *m = mounts; m; m = m->next)
		n++;
	struct super_block **sbs = calloc(n ? n : 1, sizeof(*sbs));
	n = 0;
	for (struct mount *m = mounts; m && sbs; m = m->next)
		sbs[n++] = m->sb;
	pthread_rwlock_unlock(&ns_lock);
	for (size_t k = 0; k < n; k++) {
		int e = sync_sb(sbs[k]);
		if (e && !err)
			err = e;
	}
	free(sbs);
	return (int)ret(err);
}

int
pw_mount(const char *fstype, const char *source, const char *target,
         const char *options)
{
	int err = enter();
	if (err)
		return (int)ret(err);
	if (!fstype || !target)
		return (int)ret(-EFAULT);
	const struct file_system_type *type = pw__find_filesystem(fstype);
	if (!type)
		return (int)ret(-ENODEV);
	pw__pool_warm_start();
	struct walk w;
	if ((err = walk_path(target, &w)))
		return (int)ret(err);
	if (!S_ISDIR(w.inode->i_mode)) {
		iput(w.inode);
		return (int)ret(-ENOTDIR);
	}
	struct super_block *sb = sb_alloc(type);
	struct mount *m = calloc(1, sizeof(*m));
	if (!sb || !m) {
		err = -ENOMEM;
		goto fail;
	}
	if (pw__has_option(options, "ro"))
		sb->s_flags |= SB_RDONLY;
	if ((err = type->fill_super(sb, source, options)))
		goto fail;
	m->sb = sb;
	m->mountpoint = w.inode; /* keeps the reference */
	m->parent = w.mnt;
	pthread_rwlock_wrlock(&ns_lock);
	if (mounted_on(w.inode)) {
		pthread_rwlock_unlock(&ns_lock);
		iput(sb->s_root);
		pw__evict_all(sb);
		if (sb->s_op->put_super)
			sb->s_op->put_super(sb);
		err = -EBUSY;
		goto fail;
	}
	m->next = mounts;
	mounts = m;
	pthread_rwlock_unlock(&ns_lock);
	return 0;
fail:
	if (sb)
		pw__inode_table_free(sb);
	free(sb);
	free(m);
	iput(w.inode);
	return (int)ret(err);
}

int
pw_umount(const char *target)
{
	struct walk w;
	int err = enter();
	if (!err)
		err = walk_path(target, &w);
	if (err)
		return (int)ret(err);
	struct mount *m = w.mnt;
	bool is_root = w.inode == m->sb->s_root;
	iput(w.inode);
	if (!is_root || m == root_mount)
		return (int)ret(-EINVAL);
	pthread_rwlock_wrlock(&ns_lock);
	for (struct mount *c = mounts; c && !err; c = c->next)
		if (c->parent == m)
			err = -EBUSY;
	if (!err && atomic_load(&m->users) > 0)
		err = -EBUSY;
	if (!err) {
		struct mount **pp = &mounts;
		while (*pp != m)
			pp = &(*pp)->next;
		*pp = m->next;
	}
	pthread_rwlock_unlock(&ns_lock);
	if (err)
		return (int)ret(err);
	struct super_block *sb = m->sb;
	/* The writeback thread may still be walking it: it raised s_active
	 * while the mount was listed, and cannot find it any more. */
	while (atomic_load(&sb->s_active) > 0)
		usleep(1000);
	err = sync_sb(sb);
	iput(sb->s_root);
	pw__evict_all(sb);
	if (sb->s_op->put_super)
		sb->s_op->put_super(sb);
	iput(m->mountpoint);
	pthread_mutex_destroy(&sb->s_inode_lock);
	pw__inode_table_free(sb);
	free(sb);
	free(m);
	return (int)ret(err);
}

struct super_block **
pw__get_supers(void)
{
	pthread_rwlock_rdlock(&ns_lock);
	size_t n = 0;
	for (struct mount *m = mounts; m; m = m->next)
		n++;
	struct super_block **sbs = calloc(n + 1, sizeof(*sbs));
	n = 0;
	for (struct mount *m = mounts; m && sbs; m = m->next) {
		atomic_fetch_add(&m->sb->s_active, 1);
		sbs[n++] = m->sb;
	}
	pthread_rwlock_unlock(&ns_lock);
	return sbs;
}

void
pw__sb_put(struct super_block *sb)
{
	atomic_fetch_sub(&sb->s_active, 1);
}

/* ------------------------------------------------------------ statistics */

void
pw_get_stats(struct pw_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->pool_pages = atomic_load(&pw__stat.pool_pages);
	st->allocated_pages = atomic_load(&pw__stat.allocated);
	st->cached_pages = atomic_load(&pw__stat.cached);
	st->dirty_pages = atomic_load(&pw__stat.dirty);
	st->writeback_pages = atomic_load(&pw__stat.writeback);
	st->mapped_pages = atomic_load(&pw__stat.mapped);
	st->hits = atomic_load(&pw__stat.hits);
	st->misses = atomic_load(&pw__stat.misses);
	st->faults = atomic_load(&pw__stat.faults);
	st->fault_around = atomic_load(&pw__stat.fault_around);
	st->short_copies = atomic_load(&pw__stat.short_copies);
	st->write_retries = atomic_load(&pw__stat.write_retries);
	st->written_pages = atomic_load(&pw__stat.written);
	st->writeback_ios = atomic_load(&pw__stat.writeback_ios);
	st->write_errors = atomic_load(&pw__stat.write_errors);
	st->throttled = atomic_load(&pw__stat.throttled);
	st->throttle_ms = atomic_load(&pw__stat.throttle_ns) / 1000000;
	st->dirty_limit_pages = pw__dirty_limit_pages();
	st->dirty_background_pages = pw__dirty_background_pages();
	st->mem_limit_pages = pw__mem_limit_pages();
	st->reclaimed_pages = atomic_load(&pw__stat.reclaimed);
	st->reclaim_unmaps = atomic_load(&pw__stat.reclaim_unmaps);
	st->kernel_maps = atomic_load(&pw__stat.map_count);
	st->max_map_count = pw__max_map_count();
	st->map_drops = atomic_load(&pw__stat.map_drops);
	st->map_dropped_vmas = atomic_load(&pw__stat.map_dropped_vmas);
	st->refaults = atomic_load(&pw__stat.refaults);
	st->stuck_pages = atomic_load(&pw__stat.stuck_pages);
	st->warmed_pages = atomic_load(&pw__stat.warmed);
}

static void
add_sb_stats(struct super_block *sb, struct pw_mount_stats *st)
{
	/* Counters move in pairs that are not atomic together: a page seen
	 * in flight may be counted on neither side.  Never below zero. */
#define SB_GAUGE(f) ((uint64_t)PW_MAX(atomic_load(&sb->f), 0L))
	st->cached_pages += SB_GAUGE(s_nr_cached);
	st->dirty_pages += SB_GAUGE(s_nr_dirty);
	st->writeback_pages += SB_GAUGE(s_nr_writeback);
	st->mapped_pages += SB_GAUGE(s_nr_mapped);
#undef SB_GAUGE
	st->written_pages += atomic_load(&sb->s_written);
	st->writeback_ios += atomic_load(&sb->s_write_ios);
	st->write_errors += atomic_load(&sb->s_write_errors);
}

int
pw_get_mount_stats(const char *path, struct pw_mount_stats *st)
{
	struct walk w;
	int err = enter();
	if (!err)
		err = walk_path(path, &w);
	if (err)
		return (int)ret(err);
	struct pw_mount_stats tmp;
	memset(&tmp, 0, sizeof(tmp));
	struct super_block *sb = w.inode->i_sb;
	add_sb_stats(sb, &tmp);
	if (sb->s_bdev && sb->s_bdev->bd_inode)
		add_sb_stats(sb->s_bdev->bd_inode->i_sb, &tmp);
	iput(w.inode);
	if (copy_to_user(st, &tmp, sizeof(tmp)))
		return (int)ret(-EFAULT);
	return 0;
}

/* ------------------------------------------------------------ test hooks */

static int
evict_one(struct file *f, pgoff_t index)
{
	struct address_space *m = f->f_mapping;
	if (m->unevictable)
		return -EBUSY;
	struct page *page = find_lock_page(m, index);
	if (!page)
		return 0;
	if (PageDirty(page) && m->a_ops->writepage) {
		struct writeback_control wbc = {.sync = true};
		pw__writeout_locked_page(page, &wbc);
		lock_page(page);
	}
	wait_on_page_writeback(page);
	int err = 0;
	if (page->mapping != m)
		; /* truncated meanwhile: gone already */
	else if (PageDirty(page))
		err = -EBUSY;
	else {
		pw__page_unmap(page);
		delete_from_page_cache(page);
	}
	unlock_page(page);
	put_page(page);
	return err;
}

int
pw__test_evict(int fd, off_t offset)
{
	struct file *f = pw__fget(fd);
	if (!f)
		return -EBADF;
	int err = evict_one(f, (pgoff_t)offset >> PAGE_SHIFT);
	pw__fput(f);
	return err;
}

int
pw__test_evict_all(int fd)
{
	struct file *f = pw__fget(fd);
	if (!f)
		return -EBADF;
	int err = 0;
	struct page *batch[16];
	pgoff_t index = 0;
	unsigned n;
	while (!err && (n = find_get_pages(f->f_mapping, index, 16, batch)) > 0) {
		pgoff_t first = batch[0]->index;
		for (unsigned k = 0; k < n; k++) {
			index = batch[k]->index + 1;
			put_page(batch[k]);
		}
		for (pgoff_t i = first; i < index && !err; i++)
			err = evict_one(f, i);
	}
	pw__fput(f);
	return err;
}

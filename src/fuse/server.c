/*
 * server.c - a multithreaded low-level FUSE server over pagewright's
 * application API.
 *
 * Every request is answered with pw_ calls on the served directory of
 * pagewright's namespace.  Requests that name a file by node id turn it
 * into a path through the node table (nodes.c, which also explains the
 * locking that keeps paths right under concurrent renames); requests on an
 * open file use the pagewright descriptor kept in fi->fh.  libfuse runs
 * the requests on a pool of worker threads, and pagewright is thread-safe,
 * so requests run in parallel with no lock of the server's own around data
 * I/O.
 *
 * Data and the kernel's cache (docs/fuse.md has the measurements):
 *   PW_FUSE_CACHE_DIRECT  files are opened FOPEN_DIRECT_IO, so every read
 *       and write reaches pagewright and its page cache is the only data
 *       cache.  Shared mappings then need FUSE_DIRECT_IO_ALLOW_MMAP
 *       (Linux 6.6+), which devio.c asks for; the kernel keeps the mapped
 *       pages of such a file in its page cache and writes them back to
 *       the server.
 *   PW_FUSE_CACHE_KERNEL  the kernel caches file data too, written
 *       through (no writeback cache), and drops it at each open
 *       (keep_cache off), so both caches hold the same bytes as long as
 *       all changes come through the mount.
 *   PW_FUSE_CACHE_WRITEBACK  the kernel's page cache is kept across opens
 *       and is a writeback cache: writes stay in it until the kernel
 *       writes them back (at the latest on close and fsync).  Coherent
 *       for the same reason; write-only opens are read-write here.
 *
 * Ending: a signal makes the kernel write back the dirty pages it holds
 * before the session stops (kernel_writeback); unmounting makes the kernel
 * do so itself.
 *
 * Replies: each handler replies exactly once.  A reply that fails because
 * the request was interrupted means the kernel never saw the answer, so a
 * lookup count or an open descriptor made for it is undone here.
 *
 * Open flags: the kernel has already applied O_APPEND (it sends the
 * offset at end of file), O_CREAT and O_EXCL; pagewright gets the access
 * mode, O_TRUNC (FUSE_CAP_ATOMIC_O_TRUNC) and the sync flags only.
 */
#include "server.h"
#include "fuse_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <pagewright/pagewright.h>

#define FUSE_SUPER_MAGIC 0x65735546
#define MAX_READ (1 << 20)        /* max_write, and so max_pages: reads too */
#define PW_FUSE_MIN(a, b) ((a) < (b) ? (a) : (b))
#define OPEN_FLAGS (O_ACCMODE | O_TRUNC | O_SYNC | O_DSYNC)

struct pw_fuse {
	struct devio io;          /* devio.c's state */
	struct ntab tab;          /* nodes and handles */
	struct fuse_session *se;  /* (C) */
	struct pw_fuse_opts opts; /* (C) */
	bool mounted;             /* (C) fuse_session_mount succeeded */
	bool splice_reads;        /* (C) after INIT: large READs spliced */
	bool read_nocache;        /* (C) READs past pagewright's cache (op_read) */
	size_t max_read;          /* (C) READs spliced up to this size (0: none) */
	size_t pipe_cap;          /* (C) pipe_capacity() */
	int pool_fd;              /* (C) pw_pool_fd() */
	uid_t euid;               /* (C) the server's IDs */
	gid_t egid;               /* (C) */
	struct {                  /* (A) relaxed atomics, for pagewright stat */
		_Atomic uint64_t reads, read_bytes, writes, write_bytes, fsyncs, creates;
	} count;
};

#define COUNT(f, field, n) \
	atomic_fetch_add_explicit(&(f)->count.field, (n), memory_order_relaxed)

/* A directory stream: a snapshot of the entries, so that the offsets the
 * kernel hands back (index + 1) mean the same entry on every call. */
struct dent {
	ino_t ino;
	unsigned char type;       /* DT_* */
	size_t name;              /* offset in names */
};

struct dhandle {
	pthread_mutex_t lock;
	struct fnode *node;       /* (C) */
	struct dent *ents;        /* (lock) */
	size_t nr;                /* (lock) */
	char *names;              /* (lock) */
	bool served;              /* (lock) a readdir used this snapshot */
};

struct devio *
pw__server_devio(void *userdata)
{
	return &((struct pw_fuse *)userdata)->io;
}

/* Every handler starts here.  The server never changes its IDs: each
 * thread gives pagewright them once (pw_set_thread_creds), which saves a
 * geteuid/getegid system call per permission check and new file. */
static struct pw_fuse *
server(fuse_req_t req)
{
	static __thread bool creds;
	struct pw_fuse *f = fuse_req_userdata(req);
	if (!creds) {
		pw_set_thread_creds(f->euid, f->egid);
		creds = true;
	}
	return f;
}

static struct fhandle *
handle(struct fuse_file_info *fi)
{
	return (struct fhandle *)(uintptr_t)fi->fh;
}

/* The file handle getattr and setattr may come with; a directory's fh is a
 * struct dhandle, never used there. */
static struct fhandle *
attr_handle(struct pw_fuse *f, fuse_ino_t ino, struct fuse_file_info *fi)
{
	return fi && !S_ISDIR(pw__node_of(&f->tab, ino)->type) ? handle(fi) : NULL;
}

/* -------------------------------------------------------------- replies */

static void
reply_errno(fuse_req_t req, int err)
{
	fuse_reply_err(req, err < 0 ? -err : err);
}

static void
reply_entry(fuse_req_t req, struct fnode *n, const struct stat *st)
{
	struct pw_fuse *f = server(req);
	struct fuse_entry_param e;
	memset(&e, 0, sizeof(e));
	e.ino = pw__node_ino(&f->tab, n);
	e.generation = n->generation;
	e.attr = *st;
	e.attr_timeout = f->opts.timeout;
	e.entry_timeout = f->opts.timeout;
	if (fuse_reply_entry(req, &e) != 0)
		pw__node_forget(&f->tab, n, 1);
}

static void
reply_attr(fuse_req_t req, const struct stat *st)
{
	fuse_reply_attr(req, st, server(req)->opts.timeout);
}

/* ------------------------------------------------------- path helpers */

static void
tree_read(struct pw_fuse *f)
{
	pthread_rwlock_rdlock(&f->tab.tree_lock);
}

static void
tree_write(struct pw_fuse *f)
{
	pthread_rwlock_wrlock(&f->tab.tree_lock);
}

static void
tree_unlock(struct pw_fuse *f)
{
	pthread_rwlock_unlock(&f->tab.tree_lock);
}

/* pw_ calls return -1 and errno; the server works in -errno. */
static int
neg(int r)
{
	return r < 0 ? -errno : r;
}

/* Stat a child and count the kernel's lookup of it; tree_lock held. */
static int
lookup_locked(struct pw_fuse *f, struct fnode *dir, const char *name,
              const char *path, struct stat *st, struct fnode **res)
{
	int err = pw__fuse_lstat(path, st);
	return err ? err : pw__node_lookup(&f->tab, dir, name, st, res);
}

/* ------------------------------------------------------------- lookups */

static void
op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct pw_fuse *f = server(req);
	struct fnode *dir = pw__node_of(&f->tab, parent), *n = NULL;
	char path[PATH_MAX];
	struct stat st;
	tree_read(f);
	int err = pw__node_child_path(&f->tab, dir, name, path, sizeof(path));
	if (!err)
		err = lookup_locked(f, dir, name, path, &st, &n);
	tree_unlock(f);
	if (err)
		reply_errno(req, err);
	else
		reply_entry(req, n, &st);
}

static void
op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct pw_fuse *f = server(req);
	pw__node_forget(&f->tab, pw__node_of(&f->tab, ino), nlookup);
	fuse_reply_none(req);
}

static void
op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	struct pw_fuse *f = server(req);
	for (size_t k = 0; k < count; k++)
		pw__node_forget(&f->tab, pw__node_of(&f->tab, forgets[k].ino),
		                forgets[k].nlookup);
	fuse_reply_none(req);
}

/*
 * Call fn on node n: by its path, or, once it is unlinked, with path NULL
 * and the descriptor of one of its open handles.  The kernel keeps an
 * open, unlinked file's inode and asks about it by number alone (fstat,
 * fchmod, futimens, fsetxattr...): the path is gone, the file is not.
 */
struct node_call {
	int (*fn)(const char *path, int fd, void *arg);
	void *arg;
};

static int
node_call_fd(int fd, void *arg)
{
	struct node_call *c = arg;
	return c->fn(NULL, fd, c->arg);
}

static int
node_call(struct pw_fuse *f, struct fnode *n, int (*fn)(const char *path, int fd, void *arg),
          void *arg)
{
	char path[PATH_MAX];
	tree_read(f);
	int err = pw__node_path(&f->tab, n, path, sizeof(path));
	if (!err)
		err = fn(path, -1, arg);
	else if (err == -ENOENT)
		err = pw__node_call_open(&f->tab, n, node_call_fd,
		                         &(struct node_call){.fn = fn, .arg = arg});
	tree_unlock(f);
	return err;
}

static int
stat_at(const char *path, int fd, void *st)
{
	return path ? pw__fuse_lstat(path, st) : neg(pw_fstat(fd, st));
}

static int
stat_node(struct pw_fuse *f, struct fnode *n, struct stat *st)
{
	return node_call(f, n, stat_at, st);
}

static void
op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct pw_fuse *f = server(req);
	struct fhandle *h = attr_handle(f, ino, fi);
	struct stat st;
	int err = h ? neg(pw_fstat(h->fd, &st)) : stat_node(f, pw__node_of(&f->tab, ino), &st);
	if (err)
		reply_errno(req, err);
	else
		reply_attr(req, &st);
}

/* Size through the descriptor when there is one (ftruncate), else by path;
 * the rest goes to attrs.c.  pagewright's truncate sets mtime and ctime
 * itself, so the times the kernel sends along with a size are done. */
struct setattr_req {
	const struct stat *attr;
	int to_set;
};

static int
setattr_at(const char *path, int fd, void *arg)
{
	const struct setattr_req *r = arg;
	int to_set = r->to_set, err = 0;
	if (to_set & FUSE_SET_ATTR_SIZE) {
		err = path ? neg(pw_truncate(path, r->attr->st_size))
		           : neg(pw_ftruncate(fd, r->attr->st_size));
		to_set &= ~(FUSE_SET_ATTR_SIZE | FUSE_SET_ATTR_MTIME |
		            FUSE_SET_ATTR_MTIME_NOW);
	}
	to_set &= ~FUSE_SET_ATTR_CTIME;
	if (!err && to_set)
		err = pw__fuse_setattr(path, path ? -1 : fd, r->attr, to_set);
	return err;
}

static void
op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
           struct fuse_file_info *fi)
{
	struct pw_fuse *f = server(req);
	struct fnode *n = pw__node_of(&f->tab, ino);
	struct fhandle *h = attr_handle(f, ino, fi);
	struct setattr_req r = {.attr = attr, .to_set = to_set};
	struct stat st;
	int err = h ? setattr_at(NULL, h->fd, &r) : node_call(f, n, setattr_at, &r);
	if (!err)
		err = h ? neg(pw_fstat(h->fd, &st)) : stat_node(f, n, &st);
	if (err)
		reply_errno(req, err);
	else
		reply_attr(req, &st);
}

/* ----------------------------------------------------------- open files */

/* With the writeback cache the kernel reads pages in to complete partial
 * writes, through whatever descriptor it has: write-only files are opened
 * read-write. */
static int
open_flags(struct pw_fuse *f, int flags)
{
	flags &= OPEN_FLAGS;
	if (f->opts.cache == PW_FUSE_CACHE_WRITEBACK && (flags & O_ACCMODE) == O_WRONLY)
		flags = (flags & ~O_ACCMODE) | O_RDWR;
	return flags;
}

static void
set_open_mode(struct pw_fuse *f, struct fuse_file_info *fi, struct fhandle *h)
{
	fi->fh = (uintptr_t)h;
	fi->direct_io = f->opts.cache == PW_FUSE_CACHE_DIRECT;
	fi->keep_cache = f->opts.cache == PW_FUSE_CACHE_WRITEBACK;
}

static void
handle_drop(struct pw_fuse *f, struct fhandle *h)
{
	pw__handle_remove(&f->tab, h);
	pw_close(h->fd);
	free(h);
}

/* An unlinked file is opened again through /proc/PID/fd/N. */
static int
open_at(const char *path, int fd, void *flags)
{
	return path ? neg(pw_open(path, *(int *)flags)) : neg(pw_reopen(fd, *(int *)flags));
}

static void
op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct pw_fuse *f = server(req);
	struct fnode *n = pw__node_of(&f->tab, ino);
	int flags = open_flags(f, fi->flags);
	int fd = node_call(f, n, open_at, &flags);
	if (fd < 0) {
		reply_errno(req, fd);
		return;
	}
	struct fhandle *h = pw__handle_add(&f->tab, n, fd);
	if (!h) {
		pw_close(fd);
		reply_errno(req, -ENOMEM);
		return;
	}
	set_open_mode(f, fi, h);
	if (fuse_reply_open(req, fi) != 0)
		handle_drop(f, h);
}

static int
create_locked(fuse_req_t req, struct fnode *dir, const char *name, mode_t mode,
              int flags, struct stat *st, struct fnode **res)
{
	struct pw_fuse *f = server(req);
	char path[PATH_MAX];
	int err = pw__node_child_path(&f->tab, dir, name, path, sizeof(path));
	if (err)
		return err;
	int fd = neg(pw_open(path, open_flags(f, flags) | (flags & O_EXCL) | O_CREAT, mode));
	if (fd < 0)
		return fd;
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	err = neg(pw_fstat(fd, st));
	if (!err && pw__fuse_chown_new(path, fd, ctx->uid, ctx->gid, st) < 0)
		err = neg(pw_fstat(fd, st));
	if (!err)
		err = pw__node_lookup(&f->tab, dir, name, st, res);
	if (err) {
		pw_close(fd);
		return err;
	}
	return fd;
}

static void
op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
          struct fuse_file_info *fi)
{
	struct pw_fuse *f = server(req);
	struct fnode *dir = pw__node_of(&f->tab, parent), *n = NULL;
	struct stat st;
	tree_read(f);
	int fd = create_locked(req, dir, name, mode, fi->flags, &st, &n);
	tree_unlock(f);
	if (fd < 0) {
		reply_errno(req, fd);
		return;
	}
	COUNT(f, creates, 1);
	struct fhandle *h = pw__handle_add(&f->tab, n, fd);
	if (!h) {
		pw_close(fd);
		pw__node_forget(&f->tab, n, 1);
		reply_errno(req, -ENOMEM);
		return;
	}
	set_open_mode(f, fi, h);
	struct fuse_entry_param e;
	memset(&e, 0, sizeof(e));
	e.ino = pw__node_ino(&f->tab, n);
	e.generation = n->generation;
	e.attr = st;
	e.attr_timeout = f->opts.timeout;
	e.entry_timeout = f->opts.timeout;
	if (fuse_reply_create(req, &e, fi) != 0) {
		handle_drop(f, h);
		pw__node_forget(&f->tab, n, 1);
	}
}

/* Each request thread keeps its read buffer: a fresh 1 MiB malloc per
 * READ is a fresh mapping whose every page faults on first touch (dear on
 * virtual machines).  Freed when the thread ends. */
static pthread_key_t rbuf_key, span_key, bvec_key;
static pthread_once_t rbuf_once = PTHREAD_ONCE_INIT;
static __thread char *rbuf;
static __thread size_t rbuf_size;

static void
rbuf_key_init(void)
{
	pthread_key_create(&rbuf_key, free);
	pthread_key_create(&span_key, free);
	pthread_key_create(&bvec_key, free);
}

static char *
read_buffer(size_t size)
{
	if (size <= rbuf_size)
		return rbuf;
	char *b = realloc(rbuf, size);
	if (!b)
		return NULL;
	pthread_once(&rbuf_once, rbuf_key_init);
	pthread_setspecific(rbuf_key, b);
	rbuf = b;
	rbuf_size = size;
	return b;
}

/*
 * Large reads are answered without a copy: pw_pread_pin pins the cached
 * pages and describes them as spans of pagewright's pool file, and
 * fuse_reply_data splices them from there through a pipe into the
 * kernel's request (FUSE_CAP_SPLICE_WRITE).  The bytes never pass through
 * a user address, which matters most for a fresh server: the first access
 * to each page of its pool from user space is dear on the development
 * VMs (docs/fuse.md, "Cold reads").  libfuse copies into a fresh buffer
 * when its pipe cannot hold a reply, so pipe_capacity measures once what
 * pipe the server can have and READs are limited (max_read) to fit; a
 * reply with more spans than that allows is copied here instead.
 */
#define SPLICE_MIN (32 * 1024)
#define MAX_SPANS (MAX_READ / 4096 + 2)

/* The calling thread's span array for pw_pread_pin (freed at its exit);
 * NULL if out of memory. */
static struct pw_span *
thread_spans(void)
{
	static __thread struct pw_span *spans;
	if (!spans && (spans = malloc(MAX_SPANS * sizeof(*spans)))) {
		pthread_once(&rbuf_once, rbuf_key_init);
		pthread_setspecific(span_key, spans);
	}
	return spans;
}

/* Pin the pages of a READ (pw_pread_pin into spans); on failure reply
 * with the error.  Return: the bytes pinned (0 at end of file), or -1
 * when the request is answered. */
static ssize_t
pin_read(fuse_req_t req, int fd, size_t size, off_t off, struct pw_span *spans, int *ns,
         struct pw_pin **pin)
{
	ssize_t n = pw_pread_pin(fd, size, off, spans, MAX_SPANS, ns, pin);
	if (n < 0)
		reply_errno(req, -errno);
	return n;
}

static bool
read_spliced(fuse_req_t req, struct pw_fuse *f, int fd, size_t size, off_t off)
{
	static __thread struct fuse_bufvec *bv;
	struct pw_span *spans = thread_spans();
	if (!spans)
		return false;
	if (!bv) {
		if (!(bv = malloc(sizeof(*bv) + MAX_SPANS * sizeof(bv->buf[0]))))
			return false;
		pthread_once(&rbuf_once, rbuf_key_init);
		pthread_setspecific(bvec_key, bv);
	}
	int ns;
	struct pw_pin *pin;
	ssize_t n = pin_read(req, fd, size, off, spans, &ns, &pin);
	if (n < 0)
		return true;
	if (n == 0) {
		COUNT(f, reads, 1);
		fuse_reply_buf(req, NULL, 0);
		return true;
	}
	/* libfuse's estimate of the pipe it needs (see pipe_capacity): beyond
	 * it, it would copy into a fresh buffer, dearer than our copy. */
	if (4096 * ((size_t)ns + 3) + 16 + (size_t)n > f->pipe_cap) {
		pw_unpin(pin);
		return false;
	}
	COUNT(f, reads, 1);
	COUNT(f, read_bytes, (uint64_t)n);
	bv->count = (size_t)ns;
	bv->idx = 0;
	bv->off = 0;
	for (int k = 0; k < ns; k++)
		bv->buf[k] = (struct fuse_buf){
		    .size = spans[k].len,
		    .flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK,
		    .fd = f->pool_fd,
		    .pos = spans[k].off,
		};
	fuse_reply_data(req, bv, 0);
	pw_unpin(pin);
	return true;
}

/*
 * A large READ from a ring (uring.c): the reply is built in the ring
 * entry's buffer.  The bytes are copied there by the kernel, pread(2) of
 * the pool file over the pinned spans, not by a user-space copy: that
 * would be the first user access to freshly filled pool pages, the dear
 * case above (measured: 290-340 MB/s cold against 550-730 through
 * /dev/fuse with splice).  Returns false to take the ordinary path.
 */
static bool
read_ring(fuse_req_t req, struct pw_fuse *f, int fd, char *buf, size_t size, off_t off)
{
	struct pw_span *spans = thread_spans();
	if (!spans)
		return false;
	int ns;
	struct pw_pin *pin;
	if (pin_read(req, fd, size, off, spans, &ns, &pin) < 0)
		return true;
	size_t got = 0;
	for (int k = 0; k < ns; k++) {
		ssize_t r = pread(f->pool_fd, buf + got, spans[k].len, spans[k].off);
		if (r != (ssize_t)spans[k].len) {
			pw_unpin(pin);
			reply_errno(req, -EIO);
			return true;
		}
		got += (size_t)r;
	}
	pw_unpin(pin);
	COUNT(f, reads, 1);
	COUNT(f, read_bytes, (uint64_t)got);
	fuse_reply_buf(req, buf, got);
	return true;
}

/*
 * With the kernel's page cache in front (cache=writeback or cache=kernel)
 * a READ is the kernel filling its own pages: keeping the bytes in
 * pagewright's cache too costs a copy into the pool and the memory of a
 * second copy that the kernel will not ask for again while it has its
 * own.  So READs go to pw_pread_nocache, straight from the image into
 * the ring entry or the reply buffer (pages pagewright has cached, dirty
 * ones included, are copied from it).  Measured in cache=writeback, cold
 * 64 MiB file, alternated with the cached (pinned, spliced) reads, 2-4
 * pairs each: over io_uring, mapped 820-894 against 547-613 MB/s, 1 MiB
 * reads 1.1-1.2 GB/s against 640-876 MB/s, random 4 KiB 27.7-29.7k
 * against 25.1-25.8k calls/s; over /dev/fuse, mapped 730-927 against
 * 632-796, 1 MiB 1.2-1.3 GB/s against 667-710 MB/s, random 25.8-27.1k
 * against 21.2-21.9k.
 * PAGEWRIGHT_FUSE_NOCACHE=0 in the server's environment goes back to
 * caching reads.
 */
static void
op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
        struct fuse_file_info *fi)
{
	(void)ino;
	struct pw_fuse *f = server(req);
	int fd = handle(fi)->fd;
	/* From a ring (uring.c): read into the reply's own buffer. */
	char *buf = pw__uring_reply_buffer(size);
	if (!f->read_nocache) {
		if (buf && f->pool_fd >= 0 && size >= SPLICE_MIN && size <= MAX_READ &&
		    read_ring(req, f, fd, buf, size, off))
			return;
		if (!buf && f->splice_reads && size >= SPLICE_MIN && size <= f->max_read &&
		    read_spliced(req, f, fd, size, off))
			return;
	}
	if (!buf)
		buf = read_buffer(size);
	if (!buf) {
		reply_errno(req, -ENOMEM);
		return;
	}
	ssize_t n = f->read_nocache ? pw_pread_nocache(fd, buf, size, off)
	                            : pw_pread(fd, buf, size, off);
	if (n < 0) {
		reply_errno(req, -errno);
	} else {
		COUNT(f, reads, 1);
		COUNT(f, read_bytes, (uint64_t)n);
		fuse_reply_buf(req, buf, (size_t)n);
	}
}

static void
op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
         struct fuse_file_info *fi)
{
	(void)ino;
	struct pw_fuse *f = server(req);
	ssize_t n = pw_pwrite(handle(fi)->fd, buf, size, off);
	if (n < 0) {
		reply_errno(req, -errno);
	} else {
		COUNT(f, writes, 1);
		COUNT(f, write_bytes, (uint64_t)n);
		fuse_reply_write(req, (size_t)n);
	}
}

static void
op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	handle_drop(server(req), handle(fi));
	fuse_reply_err(req, 0);
}

static void
op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	int fd = handle(fi)->fd;
	COUNT(server(req), fsyncs, 1);
	reply_errno(req, neg(datasync ? pw_fdatasync(fd) : pw_fsync(fd)));
}

/* ---------------------------------------------------------- directories */

/* Append one entry to d's arrays. */
static int
dir_add(struct dhandle *d, size_t *cap, size_t *nlen, size_t *ncap, const struct dirent *de)
{
	size_t len = strlen(de->d_name) + 1;
	if (d->nr == *cap) {
		size_t n = *cap ? *cap * 2 : 64;
		struct dent *e = realloc(d->ents, n * sizeof(*e));
		if (!e)
			return -ENOMEM;
		d->ents = e;
		*cap = n;
	}
	if (*nlen + len > *ncap) {
		size_t n = (*ncap + len) * 2;
		char *names = realloc(d->names, n);
		if (!names)
			return -ENOMEM;
		d->names = names;
		*ncap = n;
	}
	d->ents[d->nr++] = (struct dent){.ino = de->d_ino, .type = de->d_type, .name = *nlen};
	memcpy(d->names + *nlen, de->d_name, len);
	*nlen += len;
	return 0;
}

/* (Re)take d's snapshot; tree_lock held. */
static int
dir_snapshot_locked(struct pw_fuse *f, struct dhandle *d)
{
	char path[PATH_MAX];
	int err = pw__node_path(&f->tab, d->node, path, sizeof(path));
	if (err)
		return err;
	PW_DIR *dir = pw_opendir(path);
	if (!dir)
		return -errno;
	free(d->ents);
	free(d->names);
	d->ents = NULL;
	d->names = NULL;
	d->nr = 0;
	d->served = false;
	size_t cap = 0, nlen = 0, ncap = 0;
	for (struct dirent *de; !err && (de = pw_readdir(dir)) != NULL;)
		err = dir_add(d, &cap, &nlen, &ncap, de);
	pw_closedir(dir);
	if (err)
		d->nr = 0;
	return err;
}

static void
dhandle_free(struct dhandle *d)
{
	pthread_mutex_destroy(&d->lock);
	free(d->ents);
	free(d->names);
	free(d);
}

static void
op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct pw_fuse *f = server(req);
	struct dhandle *d = calloc(1, sizeof(*d));
	if (!d) {
		reply_errno(req, -ENOMEM);
		return;
	}
	pthread_mutex_init(&d->lock, NULL);
	d->node = pw__node_of(&f->tab, ino);
	tree_read(f);
	int err = dir_snapshot_locked(f, d);
	tree_unlock(f);
	if (err) {
		dhandle_free(d);
		reply_errno(req, err);
		return;
	}
	fi->fh = (uintptr_t)d;
	if (fuse_reply_open(req, fi) != 0)
		dhandle_free(d);
}

/* Offsets are snapshot index + 1.  Offset 0 after the snapshot has been
 * read from means rewinddir, which must see the directory as it is now. */
static void
op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
           struct fuse_file_info *fi)
{
	(void)ino;
	struct pw_fuse *f = server(req);
	struct dhandle *d = (struct dhandle *)(uintptr_t)fi->fh;
	char *buf = malloc(size ? size : 1);
	if (!buf) {
		reply_errno(req, -ENOMEM);
		return;
	}
	pthread_mutex_lock(&d->lock);
	int err = 0;
	if (off == 0 && d->served) {
		tree_read(f);
		err = dir_snapshot_locked(f, d);
		tree_unlock(f);
	}
	d->served = true;
	size_t used = 0;
	for (size_t k = off > 0 ? (size_t)off : 0; !err && k < d->nr; k++) {
		struct stat st;
		memset(&st, 0, sizeof(st));
		st.st_ino = d->ents[k].ino;
		st.st_mode = (mode_t)d->ents[k].type << 12;
		size_t len = fuse_add_direntry(req, buf + used, size - used,
		                               d->names + d->ents[k].name, &st, (off_t)k + 1);
		if (len > size - used)
			break;
		used += len;
	}
	pthread_mutex_unlock(&d->lock);
	if (err)
		reply_errno(req, err);
	else
		fuse_reply_buf(req, buf, used);
	free(buf);
}

static void
op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	dhandle_free((struct dhandle *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

static void
op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)fi;
	struct pw_fuse *f = server(req);
	char path[PATH_MAX];
	tree_read(f);
	int fd = pw__node_path(&f->tab, pw__node_of(&f->tab, ino), path, sizeof(path));
	if (fd == 0)
		fd = neg(pw_open(path, O_RDONLY | O_DIRECTORY));
	tree_unlock(f);
	int err = fd;
	COUNT(f, fsyncs, 1);
	if (fd >= 0) {
		err = neg(datasync ? pw_fdatasync(fd) : pw_fsync(fd));
		pw_close(fd);
	}
	reply_errno(req, err);
}

/* ------------------------------------------------------------ namespace */

static void
op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct pw_fuse *f = server(req);
	struct fnode *dir = pw__node_of(&f->tab, parent), *n = NULL;
	char path[PATH_MAX];
	struct stat st;
	tree_read(f);
	int err = pw__node_child_path(&f->tab, dir, name, path, sizeof(path));
	if (!err)
		err = neg(pw_mkdir(path, mode));
	if (!err) {
		COUNT(f, creates, 1);
		const struct fuse_ctx *ctx = fuse_req_ctx(req);
		err = pw__fuse_lstat(path, &st);
		if (!err && pw__fuse_chown_new(path, -1, ctx->uid, ctx->gid, &st) < 0)
			err = pw__fuse_lstat(path, &st);
		if (!err)
			err = pw__node_lookup(&f->tab, dir, name, &st, &n);
	}
	tree_unlock(f);
	if (err)
		reply_errno(req, err);
	else
		reply_entry(req, n, &st);
}

/* Regular files through pw_open; the other types wait for pw_mknod. */
static void
op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	struct pw_fuse *f = server(req);
	struct fnode *dir = pw__node_of(&f->tab, parent), *n = NULL;
	char path[PATH_MAX];
	struct stat st;
	tree_read(f);
	int err = pw__node_child_path(&f->tab, dir, name, path, sizeof(path));
	if (!err && S_ISREG(mode)) {
		int fd = neg(pw_open(path, O_CREAT | O_EXCL | O_WRONLY, mode & 07777));
		err = fd < 0 ? fd : neg(pw_close(fd));
		if (!err)
			COUNT(f, creates, 1);
	} else if (!err) {
		err = pw__fuse_mknod(path, mode, rdev);
	}
	if (!err)
		err = lookup_locked(f, dir, name, path, &st, &n);
	tree_unlock(f);
	if (err)
		reply_errno(req, err);
	else
		reply_entry(req, n, &st);
}

static void
remove_entry(fuse_req_t req, fuse_ino_t parent, const char *name, bool rmdir)
{
	struct pw_fuse *f = server(req);
	struct fnode *dir = pw__node_of(&f->tab, parent);
	char path[PATH_MAX];
	struct stat st;
	tree_write(f);
	int err = pw__node_child_path(&f->tab, dir, name, path, sizeof(path));
	if (!err)
		err = pw__fuse_lstat(path, &st);
	if (!err)
		err = neg(rmdir ? pw_rmdir(path) : pw_unlink(path));
	if (!err)
		pw__node_removed(&f->tab, dir, name, &st);
	tree_unlock(f);
	reply_errno(req, err);
}

static void
op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_entry(req, parent, name, false);
}

static void
op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_entry(req, parent, name, true);
}

/* Every change to the tree comes through this server under tree_write,
 * so RENAME_NOREPLACE is a check of the target and the rename inside one
 * hold of it: no request can create the target in between. */
static int
rename_locked(struct pw_fuse *f, struct fnode *odir, const char *oname,
              struct fnode *ndir, const char *nname, bool noreplace)
{
	char opath[PATH_MAX], npath[PATH_MAX];
	struct stat ost, nst;
	int err = pw__node_child_path(&f->tab, odir, oname, opath, sizeof(opath));
	if (!err)
		err = pw__node_child_path(&f->tab, ndir, nname, npath, sizeof(npath));
	if (!err)
		err = pw__fuse_lstat(opath, &ost);
	if (err)
		return err;
	bool replaces = pw__fuse_lstat(npath, &nst) == 0;
	if (replaces && noreplace)
		return -EEXIST;
	if (replaces && nst.st_dev == ost.st_dev && nst.st_ino == ost.st_ino)
		return neg(pw_rename(opath, npath)); /* two links of one file */
	if ((err = neg(pw_rename(opath, npath))))
		return err;
	if (replaces)
		pw__node_removed(&f->tab, ndir, nname, &nst);
	return pw__node_renamed(&f->tab, odir, oname, ndir, nname, &ost);
}

static void
op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
          const char *newname, unsigned int flags)
{
	struct pw_fuse *f = server(req);
	if (flags & ~(unsigned)RENAME_NOREPLACE) {
		/* RENAME_EXCHANGE (and anything newer): EINVAL, as the kernel's
		 * ext2 answers; swapping two entries would need the
		 * filesystems' help to be atomic. */
		reply_errno(req, -EINVAL);
		return;
	}
	tree_write(f);
	int err = rename_locked(f, pw__node_of(&f->tab, parent), name,
	                        pw__node_of(&f->tab, newparent), newname,
	                        flags & RENAME_NOREPLACE);
	tree_unlock(f);
	reply_errno(req, err);
}

/* ------------------------------------------- operations attrs.c answers */

static void
op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct pw_fuse *f = server(req);
	char path[PATH_MAX], target[PATH_MAX];
	tree_read(f);
	int err = pw__node_path(&f->tab, pw__node_of(&f->tab, ino), path, sizeof(path));
	if (!err)
		err = pw__fuse_readlink(path, target, sizeof(target));
	tree_unlock(f);
	if (err)
		reply_errno(req, err);
	else
		fuse_reply_readlink(req, target);
}

/*
 * Extended attributes, onto pw_l*xattr of the node's path.  size 0 asks
 * for the length only (fuse_reply_xattr); otherwise the bytes, or ERANGE.
 * Filesystems without them answer ENOTSUP, which the kernel passes on.
 */
static void
xattr_reply(fuse_req_t req, ssize_t n, const char *buf, size_t size)
{
	if (n < 0)
		reply_errno(req, (int)n);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
}

struct xattr_req {
	const char *name;   /* NULL: list them */
	const void *value;  /* set; NULL: remove */
	void *buf;
	size_t size;
	int flags;
	ssize_t n;          /* what a get or list returned */
};

static int
xattr_get_at(const char *path, int fd, void *arg)
{
	struct xattr_req *x = arg;
	x->n = x->name ? pw__fuse_getxattr(path, fd, x->name, x->buf, x->size)
	               : pw__fuse_listxattr(path, fd, x->buf, x->size);
	return x->n < 0 ? (int)x->n : 0;
}

static int
xattr_set_at(const char *path, int fd, void *arg)
{
	struct xattr_req *x = arg;
	return pw__fuse_setxattr(path, fd, x->name, x->value, x->size, x->flags);
}

static void
xattr_read(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct pw_fuse *f = server(req);
	struct xattr_req x = {.name = name, .size = size, .buf = size ? malloc(size) : NULL};
	if (size && !x.buf) {
		reply_errno(req, -ENOMEM);
		return;
	}
	int err = node_call(f, pw__node_of(&f->tab, ino), xattr_get_at, &x);
	xattr_reply(req, err ? err : x.n, x.buf, size);
	free(x.buf);
}

static void
op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	xattr_read(req, ino, name, size);
}

static void
op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	xattr_read(req, ino, NULL, size);
}

static void
op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
            size_t size, int flags)
{
	struct pw_fuse *f = server(req);
	struct xattr_req x = {.name = name, .value = value, .size = size, .flags = flags};
	reply_errno(req, node_call(f, pw__node_of(&f->tab, ino), xattr_set_at, &x));
}

static void
op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct pw_fuse *f = server(req);
	struct xattr_req x = {.name = name};
	reply_errno(req, node_call(f, pw__node_of(&f->tab, ino), xattr_set_at, &x));
}

static void
op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	struct pw_fuse *f = server(req);
	struct fnode *dir = pw__node_of(&f->tab, parent), *n = NULL;
	char path[PATH_MAX];
	struct stat st;
	tree_read(f);
	int err = pw__node_child_path(&f->tab, dir, name, path, sizeof(path));
	if (!err)
		err = pw__fuse_symlink(link, path);
	if (!err)
		err = lookup_locked(f, dir, name, path, &st, &n);
	tree_unlock(f);
	if (err)
		reply_errno(req, err);
	else
		reply_entry(req, n, &st);
}

static void
op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct pw_fuse *f = server(req);
	struct fnode *dir = pw__node_of(&f->tab, newparent), *n = NULL;
	char opath[PATH_MAX], npath[PATH_MAX];
	struct stat st;
	tree_read(f);
	int err = pw__node_path(&f->tab, pw__node_of(&f->tab, ino), opath, sizeof(opath));
	if (!err)
		err = pw__node_child_path(&f->tab, dir, newname, npath, sizeof(npath));
	if (!err)
		err = pw__fuse_link(opath, npath);
	if (!err)
		err = lookup_locked(f, dir, newname, npath, &st, &n);
	tree_unlock(f);
	if (err)
		reply_errno(req, err);
	else
		reply_entry(req, n, &st);
}

static void
op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	(void)ino;
	struct pw_fuse *f = server(req);
	struct statvfs st;
	int err = pw__fuse_statvfs(f->tab.root_path, &st);
	if (err)
		reply_errno(req, err);
	else
		fuse_reply_statfs(req, &st);
}

/* ------------------------------------------------------------- session */

/*
 * How large a pipe libfuse can make for a spliced reply: it needs the
 * reply, its header and a page per span, rounded up to a power of two
 * pages, 2 MiB for a 1 MiB READ.  Above fs.pipe-max-size (1 MiB by
 * default) only CAP_SYS_RESOURCE may go, so try it on a pipe of our own.
 * READs are then limited (max_read) to what fits.  0: no pipes at all.
 */
static size_t
pipe_capacity(void)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) != 0)
		return 0;
	int got = fcntl(p[0], F_SETPIPE_SZ, 2 * MAX_READ);
	if (got < 0) {
		FILE *fp = fopen("/proc/sys/fs/pipe-max-size", "r");
		unsigned long max = 0;
		if (fp) {
			if (fscanf(fp, "%lu", &max) != 1)
				max = 0;
			fclose(fp);
		}
		got = max <= 2 * MAX_READ ? fcntl(p[0], F_SETPIPE_SZ, (int)max) : -1;
	}
	close(p[0]);
	close(p[1]);
	return got > 0 ? (size_t)got : 0;
}

static void
op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct pw_fuse *f = userdata;
	/* pagewright does not clear set-user-ID bits on write; the kernel
	 * does it for us when this is off. */
	conn->want &= ~(unsigned)FUSE_CAP_HANDLE_KILLPRIV;
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
	if (f->opts.cache == PW_FUSE_CACHE_WRITEBACK) {
		/* Every change comes through this mount, so the kernel's copy
		 * stays right without being dropped on mtime changes. */
		if (conn->capable & FUSE_CAP_WRITEBACK_CACHE)
			conn->want |= FUSE_CAP_WRITEBACK_CACHE;
		conn->want &= ~(unsigned)FUSE_CAP_AUTO_INVAL_DATA;
		conn->max_background = 64;
		conn->congestion_threshold = 48;
	}
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	/* Lookups and readdirs of one directory may run in parallel: the
	 * tree lock, not the kernel's directory lock, keeps paths right. */
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	conn->max_write = MAX_READ;
	if (f->max_read && f->max_read < MAX_READ)
		conn->max_read = (unsigned)f->max_read;   /* as the mount option says */
	conn->time_gran = 1;
	if ((conn->capable & FUSE_CAP_SPLICE_WRITE) && f->pool_fd >= 0 && f->max_read) {
		conn->want |= FUSE_CAP_SPLICE_WRITE;
		f->splice_reads = true;
	}
#ifdef FUSE_CAP_DIRECT_IO_ALLOW_MMAP
	if (f->opts.cache == PW_FUSE_CACHE_DIRECT &&
	    (conn->capable & FUSE_CAP_DIRECT_IO_ALLOW_MMAP)) {
		conn->want |= FUSE_CAP_DIRECT_IO_ALLOW_MMAP;
		f->io.granted = true;
	}
#endif
}

static const struct fuse_lowlevel_ops ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readlink = op_readlink,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.symlink = op_symlink,
	.rename = op_rename,
	.link = op_link,
	.open = op_open,
	.read = op_read,
	.write = op_write,
	/* No .flush: close(2) does not write back on a local filesystem
	 * either (fsync does, and pw_umount at the end).  libfuse answers the
	 * first FLUSH with ENOSYS and the kernel sends no more, which saves a
	 * round trip on every close. */
	.release = op_release,
	.fsync = op_fsync,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.releasedir = op_releasedir,
	.fsyncdir = op_fsyncdir,
	.statfs = op_statfs,
	.create = op_create,
	.setxattr = op_setxattr,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.removexattr = op_removexattr,
};

/*
 * Signals.  libfuse's own handlers end the session at once, and then the
 * kernel can no longer send the dirty pages it holds (those of shared
 * mappings, and with cache=writeback every written page): they would be
 * lost.  So SIGINT, SIGTERM and SIGHUP wake a thread that first has the
 * kernel write them (syncfs(2) of the mount, served by the request
 * threads as any write), then unmounts, which ends the session as
 * `fusermount3 -u` does.  A second signal ends the session at once, as
 * libfuse's handler would.
 */
static int sig_pipe[2] = {-1, -1};
static _Atomic int sig_count;
static struct fuse_session *sig_session;
static pthread_t loop_thread;  /* the thread in fuse_session_loop_mt */

static void
on_signal(int sig)
{
	if (atomic_fetch_add(&sig_count, 1) > 0) {
		fuse_session_exit(sig_session);
		return;
	}
	char c = (char)sig;
	ssize_t w = write(sig_pipe[1], &c, 1);
	(void)w;
}

/* The paths, relative to the mount point, of the files open now (NULL
 * when unlinked or out of memory); *n of them. */
static char **
open_files(struct pw_fuse *f, size_t *n)
{
	char path[PATH_MAX];
	size_t cap = 0, rlen = strlen(f->tab.root_path);
	char **v = NULL;
	*n = 0;
	tree_read(f);
	pthread_mutex_lock(&f->tab.tab_lock);
	for (struct fhandle *h = f->tab.handles; h; h = h->all_next) {
		if (*n == cap) {
			char **nv = realloc(v, (cap = cap * 2 + 16) * sizeof(*v));
			if (!nv)
				break;
			v = nv;
		}
		bool ok = pw__node_path(&f->tab, h->node, path, sizeof(path)) == 0 &&
		          strlen(path) > rlen;
		v[(*n)++] = ok ? strdup(path + rlen + (rlen > 1)) : NULL;
	}
	pthread_mutex_unlock(&f->tab.tab_lock);
	tree_unlock(f);
	return v;
}

/*
 * Have the kernel send the dirty pages it holds, and wait until they are
 * here.  syncfs(2) writes them back, but FUSE ends a page's writeback as
 * soon as its WRITE is queued, so syncfs can return before a single WRITE
 * has reached us; fsync(2) of a file waits for its queued WRITEs, so each
 * open file gets one too.  Requests go through the kernel and come back to
 * the request threads, which are still serving.
 */
static void
kernel_writeback(struct pw_fuse *f)
{
	int dfd = open(f->opts.mountpoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct statfs sfs;
	/* Not if the mount is gone already: that would sync the host's. */
	if (dfd < 0 || fstatfs(dfd, &sfs) != 0 || sfs.f_type != FUSE_SUPER_MAGIC) {
		if (dfd >= 0)
			close(dfd);
		return;
	}
	syncfs(dfd);
	size_t n;
	char **paths = open_files(f, &n);
	for (size_t k = 0; k < n; k++) {
		int fd = paths[k] ? openat(dfd, paths[k], O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
		                                          O_CLOEXEC) : -1;
		if (fd >= 0) {
			fsync(fd);
			close(fd);
		}
		free(paths[k]);
	}
	free(paths);
	close(dfd);
}

void
pw_fuse_kernel_writeback(struct pw_fuse *f)
{
	kernel_writeback(f);
}

/* Waits for the first signal (a byte), or for pw_fuse_run's 0 byte. */
static void *
ender_thread(void *arg)
{
	struct pw_fuse *f = arg;
	char c = 0;
	while (read(sig_pipe[0], &c, 1) < 0 && errno == EINTR)
		;
	if (c == 0)
		return NULL;
	kernel_writeback(f);
	fuse_session_exit(f->se);
	fuse_session_unmount(f->se);
	/* The loop waits in sem_wait for a request thread to end, which a busy
	 * mount never makes happen; a signal there lets it see the exit flag
	 * and stop the request threads itself (the handler only counts). */
	pthread_kill(loop_thread, SIGHUP);
	return NULL;
}

static int
set_handlers(void (*fn)(int))
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = fn;
	sigemptyset(&sa.sa_mask);
	int sigs[] = {SIGINT, SIGTERM, SIGHUP};
	for (unsigned k = 0; k < sizeof(sigs) / sizeof(sigs[0]); k++)
		if (sigaction(sigs[k], &sa, NULL) != 0)
			return -errno;
	return 0;
}

static int
signals_install(void)
{
	if (sig_pipe[0] < 0 && pipe2(sig_pipe, O_CLOEXEC) != 0)
		return -errno;
	signal(SIGPIPE, SIG_IGN);
	return set_handlers(on_signal);
}

static void
signals_remove(void)
{
	set_handlers(SIG_DFL);
}

/* fuse_opt splits on commas; a backslash escapes one. */
static void
append_escaped(char *buf, size_t size, const char *s)
{
	size_t len = strlen(buf);
	for (; *s && len + 2 < size; s++) {
		if (*s == ',' || *s == '\\')
			buf[len++] = '\\';
		buf[len++] = *s;
	}
	buf[len] = 0;
}

static void
mount_options(const struct pw_fuse_opts *o, size_t max_read, char *buf, size_t size)
{
	char mr[40] = "";
	if (max_read && max_read < MAX_READ)
		snprintf(mr, sizeof(mr), ",max_read=%zu", max_read);
	snprintf(buf, size, "default_permissions%s%s%s,subtype=", o->read_only ? ",ro" : "",
	         o->allow_other ? ",allow_other" : "", mr);
	append_escaped(buf, size, o->subtype ? o->subtype : "pagewright");
	strncat(buf, ",fsname=", size - strlen(buf) - 1);
	append_escaped(buf, size, o->fsname ? o->fsname : "pagewright");
}

static void
set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* mountinfo's escapes (\040 for a space, ...) undone in place. */
static void
unescape_octal(char *s)
{
	char *o = s;
	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '7' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = 0;
}

/*
 * The kernel reads ahead in a FUSE file's page cache (cache=kernel and
 * writeback, and shared mappings in every mode) by its mount's
 * read_ahead_kb, 128 KiB by default, which INIT may lower but not raise:
 * a cold sequential read was a 128 KiB READ at a time.  With the right to
 * (root), the server raises it to a READ's size.  Measured on the
 * development VM, cache=writeback, 256 MiB cold: 310-330 MB/s at 128 KiB,
 * 420-630 MB/s at 1 MiB.  Best effort: the mount works the same without.
 * It is set once the kernel has taken the INIT reply, which would lower
 * it again (devio.c calls pw__server_after_init); the device number comes
 * from mountinfo, as stat(2) of the mount point would wait for a GETATTR
 * from the very thread asking.
 */
static void
raise_readahead(const char *mountpoint, size_t bytes)
{
	FILE *mi = fopen("/proc/self/mountinfo", "r");
	if (!mi)
		return;
	char line[4096], dev[32] = "";
	while (fgets(line, sizeof(line), mi)) {
		char d[32], mp[PATH_MAX];
		if (sscanf(line, "%*s %*s %31s %*s %4095s", d, mp) != 2)
			continue;
		unescape_octal(mp);
		if (strcmp(mp, mountpoint) == 0)
			snprintf(dev, sizeof(dev), "%s", d);   /* the last one is ours */
	}
	fclose(mi);
	if (!dev[0])
		return;
	char path[96];
	snprintf(path, sizeof(path), "/sys/class/bdi/%s/read_ahead_kb", dev);
	FILE *ra = fopen(path, "r+");
	if (!ra)
		return;
	unsigned long kb = 0;
	if (fscanf(ra, "%lu", &kb) == 1 && kb < bytes / 1024) {
		rewind(ra);
		fprintf(ra, "%zu\n", bytes / 1024);
	}
	fclose(ra);
}

void
pw__server_after_init(void *userdata)
{
	struct pw_fuse *f = userdata;
	raise_readahead(f->opts.mountpoint, f->max_read ? f->max_read : MAX_READ);
}

static int
session_create(struct pw_fuse *f, char *err, size_t errlen)
{
	char opts[1024];
	/* Spliced READ replies (read_spliced) must fit libfuse's pipe. */
	f->pipe_cap = f->pool_fd >= 0 ? pipe_capacity() : 0;
	f->max_read = PW_FUSE_MIN(f->pipe_cap / 2, (size_t)MAX_READ);
	if (f->max_read < 2 * SPLICE_MIN)
		f->max_read = 0;
	mount_options(&f->opts, f->max_read, opts, sizeof(opts));
	char *argv[] = {"pagewright", "-o", opts, f->opts.debug ? "-d" : NULL, NULL};
	struct fuse_args args = FUSE_ARGS_INIT(f->opts.debug ? 4 : 3, argv);
	/* cache=writeback: no extended attributes.  The kernel asks for
	 * security.capability before every write(2) into its cache (a round
	 * trip each) unless the server takes FUSE_HANDLE_KILLPRIV_V2, which
	 * libfuse 3.14 cannot; without a getxattr handler it asks once, gets
	 * ENOSYS, and answers ENOTSUP to every xattr call from then on. */
	struct fuse_lowlevel_ops lops = ops;
	if (f->opts.cache == PW_FUSE_CACHE_WRITEBACK) {
		lops.getxattr = NULL;
		lops.setxattr = NULL;
		lops.listxattr = NULL;
		lops.removexattr = NULL;
	}
	f->se = fuse_session_new(&args, &lops, sizeof(lops), f);
	if (!f->se) {
		set_err(err, errlen, "libfuse refused the options \"%s\"", opts);
		return -EINVAL;
	}
	sig_session = f->se;
	if (signals_install() != 0) {
		set_err(err, errlen, "cannot install signal handlers");
		return -EINVAL;
	}
	if (fuse_session_mount(f->se, f->opts.mountpoint) != 0) {
		set_err(err, errlen, "the kernel refused to mount %s", f->opts.mountpoint);
		return -EPERM;
	}
	f->mounted = true;
	f->io.se = f->se;
	if (pw__devio_install(f->se) != 0) {
		set_err(err, errlen, "cannot hook the FUSE device");
		return -EIO;
	}
	return 0;
}

int
pw_fuse_new(const struct pw_fuse_opts *opts, struct pw_fuse **res, char *err,
            size_t errlen)
{
	struct pw_fuse *f = calloc(1, sizeof(*f));
	if (!f) {
		set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	f->opts = *opts;
	f->io.want = opts->cache == PW_FUSE_CACHE_DIRECT;
	/* PAGEWRIGHT_FUSE_URING=0 in the environment: as -o nouring.  Not
	 * with cache=kernel: there the random exerciser read stale zeros over
	 * io_uring (2 runs in 21, none in 15 over /dev/fuse; docs/fuse.md,
	 * "Transport"). */
	const char *env = getenv("PAGEWRIGHT_FUSE_URING");
	f->io.want_uring = !opts->no_uring && !(env && strcmp(env, "0") == 0) &&
	                   opts->cache != PW_FUSE_CACHE_KERNEL;
	env = getenv("PAGEWRIGHT_FUSE_NOCACHE");
	f->read_nocache = opts->cache != PW_FUSE_CACHE_DIRECT && !(env && strcmp(env, "0") == 0);
	f->pool_fd = pw_pool_fd();
	f->euid = geteuid();
	f->egid = getegid();
	struct stat st;
	int e = neg(pw_stat(opts->root, &st));
	if (e) {
		set_err(err, errlen, "%s: %s", opts->root, strerror(-e));
		free(f);
		return e;
	}
	if ((e = pw__ntab_init(&f->tab, opts->root, &st))) {
		set_err(err, errlen, "out of memory");
		free(f);
		return e;
	}
	if ((e = session_create(f, err, errlen))) {
		pw_fuse_destroy(f);
		return e;
	}
	*res = f;
	return 0;
}

int
pw_fuse_run(struct pw_fuse *f)
{
	struct fuse_loop_config *cfg = fuse_loop_cfg_create();
	pthread_t t;
	if (!cfg)
		return -ENOMEM;
	fuse_loop_cfg_set_clone_fd(cfg, 0);
	if (f->opts.max_threads)
		fuse_loop_cfg_set_max_threads(cfg, f->opts.max_threads);
	loop_thread = pthread_self();
	bool ender = pthread_create(&t, NULL, ender_thread, f) == 0;
	int r = fuse_session_loop_mt(f->se, cfg);
	fuse_loop_cfg_destroy(cfg);
	pw__uring_stop(f->io.uring);
	pw__devio_profile_print();
	if (ender) {
		char stop = 0;
		ssize_t w = write(sig_pipe[1], &stop, 1);
		(void)w;
		pthread_join(t, NULL);
	}
	/* A positive value is the signal that ended the loop: a clean exit. */
	return r < 0 ? r : 0;
}

bool
pw_fuse_mmap_granted(struct pw_fuse *f)
{
	return f->io.granted;
}

bool
pw_fuse_uring(struct pw_fuse *f)
{
	return pw__uring_served(f->io.uring) > 0;
}

void
pw_fuse_get_counters(struct pw_fuse *f, struct pw_fuse_counters *c)
{
	c->reads = atomic_load_explicit(&f->count.reads, memory_order_relaxed);
	c->read_bytes = atomic_load_explicit(&f->count.read_bytes, memory_order_relaxed);
	c->writes = atomic_load_explicit(&f->count.writes, memory_order_relaxed);
	c->write_bytes = atomic_load_explicit(&f->count.write_bytes, memory_order_relaxed);
	c->fsyncs = atomic_load_explicit(&f->count.fsyncs, memory_order_relaxed);
	c->creates = atomic_load_explicit(&f->count.creates, memory_order_relaxed);
}

void
pw_fuse_destroy(struct pw_fuse *f)
{
	if (f->se) {
		signals_remove();
		if (f->mounted)
			fuse_session_unmount(f->se);
		fuse_session_destroy(f->se);
	}
	pw__uring_free(f->io.uring);
	pw__handle_close_all(&f->tab);
	pw__ntab_destroy(&f->tab);
	free(f);
}

/*
 * fuse_internal.h - what the files of the FUSE server share: the node
 * table (nodes.c), the attribute and link calls (attrs.c) and
 * the INIT reply patch (devio.c).  The server uses pagewright's
 * application API only; nothing here is part of the library.
 */
#ifndef PW_FUSE_INTERNAL_H
#define PW_FUSE_INTERNAL_H

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 312
#endif
#include <fuse_lowlevel.h>

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

/*
 * Locks, written as letters in the field comments:
 *   (C) constant after creation
 *   (T) tree_lock: read to follow, write to change
 *   (N) tab_lock
 * Order: tree_lock -> tab_lock.  A pw_ call may be made under tree_lock
 * (read or write), and under tab_lock only on an unlinked node's open
 * descriptor (pw__node_call_open): never one that waits for the kernel.
 */
struct fhandle;

struct fnode {
	dev_t dev;                /* (C) pagewright's identity of the file */
	ino_t ino;                /* (C) */
	mode_t type;              /* (C) S_IFMT bits */
	uint64_t generation;      /* (C) */
	struct fnode *parent;     /* (T) directory holding `name`; NULL: root or unlinked */
	char *name;               /* (T) NULL for the root and unlinked nodes */
	uint64_t nlookup;         /* (N) lookups the kernel holds */
	unsigned nchild;          /* (N) nodes whose parent this is */
	bool hashed;              /* (N) in the (dev, ino) hash */
	struct fnode *hash_next;  /* (N) */
	struct fnode *all_next;   /* (N) on the table's list of every node */
	struct fnode *all_prev;   /* (N) */
	struct fhandle *opens;    /* (N) open handles of this node */
};

/* An open file: fi->fh points at one. */
struct fhandle {
	int fd;                   /* (C) pagewright descriptor */
	struct fnode *node;       /* (C) */
	struct fhandle *next;     /* (N) on node->opens */
	struct fhandle *all_next; /* (N) on the table's list of every handle */
	struct fhandle *all_prev; /* (N) */
};

struct ntab {
	pthread_rwlock_t tree_lock;  /* the shape of the tree: parent and name */
	pthread_mutex_t tab_lock;    /* counts, hash, handle lists */
	struct fnode root;           /* (C) FUSE_ROOT_ID */
	char *root_path;             /* (C) the served directory, "/" + ... */
	struct fnode **hash;         /* (N) by (dev, ino) */
	struct fnode *nodes;         /* (N) every node but the root */
	size_t hash_size, nnodes;    /* (N) */
	uint64_t next_generation;    /* (N) */
	struct fhandle *handles;     /* (N) every open handle */
};

int pw__ntab_init(struct ntab *t, const char *root_path, const struct stat *root_st);
void pw__ntab_destroy(struct ntab *t);
struct fnode *pw__node_of(struct ntab *t, fuse_ino_t ino);
fuse_ino_t pw__node_ino(struct ntab *t, struct fnode *n);

/* Path building; the caller holds tree_lock.  Return: 0, -ENOENT for an
 * unlinked node, -ENAMETOOLONG. */
int pw__node_path(struct ntab *t, struct fnode *n, char *buf, size_t size);
int pw__node_child_path(struct ntab *t, struct fnode *dir, const char *name,
                        char *buf, size_t size);

/* The kernel learnt of (dir, name) = st: find or make its node and count
 * one lookup.  Caller holds tree_lock.  Return: 0 or -ENOMEM. */
int pw__node_lookup(struct ntab *t, struct fnode *dir, const char *name,
                    const struct stat *st, struct fnode **res);
void pw__node_forget(struct ntab *t, struct fnode *n, uint64_t nlookup);
/* (dir, name) = st was removed; caller holds tree_lock for writing. */
void pw__node_removed(struct ntab *t, struct fnode *dir, const char *name,
                      const struct stat *st);
/* (odir, oname) = st was renamed to (ndir, nname); caller holds tree_lock
 * for writing and has called pw__node_removed for a replaced target. */
int pw__node_renamed(struct ntab *t, struct fnode *odir, const char *oname,
                     struct fnode *ndir, const char *nname, const struct stat *st);

/* Handles. */
struct fhandle *pw__handle_add(struct ntab *t, struct fnode *n, int fd);
void pw__handle_remove(struct ntab *t, struct fhandle *h);
/* fn(fd, arg) on the descriptor of any open handle of n, for unlinked
 * nodes; tab_lock is held across it.  Return: fn's, or -ENOENT when n has
 * no open handle. */
int pw__node_call_open(struct ntab *t, struct fnode *n, int (*fn)(int fd, void *arg),
                       void *arg);
/* Close every handle left open (the kernel went away without releases). */
void pw__handle_close_all(struct ntab *t);

/*
 * attrs.c: lstat, owners, chmod/chown/utimens, links, mknod and statfs
 * onto the pw_ calls.  Each returns 0 or -errno; the server turns that
 * into the reply.
 */
#include <sys/statvfs.h>
int pw__fuse_lstat(const char *path, struct stat *st);
/* Give a new file (path, or fd when >= 0) the caller's owner if the
 * server runs as root and st, its attributes, says otherwise; st is
 * updated.  Failing to is not an error of the creation. */
int pw__fuse_chown_new(const char *path, int fd, uid_t uid, gid_t gid, struct stat *st);
int pw__fuse_setattr(const char *path, int fd, const struct stat *attr, int to_set);
int pw__fuse_readlink(const char *path, char *buf, size_t size);
int pw__fuse_symlink(const char *target, const char *path);
int pw__fuse_link(const char *oldpath, const char *newpath);
int pw__fuse_mknod(const char *path, mode_t mode, dev_t rdev);
int pw__fuse_statvfs(const char *path, struct statvfs *st);
/* The xattr calls act on path, or on the descriptor fd when path is NULL. */
ssize_t pw__fuse_getxattr(const char *path, int fd, const char *name, void *buf, size_t size);
ssize_t pw__fuse_listxattr(const char *path, int fd, char *buf, size_t size);
int pw__fuse_setxattr(const char *path, int fd, const char *name, const void *value,
                      size_t size, int flags);

/*
 * devio.c: reads and writes of /dev/fuse, through which the INIT reply
 * asks for shared mmap of direct_io files (FUSE_DIRECT_IO_ALLOW_MMAP) when
 * the kernel offers it: libfuse before 3.16 has no capability bit for it.
 */
struct uring;
struct devio {
	_Atomic uint64_t init_unique;  /* the INIT request in flight, 0 if none */
	_Atomic bool kernel_offers;    /* the kernel's INIT offered the flag */
	bool want;                     /* (C) ask for it */
	_Atomic bool granted;          /* the reply asked for it */
	/* FUSE over io_uring (uring.c) */
	struct fuse_session *se;       /* (C) */
	bool want_uring;               /* (C) use it if the kernel offers it */
	_Atomic bool kernel_uring;     /* the kernel's INIT offered it */
	struct uring *_Atomic uring;   /* set by the INIT reply, NULL if not used */
};
/* The server's devio, found from the session's userdata. */
struct devio *pw__server_devio(void *userdata);
/* Called once the kernel has taken the INIT reply (its limits apply). */
void pw__server_after_init(void *userdata);
int pw__devio_install(struct fuse_session *se);

/*
 * uring.c: FUSE over io_uring (Linux 6.14+, enable_uring=Y): requests
 * served by a thread bound to the CPU that made them.  prepare makes
 * everything that can fail (before the INIT reply asks for it), start
 * registers the entries (after), stop ends the threads, free the rest.
 */
struct uring *pw__uring_prepare(struct fuse_session *se, size_t max_write,
                                unsigned max_pages);
int pw__uring_start(struct uring *u);
void pw__uring_stop(struct uring *u);
void pw__uring_free(struct uring *u);
/* Requests served from the rings so far (0 for NULL). */
uint64_t pw__uring_served(const struct uring *u);
/* On a ring thread, serving a request? */
bool pw__uring_in_hand(void);
/* The ring entry's payload, where a reply of up to size bytes can be built
 * in place (no copy at the reply); NULL when not serving from a ring. */
void *pw__uring_reply_buffer(size_t size);
ssize_t pw__uring_writev(const struct iovec *iov, int count);
ssize_t pw__uring_splice(int pipe_fd, size_t len);
void pw__devio_profile_print(void);
void pw__devio_profile_ring(const void *in_header, bool start);

#endif

/*
 * nodes.c - the FUSE server's node table: a FUSE node id for every
 * pagewright file the kernel knows, and the path that reaches it.
 *
 * The kernel names files by node id; pagewright's API names them by path.
 * Each node records its parent node and its name there, so its path is
 * rebuilt on demand by walking up to the root, which is the served
 * directory ("/mnt" in pagewright's namespace).  A rename changes one
 * node, never the paths of its descendants.  The node id given to the
 * kernel is the node's address (the root is FUSE_ROOT_ID); ids are reused
 * only after the kernel has forgotten them, which FUSE allows, and every
 * node gets a new generation number anyway.
 *
 * Identity.  A lookup finds an existing node by pagewright's (st_dev,
 * st_ino), so a file reached twice (a second lookup, or later a hard link)
 * is one node to the kernel.  A node leaves that hash when its file is
 * unlinked or replaced by a rename, before the filesystem can reuse the
 * inode number for a new file (ext2 does).
 *
 * Concurrency (the reason for tree_lock).  The kernel locks the
 * directories an operation changes, but an operation on a/b/c does not
 * lock "a": while one thread renames "a" to "x", another may build the
 * path "a/b/c" and use it after the rename, reaching nothing, or a new
 * "a" made since.  So a path is built and used under tree_lock held for
 * reading, from building the path to the end of the pw_ call, and the
 * operations that change names (rename, unlink, rmdir) hold it for
 * writing across their pw_ call and the table update.  A path is then
 * always the name the file has in pagewright at the moment it is used.
 * Data I/O goes through descriptors (fi->fh) and takes neither lock.
 *
 * Invariants:
 *   (1) A node is freed when nlookup == 0, nchild == 0 and no handle is
 *       open on it; freeing it drops its parent's nchild, which may free
 *       the parent in turn.  So a node a walker can start from (the kernel
 *       holds a lookup, or a descendant does) has every ancestor alive.
 *   (2) parent == NULL and name == NULL for the root and unlinked nodes;
 *       an unlinked node is never hashed again.
 *   (3) (dev, ino) maps to at most one hashed node.
 */
#include "fuse_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <pagewright/pagewright.h>

static size_t
hash_of(struct ntab *t, dev_t dev, ino_t ino)
{
	uint64_t h = (uint64_t)ino * 0x9e3779b97f4a7c15ULL ^ (uint64_t)dev;
	return (size_t)(h ^ (h >> 29)) & (t->hash_size - 1);
}

/* tab_lock held. */
static void
hash_insert(struct ntab *t, struct fnode *n)
{
	size_t h = hash_of(t, n->dev, n->ino);
	n->hash_next = t->hash[h];
	t->hash[h] = n;
	n->hashed = true;
}

/* tab_lock held. */
static void
hash_remove(struct ntab *t, struct fnode *n)
{
	if (!n->hashed)
		return;
	struct fnode **pp = &t->hash[hash_of(t, n->dev, n->ino)];
	while (*pp != n)
		pp = &(*pp)->hash_next;
	*pp = n->hash_next;
	n->hashed = false;
}

/* tab_lock held.  Failure to grow only makes chains longer. */
static void
hash_grow(struct ntab *t)
{
	size_t old = t->hash_size, size = old * 2;
	struct fnode **h = calloc(size, sizeof(*h));
	if (!h)
		return;
	struct fnode **oh = t->hash;
	t->hash = h;
	t->hash_size = size;
	for (size_t k = 0; k < old; k++)
		for (struct fnode *n = oh[k], *next; n; n = next) {
			next = n->hash_next;
			hash_insert(t, n);
		}
	free(oh);
}

/* tab_lock held. */
static struct fnode *
hash_find(struct ntab *t, dev_t dev, ino_t ino)
{
	for (struct fnode *n = t->hash[hash_of(t, dev, ino)]; n; n = n->hash_next)
		if (n->dev == dev && n->ino == ino)
			return n;
	return NULL;
}

int
pw__ntab_init(struct ntab *t, const char *root_path, const struct stat *root_st)
{
	memset(t, 0, sizeof(*t));
	pthread_rwlock_init(&t->tree_lock, NULL);
	pthread_mutex_init(&t->tab_lock, NULL);
	t->hash_size = 1024;
	t->hash = calloc(t->hash_size, sizeof(*t->hash));
	t->root_path = strdup(root_path);
	if (!t->hash || !t->root_path) {
		pw__ntab_destroy(t);
		return -ENOMEM;
	}
	/* A trailing "/" would double up in child paths; "/" itself stays. */
	size_t len = strlen(t->root_path);
	while (len > 1 && t->root_path[len - 1] == '/')
		t->root_path[--len] = 0;
	t->root.dev = root_st->st_dev;
	t->root.ino = root_st->st_ino;
	t->root.type = S_IFDIR;
	t->root.nlookup = 1;
	hash_insert(t, &t->root);
	return 0;
}

/* Frees what is left; the kernel is gone, so nothing walks the tree. */
void
pw__ntab_destroy(struct ntab *t)
{
	for (struct fnode *n = t->nodes, *next; n; n = next) {
		next = n->all_next;
		free(n->name);
		free(n);
	}
	t->nodes = NULL;
	free(t->hash);
	free(t->root_path);
	t->hash = NULL;
	t->root_path = NULL;
	pthread_rwlock_destroy(&t->tree_lock);
	pthread_mutex_destroy(&t->tab_lock);
}

struct fnode *
pw__node_of(struct ntab *t, fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID ? &t->root : (struct fnode *)(uintptr_t)ino;
}

fuse_ino_t
pw__node_ino(struct ntab *t, struct fnode *n)
{
	return n == &t->root ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)n;
}

/* Fill buf from its end: "/" name ... name, then the root path in front. */
int
pw__node_path(struct ntab *t, struct fnode *n, char *buf, size_t size)
{
	size_t pos = size;
	buf[--pos] = 0;
	for (; n != &t->root; n = n->parent) {
		if (!n->parent)
			return -ENOENT;
		size_t len = strlen(n->name);
		if (len + 1 > pos)
			return -ENAMETOOLONG;
		pos -= len;
		memcpy(buf + pos, n->name, len);
		buf[--pos] = '/';
	}
	size_t rlen = strlen(t->root_path);
	if (rlen == 1 && pos < size - 1)
		rlen = 0; /* root "/": the components bring their own slash */
	if (rlen > pos)
		return -ENAMETOOLONG;
	pos -= rlen;
	memcpy(buf + pos, t->root_path, rlen);
	memmove(buf, buf + pos, size - pos);
	return 0;
}

int
pw__node_child_path(struct ntab *t, struct fnode *dir, const char *name,
                    char *buf, size_t size)
{
	int err = pw__node_path(t, dir, buf, size);
	if (err)
		return err;
	size_t len = strlen(buf), nlen = strlen(name);
	bool slash = len > 0 && buf[len - 1] != '/';
	if (len + slash + nlen + 1 > size)
		return -ENAMETOOLONG;
	if (slash)
		buf[len++] = '/';
	memcpy(buf + len, name, nlen + 1);
	return 0;
}

/* tab_lock held. */
static void
node_free_unused(struct ntab *t, struct fnode *n)
{
	while (n && n != &t->root && n->nlookup == 0 && n->nchild == 0 && !n->opens) {
		struct fnode *parent = n->parent;
		hash_remove(t, n);
		if (n->all_prev)
			n->all_prev->all_next = n->all_next;
		else
			t->nodes = n->all_next;
		if (n->all_next)
			n->all_next->all_prev = n->all_prev;
		free(n->name);
		free(n);
		t->nnodes--;
		if (parent)
			parent->nchild--;
		n = parent;
	}
}

int
pw__node_lookup(struct ntab *t, struct fnode *dir, const char *name,
                const struct stat *st, struct fnode **res)
{
	pthread_mutex_lock(&t->tab_lock);
	struct fnode *n = hash_find(t, st->st_dev, st->st_ino);
	if (n && n->type != (st->st_mode & S_IFMT)) {
		/* Cannot happen while every change comes through this server;
		 * if the filesystem changed underneath, trust what it says now. */
		hash_remove(t, n);
		n = NULL;
	}
	if (!n) {
		n = calloc(1, sizeof(*n));
		char *copy = n ? strdup(name) : NULL;
		if (!copy) {
			free(n);
			pthread_mutex_unlock(&t->tab_lock);
			return -ENOMEM;
		}
		n->dev = st->st_dev;
		n->ino = st->st_ino;
		n->type = st->st_mode & S_IFMT;
		n->generation = ++t->next_generation;
		/* A new node is invisible to walkers until the kernel has its
		 * id, so setting the tree fields under tab_lock is enough. */
		n->parent = dir;
		n->name = copy;
		dir->nchild++;
		n->all_next = t->nodes;
		if (t->nodes)
			t->nodes->all_prev = n;
		t->nodes = n;
		if (++t->nnodes > t->hash_size * 2)
			hash_grow(t);
		hash_insert(t, n);
	}
	n->nlookup++;
	pthread_mutex_unlock(&t->tab_lock);
	*res = n;
	return 0;
}

void
pw__node_forget(struct ntab *t, struct fnode *n, uint64_t nlookup)
{
	if (n == &t->root)
		return;
	pthread_mutex_lock(&t->tab_lock);
	n->nlookup = nlookup < n->nlookup ? n->nlookup - nlookup : 0;
	node_free_unused(t, n);
	pthread_mutex_unlock(&t->tab_lock);
}

/* tab_lock and tree_lock (write) held. */
static void
node_detach(struct ntab *t, struct fnode *n)
{
	struct fnode *parent = n->parent;
	free(n->name);
	n->name = NULL;
	n->parent = NULL;
	if (parent) {
		parent->nchild--;
		node_free_unused(t, parent);
	}
}

void
pw__node_removed(struct ntab *t, struct fnode *dir, const char *name,
                 const struct stat *st)
{
	pthread_mutex_lock(&t->tab_lock);
	struct fnode *n = hash_find(t, st->st_dev, st->st_ino);
	if (n) {
		/* With hard links a node is named by one of its links; only
		 * that name going away detaches it, and only the last link
		 * going away frees the inode number for reuse. */
		bool last = S_ISDIR(st->st_mode) || st->st_nlink <= 1;
		if (n->parent == dir && strcmp(n->name, name) == 0) {
			hash_remove(t, n);
			node_detach(t, n);
			node_free_unused(t, n);
		} else if (last) {
			hash_remove(t, n);
		}
	}
	pthread_mutex_unlock(&t->tab_lock);
}

int
pw__node_renamed(struct ntab *t, struct fnode *odir, const char *oname,
                 struct fnode *ndir, const char *nname, const struct stat *st)
{
	char *copy = strdup(nname);
	if (!copy)
		return -ENOMEM;
	pthread_mutex_lock(&t->tab_lock);
	struct fnode *n = hash_find(t, st->st_dev, st->st_ino);
	if (n && n->parent == odir && strcmp(n->name, oname) == 0) {
		free(n->name);
		n->name = copy;
		copy = NULL;
		if (ndir != odir) {
			ndir->nchild++;
			n->parent = ndir;
			odir->nchild--;
			node_free_unused(t, odir);
		}
	}
	pthread_mutex_unlock(&t->tab_lock);
	free(copy);
	return 0;
}

struct fhandle *
pw__handle_add(struct ntab *t, struct fnode *n, int fd)
{
	struct fhandle *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->fd = fd;
	h->node = n;
	pthread_mutex_lock(&t->tab_lock);
	h->next = n->opens;
	n->opens = h;
	h->all_next = t->handles;
	if (t->handles)
		t->handles->all_prev = h;
	t->handles = h;
	pthread_mutex_unlock(&t->tab_lock);
	return h;
}

/* Unlists h; the caller closes h->fd and frees h. */
void
pw__handle_remove(struct ntab *t, struct fhandle *h)
{
	pthread_mutex_lock(&t->tab_lock);
	struct fhandle **pp = &h->node->opens;
	while (*pp != h)
		pp = &(*pp)->next;
	*pp = h->next;
	if (h->all_prev)
		h->all_prev->all_next = h->all_next;
	else
		t->handles = h->all_next;
	if (h->all_next)
		h->all_next->all_prev = h->all_prev;
	node_free_unused(t, h->node);
	pthread_mutex_unlock(&t->tab_lock);
}

/* tab_lock is held across fn so the descriptor cannot be closed and its
 * number reused by another file meanwhile. */
int
pw__node_call_open(struct ntab *t, struct fnode *n, int (*fn)(int fd, void *arg), void *arg)
{
	int err = -ENOENT;
	pthread_mutex_lock(&t->tab_lock);
	if (n->opens)
		err = fn(n->opens->fd, arg);
	pthread_mutex_unlock(&t->tab_lock);
	return err;
}

void
pw__handle_close_all(struct ntab *t)
{
	pthread_mutex_lock(&t->tab_lock);
	while (t->handles) {
		struct fhandle *h = t->handles;
		t->handles = h->all_next;
		struct fhandle **pp = &h->node->opens;
		while (*pp != h)
			pp = &(*pp)->next;
		*pp = h->next;
		pw_close(h->fd);
		free(h);
	}
	pthread_mutex_unlock(&t->tab_lock);
}

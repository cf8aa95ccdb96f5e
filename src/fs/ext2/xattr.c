/*
 * xattr.c - extended attributes in an attribute block, as the kernel's
 * ext2 keeps them.
 *
 * An inode's attributes live in one block named by i_file_acl:
 *
 *   bytes 0..31   header: magic 0xEA020000, reference count, blocks (1),
 *                 hash of the entries, reserved
 *   from 32       entries, 4-byte aligned, each 16 bytes (name length,
 *                 name index, value offset, value block (0), value size,
 *                 hash) and the name without its prefix; a zero word ends
 *                 them
 *   at the end    the values, each padded with zeros to 4 bytes
 *
 * The name index stands for the prefix: 1 "user.", 4 "trusted.", 6
 * "security." (2 and 3, the POSIX ACLs, and any other index are kept as
 * found but neither listed nor served: pagewright does not enforce ACLs,
 * so it must not pretend to store them).  A block may be shared by several
 * inodes (other tools share identical ones; the reference count says how
 * many): a change to a shared block goes to a new block of this inode's.
 *
 * Large inodes (more than 128 bytes) may also hold attributes after
 * their extra fields: the magic, then entries of the same form whose
 * value offsets count from the first entry.  The kernel's ext4 driver
 * puts them there when it serves an ext2 image; the kernel's ext2 driver
 * ignores them.  pagewright reads them, and on the first change to an
 * inode's attributes moves them all into the block (the in-inode magic
 * is cleared after the block is written), so that there is one place to
 * change.
 *
 * Every change rebuilds the whole block from a parsed list, sorted by
 * index, name length and name as the kernel sorts them, values packed
 * from the end.  Every number read from the block is checked before use:
 * a bad block gives -EUCLEAN and a log line.  Callers hold the inode's
 * i_rwsem (the VFS takes it for every xattr call).
 *
 * Symbolic links get no attribute block from here: whether a link is
 * fast or slow is told from i_blocks less the attribute block, which a
 * lock-free readlink reads, and adding the block would change one before
 * the other.
 */
#include "ext2.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#define XA_MAGIC 0xEA020000u
#define XA_HDR 32u
#define XA_ENTRY 16u
#define XA_ENTRY_LEN(n) (((unsigned)(n) + XA_ENTRY + 3u) & ~3u)
#define XA_VALUE_LEN(s) (((uint32_t)(s) + 3u) & ~3u)
#define EXT2_FEATURE_COMPAT_EXT_ATTR 0x0008u

struct xa_entry {
	uint8_t index;
	uint8_t nlen;
	uint32_t size;
	const char *name;     /* nlen bytes, no NUL */
	const uint8_t *value; /* size bytes */
};

/* A parsed block, and the in-inode entries after it: entries point into
 * raw (a copy of the block, then of the in-inode area). */
struct xa_list {
	uint8_t *raw;
	unsigned n;
	unsigned in_inode; /* how many of e[] came from the inode */
	uint32_t refcount;
	struct xa_entry *e;
};

static const struct {
	const char *prefix;
	uint8_t index;
} xa_prefixes[] = {
	{"user.", 1},
	{"trusted.", 4},
	{"security.", 6},
};

/* The index and suffix of a full name; -EOPNOTSUPP for other prefixes
 * (system.*, ACLs included). */
static int
xa_split(const char *name, uint8_t *index, const char **suffix)
{
	for (size_t k = 0; k < sizeof(xa_prefixes) / sizeof(xa_prefixes[0]); k++) {
		size_t pl = strlen(xa_prefixes[k].prefix);
		if (strncmp(name, xa_prefixes[k].prefix, pl) == 0) {
			*index = xa_prefixes[k].index;
			*suffix = name + pl;
			return **suffix && strlen(*suffix) <= 255 ? 0 : -EINVAL;
		}
	}
	return -EOPNOTSUPP;
}

static const char *
xa_prefix(uint8_t index)
{
	for (size_t k = 0; k < sizeof(xa_prefixes) / sizeof(xa_prefixes[0]); k++)
		if (xa_prefixes[k].index == index)
			return xa_prefixes[k].prefix;
	return NULL;
}

static uint32_t
rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return le32(v);
}

static uint16_t
rd16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return le16(v);
}

static void
wr32(uint8_t *p, uint32_t v)
{
	v = cpu32(v);
	memcpy(p, &v, 4);
}

static void
wr16(uint8_t *p, uint16_t v)
{
	v = cpu16(v);
	memcpy(p, &v, 2);
}

static void
xa_free(struct xa_list *l)
{
	free(l->raw);
	free(l->e);
	l->raw = NULL;
	l->e = NULL;
	l->n = 0;
}

static int
xa_bad(struct inode *inode, uint64_t blk, const char *why)
{
	ext2_error(inode->i_sb, "inode %llu: xattr block %llu: %s",
	           (unsigned long long)inode->i_ino, (unsigned long long)blk, why);
	return -EUCLEAN;
}

static uint64_t
xa_block(struct inode *inode)
{
	return __atomic_load_n(&EXT2_I(inode)->ei_file_acl, __ATOMIC_RELAXED);
}

/* Parse the entries of area [start, len) of b, values at vbase + offset
 * (within b's len bytes), into l->e (room for max entries). */
static int
xa_parse(struct xa_list *l, const uint8_t *b, unsigned start, unsigned len,
         const uint8_t *vbase, unsigned max)
{
	unsigned vlen = (unsigned)(b + len - vbase);
	for (unsigned p = start;;) {
		if (p + 4 > len || l->n >= max)
			return -EUCLEAN;
		if (rd32(b + p) == 0)
			return 0;
		struct xa_entry *e = &l->e[l->n];
		e->nlen = b[p];
		e->index = b[p + 1];
		uint32_t offs = rd16(b + p + 2), vblk = rd32(b + p + 4);
		e->size = rd32(b + p + 8);
		unsigned elen = XA_ENTRY_LEN(e->nlen);
		if (e->nlen == 0 || p + elen + 4 > len || vblk != 0 ||
		    (e->size && (e->size > vlen || offs > vlen - e->size)))
			return -EUCLEAN;
		e->name = (const char *)b + p + XA_ENTRY;
		e->value = vbase + offs;
		l->n++;
		p += elen;
	}
}

/* Append the attributes kept inside the inode's record to l. */
static int
xa_load_in_inode(struct inode *inode, struct xa_list *l)
{
	struct super_block *sb = inode->i_sb;
	unsigned isize = EXT2_SB(sb)->s_inode_size, bs = (unsigned)sb->s_blocksize;
	if (isize <= EXT2_GOOD_OLD_INODE_SIZE)
		return 0;
	struct buffer_head *bh;
	struct ext2_inode *raw;
	int err = pw__ext2_read_raw(sb, inode->i_ino, &bh, &raw);
	if (err)
		return err;
	unsigned len = isize - EXT2_GOOD_OLD_INODE_SIZE, extra;
	uint8_t *area = l->raw + bs; /* xa_load made room for it */
	lock_buffer(bh);
	extra = le16(raw->i_extra_isize);
	memcpy(area, (uint8_t *)raw + EXT2_GOOD_OLD_INODE_SIZE, len);
	unlock_buffer(bh);
	brelse(bh);
	if (extra < 4 || (extra & 3) || extra + 4 + 4 > len || rd32(area + extra) != XA_MAGIC)
		return 0; /* no attributes there */
	unsigned n0 = l->n;
	/* Values count from the first entry. */
	err = xa_parse(l, area, extra + 4, len, area + extra + 4, bs / XA_ENTRY);
	if (err)
		return xa_bad(inode, 0, "bad in-inode entry");
	l->in_inode = l->n - n0;
	return 0;
}

/* Clear the in-inode attributes' magic, once they are in the block. */
static int
xa_clear_in_inode(struct inode *inode)
{
	struct super_block *sb = inode->i_sb;
	struct buffer_head *bh;
	struct ext2_inode *raw;
	int err = pw__ext2_read_raw(sb, inode->i_ino, &bh, &raw);
	if (err)
		return err;
	lock_buffer(bh);
	unsigned extra = le16(raw->i_extra_isize);
	uint8_t *area = (uint8_t *)raw + EXT2_GOOD_OLD_INODE_SIZE;
	if (extra + 4 <= EXT2_SB(sb)->s_inode_size - EXT2_GOOD_OLD_INODE_SIZE &&
	    rd32(area + extra) == XA_MAGIC)
		wr32(area + extra, 0);
	unlock_buffer(bh);
	mark_buffer_dirty(bh);
	brelse(bh);
	return 0;
}

/* Read and check the inode's attribute block into l (empty if none). */
static int
xa_load(struct inode *inode, struct xa_list *l)
{
	struct super_block *sb = inode->i_sb;
	uint64_t blk = xa_block(inode);
	unsigned bs = (unsigned)sb->s_blocksize;
	memset(l, 0, sizeof(*l));
	/* Room for the block and the in-inode area after it. */
	l->raw = calloc(1, bs + EXT2_SB(sb)->s_inode_size);
	l->e = malloc(sizeof(*l->e) * (bs / XA_ENTRY));
	if (!l->raw || !l->e) {
		xa_free(l);
		return -ENOMEM;
	}
	int err;
	if (!blk) {
		if ((err = xa_load_in_inode(inode, l)))
			xa_free(l);
		return err;
	}
	if (!pw__ext2_data_block_ok(sb, blk)) {
		xa_free(l);
		return xa_bad(inode, blk, "out of range");
	}
	struct buffer_head *bh;
	if ((err = sb_bread(sb, blk, &bh))) {
		xa_free(l);
		return err;
	}
	lock_buffer(bh);
	memcpy(l->raw, bh->b_data, bs);
	unlock_buffer(bh);
	brelse(bh);
	const uint8_t *b = l->raw;
	l->refcount = rd32(b + 4);
	if (rd32(b) != XA_MAGIC || rd32(b + 8) != 1 || l->refcount == 0) {
		xa_free(l);
		return xa_bad(inode, blk, "bad header");
	}
	err = xa_parse(l, b, XA_HDR, bs, b, bs / XA_ENTRY);
	if (err) {
		xa_free(l);
		return xa_bad(inode, blk, "bad entry");
	}
	if ((err = xa_load_in_inode(inode, l)))
		xa_free(l);
	return err;
}

static int
xa_cmp(uint8_t ia, uint8_t la, const char *na, uint8_t ib, uint8_t lb, const char *nb)
{
	if (ia != ib)
		return ia < ib ? -1 : 1;
	if (la != lb)
		return la < lb ? -1 : 1;
	return memcmp(na, nb, la);
}

static int
xa_entry_cmp(const void *a, const void *b)
{
	const struct xa_entry *x = a, *y = b;
	return xa_cmp(x->index, x->nlen, x->name, y->index, y->nlen, y->name);
}

/* The entry of (index, name), or -1. */
static int
xa_find(const struct xa_list *l, uint8_t index, const char *name)
{
	size_t nl = strlen(name);
	for (unsigned k = 0; k < l->n; k++)
		if (!xa_cmp(l->e[k].index, l->e[k].nlen, l->e[k].name, index, (uint8_t)nl, name))
			return (int)k;
	return -1;
}

/* The kernel's entry hash: the name bytes (as signed chars, as the
 * kernel's ext2 reads them on x86), then the value in 32-bit words. */
static uint32_t
xa_entry_hash(const uint8_t *entry, const uint8_t *block)
{
	uint32_t h = 0;
	const signed char *name = (const signed char *)entry + XA_ENTRY;
	for (unsigned k = 0; k < entry[0]; k++)
		h = (h << 5) ^ (h >> 27) ^ (uint32_t)(int32_t)name[k];
	uint32_t size = rd32(entry + 8);
	if (size) {
		const uint8_t *v = block + rd16(entry + 2);
		for (uint32_t k = 0; k < XA_VALUE_LEN(size); k += 4)
			h = (h << 16) ^ (h >> 16) ^ rd32(v + k);
	}
	return h;
}

/* Lay out the entries of l (sorted) into out, a zeroed block.
 * -ENOSPC if they do not fit. */
static int
xa_build(const struct xa_list *l, uint8_t *out, unsigned bs)
{
	size_t need = XA_HDR + 4;
	for (unsigned k = 0; k < l->n; k++)
		need += XA_ENTRY_LEN(l->e[k].nlen) + XA_VALUE_LEN(l->e[k].size);
	if (need > bs)
		return -ENOSPC;
	memset(out, 0, bs);
	wr32(out, XA_MAGIC);
	wr32(out + 4, 1);
	wr32(out + 8, 1);
	unsigned p = XA_HDR, v = bs;
	uint32_t bhash = 0;
	for (unsigned k = 0; k < l->n; k++) {
		const struct xa_entry *e = &l->e[k];
		uint8_t *ent = out + p;
		ent[0] = e->nlen;
		ent[1] = e->index;
		if (e->size) {
			v -= XA_VALUE_LEN(e->size);
			memcpy(out + v, e->value, e->size);
			wr16(ent + 2, (uint16_t)v);
		}
		wr32(ent + 8, e->size);
		memcpy(ent + XA_ENTRY, e->name, e->nlen);
		uint32_t h = xa_entry_hash(ent, out);
		wr32(ent + 12, h);
		bhash = (bhash << 16) ^ (bhash >> 16) ^ h;
		p += XA_ENTRY_LEN(e->nlen);
	}
	wr32(out + 12, bhash);
	return 0;
}

/* Drop one reference to blk (the inode no longer uses it); the block is
 * freed with its last. */
static void
xa_put_block(struct inode *inode, uint64_t blk)
{
	struct super_block *sb = inode->i_sb;
	struct buffer_head *bh;
	if (!pw__ext2_data_block_ok(sb, blk) || sb_bread(sb, blk, &bh)) {
		xa_bad(inode, blk, "unreadable when released");
		return;
	}
	uint8_t *h = (uint8_t *)bh->b_data;
	bool last = false;
	lock_buffer(bh);
	if (rd32(h) != XA_MAGIC || rd32(h + 4) == 0) {
		unlock_buffer(bh);
		brelse(bh);
		xa_bad(inode, blk, "bad header when released");
		return;
	}
	wr32(h + 4, rd32(h + 4) - 1);
	last = rd32(h + 4) == 0;
	unlock_buffer(bh);
	mark_buffer_dirty(bh);
	brelse(bh);
	if (last)
		pw__ext2_free_block(sb, blk);
}

static void
xa_blocks_add(struct inode *inode, int sign)
{
	struct ext2_inode_info *ei = EXT2_I(inode);
	uint64_t b = inode->i_sb->s_blocksize >> 9;
	pthread_mutex_lock(&ei->ei_map_lock);
	if (sign > 0)
		inode->i_blocks += b;
	else
		inode->i_blocks -= PW_MIN(inode->i_blocks, b);
	pthread_mutex_unlock(&ei->ei_map_lock);
}

/* Eviction of an unlinked inode: its reference to the block goes. */
void
pw__ext2_xattr_release(struct inode *inode)
{
	uint64_t blk = xa_block(inode);
	if (!blk)
		return;
	__atomic_store_n(&EXT2_I(inode)->ei_file_acl, 0, __ATOMIC_RELAXED);
	xa_put_block(inode, blk);
	xa_blocks_add(inode, -1);
}

/* The first attribute written to a filesystem without the ext_attr
 * feature turns it on, as the kernel does; e2fsck requires it. */
static void
xa_feature_on(struct super_block *sb)
{
	struct ext2_sb_info *sbi = EXT2_SB(sb);
	pthread_mutex_lock(&sbi->s_alloc_lock);
	bool set = le32(sbi->s_es->s_feature_compat) & EXT2_FEATURE_COMPAT_EXT_ATTR;
	if (!set) {
		lock_buffer(sbi->s_sbh);
		sbi->s_es->s_feature_compat =
		    cpu32(le32(sbi->s_es->s_feature_compat) | EXT2_FEATURE_COMPAT_EXT_ATTR);
		unlock_buffer(sbi->s_sbh);
	}
	pthread_mutex_unlock(&sbi->s_alloc_lock);
	if (!set)
		mark_buffer_dirty(sbi->s_sbh);
}

ssize_t
pw__ext2_getxattr(struct inode *inode, const char *name, void *buf, size_t size)
{
	uint8_t index;
	const char *suffix;
	int err = xa_split(name, &index, &suffix);
	if (err)
		return err;
	struct xa_list l;
	if ((err = xa_load(inode, &l)))
		return err;
	int k = xa_find(&l, index, suffix);
	ssize_t r = -ENODATA;
	if (k >= 0) {
		r = (ssize_t)l.e[k].size;
		if (size && l.e[k].size > size)
			r = -ERANGE;
		else if (size)
			memcpy(buf, l.e[k].value, l.e[k].size);
	}
	xa_free(&l);
	return r;
}

ssize_t
pw__ext2_listxattr(struct inode *inode, char *buf, size_t size)
{
	struct xa_list l;
	int err = xa_load(inode, &l);
	if (err)
		return err;
	size_t used = 0;
	ssize_t r = 0;
	for (unsigned k = 0; k < l.n; k++) {
		const char *pre = xa_prefix(l.e[k].index);
		if (!pre)
			continue;
		size_t pl = strlen(pre), len = pl + l.e[k].nlen + 1;
		if (size && used + len > size) {
			r = -ERANGE;
			break;
		}
		if (size) {
			memcpy(buf + used, pre, pl);
			memcpy(buf + used + pl, l.e[k].name, l.e[k].nlen);
			buf[used + len - 1] = 0;
		}
		used += len;
	}
	xa_free(&l);
	return r ? r : (ssize_t)used;
}

int
pw__ext2_setxattr(struct inode *inode, const char *name, const void *value,
                  size_t size, int flags)
{
	struct super_block *sb = inode->i_sb;
	unsigned bs = (unsigned)sb->s_blocksize;
	uint8_t index;
	const char *suffix;
	int err = xa_split(name, &index, &suffix);
	if (err)
		return err;
	if (S_ISLNK(inode->i_mode))
		return -EPERM;
	if (value && size > bs - XA_HDR - 4 - XA_ENTRY_LEN(strlen(suffix)))
		return -ENOSPC;
	struct xa_list l;
	if ((err = xa_load(inode, &l)))
		return err;
	/* In the kernel's order, the in-inode entries among the others. */
	qsort(l.e, l.n, sizeof(l.e[0]), xa_entry_cmp);
	int k = xa_find(&l, index, suffix);
	if (k >= 0 && (flags & XATTR_CREATE)) {
		xa_free(&l);
		return -EEXIST;
	}
	if (k < 0 && (!value || (flags & XATTR_REPLACE))) {
		xa_free(&l);
		return -ENODATA;
	}
	/* The new list: remove, replace in place, or insert in order. */
	if (!value) {
		memmove(&l.e[k], &l.e[k + 1], (l.n - (unsigned)k - 1) * sizeof(l.e[0]));
		l.n--;
	} else if (k >= 0) {
		l.e[k].value = value;
		l.e[k].size = (uint32_t)size;
	} else {
		if (l.n + 1 >= bs / XA_ENTRY) {
			xa_free(&l);
			return -ENOSPC;
		}
		uint8_t nl = (uint8_t)strlen(suffix);
		unsigned at = 0;
		while (at < l.n && xa_cmp(l.e[at].index, l.e[at].nlen, l.e[at].name, index, nl,
		                          suffix) < 0)
			at++;
		memmove(&l.e[at + 1], &l.e[at], (l.n - at) * sizeof(l.e[0]));
		l.e[at] = (struct xa_entry){.index = index, .nlen = nl, .size = (uint32_t)size,
		                            .name = suffix, .value = value};
		l.n++;
	}
	uint64_t old = xa_block(inode);
	bool in_inode = l.in_inode > 0;
	if (l.n == 0) {
		/* Nothing left: the inode lets go of its block. */
		xa_free(&l);
		if (old)
			pw__ext2_xattr_release(inode);
		return in_inode ? xa_clear_in_inode(inode) : 0;
	}
	uint8_t *nb = malloc(bs);
	if (!nb) {
		xa_free(&l);
		return -ENOMEM;
	}
	err = xa_build(&l, nb, bs);
	bool shared = old && l.refcount > 1;
	xa_free(&l);
	if (err) {
		free(nb);
		return err;
	}
	struct buffer_head *bh;
	uint64_t blk = old;
	if (old && !shared) {
		/* Ours alone: rewrite it in place. */
		if ((err = sb_bread(sb, old, &bh))) {
			free(nb);
			return err;
		}
	} else {
		struct ext2_inode_info *ei = EXT2_I(inode);
		uint64_t goal = ext2_group_first_block(EXT2_SB(sb), ei->ei_group);
		if ((err = pw__ext2_new_block(sb, goal, &blk))) {
			free(nb);
			return err;
		}
		if ((err = sb_getblk(sb, blk, &bh))) {
			pw__ext2_free_block(sb, blk);
			free(nb);
			return err;
		}
		xa_feature_on(sb);
	}
	lock_buffer(bh); /* writeback may be copying the block out */
	memcpy(bh->b_data, nb, bs);
	set_buffer_Uptodate(bh);
	unlock_buffer(bh);
	mark_buffer_dirty(bh);
	brelse(bh);
	free(nb);
	if (blk != old) {
		/* ei_file_acl first, then i_blocks: see the header (no
		 * symlinks here, but keep the one order). */
		__atomic_store_n(&EXT2_I(inode)->ei_file_acl, (uint32_t)blk, __ATOMIC_RELAXED);
		if (old)
			xa_put_block(inode, old); /* shared: i_blocks stays */
		else
			xa_blocks_add(inode, 1);
	}
	/* Every attribute is in the block now. */
	return in_inode ? xa_clear_in_inode(inode) : 0;
}

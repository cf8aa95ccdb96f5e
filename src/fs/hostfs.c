/*
 * hostfs.c - a filesystem whose files are the files of a host directory.
 *
 * The mount's source is a host directory; every pagewright file below it
 * is the host file of the same relative name.  Pages are filled with
 * pread and written back with pwrite; i_size, not the host's st_size, is
 * the truth while the filesystem is mounted (dirty pages may not have
 * reached the host yet), so reads never look past i_size and writeback
 * never writes past it.  Bytes past i_size in a page are always zero.
 *
 * Inodes and host descriptors.  Each cached inode holds one open host
 * descriptor in its hostfs_inode: regular files O_RDWR (O_RDONLY, then
 * O_PATH when the host refuses), directories O_RDONLY|O_DIRECTORY, and
 * anything else (symlinks, fifos, devices) O_PATH|O_NOFOLLOW, a handle
 * that allows no I/O.  Holding it makes host renames harmless, makes an
 * unlinked file live on while open, and pins the host inode number, so
 * (st_dev, st_ino) names at most one live host file and can key the
 * inode table.  Every namespace operation is an *at() call relative to
 * the parent's descriptor, and names are single components: nothing can
 * walk out of the source directory.  hs_iget_lock makes "ilookup, else
 * new_inode and insert_inode_hash" atomic, so two threads never make two
 * inodes for one host file.
 *
 * Two aops modes.  By default write_begin/write_end with the SPEC
 * section 2 contract, block style with one block per page: write_begin
 * reads a partly covered page from the host (or zeroes around the write
 * if the page lies past EOF), write_end refuses a short copy into a page
 * that is not uptodate.  With the mount option legacy_aops the inodes get
 * only prepare_write/commit_write, so the same filesystem runs on the
 * generic 2copy path (SPEC section 4).
 *
 * Lock context (docs/LOCKING.md): readpage and writepage are called with
 * the page locked and unlock it; readpage also runs in the fault handler,
 * so it must not call malloc.  writepages (one pwritev per run of
 * consecutive dirty pages) gets pages locked from write_cache_pages,
 * unlocks them at once and ends their writeback when their run is
 * written.  write_begin..write_end, prepare_write and
 * commit_write run under i_rwsem with the page locked in between; i_size
 * is raised under that page lock.  setattr(ATTR_SIZE) and the namespace
 * operations run under the i_rwsem of the inode or parent directories.
 *
 * Lock ordering: hs_iget_lock -> s_inode_lock (ilookup, insert_inode_hash).
 */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <unistd.h>

#define HOST_RD 0x1 /* the descriptor can pread */
#define HOST_WR 0x2 /* the descriptor can pwrite and ftruncate */

struct hostfs_sb {
	int hs_root_fd;               /* (C) the source directory */
	dev_t hs_dev;                 /* (C) its st_dev */
	bool hs_legacy;               /* (C) mounted with legacy_aops */
	pthread_mutex_t hs_iget_lock; /* lookup-or-create of inodes */
};

struct hostfs_inode {
	int hi_fd;          /* (C) open host descriptor, never -1 */
	unsigned hi_access; /* (C) HOST_RD | HOST_WR */
	mode_t hi_type;     /* (C) S_IFMT bits */
	dev_t hi_dev;       /* (C) host identity */
	ino_t hi_ino;       /* (C) */
};

/* write_begin's cookie for write_end: this is a zero-length expand. */
static char hostfs_cont_expand;

static const struct inode_operations hostfs_iops;
static const struct super_operations hostfs_sops;
static const struct address_space_operations hostfs_aops;
static const struct address_space_operations hostfs_legacy_aops;

static struct hostfs_sb *
HOSTFS_SB(struct super_block *sb)
{
	return sb->s_fs_info;
}

static struct hostfs_inode *
HOSTFS_I(struct inode *inode)
{
	return inode->i_private;
}

static int
host_fd(struct inode *inode)
{
	return HOSTFS_I(inode)->hi_fd;
}

static loff_t
hostfs_page_pos(struct page *page)
{
	return (loff_t)page->index << PAGE_SHIFT;
}

/* --------------------------------------------------------- host I/O */

/* Read the page's bytes below i_size from the host, zero the rest.
 * Page locked.  No malloc and no locks: the fault handler calls this. */
static int
hostfs_fill_page(struct inode *inode, struct page *page)
{
	struct hostfs_inode *hi = HOSTFS_I(inode);
	char *kaddr = page_address(page);
	loff_t off = hostfs_page_pos(page), isize = i_size_read(inode);
	size_t want = off < isize ? (size_t)PW_MIN((loff_t)PAGE_SIZE, isize - off) : 0;
	size_t done = 0;

	if (want && !(hi->hi_access & HOST_RD))
		return S_ISREG(hi->hi_type) ? -EACCES : -EINVAL;
	while (done < want) {
		ssize_t n = pread(hi->hi_fd, kaddr + done, want - done, off + (loff_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break; /* the host file is shorter: a hole not yet written back */
		done += (size_t)n;
	}
	zero_user_segment(page, (unsigned)done, PAGE_SIZE);
	return 0;
}

/* ->read_direct: the host file's bytes straight into the caller's buffer;
 * what lies past the host file's end (a hole not yet written back) reads
 * as zeros. */
static ssize_t
hostfs_read_direct(struct inode *inode, void *buf, size_t len, loff_t pos)
{
	struct hostfs_inode *hi = HOSTFS_I(inode);
	size_t done = 0;
	if (len && !(hi->hi_access & HOST_RD))
		return S_ISREG(hi->hi_type) ? -EACCES : -EINVAL;
	while (done < len) {
		ssize_t n = pread(hi->hi_fd, (char *)buf + done, len - done, pos + (loff_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return done ? (ssize_t)done : -errno;
		if (n == 0) {
			if (clear_user((char *)buf + done, len - done))
				return done ? (ssize_t)done : -EFAULT;
			return (ssize_t)len;
		}
		done += (size_t)n;
	}
	return (ssize_t)done;
}

/* Write the page's bytes below i_size to the host.  Page locked. */
static int
hostfs_write_out(struct inode *inode, struct page *page)
{
	struct hostfs_inode *hi = HOSTFS_I(inode);
	const char *kaddr = page_address(page);
	loff_t off = hostfs_page_pos(page), isize = i_size_read(inode);
	size_t done = 0, want;

	if (off >= isize)
		return 0; /* truncated meanwhile: never extend the host past EOF */
	if (!(hi->hi_access & HOST_WR))
		return -EACCES;
	want = (size_t)PW_MIN((loff_t)PAGE_SIZE, isize - off);
	while (done < want) {
		ssize_t n = pwrite(hi->hi_fd, kaddr + done, want - done, off + (loff_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		done += (size_t)n;
	}
	return 0;
}

/* Grow the host file to size for an i_size raise that dirties no page
 * (a zero-length expand), so that fsync finds the new size there too. */
static int
hostfs_expand(struct inode *inode, loff_t size)
{
	struct stat st;
	if (fstat(host_fd(inode), &st) != 0)
		return -errno;
	if (st.st_size < size && ftruncate(host_fd(inode), size) != 0)
		return -errno;
	i_size_write(inode, size);
	mark_inode_dirty(inode);
	return 0;
}

/* No malloc: page_mkwrite calls this from the fault handler. */
static int
hostfs_may_write(struct inode *inode)
{
	struct hostfs_inode *hi = HOSTFS_I(inode);
	if (inode->i_sb->s_flags & SB_RDONLY)
		return -EROFS;
	if (!S_ISREG(hi->hi_type))
		return -EINVAL;
	return (hi->hi_access & HOST_WR) ? 0 : -EACCES;
}

/* ------------------------------------------------ address-space ops */

/*
 * ->readahead: one preadv for a run of new pages of consecutive indices
 * (their frames need not be adjacent).  What lies past the host file's
 * end or i_size reads as zeroes.  Runs in the fault handler too: the
 * iovec array is on the stack.
 */
static void
hostfs_readahead(struct file *file, struct address_space *mapping,
                 struct page **pages, unsigned nr)
{
	(void)file;
	struct inode *inode = mapping->host;
	struct hostfs_inode *hi = HOSTFS_I(inode);
	struct iovec iov[PW_FAULT_AROUND];
	loff_t off = hostfs_page_pos(pages[0]), isize = i_size_read(inode);
	size_t want = off < isize ? (size_t)PW_MIN((loff_t)nr * (loff_t)PAGE_SIZE, isize - off) : 0;
	ssize_t got = 0;
	nr = PW_MIN(nr, (unsigned)PW_FAULT_AROUND);
	for (unsigned k = 0; k < nr; k++) {
		iov[k].iov_base = page_address(pages[k]);
		iov[k].iov_len = PAGE_SIZE;
	}
	if (want && (hi->hi_access & HOST_RD)) {
		unsigned cnt = (unsigned)((want + PAGE_SIZE - 1) / PAGE_SIZE);
		iov[cnt - 1].iov_len = want - (size_t)(cnt - 1) * PAGE_SIZE;
		do
			got = preadv(hi->hi_fd, iov, (int)cnt, off);
		while (got < 0 && errno == EINTR);
	}
	for (unsigned k = 0; k < nr; k++) {
		struct page *page = pages[k];
		size_t start = (size_t)k * PAGE_SIZE;
		bool short_read = got >= 0 && (size_t)got < want && (size_t)got < start + PAGE_SIZE;
		if (got < 0 || (want && !(hi->hi_access & HOST_RD))) {
			SetPageError(page);
		} else if (short_read && hostfs_fill_page(inode, page) != 0) {
			/* A short preadv: this page and later ones one by one. */
			SetPageError(page);
		} else {
			if (!short_read) {
				size_t have = want > start ? PW_MIN(want - start, PAGE_SIZE) : 0;
				zero_user_segment(page, (unsigned)have, PAGE_SIZE);
			}
			SetPageUptodate(page);
		}
		unlock_page(page);
	}
}

static int
hostfs_readpage(struct file *file, struct page *page)
{
	(void)file;
	int err = hostfs_fill_page(page->mapping->host, page);
	if (err) {
		SetPageError(page);
	} else {
		ClearPageError(page);
		SetPageUptodate(page);
	}
	unlock_page(page);
	return err;
}

/* Error injection for tests (pw__hooks.host_write), else 0. */
static int
hostfs_injected(struct inode *inode)
{
	/* Set by tests while other threads write: loaded atomically. */
	int (*hook)(struct inode *) = __atomic_load_n(&pw__hooks.host_write, __ATOMIC_ACQUIRE);
	return hook ? hook(inode) : 0;
}

static int
hostfs_writepage(struct page *page, struct writeback_control *wbc)
{
	struct address_space *mapping = page->mapping;
	int err = hostfs_injected(mapping->host);
	if (!err)
		err = hostfs_write_out(mapping->host, page);
	wbc->nr_ios++;
	if (err) {
		mapping_set_error(mapping, err);
		SetPageError(page);
	}
	unlock_page(page);
	end_page_writeback(page);
	return err;
}

/*
 * ->writepages: pages of consecutive indices are written with one pwritev
 * (up to HOSTFS_WB_MAX pages, 1 MiB).  A page enters the batch unlocked
 * and under writeback (write_cache_pages), with its length below i_size
 * taken then: only the EOF page is partial, and it ends a run, so the host
 * file never grows past i_size.  A failed pwritev fails every page of its
 * run (the error goes to the mapping, reported by the next fsync of each
 * open file).  Writers and write faults wait for the batch (stable pages:
 * they wait on writeback), so the bytes do not change while in flight.
 */
#define HOSTFS_WB_MAX 256

struct hostfs_wb {
	struct writeback_batch b;
	struct inode *inode;
	loff_t pos;      /* file offset of pages[0] */
	size_t len;      /* bytes batched */
	struct page *pages[HOSTFS_WB_MAX];
	struct iovec iov[HOSTFS_WB_MAX];
};

/* pwritev the whole batch, resuming after short writes.  0 or -errno. */
static int
hostfs_pwritev_all(int fd, struct iovec *iov, int cnt, loff_t pos,
                   struct writeback_control *wbc)
{
	while (cnt > 0) {
		ssize_t n = pwritev(fd, iov, cnt, pos);
		wbc->nr_ios++;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		pos += n;
		while (cnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

static int
hostfs_wb_submit(struct writeback_batch *b, struct writeback_control *wbc)
{
	struct hostfs_wb *w = (struct hostfs_wb *)b;
	unsigned nr = b->nr_pages;
	int err = hostfs_injected(w->inode);
	if (!err)
		err = hostfs_pwritev_all(host_fd(w->inode), w->iov, (int)nr, w->pos, wbc);
	/* Background writeback: start the host's own write of these bytes
	 * now.  A page cache's writeback means "on its way to the device";
	 * leaving them in the host's cache until the fsync would make that
	 * fsync wait for all of them at once instead of overlapping the
	 * disk with the writer.  Best effort: a host that refuses is asked
	 * again by fsync, which reports any error. */
	if (!err && !wbc->sync && w->len >= PW_START_IO_MIN && pw__start_io_enabled)
		(void)sync_file_range(host_fd(w->inode), w->pos, (off64_t)w->len,
		                      SYNC_FILE_RANGE_WRITE);
	for (unsigned k = 0; k < nr; k++) {
		if (err) {
			mapping_set_error(w->pages[k]->mapping, err);
			SetPageError(w->pages[k]);
		}
		end_page_writeback(w->pages[k]);
	}
	b->nr_pages = 0;
	w->len = 0;
	return err;
}

static int
hostfs_wb_add(struct writeback_batch *b, struct page *page,
              struct writeback_control *wbc)
{
	struct hostfs_wb *w = (struct hostfs_wb *)b;
	struct inode *inode = page->mapping->host;
	loff_t off = hostfs_page_pos(page), isize = i_size_read(inode);
	int err = 0;
	if (off >= isize || !(HOSTFS_I(inode)->hi_access & HOST_WR)) {
		/* Truncated meanwhile: never extend the host past EOF. */
		if (off < isize) {
			err = -EACCES;
			mapping_set_error(page->mapping, err);
			SetPageError(page);
		}
		unlock_page(page);
		end_page_writeback(page);
		return err;
	}
	size_t want = (size_t)PW_MIN((loff_t)PAGE_SIZE, isize - off);
	unsigned nr = b->nr_pages;
	if (nr && (nr == HOSTFS_WB_MAX || w->pos + (loff_t)w->len != off ||
	           w->iov[nr - 1].iov_len != PAGE_SIZE))
		err = hostfs_wb_submit(b, wbc);
	nr = b->nr_pages;
	if (nr == 0)
		w->pos = off;
	w->pages[nr] = page;
	w->iov[nr].iov_base = page_address(page);
	w->iov[nr].iov_len = want;
	w->len += want;
	b->nr_pages = nr + 1;
	unlock_page(page);
	return err;
}

static int
hostfs_writepages(struct address_space *mapping, struct writeback_control *wbc)
{
	struct hostfs_wb w; /* the arrays are filled as pages come */
	w.b = (struct writeback_batch){.add = hostfs_wb_add, .submit = hostfs_wb_submit};
	w.inode = mapping->host;
	w.pos = 0;
	w.len = 0;
	return write_cache_pages(mapping, wbc, &w.b);
}

/* Make the bytes of a locked, not uptodate page outside [from, from+len)
 * valid.  A page wholly past EOF has nothing on the host: zero around the
 * write but leave it not uptodate, since [from, from+len) is still
 * garbage until write_end sees a full copy. */
static int
hostfs_prepare_partial(struct inode *inode, struct page *page, unsigned from,
                       unsigned len)
{
	if (hostfs_page_pos(page) >= i_size_read(inode)) {
		zero_user_segment(page, 0, from);
		zero_user_segment(page, from + len, PAGE_SIZE);
		return 0;
	}
	int err = hostfs_fill_page(inode, page);
	if (err)
		return err;
	ClearPageError(page);
	SetPageUptodate(page);
	return 0;
}

static int
hostfs_write_begin(struct file *file, struct address_space *mapping, loff_t pos,
                   unsigned len, unsigned flags, struct page **pagep,
                   void **fsdata)
{
	(void)file;
	struct inode *inode = mapping->host;
	int err = hostfs_may_write(inode);
	if (err)
		return err;
	struct page *page =
	    grab_cache_page_write_begin(mapping, (pgoff_t)pos >> PAGE_SHIFT, flags);
	if (!page)
		return -ENOMEM;
	if (!PageUptodate(page) && len != PAGE_SIZE) {
		unsigned from = (unsigned)(pos & (loff_t)(PAGE_SIZE - 1));
		err = hostfs_prepare_partial(inode, page, from, len);
		if (err) {
			/* Nothing was allocated on the host: nothing to trim. */
			unlock_page(page);
			put_page(page);
			return err;
		}
	}
	*fsdata = (flags & AOP_FLAG_CONT_EXPAND) ? &hostfs_cont_expand : NULL;
	*pagep = page;
	return 0;
}

static int
hostfs_write_end(struct file *file, struct address_space *mapping, loff_t pos,
                 unsigned len, unsigned copied, struct page *page, void *fsdata)
{
	(void)file;
	struct inode *inode = mapping->host;
	int ret = 0;

	if (!PageUptodate(page)) {
		/* write_begin made everything outside the range valid, so only a
		 * full copy makes the page valid.  A short one is refused: the
		 * generic loop retries with a length it can copy. */
		if (copied < len)
			copied = 0;
		else if (copied > 0)
			SetPageUptodate(page);
	}
	if (copied > 0) {
		set_page_dirty(page);
		/* Under the page lock, or writeback of this page could see the
		 * old i_size and leave the new bytes off the host. */
		if (pos + copied > i_size_read(inode)) {
			i_size_write(inode, pos + copied);
			mark_inode_dirty(inode);
		}
		ret = (int)copied;
	} else if (fsdata == &hostfs_cont_expand && pos > i_size_read(inode)) {
		ret = hostfs_expand(inode, pos);
	}
	unlock_page(page);
	put_page(page);
	return ret;
}

/* Legacy: make the page uptodate unless [from, to) covers all of it; the
 * bytes about to be overwritten are valid old data meanwhile. */
static int
hostfs_prepare_write(struct file *file, struct page *page, unsigned from,
                     unsigned to)
{
	(void)file;
	struct inode *inode = page->mapping->host;
	int err = hostfs_may_write(inode);
	if (err || PageUptodate(page) || (from == 0 && to == PAGE_SIZE))
		return err;
	err = hostfs_fill_page(inode, page);
	if (err)
		return err;
	ClearPageError(page);
	SetPageUptodate(page);
	return 0;
}

static int
hostfs_commit_write(struct file *file, struct page *page, unsigned from,
                    unsigned to)
{
	(void)file;
	struct inode *inode = page->mapping->host;
	loff_t end = hostfs_page_pos(page) + to;

	if (from == to)
		return end > i_size_read(inode) ? hostfs_expand(inode, end) : 0;
	if (!PageUptodate(page)) {
		if (from != 0 || to != PAGE_SIZE)
			return -EIO; /* prepare_write failed to fill it: a bug */
		SetPageUptodate(page);
	}
	set_page_dirty(page);
	if (end > i_size_read(inode)) {
		i_size_write(inode, end);
		mark_inode_dirty(inode);
	}
	return 0;
}

static int
hostfs_page_mkwrite(struct vm_area_struct *vma, struct page *page)
{
	(void)vma;
	return hostfs_may_write(page->mapping->host);
}

static const struct address_space_operations hostfs_aops = {
	.readpage = hostfs_readpage,
	.readahead = hostfs_readahead,
	.writepage = hostfs_writepage,
	.writepages = hostfs_writepages,
	.write_begin = hostfs_write_begin,
	.write_end = hostfs_write_end,
	.page_mkwrite = hostfs_page_mkwrite,
	.read_direct = hostfs_read_direct,
};

static const struct address_space_operations hostfs_legacy_aops = {
	.readpage = hostfs_readpage,
	.readahead = hostfs_readahead,
	.writepage = hostfs_writepage,
	.writepages = hostfs_writepages,
	.prepare_write = hostfs_prepare_write,
	.commit_write = hostfs_commit_write,
	.page_mkwrite = hostfs_page_mkwrite,
	.read_direct = hostfs_read_direct,
};

/* ------------------------------------------------------------ inodes */

/* Mix in st_dev for files on other host filesystems mounted below the
 * source, whose inode numbers may collide with ours. */
static uint64_t
hostfs_ino(const struct hostfs_sb *hs, const struct stat *st)
{
	if (st->st_dev == hs->hs_dev)
		return st->st_ino;
	return st->st_ino ^ ((uint64_t)st->st_dev * 0x9E3779B97F4A7C15ULL);
}

static bool
hostfs_same(const struct hostfs_inode *hi, const struct stat *st)
{
	return hi->hi_dev == st->st_dev && hi->hi_ino == st->st_ino;
}

static void
hostfs_fill_inode(struct inode *inode, const struct stat *st)
{
	inode->i_mode = st->st_mode;
	inode->i_uid = st->st_uid;
	inode->i_gid = st->st_gid;
	atomic_store(&inode->i_nlink, (unsigned)st->st_nlink);
	i_size_write(inode, st->st_size);
	inode_time_set(&inode->i_atime, st->st_atim);
	inode_time_set(&inode->i_mtime, st->st_mtim);
	inode_time_set(&inode->i_ctime, st->st_ctim);
	inode->i_blocks = (uint64_t)st->st_blocks;
}

/* A new inode for the host file open on fd (ownership of fd passes). */
static int
hostfs_new_inode(struct super_block *sb, int fd, const struct stat *st,
                 unsigned access, struct inode **res)
{
	struct hostfs_sb *hs = HOSTFS_SB(sb);
	struct hostfs_inode *hi = malloc(sizeof(*hi));
	struct inode *inode = NULL;
	if (hi)
		inode = new_inode(sb, hostfs_ino(hs, st),
		                  hs->hs_legacy ? &hostfs_legacy_aops : &hostfs_aops);
	if (!inode) {
		free(hi);
		close(fd);
		return -ENOMEM;
	}
	*hi = (struct hostfs_inode){.hi_fd = fd, .hi_access = access,
	                            .hi_type = st->st_mode & S_IFMT,
	                            .hi_dev = st->st_dev, .hi_ino = st->st_ino};
	hostfs_fill_inode(inode, st);
	inode->i_op = &hostfs_iops;
	inode->i_private = hi;
	insert_inode_hash(inode);
	*res = inode;
	return 0;
}

/* Find the inode of the host file open on fd, or make it.  Ownership of
 * fd passes; it is closed if an inode already exists. */
static int
hostfs_iget(struct super_block *sb, int fd, const struct stat *st,
            unsigned access, struct inode **res)
{
	struct hostfs_sb *hs = HOSTFS_SB(sb);
	pthread_mutex_lock(&hs->hs_iget_lock);
	struct inode *inode = ilookup(sb, hostfs_ino(hs, st));
	if (!inode) {
		int err = hostfs_new_inode(sb, fd, st, access, res);
		pthread_mutex_unlock(&hs->hs_iget_lock);
		return err;
	}
	pthread_mutex_unlock(&hs->hs_iget_lock);
	close(fd);
	if (!hostfs_same(HOSTFS_I(inode), st)) {
		pw_log("hostfs: inode number %llu names two host files",
		       (unsigned long long)inode->i_ino);
		iput(inode);
		return -ESTALE;
	}
	*res = inode;
	return 0;
}

/* Copy a name component into buf as a C string.  Refuse anything that
 * is not a single component, so no name can leave the directory. */
static int
hostfs_name(const char *name, size_t len, char *buf)
{
	if (len == 0)
		return -ENOENT;
	if (len > NAME_MAX)
		return -ENAMETOOLONG;
	if (memchr(name, '/', len) || memchr(name, 0, len) ||
	    (name[0] == '.' && (len == 1 || (len == 2 && name[1] == '.'))))
		return -EINVAL;
	memcpy(buf, name, len);
	buf[len] = 0;
	return 0;
}

/* One attempt at opening name for an inode; fallbacks for when the host
 * refuses the access we would like. */
static int
hostfs_open_as(int dirfd, const char *name, int flags, unsigned access,
               unsigned *accessp)
{
	int fd = openat(dirfd, name, flags | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0)
		*accessp = access;
	return fd >= 0 ? fd : -errno;
}

static int
hostfs_open_typed(struct super_block *sb, int dirfd, const char *name,
                  mode_t type, unsigned *access)
{
	/* O_NONBLOCK and O_NOCTTY: should the entry have become a fifo or a
	 * terminal since fstatat, opening it must not block or adopt it. */
	const int io = O_NONBLOCK | O_NOCTTY;
	int fd = -EACCES;
	if (S_ISDIR(type)) {
		fd = hostfs_open_as(dirfd, name, O_RDONLY | O_DIRECTORY, HOST_RD, access);
		if (fd == -EACCES)
			fd = hostfs_open_as(dirfd, name, O_PATH | O_DIRECTORY, 0, access);
		return fd;
	}
	if (!S_ISREG(type))
		return hostfs_open_as(dirfd, name, O_PATH, 0, access);
	if (!(sb->s_flags & SB_RDONLY))
		fd = hostfs_open_as(dirfd, name, O_RDWR | io, HOST_RD | HOST_WR, access);
	if (fd == -EACCES || fd == -EPERM || fd == -EROFS || fd == -ETXTBSY)
		fd = hostfs_open_as(dirfd, name, O_RDONLY | io, HOST_RD, access);
	if (fd == -EACCES || fd == -EPERM)
		fd = hostfs_open_as(dirfd, name, O_PATH, 0, access);
	return fd;
}

/* Open name in dir and check that it is still what fstatat saw.
 * Return: a descriptor, -EAGAIN if the entry changed meanwhile, -errno. */
static int
hostfs_open_entry(struct super_block *sb, int dirfd, const char *name,
                  struct stat *st, unsigned *access)
{
	struct stat now;
	int fd = hostfs_open_typed(sb, dirfd, name, st->st_mode & S_IFMT, access);
	if (fd == -ELOOP || fd == -ENOTDIR || fd == -EISDIR)
		return -EAGAIN; /* replaced by another type since fstatat */
	if (fd < 0)
		return fd;
	if (fstat(fd, &now) != 0 || now.st_dev != st->st_dev ||
	    now.st_ino != st->st_ino || (now.st_mode & S_IFMT) != (st->st_mode & S_IFMT)) {
		close(fd);
		return -EAGAIN;
	}
	*st = now;
	return fd;
}

/* The inode for the host entry cname in dir, with a reference. */
static int
hostfs_lookup_name(struct inode *dir, const char *cname, struct inode **res)
{
	struct super_block *sb = dir->i_sb;
	for (int tries = 0; tries < 4; tries++) {
		struct stat st;
		unsigned access;
		if (fstatat(host_fd(dir), cname, &st, AT_SYMLINK_NOFOLLOW) != 0)
			return -errno;
		/* A cached inode's descriptor pins its host inode number, so a
		 * match here is the same host file: no need to open it. */
		struct inode *inode = ilookup(sb, hostfs_ino(HOSTFS_SB(sb), &st));
		if (inode && hostfs_same(HOSTFS_I(inode), &st)) {
			*res = inode;
			return 0;
		}
		iput(inode);
		int fd = hostfs_open_entry(sb, host_fd(dir), cname, &st, &access);
		if (fd == -EAGAIN)
			continue;
		if (fd < 0)
			return fd;
		return hostfs_iget(sb, fd, &st, access, res);
	}
	return -ESTALE;
}

/* Pick up the link count the host now has, and its ctime if the caller
 * holds the inode's i_rwsem (link, unlink; not a rename's victim); the
 * fallback is the change the caller expects. */
static void
hostfs_refresh_nlink(struct inode *inode, int delta, bool locked)
{
	struct stat st;
	if (fstat(host_fd(inode), &st) == 0) {
		atomic_store(&inode->i_nlink, (unsigned)st.st_nlink);
		if (locked)
			inode->i_ctime = st.st_ctim;
	} else if (delta < 0 && atomic_load(&inode->i_nlink) > 0) {
		atomic_fetch_sub(&inode->i_nlink, 1);
	} else if (delta > 0) {
		atomic_fetch_add(&inode->i_nlink, 1);
	}
}

/* The /proc name of a host descriptor, for the calls that take no
 * O_PATH descriptor (utimensat, and linkat without privilege). */
static void
hostfs_proc_path(int fd, char *buf, size_t n)
{
	snprintf(buf, n, "/proc/self/fd/%d", fd);
}

/* After a change to a directory: its link count and times.  The VFS
 * holds the directory's i_rwsem. */
static void
hostfs_refresh_dir(struct inode *dir)
{
	struct stat st;
	if (fstat(host_fd(dir), &st) != 0)
		return;
	atomic_store(&dir->i_nlink, (unsigned)st.st_nlink);
	inode_time_set(&dir->i_mtime, st.st_mtim);
	inode_time_set(&dir->i_ctime, st.st_ctim);
}

/* ----------------------------------------------------- inode ops */

static int
hostfs_may_change(struct inode *dir, const char *name, size_t len, char *cname)
{
	if (dir->i_sb->s_flags & SB_RDONLY)
		return -EROFS;
	return hostfs_name(name, len, cname);
}

static int
hostfs_lookup(struct inode *dir, const char *name, size_t len,
              struct inode **res)
{
	char cname[NAME_MAX + 1];
	int err = hostfs_name(name, len, cname);
	return err ? err : hostfs_lookup_name(dir, cname, res);
}

static int
hostfs_create(struct inode *dir, const char *name, size_t len, mode_t mode,
              struct inode **res)
{
	char cname[NAME_MAX + 1];
	struct stat st;
	int err = hostfs_may_change(dir, name, len, cname);
	if (err)
		return err;
	int fd = openat(host_fd(dir), cname,
	                O_CREAT | O_EXCL | O_RDWR | O_NOFOLLOW | O_CLOEXEC, mode & 07777);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) != 0) {
		err = -errno;
		close(fd);
	} else {
		err = hostfs_iget(dir->i_sb, fd, &st, HOST_RD | HOST_WR, res);
	}
	if (err)
		unlinkat(host_fd(dir), cname, 0);
	else
		hostfs_refresh_dir(dir);
	return err;
}

static int
hostfs_mkdir(struct inode *dir, const char *name, size_t len, mode_t mode,
             struct inode **res)
{
	char cname[NAME_MAX + 1];
	int err = hostfs_may_change(dir, name, len, cname);
	if (err)
		return err;
	if (mkdirat(host_fd(dir), cname, mode & 07777) != 0)
		return -errno;
	err = hostfs_lookup_name(dir, cname, res);
	if (err)
		unlinkat(host_fd(dir), cname, AT_REMOVEDIR);
	else
		hostfs_refresh_dir(dir);
	return err;
}

static int
hostfs_unlink(struct inode *dir, const char *name, size_t len,
              struct inode *victim)
{
	char cname[NAME_MAX + 1];
	int err = hostfs_may_change(dir, name, len, cname);
	if (err)
		return err;
	if (unlinkat(host_fd(dir), cname, 0) != 0)
		return -errno;
	/* The host count, not a decrement: other hard links may remain. */
	hostfs_refresh_nlink(victim, -1, true);
	hostfs_refresh_dir(dir);
	return 0;
}

/* The host keeps the target: symlinkat, then the entry is looked up as
 * any other (an O_PATH handle). */
static int
hostfs_symlink(struct inode *dir, const char *name, size_t len,
               const char *target, struct inode **res)
{
	char cname[NAME_MAX + 1];
	int err = hostfs_may_change(dir, name, len, cname);
	if (err)
		return err;
	if (symlinkat(target, host_fd(dir), cname) != 0)
		return -errno;
	err = hostfs_lookup_name(dir, cname, res);
	if (err)
		unlinkat(host_fd(dir), cname, 0);
	else
		hostfs_refresh_dir(dir);
	return err;
}

/* The inode's own handle names the link: readlinkat(fd, ""). */
static int
hostfs_readlink(struct inode *inode, char *buf, size_t size)
{
	if (!S_ISLNK(HOSTFS_I(inode)->hi_type))
		return -EINVAL;
	ssize_t n = readlinkat(host_fd(inode), "", buf, size);
	return n < 0 ? -errno : (int)n;
}

/* A new host name for the file behind the inode's descriptor: linkat
 * with AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH, so without it the /proc
 * name of the descriptor is linked (AT_SYMLINK_FOLLOW follows only that
 * magic link, never a symlink it leads to). */
static int
hostfs_link(struct inode *inode, struct inode *dir, const char *name,
            size_t len)
{
	char cname[NAME_MAX + 1], proc[64];
	int err = hostfs_may_change(dir, name, len, cname);
	if (err)
		return err;
	int fd = host_fd(inode);
	if (linkat(fd, "", host_fd(dir), cname, AT_EMPTY_PATH) != 0) {
		if (errno != ENOENT && errno != EPERM)
			return -errno;
		hostfs_proc_path(fd, proc, sizeof(proc));
		if (linkat(AT_FDCWD, proc, host_fd(dir), cname, AT_SYMLINK_FOLLOW) != 0)
			return -errno;
	}
	hostfs_refresh_nlink(inode, 1, true);
	hostfs_refresh_dir(dir);
	return 0;
}

static int
hostfs_rmdir(struct inode *dir, const char *name, size_t len,
             struct inode *victim)
{
	char cname[NAME_MAX + 1];
	int err = hostfs_may_change(dir, name, len, cname);
	if (err)
		return err;
	if (unlinkat(host_fd(dir), cname, AT_REMOVEDIR) != 0)
		return -errno;
	atomic_store(&victim->i_nlink, 0);
	hostfs_refresh_dir(dir);
	return 0;
}

/* A rename replaced the host file st: its inode, if cached, loses a
 * link, and is evicted here if that was its last link and reference. */
static void
hostfs_replaced(struct super_block *sb, const struct stat *st)
{
	struct inode *inode = ilookup(sb, hostfs_ino(HOSTFS_SB(sb), st));
	if (!inode)
		return;
	if (hostfs_same(HOSTFS_I(inode), st))
		hostfs_refresh_nlink(inode, -1, false);
	iput(inode);
}

static int
hostfs_rename(struct inode *odir, const char *oname, size_t olen,
              struct inode *ndir, const char *nname, size_t nlen)
{
	char oc[NAME_MAX + 1], nc[NAME_MAX + 1];
	struct stat src, dst;
	int err = hostfs_may_change(odir, oname, olen, oc);
	if (!err)
		err = hostfs_name(nname, nlen, nc);
	if (err)
		return err;
	if (fstatat(host_fd(odir), oc, &src, AT_SYMLINK_NOFOLLOW) != 0)
		return -errno;
	bool replacing = fstatat(host_fd(ndir), nc, &dst, AT_SYMLINK_NOFOLLOW) == 0 &&
	                 (dst.st_dev != src.st_dev || dst.st_ino != src.st_ino);
	if (renameat(host_fd(odir), oc, host_fd(ndir), nc) != 0)
		return -errno;
	if (replacing)
		hostfs_replaced(odir->i_sb, &dst);
	hostfs_refresh_dir(odir);
	if (ndir != odir)
		hostfs_refresh_dir(ndir);
	return 0;
}

/* Shrinking drops the cache before the host file: writeback clamps to
 * i_size, so no page past the new EOF can be written after ftruncate.
 * Growing truncates the host first, so that a failure changes nothing. */
static int
hostfs_setsize(struct inode *inode, loff_t size)
{
	struct stat st;
	int fd = host_fd(inode);
	int err = hostfs_may_write(inode);
	if (err)
		return err;
	loff_t old = i_size_read(inode);
	if (size < old) {
		truncate_setsize(inode, size);
		if (ftruncate(fd, size) != 0) {
			err = -errno;
			pw_log("hostfs: ftruncate to %lld failed after the cache was "
			       "truncated: %s", (long long)size, strerror(-err));
		}
		return err;
	}
	/* Bytes the host holds past i_size (a failed shrink) must not
	 * reappear inside the file. */
	if (fstat(fd, &st) == 0 && st.st_size > old && ftruncate(fd, old) != 0)
		return -errno;
	if (ftruncate(fd, size) != 0)
		return -errno;
	truncate_setsize(inode, size);
	return 0;
}

static int
hostfs_chmod(struct inode *inode, mode_t mode)
{
	if (HOSTFS_I(inode)->hi_access == 0)
		return -EOPNOTSUPP; /* an O_PATH handle cannot fchmod */
	if (fchmod(host_fd(inode), mode & 07777) != 0)
		return -errno;
	inode->i_mode = (inode->i_mode & S_IFMT) | (mode & 07777);
	return 0;
}

static int
hostfs_chown(struct inode *inode, const struct pw_iattr *attr)
{
	uid_t uid = (attr->valid & ATTR_UID) ? attr->uid : (uid_t)-1;
	gid_t gid = (attr->valid & ATTR_GID) ? attr->gid : (gid_t)-1;
	if (fchownat(host_fd(inode), "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0)
		return -errno;
	if (attr->valid & ATTR_UID)
		inode->i_uid = attr->uid;
	if (attr->valid & ATTR_GID)
		inode->i_gid = attr->gid;
	return 0;
}

/* A later writeback moves the host's mtime on again, as writes through
 * any cache do; pagewright's own i_mtime keeps the value set here. */
static int
hostfs_utimes(struct inode *inode, const struct pw_iattr *attr)
{
	struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_nsec = UTIME_OMIT}};
	if (attr->valid & ATTR_ATIME)
		ts[0] = attr->atime;
	if (attr->valid & ATTR_MTIME)
		ts[1] = attr->mtime;
	int r;
	if (HOSTFS_I(inode)->hi_access == 0) {
		/* An O_PATH handle (a symlink, say): through its /proc name,
		 * which leads to the file itself, never a symlink's target. */
		char proc[64];
		hostfs_proc_path(host_fd(inode), proc, sizeof(proc));
		r = utimensat(AT_FDCWD, proc, ts, 0);
	} else {
		r = futimens(host_fd(inode), ts);
	}
	if (r != 0)
		return -errno;
	if (attr->valid & ATTR_ATIME)
		inode_time_set(&inode->i_atime, attr->atime);
	if (attr->valid & ATTR_MTIME)
		inode_time_set(&inode->i_mtime, attr->mtime);
	return 0;
}

static int
hostfs_setattr(struct inode *inode, const struct pw_iattr *attr)
{
	int err = 0;
	if (inode->i_sb->s_flags & SB_RDONLY)
		return -EROFS;
	if (attr->valid & ATTR_SIZE)
		err = hostfs_setsize(inode, attr->size);
	if (!err && (attr->valid & ATTR_MODE))
		err = hostfs_chmod(inode, attr->mode);
	if (!err && (attr->valid & (ATTR_UID | ATTR_GID)))
		err = hostfs_chown(inode, attr);
	if (!err && (attr->valid & (ATTR_ATIME | ATTR_MTIME)))
		err = hostfs_utimes(inode, attr);
	if (!err) {
		struct timespec now;
		pw__current_time(&now);
		inode_time_set(&inode->i_ctime, now);
	}
	return err;
}

static unsigned
hostfs_dtype(int dirfd, const char *name)
{
	struct stat st;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return DT_UNKNOWN;
	return IFTODT(st.st_mode);
}

static int
hostfs_readdir(struct inode *dir, void *ctx, filldir_t fill)
{
	/* A descriptor of our own: the stream's position is per description. */
	int fd = openat(host_fd(dir), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	DIR *d = fdopendir(fd);
	if (!d) {
		int err = -errno;
		close(fd);
		return err;
	}
	int err = 0;
	for (;;) {
		errno = 0;
		struct dirent *e = readdir(d);
		if (!e) {
			err = -errno;
			break;
		}
		const char *n = e->d_name;
		if (n[0] == '.' && (n[1] == 0 || (n[1] == '.' && n[2] == 0)))
			continue;
		unsigned type = e->d_type;
		if (type == DT_UNKNOWN)
			type = hostfs_dtype(fd, n);
		if (fill(ctx, n, strlen(n), e->d_ino, type))
			break;
	}
	closedir(d);
	return err;
}

/*
 * Extended attributes: the host file's own, through its descriptor (an
 * O_PATH handle, a symlink say, through its /proc name, which leads to
 * the file itself).  The host decides what it keeps: ENOTSUP where its
 * filesystem has none.
 */
static ssize_t
hostfs_getxattr(struct inode *inode, const char *name, void *buf, size_t size)
{
	ssize_t r;
	if (HOSTFS_I(inode)->hi_access == 0) {
		char proc[64];
		hostfs_proc_path(host_fd(inode), proc, sizeof(proc));
		r = getxattr(proc, name, buf, size);
	} else {
		r = fgetxattr(host_fd(inode), name, buf, size);
	}
	return r < 0 ? -errno : r;
}

static ssize_t
hostfs_listxattr(struct inode *inode, char *buf, size_t size)
{
	ssize_t r;
	if (HOSTFS_I(inode)->hi_access == 0) {
		char proc[64];
		hostfs_proc_path(host_fd(inode), proc, sizeof(proc));
		r = listxattr(proc, buf, size);
	} else {
		r = flistxattr(host_fd(inode), buf, size);
	}
	return r < 0 ? -errno : r;
}

static int
hostfs_setxattr(struct inode *inode, const char *name, const void *value, size_t size,
                int flags)
{
	int r;
	if (HOSTFS_I(inode)->hi_access == 0) {
		char proc[64];
		hostfs_proc_path(host_fd(inode), proc, sizeof(proc));
		r = value ? setxattr(proc, name, value, size, flags) : removexattr(proc, name);
	} else {
		int fd = host_fd(inode);
		r = value ? fsetxattr(fd, name, value, size, flags) : fremovexattr(fd, name);
	}
	return r < 0 ? -errno : 0;
}

static const struct inode_operations hostfs_iops = {
	.lookup = hostfs_lookup,
	.create = hostfs_create,
	.mkdir = hostfs_mkdir,
	.unlink = hostfs_unlink,
	.rmdir = hostfs_rmdir,
	.rename = hostfs_rename,
	.setattr = hostfs_setattr,
	.readdir = hostfs_readdir,
	.symlink = hostfs_symlink,
	.link = hostfs_link,
	.readlink = hostfs_readlink,
	.getxattr = hostfs_getxattr,
	.listxattr = hostfs_listxattr,
	.setxattr = hostfs_setxattr,
};

/* ----------------------------------------------------- super ops */

/* setattr reaches the host at once, and write_end's i_size raises reach
 * it with the dirty page that holds the new EOF: nothing is left here. */
static int
hostfs_write_inode(struct inode *inode, bool sync)
{
	(void)inode, (void)sync;
	return 0;
}

static void
hostfs_evict_inode(struct inode *inode)
{
	struct hostfs_inode *hi = HOSTFS_I(inode);
	if (!hi)
		return;
	close(hi->hi_fd);
	free(hi);
	inode->i_private = NULL;
}

static int
hostfs_fsync(struct inode *inode, bool datasync)
{
	struct hostfs_inode *hi = HOSTFS_I(inode);
	if (hi->hi_access == 0)
		return 0; /* an O_PATH handle: no data of ours behind it */
	int r = datasync ? fdatasync(hi->hi_fd) : fsync(hi->hi_fd);
	return r ? -errno : 0;
}

static int
hostfs_sync_fs(struct super_block *sb, bool wait)
{
	(void)wait;
	return syncfs(HOSTFS_SB(sb)->hs_root_fd) ? -errno : 0;
}

static void
hostfs_put_super(struct super_block *sb)
{
	struct hostfs_sb *hs = HOSTFS_SB(sb);
	if (!hs)
		return;
	close(hs->hs_root_fd);
	pthread_mutex_destroy(&hs->hs_iget_lock);
	free(hs);
	sb->s_fs_info = NULL;
}

static int
hostfs_statfs(struct super_block *sb, struct statvfs *st)
{
	return fstatvfs(HOSTFS_SB(sb)->hs_root_fd, st) ? -errno : 0;
}

static const struct super_operations hostfs_sops = {
	.write_inode = hostfs_write_inode,
	.evict_inode = hostfs_evict_inode,
	.fsync = hostfs_fsync,
	.sync_fs = hostfs_sync_fs,
	.put_super = hostfs_put_super,
	.statfs = hostfs_statfs,
};

/* ----------------------------------------------------------- mount */

static int
hostfs_make_root(struct super_block *sb)
{
	struct stat st;
	int fd = fcntl(HOSTFS_SB(sb)->hs_root_fd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) != 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	return hostfs_new_inode(sb, fd, &st, HOST_RD, &sb->s_root);
}

static int
hostfs_fill_super(struct super_block *sb, const char *source,
                  const char *options)
{
	struct stat st;
	if (!source || !*source)
		return -EINVAL;
	struct hostfs_sb *hs = calloc(1, sizeof(*hs));
	if (!hs)
		return -ENOMEM;
	hs->hs_root_fd = open(source, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (hs->hs_root_fd < 0 || fstat(hs->hs_root_fd, &st) != 0) {
		int err = -errno;
		if (hs->hs_root_fd >= 0)
			close(hs->hs_root_fd);
		free(hs);
		return err;
	}
	hs->hs_dev = st.st_dev;

	hs->hs_legacy = pw__has_option(options, "legacy_aops");
	pthread_mutex_init(&hs->hs_iget_lock, NULL);
	if (pw__has_option(options, "ro"))
		sb->s_flags |= SB_RDONLY;
	sb->s_fs_info = hs;
	sb->s_op = &hostfs_sops;
	sb->s_maxbytes = INT64_MAX & ~(loff_t)(PAGE_SIZE - 1);
	sb->s_blocksize = PAGE_SIZE;
	/* Every cached inode holds a host descriptor: keep at most half the
	 * descriptor limit in inodes nobody uses, so a walk over many files
	 * does not run the process out of descriptors. */
	struct rlimit nofile;
	if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY)
		sb->s_max_unused = PW_MAX(64, nofile.rlim_cur / 2);
	else
		sb->s_max_unused = 4096;
	int err = hostfs_make_root(sb);
	if (err)
		hostfs_put_super(sb);
	return err;
}

const struct file_system_type pw__hostfs_type = {
	.name = "hostfs",
	.fill_super = hostfs_fill_super,
};

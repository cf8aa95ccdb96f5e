/*
 * test_aops.c - the address-space contract with a filesystem that fails
 * on demand (SPEC 10.14-10.19): write_begin and write_end errors midway
 * through a write, writeback errors reported by fsync and by O_SYNC and
 * O_DSYNC writes, kernel-memory sources that must never be short, the
 * legacy adapter's read-first rule with a persistent read error, and a
 * partial commit_write.
 *
 * "errfs" is written here against include/pagewright/fs.h only, as an
 * outside filesystem would be: one directory of files whose "disk" is an
 * array in memory.  Each operation can be made to fail.
 */
#include "test.h"

#include <fcntl.h>
#include <pagewright/fs.h>
#include <pagewright/pagewright.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"

#define DISK_PAGES 64
#define PG 4096

struct inject {
	int write_begin_fail_at; /* fail the Nth write_begin (1-based), 0: never */
	int write_end_fail_at;   /* fail the Nth write_end */
	bool writepage_eio;      /* every writepage fails */
	bool readpage_eio;       /* every readpage fails */
	int commit_partial;      /* legacy commit_write returns this if > 0 */
	int write_begins, write_ends, readpages, writepages;
};
static struct inject inj;

struct efile {
	char name[32];
	struct inode *inode;
	unsigned char disk[DISK_PAGES * PG];
	size_t disk_size;
};
static struct efile efiles[4];
static bool legacy_mode;

static struct efile *
EF(struct inode *inode)
{
	return inode->i_private;
}

/* Fill a locked page from the "disk"; zero past its end. */
static int
fill(struct inode *inode, struct page *page)
{
	if (inj.readpage_eio)
		return -EIO;
	struct efile *f = EF(inode);
	size_t off = (size_t)page->index * PG;
	size_t n = off < f->disk_size ? PW_MIN((size_t)PG, f->disk_size - off) : 0;
	memcpy(page_address(page), f->disk + off, n);
	zero_user_segment(page, (unsigned)n, PG);
	SetPageUptodate(page);
	return 0;
}

static int
e_readpage(struct file *file, struct page *page)
{
	(void)file;
	inj.readpages++;
	int err = fill(page->mapping->host, page);
	if (err)
		SetPageError(page);
	unlock_page(page);
	return err;
}

static int
e_writepage(struct page *page, struct writeback_control *wbc)
{
	(void)wbc;
	struct inode *inode = page->mapping->host;
	inj.writepages++;
	int err = 0;
	if (inj.writepage_eio) {
		err = -EIO;
		mapping_set_error(page->mapping, err);
		SetPageError(page);
	} else {
		size_t off = (size_t)page->index * PG;
		loff_t size = i_size_read(inode);
		size_t n = (loff_t)off < size ? PW_MIN((size_t)PG, (size_t)(size - (loff_t)off)) : 0;
		memcpy(EF(inode)->disk + off, page_address(page), n);
		if (off + n > EF(inode)->disk_size)
			EF(inode)->disk_size = off + n;
	}
	unlock_page(page);
	end_page_writeback(page);
	return err;
}

static int
e_write_begin(struct file *file, struct address_space *mapping, loff_t pos,
              unsigned len, unsigned flags, struct page **pagep, void **fsdata)
{
	(void)file, (void)fsdata;
	if (++inj.write_begins == inj.write_begin_fail_at)
		return -ENOSPC;
	struct page *page = grab_cache_page_write_begin(mapping, (pgoff_t)pos / PG, flags);
	if (!page)
		return -ENOMEM;
	if (!PageUptodate(page) && len != PG) {
		int err = fill(mapping->host, page);
		if (err) {
			unlock_page(page);
			put_page(page);
			return err;
		}
	}
	*pagep = page;
	return 0;
}

static int
e_write_end(struct file *file, struct address_space *mapping, loff_t pos,
            unsigned len, unsigned copied, struct page *page, void *fsdata)
{
	(void)file, (void)fsdata;
	struct inode *inode = mapping->host;
	if (++inj.write_ends == inj.write_end_fail_at) {
		unlock_page(page);
		put_page(page);
		return -EIO;
	}
	if (copied < len && !PageUptodate(page))
		copied = 0;
	if (copied == len && !PageUptodate(page))
		SetPageUptodate(page); /* len == PG: the whole page was copied */
	if (copied)
		set_page_dirty(page);
	/* len == 0 only comes from generic_cont_expand_simple. */
	if ((copied || len == 0) && pos + copied > i_size_read(inode))
		i_size_write(inode, pos + copied);
	unlock_page(page);
	put_page(page);
	return (int)copied;
}

static int
e_prepare_write(struct file *file, struct page *page, unsigned from, unsigned to)
{
	(void)file;
	if (!PageUptodate(page) && (from != 0 || to != PG))
		return fill(page->mapping->host, page);
	return 0;
}

static int
e_commit_write(struct file *file, struct page *page, unsigned from, unsigned to)
{
	(void)file;
	struct inode *inode = page->mapping->host;
	if (inj.commit_partial > 0 && to > from) {
		to = from + (unsigned)inj.commit_partial;
		set_page_dirty(page);
		if ((loff_t)page->index * PG + to > i_size_read(inode))
			i_size_write(inode, (loff_t)page->index * PG + to);
		return inj.commit_partial;
	}
	if (from == 0 && to == PG)
		SetPageUptodate(page);
	set_page_dirty(page);
	if ((loff_t)page->index * PG + to > i_size_read(inode))
		i_size_write(inode, (loff_t)page->index * PG + to);
	return 0;
}

static const struct address_space_operations e_aops = {
	.readpage = e_readpage,
	.writepage = e_writepage,
	.write_begin = e_write_begin,
	.write_end = e_write_end,
};
static const struct address_space_operations e_legacy_aops = {
	.readpage = e_readpage,
	.writepage = e_writepage,
	.prepare_write = e_prepare_write,
	.commit_write = e_commit_write,
};

static int
e_lookup(struct inode *dir, const char *name, size_t len, struct inode **res)
{
	(void)dir;
	for (size_t k = 0; k < 4; k++)
		if (efiles[k].inode && strlen(efiles[k].name) == len &&
		    !memcmp(efiles[k].name, name, len)) {
			ihold(efiles[k].inode);
			*res = efiles[k].inode;
			return 0;
		}
	return -ENOENT;
}

static const struct inode_operations e_iops;

static int
e_create(struct inode *dir, const char *name, size_t len, mode_t mode,
         struct inode **res)
{
	for (size_t k = 0; k < 4; k++) {
		if (efiles[k].inode)
			continue;
		struct inode *inode = new_inode(dir->i_sb, 10 + k,
		                                legacy_mode ? &e_legacy_aops : &e_aops);
		inode->i_mode = S_IFREG | (mode & 0777);
		inode->i_op = &e_iops;
		inode->i_private = &efiles[k];
		memcpy(efiles[k].name, name, len);
		efiles[k].inode = inode;
		insert_inode_hash(inode);
		ihold(inode); /* one for the directory, one for the caller */
		*res = inode;
		return 0;
	}
	return -ENOSPC;
}

static int
e_setattr(struct inode *inode, const struct pw_iattr *attr)
{
	if (attr->valid & ATTR_SIZE)
		truncate_setsize(inode, attr->size);
	return 0;
}

static int
e_readdir(struct inode *dir, void *ctx, filldir_t fill_fn)
{
	(void)dir;
	for (size_t k = 0; k < 4; k++)
		if (efiles[k].inode)
			fill_fn(ctx, efiles[k].name, strlen(efiles[k].name), 10 + k, DT_REG);
	return 0;
}

static const struct inode_operations e_iops = {
	.lookup = e_lookup,
	.create = e_create,
	.setattr = e_setattr,
	.readdir = e_readdir,
};

static void
e_evict(struct inode *inode)
{
	struct efile *f = inode->i_private;
	if (f)
		f->inode = NULL;
}

static const struct super_operations e_sops = {.evict_inode = e_evict};

static int
e_fill_super(struct super_block *sb, const char *source, const char *options)
{
	(void)source;
	legacy_mode = pw__has_option(options, "legacy_aops");
	sb->s_op = &e_sops;
	sb->s_maxbytes = (loff_t)DISK_PAGES * PG;
	sb->s_blocksize = PG;
	struct inode *root = new_inode(sb, 1, &e_aops);
	root->i_mode = S_IFDIR | 0755;
	root->i_op = &e_iops;
	insert_inode_hash(root);
	sb->s_root = root;
	return 0;
}

static const struct file_system_type errfs = {"errfs", e_fill_super};

static int
mount_errfs(bool legacy)
{
	static int n;
	char mnt[32];
	snprintf(mnt, sizeof(mnt), "/e%d", n++);
	memset(&inj, 0, sizeof(inj));
	memset(efiles, 0, sizeof(efiles));
	register_filesystem(&errfs);
	ASSERT_OK(pw_mkdir(mnt, 0755));
	ASSERT_OK(pw_mount("errfs", NULL, mnt, legacy ? "legacy_aops" : NULL));
	char path[64];
	snprintf(path, sizeof(path), "%s/f", mnt);
	int fd = pw_open(path, O_CREAT | O_RDWR, 0644);
	ASSERT_GE(fd, 0);
	return fd;
}

static void
pattern(unsigned char *b, size_t n, unsigned seed)
{
	for (size_t k = 0; k < n; k++)
		b[k] = (unsigned char)(1 + (k * 31 + seed) % 251);
}

/* SPEC 10.14: write_begin fails midway through an extending write. */
TEST(aops_write_begin_fails_midway)
{
	int fd = mount_errfs(false);
	unsigned char src[5 * PG], got[5 * PG];
	pattern(src, sizeof(src), 1);
	ASSERT_EQ(pw_pwrite(fd, src, PG, 0), PG);         /* page 0 uptodate */
	inj.write_begins = 0;
	inj.write_begin_fail_at = 3;                       /* the third page step */
	/* steps 1 (the rest of page 0) and 2 (page 1) */
	ASSERT_EQ(pw_pwrite(fd, src, 5 * PG, 100), 2 * PG - 100);
	struct stat st;
	ASSERT_OK(pw_fstat(fd, &st));
	ASSERT_EQ(st.st_size, 2 * PG);
	ASSERT_EQ(pw_pread(fd, got, 5 * PG, 0), 2 * PG);
	ASSERT_MEM_EQ(got, src, 100);
	ASSERT_MEM_EQ(got + 100, src, 2 * PG - 100);
	/* nothing written: the error itself */
	inj.write_begins = 0;
	inj.write_begin_fail_at = 1;
	ASSERT_ERR(pw_pwrite(fd, src, 10, 4 * PG), ENOSPC);
	ASSERT_OK(pw_fstat(fd, &st));
	ASSERT_EQ(st.st_size, 2 * PG);
	ASSERT_OK(pw_close(fd));
}

/* SPEC 10.15: write_end fails; the page is released, not leaked. */
TEST(aops_write_end_error_releases_page)
{
	int fd = mount_errfs(false);
	struct pw_stats before, after;
	unsigned char src[3 * PG];
	pattern(src, sizeof(src), 2);
	inj.write_end_fail_at = 2;
	ASSERT_EQ(pw_pwrite(fd, src, 3 * PG, 0), PG);
	/* The failed page must be unlocked: writing it again must not hang. */
	inj.write_end_fail_at = 0;
	ASSERT_EQ(pw_pwrite(fd, src + PG, 2 * PG, PG), 2 * PG);
	ASSERT_OK(pw_fsync(fd));
	pw_get_stats(&before);
	ASSERT_OK(pw_posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED));
	pw_get_stats(&after);
	/* Every page dropped from the cache went back to the pool: no
	 * reference was leaked by the failed write_end. */
	ASSERT_EQ(before.allocated_pages - after.allocated_pages, 3);
	ASSERT_OK(pw_close(fd));
}

/* SPEC 10.16 (sync half): writeback errors reach fsync once per file,
 * and a failing O_SYNC or O_DSYNC write reports the error, not a count. */
TEST(aops_writeback_errors_fsync_and_osync)
{
	int fd = mount_errfs(false);
	int fd2 = pw_open("/e0/f", O_RDWR);
	ASSERT_GE(fd2, 0);
	unsigned char src[PG];
	pattern(src, sizeof(src), 3);
	ASSERT_EQ(pw_pwrite(fd, src, PG, 0), PG);
	inj.writepage_eio = true;
	ASSERT_ERR(pw_fsync(fd), EIO);
	ASSERT_OK(pw_fsync(fd));   /* reported once to this file... */
	ASSERT_ERR(pw_fsync(fd2), EIO); /* ...and once to the other */
	ASSERT_OK(pw_fsync(fd2));
	int sfd = pw_open("/e0/f", O_RDWR | O_SYNC);
	int dfd = pw_open("/e0/f", O_RDWR | O_DSYNC);
	ASSERT_GE(sfd, 0);
	ASSERT_GE(dfd, 0);
	ASSERT_ERR(pw_pwrite(sfd, src, 100, 0), EIO);
	ASSERT_ERR(pw_pwrite(dfd, src, 100, 0), EIO);
	/* dfd's failure happened after sfd last looked: sfd sees it once. */
	ASSERT_ERR(pw_fsync(sfd), EIO);
	inj.writepage_eio = false;
	pattern(src, sizeof(src), 4);
	ASSERT_EQ(pw_pwrite(sfd, src, PG, PG), PG);
	/* O_SYNC: on the "disk" when the write returns */
	ASSERT_EQ(efiles[0].disk_size, 2 * PG);
	ASSERT_MEM_EQ(efiles[0].disk + PG, src, PG);
	ASSERT_OK(pw_close(sfd));
	ASSERT_OK(pw_close(dfd));
	ASSERT_OK(pw_close(fd2));
	ASSERT_OK(pw_close(fd));
}

/* SPEC 10.18: a kernel-memory source (AOP_FLAG_UNINTERRUPTIBLE) is never
 * short; with the legacy aops the page is read first, and a persistent
 * read error ends the loop with EIO instead of spinning. */
TEST(aops_kernel_source_and_legacy_read_first)
{
	for (int legacy = 0; legacy < 2; legacy++) {
		int fd = mount_errfs(legacy);
		unsigned char src[3 * PG], got[3 * PG];
		pattern(src, sizeof(src), 5);
		struct file *file = pw__fget(fd);
		ASSERT(file != NULL);
		struct iovec iov = {src, sizeof(src)};
		struct iov_iter it;
		iov_iter_init(&it, &iov, 1, sizeof(src), 0);
		it.kernel = true;
		loff_t pos = 10;
		ASSERT_EQ(generic_file_write_iter(file, &it, &pos), (ssize_t)sizeof(src));
		ASSERT_EQ(pos, 10 + (loff_t)sizeof(src));
		ASSERT_EQ(pw_pread(fd, got, sizeof(src), 10), (ssize_t)sizeof(src));
		ASSERT_MEM_EQ(got, src, sizeof(src));

		/* Expanding through pagecache_write_begin on a page that is not
		 * cached: legacy reads it first; a read that keeps failing is EIO. */
		ASSERT_OK(pw_fsync(fd));
		ASSERT_OK(pw_posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED));
		int reads = inj.readpages;
		inj.readpage_eio = true;
		inode_lock(file->f_inode);
		int err = generic_cont_expand_simple(file->f_inode, 5 * PG + 7);
		inode_unlock(file->f_inode);
		TLOG("%s: expand with failing reads -> %d after %d reads", legacy ? "legacy" : "new",
		     err, inj.readpages - reads);
		if (legacy) {
			ASSERT_EQ(err, -EIO);
			ASSERT_LE(inj.readpages - reads, 2);
		}
		inj.readpage_eio = false;
		inode_lock(file->f_inode);
		ASSERT_OK(generic_cont_expand_simple(file->f_inode, 5 * PG + 7));
		inode_unlock(file->f_inode);
		struct stat st;
		ASSERT_OK(pw_fstat(fd, &st));
		ASSERT_EQ(st.st_size, 5 * PG + 7);
		pw__fput(file);
		ASSERT_OK(pw_close(fd));
	}
}

/* SPEC 10.19: a positive partial commit_write is honoured. */
TEST(aops_legacy_partial_commit)
{
	int fd = mount_errfs(true);
	unsigned char src[PG];
	pattern(src, sizeof(src), 6);
	inj.commit_partial = 100;
	ssize_t n = pw_pwrite(fd, src, 1000, 0);
	ASSERT_EQ(n, 100 * 10); /* ten steps of 100 bytes, each committed short */
	inj.commit_partial = 0;
	struct stat st;
	ASSERT_OK(pw_fstat(fd, &st));
	ASSERT_EQ(st.st_size, 1000);
	unsigned char got[1000];
	ASSERT_EQ(pw_pread(fd, got, 1000, 0), 1000);
	ASSERT_MEM_EQ(got, src, 1000);
	ASSERT_OK(pw_close(fd));
}

/*
 * test_buffer.c - the buffer-head layer (SPEC section 6) under a small
 * block filesystem, "bfs", written here against fs.h and buffer_head.h:
 * one file whose block n lives at device block 8 + n, allocated on first
 * write.  The device starts filled with 0xEE, the "stale data" that must
 * never become visible.  Block sizes 1024 and 2048 (several blocks per
 * page), new and legacy aops.
 */
#include "test.h"

#include <fcntl.h>
#include <pagewright/buffer_head.h>
#include <pagewright/fs.h>
#include <pagewright/pagewright.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

#define NBLOCKS 64
#define STALE 0xEE

static struct {
	bool allocated[NBLOCKS];
	int enospc_after; /* allocations left before ENOSPC; -1: unlimited */
	struct inode *file;
	bool legacy;
	unsigned bsize;
} B;

static int
bfs_get_block(struct inode *inode, uint64_t iblock, struct buffer_head *bh, int create)
{
	if (iblock >= NBLOCKS)
		return -EFBIG;
	if (!B.allocated[iblock]) {
		if (!create)
			return 0;
		if (B.enospc_after == 0)
			return -ENOSPC;
		if (B.enospc_after > 0)
			B.enospc_after--;
		B.allocated[iblock] = true;
		set_buffer_New(bh);
	}
	map_bh(bh, inode->i_sb->s_bdev, 8 + iblock);
	return 0;
}

static int
bfs_readpage(struct file *f, struct page *page)
{
	(void)f;
	return block_read_full_page(page, bfs_get_block);
}

static int
bfs_writepage(struct page *page, struct writeback_control *wbc)
{
	return block_write_full_page(page, bfs_get_block, wbc);
}

static int
bfs_write_begin(struct file *file, struct address_space *mapping, loff_t pos,
                unsigned len, unsigned flags, struct page **pagep, void **fsdata)
{
	(void)file, (void)fsdata;
	*pagep = NULL;
	return block_write_begin(mapping, pos, len, flags, pagep, bfs_get_block);
}

static int
bfs_prepare_write(struct file *file, struct page *page, unsigned from, unsigned to)
{
	(void)file;
	return block_prepare_write(page, from, to, bfs_get_block);
}

static void
bfs_readahead(struct file *f, struct address_space *m, struct page **pages, unsigned nr)
{
	(void)f, (void)m;
	mpage_readahead(pages, nr, bfs_get_block);
}

static int
bfs_page_mkwrite(struct vm_area_struct *vma, struct page *page)
{
	return block_page_mkwrite(vma, page, bfs_get_block);
}

static const struct address_space_operations bfs_aops = {
	.page_mkwrite = bfs_page_mkwrite,
	.readahead = bfs_readahead,
	.readpage = bfs_readpage,
	.writepage = bfs_writepage,
	.write_begin = bfs_write_begin,
	.write_end = generic_write_end,
	.invalidatepage = block_invalidatepage,
};
static const struct address_space_operations bfs_legacy_aops = {
	.readpage = bfs_readpage,
	.writepage = bfs_writepage,
	.prepare_write = bfs_prepare_write,
	.commit_write = generic_commit_write,
	.invalidatepage = block_invalidatepage,
};

static const struct inode_operations bfs_iops;

static int
bfs_lookup(struct inode *dir, const char *name, size_t len, struct inode **res)
{
	(void)dir;
	if (!B.file || len != 1 || name[0] != 'f')
		return -ENOENT;
	ihold(B.file);
	*res = B.file;
	return 0;
}

static int
bfs_create(struct inode *dir, const char *name, size_t len, mode_t mode,
           struct inode **res)
{
	(void)name, (void)len;
	if (B.file)
		return -ENOSPC;
	struct inode *inode = new_inode(dir->i_sb, 2, B.legacy ? &bfs_legacy_aops : &bfs_aops);
	inode->i_mode = S_IFREG | (mode & 0777);
	inode->i_op = &bfs_iops;
	insert_inode_hash(inode);
	B.file = inode;
	ihold(inode);
	*res = inode;
	return 0;
}

static int
bfs_setattr(struct inode *inode, const struct pw_iattr *attr)
{
	if (attr->valid & ATTR_SIZE) {
		loff_t old = i_size_read(inode);
		if (attr->size < old)
			block_truncate_page(inode->i_mapping, attr->size, bfs_get_block);
		truncate_setsize(inode, attr->size);
	}
	return 0;
}

static int
bfs_readdir(struct inode *dir, void *ctx, filldir_t fill)
{
	(void)dir;
	if (B.file)
		fill(ctx, "f", 1, 2, DT_REG);
	return 0;
}

static const struct inode_operations bfs_iops = {
	.lookup = bfs_lookup, .create = bfs_create, .setattr = bfs_setattr,
	.readdir = bfs_readdir,
};

static int
bfs_fsync(struct inode *inode, bool datasync)
{
	(void)datasync;
	return sync_blockdev(inode->i_sb->s_bdev);
}

static void
bfs_put_super(struct super_block *sb)
{
	sync_blockdev(sb->s_bdev);
	blkdev_close(sb->s_bdev);
}

static const struct super_operations bfs_sops = {
	.fsync = bfs_fsync, .put_super = bfs_put_super,
};

static int
bfs_fill_super(struct super_block *sb, const char *source, const char *options)
{
	int err = blkdev_open(source, false, &sb->s_bdev);
	if (err)
		return err;
	B.legacy = pw__has_option(options, "legacy_aops");
	sb->s_bdev->bd_block_size = B.bsize;
	sb->s_blocksize = B.bsize;
	sb->s_op = &bfs_sops;
	sb->s_maxbytes = (loff_t)NBLOCKS * B.bsize;
	struct inode *root = new_inode(sb, 1, &bfs_aops);
	root->i_mode = S_IFDIR | 0755;
	root->i_op = &bfs_iops;
	insert_inode_hash(root);
	sb->s_root = root;
	return 0;
}

static const struct file_system_type bfs_type = {"bfs", bfs_fill_super};

static char image[512];

/* Mount a fresh bfs; returns an open descriptor of its file. */
static int
bfs_mount(unsigned bsize, bool legacy)
{
	static int n;
	memset(&B, 0, sizeof(B));
	B.enospc_after = -1;
	B.bsize = bsize;
	snprintf(image, sizeof(image), "%s/bfs%d.img", test_tmpdir(), n);
	int fd = open(image, O_CREAT | O_RDWR | O_TRUNC, 0644);
	ASSERT_GE(fd, 0);
	unsigned char stale[1024];
	memset(stale, STALE, sizeof(stale));
	for (unsigned k = 0; k < (8 + NBLOCKS) * bsize / 1024; k++)
		ASSERT_EQ(write(fd, stale, sizeof(stale)), (ssize_t)sizeof(stale));
	close(fd);
	register_filesystem(&bfs_type);
	char mnt[32];
	snprintf(mnt, sizeof(mnt), "/b%d", n++);
	ASSERT_OK(pw_mkdir(mnt, 0755));
	ASSERT_OK(pw_mount("bfs", image, mnt, legacy ? "legacy_aops" : NULL));
	char path[48];
	snprintf(path, sizeof(path), "%s/f", mnt);
	int pfd = pw_open(path, O_CREAT | O_RDWR, 0644);
	ASSERT_GE(pfd, 0);
	return pfd;
}

static void
no_stale(const unsigned char *b, size_t n)
{
	for (size_t k = 0; k < n; k++)
		if (b[k] == STALE) {
			fprintf(stderr, "stale device byte visible at %zu\n", k);
			abort();
		}
}

static int revoke_armed;
static void *revoke_addr;

static void
revoke_source(struct file *file, loff_t pos, size_t bytes)
{
	(void)file, (void)pos, (void)bytes;
	if (revoke_armed && revoke_armed--)
		mprotect(revoke_addr, 4096, PROT_NONE);
}

/* SPEC 10.2 and 10.5: new blocks never show stale device bytes, after a
 * full copy, after a short copy into a page whose blocks are new, and
 * after the file is grown over them. */
TEST(buffer_new_blocks_never_stale)
{
	for (unsigned bs = 1024; bs <= 2048; bs *= 2)
		for (int legacy = 0; legacy < 2; legacy++) {
			TLOG("blocksize %u %s", bs, legacy ? "legacy" : "new");
			int fd = bfs_mount(bs, legacy);
			unsigned char src[100], got[3 * 4096];
			memset(src, 'a', sizeof(src));
			ASSERT_EQ(pw_pwrite(fd, src, 100, 1500), 100);
			ASSERT_EQ(pw_pread(fd, got, sizeof(got), 0), 1600);
			no_stale(got, 1600);
			ASSERT_MEM_EQ(got + 1500, src, 100);
			ASSERT_OK(pw_fsync(fd));
			ASSERT_OK(pw__test_evict_all(fd));
			memset(got, 0, sizeof(got));
			ASSERT_EQ(pw_pread(fd, got, sizeof(got), 0), 1600);
			no_stale(got, 1600);

			/* A short copy into new blocks of a new page: the source
			 * vanishes after the prefault, so nothing is copied. */
			unsigned char *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
			                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			memset(m, 'b', 4096);
			revoke_addr = m;
			revoke_armed = 1;
			pw__hooks.after_prefault = revoke_source;
			errno = 0;
			ssize_t r = pw_pwrite(fd, m, 3000, 2 * 4096 + 500);
			pw__hooks.after_prefault = NULL;
			ASSERT_EQ(r, -1);
			ASSERT_EQ(errno, EFAULT);
			struct stat st;
			ASSERT_OK(pw_fstat(fd, &st));
			ASSERT_EQ(st.st_size, 1600);
			/* Grow the file over the blocks write_begin allocated. */
			ASSERT_OK(pw_ftruncate(fd, 3 * 4096));
			ASSERT_EQ(pw_pread(fd, got, sizeof(got), 0), 3 * 4096);
			no_stale(got, sizeof(got));
			ASSERT_OK(pw_fsync(fd));
			ASSERT_OK(pw__test_evict_all(fd));
			ASSERT_EQ(pw_pread(fd, got, sizeof(got), 0), 3 * 4096);
			no_stale(got, sizeof(got));
			ASSERT_MEM_EQ(got + 1500, src, 100);
			munmap(m, 4096);
			ASSERT_OK(pw_close(fd));
		}
}

/* SPEC 10.3: a partial overwrite of an uncached page reads only the
 * blocks it covers partly; the others keep their disk values. */
TEST(buffer_partial_overwrite_reads_partial_blocks)
{
	for (int legacy = 0; legacy < 2; legacy++) {
		int fd = bfs_mount(1024, legacy);
		unsigned char a[4096], b[1100], got[4096];
		for (int k = 0; k < 4096; k++)
			a[k] = (unsigned char)(k % 199);
		memset(b, 'B', sizeof(b));
		ASSERT_EQ(pw_pwrite(fd, a, 4096, 0), 4096);
		ASSERT_OK(pw_fsync(fd));
		ASSERT_OK(pw__test_evict_all(fd));
		struct file *f = pw__fget(fd);
		long before = atomic_load(&f->f_inode->i_sb->s_bdev->bd_reads);
		ASSERT_EQ(pw_pwrite(fd, b, 1100, 1000), 1100); /* blocks 0 and 2 partly */
		long reads = atomic_load(&f->f_inode->i_sb->s_bdev->bd_reads) - before;
		pw__fput(f);
		TLOG("%s: %ld device reads for the partial overwrite", legacy ? "legacy" : "new", reads);
		if (!legacy)
			ASSERT_EQ(reads, 2); /* block 0 and block 2, not 1 or 3 */
		memcpy(a + 1000, b, 1100);
		ASSERT_OK(pw_fsync(fd));
		ASSERT_OK(pw__test_evict_all(fd));
		ASSERT_EQ(pw_pread(fd, got, 4096, 0), 4096);
		ASSERT_MEM_EQ(got, a, 4096);
		ASSERT_OK(pw_close(fd));
	}
}

/* SPEC 10.14: get_block fails (ENOSPC) midway through an extending write:
 * the bytes before it are written, the error comes only if none were. */
TEST(buffer_enospc_midway)
{
	int fd = bfs_mount(1024, false);
	unsigned char src[4 * 4096];
	memset(src, 'c', sizeof(src));
	B.enospc_after = 6; /* six 1 KiB blocks: one page and a half */
	ssize_t n = pw_pwrite(fd, src, sizeof(src), 0);
	TLOG("wrote %zd before ENOSPC", n);
	ASSERT_EQ(n, 4096); /* the second page's step fails as a whole */
	ASSERT_ERR(pw_pwrite(fd, src, 10, 3 * 4096), ENOSPC);
	struct stat st;
	ASSERT_OK(pw_fstat(fd, &st));
	ASSERT_EQ(st.st_size, 4096);
	ASSERT_OK(pw_fsync(fd));
	ASSERT_OK(pw_close(fd));
}

/* Metadata through the device cache; corrupt block numbers and injected
 * I/O errors are errors, not crashes. */
TEST(buffer_metadata_and_errors)
{
	int fd = bfs_mount(1024, false);
	struct file *f = pw__fget(fd);
	struct super_block *sb = f->f_inode->i_sb;
	struct block_device *bdev = sb->s_bdev;
	struct buffer_head *bh;
	ASSERT_OK(sb_bread(sb, 3, &bh));
	ASSERT_EQ((unsigned char)bh->b_data[0], STALE);
	memset(bh->b_data, 'M', 1024);
	mark_buffer_dirty(bh);
	brelse(bh);
	ASSERT_OK(sync_blockdev(bdev));
	unsigned char disk[1024];
	int ifd = open(image, O_RDONLY);
	ASSERT_EQ(pread(ifd, disk, 1024, 3 * 1024), 1024);
	ASSERT_EQ(disk[0], 'M');
	ASSERT_EQ(pread(ifd, disk, 1024, 4 * 1024), 1024);
	ASSERT_EQ(disk[0], STALE); /* its neighbour on the page was not written */
	close(ifd);
	ASSERT_EQ(sb_bread(sb, 1u << 30, &bh), -EUCLEAN);
	atomic_store(&bdev->bd_fail_read_nth, atomic_load(&bdev->bd_reads) + 1);
	ASSERT_EQ(sb_bread(sb, 5, &bh), -EIO);
	ASSERT_OK(sb_bread(sb, 5, &bh)); /* the next read works */
	brelse(bh);
	/* A failed data write is reported by fsync, once. */
	unsigned char src[4096];
	memset(src, 'd', sizeof(src));
	ASSERT_EQ(pw_pwrite(fd, src, 4096, 0), 4096);
	atomic_store(&bdev->bd_writes_left, 0);
	ASSERT_ERR(pw_fsync(fd), EIO);
	atomic_store(&bdev->bd_writes_left, -1);
	ASSERT_OK(pw_fsync(fd));
	pw__fput(f);
	ASSERT_OK(pw_close(fd));
}

static sigjmp_buf bus_jb;
static void
on_bus(int sig)
{
	siglongjmp(bus_jb, sig);
}

/* A store through a shared mapping into a hole allocates the block at
 * fault time (page_mkwrite), so writeback cannot fail for space; with no
 * space left the store gets SIGBUS, as on Linux. */
TEST(buffer_page_mkwrite_allocates)
{
	int fd = bfs_mount(1024, false);
	ASSERT_OK(pw_ftruncate(fd, 3 * 4096)); /* all holes */
	char *m = pw_mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT(m != MAP_FAILED);
	ASSERT_EQ(m[5000], 0);
	ASSERT(!B.allocated[4]);
	m[5000] = 'Z';
	/* The fault ran bfs_get_block, which changed B behind the compiler's
	 * back (B's address never escapes this file): make it reload. */
	__asm__ volatile("" ::: "memory");
	for (int b = 4; b < 8; b++)
		ASSERT(B.allocated[b]); /* the whole page's blocks */
	ASSERT_OK(pw_msync(m, 3 * 4096, MS_SYNC));
	unsigned char disk[1024];
	int ifd = open(image, O_RDONLY);
	ASSERT_EQ(pread(ifd, disk, 1024, (8 + 4) * 1024), 1024);
	close(ifd);
	ASSERT_EQ(disk[5000 - 4096], 'Z');
	ASSERT_EQ(disk[0], 0); /* the new block was zeroed, not stale */
	B.enospc_after = 0;
	struct sigaction sa, old;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_bus;
	ASSERT_OK(sigaction(SIGBUS, &sa, &old));
	volatile int sig = sigsetjmp(bus_jb, 1);
	if (sig == 0) {
		m[9000] = 'Y'; /* page 2: no space for its blocks */
		ASSERT(!"the store should have raised SIGBUS");
	}
	ASSERT_EQ(sig, SIGBUS);
	sigaction(SIGBUS, &old, NULL);
	ASSERT_OK(pw_munmap(m, 3 * 4096));
	ASSERT_OK(pw_close(fd));
}

/* Readahead reads a cold sequential file with few large I/Os, holes
 * excepted, and gets the bytes right: with 1 KiB blocks (buffer heads)
 * and with 4 KiB blocks (pages read without buffers, a get_block asked
 * for a run that maps one block at a time, as bfs's does). */
static void
readahead_batches_io(unsigned bsize)
{
	int fd = bfs_mount(bsize, false);
	static unsigned char a[12 * 4096], got[12 * 4096];
	for (size_t k = 0; k < sizeof(a); k++)
		a[k] = (unsigned char)(k * 7 + 1);
	/* A hole in the middle: blocks 20..23 (page 5) are never written. */
	ASSERT_EQ(pw_pwrite(fd, a, 5 * 4096, 0), 5 * 4096);
	ASSERT_EQ(pw_pwrite(fd, a + 6 * 4096, 6 * 4096, 6 * 4096), 6 * 4096);
	memset(a + 5 * 4096, 0, 4096);
	ASSERT_OK(pw_fsync(fd));
	ASSERT_OK(pw__test_evict_all(fd));
	struct file *f = pw__fget(fd);
	struct block_device *bdev = f->f_inode->i_sb->s_bdev;
	long before = atomic_load(&bdev->bd_reads);
	ASSERT_EQ(pw_pread(fd, got, sizeof(got), 0), (ssize_t)sizeof(got));
	long reads = atomic_load(&bdev->bd_reads) - before;
	pw__fput(f);
	TLOG("%u-byte blocks: %ld device reads for 12 cold pages, one a hole", bsize, reads);
	ASSERT_MEM_EQ(got, a, sizeof(got));
	ASSERT_LE(reads, 4); /* per block it would be 44 at 1 KiB */
	ASSERT_OK(pw_close(fd));
}

TEST(buffer_readahead_batches_io)
{
	readahead_batches_io(1024);
	readahead_batches_io(4096);
}

/* A page straddling EOF is mapped writable; the file then grows (by
 * truncate, or by a write further into the page) over hole blocks of that
 * page.  A store there through the old mapping must still reach the disk:
 * the page is write-protected when i_size grows, so the store faults and
 * page_mkwrite allocates and dirties those blocks (the kernel's
 * pagecache_isize_extended).  Without it the store is lost at writeback. */
/* The store lands in the window between the i_size update and the
 * write-protect of pagecache_isize_extended: writeback must still write
 * (and allocate) the block it reached (PG_wrmapped). */
static char *window_map;
static void
store_in_window(struct inode *inode, loff_t from, loff_t to)
{
	(void)inode;
	if (window_map && from < 2500 && to > 2500) {
		window_map[2500] = 'W';
		window_map = NULL;
	}
}

TEST(buffer_store_between_isize_and_write_protect)
{
	for (int how = 0; how < 2; how++) {
		int fd = bfs_mount(1024, false);
		ASSERT_EQ(pw_pwrite(fd, "a", 1, 999), 1); /* size 1000: block 0 only */
		char *m = pw_mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		ASSERT(m != MAP_FAILED);
		m[10] = 'x'; /* writable now; block 0 dirty, blocks 1-3 holes */
		window_map = m;
		pw__hooks.isize_extended = store_in_window;
		if (how == 0)
			ASSERT_OK(pw_ftruncate(fd, 4096));
		else
			ASSERT_EQ(pw_pwrite(fd, "z", 1, 4000), 1);
		pw__hooks.isize_extended = NULL;
		ASSERT(window_map == NULL); /* the hook ran */
		ASSERT_OK(pw_msync(m, 4096, MS_SYNC));
		ASSERT_OK(pw_munmap(m, 4096));
		ASSERT_OK(pw__test_evict_all(fd));
		char c = 0;
		ASSERT_EQ(pw_pread(fd, &c, 1, 2500), 1);
		TLOG("%s: byte 2500 after writeback and eviction: %#x", how ? "write" : "truncate", c);
		ASSERT_EQ(c, 'W');
		ASSERT_OK(pw_close(fd));
	}
}

TEST(buffer_isize_extended_mapped_page)
{
	for (int how = 0; how < 2; how++) {
		int fd = bfs_mount(1024, false);
		ASSERT_EQ(pw_pwrite(fd, "a", 1, 999), 1); /* size 1000: block 0 only */
		char *m = pw_mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		ASSERT(m != MAP_FAILED);
		m[10] = 'x'; /* writable now; block 0 dirty */
		if (how == 0)
			ASSERT_OK(pw_ftruncate(fd, 4096));
		else
			ASSERT_EQ(pw_pwrite(fd, "z", 1, 4000), 1);
		m[2500] = 'S'; /* block 2: a hole until this store */
		__asm__ volatile("" ::: "memory");
		ASSERT_OK(pw_msync(m, 4096, MS_SYNC));
		ASSERT_OK(pw_munmap(m, 4096));
		ASSERT_OK(pw__test_evict_all(fd));
		char c = 0;
		ASSERT_EQ(pw_pread(fd, &c, 1, 2500), 1);
		TLOG("%s: byte 2500 after writeback and eviction: %#x", how ? "write" : "truncate", c);
		ASSERT_EQ(c, 'S');
		ASSERT_EQ(pw_pread(fd, &c, 1, 10), 1);
		ASSERT_EQ(c, 'x');
		ASSERT_OK(pw_close(fd));
	}
}

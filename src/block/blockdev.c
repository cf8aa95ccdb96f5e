/*
 * blockdev.c - block devices: an image file or a device, read and written
 * with pread/pwrite, with its own page cache for metadata.
 *
 * Each open device gets a private inode (on a private superblock) whose
 * address_space caches device blocks: a page at index n holds bytes
 * [n * PAGE_SIZE, (n + 1) * PAGE_SIZE) of the device, split into buffers
 * of bd_block_size.  Filesystems read metadata through sb_bread() on that
 * cache (buffer.c); file data never passes through it.
 *
 * Error injection (tests): bd_fail_read_nth / bd_fail_write_nth fail one
 * I/O with EIO; bd_writes_left makes every write fail once it reaches 0,
 * as a disk that died would.  Counters are atomics; I/O itself needs no
 * lock (pread/pwrite are positional).
 */
#include "internal.h"

#include <pagewright/buffer_head.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

static int
blkdev_get_block(struct inode *inode, uint64_t iblock, struct buffer_head *bh,
                 int create)
{
	(void)create;
	struct block_device *bdev = inode->i_private;
	if ((iblock + 1) * bh->b_size > bdev->bd_size)
		return -EIO;
	map_bh(bh, bdev, iblock);
	return 0;
}

static int
blkdev_readpage(struct file *file, struct page *page)
{
	(void)file;
	return block_read_full_page(page, blkdev_get_block);
}

static int
blkdev_writepage(struct page *page, struct writeback_control *wbc)
{
	return block_write_full_page(page, blkdev_get_block, wbc);
}

static int
blkdev_writepages(struct address_space *mapping, struct writeback_control *wbc)
{
	return mpage_writepages(mapping, wbc, blkdev_get_block);
}

static const struct address_space_operations blkdev_aops = {
	.readpage = blkdev_readpage,
	.writepage = blkdev_writepage,
	.writepages = blkdev_writepages,
	.invalidatepage = block_invalidatepage,
};

static const struct super_operations blkdev_sops;

/*
 * Is the image file st attached to a kernel loop device that would see it
 * change under it (or change it under us)?  A loop device that reads a
 * file pagewright writes serves stale blocks to the kernel's ext2, and
 * one that writes a file pagewright reads corrupts what pagewright
 * caches, so: refuse a read-write open of a file any loop device backs,
 * and a read-only one of a file a writable loop device backs.  The loop
 * devices name their files in sysfs; without sysfs nothing is refused.
 * Returns the loop device's number, or -1.
 */
static int
loop_backing(const struct stat *st, bool rdonly)
{
	DIR *d = opendir("/sys/block");
	if (!d)
		return -1;
	int found = -1;
	struct dirent *e;
	while (found < 0 && (e = readdir(d))) {
		int n;
		if (sscanf(e->d_name, "loop%d", &n) != 1)
			continue;
		char p[300], file[PATH_MAX];
		snprintf(p, sizeof(p), "/sys/block/%s/loop/backing_file", e->d_name);
		FILE *f = fopen(p, "re");
		if (!f)
			continue; /* not attached */
		bool got = fgets(file, sizeof(file), f) != NULL;
		fclose(f);
		if (!got)
			continue;
		file[strcspn(file, "\n")] = 0;
		/* "(deleted)" files and renamed paths fail the stat: not ours
		 * unless the identity matches. */
		struct stat bst;
		if (stat(file, &bst) != 0 || bst.st_dev != st->st_dev || bst.st_ino != st->st_ino)
			continue;
		bool loop_ro = false;
		snprintf(p, sizeof(p), "/sys/block/%s/ro", e->d_name);
		if ((f = fopen(p, "re"))) {
			loop_ro = fgetc(f) == '1';
			fclose(f);
		}
		if (!rdonly || !loop_ro)
			found = n;
	}
	closedir(d);
	return found;
}

int
blkdev_open(const char *path, bool rdonly, struct block_device **out)
{
	if (!path)
		return -EFAULT;
	/* A block device opened for writing is opened O_EXCL: the kernel
	 * then refuses to mount it while we have it, and we refuse it while
	 * the kernel has it mounted (EBUSY). */
	struct stat pst;
	bool excl = !rdonly && stat(path, &pst) == 0 && S_ISBLK(pst.st_mode);
	int fd = open(path, (rdonly ? O_RDONLY : O_RDWR) | (excl ? O_EXCL : 0) | O_CLOEXEC);
	if (fd < 0 && excl && errno == EBUSY)
		pw_log("%s is in use (mounted?): refused", path);
	if (fd < 0)
		return -errno;
	struct stat st;
	uint64_t size = 0;
	int err = 0;
	if (fstat(fd, &st) != 0)
		err = -errno;
	else if (S_ISREG(st.st_mode)) {
		size = (uint64_t)st.st_size;
		int loop = loop_backing(&st, rdonly);
		if (loop >= 0) {
			pw_log("%s is attached to /dev/loop%d (the kernel may have it mounted): "
			       "detach it first (losetup -d)", path, loop);
			err = -EBUSY;
		}
	}
	else if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &size) != 0)
			err = -errno;
	} else
		err = -ENOTBLK;
	struct block_device *bdev = err ? NULL : calloc(1, sizeof(*bdev));
	struct super_block *sb = err ? NULL : calloc(1, sizeof(*sb));
	if (!err && (!bdev || !sb))
		err = -ENOMEM;
	if (err) {
		free(bdev);
		free(sb);
		close(fd);
		return err;
	}
	pthread_mutex_init(&sb->s_inode_lock, NULL);
	sb->s_op = &blkdev_sops;
	sb->s_maxbytes = (loff_t)size;
	sb->s_blocksize = PAGE_SIZE;
	sb->s_bdev = bdev;
	bdev->bd_inode = new_inode(sb, 0, &blkdev_aops);
	if (!bdev->bd_inode) {
		free(bdev);
		free(sb);
		close(fd);
		return -ENOMEM;
	}
	bdev->bd_inode->i_private = bdev;
	bdev->bd_inode->i_mode = S_IFBLK | 0600;
	i_size_write(bdev->bd_inode, (loff_t)size);
	bdev->bd_mapping = bdev->bd_inode->i_mapping;
	bdev->bd_fd = fd;
	bdev->bd_size = size;
	bdev->bd_rdonly = rdonly;
	bdev->bd_block_size = 1024;
	atomic_store(&bdev->bd_writes_left, -1);
	atomic_store(&bdev->bd_fail_write_at, -1);
	pthread_mutex_init(&bdev->bd_start_lock, NULL);
	*out = bdev;
	return 0;
}

void
blkdev_close(struct block_device *bdev)
{
	if (!bdev)
		return;
	struct inode *inode = bdev->bd_inode;
	struct super_block *sb = inode->i_sb;
	atomic_store(&inode->i_nlink, 0);
	iput(inode); /* drops the cached pages and their buffers */
	pthread_mutex_destroy(&sb->s_inode_lock);
	pw__inode_table_free(sb);
	free(sb);
	close(bdev->bd_fd);
	pthread_mutex_destroy(&bdev->bd_start_lock);
	free(bdev);
}

/* Should this I/O fail by injection?  n is the 1-based I/O number. */
static bool
injected(_Atomic long *nth, long n)
{
	long want = atomic_load(nth);
	return want > 0 && want == n;
}

int
blkdev_read(struct block_device *bdev, uint64_t off, void *buf, size_t len)
{
	long n = atomic_fetch_add(&bdev->bd_reads, 1) + 1;
	if (injected(&bdev->bd_fail_read_nth, n))
		return -EIO;
	if (off > bdev->bd_size || len > bdev->bd_size - off)
		return -EIO;
	for (size_t done = 0; done < len;) {
		ssize_t r = pread(bdev->bd_fd, (char *)buf + done, len - done,
		                  (off_t)(off + done));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EFAULT)
			return -EFAULT;
		if (r <= 0)
			return -EIO;
		done += (size_t)r;
	}
	return 0;
}

int
blkdev_readv(struct block_device *bdev, uint64_t off, const struct iovec *iov, int cnt)
{
	size_t len = 0;
	for (int k = 0; k < cnt; k++)
		len += iov[k].iov_len;
	long n = atomic_fetch_add(&bdev->bd_reads, 1) + 1;
	if (injected(&bdev->bd_fail_read_nth, n))
		return -EIO;
	if (off > bdev->bd_size || len > bdev->bd_size - off)
		return -EIO;
	/* Page cache pages are pool memory: filled inside the kernel.  If
	 * that fails, preadv reads it all again and says what went wrong. */
	if (pw__pool_read_fd(bdev->bd_fd, off, iov, cnt) == 0)
		return 0;
	ssize_t r;
	do
		r = preadv(bdev->bd_fd, iov, cnt, (off_t)off);
	while (r < 0 && errno == EINTR);
	if (r == (ssize_t)len)
		return 0;
	/* A short transfer: finish it one buffer at a time. */
	size_t done = r > 0 ? (size_t)r : 0, at = 0;
	for (int k = 0; k < cnt; k++) {
		size_t l = iov[k].iov_len;
		if (at + l > done) {
			size_t skip = done > at ? done - at : 0;
			int err = blkdev_read(bdev, off + at + skip, (char *)iov[k].iov_base + skip,
			                      l - skip);
			if (err)
				return err;
		}
		at += l;
	}
	return 0;
}

/* The checks and error injection every write goes through; one call
 * counts as one write.  0 or -errno. */
static int
write_checks(struct block_device *bdev, uint64_t off, size_t len)
{
	long n = atomic_fetch_add(&bdev->bd_writes, 1) + 1;
	if (bdev->bd_rdonly)
		return -EROFS;
	if (injected(&bdev->bd_fail_write_nth, n))
		return -EIO;
	int64_t at = atomic_load(&bdev->bd_fail_write_at);
	if (at >= 0 && (uint64_t)at >= off && (uint64_t)at - off < len &&
	    atomic_compare_exchange_strong(&bdev->bd_fail_write_at, &at, -1))
		return -EIO;
	long left = atomic_load(&bdev->bd_writes_left);
	if (left == 0)
		return -EIO;
	if (left > 0)
		atomic_fetch_sub(&bdev->bd_writes_left, 1);
	if (off > bdev->bd_size || len > bdev->bd_size - off)
		return -EIO;
	/* A device is not subject to RLIMIT_FSIZE (SPEC 5), but an image is a
	 * host file: rather than let the kernel raise SIGXFSZ at us, fail the
	 * write the limit would refuse. */
	rlim_t limit = pw__fsize_limit();
	if (limit != RLIM_INFINITY && off + len > (uint64_t)limit)
		return -EFBIG;
	return 0;
}

static int
write_error(void)
{
	return errno == ENOSPC ? -ENOSPC : -EIO;
}

int
blkdev_writev(struct block_device *bdev, uint64_t off, const struct iovec *iov, int cnt)
{
	size_t len = 0;
	for (int k = 0; k < cnt; k++)
		len += iov[k].iov_len;
	int err = write_checks(bdev, off, len);
	if (err)
		return err;
	ssize_t r;
	do
		r = pwritev(bdev->bd_fd, iov, cnt, (off_t)off);
	while (r < 0 && errno == EINTR);
	if (r == (ssize_t)len)
		return 0;
	if (r < 0)
		return write_error();
	/* A short transfer: finish it one buffer at a time. */
	size_t done = (size_t)r, at = 0;
	for (int k = 0; k < cnt; k++) {
		size_t l = iov[k].iov_len;
		for (size_t skip = done > at ? PW_MIN(done - at, l) : 0; skip < l;) {
			ssize_t w = pwrite(bdev->bd_fd, (const char *)iov[k].iov_base + skip,
			                   l - skip, (off_t)(off + at + skip));
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				return w < 0 ? write_error() : -EIO;
			skip += (size_t)w;
		}
		at += l;
	}
	return 0;
}

int
blkdev_write(struct block_device *bdev, uint64_t off, const void *buf, size_t len)
{
	int err = write_checks(bdev, off, len);
	if (err)
		return err;
	for (size_t done = 0; done < len;) {
		ssize_t r = pwrite(bdev->bd_fd, (const char *)buf + done, len - done,
		                   (off_t)(off + done));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 && errno == ENOSPC ? -ENOSPC : -EIO;
		done += (size_t)r;
	}
	return 0;
}

void
blkdev_start_write(struct block_device *bdev, uint64_t off, size_t len)
{
	if (!pw__start_io_enabled)
		return;
	if (len >= PW_START_IO_MIN) {
		(void)sync_file_range(bdev->bd_fd, (off64_t)off, (off64_t)len,
		                      SYNC_FILE_RANGE_WRITE);
		return;
	}
	/* A run of a few blocks (a small file's data, an inode table block)
	 * waits for others: one system call per run would cost more than it
	 * overlaps.  Once PW_START_IO_MIN bytes of them are written, one call
	 * starts the range they span (clean pages in it cost nothing), so
	 * that the flush at a sync finds little left: 10,000 small files
	 * otherwise left all their blocks to the final fdatasync. */
	uint64_t lo = 0, hi = 0;
	pthread_mutex_lock(&bdev->bd_start_lock);
	if (bdev->bd_start_bytes == 0 || off < bdev->bd_start_lo)
		bdev->bd_start_lo = off;
	if (bdev->bd_start_bytes == 0 || off + len > bdev->bd_start_hi)
		bdev->bd_start_hi = off + len;
	bdev->bd_start_bytes += len;
	if (bdev->bd_start_bytes >= PW_START_IO_MIN) {
		lo = bdev->bd_start_lo;
		hi = bdev->bd_start_hi;
		bdev->bd_start_bytes = 0;
	}
	pthread_mutex_unlock(&bdev->bd_start_lock);
	if (hi > lo)
		(void)sync_file_range(bdev->bd_fd, (off64_t)lo, (off64_t)(hi - lo),
		                      SYNC_FILE_RANGE_WRITE);
}

int
blkdev_flush(struct block_device *bdev)
{
	if (bdev->bd_rdonly)
		return 0;
	if (atomic_load(&bdev->bd_writes_left) == 0)
		return -EIO;
	return fdatasync(bdev->bd_fd) == 0 ? 0 : -EIO;
}

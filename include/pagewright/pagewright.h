/*
 * pagewright.h - the application API.
 *
 * Every call behaves as the POSIX call of the same name without the pw_
 * prefix: same arguments, same types, -1 and errno on failure (MAP_FAILED
 * for pw_mmap, the error number itself for pw_posix_fadvise).  Descriptors
 * and paths are pagewright's own: a pagewright descriptor means nothing to
 * the kernel, and paths are resolved in pagewright's namespace, which starts
 * as an empty in-memory root "/".
 *
 * These names are fixed: programs outside the project are written against
 * them.  The library initialises itself on first use.
 */
#ifndef PAGEWRIGHT_H
#define PAGEWRIGHT_H

#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Filesystem types: "ramfs" (source NULL), "hostfs" (source: a host
 * directory), "ext2" (source: an image file or device).  Options are
 * comma-separated and may be NULL: "ro", "legacy_aops". */
int pw_mount(const char *fstype, const char *source, const char *target,
             const char *options);
int pw_umount(const char *target);

int pw_open(const char *path, int flags, ...);
int pw_close(int fd);
ssize_t pw_read(int fd, void *buf, size_t count);
ssize_t pw_write(int fd, const void *buf, size_t count);
ssize_t pw_pread(int fd, void *buf, size_t count, off_t offset);
ssize_t pw_pwrite(int fd, const void *buf, size_t count, off_t offset);
ssize_t pw_readv(int fd, const struct iovec *iov, int iovcnt);
ssize_t pw_writev(int fd, const struct iovec *iov, int iovcnt);
ssize_t pw_preadv(int fd, const struct iovec *iov, int iovcnt, off_t offset);
ssize_t pw_pwritev(int fd, const struct iovec *iov, int iovcnt, off_t offset);
off_t pw_lseek(int fd, off_t offset, int whence);
int pw_ftruncate(int fd, off_t length);
int pw_truncate(const char *path, off_t length);
int pw_fsync(int fd);
int pw_fdatasync(int fd);
int pw_fstat(int fd, struct stat *st);
int pw_stat(const char *path, struct stat *st);
int pw_unlink(const char *path);
int pw_mkdir(const char *path, mode_t mode);
int pw_rmdir(const char *path);
int pw_rename(const char *oldpath, const char *newpath);

/* Links and attributes (added after DESIGN.md; docs/DESIGN-CHANGES.md).
 * Symbolic links are followed in every component of a path, at most 40
 * per call (then ELOOP); the final component is not followed by
 * pw_lstat, pw_lchown, pw_readlink, pw_unlink, pw_rename, pw_link's
 * oldpath (as Linux's link(2)), the new name of pw_symlink/pw_link/
 * pw_mkdir, pw_open with O_NOFOLLOW (ELOOP) or O_CREAT|O_EXCL, and
 * pw_utimens with AT_SYMLINK_NOFOLLOW.  An absolute target is resolved in
 * pagewright's namespace, never the host's, also on hostfs. */
int pw_symlink(const char *target, const char *linkpath);
ssize_t pw_readlink(const char *path, char *buf, size_t bufsiz);
int pw_link(const char *oldpath, const char *newpath);
int pw_lstat(const char *path, struct stat *st);
int pw_chmod(const char *path, mode_t mode);
int pw_fchmod(int fd, mode_t mode);
int pw_chown(const char *path, uid_t owner, gid_t group);
int pw_lchown(const char *path, uid_t owner, gid_t group);
int pw_fchown(int fd, uid_t owner, gid_t group);
/* times NULL: both now; UTIME_NOW, UTIME_OMIT as utimensat(2); flags 0
 * or AT_SYMLINK_NOFOLLOW (<fcntl.h>). */
int pw_utimens(const char *path, const struct timespec times[2], int flags);
int pw_futimens(int fd, const struct timespec times[2]);
int pw_statvfs(const char *path, struct statvfs *st);
int pw_fstatvfs(int fd, struct statvfs *st);
/* Extended attributes, as getxattr(2) and friends (the l forms do not
 * follow a final symlink).  Namespaces "user.", "trusted." (root only)
 * and "security." (set by root only), where the filesystem keeps them
 * (ext2); elsewhere ENOTSUP. */
ssize_t pw_getxattr(const char *path, const char *name, void *value, size_t size);
ssize_t pw_lgetxattr(const char *path, const char *name, void *value, size_t size);
ssize_t pw_fgetxattr(int fd, const char *name, void *value, size_t size);
int pw_setxattr(const char *path, const char *name, const void *value, size_t size,
                int flags);
int pw_lsetxattr(const char *path, const char *name, const void *value, size_t size,
                 int flags);
int pw_fsetxattr(int fd, const char *name, const void *value, size_t size, int flags);
ssize_t pw_listxattr(const char *path, char *list, size_t size);
ssize_t pw_llistxattr(const char *path, char *list, size_t size);
ssize_t pw_flistxattr(int fd, char *list, size_t size);
int pw_removexattr(const char *path, const char *name);
int pw_lremovexattr(const char *path, const char *name);
int pw_fremovexattr(int fd, const char *name);

/* A directory stream; opaque, like DIR. */
typedef struct pw_dir PW_DIR;
PW_DIR *pw_opendir(const char *path);
struct dirent *pw_readdir(PW_DIR *dir);
int pw_closedir(PW_DIR *dir);

/* Mappings of pagewright files into this process.  Loads and stores are
 * served by pagewright's page-fault handler; an access past end of file
 * raises SIGBUS, as Linux does. */
void *pw_mmap(void *addr, size_t length, int prot, int flags, int fd,
              off_t offset);
int pw_munmap(void *addr, size_t length);
int pw_msync(void *addr, size_t length, int flags);
int pw_madvise(void *addr, size_t length, int advice);
int pw_posix_fadvise(int fd, off_t offset, off_t len, int advice);

/* Beyond POSIX. */

/* Write back every dirty page of every mount, like sync(2). */
int pw_sync(void);

/* Act, on the calling thread, as user uid and group gid (permission checks,
 * the owner of new files) instead of the process's effective IDs, which
 * pagewright otherwise asks the kernel for at every check (a system call
 * each).  pw_set_thread_creds((uid_t)-1, (gid_t)-1) goes back to those.
 * A server that never changes its IDs sets its own once per thread. */
void pw_set_thread_creds(uid_t uid, gid_t gid);

/* A new descriptor for the file open on fd, with flags (an access mode,
 * O_TRUNC, O_APPEND...; O_CREAT and O_EXCL are ignored), as opening
 * /proc/self/fd/N does on Linux: it works after the file lost its last
 * name.  The access mode is checked against the file's permissions as
 * pw_open would.  Return: the descriptor, or -1 and errno. */
int pw_reopen(int fd, int flags);

/* Cap the memory of the page pool (bytes; 0 = no cap).  The environment
 * variable PAGEWRIGHT_MEM_LIMIT (K/M/G suffixes) sets it at start-up.
 * Clean pages are evicted to stay under it; dirty pages are kept under a
 * quarter of it by making writers write back.  -1/EINVAL below 1 MiB. */
int pw_set_mem_limit(uint64_t bytes);

/* Cache statistics, for tools and tests. */
struct pw_stats {
	uint64_t pool_pages;      /* frames the pool holds (free or used) */
	uint64_t allocated_pages; /* frames in use: cached or referenced */
	uint64_t cached_pages;    /* pages in some file's page cache */
	uint64_t dirty_pages;     /* of those, dirty */
	uint64_t writeback_pages; /* of those, under writeback */
	uint64_t mapped_pages;    /* of those, mapped into user memory */
	uint64_t hits;            /* read lookups that found an uptodate page */
	uint64_t misses;          /* read lookups that had to read */
	uint64_t faults;          /* user page faults served */
	uint64_t fault_around;    /* extra pages mapped by fault-around */
	uint64_t short_copies;    /* atomic copies that stopped early */
	uint64_t write_retries;   /* zero-progress write steps retried */
	/* Writeback (fields added after the first release: append only). */
	uint64_t written_pages;   /* pages written back, in total */
	uint64_t writeback_ios;   /* write calls writeback made for them:
	                           * written_pages / writeback_ios is the
	                           * batching (writepages) */
	uint64_t write_errors;    /* pages whose writeback failed */
	uint64_t throttled;       /* times a writer over the dirty limit had
	                           * to write back before dirtying more */
	uint64_t throttle_ms;     /* time writers spent so, in total */
	uint64_t dirty_limit_pages;      /* the hard dirty limit now */
	uint64_t dirty_background_pages; /* the writeback thread starts here */
	/* Reclaim and user mappings. */
	uint64_t mem_limit_pages; /* the cap (pw_set_mem_limit), 0 = none */
	uint64_t reclaimed_pages; /* pages evicted to stay under the cap */
	uint64_t reclaim_unmaps;  /* unmap calls reclaim made for them (one
	                           * per run of consecutive mapped pages) */
	uint64_t kernel_maps;     /* the process's kernel mappings at the last
	                           * count (vm.max_map_count applies to it) */
	uint64_t max_map_count;   /* the limit pagewright keeps under */
	uint64_t map_drops;       /* times cold user mappings were dropped
	                           * near that limit */
	uint64_t map_dropped_vmas; /* user mappings (pw_mmap ranges) dropped */
	uint64_t refaults;        /* faults on a page reclaim had evicted from
	                           * that mapping (such pages get more time) */
	uint64_t stuck_pages;     /* pages left out of the pool because the
	                           * kernel refused to unmap them from a user
	                           * mapping (their frames are never reused) */
	uint64_t warmed_pages;    /* free frames the pool's warmer touched
	                           * ahead of use (PAGEWRIGHT_POOL_WARM) */
};
void pw_get_stats(struct pw_stats *st);

/* The pages of one mounted filesystem: its files' caches and, for a
 * block filesystem, the cache of its device (metadata). */
struct pw_mount_stats {
	uint64_t cached_pages;
	uint64_t dirty_pages;
	uint64_t writeback_pages;
	uint64_t mapped_pages;
	uint64_t written_pages;   /* since mount */
	uint64_t writeback_ios;   /* write calls made for them */
	uint64_t write_errors;    /* pages whose writeback failed */
};
/* Statistics of the filesystem that holds path (any path inside the
 * mount).  -1/errno as pw_stat. */
int pw_get_mount_stats(const char *path, struct pw_mount_stats *st);

/*
 * Reading without a copy, for servers that hand file data on to the
 * kernel (the FUSE server): an extension, not a POSIX call.
 *
 * Every cached page lives in one memory file, pw_pool_fd(): a descriptor
 * the process may splice(2) or pread(2) from (never write to or
 * truncate).  pw_pread_pin reads [offset, offset + count) of fd's file
 * into the cache exactly as pw_pread would (same checks, errors and
 * readahead) but copies nothing: it describes the bytes as *nspans spans
 * of that file, in order, and keeps their pages from being freed or
 * reused until pw_unpin(*pin).  max must be at least count / 4096 + 2.
 * The bytes may change under a concurrent write to the file, as a read
 * racing a write may see either.  Return: the bytes described, fewer than
 * count only at end of file (0 there, with *pin NULL), or -1 and errno
 * with nothing pinned.
 */
struct pw_span {
	off_t off;     /* in pw_pool_fd() */
	size_t len;
};
struct pw_pin;
int pw_pool_fd(void);
ssize_t pw_pread_pin(int fd, size_t count, off_t offset, struct pw_span *spans, int max,
                     int *nspans, struct pw_pin **pin);
void pw_unpin(struct pw_pin *pin);

/*
 * pw_pread without filling the cache, for a server whose client caches
 * the bytes itself (the FUSE server in cache=writeback or cache=kernel,
 * where the kernel's page cache keeps them): pages already cached are
 * copied (dirty ones included, so the bytes are what pw_pread returns),
 * the rest is read from the file's storage straight into buf and not
 * kept.  No readahead; but a small read (16 KiB or less) that misses
 * reads the aligned 64 KiB around it into the cache, so that the next
 * small reads near it need no I/O, until read-arounds on this descriptor
 * stop being used (a random reader all over a large file).  Filesystems
 * without a direct read (ramfs) read through the cache.  Return: as
 * pw_pread.
 */
ssize_t pw_pread_nocache(int fd, void *buf, size_t count, off_t offset);

#ifdef __cplusplus
}
#endif
#endif /* PAGEWRIGHT_H */

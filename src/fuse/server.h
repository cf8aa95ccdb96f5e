/*
 * server.h - serve a directory of pagewright's namespace over FUSE.
 *
 * The caller mounts a filesystem in pagewright (pw_mkdir + pw_mount), then
 * pw_fuse_new mounts the FUSE filesystem on a host directory, pw_fuse_run
 * answers the kernel until the mount goes away (fusermount3 -u, umount) or
 * a signal (SIGINT, SIGTERM, SIGHUP) ends it, and pw_fuse_destroy unmounts
 * what is left and closes every descriptor the kernel left open, so that
 * the caller's pw_umount can write everything back.
 *
 * Not part of libpagewright: this links with libfuse3.
 */
#ifndef PW_FUSE_SERVER_H
#define PW_FUSE_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How file data reaches the kernel (docs/fuse.md). */
enum pw_fuse_cache {
	PW_FUSE_CACHE_DIRECT, /* direct_io: pagewright's cache is the only one */
	PW_FUSE_CACHE_KERNEL, /* the kernel's page cache too, written through */
	PW_FUSE_CACHE_WRITEBACK, /* the kernel's page cache kept across opens,
	                          * and its writeback cache */
};

struct pw_fuse_opts {
	const char *root;        /* the served directory in pagewright's namespace */
	const char *mountpoint;  /* absolute host path */
	const char *fsname;      /* shown as the source in /proc/mounts */
	const char *subtype;     /* shown as fuse.<subtype> */
	bool read_only;
	bool allow_other;
	bool debug;              /* libfuse's request trace on stderr */
	enum pw_fuse_cache cache;
	unsigned max_threads;    /* 0: the default */
	bool no_uring;           /* never FUSE over io_uring, even if offered */
	double timeout;          /* the kernel caches attributes and names this long, s */
};

struct pw_fuse;

/* What the kernel asked of the server since the mount (pagewright stat). */
struct pw_fuse_counters {
	uint64_t reads, read_bytes;   /* READ requests and bytes replied */
	uint64_t writes, write_bytes; /* WRITE requests and bytes written */
	uint64_t fsyncs;              /* FSYNC and FSYNCDIR requests */
	uint64_t creates;             /* CREATE, MKNOD and MKDIR that made a file */
};

/* Mount.  Return: 0, or -errno with a one-line reason in err. */
int pw_fuse_new(const struct pw_fuse_opts *opts, struct pw_fuse **res, char *err,
                size_t errlen);
/* Serve until unmounted or signalled.  Return: 0, or -errno. */
int pw_fuse_run(struct pw_fuse *f);
/* Did the kernel grant shared mmap of direct_io files?  (After INIT.) */
bool pw_fuse_mmap_granted(struct pw_fuse *f);
/* Are requests served over io_uring?  (Once one has been.) */
bool pw_fuse_uring(struct pw_fuse *f);
/* A snapshot of the counters; any thread, any time before destroy. */
void pw_fuse_get_counters(struct pw_fuse *f, struct pw_fuse_counters *c);
/* Have the kernel send the dirty pages it holds for the mount (those of
 * shared mappings, and with cache=writeback every written page) and wait
 * until they are here; then pw_sync writes everything to the image.  For
 * `pagewright sync`, from a thread that serves no requests. */
void pw_fuse_kernel_writeback(struct pw_fuse *f);
void pw_fuse_destroy(struct pw_fuse *f);

#endif

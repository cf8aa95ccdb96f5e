/*
 * devio.c - the server's reads and writes of /dev/fuse.
 *
 * They pass everything through unchanged but one thing: the reply to the
 * kernel's INIT request.  Since Linux 6.6 a FUSE server may answer INIT
 * with FUSE_DIRECT_IO_ALLOW_MMAP (bit 36 of the extended flags), and then
 * files opened with FOPEN_DIRECT_IO can be mapped shared; without it such
 * a mapping fails with ENODEV.  libfuse exposes the bit from 3.16 on as
 * FUSE_CAP_DIRECT_IO_ALLOW_MMAP; with an older libfuse (Debian 12 ships
 * 3.14) the server sets it here, in the bytes of the reply, through the
 * custom I/O hooks libfuse offers (fuse_session_custom_io).  It asks only when the kernel's INIT offered
 * the bit, so older kernels see the reply libfuse wrote.
 *
 * The INIT request and its reply are the first message each way, before
 * any other request is read, so recording the request's unique id in the
 * read hook and matching it in the write hook needs no lock.
 *
 * Profile: with PW_FUSE_PROFILE set in its environment the server counts
 * the requests of each opcode and the time from reading one to writing
 * its reply (on the same thread: libfuse answers on the thread that read
 * the request), and prints the table on stderr when it ends.  That is
 * how the requests a workload costs per file were counted (docs/fuse.md).
 */
#include "fuse_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#ifndef FUSE_DIRECT_IO_ALLOW_MMAP
#define FUSE_DIRECT_IO_ALLOW_MMAP (1ULL << 36)
#endif
#ifndef FUSE_OVER_IO_URING
#define FUSE_OVER_IO_URING (1ULL << 41)
#endif

#define PROF_OPS 64
static bool prof_on;
static struct {
	_Atomic uint64_t n, ns;
} prof[PROF_OPS];
static __thread uint32_t prof_op;  /* opcode + 1 of the request in hand */
static __thread uint64_t prof_t0;

static uint64_t
now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void
prof_start(const struct fuse_in_header *in)
{
	if (in->opcode < PROF_OPS) {
		prof_op = in->opcode + 1;
		prof_t0 = now_ns();
		atomic_fetch_add_explicit(&prof[in->opcode].n, 1, memory_order_relaxed);
	}
}

static void
prof_end(void)
{
	if (prof_op) {
		atomic_fetch_add_explicit(&prof[prof_op - 1].ns, now_ns() - prof_t0,
		                          memory_order_relaxed);
		prof_op = 0;
	}
}

/* A request served from a ring (uring.c): count it the same way. */
void
pw__devio_profile_ring(const void *in_header, bool start)
{
	if (!prof_on)
		return;
	if (start)
		prof_start(in_header);
	else
		prof_end();
}

void
pw__devio_profile_print(void)
{
	if (!prof_on)
		return;
	fprintf(stderr, "pagewright: requests by opcode (count, mean us from read to reply)\n");
	for (unsigned k = 0; k < PROF_OPS; k++) {
		uint64_t n = atomic_load(&prof[k].n), ns = atomic_load(&prof[k].ns);
		if (n)
			fprintf(stderr, "  op %2u %10llu %8.1f\n", k, (unsigned long long)n,
			        (double)ns / 1e3 / (double)n);
	}
}

static ssize_t
devio_read(int fd, void *buf, size_t len, void *userdata)
{
	ssize_t n = read(fd, buf, len);
	const struct fuse_in_header *in = buf;
	if (n >= (ssize_t)sizeof(*in) && prof_on)
		prof_start(in);
	if (n < (ssize_t)sizeof(*in) || in->opcode != FUSE_INIT)
		return n;
	struct devio *io = pw__server_devio(userdata);
	const struct fuse_init_in *arg = (const void *)(in + 1);
	size_t have = (size_t)n - sizeof(*in);
	uint64_t flags = 0;
	if (have >= offsetof(struct fuse_init_in, flags) + sizeof(arg->flags))
		flags = arg->flags;
	if ((flags & FUSE_INIT_EXT) &&
	    have >= offsetof(struct fuse_init_in, flags2) + sizeof(arg->flags2))
		flags |= (uint64_t)arg->flags2 << 32;
	io->kernel_offers = (flags & FUSE_DIRECT_IO_ALLOW_MMAP) != 0;
	io->kernel_uring = (flags & FUSE_OVER_IO_URING) != 0;
	io->init_unique = in->unique;
	return n;
}

static ssize_t
devio_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	struct devio *io = pw__server_devio(userdata);
	if (prof_on)
		prof_end();
	if (pw__uring_in_hand()) {
		ssize_t r = pw__uring_writev(iov, count);
		if (r != -2)
			return r;
	}
	uint64_t unique = io->init_unique;
	bool init = false;
	if (unique && count >= 2 && iov[0].iov_len >= sizeof(struct fuse_out_header)) {
		struct fuse_out_header *out = iov[0].iov_base;
		size_t need = offsetof(struct fuse_init_out, flags2) + sizeof(uint32_t);
		if (out->unique == unique) {
			io->init_unique = 0;
			init = out->error == 0;
			if (out->error == 0 && io->want && io->kernel_offers &&
			    iov[1].iov_len >= need) {
				struct fuse_init_out *arg = iov[1].iov_base;
				arg->flags |= FUSE_INIT_EXT;
				arg->flags2 |= (uint32_t)(FUSE_DIRECT_IO_ALLOW_MMAP >> 32);
				io->granted = true;
			}
			/* Ask for the ring only once it is ready to be registered:
			 * the kernel holds every request until it is. */
			if (out->error == 0 && io->want_uring && io->kernel_uring &&
			    iov[1].iov_len >= sizeof(struct fuse_init_out)) {
				struct fuse_init_out *arg = iov[1].iov_base;
				io->uring = pw__uring_prepare(io->se, arg->max_write,
				                              arg->max_pages);
				if (io->uring) {
					arg->flags |= FUSE_INIT_EXT;
					arg->flags2 |= (uint32_t)(FUSE_OVER_IO_URING >> 32);
				}
			}
		}
	}
	ssize_t n = writev(fd, iov, count);
	/* The kernel has applied the INIT reply when writev returns. */
	if (init && n > 0) {
		if (io->uring && pw__uring_start(io->uring) != 0)
			fprintf(stderr, "pagewright: cannot start the io_uring threads\n");
		pw__server_after_init(userdata);
	}
	return n;
}

/* A reply spliced from a pipe (READ data from pagewright's pool: libfuse
 * offers splice only to custom I/O that has this hook). */
static ssize_t
devio_splice_send(int fdin, off_t *offin, int fdout, off_t *offout, size_t len,
                  unsigned int flags, void *userdata)
{
	(void)userdata;
	if (prof_on)
		prof_end();
	if (pw__uring_in_hand())
		return pw__uring_splice(fdin, len);
	return splice(fdin, offin, fdout, offout, len, flags);
}

int
pw__devio_install(struct fuse_session *se)
{
	static const struct fuse_custom_io hooks = {
		.read = devio_read,
		.writev = devio_writev,
		.splice_send = devio_splice_send,
	};
	prof_on = getenv("PW_FUSE_PROFILE") != NULL;
	return fuse_session_custom_io(se, &hooks, fuse_session_fd(se));
}

/*
 * bench_read.c - the buffered read path on cached pages.
 *
 * Question: what does pw_pread cost on a file whose pages are all cached,
 * against the kernel's pread(2) on tmpfs and against memcpy out of a
 * malloc'd buffer of the file's size (the ceiling)?
 *
 * Reads of 64 B, 4 KiB and 1 MiB walk the file sequentially and wrap
 * around.  The file is small for small reads so that all three contenders
 * work in the CPU caches (256 KiB, 8 MiB, 64 MiB).  The destination is one
 * buffer of the read size, reused.
 */
#include "bench_common.h"

#include <pagewright/pagewright.h>

enum impl { MEMCPY, KERNEL, PW, NIMPL };
static const char *impl_name[NIMPL] = {"memcpy", "kernel tmpfs", "pagewright"};

struct rctx {
	enum impl impl;
	int fd;
	char *file;   /* memcpy: the "file", filesz bytes */
	char *dst;    /* size bytes */
	size_t size, filesz, pos;
};

static uint64_t
run_read(void *arg, long n)
{
	struct rctx *c = arg;
	uint64_t t0 = now_ns();
	for (long k = 0; k < n; k++) {
		if (c->pos + c->size > c->filesz)
			c->pos = 0;
		ssize_t r;
		switch (c->impl) {
		case MEMCPY:
			memcpy(c->dst, c->file + c->pos, c->size);
			clobber();
			r = (ssize_t)c->size;
			break;
		case KERNEL:
			r = pread(c->fd, c->dst, c->size, (off_t)c->pos);
			break;
		default:
			r = pw_pread(c->fd, c->dst, c->size, (off_t)c->pos);
			break;
		}
		if (r != (ssize_t)c->size)
			die("read");
		c->pos += c->size;
	}
	return now_ns() - t0;
}

static void
setup(struct rctx *c, enum impl impl, size_t size, size_t filesz)
{
	*c = (struct rctx){impl, -1, NULL, NULL, size, filesz, 0};
	c->dst = malloc(size);
	die_if(!c->dst, "malloc");
	memset(c->dst, 0, size);
	char *chunk = malloc(MiB);
	die_if(!chunk, "malloc");
	fill_pattern(chunk, MiB, 3);
	char kpath[64];
	switch (impl) {
	case MEMCPY:
		c->file = malloc(filesz);
		die_if(!c->file, "malloc");
		break;
	case KERNEL:
		snprintf(kpath, sizeof(kpath), "/dev/shm/pw-bench-read.%d", (int)getpid());
		c->fd = open(kpath, O_RDWR | O_CREAT | O_TRUNC, 0600);
		die_if(c->fd < 0, kpath);
		unlink(kpath);
		break;
	default:
		c->fd = pw_open("/m/r", O_RDWR | O_CREAT | O_TRUNC, 0600);
		die_if(c->fd < 0, "pw_open /m/r");
		break;
	}
	for (size_t off = 0; off < filesz; off += MiB) {
		size_t len = filesz - off < MiB ? filesz - off : MiB;
		ssize_t r = (ssize_t)len;
		if (impl == KERNEL)
			r = pwrite(c->fd, chunk, len, (off_t)off);
		else if (impl == PW)
			r = pw_pwrite(c->fd, chunk, len, (off_t)off);
		else
			memcpy(c->file + off, chunk, len);
		die_if(r != (ssize_t)len, "fill");
	}
	free(chunk);
}

static void
teardown(struct rctx *c)
{
	if (c->impl == KERNEL)
		close(c->fd);
	else if (c->impl == PW) {
		pw_close(c->fd);
		die_if(pw_unlink("/m/r") != 0, "pw_unlink");
	}
	free(c->file);
	free(c->dst);
}

int
main(void)
{
	bench_init();
	print_machine("bench_read: buffered reads of cached pages");
	print_batch_method();
	printf("pagewright: pw_pread on ramfs (every page cached)\n"
	       "kernel:     pread(2) on tmpfs (/dev/shm)\n"
	       "memcpy:     out of a malloc'd buffer of the file's size (ceiling)\n"
	       "sequential reads, wrapping at the end of the file\n"
	       "MB/s = 10^6 bytes/s; 'vs kernel' and 'vs memcpy' = rate of this "
	       "row / rate of that row\n\n");

	die_if(pw_mkdir("/m", 0755) != 0, "pw_mkdir /m");
	die_if(pw_mount("ramfs", NULL, "/m", NULL) != 0, "pw_mount ramfs");

	static const size_t sizes[] = {64, 4 * KiB, MiB};
	static const size_t filesz[] = {256 * KiB, 8 * MiB, 64 * MiB};
	struct pw_stats st0, st1;
	pw_get_stats(&st0);

	printf("%-7s %-8s %-12s %11s %19s %10s %9s %9s\n", "size", "file", "impl",
	       "ns/call", "spread ns/call", "MB/s", "vs kernel", "vs memcpy");
	for (size_t si = 0; si < 3; si++) {
		struct rctx c[NIMPL];
		bench_fn fns[NIMPL];
		void *ctxs[NIMPL];
		struct sample s[NIMPL];
		for (int im = 0; im < NIMPL; im++) {
			setup(&c[im], (enum impl)im, sizes[si], filesz[si]);
			fns[im] = run_read;
			ctxs[im] = &c[im];
		}
		measure_set(NIMPL, fns, ctxs, 1L << 40, s);
		for (int im = 0; im < NIMPL; im++)
			teardown(&c[im]);
		char b1[32], b2[32];
		for (int im = 0; im < NIMPL; im++) {
			char spread[40];
			snprintf(spread, sizeof(spread), "%.1f..%.1f", s[im].min, s[im].max);
			printf("%-7s %-8s %-12s %11.1f %19s %10.1f %8.2fx %8.2fx\n",
			       size_name(sizes[si], b1, sizeof(b1)),
			       size_name(filesz[si], b2, sizeof(b2)), impl_name[im], s[im].med,
			       spread, mb_per_s(sizes[si], s[im].med),
			       s[KERNEL].med / s[im].med, s[MEMCPY].med / s[im].med);
		}
		printf("\n");
		fflush(stdout);
	}
	pw_get_stats(&st1);
	printf("pagewright counters over the run: hits=%llu misses=%llu "
	       "(misses should be 0: every page was cached by the writes)\n",
	       (unsigned long long)(st1.hits - st0.hits),
	       (unsigned long long)(st1.misses - st0.misses));
	return 0;
}

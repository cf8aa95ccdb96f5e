/*
 * bench_write.c - the buffered write path on cached pages.
 *
 * Question: how much does an in-process write into pagewright's page cache
 * cost, against the kernel's write(2) into tmpfs and against a plain memcpy
 * into a malloc'd buffer of the same size (the ceiling)?
 *
 * Two modes, three write sizes (64 B, 4 KiB, 1 MiB):
 *  - overwrite: the file is pre-sized and fully written once, so every
 *    page is cached; pwrite()s walk it sequentially and wrap around.  The
 *    file is small for small writes so that all three contenders work in
 *    the CPU caches (256 KiB, 8 MiB, 64 MiB).
 *  - append: write() at the file position until the file reaches the same
 *    size, then truncate it to 0 and start again.  Every page written is a
 *    new page-cache page.  The truncate is outside the timed part.
 *
 * Contenders: pagewright (pw_pwrite / pw_write on ramfs), the kernel
 * (pwrite(2) / write(2) on a tmpfs file in /dev/shm, unlinked at once) and
 * memcpy (sequential, wrapping, into a buffer of the file's size).
 */
#include "bench_common.h"

#include <pagewright/pagewright.h>

#include <stdbool.h>

enum impl { MEMCPY, KERNEL, PW, NIMPL };
static const char *impl_name[NIMPL] = {"memcpy", "kernel tmpfs", "pagewright"};

struct wctx {
	enum impl impl;
	bool append;
	int fd;        /* kernel or pagewright descriptor */
	char *dst;     /* memcpy destination, filesz bytes */
	const char *src;
	size_t size;   /* bytes per call */
	size_t filesz; /* overwrite: file size; append: size before truncating */
	size_t pos;
};

static void
restart_append(struct wctx *c)
{
	if (c->impl == KERNEL) {
		die_if(ftruncate(c->fd, 0) != 0, "ftruncate");
		die_if(lseek(c->fd, 0, SEEK_SET) != 0, "lseek");
	} else if (c->impl == PW) {
		die_if(pw_ftruncate(c->fd, 0) != 0, "pw_ftruncate");
		die_if(pw_lseek(c->fd, 0, SEEK_SET) != 0, "pw_lseek");
	}
	c->pos = 0;
}

static uint64_t
run_write(void *arg, long n)
{
	struct wctx *c = arg;
	uint64_t paused = 0;
	uint64_t t0 = now_ns();
	for (long k = 0; k < n; k++) {
		if (c->pos + c->size > c->filesz) {
			if (c->append) {
				uint64_t p0 = now_ns();
				restart_append(c);
				paused += now_ns() - p0;
			} else {
				c->pos = 0;
			}
		}
		ssize_t r;
		switch (c->impl) {
		case MEMCPY:
			memcpy(c->dst + c->pos, c->src, c->size);
			clobber();
			r = (ssize_t)c->size;
			break;
		case KERNEL:
			r = c->append ? write(c->fd, c->src, c->size)
			              : pwrite(c->fd, c->src, c->size, (off_t)c->pos);
			break;
		default:
			r = c->append ? pw_write(c->fd, c->src, c->size)
			              : pw_pwrite(c->fd, c->src, c->size, (off_t)c->pos);
			break;
		}
		if (r != (ssize_t)c->size)
			die("write");
		c->pos += c->size;
	}
	return now_ns() - t0 - paused;
}

/* Fill the whole file once so every page is cached before overwriting. */
static void
prefill(struct wctx *c)
{
	char *chunk = malloc(MiB);
	die_if(!chunk, "malloc");
	fill_pattern(chunk, MiB, 7);
	for (size_t off = 0; off < c->filesz; off += MiB) {
		size_t len = c->filesz - off < MiB ? c->filesz - off : MiB;
		ssize_t r = 0;
		if (c->impl == KERNEL)
			r = pwrite(c->fd, chunk, len, (off_t)off);
		else if (c->impl == PW)
			r = pw_pwrite(c->fd, chunk, len, (off_t)off);
		else
			memcpy(c->dst + off, chunk, len), r = (ssize_t)len;
		die_if(r != (ssize_t)len, "prefill");
	}
	free(chunk);
}

static void
setup(struct wctx *c, enum impl impl, bool append, size_t size, size_t filesz,
      const char *src)
{
	*c = (struct wctx){impl, append, -1, NULL, src, size, filesz, 0};
	char kpath[64];
	switch (impl) {
	case MEMCPY:
		c->dst = malloc(filesz);
		die_if(!c->dst, "malloc");
		break;
	case KERNEL:
		snprintf(kpath, sizeof(kpath), "/dev/shm/pw-bench-write.%d", (int)getpid());
		c->fd = open(kpath, O_RDWR | O_CREAT | O_TRUNC, 0600);
		die_if(c->fd < 0, kpath);
		unlink(kpath);
		break;
	default:
		c->fd = pw_open("/m/w", O_RDWR | O_CREAT | O_TRUNC, 0600);
		die_if(c->fd < 0, "pw_open /m/w");
		break;
	}
	/* memcpy's buffer is pre-touched in both modes: it is the ceiling. */
	if (!append || impl == MEMCPY)
		prefill(c);
}

static void
teardown(struct wctx *c)
{
	if (c->impl == KERNEL)
		close(c->fd);
	else if (c->impl == PW) {
		pw_close(c->fd);
		die_if(pw_unlink("/m/w") != 0, "pw_unlink");
	} else
		free(c->dst);
}

int
main(void)
{
	bench_init();
	print_machine("bench_write: buffered writes into cached / new pages");
	print_batch_method();
	printf("pagewright: pw_pwrite (overwrite) / pw_write (append) on ramfs\n"
	       "kernel:     pwrite(2) / write(2) on tmpfs (/dev/shm)\n"
	       "memcpy:     into a malloc'd buffer of the file's size (ceiling)\n"
	       "append: write until the file size shown, ftruncate to 0 (not "
	       "timed), repeat\n"
	       "targets (not asserted): 64 B >= 20x kernel, 4 KiB >= 5x kernel, "
	       "1 MiB >= 0.7 of memcpy\n"
	       "MB/s = 10^6 bytes/s; 'vs kernel' and 'vs memcpy' = rate of this "
	       "row / rate of that row\n\n");

	die_if(pw_mkdir("/m", 0755) != 0, "pw_mkdir /m");
	die_if(pw_mount("ramfs", NULL, "/m", NULL) != 0, "pw_mount ramfs");

	static const size_t sizes[] = {64, 4 * KiB, MiB};
	static const size_t filesz[] = {256 * KiB, 8 * MiB, 64 * MiB};
	char *src = malloc(MiB);
	die_if(!src, "malloc");
	fill_pattern(src, MiB, 1);

	printf("%-9s %-7s %-8s %-12s %11s %19s %10s %9s %9s\n", "mode", "size",
	       "file", "impl", "ns/call", "spread ns/call", "MB/s", "vs kernel",
	       "vs memcpy");
	for (int mode = 0; mode < 2; mode++) {
		for (size_t si = 0; si < 3; si++) {
			struct wctx c[NIMPL];
			bench_fn fns[NIMPL];
			void *ctxs[NIMPL];
			struct sample s[NIMPL];
			for (int im = 0; im < NIMPL; im++) {
				setup(&c[im], (enum impl)im, mode == 1, sizes[si], filesz[si], src);
				fns[im] = run_write;
				ctxs[im] = &c[im];
			}
			measure_set(NIMPL, fns, ctxs, 1L << 40, s);
			for (int im = 0; im < NIMPL; im++)
				teardown(&c[im]);
			char b1[32], b2[32];
			for (int im = 0; im < NIMPL; im++) {
				char spread[40];
				snprintf(spread, sizeof(spread), "%.1f..%.1f", s[im].min, s[im].max);
				printf("%-9s %-7s %-8s %-12s %11.1f %19s %10.1f %8.2fx %8.2fx\n",
				       mode ? "append" : "overwrite",
				       size_name(sizes[si], b1, sizeof(b1)),
				       size_name(filesz[si], b2, sizeof(b2)), impl_name[im],
				       s[im].med, spread, mb_per_s(sizes[si], s[im].med),
				       s[KERNEL].med / s[im].med, s[MEMCPY].med / s[im].med);
			}
			printf("\n");
			fflush(stdout);
		}
	}
	struct pw_stats st;
	pw_get_stats(&st);
	printf("pagewright counters at the end: short_copies=%llu "
	       "write_retries=%llu pool_pages=%llu\n",
	       (unsigned long long)st.short_copies,
	       (unsigned long long)st.write_retries,
	       (unsigned long long)st.pool_pages);
	free(src);
	return 0;
}

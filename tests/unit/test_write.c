/*
 * test_write.c - the buffered write path as an application sees it
 * (SPEC section 10, scenarios 1-6, 8, 9, 16), on ramfs, hostfs and hostfs
 * with legacy_aops.
 */
#include "../pwt.h"

#include <limits.h>
#include <sys/resource.h>


/* After a write, check the data again from a cold cache: write back and
 * evict every page (hostfs), then read; on hostfs also compare the host
 * file itself after fsync. */
static void
check_cold(const struct tfs *t, int fd, const char *name, const unsigned char *expect,
           size_t size)
{
	CHECK_FILE(fd, expect, size);
	ASSERT_OK(pw_fsync(fd));
	if (t->kind != 0) {
		unsigned char *h = xmalloc(size + 1);
		ASSERT_EQ(host_read(t, name, h, size + 1), (int64_t)size);
		ASSERT_MEM_EQ(h, expect, size);
		free(h);
	}
	evict_all(t, fd);
	CHECK_FILE(fd, expect, size);
}

/* SPEC 10.1: aligned, sub-page (offset 0, mid, ending on a boundary) and
 * multi-page writes; a 0-byte write returns 0 and creates nothing. */
TEST(write_basics)
{
	FOR_EACH_KIND(k) {
		struct tfs t;
		tfs_mount(&t, k);
		TLOG("%s", test_kind_name(k));
		const size_t N = 5 * PG;
		unsigned char *model = calloc(1, N), *src = xmalloc(N);
		int fd = tfs_create(&t, "f");

		/* 0-byte write to an empty file: returns 0, size stays 0 */
		struct pw_stats s0, s1;
		pw_get_stats(&s0);
		ASSERT_EQ(pw_write(fd, src, 0), 0);
		ASSERT_EQ(pw_pwrite(fd, src, 0, 3 * PG), 0);
		pw_get_stats(&s1);
		ASSERT_EQ(fsize(fd), 0);
		ASSERT_EQ(s1.cached_pages, s0.cached_pages);
		ASSERT_EQ(pw_lseek(fd, 0, SEEK_CUR), 0);

		struct {
			off_t pos;
			size_t len;
		} w[] = {
		    {0, PG},             /* aligned page */
		    {0, 100},            /* sub-page at offset 0 */
		    {1000, 777},         /* sub-page in the middle */
		    {2 * PG - 300, 300}, /* ending on a page boundary */
		    {PG + 5, 3 * PG + 7},/* several pages, unaligned at both ends */
		    {2 * PG, 2 * PG},    /* aligned multi-page overwrite */
		    {0, N},              /* everything */
		    {4 * PG + 1, 1},     /* one byte */
		};
		unsigned seed = 1;
		size_t size = 0;
		for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++, seed++) {
			pat_fill(src, w[i].len, seed, 0);
			ASSERT_EQ(pw_pwrite(fd, src, w[i].len, w[i].pos), (int64_t)w[i].len);
			memcpy(model + w[i].pos, src, w[i].len);
			if ((size_t)w[i].pos + w[i].len > size)
				size = w[i].pos + w[i].len;
			CHECK_FILE(fd, model, size);
			if (i == 3 || i == 6)
				check_cold(&t, fd, "f", model, size);
		}
		/* pw_write advances the file position by the bytes written */
		ASSERT_EQ(pw_lseek(fd, 10, SEEK_SET), 10);
		pat_fill(src, 5000, 99, 0);
		ASSERT_EQ(pw_write(fd, src, 5000), 5000);
		memcpy(model + 10, src, 5000);
		ASSERT_EQ(pw_lseek(fd, 0, SEEK_CUR), 5010);
		ASSERT_EQ(pw_write(fd, src, 0), 0);
		ASSERT_EQ(pw_lseek(fd, 0, SEEK_CUR), 5010);
		check_cold(&t, fd, "f", model, size);
		/* a 0-byte write past EOF does not extend the file */
		ASSERT_EQ(pw_pwrite(fd, src, 0, (off_t)size + 3 * PG), 0);
		ASSERT_EQ(fsize(fd), (int64_t)size);
		ASSERT_OK(pw_close(fd));
		free(model);
		free(src);
	}
}

/* SPEC 10.2 and 10.3: past EOF the file grows to pos+n and the hole reads
 * zero; a partial overwrite of an uncached page keeps the other bytes;
 * truncated-away bytes never come back. */
TEST(write_past_eof_and_holes)
{
	FOR_EACH_KIND(k) {
		struct tfs t;
		tfs_mount(&t, k);
		TLOG("%s", test_kind_name(k));
		const size_t N = 8 * PG;
		unsigned char *model = calloc(1, N), *src = xmalloc(N);
		int fd = tfs_create(&t, "f");

		/* write far past EOF of an empty file */
		pat_fill(src, 3000, 1, 0);
		ASSERT_EQ(pw_pwrite(fd, src, 3000, 10000), 3000);
		memcpy(model + 10000, src, 3000);
		CHECK_FILE(fd, model, 13000);
		check_cold(&t, fd, "f", model, 13000);

		/* a hole in the middle of data */
		pat_fill(src, 700, 2, 0);
		ASSERT_EQ(pw_pwrite(fd, src, 700, 6 * PG + 5), 700);
		memcpy(model + 6 * PG + 5, src, 700);
		CHECK_FILE(fd, model, 6 * PG + 705);

		/* SPEC 10.3: partial overwrite of an uncached page */
		check_cold(&t, fd, "f", model, 6 * PG + 705);
		pat_fill(src, 10, 3, 0);
		ASSERT_EQ(pw_pwrite(fd, src, 10, 10000 + 100), 10);
		memcpy(model + 10100, src, 10);
		CHECK_FILE(fd, model, 6 * PG + 705);
		check_cold(&t, fd, "f", model, 6 * PG + 705);

		/* truncate down into a page, then write further out: the bytes
		 * cut off must read as zero, not as their old values */
		ASSERT_OK(pw_ftruncate(fd, 10050));
		memset(model + 10050, 0, N - 10050);
		CHECK_FILE(fd, model, 10050);
		pat_fill(src, 50, 4, 0);
		ASSERT_EQ(pw_pwrite(fd, src, 50, 7 * PG), 50);
		memcpy(model + 7 * PG, src, 50);
		CHECK_FILE(fd, model, 7 * PG + 50);
		check_cold(&t, fd, "f", model, 7 * PG + 50);

		/* append through the file position past EOF after lseek */
		ASSERT_EQ(pw_lseek(fd, 7 * PG + 1000, SEEK_SET), (int64_t)(7 * PG + 1000));
		pat_fill(src, 20, 5, 0);
		ASSERT_EQ(pw_write(fd, src, 20), 20);
		memcpy(model + 7 * PG + 1000, src, 20);
		CHECK_FILE(fd, model, 7 * PG + 1020);
		ASSERT_OK(pw_close(fd));
		free(model);
		free(src);
	}
}

/* SPEC 10.4 and 10.5: the source becomes unreadable after k bytes.  The
 * write returns k, moves the position by k, leaves every old byte past k
 * alone (ramfs too) and sets i_size to max(old, pos+k).  On an uncached
 * (not uptodate) page no garbage becomes readable. */
TEST(write_short_copy)
{
	FOR_EACH_KIND(k) {
		struct tfs t;
		tfs_mount(&t, k);
		TLOG("%s", test_kind_name(k));
		unsigned char *bad = partly_bad_buffer(7);
		const unsigned char *src = bad + PG - 1000; /* 1000 good bytes */
		const size_t N = 4 * PG;
		unsigned char *model = xmalloc(N);
		int fd = tfs_create(&t, "f");
		pat_fill(model, N, 1, 0);
		write_exact(fd, model, 2 * PG, 0);

		/* uptodate page, within the file */
		ASSERT_EQ(pw_pwrite(fd, src, 6000, 500), 1000);
		memcpy(model + 500, src, 1000);
		CHECK_FILE(fd, model, 2 * PG);

		/* through the file position: moves by 1000 only */
		ASSERT_EQ(pw_lseek(fd, 3000, SEEK_SET), 3000);
		ASSERT_EQ(pw_write(fd, src, 3000), 1000);
		ASSERT_EQ(pw_lseek(fd, 0, SEEK_CUR), 4000);
		memcpy(model + 3000, src, 1000);
		CHECK_FILE(fd, model, 2 * PG);

		/* extending: i_size = pos + k, not pos + n */
		ASSERT_EQ(pw_pwrite(fd, src, 6000, 2 * PG - 10), 1000);
		memcpy(model + 2 * PG - 10, src, 1000);
		CHECK_FILE(fd, model, 2 * PG + 990);
		check_cold(&t, fd, "f", model, 2 * PG + 990);

		/* extending within a cached, uptodate page: i_size = pos + k, not
		 * pos + n and not the end of the step */
		unsigned char tmp[990];
		read_exact(fd, tmp, sizeof(tmp), 2 * PG); /* cached and uptodate */
		ASSERT_EQ(pw_pwrite(fd, src, 3000, 2 * PG + 990), 1000);
		memcpy(model + 2 * PG + 990, src, 1000);
		CHECK_FILE(fd, model, 2 * PG + 1990);
		ASSERT_OK(pw_ftruncate(fd, 2 * PG + 990));
		memset(model + 2 * PG + 990, 0, 1000);
		CHECK_FILE(fd, model, 2 * PG + 990);

		/* not uptodate: the page was just evicted (hostfs) */
		evict_all(&t, fd);
		ASSERT_EQ(pw_pwrite(fd, src, 6000, PG + 300), 1000);
		memcpy(model + PG + 300, src, 1000);
		CHECK_FILE(fd, model, 2 * PG + 990);
		check_cold(&t, fd, "f", model, 2 * PG + 990);

		/* not uptodate and past EOF: a brand-new page */
		ASSERT_EQ(pw_pwrite(fd, src, 6000, 3 * PG + 100), 1000);
		memset(model + 2 * PG + 990, 0, 3 * PG + 100 - (2 * PG + 990));
		memcpy(model + 3 * PG + 100, src, 1000);
		CHECK_FILE(fd, model, 3 * PG + 1100);
		check_cold(&t, fd, "f", model, 3 * PG + 1100);

		/* a short copy that ends exactly on a page boundary of the file */
		ASSERT_EQ(pw_pwrite(fd, src, 4000, PG - 1000), 1000);
		memcpy(model + PG - 1000, src, 1000);
		CHECK_FILE(fd, model, 3 * PG + 1100);
		ASSERT_OK(pw_close(fd));
		munmap(bad, 2 * PG);
		free(model);
	}
}

/* SPEC 10.6: bad sources.  Invalid at byte 0: EFAULT, nothing changes (no
 * size change, no position change, nothing past EOF on the host).
 * Reading into a bad buffer is EFAULT too. */
TEST(write_bad_source)
{
	FOR_EACH_KIND(k) {
		struct tfs t;
		tfs_mount(&t, k);
		TLOG("%s", test_kind_name(k));
		unsigned char *none = mmap(NULL, 2 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		ASSERT(none != MAP_FAILED);
		unsigned char *partly = partly_bad_buffer(3);
		/* an unmapped region (made again right before each use, since any
		 * mmap, the sanitizers' included, may reuse the addresses) */
		unsigned char *gone = NULL;
		const void *bads[] = {(void *)1, NULL, none, none + PG - 1, (void *)-1, partly + PG,
		                      (void *)0x800000000000ul /* not canonical */,
		                      (void *)0xffff800000000000ul /* the kernel's */};

		unsigned char model[3000];
		pat_fill(model, sizeof(model), 9, 0);
		int fd = tfs_create(&t, "f");
		write_exact(fd, model, sizeof(model), 0);
		ASSERT_OK(pw_fsync(fd));
		for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
			TLOG("  bad source %zu: %p%s", i, bads[i], bads[i] == (void *)-1 ? " (unmapped)" : "");
			if (bads[i] == (void *)-1) {
				gone = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
				            -1, 0);
				ASSERT(gone != MAP_FAILED);
				ASSERT_OK(munmap(gone, 2 * PG));
				bads[i] = gone;
			}
			ASSERT_ERR(pw_pwrite(fd, bads[i], 100, 10), EFAULT);
			ASSERT_ERR(pw_pwrite(fd, bads[i], 3 * PG, 2000), EFAULT); /* would extend */
			ASSERT_ERR(pw_pwrite(fd, bads[i], 10, 5 * PG), EFAULT);   /* past EOF */
			ASSERT_EQ(pw_lseek(fd, 2500, SEEK_SET), 2500);
			ASSERT_ERR(pw_write(fd, bads[i], 1000), EFAULT);
			ASSERT_EQ(pw_lseek(fd, 0, SEEK_CUR), 2500);
			struct iovec iov[2] = {{(void *)bads[i], 10}, {model, 10}};
			ASSERT_ERR(pw_pwritev(fd, iov, 2, 0), EFAULT);
			ASSERT_ERR(pw_pread(fd, (void *)bads[i], 100, 0), EFAULT);
			CHECK_FILE(fd, model, sizeof(model));
		}
		/* nothing was left past EOF on the host either */
		ASSERT_OK(pw_fsync(fd));
		if (k != 0) {
			unsigned char h[4 * 4096];
			ASSERT_EQ(host_read(&t, "f", h, sizeof(h)), (int64_t)sizeof(model));
			ASSERT_MEM_EQ(h, model, sizeof(model));
		}
		evict_all(&t, fd);
		CHECK_FILE(fd, model, sizeof(model));

		/* bad later segment: the vector is cut there (short write) */
		unsigned char good[PG];
		pat_fill(good, sizeof(good), 10, 0);
		struct iovec iov[3] = {{good, 1500}, {(void *)1, 100}, {good, 100}};
		ASSERT_EQ(pw_pwritev(fd, iov, 3, 2000), 1500);
		memcpy(model + 2000, good, 1000);
		unsigned char m2[3500];
		memcpy(m2, model, 3000);
		memcpy(m2 + 3000, good + 1000, 500);
		CHECK_FILE(fd, m2, 3500);
		/* a partly bad first segment followed by a good one: short count */
		struct iovec iov2[2] = {{partly + PG - 300, 600}, {good, 100}};
		ASSERT_EQ(pw_pwritev(fd, iov2, 2, 100), 300);
		memcpy(m2 + 100, partly + PG - 300, 300);
		CHECK_FILE(fd, m2, 3500);
		check_cold(&t, fd, "f", m2, 3500);

		ASSERT_OK(pw_close(fd));
		munmap(none, 2 * PG);
		munmap(partly, 2 * PG);
	}
}

/* SPEC 10.8: zero-length segments first, in the middle, last, and right
 * after a segment that exactly fills a page. */
TEST(write_zero_length_segments)
{
	FOR_EACH_KIND(k) {
		struct tfs t;
		tfs_mount(&t, k);
		TLOG("%s", test_kind_name(k));
		unsigned char *src = xmalloc(4 * PG);
		pat_fill(src, 4 * PG, 5, 0);
		unsigned char *model = calloc(1, 8 * PG);
		int fd = tfs_create(&t, "f");
		size_t size = 0;
		struct {
			off_t pos;
			size_t lens[6];
			int n;
		} cases[] = {
		    {0, {0, 100, 0, 200, 0}, 5},
		    {0, {PG, 0, 10}, 3},           /* fills page 0 exactly, then a 0 */
		    {100, {PG - 100, 0, 0, 5}, 4}, /* fills the rest of page 0 exactly */
		    {3 * PG, {0, 0, 0}, 3},        /* only zero-length: 0, no extension */
		    {2 * PG - 7, {7, 0, PG, 0}, 4},
		    {PG + 1, {0, 2 * PG, 0, 0, 0, 1}, 6},
		};
		for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
			struct iovec iov[6];
			size_t total = 0, o = c * 97;
			for (int i = 0; i < cases[c].n; i++) {
				iov[i].iov_base = src + o;
				iov[i].iov_len = cases[c].lens[i];
				memcpy(model + cases[c].pos + total, src + o, cases[c].lens[i]);
				total += cases[c].lens[i];
				o += cases[c].lens[i] + 13;
			}
			ASSERT_EQ(pw_pwritev(fd, iov, cases[c].n, cases[c].pos), (int64_t)total);
			if (total && cases[c].pos + total > size)
				size = cases[c].pos + total;
			CHECK_FILE(fd, model, size);
			/* the same through writev and the file position */
			ASSERT_EQ(pw_lseek(fd, cases[c].pos, SEEK_SET), cases[c].pos);
			ASSERT_EQ(pw_writev(fd, iov, cases[c].n), (int64_t)total);
			ASSERT_EQ(pw_lseek(fd, 0, SEEK_CUR), (int64_t)(cases[c].pos + total));
			CHECK_FILE(fd, model, size);
		}
		/* an empty vector */
		ASSERT_EQ(pw_pwritev(fd, NULL, 0, 0), 0);
		check_cold(&t, fd, "f", model, size);
		ASSERT_OK(pw_close(fd));
		free(src);
		free(model);
	}
}

/* SPEC 10.9: segments {1000, 5000, 3} at pos 4090, byte for byte: onto
 * an empty file, onto cached data, onto evicted data, from heap memory
 * and from a mapping of another file. */
TEST(write_straddling_segments)
{
	FOR_EACH_KIND(k) {
		struct tfs t;
		tfs_mount(&t, k);
		TLOG("%s", test_kind_name(k));
		const size_t lens[3] = {1000, 5000, 3};
		const off_t pos = 4090;
		const size_t total = 6003, N = 4 * PG;
		unsigned char *heap = xmalloc(total + 64);
		pat_fill(heap, total + 64, 21, 0);

		int sfd = tfs_create(&t, "src");
		unsigned char *sdata = xmalloc(3 * PG);
		pat_fill(sdata, 3 * PG, 22, 0);
		write_exact(sfd, sdata, 3 * PG, 0);
		unsigned char *smap = pw_mmap(NULL, 3 * PG, PROT_READ, MAP_SHARED, sfd, 0);
		ASSERT(smap != MAP_FAILED);

		for (int variant = 0; variant < 6; variant++) {
			/* variant bit 0: source heap / mapping;
			 * variant / 2: destination empty / cached data / evicted data */
			const unsigned char *base = (variant & 1) ? smap + 77 : heap;
			const unsigned char *sbase = (variant & 1) ? sdata + 77 : heap;
			int fd = tfs_create(&t, "f");
			unsigned char *model = calloc(1, N);
			size_t size = 0;
			if (variant / 2 >= 1) {
				pat_fill(model, N, 30 + variant, 0);
				write_exact(fd, model, N, 0);
				size = N;
			}
			if (variant / 2 == 2) {
				ASSERT_OK(pw_fsync(fd));
				evict_all(&t, fd);
			}
			if (variant & 1)
				ASSERT_OK(pw_madvise(smap, 3 * PG, MADV_DONTNEED));
			/* segments separated by gaps in the source */
			struct iovec iov[3];
			size_t so = 0, mo = pos;
			for (int i = 0; i < 3; i++) {
				iov[i].iov_base = (void *)(base + so);
				iov[i].iov_len = lens[i];
				memcpy(model + mo, sbase + so, lens[i]);
				mo += lens[i];
				so += lens[i] + 11;
			}
			ASSERT_EQ(pw_pwritev(fd, iov, 3, pos), (int64_t)total);
			if ((size_t)pos + total > size)
				size = pos + total;
			CHECK_FILE(fd, model, size);
			check_cold(&t, fd, "f", model, size);
			/* and the source file was not touched */
			CHECK_FILE(sfd, sdata, 3 * PG);
			ASSERT_OK(pw_close(fd));
			ASSERT_OK(pw_unlink(tfs_path(&t, "f", (char[128]){0}, 128)));
			free(model);
		}
		ASSERT_OK(pw_munmap(smap, 3 * PG));
		ASSERT_OK(pw_close(sfd));
		free(heap);
		free(sdata);
	}
}

/* SPEC 10.16: concurrent O_APPEND writers never interleave.  Every record
 * is one pw_write; the file must be a sequence of whole records, each
 * writer's in order. */
struct app_arg {
	const struct tfs *t;
	int id, nrec;
};

static size_t
rec_len(int id, int seq)
{
	return 1 + (size_t)((id * 7919 + seq * 104729) % 6000);
}

static void *
append_thread(void *p)
{
	struct app_arg *a = p;
	int fd = tfs_open(a->t, "log", O_WRONLY | O_APPEND);
	unsigned char *buf = xmalloc(8000);
	for (int s = 0; s < a->nrec; s++) {
		size_t n = rec_len(a->id, s);
		/* record: id, seq (2 bytes each), then pattern */
		buf[0] = (unsigned char)a->id;
		buf[1] = (unsigned char)(s & 0xff);
		buf[2] = (unsigned char)(s >> 8);
		pat_fill(buf + 3, n, (unsigned)(a->id * 65536 + s), 0);
		ASSERT_EQ(pw_write(fd, buf, n + 3), (int64_t)(n + 3));
	}
	free(buf);
	ASSERT_OK(pw_close(fd));
	return NULL;
}

TEST_THREADED(write_append_concurrent)
{
	FOR_EACH_KIND(k) {
		struct tfs t;
		tfs_mount(&t, k);
		TLOG("%s", test_kind_name(k));
		enum { NT = 4, NREC = 150 };
		int fd = tfs_create(&t, "log");
		/* an O_APPEND fd ignores its position: starts at EOF */
		unsigned char x[3] = {0xff, 0, 0};
		ASSERT_EQ(pw_write(fd, "", 0), 0);
		struct app_arg args[NT];
		size_t expect = 0;
		for (int i = 0; i < NT; i++) {
			args[i] = (struct app_arg){&t, i, NREC};
			for (int s = 0; s < NREC; s++)
				expect += rec_len(i, s) + 3;
		}
		run_threads(NT, append_thread, args, sizeof(args[0]));
		ASSERT_EQ(fsize(fd), (int64_t)expect);
		unsigned char *all = xmalloc(expect), *pat = xmalloc(8000);
		for (int pass = 0; pass < 2; pass++) {
			read_exact(fd, all, expect, 0);
			int next[NT] = {0};
			size_t o = 0;
			while (o < expect) {
				int id = all[o], s = all[o + 1] | all[o + 2] << 8;
				ASSERT_LT(id, NT);
				ASSERT_EQ(s, next[id]);
				size_t n = rec_len(id, s);
				ASSERT_LE(o + 3 + n, expect);
				pat_fill(pat, n, (unsigned)(id * 65536 + s), 0);
				ASSERT_MEM_EQ(all + o + 3, pat, n);
				next[id]++;
				o += 3 + n;
			}
			for (int i = 0; i < NT; i++)
				ASSERT_EQ(next[i], NREC);
			ASSERT_OK(pw_fsync(fd));
			evict_all(&t, fd);
		}
		/* an O_APPEND descriptor appends even after lseek */
		int afd = tfs_open(&t, "log", O_WRONLY | O_APPEND);
		ASSERT_EQ(pw_lseek(afd, 0, SEEK_SET), 0);
		ASSERT_EQ(pw_write(afd, x, 3), 3);
		ASSERT_EQ(fsize(fd), (int64_t)expect + 3);
		unsigned char y[3];
		read_exact(fd, y, 3, (off_t)expect);
		ASSERT_MEM_EQ(y, x, 3);
		read_exact(fd, y, 3, 0);
		ASSERT_MEM_EQ(y, all, 3);
		ASSERT_OK(pw_close(afd));
		ASSERT_OK(pw_close(fd));
		free(all);
		free(pat);
	}
}

/* SPEC 5 / 10.16 pre-checks: RLIMIT_FSIZE (SIGXFSZ + EFBIG at or past the
 * limit, clamped below it), pos < 0, bad vectors. */
static volatile sig_atomic_t xfsz_count;
static void
on_xfsz(int sig)
{
	(void)sig;
	xfsz_count++;
}

TEST(write_limits)
{
	struct tfs ts[TEST_FS_KINDS];
	int fds[TEST_FS_KINDS];
	unsigned char *src = xmalloc(4 * PG);
	pat_fill(src, 4 * PG, 3, 0);
	/* mount and open everything before lowering the limit */
	FOR_EACH_KIND(k) {
		tfs_mount(&ts[k], k);
		fds[k] = tfs_create(&ts[k], "f");
		write_exact(fds[k], src, 100, 0);
	}
	FOR_EACH_KIND(k) {
		TLOG("%s: invalid arguments", test_kind_name(k));
		int fd = fds[k];
		ASSERT_ERR(pw_pwrite(fd, src, 10, -1), EINVAL);
		ASSERT_ERR(pw_pwrite(fd, src, 0, -4096), EINVAL);
		struct iovec iov[3] = {{src, 10}, {src, (size_t)-1}, {src, 10}};
		ASSERT_ERR(pw_pwritev(fd, iov, 3, 0), EINVAL);  /* "negative" length */
		struct iovec big[2] = {{src, SSIZE_MAX}, {src, SSIZE_MAX}};
		ASSERT_ERR(pw_pwritev(fd, big, 2, 0), EINVAL);  /* wrapping total */
		ASSERT_ERR(pw_pwritev(fd, iov, -1, 0), EINVAL);
		ASSERT_ERR(pw_pwritev(fd, iov, IOV_MAX + 1, 0), EINVAL);
		ASSERT_ERR(pw_pwritev(fd, iov, 1, -5), EINVAL);
		ASSERT_ERR(pw_writev(fd, iov, 3), EINVAL);
		ASSERT_ERR(pw_lseek(fd, -1, SEEK_SET), EINVAL);
		ASSERT_EQ(fsize(fd), 100);
		CHECK_FILE(fd, src, 100);
		/* a read-only descriptor cannot be written */
		int rfd = tfs_open(&ts[k], "f", O_RDONLY);
		ASSERT_ERR(pw_pwrite(rfd, src, 10, 0), EBADF);
		ASSERT_OK(pw_close(rfd));
		ASSERT_ERR(pw_pwrite(12345, src, 10, 0), EBADF);
	}

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_xfsz;
	ASSERT_OK(sigaction(SIGXFSZ, &sa, NULL));
	const off_t LIM = 3 * PG + 100;
	struct rlimit rl = {(rlim_t)LIM, RLIM_INFINITY};
	ASSERT_OK(setrlimit(RLIMIT_FSIZE, &rl));
	/* pagewright re-reads the limit at most every 10 ms: a system call per
	 * write would cost more than a small cached write (README,
	 * docs/DESIGN-CHANGES.md).  Writes 10 ms after setrlimit see it. */
	usleep(20000);
	unsigned char *model = calloc(1, 4 * PG);
	memcpy(model, src, 100);
	FOR_EACH_KIND(k) {
		TLOG("%s: RLIMIT_FSIZE", test_kind_name(k));
		int fd = fds[k];
		/* at or past the limit: SIGXFSZ and EFBIG, nothing written */
		xfsz_count = 0;
		ASSERT_ERR(pw_pwrite(fd, src, 10, LIM), EFBIG);
		ASSERT_GE(xfsz_count, 1);
		xfsz_count = 0;
		ASSERT_ERR(pw_pwrite(fd, src, 1, LIM + 5 * PG), EFBIG);
		ASSERT_GE(xfsz_count, 1);
		ASSERT_EQ(fsize(fd), 100);
		/* straddling the limit: clamped to it */
		ASSERT_EQ(pw_pwrite(fd, src, 300, LIM - 200), 200);
		memcpy(model + LIM - 200, src, 200);
		CHECK_FILE(fd, model, (size_t)LIM);
		/* below it: fine */
		ASSERT_EQ(pw_pwrite(fd, src + 7, 50, 1000), 50);
		memcpy(model + 1000, src + 7, 50);
		CHECK_FILE(fd, model, (size_t)LIM);
		/* the file position: write at the limit fails and does not move */
		ASSERT_EQ(pw_lseek(fd, LIM, SEEK_SET), LIM);
		xfsz_count = 0;
		ASSERT_ERR(pw_write(fd, src, 1), EFBIG);
		ASSERT_GE(xfsz_count, 1);
		ASSERT_EQ(pw_lseek(fd, 0, SEEK_CUR), LIM);
		/* An ext2 image is a host file: the kernel applies the limit to
		 * pagewright's writes into it too, so writeback to image offsets
		 * past the limit fails with EFBIG and fsync reports it
		 * (docs/ext2.md).  Its check waits for the limit to go. */
		if (!test_kind_is_ext2(k)) {
			ASSERT_OK(pw_fsync(fd));
			evict_all(&ts[k], fd);
			CHECK_FILE(fd, model, (size_t)LIM);
		}
		memset(model + 100, 0, 4 * PG - 100);
	}
	/* Without the limit, the ext2 files reach their images whole. */
	rl.rlim_cur = RLIM_INFINITY;
	ASSERT_OK(setrlimit(RLIMIT_FSIZE, &rl));
	usleep(20000);
	memcpy(model + LIM - 200, src, 200);
	memcpy(model + 1000, src + 7, 50);
	FOR_EACH_KIND(k) {
		if (!test_kind_is_ext2(k))
			continue;
		ASSERT_OK(pw_fsync(fds[k]));
		evict_all(&ts[k], fds[k]);
		CHECK_FILE(fds[k], model, (size_t)LIM);
	}
	free(model);
	free(src);
}

/*
 * test_core.c - the page cache's own invariants, through the API and the
 * filesystem interface: ramfs basics, page-state transitions, the index,
 * and the uaccess primitives.
 */
#include "test.h"

#include <fcntl.h>
#include <pagewright/fs.h>
#include <pagewright/pagewright.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

TEST(core_ramfs_write_read)
{
	ASSERT_OK(pw_mkdir("/a", 0755));
	int fd = pw_open("/a/f", O_CREAT | O_RDWR, 0644);
	ASSERT_GE(fd, 0);
	char buf[10000], out[10000];
	for (size_t k = 0; k < sizeof(buf); k++)
		buf[k] = (char)(k * 7);
	ASSERT_EQ(pw_write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	ASSERT_EQ(pw_pread(fd, out, sizeof(out), 0), (ssize_t)sizeof(out));
	ASSERT_MEM_EQ(buf, out, sizeof(buf));
	struct stat st;
	ASSERT_OK(pw_fstat(fd, &st));
	ASSERT_EQ(st.st_size, 10000);
	ASSERT_EQ(pw_read(fd, out, 10), 0); /* at EOF */
	ASSERT_OK(pw_close(fd));
}

TEST(core_copy_user_fixup)
{
	char *m = mmap(NULL, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_PTR_NE(m, MAP_FAILED);
	memset(m, 'x', 8192);
	ASSERT_OK(mprotect(m + 4096, 4096, PROT_NONE));
	char buf[8192];
	pw__init();
	ASSERT_EQ(copy_from_user(buf, m + 4000, 200), 104);
	ASSERT_EQ(copy_from_user(buf, (void *)16, 200), 200);
	ASSERT_EQ(copy_to_user(m + 4090, buf, 10), 4);
	/* Every length and start around the bad page: the bulk loop must hand
	 * over to the exact byte-wise copy, both directions. */
	for (size_t start = 4096 - 300; start < 4096; start += 7) {
		for (size_t n = 1; n < 400; n += 13) {
			size_t good = 4096 - start < n ? 4096 - start : n;
			memset(buf, 0, sizeof(buf));
			ASSERT_EQ(copy_from_user(buf, m + start, n), n - good);
			for (size_t k = 0; k < good; k++)
				ASSERT_EQ(buf[k], 'x');
			ASSERT_EQ(buf[good], 0);
			memset(buf, 'y', sizeof(buf));
			ASSERT_EQ(copy_to_user(m + start, buf, n), n - good);
			ASSERT_EQ(m[start + good - 1], 'y');
			memset(m, 'x', 4096);
		}
	}
}

TEST(core_mmap_store_seen_by_pread)
{
	int fd = pw_open("/f", O_CREAT | O_RDWR, 0644);
	ASSERT_GE(fd, 0);
	ASSERT_OK(pw_ftruncate(fd, 3 * 4096));
	char *p = pw_mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_PTR_NE(p, MAP_FAILED);
	ASSERT_EQ(p[5000], 0);
	p[5000] = 'Q';
	char c = 0;
	ASSERT_EQ(pw_pread(fd, &c, 1, 5000), 1);
	ASSERT_EQ(c, 'Q');
	ASSERT_EQ(pw_pwrite(fd, "Z", 1, 9000), 1);
	ASSERT_EQ(p[9000], 'Z');
	ASSERT_OK(pw_munmap(p, 3 * 4096));
	ASSERT_OK(pw_close(fd));
}

/* pw_pread_pin describes the same bytes pw_pread reads, as spans of the
 * pool file, and pins them until pw_unpin. */
TEST(core_pread_pin_matches_pread)
{
	ASSERT_OK(pw_mkdir("/pin", 0755));
	int fd = pw_open("/pin/f", O_CREAT | O_RDWR, 0644);
	ASSERT_GE(fd, 0);
	enum { SIZE = 50000 };
	static char buf[SIZE], want[SIZE], got[SIZE];
	for (size_t k = 0; k < SIZE; k++)
		buf[k] = (char)(k * 13 + k / 4096);
	ASSERT_EQ(pw_write(fd, buf, SIZE), (ssize_t)SIZE);
	int pool = pw_pool_fd();
	ASSERT_GE(pool, 0);
	struct pw_span spans[32];
	static const struct { off_t off; size_t count; } cases[] = {
		{0, SIZE}, {1, 100}, {4095, 2}, {4096, 8192}, {100, 40000},
		{SIZE - 10, 100}, {12345, SIZE},
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		ssize_t w = pw_pread(fd, want, cases[c].count, cases[c].off);
		int ns = -1;
		struct pw_pin *pin = NULL;
		ssize_t n = pw_pread_pin(fd, cases[c].count, cases[c].off, spans, 32, &ns, &pin);
		ASSERT_EQ(n, w);
		ASSERT_PTR_NE(pin, NULL);
		size_t at = 0;
		for (int k = 0; k < ns; k++) {
			ASSERT_EQ(pread(pool, got + at, spans[k].len, spans[k].off),
			          (ssize_t)spans[k].len);
			at += spans[k].len;
		}
		ASSERT_EQ(at, (size_t)n);
		ASSERT_MEM_EQ(got, want, (size_t)n);
		pw_unpin(pin);
	}
	int ns = -1;
	struct pw_pin *pin = (struct pw_pin *)1;
	ASSERT_EQ(pw_pread_pin(fd, 100, SIZE, spans, 32, &ns, &pin), 0); /* at EOF */
	ASSERT_PTR_EQ(pin, NULL);
	ASSERT_EQ(ns, 0);
	ASSERT_EQ(pw_pread_pin(fd, SIZE, 0, spans, 4, &ns, &pin), -1); /* max too small */
	ASSERT_EQ(errno, EINVAL);
	ASSERT_EQ(pw_pread_pin(fd, 10, -1, spans, 4, &ns, &pin), -1);
	ASSERT_EQ(errno, EINVAL);
	ASSERT_OK(pw_close(fd));
	ASSERT_EQ(pw_pread_pin(fd, 10, 0, spans, 4, &ns, &pin), -1);
	ASSERT_EQ(errno, EBADF);
	fd = pw_open("/pin/f", O_WRONLY);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(pw_pread_pin(fd, 10, 0, spans, 4, &ns, &pin), -1);
	ASSERT_EQ(errno, EBADF);
	ASSERT_OK(pw_close(fd));
	fd = pw_open("/pin", O_RDONLY);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(pw_pread_pin(fd, 10, 0, spans, 4, &ns, &pin), -1);
	ASSERT_EQ(errno, EISDIR);
	ASSERT_OK(pw_close(fd));
	/* A pinned page outlives the file's truncation: its bytes stay. */
	fd = pw_open("/pin/f", O_RDWR);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(pw_pread_pin(fd, 4096, 8192, spans, 4, &ns, &pin), 4096);
	ASSERT_EQ(ns, 1);
	ASSERT_OK(pw_ftruncate(fd, 0));
	ASSERT_EQ(pread(pool, got, 4096, spans[0].off), 4096);
	ASSERT_MEM_EQ(got, buf + 8192, 4096);
	pw_unpin(pin);
	ASSERT_OK(pw_close(fd));
}

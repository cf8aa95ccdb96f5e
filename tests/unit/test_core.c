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

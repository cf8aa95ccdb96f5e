/*
 * test_mmap.c - mappings of pagewright files as an application sees them:
 * coherence of loads/stores with pread/pwrite, SIGBUS past EOF,
 * MAP_PRIVATE isolation, truncation under live mappings, madvise, msync,
 * and truncation racing writes and faults.  On ramfs, hostfs and hostfs
 * with legacy_aops.
 */
#include "../pwt.h"


static unsigned char *
map_rw(int fd, size_t len, off_t off)
{
	unsigned char *m = pw_mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off);
	ASSERT(m != MAP_FAILED);
	return m;
}

/* Stores through a shared mapping are seen by pread at once, by the host
 * file after fsync, and survive eviction. */
TEST(mmap_stores_seen_by_pread)
{
	FOR_EACH_KIND(k) {
		struct tfs t;
		tfs_mount(&t, k);
		TLOG("%s", test_kind_name(k));
		const size_t SZ = 3 * PG + 100;
		unsigned char *model = xmalloc(4 * PG), *buf = xmalloc(4 * PG);
		pat_fill(model, SZ, 1, 0);
		int fd = tfs_create(&t, "f");
		write_exact(fd, model, SZ, 0);
		unsigned char *m = map_rw(fd, 4 * PG, 0);

		/* the mapping shows the file */
		ASSERT_MEM_EQ(m, model, SZ);
		/* bytes past EOF in the last page read as zero */
		for (size_t i = SZ; i < 4 * PG; i++)
			ASSERT_EQ(m[i], 0);

		/* stores into a page mapped read-only (clean) and into one never
		 * touched; one across a page boundary; one ending at EOF */
		ASSERT_OK(pw_fsync(fd));
		pat_fill(buf, 4 * PG, 2, 0);
		memcpy(m + 10, buf, 100);
		memcpy(model + 10, buf, 100);
		memcpy(m + 2 * PG - 50, buf + 200, 100);
		memcpy(model + 2 * PG - 50, buf + 200, 100);
		memcpy(m + SZ - 7, buf + 400, 7);
		memcpy(model + SZ - 7, buf + 400, 7);
		CHECK_FILE(fd, model, SZ);
		ASSERT_MEM_EQ(m, model, SZ);

		/* a second mapping of the same pages sees the stores, and its
		 * stores are seen by the first */
		unsigned char *m2 = map_rw(fd, 2 * PG, PG);
		ASSERT_MEM_EQ(m2, model + PG, 2 * PG);
		m2[5] = 0xAB;
		model[PG + 5] = 0xAB;
		ASSERT_EQ(m[PG + 5], 0xAB);
		CHECK_FILE(fd, model, SZ);
		ASSERT_OK(pw_munmap(m2, 2 * PG));

		/* durable on the host after fsync; again after eviction */
		ASSERT_OK(pw_fsync(fd));
		if (k) {
			ASSERT_EQ(host_read(&t, "f", buf, 4 * PG), (int64_t)SZ);
			ASSERT_MEM_EQ(buf, model, SZ);
		}
		evict_all(&t, fd);
		ASSERT_MEM_EQ(m, model, SZ);
		CHECK_FILE(fd, model, SZ);
		/* a store after the page was written back and evicted */
		m[3 * PG + 1] = 0x5A;
		model[3 * PG + 1] = 0x5A;
		CHECK_FILE(fd, model, SZ);
		ASSERT_OK(pw_fsync(fd));
		if (k) {
			ASSERT_EQ(host_read(&t, "f", buf, 4 * PG), (int64_t)SZ);
			ASSERT_MEM_EQ(buf, model, SZ);
		}
		ASSERT_OK(pw_munmap(m, 4 * PG));
		/* and after unmapping */
		CHECK_FILE(fd, model, SZ);
		ASSERT_OK(pw_close(fd));
		free(model);
		free(buf);
	}
}

/* pwrite is seen through existing mappings at once, also of pages that
 * were mapped before, and of pages that were past EOF when mapped. */
TEST(mmap_pwrite_seen_through_mapping)
{
	FOR_EACH_KIND(k) {
		struct tfs t;
		tfs_mount(&t, k);
		TLOG("%s", test_kind_name(k));
		unsigned char *model = calloc(1, 4 * PG), *buf = xmalloc(4 * PG);
		int fd = tfs_create(&t, "f");
		pat_fill(model, 2 * PG, 3, 0);
		write_exact(fd, model, 2 * PG, 0);
		const unsigned char *m = pw_mmap(NULL, 4 * PG, PROT_READ, MAP_SHARED, fd, 0);
		ASSERT(m != MAP_FAILED);
		ASSERT_MEM_EQ(m, model, 2 * PG); /* faulted in */

		pat_fill(buf, 4 * PG, 4, 0);
		write_exact(fd, buf, 300, 100);
		memcpy(model + 100, buf, 300);
		ASSERT_MEM_EQ(m, model, 2 * PG);
		/* extend: the pages past the old EOF become accessible */
		write_exact(fd, buf + 1000, 2 * PG, 2 * PG - 10);
		memcpy(model + 2 * PG - 10, buf + 1000, 2 * PG);
		ASSERT_MEM_EQ(m, model, 4 * PG - 10);
		ASSERT_EQ(m[4 * PG - 5], 0);
		/* writev and a write through the file position */
		struct iovec iov[2] = {{buf + 7, 10}, {buf + 50, 5000}};
		ASSERT_EQ(pw_pwritev(fd, iov, 2, 33), 5010);
		memcpy(model + 33, buf + 7, 10);
		memcpy(model + 43, buf + 50, 5000);
		ASSERT_EQ(pw_lseek(fd, 3 * PG, SEEK_SET), (int64_t)(3 * PG));
		ASSERT_EQ(pw_write(fd, buf, 17), 17);
		memcpy(model + 3 * PG, buf, 17);
		ASSERT_MEM_EQ(m, model, 4 * PG - 10);
		/* evicted, written, mapped again */
		ASSERT_OK(pw_fsync(fd));
		evict_all(&t, fd);
		write_exact(fd, buf + 3, 1, PG + 1);
		model[PG + 1] = buf[3];
		ASSERT_MEM_EQ(m, model, 4 * PG - 10);
		evict_all(&t, fd);
		ASSERT_MEM_EQ(m, model, 4 * PG - 10);
		/* the mapping still sees writes after madvise(DONTNEED) */
		ASSERT_OK(pw_madvise((void *)m, 4 * PG, MADV_DONTNEED));
		write_exact(fd, buf + 9, 2, 2 * PG);
		memcpy(model + 2 * PG, buf + 9, 2);
		ASSERT_MEM_EQ(m, model, 4 * PG - 10);
		ASSERT_OK(pw_munmap((void *)m, 4 * PG));
		ASSERT_OK(pw_close(fd));
		free(model);
		free(buf);
	}
}

/* An access to a page wholly past EOF raises SIGBUS; the rest of the last
 * page reads zero and may be stored to without changing the size; the
 * application may recover with siglongjmp and go on using the library. */
TEST(mmap_sigbus_past_eof)
{
	probe_install();
	FOR_EACH_KIND(k) {
		struct tfs t;
		tfs_mount(&t, k);
		TLOG("%s", test_kind_name(k));
		unsigned char *data = xmalloc(5000);
		pat_fill(data, 5000, 5, 0);
		int fd = tfs_create(&t, "f");
		write_exact(fd, data, 5000, 0);
		unsigned char *m = map_rw(fd, 4 * PG, 0);
		unsigned char v = 1;
		ASSERT_EQ(probe_load(m + 4999, &v), 0);
		ASSERT_EQ(v, data[4999]);
		ASSERT_EQ(probe_load(m + 5000, &v), 0);
		ASSERT_EQ(v, 0);
		ASSERT_EQ(probe_load(m + 2 * PG - 1, &v), 0);
		ASSERT_EQ(v, 0);
		ASSERT_EQ(probe_load(m + 2 * PG, &v), SIGBUS);
		ASSERT_EQ(probe_load(m + 4 * PG - 1, &v), SIGBUS);
		ASSERT_EQ(probe_store(m + 2 * PG, 7), SIGBUS);
		ASSERT_EQ(probe_store(m + 3 * PG + 5, 7), SIGBUS);
		/* a store past EOF inside the last page: allowed, not in the file */
		ASSERT_EQ(probe_store(m + 6000, 9), 0);
		ASSERT_EQ(fsize(fd), 5000);
		CHECK_FILE(fd, data, 5000);

		/* the library still works after the siglongjmp: extend and use */
		ASSERT_OK(pw_ftruncate(fd, 3 * PG));
		ASSERT_EQ(probe_load(m + 2 * PG, &v), 0);
		ASSERT_EQ(v, 0);
		ASSERT_EQ(probe_store(m + 2 * PG + 1, 0x42), 0);
		unsigned char r = 0;
		ASSERT_EQ(pw_pread(fd, &r, 1, 2 * PG + 1), 1);
		ASSERT_EQ(r, 0x42);
		ASSERT_EQ(probe_load(m + 3 * PG, &v), SIGBUS);

		/* a mapping that starts past EOF */
		unsigned char *far = map_rw(fd, PG, 8 * PG);
		ASSERT_EQ(probe_load(far, &v), SIGBUS);
		ASSERT_EQ(probe_store(far + 100, 1), SIGBUS);
		ASSERT_OK(pw_munmap(far, PG));

		/* an empty file */
		int efd = tfs_create(&t, "empty");
		unsigned char *e = map_rw(efd, PG, 0);
		ASSERT_EQ(probe_load(e, &v), SIGBUS);
		ASSERT_EQ(probe_store(e, 1), SIGBUS);
		ASSERT_EQ(fsize(efd), 0);
		ASSERT_OK(pw_munmap(e, PG));
		ASSERT_OK(pw_close(efd));

		ASSERT_OK(pw_munmap(m, 4 * PG));
		ASSERT_OK(pw_close(fd));
		free(data);
	}
}

/* MAP_PRIVATE: stores to a private mapping reach neither the file nor
 * other mappings nor the host; a privately copied page no longer follows
 * the file. */
TEST(mmap_private_isolation)
{
	FOR_EACH_KIND(k) {
		struct tfs t;
		tfs_mount(&t, k);
		TLOG("%s", test_kind_name(k));
		const size_t SZ = 3 * PG;
		unsigned char *model = xmalloc(SZ), *priv = xmalloc(SZ), *buf = xmalloc(SZ);
		pat_fill(model, SZ, 6, 0);
		int fd = tfs_create(&t, "f");
		write_exact(fd, model, SZ, 0);
		ASSERT_OK(pw_fsync(fd));
		unsigned char *s = map_rw(fd, SZ, 0);
		unsigned char *p = pw_mmap(NULL, SZ, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
		ASSERT(p != MAP_FAILED);
		ASSERT_MEM_EQ(p, model, SZ);
		memcpy(priv, model, SZ);

		/* private -> file: invisible */
		pat_fill(buf, SZ, 7, 0);
		memcpy(p + 100, buf, 200);
		memcpy(priv + 100, buf, 200);
		memcpy(p + PG - 10, buf + 300, 20); /* two pages */
		memcpy(priv + PG - 10, buf + 300, 20);
		ASSERT_MEM_EQ(p, priv, SZ);
		ASSERT_MEM_EQ(s, model, SZ);
		CHECK_FILE(fd, model, SZ);
		ASSERT_OK(pw_fsync(fd));
		if (k) {
			ASSERT_EQ(host_read(&t, "f", buf, SZ), (int64_t)SZ);
			ASSERT_MEM_EQ(buf, model, SZ);
		}
		evict_all(&t, fd);
		CHECK_FILE(fd, model, SZ);
		ASSERT_MEM_EQ(p, priv, SZ);

		/* file -> copied private pages: invisible */
		pat_fill(buf, SZ, 8, 0);
		write_exact(fd, buf, 50, 120);
		memcpy(model + 120, buf, 50);
		s[PG + 2] ^= 0xff; /* through the shared mapping */
		model[PG + 2] ^= 0xff;
		CHECK_FILE(fd, model, SZ);
		ASSERT_MEM_EQ(s, model, SZ);
		ASSERT_MEM_EQ(p, priv, 2 * PG); /* pages 0 and 1 were copied */

		/* a second private mapping is isolated from the first */
		unsigned char *p2 = pw_mmap(NULL, SZ, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
		ASSERT(p2 != MAP_FAILED);
		ASSERT_MEM_EQ(p2, model, SZ);
		p2[7] = (unsigned char)~p2[7];
		ASSERT_MEM_EQ(p, priv, 2 * PG);
		ASSERT_EQ(p2[7], (unsigned char)~model[7]);
		ASSERT_OK(pw_munmap(p2, SZ));

		/* unmapping the private mapping changes nothing */
		ASSERT_OK(pw_munmap(p, SZ));
		CHECK_FILE(fd, model, SZ);
		ASSERT_OK(pw_fsync(fd));
		if (k) {
			ASSERT_EQ(host_read(&t, "f", buf, SZ), (int64_t)SZ);
			ASSERT_MEM_EQ(buf, model, SZ);
		}
		/* a read-only fd may be mapped MAP_PRIVATE writable */
		int rfd = tfs_open(&t, "f", O_RDONLY);
		unsigned char *rp = pw_mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, rfd, 0);
		ASSERT(rp != MAP_FAILED);
		rp[0] = (unsigned char)~model[0];
		CHECK_FILE(fd, model, SZ);
		ASSERT_OK(pw_munmap(rp, PG));
		ASSERT_OK(pw_close(rfd));

		ASSERT_OK(pw_munmap(s, SZ));
		ASSERT_OK(pw_close(fd));
		free(model);
		free(priv);
		free(buf);
	}
}

/* Truncation under live mappings: pages cut off raise SIGBUS, the cut
 * part of the last page reads zero, and nothing old comes back when the
 * file grows again. */
TEST(mmap_truncate_live_mapping)
{
	probe_install();
	FOR_EACH_KIND(k) {
		struct tfs t;
		tfs_mount(&t, k);
		TLOG("%s", test_kind_name(k));
		const size_t SZ = 3 * PG;
		unsigned char *model = xmalloc(SZ), v;
		pat_fill(model, SZ, 9, 0);
		int fd = tfs_create(&t, "f");
		write_exact(fd, model, SZ, 0);
		unsigned char *m = map_rw(fd, SZ, 0);
		ASSERT_MEM_EQ(m, model, SZ);
		m[2 * PG + 3] = 1; /* a dirty mapped page */
		model[2 * PG + 3] = 1;

		ASSERT_OK(pw_ftruncate(fd, 100));
		ASSERT_MEM_EQ(m, model, 100);
		for (size_t i = 100; i < PG; i++)
			ASSERT_EQ(m[i], 0);
		ASSERT_EQ(probe_load(m + PG, &v), SIGBUS);
		ASSERT_EQ(probe_load(m + 2 * PG + 3, &v), SIGBUS);
		ASSERT_EQ(probe_store(m + PG + 1, 1), SIGBUS);
		CHECK_FILE(fd, model, 100);
		ASSERT_OK(pw_fsync(fd));
		if (k) {
			unsigned char h[3 * 4096];
			ASSERT_EQ(host_read(&t, "f", h, sizeof(h)), 100);
			ASSERT_MEM_EQ(h, model, 100);
		}

		/* grow again: zeroes, not the old data */
		ASSERT_OK(pw_ftruncate(fd, SZ));
		memset(model + 100, 0, SZ - 100);
		ASSERT_MEM_EQ(m, model, SZ);
		CHECK_FILE(fd, model, SZ);
		m[PG + 1] = 0x11;
		model[PG + 1] = 0x11;
		CHECK_FILE(fd, model, SZ);
		evict_all(&t, fd);
		ASSERT_MEM_EQ(m, model, SZ);

		/* truncate to zero (by path) while a mapped page is dirty */
		m[5] = 0x22;
		ASSERT_OK(pw_truncate(tfs_path(&t, "f", (char[128]){0}, 128), 0));
		ASSERT_EQ(probe_load(m, &v), SIGBUS);
		ASSERT_EQ(probe_store(m + 5, 1), SIGBUS);
		ASSERT_EQ(fsize(fd), 0);
		/* a write extends it and the mapping follows */
		write_exact(fd, "xyz", 3, 0);
		ASSERT_EQ(probe_load(m + 1, &v), 0);
		ASSERT_EQ(v, 'y');
		ASSERT_EQ(m[5], 0);
		ASSERT_EQ(probe_load(m + PG, &v), SIGBUS);
		ASSERT_OK(pw_munmap(m, SZ));
		ASSERT_OK(pw_close(fd));
		free(model);
	}
}

/* madvise(MADV_DONTNEED): a shared mapping keeps the data (it lives in
 * the file) and faults again; a private mapping drops its copies. */
TEST(mmap_madvise_dontneed)
{
	FOR_EACH_KIND(k) {
		struct tfs t;
		tfs_mount(&t, k);
		TLOG("%s", test_kind_name(k));
		const size_t SZ = 4 * PG;
		unsigned char *model = xmalloc(SZ);
		pat_fill(model, SZ, 10, 0);
		int fd = tfs_create(&t, "f");
		write_exact(fd, model, SZ, 0);
		unsigned char *s = map_rw(fd, SZ, 0);
		unsigned char *p = pw_mmap(NULL, SZ, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
		ASSERT(p != MAP_FAILED);
		memset(s + PG, 0x33, 10);
		memset(model + PG, 0x33, 10);
		p[2 * PG] = 0x44;
		ASSERT_EQ(p[2 * PG], 0x44);

		struct pw_stats a, b;
		pw_get_stats(&a);
		ASSERT_OK(pw_madvise(s, SZ, MADV_DONTNEED));
		ASSERT_OK(pw_madvise(p, SZ, MADV_DONTNEED));
		ASSERT_MEM_EQ(s, model, SZ);
		ASSERT_MEM_EQ(p, model, SZ); /* the private copy is gone */
		pw_get_stats(&b);
		ASSERT_GT(b.faults, a.faults); /* the accesses faulted again */
		CHECK_FILE(fd, model, SZ);
		/* a part of a mapping */
		s[3 * PG] = 0x55;
		model[3 * PG] = 0x55;
		ASSERT_OK(pw_madvise(s + 3 * PG, PG, MADV_DONTNEED));
		ASSERT_EQ(s[3 * PG], 0x55);
		CHECK_FILE(fd, model, SZ);
		ASSERT_OK(pw_fsync(fd));
		if (k) {
			unsigned char *h = xmalloc(SZ);
			ASSERT_EQ(host_read(&t, "f", h, SZ), (int64_t)SZ);
			ASSERT_MEM_EQ(h, model, SZ);
			free(h);
		}
		ASSERT_OK(pw_munmap(p, SZ));
		ASSERT_OK(pw_munmap(s, SZ));
		ASSERT_OK(pw_close(fd));
		free(model);
	}
}

/* msync (and fsync) reach the host file on hostfs; a page written back
 * and stored to again is written back again (the writeback
 * write-protected it, so the second store dirtied it anew). */
TEST(mmap_msync_reaches_host)
{
	for (int k = 1; k < TEST_FS_KINDS; k++) {
		struct tfs t;
		tfs_mount(&t, k);
		TLOG("%s", test_kind_name(k));
		const size_t SZ = 3 * PG;
		unsigned char *model = xmalloc(SZ), *h = xmalloc(SZ);
		pat_fill(model, SZ, 11, 0);
		int fd = tfs_create(&t, "f");
		write_exact(fd, model, SZ, 0);
		ASSERT_OK(pw_fsync(fd));
		unsigned char *m = map_rw(fd, SZ, 0);
		for (int round = 0; round < 4; round++) {
			size_t off = (size_t)round * 1000 + 17;
			m[off] = (unsigned char)(round + 1);
			model[off] = (unsigned char)(round + 1);
			m[PG + off] = (unsigned char)(round + 100);
			model[PG + off] = (unsigned char)(round + 100);
			if (round & 1)
				ASSERT_OK(pw_msync(m, SZ, MS_SYNC));
			else
			{
				ASSERT_OK(pw_msync(m + PG, PG, MS_SYNC));
				ASSERT_OK(pw_msync(m, PG, MS_SYNC));
			}
			ASSERT_EQ(host_read(&t, "f", h, SZ), (int64_t)SZ);
			ASSERT_MEM_EQ(h, model, SZ);
		}
		/* a store right after fsync */
		m[2 * PG + 9] = 0x77;
		model[2 * PG + 9] = 0x77;
		ASSERT_OK(pw_fsync(fd));
		ASSERT_EQ(host_read(&t, "f", h, SZ), (int64_t)SZ);
		ASSERT_MEM_EQ(h, model, SZ);
		/* stores reach the host at munmap + close + umount too */
		m[1] = 0x66;
		model[1] = 0x66;
		ASSERT_OK(pw_munmap(m, SZ));
		ASSERT_OK(pw_close(fd));
		ASSERT_OK(pw_umount(t.mnt));
		ASSERT_EQ(host_read(&t, "f", h, SZ), (int64_t)SZ);
		ASSERT_MEM_EQ(h, model, SZ);
		free(model);
		free(h);
	}
}

/* Argument errors of pw_mmap/pw_munmap. */
TEST(mmap_errors)
{
	struct tfs t;
	tfs_mount(&t, 1);
	int fd = tfs_create(&t, "f");
	write_exact(fd, "abc", 3, 0);
	int rfd = tfs_open(&t, "f", O_RDONLY);
	ASSERT(pw_mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, rfd, 0) == MAP_FAILED);
	ASSERT_EQ(errno, EACCES);
	ASSERT(pw_mmap(NULL, PG, PROT_READ, MAP_SHARED, fd, 100) == MAP_FAILED);
	ASSERT_EQ(errno, EINVAL);
	ASSERT(pw_mmap(NULL, 0, PROT_READ, MAP_SHARED, fd, 0) == MAP_FAILED);
	ASSERT_EQ(errno, EINVAL);
	ASSERT(pw_mmap(NULL, PG, PROT_READ, MAP_SHARED, 9999, 0) == MAP_FAILED);
	ASSERT_EQ(errno, EBADF);
	unsigned char *m = pw_mmap(NULL, PG, PROT_READ, MAP_SHARED, rfd, 0);
	ASSERT(m != MAP_FAILED);
	ASSERT_EQ(m[1], 'b');
	ASSERT_ERR(pw_munmap(m + 1, PG), EINVAL);
	/* the mapping outlives its descriptor */
	ASSERT_OK(pw_close(rfd));
	write_exact(fd, "B", 1, 1);
	ASSERT_EQ(m[1], 'B');
	ASSERT_OK(pw_munmap(m, PG));
	ASSERT_OK(pw_close(fd));
}

/* SPEC 10.13, last clause: writing from a mapping of a file truncated
 * under it is EFAULT or a short count, never SIGBUS or a hang. */
TEST(mmap_source_truncated_under_mapping)
{
	probe_install();
	FOR_EACH_KIND(k) {
		struct tfs t;
		tfs_mount(&t, k);
		TLOG("%s", test_kind_name(k));
		unsigned char *data = xmalloc(3 * PG);
		pat_fill(data, 3 * PG, 12, 0);
		int a = tfs_create(&t, "a"), b = tfs_create(&t, "b");
		write_exact(b, data, 3 * PG, 0);
		const unsigned char *mb = pw_mmap(NULL, 3 * PG, PROT_READ, MAP_SHARED, b, 0);
		ASSERT(mb != MAP_FAILED);
		ASSERT_EQ(mb[5], data[5]);
		ASSERT_OK(pw_ftruncate(b, PG));
		/* 1 page readable, then past EOF */
		ASSERT_EQ(pw_pwrite(a, mb, 3 * PG, 0), (int64_t)PG);
		CHECK_FILE(a, data, PG);
		ASSERT_ERR(pw_pwrite(a, mb + PG, 100, 0), EFAULT);
		ASSERT_ERR(pw_pwrite(a, mb + 2 * PG + 5, 100, PG), EFAULT);
		/* the source is the destination file itself (same page, ranges
		 * apart): 50 bytes readable, then past its EOF */
		ASSERT_EQ(pw_pwrite(b, mb + PG - 50, 150, 0), 50);
		ASSERT_EQ(fsize(b), (int64_t)PG);
		unsigned char *back = xmalloc(PG);
		read_exact(b, back, PG, 0);
		ASSERT_MEM_EQ(back, data + PG - 50, 50);
		ASSERT_MEM_EQ(back + 50, data + 50, PG - 50);
		/* truncated to 0: nothing readable */
		ASSERT_OK(pw_ftruncate(b, 0));
		ASSERT_ERR(pw_pwrite(a, mb, 10, 0), EFAULT);
		struct iovec iov[2] = {{data, 10}, {(void *)mb, 10}};
		ASSERT_EQ(pw_pwritev(a, iov, 2, 0), 10);
		CHECK_FILE(a, data, PG);
		ASSERT_OK(pw_munmap((void *)mb, 3 * PG));
		ASSERT_OK(pw_close(a));
		ASSERT_OK(pw_close(b));
		free(data);
		free(back);
	}
}

/* SPEC 10.13: truncation racing writes, mapped loads and mapped stores.
 * Every writer writes pattern byte pat(pos) at pos, so at any moment every
 * byte of the file is 0 or pat(pos); loads check that, SIGBUS is allowed
 * only past EOF, and at the end pread and the mapping agree. */
enum { TR_PAGES = 8 };
struct tr_arg {
	int fd, role;
	unsigned char *map;
	_Atomic int *stop;
	unsigned seed;
	long ops, sigbus;
};

static unsigned
xr(unsigned *s)
{
	*s = *s * 1103515245u + 12345u;
	return *s >> 8;
}

static void *
tr_thread(void *p)
{
	struct tr_arg *a = p;
	unsigned char buf[3 * 4096];
	while (!atomic_load(a->stop)) {
		size_t pos = xr(&a->seed) % (TR_PAGES * PG), len = 1 + xr(&a->seed) % (2 * PG);
		if (pos + len > TR_PAGES * PG)
			len = TR_PAGES * PG - pos;
		unsigned char v;
		switch (a->role) {
		case 0: /* writer */
			pat_fill(buf, len, 1, pos);
			ASSERT_EQ(pw_pwrite(a->fd, buf, len, (off_t)pos), (int64_t)len);
			break;
		case 1: /* truncater */
			ASSERT_OK(pw_ftruncate(a->fd, (off_t)(xr(&a->seed) % (TR_PAGES * PG + 1))));
			if (xr(&a->seed) % 8 == 0)
				ASSERT_OK(pw_fsync(a->fd));
			break;
		case 2: /* mapped loads */
			for (size_t i = pos; i < pos + len; i += 97) {
				int sig = probe_load(a->map + i, &v);
				if (sig) {
					ASSERT_EQ(sig, SIGBUS);
					a->sigbus++;
					break;
				}
				if (v != 0 && v != pat_byte(1, i)) {
					fprintf(stderr, "byte %zu is 0x%02x, want 0 or 0x%02x\n", i, v,
					        pat_byte(1, i));
					abort();
				}
			}
			break;
		case 3: /* mapped stores */
			for (size_t i = pos; i < pos + len; i += 61) {
				int sig = probe_store(a->map + i, pat_byte(1, i));
				if (sig) {
					ASSERT_EQ(sig, SIGBUS);
					a->sigbus++;
					break;
				}
			}
			break;
		case 4: /* reads */
		{
			ssize_t r = pw_pread(a->fd, buf, len, (off_t)pos);
			ASSERT_GE(r, 0);
			for (ssize_t i = 0; i < r; i++)
				if (buf[i] != 0 && buf[i] != pat_byte(1, pos + i)) {
					fprintf(stderr, "pread byte %zu is 0x%02x\n", pos + i, buf[i]);
					abort();
				}
			break;
		}
		}
		a->ops++;
	}
	return NULL;
}

TEST_THREADED(mmap_truncate_races_writes_and_faults)
{
	probe_install();
	FOR_EACH_KIND(k) {
		struct tfs t;
		tfs_mount(&t, k);
		int fd = tfs_create(&t, "f");
		unsigned char *m = map_rw(fd, TR_PAGES * PG, 0);
		_Atomic int stop = 0;
		enum { NT = 6 };
		struct tr_arg args[NT];
		int roles[NT] = {0, 0, 1, 2, 3, 4};
		pthread_t th[NT];
		for (int i = 0; i < NT; i++) {
			args[i] = (struct tr_arg){fd, roles[i], m, &stop, 1000u * (unsigned)(i + 1) + (unsigned)k, 0, 0};
			ASSERT_OK(pthread_create(&th[i], NULL, tr_thread, &args[i]));
		}
		double t0 = now_s();
		while (now_s() - t0 < 1.5) {
			if (k)
				pw__test_evict_all(fd);
			usleep(20000);
		}
		atomic_store(&stop, 1);
		for (int i = 0; i < NT; i++)
			ASSERT_OK(pthread_join(th[i], NULL));
		TLOG("%s: ops writer %ld+%ld truncate %ld loads %ld (SIGBUS %ld) stores %ld (SIGBUS %ld) reads %ld",
		     test_kind_name(k), args[0].ops, args[1].ops, args[2].ops, args[3].ops, args[3].sigbus,
		     args[4].ops, args[4].sigbus, args[5].ops);
		ASSERT_GT(args[2].ops, 10);
		/* final state: consistent everywhere */
		off_t size = fsize(fd);
		ASSERT_LE(size, (off_t)(TR_PAGES * PG));
		unsigned char *all = xmalloc(TR_PAGES * PG + 1);
		read_exact(fd, all, (size_t)size, 0);
		for (off_t i = 0; i < size; i++) {
			ASSERT(all[i] == 0 || all[i] == pat_byte(1, (uint64_t)i));
			ASSERT_EQ(m[i], all[i]);
		}
		ASSERT_OK(pw_fsync(fd));
		if (k) {
			unsigned char *h = xmalloc(TR_PAGES * PG + 1);
			ASSERT_EQ(host_read(&t, "f", h, TR_PAGES * PG + 1), size);
			ASSERT_MEM_EQ(h, all, (size_t)size);
			free(h);
		}
		evict_all(&t, fd);
		CHECK_FILE(fd, all, (size_t)size);
		free(all);
		ASSERT_OK(pw_munmap(m, TR_PAGES * PG));
		ASSERT_OK(pw_close(fd));
	}
}

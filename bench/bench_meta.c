/*
 * bench_meta.c - memory overhead of the page cache.
 *
 * Question: what does pagewright spend, beyond the 4 KiB of data, for each
 * cached page?  DESIGN.md asks for at most 64 bytes of metadata per page
 * (1.6%, like the kernel's struct page).
 *
 * Prints sizeof(struct page), then caches a 64 MiB ramfs file and reads
 * the change in pw_get_stats() (pool frames, cached pages) and in the
 * process's resident memory (/proc/self/statm, and the RssAnon / RssShmem
 * split from /proc/self/status: the pool is a memfd, so its frames are
 * shared memory; metadata, the page-cache index and malloc'd state are
 * anonymous memory).  Not a timing: one pass.
 */
#include "bench_common.h"

#include <pagewright/fs.h>
#include <pagewright/pagewright.h>

#define FILESZ (64 * MiB)

struct mem {
	long rss, anon, shmem, file; /* bytes */
};

static long
status_kb(const char *key)
{
	char line[256];
	long v = -1;
	size_t n = strlen(key);
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, n) == 0 && line[n] == ':') {
			v = strtol(line + n + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

static struct mem
mem_now(void)
{
	struct mem m = {rss_bytes(), status_kb("RssAnon") * 1024,
	                status_kb("RssShmem") * 1024, status_kb("RssFile") * 1024};
	return m;
}

int
main(void)
{
	print_machine("bench_meta: memory per cached page");
	printf("sizeof(struct page) = %zu bytes = %.2f%% of a %lu-byte page "
	       "(target <= 64 bytes, 1.56%%)\n\n",
	       sizeof(struct page), 100.0 * (double)sizeof(struct page) / PAGE_SIZE,
	       PAGE_SIZE);

	die_if(pw_mkdir("/m", 0755) != 0, "pw_mkdir /m");
	die_if(pw_mount("ramfs", NULL, "/m", NULL) != 0, "pw_mount ramfs");
	char *chunk = malloc(MiB);
	die_if(!chunk, "malloc");
	fill_pattern(chunk, MiB, 9);
	int fd = pw_open("/m/meta", O_RDWR | O_CREAT | O_TRUNC, 0600);
	die_if(fd < 0, "pw_open");

	struct pw_stats s0, s1, s2;
	pw_get_stats(&s0);
	struct mem m0 = mem_now();
	for (size_t off = 0; off < FILESZ; off += MiB)
		die_if(pw_pwrite(fd, chunk, MiB, (off_t)off) != (ssize_t)MiB, "pw_pwrite");
	pw_get_stats(&s1);
	struct mem m1 = mem_now();

	unsigned long pages = FILESZ / PAGE_SIZE;
	long cached = (long)(s1.cached_pages - s0.cached_pages);
	long pool = (long)(s1.pool_pages - s0.pool_pages);
	printf("cached a %lu MiB ramfs file (%lu pages of data):\n", FILESZ / MiB,
	       pages);
	printf("  %-44s %12s %12s %12s\n", "", "before", "after", "change");
	printf("  %-44s %12llu %12llu %12ld\n", "pw_get_stats cached_pages",
	       (unsigned long long)s0.cached_pages,
	       (unsigned long long)s1.cached_pages, cached);
	printf("  %-44s %12llu %12llu %12ld\n", "pw_get_stats pool_pages (frames)",
	       (unsigned long long)s0.pool_pages, (unsigned long long)s1.pool_pages,
	       pool);
	printf("  %-44s %12ld %12ld %12ld\n", "RSS, KiB (/proc/self/statm)",
	       m0.rss / 1024, m1.rss / 1024, (m1.rss - m0.rss) / 1024);
	printf("  %-44s %12ld %12ld %12ld\n", "  RssShmem, KiB (the pool's frames)",
	       m0.shmem / 1024, m1.shmem / 1024, (m1.shmem - m0.shmem) / 1024);
	printf("  %-44s %12ld %12ld %12ld\n",
	       "  RssAnon, KiB (metadata, index, heap)", m0.anon / 1024,
	       m1.anon / 1024, (m1.anon - m0.anon) / 1024);
	printf("  %-44s %12ld %12ld %12ld\n", "  RssFile, KiB", m0.file / 1024,
	       m1.file / 1024, (m1.file - m0.file) / 1024);

	double per = cached > 0 ? (double)cached : (double)pages;
	double over = (double)(m1.rss - m0.rss) - (double)pages * PAGE_SIZE;
	printf("\nper cached page:\n");
	printf("  %-52s %10.1f bytes\n", "pool frames allocated / cached pages",
	       (double)pool * PAGE_SIZE / per);
	printf("  %-52s %10.1f bytes (%.2f%% of 4 KiB)\n",
	       "struct page array for those frames", (double)pool * (double)sizeof(struct page) / per,
	       100.0 * (double)pool * (double)sizeof(struct page) / per / PAGE_SIZE);
	printf("  %-52s %10.1f bytes (%.2f%% of 4 KiB)\n",
	       "RssAnon growth (metadata + index + everything else)",
	       (double)(m1.anon - m0.anon) / per,
	       100.0 * (double)(m1.anon - m0.anon) / per / PAGE_SIZE);
	printf("  %-52s %10.1f bytes (%.2f%% of 4 KiB)\n",
	       "RSS growth beyond the 4 KiB of data", over / per,
	       100.0 * over / per / PAGE_SIZE);
	printf("  (RSS is counted in 4 KiB units and the pool grows in chunks, so "
	       "expect a few KiB of rounding)\n");

	die_if(pw_close(fd) != 0, "pw_close");
	die_if(pw_unlink("/m/meta") != 0, "pw_unlink");
	pw_get_stats(&s2);
	struct mem m2 = mem_now();
	printf("\nafter unlinking it: cached_pages %llu, pool_pages %llu, RSS "
	       "%ld KiB (RssShmem %ld KiB)\n",
	       (unsigned long long)s2.cached_pages, (unsigned long long)s2.pool_pages,
	       m2.rss / 1024, m2.shmem / 1024);
	printf("(freed frames stay in the pool for reuse unless the pool "
	       "returns them to the kernel)\n");
	free(chunk);
	return 0;
}

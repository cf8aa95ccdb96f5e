/*
 * pagewright - the command.
 *
 *   pagewright mount   serve a pagewright filesystem over FUSE (mount.c)
 *   pagewright umount  unmount and wait for the write-back (umount.c)
 *   pagewright stat    live cache statistics of a mount (stat.c)
 *   pagewright sync    write back everything a mount's server holds (stat.c)
 *   pagewright demo    an ext2 image served over FUSE, a short workload,
 *                      what the cache did, e2fsck (demo.c)
 *   pagewright demo --same-page
 *                      (this file) a narrated run of the write path on a
 *                      host directory in $TMPDIR, mounted once with
 *                      write_begin/write_end and once with the legacy
 *                      prepare_write/commit_write, and the write the seed
 *                      exists for: a write whose source buffer is a
 *                      mapping of the very page being written.
 *
 * It uses the application API only.
 */
#include "tool.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <pagewright/pagewright.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096

static int
die(const char *what)
{
	fprintf(stderr, "pagewright demo: %s: %s\n", what, strerror(errno));
	exit(1);
}

static double
now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void
show_stats(const char *when)
{
	struct pw_stats st;
	pw_get_stats(&st);
	say("    [cache %s] cached=%llu dirty=%llu mapped=%llu faults=%llu "
	    "fault-around=%llu short-copies=%llu write-retries=%llu",
	    when, (unsigned long long)st.cached_pages, (unsigned long long)st.dirty_pages,
	    (unsigned long long)st.mapped_pages, (unsigned long long)st.faults,
	    (unsigned long long)st.fault_around, (unsigned long long)st.short_copies,
	    (unsigned long long)st.write_retries);
}

/* The same-page write on one mount; returns 0 if the data is right. */
static int
same_page(const char *mnt, const char *host, const char *label)
{
	char path[256], hostpath[512];
	snprintf(path, sizeof(path), "%s/same-page.txt", mnt);
	snprintf(hostpath, sizeof(hostpath), "%s/same-page.txt", host);
	say("\n== %s ==", label);

	int fd = pw_open(path, O_CREAT | O_RDWR | O_TRUNC, 0644);
	if (fd < 0)
		die("pw_open");
	char page[PAGE];
	for (int k = 0; k < PAGE; k++)
		page[k] = "pagewright: write_begin/write_end. "[k % 35];
	if (pw_pwrite(fd, page, PAGE, 0) != PAGE || pw_fsync(fd) != 0)
		die("write the first page");
	say("1. wrote one page and fsync'd it: %s now holds it on the host", hostpath);

	if (pw_posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0)
		die("fadvise");
	say("2. dropped it from the cache (posix_fadvise DONTNEED): the page is not cached,");
	say("   so it is not uptodate -- the case that deadlocked the old protocol");
	show_stats("after drop");

	char *map = pw_mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		die("pw_mmap");
	say("3. mapped the file at %p; nothing is mapped yet (PROT_NONE until a fault)",
	    (void *)map);

	say("4. pw_pwrite(fd, map + 0, 1000, 2048): the source is bytes 0..999 of the very");
	say("   page the write goes to.  generic_perform_write prefaults the source first");
	say("   (a real SIGSEGV, served by reading the page in), then write_begin locks");
	say("   the page and the copy runs with page faults disabled.");
	double t0 = now();
	ssize_t n = pw_pwrite(fd, map, 1000, 2048);
	double t1 = now();
	if (n != 1000)
		die("same-page pw_pwrite");
	say("   -> wrote %zd bytes in %.1f us, no deadlock", n, (t1 - t0) * 1e6);
	show_stats("after write");

	char check[PAGE];
	if (pw_pread(fd, check, PAGE, 0) != PAGE)
		die("pw_pread");
	int ok = memcmp(check, page, 2048) == 0 && memcmp(check + 2048, page, 1000) == 0 &&
	         memcmp(check + 3048, page + 3048, PAGE - 3048) == 0;
	say("5. read back: bytes 2048..3047 now repeat bytes 0..999, the rest unchanged: %s",
	    ok ? "correct" : "WRONG");
	say("   and the mapping shows the new bytes too: map[2048..2052] = \"%.5s\"", map + 2048);

	if (pw_fsync(fd) != 0)
		die("pw_fsync");
	FILE *h = fopen(hostpath, "r");
	char hb[PAGE];
	size_t got = h ? fread(hb, 1, PAGE, h) : 0;
	if (h)
		fclose(h);
	int disk_ok = got == PAGE && memcmp(hb, check, PAGE) == 0;
	say("6. after pw_fsync the host file matches: %s", disk_ok ? "yes" : "NO");
	pw_munmap(map, PAGE);
	pw_close(fd);
	return ok && disk_ok ? 0 : 1;
}

static int
same_page_demo(void)
{
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char host[256];
	snprintf(host, sizeof(host), "%s/pagewright-demo.XXXXXX", tmp);
	if (!mkdtemp(host))
		die("mkdtemp");
	say("pagewright demo: a page cache in this process, backed by host directory %s", host);
	int bad = 0;
	if (pw_mkdir("/new", 0755) || pw_mount("hostfs", host, "/new", NULL))
		die("mount hostfs");
	bad |= same_page("/new", host, "hostfs with write_begin/write_end (the seed's new aops)");
	if (pw_umount("/new"))
		die("umount");
	if (pw_mkdir("/legacy", 0755) || pw_mount("hostfs", host, "/legacy", "legacy_aops"))
		die("mount hostfs legacy_aops");
	bad |= same_page("/legacy", host,
	                 "hostfs with only prepare_write/commit_write (the legacy 2copy path)");
	if (pw_umount("/legacy"))
		die("umount");
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", host);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", host);
	say("\n%s", bad ? "demo FAILED" : "demo done: both paths wrote from a mapping of the "
	                                  "page being written, without deadlock");
	return bad;
}

int
main(int argc, char **argv)
{
	const char *cmd = argc >= 2 ? argv[1] : "";
	if (strcmp(cmd, "demo") == 0 && argc == 3 && strcmp(argv[2], "--same-page") == 0)
		return same_page_demo();
	if (strcmp(cmd, "demo") == 0)
		return cmd_demo(argc - 1, argv + 1);
	if (strcmp(cmd, "mount") == 0)
		return cmd_mount(argc - 1, argv + 1);
	if (strcmp(cmd, "umount") == 0 || strcmp(cmd, "unmount") == 0)
		return cmd_umount(argc - 1, argv + 1);
	if (strcmp(cmd, "stat") == 0)
		return cmd_stat(argc - 1, argv + 1);
	if (strcmp(cmd, "sync") == 0)
		return cmd_sync(argc - 1, argv + 1);
	fprintf(stderr,
	        "usage: pagewright mount -t ramfs|hostfs|ext2 SOURCE MOUNTPOINT [-o OPTIONS] [-f]\n"
	        "       pagewright umount [-l] MOUNTPOINT\n"
	        "       pagewright stat [-w [-n SECONDS] [-c COUNT]] [-r] [MOUNTPOINT]\n"
	        "       pagewright sync MOUNTPOINT\n"
	        "       pagewright demo [--in-process | --same-page]\n"
	        "(docs/fuse.md)\n");
	return 2;
}

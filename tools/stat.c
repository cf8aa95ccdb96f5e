/*
 * stat.c - `pagewright stat`: live cache statistics of running mounts.
 *
 *   pagewright stat [MOUNTPOINT]           a report (every pagewright mount
 *                                          without MOUNTPOINT)
 *   pagewright stat -w [-n S] [-c N] MOUNTPOINT
 *                                          one line every S seconds (1),
 *                                          N times (until ^C)
 *   pagewright stat -r MOUNTPOINT          the server's "key value" lines
 *   pagewright sync MOUNTPOINT             write back everything the
 *                                          server holds (syncfs(2) does not
 *                                          reach a FUSE server)
 *
 * The figures come from the server over its control socket (ctl.c); they
 * are pagewright's cache for the whole server process: pages cached,
 * dirty, under writeback and mapped, lookups that hit or missed, faults
 * served, pages written back and evicted, and how long writers were
 * throttled at the dirty limit; plus the FUSE requests the kernel sent.
 */
#include "tool.h"
#include "ctl.h"

#include <pagewright/pagewright.h>

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A parsed stats reply: the text, and a lookup by key. */
struct stats {
	char text[8192];
};

static const char *
str(const struct stats *s, const char *key)
{
	static char vals[8][PATH_MAX]; /* several may be in one printf */
	static unsigned next;
	char *val = vals[next++ % 8];
	size_t klen = strlen(key);
	for (const char *p = s->text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		if (strncmp(p, key, klen) == 0 && p[klen] == ' ') {
			size_t n = strcspn(p + klen + 1, "\n");
			snprintf(val, PATH_MAX, "%.*s", (int)n, p + klen + 1);
			return val;
		}
	}
	return "?";
}

static uint64_t
num(const struct stats *s, const char *key)
{
	return strtoull(str(s, key), NULL, 10);
}

/* Pages or bytes as a short size: "512 KiB", "48.2 MiB". */
static const char *
size_str(double bytes, char *buf, size_t size)
{
	static const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	int u = 0;
	while (bytes >= 1024 && u < 4)
		bytes /= 1024, u++;
	snprintf(buf, size, u == 0 || bytes >= 100 ? "%.0f %s" : "%.1f %s", bytes, unit[u]);
	return buf;
}

static int
fetch(const struct mnt_entry *e, struct stats *s, bool quiet)
{
	pid_t pid;
	int fd = ctl_connect(e, &pid);
	ssize_t n = fd < 0 ? fd : ctl_request(fd, "stats", s->text, sizeof(s->text), false);
	if (fd >= 0)
		close(fd);
	if (n > 0)
		return 0;
	if (quiet)
		return -1;
	if (n == -ECONNREFUSED || n == -ENOENT)
		fprintf(stderr, "pagewright stat: %s: its server does not answer (it was killed, "
		                "or is an older pagewright); pagewright umount %s unmounts it\n",
		        e->mountpoint, e->mountpoint);
	else if (n == -EPERM || n == -EACCES)
		fprintf(stderr, "pagewright stat: %s: permission denied (the server answers "
		                "its own user and root)\n", e->mountpoint);
	else
		fprintf(stderr, "pagewright stat: %s: %s\n", e->mountpoint,
		        strerror(n ? (int)-n : EPROTO));
	return -1;
}

size_t
stats_format_cache(char *buf, size_t size, const struct pw_stats *s)
{
	int n = snprintf(buf, size,
	    "page_size 4096\npool_pages %llu\nallocated_pages %llu\ncached_pages %llu\n"
	    "dirty_pages %llu\nwriteback_pages %llu\nmapped_pages %llu\nhits %llu\n"
	    "misses %llu\nfaults %llu\nfault_around %llu\nshort_copies %llu\n"
	    "write_retries %llu\nwritten_pages %llu\nreclaimed_pages %llu\nthrottled %llu\n"
	    "throttle_ms %llu\ndirty_limit_pages %llu\nmem_limit_pages %llu\nwarmed_pages %llu\n",
	    (unsigned long long)s->pool_pages, (unsigned long long)s->allocated_pages,
	    (unsigned long long)s->cached_pages, (unsigned long long)s->dirty_pages,
	    (unsigned long long)s->writeback_pages, (unsigned long long)s->mapped_pages,
	    (unsigned long long)s->hits, (unsigned long long)s->misses,
	    (unsigned long long)s->faults, (unsigned long long)s->fault_around,
	    (unsigned long long)s->short_copies, (unsigned long long)s->write_retries,
	    (unsigned long long)s->written_pages, (unsigned long long)s->reclaimed_pages,
	    (unsigned long long)s->throttled, (unsigned long long)s->throttle_ms,
	    (unsigned long long)s->dirty_limit_pages, (unsigned long long)s->mem_limit_pages,
	    (unsigned long long)s->warmed_pages);
	return n < 0 ? 0 : (size_t)n >= size ? size - 1 : (size_t)n;
}

static void
report(const struct stats *s)
{
	char b1[32], b2[32], b3[32], b4[32];
	uint64_t page = num(s, "page_size");
	uint64_t hits = num(s, "hits"), misses = num(s, "misses");
	uint64_t mem = num(s, "mem_limit_pages");
	if (strcmp(str(s, "cache"), "?") != 0)
		printf("%s: %s on %s, server pid %s, up %.1f s, cache=%s, shared mmap %s, "
		       "requests through %s\n",
		       str(s, "mountpoint"), str(s, "type"), str(s, "source"), str(s, "pid"),
		       num(s, "uptime_ms") / 1e3, str(s, "cache"),
		       strcmp(str(s, "shared_mmap"), "yes") ? "refused (ENODEV)" : "works",
		       str(s, "transport"));
	printf("  page cache    %llu pages (%s): %llu dirty, %llu under writeback, "
	       "%llu mapped\n", (unsigned long long)num(s, "cached_pages"),
	       size_str((double)num(s, "cached_pages") * page, b1, sizeof(b1)),
	       (unsigned long long)num(s, "dirty_pages"),
	       (unsigned long long)num(s, "writeback_pages"),
	       (unsigned long long)num(s, "mapped_pages"));
	printf("  lookups       %llu hits, %llu misses (%.1f%% hits)\n",
	       (unsigned long long)hits, (unsigned long long)misses,
	       hits + misses ? 100.0 * hits / (hits + misses) : 0.0);
	printf("  page faults   %llu served, %llu more pages mapped by fault-around\n",
	       (unsigned long long)num(s, "faults"), (unsigned long long)num(s, "fault_around"));
	printf("  writeback     %llu pages written (%s); writers throttled %llu times, "
	       "%.1f ms in all\n", (unsigned long long)num(s, "written_pages"),
	       size_str((double)num(s, "written_pages") * page, b1, sizeof(b1)),
	       (unsigned long long)num(s, "throttled"), (double)num(s, "throttle_ms"));
	printf("  memory        %s in the pool, %s in use; cap %s; dirty limit %s; "
	       "%llu pages evicted; %llu frames warmed ahead\n",
	       size_str((double)num(s, "pool_pages") * page, b1, sizeof(b1)),
	       size_str((double)num(s, "allocated_pages") * page, b2, sizeof(b2)),
	       mem ? size_str((double)mem * page, b3, sizeof(b3)) : "none",
	       size_str((double)num(s, "dirty_limit_pages") * page, b4, sizeof(b4)),
	       (unsigned long long)num(s, "reclaimed_pages"),
	       (unsigned long long)num(s, "warmed_pages"));
	if (strcmp(str(s, "fuse_reads"), "?") == 0)
		return;
	printf("  requests      %llu reads (%s), %llu writes (%s), %llu fsyncs, "
	       "%llu files made\n", (unsigned long long)num(s, "fuse_reads"),
	       size_str((double)num(s, "fuse_read_bytes"), b1, sizeof(b1)),
	       (unsigned long long)num(s, "fuse_writes"),
	       size_str((double)num(s, "fuse_write_bytes"), b2, sizeof(b2)),
	       (unsigned long long)num(s, "fuse_fsyncs"), (unsigned long long)num(s, "fuse_creates"));
}

/* ------------------------------------------------------------- --watch */

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static double
mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A size in at most 6 columns: "48.2M". */
static const char *
col(double bytes, char *buf)
{
	static const char unit[] = "BKMGT";
	int u = 0;
	while (bytes >= 1000 && u < 4)
		bytes /= 1024, u++;
	snprintf(buf, 8, u == 0 ? "%.0f%c" : bytes >= 10 ? "%.0f%c" : "%.1f%c", bytes, unit[u]);
	return buf;
}

static void
watch_line(const struct stats *s, const struct stats *o, double dt, double t)
{
	char c[8][8];
	double page = (double)num(s, "page_size");
#define RATE(k) ((double)(num(s, k) - num(o, k)) / dt)
	printf("%7.1f %7s %7s %7s %7s %8.0f %8.0f %8.0f %8s %7.0f %8s %8s\n", t,
	       col(num(s, "cached_pages") * page, c[0]), col(num(s, "dirty_pages") * page, c[1]),
	       col(num(s, "writeback_pages") * page, c[2]), col(num(s, "mapped_pages") * page, c[3]),
	       RATE("hits"), RATE("misses"), RATE("faults"), col(RATE("written_pages") * page, c[4]),
	       (double)(num(s, "throttle_ms") - num(o, "throttle_ms")),
	       col(RATE("fuse_read_bytes"), c[5]), col(RATE("fuse_write_bytes"), c[6]));
#undef RATE
	fflush(stdout);
}

static int
watch(const struct mnt_entry *e, double interval, long count)
{
	struct stats a, b;
	struct stats *cur = &a, *old = &b;
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	if (fetch(e, old, false) != 0)
		return 1;
	printf("%s: %s on %s, one line every %g s (rates per second)\n", e->mountpoint,
	       str(old, "type"), str(old, "source"), interval);
	printf("%7s %7s %7s %7s %7s %8s %8s %8s %8s %7s %8s %8s\n", "time", "cached", "dirty",
	       "wback", "mapped", "hits/s", "miss/s", "fault/s", "wrote/s", "thr.ms", "read/s",
	       "write/s");
	double t0 = mono(), last = t0;
	for (long k = 0; !stop && (count <= 0 || k < count); k++) {
		double next = t0 + (k + 1) * interval;
		while (!stop && mono() < next)
			usleep((useconds_t)((next - mono()) * 1e6 > 100000 ? 100000
			                                                 : (next - mono()) * 1e6 + 1));
		if (stop)
			break;
		if (fetch(e, cur, true) != 0) {
			printf("the server has gone\n");
			return 0;
		}
		double now = mono();
		watch_line(cur, old, now - last, now - t0);
		last = now;
		struct stats *t = cur;
		cur = old;
		old = t;
	}
	return 0;
}

/* ------------------------------------------------------------- command */

static void
usage(void)
{
	fprintf(stderr, "usage: pagewright stat [-r] [MOUNTPOINT]\n"
	                "       pagewright stat -w [-n SECONDS] [-c COUNT] MOUNTPOINT\n");
	exit(2);
}

uint64_t
stats_num(const char *text, const char *key)
{
	static struct stats s;
	snprintf(s.text, sizeof(s.text), "%s", text);
	return num(&s, key);
}

void
stats_report(const char *text)
{
	static struct stats s;
	snprintf(s.text, sizeof(s.text), "%s", text);
	report(&s);
}

static void
report_one(const struct mnt_entry *e, void *arg)
{
	struct stats *s = arg;
	if (fetch(e, s, false) == 0)
		report(s);
}

void
tool_find_mount(const char *cmd, const char *arg, struct mnt_entry *e)
{
	char path[PATH_MAX];
	int err = mnt_abspath(arg, path, sizeof(path));
	if (err) {
		fprintf(stderr, "pagewright %s: %s: %s\n", cmd, arg, strerror(-err));
		exit(1);
	}
	if (mnt_find(path, e) != 0) {
		fprintf(stderr, "pagewright %s: %s is not a pagewright mount (nothing is mounted "
		                "there)\n", cmd, path);
		exit(1);
	}
	if (!mnt_is_pagewright(e)) {
		fprintf(stderr, "pagewright %s: %s is not a pagewright mount (it is %s)\n", cmd,
		        path, e->fstype);
		exit(1);
	}
}

int
cmd_stat(int argc, char **argv)
{
	bool raw = false, watching = false;
	double interval = 1;
	long count = 0;
	const char *arg = NULL;
	for (int k = 1; k < argc; k++) {
		if (strcmp(argv[k], "-r") == 0 || strcmp(argv[k], "--raw") == 0)
			raw = true;
		else if (strcmp(argv[k], "-w") == 0 || strcmp(argv[k], "--watch") == 0)
			watching = true;
		else if (strcmp(argv[k], "-n") == 0 && k + 1 < argc && atof(argv[k + 1]) > 0)
			interval = atof(argv[++k]), watching = true;
		else if (strcmp(argv[k], "-c") == 0 && k + 1 < argc && atol(argv[k + 1]) > 0)
			count = atol(argv[++k]), watching = true;
		else if (argv[k][0] == '-' || arg)
			usage();
		else
			arg = argv[k];
	}
	static struct stats s;
	if (!arg) {
		if (watching || raw)
			usage();
		if (mnt_each_pagewright(report_one, &s) <= 0)
			printf("no pagewright mounts\n");
		return 0;
	}
	struct mnt_entry e;
	tool_find_mount("stat", arg, &e);
	if (watching)
		return watch(&e, interval, count);
	if (fetch(&e, &s, false) != 0)
		return 1;
	if (raw)
		fputs(s.text, stdout);
	else
		report(&s);
	return 0;
}

int
cmd_sync(int argc, char **argv)
{
	if (argc != 2 || argv[1][0] == '-') {
		fprintf(stderr, "usage: pagewright sync MOUNTPOINT\n");
		return 2;
	}
	struct mnt_entry e;
	tool_find_mount("sync", argv[1], &e);
	pid_t pid;
	char reply[512];
	int fd = ctl_connect(&e, &pid);
	ssize_t n = fd < 0 ? fd : ctl_request(fd, "sync", reply, sizeof(reply), true);
	if (fd >= 0)
		close(fd);
	if (n > 0 && strncmp(reply, "ok", 2) == 0)
		return 0;
	if (n > 0)
		fprintf(stderr, "pagewright sync: %s: writing back failed: %.*s\n", e.mountpoint,
		        (int)strcspn(reply + 6, "\n"), strncmp(reply, "error ", 6) ? reply : reply + 6);
	else
		fprintf(stderr, "pagewright sync: %s: %s\n", e.mountpoint,
		        n == -ECONNREFUSED ? "its server does not answer" : strerror(n ? (int)-n : EPROTO));
	return 1;
}

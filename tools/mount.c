/*
 * mount.c - `pagewright mount`: serve a pagewright filesystem over FUSE.
 *
 *   pagewright mount -t TYPE SOURCE MOUNTPOINT [-o OPTIONS] [-f] [-d]
 *
 * TYPE is ramfs (SOURCE is ignored; write "none"), hostfs (SOURCE is a
 * host directory) or ext2 (SOURCE is an image file or device).  OPTIONS,
 * comma-separated:
 *   ro             read-only, in pagewright and in the kernel
 *   legacy_aops    hostfs: only prepare_write/commit_write
 *   allow_other    let other users in (off by default; needs
 *                  user_allow_other in /etc/fuse.conf for non-root)
 *   cache=direct   (default) the kernel caches no file data
 *   cache=kernel   the kernel's page cache too, written through
 *   cache=writeback  the kernel's page cache kept across opens, and its
 *                  writeback cache (docs/fuse.md: the coherent fast mode)
 *   threads=N      at most N request threads
 *   timeout=S      the kernel keeps attributes and names S seconds
 *                  (default 1; 0 asks the server every time)
 * -f stays in the foreground; -d adds libfuse's request trace (implies -f).
 *
 * Without -f the command forks before pagewright starts (a forked child
 * cannot use the parent's page cache), and the parent exits 0 only once
 * the child reports the mount is up; otherwise it prints the child's one
 * line of error and exits 1.  The server ends on SIGINT, SIGTERM, SIGHUP
 * or `fusermount3 -u MOUNTPOINT`, then closes what the kernel left open and
 * unmounts pagewright's filesystem, which writes everything back; its exit
 * status is 0 only if that worked.  A daemon's stderr is /dev/null, so it
 * reports that last step's failure to syslog too.
 *
 * The server holds a lock on its source for its whole life (flock, which
 * the kernel drops however the process ends): exclusive, or shared with
 * -o ro, so two servers never cache one image and overwrite each other's
 * blocks.  It answers `pagewright stat`, `sync` and `umount` on its
 * control socket (ctl.c): live statistics, a pw_sync, and the final
 * status of the write-back for a client that waits for it.
 */
#include "tool.h"
#include "ctl.h"

#ifdef PW_NO_FUSE
#include <stdio.h>

int
cmd_mount(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "pagewright mount: this pagewright was built without libfuse3 "
	                "(install libfuse3-dev and pkg-config, then make)\n");
	return 1;
}
#else
#include "../src/fuse/server.h"

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 312
#endif
#include <fuse_log.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pagewright/pagewright.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define ROOT "/mnt"

struct mount_args {
	const char *type;
	char source[PATH_MAX];     /* absolute, or empty for ramfs */
	char mountpoint[PATH_MAX]; /* absolute */
	char pw_opts[256];         /* for pw_mount */
	bool foreground, debug, read_only, allow_other;
	enum pw_fuse_cache cache;
	unsigned threads;
	bool no_uring;
	double timeout;
};

static int report_fd = -1;       /* the child's pipe to the waiting parent */
static char fuse_msg[512];       /* libfuse's last message while mounting */

/* What the control thread reports (stats_text); set before it starts. */
static struct {
	const struct mount_args *args;
	struct pw_fuse *fuse;
	struct timespec started;
} served;

/* One line on stderr, or down the pipe to the parent that prints it. */
static void
fail(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (report_fd >= 0) {
		ssize_t r = write(report_fd, line, strlen(line));
		(void)r;
	} else {
		fprintf(stderr, "pagewright mount: %s\n", line);
	}
	exit(1);
}

static void
usage(void)
{
	fprintf(stderr, "usage: pagewright mount -t ramfs|hostfs|ext2 SOURCE MOUNTPOINT "
	                "[-o ro,legacy_aops,allow_other,cache=direct|kernel|writeback,threads=N,timeout=S,nouring] "
	                "[-f] [-d]\n");
	exit(2);
}

static void
add_pw_opt(struct mount_args *a, const char *opt)
{
	size_t len = strlen(a->pw_opts);
	snprintf(a->pw_opts + len, sizeof(a->pw_opts) - len, "%s%s", len ? "," : "", opt);
}

static void
parse_option(struct mount_args *a, const char *opt)
{
	char *end;
	if (strcmp(opt, "ro") == 0) {
		a->read_only = true;
		add_pw_opt(a, opt);
	} else if (strcmp(opt, "rw") == 0 || opt[0] == 0) {
	} else if (strcmp(opt, "legacy_aops") == 0) {
		add_pw_opt(a, opt);
	} else if (strcmp(opt, "allow_other") == 0) {
		a->allow_other = true;
	} else if (strcmp(opt, "cache=direct") == 0) {
		a->cache = PW_FUSE_CACHE_DIRECT;
	} else if (strcmp(opt, "cache=kernel") == 0) {
		a->cache = PW_FUSE_CACHE_KERNEL;
	} else if (strcmp(opt, "cache=writeback") == 0) {
		a->cache = PW_FUSE_CACHE_WRITEBACK;
	} else if (strcmp(opt, "nouring") == 0) {
		a->no_uring = true;
	} else if (strncmp(opt, "threads=", 8) == 0 && atoi(opt + 8) > 0) {
		a->threads = (unsigned)atoi(opt + 8);
	} else if (strncmp(opt, "timeout=", 8) == 0 && opt[8] && strtod(opt + 8, &end) >= 0 &&
	           *end == 0) {
		a->timeout = strtod(opt + 8, NULL);
	} else {
		fail("unknown option \"%s\"", opt);
	}
}

static void
parse_options(struct mount_args *a, const char *list)
{
	char *copy = strdup(list), *save = NULL;
	for (char *o = strtok_r(copy, ",", &save); o; o = strtok_r(NULL, ",", &save))
		parse_option(a, o);
	free(copy);
}

static bool
is_mount_point(const char *path)
{
	struct mnt_entry e;
	return mnt_find(path, &e) == 0;
}

static void
check_dev_fuse(void)
{
	int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		close(fd);
		return;
	}
	if (errno == ENOENT || errno == ENODEV || errno == ENXIO)
		fail("/dev/fuse is missing: this machine has no FUSE (load the fuse module, "
		     "or in a container pass --device /dev/fuse)");
	if (errno == EACCES || errno == EPERM)
		fail("no permission to open /dev/fuse");
	fail("/dev/fuse: %s", strerror(errno));
}

static void
check_mountpoint(struct mount_args *a, const char *arg)
{
	struct stat st, pst;
	if (stat(arg, &st) != 0) {
		if (errno == ENOTCONN)
			fail("mount point %s is a dead FUSE mount: unmount it first "
			     "(fusermount3 -u %s)", arg, arg);
		fail("mount point %s: %s", arg, strerror(errno));
	}
	if (!S_ISDIR(st.st_mode))
		fail("mount point %s is not a directory", arg);
	if (!realpath(arg, a->mountpoint))
		fail("mount point %s: %s", arg, strerror(errno));
	char parent[PATH_MAX + 3];
	snprintf(parent, sizeof(parent), "%s/..", a->mountpoint);
	if (strcmp(a->mountpoint, "/") == 0 || is_mount_point(a->mountpoint) ||
	    (stat(parent, &pst) == 0 && pst.st_dev != st.st_dev))
		fail("mount point %s is busy: something is already mounted there",
		     a->mountpoint);
	if (access(a->mountpoint, W_OK) != 0 && geteuid() != 0)
		fail("no permission to mount on %s", a->mountpoint);
}

static void
check_source(struct mount_args *a, const char *arg)
{
	struct stat st;
	if (strcmp(a->type, "ramfs") == 0) {
		a->source[0] = 0;
		return;
	}
	if (strcmp(a->type, "hostfs") != 0 && strcmp(a->type, "ext2") != 0)
		fail("unknown filesystem type \"%s\" (ramfs, hostfs or ext2)", a->type);
	if (stat(arg, &st) != 0 || !realpath(arg, a->source))
		fail("%s: %s", arg, strerror(errno));
	bool hostfs = strcmp(a->type, "hostfs") == 0;
	if (hostfs && !S_ISDIR(st.st_mode))
		fail("%s is not a directory (hostfs serves a host directory)", arg);
	if (!hostfs && !S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		fail("%s is not an image file or block device", arg);
	int mode = R_OK | (a->read_only ? 0 : W_OK) | (hostfs ? X_OK : 0);
	if (access(a->source, mode) != 0)
		fail("no permission to %s %s", a->read_only ? "read" : "read and write",
		     a->source);
}

static void
parse_args(struct mount_args *a, int argc, char **argv)
{
	const char *pos[2];
	int npos = 0;
	a->cache = PW_FUSE_CACHE_DIRECT;
	a->timeout = 1.0;
	for (int k = 1; k < argc; k++) {
		if (strcmp(argv[k], "-t") == 0 && k + 1 < argc)
			a->type = argv[++k];
		else if (strcmp(argv[k], "-o") == 0 && k + 1 < argc)
			parse_options(a, argv[++k]);
		else if (strcmp(argv[k], "-f") == 0)
			a->foreground = true;
		else if (strcmp(argv[k], "-d") == 0)
			a->debug = a->foreground = true;
		else if (argv[k][0] == '-' || npos == 2)
			usage();
		else
			pos[npos++] = argv[k];
	}
	if (!a->type || npos != 2)
		usage();
	check_source(a, pos[0]);
	check_dev_fuse();
	check_mountpoint(a, pos[1]);
}

/* Wait for the child's word; exit 0 on "ok", else print its error. */
static void
parent_wait(pid_t child, int fd)
{
	char buf[1024];
	size_t len = 0;
	ssize_t n;
	while (len + 1 < sizeof(buf) && (n = read(fd, buf + len, sizeof(buf) - 1 - len)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		len += (size_t)n;
	}
	buf[len] = 0;
	if (strcmp(buf, "ok") == 0)
		exit(0);
	int status;
	waitpid(child, &status, 0);
	fprintf(stderr, "pagewright mount: %s\n",
	        len ? buf : "the server exited before the mount was up");
	exit(1);
}

static void
daemonize(void)
{
	int p[2];
	if (pipe(p) != 0)
		fail("pipe: %s", strerror(errno));
	pid_t pid = fork();
	if (pid < 0)
		fail("fork: %s", strerror(errno));
	if (pid > 0) {
		close(p[1]);
		parent_wait(pid, p[0]);
	}
	close(p[0]);
	report_fd = p[1];
	setsid();
}

static void
detach_stdio(void)
{
	int null = open("/dev/null", O_RDWR);
	if (null >= 0) {
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		if (null > 2)
			close(null);
	}
	if (chdir("/") != 0)
		_exit(1);
}

static void
fuse_log_capture(enum fuse_log_level level, const char *fmt, va_list ap)
{
	(void)level;
	vsnprintf(fuse_msg, sizeof(fuse_msg), fmt, ap);
	fuse_msg[strcspn(fuse_msg, "\n")] = 0;
}

/* pw_mount with pagewright's own log lines caught, to put them on the one
 * line of error. */
static void
mount_pagewright(struct mount_args *a)
{
	int saved = dup(2), log = memfd_create("pw-log", MFD_CLOEXEC);
	if (saved >= 0 && log >= 0)
		dup2(log, 2);
	int r = pw_mkdir(ROOT, 0755) == 0 || errno == EEXIST
	            ? pw_mount(a->type, a->source[0] ? a->source : NULL, ROOT,
	                       a->pw_opts[0] ? a->pw_opts : NULL)
	            : -1;
	int err = errno;
	char msg[512] = "";
	if (saved >= 0 && log >= 0) {
		dup2(saved, 2);
		ssize_t n = pread(log, msg, sizeof(msg) - 1, 0);
		msg[n > 0 ? n : 0] = 0;
	}
	if (saved >= 0)
		close(saved);
	if (log >= 0)
		close(log);
	if (r == 0)
		return;
	/* Its lines, without their "pagewright: " prefixes, joined by "; ". */
	char joined[512] = "";
	for (char *line = strtok(msg, "\n"); line; line = strtok(NULL, "\n")) {
		if (strncmp(line, "pagewright: ", 12) == 0)
			line += 12;
		size_t len = strlen(joined);
		snprintf(joined + len, sizeof(joined) - len, "%s%s", len ? "; " : "", line);
	}
	bool image = strcmp(a->type, "ext2") == 0 && (err == EINVAL || err == EUCLEAN);
	fail("cannot mount %s %s: %s%s%s%s%s", a->type, a->source[0] ? a->source : "",
	     strerror(err), image ? " (corrupt, or not an ext2 image)" : "",
	     joined[0] ? " [" : "", joined, joined[0] ? "]" : "");
}

static struct pw_fuse *
mount_fuse(struct mount_args *a)
{
	char fsname[PATH_MAX + 16], subtype[32], err[512];
	snprintf(fsname, sizeof(fsname), "%s", a->source[0] ? a->source : "ramfs");
	snprintf(subtype, sizeof(subtype), "pagewright.%s", a->type);
	struct pw_fuse_opts o = {
		.root = ROOT,
		.mountpoint = a->mountpoint,
		.fsname = fsname,
		.subtype = subtype,
		.read_only = a->read_only,
		.allow_other = a->allow_other,
		.debug = a->debug,
		.cache = a->cache,
		.max_threads = a->threads,
		.no_uring = a->no_uring,
		.timeout = a->timeout,
	};
	struct pw_fuse *f;
	fuse_set_log_func(fuse_log_capture);
	int r = pw_fuse_new(&o, &f, err, sizeof(err));
	if (r) {
		pw_umount(ROOT);
		fail("%s%s%s", err, fuse_msg[0] ? ": " : "", fuse_msg);
	}
	fuse_set_log_func(NULL);
	return f;
}

/* The pid holding a lock on st's file, from /proc/locks ("1: FLOCK
 * ADVISORY WRITE PID MAJ:MIN:INODE 0 EOF", device numbers in hex). */
static long
lock_holder(const struct stat *st)
{
	FILE *f = fopen("/proc/locks", "r");
	if (!f)
		return -1;
	char line[256];
	long pid = -1;
	while (pid < 0 && fgets(line, sizeof(line), f)) {
		long p;
		unsigned maj, min;
		unsigned long ino;
		if (strstr(line, "->") == NULL &&
		    sscanf(line, "%*d: %*s %*s %*s %ld %x:%x:%lu", &p, &maj, &min, &ino) == 4 &&
		    maj == major(st->st_dev) && min == minor(st->st_dev) && ino == st->st_ino)
			pid = p;
	}
	fclose(f);
	return pid;
}

/* Lock the source for the server's life: a second server of one image
 * would cache it too and overwrite this one's blocks.  Return: the
 * descriptor holding the lock, or -1 for ramfs. */
static int
lock_source(const struct mount_args *a)
{
	if (!a->source[0])
		return -1;
	int fd = open(a->source, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		fail("%s: %s", a->source, strerror(errno));
	if (flock(fd, (a->read_only ? LOCK_SH : LOCK_EX) | LOCK_NB) == 0)
		return fd;
	if (errno != EWOULDBLOCK)
		fail("cannot lock %s: %s", a->source, strerror(errno));
	struct stat st;
	long pid = fstat(fd, &st) == 0 ? lock_holder(&st) : -1;
	char path[64], comm[64] = "";
	snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
	FILE *c = pid > 0 ? fopen(path, "r") : NULL;
	if (c) {
		if (!fgets(comm, sizeof(comm), c))
			comm[0] = 0;
		comm[strcspn(comm, "\n")] = 0;
		fclose(c);
	}
	if (pid < 0)
		fail("%s is in use by another pagewright (pid unknown)", a->source);
	if (comm[0] && strcmp(comm, "pagewright") != 0)
		fail("%s is locked by %s (pid %ld)", a->source, comm, pid);
	fail("%s is in use by another pagewright (pid %ld)", a->source, pid);
	return -1;
}

static const char *const cache_names[] = {
	[PW_FUSE_CACHE_DIRECT] = "direct",
	[PW_FUSE_CACHE_KERNEL] = "kernel",
	[PW_FUSE_CACHE_WRITEBACK] = "writeback",
};

/* The reply to `pagewright stat`: "key value" lines (docs/fuse.md). */
static size_t
stats_text(char *buf, size_t size)
{
	struct pw_stats s;
	struct pw_fuse_counters c;
	struct timespec now;
	pw_get_stats(&s);
	pw_fuse_get_counters(served.fuse, &c);
	clock_gettime(CLOCK_MONOTONIC, &now);
	const struct mount_args *a = served.args;
	long long up_ms = (now.tv_sec - served.started.tv_sec) * 1000LL +
	                  (now.tv_nsec - served.started.tv_nsec) / 1000000;
	int n = snprintf(buf, size,
	                 "pid %ld\ntype %s\nsource %s\nmountpoint %s\ncache %s\n"
	                 "shared_mmap %s\ntransport %s\nuptime_ms %lld\n",
	                 (long)getpid(), a->type, a->source[0] ? a->source : "none",
	                 a->mountpoint, cache_names[a->cache],
	                 a->cache != PW_FUSE_CACHE_DIRECT || pw_fuse_mmap_granted(served.fuse)
	                     ? "yes" : "no",
	                 pw_fuse_uring(served.fuse) ? "io_uring" : "/dev/fuse", up_ms);
	size_t len = n < 0 ? 0 : (size_t)n < size ? (size_t)n : size - 1;
	len += stats_format_cache(buf + len, size - len, &s);
	n = snprintf(buf + len, size - len,
	             "fuse_reads %llu\nfuse_read_bytes %llu\nfuse_writes %llu\n"
	             "fuse_write_bytes %llu\nfuse_fsyncs %llu\nfuse_creates %llu\n",
	             (unsigned long long)c.reads, (unsigned long long)c.read_bytes,
	             (unsigned long long)c.writes, (unsigned long long)c.write_bytes,
	             (unsigned long long)c.fsyncs, (unsigned long long)c.creates);
	return len + (n < 0 ? 0 : (size_t)n < size - len ? (size_t)n : size - len - 1);
}

/* `pagewright sync`: what the kernel holds first, then pagewright's
 * cache: afterwards the image has every write made before the call. */
static int
sync_all(void)
{
	if (served.fuse)
		pw_fuse_kernel_writeback(served.fuse);
	return pw_sync() ? -errno : 0;
}

/* Answer pagewright stat, sync and umount; without the socket the mount still
 * works, so a failure is a warning. */
static void
start_control(struct mount_args *a, struct pw_fuse *f)
{
	char err[512];
	served.args = a;
	served.fuse = f;
	clock_gettime(CLOCK_MONOTONIC, &served.started);
	static const struct ctl_ops ops = {.stats = stats_text, .sync = sync_all};
	if (ctl_listen(a->mountpoint, a->allow_other, &ops, err, sizeof(err)) != 0) {
		fprintf(stderr, "pagewright mount: warning: %s; pagewright stat and umount "
		                "will not find this server\n", err);
		if (!a->foreground)
			syslog(LOG_DAEMON | LOG_WARNING, "pagewright mount %s: %s", a->mountpoint,
			       err);
	}
}

int
cmd_mount(int argc, char **argv)
{
	struct mount_args a;
	memset(&a, 0, sizeof(a));
	parse_args(&a, argc, argv);
	/* Write back early: the kernel already delays the writes it sends
	 * us (cache=writeback), and the server's dirty pages are what a
	 * crash of the server loses.  Past 4 MiB of dirty pages the
	 * writeback thread starts, on a CPU the request threads leave idle
	 * (they serve each request on the caller's), so a sync later has
	 * little left to do: create 10,000 files then sync ran at 8656-9054
	 * files/s against 7176-7799 with the library's default (half the
	 * dirty limit).  The environment still decides (README). */
	setenv("PAGEWRIGHT_DIRTY_BACKGROUND", "4M", 0);
	if (!a.foreground)
		daemonize();
	int lock_fd = lock_source(&a);
	mount_pagewright(&a);
	struct pw_fuse *f = mount_fuse(&a);
	start_control(&a, f);
	if (report_fd >= 0) {
		ssize_t w = write(report_fd, "ok", 2);
		(void)w;
		close(report_fd);
		report_fd = -1;
		detach_stdio();
	}
	int r = pw_fuse_run(f);
	ctl_stop();
	pw_fuse_destroy(f);
	char msg[512] = "";
	if (pw_umount(ROOT) != 0) {
		snprintf(msg, sizeof(msg), "writing back %.400s failed: %s",
		         a.source[0] ? a.source : "ramfs", strerror(errno));
		if (!a.foreground)
			syslog(LOG_DAEMON | LOG_ERR, "pagewright mount %s: %s", a.mountpoint, msg);
	} else if (r != 0) {
		snprintf(msg, sizeof(msg), "the FUSE session failed: %s", strerror(-r));
	}
	if (msg[0])
		fprintf(stderr, "pagewright mount: %s\n", msg);
	if (lock_fd >= 0)
		close(lock_fd);
	ctl_finish(msg[0] ? 1 : 0, msg[0] ? msg : "written back");
	return msg[0] ? 1 : 0;
}
#endif /* PW_NO_FUSE */

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
 */
#include "tool.h"

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
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
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
	double timeout;
};

static int report_fd = -1;       /* the child's pipe to the waiting parent */
static char fuse_msg[512];       /* libfuse's last message while mounting */

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
	                "[-o ro,legacy_aops,allow_other,cache=direct|kernel,threads=N,timeout=S] "
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

/* Is path listed as a mount point in /proc/self/mountinfo (field 5, with
 * octal escapes)? */
static bool
is_mount_point(const char *path)
{
	FILE *m = fopen("/proc/self/mountinfo", "r");
	if (!m)
		return false;
	char line[4096], mp[PATH_MAX];
	bool found = false;
	while (!found && fgets(line, sizeof(line), m)) {
		char *p = line;
		for (int k = 0; k < 4 && p; k++)
			p = strchr(p, ' ') ? strchr(p, ' ') + 1 : NULL;
		if (!p)
			continue;
		size_t n = 0;
		for (; *p && *p != ' ' && n + 1 < sizeof(mp); p++) {
			if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] && p[3]) {
				mp[n++] = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
				p += 3;
			} else {
				mp[n++] = *p;
			}
		}
		mp[n] = 0;
		found = strcmp(mp, path) == 0;
	}
	fclose(m);
	return found;
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

int
cmd_mount(int argc, char **argv)
{
	struct mount_args a;
	memset(&a, 0, sizeof(a));
	parse_args(&a, argc, argv);
	if (!a.foreground)
		daemonize();
	mount_pagewright(&a);
	struct pw_fuse *f = mount_fuse(&a);
	if (report_fd >= 0) {
		ssize_t w = write(report_fd, "ok", 2);
		(void)w;
		close(report_fd);
		report_fd = -1;
		detach_stdio();
	}
	int r = pw_fuse_run(f);
	pw_fuse_destroy(f);
	if (pw_umount(ROOT) != 0) {
		int err = errno;
		fprintf(stderr, "pagewright mount: writing back %s failed: %s\n",
		        a.source[0] ? a.source : "ramfs", strerror(err));
		if (!a.foreground)
			syslog(LOG_DAEMON | LOG_ERR, "pagewright mount %s: writing back %s failed: %s",
			       a.mountpoint, a.source[0] ? a.source : "ramfs", strerror(err));
		return 1;
	}
	if (r != 0)
		fprintf(stderr, "pagewright mount: the FUSE session failed: %s\n", strerror(-r));
	return r ? 1 : 0;
}
#endif /* PW_NO_FUSE */

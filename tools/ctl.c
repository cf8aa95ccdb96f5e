/*
 * ctl.c - the control socket of a running `pagewright mount`, and the
 * mount table, through which `pagewright stat` and `pagewright umount`
 * find a server.
 *
 * Transport.  Each server listens on an abstract Unix socket (Linux's
 * namespace of socket names that are not files) named
 *
 *     "\0pagewright/" + 16 hex digits of FNV-1a 64 of the mount point
 *
 * (the absolute path).  An abstract name needs no directory to create or
 * clean up, and it disappears with the process that holds it, so a killed
 * server leaves nothing stale behind.  Anyone may try to connect, so each
 * side checks the other with SO_PEERCRED, which the kernel fills in:
 *   - the server answers only its own user and root (anyone with
 *     allow_other, as anyone may then use the mount);
 *   - a client talks only to a server running as root or as the user who
 *     mounted (mountinfo's user_id=), so another user cannot squat on the
 *     name and answer for the mount.  The server's pid comes from the
 *     kernel too, not from the server's words.
 *
 * Protocol, one request per connection, text:
 *   "stats\n"  -> "key value\n" lines (mount.c's stats_text), then EOF
 *   "sync\n"   -> pw_sync(): everything dirty written back, then "ok\n"
 *                 or "error MESSAGE\n" (syncfs(2) does not reach a FUSE
 *                 server, so `pagewright sync` asks here)
 *   "wait\n"   -> "pid N\n" at once; then, when the server has unmounted
 *                 and written everything back (or failed to), one line
 *                 "exit STATUS MESSAGE\n" and EOF.  EOF without that line
 *                 means the server died.
 *
 * One thread serves the socket; a stats reply is built from atomic
 * counters in microseconds, and a client gets one second to send its
 * request, so only a sync holds the thread for long (other requests wait
 * for it).  Waiting clients stay
 * connected (at most CTL_MAX_WAITERS) until ctl_finish.
 */
#include "ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define CTL_MAX_WAITERS 64

/* ------------------------------------------------------------ mountinfo */

/* Copy one space-separated field of mountinfo, undoing its octal escapes
 * ("\040" for a space).  Return: the text after it. */
static char *
field(char *p, char *out, size_t size)
{
	size_t n = 0;
	for (; *p && *p != ' ' && *p != '\n'; p++) {
		char c = *p;
		if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] && p[3]) {
			c = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
			p += 3;
		}
		if (n + 1 < size)
			out[n++] = c;
	}
	out[n] = 0;
	return *p == ' ' ? p + 1 : p;
}

/* Parse one line: "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [TAGS...] -
 * FSTYPE SOURCE SUPEROPTS". */
static bool
parse_line(char *line, struct mnt_entry *e)
{
	char skip[PATH_MAX], opts[1024];
	char *p = line;
	for (int k = 0; k < 4; k++)
		p = field(p, skip, sizeof(skip));
	p = field(p, e->mountpoint, sizeof(e->mountpoint));
	char *dash = strstr(p, " - ");
	if (!dash)
		return false;
	p = field(dash + 3, e->fstype, sizeof(e->fstype));
	p = field(p, e->source, sizeof(e->source));
	field(p, opts, sizeof(opts));
	char *uid = strstr(opts, "user_id=");
	e->user_id = uid ? strtol(uid + 8, NULL, 10) : -1;
	return true;
}

static int
mnt_scan(const char *path, struct mnt_entry *res,
         void (*fn)(const struct mnt_entry *e, void *arg), void *arg)
{
	FILE *m = fopen("/proc/self/mountinfo", "r");
	if (!m)
		return -errno;
	char line[3 * PATH_MAX];
	struct mnt_entry e;
	int found = 0;
	while (fgets(line, sizeof(line), m)) {
		if (!parse_line(line, &e))
			continue;
		if (path && strcmp(e.mountpoint, path) == 0) {
			*res = e; /* the last one listed is on top */
			found++;
		} else if (!path && mnt_is_pagewright(&e)) {
			fn(&e, arg);
			found++;
		}
	}
	fclose(m);
	return found;
}

int
mnt_find(const char *path, struct mnt_entry *e)
{
	int r = mnt_scan(path, e, NULL, NULL);
	return r < 0 ? r : r == 0 ? -ENOENT : 0;
}

int
mnt_each_pagewright(void (*fn)(const struct mnt_entry *e, void *arg), void *arg)
{
	return mnt_scan(NULL, NULL, fn, arg);
}

bool
mnt_is_pagewright(const struct mnt_entry *e)
{
	return strncmp(e->fstype, "fuse.pagewright", 15) == 0;
}

int
mnt_abspath(const char *arg, char *out, size_t size)
{
	char buf[PATH_MAX];
	if (realpath(arg, buf)) {
		snprintf(out, size, "%s", buf);
		return 0;
	}
	if (errno != ENOTCONN && errno != EIO)
		return -errno;
	/* A dead FUSE mount: resolve its parent, then add its name. */
	char copy[PATH_MAX];
	snprintf(copy, sizeof(copy), "%s", arg);
	size_t len = strlen(copy);
	while (len > 1 && copy[len - 1] == '/')
		copy[--len] = 0;
	char *slash = strrchr(copy, '/');
	const char *name = slash ? slash + 1 : copy;
	const char *dir = slash == copy ? "/" : slash ? (*slash = 0, copy) : ".";
	if (!realpath(dir, buf))
		return -errno;
	if (snprintf(out, size, "%s%s%s", buf, strcmp(buf, "/") ? "/" : "", name) >= (int)size)
		return -ENAMETOOLONG;
	return 0;
}

/* ------------------------------------------------------- the socket name */

static socklen_t
ctl_addr(const char *mountpoint, struct sockaddr_un *a)
{
	uint64_t h = 14695981039346656037ull;
	for (const unsigned char *p = (const unsigned char *)mountpoint; *p; p++)
		h = (h ^ *p) * 1099511628211ull;
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	int n = snprintf(a->sun_path + 1, sizeof(a->sun_path) - 1, "pagewright/%016llx",
	                 (unsigned long long)h);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

static int
peer_cred(int fd, struct ucred *cred)
{
	socklen_t len = sizeof(*cred);
	return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cred, &len) ? -errno : 0;
}

static void
set_timeouts(int fd, int seconds)
{
	struct timeval tv = {.tv_sec = seconds};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static int
send_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* ------------------------------------------------------------ the server */

static struct {
	int lfd;                     /* (C) the listening socket; -1 once stopped */
	int wake[2];                 /* (C) a pipe: a byte stops the thread */
	pthread_t thread;            /* (C) */
	bool running;                /* (C) the thread was started */
	bool allow_other;            /* (C) answer every user */
	struct ctl_ops ops;          /* (C) */
	pthread_mutex_t lock;        /* guards the waiters */
	int waiters[CTL_MAX_WAITERS]; /* (lock) clients of "wait" */
	int nwaiters;                /* (lock) */
} ctl = {.lfd = -1, .wake = {-1, -1}, .lock = PTHREAD_MUTEX_INITIALIZER};

/* Read the one-line request of a client. */
static bool
read_request(int fd, char *cmd, size_t size)
{
	size_t len = 0;
	while (len + 1 < size) {
		ssize_t n = recv(fd, cmd + len, size - 1 - len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (memchr(cmd, '\n', len))
			break;
	}
	cmd[len] = 0;
	cmd[strcspn(cmd, "\n")] = 0;
	return len > 0;
}

static void
serve_client(int fd)
{
	struct ucred cred;
	char cmd[64], buf[8192];
	if (peer_cred(fd, &cred) != 0 ||
	    (!ctl.allow_other && cred.uid != 0 && cred.uid != geteuid())) {
		send_all(fd, "error permission denied\n", 24);
		close(fd);
		return;
	}
	set_timeouts(fd, 1);
	if (!read_request(fd, cmd, sizeof(cmd))) {
		close(fd);
	} else if (strcmp(cmd, "stats") == 0) {
		size_t len = ctl.ops.stats(buf, sizeof(buf));
		send_all(fd, buf, len < sizeof(buf) ? len : sizeof(buf) - 1);
		close(fd);
	} else if (strcmp(cmd, "sync") == 0) {
		set_timeouts(fd, 0);
		int err = ctl.ops.sync();
		int len = err ? snprintf(buf, sizeof(buf), "error %s\n", strerror(-err))
		              : snprintf(buf, sizeof(buf), "ok\n");
		send_all(fd, buf, (size_t)len);
		close(fd);
	} else if (strcmp(cmd, "wait") == 0) {
		int len = snprintf(buf, sizeof(buf), "pid %ld\n", (long)getpid());
		pthread_mutex_lock(&ctl.lock);
		bool room = ctl.nwaiters < CTL_MAX_WAITERS;
		if (room && send_all(fd, buf, (size_t)len) == 0)
			ctl.waiters[ctl.nwaiters++] = fd;
		else
			close(fd);
		pthread_mutex_unlock(&ctl.lock);
	} else {
		send_all(fd, "error unknown request\n", 22);
		close(fd);
	}
}

static void *
ctl_thread(void *arg)
{
	(void)arg;
	for (;;) {
		struct pollfd p[2] = {{.fd = ctl.lfd, .events = POLLIN},
		                      {.fd = ctl.wake[0], .events = POLLIN}};
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		if (p[0].revents & POLLIN) {
			int fd = accept4(ctl.lfd, NULL, NULL, SOCK_CLOEXEC);
			if (fd >= 0)
				serve_client(fd);
		}
	}
	return NULL;
}

int
ctl_listen(const char *mountpoint, bool allow_other, const struct ctl_ops *ops, char *err,
           size_t errlen)
{
	struct sockaddr_un a;
	socklen_t len = ctl_addr(mountpoint, &a);
	int e = 0;
	ctl.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (ctl.lfd < 0 || bind(ctl.lfd, (struct sockaddr *)&a, len) != 0 ||
	    listen(ctl.lfd, 16) != 0 || pipe2(ctl.wake, O_CLOEXEC) != 0) {
		e = -errno;
		snprintf(err, errlen, "control socket for %s: %s%s", mountpoint, strerror(-e),
		         e == -EADDRINUSE ? " (another server of this mount point is still "
		                            "writing back)" : "");
		goto out_close;
	}
	ctl.allow_other = allow_other;
	ctl.ops = *ops;
	if ((e = -pthread_create(&ctl.thread, NULL, ctl_thread, NULL)) != 0) {
		snprintf(err, errlen, "control thread: %s", strerror(-e));
		goto out_close;
	}
	ctl.running = true;
	return 0;
out_close:
	if (ctl.lfd >= 0)
		close(ctl.lfd);
	ctl.lfd = -1;
	return e;
}

void
ctl_stop(void)
{
	if (!ctl.running)
		return;
	ssize_t w = write(ctl.wake[1], "x", 1);
	(void)w;
	pthread_join(ctl.thread, NULL);
	ctl.running = false;
	close(ctl.lfd);
	close(ctl.wake[0]);
	close(ctl.wake[1]);
	ctl.lfd = -1;
}

void
ctl_finish(int status, const char *msg)
{
	char line[1024];
	int len = snprintf(line, sizeof(line), "exit %d %s\n", status, msg ? msg : "");
	if (len >= (int)sizeof(line))
		len = sizeof(line) - 1, line[len - 1] = '\n';
	pthread_mutex_lock(&ctl.lock);
	for (int k = 0; k < ctl.nwaiters; k++) {
		send_all(ctl.waiters[k], line, (size_t)len);
		close(ctl.waiters[k]);
	}
	ctl.nwaiters = 0;
	pthread_mutex_unlock(&ctl.lock);
}

/* ------------------------------------------------------------ the client */

int
ctl_connect(const struct mnt_entry *e, pid_t *pid)
{
	struct sockaddr_un a;
	socklen_t len = ctl_addr(e->mountpoint, &a);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct ucred cred;
	int err = connect(fd, (struct sockaddr *)&a, len) ? -errno : peer_cred(fd, &cred);
	if (!err && cred.uid != 0 && e->user_id >= 0 && (long)cred.uid != e->user_id)
		err = -EPERM;
	if (err) {
		close(fd);
		return err;
	}
	*pid = cred.pid;
	return fd;
}

ssize_t
ctl_request(int fd, const char *cmd, char *buf, size_t size, bool first_line)
{
	char line[64];
	int n = snprintf(line, sizeof(line), "%s\n", cmd);
	set_timeouts(fd, strcmp(cmd, "sync") == 0 ? 0 : 5); /* a sync takes its time */
	if (send_all(fd, line, (size_t)n) != 0)
		return -errno;
	size_t len = 0;
	while (len + 1 < size) {
		ssize_t r = recv(fd, buf + len, first_line ? 1 : size - 1 - len, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			break;
		len += (size_t)r;
		if (first_line && buf[len - 1] == '\n')
			break;
	}
	buf[len] = 0;
	if (strncmp(buf, "error permission", 16) == 0)
		return -EACCES;
	return (ssize_t)len;
}

/*
 * umount.c - `pagewright umount [-l] MOUNTPOINT`: unmount, and wait until
 * the server has written everything back and exited.
 *
 * `fusermount3 -u` returns as soon as the kernel lets go of the mount,
 * while the server is still writing back; an image is safe to use only
 * once the server has exited.  So this command:
 *   1. asks the server, on its control socket (ctl.c), to report how it
 *      ends ("wait"); the kernel tells us the server's pid;
 *   2. unmounts: umount2() as root, `fusermount3 -u` otherwise.  A busy
 *      mount (a file or a working directory open there) is refused, as
 *      umount(8) refuses it, unless -l detaches it lazily: then the server
 *      goes on serving the open files and ends when the last is closed;
 *   3. waits for the server's last words ("exit STATUS MESSAGE"), then for
 *      its process to be gone (a pidfd), so the image's lock and
 *      descriptors are released when it returns.
 * Exit status 0 only if the server wrote everything back.  A mount whose
 * server was killed is unmounted too, with exit status 1 and a line
 * saying the image needs checking.
 */
#include "tool.h"
#include "ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

/* Run fusermount3 -u; its complaint comes back in msg.  Return: 0,
 * -EBUSY, or -EPERM with msg set. */
static int
fusermount_u(const char *path, bool lazy, char *msg, size_t size)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) != 0)
		return -errno;
	pid_t pid = fork();
	if (pid == 0) {
		dup2(p[1], 2);
		if (lazy)
			execlp("fusermount3", "fusermount3", "-u", "-z", path, (char *)NULL);
		else
			execlp("fusermount3", "fusermount3", "-u", path, (char *)NULL);
		fprintf(stderr, "cannot run fusermount3: %s", strerror(errno));
		_exit(127);
	}
	close(p[1]);
	size_t len = 0;
	ssize_t n;
	while (len + 1 < size && (n = read(p[0], msg + len, size - 1 - len)) > 0)
		len += (size_t)n;
	msg[len] = 0;
	msg[strcspn(msg, "\n")] = 0;
	close(p[0]);
	int status;
	if (pid < 0 || waitpid(pid, &status, 0) < 0)
		return -ECHILD;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	return strstr(msg, "busy") ? -EBUSY : -EPERM;
}

static int
unmount(const char *path, bool lazy, char *msg, size_t size)
{
	msg[0] = 0;
	if (geteuid() == 0 && umount2(path, lazy ? MNT_DETACH : 0) == 0)
		return 0;
	if (geteuid() == 0 && errno != EPERM)
		return -errno;
	return fusermount_u(path, lazy, msg, size);
}

/* Is pid gone (or a zombie, which holds no files)? */
static bool
gone(pid_t pid)
{
	char path[64], buf[256];
	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return true;
	bool zombie = fgets(buf, sizeof(buf), f) && strstr(buf, ") Z ") != NULL;
	fclose(f);
	return zombie;
}

/* Wait until the server's process has ended (up to 30 s). */
static void
wait_exit(int pidfd, pid_t pid)
{
	if (pidfd >= 0) {
		struct pollfd p = {.fd = pidfd, .events = POLLIN};
		while (poll(&p, 1, 30000) < 0 && errno == EINTR)
			;
		return;
	}
	for (int k = 0; k < 3000 && !gone(pid); k++)
		usleep(10000);
}

static int
open_pidfd(pid_t pid)
{
#ifdef SYS_pidfd_open
	return (int)syscall(SYS_pidfd_open, pid, 0);
#else
	(void)pid;
	return -1;
#endif
}

/* Read the server's last line ("exit STATUS MESSAGE"), saying after a
 * second what is being waited for.  Return: the status, or -1 at EOF
 * without it (the server died). */
static int
read_last_words(int fd, pid_t pid, const struct mnt_entry *e, char *msg, size_t size)
{
	struct timeval none = {0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof(none));
	struct pollfd p = {.fd = fd, .events = POLLIN};
	if (poll(&p, 1, 1000) == 0 && isatty(2))
		fprintf(stderr, "pagewright umount: waiting for the server (pid %ld) to write "
		                "back %s...\n", (long)pid, e->source);
	char buf[1024];
	size_t len = 0;
	ssize_t n;
	while (len + 1 < sizeof(buf) &&
	       ((n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0)) > 0 || (n < 0 && errno == EINTR)))
		len += n > 0 ? (size_t)n : 0;
	buf[len] = 0;
	int status, off = 0;
	if (sscanf(buf, "exit %d %n", &status, &off) < 1 || off == 0)
		return -1;
	snprintf(msg, size, "%.*s", (int)strcspn(buf + off, "\n"), buf + off);
	return status;
}

int
cmd_umount(int argc, char **argv)
{
	bool lazy = false;
	const char *arg = NULL;
	for (int k = 1; k < argc; k++) {
		if (strcmp(argv[k], "-l") == 0)
			lazy = true;
		else if (argv[k][0] == '-' || arg)
			arg = NULL, k = argc;
		else
			arg = argv[k];
	}
	if (!arg) {
		fprintf(stderr, "usage: pagewright umount [-l] MOUNTPOINT\n");
		return 2;
	}
	struct mnt_entry e;
	tool_find_mount("umount", arg, &e);
	signal(SIGPIPE, SIG_IGN);
	pid_t pid = 0;
	char line[256], msg[1024];
	int fd = ctl_connect(&e, &pid);
	if (fd >= 0 && (ctl_request(fd, "wait", line, sizeof(line), true) <= 0 ||
	                strncmp(line, "pid ", 4) != 0)) {
		close(fd);
		fd = -1;
	}
	int pidfd = fd >= 0 ? open_pidfd(pid) : -1;
	int err = unmount(e.mountpoint, lazy, msg, sizeof(msg));
	if (err == -EBUSY) {
		fprintf(stderr, "pagewright umount: %s is busy: a process has a file or its working "
		                "directory there (fuser -vm %s lists them; -l detaches it now and "
		                "waits for them)\n", e.mountpoint, e.mountpoint);
		return 1;
	}
	if (err) {
		fprintf(stderr, "pagewright umount: cannot unmount %s: %s\n", e.mountpoint,
		        msg[0] ? msg : strerror(-err));
		return 1;
	}
	if (fd < 0) {
		fprintf(stderr, "pagewright umount: unmounted %s, but its server was already gone "
		                "(killed?): what it had not written back is lost; check %s "
		                "(e2fsck -fn for an image)\n", e.mountpoint, e.source);
		return 1;
	}
	int status = read_last_words(fd, pid, &e, msg, sizeof(msg));
	close(fd);
	wait_exit(pidfd, pid);
	if (pidfd >= 0)
		close(pidfd);
	if (status < 0) {
		fprintf(stderr, "pagewright umount: the server (pid %ld) died before it finished "
		                "writing back: check %s (e2fsck -fn for an image)\n", (long)pid,
		        e.source);
		return 1;
	}
	if (status != 0) {
		fprintf(stderr, "pagewright umount: %s: %s\n", e.mountpoint, msg);
		return 1;
	}
	return 0;
}

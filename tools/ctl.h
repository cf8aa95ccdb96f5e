/*
 * ctl.h - how the pagewright command finds and talks to a running server:
 * the mount table, and each server's control socket (ctl.c has the
 * protocol).
 */
#ifndef PW_TOOL_CTL_H
#define PW_TOOL_CTL_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* ---- /proc/self/mountinfo */

struct mnt_entry {
	char mountpoint[PATH_MAX];
	char fstype[64];           /* "fuse.pagewright.ext2" for ours */
	char source[PATH_MAX];
	long user_id;              /* FUSE's user_id= option; -1 if none */
};

/* The mount on path (the topmost, if several are stacked).
 * Return: 0, or -ENOENT if nothing is mounted there. */
int mnt_find(const char *path, struct mnt_entry *e);
/* Call fn for each pagewright mount.  Return: how many there were. */
int mnt_each_pagewright(void (*fn)(const struct mnt_entry *e, void *arg), void *arg);
bool mnt_is_pagewright(const struct mnt_entry *e);
/* The absolute path of a mount point argument.  A mount whose server is
 * gone cannot be stat'ed (ENOTCONN), so on failure the parent directory is
 * resolved instead.  Return: 0 or -errno. */
int mnt_abspath(const char *arg, char *out, size_t size);

/* ---- the control socket, server side (pagewright mount) */

/* What the server does for its clients. */
struct ctl_ops {
	/* Write the "key value" lines of a stats reply; return their length. */
	size_t (*stats)(char *buf, size_t size);
	/* Write back everything (pw_sync).  Return: 0 or -errno. */
	int (*sync)(void);
};

/* Listen on the socket of mountpoint and answer from a thread.
 * Return: 0, or -errno with a reason in err. */
int ctl_listen(const char *mountpoint, bool allow_other, const struct ctl_ops *ops,
               char *err, size_t errlen);
/* Stop answering new requests; the waiting clients stay connected. */
void ctl_stop(void);
/* Tell each waiting client how the server ends ("exit STATUS MESSAGE"),
 * and disconnect it. */
void ctl_finish(int status, const char *msg);

/* ---- client side (pagewright stat, umount) */

/* Connect to the server of e, checking that it runs as the mount's owner
 * (or root).  Return: a descriptor, or -errno (-ECONNREFUSED: no server
 * listens; -EPERM: a stranger does). */
int ctl_connect(const struct mnt_entry *e, pid_t *pid);
/* Send cmd ("stats", "sync", "wait") and read the reply to its end (stats) or its
 * first line (wait).  Return: its length, or -errno. */
ssize_t ctl_request(int fd, const char *cmd, char *buf, size_t size, bool first_line);

#endif

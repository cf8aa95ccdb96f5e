/*
 * test_vfs.c - the namespace and descriptor API: errors a POSIX user
 * relies on, directories, rename, mounts, fork detachment.
 */
#include "test.h"

#include <fcntl.h>
#include <limits.h>
#include <pagewright/pagewright.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

TEST(vfs_errors)
{
	ASSERT_ERR(pw_open("/nope", O_RDONLY), ENOENT);
	ASSERT_ERR(pw_open("/nope/x", O_CREAT | O_RDWR, 0644), ENOENT);
	ASSERT_ERR(pw_open("", O_RDONLY), ENOENT);
	ASSERT_ERR(pw_close(1234), EBADF);
	ASSERT_ERR(pw_read(-1, NULL, 0), EBADF);
	ASSERT_OK(pw_mkdir("/d", 0755));
	ASSERT_ERR(pw_mkdir("/d", 0755), EEXIST);
	ASSERT_ERR(pw_open("/d", O_RDWR), EISDIR);
	int fd = pw_open("/d/f", O_CREAT | O_EXCL | O_WRONLY, 0644);
	ASSERT_GE(fd, 0);
	ASSERT_ERR(pw_open("/d/f", O_CREAT | O_EXCL | O_WRONLY, 0644), EEXIST);
	ASSERT_ERR(pw_read(fd, (char[4]){0}, 4), EBADF); /* write-only */
	ASSERT_ERR(pw_open("/d/f/x", O_RDONLY), ENOTDIR);
	ASSERT_ERR(pw_rmdir("/d"), ENOTEMPTY);
	ASSERT_ERR(pw_unlink("/d"), EISDIR);
	ASSERT_ERR(pw_rmdir("/d/f"), ENOTDIR);
	ASSERT_ERR(pw_pwrite(fd, "x", 1, -1), EINVAL);
	ASSERT_ERR(pw_lseek(fd, -5, SEEK_SET), EINVAL);
	ASSERT_ERR(pw_ftruncate(fd, -1), EINVAL);
	ASSERT_ERR(pw_write(fd, (void *)8, 10), EFAULT);
	/* A read into memory the process may not write: EFAULT, no crash. */
	ASSERT_EQ(pw_pwrite(fd, "0123456789", 10, 0), 10);
	int rfd = pw_open("/d/f", O_RDONLY);
	ASSERT_GE(rfd, 0);
	char *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT(ro != MAP_FAILED);
	ASSERT_ERR(pw_pread(rfd, ro, 10, 0), EFAULT);
	ASSERT_ERR(pw_pread(rfd, (void *)8, 10, 0), EFAULT);
	munmap(ro, 4096);
	ASSERT_OK(pw_close(rfd));
	struct iovec bad = {(void *)"x", (size_t)-1};
	ASSERT_ERR(pw_writev(fd, &bad, 1), EINVAL);
	ASSERT_ERR(pw_writev(fd, &bad, -1), EINVAL);
	ASSERT_OK(pw_close(fd));
	ASSERT_ERR(pw_mount("nofs", NULL, "/d", NULL), ENODEV);
	ASSERT_ERR(pw_umount("/d"), EINVAL);
	char longname[NAME_MAX + 3];
	memset(longname, 'a', sizeof(longname));
	longname[0] = '/';
	longname[sizeof(longname) - 1] = 0;
	ASSERT_ERR(pw_open(longname, O_CREAT | O_RDWR, 0644), ENAMETOOLONG);
}

TEST(vfs_dirs_and_rename)
{
	ASSERT_OK(pw_mkdir("/a", 0755));
	ASSERT_OK(pw_mkdir("/a/b", 0755));
	int fd = pw_open("/a/b/../b/./f", O_CREAT | O_RDWR, 0644);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(pw_write(fd, "hello", 5), 5);
	ASSERT_OK(pw_close(fd));
	ASSERT_OK(pw_rename("/a/b/f", "/a/g"));
	ASSERT_ERR(pw_stat("/a/b/f", &(struct stat){0}), ENOENT);
	struct stat st;
	ASSERT_OK(pw_stat("/a/g", &st));
	ASSERT_EQ(st.st_size, 5);
	ASSERT(S_ISREG(st.st_mode));
	ASSERT_ERR(pw_rename("/a", "/a/b/c"), EINVAL);
	ASSERT_ERR(pw_rename("/a/g", "/a/b"), EISDIR);
	PW_DIR *d = pw_opendir("/a");
	ASSERT(d != NULL);
	int seen = 0;
	struct dirent *e;
	while ((e = pw_readdir(d)) != NULL) {
		if (!strcmp(e->d_name, "g")) {
			ASSERT_EQ(e->d_type, DT_REG);
			seen |= 1;
		} else if (!strcmp(e->d_name, "b")) {
			ASSERT_EQ(e->d_type, DT_DIR);
			seen |= 2;
		} else {
			ASSERT(!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."));
		}
	}
	ASSERT_EQ(seen, 3);
	ASSERT_OK(pw_closedir(d));
	/* An open, unlinked file keeps its data until closed. */
	fd = pw_open("/a/g", O_RDONLY);
	ASSERT_GE(fd, 0);
	ASSERT_OK(pw_unlink("/a/g"));
	char buf[8] = {0};
	ASSERT_EQ(pw_pread(fd, buf, 8, 0), 5);
	ASSERT_MEM_EQ(buf, "hello", 5);
	ASSERT_OK(pw_close(fd));
	ASSERT_OK(pw_rmdir("/a/b"));
	ASSERT_OK(pw_rmdir("/a"));
}

TEST(vfs_mount_busy_and_umount)
{
	ASSERT_OK(pw_mkdir("/m", 0755));
	ASSERT_OK(pw_mount("ramfs", NULL, "/m", NULL));
	ASSERT_OK(pw_close(pw_open("/m/lower", O_CREAT | O_RDWR, 0644)));
	/* Mounts stack, as on Linux: the top one hides the lower one. */
	ASSERT_OK(pw_mount("ramfs", NULL, "/m", NULL));
	ASSERT_ERR(pw_stat("/m/lower", &(struct stat){0}), ENOENT);
	ASSERT_OK(pw_umount("/m"));
	ASSERT_OK(pw_stat("/m/lower", &(struct stat){0}));
	int fd = pw_open("/m/f", O_CREAT | O_RDWR, 0644);
	ASSERT_GE(fd, 0);
	ASSERT_ERR(pw_umount("/m"), EBUSY);
	ASSERT_ERR(pw_rmdir("/m"), EBUSY);
	ASSERT_OK(pw_close(fd));
	ASSERT_OK(pw_umount("/m"));
	ASSERT_ERR(pw_stat("/m/f", &(struct stat){0}), ENOENT);
	ASSERT_ERR(pw_umount("/m"), EINVAL);
}

/* pw_reopen: a second descriptor with other flags on the same file, also
 * once its name is gone (what a FUSE server needs for /proc/PID/fd/N). */
TEST(vfs_reopen)
{
	ASSERT_OK(pw_mkdir("/m", 0755));
	ASSERT_OK(pw_mount("ramfs", NULL, "/m", NULL));
	int fd = pw_open("/m/f", O_CREAT | O_RDWR, 0644);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(pw_write(fd, "hello", 5), 5);
	int ro = pw_open("/m/f", O_RDONLY);
	ASSERT_GE(ro, 0);
	ASSERT_OK(pw_close(fd));
	ASSERT_OK(pw_unlink("/m/f"));
	ASSERT_ERR(pw_reopen(ro, 3), EINVAL);
	ASSERT_ERR(pw_reopen(ro, O_RDONLY | O_DIRECTORY), ENOTDIR);
	ASSERT_ERR(pw_reopen(1234, O_RDONLY), EBADF);
	int rw = pw_reopen(ro, O_RDWR | O_CREAT | O_EXCL);
	ASSERT_GE(rw, 0);
	/* Its own position and access mode; the same file. */
	ASSERT_ERR(pw_write(ro, "x", 1), EBADF);
	ASSERT_EQ(pw_pwrite(rw, "J", 1, 0), 1);
	char buf[8] = {0};
	ASSERT_EQ(pw_read(ro, buf, 8), 5);
	ASSERT_MEM_EQ(buf, "Jello", 5);
	ASSERT_EQ(pw_read(rw, buf, 8), 5);
	/* Access is checked against the file's mode, as pw_open does. */
	ASSERT_OK(pw_fchmod(rw, 0444));
	pw_set_thread_creds(1000, 1000);
	ASSERT_ERR(pw_reopen(ro, O_WRONLY), EACCES);
	pw_set_thread_creds((uid_t)-1, (gid_t)-1);
	int tr = pw_reopen(ro, O_WRONLY | O_TRUNC);
	if (geteuid() == 0) {
		ASSERT_GE(tr, 0);
		struct stat st;
		ASSERT_OK(pw_fstat(ro, &st));
		ASSERT_EQ(st.st_size, 0);
		ASSERT_OK(pw_close(tr));
	}
	/* The new descriptor alone keeps the mount busy. */
	ASSERT_OK(pw_close(ro));
	ASSERT_ERR(pw_umount("/m"), EBUSY);
	ASSERT_OK(pw_close(rw));
	ASSERT_OK(pw_umount("/m"));
	ASSERT_OK(pw_rmdir("/m"));
}

TEST(vfs_fork_child_is_detached)
{
	int fd = pw_open("/f", O_CREAT | O_RDWR, 0644);
	ASSERT_GE(fd, 0);
	char page[4096];
	memset(page, 'p', sizeof(page));
	ASSERT_EQ(pw_pwrite(fd, page, 4096, 0), 4096);
	char *m = pw_mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_PTR_NE(m, MAP_FAILED);
	m[0] = 'P'; /* mapped read-write now */
	pid_t pid = fork();
	if (pid == 0) {
		/* The child sees the data, but its stores are its own. */
		if (m[0] != 'P' || m[1] != 'p')
			_exit(10);
		m[1] = 'C';
		if (pw_pwrite(fd, "c", 1, 2) != -1 || errno != EPERM)
			_exit(11);
		if (pw_open("/f", O_RDONLY) != -1 || errno != EPERM)
			_exit(12);
		_exit(0);
	}
	int status;
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT(WIFEXITED(status));
	ASSERT_EQ(WEXITSTATUS(status), 0);
	char c;
	ASSERT_EQ(pw_pread(fd, &c, 1, 1), 1);
	ASSERT_EQ(c, 'p'); /* the parent's cache is untouched */
	ASSERT_EQ(m[1], 'p');
	ASSERT_EQ(pw_pwrite(fd, "z", 1, 3), 1); /* the parent still works */
	ASSERT_EQ(m[3], 'z');
	ASSERT_OK(pw_munmap(m, 4096));
	ASSERT_OK(pw_close(fd));
}

TEST(vfs_sparse_far_offsets)
{
	int fd = pw_open("/sparse", O_CREAT | O_RDWR, 0644);
	ASSERT_GE(fd, 0);
	off_t far[] = {0, 4096 * 63, 4096 * 64, (off_t)4096 << 20, (off_t)1 << 40, ((off_t)1 << 50) + 17};
	for (size_t k = 0; k < sizeof(far) / sizeof(far[0]); k++)
		ASSERT_EQ(pw_pwrite(fd, &far[k], sizeof(far[k]), far[k]), (ssize_t)sizeof(far[k]));
	for (size_t k = 0; k < sizeof(far) / sizeof(far[0]); k++) {
		off_t v = 0;
		ASSERT_EQ(pw_pread(fd, &v, sizeof(v), far[k]), (ssize_t)sizeof(v));
		ASSERT_EQ(v, far[k]);
		char hole[16];
		if (far[k] >= 4096) {
			ASSERT_EQ(pw_pread(fd, hole, 16, far[k] - 100), 16);
			for (int j = 0; j < 16; j++)
				ASSERT_EQ(hole[j], 0);
		}
	}
	ASSERT_OK(pw_ftruncate(fd, 4096 * 64 + 3));
	off_t v = 1;
	ASSERT_EQ(pw_pread(fd, &v, sizeof(v), 4096 * 64), 3);
	ASSERT_OK(pw_close(fd));
}

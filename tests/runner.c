/*
 * runner.c - runs the registered tests, each in a forked child under a
 * timeout.  Usage: test-runner [--threaded-only] [--expect-hang] [--timeout S]
 * [substring...]
 *
 * --expect-hang is for the faulting-copy build: it runs only TF_DEADLOCK
 * tests and counts a test as passed when it hangs (is killed by the
 * timeout), which shows that the test catches the deadlock it guards.
 * A test that calls TEST_SKIP is reported as "[ SKIP ]" and counted apart;
 * when any were skipped, a line "N skipped" comes before the last line,
 * which is always "N passed, N failed".
 */
#include "test.h"

#include "internal.h"

#include <pagewright/pagewright.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static struct pw_test *tests;
static struct pw_test *current; /* the test being run (set before fork) */
static char tmpdir[256];

void
pw_test_register(struct pw_test *t)
{
	t->next = tests;
	tests = t;
}

void
pw_test_skip(const char *fmt, ...)
{
	char why[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	fprintf(stderr, "SKIP %s: %s\n", current ? current->name : "?", why);
	fflush(NULL);
	_exit(TEST_SKIP_STATUS);
}

const char *
test_tmpdir(void)
{
	return tmpdir;
}

const char *
test_kind_name(int kind)
{
	static const char *names[] = {"ramfs", "hostfs", "hostfs-legacy",
	                              "ext2", "ext2-2k", "ext2-4k"};
	return names[kind];
}

bool
test_kind_selected(int kind)
{
	const char *sel = getenv("PW_KINDS");
	if (!sel || !*sel)
		return true;
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", sel);
	for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
		if (!strcmp(tok, test_kind_name(kind)))
			return true;
	return false;
}

/* The ext2 images mounted by test_mount_kind: checked after the test. */
static struct {
	char mnt[64];
	char img[300];
} images[64];
static int nr_images;

const char *
test_mount_kind(int kind)
{
	static int n;
	static char mnt[64];
	snprintf(mnt, sizeof(mnt), "/mnt%d", n++);
	if (pw_mkdir(mnt, 0755) != 0) {
		perror("pw_mkdir");
		abort();
	}
	int r;
	if (kind == 0) {
		r = pw_mount("ramfs", NULL, mnt, NULL);
	} else if (test_kind_is_ext2(kind)) {
		/* an ext2 image <tmpdir>/host<n>.img with 1, 2 or 4 KiB blocks
		 * (a page holds four, two or one of them) */
		char img[300], cmd[400];
		snprintf(img, sizeof(img), "%s/host%d.img", tmpdir, n);
		snprintf(cmd, sizeof(cmd), "mke2fs -q -F -t ext2 -b %d '%s' 64M >/dev/null",
		         test_kind_blocksize(kind), img);
		if (system(cmd) != 0) {
			fprintf(stderr, "%s failed\n", cmd);
			abort();
		}
		r = pw_mount("ext2", img, mnt, NULL);
		if (r == 0 && nr_images < (int)(sizeof(images) / sizeof(images[0]))) {
			snprintf(images[nr_images].mnt, sizeof(images[0].mnt), "%s", mnt);
			snprintf(images[nr_images].img, sizeof(images[0].img), "%s", img);
			nr_images++;
		}
	} else {
		char host[300];
		snprintf(host, sizeof(host), "%s/host%d", tmpdir, n);
		mkdir(host, 0755);
		r = pw_mount("hostfs", host, mnt, kind == 2 ? "legacy_aops" : NULL);
	}
	if (r != 0) {
		fprintf(stderr, "mount %s failed: %s\n", test_kind_name(kind), strerror(errno));
		abort();
	}
	return mnt;
}

/* After a test: unmount the ext2 images it mounted (if it has not) and
 * check each with e2fsck -fn, which must find nothing to fix. */
static int
check_images(void)
{
	int bad = 0;
	if (nr_images)
		pw__test_release_all();
	for (int k = 0; k < nr_images; k++) {
		if (pw_umount(images[k].mnt) != 0 && errno != EINVAL) {
			fprintf(stderr, "  umount %s: %s\n", images[k].mnt, strerror(errno));
			bad++;
			continue;
		}
		char cmd[400];
		snprintf(cmd, sizeof(cmd), "e2fsck -fn '%s' >'%s.fsck' 2>&1", images[k].img,
		         images[k].img);
		if (system(cmd) != 0) {
			fprintf(stderr, "  e2fsck -fn finds %s (%s) not clean:\n", images[k].img,
			        images[k].mnt);
			snprintf(cmd, sizeof(cmd), "sed 's/^/    /' '%s.fsck' >&2", images[k].img);
			if (system(cmd) != 0)
				fprintf(stderr, "    (no e2fsck output)\n");
			bad++;
		}
	}
	return bad;
}

/* Undo the octal escapes (\040 for a space, ...) of a mountinfo field. */
static void
mountinfo_unescape(char *s)
{
	char *w = s;
	for (char *r = s; *r; w++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' &&
		    r[2] <= '7' && r[3] >= '0' && r[3] <= '7') {
			*w = (char)((r[1] - '0') << 6 | (r[2] - '0') << 3 | (r[3] - '0'));
			r += 4;
		} else {
			*w = *r++;
		}
	}
	*w = 0;
}

/* The deepest kernel mount point at or under dir, in found; false if none. */
static bool
deepest_mount_under(const char *dir, char *found, size_t n)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	if (!f)
		return false;
	size_t len = strlen(dir);
	char line[4096], mp[4096];
	found[0] = 0;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1)
			continue;
		mountinfo_unescape(mp);
		if (strncmp(mp, dir, len) == 0 && (mp[len] == '/' || mp[len] == 0) &&
		    strlen(mp) >= strlen(found) && strlen(mp) < n)
			strcpy(found, mp);
	}
	fclose(f);
	return found[0] != 0;
}

/* A test that dies while it has a kernel mount inside its tmpdir (the
 * ext2 interop tests loop-mount images there) cannot unmount it itself;
 * unmount it here, deepest first, so that rm -rf never walks into a
 * mounted filesystem and no loop device stays attached (mount -o loop
 * sets autoclear: the device detaches when the mount goes). */
static void
umount_leftovers(const char *dir)
{
	char mp[4096];
	for (int tries = 0; tries < 16 && deepest_mount_under(dir, mp, sizeof(mp)); tries++) {
		fprintf(stderr, "  runner: unmounting %s, left mounted by the test\n", mp);
		if (umount2(mp, 0) != 0 && umount2(mp, MNT_DETACH) != 0) {
			fprintf(stderr, "  runner: umount %s: %s\n", mp, strerror(errno));
			return;
		}
	}
}

static void
rm_rf(const char *path)
{
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", path);
}

/* Returns 0 passed, 1 failed, 2 timed out, 3 skipped. */
static int
run_one(struct pw_test *t, int timeout)
{
	const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	snprintf(tmpdir, sizeof(tmpdir), "%s/pwtest.%d.XXXXXX", base, (int)getpid());
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		alarm(0);
		t->fn();
		int bad = check_images();
		fflush(NULL);
		_exit(bad ? 1 : 0);
	}
	int status = 0, waited = 0, rc = 1;
	for (;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);
		if (w == pid)
			break;
		if (waited >= timeout * 20) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			rc = 2;
			goto out;
		}
		usleep(50000);
		waited++;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		rc = 0;
	else if (WIFEXITED(status) && WEXITSTATUS(status) == TEST_SKIP_STATUS)
		rc = 3;
	else if (WIFSIGNALED(status))
		fprintf(stderr, "  killed by signal %d (%s)\n", WTERMSIG(status),
		        strsignal(WTERMSIG(status)));
	else
		fprintf(stderr, "  exit status %d\n", WEXITSTATUS(status));
out:
	umount_leftovers(tmpdir);
	rm_rf(tmpdir);
	return rc;
}

static bool
selected(struct pw_test *t, int argc, char **argv, int first)
{
	if (first >= argc)
		return true;
	for (int i = first; i < argc; i++)
		if (strstr(t->name, argv[i]))
			return true;
	return false;
}

int
main(int argc, char **argv)
{
	bool threaded_only = false, expect_hang = false;
	int timeout = 120, i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--threaded-only"))
			threaded_only = true;
		else if (!strcmp(argv[i], "--expect-hang"))
			expect_hang = true;
		else if (!strcmp(argv[i], "--timeout") && i + 1 < argc)
			timeout = atoi(argv[++i]);
	}
	/* Registration order is reversed by the constructors; restore it. */
	struct pw_test *rev = NULL;
	while (tests) {
		struct pw_test *n = tests->next;
		tests->next = rev;
		rev = tests;
		tests = n;
	}
	int passed = 0, failed = 0, skipped = 0;
	for (struct pw_test *t = rev; t; t = t->next) {
		if (!selected(t, argc, argv, i))
			continue;
		if (threaded_only && !(t->flags & TF_THREADED))
			continue;
		if (expect_hang && !(t->flags & TF_DEADLOCK))
			continue;
		struct timespec a, b;
		clock_gettime(CLOCK_MONOTONIC, &a);
		fprintf(stderr, "[ RUN  ] %s\n", t->name);
		current = t;
		int rc = run_one(t, timeout);
		clock_gettime(CLOCK_MONOTONIC, &b);
		double secs = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
		if (rc == 3) {
			fprintf(stderr, "[ SKIP ] %s (%.2f s)\n", t->name, secs);
			skipped++;
			continue;
		}
		bool ok = expect_hang ? rc == 2 : rc == 0;
		if (expect_hang && rc == 2)
			fprintf(stderr, "  hung as it must: the faulting copy deadlocks "
			        "and the test's timeout catches it\n");
		else if (expect_hang)
			fprintf(stderr, "  did NOT hang: this test would not catch the deadlock\n");
		else if (rc == 2)
			fprintf(stderr, "  timed out after %d s (deadlock?)\n", timeout);
		fprintf(stderr, "[ %s ] %s (%.2f s)\n", ok ? " OK " : "FAIL", t->name, secs);
		ok ? passed++ : failed++;
	}
	if (skipped)
		printf("%d skipped\n", skipped);
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}

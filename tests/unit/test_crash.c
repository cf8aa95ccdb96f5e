/*
 * test_crash.c - crash consistency: a child process runs a workload on
 * ext2 (an image) or hostfs (a host directory) and is killed with SIGKILL
 * at a random point.  Before the kill it logs, in a host file, each file
 * whose fsync (or fdatasync) had returned.  Afterwards every logged file
 * must read back intact; an ext2 image must be repaired by e2fsck -fy to
 * a state e2fsck -fn finds clean, and then mount.
 *
 * pagewright is never started in the test process itself: a fork child
 * of a process using pagewright is detached from it (every pw_ call there
 * fails with EPERM), so the workload and the check each run in a fresh
 * child.
 */
#include "../pwt.h"

#include <stdarg.h>
#include <sys/wait.h>

enum { CRASH_ROUNDS = 4, CRASH_MAX_FILE = 96 * 1024 };

struct crash_fs {
	bool ext2;
	char src[512];  /* image or host directory */
	char log[512];  /* the child's log of what was durable */
	unsigned bs;
};

static uint64_t
crash_rng(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void
crash_mount(const struct crash_fs *c)
{
	if (pw_mkdir("/m", 0755) != 0 && errno != EEXIST)
		abort();
	if (pw_mount(c->ext2 ? "ext2" : "hostfs", c->src, "/m", NULL) != 0) {
		fprintf(stderr, "mount %s: %s\n", c->src, strerror(errno));
		_exit(3);
	}
}

static void
log_line(int logfd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void
log_line(int logfd, const char *fmt, ...)
{
	char line[128];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* one write(2) per line: a killed process leaves whole lines only */
	if (write(logfd, line, (size_t)n) != n)
		_exit(4);
}

/* The workload: new files written and fsynced, an append-only file grown
 * and fdatasynced, files unlinked, and a scratch file overwritten without
 * any sync (dirty data in flight at the kill).  Runs until killed. */
static void
crash_workload(const struct crash_fs *c, int round, uint64_t seed)
{
	crash_mount(c);
	int logfd = open(c->log, O_WRONLY | O_APPEND | O_CREAT, 0644);
	if (logfd < 0)
		_exit(5);
	unsigned char *buf = xmalloc(CRASH_MAX_FILE);
	char name[64];
	int apfd = pw_open("/m/append", O_RDWR | O_CREAT, 0644);
	int scratch = pw_open("/m/scratch", O_RDWR | O_CREAT, 0644);
	if (apfd < 0 || scratch < 0)
		_exit(6);
	/* Appends start at the size that survived the last kill: it may be
	 * past the last fdatasynced length, by an append the kill cut short
	 * whose new size reached the disk before its data (ext2 orders
	 * nothing between the two), so those bytes are unspecified. */
	off_t aplen = pw_lseek(apfd, 0, SEEK_END);
	log_line(logfd, "S %lld\n", (long long)aplen);
	for (int i = 0;; i++) {
		int id = round * 100000 + i;
		switch (crash_rng(&seed) % 4) {
		case 0: { /* a new file, fsynced */
			size_t len = (size_t)(crash_rng(&seed) % CRASH_MAX_FILE);
			pat_fill(buf, len, (unsigned)id, 0);
			snprintf(name, sizeof(name), "/m/f%d", id);
			int fd = pw_open(name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
			if (fd < 0 || pw_pwrite(fd, buf, len, 0) != (ssize_t)len)
				_exit(7);
			if (pw_fsync(fd) != 0)
				_exit(8);
			log_line(logfd, "F %d %zu\n", id, len);
			pw_close(fd);
			break;
		}
		case 1: { /* append, fdatasync: the prefix up to aplen is durable */
			size_t len = 1 + (size_t)(crash_rng(&seed) % 9000);
			pat_fill(buf, len, 7, (uint64_t)aplen);
			if (pw_pwrite(apfd, buf, len, aplen) != (ssize_t)len)
				_exit(9);
			if (pw_fdatasync(apfd) != 0)
				_exit(10);
			aplen += (off_t)len;
			log_line(logfd, "A %lld\n", (long long)aplen);
			break;
		}
		case 2: { /* unlink a file of this round */
			if (i == 0)
				break;
			int victim = round * 100000 + (int)(crash_rng(&seed) % (uint64_t)i);
			snprintf(name, sizeof(name), "/m/f%d", victim);
			/* logged first: from now on the file may be gone */
			log_line(logfd, "U %d\n", victim);
			pw_unlink(name);
			break;
		}
		default: { /* scratch overwrite, never synced */
			size_t len = (size_t)(crash_rng(&seed) % CRASH_MAX_FILE);
			off_t off = (off_t)(crash_rng(&seed) % (4 * CRASH_MAX_FILE));
			pat_fill(buf, len, 99, 0);
			pw_pwrite(scratch, buf, len, off);
			break;
		}
		}
	}
}

/* After the kill: every logged file intact.  Exits 0 if so. */
static void
crash_check(const struct crash_fs *c)
{
	crash_mount(c);
	/* no log: the child was killed before it opened it */
	FILE *lf = fopen(c->log, "r");
	if (!lf && errno != ENOENT)
		_exit(20);
	/* per file id: its fsynced length, and whether it is logged at all
	 * (1) or was unlinked since (2: it may be there or not) */
	enum { MAXID = CRASH_ROUNDS * 100000 };
	static long flen[MAXID];
	static char fstate[MAXID];
	long long aplen = 0;
	/* ranges of the append file no fdatasync covered (see "S") */
	enum { MAXGAPS = 64 };
	long long gap_from[MAXGAPS], gap_to[MAXGAPS];
	int ngaps = 0, shrunk = 0;
	char kind;
	long long a, b;
	char line[128];
	int nfiles = 0;
	while (lf && fgets(line, sizeof(line), lf)) {
		int n = sscanf(line, "%c %lld %lld", &kind, &a, &b);
		if (kind == 'F' && n == 3 && a >= 0 && a < MAXID) {
			flen[a] = (long)b;
			fstate[a] = 1;
			nfiles++;
		} else if (kind == 'U' && n >= 2 && a >= 0 && a < MAXID) {
			if (fstate[a])
				fstate[a] = 2;
		} else if (kind == 'A' && n >= 2) {
			aplen = a;
		} else if (kind == 'S' && n >= 2) {
			if (a < aplen)
				shrunk++; /* fdatasynced bytes gone */
			else if (a > aplen && ngaps < MAXGAPS) {
				gap_from[ngaps] = aplen;
				gap_to[ngaps++] = a;
			}
		}
	}
	if (lf)
		fclose(lf);
	unsigned char *want = xmalloc(CRASH_MAX_FILE), *got = xmalloc(CRASH_MAX_FILE + 1);
	char name[64];
	int bad = 0, checked = 0, stale = 0;
	for (int id = 0; id < MAXID; id++) {
		if (!fstate[id])
			continue;
		bool gone_ok = fstate[id] == 2;
		long len = flen[id];
		snprintf(name, sizeof(name), "/m/f%d", id);
		int fd = pw_open(name, O_RDONLY);
		if (fd < 0) {
			if (!gone_ok) {
				fprintf(stderr, "  f%d (fsynced, %ld bytes): %s\n", id, len, strerror(errno));
				bad++;
			}
			continue;
		}
		ssize_t r = pw_pread(fd, got, CRASH_MAX_FILE + 1, 0);
		pat_fill(want, (size_t)len, (unsigned)id, 0);
		if (r != len || memcmp(got, want, (size_t)len) != 0) {
			if (gone_ok) {
				/* Unlinked after its fsync, and the unlink did not reach
				 * the disk, but its blocks went to a newer file whose data
				 * did: ext2 without a journal, like the kernel's, orders
				 * nothing between metadata and data (docs/ext2.md). */
				stale++;
			} else {
				fprintf(stderr, "  f%d: read %zd bytes, want %ld intact\n", id, r, len);
				bad++;
			}
		}
		checked++;
		pw_close(fd);
	}
	int apfd = pw_open("/m/append", O_RDONLY);
	if (apfd >= 0) {
		unsigned char *ap = xmalloc((size_t)aplen + 1), *apw = xmalloc((size_t)aplen + 1);
		ssize_t r = pw_pread(apfd, ap, (size_t)aplen, 0);
		pat_fill(apw, (size_t)aplen, 7, 0);
		for (int g = 0; r == aplen && g < ngaps; g++) /* unspecified */
			memcpy(ap + gap_from[g], apw + gap_from[g], (size_t)(gap_to[g] - gap_from[g]));
		if (shrunk || r != aplen || memcmp(ap, apw, (size_t)aplen) != 0) {
			fprintf(stderr, "  append: read %zd of %lld fdatasynced bytes intact?\n", r, aplen);
			bad++;
		}
		free(ap);
		free(apw);
		pw_close(apfd);
	} else if (aplen > 0) {
		fprintf(stderr, "  append: %s\n", strerror(errno));
		bad++;
	}
	if (pw_umount("/m") != 0)
		bad++;
	fprintf(stderr, "  %d fsynced files logged, %d checked, append %lld bytes: %s\n", nfiles,
	        checked, aplen, bad ? "LOST DATA" : "intact");
	if (stale)
		fprintf(stderr, "  (%d unlinked files came back with newer data in their blocks)\n",
		        stale);
	_exit(bad ? 1 : 0);
}

static int
run_child(void (*fn)(const struct crash_fs *, int, uint64_t), const struct crash_fs *c,
          int round, uint64_t seed, int kill_after_ms)
{
	fflush(NULL);
	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		fn(c, round, seed);
		_exit(0);
	}
	if (kill_after_ms > 0) {
		usleep((useconds_t)kill_after_ms * 1000);
		kill(pid, SIGKILL);
	}
	int st;
	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	if (kill_after_ms > 0) {
		if (!WIFSIGNALED(st))
			fprintf(stderr, "  workload ended before the kill: status %#x\n", st);
		ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
		return 0;
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void
check_child(const struct crash_fs *c, int round, uint64_t seed)
{
	(void)round;
	(void)seed;
	crash_check(c);
}

static int
sh_status(const char *cmd)
{
	int st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void
crash_rounds(struct crash_fs *c, uint64_t seed)
{
	char cmd[2200];
	for (int round = 0; round < CRASH_ROUNDS; round++) {
		int ms = 40 + (int)(crash_rng(&seed) % 400);
		TLOG("%s: round %d, SIGKILL after %d ms", c->ext2 ? "ext2" : "hostfs", round, ms);
		run_child(crash_workload, c, round, seed + (uint64_t)round, ms);
		if (c->ext2) {
			/* e2fsck -fy: 0 clean, 1 fixed; then -fn must find nothing */
			snprintf(cmd, sizeof(cmd), "e2fsck -fy '%s' >'%s.fsck' 2>&1", c->src, c->src);
			int st = sh_status(cmd);
			if (st != 0 && st != 1) {
				snprintf(cmd, sizeof(cmd), "cat '%s.fsck' >&2", c->src);
				ASSERT_EQ(sh_status(cmd), 0);
			}
			ASSERT(st == 0 || st == 1);
			TLOG("  e2fsck -fy: %s", st ? "repaired" : "clean");
			if (st && getenv("PW_CRASH_VERBOSE")) {
				snprintf(cmd, sizeof(cmd), "head -40 '%s.fsck' >&2", c->src);
				ASSERT_EQ(sh_status(cmd), 0);
			}
			snprintf(cmd, sizeof(cmd), "e2fsck -fn '%s' >'%s.fsck' 2>&1 || { cat '%s.fsck' >&2; exit 1; }",
			         c->src, c->src, c->src);
			ASSERT_EQ(sh_status(cmd), 0);
		}
		ASSERT_EQ(run_child(check_child, c, round, 0, 0), 0);
	}
}

static uint64_t
crash_seed(void)
{
	const char *s = getenv("PW_SEED");
	uint64_t seed = s ? strtoull(s, NULL, 0) : ((uint64_t)time(NULL) << 16) ^ (uint64_t)getpid();
	TLOG("seed %llu (replay: PW_SEED=%llu)", (unsigned long long)seed, (unsigned long long)seed);
	return seed | 1;
}

TEST(crash_sigkill_ext2)
{
	uint64_t seed = crash_seed();
	for (unsigned bs = 1024; bs <= 4096; bs *= 4) {
		struct crash_fs c = {.ext2 = true, .bs = bs};
		XSNPRINTF(c.src, sizeof(c.src), "%s/crash-%u.img", test_tmpdir(), bs);
		XSNPRINTF(c.log, sizeof(c.log), "%s/crash-%u.log", test_tmpdir(), bs);
		char cmd[700];
		XSNPRINTF(cmd, sizeof(cmd), "mke2fs -q -F -t ext2 -b %u '%s' 256M", bs, c.src);
		ASSERT_EQ(sh_status(cmd), 0);
		crash_rounds(&c, seed);
	}
}

TEST(crash_sigkill_hostfs)
{
	uint64_t seed = crash_seed();
	struct crash_fs c = {.ext2 = false};
	XSNPRINTF(c.src, sizeof(c.src), "%s/crash-host", test_tmpdir());
	XSNPRINTF(c.log, sizeof(c.log), "%s/crash-host.log", test_tmpdir());
	ASSERT_OK(mkdir(c.src, 0755));
	crash_rounds(&c, seed);
}

/*
 * bench_legacy.c - writes that create page-cache pages on hostfs: the
 * write_begin/write_end path against the legacy prepare_write/commit_write
 * ("2copy") path.
 *
 * Question: what does a filesystem lose by staying on the legacy aops?
 * The 2copy loop copies the data twice whenever the target page is not
 * uptodate (user buffer -> bounce page with faults allowed, then bounce ->
 * page under the page lock); write_begin/write_end copies once.  Pages
 * that are not uptodate are exactly the ones a write creates, so:
 *
 *   append     a new host file, written from 0 to FILESZ
 *   overwrite  an existing FILESZ file whose pages are not cached: before
 *              each round it is fsynced and dropped with
 *              pw_posix_fadvise(POSIX_FADV_DONTNEED); page-aligned writes
 *              cover whole pages, so nothing is read
 *   unaligned  the same, but every write starts 2 KiB into a page, so each
 *              touched page is partly covered and must be read first
 *
 * For overwrite/unaligned the host kernel's cache of the backing file is
 * dropped too (fsync + posix_fadvise on a host descriptor), so that a page
 * pagewright must read comes from the disk, as it does for the kernel row.
 *
 * Contenders, at 4 KiB and 64 KiB per call: pagewright hostfs with the new
 * aops, pagewright hostfs mounted "legacy_aops", the kernel's write(2) /
 * pwrite(2) on the same host filesystem, and memcpy into a pre-touched
 * buffer of FILESZ (the ceiling).  The timed part is the writes only; the
 * fsync that follows is timed separately and reported in its own column.
 * Rounds alternate the contenders.
 */
#include "bench_common.h"

#include <pagewright/pagewright.h>

#include <stdbool.h>
#include <sys/stat.h>

#define FILESZ (8 * MiB)
#define ROUNDS 7

enum impl { MEMCPY, KERNEL, PW_NEW, PW_LEGACY, NIMPL };
static const char *impl_name[NIMPL] = {"memcpy", "kernel write(2)",
                                       "pw new aops", "pw legacy_aops"};
enum mode { APPEND, OVERWRITE, UNALIGNED, NMODE };
static const char *mode_name[NMODE] = {"append", "overwrite", "unaligned"};

static char hostdir[256];
static char *src;    /* the user buffer, 64 KiB */
static char *membuf; /* memcpy's destination */

/* Host path of a contender's file, and its pagewright path. */
static void
paths(enum impl im, char *host, size_t hlen, char *pw, size_t plen)
{
	static const char *sub[NIMPL] = {"", "kernel", "new", "legacy"};
	snprintf(host, hlen, "%s/%s/file", hostdir, sub[im]);
	snprintf(pw, plen, "%s/file", im == PW_NEW ? "/hn" : "/hl");
}

static void
host_drop(const char *host)
{
	int fd = open(host, O_RDONLY);
	die_if(fd < 0, host);
	die_if(fdatasync(fd) != 0, "fdatasync");
	die_if(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0, "posix_fadvise");
	close(fd);
}

/* Write [pos, pos+count*size) in size-byte calls.  Return: ns taken. */
static uint64_t
write_run(enum impl im, int fd, size_t size, size_t pos, size_t count,
          bool positional)
{
	uint64_t t0 = now_ns();
	for (size_t k = 0; k < count; k++, pos += size) {
		ssize_t r;
		switch (im) {
		case MEMCPY:
			memcpy(membuf + pos, src, size);
			clobber();
			r = (ssize_t)size;
			break;
		case KERNEL:
			r = positional ? pwrite(fd, src, size, (off_t)pos) : write(fd, src, size);
			break;
		default:
			r = positional ? pw_pwrite(fd, src, size, (off_t)pos)
			               : pw_write(fd, src, size);
			break;
		}
		if (r != (ssize_t)size)
			die("write");
	}
	return now_ns() - t0;
}

struct cell {
	double ns_call[ROUNDS], fsync_ms[ROUNDS];
	uint64_t dropped; /* pagewright: pages its DONTNEED dropped */
};

/* One round of one contender in one mode.  *fsync_ns gets the fsync time. */
static uint64_t
one_round(enum impl im, enum mode mode, size_t size, uint64_t *fsync_ns,
          uint64_t *dropped)
{
	char host[512], pw[64];
	paths(im, host, sizeof(host), pw, sizeof(pw));
	bool is_pw = im == PW_NEW || im == PW_LEGACY;
	size_t pos = mode == UNALIGNED ? 2048 : 0;
	size_t count = FILESZ / size - (mode == UNALIGNED ? 1 : 0);
	int fd = -1;
	*fsync_ns = 0;
	if (im == MEMCPY)
		return write_run(im, fd, size, pos, count, true);

	if (mode == APPEND) {
		if (is_pw) {
			if (pw_unlink(pw) != 0 && errno != ENOENT)
				die("pw_unlink");
		} else if (unlink(host) != 0 && errno != ENOENT) {
			die("unlink");
		}
		fd = is_pw ? pw_open(pw, O_WRONLY | O_CREAT | O_TRUNC, 0644)
		           : open(host, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	} else {
		host_drop(host);
		fd = is_pw ? pw_open(pw, O_WRONLY) : open(host, O_WRONLY);
		if (fd >= 0 && is_pw) {
			struct pw_stats a, b;
			pw_get_stats(&a);
			die_if(pw_posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0,
			       "pw_posix_fadvise");
			pw_get_stats(&b);
			*dropped = a.cached_pages - b.cached_pages;
			/* pagewright dropped its copy; now the host's (clean) copy. */
			host_drop(host);
		} else if (fd >= 0) {
			die_if(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0,
			       "posix_fadvise");
		}
	}
	die_if(fd < 0, is_pw ? pw : host);

	uint64_t t = write_run(im, fd, size, pos, count, mode != APPEND);
	uint64_t f0 = now_ns();
	die_if((is_pw ? pw_fsync(fd) : fsync(fd)) != 0, "fsync");
	*fsync_ns = now_ns() - f0;
	die_if((is_pw ? pw_close(fd) : close(fd)) != 0, "close");
	return t;
}

/* The FILESZ file each contender overwrites, written and synced once,
 * through pagewright for the pagewright contenders. */
static void
make_file(enum impl im)
{
	char host[512], pw[64];
	paths(im, host, sizeof(host), pw, sizeof(pw));
	bool is_pw = im == PW_NEW || im == PW_LEGACY;
	int fd = is_pw ? pw_open(pw, O_WRONLY | O_CREAT | O_TRUNC, 0644)
	               : open(host, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	die_if(fd < 0, host);
	for (size_t off = 0; off < FILESZ; off += 64 * KiB) {
		ssize_t r = is_pw ? pw_write(fd, src, 64 * KiB) : write(fd, src, 64 * KiB);
		die_if(r != (ssize_t)(64 * KiB), "write");
	}
	die_if((is_pw ? pw_fsync(fd) : fsync(fd)) != 0, "fsync");
	die_if((is_pw ? pw_close(fd) : close(fd)) != 0, "close");
}

static void
cleanup(void)
{
	static const char *sub[] = {"kernel", "new", "legacy"};
	static bool done;
	char p[512];
	if (done || !hostdir[0])
		return;
	done = true;
	pw_umount("/hn");
	pw_umount("/hl");
	for (int k = 0; k < 3; k++) {
		snprintf(p, sizeof(p), "%s/%s/file", hostdir, sub[k]);
		unlink(p);
		snprintf(p, sizeof(p), "%s/%s", hostdir, sub[k]);
		rmdir(p);
	}
	rmdir(hostdir);
}

int
main(void)
{
	bench_init();
	print_machine("bench_legacy: hostfs writes that create pages, new aops vs "
	              "legacy_aops");
	const char *tmp = getenv("TMPDIR");
	if (!tmp || !*tmp)
		tmp = "/tmp";
	snprintf(hostdir, sizeof(hostdir), "%s/pw-bench-legacy.XXXXXX", tmp);
	die_if(!mkdtemp(hostdir), "mkdtemp");
	atexit(cleanup); /* also when die() exits */
	char fstype[64] = "?";
	{
		FILE *m = fopen("/proc/self/mountinfo", "r");
		char line[1024], best[256] = "";
		size_t bestlen = 0;
		while (m && fgets(line, sizeof(line), m)) {
			char mp[256], fs[64];
			/* id parent maj:min root mountpoint opts ... - fstype src */
			if (sscanf(line, "%*s %*s %*s %*s %255s", mp) != 1)
				continue;
			char *dash = strstr(line, " - ");
			if (!dash || sscanf(dash + 3, "%63s", fs) != 1)
				continue;
			size_t l = strlen(mp);
			if (strncmp(hostdir, mp, l) == 0 &&
			    (hostdir[l] == '/' || l == 1) && l >= bestlen) {
				bestlen = l;
				snprintf(best, sizeof(best), "%s", fs);
			}
		}
		if (m)
			fclose(m);
		if (best[0])
			snprintf(fstype, sizeof(fstype), "%s", best);
	}
	printf("host directory: %s (%s); file size %lu MiB per round\n", hostdir,
	       fstype, FILESZ / MiB);
	printf("method: CLOCK_MONOTONIC around the writes of a whole file (the "
	       "fsync after them is\n        timed on its own); median of %d rounds "
	       "after 1 warm-up round, contenders alternating\n",
	       ROUNDS);
	printf("append: new file; overwrite: existing file, both caches dropped, "
	       "page-aligned writes;\nunaligned: the same with every write starting "
	       "2 KiB into a page (partial pages are read)\n"
	       "MB/s = 10^6 bytes/s of writes; 'legacy/new' = legacy rate / new "
	       "rate; 'vs kernel', 'vs memcpy' = rate / that rate\n\n");

	static const char *sub[] = {"kernel", "new", "legacy"};
	for (int k = 0; k < 3; k++) {
		char p[512];
		snprintf(p, sizeof(p), "%s/%s", hostdir, sub[k]);
		die_if(mkdir(p, 0755) != 0, p);
	}
	char hn[512], hl[512];
	snprintf(hn, sizeof(hn), "%s/new", hostdir);
	snprintf(hl, sizeof(hl), "%s/legacy", hostdir);
	die_if(pw_mkdir("/hn", 0755) != 0 || pw_mkdir("/hl", 0755) != 0, "pw_mkdir");
	if (pw_mount("hostfs", hn, "/hn", NULL) != 0 ||
	    pw_mount("hostfs", hl, "/hl", "legacy_aops") != 0) {
		fprintf(stderr, "bench: pw_mount hostfs: %s\n", strerror(errno));
		cleanup();
		return 1;
	}
	/* Fault in pool frames up front through a throw-away ramfs file: the
	 * first touch of fresh memory is dear on some VMs (tens of us a page)
	 * and is not what this program measures. */
	die_if(pw_mkdir("/m", 0755) != 0, "pw_mkdir /m");
	die_if(pw_mount("ramfs", NULL, "/m", NULL) != 0, "pw_mount ramfs");
	{
		char *z = calloc(1, MiB);
		die_if(!z, "calloc");
		int fd = pw_open("/m/warm", O_WRONLY | O_CREAT | O_TRUNC, 0600);
		die_if(fd < 0, "pw_open /m/warm");
		for (size_t off = 0; off < 8 * FILESZ; off += MiB)
			die_if(pw_write(fd, z, MiB) != (ssize_t)MiB, "pw_write");
		pw_close(fd);
		die_if(pw_unlink("/m/warm") != 0, "pw_unlink");
		free(z);
	}
	src = malloc(64 * KiB);
	membuf = malloc(FILESZ);
	die_if(!src || !membuf, "malloc");
	fill_pattern(src, 64 * KiB, 11);
	memset(membuf, 1, FILESZ);

	printf("%-9s %-7s %-15s %9s %15s %9s %10s %9s %9s %9s %9s\n", "mode", "size",
	       "contender", "MB/s", "spread MB/s", "ns/call", "legacy/new",
	       "vs kernel", "vs memcpy", "fsync ms", "dropped");
	static const size_t sizes[] = {4 * KiB, 64 * KiB};
	for (int mode = 0; mode < NMODE; mode++) {
		if (mode != APPEND)
			for (int im = KERNEL; im < NIMPL; im++)
				make_file((enum impl)im);
		for (int si = 0; si < 2; si++) {
			size_t size = sizes[si];
			size_t count = FILESZ / size - (mode == UNALIGNED ? 1 : 0);
			struct cell cell[NIMPL];
			memset(cell, 0, sizeof(cell));
			for (int r = -1; r < ROUNDS; r++) {
				for (int im = 0; im < NIMPL; im++) {
					uint64_t fs = 0, dropped = 0;
					uint64_t t = one_round((enum impl)im, (enum mode)mode, size, &fs,
					                       &dropped);
					if (r < 0)
						continue;
					cell[im].ns_call[r] = (double)t / (double)count;
					cell[im].fsync_ms[r] = (double)fs / 1e6;
					cell[im].dropped = dropped;
				}
			}
			struct sample s[NIMPL], f[NIMPL];
			for (int im = 0; im < NIMPL; im++) {
				s[im] = summarise(cell[im].ns_call, ROUNDS);
				f[im] = summarise(cell[im].fsync_ms, ROUNDS);
			}
			char b[32];
			for (int im = 0; im < NIMPL; im++) {
				char spread[40], lr[16] = "", fsy[16] = "-", cb[24] = "-";
				snprintf(spread, sizeof(spread), "%.0f..%.0f",
				         mb_per_s(size, s[im].max), mb_per_s(size, s[im].min));
				if (im == PW_LEGACY)
					snprintf(lr, sizeof(lr), "%.2fx", s[PW_NEW].med / s[im].med);
				if (im != MEMCPY)
					snprintf(fsy, sizeof(fsy), "%.1f", f[im].med);
				if ((im == PW_NEW || im == PW_LEGACY) && mode != APPEND)
					snprintf(cb, sizeof(cb), "%llu",
					         (unsigned long long)cell[im].dropped);
				printf("%-9s %-7s %-15s %9.0f %15s %9.0f %10s %8.2fx %8.2fx %9s "
				       "%9s\n",
				       mode_name[mode], size_name(size, b, sizeof(b)), impl_name[im],
				       mb_per_s(size, s[im].med), spread, s[im].med, lr,
				       s[KERNEL].med / s[im].med, s[MEMCPY].med / s[im].med, fsy, cb);
			}
			printf("\n");
			fflush(stdout);
		}
	}
	printf("'dropped' = cached pages pw_posix_fadvise(DONTNEED) dropped before "
	       "the last round (the file has %lu;\n  an unaligned 64 KiB pass never "
	       "touches the last 15, so they were not cached)\n",
	       FILESZ / 4096);
	struct pw_stats st;
	pw_get_stats(&st);
	printf("pagewright totals: misses=%llu write_retries=%llu "
	       "short_copies=%llu\n",
	       (unsigned long long)st.misses, (unsigned long long)st.write_retries,
	       (unsigned long long)st.short_copies);
	cleanup();
	free(src);
	free(membuf);
	return 0;
}

/*
 * fuzz_ext2.c - libFuzzer harness over ext2 mount and lookup.
 *
 * Each input is a disk image.  It is mounted read-only, the whole tree is
 * walked (readdir, lstat, readlink and stat of symlinks, open, read, a
 * mapped read of each file's first page), and unmounted.  A corrupt
 * image must give errors, never a crash, a hang or an out-of-bounds
 * access (run under ASan+UBSan).
 *
 * Built two ways (Makefile): with clang's -fsanitize=fuzzer for fuzzing
 * (make fuzz), and with a small main() that replays files given on the
 * command line, for the corpus check in make test.
 */
#include <errno.h>
#include <fcntl.h>
#include <pagewright/pagewright.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MAX_DEPTH 6
#define MAX_ENTRIES 256
#define MAX_READ (4u << 20) /* bytes read of each file */

static char image[256];

static void
walk(const char *dir, int depth)
{
	PW_DIR *d = pw_opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	int n = 0;
	while ((e = pw_readdir(d)) != NULL && n++ < MAX_ENTRIES) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char path[1024];
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		struct stat st;
		if (pw_lstat(path, &st) != 0)
			continue;
		/* Extended attributes: every name listed, each value read. */
		char names[4096], value[4096];
		ssize_t nl = pw_llistxattr(path, names, sizeof(names));
		for (ssize_t at = 0; at < nl; at += (ssize_t)strlen(names + at) + 1)
			(void)pw_lgetxattr(path, names + at, value, sizeof(value));
		if (S_ISLNK(st.st_mode)) {
			/* Read the target, and follow it once (never walked into:
			 * a link to "." would make the walk a fan). */
			char target[4096];
			(void)pw_readlink(path, target, sizeof(target));
			(void)pw_stat(path, &st);
			continue;
		}
		if (S_ISDIR(st.st_mode)) {
			if (depth < MAX_DEPTH)
				walk(path, depth + 1);
			continue;
		}
		int fd = pw_open(path, O_RDONLY);
		if (fd < 0)
			continue;
		/* The first MAX_READ bytes: a mutated size can make a sparse
		 * file of gigabytes, and reading all of it tests nothing more. */
		static char buf[65536];
		for (size_t got = 0; got < MAX_READ && pw_read(fd, buf, sizeof(buf)) > 0;)
			got += sizeof(buf);
		if (S_ISREG(st.st_mode) && st.st_size > 0) {
			volatile char *m = pw_mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
			if (m != MAP_FAILED) {
				/* A failed read turns into SIGBUS in a real program;
				 * the walk only reads what pread could read. */
				char c;
				if (pw_pread(fd, &c, 1, 0) == 1)
					(void)m[0];
				pw_munmap((void *)m, 4096);
			}
		}
		pw_close(fd);
	}
	pw_closedir(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	if (!ready) {
		snprintf(image, sizeof(image), "%s/pw-fuzz-%d.img",
		         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
		pw_mkdir("/fz", 0755);
		/* Bounded memory, so that libFuzzer's RSS limit measures leaks,
		 * not the page cache. */
		pw_set_mem_limit(64 << 20);
		ready = true;
	}
	int fd = open(image, O_CREAT | O_RDWR | O_TRUNC, 0600);
	if (fd < 0)
		return 0;
	if (write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return 0;
	}
	close(fd);
	if (pw_mount("ext2", image, "/fz", "ro") == 0) {
		walk("/fz", 0);
		if (pw_umount("/fz") != 0)
			fprintf(stderr, "fuzz: umount failed: %s\n", strerror(errno));
	}
	unlink(image);
	return 0;
}

#ifndef PW_LIBFUZZER
/* Replay: fuzz_ext2 FILE...  Prints "N passed, N failed" (a file fails
 * only by crashing, which ends the program). */
int
main(int argc, char **argv)
{
	int n = 0;
	for (int k = 1; k < argc; k++) {
		FILE *f = fopen(argv[k], "rb");
		if (!f)
			continue;
		static uint8_t buf[16 << 20];
		size_t len = fread(buf, 1, sizeof(buf), f);
		fclose(f);
		LLVMFuzzerTestOneInput(buf, len);
		n++;
	}
	printf("replayed %d images\n", n);
	return 0;
}
#endif

/*
 * test.h - the test framework.  Each test is a function declared with
 * TEST(name) (or TEST_THREADED(name) for multi-threaded tests, which also
 * run under ThreadSanitizer); it registers itself.  The runner runs every
 * test in its own child process under a timeout, so a crash or a deadlock
 * fails that test only.  ASSERT_* print both operands and abort.
 * A test that needs what the machine may lack (root, loop devices, a
 * kernel filesystem) ends with TEST_SKIP("why"): it is then counted as
 * skipped, neither passed nor failed.
 */
#ifndef PW_TEST_H
#define PW_TEST_H

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TF_THREADED 0x1  /* also run in the TSan build */
#define TF_DEADLOCK 0x2  /* must hang in the faulting-copy build */

struct pw_test {
	const char *name;
	void (*fn)(void);
	unsigned flags;
	struct pw_test *next;
};
void pw_test_register(struct pw_test *t);

/* Print "SKIP <test>: <reason>" and end the running test as skipped (the
 * child exits with TEST_SKIP_STATUS).  Call it before the test has changed
 * anything it would have to undo. */
#define TEST_SKIP_STATUS 77
void pw_test_skip(const char *fmt, ...)
	__attribute__((noreturn, format(printf, 1, 2)));
#define TEST_SKIP(...) pw_test_skip(__VA_ARGS__)

#define TEST_FLAGS(tname, tflags)                                        \
	static void test_##tname(void);                                      \
	static struct pw_test test_reg_##tname = {#tname, test_##tname, tflags, 0}; \
	__attribute__((constructor)) static void test_ctor_##tname(void) {   \
		pw_test_register(&test_reg_##tname);                             \
	}                                                                    \
	static void test_##tname(void)
#define TEST(name) TEST_FLAGS(name, 0)
#define TEST_THREADED(name) TEST_FLAGS(name, TF_THREADED)
#define TEST_DEADLOCK(name) TEST_FLAGS(name, TF_THREADED | TF_DEADLOCK)

#define ASSERT_CMP(a, op, b, T, fmt)                                           \
	do {                                                                       \
		T a_ = (a);                                                            \
		T b_ = (b);                                                            \
		if (!(a_ op b_)) {                                                     \
			fprintf(stderr, "%s:%d: ASSERT(%s %s %s) failed: (" fmt ") vs (" fmt \
			        ") errno=%d (%s)\n",                                       \
			        __FILE__, __LINE__, #a, #op, #b, a_, b_, errno,            \
			        strerror(errno));                                          \
			abort();                                                           \
		}                                                                      \
	} while (0)
#define ASSERT_EQ(a, b) ASSERT_CMP(a, ==, b, int64_t, "%" PRId64)
#define ASSERT_NE(a, b) ASSERT_CMP(a, !=, b, int64_t, "%" PRId64)
#define ASSERT_LT(a, b) ASSERT_CMP(a, <, b, int64_t, "%" PRId64)
#define ASSERT_LE(a, b) ASSERT_CMP(a, <=, b, int64_t, "%" PRId64)
#define ASSERT_GT(a, b) ASSERT_CMP(a, >, b, int64_t, "%" PRId64)
#define ASSERT_GE(a, b) ASSERT_CMP(a, >=, b, int64_t, "%" PRId64)
#define ASSERT_OK(a) ASSERT_EQ(a, 0)
#define ASSERT_PTR_EQ(a, b) ASSERT_CMP(a, ==, b, const void *, "%p")
#define ASSERT_PTR_NE(a, b) ASSERT_CMP(a, !=, b, const void *, "%p")
#define ASSERT(x)                                                              \
	do {                                                                       \
		if (!(x)) {                                                            \
			fprintf(stderr, "%s:%d: ASSERT(%s) failed, errno=%d (%s)\n",       \
			        __FILE__, __LINE__, #x, errno, strerror(errno));           \
			abort();                                                           \
		}                                                                      \
	} while (0)
/* -1 with the given errno */
#define ASSERT_ERR(expr, err)                                                  \
	do {                                                                       \
		errno = 0;                                                             \
		int64_t r_ = (int64_t)(expr);                                          \
		int e_ = errno;                                                        \
		if (r_ != -1 || e_ != (err)) {                                         \
			fprintf(stderr, "%s:%d: %s = %" PRId64 " errno %d (%s), want -1 errno %d (%s)\n", \
			        __FILE__, __LINE__, #expr, r_, e_, strerror(e_), (err),    \
			        strerror(err));                                            \
			abort();                                                           \
		}                                                                      \
	} while (0)
#define ASSERT_MEM_EQ(a, b, n)                                                 \
	do {                                                                       \
		const unsigned char *pa_ = (const void *)(a), *pb_ = (const void *)(b); \
		size_t n_ = (n);                                                       \
		for (size_t k_ = 0; k_ < n_; k_++)                                     \
			if (pa_[k_] != pb_[k_]) {                                          \
				fprintf(stderr, "%s:%d: %s and %s differ at byte %zu of %zu: " \
				        "0x%02x vs 0x%02x\n", __FILE__, __LINE__, #a, #b, k_,  \
				        n_, pa_[k_], pb_[k_]);                                 \
				abort();                                                       \
			}                                                                  \
	} while (0)

/* A fresh empty host directory for this test (removed by the runner). */
const char *test_tmpdir(void);
/* Mount a filesystem of each kind for the scenario tests:
 * kind 0 ramfs, 1 hostfs, 2 hostfs with legacy_aops, 3/4/5 ext2 on a
 * fresh 64 MiB image with 1/2/4 KiB blocks.  Returns the mount point
 * ("/mntN") inside pagewright's namespace.  After the test the runner
 * unmounts every ext2 image mounted this way and fails the test unless
 * e2fsck -fn finds it clean.  The scenario tests run the kinds below
 * TEST_FS_KINDS that the environment selects: PW_KINDS=ext2,hostfs runs
 * only those (names as test_kind_name). */
#ifndef TEST_FS_KINDS
#define TEST_FS_KINDS 6
#endif
const char *test_mount_kind(int kind);
const char *test_kind_name(int kind);
bool test_kind_selected(int kind);
static inline bool test_kind_is_ext2(int kind) { return kind >= 3; }
static inline int test_kind_blocksize(int kind) { return 1024 << (kind - 3); }
/* Print a line into the test log. */
#define TLOG(...) (fprintf(stderr, "  " __VA_ARGS__), fputc('\n', stderr))

#endif

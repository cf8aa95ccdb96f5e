/*
 * rops.h - the random numbers, lengths and bytes of the random exercisers
 * (tests/stress/test_random.c in-process, tests/fuse/fuse_random.c through
 * a mount), so that both draw the same kinds of operations.
 *
 * Include it after defining PG (the page size) and struct rthread, which
 * must have a member `uint64_t rng` (the thread's generator state).
 */
#ifndef PW_TESTS_ROPS_H
#define PW_TESTS_ROPS_H

#include <stddef.h>
#include <stdint.h>

/* splitmix64 */
static uint64_t
rnd(struct rthread *t)
{
	uint64_t z = (t->rng += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static size_t
rn(struct rthread *t, size_t n)
{
	return n ? (size_t)(rnd(t) % n) : 0;
}

/* A length: mostly small, sometimes pages. */
static size_t
rlen(struct rthread *t)
{
	switch (rn(t, 4)) {
	case 0: return 1 + rn(t, 16);
	case 1: return 1 + rn(t, PG);
	case 2: return PG * (1 + rn(t, 2)) + rn(t, 3) - 1;
	default: return 1 + rn(t, 3 * PG);
	}
}

static void
rfill(struct rthread *t, unsigned char *b, size_t n)
{
	uint64_t x = rnd(t);
	for (size_t i = 0; i < n; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		b[i] = (unsigned char)(x >> 56);
	}
}

#endif

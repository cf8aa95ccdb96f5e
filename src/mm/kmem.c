/*
 * kmem.c - a small allocator that never calls malloc.
 *
 * The page-fault handler runs inside a SIGSEGV handler that may have
 * interrupted the application in the middle of malloc (a realloc of a
 * mapped buffer, say), so nothing it calls may use malloc.  It still needs
 * memory: radix-tree nodes for the page-cache index, and later buffer
 * heads.  This allocator carves power-of-two objects out of 64 KiB chunks
 * obtained with mmap and keeps a free list per size class.
 *
 * Inodes (struct inode, ext2's inode info) come from here too, though
 * nothing in the fault handler allocates one: each class has a chunk the
 * pool's warmer touched ahead, and a FUSE create otherwise paid for the
 * first touch of malloc's fresh heap (a page fault every few files).
 *
 * Invariants:
 *  (1) A freed object returns to the list of its size class; memory is
 *      never returned to the kernel (the classes are small and few).
 *  (2) The class lock is a spin lock held only for list operations, never
 *      while touching user memory, so a fault cannot interrupt its holder
 *      on the same thread.
 */
#include "internal.h"

#include <string.h>
#include <sys/mman.h>

/*
 * Under AddressSanitizer a free object is poisoned, so a use after
 * pw__kfree is reported as it would be after free(3).  The free-list
 * link lives in the poisoned object: it is written before the poisoning
 * and read after the unpoisoning, both under the class lock.  And the
 * chunks are roots for LeakSanitizer, which does not look into mmap'd
 * memory by itself: an inode here holds malloc'd memory (ramfs's
 * directory entries), which it would otherwise report as leaked.
 */
#if defined(__SANITIZE_ADDRESS__)
#define KMEM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KMEM_ASAN 1
#endif
#endif
#ifdef KMEM_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/lsan_interface.h>
#define kmem_poison(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define kmem_unpoison(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#define kmem_root(p, n) __lsan_register_root_region(p, n)
#define kmem_unroot(p, n) __lsan_unregister_root_region(p, n)
#else
#define kmem_poison(p, n) ((void)(p), (void)(n))
#define kmem_unpoison(p, n) ((void)(p), (void)(n))
#define kmem_root(p, n) ((void)(p), (void)(n))
#define kmem_unroot(p, n) ((void)(p), (void)(n))
#endif

#define KMEM_MIN_SHIFT 5  /* 32 bytes */
#define KMEM_MAX_SHIFT 12 /* 4096 bytes */
#define KMEM_CHUNK (64 * 1024)

struct kmem_free {
	struct kmem_free *next;
};

struct kmem_class {
	atomic_flag lock;
	struct kmem_free *free; /* (lock) */
	_Atomic(char *) spare;  /* a chunk the pool's warmer touched ahead */
	_Atomic bool wanted;    /* the class has refilled: keep it a spare */
};

static struct kmem_class classes[KMEM_MAX_SHIFT - KMEM_MIN_SHIFT + 1];

static unsigned
size_class(size_t size)
{
	unsigned shift = KMEM_MIN_SHIFT;
	while (((size_t)1 << shift) < size)
		shift++;
	return shift - KMEM_MIN_SHIFT;
}

/* The object size of class k. */
static size_t
class_objsize(unsigned k)
{
	return (size_t)1 << (k + KMEM_MIN_SHIFT);
}

static void
class_lock(struct kmem_class *c)
{
	while (atomic_flag_test_and_set_explicit(&c->lock, memory_order_acquire))
		;
}

static void
class_unlock(struct kmem_class *c)
{
	atomic_flag_clear_explicit(&c->lock, memory_order_release);
}

/*
 * Refill a class from a fresh chunk; called with the class lock held.
 * The chunk is the spare the pool's warmer touched ahead if there is one:
 * on hypervisors with shadow page tables the first touch of each page of
 * a fresh chunk costs about 10 us (a page fault and the hypervisor's
 * part), 16 of them at once for 64 KiB, here under the class lock, and a
 * small file takes a 1 KiB index node (pool.c, "The warmer").
 */
static int
class_refill(struct kmem_class *c, size_t objsize)
{
	char *chunk = atomic_exchange_explicit(&c->spare, NULL, memory_order_acquire);
	if (!chunk) {
		chunk = mmap(NULL, KMEM_CHUNK, PROT_READ | PROT_WRITE,
		             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (chunk == MAP_FAILED)
			return -1;
	}
	kmem_root(chunk, KMEM_CHUNK);
	for (size_t off = 0; off + objsize <= KMEM_CHUNK; off += objsize) {
		struct kmem_free *f = (struct kmem_free *)(chunk + off);
		f->next = c->free;
		c->free = f;
		kmem_poison(f, objsize);
	}
	atomic_store_explicit(&c->wanted, true, memory_order_relaxed);
	pw__pool_warm_wake();
	return 0;
}

/**
 * pw__kmem_fill_spares - give each class that has refilled a spare chunk,
 * its pages touched.  Context: the pool's warmer only (no lock held).
 */
void
pw__kmem_fill_spares(void)
{
	for (unsigned k = 0; k < sizeof(classes) / sizeof(classes[0]); k++) {
		struct kmem_class *c = &classes[k];
		if (!atomic_load_explicit(&c->wanted, memory_order_relaxed) ||
		    atomic_load_explicit(&c->spare, memory_order_relaxed))
			continue;
		char *chunk = mmap(NULL, KMEM_CHUNK, PROT_READ | PROT_WRITE,
		                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (chunk == MAP_FAILED)
			return;
		for (size_t off = 0; off < KMEM_CHUNK; off += PAGE_SIZE)
			((volatile char *)chunk)[off] = 0;
		char *none = NULL;
		if (!atomic_compare_exchange_strong_explicit(&c->spare, &none, chunk,
		                                             memory_order_release,
		                                             memory_order_relaxed))
			munmap(chunk, KMEM_CHUNK);
	}
}

/**
 * pw__kzalloc - allocate zeroed memory without malloc.
 * Context: any, including the fault handler.  Return: NULL on ENOMEM.
 */
void *
pw__kzalloc(size_t size)
{
	if (size > ((size_t)1 << KMEM_MAX_SHIFT)) {
		void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			return NULL;
		kmem_root(p, size);
		return p;
	}
	unsigned k = size_class(size);
	struct kmem_class *c = &classes[k];
	size_t objsize = class_objsize(k);
	class_lock(c);
	if (c->free == NULL && class_refill(c, objsize) != 0) {
		class_unlock(c);
		return NULL;
	}
	struct kmem_free *f = c->free;
	kmem_unpoison(f, objsize);
	c->free = f->next;
	class_unlock(c);
	memset(f, 0, objsize);
	return f;
}

void
pw__kfree(void *p, size_t size)
{
	if (p == NULL)
		return;
	if (size > ((size_t)1 << KMEM_MAX_SHIFT)) {
		kmem_unroot(p, size);
		munmap(p, size);
		return;
	}
	unsigned k = size_class(size);
	struct kmem_class *c = &classes[k];
	struct kmem_free *f = p;
	class_lock(c);
	f->next = c->free;
	c->free = f;
	kmem_poison(f, class_objsize(k));
	class_unlock(c);
}

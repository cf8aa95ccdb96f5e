/*
 * iov_iter.c - the source or destination of a read or write: a vector of
 * user (or, for kernel-style callers, library) buffers and a position in
 * it (SPEC section 5).
 *
 * Invariant: when count > 0, iov points at a segment with bytes left; the
 * iterator steps over zero-length segments eagerly, in init and advance,
 * so single_seg_count() is never 0 while bytes remain (the 2.6.24
 * livelock, where a zero-length segment made the fallback retry with
 * bytes = 0 forever).
 */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

static void
skip_empty(struct iov_iter *i)
{
	while (i->count > 0 && i->nr_segs > 0 && i->iov_offset == i->iov->iov_len) {
		i->iov++;
		i->nr_segs--;
		i->iov_offset = 0;
	}
}

void
iov_iter_init(struct iov_iter *i, const struct iovec *iov,
              unsigned long nr_segs, size_t count, size_t written)
{
	i->iov = iov;
	i->nr_segs = nr_segs;
	i->iov_offset = 0;
	i->count = count + written;
	i->kernel = false;
	iov_iter_advance(i, written);
}

void
iov_iter_advance(struct iov_iter *i, size_t bytes)
{
	if (bytes > i->count)
		bytes = i->count;
	i->count -= bytes;
	while (bytes > 0 && i->nr_segs > 0) {
		size_t left = i->iov->iov_len - i->iov_offset;
		if (left == 0) {
			i->iov++;
			i->nr_segs--;
			i->iov_offset = 0;
			continue;
		}
		size_t step = PW_MIN(left, bytes);
		i->iov_offset += step;
		bytes -= step;
	}
	skip_empty(i);
}

size_t
iov_iter_single_seg_count(const struct iov_iter *i)
{
	if (i->nr_segs == 1 || i->count == 0)
		return i->count;
	return PW_MIN(i->count, i->iov->iov_len - i->iov_offset);
}

/**
 * iov_iter_fault_in_readable - prefault up to bytes of the current
 * segment (only that segment: callers must not depend on more).
 * Context: faults enabled, no page lock held.
 * Return: the readable prefix of min(bytes, rest of the segment); 0 if
 * not even the first byte is readable.
 */
size_t
iov_iter_fault_in_readable(struct iov_iter *i, size_t bytes)
{
	size_t n = PW_MIN(bytes, iov_iter_single_seg_count(i));
	if (i->kernel || n == 0)
		return n;
	const char *base = (const char *)i->iov->iov_base + i->iov_offset;
	return fault_in_readable_prefix(base, n);
}

/* Copy up to bytes from the iterator's position without advancing it;
 * stops at the first fault.  dst is library memory. */
static size_t
copy_in(char *dst, const struct iov_iter *i, size_t bytes)
{
	const struct iovec *iov = i->iov;
	size_t off = i->iov_offset, done = 0;
	bytes = PW_MIN(bytes, i->count);
	for (unsigned long seg = 0; done < bytes && seg < i->nr_segs; seg++, iov++) {
		size_t n = PW_MIN(iov->iov_len - off, bytes - done);
		const char *src = (const char *)iov->iov_base + off;
		off = 0;
		if (n == 0)
			continue;
		if (i->kernel) {
			memcpy(dst + done, src, n);
			done += n;
			continue;
		}
		size_t left = copy_from_user(dst + done, src, n);
		done += n - left;
		if (left)
			break;
	}
	return done;
}

/**
 * iov_iter_copy_from_user_atomic - copy into a locked page.
 * Context: faults disabled (pagefault_disable), so a copy that meets a
 * page that is not present stops short instead of sleeping.  Crosses
 * segments; never zeroes what it did not copy; never advances.
 * Return: bytes copied.
 */
size_t
iov_iter_copy_from_user_atomic(struct page *page, struct iov_iter *i,
                               unsigned long offset, size_t bytes)
{
	pw__page_populate_copy(page);
	size_t done = copy_in((char *)page_address(page) + offset, i, bytes);
	if (done < PW_MIN(bytes, i->count))
		PW_STAT_ADD(short_copies, 1);
	return done;
}

/**
 * copy_page_to_iter - copy out of a page into the iterator and advance.
 * Context: faults enabled; the caller holds a reference but no lock.
 * Return: bytes copied (short at a bad address).
 */
size_t
copy_page_to_iter(struct page *page, size_t offset, size_t bytes,
                  struct iov_iter *i)
{
	pw__page_populate_copy(page);
	const char *src = (const char *)page_address(page) + offset;
	size_t done = 0;
	bytes = PW_MIN(bytes, i->count);
	while (done < bytes) {
		size_t n = PW_MIN(i->iov->iov_len - i->iov_offset, bytes - done);
		char *dst = (char *)i->iov->iov_base + i->iov_offset;
		size_t left = 0;
		if (i->kernel)
			memcpy(dst, src + done, n);
		else
			left = copy_to_user(dst, src + done, n);
		iov_iter_advance(i, n - left);
		done += n - left;
		if (left)
			break;
	}
	return done;
}

/**
 * generic_segment_checks - validate a user vector (SPEC section 5).
 * A negative (as ssize_t) or wrapping length is -EINVAL; the vector is cut
 * at a later segment with a bad address (-EFAULT only if the first one is
 * bad and non-empty).  Return: 0 or -errno; *count is the total.
 */
int
generic_segment_checks(const struct iovec *iov, unsigned long *nr_segs,
                       size_t *count)
{
	size_t total = 0;
	for (unsigned long seg = 0; seg < *nr_segs; seg++) {
		ssize_t len = (ssize_t)iov[seg].iov_len;
		if (len < 0 || total + (size_t)len > SSIZE_MAX)
			return -EINVAL;
		total += (size_t)len;
	}
	*count = total;
	return 0;
}

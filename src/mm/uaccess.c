/*
 * uaccess.c - touching user memory: copies that may fault, atomic copies,
 * pagefault_disable(), prefaulting, and the SIGSEGV handler that serves
 * page faults on pagewright mappings.
 *
 * Every copy between library memory and user memory goes through one
 * routine, pw__copy_user, a "rep movsb".  The instruction is restartable:
 * when it faults, RCX holds the bytes not yet copied and RSI/RDI point at
 * the faulting position.  That gives the kernel's exception-table fixup
 * for free: the SIGSEGV handler either serves the fault (and the
 * instruction resumes where it stopped) or moves RIP to pw__copy_fixup,
 * which returns RCX, the bytes left.  No setjmp, no per-byte loop.
 *
 * The handler's decision:
 *
 *   fault at pw__copy_insn, faults disabled   -> fixup (short copy)
 *   address in a pagewright mapping           -> serve it; if it cannot be
 *                                                served: fixup if in a copy,
 *                                                else SIGBUS/SIGSEGV to the app
 *   fault at pw__copy_insn, foreign address   -> fixup (EFAULT, short count)
 *   anything else                             -> the previous handler
 *
 * Rules for the handler (DESIGN.md): it never calls malloc; it never waits
 * for a lock that a thread may hold while touching user memory with faults
 * enabled; it passes faults that are not ours to the handler installed
 * before it, so sanitizers and runtimes keep working.
 *
 * pagefault_disable() is a thread-local counter.  The deadlocks it
 * prevents (SPEC section 1), as call chains:
 *
 *   same page:  pw_write -> generic_perform_write -> write_begin
 *               [lock_page(P)] -> copy from a mapping of P -> SIGSEGV ->
 *               pw__handle_mm_fault -> lock_page(P)          (self-deadlock)
 *   ABBA:       T1: write_begin [lock A] -> copy from map of B -> fault ->
 *                   lock_page(B)
 *               T2: write_begin [lock B] -> copy from map of A -> fault ->
 *                   lock_page(A)
 *
 * With faults disabled the copy returns short instead, write_end accepts
 * what it can, and generic_perform_write prefaults again with no page
 * locked.  The test-only build PW_TEST_FAULTING_COPY ignores
 * pagefault_disable(), and the deadlock tests must hang in it.
 */
#include "internal.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#if !defined(__x86_64__)
#error "pagewright's user-copy fixups are written for x86-64"
#endif

/*
 * size_t pw__copy_user(void *dst, const void *src, size_t n): bytes NOT
 * copied.  A loop of 64-byte SSE2 moves does the bulk (measurably faster
 * than "rep movsb" for page-sized copies on the development machines),
 * "rep movsb" the tail.  The loop advances RSI/RDI/RCX only after all
 * four stores of a block, so a fault anywhere inside it can resume at
 * pw__copy_insn with the registers as they are: the rep movsb redoes the
 * block byte by byte and stops exactly at the faulting byte.
 */
size_t pw__copy_user(void *dst, const void *src, size_t n);
extern const char pw__copy_vec_start[], pw__copy_vec_end[];
extern const char pw__copy_insn[], pw__copy_fixup[];
__asm__(".text\n"
        ".globl pw__copy_user\n"
        ".type pw__copy_user, @function\n"
        "pw__copy_user:\n"
        "	movq %rdx, %rcx\n"
        "	cmpq $64, %rcx\n"
        "	jb pw__copy_insn\n"
        ".globl pw__copy_vec_start\n"
        "pw__copy_vec_start:\n"
        "	movdqu (%rsi), %xmm0\n"
        "	movdqu 16(%rsi), %xmm1\n"
        "	movdqu 32(%rsi), %xmm2\n"
        "	movdqu 48(%rsi), %xmm3\n"
        "	movdqu %xmm0, (%rdi)\n"
        "	movdqu %xmm1, 16(%rdi)\n"
        "	movdqu %xmm2, 32(%rdi)\n"
        "	movdqu %xmm3, 48(%rdi)\n"
        "	addq $64, %rsi\n"
        "	addq $64, %rdi\n"
        "	subq $64, %rcx\n"
        "	cmpq $64, %rcx\n"
        "	jae pw__copy_vec_start\n"
        ".globl pw__copy_vec_end\n"
        "pw__copy_vec_end:\n"
        "	testq %rcx, %rcx\n"
        "	jz pw__copy_fixup\n"
        ".globl pw__copy_insn\n"
        "pw__copy_insn:\n"
        "	rep movsb\n"
        ".globl pw__copy_fixup\n"
        "pw__copy_fixup:\n"
        "	movq %rcx, %rax\n"
        "	ret\n"
        ".size pw__copy_user, .-pw__copy_user\n");

/* int pw__probe_read(const void *addr): 0 if the byte is readable (the
 * fault, if any, was served), 1 if not.  The prefault's one-byte touch. */
int pw__probe_read(const void *addr);
extern const char pw__probe_insn[], pw__probe_fixup[];
__asm__(".text\n"
        ".globl pw__probe_read\n"
        ".type pw__probe_read, @function\n"
        "pw__probe_read:\n"
        "	xorl %eax, %eax\n"
        ".globl pw__probe_insn\n"
        "pw__probe_insn:\n"
        "	movb (%rdi), %cl\n"
        "	ret\n"
        ".globl pw__probe_fixup\n"
        "pw__probe_fixup:\n"
        "	movl $1, %eax\n"
        "	ret\n"
        ".size pw__probe_read, .-pw__probe_read\n");

static _Thread_local int pagefault_disabled_count;
static struct sigaction old_segv;

void
pagefault_disable(void)
{
	pagefault_disabled_count++;
	atomic_signal_fence(memory_order_seq_cst);
}

void
pagefault_enable(void)
{
	atomic_signal_fence(memory_order_seq_cst);
	pagefault_disabled_count--;
}

bool
pagefault_disabled(void)
{
	return pagefault_disabled_count > 0;
}

int
pw__test_faulting_copy_build(void)
{
#ifdef PW_TEST_FAULTING_COPY
	return 1;
#else
	return 0;
#endif
}

size_t
copy_from_user(void *to, const void *from, size_t n)
{
	return n ? pw__copy_user(to, from, n) : 0;
}

size_t
copy_to_user(void *to, const void *from, size_t n)
{
	return n ? pw__copy_user(to, from, n) : 0;
}

size_t
clear_user(void *to, size_t n)
{
	static const char zeros[4096];
	for (size_t done = 0; done < n;) {
		size_t k = PW_MIN(n - done, sizeof(zeros));
		size_t left = pw__copy_user((char *)to + done, zeros, k);
		if (left)
			return n - done - (k - left);
		done += k;
	}
	return 0;
}

/**
 * strncpy_from_user - copy a NUL-terminated string from user memory.
 * Copies page by page, so a string that ends just before an unreadable
 * page is copied whole, and never reads past its NUL by more than the
 * rest of that page.
 * Context: faults enabled; no page lock held.
 * Return: the length (without the NUL, which is copied too), count if
 * no NUL was found in count bytes, or -EFAULT.
 */
long
strncpy_from_user(char *dst, const char *src, long count)
{
	size_t done = 0, n = count > 0 ? (size_t)count : 0;
	if (!src)
		return -EFAULT;
	while (done < n) {
		uintptr_t at = (uintptr_t)src + done;
		size_t chunk = PW_MIN(PAGE_SIZE - (at & (PAGE_SIZE - 1)), n - done);
		if (copy_from_user(dst + done, src + done, chunk))
			return -EFAULT;
		const char *nul = memchr(dst + done, 0, chunk);
		if (nul)
			return (long)(nul - dst);
		done += chunk;
	}
	return count;
}

/**
 * fault_in_pages_readable - prefault a user range of at most two pages by
 * touching its first byte and, if on another page, its last byte.
 * Context: faults enabled; no page lock held.  Return: 0 or -EFAULT.
 */
int
fault_in_pages_readable(const void *uaddr, size_t size)
{
	return fault_in_readable_prefix(uaddr, size) == size ? 0 : -EFAULT;
}

/**
 * fault_in_readable_prefix - like fault_in_pages_readable, but when the
 * range spans two pages and only the first is readable, say so: return
 * the length up to the end of the first page, so that a write can make
 * progress up to the bad address (modern Linux; 2.6.24 failed the step).
 */
size_t
fault_in_readable_prefix(const void *uaddr, size_t size)
{
	const char *p = uaddr;
	if (size == 0)
		return 0;
	if (pw__probe_read(p))
		return 0;
	const char *last = p + size - 1;
	uintptr_t page_end = ((uintptr_t)p & PAGE_MASK) + PAGE_SIZE;
	if ((uintptr_t)last >= page_end && pw__probe_read(last))
		return page_end - (uintptr_t)p;
	return size;
}

/* For a read's destination, which is about to be overwritten: load a
 * byte and store it back, each through the copy routine, so that the page
 * is present and writable. */
int
fault_in_pages_writeable(void *uaddr, size_t size)
{
	char *p = uaddr;
	if (size == 0)
		return 0;
	char *ends[2] = {p, p + size - 1};
	for (int k = 0; k < 2; k++) {
		char c;
		if (k == 1 && ((uintptr_t)p & PAGE_MASK) == ((uintptr_t)ends[1] & PAGE_MASK))
			break;
		if (copy_from_user(&c, ends[k], 1) || copy_to_user(ends[k], &c, 1))
			return -EFAULT;
	}
	return 0;
}

/* Deliver SIGBUS for addr to this thread, as the kernel would. */
static void
send_sigbus(void *addr)
{
	siginfo_t si;
	memset(&si, 0, sizeof(si));
	si.si_signo = SIGBUS;
	si.si_code = BUS_ADRERR;
	si.si_addr = addr;
	syscall(SYS_rt_tgsigqueueinfo, getpid(), gettid(), SIGBUS, &si);
}

static void
chain_segv(int sig, siginfo_t *si, void *ctx)
{
	if (old_segv.sa_flags & SA_SIGINFO) {
		old_segv.sa_sigaction(sig, si, ctx);
	} else if (old_segv.sa_handler == SIG_DFL || old_segv.sa_handler == SIG_IGN) {
		/* Returning re-executes the access, which now kills us with the
		 * default action and a core dump at the right place. */
		signal(SIGSEGV, SIG_DFL);
	} else {
		old_segv.sa_handler(sig);
	}
}

static void
segv_handler(int sig, siginfo_t *si, void *ctx)
{
	ucontext_t *uc = ctx;
	int saved_errno = errno;
	greg_t *regs = uc->uc_mcontext.gregs;
	uintptr_t rip = (uintptr_t)regs[REG_RIP];
	bool in_vec = rip >= (uintptr_t)pw__copy_vec_start && rip < (uintptr_t)pw__copy_vec_end;
	bool in_probe = rip == (uintptr_t)pw__probe_insn;
	bool in_copy = in_vec || in_probe || rip == (uintptr_t)pw__copy_insn;
	bool write = regs[REG_ERR] & 2;
	int r = SIGSEGV;
	bool may_serve = !(in_copy && pagefault_disabled());
#ifdef PW_TEST_FAULTING_COPY
	may_serve = true;
#endif
	if (si->si_code > 0 && may_serve)
		r = pw__handle_mm_fault((uintptr_t)si->si_addr, write);
	if (r == 0)
		goto out;
	if (in_vec) {
		/* Redo the block byte by byte: it faults again at the exact
		 * byte and then takes the fixup below. */
		regs[REG_RIP] = (greg_t)(uintptr_t)pw__copy_insn;
		goto out;
	}
	if (in_copy) {
		regs[REG_RIP] = (greg_t)(uintptr_t)(in_probe ? pw__probe_fixup : pw__copy_fixup);
		goto out;
	}
	if (r == SIGBUS)
		send_sigbus(si->si_addr);
	else
		chain_segv(sig, si, ctx);
out:
	errno = saved_errno;
}

int
pw__uaccess_init(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = segv_handler;
	sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSEGV, &sa, &old_segv) != 0)
		return -errno;
	return 0;
}

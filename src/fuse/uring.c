/*
 * uring.c - FUSE over io_uring: requests served on the CPU that made them.
 *
 * Why: a small file through the mount costs four or five synchronous
 * round trips (docs/fuse.md).  Over /dev/fuse each one wakes a server
 * thread, usually on the other CPU (an inter-processor interrupt, dear in
 * a VM), and then wakes the caller again from there; on the development
 * VM a round trip is 17-50 us, more than the server's work.  Since Linux
 * 6.14 the kernel can instead hand each request to a queue of the CPU the
 * caller runs on, through io_uring commands on /dev/fuse; a server thread
 * bound to that CPU takes it, and the caller, which sleeps meanwhile, is
 * woken on its own CPU: no cross-CPU wake-up either way, and one system
 * call per request (commit the reply and fetch the next) instead of two.
 *
 * The kernel offers it in INIT when its fuse module has enable_uring=Y
 * (off by default: echo Y > /sys/module/fuse/parameters/enable_uring).
 * libfuse 3.14 knows nothing of it, so this file does the transport and
 * hands each request to libfuse's dispatcher (fuse_session_process_buf);
 * the reply comes back through devio.c's write hook, which copies it into
 * the ring entry instead of writing it to /dev/fuse.
 *
 * The protocol (the kernel's include/uapi/linux/fuse.h, ABI 7.42):
 *   - INIT's reply asks for FUSE_OVER_IO_URING.  From then on the kernel
 *     holds every request until each of its queues (one per possible CPU)
 *     has an entry registered; if a registration fails it gives up on the
 *     ring and uses /dev/fuse.  So everything that can fail here (the
 *     rings, the buffers) is made before the reply asks, in
 *     pw__uring_prepare; only the registrations come after.
 *   - An entry is two buffers, given with FUSE_IO_URING_CMD_REGISTER: a
 *     header block (the fuse_in_header, the opcode's fixed argument, and
 *     the payload size) and a payload buffer (names, WRITE data, ...).
 *     The command completes when a request is in the entry.
 *   - The reply goes in the same buffers (the fuse_out_header in the
 *     header block, the reply's arguments in the payload), and
 *     FUSE_IO_URING_CMD_COMMIT_AND_FETCH hands it back and waits for the
 *     next request.
 *   - FORGET and INTERRUPT still come through /dev/fuse: libfuse's own
 *     loop keeps running for them (and for anything sent before the ring
 *     was ready).
 *
 * Threads: up to WORKERS_MAX per queue (fewer on large machines), bound
 * to the queue's CPU, each with its own ring (single issuer, task work
 * deferred to its io_uring_enter) and ENTRIES entries.  The kernel gives
 * a request to the entry committed last, so the thread that just answered
 * (and is awake) takes the next one; the others serve while it blocks (a
 * cold read waits for the disk, and readahead sends several READs at
 * once).  The price: a burst of READs stays on the CPU that sent it.
 * Tried (bench_mount, one run of 3 repetitions each): all threads free,
 * small files 20-30% slower; only the first of each queue bound, cold
 * mapped reads faster (660-775 against 440-560 MB/s) but small files
 * 1.2-1.3x fuse2fs instead of 1.6-1.7x once a burst leaves a free thread
 * at the head of the list; bound threads freed for each READ or WRITE of
 * 64 KiB+, no gain.
 *
 * Teardown: when the mount goes away the kernel completes every command
 * with an error and the threads end.  pw__uring_stop also ends them when
 * the server stops first (a signal): each waits with a timeout and checks
 * a flag, and closing its ring cancels its commands.
 */
#include "fuse_internal.h"

#include <errno.h>
#include <linux/fuse.h>
#include <linux/io_uring.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* The ABI 7.42 structures, for headers older than Linux 6.14. */
#define URING_HDR_IN_OUT 128
#define URING_HDR_OP 128
struct uring_ent_in_out {
	uint64_t flags;
	uint64_t commit_id;
	uint32_t payload_sz;
	uint32_t padding;
	uint64_t reserved;
};
struct uring_req_header {
	char in_out[URING_HDR_IN_OUT];
	char op_in[URING_HDR_OP];
	struct uring_ent_in_out ent;
};
struct uring_cmd_req {
	uint64_t flags;
	uint64_t commit_id;
	uint16_t qid;
	uint8_t padding[6];
};
enum { CMD_REGISTER = 1, CMD_COMMIT_AND_FETCH = 2 };

#define WORKERS_MAX 4       /* threads per queue, on small machines */
#define THREADS_MAX 32      /* fewer per queue beyond 8 CPUs, at least 1 */
#define ENTRIES 4           /* ring entries per thread */
#define LEAD 256            /* room before a payload for the headers */
#define WAIT_NS 200000000   /* a thread checks for pw__uring_stop this often */

/* Every field is its queue thread's, and the kernel's between a command's
 * submission and its completion; iov and area are (C) after prepare. */
struct entry {
	struct uring_req_header hdr __attribute__((aligned(64)));
	struct iovec iov[2];
	char *area;             /* LEAD bytes, then the payload */
	uint64_t unique;        /* the request in hand */
	bool replied;
	bool registered;        /* the kernel has taken the entry */
};

struct ring {
	int fd;
	void *sq_map, *cq_map, *sqe_map;
	size_t sq_len, cq_len, sqe_len;
	_Atomic unsigned *sq_head, *sq_tail, *cq_head, *cq_tail;
	unsigned sq_mask, cq_mask, *sq_array;
	struct io_uring_sqe *sqes;  /* 128-byte entries: index * 2 */
	struct io_uring_cqe *cqes;
	unsigned to_submit;
	bool disabled;          /* made R_DISABLED: the serving thread enables it */
};

/* One thread serving one queue (queues have u->workers of them).  qid,
 * ents: (C); ring: the thread's own; thread, started: set and read by
 * pw__uring_start/stop/free, on the server's threads in turn. */
struct queue {
	struct uring *u;
	unsigned qid;
	struct ring ring;
	struct entry *ents;
	pthread_t thread;
	bool started;
};

/* se .. q: (C), set by pw__uring_prepare; stop and served: atomics. */
struct uring {
	struct fuse_session *se;
	int devfd;
	size_t payload;         /* bytes per payload buffer */
	unsigned nq;            /* queues: the kernel's possible CPUs */
	unsigned workers;       /* threads per queue */
	struct queue *q;        /* nq * workers */
	_Atomic bool stop;
	_Atomic uint64_t served;  /* requests served from the rings */
};

static __thread struct entry *cur;  /* the entry whose request is in hand */

static int
sys_setup(unsigned entries, struct io_uring_params *p)
{
	return (int)syscall(__NR_io_uring_setup, entries, p);
}

static int
sys_enter(int fd, unsigned submit, unsigned wait, unsigned flags, void *arg, size_t argsz)
{
	return (int)syscall(__NR_io_uring_enter, fd, submit, wait, flags, arg, argsz);
}

static void
ring_close(struct ring *r)
{
	if (r->sqe_map && r->sqe_map != MAP_FAILED)
		munmap(r->sqe_map, r->sqe_len);
	if (r->cq_map && r->cq_map != MAP_FAILED && r->cq_map != r->sq_map)
		munmap(r->cq_map, r->cq_len);
	if (r->sq_map && r->sq_map != MAP_FAILED)
		munmap(r->sq_map, r->sq_len);
	if (r->fd >= 0)
		close(r->fd);
	memset(r, 0, sizeof(*r));
	r->fd = -1;
}

static int
ring_open(struct ring *r, unsigned entries)
{
	struct io_uring_params p;
	memset(r, 0, sizeof(*r));
	memset(&p, 0, sizeof(p));
	/* Single issuer, deferred task work: the thread that serves the
	 * queue enables the ring (R_DISABLED until then) and so becomes its
	 * only submitter; requests arrive as task work run inside its own
	 * io_uring_enter. */
	p.flags = IORING_SETUP_SQE128 | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
	          IORING_SETUP_R_DISABLED;
	r->fd = sys_setup(entries, &p);
	if (r->fd < 0 && errno == EINVAL) {
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_SQE128;
		r->fd = sys_setup(entries, &p);
	} else {
		r->disabled = r->fd >= 0;
	}
	if (r->fd < 0)
		return -errno;
	r->sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
	r->cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	if (p.features & IORING_FEAT_SINGLE_MMAP) {
		if (r->cq_len > r->sq_len)
			r->sq_len = r->cq_len;
		r->cq_len = r->sq_len;
	}
	r->sq_map = mmap(NULL, r->sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
	                 r->fd, IORING_OFF_SQ_RING);
	if (r->sq_map == MAP_FAILED)
		goto fail;
	if (p.features & IORING_FEAT_SINGLE_MMAP)
		r->cq_map = r->sq_map;
	else
		r->cq_map = mmap(NULL, r->cq_len, PROT_READ | PROT_WRITE,
		                 MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_CQ_RING);
	if (r->cq_map == MAP_FAILED)
		goto fail;
	r->sqe_len = 2 * p.sq_entries * sizeof(struct io_uring_sqe);
	r->sqe_map = mmap(NULL, r->sqe_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
	                  r->fd, IORING_OFF_SQES);
	if (r->sqe_map == MAP_FAILED)
		goto fail;
	char *sq = r->sq_map, *cq = r->cq_map;
	r->sq_head = (void *)(sq + p.sq_off.head);
	r->sq_tail = (void *)(sq + p.sq_off.tail);
	r->sq_mask = *(unsigned *)(sq + p.sq_off.ring_mask);
	r->sq_array = (void *)(sq + p.sq_off.array);
	r->cq_head = (void *)(cq + p.cq_off.head);
	r->cq_tail = (void *)(cq + p.cq_off.tail);
	r->cq_mask = *(unsigned *)(cq + p.cq_off.ring_mask);
	r->cqes = (void *)(cq + p.cq_off.cqes);
	r->sqes = r->sqe_map;
	return 0;
fail:;
	int e = -errno;
	ring_close(r);
	return e;
}

/* Queue one FUSE command for the entry (submitted at the next wait). */
static void
push_cmd(struct queue *q, unsigned idx, unsigned op, uint64_t commit_id)
{
	struct ring *r = &q->ring;
	unsigned tail = atomic_load_explicit(r->sq_tail, memory_order_relaxed);
	unsigned slot = tail & r->sq_mask;
	struct io_uring_sqe *sqe = &r->sqes[2 * slot];
	memset(sqe, 0, 2 * sizeof(*sqe));
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = q->u->devfd;
	sqe->cmd_op = op;
	sqe->addr = (uint64_t)(uintptr_t)q->ents[idx].iov;
	sqe->len = 2;
	sqe->user_data = idx;
	struct uring_cmd_req *cmd = (void *)sqe->cmd;
	cmd->qid = (uint16_t)q->qid;
	cmd->commit_id = commit_id;
	r->sq_array[slot] = slot;
	atomic_store_explicit(r->sq_tail, tail + 1, memory_order_release);
	r->to_submit++;
}

/* Hand the request in the entry to libfuse; its reply lands in the entry
 * through pw__uring_writev.  Then commit it and fetch the next. */
static void
serve(struct queue *q, unsigned idx)
{
	struct entry *e = &q->ents[idx];
	struct fuse_in_header *in = (void *)e->hdr.in_out;
	size_t psz = e->hdr.ent.payload_sz;
	size_t oplen = in->len >= sizeof(*in) + psz ? in->len - sizeof(*in) - psz : SIZE_MAX;
	e->unique = in->unique;
	e->replied = false;
	if (oplen <= URING_HDR_OP && psz <= q->u->payload) {
		/* libfuse wants header, argument and payload in one piece: put
		 * the first two just before the payload. */
		char *start = e->area + LEAD - sizeof(*in) - oplen;
		memcpy(start, in, sizeof(*in));
		memcpy(start + sizeof(*in), e->hdr.op_in, oplen);
		struct fuse_buf b = {.size = in->len, .mem = start};
		atomic_fetch_add_explicit(&q->u->served, 1, memory_order_relaxed);
		cur = e;
		pw__devio_profile_ring(in, true);
		fuse_session_process_buf(q->u->se, &b);
		pw__devio_profile_ring(NULL, false);
		cur = NULL;
	}
	if (!e->replied) {
		/* Malformed, or a handler that did not answer: EIO, so that
		 * the caller is not left waiting. */
		struct fuse_out_header *out = (void *)e->hdr.in_out;
		out->len = sizeof(*out);
		out->error = -EIO;
		out->unique = e->unique;
		e->hdr.ent.payload_sz = 0;
	}
	push_cmd(q, idx, CMD_COMMIT_AND_FETCH, e->unique);
}

/*
 * The kernel holds every request until each queue has an entry, unless a
 * registration fails.  A queue that cannot register its entries fails one
 * on purpose (no buffers: EINVAL), from a ring of its own, so that the
 * kernel goes back to /dev/fuse instead of waiting for ever.
 */
static void
give_up(struct queue *q)
{
	struct ring r;
	if (ring_open(&r, 2) != 0)
		return;
	if (!r.disabled || syscall(__NR_io_uring_register, r.fd, IORING_REGISTER_ENABLE_RINGS,
	                           NULL, 0) == 0) {
		unsigned tail = atomic_load_explicit(r.sq_tail, memory_order_relaxed);
		unsigned slot = tail & r.sq_mask;
		struct io_uring_sqe *sqe = &r.sqes[2 * slot];
		memset(sqe, 0, 2 * sizeof(*sqe));
		sqe->opcode = IORING_OP_URING_CMD;
		sqe->fd = q->u->devfd;
		sqe->cmd_op = CMD_REGISTER;
		((struct uring_cmd_req *)(void *)sqe->cmd)->qid = (uint16_t)q->qid;
		r.sq_array[slot] = slot;
		atomic_store_explicit(r.sq_tail, tail + 1, memory_order_release);
		sys_enter(r.fd, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0);
	}
	ring_close(&r);
}

static void *
queue_thread(void *arg)
{
	struct queue *q = arg;
	struct uring *u = q->u;
	struct ring *r = &q->ring;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(q->qid, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set); /* best effort */
	/* SCHED_BATCH: waking this thread does not preempt the caller.  A
	 * synchronous request blocks its caller at once, so nothing waits
	 * longer; an asynchronous one (RELEASE at close, the kernel's
	 * writeback) is served when the CPU is next free, often together
	 * with the caller's next request, instead of costing two context
	 * switches in the middle of the caller's work.  Small-file creation
	 * measured 5% faster (docs/fuse.md).  Best effort. */
	struct sched_param sp = {0};
	pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
	if (r->disabled &&
	    syscall(__NR_io_uring_register, r->fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0) != 0) {
		fprintf(stderr, "pagewright: io_uring queue %u: %s; serving through /dev/fuse\n",
		        q->qid, strerror(errno));
		give_up(q);
		return NULL;
	}
	for (unsigned k = 0; k < ENTRIES; k++)
		push_cmd(q, k, CMD_REGISTER, 0);
	unsigned outstanding = ENTRIES, tries = 0;
	while (outstanding && !atomic_load(&u->stop)) {
		struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = WAIT_NS};
		struct io_uring_getevents_arg ga = {.ts = (uint64_t)(uintptr_t)&ts};
		int n = sys_enter(r->fd, r->to_submit, 1,
		                  IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &ga, sizeof(ga));
		if (n >= 0) {
			r->to_submit -= (unsigned)n < r->to_submit ? (unsigned)n : r->to_submit;
		} else if (errno != ETIME && errno != EINTR && errno != EAGAIN &&
		           errno != EBUSY) {
			fprintf(stderr, "pagewright: io_uring queue %u: %s\n", q->qid,
			        strerror(errno));
			if (outstanding == ENTRIES)
				give_up(q);  /* nothing registered yet */
			break;
		}
		unsigned head = atomic_load_explicit(r->cq_head, memory_order_relaxed);
		unsigned tail = atomic_load_explicit(r->cq_tail, memory_order_acquire);
		for (; head != tail; head++) {
			struct io_uring_cqe *c = &r->cqes[head & r->cq_mask];
			unsigned idx = (unsigned)c->user_data;
			int res = c->res;
			atomic_store_explicit(r->cq_head, head + 1, memory_order_release);
			if (idx >= ENTRIES)
				continue;
			if (res == 0) {
				q->ents[idx].registered = true;
				serve(q, idx);
			} else if (res == -EAGAIN && !q->ents[idx].registered && tries++ < 1000) {
				/* The kernel has not applied INIT yet: it answers a
				 * registration so without giving up on the ring, which
				 * it would then wait for: ask again. */
				usleep(1000);
				push_cmd(q, idx, CMD_REGISTER, 0);
			} else {
				/* -ENOTCONN: the mount went away; -EBADF after the
				 * session ended: a signal's unmount closed /dev/fuse
				 * under a command being sent; anything else
				 * (registration refused): the kernel falls back to
				 * /dev/fuse for the whole connection. */
				if (res != -ENOTCONN && res != -ECANCELED &&
				    !(res == -EBADF && fuse_session_exited(u->se)))
					fprintf(stderr, "pagewright: io_uring queue %u: %s; "
					        "serving through /dev/fuse\n", q->qid, strerror(-res));
				outstanding--;
			}
		}
	}
	return NULL;
}

static unsigned
possible_cpus(void)
{
	/* The kernel makes a queue per possible CPU; "0-3" or "0,2-5". */
	FILE *f = fopen("/sys/devices/system/cpu/possible", "r");
	unsigned n = 0;
	if (f) {
		char line[256];
		if (fgets(line, sizeof(line), f)) {
			char *s = line;
			while (*s && *s != '\n') {
				unsigned a, b;
				int used;
				if (sscanf(s, "%u-%u%n", &a, &b, &used) == 2 && b >= a)
					n = b + 1 > n ? b + 1 : n;
				else if (sscanf(s, "%u%n", &a, &used) == 1)
					n = a + 1 > n ? a + 1 : n;
				else
					break;
				s += used;
				if (*s == ',')
					s++;
			}
		}
		fclose(f);
	}
	return n;
}

void
pw__uring_free(struct uring *u)
{
	if (!u)
		return;
	for (unsigned k = 0; k < u->nq * u->workers; k++) {
		struct queue *q = &u->q[k];
		if (q->started)
			pthread_join(q->thread, NULL);
		ring_close(&q->ring);
		if (q->ents) {
			for (unsigned e = 0; e < ENTRIES; e++)
				if (q->ents[e].area)
					munmap(q->ents[e].area, LEAD + u->payload);
			free(q->ents);
		}
	}
	free(u->q);
	free(u);
}

struct uring *
pw__uring_prepare(struct fuse_session *se, size_t max_write, unsigned max_pages)
{
	unsigned nq = possible_cpus();
	if (!nq || nq > 1024)
		return NULL;
	struct uring *u = calloc(1, sizeof(*u));
	if (!u)
		return NULL;
	u->se = se;
	u->devfd = fuse_session_fd(se);
	/* The kernel's minimum: FUSE_MIN_READ_BUFFER, max_write, max_pages. */
	size_t pl = 8192;
	if (max_write > pl)
		pl = max_write;
	if ((size_t)max_pages * 4096 > pl)
		pl = (size_t)max_pages * 4096;
	u->payload = pl;
	u->workers = THREADS_MAX / nq;
	if (u->workers > WORKERS_MAX)
		u->workers = WORKERS_MAX;
	if (u->workers < 1)
		u->workers = 1;
	u->q = calloc((size_t)nq * u->workers, sizeof(*u->q));
	if (!u->q)
		goto fail;
	u->nq = nq;
	for (unsigned k = 0; k < nq * u->workers; k++)
		u->q[k].ring.fd = -1;
	for (unsigned k = 0; k < nq * u->workers; k++) {
		struct queue *q = &u->q[k];
		q->u = u;
		q->qid = k / u->workers;
		if (ring_open(&q->ring, 2 * ENTRIES) != 0)
			goto fail;
		q->ents = calloc(ENTRIES, sizeof(*q->ents));
		if (!q->ents)
			goto fail;
		for (unsigned e = 0; e < ENTRIES; e++) {
			struct entry *en = &q->ents[e];
			/* Untouched pages cost nothing until a large request. */
			en->area = mmap(NULL, LEAD + pl, PROT_READ | PROT_WRITE,
			                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (en->area == MAP_FAILED) {
				en->area = NULL;
				goto fail;
			}
			en->iov[0] = (struct iovec){&en->hdr, sizeof(en->hdr)};
			en->iov[1] = (struct iovec){en->area + LEAD, pl};
		}
	}
	return u;
fail:
	pw__uring_free(u);
	return NULL;
}

int
pw__uring_start(struct uring *u)
{
	for (unsigned k = 0; k < u->nq * u->workers; k++) {
		struct queue *q = &u->q[k];
		if (pthread_create(&q->thread, NULL, queue_thread, q) != 0)
			return -EAGAIN;
		q->started = true;
	}
	return 0;
}

void
pw__uring_stop(struct uring *u)
{
	if (!u)
		return;
	atomic_store(&u->stop, true);
	for (unsigned k = 0; k < u->nq * u->workers; k++) {
		struct queue *q = &u->q[k];
		if (q->started) {
			pthread_join(q->thread, NULL);
			q->started = false;
		}
		ring_close(&q->ring);  /* cancels the commands still waiting */
	}
}

void *
pw__uring_reply_buffer(size_t size)
{
	return cur && size <= cur->iov[1].iov_len ? cur->area + LEAD : NULL;
}

uint64_t
pw__uring_served(const struct uring *u)
{
	return u ? atomic_load_explicit(&u->served, memory_order_relaxed) : 0;
}

bool
pw__uring_in_hand(void)
{
	return cur != NULL;
}

/* devio.c's write hook: is this the reply to the request in hand?  Then
 * it goes into the entry.  Returns the bytes taken, -1 with errno if it
 * does not fit, or -2 if it is not that reply (a notification). */
ssize_t
pw__uring_writev(const struct iovec *iov, int count)
{
	struct entry *e = cur;
	if (!e || count < 1 || iov[0].iov_len < sizeof(struct fuse_out_header))
		return -2;
	const struct fuse_out_header *out = iov[0].iov_base;
	if (out->unique != e->unique)
		return -2;      /* a notification: /dev/fuse */
	char *pl = e->area + LEAD;
	size_t room = e->iov[1].iov_len, off = 0, total = iov[0].iov_len;
	memcpy(e->hdr.in_out, out, sizeof(*out));
	/* iov[0] may carry argument bytes after the header. */
	size_t extra = iov[0].iov_len - sizeof(*out);
	const char *src0 = (const char *)iov[0].iov_base + sizeof(*out);
	for (int k = 0; k <= count - 1; k++) {
		const char *src = k ? iov[k].iov_base : src0;
		size_t len = k ? iov[k].iov_len : extra;
		if (k)
			total += len;
		if (off + len > room) {
			errno = EINVAL;
			return -1;
		}
		if (len && src != pl + off)
			memcpy(pl + off, src, len);
		off += len;
	}
	e->hdr.ent.payload_sz = (uint32_t)off;
	e->replied = true;
	return (ssize_t)total;
}

/* Spliced replies (libfuse's fuse_reply_data): the pipe holds the header
 * and the data; read them into the entry. */
ssize_t
pw__uring_splice(int pipe_fd, size_t len)
{
	struct entry *e = cur;
	struct fuse_out_header out;
	if (!e || len < sizeof(out) || len - sizeof(out) > e->iov[1].iov_len) {
		errno = EINVAL;
		return -1;
	}
	if (read(pipe_fd, &out, sizeof(out)) != (ssize_t)sizeof(out) || out.unique != e->unique) {
		errno = EIO;
		return -1;
	}
	size_t got = 0, want = len - sizeof(out);
	while (got < want) {
		ssize_t n = read(pipe_fd, e->area + LEAD + got, want - got);
		if (n <= 0) {
			errno = EIO;
			return -1;
		}
		got += (size_t)n;
	}
	memcpy(e->hdr.in_out, &out, sizeof(out));
	e->hdr.ent.payload_sz = (uint32_t)got;
	e->replied = true;
	return (ssize_t)len;
}

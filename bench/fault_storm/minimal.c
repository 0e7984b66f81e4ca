// SPDX-License-Identifier: MIT
/*
 * minimal.c - the "minimal" baseline: the smallest correct
 * userfaultfd handler one would write by hand, to show what ufault costs on
 * top of the kernel's own machinery.
 *
 * One uffd (the userfaultfd syscall, else /dev/userfaultfd +
 * USERFAULTFD_IOC_NEW), UFFDIO_API with no features, UFFDIO_REGISTER MISSING,
 * and one handler thread: poll -> read ONE message -> resolve with the same
 * ioctl ufault's source uses (zeros: UFFDIO_ZEROPAGE for a read fault,
 * UFFDIO_COPY of a zeroed page for a write fault; for the slow source
 * sleep the same latency, write the same pattern into a bounce buffer and
 * UFFDIO_COPY it) -> loop. EEXIST means someone resolved the page first:
 * success, and a UFFDIO_WAKE so no waiter is left parked.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fault_storm.h"

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC 0xAA
#define USERFAULTFD_IOC_NEW _IO(USERFAULTFD_IOC, 0x00)
#endif

struct minimal {
	int uffd;
	int stopfd;
	bool slow;
	struct latency lat;
	size_t page;
	void *bounce;
	pthread_t thread;
	uint64_t handled; /* written by the handler, read after join */
};

static int minimal_open_uffd(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	int dev;

	if (fd >= 0)
		return fd;
	if (errno != ENOSYS && errno != EPERM)
		die("userfaultfd: %s", strerror(errno));
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev < 0)
		die("userfaultfd syscall refused and /dev/userfaultfd: %s", strerror(errno));
	fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		die("USERFAULTFD_IOC_NEW: %s", strerror(errno));
	close(dev);
	return fd;
}

/*
 * Resolve one fault at page-aligned @addr; any error but a benign race is
 * fatal. Zero source: the same rule as ufault's (and the kernel's anonymous
 * faults): a write fault gets a zeroed page copied in (the bounce buffer is
 * all zeros then), a read fault the shared zero page.
 */
static void minimal_resolve(struct minimal *m, uint64_t addr, bool write)
{
	bool copy = m->slow || write;
	int r;

	for (;;) {
		if (copy) {
			struct uffdio_copy c = {.dst = addr,
						.src = (uint64_t)(uintptr_t)m->bounce,
						.len = m->page,
						.mode = 0};

			r = ioctl(m->uffd, UFFDIO_COPY, &c);
		} else {
			struct uffdio_zeropage z = {.range = {.start = addr, .len = m->page},
						    .mode = 0};

			r = ioctl(m->uffd, UFFDIO_ZEROPAGE, &z);
		}
		if (r == 0)
			return;
		if (errno == EAGAIN)
			continue; /* no events enabled: only a transient race */
		break;
	}
	if (errno == EEXIST || errno == ENOENT || errno == ESRCH) {
		/* Already there (or gone): make sure whoever waits is woken. */
		struct uffdio_range w = {.start = addr, .len = m->page};

		if (ioctl(m->uffd, UFFDIO_WAKE, &w) && errno != ENOENT && errno != ESRCH)
			die("minimal: UFFDIO_WAKE: %s", strerror(errno));
		return;
	}
	die("minimal: %s at 0x%llx: %s", copy ? "UFFDIO_COPY" : "UFFDIO_ZEROPAGE",
	    (unsigned long long)addr, strerror(errno));
}

static void *minimal_thread(void *arg)
{
	struct minimal *m = arg;
	struct pollfd p[2] = {{.fd = m->uffd, .events = POLLIN},
			      {.fd = m->stopfd, .events = POLLIN}};

	for (;;) {
		struct uffd_msg msg;
		uint64_t addr;
		ssize_t n;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("minimal: poll: %s", strerror(errno));
		}
		if (p[1].revents)
			break;
		if (p[0].revents & (POLLERR | POLLHUP))
			die("minimal: uffd poll error 0x%x", p[0].revents);
		n = read(m->uffd, &msg, sizeof(msg));
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			die("minimal: read uffd: %s", strerror(errno));
		}
		if (n != sizeof(msg))
			die("minimal: short uffd read (%zd bytes)", n);
		if (msg.event != UFFD_EVENT_PAGEFAULT)
			die("minimal: unexpected uffd event 0x%x", msg.event);
		addr = msg.arg.pagefault.address & ~((uint64_t)m->page - 1);
		if (m->slow)
			slow_fill(&m->lat, addr, m->bounce, m->page);
		minimal_resolve(m, addr, msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE);
		m->handled++;
	}
	return NULL;
}

struct minimal *minimal_start(const struct latency *lat, size_t page)
{
	struct minimal *m = xcalloc(1, sizeof(*m));
	struct uffdio_api api = {.api = UFFD_API, .features = 0};
	int err;

	m->slow = lat != NULL;
	if (lat)
		m->lat = *lat;
	m->page = page;
	m->uffd = minimal_open_uffd();
	if (ioctl(m->uffd, UFFDIO_API, &api))
		die("minimal: UFFDIO_API: %s", strerror(errno));
	m->bounce = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m->bounce == MAP_FAILED)
		die("minimal: mmap bounce buffer: %s", strerror(errno));
	memset(m->bounce, 0, page);
	m->stopfd = eventfd(0, EFD_CLOEXEC);
	if (m->stopfd < 0)
		die("minimal: eventfd: %s", strerror(errno));
	err = pthread_create(&m->thread, NULL, minimal_thread, m);
	if (err)
		die("minimal: pthread_create: %s", strerror(err));
	return m;
}

void minimal_register(struct minimal *m, void *addr, size_t len)
{
	struct uffdio_register reg = {
	    .range = {.start = (uint64_t)(uintptr_t)addr, .len = len},
	    .mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	uint64_t need = (1ull << _UFFDIO_COPY) | (1ull << _UFFDIO_ZEROPAGE);

	if (ioctl(m->uffd, UFFDIO_REGISTER, &reg))
		die("minimal: UFFDIO_REGISTER %p+%zu: %s", addr, len, strerror(errno));
	if ((reg.ioctls & need) != need)
		die("minimal: the kernel does not offer UFFDIO_COPY and UFFDIO_ZEROPAGE here");
}

/* Stop the handler (every fault thread has been joined); returns faults handled. */
uint64_t minimal_stop(struct minimal *m)
{
	uint64_t one = 1, handled;
	int err;

	if (write(m->stopfd, &one, sizeof(one)) != sizeof(one))
		die("minimal: eventfd write: %s", strerror(errno));
	err = pthread_join(m->thread, NULL);
	if (err)
		die("minimal: pthread_join: %s", strerror(err));
	handled = m->handled;
	close(m->uffd);
	close(m->stopfd);
	munmap(m->bounce, m->page);
	free(m);
	return handled;
}

/* SPDX-License-Identifier: MIT */
/*
 * compat.h - userfaultfd definitions newer than the build machine's kernel
 * headers (Debian 12 ships Linux 6.1 headers). Values are the kernel's ABI
 * (include/uapi/linux/userfaultfd.h); each is guarded so newer headers win.
 * Whether the running kernel has a feature is probed at run time
 * (ufault__uffd_probe), never assumed from these definitions.
 */
#ifndef UFAULT_LIB_COMPAT_H
#define UFAULT_LIB_COMPAT_H

#include <linux/types.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>

#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14) /* 6.6 */
#endif

#ifndef _UFFDIO_POISON
#define _UFFDIO_POISON (0x08)
#endif

#ifndef UFFDIO_POISON
struct uffdio_poison {
	struct uffdio_range range;
#define UFFDIO_POISON_MODE_DONTWAKE ((__u64)1 << 0)
	__u64 mode;
	__s64 updated;
};
#define UFFDIO_POISON _IOWR(UFFDIO, _UFFDIO_POISON, struct uffdio_poison)
#endif

/* madvise(2), not userfaultfd: Linux 5.18 (probed by use: EINVAL before). */
#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED 24
#endif

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC 0xAA
#define USERFAULTFD_IOC_NEW _IO(USERFAULTFD_IOC, 0x00)
#endif

#endif

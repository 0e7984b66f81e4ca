#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Write the seed corpus of tests/fuzz/fuzz_proto.c into tests/fuzz/corpus/.

File names say what a file is and what must happen to it:
  native-ok-*.bin / native-bad-*.bin: byte 0 % 3 is the fd count that came
      with the message, the rest is the message (include/ufault/protocol.h);
  fc-ok-*.json / fc-bad-*.json: a Firecracker region list, whole;
  zlog-ok-*.bin / zlog-bad-*.bin: a removed-ranges log, whole.
test_proto replays every file and checks ok/bad. Integers are written in
host order, as ufaultd reads them, so regenerate on the machine that runs
the tests if it is not little-endian. Files this script does not write
(crashers found by fuzzing, kept by hand) are left alone.

Usage: make_corpus.py [DIR]   (default: corpus/ next to this script)
"""
import os
import struct
import sys

MAGIC = 0x544C4655
VERSION = 1
MAX_BODY = 4096
HELLO, REGISTER, UNREGISTER, STATS, LIST, SET_BUDGET, REPLY = 1, 2, 3, 4, 5, 6, 0x80
ZERO, FILE, SHARED = 0, 1, 2
P4K, P2M, P1G = 4096, 2 << 20, 1 << 30
VA_END = 1 << 47
U64 = (1 << 64) - 1


def hdr(mtype, length, seq=1, magic=MAGIC, version=VERSION):
    return struct.pack("=IHHII", magic, version, mtype, length, seq)


def msg(mtype, body=b"", nfds=0, seq=1, **kw):
    return bytes([nfds]) + hdr(mtype, len(body), seq, **kw) + body


def hello(features=0, resume=0, flags=0, reserved=0):
    return struct.pack("=QQII", features, resume, flags, reserved)


def region(start, length, offset=0, page=0, source=ZERO):
    return struct.pack("=QQQII", start, length, offset, page, source)


def rng(start, length):
    return struct.pack("=QQ", start, length)


def budget(client, nbytes):
    return struct.pack("=QQ", client, nbytes)


def reply(status=0, value=0, reserved=0):
    return struct.pack("=iIQ", status, reserved, value)


BASE = 0x7F0000000000

NATIVE = {
    # accepted
    "ok-hello": msg(HELLO, hello(features=0x1FF), nfds=1),
    "ok-hello-resume": msg(HELLO, hello(resume=42), nfds=0),
    "ok-hello-zeroed": msg(HELLO, hello(features=0x1FF, flags=1), nfds=2),
    "ok-register-zero": msg(REGISTER, region(BASE, 16 * P4K)),
    "ok-register-file": msg(REGISTER, region(BASE, 16 * P4K, 8 * P4K, P4K, FILE), nfds=1),
    "ok-register-2m": msg(REGISTER, region(BASE, 4 * P2M, P2M, P2M, FILE), nfds=1),
    "ok-register-shared": msg(REGISTER, region(BASE, 16 * P4K, 8 * P4K, 0, SHARED), nfds=2),
    "ok-register-1g": msg(REGISTER, region(1 << 40, P1G, 0, P1G)),
    "ok-register-top": msg(REGISTER, region(VA_END - P4K, P4K)),
    "ok-unregister": msg(UNREGISTER, rng(BASE, 16 * P4K)),
    "ok-stats": msg(STATS),
    "ok-list": msg(LIST, seq=0xFFFFFFFF),
    "ok-set-budget": msg(SET_BUDGET, budget(7, 1 << 30)),
    "ok-reply": msg(REPLY, reply(0, 9)),
    "ok-reply-error": msg(REPLY, reply(-22)),
    "ok-reply-stats": msg(REPLY, reply(0, 0) + struct.pack("=6Q", 10, 10, 0, 1, 900, 5000)),
    "ok-reply-max-body": msg(REPLY, reply(0, 0) + bytes(MAX_BODY - 16)),
    # refused
    "bad-empty": b"",
    "bad-short-header": msg(STATS)[:10],
    "bad-magic": msg(STATS, magic=0x464C5455),
    "bad-version": msg(STATS, version=2),
    "bad-body-over-max": msg(REPLY, reply() + bytes(MAX_BODY - 16 + 1)),
    "bad-truncated": msg(REGISTER, region(BASE, P4K))[:-1],
    "bad-trailing-byte": msg(STATS) + b"\0",
    "bad-unknown-type": msg(7),
    "bad-type-zero": msg(0),
    "bad-hello-short": msg(HELLO, hello()[:-1], nfds=1),
    "bad-hello-no-fd": msg(HELLO, hello(), nfds=0),
    "bad-hello-resume-fd": msg(HELLO, hello(resume=3), nfds=1),
    "bad-hello-flags": msg(HELLO, hello(flags=1), nfds=1),
    "bad-hello-flags-2": msg(HELLO, hello(flags=2), nfds=1),
    "bad-hello-zeroed-resume": msg(HELLO, hello(resume=3, flags=1), nfds=0),
    "bad-hello-two-fds": msg(HELLO, hello(), nfds=2),
    "bad-hello-reserved": msg(HELLO, hello(reserved=1), nfds=1),
    "bad-register-len0": msg(REGISTER, region(BASE, 0)),
    "bad-register-misaligned": msg(REGISTER, region(BASE + 512, P4K)),
    "bad-register-misaligned-2m": msg(REGISTER, region(BASE, P2M + P4K, 0, P2M)),
    "bad-register-offset-misaligned": msg(REGISTER, region(BASE, P4K, 1, P4K, FILE), nfds=1),
    "bad-register-wrap": msg(REGISTER, region(U64 - P4K + 1, 2 * P4K)),
    "bad-register-offset-wrap": msg(REGISTER, region(BASE, 2 * P4K, U64 - P4K + 1, 0, FILE), nfds=1),
    "bad-register-beyond-va": msg(REGISTER, region(VA_END - P4K, 2 * P4K)),
    "bad-register-page-3k": msg(REGISTER, region(BASE, 3 * 4096, 0, 3072)),
    "bad-register-page-2g": msg(REGISTER, region(0, 1 << 31, 0, 1 << 31)),
    "bad-register-page-1k": msg(REGISTER, region(BASE, P4K, 0, 1024)),
    "bad-register-source": msg(REGISTER, region(BASE, P4K, 0, 0, 3)),
    "bad-register-shared-one-fd": msg(REGISTER, region(BASE, P4K, 0, 0, SHARED), nfds=1),
    "bad-register-shared-2m": msg(REGISTER, region(BASE, P2M, 0, P2M, SHARED), nfds=2),
    "bad-register-file-no-fd": msg(REGISTER, region(BASE, P4K, 0, 0, FILE)),
    "bad-register-zero-fd": msg(REGISTER, region(BASE, P4K), nfds=1),
    "bad-unregister-len0": msg(UNREGISTER, rng(BASE, 0)),
    "bad-unregister-misaligned": msg(UNREGISTER, rng(BASE, 100)),
    "bad-unregister-wrap": msg(UNREGISTER, rng(U64 - P4K + 1, P4K)),
    "bad-stats-body": msg(STATS, b"\0" * 8),
    "bad-list-fd": msg(LIST, nfds=1),
    "bad-set-budget-client0": msg(SET_BUDGET, budget(0, 1 << 20)),
    "bad-reply-short": msg(REPLY, reply()[:12]),
    "bad-reply-reserved": msg(REPLY, reply(reserved=1)),
    "bad-reply-status": msg(REPLY, reply(status=5)),
}


def fc_region(base, size, offset, page=None, kib=None, order=None, sep=""):
    kv = [("base_host_virt_addr", base), ("size", size), ("offset", offset)]
    if page is not None:
        kv.append(("page_size", page))
    if kib is not None:
        kv.append(("page_size_kib", kib))
    if order:
        kv = [kv[i] for i in order]
    return "{" + ("," + sep).join('"%s":%s' % (k, v) for k, v in kv) + "}"


def fc_list(*regions, sep=""):
    return "[" + ("," + sep).join(regions) + "]"


def fc_layout(sizes, page, first=0x7F8E4A000000):
    # Firecracker's layout: offsets are the running sum of the sizes.
    out, base, off = [], first, 0
    for size in sizes:
        out.append(fc_region(base, size, off, page, page))
        base += size + (1 << 30)
        off += size
    return out


M = 1 << 20
FC = {
    # What Firecracker >= 1.12 sends (persist.rs field order, both keys, bytes).
    "ok-firecracker-1region": fc_list(fc_region(140251259760640, 128 * M, 0, 4096, 4096)),
    "ok-firecracker-3region-4k": fc_list(*fc_layout([3 * 1024 * M, 64 * M, 1024 * M], P4K)),
    "ok-firecracker-2m": fc_list(*fc_layout([256 * M, 512 * M], P2M)),
    # Firecracker 1.7 - 1.11: only page_size_kib (which holds bytes).
    "ok-page-size-kib-only": fc_list(fc_region(0x7F0000000000, 128 * M, 0, kib=4096)),
    "ok-page-size-only": fc_list(fc_region(0x7F0000000000, 128 * M, 0, page=4096)),
    "ok-1g": fc_list(fc_region(1 << 40, 2 << 30, 1 << 30, P1G, P1G)),
    "ok-keys-reordered": fc_list(
        fc_region(0x7F0000000000, 64 * M, 0, 4096, 4096, order=[4, 2, 0, 3, 1])),
    "ok-whitespace": " \n\t[ \r\n" + fc_list(
        fc_region(0x7F0000000000, 64 * M, 0, 4096, 4096, sep=" \n "),
        fc_region(0x7F0010000000, 64 * M, 64 * M, 4096, 4096, sep="\t"),
        sep="\n  ")[1:].replace(":", " : ") + " \n\r\t ",
    "ok-adjacent": fc_list(fc_region(0x10000, 0x1000, 0, 4096),
                           fc_region(0x11000, 0x1000, 0x1000, 4096)),
    "ok-128-regions": fc_list(*[fc_region(0x100000000 + i * 0x100000, 0x1000, i * 0x1000, 4096)
                                for i in range(128)]),
    "ok-max-u64-offset": fc_list(fc_region(0, 4096, 2**64 - 4096 * 2, 4096)),
    # refused
    "bad-empty-input": "",
    "bad-empty-array": "[]",
    "bad-empty-array-ws": "[ \n ]",
    "bad-empty-object": "[{}]",
    "bad-not-array": fc_region(0x10000, 0x1000, 0, 4096),
    "bad-overlap": fc_list(fc_region(0x10000, 0x3000, 0, 4096),
                           fc_region(0x12000, 0x1000, 0x3000, 4096)),
    "bad-overlap-contained": fc_list(fc_region(0x100000, 0x100000, 0, 4096),
                                     fc_region(0x0, 0x400000, 0x100000, 4096)),
    # Overlapping by one page, the later region below, then above.
    "bad-overlap-one-page-below": fc_list(fc_region(0x20000, 0x2000, 0, 4096),
                                          fc_region(0x10000, 0x11000, 0x2000, 4096)),
    "bad-overlap-one-page-above": fc_list(fc_region(0x10000, 0x11000, 0, 4096),
                                          fc_region(0x20000, 0x2000, 0x11000, 4096)),
    "bad-misaligned-base": fc_list(fc_region(0x10800, 0x1000, 0, 4096)),
    "bad-misaligned-2m": fc_list(fc_region(0x7F0000000000 + 4096, 2 * M, 0, P2M, P2M)),
    "bad-misaligned-offset": fc_list(fc_region(0x10000, 0x1000, 100, 4096)),
    "bad-size-zero": fc_list(fc_region(0x10000, 0, 0, 4096)),
    "bad-huge-number": fc_list(fc_region(18446744073709551616, 0x1000, 0, 4096)),
    "bad-huge-number-long": fc_list(fc_region("9" * 40, 0x1000, 0, 4096)),
    "bad-wrap": fc_list(fc_region(2**64 - 4096, 8192, 0, 4096)),
    "bad-offset-wrap": fc_list(fc_region(0, 8192, 2**64 - 4096, 4096)),
    "bad-unknown-key": fc_list(fc_region(0x10000, 0x1000, 0, 4096)[:-1] + ',"uffd":3}'),
    "bad-missing-offset": '[{"base_host_virt_addr":65536,"size":4096,"page_size":4096}]',
    "bad-missing-page-size": fc_list(fc_region(0x10000, 0x1000, 0)),
    "bad-duplicate-key": '[{"base_host_virt_addr":65536,"size":4096,"size":4096,'
                         '"offset":0,"page_size":4096}]',
    "bad-both-keys-disagree": fc_list(fc_region(0x10000, 0x1000, 0, 4096, 4)),
    "bad-page-size-kib-in-kib": fc_list(fc_region(0x10000, 0x1000, 0, kib=4)),
    "bad-page-not-pow2": fc_list(fc_region(0, 3 * 4096, 0, 3 * 4096)),
    "bad-page-2g": fc_list(fc_region(0, 1 << 31, 0, 1 << 31)),
    "bad-leading-zero": fc_list(fc_region("065536", 0x1000, 0, 4096)),
    "bad-negative": fc_list(fc_region(0x10000, 0x1000, "-4096", 4096)),
    "bad-fraction": fc_list(fc_region(0x10000, 0x1000, "0.0", 4096)),
    "bad-exponent": fc_list(fc_region(0x10000, "4e3", 0, 4096)),
    "bad-string-value": fc_list(fc_region(0x10000, '"4096"', 0, 4096)),
    "bad-escape": '[{"base_host_virt_addr":65536,"si\\u007ae":4096,"offset":0,'
                  '"page_size":4096}]',
    "bad-truncated": fc_list(fc_region(0x10000, 0x1000, 0, 4096))[:-3],
    "bad-truncated-array": fc_list(fc_region(0x10000, 0x1000, 0, 4096))[:-1],
    "bad-trailing-garbage": fc_list(fc_region(0x10000, 0x1000, 0, 4096)) + " x",
    "bad-two-arrays": fc_list(fc_region(0x10000, 0x1000, 0, 4096)) * 2,
    "bad-trailing-comma": fc_list(fc_region(0x10000, 0x1000, 0, 4096))[:-1] + ",]",
    "bad-trailing-comma-object": fc_list(fc_region(0x10000, 0x1000, 0, 4096))[:-2] + ",}]",
    "bad-nul": fc_list(fc_region(0x10000, 0x1000, 0, 4096)) + "\0",
    "bad-129-regions": fc_list(*[fc_region(0x100000000 + i * 0x100000, 0x1000, i * 0x1000, 4096)
                                 for i in range(129)]),
}

ZLOG_MAGIC = 0x5A444655
ZLOG_MAX = 65536


def zlog(ranges, count=None, magic=ZLOG_MAGIC, reserved=0):
    n = len(ranges) if count is None else count
    return struct.pack("=IIQ", magic, n, reserved) + b"".join(
        struct.pack("=QQ", s, e) for s, e in ranges)


ZLOG = {
    "ok-empty": zlog([]),
    "ok-one": zlog([(0x10000, 0x20000)]),
    "ok-two-overlapping": zlog([(0x10000, 0x30000), (0x20000, 0x40000)]),
    "ok-top": zlog([(VA_END - P4K, VA_END)]),
    "ok-tail-bytes": zlog([(0x10000, 0x20000)]) + b"\x01\x02\x03",
    "bad-short-head": zlog([])[:15],
    "bad-magic": zlog([(0x10000, 0x20000)], magic=ZLOG_MAGIC ^ 1),
    "bad-reserved": zlog([(0x10000, 0x20000)], reserved=1),
    "bad-count-past-end": zlog([(0x10000, 0x20000)], count=2),
    "bad-count-over-max": zlog([], count=ZLOG_MAX + 1),
    "bad-empty-range": zlog([(0x10000, 0x10000)]),
    "bad-reversed": zlog([(0x20000, 0x10000)]),
    "bad-unaligned-start": zlog([(0x10001, 0x20000)]),
    "bad-unaligned-end": zlog([(0x10000, 0x20001)]),
    "bad-past-va-end": zlog([(VA_END - P4K, VA_END + P4K)]),
    "bad-second-range": zlog([(0x10000, 0x20000), (U64 - P4K + 1, 0)]),
}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "corpus")
    os.makedirs(out, exist_ok=True)
    files = {"native-%s.bin" % k: v for k, v in NATIVE.items()}
    files.update({"fc-%s.json" % k: v.encode("ascii") for k, v in FC.items()})
    files.update({"zlog-%s.bin" % k: v for k, v in ZLOG.items()})
    for name, data in sorted(files.items()):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print("make_corpus: %d files in %s" % (len(files), out))


if __name__ == "__main__":
    main()

# SPDX-License-Identifier: MIT
# heavy.py - a memory-heavy python3 script for the preload shim's test and
# benchmark (tests/preload/run_preload.sh, bench/preload_programs.sh):
# 256 MiB of private anonymous memory written sparsely (every 7th page)
# and read whole, then many small objects (obmalloc's 1 MiB arenas).
# Prints a digest of everything.
import hashlib
import mmap

m = mmap.mmap(-1, 256 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for i in range(0, len(m), 4096 * 7):
    m[i:i + 8] = (i * 2654435761 % (1 << 64)).to_bytes(8, "little")
h = hashlib.sha256()
for i in range(0, len(m), 1 << 20):
    h.update(m[i:i + (1 << 20)])
m.close()
d = {i: str(i) * 3 for i in range(400000)}
h.update(repr(sum(len(v) for v in d.values())).encode())
print(h.hexdigest())

-- SPDX-License-Identifier: MIT
-- rows.sql - sqlite3 for the preload shim's test and benchmark
-- (tests/preload/run_preload.sh, bench/preload_programs.sh): a 200k-row
-- table built with mmap_size 256 MiB, indexed and queried.
PRAGMA mmap_size = 268435456;
CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, v TEXT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000)
INSERT INTO t SELECT i, (i * 7919) % 1000, printf('%08d-%s', i, hex(i * 2654435761)) FROM n;
CREATE INDEX tk ON t(k);
SELECT count(*), sum(k), max(length(v)) FROM t;
SELECT k, count(*), min(v) FROM t WHERE k % 97 = 3 GROUP BY k ORDER BY k;
SELECT sum(id) FROM t WHERE v LIKE '%ABC%';

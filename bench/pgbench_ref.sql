-- The reference transaction of sagabench (docs/PERFORMANCE.md): what one
-- saga transition costs at the least in PostgreSQL, one row updated and one
-- row inserted in a durable commit. Run by
--   pgbench -n -c 64 -j 2 -T 20 -f pgbench_ref.sql
-- on tables bench_accounts (100,000 rows) and bench_history, which
-- sagabench creates in a database of their own.
\set aid random(1, 100000)
\set delta random(-5000, 5000)
BEGIN;
UPDATE bench_accounts SET balance = balance + :delta WHERE aid = :aid;
INSERT INTO bench_history (aid, delta, mtime) VALUES (:aid, :delta, CURRENT_TIMESTAMP);
COMMIT;

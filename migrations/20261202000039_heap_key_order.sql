-- Rewrite the batch pipelines' largest tables once in key order.
--
-- A batch run rewrites every row of these tables with one MERGE, updating each row where
-- it lies (heap-only, fillfactor 50). The pipelines now produce their rows in key order,
-- so a heap in key order is updated page after page. The rows written before this
-- migration lie in the order of an earlier run's hash map, and their update evicted and
-- re-read a page of a table larger than the buffer pool at nearly every row: 34.6 s
-- against 13.1 s for the MERGE of 2.65 M send slots at 1 M customers (EXPLAIN ANALYZE,
-- docs/benchmarks.md). CLUSTER keeps each table's fillfactor. It holds an exclusive
-- lock on each table while it rewrites it: seconds per million rows.

cluster customer_send_slots using customer_send_slots_pkey;
cluster customer_engagement_scores using customer_engagement_scores_pkey;
cluster customer_predictive_scores using customer_predictive_scores_pkey;

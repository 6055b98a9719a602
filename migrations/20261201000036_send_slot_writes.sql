-- The send_times pipeline rewrites every customer's send slots each batch run with one
-- MERGE (pipelines::store::replace_customer_rows): a slot present again is updated in
-- place. With room left on each page (fillfactor 50) and no index on the updated columns
-- (sends, responses, expected, as_of) the update is heap-only: no index entry and no
-- foreign-key check per row. Delete + insert re-checked both foreign keys and re-inserted
-- into both indexes per row: 67.8 s for 2.65 M slots at 1 M customers.
alter table customer_send_slots set (fillfactor = 50);

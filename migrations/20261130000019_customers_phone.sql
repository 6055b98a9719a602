-- An inbound SMS names only the sender's number: `delivery::suppressions::apply_sms_keyword`
-- finds its customers across tenants by phone, which without this index reads the whole
-- table for every reply.
create index crm_customers_phone_idx on crm_customers (phone) where phone is not null;

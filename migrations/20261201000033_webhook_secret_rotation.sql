-- Rotating a webhook endpoint's secret: for a day after a rotation deliveries carry a
-- signature by the old secret beside the new one (Standard Webhooks lists several), so a
-- receiver can switch without missing a delivery.
alter table webhook_endpoints
  add column previous_secret text,
  add column previous_secret_until timestamptz;

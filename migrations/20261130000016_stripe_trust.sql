-- A Stripe event changes one order, of the tenant it belongs to, after its amount and
-- currency are checked (api::stripe). A Checkout Session pays one order, like a
-- PaymentIntent; refunds are amounts, and an order is `refunded` only when all of it is.
-- Events the webhook could not apply are kept with why, for an operator, and answered 200
-- so Stripe does not retry them forever.
alter table orders
  add column refunded_minor bigint not null default 0,
  add constraint orders_refunded_check check (refunded_minor >= 0 and refunded_minor <= amount_minor);
create unique index orders_stripe_checkout_session_key on orders (stripe_checkout_session_id)
  where stripe_checkout_session_id is not null;

alter table stripe_events
  add column outcome text not null default 'applied',
  add column detail text,
  add column order_id uuid,
  add column tenant_id uuid,
  add constraint stripe_events_outcome_check check (outcome in ('applied', 'ignored', 'unmatched', 'conflict'));
create index stripe_events_conflict_idx on stripe_events (processed_at) where outcome = 'conflict';

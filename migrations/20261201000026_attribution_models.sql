-- Three more attribution models beside last touch and linear (docs/metrics.md): first
-- touch, time decay and position-based (40/20/40). Revenue in integer minor units that
-- sum to each order; orders credited as fractions for the weighted models. Rows computed
-- before this migration read 0 until the next ROI run.
alter table campaign_roi
  add column first_touch_orders bigint not null default 0,
  add column first_touch_revenue_minor bigint not null default 0,
  add column first_touch_roi double precision,
  add column time_decay_orders double precision not null default 0,
  add column time_decay_revenue_minor bigint not null default 0,
  add column time_decay_roi double precision,
  add column position_orders double precision not null default 0,
  add column position_revenue_minor bigint not null default 0,
  add column position_roi double precision,
  add column decay_half_life_days double precision not null default 7;

-- A/B tests with an automatic winner and send-time optimisation (issue #21).

-- `ab_test`: the test as the API checked it ({variants: [{name, template_id}], test_share,
-- metric, wait_minutes, seed}); null for a campaign without one. `ab_decision`: what the
-- decision found (per-variant counts and rates, the winner, z, p-value, whether it is
-- significant), written once. `send_time`: `immediate`, or `best_hour` (each recipient at
-- their best hour within the next 24 hours, from `customer_send_slots`).
alter table outbound_campaigns
  add column ab_test jsonb,
  add column ab_decision jsonb,
  add column send_time text not null default 'immediate',
  add constraint outbound_campaigns_send_time_check check (send_time in ('immediate', 'best_hour'));

-- The variant (position in `ab_test.variants`) a recipient is sent. A recipient outside
-- the test's share waits for the winner: no variant, `not_before` = 'infinity' (dispatch
-- and the sweep pass it over), until the decision gives it the winner and releases it.
alter table outbound_campaign_recipients
  add column variant smallint,
  add constraint outbound_campaign_recipients_variant_check check (variant between 0 and 3);

-- Each customer's sends, responses and expected responses (each send's campaign's
-- response rate, summed) per hour of the week in their local time (slot = (ISO weekday -
-- 1) * 24 + hour, 0-167), written by the `send_times` pipeline from the lake; the tenant's
-- totals per slot are its prior. Only slots with a send are stored.
create table customer_send_slots (
  tenant_id uuid not null references tenants (id) on delete cascade,
  customer_id uuid not null references crm_customers (id) on delete cascade,
  slot smallint not null,
  sends integer not null,
  responses integer not null,
  expected double precision not null,
  as_of timestamptz not null,
  primary key (customer_id, slot),
  constraint customer_send_slots_slot_check check (slot between 0 and 167),
  constraint customer_send_slots_counts_check check (sends > 0 and responses between 0 and sends)
);
create index customer_send_slots_tenant_idx on customer_send_slots (tenant_id);
select app_enable_tenant_rls('customer_send_slots');

create table tenant_send_slots (
  tenant_id uuid not null references tenants (id) on delete cascade,
  slot smallint not null,
  sends bigint not null,
  responses bigint not null,
  expected double precision not null,
  -- The tenant's estimated response ratio in the slot (responses over expected responses,
  -- shrunk toward the tenant's ratio at that hour of day, shrunk toward its overall ratio;
  -- docs/metrics.md): the prior of each customer of the tenant. Every slot has a row once
  -- the tenant has a send.
  rate double precision not null,
  as_of timestamptz not null,
  primary key (tenant_id, slot),
  constraint tenant_send_slots_slot_check check (slot between 0 and 167),
  constraint tenant_send_slots_rate_check check (rate >= 0)
);
select app_enable_tenant_rls('tenant_send_slots');

alter table pipeline_runs
  drop constraint pipeline_runs_pipeline_check,
  add constraint pipeline_runs_pipeline_check
    check (pipeline in ('engagement', 'roi', 'predictive', 'analytics', 'send_times'));

-- The zone a local time is read in: `tz` when Postgres knows it, else `fallback`, else UTC
-- (a zone written around the API delays nothing and fails no start).
create function app_zone(tz text, fallback text)
  returns text
  language plpgsql stable
  as $$
declare
  zone text;
begin
  foreach zone in array array[tz, fallback] loop
    continue when zone is null;
    begin
      perform now() at time zone zone;
      return zone;
    exception when invalid_parameter_value then
      null;
    end;
  end loop;
  return 'UTC';
end
$$;

-- The hour-of-week slot of a local time.
create function app_week_slot(local_at timestamp)
  returns smallint
  language sql immutable
  as $$ select ((extract(isodow from local_at)::int - 1) * 24 + extract(hour from local_at)::int)::smallint $$;

-- Each customer's best moment within the 24 hours after `at` (customers, their tenants
-- and zones as parallel arrays; one row per distinct customer): of the current local hour
-- and the next 23 local hour starts, the one whose slot has the highest estimated
-- response ratio, the earliest on a tie; the current hour means `at` itself. The estimate
-- (docs/metrics.md, "Send-time optimisation"): the customer's responses over expected
-- responses in the slot, shrunk toward their ratio at that hour of day on any weekday,
-- shrunk toward the tenant's ratio in the slot (`tenant_send_slots.rate`, itself shrunk
-- toward the tenant's hour of day and overall ratio), 10 pseudo-responses each (one
-- response where a third was expected must not outweigh the tenant's hours); a tenant
-- without history has the neutral prior 1, so a customer without history ties everywhere
-- (now). Local hour starts converted back through the zone land on the right instant
-- across DST changes (a skipped local hour resolves forward). Set-based (hash joins over
-- 24 rows per customer), so a large audience is timed in one statement.
create function app_best_send_times(at timestamptz, tenants uuid[], customers uuid[], zones text[])
  returns table (customer_id uuid, send_at timestamptz)
  language sql stable
  as $$
    with who as (
      select distinct on (w.customer_id) w.tenant_id, w.customer_id, w.zone
      from unnest(tenants, customers, zones) as w (tenant_id, customer_id, zone)
    ), hours as (
      select w.tenant_id, w.customer_id, w.zone, k,
             date_trunc('hour', at at time zone w.zone) + make_interval(hours => k) as local_at
      from who w cross join generate_series(0, 23) as k
    ), slotted as (
      select h.*, app_week_slot(h.local_at) as slot from hours h
    ), own_hours as (
      select d.customer_id, d.slot % 24 as hour, sum(d.responses) as responses, sum(d.expected) as expected
      from customer_send_slots d where d.customer_id in (select w.customer_id from who w)
      group by 1, 2
    ), rated as (
      select s.customer_id, s.k, s.local_at, s.zone,
        (coalesce(cs.responses, 0)
         + 10.0 * ((coalesce(oh.responses, 0) + 10.0 * coalesce(ts.rate, 1.0)) / (coalesce(oh.expected, 0) + 10.0)))
        / (coalesce(cs.expected, 0) + 10.0) as rate
      from slotted s
      left join tenant_send_slots ts on ts.tenant_id = s.tenant_id and ts.slot = s.slot
      left join customer_send_slots cs on cs.customer_id = s.customer_id and cs.slot = s.slot
      left join own_hours oh on oh.customer_id = s.customer_id and oh.hour = s.slot % 24
    )
    select distinct on (r.customer_id) r.customer_id,
           case when r.k = 0 then at else greatest(at, r.local_at at time zone r.zone) end
    from rated r order by r.customer_id, r.rate desc, r.k
  $$;

-- One customer's best moment (`app_best_send_times` for one).
create function app_best_send_at(at timestamptz, tenant uuid, customer uuid, zone text)
  returns timestamptz
  language sql stable
  as $$ select send_at from app_best_send_times(at, array[tenant], array[customer], array[zone]) $$;

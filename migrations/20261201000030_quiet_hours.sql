-- Quiet hours (issue #21): per tenant and channel, a daily window in the customer's local
-- time when no message goes out; a send that falls inside waits until the window ends.
-- Local time is the customer's `timezone`, else the policy's (the tenant's default).
alter table crm_customers add column timezone text;

alter table contact_policies
  add column quiet_start smallint,
  add column quiet_end smallint,
  add column timezone text not null default 'UTC',
  add constraint contact_policies_quiet_whole check ((quiet_start is null) = (quiet_end is null)),
  add constraint contact_policies_quiet_minutes check (
    quiet_start between 0 and 1439 and quiet_end between 0 and 1439 and quiet_start <> quiet_end);

-- A recipient whose send waits (quiet hours) is pending again with the time it may go.
alter table outbound_campaign_recipients add column not_before timestamptz;

-- When `at` falls in the daily window [start_min, end_min) (minutes after local midnight;
-- a window may wrap midnight, 21:00-08:00) in zone `tz`, the instant the window ends;
-- otherwise null. A zone Postgres does not know falls back to `fallback` (the policy's),
-- so a bad value written around the API delays nothing forever and fails no send.
-- Local midnight plus minutes, converted back through the zone, lands on the right UTC
-- instant across DST changes (a local time skipped by the change resolves forward).
create function app_quiet_until(at timestamptz, tz text, fallback text, start_min integer, end_min integer)
  returns timestamptz
  language plpgsql stable
  as $$
declare
  local_at timestamp;
  m integer;
  zone text := coalesce(tz, fallback);
begin
  if start_min is null or end_min is null then
    return null;
  end if;
  begin
    local_at := at at time zone zone;
  exception when invalid_parameter_value then
    zone := fallback;
    local_at := at at time zone zone;
  end;
  m := extract(hour from local_at)::integer * 60 + extract(minute from local_at)::integer;
  if (start_min < end_min and m >= start_min and m < end_min)
     or (start_min > end_min and (m >= start_min or m < end_min)) then
    return (date_trunc('day', local_at) + make_interval(mins => end_min)
            + case when m >= end_min then interval '1 day' else interval '0' end) at time zone zone;
  end if;
  return null;
end
$$;

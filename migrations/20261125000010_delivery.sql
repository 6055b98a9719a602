-- Outbound delivery: recipients are claimed by one send at a time, customers can opt out,
-- campaigns remember their dispatch batch, and the scheduler records each task run.

alter table outbound_campaign_recipients
  -- The job run that holds the recipient (a send in progress) and since when. A claim
  -- older than the queue's retry_after belongs to a worker that died; it may be retaken.
  add column claim_token uuid,
  add column claimed_at timestamptz,
  add column bounced_at timestamptz,
  add column unsubscribed_at timestamptz;
create index outbound_campaign_recipients_open_idx on outbound_campaign_recipients (campaign_id)
  where status in ('pending', 'queued');

-- Marketing opt-out (unsubscribe link or List-Unsubscribe one-click): no campaign reaches
-- the customer again until it is cleared.
alter table crm_customers add column unsubscribed_at timestamptz;

alter table outbound_campaigns add column last_batch_id uuid references job_batches (id) on delete set null;

-- One row per scheduled task per tick: the unique key is how two scheduler processes agree
-- that only one of them runs a tick.
create table scheduled_task_runs (
  id bigint generated always as identity primary key,
  task text not null,
  tick timestamptz not null,
  instance text not null,
  started_at timestamptz not null default now(),
  finished_at timestamptz,
  outcome text,
  detail text,
  constraint scheduled_task_runs_task_tick_key unique (task, tick),
  constraint scheduled_task_runs_outcome_check check (outcome is null or outcome in ('ok', 'failed', 'skipped_overlap'))
);
create index scheduled_task_runs_task_idx on scheduled_task_runs (task, started_at desc);

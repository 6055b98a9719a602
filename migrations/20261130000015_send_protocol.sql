-- The at-most-once send protocol (delivery::campaigns::store). A send claims its recipient
-- and records the attempt (`sending`, `attempted_at`) in one committed transaction before
-- it calls the provider; a claim is never taken over. An outcome the provider may or may
-- not have acted on (a timeout after the request went out, an unreadable answer, a worker
-- that died mid-call) leaves the recipient `unknown`: visible, counted, never re-sent.
alter table outbound_campaign_recipients
  drop constraint outbound_campaign_recipients_status_check,
  add constraint outbound_campaign_recipients_status_check check (status in (
    'pending', 'queued', 'sending', 'unknown', 'sent', 'delivered', 'opened', 'clicked', 'replied',
    'answered', 'voicemail', 'failed', 'bounced', 'unsubscribed')),
  add column attempted_at timestamptz;

-- The sweeps look for attempts that outlived their claim and for queued recipients whose
-- job a Redis failure may have lost; both are rare, so the indexes are partial.
create index outbound_campaign_recipients_sending_idx on outbound_campaign_recipients (claimed_at)
  where status = 'sending';
create index outbound_campaign_recipients_queued_idx on outbound_campaign_recipients (queued_at)
  where status = 'queued';
drop index outbound_campaign_recipients_open_idx;
create index outbound_campaign_recipients_open_idx on outbound_campaign_recipients (campaign_id)
  where status in ('pending', 'queued', 'sending');

-- SES events arrive as signed SNS messages (issue 15). Each SNS message is applied once:
-- its MessageId is recorded in the transaction that applies it, so a retry or a replay
-- within the accepted age changes nothing. The table names no tenant (a message is the
-- platform's, its event may concern any tenant's recipient); old rows are pruned by the
-- scheduler once no replay could pass the age check.
create table sns_messages (
  message_id text primary key,
  topic_arn text not null,
  type text not null,
  event_type text,
  outcome text not null,
  tenant_id uuid,
  received_at timestamptz not null default now(),
  constraint sns_messages_outcome_check check (outcome in ('applied', 'unknown_message', 'ignored', 'confirmed'))
);
create index sns_messages_received_at_idx on sns_messages (received_at);

-- A complaint is not a status (the message was delivered) but a rate of its own, in the
-- campaign's analytics and in the daily read model.
alter table outbound_campaign_recipients add column complained_at timestamptz;
alter table analytics_daily_campaigns add column complained bigint not null default 0;

alter table customer_activities
  drop constraint customer_activities_type_check,
  add constraint customer_activities_type_check check (activity_type in (
    'page_view', 'article_read', 'faq_read', 'knowledge_view', 'presentation_view',
    'survey_response', 'email_open', 'email_click', 'email_reply', 'sms_reply',
    'call_answered', 'unsubscribe', 'chat_message', 'purchase', 'sales_contact',
    'machine_open', 'machine_click', 'email_bounce', 'email_complaint', 'email_delayed'));

-- Machine opens and clicks (scanners, prefetchers) are shown beside the human ones in the
-- campaign read model (issue 15: both counts in the analytics responses).
alter table analytics_daily_campaigns
  add column machine_opens bigint not null default 0,
  add column machine_clicks bigint not null default 0;

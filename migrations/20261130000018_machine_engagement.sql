-- Opens and clicks made by link scanners and prefetchers (a HEAD request, a scanner's user
-- agent) are kept as their own activity types: recorded, but out of the recipients'
-- milestones, the rates and the engagement score, which count people (issue 15).
alter table customer_activities
  drop constraint customer_activities_type_check,
  add constraint customer_activities_type_check check (activity_type in (
    'page_view', 'article_read', 'faq_read', 'knowledge_view', 'presentation_view',
    'survey_response', 'email_open', 'email_click', 'email_reply', 'sms_reply',
    'call_answered', 'unsubscribe', 'chat_message', 'purchase', 'sales_contact',
    'machine_open', 'machine_click'));

//! Segments: saved audiences as a small typed rule language (JSON), evaluated in Postgres.
//!
//! ```json
//! {"all": [
//!   {"field": "engagement_score", "op": "gte", "value": 40},
//!   {"field": "purchase_probability", "op": "gte", "value": 0.3},
//!   {"field": "last_order", "op": "not_within_days", "value": 60},
//!   {"field": "suppressed", "op": "is", "value": false}
//! ]}
//! ```
//!
//! A rule is `{"all": [rules]}`, `{"any": [rules]}`, `{"not": rule}` or a condition
//! `{"field", "op", "value"}` (see [`FIELDS`]). [`Rule::parse`] reports every problem with
//! its path (`rules.all[2].value`); a parsed rule compiles to a `WHERE` clause over
//! `crm_customers c` whose every value is a bind parameter ([`Rule::push_sql`]).
//!
//! Why Postgres and not the lake: every input a rule reads is there, current, and
//! indexed — the scores are the pipelines' write-back (`customer_engagement_scores`,
//! `customer_predictive_scores`), orders, activities, suppressions and consents are the
//! platform's own tables — and a count preview must answer while a user edits the rule.
//! The lake would add the capture's lag and a scan per preview for nothing it alone knows.

use chrono::{DateTime, Utc};
use fibonacco_platform::TenantId;
use serde_json::Value;
use sqlx::{PgConnection, Postgres, QueryBuilder};
use uuid::Uuid;

/// Nesting depth and conditions a rule may have.
pub const MAX_DEPTH: usize = 6;
pub const MAX_CONDITIONS: usize = 50;
const MAX_TEXT: usize = 200;
/// Days a relative window may span (ten years).
const MAX_DAYS: i64 = 3650;

/// The fields a condition may name, with their operators (for the API's description).
pub const FIELDS: &[(&str, &str)] = &[
    ("name, email, phone, metadata.<key>", "eq, neq, contains, starts_with (text, any case), set, not_set"),
    ("tags", "has, lacks (a tag in metadata.tags)"),
    ("engagement_score", "gt, gte, lt, lte (0-100; a customer without a score matches none)"),
    ("purchase_probability", "gt, gte, lt, lte (0-1; a customer without a score matches none)"),
    ("created_at", "before, after (date-time), within_days, older_than_days (days)"),
    ("last_order", "within_days, not_within_days (a paid order in the last N days, or none), ever, never"),
    ("last_activity", "within_days, not_within_days; optional activity_type"),
    ("suppressed", "is true/false (the customer's e-mail or phone is suppressed)"),
    ("unsubscribed", "is true/false"),
    ("consent.email, consent.sms, consent.phone", "is true/false (opted in on the channel)"),
];

#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    All(Vec<Rule>),
    Any(Vec<Rule>),
    Not(Box<Rule>),
    Cond(Condition),
}

#[derive(Debug, Clone, PartialEq)]
pub enum TextField {
    Name,
    Email,
    Phone,
    Metadata(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextOp {
    Eq,
    Neq,
    Contains,
    StartsWith,
    Set,
    NotSet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Score {
    Engagement,
    PurchaseProbability,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recency {
    WithinDays(i64),
    NotWithinDays(i64),
    Ever,
    Never,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Text { field: TextField, op: TextOp, value: String },
    Tag { has: bool, tag: String },
    Score { score: Score, cmp: Cmp, value: f64 },
    CreatedBefore(DateTime<Utc>),
    CreatedAfter(DateTime<Utc>),
    CreatedWithinDays(i64),
    CreatedOlderThanDays(i64),
    LastOrder(Recency),
    LastActivity { recency: Recency, activity_type: Option<String> },
    Suppressed(bool),
    Unsubscribed(bool),
    Consent { channel: &'static str, granted: bool },
}

/// Problems with a rule: (path, message), every one found.
pub type RuleErrors = Vec<(String, String)>;

impl Rule {
    /// Parses and checks a rule; `root` names it in the paths (`rules`).
    pub fn parse(value: &Value, root: &str) -> Result<Self, RuleErrors> {
        let mut errors = Vec::new();
        let mut conditions = 0;
        let rule = parse_rule(value, root, 1, &mut conditions, &mut errors);
        if conditions > MAX_CONDITIONS {
            errors.push((root.to_owned(), format!("has {conditions} conditions; at most {MAX_CONDITIONS}")));
        }
        match rule {
            Some(rule) if errors.is_empty() => Ok(rule),
            _ => Err(errors),
        }
    }

    /// Appends the rule as a boolean SQL expression over `crm_customers c`.
    pub fn push_sql(&self, q: &mut QueryBuilder<Postgres>) {
        match self {
            Rule::All(rules) | Rule::Any(rules) => {
                let joiner = if matches!(self, Rule::All(_)) { " and " } else { " or " };
                q.push("(");
                for (i, r) in rules.iter().enumerate() {
                    if i > 0 {
                        q.push(joiner);
                    }
                    r.push_sql(q);
                }
                q.push(")");
            }
            Rule::Not(rule) => {
                // `not` of a condition on a missing value (null) must be true, not null.
                q.push("(not coalesce(");
                rule.push_sql(q);
                q.push(", false))");
            }
            Rule::Cond(c) => c.push_sql(q),
        }
    }
}

impl Condition {
    fn push_sql(&self, q: &mut QueryBuilder<Postgres>) {
        match self {
            Condition::Text { field, op, value } => {
                q.push("(");
                match op {
                    TextOp::Eq => {
                        q.push("lower(");
                        push_text_field(q, field);
                        q.push(") = lower(").push_bind(value.clone()).push(")");
                    }
                    TextOp::Neq => {
                        q.push("lower(coalesce(");
                        push_text_field(q, field);
                        q.push(", '')) <> lower(").push_bind(value.clone()).push(")");
                    }
                    TextOp::Contains | TextOp::StartsWith => {
                        let lead = if *op == TextOp::Contains { "%" } else { "" };
                        push_text_field(q, field);
                        q.push(" ilike ").push_bind(format!("{lead}{}%", like_escape(value))).push(" escape '\\'");
                    }
                    TextOp::Set | TextOp::NotSet => {
                        q.push("coalesce(");
                        push_text_field(q, field);
                        q.push(if *op == TextOp::Set { ", '') <> ''" } else { ", '') = ''" });
                    }
                }
                q.push(")");
            }
            Condition::Tag { has, tag } => {
                q.push(if *has { "(" } else { "(not " });
                q.push("coalesce(jsonb_typeof(c.metadata -> 'tags') = 'array' and (c.metadata -> 'tags') ? ")
                    .push_bind(tag.clone())
                    .push(", false))");
            }
            Condition::Score { score, cmp, value } => {
                let (table, column) = match score {
                    Score::Engagement => ("customer_engagement_scores", "score"),
                    Score::PurchaseProbability => ("customer_predictive_scores", "probability"),
                };
                let op = match cmp {
                    Cmp::Gt => " > ",
                    Cmp::Gte => " >= ",
                    Cmp::Lt => " < ",
                    Cmp::Lte => " <= ",
                };
                q.push(format!("exists (select 1 from {table} s where s.customer_id = c.id and s.{column}{op}"))
                    .push_bind(*value)
                    .push("::double precision)");
            }
            Condition::CreatedBefore(t) => {
                q.push("c.created_at < ").push_bind(*t);
            }
            Condition::CreatedAfter(t) => {
                q.push("c.created_at > ").push_bind(*t);
            }
            Condition::CreatedWithinDays(d) => {
                q.push("c.created_at >= now() - make_interval(days => ").push_bind(*d as i32).push(")");
            }
            Condition::CreatedOlderThanDays(d) => {
                q.push("c.created_at < now() - make_interval(days => ").push_bind(*d as i32).push(")");
            }
            Condition::LastOrder(recency) => {
                recency_sql(
                    q,
                    *recency,
                    "select 1 from orders o where o.tenant_id = c.tenant_id and o.customer_id = c.id and o.paid_at is not null",
                    "o.paid_at",
                    None,
                );
            }
            Condition::LastActivity { recency, activity_type } => {
                recency_sql(
                    q,
                    *recency,
                    "select 1 from customer_activities a where a.tenant_id = c.tenant_id and a.customer_id = c.id",
                    "a.occurred_at",
                    activity_type.as_deref(),
                );
            }
            Condition::Suppressed(yes) => {
                q.push(if *yes { "exists" } else { "not exists" }).push(
                    " (select 1 from outbound_suppressions x where x.tenant_id = c.tenant_id
                       and ((x.channel = 'email' and x.target = lower(c.email)) or (x.channel = 'phone' and x.target = c.phone)))",
                );
            }
            Condition::Unsubscribed(yes) => {
                q.push(if *yes { "c.unsubscribed_at is not null" } else { "c.unsubscribed_at is null" });
            }
            Condition::Consent { channel, granted } => {
                q.push(if *granted { "exists" } else { "not exists" })
                    .push(" (select 1 from customer_consents k where k.tenant_id = c.tenant_id and k.customer_id = c.id and k.granted and k.channel = ")
                    .push_bind(*channel)
                    .push(")");
            }
        }
    }
}

fn push_text_field(q: &mut QueryBuilder<Postgres>, field: &TextField) {
    match field {
        TextField::Name => q.push("c.name"),
        TextField::Email => q.push("c.email"),
        TextField::Phone => q.push("c.phone"),
        TextField::Metadata(key) => q.push("(c.metadata ->> ").push_bind(key.clone()).push(")"),
    };
}

fn recency_sql(q: &mut QueryBuilder<Postgres>, recency: Recency, from: &str, at: &str, activity_type: Option<&str>) {
    let (negate, days) = match recency {
        Recency::WithinDays(d) => (false, Some(d)),
        Recency::NotWithinDays(d) => (true, Some(d)),
        Recency::Ever => (false, None),
        Recency::Never => (true, None),
    };
    q.push(if negate { "not exists (" } else { "exists (" }).push(from);
    if let Some(d) = days {
        q.push(format!(" and {at} >= now() - make_interval(days => ")).push_bind(d as i32).push(")");
    }
    if let Some(t) = activity_type {
        q.push(" and a.activity_type = ").push_bind(t.to_owned());
    }
    q.push(")");
}

fn like_escape(raw: &str) -> String {
    raw.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

fn parse_rule(v: &Value, path: &str, depth: usize, n: &mut usize, errors: &mut RuleErrors) -> Option<Rule> {
    let Some(obj) = v.as_object() else {
        errors.push((
            path.to_owned(),
            "must be an object: {\"all\": […]}, {\"any\": […]}, {\"not\": …} or a condition".into(),
        ));
        return None;
    };
    if depth > MAX_DEPTH {
        errors.push((path.to_owned(), format!("nests deeper than {MAX_DEPTH} levels")));
        return None;
    }
    let group = |key: &str, errors: &mut RuleErrors, n: &mut usize| -> Option<Vec<Rule>> {
        let at = format!("{path}.{key}");
        let Some(items) = obj[key].as_array().filter(|a| !a.is_empty()) else {
            errors.push((at, "must be a non-empty list of rules".into()));
            return None;
        };
        let parsed: Vec<Option<Rule>> =
            items.iter().enumerate().map(|(i, r)| parse_rule(r, &format!("{at}[{i}]"), depth + 1, n, errors)).collect();
        parsed.into_iter().collect()
    };
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    match keys.as_slice() {
        ["all"] => group("all", errors, n).map(Rule::All),
        ["any"] => group("any", errors, n).map(Rule::Any),
        ["not"] => {
            parse_rule(&obj["not"], &format!("{path}.not"), depth + 1, n, errors).map(|r| Rule::Not(Box::new(r)))
        }
        _ if obj.contains_key("field") => {
            *n += 1;
            parse_condition(obj, path, errors).map(Rule::Cond)
        }
        _ => {
            errors
                .push((path.to_owned(), "must have exactly one of all, any, not, or be a condition with field".into()));
            None
        }
    }
}

fn parse_condition(obj: &serde_json::Map<String, Value>, path: &str, errors: &mut RuleErrors) -> Option<Condition> {
    let mut fail = |key: &str, message: String| {
        errors.push((format!("{path}.{key}"), message));
        None
    };
    for key in obj.keys() {
        if !["field", "op", "value", "activity_type"].contains(&key.as_str()) {
            return fail(key, "is not a condition's key (field, op, value, activity_type)".into());
        }
    }
    let Some(field) = obj["field"].as_str() else { return fail("field", "must be a string".into()) };
    let Some(op) = obj.get("op").and_then(Value::as_str) else { return fail("op", "must be a string".into()) };
    let value = obj.get("value").unwrap_or(&Value::Null);
    let text = |v: &Value| -> Result<String, String> {
        match v.as_str() {
            Some(s) if !s.is_empty() && s.chars().count() <= MAX_TEXT && !s.chars().any(char::is_control) => {
                Ok(s.to_owned())
            }
            _ => Err(format!("must be text of 1 to {MAX_TEXT} characters on one line")),
        }
    };
    let days = |v: &Value| -> Result<i64, String> {
        v.as_i64()
            .filter(|d| (1..=MAX_DAYS).contains(d))
            .ok_or_else(|| format!("must be a number of days from 1 to {MAX_DAYS}"))
    };
    let boolean = |v: &Value| v.as_bool().ok_or_else(|| "must be true or false".to_owned());
    let result: Result<Condition, (&str, String)> = (|| {
        let text_field = match field {
            "name" => Some(TextField::Name),
            "email" => Some(TextField::Email),
            "phone" => Some(TextField::Phone),
            f => match f.strip_prefix("metadata.") {
                Some(key) if !key.is_empty() && key.len() <= 64 && !key.chars().any(char::is_control) => {
                    Some(TextField::Metadata(key.to_owned()))
                }
                Some(_) => return Err(("field", "metadata.<key> needs a key of 1 to 64 characters".into())),
                None => None,
            },
        };
        if let Some(field) = text_field {
            let op = match op {
                "eq" => TextOp::Eq,
                "neq" => TextOp::Neq,
                "contains" => TextOp::Contains,
                "starts_with" => TextOp::StartsWith,
                "set" => TextOp::Set,
                "not_set" => TextOp::NotSet,
                _ => return Err(("op", "must be eq, neq, contains, starts_with, set or not_set".into())),
            };
            let value = match op {
                TextOp::Set | TextOp::NotSet => String::new(),
                _ => text(value).map_err(|m| ("value", m))?,
            };
            return Ok(Condition::Text { field, op, value });
        }
        match field {
            "tags" => {
                let has = match op {
                    "has" => true,
                    "lacks" => false,
                    _ => return Err(("op", "must be has or lacks".into())),
                };
                Ok(Condition::Tag { has, tag: text(value).map_err(|m| ("value", m))? })
            }
            "engagement_score" | "purchase_probability" => {
                let (score, max) = if field == "engagement_score" {
                    (Score::Engagement, 100.0)
                } else {
                    (Score::PurchaseProbability, 1.0)
                };
                let cmp = match op {
                    "gt" => Cmp::Gt,
                    "gte" => Cmp::Gte,
                    "lt" => Cmp::Lt,
                    "lte" => Cmp::Lte,
                    _ => return Err(("op", "must be gt, gte, lt or lte".into())),
                };
                let value = value
                    .as_f64()
                    .filter(|v| (0.0..=max).contains(v))
                    .ok_or(("value", format!("must be a number from 0 to {max}")))?;
                Ok(Condition::Score { score, cmp, value })
            }
            "created_at" => match op {
                "before" | "after" => {
                    let t = value
                        .as_str()
                        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                        .map(|t| t.with_timezone(&Utc))
                        .ok_or(("value", "must be a date-time such as 2026-01-31T00:00:00Z".to_owned()))?;
                    Ok(if op == "before" { Condition::CreatedBefore(t) } else { Condition::CreatedAfter(t) })
                }
                "within_days" => Ok(Condition::CreatedWithinDays(days(value).map_err(|m| ("value", m))?)),
                "older_than_days" => Ok(Condition::CreatedOlderThanDays(days(value).map_err(|m| ("value", m))?)),
                _ => Err(("op", "must be before, after, within_days or older_than_days".into())),
            },
            "last_order" | "last_activity" => {
                let recency = match op {
                    "within_days" => Recency::WithinDays(days(value).map_err(|m| ("value", m))?),
                    "not_within_days" => Recency::NotWithinDays(days(value).map_err(|m| ("value", m))?),
                    "ever" => Recency::Ever,
                    "never" => Recency::Never,
                    _ => return Err(("op", "must be within_days, not_within_days, ever or never".into())),
                };
                if field == "last_order" {
                    if obj.contains_key("activity_type") {
                        return Err(("activity_type", "applies to last_activity only".into()));
                    }
                    return Ok(Condition::LastOrder(recency));
                }
                let activity_type = match obj.get("activity_type") {
                    None | Some(Value::Null) => None,
                    Some(t) => Some(text(t).map_err(|m| ("activity_type", m))?),
                };
                Ok(Condition::LastActivity { recency, activity_type })
            }
            "suppressed" | "unsubscribed" => {
                if op != "is" {
                    return Err(("op", "must be is".into()));
                }
                let yes = boolean(value).map_err(|m| ("value", m))?;
                Ok(if field == "suppressed" { Condition::Suppressed(yes) } else { Condition::Unsubscribed(yes) })
            }
            f if f.starts_with("consent.") => {
                let channel = match &f["consent.".len()..] {
                    "email" => "email",
                    "sms" => "sms",
                    "phone" => "phone",
                    _ => return Err(("field", "consent.<channel> takes email, sms or phone".into())),
                };
                if op != "is" {
                    return Err(("op", "must be is".into()));
                }
                Ok(Condition::Consent { channel, granted: boolean(value).map_err(|m| ("value", m))? })
            }
            _ => Err(("field", "is not a field a segment can test (see the segment docs)".into())),
        }
    })();
    match result {
        Ok(c) => Some(c),
        Err((key, message)) => fail(key, message),
    }
}

/// The tenant's segment's rule; `None` when there is no such segment or its stored rule no
/// longer parses (rules are checked when saved).
#[tracing::instrument(name = "segments.load", skip(conn), fields(tenant_id = %tenant), err)]
pub async fn load(conn: &mut PgConnection, tenant: TenantId, segment: Uuid) -> Result<Option<Rule>, sqlx::Error> {
    let rules: Option<Value> = sqlx::query_scalar("select rules from segments where tenant_id = $1 and id = $2")
        .bind(tenant)
        .bind(segment)
        .fetch_optional(conn)
        .await?;
    Ok(rules.and_then(|r| Rule::parse(&r, "rules").ok()))
}

/// A customer a preview shows: id, name, e-mail.
pub type Member = (Uuid, String, Option<String>);

/// How many customers of `tenant` the rule selects, and the first `sample` by name.
#[tracing::instrument(name = "segments.preview", skip(conn, rule), fields(tenant_id = %tenant), err)]
pub async fn preview(
    conn: &mut PgConnection,
    tenant: TenantId,
    rule: &Rule,
    sample: i64,
) -> Result<(i64, Vec<Member>), sqlx::Error> {
    let mut q = QueryBuilder::<Postgres>::new("select count(*) from crm_customers c where c.tenant_id = ");
    q.push_bind(tenant).push(" and ");
    rule.push_sql(&mut q);
    let count: i64 = q.build_query_scalar().fetch_one(&mut *conn).await?;
    let mut q = QueryBuilder::<Postgres>::new("select c.id, c.name, c.email from crm_customers c where c.tenant_id = ");
    q.push_bind(tenant).push(" and ");
    rule.push_sql(&mut q);
    q.push(" order by c.name, c.id limit ").push_bind(sample);
    let members = q.build_query_as().fetch_all(&mut *conn).await?;
    Ok((count, members))
}

/// Makes the rule's customers the campaign's recipients (a draft or scheduled campaign,
/// at its start): recipients it no longer selects are removed, new ones added pending.
/// Returns how many it selects.
#[tracing::instrument(name = "segments.resolve_into", skip(conn, rule), fields(tenant_id = %tenant), err)]
pub async fn resolve_into(
    conn: &mut PgConnection,
    tenant: TenantId,
    campaign: Uuid,
    rule: &Rule,
) -> Result<u64, sqlx::Error> {
    let mut q =
        QueryBuilder::<Postgres>::new("with selected as (select c.id from crm_customers c where c.tenant_id = ");
    q.push_bind(tenant).push(" and ");
    rule.push_sql(&mut q);
    q.push("), gone as (delete from outbound_campaign_recipients r where r.tenant_id = ")
        .push_bind(tenant)
        .push(" and r.campaign_id = ")
        .push_bind(campaign)
        .push(" and r.status = 'pending' and r.customer_id not in (select id from selected)), added as (")
        .push("insert into outbound_campaign_recipients (tenant_id, campaign_id, customer_id) select ")
        .push_bind(tenant)
        .push(", ")
        .push_bind(campaign)
        .push(", id from selected on conflict (campaign_id, customer_id) do nothing)")
        .push(" select count(*) from selected");
    let n: i64 = q.build_query_scalar().fetch_one(conn).await?;
    Ok(n as u64)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_documented_example_parses() {
        let rule = Rule::parse(
            &json!({"all": [
                {"field": "engagement_score", "op": "gte", "value": 40},
                {"field": "purchase_probability", "op": "gte", "value": 0.3},
                {"field": "last_order", "op": "not_within_days", "value": 60},
                {"field": "suppressed", "op": "is", "value": false},
                {"not": {"field": "tags", "op": "has", "value": "churned"}},
                {"any": [{"field": "metadata.plan", "op": "eq", "value": "gold"}, {"field": "email", "op": "set"}]}
            ]}),
            "rules",
        )
        .unwrap();
        let Rule::All(parts) = &rule else { panic!("{rule:?}") };
        assert_eq!(parts.len(), 6);
        assert_eq!(parts[2], Rule::Cond(Condition::LastOrder(Recency::NotWithinDays(60))));
        let mut q = QueryBuilder::<Postgres>::new("");
        rule.push_sql(&mut q);
        let sql = q.sql().as_str().to_owned();
        assert!(!sql.contains("gold") && !sql.contains("churned"), "values are bound, never spelled: {sql}");
        assert!(
            sql.contains("customer_engagement_scores") && sql.contains("not exists (select 1 from orders"),
            "{sql}"
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let errors = Rule::parse(
            &json!({"all": [
                {"field": "engagement_score", "op": "gte", "value": 140},
                {"field": "favourite_colour", "op": "eq", "value": "red"},
                {"field": "name", "op": "like", "value": "x"},
                {"any": []},
                {"field": "last_order", "op": "within_days", "value": 0},
                {"field": "name", "op": "eq", "value": "two\nlines"},
                {"field": "tags", "op": "has", "value": "x", "extra": 1},
                "nope"
            ]}),
            "rules",
        )
        .unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "rules.all[0].value",
                "rules.all[1].field",
                "rules.all[2].op",
                "rules.all[3].any",
                "rules.all[4].value",
                "rules.all[5].value",
                "rules.all[6].extra",
                "rules.all[7]"
            ],
            "{errors:?}"
        );
        let deep = (0..10).fold(json!({"field": "email", "op": "set"}), |r, _| json!({"not": r}));
        assert!(Rule::parse(&deep, "rules").is_err());
        let many = json!({"any": (0..51).map(|_| json!({"field": "email", "op": "set"})).collect::<Vec<_>>()});
        assert_eq!(Rule::parse(&many, "rules").unwrap_err()[0].0, "rules");
    }

    #[test]
    fn like_patterns_match_the_text_only() {
        assert_eq!(like_escape(r"50%_off\"), r"50\%\_off\\");
    }
}

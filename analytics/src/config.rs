//! The metric parameters, with defaults and `ANALYTICS_*` environment overrides.

use std::collections::BTreeMap;

use crate::AnalyticsError;

/// One activity type's contribution to the engagement score.
#[derive(Debug, Clone, PartialEq)]
pub struct Weight {
    pub activity_type: &'static str,
    /// The channel component the points count towards.
    pub component: &'static str,
    pub points: f64,
}

const fn w(activity_type: &'static str, component: &'static str, points: f64) -> Weight {
    Weight { activity_type, component, points }
}

/// Points per activity type. An unsubscribe or a spam complaint takes points away from its
/// channel; machine opens and clicks, bounces and delays earn nothing (they are not the
/// person's doing).
pub const DEFAULT_WEIGHTS: &[Weight] = &[
    w("page_view", "web", 1.0),
    w("article_read", "web", 3.0),
    w("faq_read", "web", 2.0),
    w("knowledge_view", "web", 2.0),
    w("presentation_view", "web", 4.0),
    w("sales_contact", "web", 8.0),
    w("email_open", "email", 2.0),
    w("email_click", "email", 5.0),
    w("email_reply", "email", 8.0),
    w("unsubscribe", "email", -10.0),
    w("email_complaint", "email", -10.0),
    w("sms_reply", "sms", 6.0),
    w("call_answered", "phone", 6.0),
    w("chat_message", "chat", 3.0),
    w("survey_response", "survey", 5.0),
    w("purchase", "commerce", 10.0),
];

#[derive(Debug, Clone, PartialEq)]
pub struct EngagementConfig {
    /// `ANALYTICS_HALF_LIFE_DAYS` (default 30): an activity counts half after this long.
    pub half_life_days: f64,
    /// `ANALYTICS_ENGAGEMENT_SCALE` (default 20): decayed points at which the score
    /// reaches 100·(1 − 1/e) ≈ 63.
    pub scale: f64,
    pub weights: Vec<Weight>,
}

impl Default for EngagementConfig {
    fn default() -> Self {
        Self { half_life_days: 30.0, scale: 20.0, weights: DEFAULT_WEIGHTS.to_vec() }
    }
}

impl EngagementConfig {
    /// The components in a fixed order (first appearance in the weights).
    pub fn components(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for w in &self.weights {
            if !out.contains(&w.component) {
                out.push(w.component);
            }
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RoiConfig {
    /// Cost of one send per channel in minor units (`ANALYTICS_UNIT_COST_EMAIL`, `_SMS`,
    /// `_PHONE`; defaults 1, 8 and 30).
    pub unit_cost_minor: BTreeMap<String, i64>,
    /// `ANALYTICS_ATTRIBUTION_WINDOW_DAYS` (default 30): a send counts as a touch for
    /// orders paid up to this many days later.
    pub window_days: u32,
    /// `ANALYTICS_ATTRIBUTION_HALF_LIFE_DAYS` (default 7): in time-decay attribution a
    /// touch this many days before the order weighs half as much as one at the order.
    pub decay_half_life_days: f64,
}

impl Default for RoiConfig {
    fn default() -> Self {
        Self {
            unit_cost_minor: [("email", 1), ("sms", 8), ("phone", 30)]
                .into_iter()
                .map(|(c, v)| (c.to_string(), v))
                .collect(),
            window_days: 30,
            decay_half_life_days: 7.0,
        }
    }
}

impl RoiConfig {
    pub fn unit_cost(&self, channel: &str) -> i64 {
        self.unit_cost_minor.get(channel).copied().unwrap_or(0)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PredictiveConfig {
    /// The label: a paid order within this many days after the cut-off (90).
    pub horizon_days: u32,
    /// Training cut-offs are this far apart (30 days).
    pub step_days: u32,
    /// How many labelled cut-offs: the latest validates, the earlier ones train (3).
    pub cutoffs: u32,
    /// L2 penalty of the logistic regression (1.0).
    pub l2: f64,
    /// At most about this many training rows (customer × training cut-off): above it a
    /// uniform sample, drawn by a hash of the customer key and the cut-off so the same
    /// data gives the same model (`ANALYTICS_MAX_TRAIN_ROWS`, 200,000). The fit's time and
    /// memory grow with the rows; twenty coefficients need far fewer than a million.
    pub max_train_rows: usize,
}

impl Default for PredictiveConfig {
    fn default() -> Self {
        Self { horizon_days: 90, step_days: 30, cutoffs: 3, l2: 1.0, max_train_rows: 200_000 }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AnalyticsConfig {
    pub engagement: EngagementConfig,
    pub roi: RoiConfig,
    pub predictive: PredictiveConfig,
}

impl AnalyticsConfig {
    pub fn from_env() -> Result<Self, AnalyticsError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, AnalyticsError> {
        fn num<T: std::str::FromStr>(
            get: &impl Fn(&str) -> Option<String>,
            key: &str,
            default: T,
        ) -> Result<T, AnalyticsError> {
            match get(key) {
                None => Ok(default),
                Some(v) => v.trim().parse().map_err(|_| AnalyticsError::Config(format!("{key}={v:?} is not a number"))),
            }
        }
        let mut config = Self::default();
        config.engagement.half_life_days = num(&get, "ANALYTICS_HALF_LIFE_DAYS", 30.0)?;
        config.engagement.scale = num(&get, "ANALYTICS_ENGAGEMENT_SCALE", 20.0)?;
        config.roi.window_days = num(&get, "ANALYTICS_ATTRIBUTION_WINDOW_DAYS", 30)?;
        config.roi.decay_half_life_days = num(&get, "ANALYTICS_ATTRIBUTION_HALF_LIFE_DAYS", 7.0)?;
        config.predictive.max_train_rows = num(&get, "ANALYTICS_MAX_TRAIN_ROWS", config.predictive.max_train_rows)?;
        for channel in ["email", "sms", "phone"] {
            let key = format!("ANALYTICS_UNIT_COST_{}", channel.to_uppercase());
            let default = config.roi.unit_cost(channel);
            config.roi.unit_cost_minor.insert(channel.into(), num(&get, &key, default)?);
        }
        config.check()?;
        Ok(config)
    }

    pub fn check(&self) -> Result<(), AnalyticsError> {
        let bad = |m: &str| Err(AnalyticsError::Config(m.into()));
        if !(self.engagement.half_life_days > 0.0 && self.engagement.half_life_days.is_finite()) {
            return bad("ANALYTICS_HALF_LIFE_DAYS must be a positive number of days");
        }
        if !(self.engagement.scale > 0.0 && self.engagement.scale.is_finite()) {
            return bad("ANALYTICS_ENGAGEMENT_SCALE must be positive");
        }
        if self.roi.window_days == 0 || self.roi.window_days > 3650 {
            return bad("ANALYTICS_ATTRIBUTION_WINDOW_DAYS must be between 1 and 3650");
        }
        if !(self.roi.decay_half_life_days > 0.0 && self.roi.decay_half_life_days <= 3650.0) {
            return bad("ANALYTICS_ATTRIBUTION_HALF_LIFE_DAYS must be a positive number of days, at most 3650");
        }
        if self.roi.unit_cost_minor.values().any(|c| *c < 0) {
            return bad("ANALYTICS_UNIT_COST_* must not be negative");
        }
        if self.predictive.max_train_rows < 1_000 {
            return bad("ANALYTICS_MAX_TRAIN_ROWS must be at least 1000");
        }
        if self.predictive.cutoffs < 2 {
            return bad("the predictive model needs at least two cut-offs (one to train, one to validate)");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_and_rejects() {
        let c = AnalyticsConfig::from_lookup(|k| match k {
            "ANALYTICS_HALF_LIFE_DAYS" => Some("14".into()),
            "ANALYTICS_UNIT_COST_SMS" => Some("5".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.engagement.half_life_days, 14.0);
        assert_eq!(c.roi.unit_cost("sms"), 5);
        assert_eq!(c.roi.unit_cost("email"), 1);
        let err = AnalyticsConfig::from_lookup(|k| (k == "ANALYTICS_HALF_LIFE_DAYS").then(|| "-1".into())).unwrap_err();
        assert!(err.to_string().contains("HALF_LIFE"), "{err}");
        let err = AnalyticsConfig::from_lookup(|k| (k == "ANALYTICS_ATTRIBUTION_WINDOW_DAYS").then(|| "soon".into()))
            .unwrap_err();
        assert!(err.to_string().contains("not a number"), "{err}");
        let err = AnalyticsConfig::from_lookup(|k| (k == "ANALYTICS_MAX_TRAIN_ROWS").then(|| "10".into())).unwrap_err();
        assert!(err.to_string().contains("MAX_TRAIN_ROWS"), "{err}");
        let err = AnalyticsConfig::from_lookup(|k| (k == "ANALYTICS_MAX_TRAIN_ROWS").then(|| "-5".into())).unwrap_err();
        assert!(err.to_string().contains("not a number"), "{err}");
    }
}

//! Checking a response's answers against the survey's questions.

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::FieldErrors;

/// A question as the checker needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct QuestionRule {
    pub id: Uuid,
    pub question_type: String,
    pub options: sqlx::types::Json<Value>,
    pub is_required: bool,
}

fn option_values(options: &Value) -> Vec<String> {
    options
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|o| match o {
                    Value::String(s) => Some(s.clone()),
                    Value::Object(m) => {
                        m.get("value").or_else(|| m.get("label")).and_then(Value::as_str).map(str::to_owned)
                    }
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Every problem is reported under `answers.<question id>`; unknown question ids too.
pub fn check(questions: &[QuestionRule], answers: &Map<String, Value>, e: &mut FieldErrors) {
    for key in answers.keys() {
        if !questions.iter().any(|q| q.id.to_string() == *key) {
            e.add(format!("answers.{key}"), "is not a question of this survey");
        }
    }
    for q in questions {
        let field = format!("answers.{}", q.id);
        let answer = answers.get(&q.id.to_string()).filter(|v| !v.is_null());
        let Some(answer) = answer else {
            if q.is_required {
                e.add(field, "is required");
            }
            continue;
        };
        let options = option_values(&q.options.0);
        let ok = match q.question_type.as_str() {
            "text" => answer.as_str().is_some_and(|s| s.chars().count() <= 1000),
            "textarea" => answer.as_str().is_some_and(|s| s.chars().count() <= 10_000),
            "email" => answer.as_str().is_some_and(|s| fibonacco_platform::domain::Email::parse(s).is_ok()),
            "number" => answer.is_number(),
            "date" => answer.as_str().is_some_and(|s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()),
            "yes_no" => answer.is_boolean(),
            "rating" => answer.as_i64().is_some_and(|n| (1..=5).contains(&n)),
            "scale" => answer.as_i64().is_some_and(|n| (0..=10).contains(&n)),
            "single_choice" => answer.as_str().is_some_and(|s| options.iter().any(|o| o == s)),
            "multiple_choice" => answer.as_array().is_some_and(|items| {
                !items.is_empty() && items.iter().all(|i| i.as_str().is_some_and(|s| options.iter().any(|o| o == s)))
            }),
            _ => false,
        };
        if !ok {
            let expected = match q.question_type.as_str() {
                "text" | "textarea" => "text".to_owned(),
                "email" => "an e-mail address".to_owned(),
                "number" => "a number".to_owned(),
                "date" => "a date (YYYY-MM-DD)".to_owned(),
                "yes_no" => "true or false".to_owned(),
                "rating" => "a whole number from 1 to 5".to_owned(),
                "scale" => "a whole number from 0 to 10".to_owned(),
                "single_choice" => format!("one of: {}", options.join(", ")),
                _ => format!("a non-empty list from: {}", options.join(", ")),
            };
            e.add(field, format!("must be {expected}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(kind: &str, options: Value, required: bool) -> QuestionRule {
        QuestionRule {
            id: Uuid::now_v7(),
            question_type: kind.into(),
            options: sqlx::types::Json(options),
            is_required: required,
        }
    }

    #[test]
    fn answers_are_checked_by_type() {
        let rating = q("rating", json!([]), true);
        let choice = q("single_choice", json!(["a", {"value": "b", "label": "B"}]), false);
        let many = q("multiple_choice", json!(["x", "y"]), false);
        let questions = vec![rating.clone(), choice.clone(), many.clone()];
        let good: Map<String, Value> = serde_json::from_value(json!({
            rating.id.to_string(): 5, choice.id.to_string(): "b", many.id.to_string(): ["x", "y"]
        }))
        .unwrap();
        let mut e = FieldErrors::default();
        check(&questions, &good, &mut e);
        assert!(e.is_empty(), "{e:?}");
        let bad: Map<String, Value> = serde_json::from_value(json!({
            choice.id.to_string(): "c", many.id.to_string(): [], "not-a-question": 1
        }))
        .unwrap();
        let mut e = FieldErrors::default();
        check(&questions, &bad, &mut e);
        for f in [
            format!("answers.{}", rating.id),
            format!("answers.{}", choice.id),
            format!("answers.{}", many.id),
            "answers.not-a-question".into(),
        ] {
            assert!(e.contains(&f), "{f}: {e:?}");
        }
    }
}

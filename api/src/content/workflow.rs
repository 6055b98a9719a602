//! The publishing workflow: draft → review → approved → scheduled → published, and any
//! state but archived → archived. Approved content may also be published at once.

/// The statuses in order.
pub const STATUSES: &[&str] = &["draft", "review", "approved", "scheduled", "published", "archived"];

/// Whether `from → to` is a legal step.
pub fn allowed(from: &str, to: &str) -> bool {
    matches!(
        (from, to),
        ("draft", "review")
            | ("review", "approved")
            | ("approved", "scheduled")
            | ("approved", "published")
            | ("scheduled", "published")
            | ("draft" | "review" | "approved" | "scheduled" | "published", "archived")
    )
}

/// The steps open from `from`, for error messages.
pub fn next_steps(from: &str) -> Vec<&'static str> {
    STATUSES.iter().copied().filter(|to| allowed(from, to)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whole_transition_table() {
        let legal = [
            ("draft", "review"),
            ("review", "approved"),
            ("approved", "scheduled"),
            ("approved", "published"),
            ("scheduled", "published"),
            ("draft", "archived"),
            ("review", "archived"),
            ("approved", "archived"),
            ("scheduled", "archived"),
            ("published", "archived"),
        ];
        for from in STATUSES {
            for to in STATUSES {
                assert_eq!(allowed(from, to), legal.contains(&(*from, *to)), "{from} -> {to}");
            }
        }
        assert_eq!(next_steps("archived"), Vec::<&str>::new());
        assert_eq!(next_steps("approved"), vec!["scheduled", "published", "archived"]);
    }
}

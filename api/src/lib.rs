//! The HTTP API of the Fibonacco platform under `/api/v1`: one module per resource
//! family, thin handlers over functions that take a transaction and plain values.

pub mod ads;
pub mod ai;
pub mod analytics;
pub mod articles;
pub mod commerce;
pub mod content;
pub mod conversations;
pub mod customers;
pub mod envelope;
pub mod error;
pub mod extract;
pub mod faq_categories;
pub mod health;
pub mod knowledge;
pub mod learning;
pub mod limits;
pub mod listing;
pub mod observability;
pub mod openapi;
pub mod outbound;
pub mod patch;
pub mod personalities;
pub mod presentations;
pub mod search;
pub mod segments;
pub mod slugs;
pub mod startup;
pub mod state;
pub mod stripe;
pub mod surveys;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tracking;
pub mod training;
pub mod tts;
pub mod validate;
pub mod webhooks;

pub use error::ApiError;
pub use startup::{Application, router};
pub use state::AppState;

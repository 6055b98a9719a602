//! The calls the platform makes to Stripe: a thin typed client on `reqwest` rather than
//! async-stripe, whose generated API (hundreds of thousands of lines) would be the tree's
//! largest build item for the dozen calls below, and whose HTTP stack is not the one the
//! rest of the tree uses. Every POST carries an idempotency key derived from what it does
//! (so a retried request, ours or the user's, never charges, refunds or subscribes twice);
//! 429, 5xx and network failures are retried with backoff; nothing here holds a database
//! connection, callers read before and write after.

use std::time::Duration;

use fibonacco_platform::config::Secret;
use serde::Deserialize;
use serde_json::Value;

/// Attempts per request (the first and two retries).
const ATTEMPTS: u32 = 3;
const TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    /// The card was declined (402): the payer's problem, reported to them.
    #[error("{message}")]
    Declined { code: Option<String>, message: String, payment_intent: Option<String> },
    /// Stripe refused the request (4xx other than 402 and 429).
    #[error("Stripe refused the request ({status}): {message}")]
    Rejected { status: u16, code: Option<String>, message: String },
    /// No answer we can trust after the retries: network, timeout, 429, 5xx. The request
    /// may have been applied; repeating it with the same idempotency key is safe.
    #[error("Stripe is unavailable: {0}")]
    Unavailable(String),
    /// Stripe answered 2xx with a body that is not what the call returns.
    #[error("unexpected answer from Stripe: {0}")]
    Unexpected(String),
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    secret: Secret,
    backoff: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("stripe::Client").field("base", &self.base).finish_non_exhaustive()
    }
}

/// Form fields in Stripe's bracket notation (`metadata[order_id]`).
pub type Form = Vec<(String, String)>;

fn field(form: &mut Form, key: &str, value: impl ToString) {
    form.push((key.to_owned(), value.to_string()));
}

#[derive(Debug, Clone, Deserialize)]
pub struct PaymentIntent {
    pub id: String,
    pub status: String,
    pub client_secret: Option<String>,
    pub amount: i64,
    pub currency: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Refund {
    pub id: String,
    pub amount: i64,
    pub status: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub cancel_at_period_end: bool,
    pub current_period_end: Option<i64>,
    pub canceled_at: Option<i64>,
    pub ended_at: Option<i64>,
}

/// A one-off payment: what the order costs, never what a client says.
pub struct NewPayment<'a> {
    pub amount_minor: i64,
    pub currency: &'a str,
    pub customer: Option<&'a str>,
    /// A PaymentMethod the payer gave (Stripe.js); with it the payment is confirmed now.
    pub payment_method: Option<&'a str>,
    pub metadata: &'a [(&'a str, String)],
}

/// A price per period for a recurring service.
pub struct NewPlan<'a> {
    pub amount_minor: i64,
    pub currency: &'a str,
    /// `month` or `year`.
    pub interval: &'a str,
    pub interval_count: u32,
    pub product_name: &'a str,
    pub metadata: &'a [(&'a str, String)],
}

impl Client {
    pub fn new(base: &str, secret: Secret) -> Self {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client with default TLS settings builds");
        Self { http, base: base.trim_end_matches('/').to_owned(), secret, backoff: Duration::from_millis(250) }
    }

    /// The same client with another first retry delay (tests of the retry loop).
    pub fn with_backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    #[tracing::instrument(skip(self, email, name), err(Display))]
    pub async fn create_customer(
        &self,
        tenant: uuid::Uuid,
        customer: uuid::Uuid,
        name: &str,
        email: Option<&str>,
    ) -> Result<String, StripeError> {
        let mut form = Form::new();
        field(&mut form, "name", name);
        if let Some(e) = email {
            field(&mut form, "email", e);
        }
        field(&mut form, "metadata[tenant_id]", tenant);
        field(&mut form, "metadata[customer_id]", customer);
        let v = self.post("/v1/customers", &form, &format!("fib-customer-{tenant}-{customer}")).await?;
        id_of(&v)
    }

    /// Attaches `payment_method` to `customer` and makes it the one invoices charge.
    #[tracing::instrument(skip(self), err(Display))]
    pub async fn set_default_payment_method(&self, customer: &str, payment_method: &str) -> Result<(), StripeError> {
        let mut form = Form::new();
        field(&mut form, "customer", customer);
        self.post(
            &format!("/v1/payment_methods/{payment_method}/attach"),
            &form,
            &format!("fib-attach-{payment_method}-{customer}"),
        )
        .await?;
        let mut form = Form::new();
        field(&mut form, "invoice_settings[default_payment_method]", payment_method);
        self.post(&format!("/v1/customers/{customer}"), &form, &format!("fib-default-pm-{customer}-{payment_method}"))
            .await?;
        Ok(())
    }

    #[tracing::instrument(skip(self, payment), fields(amount = payment.amount_minor, currency = payment.currency), err(Display))]
    pub async fn create_payment_intent(
        &self,
        payment: &NewPayment<'_>,
        idempotency_key: &str,
    ) -> Result<PaymentIntent, StripeError> {
        let mut form = Form::new();
        field(&mut form, "amount", payment.amount_minor);
        field(&mut form, "currency", payment.currency.to_ascii_lowercase());
        if let Some(c) = payment.customer {
            field(&mut form, "customer", c);
        }
        if let Some(pm) = payment.payment_method {
            field(&mut form, "payment_method", pm);
            field(&mut form, "confirm", "true");
        }
        for (k, v) in payment.metadata {
            field(&mut form, &format!("metadata[{k}]"), v);
        }
        parse(self.post("/v1/payment_intents", &form, idempotency_key).await?)
    }

    #[tracing::instrument(skip(self), err(Display))]
    pub async fn payment_intent(&self, id: &str) -> Result<PaymentIntent, StripeError> {
        parse(self.send(reqwest::Method::GET, &format!("/v1/payment_intents/{id}"), None, None).await?)
    }

    #[tracing::instrument(skip(self), err(Display))]
    pub async fn cancel_payment_intent(&self, id: &str) -> Result<PaymentIntent, StripeError> {
        parse(self.post(&format!("/v1/payment_intents/{id}/cancel"), &Form::new(), &format!("fib-cancel-{id}")).await?)
    }

    /// Refunds `amount_minor` of a PaymentIntent's charge.
    #[tracing::instrument(skip(self), err(Display))]
    pub async fn create_refund(
        &self,
        payment_intent: &str,
        amount_minor: i64,
        metadata: &[(&str, String)],
        idempotency_key: &str,
    ) -> Result<Refund, StripeError> {
        let mut form = Form::new();
        field(&mut form, "payment_intent", payment_intent);
        field(&mut form, "amount", amount_minor);
        for (k, v) in metadata {
            field(&mut form, &format!("metadata[{k}]"), v);
        }
        parse(self.post("/v1/refunds", &form, idempotency_key).await?)
    }

    /// A recurring plan (Stripe's Plans API, which Prices are compatible with and
    /// localstripe implements) with its product, for one price, currency and period.
    #[tracing::instrument(skip(self, plan), fields(amount = plan.amount_minor, currency = plan.currency), err(Display))]
    pub async fn create_plan(&self, plan: &NewPlan<'_>, idempotency_key: &str) -> Result<String, StripeError> {
        let mut form = Form::new();
        field(&mut form, "amount", plan.amount_minor);
        field(&mut form, "currency", plan.currency.to_ascii_lowercase());
        field(&mut form, "interval", plan.interval);
        field(&mut form, "interval_count", plan.interval_count);
        field(&mut form, "product[name]", plan.product_name);
        for (k, v) in plan.metadata {
            field(&mut form, &format!("metadata[{k}]"), v);
        }
        id_of(&self.post("/v1/plans", &form, idempotency_key).await?)
    }

    #[tracing::instrument(skip(self, metadata), err(Display))]
    pub async fn create_subscription(
        &self,
        customer: &str,
        plan: &str,
        metadata: &[(&str, String)],
        idempotency_key: &str,
    ) -> Result<Subscription, StripeError> {
        let mut form = Form::new();
        field(&mut form, "customer", customer);
        field(&mut form, "items[0][plan]", plan);
        for (k, v) in metadata {
            field(&mut form, &format!("metadata[{k}]"), v);
        }
        parse(self.post("/v1/subscriptions", &form, idempotency_key).await?)
    }

    /// Stops renewal: the subscription runs to the end of the paid period.
    #[tracing::instrument(skip(self), err(Display))]
    pub async fn cancel_at_period_end(&self, subscription: &str) -> Result<Subscription, StripeError> {
        let mut form = Form::new();
        field(&mut form, "cancel_at_period_end", "true");
        parse(
            self.post(&format!("/v1/subscriptions/{subscription}"), &form, &format!("fib-cancel-end-{subscription}"))
                .await?,
        )
    }

    /// Ends the subscription now.
    #[tracing::instrument(skip(self), err(Display))]
    pub async fn cancel_now(&self, subscription: &str) -> Result<Subscription, StripeError> {
        parse(
            self.send(
                reqwest::Method::DELETE,
                &format!("/v1/subscriptions/{subscription}"),
                None,
                Some(&format!("fib-cancel-now-{subscription}")),
            )
            .await?,
        )
    }

    async fn post(&self, path: &str, form: &Form, idempotency_key: &str) -> Result<Value, StripeError> {
        self.send(reqwest::Method::POST, path, Some(form), Some(idempotency_key)).await
    }

    /// One request with its retries. Only the path, the status and Stripe's error code are
    /// logged: bodies carry names, e-mails and client secrets.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        form: Option<&Form>,
        idempotency_key: Option<&str>,
    ) -> Result<Value, StripeError> {
        let mut delay = self.backoff;
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            let mut req =
                self.http.request(method.clone(), format!("{}{path}", self.base)).bearer_auth(self.secret.expose());
            if let Some(key) = idempotency_key {
                req = req.header("Idempotency-Key", key);
            }
            if let Some(form) = form {
                req = req.form(form);
            }
            match req.send().await {
                Err(e) => last = format!("{}", e.without_url()),
                Ok(res) => {
                    let status = res.status();
                    let should_retry =
                        res.headers().get("stripe-should-retry").and_then(|v| v.to_str().ok()).map(|v| v == "true");
                    let body: Value = match res.json().await {
                        Ok(v) => v,
                        Err(e) if status.is_success() => {
                            return Err(StripeError::Unexpected(e.without_url().to_string()));
                        }
                        Err(_) => Value::Null,
                    };
                    if status.is_success() {
                        return Ok(body);
                    }
                    let error = body.get("error").cloned().unwrap_or(Value::Null);
                    let text = |k: &str| error.get(k).and_then(Value::as_str).map(str::to_owned);
                    let message = text("message").unwrap_or_else(|| format!("HTTP {status}"));
                    tracing::warn!(
                        path,
                        status = status.as_u16(),
                        code = text("code").as_deref(),
                        attempt,
                        "stripe answered an error"
                    );
                    let retryable = should_retry.unwrap_or(status.as_u16() == 429 || status.is_server_error());
                    if !retryable {
                        return Err(if status.as_u16() == 402 {
                            StripeError::Declined {
                                code: text("decline_code").or_else(|| text("code")),
                                message,
                                payment_intent: error
                                    .pointer("/payment_intent/id")
                                    .and_then(Value::as_str)
                                    .map(str::to_owned),
                            }
                        } else {
                            StripeError::Rejected { status: status.as_u16(), code: text("code"), message }
                        });
                    }
                    last = format!("HTTP {status}: {message}");
                }
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(delay).await;
                delay *= 4;
            }
        }
        Err(StripeError::Unavailable(last))
    }
}

fn id_of(v: &Value) -> Result<String, StripeError> {
    v.get("id").and_then(Value::as_str).map(str::to_owned).ok_or_else(|| StripeError::Unexpected("no id".into()))
}

fn parse<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, StripeError> {
    serde_json::from_value(v).map_err(|e| StripeError::Unexpected(e.to_string()))
}

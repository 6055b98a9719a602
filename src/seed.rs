//! `fibonacco seed --demo`: a demo tenant with enough data to try every route.

use fibonacco_platform::{auth, db, domain::Slug, tenancy};
use sqlx::PgPool;

pub struct DemoSummary {
    pub token: String,
    pub created: bool,
    pub customers: i64,
    pub conversations: i64,
    pub knowledge: i64,
}

impl DemoSummary {
    pub fn describe(&self) -> String {
        format!(
            "demo tenant {}: {} customers, {} conversations, {} knowledge entries; token above has all abilities",
            if self.created { "created" } else { "already present" },
            self.customers,
            self.conversations,
            self.knowledge
        )
    }
}

const CUSTOMERS: &[(&str, &str, &str, &str)] = &[
    ("Acme Plumbing", "owner@acme-plumbing.example", "+15550100001", "plumbing"),
    ("Bella's Bakery", "hello@bellas-bakery.example", "+15550100002", "food"),
    ("Cedar Dental", "front-desk@cedar-dental.example", "+15550100003", "health"),
    ("Delta Fitness", "team@delta-fitness.example", "+15550100004", "fitness"),
    ("Evergreen Landscaping", "info@evergreen.example", "+15550100005", "landscaping"),
    ("Fox & Co Accounting", "office@foxco.example", "+15550100006", "finance"),
    ("Granite Auto Repair", "service@granite-auto.example", "+15550100007", "automotive"),
    ("Harbor Yoga", "namaste@harbor-yoga.example", "+15550100008", "fitness"),
    ("Iris Florist", "orders@iris-florist.example", "+15550100009", "retail"),
    ("Juniper Law", "intake@juniper-law.example", "+15550100010", "legal"),
    ("Kettle Coffee", "barista@kettle.example", "+15550100011", "food"),
    ("Lumen Electric", "jobs@lumen-electric.example", "+15550100012", "trades"),
];

const KNOWLEDGE: &[(&str, &str, &str)] = &[
    ("What are your opening hours?", "We are open Monday to Friday 8am-6pm and Saturday 9am-1pm.", "general"),
    ("How do I book an appointment?", "Book online from the Appointments page or call the front desk.", "booking"),
    ("Do you offer refunds?", "Unused services can be refunded within 30 days of purchase.", "billing"),
    (
        "Which payment methods do you accept?",
        "Cards, bank transfer and Apple Pay. Invoices are due in 14 days.",
        "billing",
    ),
    ("How do I unsubscribe from e-mails?", "Every e-mail has an unsubscribe link at the bottom.", "account"),
    (
        "Is my data shared with third parties?",
        "No. Data is used only to provide our services; see the privacy policy.",
        "privacy",
    ),
    (
        "Can I change my plan?",
        "Yes, upgrade or downgrade any time; changes apply from the next billing period.",
        "billing",
    ),
    ("Do you serve my area?", "We serve the metro area and suburbs within 40 km.", "general"),
];

pub async fn demo(pool: &PgPool) -> anyhow::Result<DemoSummary> {
    let slug = Slug::parse("demo").expect("static slug");
    let (tenant, created) = match tenancy::find_by_slug(pool, slug.as_str()).await? {
        Some(t) => (t, false),
        None => (tenancy::create(pool, "Demo Business", &slug).await?, true),
    };
    if created {
        let mut tx = db::begin_tenant(pool, tenant.id).await?;
        for (i, (name, email, phone, industry)) in CUSTOMERS.iter().enumerate() {
            let customer_slug = Slug::from_text(name).expect("demo names make slugs");
            let customer_id: uuid::Uuid = sqlx::query_scalar(
                "insert into crm_customers (tenant_id, name, slug, email, phone, business_context)
                 values ($1, $2, $3, $4, $5, $6) returning id",
            )
            .bind(tenant.id)
            .bind(name)
            .bind(customer_slug.as_str())
            .bind(email)
            .bind(phone)
            .bind(serde_json::json!({"industry": industry, "employees": 3 + i * 2, "goals": ["more repeat customers"]}))
            .fetch_one(&mut *tx)
            .await?;
            let conversation_id: uuid::Uuid = sqlx::query_scalar(
                "insert into crm_conversations (tenant_id, customer_id, channel, status, summary)
                 values ($1, $2, $3, $4, $5) returning id",
            )
            .bind(tenant.id)
            .bind(customer_id)
            .bind(if i % 2 == 0 { "chat" } else { "email" })
            .bind(if i % 3 == 0 { "ended" } else { "active" })
            .bind(format!("{name} asked about pricing and availability."))
            .fetch_one(&mut *tx)
            .await?;
            for (role, content) in [
                ("customer", "Hi, what would a monthly plan cost for us?"),
                ("assistant", "Plans start at $49/month; I can tailor one to your business."),
                ("customer", "Great, can someone call us next week?"),
            ] {
                sqlx::query(
                    "insert into crm_conversation_messages (tenant_id, conversation_id, role, content, created_at)
                     values ($1, $2, $3, $4, clock_timestamp())",
                )
                .bind(tenant.id)
                .bind(conversation_id)
                .bind(role)
                .bind(content)
                .execute(&mut *tx)
                .await?;
            }
        }
        for (title, content, category) in KNOWLEDGE {
            sqlx::query(
                "insert into knowledge_base (tenant_id, title, content, category, source, validation_status, tags)
                 values ($1, $2, $3, $4, 'manual', 'validated', $5)",
            )
            .bind(tenant.id)
            .bind(title)
            .bind(content)
            .bind(category)
            .bind(vec![category.to_string(), "faq".to_string()])
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
    }
    let mut tx = db::begin_tenant(pool, tenant.id).await?;
    let counts: (i64, i64, i64) = sqlx::query_as(
        "select (select count(*) from crm_customers where tenant_id = $1),
                (select count(*) from crm_conversations where tenant_id = $1),
                (select count(*) from knowledge_base where tenant_id = $1)",
    )
    .bind(tenant.id)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    let token = auth::issue_token(pool, tenant.id, "demo", &[], None).await?;
    Ok(DemoSummary {
        token: token.plain_text,
        created,
        customers: counts.0,
        conversations: counts.1,
        knowledge: counts.2,
    })
}

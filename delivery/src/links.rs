//! Signed tracking links. A recipient token names tenant and recipient and carries an
//! HMAC under `APP_KEY`, so the open, click and unsubscribe endpoints need no login and a
//! guessed or edited link is refused. A click link also signs its destination: the
//! redirect goes only to URLs the campaign itself sent (no open redirect).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use fibonacco_platform::TenantId;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

const TAG_LEN: usize = 12;

fn mac(key: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    for p in parts {
        m.update(&(p.len() as u32).to_be_bytes());
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

/// Who a tracking link is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecipientRef {
    pub tenant: TenantId,
    pub recipient: Uuid,
}

pub fn recipient_token(key: &str, r: RecipientRef) -> String {
    let tenant = r.tenant.as_uuid();
    let mut bytes = Vec::with_capacity(32 + TAG_LEN);
    bytes.extend_from_slice(tenant.as_bytes());
    bytes.extend_from_slice(r.recipient.as_bytes());
    let tag = mac(key, &[b"recipient", &bytes]);
    bytes.extend_from_slice(&tag[..TAG_LEN]);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `None` for anything not minted by [`recipient_token`] under this key.
pub fn parse_recipient_token(key: &str, token: &str) -> Option<RecipientRef> {
    let bytes = URL_SAFE_NO_PAD.decode(token.trim()).ok()?;
    if bytes.len() != 32 + TAG_LEN {
        return None;
    }
    let (ids, tag) = bytes.split_at(32);
    let expected = mac(key, &[b"recipient", ids]);
    if !bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..TAG_LEN], tag)) {
        return None;
    }
    let tenant = Uuid::from_slice(&ids[..16]).ok()?;
    let recipient = Uuid::from_slice(&ids[16..]).ok()?;
    Some(RecipientRef { tenant: TenantId::from_uuid(tenant), recipient })
}

/// The signature of a click destination for one recipient.
pub fn url_signature(key: &str, token: &str, url: &str) -> String {
    URL_SAFE_NO_PAD.encode(&mac(key, &[b"click", token.as_bytes(), url.as_bytes()])[..16])
}

pub fn url_signature_valid(key: &str, token: &str, url: &str, sig: &str) -> bool {
    let expected = url_signature(key, token, url);
    bool::from(subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), sig.as_bytes()))
}

/// The three public links of one recipient.
pub struct Links {
    base: String,
    key: String,
    token: String,
}

impl Links {
    pub fn new(app_url: &str, key: &str, r: RecipientRef) -> Self {
        Self { base: app_url.trim_end_matches('/').to_owned(), key: key.to_owned(), token: recipient_token(key, r) }
    }

    pub fn open_pixel(&self) -> String {
        format!("{}/t/open/{}", self.base, self.token)
    }

    pub fn unsubscribe(&self) -> String {
        format!("{}/t/unsubscribe/{}", self.base, self.token)
    }

    pub fn click(&self, destination: &str) -> String {
        let sig = url_signature(&self.key, &self.token, destination);
        let u: String = url_encode(destination);
        format!("{}/t/click/{}?u={u}&s={sig}", self.base, self.token)
    }
}

fn url_encode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)]).map(|e| e.trim_start_matches('=').to_owned()).unwrap_or_default()
}

/// Rewrites every `href="http…"` of an HTML body to its click-tracking link. Links to
/// other schemes (mailto:, tel:) and anchors are left alone.
pub fn track_links(html: &str, links: &Links) -> String {
    map_links(html, |url| links.click(url))
}

/// The http(s) destinations of a template's links, as [`track_links`] signs them: the
/// only URLs a click on that campaign's e-mail may redirect to.
pub fn template_links(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    map_links(html, |url| {
        found.push(url.to_owned());
        String::new()
    });
    found
}

/// Replaces every `href` whose value is an http(s) URL with `f(url)` (the URL with
/// `&amp;` decoded; the replacement is escaped back).
fn map_links(html: &str, mut f: impl FnMut(&str) -> String) -> String {
    let mut out = String::with_capacity(html.len() + 256);
    let mut rest = html;
    while let Some(at) = find_href(rest) {
        let (before, after) = rest.split_at(at.start);
        out.push_str(before);
        let quote = at.quote;
        let value_start = at.value_start - at.start;
        let Some(value_len) = after[value_start..].find(quote) else {
            out.push_str(after);
            return out;
        };
        let url = &after[value_start..value_start + value_len];
        out.push_str(&after[..value_start]);
        let decoded = url.replace("&amp;", "&");
        if decoded.starts_with("http://") || decoded.starts_with("https://") {
            out.push_str(&f(&decoded).replace('&', "&amp;"));
        } else {
            out.push_str(url);
        }
        rest = &after[value_start + value_len..];
    }
    out.push_str(rest);
    out
}

struct Href {
    start: usize,
    value_start: usize,
    quote: char,
}

fn find_href(s: &str) -> Option<Href> {
    let lower = s.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find("href") {
        let start = from + i;
        let mut j = start + 4;
        let bytes = lower.as_bytes();
        while j < bytes.len() && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        if j < bytes.len() && bytes[j] == b'=' {
            j += 1;
            while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            if j < bytes.len() && (bytes[j] == b'"' || bytes[j] == b'\'') {
                return Some(Href { start, value_start: j + 1, quote: bytes[j] as char });
            }
        }
        from = start + 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "test-key-0123456789";

    fn r() -> RecipientRef {
        RecipientRef { tenant: TenantId::from_uuid(Uuid::now_v7()), recipient: Uuid::now_v7() }
    }

    #[test]
    fn tokens_round_trip_and_refuse_tampering() {
        let who = r();
        let token = recipient_token(KEY, who);
        assert_eq!(parse_recipient_token(KEY, &token), Some(who));
        assert_eq!(parse_recipient_token("another-key-0123456789", &token), None);
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        bytes[20] ^= 1;
        assert_eq!(parse_recipient_token(KEY, &URL_SAFE_NO_PAD.encode(bytes)), None);
        assert_eq!(parse_recipient_token(KEY, "short"), None);
    }

    #[test]
    fn click_signatures_bind_token_and_url() {
        let t = recipient_token(KEY, r());
        let sig = url_signature(KEY, &t, "https://example.com/a");
        assert!(url_signature_valid(KEY, &t, "https://example.com/a", &sig));
        assert!(!url_signature_valid(KEY, &t, "https://evil.example/a", &sig));
        let other = recipient_token(KEY, r());
        assert!(!url_signature_valid(KEY, &other, "https://example.com/a", &sig));
    }

    #[test]
    fn rewrites_http_links_only() {
        let links = Links::new("https://app.test", KEY, r());
        let html =
            r##"<a href="https://shop.test/x?a=1&amp;b=2">x</a> <a href='mailto:a@b.c'>m</a> <A HREF = "#top">t</A>"##;
        let out = track_links(html, &links);
        assert!(out.contains("https://app.test/t/click/"), "{out}");
        assert!(out.contains("href='mailto:a@b.c'"));
        assert!(out.contains(r##"HREF = "#top""##));
        assert!(!out.contains("https://shop.test/x"), "the destination is only inside the encoded parameter: {out}");
    }
}

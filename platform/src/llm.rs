//! Text generation behind one type: an OpenAI-compatible chat-completions client
//! (OpenAI, OpenRouter, Azure, Ollama, …) when a key is configured, and a local
//! deterministic generator otherwise, so everything works offline.
//!
//! Errors say whether trying again can help: 429, 5xx and timeouts are `Retryable`;
//! other 4xx are `Rejected`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Secret;

pub const LOCAL_MODEL: &str = "local-template-v1";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChatMessage {
    /// system, user or assistant.
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn system(content: impl Into<String>) -> Self {
        Self { role: "system".into(), content: content.into() }
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self { role: "user".into(), content: content.into() }
    }
}

#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    /// Overrides the provider's default model.
    pub model: Option<String>,
    pub temperature: f32,
    pub max_tokens: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChatResponse {
    pub content: String,
    pub model: String,
    pub provider: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("the provider is unavailable right now: {0}")]
    Retryable(String),
    #[error("the provider refused the request: {0}")]
    Rejected(String),
}

/// Where generation happens.
#[derive(Debug, Clone)]
pub enum LlmProvider {
    OpenAiCompatible(OpenAiCompatible),
    Local,
}

#[derive(Debug, Clone)]
pub struct OpenAiCompatible {
    pub name: &'static str,
    base_url: String,
    api_key: Secret,
    default_model: String,
    http: reqwest::Client,
}

impl LlmProvider {
    /// From `OPENAI_API_KEY` (+ `OPENAI_BASE_URL`), else `OPENROUTER_API_KEY`, else local.
    /// `LLM_MODEL` sets the default model; `LLM_TIMEOUT_SECS` the request timeout (60).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let nonempty = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let model = nonempty("LLM_MODEL").unwrap_or_else(|| "gpt-4o-mini".into());
        let timeout = nonempty("LLM_TIMEOUT_SECS").and_then(|v| v.parse().ok()).unwrap_or(60);
        let (name, key, base) = if let Some(key) = nonempty("OPENAI_API_KEY") {
            ("openai", key, nonempty("OPENAI_BASE_URL").unwrap_or_else(|| "https://api.openai.com/v1".into()))
        } else if let Some(key) = nonempty("OPENROUTER_API_KEY") {
            (
                "openrouter",
                key,
                nonempty("OPENROUTER_BASE_URL").unwrap_or_else(|| "https://openrouter.ai/api/v1".into()),
            )
        } else {
            return Self::Local;
        };
        crate::install_tls_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(timeout))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self::OpenAiCompatible(OpenAiCompatible {
            name,
            base_url: base.trim_end_matches('/').to_owned(),
            api_key: Secret::new(key),
            default_model: model,
            http,
        })
    }

    /// From the environment and `.env`, like [`crate::Config::from_env`].
    pub fn from_env() -> Self {
        Self::from_lookup(crate::config::env_lookup())
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::OpenAiCompatible(p) => p.name,
            Self::Local => "local",
        }
    }

    pub fn default_model(&self) -> &str {
        match self {
            Self::OpenAiCompatible(p) => &p.default_model,
            Self::Local => LOCAL_MODEL,
        }
    }

    #[tracing::instrument(name = "llm.complete", skip_all, fields(provider = self.name(), messages = req.messages.len()))]
    pub async fn complete(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        match self {
            Self::Local => Ok(local_completion(req)),
            Self::OpenAiCompatible(p) => p.complete(req).await,
        }
    }
}

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    temperature: f32,
    max_tokens: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
}

/// A completion arriving in pieces: the model answering, and its text as it comes.
/// The channel ends after the last piece; an `Err` item means the stream broke off.
pub struct ChatStream {
    pub model: String,
    pub provider: &'static str,
    pub chunks: tokio::sync::mpsc::Receiver<Result<String, LlmError>>,
}

impl ChatStream {
    /// A stream of a text known whole, word by word, so clients take the same path as
    /// with a provider's stream.
    pub fn from_text(text: String, model: String, provider: &'static str) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            for piece in text.split_inclusive(' ') {
                if tx.send(Ok(piece.to_owned())).await.is_err() {
                    return;
                }
            }
        });
        ChatStream { model, provider, chunks: rx }
    }
}

impl LlmProvider {
    /// Like [`LlmProvider::complete`], but the text arrives in pieces. Errors before the
    /// first piece (refusals, outages) come back here, so callers can answer them plainly.
    #[tracing::instrument(name = "llm.stream", skip_all, fields(provider = self.name(), messages = req.messages.len()))]
    pub async fn stream(&self, req: &ChatRequest) -> Result<ChatStream, LlmError> {
        match self {
            Self::Local => {
                // The local generator has its whole answer at once; it is streamed word by
                // word so clients exercise the same path offline.
                let answer = local_completion(req);
                Ok(ChatStream::from_text(answer.content, answer.model, "local"))
            }
            Self::OpenAiCompatible(p) => p.stream(req).await,
        }
    }
}

#[derive(Deserialize)]
struct WireChunk {
    #[serde(default)]
    choices: Vec<WireDelta>,
}

#[derive(Deserialize)]
struct WireDelta {
    #[serde(default)]
    delta: WireDeltaContent,
}

#[derive(Deserialize, Default)]
struct WireDeltaContent {
    content: Option<String>,
}

/// Splits server-sent-event bytes into `data:` payloads; keeps an unfinished line in
/// `buf`. Bytes are decoded a whole line at a time: a network chunk may end inside a
/// multi-byte character, but never inside a line's `\n`.
fn sse_data_lines(buf: &mut Vec<u8>) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(end) = buf.iter().position(|b| *b == b'\n') {
        let line: Vec<u8> = buf.drain(..=end).collect();
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end_matches(['\r', '\n']);
        if let Some(data) = line.strip_prefix("data:") {
            out.push(data.trim_start().to_owned());
        }
    }
    out
}

#[derive(Deserialize)]
struct WireResponse {
    model: Option<String>,
    choices: Vec<WireChoice>,
}

#[derive(Deserialize)]
struct WireChoice {
    message: ChatMessage,
}

/// A request that never got an answer: worth another try later.
fn transport(e: reqwest::Error) -> LlmError {
    LlmError::Retryable(if e.is_timeout() { "timed out".into() } else { "connection failed".into() })
}

impl OpenAiCompatible {
    /// The models the provider offers (`GET {base}/models`, OpenAI's list shape).
    #[tracing::instrument(name = "llm.models", skip(self), fields(provider = self.name), err)]
    pub async fn models(&self) -> Result<Vec<String>, LlmError> {
        #[derive(Deserialize)]
        struct List {
            data: Vec<Item>,
        }
        #[derive(Deserialize)]
        struct Item {
            id: String,
        }
        let response = self
            .http
            .get(format!("{}/models", self.base_url))
            .bearer_auth(self.api_key.expose())
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        if !status.is_success() {
            return Err(LlmError::Rejected(format!("HTTP {status} listing models")));
        }
        let list: List = response.json().await.map_err(|_| LlmError::Rejected("an unreadable model list".into()))?;
        // Bounded: an id is a name, and the list is shown to tenants.
        Ok(list
            .data
            .into_iter()
            .map(|m| m.id)
            .filter(|id| !id.is_empty() && id.len() <= 200 && !id.chars().any(char::is_control))
            .take(1000)
            .collect())
    }

    /// Sends the chat completion request; transport failures, 429 and 5xx are retryable,
    /// other non-success statuses are refusals carrying the provider's message.
    async fn send(&self, model: &str, req: &ChatRequest, stream: bool) -> Result<reqwest::Response, LlmError> {
        let body = WireRequest {
            model,
            messages: &req.messages,
            temperature: req.temperature,
            max_tokens: req.max_tokens,
            stream,
        };
        let response = self
            .http
            .post(format!("{}/chat/completions", self.base_url))
            .bearer_auth(self.api_key.expose())
            .json(&body)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(LlmError::Retryable(format!("HTTP {status}")));
        }
        if !status.is_success() {
            // The provider's message helps the caller fix the request; it holds no secret.
            let detail: String = response.text().await.unwrap_or_default().chars().take(300).collect();
            return Err(LlmError::Rejected(format!("HTTP {status}: {detail}")));
        }
        Ok(response)
    }

    async fn stream(&self, req: &ChatRequest) -> Result<ChatStream, LlmError> {
        use futures_util::StreamExt;
        let model = req.model.as_deref().unwrap_or(&self.default_model).to_owned();
        let response = self.send(&model, req, true).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let mut bytes = response.bytes_stream();
        tokio::spawn(async move {
            let mut buf: Vec<u8> = Vec::new();
            while let Some(next) = bytes.next().await {
                let chunk = match next {
                    Ok(c) => c,
                    Err(_) => {
                        let _ = tx.send(Err(LlmError::Retryable("the stream broke off".into()))).await;
                        return;
                    }
                };
                buf.extend_from_slice(&chunk);
                for data in sse_data_lines(&mut buf) {
                    if data == "[DONE]" {
                        return;
                    }
                    let Ok(parsed) = serde_json::from_str::<WireChunk>(&data) else { continue };
                    for choice in parsed.choices {
                        if let Some(text) = choice.delta.content.filter(|t| !t.is_empty())
                            && tx.send(Ok(text)).await.is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
        Ok(ChatStream { model, provider: self.name, chunks: rx })
    }

    async fn complete(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let model = req.model.as_deref().unwrap_or(&self.default_model);
        let response = self.send(model, req, false).await?;
        let parsed: WireResponse =
            response.json().await.map_err(|_| LlmError::Retryable("unreadable response".into()))?;
        let content = parsed
            .choices
            .into_iter()
            .next()
            .map(|c| c.message.content)
            .ok_or_else(|| LlmError::Retryable("no choices in the response".into()))?;
        Ok(ChatResponse { content, model: parsed.model.unwrap_or_else(|| model.to_owned()), provider: self.name })
    }
}

/// A deterministic stand-in: the same request always gives the same text, built from the
/// user's last message so it is on topic. Marked with [`LOCAL_MODEL`] wherever stored.
fn local_completion(req: &ChatRequest) -> ChatResponse {
    let prompt = req.messages.iter().rev().find(|m| m.role == "user").map(|m| m.content.as_str()).unwrap_or("");
    let topic = prompt.lines().find(|l| !l.trim().is_empty()).unwrap_or("your business").trim();
    let topic: String = topic.chars().take(120).collect();
    let digest = Sha256::digest(prompt.as_bytes());
    let openers = [
        "Here is what matters most about",
        "A practical look at",
        "Everything a small business should know about",
        "Three ideas to make the most of",
    ];
    let closers = [
        "Start small, measure what works, and build on it.",
        "Pick one idea this week and try it with a few customers.",
        "Questions? Reply to this message and we will help.",
    ];
    let opener = openers[usize::from(digest[0]) % openers.len()];
    let closer = closers[usize::from(digest[1]) % closers.len()];
    let content = format!(
        "{opener} {topic}.\n\n1. Know who it is for: describe the customer you want to reach.\n\
         2. Say one thing clearly: lead with the benefit, not the feature.\n\
         3. Make the next step easy: one link, one call to action.\n\n{closer}"
    );
    ChatResponse { content, model: LOCAL_MODEL.to_owned(), provider: "local" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chooses_a_provider_from_the_environment() {
        let local = LlmProvider::from_lookup(|_| None);
        assert_eq!((local.name(), local.default_model()), ("local", LOCAL_MODEL));
        let openai = LlmProvider::from_lookup(|k| (k == "OPENAI_API_KEY").then(|| "sk-test".to_string()));
        assert_eq!((openai.name(), openai.default_model()), ("openai", "gpt-4o-mini"));
        assert!(!format!("{openai:?}").contains("sk-test"), "the key never shows in Debug output");
        let router = LlmProvider::from_lookup(|k| match k {
            "OPENROUTER_API_KEY" => Some("or-key".into()),
            "LLM_MODEL" => Some("meta/llama".into()),
            _ => None,
        });
        assert_eq!((router.name(), router.default_model()), ("openrouter", "meta/llama"));
    }

    #[test]
    fn server_sent_events_are_split_into_data_lines() {
        let mut buf = b"data: {\"a\":1}\r\n\ndata: [DONE]\n\ndata: part".to_vec();
        assert_eq!(sse_data_lines(&mut buf), vec!["{\"a\":1}".to_owned(), "[DONE]".to_owned()]);
        assert_eq!(buf, b"data: part", "an unfinished line waits for more bytes");
    }

    /// A provider whose stream splits a two-byte character across network chunks: the
    /// text must arrive whole, not with U+FFFD where the split was.
    #[tokio::test]
    async fn a_character_split_across_chunks_arrives_whole() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 8192];
            let _ = socket.read(&mut request).await.unwrap();
            let event = "data: {\"choices\":[{\"delta\":{\"content\":\"Caf\u{e9} ouvert\"}}]}\n\ndata: [DONE]\n\n";
            let bytes = event.as_bytes();
            let split = bytes.iter().position(|b| *b == 0xC3).unwrap() + 1;
            socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
                .await
                .unwrap();
            for part in [&bytes[..split], &bytes[split..]] {
                socket.write_all(format!("{:x}\r\n", part.len()).as_bytes()).await.unwrap();
                socket.write_all(part).await.unwrap();
                socket.write_all(b"\r\n").await.unwrap();
                socket.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            socket.write_all(b"0\r\n\r\n").await.unwrap();
        });
        let provider = LlmProvider::from_lookup(|k| match k {
            "OPENAI_API_KEY" => Some("sk-test".into()),
            "OPENAI_BASE_URL" => Some(format!("http://{addr}/v1")),
            _ => None,
        });
        let req =
            ChatRequest { messages: vec![ChatMessage::user("hi")], model: None, temperature: 0.0, max_tokens: 10 };
        let mut stream = provider.stream(&req).await.unwrap();
        let mut text = String::new();
        while let Some(piece) = stream.chunks.recv().await {
            text.push_str(&piece.unwrap());
        }
        assert_eq!(text, "Caf\u{e9} ouvert");
    }

    #[tokio::test]
    async fn the_local_provider_streams_the_same_text_it_completes() {
        let req = ChatRequest {
            messages: vec![ChatMessage::user("Boiler care")],
            model: None,
            temperature: 0.7,
            max_tokens: 50,
        };
        let whole = LlmProvider::Local.complete(&req).await.unwrap().content;
        let mut stream = LlmProvider::Local.stream(&req).await.unwrap();
        let mut joined = String::new();
        while let Some(piece) = stream.chunks.recv().await {
            joined.push_str(&piece.unwrap());
        }
        assert_eq!(joined, whole);
    }

    #[tokio::test]
    async fn the_local_provider_is_deterministic_and_on_topic() {
        let req = |text: &str| ChatRequest {
            messages: vec![ChatMessage::system("be nice"), ChatMessage::user(text)],
            model: None,
            temperature: 0.7,
            max_tokens: 100,
        };
        let a = LlmProvider::Local.complete(&req("Spring garden care")).await.unwrap();
        let b = LlmProvider::Local.complete(&req("Spring garden care")).await.unwrap();
        assert_eq!(a.content, b.content);
        assert!(a.content.contains("Spring garden care"));
        assert_eq!(a.model, LOCAL_MODEL);
    }
}

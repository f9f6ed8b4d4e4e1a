//! The model that chooses tools for a prompt (`warden.tools.llm`, issue 14): OpenAI's chat
//! completions (which OpenAI, llama.cpp's server, Ollama, vLLM and most others speak) or
//! Gemini's `generateContent`. Its answer must be JSON naming known categories and listed
//! tools; anything else — a refused key, 429, 5xx, a timeout, an answer that is not that JSON,
//! names that do not exist — is an error with its reason, and the caller falls back to the
//! static choice at once. After 429 or 5xx the model is not asked again until a backoff ends
//! (`Retry-After` when given, else 2 s doubling to 5 min). The API key goes into the request
//! only: errors never quote it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use warden_config::{LlmProvider, LlmSettings};

/// What the model chose.
#[derive(Clone, Debug, Default)]
pub struct Choice {
    pub categories: Vec<String>,
    pub tools: Vec<String>,
    pub why: String,
}

/// Why the model's choice is not used; `class` is the metric's `outcome` label.
#[derive(Clone, Debug)]
pub struct Refusal {
    pub class: &'static str,
    pub reason: String,
}

fn refuse(class: &'static str, reason: impl Into<String>) -> Refusal {
    Refusal { class, reason: reason.into() }
}

/// A listed tool as the model is shown it.
pub struct Candidate<'a> {
    pub name: &'a str,
    pub description: &'a str,
}

const BACKOFF_FIRST: Duration = Duration::from_secs(2);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

pub struct ToolPicker {
    settings: LlmSettings,
    client: reqwest::Client,
    /// Not asked before this; the next backoff's length.
    backoff: Mutex<(Option<Instant>, Duration)>,
}

impl ToolPicker {
    pub fn new(settings: LlmSettings) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a default reqwest client builds");
        Self { settings, client, backoff: Mutex::new((None, BACKOFF_FIRST)) }
    }

    pub fn provider(&self) -> &'static str {
        self.settings.provider.as_str()
    }

    fn backing_off(&self) -> Option<Duration> {
        let b = self.backoff.lock().expect("not poisoned");
        b.0.and_then(|until| until.checked_duration_since(Instant::now()))
    }

    fn back_off(&self, retry_after: Option<Duration>) {
        let mut b = self.backoff.lock().expect("not poisoned");
        let wait = retry_after.unwrap_or(b.1).min(BACKOFF_MAX);
        b.0 = Some(Instant::now() + wait);
        b.1 = (b.1 * 2).min(BACKOFF_MAX);
    }

    fn succeeded(&self) {
        *self.backoff.lock().expect("not poisoned") = (None, BACKOFF_FIRST);
    }

    /// Asks the model; `Err` says why its choice cannot be used.
    pub async fn choose(
        &self,
        prompt: &str,
        tools: &[Candidate<'_>],
        categories: &[(String, String)],
        max_tools: usize,
    ) -> Result<Choice, Refusal> {
        if let Some(left) = self.backing_off() {
            return Err(refuse(
                "backoff",
                format!("backing off after a refusal for {:.0} s more", left.as_secs_f64()),
            ));
        }
        let instructions = instructions(tools, categories, max_tools);
        let request = self.request(&instructions, prompt);
        let sent = tokio::time::timeout(self.settings.timeout, request.send()).await;
        let resp = match sent {
            Err(_) => {
                return Err(refuse(
                    "timeout",
                    format!("no answer within {:?}", self.settings.timeout),
                ))
            }
            Ok(Err(e)) if e.is_connect() => return Err(refuse("unreachable", "cannot connect")),
            Ok(Err(_)) => return Err(refuse("unreachable", "the request failed")),
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            self.back_off(retry_after);
            let class = if status.is_server_error() { "server_error" } else { "rate_limited" };
            return Err(refuse(class, format!("the model's API answered {status}")));
        }
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(refuse("invalid_key", format!("the API key was refused ({status})")));
        }
        if !status.is_success() {
            return Err(refuse("bad_answer", format!("the model's API answered {status}")));
        }
        let body = match tokio::time::timeout(self.settings.timeout, resp.json::<Value>()).await {
            Err(_) => return Err(refuse("timeout", "the answer did not finish in time")),
            Ok(Err(_)) => return Err(refuse("bad_answer", "the answer is not JSON")),
            Ok(Ok(v)) => v,
        };
        let text = match self.settings.provider {
            LlmProvider::OpenAi => body["choices"][0]["message"]["content"].as_str(),
            LlmProvider::Gemini => body["candidates"][0]["content"]["parts"][0]["text"].as_str(),
        };
        let Some(text) = text else {
            return Err(refuse("bad_answer", "the answer holds no message"));
        };
        let choice = parse_choice(text, tools, categories, max_tools)?;
        self.succeeded();
        Ok(choice)
    }

    fn request(&self, instructions: &str, prompt: &str) -> reqwest::RequestBuilder {
        let s = &self.settings;
        let key = s.api_key.as_ref().map(|k| k.expose().to_owned());
        match s.provider {
            LlmProvider::OpenAi => {
                let mut r = self.client.post(format!("{}/chat/completions", s.url)).json(&json!({
                    "model": s.model,
                    "temperature": 0,
                    "response_format": { "type": "json_object" },
                    "messages": [
                        { "role": "system", "content": instructions },
                        { "role": "user", "content": prompt },
                    ],
                }));
                if let Some(k) = key {
                    r = r.bearer_auth(k);
                }
                r
            }
            LlmProvider::Gemini => {
                let mut r = self
                    .client
                    .post(format!("{}/models/{}:generateContent", s.url, s.model))
                    .json(&json!({
                        "systemInstruction": { "parts": [{ "text": instructions }] },
                        "contents": [{ "role": "user", "parts": [{ "text": prompt }] }],
                        "generationConfig": { "temperature": 0, "responseMimeType": "application/json" },
                    }));
                if let Some(k) = key {
                    r = r.header("x-goog-api-key", k);
                }
                r
            }
        }
    }
}

/// The system message: the categories, the tools (descriptions cut short) and the answer's form.
fn instructions(tools: &[Candidate<'_>], categories: &[(String, String)], max: usize) -> String {
    let mut s = String::from(
        "You choose the tools an AI assistant needs for the user's task. Answer with JSON only: \
         {\"categories\": [names], \"tools\": [names], \"why\": \"one sentence\"}, using only names \
         listed below",
    );
    s.push_str(&format!(", at most {max} tools.\n\nCategories:\n"));
    for (name, desc) in categories {
        s.push_str(&format!("- {name}: {desc}\n"));
    }
    s.push_str("\nTools:\n");
    for t in tools {
        let d: String = t.description.chars().take(120).collect();
        s.push_str(&format!("- {}: {}\n", t.name, d.replace('\n', " ")));
    }
    s
}

/// The model's text as a choice of known names.
fn parse_choice(
    text: &str,
    tools: &[Candidate<'_>],
    categories: &[(String, String)],
    max: usize,
) -> Result<Choice, Refusal> {
    // Some models wrap JSON in a Markdown fence.
    let trimmed = text
        .trim()
        .trim_start_matches("```json")
        .trim_start_matches("```")
        .trim_end_matches("```")
        .trim();
    let v: Value = serde_json::from_str(trimmed)
        .map_err(|_| refuse("bad_answer", "the model's message is not JSON"))?;
    let names = |k: &str| -> Result<Vec<String>, Refusal> {
        match &v[k] {
            Value::Null => Ok(vec![]),
            Value::Array(a) => a
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| refuse("bad_answer", format!("{k} holds a non-string")))
                })
                .collect(),
            _ => Err(refuse("bad_answer", format!("{k} is not a list"))),
        }
    };
    let (cats, mut chosen) = (names("categories")?, names("tools")?);
    let unknown: Vec<&String> = cats
        .iter()
        .filter(|c| !categories.iter().any(|(n, _)| n == *c))
        .chain(chosen.iter().filter(|t| !tools.iter().any(|c| c.name == t.as_str())))
        .collect();
    if !unknown.is_empty() {
        let list: Vec<&str> = unknown.iter().map(|s| s.as_str()).collect();
        return Err(refuse(
            "unknown_names",
            format!("the model named what is not listed: {}", list.join(", ")),
        ));
    }
    if cats.is_empty() && chosen.is_empty() {
        return Err(refuse("bad_answer", "the model chose nothing"));
    }
    chosen.truncate(max);
    Ok(Choice {
        categories: cats,
        tools: chosen,
        why: v["why"].as_str().unwrap_or_default().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_json_naming_known_things_is_a_choice() {
        let tools = [Candidate { name: "fs__read", description: "Read a file" }];
        let cats = [("files".to_owned(), "file".to_owned())];
        let ok = parse_choice(
            r#"```json
{"categories": ["files"], "tools": ["fs__read"], "why": "reading"}
```"#,
            &tools,
            &cats,
            5,
        )
        .unwrap();
        assert_eq!(
            (ok.categories, ok.tools, ok.why.as_str()),
            (vec!["files".to_owned()], vec!["fs__read".to_owned()], "reading")
        );
        for (text, class) in [
            ("I think you need the file tool", "bad_answer"),
            (r#"{"tools": ["fs__write"]}"#, "unknown_names"),
            (r#"{"categories": ["weather"]}"#, "unknown_names"),
            (r#"{"categories": [], "tools": []}"#, "bad_answer"),
            (r#"{"tools": "fs__read"}"#, "bad_answer"),
        ] {
            assert_eq!(parse_choice(text, &tools, &cats, 5).unwrap_err().class, class, "{text}");
        }
    }
}

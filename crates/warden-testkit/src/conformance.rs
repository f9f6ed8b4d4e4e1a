//! What the official MCP conformance suite (`@modelcontextprotocol/conformance`, server
//! scenarios) expects of the server under test, switched on by `--conformance`.
//!
//! The suite calls fixed names: tools `test_simple_text`, `test_image_content`,
//! `test_audio_content`, `test_embedded_resource`, `test_multiple_content_types`,
//! `test_tool_with_logging`, `test_tool_with_progress`, `test_error_handling`, `test_sampling`,
//! `test_elicitation`, `test_elicitation_sep1034_defaults`, `test_elicitation_sep1330_enums`,
//! `test_reconnection` and `json_schema_2020_12_tool`; resources `test://static-text`,
//! `test://static-binary`, `test://watched-resource` and the template `test://template/{id}/data`;
//! prompts `test_simple_prompt`, `test_prompt_with_arguments`,
//! `test_prompt_with_embedded_resource` and `test_prompt_with_image`; plus `logging/setLevel`,
//! `completion/complete` and `resources/(un)subscribe`. Contents follow the descriptions in the
//! suite (`conformance list --server`, each scenario's description) so results can be compared
//! with the reference server.
//!
//! Sampling and elicitation are server-to-client requests on sessions before 2026-07-28; on
//! 2026-07-28 sessions (Warden's upstream sessions negotiate it) the tools answer
//! `input_required` instead and finish when called again with `inputResponses` (SEP-2322).
//!
//! The misbehaviour knobs still apply on top (latency, hangs, crashes), and the misbehave
//! tools stay listed next to these.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[allow(deprecated)] // logging is deprecated by SEP-2577 (2026-07-28); the suite tests it
use rmcp::model::SetLevelRequestParams;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CompleteRequestParams, CompleteResult, CompletionInfo,
    GetPromptRequestParams, GetPromptResult, InputRequest, InputRequests, InputRequiredResult,
    ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ProgressNotificationParam,
    ProtocolVersion, ReadResourceRequestParams, ReadResourceResult, ServerCapabilities,
    ServerRequest, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};

/// A 1×1 red PNG.
const PNG: &str = concat!(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0g",
    "AAAABJRU5ErkJggg=="
);
/// A WAV header with one silent sample.
const WAV: &str = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=";
const JSON_SCHEMA_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";
/// Values offered by `completion/complete` (filtered by the typed prefix).
const COMPLETIONS: [&str; 5] = ["paris", "park", "party", "test", "testing"];
/// The template the suite reads as `test://template/123/data`.
const TEMPLATE_PREFIX: &str = "test://template/";
const TEMPLATE_SUFFIX: &str = "/data";

/// Builds an rmcp model value from the JSON the suite documents; the fixtures are constants,
/// so a failure is a bug in this file (and the unit tests below catch it).
fn from_json<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("a valid conformance fixture")
}

fn object(v: Value) -> Arc<Map<String, Value>> {
    match v {
        Value::Object(m) => Arc::new(m),
        _ => unreachable!("schemas are objects"),
    }
}

fn text_result(text: impl Into<String>) -> CallToolResponse {
    CallToolResponse::Complete(from_json(
        json!({"content": [{"type": "text", "text": text.into()}]}),
    ))
}

fn tool_error(text: impl Into<String>) -> CallToolResponse {
    CallToolResponse::Complete(from_json(
        json!({"content": [{"type": "text", "text": text.into()}], "isError": true}),
    ))
}

/// The capabilities the suite needs, on top of tools.
pub(crate) fn capabilities() -> ServerCapabilities {
    from_json(json!({
        "tools": {"listChanged": true},
        "resources": {"subscribe": true, "listChanged": true},
        "prompts": {"listChanged": true},
        "logging": {},
        "completions": {}
    }))
}

const TOOLS: [(&str, &str); 14] = [
    ("test_simple_text", "Returns one text block."),
    ("test_image_content", "Returns one PNG image block."),
    ("test_audio_content", "Returns one WAV audio block."),
    ("test_embedded_resource", "Returns one embedded text resource."),
    ("test_multiple_content_types", "Returns text, an image and an embedded JSON resource."),
    ("test_tool_with_logging", "Sends three info log messages 50 ms apart while it runs."),
    ("test_tool_with_progress", "Reports progress 0, 50 and 100 of 100, 50 ms apart."),
    ("test_error_handling", "Always answers with a tool error (isError: true)."),
    ("test_sampling", "Asks the client for an LLM completion (sampling/createMessage)."),
    ("test_elicitation", "Asks the client for a username and an email (elicitation/create)."),
    ("test_elicitation_sep1034_defaults", "Elicits a form whose fields have defaults (SEP-1034)."),
    ("test_elicitation_sep1330_enums", "Elicits a form with the five enum shapes (SEP-1330)."),
    ("test_reconnection", "Answers after 100 ms (the SSE polling scenario calls it)."),
    ("json_schema_2020_12_tool", "Tool with JSON Schema 2020-12 features (SEP-1613)."),
];

/// The conformance tools, listed after the misbehave tools.
pub(crate) fn tools() -> Vec<Tool> {
    TOOLS
        .iter()
        .map(|(name, description)| {
            let schema = match *name {
                "test_sampling" => json!({
                    "type": "object",
                    "properties": {
                        "prompt": {"type": "string", "description": "The prompt to send to the LLM"}
                    },
                    "required": ["prompt"]
                }),
                "test_elicitation" => json!({
                    "type": "object",
                    "properties": {
                        "message": {"type": "string", "description": "The message to show the user"}
                    },
                    "required": ["message"]
                }),
                "json_schema_2020_12_tool" => json!({
                    "$schema": JSON_SCHEMA_2020_12,
                    "type": "object",
                    "$defs": {
                        "address": {
                            "type": "object",
                            "properties": {"street": {"type": "string"}, "city": {"type": "string"}}
                        }
                    },
                    "properties": {
                        "name": {"type": "string"},
                        "address": {"$ref": "#/$defs/address"}
                    },
                    "additionalProperties": false
                }),
                _ => json!({"type": "object", "properties": {}}),
            };
            Tool::new(*name, *description, object(schema))
        })
        .collect()
}

pub(crate) fn is_tool(name: &str) -> bool {
    TOOLS.iter().any(|(n, _)| *n == name)
}

/// Rank of a `logging/setLevel` level, lowest (debug) first.
fn level_rank(level: &str) -> usize {
    ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]
        .iter()
        .position(|l| *l == level)
        .unwrap_or(0)
}

/// Per-server state of the conformance features.
#[derive(Default)]
pub(crate) struct Conformance {
    /// The last `logging/setLevel` (shared by every session: this is a test server).
    log_level: Mutex<Option<String>>,
    /// `resources/subscribe`d URIs.
    subscriptions: Mutex<BTreeSet<String>>,
}

impl Conformance {
    #[allow(deprecated)] // logging is deprecated by SEP-2577 (2026-07-28); the suite tests it
    async fn log(&self, ctx: &RequestContext<RoleServer>, level: &str, message: &str) {
        let min = self.log_level.lock().expect("not poisoned").clone();
        if min.is_some_and(|min| level_rank(level) < level_rank(&min)) {
            return;
        }
        let param = from_json(json!({"level": level, "logger": "mcp-misbehave", "data": message}));
        let _ = ctx.peer.notify_logging_message(param).await;
    }

    pub(crate) async fn call_tool(
        &self,
        req: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let arg = |key: &str| {
            req.arguments
                .as_ref()
                .and_then(|a| a.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let response = match req.name.as_ref() {
            "test_simple_text" => text_result("This is a simple text response for testing."),
            "test_image_content" => CallToolResponse::Complete(from_json(json!({
                "content": [{"type": "image", "data": PNG, "mimeType": "image/png"}]
            }))),
            "test_audio_content" => CallToolResponse::Complete(from_json(json!({
                "content": [{"type": "audio", "data": WAV, "mimeType": "audio/wav"}]
            }))),
            "test_embedded_resource" => CallToolResponse::Complete(from_json(json!({
                "content": [{"type": "resource", "resource": {
                    "uri": "test://embedded-resource", "mimeType": "text/plain",
                    "text": "This is an embedded resource content."
                }}]
            }))),
            "test_multiple_content_types" => CallToolResponse::Complete(from_json(json!({
                "content": [
                    {"type": "text", "text": "Multiple content types test:"},
                    {"type": "image", "data": PNG, "mimeType": "image/png"},
                    {"type": "resource", "resource": {
                        "uri": "test://mixed-content-resource", "mimeType": "application/json",
                        "text": json!({"test": "data", "value": 123}).to_string()
                    }}
                ]
            }))),
            "test_tool_with_logging" => {
                self.log(&ctx, "info", "Tool execution started").await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                self.log(&ctx, "info", "Tool processing data").await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                self.log(&ctx, "info", "Tool execution completed").await;
                text_result("Tool with logging executed successfully")
            }
            "test_tool_with_progress" => {
                let token = ctx.meta.get_progress_token();
                for (i, progress) in [0.0, 50.0, 100.0].into_iter().enumerate() {
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    if let Some(t) = &token {
                        let mut p = ProgressNotificationParam::new(t.clone(), progress);
                        p.total = Some(100.0);
                        p.message = Some(format!("Completed step {progress} of 100"));
                        let _ = ctx.peer.notify_progress(p).await;
                    }
                }
                text_result(match &token {
                    Some(t) => format!("progress reported on token {}", json!(t)),
                    None => "no progress token given".to_owned(),
                })
            }
            "test_error_handling" => {
                tool_error("This tool intentionally returns an error for testing")
            }
            "test_sampling" => {
                let prompt = arg("prompt").ok_or_else(|| {
                    ErrorData::invalid_params("missing string argument \"prompt\"", None)
                })?;
                sample(&ctx, &req, &prompt).await
            }
            "test_elicitation" => {
                let message =
                    arg("message").unwrap_or_else(|| "Please provide your information".into());
                let schema = json!({
                    "type": "object",
                    "properties": {
                        "username": {"type": "string", "description": "User's response"},
                        "email": {"type": "string", "description": "User's email address"}
                    },
                    "required": ["username", "email"]
                });
                elicit(&ctx, &req, &message, schema, "User response").await
            }
            "test_elicitation_sep1034_defaults" => {
                let schema = json!({
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "description": "User name",
                                 "default": "John Doe"},
                        "age": {"type": "integer", "description": "User age", "default": 30},
                        "score": {"type": "number", "description": "User score", "default": 95.5},
                        "status": {"type": "string", "description": "User status",
                                   "enum": ["active", "inactive", "pending"], "default": "active"},
                        "verified": {"type": "boolean", "description": "Verification status",
                                     "default": true}
                    },
                    "required": []
                });
                elicit(
                    &ctx,
                    &req,
                    "Please review and update the form fields with defaults",
                    schema,
                    "Elicitation completed",
                )
                .await
            }
            "test_elicitation_sep1330_enums" => {
                let titled = |word: &str| {
                    (1..=3)
                        .map(|i| {
                            let ordinal = ["First", "Second", "Third"][i - 1];
                            let title = format!("{ordinal} {word}");
                            json!({"const": format!("value{i}"), "title": title})
                        })
                        .collect::<Vec<_>>()
                };
                let options = json!(["option1", "option2", "option3"]);
                let schema = json!({
                    "type": "object",
                    "properties": {
                        "untitledSingle": {"type": "string", "description": "Select one option",
                                           "enum": options},
                        "titledSingle": {"type": "string",
                                         "description": "Select one option with titles",
                                         "oneOf": titled("Option")},
                        "legacyEnum": {"type": "string",
                                       "description": "Select one option (legacy)",
                                       "enum": ["opt1", "opt2", "opt3"],
                                       "enumNames": ["Option One", "Option Two", "Option Three"]},
                        "untitledMulti": {"type": "array", "description": "Select multiple options",
                                          "minItems": 1, "maxItems": 3,
                                          "items": {"type": "string", "enum": options}},
                        "titledMulti": {"type": "array",
                                        "description": "Select multiple options with titles",
                                        "minItems": 1, "maxItems": 3,
                                        "items": {"anyOf": titled("Choice")}}
                    },
                    "required": []
                });
                elicit(
                    &ctx,
                    &req,
                    "Please select options from the enum fields",
                    schema,
                    "Elicitation completed",
                )
                .await
            }
            "test_reconnection" => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                text_result("Reconnection test completed successfully.")
            }
            "json_schema_2020_12_tool" => text_result(format!(
                "JSON Schema 2020-12 tool called with: {}",
                Value::Object(req.arguments.clone().unwrap_or_default())
            )),
            other => {
                return Err(ErrorData::invalid_params(format!("unknown tool {other:?}"), None))
            }
        };
        Ok(response)
    }

    pub(crate) fn list_resources(&self) -> ListResourcesResult {
        from_json(json!({"resources": [
            {"uri": "test://static-text", "name": "static-text", "title": "Static Text Resource",
             "description": "A static text resource for testing", "mimeType": "text/plain"},
            {"uri": "test://static-binary", "name": "static-binary",
             "title": "Static Binary Resource",
             "description": "A static binary resource (image) for testing",
             "mimeType": "image/png"},
            {"uri": "test://watched-resource", "name": "watched-resource",
             "title": "Watched Resource", "description": "A resource clients can subscribe to",
             "mimeType": "text/plain"}
        ]}))
    }

    pub(crate) fn list_resource_templates(&self) -> ListResourceTemplatesResult {
        from_json(json!({"resourceTemplates": [
            {"uriTemplate": "test://template/{id}/data", "name": "template",
             "title": "Resource Template",
             "description": "A resource template with parameter substitution",
             "mimeType": "application/json"}
        ]}))
    }

    pub(crate) fn read_resource(
        &self,
        req: &ReadResourceRequestParams,
    ) -> Result<ReadResourceResult, ErrorData> {
        let uri = req.uri.as_str();
        let content = match uri {
            "test://static-text" => json!({
                "uri": uri, "mimeType": "text/plain",
                "text": "This is the content of the static text resource."
            }),
            "test://static-binary" => json!({"uri": uri, "mimeType": "image/png", "blob": PNG}),
            "test://watched-resource" => {
                json!({"uri": uri, "mimeType": "text/plain", "text": "Watched resource content"})
            }
            _ => match uri
                .strip_prefix(TEMPLATE_PREFIX)
                .and_then(|r| r.strip_suffix(TEMPLATE_SUFFIX))
            {
                Some(id) if !id.is_empty() && !id.contains('/') => {
                    let data = format!("Data for ID: {id}");
                    let text = json!({"id": id, "templateTest": true, "data": data}).to_string();
                    json!({"uri": uri, "mimeType": "application/json", "text": text})
                }
                _ => {
                    return Err(ErrorData::resource_not_found(
                        format!("no resource {uri}"),
                        Some(json!({"uri": uri})),
                    ))
                }
            },
        };
        Ok(from_json(json!({"contents": [content]})))
    }

    pub(crate) fn subscribe(&self, uri: &str) {
        self.subscriptions.lock().expect("not poisoned").insert(uri.to_owned());
    }

    pub(crate) fn unsubscribe(&self, uri: &str) {
        self.subscriptions.lock().expect("not poisoned").remove(uri);
    }

    pub(crate) fn list_prompts(&self) -> ListPromptsResult {
        from_json(json!({"prompts": [
            {"name": "test_simple_prompt", "title": "Simple Test Prompt",
             "description": "A simple prompt without arguments"},
            {"name": "test_prompt_with_arguments", "title": "Prompt With Arguments",
             "description": "A prompt with required arguments",
             "arguments": [
                {"name": "arg1", "description": "First test argument", "required": true},
                {"name": "arg2", "description": "Second test argument", "required": true}
             ]},
            {"name": "test_prompt_with_embedded_resource",
             "title": "Prompt With Embedded Resource",
             "description": "A prompt that includes an embedded resource",
             "arguments": [{"name": "resourceUri", "description": "URI of the resource to embed",
                            "required": true}]},
            {"name": "test_prompt_with_image", "title": "Prompt With Image",
             "description": "A prompt that includes image content"}
        ]}))
    }

    pub(crate) fn get_prompt(
        &self,
        req: &GetPromptRequestParams,
    ) -> Result<GetPromptResult, ErrorData> {
        let arg = |key: &str| -> Result<String, ErrorData> {
            req.arguments
                .as_ref()
                .and_then(|a| a.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| {
                    ErrorData::invalid_params(format!("missing prompt argument {key:?}"), None)
                })
        };
        let user = |content: Value| json!({"role": "user", "content": content});
        let messages = match req.name.as_str() {
            "test_simple_prompt" => {
                vec![user(json!({"type": "text", "text": "This is a simple prompt for testing."}))]
            }
            "test_prompt_with_arguments" => {
                let (a, b) = (arg("arg1")?, arg("arg2")?);
                let text = format!("Prompt with arguments: arg1='{a}', arg2='{b}'");
                vec![user(json!({"type": "text", "text": text}))]
            }
            "test_prompt_with_embedded_resource" => vec![
                user(json!({"type": "resource", "resource": {
                    "uri": arg("resourceUri")?, "mimeType": "text/plain",
                    "text": "Embedded resource content for testing."
                }})),
                user(
                    json!({"type": "text", "text": "Please process the embedded resource above."}),
                ),
            ],
            "test_prompt_with_image" => vec![
                user(json!({"type": "image", "data": PNG, "mimeType": "image/png"})),
                user(json!({"type": "text", "text": "Please analyze the image above."})),
            ],
            other => {
                return Err(ErrorData::invalid_params(format!("unknown prompt {other:?}"), None))
            }
        };
        Ok(from_json(json!({"messages": messages})))
    }

    pub(crate) fn complete(&self, req: &CompleteRequestParams) -> CompleteResult {
        let prefix = req.argument.value.as_str();
        let values: Vec<String> =
            COMPLETIONS.iter().filter(|v| v.starts_with(prefix)).map(|v| (*v).to_owned()).collect();
        let total = u32::try_from(values.len()).unwrap_or(u32::MAX);
        let mut info = CompletionInfo::new(values).expect("fewer than 100 values");
        info.total = Some(total);
        info.has_more = Some(false);
        CompleteResult::new(info)
    }

    #[allow(deprecated)] // logging is deprecated by SEP-2577 (2026-07-28); the suite tests it
    pub(crate) fn set_level(&self, req: &SetLevelRequestParams) {
        let level = serde_json::to_value(req.level).unwrap_or_default();
        let level = level.as_str().unwrap_or("debug").to_owned();
        *self.log_level.lock().expect("not poisoned") = Some(level);
    }
}

/// Whether this request's session speaks 2026-07-28 or later, where a server may not send
/// requests to its client: it answers `input_required` naming them, and the client calls again
/// with the answers in `inputResponses` (SEP-2322, multi round-trip requests).
fn multi_round_trip(ctx: &RequestContext<RoleServer>) -> bool {
    ctx.protocol_version().is_some_and(|v| v.as_str() >= ProtocolVersion::V_2026_07_28.as_str())
}

/// The client's answer (its result, as JSON) to a `sampling/createMessage` or
/// `elicitation/create` request with these params; or what the tool answers instead: on a
/// 2026-07-28 session `input_required` until the call comes back with the answer, else a tool
/// error when the client cannot or did not answer. Older sessions get a server-to-client request.
async fn ask_client(
    ctx: &RequestContext<RoleServer>,
    req: &CallToolRequestParams,
    method: &str,
    params: Value,
) -> Result<Value, CallToolResponse> {
    let capable = ctx.client_capabilities().map(|c| match method {
        "sampling/createMessage" => c.sampling.is_some(),
        _ => c.elicitation.is_some(),
    });
    if capable == Some(false) {
        return Err(tool_error(format!("the client does not support {method}")));
    }
    let request = json!({"method": method, "params": params});
    if multi_round_trip(ctx) {
        if let Some(answer) = req.input_responses.as_ref().and_then(|r| r.get(method)) {
            return Ok(answer.clone());
        }
        let asked = InputRequests::from([(method.to_owned(), from_json::<InputRequest>(request))]);
        return Err(CallToolResponse::InputRequired(InputRequiredResult::from_input_requests(
            asked,
        )));
    }
    match ctx.peer.send_request(from_json::<ServerRequest>(request)).await {
        Ok(result) => Ok(serde_json::to_value(result).unwrap_or_default()),
        Err(e) => Err(tool_error(format!("{method} failed: {e}"))),
    }
}

/// `sampling/createMessage` with the prompt; answers with the client's text.
async fn sample(
    ctx: &RequestContext<RoleServer>,
    req: &CallToolRequestParams,
    prompt: &str,
) -> CallToolResponse {
    let params = json!({
        "messages": [{"role": "user", "content": {"type": "text", "text": prompt}}],
        "maxTokens": 100
    });
    match ask_client(ctx, req, "sampling/createMessage", params).await {
        Ok(v) => {
            let text = v["content"]["text"]
                .as_str()
                .or_else(|| v["content"][0]["text"].as_str())
                .unwrap_or("No response");
            text_result(format!("LLM response: {text}"))
        }
        Err(instead) => instead,
    }
}

/// `elicitation/create` (form mode) with this schema; answers with the action and content.
async fn elicit(
    ctx: &RequestContext<RoleServer>,
    req: &CallToolRequestParams,
    message: &str,
    schema: Value,
    label: &str,
) -> CallToolResponse {
    let params = json!({"mode": "form", "message": message, "requestedSchema": schema});
    match ask_client(ctx, req, "elicitation/create", params).await {
        Ok(v) => {
            let action = v["action"].as_str().unwrap_or("unknown");
            let content = if v["content"].is_null() { json!({}) } else { v["content"].clone() };
            text_result(format!("{label}: action={action}, content={content}"))
        }
        Err(instead) => instead,
    }
}

#[cfg(test)]
#[path = "conformance_tests.rs"]
mod tests;

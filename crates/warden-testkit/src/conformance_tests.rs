//! The conformance scenarios answer as the suite expects.

use rmcp::model::ElicitRequestParams;

use super::*;

#[test]
fn client_requests_parse_both_ways() {
    // The same JSON becomes a server-to-client request (sessions before 2026-07-28) or an
    // entry of `input_required` (2026-07-28).
    let sampling = json!({"method": "sampling/createMessage", "params": {
        "messages": [{"role": "user", "content": {"type": "text", "text": "hi"}}],
        "maxTokens": 100
    }});
    let elicitation = json!({"method": "elicitation/create", "params": {
        "mode": "form", "message": "m",
        "requestedSchema": {"type": "object", "properties": {"a": {"type": "string"}}}
    }});
    assert!(matches!(from_json(sampling.clone()), InputRequest::CreateMessage(_)));
    assert!(matches!(from_json(elicitation.clone()), InputRequest::Elicitation(_)));
    assert!(matches!(from_json(sampling), ServerRequest::CreateMessageRequest(_)));
    assert!(matches!(from_json(elicitation), ServerRequest::ElicitRequest(_)));
}

#[test]
fn every_fixture_deserializes() {
    let c = Conformance::default();
    assert_eq!(tools().len(), TOOLS.len());
    assert!(capabilities().resources.is_some());
    assert_eq!(c.list_resources().resources.len(), 3);
    assert_eq!(c.list_resource_templates().resource_templates.len(), 1);
    assert_eq!(c.list_prompts().prompts.len(), 4);
    for uri in ["test://static-text", "test://static-binary", "test://template/123/data"] {
        let r = c.read_resource(&ReadResourceRequestParams::new(uri)).expect(uri);
        let v = serde_json::to_value(&r).expect("serializes");
        assert_eq!(v["contents"][0]["uri"], uri);
    }
    let v = serde_json::to_value(
        c.read_resource(&ReadResourceRequestParams::new("test://template/123/data"))
            .expect("reads"),
    )
    .expect("serializes");
    assert!(v["contents"][0]["text"].as_str().expect("text").contains("123"));
    assert!(c.read_resource(&ReadResourceRequestParams::new("test://nope")).is_err());
}

#[test]
fn json_schema_2020_12_keywords_survive() {
    let tool = tools().into_iter().find(|t| t.name == "json_schema_2020_12_tool").expect("listed");
    let v = serde_json::to_value(&tool).expect("serializes");
    assert_eq!(v["inputSchema"]["$schema"], JSON_SCHEMA_2020_12);
    assert!(v["inputSchema"]["$defs"]["address"].is_object());
    assert_eq!(v["inputSchema"]["additionalProperties"], false);
}

#[test]
fn prompts_substitute_arguments() {
    let c = Conformance::default();
    let mut args = Map::new();
    args.insert("arg1".into(), json!("hello"));
    args.insert("arg2".into(), json!("world"));
    let req: GetPromptRequestParams =
        from_json(json!({"name": "test_prompt_with_arguments", "arguments": args}));
    let v = serde_json::to_value(c.get_prompt(&req).expect("gets")).expect("serializes");
    assert_eq!(
        v["messages"][0]["content"]["text"],
        "Prompt with arguments: arg1='hello', arg2='world'"
    );
}

#[test]
fn elicitation_schemas_keep_every_enum_shape() {
    // The SEP-1330 check reads these exact keys back from the request the client gets.
    let schema = json!({
        "type": "object",
        "properties": {
            "legacyEnum": {"type": "string", "enum": ["a", "b"], "enumNames": ["A", "B"]},
            "titledSingle": {"type": "string", "oneOf": [{"const": "v", "title": "V"}]},
            "titledMulti": {"type": "array",
                            "items": {"anyOf": [{"const": "v", "title": "V"}]}},
            "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["x"]}},
            "status": {"type": "string", "enum": ["active"], "default": "active"},
            "age": {"type": "integer", "default": 30}
        },
        "required": []
    });
    let params: ElicitRequestParams =
        from_json(json!({"mode": "form", "message": "m", "requestedSchema": schema}));
    let v = serde_json::to_value(&params).expect("serializes");
    let p = &v["requestedSchema"]["properties"];
    assert_eq!(p["legacyEnum"]["enumNames"], json!(["A", "B"]));
    assert_eq!(p["titledSingle"]["oneOf"][0]["title"], "V");
    assert_eq!(p["titledMulti"]["items"]["anyOf"][0]["const"], "v");
    assert_eq!(p["untitledMulti"]["items"]["enum"], json!(["x"]));
    assert_eq!(p["status"]["default"], "active");
    assert_eq!(p["age"]["default"], 30);
}

#[test]
fn completion_filters_by_prefix() {
    let c = Conformance::default();
    let req: CompleteRequestParams = from_json(json!({
        "ref": {"type": "ref/prompt", "name": "test_prompt_with_arguments"},
        "argument": {"name": "arg1", "value": "par"}
    }));
    assert_eq!(c.complete(&req).completion.values, ["paris", "park", "party"]);
}

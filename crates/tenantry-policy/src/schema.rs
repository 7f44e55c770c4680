//! The Cedar schema: the fixed base file and one generated action per catalogued tool, whose
//! context's `input` is typed from the tool's input schema.
//!
//! It must never let a tool's name collide with the `CallTool` group every tool action is in.

use std::collections::HashMap;

use cedar_policy::{Schema, SchemaFragment};
use serde_json::{Map, Value, json};

use crate::PolicyError;
use crate::input::InputType;

/// The fixed part of the Cedar schema.
pub const BASE_SCHEMA: &str = include_str!("../schema/tenantry.cedarschema");

pub(crate) const NAMESPACE: &str = "Tenantry";
pub(crate) const CALL_TOOL: &str = "CallTool";

/// The generated part of the schema, in Cedar's JSON format: one action per tool.
pub(crate) fn generated_fragment(tools: &HashMap<String, InputType>) -> Result<Value, PolicyError> {
    let mut actions = Map::new();
    let mut names: Vec<&String> = tools.keys().collect();
    names.sort();
    for name in names {
        if name == CALL_TOOL {
            return Err(PolicyError::Schema(format!(
                "a tool may not be named {CALL_TOOL:?}"
            )));
        }
        let input = tools.get(name).map(InputType::to_cedar_schema);
        actions.insert(
            name.clone(),
            json!({
                "memberOf": [{"id": CALL_TOOL}],
                "appliesTo": {
                    "principalTypes": ["User"],
                    "resourceTypes": ["Tool"],
                    "context": {
                        "type": "Record",
                        "attributes": {
                            "input": input,
                            "time": {"type": "EntityOrCommon", "name": "Time"},
                            "tool": {"type": "String"},
                        }
                    }
                }
            }),
        );
    }
    Ok(json!({ NAMESPACE: { "entityTypes": {}, "actions": actions } }))
}

pub(crate) fn build_schema(tools: &HashMap<String, InputType>) -> Result<Schema, PolicyError> {
    let (base, _warnings) = SchemaFragment::from_cedarschema_str(BASE_SCHEMA)
        .map_err(|e| PolicyError::Schema(format!("the base schema: {e}")))?;
    let generated = SchemaFragment::from_json_value(generated_fragment(tools)?)
        .map_err(|e| PolicyError::Schema(format!("the tool actions: {e}")))?;
    Schema::from_schema_fragments([base, generated])
        .map_err(|e| PolicyError::Schema(format!("the tool actions: {e}")))
}

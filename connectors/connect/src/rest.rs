//! The REST API of a connect runtime (JSON over HTTP):
//!
//! | method | path | does |
//! | --- | --- | --- |
//! | GET | `/connectors` | every connector's status |
//! | GET | `/connectors/{name}` | one connector's status |
//! | GET | `/connectors/{name}/config` | its configuration |
//! | PUT | `/connectors/{name}/config` | checks a configuration, then creates or replaces the connector |
//! | POST | `/connectors/{name}/pause`, `/resume`, `/restart` | controls it |
//! | DELETE | `/connectors/{name}` | stops and removes it (its stored position stays) |
//! | GET | `/openapi.json` | this API described in OpenAPI 3 |
//!
//! Mistakes come back as 4xx with `{"error": "…"}`. It owns the routes;
//! what they do is the runtime's.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::config::ConnectorConfig;
use crate::runtime::{Control, Runtime};

/// The routes, over `runtime`.
pub fn router(runtime: Arc<Runtime>) -> axum::Router {
    axum::Router::new()
        .route("/connectors", get(list))
        .route("/connectors/{name}", get(status).delete(delete))
        .route("/connectors/{name}/config", get(config).put(put_config))
        .route("/connectors/{name}/pause", post(pause))
        .route("/connectors/{name}/resume", post(resume))
        .route("/connectors/{name}/restart", post(restart))
        .route("/openapi.json", get(openapi))
        .with_state(runtime)
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (code, Json(json!({ "error": message.into() }))).into_response()
}

fn not_found(name: &str) -> Response {
    error(StatusCode::NOT_FOUND, format!("no connector '{name}'"))
}

async fn list(State(rt): State<Arc<Runtime>>) -> Response {
    Json(rt.list()).into_response()
}

async fn status(State(rt): State<Arc<Runtime>>, Path(name): Path<String>) -> Response {
    rt.status(&name).map_or_else(|| not_found(&name), |s| Json(s).into_response())
}

async fn config(State(rt): State<Arc<Runtime>>, Path(name): Path<String>) -> Response {
    rt.config(&name).map_or_else(|| not_found(&name), |c| Json(c).into_response())
}

async fn put_config(State(rt): State<Arc<Runtime>>, Path(name): Path<String>, body: axum::body::Bytes) -> Response {
    let mut config: ConnectorConfig = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("the configuration is not valid: {e}")),
    };
    if config.name.is_empty() {
        config.name.clone_from(&name);
    }
    if config.name != name {
        return error(StatusCode::BAD_REQUEST, format!("the configuration names '{}', the path '{name}'", config.name));
    }
    let created = rt.config(&name).is_none();
    if let Err(e) = rt.check(&config, None) {
        return error(StatusCode::BAD_REQUEST, e.to_string());
    }
    match rt.start(config).await {
        Ok(()) => {
            let code = if created { StatusCode::CREATED } else { StatusCode::OK };
            (code, Json(rt.status(&name))).into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

async fn pause(State(rt): State<Arc<Runtime>>, Path(name): Path<String>) -> Response {
    if rt.control(&name, Control::Pause) { StatusCode::ACCEPTED.into_response() } else { not_found(&name) }
}

async fn resume(State(rt): State<Arc<Runtime>>, Path(name): Path<String>) -> Response {
    if rt.control(&name, Control::Run) { StatusCode::ACCEPTED.into_response() } else { not_found(&name) }
}

async fn restart(State(rt): State<Arc<Runtime>>, Path(name): Path<String>) -> Response {
    match rt.restart(&name).await {
        Ok(true) => StatusCode::ACCEPTED.into_response(),
        Ok(false) => not_found(&name),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn delete(State(rt): State<Arc<Runtime>>, Path(name): Path<String>) -> Response {
    if rt.delete(&name).await { StatusCode::NO_CONTENT.into_response() } else { not_found(&name) }
}

async fn openapi() -> Response {
    Json(openapi_document()).into_response()
}

/// This API in OpenAPI 3.
pub fn openapi_document() -> serde_json::Value {
    let name = json!([{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}]);
    let problem = json!({"description": "mistake", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let status = json!({"description": "status", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}}});
    let control = |what: &str| json!({"post": {"summary": what, "parameters": name, "responses": {"202": {"description": "accepted"}, "404": problem}}});
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Rill connect", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Runs source and sink connectors; lists them with status and lag; changes them while they run."},
        "paths": {
            "/connectors": {"get": {"summary": "every connector's status",
                "responses": {"200": {"description": "statuses", "content": {"application/json":
                    {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Status"}}}}}}}},
            "/connectors/{name}": {
                "get": {"summary": "one connector's status", "parameters": name, "responses": {"200": status, "404": problem}},
                "delete": {"summary": "stop and remove it (its stored position stays)", "parameters": name,
                           "responses": {"204": {"description": "removed"}, "404": problem}}},
            "/connectors/{name}/config": {
                "get": {"summary": "its configuration", "parameters": name, "responses": {"200": {"description": "configuration",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Connector"}}}}, "404": problem}},
                "put": {"summary": "check a configuration, then create or replace the connector", "parameters": name,
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Connector"}}}},
                    "responses": {"200": status, "201": status, "400": problem}}},
            "/connectors/{name}/pause": control("pause it"),
            "/connectors/{name}/resume": control("resume it"),
            "/connectors/{name}/restart": control("restart it from its stored position"),
            "/openapi.json": {"get": {"summary": "this description", "responses": {"200": {"description": "OpenAPI 3"}}}}
        },
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
            "Status": {"type": "object", "properties": {
                "name": {"type": "string"}, "role": {"type": "string", "enum": ["source", "sink"]},
                "connector": {"type": "string"},
                "state": {"type": "string", "enum": ["STARTING", "RUNNING", "PAUSED", "FAILED", "STOPPED"]},
                "records": {"type": "integer"}, "dead_letters": {"type": "integer"},
                "position": {"type": "string", "nullable": true}, "lag_ms": {"type": "integer", "nullable": true},
                "error": {"type": "string", "nullable": true}}},
            "Connector": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string"}, "source": {"type": "string"}, "sink": {"type": "string"},
                "topic": {"type": "string"}, "topics": {"type": "array", "items": {"type": "string"}},
                "format": {"type": "string", "enum": ["debezium-json", "json"]},
                "columns": {"type": "array", "items": {"type": "string"}},
                "primary-key": {"type": "array", "items": {"type": "string"}},
                "config": {"type": "object", "additionalProperties": {"type": "string"}},
                "transforms": {"type": "array", "items": {"type": "object"}},
                "errors": {"type": "object", "properties": {
                    "tolerance": {"type": "string", "enum": ["none", "all"]}, "dead-letter-topic": {"type": "string"}}}}}
        }}
    })
}

//! The OpenAPI 3.1 document of the API, served at `/api/v1/openapi.json`. Written by hand;
//! the tests check that its paths and methods are exactly the routes of [`super::routes`].

use app::policy::Need;
use axum::{http::Method, Json};
use engine::schema::StringRule;
use engine::{AppName, BuildId, EnvKey, PromotionId, ReleaseId, Role, TokenId, Username};
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub(super) async fn handler() -> Json<Value> {
    Json(document())
}

/// A string the server checks with `rule` (the check's own pattern and lengths).
fn checked(rule: StringRule) -> Value {
    json!({"type": "string", "pattern": rule.pattern,
           "minLength": rule.min_length, "maxLength": rule.max_length})
}

/// An object that always carries every one of `properties` (`null` where a value is absent),
/// as the server's serde records do.
fn record(properties: Value) -> Value {
    let required: Vec<String> = properties
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    json!({"type": "object", "required": required, "properties": properties})
}

fn role_schema() -> Value {
    json!({"type": "string", "enum": ["viewer", "deployer", "admin"]})
}

fn promotion_state_schema() -> Value {
    json!({"type": "string", "enum": ["running", "active", "rolled-back", "cancelled", "failed"]})
}

fn path_param(name: &str, description: &str, rule: StringRule) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description,
           "schema": checked(rule)})
}

/// A description: one line of at most [`engine::MAX_DESCRIPTION`] characters.
fn description_schema() -> Value {
    json!({"type": "string", "maxLength": engine::MAX_DESCRIPTION, "pattern": "^[^\\u0000-\\u0008\\u000a-\\u001f\\u007f-\\u009f]*$",
           "description": format!("One line of at most {} characters", engine::MAX_DESCRIPTION)})
}

/// A password: [`engine::auth::MIN_PASSWORD_LEN`] to [`engine::auth::MAX_PASSWORD_LEN`]
/// characters.
fn password_schema() -> Value {
    json!({"type": "string", "minLength": engine::auth::MIN_PASSWORD_LEN, "maxLength": engine::auth::MAX_PASSWORD_LEN,
           "description": format!("{} to {} characters", engine::auth::MIN_PASSWORD_LEN, engine::auth::MAX_PASSWORD_LEN)})
}

/// An environment value: text without NUL of at most [`engine::env::MAX_VALUE_BYTES`] bytes
/// of UTF-8. The document counts characters, so it says that many; a value over the limit in
/// bytes is refused with 413, like values that together are over
/// [`engine::env::MAX_ENV_BYTES`].
fn env_value_schema() -> Value {
    json!({"type": "string", "maxLength": engine::env::MAX_VALUE_BYTES, "pattern": "^[^\\u0000]*$",
           "description": format!("Any text without NUL, at most {} bytes of UTF-8 (and all values together at most {} bytes)",
               engine::env::MAX_VALUE_BYTES, engine::env::MAX_ENV_BYTES)})
}

/// A page size: any whole number the server reads (`u32`); the engine cuts it to the sizes it
/// serves, which the parameter's description says.
fn limit_param(description: &str) -> Value {
    json!({"name": "limit", "in": "query", "required": false, "description": description,
           "schema": {"type": "integer", "minimum": 0, "maximum": u32::MAX}})
}

/// `schema`, or `null` (what an optional field of a body may also be: the same as leaving
/// it out).
fn or_null(mut schema: Value) -> Value {
    if let Some(Value::Array(values)) = schema.get_mut("enum") {
        values.push(Value::Null);
    }
    match schema.get("type").cloned() {
        Some(Value::String(ty)) => {
            schema["type"] = json!([ty, "null"]);
            schema
        }
        _ => json!({"anyOf": [schema, {"type": "null"}]}),
    }
}

/// A rollout deadline in seconds, as the engine accepts it.
fn timeout_schema() -> Value {
    json!({"type": "integer", "minimum": 1, "maximum": engine::MAX_DEADLINE.as_secs(),
           "description": "The rollout's deadline in seconds (default 600)"})
}

fn query_param(name: &str, ty: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description,
           "schema": {"type": ty}})
}

fn app() -> Value {
    path_param("app", "The app's name", AppName::RULE)
}

fn error(description: &str) -> Value {
    json!({"description": description,
           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn ok(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn json_body(schema: Value, required: bool) -> Value {
    json!({"required": required, "content": {"application/json": {"schema": schema}}})
}

/// An operation: summary, parameters, optional request body, the success status and answer.
/// Its error statuses are added by [`document`] (see [`errors`]).
fn op(
    summary: &str,
    parameters: Vec<Value>,
    body: Option<Value>,
    status: &str,
    answer: Value,
) -> Value {
    let mut responses = serde_json::Map::new();
    responses.insert(status.into(), answer);
    let mut op = json!({"summary": summary, "parameters": parameters, "responses": responses});
    if let (Some(body), Value::Object(map)) = (body, &mut op) {
        map.insert("requestBody".into(), body);
    }
    op
}

/// Every error status `route` (documented as `op`) can answer, each with why:
///
/// - what the access check in front of every route answers for the route's declared need
///   (401 without a caller, 403 for a role below it), for its method (403: a state change
///   from another origin) and for `reveal=true` (403 below deployer);
/// - what reading its inputs answers: 400 for a path, query or body value it never takes,
///   404 for a path that names something, 413 for a JSON body over [`super::MAX_JSON_BYTES`];
/// - what its use case refuses ([`refusals`]);
/// - 500 for a failure of the server's own (the database), unless it has none.
fn errors(route: &super::ApiRoute, op: &Value) -> BTreeMap<u16, Vec<String>> {
    let mut errors: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    let mut add = |status: u16, why: String| errors.entry(status).or_default().push(why);
    let params = op["parameters"].as_array().cloned().unwrap_or_default();
    let has_params = !params.is_empty();
    let reveals = params.iter().any(|p| p["name"] == "reveal");
    let json_body = op["requestBody"]["content"]["application/json"].is_object();
    if has_params || op.get("requestBody").is_some() {
        add(400, "Bad input; the message names the field".into());
    }
    if let Need::Role(role) = route.need {
        add(
            401,
            "Not signed in, or the token is unknown, revoked or expired: send `Authorization: \
             Bearer <token>`"
                .into(),
        );
        if role > Role::Viewer {
            add(403, format!("The caller's role is below {role}"));
        }
    }
    if route.method == Method::GET && reveals {
        add(403, "`reveal=true` needs the deployer role".into());
    }
    if route.method != Method::GET {
        add(
            403,
            "A cross-origin request: an `Origin` (or `Referer`) other than the Console's, or the \
             session cookie without either"
                .into(),
        );
    }
    if route.path.contains('{') {
        add(404, "Not found; the message says what".into());
    }
    if json_body {
        add(
            413,
            format!("The body is over {} bytes", super::MAX_JSON_BYTES),
        );
    }
    for &(status, why) in refusals(&route.method, route.path) {
        add(status, why.into());
    }
    // This document and the caller (who the access check found) need nothing that can fail.
    let infallible = matches!(route.path, "/openapi.json" | "/whoami");
    if !infallible {
        add(
            500,
            "Internal error; the cause is in the server's log".into(),
        );
    }
    errors
}

/// What a route's use case refuses besides bad input: `(method, path under /api/v1, [(status,
/// why)])`. A test holds every entry to a route of [`super::routes`].
type Refusals = (&'static str, &'static str, &'static [(u16, &'static str)]);
const REFUSALS: &[Refusals] = &[
    ("POST", "/apps", &[(409, "An app by that name exists")]),
    ("POST", "/apps/{app}/builds", &[
        (413, "The archive (compressed or unpacked) or its number of entries is over the server's limit"),
        (422, "Not a .tar.gz, an entry the server refuses (the message names it), an invalid manifest, or a failed build command"),
    ]),
    ("POST", "/apps/{app}/releases", &[(413, ENV_TOO_LARGE)]),
    ("POST", "/apps/{app}/releases/{id}/promote", &[(409, ROLLOUT_REFUSED)]),
    ("POST", "/apps/{app}/releases/{id}/rollback", &[(409, ROLLOUT_REFUSED)]),
    ("POST", "/apps/{app}/cancel", &[(409, "No rollout is in progress for the app, or the server is shutting down")]),
    ("POST", "/apps/{app}/env", &[
        (409, "`base` is no longer the newest release (the message says what changed), the change leaves the environment as it is, or (with `promote`) a rollout is in progress or there is no build to run"),
        (413, ENV_TOO_LARGE),
    ]),
    ("POST", "/login", &[
        (401, "Wrong user name or password, or the user is disabled"),
        (429, "Too many failed sign-in attempts from this user and address (or from this address); `Retry-After` says when to try again"),
    ]),
    ("GET", "/tokens", &[(403, "`all=true` needs the admin role")]),
    ("POST", "/tokens", &[
        (403, "The role asked for is above the caller's (or the token's it was made with)"),
        (409, "The caller's user is disabled"),
    ]),
    ("POST", "/users", &[(409, "A user by that name exists")]),
    ("POST", "/users/{name}", &[(409, "The change would leave no enabled admin")]),
];
const ROLLOUT_REFUSED: &str = "A rollout is already in progress for the app, the release has no \
                               build to run, or the server is shutting down";
const ENV_TOO_LARGE: &str = "An environment value, or all of them together, is over its limit";

/// The refusals of `method path` (path under `/api/v1`) in [`REFUSALS`].
fn refusals(method: &Method, path: &str) -> &'static [(u16, &'static str)] {
    REFUSALS
        .iter()
        .find(|(m, p, _)| *m == method.as_str() && *p == path)
        .map_or(&[], |(_, _, refusals)| refusals)
}

fn timeout_body() -> Value {
    json_body(
        json!({"type": "object", "properties": {"timeout": or_null(timeout_schema())}}),
        false,
    )
}

pub fn document() -> Value {
    let mut doc = paths_and_schemas();
    // Every route needs a signed-in caller unless it says otherwise (signing in).
    doc["security"] = json!([{"token": []}]);
    doc["components"]["securitySchemes"] = json!({"token": {"type": "http", "scheme": "bearer",
        "description": "An API token (from POST /login, POST /tokens or `slipway login`); the Console's session cookie also signs in"}});
    for route in super::routes() {
        let method = route.method.as_str().to_ascii_lowercase();
        let path = format!("{}{}", super::PREFIX, route.path);
        let Some(op) = doc["paths"].get_mut(&path).and_then(|p| p.get_mut(&method)) else {
            // Not documented: the route table test says so.
            continue;
        };
        if route.need == Need::Anyone {
            op["security"] = json!([]);
        }
        let errors = errors(&route, op);
        if let Some(responses) = op["responses"].as_object_mut() {
            for (status, why) in errors {
                responses.insert(status.to_string(), error(&why.join("; ")));
            }
        }
    }
    doc
}

/// The document without its operations' error statuses.
fn paths_and_schemas() -> Value {
    let p = "/api/v1";
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Slipway API",
            "version": "1",
            "description": "Apps, builds, immutable releases, environments and promotions. Errors are {\"error\":{\"code\",\"message\"}}; each operation lists the statuses it answers. `reveal=true` on any GET needs the deployer role."
        },
        "paths": {
            format!("{p}/openapi.json"): {
                "get": op("This document", vec![], None, "200", ok("OpenAPI 3.1", json!({"type": "object"})))
            },
            format!("{p}/apps"): {
                "get": op("List apps", vec![], None, "200",
                    ok("Apps", json!({"type": "object", "properties": {"apps": {"type": "array", "items": schema("AppSummary")}}}))),
                "post": op("Create an app", vec![],
                    Some(json_body(json!({"type": "object", "required": ["name"], "properties": {"name": checked(AppName::RULE)}}), true)),
                    "201", ok("The app", schema("App")))
            },
            format!("{p}/apps/{{app}}"): {
                "get": op("Show an app", vec![app()], None, "200", ok("The app", schema("App")))
            },
            format!("{p}/apps/{{app}}/builds"): {
                "get": op("List builds, newest first", vec![app(), limit_param("At most this many (default 50; 0 is taken as 1, more than 1000 as 1000)")],
                    None, "200", ok("Builds", json!({"type": "object", "properties": {"builds": {"type": "array", "items": schema("Build")}}}))),
                "post": op("Upload a build (a .tar.gz of the source with its slipway.yml); makes a release",
                    vec![app(), json!({"name": "description", "in": "query", "required": false, "description": "The build's description", "schema": description_schema()}), query_param("git_sha", "string", "The commit it was built from")],
                    Some(json!({"required": true, "content": {
                        "application/gzip": {"schema": {"type": "string", "contentMediaType": "application/gzip", "minLength": 1}},
                        "application/octet-stream": {"schema": {"type": "string", "contentMediaType": "application/gzip", "minLength": 1}}}})),
                    "201", ok("The build and its release", json!({"type": "object", "properties": {"build": schema("Build"), "release": schema("Release")}})))
            },
            format!("{p}/apps/{{app}}/builds/{{id}}"): {
                "get": op("Show a build", vec![app(), path_param("id", "Build ID", BuildId::RULE)], None, "200", ok("The build", schema("Build")))
            },
            format!("{p}/apps/{{app}}/releases"): {
                "get": op("List releases, newest first",
                    vec![app(), limit_param("Page size (default 50, max 1000)"),
                         json!({"name": "before", "in": "query", "required": false, "description": "The next_before of the previous page",
                             "schema": {"type": "integer", "minimum": i64::MIN, "maximum": i64::MAX}}),
                         json!({"name": "include", "in": "query", "required": false, "description": "`env`: each release with its environment (values masked)",
                             "schema": {"type": "string", "enum": ["env"]}})],
                    None, "200", ok("A page of releases", json!({"type": "object", "properties": {
                        "releases": {"type": "array", "items": schema("ReleaseListItem")},
                        "next_before": {"type": ["integer", "null"]}}}))),
                "post": op("Create a release from another (the newest by default) with a new build and/or environment",
                    vec![app()],
                    Some(json_body(json!({"type": "object", "properties": {
                        "from": or_null(checked(ReleaseId::RULE)), "build": or_null(checked(BuildId::RULE)),
                        "env": or_null(json!({"type": "object", "propertyNames": checked(EnvKey::RULE), "additionalProperties": env_value_schema(), "description": "Replaces the environment"})),
                        "description": or_null(description_schema())}}), false)),
                    "201", ok("The release", schema("Release")))
            },
            format!("{p}/apps/{{app}}/releases/{{id}}"): {
                "get": op("Show a release (environment values masked unless reveal=true)",
                    vec![app(), path_param("id", "Release ID", ReleaseId::RULE), query_param("reveal", "boolean", "Show environment values")],
                    None, "200", ok("The release", schema("Release")))
            },
            format!("{p}/apps/{{app}}/releases/{{id}}/promote"): {
                "post": op("Start rolling the release out; returns the running promotion",
                    vec![app(), path_param("id", "Release ID", ReleaseId::RULE)], Some(timeout_body()), "202", ok("The promotion", schema("Promotion")))
            },
            format!("{p}/apps/{{app}}/releases/{{id}}/rollback"): {
                "post": op("Make a new release like this one and promote it",
                    vec![app(), path_param("id", "Release ID", ReleaseId::RULE)], Some(timeout_body()), "202",
                    ok("The new release and its promotion", json!({"type": "object", "properties": {"release": schema("Release"), "promotion": schema("Promotion")}})))
            },
            format!("{p}/apps/{{app}}/cancel"): {
                "post": op("Cancel the running rollout; returns the promotion once it ended",
                    vec![app()], None, "200", ok("The promotion", schema("Promotion")))
            },
            format!("{p}/apps/{{app}}/env"): {
                "get": op("A release's environment (the newest by default), masked unless reveal=true",
                    vec![app(), json!({"name": "release", "in": "query", "required": false, "description": "Release ID", "schema": checked(ReleaseId::RULE)}), query_param("reveal", "boolean", "Show values")],
                    None, "200", ok("The environment", json!({"type": "object", "properties": {
                        "release": {"type": ["string", "null"]},
                        "env": {"type": "object", "additionalProperties": {"type": "string"}}}}))),
                "post": op("Change the environment: makes a release (and promotes it when asked)",
                    vec![app()],
                    Some(json_body(json!({"type": "object", "properties": {
                        "set": {"type": "object", "propertyNames": checked(EnvKey::RULE), "additionalProperties": env_value_schema()},
                        "unset": {"type": "array", "items": checked(EnvKey::RULE)},
                        "replace": {"type": "boolean"},
                        "base": or_null(json!({"allOf": [checked(ReleaseId::RULE)], "description": "Refused with 409 unless this is still the newest release"})),
                        "description": or_null(description_schema()),
                        "promote": {"type": "boolean"},
                        "timeout": or_null(timeout_schema())}}), false)),
                    "201", ok("The release and its promotion", json!({"type": "object", "properties": {
                        "release": schema("Release"), "promotion": {"oneOf": [schema("Promotion"), {"type": "null"}]}}})))
            },
            format!("{p}/apps/{{app}}/promotions"): {
                "get": op("List promotions, newest first",
                    vec![app(), json!({"name": "release", "in": "query", "required": false, "description": "Only this release's", "schema": checked(ReleaseId::RULE)}), limit_param("At most this many (default 50; 0 is taken as 1, more than 1000 as 1000)")],
                    None, "200", ok("Promotions", json!({"type": "object", "properties": {"promotions": {"type": "array", "items": schema("Promotion")}}})))
            },
            format!("{p}/apps/{{app}}/processes"): {
                "get": op("The running processes of the active release, with the last lines of their output (for viewers, the app's own env values of at least 4 characters are masked as ••••)",
                    vec![app(), json!({"name": "lines", "in": "query", "required": false, "description": "Lines of output per process (default 100; 0 is taken as 1, more than 500 as 500)",
                        "schema": {"type": "integer", "minimum": 0, "maximum": usize::MAX}})],
                    None, "200", ok("Processes", json!({"type": "object", "properties": {"processes": {"type": "array", "items": {
                        "type": "object", "properties": {"name": {"type": "string"}, "output": {"type": "string"}}}}}})))
            },
            format!("{p}/apps/{{app}}/events"): {
                "get": op("Live events of the app (server-sent events; event = type, data = JSON)",
                    vec![app()], None, "200",
                    json!({"description": "An event stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}}))
            },
            format!("{p}/login"): {
                "post": op("Sign in with a user name and password (rate-limited); answers a new API token with the user's role",
                    vec![], Some(json_body(json!({"type": "object", "required": ["user", "password"], "properties": {
                        "user": {"type": "string"}, "password": {"type": "string"}, "token_name": or_null(checked(engine::auth::TOKEN_NAME))}}), true)),
                    "201", ok("The token (shown once)", record(json!({
                        "token": {"type": "string"}, "id": checked(TokenId::RULE), "user": checked(Username::RULE), "role": role_schema()}))))
            },
            format!("{p}/logout"): {
                "post": op("Revoke the API token this request was made with", vec![], None, "200", ok("Signed out", json!({"type": "object"})))
            },
            format!("{p}/whoami"): {
                "get": op("The caller: user, role and how they signed in", vec![], None, "200",
                    ok("The caller", json!({"type": "object", "required": ["user", "role", "via"], "properties": {
                        "user": checked(Username::RULE), "role": role_schema(),
                        "via": {"oneOf": [{"type": "string", "const": "session"},
                                          {"type": "object", "required": ["token"], "properties": {"token": checked(TokenId::RULE)}}],
                                "description": "How the caller signed in: the Console's session, or an API token"}}})))
            },
            format!("{p}/tokens"): {
                "get": op("The caller's API tokens (everyone's with all=true, admins only)",
                    vec![query_param("all", "boolean", "Everyone's tokens")], None, "200",
                    ok("Tokens", json!({"type": "object", "properties": {"tokens": {"type": "array", "items": schema("ApiToken")}}}))),
                "post": op("Create an API token for the caller, with at most the caller's role; it expires after expires_in_days (never when left out)",
                    vec![], Some(json_body(json!({"type": "object", "required": ["name"], "properties": {
                        "name": checked(engine::auth::TOKEN_NAME), "role": or_null(json!({"type": "string", "enum": ["viewer", "deployer", "admin"]})),
                        "expires_in_days": {"type": ["integer", "null"], "minimum": 1, "maximum": 366,
                            "description": "Days until the token is refused (1 to 366); left out or null: never. Anything else is a 400"}}}), true)),
                    "201", ok("The token (shown once) and its record", json!({"type": "object", "properties": {
                        "token": {"type": "string"}, "info": schema("ApiToken")}})))
            },
            format!("{p}/tokens/{{id}}/revoke"): {
                "post": op("Revoke an API token (its owner or an admin)", vec![path_param("id", "Token ID", TokenId::RULE)], None, "200",
                    ok("Revoked", json!({"type": "object"})))
            },
            format!("{p}/users"): {
                "get": op("List users (admins)", vec![], None, "200",
                    ok("Users", json!({"type": "object", "properties": {"users": {"type": "array", "items": schema("User")}}}))),
                "post": op("Create a user (admins)", vec![], Some(json_body(json!({"type": "object", "required": ["name", "password", "role"], "properties": {
                        "name": checked(Username::RULE), "password": password_schema(), "role": {"type": "string", "enum": ["viewer", "deployer", "admin"]}}}), true)),
                    "201", ok("The user", schema("User")))
            },
            format!("{p}/users/{{name}}"): {
                "post": op("Change a user's role, password, or disable/enable them (admins)", vec![path_param("name", "User name", Username::RULE)],
                    Some(json_body(json!({"type": "object", "properties": {
                        "role": or_null(json!({"type": "string", "enum": ["viewer", "deployer", "admin"]})), "disabled": or_null(json!({"type": "boolean"})), "password": or_null(password_schema())}}), false)),
                    "200", ok("The user", schema("User")))
            },
            format!("{p}/audit"): {
                "get": op("The audit log, newest first",
                    vec![json!({"name": "app", "in": "query", "required": false, "description": "Only this app", "schema": checked(AppName::RULE)}),
                         query_param("actor", "string", "Only this user"),
                         query_param("action", "string", "Actions starting with this"), json!({"name": "before_seq", "in": "query", "required": false, "description": "Older than this entry (the next_before of the previous page)",
                            "schema": {"type": "integer", "minimum": i64::MIN, "maximum": i64::MAX}}),
                         limit_param(&format!("At most this many (default {} and for 0; more than {} is cut to {})",
                            engine::AuditFilter::DEFAULT_LIMIT, engine::AuditFilter::MAX_LIMIT, engine::AuditFilter::MAX_LIMIT))],
                    None, "200", ok("Entries", json!({"type": "object", "properties": {
                        "entries": {"type": "array", "items": schema("AuditRecord")}, "next_before": {"type": ["integer", "null"]}}})))
            },
            format!("{p}/promotions/{{id}}"): {
                "get": op("Show a promotion with its event log", vec![path_param("id", "Promotion ID", PromotionId::RULE)], None, "200",
                    ok("The promotion", json!({"type": "object", "properties": {"promotion": schema("Promotion"), "events": {"type": "array", "items": schema("PromotionEvent")}}})))
            }
        },
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
                "code": {"type": "string", "enum": ["invalid", "unauthenticated", "forbidden", "rate_limited", "not_found", "method_not_allowed", "conflict", "too_large", "unprocessable", "internal"]},
                "message": {"type": "string"}}}}},
            "App": record(json!({
                "name": checked(AppName::RULE), "created_at": {"type": "integer"}, "created_by": {"type": "string"},
                "active_release": or_null(checked(ReleaseId::RULE))})),
            "AppSummary": record(json!({
                "app": schema("App"), "release_count": {"type": "integer", "minimum": 0}, "newest_release": or_null(checked(ReleaseId::RULE)),
                "last_change": {"type": ["string", "null"]}, "last_change_at": {"type": ["integer", "null"]},
                "running_promotion": or_null(checked(PromotionId::RULE)), "last_promotion_state": or_null(promotion_state_schema())})),
            "Build": record(json!({
                "id": checked(BuildId::RULE), "app": checked(AppName::RULE), "status": {"type": "string"},
                "description": {"type": "string"}, "artifact": {"type": "string", "pattern": "^[0-9a-f]{64}$", "description": "sha256 of the source archive"},
                "manifest": {"type": "string"},
                "git_sha": {"type": ["string", "null"]}, "created_at": {"type": "integer"}, "created_by": {"type": "string"},
                "release": or_null(checked(ReleaseId::RULE))})),
            "Release": record(json!({
                "id": checked(ReleaseId::RULE), "app": checked(AppName::RULE), "build": or_null(checked(BuildId::RULE)),
                "env": {"type": "object", "propertyNames": checked(EnvKey::RULE), "additionalProperties": {"type": "string"}},
                "description": {"type": "string"}, "rollback_of": or_null(checked(ReleaseId::RULE)),
                "created_at": {"type": "integer"}, "created_by": {"type": "string"}})),
            "EnvChanges": {"type": "object", "description": "Keys only, never values",
                "required": ["added", "changed", "removed"], "properties": {
                "added": {"type": "array", "items": checked(EnvKey::RULE)},
                "changed": {"type": "array", "items": checked(EnvKey::RULE)},
                "removed": {"type": "array", "items": checked(EnvKey::RULE)}}},
            "ReleaseListItem": {"type": "object", "description": "A release in a list: no environment unless `include=env`",
                "required": ["id", "app", "build", "description", "rollback_of", "created_at", "created_by", "env_changes",
                             "seq", "status", "active", "same_env_as_active", "promoted_by", "last_promotion"],
                "properties": {
                "id": checked(ReleaseId::RULE), "app": checked(AppName::RULE), "build": or_null(checked(BuildId::RULE)),
                "description": {"type": "string"}, "rollback_of": or_null(checked(ReleaseId::RULE)),
                "created_at": {"type": "integer"}, "created_by": {"type": "string"},
                "env_changes": {"allOf": [schema("EnvChanges")], "description": "What it changed against the app's previous release (the first: against nothing)"},
                "seq": {"type": "integer"}, "status": {"type": "string"}, "active": {"type": "boolean"},
                "same_env_as_active": {"type": "boolean", "description": "Its environment is the active release's"},
                "promoted_by": {"type": ["string", "null"]},
                "last_promotion": {"oneOf": [schema("Promotion"), {"type": "null"}], "description": "Its newest promotion; failed_output is null here (see the promotion itself)"},
                "env": {"type": "object", "propertyNames": checked(EnvKey::RULE), "additionalProperties": {"type": "string", "const": "****"}, "description": "With include=env only: the keys, values masked"}}},
            "Promotion": record(json!({
                "id": checked(PromotionId::RULE), "app": checked(AppName::RULE), "release": checked(ReleaseId::RULE),
                "previous_release": or_null(checked(ReleaseId::RULE)), "actor": {"type": "string"},
                "state": promotion_state_schema(),
                "reason": {"type": ["string", "null"]},
                "failed_output": {"type": ["string", "null"], "description": "The failed process's last output; for viewers, the app's own env values (of at least 4 characters) are masked as ••••"},
                "deadline_ms": {"type": "integer", "minimum": 0}, "started_at": {"type": "integer"},
                "finished_at": {"type": ["integer", "null"]}})),
            "ApiToken": record(json!({
                "id": checked(TokenId::RULE), "owner": checked(Username::RULE), "name": {"type": "string"}, "role": role_schema(),
                "prefix": {"type": "string"}, "created_at": {"type": "integer"},
                "last_used_at": {"type": ["integer", "null"]}, "revoked_at": {"type": ["integer", "null"]},
                "expires_at": {"type": ["integer", "null"], "description": "From when on the token is refused (ms since the epoch); null: never"}})),
            "User": record(json!({
                "name": checked(Username::RULE), "role": role_schema(), "created_at": {"type": "integer"},
                "disabled_at": {"type": ["integer", "null"]}})),
            "AuditRecord": {"type": "object", "required": ["seq", "at", "actor", "app", "action", "target", "result"], "properties": {
                "seq": {"type": "integer"}, "at": {"type": "integer"}, "actor": {"type": "string"}, "app": or_null(checked(AppName::RULE)),
                "action": {"type": "string"}, "target": {"type": ["string", "null"]},
                "result": {"type": "object", "required": ["status"], "properties": {
                    "status": {"type": "string", "enum": ["ok", "denied", "failed"]},
                    "detail": {"type": "string", "description": "Why it failed (status failed only)"}}}}},
            "PromotionEvent": {"type": "object", "required": ["promotion", "seq", "at", "message", "step"], "properties": {
                "promotion": checked(PromotionId::RULE), "seq": {"type": "integer"}, "at": {"type": "integer"},
                "message": {"type": "string", "description": "The step in words"},
                "step": {"type": "object", "description": "The step as data: `step` names its kind (promoting, started, healthy, switched, cancel-too-late, drain-timed-out, stopped-old, complete, undoing, stopped-new, ended, interrupted, interrupted-after-switch, replaced-restore, note); the other fields depend on it",
                    "properties": {"step": {"type": "string"}}, "required": ["step"]}}}
        }}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("pattern", Value::String(p)) => out.push(p),
                        _ => patterns(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| patterns(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_refusal_is_of_a_route() {
        let routes = super::super::route_table();
        for (method, path, _) in REFUSALS {
            let full = format!("{}{path}", super::super::PREFIX);
            assert!(
                routes.iter().any(|(m, p)| m == method && *p == full),
                "{method} {path} is not a route"
            );
        }
    }

    #[test]
    fn every_pattern_is_a_regular_expression_that_means_what_it_says() {
        let doc = document();
        let mut found = Vec::new();
        patterns(&doc, &mut found);
        assert!(found.len() > 20, "{found:?}");
        for p in &found {
            assert!(regex::Regex::new(p).is_ok(), "{p}");
        }
        // The escapes arrive as escapes: a token name may not hold a control character.
        let token = regex::Regex::new(engine::auth::TOKEN_NAME.pattern).unwrap();
        assert!(token.is_match("ci bot") && !token.is_match("ci\u{7}bot"));
        let description = doc["paths"]["/api/v1/apps/{app}/env"]["post"]["requestBody"]["content"]
            ["application/json"]["schema"]["properties"]["description"]["pattern"]
            .as_str()
            .map(|p| regex::Regex::new(p).unwrap());
        let description = description.expect("a pattern for descriptions");
        assert!(description.is_match("env add:FOO\twith a tab"));
        assert!(!description.is_match("two\nlines"));
    }
}

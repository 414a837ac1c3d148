use serde_json::Value;

use crate::helpers::spawn_app;

const METHODS: &[&str] = &["get", "post", "put", "patch", "delete"];

#[tokio::test]
async fn every_served_route_is_documented() {
    let app = spawn_app().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for expected in [
        "/api/v1/health",
        "/api/v1/health/live",
        "/api/v1/health/ready",
        "/metrics",
        "/metrics/catalog",
        "/openapi.json",
        "/docs",
    ] {
        assert!(paths.contains_key(expected), "{expected} is not documented");
    }
    // The converse: every documented operation is really served (not the
    // fallback's 404/405), and answers only with documented statuses.
    for (path, item) in paths {
        for method in METHODS.iter().filter(|m| item.get(**m).is_some()) {
            if path.contains('{') {
                continue;
            }
            let response = app
                .client
                .request(method.to_uppercase().parse().unwrap(), app.url(path))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16().to_string();
            assert!(
                item[*method]["responses"].get(&status).is_some(),
                "{method} {path} answered {status}, which is not documented"
            );
        }
    }
}

#[tokio::test]
async fn every_operation_documents_its_errors_and_request_id() {
    let app = spawn_app().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS.iter().filter(|m| item.get(**m).is_some()) {
            let responses = &item[*method]["responses"];
            assert!(responses.get("500").is_some(), "{method} {path} lacks 500");
            for (status, response) in responses.as_object().unwrap() {
                assert!(
                    response["headers"].get("X-Request-ID").is_some(),
                    "{method} {path} {status} lacks X-Request-ID"
                );
            }
        }
    }
    for schema in ["ErrorBody", "ValidationErrorBody", "ValidationIssue"] {
        assert!(
            doc["components"]["schemas"].get(schema).is_some(),
            "{schema}"
        );
    }
}

#[tokio::test]
async fn the_docs_render_offline() {
    let app = spawn_app().await;
    let redirect = app.get("/docs").await;
    assert_eq!(redirect.status(), 308);
    assert_eq!(redirect.headers()["location"], "/docs/");

    let page = app.get("/docs/").await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("swagger-ui"));
    // The assets are served by the binary itself, pointing at our document.
    let init = app
        .get("/docs/swagger-initializer.js")
        .await
        .text()
        .await
        .unwrap();
    assert!(init.contains("/openapi.json"), "{init}");
    let bundle = app.get("/docs/swagger-ui-bundle.js").await;
    assert_eq!(bundle.status(), 200);
}

#[tokio::test]
async fn both_credential_schemes_are_documented_and_authorize_uses_the_token_route() {
    let app = spawn_app().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["api_key"]["type"], "apiKey");
    assert_eq!(schemes["api_key"]["in"], "header");
    assert_eq!(schemes["api_key"]["name"], "X-API-Key");
    // Swagger UI's Authorize button signs in through the OAuth2 password flow.
    assert_eq!(
        schemes["oauth2_password"]["flows"]["password"]["tokenUrl"],
        "/api/v1/auth/token"
    );
    let me = &doc["paths"]["/api/v1/users/me"]["get"];
    assert_eq!(me["security"].as_array().unwrap().len(), 3);
    assert!(me["responses"].get("401").is_some());
    assert!(
        me["responses"]["401"]["headers"]
            .get("WWW-Authenticate")
            .is_some()
    );
    // Public routes declare no security.
    assert!(
        doc["paths"]["/api/v1/auth/login"]["post"]
            .get("security")
            .is_none()
    );

    // What Swagger UI posts when Authorize is used (client credentials as Basic auth).
    app.register("swagger@example.com").await;
    let response = app
        .client
        .post(app.url("/api/v1/auth/token"))
        .header("authorization", "Basic Og==")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=password&username=swagger%40example.com&password={}&scope=",
            crate::helpers::PASSWORD
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// Every `enum` in the document, with where it is.
fn enums<'a>(at: String, value: &'a Value, found: &mut Vec<(String, &'a Vec<Value>)>) {
    match value {
        Value::Object(object) => {
            for (key, inner) in object {
                match (key.as_str(), inner) {
                    ("enum", Value::Array(values)) => found.push((at.clone(), values)),
                    _ => enums(format!("{at}/{key}"), inner, found),
                }
            }
        }
        Value::Array(items) => {
            for (n, item) in items.iter().enumerate() {
                enums(format!("{at}/{n}"), item, found);
            }
        }
        _ => {}
    }
}

/// Client generators name each enum value as an identifier: openapi-python-
/// client upper-cases a value that starts with a letter and turns what an
/// identifier cannot hold into `_` (others are named by position). Values
/// that differ only there (`GMT+0`, `GMT-0`) become one name, and it aborts.
#[tokio::test]
async fn no_enum_has_values_that_collapse_to_one_identifier() {
    let app = spawn_app().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let mut found = Vec::new();
    enums(String::new(), &doc, &mut found);
    assert!(!found.is_empty());
    for (at, values) in found {
        let mut seen = std::collections::HashMap::new();
        let named = values
            .iter()
            .filter_map(Value::as_str)
            .filter(|value| value.starts_with(|c: char| c.is_ascii_alphabetic()));
        for value in named {
            let identifier = value
                .split(|c: char| !c.is_ascii_alphanumeric())
                .filter(|part| !part.is_empty())
                .map(str::to_ascii_uppercase)
                .collect::<Vec<_>>()
                .join("_");
            if let Some(other) = seen.insert(identifier, value) {
                panic!("{at}: `{other}` and `{value}` collapse to one identifier");
            }
        }
    }
}

#[tokio::test]
async fn the_time_zone_is_documented_as_a_string_and_checked_by_the_server() {
    let app = spawn_app().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let timezone = &doc["components"]["schemas"]["SettingsPatch"]["properties"]["timezone"];
    assert!(timezone.get("enum").is_none(), "{timezone}");
    assert_eq!(timezone["type"], serde_json::json!(["string", "null"]));
    assert!(timezone["pattern"].is_string() && timezone["maxLength"].is_u64());
    assert!(timezone["description"].as_str().unwrap().contains("IANA"));
    let pattern = timezone["pattern"].as_str().unwrap();
    let owner = app.register("zones@example.com").await;
    // Names the pattern admits but no zone has are still refused, by the server.
    for (zone, status) in [
        ("Europe/Moscow", 200),
        ("Etc/GMT+5", 200),
        ("Mars/Base", 422),
    ] {
        assert!(
            python_regex_matches(pattern, zone),
            "{zone} does not match {pattern}"
        );
        let response = app
            .send(
                reqwest::Method::PATCH,
                "/api/v1/tenants/me",
                Some(&owner.bearer()),
                Some(&serde_json::json!({"settings": {"timezone": zone}})),
            )
            .await;
        assert_eq!(response.status(), status, "{zone}");
    }
}

/// Whether `pattern` matches `text` as an ECMA/Python-style regex engine
/// (what client generators and validators use) reads it.
fn python_regex_matches(pattern: &str, text: &str) -> bool {
    std::process::Command::new("python3")
        .args([
            "-c",
            "import re, sys; sys.exit(0 if re.search(sys.argv[1], sys.argv[2]) else 1)",
            pattern,
            text,
        ])
        .status()
        .unwrap()
        .success()
}

/// Client generators name their methods after operationIds: each must be
/// unique and read `{resource}_{action}` (lowercase, underscores).
#[test]
fn operation_ids_are_unique_and_name_resource_and_action() {
    let doc = serde_json::to_value(stock_tracker::app::openapi::document()).unwrap();
    let mut seen = std::collections::BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Some(id) = operation.get("operationId").and_then(Value::as_str) else {
                panic!("{method} {path} has no operationId");
            };
            let shaped = id.contains('_')
                && id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            assert!(
                shaped,
                "{method} {path}: operationId `{id}` is not resource_action"
            );
            if let Some(other) = seen.insert(id.to_owned(), format!("{method} {path}")) {
                panic!("operationId `{id}` names both {other} and {method} {path}");
            }
        }
    }
}

/// `openapi.json` in the repository is the document the binary serves, so
/// every change to the contract shows in a diff (`.ci/run` also compares
/// the binary's `stock-tracker openapi` with it).
#[test]
fn the_committed_document_is_the_served_one() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
    let expected =
        serde_json::to_string_pretty(&stock_tracker::app::openapi::document()).unwrap() + "\n";
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    if committed != expected {
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(path, expected).unwrap();
        } else {
            panic!(
                "openapi.json differs from the served document; regenerate it with \
                 `UPDATE_DOCS=1 cargo test --test api the_committed_document`"
            );
        }
    }
}

/// Every signed-in POST that creates something (answers 201 or 202) takes
/// `Idempotency-Key`, and documents the replay header and the key's 409;
/// no other operation declares it.
#[test]
fn every_creating_post_takes_an_idempotency_key() {
    let doc = serde_json::to_value(stock_tracker::app::openapi::document()).unwrap();
    let mut declaring = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let declares = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header");
            let responses = &operation["responses"];
            let creates = method == "post"
                && operation.get("security").is_some()
                && (responses.get("201").is_some() || responses.get("202").is_some());
            assert_eq!(declares, creates, "{method} {path}");
            if declares {
                declaring += 1;
                let success = responses.get("201").or(responses.get("202")).unwrap();
                assert!(
                    success["headers"].get("Idempotent-Replayed").is_some(),
                    "{path}"
                );
                let conflict = responses["409"]["description"].as_str().unwrap();
                assert!(conflict.contains("idempotency_key_in_use"), "{path}");
                let unprocessable = responses["422"]["description"].as_str().unwrap();
                assert!(unprocessable.contains("idempotency_key_reused"), "{path}");
            }
        }
    }
    assert_eq!(declaring, 13);
}

/// Client generators make one type per schema: a page refers to its item's
/// component rather than repeating it, and request bodies that are one of
/// several shapes name each shape.
#[test]
fn pages_and_variants_refer_to_named_components() {
    let doc = serde_json::to_value(stock_tracker::app::openapi::document()).unwrap();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let pages: Vec<_> = schemas.keys().filter(|k| k.starts_with("Page_")).collect();
    assert!(pages.len() >= 10, "{pages:?}");
    for page in pages {
        let item = page.strip_prefix("Page_").unwrap();
        assert_eq!(
            schemas[page]["properties"]["items"]["items"]["$ref"],
            format!("#/components/schemas/{item}"),
            "{page}"
        );
    }
    // An anonymous variant may hold plain fields, but no object of its own:
    // generators name such nested objects after the variant's position and
    // two variants' collide (what CreateConnection's credentials did).
    for (name, schema) in schemas {
        for variant in schema["oneOf"].as_array().into_iter().flatten() {
            for (field, property) in variant["properties"].as_object().into_iter().flatten() {
                assert!(
                    property.get("type") != Some(&"object".into()),
                    "{name}: a variant's `{field}` is an inline object"
                );
            }
        }
    }
    let create_connection = &schemas["CreateConnection"]["oneOf"];
    assert_eq!(
        create_connection,
        &serde_json::json!([
            {"$ref": "#/components/schemas/CreateDemoConnection"},
            {"$ref": "#/components/schemas/CreateWildberriesConnection"}
        ])
    );
}

//! Validation errors in Pydantic v2's vocabulary, so a client written for a
//! FastAPI backend reads a 422 here as it would there: each item has `type`
//! (`missing`, `string_too_short`, `greater_than_equal`, `enum`, ...), `loc`,
//! `msg` worded as Pydantic words it, `input` (the value that failed; left
//! out for secrets) and `ctx` where Pydantic gives one (`min_length`, `ge`,
//! `pattern`, `expected`, `error`). docs/api.md maps each check to its type.
//!
//! Two sources: garde's rules, whose messages are produced here in a form
//! that carries the rule's kind and bounds ([`validate`] validates through
//! garde's i18n hook, so nothing parses English text), and serde's data
//! errors, classified by serde's stable message shapes (`missing field`,
//! `invalid type: ..., expected ...`, `unknown variant`).

use std::borrow::Cow;
use std::fmt::Display;

use garde::i18n::{I18n, InvalidCreditCard, InvalidEmail, InvalidPhoneNumber, InvalidUrl, IpKind};
use serde_json::{Map, Value, json};

use super::error::{LocPart, ValidationIssue};

/// Fields whose value never goes back in `input`: the client sent a secret,
/// and an error body may end up in a log or a support ticket.
const SECRET_FIELDS: &[&str] = &[
    "password",
    "current_password",
    "new_password",
    "token",
    "refresh_token",
    "secret",
    "credentials",
    "bot_token",
    "api_key",
    "client_secret",
];

/// Whether `loc` names a secret (or something inside one).
pub fn is_secret(loc: &[LocPart]) -> bool {
    loc.iter()
        .any(|part| matches!(part, LocPart::Key(key) if SECRET_FIELDS.contains(&key.as_str())))
}

/// The value at `loc` in `root`, `loc`'s first element (`body`, `query`,
/// `path`) being `root` itself.
pub fn value_at<'a>(root: &'a Value, loc: &[LocPart]) -> Option<&'a Value> {
    loc.iter().skip(1).try_fold(root, |value, part| match part {
        LocPart::Key(key) => value.get(key),
        LocPart::Index(index) => value.get(index),
    })
}

/// Runs a type's garde rules with messages [`garde_issue`] can decode.
pub fn validate<T>(value: &T) -> Result<(), garde::Report>
where
    T: garde::Validate,
    T::Context: Default,
{
    garde::i18n::with_i18n(Encoded, || value.validate())
}

/// Marks a message produced by [`Encoded`]; a custom rule's message lacks it.
const MARK: char = '\u{1}';

/// garde's messages as `MARK` + `{"type", "msg", "ctx"}`.
struct Encoded;

fn encode(kind: &str, msg: String, ctx: Value) -> Cow<'static, str> {
    format!("{MARK}{}", json!({"type": kind, "msg": msg, "ctx": ctx})).into()
}

/// A bound as Pydantic reports it: a number when it is one.
fn number(bound: &dyn Display) -> Value {
    let text = bound.to_string();
    text.parse::<i64>()
        .map(Value::from)
        .or_else(|_| text.parse::<f64>().map(Value::from))
        .unwrap_or(Value::String(text))
}

impl I18n for Encoded {
    fn length_lower_than(&self, min: usize) -> Cow<'static, str> {
        encode("too_short", String::new(), json!({"min_length": min}))
    }
    fn length_greater_than(&self, max: usize) -> Cow<'static, str> {
        encode("too_long", String::new(), json!({"max_length": max}))
    }
    fn range_lower_than(&self, min: &dyn Display) -> Cow<'static, str> {
        encode(
            "greater_than_equal",
            format!("Input should be greater than or equal to {min}"),
            json!({"ge": number(min)}),
        )
    }
    fn range_greater_than(&self, max: &dyn Display) -> Cow<'static, str> {
        encode(
            "less_than_equal",
            format!("Input should be less than or equal to {max}"),
            json!({"le": number(max)}),
        )
    }
    fn credit_card_invalid(&self, reason: InvalidCreditCard) -> Cow<'static, str> {
        value_error(&format!("not a valid credit card number: {reason}"))
    }
    fn pattern_no_match(&self, pattern: &dyn Display) -> Cow<'static, str> {
        encode(
            "string_pattern_mismatch",
            format!("String should match pattern '{pattern}'"),
            json!({"pattern": pattern.to_string()}),
        )
    }
    fn contains_missing(&self, pattern: &dyn Display) -> Cow<'static, str> {
        value_error(&format!("does not contain \"{pattern}\""))
    }
    fn url_invalid(&self, reason: InvalidUrl) -> Cow<'static, str> {
        encode(
            "url_parsing",
            format!("Input should be a valid URL, {reason}"),
            json!({"error": reason.to_string()}),
        )
    }
    fn prefix_missing(&self, pattern: &dyn Display) -> Cow<'static, str> {
        value_error(&format!("does not begin with \"{pattern}\""))
    }
    fn suffix_missing(&self, pattern: &dyn Display) -> Cow<'static, str> {
        value_error(&format!("does not end with \"{pattern}\""))
    }
    fn phone_number_invalid(&self, reason: InvalidPhoneNumber) -> Cow<'static, str> {
        value_error(&format!("not a valid phone number: {reason}"))
    }
    fn ip_invalid(&self, kind: IpKind) -> Cow<'static, str> {
        encode(
            "ip_any_address",
            format!("value is not a valid {kind} address"),
            Value::Null,
        )
    }
    fn matches_field_mismatch(&self, field: &dyn Display) -> Cow<'static, str> {
        value_error(&format!("does not match {field} field"))
    }
    fn email_invalid(&self, reason: InvalidEmail) -> Cow<'static, str> {
        // What Pydantic's EmailStr raises.
        encode(
            "value_error",
            format!("value is not a valid email address: {reason}"),
            json!({"reason": reason.to_string()}),
        )
    }
    fn ascii_invalid(&self) -> Cow<'static, str> {
        encode(
            "string_pattern_mismatch",
            "String should match pattern '^[\\x00-\\x7F]*$'".into(),
            json!({"pattern": "^[\\x00-\\x7F]*$"}),
        )
    }
    fn alphanumeric_invalid(&self) -> Cow<'static, str> {
        encode(
            "string_pattern_mismatch",
            "String should match pattern '^[a-zA-Z0-9]*$'".into(),
            json!({"pattern": "^[a-zA-Z0-9]*$"}),
        )
    }
    fn required_not_set(&self) -> Cow<'static, str> {
        encode("missing", "Field required".into(), Value::Null)
    }
}

fn value_error(error: &str) -> Cow<'static, str> {
    encode(
        "value_error",
        format!("Value error, {error}"),
        json!({"error": error}),
    )
}

/// One failed garde rule at `loc`; `root` is the input `loc` points into.
pub fn garde_issue(loc: Vec<LocPart>, message: &str, root: Option<&Value>) -> ValidationIssue {
    let input = root.and_then(|root| value_at(root, &loc));
    let decoded = message
        .strip_prefix(MARK)
        .and_then(|encoded| serde_json::from_str::<Value>(encoded).ok());
    let issue = match decoded {
        Some(decoded) => {
            let kind = decoded["type"].as_str().unwrap_or("value_error");
            let ctx = decoded["ctx"].as_object().cloned();
            match kind {
                // garde's length rule serves strings and lists alike.
                "too_short" | "too_long" => length_issue(loc, kind, ctx.unwrap_or_default(), input),
                _ => ValidationIssue::new(loc, decoded["msg"].as_str().unwrap_or_default(), kind)
                    .with_ctx(ctx),
            }
        }
        // A custom rule's own message: Pydantic's `value_error`.
        None => ValidationIssue::new(loc, format!("Value error, {message}"), "value_error")
            .with_ctx(Some(context("error", message))),
    };
    issue.with_input(input)
}

fn length_issue(
    loc: Vec<LocPart>,
    kind: &str,
    mut ctx: Map<String, Value>,
    input: Option<&Value>,
) -> ValidationIssue {
    let short = kind == "too_short";
    let bound = ctx
        .get(if short { "min_length" } else { "max_length" })
        .and_then(Value::as_u64)
        .unwrap_or_default();
    let items = |n: u64| if n == 1 { "item" } else { "items" };
    let characters = |n: u64| if n == 1 { "character" } else { "characters" };
    match input {
        Some(Value::Array(list)) => {
            let actual = list.len();
            ctx.insert("field_type".into(), "List".into());
            ctx.insert("actual_length".into(), actual.into());
            let msg = if short {
                format!(
                    "List should have at least {bound} {} after validation, not {actual}",
                    items(bound)
                )
            } else {
                format!(
                    "List should have at most {bound} {} after validation, not {actual}",
                    items(bound)
                )
            };
            ValidationIssue::new(loc, msg, kind)
        }
        _ => {
            let (kind, msg) = if short {
                (
                    "string_too_short",
                    format!("String should have at least {bound} {}", characters(bound)),
                )
            } else {
                (
                    "string_too_long",
                    format!("String should have at most {bound} {}", characters(bound)),
                )
            };
            ValidationIssue::new(loc, msg, kind)
        }
    }
    .with_ctx(Some(ctx))
}

fn context(key: &str, value: impl Into<Value>) -> Map<String, Value> {
    let mut ctx = Map::new();
    ctx.insert(key.into(), value.into());
    ctx
}

/// A serde data error at `loc` (JSON, query string or path alike), in
/// Pydantic's terms; `input` is the value that failed, when known.
pub fn serde_issue(mut loc: Vec<LocPart>, message: &str, root: Option<&Value>) -> ValidationIssue {
    let backticked = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned)
    };
    if let Some(field) = backticked("missing field `") {
        // Pydantic's input for a missing field is the object that lacks it.
        let input = root.and_then(|root| value_at(root, &loc));
        loc.push(LocPart::Key(field));
        return ValidationIssue::new(loc, "Field required", "missing").with_input(input);
    }
    if let Some(field) = backticked("unknown field `") {
        if loc.last() != Some(&LocPart::Key(field.clone())) {
            loc.push(LocPart::Key(field));
        }
        let input = root.and_then(|root| value_at(root, &loc));
        return ValidationIssue::new(loc, "Extra inputs are not permitted", "extra_forbidden")
            .with_input(input);
    }
    let input = root.and_then(|root| value_at(root, &loc));
    let (kind, msg, ctx) = classify(message);
    ValidationIssue::new(loc, msg, kind)
        .with_ctx(ctx)
        .with_input(input)
}

/// serde's message → Pydantic's `(type, msg, ctx)`.
fn classify(message: &str) -> (&'static str, String, Option<Map<String, Value>>) {
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let expected = rest
            .split_once("expected ")
            .map(|(_, list)| list.trim_start_matches("one of "))
            .unwrap_or_default();
        let values: Vec<&str> = expected
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(|(_, v)| v)
            .collect();
        let expected = match values.split_last() {
            Some((last, [])) => format!("'{last}'"),
            Some((last, rest)) => format!(
                "{} or '{last}'",
                rest.iter()
                    .map(|v| format!("'{v}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => String::new(),
        };
        return (
            "enum",
            format!("Input should be {expected}"),
            Some(context("expected", expected)),
        );
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        let (got, expected) = rest.split_once(", expected ").unwrap_or((rest, ""));
        let expected = expected.to_ascii_lowercase();
        let is = |words: &[&str]| words.iter().any(|w| expected.contains(w));
        if expected == "an object" || expected.starts_with("struct ") {
            // A body or nested object that is not an object.
            return (
                "model_type",
                "Input should be a valid dictionary or object to extract fields from".to_owned(),
                None,
            );
        }
        let (kind, msg) = if is(&["uuid"]) {
            (
                "uuid_type",
                "UUID input should be a string, bytes or UUID object",
            )
        } else if is(&["decimal", "money"]) {
            (
                "decimal_type",
                "Decimal input should be an integer, float, string or Decimal object",
            )
        } else if is(&["datetime", "a date"]) {
            ("datetime_type", "Input should be a valid datetime")
        } else if is(&["map"]) {
            ("dict_type", "Input should be a valid dictionary")
        } else if is(&["string", "a str"]) {
            ("string_type", "Input should be a valid string")
        } else if is(&[
            "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "usize", "integer",
        ]) {
            if got.starts_with("floating point") {
                (
                    "int_from_float",
                    "Input should be a valid integer, got a number with a fractional part",
                )
            } else {
                ("int_type", "Input should be a valid integer")
            }
        } else if is(&["f32", "f64", "float", "number"]) {
            ("float_type", "Input should be a valid number")
        } else if is(&["bool"]) {
            ("bool_type", "Input should be a valid boolean")
        } else if is(&["sequence", "array", "tuple", "vec"]) {
            ("list_type", "Input should be a valid list")
        } else {
            return (
                "value_error",
                format!("Value error, {message}"),
                Some(context("error", message)),
            );
        };
        return (kind, msg.to_owned(), None);
    }
    // Text that did not parse as the target type (query and path values are text).
    let parsing = [
        (
            &[
                "invalid digit",
                "number too large",
                "number too small",
                "cannot parse integer",
            ][..],
            "int_parsing",
            "Input should be a valid integer, unable to parse string as an integer",
        ),
        (
            &["invalid float literal"][..],
            "float_parsing",
            "Input should be a valid number, unable to parse string as a number",
        ),
        (
            &["provided string was not `true` or `false`"][..],
            "bool_parsing",
            "Input should be a valid boolean, unable to interpret input",
        ),
    ];
    for (needles, kind, msg) in parsing {
        if needles.iter().any(|n| message.contains(n)) {
            return (kind, msg.to_owned(), None);
        }
    }
    if message.contains("UUID parsing failed")
        || message.starts_with("invalid character")
        || (message.starts_with("invalid length") && message.contains("UUID"))
    {
        let error = message.trim_start_matches("UUID parsing failed: ");
        return (
            "uuid_parsing",
            format!("Input should be a valid UUID, {error}"),
            Some(context("error", error)),
        );
    }
    if message.starts_with("invalid value: integer `") {
        return (
            "int_parsing",
            "Input should be a valid integer, the number is out of range".into(),
            None,
        );
    }
    (
        "value_error",
        format!("Value error, {message}"),
        Some(context("error", message)),
    )
}

#[cfg(test)]
mod tests {
    use garde::Validate;
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, Validate)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Probe {
        #[garde(length(min = 3, max = 5))]
        name: String,
        #[garde(length(min = 1))]
        tags: Vec<String>,
        #[garde(range(min = 1, max = 200))]
        limit: u32,
        #[garde(email)]
        email: String,
        #[garde(length(min = 8))]
        password: String,
        #[garde(skip)]
        kind: Kind,
        #[garde(skip)]
        id: uuid::Uuid,
        #[garde(skip)]
        active: bool,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Kind {
        Demo,
        Wildberries,
    }

    fn garde_issues(value: &Value) -> Vec<ValidationIssue> {
        let probe: Probe = serde_json::from_value(value.clone()).unwrap();
        let report = validate(&probe).unwrap_err();
        report
            .iter()
            .map(|(path, error)| {
                let mut loc = vec![LocPart::from("body")];
                loc.extend(path.to_string().split('.').map(|p| LocPart::Key(p.into())));
                garde_issue(loc, error.message(), Some(value))
            })
            .collect()
    }

    fn serde_issue_of(value: Value) -> ValidationIssue {
        let err = serde_path_to_error::deserialize::<_, Probe>(value.clone()).unwrap_err();
        let mut loc = vec![LocPart::from("body")];
        loc.extend(err.path().iter().map(|s| LocPart::Key(s.to_string())));
        serde_issue(loc, &err.inner().to_string(), Some(&value))
    }

    fn valid() -> Value {
        json!({"name": "mug", "tags": ["a"], "limit": 10, "email": "a@example.com",
               "password": "long enough", "kind": "demo",
               "id": "0193a1b2-0000-7000-8000-000000000000", "active": true})
    }

    #[test]
    fn garde_rules_read_as_pydantic_types_with_their_bounds_and_input() {
        let mut body = valid();
        body["name"] = json!("mu");
        body["tags"] = json!([]);
        body["limit"] = json!(0);
        body["email"] = json!("nope");
        body["password"] = json!("short");
        let issues = garde_issues(&body);
        let by_field = |field: &str| {
            issues
                .iter()
                .find(|i| i.loc.last() == Some(&LocPart::Key(field.into())))
                .unwrap_or_else(|| panic!("{field}: {issues:?}"))
        };
        let name = by_field("name");
        assert_eq!(
            (name.kind.as_str(), name.msg.as_str()),
            (
                "string_too_short",
                "String should have at least 3 characters"
            )
        );
        assert_eq!(name.ctx, Some(context("min_length", 3)));
        assert_eq!(name.input, Some(json!("mu")));
        let tags = by_field("tags");
        assert_eq!(tags.kind, "too_short");
        assert_eq!(tags.ctx.as_ref().unwrap()["field_type"], "List");
        assert_eq!(tags.ctx.as_ref().unwrap()["actual_length"], 0);
        let limit = by_field("limit");
        assert_eq!(
            (limit.kind.as_str(), limit.msg.as_str()),
            (
                "greater_than_equal",
                "Input should be greater than or equal to 1"
            )
        );
        assert_eq!(limit.ctx, Some(context("ge", 1)));
        assert_eq!(limit.input, Some(json!(0)));
        let email = by_field("email");
        assert_eq!(email.kind, "value_error");
        assert!(
            email.msg.starts_with("value is not a valid email address"),
            "{}",
            email.msg
        );
        let password = by_field("password");
        assert_eq!(password.kind, "string_too_short");
        assert_eq!(password.input, None, "a secret is never echoed");
    }

    #[test]
    fn serde_errors_read_as_pydantic_types() {
        for (field, value, kind) in [
            ("name", json!(5), "string_type"),
            ("limit", json!("ten"), "int_type"),
            ("limit", json!(1.5), "int_from_float"),
            ("active", json!("yes"), "bool_type"),
            ("tags", json!("a"), "list_type"),
            ("id", json!("not-a-uuid"), "uuid_parsing"),
            ("kind", json!("amazon"), "enum"),
        ] {
            let mut body = valid();
            body[field] = value.clone();
            let issue = serde_issue_of(body);
            assert_eq!(issue.kind, kind, "{field}: {issue:?}");
            assert_eq!(issue.input, Some(value), "{field}");
        }
        let mut body = valid();
        body["kind"] = json!("amazon");
        let issue = serde_issue_of(body);
        assert_eq!(issue.msg, "Input should be 'demo' or 'wildberries'");
        assert_eq!(
            issue.ctx,
            Some(context("expected", "'demo' or 'wildberries'"))
        );

        let mut body = valid();
        body.as_object_mut().unwrap().remove("name");
        let issue = serde_issue_of(body.clone());
        assert_eq!(
            (issue.kind.as_str(), issue.msg.as_str()),
            ("missing", "Field required")
        );
        assert_eq!(issue.input, Some(body), "the object that lacks the field");

        let mut body = valid();
        body["nickname"] = json!("x");
        let issue = serde_issue_of(body);
        assert_eq!(issue.kind, "extra_forbidden");
        assert_eq!(issue.input, Some(json!("x")));
    }

    #[test]
    fn text_that_does_not_parse_as_the_target_type_is_a_parsing_error() {
        for (message, kind) in [
            ("invalid digit found in string", "int_parsing"),
            ("invalid float literal", "float_parsing"),
            ("provided string was not `true` or `false`", "bool_parsing"),
            ("something custom", "value_error"),
        ] {
            assert_eq!(classify(message).0, kind, "{message}");
        }
    }
}

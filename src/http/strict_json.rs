//! A JSON value deserializer that reads structs from JSON objects only.
//!
//! serde's derived `Deserialize` for a struct also accepts a JSON array of
//! its fields in order (`[null, null]` for `{"name": null, "settings": null}`).
//! No client of this API means that, and FastAPI refuses it; this
//! deserializer refuses it at every depth. It also reads whole-valued numbers
//! written with a fraction (`3.0`) as integers, as JSON Schema does.
//! Otherwise it behaves exactly like `serde_json::Value`.

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{self, IntoDeserializer, Visitor};
use serde::forward_to_deserialize_any;
use serde_json::Value;

pub struct StrictValue(pub Value);

impl<'de> IntoDeserializer<'de, serde_json::Error> for StrictValue {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> de::Deserializer<'de> for StrictValue {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Array(items) => {
                let mut seq = SeqDeserializer::new(items.into_iter().map(StrictValue));
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
            Value::Object(map) => {
                let mut entries =
                    MapDeserializer::new(map.into_iter().map(|(k, v)| (k, StrictValue(v))));
                let value = visitor.visit_map(&mut entries)?;
                entries.end()?;
                Ok(value)
            }
            // JSON has one number type: 3.0 is the integer 3 (as JSON Schema says).
            Value::Number(n) if n.as_f64().is_some_and(is_integral) && n.is_f64() => {
                let v = n.as_f64().unwrap_or_default();
                if v >= 0.0 {
                    visitor.visit_u64(v as u64)
                } else {
                    visitor.visit_i64(v as i64)
                }
            }
            scalar => scalar.deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(_) => self.deserialize_any(visitor),
            other => Err(de::Error::invalid_type(unexpected(&other), &"an object")),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        // The API's enums are plain strings; serde_json's own handling is exact for them.
        self.0.deserialize_enum(name, variants, visitor)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map identifier ignored_any
    }
}

/// Whole numbers that convert to an integer exactly.
fn is_integral(v: f64) -> bool {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    v.fract() == 0.0 && v.abs() < EXACT
}

fn unexpected(value: &Value) -> de::Unexpected<'_> {
    match value {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Number(_) => de::Unexpected::Other("number"),
        Value::String(s) => de::Unexpected::Str(s),
        Value::Array(_) => de::Unexpected::Seq,
        Value::Object(_) => de::Unexpected::Map,
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        a: Option<u32>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        name: Option<String>,
        inner: Option<Inner>,
        tags: Vec<String>,
    }

    fn parse(json: &str) -> Result<Outer, serde_json::Error> {
        Outer::deserialize(StrictValue(serde_json::from_str(json).unwrap()))
    }

    #[test]
    fn objects_parse_as_usual() {
        let parsed = parse(r#"{"name": "x", "inner": {"a": 3}, "tags": ["t"]}"#).unwrap();
        assert_eq!(parsed.inner, Some(Inner { a: Some(3) }));
        assert_eq!(
            parse(r#"{"name": null, "inner": null, "tags": []}"#)
                .unwrap()
                .name,
            None
        );
    }

    #[test]
    fn structs_are_never_read_from_arrays() {
        assert!(parse(r#"[null, null, []]"#).is_err());
        assert!(parse(r#"{"inner": [3], "tags": []}"#).is_err());
    }

    #[test]
    fn whole_numbers_with_a_fraction_are_integers() {
        let parsed = parse(r#"{"inner": {"a": 3.0}, "tags": []}"#).unwrap();
        assert_eq!(parsed.inner, Some(Inner { a: Some(3) }));
        assert!(parse(r#"{"inner": {"a": 3.5}, "tags": []}"#).is_err());
    }

    #[test]
    fn unknown_fields_and_wrong_types_still_fail() {
        assert!(parse(r#"{"tags": [], "extra": 1}"#).is_err());
        assert!(parse(r#"{"tags": [1]}"#).is_err());
        assert!(parse(r#"{"inner": {"a": -1}, "tags": []}"#).is_err());
    }
}

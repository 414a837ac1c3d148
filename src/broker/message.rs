//! Task messages in Celery's protocol version 2 over AMQP, the format a
//! Python `send_task` produces and a Python worker consumes: the task name
//! and id in the message headers, the body a JSON array
//! `[args, kwargs, embed]`.

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// One task call: its name, id and arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskMessage {
    pub id: String,
    pub task: String,
    pub args: Vec<Value>,
    pub kwargs: Map<String, Value>,
}

/// Why a message cannot run: refused rather than retried, since it would
/// fail the same way every time.
#[derive(Debug, thiserror::Error)]
pub enum BadMessage {
    #[error("not a Celery protocol 2 message: {0}")]
    Format(String),
    #[error("argument `{name}`: {reason}")]
    Argument { name: &'static str, reason: String },
}

impl TaskMessage {
    /// A call of `task` with a fresh id.
    pub fn new(task: &str, args: Vec<Value>, kwargs: Map<String, Value>) -> Self {
        Self {
            id: Uuid::new_v4().to_string(),
            task: task.to_owned(),
            args,
            kwargs,
        }
    }

    /// The argument at `index`, or the keyword `name` (Celery clients may
    /// pass either).
    pub fn arg<T: DeserializeOwned>(
        &self,
        index: usize,
        name: &'static str,
    ) -> Result<T, BadMessage> {
        self.optional_arg(index, name)?
            .ok_or_else(|| BadMessage::Argument {
                name,
                reason: "missing".into(),
            })
    }

    /// Like [`Self::arg`], `None` when absent or null.
    pub fn optional_arg<T: DeserializeOwned>(
        &self,
        index: usize,
        name: &'static str,
    ) -> Result<Option<T>, BadMessage> {
        let value = self.args.get(index).or_else(|| self.kwargs.get(name));
        match value {
            None | Some(Value::Null) => Ok(None),
            Some(value) => serde_json::from_value(value.clone())
                .map(Some)
                .map_err(|err| BadMessage::Argument {
                    name,
                    reason: err.to_string(),
                }),
        }
    }

    /// The AMQP body and properties: persistent, JSON, the protocol's headers.
    pub fn encode(&self, origin: &str) -> (Vec<u8>, BasicProperties) {
        let body = json!([self.args, self.kwargs, {
            "callbacks": null, "errbacks": null, "chain": null, "chord": null
        }]);
        let text = |s: &str| AMQPValue::LongString(LongString::from(s.to_owned()));
        let mut headers = FieldTable::default();
        headers.insert("lang".into(), text("rust"));
        headers.insert("task".into(), text(&self.task));
        headers.insert("id".into(), text(&self.id));
        headers.insert("root_id".into(), text(&self.id));
        headers.insert("parent_id".into(), AMQPValue::Void);
        headers.insert("group".into(), AMQPValue::Void);
        headers.insert("retries".into(), AMQPValue::LongInt(0));
        headers.insert("eta".into(), AMQPValue::Void);
        headers.insert("expires".into(), AMQPValue::Void);
        headers.insert(
            "timelimit".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::Void, AMQPValue::Void])),
        );
        headers.insert(
            "argsrepr".into(),
            text(&Value::from(self.args.clone()).to_string()),
        );
        headers.insert(
            "kwargsrepr".into(),
            text(&Value::from(self.kwargs.clone()).to_string()),
        );
        headers.insert("origin".into(), text(origin));
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_content_encoding("utf-8".into())
            .with_correlation_id(self.id.as_str().into())
            .with_delivery_mode(2)
            .with_priority(0)
            .with_headers(headers);
        (body.to_string().into_bytes(), properties)
    }

    /// Reads a delivered message from its properties and body.
    pub fn decode(properties: &BasicProperties, data: &[u8]) -> Result<Self, BadMessage> {
        if let Some(content_type) = properties.content_type()
            && content_type.as_str() != "application/json"
        {
            return Err(BadMessage::Format(format!(
                "content type `{content_type}` (only application/json is read)"
            )));
        }
        let headers = properties
            .headers()
            .as_ref()
            .ok_or_else(|| BadMessage::Format("no headers".into()))?;
        let task = header_text(headers, "task")
            .ok_or_else(|| BadMessage::Format("no `task` header".into()))?;
        let id = header_text(headers, "id")
            .or_else(|| properties.correlation_id().as_ref().map(|c| c.to_string()))
            .ok_or_else(|| BadMessage::Format("no `id` header".into()))?;
        let body: Value = serde_json::from_slice(data)
            .map_err(|err| BadMessage::Format(format!("body is not JSON: {err}")))?;
        let (args, kwargs) = match body {
            Value::Array(mut parts) if (2..=3).contains(&parts.len()) => {
                parts.truncate(2);
                let kwargs = parts.pop();
                let args = parts.pop();
                match (args, kwargs) {
                    (Some(Value::Array(args)), Some(Value::Object(kwargs))) => (args, kwargs),
                    _ => {
                        return Err(BadMessage::Format(
                            "body is not [args, kwargs, embed]".into(),
                        ));
                    }
                }
            }
            _ => {
                return Err(BadMessage::Format(
                    "body is not [args, kwargs, embed]".into(),
                ));
            }
        };
        Ok(Self {
            id,
            task,
            args,
            kwargs,
        })
    }
}

fn header_text(headers: &FieldTable, key: &str) -> Option<String> {
    match headers.inner().get(key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_reads_back_as_written() {
        let mut kwargs = Map::new();
        kwargs.insert("traceparent".into(), json!("00-abc-def-01"));
        let message = TaskMessage::new("sync_tenant_products", vec![json!("a"), json!(2)], kwargs);
        let (body, properties) = message.encode("test");
        assert_eq!(TaskMessage::decode(&properties, &body).unwrap(), message);
    }

    #[test]
    fn arguments_are_read_by_position_or_by_name() {
        let mut kwargs = Map::new();
        kwargs.insert("job_id".into(), json!(Uuid::nil()));
        let message = TaskMessage::new("t", vec![json!(7)], kwargs);
        assert_eq!(message.arg::<i64>(0, "count").unwrap(), 7);
        assert_eq!(message.arg::<Uuid>(1, "job_id").unwrap(), Uuid::nil());
        assert!(
            message
                .optional_arg::<String>(2, "traceparent")
                .unwrap()
                .is_none()
        );
        let missing = message.arg::<Uuid>(2, "tenant_id").unwrap_err();
        assert_eq!(missing.to_string(), "argument `tenant_id`: missing");
        let wrong = message.arg::<Uuid>(0, "tenant_id").unwrap_err();
        assert!(
            wrong
                .to_string()
                .starts_with("argument `tenant_id`: invalid type")
        );
    }

    #[test]
    fn a_body_that_is_not_args_kwargs_embed_is_refused() {
        let message = TaskMessage::new("t", vec![], Map::new());
        let (_, properties) = message.encode("test");
        assert!(matches!(
            TaskMessage::decode(&properties, br#"{"args": []}"#),
            Err(BadMessage::Format(_))
        ));
    }
}

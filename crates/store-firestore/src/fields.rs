//! Firestore's typed values (the REST API's `Value` objects) to and from the records'
//! Rust types, and document ids safe for any client id.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Number, Value, json};
use signal_core::store::StoreError;
use uuid::Uuid;

/// A document's `fields`, built up field by field.
#[derive(Debug, Default)]
pub(crate) struct Fields(Map<String, Value>);

impl Fields {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn str(mut self, name: &str, v: &str) -> Self {
        self.0.insert(name.into(), json!({ "stringValue": v }));
        self
    }

    pub(crate) fn opt_str(self, name: &str, v: Option<&str>) -> Self {
        match v {
            Some(v) => self.str(name, v),
            None => self.null(name),
        }
    }

    pub(crate) fn uuid(self, name: &str, v: Uuid) -> Self {
        self.str(name, &v.to_string())
    }

    pub(crate) fn null(mut self, name: &str) -> Self {
        self.0.insert(name.into(), json!({ "nullValue": null }));
        self
    }

    pub(crate) fn int(mut self, name: &str, v: i64) -> Self {
        self.0
            .insert(name.into(), json!({ "integerValue": v.to_string() }));
        self
    }

    pub(crate) fn time(mut self, name: &str, v: &DateTime<Utc>) -> Self {
        self.0.insert(name.into(), timestamp(v));
        self
    }

    pub(crate) fn opt_time(self, name: &str, v: Option<&DateTime<Utc>>) -> Self {
        match v {
            Some(v) => self.time(name, v),
            None => self.null(name),
        }
    }

    pub(crate) fn strings(mut self, name: &str, v: &[String]) -> Self {
        let values: Vec<Value> = v.iter().map(|s| json!({ "stringValue": s })).collect();
        self.0
            .insert(name.into(), json!({ "arrayValue": { "values": values } }));
        self
    }

    pub(crate) fn json(mut self, name: &str, v: &Value) -> Self {
        self.0.insert(name.into(), to_value(v));
        self
    }

    pub(crate) fn into_map(self) -> Map<String, Value> {
        self.0
    }
}

/// A `timestampValue`, to the microsecond (Firestore keeps no finer digits).
pub(crate) fn timestamp(v: &DateTime<Utc>) -> Value {
    json!({ "timestampValue": v.to_rfc3339_opts(SecondsFormat::Micros, true) })
}

/// A JSON value as a Firestore value: objects become maps, arrays arrays, integers that
/// fit in 64 bits `integerValue`, other numbers `doubleValue`.
pub(crate) fn to_value(v: &Value) -> Value {
    match v {
        Value::Null => json!({ "nullValue": null }),
        Value::Bool(b) => json!({ "booleanValue": b }),
        Value::Number(n) => match n.as_i64() {
            Some(i) => json!({ "integerValue": i.to_string() }),
            None => json!({ "doubleValue": n.as_f64().unwrap_or(0.0) }),
        },
        Value::String(s) => json!({ "stringValue": s }),
        Value::Array(a) => {
            let values: Vec<Value> = a.iter().map(to_value).collect();
            json!({ "arrayValue": { "values": values } })
        }
        Value::Object(o) => {
            let fields: Map<String, Value> =
                o.iter().map(|(k, v)| (k.clone(), to_value(v))).collect();
            json!({ "mapValue": { "fields": fields } })
        }
    }
}

/// A Firestore value as JSON: the inverse of [`to_value`]. Timestamps, references and
/// geo points (which this store never writes) come back as strings and objects.
pub(crate) fn from_value(v: &Value) -> Value {
    let Some((kind, inner)) = v.as_object().and_then(|o| o.iter().next()) else {
        return Value::Null;
    };
    match kind.as_str() {
        "booleanValue" => Value::Bool(inner.as_bool().unwrap_or(false)),
        "integerValue" => inner
            .as_str()
            .and_then(|s| s.parse::<i64>().ok())
            .or_else(|| inner.as_i64())
            .map_or(Value::Null, |i| Value::Number(i.into())),
        "doubleValue" => inner
            .as_f64()
            .and_then(Number::from_f64)
            .map_or(Value::Null, Value::Number),
        "stringValue" | "timestampValue" | "referenceValue" | "bytesValue" => inner.clone(),
        "arrayValue" => Value::Array(
            inner
                .get("values")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(from_value).collect())
                .unwrap_or_default(),
        ),
        "mapValue" => Value::Object(
            inner
                .get("fields")
                .and_then(Value::as_object)
                .map(|o| o.iter().map(|(k, v)| (k.clone(), from_value(v))).collect())
                .unwrap_or_default(),
        ),
        "geoPointValue" => inner.clone(),
        _ => Value::Null,
    }
}

/// A document read back: typed access to its fields, with an error naming the
/// collection, the document and the field when one is missing or of the wrong type.
pub(crate) struct Doc<'a> {
    pub(crate) name: &'a str,
    fields: &'a Map<String, Value>,
}

static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

impl<'a> Doc<'a> {
    pub(crate) fn new(doc: &'a Value) -> Self {
        Self {
            name: doc.get("name").and_then(Value::as_str).unwrap_or(""),
            fields: doc
                .get("fields")
                .and_then(Value::as_object)
                .unwrap_or(&EMPTY),
        }
    }

    fn bad(&self, field: &str, what: &str) -> StoreError {
        StoreError::Internal(format!("document {}: field '{field}' {what}", self.name))
    }

    fn typed(&self, field: &str, kind: &str) -> Result<Option<&'a Value>, StoreError> {
        let Some(v) = self.fields.get(field) else {
            return Err(self.bad(field, "is missing"));
        };
        if v.get("nullValue").is_some() {
            return Ok(None);
        }
        match v.get(kind) {
            Some(inner) => Ok(Some(inner)),
            None => Err(self.bad(field, &format!("is not a {kind}"))),
        }
    }

    pub(crate) fn opt_str(&self, field: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .typed(field, "stringValue")?
            .and_then(Value::as_str)
            .map(str::to_owned))
    }

    pub(crate) fn str(&self, field: &str) -> Result<String, StoreError> {
        self.opt_str(field)?
            .ok_or_else(|| self.bad(field, "is null"))
    }

    pub(crate) fn uuid(&self, field: &str) -> Result<Uuid, StoreError> {
        let s = self.str(field)?;
        Uuid::parse_str(&s).map_err(|_| self.bad(field, "is not a UUID"))
    }

    pub(crate) fn opt_time(&self, field: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        match self.typed(field, "timestampValue")?.and_then(Value::as_str) {
            None => Ok(None),
            Some(s) => DateTime::parse_from_rfc3339(s)
                .map(|t| Some(t.with_timezone(&Utc)))
                .map_err(|_| self.bad(field, "is not an RFC 3339 timestamp")),
        }
    }

    pub(crate) fn time(&self, field: &str) -> Result<DateTime<Utc>, StoreError> {
        self.opt_time(field)?
            .ok_or_else(|| self.bad(field, "is null"))
    }

    /// An integer field; 0 if the document has none (rows written by other tools).
    pub(crate) fn int_or_zero(&self, field: &str) -> i64 {
        self.fields
            .get(field)
            .map(from_value)
            .and_then(|v| v.as_i64())
            .unwrap_or(0)
    }

    pub(crate) fn strings(&self, field: &str) -> Result<Vec<String>, StoreError> {
        let Some(v) = self.fields.get(field) else {
            return Err(self.bad(field, "is missing"));
        };
        match from_value(v) {
            Value::Null => Ok(Vec::new()),
            Value::Array(items) => items
                .into_iter()
                .map(|i| match i {
                    Value::String(s) => Ok(s),
                    _ => Err(self.bad(field, "holds a value that is not a string")),
                })
                .collect(),
            _ => Err(self.bad(field, "is not an array")),
        }
    }

    pub(crate) fn json(&self, field: &str) -> Value {
        self.fields
            .get(field)
            .map(from_value)
            .unwrap_or(Value::Null)
    }
}

/// A document id for `id`: Firestore ids may not contain `/`, be `.` or `..`, or look
/// like `__name__`. Letters, digits, `-`, `_`, `.` and `:` (everything a room id may
/// hold) stay as they are; any other byte becomes `%XX`, as does a leading `.` or `_`.
/// The encoding is one-to-one, and never produces `~`, which joins two ids in one.
pub(crate) fn doc_id(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for (i, b) in id.bytes().enumerate() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b':')
            || (i > 0 && matches!(b, b'_' | b'.'));
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The document id of a membership: the room's and the client's ids joined by `~`.
pub(crate) fn member_doc_id(room_id: &str, client_id: &str) -> String {
    format!("{}~{}", doc_id(room_id), doc_id(client_id))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn json_round_trips_through_firestore_values() {
        let v = json!({
            "platform": "web",
            "n": [1, 2.5, null, true, -7, {"deep": {"x": "y"}}],
            "empty_list": [],
            "empty_map": {},
            "big": 9_007_199_254_740_993_i64,
        });
        assert_eq!(from_value(&to_value(&v)), v);
        assert_eq!(to_value(&json!(3)), json!({"integerValue": "3"}));
    }

    #[test]
    fn doc_ids_are_safe_and_distinct() {
        assert_eq!(doc_id("room-1:a.b_c"), "room-1:a.b_c");
        assert_eq!(doc_id("a/b"), "a%2Fb");
        assert_eq!(doc_id("."), "%2E");
        assert_eq!(doc_id(".."), "%2E.");
        assert_eq!(doc_id("__x__"), "%5F_x__");
        assert_eq!(doc_id("%2F"), "%252F");
        assert_eq!(doc_id("é"), "%C3%A9");
        assert_ne!(member_doc_id("a~b", "c"), member_doc_id("a", "b~c"));
        assert!(!doc_id("x~y").contains('~'));
    }
}

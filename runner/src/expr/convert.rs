//! Conversion between `serde_json::Value` (what nodes and reports see) and
//! jaq's `Val` (what jq programs run on).

use jaq_json::{Map, Num, Val};
use serde_json::Value;

/// Converts JSON into a jq value.
pub fn json_to_val(value: &Value) -> Val {
    match value {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Number(number) => {
            if let Some(int) = number.as_i64().and_then(|i| isize::try_from(i).ok()) {
                Val::Num(Num::Int(int))
            } else if let Some(unsigned) = number.as_u64() {
                Val::Num(Num::from_integral(unsigned))
            } else {
                Val::Num(Num::Float(number.as_f64().unwrap_or(f64::NAN)))
            }
        }
        Value::String(text) => Val::utf8_str(text.clone()),
        Value::Array(items) => items.iter().map(json_to_val).collect(),
        Value::Object(fields) => {
            let mut map = Map::default();
            for (key, field) in fields {
                map.insert(Val::utf8_str(key.clone()), json_to_val(field));
            }
            Val::obj(map)
        }
    }
}

/// Converts a jq value into JSON. Byte strings become text (lossy UTF-8),
/// non-finite numbers become `null`, non-string keys their JSON text.
pub fn val_to_json(value: &Val) -> Value {
    match value {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(*b),
        Val::Num(number) => num_to_json(number),
        Val::TStr(bytes) | Val::BStr(bytes) => {
            Value::String(String::from_utf8_lossy(bytes).into_owned())
        }
        Val::Arr(items) => Value::Array(items.iter().map(val_to_json).collect()),
        Val::Obj(fields) => Value::Object(
            fields
                .iter()
                .map(|(key, field)| (key_text(key), val_to_json(field)))
                .collect(),
        ),
    }
}

fn key_text(key: &Val) -> String {
    match key {
        Val::TStr(bytes) | Val::BStr(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        other => other.to_string(),
    }
}

fn num_to_json(number: &Num) -> Value {
    match number {
        Num::Int(int) => Value::from(*int as i64),
        Num::Float(float) => {
            serde_json::Number::from_f64(*float).map_or(Value::Null, Value::Number)
        }
        Num::BigInt(_) | Num::Dec(_) => {
            let text = number.to_string();
            serde_json::from_str::<Value>(&text)
                .ok()
                .filter(Value::is_number)
                .or_else(|| {
                    text.parse::<f64>()
                        .ok()
                        .and_then(serde_json::Number::from_f64)
                        .map(Value::Number)
                })
                .unwrap_or(Value::Null)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_round_trips_through_jq_values() {
        let value = json!({
            "a": [1, -2, 2.5, u64::MAX, "x", null, true],
            "nested": {"k": {"deep": []}},
        });
        assert_eq!(val_to_json(&json_to_val(&value)), value);
    }

    #[test]
    fn object_key_order_is_kept() {
        let value: Value = serde_json::from_str(r#"{"b": 1, "a": 2}"#).unwrap();
        let back = val_to_json(&json_to_val(&value));
        assert_eq!(back, value);
    }
}

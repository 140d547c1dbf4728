//! Column values to JSON, by PostgreSQL type, for any query: the node does
//! not know its result types in advance. Integers, floats and booleans
//! become JSON numbers and booleans; numeric becomes a string (exact);
//! timestamps RFC 3339 strings; bytea base64; json/jsonb their value;
//! arrays JSON lists. A type not listed fails with a hint to cast it.

use base64::Engine as _;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, Utc};
use serde_json::Value;
use sqlx::postgres::{PgRow, PgTypeKind};
use sqlx::{Column, Row, TypeInfo, ValueRef};

/// A value that could not be decoded.
#[derive(Debug, thiserror::Error)]
pub(super) enum DecodeError {
    /// The type is not supported.
    #[error(
        "column {column:?} has type {type_name}, which the postgres node cannot decode: cast it in the query, e.g. {column}::text"
    )]
    Unsupported { column: String, type_name: String },
    /// The value does not decode as its type says.
    #[error("failed to decode column {column:?} of type {type_name}: {message}")]
    Invalid {
        column: String,
        type_name: String,
        message: String,
    },
}

/// One row as a JSON object keyed by column name.
pub(super) fn row_to_json(row: &PgRow) -> Result<serde_json::Map<String, Value>, DecodeError> {
    let mut object = serde_json::Map::with_capacity(row.len());
    for (index, column) in row.columns().iter().enumerate() {
        let value = column_value(row, index).map_err(|error| match error {
            Failure::Unsupported => DecodeError::Unsupported {
                column: column.name().to_owned(),
                type_name: column.type_info().name().to_owned(),
            },
            Failure::Invalid(message) => DecodeError::Invalid {
                column: column.name().to_owned(),
                type_name: column.type_info().name().to_owned(),
                message,
            },
        })?;
        object.insert(column.name().to_owned(), value);
    }
    Ok(object)
}

enum Failure {
    Unsupported,
    Invalid(String),
}

impl From<sqlx::Error> for Failure {
    fn from(error: sqlx::Error) -> Self {
        Failure::Invalid(error.to_string())
    }
}

fn column_value(row: &PgRow, index: usize) -> Result<Value, Failure> {
    let raw = row.try_get_raw(index)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let type_info = raw.type_info().into_owned();
    let name = type_info.name();
    if let Some(element) = name.strip_suffix("[]") {
        return array_value(row, index, element);
    }
    Ok(match name {
        "BOOL" => Value::Bool(row.try_get(index)?),
        "INT2" => Value::from(row.try_get::<i16, _>(index)?),
        "INT4" => Value::from(row.try_get::<i32, _>(index)?),
        "INT8" => Value::from(row.try_get::<i64, _>(index)?),
        "OID" => Value::from(row.try_get::<sqlx::postgres::types::Oid, _>(index)?.0),
        "FLOAT4" => float(f64::from(row.try_get::<f32, _>(index)?)),
        "FLOAT8" => float(row.try_get::<f64, _>(index)?),
        "NUMERIC" => Value::String(numeric_to_string(
            raw.as_bytes()
                .map_err(|e| Failure::Invalid(e.to_string()))?,
        )?),
        "TEXT" | "VARCHAR" | "CHAR" | "BPCHAR" | "NAME" | "CITEXT" | "UNKNOWN" => {
            Value::String(row.try_get_unchecked(index)?)
        }
        "JSON" | "JSONB" => row.try_get::<Value, _>(index)?,
        "UUID" => Value::String(row.try_get::<sqlx::types::Uuid, _>(index)?.to_string()),
        "BYTEA" => Value::String(
            base64::engine::general_purpose::STANDARD.encode(row.try_get::<Vec<u8>, _>(index)?),
        ),
        "TIMESTAMPTZ" => timestamptz(row.try_get(index)?),
        "TIMESTAMP" => timestamp(row.try_get(index)?),
        "DATE" => date(row.try_get(index)?),
        "TIME" => time(row.try_get(index)?),
        "INTERVAL" => interval(row.try_get(index)?),
        _ if matches!(type_info.kind(), PgTypeKind::Enum(_)) => {
            Value::String(row.try_get_unchecked(index)?)
        }
        _ => return Err(Failure::Unsupported),
    })
}

fn array_value(row: &PgRow, index: usize, element: &str) -> Result<Value, Failure> {
    fn list<T>(items: Vec<Option<T>>, to_json: impl Fn(T) -> Value) -> Value {
        Value::Array(
            items
                .into_iter()
                .map(|item| item.map_or(Value::Null, &to_json))
                .collect(),
        )
    }
    Ok(match element {
        "BOOL" => list(row.try_get::<Vec<Option<bool>>, _>(index)?, Value::Bool),
        "INT2" => list(row.try_get::<Vec<Option<i16>>, _>(index)?, Value::from),
        "INT4" => list(row.try_get::<Vec<Option<i32>>, _>(index)?, Value::from),
        "INT8" => list(row.try_get::<Vec<Option<i64>>, _>(index)?, Value::from),
        "FLOAT4" => list(row.try_get::<Vec<Option<f32>>, _>(index)?, |v| {
            float(f64::from(v))
        }),
        "FLOAT8" => list(row.try_get::<Vec<Option<f64>>, _>(index)?, float),
        "TEXT" | "VARCHAR" | "CHAR" | "BPCHAR" | "NAME" => list(
            row.try_get_unchecked::<Vec<Option<String>>, _>(index)?,
            Value::String,
        ),
        "UUID" => list(
            row.try_get::<Vec<Option<sqlx::types::Uuid>>, _>(index)?,
            |v| Value::String(v.to_string()),
        ),
        "JSON" | "JSONB" => list(row.try_get::<Vec<Option<Value>>, _>(index)?, |v| v),
        "TIMESTAMPTZ" => list(
            row.try_get::<Vec<Option<DateTime<Utc>>>, _>(index)?,
            timestamptz,
        ),
        "DATE" => list(row.try_get::<Vec<Option<NaiveDate>>, _>(index)?, date),
        _ => return Err(Failure::Unsupported),
    })
}

/// A float as a JSON number, or `"NaN"`/`"Infinity"`/`"-Infinity"`, which JSON cannot hold.
fn float(value: f64) -> Value {
    serde_json::Number::from_f64(value).map_or_else(
        || {
            Value::String(if value.is_nan() {
                "NaN".to_owned()
            } else if value > 0.0 {
                "Infinity".to_owned()
            } else {
                "-Infinity".to_owned()
            })
        },
        Value::Number,
    )
}

fn timestamptz(value: DateTime<Utc>) -> Value {
    Value::String(value.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

fn timestamp(value: NaiveDateTime) -> Value {
    Value::String(value.format("%Y-%m-%dT%H:%M:%S%.f").to_string())
}

fn date(value: NaiveDate) -> Value {
    Value::String(value.format("%Y-%m-%d").to_string())
}

fn time(value: NaiveTime) -> Value {
    Value::String(value.format("%H:%M:%S%.f").to_string())
}

/// An interval as an ISO 8601 duration, e.g. `P1M2DT3.5S`.
fn interval(value: sqlx::postgres::types::PgInterval) -> Value {
    let mut text = String::from("P");
    if value.months != 0 {
        text.push_str(&format!("{}M", value.months));
    }
    if value.days != 0 {
        text.push_str(&format!("{}D", value.days));
    }
    if value.microseconds != 0 || text == "P" {
        let sign = if value.microseconds < 0 { "-" } else { "" };
        let micros = value.microseconds.unsigned_abs();
        let (hours, rest) = (micros / 3_600_000_000, micros % 3_600_000_000);
        let (minutes, rest) = (rest / 60_000_000, rest % 60_000_000);
        text.push('T');
        if hours != 0 {
            text.push_str(&format!("{sign}{hours}H"));
        }
        if minutes != 0 {
            text.push_str(&format!("{sign}{minutes}M"));
        }
        if rest != 0 || (hours == 0 && minutes == 0) {
            let seconds = format!("{}.{:06}", rest / 1_000_000, rest % 1_000_000);
            let seconds = seconds.trim_end_matches('0').trim_end_matches('.');
            text.push_str(&format!("{sign}{seconds}S"));
        }
    }
    Value::String(text)
}

/// Formats PostgreSQL's binary `numeric` (base-10000 digits with a weight,
/// a sign and a display scale) as its exact decimal text.
fn numeric_to_string(bytes: &[u8]) -> Result<String, Failure> {
    let invalid = || Failure::Invalid("malformed numeric value".to_owned());
    let word = |at: usize| -> Result<i16, Failure> {
        let pair = bytes.get(at..at + 2).ok_or_else(invalid)?;
        Ok(i16::from_be_bytes([pair[0], pair[1]]))
    };
    let digit_count = usize::try_from(word(0)?).map_err(|_| invalid())?;
    let weight = i64::from(word(2)?);
    let sign = word(4)? as u16;
    let scale = usize::try_from(word(6)?).map_err(|_| invalid())?;
    match sign {
        0xC000 => return Ok("NaN".to_owned()),
        0xD000 => return Ok("Infinity".to_owned()),
        0xF000 => return Ok("-Infinity".to_owned()),
        _ => {}
    }
    let digits = (0..digit_count)
        .map(|i| word(8 + 2 * i))
        .collect::<Result<Vec<i16>, _>>()?;
    let digit_at = |position: i64| -> i16 {
        usize::try_from(position)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut text = String::new();
    if sign == 0x4000 {
        text.push('-');
    }
    if weight < 0 {
        text.push('0');
    } else {
        text.push_str(&digit_at(0).to_string());
        for position in 1..=weight {
            text.push_str(&format!("{:04}", digit_at(position)));
        }
    }
    if scale > 0 {
        let mut fraction = String::new();
        let mut position = weight + 1;
        while fraction.len() < scale {
            fraction.push_str(&format!("{:04}", digit_at(position)));
            position += 1;
        }
        fraction.truncate(scale);
        text.push('.');
        text.push_str(&fraction);
    }
    Ok(text)
}

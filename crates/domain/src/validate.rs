//! Checking a client's JSON against a collection's fields. Pure: references are only checked
//! for shape here; that they exist in the project is checked inside the write transaction.

use crate::collections::{Collection, Field, Kind, SERVER_FIELDS};
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use proto::{ApiError, ErrorCode};
use serde_json::{Map, Value, json};
use std::collections::HashSet;
use uuid::Uuid;

pub type JsonObject = Map<String, Value>;

/// The most fields a client may add that liveplan does not model, per record.
pub const MAX_UNKNOWN_FIELDS: usize = 200;
pub const MAX_FIELD_NAME: usize = 100;
pub const MAX_EXCEPTIONS: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Create,
    Patch,
}

pub fn invalid_field(field: &str, reason: impl Into<String>) -> ApiError {
    let reason = reason.into();
    ApiError::new(ErrorCode::ValidationFailed, format!("{field}: {reason}"))
        .with_details(json!({ "field": field, "reason": reason }))
}

/// Requires a JSON object body.
pub fn as_object(input: &Value) -> Result<&JsonObject, ApiError> {
    input
        .as_object()
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidRequest, "the body must be a JSON object"))
}

/// Validates `input` for `collection` and returns the fields to write: known fields checked,
/// server-written fields dropped, unknown fields kept as sent.
pub fn validate_fields(
    collection: &Collection,
    input: &Value,
    mode: Mode,
) -> Result<JsonObject, ApiError> {
    let object = as_object(input)?;
    let mut out = JsonObject::new();
    let mut unknown = 0usize;
    for (name, value) in object {
        if SERVER_FIELDS.contains(&name.as_str()) {
            continue;
        }
        match collection.field(name) {
            Some(field) if field.read_only => continue,
            Some(field) => {
                check_value(field, value)?;
                out.insert(name.clone(), value.clone());
            }
            None => {
                unknown += 1;
                if name.is_empty() || name.chars().count() > MAX_FIELD_NAME {
                    return Err(invalid_field(name, "field names are 1 to 100 characters"));
                }
                if unknown > MAX_UNKNOWN_FIELDS {
                    return Err(invalid_field(name, "too many extra fields (at most 200)"));
                }
                out.insert(name.clone(), value.clone());
            }
        }
    }
    if mode == Mode::Create {
        for field in collection
            .fields
            .iter()
            .filter(|f| f.required && !f.read_only)
        {
            if out.get(field.name).is_none_or(Value::is_null) {
                return Err(invalid_field(field.name, "is required"));
            }
        }
    }
    Ok(out)
}

/// Checks one value against its field's kind.
pub fn check_value(field: &Field, value: &Value) -> Result<(), ApiError> {
    if value.is_null() {
        return if field.nullable {
            Ok(())
        } else {
            Err(invalid_field(field.name, "may not be null"))
        };
    }
    check_kind(field.name, field.kind, value)
}

pub fn check_kind(name: &str, kind: Kind, value: &Value) -> Result<(), ApiError> {
    match kind {
        Kind::Text { min, max } => {
            let text = value
                .as_str()
                .ok_or_else(|| invalid_field(name, "must be a string"))?;
            let count = text.chars().count();
            if count < min || count > max {
                return Err(invalid_field(
                    name,
                    format!("must be {min} to {max} characters"),
                ));
            }
            if min > 0 && text.trim().is_empty() {
                return Err(invalid_field(name, "may not be blank"));
            }
        }
        Kind::Number { min, max } => {
            let number = value
                .as_f64()
                .ok_or_else(|| invalid_field(name, "must be a number"))?;
            if !(min..=max).contains(&number) {
                return Err(invalid_field(
                    name,
                    format!("must be between {min} and {max}"),
                ));
            }
        }
        Kind::Integer { min, max } => {
            let number = value
                .as_i64()
                .ok_or_else(|| invalid_field(name, "must be an integer"))?;
            if !(min..=max).contains(&number) {
                return Err(invalid_field(
                    name,
                    format!("must be between {min} and {max}"),
                ));
            }
        }
        Kind::Bool => {
            if !value.is_boolean() {
                return Err(invalid_field(name, "must be true or false"));
            }
        }
        Kind::Date => {
            let text = value
                .as_str()
                .ok_or_else(|| invalid_field(name, "must be a date string YYYY-MM-DD"))?;
            parse_date(text).ok_or_else(|| invalid_field(name, "must be a date YYYY-MM-DD"))?;
        }
        Kind::DateOrDateTime => {
            let text = value.as_str().ok_or_else(|| {
                invalid_field(name, "must be an ISO 8601 date or date-time string")
            })?;
            parse_day(text)
                .ok_or_else(|| invalid_field(name, "must be an ISO 8601 date or date-time"))?;
        }
        Kind::Choice(choices) => {
            let text = value.as_str().unwrap_or_default();
            if !choices.contains(&text) {
                return Err(invalid_field(
                    name,
                    format!("must be one of {}", choices.join(", ")),
                ));
            }
        }
        Kind::Ref { .. } | Kind::UserRef => {
            parse_uuid_value(name, value)?;
        }
        Kind::RefList { max, .. } => {
            let items = value
                .as_array()
                .ok_or_else(|| invalid_field(name, "must be an array of ids"))?;
            if items.len() > max {
                return Err(invalid_field(name, format!("at most {max} ids")));
            }
            let mut seen = HashSet::new();
            for item in items {
                if !seen.insert(parse_uuid_value(name, item)?) {
                    return Err(invalid_field(name, "lists an id twice"));
                }
            }
        }
        Kind::Json { max_bytes } => {
            if value.to_string().len() > max_bytes {
                return Err(invalid_field(
                    name,
                    format!("is larger than {max_bytes} bytes"),
                ));
            }
        }
        Kind::Weekdays => {
            let days = value
                .as_array()
                .ok_or_else(|| invalid_field(name, "must be an array of weekday numbers 1-7"))?;
            let mut seen = HashSet::new();
            for day in days {
                match day.as_i64() {
                    Some(d @ 1..=7) if seen.insert(d) => {}
                    _ => {
                        return Err(invalid_field(
                            name,
                            "must list distinct weekday numbers 1 (Monday) to 7 (Sunday)",
                        ));
                    }
                }
            }
            // A week without a working day leaves the scheduler no day to put work on.
            if days.is_empty() {
                return Err(invalid_field(
                    name,
                    "must list at least one working day (1 Monday to 7 Sunday)",
                ));
            }
        }
        Kind::Exceptions => check_exceptions(name, value)?,
        Kind::Rank => match value {
            Value::Number(n) if n.as_f64().is_some_and(f64::is_finite) => {}
            Value::String(s) if s.len() <= 128 => {}
            _ => {
                return Err(invalid_field(
                    name,
                    "must be a number or a string of at most 128 characters",
                ));
            }
        },
    }
    Ok(())
}

fn check_exceptions(name: &str, value: &Value) -> Result<(), ApiError> {
    let items = value
        .as_array()
        .ok_or_else(|| invalid_field(name, "must be an array of {start, end}"))?;
    if items.len() > MAX_EXCEPTIONS {
        return Err(invalid_field(
            name,
            format!("at most {MAX_EXCEPTIONS} exceptions"),
        ));
    }
    for item in items {
        let object = item
            .as_object()
            .ok_or_else(|| invalid_field(name, "each exception is an object {start, end}"))?;
        let start = object
            .get("start")
            .and_then(Value::as_str)
            .and_then(parse_date)
            .ok_or_else(|| invalid_field(name, "each exception needs a start date YYYY-MM-DD"))?;
        let end = match object.get("end") {
            None | Some(Value::Null) => start,
            Some(end) => end.as_str().and_then(parse_date).ok_or_else(|| {
                invalid_field(name, "an exception's end must be a date YYYY-MM-DD")
            })?,
        };
        if end < start {
            return Err(invalid_field(name, "an exception ends before it starts"));
        }
        if let Some(working) = object.get("is_working")
            && !working.is_boolean()
        {
            return Err(invalid_field(name, "is_working must be true or false"));
        }
        if let Some(label) = object.get("name")
            && !label.is_string()
            && !label.is_null()
        {
            return Err(invalid_field(name, "an exception's name must be a string"));
        }
    }
    Ok(())
}

/// The first integer in JSON `text` that does not fit in 64 bits (below -2^63 or above
/// 2^64-1), if any. serde_json reads such an integer as a float, so `18446744073709551616`
/// would be stored and sent back as `1.8446744073709552e19`, a float and often another number:
/// bodies holding one are refused instead. Only the text can tell: once parsed, the integer
/// and the float are the same value.
pub fn oversized_integer(text: &[u8]) -> Option<&str> {
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'"' => {
                i += 1;
                while i < text.len() && text[i] != b'"' {
                    i += if text[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < text.len()
                    && matches!(text[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let number = std::str::from_utf8(&text[start..i]).ok()?;
                let is_float = number.bytes().any(|b| matches!(b, b'.' | b'e' | b'E'));
                let fits = number.parse::<i64>().is_ok() || number.parse::<u64>().is_ok();
                // Digits only (after a sign): what is no number at all is the parser's to refuse.
                let digits = number.strip_prefix('-').unwrap_or(number);
                if !is_float
                    && !fits
                    && !digits.is_empty()
                    && digits.bytes().all(|b| b.is_ascii_digit())
                {
                    return Some(number);
                }
            }
            _ => i += 1,
        }
    }
    None
}

fn parse_uuid_value(name: &str, value: &Value) -> Result<Uuid, ApiError> {
    value
        .as_str()
        .and_then(|text| Uuid::parse_str(text).ok())
        .ok_or_else(|| invalid_field(name, "must be an id (UUID string)"))
}

pub fn parse_date(text: &str) -> Option<NaiveDate> {
    if text.len() != 10 {
        return None;
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .filter(|date| four_digit_year(text, *date))
}

/// `%Y` also reads signed years of any length (`+10383-04-21`), which clients cannot read
/// back: dates are `YYYY-MM-DD` from 0001 to 9999, as the scheduler's outputs.
fn four_digit_year(text: &str, date: NaiveDate) -> bool {
    text.as_bytes().first().is_some_and(u8::is_ascii_digit)
        && (cpm::FIRST_DATE..=cpm::LAST_DATE).contains(&date)
}

/// An ISO 8601 date (as its midnight), local date-time, or date-time with offset (its local
/// wall-clock time).
fn parse_wall_clock(text: &str) -> Option<NaiveDateTime> {
    if let Some(date) = parse_date(text) {
        return Some(date.and_time(chrono::NaiveTime::MIN));
    }
    let at = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
        .into_iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .or_else(|| {
            DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|at| at.naive_local())
        })?;
    four_digit_year(text, at.date()).then_some(at)
}

/// The calendar day of an ISO 8601 date, local date-time, or date-time with offset.
pub fn parse_day(text: &str) -> Option<NaiveDate> {
    parse_wall_clock(text).map(|at| at.date())
}

/// The last calendar day an exclusive end covers: a bar ending at midnight (or on a bare
/// date) stops the day before, one ending later in the day covers that day.
pub fn parse_exclusive_end_day(text: &str) -> Option<NaiveDate> {
    let at = parse_wall_clock(text)?;
    if at.time() == chrono::NaiveTime::MIN {
        at.date().pred_opt()
    } else {
        Some(at.date())
    }
}

/// The ids a record refers to, with the field and target collection of each.
pub fn references(
    collection: &Collection,
    body: &JsonObject,
) -> Vec<(&'static str, Uuid, Option<&'static str>)> {
    let mut refs = Vec::new();
    for field in collection.fields {
        let Some(value) = body.get(field.name) else {
            continue;
        };
        match field.kind {
            Kind::Ref {
                collection: target, ..
            } => {
                if let Some(id) = value.as_str().and_then(|t| Uuid::parse_str(t).ok()) {
                    refs.push((field.name, id, Some(target)));
                }
            }
            Kind::RefList {
                collection: target, ..
            } => {
                for id in value
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().and_then(|t| Uuid::parse_str(t).ok()))
                {
                    refs.push((field.name, id, Some(target)));
                }
            }
            Kind::UserRef if !field.read_only => {
                if let Some(id) = value.as_str().and_then(|t| Uuid::parse_str(t).ok()) {
                    refs.push((field.name, id, None));
                }
            }
            _ => {}
        }
    }
    refs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collections::{DEPENDENCIES, TASKS};

    #[test]
    fn an_exclusive_end_covers_the_day_before_midnight() {
        let day = |t: &str| parse_exclusive_end_day(t).map(|d| d.to_string());
        assert_eq!(day("2026-03-04").as_deref(), Some("2026-03-03"));
        assert_eq!(day("2026-03-04T00:00:00").as_deref(), Some("2026-03-03"));
        assert_eq!(day("2026-03-04T00:00:00Z").as_deref(), Some("2026-03-03"));
        assert_eq!(day("2026-03-04T17:00").as_deref(), Some("2026-03-04"));
        assert_eq!(
            day("2026-03-04T12:30:00+02:00").as_deref(),
            Some("2026-03-04")
        );
        assert_eq!(day("March 4"), None);
        assert_eq!(day("-262143-01-01"), None);
    }

    #[test]
    fn dates_have_four_digit_years_from_0001_to_9999() {
        for good in ["0001-01-01", "2026-03-02", "9999-12-31"] {
            assert_eq!(
                parse_date(good).map(|d| d.to_string()).as_deref(),
                Some(good)
            );
            assert!(parse_day(&format!("{good}T08:00:00")).is_some(), "{good}");
        }
        for bad in [
            "+10383-04-21",
            "+2026-03-02",
            "-0001-01-01",
            "0000-12-31",
            "10000-01-01",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
            assert_eq!(parse_day(&format!("{bad}T08:00:00")), None, "{bad}");
            assert_eq!(parse_day(&format!("{bad}T08:00:00Z")), None, "{bad}");
            assert_eq!(parse_exclusive_end_day(bad), None, "{bad}");
        }
        assert_eq!(parse_date("2026-3-2"), None);
    }

    #[test]
    fn keeps_unknown_fields_and_drops_server_fields() {
        let out = validate_fields(
            &TASKS,
            &json!({"name": "A", "cls": "red", "id": "x", "early_start": "2020-01-01"}),
            Mode::Create,
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"name": "A", "cls": "red"})
                .as_object()
                .unwrap()
                .clone()
        );
    }

    #[test]
    fn refuses_bad_values() {
        for bad in [
            json!({"name": ""}),
            json!({"name": 5}),
            json!({"name": "A", "duration": -1}),
            json!({"name": "A", "duration": "3"}),
            json!({"name": "A", "start_date": "2026-02-30"}),
            json!({"name": "A", "constraint_type": "sometime"}),
            json!({"name": "A", "parent_id": "not-a-uuid"}),
            json!({"name": "A", "percent_complete": 101}),
            json!({"name": null}),
            json!({"description": "no name"}),
        ] {
            let error = validate_fields(&TASKS, &bad, Mode::Create).unwrap_err();
            assert_eq!(error.code, ErrorCode::ValidationFailed, "{bad}");
        }
        assert_eq!(
            validate_fields(&TASKS, &json!([1]), Mode::Create)
                .unwrap_err()
                .code,
            ErrorCode::InvalidRequest
        );
        assert!(validate_fields(&DEPENDENCIES, &json!({"type": "XX"}), Mode::Patch).is_err());
    }

    #[test]
    fn integers_beyond_64_bits_are_found_in_the_text() {
        let found = |text: &str| oversized_integer(text.as_bytes()).map(str::to_owned);
        assert_eq!(
            found(r#"{"n": 18446744073709551616}"#).as_deref(),
            Some("18446744073709551616")
        );
        assert_eq!(
            found(r#"[-9223372036854775809]"#).as_deref(),
            Some("-9223372036854775809")
        );
        assert_eq!(
            found(r#"{"a": {"b": [1, 123456789012345678901234567890]}}"#).as_deref(),
            Some("123456789012345678901234567890")
        );
        assert_eq!(
            found("[18446744073709552000]").as_deref(),
            Some("18446744073709552000")
        );
        // What i64 or u64 hold, fractions, exponents and strings pass.
        for fine in [
            r#"{"n": 18446744073709551615}"#,
            r#"{"n": -9223372036854775808}"#,
            r#"{"n": 1.8446744073709551616e19, "f": 0.1, "e": 1E400}"#,
            r#"{"s": "18446744073709551616", "t": "a\"18446744073709551616"}"#,
            r#"{"k\\": 1}"#,
            "-",
            "",
        ] {
            assert_eq!(found(fine), None, "{fine}");
        }
    }

    #[test]
    fn accepts_dates_and_datetimes() {
        for text in [
            "2026-03-02",
            "2026-03-02T09:00:00",
            "2026-03-02T09:00",
            "2019-01-14T00:00:00Z",
        ] {
            assert!(parse_day(text).is_some(), "{text}");
        }
        assert!(parse_day("yesterday").is_none());
    }
}

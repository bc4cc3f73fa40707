//! Parsing the values the command line takes: `KEY=VALUE` pairs, metrics,
//! hyperparameters, datasets, parents, ages and times. Every failure is a
//! [`modelreg::Error::InvalidInput`] naming the flag, so it exits with the usage
//! code and says what was expected.

use std::time::Duration;

use modelreg::chrono::{DateTime, Utc};
use modelreg::{
    DatasetRef, DatasetRole, Error, HyperValue, MetricSpec, Relation, Result, Stage, TagKey, Tags,
};

fn invalid(what: &str, input: &str, reason: impl Into<String>) -> Error {
    Error::InvalidInput {
        what: format!("{what} {input:?}"),
        reason: reason.into(),
    }
}

/// Splits `KEY=VALUE` at the first `=`; the key must not be empty.
pub fn key_value<'a>(what: &str, input: &'a str) -> Result<(&'a str, &'a str)> {
    match input.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k, v)),
        _ => Err(invalid(what, input, "expected KEY=VALUE")),
    }
}

/// `auc=0.93`: a finite number.
pub fn metric(input: &str) -> Result<(&str, f64)> {
    let (name, value) = key_value("metric", input)?;
    let v: f64 = value
        .trim()
        .parse()
        .map_err(|_| invalid("metric", input, "the value is not a number"))?;
    if !v.is_finite() {
        return Err(invalid("metric", input, "the value must be finite"));
    }
    Ok((name, v))
}

/// `lr=0.01`, `layers=[64,32]`, `optimizer=adam`: JSON when it parses, else text.
pub fn param(input: &str) -> Result<(&str, HyperValue)> {
    let (name, value) = key_value("parameter", input)?;
    let v = match serde_json::from_str::<HyperValue>(value) {
        Ok(v) => v,
        Err(_) => HyperValue::String(value.to_owned()),
    };
    Ok((name, v))
}

/// Tags from `KEY=VALUE` pairs.
pub fn tags(inputs: &[String]) -> Result<Tags> {
    let mut tags = Tags::new();
    for input in inputs {
        let (k, v) = key_value("tag", input)?;
        tags.insert(TagKey::new(k)?, v.to_owned());
    }
    Ok(tags)
}

/// Tag keys to remove.
pub fn tag_keys(inputs: &[String]) -> Result<Vec<TagKey>> {
    inputs.iter().map(|k| TagKey::new(k.as_str())).collect()
}

/// `[ROLE:]NAME[@VERSION]`.
pub fn dataset(input: &str) -> Result<DatasetRef> {
    let roles = [
        ("train", DatasetRole::Train),
        ("validation", DatasetRole::Validation),
        ("eval", DatasetRole::Eval),
        ("test", DatasetRole::Test),
        ("other", DatasetRole::Other),
    ];
    let (role, rest) = match input.split_once(':') {
        Some((r, rest)) => match roles.iter().find(|(n, _)| *n == r) {
            Some((_, role)) => (*role, rest),
            None => (DatasetRole::Train, input),
        },
        None => (DatasetRole::Train, input),
    };
    let (name, version) = match rest.rsplit_once('@') {
        Some((n, v)) if !v.is_empty() => (n, Some(v)),
        _ => (rest, None),
    };
    if name.trim().is_empty() {
        return Err(invalid("dataset", input, "expected [ROLE:]NAME[@VERSION]"));
    }
    let mut d = DatasetRef::new(name, role);
    if let Some(v) = version {
        d = d.version(v);
    }
    Ok(d)
}

/// `REF` or `REF=RELATION`.
pub fn parent(input: &str) -> Result<(&str, Relation)> {
    let (reference, relation) = match input.split_once('=') {
        None => return Ok((input, Relation::DerivedFrom)),
        Some(pair) => pair,
    };
    let relation = match relation {
        "fine_tuned_from" => Relation::FineTunedFrom,
        "distilled_from" => Relation::DistilledFrom,
        "quantized_from" => Relation::QuantizedFrom,
        "retrained_from" => Relation::RetrainedFrom,
        "derived_from" => Relation::DerivedFrom,
        _ => {
            return Err(invalid(
                "parent",
                input,
                "the relation is one of fine_tuned_from, distilled_from, quantized_from, retrained_from, derived_from",
            ));
        }
    };
    Ok((reference, relation))
}

/// `auc=max`, `latency_ms=min:5`.
pub fn metric_goal(input: &str) -> Result<(&str, MetricSpec)> {
    let (name, goal) = key_value("metric goal", input)?;
    let (goal, tolerance) = match goal.split_once(':') {
        Some((g, t)) => (g, Some(t)),
        None => (goal, None),
    };
    let mut spec = match goal {
        "max" => MetricSpec::maximize(),
        "min" => MetricSpec::minimize(),
        _ => {
            return Err(invalid(
                "metric goal",
                input,
                "expected NAME=max or NAME=min",
            ));
        }
    };
    if let Some(t) = tolerance {
        let t: f64 = t
            .parse()
            .ok()
            .filter(|t: &f64| t.is_finite() && *t >= 0.0)
            .ok_or_else(|| invalid("metric goal", input, "the tolerance is not a number ≥ 0"))?;
        spec = spec.with_tolerance(t);
    }
    Ok((name, spec))
}

/// A stage's name.
pub fn stage(input: &str) -> Result<Stage> {
    input.parse()
}

/// `90s`, `30m`, `12h`, `7d`, `2w` (or a bare number of seconds).
pub fn age(what: &str, input: &str) -> Result<Duration> {
    let s = input.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| {
        invalid(
            what,
            input,
            "expected a number and a unit: 90s, 30m, 12h, 7d, 2w",
        )
    })?;
    let secs = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => {
            return Err(invalid(
                what,
                input,
                "the unit is one of s, m, h, d, w: 90s, 30m, 12h, 7d, 2w",
            ));
        }
    };
    n.checked_mul(secs)
        .map(Duration::from_secs)
        .ok_or_else(|| invalid(what, input, "too long"))
}

/// An RFC 3339 time, or an age back from `now`.
pub fn since(input: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(input) {
        return Ok(t.with_timezone(&Utc));
    }
    let age = age("--since", input).map_err(|_| {
        invalid(
            "--since",
            input,
            "expected an RFC 3339 time (2026-12-01T09:00:00Z) or an age (30m, 12h, 7d)",
        )
    })?;
    let age = modelreg::chrono::Duration::from_std(age)
        .map_err(|_| invalid("--since", input, "too long"))?;
    Ok(now - age)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_need_a_name_and_a_finite_number() {
        assert_eq!(metric("auc=0.93").unwrap(), ("auc", 0.93));
        assert!(metric("auc").is_err());
        assert!(metric("=1").is_err());
        assert!(metric("auc=high").is_err());
        assert!(metric("auc=NaN").is_err());
        assert!(metric("auc=inf").is_err());
    }

    #[test]
    fn params_are_json_when_they_parse() {
        assert_eq!(param("lr=0.01").unwrap().1, HyperValue::Float(0.01));
        assert_eq!(param("epochs=3").unwrap().1, HyperValue::Int(3));
        assert_eq!(
            param("opt=adam").unwrap().1,
            HyperValue::String("adam".into())
        );
        assert!(matches!(param("l=[1,2]").unwrap().1, HyperValue::List(_)));
    }

    #[test]
    fn datasets_take_a_role_and_a_version() {
        let d = dataset("eval:holdout@2026-11").unwrap();
        assert_eq!((d.name.as_str(), d.role), ("holdout", DatasetRole::Eval));
        assert_eq!(d.version.as_deref(), Some("2026-11"));
        let d = dataset("s3://bucket/tx").unwrap();
        assert_eq!(
            (d.name.as_str(), d.role),
            ("s3://bucket/tx", DatasetRole::Train)
        );
        assert!(dataset("eval:").is_err());
    }

    #[test]
    fn ages_have_units() {
        assert_eq!(age("g", "90s").unwrap(), Duration::from_secs(90));
        assert_eq!(age("g", "2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(age("g", "0").unwrap(), Duration::ZERO);
        assert!(age("g", "1y").is_err());
        assert!(age("g", "h").is_err());
        assert!(age("g", "-1h").is_err());
    }

    #[test]
    fn parents_take_an_optional_relation() {
        assert_eq!(parent("base/1").unwrap(), ("base/1", Relation::DerivedFrom));
        assert_eq!(
            parent("base/1=fine_tuned_from").unwrap(),
            ("base/1", Relation::FineTunedFrom)
        );
        assert!(parent("base/1=cousin").is_err());
    }
}

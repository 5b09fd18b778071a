//! `successCondition` and `failureCondition` evaluated over a measurement's `result`.
//!
//! Conditions are CEL (the `cel` crate, standard library only) with `result` bound to the
//! provider's value: a JSON number becomes a CEL double (Prometheus scalars are floats), a
//! JSON array a list (Prometheus vectors), strings, booleans, objects and null map to their CEL
//! counterparts. Argo's helpers are added: `len(x)` (size of a list, string or map),
//! `isNaN(x)` and `isInf(x)` (an error for non-numbers). Argo-style forms such as
//! `result >= 0.95`, `result[0] >= 0.95`, `len(result) > 0` and `result == true` work as
//! written; a condition must yield a bool. JSON cannot hold NaN or infinities: a provider
//! that has one (Prometheus answers `NaN` for 0/0) passes a [`CelValue`] to the `_value`
//! variants instead. Unlike Argo's Go `expr`, where `NaN >= 0.95` is false, this CEL
//! interpreter refuses to order NaN: such a condition is an evaluation error (Error phase),
//! unless guarded (`!isNaN(result) && result >= 0.95`).
//!
//! The outcome follows Argo's `evaluate.EvaluateResult`: neither condition set -> Successful;
//! only a successCondition -> Successful if true, else Failed; only a failureCondition ->
//! Failed if true, else Successful; both -> Failed if the failureCondition holds, Successful
//! if only the successCondition holds, Inconclusive if neither; an evaluation error -> Error.

use std::sync::Arc;

use cel::objects::{Key, Map};
use cel::{Context, ExecutionError, Program, Value};

use crate::phase::Phase;

/// A condition that cannot be evaluated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExprError {
    /// The condition does not parse.
    #[error("failed to parse condition {condition:?}: {message}")]
    Parse {
        /// The condition.
        condition: String,
        /// The parser's message.
        message: String,
    },
    /// Evaluating the condition failed (unknown function, bad index, type mismatch, ...).
    #[error("failed to evaluate condition {condition:?}: {message}")]
    Eval {
        /// The condition.
        condition: String,
        /// The interpreter's message.
        message: String,
    },
    /// The condition yielded something other than a bool.
    #[error("condition {condition:?} must evaluate to a bool, got {got}")]
    NotBool {
        /// The condition.
        condition: String,
        /// The CEL type it yielded.
        got: String,
    },
}

/// The phase of a measurement, and for Error the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Successful, Failed, Inconclusive or Error.
    pub phase: Phase,
    /// The error, when `phase` is Error.
    pub message: Option<String>,
}

/// Converts a provider's JSON result into a CEL value (numbers become doubles).
pub fn to_cel(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => Value::String(Arc::new(s.clone())),
        serde_json::Value::Array(items) => {
            Value::List(Arc::new(items.iter().map(to_cel).collect()))
        }
        serde_json::Value::Object(fields) => {
            let map: std::collections::HashMap<Key, Value> = fields
                .iter()
                .map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v)))
                .collect();
            Value::Map(Map { map: Arc::new(map) })
        }
    }
}

fn number(name: &str, v: &Value) -> Result<f64, ExecutionError> {
    match v {
        Value::Float(f) => Ok(*f),
        Value::Int(i) => Ok(*i as f64),
        Value::UInt(u) => Ok(*u as f64),
        other => Err(ExecutionError::function_error(
            name,
            format!("expected a number, got {}", other.type_of()),
        )),
    }
}

/// A CEL value, for results JSON cannot express (NaN, infinities).
pub use cel::Value as CelValue;

fn context_for(result: Value) -> Context<'static, 'static> {
    let mut ctx = Context::default();
    ctx.add_variable_from_value("result", result);
    // These names are not in CEL's standard library, so adding them cannot conflict.
    let _ = ctx.add_function("isNaN", |v: Value| -> Result<bool, ExecutionError> {
        Ok(number("isNaN", &v)?.is_nan())
    });
    let _ = ctx.add_function("isInf", |v: Value| -> Result<bool, ExecutionError> {
        Ok(number("isInf", &v)?.is_infinite())
    });
    let _ = ctx.add_function("len", |v: Value| -> Result<i64, ExecutionError> {
        match &v {
            Value::List(l) => Ok(l.len() as i64),
            Value::String(s) => Ok(s.chars().count() as i64),
            Value::Map(m) => Ok(m.map.len() as i64),
            Value::Bytes(b) => Ok(b.len() as i64),
            other => Err(ExecutionError::function_error(
                "len",
                format!("invalid argument of type {}", other.type_of()),
            )),
        }
    });
    ctx
}

/// Evaluates one condition over a JSON `result` (numbers become doubles).
pub fn eval_condition(condition: &str, result: &serde_json::Value) -> Result<bool, ExprError> {
    eval_condition_value(condition, to_cel(result))
}

/// Evaluates one condition over a CEL `result`.
pub fn eval_condition_value(condition: &str, result: CelValue) -> Result<bool, ExprError> {
    let program = Program::compile(condition).map_err(|e| ExprError::Parse {
        condition: condition.to_string(),
        message: e.to_string(),
    })?;
    let ctx = context_for(result);
    match program.execute(&ctx) {
        Ok(Value::Bool(b)) => Ok(b),
        Ok(other) => Err(ExprError::NotBool {
            condition: condition.to_string(),
            got: other.type_of().to_string(),
        }),
        Err(e) => Err(ExprError::Eval {
            condition: condition.to_string(),
            message: e.to_string(),
        }),
    }
}

/// A measurement's phase from its JSON result and the metric's conditions (empty strings
/// count as unset), as Argo's `EvaluateResult` decides.
pub fn evaluate_conditions(
    success_condition: Option<&str>,
    failure_condition: Option<&str>,
    result: &serde_json::Value,
) -> Outcome {
    evaluate_conditions_value(success_condition, failure_condition, to_cel(result))
}

/// [`evaluate_conditions`] over a CEL result.
pub fn evaluate_conditions_value(
    success_condition: Option<&str>,
    failure_condition: Option<&str>,
    result: CelValue,
) -> Outcome {
    let success_condition = success_condition.filter(|s| !s.trim().is_empty());
    let failure_condition = failure_condition.filter(|s| !s.trim().is_empty());
    let eval = |c: Option<&str>| {
        c.map(|c| eval_condition_value(c, result.clone()))
            .transpose()
    };
    let (success, failure) = match (eval(success_condition), eval(failure_condition)) {
        (Ok(s), Ok(f)) => (s, f),
        (Err(e), _) | (_, Err(e)) => {
            return Outcome {
                phase: Phase::Error,
                message: Some(e.to_string()),
            };
        }
    };
    let phase = match (success, failure) {
        (None, None) => Phase::Successful,
        (Some(s), None) => {
            if s {
                Phase::Successful
            } else {
                Phase::Failed
            }
        }
        (None, Some(f)) => {
            if f {
                Phase::Failed
            } else {
                Phase::Successful
            }
        }
        (Some(_), Some(true)) => Phase::Failed,
        (Some(true), Some(false)) => Phase::Successful,
        (Some(false), Some(false)) => Phase::Inconclusive,
    };
    Outcome {
        phase,
        message: None,
    }
}

#[cfg(test)]
// Table tests spell out their row tuples.
#[allow(clippy::type_complexity)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn condition_forms() {
        let nan_result = serde_json::Value::from(f64::NAN); // serde_json turns NaN into null
        let cases: Vec<(&str, serde_json::Value, bool)> = vec![
            ("result >= 0.95", json!(0.97), true),
            ("result >= 0.95", json!(0.5), false),
            ("result >= 0.95", json!(1), true),
            ("result[0] >= 0.95", json!([0.99, 0.1]), true),
            ("result[0] >= 0.95", json!([0.9]), false),
            ("result < 500", json!(120.5), true),
            ("result < 500", json!(800), false),
            ("len(result) > 0", json!([1.0]), true),
            ("len(result) > 0", json!([]), false),
            ("len(result) == 3", json!("abc"), true),
            ("size(result) == 2", json!([1, 2]), true),
            ("result == true", json!(true), true),
            ("result == true", json!(false), false),
            ("result", json!(true), true),
            ("result == 'ok'", json!("ok"), true),
            (
                "result.status == 'ok' && result.rate > 0.9",
                json!({"status": "ok", "rate": 0.95}),
                true,
            ),
            ("isNaN(result)", json!(1.0), false),
            ("!isNaN(result) && result > 0", json!(2.0), true),
            ("isInf(result)", json!(1.0), false),
            ("result == null", nan_result, true),
            (
                "result[0] >= 0.95 || result[1] >= 0.95",
                json!([0.1, 0.96]),
                true,
            ),
        ];
        for (cond, result, want) in cases {
            assert_eq!(
                eval_condition(cond, &result),
                Ok(want),
                "{cond} over {result}"
            );
        }
    }

    #[test]
    fn number_literals_compare_with_double_results() {
        assert_eq!(eval_condition("result == 1", &json!(1)), Ok(true));
        assert_eq!(eval_condition("result[0] > 0", &json!([0.5])), Ok(true));
        assert_eq!(eval_condition("result <= 100", &json!(100)), Ok(true));
    }

    #[test]
    fn nan_and_inf_results() {
        assert_eq!(
            eval_condition_value("isNaN(result)", CelValue::Float(f64::NAN)),
            Ok(true)
        );
        assert_eq!(
            eval_condition_value("isInf(result)", CelValue::Float(f64::INFINITY)),
            Ok(true)
        );
        let nan_list = CelValue::List(Arc::new(vec![CelValue::Float(f64::NAN)]));
        assert_eq!(
            eval_condition_value("isNaN(result[0])", nan_list.clone()),
            Ok(true)
        );
        // This CEL interpreter refuses to order NaN (Go's expr says false): the measurement is
        // an Error, not a Failure. Guarding with isNaN works, as `||` absorbs the error.
        let got = evaluate_conditions_value(Some("result[0] >= 0.95"), None, nan_list.clone());
        assert_eq!(got.phase, Phase::Error);
        assert_eq!(
            evaluate_conditions_value(
                Some("!isNaN(result[0]) && result[0] >= 0.95"),
                None,
                nan_list.clone()
            )
            .phase,
            Phase::Failed
        );
        assert_eq!(
            evaluate_conditions_value(None, Some("isNaN(result[0]) || result[0] < 0.95"), nan_list)
                .phase,
            Phase::Failed
        );
    }

    #[test]
    fn is_nan_on_real_nan() {
        // A provider can hand over NaN (Prometheus returns "NaN" for 0/0); CEL computes it too.
        assert_eq!(eval_condition("isNaN(0.0/0.0)", &json!(0)), Ok(true));
        assert_eq!(eval_condition("isInf(1.0/0.0)", &json!(0)), Ok(true));
    }

    #[test]
    fn condition_errors() {
        let err = eval_condition("result >=", &json!(1)).unwrap_err();
        assert!(matches!(err, ExprError::Parse { .. }), "{err}");
        let err = eval_condition("result[3] > 0", &json!([1.0])).unwrap_err();
        assert!(matches!(err, ExprError::Eval { .. }), "{err}");
        let err = eval_condition("unknownFn(result)", &json!(1)).unwrap_err();
        assert!(matches!(err, ExprError::Eval { .. }), "{err}");
        let err = eval_condition("result + 1.0", &json!(1)).unwrap_err();
        assert_eq!(
            err,
            ExprError::NotBool {
                condition: "result + 1.0".into(),
                got: "float".into()
            }
        );
        let err = eval_condition("isNaN(result)", &json!("x")).unwrap_err();
        assert!(matches!(err, ExprError::Eval { .. }), "{err}");
        let err = eval_condition("len(result) > 0", &json!(1)).unwrap_err();
        assert!(matches!(err, ExprError::Eval { .. }), "{err}");
    }

    #[test]
    fn outcome_table() {
        use Phase::*;
        let r = json!(0.9);
        let cases: Vec<(Option<&str>, Option<&str>, Phase)> = vec![
            (None, None, Successful),
            (Some(""), Some(""), Successful),
            (Some("result > 0.5"), None, Successful),
            (Some("result > 0.95"), None, Failed),
            (None, Some("result < 0.5"), Successful),
            (None, Some("result < 0.95"), Failed),
            (Some("result > 0.5"), Some("result < 0.5"), Successful),
            (Some("result > 0.95"), Some("result < 0.5"), Inconclusive),
            (Some("result > 0.95"), Some("result < 0.95"), Failed),
            // Both true: Argo checks the failure first.
            (Some("result > 0.5"), Some("result < 0.95"), Failed),
        ];
        for (success, failure, want) in cases {
            let got = evaluate_conditions(success, failure, &r);
            assert_eq!(got.phase, want, "{success:?} / {failure:?}");
            assert_eq!(got.message, None);
        }
    }

    #[test]
    fn outcome_error_carries_message() {
        let got = evaluate_conditions(Some("result[0] > 1"), None, &json!([]));
        assert_eq!(got.phase, Phase::Error);
        let message = got.message.unwrap();
        assert!(
            message.starts_with("failed to evaluate condition \"result[0] > 1\""),
            "{message}"
        );
        let got = evaluate_conditions(Some("result > 0"), Some("result >"), &json!(1));
        assert_eq!(got.phase, Phase::Error);
        assert!(
            got.message
                .unwrap()
                .starts_with("failed to parse condition")
        );
    }
}

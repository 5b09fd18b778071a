//! The patch formats of the Kubernetes API, as pure functions over JSON objects: JSON
//! patch (RFC 6902) here; JSON merge patch (RFC 7386) lives with the store, which uses it
//! for its own apply.

pub mod json;

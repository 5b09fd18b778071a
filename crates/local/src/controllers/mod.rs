//! The controllers of the single-host engine.

pub mod gc;
pub mod namespace;

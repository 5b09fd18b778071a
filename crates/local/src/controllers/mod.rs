//! The controllers of the single-host engine.

pub mod gc;
pub mod kubelet;
pub mod namespace;

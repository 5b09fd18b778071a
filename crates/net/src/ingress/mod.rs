//! The built-in ingress: HTTP routing by Ingress rules with ingress-nginx canary semantics.

pub mod routing;
pub mod server;
mod upstream;

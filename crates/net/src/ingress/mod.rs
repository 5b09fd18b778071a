//! The built-in ingress: HTTP routing by Ingress rules with ingress-nginx canary semantics.

mod h1;
mod pool;
pub mod routing;
pub mod server;
mod upstream;

//! A kube-rs client for code running inside the engine: requests go straight into the
//! API's router (no socket, no TLS, no second parser), authenticated with the server's
//! token. The controllers that also run on clusters (crate `switchyard-controller`) use
//! it, so what the engine runs is the code a cluster runs, through the same API.

use axum::Router;
use axum::http::{HeaderValue, Request, header};

/// A kube client whose every request is served by `router` in this process.
pub fn client(router: Router, token: &str) -> kube::Client {
    let authorization = HeaderValue::from_str(&format!("Bearer {token}"))
        .expect("a generated token is a valid header value");
    let service = tower::ServiceBuilder::new()
        .map_request(move |mut request: Request<kube::client::Body>| {
            request
                .headers_mut()
                .insert(header::AUTHORIZATION, authorization.clone());
            request
        })
        .service(router);
    kube::Client::new(service, "default")
}

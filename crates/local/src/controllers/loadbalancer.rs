//! The load-balancer controller: gives each LoadBalancer Service an address from the
//! loopback pool and publishes it in `status.loadBalancer.ingress`, as MetalLB does on a
//! cluster; clears it when the Service stops being a LoadBalancer.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use serde_json::{Value, json};
use switchyard_store::{ObjectKey, Store, Subresource, WatchEvent};

use crate::runtime::{Context, Controller, Next, ReconcileError, ReconcileFuture};

/// The load-balancer address pool, on loopback.
pub const LB_POOL: &str = "127.200.0.0/16";
const LB_FIRST: u32 = u32::from_be_bytes([127, 200, 0, 1]);
const LB_LAST: u32 = u32::from_be_bytes([127, 200, 255, 254]);

/// The load-balancer controller.
pub struct LoadBalancerController;

fn ingress_ip(service: &Value) -> Option<&str> {
    service["status"]["loadBalancer"]["ingress"][0]["ip"].as_str()
}

impl Controller for LoadBalancerController {
    fn name(&self) -> &'static str {
        "load-balancer"
    }

    fn keys_for(&self, event: &WatchEvent, _: &Store) -> Vec<ObjectKey> {
        if event.key.kind == "Service" {
            vec![event.key.clone()]
        } else {
            Vec::new()
        }
    }

    fn all_keys(&self, store: &Store) -> Vec<ObjectKey> {
        store
            .list("Service", None)
            .0
            .iter()
            .filter_map(|s| {
                Some(ObjectKey {
                    kind: "Service".into(),
                    namespace: s["metadata"]["namespace"].as_str()?.to_string(),
                    name: s["metadata"]["name"].as_str()?.to_string(),
                })
            })
            .collect()
    }

    fn reconcile<'a>(&'a self, key: &'a ObjectKey, ctx: &'a Context) -> ReconcileFuture<'a> {
        Box::pin(async move {
            let Some(service) = ctx.store.get(key) else {
                return Ok(Next::Done);
            };
            let is_lb = service["spec"]["type"] == "LoadBalancer";
            match (is_lb, ingress_ip(&service)) {
                (true, Some(_)) | (false, None) => {}
                (false, Some(_)) => {
                    ctx.store.patch(
                        key,
                        &json!({"status": {"loadBalancer": {}}}),
                        Subresource::Status,
                    )?;
                }
                (true, None) => {
                    let (services, _) = ctx.store.list("Service", None);
                    let used: HashSet<u32> = services
                        .iter()
                        .filter_map(|s| ingress_ip(s)?.parse::<Ipv4Addr>().ok())
                        .map(u32::from)
                        .collect();
                    // Random in the pool, so several servers on one host rarely meet.
                    let span = LB_LAST - LB_FIRST + 1;
                    let start = (uuid::Uuid::new_v4().as_u128() % u128::from(span)) as u32;
                    let ip = (0..span)
                        .map(|i| LB_FIRST + (start + i) % span)
                        .find(|ip| !used.contains(ip))
                        .map(Ipv4Addr::from)
                        .ok_or_else(|| {
                            ReconcileError(format!("the load-balancer pool {LB_POOL} is exhausted"))
                        })?;
                    let status = json!({"status": {"loadBalancer": {"ingress": [{"ip": ip.to_string(), "ipMode": "VIP"}]}}});
                    let updated = ctx.store.patch(key, &status, Subresource::Status)?;
                    ctx.recorder.normal(
                        &updated,
                        "IPAllocated",
                        &format!("Assigned IP [\"{ip}\"]"),
                    );
                }
            }
            Ok(Next::Done)
        })
    }
}

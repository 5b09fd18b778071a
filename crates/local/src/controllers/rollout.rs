//! The Rollout controller: observes a Rollout's ReplicaSets, AnalysisRuns and the weight
//! the ingress serves, asks the sans-IO engine for a plan, persists the planned status
//! first (invariant 3), then executes the plan's actions against the store: ReplicaSets,
//! Service selectors, the canary Ingress (derived from `trafficRouting.nginx.stableIngress`
//! as Argo Rollouts does) and AnalysisRuns.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_api::rollout::{HeaderRoutingMatch, Rollout};
use switchyard_engine::hash::{POD_TEMPLATE_HASH, REVISION, SCALE_DOWN_DEADLINE};
use switchyard_engine::{
    Action, AnalysisKind, AnalysisPhase, AnalysisRunView, Observed, ReplicaSetView,
};
use switchyard_store::{DeleteOptions, ObjectKey, Store, StoreError, Subresource, WatchEvent};

use crate::controllers::string_map;
use crate::runtime::{Context, Controller, Next, ReconcileError, ReconcileFuture};

const ANN: &str = "nginx.ingress.kubernetes.io/";
/// Label naming the Rollout an AnalysisRun belongs to and which analysis it is.
const ANALYSIS_KIND: &str = "switchyard.dev/analysis-kind";
/// The label of an AnalysisRun naming the version (pod-template-hash) it judges.
pub(crate) const ANALYSIS_HASH: &str = "switchyard.dev/pod-template-hash";

/// The Rollout controller.
pub struct RolloutController;

fn key(kind: &str, namespace: &str, name: &str) -> ObjectKey {
    ObjectKey {
        kind: kind.into(),
        namespace: namespace.into(),
        name: name.into(),
    }
}

/// The Rollout that controls an object, from its owner references.
fn owner_rollout(object: &Value) -> Option<String> {
    object["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["kind"] == "Rollout" && r["controller"] == true)
        .and_then(|r| r["name"].as_str().map(str::to_string))
}

impl Controller for RolloutController {
    fn name(&self) -> &'static str {
        "rollout"
    }

    fn keys_for(&self, event: &WatchEvent, _: &Store) -> Vec<ObjectKey> {
        match event.key.kind.as_str() {
            "Rollout" => vec![event.key.clone()],
            "ReplicaSet" | "AnalysisRun" | "Ingress" => owner_rollout(&event.object)
                .map(|name| vec![key("Rollout", &event.key.namespace, &name)])
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    fn all_keys(&self, store: &Store) -> Vec<ObjectKey> {
        store
            .list("Rollout", None)
            .0
            .iter()
            .filter_map(|r| {
                Some(key(
                    "Rollout",
                    r["metadata"]["namespace"].as_str()?,
                    r["metadata"]["name"].as_str()?,
                ))
            })
            .collect()
    }

    fn reconcile<'a>(&'a self, key: &'a ObjectKey, ctx: &'a Context) -> ReconcileFuture<'a> {
        Box::pin(async move { sync(key, ctx) })
    }
}

fn owned_by(store: &Store, kind: &str, namespace: &str, uid: &str) -> Vec<Value> {
    store
        .list(kind, Some(namespace))
        .0
        .iter()
        .filter(|o| {
            o["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| r["uid"] == uid && r["controller"] == true)
        })
        .map(|o| (**o).clone())
        .collect()
}

fn timestamp(value: &Value) -> Option<jiff::Timestamp> {
    value.as_str()?.parse().ok()
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

fn replica_set_view(rs: &Value) -> Option<ReplicaSetView> {
    Some(ReplicaSetView {
        name: rs["metadata"]["name"].as_str()?.to_string(),
        pod_template_hash: rs["metadata"]["labels"][POD_TEMPLATE_HASH]
            .as_str()
            .unwrap_or("")
            .to_string(),
        template: serde_json::from_value(rs["spec"]["template"].clone()).ok()?,
        replicas: rs["spec"]["replicas"].as_i64().unwrap_or(1) as i32,
        status_replicas: rs["status"]["replicas"].as_i64().unwrap_or(0) as i32,
        ready_replicas: rs["status"]["readyReplicas"].as_i64().unwrap_or(0) as i32,
        available_replicas: rs["status"]["availableReplicas"].as_i64().unwrap_or(0) as i32,
        revision: rs["metadata"]["annotations"][REVISION]
            .as_str()
            .and_then(|r| r.parse().ok()),
        scale_down_deadline: timestamp(&rs["metadata"]["annotations"][SCALE_DOWN_DEADLINE]),
    })
}

fn kind_label(kind: AnalysisKind) -> String {
    match kind {
        AnalysisKind::Step(i) => format!("step-{i}"),
        AnalysisKind::Background => "background".into(),
        AnalysisKind::PrePromotion => "pre-promotion".into(),
        AnalysisKind::PostPromotion => "post-promotion".into(),
    }
}

fn parse_kind(label: &str) -> Option<AnalysisKind> {
    match label {
        "background" => Some(AnalysisKind::Background),
        "pre-promotion" => Some(AnalysisKind::PrePromotion),
        "post-promotion" => Some(AnalysisKind::PostPromotion),
        other => other
            .strip_prefix("step-")?
            .parse()
            .ok()
            .map(AnalysisKind::Step),
    }
}

fn analysis_view(run: &Value) -> Option<AnalysisRunView> {
    let phase = match run["status"]["phase"].as_str().unwrap_or("Pending") {
        "Running" => AnalysisPhase::Running,
        "Successful" => AnalysisPhase::Successful,
        "Failed" => AnalysisPhase::Failed,
        "Error" => AnalysisPhase::Error,
        "Inconclusive" => AnalysisPhase::Inconclusive,
        _ => AnalysisPhase::Pending,
    };
    Some(AnalysisRunView {
        name: run["metadata"]["name"].as_str()?.to_string(),
        kind: parse_kind(run["metadata"]["labels"][ANALYSIS_KIND].as_str()?)?,
        pod_hash: run["metadata"]["labels"][ANALYSIS_HASH]
            .as_str()
            .unwrap_or("")
            .to_string(),
        phase,
        message: run["status"]["message"].as_str().map(str::to_string),
    })
}

/// The canary Ingress Argo derives from a stable Ingress: `<rollout>-<stable>-canary`.
fn canary_ingress_name(rollout: &str, stable: &str) -> String {
    format!("{rollout}-{stable}-canary")
}

fn stable_ingresses(ro: &Rollout) -> Vec<String> {
    let Some(nginx) = ro
        .spec
        .strategy
        .canary
        .as_ref()
        .and_then(|c| c.traffic_routing.as_ref())
        .and_then(|t| t.nginx.as_ref())
    else {
        return Vec::new();
    };
    nginx
        .stable_ingress
        .iter()
        .cloned()
        .chain(nginx.stable_ingresses.iter().flatten().cloned())
        .collect()
}

fn sync(rollout_key: &ObjectKey, ctx: &Context) -> Result<Next, ReconcileError> {
    let store = &ctx.store;
    let Some(value) = store.get(rollout_key) else {
        return Ok(Next::Done);
    };
    let rollout: Rollout = serde_json::from_value((*value).clone())
        .map_err(|e| ReconcileError(format!("decoding the Rollout: {e}")))?;
    let ns = rollout_key.namespace.as_str();
    let name = rollout_key.name.as_str();
    let uid = value["metadata"]["uid"].as_str().unwrap_or("").to_string();
    let replica_sets = owned_by(store, "ReplicaSet", ns, &uid)
        .iter()
        .filter_map(replica_set_view)
        .collect();
    let analysis_runs = owned_by(store, "AnalysisRun", ns, &uid)
        .iter()
        .filter_map(analysis_view)
        .collect();
    // The weight the ingress serves: the canary Ingress's annotation, once it is ours.
    let observed_weight = stable_ingresses(&rollout).first().and_then(|stable| {
        let canary = store.get(&key("Ingress", ns, &canary_ingress_name(name, stable)))?;
        canary["metadata"]["annotations"][format!("{ANN}canary-weight")]
            .as_str()?
            .parse()
            .ok()
    });
    let observed = Observed {
        rollout: rollout.clone(),
        replica_sets,
        analysis_runs,
        observed_weight,
        now: now(),
    };
    let mut plan = switchyard_engine::plan(&observed);
    let restart = restart_pods(store, &rollout, ns, &uid, observed.now, &mut plan);
    // Persist before acting: the status names what the actions will create.
    let status = serde_json::to_value(&plan.status).map_err(|e| ReconcileError(e.to_string()))?;
    if value["status"] != status {
        let mut updated = (*value).clone();
        updated["status"] = status;
        match store.update(updated, Subresource::Status) {
            Ok(_) => {}
            // Someone changed the Rollout (a promote, an edit): plan again from it.
            Err(StoreError::Conflict { .. }) => return Ok(Next::After(Duration::from_millis(10))),
            Err(e) => return Err(e.into()),
        }
    }
    for action in &plan.actions {
        execute(store, &rollout, &value, action)?;
    }
    if let Some(pod) = restart {
        ctx.recorder.normal(
            &value,
            "RestartingPod",
            &format!("restarting pod {pod} for spec.restartAt"),
        );
        let _ = store.delete(&key("Pod", ns, &pod), &DeleteOptions::default());
        return Ok(Next::After(Duration::from_secs(1)));
    }
    for event in &plan.events {
        if event.warning {
            ctx.recorder.warning(&value, &event.reason, &event.message);
        } else {
            ctx.recorder.normal(&value, &event.reason, &event.message);
        }
    }
    Ok(plan.requeue_after.map_or(Next::Done, Next::After))
}

/// `spec.restartAt`: pods created before it are deleted one at a time, each only while
/// every pod of the Rollout is ready (so at most one is unavailable), and their ReplicaSets
/// replace them. Once none is older, `status.restartedAt` records the time. A restartAt
/// still in the future waits for its time (as Argo does): replacements created before it
/// would otherwise count as old and be restarted again. Returns the pod to delete now.
fn restart_pods(
    store: &Store,
    rollout: &Rollout,
    ns: &str,
    uid: &str,
    now: jiff::Timestamp,
    plan: &mut switchyard_engine::Plan,
) -> Option<String> {
    let restart_at = rollout.spec.restart_at.as_ref()?;
    if plan
        .status
        .restarted_at
        .as_ref()
        .is_some_and(|done| done.0 >= restart_at.0)
    {
        return None;
    }
    let at = restart_at.0;
    if at > now {
        let wait = Duration::try_from(at.duration_since(now)).unwrap_or_default();
        plan.requeue_after = Some(plan.requeue_after.map_or(wait, |r| r.min(wait)));
        return None;
    }
    let sets: Vec<String> = owned_by(store, "ReplicaSet", ns, uid)
        .iter()
        .filter_map(|rs| Some(rs["metadata"]["uid"].as_str()?.to_string()))
        .collect();
    let pods: Vec<Value> = sets
        .iter()
        .flat_map(|rs_uid| owned_by(store, "Pod", ns, rs_uid))
        .collect();
    let ready = |p: &Value| {
        p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    };
    let older: Vec<&Value> = pods
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| timestamp(&p["metadata"]["creationTimestamp"]).is_some_and(|c| c < at))
        .collect();
    if older.is_empty() {
        plan.status.restarted_at = Some(restart_at.clone());
        return None;
    }
    let all_ready = pods
        .iter()
        .all(|p| p["metadata"]["deletionTimestamp"].is_null() && ready(p));
    all_ready
        .then(|| older[0]["metadata"]["name"].as_str().map(str::to_string))
        .flatten()
}

fn owner_reference(value: &Value) -> Value {
    json!([{
        "apiVersion": "switchyard.dev/v1alpha1",
        "kind": "Rollout",
        "name": value["metadata"]["name"],
        "uid": value["metadata"]["uid"],
        "controller": true,
        "blockOwnerDeletion": true,
    }])
}

fn ignore_exists<T>(result: Result<T, StoreError>) -> Result<(), ReconcileError> {
    match result {
        Ok(_) | Err(StoreError::AlreadyExists { .. }) | Err(StoreError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn execute(
    store: &Store,
    rollout: &Rollout,
    value: &Value,
    action: &Action,
) -> Result<(), ReconcileError> {
    let ns = value["metadata"]["namespace"].as_str().unwrap_or("default");
    let name = value["metadata"]["name"].as_str().unwrap_or("");
    match action {
        Action::CreateReplicaSet {
            name: rs,
            hash,
            template,
            replicas,
            revision,
        } => {
            let mut selector = rollout.spec.selector.clone().unwrap_or_default();
            selector
                .match_labels
                .get_or_insert_with(BTreeMap::new)
                .insert(POD_TEMPLATE_HASH.into(), hash.clone());
            let labels = template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            let object = json!({
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": rs,
                    "namespace": ns,
                    "labels": labels,
                    "annotations": {REVISION: revision.to_string()},
                    "ownerReferences": owner_reference(value),
                },
                "spec": {
                    "replicas": replicas,
                    "minReadySeconds": rollout.spec.min_ready_seconds.unwrap_or(0),
                    "selector": selector,
                    "template": template,
                },
            });
            ignore_exists(store.create(object))
        }
        Action::ScaleReplicaSet { name: rs, replicas } => ignore_exists(store.patch(
            &key("ReplicaSet", ns, rs),
            &json!({"spec": {"replicas": replicas}}),
            Subresource::Main,
        )),
        Action::SetScaleDownDeadline { name: rs, at } => {
            let patch = json!({"metadata": {"annotations": {SCALE_DOWN_DEADLINE: at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()}}});
            ignore_exists(store.patch(&key("ReplicaSet", ns, rs), &patch, Subresource::Main))
        }
        Action::RemoveScaleDownDeadline { name: rs } => {
            let patch = json!({"metadata": {"annotations": {SCALE_DOWN_DEADLINE: null}}});
            ignore_exists(store.patch(&key("ReplicaSet", ns, rs), &patch, Subresource::Main))
        }
        Action::DeleteReplicaSet { name: rs } => {
            ignore_exists(store.delete(&key("ReplicaSet", ns, rs), &DeleteOptions::default()))
        }
        Action::SetServiceSelector {
            service,
            pod_template_hash,
        } => {
            let service_key = key("Service", ns, service);
            let Some(current) = store.get(&service_key) else {
                return Ok(());
            };
            if current["spec"]["selector"][POD_TEMPLATE_HASH] == pod_template_hash.as_str() {
                return Ok(());
            }
            let patch = json!({
                "metadata": {"annotations": {"argo-rollouts.argoproj.io/managed-by-rollouts": name}},
                "spec": {"selector": {POD_TEMPLATE_HASH: pod_template_hash}},
            });
            ignore_exists(store.patch(&service_key, &patch, Subresource::Main))
        }
        Action::SetCanaryWeight { weight } => {
            for stable in stable_ingresses(rollout) {
                ensure_canary_ingress(store, rollout, value, &stable, |annotations| {
                    annotations.insert(format!("{ANN}canary-weight"), weight.to_string());
                })?;
            }
            Ok(())
        }
        Action::SetHeaderRoute { matches, .. } => {
            let Some(first) = matches.first() else {
                return Ok(());
            };
            let (header, value_text, pattern) = header_match(first);
            for stable in stable_ingresses(rollout) {
                ensure_canary_ingress(store, rollout, value, &stable, |annotations| {
                    annotations.insert(format!("{ANN}canary-by-header"), header.clone());
                    annotations.remove(&format!("{ANN}canary-by-header-value"));
                    annotations.remove(&format!("{ANN}canary-by-header-pattern"));
                    match (&value_text, &pattern) {
                        (Some(v), _) => {
                            annotations.insert(format!("{ANN}canary-by-header-value"), v.clone())
                        }
                        (None, Some(p)) => {
                            annotations.insert(format!("{ANN}canary-by-header-pattern"), p.clone())
                        }
                        _ => None,
                    };
                })?;
            }
            Ok(())
        }
        Action::RemoveHeaderRoute { .. } => {
            for stable in stable_ingresses(rollout) {
                let canary_key = key("Ingress", ns, &canary_ingress_name(name, &stable));
                if store.get(&canary_key).is_some_and(|c| {
                    c["metadata"]["annotations"][format!("{ANN}canary-by-header")].is_string()
                }) {
                    let patch = json!({"metadata": {"annotations": {
                        format!("{ANN}canary-by-header"): null,
                        format!("{ANN}canary-by-header-value"): null,
                        format!("{ANN}canary-by-header-pattern"): null,
                    }}});
                    ignore_exists(store.patch(&canary_key, &patch, Subresource::Main))?;
                }
            }
            Ok(())
        }
        Action::CreateAnalysisRun {
            name: run,
            kind,
            pod_hash,
            templates,
            args,
        } => {
            let mut metrics = Vec::new();
            let mut template_args: Vec<Value> = Vec::new();
            for template in templates {
                if let Some(t) = store.get(&key("AnalysisTemplate", ns, &template.template_name)) {
                    metrics.extend(t["spec"]["metrics"].as_array().cloned().unwrap_or_default());
                    template_args.extend(t["spec"]["args"].as_array().cloned().unwrap_or_default());
                }
            }
            for arg in args {
                if let Some(existing) = template_args
                    .iter_mut()
                    .find(|a| a["name"] == arg.name.as_str())
                {
                    existing["value"] = json!(arg.value);
                } else {
                    template_args.push(json!({"name": arg.name, "value": arg.value}));
                }
            }
            let object = json!({
                "apiVersion": "switchyard.dev/v1alpha1",
                "kind": "AnalysisRun",
                "metadata": {
                    "name": run,
                    "namespace": ns,
                    "labels": {ANALYSIS_KIND: kind_label(*kind), ANALYSIS_HASH: pod_hash},
                    "ownerReferences": owner_reference(value),
                },
                "spec": {"metrics": metrics, "args": template_args},
            });
            ignore_exists(store.create(object))
        }
        Action::TerminateAnalysisRun { name: run } => ignore_exists(store.patch(
            &key("AnalysisRun", ns, run),
            &json!({"spec": {"terminate": true}}),
            Subresource::Main,
        )),
    }
}

/// A header route as ingress-nginx annotations: (header, exact value, regex pattern).
fn header_match(m: &HeaderRoutingMatch) -> (String, Option<String>, Option<String>) {
    let v = &m.header_value;
    let pattern = v
        .regex
        .clone()
        .or_else(|| v.prefix.as_ref().map(|p| format!("^{}.*", regex_escape(p))));
    (m.header_name.clone(), v.exact.clone(), pattern)
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if "\\.+*?()|[]{}^$".contains(c) {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect()
}

/// Creates or updates the canary copy of a stable Ingress: same rules with the backend
/// Service swapped for the canary Service, `canary: "true"`, the Rollout's extra
/// annotations, and `adjust` applied to the canary annotations.
fn ensure_canary_ingress(
    store: &Store,
    rollout: &Rollout,
    value: &Value,
    stable: &str,
    adjust: impl FnOnce(&mut BTreeMap<String, String>),
) -> Result<(), ReconcileError> {
    let ns = value["metadata"]["namespace"].as_str().unwrap_or("default");
    let name = value["metadata"]["name"].as_str().unwrap_or("");
    let canary = rollout.spec.strategy.canary.as_ref();
    let (Some(stable_ingress), Some(canary_service), Some(stable_service)) = (
        store.get(&key("Ingress", ns, stable)),
        canary.and_then(|c| c.canary_service.clone()),
        canary.and_then(|c| c.stable_service.clone()),
    ) else {
        return Ok(());
    };
    let canary_key = key("Ingress", ns, &canary_ingress_name(name, stable));
    let existing = store.get(&canary_key);
    let mut annotations = existing
        .as_ref()
        .map(|e| string_map(&e["metadata"]["annotations"]))
        .unwrap_or_default();
    annotations.insert(format!("{ANN}canary"), "true".into());
    annotations
        .entry(format!("{ANN}canary-weight"))
        .or_insert_with(|| "0".into());
    if let Some(extra) = canary
        .and_then(|c| c.traffic_routing.as_ref())
        .and_then(|t| t.nginx.as_ref())
    {
        for (k, v) in extra.additional_ingress_annotations.iter().flatten() {
            annotations.insert(format!("{ANN}{k}"), v.clone());
        }
        for (k, v) in extra.canary_ingress_annotations.iter().flatten() {
            annotations.insert(k.clone(), v.clone());
        }
    }
    adjust(&mut annotations);
    let mut spec = stable_ingress["spec"].clone();
    swap_backend(&mut spec, &stable_service, &canary_service);
    let desired = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": canary_key.name,
            "namespace": ns,
            "annotations": annotations,
            "ownerReferences": owner_reference(value),
        },
        "spec": spec,
    });
    match existing {
        None => ignore_exists(store.create(desired)),
        Some(current)
            if current["spec"] != desired["spec"]
                || current["metadata"]["annotations"] != desired["metadata"]["annotations"] =>
        {
            let patch = json!({"metadata": {"annotations": desired["metadata"]["annotations"]}, "spec": desired["spec"]});
            ignore_exists(store.patch(&canary_key, &patch, Subresource::Main))
        }
        Some(_) => Ok(()),
    }
}

/// Points every backend naming `from` at `to`, through rules and the default backend.
fn swap_backend(spec: &mut Value, from: &str, to: &str) {
    let swap = |backend: &mut Value| {
        if backend["service"]["name"] == from {
            backend["service"]["name"] = json!(to);
        }
    };
    if spec["defaultBackend"].is_object() {
        swap(&mut spec["defaultBackend"]);
    }
    for rule in spec["rules"].as_array_mut().into_iter().flatten() {
        for path in rule["http"]["paths"].as_array_mut().into_iter().flatten() {
            swap(&mut path["backend"]);
        }
    }
}

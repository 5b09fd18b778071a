//! Rollouts, with Argo Rollouts' rules (pkg/apis/rollouts/validation) and messages where
//! Argo has them.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::workloads::{selector_and_template, surge_and_unavailable};
use super::{Errors, names};
use crate::duration;
use crate::rollout::{
    BlueGreenStrategy, CanaryStep, CanaryStrategy, Rollout, RolloutAnalysis, RolloutSpec,
};

pub(super) fn rollout(ro: &Rollout, errs: &mut Errors) {
    let spec = &ro.spec;
    errs.non_negative("spec.replicas", spec.replicas);
    errs.non_negative("spec.minReadySeconds", spec.min_ready_seconds);
    errs.non_negative("spec.revisionHistoryLimit", spec.revision_history_limit);
    if let Some(deadline) = spec.progress_deadline_seconds
        && deadline <= spec.min_ready_seconds.unwrap_or(0)
    {
        errs.invalid(
            "spec.progressDeadlineSeconds",
            &deadline,
            "progressDeadlineSeconds must be greater than minReadySeconds",
        );
    }
    match (&spec.template, &spec.workload_ref) {
        (Some(_), Some(_)) => errs.forbidden(
            "spec.workloadRef",
            "template and workloadRef may not both be set",
        ),
        (None, Some(wr)) => {
            if wr.name.as_deref().is_none_or(str::is_empty) {
                errs.required("spec.workloadRef.name", "");
            }
            if let Some(kind) = wr.kind.as_deref().filter(|k| *k != "Deployment") {
                errs.unsupported("spec.workloadRef.kind", kind, &["Deployment"]);
            }
            if let Some(scale_down) = wr.scale_down.as_deref()
                && !matches!(scale_down, "never" | "onsuccess" | "progressively")
            {
                errs.unsupported(
                    "spec.workloadRef.scaleDown",
                    scale_down,
                    &["never", "onsuccess", "progressively"],
                );
            }
        }
        _ => selector_and_template(
            spec.selector.as_ref(),
            spec.template.as_ref(),
            "rollout",
            true,
            errs,
        ),
    }
    match (&spec.strategy.blue_green, &spec.strategy.canary) {
        (Some(_), Some(_)) => errs.invalid(
            "spec.strategy",
            "",
            "Multiple Strategies can not be listed: set exactly one of blueGreen or canary",
        ),
        (None, None) => errs.required(
            "spec.strategy",
            "a Rollout needs exactly one strategy: blueGreen or canary",
        ),
        (Some(bg), None) => blue_green(bg, errs),
        (None, Some(canary)) => self::canary(canary, errs),
    }
}

fn blue_green(bg: &BlueGreenStrategy, errs: &mut Errors) {
    let f = "spec.strategy.blueGreen";
    if bg.active_service.is_empty() {
        errs.required(
            format!("{f}.activeService"),
            "Rollout has missing field 'activeService'",
        );
    } else {
        errs.check(
            &format!("{f}.activeService"),
            &bg.active_service,
            names::dns1035_label(&bg.active_service),
        );
    }
    if let Some(preview) = &bg.preview_service {
        errs.check(
            &format!("{f}.previewService"),
            preview,
            names::dns1035_label(preview),
        );
        if *preview == bg.active_service {
            errs.invalid(
                format!("{f}.previewService"),
                preview,
                "This rollout uses the same service for the active and preview services, but \
                 two different services are required.",
            );
        }
    }
    errs.non_negative(
        &format!("{f}.previewReplicaCount"),
        bg.preview_replica_count,
    );
    errs.non_negative(
        &format!("{f}.autoPromotionSeconds"),
        bg.auto_promotion_seconds,
    );
    errs.non_negative(
        &format!("{f}.scaleDownDelaySeconds"),
        bg.scale_down_delay_seconds,
    );
    errs.non_negative(
        &format!("{f}.scaleDownDelayRevisionLimit"),
        bg.scale_down_delay_revision_limit,
    );
    errs.non_negative(
        &format!("{f}.abortScaleDownDelaySeconds"),
        bg.abort_scale_down_delay_seconds,
    );
    for (name, analysis) in [
        ("prePromotionAnalysis", &bg.pre_promotion_analysis),
        ("postPromotionAnalysis", &bg.post_promotion_analysis),
    ] {
        if let Some(analysis) = analysis {
            rollout_analysis(analysis, &format!("{f}.{name}"), errs);
        }
    }
}

fn canary(c: &CanaryStrategy, errs: &mut Errors) {
    let f = "spec.strategy.canary";
    for (name, svc) in [
        ("canaryService", &c.canary_service),
        ("stableService", &c.stable_service),
    ] {
        if let Some(svc) = svc {
            errs.check(&format!("{f}.{name}"), svc, names::dns1035_label(svc));
        }
    }
    if let (Some(canary), Some(stable)) = (&c.canary_service, &c.stable_service)
        && canary == stable
    {
        errs.invalid(
            format!("{f}.stableService"),
            stable,
            "This rollout uses the same service for the stable and canary services, but two \
             different services are required.",
        );
    }
    let routed = c.traffic_routing.is_some();
    if let Some(tr) = &c.traffic_routing {
        let t = format!("{f}.trafficRouting");
        if c.canary_service.is_none() || c.stable_service.is_none() {
            errs.required(
                format!("{f}.canaryService"),
                "traffic routing needs both canaryService and stableService",
            );
        }
        match &tr.nginx {
            None => errs.required(
                format!("{t}.nginx"),
                "Switchyard routes canary traffic through its ingress: set nginx.stableIngress",
            ),
            Some(nginx) => {
                let single = nginx.stable_ingress.as_deref().filter(|s| !s.is_empty());
                let many = nginx.stable_ingresses.as_deref().filter(|s| !s.is_empty());
                if single.is_none() && many.is_none() {
                    errs.required(format!("{t}.nginx.stableIngress"), "");
                }
                if single.is_some() && many.is_some() {
                    errs.forbidden(
                        format!("{t}.nginx.stableIngresses"),
                        "set either stableIngress or stableIngresses, not both",
                    );
                }
            }
        }
        let mut routes = Vec::new();
        for (i, route) in tr.managed_routes.iter().flatten().enumerate() {
            routes.push((format!("{t}.managedRoutes[{i}].name"), route.name.as_str()));
        }
        errs.unique(routes);
    }
    surge_and_unavailable(c.max_surge.as_ref(), c.max_unavailable.as_ref(), f, errs);
    errs.non_negative(
        &format!("{f}.scaleDownDelaySeconds"),
        c.scale_down_delay_seconds,
    );
    errs.non_negative(
        &format!("{f}.abortScaleDownDelaySeconds"),
        c.abort_scale_down_delay_seconds,
    );
    if c.dynamic_stable_scale == Some(true) {
        if !routed {
            errs.forbidden(
                format!("{f}.dynamicStableScale"),
                "dynamicStableScale requires trafficRouting",
            );
        }
        if c.scale_down_delay_seconds.is_some() {
            errs.forbidden(
                format!("{f}.scaleDownDelaySeconds"),
                "scaleDownDelaySeconds cannot be used with dynamicStableScale",
            );
        }
    }
    if let Some(min) = c.min_pods_per_replica_set {
        if !routed {
            errs.forbidden(
                format!("{f}.minPodsPerReplicaSet"),
                "minPodsPerReplicaSet requires trafficRouting",
            );
        }
        if min < 1 {
            errs.invalid(
                format!("{f}.minPodsPerReplicaSet"),
                &min,
                "must be at least 1",
            );
        }
    }
    if let Some(bg) = &c.analysis {
        let path = format!("{f}.analysis");
        rollout_analysis(
            &RolloutAnalysis {
                templates: bg.templates.clone(),
                args: bg.args.clone(),
                ..Default::default()
            },
            &path,
            errs,
        );
        let steps = c.steps.as_ref().map_or(0, Vec::len) as i32;
        if let Some(start) = bg.starting_step.filter(|s| *s < 0 || *s > steps) {
            errs.invalid(
                format!("{path}.startingStep"),
                &start,
                format!("must be between 0 and the number of steps ({steps})"),
            );
        }
    }
    let managed: Vec<&str> = c
        .traffic_routing
        .iter()
        .flat_map(|tr| tr.managed_routes.iter().flatten())
        .map(|r| r.name.as_str())
        .collect();
    for (i, step) in c.steps.iter().flatten().enumerate() {
        self::step(step, &format!("{f}.steps[{i}]"), routed, &managed, errs);
    }
}

fn step(step: &CanaryStep, path: &str, routed: bool, managed: &[&str], errs: &mut Errors) {
    let set = [
        step.set_weight.is_some(),
        step.pause.is_some(),
        step.analysis.is_some(),
        step.set_canary_scale.is_some(),
        step.set_header_route.is_some(),
    ]
    .into_iter()
    .filter(|s| *s)
    .count();
    if set != 1 {
        errs.invalid(
            path.to_string(),
            "",
            "Step must have exactly one of the following set: setWeight, pause, analysis, \
             setCanaryScale or setHeaderRoute",
        );
    }
    if let Some(weight) = step.set_weight.filter(|w| !(0..=100).contains(w)) {
        errs.invalid(
            format!("{path}.setWeight"),
            &weight,
            "SetWeight needs to be between 0 and 100",
        );
    }
    if let Some(duration) = step.pause.as_ref().and_then(|p| p.duration.as_ref()) {
        let field = format!("{path}.pause.duration");
        if let Err(message) = duration::parse_int_or_string(duration) {
            match duration {
                IntOrString::Int(n) => errs.invalid(field, n, message),
                IntOrString::String(s) => errs.invalid(field, s, message),
            }
        }
    }
    if let Some(analysis) = &step.analysis {
        rollout_analysis(analysis, &format!("{path}.analysis"), errs);
    }
    if let Some(scale) = &step.set_canary_scale {
        let p = format!("{path}.setCanaryScale");
        if !routed {
            errs.forbidden(
                p.clone(),
                "SetCanaryScale requires TrafficRouting to be set",
            );
        }
        let chosen = [
            scale.weight.is_some(),
            scale.replicas.is_some(),
            scale.match_traffic_weight == Some(true),
        ]
        .into_iter()
        .filter(|s| *s)
        .count();
        if chosen != 1 {
            errs.invalid(
                p.clone(),
                "",
                "set exactly one of weight, replicas or matchTrafficWeight",
            );
        }
        if let Some(w) = scale.weight.filter(|w| !(0..=100).contains(w)) {
            errs.invalid(format!("{p}.weight"), &w, "must be between 0 and 100");
        }
        errs.non_negative(&format!("{p}.replicas"), scale.replicas);
    }
    if let Some(route) = &step.set_header_route {
        let p = format!("{path}.setHeaderRoute");
        if !routed {
            errs.forbidden(
                p.clone(),
                "SetHeaderRoute requires TrafficRouting to be set",
            );
        }
        if route.name.is_empty() {
            errs.required(format!("{p}.name"), "");
        } else if !managed.contains(&route.name.as_str()) {
            errs.invalid(
                format!("{p}.name"),
                &route.name,
                "must be listed in spec.strategy.canary.trafficRouting.managedRoutes",
            );
        }
        for (i, m) in route.matches.iter().flatten().enumerate() {
            let mp = format!("{p}.match[{i}]");
            if m.header_name.is_empty() {
                errs.required(format!("{mp}.headerName"), "");
            }
            let v = &m.header_value;
            let kinds = [&v.exact, &v.prefix, &v.regex]
                .into_iter()
                .filter(|x| x.is_some())
                .count();
            if kinds != 1 {
                errs.invalid(
                    format!("{mp}.headerValue"),
                    "",
                    "set exactly one of exact, prefix or regex",
                );
            }
        }
    }
}

fn rollout_analysis(analysis: &RolloutAnalysis, path: &str, errs: &mut Errors) {
    let templates = analysis.templates.as_deref().unwrap_or_default();
    if templates.is_empty() {
        errs.required(
            format!("{path}.templates"),
            "at least one template is required",
        );
    }
    for (i, t) in templates.iter().enumerate() {
        if t.template_name.is_empty() {
            errs.required(format!("{path}.templates[{i}].templateName"), "");
        }
    }
    for (i, arg) in analysis.args.iter().flatten().enumerate() {
        let p = format!("{path}.args[{i}]");
        if arg.name.is_empty() {
            errs.required(format!("{p}.name"), "");
        }
        if let Some(from) = &arg.value_from {
            if arg.value.is_some() {
                errs.forbidden(
                    format!("{p}.valueFrom"),
                    "set either value or valueFrom, not both",
                );
            }
            if let Some(hash) = from.pod_template_hash_value.as_deref()
                && !matches!(hash, "Stable" | "Latest")
            {
                errs.unsupported(
                    format!("{p}.valueFrom.podTemplateHashValue"),
                    hash,
                    &["Latest", "Stable"],
                );
            }
        }
    }
}

/// Every AnalysisTemplate a Rollout refers to, with the field path of the reference.
pub(super) fn template_refs(spec: &RolloutSpec) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut add = |path: String, analysis: Option<&RolloutAnalysis>| {
        for (i, t) in analysis
            .and_then(|a| a.templates.as_ref())
            .into_iter()
            .flatten()
            .enumerate()
        {
            out.push((
                format!("{path}.templates[{i}].templateName"),
                t.template_name.clone(),
            ));
        }
    };
    if let Some(bg) = &spec.strategy.blue_green {
        let f = "spec.strategy.blueGreen";
        add(
            format!("{f}.prePromotionAnalysis"),
            bg.pre_promotion_analysis.as_ref(),
        );
        add(
            format!("{f}.postPromotionAnalysis"),
            bg.post_promotion_analysis.as_ref(),
        );
    }
    if let Some(c) = &spec.strategy.canary {
        let f = "spec.strategy.canary";
        let background = c.analysis.as_ref().map(|a| RolloutAnalysis {
            templates: a.templates.clone(),
            ..Default::default()
        });
        add(format!("{f}.analysis"), background.as_ref());
        for (i, step) in c.steps.iter().flatten().enumerate() {
            add(format!("{f}.steps[{i}].analysis"), step.analysis.as_ref());
        }
    }
    out.retain(|(_, name)| !name.is_empty());
    out
}

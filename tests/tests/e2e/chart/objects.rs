//! What single chart values turn on, rendered and checked object by
//! object: spreading and the budget, namespace scope, aggregated roles,
//! network policies and routes, monitoring, the Deployment's variables and
//! the CloudNativePG example.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

use super::{
    DEFAULTS, EVERYTHING_ON, NAMESPACE_SCOPED, VALUE_SETS, chart, find, kinds, objects, render,
};

fn env_of(deployment: &Value) -> Vec<(String, Value)> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|variable| {
            (
                variable["name"].as_str().unwrap_or_default().to_owned(),
                variable.clone(),
            )
        })
        .collect()
}

#[test]
fn the_deployment_spreads_replicas_and_a_budget_keeps_one() {
    let rendered = objects(&render(DEFAULTS));
    let deployment = find(&rendered, "Deployment", "demo-operator").expect("deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let selector = &deployment["spec"]["selector"]["matchLabels"];
    let anti =
        &pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(
        anti["podAffinityTerm"]["topologyKey"],
        "kubernetes.io/hostname"
    );
    assert_eq!(
        &anti["podAffinityTerm"]["labelSelector"]["matchLabels"],
        selector
    );
    assert_eq!(
        pod["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"],
        *selector
    );
    let budget = find(&rendered, "PodDisruptionBudget", "demo-operator").expect("a budget");
    assert_eq!(budget["spec"]["selector"]["matchLabels"], *selector);
    assert_eq!(budget["spec"]["minAvailable"], 1);
    assert_eq!(
        pod["containers"][0]["image"], "sluice:0.1.0",
        "the default image is what `docker build -t sluice:0.1.0 .` makes"
    );
    let env = env_of(deployment);
    let runner_image = env
        .iter()
        .find(|(name, _)| name == "SLUICE_RUNNER_IMAGE")
        .expect("runner image");
    assert_eq!(runner_image.1["value"], "sluice:0.1.0");

    let single = objects(&render(NAMESPACE_SCOPED));
    assert!(
        !kinds(&single).contains("PodDisruptionBudget"),
        "a budget over one replica would block every drain"
    );
    let custom = objects(&render(EVERYTHING_ON));
    let deployment = find(&custom, "Deployment", "demo-operator").expect("deployment");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example.com/platform/sluice:0.1.0-rc1"
    );
    assert_eq!(
        deployment["spec"]["template"]["spec"]["priorityClassName"],
        "sluice-operator"
    );
    assert!(
        pod.get("priorityClassName").is_none(),
        "no PriorityClass unless one is named"
    );
    let env = env_of(deployment);
    let runner_image = env
        .iter()
        .find(|(name, _)| name == "SLUICE_RUNNER_IMAGE")
        .expect("runner image");
    assert_eq!(
        runner_image.1["value"],
        "registry.example.com/platform/sluice-runner:0.1.0-rc1"
    );
    assert_eq!(
        find(&custom, "PodDisruptionBudget", "demo-operator").expect("budget")["spec"]["minAvailable"],
        2
    );
}

#[test]
fn namespace_scope_grants_roles_in_the_watched_namespaces_only() {
    let rendered = objects(&render(NAMESPACE_SCOPED));
    assert!(find(&rendered, "ClusterRole", "demo-operator").is_none());
    assert!(find(&rendered, "ClusterRoleBinding", "demo-operator").is_none());
    let in_namespace = |kind: &str| -> Vec<&str> {
        let mut namespaces: Vec<&str> = rendered
            .iter()
            .filter(|object| {
                object["kind"] == kind && object["metadata"]["name"] == "demo-operator"
            })
            .filter_map(|object| object["metadata"]["namespace"].as_str())
            .collect();
        namespaces.sort_unstable();
        namespaces
    };
    assert_eq!(in_namespace("Role"), ["growth", "payments"]);
    assert_eq!(in_namespace("RoleBinding"), ["growth", "payments"]);
    for watched in ["growth", "payments"] {
        let role = rendered
            .iter()
            .find(|object| {
                object["kind"] == "Role"
                    && object["metadata"]["name"] == "demo-operator"
                    && object["metadata"]["namespace"] == watched
            })
            .expect("a Role in the watched namespace");
        let namespace_rule = role["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .find(|rule| rule["resources"][0] == "namespaces")
            .expect("the namespace's own UID");
        assert_eq!(
            namespace_rule["resourceNames"],
            serde_json::json!([watched])
        );
        let binding = rendered
            .iter()
            .find(|object| {
                object["kind"] == "RoleBinding"
                    && object["metadata"]["name"] == "demo-operator"
                    && object["metadata"]["namespace"] == watched
            })
            .expect("a RoleBinding in the watched namespace");
        assert_eq!(binding["roleRef"]["name"], "demo-operator");
        assert_eq!(binding["subjects"][0]["namespace"], "sluice-system");
    }
    // The admission webhooks look at the watched namespaces only.
    for kind in [
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    ] {
        let webhooks = find(&rendered, kind, "demo-operator-admission").expect(kind);
        assert_eq!(
            webhooks["webhooks"][0]["namespaceSelector"]["matchExpressions"],
            serde_json::json!([{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["growth", "payments"]}]),
            "{kind}"
        );
        let everywhere = objects(&render(DEFAULTS));
        let webhooks = find(&everywhere, kind, "demo-operator-admission").expect(kind);
        assert!(
            webhooks["webhooks"][0]["namespaceSelector"].is_null(),
            "{kind}"
        );
    }
    assert!(
        find(&rendered, "Role", "demo-operator-leader")
            .is_some_and(|role| role["metadata"]["namespace"] == "sluice-system"),
        "the Lease and the token key live in the release namespace"
    );
    let deployment = find(&rendered, "Deployment", "demo-operator").expect("deployment");
    let env = env_of(deployment);
    let watched = env
        .iter()
        .find(|(name, _)| name == "SLUICE_WATCH_NAMESPACES")
        .expect("SLUICE_WATCH_NAMESPACES");
    assert_eq!(watched.1["value"], "growth,payments");
    let database = env
        .iter()
        .find(|(name, _)| name == "DATABASE_URL")
        .expect("DATABASE_URL");
    assert_eq!(
        database.1["valueFrom"]["secretKeyRef"]["name"],
        "sluice-db-app"
    );
    assert_eq!(database.1["valueFrom"]["secretKeyRef"]["key"], "uri");
    let test_role = find(&rendered, "Role", "demo-operator-test").expect("the helm test's Role");
    assert_eq!(
        test_role["metadata"]["namespace"], "growth",
        "the test's run goes where the operator looks"
    );

    let defaulted = objects(&render("rbac: {scope: namespace}"));
    let role = find(&defaulted, "Role", "demo-operator").expect("a Role");
    assert_eq!(role["metadata"]["namespace"], "sluice-system");
    let cluster_wide = objects(&render(DEFAULTS));
    let deployment = find(&cluster_wide, "Deployment", "demo-operator").expect("deployment");
    assert!(
        env_of(deployment)
            .iter()
            .all(|(name, _)| name != "SLUICE_WATCH_NAMESPACES")
    );
}

#[test]
fn aggregated_cluster_roles_extend_view_edit_and_admin() {
    let rendered = objects(&render(DEFAULTS));
    let aggregates = |name: &str| -> BTreeSet<String> {
        let role = find(&rendered, "ClusterRole", name).unwrap_or_else(|| panic!("{name}"));
        role["metadata"]["labels"]
            .as_object()
            .expect("labels")
            .iter()
            .filter(|(_, value)| *value == "true")
            .filter_map(|(key, _)| key.strip_prefix("rbac.authorization.k8s.io/aggregate-to-"))
            .map(str::to_owned)
            .collect()
    };
    let set = |names: &[&str]| {
        names
            .iter()
            .map(|name| (*name).to_owned())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(aggregates("sluice-view"), set(&["admin", "edit", "view"]));
    assert_eq!(aggregates("sluice-edit"), set(&["admin", "edit"]));
    assert_eq!(aggregates("sluice-admin"), set(&["admin"]));
    let view = find(&rendered, "ClusterRole", "sluice-view").expect("view");
    let verbs: BTreeSet<&str> = view["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .flat_map(|rule| rule["verbs"].as_array().expect("verbs").iter())
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        verbs,
        BTreeSet::from(["get", "list", "watch"]),
        "view only reads"
    );
}

#[test]
fn network_policies_ingress_and_http_route_point_at_the_right_ports() {
    let rendered = objects(&render(EVERYTHING_ON));
    let service = find(&rendered, "Service", "demo-operator").expect("service");
    let policy = find(&rendered, "NetworkPolicy", "demo-operator").expect("policy");
    let rules = policy["spec"]["ingress"].as_array().expect("rules");
    let rule_for = |port: &str| {
        rules
            .iter()
            .find(|rule| rule["ports"][0]["port"] == port)
            .unwrap_or_else(|| panic!("a rule for {port}"))
    };
    assert_eq!(
        rule_for("run-api")["from"][0]["podSelector"]["matchExpressions"][0]["key"],
        sluice_operator::run::job::RUN_LABEL,
        "the run API admits runner pods, which carry the run label"
    );
    assert_eq!(
        rule_for("webhooks")["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "ingress-nginx"
    );
    assert_eq!(
        rule_for("metrics")["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring"
    );
    let ingress = find(&rendered, "Ingress", "demo-operator").expect("ingress");
    let path = &ingress["spec"]["rules"][0]["http"]["paths"][0];
    assert_eq!(path["path"], "/hooks/");
    assert_eq!(
        path["backend"]["service"]["name"],
        service["metadata"]["name"]
    );
    assert_eq!(path["backend"]["service"]["port"]["name"], "webhooks");
    let route = find(&rendered, "HTTPRoute", "demo-operator").expect("route");
    assert_eq!(route["spec"]["parentRefs"][0]["name"], "public");
    let backend = &route["spec"]["rules"][0]["backendRefs"][0];
    let webhooks_port = service["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|port| port["name"] == "webhooks")
        .expect("webhooks port");
    assert_eq!(backend["port"], webhooks_port["port"]);
    assert_eq!(
        route["spec"]["rules"][0]["matches"][0]["path"]["value"],
        "/hooks/"
    );
    let defaults = kinds(&objects(&render(DEFAULTS)));
    for optional in [
        "NetworkPolicy",
        "Ingress",
        "HTTPRoute",
        "ServiceMonitor",
        "PrometheusRule",
    ] {
        assert!(!defaults.contains(optional), "{optional} is off by default");
    }
}

/// Metric names (`sluice_…`) in `text`, without the `_total`/`_bucket`/… suffix.
fn metric_families(text: &str) -> BTreeSet<String> {
    let pattern = sluice_words(text);
    pattern
        .into_iter()
        .map(|name| {
            ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(&name)
                .to_owned()
        })
        .collect()
}

fn sluice_words(text: &str) -> Vec<String> {
    text.split(|character: char| !(character.is_ascii_alphanumeric() || character == '_'))
        .filter(|word| word.starts_with("sluice_") && word.len() > "sluice_".len())
        .map(str::to_owned)
        .collect()
}

#[test]
fn monitoring_watches_metrics_the_operator_exports() {
    let rendered = objects(&render(EVERYTHING_ON));
    let service = find(&rendered, "Service", "demo-operator").expect("service");
    let monitor = find(&rendered, "ServiceMonitor", "demo-operator").expect("monitor");
    for (key, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("selector")
    {
        assert_eq!(
            &service["metadata"]["labels"][key], value,
            "the monitor selects the Service"
        );
    }
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(
        monitor["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );

    // Families without samples are not rendered: give each one a sample.
    let metrics = sluice_operator::telemetry::Metrics::new();
    metrics.reconciled("workflow");
    metrics.reconcile_failed("run", "Conflict");
    metrics.run_finished("Succeeded", Some(1.0));
    metrics.schedule_fired(0.1);
    metrics.webhook_request("accepted");
    let exported = metrics.render();
    let exported: BTreeSet<String> = exported
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    let rule = find(&rendered, "PrometheusRule", "demo-operator").expect("rule");
    let alerts = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .expect("rules");
    let names: BTreeSet<&str> = alerts
        .iter()
        .filter_map(|alert| alert["alert"].as_str())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "SluiceMirrorBacklog",
            "SluiceMirrorDown",
            "SluiceNoLeader",
            "SluiceRunsFailing",
            "SluiceScheduleLag",
        ])
    );
    for alert in alerts {
        let used = metric_families(alert["expr"].as_str().expect("expr"));
        assert!(!used.is_empty(), "{alert}");
        for family in used {
            assert!(
                exported.contains(&family),
                "alert {} uses {family}, which the operator does not export ({exported:?})",
                alert["alert"]
            );
        }
    }
    let dashboard_map = find(&rendered, "ConfigMap", "demo-operator-dashboard").expect("dashboard");
    assert_eq!(
        dashboard_map["metadata"]["labels"]["grafana_dashboard"],
        "1"
    );
    let dashboard: Value =
        serde_json::from_str(dashboard_map["data"]["sluice.json"].as_str().expect("json"))
            .expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8);
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            for family in metric_families(target["expr"].as_str().expect("expr")) {
                assert!(
                    exported.contains(&family),
                    "panel {} uses {family}, which the operator does not export",
                    panel["title"]
                );
            }
        }
    }
}

#[test]
fn the_deployment_sets_only_variables_the_operator_reads() {
    sluice_e2e::operator::ensure_binaries().expect("build sluice-operator");
    let help =
        Command::new(sluice_e2e::binaries::locate(sluice_e2e::binaries::Binary::Operator).unwrap())
            .arg("--help")
            .output()
            .expect("run sluice-operator --help");
    let help = String::from_utf8_lossy(&help.stdout);
    for (name, values) in VALUE_SETS {
        let rendered = objects(&render(values));
        let deployment = find(&rendered, "Deployment", "demo-operator").expect("deployment");
        let set: Vec<String> = env_of(deployment)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert!(set.len() >= 7, "{name}: {set:?}");
        for variable in set {
            let known = help.contains(&format!("env: {variable}="))
                || help.contains(&format!("env: {variable}]"))
                || variable == "RUST_LOG";
            assert!(
                known,
                "value set {name}: the chart sets {variable}, which sluice-operator does not read (see sluice-operator --help)"
            );
        }
    }
}

#[test]
fn the_cloudnative_pg_example_makes_the_secret_the_chart_reads() {
    let path = chart().join("examples/cloudnative-pg.yaml");
    let text = std::fs::read_to_string(&path).expect("the CloudNativePG example");
    let cluster: Value = serde_saphyr::from_str(&text).expect("YAML");
    assert_eq!(cluster["apiVersion"], "postgresql.cnpg.io/v1");
    assert_eq!(cluster["kind"], "Cluster");
    let name = cluster["metadata"]["name"].as_str().expect("name");
    assert_eq!(cluster["spec"]["bootstrap"]["initdb"]["owner"], "sluice");
    // CloudNativePG writes the application user's credentials to
    // <cluster>-app, with the connection URI under `uri`.
    let set = format!("--set database.secretName={name}-app --set database.secretKey=uri");
    assert!(text.contains(&set), "the example's instructions say {set}");
    let rendered = objects(&render(&format!(
        "database: {{secretName: {name}-app, secretKey: uri}}"
    )));
    let deployment = find(&rendered, "Deployment", "demo-operator").expect("deployment");
    let database = env_of(deployment)
        .into_iter()
        .find(|(name, _)| name == "DATABASE_URL")
        .expect("DATABASE_URL");
    assert_eq!(
        database.1["valueFrom"]["secretKeyRef"]["name"],
        format!("{name}-app")
    );
}

#[test]
fn leader_election_timings_and_extra_variables_reach_the_operator() {
    let value_of = |env: &[(String, Value)], name: &str| {
        env.iter()
            .find(|(variable, _)| variable == name)
            .map(|(_, entry)| entry.clone())
            .unwrap_or_else(|| panic!("{name} is set"))
    };
    // By default the renew deadline and retry period are left to the
    // operator, which derives them from the lease duration.
    let defaults = objects(&render(DEFAULTS));
    let env = env_of(find(&defaults, "Deployment", "demo-operator").expect("deployment"));
    assert_eq!(value_of(&env, "SLUICE_LEASE_DURATION")["value"], "15s");
    assert!(
        env.iter()
            .all(|(name, _)| name != "SLUICE_LEASE_RENEW_DEADLINE"
                && name != "SLUICE_LEASE_RETRY_PERIOD"),
        "{env:?}"
    );

    let custom = objects(&render(EVERYTHING_ON));
    let env = env_of(find(&custom, "Deployment", "demo-operator").expect("deployment"));
    for (name, value) in [
        ("SLUICE_LEASE_DURATION", "30s"),
        ("SLUICE_LEASE_RENEW_DEADLINE", "20s"),
        ("SLUICE_LEASE_RETRY_PERIOD", "4s"),
        ("SLUICE_RECONCILE_CONCURRENCY", "32"),
    ] {
        assert_eq!(value_of(&env, name)["value"], value, "{name}");
    }
    assert_eq!(
        value_of(&env, "SLUICE_OUTPUT_CAP_BYTES")["valueFrom"]["configMapKeyRef"]["key"],
        "outputCap"
    );
}

#[test]
fn the_console_gets_a_port_and_review_rights_only_with_a_database() {
    let ports = |objects: &[Value], kind: &str, path: &str| -> Vec<String> {
        let object = find(objects, kind, "demo-operator").expect(kind);
        object
            .pointer(path)
            .and_then(Value::as_array)
            .expect("ports")
            .iter()
            .filter_map(|port| port["name"].as_str().map(str::to_owned))
            .collect()
    };
    let container_ports = "/spec/template/spec/containers/0/ports";
    let with_database = objects(&render(
        "database: {secretName: pg-app}\nconsole: {sessionTTL: 2h}",
    ));
    assert!(ports(&with_database, "Service", "/spec/ports").contains(&"console".to_owned()));
    assert!(ports(&with_database, "Deployment", container_ports).contains(&"console".to_owned()));
    let env = env_of(find(&with_database, "Deployment", "demo-operator").expect("deployment"));
    let value = |name: &str| {
        env.iter()
            .find(|(variable, _)| variable == name)
            .map(|(_, entry)| entry["value"].clone())
            .unwrap_or_else(|| panic!("{name} is set"))
    };
    assert_eq!(value("SLUICE_CONSOLE_ADDR"), "0.0.0.0:8083");
    assert_eq!(value("SLUICE_CONSOLE_SESSION_TTL"), "2h");
    let role = find(&with_database, "ClusterRole", "demo-operator-console").expect("console role");
    let resources: Vec<String> = role["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .flat_map(|rule| rule["resources"].as_array().cloned().unwrap_or_default())
        .filter_map(|resource| resource.as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        resources,
        ["tokenreviews", "subjectaccessreviews", "users", "groups"]
    );
    let impersonate = role["rules"][2]["verbs"].clone();
    assert_eq!(impersonate, serde_json::json!(["impersonate"]));

    for values in [
        DEFAULTS,
        "database: {secretName: pg-app}\nconsole: {enabled: false}",
    ] {
        let rendered = objects(&render(values));
        assert!(!ports(&rendered, "Service", "/spec/ports").contains(&"console".to_owned()));
        assert!(find(&rendered, "ClusterRole", "demo-operator-console").is_none());
    }
}

#[test]
fn the_operator_may_read_rolebindings_wherever_it_watches() {
    let reads_rolebindings = |role: &Value| {
        role["rules"].as_array().expect("rules").iter().any(|rule| {
            rule["apiGroups"] == serde_json::json!(["rbac.authorization.k8s.io"])
                && rule["resources"] == serde_json::json!(["rolebindings"])
                && rule["verbs"] == serde_json::json!(["get", "list", "watch"])
        })
    };
    let cluster = objects(&render(DEFAULTS));
    assert!(reads_rolebindings(
        find(&cluster, "ClusterRole", "demo-operator").expect("the operator's ClusterRole")
    ));
    let namespaced = objects(&render(NAMESPACE_SCOPED));
    let roles: Vec<&Value> = namespaced
        .iter()
        .filter(|object| object["kind"] == "Role" && object["metadata"]["name"] == "demo-operator")
        .collect();
    assert_eq!(roles.len(), 2);
    assert!(roles.into_iter().all(reads_rolebindings));
}

/// The membership mirror's `user_roles` rows and its reading of the
/// built-in roles follow the chart's ClusterRoles: each Sluice role's
/// permissions are exactly its rules, and a binding to `view`, `edit` or
/// `admin` counts as the highest Sluice role aggregated into it.
#[test]
fn mirrored_roles_match_the_charts_cluster_roles() {
    use k8s_openapi::api::rbac::v1::RoleRef;
    use sluice_operator::membership::plan::role_granted;
    use sluice_operator::mirror::MemberRole;
    use sluice_operator::mirror::membership::permissions;
    let rendered = objects(&render(DEFAULTS));
    let strings = |value: &Value| -> Vec<String> {
        value
            .as_array()
            .expect("a list")
            .iter()
            .filter_map(|item| item.as_str().map(str::to_owned))
            .collect()
    };
    let reference = |name: &str| RoleRef {
        api_group: "rbac.authorization.k8s.io".to_owned(),
        kind: "ClusterRole".to_owned(),
        name: name.to_owned(),
    };
    let mut aggregated: Vec<(String, MemberRole)> = Vec::new();
    for role in MemberRole::ALL {
        let cluster_role =
            find(&rendered, "ClusterRole", role.role_name()).expect("the Sluice ClusterRole");
        let mut granted: BTreeSet<String> = BTreeSet::new();
        for rule in cluster_role["rules"].as_array().expect("rules") {
            assert_eq!(strings(&rule["apiGroups"]), ["sluice.dev"]);
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    granted.insert(format!("{resource}:{verb}"));
                }
            }
        }
        let mirrored: BTreeSet<String> = strings(&permissions(role)).into_iter().collect();
        assert_eq!(mirrored, granted, "{}", role.role_name());
        assert_eq!(role_granted(&reference(role.role_name())), Some(role));
        for (label, value) in cluster_role["metadata"]["labels"]
            .as_object()
            .expect("labels")
        {
            if let Some(built_in) = label.strip_prefix("rbac.authorization.k8s.io/aggregate-to-")
                && value == "true"
            {
                aggregated.push((built_in.to_owned(), role));
            }
        }
    }
    for built_in in ["view", "edit", "admin"] {
        let highest = aggregated
            .iter()
            .filter(|(name, _)| name == built_in)
            .map(|(_, role)| *role)
            .max();
        assert_eq!(role_granted(&reference(built_in)), highest, "{built_in}");
    }
}

#[test]
fn the_operator_reads_plans_in_either_scope_and_gets_the_default_plan() {
    let reads_plans = |rendered: &[Value]| {
        let role = find(rendered, "ClusterRole", "demo-operator-plans").expect("the plans role");
        assert_eq!(
            role["rules"],
            serde_json::json!([{"apiGroups": ["sluice.dev"], "resources": ["plans"], "verbs": ["get", "list", "watch"]}])
        );
        let binding =
            find(rendered, "ClusterRoleBinding", "demo-operator-plans").expect("its binding");
        assert_eq!(binding["roleRef"]["name"], "demo-operator-plans");
        assert_eq!(binding["subjects"][0]["name"], "demo-operator");
    };
    reads_plans(&objects(&render(DEFAULTS)));
    reads_plans(&objects(&render(NAMESPACE_SCOPED)));
    let default_plan = |values: &str| {
        let rendered = objects(&render(values));
        let deployment = find(&rendered, "Deployment", "demo-operator").expect("deployment");
        env_of(deployment)
            .into_iter()
            .find(|(name, _)| name == "SLUICE_DEFAULT_PLAN")
            .map(|(_, value)| value["value"].clone())
    };
    assert_eq!(default_plan(DEFAULTS), None);
    assert_eq!(
        default_plan("quotas: {defaultPlan: free}\n"),
        Some(serde_json::json!("free"))
    );
}

//! The webhook router driven in-process (tower `oneshot`) over the
//! in-memory backend: what is answered and what is created.

use super::auth::sign_hex;
use super::memory::MemoryBackend;
use super::server::{Settings, WebhookServer, router};
use crate::telemetry::Metrics;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use sluice_crds::common::SecretKeyReference;
use sluice_crds::workflow::{
    RateLimit, SignatureFormat, TriggerSpec, WebhookAuth, WebhookAuthType, WebhookResponse,
    WebhookTrigger,
};
use sluice_crds::workflow_run::TriggerType;
use sluice_crds::{NodeSpec, Workflow};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

const KEY: &[u8] = b"hook-key-1";

fn trigger(name: &str, change: impl FnOnce(&mut WebhookTrigger)) -> TriggerSpec {
    let mut webhook = WebhookTrigger {
        auth: WebhookAuth {
            type_: None,
            secret_ref: SecretKeyReference {
                name: "hooks".to_owned(),
                key: "key".to_owned(),
            },
            header: None,
            signature_format: None,
        },
        ..WebhookTrigger::default()
    };
    change(&mut webhook);
    TriggerSpec {
        name: name.to_owned(),
        enabled: None,
        webhook,
    }
}

struct Harness {
    backend: Arc<MemoryBackend>,
    metrics: Arc<Metrics>,
    router: axum::Router,
}

fn harness(triggers: Vec<TriggerSpec>) -> Harness {
    let backend = Arc::new(MemoryBackend::default());
    backend.put_workflow(
        Workflow::fixture("orders")
            .with_node(NodeSpec::transform("a", ".input"))
            .with_spec(|spec| spec.triggers = triggers),
    );
    backend.put_secret("default", "hooks", "key", b"hook-key-1\n");
    let metrics = Arc::new(Metrics::new());
    let server = WebhookServer::new(
        backend.clone(),
        Some(metrics.clone()),
        Settings {
            poll_interval: Duration::from_millis(5),
            ..Settings::default()
        },
    );
    Harness {
        backend,
        metrics,
        router: router(Arc::new(server)),
    }
}

fn github(path: &str, body: &str, key: &[u8]) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .header(
            "x-hub-signature-256",
            format!("sha256={}", sign_hex(key, body.as_bytes())),
        )
        .header("authorization", "Basic should-not-be-kept")
        .header("x-delivery", "d-1")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

async fn send(harness: &Harness, request: Request<Body>) -> (StatusCode, Value) {
    let response = harness.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_valid_signature_creates_a_run_with_the_body_as_input() {
    let harness = harness(vec![trigger("push", |_| {})]);
    let body = r#"{"order": 42}"#;
    let (status, answer) = send(
        &harness,
        github("/hooks/default/orders/push?source=shop", body, KEY),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let runs = harness.backend.runs();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(answer, json!({"run": run.metadata.name.clone().unwrap()}));
    assert_eq!(run.metadata.generate_name.as_deref(), Some("orders-"));
    assert_eq!(run.spec.workflow_ref.name, "orders");
    assert_eq!(run.spec.input, Some(json!({"order": 42})));
    let trigger = run.spec.trigger.as_ref().unwrap();
    assert_eq!(
        (trigger.type_, trigger.source.as_deref()),
        (TriggerType::Webhook, Some("push"))
    );
    let data = trigger.data.as_ref().unwrap();
    assert_eq!(data["body"], json!({"order": 42}));
    assert_eq!(data["query"], json!({"source": "shop"}));
    assert_eq!(data["headers"]["x-delivery"], "d-1");
    assert!(data["headers"].get("authorization").is_none());
    assert!(data["headers"].get("x-hub-signature-256").is_none());
    assert!(
        harness
            .metrics
            .render()
            .contains(r#"sluice_webhook_requests_total{outcome="accepted"} 1"#)
    );
}

#[tokio::test]
async fn a_wrong_signature_gets_401_and_creates_nothing() {
    let harness = harness(vec![trigger("push", |_| {})]);
    let (status, answer) = send(
        &harness,
        github("/hooks/default/orders/push", "{}", b"wrong"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!answer.to_string().contains("hook-key-1"));
    let unsigned = Request::post("/hooks/default/orders/push")
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(send(&harness, unsigned).await.0, StatusCode::UNAUTHORIZED);
    assert!(harness.backend.runs().is_empty());
}

#[tokio::test]
async fn an_oversized_body_gets_413() {
    let harness = harness(vec![trigger("push", |webhook| {
        webhook.max_body_bytes = Some(16)
    })]);
    let body = format!(r#"{{"pad": "{}"}}"#, "x".repeat(64));
    assert_eq!(
        send(&harness, github("/hooks/default/orders/push", &body, KEY))
            .await
            .0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    // Without Content-Length (chunked), the limit still holds while reading.
    let streamed = Request::post("/hooks/default/orders/push")
        .header(
            "x-hub-signature-256",
            format!("sha256={}", sign_hex(KEY, body.as_bytes())),
        )
        .body(Body::from_stream(futures::stream::iter(vec![Ok::<
            _,
            std::io::Error,
        >(
            body.clone(),
        )])))
        .unwrap();
    assert_eq!(
        send(&harness, streamed).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert!(harness.backend.runs().is_empty());
}

#[tokio::test]
async fn a_burst_over_the_rate_limit_gets_429_for_the_excess() {
    let harness = harness(vec![trigger("push", |webhook| {
        webhook.rate_limit = Some(RateLimit {
            per_minute: 60,
            burst: Some(5),
        })
    })]);
    let mut statuses = vec![];
    for _ in 0..8 {
        statuses.push(
            send(&harness, github("/hooks/default/orders/push", "{}", KEY))
                .await
                .0,
        );
    }
    let accepted = statuses
        .iter()
        .filter(|s| **s == StatusCode::ACCEPTED)
        .count();
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((accepted, limited), (5, 3), "{statuses:?}");
    assert_eq!(harness.backend.runs().len(), 5);
}

#[tokio::test]
async fn sync_mode_answers_with_the_run_output() {
    let harness = harness(vec![trigger("ask", |webhook| {
        webhook.response = Some(WebhookResponse::Sync)
    })]);
    harness.backend.finish_runs_with(json!({"answer": 42}));
    let (status, answer) = send(&harness, github("/hooks/default/orders/ask", "{}", KEY)).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({"answer": 42})));
}

#[tokio::test]
async fn sync_mode_answers_202_when_the_timeout_passes() {
    let harness = harness(vec![trigger("ask", |webhook| {
        webhook.response = Some(WebhookResponse::Sync);
        webhook.timeout = Some(sluice_crds::Duration::parse("50ms").unwrap());
    })]);
    let (status, answer) = send(&harness, github("/hooks/default/orders/ask", "{}", KEY)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(answer["run"].as_str().unwrap().starts_with("orders-"));
}

#[tokio::test]
async fn a_stale_slack_timestamp_gets_401() {
    let harness = harness(vec![trigger("slash", |webhook| {
        webhook.auth.signature_format = Some(SignatureFormat::Slack);
    })]);
    let slack = |timestamp: i64| {
        let body = "text=hi";
        let signature = sign_hex(KEY, format!("v0:{timestamp}:{body}").as_bytes());
        Request::post("/hooks/default/orders/slash")
            .header("x-slack-signature", format!("v0={signature}"))
            .header("x-slack-request-timestamp", timestamp.to_string())
            .body(Body::from(body))
            .unwrap()
    };
    let now = chrono::Utc::now().timestamp();
    assert_eq!(
        send(&harness, slack(now - 600)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert!(harness.backend.runs().is_empty());
    assert_eq!(send(&harness, slack(now)).await.0, StatusCode::ACCEPTED);
    let run = &harness.backend.runs()[0];
    assert_eq!(run.spec.input, None, "a form body is not JSON input");
    assert_eq!(
        run.spec.trigger.as_ref().unwrap().data.as_ref().unwrap()["body"],
        "text=hi"
    );
}

#[tokio::test]
async fn bearer_tokens_authenticate() {
    let harness = harness(vec![trigger("bear", |webhook| {
        webhook.auth.type_ = Some(WebhookAuthType::Bearer)
    })]);
    let request = |token: &str| {
        Request::post("/hooks/default/orders/bear")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(
        send(&harness, request("nope")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&harness, request("hook-key-1")).await.0,
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn unknown_disabled_or_suspended_targets_get_404() {
    let mut disabled = trigger("off", |_| {});
    disabled.enabled = Some(false);
    let harness = harness(vec![trigger("push", |_| {}), disabled]);
    for path in [
        "/hooks/default/orders/nope",
        "/hooks/default/orders/off",
        "/hooks/default/missing/push",
        "/hooks/other/orders/push",
    ] {
        assert_eq!(
            send(&harness, github(path, "{}", KEY)).await.0,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    harness
        .backend
        .put_workflow(Workflow::fixture("orders").with_spec(|spec| {
            spec.suspend = Some(true);
            spec.triggers = vec![trigger("push", |_| {})];
        }));
    assert_eq!(
        send(&harness, github("/hooks/default/orders/push", "{}", KEY))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert!(harness.backend.runs().is_empty());
}

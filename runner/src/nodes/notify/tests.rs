//! `notify` tests for Slack and webhooks, against axum servers on 127.0.0.1
//! (email: see `smtp_tests.rs`).

use super::NotifyNode;
use crate::node::{Node, NodeContext, NodeError};
use crate::nodes::http::testing::{
    RecordedLogs, attempt, closed_port_url, connections, context, serve,
};
use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};
use sluice_crds::ConnectionType;
use std::sync::{Arc, Mutex};

async fn run(context: &NodeContext, params: Value) -> Result<Value, NodeError> {
    NotifyNode.execute(params, &attempt(), context).await
}

type Received = Arc<Mutex<Vec<(Option<String>, Value)>>>;

/// Records each POSTed JSON body and its Authorization header; answers
/// `status` with `answer`.
async fn webhook_server(status: StatusCode, answer: &'static str) -> (String, Received) {
    let received: Received = Arc::default();
    let recorder = Arc::clone(&received);
    let router = Router::new().route(
        "/{*path}",
        post(
            move |headers: HeaderMap, axum::Json(body): axum::Json<Value>| {
                let recorder = Arc::clone(&recorder);
                async move {
                    let authorization = headers
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_owned());
                    recorder.lock().unwrap().push((authorization, body));
                    (status, answer)
                }
            },
        ),
    );
    (serve(router).await, received)
}

#[tokio::test]
async fn slack_posts_text_and_payload_to_the_secret_webhook() {
    let (base, received) = webhook_server(StatusCode::OK, "ok").await;
    let webhook = format!("{base}/services/T0/B0/CANARY-slack-hook");
    let connections = connections(&[(
        "alerts",
        ConnectionType::Slack,
        &[],
        &[("webhookUrl", &webhook)],
    )]);
    let logs = Arc::new(RecordedLogs::default());
    let context = context(&connections, Arc::clone(&logs));
    let output = run(
        &context,
        json!({"connection": "alerts", "text": "VIP signup: Ada", "payload": {"blocks": [{"type": "divider"}]}}),
    )
    .await
    .unwrap();
    assert_eq!(
        output,
        json!({"delivered": true, "channel": "slack", "status": 200, "response": "ok"})
    );
    assert_eq!(
        received.lock().unwrap()[0].1,
        json!({"text": "VIP signup: Ada", "blocks": [{"type": "divider"}]})
    );
    assert!(!format!("{output} {:?}", logs.0.lock().unwrap()).contains("CANARY"));
}

#[tokio::test]
async fn slack_failures_are_classified_and_never_show_the_webhook_url() {
    for (status, answer, retryable) in [
        (StatusCode::NOT_FOUND, "no_service", false),
        (StatusCode::INTERNAL_SERVER_ERROR, "oops", true),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited", true),
    ] {
        let (base, _) = webhook_server(status, answer).await;
        let webhook = format!("{base}/services/T0/B0/CANARY-slack-hook");
        let connections = connections(&[(
            "alerts",
            ConnectionType::Slack,
            &[],
            &[("webhookUrl", &webhook)],
        )]);
        let context = context(&connections, Arc::default());
        let error = run(&context, json!({"connection": "alerts", "text": "hi"}))
            .await
            .unwrap_err();
        assert_eq!(error.retryable, retryable, "{error:?}");
        assert!(
            error.message.contains(answer) && !error.message.contains("CANARY"),
            "{}",
            error.message
        );
    }
    let webhook = format!(
        "{}/services/T0/B0/CANARY-slack-hook",
        closed_port_url().await
    );
    let connections = connections(&[(
        "alerts",
        ConnectionType::Slack,
        &[],
        &[("webhookUrl", &webhook)],
    )]);
    let context = context(&connections, Arc::default());
    let error = run(&context, json!({"connection": "alerts", "text": "hi"}))
        .await
        .unwrap_err();
    assert!(
        error.retryable && !error.message.contains("CANARY"),
        "{error:?}"
    );
}

#[tokio::test]
async fn http_webhooks_carry_subject_payload_and_connection_auth() {
    let (base, received) = webhook_server(StatusCode::ACCEPTED, "queued").await;
    let hook = format!("{base}/hooks/ops");
    let connections = connections(&[(
        "ops",
        ConnectionType::Http,
        &[("baseUrl", &hook), ("auth", "bearer")],
        &[("token", "CANARY-webhook-token")],
    )]);
    let context = context(&connections, Arc::default());
    let output = run(
        &context,
        json!({"connection": "ops", "text": "disk full", "subject": "alert", "payload": {"severity": "high"}}),
    )
    .await
    .unwrap();
    assert_eq!(output["status"], 202);
    assert_eq!(output["channel"], "webhook");
    let (authorization, body) = received.lock().unwrap()[0].clone();
    assert_eq!(
        authorization.as_deref(),
        Some("Bearer CANARY-webhook-token")
    );
    assert_eq!(
        body,
        json!({"text": "disk full", "subject": "alert", "severity": "high"})
    );

    let wrong = self::connections(&[("db", ConnectionType::Postgres, &[], &[])]);
    let context = self::context(&wrong, Arc::default());
    let error = run(&context, json!({"connection": "db", "text": "x"}))
        .await
        .unwrap_err();
    assert!(
        !error.retryable && error.message.contains("slack, http or smtp"),
        "{error:?}"
    );
}

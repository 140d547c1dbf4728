//! The connections page: each Connection of a namespace, read from the API
//! server as the signed-in user (impersonation, so their RBAC decides), with
//! its type, `Ready` and `Verified` conditions and last probe. The view is
//! built from named fields only: it never carries the Secret's data, nor
//! `spec.config` values (only their keys), so nothing secret can reach the
//! page even from a misfiled setting.

use super::actions::{NamespaceQuery, list_as};
use super::server::{ConsoleError, ConsoleState, SignedIn};
use axum::Json;
use axum::extract::{Query, State};
use serde_json::{Value, json};
use std::sync::Arc;

fn condition(connection: &Value, kind: &str) -> Value {
    connection
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|conditions| {
            conditions
                .iter()
                .find(|condition| condition["type"] == kind)
        })
        .map_or(Value::Null, |condition| {
            json!({
                "status": condition.get("status"),
                "reason": condition.get("reason"),
                "message": condition.get("message"),
                "lastTransitionTime": condition.get("lastTransitionTime"),
            })
        })
}

/// One Connection object as the page shows it.
pub fn build_connection_view(connection: &Value) -> Value {
    let config_keys: Vec<&String> = connection
        .pointer("/spec/config")
        .and_then(Value::as_object)
        .map(|config| config.keys().collect())
        .unwrap_or_default();
    json!({
        "name": connection.pointer("/metadata/name"),
        "type": connection.pointer("/spec/type"),
        "configKeys": config_keys,
        "secretName": connection.pointer("/spec/secretRef/name"),
        "probed": connection.pointer("/spec/verify").is_some(),
        "ready": condition(connection, "Ready"),
        "verified": condition(connection, "Verified"),
        "lastProbe": connection.pointer("/status/lastVerifiedTime"),
        "oauth2": connection.pointer("/spec/oauth2").map(|spec| json!({
            "grant": spec.get("grant").cloned().unwrap_or(json!("ClientCredentials")),
            "provider": spec.get("provider").cloned().unwrap_or(json!("custom")),
            "authorized": condition(connection, "Authorized"),
            "expiresAt": connection.pointer("/status/oauth2/expiresAt"),
            "lastRefreshTime": connection.pointer("/status/oauth2/lastRefreshTime"),
        })),
    })
}

/// `GET /api/connections?namespace=`: the namespace's Connections, as the user.
pub async fn list_connections(
    State(state): State<Arc<ConsoleState>>,
    signed_in: SignedIn,
    Query(query): Query<NamespaceQuery>,
) -> Result<Json<Value>, ConsoleError> {
    let items = list_as(&state, &signed_in, &query.namespace, "connections").await?;
    let connections: Vec<Value> = items.iter().map(build_connection_view).collect();
    Ok(Json(json!({ "connections": connections })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_view_has_its_state_and_no_setting_or_secret_value() {
        let connection = json!({
            "metadata": {"name": "crm", "annotations": {"note": "annotation-canary"}},
            "spec": {"type": "http", "config": {"baseUrl": "https://user:config-canary@crm"},
                     "secretRef": {"name": "crm-token"}, "verify": {"url": "/health"}},
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": "SecretFound", "message": "ok"},
                    {"type": "Verified", "status": "False", "reason": "ProbeFailed", "message": "503"},
                ],
                "lastVerifiedTime": "2026-03-01T09:00:00Z",
            },
        });
        let view = build_connection_view(&connection);
        assert_eq!(view["type"], "http");
        assert_eq!(view["ready"]["status"], "True");
        assert_eq!(view["verified"]["status"], "False");
        assert_eq!(view["verified"]["reason"], "ProbeFailed");
        assert_eq!(view["lastProbe"], "2026-03-01T09:00:00Z");
        assert_eq!(view["configKeys"], json!(["baseUrl"]));
        assert_eq!(view["secretName"], "crm-token");
        let text = view.to_string();
        assert!(!text.contains("canary"), "{text}");
        assert_eq!(view["oauth2"], Value::Null);
    }

    #[test]
    fn an_oauth2_connection_view_has_its_grant_and_token_times() {
        let connection = json!({
            "metadata": {"name": "crm"},
            "spec": {"type": "http", "secretRef": {"name": "crm-client"},
                     "oauth2": {"provider": "hubspot", "grant": "AuthorizationCode"}},
            "status": {
                "conditions": [{"type": "Authorized", "status": "False", "reason": "AuthorizationRequired", "message": "click Connect"}],
                "oauth2": {"expiresAt": "2026-03-01T10:00:00Z", "lastRefreshTime": "2026-03-01T09:00:00Z"},
            },
        });
        let view = build_connection_view(&connection);
        assert_eq!(view["oauth2"]["grant"], "AuthorizationCode");
        assert_eq!(view["oauth2"]["provider"], "hubspot");
        assert_eq!(
            view["oauth2"]["authorized"]["reason"],
            "AuthorizationRequired"
        );
        assert_eq!(view["oauth2"]["expiresAt"], "2026-03-01T10:00:00Z");
    }
}

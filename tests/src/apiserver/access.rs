//! TokenReview and SubjectAccessReview, answered as kube-apiserver does
//! for its configured authenticators and RBAC, from what a test sets up:
//! bearer tokens mapped to users ([`Identities::add_token`]) and rules
//! granting verbs on resources in a namespace to a user or a group
//! ([`Identities::allow`]). Once a test asks for it
//! ([`Identities::authorize_impersonation`]), a request that impersonates
//! a user (`Impersonate-User`, `Impersonate-Group`) is authorised for that
//! user by the same rules, as kube-apiserver does; every other request to
//! the stand-in is still allowed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::routes::{Route, parse_route};
use serde_json::{Value, json};

/// Group every authenticated user is in, as on a real API server.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";

#[derive(Debug, Clone)]
struct User {
    username: String,
    uid: String,
    groups: Vec<String>,
}

#[derive(Debug, Clone)]
struct Rule {
    subject: String,
    namespace: String,
    api_group: String,
    resources: Vec<String>,
    verbs: Vec<String>,
}

impl Rule {
    fn matches(&self, attributes: &Value) -> bool {
        let field = |name: &str| attributes.get(name).and_then(Value::as_str).unwrap_or("");
        let any =
            |list: &[String], wanted: &str| list.iter().any(|item| item == "*" || item == wanted);
        (self.namespace == "*" || self.namespace == field("namespace"))
            && (self.api_group == "*" || self.api_group == field("group"))
            && any(&self.resources, field("resource"))
            && any(&self.verbs, field("verb"))
    }
}

/// Tokens and rights of one stand-in.
#[derive(Debug, Clone, Default)]
pub struct Identities {
    tokens: Arc<Mutex<HashMap<String, User>>>,
    rules: Arc<Mutex<Vec<Rule>>>,
    impersonation_checked: Arc<std::sync::atomic::AtomicBool>,
}

impl Identities {
    /// Makes `token` authenticate as `username` (UID derived from the
    /// name), member of `groups` and of `system:authenticated`.
    pub fn add_token(&self, token: &str, username: &str, groups: &[&str]) {
        let mut all: Vec<String> = groups.iter().map(|group| (*group).to_owned()).collect();
        all.push(AUTHENTICATED_GROUP.to_owned());
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                token.to_owned(),
                User {
                    username: username.to_owned(),
                    uid: format!("uid-{username}"),
                    groups: all,
                },
            );
    }

    /// Grants `verbs` on `resources` of `api_group` in `namespace` to
    /// `subject` (a user name or a group; `*` matches any namespace,
    /// group, resource or verb), like a RoleBinding to a Role.
    pub fn allow(
        &self,
        subject: &str,
        namespace: &str,
        api_group: &str,
        resources: &[&str],
        verbs: &[&str],
    ) {
        self.rules
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Rule {
                subject: subject.to_owned(),
                namespace: namespace.to_owned(),
                api_group: api_group.to_owned(),
                resources: resources.iter().map(|item| (*item).to_owned()).collect(),
                verbs: verbs.iter().map(|item| (*item).to_owned()).collect(),
            });
    }

    /// From now on, a request impersonating a user is refused (403, as
    /// kube-apiserver words it) unless a rule allows that user or one of
    /// the impersonated groups the verb on the resource in its namespace.
    pub fn authorize_impersonation(&self) {
        self.impersonation_checked
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn review_token(&self, token: &str) -> Option<User> {
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token)
            .cloned()
    }

    fn allowed(&self, user: &str, groups: &[String], attributes: &Value) -> bool {
        self.rules
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|rule| rule.subject == user || groups.contains(&rule.subject))
            .any(|rule| rule.matches(attributes))
    }
}

/// The user and groups a request impersonates, if it does.
fn impersonated(headers: &HeaderMap) -> Option<(String, Vec<String>)> {
    let user = headers
        .get("impersonate-user")
        .and_then(|value| value.to_str().ok())
        .filter(|user| !user.is_empty())?;
    let mut groups: Vec<String> = headers
        .get_all("impersonate-group")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .map(str::to_owned)
        .collect();
    if !groups.iter().any(|group| group == AUTHENTICATED_GROUP) {
        groups.push(AUTHENTICATED_GROUP.to_owned());
    }
    Some((user.to_owned(), groups))
}

/// The verb kube-apiserver's authorizer sees for a request.
fn request_verb(method: &Method, named: bool, query: &str) -> &'static str {
    let watching = query
        .split('&')
        .any(|pair| pair == "watch=true" || pair == "watch=1");
    match *method {
        Method::GET | Method::HEAD if watching => "watch",
        Method::GET | Method::HEAD if named => "get",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "unknown",
    }
}

/// Refuses an impersonating request the impersonated user may not make,
/// with kube-apiserver's 403 `Status`.
pub(crate) async fn authorize_impersonated(
    State(identities): State<Identities>,
    request: Request,
    next: Next,
) -> Response {
    if !identities
        .impersonation_checked
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        return next.run(request).await;
    }
    let Some((user, groups)) = impersonated(request.headers()) else {
        return next.run(request).await;
    };
    let Some(Route::Resource(path)) = parse_route(request.uri().path()) else {
        return next.run(request).await;
    };
    let verb = request_verb(
        request.method(),
        path.name.is_some(),
        request.uri().query().unwrap_or_default(),
    );
    let resource = match &path.subresource {
        Some(subresource) => format!("{}/{subresource}", path.plural),
        None => path.plural.clone(),
    };
    let namespace = path.namespace.clone().unwrap_or_default();
    let attributes = json!({
        "group": path.group, "namespace": namespace, "resource": resource, "verb": verb,
    });
    if identities.allowed(&user, &groups, &attributes) {
        return next.run(request).await;
    }
    let qualified = if path.group.is_empty() {
        path.plural.clone()
    } else {
        format!("{}.{}", path.plural, path.group)
    };
    let message = format!(
        "{qualified} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"{}\" in the namespace \"{namespace}\"",
        path.group
    );
    let status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": "Forbidden", "code": 403,
        "details": {"name": path.name, "group": path.group, "kind": path.plural},
    });
    (StatusCode::FORBIDDEN, Json(status)).into_response()
}

/// `POST /apis/authentication.k8s.io/v1/tokenreviews`.
pub(crate) async fn token_review(
    State(identities): State<Identities>,
    Json(review): Json<Value>,
) -> Json<Value> {
    let token = review
        .pointer("/spec/token")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let status = match identities.review_token(token) {
        Some(user) => json!({
            "authenticated": true,
            "user": {"username": user.username, "uid": user.uid, "groups": user.groups},
        }),
        None => json!({"authenticated": false, "error": "invalid bearer token"}),
    };
    Json(json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "metadata": {"creationTimestamp": null},
        "spec": review.get("spec").cloned().unwrap_or_else(|| json!({})),
        "status": status,
    }))
}

/// `POST /apis/authorization.k8s.io/v1/subjectaccessreviews`.
pub(crate) async fn access_review(
    State(identities): State<Identities>,
    Json(review): Json<Value>,
) -> Json<Value> {
    let spec = review.get("spec").cloned().unwrap_or_else(|| json!({}));
    let user = spec.get("user").and_then(Value::as_str).unwrap_or_default();
    let groups: Vec<String> = spec
        .get("groups")
        .and_then(Value::as_array)
        .map(|groups| {
            groups
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let attributes = spec
        .get("resourceAttributes")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let allowed = identities.allowed(user, &groups, &attributes);
    let reason = if allowed {
        "allowed by a rule of the test"
    } else {
        "no rule of the test allows this"
    };
    Json(json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "metadata": {"creationTimestamp": null},
        "spec": spec,
        "status": {"allowed": allowed, "reason": reason},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attributes(namespace: &str, verb: &str) -> Value {
        json!({"group": "sluice.dev", "namespace": namespace, "resource": "workflowruns", "verb": verb})
    }

    #[test]
    fn rules_bind_users_and_groups_to_namespaces_and_verbs() {
        let identities = Identities::default();
        identities.allow(
            "ada",
            "team-a",
            "sluice.dev",
            &["workflowruns"],
            &["get", "list"],
        );
        identities.allow("readers", "team-b", "*", &["*"], &["list"]);
        let none: Vec<String> = Vec::new();
        let readers = vec!["readers".to_owned()];
        assert!(identities.allowed("ada", &none, &attributes("team-a", "list")));
        assert!(!identities.allowed("ada", &none, &attributes("team-a", "delete")));
        assert!(!identities.allowed("ada", &none, &attributes("team-b", "list")));
        assert!(identities.allowed("bob", &readers, &attributes("team-b", "list")));
        assert!(!identities.allowed("bob", &none, &attributes("team-b", "list")));
    }

    #[test]
    fn an_impersonating_request_is_checked_for_the_impersonated_user() {
        let mut headers = HeaderMap::new();
        assert_eq!(impersonated(&headers), None);
        headers.insert("impersonate-user", "ada".parse().unwrap());
        headers.append("impersonate-group", "team".parse().unwrap());
        assert_eq!(
            impersonated(&headers),
            Some((
                "ada".to_owned(),
                vec!["team".to_owned(), AUTHENTICATED_GROUP.to_owned()]
            ))
        );
        assert_eq!(request_verb(&Method::GET, true, ""), "get");
        assert_eq!(request_verb(&Method::GET, false, "watch=true"), "watch");
        assert_eq!(request_verb(&Method::GET, false, "limit=5"), "list");
        assert_eq!(request_verb(&Method::POST, false, ""), "create");
        assert_eq!(request_verb(&Method::PATCH, true, ""), "patch");
    }
}

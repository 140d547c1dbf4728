//! Kubernetes API paths: discovery documents, OpenAPI documents and
//! resource paths (`/api/v1/namespaces/<ns>/<plural>/<name>/<subresource>`,
//! `/apis/<group>/<version>/...`). Parsing only; nothing is looked up.

/// A parsed request path.
#[derive(Debug)]
pub(crate) enum Route {
    CoreVersions,
    GroupList,
    Group(String),
    ResourceList { group: String, version: String },
    Version,
    OpenApiIndex,
    OpenApiGroupVersion(String),
    Resource(ResourcePath),
}

#[derive(Debug)]
pub(crate) struct ResourcePath {
    pub(crate) group: String,
    pub(crate) version: String,
    pub(crate) namespace: Option<String>,
    pub(crate) plural: String,
    pub(crate) name: Option<String>,
    pub(crate) subresource: Option<String>,
}

pub(crate) fn parse_route(path: &str) -> Option<Route> {
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|segment| !segment.is_empty())
        .collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api"] => return Some(Route::CoreVersions),
        ["apis"] => return Some(Route::GroupList),
        ["version"] => return Some(Route::Version),
        ["openapi", "v3"] => return Some(Route::OpenApiIndex),
        ["openapi", "v3", rest @ ..] => return Some(Route::OpenApiGroupVersion(rest.join("/"))),
        ["apis", group] => return Some(Route::Group(group.to_string())),
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let owned = |segment: Option<&&str>| segment.map(|segment| segment.to_string());
    let (namespace, rest) = match rest {
        [] => {
            return Some(Route::ResourceList {
                group: group.to_string(),
                version: version.to_string(),
            });
        }
        ["namespaces", _, "status" | "finalize"] => (None, rest),
        ["namespaces", namespace, rest @ ..] if !rest.is_empty() => {
            (Some(namespace.to_string()), rest)
        }
        _ => (None, rest),
    };
    if rest.len() > 3 {
        return None;
    }
    Some(Route::Resource(ResourcePath {
        group: group.to_string(),
        version: version.to_string(),
        namespace,
        plural: rest[0].to_string(),
        name: owned(rest.get(1)),
        subresource: owned(rest.get(2)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(path: &str) -> ResourcePath {
        match parse_route(path) {
            Some(Route::Resource(resource)) => resource,
            other => panic!("{path} parsed as {other:?}"),
        }
    }

    #[test]
    fn namespace_objects_and_namespaced_resources_are_told_apart() {
        let namespace = resource("/api/v1/namespaces/team");
        assert_eq!(
            (
                namespace.plural.as_str(),
                namespace.name.as_deref(),
                namespace.namespace
            ),
            ("namespaces", Some("team"), None)
        );
        let status = resource("/api/v1/namespaces/team/status");
        assert_eq!(
            (status.name.as_deref(), status.subresource.as_deref()),
            (Some("team"), Some("status"))
        );
        let job = resource("/apis/batch/v1/namespaces/team/jobs/run-1/status");
        assert_eq!(
            (
                job.group.as_str(),
                job.namespace.as_deref(),
                job.plural.as_str(),
                job.name.as_deref(),
                job.subresource.as_deref()
            ),
            ("batch", Some("team"), "jobs", Some("run-1"), Some("status"))
        );
        let all = resource("/apis/e2e.sluice.dev/v1/widgets");
        assert_eq!((all.namespace, all.name), (None, None));
        assert!(matches!(
            parse_route("/apis/batch/v1"),
            Some(Route::ResourceList { .. })
        ));
        assert!(parse_route("/healthz").is_none());
    }
}

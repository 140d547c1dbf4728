//! CustomResourceDefinitions in the stand-in: a stored CRD makes its type
//! served (names, versions, scope, status subresource) and gets the status
//! the apiextensions controller would write (`NamesAccepted`,
//! `Established`); deleting it deletes its objects and stops serving the
//! type. Schemas are not used (no validation, pruning or defaulting).

use serde_json::{Value, json};

use super::registry::ResourceType;
use super::status::{ApiError, ApiResult};
use super::store::{State, Table, meta_str, now_timestamp};

impl State {
    /// Registers the type a CRD defines and fills in the status the
    /// apiextensions controller would write (Established, NamesAccepted).
    pub(crate) fn serve_crd(&mut self, resource: &ResourceType, crd: &mut Value) -> ApiResult<()> {
        let name = meta_str(crd, "name").to_string();
        let Some(mut served) = ResourceType::from_crd(crd) else {
            return Err(ApiError::invalid(
                State::subject(resource, &name),
                "spec",
                "spec.group, spec.names.kind, spec.names.plural and at least one served version are required",
            ));
        };
        if name != format!("{}.{}", served.plural, served.group) {
            return Err(ApiError::invalid(
                State::subject(resource, &name),
                "metadata.name",
                format!(
                    "must be spec.names.plural+\".\"+spec.group ({}.{})",
                    served.plural, served.group
                ),
            ));
        }
        served.crd_uid = crd
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .map(str::to_string);
        // Like the real server's watch cache, history starts when the type
        // is first served: watching from before that is 410 Gone.
        let serving_since = self.resource_version;
        self.tables
            .entry(served.key())
            .or_insert_with(|| Table::starting_at(serving_since));
        let now = now_timestamp();
        let condition = |kind: &str, reason: &str| json!({"type": kind, "status": "True", "reason": reason, "message": "", "lastTransitionTime": now});
        crd["status"] = json!({
            "conditions": [condition("NamesAccepted", "NoConflicts"), condition("Established", "InitialNamesAccepted")],
            "acceptedNames": crd.pointer("/spec/names").cloned().unwrap_or(Value::Null),
            "storedVersions": [served.versions.first().cloned().unwrap_or_default()],
        });
        self.registry.register(served);
        Ok(())
    }

    pub(crate) fn stop_serving_crd(&mut self, crd: &Value) {
        let Some(served) = ResourceType::from_crd(crd) else {
            return;
        };
        let key = served.key();
        let names: Vec<(String, String)> = self
            .tables
            .get(&key)
            .map(|table| table.objects.keys().cloned().collect())
            .unwrap_or_default();
        for (namespace, name) in names {
            self.remove(&key, &namespace, &name);
        }
        self.registry.unregister(&key);
    }
}

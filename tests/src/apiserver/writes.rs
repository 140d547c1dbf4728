//! Writes (create, replace, patch) in three steps, as kube-apiserver makes
//! them: compute the object the request asks for from what is stored
//! (under the store's lock), run admission on it (mutating then validating
//! webhooks, outside the lock), and store the admitted object (under the
//! lock again, refused with 409 when the stored object moved meanwhile; a
//! patch is then recomputed and retried, as the real server does).
//! `dryRun=All` runs every step but the last.

use super::*;
use crate::apiserver::admission::{self, Attributes, Operation, UserInfo};

/// A write computed from the request, not yet stored.
pub(super) struct PreparedWrite {
    operation: Operation,
    name: String,
    status: bool,
    object: Value,
    old: Option<Value>,
    context: WriteContext,
}

/// Attempts of a patch whose object keeps moving under it.
const PATCH_ATTEMPTS: usize = 5;

impl ResourceRequest<'_> {
    fn prepare(&self, method: &Method) -> ApiResult<PreparedWrite> {
        let status = self.is_status();
        match (method, self.path.name.clone()) {
            (&Method::POST, None) => Ok(PreparedWrite {
                operation: Operation::Create,
                name: String::new(),
                status: false,
                object: self.body_object()?,
                old: None,
                context: WriteContext::update(self.manager()),
            }),
            (&Method::PUT, Some(name)) => {
                let object = self.body_object()?;
                self.check_name(&object, &name)?;
                let old = self.current(&name);
                Ok(PreparedWrite {
                    operation: Operation::Update,
                    name,
                    status,
                    object,
                    old,
                    context: WriteContext::update(self.manager()),
                })
            }
            (&Method::PATCH, Some(name)) => self.prepare_patch(name, status),
            (method, _) => Err(ApiError::method_not_allowed(format!(
                "{method} is not supported on {}",
                self.resource.plural
            ))),
        }
    }

    fn current(&self, name: &str) -> Option<Value> {
        self.shared
            .store
            .lock()
            .get(&self.resource.key(), self.namespace(), name)
            .cloned()
            .map(|object| self.present(object))
    }

    fn prepare_patch(&self, name: String, status: bool) -> ApiResult<PreparedWrite> {
        let content_type = self
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("");
        let kind = PatchKind::from_content_type(content_type)?;
        if kind == PatchKind::Strategic && self.resource.crd_uid.is_some() {
            return Err(ApiError::unsupported_media_type(content_type));
        }
        let subject = StoreState::subject(&self.resource, &name);
        let current = self.current(&name);
        let manager = self.manager();
        let (mut desired, context) = match kind {
            PatchKind::Apply => {
                if self.param("fieldManager").is_none() {
                    return Err(ApiError::bad_request(
                        "PATCH with an apply patch requires the fieldManager query parameter",
                    ));
                }
                let applied = self.body_object()?;
                self.check_name(&applied, &name)?;
                let (desired, fields) = patch::apply(current.as_ref(), &applied, &manager, status);
                (
                    desired,
                    WriteContext {
                        manager,
                        operation: "Apply",
                        fields: Some(fields),
                    },
                )
            }
            PatchKind::Merge | PatchKind::Strategic | PatchKind::Json => {
                let current = current
                    .as_ref()
                    .ok_or_else(|| ApiError::not_found(subject))?;
                let desired = if kind == PatchKind::Json {
                    patch::json_patch(current, &self.body, subject)?
                } else {
                    patch::merge_patch(current, &patch::parse_body(&self.body)?)
                };
                (desired, WriteContext::update(manager))
            }
        };
        let operation = if current.is_none() {
            desired["metadata"]["name"] = json!(name);
            Operation::Create
        } else {
            Operation::Update
        };
        Ok(PreparedWrite {
            operation,
            name,
            status,
            object: desired,
            old: current,
            context,
        })
    }

    /// Prepares, admits and stores the write; the response to send.
    pub(super) async fn write(&self, method: &Method) -> Response {
        let attempts = if *method == Method::PATCH {
            PATCH_ATTEMPTS
        } else {
            1
        };
        let user = UserInfo::from_headers(self.headers);
        let mut last = None;
        for _ in 0..attempts {
            let result = async {
                let write = self.prepare(method)?;
                let admitted = self.admit(&write, &user).await?;
                self.commit(&write, admitted)
            }
            .await;
            match result {
                Err(error) if error.code == 409 && error.reason == "Conflict" => last = Some(error),
                Ok(response) => return response,
                Err(error) => return error_response(&error),
            }
        }
        error_response(&last.unwrap_or_else(|| ApiError::internal("the write kept conflicting")))
    }

    fn dry_run(&self) -> bool {
        self.query.get("dryRun").is_some_and(|value| value == "All")
    }

    async fn admit(
        &self,
        write: &PreparedWrite,
        user: &UserInfo,
    ) -> ApiResult<admission::Admitted> {
        let name = if write.name.is_empty() {
            meta_str(&write.object, "name").to_owned()
        } else {
            write.name.clone()
        };
        let attributes = Attributes {
            resource: &self.resource,
            version: &self.path.version,
            namespace: self.namespace(),
            name: &name,
            operation: write.operation,
            subresource: self.path.subresource.as_deref(),
            object: &write.object,
            old: write.old.as_ref(),
            user,
            dry_run: self.dry_run(),
        };
        let hooks = admission::matching(&self.shared.store, &attributes);
        if hooks.is_empty() {
            return Ok(admission::Admitted {
                object: write.object.clone(),
                warnings: Vec::new(),
            });
        }
        admission::admit(&hooks, &attributes).await
    }

    fn commit(&self, write: &PreparedWrite, admitted: admission::Admitted) -> ApiResult<Response> {
        let mut response = if self.dry_run() {
            let code = match write.operation {
                Operation::Create => StatusCode::CREATED,
                Operation::Update => StatusCode::OK,
            };
            json_response(code, &self.output(admitted.object))
        } else {
            let mut state = self.shared.store.lock();
            match write.operation {
                Operation::Create => {
                    let created = state.create(
                        &self.resource,
                        self.namespace(),
                        admitted.object,
                        &write.context,
                    )?;
                    drop(state);
                    json_response(StatusCode::CREATED, &self.output(created))
                }
                Operation::Update => {
                    let updated = state.update(
                        &self.resource,
                        self.namespace(),
                        &write.name,
                        admitted.object,
                        write.status,
                        &write.context,
                    )?;
                    drop(state);
                    json_response(StatusCode::OK, &self.output(updated))
                }
            }
        };
        for warning in admitted.warnings {
            let text = format!("299 - {:?}", warning.replace('"', "'"));
            if let Ok(value) = HeaderValue::from_str(&text) {
                response.headers_mut().append(header::WARNING, value);
            }
        }
        Ok(response)
    }
}

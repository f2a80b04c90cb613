//! The Query protocol (IAM and STS) on the same `POST /` as KMS: a form-encoded body
//! (`Action=CreateUser&Version=2010-05-08&UserName=…`), SigV4 scoped to `iam` or `sts`, XML answers
//! in botocore's shapes, errors as `<ErrorResponse>` with AWS's codes. Every action is one call into
//! [`kms_core::Kms::execute_query`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use zeroize::Zeroizing;

use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use kms_core::identity::{IamError, Params, QueryService};

use crate::auth::{scope_service, Service};
use crate::router::App;
use crate::xml;

const FORM: &str = "application/x-www-form-urlencoded";

/// Whether the request's `Content-Type` is a form (parameters such as a charset allowed).
fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(FORM))
}

/// The Query service a request is for, decided from its head alone (so that a body too large,
/// too slow or unreadable is answered in the protocol the request speaks): its credential scope
/// names `iam` or `sts`, or it is unsigned and looks like a Query request (a form body, or an
/// `Action` in the query string), answered as IAM: MissingAuthenticationToken. `None`: a KMS
/// request.
pub(crate) fn query_service(uri: &Uri, headers: &HeaderMap) -> Option<QueryService> {
    match scope_service(headers) {
        Some("iam") => Some(QueryService::Iam),
        Some("sts") => Some(QueryService::Sts),
        None if is_form(headers) || names_action(uri) => Some(QueryService::Iam),
        _ => None,
    }
}

/// Whether the query string has an `Action` parameter.
fn names_action(uri: &Uri) -> bool {
    uri.query()
        .is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "Action"))
}

/// A Query request's parameters as IAM takes them: from the query string (a GET, or a POST with
/// an empty body), the form body, or both; a name given in both is given twice.
fn form_of(parts: &Parts, body: &[u8]) -> zeroize::Zeroizing<Vec<u8>> {
    let query = parts.uri.query().unwrap_or("").as_bytes();
    let mut form = zeroize::Zeroizing::new(Vec::with_capacity(query.len() + 1 + body.len()));
    form.extend_from_slice(query);
    if !query.is_empty() && !body.is_empty() {
        form.push(b'&');
    }
    form.extend_from_slice(body);
    form
}

fn xml_response(status: StatusCode, body: Zeroizing<String>, request_id: &str) -> Response {
    let mut body = body;
    // The answer may carry a secret: served from the zeroizing buffer itself, never a copy.
    let bytes = Zeroizing::new(std::mem::take(&mut *body).into_bytes());
    let mut r = (status, crate::buffers::zeroizing_body(bytes)).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    r
}

impl App {
    pub(crate) fn query_fail(
        &self,
        service: QueryService,
        status: StatusCode,
        code: &str,
        message: &str,
        request_id: &str,
    ) -> Response {
        let counter = if status.is_server_error() {
            &self.metrics.server_errors
        } else {
            &self.metrics.client_errors
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let body = xml::error(
            service.namespace(),
            !status.is_server_error(),
            code,
            message,
            request_id,
        );
        xml_response(status, Zeroizing::new(body), request_id)
    }

    fn iam_error(&self, service: QueryService, e: &IamError, request_id: &str) -> Response {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
        self.query_fail(service, status, e.code(), &e.to_string(), request_id)
    }

    /// Answers one IAM or STS request whose body has been read. Served on GET as on POST, as IAM
    /// serves both: the parameters may be in the query string, which the signature covers.
    pub(crate) async fn handle_query(
        &self,
        peer: Option<SocketAddr>,
        parts: &Parts,
        body: zeroize::Zeroizing<Vec<u8>>,
        request_id: &str,
        service: QueryService,
    ) -> Response {
        if !body.is_empty() && !is_form(&parts.headers) {
            return self.query_fail(
                service,
                StatusCode::BAD_REQUEST,
                "InvalidAction",
                "The Content-Type of an IAM or STS request must be application/x-www-form-urlencoded.",
                request_id,
            );
        }
        let (action, params) = match read_form(&form_of(parts, &body), service) {
            Ok(read) => read,
            Err((code, message)) => {
                return self.query_fail(
                    service,
                    StatusCode::BAD_REQUEST,
                    code,
                    &message,
                    request_id,
                )
            }
        };
        let scope = match service {
            QueryService::Iam => Service::Iam,
            QueryService::Sts => Service::Sts,
        };
        let mut caller = match self.authenticate(parts, &body, request_id, scope).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                self.auth_failed(peer).await;
                tracing::info!(request_id, error = e.query_code(), "request refused");
                return self.query_fail(
                    service,
                    StatusCode::from_u16(e.query_status()).unwrap_or(StatusCode::FORBIDDEN),
                    e.query_code(),
                    &e.to_string(),
                    request_id,
                );
            }
            Err(e) => return self.iam_error(service, &IamError::from(e), request_id),
        };
        caller.source_ip = peer.map(|p| p.ip().to_string());
        // As for KMS: the action runs as a task of its own, so a client hanging up cannot leave it
        // half done or unaudited.
        let kms = self.kms.clone();
        let act = action.clone();
        let outcome =
            tokio::spawn(async move { kms.execute_query(&caller, service, &act, &params).await })
                .await
                .unwrap_or_else(|_| Err(IamError::ServiceFailure("The operation failed.".into())));
        let (status, body) = render(service, &action, &outcome, request_id);
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
        if outcome.is_err() {
            let counter = if status.is_server_error() {
                &self.metrics.server_errors
            } else {
                &self.metrics.client_errors
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        xml_response(status, body, request_id)
    }
}

/// Reads a Query body as the endpoint does: its parameters (each at most once), the `Action` and,
/// if given, the service's `Version`. Returns the action and the other parameters, or the error code
/// and message a malformed body is answered with (400).
pub fn read_form(
    body: &[u8],
    service: QueryService,
) -> Result<(String, Params), (&'static str, String)> {
    let mut params = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(body) {
        if params.insert(k.into_owned(), v.into_owned()).is_some() {
            return Err((
                "InvalidInput",
                "A parameter is given more than once.".into(),
            ));
        }
    }
    let Some(action) = params.remove("Action") else {
        return Err((
            "MissingAction",
            "The request must contain the parameter Action.".into(),
        ));
    };
    match params.remove("Version") {
        Some(v) if v != service.version() => Err((
            "InvalidAction",
            format!("Could not find operation {action} for version {v}"),
        )),
        _ => Ok((action, Params(params))),
    }
}

/// The XML body of an answered Query request, as the endpoint writes it: the action's response,
/// or `<ErrorResponse>` with the error's code. Returns the HTTP status and the body.
pub fn render(
    service: QueryService,
    action: &str,
    outcome: &Result<Option<kms_core::identity::Value>, IamError>,
    request_id: &str,
) -> (u16, Zeroizing<String>) {
    match outcome {
        Ok(result) => (
            200,
            xml::response(action, service.namespace(), result.as_ref(), request_id),
        ),
        Err(e) => (
            e.status(),
            Zeroizing::new(xml::error(
                service.namespace(),
                e.status() < 500,
                e.code(),
                &e.to_string(),
                request_id,
            )),
        ),
    }
}

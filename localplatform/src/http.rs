//! Small HTTP/1.1 helpers over hyper shared by the stand-in, the router and the admin API.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

// The body type, `text` and `serve` live in `wire::http`: the worker's `/metrics` endpoint
// serves through them too, without depending on the demo platform.
pub use wire::http::{Body, serve, text};

pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let body = serde_json::to_vec(value).expect("API types serialize");
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

pub fn api_error(status: StatusCode, kind: &str, error: impl Into<String>) -> Response<Body> {
    json(
        status,
        &crate::api::ApiError {
            error: error.into(),
            kind: kind.to_owned(),
        },
    )
}

/// Reads a JSON request body, or answers 400 naming what was wrong.
pub async fn read_json<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, Response<Body>> {
    let bytes = req
        .into_body()
        .collect()
        .await
        .map_err(|e| api_error(StatusCode::BAD_REQUEST, "bad_request", e.to_string()))?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| {
        api_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("invalid JSON body: {e}"),
        )
    })
}

/// A watch channel that turns true on SIGTERM or Ctrl-C.
pub fn shutdown_on_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler installs");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        let _ = tx.send(true);
    });
    rx
}

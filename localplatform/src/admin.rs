//! The platform's admin API, called by the worker's activities (see [`crate::api`]).

use crate::api::{InstancesSpec, SwitchRequest, WeightsRequest};
use crate::http::{self, Body};
use crate::router::{RouteError, Router};
use crate::supervisor::{Supervisor, SupervisorError};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use std::sync::Arc;

pub struct Admin {
    pub router: Arc<Router>,
    pub supervisor: Arc<Supervisor>,
}

fn route_error(e: RouteError) -> Response<Body> {
    let (status, kind) = match e {
        RouteError::NotReady { .. } => (StatusCode::CONFLICT, "conflict"),
        RouteError::UnknownService(_) => (StatusCode::NOT_FOUND, "not_found"),
        _ => (StatusCode::BAD_REQUEST, "bad_request"),
    };
    http::api_error(status, kind, e.to_string())
}

fn supervisor_error(e: SupervisorError) -> Response<Body> {
    let (status, kind) = match e {
        SupervisorError::Live { .. } => (StatusCode::CONFLICT, "conflict"),
        SupervisorError::UnknownService(_) => (StatusCode::NOT_FOUND, "not_found"),
        SupervisorError::UnknownColor(_) => (StatusCode::BAD_REQUEST, "bad_request"),
        SupervisorError::Spawn(..) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    http::api_error(status, kind, e.to_string())
}

impl Admin {
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_owned();
        match (req.method().clone(), path.as_str()) {
            (Method::GET, "/v1/state") => {
                http::json(StatusCode::OK, &self.supervisor.state().await)
            }
            (Method::GET, "/v1/stats") => http::json(StatusCode::OK, &self.router.red.stats()),
            (Method::GET, "/v1/journal") => http::json(StatusCode::OK, &self.router.journal()),
            (Method::GET, "/metrics") => http::text(StatusCode::OK, self.router.red.render()),
            (Method::PUT, "/v1/instances") => {
                let specs: Vec<InstancesSpec> = match http::read_json(req).await {
                    Ok(s) => s,
                    Err(r) => return r,
                };
                for spec in &specs {
                    if let Err(e) = self.supervisor.apply(spec).await {
                        return supervisor_error(e);
                    }
                }
                http::json(StatusCode::OK, &self.supervisor.state().await)
            }
            (Method::POST, "/v1/switch") => {
                let body: SwitchRequest = match http::read_json(req).await {
                    Ok(s) => s,
                    Err(r) => return r,
                };
                match self.router.switch(&body) {
                    Ok(answer) => http::json(StatusCode::OK, &answer),
                    Err(e) => route_error(e),
                }
            }
            (Method::PUT, "/v1/weights") => {
                let body: WeightsRequest = match http::read_json(req).await {
                    Ok(s) => s,
                    Err(r) => return r,
                };
                match self.router.set_weights(&body) {
                    Ok(answer) => http::json(StatusCode::OK, &answer),
                    Err(e) => route_error(e),
                }
            }
            _ => http::api_error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no route {} {path}", req.method()),
            ),
        }
    }
}

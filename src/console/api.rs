//! The JSON API: the same data the pages render, for scripts. Changes are
//! `POST /api/alerts/{name}/{action}` (see [`super::actions`]).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;

use super::Console;
use super::alert::Span;
use super::alerts::ListQuery;
use super::html::{json, json_error};

/// `GET /api/alerts`: a page of rows, with counts per state and rejected files.
pub async fn alerts(State(c): State<Arc<Console>>, Query(q): Query<ListQuery>) -> Response {
    json(StatusCode::OK, &super::alerts::listing(&c, &q, Utc::now()))
}

/// `GET /api/alerts/{name}`: the row, per-key state and definition.
pub async fn alert(State(c): State<Arc<Console>>, Path(name): Path<String>) -> Response {
    match super::alert::detail(&c, &name, Utc::now()) {
        Some(d) => json(StatusCode::OK, &d),
        None => json_error(
            StatusCode::NOT_FOUND,
            &format!("no alert named {name:?} is loaded or rejected"),
        ),
    }
}

/// `GET /api/alerts/{name}/history?hours=24`.
pub async fn history(
    State(c): State<Arc<Console>>,
    Path(name): Path<String>,
    Query(span): Query<Span>,
) -> Response {
    let snap = c.snapshot();
    if !snap.alerts.contains_key(&name) && !snap.rejected.contains_key(&name) {
        return json_error(
            StatusCode::NOT_FOUND,
            &format!("no alert named {name:?} is loaded or rejected"),
        );
    }
    json(
        StatusCode::OK,
        &super::alert::history(&c, &name, &span, Utc::now()).await,
    )
}

/// `GET /api/silences`: the silences in force.
pub async fn silences(State(c): State<Arc<Console>>) -> Response {
    match crate::silence::in_force(&crate::silence::path_for(&c.paths.state), Utc::now()) {
        Ok(all) => json(StatusCode::OK, &all),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// `GET /api/health`.
pub async fn health(State(c): State<Arc<Console>>) -> Response {
    json(StatusCode::OK, &super::health::health(&c, Utc::now()))
}

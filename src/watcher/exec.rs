//! Executing a watch: input, condition, transform, then each action with
//! its own condition, transform, `foreach`, throttle and ack state.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::{
    Action, ActionKind, CmpValue, HttpRequest, Input, SearchRequest, Tmpl, Transform, WCondition,
    Watch, datemath,
};
use crate::condition::{Op, Path, Quantifier};
use crate::notify::Notifiers;
use crate::render::fmt_time;
use crate::search::{EsClient, SearchError};
use crate::throttle::{AckState, ActionState};

/// Watcher's default action throttle period.
pub const DEFAULT_THROTTLE: Duration = Duration::from_secs(5);

/// Why a watch could not run.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The search input or transform failed.
    #[error("watch {watch}: search failed: {source}")]
    Search {
        /// The watch.
        watch: String,
        /// The cause.
        #[source]
        source: SearchError,
    },
    /// The http input failed.
    #[error("watch {watch}: http input failed: {reason}")]
    Http {
        /// The watch.
        watch: String,
        /// What happened.
        reason: String,
    },
    /// A value the watch needs could not be worked out.
    #[error("watch {watch}: {reason}")]
    Invalid {
        /// The watch.
        watch: String,
        /// What happened.
        reason: String,
    },
}

impl ExecError {
    /// The search error, if a search failed.
    pub fn search_error(&self) -> Option<&SearchError> {
        match self {
            ExecError::Search { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Simulate (render, send nothing) or execute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `esalert test`: every action that would run is `simulated`.
    Simulate,
    /// A real run.
    Execute,
}

/// What one action came to.
#[derive(Debug, Clone)]
pub struct ActionResult {
    /// Its id.
    pub id: String,
    /// Its type.
    pub kind: &'static str,
    /// `success`, `failure`, `simulated`, `throttled`, `acked`, `condition_failed`.
    pub status: &'static str,
    /// The rendered content, per element for `foreach`.
    pub content: Value,
    /// The failure's reason.
    pub reason: Option<String>,
}

/// The record of one execution, shaped like Watcher's history.
#[derive(Debug, Clone)]
pub struct Record {
    /// Whether the watch condition was met.
    pub met: bool,
    /// The payload's hit count.
    pub hits: u64,
    /// Action results in file order (empty when not met).
    pub actions: Vec<ActionResult>,
    /// The whole record as JSON.
    pub json: Value,
}

/// What an execution needs from the outside.
pub struct Env<'a> {
    /// The cluster.
    pub es: &'a EsClient,
    /// For `http` inputs and webhooks.
    pub http: &'a reqwest::Client,
    /// For slack and email actions.
    pub notifiers: &'a Notifiers,
    /// A saved response that answers every search and http request
    /// (`esalert test --response`): nothing is contacted.
    pub saved: Option<Value>,
}

fn model(watch: &Watch, payload: &Value, now: DateTime<Utc>, scheduled: DateTime<Utc>) -> Value {
    json!({"ctx": {
        "watch_id": watch.id,
        "execution_time": fmt_time(&now),
        "trigger": {"triggered_time": fmt_time(&now), "scheduled_time": fmt_time(&scheduled)},
        "metadata": watch.metadata,
        "payload": payload,
        "vars": {},
    }})
}

/// Renders every string in a JSON value as a Mustache template.
fn render_json(v: &Value, model: &Value) -> Value {
    match v {
        Value::String(s) if s.contains("{{") => match super::mustache::Template::parse(s) {
            Ok(t) => Value::String(t.render(model)),
            Err(_) => v.clone(),
        },
        Value::Array(a) => Value::Array(a.iter().map(|x| render_json(x, model)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), render_json(x, model)))
                .collect(),
        ),
        other => other.clone(),
    }
}

async fn search(
    watch: &Watch,
    env: &Env<'_>,
    req: &SearchRequest,
    model: &Value,
    now: DateTime<Utc>,
) -> Result<Value, ExecError> {
    let invalid = |reason: String| ExecError::Invalid {
        watch: watch.id.clone(),
        reason,
    };
    let indices = req
        .indices
        .iter()
        .map(|i| datemath::index_name(i, now))
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid)?;
    let mut params = vec![(
        "rest_total_hits_as_int".to_owned(),
        req.rest_total_hits_as_int.to_string(),
    )];
    if let Some(t) = &req.search_type {
        params.push(("search_type".into(), t.clone()));
    }
    for (k, v) in &req.indices_options {
        let v = match v {
            Value::String(s) => s.clone(),
            Value::Array(a) => a
                .iter()
                .map(super::mustache::display)
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        };
        params.push((k.clone(), v));
    }
    let body = render_json(&req.body, model);
    if let Some(saved) = &env.saved {
        return Ok(extract(req, saved.clone()));
    }
    let search = env.es.search_with(&indices, &params, &body);
    let result = match req.timeout {
        Some(t) => tokio::time::timeout(t, search)
            .await
            .map_err(|_| ExecError::Search {
                watch: watch.id.clone(),
                source: SearchError::Timeout {
                    url: env.es.url().to_owned(),
                    after: t,
                },
            })?,
        None => search.await,
    }
    .map_err(|source| ExecError::Search {
        watch: watch.id.clone(),
        source,
    })?;
    Ok(extract(req, result.response))
}

fn extract(req: &SearchRequest, response: Value) -> Value {
    match &req.extract {
        None => response,
        Some(keys) => {
            let mut out = Value::Object(Map::new());
            for k in keys {
                if let Some(v) = Path::parse(k).resolve(&response) {
                    insert_path(&mut out, k, v.clone());
                }
            }
            out
        }
    }
}

fn insert_path(root: &mut Value, dotted: &str, v: Value) {
    let mut cur = root;
    let parts: Vec<&str> = dotted.split('.').collect();
    for (i, p) in parts.iter().enumerate() {
        let Value::Object(m) = cur else { return };
        if i + 1 == parts.len() {
            m.insert((*p).to_owned(), v);
            return;
        }
        cur = m
            .entry((*p).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

fn http_url(req: &HttpRequest, model: &Value) -> String {
    if let Some(u) = &req.url {
        return u.render(model);
    }
    let path = req
        .path
        .as_ref()
        .map(|p| p.render(model))
        .unwrap_or_default();
    let path = if path.starts_with('/') {
        path
    } else {
        format!("/{path}")
    };
    format!("{}://{}:{}{}", req.scheme, req.host, req.port, path)
}

fn http_rendered(req: &HttpRequest, model: &Value) -> Value {
    json!({
        "method": req.method,
        "url": http_url(req, model),
        "params": req.params.iter().map(|(k, t)| (k.clone(), Value::String(t.render(model)))).collect::<Map<_, _>>(),
        "headers": req.headers.iter().map(|(k, t)| (k.clone(), Value::String(t.render(model)))).collect::<Map<_, _>>(),
        "body": req.body.as_ref().map(|b| b.render(model)),
    })
}

async fn http_send(
    env: &Env<'_>,
    req: &HttpRequest,
    model: &Value,
) -> Result<(u16, reqwest::header::HeaderMap, String), String> {
    let method = reqwest::Method::from_bytes(req.method.as_bytes()).map_err(|e| e.to_string())?;
    let mut r = env.http.request(method, http_url(req, model));
    let params: Vec<(String, String)> = req
        .params
        .iter()
        .map(|(k, t)| (k.clone(), t.render(model)))
        .collect();
    r = r.query(&params);
    for (k, t) in &req.headers {
        r = r.header(k.as_str(), t.render(model));
    }
    if let Some((u, p)) = &req.auth {
        r = r.basic_auth(u, Some(p));
    }
    if let Some(b) = &req.body {
        r = r.body(b.render(model));
    }
    let timeout = req.read_timeout.unwrap_or(Duration::from_secs(10))
        + req.connection_timeout.unwrap_or(Duration::from_secs(10));
    let resp = r.timeout(timeout).send().await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.map_err(|e| e.to_string())?;
    Ok((status, headers, text))
}

fn run_input<'a>(
    watch: &'a Watch,
    env: &'a Env<'a>,
    input: &'a Input,
    base: Value,
    now: DateTime<Utc>,
    scheduled: DateTime<Utc>,
) -> futures::future::BoxFuture<'a, Result<Value, ExecError>> {
    Box::pin(async move {
        let m = model(watch, &base, now, scheduled);
        match input {
            Input::None => Ok(json!({})),
            Input::Simple(v) => Ok(v.clone()),
            Input::Search(req) => search(watch, env, req, &m, now).await,
            Input::Http(req) => {
                let (status, headers, text) =
                    http_send(env, req, &m)
                        .await
                        .map_err(|reason| ExecError::Http {
                            watch: watch.id.clone(),
                            reason,
                        })?;
                let mut payload = match serde_json::from_str::<Value>(&text) {
                    Ok(Value::Object(o)) => Value::Object(o),
                    Ok(other) => json!({"_value": other}),
                    Err(_) => json!({"_value": text}),
                };
                let mut hm = Map::new();
                for (k, v) in &headers {
                    let e = hm.entry(k.as_str().to_owned()).or_insert_with(|| json!([]));
                    if let Value::Array(a) = e {
                        a.push(Value::String(v.to_str().unwrap_or("").to_owned()));
                    }
                }
                payload["_status_code"] = json!(status);
                payload["_headers"] = Value::Object(hm);
                Ok(payload)
            }
            Input::Chain(items) => {
                let mut acc = Map::new();
                for (name, inner) in items {
                    let v = run_input(
                        watch,
                        env,
                        inner,
                        Value::Object(acc.clone()),
                        now,
                        scheduled,
                    )
                    .await?;
                    acc.insert(name.clone(), v);
                }
                Ok(Value::Object(acc))
            }
        }
    })
}

fn resolve_cmp(v: &CmpValue, payload: &Value, now: DateTime<Utc>) -> Result<(Value, bool), String> {
    Ok(match v {
        CmpValue::Const(c) => (c.clone(), false),
        CmpValue::Path(p) => (p.resolve(payload).cloned().unwrap_or(Value::Null), false),
        CmpValue::DateMath(s) => {
            let t = datemath::compare_value(s, now).expect("date math value")?;
            (json!(t.timestamp_millis()), true)
        }
    })
}

/// Dates compare as epoch milliseconds when the right side is date math.
fn as_millis(v: Option<&Value>) -> Option<Value> {
    match v? {
        Value::Number(n) => Some(Value::Number(n.clone())),
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| json!(t.timestamp_millis()))
            .or_else(|| s.parse::<i64>().ok().map(|n| json!(n))),
        _ => None,
    }
}

fn cmp(op: Op, left: Option<&Value>, right: &(Value, bool)) -> bool {
    if right.1 {
        return op.apply(as_millis(left).as_ref(), &right.0);
    }
    op.apply(left, &right.0)
}

fn check(c: &WCondition, payload: &Value, now: DateTime<Utc>) -> Result<bool, String> {
    Ok(match c {
        WCondition::Always => true,
        WCondition::Never => false,
        WCondition::Compare { path, op, value } => {
            let right = resolve_cmp(value, payload, now)?;
            cmp(*op, path.resolve(payload), &right)
        }
        WCondition::ArrayCompare {
            array,
            path,
            op,
            value,
            quantifier,
        } => {
            let right = resolve_cmp(value, payload, now)?;
            match array.resolve(payload) {
                Some(Value::Array(items)) => {
                    let hit = |i: &Value| cmp(*op, path.resolve(i), &right);
                    match quantifier {
                        Quantifier::Some => items.iter().any(hit),
                        Quantifier::All => items.iter().all(hit),
                    }
                }
                _ => false,
            }
        }
    })
}

async fn apply_transform(
    watch: &Watch,
    env: &Env<'_>,
    t: &Transform,
    payload: Value,
    now: DateTime<Utc>,
    scheduled: DateTime<Utc>,
) -> Result<Value, ExecError> {
    let mut p = payload;
    let items: Vec<&Transform> = match t {
        Transform::Chain(v) => v.iter().collect(),
        other => vec![other],
    };
    for t in items {
        p = match t {
            Transform::Search(req) => {
                search(watch, env, req, &model(watch, &p, now, scheduled), now).await?
            }
            Transform::Chain(_) => {
                Box::pin(apply_transform(watch, env, t, p, now, scheduled)).await?
            }
        };
    }
    Ok(p)
}

fn render_list(l: &[Tmpl], m: &Value) -> Vec<String> {
    l.iter()
        .map(|t| t.render(m))
        .filter(|s| !s.trim().is_empty())
        .collect()
}

/// Renders what an action would send.
fn render_action(kind: &ActionKind, m: &Value, payload: &Value) -> Value {
    match kind {
        ActionKind::Logging { level, text } => {
            json!({"level": level, "logged_text": text.render(m)})
        }
        ActionKind::Slack {
            to,
            from,
            text,
            attachments,
            dynamic,
        } => {
            let mut atts: Vec<Value> = attachments.iter().map(|a| render_json(a, m)).collect();
            if let Some((list_path, tmpl)) = dynamic
                && let Some(Value::Array(items)) = Path::parse(list_path).resolve(payload)
            {
                for item in items {
                    // Each element is visible as the attachment's root.
                    let mut mm = m.clone();
                    if let (Value::Object(root), Value::Object(it)) = (&mut mm, item) {
                        root.extend(it.clone());
                    }
                    atts.push(render_json(tmpl, &mm));
                }
            }
            json!({"message": {"to": render_list(to, m), "from": from.as_ref().map(|f| f.render(m)),
                "text": text.as_ref().map(|t| t.render(m)), "attachments": atts}})
        }
        ActionKind::Email {
            to,
            cc,
            bcc,
            reply_to,
            subject,
            text,
            html,
            priority,
            attachments,
        } => json!({"message": {
            "to": render_list(to, m), "cc": render_list(cc, m), "bcc": render_list(bcc, m),
            "reply_to": render_list(reply_to, m),
            "subject": subject.as_ref().map(|s| s.render(m)).unwrap_or_default(),
            "body": {"text": text.as_ref().map(|t| t.render(m)), "html": html.as_ref().map(|t| t.render(m))},
            "priority": priority,
            "attachments": attachments.iter().map(|(n, f)| json!({"id": n, "format": f})).collect::<Vec<_>>(),
        }}),
        ActionKind::Webhook(req) => json!({"request": http_rendered(req, m)}),
        ActionKind::Index {
            index,
            doc_id,
            execution_time_field,
        } => {
            let mut doc = payload.clone();
            if let (Some(f), Value::Object(o)) = (execution_time_field, &mut doc) {
                o.insert(f.clone(), m["ctx"]["execution_time"].clone());
            }
            json!({"request": {"index": index, "doc_id": doc_id, "source": doc}})
        }
    }
}

/// YAML for a data attachment: enough of YAML for JSON values.
pub fn to_yaml(v: &Value) -> String {
    fn scalar(v: &Value) -> String {
        match v {
            Value::String(s) => serde_json::to_string(s).expect("string"),
            other => other.to_string(),
        }
    }
    fn walk(v: &Value, indent: usize, out: &mut String) {
        let pad = " ".repeat(indent);
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, x) in m {
                    match x {
                        Value::Object(o) if !o.is_empty() => {
                            out.push_str(&format!("{pad}{}:\n", scalar(&Value::String(k.clone()))));
                            walk(x, indent + 2, out);
                        }
                        Value::Array(a) if !a.is_empty() => {
                            out.push_str(&format!("{pad}{}:\n", scalar(&Value::String(k.clone()))));
                            walk(x, indent, out);
                        }
                        _ => out.push_str(&format!(
                            "{pad}{}: {}\n",
                            scalar(&Value::String(k.clone())),
                            scalar_or_empty(x)
                        )),
                    }
                }
            }
            Value::Array(a) if !a.is_empty() => {
                for x in a {
                    match x {
                        Value::Object(o) if !o.is_empty() => {
                            let mut inner = String::new();
                            walk(x, indent + 2, &mut inner);
                            out.push_str(&format!("{pad}- {}", inner.trim_start()));
                        }
                        Value::Array(b) if !b.is_empty() => {
                            out.push_str(&format!("{pad}-\n"));
                            walk(x, indent + 2, out);
                        }
                        _ => out.push_str(&format!("{pad}- {}\n", scalar_or_empty(x))),
                    }
                }
            }
            other => out.push_str(&format!("{pad}{}\n", scalar_or_empty(other))),
        }
    }
    fn scalar_or_empty(v: &Value) -> String {
        match v {
            Value::Object(_) => "{}".into(),
            Value::Array(_) => "[]".into(),
            other => scalar(other),
        }
    }
    let mut out = String::from("---\n");
    walk(v, 0, &mut out);
    out
}

async fn perform(
    watch: &Watch,
    env: &Env<'_>,
    kind: &ActionKind,
    content: &Value,
    payload: &Value,
    model: &Value,
) -> Result<(), String> {
    match kind {
        ActionKind::Logging { level, .. } => {
            let text = content["logged_text"].as_str().unwrap_or("");
            match level.as_str() {
                "error" => tracing::error!(alert = watch.id.as_str(), event = "watch_log", text),
                "warn" | "warning" => {
                    tracing::warn!(alert = watch.id.as_str(), event = "watch_log", text)
                }
                _ => tracing::info!(alert = watch.id.as_str(), event = "watch_log", text),
            }
            Ok(())
        }
        ActionKind::Slack { .. } => {
            use slack_morphism::prelude::*;
            let slack = env
                .notifiers
                .slack_client()
                .ok_or("slack is not configured in credentials.json")?;
            let msg = &content["message"];
            let atts: Vec<SlackMessageAttachment> = msg["attachments"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| serde_json::from_value(a.clone()).ok())
                .collect();
            let text = msg["text"]
                .as_str()
                .map(crate::render::slack_escape)
                .unwrap_or_default();
            let mut c = SlackMessageContent::new().with_text(text);
            if !atts.is_empty() {
                c = c.with_attachments(atts);
            }
            let to: Vec<String> = msg["to"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect();
            if to.is_empty() {
                slack.post_raw(c, None).await.map_err(|e| e.to_string())
            } else {
                for ch in to {
                    slack
                        .post_raw(c.clone(), Some(&ch))
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            }
        }
        ActionKind::Email { .. } => {
            use lettre::message::{
                Attachment, Mailbox, MultiPart, SinglePart, header::ContentType,
            };
            let email = env
                .notifiers
                .email_client()
                .ok_or("email is not configured in credentials.json")?;
            let msg = &content["message"];
            let boxes = |k: &str| -> Result<Vec<Mailbox>, String> {
                msg[k]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(|a| {
                        a.parse::<Mailbox>()
                            .map_err(|e| format!("{k} address {a:?}: {e}"))
                    })
                    .collect()
            };
            let mut b = lettre::Message::builder()
                .from(email.from().clone())
                .subject(crate::render::one_line(
                    msg["subject"].as_str().unwrap_or(""),
                ))
                .message_id(None);
            for m in boxes("to")? {
                b = b.to(m);
            }
            for m in boxes("cc")? {
                b = b.cc(m);
            }
            for m in boxes("bcc")? {
                b = b.bcc(m);
            }
            for m in boxes("reply_to")? {
                b = b.reply_to(m);
            }
            if let Some(p) = msg["priority"].as_str() {
                let x = match p {
                    "highest" => "1",
                    "high" => "2",
                    "low" => "4",
                    "lowest" => "5",
                    _ => "3",
                };
                b = b.header(XPriority(x.into()));
            }
            let text = msg["body"]["text"].as_str().unwrap_or("").to_owned();
            let body = match msg["body"]["html"].as_str() {
                Some(h) => MultiPart::alternative_plain_html(text, h.to_owned()),
                None => MultiPart::mixed().singlepart(SinglePart::plain(text)),
            };
            let mut mixed = MultiPart::mixed().multipart(body);
            for a in msg["attachments"].as_array().into_iter().flatten() {
                let name = a["id"].as_str().unwrap_or("data");
                let (data, file, ct) = if a["format"] == "yaml" {
                    (to_yaml(payload), format!("{name}.yml"), "application/yaml")
                } else {
                    (
                        serde_json::to_string_pretty(payload).expect("json"),
                        format!("{name}.json"),
                        "application/json",
                    )
                };
                mixed = mixed.singlepart(
                    Attachment::new(file).body(data, ContentType::parse(ct).expect("content type")),
                );
            }
            let m = b.multipart(mixed).map_err(|e| e.to_string())?;
            email.send_message(m).await.map_err(|e| e.to_string())
        }
        ActionKind::Webhook(req) => {
            let (status, _, body) = http_send(env, req, model).await?;
            if (200..300).contains(&status) {
                Ok(())
            } else {
                Err(format!(
                    "HTTP {status}: {}",
                    body.chars().take(200).collect::<String>()
                ))
            }
        }
        ActionKind::Index { index, doc_id, .. } => {
            let doc = &content["request"]["source"];
            let r = match doc.get("_doc") {
                Some(Value::Array(docs)) => env.es.bulk_index(index, docs).await,
                _ => env.es.index_doc(index, doc_id.as_deref(), doc).await,
            };
            r.map(|_| ()).map_err(|e| e.to_string())
        }
    }
}

#[derive(Debug, Clone)]
struct XPriority(String);

impl lettre::message::header::Header for XPriority {
    fn name() -> lettre::message::header::HeaderName {
        lettre::message::header::HeaderName::new_from_ascii_str("X-Priority")
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(XPriority(s.to_owned()))
    }
    fn display(&self) -> lettre::message::header::HeaderValue {
        lettre::message::header::HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// Runs a watch once. `states` holds each action's ack and throttle state
/// and is updated in [`Mode::Execute`].
pub async fn execute(
    watch: &Watch,
    env: &Env<'_>,
    now: DateTime<Utc>,
    scheduled: DateTime<Utc>,
    mode: Mode,
    states: &mut BTreeMap<String, ActionState>,
) -> Result<Record, ExecError> {
    // A saved response stands for the input, whatever its type.
    let payload = match &env.saved {
        Some(v) => v.clone(),
        None => run_input(watch, env, &watch.input, json!({}), now, scheduled).await?,
    };
    let input_payload = payload.clone();
    let invalid = |reason: String| ExecError::Invalid {
        watch: watch.id.clone(),
        reason,
    };
    let met = check(&watch.condition, &payload, now).map_err(invalid)?;
    let hits = crate::condition::hits_total(&payload);
    let mut results = Vec::new();
    let mut payload = payload;
    if !met {
        // Watcher: a false condition resets acknowledgement.
        for s in states.values_mut() {
            s.ack = AckState::AwaitsSuccessfulExecution;
        }
    } else {
        if let Some(t) = &watch.transform {
            payload = apply_transform(watch, env, t, payload, now, scheduled).await?;
        }
        for a in &watch.actions {
            results.push(run_action(watch, env, a, &payload, now, scheduled, mode, states).await?);
        }
    }
    let json = json!({
        "watch_id": watch.id,
        "state": if met { "executed" } else { "execution_not_needed" },
        "trigger_event": {"type": "schedule", "triggered_time": fmt_time(&now), "schedule": {"scheduled_time": fmt_time(&scheduled)}},
        "metadata": watch.metadata,
        "result": {
            "execution_time": fmt_time(&now),
            "input": {"status": "success", "payload": input_payload},
            "condition": {"status": "success", "met": met},
            "transform": if watch.transform.is_some() && met { json!({"status": "success", "payload": payload}) } else { Value::Null },
            "actions": results.iter().map(|r| {
                let mut o = json!({"id": r.id, "type": r.kind, "status": r.status});
                o[r.kind] = r.content.clone();
                if let Some(reason) = &r.reason { o["reason"] = json!(reason); }
                o
            }).collect::<Vec<_>>(),
        },
    });
    Ok(Record {
        met,
        hits,
        actions: results,
        json,
    })
}

#[allow(clippy::too_many_arguments)]
async fn run_action(
    watch: &Watch,
    env: &Env<'_>,
    a: &Action,
    payload: &Value,
    now: DateTime<Utc>,
    scheduled: DateTime<Utc>,
    mode: Mode,
    states: &mut BTreeMap<String, ActionState>,
) -> Result<ActionResult, ExecError> {
    let state = states.entry(a.id.clone()).or_default();
    let result = |status: &'static str, content: Value, reason: Option<String>| ActionResult {
        id: a.id.clone(),
        kind: a.kind.type_name(),
        status,
        content,
        reason,
    };
    if state.ack == AckState::Acked {
        return Ok(result("acked", Value::Null, None));
    }
    let period = a.throttle.or(watch.throttle).unwrap_or(DEFAULT_THROTTLE);
    if let Some(last) = state.last_executed
        && now < last + chrono::Duration::from_std(period).unwrap_or_default()
    {
        return Ok(result(
            "throttled",
            Value::Null,
            Some(format!(
                "throttle_period {}",
                humantime::format_duration(period)
            )),
        ));
    }
    if let Some(c) = &a.condition
        && !check(c, payload, now).map_err(|reason| ExecError::Invalid {
            watch: watch.id.clone(),
            reason,
        })?
    {
        return Ok(result("condition_failed", Value::Null, None));
    }
    let mut payload = payload.clone();
    if let Some(t) = &a.transform {
        payload = apply_transform(watch, env, t, payload, now, scheduled).await?;
    }
    let elements: Vec<Value> = match &a.foreach {
        None => vec![payload.clone()],
        Some(p) => match p.resolve(&payload) {
            Some(Value::Array(items)) => items.iter().take(a.max_iterations).cloned().collect(),
            Some(other) => vec![other.clone()],
            None => Vec::new(),
        },
    };
    let mut contents = Vec::new();
    let mut failure = None;
    for el in &elements {
        let m = model(watch, el, now, scheduled);
        let content = render_action(&a.kind, &m, el);
        if mode == Mode::Execute
            && failure.is_none()
            && let Err(e) = perform(watch, env, &a.kind, &content, el, &m).await
        {
            failure = Some(e);
        }
        contents.push(content);
    }
    let content = if a.foreach.is_some() {
        Value::Array(contents)
    } else {
        contents.pop().unwrap_or(Value::Null)
    };
    Ok(match (mode, failure) {
        (Mode::Simulate, _) => result("simulated", content, None),
        (Mode::Execute, Some(e)) => result("failure", content, Some(e)),
        (Mode::Execute, None) => {
            state.last_executed = Some(now);
            if state.ack == AckState::AwaitsSuccessfulExecution {
                state.ack = AckState::Ackable;
            }
            result("success", content, None)
        }
    })
}

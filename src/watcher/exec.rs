//! A watch's part of a run: input, condition, transform, then each
//! action's own condition, transform and `foreach`, rendered into
//! [`Message`]s. Throttling, acknowledgement, the outbox, delivery and
//! retries are the pipeline's ([`crate::pipeline`]), as for every rule.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::{Action, ActionKind, HttpRequest, Input, SearchRequest, Tmpl, Transform, Watch};
use crate::condition::{Path, Scope, WatchCtx};
use crate::datemath;
use crate::render::{GroupVars, fmt_time};
use crate::rule::{EvalContext, EvalError, Evaluated, Notice, Plan, PlannedAction};
use crate::search::SearchError;
use crate::sinks::{EmailAttachment, EmailMessage, Message, WebhookRequest};
use crate::throttle::WHOLE_RULE;

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

impl From<ExecError> for EvalError {
    fn from(e: ExecError) -> Self {
        let message = e.to_string();
        match e {
            ExecError::Search { source, .. } => EvalError::search(message, source),
            _ => EvalError::new(message),
        }
    }
}

fn model(
    watch: &Watch,
    payload: &Value,
    now: DateTime<Utc>,
    scheduled: DateTime<Utc>,
    group: Option<&GroupVars>,
    vars: Option<&WatchCtx>,
) -> Value {
    let vars = vars.map_or_else(|| json!({}), |w| w.vars().clone());
    let mut m = json!({"ctx": {
        "watch_id": watch.id,
        "execution_time": fmt_time(&now),
        "trigger": {"triggered_time": fmt_time(&now), "scheduled_time": fmt_time(&scheduled)},
        "metadata": watch.metadata,
        "payload": payload,
        "vars": vars,
    }});
    if let Some(g) = group {
        m["group"] = json!({"key": g.key, "item": *g.item, "count": g.count});
    }
    m
}

fn raw(s: &str) -> String {
    s.to_owned()
}

thread_local! {
    /// The first template limit hit since [`take_cut`]; rendering is
    /// synchronous, so set and taken within one poll.
    static CUT: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

fn note_cut(e: super::mustache::RenderLimit) -> String {
    CUT.with(|c| {
        c.borrow_mut().get_or_insert_with(|| e.to_string());
    });
    e.partial
}

/// The template limit hit while rendering, if any: the watch's error.
fn take_cut() -> Option<String> {
    CUT.with(|c| c.borrow_mut().take())
}

/// Renders a template; a limit is noted for [`take_cut`].
fn rend(t: &Tmpl, model: &Value, esc: fn(&str) -> String) -> String {
    t.try_render_escaped(model, esc).unwrap_or_else(note_cut)
}

/// Renders every string in a JSON value as a Mustache template, values
/// passed through `esc`.
fn render_json(v: &Value, model: &Value, esc: fn(&str) -> String) -> Value {
    match v {
        Value::String(s) if s.contains("{{") => match super::mustache::Template::parse(s) {
            Ok(t) => Value::String(t.try_render_escaped(model, esc).unwrap_or_else(note_cut)),
            Err(_) => v.clone(),
        },
        Value::Array(a) => Value::Array(a.iter().map(|x| render_json(x, model, esc)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), render_json(x, model, esc)))
                .collect(),
        ),
        other => other.clone(),
    }
}

async fn search(
    watch: &Watch,
    env: &EvalContext<'_>,
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
    let body = render_json(&req.body, model, raw);
    if let Some(reason) = take_cut() {
        return Err(invalid(format!("search body: {reason}")));
    }
    if let Some(saved) = env.saved {
        return Ok(extract(req, Value::clone(saved)));
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
        return rend(u, model, raw);
    }
    let path = req
        .path
        .as_ref()
        .map(|p| rend(p, model, raw))
        .unwrap_or_default();
    let path = if path.starts_with('/') {
        path
    } else {
        format!("/{path}")
    };
    format!("{}://{}:{}{}", req.scheme, req.host, req.port, path)
}

/// The request as rendered for one run.
fn http_request(req: &HttpRequest, model: &Value) -> WebhookRequest {
    let timeout = req.read_timeout.unwrap_or(Duration::from_secs(10))
        + req.connection_timeout.unwrap_or(Duration::from_secs(10));
    WebhookRequest {
        method: req.method.clone(),
        url: http_url(req, model),
        params: req
            .params
            .iter()
            .map(|(k, t)| (k.clone(), rend(t, model, raw)))
            .collect(),
        headers: req
            .headers
            .iter()
            .map(|(k, t)| (k.clone(), rend(t, model, raw)))
            .collect(),
        body: req.body.as_ref().map(|b| rend(b, model, raw)),
        auth: req.auth.clone(),
        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
    }
}

fn run_input<'a>(
    watch: &'a Watch,
    env: &'a EvalContext<'a>,
    input: &'a Input,
    base: Value,
    now: DateTime<Utc>,
    scheduled: DateTime<Utc>,
) -> futures::future::BoxFuture<'a, Result<Value, ExecError>> {
    Box::pin(async move {
        let m = model(watch, &base, now, scheduled, None, None);
        match input {
            Input::None => Ok(json!({})),
            Input::Simple(v) => Ok(v.clone()),
            Input::Search(req) => search(watch, env, req, &m, now).await,
            Input::Http(req) => {
                let request = http_request(req, &m);
                if let Some(reason) = take_cut() {
                    return Err(ExecError::Invalid {
                        watch: watch.id.clone(),
                        reason: format!("http input: {reason}"),
                    });
                }
                let (status, headers, text) =
                    request.send(env.http).await.map_err(|e| ExecError::Http {
                        watch: watch.id.clone(),
                        reason: e.to_string(),
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

fn check(
    c: &crate::condition::Condition,
    cx: &EvalContext<'_>,
    at: Scope<'_>,
) -> Result<bool, String> {
    let v = c
        .evaluate_in(cx.scripts, at, cx.now)
        .map_err(|e| e.to_string())?;
    Ok(v.matched)
}

async fn apply_transform(
    watch: &Watch,
    env: &EvalContext<'_>,
    t: &Transform,
    payload: Value,
    wctx: &WatchCtx,
) -> Result<Value, ExecError> {
    let (now, scheduled) = (wctx.times.execution, wctx.times.scheduled);
    let mut p = payload;
    let items: Vec<&Transform> = match t {
        Transform::Chain(v) => v.iter().collect(),
        other => vec![other],
    };
    for t in items {
        p = match t {
            Transform::Search(req) => {
                search(
                    watch,
                    env,
                    req,
                    &model(watch, &p, now, scheduled, None, Some(wctx)),
                    now,
                )
                .await?
            }
            Transform::Chain(_) => Box::pin(apply_transform(watch, env, t, p, wctx)).await?,
            Transform::Script(s) => {
                let r = s.run(&p, Some(wctx), now).map_err(|e| ExecError::Invalid {
                    watch: watch.id.clone(),
                    reason: format!("script transform: {e}"),
                })?;
                // Watcher: a returned map is the payload, anything else is `_value`.
                if r.is_map {
                    r.result
                } else {
                    json!({"_value": r.result})
                }
            }
        };
    }
    Ok(p)
}

fn render_list(l: &[Tmpl], m: &Value) -> Vec<String> {
    l.iter()
        .map(|t| rend(t, m, raw))
        .filter(|s| !s.trim().is_empty())
        .collect()
}

/// What an action sends for one element, and the content Watcher's record
/// shows for it.
fn render_action(
    watch: &Watch,
    kind: &ActionKind,
    m: &Value,
    payload: &Value,
) -> (Vec<Message>, Value) {
    match kind {
        ActionKind::Logging { level, text } => {
            let text = rend(text, m, raw);
            (
                vec![Message::Log {
                    alert: watch.id.clone(),
                    level: level.clone(),
                    text: text.clone(),
                }],
                json!({"level": level, "logged_text": text}),
            )
        }
        ActionKind::Slack {
            to,
            from,
            text,
            attachments,
            dynamic,
        } => {
            let esc = crate::render::slack_escape;
            let mut atts: Vec<Value> = attachments.iter().map(|a| render_json(a, m, esc)).collect();
            if let Some((list_path, tmpl)) = dynamic
                && let Some(Value::Array(items)) = Path::parse(list_path).resolve(payload)
            {
                for item in items {
                    // Each element is visible as the attachment's root.
                    let mut mm = m.clone();
                    if let (Value::Object(root), Value::Object(it)) = (&mut mm, item) {
                        root.extend(it.clone());
                    }
                    atts.push(render_json(tmpl, &mm, esc));
                }
            }
            let text = text.as_ref().map(|t| rend(t, m, esc));
            let channels = render_list(to, m);
            let message = |channel: Option<String>| Message::Slack {
                channel,
                text: text.clone().unwrap_or_default(),
                attachments: atts.clone(),
            };
            let msgs = if channels.is_empty() {
                vec![message(None)]
            } else {
                channels.iter().map(|c| message(Some(c.clone()))).collect()
            };
            let content = json!({"message": {"to": channels, "from": from.as_ref().map(|f| rend(f, m, raw)),
                "text": text, "attachments": atts}});
            (msgs, content)
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
        } => {
            let text = text.as_ref().map(|t| rend(t, m, raw));
            let html = html
                .as_ref()
                .map(|t| rend(t, m, crate::render::html_escape));
            let msg = EmailMessage {
                alert: watch.id.clone(),
                to: render_list(to, m),
                cc: render_list(cc, m),
                bcc: render_list(bcc, m),
                reply_to: render_list(reply_to, m),
                subject: subject
                    .as_ref()
                    .map(|s| rend(s, m, raw))
                    .unwrap_or_default(),
                text: text.clone().unwrap_or_default(),
                html: html.clone(),
                priority: priority.clone(),
                attachments: attachments
                    .iter()
                    .map(|(name, format)| {
                        if format == "yaml" {
                            EmailAttachment {
                                filename: format!("{name}.yml"),
                                content_type: "application/yaml".into(),
                                data: to_yaml(payload),
                            }
                        } else {
                            EmailAttachment {
                                filename: format!("{name}.json"),
                                content_type: "application/json".into(),
                                data: serde_json::to_string_pretty(payload).unwrap_or_default(),
                            }
                        }
                    })
                    .collect(),
            };
            let content = json!({"message": {
                "to": msg.to, "cc": msg.cc, "bcc": msg.bcc, "reply_to": msg.reply_to,
                "subject": msg.subject, "body": {"text": text, "html": html},
                "priority": priority,
                "attachments": attachments.iter().map(|(n, f)| json!({"id": n, "format": f})).collect::<Vec<_>>(),
            }});
            (vec![Message::Email(msg)], content)
        }
        ActionKind::Webhook(req) => {
            let r = http_request(req, m);
            let content = json!({"request": {
                "method": r.method, "url": r.url,
                "params": r.params.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<Map<_, _>>(),
                "headers": r.headers.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<Map<_, _>>(),
                "body": r.body,
            }});
            (vec![Message::Webhook(r)], content)
        }
        ActionKind::Index {
            index,
            doc_id,
            execution_time_field,
        } => {
            let mut doc = payload.clone();
            if let (Some(f), Value::Object(o)) = (execution_time_field, &mut doc) {
                o.insert(f.clone(), m["ctx"]["execution_time"].clone());
            }
            let msg = match doc.get("_doc") {
                Some(Value::Array(docs)) => Message::Index {
                    index: index.clone(),
                    doc_id: None,
                    docs: docs.clone(),
                    bulk: true,
                },
                _ => Message::Index {
                    index: index.clone(),
                    doc_id: doc_id.clone(),
                    docs: vec![doc.clone()],
                    bulk: false,
                },
            };
            let content = json!({"request": {"index": index, "doc_id": doc_id, "source": doc}});
            (vec![msg], content)
        }
    }
}

/// YAML for a data attachment: enough of YAML for JSON values.
pub fn to_yaml(v: &Value) -> String {
    fn scalar(v: &Value) -> String {
        match v {
            Value::String(s) => serde_json::to_string(s).unwrap_or_default(),
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

/// A watch's part of one run: input, condition, transform, and each
/// action's condition, transform, `foreach` and rendering. Actions whose
/// scope the pipeline suppressed (throttled, acked) are not worked on.
pub async fn evaluate(
    watch: &Watch,
    rule: &crate::rule::Rule,
    cx: &EvalContext<'_>,
) -> Result<Evaluated, ExecError> {
    let (now, scheduled) = (cx.now, cx.scheduled);
    // ctx.vars, shared by the condition, transforms and action conditions.
    let wctx = WatchCtx::new(&watch.id, &watch.metadata, now, scheduled);
    // A saved response stands for the input, whatever its type.
    let payload = match cx.saved {
        Some(v) => Value::clone(v),
        None => run_input(watch, cx, &watch.input, json!({}), now, scheduled).await?,
    };
    let input_payload = payload.clone();
    let hits = crate::condition::hits_total(&payload);
    // Without `group_by` the whole payload is one group (key "").
    let mut groups: Vec<(String, Option<GroupVars>, Value)> = Vec::new();
    let mut overflow = Vec::new();
    let mut missing = None;
    match &rule.policy.group_by {
        None => {
            if check(&watch.condition, cx, Scope::whole(&payload).in_watch(&wctx)).map_err(
                |reason| ExecError::Invalid {
                    watch: watch.id.clone(),
                    reason,
                },
            )? {
                groups.push((WHOLE_RULE.to_owned(), None, payload.clone()));
            }
        }
        Some(spec) => {
            let grouped = crate::pipeline::group::split(&payload, spec, |item, _| {
                check(
                    &watch.condition,
                    cx,
                    Scope::element(item, &payload).in_watch(&wctx),
                )
            })
            .map_err(|reason| ExecError::Invalid {
                watch: watch.id.clone(),
                reason,
            })?;
            missing = grouped.missing.clone();
            overflow = grouped.overflow.clone();
            for g in grouped.groups {
                let el = (*g.item).clone();
                groups.push((g.key.clone(), Some(g), el));
            }
        }
    }
    let met = !groups.is_empty() || !overflow.is_empty();
    let mut actions = Vec::new();
    let mut records = Vec::new();
    let mut keys = Vec::new();
    let mut payload = payload;
    for (key, group, el) in groups {
        let mut el = el;
        if let Some(t) = &watch.transform {
            el = apply_transform(watch, cx, t, el, &wctx).await?;
        }
        for a in &watch.actions {
            let (planned, content) =
                plan_action(watch, cx, a, &el, &key, group.as_ref(), &wctx).await?;
            let status = match &planned.plan {
                Plan::Send(_) => "simulated",
                Plan::ConditionFailed => "condition_failed",
                Plan::Suppressed(s) => s,
            };
            let mut o = json!({"id": a.id, "type": planned.kind, "status": status});
            if group.is_some() {
                o["group_key"] = json!(key);
            }
            if !content.is_null() {
                o[planned.kind] = content;
            }
            if status == "throttled" {
                o["reason"] = json!(format!(
                    "throttle_period {}",
                    humantime::format_duration(planned.throttle)
                ));
            }
            records.push(o);
            actions.push(planned);
        }
        if group.is_none() {
            payload = el;
        }
        keys.push(key);
    }
    if !overflow.is_empty() {
        let grouped = crate::pipeline::group::Grouped {
            overflow,
            ..Default::default()
        };
        if let Some(text) = grouped.overflow_text() {
            actions.extend(notice(
                watch,
                &Notice {
                    key: crate::pipeline::group::OVERFLOW_KEY.to_owned(),
                    subject: format!(
                        "[esalert] {}: {} more keys matched",
                        watch.id,
                        grouped.overflow.len()
                    ),
                    text,
                    hits: grouped.overflow.iter().map(|(_, n)| *n).sum(),
                    time: now,
                    resolved: false,
                    first_key: None,
                },
                now,
            ));
        }
        keys.extend(grouped.overflow.into_iter().map(|(k, _)| k));
    }
    let record = json!({
        "watch_id": watch.id,
        "state": if met { "executed" } else { "execution_not_needed" },
        "trigger_event": {"type": "schedule", "triggered_time": fmt_time(&now), "schedule": {"scheduled_time": fmt_time(&scheduled)}},
        "metadata": watch.metadata,
        "result": {
            "execution_time": fmt_time(&now),
            "input": {"status": "success", "payload": input_payload},
            "condition": {"status": "success", "met": met},
            "transform": if watch.transform.is_some() && met { json!({"status": "success", "payload": payload}) } else { Value::Null },
            "actions": records,
        },
    });
    let mut detail = Map::new();
    detail.insert("watch_record".into(), record);
    Ok(Evaluated {
        digest: Vec::new(),
        matched: met,
        hits,
        partial: None,
        missing,
        took_ms: 0,
        actions,
        keys,
        memory: None,
        detail,
    })
}

async fn plan_action(
    watch: &Watch,
    cx: &EvalContext<'_>,
    a: &Action,
    payload: &Value,
    key: &str,
    group: Option<&GroupVars>,
    wctx: &WatchCtx,
) -> Result<(PlannedAction, Value), ExecError> {
    let throttle = a.throttle.or(watch.throttle).unwrap_or(DEFAULT_THROTTLE);
    let planned = |plan| PlannedAction {
        id: a.id.clone(),
        key: key.to_owned(),
        kind: a.kind.type_name(),
        scope: a.id.clone(),
        throttle,
        ackable: true,
        plan,
    };
    if let Some(s) = (cx.suppressed)(key, &a.id) {
        return Ok((planned(Plan::Suppressed(s)), Value::Null));
    }
    if let Some(c) = &a.condition
        && !check(c, cx, Scope::whole(payload).in_watch(wctx)).map_err(|reason| {
            ExecError::Invalid {
                watch: watch.id.clone(),
                reason,
            }
        })?
    {
        return Ok((planned(Plan::ConditionFailed), Value::Null));
    }
    let mut payload = payload.clone();
    if let Some(t) = &a.transform {
        payload = apply_transform(watch, cx, t, payload, wctx).await?;
    }
    let elements: Vec<Value> = match &a.foreach {
        None => vec![payload.clone()],
        Some(p) => match p.resolve(&payload) {
            Some(Value::Array(items)) => items.iter().take(a.max_iterations).cloned().collect(),
            Some(other) => vec![other.clone()],
            None => Vec::new(),
        },
    };
    let mut messages = Vec::new();
    let mut contents = Vec::new();
    for el in &elements {
        let m = model(watch, el, cx.now, cx.scheduled, group, Some(wctx));
        let (msgs, content) = render_action(watch, &a.kind, &m, el);
        if let Some(reason) = take_cut() {
            return Err(ExecError::Invalid {
                watch: watch.id.clone(),
                reason: format!("action {}: {reason}", a.id),
            });
        }
        messages.extend(msgs);
        contents.push(content);
    }
    let content = if a.foreach.is_some() {
        Value::Array(contents)
    } else {
        contents.pop().unwrap_or(Value::Null)
    };
    Ok((planned(Plan::Send(messages)), content))
}

/// A notification of the pipeline's making (resolved, digest, overflow)
/// through the watch's Slack, email and logging actions; webhooks and
/// index actions are machine interfaces and get none.
pub fn notice(watch: &Watch, n: &Notice, now: DateTime<Utc>) -> Vec<PlannedAction> {
    let m = model(watch, &json!({}), now, now, None, None);
    let mark = if n.resolved { "✅ " } else { "" };
    let mut out = Vec::new();
    for a in &watch.actions {
        let msg = match &a.kind {
            ActionKind::Slack { to, .. } => {
                let text = format!(
                    "{mark}*{}*\n{}",
                    crate::render::slack_escape(&n.subject),
                    crate::render::slack_escape(&n.text)
                );
                let channels = render_list(to, &m);
                if channels.is_empty() {
                    vec![Message::Slack {
                        channel: None,
                        text,
                        attachments: Vec::new(),
                    }]
                } else {
                    channels
                        .into_iter()
                        .map(|c| Message::Slack {
                            channel: Some(c),
                            text: text.clone(),
                            attachments: Vec::new(),
                        })
                        .collect()
                }
            }
            ActionKind::Email {
                to,
                cc,
                bcc,
                reply_to,
                ..
            } => vec![Message::Email(EmailMessage {
                alert: watch.id.clone(),
                to: render_list(to, &m),
                cc: render_list(cc, &m),
                bcc: render_list(bcc, &m),
                reply_to: render_list(reply_to, &m),
                subject: crate::render::one_line(&n.subject),
                text: n.text.clone(),
                html: None,
                priority: None,
                attachments: Vec::new(),
            })],
            ActionKind::Logging { level, .. } => vec![Message::Log {
                alert: watch.id.clone(),
                level: level.clone(),
                text: format!("{} {}", n.subject, n.text),
            }],
            _ => continue,
        };
        out.push(PlannedAction {
            id: a.id.clone(),
            key: n.key.clone(),
            kind: a.kind.type_name(),
            scope: a.id.clone(),
            throttle: std::time::Duration::ZERO,
            ackable: false,
            plan: Plan::Send(msg),
        });
    }
    out
}

//! Elasticsearch Watcher watches, run unchanged.
//!
//! Any `queries/<name>.json` whose top level has `trigger` and `input` is a
//! watch; its name is the watch id. Parsing here checks everything a watch
//! can hold and reports what esalert can't run (Painless outside the
//! supported language, action types such as `pagerduty`) with the file and
//! position; Painless conditions and transforms compile here
//! ([`crate::condition::painless`]), stored scripts are resolved here.
//! Execution ([`exec`]) reuses the search client, the store, the notifiers
//! and the log.

pub mod exec;
pub mod mustache;
pub mod schedule;

use std::time::Duration;

use serde_json::{Map, Value};

use crate::alert::Schedule;
use crate::alert::locate::{Position, Seg, locate};
use crate::condition::painless::stored;
use crate::condition::{Condition, ConditionSpec, PainlessScript, Path, painless_check};
use crate::datemath;
use mustache::Template;

/// Whether a parsed file is a watch rather than a native alert.
pub fn is_watch(v: &Value) -> bool {
    v.get("trigger").is_some() && v.get("input").is_some()
}

/// A template: a string, or `{"source": "...", "params": {...}}`.
#[derive(Debug, Clone)]
pub struct Tmpl {
    /// The compiled template.
    pub template: Template,
    /// `params`, visible as top-level names.
    pub params: Map<String, Value>,
}

impl Tmpl {
    /// Renders against `model` (whose root holds `ctx`); output over the
    /// limits is cut, with a note (see [`try_render`](Self::try_render)).
    pub fn render(&self, model: &Value) -> String {
        match self.try_render(model) {
            Ok(s) => s,
            Err(mustache::RenderLimit { partial, reason }) => {
                format!("{partial}\n[esalert: {reason}]")
            }
        }
    }

    /// Renders against `model`, failing at the limits of
    /// [`Template::try_render`].
    pub fn try_render(&self, model: &Value) -> Result<String, mustache::RenderLimit> {
        self.try_render_escaped(model, |s| s.to_owned())
    }

    /// [`try_render`](Self::try_render) with every value passed through `esc`.
    pub fn try_render_escaped(
        &self,
        model: &Value,
        esc: fn(&str) -> String,
    ) -> Result<String, mustache::RenderLimit> {
        if self.params.is_empty() {
            return self.template.try_render_escaped(model, esc);
        }
        let mut m = self.params.clone();
        if let Value::Object(root) = model {
            m.extend(root.clone());
        }
        self.template.try_render_escaped(&Value::Object(m), esc)
    }
}

/// A search request of an input or transform.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// Index names; date math such as `<logs-{now/d}>` is resolved per run.
    pub indices: Vec<String>,
    /// The body; string values are Mustache templates.
    pub body: Value,
    /// `search_type`, passed as a URL parameter.
    pub search_type: Option<String>,
    /// `indices_options`, passed as URL parameters.
    pub indices_options: Map<String, Value>,
    /// Whether `hits.total` is a number (Watcher's default: true).
    pub rest_total_hits_as_int: bool,
    /// Keys of the response to keep (`extract`), dotted paths.
    pub extract: Option<Vec<String>>,
    /// Search timeout.
    pub timeout: Option<Duration>,
}

/// An HTTP request (the `http` input and the `webhook` action).
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// `http` or `https`.
    pub scheme: String,
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path (a template).
    pub path: Option<Tmpl>,
    /// A full URL instead of scheme/host/port/path.
    pub url: Option<Tmpl>,
    /// Method, upper case.
    pub method: String,
    /// Query parameters (values are templates).
    pub params: Vec<(String, Tmpl)>,
    /// Headers (values are templates).
    pub headers: Vec<(String, Tmpl)>,
    /// Body (a template).
    pub body: Option<Tmpl>,
    /// Basic auth.
    pub auth: Option<(String, String)>,
    /// Connection timeout.
    pub connection_timeout: Option<Duration>,
    /// Read timeout.
    pub read_timeout: Option<Duration>,
}

/// Where the payload comes from.
#[derive(Debug, Clone)]
pub enum Input {
    /// A search.
    Search(Box<SearchRequest>),
    /// A constant payload.
    Simple(Value),
    /// An HTTP request.
    Http(Box<HttpRequest>),
    /// Several inputs, each under its name.
    Chain(Vec<(String, Input)>),
    /// No input.
    None,
}

/// A transform.
#[derive(Debug, Clone)]
pub enum Transform {
    /// A search whose response replaces the payload.
    Search(Box<SearchRequest>),
    /// Transforms applied in order.
    Chain(Vec<Transform>),
    /// A Painless script: a returned map is the new payload, anything
    /// else becomes `{"_value": …}`, as in Watcher.
    Script(Box<PainlessScript>),
}

/// What an action does.
#[derive(Debug, Clone)]
pub enum ActionKind {
    /// Write `text` to alerts.log at `level`.
    Logging {
        /// info, warn, error, debug.
        level: String,
        /// The text.
        text: Tmpl,
    },
    /// Post to Slack.
    Slack {
        /// Channels and users (`message.to`).
        to: Vec<Tmpl>,
        /// `message.from`, shown as the sender name.
        from: Option<Tmpl>,
        /// `message.text`.
        text: Option<Tmpl>,
        /// `message.attachments`, string values templated.
        attachments: Vec<Value>,
        /// `message.dynamic_attachments`.
        dynamic: Option<(String, Value)>,
    },
    /// Send an email.
    Email {
        /// Recipients.
        to: Vec<Tmpl>,
        /// Cc.
        cc: Vec<Tmpl>,
        /// Bcc.
        bcc: Vec<Tmpl>,
        /// Reply-To.
        reply_to: Vec<Tmpl>,
        /// Subject.
        subject: Option<Tmpl>,
        /// Text body.
        text: Option<Tmpl>,
        /// HTML body.
        html: Option<Tmpl>,
        /// low, normal, high…
        priority: Option<String>,
        /// Data attachments: (name, "json" | "yaml").
        attachments: Vec<(String, String)>,
    },
    /// An HTTP request.
    Webhook(HttpRequest),
    /// Index the payload.
    Index {
        /// The index.
        index: String,
        /// A fixed document id.
        doc_id: Option<String>,
        /// A field set to the execution time.
        execution_time_field: Option<String>,
    },
}

impl ActionKind {
    /// The Watcher name of the action type.
    pub fn type_name(&self) -> &'static str {
        match self {
            ActionKind::Logging { .. } => "logging",
            ActionKind::Slack { .. } => "slack",
            ActionKind::Email { .. } => "email",
            ActionKind::Webhook(_) => "webhook",
            ActionKind::Index { .. } => "index",
        }
    }
}

/// One action.
#[derive(Debug, Clone)]
pub struct Action {
    /// Its id.
    pub id: String,
    /// What it does.
    pub kind: ActionKind,
    /// Its own condition.
    pub condition: Option<Condition>,
    /// Its own transform.
    pub transform: Option<Transform>,
    /// `foreach`: a path to an array; the action runs per element.
    pub foreach: Option<Path>,
    /// Most elements `foreach` handles (default 100).
    pub max_iterations: usize,
    /// Its throttle period.
    pub throttle: Option<Duration>,
}

/// A parsed watch.
#[derive(Debug, Clone)]
pub struct Watch {
    /// The watch id (file stem).
    pub id: String,
    /// When it runs.
    pub schedule: Schedule,
    /// Its time zone.
    pub timezone: Option<chrono_tz::Tz>,
    /// The input.
    pub input: Input,
    /// The condition (default always).
    pub condition: Condition,
    /// The watch-level transform.
    pub transform: Option<Transform>,
    /// The actions, in file order.
    pub actions: Vec<Action>,
    /// Watch-level throttle period.
    pub throttle: Option<Duration>,
    /// `metadata`, as `ctx.metadata`.
    pub metadata: Value,
}

/// A problem found in a watch: where and what.
pub type Found = (Vec<Seg>, String);

struct P<'a> {
    problems: Vec<Found>,
    _text: &'a str,
    /// Where stored scripts (`{"id": …}`) are looked up.
    scripts: &'a std::path::Path,
}

impl P<'_> {
    fn err(&mut self, at: &[Seg], msg: impl Into<String>) {
        self.problems.push((at.to_vec(), msg.into()));
    }
}

/// Reports every key of `obj` that is not in `keys`: a typo must be an
/// error, not a setting that silently falls back to its default.
fn only(p: &mut P, at: &[Seg], obj: &Value, keys: &[&str], what: &str) {
    let Some(m) = obj.as_object() else { return };
    for k in m.keys().filter(|k| !keys.contains(&k.as_str())) {
        p.err(
            &key(at, k),
            format!(
                "unknown key {k:?} in {what}; use one of {}",
                keys.join(", ")
            ),
        );
    }
}

fn key(path: &[Seg], k: &str) -> Vec<Seg> {
    let mut p = path.to_vec();
    p.push(Seg::key(k));
    p
}

/// A `script` of a condition or transform: inline source, or a stored
/// script by `id`, compiled.
fn painless(p: &mut P, at: &[Seg], v: &Value) -> Option<PainlessScript> {
    let body = match v {
        Value::String(s) => Value::String(s.clone()),
        Value::Object(m) => {
            if let Some(lang) = m.get("lang").and_then(Value::as_str)
                && lang != "painless"
            {
                p.err(
                    &key(at, "lang"),
                    format!("script lang {lang:?} cannot run; esalert runs Painless scripts"),
                );
                return None;
            }
            match m.get("id").or(m.get("stored")).and_then(Value::as_str) {
                Some(id) => match stored::resolve(p.scripts, id) {
                    Ok(src) => {
                        let mut b = Map::new();
                        b.insert("source".into(), Value::String(src));
                        if let Some(params) = m.get("params") {
                            b.insert("params".into(), params.clone());
                        }
                        Value::Object(b)
                    }
                    Err(e) => {
                        p.err(at, e.to_string());
                        return None;
                    }
                },
                None => v.clone(),
            }
        }
        other => {
            p.err(
                at,
                format!("a script is a string or {{\"source\": \"...\"}}, found {other}"),
            );
            return None;
        }
    };
    match PainlessScript::compile(&body) {
        Ok(s) => Some(s),
        Err(e) => {
            p.err(at, e);
            None
        }
    }
}

fn tmpl(p: &mut P, at: &[Seg], v: &Value) -> Option<Tmpl> {
    let (src, params) = match v {
        Value::String(s) => (s.clone(), Map::new()),
        Value::Object(m) if m.contains_key("source") || m.contains_key("inline") => {
            if m.get("lang")
                .and_then(Value::as_str)
                .is_some_and(|l| l != "mustache")
            {
                p.err(at, "only mustache templates are supported");
                return None;
            }
            let src = m
                .get("source")
                .or(m.get("inline"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let params = m
                .get("params")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            (src, params)
        }
        Value::Object(m) if m.contains_key("id") => {
            p.err(
                at,
                "stored templates (`id`) are not supported; inline the template as `source`",
            );
            return None;
        }
        other => (mustache::display(other), Map::new()),
    };
    match Template::parse(&src) {
        Ok(template) => Some(Tmpl { template, params }),
        Err(e) => {
            p.err(at, format!("template: {e}"));
            None
        }
    }
}

fn tmpl_list(p: &mut P, at: &[Seg], v: Option<&Value>) -> Vec<Tmpl> {
    match v {
        None => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .filter_map(|(i, x)| {
                let mut q = at.to_vec();
                q.push(Seg::Index(i));
                tmpl(p, &q, x)
            })
            .collect(),
        // "to": "a@x, b@y" is a list too.
        Some(Value::String(s)) => s
            .split(',')
            .filter(|x| !x.trim().is_empty())
            .filter_map(|x| tmpl(p, at, &Value::String(x.trim().to_owned())))
            .collect(),
        Some(other) => tmpl(p, at, other).into_iter().collect(),
    }
}

/// A duration in milliseconds, as Watcher's `*_in_millis` keys and bare
/// numbers give them; at most [`crate::alert::MAX_DURATION`].
fn millis(p: &mut P, at: &[Seg], v: &Value) -> Option<Duration> {
    let Some(ms) = v.as_u64() else {
        p.err(at, format!("expected a number of milliseconds, found {v}"));
        return None;
    };
    match crate::alert::check_max(&format!("{ms} ms"), Duration::from_millis(ms)) {
        Ok(d) => Some(d),
        Err(e) => {
            p.err(at, e);
            None
        }
    }
}

fn duration(p: &mut P, at: &[Seg], v: &Value) -> Option<Duration> {
    match v {
        Value::Number(_) => millis(p, at, v),
        Value::String(s) => match crate::alert::HumanDuration::parse(s) {
            Ok(d) => Some(d.value),
            Err(e) => {
                p.err(at, e);
                None
            }
        },
        other => {
            p.err(
                at,
                format!("expected a duration like \"5m\", found {other}"),
            );
            None
        }
    }
}

fn throttle(p: &mut P, at: &[Seg], obj: &Map<String, Value>) -> Option<Duration> {
    if let Some(v) = obj.get("throttle_period") {
        return duration(p, &key(at, "throttle_period"), v);
    }
    let v = obj.get("throttle_period_in_millis")?;
    millis(p, &key(at, "throttle_period_in_millis"), v)
}

fn search_request(p: &mut P, at: &[Seg], v: &Value) -> Option<SearchRequest> {
    let req = v.get("request").unwrap_or(v);
    let at_req = if v.get("request").is_some() {
        only(
            p,
            at,
            v,
            &["request", "extract", "timeout"],
            "a search input",
        );
        key(at, "request")
    } else {
        at.to_vec()
    };
    only(
        p,
        &at_req,
        req,
        &[
            "indices",
            "body",
            "search_type",
            "indices_options",
            "rest_total_hits_as_int",
            "template",
            "types",
        ],
        "a search request",
    );
    if req.get("template").is_some() {
        p.err(
            &key(&at_req, "template"),
            "search templates are not supported; put the query in `body`",
        );
    }
    let indices = match req.get("indices") {
        Some(Value::String(s)) => s.split(',').map(|x| x.trim().to_owned()).collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        None => vec!["_all".to_owned()],
        Some(other) => {
            p.err(
                &key(&at_req, "indices"),
                format!("`indices` must be a string or an array, found {other}"),
            );
            Vec::new()
        }
    };
    for i in &indices {
        if let Err(e) = datemath::index_name(i, chrono::Utc::now()) {
            p.err(&key(&at_req, "indices"), e);
        }
    }
    let timeout = v
        .get("timeout")
        .and_then(|t| duration(p, &key(at, "timeout"), t));
    Some(SearchRequest {
        indices,
        body: req
            .get("body")
            .cloned()
            .unwrap_or_else(|| Value::Object(Map::new())),
        search_type: req
            .get("search_type")
            .and_then(Value::as_str)
            .map(str::to_owned),
        indices_options: req
            .get("indices_options")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        rest_total_hits_as_int: req
            .get("rest_total_hits_as_int")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        extract: v.get("extract").and_then(Value::as_array).map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        }),
        timeout,
    })
}

fn http_request(p: &mut P, at: &[Seg], req: &Value) -> Option<HttpRequest> {
    let Value::Object(m) = req else {
        p.err(at, "an http request must be an object");
        return None;
    };
    // Unknown keys are mistakes: a typo must not fall back to a default.
    const KEYS: &[&str] = &[
        "scheme",
        "host",
        "port",
        "path",
        "method",
        "headers",
        "params",
        "url",
        "auth",
        "body",
        "connection_timeout",
        "connection_timeout_in_millis",
        "read_timeout",
        "read_timeout_in_millis",
    ];
    for k in m.keys().filter(|k| !KEYS.contains(&k.as_str())) {
        p.err(
            &key(at, k),
            format!(
                "unknown key {k:?} in an http request; use one of {}",
                KEYS.join(", ")
            ),
        );
    }
    let url = m.get("url").and_then(|u| tmpl(p, &key(at, "url"), u));
    let port = match m.get("port") {
        None if url.is_some() => 0,
        None => {
            p.err(
                at,
                "an http request with `host` needs `port` (80 and 443 are not assumed)",
            );
            0
        }
        Some(v) => match v.as_u64().and_then(|x| u16::try_from(x).ok()) {
            Some(x) if x > 0 => x,
            _ => {
                p.err(
                    &key(at, "port"),
                    format!("`port` must be a number from 1 to 65535, found {v}"),
                );
                0
            }
        },
    };
    let host = m
        .get("host")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if url.is_none() && host.is_empty() {
        p.err(
            at,
            "an http request needs `host` (with `port` and `path`) or `url`",
        );
    }
    let pairs = |p: &mut P, name: &str| -> Vec<(String, Tmpl)> {
        m.get(name)
            .and_then(Value::as_object)
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| {
                        tmpl(p, &key(&key(at, name), k), v).map(|t| (k.clone(), t))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let params = pairs(p, "params");
    let headers = pairs(p, "headers");
    let auth = m.get("auth").and_then(|a| a.get("basic")).map(|b| {
        (
            b.get("username")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            b.get("password")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        )
    });
    Some(HttpRequest {
        scheme: m
            .get("scheme")
            .and_then(Value::as_str)
            .unwrap_or("http")
            .to_owned(),
        port,
        host,
        path: m.get("path").and_then(|x| tmpl(p, &key(at, "path"), x)),
        url,
        method: m
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or("GET")
            .to_ascii_uppercase(),
        params,
        headers,
        body: m.get("body").and_then(|b| tmpl(p, &key(at, "body"), b)),
        auth,
        connection_timeout: m
            .get("connection_timeout")
            .and_then(|d| duration(p, &key(at, "connection_timeout"), d))
            .or_else(|| {
                m.get("connection_timeout_in_millis")
                    .and_then(|d| millis(p, &key(at, "connection_timeout_in_millis"), d))
            }),
        read_timeout: m
            .get("read_timeout")
            .and_then(|d| duration(p, &key(at, "read_timeout"), d))
            .or_else(|| {
                m.get("read_timeout_in_millis")
                    .and_then(|d| millis(p, &key(at, "read_timeout_in_millis"), d))
            }),
    })
}

fn input(p: &mut P, at: &[Seg], v: &Value) -> Option<Input> {
    let Value::Object(m) = v else {
        p.err(at, "`input` must be an object");
        return None;
    };
    let (kind, body) = m.iter().next()?;
    let here = key(at, kind);
    match kind.as_str() {
        "search" => search_request(p, &here, body).map(|r| Input::Search(Box::new(r))),
        "simple" => Some(Input::Simple(body.clone())),
        "http" => http_request(
            p,
            &key(&here, "request"),
            body.get("request").unwrap_or(body),
        )
        .map(|r| Input::Http(Box::new(r))),
        "none" => Some(Input::None),
        "chain" => {
            let mut out = Vec::new();
            for (i, item) in body
                .get("inputs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let at_i = [key(&here, "inputs"), vec![Seg::Index(i)]].concat();
                if let Some((name, inner)) = item.as_object().and_then(|o| o.iter().next())
                    && let Some(x) = input(p, &key(&at_i, name), inner)
                {
                    out.push((name.clone(), x));
                }
            }
            Some(Input::Chain(out))
        }
        other => {
            p.err(
                &here,
                format!("input type {other:?} is not supported; use search, simple, http or chain"),
            );
            None
        }
    }
}

fn condition(p: &mut P, at: &[Seg], v: &Value) -> Option<Condition> {
    if let Some(Value::Object(m)) = Some(v)
        && let Some(script) = m.get("script")
    {
        return painless(p, &key(at, "script"), script).map(painless_check::condition);
    }
    let compiled = ConditionSpec::parse(v, &|k| k != "script")
        .and_then(|spec| Condition::compile_without_scripts(spec).map_err(|e| e.to_string()));
    match compiled {
        Ok(c) => Some(c),
        Err(e) => {
            let here = match v.as_object().and_then(|m| m.keys().next()) {
                Some(k) => key(at, k),
                None => at.to_vec(),
            };
            p.err(&here, e);
            None
        }
    }
}

fn transform(p: &mut P, at: &[Seg], v: &Value) -> Option<Transform> {
    let (kind, body) = v.as_object().and_then(|o| o.iter().next())?;
    let here = key(at, kind);
    match kind.as_str() {
        "search" => search_request(p, &here, body).map(|r| Transform::Search(Box::new(r))),
        "chain" => {
            let items = body.as_array().cloned().unwrap_or_default();
            let mut out = Vec::new();
            for (i, t) in items.iter().enumerate() {
                let at_i = [here.clone(), vec![Seg::Index(i)]].concat();
                if let Some(x) = transform(p, &at_i, t) {
                    out.push(x);
                }
            }
            Some(Transform::Chain(out))
        }
        "script" => painless(p, &here, body).map(|s| Transform::Script(Box::new(s))),
        other => {
            p.err(
                &here,
                format!("transform type {other:?} is not supported; use search, script or chain"),
            );
            None
        }
    }
}

const KNOWN_ACTION_KEYS: &[&str] = &[
    "condition",
    "transform",
    "foreach",
    "max_iterations",
    "throttle_period",
    "throttle_period_in_millis",
];

fn action(p: &mut P, at: &[Seg], id: &str, v: &Value) -> Option<Action> {
    let Value::Object(m) = v else {
        p.err(at, "an action must be an object");
        return None;
    };
    let kinds: Vec<&String> = m
        .keys()
        .filter(|k| !KNOWN_ACTION_KEYS.contains(&k.as_str()))
        .collect();
    let Some(kind) = kinds.first() else {
        p.err(
            at,
            format!("action {id:?} has no type (logging, slack, email, webhook, index)"),
        );
        return None;
    };
    // An action has one type; a second "type" is a misspelt key that
    // Watcher would refuse and that would otherwise be ignored here.
    for extra in kinds.iter().skip(1) {
        p.err(
            &key(at, extra),
            format!(
                "action {id:?} has a `{kind}` type already; `{extra}` is not an action key ({})",
                KNOWN_ACTION_KEYS.join(", ")
            ),
        );
    }
    let body = &m[*kind];
    let here = key(at, kind);
    let obj = body.as_object().cloned().unwrap_or_default();
    let keys: &[&str] = match kind.as_str() {
        "logging" => &["text", "level", "category"],
        "slack" => &["message", "account", "proxy"],
        "email" => &[
            "to",
            "cc",
            "bcc",
            "reply_to",
            "subject",
            "body",
            "priority",
            "attachments",
            "from",
            "account",
        ],
        "index" => &[
            "index",
            "doc_id",
            "execution_time_field",
            "timeout",
            "refresh",
            "op_type",
        ],
        _ => &[],
    };
    if !keys.is_empty() {
        only(p, &here, body, keys, &format!("a {kind} action"));
    }
    if kind.as_str() == "slack"
        && let Some(msg) = body.get("message")
    {
        only(
            p,
            &key(&here, "message"),
            msg,
            &[
                "to",
                "from",
                "text",
                "icon",
                "attachments",
                "dynamic_attachments",
            ],
            "a slack message",
        );
    }
    if kind.as_str() == "index" && body.get("index").and_then(Value::as_str).is_none() {
        p.err(
            &here,
            "an index action needs `index`, the index to write to",
        );
    }
    let kind = match kind.as_str() {
        "logging" => ActionKind::Logging {
            level: obj
                .get("level")
                .and_then(Value::as_str)
                .unwrap_or("info")
                .to_owned(),
            text: tmpl(
                p,
                &key(&here, "text"),
                obj.get("text").unwrap_or(&Value::String(String::new())),
            )?,
        },
        "slack" => {
            let msg = obj.get("message").cloned().unwrap_or_default();
            let mat = key(&here, "message");
            let dynamic = msg.get("dynamic_attachments").map(|d| {
                (
                    d.get("list_path")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    d.get("attachment_template").cloned().unwrap_or_default(),
                )
            });
            ActionKind::Slack {
                to: tmpl_list(p, &key(&mat, "to"), msg.get("to")),
                from: msg.get("from").and_then(|f| tmpl(p, &key(&mat, "from"), f)),
                text: msg.get("text").and_then(|t| tmpl(p, &key(&mat, "text"), t)),
                attachments: msg
                    .get("attachments")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                dynamic,
            }
        }
        "email" => {
            let (text, html) = match obj.get("body") {
                None => (None, None),
                Some(Value::Object(b)) if b.contains_key("text") || b.contains_key("html") => (
                    b.get("text")
                        .and_then(|t| tmpl(p, &key(&key(&here, "body"), "text"), t)),
                    b.get("html")
                        .and_then(|t| tmpl(p, &key(&key(&here, "body"), "html"), t)),
                ),
                Some(b) => (tmpl(p, &key(&here, "body"), b), None),
            };
            let attachments = obj
                .get("attachments")
                .and_then(Value::as_object)
                .map(|a| {
                    a.iter()
                        .filter_map(|(name, spec)| {
                            let at_a = key(&key(&here, "attachments"), name);
                            match spec.get("data") {
                                Some(d) => {
                                    let f = d.get("format").and_then(Value::as_str).unwrap_or("json").to_owned();
                                    if f != "json" && f != "yaml" {
                                        p.err(&at_a, format!("data attachment format {f:?}: use json or yaml"));
                                        return None;
                                    }
                                    Some((name.clone(), f))
                                }
                                None => {
                                    p.err(&at_a, "only `data` attachments are supported (not http or reporting)");
                                    None
                                }
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            ActionKind::Email {
                to: tmpl_list(p, &key(&here, "to"), obj.get("to")),
                cc: tmpl_list(p, &key(&here, "cc"), obj.get("cc")),
                bcc: tmpl_list(p, &key(&here, "bcc"), obj.get("bcc")),
                reply_to: tmpl_list(p, &key(&here, "reply_to"), obj.get("reply_to")),
                subject: obj
                    .get("subject")
                    .and_then(|s| tmpl(p, &key(&here, "subject"), s)),
                text,
                html,
                priority: obj
                    .get("priority")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                attachments,
            }
        }
        "webhook" => ActionKind::Webhook(http_request(p, &here, body)?),
        "index" => ActionKind::Index {
            index: obj
                .get("index")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            doc_id: obj.get("doc_id").and_then(Value::as_str).map(str::to_owned),
            execution_time_field: obj
                .get("execution_time_field")
                .and_then(Value::as_str)
                .map(str::to_owned),
        },
        other => {
            p.err(&here, format!("action type {other:?} (action {id:?}) is not supported; esalert runs logging, slack, email, webhook and index actions"));
            return None;
        }
    };
    Some(Action {
        id: id.to_owned(),
        condition: m
            .get("condition")
            .and_then(|c| condition(p, &key(at, "condition"), c)),
        transform: m
            .get("transform")
            .and_then(|t| transform(p, &key(at, "transform"), t)),
        foreach: m.get("foreach").and_then(Value::as_str).map(Path::parse),
        max_iterations: m
            .get("max_iterations")
            .and_then(Value::as_u64)
            .unwrap_or(100) as usize,
        throttle: throttle(p, at, m),
        kind,
    })
}

const WATCH_KEYS: &[&str] = &[
    "trigger",
    "input",
    "condition",
    "transform",
    "actions",
    "metadata",
    "throttle_period",
    "throttle_period_in_millis",
    "status",
];

/// Parses a watch; on failure, every problem with its place in the file.
/// Stored scripts are looked up in `./scripts`.
pub fn parse(id: &str, text: &str, v: &Value) -> Result<Watch, Vec<(Option<Position>, String)>> {
    parse_in(id, text, v, std::path::Path::new("scripts"))
}

/// [`parse`] with stored scripts looked up in `scripts`.
pub fn parse_in(
    id: &str,
    text: &str,
    v: &Value,
    scripts: &std::path::Path,
) -> Result<Watch, Vec<(Option<Position>, String)>> {
    let mut p = P {
        problems: Vec::new(),
        _text: text,
        scripts,
    };
    let m = v.as_object().cloned().unwrap_or_default();
    for k in m.keys() {
        if !WATCH_KEYS.contains(&k.as_str()) {
            p.err(
                &[Seg::key(k)],
                format!(
                    "unknown watch key `{k}`; a watch has {}",
                    WATCH_KEYS.join(", ")
                ),
            );
        }
    }
    let sched_v = m.get("trigger").and_then(|t| t.get("schedule"));
    let sched = match sched_v {
        Some(s) => match schedule::parse(s) {
            Ok(x) => Some(x),
            Err(e) => {
                p.err(&[Seg::key("trigger"), Seg::key("schedule")], e);
                None
            }
        },
        None => {
            p.err(&[Seg::key("trigger")], "`trigger` needs a `schedule`");
            None
        }
    };
    let input_v = input(&mut p, &[Seg::key("input")], &m["input"]);
    let cond = match m.get("condition") {
        Some(c) => condition(&mut p, &[Seg::key("condition")], c),
        None => Some(Condition::always()),
    };
    let tr = m
        .get("transform")
        .and_then(|t| transform(&mut p, &[Seg::key("transform")], t));
    let mut actions = Vec::new();
    if let Some(Value::Object(acts)) = m.get("actions") {
        for (aid, a) in acts {
            if let Some(x) = action(&mut p, &[Seg::key("actions"), Seg::key(aid)], aid, a) {
                actions.push(x);
            }
        }
    }
    let throttle_v = throttle(&mut p, &[], &m);
    if !p.problems.is_empty() {
        return Err(p
            .problems
            .into_iter()
            .map(|(at, msg)| (locate(text, &at), msg))
            .collect());
    }
    let (schedule, timezone) = sched.expect("no problems");
    Ok(Watch {
        id: id.to_owned(),
        schedule,
        timezone,
        input: input_v.unwrap_or(Input::None),
        condition: cond.unwrap_or_else(Condition::always),
        transform: tr,
        actions,
        throttle: throttle_v,
        metadata: m
            .get("metadata")
            .cloned()
            .unwrap_or(Value::Object(Map::new())),
    })
}

/// Where `esalert ack` leaves a request for a running daemon: the store is
/// locked by the daemon, so the request waits beside it until the watch's
/// next run applies it.
pub fn ack_request_path(store: &std::path::Path, watch: &str) -> std::path::PathBuf {
    let mut dir = store.as_os_str().to_owned();
    dir.push(".acks");
    std::path::PathBuf::from(dir).join(format!("{watch}.json"))
}

/// Takes (reads and removes) a pending ack request: the action ids, empty
/// for every action.
pub fn take_ack_request(path: &std::path::Path) -> Option<Vec<String>> {
    // A list of action ids: small. Refuse anything else unread.
    let bytes = crate::alert::read_regular(path, 64 * 1024).ok();
    let _ = std::fs::remove_file(path);
    serde_json::from_slice(&bytes?).ok()
}

/// Acknowledges actions as Watcher's ack API does: only `ackable` actions
/// become `acked`. Returns the ids acked.
pub fn ack(
    acks: &mut std::collections::BTreeMap<String, crate::throttle::AckState>,
    watch: &Watch,
    ids: &[String],
) -> Vec<String> {
    use crate::throttle::AckState;
    let mut acked = Vec::new();
    for a in &watch.actions {
        if !ids.is_empty() && !ids.contains(&a.id) {
            continue;
        }
        let st = acks.entry(a.id.clone()).or_default();
        if *st == AckState::Ackable {
            *st = AckState::Acked;
            acked.push(a.id.clone());
        }
    }
    acked
}

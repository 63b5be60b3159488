//! ElastAlert 2 rules: `queries/<id>.yaml` (or `.yml`), read as ElastAlert
//! 2 reads them and compiled onto the pipeline's stages:
//!
//! - the rule type ([`types`]) searches the window and finds matches;
//! - `query_key` is the match's group key, so throttles, deliveries owed
//!   and resolutions are per key, as ElastAlert's silences are;
//! - `realert` is each action's throttle, `exponential_realert` the
//!   policy's `throttle_backoff`, `aggregation` (a duration) its `digest`;
//! - alerters become destinations the rule configures itself
//!   ([`Message::Inline`]), `debug` a line in alerts.log.
//!
//! Unsupported ElastAlert features are reported by name by `esalert check`
//! and the rest of the rule is still validated.

mod alerters;
pub mod check;
pub mod globals;
mod known;
pub mod query;
pub mod text;
pub mod types;
pub mod yaml;

use std::any::Any;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde_json::{Map, Value};

use self::alerters::Alerter;
use self::check::{Checker, python_str};
use self::query::TsType;
use self::text::{Text, TextType};
use self::types::{Match, RuleType};
use super::FrontEnd;
use crate::alert::{HumanDuration, LoadError, Problem, Schedule};
use crate::condition::ScriptEngine;
use crate::notify::Notification;
use crate::pipeline::digest::{Close, Digest, DigestFormat, TableField, TableStyle};
use crate::render::Rendered;
use crate::rule::{
    Backoff, EvalContext, EvalError, Evaluated, Foldable, Notice, Plan, PlannedAction, Policy,
    Rule, RuleBody,
};
use crate::throttle::{RULE_SCOPE, WHOLE_RULE};

/// The file extensions this front end reads.
pub const EXTENSIONS: &[&str] = &["yaml", "yml"];

/// Reads ElastAlert 2 rule files.
pub struct ElastAlertFrontEnd;

impl FrontEnd for ElastAlertFrontEnd {
    fn name(&self) -> &'static str {
        "elastalert"
    }

    fn extensions(&self) -> &'static [&'static str] {
        EXTENSIONS
    }

    fn claims(&self, _raw: &Value) -> bool {
        // JSON files are never ElastAlert rules.
        false
    }

    fn load(
        &self,
        name: &str,
        path: &Path,
        text: &str,
        _raw: &Value,
        _scripts: &ScriptEngine,
    ) -> Result<Rule, LoadError> {
        load(name, path, text)
    }
}

/// What every rule type reads: the search, the key, the text.
#[derive(Debug)]
pub struct Common {
    /// The file stem, esalert's id for the rule.
    pub id: String,
    /// Index patterns.
    pub index: Vec<String>,
    /// `timestamp_field`.
    pub timestamp_field: String,
    /// `timestamp_type` / `timestamp_format`.
    pub timestamp_type: TsType,
    /// `filter`.
    pub filters: Vec<Value>,
    /// `include`, with the fields ElastAlert adds; `None` for everything.
    pub include: Option<Vec<String>>,
    /// `max_query_size`.
    pub max_query_size: u64,
    /// `query_key`, one field or a compound key.
    pub query_key: Option<Vec<String>>,
    /// `realert`.
    pub realert: Duration,
    /// The texts.
    pub text: Text,
    /// The rule as written, for arguments that name the rule's own keys.
    pub raw: Map<String, Value>,
    /// `scan_entire_timeframe`: the `timeframe` a stateful type's first
    /// run looks back over.
    pub scan_timeframe: Option<Duration>,
}

impl Common {
    /// The `query_key` value of a document, as ElastAlert forms it: a
    /// compound key's values joined with ", ", `_missing` when absent.
    pub fn key_of(&self, doc: &Map<String, Value>) -> Option<String> {
        let qk = self.query_key.as_ref()?;
        let doc = Value::Object(doc.clone());
        if qk.len() > 1 {
            return Some(
                qk.iter()
                    .map(|k| query::lookup(&doc, k).map_or("None".to_owned(), python_str))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
        let k = qk.first()?;
        Some(match query::lookup(&doc, k) {
            Some(Value::Null) | None => "_missing".to_owned(),
            Some(v) => python_str(v),
        })
    }

    /// A document as ElastAlert's match: its time written back as the
    /// documents write it (`add_match`).
    pub fn as_match(&self, mut doc: Map<String, Value>, time: DateTime<Utc>) -> Map<String, Value> {
        if doc.contains_key(&self.timestamp_field) {
            doc.insert(
                self.timestamp_field.clone(),
                self.timestamp_type.format(time),
            );
        }
        doc
    }

    /// The window to search: the run's, except that a stateful type's
    /// first run (no memory yet) with `scan_entire_timeframe` starts a
    /// `timeframe` before its end, so that its windows start full.
    pub fn first_window(&self, cx: &EvalContext<'_>) -> crate::render::Window {
        let mut w = cx.window;
        if let (Some(tf), None) = (self.scan_timeframe, cx.memory)
            && let Ok(tf) = chrono::Duration::from_std(tf)
            && let Some(start) = w.end.checked_sub_signed(tf)
        {
            w.start = w.start.min(start);
        }
        w
    }

    /// ElastAlert's `pretty_ts`, in UTC (ElastAlert uses the local zone of
    /// the machine it runs on).
    pub fn pretty_ts(&self, t: DateTime<Utc>) -> String {
        t.format("%Y-%m-%d %H:%M UTC").to_string()
    }
}

/// A compiled ElastAlert rule.
#[derive(Debug)]
pub struct ElastAlertRule {
    /// What every type reads.
    pub common: Common,
    /// The rule type's name.
    pub type_name: String,
    rule_type: Box<dyn RuleType>,
    alerters: Vec<Alerter>,
    top_counts: Option<TopCounts>,
    warnings: Vec<Problem>,
}

/// `top_count_keys`: the commonest values of some fields around a match.
#[derive(Debug)]
struct TopCounts {
    /// The fields, with `.keyword` added (`raw_count_keys`).
    keys: Vec<String>,
    /// `top_count_number`.
    number: u64,
    /// How far before the match to count (`timeframe`, twice for
    /// flatline, else 10 minutes).
    before: Duration,
    /// Whether `.keyword` is added to query_key fields in the key filter.
    raw: bool,
}

/// Keys every rule may have, whatever its type, that esalert reads.
const COMMON_KEYS: &[&str] = &[
    "name",
    "type",
    "index",
    "alert",
    "filter",
    "query_key",
    "realert",
    "exponential_realert",
    "aggregation",
    "aggregation_key",
    "aggregate_by_match_time",
    "summary_table_fields",
    "summary_table_type",
    "summary_table_max_rows",
    "summary_prefix",
    "summary_suffix",
    "timestamp_field",
    "timestamp_type",
    "timestamp_format",
    "query_delay",
    "buffer_time",
    "run_every",
    "include",
    "max_query_size",
    "description",
    "is_enabled",
    "alert_subject",
    "alert_subject_args",
    "alert_subject_max_len",
    "alert_text",
    "alert_text_args",
    "alert_text_kw",
    "alert_text_type",
    "alert_missing_value",
    "jinja_root_name",
    "jinja_template_path",
    "top_count_keys",
    "top_count_number",
    "raw_count_keys",
    "scan_entire_timeframe",
    "fold",
];

/// ElastAlert keys that only describe the rule or shape links into
/// Kibana/OpenSearch Dashboards: accepted and not used.
const IGNORED: &[&str] = &[
    "owner",
    "priority",
    "category",
    "subcategory",
    "short_description",
    "comments",
    "use_local_time",
    "custom_pretty_ts_format",
    "generate_kibana_discover_url",
    "generate_opensearch_discover_url",
    "shorten_kibana_discover_url",
    "kibana_discover_app_url",
    "kibana_discover_version",
    "kibana_discover_index_pattern_id",
    "kibana_discover_columns",
    "kibana_discover_from_timedelta",
    "kibana_discover_to_timedelta",
    "kibana_discover_security_tenant",
    "opensearch_discover_app_url",
    "opensearch_discover_version",
    "opensearch_discover_index_pattern_id",
    "opensearch_discover_columns",
    "opensearch_discover_from_timedelta",
    "opensearch_discover_to_timedelta",
    "kibana_url",
    "kibana_username",
    "kibana_password",
    "kibana_verify_certs",
    "use_strftime_index",
    // Shapes ElastAlert's own status index documents.
    "include_match_in_root",
    "add_metadata_alert",
];

/// Connection keys that belong in credentials.json.
const CONNECTION: &[&str] = &[
    "aws_region",
    "profile",
    "es_host",
    "es_port",
    "es_hosts",
    "es_username",
    "es_password",
    "es_bearer",
    "es_api_key",
    "es_url_prefix",
    "es_conn_timeout",
    "es_send_get_body_as",
    "use_ssl",
    "verify_certs",
    "ca_certs",
    "client_cert",
    "client_key",
];

/// The largest `max_query_size` (Elasticsearch's default result window).
const MAX_QUERY_SIZE: i64 = 10_000;

/// Whether a file with this extension is an ElastAlert rule.
pub fn is_rule_extension(ext: &str) -> bool {
    EXTENSIONS.contains(&ext)
}

/// Validates and compiles one rule file.
pub fn load(name: &str, path: &Path, text: &str) -> Result<Rule, LoadError> {
    let text = yaml::expand_vars(text, &|k| std::env::var(k).ok());
    let doc = yaml::parse(&text).map_err(|e| LoadError::one(path, Some(e.position), e.message))?;
    let Value::Object(top) = &doc.value else {
        return Err(LoadError::one(
            path,
            Some(crate::alert::locate::Position { line: 1, column: 1 }),
            "an ElastAlert rule is a YAML mapping with at least `name`, `type`, `index` and `alert`",
        ));
    };
    let globals = globals::load()?;
    let mut ch = Checker::new(path, &doc, top);
    let compiled = compile(name, &mut ch, &globals);
    let mut problems = std::mem::take(&mut ch.problems);
    match compiled {
        Some(rule) if problems.is_empty() => Ok(rule),
        _ => {
            if problems.is_empty() {
                problems.push(Problem {
                    path: path.to_owned(),
                    position: None,
                    message: "the rule is not valid".into(),
                });
            }
            // A refused rule's warnings are said with its problems.
            problems.extend(ch.warnings.drain(..).map(|mut w| {
                w.message = format!("warning: {}", w.message);
                w
            }));
            problems.sort_by_key(|p| p.position.map(|p| (p.line, p.column)));
            Err(LoadError::Invalid { problems })
        }
    }
}

fn compile(id: &str, ch: &mut Checker<'_>, g: &globals::Globals) -> Option<Rule> {
    let display = ch.string("name");
    let type_name = ch
        .require("type", "the rule type, e.g. `any` or `frequency`")
        .and(ch.string("type"));
    let index = ch
        .require("index", "the index pattern to search, e.g. `logs-*`")
        .and(ch.strings("index"));
    if ch.raw("alert").is_none() {
        ch.require("alert", "the alerters, e.g. `[slack]` or `debug`");
    }
    let def = match type_name.as_deref() {
        Some(t) => match types::of(t) {
            Some(d) => Some(d),
            None => {
                let msg = if types::NOT_YET.contains(&t) {
                    format!(
                        "rule type `{t}` is not supported by esalert yet; supported: {}",
                        supported_types()
                    )
                } else if t.contains('.') {
                    format!(
                        "custom rule type `{t}` is a Python class; esalert can't run it (supported: {})",
                        supported_types()
                    )
                } else {
                    format!("unknown rule type `{t}`; use one of {}", supported_types())
                };
                ch.problem("/type", msg);
                None
            }
        },
        None => None,
    };
    let alerters = alerters::read(ch, display.as_deref().unwrap_or(id));
    // An unknown or unsupported type: its keys aren't reported one by one.
    let all_type_keys: Vec<&str> = types::TYPES
        .iter()
        .flat_map(|t| t.keys.iter().copied())
        .chain(TYPE_KEYS_NOT_YET.iter().copied())
        .collect();
    let type_keys: &[&str] = match def {
        Some(d) => d.keys,
        None => &all_type_keys,
    };
    check_keys(ch, type_keys, &alerters.used_keys);

    let timestamp_field = ch
        .string("timestamp_field")
        .unwrap_or_else(|| "@timestamp".into());
    let timestamp_type = match ch.string("timestamp_type").map(|s| s.trim().to_lowercase()) {
        None => TsType::Iso,
        Some(t) => match t.as_str() {
            "iso" => TsType::Iso,
            "unix" => TsType::Unix,
            "unix_ms" => TsType::UnixMs,
            "custom" => match ch.string("timestamp_format") {
                Some(f) => TsType::Custom(f),
                None => {
                    ch.problem(
                        "/timestamp_type",
                        "`timestamp_type: custom` needs a `timestamp_format`",
                    );
                    TsType::Iso
                }
            },
            other => {
                ch.problem(
                    "/timestamp_type",
                    format!(
                        "`timestamp_type` must be iso, unix, unix_ms or custom, found `{other}`"
                    ),
                );
                TsType::Iso
            }
        },
    };
    let filters = read_filters(ch);
    let query_key = ch.strings("query_key");
    let mut include = ch.string_list("include");
    if let Some(inc) = &mut include {
        // ElastAlert adds what it needs to every document it fetches.
        inc.extend(query_key.iter().flatten().cloned());
        if let Some(ck) = ch.raw("compare_key").and_then(|v| match v {
            Value::String(s) => Some(vec![s.clone()]),
            Value::Array(a) => Some(
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        }) {
            inc.extend(ck);
        }
        inc.push(timestamp_field.clone());
        inc.sort();
        inc.dedup();
        if inc.iter().any(|f| f == "*") {
            include = None;
        }
    }
    let max_query_size = match ch.integer("max_query_size", 1) {
        Some(n) if n > MAX_QUERY_SIZE => {
            ch.problem(
                "/max_query_size",
                format!("`max_query_size` is at most {MAX_QUERY_SIZE} (one page of results)"),
            );
            MAX_QUERY_SIZE
        }
        Some(n) => n,
        None => g
            .max_query_size
            .unwrap_or(MAX_QUERY_SIZE)
            .min(MAX_QUERY_SIZE),
    };
    let aggregation = aggregation(ch);
    // ElastAlert: one minute, or none when matches are aggregated.
    let realert = ch.duration("realert").unwrap_or(if aggregation.is_some() {
        Duration::ZERO
    } else {
        g.realert.unwrap_or(Duration::from_secs(60))
    });
    let backoff = ch.duration("exponential_realert");
    let query_delay = ch.duration("query_delay").unwrap_or_default();
    let _buffer_time = ch.duration("buffer_time");
    let run_every = ch
        .duration("run_every")
        .or(g.run_every)
        .unwrap_or(Duration::from_secs(60));
    if run_every < Duration::from_secs(1) {
        ch.problem("/run_every", "`run_every` must be at least one second");
    }
    let active = ch.boolean("is_enabled").unwrap_or(true);
    // esalert's own: `fold: false` keeps the rule's count out of folds.
    let fold = ch.boolean("fold");
    let _ = ch.string("description");
    let text = read_text(ch, display.clone().unwrap_or_else(|| id.to_owned()));
    let digest_spec = match aggregation {
        Some(Aggregation::Every(d)) => {
            duration(d).map(|h| digest(ch, Close::After(h), text.text_type))
        }
        Some(Aggregation::Schedule(close)) => Some(digest(ch, close, text.text_type)),
        None => None,
    };

    let common = Common {
        id: id.to_owned(),
        index: index.unwrap_or_default(),
        timestamp_field,
        timestamp_type,
        filters,
        include,
        max_query_size: u64::try_from(max_query_size).unwrap_or(10_000),
        query_key,
        realert,
        text,
        raw: ch.top.clone(),
        scan_timeframe: match ch.boolean("scan_entire_timeframe") {
            Some(true) => match ch.raw("timeframe").and_then(|v| check::timedelta(v).ok()) {
                Some(tf) => Some(tf),
                None => {
                    ch.problem(
                        "/scan_entire_timeframe",
                        "`scan_entire_timeframe` needs a `timeframe`",
                    );
                    None
                }
            },
            _ => None,
        },
    };
    let raw = ch.boolean("raw_count_keys").unwrap_or(true);
    let top_counts = ch.string_list("top_count_keys").map(|keys| {
        let timeframe = ch.raw("timeframe").and_then(|v| check::timedelta(v).ok());
        TopCounts {
            keys: keys
                .into_iter()
                .map(|k| {
                    if raw && !k.ends_with(".keyword") {
                        format!("{k}.keyword")
                    } else {
                        k
                    }
                })
                .collect(),
            number: ch
                .integer("top_count_number", 1)
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(5),
            before: match (type_name.as_deref(), timeframe) {
                (Some("flatline"), Some(t)) => t.saturating_mul(2),
                (_, Some(t)) => t,
                (_, None) => Duration::from_secs(600),
            },
            raw,
        }
    });
    let mut common = common;
    let rule_type = def.and_then(|d| (d.build)(ch, &mut common));
    let (Some(rule_type), Some(type_name), true) = (rule_type, type_name, ch.problems.is_empty())
    else {
        return None;
    };
    let policy = Policy {
        digest: digest_spec,
        throttle_backoff: match backoff {
            Some(max) => Some(Backoff {
                factor: 2.0,
                max: duration(max)?,
            }),
            None => None,
        },
        fold,
        ..Policy::default()
    };
    Some(Rule {
        name: id.to_owned(),
        path: ch_path(ch),
        schedule: Schedule::Every(duration(run_every)?),
        timezone: None,
        active,
        query_delay,
        // ElastAlert's old_query_limit (a week by default there).
        max_catchup: g
            .old_query_limit
            .unwrap_or(Duration::from_secs(3600))
            .max(run_every),
        policy: Arc::new(policy),
        body: Arc::new(ElastAlertRule {
            common,
            type_name,
            rule_type,
            alerters: alerters.list,
            top_counts,
            warnings: std::mem::take(&mut ch.warnings),
        }),
    })
}

fn ch_path(ch: &Checker<'_>) -> std::path::PathBuf {
    ch.path().to_owned()
}

fn supported_types() -> String {
    types::TYPES
        .iter()
        .map(|t| t.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every key is one esalert reads, one it deliberately ignores, or a
/// problem: unknown (a typo), connection settings, or an ElastAlert
/// feature esalert does not have.
fn check_keys(ch: &mut Checker<'_>, type_keys: &[&str], alerter_keys: &[&'static str]) {
    let keys: Vec<String> = ch.top.keys().cloned().collect();
    for k in keys {
        let k = k.as_str();
        if COMMON_KEYS.contains(&k)
            || type_keys.contains(&k)
            || alerter_keys.contains(&k)
            || IGNORED.contains(&k)
        {
            continue;
        }
        let at = format!("/{}", yaml::escape(k));
        if CONNECTION.contains(&k) {
            connection_key(ch, k, &at);
        } else if k == "match_enhancements" || k == "run_enhancements_first" {
            ch.problem(
                &at,
                format!("`{k}`: enhancements are Python classes; esalert can't run them"),
            );
        } else if k == "import" {
            ch.problem(
                &at,
                "`import` is not supported by esalert yet; copy the imported keys into the rule",
            );
        } else if types::TYPES.iter().any(|t| t.keys.contains(&k))
            || type_key_not_yet(k)
            || IGNORED_OLD.contains(&k)
        {
            ch.warn(
                &at,
                format!("`{k}` does not apply to this rule type (ElastAlert ignores it, and so does esalert)"),
            );
        } else if alerters::is_alerter_key(k) {
            // An alerter's setting for an alerter the rule doesn't use:
            // ElastAlert ignores it too.
        } else if known::KNOWN.binary_search(&k).is_ok() {
            ch.problem(
                &at,
                format!("`{k}` is an ElastAlert option esalert does not support yet; remove it"),
            );
        } else {
            let near = known::KNOWN
                .iter()
                .map(|c| (strsim::jaro_winkler(k, c), *c))
                .filter(|(s, _)| *s > 0.9)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, c)| format!("; did you mean `{c}`?"))
                .unwrap_or_default();
            ch.warn(
                &at,
                format!("unknown key `{k}`{near} (ElastAlert ignores it, and so does esalert)"),
            );
        }
    }
}

/// A rule's own connection setting. ElastAlert lets a rule search another
/// cluster; esalert searches one, so the rule's settings must name that
/// same cluster (they are then ignored, as copies of the global ones).
fn connection_key(ch: &mut Checker<'_>, k: &str, at: &str) {
    match k {
        "es_host" | "es_port" | "use_ssl" | "es_url_prefix" => {
            if k != "es_host" && ch.raw("es_host").is_some() {
                return; // Said once, at es_host.
            }
            let host = ch.raw("es_host").and_then(Value::as_str);
            let port = ch.raw("es_port").and_then(Value::as_u64).unwrap_or(9200);
            let ssl = ch.raw("use_ssl").and_then(Value::as_bool).unwrap_or(false);
            let ours = globals::configured_cluster();
            let theirs = host.and_then(|h| {
                globals::host_port(&format!(
                    "{}://{h}:{port}",
                    if ssl { "https" } else { "http" }
                ))
            });
            match (theirs, ours) {
                (Some(t), Some(o)) if t != o => ch.problem(
                    at,
                    format!(
                        "this rule searches {}:{}, and esalert searches {}:{} (credentials.json); one esalert searches one cluster: remove the rule's connection settings, or run another esalert for that cluster",
                        t.0, t.1, o.0, o.1
                    ),
                ),
                _ => ch.warn(
                    at,
                    "the rule's connection settings are ignored: esalert searches the cluster of credentials.json",
                ),
            }
        }
        "es_username" | "es_password" | "es_api_key" | "verify_certs" | "ca_certs"
        | "es_conn_timeout" | "es_send_get_body_as" => ch.warn(
            at,
            format!("`{k}` is ignored: esalert connects with credentials.json's settings"),
        ),
        _ => ch.problem(
            at,
            format!("`{k}` is not supported by esalert; connect through credentials.json's \"elasticsearch\" section (url, username, password, api_key, ca_cert)"),
        ),
    }
}

/// The query clause `name` is likely a misspelling of.
fn near_clause(name: &str) -> Option<&'static str> {
    const CLAUSES: &[&str] = &[
        "query_string",
        "term",
        "terms",
        "range",
        "bool",
        "exists",
        "wildcard",
        "match",
        "match_phrase",
        "prefix",
        "regexp",
        "ids",
        "match_all",
        "simple_query_string",
        "multi_match",
        "nested",
        "constant_score",
        "script",
        "fuzzy",
    ];
    CLAUSES
        .iter()
        .map(|c| (strsim::jaro_winkler(name, c), *c))
        .filter(|(s, _)| *s > 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Keys older ElastAlert versions read and ElastAlert 2 ignores.
const IGNORED_OLD: &[&str] = &[
    "doc_type",
    "use_kibana4_dashboard",
    "kibana4_start_timedelta",
    "kibana4_end_timedelta",
];

/// Keys of the rule types esalert doesn't run yet.
fn type_key_not_yet(k: &str) -> bool {
    TYPE_KEYS_NOT_YET.contains(&k)
}

/// Keys of every ElastAlert rule type, for "does not apply to this type".
const TYPE_KEYS_NOT_YET: &[&str] = &[
    "compare_key",
    "blacklist",
    "whitelist",
    "ignore_null",
    "spike_height",
    "spike_type",
    "alert_on_new_data",
    "threshold_ref",
    "threshold_cur",
    "field_value",
    "threshold",
    "forget_keys",
    "fields",
    "terms_window_size",
    "alert_on_missing_field",
    "window_step_size",
    "use_keyword_postfix",
    "max_cardinality",
    "min_cardinality",
    "cardinality_field",
    "metric_agg_key",
    "metric_agg_type",
    "percentile_range",
    "max_threshold",
    "min_threshold",
    "min_doc_count",
    "use_run_every_query_size",
    "allow_buffer_time_overlap",
    "bucket_interval",
    "sync_bucket_interval",
    "metric_format_string",
    "metric_agg_script",
    "match_bucket_filter",
    "min_percentage",
    "max_percentage",
    "percentage_format_string",
    "min_denominator",
    "doc_type",
    "filter_by_list",
    "timeframe",
    "num_events",
    "use_count_query",
    "use_terms_query",
    "terms_size",
];

/// `filter`: a list of Elasticsearch query clauses, each a mapping with
/// one clause (`term`, `query_string`, `bool`, …, or the legacy
/// `query: {query_string: …}`).
fn read_filters(ch: &mut Checker<'_>) -> Vec<Value> {
    let Some(v) = ch.raw("filter") else {
        return Vec::new();
    };
    let Some(list) = v.as_array() else {
        ch.problem(
            "/filter",
            "`filter` must be a list of query clauses, e.g. `- term: {host: web-1}`",
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, f) in list.iter().enumerate() {
        let at = format!("/filter/{i}");
        match f.as_object() {
            Some(m) if m.len() == 1 => {
                let (clause, body) = m
                    .iter()
                    .next()
                    .map(|(k, v)| (k.as_str(), v))
                    .unwrap_or(("", &Value::Null));
                let inner = if clause == "query" {
                    body.as_object()
                        .and_then(|q| q.keys().next())
                        .map(String::as_str)
                } else {
                    Some(clause)
                };
                match inner {
                    Some("query_string" | "term" | "terms" | "range" | "bool" | "exists" | "wildcard"
                        | "match" | "match_phrase" | "prefix" | "regexp" | "ids" | "match_all"
                        | "simple_query_string" | "multi_match" | "nested" | "constant_score") => {
                        out.push(f.clone())
                    }
                    Some("type") => ch.problem(&format!("{at}/{clause}"),
                        "the `type` query (mapping types) was removed in Elasticsearch 8 and OpenSearch 2; remove this filter"),
                    Some("not" | "and" | "or" | "missing") => ch.problem(&format!("{at}/{clause}"), format!(
                        "`{}` is an Elasticsearch 1.x filter that current clusters refuse; write it as a `bool` query",
                        inner.unwrap_or(clause)
                    )),
                    Some("script" | "fuzzy" | "geo_distance" | "geo_bounding_box" | "geo_shape"
                        | "dis_max" | "function_score" | "boosting" | "more_like_this" | "terms_set"
                        | "intervals" | "span_term" | "span_near" | "span_or" | "span_first"
                        | "has_child" | "has_parent" | "match_bool_prefix" | "match_phrase_prefix"
                        | "combined_fields" | "distance_feature" | "rank_feature" | "wrapper"
                        | "pinned" | "query" | "match_none") => out.push(f.clone()),
                    Some(other) => match near_clause(other) {
                        // A misspelt clause: the cluster refuses every search.
                        Some(near) => ch.problem(&format!("{at}/{clause}"), format!(
                            "unknown query clause `{other}`; did you mean `{near}`?"
                        )),
                        None => {
                            ch.warn(&format!("{at}/{clause}"), format!(
                                "`{other}` is not a query clause esalert knows; it is sent as written, and the cluster refuses it if it is none"
                            ));
                            out.push(f.clone());
                        }
                    },
                    None => ch.problem(&at, "`query:` must hold one query clause, e.g. `query_string: {query: \"…\"}`"),
                }
            }
            _ => ch.problem(
                &at,
                "each filter is a mapping with one query clause, e.g. `- term: {host: web-1}`",
            ),
        }
    }
    out
}

fn read_text(ch: &mut Checker<'_>, name: String) -> Text {
    let mut t = Text {
        name,
        subject: ch.string("alert_subject"),
        subject_args: ch.string_list("alert_subject_args").unwrap_or_default(),
        subject_max_len: ch
            .integer("alert_subject_max_len", 1)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(2048),
        text: ch.raw("alert_text").map(python_str),
        text_args: ch.string_list("alert_text_args").unwrap_or_default(),
        jinja_root: ch
            .string("jinja_root_name")
            .unwrap_or_else(|| "_data".into()),
        missing: ch
            .string("alert_missing_value")
            .unwrap_or_else(|| "<MISSING VALUE>".into()),
        ..Text::default()
    };
    if let Some(v) = ch.raw("alert_text_kw") {
        match v.as_object() {
            Some(m) => {
                for (field, name) in m {
                    match name.as_str() {
                        Some(n) => t.text_kw.push((field.clone(), n.to_owned())),
                        None => ch.problem(
                            &format!("/alert_text_kw/{}", yaml::escape(field)),
                            "each `alert_text_kw` value is the name used in `alert_text`",
                        ),
                    }
                }
            }
            None => ch.problem(
                "/alert_text_kw",
                "`alert_text_kw` maps fields to names used in `alert_text`",
            ),
        }
    }
    if let Some(tt) = ch.string("alert_text_type") {
        match TextType::parse(&tt) {
            Some(x) => t.text_type = x,

            None => ch.problem("/alert_text_type", format!("unknown `alert_text_type` `{tt}`; use alert_text_only, exclude_fields or aggregation_summary_only")),
        }
    }
    if t.text_type == TextType::Jinja {
        if ch.raw("jinja_template_path").is_some() {
            ch.problem("/jinja_template_path", "`jinja_template_path` is not supported by esalert yet; put the template in `alert_text`");
        }
        for (key, source) in [("alert_text", &t.text), ("alert_subject", &t.subject)] {
            if let Some(src) = source
                && let Err(e) = text::check_jinja(src)
            {
                ch.problem(
                    &format!("/{key}"),
                    format!("`{key}` is not a valid Jinja template: {e}"),
                );
            }
        }
    }
    // The templates must format: check them now with placeholders.
    let kw: std::collections::HashMap<String, String> = t
        .text_kw
        .iter()
        .map(|(_, n)| (n.clone(), String::new()))
        .collect();
    if let Some(s) = &t.subject
        && !t.subject_args.is_empty()
        && let Err(e) = text::format(s, &vec![String::new(); t.subject_args.len()], &kw)
    {
        ch.problem("/alert_subject", format!("`alert_subject`: {e}"));
    }
    if let Some(s) = &t.text
        && t.text_type != TextType::Jinja
        && (!t.text_args.is_empty() || !t.text_kw.is_empty())
        && let Err(e) = text::format(s, &vec![String::new(); t.text_args.len()], &kw)
    {
        ch.problem("/alert_text", format!("`alert_text`: {e}"));
    }
    t
}

/// A duration as esalert writes one (`90s`, `5m`, `2h`).
fn duration(d: Duration) -> Option<HumanDuration> {
    let ms = d.as_millis();
    let text = match ms {
        _ if ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
        _ if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        _ if ms.is_multiple_of(1_000) => format!("{}s", ms / 1_000),
        _ => format!("{ms}ms"),
    };
    HumanDuration::parse(&text).ok()
}

/// `aggregation`: a duration, or `{schedule: CRON}`.
enum Aggregation {
    Every(Duration),
    Schedule(Close),
}

fn aggregation(ch: &mut Checker) -> Option<Aggregation> {
    let v = ch.raw("aggregation")?;
    if let Some(s) = v.get("schedule") {
        let Some(expr) = s.as_str() else {
            ch.problem(
                "/aggregation/schedule",
                "`aggregation: {schedule: …}` must be a cron expression such as '2 4 * * mon,fri'",
            );
            return None;
        };
        return match crate::pipeline::digest::parse_cron(expr) {
            Ok(cron) => Some(Aggregation::Schedule(Close::Schedule {
                expr: expr.to_owned(),
                cron: Box::new(cron),
            })),
            Err(e) => {
                ch.problem("/aggregation/schedule", e);
                None
            }
        };
    }
    for k in ["aggregate_by_match_time"] {
        if ch.raw(k).is_some() {
            ch.problem(&format!("/{k}"), format!("`{k}` is not supported by esalert; remove it (an aggregation closes `aggregation` after the run that found its first match)"));
        }
    }
    ch.duration("aggregation")
        .filter(|d| !d.is_zero())
        .map(Aggregation::Every)
}

/// The digest `aggregation` compiles to: `aggregation_key`,
/// `summary_table_fields` and the summary's layout settings.
fn digest(ch: &mut Checker, close: Close, text_type: TextType) -> Digest {
    let mut d = Digest::new(close);
    d.format = DigestFormat::Matches;
    // ElastAlert sends every match; a notification lists this many.
    d.max_items = 500;
    d.key = ch.string("aggregation_key");
    if let Some(v) = ch.raw("summary_table_fields") {
        let items: Vec<&Value> = match v {
            Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        for (i, item) in items.into_iter().enumerate() {
            let field = match item {
                Value::String(p) if !p.is_empty() => Some(TableField::Path(p.clone())),
                Value::Object(m) => {
                    match (m.get("path").and_then(Value::as_str), m.get("header")) {
                        (Some(p), None) => Some(TableField::Path(p.to_owned())),
                        (Some(p), Some(Value::String(h))) => Some(TableField::Named {
                            path: p.to_owned(),
                            header: Some(h.clone()),
                        }),
                        _ => None,
                    }
                }
                _ => None,
            };
            match field {
                Some(f) => d.fields.push(f),
                None => ch.problem(
                    &format!("/summary_table_fields/{i}"),
                    "each `summary_table_fields` entry is a field name or `{path: …, header: …}`",
                ),
            }
        }
        if !d.fields.is_empty() {
            let mut paths: Vec<Value> = d.fields.iter().map(|f| Value::from(f.path())).collect();
            paths.push(Value::from("count"));
            d.heading = Some(format!(
                "Aggregation resulted in the following data for summary_table_fields ==> {}:",
                python_str(&Value::Array(paths))
            ));
        }
    }
    if let Some(t) = ch.string("summary_table_type") {
        match t.as_str() {
            "ascii" => d.table = TableStyle::Ascii,
            "markdown" => d.table = TableStyle::Markdown,
            "html" => d.table = TableStyle::Html,
            other => ch.problem(
                "/summary_table_type",
                format!("unknown `summary_table_type` `{other}`; use ascii, markdown or html"),
            ),
        }
    }
    d.max_rows = ch
        .integer("summary_table_max_rows", 0)
        .and_then(|n| usize::try_from(n).ok());
    d.prefix = ch.string("summary_prefix").unwrap_or_default();
    d.suffix = ch.string("summary_suffix").unwrap_or_default();
    d.summary_only = text_type == TextType::AggregationSummaryOnly;
    d
}

impl ElastAlertRule {
    /// The planned actions of one key's match.
    fn plan(
        &self,
        key: &str,
        m: &Match,
        more: usize,
        cx: &EvalContext<'_>,
        hits: u64,
    ) -> Vec<PlannedAction> {
        let c = &self.common;
        let subject = c.text.subject(&m.doc, &c.raw);
        let mut body = c.text.body(&m.doc, &c.raw, &self.rule_type.match_str(c, m));
        if more > 0 {
            body.push_str(&format!(
                "\n({more} more matches of this key in the same run)\n"
            ));
        }
        self.alerters
            .iter()
            .map(|a| {
                let plan = match (cx.suppressed)(key, RULE_SCOPE) {
                    Some(why) => Plan::Suppressed(why),
                    None => {
                        let mut n = Notification::of(
                            &c.id,
                            Rendered::from_data(subject.clone(), body.clone()),
                            hits,
                            cx.now,
                        );
                        n.key = key.to_owned();
                        n.window = Some(cx.window);
                        Plan::Send(vec![a.message(&mut n, c, m)])
                    }
                };
                PlannedAction {
                    id: a.id.clone(),
                    key: key.to_owned(),
                    kind: "notification",
                    scope: RULE_SCOPE.to_owned(),
                    throttle: c.realert,
                    ackable: false,
                    plan,
                }
            })
            .collect()
    }
}

impl ElastAlertRule {
    /// ElastAlert's `get_top_counts` for the first match of each key
    /// (the one notified): `top_events_<field>` in the match.
    async fn add_top_counts(
        &self,
        tc: &TopCounts,
        matches: &mut [Match],
        cx: &EvalContext<'_>,
    ) -> Result<(), EvalError> {
        let c = &self.common;
        let mut done: Vec<Option<String>> = Vec::new();
        for m in matches.iter_mut() {
            if done.contains(&m.key) {
                continue;
            }
            done.push(m.key.clone());
            if (cx.suppressed)(m.key.as_deref().unwrap_or(WHOLE_RULE), RULE_SCOPE).is_some() {
                continue;
            }
            let before = chrono::Duration::from_std(tc.before).unwrap_or(chrono::Duration::zero());
            let window = crate::render::Window {
                start: m.time.checked_sub_signed(before).unwrap_or(m.time),
                end: m
                    .time
                    .checked_add_signed(chrono::Duration::minutes(10))
                    .unwrap_or(m.time),
            };
            // The match's own key, as a filter (`query_key_filters`).
            let mut scoped = Common {
                filters: c.filters.clone(),
                id: c.id.clone(),
                index: c.index.clone(),
                timestamp_field: c.timestamp_field.clone(),
                timestamp_type: c.timestamp_type.clone(),
                include: None,
                max_query_size: c.max_query_size,
                query_key: None,
                realert: c.realert,
                text: Text::default(),
                raw: Map::new(),
                scan_timeframe: None,
            };
            if let (Some(qk), Some(value)) = (&c.query_key, &m.key) {
                let values: Vec<&str> = if qk.len() > 1 {
                    value.split(", ").collect()
                } else {
                    vec![value.as_str()]
                };
                for (field, v) in qk.iter().zip(values) {
                    let f = if tc.raw && !field.ends_with(".keyword") {
                        format!("{field}.keyword")
                    } else {
                        field.clone()
                    };
                    scoped.filters.push(serde_json::json!({"term": {f: v}}));
                }
            }
            for key in &tc.keys {
                let (buckets, _) =
                    query::terms(&scoped, cx, &c.id, &window, key, tc.number).await?;
                let mut counts: Vec<(Value, u64)> = buckets;
                counts.sort_by_key(|c| std::cmp::Reverse(c.1));
                let top: Map<String, Value> = counts
                    .into_iter()
                    .take(usize::try_from(tc.number).unwrap_or(usize::MAX))
                    .map(|(k, n)| (python_str(&k), Value::from(n)))
                    .collect();
                m.doc
                    .insert(format!("top_events_{key}"), Value::Object(top));
            }
        }
        Ok(())
    }
}

impl RuleBody for ElastAlertRule {
    fn kind(&self) -> &'static str {
        "elastalert"
    }

    fn sinks(&self) -> Vec<String> {
        // Its destinations are its own, not credentials.json's.
        Vec::new()
    }

    fn foldable<'a>(
        &'a self,
        _rule: &'a Rule,
        cx: &'a EvalContext<'a>,
    ) -> Result<Foldable<'a>, String> {
        if self.common.query_key.is_some() {
            return Err("it counts per `query_key`".into());
        }
        Ok(Foldable {
            indices: self.common.index.clone(),
            body: self.rule_type.fold_body(&self.common, cx)?,
            // Each document is an event: any hit needs the documents.
            needs_search: Box::new(|count| count > 0),
        })
    }

    fn evaluate<'a>(
        &'a self,
        rule: &'a Rule,
        cx: &'a EvalContext<'a>,
    ) -> BoxFuture<'a, Result<Evaluated, EvalError>> {
        Box::pin(async move {
            let mut found = self.rule_type.evaluate(&self.common, cx).await?;
            // As ElastAlert's run_rule: every match carries the run's hit
            // and match counts (texts print them; `alert_text_args` use them).
            let n = found.matches.len();
            for m in &mut found.matches {
                m.doc.insert("num_hits".into(), Value::from(found.hits));
                m.doc.insert("num_matches".into(), Value::from(n));
            }
            if let Some(tc) = &self.top_counts {
                self.add_top_counts(tc, &mut found.matches, cx).await?;
            }
            // The first match of each key, in order; ElastAlert silences
            // the key's later matches in the run once the first is sent.
            let mut firsts: Vec<(String, &Match, usize)> = Vec::new();
            for m in &found.matches {
                let key = m.key.clone().unwrap_or_else(|| WHOLE_RULE.to_owned());
                match firsts.iter_mut().find(|(k, _, _)| *k == key) {
                    Some(e) => e.2 += 1,
                    None => firsts.push((key, m, 0)),
                }
            }
            let mut actions = Vec::new();
            let mut keys = Vec::new();
            let mut shown = Vec::new();
            for (key, m, more) in &firsts {
                actions.extend(self.plan(key, m, *more, cx, found.hits));
                keys.push(key.clone());
            }
            for m in &found.matches {
                shown.push(serde_json::json!({
                    "key": m.key,
                    "time": crate::render::fmt_time(&m.time),
                    "match": m.doc,
                }));
            }
            // Aggregated: every match goes into the digest (ElastAlert
            // aggregates each one `realert` lets through: all of them, or
            // the first of each key in a run).
            let mut digest = Vec::new();
            if let Some(spec) = &rule.policy.digest {
                let c = &self.common;
                for m in &found.matches {
                    let key = m.key.as_deref().unwrap_or(WHOLE_RULE);
                    if !c.realert.is_zero()
                        && !firsts
                            .iter()
                            .any(|(k, f, _)| k == key && std::ptr::eq(*f, m))
                    {
                        continue;
                    }
                    let lookup = |p: &str| {
                        query::lookup_in(&m.doc, p)
                            .filter(|v| !v.is_null())
                            .map(python_str)
                    };
                    digest.push(spec.entry(
                        key,
                        lookup,
                        c.text.subject(&m.doc, &c.raw),
                        c.text.body(&m.doc, &c.raw, &self.rule_type.match_str(c, m)),
                    ));
                }
            }
            let mut detail = Map::new();
            detail.insert("type".into(), Value::from(self.type_name.clone()));
            detail.insert("matches".into(), Value::Array(shown));
            Ok(Evaluated {
                matched: !found.matches.is_empty(),
                hits: found.hits,
                partial: found.partial,
                missing: None,
                took_ms: found.took_ms,
                actions,
                keys,
                memory: found.memory,
                digest,
                detail,
            })
        })
    }

    fn notice(&self, _rule: &Rule, notice: &Notice) -> Vec<PlannedAction> {
        let subject = if notice.resolved {
            format!("[resolved] {}", notice.subject)
        } else {
            notice.subject.clone()
        };
        self.alerters
            .iter()
            .map(|a| {
                let mut n = Notification::of(
                    &self.common.id,
                    Rendered::from_data(subject.clone(), notice.text.clone()),
                    notice.hits,
                    notice.time,
                );
                n.resolved = notice.resolved;
                n.key = notice.key.clone();
                let m = Match {
                    key: notice.first_key.clone().filter(|k| k != WHOLE_RULE),
                    time: notice.time,
                    doc: Map::new(),
                };
                PlannedAction {
                    id: a.id.clone(),
                    key: notice.key.clone(),
                    kind: "notification",
                    scope: RULE_SCOPE.to_owned(),
                    // Pipeline notices never start or obey a throttle.
                    throttle: Duration::ZERO,
                    ackable: false,
                    plan: Plan::Send(vec![a.message(&mut n, &self.common, &m)]),
                }
            })
            .collect()
    }

    fn warnings(&self) -> &[Problem] {
        &self.warnings
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

//! `elastalert.yaml` beside credentials.json: the ElastAlert `config.yaml`
//! settings rules rely on. `run_every`, `old_query_limit`, `max_query_size`
//! and a default `realert` are rule defaults here; `buffer_time` and
//! `alert_time_limit` are read and not needed (esalert's windows are
//! contiguous and its outbox retries deliveries); the connection settings
//! (`es_host`, `es_port`, `use_ssl`, …) become credentials.json's
//! `elasticsearch` section when credentials.json has none ([`cluster`]).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use super::check::Checker;
use crate::alert::{LoadError, Problem};

/// The file's name.
pub const FILE: &str = "elastalert.yaml";

static DIR: OnceLock<PathBuf> = OnceLock::new();
static CREDENTIALS: OnceLock<PathBuf> = OnceLock::new();

/// Where `elastalert.yaml` is looked for: beside `credentials` (the CLI
/// calls this once with its `--credentials`).
pub fn set_beside(credentials: &Path) {
    let dir = credentials
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    let _ = DIR.set(dir);
    let _ = CREDENTIALS.set(credentials.to_owned());
}

/// Where `elastalert.yaml` is looked for, once [`set_beside`] ran.
pub fn path() -> Option<PathBuf> {
    DIR.get().map(|d| d.join(FILE))
}

/// Whether credentials.json names the cluster itself.
fn credentials_name_a_cluster() -> bool {
    CREDENTIALS
        .get()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .is_some_and(|v| v.get("elasticsearch").is_some())
}

/// The cluster esalert searches, as (host, port), when it can be told
/// from credentials.json or elastalert.yaml.
pub fn configured_cluster() -> Option<(String, u16)> {
    let creds = CREDENTIALS.get()?;
    let url = std::fs::read_to_string(creds)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v["elasticsearch"]["url"].as_str().map(str::to_owned))
        .or_else(|| {
            cluster(creds)
                .ok()
                .flatten()
                .and_then(|v| v["url"].as_str().map(str::to_owned))
        })?;
    host_port(&url)
}

/// A URL's host (lower case, loopback names as one) and port.
pub fn host_port(url: &str) -> Option<(String, u16)> {
    let u = reqwest::Url::parse(url).ok()?;
    let host = u.host_str()?.to_ascii_lowercase();
    let host = match host.as_str() {
        "localhost" | "127.0.0.1" | "[::1]" | "::1" => "localhost".to_owned(),
        _ => host,
    };
    Some((host, u.port_or_known_default()?))
}

/// Reads and parses the file (environment variables expanded, as
/// ElastAlert reads its config).
fn read(path: &Path) -> Result<super::yaml::Doc, LoadError> {
    let bytes = crate::alert::read_regular(path, crate::alert::MAX_FILE_SIZE)
        .map_err(|e| LoadError::one(path, None, e.to_string()))?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| LoadError::one(path, None, "file is not valid UTF-8; save it as UTF-8"))?;
    let text = super::yaml::expand_vars(text, &|k| std::env::var(k).ok());
    super::yaml::parse(&text).map_err(|e| LoadError::one(path, Some(e.position), e.message))
}

/// Connection settings esalert reads into credentials.json's
/// `elasticsearch` section.
const MAPPED: &[&str] = &[
    "es_host",
    "es_port",
    "use_ssl",
    "es_url_prefix",
    "es_username",
    "es_password",
    "es_api_key",
    "verify_certs",
    "ca_certs",
    "es_conn_timeout",
    "es_send_get_body_as",
];

/// The cluster `elastalert.yaml` beside `credentials` names, as a
/// credentials.json `elasticsearch` section (`None`: no file, or no
/// connection settings in it).
pub fn cluster(credentials: &Path) -> Result<Option<Value>, LoadError> {
    let dir = credentials
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let path = dir.join(FILE);
    if !path.exists() {
        return Ok(None);
    }
    let doc = read(&path)?;
    let Value::Object(top) = &doc.value else {
        return Ok(None);
    };
    if !top.keys().any(|k| MAPPED.contains(&k.as_str())) {
        return Ok(None);
    }
    let mut ch = Checker::new(&path, &doc, top);
    let host = ch.string("es_host");
    if host.is_none() {
        let first = top
            .keys()
            .find(|k| MAPPED.contains(&k.as_str()))
            .map(|k| format!("/{}", super::yaml::escape(k)))
            .unwrap_or_default();
        ch.problem(&first, "the connection settings need `es_host`");
    }
    let port = ch.integer("es_port", 1).unwrap_or(9200);
    if port > 65535 {
        ch.problem("/es_port", "`es_port` must be a port number");
    }
    let scheme = if ch.boolean("use_ssl").unwrap_or(false) {
        "https"
    } else {
        "http"
    };
    let prefix = ch
        .string("es_url_prefix")
        .map(|p| format!("/{}", p.trim_matches('/')))
        .filter(|p| p != "/")
        .unwrap_or_default();
    let mut es = serde_json::Map::new();
    es.insert(
        "url".into(),
        Value::from(format!(
            "{scheme}://{}:{port}{prefix}",
            host.unwrap_or_default()
        )),
    );
    for (ea, ours) in [
        ("es_username", "username"),
        ("es_password", "password"),
        ("es_api_key", "api_key"),
        ("ca_certs", "ca_cert"),
    ] {
        if let Some(v) = ch.string(ea) {
            es.insert(ours.into(), Value::from(v));
        }
    }
    if ch.boolean("verify_certs") == Some(false) {
        es.insert("insecure".into(), Value::Bool(true));
    }
    if let Some(t) = ch.integer("es_conn_timeout", 1) {
        es.insert("timeout".into(), Value::from(format!("{t}s")));
    }
    let _ = ch.string("es_send_get_body_as");
    let problems: Vec<Problem> = std::mem::take(&mut ch.problems);
    if problems.is_empty() {
        Ok(Some(Value::Object(es)))
    } else {
        Err(LoadError::Invalid { problems })
    }
}

/// Rule defaults from `elastalert.yaml`.
#[derive(Debug, Clone, Default)]
pub struct Globals {
    /// `run_every`.
    pub run_every: Option<Duration>,
    /// `old_query_limit`: the longest catch-up after an outage.
    pub old_query_limit: Option<Duration>,
    /// `realert` for rules without their own.
    pub realert: Option<Duration>,
    /// `max_query_size`.
    pub max_query_size: Option<i64>,
}

/// Keys of ElastAlert's config.yaml that esalert reads or that don't
/// apply to it (its own store, logging and scheduling replace them).
const ACCEPTED: &[&str] = &[
    "run_every",
    "buffer_time",
    "old_query_limit",
    "alert_time_limit",
    "realert",
    "max_query_size",
    "rules_folder",
    "scan_subdirectories",
    "writeback_index",
    "writeback_alias",
    "max_scrolling_count",
    "scroll_keepalive",
    "max_aggregation",
    "disable_rules_on_error",
    "notify_email",
    "from_addr",
    "smtp_host",
    "email_reply_to",
    "logging",
    "timezone",
    "custom_pretty_ts_format",
    "string_multi_field_name",
    "add_metadata_alert",
    "skip_invalid",
    "query_endpoint",
];

/// Reads `elastalert.yaml` if there is one.
pub fn load() -> Result<Globals, LoadError> {
    let Some(dir) = DIR.get() else {
        return Ok(Globals::default());
    };
    let path = dir.join(FILE);
    if !path.exists() {
        return Ok(Globals::default());
    }
    let doc = read(&path)?;
    let empty = serde_json::Map::new();
    let top = match &doc.value {
        Value::Object(m) => m,
        Value::Null => &empty,
        _ => {
            return Err(LoadError::one(
                &path,
                None,
                "elastalert.yaml must be a mapping of settings",
            ));
        }
    };
    let mut ch = Checker::new(&path, &doc, top);
    for k in top.keys() {
        let at = format!("/{}", super::yaml::escape(k));
        if MAPPED.contains(&k.as_str()) {
            if credentials_name_a_cluster() {
                ch.problem(&at, format!("`{k}`: credentials.json's \"elasticsearch\" section names the cluster already; remove the connection settings from one of the two files"));
            }
        } else if super::CONNECTION.contains(&k.as_str()) {
            ch.problem(&at, format!("`{k}` is not supported by esalert; put the cluster in credentials.json's \"elasticsearch\" section (url, username, password, api_key, ca_cert)"));
        } else if !ACCEPTED.contains(&k.as_str()) {
            ch.problem(&at, format!("unknown ElastAlert setting `{k}`"));
        }
    }
    let g = Globals {
        run_every: ch.duration("run_every"),
        old_query_limit: ch.duration("old_query_limit"),
        realert: ch.duration("realert"),
        max_query_size: ch.integer("max_query_size", 1),
    };
    let _ = (ch.duration("buffer_time"), ch.duration("alert_time_limit"));
    let problems: Vec<Problem> = std::mem::take(&mut ch.problems);
    if problems.is_empty() {
        Ok(g)
    } else {
        Err(LoadError::Invalid { problems })
    }
}

//! ElastAlert alerters as esalert destinations: a rule's own settings
//! (`slack_webhook_url`, `email`, …) become a destination of the registry
//! in [`crate::sinks::destinations`] that the rule configures itself
//! ([`Message::Inline`]); `debug` is a line in alerts.log.

use serde_json::{Map, Value, json};

use super::check::Checker;
use super::types::Match;
use super::{Common, known};
use crate::notify::Notification;
use crate::sinks::Message;

/// One alerter of a rule.
#[derive(Debug, Clone)]
pub struct Alerter {
    /// The action's id: the alerter's name, numbered when repeated.
    pub id: String,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    /// `debug`: alerts.log.
    Log,
    /// A destination of the registry, with the rule's settings for it.
    Inline {
        destination: Value,
        /// The alerter's ElastAlert name (`email` words its default
        /// subject its own way).
        alerter: &'static str,
        settings: Map<String, Value>,
    },
}

/// The alerters of a rule, and the keys they read.
pub struct Alerters {
    /// In the order `alert` names them.
    pub list: Vec<Alerter>,
    /// The rule keys the alerters read (so they are not unknown).
    pub used_keys: Vec<&'static str>,
}

/// A destination's settings and the rule's per-destination settings.
type Built = Option<(Value, Map<String, Value>)>;

/// ElastAlert alerter → (esalert destination type, the keys it reads).
struct Def {
    name: &'static str,
    esalert: &'static str,
    keys: &'static [&'static str],
    build: fn(&mut Opts<'_, '_>) -> Built,
}

/// An alerter's options: its entry under `alert` first, then the rule's
/// top level, as ElastAlert 2 reads them.
struct Opts<'c, 'a> {
    ch: &'c mut Checker<'a>,
    own: Option<&'a Map<String, Value>>,
    own_at: String,
}

impl Opts<'_, '_> {
    fn get(&self, key: &str) -> Option<(&Value, String)> {
        if let Some(v) = self.own.and_then(|m| m.get(key)) {
            return Some((v, format!("{}/{key}", self.own_at)));
        }
        self.ch.raw(key).map(|v| (v, format!("/{key}")))
    }

    fn problem(&mut self, at: &str, msg: String) {
        self.ch.problem(at, msg);
    }

    fn string(&mut self, key: &str) -> Option<String> {
        let (v, at) = self.get(key)?;
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => {
                self.problem(&at, format!("`{key}` must be a string"));
                None
            }
        }
    }

    fn strings(&mut self, key: &str) -> Option<Vec<String>> {
        let (v, at) = self.get(key)?;
        match v {
            Value::String(s) => Some(
                s.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect(),
            ),
            Value::Array(a) if a.iter().all(Value::is_string) => Some(
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect(),
            ),
            _ => {
                self.problem(
                    &at,
                    format!("`{key}` must be a string or a list of strings"),
                );
                None
            }
        }
    }

    fn require(&mut self, key: &str, alerter: &str) -> Option<String> {
        if self.get(key).is_none() {
            let at = self.own_at.clone();
            self.problem(
                &if at.is_empty() {
                    "/alert".to_owned()
                } else {
                    at
                },
                format!("alerter `{alerter}` needs `{key}`"),
            );
            return None;
        }
        self.string(key)
    }

    /// A required string-or-list setting.
    fn required_strings(&mut self, key: &str, alerter: &str) -> Option<Vec<String>> {
        if self.get(key).is_none() {
            self.require(key, alerter);
            return None;
        }
        self.strings(key)
    }

    fn unsupported(&mut self, keys: &[&str], alerter: &str) {
        for k in keys {
            if let Some((_, at)) = self.get(k) {
                self.problem(
                    &at,
                    format!("`{k}` ({alerter}) is not supported by esalert yet; remove it"),
                );
            }
        }
    }
}

fn slack(o: &mut Opts<'_, '_>) -> Option<(Value, Map<String, Value>)> {
    o.unsupported(
        &["slack_proxy", "slack_ca_certs", "slack_ignore_ssl_errors"],
        "slack",
    );
    let urls = o.required_strings("slack_webhook_url", "slack")?;
    let mut settings = Map::new();
    if let Some(c) = o.string("slack_channel_override") {
        settings.insert("channel".into(), Value::String(c));
    }
    for (ea, ours) in [
        ("slack_username_override", "username"),
        ("slack_emoji_override", "icon_emoji"),
        ("slack_icon_url_override", "icon_url"),
        ("slack_title", "title"),
        ("slack_title_link", "title_link"),
    ] {
        if let Some(v) = o.string(ea) {
            settings.insert(ours.into(), Value::String(v));
        }
    }
    // ElastAlert's bar is red unless the rule says otherwise.
    let color = o
        .string("slack_msg_color")
        .unwrap_or_else(|| "danger".into());
    settings.insert("color".into(), Value::String(color));
    let [url] = urls.as_slice() else {
        // Several webhooks: one destination each, numbered by `read`.
        return Some((json!({"type": "slack", "webhook_url": urls}), settings));
    };
    Some((json!({"type": "slack", "webhook_url": url}), settings))
}

fn email(o: &mut Opts<'_, '_>) -> Option<(Value, Map<String, Value>)> {
    o.unsupported(
        &[
            "smtp_key_file",
            "smtp_cert_file",
            "email_from_field",
            "email_add_domain",
        ],
        "email",
    );
    let to = o.required_strings("email", "email")?;
    let ssl = match o.get("smtp_ssl") {
        Some((Value::Bool(b), _)) => *b,
        _ => false,
    };
    let host = o.string("smtp_host").unwrap_or_else(|| "localhost".into());
    // ElastAlert upgrades with STARTTLS when the server offers it; esalert
    // requires it, except to a relay on this machine.
    let local = matches!(host.as_str(), "localhost" | "127.0.0.1" | "::1");
    let security = match (ssl, local) {
        (true, _) => "tls",
        (false, true) => "none",
        (false, false) => "starttls",
    };
    let mut d = json!({
        "type": "email",
        "smtp_host": host,
        "security": security,
        "from": o.string("from_addr").unwrap_or_else(|| "ElastAlert".into()),
        "to": to,
    });
    if let Some((p, at)) = o.get("smtp_port") {
        match p.as_u64().filter(|p| (1..=65535).contains(p)) {
            Some(p) => d["smtp_port"] = Value::from(p),
            None => o.problem(&at, "`smtp_port` must be a port number".into()),
        }
    }
    if let Some(cc) = o.strings("cc") {
        d["cc"] = Value::from(cc);
    }
    if let Some(bcc) = o.strings("bcc") {
        d["bcc"] = Value::from(bcc);
    }
    if let Some(r) = o.string("email_reply_to") {
        d["reply_to"] = Value::from(r);
    }
    if let Some((v, at)) = o.get("smtp_auth_file") {
        // The path, not its contents: the password stays in its file.
        match v.as_str() {
            Some(p) => {
                let path =
                    o.ch.path()
                        .parent()
                        .map_or_else(|| std::path::PathBuf::from(p), |dir| dir.join(p));
                match std::fs::metadata(&path) {
                    Ok(m) if m.is_file() => d["auth_file"] = Value::from(path.to_string_lossy()),
                    _ => o.problem(
                        &at,
                        format!(
                            "`smtp_auth_file` {} is not a readable file (a path is read beside the rule)",
                            path.display()
                        ),
                    ),
                }
            }
            None => o.problem(&at, "`smtp_auth_file` must be a path".into()),
        }
    }
    let mut settings = Map::new();
    match o.string("email_format").as_deref() {
        None => {}
        Some("html") => {
            settings.insert("format".into(), Value::from("html"));
        }
        Some(other) => {
            if let Some((_, at)) = o.get("email_format") {
                o.problem(
                    &at,
                    format!("`email_format` `{other}` is not one ElastAlert knows; use html, or remove it"),
                );
            }
        }
    }
    Some((d, settings))
}

/// Alerters whose esalert destination types are added alongside this
/// front end; each maps its ElastAlert keys onto the type's settings.
fn mapped(
    o: &mut Opts<'_, '_>,
    esalert: &str,
    pairs: &[(&str, &str)],
    required: &str,
    alerter: &str,
) -> Option<(Value, Map<String, Value>)> {
    o.require(required, alerter)?;
    let mut d = Map::new();
    d.insert("type".into(), Value::from(esalert));
    for (ea, ours) in pairs {
        if let Some((v, _)) = o.get(ea) {
            d.insert((*ours).to_owned(), v.clone());
        }
    }
    Some((Value::Object(d), Map::new()))
}

fn command(o: &mut Opts<'_, '_>) -> Built {
    let (v, at) = match o.get("command") {
        Some((v, at)) => (v.clone(), at),
        None => {
            o.require("command", "command");
            return None;
        }
    };
    let argv: Vec<Value> = match v {
        Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_string) => a,
        Value::String(_) => {
            o.problem(&at, "give `command` as a list of arguments, e.g. `[\"/usr/local/bin/page\", \"%(host)s\"]`: esalert runs no shell".into());
            return None;
        }
        _ => {
            o.problem(
                &at,
                "`command` must be a non-empty list of arguments".into(),
            );
            return None;
        }
    };
    o.unsupported(&["new_style_string_format"], "command");
    let flag = |o: &mut Opts<'_, '_>, k: &str| matches!(o.get(k), Some((Value::Bool(true), _)));
    let fail = flag(o, "fail_on_non_zero_exit");
    let mut settings = Map::new();
    settings.insert("command".into(), Value::Array(argv));
    settings.insert(
        "pipe_match_json".into(),
        Value::Bool(flag(o, "pipe_match_json")),
    );
    settings.insert(
        "pipe_alert_text".into(),
        Value::Bool(flag(o, "pipe_alert_text")),
    );
    Some((
        json!({"type": "command", "fail_on_non_zero_exit": fail}),
        settings,
    ))
}

/// Python's `arg % match`: `%(field)s` is the match's top-level field
/// (`missing` when it has none), `%%` a percent sign.
fn percent_format(arg: &str, doc: &Map<String, Value>, missing: &str) -> String {
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('%') {
            out.push('%');
            rest = tail;
        } else if let Some(named) = after.strip_prefix('(')
            && let Some(close) = named.find(")s")
        {
            let field = &named[..close];
            out.push_str(
                &doc.get(field)
                    .map_or_else(|| missing.to_owned(), super::check::python_str),
            );
            rest = &named[close + 2..];
        } else {
            out.push('%');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

static DEFS: &[Def] = &[
    Def {
        name: "command",
        esalert: "command",
        keys: &[
            "command",
            "pipe_match_json",
            "pipe_alert_text",
            "fail_on_non_zero_exit",
            "new_style_string_format",
        ],
        build: command,
    },
    Def {
        name: "slack",
        esalert: "slack",
        keys: &[
            "slack_webhook_url",
            "slack_channel_override",
            "slack_username_override",
            "slack_msg_color",
            "slack_title",
            "slack_title_link",
            "slack_emoji_override",
            "slack_icon_url_override",
            "slack_parse_override",
            "slack_text_string",
            "slack_alert_fields",
            "slack_timeout",
            "slack_msg_pretext",
            "slack_footer",
            "slack_footer_icon",
            "slack_image_url",
            "slack_thumb_url",
            "slack_author_name",
            "slack_author_link",
            "slack_author_icon",
            "slack_proxy",
            "slack_ca_certs",
            "slack_ignore_ssl_errors",
        ],
        build: slack,
    },
    Def {
        name: "email",
        esalert: "email",
        keys: &[
            "email",
            "cc",
            "bcc",
            "from_addr",
            "reply_to",
            "smtp_host",
            "smtp_port",
            "smtp_ssl",
            "smtp_auth_file",
            "smtp_key_file",
            "smtp_cert_file",
            "email_reply_to",
            "email_from_field",
            "email_add_domain",
            "email_format",
            "notify_email",
        ],
        build: email,
    },
    Def {
        name: "pagerduty",
        esalert: "pagerduty",
        keys: &[
            "pagerduty_service_key",
            "pagerduty_client_name",
            "pagerduty_api_version",
            "pagerduty_v2_payload_severity",
            "pagerduty_v2_payload_source",
            "pagerduty_v2_payload_class",
            "pagerduty_v2_payload_component",
            "pagerduty_v2_payload_group",
            "pagerduty_event_type",
            "pagerduty_incident_key",
            "pagerduty_incident_key_args",
            "pagerduty_proxy",
        ],
        build: |o| {
            mapped(
                o,
                "pagerduty",
                &[
                    ("pagerduty_service_key", "routing_key"),
                    ("pagerduty_v2_payload_severity", "severity"),
                    ("pagerduty_v2_payload_source", "source"),
                ],
                "pagerduty_service_key",
                "pagerduty",
            )
        },
    },
    Def {
        name: "opsgenie",
        esalert: "opsgenie",
        keys: &[
            "opsgenie_key",
            "opsgenie_addr",
            "opsgenie_priority",
            "opsgenie_tags",
            "opsgenie_teams",
            "opsgenie_recipients",
            "opsgenie_account",
            "opsgenie_alias",
            "opsgenie_description",
            "opsgenie_details",
            "opsgenie_entity",
            "opsgenie_message",
            "opsgenie_source",
            "opsgenie_subject",
            "opsgenie_subject_args",
            "opsgenie_proxy",
            "opsgenie_default_receipients",
            "opsgenie_default_recipients",
            "opsgenie_default_teams",
            "opsgenie_recipients_args",
            "opsgenie_teams_args",
        ],
        build: |o| {
            mapped(
                o,
                "opsgenie",
                &[
                    ("opsgenie_key", "api_key"),
                    ("opsgenie_addr", "api_url"),
                    ("opsgenie_priority", "priority"),
                    ("opsgenie_tags", "tags"),
                ],
                "opsgenie_key",
                "opsgenie",
            )
        },
    },
    Def {
        name: "ms_teams",
        esalert: "teams",
        keys: &[
            "ms_teams_webhook_url",
            "ms_teams_alert_summary",
            "ms_teams_theme_color",
            "ms_teams_proxy",
            "ms_teams_alert_fixed_width",
        ],
        build: |o| {
            mapped(
                o,
                "teams",
                &[("ms_teams_webhook_url", "webhook_url")],
                "ms_teams_webhook_url",
                "ms_teams",
            )
        },
    },
    Def {
        name: "ms_power_automate",
        esalert: "teams",
        keys: &[
            "ms_power_automate_webhook_url",
            "ms_power_automate_alert_summary",
            "ms_power_automate_proxy",
        ],
        build: |o| {
            mapped(
                o,
                "teams",
                &[("ms_power_automate_webhook_url", "webhook_url")],
                "ms_power_automate_webhook_url",
                "ms_power_automate",
            )
        },
    },
    Def {
        name: "telegram",
        esalert: "telegram",
        keys: &[
            "telegram_bot_token",
            "telegram_room_id",
            "telegram_api_url",
            "telegram_parse_mode",
            "telegram_proxy",
            "telegram_proxy_login",
            "telegram_proxy_pass",
            "telegram_thread_id",
        ],
        build: |o| {
            mapped(
                o,
                "telegram",
                &[
                    ("telegram_bot_token", "bot_token"),
                    ("telegram_room_id", "chat_id"),
                    ("telegram_api_url", "api_url"),
                ],
                "telegram_bot_token",
                "telegram",
            )
        },
    },
    Def {
        name: "discord",
        esalert: "discord",
        keys: &[
            "discord_webhook_url",
            "discord_emoji_title",
            "discord_embed_color",
            "discord_embed_footer",
            "discord_embed_icon_url",
            "discord_proxy",
            "discord_proxy_login",
            "discord_proxy_password",
        ],
        build: |o| {
            mapped(
                o,
                "discord",
                &[("discord_webhook_url", "webhook_url")],
                "discord_webhook_url",
                "discord",
            )
        },
    },
    Def {
        name: "post",
        esalert: "webhook",
        keys: &[
            "http_post_url",
            "http_post_headers",
            "http_post_payload",
            "http_post_static_payload",
            "http_post_all_values",
            "http_post_timeout",
            "http_post_proxy",
            "http_post_ca_certs",
            "http_post_ignore_ssl_errors",
        ],
        build: |o| {
            mapped(
                o,
                "webhook",
                &[("http_post_url", "url"), ("http_post_headers", "headers")],
                "http_post_url",
                "post",
            )
        },
    },
    Def {
        name: "post2",
        esalert: "webhook",
        keys: &[
            "http_post2_url",
            "http_post2_headers",
            "http_post2_payload",
            "http_post2_raw_fields",
            "http_post2_all_values",
            "http_post2_timeout",
            "http_post2_proxy",
            "http_post2_ca_certs",
            "http_post2_ignore_ssl_errors",
        ],
        build: |o| {
            mapped(
                o,
                "webhook",
                &[("http_post2_url", "url"), ("http_post2_headers", "headers")],
                "http_post2_url",
                "post2",
            )
        },
    },
    Def {
        name: "jira",
        esalert: "jira",
        keys: &[
            "jira_server",
            "jira_project",
            "jira_issuetype",
            "jira_account_file",
            "jira_components",
            "jira_component",
            "jira_labels",
            "jira_label",
            "jira_priority",
            "jira_assignee",
            "jira_watchers",
            "jira_description",
            "jira_bump_tickets",
            "jira_bump_not_in_statuses",
            "jira_bump_in_statuses",
            "jira_bump_after_inactivity",
            "jira_bump_only",
            "jira_max_age",
            "jira_ignore_in_title",
            "jira_transition_to",
            "jira_parent",
        ],
        build: |o| {
            mapped(
                o,
                "jira",
                &[
                    ("jira_server", "url"),
                    ("jira_project", "project"),
                    ("jira_issuetype", "issue_type"),
                    ("jira_labels", "labels"),
                ],
                "jira_server",
                "jira",
            )
        },
    },
    Def {
        name: "hivealerter",
        esalert: "thehive",
        keys: &[
            "hive_connection",
            "hive_alert_config",
            "hive_observable_data_mapping",
        ],
        build: |o| {
            let (conn, at) = o.get("hive_connection").map(|(v, a)| (v.clone(), a))?;
            let host = conn.get("hive_host").and_then(Value::as_str);
            let Some(host) = host else {
                o.problem(&at, "`hive_connection` needs `hive_host`".into());
                return None;
            };
            let url = match conn.get("hive_port").and_then(Value::as_u64) {
                Some(p) => format!("{host}:{p}"),
                None => host.to_owned(),
            };
            let mut d = json!({"type": "thehive", "url": url});
            if let Some(k) = conn.get("hive_apikey") {
                d["api_key"] = k.clone();
            }
            Some((d, Map::new()))
        },
    },
];

/// ElastAlert alerters esalert doesn't have.
const NOT_YET: &[&str] = &[
    "alerta",
    "alertmanager",
    "chatwork",
    "datadog",
    "dingtalk",
    "exotel",
    "flashduty",
    "gelf",
    "gitter",
    "googlechat",
    "iris",
    "indexer",
    "lark",
    "line",
    "matrixhookshot",
    "mattermost",
    "pagertree",
    "rocketchat",
    "servicenow",
    "ses",
    "smseagle",
    "sns",
    "sqs",
    "stomp",
    "tencent_sms",
    "twilio",
    "victorops",
    "webex_webhook",
    "workwechat",
    "yzj",
    "zabbix",
];

/// Prefixes of alerter settings: a rule may carry settings of alerters it
/// doesn't use, and ElastAlert ignores them.
const PREFIXES: &[&str] = &[
    "alerta_",
    "alertmanager_",
    "chatwork_",
    "command",
    "datadog_",
    "dingtalk_",
    "discord_",
    "exotel_",
    "fail_on_non_zero_exit",
    "flashduty_",
    "gelf_",
    "gitter_",
    "googlechat_",
    "hive_",
    "http_post",
    "indexer_",
    "iris_",
    "jira_",
    "lark_",
    "line_",
    "matrixhookshot_",
    "mattermost_",
    "ms_power_automate_",
    "ms_teams_",
    "opsgenie_",
    "pagerduty_",
    "pagertree_",
    "pipe_",
    "rocket_chat_",
    "service_now_",
    "servicenow_",
    "ses_",
    "slack_",
    "smseagle_",
    "sns_",
    "sqs_",
    "stomp_",
    "telegram_",
    "tencent_sms_",
    "twilio_",
    "victorops_",
    "webex_",
    "work_wechat_",
    "yzj_",
    "zbx_",
    "assignment_group",
    "caller_id",
    "cmdb_ci",
];

/// Whether `k` is an ElastAlert alerter's setting.
pub fn is_alerter_key(k: &str) -> bool {
    known::KNOWN.binary_search(&k).is_ok() && PREFIXES.iter().any(|p| k.starts_with(p))
        || DEFS.iter().any(|d| d.keys.contains(&k))
}

/// Reads `alert` and each alerter's settings.
pub fn read(ch: &mut Checker<'_>, _display: &str) -> Alerters {
    let mut out = Alerters {
        list: Vec::new(),
        used_keys: Vec::new(),
    };
    let Some(v) = ch.raw("alert") else {
        return out;
    };
    let entries: Vec<(Value, String)> = match v {
        Value::String(_) => vec![(v.clone(), "/alert".to_owned())],
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, x)| (x.clone(), format!("/alert/{i}")))
            .collect(),
        _ => {
            ch.problem(
                "/alert",
                "`alert` must be an alerter name or a list of them, e.g. `[slack]`",
            );
            return out;
        }
    };
    if entries.is_empty() {
        ch.problem(
            "/alert",
            "`alert` is empty: name at least one alerter, e.g. `debug`",
        );
    }
    let top = ch.top;
    for (i, (entry, at)) in entries.iter().enumerate() {
        let (name, own, own_at) = match entry {
            Value::String(s) => (s.clone(), None, String::new()),
            Value::Object(m) if m.len() == 1 => {
                let (k, v) = m
                    .iter()
                    .next()
                    .map(|(k, v)| (k.clone(), v))
                    .unwrap_or_default();
                let own = match (top.get("alert"), v) {
                    (Some(Value::Array(a)), Value::Object(_)) => {
                        a.get(i).and_then(|e| e.get(&k)).and_then(Value::as_object)
                    }
                    _ => None,
                };
                (k.clone(), own, format!("{at}/{}", super::yaml::escape(&k)))
            }
            _ => {
                ch.problem(
                    at,
                    "each alerter is a name, or a mapping of one name to its settings",
                );
                continue;
            }
        };
        if name == "debug" {
            out.list.push(Alerter {
                id: numbered(&out.list, "debug"),
                kind: Kind::Log,
            });
            continue;
        }
        let Some(def) = DEFS.iter().find(|d| d.name == name) else {
            let msg = if NOT_YET.contains(&name.as_str()) {
                format!(
                    "alerter `{name}` is not supported by esalert yet; supported: debug, {}",
                    supported()
                )
            } else if name.contains('.') {
                format!("custom alerter `{name}` is a Python class; esalert can't run it")
            } else {
                format!(
                    "unknown alerter `{name}`; use one of debug, {}",
                    supported()
                )
            };
            ch.problem(at, msg);
            continue;
        };
        out.used_keys.extend_from_slice(def.keys);
        if crate::sinks::destinations::of_type(def.esalert).is_none() {
            ch.problem(at, format!(
                "alerter `{name}` needs esalert's `{}` destination, which this build does not have yet",
                def.esalert
            ));
            continue;
        }
        let mut o = Opts { ch, own, own_at };
        let Some((dest, settings)) = (def.build)(&mut o) else {
            continue;
        };
        // `slack_webhook_url` may list several webhooks: one action each.
        let dests = match dest.get("webhook_url") {
            Some(Value::Array(urls)) => urls
                .iter()
                .map(|u| {
                    let mut d = dest.clone();
                    d["webhook_url"] = u.clone();
                    d
                })
                .collect(),
            _ => vec![dest],
        };
        for destination in dests {
            out.list.push(Alerter {
                id: numbered(&out.list, def.name),
                kind: Kind::Inline {
                    destination,
                    alerter: def.name,
                    settings: settings.clone(),
                },
            });
        }
    }
    out
}

fn supported() -> String {
    DEFS.iter()
        .filter(|d| crate::sinks::destinations::of_type(d.esalert).is_some())
        .map(|d| d.name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn numbered(list: &[Alerter], name: &str) -> String {
    let n = list
        .iter()
        .filter(|a| a.id == name || a.id.starts_with(&format!("{name}-")))
        .count();
    if n == 0 {
        name.to_owned()
    } else {
        format!("{name}-{}", n + 1)
    }
}

impl Alerter {
    /// The message for notification `n` about match `m`.
    pub fn message(&self, n: &mut Notification, c: &Common, m: &Match) -> Message {
        match &self.kind {
            Kind::Log => {
                let at = m
                    .doc
                    .get(&c.timestamp_field)
                    .map(super::check::python_str)
                    .unwrap_or_default();
                let head = match &m.key {
                    Some(k) => format!("Alert for {}, {k} at {at}:", c.text.name),
                    None => format!("Alert for {} at {at}:", c.text.name),
                };
                Message::Log {
                    alert: c.id.clone(),
                    level: "info".into(),
                    text: format!("{head}\n{}", n.rendered.text),
                }
            }
            Kind::Inline {
                destination,
                alerter,
                settings,
            } => {
                if *alerter == "email" && c.text.subject.is_none() && !n.resolved {
                    // EmailAlerter's default title.
                    let mut s = format!("ElastAlert: {}", c.text.name);
                    if let Some(k) = m.key.as_ref().filter(|k| !k.is_empty() && *k != "_missing") {
                        s.push_str(&format!(" - {k}"));
                    }
                    n.rendered.subject = crate::render::one_line(&s);
                }
                n.settings = settings.clone();
                if *alerter == "command" {
                    // The program's arguments for this match, and its input.
                    let argv: Vec<Value> = settings
                        .get("command")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(|a| Value::String(percent_format(a, &m.doc, &c.text.missing)))
                        .collect();
                    let mut own = Map::new();
                    own.insert("argv".into(), Value::Array(argv));
                    if settings.get("pipe_match_json") == Some(&Value::Bool(true)) {
                        own.insert(
                            "stdin".into(),
                            Value::String(Value::Object(m.doc.clone()).to_string()),
                        );
                    } else if settings.get("pipe_alert_text") == Some(&Value::Bool(true)) {
                        own.insert("stdin".into(), Value::String(n.rendered.text.clone()));
                    }
                    n.settings = own;
                }
                Message::Inline {
                    destination: destination.clone(),
                    notification: n.clone(),
                }
            }
        }
    }
}

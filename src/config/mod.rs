//! `credentials.json`: connection settings and secrets.
//!
//! A string written as `${NAME}` is read from the environment, so that a
//! systemd unit can supply secrets. Secrets are [`SecretString`]s: they print
//! as `[REDACTED]` in `Debug` output and never reach a log line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value;

use crate::alert::locate::{Position, Seg, locate};
use crate::alert::{ByteSize, HumanDuration};

/// Why the credentials file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error(
        "{}: cannot read credentials file: {source}; copy credentials.example.json to start one, or pass --credentials",
        path.display()
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid JSON or does not fit the schema.
    #[error("{}:{}:{}: {message}", path.display(), pos.line, pos.column)]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Where.
        pos: Position,
        /// What is wrong.
        message: String,
    },
    /// A `${NAME}` reference to an unset environment variable.
    #[error(
        "{}:{}:{}: environment variable {var} is not set (referenced as \"${{{var}}}\"); export it or write the value in the file",
        path.display(), pos.line, pos.column
    )]
    MissingEnv {
        /// The file.
        path: PathBuf,
        /// Where the reference is.
        pos: Position,
        /// The variable's name.
        var: String,
    },
    /// `elastalert.yaml`'s connection settings, read for a credentials.json
    /// without a cluster, have a problem (the message has its position).
    #[error("{0}")]
    ElastAlert(String),
}

/// An `elastalert.yaml` whose connection settings stand in for credentials.json's
/// `elasticsearch` section has a problem.
impl ConfigError {
    fn elastalert(e: crate::alert::LoadError) -> ConfigError {
        ConfigError::ElastAlert(e.to_string())
    }
}

/// The whole credentials file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// The cluster to search.
    pub elasticsearch: EsConfig,
    /// Slack delivery settings.
    #[serde(default)]
    pub slack: Option<SlackConfig>,
    /// Email delivery settings.
    #[serde(default)]
    pub email: Option<EmailConfig>,
    /// Named destinations, by name: `{"type": "pagerduty", …}`; each
    /// type's settings are checked when the destinations are built
    /// (see [`crate::sinks::destinations`]).
    #[serde(default)]
    pub outputs: std::collections::BTreeMap<String, Value>,
    /// Where esalert's notices about itself go ("alert is failing", "the
    /// cluster is unreachable"); by default every destination people read
    /// (chat and email).
    #[serde(default)]
    pub notices: Option<Vec<String>>,
    /// Lets rules run programs (ElastAlert's `command` alerter). Off by
    /// default: a rule file then can't make esalert execute anything.
    #[serde(default)]
    pub allow_command_alerter: bool,
    /// The web console on `--listen`: its token, and read-only mode.
    #[serde(default)]
    pub console: Option<crate::console::ConsoleConfig>,
}

/// How to reach Elasticsearch or OpenSearch.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EsConfig {
    /// Base URL, e.g. `https://localhost:9200`.
    pub url: String,
    /// Basic-auth user.
    #[serde(default)]
    pub username: Option<String>,
    /// Basic-auth password.
    #[serde(default)]
    pub password: Option<SecretString>,
    /// An API key (the base64 `id:key` form), sent as `Authorization: ApiKey …`.
    #[serde(default)]
    pub api_key: Option<SecretString>,
    /// A PEM file with the CA that signed the cluster's certificate.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// Skips certificate verification. Logged as a warning at every start.
    #[serde(default)]
    pub insecure: bool,
    /// Overall timeout of each request (connect, send, read the answer).
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// The largest answer read from the cluster (default 10 MB); an alert's
    /// own `max_response_size` overrides it.
    #[serde(default)]
    pub max_response_size: Option<ByteSize>,
    /// Set when `url` carried `user:password@`, which [`Credentials::parse`]
    /// moved out of it: the client warns at start.
    #[serde(skip)]
    pub credentials_in_url: bool,
}

/// Slack settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// An incoming-webhook URL.
    #[serde(default)]
    pub webhook_url: Option<SecretString>,
    /// A bot token (`xoxb-…`) for `chat.postMessage`.
    #[serde(default)]
    pub token: Option<SecretString>,
    /// Default channel in bot-token mode.
    #[serde(default)]
    pub channel: Option<String>,
    /// Slack API base URL; change only for tests or Slack-compatible servers.
    #[serde(default)]
    pub api_url: Option<String>,
    /// The colour bar of posts: `critical`, `error`, `warning` or `info`
    /// (an alert may set its own); no bar when absent.
    #[serde(default)]
    pub severity: Option<crate::notify::Severity>,
    /// Overall timeout of one post.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
}

/// SMTP connection security.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Upgrade with STARTTLS (port 587).
    #[default]
    Starttls,
    /// Implicit TLS (port 465).
    Tls,
    /// Plain text, for local relays (port 25).
    None,
}

/// Email settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// SMTP server host name.
    pub smtp_host: String,
    /// SMTP port; defaults by `security` (587, 465 or 25).
    #[serde(default)]
    pub smtp_port: Option<u16>,
    /// `starttls`, `tls` or `none`.
    #[serde(default)]
    pub security: Security,
    /// SMTP user; no authentication when absent.
    #[serde(default)]
    pub username: Option<String>,
    /// SMTP password.
    #[serde(default)]
    pub password: Option<SecretString>,
    /// Allows a username and password with `security: none`, which sends
    /// them unencrypted: only for a relay on a trusted network.
    #[serde(default)]
    pub allow_plaintext_auth: bool,
    /// The `From` address.
    pub from: String,
    /// Default recipients.
    #[serde(default)]
    pub to: Vec<String>,
    /// Default `Cc` recipients.
    #[serde(default)]
    pub cc: Vec<String>,
    /// Default `Bcc` recipients.
    #[serde(default)]
    pub bcc: Vec<String>,
    /// The `Reply-To` address.
    #[serde(default)]
    pub reply_to: Option<String>,
    /// A YAML or JSON file with `user` and `password` (ElastAlert's
    /// `smtp_auth_file`), read when the destination is first used, so the
    /// password is in neither the rule nor the store.
    #[serde(default)]
    pub auth_file: Option<std::path::PathBuf>,
    /// Overall timeout of one send.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
}

/// The overall timeout of a request when the settings name none (30s).
pub(crate) fn default_timeout() -> HumanDuration {
    HumanDuration::parse("30s").expect("literal")
}

impl EsConfig {
    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout.value
    }

    /// The largest answer read from the cluster.
    pub fn max_response_size(&self) -> ByteSize {
        self.max_response_size.unwrap_or(ByteSize::DEFAULT_RESPONSE)
    }

    /// Moves `user:password@` out of `url` into `username`/`password`
    /// (unless credentials are configured there already), so that the URL
    /// can be logged; [`credentials_in_url`](Self::credentials_in_url) says
    /// it happened.
    pub fn take_url_credentials(&mut self) {
        let (clean, creds) = crate::net::split_userinfo(&self.url);
        let Some((user, pass)) = creds else { return };
        self.url = clean;
        self.credentials_in_url = true;
        if self.username.is_none() && self.api_key.is_none() && !user.is_empty() {
            self.username = Some(user);
            self.password = Some(SecretString::from(pass));
        }
    }
}

/// Keys whose values are secrets: errors name them, never show their values.
const SECRET_KEYS: &[&str] = &[
    "password",
    "api_key",
    "token",
    "webhook_url",
    "routing_key",
    "bot_token",
    "api_token",
    "bearer",
];

/// Whether a serde path (`elasticsearch.password`) ends at a secret.
pub fn is_secret_path(path: &str) -> bool {
    path.rsplit('.')
        .next()
        .is_some_and(|last| SECRET_KEYS.contains(&last))
}

/// Replaces every `"${NAME}"` string with the variable's value.
fn expand_env(
    v: &mut Value,
    path: &mut Vec<Seg>,
    env: &dyn Fn(&str) -> Option<String>,
    missing: &mut Option<(Vec<Seg>, String)>,
) {
    match v {
        Value::String(s) => {
            if let Some(var) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
                match env(var) {
                    Some(val) => *s = val,
                    None => {
                        if missing.is_none() {
                            *missing = Some((path.clone(), var.to_owned()));
                        }
                    }
                }
            }
        }
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                path.push(Seg::key(k.as_str()));
                expand_env(v, path, env, missing);
                path.pop();
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter_mut().enumerate() {
                path.push(Seg::Index(i));
                expand_env(v, path, env, missing);
                path.pop();
            }
        }
        _ => {}
    }
}

impl Credentials {
    /// Reads the file, warning when others can read it.
    ///
    /// Without a cluster in it (or without the file), the connection
    /// settings of an `elastalert.yaml` beside it name the cluster, so an
    /// ElastAlert deployment's config works as it is.
    pub fn load(path: &Path) -> Result<Credentials, ConfigError> {
        let ea = || {
            crate::frontends::elastalert::globals::cluster(path).map_err(ConfigError::elastalert)
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(source) => match (source.kind(), ea()?) {
                (std::io::ErrorKind::NotFound, Some(es)) => {
                    serde_json::json!({ "elasticsearch": es }).to_string()
                }
                _ => {
                    return Err(ConfigError::Read {
                        path: path.to_owned(),
                        source,
                    });
                }
            },
        };
        let text = match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(mut m)) if !m.contains_key("elasticsearch") => match ea()? {
                Some(es) => {
                    m.insert("elasticsearch".into(), es);
                    serde_json::to_string_pretty(&m).unwrap_or(text)
                }
                None => text,
            },
            _ => text,
        };
        #[cfg(unix)]
        if let Ok(meta) = std::fs::metadata(path)
            && let Some(problem) = permission_problem(&meta)
        {
            use std::os::unix::fs::PermissionsExt;
            tracing::warn!(
                event = "insecure_credentials",
                path = %path.display(),
                mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "credentials file {problem}"
            );
        }
        Self::parse(path, &text, &|k| std::env::var(k).ok())
    }

    /// Parses credentials text, reading `${NAME}` references through `env`.
    pub fn parse(
        path: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Credentials, ConfigError> {
        let invalid = |e: &serde_json::Error, at: Option<String>| {
            let full = e.to_string();
            let msg = full.rfind(" at line ").map_or(&full[..], |i| &full[..i]);
            ConfigError::Invalid {
                path: path.to_owned(),
                pos: Position {
                    line: e.line().max(1),
                    column: e.column().max(1),
                },
                message: match at {
                    // serde quotes the value it met ("invalid type: integer
                    // `12345`"): for a secret, say what is expected instead.
                    Some(p) if e.is_data() && is_secret_path(&p) => format!(
                        "`{p}` must be a string, such as \"${{ENV_VAR}}\"; the value written there is not shown because it is a secret"
                    ),
                    Some(p) if p != "." => format!("{msg} (at `{p}`)"),
                    _ => msg.to_owned(),
                },
            }
        };
        // Check the schema on the text first, so errors carry positions.
        let mut de = serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize::<_, Credentials>(&mut de)
            .map_err(|e| invalid(e.inner(), Some(e.path().to_string())))?;
        let mut value: Value = serde_json::from_str(text).map_err(|e| invalid(&e, None))?;
        let mut missing = None;
        expand_env(&mut value, &mut Vec::new(), env, &mut missing);
        if let Some((segs, var)) = missing {
            return Err(ConfigError::MissingEnv {
                path: path.to_owned(),
                pos: locate(text, &segs).unwrap_or(Position { line: 1, column: 1 }),
                var,
            });
        }
        let mut creds: Credentials =
            serde_path_to_error::deserialize(value).map_err(|e| {
                let at = e.path().to_string();
                ConfigError::Invalid {
                    path: path.to_owned(),
                    pos: locate(text, &path_segs(&at)).unwrap_or(Position { line: 1, column: 1 }),
                    message: if is_secret_path(&at) {
                        format!("after reading environment variables: `{at}` is not valid; its value is not shown because it is a secret")
                    } else {
                        format!("after reading environment variables: {} (at `{at}`)", e.inner())
                    },
                }
            })?;
        creds.elasticsearch.take_url_credentials();
        if let Some(email) = &creds.email
            && email.security == Security::None
            && email.username.is_some()
            && !email.allow_plaintext_auth
        {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                pos: locate(text, &[Seg::key("email"), Seg::key("security")])
                    .or_else(|| locate(text, &[Seg::key("email"), Seg::key("username")]))
                    .unwrap_or(Position { line: 1, column: 1 }),
                message: "email: `security: none` with a username would send the SMTP password unencrypted; use \"starttls\" or \"tls\", or set \"allow_plaintext_auth\": true if the relay is on a trusted network".into(),
            });
        }
        Ok(creds)
    }
}

/// Settings that parse but will fail or be ignored at run time, each with
/// its position in `text`: for `esalert check`. Values are not shown (URLs
/// may carry secrets).
pub fn lint(path: &Path, text: &str, creds: &Credentials) -> Vec<crate::alert::Problem> {
    let mut out = Vec::new();
    let mut at = |segs: &[&str], message: String| {
        let segs: Vec<Seg> = segs.iter().map(|s| Seg::key(*s)).collect();
        out.push(crate::alert::Problem {
            path: path.to_owned(),
            position: locate(text, &segs),
            message,
        });
    };
    let mut url = |segs: &[&str], value: Option<&str>, example: &str| {
        if value.is_some_and(|v| !has_http_scheme(v)) {
            at(
                segs,
                format!(
                    "`{}` must start with http:// or https://, e.g. \"{example}\"",
                    segs.join(".")
                ),
            );
        }
    };
    let es = &creds.elasticsearch;
    url(
        &["elasticsearch", "url"],
        Some(&es.url),
        "https://localhost:9200",
    );
    if let Some(slack) = &creds.slack {
        use secrecy::ExposeSecret;
        url(
            &["slack", "webhook_url"],
            slack.webhook_url.as_ref().map(|s| s.expose_secret()),
            "https://hooks.slack.com/services/…",
        );
        url(
            &["slack", "api_url"],
            slack.api_url.as_deref(),
            "https://slack.com/api",
        );
    }
    if let Some(ca) = &es.ca_cert
        && let Err(e) = crate::search::read_ca_cert(ca)
    {
        at(&["elasticsearch", "ca_cert"], e);
    }
    if let Some(slack) = &creds.slack
        && slack.uses_webhook()
        && slack.channel.is_some()
    {
        at(
            &["slack", "channel"],
            "`slack.channel` is ignored: an incoming webhook always posts to the channel it was created for; remove `channel`, or use a bot `token` to choose the channel".into(),
        );
    }
    out
}

/// Whether `url` starts with `http://` or `https://` (any case).
fn has_http_scheme(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

impl SlackConfig {
    /// Whether posts go to an incoming webhook (a `token` wins over it),
    /// where the channel is the webhook's and `channel` settings are ignored.
    pub fn uses_webhook(&self) -> bool {
        self.token.is_none() && self.webhook_url.is_some()
    }
}

/// Segments of a serde path such as `email.to[0]`, for [`locate`].
pub fn path_segs(path: &str) -> Vec<Seg> {
    let mut segs = Vec::new();
    for part in path.split('.').filter(|s| !s.is_empty() && *s != "?") {
        let mut pieces = part.split('[');
        if let Some(key) = pieces.next().filter(|k| !k.is_empty()) {
            segs.push(Seg::key(key));
        }
        for idx in pieces {
            if let Ok(i) = idx.trim_end_matches(']').parse() {
                segs.push(Seg::Index(i));
            }
        }
    }
    segs
}

/// Why others could read the credentials: anyone may (others' bits), or a
/// group esalert doesn't run in may. `root:esalert 0640` read by the
/// service user `esalert`, as the systemd install does, is fine. As root,
/// only others' bits are checked: root is not the service, so its groups
/// say nothing.
#[cfg(unix)]
fn permission_problem(meta: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let mode = meta.mode();
    if mode & 0o006 != 0 {
        return Some(
            "is readable or writable by every user on this host; run chmod 600 on it (or chmod 640 with the service's group)".into(),
        );
    }
    if mode & 0o060 != 0 && !own_group(meta.gid()) {
        return Some(format!(
            "is readable by group {} that esalert does not run in; run chmod 600 on it, or chgrp it to the service's group",
            meta.gid()
        ));
    }
    None
}

/// Whether the process runs as root or in group `gid`.
#[cfg(unix)]
fn own_group(gid: u32) -> bool {
    // SAFETY: geteuid and getegid take no arguments and cannot fail.
    let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if euid == 0 || egid == gid {
        return true;
    }
    // SAFETY: a zero-length call only counts the groups.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    let Ok(len) = usize::try_from(n) else {
        return false;
    };
    let mut groups: Vec<libc::gid_t> = vec![0; len];
    // SAFETY: `groups` has room for `n` entries, as passed.
    let got = unsafe { libc::getgroups(n, groups.as_mut_ptr()) };
    groups.truncate(usize::try_from(got).unwrap_or(0));
    groups.contains(&gid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../credentials.example.json");

    #[test]
    fn example_parses_with_env_and_hides_secrets() {
        let env = |k: &str| Some(format!("secret-of-{k}"));
        let c = Credentials::parse(Path::new("c.json"), EXAMPLE, &env).unwrap();
        assert_eq!(c.elasticsearch.username.as_deref(), Some("elastic"));
        let dbg = format!("{c:?}");
        assert!(
            !dbg.contains("secret-of-"),
            "secret leaked into Debug: {dbg}"
        );
        use secrecy::ExposeSecret;
        assert_eq!(
            c.elasticsearch.password.unwrap().expose_secret(),
            "secret-of-ES_PASSWORD"
        );
    }

    #[test]
    fn missing_env_names_variable_and_position() {
        let e = Credentials::parse(Path::new("c.json"), EXAMPLE, &|_| None).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("ES_PASSWORD"), "{msg}");
        assert!(msg.starts_with("c.json:"), "{msg}");
    }

    #[test]
    fn unknown_key_has_position() {
        let text = "{\"elasticsearch\": {\"url\": \"http://x\", \"pasword\": \"p\"}}";
        let e = Credentials::parse(Path::new("c.json"), text, &|_| None).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("unknown field `pasword`"), "{msg}");
        assert!(msg.starts_with("c.json:1:"), "{msg}");
    }
}

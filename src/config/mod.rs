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

use crate::alert::HumanDuration;
use crate::alert::locate::{Position, Seg, locate};

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
    /// Timeout of each search request.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
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
    /// The `From` address.
    pub from: String,
    /// Default recipients.
    #[serde(default)]
    pub to: Vec<String>,
    /// Default `Cc` recipients.
    #[serde(default)]
    pub cc: Vec<String>,
    /// Overall timeout of one send.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
}

fn default_timeout() -> HumanDuration {
    HumanDuration::parse("30s").expect("literal")
}

impl EsConfig {
    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout.value
    }
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
    pub fn load(path: &Path) -> Result<Credentials, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(path) {
                let mode = meta.permissions().mode();
                if mode & 0o077 != 0 {
                    tracing::warn!(
                        event = "insecure_credentials",
                        path = %path.display(),
                        mode = format!("{:o}", mode & 0o777),
                        "credentials file is readable by group or others; run chmod 600 on it"
                    );
                }
            }
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
        let creds: Credentials =
            serde_json::from_value(value).map_err(|e| ConfigError::Invalid {
                path: path.to_owned(),
                pos: Position { line: 1, column: 1 },
                message: format!("after reading environment variables: {e}"),
            })?;
        Ok(creds)
    }
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

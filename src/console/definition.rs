//! An alert's definition as the console shows it: its file read again,
//! parsed (JSON, or an ElastAlert rule's YAML) and pretty-printed, with
//! every secret replaced.

use std::path::Path;

use serde_json::Value;

/// What a redacted value reads as.
pub const REDACTED: &str = "[redacted]";

/// Key names (lowercase, `-` as `_`) whose values are secrets, or contain some.
const SECRET_PARTS: [&str; 10] = [
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "webhook",
    "authorization",
    "routing_key",
    "private_key",
];

fn secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase().replace('-', "_");
    crate::config::is_secret_path(&k) || SECRET_PARTS.iter().any(|p| k.contains(p))
}

/// Replaces secrets in `v`: values under secret keys, and the user info
/// of URLs anywhere.
pub fn redact(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if secret_key(k) && !matches!(x, Value::Null | Value::Bool(_)) {
                    *x = Value::String(REDACTED.to_owned());
                } else {
                    redact(x);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact),
        Value::String(s) if s.contains("://") && s.contains('@') => {
            let (clean, creds) = crate::net::split_userinfo(s);
            if creds.is_some() {
                *s = clean;
            }
        }
        _ => {}
    }
}

/// The definition of the file at `path`, parsed and redacted; `None` when
/// it can't be read or parsed now (the page says so).
pub fn load(path: &Path) -> Option<Value> {
    let bytes = crate::alert::read_regular(path, crate::alert::MAX_FILE_SIZE).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let yaml = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e == "yaml" || e == "yml");
    let mut v = if yaml {
        crate::frontends::elastalert::yaml::parse(&text).ok()?.value
    } else {
        serde_json::from_str(&text).ok()?
    };
    redact(&mut v);
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_and_url_passwords_are_replaced() {
        let mut v = json!({
            "input": {"http": {"request": {"auth": {"basic": {"username": "u", "password": "hunter2"}},
                "headers": {"Authorization": "Bearer abc"}}}},
            "slack_webhook_url": "https://hooks.slack.com/x",
            "es_url": "https://user:pw@es:9200/",
            "query_key": "host",
            "smtp_ssl": true
        });
        redact(&mut v);
        let s = v.to_string();
        for secret in ["hunter2", "Bearer abc", "hooks.slack.com", "user:pw"] {
            assert!(!s.contains(secret), "{secret} shown in {s}");
        }
        assert_eq!(v["query_key"], "host");
        assert_eq!(v["smtp_ssl"], true);
    }
}

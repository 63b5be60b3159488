//! The Elasticsearch / OpenSearch client: `POST /<index>/_search`.
//!
//! One pooled reqwest client per cluster. Errors are typed so that the caller
//! can tell a bad query (fix the alert) from a bad password (fix credentials)
//! from an outage (wait and retry): see [`SearchError::is_transient`].

use std::error::Error as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::alert::ByteSize;
use crate::config::EsConfig;
use crate::net::{ReadError, read_capped, redirect_location};

pub mod batch;
mod docs;
pub mod fold;
pub mod parse;
pub use docs::{Cond, Doc, DocVersion, Written};

/// Characters escaped in an index pattern. `*` and `,` keep their meaning;
/// everything that could change the URL's structure is encoded.
const INDEX: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'?')
    .add(b'<')
    .add(b'>')
    .add(b'{')
    .add(b'}')
    .add(b'|')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'+')
    .add(b'&')
    .add(b'=');

/// Why a search failed.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The client could not be built from the settings.
    #[error("elasticsearch settings: {0}")]
    Config(String),
    /// Nothing listens at the address.
    #[error("connection refused by {url}; is the cluster up and the URL right?")]
    ConnectionRefused {
        /// The cluster URL.
        url: String,
    },
    /// The host name does not resolve.
    #[error("cannot resolve the host of {url} (DNS failure): {detail}")]
    Dns {
        /// The cluster URL.
        url: String,
        /// The resolver's message.
        detail: String,
    },
    /// The TLS handshake failed, usually an untrusted certificate.
    #[error(
        "TLS error talking to {url}: {detail}; set `ca_cert` to the cluster's CA in credentials.json"
    )]
    Tls {
        /// The cluster URL.
        url: String,
        /// rustls' message.
        detail: String,
    },
    /// Other connection-level failures (reset, closed early).
    #[error("cannot reach {url}: {detail}")]
    Connect {
        /// The cluster URL.
        url: String,
        /// What happened.
        detail: String,
    },
    /// No answer within the timeout.
    #[error("no answer from {url} within {}; the cluster is slow or the query heavy", humantime::format_duration(*after))]
    Timeout {
        /// The cluster URL.
        url: String,
        /// The timeout that fired.
        after: Duration,
    },
    /// 401 or 403.
    #[error(
        "HTTP {status} from the cluster: {reason}; check username/password or api_key in credentials.json, and that the user may read the index"
    )]
    Auth {
        /// 401 or 403.
        status: u16,
        /// Elasticsearch's reason, if any.
        reason: String,
    },
    /// 429: the cluster is shedding load.
    #[error("HTTP 429 from the cluster (too many requests): {reason}")]
    TooManyRequests {
        /// Elasticsearch's reason.
        reason: String,
    },
    /// Another 4xx, such as a query that does not parse.
    #[error("HTTP {status} from the cluster: {kind}: {reason}")]
    Request {
        /// The status code.
        status: u16,
        /// `error.type`.
        kind: String,
        /// `error.reason`, with the root cause and the position in the body
        /// when the cluster gives them.
        reason: String,
    },
    /// 5xx.
    #[error("HTTP {status} from the cluster (server error): {reason}")]
    Server {
        /// The status code.
        status: u16,
        /// Elasticsearch's reason, if any.
        reason: String,
    },
    /// A 3xx: esalert follows no redirect, since a search redirected with
    /// 301/302 turns into a GET without its query, and a 307 re-posts it,
    /// credentials included, to another host.
    #[error(
        "HTTP {status} from the cluster redirects to {location}; esalert does not follow redirects: set `url` in credentials.json to the address that answers searches"
    )]
    Redirect {
        /// The status code.
        status: u16,
        /// The `Location` header, without user info.
        location: String,
    },
    /// The answer is longer than the cap.
    #[error(
        "the cluster's answer is larger than max_response_size ({cap}) and was not read further; make the search return less (`size`, `_source` filtering, fewer aggregation buckets), or raise `max_response_size` in the alert or in credentials.json (`elasticsearch.max_response_size`)"
    )]
    TooLarge {
        /// The cap that was exceeded.
        cap: ByteSize,
    },
    /// A 2xx answer whose body is not JSON, or is cut off.
    #[error(
        "the cluster answered HTTP {status} with a body that is not JSON ({detail}): {snippet:?}"
    )]
    NotJson {
        /// The status code.
        status: u16,
        /// The parser's message.
        detail: String,
        /// The start of the body.
        snippet: String,
    },
}

impl SearchError {
    /// The same error again (one failed `_msearch` is each search's error).
    pub fn duplicate(&self) -> SearchError {
        use SearchError as E;
        match self {
            E::Config(m) => E::Config(m.clone()),
            E::ConnectionRefused { url } => E::ConnectionRefused { url: url.clone() },
            E::Dns { url, detail } => E::Dns {
                url: url.clone(),
                detail: detail.clone(),
            },
            E::Tls { url, detail } => E::Tls {
                url: url.clone(),
                detail: detail.clone(),
            },
            E::Connect { url, detail } => E::Connect {
                url: url.clone(),
                detail: detail.clone(),
            },
            E::Timeout { url, after } => E::Timeout {
                url: url.clone(),
                after: *after,
            },
            E::Auth { status, reason } => E::Auth {
                status: *status,
                reason: reason.clone(),
            },
            E::TooManyRequests { reason } => E::TooManyRequests {
                reason: reason.clone(),
            },
            E::Request {
                status,
                kind,
                reason,
            } => E::Request {
                status: *status,
                kind: kind.clone(),
                reason: reason.clone(),
            },
            E::Server { status, reason } => E::Server {
                status: *status,
                reason: reason.clone(),
            },
            E::Redirect { status, location } => E::Redirect {
                status: *status,
                location: location.clone(),
            },
            E::TooLarge { cap } => E::TooLarge { cap: *cap },
            E::NotJson {
                status,
                detail,
                snippet,
            } => E::NotJson {
                status: *status,
                detail: detail.clone(),
                snippet: snippet.clone(),
            },
        }
    }

    /// Whether the cluster could not be reached at all (as opposed to
    /// answering with an error): such failures hit every alert at once.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            SearchError::ConnectionRefused { .. }
                | SearchError::Dns { .. }
                | SearchError::Tls { .. }
                | SearchError::Connect { .. }
                | SearchError::Timeout { .. }
        )
    }

    /// Whether the cluster refused the credentials.
    pub fn is_auth(&self) -> bool {
        matches!(self, SearchError::Auth { .. })
    }

    /// Whether retrying later may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SearchError::ConnectionRefused { .. }
                | SearchError::Dns { .. }
                | SearchError::Connect { .. }
                | SearchError::Timeout { .. }
                | SearchError::TooManyRequests { .. }
                | SearchError::Server { .. }
                | SearchError::NotJson { .. }
        )
    }
}

/// A successful search.
#[derive(Debug, Clone)]
pub struct SearchResult {
    /// The response body.
    pub response: Value,
    /// Wall time of the request, in milliseconds.
    pub took_ms: u64,
    /// Set when the result is partial (`timed_out`, or shard failures): why.
    pub partial: Option<String>,
}

/// A client for one cluster.
#[derive(Debug, Clone)]
pub struct EsClient {
    http: reqwest::Client,
    base: String,
    auth: Option<Auth>,
    timeout: Duration,
    max_response: ByteSize,
    retry: (usize, Duration),
    /// Set when alert searches are batched into `_msearch` requests.
    batch: Option<Arc<batch::Batcher>>,
    /// With batching, the requests in flight: searches that are not
    /// batched (watches') take one too.
    slots: Option<Arc<tokio::sync::Semaphore>>,
    /// Set when counts of alerts due together are folded.
    fold: Option<Arc<fold::Folder>>,
}

/// How requests authenticate.
#[derive(Clone)]
enum Auth {
    Basic(String, secrecy::SecretString),
    ApiKey(secrecy::SecretString),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Basic(u, _) => write!(f, "Basic({u}, [REDACTED])"),
            Auth::ApiKey(_) => f.write_str("ApiKey([REDACTED])"),
        }
    }
}

/// The most a CA file may hold: a bundle of a few hundred certificates.
const CA_CERT_MAX: u64 = 4 << 20;

/// Reads `ca_cert`: a PEM file with at least one certificate (a file with
/// none, e.g. a key or a DER file, would only fail later, at every TLS
/// handshake). Used by the client and by `esalert check`.
pub fn read_ca_cert(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = crate::alert::read_regular(path, CA_CERT_MAX)
        .map_err(|e| format!("cannot read ca_cert {}: {e}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("ca_cert {} is not PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "ca_cert {} holds no PEM certificate (-----BEGIN CERTIFICATE-----); give the CA's certificate in PEM form",
            path.display()
        ));
    }
    Ok(certs)
}

impl EsClient {
    /// Builds the client. Logs a warning when TLS verification is off, and
    /// when the URL carried a user and password.
    pub fn new(cfg: &EsConfig) -> Result<EsClient, SearchError> {
        let mut cfg = cfg.clone();
        cfg.take_url_credentials();
        if cfg.credentials_in_url {
            tracing::warn!(
                event = "credentials_in_url",
                url = %cfg.url,
                "the elasticsearch url carries user:password@; esalert uses them for basic auth (unless username or api_key is set) and strips them from every log line, but they belong in `username` and `password` (as \"${{ES_PASSWORD}}\") in credentials.json"
            );
        }
        let mut b = crate::net::builder(cfg.timeout())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(64);
        if let Some(ca) = &cfg.ca_cert {
            for c in read_ca_cert(ca).map_err(SearchError::Config)? {
                b = b.add_root_certificate(c);
            }
        }
        if cfg.insecure {
            tracing::warn!(
                event = "tls_insecure",
                url = %cfg.url,
                "TLS certificate verification is OFF for elasticsearch (insecure: true); anyone on the path can read and forge results"
            );
            b = b.danger_accept_invalid_certs(true);
        }
        let http = b
            .build()
            .map_err(|e| SearchError::Config(format!("cannot build HTTP client: {e}")))?;
        let auth = match (&cfg.api_key, &cfg.username, &cfg.password) {
            (Some(k), _, _) => Some(Auth::ApiKey(k.clone())),
            (None, Some(u), p) => Some(Auth::Basic(
                u.clone(),
                p.clone().unwrap_or_else(|| secrecy::SecretString::from("")),
            )),
            _ => None,
        };
        Ok(EsClient {
            http,
            base: cfg.url.trim_end_matches('/').to_owned(),
            auth,
            timeout: cfg.timeout(),
            max_response: cfg.max_response_size(),
            retry: (3, Duration::from_secs(1)),
            batch: None,
            slots: None,
            fold: None,
        })
    }

    /// Batches alert searches issued together into `_msearch` requests of
    /// at most `size` searches (1: no batching), each request holding one
    /// of `slots` while in flight. Needs a Tokio runtime.
    pub fn with_batching(
        mut self,
        size: usize,
        slots: Option<Arc<tokio::sync::Semaphore>>,
    ) -> Self {
        self.batch = None;
        self.slots = None;
        if size > 1 {
            let sender = self.clone();
            self.batch = Some(Arc::new(batch::Batcher::start(sender, size, slots.clone())));
            self.slots = slots;
        }
        self
    }

    /// Whether searches are batched (and so hold no slot of their own).
    pub fn batches(&self) -> bool {
        self.batch.is_some()
    }

    /// Sets how often a search answered with 429 or 502/503/504 is tried
    /// within one run, and the first backoff delay.
    pub fn with_retry(mut self, tries: usize, first_delay: Duration) -> Self {
        self.retry = (tries.max(1), first_delay);
        self
    }

    /// The cluster's base URL, never with user info.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The URL of a search over the given index patterns.
    pub fn search_url(&self, indices: &[String]) -> String {
        let joined = indices
            .iter()
            .map(|i| utf8_percent_encode(i.trim(), INDEX).to_string())
            .collect::<Vec<_>>()
            .join(",");
        format!("{}/{joined}/_search", self.base)
    }

    /// Runs a search. A cluster shedding load (429, 502, 503, 504) gets a
    /// few tries with exponential backoff and jitter; a timeout does not, so
    /// that a slow cluster isn't asked twice as hard.
    pub async fn search(
        &self,
        indices: &[String],
        body: &Value,
    ) -> Result<SearchResult, SearchError> {
        self.search_limited(indices, body, None).await
    }

    /// [`search`](Self::search), reading at most `max_response_size` of the
    /// answer (an alert's own cap) instead of the client's.
    pub async fn search_limited(
        &self,
        indices: &[String],
        body: &Value,
        max_response_size: Option<ByteSize>,
    ) -> Result<SearchResult, SearchError> {
        self.search_retrying(None, indices, body, max_response_size)
            .await
    }

    /// [`search_limited`](Self::search_limited) for the alert `alert`: its
    /// `search_retry` lines name it, since a retry is the alert's news.
    pub async fn search_for(
        &self,
        alert: &str,
        indices: &[String],
        body: &Value,
        max_response_size: Option<ByteSize>,
    ) -> Result<SearchResult, SearchError> {
        self.search_retrying(Some(alert), indices, body, max_response_size)
            .await
    }

    async fn search_retrying(
        &self,
        alert: Option<&str>,
        indices: &[String],
        body: &Value,
        max_response_size: Option<ByteSize>,
    ) -> Result<SearchResult, SearchError> {
        let r = match &self.batch {
            Some(b) => {
                let cap = max_response_size.unwrap_or(self.max_response);
                b.search(self, alert, indices, body, cap).await
            }
            None => {
                self.search_single(alert, indices, body, max_response_size)
                    .await
            }
        };
        if let (Some(f), Some(a)) = (&self.fold, alert) {
            f.note(a, &r);
        }
        r
    }

    /// One search in a request of its own, retried when the cluster sheds
    /// load.
    async fn search_single(
        &self,
        alert: Option<&str>,
        indices: &[String],
        body: &Value,
        max_response_size: Option<ByteSize>,
    ) -> Result<SearchResult, SearchError> {
        use backon::Retryable;
        let (tries, delay) = self.retry;
        let cap = max_response_size.unwrap_or(self.max_response);
        (|| self.search_once(indices, body, cap))
            .retry(
                backon::ExponentialBuilder::default()
                    .with_min_delay(delay)
                    .with_max_delay(delay * 8)
                    .with_max_times(tries - 1)
                    .with_jitter(),
            )
            .when(|e| {
                matches!(e, SearchError::TooManyRequests { .. })
                    || matches!(
                        e,
                        SearchError::Server {
                            status: 502..=504,
                            ..
                        }
                    )
            })
            .notify(|e, d| {
                let retry_in_ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
                match alert {
                    Some(alert) => {
                        tracing::warn!(alert, event = "search_retry", error = %e, retry_in_ms)
                    }
                    None => tracing::warn!(event = "search_retry", error = %e, retry_in_ms),
                }
            })
            .await
    }

    async fn search_once(
        &self,
        indices: &[String],
        body: &Value,
        cap: ByteSize,
    ) -> Result<SearchResult, SearchError> {
        let bytes = serde_json::to_vec(body).expect("a JSON value always serializes");
        self.request_raw(
            reqwest::Method::POST,
            &self.search_url(indices),
            &[],
            bytes,
            "application/json",
            cap,
        )
        .await
    }

    /// A search with URL parameters (Watcher's `search_type`,
    /// `rest_total_hits_as_int`, `indices_options`), with the same retries.
    pub async fn search_with(
        &self,
        indices: &[String],
        params: &[(String, String)],
        body: &Value,
    ) -> Result<SearchResult, SearchError> {
        let url = self.search_url(indices);
        let _slot = match &self.slots {
            Some(s) => s.clone().acquire_owned().await.ok(),
            None => None,
        };
        self.request(reqwest::Method::POST, &url, params, body)
            .await
    }

    /// Indexes one document (`POST /<index>/_doc`, or `PUT` with an id).
    pub async fn index_doc(
        &self,
        index: &str,
        id: Option<&str>,
        doc: &Value,
    ) -> Result<Value, SearchError> {
        let base = format!("{}/{}/_doc", self.base, utf8_percent_encode(index, INDEX));
        let (method, url) = match id {
            Some(id) => (
                reqwest::Method::PUT,
                format!("{base}/{}", utf8_percent_encode(id, INDEX)),
            ),
            None => (reqwest::Method::POST, base),
        };
        Ok(self.request(method, &url, &[], doc).await?.response)
    }

    /// Indexes several documents with one `_bulk` request.
    pub async fn bulk_index(&self, index: &str, docs: &[Value]) -> Result<Value, SearchError> {
        self.bulk("index", index, docs).await
    }

    /// Creates several documents with one `_bulk` request: `create`, the
    /// only operation a data stream takes, and one that refuses a second
    /// document with the same `_id` (409), so a retried send is not indexed
    /// twice. The answer's `items` say how each document fared.
    pub async fn bulk_create(&self, index: &str, docs: &[Value]) -> Result<Value, SearchError> {
        self.bulk("create", index, docs).await
    }

    /// `_bulk` with operation `op` for every document of `docs`; a
    /// document's `_id` key, if any, becomes its id.
    async fn bulk(&self, op: &str, index: &str, docs: &[Value]) -> Result<Value, SearchError> {
        let mut nd = String::new();
        for d in docs {
            let mut meta = serde_json::json!({op: {"_index": index}});
            if let Some(id) = d.get("_id").and_then(Value::as_str) {
                meta[op]["_id"] = Value::String(id.to_owned());
            }
            let mut doc = d.clone();
            if let Value::Object(m) = &mut doc {
                m.remove("_id");
                m.remove("_index");
            }
            nd.push_str(&meta.to_string());
            nd.push('\n');
            nd.push_str(&doc.to_string());
            nd.push('\n');
        }
        self.post_bulk(nd).await.map(|r| r.response)
    }

    /// `POST /_bulk` with an NDJSON body.
    async fn post_bulk(&self, nd: String) -> Result<SearchResult, SearchError> {
        let url = format!("{}/_bulk", self.base);
        self.request_raw(
            reqwest::Method::POST,
            &url,
            &[],
            nd.into_bytes(),
            "application/x-ndjson",
            self.max_response,
        )
        .await
    }

    /// `GET /_cluster/health`: whether the cluster answers, accepts the
    /// credentials, and its status (`green`, `yellow`, `red`).
    pub async fn cluster_health(&self) -> Result<Value, SearchError> {
        let url = format!("{}/_cluster/health", self.base);
        self.get(&url).await.map(|r| r.response)
    }

    /// `GET url`, without a body.
    async fn get(&self, url: &str) -> Result<SearchResult, SearchError> {
        self.request_raw(
            reqwest::Method::GET,
            url,
            &[],
            Vec::new(),
            "application/json",
            self.max_response,
        )
        .await
    }

    /// `GET /_scripts/<id>`: a stored script (`{"_id", "found", "script":
    /// {"lang", "source"}}`), or `None` when the cluster has none by that id.
    pub async fn stored_script(&self, id: &str) -> Result<Option<Value>, SearchError> {
        let url = format!("{}/_scripts/{}", self.base, utf8_percent_encode(id, INDEX));
        match self.get(&url).await {
            Ok(r) if r.response["found"] == Value::Bool(false) => Ok(None),
            Ok(r) => Ok(Some(r.response)),
            Err(SearchError::Request { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn request(
        &self,
        method: reqwest::Method,
        url: &str,
        params: &[(String, String)],
        body: &Value,
    ) -> Result<SearchResult, SearchError> {
        let bytes = serde_json::to_vec(body).expect("a JSON value always serializes");
        self.request_raw(
            method,
            url,
            params,
            bytes,
            "application/json",
            self.max_response,
        )
        .await
    }

    async fn request_raw(
        &self,
        method: reqwest::Method,
        url: &str,
        params: &[(String, String)],
        bytes: Vec<u8>,
        content_type: &str,
        cap: ByteSize,
    ) -> Result<SearchResult, SearchError> {
        let started = Instant::now();
        let mut req = self
            .http
            .request(method, url)
            .query(params)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(bytes);
        match &self.auth {
            Some(Auth::Basic(user, pass)) => req = req.basic_auth(user, Some(pass.expose_secret())),
            Some(Auth::ApiKey(key)) => {
                let mut v = reqwest::header::HeaderValue::from_str(&format!(
                    "ApiKey {}",
                    key.expose_secret()
                ))
                .map_err(|_| {
                    SearchError::Config(
                        "api_key holds characters not allowed in an HTTP header".into(),
                    )
                })?;
                v.set_sensitive(true);
                req = req.header(reqwest::header::AUTHORIZATION, v);
            }
            None => {}
        }
        let resp = req.send().await.map_err(|e| self.transport_error(e))?;
        let status = resp.status();
        if let Some(location) = redirect_location(&resp) {
            return Err(SearchError::Redirect {
                status: status.as_u16(),
                location,
            });
        }
        let body = read_capped(resp, cap.bytes()).await.map_err(|e| match e {
            ReadError::TooLarge(_) => SearchError::TooLarge { cap },
            ReadError::Transport(e) => self.transport_error(e),
        })?;
        let took_ms = started.elapsed().as_millis() as u64;
        if !status.is_success() {
            return Err(status_error(status, &body));
        }
        let response = parse::from_slice(&body).map_err(|e| SearchError::NotJson {
            status: status.as_u16(),
            detail: e.to_string(),
            snippet: snippet(&body),
        })?;
        let partial = partial_reason(&response);
        Ok(SearchResult {
            response,
            took_ms,
            partial,
        })
    }

    fn transport_error(&self, e: reqwest::Error) -> SearchError {
        let url = self.base.clone();
        if e.is_timeout() {
            return SearchError::Timeout {
                url,
                after: self.timeout,
            };
        }
        // Walk the cause chain: hyper-util, io and rustls errors are nested.
        let mut chain = Vec::new();
        let mut src: Option<&dyn std::error::Error> = e.source();
        while let Some(s) = src {
            if let Some(tls) = s.downcast_ref::<rustls::Error>() {
                return SearchError::Tls {
                    url,
                    detail: tls.to_string(),
                };
            }
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::ConnectionRefused {
                    return SearchError::ConnectionRefused { url };
                }
                if io.kind() == std::io::ErrorKind::TimedOut {
                    return SearchError::Timeout {
                        url,
                        after: self.timeout,
                    };
                }
                // io::Error::source() skips the wrapped error, and hyper
                // nests io errors, so unwrap them by hand.
                let mut inner = io.get_ref();
                while let Some(i) = inner {
                    if let Some(tls) = i.downcast_ref::<rustls::Error>() {
                        return SearchError::Tls {
                            url,
                            detail: tls.to_string(),
                        };
                    }
                    inner = i
                        .downcast_ref::<std::io::Error>()
                        .and_then(|io| io.get_ref());
                }
            }
            chain.push(s.to_string());
            src = s.source();
        }
        let detail = if chain.is_empty() {
            e.to_string()
        } else {
            chain.join(": ")
        };
        if detail.contains("dns error") || detail.contains("failed to lookup address") {
            return SearchError::Dns { url, detail };
        }
        if detail.contains("certificate") || detail.contains("tls") || detail.contains("TLS") {
            return SearchError::Tls { url, detail };
        }
        SearchError::Connect { url, detail }
    }
}

fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(200)]);
    s.into_owned()
}

/// Elasticsearch's error type and reason for an error answer. The type is
/// `error.type`; the reason is `error.reason`, followed by the root cause
/// (`error.root_cause[0]`) when it says something else, as for
/// `search_phase_execution_exception: all shards failed`, and by the
/// position in the request body when the cluster gives one (a misspelt
/// query). Answers without that structure fall back to a plain-string
/// `error`, `message`, or the raw body.
fn error_reason(body: &[u8]) -> (String, String) {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return ("unknown".into(), snippet(body));
    };
    let err = &v["error"];
    let root = &err["root_cause"][0];
    let top_kind = err["type"].as_str();
    let top_reason = err["reason"].as_str();
    let kind = top_kind
        .or(root["type"].as_str())
        .unwrap_or("unknown")
        .to_owned();
    let mut reason = top_reason
        .or(root["reason"].as_str())
        .or(err.as_str())
        .or(v["message"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| snippet(body));
    if let (Some(rk), Some(rr)) = (root["type"].as_str(), root["reason"].as_str())
        && (Some(rk) != top_kind || Some(rr) != top_reason)
    {
        reason = format!("{reason}; root cause: {rk}: {rr}");
    }
    let line = root["line"].as_u64().or(err["line"].as_u64());
    let col = root["col"].as_u64().or(err["col"].as_u64());
    if let (Some(line), Some(col)) = (line, col) {
        reason = format!("{reason} (line {line}, column {col} of the search body as sent)");
    }
    (kind, reason)
}

fn status_error(status: StatusCode, body: &[u8]) -> SearchError {
    let (kind, reason) = error_reason(body);
    let code = status.as_u16();
    match code {
        401 | 403 => SearchError::Auth {
            status: code,
            reason,
        },
        429 => SearchError::TooManyRequests { reason },
        400..=499 => SearchError::Request {
            status: code,
            kind,
            reason,
        },
        _ => SearchError::Server {
            status: code,
            reason,
        },
    }
}

/// Why a 200 answer is incomplete, if it is.
pub fn partial_reason(response: &Value) -> Option<String> {
    let mut why = Vec::new();
    if response["timed_out"].as_bool() == Some(true) {
        why.push("search timed out on the cluster; results are partial".to_owned());
    }
    let failed = response["_shards"]["failed"].as_u64().unwrap_or(0);
    if failed > 0 {
        let total = response["_shards"]["total"].as_u64().unwrap_or(0);
        let mut reasons: Vec<String> = response["_shards"]["failures"]
            .as_array()
            .map(|fs| {
                fs.iter()
                    .filter_map(|f| {
                        f["reason"]["reason"]
                            .as_str()
                            .or(f["reason"].as_str())
                            .map(str::to_owned)
                    })
                    .collect()
            })
            .unwrap_or_default();
        reasons.dedup();
        why.push(format!(
            "{failed} of {total} shards failed: {}",
            if reasons.is_empty() {
                "no reason given".to_owned()
            } else {
                reasons.join("; ")
            }
        ));
    }
    // A count the cluster stopped at (`track_total_hits` false or a number,
    // 10,000 by default) makes `hits.total` conditions compare a lower bound.
    if response["hits"]["total"]["relation"].as_str() == Some("gte") {
        let at = &response["hits"]["total"]["value"];
        why.push(format!(
            "hits.total is a lower bound (relation gte: at least {at}); add \"track_total_hits\": true to the body for an exact count"
        ));
    }
    (!why.is_empty()).then(|| why.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_reasons() {
        let v: Value = serde_json::json!({"timed_out": false, "_shards": {"total": 5, "failed": 2,
            "failures": [{"reason": {"type": "x", "reason": "boom"}}, {"reason": {"reason": "boom"}}]}});
        assert_eq!(partial_reason(&v).unwrap(), "2 of 5 shards failed: boom");
        assert!(partial_reason(&serde_json::json!({"timed_out": false})).is_none());
        let gte = serde_json::json!({"hits": {"total": {"value": 10000, "relation": "gte"}}});
        assert!(partial_reason(&gte).unwrap().contains("at least 10000"));
        let eq = serde_json::json!({"hits": {"total": {"value": 10000, "relation": "eq"}}});
        assert!(partial_reason(&eq).is_none());
    }

    #[test]
    fn error_reasons_keep_the_root_cause_and_position() {
        // As OpenSearch 2.19 and Elasticsearch 8 answer a range on a bad date.
        let bad_date = br#"{"error":{"root_cause":[{"type":"parse_exception","reason":"failed to parse date field [x]"}],
            "type":"search_phase_execution_exception","reason":"all shards failed","phase":"query"},"status":400}"#;
        assert_eq!(
            error_reason(bad_date),
            (
                "search_phase_execution_exception".into(),
                "all shards failed; root cause: parse_exception: failed to parse date field [x]"
                    .into()
            )
        );
        let misspelt = br#"{"error":{"root_cause":[{"type":"parsing_exception","reason":"unknown query [mtach]","line":1,"col":19}],
            "type":"parsing_exception","reason":"unknown query [mtach]","line":1,"col":19},"status":400}"#;
        assert_eq!(
            error_reason(misspelt).1,
            "unknown query [mtach] (line 1, column 19 of the search body as sent)"
        );
        assert_eq!(error_reason(b"<html>").0, "unknown");
        assert_eq!(
            error_reason(br#"{"error": "Incorrect HTTP method"}"#).1,
            "Incorrect HTTP method"
        );
    }
}

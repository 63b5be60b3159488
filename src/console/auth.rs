//! Who may change things: `console.token` from credentials.json.
//!
//! Reading is open to whoever reaches `--listen` (secrets are never
//! rendered). Every change needs the token: a browser logs in once (an
//! `HttpOnly`, `SameSite=Strict` session cookie) and each of its forms
//! carries a CSRF token bound to the session; a script sends
//! `Authorization: Bearer <token>`, which a browser never adds on its own,
//! so it needs no CSRF token. Without a token, or with `readonly`, the
//! console only reads.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use ring::{digest, hmac, rand::SecureRandom};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::html::{self, esc};
use super::{Console, ConsoleError};

/// The `console` section of credentials.json.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// What a person or script gives to change anything (`${ENV}` allowed).
    #[serde(default)]
    pub token: Option<SecretString>,
    /// Who the token stands for in alerts.log (`console` by default).
    #[serde(default)]
    pub token_name: Option<String>,
    /// Only reading: every change is refused, even with the token.
    #[serde(default)]
    pub readonly: bool,
}

/// Refuses an address other hosts can reach unless changes are protected.
pub fn check_exposure(addr: SocketAddr, cfg: Option<&ConsoleConfig>) -> Result<(), ConsoleError> {
    let protected = cfg.is_some_and(|c| c.readonly || c.token.is_some());
    if addr.ip().is_loopback() || protected {
        Ok(())
    } else {
        Err(ConsoleError::Exposed { addr })
    }
}

/// How long a login lasts.
const SESSION_LIFE: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most; the oldest goes first.
const MAX_SESSIONS: usize = 1000;
/// The session cookie.
const SESSION: &str = "esalert_session";
/// The cookie the login form's CSRF token is bound to.
const PRE: &str = "esalert_login";

#[derive(Debug)]
struct Settings {
    /// SHA-256 of the token: compared in constant time.
    token: Option<digest::Digest>,
    name: String,
    readonly: bool,
}

impl Settings {
    fn of(cfg: Option<&ConsoleConfig>) -> Settings {
        Settings {
            token: cfg
                .and_then(|c| c.token.as_ref())
                .filter(|t| !t.expose_secret().is_empty())
                .map(|t| digest::digest(&digest::SHA256, t.expose_secret().as_bytes())),
            name: cfg
                .and_then(|c| c.token_name.clone())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "console".to_owned()),
            readonly: cfg.is_some_and(|c| c.readonly),
        }
    }
}

#[derive(Debug)]
struct Session {
    who: String,
    expires: Instant,
}

/// The console's token, sessions and CSRF key.
#[derive(Debug)]
pub struct Auth {
    settings: RwLock<Settings>,
    key: hmac::Key,
    rng: ring::rand::SystemRandom,
    sessions: Mutex<HashMap<String, Session>>,
}

/// Why a change is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// `console.readonly` is set.
    ReadOnly,
    /// No `console.token` is configured.
    NoToken,
    /// Neither a session nor a bearer token came with the request.
    LoginNeeded,
    /// The bearer token is wrong.
    BadToken,
    /// The form's CSRF token is missing or wrong.
    Csrf,
}

impl Denied {
    /// The HTTP status and a message a person can act on.
    pub fn explain(self) -> (StatusCode, &'static str) {
        match self {
            Denied::ReadOnly => (
                StatusCode::FORBIDDEN,
                "the console is read-only (console.readonly in credentials.json)",
            ),
            Denied::NoToken => (
                StatusCode::FORBIDDEN,
                "changes are disabled: set console.token in credentials.json and reload esalert (SIGHUP)",
            ),
            Denied::LoginNeeded => (
                StatusCode::UNAUTHORIZED,
                "log in first (or send Authorization: Bearer <console.token>)",
            ),
            Denied::BadToken => (StatusCode::UNAUTHORIZED, "wrong token"),
            Denied::Csrf => (
                StatusCode::FORBIDDEN,
                "the form's CSRF token is missing or stale: reload the page and try again",
            ),
        }
    }
}

/// Who is looking, for the pages: whether they may act, and the CSRF
/// token their forms carry.
#[derive(Debug, Clone, Default)]
pub struct Viewer {
    /// The token name of a logged-in session.
    pub who: Option<String>,
    /// The session's CSRF token.
    pub csrf: Option<String>,
    /// Why actions are unavailable, if they are.
    pub blocked: Option<Denied>,
}

impl Viewer {
    /// Whether action forms are shown.
    pub fn can_act(&self) -> bool {
        self.blocked.is_none()
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A cookie's value from the request.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl Auth {
    /// Settings from credentials.json's `console` section.
    pub fn new(cfg: Option<&ConsoleConfig>) -> Result<Auth, ConsoleError> {
        let rng = ring::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).map_err(|_| ConsoleError::Random)?;
        Ok(Auth {
            settings: RwLock::new(Settings::of(cfg)),
            key,
            rng,
            sessions: Mutex::new(HashMap::new()),
        })
    }

    fn settings(&self) -> std::sync::RwLockReadGuard<'_, Settings> {
        self.settings
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// New settings (SIGHUP); a changed token ends every session.
    pub fn reconfigure(&self, cfg: Option<&ConsoleConfig>) {
        let new = Settings::of(cfg);
        let mut s = self
            .settings
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let changed = match (&s.token, &new.token) {
            (Some(a), Some(b)) => !same(a.as_ref(), b.as_ref()),
            (None, None) => false,
            _ => true,
        };
        *s = new;
        if changed {
            self.sessions().clear();
        }
    }

    /// Why changes are refused to everyone, if they are.
    fn blocked(&self) -> Option<Denied> {
        let s = self.settings();
        if s.readonly {
            Some(Denied::ReadOnly)
        } else if s.token.is_none() {
            Some(Denied::NoToken)
        } else {
            None
        }
    }

    fn token_ok(&self, given: &str) -> bool {
        let d = digest::digest(&digest::SHA256, given.as_bytes());
        self.settings()
            .token
            .as_ref()
            .is_some_and(|t| same(t.as_ref(), d.as_ref()))
    }

    fn random_id(&self) -> Option<String> {
        let mut b = [0u8; 32];
        self.rng.fill(&mut b).ok()?;
        Some(hex(&b))
    }

    fn sign(&self, purpose: &str, id: &str) -> String {
        let tag = hmac::sign(&self.key, format!("{purpose}:{id}").as_bytes());
        hex(tag.as_ref())
    }

    /// The live session of the request: its id and who.
    fn session(&self, headers: &HeaderMap) -> Option<(String, String)> {
        let id = cookie(headers, SESSION)?;
        let mut sessions = self.sessions();
        let s = sessions.get(id)?;
        if s.expires <= Instant::now() {
            sessions.remove(id);
            return None;
        }
        Some((id.to_owned(), s.who.clone()))
    }

    /// Who is looking.
    pub fn viewer(&self, headers: &HeaderMap) -> Viewer {
        let session = self.session(headers);
        Viewer {
            csrf: session.as_ref().map(|(id, _)| self.sign("csrf", id)),
            blocked: self
                .blocked()
                .or_else(|| session.is_none().then_some(Denied::LoginNeeded)),
            who: session.map(|(_, who)| who),
        }
    }

    /// Whether a change may be made, and by whom (the token's name).
    pub fn authorize(&self, headers: &HeaderMap, csrf: Option<&str>) -> Result<String, Denied> {
        if let Some(d) = self.blocked() {
            return Err(d);
        }
        if let Some(auth) = headers.get(header::AUTHORIZATION) {
            let given = auth
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or(Denied::BadToken)?;
            return if self.token_ok(given.trim()) {
                Ok(self.settings().name.clone())
            } else {
                Err(Denied::BadToken)
            };
        }
        let (id, who) = self.session(headers).ok_or(Denied::LoginNeeded)?;
        let want = self.sign("csrf", &id);
        match csrf {
            Some(c) if same(c.as_bytes(), want.as_bytes()) => Ok(who),
            _ => Err(Denied::Csrf),
        }
    }

    fn login(&self, token: &str) -> Option<String> {
        if self.blocked().is_some() || !self.token_ok(token) {
            return None;
        }
        let id = self.random_id()?;
        let who = self.settings().name.clone();
        let mut sessions = self.sessions();
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            id.clone(),
            Session {
                who,
                expires: now + SESSION_LIFE,
            },
        );
        Some(id)
    }
}

fn set_cookie(name: &str, value: &str, max_age: u64) -> (header::HeaderName, String) {
    (
        header::SET_COOKIE,
        format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}"),
    )
}

/// `GET /login`.
pub async fn login_page(State(c): State<std::sync::Arc<Console>>, headers: HeaderMap) -> Response {
    login_form(&c, &headers, StatusCode::OK, None)
}

fn login_form(
    c: &Console,
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    let viewer = c.auth.viewer(headers);
    let mut body = String::from("<h1>Log in</h1>");
    if let Some(e) = error {
        body.push_str(&format!(
            "<p class=\"error\" id=\"login-error\">{}</p>",
            esc(e)
        ));
    }
    let pre = cookie(headers, PRE)
        .filter(|p| p.len() == 64 && p.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned)
        .or_else(|| c.auth.random_id());
    match (c.auth.blocked(), &pre) {
        (Some(d), _) => {
            body.push_str(&format!("<p>{}</p>", esc(d.explain().1)));
        }
        (None, None) => body.push_str("<p class=\"error\">cannot make a login form now</p>"),
        (None, Some(pre)) => {
            body.push_str(&format!(
                "<form method=\"post\" action=\"/login\" class=\"login\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                 <label>Token <input type=\"password\" name=\"token\" id=\"token\" autocomplete=\"current-password\" required></label>\
                 <button type=\"submit\" id=\"login\">Log in</button></form>\
                 <p class=\"hint\">The token is <code>console.token</code> in credentials.json.</p>",
                esc(&c.auth.sign("login", pre))
            ));
        }
    }
    let page = html::layout("Log in", &viewer, &body);
    let mut res = (status, page).into_response();
    if let Some(pre) = pre
        && let Ok(v) = set_cookie(PRE, &pre, 3600).1.parse()
    {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

/// The login form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /login`: a session cookie for the right token.
pub async fn login(
    State(c): State<std::sync::Arc<Console>>,
    parts: axum::http::request::Parts,
    Form(f): Form<LoginForm>,
) -> Response {
    let headers = &parts.headers;
    let from = parts
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0.to_string())
        .unwrap_or_default();
    let pre_ok = cookie(headers, PRE)
        .is_some_and(|pre| same(f.csrf.as_bytes(), c.auth.sign("login", pre).as_bytes()));
    if !pre_ok {
        tracing::warn!(
            event = "console_login_failed",
            from = from.as_str(),
            reason = "csrf"
        );
        return login_form(
            &c,
            headers,
            StatusCode::FORBIDDEN,
            Some(Denied::Csrf.explain().1),
        );
    }
    match c.auth.login(&f.token) {
        Some(id) => {
            let who = c.auth.settings().name.clone();
            tracing::info!(
                event = "console_login",
                who = who.as_str(),
                from = from.as_str()
            );
            let mut res = Redirect::to("/alerts").into_response();
            if let Ok(v) = set_cookie(SESSION, &id, SESSION_LIFE.as_secs()).1.parse() {
                res.headers_mut().append(header::SET_COOKIE, v);
            }
            res
        }
        None => {
            tracing::warn!(
                event = "console_login_failed",
                from = from.as_str(),
                reason = "wrong token"
            );
            // Slows down guessing.
            tokio::time::sleep(Duration::from_millis(300)).await;
            login_form(&c, headers, StatusCode::UNAUTHORIZED, Some("Wrong token."))
        }
    }
}

/// The logout form.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /logout`.
pub async fn logout(
    State(c): State<std::sync::Arc<Console>>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Some((id, _)) = c.auth.session(&headers)
        && same(f.csrf.as_bytes(), c.auth.sign("csrf", &id).as_bytes())
    {
        c.auth.sessions().remove(&id);
    }
    let mut res = Redirect::to("/alerts").into_response();
    if let Ok(v) = set_cookie(SESSION, "", 0).1.parse() {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(token: &str) -> ConsoleConfig {
        ConsoleConfig {
            token: Some(SecretString::from(token.to_owned())),
            token_name: Some("ops".into()),
            readonly: false,
        }
    }

    #[test]
    fn only_loopback_is_open_without_a_token() {
        let lo: SocketAddr = "127.0.0.1:9095".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:9095".parse().unwrap();
        assert!(check_exposure(lo, None).is_ok());
        assert!(check_exposure(any, None).is_err());
        assert!(check_exposure(any, Some(&cfg("t"))).is_ok());
        let ro = ConsoleConfig {
            readonly: true,
            ..Default::default()
        };
        assert!(check_exposure(any, Some(&ro)).is_ok());
    }

    #[test]
    fn bearer_csrf_and_sessions() {
        let a = Auth::new(Some(&cfg("s3cret"))).unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(a.authorize(&h, None), Err(Denied::LoginNeeded));
        h.insert(header::AUTHORIZATION, "Bearer nope".parse().unwrap());
        assert_eq!(a.authorize(&h, None), Err(Denied::BadToken));
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert_eq!(a.authorize(&h, None), Ok("ops".into()));
        let id = a.login("s3cret").unwrap();
        assert!(a.login("wrong").is_none());
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            format!("x=1; {SESSION}={id}").parse().unwrap(),
        );
        assert_eq!(a.authorize(&h, Some("forged")), Err(Denied::Csrf));
        let csrf = a.viewer(&h).csrf.unwrap();
        assert_eq!(a.authorize(&h, Some(&csrf)), Ok("ops".into()));
        // A new token ends the session.
        a.reconfigure(Some(&cfg("other")));
        assert_eq!(a.authorize(&h, Some(&csrf)), Err(Denied::LoginNeeded));
        a.reconfigure(None);
        assert_eq!(a.authorize(&h, Some(&csrf)), Err(Denied::NoToken));
    }
}

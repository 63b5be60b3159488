//! HTML escaping and the page layout. Every value that reaches a page goes
//! through [`esc`]; nothing in a page is inline script or style.

use std::fmt::Write as _;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::auth::Viewer;

/// Escapes text for HTML content and quoted attribute values (the
/// templates' own escaping).
pub fn esc(s: &str) -> String {
    crate::render::html_escape(s)
}

/// [`esc`], appending to `out`.
pub fn esc_into(s: &str, out: &mut String) {
    out.push_str(&esc(s));
}

/// A path segment for a URL (rule names are already safe; this keeps them so).
pub fn seg(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// `-` for nothing.
pub fn or_dash(s: Option<&str>) -> String {
    s.map_or_else(|| "-".to_owned(), esc)
}

/// A whole page: navigation, who is logged in, and `body` (already escaped).
pub fn layout(title: &str, viewer: &Viewer, body: &str) -> Html<String> {
    let mut p = String::with_capacity(body.len() + 1024);
    p.push_str(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <link rel=\"icon\" href=\"/favicon.svg\" type=\"image/svg+xml\">\
         <link rel=\"stylesheet\" href=\"/assets/console.css\">\
         <script src=\"/assets/console.js\" defer></script><title>",
    );
    esc_into(title, &mut p);
    p.push_str(" · esalert</title></head><body><header><nav><a class=\"brand\" href=\"/alerts\">esalert</a><a href=\"/alerts\">Alerts</a><a href=\"/health\">Health</a><span class=\"spacer\"></span>");
    match (&viewer.who, &viewer.csrf) {
        (Some(who), Some(csrf)) => {
            let _ = write!(
                p,
                "<span class=\"who\">{}</span><form method=\"post\" action=\"/logout\" class=\"inline\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\">Log out</button></form>",
                esc(who),
                esc(csrf)
            );
        }
        _ => p.push_str("<a href=\"/login\" id=\"login-link\">Log in</a>"),
    }
    p.push_str("</nav></header><main>");
    p.push_str(body);
    let _ = write!(
        p,
        "</main><footer>esalert {}</footer></body></html>",
        env!("CARGO_PKG_VERSION")
    );
    Html(p)
}

/// A page with a status: an error or a result.
pub fn message(status: StatusCode, title: &str, viewer: &Viewer, text: &str) -> Response {
    let body = format!(
        "<h1>{}</h1><p class=\"{}\" id=\"result\">{}</p><p><a href=\"/alerts\">Back to the alerts</a></p>",
        esc(title),
        if status.is_success() { "ok" } else { "error" },
        esc(text)
    );
    (status, layout(title, viewer, &body)).into_response()
}

/// 404 with the layout.
pub fn not_found(text: &str) -> Response {
    message(StatusCode::NOT_FOUND, "Not found", &Viewer::default(), text)
}

/// A JSON response.
pub fn json(status: StatusCode, v: &impl serde::Serialize) -> Response {
    match serde_json::to_string(v) {
        Ok(body) => (
            status,
            [("content-type", "application/json; charset=utf-8")],
            body,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the answer: {e}"),
        )
            .into_response(),
    }
}

/// A JSON error `{"error": …}`.
pub fn json_error(status: StatusCode, message: &str) -> Response {
    json(status, &serde_json::json!({ "error": message }))
}

/// A state badge.
pub fn badge(state: &str) -> String {
    format!("<span class=\"badge s-{0}\">{0}</span>", esc(state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;&quot;"
        );
        assert_eq!(seg("a b/c"), "a%20b%2Fc");
    }
}

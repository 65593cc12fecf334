//! What every request passes first: the token (or, without one, a loopback
//! host name), then the method (GET and HEAD only); and the headers every
//! answer carries.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::App;
use super::api::{ApiError, pairs};

/// The cookie that carries the token for the page's own requests.
const COOKIE: &str = "statelog_token";

/// Every answer: nothing loads from elsewhere, nothing is cached, no
/// address (with a token in it) is sent on as a referrer.
const SECURITY: &[(header::HeaderName, &str)] = &[
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::CACHE_CONTROL, "no-store"),
];

pub(crate) async fn guard(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let mut set_cookie = None;
    let refused = match &app.options.token {
        Some(token) => match presented(&request) {
            None => Some(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this server needs its token: send `Authorization: Bearer TOKEN`, or open the \
                 page once as /?token=TOKEN",
            )),
            Some((given, _)) if !same(given.as_bytes(), token.as_bytes()) => Some(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "the token is wrong: give the one the server was started with",
            )),
            Some((_, from_query)) => {
                if from_query {
                    set_cookie = Some(format!(
                        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
                    ));
                }
                None
            }
        },
        None => match request.headers().get(header::HOST) {
            Some(host) if !is_loopback_host(host) => Some(ApiError::new(
                StatusCode::FORBIDDEN,
                "this server listens on loopback without a token and answers only requests for \
                 localhost, 127.0.0.1 or [::1]",
            )),
            _ => None,
        },
    };
    let mut response = match refused {
        Some(e) => {
            let mut response = e.into_response();
            if response.status() == StatusCode::UNAUTHORIZED {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            response
        }
        None if request.method() != Method::GET && request.method() != Method::HEAD => {
            let mut response = ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!(
                    "{} is not allowed: the web view is read-only (GET and HEAD only); write \
                     with the statelog command line or the library",
                    request.method()
                ),
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            response
        }
        None => next.run(request).await,
    };
    let headers = response.headers_mut();
    for (name, value) in SECURITY {
        headers.insert(name.clone(), HeaderValue::from_static(value));
    }
    if let Some(cookie) = set_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(header::SET_COOKIE, cookie);
    }
    response
}

/// The token a request presents, and whether it came in the query string.
fn presented(request: &Request) -> Option<(String, bool)> {
    let headers = request.headers();
    if let Some(value) = headers.get(header::AUTHORIZATION)
        && let Some(token) = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some((token.trim().to_owned(), false));
    }
    if let Some((_, token)) = pairs(request.uri().query())
        .into_iter()
        .find(|(name, _)| name == "token")
    {
        return Some((token, true));
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then(|| (value.to_owned(), false))
        })
}

/// Compares in time that depends on the lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `localhost`, a 127.0.0.0/8 address or `[::1]`, with or without a port.
fn is_loopback_host(host: &HeaderValue) -> bool {
    let Ok(host) = host.to_str() else {
        return false;
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inside, _)) => inside,
            None => return false,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for ok in [
            "localhost",
            "localhost:80",
            "127.0.0.1:8080",
            "127.1.2.3",
            "[::1]:9",
            "[::1]",
            "LOCALHOST:1",
        ] {
            assert!(is_loopback_host(&HeaderValue::from_static(ok)), "{ok}");
        }
        for bad in [
            "example.com",
            "evil.localhost.example:80",
            "10.0.0.1:80",
            "[::2]:80",
            "[::1",
            "localhost.example",
        ] {
            assert!(!is_loopback_host(&HeaderValue::from_static(bad)), "{bad}");
        }
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abcdef", b"abcdef"));
        assert!(!same(b"abcdef", b"abcdeg"));
        assert!(!same(b"abcdef", b"abcde"));
        assert!(!same(b"", b"a"));
    }
}

//! The page: one HTML document whose script reads the JSON API and follows
//! the event stream, with its script and style. No build step: the three
//! files are in `assets/` and in the binary. The style starts with the HTML
//! export's.
//!
//! The page's state is its address: `/` lists the namespaces,
//! `/?ns=NS&sort=S&q=TEXT&offset=N` shows a namespace's records,
//! `/?ns=NS&key=KEY` one record with its history. The script builds the page
//! with DOM calls and `textContent` only, never HTML from data.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;

use crate::snapshot::html;

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

static FULL_STYLE: LazyLock<String> = LazyLock::new(|| format!("{}{STYLE}", html::STYLE));

pub(crate) async fn index() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX)
}

pub(crate) async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
}

pub(crate) async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        FULL_STYLE.as_str(),
    )
}

//! The console's pages: plain HTML, CSS and a JavaScript module, embedded
//! in the binary at build time (nothing is fetched from elsewhere at run
//! time) and served with a strict Content-Security-Policy: scripts,
//! styles and requests only from the console itself, no framing.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The embedded files: (name, content type, content).
pub const ASSETS: [(&str, &str, &str); 3] = [
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("assets/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("assets/style.css"),
    ),
];

/// Content-Security-Policy of every page.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The response carrying the embedded file `name`, if there is one.
pub fn build_asset_response(name: &str) -> Option<Response> {
    let (_, content_type, content) = ASSETS.iter().find(|(file, _, _)| *file == name)?;
    Some(
        (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "no-cache"),
                (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::REFERRER_POLICY, "no-referrer"),
            ],
            *content,
        )
            .into_response(),
    )
}

pub async fn index() -> Response {
    build_asset_response("index.html").unwrap_or_else(|| StatusCode::NOT_FOUND.into_response())
}

pub async fn asset(Path(name): Path<String>) -> Response {
    build_asset_response(&name).unwrap_or_else(|| StatusCode::NOT_FOUND.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pages_load_nothing_from_elsewhere_and_stay_small() {
        let total: usize = ASSETS.iter().map(|(_, _, content)| content.len()).sum();
        assert!(total < 300 * 1024, "first load is {total} bytes");
        for (name, _, content) in ASSETS {
            for outside in ["http://", "https://", "//cdn", "@import"] {
                let hits: Vec<&str> = content
                    .lines()
                    .filter(|line| line.contains(outside) && !line.contains("w3.org/2000/svg"))
                    .collect();
                assert!(hits.is_empty(), "{name} refers outside: {hits:?}");
            }
        }
        assert!(build_asset_response("app.js").is_some());
        assert!(build_asset_response("../Cargo.toml").is_none());
    }
}

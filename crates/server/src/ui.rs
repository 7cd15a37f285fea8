//! The web UI, embedded in the binary: the bundle that `npm run build` in
//! `ui/` writes to `crates/server/ui-dist/` (committed, so `cargo build`
//! needs no npm). `ui-dist/assets.rs` is the generated table of its files.
//!
//! `/` and the UI's own routes answer with `index.html` (the single-page
//! app routes in the browser); `/assets/*` are content-hashed and cached
//! for a year; each file has a gzip variant when it pays. Paths under
//! `/api`, `/metrics`, `/health` and `/ready` are never the UI's.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

pub struct Asset {
    pub path: &'static str,
    pub mime: &'static str,
    pub etag: &'static str,
    /// Content-hashed name: cache for a year.
    pub immutable: bool,
    pub body: &'static [u8],
    pub gzip: Option<&'static [u8]>,
}

include!("../ui-dist/assets.rs");

/// The browser-side routes of the single-page app; each answers with
/// `index.html`. (`/metrics` is the server's own metrics, so the metrics
/// explorer lives at `/explore`.)
const APP_ROUTES: &[&str] = &[
    "/",
    "/overview",
    "/explore",
    "/traces",
    "/traces/{id}",
    "/logs",
    "/alerts",
    "/anomalies",
    "/service-map",
    "/hosts",
    "/hosts/{name}",
    "/policies",
];

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut r = Router::new();
    for route in APP_ROUTES {
        r = r.route(route, get(index));
    }
    r.route("/assets/{*file}", get(asset))
        .route("/favicon.svg", get(favicon))
}

async fn index(headers: HeaderMap) -> Response {
    serve("/index.html", &headers)
}

async fn favicon(headers: HeaderMap) -> Response {
    serve("/favicon.svg", &headers)
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    serve(&format!("/assets/{file}"), &headers)
}

fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|enc| {
            let mut parts = enc.trim().split(';');
            let name = parts.next().unwrap_or("").trim();
            let q_zero = parts.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            name.eq_ignore_ascii_case("gzip") && !q_zero
        })
}

/// One embedded file, with its cache headers, gzip when the client takes
/// it, and 304 for a matching `If-None-Match`.
pub fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(a) = find(path) else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "no such file in the web UI\n",
        )
            .into_response();
    };
    let cache = if a.immutable {
        "public, max-age=31536000, immutable"
    } else {
        // index.html names the current hashed assets: always revalidate.
        "no-cache"
    };
    let mut resp = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == a.etag))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        match a.gzip {
            Some(gz) if accepts_gzip(headers) => {
                let mut r = gz.into_response();
                r.headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                r
            }
            _ => a.body.into_response(),
        }
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(a.mime));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::ETAG, HeaderValue::from_static(a.etag));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if a.gzip.is_some() {
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    if a.path == "/index.html" {
        // Which UI sources this binary carries, for bug reports.
        h.insert("x-sonde-ui", HeaderValue::from_static(SOURCE_HASH));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path as FsPath, PathBuf};

    /// FNV-1a 64 over the sorted UI sources, as `ui/scripts/dist.mjs`
    /// computes it at build time.
    fn source_hash(ui: &FsPath) -> String {
        const ROOTS: &[&str] = &[
            "index.html",
            "package-lock.json",
            "tsconfig.json",
            "vite.config.ts",
            "public",
            "src",
        ];
        fn walk(p: &FsPath, out: &mut Vec<PathBuf>) {
            if p.is_dir() {
                for e in std::fs::read_dir(p).unwrap() {
                    walk(&e.unwrap().path(), out);
                }
            } else if p.is_file() {
                out.push(p.to_path_buf());
            }
        }
        let mut files = Vec::new();
        for r in ROOTS {
            walk(&ui.join(r), &mut files);
        }
        let mut rel: Vec<(String, PathBuf)> = files
            .into_iter()
            .map(|f| {
                let r = f.strip_prefix(ui).unwrap();
                let s = r
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                (s, f)
            })
            .collect();
        rel.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |bytes: &[u8]| {
            for b in bytes {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        for (r, f) in &rel {
            feed(r.as_bytes());
            feed(&[0]);
            feed(&std::fs::read(f).unwrap());
            feed(&[0]);
        }
        format!("{h:016x}")
    }

    #[test]
    fn the_embedded_bundle_is_built_from_the_current_sources() {
        let ui = FsPath::new(env!("CARGO_MANIFEST_DIR")).join("../../ui");
        if !ui.join("src").is_dir() {
            return; // a packaged crate without the UI sources
        }
        assert_eq!(
            source_hash(&ui),
            SOURCE_HASH,
            "crates/server/ui-dist is stale: run `npm ci && npm run build` in ui/ and commit ui-dist"
        );
    }

    #[test]
    fn index_and_assets_are_served_with_cache_headers_and_gzip() {
        let plain = HeaderMap::new();
        let r = serve("/index.html", &plain);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
        assert!(r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let js = ASSETS
            .iter()
            .find(|a| a.path.starts_with("/assets/") && a.path.ends_with(".js"))
            .expect("a script in the bundle");
        let mut gz = HeaderMap::new();
        gz.insert(header::ACCEPT_ENCODING, "br, gzip;q=0.9".parse().unwrap());
        let r = serve(js.path, &gz);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::CACHE_CONTROL],
            "public, max-age=31536000, immutable"
        );
        assert_eq!(r.headers()[header::CONTENT_ENCODING], "gzip");
        let mut refused = HeaderMap::new();
        refused.insert(header::ACCEPT_ENCODING, "gzip;q=0".parse().unwrap());
        assert!(serve(js.path, &refused)
            .headers()
            .get(header::CONTENT_ENCODING)
            .is_none());
        let mut cond = HeaderMap::new();
        cond.insert(header::IF_NONE_MATCH, js.etag.parse().unwrap());
        assert_eq!(serve(js.path, &cond).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(
            serve("/assets/nope.js", &plain).status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn app_routes_stay_clear_of_the_api() {
        for r in APP_ROUTES {
            for reserved in ["/api", "/metrics", "/health", "/ready"] {
                assert!(!r.starts_with(reserved), "{r} would shadow {reserved}");
            }
        }
    }
}

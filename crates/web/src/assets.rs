//! Static assets embedded in the binary. Each is served under a path that
//! carries a hash of its content (`/assets/<hash>/app.css`), so browsers may
//! keep it for a year and a new build is never mixed with an old cache.
//! The service worker and the manifest keep fixed paths (browsers look for
//! them there) and are revalidated.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

pub const ASSETS: [Asset; 5] = [
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../assets/app.css"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../assets/app.js"),
    },
    Asset {
        name: "passkeys.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../assets/passkeys.js"),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        bytes: include_bytes!("../assets/icon.svg"),
    },
    Asset {
        name: "icon-maskable.svg",
        content_type: "image/svg+xml",
        bytes: include_bytes!("../assets/icon-maskable.svg"),
    },
];

const SERVICE_WORKER: &str = include_str!("../assets/sw.js");

fn hashes() -> &'static Vec<String> {
    static HASHES: OnceLock<Vec<String>> = OnceLock::new();
    HASHES.get_or_init(|| {
        ASSETS
            .iter()
            .map(|asset| hex::encode(&Sha256::digest(asset.bytes)[..6]))
            .collect()
    })
}

/// The versioned path of an asset, e.g. `/assets/3fa2c1d09e4b/app.css`.
pub fn path(name: &str) -> String {
    match ASSETS.iter().position(|a| a.name == name) {
        Some(index) => format!("/assets/{}/{name}", hashes()[index]),
        None => format!("/assets/missing/{name}"),
    }
}

/// Every versioned path: what the service worker precaches.
pub fn all_paths() -> Vec<String> {
    ASSETS.iter().map(|a| path(a.name)).collect()
}

pub async fn serve(Path((hash, name)): Path<(String, String)>) -> Response {
    let Some(index) = ASSETS.iter().position(|a| a.name == name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let asset = &ASSETS[index];
    // An old hash (a page cached before a deploy) still gets the current
    // file, but only briefly cached.
    let cache = if hashes()[index] == hash {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=300"
    };
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, cache),
        ],
        asset.bytes,
    )
        .into_response()
}

/// The service worker, with this build's asset list written in: it caches
/// exactly those, and nothing a page with personal data could put there.
pub async fn service_worker() -> Response {
    let list = serde_json::to_string(&all_paths()).unwrap_or_else(|_| "[]".into());
    let version = hashes().join("").chars().take(12).collect::<String>();
    let body = SERVICE_WORKER
        .replace("\"__ASSETS__\"", &list)
        .replace("__VERSION__", &version);
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

pub async fn manifest() -> Response {
    let manifest = serde_json::json!({
        "name": "Coffer Wallet",
        "short_name": "Coffer",
        "description": "A digital wallet from your bank · 银行数字钱包",
        "start_url": "/",
        "scope": "/",
        "display": "standalone",
        "background_color": "#f6f7f9",
        "theme_color": "#0b5cad",
        "lang": "zh-CN",
        "icons": [
            {"src": path("icon.svg"), "sizes": "any", "type": "image/svg+xml", "purpose": "any"},
            {"src": path("icon-maskable.svg"), "sizes": "any", "type": "image/svg+xml", "purpose": "maskable"}
        ]
    });
    (
        [
            (header::CONTENT_TYPE, "application/manifest+json"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        manifest.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_carry_the_content_hash() {
        let css = path("app.css");
        assert!(css.starts_with("/assets/") && css.ends_with("/app.css"));
        assert_eq!(css.len(), "/assets//app.css".len() + 12);
        assert_eq!(all_paths().len(), ASSETS.len());
    }

    #[test]
    fn no_asset_is_inline_script_or_style_dependent() {
        // The CSP forbids inline script and style: the JS must not write
        // style attributes or use eval-like calls.
        let js = std::str::from_utf8(ASSETS[1].bytes).expect("utf-8");
        for banned in [
            "eval(",
            "new Function",
            ".style.",
            "innerHTML",
            "setAttribute('style'",
        ] {
            assert!(!js.contains(banned), "app.js uses {banned}");
        }
    }
}

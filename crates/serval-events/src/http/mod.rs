//! The HTTP gateway: serves Function URLs and HTTP APIs on the server's own address.
//!
//! A request reaches a trigger by its `Host` (`<url-id>.lambda-url.<region>.localhost`,
//! `<api-id>.execute-api.localhost`; names under `.localhost` resolve to loopback) or, for
//! clients that cannot set `Host`, by a path prefix (`/_aws/lambda-url/<url-id>/...`,
//! `/_aws/execute-api/<api-id>/...`). [`Gateway::target`] recognizes both; [`Gateway::serve`]
//! builds the proxy event (`payload`), answers CORS (`cors`), invokes the function through
//! the engine and maps its answer back to HTTP.
//!
//! The gateway holds what it serves in memory (`set_function_url`, `set_api`): the API layer
//! stores each change, then tells the gateway, as it tells the engine about functions.

pub mod cors;
pub mod payload;

use std::net::SocketAddr;

use axum::body::Body;
use http::{Request, Response};
use serval_engine::Engine;
use serval_model::{FunctionUrlConfig, HttpApiSnapshot};

/// The path prefix of the path-based forms: `/_aws/lambda-url/<id>/...`,
/// `/_aws/execute-api/<id>/...`.
pub const PATH_PREFIX: &str = "/_aws/";

/// Which trigger a request is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    FunctionUrl {
        url_id: String,
        /// Set for the path-based form: the prefix to strip (`/_aws/lambda-url/<id>`).
        path_prefix: Option<String>,
    },
    HttpApi {
        api_id: String,
        path_prefix: Option<String>,
    },
}

/// Serves HTTP triggers; cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    inner: std::sync::Arc<Inner>,
}

struct Inner {
    engine: Engine,
    region: String,
    port: u16,
}

impl Gateway {
    /// A gateway with nothing to serve yet; `port` is the server's, for the URLs it reports.
    pub fn new(engine: Engine, region: impl Into<String>, port: u16) -> Gateway {
        Gateway {
            inner: std::sync::Arc::new(Inner {
                engine,
                region: region.into(),
                port,
            }),
        }
    }

    /// `http://<url-id>.lambda-url.<region>.localhost:<port>/`, a Function URL's `FunctionUrl`.
    pub fn function_url(&self, url_id: &str) -> String {
        format!(
            "http://{url_id}.lambda-url.{}.localhost:{}/",
            self.inner.region, self.inner.port
        )
    }

    /// `http://<api-id>.execute-api.localhost:<port>`, an HTTP API's `ApiEndpoint`.
    pub fn api_endpoint(&self, api_id: &str) -> String {
        format!("http://{api_id}.execute-api.localhost:{}", self.inner.port)
    }

    /// Serves (or re-configures) a Function URL.
    pub fn set_function_url(&self, config: FunctionUrlConfig) {
        let _ = config;
        todo!()
    }

    /// Stops serving a Function URL.
    pub fn remove_function_url(&self, url_id: &str) {
        let _ = url_id;
        todo!()
    }

    /// Serves an HTTP API as `snapshot` says, replacing what was served for it.
    pub fn set_api(&self, snapshot: HttpApiSnapshot) {
        let _ = snapshot;
        todo!()
    }

    /// Stops serving an HTTP API.
    pub fn remove_api(&self, api_id: &str) {
        let _ = api_id;
        todo!()
    }

    /// The trigger a request is addressed to, from its `Host` header and path; `None` for
    /// the AWS APIs.
    pub fn target(host: Option<&str>, path: &str) -> Option<Target> {
        if let Some(rest) = path.strip_prefix(PATH_PREFIX) {
            let (kind, rest) = rest.split_once('/')?;
            let id = rest.split('/').next().unwrap_or(rest);
            if id.is_empty() {
                return None;
            }
            let path_prefix = Some(format!("{PATH_PREFIX}{kind}/{id}"));
            return match kind {
                "lambda-url" => Some(Target::FunctionUrl {
                    url_id: id.to_ascii_lowercase(),
                    path_prefix,
                }),
                "execute-api" => Some(Target::HttpApi {
                    api_id: id.to_ascii_lowercase(),
                    path_prefix,
                }),
                _ => None,
            };
        }
        let host = host?;
        // Drop the port; names are case-insensitive.
        let name = host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                name
            } else {
                host
            }
        });
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let labels: Vec<&str> = name.split('.').collect();
        match labels.as_slice() {
            [id, "lambda-url", _region, "localhost"] if !id.is_empty() => {
                Some(Target::FunctionUrl {
                    url_id: (*id).to_owned(),
                    path_prefix: None,
                })
            }
            [id, "execute-api", "localhost"] | [id, "execute-api", _, "localhost"]
                if !id.is_empty() =>
            {
                Some(Target::HttpApi {
                    api_id: (*id).to_owned(),
                    path_prefix: None,
                })
            }
            _ => None,
        }
    }

    /// Serves one request to `target`.
    pub async fn serve(
        &self,
        target: Target,
        req: Request<Body>,
        peer: SocketAddr,
    ) -> Response<Body> {
        let _ = (target, req, peer, &self.inner.engine);
        todo!()
    }
}

/// A random id of `len` lowercase letters and digits (URL ids, API, route and integration
/// ids).
pub fn random_id(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(id: &str, prefix: Option<&str>) -> Option<Target> {
        Some(Target::FunctionUrl {
            url_id: id.into(),
            path_prefix: prefix.map(str::to_owned),
        })
    }

    fn api(id: &str, prefix: Option<&str>) -> Option<Target> {
        Some(Target::HttpApi {
            api_id: id.into(),
            path_prefix: prefix.map(str::to_owned),
        })
    }

    #[test]
    fn recognizes_trigger_hosts() {
        let t = Gateway::target;
        assert_eq!(
            t(Some("abc.lambda-url.us-east-1.localhost:9000"), "/x"),
            url("abc", None)
        );
        assert_eq!(
            t(Some("ABC.Lambda-Url.us-east-1.localhost"), "/"),
            url("abc", None)
        );
        assert_eq!(
            t(Some("q1w2e3.execute-api.localhost:80"), "/"),
            api("q1w2e3", None)
        );
        assert_eq!(
            t(Some("q1w2e3.execute-api.eu-west-1.localhost"), "/"),
            api("q1w2e3", None)
        );
        for aws in [
            "127.0.0.1:9000",
            "localhost:9000",
            "lambda-url.us-east-1.localhost",
            "abc.lambda-url.us-east-1.on.aws",
            "x.execute-api.amazonaws.com",
        ] {
            assert_eq!(t(Some(aws), "/2015-03-31/functions"), None, "{aws}");
        }
        assert_eq!(t(None, "/2015-03-31/functions"), None);
    }

    #[test]
    fn recognizes_path_based_forms() {
        let t = Gateway::target;
        assert_eq!(
            t(Some("127.0.0.1:9000"), "/_aws/lambda-url/abc/items/1"),
            url("abc", Some("/_aws/lambda-url/abc"))
        );
        assert_eq!(
            t(None, "/_aws/execute-api/q1w2e3"),
            api("q1w2e3", Some("/_aws/execute-api/q1w2e3"))
        );
        assert_eq!(t(None, "/_aws/execute-api/"), None);
        assert_eq!(t(None, "/_aws/other/abc"), None);
        assert_eq!(t(None, "/_aws"), None);
    }
}

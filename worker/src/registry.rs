//! Image preflight: every image reference of a release is resolved against its registry with
//! the OCI distribution API (`HEAD /v2/<repository>/manifests/<tag>`), before anything starts,
//! and the release then runs `repository:tag@sha256:…`: what was approved is what runs, whatever
//! the tag points at later.
//!
//! Registries: the first path component is a registry when it has a `.` or `:` or is
//! `localhost`; otherwise Docker Hub (`registry-1.docker.io`, `library/` for single names).
//! HTTPS always, except plain HTTP for a loopback registry (127.0.0.0/8, `localhost`), as
//! container runtimes treat them; a Bearer token realm must be HTTPS too (unless the registry is
//! on loopback), and redirects never go from HTTPS to HTTP.
//!
//! Credentials come from the worker's environment only: `CUTOVER_REGISTRY_AUTH_FILE` names a
//! Docker `config.json` (the content of a `kubernetes.io/dockerconfigjson` Secret), whose
//! `auths` entry for the registry's host gives `auth` (base64 `user:password`) or `username` and
//! `password`. Without one the worker asks anonymously. Both challenge kinds of the
//! distribution spec are answered: `Basic` (the credentials on the request) and `Bearer` (a pull
//! token from the realm the registry names). No credential or token ever appears in a log line,
//! an error or the history.

use crate::image;
use base64::Engine;
use std::collections::BTreeMap;

/// The environment variable naming the Docker `config.json` the worker's registry credentials
/// come from.
pub const AUTH_FILE_ENV: &str = "CUTOVER_REGISTRY_AUTH_FILE";

/// The manifest media types the worker accepts (an index resolves to the index's digest, which
/// is what Kubernetes pulls for any platform).
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Why an image did not resolve.
#[derive(Debug, Clone, PartialEq)]
pub enum Unresolved {
    /// Final: the image is missing, the registry refuses the worker, or the reference is bad.
    Refused(String),
    /// Worth another try: the registry did not answer, or answered with a server error.
    Unavailable(String),
}

impl std::fmt::Display for Unresolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unresolved::Refused(s) | Unresolved::Unavailable(s) => f.write_str(s),
        }
    }
}

/// Where an image lives.
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    /// `host[:port]` as written (Docker Hub: `docker.io`).
    pub registry: String,
    /// The repository inside the registry (`library/postgres` for Docker Hub's `postgres`).
    pub repository: String,
    /// `http://host[:port]` or `https://host[:port]`: the API's base.
    pub base: String,
}

pub fn locate(name: &str) -> Location {
    let mut parts: Vec<&str> = name.split('/').collect();
    let explicit = parts.len() > 1
        && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost");
    // Docker Hub, however it is written: `x`, `org/x`, `docker.io/x`, `index.docker.io/org/x`.
    let hub = explicit
        && matches!(
            parts[0],
            "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com"
        );
    if hub {
        parts.remove(0);
    }
    if !explicit || hub {
        if parts.len() == 1 {
            parts.insert(0, "library");
        }
        return Location {
            registry: "docker.io".into(),
            repository: parts.join("/"),
            base: "https://registry-1.docker.io".into(),
        };
    }
    let registry = parts.remove(0).to_owned();
    let scheme = if is_loopback_registry(&registry) {
        "http"
    } else {
        "https"
    };
    Location {
        base: format!("{scheme}://{registry}"),
        registry,
        repository: parts.join("/"),
    }
}

fn is_loopback_registry(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        registry.split(':').next().unwrap_or_default()
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A registry login from the worker's environment (never printed: Debug shows the user only).
#[derive(Clone)]
pub struct Login {
    pub username: String,
    password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Login({}, <password>)", self.username)
    }
}

impl Login {
    pub fn new(username: &str, password: &str) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }
}

/// The registry logins of a Docker `config.json`, by registry host.
#[derive(Debug, Clone, Default)]
pub struct Logins(BTreeMap<String, Login>);

impl Logins {
    /// The logins in the file `CUTOVER_REGISTRY_AUTH_FILE` names (none when it is unset). A
    /// named file that cannot be read or parsed is an error naming the file, not its content.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var(AUTH_FILE_ENV) {
            Ok(path) if !path.is_empty() => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    format!("{AUTH_FILE_ENV}={path}: the registry credentials file: {e}")
                })?;
                Self::parse(&text).map_err(|e| format!("{AUTH_FILE_ENV}={path}: {e}"))
            }
            _ => Ok(Self::default()),
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|_| "not a Docker config.json (JSON with an \"auths\" object)".to_owned())?;
        let Some(auths) = v.get("auths").and_then(|a| a.as_object()) else {
            return Err("not a Docker config.json: no \"auths\" object".into());
        };
        let mut out = BTreeMap::new();
        for (key, entry) in auths {
            let host = normalize_host(key);
            let field = |k: &str| entry.get(k).and_then(|x| x.as_str()).unwrap_or_default();
            let login = if !field("auth").is_empty() {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(field("auth"))
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok());
                match raw.as_deref().and_then(|r| r.split_once(':')) {
                    Some((u, p)) => Login::new(u, p),
                    None => {
                        return Err(format!("auths.{key}.auth is not base64 of user:password"));
                    }
                }
            } else if !field("username").is_empty() {
                Login::new(field("username"), field("password"))
            } else {
                continue;
            };
            out.insert(host, login);
        }
        Ok(Self(out))
    }

    pub fn single(registry: &str, login: Login) -> Self {
        Self(BTreeMap::from([(normalize_host(registry), login)]))
    }

    fn get(&self, registry: &str) -> Option<&Login> {
        self.0.get(&normalize_host(registry))
    }
}

/// `https://index.docker.io/v1/` → `docker.io`; `https://r.example:5000/` → `r.example:5000`.
fn normalize_host(key: &str) -> String {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = k.split('/').next().unwrap_or_default().to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".into()
        }
        _ => host,
    }
}

/// A challenge from `WWW-Authenticate`.
#[derive(Debug, PartialEq)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    let mut map = BTreeMap::new();
    // key="value" pairs separated by commas (values may hold commas inside quotes).
    let mut rest = params.trim();
    while !rest.is_empty() {
        let Some((k, after)) = rest.split_once('=') else {
            break;
        };
        let after = after.trim_start();
        let (v, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], q[end + 1..].trim_start_matches([',', ' ']))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], after[end..].trim_start_matches([',', ' ']))
        };
        map.insert(k.trim().to_ascii_lowercase(), v.to_owned());
        rest = next.trim();
    }
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: map.get("realm")?.clone(),
            service: map.get("service").cloned(),
        }),
        _ => None,
    }
}

/// The preflight's HTTP client: short timeouts, and redirects (registries send blob and
/// manifest requests to storage) followed only from HTTPS to HTTPS, at most five.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(3))
        .timeout(std::time::Duration::from_secs(8))
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            let downgrade = attempt.previous().iter().any(|u| u.scheme() == "https")
                && attempt.url().scheme() != "https";
            if downgrade {
                attempt.error("a redirect from HTTPS to HTTP")
            } else if attempt.previous().len() > 5 {
                attempt.stop()
            } else {
                attempt.follow()
            }
        }))
        .build()
        .expect("HTTP client builds")
}

/// `reference` pinned: `repository[:tag]@sha256:…` as written, with the digest the registry
/// holds for it now. A reference that already names a digest is checked to exist.
pub async fn resolve(
    http: &reqwest::Client,
    reference: &str,
    logins: &Logins,
) -> Result<String, Unresolved> {
    let parsed = image::parse(reference).map_err(Unresolved::Refused)?;
    let loc = locate(&parsed.name);
    let wanted = parsed
        .digest
        .clone()
        .or_else(|| parsed.tag.clone())
        .unwrap_or_else(|| "latest".into());
    let url = format!("{}/v2/{}/manifests/{wanted}", loc.base, loc.repository);
    let login = logins.get(&loc.registry);
    let unavailable = |e: reqwest::Error| {
        Unresolved::Unavailable(format!(
            "image {reference}: registry {} did not answer: {}",
            loc.registry,
            chain(&e)
        ))
    };
    let head = |auth: Option<String>| {
        let mut r = http.head(&url).header(reqwest::header::ACCEPT, ACCEPT);
        if let Some(a) = auth {
            r = r.header(reqwest::header::AUTHORIZATION, a);
        }
        r.send()
    };
    let mut resp = head(None).await.map_err(unavailable)?;
    let mut presented = false;
    if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
        let challenge = resp
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|h| h.to_str().ok())
            .and_then(parse_challenge);
        let auth = match challenge {
            Some(Challenge::Basic) => {
                let Some(l) = login else {
                    return Err(needs_login(reference, &loc.registry));
                };
                Some(basic(l))
            }
            Some(Challenge::Bearer { realm, service }) => {
                // The worker's credentials go only to an HTTPS token server (a loopback
                // registry's own plain-HTTP one aside).
                if !(realm.starts_with("https://")
                    || (is_loopback_registry(&loc.registry)
                        && url::Url::parse(&realm).is_ok_and(|u| {
                            u.host_str().is_some_and(|h| {
                                h == "localhost"
                                    || h.parse::<std::net::IpAddr>()
                                        .is_ok_and(|ip| ip.is_loopback())
                            })
                        })))
                {
                    return Err(Unresolved::Refused(format!(
                        "image {reference}: registry {} names a token server that is not HTTPS ({realm}); the worker sends no credentials there",
                        loc.registry
                    )));
                }
                let mut q = vec![(
                    "scope".to_owned(),
                    format!("repository:{}:pull", loc.repository),
                )];
                if let Some(s) = service {
                    q.push(("service".into(), s));
                }
                let token_url = url::Url::parse_with_params(&realm, &q).map_err(|_| {
                    Unresolved::Refused(format!(
                        "image {reference}: registry {} names a token realm that is not a URL",
                        loc.registry
                    ))
                })?;
                let mut r = http.get(token_url);
                if let Some(l) = login {
                    r = r.basic_auth(&l.username, Some(&l.password));
                }
                let t = r.send().await.map_err(unavailable)?;
                if t.status().as_u16() == 429 || t.status().is_server_error() {
                    return Err(Unresolved::Unavailable(format!(
                        "image {reference}: the token server of registry {} answered {}",
                        loc.registry,
                        t.status()
                    )));
                }
                if !t.status().is_success() {
                    return Err(if login.is_some() {
                        refused_login(reference, &loc.registry, t.status())
                    } else {
                        needs_login(reference, &loc.registry)
                    });
                }
                let body: serde_json::Value = t.json().await.map_err(unavailable)?;
                let token = body
                    .get("token")
                    .or_else(|| body.get("access_token"))
                    .and_then(|v| v.as_str())
                    .unwrap_or_default();
                Some(format!("Bearer {token}"))
            }
            None => {
                return Err(Unresolved::Refused(format!(
                    "image {reference}: registry {} asks for an authentication scheme the worker does not speak",
                    loc.registry
                )));
            }
        };
        presented = login.is_some();
        resp = head(auth).await.map_err(unavailable)?;
    }
    let status = resp.status();
    if status.is_success() {
        let digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let hex = digest.strip_prefix("sha256:").unwrap_or_default();
        if !(hex.len() == 64
            && hex
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()))
        {
            return Err(Unresolved::Refused(format!(
                "image {reference}: registry {} gave no sha256 digest for it (Docker-Content-Digest: {digest:?})",
                loc.registry
            )));
        }
        if let Some(d) = &parsed.digest
            && *d != digest
        {
            return Err(Unresolved::Refused(format!(
                "image {reference}: registry {} serves digest {digest} for it",
                loc.registry
            )));
        }
        return Ok(match &parsed.tag {
            Some(t) => format!("{}:{t}@{digest}", parsed.name),
            None => format!("{}@{digest}", parsed.name),
        });
    }
    match status.as_u16() {
        404 => Err(Unresolved::Refused(format!(
            "image {reference} does not exist: registry {} has no manifest {wanted} in repository {}",
            loc.registry, loc.repository
        ))),
        401 | 403 if presented => Err(refused_login(reference, &loc.registry, status)),
        401 | 403 => Err(needs_login(reference, &loc.registry)),
        429 | 500..=599 => Err(Unresolved::Unavailable(format!(
            "image {reference}: registry {} answered {status}",
            loc.registry
        ))),
        _ => Err(Unresolved::Refused(format!(
            "image {reference}: registry {} answered {status}",
            loc.registry
        ))),
    }
}

/// An error with its causes (reqwest's own message says only "error sending request").
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

fn basic(l: &Login) -> String {
    let raw = format!("{}:{}", l.username, l.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

fn needs_login(reference: &str, registry: &str) -> Unresolved {
    Unresolved::Refused(format!(
        "image {reference}: registry {registry} requires credentials and the worker has none for it (set {AUTH_FILE_ENV} to a Docker config.json with an auths entry for {registry})"
    ))
}

fn refused_login(reference: &str, registry: &str, status: reqwest::StatusCode) -> Unresolved {
    Unresolved::Refused(format!(
        "image {reference}: registry {registry} refused the worker's credentials ({status})"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_and_repositories_are_located_as_container_runtimes_do() {
        let l = locate("jts/api-gateway");
        assert_eq!(
            (l.registry.as_str(), l.repository.as_str(), l.base.as_str()),
            (
                "docker.io",
                "jts/api-gateway",
                "https://registry-1.docker.io"
            )
        );
        assert_eq!(locate("postgres").repository, "library/postgres");
        for hub in ["docker.io/postgres", "index.docker.io/library/postgres"] {
            let l = locate(hub);
            assert_eq!(
                (l.registry.as_str(), l.repository.as_str(), l.base.as_str()),
                (
                    "docker.io",
                    "library/postgres",
                    "https://registry-1.docker.io"
                ),
                "{hub}"
            );
        }
        let l = locate("127.0.0.1:5000/jts/order-execution");
        assert_eq!(
            (l.registry.as_str(), l.base.as_str()),
            ("127.0.0.1:5000", "http://127.0.0.1:5000")
        );
        assert_eq!(locate("localhost/x").base, "http://localhost");
        assert_eq!(
            locate("ghcr.io/acme/risk").base,
            "https://ghcr.io",
            "a registry off loopback is HTTPS"
        );
        assert_eq!(locate("10.0.0.5:5000/x").base, "https://10.0.0.5:5000");
    }

    #[test]
    fn challenges_are_parsed() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into())
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn docker_config_logins_are_read_by_host_and_never_printed() {
        let auth = base64::engine::general_purpose::STANDARD.encode("ci:s3cret-pass");
        let text = format!(
            r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{auth}"}}, "r.example:5000": {{"username": "u", "password": "p"}}}}}}"#
        );
        let l = Logins::parse(&text).unwrap();
        assert_eq!(l.get("docker.io").unwrap().username, "ci");
        assert_eq!(l.get("r.example:5000").unwrap().username, "u");
        assert!(l.get("ghcr.io").is_none());
        assert!(!format!("{l:?}").contains("s3cret"));
        let e = Logins::parse(r#"{"auths": {"x.io": {"auth": "bm9jb2xvbg=="}}}"#).unwrap_err();
        assert!(e.contains("auths.x.io.auth"), "{e}");
        assert!(Logins::parse("[]").is_err());
    }
}

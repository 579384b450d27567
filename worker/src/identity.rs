//! Who starts and who approves a release.
//!
//! - The CLI takes an OIDC ID token (`CUTOVER_ID_TOKEN`, or GitHub Actions' own when the job
//!   has `id-token: write`) and seals it to the worker's X25519 public key
//!   (`identity.worker_key`) together with what it is for (`start:<env>:<deployment>`,
//!   `approve:<deployment>:<digest>`). Only the worker can open it, so the histories hold no
//!   usable token, and a sealed token copied from a history is good for nothing else.
//! - The worker opens it with its private key (`identity.private_key_env`) and verifies the
//!   token: a trusted issuer, its audience, expiry, the signature against the issuer's JWKS
//!   (fetched, then cached), the required claims; the identity is the configured claim.

use crate::config::IssuerCfg;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use crypto_box::aead::OsRng;
use crypto_box::{PublicKey, SecretKey};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Environment variable holding an OIDC ID token for the CLI.
pub const TOKEN_ENV: &str = "CUTOVER_ID_TOKEN";
/// Environment variable naming the audience the CLI asks GitHub Actions for.
pub const AUDIENCE_ENV: &str = "CUTOVER_OIDC_AUDIENCE";

/// A new key pair: (private, public), both base64.
pub fn keygen() -> (String, String) {
    let sk = SecretKey::generate(&mut OsRng);
    (
        B64.encode(sk.to_bytes()),
        B64.encode(sk.public_key().as_bytes()),
    )
}

fn key_bytes(b64: &str) -> Result<[u8; 32], String> {
    let bytes = B64
        .decode(b64.trim())
        .map_err(|_| "not base64".to_owned())?;
    bytes
        .try_into()
        .map_err(|_| "not 32 bytes (an X25519 key)".to_owned())
}

pub fn public_key(b64: &str) -> Result<PublicKey, String> {
    key_bytes(b64).map(PublicKey::from)
}

pub fn secret_key(b64: &str) -> Result<SecretKey, String> {
    key_bytes(b64).map(SecretKey::from)
}

/// What a sealed token may be used for: starting this deployment of exactly this release
/// (its release digest: revision, templates, migrations, images).
pub fn start_purpose(environment: &str, deployment_id: &str, digest: &str) -> String {
    format!("start:{environment}:{deployment_id}:{digest}")
}

/// A migration run on its own (`cutover migrate run` / `rollback`).
pub fn migrate_purpose(environment: &str, deployment_id: &str, phase: &str) -> String {
    format!("migrate:{environment}:{deployment_id}:{phase}")
}

/// A rollback on its own (`cutover rollback`).
pub fn rollback_purpose(environment: &str, deployment_id: &str) -> String {
    format!("rollback:{environment}:{deployment_id}")
}

/// What a sealed token may be used for: this decision on this release.
pub fn decision_purpose(action: &str, deployment_id: &str, digest: &str) -> String {
    format!("{action}:{deployment_id}:{digest}")
}

#[derive(Serialize, Deserialize)]
struct Sealed {
    token: String,
    purpose: String,
}

/// Seals `token` for `purpose` to the worker's public key (base64 of a sealed box).
pub fn seal(worker_key: &str, token: &str, purpose: &str) -> Result<String, String> {
    let pk = public_key(worker_key).map_err(|e| format!("identity.worker_key: {e}"))?;
    let plain = serde_json::to_vec(&Sealed {
        token: token.to_owned(),
        purpose: purpose.to_owned(),
    })
    .map_err(|e| e.to_string())?;
    let sealed = pk
        .seal(&mut OsRng, &plain)
        .map_err(|_| "sealing the ID token failed".to_owned())?;
    Ok(B64.encode(sealed))
}

/// Opens a sealed token: the token, if it was sealed to this key for `purpose`.
pub fn open(key: &SecretKey, sealed: &str, purpose: &str) -> Result<String, String> {
    let bytes = B64
        .decode(sealed.trim())
        .map_err(|_| "the sealed token is not base64".to_owned())?;
    let plain = key.unseal(&bytes).map_err(|_| {
        "the sealed token does not open with the worker's key (sealed to another worker_key?)"
            .to_owned()
    })?;
    let s: Sealed =
        serde_json::from_slice(&plain).map_err(|_| "the sealed token holds no token".to_owned())?;
    if s.purpose != purpose {
        return Err(format!(
            "the token was sealed for {:?}, not for {purpose:?}",
            s.purpose
        ));
    }
    Ok(s.token)
}

/// The CLI's ID token: `CUTOVER_ID_TOKEN`, else GitHub Actions' (the job needs
/// `permissions: id-token: write`) for `audience`; none otherwise.
pub async fn id_token(audience: &str) -> Result<Option<String>, String> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let Some(t) = var(TOKEN_ENV) {
        return Ok(Some(t.trim().to_owned()));
    }
    let (Some(url), Some(bearer)) = (
        var("ACTIONS_ID_TOKEN_REQUEST_URL"),
        var("ACTIONS_ID_TOKEN_REQUEST_TOKEN"),
    ) else {
        return Ok(None);
    };
    let mut url = url::Url::parse(&url)
        .map_err(|e| format!("ACTIONS_ID_TOKEN_REQUEST_URL is not a URL: {e}"))?;
    url.query_pairs_mut().append_pair("audience", audience);
    #[derive(Deserialize)]
    struct Answer {
        value: String,
    }
    let answer: Answer = reqwest::Client::new()
        .get(url)
        .bearer_auth(bearer)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("GitHub Actions' ID token: {}", e.without_url()))?
        .json()
        .await
        .map_err(|e| format!("GitHub Actions' ID token: {}", e.without_url()))?;
    Ok(Some(answer.value))
}

/// Environment variable holding the worker's public key for the CLI (else
/// `identity.worker_key` of the configuration).
pub const WORKER_KEY_ENV: &str = "CUTOVER_WORKER_KEY";

/// The CLI's ID token sealed for `purpose`, when it has one (see [`id_token`]); none when it
/// has none (the request then carries an asserted name).
pub async fn sealed_for(
    cfg: Option<&crate::config::Config>,
    purpose: &str,
) -> Result<Option<String>, String> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let audience = var(AUDIENCE_ENV)
        .or_else(|| {
            let issuers = &cfg?.identity.issuers;
            (issuers.len() == 1).then(|| issuers.values().next().map(|i| i.audience.clone()))?
        })
        .unwrap_or_else(|| "cutover".to_owned());
    let Some(token) = id_token(&audience).await? else {
        return Ok(None);
    };
    let key = var(WORKER_KEY_ENV)
        .or_else(|| cfg.map(|c| c.identity.worker_key.clone()).filter(|k| !k.is_empty()))
        .ok_or_else(|| {
            format!(
                "an ID token is present but there is no worker key to seal it to: set identity.worker_key in the configuration or {WORKER_KEY_ENV}"
            )
        })?;
    seal(&key, &token, purpose).map(Some)
}

/// A verified identity, and the token's claims (for the environment's required claims).
#[derive(Clone, Debug, PartialEq)]
pub struct Verified {
    pub identity: String,
    pub issuer: String,
    pub claims: serde_json::Value,
}

impl Verified {
    /// The first of `required` the token does not carry with exactly that value.
    pub fn lacks(&self, required: &BTreeMap<String, String>) -> Option<String> {
        required.iter().find_map(|(k, want)| {
            let got = self
                .claims
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            (got != want).then(|| format!("claim {k:?} is {got:?}; the worker requires {want:?}"))
        })
    }
}

/// Verifies ID tokens against the trusted issuers; keeps each issuer's JWKS for
/// [`JWKS_TTL`] (fetched again at once for a key id it does not hold, at most every
/// [`JWKS_REFETCH`]).
pub struct Verifier {
    /// Built on first use: a worker starting up (and handing back its dead predecessor's
    /// attempts before their heartbeat timeout) does not wait for it.
    http: std::sync::OnceLock<reqwest::Client>,
    jwks: Mutex<HashMap<String, (Instant, JwkSet)>>,
}

pub const JWKS_TTL: Duration = Duration::from_secs(600);
pub const JWKS_REFETCH: Duration = Duration::from_secs(10);

/// The algorithms an ID token may be signed with (asymmetric only: never `none` or HMAC).
const ALGORITHMS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
];

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Verifier {
    pub fn new() -> Self {
        Self {
            http: std::sync::OnceLock::new(),
            jwks: Mutex::new(HashMap::new()),
        }
    }

    /// The token's identity, or why it is refused (`Err(Ok(reason))`), or why it could not be
    /// checked now (`Err(Err(error))`: the issuer's keys could not be fetched; worth a retry).
    pub async fn verify(
        &self,
        issuers: &BTreeMap<String, IssuerCfg>,
        token: &str,
    ) -> Result<Verified, Result<String, String>> {
        let refuse = |why: String| Err(Ok(why));
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return refuse("the ID token is not a JWT".into());
        };
        if !ALGORITHMS.contains(&header.alg) {
            return refuse(format!(
                "the ID token is signed with {:?}; only asymmetric algorithms are accepted",
                header.alg
            ));
        }
        let Some(iss) = unverified_claim(token, "iss") else {
            return refuse("the ID token names no issuer".into());
        };
        let Some(cfg) = issuers.values().find(|i| i.issuer == iss) else {
            let trusted: Vec<&str> = issuers.values().map(|i| i.issuer.as_str()).collect();
            return refuse(format!(
                "issuer {iss:?} is not trusted by the worker (trusted: {})",
                if trusted.is_empty() {
                    "none".to_owned()
                } else {
                    trusted.join(", ")
                }
            ));
        };
        let Some(kid) = header.kid.clone() else {
            return refuse("the ID token names no key (kid)".into());
        };
        let jwk = match self.key(cfg, &kid).await {
            Ok(Some(k)) => k,
            Ok(None) => {
                return refuse(format!(
                    "key {kid:?} is not among {iss}'s published keys: the signature cannot be verified"
                ));
            }
            Err(e) => return Err(Err(e)),
        };
        // (The JWK's own `alg`, when it names one, must be the token's.)
        if let Some(alg) = jwk.common.key_algorithm
            && format!("{alg:?}") != format!("{:?}", header.alg)
        {
            return refuse(format!(
                "the ID token is signed with {:?} but {iss}'s key {kid:?} is for {alg:?}",
                header.alg
            ));
        }
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            return refuse(format!("{iss}'s key {kid:?} is not usable"));
        };
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[&cfg.issuer]);
        v.set_audience(&[&cfg.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.leeway = 30;
        v.validate_nbf = true;
        let claims = match jsonwebtoken::decode::<serde_json::Value>(token, &key, &v) {
            Ok(d) => d.claims,
            Err(e) => {
                use jsonwebtoken::errors::ErrorKind as K;
                return refuse(match e.kind() {
                    K::ExpiredSignature => "the ID token has expired".into(),
                    K::ImmatureSignature => "the ID token is not valid yet (nbf)".into(),
                    K::InvalidAudience => format!(
                        "the ID token is for audience {:?}; the worker accepts {:?}",
                        unverified_claim(token, "aud").unwrap_or_default(),
                        cfg.audience
                    ),
                    K::InvalidSignature => {
                        format!("the ID token's signature does not verify with {iss}'s key {kid:?}")
                    }
                    K::InvalidIssuer => format!("issuer {iss:?} is not trusted"),
                    K::MissingRequiredClaim(c) => format!("the ID token has no {c:?} claim"),
                    other => format!("the ID token is invalid: {other:?}"),
                });
            }
        };
        let identity = match claims.get(&cfg.claim).and_then(|v| v.as_str()) {
            Some(id) if !id.trim().is_empty() => id.to_owned(),
            _ => {
                return refuse(format!(
                    "the ID token has no {:?} claim to name the person",
                    cfg.claim
                ));
            }
        };
        let v = Verified {
            identity,
            issuer: cfg.issuer.clone(),
            claims,
        };
        match v.lacks(&cfg.required_claims) {
            None => Ok(v),
            Some(why) => refuse(why),
        }
    }

    /// The issuer's key `kid`, from the cache or fetched.
    async fn key(
        &self,
        cfg: &IssuerCfg,
        kid: &str,
    ) -> Result<Option<jsonwebtoken::jwk::Jwk>, String> {
        let cached = {
            let cache = self.jwks.lock().expect("JWKS cache lock");
            cache.get(&cfg.issuer).cloned()
        };
        if let Some((at, set)) = &cached {
            let found = set.find(kid).cloned();
            let fresh = at.elapsed() < JWKS_TTL;
            if (found.is_some() && fresh) || at.elapsed() < JWKS_REFETCH {
                return Ok(found.filter(|_| fresh));
            }
        }
        let set = self.fetch(cfg).await?;
        let found = set.find(kid).cloned();
        self.jwks
            .lock()
            .expect("JWKS cache lock")
            .insert(cfg.issuer.clone(), (Instant::now(), set));
        Ok(found)
    }

    async fn fetch(&self, cfg: &IssuerCfg) -> Result<JwkSet, String> {
        let jwks_url = if cfg.jwks_url.is_empty() {
            let discovery = format!(
                "{}/.well-known/openid-configuration",
                cfg.issuer.trim_end_matches('/')
            );
            let doc: serde_json::Value = self.get_json(&discovery).await?;
            doc.get("jwks_uri")
                .and_then(|v| v.as_str())
                .ok_or_else(|| format!("{discovery} names no jwks_uri"))?
                .to_owned()
        } else {
            cfg.jwks_url.clone()
        };
        self.get_json(&jwks_url).await
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let http = self.http.get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(3))
                .timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client builds")
        });
        http.get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("{url}: {e}"))?
            .json()
            .await
            .map_err(|e| format!("{url}: {e}"))
    }
}

/// A claim of the token's payload, read without verifying it (only to pick the issuer's keys).
fn unverified_claim(token: &str, claim: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = B64URL.decode(payload).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    match v.get(claim)? {
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_token_opens_only_with_the_key_and_for_its_purpose() {
        let (private, public) = keygen();
        let sealed = seal(&public, "tok.en.x", "start:production:d1").unwrap();
        assert!(start_purpose("p", "d", "sha256:x").ends_with(":sha256:x"));
        assert!(!sealed.contains("tok.en.x"));
        let key = secret_key(&private).unwrap();
        assert_eq!(
            open(&key, &sealed, "start:production:d1").unwrap(),
            "tok.en.x"
        );
        let other = open(&key, &sealed, "start:production:d2").unwrap_err();
        assert!(
            other.contains("sealed for \"start:production:d1\""),
            "{other}"
        );
        let (stranger, _) = keygen();
        let e = open(
            &secret_key(&stranger).unwrap(),
            &sealed,
            "start:production:d1",
        )
        .unwrap_err();
        assert!(e.contains("does not open"), "{e}");
        assert!(public_key("not-a-key").is_err());
    }
}

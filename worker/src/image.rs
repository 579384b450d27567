//! Image references (`[registry[:port]/]path[:tag][@sha256:digest]`), validated before anything
//! is started.

#[derive(Debug, Clone, PartialEq)]
pub struct ImageRef {
    pub name: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageRef {
    /// The version the local platform runs: the tag, else the digest's first 12 hex digits.
    pub fn version(&self) -> String {
        match (&self.tag, &self.digest) {
            (Some(t), _) => t.clone(),
            (None, Some(d)) => d.trim_start_matches("sha256:").chars().take(12).collect(),
            (None, None) => "latest".to_owned(),
        }
    }
}

pub fn parse(reference: &str) -> Result<ImageRef, String> {
    let bad = |why: &str| Err(format!("malformed image reference {reference:?}: {why}"));
    if reference.is_empty() {
        return bad("it is empty");
    }
    if reference
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return bad("it contains whitespace");
    }
    let (rest, digest) = match reference.split_once('@') {
        Some((r, d)) => {
            let hex = d.strip_prefix("sha256:");
            match hex {
                Some(h)
                    if h.len() == 64
                        && h.chars()
                            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()) =>
                {
                    (r, Some(d.to_owned()))
                }
                _ => return bad("the digest must be sha256: followed by 64 lowercase hex digits"),
            }
        }
        None => (reference, None),
    };
    // A ':' after the last '/' starts the tag; one before it belongs to a registry port.
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].find(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(t) = tag {
        let valid = !t.is_empty()
            && t.len() <= 128
            && t.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !valid {
            return bad("the tag must be 1-128 of [A-Za-z0-9_.-], not starting with '.' or '-'");
        }
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    if parts.len() > 1
        && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost")
    {
        let registry = parts.remove(0);
        let host = registry.split(':').next().unwrap_or_default();
        let port_ok = registry
            .split(':')
            .nth(1)
            .is_none_or(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
        if host.is_empty()
            || !port_ok
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-".contains(c))
        {
            return bad("the registry must be a host name with an optional numeric port");
        }
    }
    for part in &parts {
        let ok = !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
            && part
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric())
            && part
                .chars()
                .last()
                .is_some_and(|c| c.is_ascii_alphanumeric());
        if !ok {
            return bad(
                "path components must be lowercase letters, digits and . _ - (not at either end)",
            );
        }
    }
    if tag.is_none() && digest.is_none() {
        return bad("it has neither a tag nor a digest: cutover deploys exact versions only");
    }
    Ok(ImageRef {
        name: name.to_owned(),
        tag: tag.map(str::to_owned),
        digest,
    })
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn accepts_real_references() {
        for r in [
            "jts/api-gateway:v2",
            "registry.example.com:5000/jts/order-execution:2026.11.28-1",
            "ghcr.io/acme/risk-management@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "localhost/strategy-engine:v3",
        ] {
            assert!(parse(r).is_ok(), "{r}: {:?}", parse(r));
        }
        assert_eq!(parse("jts/api-gateway:v2").unwrap().version(), "v2");
    }

    #[test]
    fn refuses_malformed_references_with_a_reason() {
        for (r, why) in [
            ("", "empty"),
            ("jts/API-gateway:v2", "lowercase"),
            ("jts/api-gateway", "neither a tag"),
            ("jts/api-gateway:", "tag"),
            ("jts/api-gateway:-v2", "tag"),
            ("jts//api-gateway:v2", "path components"),
            ("jts/api-gateway@sha256:abc", "digest"),
            ("jts/api gateway:v2", "whitespace"),
        ] {
            let e = parse(r).unwrap_err();
            assert!(e.contains(why), "{r}: {e}");
        }
    }
}

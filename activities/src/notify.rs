//! Slack-compatible webhook notifications. The URL is a secret: it appears in no log, error or
//! payload — only the host is ever named.

use crate::error::Failure;
use proto::Notification;

fn host_of(url: &str) -> &str {
    url.split("://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or("webhook")
}

pub async fn post(http: &reqwest::Client, url: &str, n: &Notification) -> Result<(), Failure> {
    let body = serde_json::json!({
        "text": format!("[cutover] {}", n.text),
        "event": n.event,
        "environment": n.environment,
        "deployment_id": n.deployment_id,
    });
    let resp = http.post(url).json(&body).send().await.map_err(|e| {
        Failure::Unavailable(format!(
            "webhook at {} unreachable: {}",
            host_of(url),
            e.without_url()
        ))
    })?;
    if !resp.status().is_success() {
        return Err(Failure::Unavailable(format!(
            "webhook at {} answered {}",
            host_of(url),
            resp.status()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_host_is_named() {
        assert_eq!(
            super::host_of("https://hooks.example.com/services/T000/B000/SECRET"),
            "hooks.example.com"
        );
    }
}

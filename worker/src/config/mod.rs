//! `cutover.toml`: environments, services and their checks, in a file a person reviews in a pull
//! request. Unknown keys and invalid values are refused naming the file, the key and why.
//!
//! - `schema`: the serde structs of the file, with their defaults.
//! - `validation`: the checks [`Config::parse`] runs, each naming the file, the key and why.
//! - `resolution`: the workflows' inputs built from it (`DeployRequest`, `ShiftRequest`,
//!   `PlatformTarget`, `MigrateRequest`, `BreakerConfig`).

mod resolution;
pub use resolution::reparse;
mod schema;
mod validation;

pub use schema::{
    ApprovalCfg, BreakerCfg, CanaryCfg, Config, DatabaseCfg, Defaults, Environment,
    FreezeWindowCfg, IdentityCfg, IssuerCfg, KubernetesPlatformCfg, LocalPlatformCfg, PerfCfg,
    Platform, ResourcesCfg, Service, ThresholdsCfg, TimingsCfg,
};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {why}")]
    Read { file: String, why: String },
    #[error("{file}: {why}")]
    Parse { file: String, why: String },
    #[error("{file}: {key}: {why}")]
    Invalid {
        file: String,
        key: String,
        why: String,
    },
}

/// Default file: `$CUTOVER_CONFIG`, else `cutover.toml` in the working directory.
pub fn default_path() -> PathBuf {
    std::env::var_os("CUTOVER_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("cutover.toml"))
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            file: file.clone(),
            why: format!("{e} (pass --config FILE or set CUTOVER_CONFIG)"),
        })?;
        Self::parse(&text, &file)
    }

    pub fn parse(text: &str, file: &str) -> Result<Self, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: file.to_owned(),
            why: e.to_string().trim_end().replace('\n', "\n  "),
        })?;
        cfg.file = file.to_owned();
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    /// A valid configuration the tests of the submodules start from.
    pub(super) const GOOD: &str = r#"
[services.risk-management]
smoke = ["/api/risk/limits"]
[services.order-execution]
depends_on = ["risk-management"]
[services.api-gateway]
depends_on = ["order-execution"]

[environments.staging]
platform = { kind = "local", admin_url = "http://127.0.0.1:9400" }
approval = { required = true, approvers = ["alice"] }
"#;
}

//! The reversible sqlx layout: `<version>_<name>.up.sql` and `<version>_<name>.down.sql`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migration {
    pub version: i64,
    pub name: String,
    /// File name of the up migration (for findings and records).
    pub file: String,
    pub up_sql: String,
    pub down_sql: String,
    /// Hex SHA-256 of the up file's bytes.
    pub checksum: String,
    /// First line `-- cutover: contract`.
    pub contract: bool,
    /// First line `-- no-transaction` (e.g. CREATE INDEX CONCURRENTLY).
    pub no_transaction: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("{0}: cannot read: {1}")]
    Read(String, String),
    #[error("{0}: {1}")]
    Layout(String, String),
}

pub fn checksum(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The markers a file's first lines carry (any order, before the first statement).
fn markers(sql: &str) -> (bool, bool) {
    let mut contract = false;
    let mut no_tx = false;
    for line in sql.lines().take_while(|l| l.trim_start().starts_with("--")) {
        let l = line.trim();
        if l == "-- cutover: contract" {
            contract = true;
        }
        if l == "-- no-transaction" {
            no_tx = true;
        }
    }
    (contract, no_tx)
}

/// Builds one migration from its files' contents.
pub fn migration(version: i64, name: &str, up_sql: String, down_sql: String) -> Migration {
    let (contract, no_transaction) = markers(&up_sql);
    Migration {
        version,
        name: name.to_owned(),
        file: format!("{version}_{name}.up.sql"),
        checksum: checksum(up_sql.as_bytes()),
        up_sql,
        down_sql,
        contract,
        no_transaction,
    }
}

/// Every migration of a folder, ordered by version. Refuses a folder that is not in the
/// layout: an up without its down (or the reverse), a malformed name, a version used twice.
pub fn load_dir(dir: &Path) -> Result<Vec<Migration>, FilesError> {
    let shown = dir.display().to_string();
    let entries =
        std::fs::read_dir(dir).map_err(|e| FilesError::Read(shown.clone(), e.to_string()))?;
    // version → (name, text, the version as written: `0003` stays `0003` in findings)
    type Files = BTreeMap<i64, (String, String, String)>;
    let mut ups: Files = BTreeMap::new();
    let mut downs: Files = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(|e| FilesError::Read(shown.clone(), e.to_string()))?;
        let file = entry.file_name().to_string_lossy().into_owned();
        if !file.ends_with(".sql") {
            continue;
        }
        let owned = file.clone();
        let (stem, up) = if let Some(s) = owned.strip_suffix(".up.sql") {
            (s, true)
        } else if let Some(s) = owned.strip_suffix(".down.sql") {
            (s, false)
        } else {
            return Err(FilesError::Layout(
                file,
                "expected <version>_<name>.up.sql or <version>_<name>.down.sql".into(),
            ));
        };
        let Some((v, name)) = stem.split_once('_') else {
            return Err(FilesError::Layout(
                file,
                "expected <version>_<name>: no '_' after the version".into(),
            ));
        };
        let version: i64 = v.parse().ok().filter(|v| *v > 0).ok_or_else(|| {
            FilesError::Layout(
                file.clone(),
                format!("{v:?} is not a positive integer version"),
            )
        })?;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(FilesError::Layout(
                file,
                format!("{name:?} is not a name of [A-Za-z0-9_-]"),
            ));
        }
        let text = std::fs::read_to_string(entry.path())
            .map_err(|e| FilesError::Read(file.clone(), e.to_string()))?;
        let map = if up { &mut ups } else { &mut downs };
        if let Some((other, _, _)) = map.insert(version, (name.to_owned(), text, v.to_owned())) {
            return Err(FilesError::Layout(
                file,
                format!("version {version} is also used by {other}"),
            ));
        }
    }
    let mut out = Vec::new();
    for (version, (name, up, v)) in &ups {
        let Some((down_name, down, dv)) = downs.get(version) else {
            return Err(FilesError::Layout(
                format!("{v}_{name}.up.sql"),
                format!("no {v}_{name}.down.sql: every migration must be reversible"),
            ));
        };
        if down_name != name {
            return Err(FilesError::Layout(
                format!("{dv}_{down_name}.down.sql"),
                format!("its up file is named {v}_{name}.up.sql"),
            ));
        }
        let mut m = migration(*version, name, up.clone(), down.clone());
        m.file = format!("{v}_{name}.up.sql");
        out.push(m);
    }
    if let Some((_, (name, _, v))) = downs.iter().find(|(v, _)| !ups.contains_key(v)) {
        return Err(FilesError::Layout(
            format!("{v}_{name}.down.sql"),
            "no matching up file".into(),
        ));
    }
    Ok(out)
}

//! Weasel's configuration: one TOML document holding Stoat's `[http]`
//! tables and Weasel's own `[weasel]` table.
//!
//! Contract: [`WeaselConfig::from_toml_str`] and [`WeaselConfig::load`]
//! either give a configuration whose both parts passed validation, or an
//! error naming the file and the key at fault (`weasel.status_window`,
//! `http.port`). Unknown keys are errors in both parts. The `[weasel]`
//! table is taken out of the document here and checked with the same
//! rules as Stoat's (`deny_unknown_fields`, `serde_path_to_error` for the
//! key path); what is left is handed to [`Config::from_toml_str`], so
//! Stoat's own errors keep their wording. Stoat's config stays unchanged.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use stoat::config::{Config, ConfigError, DEFAULT_CONFIG};

/// Weasel's own table, appended to Stoat's defaults to form the embedded
/// default configuration.
pub const WEASEL_DEFAULT_TABLE: &str = r#"
# Weasel, the key-value store served on the commit_status pipeline above.
[weasel]
# Directory of the commit log (created if missing).
data_dir = "./weasel-data"
# Make every batch durable with fdatasync before answering. Turning it off loses
# acknowledged commits on power loss (not on a process crash).
fsync = true
# Most commits written with one write and one fsync; 1 turns group commit off.
max_batch = 256
# Outcomes remembered by request_id, for retries and GET /v1/status (oldest forgotten first).
status_window = 100000
# Committed versions kept in memory for GET /v1/watch resumption.
watch_history = 4096
# ... and at most this many bytes of their keys, values and encodings (the oldest go first).
watch_history_bytes = 67108864
# Bytes of events queued to all watchers at once (split evenly between them); a watcher
# over its share waits, and one that falls out of the history gets `too_slow`.
watch_buffer_bytes = 67108864
# Largest GET /v1/kv answer in bytes, about (at least one item; page on with start_after).
max_list_bytes = 4194304
# Snapshot the state (and retire the log before it) once the log since the last
# snapshot reaches this percentage of the live data (keys and values) ...
snapshot_log_percent = 50
# ... and at least this many bytes; 0 turns automatic snapshots off.
snapshot_min_log_bytes = 1048576
# Disk use bound, in percent of the live data: snapshots start early enough that the
# newest snapshot, the log since it and the next snapshot fit, and commits wait for a
# snapshot being written while more would not fit. 0: no bound (commits never wait).
max_disk_percent = 300
# Token for the admin routes (POST /v1/admin/snapshot, header
# `Authorization: Bearer TOKEN`); empty: the admin routes are off (404).
admin_token = ""
# Longest key in bytes.
max_key_bytes = 1024
# Largest value in bytes (the whole body is also bounded by http.max_body_size).
max_value_bytes = 262144
# Most operations in one commit.
max_operations = 1024
"#;

/// The embedded default configuration, whole: Stoat's and Weasel's tables.
pub fn default_config_text() -> String {
    // Metrics and the dashboard are on in Weasel.
    format!(
        "{}{WEASEL_DEFAULT_TABLE}",
        crate::metrics::default_text(DEFAULT_CONFIG)
    )
}

/// The `[weasel]` table. Field docs give each key's default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Directory of the commit log. Default `./weasel-data`.
    pub data_dir: PathBuf,
    /// fdatasync each batch before answering. Default true.
    pub fsync: bool,
    /// Most commits per durable write. Default 256; 1 to 65536.
    pub max_batch: usize,
    /// Outcomes remembered by request id. Default 100000; at least 1.
    pub status_window: usize,
    /// Versions kept for watch resumption. Default 4096; at least 1.
    pub watch_history: usize,
    /// Bytes of values the watch history may hold. Default 64 MiB; at
    /// least 1.
    pub watch_history_bytes: usize,
    /// Bytes queued to all watchers at once. Default 64 MiB; at least 1.
    pub watch_buffer_bytes: usize,
    /// Largest `GET /v1/kv` answer, about. Default 4 MiB; at least 1.
    pub max_list_bytes: usize,
    /// Log growth since the last snapshot, in percent of the live data,
    /// that triggers a snapshot. Default 50; 1 to 100000.
    pub snapshot_log_percent: u64,
    /// ... and at least this many bytes of log; 0: no automatic
    /// snapshots. Default 1 MiB.
    pub snapshot_min_log_bytes: u64,
    /// Disk use bound in percent of the live data (see `Store::maybe_snapshot`
    /// and `Store::hold_for_disk`). Default 300; 0 (no bound) or 150 to
    /// 100000.
    pub max_disk_percent: u64,
    /// Bearer token of the admin routes; empty: off. Default empty.
    pub admin_token: String,
    /// Longest key in bytes. Default 1024; 1 to 65536.
    pub max_key_bytes: usize,
    /// Largest value in bytes. Default 262144; at least 1.
    pub max_value_bytes: usize,
    /// Most operations in one commit. Default 1024; at least 1.
    pub max_operations: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            data_dir: PathBuf::from("./weasel-data"),
            fsync: true,
            max_batch: 256,
            status_window: 100_000,
            watch_history: 4096,
            watch_history_bytes: 64 << 20,
            watch_buffer_bytes: 64 << 20,
            max_list_bytes: 4 << 20,
            snapshot_log_percent: 50,
            snapshot_min_log_bytes: 1 << 20,
            max_disk_percent: 300,
            admin_token: String::new(),
            max_key_bytes: 1024,
            max_value_bytes: 262_144,
            max_operations: 1024,
        }
    }
}

/// The whole configuration: Stoat's server and Weasel's store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeaselConfig {
    /// Stoat's part (`[http]`).
    pub server: Config,
    /// Weasel's part (`[weasel]`).
    pub store: StoreConfig,
    /// The file it was read from (`None`: the embedded default), named by
    /// errors found later ([`WeaselConfig::validate`]).
    pub file: Option<PathBuf>,
}

/// A configuration error: Stoat's, or one in the `[weasel]` table.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WeaselConfigError {
    /// Stoat's part is wrong (its message names the key and file).
    #[error(transparent)]
    Server(#[from] ConfigError),
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The text is not TOML.
    #[error("config error in {}: {message}", Origin(file))]
    Syntax {
        /// The file, when known.
        file: Option<PathBuf>,
        /// What the TOML parser said.
        message: String,
    },
    /// A key of `[weasel]` is unknown, mistyped or out of range.
    #[error("config error in {}: key `{key}`: {message}", Origin(file))]
    Key {
        /// The file, when known.
        file: Option<PathBuf>,
        /// Full key, like `weasel.max_batch`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl WeaselConfigError {
    /// The key at fault, when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            WeaselConfigError::Server(e) => e.key(),
            WeaselConfigError::Key { key, .. } => Some(key),
            _ => None,
        }
    }
}

impl WeaselConfig {
    /// The embedded default configuration.
    pub fn embedded() -> Result<WeaselConfig, WeaselConfigError> {
        WeaselConfig::from_toml_str(&default_config_text(), None)
    }

    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<WeaselConfig, WeaselConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| WeaselConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        WeaselConfig::from_toml_str(&text, Some(path))
    }

    /// Parses and validates `text`; `file` names its origin in errors.
    pub fn from_toml_str(
        text: &str,
        file: Option<&Path>,
    ) -> Result<WeaselConfig, WeaselConfigError> {
        let owned_file = file.map(Path::to_path_buf);
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e: toml::de::Error| WeaselConfigError::Syntax {
                file: owned_file.clone(),
                message: one_line(e.message()),
            })?;
        let store = match table.remove("weasel") {
            None => StoreConfig::default(),
            Some(value) => {
                let store: StoreConfig = serde_path_to_error::deserialize(value).map_err(|e| {
                    let path = e.path().to_string();
                    let key = if path == "." || path.is_empty() {
                        "weasel".to_owned()
                    } else {
                        format!("weasel.{path}")
                    };
                    WeaselConfigError::Key {
                        file: owned_file.clone(),
                        key,
                        message: one_line(&e.into_inner().to_string()),
                    }
                })?;
                store
                    .validate()
                    .map_err(|(key, message)| WeaselConfigError::Key {
                        file: owned_file.clone(),
                        key: format!("weasel.{key}"),
                        message,
                    })?;
                store
            }
        };
        crate::metrics::default_on(&mut table);
        // What is left is Stoat's; a re-rendered table is valid TOML.
        let rest = toml::to_string(&table).map_err(|e| WeaselConfigError::Syntax {
            file: owned_file.clone(),
            message: e.to_string(),
        })?;
        let mut server = Config::from_toml_str(&rest, file)?;
        // "Every key is optional": a file without Weasel's pipeline gets
        // the default one (Stoat's own defaults have no pipelines).
        if !server.http.pipelines.contains_key(crate::PIPELINE) {
            let defaults = Config::from_toml_str(DEFAULT_CONFIG, None)?;
            if let Some(p) = defaults.http.pipelines.get(crate::PIPELINE) {
                server
                    .http
                    .pipelines
                    .insert(crate::PIPELINE.to_owned(), p.clone());
            }
        }
        Ok(WeaselConfig {
            server,
            store,
            file: owned_file,
        })
    }

    /// Checks both parts (after command-line overrides).
    pub fn validate(&self) -> Result<(), WeaselConfigError> {
        self.server.validate()?;
        self.store
            .validate()
            .map_err(|(key, message)| WeaselConfigError::Key {
                file: self.file.clone(),
                key: format!("weasel.{key}"),
                message,
            })?;
        if !self.server.http.pipelines.contains_key(crate::PIPELINE) {
            return Err(WeaselConfigError::Key {
                file: self.file.clone(),
                key: format!("http.pipelines.{}", crate::PIPELINE),
                message: "Weasel needs this pipeline (commit and status run on it)".into(),
            });
        }
        Ok(())
    }
}

impl StoreConfig {
    /// The first rule broken: (key within the table, message).
    fn validate(&self) -> Result<(), (&'static str, String)> {
        let range = |key: &'static str, v: usize, lo: usize, hi: usize| {
            if v < lo || v > hi {
                Err((key, format!("must be from {lo} to {hi}, got {v}")))
            } else {
                Ok(())
            }
        };
        if self.data_dir.as_os_str().is_empty() {
            return Err(("data_dir", "must not be empty".into()));
        }
        range("max_batch", self.max_batch, 1, 65_536)?;
        range("status_window", self.status_window, 1, 100_000_000)?;
        range("watch_history", self.watch_history, 1, 10_000_000)?;
        range("watch_history_bytes", self.watch_history_bytes, 1, 1 << 40)?;
        range("watch_buffer_bytes", self.watch_buffer_bytes, 1, 1 << 40)?;
        range("max_list_bytes", self.max_list_bytes, 1, 1 << 40)?;
        range(
            "snapshot_log_percent",
            self.snapshot_log_percent as usize,
            1,
            100_000,
        )?;
        if self.max_disk_percent != 0 {
            range(
                "max_disk_percent",
                self.max_disk_percent as usize,
                150,
                100_000,
            )?;
        }
        range("max_key_bytes", self.max_key_bytes, 1, 65_536)?;
        range("max_value_bytes", self.max_value_bytes, 1, 1 << 30)?;
        range("max_operations", self.max_operations, 1, 1_000_000)?;
        Ok(())
    }
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

struct Origin<'a>(&'a Option<PathBuf>);

impl fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(file) => write!(f, "{}", file.display()),
            None => f.write_str("<built-in>"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid_and_durable() {
        let c = WeaselConfig::embedded().unwrap();
        assert!(c.store.fsync);
        assert_eq!(c.store, StoreConfig::default());
        assert_eq!(c.server.http.port, 8080);
        assert!(c.server.http.pipelines.contains_key(crate::PIPELINE));
        c.validate().unwrap();
    }

    #[test]
    fn a_partial_file_keeps_every_other_default() {
        let f = Path::new("partial.toml");
        let c = WeaselConfig::from_toml_str("[http]\nport = 9999\n", Some(f)).unwrap();
        c.validate().unwrap();
        assert_eq!(c.server.http.port, 9999);
        let d = WeaselConfig::embedded().unwrap();
        assert_eq!(
            c.server.http.pipelines[crate::PIPELINE],
            d.server.http.pipelines[crate::PIPELINE]
        );
        assert_eq!(c.store, StoreConfig::default());
        let c = WeaselConfig::from_toml_str("[weasel]\nfsync = false\n", Some(f)).unwrap();
        c.validate().unwrap();
        assert!(!c.store.fsync);
        assert_eq!(c.store.max_batch, StoreConfig::default().max_batch);
        // A later error (after command-line overrides) names the file read.
        let mut c = WeaselConfig::from_toml_str("", Some(f)).unwrap();
        c.store.max_batch = 0;
        let e = c.validate().unwrap_err();
        assert!(e.to_string().contains("partial.toml"), "{e}");
    }

    #[test]
    fn errors_name_key_and_file() {
        let f = Path::new("w.toml");
        let e = WeaselConfig::from_toml_str("[weasel]\nmax_batch = 0\n", Some(f)).unwrap_err();
        assert_eq!(e.key(), Some("weasel.max_batch"));
        assert!(e.to_string().contains("w.toml"), "{e}");
        let e = WeaselConfig::from_toml_str("[weasel]\nfsyncc = true\n", Some(f)).unwrap_err();
        assert!(e.to_string().contains("fsyncc"), "{e}");
        let e = WeaselConfig::from_toml_str("[weasel]\nfsync = 3\n", Some(f)).unwrap_err();
        assert_eq!(e.key(), Some("weasel.fsync"), "{e}");
        let e = WeaselConfig::from_toml_str("[http]\nport = \"x\"\n", Some(f)).unwrap_err();
        assert_eq!(e.key(), Some("http.port"), "{e}");
        assert!(e.to_string().contains("w.toml"), "{e}");
        let e = WeaselConfig::from_toml_str("[http\n", Some(f)).unwrap_err();
        assert!(e.to_string().contains("w.toml"), "{e}");
    }
}

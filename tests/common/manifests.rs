//! Deployment files (docker/, config/) as tests read them: paths under the repository, and the
//! metric names a dashboard, alert or adapter rule uses, checked against what shardis exports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use shardis::metrics::ALL_METRICS;

/// `rel` under the repository root.
pub fn path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The text of `rel` under the repository root.
pub fn read(rel: &str) -> String {
    std::fs::read_to_string(path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every `shardis_[a-z_]+` in `text`, with the `_bucket`/`_sum`/`_count` series suffixes removed.
pub fn metric_names(text: &str) -> BTreeSet<String> {
    const PREFIX: &str = "shardis_";
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find(PREFIX) {
        let tail = &rest[at..];
        let len = PREFIX.len()
            + tail[PREFIX.len()..]
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap_or(tail.len() - PREFIX.len());
        let name = &tail[..len];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        if len > PREFIX.len() {
            names.insert(base.to_owned());
        }
        rest = &tail[len..];
    }
    names
}

/// The metrics `text` (from `what`) names, each checked to be one that src/metrics.rs exports.
pub fn assert_known_metrics(what: &str, text: &str) -> BTreeSet<String> {
    let used = metric_names(text);
    for name in &used {
        assert!(
            ALL_METRICS.contains(&name.as_str()),
            "{what} uses {name}, which src/metrics.rs does not export"
        );
    }
    used
}

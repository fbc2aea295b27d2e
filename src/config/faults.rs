//! `[[faults]]`: errors and delays injected into a share of the commands, for testing how
//! applications cope (Envoy's redis_proxy fault injection). None by default; a reload changes
//! them. Acting on them is the session's; this file reads and checks the settings.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::PoolConfig;
use super::routes::{fraction, pool_named};
use super::validate::Problems;

/// Longest `delay_ms`: an hour.
pub const MAX_FAULT_DELAY_MS: i64 = 3_600_000;

/// What a fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// The command is not sent; the client gets `-ERR Fault injected`.
    Error,
    /// The command is sent; its reply is held for the delay before it reaches the client.
    Delay,
}

impl FaultKind {
    /// The name in the file and the `kind` label of `shardis_faults_injected_total`.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Error => "error",
            FaultKind::Delay => "delay",
        }
    }
}

/// One `[[faults]]` entry, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultConfig {
    pub kind: FaultKind,
    /// The share of the matching commands it applies to, from 0 to 1.
    pub fraction: f64,
    /// How long a delayed reply is held (zero for an error).
    pub delay: Duration,
    /// Lowercase command names it applies to (a container such as `config` covers its
    /// subcommands); empty: every command it can apply to.
    pub commands: Vec<String>,
    /// Only commands whose keys go to this pool (index into `pools`); `None`: any pool.
    pub pool: Option<usize>,
}

/// One `[[faults]]` entry as written.
#[derive(Deserialize, Debug, Default)]
pub(super) struct RawFault {
    pub kind: Option<String>,
    pub fraction: Option<f64>,
    pub delay_ms: Option<i64>,
    pub commands: Option<Vec<String>>,
    pub pool: Option<String>,
}

/// Validates every `[[faults]]` entry.
pub(super) fn faults(
    p: &mut Problems,
    raw: Vec<RawFault>,
    pools: &[PoolConfig],
) -> Vec<FaultConfig> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, f) in raw.into_iter().enumerate() {
        let key = format!("faults[{i}]");
        let kind = match f.kind.as_deref() {
            Some("error") => Some(FaultKind::Error),
            Some("delay") => Some(FaultKind::Delay),
            Some(other) => {
                p.add(
                    format_args!("{key}.kind"),
                    format_args!("unknown kind {other:?}; valid: error, delay"),
                );
                None
            }
            None => {
                p.add(
                    format_args!("{key}.kind"),
                    "is required: \"error\" or \"delay\"",
                );
                None
            }
        };
        let fraction = fraction(p, &format!("{key}.fraction"), f.fraction);
        let delay = match (kind, f.delay_ms) {
            (Some(FaultKind::Delay), None) => {
                p.add(
                    format_args!("{key}.delay_ms"),
                    "is required for kind = \"delay\"",
                );
                0
            }
            (Some(FaultKind::Delay), Some(_)) => p.int(
                &format!("{key}.delay_ms"),
                f.delay_ms,
                0,
                1,
                MAX_FAULT_DELAY_MS,
            ),
            (_, Some(_)) => {
                p.add(format_args!("{key}.delay_ms"), "only for kind = \"delay\"");
                0
            }
            (_, None) => 0,
        };
        let commands = commands(p, &key, f.commands.unwrap_or_default());
        let pool = match f.pool.as_deref() {
            None => None,
            Some(name) => pool_named(p, &format!("{key}.pool"), Some(name), pools),
        };
        if let Some(kind) = kind {
            out.push(FaultConfig {
                kind,
                fraction,
                delay: Duration::from_millis(delay as u64),
                commands,
                pool,
            });
        }
    }
    out
}

/// Command names, lowercased; each must be one Redis has.
fn commands(p: &mut Problems, key: &str, names: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for (i, name) in names.into_iter().enumerate() {
        let lower = name.to_ascii_lowercase();
        if crate::protocol::command::lookup(lower.as_bytes()).is_none() {
            p.add(
                format_args!("{key}.commands[{i}]"),
                format_args!("{name:?} is not a Redis command"),
            );
        } else if !out.contains(&lower) {
            out.push(lower);
        }
    }
    out
}

/// The `[fault N]` part of [`super::Config::describe`].
pub(super) fn describe(out: &mut String, faults: &[FaultConfig], pools: &[PoolConfig]) {
    for (i, f) in faults.iter().enumerate() {
        let _ = writeln!(out, "[fault {i}]");
        let _ = writeln!(out, "  kind                     {}", f.kind.name());
        let _ = writeln!(out, "  fraction                 {}", f.fraction);
        if f.kind == FaultKind::Delay {
            let _ = writeln!(out, "  delay                    {} ms", f.delay.as_millis());
        }
        let commands = if f.commands.is_empty() {
            "all".to_string()
        } else {
            f.commands.join(" ")
        };
        let _ = writeln!(out, "  commands                 {commands}");
        let pool = f
            .pool
            .and_then(|i| pools.get(i))
            .map_or("any", |p| p.name.as_str());
        let _ = writeln!(out, "  pool                     {pool}");
    }
}

/// `faults` as JSON, shaped like the file.
pub(super) fn to_json(faults: &[FaultConfig], pools: &[PoolConfig]) -> Value {
    let list = faults
        .iter()
        .map(|f| {
            let mut v = json!({
                "kind": f.kind.name(),
                "fraction": f.fraction,
                "commands": f.commands,
            });
            if let Some(map) = v.as_object_mut() {
                if f.kind == FaultKind::Delay {
                    map.insert("delay_ms".into(), (f.delay.as_millis() as u64).into());
                }
                if let Some(pool) = f.pool.and_then(|i| pools.get(i)) {
                    map.insert("pool".into(), pool.name.clone().into());
                }
            }
            v
        })
        .collect();
    Value::Array(list)
}

//! What the proxy asks the engine to run: EVAL, EVALSHA, FCALL and their `_RO`, read from the
//! command's arguments with Redis's errors.

use bytes::Bytes;

use super::Protocol;

/// One call to run: EVAL, EVALSHA (and their `_RO`) or FCALL (`_RO`).
#[derive(Debug, Clone)]
pub struct Invocation {
    pub what: What,
    pub keys: Vec<Bytes>,
    pub args: Vec<Bytes>,
    /// The `_RO` variant.
    pub read_only: bool,
    /// The calling client's protocol (how the script's return value is rendered).
    pub client: Protocol,
}

/// What an [`Invocation`] runs.
#[derive(Debug, Clone)]
pub enum What {
    Eval(Bytes),
    EvalSha(String),
    Fcall(String),
}

impl Invocation {
    /// Reads `EVAL script numkeys key... arg...` (any of EVAL, EVALSHA, EVAL_RO, EVALSHA_RO,
    /// FCALL, FCALL_RO; the name included) as Redis does. Errors are RESP error replies.
    pub fn parse(argv: &[Bytes], client: Protocol) -> Result<Invocation, Bytes> {
        let err = |m: &str| Bytes::from(format!("-{m}\r\n"));
        let name = argv
            .first()
            .map(|n| n.to_ascii_lowercase())
            .unwrap_or_default();
        if argv.len() < 3 {
            return Err(err(&format!(
                "ERR wrong number of arguments for '{}' command",
                String::from_utf8_lossy(&name)
            )));
        }
        let numkeys: i64 = std::str::from_utf8(&argv[2])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| err("ERR value is not an integer or out of range"))?;
        let rest = argv.len() as i64 - 3;
        if numkeys > rest {
            return Err(err(
                "ERR Number of keys can't be greater than number of args",
            ));
        }
        if numkeys < 0 {
            return Err(err("ERR Number of keys can't be negative"));
        }
        let split = 3 + numkeys as usize;
        let what = match name.as_slice() {
            b"eval" | b"eval_ro" => What::Eval(argv[1].clone()),
            b"evalsha" | b"evalsha_ro" => {
                What::EvalSha(String::from_utf8_lossy(&argv[1]).to_ascii_lowercase())
            }
            _ => What::Fcall(String::from_utf8_lossy(&argv[1]).into_owned()),
        };
        Ok(Invocation {
            what,
            keys: argv[3..split].to_vec(),
            args: argv[split..].to_vec(),
            read_only: name.ends_with(b"_ro"),
            client,
        })
    }
}

//! Where a command's keys are among its arguments, from the command table's key
//! specification: the first step of routing, and of the ACL key checks. Pure: no I/O.

use std::ops::Range;

use super::command::{Command, Keys};
use super::request::parse_int;

/// Why a command's keys cannot be found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeysError {
    /// Too few arguments for the command's key specification.
    #[error("wrong number of arguments")]
    WrongArity,
    /// The key count or the keys' layout is invalid (a bad numkeys, XREAD without STREAMS):
    /// Redis rejects it, and the proxy lets a backend say so in Redis's own words.
    #[error("malformed key arguments")]
    Malformed,
}

/// Positions of a command's keys among its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpan {
    /// A key before the counted ones (ZUNIONSTORE's destination).
    pub dest: Option<usize>,
    pub first: usize,
    /// Inclusive.
    pub last: usize,
    pub step: usize,
}

impl KeySpan {
    /// Key argument positions in order.
    pub fn positions(&self) -> impl Iterator<Item = usize> + use<> {
        self.dest
            .into_iter()
            .chain((self.first..=self.last).step_by(self.step))
    }
    /// Number of keys.
    pub fn count(&self) -> usize {
        self.dest.is_some() as usize + (self.last - self.first) / self.step + 1
    }
}

/// Where `cmd`'s keys are in this invocation; `None` for commands without keys.
pub fn key_span(
    cmd: &Command,
    frame: &[u8],
    args: &[Range<usize>],
) -> Result<Option<KeySpan>, KeysError> {
    let argc = args.len();
    match cmd.keys {
        Keys::None => Ok(None),
        Keys::Range { first, last, step } => {
            let first = first as usize;
            let last = if last < 0 {
                argc as i64 + last as i64
            } else {
                last as i64
            };
            if first >= argc || last < first as i64 || last as usize >= argc {
                return Err(KeysError::WrongArity);
            }
            let last = last as usize;
            // MSET-style pairs: the arguments after the keys must come in whole steps.
            if step > 1 && !(argc - first).is_multiple_of(step as usize) {
                return Err(KeysError::WrongArity);
            }
            Ok(Some(KeySpan {
                dest: None,
                first,
                last,
                step: step as usize,
            }))
        }
        Keys::Streams => {
            let at = args
                .iter()
                .position(|r| frame[r.clone()].eq_ignore_ascii_case(b"streams"))
                .ok_or(KeysError::Malformed)?;
            let rest = argc - at - 1;
            if rest == 0 || !rest.is_multiple_of(2) {
                return Err(KeysError::Malformed);
            }
            Ok(Some(KeySpan {
                dest: None,
                first: at + 1,
                last: at + rest / 2,
                step: 1,
            }))
        }
        Keys::Store { key, options } => {
            let (key, options) = (key as usize, options as usize);
            if key >= argc {
                return Err(KeysError::WrongArity);
            }
            Ok(Some(KeySpan {
                dest: store_destination(frame, args, options),
                first: key,
                last: key,
                step: 1,
            }))
        }
        Keys::Counted {
            count_at,
            dest,
            zero,
        } => {
            let count_at = count_at as usize;
            let numkeys = args
                .get(count_at)
                .and_then(|r| parse_int(&frame[r.clone()]))
                .ok_or(KeysError::Malformed)?;
            if numkeys == 0 && zero {
                return Ok(None);
            }
            if numkeys <= 0 {
                return Err(KeysError::Malformed);
            }
            let last = count_at + numkeys as usize;
            if last >= argc {
                return Err(KeysError::Malformed);
            }
            Ok(Some(KeySpan {
                dest: dest.then_some(1),
                first: count_at + 1,
                last,
                step: 1,
            }))
        }
    }
}

/// The position of the key after the last `STORE` or `STOREDIST` option (the one Redis
/// writes), reading options from `from` on and skipping the arguments of the others, so a
/// pattern or count spelled "store" is not taken for the option.
fn store_destination(frame: &[u8], args: &[Range<usize>], from: usize) -> Option<usize> {
    let mut dest = None;
    let mut i = from;
    while i < args.len() {
        let arg = &frame[args[i].clone()];
        let takes = if arg.eq_ignore_ascii_case(b"STORE") || arg.eq_ignore_ascii_case(b"STOREDIST")
        {
            if i + 1 < args.len() {
                dest = Some(i + 1);
            }
            1
        } else if arg.eq_ignore_ascii_case(b"LIMIT") {
            2
        } else if arg.eq_ignore_ascii_case(b"BY")
            || arg.eq_ignore_ascii_case(b"GET")
            || arg.eq_ignore_ascii_case(b"COUNT")
        {
            1
        } else {
            0
        };
        i += 1 + takes;
    }
    dest
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::command::lookup;
    use crate::protocol::request::RequestParser;

    fn span_of(input: &[u8]) -> Result<Option<KeySpan>, KeysError> {
        let mut p = RequestParser::new(1 << 20);
        p.parse(input).unwrap().unwrap();
        let (_, cmd) = lookup(&input[p.args()[0].clone()]).unwrap();
        key_span(cmd, input, p.args())
    }

    fn keys(parts: &[&str]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", parts.len());
        for p in parts {
            out += &format!("${}\r\n{p}\r\n", p.len());
        }
        out.into_bytes()
    }

    #[test]
    fn spans() {
        let s = span_of(&keys(&["GET", "a"])).unwrap().unwrap();
        assert_eq!(s.positions().collect::<Vec<_>>(), vec![1]);
        let s = span_of(&keys(&["MSET", "a", "1", "b", "2"]))
            .unwrap()
            .unwrap();
        assert_eq!(s.positions().collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(s.count(), 2);
        let s = span_of(&keys(&["EVAL", "return 1", "2", "k1", "k2", "arg"]))
            .unwrap()
            .unwrap();
        assert_eq!(s.positions().collect::<Vec<_>>(), vec![3, 4]);
        let s = span_of(&keys(&[
            "ZUNIONSTORE",
            "d",
            "2",
            "a",
            "b",
            "WEIGHTS",
            "1",
            "2",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(s.positions().collect::<Vec<_>>(), vec![1, 3, 4]);
        let s = span_of(&keys(&["BITOP", "AND", "d", "a", "b"]))
            .unwrap()
            .unwrap();
        assert_eq!(s.positions().collect::<Vec<_>>(), vec![2, 3, 4]);
        let s = span_of(&keys(&["BLPOP", "a", "b", "0"])).unwrap().unwrap();
        assert_eq!(s.positions().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(span_of(&keys(&["PING"])).unwrap(), None);
    }

    #[test]
    fn store_destinations() {
        let positions = |parts: &[&str]| {
            span_of(&keys(parts))
                .unwrap()
                .unwrap()
                .positions()
                .collect::<Vec<_>>()
        };
        assert_eq!(positions(&["SORT", "k"]), vec![1]);
        assert_eq!(positions(&["SORT", "k", "ALPHA", "STORE", "d"]), vec![4, 1]);
        assert_eq!(
            positions(&["sort", "k", "store", "d1", "STORE", "d2"]),
            vec![5, 1]
        );
        // Option arguments that spell STORE are patterns, counts or members, not options.
        assert_eq!(
            positions(&["SORT", "k", "BY", "store", "GET", "STORE"]),
            vec![1]
        );
        assert_eq!(
            positions(&[
                "SORT", "k", "LIMIT", "0", "10", "GET", "store", "STORE", "d"
            ]),
            vec![8, 1]
        );
        assert_eq!(positions(&["SORT", "k", "STORE"]), vec![1]);
        assert_eq!(
            positions(&[
                "GEORADIUS",
                "k",
                "15",
                "37",
                "200",
                "km",
                "COUNT",
                "5",
                "STORE",
                "d"
            ]),
            vec![9, 1]
        );
        assert_eq!(
            positions(&[
                "GEORADIUSBYMEMBER",
                "k",
                "STORE",
                "200",
                "km",
                "STOREDIST",
                "d"
            ]),
            vec![6, 1]
        );
        assert_eq!(
            positions(&["GEORADIUSBYMEMBER", "k", "STORE", "200", "km"]),
            vec![1]
        );
    }

    #[test]
    fn span_errors() {
        assert_eq!(
            span_of(&keys(&["MSET", "a", "1", "b"])),
            Err(KeysError::WrongArity)
        );
        assert_eq!(span_of(&keys(&["EVAL", "s", "0"])), Ok(None));
        for bad in [
            &["EVAL", "s", "x", "k"][..],
            &["EVAL", "s", "-1", "k"],
            &["EVAL", "s", "3", "k"],
            &["LMPOP", "0", "LEFT"],
            &["XREAD", "COUNT", "1", "s", "0"],
            &["XREAD", "STREAMS", "s", "t", "0"],
        ] {
            assert_eq!(span_of(&keys(bad)), Err(KeysError::Malformed), "{bad:?}");
        }
        let s = span_of(&keys(&[
            "XREAD", "BLOCK", "0", "STREAMS", "a", "b", "$", "$",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(s.positions().collect::<Vec<_>>(), vec![4, 5]);
    }
}

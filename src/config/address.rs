//! Backend addresses: `host:port` or `[v6]:port`, where host may be a DNS name resolved at
//! connect time.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

/// A backend address. `host` is an IPv4 address, an IPv6 address (stored without brackets) or
/// a DNS name; `port` is never 0.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Address {
    /// Host name or IP address, without brackets.
    pub host: String,
    /// TCP port, 1..=65535.
    pub port: u16,
}

/// Why a string is not a valid [`Address`].
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum AddressError {
    /// No `:port` suffix.
    #[error("expected HOST:PORT or [IPV6]:PORT")]
    MissingPort,
    /// The port is not a number in 1..=65535.
    #[error("port {0:?} is not a number from 1 to 65535")]
    BadPort(String),
    /// The host part is empty or has characters a host name cannot have.
    #[error("host {0:?} is not an IP address or a DNS name")]
    BadHost(String),
}

impl Address {
    /// The same address with the host lower-cased, for duplicate detection.
    pub(super) fn normalized(&self) -> (String, u16) {
        (self.host.to_ascii_lowercase(), self.port)
    }
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Address, AddressError> {
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or(AddressError::MissingPort)?;
            let port = after.strip_prefix(':').ok_or(AddressError::MissingPort)?;
            if host.parse::<Ipv6Addr>().is_err() {
                return Err(AddressError::BadHost(host.to_string()));
            }
            (host, port)
        } else {
            let (host, port) = s.rsplit_once(':').ok_or(AddressError::MissingPort)?;
            if !is_host_name(host) {
                // Covers an unbracketed IPv6 address too, which is ambiguous with the port.
                return Err(AddressError::BadHost(host.to_string()));
            }
            (host, port)
        };
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => p,
            _ => return Err(AddressError::BadPort(port.to_string())),
        };
        Ok(Address {
            host: host.to_string(),
            port,
        })
    }
}

/// An IPv4 address or a DNS name: dot-separated labels of letters, digits, `-` and `_`.
fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl fmt::Display for Address {
    /// `host:port`, with brackets around an IPv6 host so the result parses back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Result<Address, AddressError> {
        s.parse()
    }

    #[test]
    fn parses_ipv4_names_and_ipv6() {
        let a = addr("127.0.0.1:7001").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("127.0.0.1", 7001));
        assert_eq!(a.to_string(), "127.0.0.1:7001");
        let a = addr("redis-1.cache.svc.cluster.local:6379").unwrap();
        assert_eq!(a.host, "redis-1.cache.svc.cluster.local");
        let a = addr("[::1]:6379").unwrap();
        assert_eq!(a.host, "::1");
        assert_eq!(a.to_string(), "[::1]:6379");
        assert_eq!(addr("localhost:1").unwrap().port, 1);
    }

    #[test]
    fn rejects_bad_addresses() {
        assert_eq!(addr("127.0.0.1"), Err(AddressError::MissingPort));
        assert_eq!(addr("host:0"), Err(AddressError::BadPort("0".into())));
        assert_eq!(
            addr("host:65536"),
            Err(AddressError::BadPort("65536".into()))
        );
        assert_eq!(addr("host:+5"), Err(AddressError::BadPort("+5".into())));
        assert_eq!(addr("host:"), Err(AddressError::BadPort("".into())));
        assert_eq!(addr(":6379"), Err(AddressError::BadHost("".into())));
        assert_eq!(addr("::1:6379"), Err(AddressError::BadHost("::1".into())));
        assert_eq!(
            addr("bad host:1"),
            Err(AddressError::BadHost("bad host".into()))
        );
        assert_eq!(addr("a..b:1"), Err(AddressError::BadHost("a..b".into())));
        assert_eq!(addr("[zz]:1"), Err(AddressError::BadHost("zz".into())));
        assert_eq!(addr("[::1]6379"), Err(AddressError::MissingPort));
    }
}

//! The `/admin` endpoints: reload, the live configuration and the backends, as JSON, through
//! [`Control`]; and who may use the ones that change the proxy.

use std::net::SocketAddr;

use serde_json::{Value, json};

use super::Control;
use super::http::Response;

/// True when a request that changes the proxy may be served: always on a loopback listener,
/// elsewhere only with `admin.allow_mutations = true` in `config` (as [`Control::config`]
/// renders it). Anything else, an absent or non-boolean flag included, refuses.
pub fn mutations_allowed(config: &Value, listener: Option<SocketAddr>) -> bool {
    let loopback = listener.is_some_and(|a| a.ip().to_canonical().is_loopback());
    loopback || config["admin"]["allow_mutations"] == Value::Bool(true)
}

/// 403 for a mutating request on a listener that does not allow them.
pub fn refused(listener: Option<SocketAddr>) -> Response {
    let on = listener.map_or_else(|| "?".to_owned(), |a| a.to_string());
    Response::json(
        403,
        &json!({
            "error": format!(
                "requests that change the proxy are refused on the admin listener {on}: it is \
                 not loopback and [admin] allow_mutations is false"
            ),
        }),
    )
}

/// `POST /admin/reload`: 200 `{"reloaded": true, "changes": ...}`, or 422
/// `{"reloaded": false, "errors": [...]}` listing every problem.
pub async fn reload(control: &dyn Control) -> Response {
    match control.reload().await {
        Ok(changes) => Response::json(200, &json!({ "reloaded": true, "changes": changes })),
        Err(errors) => Response::json(422, &json!({ "reloaded": false, "errors": errors })),
    }
}

/// `GET /admin/config`: the live configuration. Masked here too, so a [`Control`] that forgot
/// to cannot leak a secret.
pub fn config(control: &dyn Control) -> Response {
    let mut config = control.config();
    crate::config::mask_secrets(&mut config);
    Response::json(200, &config)
}

/// `GET /admin/backends`: the backends.
pub fn backends(control: &dyn Control) -> Response {
    Response::json(200, &control.backends())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn mutations_need_loopback_or_the_flag() {
        let off = json!({ "admin": { "allow_mutations": false } });
        let on = json!({ "admin": { "allow_mutations": true } });
        for loopback in [
            "127.0.0.1:9121",
            "127.0.0.2:1",
            "[::1]:9121",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert!(mutations_allowed(&off, addr(loopback)), "{loopback}");
        }
        for public in ["0.0.0.0:9121", "192.0.2.2:9121", "[::]:9121", "[fd00::2]:1"] {
            assert!(!mutations_allowed(&off, addr(public)), "{public}");
            assert!(mutations_allowed(&on, addr(public)), "{public}");
        }
        // Fails closed: no listener address, no flag, or a flag that is not `true`.
        assert!(!mutations_allowed(&off, None));
        assert!(mutations_allowed(&on, None));
        assert!(!mutations_allowed(&json!({}), addr("0.0.0.0:1")));
        let text = json!({ "admin": { "allow_mutations": "true" } });
        assert!(!mutations_allowed(&text, addr("0.0.0.0:1")));
    }

    #[test]
    fn refusal_names_the_listener_and_the_setting() {
        let r = refused(addr("192.0.2.2:9121"));
        assert_eq!(r.status, 403);
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        let e = v["error"].as_str().unwrap();
        assert!(
            e.contains("192.0.2.2:9121") && e.contains("allow_mutations"),
            "{e}"
        );
    }
}

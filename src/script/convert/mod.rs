//! Redis's conversion rules between RESP replies and Lua values, both ways, as Redis 7.0's
//! `script_lua.c` applies them.

mod to_lua;
mod to_resp;

pub use to_lua::{BadReply, push_reply};
pub use to_resp::{Render, error_message, error_position, put_error, render};

#[cfg(test)]
mod tests {
    use super::to_resp::c_ll;

    #[test]
    fn doubles_convert_as_c() {
        assert_eq!(c_ll(1.9), 1);
        assert_eq!(c_ll(-1.9), -1);
        assert_eq!(c_ll(f64::NAN), i64::MIN);
        assert_eq!(c_ll(1e300), i64::MIN);
    }
}

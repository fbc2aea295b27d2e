//! RESP framing and the command table.

pub mod command;

//! The monitor's control socket protocol (`SOCK_SEQPACKET`, one message per
//! packet). Each packet starts with a tag byte:
//!
//! | tag | direction | payload |
//! |---|---|---|
//! | 0 | both | JSON [`Request`] (client→monitor) or [`Response`] (monitor→client) |
//! | 1 | client→monitor | stdin bytes (attached clients) |
//! | 2 | monitor→client | stdout bytes |
//! | 3 | monitor→client | stderr bytes |
//! | 4 | client→monitor | close the container's stdin |

use serde::{Deserialize, Serialize};

use crate::state::ExitRecord;

pub const TAG_CONTROL: u8 = 0;
pub const TAG_STDIN: u8 = 1;
pub const TAG_STDOUT: u8 = 2;
pub const TAG_STDERR: u8 = 3;
pub const TAG_STDIN_CLOSE: u8 = 4;

/// Largest packet either side sends.
pub const MAX_PACKET: usize = 32 * 1024;

/// Requests to the monitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Release the init (created → running).
    Start,
    /// Reply with the exit record once every process is gone.
    Wait,
    /// Stream stdout/stderr to this connection, accept stdin from it.
    Attach,
    /// Resize the terminal.
    Resize { rows: u16, cols: u16 },
    /// Reopen the CRI log file (after rotation).
    ReopenLog,
}

/// Replies from the monitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Ok,
    Error(String),
    Exited(ExitRecord),
}

/// Encodes a control message.
pub fn control<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut v = vec![TAG_CONTROL];
    serde_json::to_writer(&mut v, msg).expect("protocol messages serialize");
    v
}

//! Entry points for the fuzz targets in `fuzz/` (not an API: nothing else may use them).

use std::cell::RefCell;
use std::time::Duration;

use crate::caps::Capabilities;
use crate::conn::Conn;
use crate::error::Step;
use crate::reply::ServerReply;

thread_local! {
    static RUNTIME: RefCell<Option<tokio::runtime::Runtime>> = const { RefCell::new(None) };
}

/// Reads replies from `input` exactly as the client reads a server's bytes (bounded lines,
/// multi-line replies, enhanced codes), until the input ends or a reply is refused. Each
/// reply's lines are also parsed as an EHLO capability list.
pub fn read_replies(input: &[u8]) -> Vec<Result<(ServerReply, Capabilities), String>> {
    RUNTIME.with(|rt| {
        let mut rt = rt.borrow_mut();
        let rt = rt.get_or_insert_with(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("a current-thread runtime")
        });
        rt.block_on(async {
            let io = tokio::io::join(std::io::Cursor::new(input.to_vec()), tokio::io::sink());
            let mut conn = Conn::new(Box::new(io));
            let mut out = Vec::new();
            loop {
                match conn.reply(Step::Hello, Duration::from_secs(10)).await {
                    Ok(raw) => out.push(Ok((raw.to_reply(), Capabilities::parse(&raw.lines)))),
                    Err(e) => {
                        out.push(Err(e.to_string()));
                        break;
                    }
                }
            }
            out
        })
    })
}

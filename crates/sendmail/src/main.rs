//! `sendmail` (and `mailq`, by the name it is called with): hands a message from a local
//! program to smtpd over its control socket.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let code = postern_sendmail::main_with(&args);
    ExitCode::from(code)
}

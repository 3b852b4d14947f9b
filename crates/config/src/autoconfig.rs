//! `[autoconfig]`: the mail-client autoconfiguration listener.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// `[autoconfig]`: a small HTTP listener in smtpd serving Thunderbird autoconfig
/// (`/mail/config-v1.1.xml`) and Outlook autodiscover (POX) for our domains.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Autoconfig {
    /// Plain-HTTP listeners (usually `0.0.0.0:80` behind or instead of a web server).
    /// Empty (the default) = off.
    #[serde(default)]
    pub listen: Vec<SocketAddr>,
}

//! End-to-end tests: the real binaries in temp dirs (see the `postern_e2e` harness).
//! One test binary; a module per area.

mod accept_limits;
mod auth_results;
mod authd;
mod authd_cache;
mod autoconfig;
mod cluster_routing;
mod dane;
mod dkim_origin;
mod dns_lossy;
mod dovecot;
mod hardening_auth;
mod hardening_imap;
mod hardening_smtpd;
mod harness;
mod imap_clients;
mod imap_conformance_list;
mod imap_conformance_sort;
mod imap_metadata;
mod imap_transport;
mod imapd;
mod inbound;
mod interop_smtpd;
mod lmtp;
mod managesieve;
mod metrics;
mod migrate;
mod outbound;
mod pop3;
mod postfix_authd;
mod queue_records;
mod quick_recovery;
mod rfc_duties;
mod sieve_editheader;
mod smtpd;
mod trace;

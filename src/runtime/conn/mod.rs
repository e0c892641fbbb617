//! The HTTP/1.1 connection core.
//!
//! - `client`: the session types every handler shares (`Client`, `Next`, `TunnelJob`), the
//!   error responders and the access-log record.
//! - `dispatch`: read a head, route it (`plan`), run the handler, repeat (keep-alive).
//! - `accept`: accept loops, PROXY protocol header, TLS handshake, protocol choice.
//! - `access`: the access-log writer (buffered, per core).
//! - `perip`: the per-IP limit tables of this core.
//! - `errlog`: the rate limiter of client-caused error-log lines (counted always, logged a few
//!   lines a second per kind).
//! - `chosen`: a request's route style and timeouts (what `plan` chose besides the action).
//! - `gate`: a route's access checks (CIDR lists, `requests_per_ip`, Basic auth with its
//!   per-core cache of bcrypt verdicts).
//!
//! `client`, `access`, `chosen`, `gate`, `perip` and `errlog` import only `net`, `backend`,
//! `shard` and `errlog`; handlers import
//! them. `dispatch` and `accept` import the handlers; no handler imports them back.

pub(crate) mod accept;
pub(crate) mod access;
pub(crate) mod chosen;
pub(crate) mod client;
pub(crate) mod dispatch;
pub(crate) mod errlog;
pub(crate) mod gate;
pub(crate) mod perip;

//! The byte-stream routes, which forward a connection to a backend without reading HTTP:
//! `[[tcp_route]]` (one per `mode = "tcp"` listener) and `[[tls_passthrough]]` (by SNI, on TLS
//! listeners).

use super::problems::Problems;
use super::spanned::{list, tables, Val};
use super::values::domain;
use super::xref::{backend_ref, listener_ref, Refs};
use crate::config::types::{Listener, ListenerMode, Passthrough, TcpRoute};

/// `[[tcp_route]] listener = "...", backend = "..."`: one per `mode = "tcp"` listener.
pub(super) fn tcp_routes(
    v: &Val<'_>,
    listeners: &[Listener],
    refs: &Refs<'_>,
    p: &mut Problems,
) -> Vec<TcpRoute> {
    let mut out: Vec<TcpRoute> = Vec::new();
    for mut s in tables(v, "[[tcp_route]]", p) {
        let at = s.at;
        let listener = listener_ref(&mut s, listeners, p, |l| {
            (l.mode != ListenerMode::Tcp).then_some("needs mode = \"tcp\" for a [[tcp_route]]")
        });
        let backend = backend_ref(&mut s, refs, p);
        s.finish(p);
        let (Some(listener), Some(backend)) = (listener, backend) else {
            continue;
        };
        if out.iter().any(|r| r.listener == listener) {
            p.add(
                at,
                format!(
                    "listener {:?} has a [[tcp_route]] already",
                    listeners[listener].name
                ),
            );
            continue;
        }
        out.push(TcpRoute { listener, backend });
    }
    out
}

/// `[[tls_passthrough]] listener = "...", sni = [...], backend = "..."` on TLS listeners.
pub(super) fn passthroughs(
    v: &Val<'_>,
    listeners: &[Listener],
    refs: &Refs<'_>,
    p: &mut Problems,
) -> Vec<Passthrough> {
    let mut out = Vec::new();
    for mut s in tables(v, "[[tls_passthrough]]", p) {
        let listener = listener_ref(&mut s, listeners, p, |l| {
            (!l.tls).then_some("needs tls = true for [[tls_passthrough]]")
        });
        let sni = s.req("sni", p, |v, what, p| list(v, what, true, p, domain));
        let backend = backend_ref(&mut s, refs, p);
        s.finish(p);
        if let (Some(listener), Some(sni), Some(backend)) = (listener, sni, backend) {
            out.push(Passthrough {
                listener,
                sni,
                backend,
            });
        }
    }
    out
}

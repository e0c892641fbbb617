//! The CONNECT forward proxy's tunnel: resolve the target off the core (glommio's blocking
//! thread, `getaddrinfo`), keep only the addresses the rules allow (`crate::policy::connect::usable`),
//! connect (`504` when `timeouts.connect` expired, `502` when refused or unreachable), answer
//! `200 Connection Established`, then move bytes both ways.

use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;

use futures_lite::io::AsyncWriteExt;
use tracing::{debug, info};

use crate::policy::connect::{usable, Rule, Target};
use crate::runtime::backend::upstream::{connect_tcp, ConnectError};
use crate::runtime::conn::client::{respond_error, Client, Next};
use crate::runtime::net::idle;
use crate::runtime::net::tunnel::Tunnel;
use crate::runtime::shard::Shard;

pub async fn run(shard: &Rc<Shard>, c: &mut Client, target: Target, rules: &[Rule]) -> Next {
    let limit = shard.config.timeouts.connect;
    let addrs = match target {
        Target::Addr(a) => vec![a],
        Target::Name(host, port) => {
            let lookup = glommio::executor().spawn_blocking(move || {
                (host.as_str(), port)
                    .to_socket_addrs()
                    .map(|a| a.collect::<Vec<SocketAddr>>())
            });
            let timer = async {
                glommio::timer::sleep(limit).await;
                Err(std::io::ErrorKind::TimedOut.into())
            };
            match futures_lite::future::or(lookup, timer).await {
                Ok(resolved) => {
                    let ok = usable(rules, &resolved);
                    if ok.is_empty() {
                        info!(core = shard.id, peer = %c.peer, resolved = ?resolved, "CONNECT: the name resolves only into denied ranges: 403");
                        return respond_error(c, 403, true).await;
                    }
                    ok
                }
                Err(e) => {
                    info!(core = shard.id, peer = %c.peer, error = %e, "CONNECT: name not resolved: 502");
                    return respond_error(c, 502, true).await;
                }
            }
        }
    };
    // 504 when an address timed out, else 502 (refused, unreachable).
    let mut upstream = None;
    let mut status = 502;
    for addr in &addrs {
        match connect_tcp(*addr, limit).await {
            Ok(s) => {
                upstream = Some(s);
                break;
            }
            Err(e) => {
                debug!(core = shard.id, target = %addr, error = %e, "CONNECT: connect failed");
                if matches!(e, ConnectError::TimedOut) {
                    status = 504;
                }
            }
        }
    }
    let Some(mut upstream) = upstream else {
        info!(core = shard.id, peer = %c.peer, status, "CONNECT: no target address answered");
        return respond_error(c, status, true).await;
    };
    c.status = 200;
    if c.stream
        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .await
        .is_err()
    {
        return Next::Close;
    }
    // Bytes the client sent after its CONNECT head (a ClientHello, say) go first.
    if !c.rb.is_empty() && upstream.write_all(c.rb.data()).await.is_err() {
        return Next::Close;
    }
    c.rb.consume(c.rb.len());
    c.rb.release();
    let watch = idle::watch(shard.config.timeouts.tunnel_idle);
    let result = Tunnel::raw(&mut c.stream, &mut upstream, &watch).await;
    debug!(core = shard.id, peer = %c.peer, result = ?result.err(), "CONNECT tunnel ended");
    let _ = upstream.close().await;
    Next::Close
}

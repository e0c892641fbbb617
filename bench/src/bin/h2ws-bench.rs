//! RFC 8441 WebSocket echo load over HTTP/2 (h2c, prior knowledge): `--streams` WebSockets
//! (extended CONNECT, `:protocol websocket`) spread over `--conns` HTTP/2 connections, each a
//! closed loop of one `--size`-byte binary message and its echo, like `ringway-bench echo` does
//! over HTTP/1.1. Prints one JSON line: messages/s and latency percentiles over the measured
//! interval, and how many streams failed.
//!
//!   h2ws-bench --url http://127.0.0.1:8080/ws --conns 1 --streams 64 --size 64 \
//!              --duration 10s --warmup 1s [--on-measure CMD]

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use http::{Method, Request};

#[derive(Parser, Debug)]
#[command(name = "h2ws-bench")]
struct Args {
    /// http://HOST:PORT/PATH of a WebSocket route on an h2c (prior knowledge) listener.
    #[arg(long)]
    url: String,
    /// HTTP/2 connections.
    #[arg(long, default_value_t = 1)]
    conns: usize,
    /// WebSocket streams in all (spread over the connections).
    #[arg(long, default_value_t = 64)]
    streams: usize,
    /// Message payload bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    #[arg(long, default_value = "10s", value_parser = ringway_bench::parse_duration)]
    duration: Duration,
    #[arg(long, default_value = "1s", value_parser = ringway_bench::parse_duration)]
    warmup: Duration,
    /// Run this (sh -c) right before and right after the measured interval, with
    /// RINGWAY_BENCH_PHASE=start / end (as ringway-bench does).
    #[arg(long)]
    on_measure: Option<String>,
}

#[derive(Default)]
struct Stats {
    measuring: bool,
    messages: u64,
    bad: u64,
    failed: u64,
}

fn masked_frame(payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0x82];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// The length of the first complete unmasked frame's payload in `buf` and its total size.
fn frame_len(buf: &[u8]) -> Option<(usize, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let (len, hl) = match buf[1] & 0x7F {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().ok()?) as usize, 10),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    (buf.len() >= hl + len).then_some((len, hl + len))
}

async fn stream_loop(
    mut client: h2::client::SendRequest<Bytes>,
    url: http::Uri,
    size: usize,
    stats: Rc<RefCell<Stats>>,
    hist: Rc<RefCell<Histogram<u64>>>,
    running: Rc<std::cell::Cell<bool>>,
) -> Result<(), String> {
    let mut req = Request::builder()
        .method(Method::CONNECT)
        .uri(url)
        .header("sec-websocket-version", "13")
        .body(())
        .map_err(|e| e.to_string())?;
    req.extensions_mut()
        .insert(h2::ext::Protocol::from_static("websocket"));
    client = client.ready().await.map_err(|e| e.to_string())?;
    let (resp, mut send) = client.send_request(req, false).map_err(|e| e.to_string())?;
    let resp = resp.await.map_err(|e| e.to_string())?;
    if resp.status() != 200 {
        return Err(format!("status {}", resp.status()));
    }
    let mut recv = resp.into_body();
    let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let frame = Bytes::from(masked_frame(&payload, [1, 2, 3, 4]));
    let mut buf: Vec<u8> = Vec::new();
    while running.get() {
        let t0 = Instant::now();
        send.reserve_capacity(frame.len());
        send.send_data(frame.clone(), false)
            .map_err(|e| e.to_string())?;
        let (len, total) = loop {
            if let Some(f) = frame_len(&buf) {
                break f;
            }
            let chunk = recv
                .data()
                .await
                .ok_or("stream ended")?
                .map_err(|e| e.to_string())?;
            let _ = recv.flow_control().release_capacity(chunk.len());
            buf.extend_from_slice(&chunk);
        };
        buf.drain(..total);
        let mut s = stats.borrow_mut();
        if len != size {
            s.bad += 1;
        }
        if s.measuring {
            s.messages += 1;
            let _ = hist
                .borrow_mut()
                .record((t0.elapsed().as_nanos() as u64).max(1));
        }
    }
    Ok(())
}

fn on_measure(cmd: &Option<String>, phase: &str) {
    if let Some(c) = cmd {
        let _ = std::process::Command::new("sh")
            .arg("-c")
            .arg(c)
            .env("RINGWAY_BENCH_PHASE", phase)
            .status();
    }
}

fn main() {
    let args = Args::parse();
    let url: http::Uri = args.url.parse().expect("--url");
    let authority = url.authority().expect("--url needs host:port").to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let local = tokio::task::LocalSet::new();
    let stats = Rc::new(RefCell::new(Stats::default()));
    let hist = Rc::new(RefCell::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram"),
    ));
    let running = Rc::new(std::cell::Cell::new(true));
    let cpu0 = ringway_bench::sys::cpu_seconds();
    let elapsed = local.block_on(&rt, async {
        let mut clients = Vec::new();
        for _ in 0..args.conns.max(1) {
            let tcp = tokio::net::TcpStream::connect(&authority)
                .await
                .expect("connect");
            let _ = tcp.set_nodelay(true);
            let (client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
            tokio::task::spawn_local(async move {
                let _ = conn.await;
            });
            let mut client = client.ready().await.expect("ready");
            let t0 = Instant::now();
            while !client.is_extended_connect_protocol_enabled() {
                assert!(
                    t0.elapsed() < Duration::from_secs(5),
                    "the server does not enable extended CONNECT"
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
                client = client.ready().await.expect("ready");
            }
            clients.push(client);
        }
        let mut tasks = Vec::new();
        for i in 0..args.streams {
            let client = clients[i % clients.len()].clone();
            let (stats, hist, running) = (stats.clone(), hist.clone(), running.clone());
            let url = url.clone();
            let size = args.size;
            tasks.push(tokio::task::spawn_local(async move {
                if let Err(e) = stream_loop(client, url, size, stats.clone(), hist, running).await {
                    eprintln!("h2ws-bench: stream {i}: {e}");
                    stats.borrow_mut().failed += 1;
                }
            }));
        }
        tokio::time::sleep(args.warmup).await;
        on_measure(&args.on_measure, "start");
        stats.borrow_mut().measuring = true;
        let t0 = Instant::now();
        tokio::time::sleep(args.duration).await;
        stats.borrow_mut().measuring = false;
        let elapsed = t0.elapsed();
        on_measure(&args.on_measure, "end");
        running.set(false);
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        elapsed
    });
    let s = stats.borrow();
    let h = hist.borrow();
    let us = |v: u64| v as f64 / 1000.0;
    println!(
        "{{\"mode\":\"h2ws-echo\",\"conns\":{},\"streams\":{},\"size\":{},\"duration_s\":{:.3},\"messages\":{},\"msgs_per_s\":{:.1},\"p50_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"failed\":{},\"bad_echo\":{},\"gen_cpu_s\":{:.3}}}",
        args.conns,
        args.streams,
        args.size,
        elapsed.as_secs_f64(),
        s.messages,
        s.messages as f64 / elapsed.as_secs_f64(),
        us(h.value_at_quantile(0.5)),
        us(h.value_at_quantile(0.99)),
        us(h.value_at_quantile(0.999)),
        s.failed,
        s.bad,
        ringway_bench::sys::cpu_seconds() - cpu0
    );
}

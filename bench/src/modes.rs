//! `ringway-bench`: the event loop (poll, timeouts, opening every connection) and the four
//! modes (echo and bulk traffic, idle hold, churn), each filling the report.

use std::io;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mio::Events;

use ringway_bench::sys;

use crate::cli::{Args, Mode};
use crate::report::Report;
use crate::{Gen, Pace, St};

/// The --rate timer's token (connections use their index).
const PACE_TOKEN: mio::Token = mio::Token(usize::MAX);

/// Runs `cmd` (if any) through sh -c with RINGWAY_BENCH_PHASE=phase and waits for it.
fn hook(cmd: &Option<String>, phase: &str) {
    let Some(cmd) = cmd else { return };
    let r = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("RINGWAY_BENCH_PHASE", phase)
        .stdin(Stdio::null())
        .stdout(io::stderr())
        .status();
    match r {
        Ok(st) if st.success() => {}
        Ok(st) => eprintln!("ringway-bench: --on-measure ({phase}) exited with {st}"),
        Err(e) => eprintln!("ringway-bench: --on-measure ({phase}): {e}"),
    }
}

impl Gen {
    // ---- loop -----------------------------------------------------------------------------

    fn poll_once(&mut self, events: &mut Events, timeout: Duration) {
        if sys::abort_requested() {
            eprintln!("ringway-bench: interrupted twice, exiting");
            std::process::exit(130);
        }
        if let Err(e) = self.poll.poll(events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                eprintln!("ringway-bench: epoll_wait: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
            return;
        }
        for ev in events.iter() {
            if ev.token() == PACE_TOKEN {
                if let Some(p) = &self.pace {
                    sys::drain_timer(&p.timer);
                }
                continue;
            }
            self.handle(ev.token().0, ev);
        }
        self.pace();
        if self.last_sweep.elapsed() >= Duration::from_millis(100) {
            self.sweep();
        }
    }

    /// Timeouts: handshakes, echoes, churn cycles. Churn also reopens failed slots.
    fn sweep(&mut self) {
        let now = Instant::now();
        self.last_sweep = now;
        for i in 0..self.conns.len() {
            let c = &self.conns[i];
            match c.st {
                St::Connecting | St::Handshaking if now - c.since > self.timeout => {
                    self.close(i, Some("handshake: timeout".into()));
                }
                St::Open if c.in_flight > 0 && now - c.sent_at > self.timeout => {
                    self.close(i, Some("echo: timeout".into()));
                }
                St::Closing | St::Draining if now - c.since > self.timeout => {
                    self.close(i, Some("close: timeout".into()));
                }
                _ => {}
            }
            if self.mode == Mode::Churn && self.running && self.conns[i].st == St::Failed {
                self.open(i);
            }
        }
    }

    /// Opens every connection, at most `max_pending` in progress at once.
    fn connect_all(&mut self, events: &mut Events, max_pending: usize, progress: bool) {
        let n = self.conns.len();
        let mut next = 0;
        let mut last_print = Instant::now();
        while (next < n || self.pending > 0) && !sys::stop_requested() {
            while next < n && self.pending < max_pending.max(1) {
                self.open(next);
                next += 1;
            }
            self.poll_once(events, Duration::from_millis(20));
            if progress && last_print.elapsed() >= Duration::from_secs(2) {
                last_print = Instant::now();
                eprintln!(
                    "ringway-bench: {} open, {} failed, {} in progress",
                    self.hs_ok, self.hs_failed, self.pending
                );
            }
        }
    }

    fn run_for(&mut self, events: &mut Events, d: Duration) -> Duration {
        let start = Instant::now();
        let end = start + d;
        loop {
            let now = Instant::now();
            if now >= end || sys::stop_requested() {
                return now - start;
            }
            self.poll_once(events, (end - now).min(Duration::from_millis(50)));
        }
    }

    fn open_count(&self) -> usize {
        self.conns.iter().filter(|c| c.st == St::Open).count()
    }

    // ---- modes ----------------------------------------------------------------------------

    pub(crate) fn run_traffic(&mut self, args: &Args, rep: &mut Report) {
        let mut events = Events::with_capacity(1024);
        self.connect_all(&mut events, args.max_pending, false);
        self.running = true;
        let per_conn = if self.mode == Mode::Bulk {
            args.window.max(1)
        } else {
            1
        };
        if let Some(rate) = args.rate {
            // Wake often enough that each tick sends about one message, but at most every
            // 100 µs and at least every 1 ms.
            let tick = Duration::from_secs_f64(1.0 / rate)
                .clamp(Duration::from_micros(100), Duration::from_millis(1));
            let timer = match sys::interval_timer(tick) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("ringway-bench: timerfd: {e}");
                    std::process::exit(2);
                }
            };
            use std::os::fd::AsRawFd;
            let fd = timer.as_raw_fd();
            if let Err(e) = self.poll.registry().register(
                &mut mio::unix::SourceFd(&fd),
                PACE_TOKEN,
                mio::Interest::READABLE,
            ) {
                eprintln!("ringway-bench: timerfd: {e}");
                std::process::exit(2);
            }
            self.pace = Some(Pace {
                rate,
                start: Instant::now(),
                next: 0,
                skipped: 0,
                timer,
            });
        }
        for i in 0..self.conns.len() {
            if self.pace.is_some() {
                break;
            }
            if self.conns[i].st == St::Open {
                for _ in 0..per_conn {
                    self.send_msg(i);
                }
                self.flush(i);
            }
        }
        self.run_for(&mut events, args.warmup);
        hook(&args.on_measure, "start");
        self.measuring = true;
        self.hist.reset();
        let skipped0 = self.pace.as_ref().map_or(0, |p| p.skipped);
        let elapsed = self.run_for(&mut events, args.duration).as_secs_f64();
        self.measuring = false;
        hook(&args.on_measure, "end");
        self.running = false;
        if let Some(p) = self.pace.take() {
            rep.f("rate", p.rate, 1);
            rep.i("skipped", p.skipped - skipped0);
        }
        let secs = elapsed.max(1e-9);
        rep.f("duration_s", elapsed, 3);
        rep.i("messages", self.messages);
        rep.f("msgs_per_s", self.messages as f64 / secs, 1);
        if self.mode == Mode::Echo {
            self.latency(rep);
        } else {
            rep.i("window", per_conn as u64);
            rep.f("mb_per_s", self.bytes as f64 / secs / 1e6, 1);
        }
        rep.i("ok", self.open_count() as u64);
        rep.i("failed", self.hs_failed + self.dropped);
        rep.i("handshake_failed", self.hs_failed);
        rep.i("bad_echo", self.bad_echo);
    }

    pub(crate) fn run_idle(
        &mut self,
        args: &Args,
        rep: &mut Report,
        sources: usize,
    ) -> Result<(), String> {
        let mut events = Events::with_capacity(4096);
        let t0 = Instant::now();
        self.connect_all(&mut events, args.max_pending, true);
        let connect_s = t0.elapsed().as_secs_f64();
        let open = self.open_count();
        eprintln!(
            "ringway-bench: idle: {open} open, {} failed, in {connect_s:.2}s",
            self.hs_failed
        );
        if let Some(p) = &args.ready_file {
            std::fs::write(p, format!("{open}\n")).map_err(|e| format!("{}: {e}", p.display()))?;
        }
        let mut child: Option<Child> = match &args.during {
            Some(cmd) => Some(
                Command::new("sh")
                    .arg("-c")
                    .arg(cmd)
                    .env("RINGWAY_BENCH_OPEN", open.to_string())
                    .stdin(Stdio::null())
                    .stdout(io::stderr())
                    .spawn()
                    .map_err(|e| format!("--during: {e}"))?,
            ),
            None => None,
        };
        let mut during_rc = None;
        let hold_start = Instant::now();
        let mut last_check = Instant::now();
        let mut stop_file_seen = false;
        loop {
            if let Some(ch) = child.as_mut() {
                if let Ok(Some(st)) = ch.try_wait() {
                    during_rc = Some(st.code().unwrap_or(-1));
                    child = None;
                }
            }
            if last_check.elapsed() >= Duration::from_millis(200) {
                last_check = Instant::now();
                if let Some(p) = &args.stop_file {
                    stop_file_seen |= p.exists();
                }
            }
            let hold_over =
                hold_start.elapsed() >= args.hold || stop_file_seen || sys::stop_requested();
            if hold_over && child.is_none() {
                break;
            }
            self.poll_once(&mut events, Duration::from_millis(100));
        }
        let held = hold_start.elapsed().as_secs_f64();
        let dropped_in_hold = self.dropped;
        // Every connection still open echoes one message.
        self.hist.reset();
        for i in 0..self.conns.len() {
            if self.conns[i].st == St::Open {
                self.send_msg(i);
                self.flush(i);
            }
        }
        let t_final = Instant::now();
        while self
            .conns
            .iter()
            .any(|c| c.st == St::Open && c.in_flight > 0)
            && t_final.elapsed() < self.timeout + Duration::from_secs(1)
        {
            self.poll_once(&mut events, Duration::from_millis(50));
        }
        let n = self.conns.len() as u64;
        rep.i("ok", self.final_ok);
        rep.i("failed", n - self.final_ok);
        rep.i("handshake_failed", self.hs_failed);
        rep.i("dropped_during_hold", dropped_in_hold);
        rep.f("connect_s", connect_s, 3);
        rep.f(
            "handshakes_per_s",
            self.hs_ok as f64 / connect_s.max(1e-9),
            1,
        );
        rep.f("hold_s", held, 3);
        rep.i("sources", sources.max(1) as u64);
        if let Some(rc) = during_rc {
            rep.i("during_rc", rc as u64);
        }
        rep.f("final_echo_s", t_final.elapsed().as_secs_f64(), 3);
        rep.i("bad_echo", self.bad_echo);
        Ok(())
    }

    pub(crate) fn run_churn(&mut self, args: &Args, rep: &mut Report) {
        let mut events = Events::with_capacity(1024);
        self.running = true;
        for i in 0..self.conns.len() {
            self.open(i);
        }
        self.run_for(&mut events, args.warmup);
        hook(&args.on_measure, "start");
        self.measuring = true;
        self.hist.reset();
        let (hs0, rs0) = (self.hs_ok, self.hs_resumed);
        let (hf0, dr0) = (self.hs_failed, self.dropped);
        let elapsed = self.run_for(&mut events, args.duration).as_secs_f64();
        self.measuring = false;
        let hs1 = self.hs_ok;
        hook(&args.on_measure, "end");
        self.running = false;
        let secs = elapsed.max(1e-9);
        let hs = hs1 - hs0;
        rep.f("duration_s", elapsed, 3);
        rep.i("handshakes", hs);
        rep.f("handshakes_per_s", hs as f64 / secs, 1);
        if self.tls.is_some() {
            rep.i("resumed", self.hs_resumed - rs0);
        }
        rep.i("cycles", self.cycles);
        rep.f("cycles_per_s", self.cycles as f64 / secs, 1);
        rep.i("messages", self.messages);
        self.latency(rep);
        rep.i("failed", (self.hs_failed - hf0) + (self.dropped - dr0));
        rep.i("handshake_failed", self.hs_failed - hf0);
        rep.i("bad_echo", self.bad_echo);
    }

    fn latency(&self, rep: &mut Report) {
        let us = |ns: u64| ns as f64 / 1000.0;
        if self.hist.is_empty() {
            return;
        }
        rep.f("p50_us", us(self.hist.value_at_quantile(0.50)), 1);
        rep.f("p99_us", us(self.hist.value_at_quantile(0.99)), 1);
        rep.f("p999_us", us(self.hist.value_at_quantile(0.999)), 1);
        rep.f("max_us", us(self.hist.max()), 1);
        rep.f("mean_us", self.hist.mean() / 1000.0, 1);
    }
}

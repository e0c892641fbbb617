//! Routing on arbitrary Host and path bytes, over a config with exact, wildcard and default
//! vhosts and prefix, exact and regex routes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringway::config::Routes;

/// The routing tables, compiled once per thread (they are per core in Ringway, and not `Sync`:
/// route styles and per-IP tables live in `Rc` and `RefCell`).
fn routes() -> &'static Routes {
    thread_local! {
        static R: &'static Routes = Box::leak(Box::new(compile()));
    }
    R.with(|r| *r)
}

fn compile() -> Routes {
    {
        let dir = std::env::temp_dir().join("ringway-fuzz-routes");
        std::fs::create_dir_all(dir.join("www")).unwrap();
        let text = r#"
[[listener]]
name = "main"
address = "127.0.0.1:1"
[[backend]]
name = "b"
servers = ["127.0.0.1:2"]
[[vhost]]
name = "exact"
domains = ["example.com", "*.example.com"]
[[vhost.websocket]]
uri = "/chat/"
backend = "b"
[[vhost.websocket]]
uri = "exp:^/room/[0-9]+$"
backend = "b"
[[vhost.context]]
uri = "/exact"
handler = "echo"
[[vhost]]
name = "default"
domains = ["*"]
"#;
        Routes::compile(&ringway::config::load_str(text, &dir).expect("fuzz config"))
    }
}

fuzz_target!(|input: (Vec<u8>, String)| {
    let (host, path) = input;
    let r = routes();
    if let Some(v) = r.vhost(0, Some(&host)) {
        let _ = v.route(&path);
    }
    let _ = r.vhost(0, None);
    let _ = r.vhost(7, Some(&host));
});

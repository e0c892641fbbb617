//! A table of broken configs, at least one per section, with every problem the loader reports
//! for each, in order, exactly as `ringway check` prints them (`LINE:COL: message`). Pinned from
//! the loader before it was split into this folder: a change to a message, a position or the
//! order of problems at one place shows here. The durations that humantime made valid ("1m30s",
//! "1d", "1w", "10 s", "1.5s") were taken out of the lists; every other message is unchanged.

use super::load_str;
use super::testing::TempDir;

/// (what the case covers, config text, every problem as `(line, col, message)`).
type Case = (
    &'static str,
    &'static str,
    &'static [(usize, usize, &'static str)],
);

const CASES: &[Case] = &[
    (
        "rt-core-ids",
        r#"[runtime]
cores = 2
[[runtime.core]]
id = 1
[[runtime.core]]
id = 1
[[runtime.core]]
id = 7
[[runtime.core]]
id = -3
max_connections = 0
foo = 1
[[runtime.core]]
[[listener]]
name = "main"
address = "127.0.0.1:8080"
[[vhost]]
name = "site"
domains = ["*"]
"#,
        &[
            (6, 6, "duplicate core id 1 (first at line 4)"),
            (8, 6, "core id 7 is out of range: ids go from 0 to 1"),
            (10, 6, "core id -3 is out of range: ids go from 0 to 1"),
            (11, 19, "\"max_connections\" must be at least 1, found 0"),
            (12, 1, "unknown key \"foo\" in [[runtime.core]]; valid keys: id, max_connections, cpu, listeners, ring_entries, read_buffer"),
            (13, 1, "missing required key \"id\" in [[runtime.core]]"),
        ],
    ),
    (
        "rt-cores-str",
        r#"[runtime]
cores = "many"
pin = "yes"
[[listener]]
name = "main"
address = "127.0.0.1:8080"
[[vhost]]
name = "site"
domains = ["*"]
"#,
        &[
            (2, 9, "expected an integer or \"auto\" for \"cores\", found \"many\""),
            (3, 7, "expected true or false for \"pin\", found \"yes\""),
        ],
    ),
    (
        "rt-not-table",
        r#"runtime = 3
timeouts = "x"
limits = []
log = 1
[[listener]]
name = "main"
address = "127.0.0.1:8080"
[[vhost]]
name = "site"
domains = ["*"]
"#,
        &[
            (1, 11, "expected a table for [runtime], found 3"),
            (2, 12, "expected a table for [timeouts], found \"x\""),
            (3, 10, "expected a table for [limits], found an array"),
            (4, 7, "expected a table for [log], found 1"),
        ],
    ),
    (
        // "10 s", "1.5s" and "2d" (lines 3, 4, 6) were refused before humantime.
        "to-bad-durations",
        r#"[timeouts]
header = "10"
keepalive = "10 s"
connect = "1.5s"
tunnel_idle = "-1s"
upstream_read = "2d"
upstream_keepalive = "s"
drain = ""
send = "10S"
[[listener]]
name = "main"
address = "127.0.0.1:8080"
[[vhost]]
name = "site"
domains = ["*"]
"#,
        &[
            (2, 10, "invalid duration \"10\": expected a whole number followed by ms, s, m or h (like \"10s\")"),
            (5, 15, "invalid duration \"-1s\": expected a whole number followed by ms, s, m or h (like \"10s\")"),
            (7, 22, "invalid duration \"s\": expected a whole number followed by ms, s, m or h (like \"10s\")"),
            (8, 9, "invalid duration \"\": expected a whole number followed by ms, s, m or h (like \"10s\")"),
            (9, 8, "invalid duration \"10S\": expected a whole number followed by ms, s, m or h (like \"10s\")"),
        ],
    ),
    (
        // "1m30s", "1d", "1w" and "5min" (lines 6 to 9) were refused before humantime.
        "to-bad-durations2",
        r#"[timeouts]
header = "99999999999999999999s"
keepalive = "0ms"
connect = "9000h"
tunnel_idle = 10
upstream_read = "1m30s"
upstream_keepalive = "1d"
drain = "1w"
send = "5min"
[[listener]]
name = "main"
address = "127.0.0.1:8080"
[[vhost]]
name = "site"
domains = ["*"]
"#,
        &[
            (2, 10, "invalid duration \"99999999999999999999s\": expected a whole number followed by ms, s, m or h (like \"10s\")"),
            (3, 13, "duration \"0ms\" must be more than zero"),
            (4, 11, "duration \"9000h\" is too long (at most 365 days)"),
            (5, 15, "expected a string for \"tunnel_idle\", found 10"),
        ],
    ),
    (
        "lim-bad-sizes",
        r#"[limits]
max_header_bytes = "32 KiB"
max_connections_per_ip = 0
upgrades_per_ip = "abc"
max_concurrent_streams = 70000
[[listener]]
name = "main"
address = "127.0.0.1:8080"
[[vhost]]
name = "site"
domains = ["*"]
"#,
        &[
            (2, 20, "invalid size \"32 KiB\": expected a whole number followed by B, KiB or MiB (like \"32KiB\")"),
            (3, 26, "\"max_connections_per_ip\" must be between 1 and 4294967295, found 0"),
            (4, 19, "\"upgrades_per_ip\": \"abc\" is not COUNT/DURATION, e.g. \"100/10s\""),
            (5, 26, "\"max_concurrent_streams\" must be between 1 and 65535, found 70000"),
        ],
    ),
    (
        "lim-bad-sizes2",
        r#"[limits]
max_header_bytes = "512B"
max_connections_per_ip = 99999999999
upgrades_per_ip = "0/10s"
max_concurrent_streams = 0
[[listener]]
name = "main"
address = "127.0.0.1:8080"
[[vhost]]
name = "site"
domains = ["*"]
"#,
        &[
            (2, 20, "\"max_header_bytes\" must be between 1KiB and 1MiB, found 512B"),
            (3, 26, "\"max_connections_per_ip\" must be between 1 and 4294967295, found 99999999999"),
            (4, 19, "\"upgrades_per_ip\": \"0/10s\": the count must be a whole number above 0"),
            (5, 26, "\"max_concurrent_streams\" must be between 1 and 65535, found 0"),
        ],
    ),
    (
        "lim-bad-sizes3",
        r#"[limits]
max_header_bytes = -4
upgrades_per_ip = "10/0s"
extra = 1
[[listener]]
name = "main"
address = "127.0.0.1:8080"
[[vhost]]
name = "site"
domains = ["*"]
"#,
        &[
            (2, 20, "\"max_header_bytes\" must be at least 0, found -4"),
            (3, 19, "\"upgrades_per_ip\": duration \"0s\" must be more than zero"),
            (4, 1, "unknown key \"extra\" in [limits]; valid keys: max_header_bytes, max_connections_per_ip, max_concurrent_streams, upgrades_per_ip"),
        ],
    ),
    (
        "li-modes",
        r#"[[listener]]
name = "main"
address = "127.0.0.1:8080"
[[listener]]
name = "a"
address = "127.0.0.1:1"
mode = "udp"
alpn = ["h3"]
http2 = "yes"
[[listener]]
name = "b"
address = "127.0.0.1:2"
tls = true
http2 = true
mode = "tcp"
alpn = []
[[listener]]
name = "c"
address = "127.0.0.1:3"
alpn = ["h2"]
proxy_protocol = 1
forward_proxy = "no"
wat = 1
[[vhost]]
name = "site"
domains = ["*"]
"#,
        &[
            (1, 1, "listener \"b\" has mode = \"tcp\" but no [[tcp_route]]"),
            (7, 8, "\"mode\" must be \"http\" or \"tcp\", found \"udp\""),
            (8, 9, "an entry of \"alpn\" must be \"h2\" or \"http/1.1\", found \"h3\""),
            (9, 9, "expected true or false for \"http2\", found \"yes\""),
            (10, 1, "\"http2\" applies to plain listeners (h2c); a TLS listener offers h2 by \"alpn\""),
            (10, 1, "a mode = \"tcp\" listener forwards raw bytes: it cannot have tls = true (use [[tls_passthrough]] on a TLS listener)"),
            (16, 8, "\"alpn\" must not be empty"),
            (17, 1, "\"alpn\" applies to tls = true listeners (a plain listener takes http2 = true for h2c)"),
            (21, 18, "expected true or false for \"proxy_protocol\", found 1"),
            (22, 17, "expected true or false for \"forward_proxy\", found \"no\""),
            (23, 1, "unknown key \"wat\" in [[listener]]; valid keys: name, address, tls, proxy_protocol, forward_proxy, mode, alpn, http2, redirect_https"),
        ],
    ),
    (
        "li-missing",
        r#"[[listener]]
address = "127.0.0.1:1"
[[listener]]
name = "n"
[[listener]]
[[vhost]]
name = "site"
domains = ["*"]
"#,
        &[
            (1, 1, "missing required key \"name\" in [[listener]]"),
            (3, 1, "missing required key \"address\" in [[listener]]"),
            (5, 1, "missing required key \"name\" in [[listener]]"),
            (5, 1, "missing required key \"address\" in [[listener]]"),
        ],
    ),
    (
        "tcp-routes",
        r#"[[listener]]
name = "main"
address = "127.0.0.1:8080"
[[listener]]
name = "raw"
address = "127.0.0.1:1"
mode = "tcp"
[[backend]]
name = "b"
servers = ["127.0.0.1:9001"]
[[tcp_route]]
listener = "raw"
backend = "b"
[[tcp_route]]
listener = "raw"
backend = "b"
[[tcp_route]]
listener = "main"
backend = "zz"
[[tcp_route]]
listener = "nope"
[[tcp_route]]
backend = "b"
x = 1
[[vhost]]
name = "site"
domains = ["*"]
"#,
        &[
            (14, 1, "listener \"raw\" has a [[tcp_route]] already"),
            (18, 12, "listener \"main\" needs mode = \"tcp\" for a [[tcp_route]]"),
            (19, 11, "unknown backend \"zz\""),
            (20, 1, "missing required key \"backend\" in [[tcp_route]]"),
            (21, 12, "unknown listener \"nope\""),
            (22, 1, "missing required key \"listener\" in [[tcp_route]]"),
            (24, 1, "unknown key \"x\" in [[tcp_route]]; valid keys: listener, backend"),
        ],
    ),
    (
        "passthrough",
        r#"[[listener]]
name = "main"
address = "127.0.0.1:8080"
[[listener]]
name = "t"
address = "127.0.0.1:443"
tls = true
[[backend]]
name = "b"
servers = ["127.0.0.1:9001"]
[[tls_passthrough]]
listener = "main"
sni = ["a.com"]
backend = "b"
[[tls_passthrough]]
listener = "t"
sni = []
backend = "q"
[[tls_passthrough]]
listener = "t"
sni = ["bad..name", 3]
[[tls_passthrough]]
listener = "t"
sni = ["*.ok.com"]
backend = "b"
foo = 2
[[vhost]]
name = "site"
domains = ["*"]
"#,
        &[
            (12, 12, "listener \"main\" needs tls = true for [[tls_passthrough]]"),
            (17, 7, "\"sni\" must not be empty"),
            (18, 11, "unknown backend \"q\""),
            (19, 1, "missing required key \"backend\" in [[tls_passthrough]]"),
            (21, 8, "invalid domain \"bad..name\": expected a name like \"example.com\", a wildcard like \"*.example.com\", or \"*\""),
            (21, 21, "expected a string for an entry of \"sni\", found 3"),
            (26, 1, "unknown key \"foo\" in [[tls_passthrough]]; valid keys: listener, sni, backend"),
        ],
    ),
    (
        // The health timeout "1d" (line 14) was refused before humantime.
        "be-bad",
        r#"[[listener]]
name = "main"
address = "127.0.0.1:8080"
[[backend]]
name = "b"
servers = ["nope", "uds://rel.sock", "tls://127.0.0.1:1"]
balance = "fastest"
retries = 101
max_fails = 0
fail_window = "x"
fail_timeout = "0s"
keepalive_per_server = "lots"
send_proxy = "v3"
health = { interval = "2x", timeout = "1d", rise = 0, fall = 101, http_path = "healthz", extra = 1 }
[[vhost]]
name = "site"
domains = ["*"]
"#,
        &[
            (6, 12, "invalid address \"nope\": expected IP:port, [IPv6]:port, name:port, uds:///path, tls://IP:port or srv://name"),
            (6, 20, "unix socket address \"uds://rel.sock\" needs an absolute path: uds:///path/to.sock"),
            (7, 11, "unknown balance \"fastest\": expected \"round_robin\", \"least_conn\", \"ip_hash\", \"random_two\", \"cookie\" or \"hash\""),
            (8, 11, "\"retries\" must be between 0 and 100, found 101"),
            (9, 13, "\"max_fails\" must be between 1 and 1000, found 0"),
            (10, 15, "invalid duration \"x\": expected a whole number followed by ms, s, m or h (like \"10s\")"),
            (11, 16, "duration \"0s\" must be more than zero"),
            (12, 24, "\"keepalive_per_server\" must be a count or \"unlimited\", found \"lots\""),
            (13, 14, "\"send_proxy\" must be \"v1\" or \"v2\", found \"v3\""),
            (14, 23, "invalid duration \"2x\": expected a whole number followed by ms, s, m or h (like \"10s\")"),
            (14, 52, "\"rise\" must be between 1 and 100, found 0"),
            (14, 62, "\"fall\" must be between 1 and 100, found 101"),
            (14, 79, "\"http_path\" must start with '/', found \"healthz\""),
            (14, 90, "unknown key \"extra\" in \"health\"; valid keys: interval, timeout, rise, fall, http_path"),
        ],
    ),
    (
        "be-bad2",
        r#"[[listener]]
name = "main"
address = "127.0.0.1:8080"
[[backend]]
name = "b"
servers = [{ address = "x" }, { address = "1.2.3.4:5", weight = 0 }, { weight = 2 }, { address = "1.2.3.4:6", wieght = 1 }, true]
servers2 = 1
keepalive_per_server = 100001
[[vhost]]
name = "site"
domains = ["*"]
"#,
        &[
            (6, 24, "invalid address \"x\": expected IP:port, [IPv6]:port, name:port, uds:///path, tls://IP:port or srv://name"),
            (6, 65, "\"weight\" must be between 1 and 1000, found 0"),
            (6, 70, "missing required key \"address\" in a \"servers\" entry"),
            (6, 111, "unknown key \"wieght\" in a \"servers\" entry; valid keys: address, weight"),
            (6, 125, "expected a string for an entry of \"servers\", found true"),
            (7, 1, "unknown key \"servers2\" in [[backend]]; valid keys: name, servers, balance, retries, max_fails, fail_window, fail_timeout, health, keepalive_per_server, send_proxy, tls, drain_spread, hash_key, sticky_cookie, sticky_secret"),
            (8, 24, "\"keepalive_per_server\" must be between 0 and 100000, found 100001"),
        ],
    ),
    (
        "be-dup-missing",
        r#"[[listener]]
name = "main"
address = "127.0.0.1:8080"
[[backend]]
name = "b"
servers = ["127.0.0.1:9001"]
[[backend]]
name = "b"
servers = ["127.0.0.1:9001"]
[[backend]]
servers = ["1.2.3.4:5"]
[[backend]]
name = "z"
[[backend]]
name = 4
servers = []
[[vhost]]
name = "site"
domains = ["*"]
"#,
        &[
            (8, 8, "duplicate backend name \"b\" (first at line 5)"),
            (10, 1, "missing required key \"name\" in [[backend]]"),
            (12, 1, "missing required key \"servers\" in [[backend]]"),
            (15, 8, "expected a string for \"name\", found 4"),
            (16, 11, "\"servers\" must not be empty"),
        ],
    ),
    (
        "vh-bad",
        r#"[[listener]]
name = "main"
address = "127.0.0.1:8080"
[[vhost]]
name = "v"
domains = ["a.*.com", "", "-a.com", "A.COM", 7]
listeners = ["main", "admin"]
doc_root = "files/notadir"
wat = 1
[[vhost]]
name = "v"
domains = []
[[vhost]]
domains = "x"
[[vhost]]
name = "q"
"#,
        &[
            (6, 12, "invalid domain \"a.*.com\": expected a name like \"example.com\", a wildcard like \"*.example.com\", or \"*\""),
            (6, 23, "invalid domain \"\": expected a name like \"example.com\", a wildcard like \"*.example.com\", or \"*\""),
            (6, 27, "invalid domain \"-a.com\": expected a name like \"example.com\", a wildcard like \"*.example.com\", or \"*\""),
            (6, 46, "expected a string for an entry of \"domains\", found 7"),
            (7, 22, "unknown listener \"admin\""),
            (8, 12, "doc_root DIR/files/notadir does not exist"),
            (9, 1, "unknown key \"wat\" in [[vhost]]; valid keys: name, domains, listeners, doc_root, tls, response_headers, request_headers, error_pages, websocket, context, compress, compress_types, compress_min, precompressed, cache_control"),
            (11, 8, "duplicate vhost name \"v\" (first at line 5)"),
            (12, 11, "\"domains\" must not be empty"),
            (13, 1, "missing required key \"name\" in [[vhost]]"),
            (14, 11, "expected an array for \"domains\", found \"x\""),
            (15, 1, "missing required key \"domains\" in [[vhost]]"),
        ],
    ),
    (
        "vh-ws",
        r#"[[listener]]
name = "main"
address = "127.0.0.1:8080"
[[backend]]
name = "b"
servers = ["127.0.0.1:9001"]
[[vhost]]
name = "site"
domains = ["*"]
[[vhost.websocket]]
uri = "exp:("
address = "1.2.3.4:5"
[[vhost.websocket]]
uri = "ws"
backend = "missing"
[[vhost.websocket]]
uri = "/both"
backend = "b"
address = "1.2.3.4:5"
[[vhost.websocket]]
uri = "/none"
[[vhost.websocket]]
uri = "/addr"
address = "1.2.3.4"
timeout = 3
[[vhost.websocket]]
uri = "/o"
backend = "b"
origins = ["", "http://ok.com", 3]
allow_missing_origin = "x"
"#,
        &[
            (11, 7, "invalid regex \"(\": unclosed group (at character 1: \"(\")"),
            (14, 7, "uri \"ws\" must start with '/' (or be a regex written as \"exp:...\")"),
            (15, 11, "unknown backend \"missing\""),
            (16, 1, "a [[vhost.websocket]] entry needs exactly one of \"backend\" or \"address\""),
            (20, 1, "a [[vhost.websocket]] entry needs exactly one of \"backend\" or \"address\""),
            (24, 11, "invalid address \"1.2.3.4\": expected IP:port, [IPv6]:port, name:port, uds:///path, tls://IP:port or srv://name"),
            (25, 1, "unknown key \"timeout\" in [[vhost.websocket]]; valid keys: uri, backend, address, origins, allow_missing_origin, mode, frame, subprotocols, ping_interval, max_message, auth, response_headers, request_headers, allow_from, deny_from, timeouts"),
            (29, 12, "an entry of \"origins\": \"\" is not scheme://host[:port]"),
            (29, 33, "expected a string for an entry of \"origins\", found 3"),
            (30, 24, "expected true or false for \"allow_missing_origin\", found \"x\""),
        ],
    ),
    (
        // ping_interval = "1m30s" (line 33) was refused before humantime.
        "vh-tunnel",
        r#"[[listener]]
name = "main"
address = "127.0.0.1:8080"
[[backend]]
name = "b"
servers = ["127.0.0.1:9001"]
[[vhost]]
name = "site"
domains = ["*"]
[[vhost.websocket]]
uri = "/t1"
backend = "b"
mode = "pass"
[[vhost.websocket]]
uri = "/t2"
backend = "b"
mode = "tunnel"
frame = "hex"
subprotocols = ["a b", "ok"]
ping_interval = "soon"
max_message = "0B"
[[vhost.websocket]]
uri = "/t3"
backend = "b"
frame = "text"
subprotocols = []
ping_interval = "0"
max_message = 5
[[vhost.websocket]]
uri = "/t4"
backend = "b"
mode = "tunnel"
ping_interval = "1m30s"
max_message = "300MiB"
[[vhost.websocket]]
uri = "/t5"
backend = "b"
mode = "tunnel"
ping_interval = "0ms"
subprotocols = [""]
"#,
        &[
            (13, 8, "\"mode\" must be \"proxy\" or \"tunnel\", found \"pass\""),
            (18, 9, "\"frame\" must be \"text\" or \"binary\", found \"hex\""),
            (19, 17, "an entry of \"subprotocols\" must be a token (like \"chat.v1\"), found \"a b\""),
            (20, 17, "invalid duration \"soon\": expected a whole number followed by ms, s, m or h (like \"10s\")"),
            (21, 15, "\"max_message\" must be between 1B and 256MiB, found 0B"),
            (22, 1, "\"frame\" applies to mode = \"tunnel\" only"),
            (22, 1, "\"subprotocols\" applies to mode = \"tunnel\" only"),
            (22, 1, "\"ping_interval\" applies to mode = \"tunnel\" only"),
            (22, 1, "\"max_message\" applies to mode = \"tunnel\" only"),
            (34, 15, "\"max_message\" must be between 1B and 256MiB, found 300MiB"),
            (40, 17, "an entry of \"subprotocols\" must be a token (like \"chat.v1\"), found \"\""),
        ],
    ),
    (
        "vh-ctx",
        r#"[[listener]]
name = "main"
address = "127.0.0.1:8080"
[[backend]]
name = "b"
servers = ["127.0.0.1:9001"]
[[vhost]]
name = "site"
domains = ["*"]
[[vhost.context]]
uri = "/x"
handler = "php"
[[vhost.context]]
uri = "/p"
handler = "proxy"
[[vhost.context]]
uri = "/e"
handler = "echo"
backend = "b"
[[vhost.context]]
uri = "echo"
handler = "echo"
[[vhost.context]]
handler = "static"
root = 3
[[vhost.context]]
uri = "/q"
handler = "proxy"
backend = "nope"
host = 3
[[vhost.context]]
uri = "/s"
handler = "static"
allow = ["*:443"]
auth = 3
"#,
        &[
            (12, 11, "unknown handler \"php\": expected \"static\", \"echo\", \"proxy\", \"connect\", \"redirect\" or \"respond\""),
            (13, 1, "handler \"proxy\" needs a \"backend\""),
            (19, 11, "\"backend\" is only allowed with handler = \"proxy\", not \"echo\""),
            (21, 7, "uri \"echo\" must start with '/' (or be a regex written as \"exp:...\")"),
            (23, 1, "missing required key \"uri\" in [[vhost.context]]"),
            (25, 1, "unknown key \"root\" in [[vhost.context]]; valid keys: uri, handler, backend, host, allow, auth, to, status, body, compress, compress_types, compress_min, precompressed, cache_control, response_headers, request_headers, allow_from, deny_from, requests_per_ip, timeouts"),
            (29, 11, "unknown backend \"nope\""),
            (30, 8, "expected a string for \"host\", found 3"),
            (31, 1, "\"allow\" is only for handler = \"connect\" (use \"allow_from\" for client addresses)"),
            (35, 8, "expected a table for auth, found 3"),
        ],
    ),
    (
        "vh-connect",
        r#"[[listener]]
name = "main"
address = "127.0.0.1:8080"
[[vhost]]
name = "site"
domains = ["*"]
[[vhost.context]]
uri = "/c1"
handler = "connect"
[[vhost.context]]
uri = "/c2"
handler = "connect"
allow = ["nope", "*:443"]
[[vhost.context]]
uri = "/c3"
handler = "connect"
allow = ["*:443"]
[[vhost.context]]
uri = "/c4"
handler = "connect"
allow = ["*:443"]
[[vhost.context]]
uri = "/c5"
handler = "connect"
allow = []
auth = 3
"#,
        &[
            (7, 1, "handler \"connect\" needs an \"allow\" list (HOST:PORT entries)"),
            (13, 10, "an entry of \"allow\": \"nope\" is not HOST:PORT (a name, *.name, an address or CIDR block; a port or *)"),
            (25, 9, "\"allow\" must not be empty"),
            (26, 8, "expected a table for auth, found 3"),
        ],
    ),
    (
        "admin-bad",
        r#"[[listener]]
name = "main"
address = "127.0.0.1:8080"
[[listener]]
name = "adm"
address = "127.0.0.1:9090"
http2 = true
[admin]
listener = "adm"
allow = ["10.0.0.0/33", "x", 5]
foo = 1
[[vhost]]
name = "site"
domains = ["*"]
"#,
        &[
            (8, 1, "the [admin] listener \"adm\" serves HTTP/1.1 only: remove http2 = true"),
            (10, 10, "an entry of \"allow\": \"10.0.0.0/33\": the prefix length must be 0 to 32"),
            (10, 25, "an entry of \"allow\": \"x\" is not an IP address or CIDR block"),
            (10, 30, "expected a string for an entry of \"allow\", found 5"),
            (11, 1, "unknown key \"foo\" in [admin]; valid keys: socket, listener, allow"),
        ],
    ),
    (
        "log-bad",
        r#"[[listener]]
name = "main"
address = "127.0.0.1:8080"
[[vhost]]
name = "site"
domains = ["*"]
[log]
access = ""
access_format = "xml"
level = "info"
"#,
        &[
            (8, 10, "\"access\" must be \"off\", \"stderr\" or a file path"),
            (9, 17, "\"access_format\" must be \"combined\" or \"json\", found \"xml\""),
            (10, 1, "unknown key \"level\" in [log]; valid keys: access, access_format"),
        ],
    ),
    (
        "mixed-same-offset",
        r#"[[listener]]
name = "raw"
address = "127.0.0.1:1"
mode = "tcp"
tls = true
alpn = ["h2"]
http2 = true
[[listener]]
name = "raw2"
address = "127.0.0.1:2"
mode = "tcp"
[[vhost]]
name = "v"
domains = ["*"]
[[vhost.context]]
uri = "/x"
handler = "connect"
backend = "q"
"#,
        &[
            (1, 1, "\"http2\" applies to plain listeners (h2c); a TLS listener offers h2 by \"alpn\""),
            (1, 1, "a mode = \"tcp\" listener forwards raw bytes: it cannot have tls = true (use [[tls_passthrough]] on a TLS listener)"),
            (1, 1, "listener \"raw\" has mode = \"tcp\" but no [[tcp_route]]"),
            (1, 1, "listener \"raw2\" has mode = \"tcp\" but no [[tcp_route]]"),
            (15, 1, "handler \"connect\" needs an \"allow\" list (HOST:PORT entries)"),
        ],
    ),
    (
        "top-unknown",
        r#"[[listener]]
name = "main"
address = "127.0.0.1:8080"
[[vhost]]
name = "site"
domains = ["*"]
[tsl]
cert = "x"
foo = 1
"#,
        &[
            (7, 2, "unknown key \"tsl\" at the top level; valid keys: runtime, timeouts, limits, listener, backend, vhost, admin, tcp_route, tls_passthrough, log, tls, dns"),
        ],
    ),
];

#[test]
fn broken_configs_report_these_problems() {
    let dir = TempDir::new();
    for (name, text, want) in CASES {
        let got: Vec<(usize, usize, String)> = match load_str(text, &dir.0) {
            Ok(_) => panic!("{name}: loaded without problems"),
            // The temp dir's path is written DIR in the expected messages.
            Err(ps) => ps
                .into_iter()
                .map(|p| {
                    let m = p.message.replace(&dir.0.display().to_string(), "DIR");
                    (p.line, p.col, m)
                })
                .collect(),
        };
        let want: Vec<(usize, usize, String)> = want
            .iter()
            .map(|(l, c, m)| (*l, *c, m.to_string()))
            .collect();
        assert_eq!(got, want, "{name}");
    }
}

//! Black-box end-to-end tests: the real `ringway` binary, real sockets, backends and clients
//! started by the tests. Each test runs its own ringway on its own port.

mod backend;
mod harness;
mod http_backends;
mod ocsp_responders;
mod pki;
mod tls_clients;

mod bad_input;
mod churn;
mod cli;
mod control_api;
mod discovery;
mod echo;
mod edge;
mod edge_server;
mod faults;
mod fleet;
mod h2;
mod h2_websockets;
mod harden;
mod http_balancing;
mod http_proxy;
mod http_smuggling;
mod http_streaming;
mod http_upstream_errors;
mod observability;
mod ocsp;
mod operations;
mod percore;
mod routing;
mod splice;
mod static_cost;
mod static_edge;
mod static_files;
mod sticky;
mod tls;
mod tls_resumption;
mod truth;
mod ws_proxy;
mod ws_tunnel;

//! Configuration: TOML text → validated `Config` (`load`), with every problem reported as
//! `FILE:LINE:COL: message` (what `ringway check` prints).

pub mod cores;
pub(crate) mod load;
mod routes;
pub mod tickets;
pub mod tls;
pub(crate) mod types;

pub use load::{load, load_str, Problem};
pub use routes::{PathRoute, Routes, Style};
pub use types::*;

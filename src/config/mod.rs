//! Configuration: TOML text → validated `Config` (`load`), with every problem reported as
//! `FILE:LINE:COL: message` (what `ringway check` prints).

mod load;
mod routes;
pub mod tls;
pub(crate) mod types;

pub use load::{load, load_str, load_str_with_warnings, load_with_warnings, Problem};
pub use routes::{PathRoute, Routes};
pub use types::*;

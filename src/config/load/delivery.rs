//! The delivery keys of a `[[vhost]]` and a `[[vhost.context]]`: `compress`, `compress_types`,
//! `compress_min`, `precompressed`, `cache_control` (`policy::delivery::Delivery`). A context's
//! keys override its vhost's one by one; what neither sets keeps the default (compression off,
//! the default types, 1 KiB, no variants, no `Cache-Control`).

use super::problems::Problems;
use super::spanned::{list, string, Section, Val};
use super::values::size;
use crate::policy::delivery::{check_type_pattern, Delivery};
use crate::protocol::http::coding::Coding;

/// The keys as given in one table (`None`: not given there).
#[derive(Debug, Default, Clone)]
pub(super) struct DeliveryKeys {
    compress: Option<Vec<Coding>>,
    compress_types: Option<Vec<String>>,
    compress_min: Option<u64>,
    precompressed: Option<Vec<Coding>>,
    cache_control: Option<String>,
}

/// Reads the delivery keys of `s` (before its `finish`).
pub(super) fn read(s: &mut Section<'_, '_>, p: &mut Problems) -> DeliveryKeys {
    DeliveryKeys {
        compress: s.opt("compress", p, codings),
        compress_types: s.opt("compress_types", p, |v, what, p| {
            list(v, what, true, p, |v, what, p| {
                let t = string(v, what, p)?;
                check_type_pattern(t.v)
                    .map_err(|e| p.add(t.at, format!("{what}: {e}")))
                    .ok()
            })
        }),
        compress_min: s
            .opt("compress_min", p, |v, what, p| {
                size(v, what, 0..=1024 * 1024 * 1024, p)
            })
            .map(|n| n as u64),
        precompressed: s.opt("precompressed", p, codings),
        cache_control: s.opt("cache_control", p, |v, what, p| {
            let t = string(v, what, p)?;
            let ok = !t.v.trim().is_empty()
                && t.v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b));
            if !ok {
                p.add(
                    t.at,
                    format!("{what} must be a non-empty header value of visible ASCII (like \"public, max-age=3600\")"),
                );
                return None;
            }
            Some(t.v.trim().to_string())
        }),
    }
}

/// `["br", "gzip"]`: known codings, each once (the order is the order of preference).
fn codings(v: &Val<'_>, what: &str, p: &mut Problems) -> Option<Vec<Coding>> {
    let list = list(v, what, false, p, |v, what, p| {
        let t = string(v, what, p)?;
        match Coding::parse(t.v) {
            Some(c) => Some((c, t.at)),
            None => {
                p.add(
                    t.at,
                    format!("{what} must be \"br\" or \"gzip\", found {:?}", t.v),
                );
                None
            }
        }
    })?;
    let mut out: Vec<Coding> = Vec::new();
    for (c, at) in list {
        if out.contains(&c) {
            p.add(at, format!("{what} lists {:?} twice", c.token()));
            return None;
        }
        out.push(c);
    }
    Some(out)
}

impl DeliveryKeys {
    /// These keys over `base` (a context's over its vhost's).
    pub(super) fn over(&self, base: &DeliveryKeys) -> DeliveryKeys {
        DeliveryKeys {
            compress: self.compress.clone().or_else(|| base.compress.clone()),
            compress_types: self
                .compress_types
                .clone()
                .or_else(|| base.compress_types.clone()),
            compress_min: self.compress_min.or(base.compress_min),
            precompressed: self
                .precompressed
                .clone()
                .or_else(|| base.precompressed.clone()),
            cache_control: self
                .cache_control
                .clone()
                .or_else(|| base.cache_control.clone()),
        }
    }

    /// The settings, defaults filled in.
    pub(super) fn settle(&self) -> Delivery {
        let d = Delivery::default();
        Delivery {
            compress: self.compress.clone().unwrap_or(d.compress),
            compress_types: self.compress_types.clone().unwrap_or(d.compress_types),
            compress_min: self.compress_min.unwrap_or(d.compress_min),
            precompressed: self.precompressed.clone().unwrap_or(d.precompressed),
            cache_control: self.cache_control.clone().or(d.cache_control),
        }
    }
}

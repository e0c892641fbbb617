//! Names and the references between sections: the names each kind of section defines
//! (`Names`: duplicates reported with the line of the first), what routes may refer to (`Refs`:
//! declared backends by index, and the implicit one-server backends of `address = ...` entries),
//! the readers of a reference (`reference`, `listener_ref`, `backend_ref`), and the check that
//! needs two whole sections (a `mode = "tcp"` listener without a `[[tcp_route]]`).

use std::cell::RefCell;
use std::collections::HashMap;

use super::problems::Problems;
use super::spanned::{string, At, Section, Val};
use crate::config::types::{Backend, Listener, ListenerMode, TcpRoute};
use crate::policy::upstream::Address;

/// Names defined by one kind of section, for duplicate and reference checks.
pub(super) struct Names {
    kind: &'static str,
    /// Name → where it was first defined.
    seen: HashMap<String, usize>,
}

impl Names {
    pub(super) fn new(kind: &'static str) -> Self {
        Names {
            kind,
            seen: HashMap::new(),
        }
    }

    /// Where `name` was first defined.
    pub(super) fn at(&self, name: &str) -> Option<usize> {
        self.seen.get(name).copied()
    }

    /// Whether `name` is defined.
    pub(super) fn has(&self, name: &str) -> bool {
        self.seen.contains_key(name)
    }

    pub(super) fn add(&mut self, name: &At<&str>, p: &mut Problems) {
        if let Some(first) = self.seen.get(name.v) {
            let line = p.line(*first);
            p.add(
                name.at,
                format!(
                    "duplicate {} name {:?} (first at line {line})",
                    self.kind, name.v
                ),
            );
        } else {
            self.seen.insert(name.v.to_string(), name.at);
        }
    }
}

/// A string that must be a name defined in `names`.
pub(super) fn reference(
    v: &Val<'_>,
    what: &str,
    names: &Names,
    p: &mut Problems,
) -> Option<String> {
    let s = string(v, what, p)?;
    if names.seen.contains_key(s.v) {
        return Some(s.v.to_string());
    }
    p.add(s.at, format!("unknown {} {:?}", names.kind, s.v));
    None
}

/// Names that `[[vhost]]` entries (and `[[tcp_route]]`, `[[tls_passthrough]]`) may refer to.
pub(super) struct Refs<'a> {
    pub(super) listeners: &'a Names,
    pub(super) backends: &'a Names,
    /// Declared backend name → index in `Config::backends`.
    pub(super) index: HashMap<String, usize>,
    /// One-server backends made for `address = ...` entries, indexed after the declared ones.
    implicit: RefCell<Vec<Backend>>,
    declared: usize,
}

impl<'a> Refs<'a> {
    /// The names defined so far, and the declared backends (`Config::backends` before any
    /// implicit one is added).
    pub(super) fn new(listeners: &'a Names, backends: &'a Names, declared: &[Backend]) -> Self {
        Refs {
            listeners,
            backends,
            index: declared
                .iter()
                .enumerate()
                .map(|(i, b)| (b.name.clone(), i))
                .collect(),
            implicit: RefCell::new(Vec::new()),
            declared: declared.len(),
        }
    }

    /// The one-server backends made for `address = ...` entries, in index order.
    pub(super) fn into_implicit(self) -> Vec<Backend> {
        self.implicit.into_inner()
    }

    /// The backend index for an `address = ...` route, sharing one per distinct address
    /// (`at`: the value's byte offset, for `check`'s warnings about names).
    pub(super) fn implicit_backend(&self, address: Address, text: &str, at: usize) -> usize {
        let mut implicit = self.implicit.borrow_mut();
        if let Some(i) = implicit.iter().position(|b| b.name == text) {
            return self.declared + i;
        }
        let mut b = Backend::single(address, text.to_string());
        b.servers[0].pos = (at, 0);
        implicit.push(b);
        self.declared + implicit.len() - 1
    }
}

/// A `listener = "<name>"` key, resolved to an index; `check` says what is wrong with it.
pub(super) fn listener_ref(
    s: &mut Section<'_, '_>,
    listeners: &[Listener],
    p: &mut Problems,
    check: impl Fn(&Listener) -> Option<&'static str>,
) -> Option<usize> {
    s.req("listener", p, |v, what, p| {
        let name = string(v, what, p)?;
        let Some(i) = listeners.iter().position(|l| l.name == name.v) else {
            p.add(name.at, format!("unknown listener {:?}", name.v));
            return None;
        };
        if let Some(problem) = check(&listeners[i]) {
            p.add(name.at, format!("listener {:?} {problem}", name.v));
            return None;
        }
        Some(i)
    })
}

pub(super) fn backend_ref(
    s: &mut Section<'_, '_>,
    refs: &Refs<'_>,
    p: &mut Problems,
) -> Option<usize> {
    let name = s.req("backend", p, |v, what, p| {
        reference(v, what, refs.backends, p)
    })?;
    refs.index.get(&name).copied()
}

/// Every `mode = "tcp"` listener needs a `[[tcp_route]]` (reported at the top of the file).
pub(super) fn tcp_listeners_routed(
    listeners: &[Listener],
    tcp_routes: &[TcpRoute],
    p: &mut Problems,
) {
    for (i, l) in listeners.iter().enumerate() {
        if l.mode == ListenerMode::Tcp && !tcp_routes.iter().any(|r| r.listener == i) {
            p.add(
                0,
                format!(
                    "listener {:?} has mode = \"tcp\" but no [[tcp_route]]",
                    l.name
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load::testing::*;

    #[test]
    fn unknown_references_and_handlers() {
        one_problem(
            &with(&["listeners = [\"main\", \"admin\"]"]),
            7,
            22,
            "unknown listener \"admin\"",
        );
        one_problem(
            &with(&["[[vhost.websocket]]", "uri = \"/ws\"", "backend = \"chat\""]),
            9,
            11,
            "unknown backend \"chat\"",
        );
        one_problem(
            &with(&[
                "[[vhost.context]]",
                "uri = \"/api/\"",
                "handler = \"proxy\"",
                "backend = \"api\"",
            ]),
            10,
            11,
            "unknown backend \"api\"",
        );
        one_problem(
            &with(&["[[vhost.context]]", "uri = \"/x\"", "handler = \"php\""]),
            9,
            11,
            "unknown handler \"php\": expected \"static\", \"echo\", \"proxy\", \"connect\", \"redirect\" or \"respond\"",
        );
        one_problem(
            &with(&["[[vhost.context]]", "uri = \"/x\"", "handler = \"proxy\""]),
            7,
            1,
            "handler \"proxy\" needs a \"backend\"",
        );
        one_problem(
            &with(&[
                "[[backend]]",
                "name = \"api\"",
                "servers = [\"1.2.3.4:5\"]",
                "[[vhost.context]]",
                "uri = \"/x\"",
                "handler = \"echo\"",
                "backend = \"api\"",
            ]),
            13,
            11,
            "\"backend\" is only allowed with handler = \"proxy\", not \"echo\"",
        );
    }

    #[test]
    fn duplicate_names() {
        let ps = problems(&[
            LISTENER[0],
            LISTENER[1],
            LISTENER[2],
            "[[listener]]",
            "name = \"main\"",
            "address = \"127.0.0.1:8081\"",
            "[[backend]]",
            "name = \"b\"",
            "servers = [\"1.2.3.4:5\"]",
            "[[backend]]",
            "name = \"b\"",
            "servers = [\"1.2.3.4:6\"]",
            "[[vhost]]",
            "name = \"v\"",
            "domains = [\"*\"]",
            "[[vhost]]",
            "name = \"v\"",
            "domains = [\"a.com\"]",
        ]);
        let got: Vec<_> = ps.iter().map(|(l, c, m)| (*l, *c, m.as_str())).collect();
        let want = [
            (5, 8, "duplicate listener name \"main\" (first at line 2)"),
            (11, 8, "duplicate backend name \"b\" (first at line 8)"),
            (17, 8, "duplicate vhost name \"v\" (first at line 14)"),
        ];
        assert_eq!(got, want);
    }
}

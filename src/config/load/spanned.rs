//! Walking toml's spanned tree: a [`Section`] is a table being read (every key asked for is
//! recorded; `finish` reports the rest as unknown, with the valid keys), `tables` the entries of
//! an array of tables, and the base readers (`string`, `boolean`, `integer`, `list`) turn a
//! spanned value into an [`At`] or a problem at the value's offset (`wrong_type`).
//!
//! Value readers have the shape `fn(value, what, problems) -> Option<T>`, where `what` names the
//! value in messages (`"\"name\""`, `an entry of "domains"`). Each reports its own problem.

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::problems::Problems;

pub(super) type Val<'i> = Spanned<DeValue<'i>>;

/// A value read from the file, with the byte offset where it starts.
pub(super) struct At<T> {
    pub(super) v: T,
    pub(super) at: usize,
}

pub(super) fn string<'a>(v: &'a Val<'_>, what: &str, p: &mut Problems) -> Option<At<&'a str>> {
    match v.get_ref() {
        DeValue::String(s) => Some(At {
            v: s.as_ref(),
            at: v.span().start,
        }),
        _ => wrong_type(v, "a string", what, p),
    }
}

pub(super) fn boolean(v: &Val<'_>, what: &str, p: &mut Problems) -> Option<bool> {
    match v.get_ref() {
        DeValue::Boolean(b) => Some(*b),
        _ => wrong_type(v, "true or false", what, p),
    }
}

pub(super) fn integer(v: &Val<'_>, what: &str, p: &mut Problems) -> Option<At<i64>> {
    let DeValue::Integer(i) = v.get_ref() else {
        return wrong_type(v, "an integer", what, p);
    };
    let at = v.span().start;
    match i64::from_str_radix(i.as_str(), i.radix()) {
        Ok(n) => Some(At { v: n, at }),
        Err(_) => {
            p.add(at, format!("{what} is out of range"));
            None
        }
    }
}

/// An array whose entries each go through `each`; `None` if it or any entry is wrong.
pub(super) fn list<'a, 'i, T>(
    v: &'a Val<'i>,
    what: &str,
    required: bool,
    p: &mut Problems,
    mut each: impl FnMut(&'a Val<'i>, &str, &mut Problems) -> Option<T>,
) -> Option<Vec<T>> {
    let DeValue::Array(items) = v.get_ref() else {
        return wrong_type(v, "an array", what, p);
    };
    if required && items.is_empty() {
        p.add(v.span().start, format!("{what} must not be empty"));
        return None;
    }
    let entry = format!("an entry of {what}");
    let converted: Vec<Option<T>> = items.iter().map(|item| each(item, &entry, p)).collect();
    converted.into_iter().collect()
}

pub(super) fn wrong_type<T>(
    v: &Val<'_>,
    expected: &str,
    what: &str,
    p: &mut Problems,
) -> Option<T> {
    let found = match v.get_ref() {
        DeValue::String(s) => format!("{:?}", s.as_ref()),
        DeValue::Integer(i) => i.to_string(),
        DeValue::Float(f) => f.to_string(),
        DeValue::Boolean(b) => b.to_string(),
        DeValue::Datetime(d) => d.to_string(),
        DeValue::Array(_) => "an array".to_string(),
        DeValue::Table(_) => "a table".to_string(),
    };
    p.add(
        v.span().start,
        format!("expected {expected} for {what}, found {found}"),
    );
    None
}

/// A table being read. Every key asked for is recorded; `finish` reports the rest as unknown.
pub(super) struct Section<'a, 'i> {
    table: &'a DeTable<'i>,
    /// Where the table starts (its `[header]`), for "missing key" problems.
    pub(super) at: usize,
    /// `"[timeouts]"`, `"[[vhost]]"`; empty for the top level.
    name: &'static str,
    known: Vec<&'static str>,
}

impl<'a, 'i> Section<'a, 'i> {
    pub(super) fn new(table: &'a DeTable<'i>, at: usize, name: &'static str) -> Self {
        Section {
            table,
            at,
            name,
            known: Vec::new(),
        }
    }

    pub(super) fn of(v: &'a Val<'i>, name: &'static str, p: &mut Problems) -> Option<Self> {
        match v.get_ref() {
            DeValue::Table(t) => Some(Section::new(t, v.span().start, name)),
            _ => wrong_type(v, "a table", name, p),
        }
    }

    /// A key's value without recording it as known (for positions only).
    pub(super) fn peek(&self, key: &str) -> Option<&'a Val<'i>> {
        self.table.get(key)
    }

    pub(super) fn get(&mut self, key: &'static str) -> Option<&'a Val<'i>> {
        if !self.known.contains(&key) {
            self.known.push(key);
        }
        self.table.get(key)
    }

    /// An optional key, converted.
    pub(super) fn opt<T>(
        &mut self,
        key: &'static str,
        p: &mut Problems,
        convert: impl FnOnce(&'a Val<'i>, &str, &mut Problems) -> Option<T>,
    ) -> Option<T> {
        let v = self.get(key)?;
        convert(v, &format!("{key:?}"), p)
    }

    /// A required key, converted; its absence is a problem at the table's start.
    pub(super) fn req<T>(
        &mut self,
        key: &'static str,
        p: &mut Problems,
        convert: impl FnOnce(&'a Val<'i>, &str, &mut Problems) -> Option<T>,
    ) -> Option<T> {
        if self.table.get(key).is_none() {
            p.add(
                self.at,
                format!("missing required key {key:?} {}", self.place()),
            );
        }
        self.opt(key, p, convert)
    }

    fn place(&self) -> String {
        if self.name.is_empty() {
            "at the top level".to_string()
        } else {
            format!("in {}", self.name)
        }
    }

    /// Reports every key that was never asked for.
    pub(super) fn finish(self, p: &mut Problems) {
        for key in self.table.keys() {
            let k: &str = key.get_ref();
            if !self.known.contains(&k) {
                let msg = format!(
                    "unknown key {k:?} {}; valid keys: {}",
                    self.place(),
                    self.known.join(", ")
                );
                p.add(key.span().start, msg);
            }
        }
    }
}

/// The entries of an array of tables (`[[listener]]`).
pub(super) fn tables<'a, 'i>(
    v: &'a Val<'i>,
    name: &'static str,
    p: &mut Problems,
) -> Vec<Section<'a, 'i>> {
    let DeValue::Array(items) = v.get_ref() else {
        return wrong_type(v, "an array of tables", name, p).unwrap_or_default();
    };
    items
        .iter()
        .filter_map(|item| Section::of(item, name, p))
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::config::load::testing::*;

    #[test]
    fn unknown_keys_at_every_level() {
        one_problem(
            &with(&["[tsl]", "cert = \"x\""]),
            7,
            2,
            "unknown key \"tsl\" at the top level; valid keys: runtime, timeouts, limits, listener, backend, vhost",
        );
        one_problem(
            &with(&["[timeouts]", "foo = \"1s\""]),
            8,
            1,
            "unknown key \"foo\" in [timeouts]; valid keys: header, keepalive, connect, tunnel_idle",
        );
        one_problem(
            &with(&["[runtime]", "  corez = 2"]),
            8,
            3,
            "unknown key \"corez\" in [runtime]",
        );
        one_problem(
            &with(&["[[runtime.core]]", "id = 0", "x = 1"]),
            9,
            1,
            "in [[runtime.core]]",
        );
        one_problem(
            &with(&["listeners2 = []"]),
            7,
            1,
            "unknown key \"listeners2\" in [[vhost]]",
        );
        one_problem(
            &with(&[
                "[[vhost.websocket]]",
                "uri = \"/\"",
                "address = \"1.2.3.4:5\"",
                "timeout = 3",
            ]),
            10,
            1,
            "unknown key \"timeout\" in [[vhost.websocket]]; valid keys: uri, backend, address",
        );
        one_problem(
            &with(&[
                "[[vhost.context]]",
                "uri = \"/\"",
                "handler = \"echo\"",
                "root = 3",
            ]),
            10,
            1,
            "unknown key \"root\" in [[vhost.context]]",
        );
        one_problem(
            &with(&["[limits.x]"]),
            7,
            9,
            "unknown key \"x\" in [limits]",
        );
    }

    #[test]
    fn wrong_types() {
        one_problem(
            &with(&["[runtime]", "pin = \"yes\""]),
            8,
            7,
            "expected true or false for \"pin\", found \"yes\"",
        );
        one_problem(
            &with(&["[runtime]", "cores = 1.5"]),
            8,
            9,
            "expected an integer or \"auto\" for \"cores\", found 1.5",
        );
        one_problem(
            &with(&["[runtime]", "cores = \"many\""]),
            8,
            9,
            "found \"many\"",
        );
        one_problem(
            &with(&["[timeouts]", "header = 10"]),
            8,
            10,
            "expected a string for \"header\", found 10",
        );
        one_problem(
            &["timeouts = 5", LISTENER[0], LISTENER[1], LISTENER[2]],
            1,
            12,
            "expected a table for [timeouts], found 5",
        );
        one_problem(&with(&["domains2 = 1"]), 7, 1, "unknown key");
        one_problem(
            &with(&["[[vhost]]", "name = 3", "domains = [\"a\"]"]),
            8,
            8,
            "expected a string for \"name\", found 3",
        );
        one_problem(
            &with(&["[[vhost]]", "name = \"x\"", "domains = \"a\""]),
            9,
            11,
            "expected an array for \"domains\", found \"a\"",
        );
        one_problem(
            &with(&["[[vhost]]", "name = \"x\"", "domains = [\"a\", 7]"]),
            9,
            17,
            "expected a string for an entry of \"domains\", found 7",
        );
        one_problem(
            &with(&["[[backend]]", "name = \"b\"", "servers = [true]"]),
            9,
            12,
            "expected a string for an entry of \"servers\", found true",
        );
        one_problem(
            &["[listener]", "name = \"main\"", "address = \"127.0.0.1:1\""],
            1,
            1,
            "expected an array of tables for [[listener]], found a table",
        );
    }
}

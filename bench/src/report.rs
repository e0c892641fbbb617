//! `ringway-bench`'s report: named values printed as an aligned table or as one JSON line.

enum Val {
    S(String),
    I(u64),
    F(f64, usize),
}

#[derive(Default)]
pub(crate) struct Report {
    fields: Vec<(&'static str, Val)>,
}

impl Report {
    pub(crate) fn s(&mut self, k: &'static str, v: &str) {
        self.fields.push((k, Val::S(v.to_string())));
    }
    pub(crate) fn i(&mut self, k: &'static str, v: u64) {
        self.fields.push((k, Val::I(v)));
    }
    pub(crate) fn f(&mut self, k: &'static str, v: f64, prec: usize) {
        self.fields.push((k, Val::F(v, prec)));
    }

    pub(crate) fn json(&self) -> String {
        let mut s = String::from("{");
        for (n, (k, v)) in self.fields.iter().enumerate() {
            if n > 0 {
                s.push(',');
            }
            s.push('"');
            s.push_str(k);
            s.push_str("\":");
            match v {
                Val::S(x) => s.push_str(&json_str(x)),
                Val::I(x) => s.push_str(&x.to_string()),
                Val::F(x, p) if x.is_finite() => s.push_str(&format!("{x:.p$}")),
                Val::F(..) => s.push_str("null"),
            }
        }
        s.push('}');
        s
    }

    pub(crate) fn table(&self) -> String {
        let w = self.fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut s = String::new();
        for (k, v) in &self.fields {
            let v = match v {
                Val::S(x) => x.clone(),
                Val::I(x) => x.to_string(),
                Val::F(x, p) => format!("{x:.p$}"),
            };
            s.push_str(&format!("{k:<w$}  {v}\n"));
        }
        s
    }
}

fn json_str(x: &str) -> String {
    let mut s = String::with_capacity(x.len() + 2);
    s.push('"');
    for ch in x.chars() {
        match ch {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            c if (c as u32) < 0x20 => s.push_str(&format!("\\u{:04x}", c as u32)),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_escapes_and_formats() {
        let mut r = Report::default();
        r.s("mode", "ec\"ho");
        r.i("conns", 64);
        r.f("msgs_per_s", 1234.5678, 1);
        r.f("nan", f64::NAN, 1);
        assert_eq!(
            r.json(),
            r#"{"mode":"ec\"ho","conns":64,"msgs_per_s":1234.6,"nan":null}"#
        );
    }
}

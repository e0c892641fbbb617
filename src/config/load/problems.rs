//! Problems and positions: what `load` reports (`Problem`, `LINE:COL: message`), the problems
//! found so far by byte offset (`Problems`), and byte offset → 1-based line and column.

/// One problem found in a config file, with the 1-based line and column (in characters) of the
/// offending value, or of the key for unknown keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// Problems found so far, by byte offset.
pub(super) struct Problems {
    pub(super) found: Vec<(usize, String)>,
    /// Warnings: the config is valid, but `ringway check` says these.
    pub(super) warned: Vec<(usize, String)>,
    line_starts: Vec<usize>,
}

impl Problems {
    pub(super) fn new(text: &str) -> Self {
        Problems {
            found: Vec::new(),
            warned: Vec::new(),
            line_starts: line_starts(text),
        }
    }

    pub(super) fn add(&mut self, at: usize, message: impl Into<String>) {
        self.found.push((at, message.into()));
    }

    pub(super) fn warn(&mut self, at: usize, message: impl Into<String>) {
        self.warned.push((at, message.into()));
    }

    /// The warnings, sorted, at their lines and columns.
    pub(super) fn warnings(&mut self, text: &str) -> Vec<crate::config::types::Warning> {
        self.warned.sort_by_key(|(at, _)| *at);
        self.warned
            .drain(..)
            .map(|(at, message)| {
                let (line, col) = position(text, &self.line_starts, at);
                crate::config::types::Warning { line, col, message }
            })
            .collect()
    }

    /// 1-based line of a byte offset.
    pub(super) fn line(&self, at: usize) -> usize {
        self.line_starts.partition_point(|&start| start <= at)
    }

    pub(super) fn into_sorted(mut self, text: &str) -> Vec<Problem> {
        let found = std::mem::take(&mut self.found);
        self.sorted(found, text)
    }

    fn sorted(&self, mut list: Vec<(usize, String)>, text: &str) -> Vec<Problem> {
        list.sort_by_key(|(at, _)| *at);
        let to_problem = |(at, message)| {
            let (line, col) = position(text, &self.line_starts, at);
            Problem { line, col, message }
        };
        list.into_iter().map(to_problem).collect()
    }
}

/// Byte offsets where lines start.
pub(super) fn line_starts(text: &str) -> Vec<usize> {
    let newlines = text.match_indices('\n').map(|(i, _)| i + 1);
    std::iter::once(0).chain(newlines).collect()
}

/// 1-based line and column (in characters) of a byte offset.
pub(super) fn position(text: &str, line_starts: &[usize], at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let line = line_starts.partition_point(|&start| start <= at).max(1);
    let start = line_starts.get(line - 1).copied().unwrap_or(0);
    let col = text
        .get(start..at)
        .map_or(at - start, |s| s.chars().count());
    (line, col + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_chars() {
        let text = "ab\ncé d\n\nx";
        let starts = line_starts(text);
        assert_eq!(position(text, &starts, 0), (1, 1));
        assert_eq!(position(text, &starts, 3), (2, 1));
        assert_eq!(position(text, &starts, 6), (2, 3));
        assert_eq!(position(text, &starts, 9), (3, 1));
        assert_eq!(position(text, &starts, 10), (4, 1));
        assert_eq!(position(text, &starts, 99), (4, 2));
    }
}

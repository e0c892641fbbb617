//! The config loader on arbitrary text: `ringway check` must never panic, and every problem
//! it reports has a position inside the text.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let dir = std::env::temp_dir().join("ringway-fuzz-config");
    let _ = std::fs::create_dir_all(dir.join("www"));
    if let Err(problems) = ringway::config::load_str(text, &dir) {
        let lines = text.lines().count().max(1) + 1;
        for p in problems {
            assert!(
                p.line >= 1 && p.line <= lines,
                "line {} of {lines}: {}",
                p.line,
                p.message
            );
        }
    }
});

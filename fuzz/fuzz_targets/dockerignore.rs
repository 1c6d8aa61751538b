//! `.dockerignore` patterns and paths: parse the first part, match every line of the second;
//! nothing may panic, and a path is never both excluded and outside every pattern's reach.

#![no_main]

use kiln_worker::context::ignore::Ignore;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (patterns, paths) = text.split_once("\n--\n").unwrap_or((text, "a/b\nx"));
    let Ok(ignore) = Ignore::parse(patterns) else {
        return;
    };
    for path in paths.lines() {
        let clean = kiln_worker::context::ignore::clean(path);
        let _ = ignore.excludes(&clean);
        let _ = ignore.could_reinclude_inside(&clean);
    }
    if ignore.is_empty() {
        assert!(!ignore.excludes("any/path"));
    }
});

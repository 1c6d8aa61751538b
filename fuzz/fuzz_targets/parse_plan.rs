//! Parse, plan and lower arbitrary text: nothing may panic, whatever the input.

#![no_main]

use kiln_worker::dockerfile::expand::{EnvList, Lexer};
use kiln_worker::image::config::ImageConfig;
use kiln_worker::plan::{self, PlanOptions, Platform};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A first line `#!target=NAME` picks a target; `#!arg=K=V` adds a build argument.
    let mut opts = PlanOptions {
        build_platform: Platform::new("linux", "amd64", ""),
        target_platform: Platform::new("linux", "amd64", ""),
        ..PlanOptions::default()
    };
    for line in text.lines().take(3) {
        if let Some(t) = line.strip_prefix("#!target=") {
            opts.target = Some(t.to_string());
        } else if let Some((k, v)) = line.strip_prefix("#!arg=").and_then(|a| a.split_once('=')) {
            opts.build_args.insert(k.to_string(), v.to_string());
        }
    }
    match plan::from_text("Dockerfile", text, &opts) {
        Ok(p) => {
            let _ = format!("{:?}", plan::summary::summarize(&p));
            let _ = plan::summary::render(&p);
            for &i in &p.order {
                let _ = plan::lower(&p, i, &ImageConfig::default());
                let mut base = ImageConfig::default();
                base.env.push("A=1".into());
                base.working_dir = "rel".into();
                base.on_build.extend(text.lines().take(4).map(str::to_string));
                let _ = plan::lower(&p, i, &base);
            }
        }
        Err(d) => {
            let _ = d.to_string();
        }
    }
    let env = EnvList::from_kv(&["A=x y".to_string(), "B=".to_string()]);
    for escape in ['\\', '`'] {
        let mut lex = Lexer::new(escape);
        let _ = lex.word(text, &env);
        lex.raw_quotes = true;
        lex.skip_unset = true;
        let _ = lex.words(text, &env);
    }
});

//! BuildKit's word expansion (`$a`, `${a:-b}`, `${a#pat}`, quotes, escapes) on arbitrary text,
//! with both escape characters and every lexer mode: nothing may panic or hang.

#![no_main]

use kiln_worker::dockerfile::expand::{EnvList, Lexer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The first line is the environment (`K=V` separated by spaces), the rest the word.
    let (env, word) = text.split_once('\n').unwrap_or(("A=1 B=x*y", text));
    let vars: Vec<String> = env.split(' ').map(str::to_string).collect();
    let env = EnvList::from_kv(&vars);
    for escape in ['\\', '`'] {
        for (raw, skip) in [(false, false), (true, false), (false, true), (true, true)] {
            let mut lex = Lexer::new(escape);
            lex.raw_quotes = raw;
            lex.skip_unset = skip;
            let _ = lex.word(word, &env);
            let _ = lex.words(word, &env);
        }
    }
});

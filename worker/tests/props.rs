//! Property tests of the front end: expansion and planning never panic, and words without
//! anything to expand are left alone.

use kiln_worker::dockerfile::expand::{EnvList, Lexer};
use kiln_worker::image::config::ImageConfig;
use kiln_worker::plan::{self, PlanOptions, Platform};
use proptest::prelude::*;

/// Text made mostly of the characters the lexer treats specially.
fn shell_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("$".to_string()),
            Just("${".to_string()),
            Just("}".to_string()),
            Just(":-".to_string()),
            Just(":+".to_string()),
            Just("-".to_string()),
            Just("+".to_string()),
            Just("?".to_string()),
            Just("#".to_string()),
            Just("%".to_string()),
            Just("/".to_string()),
            Just("*".to_string()),
            Just("'".to_string()),
            Just("\"".to_string()),
            Just("\\".to_string()),
            Just("`".to_string()),
            Just(" ".to_string()),
            Just("A".to_string()),
            Just("B".to_string()),
            Just("1".to_string()),
            "[a-z_]{1,3}",
            "\\PC{1,2}",
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

fn env() -> impl Strategy<Value = EnvList> {
    prop::collection::vec(("[AB_a-z]{1,2}", "[ a-z$/*.]{0,6}"), 0..5).prop_map(|kvs| {
        let mut env = EnvList::new();
        for (k, v) in kvs {
            env.set(&k, &v);
        }
        env
    })
}

fn lexer() -> impl Strategy<Value = Lexer> {
    (
        prop_oneof![Just('\\'), Just('`')],
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(escape, raw_quotes, raw_escapes, skip_quotes, skip_unset)| Lexer {
                escape,
                raw_quotes,
                raw_escapes,
                skip_quotes,
                skip_unset,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn expansion_never_panics(word in shell_text(), env in env(), lex in lexer()) {
        let _ = lex.word(&word, &env);
        let _ = lex.words(&word, &env);
    }

    #[test]
    fn a_plain_word_expands_to_itself(
        word in "[^$'\"\\\\`]{0,40}",
        env in env(),
        lex in lexer(),
    ) {
        let out = lex.word(&word, &env).expect("nothing to fail on");
        prop_assert_eq!(out.value, word);
    }

    #[test]
    fn plain_words_split_at_whitespace(word in "[^$'\"\\\\`]{0,40}", env in env()) {
        let words = Lexer::new('\\').words(&word, &env).expect("nothing to fail on");
        let expected: Vec<&str> = word.split(char::is_whitespace).filter(|w| !w.is_empty()).collect();
        prop_assert_eq!(words, expected);
    }
}

/// Dockerfile-shaped text: instructions, flags, quotes, continuations, heredocs, variables.
fn dockerfile_text() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("FROM ".to_string()),
        Just("FROM alpine AS b\n".to_string()),
        Just("FROM b\n".to_string()),
        Just("FROM scratch\n".to_string()),
        Just("ARG ".to_string()),
        Just("ENV ".to_string()),
        Just("RUN ".to_string()),
        Just("COPY ".to_string()),
        Just("ADD ".to_string()),
        Just("CMD ".to_string()),
        Just("ENTRYPOINT ".to_string()),
        Just("WORKDIR ".to_string()),
        Just("USER ".to_string()),
        Just("EXPOSE ".to_string()),
        Just("VOLUME ".to_string()),
        Just("LABEL ".to_string()),
        Just("SHELL ".to_string()),
        Just("HEALTHCHECK ".to_string()),
        Just("ONBUILD ".to_string()),
        Just("STOPSIGNAL ".to_string()),
        Just("MAINTAINER ".to_string()),
        Just("--mount=".to_string()),
        Just("type=cache,".to_string()),
        Just("type=secret,".to_string()),
        Just("type=ssh,".to_string()),
        Just("target=/x,".to_string()),
        Just("from=b,".to_string()),
        Just("--from=".to_string()),
        Just("--from=0 ".to_string()),
        Just("--chown=".to_string()),
        Just("--chmod=".to_string()),
        Just("--interval=".to_string()),
        Just("--platform=".to_string()),
        Just("<<EOF".to_string()),
        Just("<<-'EOF'".to_string()),
        Just("EOF\n".to_string()),
        Just("[\"a\", \"b\"]".to_string()),
        Just("${A:-x}".to_string()),
        Just("$A".to_string()),
        Just("A=1 ".to_string()),
        Just("# escape=`\n".to_string()),
        Just("# syntax=docker/dockerfile:1\n".to_string()),
        Just("# comment\n".to_string()),
        Just("\\\n".to_string()),
        Just("`\n".to_string()),
        Just("\n".to_string()),
        Just("\t".to_string()),
        Just(" ".to_string()),
        Just("\"".to_string()),
        Just("'".to_string()),
        "[a-z/.:=,]{1,6}",
        "\\PC{1,3}",
    ];
    prop::collection::vec(token, 0..60).prop_map(|t| t.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(800))]

    #[test]
    fn parse_and_plan_never_panic(text in dockerfile_text(), target in prop::option::of("[a-z]{1,2}")) {
        let opts = PlanOptions {
            target,
            build_platform: Platform::new("linux", "amd64", ""),
            target_platform: Platform::new("linux", "amd64", ""),
            ..PlanOptions::default()
        };
        if let Ok(p) = plan::from_text("Dockerfile", &text, &opts) {
            let _ = plan::summary::render(&p);
            for &i in &p.order {
                let mut base = ImageConfig::default();
                base.on_build.push(text.lines().next().unwrap_or_default().to_string());
                let _ = plan::lower(&p, i, &base);
            }
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = plan::from_text("Dockerfile", &text, &PlanOptions::default());
    }
}

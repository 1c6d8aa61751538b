//! The tty progress view in a real terminal: `kiln build` runs in a tmux pane (started with
//! `send-keys`, as a user types it), and `capture-pane` reads the screen while it runs and at
//! the end. The view must redraw in place (one header, each step's line updated, not
//! appended) and end clean (the final view with FINISHED, no leftover output lines, the
//! summary after it).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::Env;

/// A tmux server of its own (its own socket), killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(name: &str, cols: u16, rows: u16) -> Tmux {
        let t = Tmux {
            socket: format!("kiln-test-{name}-{}", std::process::id()),
        };
        let out = t
            .cmd()
            .args(["-f", "/dev/null", "new-session", "-d", "-s", "kiln"])
            .args(["-x", &cols.to_string(), "-y", &rows.to_string()])
            .args(["bash", "--norc", "--noprofile"])
            .output()
            .expect("tmux runs (make test installs it)");
        assert!(out.status.success(), "tmux: {}", common::text(&out));
        t
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]);
        c
    }

    fn send(&self, keys: &str) {
        let out = self
            .cmd()
            .args(["send-keys", "-t", "kiln", keys, "Enter"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", common::text(&out));
    }

    /// The visible screen, without colours.
    fn screen(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "kiln"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The screen, once `ready` says so (at most `timeout`).
    fn wait(&self, timeout: Duration, ready: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if ready(&s) {
                return s;
            }
            assert!(start.elapsed() < timeout, "timed out; the screen:\n{s}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}

/// The timer at the end of the one screen line that contains `what`.
fn timer(screen: &str, what: &str) -> f64 {
    let lines: Vec<&str> = screen.lines().filter(|l| l.contains(what)).collect();
    assert_eq!(lines.len(), 1, "{what:?} is not on one line:\n{screen}");
    let t = lines[0].trim_end().rsplit(' ').next().unwrap();
    t.trim_end_matches('s')
        .parse()
        .unwrap_or_else(|_| panic!("no timer on {:?}", lines[0]))
}

#[test]
fn the_tty_view_redraws_in_place_and_ends_clean() {
    assert!(
        Command::new("tmux").arg("-V").output().is_ok(),
        "tmux is missing: make test installs it"
    );
    let env = Env::new("progress-tty", false);
    let ctx = env.context(
        "slow",
        &[(
            "Dockerfile",
            "FROM kiln-ref/busybox:1 AS a\n\
             RUN for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo a-line-$i; sleep 0.25; done\n\
             FROM kiln-ref/busybox:1\n\
             COPY --from=a /etc/motd /motd\n\
             RUN for i in 1 2 3 4; do echo b-line-$i; sleep 0.25; done\n",
        )],
    );
    let mut args = env.build_args(&env.state, &ctx, &["--no-cache"]);
    // The terminal decides: no --progress.
    args.retain(|a| a != "--progress=plain");
    let script = env.dir.join("run.sh");
    let command: Vec<String> = std::iter::once(common::kiln_bin().display().to_string())
        .chain(args)
        .map(|a| format!("'{a}'"))
        .collect();
    std::fs::write(
        &script,
        format!("{} >/dev/null\necho KILN-EXIT=$?\n", command.join(" ")),
    )
    .unwrap();

    let tmux = Tmux::start("tty", 120, 40);
    tmux.send(&format!("bash {}", script.display()));
    let running = |s: &str| s.contains("=> => # a-line-3");
    let first = tmux.wait(Duration::from_secs(60), running);
    std::thread::sleep(Duration::from_millis(700));
    let second = tmux.screen();
    for screen in [&first, &second] {
        assert_eq!(
            screen.matches("[+] Building").count(),
            1,
            "the view was appended, not redrawn:\n{screen}"
        );
        assert!(!screen.contains("FINISHED"), "{screen}");
    }
    // The same line, updated: its timer moved on, and newer output replaced older.
    let what = "=> [a 2/2] RUN for i in";
    let (t1, t2) = (timer(&first, what), timer(&second, what));
    assert!(
        t2 > t1,
        "the step's timer did not move ({t1} then {t2}):\n{first}\n{second}"
    );
    let newest = |s: &str| {
        s.lines()
            .filter_map(|l| l.trim().strip_prefix("=> => # a-line-"))
            .filter_map(|n| n.trim().parse::<u32>().ok())
            .max()
            .unwrap_or(0)
    };
    assert!(newest(&second) > newest(&first), "{first}\n{second}");
    assert!(
        first
            .lines()
            .filter(|l| l.contains("=> => # a-line-"))
            .count()
            <= 6,
        "{first}"
    );

    let last = tmux.wait(Duration::from_secs(120), |s| s.contains("KILN-EXIT="));
    assert!(last.contains("KILN-EXIT=0"), "{last}");
    assert_eq!(last.matches("[+] Building").count(), 1, "{last}");
    let header = last.lines().find(|l| l.contains("[+] Building")).unwrap();
    assert!(header.contains("FINISHED"), "{header}");
    // Every step once, finished; no output line left; nothing half-drawn.
    assert_eq!(last.matches(what).count(), 1, "{last}");
    assert_eq!(
        last.matches("=> [stage-1 3/3] RUN for i in").count(),
        1,
        "{last}"
    );
    assert_eq!(
        last.matches("=> [stage-1 2/3] COPY --from=a").count(),
        1,
        "{last}"
    );
    assert!(!last.contains("=> => #"), "output lines were left:\n{last}");
    assert!(
        !last.contains("[2K") && !last.contains("[J") && !last.contains('\u{1b}'),
        "{last}"
    );
    // The summary comes after the view, then the shell.
    let lines: Vec<&str> = last.lines().collect();
    let view_end = lines.iter().rposition(|l| l.starts_with(" => ")).unwrap();
    let summary = lines
        .iter()
        .position(|l| l.starts_with("image sha256:"))
        .unwrap();
    let exit = lines
        .iter()
        .position(|l| l.contains("KILN-EXIT=0"))
        .unwrap();
    assert!(view_end < summary && summary < exit, "{last}");
    let header_at = lines
        .iter()
        .position(|l| l.contains("[+] Building"))
        .unwrap();
    assert!(
        lines[header_at..=view_end]
            .iter()
            .all(|l| l.starts_with(" => ") || l.contains("[+] Building")),
        "a stray line inside the view:\n{last}"
    );
}

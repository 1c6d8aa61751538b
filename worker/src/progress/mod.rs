//! Build progress, rendered like BuildKit's: each step numbered with its stage, position and
//! Dockerfile instruction, its output streamed with timestamps, then `DONE 1.2s` or `CACHED`.
//!
//! - `plain`: lines for logs (`#5 [build 2/3] RUN make`, `#5 0.142 ...`, `#5 DONE 1.2s`);
//! - `tty`: the live view `docker buildx build` draws on a terminal, redrawn in place
//!   ([`tty`]), ending with every step and its time;
//! - `json`: one JSON object per event, for the operator and other programs.

pub mod tty;

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plain,
    Tty,
    Json,
    Quiet,
}

impl Mode {
    /// `auto`: a terminal gets `tty`, anything else `plain`.
    pub fn parse(text: &str) -> Option<Mode> {
        Some(match text {
            "plain" => Mode::Plain,
            "tty" => Mode::Tty,
            "json" | "rawjson" => Mode::Json,
            "quiet" => Mode::Quiet,
            "auto" => {
                if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                    Mode::Tty
                } else {
                    Mode::Plain
                }
            }
            _ => return None,
        })
    }
}

/// One progress event.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase", tag = "event")]
pub enum Event {
    /// A vertex (a step, or an internal action such as loading the context) started.
    Start {
        id: usize,
        name: String,
    },
    /// Output of a running step.
    Output {
        id: usize,
        stream: &'static str,
        data: String,
    },
    /// The step's result came from the cache.
    Cached {
        id: usize,
    },
    Done {
        id: usize,
        seconds: f64,
    },
    Error {
        id: usize,
        message: String,
    },
    /// A message that belongs to no step.
    Info {
        message: String,
    },
}

/// Where events go.
pub trait Sink: Send + Sync {
    fn event(&self, event: Event);
}

/// A sink that renders events to a writer.
pub struct Printer<W: Write + Send + 'static> {
    mode: Mode,
    started: Instant,
    inner: Arc<Mutex<PrinterState<W>>>,
    /// The tty view's redraw thread.
    /// The tty redraw thread, and the sender whose drop stops it at once.
    ticker: Mutex<Option<(crossbeam_channel::Sender<()>, JoinHandle<()>)>>,
}

struct PrinterState<W> {
    out: W,
    starts: std::collections::HashMap<usize, Instant>,
    /// Partial output lines, per step, waiting for their newline.
    partial: std::collections::HashMap<usize, String>,
    /// The tty view, in `tty` mode.
    view: Option<Live>,
}

/// The terminal's size: columns and rows.
type Size = Box<dyn Fn() -> (usize, usize) + Send>;

/// The tty view and what is on the screen of it.
struct Live {
    view: tty::View,
    /// Lines drawn last time: the cursor is on the line after them.
    drawn: usize,
    /// Something changed since the last draw.
    dirty: bool,
    /// The final view is drawn: nothing more is.
    finished: bool,
    size: Size,
}

/// How often the tty view is redrawn (timers move).
const TICK: Duration = Duration::from_millis(100);

impl<W: Write + Send + 'static> Printer<W> {
    pub fn new(mode: Mode, out: W) -> Self {
        Self::sized(mode, out, Box::new(|| (80, 24)))
    }

    /// A printer whose tty view fits a terminal of the size `size` says.
    pub fn sized(mode: Mode, out: W, size: Size) -> Self {
        let started = Instant::now();
        let view = (mode == Mode::Tty).then(|| Live {
            view: tty::View::new(started),
            drawn: 0,
            dirty: true,
            finished: false,
            size,
        });
        let p = Printer {
            mode,
            started,
            inner: Arc::new(Mutex::new(PrinterState {
                out,
                starts: Default::default(),
                partial: Default::default(),
                view,
            })),
            ticker: Mutex::new(None),
        };
        if mode == Mode::Tty {
            let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
            let inner = p.inner.clone();
            let handle = std::thread::spawn(move || {
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(TICK)
                {
                    let mut st = inner.lock().unwrap_or_else(|e| e.into_inner());
                    let redraw = st
                        .view
                        .as_ref()
                        .is_some_and(|l| !l.finished && (l.dirty || l.view.running()));
                    if redraw {
                        draw(&mut st, false);
                    }
                }
            });
            *p.ticker.lock().unwrap_or_else(|e| e.into_inner()) = Some((stop, handle));
        }
        p
    }

    /// End the tty view: its last draw, with every step, `FINISHED` and the cursor below it,
    /// so that what is printed next starts on a clean line. Nothing in other modes, nor when
    /// done already.
    pub fn finish(&self) {
        let ticker = self.ticker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((stop, handle)) = ticker {
            drop(stop);
            let _ = handle.join();
        }
        let mut st = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if st.view.as_ref().is_some_and(|l| !l.finished) {
            draw(&mut st, true);
            if let Some(l) = st.view.as_mut() {
                l.finished = true;
            }
        }
    }
}

impl<W: Write + Send + 'static> Drop for Printer<W> {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Draw the tty view over its last draw: the cursor goes up to its first line, each line is
/// cleared and written, and what is left below (a view that shrank) is cleared.
fn draw<W: Write>(st: &mut PrinterState<W>, last: bool) {
    let Some(live) = st.view.as_mut() else {
        return;
    };
    let (cols, rows) = (live.size)();
    let lines = live.view.lines(
        Instant::now(),
        cols.saturating_sub(1).max(20),
        rows.max(3),
        last,
    );
    let mut buf = String::new();
    if live.drawn > 0 {
        buf.push_str(&format!("\x1b[{}A", live.drawn));
    }
    for l in &lines {
        let (on, off) = match l.style {
            tty::Style::Header => ("\x1b[1;34m", "\x1b[0m"),
            tty::Style::Running => ("", ""),
            tty::Style::Done => ("\x1b[34m", "\x1b[0m"),
            tty::Style::Error => ("\x1b[31m", "\x1b[0m"),
            tty::Style::Log => ("\x1b[2m", "\x1b[0m"),
        };
        buf.push_str("\r\x1b[2K");
        buf.push_str(on);
        buf.push_str(&l.text);
        buf.push_str(off);
        buf.push('\n');
    }
    buf.push_str("\x1b[J");
    live.drawn = lines.len();
    live.dirty = false;
    let _ = st.out.write_all(buf.as_bytes());
    let _ = st.out.flush();
}

impl Printer<io::Stderr> {
    /// A printer on standard error; its tty view fits the terminal there.
    pub fn stderr(mode: Mode) -> Self {
        Printer::sized(
            mode,
            io::stderr(),
            Box::new(|| {
                rustix::termios::tcgetwinsize(io::stderr())
                    .ok()
                    .filter(|w| w.ws_col > 0 && w.ws_row > 0)
                    .map_or((80, 24), |w| (usize::from(w.ws_col), usize::from(w.ws_row)))
            }),
        )
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

impl<W: Write + Send + 'static> Sink for Printer<W> {
    fn event(&self, event: Event) {
        if self.mode == Mode::Quiet {
            return;
        }
        let mut st = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if self.mode == Mode::Json {
            if let Ok(line) = serde_json::to_string(&event) {
                let _ = writeln!(st.out, "{line}");
            }
            return;
        }
        if self.mode == Mode::Tty {
            let since = secs(self.started.elapsed());
            let Some(live) = st.view.as_mut() else {
                return;
            };
            if live.finished {
                return;
            }
            live.view.apply(&event, Instant::now());
            live.dirty = true;
            // A message goes above the view, to stay: the view is cleared, the message
            // written where it was, and the view drawn again below it.
            if let Event::Info { message } = &event {
                let drawn = live.drawn;
                live.drawn = 0;
                let mut buf = String::new();
                if drawn > 0 {
                    buf.push_str(&format!("\x1b[{drawn}A\r\x1b[J"));
                }
                for line in message.lines() {
                    buf.push_str(&format!("\x1b[2m[{since}]\x1b[0m {}\n", tty::clean(line)));
                }
                let _ = st.out.write_all(buf.as_bytes());
                draw(&mut st, false);
            }
            return;
        }
        match event {
            Event::Start { id, name } => {
                st.starts.insert(id, Instant::now());
                let _ = writeln!(st.out, "#{id} {name}");
            }
            Event::Output { id, data, .. } => {
                let since = st.starts.get(&id).map_or(Duration::ZERO, |t| t.elapsed());
                let mut buf = st.partial.remove(&id).unwrap_or_default();
                buf.push_str(&data);
                let mut lines: Vec<&str> = buf.split('\n').collect();
                let rest = lines.pop().unwrap_or("").to_string();
                for line in lines {
                    let _ = writeln!(st.out, "#{id} {:.3} {line}", since.as_secs_f64());
                }
                if !rest.is_empty() {
                    st.partial.insert(id, rest);
                }
            }
            Event::Cached { id } => {
                let _ = writeln!(st.out, "#{id} CACHED");
            }
            Event::Done { id, seconds } => {
                if let Some(rest) = st.partial.remove(&id) {
                    let _ = writeln!(st.out, "#{id} {rest}");
                }
                let _ = writeln!(
                    st.out,
                    "#{id} DONE {}",
                    secs(Duration::from_secs_f64(seconds))
                );
            }
            Event::Error { id, message } => {
                if let Some(rest) = st.partial.remove(&id) {
                    let _ = writeln!(st.out, "#{id} {rest}");
                }
                let _ = writeln!(st.out, "#{id} ERROR: {message}");
            }
            Event::Info { message } => {
                let _ = writeln!(st.out, "[{}] {message}", secs(self.started.elapsed()));
            }
        }
        let _ = st.out.flush();
    }
}

/// A sink that keeps events, for tests.
#[derive(Default)]
pub struct Recorder {
    pub events: Mutex<Vec<Event>>,
}

impl Sink for Recorder {
    fn event(&self, event: Event) {
        self.events.lock().unwrap().push(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Shared(std::sync::Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn plain_mode_reads_like_buildkit() {
        let buf = std::sync::Arc::new(Mutex::new(Vec::new()));
        let p = Printer::new(Mode::Plain, Shared(buf.clone()));
        p.event(Event::Start {
            id: 3,
            name: "[build 2/3] RUN make".into(),
        });
        p.event(Event::Output {
            id: 3,
            stream: "stdout",
            data: "line one\nline ".into(),
        });
        p.event(Event::Output {
            id: 3,
            stream: "stdout",
            data: "two\n".into(),
        });
        p.event(Event::Done {
            id: 3,
            seconds: 1.25,
        });
        p.event(Event::Start {
            id: 4,
            name: "[build 3/3] COPY . .".into(),
        });
        p.event(Event::Cached { id: 4 });
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "#3 [build 2/3] RUN make");
        assert!(
            lines[1].starts_with("#3 0.") && lines[1].ends_with(" line one"),
            "{text}"
        );
        assert!(lines[2].ends_with(" line two"), "{text}");
        assert_eq!(lines[3], "#3 DONE 1.2s");
        assert_eq!(lines[5], "#4 CACHED");
    }

    /// The tty view as a terminal would receive it: a draw, then the same lines drawn over
    /// (cursor up, each line cleared), a message put above the view, and the last draw.
    #[test]
    fn tty_mode_redraws_in_place_and_ends_with_every_step() {
        let buf = std::sync::Arc::new(Mutex::new(Vec::new()));
        let p = Printer::sized(Mode::Tty, Shared(buf.clone()), Box::new(|| (60, 20)));
        p.event(Event::Start {
            id: 1,
            name: "[1/2] RUN make".into(),
        });
        p.event(Event::Output {
            id: 1,
            stream: "stdout",
            data: "compiling\n".into(),
        });
        std::thread::sleep(Duration::from_millis(350));
        p.event(Event::Info {
            message: "a warning".into(),
        });
        p.event(Event::Done {
            id: 1,
            seconds: 0.4,
        });
        p.event(Event::Start {
            id: 2,
            name: "[2/2] COPY . /".into(),
        });
        p.event(Event::Cached { id: 2 });
        p.finish();
        p.event(Event::Info {
            message: "after the end".into(),
        });
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        // Drawn more than once, each time over the last (cursor up by the lines drawn).
        assert!(text.matches("[+] Building").count() >= 3, "{text:?}");
        assert!(text.contains("\x1b[3A"), "{text:?}");
        assert!(text.contains(" => => # compiling"), "{text:?}");
        assert!(text.contains("a warning\n"), "{text:?}");
        assert!(!text.contains("after the end"), "{text:?}");
        // The last draw: FINISHED, both steps, no log line, and nothing after it but the
        // clear-below.
        let last = &text[text.rfind("[+] Building").unwrap()..];
        assert!(last.contains("(2/2) FINISHED"), "{last:?}");
        assert!(
            last.contains(" => [1/2] RUN make") && last.contains("0.4s"),
            "{last:?}"
        );
        assert!(last.contains(" => CACHED [2/2] COPY . /"), "{last:?}");
        assert!(!last.contains("=> => #"), "{last:?}");
        assert!(last.ends_with("\n\x1b[J"), "{last:?}");
    }

    #[test]
    fn json_mode_is_one_object_per_line() {
        let buf = std::sync::Arc::new(Mutex::new(Vec::new()));
        let p = Printer::new(Mode::Json, Shared(buf.clone()));
        p.event(Event::Start {
            id: 1,
            name: "[1/1] RUN true".into(),
        });
        p.event(Event::Cached { id: 1 });
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        let v: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(v[0]["event"], "start");
        assert_eq!(v[0]["name"], "[1/1] RUN true");
        assert_eq!(v[1]["event"], "cached");
    }
}

//! Build progress, rendered like BuildKit's: each step numbered with its stage, position and
//! Dockerfile instruction, its output streamed with timestamps, then `DONE 1.2s` or `CACHED`.
//!
//! - `plain`: lines for logs (`#5 [build 2/3] RUN make`, `#5 0.142 ...`, `#5 DONE 1.2s`);
//! - `tty`: the same, coloured, for a terminal;
//! - `json`: one JSON object per event, for the operator and other programs.

use std::io::{self, Write};
use std::sync::Mutex;
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
pub struct Printer<W: Write + Send> {
    mode: Mode,
    started: Instant,
    inner: Mutex<PrinterState<W>>,
}

struct PrinterState<W> {
    out: W,
    starts: std::collections::HashMap<usize, Instant>,
    /// Partial output lines, per step, waiting for their newline.
    partial: std::collections::HashMap<usize, String>,
}

impl<W: Write + Send> Printer<W> {
    pub fn new(mode: Mode, out: W) -> Self {
        Printer {
            mode,
            started: Instant::now(),
            inner: Mutex::new(PrinterState {
                out,
                starts: Default::default(),
                partial: Default::default(),
            }),
        }
    }
}

impl Printer<io::Stderr> {
    pub fn stderr(mode: Mode) -> Self {
        Printer::new(mode, io::stderr())
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

impl<W: Write + Send> Sink for Printer<W> {
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
        let color = self.mode == Mode::Tty;
        let (bold, blue, red, dim, reset) = if color {
            ("\x1b[1m", "\x1b[34m", "\x1b[31m", "\x1b[2m", "\x1b[0m")
        } else {
            ("", "", "", "", "")
        };
        match event {
            Event::Start { id, name } => {
                st.starts.insert(id, Instant::now());
                let _ = writeln!(st.out, "{bold}#{id} {name}{reset}");
            }
            Event::Output { id, data, .. } => {
                let since = st.starts.get(&id).map_or(Duration::ZERO, |t| t.elapsed());
                let mut buf = st.partial.remove(&id).unwrap_or_default();
                buf.push_str(&data);
                let mut lines: Vec<&str> = buf.split('\n').collect();
                let rest = lines.pop().unwrap_or("").to_string();
                for line in lines {
                    let _ = writeln!(
                        st.out,
                        "{dim}#{id} {:.3}{reset} {line}",
                        since.as_secs_f64()
                    );
                }
                if !rest.is_empty() {
                    st.partial.insert(id, rest);
                }
            }
            Event::Cached { id } => {
                let _ = writeln!(st.out, "{blue}#{id} CACHED{reset}");
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
                let _ = writeln!(st.out, "{red}#{id} ERROR: {message}{reset}");
            }
            Event::Info { message } => {
                let _ = writeln!(
                    st.out,
                    "{dim}[{}]{reset} {message}",
                    secs(self.started.elapsed())
                );
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

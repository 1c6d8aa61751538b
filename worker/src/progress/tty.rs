//! The live view `docker buildx build` shows on a terminal (buildx's `progressui` tty mode),
//! redrawn in place:
//!
//! ```text
//! [+] Building 3.4s (4/7)
//!  => [internal] load image reg.example.com/base:1                          0.4s
//!  => [build 1/3] FROM reg.example.com/base:1                               0.0s
//!  => CACHED [build 2/3] COPY . /src                                        0.0s
//!  => [build 3/3] RUN make                                                  2.9s
//!  => => # cc -c main.c
//!  => => # cc -o app main.o
//! ```
//!
//! - a header with the time since the start and the vertices done out of those seen;
//! - a line per vertex in the order they started, its time on the right (running: counting);
//!   `CACHED` for a cache hit, `ERROR` for a failure;
//! - the last few lines of each running vertex's output below it (`=> => #`), gone when it ends;
//! - at the end, `FINISHED` in the header and every vertex, the view's last draw.
//!
//! [`View`] keeps the state and renders lines; the printer draws them: up to the view's first
//! line, each line cleared and rewritten, then whatever is left below cleared. A line never
//! reaches the terminal's last column (no wrap to miscount), a view taller than the terminal
//! drops its oldest finished vertices, and what a step prints is stripped of control
//! characters, so that a step cannot move the cursor.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::Event;

/// Lines of output shown under a running vertex (buildx shows 6).
const LOG_LINES: usize = 6;

#[derive(Debug, Clone, PartialEq)]
enum Status {
    Running,
    Done(Duration),
    Cached,
    Error(Duration),
}

#[derive(Debug, Clone)]
struct Vertex {
    id: usize,
    name: String,
    started: Instant,
    status: Status,
    logs: VecDeque<String>,
    partial: String,
}

/// The state of the view.
#[derive(Debug)]
pub struct View {
    started: Instant,
    vertices: Vec<Vertex>,
}

/// One line of the view and how it shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub text: String,
    pub style: Style,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Header,
    Running,
    Done,
    Error,
    Log,
}

impl View {
    pub fn new(started: Instant) -> View {
        View {
            started,
            vertices: vec![],
        }
    }

    /// Apply an event (`Info` is the printer's: it goes above the view).
    pub fn apply(&mut self, event: &Event, now: Instant) {
        let find = |vs: &mut Vec<Vertex>, id: usize| vs.iter_mut().rposition(|v| v.id == id);
        match event {
            Event::Start { id, name } => self.vertices.push(Vertex {
                id: *id,
                name: clean(name),
                started: now,
                status: Status::Running,
                logs: VecDeque::new(),
                partial: String::new(),
            }),
            Event::Output { id, data, .. } => {
                if let Some(i) = find(&mut self.vertices, *id) {
                    let v = &mut self.vertices[i];
                    v.partial.push_str(data);
                    while let Some(n) = v.partial.find('\n') {
                        let line: String = v.partial.drain(..=n).collect();
                        push_log(&mut v.logs, &line);
                    }
                }
            }
            Event::Cached { id } => {
                if let Some(i) = find(&mut self.vertices, *id) {
                    self.vertices[i].status = Status::Cached;
                }
            }
            Event::Done { id, seconds } => {
                if let Some(i) = find(&mut self.vertices, *id) {
                    self.vertices[i].status = Status::Done(Duration::from_secs_f64(*seconds));
                }
            }
            Event::Error { id, .. } => {
                if let Some(i) = find(&mut self.vertices, *id) {
                    let v = &mut self.vertices[i];
                    v.status = Status::Error(now.saturating_duration_since(v.started));
                }
            }
            Event::Info { .. } => {}
        }
    }

    /// Whether a vertex is running (its timer moves: the view needs drawing again).
    pub fn running(&self) -> bool {
        self.vertices.iter().any(|v| v.status == Status::Running)
    }

    /// The view's lines, `width` columns wide at most (one less than the terminal's) and, unless
    /// `last`, fewer than `height` (the line after the view, where the cursor waits, must be on
    /// the screen, or the terminal scrolls and the next draw starts too low).
    pub fn lines(&self, now: Instant, width: usize, height: usize, last: bool) -> Vec<Line> {
        let done = self
            .vertices
            .iter()
            .filter(|v| v.status != Status::Running)
            .count();
        let mut header = format!(
            "[+] Building {:.1}s ({done}/{})",
            now.saturating_duration_since(self.started).as_secs_f64(),
            self.vertices.len()
        );
        if last {
            header.push_str(" FINISHED");
        }
        // Each vertex with its log lines, as a group.
        let mut groups: Vec<(bool, Vec<Line>)> = vec![];
        for v in &self.vertices {
            let (prefix, style, time) = match &v.status {
                Status::Running => ("", Style::Running, now.saturating_duration_since(v.started)),
                Status::Done(d) => ("", Style::Done, *d),
                Status::Cached => ("CACHED ", Style::Done, Duration::ZERO),
                Status::Error(d) => ("ERROR ", Style::Error, *d),
            };
            let mut group = vec![Line {
                text: columns(
                    &format!(" => {prefix}{}", v.name),
                    &format!("{:.1}s", time.as_secs_f64()),
                    width,
                ),
                style,
            }];
            if v.status == Status::Running && !last {
                let mut logs: Vec<&str> = v.logs.iter().map(String::as_str).collect();
                let partial = clean(&v.partial);
                if !partial.is_empty() {
                    logs.push(&partial);
                }
                let skip = logs.len().saturating_sub(LOG_LINES);
                for l in &logs[skip..] {
                    group.push(Line {
                        text: truncate(&format!(" => => # {l}"), width),
                        style: Style::Log,
                    });
                }
            }
            groups.push((v.status == Status::Running, group));
        }
        // Too tall: drop the oldest finished vertices first, then the oldest running ones.
        if !last {
            let room = height.saturating_sub(2).max(1);
            let mut total: usize = groups.iter().map(|(_, g)| g.len()).sum();
            for pass_running in [false, true] {
                let mut i = 0;
                while total > room && i < groups.len() {
                    if groups[i].0 == pass_running {
                        total -= groups[i].1.len();
                        groups.remove(i);
                    } else {
                        i += 1;
                    }
                }
            }
            // A single group still too tall (a running vertex's logs): keep its first lines.
            if total > room
                && let Some((_, g)) = groups.last_mut()
            {
                g.truncate(room);
            }
        }
        let mut out = vec![Line {
            text: truncate(&header, width),
            style: Style::Header,
        }];
        for (_, g) in groups {
            out.extend(g);
        }
        out
    }
}

fn push_log(logs: &mut VecDeque<String>, line: &str) {
    // A progress bar's carriage returns: the text after the last one is what a terminal shows.
    let line = line.trim_end_matches(['\n', '\r']);
    let shown = line.rsplit('\r').next().unwrap_or(line);
    logs.push_back(clean(shown));
    while logs.len() > LOG_LINES {
        logs.pop_front();
    }
}

/// Text that cannot move the cursor: escape sequences dropped, other control characters
/// (tabs included) turned into spaces.
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                // CSI (`ESC [ ... final`) and two-character escapes.
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\n' | '\r' => {}
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// At most `width` characters.
fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    text.chars().take(width).collect()
}

/// `left`, then `right` aligned to the right edge of `width` columns; `left` is cut to make
/// room.
fn columns(left: &str, right: &str, width: usize) -> String {
    let r = right.chars().count();
    let room = width.saturating_sub(r + 1);
    let left = truncate(left, room);
    let pad = width.saturating_sub(left.chars().count() + r);
    format!("{left}{}{right}", " ".repeat(pad.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(v: &mut View, id: usize, name: &str, at: Instant) {
        v.apply(
            &Event::Start {
                id,
                name: name.into(),
            },
            at,
        );
    }

    #[test]
    fn a_build_renders_like_buildx() {
        let t0 = Instant::now();
        let s = |secs: f64| t0 + Duration::from_secs_f64(secs);
        let mut v = View::new(t0);
        start(&mut v, 1, "[internal] load image busybox", s(0.0));
        v.apply(
            &Event::Done {
                id: 1,
                seconds: 0.4,
            },
            s(0.4),
        );
        start(&mut v, 2, "[build 2/3] COPY . /src", s(0.4));
        v.apply(&Event::Cached { id: 2 }, s(0.4));
        start(&mut v, 3, "[build 3/3] RUN make", s(0.5));
        v.apply(
            &Event::Output {
                id: 3,
                stream: "stdout",
                data: "one\ntwo\nthr".into(),
            },
            s(1.0),
        );
        let lines = v.lines(s(2.0), 60, 20, false);
        let text: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(text[0], "[+] Building 2.0s (2/3)");
        assert_eq!(
            text[1],
            format!(" => [internal] load image busybox{}0.4s", " ".repeat(23))
        );
        assert!(
            text[2].starts_with(" => CACHED [build 2/3] COPY . /src") && text[2].ends_with(" 0.0s")
        );
        assert!(text[3].starts_with(" => [build 3/3] RUN make") && text[3].ends_with(" 1.5s"));
        assert_eq!(&text[4..], [" => => # one", " => => # two", " => => # thr"]);
        assert!(text.iter().all(|l| l.chars().count() <= 60));
        assert_eq!(lines[3].style, Style::Running);
        // The end: logs gone, every vertex, FINISHED.
        v.apply(
            &Event::Done {
                id: 3,
                seconds: 2.5,
            },
            s(3.0),
        );
        let last = v.lines(s(3.0), 60, 20, true);
        assert_eq!(last.len(), 4);
        assert_eq!(last[0].text, "[+] Building 3.0s (3/3) FINISHED");
        assert!(last[3].text.ends_with(" 2.5s"));
        assert!(!v.running());
    }

    #[test]
    fn output_cannot_move_the_cursor_and_keeps_its_last_lines() {
        let t0 = Instant::now();
        let mut v = View::new(t0);
        start(&mut v, 1, "RUN x", t0);
        let data = (1..=9).map(|i| format!("l{i}\n")).collect::<String>()
            + "10%\r50%\r100%\n\x1b[2J\x1b[Hcleared\tx\x07\n";
        v.apply(
            &Event::Output {
                id: 1,
                stream: "stderr",
                data,
            },
            t0,
        );
        let text: Vec<String> = v
            .lines(t0, 80, 40, false)
            .into_iter()
            .map(|l| l.text)
            .collect();
        assert_eq!(
            &text[2..],
            [
                " => => # l6",
                " => => # l7",
                " => => # l8",
                " => => # l9",
                " => => # 100%",
                " => => # cleared x "
            ]
        );
        assert!(text.iter().all(|l| !l.contains('\x1b')));
    }

    #[test]
    fn a_tall_view_drops_old_finished_vertices_first() {
        let t0 = Instant::now();
        let mut v = View::new(t0);
        for id in 1..=10 {
            start(&mut v, id, &format!("step {id}"), t0);
            if id < 10 {
                v.apply(&Event::Done { id, seconds: 0.1 }, t0);
            }
        }
        v.apply(
            &Event::Output {
                id: 10,
                stream: "stdout",
                data: "a\nb\n".into(),
            },
            t0,
        );
        let text: Vec<String> = v
            .lines(t0, 80, 6, false)
            .into_iter()
            .map(|l| l.text)
            .collect();
        assert_eq!(text.len(), 5, "{text:?}");
        assert!(text[1].starts_with(" => step 9") && text[2].starts_with(" => step 10"));
        assert_eq!(&text[3..], [" => => # a", " => => # b"]);
        // The last draw shows them all.
        assert_eq!(v.lines(t0, 80, 6, true).len(), 11);
    }
}

//! The typed form of a Dockerfile: instructions and their arguments, unexpanded.
//!
//! Values are kept as written (quotes and `$VAR` in place): expansion depends on the stage's
//! variables and happens when the plan lowers a stage.

use super::args::KeyValue;
use super::source::Span;
use crate::plan::step::Location;

/// One instruction of a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// The keyword as written (`RUN`, `run`, ...).
    pub keyword: String,
    pub location: Location,
    /// The whole instruction line (continuations included, heredoc bodies not).
    pub span: Span,
    pub keyword_span: Span,
    /// The arguments after the flags.
    pub args_span: Span,
    /// The instruction on one line, continuations joined, as BuildKit's `String()` gives it.
    pub original: String,
    pub kind: Kind,
}

/// What an instruction does, with its arguments unexpanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    From(From),
    Arg(Vec<ArgDef>),
    Env(Vec<KeyValue>),
    Label(Vec<KeyValue>),
    Maintainer(String),
    Run(Run),
    Cmd(CommandLine),
    Entrypoint(CommandLine),
    Shell(Vec<String>),
    Copy(Copy),
    Workdir(String),
    User(String),
    Volume(Vec<String>),
    StopSignal(String),
    Expose(Vec<String>),
    Healthcheck(Healthcheck),
    Onbuild(Onbuild),
}

/// `FROM [--platform=P] image [AS name]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct From {
    pub image: String,
    pub image_span: Span,
    /// The stage name, lowercased (BuildKit matches stage names case-insensitively).
    pub name: Option<String>,
    pub name_span: Option<Span>,
    /// The `AS` keyword as written, for the casing check.
    pub as_keyword: Option<String>,
    pub platform: Option<(String, Span)>,
}

/// One `name` or `name=default` of ARG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDef {
    pub key: String,
    pub value: Option<String>,
}

/// The arguments of RUN, CMD or ENTRYPOINT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    /// Exec form: the array. Shell form: one element, the command line.
    pub args: Vec<String>,
    /// Exec (JSON) form.
    pub json: bool,
}

/// A heredoc attached to an instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    pub name: String,
    /// The body as written: every line up to the delimiter, line endings included.
    pub content: String,
    /// Whether `$VAR` in the body is expanded (the delimiter was not quoted).
    pub expand: bool,
    /// `<<-`: leading tabs are removed.
    pub chomp: bool,
}

/// `RUN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub cmd: CommandLine,
    pub heredocs: Vec<Heredoc>,
    /// Each `--mount` value, unexpanded, with the span of its flag.
    pub mounts: Vec<(String, Span)>,
    pub network: Option<String>,
    pub security: Option<String>,
}

/// A source of COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Path(String),
    Heredoc(Heredoc),
}

/// `COPY` or `ADD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub is_add: bool,
    pub sources: Vec<Source>,
    pub dest: String,
    pub from: Option<(String, Span)>,
    pub chown: Option<String>,
    pub chmod: Option<(String, Span)>,
    pub link: bool,
    pub parents: bool,
    pub exclude: Vec<String>,
    pub checksum: Option<(String, Span)>,
    pub keep_git_dir: bool,
    /// `ADD --unpack[=true|false]` (dockerfile 1.17): whether an archive source is extracted.
    /// `None` when not given: then local archives are extracted and downloads are not.
    pub unpack: Option<bool>,
}

/// `HEALTHCHECK`, checked; durations in nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", ...]` or `["CMD-SHELL", "..."]`.
    pub test: Vec<String>,
    pub interval: i64,
    pub timeout: i64,
    pub start_period: i64,
    pub start_interval: i64,
    pub retries: i64,
}

/// `ONBUILD <instruction>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Onbuild {
    /// The trigger as the image stores it: the instruction text after `ONBUILD`, heredoc bodies
    /// appended.
    pub expression: String,
}

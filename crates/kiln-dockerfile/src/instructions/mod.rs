//! Typed instructions: each AST node becomes one [`Instruction`] whose
//! [`Command`] has one struct per Dockerfile command, with its flags parsed
//! and checked the way BuildKit's `instructions` package does.
//!
//! Words stay unexpanded here (`$VAR` is kept as written): expansion needs
//! the stage environment, which only exists at build time; see
//! [`crate::scope::StageEnv`]. Checks that do not depend on variables
//! (argument counts, flags, stage names, literal ports and signals) are
//! done now so that a broken Dockerfile fails before any work starts.

mod error;
mod flags;
mod mount;
mod parse;
mod suggest;
mod validate;

use std::time::Duration;

pub use error::FrontendError;
pub use mount::{Mount, MountType, Sharing};
pub use parse::{parse_instruction, INSTRUCTION_NAMES};

use crate::ast::{Heredoc, Span};

pub(crate) use mount::parse_mount;
pub(crate) use validate::stop_signal as validate_stop_signal;
pub(crate) use validate::user_spec as validate_user;
pub(crate) use validate::{
    checksum as validate_checksum, chmod as validate_chmod, port_spec as validate_port,
};

/// One typed instruction with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// Lines of the Dockerfile it came from.
    pub span: Span,
    /// The instruction as written (continuations joined).
    pub original: String,
    /// True when the arguments were written in JSON (exec) form.
    pub json: bool,
    /// What it does.
    pub command: Command,
}

impl Instruction {
    /// The first line, for error messages.
    pub fn line(&self) -> usize {
        self.span.start
    }

    /// The instruction name in upper case (`RUN`, `COPY`, ...).
    pub fn keyword(&self) -> &'static str {
        self.command.keyword()
    }
}

/// The commands of a Dockerfile, one variant per instruction. Exhaustive on
/// purpose: the cache key's encoding (kiln-build's `cache::key`) matches
/// every kind, so adding one fails to compile there until it is encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `FROM [--platform=p] image [AS name]`
    From(FromCommand),
    /// `RUN [--mount=...] [--network=...] [--security=...] cmd`
    Run(RunCommand),
    /// `CMD cmd`
    Cmd(CmdCommand),
    /// `LABEL k=v ...`
    Label(LabelCommand),
    /// `MAINTAINER name` (deprecated; sets the author).
    Maintainer(MaintainerCommand),
    /// `EXPOSE port[/proto] ...`
    Expose(ExposeCommand),
    /// `ENV k=v ...`
    Env(EnvCommand),
    /// `ADD [flags] src... dest`
    Add(AddCommand),
    /// `COPY [flags] src... dest`
    Copy(CopyCommand),
    /// `ENTRYPOINT cmd`
    Entrypoint(EntrypointCommand),
    /// `VOLUME path ...`
    Volume(VolumeCommand),
    /// `USER user[:group]`
    User(UserCommand),
    /// `WORKDIR path`
    Workdir(WorkdirCommand),
    /// `ARG name[=default] ...`
    Arg(ArgCommand),
    /// `ONBUILD instruction`
    Onbuild(OnbuildCommand),
    /// `STOPSIGNAL signal`
    StopSignal(StopSignalCommand),
    /// `HEALTHCHECK NONE` or `HEALTHCHECK [opts] CMD cmd`
    Healthcheck(HealthcheckCommand),
    /// `SHELL ["exe", "arg"...]`
    Shell(ShellCommand),
}

impl Command {
    /// The instruction name in upper case.
    pub fn keyword(&self) -> &'static str {
        match self {
            Command::From(_) => "FROM",
            Command::Run(_) => "RUN",
            Command::Cmd(_) => "CMD",
            Command::Label(_) => "LABEL",
            Command::Maintainer(_) => "MAINTAINER",
            Command::Expose(_) => "EXPOSE",
            Command::Env(_) => "ENV",
            Command::Add(_) => "ADD",
            Command::Copy(_) => "COPY",
            Command::Entrypoint(_) => "ENTRYPOINT",
            Command::Volume(_) => "VOLUME",
            Command::User(_) => "USER",
            Command::Workdir(_) => "WORKDIR",
            Command::Arg(_) => "ARG",
            Command::Onbuild(_) => "ONBUILD",
            Command::StopSignal(_) => "STOPSIGNAL",
            Command::Healthcheck(_) => "HEALTHCHECK",
            Command::Shell(_) => "SHELL",
        }
    }
}

/// A command line in shell form (run through the SHELL) or exec form (argv).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    /// `RUN echo hi`: one string for the shell.
    Shell(String),
    /// `RUN ["echo", "hi"]`: the argv as written.
    Exec(Vec<String>),
}

impl CommandLine {
    /// True for the JSON (exec) form.
    pub fn is_exec_form(&self) -> bool {
        matches!(self, CommandLine::Exec(_))
    }
}

/// `FROM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromCommand {
    /// The base: an image reference, an earlier stage's name, or `scratch` (unexpanded).
    pub image: String,
    /// `AS name`, lowercased.
    pub stage_name: Option<String>,
    /// `--platform=` (unexpanded).
    pub platform: Option<String>,
}

/// RUN's `--network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    /// The builder's default network.
    Default,
    /// No network at all.
    None,
    /// The host's network namespace.
    Host,
}

/// RUN's `--security`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityMode {
    /// The normal sandbox.
    Sandbox,
    /// Privileged (needs the builder to allow it).
    Insecure,
}

/// `RUN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunCommand {
    /// The command; with heredocs, the shell form holds the `<<EOF` words.
    pub command: CommandLine,
    /// Heredoc bodies attached to the command.
    pub heredocs: Vec<Heredoc>,
    /// Each `--mount` value as written (expanded again at build time).
    pub mount_specs: Vec<String>,
    /// The mounts as far as they can be read before expansion (values with
    /// `$` are absent; `from` is always literal).
    pub mounts: Vec<Mount>,
    /// `--network`, when given.
    pub network: Option<NetworkMode>,
    /// `--security`, when given.
    pub security: Option<SecurityMode>,
}

/// `CMD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdCommand {
    /// The default command.
    pub command: CommandLine,
}

/// `ENTRYPOINT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntrypointCommand {
    /// The entrypoint.
    pub command: CommandLine,
}

/// One `key=value` of ENV or LABEL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key (unexpanded until [`crate::scope::StageEnv::apply`]).
    pub key: String,
    /// The value, quotes included until expansion removes them.
    pub value: String,
    /// True for the legacy `ENV key value` form (no `=`).
    pub legacy: bool,
}

/// `LABEL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelCommand {
    /// The labels in order.
    pub labels: Vec<KeyValue>,
}

/// `ENV`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvCommand {
    /// The variables in order (later ones see earlier ones).
    pub vars: Vec<KeyValue>,
}

/// `MAINTAINER`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintainerCommand {
    /// The author text.
    pub name: String,
}

/// `EXPOSE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExposeCommand {
    /// Port specs; after expansion a word may split into several.
    pub ports: Vec<String>,
}

/// A source of COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A path, glob or URL (unexpanded).
    Path(String),
    /// An inline file from a heredoc; it is named after its delimiter.
    Heredoc(Heredoc),
}

/// `ADD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCommand {
    /// The sources in order.
    pub sources: Vec<Source>,
    /// The destination.
    pub dest: String,
    /// `--chown=user[:group]`.
    pub chown: Option<String>,
    /// `--chmod=mode`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--keep-git-dir`.
    pub keep_git_dir: bool,
    /// `--checksum=sha256:...`.
    pub checksum: Option<String>,
    /// `--exclude=pattern` (repeatable).
    pub exclude: Vec<String>,
    /// `--unpack[=bool]`; `None` means the default (unpack local archives only).
    pub unpack: Option<bool>,
}

/// `COPY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyCommand {
    /// The sources in order.
    pub sources: Vec<Source>,
    /// The destination.
    pub dest: String,
    /// `--from=stage|index|image`.
    pub from: Option<String>,
    /// `--chown=user[:group]`.
    pub chown: Option<String>,
    /// `--chmod=mode`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude=pattern` (repeatable).
    pub exclude: Vec<String>,
}

/// `VOLUME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeCommand {
    /// Mount points.
    pub paths: Vec<String>,
}

/// `USER`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCommand {
    /// `user[:group]`.
    pub user: String,
}

/// `WORKDIR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkdirCommand {
    /// The directory (relative paths resolve against the previous WORKDIR).
    pub path: String,
}

/// One `name[=default]` of an ARG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    /// The name.
    pub name: String,
    /// The default as written (quotes kept until expansion); after
    /// [`crate::scope::StageEnv::apply`], the resolved value (`None` = unset).
    pub default: Option<String>,
}

/// `ARG`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgCommand {
    /// The declarations in order.
    pub args: Vec<ArgDecl>,
}

/// `ONBUILD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnbuildCommand {
    /// The trigger as text, stored in the image config (`RUN make`).
    pub expression: String,
    /// The trigger, typed (checked now, run by images built FROM this one).
    pub trigger: Box<Instruction>,
}

/// `STOPSIGNAL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopSignalCommand {
    /// The signal as written (`SIGTERM`, `15`).
    pub signal: String,
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthcheckCommand {
    /// `HEALTHCHECK NONE`: disable any inherited check.
    None,
    /// `HEALTHCHECK [opts] CMD ...`.
    Check(Healthcheck),
}

impl HealthcheckCommand {
    /// The image config's `Healthcheck.Test`: `["NONE"]`, `["CMD", argv...]`
    /// or `["CMD-SHELL", "cmd"]`.
    pub fn test(&self) -> Vec<String> {
        match self {
            HealthcheckCommand::None => vec!["NONE".to_string()],
            HealthcheckCommand::Check(h) => match &h.command {
                CommandLine::Exec(argv) => std::iter::once("CMD".to_string())
                    .chain(argv.iter().cloned())
                    .collect(),
                CommandLine::Shell(s) => vec!["CMD-SHELL".to_string(), s.clone()],
            },
        }
    }
}

/// A health check with its timing; `None` durations mean "inherit/default"
/// (a flag given as `0s` is also `None`, as in BuildKit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthcheck {
    /// The probe.
    pub command: CommandLine,
    /// `--interval`.
    pub interval: Option<Duration>,
    /// `--timeout`.
    pub timeout: Option<Duration>,
    /// `--start-period`.
    pub start_period: Option<Duration>,
    /// `--start-interval`.
    pub start_interval: Option<Duration>,
    /// `--retries` (0 = default).
    pub retries: Option<u32>,
}

/// `SHELL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellCommand {
    /// The shell argv (`["/bin/sh", "-c"]`).
    pub shell: Vec<String>,
}

//! AST node → typed [`Instruction`], with BuildKit's per-command argument
//! rules and messages.

use std::time::Duration;

use super::flags::{parse_flags, FlagKind, FlagSpecs, ParsedFlags};
use super::mount::parse_mount;
use super::suggest::with_suggestion;
use super::validate;
use super::*;
use crate::ast::Node;
use crate::go::parse_duration;

/// Every instruction name, lowercased, in the order BuildKit lists them.
pub const INSTRUCTION_NAMES: &[&str] = &[
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

const NO_FLAGS: FlagSpecs = &[];
const FROM_FLAGS: FlagSpecs = &[("platform", FlagKind::String)];
const RUN_FLAGS: FlagSpecs = &[
    ("mount", FlagKind::List),
    ("network", FlagKind::String),
    ("security", FlagKind::String),
];
const ADD_FLAGS: FlagSpecs = &[
    ("chown", FlagKind::String),
    ("chmod", FlagKind::String),
    ("link", FlagKind::Bool),
    ("keep-git-dir", FlagKind::Bool),
    ("checksum", FlagKind::String),
    ("exclude", FlagKind::List),
    ("unpack", FlagKind::Bool),
];
const COPY_FLAGS: FlagSpecs = &[
    ("from", FlagKind::String),
    ("chown", FlagKind::String),
    ("chmod", FlagKind::String),
    ("link", FlagKind::Bool),
    ("parents", FlagKind::Bool),
    ("exclude", FlagKind::List),
];
const HEALTHCHECK_FLAGS: FlagSpecs = &[
    ("interval", FlagKind::String),
    ("timeout", FlagKind::String),
    ("start-period", FlagKind::String),
    ("start-interval", FlagKind::String),
    ("retries", FlagKind::String),
];

/// Type one AST node. Errors carry the node's first line.
pub fn parse_instruction(node: &Node) -> Result<Instruction, FrontendError> {
    parse_with_heredocs(node, &node.heredocs)
}

fn parse_with_heredocs(node: &Node, heredocs: &[Heredoc]) -> Result<Instruction, FrontendError> {
    let command =
        parse_command(node, heredocs).map_err(|m| FrontendError::new(node.span.start, m))?;
    Ok(Instruction {
        span: node.span,
        original: node.original.clone(),
        json: node.json,
        command,
    })
}

fn parse_command(node: &Node, heredocs: &[Heredoc]) -> Result<Command, String> {
    let req = Request { node, heredocs };
    Ok(match node.keyword.as_str() {
        "from" => Command::From(req.from()?),
        "run" => Command::Run(req.run()?),
        "cmd" => Command::Cmd(CmdCommand {
            command: req.no_flags()?.command_line(),
        }),
        "entrypoint" => Command::Entrypoint(EntrypointCommand {
            command: req.no_flags()?.command_line(),
        }),
        "label" => Command::Label(LabelCommand {
            labels: req.no_flags()?.key_values("LABEL")?,
        }),
        "env" => Command::Env(EnvCommand {
            vars: req.no_flags()?.key_values("ENV")?,
        }),
        "maintainer" => Command::Maintainer(MaintainerCommand {
            name: req.no_flags()?.exactly_one("MAINTAINER")?,
        }),
        "expose" => Command::Expose(req.expose()?),
        "add" => Command::Add(req.add()?),
        "copy" => Command::Copy(req.copy()?),
        "volume" => Command::Volume(req.volume()?),
        "user" => Command::User(req.user()?),
        "workdir" => Command::Workdir(WorkdirCommand {
            path: req.no_flags()?.exactly_one("WORKDIR")?,
        }),
        "arg" => Command::Arg(req.arg()?),
        "onbuild" => Command::Onbuild(req.onbuild()?),
        "stopsignal" => Command::StopSignal(req.stop_signal()?),
        "healthcheck" => Command::Healthcheck(req.healthcheck()?),
        "shell" => Command::Shell(req.shell()?),
        other => {
            return Err(with_suggestion(
                format!("unknown instruction: {}", other.to_uppercase()),
                other,
                INSTRUCTION_NAMES,
                false,
            ))
        }
    })
}

/// True when a word has nothing expansion could change, so it can be
/// checked now rather than at build time.
pub(crate) fn is_literal(word: &str) -> bool {
    !word.contains(['$', '"', '\'', '\\', '`'])
}

struct Request<'a> {
    node: &'a Node,
    heredocs: &'a [Heredoc],
}

impl Request<'_> {
    fn args(&self) -> &[String] {
        &self.node.args
    }

    fn flags(&self, specs: FlagSpecs) -> Result<ParsedFlags, String> {
        parse_flags(&self.node.flags, specs)
    }

    fn no_flags(&self) -> Result<&Self, String> {
        self.flags(NO_FLAGS)?;
        Ok(self)
    }

    fn command_line(&self) -> CommandLine {
        command_line(self.args(), self.node.json)
    }

    fn exactly_one(&self, name: &str) -> Result<String, String> {
        match self.args() {
            [one] => Ok(one.clone()),
            _ => Err(format!("{name} requires exactly one argument")),
        }
    }

    fn from(&self) -> Result<FromCommand, String> {
        let flags = self.flags(FROM_FLAGS)?;
        let args = self.args();
        let stage_name = match args {
            [_] => None,
            [_, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
                let name = name.to_lowercase();
                validate::stage_name(&name)?;
                Some(name)
            }
            _ => return Err("FROM requires either one or three arguments".into()),
        };
        Ok(FromCommand {
            image: args[0].clone(),
            stage_name,
            platform: flags.string("platform"),
        })
    }

    fn run(&self) -> Result<RunCommand, String> {
        let flags = self.flags(RUN_FLAGS)?;
        if self.args().is_empty()
            || (self.args().iter().all(|a| a.trim().is_empty()) && !self.node.json)
        {
            return Err("RUN requires at least one argument".into());
        }
        let mount_specs = flags.list("mount");
        let mounts = mount_specs
            .iter()
            .map(|s| parse_mount(s, None))
            .collect::<Result<Vec<_>, _>>()?;
        let network = match flags.string("network").as_deref() {
            None => None,
            Some("default") => Some(NetworkMode::Default),
            Some("none") => Some(NetworkMode::None),
            Some("host") => Some(NetworkMode::Host),
            Some(other) => {
                return Err(with_suggestion(
                    format!("unsupported network mode {other:?}"),
                    other,
                    &["default", "none", "host"],
                    true,
                ))
            }
        };
        let security = match flags.string("security").as_deref() {
            None => None,
            Some("sandbox") => Some(SecurityMode::Sandbox),
            Some("insecure") => Some(SecurityMode::Insecure),
            Some(other) => {
                return Err(with_suggestion(
                    format!("unsupported security mode {other:?}"),
                    other,
                    &["sandbox", "insecure"],
                    true,
                ))
            }
        };
        Ok(RunCommand {
            command: self.command_line(),
            heredocs: self.heredocs.to_vec(),
            mount_specs,
            mounts,
            network,
            security,
        })
    }

    fn key_values(&self, name: &str) -> Result<Vec<KeyValue>, String> {
        let args = self.args();
        if args.is_empty() {
            return Err(format!("{name} requires at least one argument"));
        }
        if !args.chunks_exact(3).remainder().is_empty() {
            return Err(format!("Bad input to {name}, too many arguments"));
        }
        args.chunks(3)
            .map(|kv| {
                if kv[0].is_empty() {
                    return Err(format!("{name} names can not be blank"));
                }
                Ok(KeyValue {
                    key: kv[0].clone(),
                    value: kv[1].clone(),
                    legacy: kv[2].is_empty(),
                })
            })
            .collect()
    }

    fn expose(&self) -> Result<ExposeCommand, String> {
        self.flags(NO_FLAGS)?;
        if self.args().is_empty() {
            return Err("EXPOSE requires at least one argument".into());
        }
        for port in self.args().iter().filter(|p| is_literal(p)) {
            validate::port_spec(port)?;
        }
        Ok(ExposeCommand {
            ports: self.args().to_vec(),
        })
    }

    /// Sources and destination of COPY/ADD; `<<NAME` words take the next heredoc.
    fn sources_and_dest(&self, name: &str) -> Result<(Vec<Source>, String), String> {
        let args = self.args();
        let Some((dest, srcs)) = args.split_last() else {
            return Err(format!("{name} requires at least two arguments"));
        };
        if srcs.is_empty() {
            return Err(format!(
                "{name} requires at least two arguments, but only one was provided. Destination could not be determined"
            ));
        }
        let mut heredocs = self.heredocs.iter();
        let sources = srcs
            .iter()
            .map(|src| {
                match (
                    src.starts_with("<<") && !self.node.json,
                    heredocs.clone().next(),
                ) {
                    (true, Some(_)) => {
                        Source::Heredoc(heredocs.next().cloned().expect("peeked above"))
                    }
                    _ => Source::Path(src.clone()),
                }
            })
            .collect();
        Ok((sources, dest.clone()))
    }

    fn add(&self) -> Result<AddCommand, String> {
        let flags = self.flags(ADD_FLAGS)?;
        let (sources, dest) = self.sources_and_dest("ADD")?;
        let checksum = flags.string("checksum");
        if let Some(sum) = checksum.as_deref() {
            if sources.len() != 1 {
                return Err("checksum can't be specified for multiple sources".into());
            }
            if is_literal(sum) {
                validate::checksum(sum)?;
            }
        }
        let chmod = flags.string("chmod");
        check_chmod(chmod.as_deref())?;
        let unpack = self
            .node
            .flags
            .iter()
            .any(|f| f == "--unpack" || f.starts_with("--unpack="));
        Ok(AddCommand {
            sources,
            dest,
            chown: flags.string("chown"),
            chmod,
            link: flags.bool("link"),
            keep_git_dir: flags.bool("keep-git-dir"),
            checksum,
            exclude: flags.list("exclude"),
            unpack: unpack.then(|| flags.bool("unpack")),
        })
    }

    fn copy(&self) -> Result<CopyCommand, String> {
        let flags = self.flags(COPY_FLAGS)?;
        let (sources, dest) = self.sources_and_dest("COPY")?;
        let chmod = flags.string("chmod");
        check_chmod(chmod.as_deref())?;
        let from = flags.string("from");
        if from.as_deref() == Some("") {
            return Err("COPY --from requires a stage name, index or image".into());
        }
        Ok(CopyCommand {
            sources,
            dest,
            from,
            chown: flags.string("chown"),
            chmod,
            link: flags.bool("link"),
            parents: flags.bool("parents"),
            exclude: flags.list("exclude"),
        })
    }

    fn volume(&self) -> Result<VolumeCommand, String> {
        self.flags(NO_FLAGS)?;
        if self.args().is_empty() {
            return Err("VOLUME requires at least one argument".into());
        }
        if self.args().iter().any(|p| p.trim().is_empty()) {
            return Err("VOLUME specified can not be an empty string".into());
        }
        Ok(VolumeCommand {
            paths: self.args().to_vec(),
        })
    }

    fn user(&self) -> Result<UserCommand, String> {
        let user = self.no_flags()?.exactly_one("USER")?;
        if is_literal(&user) {
            validate::user_spec(&user)?;
        }
        Ok(UserCommand { user })
    }

    fn arg(&self) -> Result<ArgCommand, String> {
        self.flags(NO_FLAGS)?;
        if self.args().is_empty() {
            return Err("ARG requires at least one argument".into());
        }
        let args = self
            .args()
            .iter()
            .map(|a| {
                let (name, default) = match a.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_string())),
                    None => (a.as_str(), None),
                };
                if name.is_empty() {
                    return Err("ARG names can not be blank".to_string());
                }
                Ok(ArgDecl {
                    name: name.to_string(),
                    default,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(ArgCommand { args })
    }

    fn onbuild(&self) -> Result<OnbuildCommand, String> {
        self.flags(NO_FLAGS)?;
        let Some(trigger_node) = self.node.onbuild.as_deref() else {
            return Err("ONBUILD requires at least one argument".into());
        };
        match trigger_node.keyword.as_str() {
            "onbuild" => return Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into()),
            "maintainer" | "from" => {
                return Err(format!(
                    "{} isn't allowed as an ONBUILD trigger",
                    trigger_node.keyword.to_uppercase()
                ))
            }
            _ => {}
        }
        // Heredocs of `ONBUILD RUN <<EOF` sit on the ONBUILD node.
        let heredocs = if trigger_node.heredocs.is_empty() {
            self.heredocs
        } else {
            &trigger_node.heredocs
        };
        let trigger = parse_command(trigger_node, heredocs)?;
        let expression = onbuild_expression(&self.node.original);
        let trigger = Instruction {
            span: self.node.span,
            original: expression.clone(),
            json: trigger_node.json,
            command: trigger,
        };
        Ok(OnbuildCommand {
            expression,
            trigger: Box::new(trigger),
        })
    }

    fn stop_signal(&self) -> Result<StopSignalCommand, String> {
        let signal = self.no_flags()?.exactly_one("STOPSIGNAL")?;
        if is_literal(&signal) {
            validate::stop_signal(&signal)?;
        }
        Ok(StopSignalCommand { signal })
    }

    fn healthcheck(&self) -> Result<HealthcheckCommand, String> {
        let flags = self.flags(HEALTHCHECK_FLAGS)?;
        let Some((kind, rest)) = self.args().split_first() else {
            return Err("HEALTHCHECK requires at least one argument".into());
        };
        match kind.to_uppercase().as_str() {
            "NONE" => {
                if !rest.is_empty() {
                    return Err("HEALTHCHECK NONE takes no arguments".into());
                }
                Ok(HealthcheckCommand::None)
            }
            "CMD" => {
                let command = command_line(rest, self.node.json);
                let empty = match &command {
                    CommandLine::Exec(argv) => argv.is_empty(),
                    CommandLine::Shell(s) => s.trim().is_empty(),
                };
                if empty {
                    return Err("Missing command after HEALTHCHECK CMD".into());
                }
                let retries = match flags.string("retries") {
                    None => None,
                    Some(r) => {
                        let n: i32 = r
                            .parse()
                            .map_err(|_| format!("invalid value {r:?} for --retries"))?;
                        if n < 0 {
                            return Err(format!("--retries cannot be negative ({n})"));
                        }
                        Some(n as u32)
                    }
                };
                Ok(HealthcheckCommand::Check(Healthcheck {
                    command,
                    interval: interval(&flags, "interval")?,
                    timeout: interval(&flags, "timeout")?,
                    start_period: interval(&flags, "start-period")?,
                    start_interval: interval(&flags, "start-interval")?,
                    retries,
                }))
            }
            other => Err(format!("Unknown type {other:?} in HEALTHCHECK (try CMD)")),
        }
    }

    fn shell(&self) -> Result<ShellCommand, String> {
        self.flags(NO_FLAGS)?;
        if self.args().is_empty() {
            return Err("SHELL requires at least one argument".into());
        }
        if !self.node.json {
            return Err("SHELL requires the arguments to be in JSON form".into());
        }
        Ok(ShellCommand {
            shell: self.args().to_vec(),
        })
    }
}

fn command_line(args: &[String], json: bool) -> CommandLine {
    if json {
        CommandLine::Exec(args.to_vec())
    } else {
        CommandLine::Shell(args.join(" "))
    }
}

fn check_chmod(chmod: Option<&str>) -> Result<(), String> {
    match chmod {
        Some(mode) if is_literal(mode) => validate::chmod(mode),
        _ => Ok(()),
    }
}

/// A HEALTHCHECK duration flag: unset or zero is `None`; anything else must
/// be at least 1ms.
fn interval(flags: &ParsedFlags, name: &str) -> Result<Option<Duration>, String> {
    let Some(text) = flags.string(name) else {
        return Ok(None);
    };
    if text.is_empty() {
        return Ok(None);
    }
    let nanos = parse_duration(&text).map_err(|e| e.to_string())?;
    if nanos == 0 {
        return Ok(None);
    }
    if nanos < 1_000_000 {
        return Err(format!("Interval {name:?} cannot be less than 1ms"));
    }
    Ok(Some(Duration::from_nanos(nanos as u64)))
}

/// The trigger text of `ONBUILD <trigger>`: the original minus the keyword.
fn onbuild_expression(original: &str) -> String {
    let trimmed = original.trim_start();
    let rest = match trimmed.get(..7) {
        Some(kw) if kw.eq_ignore_ascii_case("onbuild") => &trimmed[7..],
        _ => trimmed,
    };
    rest.trim().to_string()
}

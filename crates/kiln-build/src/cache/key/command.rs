//! The key encoding of one instruction, after its words were expanded.
//!
//! Each kind is spelled out field by field. The match has no catch-all and
//! every struct is taken apart without `..`, so a new instruction kind or
//! a new field fails to compile here until someone decides how it goes into
//! the key (and bumps [`super::KEY_FORMAT_VERSION`] when existing keys
//! change). A field left out is bound to `_` with the reason beside it.

use std::time::Duration;

use kiln_dockerfile::ast::Heredoc;
use kiln_dockerfile::instructions::{
    AddCommand, ArgCommand, ArgDecl, CmdCommand, Command, CommandLine, CopyCommand,
    EntrypointCommand, EnvCommand, ExposeCommand, FromCommand, Healthcheck, HealthcheckCommand,
    Instruction, KeyValue, LabelCommand, MaintainerCommand, Mount, NetworkMode, OnbuildCommand,
    RunCommand, SecurityMode, Sharing, ShellCommand, Source, StopSignalCommand, UserCommand,
    VolumeCommand, WorkdirCommand,
};

use super::encoder::Encoder;

/// Writes `command`: its keyword, then its fields in declaration order.
pub(super) fn encode(e: &mut Encoder, command: &Command) {
    e.str("instruction", command.keyword());
    match command {
        Command::From(FromCommand {
            image,
            stage_name,
            platform,
        }) => {
            e.str("image", image);
            e.opt_str("stage-name", stage_name.as_deref());
            e.opt_str("platform", platform.as_deref());
        }
        Command::Run(RunCommand {
            command,
            heredocs: docs,
            // The specs as written; `mounts` holds what they say, read
            // again after expansion, so spellings (`src=`, `source=`) and
            // key order do not matter.
            mount_specs: _,
            mounts: m,
            network,
            security,
        }) => {
            command_line(e, command);
            heredocs(e, docs);
            e.list("mounts", m.len());
            for one in m {
                mount(e, one);
            }
            e.opt_str(
                "network",
                network.map(|n| match n {
                    NetworkMode::Default => "default",
                    NetworkMode::None => "none",
                    NetworkMode::Host => "host",
                }),
            );
            e.opt_str(
                "security",
                security.map(|s| match s {
                    SecurityMode::Sandbox => "sandbox",
                    SecurityMode::Insecure => "insecure",
                }),
            );
        }
        Command::Cmd(CmdCommand { command })
        | Command::Entrypoint(EntrypointCommand { command }) => command_line(e, command),
        Command::Label(LabelCommand { labels: pairs }) => key_values(e, "labels", pairs),
        Command::Env(EnvCommand { vars }) => key_values(e, "vars", vars),
        Command::Maintainer(MaintainerCommand { name }) => e.str("name", name),
        Command::Expose(ExposeCommand { ports }) => e.strs("ports", ports),
        Command::Add(AddCommand {
            sources: s,
            dest,
            chown,
            chmod,
            link,
            keep_git_dir,
            checksum,
            exclude,
            unpack,
        }) => {
            sources(e, s);
            e.str("dest", dest);
            e.opt_str("chown", chown.as_deref());
            e.opt_str("chmod", chmod.as_deref());
            e.bool("link", *link);
            e.bool("keep-git-dir", *keep_git_dir);
            e.opt_str("checksum", checksum.as_deref());
            e.strs("exclude", exclude);
            e.opt_str("unpack", unpack.map(|u| if u { "true" } else { "false" }));
        }
        Command::Copy(CopyCommand {
            sources: s,
            dest,
            from,
            chown,
            chmod,
            link,
            parents,
            exclude,
        }) => {
            sources(e, s);
            e.str("dest", dest);
            e.opt_str("from", from.as_deref());
            e.opt_str("chown", chown.as_deref());
            e.opt_str("chmod", chmod.as_deref());
            e.bool("link", *link);
            e.bool("parents", *parents);
            e.strs("exclude", exclude);
        }
        Command::Volume(VolumeCommand { paths }) => e.strs("paths", paths),
        Command::User(UserCommand { user }) => e.str("user", user),
        Command::Workdir(WorkdirCommand { path }) => e.str("path", path),
        Command::Arg(ArgCommand { args }) => {
            // Only the names: a build arg's value reaches the key through
            // the steps that use it (their used args), so changing it misses
            // from its first use on, as in BuildKit.
            e.list("args", args.len());
            for ArgDecl { name, default: _ } in args {
                e.str("name", name);
            }
        }
        Command::Onbuild(OnbuildCommand {
            expression,
            trigger,
        }) => {
            // The text stored in the image config, and the trigger it types
            // to. Where the trigger came from (its lines) is not part of
            // what it does.
            e.str("expression", expression);
            let Instruction {
                span: _,
                original: _,
                // Exec form is in the command line itself.
                json: _,
                command,
            } = trigger.as_ref();
            encode(e, command);
        }
        Command::StopSignal(StopSignalCommand { signal }) => e.str("signal", signal),
        Command::Healthcheck(HealthcheckCommand::None) => e.str("check", "none"),
        Command::Healthcheck(HealthcheckCommand::Check(Healthcheck {
            command,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        })) => {
            e.str("check", "cmd");
            command_line(e, command);
            duration(e, "interval", *interval);
            duration(e, "timeout", *timeout);
            duration(e, "start-period", *start_period);
            duration(e, "start-interval", *start_interval);
            e.opt_num("retries", retries.map(u64::from));
        }
        Command::Shell(ShellCommand { shell }) => e.strs("shell", shell),
    }
}

fn command_line(e: &mut Encoder, line: &CommandLine) {
    match line {
        CommandLine::Shell(text) => e.str("shell-form", text),
        CommandLine::Exec(argv) => e.strs("exec-form", argv),
    }
}

fn key_values(e: &mut Encoder, name: &str, pairs: &[KeyValue]) {
    e.list(name, pairs.len());
    for KeyValue { key, value, legacy } in pairs {
        e.str("key", key);
        e.str("value", value);
        e.bool("legacy", *legacy);
    }
}

fn sources(e: &mut Encoder, sources: &[Source]) {
    e.list("sources", sources.len());
    for source in sources {
        match source {
            Source::Path(path) => e.str("path", path),
            Source::Heredoc(doc) => heredoc(e, doc),
        }
    }
}

fn heredocs(e: &mut Encoder, docs: &[Heredoc]) {
    e.list("heredocs", docs.len());
    for doc in docs {
        heredoc(e, doc);
    }
}

fn heredoc(e: &mut Encoder, doc: &Heredoc) {
    let Heredoc {
        name,
        content,
        expand,
        chomp,
        file_descriptor,
    } = doc;
    e.str("heredoc", name);
    e.str("content", content);
    e.bool("expand", *expand);
    e.bool("chomp", *chomp);
    e.num("file-descriptor", *file_descriptor);
}

fn mount(e: &mut Encoder, m: &Mount) {
    let Mount {
        kind,
        from,
        source,
        target,
        read_only,
        id,
        sharing,
        required,
        size,
        env,
        mode,
        uid,
        gid,
    } = m;
    e.str("type", kind.as_str());
    e.opt_str("from", from.as_deref());
    e.opt_str("source", source.as_deref());
    e.opt_str("target", target.as_deref());
    e.bool("read-only", *read_only);
    e.opt_str("id", id.as_deref());
    e.opt_str(
        "sharing",
        sharing.map(|s| match s {
            Sharing::Shared => "shared",
            Sharing::Private => "private",
            Sharing::Locked => "locked",
        }),
    );
    e.bool("required", *required);
    e.opt_num("size", *size);
    e.opt_str("env", env.as_deref());
    e.opt_num("mode", mode.map(u64::from));
    e.opt_num("uid", uid.map(u64::from));
    e.opt_num("gid", gid.map(u64::from));
}

/// A duration as whole nanoseconds (saturating: no Dockerfile gets near).
fn duration(e: &mut Encoder, name: &str, d: Option<Duration>) {
    e.opt_num(
        name,
        d.map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
    );
}

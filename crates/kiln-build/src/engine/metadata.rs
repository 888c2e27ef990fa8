//! Instructions that change only the image config: ENV, LABEL, EXPOSE, USER,
//! WORKDIR (its config half), VOLUME, STOPSIGNAL, HEALTHCHECK, ENTRYPOINT,
//! CMD, SHELL, ONBUILD, MAINTAINER and ARG. Each but ONBUILD leaves a
//! history entry marked `empty_layer`, worded as BuildKit words it. Pure
//! functions on values; the words arrive already expanded.

use super::image::ImageState;
use kiln_dockerfile::instructions::{Command, CommandLine, HealthcheckCommand};
use kiln_oci::image::EmptyObject;
use kiln_oci::{Healthcheck, History};

/// The shell of shell-form commands when the image sets none.
pub const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// State a stage keeps between metadata steps that is not in the config.
#[derive(Debug, Clone, Default)]
pub struct StageFlags {
    /// CMD was set in this stage (ENTRYPOINT then keeps it).
    pub cmd_set: bool,
}

/// Applies a metadata instruction; `false` when `command` is not one
/// (RUN, COPY, ADD, FROM) and nothing was done. A metadata instruction
/// cannot fail here: its words were checked when it was parsed.
pub fn apply(
    image: &mut ImageState,
    flags: &mut StageFlags,
    command: &Command,
    created: Option<&str>,
) -> bool {
    let history = |created_by: String| History {
        created: created.map(str::to_string),
        created_by: Some(created_by),
        comment: Some(HISTORY_COMMENT.to_string()),
        ..Default::default()
    };
    let entry = match command {
        Command::Env(env) => {
            let cfg = image.container_config();
            let list = cfg.env.get_or_insert_with(Vec::new);
            let mut words = Vec::new();
            for kv in &env.vars {
                set_env(list, &kv.key, &kv.value);
                words.push(format!("{}={}", kv.key, kv.value));
            }
            format!("ENV {}", words.join(" "))
        }
        Command::Label(label) => {
            let labels = image
                .container_config()
                .labels
                .get_or_insert_with(Default::default);
            let mut words = Vec::new();
            for kv in &label.labels {
                labels.insert(kv.key.clone(), kv.value.clone());
                words.push(format!("{}={}", kv.key, kv.value));
            }
            format!("LABEL {}", words.join(" "))
        }
        Command::Maintainer(m) => {
            image.config.author = Some(m.name.clone());
            format!("MAINTAINER {}", m.name)
        }
        Command::Expose(expose) => {
            let ports = image
                .container_config()
                .exposed_ports
                .get_or_insert_with(Default::default);
            let mut keys = Vec::new();
            for p in &expose.ports {
                let key = if p.contains('/') {
                    p.to_ascii_lowercase()
                } else {
                    format!("{p}/tcp")
                };
                ports.insert(key.clone(), EmptyObject {});
                keys.push(key);
            }
            format!("EXPOSE {}", keys.join(" "))
        }
        Command::User(user) => {
            image.container_config().user = Some(user.user.clone());
            format!("USER {}", user.user)
        }
        Command::Workdir(w) => {
            set_workdir(image, &w.path);
            format!("WORKDIR {}", w.path)
        }
        Command::Volume(v) => {
            set_volumes(image, &v.paths);
            format!("VOLUME [{}]", v.paths.join(" "))
        }
        Command::StopSignal(s) => {
            image.container_config().stop_signal = Some(s.signal.clone());
            format!("STOPSIGNAL {}", s.signal)
        }
        Command::Healthcheck(h) => {
            let check = match h {
                HealthcheckCommand::None => Healthcheck {
                    test: h.test(),
                    ..Default::default()
                },
                HealthcheckCommand::Check(c) => Healthcheck {
                    test: h.test(),
                    interval: c.interval.map(nanos),
                    timeout: c.timeout.map(nanos),
                    start_period: c.start_period.map(nanos),
                    start_interval: c.start_interval.map(nanos),
                    retries: c.retries.map(i64::from),
                    ..Default::default()
                },
            };
            let text = format!("HEALTHCHECK {:?}", check.test);
            image.container_config().healthcheck = Some(check);
            text
        }
        Command::Entrypoint(e) => {
            let argv = command_argv(image, &e.command);
            let cfg = image.container_config();
            cfg.entrypoint = Some(argv.clone());
            if !flags.cmd_set {
                cfg.cmd = None;
            }
            format!("ENTRYPOINT {}", json_list(&argv))
        }
        Command::Cmd(c) => {
            let argv = command_argv(image, &c.command);
            image.container_config().cmd = Some(argv.clone());
            flags.cmd_set = true;
            format!("CMD {}", json_list(&argv))
        }
        Command::Shell(s) => {
            image.container_config().shell = Some(s.shell.clone());
            format!("SHELL {}", json_list(&s.shell))
        }
        Command::Onbuild(o) => {
            image
                .container_config()
                .on_build
                .get_or_insert_with(Vec::new)
                .push(o.expression.clone());
            // BuildKit records the trigger in the config only, with no
            // history entry (Docker's classic builder adds one).
            return true;
        }
        Command::Arg(a) => {
            let words: Vec<String> = a
                .args
                .iter()
                .map(|d| match &d.default {
                    Some(v) => format!("{}={v}", d.name),
                    None => d.name.clone(),
                })
                .collect();
            format!("ARG {}", words.join(" "))
        }
        _ => return false,
    };
    image.push_empty(history(entry));
    true
}

/// WORKDIR's config half alone, for a WORKDIR whose history entry is the
/// layer that created the directory (one entry per instruction, as BuildKit).
pub fn set_workdir(image: &mut ImageState, path: &str) {
    image.container_config().working_dir = Some(path.to_string());
}

/// VOLUME's config half alone, for a VOLUME whose history entry is the
/// layer that created its directories.
pub fn set_volumes(image: &mut ImageState, paths: &[String]) {
    let vols = image
        .container_config()
        .volumes
        .get_or_insert_with(Default::default);
    for p in paths {
        vols.insert(p.clone(), EmptyObject {});
    }
}

/// The `comment` kiln puts on history entries it writes.
pub const HISTORY_COMMENT: &str = "kiln.dockerfile.v0";

/// The argv of a CMD/ENTRYPOINT/RUN: exec form as written, shell form through
/// the image's SHELL (default `/bin/sh -c`).
pub fn command_argv(image: &ImageState, command: &CommandLine) -> Vec<String> {
    match command {
        CommandLine::Exec(argv) => argv.clone(),
        CommandLine::Shell(line) => {
            let mut argv = shell_of(image);
            argv.push(line.clone());
            argv
        }
    }
}

/// The image's SHELL, or the default.
pub fn shell_of(image: &ImageState) -> Vec<String> {
    image
        .config
        .config
        .as_ref()
        .and_then(|c| c.shell.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_SHELL.iter().map(|s| s.to_string()).collect())
}

fn set_env(list: &mut Vec<String>, key: &str, value: &str) {
    let entry = format!("{key}={value}");
    match list
        .iter_mut()
        .find(|kv| kv.split_once('=').map_or(kv.as_str(), |(k, _)| k) == key)
    {
        Some(existing) => *existing = entry,
        None => list.push(entry),
    }
}

fn nanos(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn json_list(argv: &[String]) -> String {
    serde_json::to_string(argv).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_dockerfile::instructions::*;

    fn scratch() -> ImageState {
        ImageState::scratch(&kiln_oci::Platform::new("linux", "amd64", None))
    }

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: v.into(),
            legacy: false,
        }
    }

    #[test]
    fn env_replaces_in_place_and_records_history() {
        let mut img = scratch();
        let mut f = StageFlags::default();
        img.container_config().env = Some(vec!["PATH=/bin".into(), "A=1".into()]);
        let cmd = Command::Env(EnvCommand {
            vars: vec![kv("A", "2"), kv("B", "x y")],
        });
        assert!(apply(&mut img, &mut f, &cmd, None));
        assert_eq!(
            img.config.config.as_ref().unwrap().env.as_ref().unwrap(),
            &vec![
                "PATH=/bin".to_string(),
                "A=2".to_string(),
                "B=x y".to_string()
            ]
        );
        let h = img.config.history.last().unwrap();
        assert!(h.empty_layer);
        assert_eq!(h.created_by.as_deref(), Some("ENV A=2 B=x y"));
    }

    #[test]
    fn entrypoint_clears_inherited_cmd_but_not_one_set_here() {
        let mut img = scratch();
        img.container_config().cmd = Some(vec!["sh".into()]);
        let mut f = StageFlags::default();
        let ep = Command::Entrypoint(EntrypointCommand {
            command: CommandLine::Exec(vec!["/app".into()]),
        });
        apply(&mut img, &mut f, &ep, None);
        assert_eq!(img.config.config.as_ref().unwrap().cmd, None);
        let cmd = Command::Cmd(CmdCommand {
            command: CommandLine::Shell("run it".into()),
        });
        apply(&mut img, &mut f, &cmd, None);
        apply(&mut img, &mut f, &ep, None);
        let c = img.config.config.as_ref().unwrap();
        assert_eq!(
            c.cmd.as_ref().unwrap(),
            &vec!["/bin/sh".to_string(), "-c".into(), "run it".into()]
        );
        assert_eq!(c.entrypoint.as_ref().unwrap(), &vec!["/app".to_string()]);
    }

    #[test]
    fn shell_changes_shell_form_commands() {
        let mut img = scratch();
        let mut f = StageFlags::default();
        assert!(apply(
            &mut img,
            &mut f,
            &Command::Shell(ShellCommand {
                shell: vec!["/bin/bash".into(), "-ec".into()],
            }),
            None,
        ));
        assert!(apply(
            &mut img,
            &mut f,
            &Command::Cmd(CmdCommand {
                command: CommandLine::Shell("x".into()),
            }),
            None,
        ));
        assert_eq!(
            img.config.config.as_ref().unwrap().cmd.as_ref().unwrap()[0],
            "/bin/bash"
        );
    }

    #[test]
    fn expose_defaults_to_tcp_and_healthcheck_uses_nanoseconds() {
        let mut img = scratch();
        let mut f = StageFlags::default();
        assert!(apply(
            &mut img,
            &mut f,
            &Command::Expose(ExposeCommand {
                ports: vec!["80".into(), "53/UDP".into()],
            }),
            None,
        ));
        let ports = img
            .config
            .config
            .as_ref()
            .unwrap()
            .exposed_ports
            .clone()
            .unwrap();
        assert!(ports.contains_key("80/tcp") && ports.contains_key("53/udp"));
        let hc = Command::Healthcheck(HealthcheckCommand::Check(
            kiln_dockerfile::instructions::Healthcheck {
                command: CommandLine::Shell("true".into()),
                interval: Some(std::time::Duration::from_secs(5)),
                timeout: None,
                start_period: None,
                start_interval: None,
                retries: Some(3),
            },
        ));
        apply(&mut img, &mut f, &hc, None);
        let h = img
            .config
            .config
            .as_ref()
            .unwrap()
            .healthcheck
            .clone()
            .unwrap();
        assert_eq!(h.test, vec!["CMD-SHELL".to_string(), "true".into()]);
        assert_eq!(h.interval, Some(5_000_000_000));
        assert_eq!(h.retries, Some(3));
    }

    #[test]
    fn run_and_copy_are_not_metadata() {
        let mut img = scratch();
        let mut f = StageFlags::default();
        let run = Command::Run(RunCommand {
            command: CommandLine::Shell("x".into()),
            heredocs: vec![],
            mount_specs: vec![],
            mounts: vec![],
            network: None,
            security: None,
        });
        assert!(!apply(&mut img, &mut f, &run, None));
        assert!(img.config.history.is_empty());
    }
}

//! Typing of every instruction from real parser output, and every
//! validation error with its line.

use std::time::Duration;

use kiln_dockerfile::ast::{Node, Span};
use kiln_dockerfile::instructions::*;
use kiln_dockerfile::parser::parse;

/// Type each node of `text`; panics on parse errors (they are not under test here).
fn typed(text: &str) -> Vec<Result<Instruction, FrontendError>> {
    parse(text)
        .expect("parses")
        .children
        .iter()
        .map(parse_instruction)
        .collect()
}

fn one(text: &str) -> Instruction {
    typed(text).pop().unwrap().expect("types")
}

/// The error of the last instruction of `text`.
fn err(text: &str) -> FrontendError {
    typed(text).pop().unwrap().expect_err("must be rejected")
}

#[test]
fn from_with_platform_and_name() {
    let i = one("FROM --platform=$BUILDPLATFORM golang:1.22 AS Build");
    let Command::From(f) = i.command else {
        panic!("{i:?}")
    };
    assert_eq!(f.image, "golang:1.22");
    assert_eq!(f.stage_name.as_deref(), Some("build"));
    assert_eq!(f.platform.as_deref(), Some("$BUILDPLATFORM"));
    assert_eq!(i.span.start, 1);
}

#[test]
fn from_errors() {
    assert_eq!(
        err("FROM a b").to_string(),
        "line 1: FROM requires either one or three arguments"
    );
    assert_eq!(
        err("FROM a AS b c").message,
        "FROM requires either one or three arguments"
    );
    assert_eq!(
        err("\n\nFROM a AS 1st").to_string(),
        "line 3: invalid name for build stage: \"1st\", name can't start with a number or contain symbols"
    );
    assert_eq!(
        err("FROM --platfrom=x a").message,
        "unknown flag: platfrom (did you mean platform?)"
    );
}

#[test]
fn run_forms_mounts_network_security() {
    let i = one("FROM a\nRUN --mount=type=cache,target=/root/.cache --network=none --security=insecure make all");
    assert_eq!(i.line(), 2);
    let Command::Run(r) = i.command else { panic!() };
    assert_eq!(r.command, CommandLine::Shell("make all".into()));
    assert_eq!(r.mounts.len(), 1);
    assert_eq!(r.mounts[0].kind, MountType::Cache);
    assert_eq!(r.network, Some(NetworkMode::None));
    assert_eq!(r.security, Some(SecurityMode::Insecure));

    let Command::Run(r) = one(r#"RUN ["echo", "hi"]"#).command else {
        panic!()
    };
    assert!(r.command.is_exec_form());
    assert_eq!(
        r.command,
        CommandLine::Exec(vec!["echo".into(), "hi".into()])
    );

    let Command::Run(r) =
        one("RUN --mount=type=bind,from=build,target=/b --mount=type=secret,id=t ls").command
    else {
        panic!()
    };
    assert_eq!(r.mounts[0].from.as_deref(), Some("build"));
    assert_eq!(r.mounts[1].kind, MountType::Secret);
}

#[test]
fn run_heredoc_is_kept() {
    let i = one("FROM a\nRUN <<EOF\necho one\necho two\nEOF\n");
    let Command::Run(r) = i.command else { panic!() };
    assert_eq!(r.heredocs.len(), 1);
    assert_eq!(r.heredocs[0].name, "EOF");
    assert_eq!(r.heredocs[0].content, "echo one\necho two\n");
    assert_eq!((i.span.start, i.span.end), (2, 5));
}

#[test]
fn run_errors() {
    assert_eq!(
        err("RUN --network=bridge x").message,
        "unsupported network mode \"bridge\""
    );
    assert_eq!(
        err("RUN --security=root x").message,
        "unsupported security mode \"root\""
    );
    assert_eq!(
        err("RUN --mount=type=foo,target=/x x").message,
        "unsupported mount type \"foo\""
    );
    assert_eq!(err("RUN --from=x ls").message, "unknown flag: from");
    assert_eq!(
        err("RUN --mount ls").message,
        "missing a value on flag: mount"
    );
}

#[test]
fn cmd_entrypoint_shell_and_exec() {
    let Command::Cmd(c) = one("CMD echo $HOME").command else {
        panic!()
    };
    assert_eq!(c.command, CommandLine::Shell("echo $HOME".into()));
    let i = one(r#"ENTRYPOINT ["/bin/app", "--flag"]"#);
    assert!(i.json);
    let Command::Entrypoint(e) = i.command else {
        panic!()
    };
    assert_eq!(
        e.command,
        CommandLine::Exec(vec!["/bin/app".into(), "--flag".into()])
    );
}

#[test]
fn env_and_label_pairs() {
    let Command::Env(e) = one("ENV A=1 B=\"two words\"").command else {
        panic!()
    };
    assert_eq!(e.vars.len(), 2);
    assert_eq!(
        (
            e.vars[0].key.as_str(),
            e.vars[0].value.as_str(),
            e.vars[0].legacy
        ),
        ("A", "1", false)
    );
    assert_eq!(e.vars[1].value, "\"two words\"");
    let Command::Env(e) = one("ENV LEGACY value with spaces").command else {
        panic!()
    };
    assert!(e.vars[0].legacy);
    assert_eq!(e.vars[0].value, "value with spaces");
    let Command::Label(l) = one("LABEL org.opencontainers.image.title=kiln version=1").command
    else {
        panic!()
    };
    assert_eq!(l.labels[0].key, "org.opencontainers.image.title");
    assert_eq!(l.labels[1].value, "1");
}

#[test]
fn add_and_copy_flags() {
    let i = one(&format!(
        "ADD --chown=1:2 --chmod=755 --link --keep-git-dir --checksum=sha256:{} --exclude=*.md --unpack=false https://x/y.tgz /opt/",
        "a".repeat(64)
    ));
    let Command::Add(a) = i.command else { panic!() };
    assert_eq!(a.sources, vec![Source::Path("https://x/y.tgz".into())]);
    assert_eq!(a.dest, "/opt/");
    assert_eq!(a.chown.as_deref(), Some("1:2"));
    assert_eq!(a.chmod.as_deref(), Some("755"));
    assert!(a.link && a.keep_git_dir);
    assert_eq!(a.exclude, vec!["*.md"]);
    assert_eq!(a.unpack, Some(false));
    let Command::Add(a) = one("ADD a.tar /x").command else {
        panic!()
    };
    assert_eq!(a.unpack, None);

    let Command::Copy(c) =
        one("COPY --from=build --parents --exclude=a --exclude=b src/ lib/ /app/").command
    else {
        panic!()
    };
    assert_eq!(c.from.as_deref(), Some("build"));
    assert!(c.parents && !c.link);
    assert_eq!(c.exclude, vec!["a", "b"]);
    assert_eq!(
        c.sources,
        vec![Source::Path("src/".into()), Source::Path("lib/".into())]
    );
    assert_eq!(c.dest, "/app/");
}

#[test]
fn copy_heredoc_source() {
    let Command::Copy(c) = one("COPY <<EOF /etc/motd\nhello $USER\nEOF\n").command else {
        panic!()
    };
    let Source::Heredoc(h) = &c.sources[0] else {
        panic!("{c:?}")
    };
    assert_eq!(h.name, "EOF");
    assert_eq!(h.content, "hello $USER\n");
    assert!(h.expand);
    assert_eq!(c.dest, "/etc/motd");
}

#[test]
fn add_copy_errors() {
    assert_eq!(
        err("COPY onlyone").message,
        "COPY requires at least two arguments, but only one was provided. Destination could not be determined"
    );
    assert_eq!(err("ADD --parents a b").message, "unknown flag: parents");
    assert_eq!(
        err("COPY --checksum=x a b").message,
        "unknown flag: checksum"
    );
    assert_eq!(
        err("COPY --keep-git-dir a b").message,
        "unknown flag: keep-git-dir"
    );
    assert!(err("COPY --chmod=999 a b")
        .message
        .starts_with("invalid chmod parameter \"999\""));
    assert_eq!(
        err("COPY --link=maybe a b").message,
        "expecting boolean value for flag link, not: maybe"
    );
    assert_eq!(
        err("COPY --from=a --from=b x y").message,
        "duplicate flag specified: from"
    );
    assert_eq!(
        err("ADD --checksum=sha256:abc a b c").message,
        "checksum can't be specified for multiple sources"
    );
    assert!(err("ADD --checksum=md5:abc https://x/y /y")
        .message
        .starts_with("invalid checksum"));
    // Variables are checked after expansion, not now.
    assert!(typed("COPY --chmod=$MODE a b")[0].is_ok());
}

#[test]
fn expose_user_workdir_volume_maintainer() {
    let Command::Expose(e) = one("EXPOSE 80 443/tcp 53/udp 8000-8010 $PORTS").command else {
        panic!()
    };
    assert_eq!(e.ports.len(), 5);
    assert_eq!(
        err("\nEXPOSE 80/icmp").to_string(),
        "line 2: invalid proto: icmp"
    );
    assert_eq!(err("EXPOSE http").message, "invalid containerPort: http");
    assert_eq!(
        err("EXPOSE").message,
        "EXPOSE requires at least one argument"
    );

    let Command::User(u) = one("USER app:staff").command else {
        panic!()
    };
    assert_eq!(u.user, "app:staff");
    // The parser keeps USER's rest of line as one word, as BuildKit does.
    let Command::User(u) = one("USER a b").command else {
        panic!()
    };
    assert_eq!(u.user, "a b");
    assert!(err("USER app:").message.starts_with("invalid user"));

    let Command::Workdir(w) = one("WORKDIR /src").command else {
        panic!()
    };
    assert_eq!(w.path, "/src");
    assert_eq!(
        err("WORKDIR").message,
        "WORKDIR requires exactly one argument"
    );

    let Command::Volume(v) = one(r#"VOLUME ["/data", "/logs"]"#).command else {
        panic!()
    };
    assert_eq!(v.paths, vec!["/data", "/logs"]);
    let Command::Volume(v) = one("VOLUME /a /b").command else {
        panic!()
    };
    assert_eq!(v.paths, vec!["/a", "/b"]);
    assert_eq!(
        err(r#"VOLUME ["/a", ""]"#).message,
        "VOLUME specified can not be an empty string"
    );

    let Command::Maintainer(m) = one("MAINTAINER Jane <jane@example.com>").command else {
        panic!()
    };
    assert_eq!(m.name, "Jane <jane@example.com>");
}

#[test]
fn arg_pairs() {
    let Command::Arg(a) = one("ARG A B=2 C=\"x y\"").command else {
        panic!()
    };
    assert_eq!(
        a.args[0],
        ArgDecl {
            name: "A".into(),
            default: None
        }
    );
    assert_eq!(
        a.args[1],
        ArgDecl {
            name: "B".into(),
            default: Some("2".into())
        }
    );
    assert_eq!(a.args[2].default.as_deref(), Some("\"x y\""));
    assert_eq!(err("ARG =x").message, "ARG names can not be blank");
}

#[test]
fn onbuild_trigger_is_typed() {
    let i = one("FROM a\nONBUILD RUN make install");
    let Command::Onbuild(o) = i.command else {
        panic!()
    };
    assert_eq!(o.expression, "RUN make install");
    assert_eq!(o.trigger.keyword(), "RUN");
    assert_eq!(o.trigger.line(), 2);
    let Command::Onbuild(o) = one("ONBUILD COPY --from=x a b").command else {
        panic!()
    };
    assert!(matches!(o.trigger.command, Command::Copy(_)));

    // The parser already refuses `ONBUILD ONBUILD`; a hand-made node checks the typing rule too.
    let inner = Node {
        keyword: "run".into(),
        args: vec!["x".into()],
        ..Node::default()
    };
    let middle = Node {
        keyword: "onbuild".into(),
        onbuild: Some(Box::new(inner)),
        ..Node::default()
    };
    let outer = Node {
        keyword: "onbuild".into(),
        onbuild: Some(Box::new(middle)),
        span: Span { start: 4, end: 4 },
        ..Node::default()
    };
    assert_eq!(
        parse_instruction(&outer).unwrap_err().to_string(),
        "line 4: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"
    );
    for (kw, name) in [("from", "FROM"), ("maintainer", "MAINTAINER")] {
        let inner = Node {
            keyword: kw.into(),
            args: vec!["x".into()],
            ..Node::default()
        };
        let node = Node {
            keyword: "onbuild".into(),
            onbuild: Some(Box::new(inner)),
            ..Node::default()
        };
        assert_eq!(
            parse_instruction(&node).unwrap_err().message,
            format!("{name} isn't allowed as an ONBUILD trigger")
        );
    }
    assert_eq!(
        err("\nONBUILD COPY --bogus a b").to_string(),
        "line 2: unknown flag: bogus"
    );
}

#[test]
fn stopsignal_forms() {
    for ok in ["SIGTERM", "TERM", "15", "SIGRTMIN+3", "$SIG"] {
        assert!(typed(&format!("STOPSIGNAL {ok}"))[0].is_ok(), "{ok}");
    }
    assert_eq!(
        err("STOPSIGNAL SIGBOGUS").message,
        "Invalid signal: SIGBOGUS"
    );
    assert_eq!(err("STOPSIGNAL 0").message, "Invalid signal: 0");
    assert_eq!(err("STOPSIGNAL 99").message, "Invalid signal: 99");
}

#[test]
fn healthcheck_forms() {
    let Command::Healthcheck(h) =
        one("HEALTHCHECK --interval=5s --timeout=3s --start-period=1m --start-interval=500ms --retries=3 CMD /check --quiet")
            .command
    else {
        panic!()
    };
    assert_eq!(h.test(), vec!["CMD-SHELL", "/check --quiet"]);
    let HealthcheckCommand::Check(c) = h else {
        panic!()
    };
    assert_eq!(c.interval, Some(Duration::from_secs(5)));
    assert_eq!(c.timeout, Some(Duration::from_secs(3)));
    assert_eq!(c.start_period, Some(Duration::from_secs(60)));
    assert_eq!(c.start_interval, Some(Duration::from_millis(500)));
    assert_eq!(c.retries, Some(3));

    let Command::Healthcheck(h) =
        one(r#"HEALTHCHECK CMD ["curl", "-f", "http://localhost/"]"#).command
    else {
        panic!()
    };
    assert_eq!(h.test(), vec!["CMD", "curl", "-f", "http://localhost/"]);
    let Command::Healthcheck(h) = one("HEALTHCHECK NONE").command else {
        panic!()
    };
    assert_eq!(h, HealthcheckCommand::None);
    assert_eq!(h.test(), vec!["NONE"]);
    let Command::Healthcheck(HealthcheckCommand::Check(c)) =
        one("HEALTHCHECK --interval=0s CMD x").command
    else {
        panic!()
    };
    assert_eq!(c.interval, None);
}

#[test]
fn healthcheck_errors() {
    assert_eq!(
        err("HEALTHCHECK").message,
        "HEALTHCHECK requires at least one argument"
    );
    assert_eq!(
        err("HEALTHCHECK NONE x").message,
        "HEALTHCHECK NONE takes no arguments"
    );
    assert_eq!(
        err("HEALTHCHECK CMD").message,
        "Missing command after HEALTHCHECK CMD"
    );
    assert_eq!(
        err("HEALTHCHECK CONNECT TCP 7000").message,
        "Unknown type \"CONNECT\" in HEALTHCHECK (try CMD)"
    );
    assert_eq!(
        err("HEALTHCHECK --interval=1us CMD x").message,
        "Interval \"interval\" cannot be less than 1ms"
    );
    assert_eq!(
        err("HEALTHCHECK --timeout=5 CMD x").message,
        "time: missing unit in duration \"5\""
    );
    assert_eq!(
        err("HEALTHCHECK --retries=-1 CMD x").message,
        "--retries cannot be negative (-1)"
    );
    assert_eq!(
        err("HEALTHCHECK --retries=x CMD x").message,
        "invalid value \"x\" for --retries"
    );
    assert_eq!(
        err("HEALTHCHECK --port=1 CMD x").message,
        "unknown flag: port"
    );
}

#[test]
fn shell_must_be_json() {
    let Command::Shell(s) = one(r#"SHELL ["/bin/bash", "-c"]"#).command else {
        panic!()
    };
    assert_eq!(s.shell, vec!["/bin/bash", "-c"]);
    assert_eq!(
        err("SHELL /bin/bash -c").message,
        "SHELL requires the arguments to be in JSON form"
    );
}

#[test]
fn unknown_instruction_suggests() {
    assert_eq!(
        err("\n\nFROMM alpine").to_string(),
        "line 3: unknown instruction: FROMM (did you mean from?)"
    );
    assert_eq!(
        err("FROBNICATE x").message,
        "unknown instruction: FROBNICATE"
    );
    assert_eq!(
        err("COPPY a b").message,
        "unknown instruction: COPPY (did you mean copy?)"
    );
}

#[test]
fn flags_on_flagless_instructions_are_unknown() {
    assert_eq!(err("USER --x=1 app").message, "unknown flag: x");
    assert_eq!(err("ENV --a=b c=d").message, "unknown flag: a");
    assert_eq!(err("WORKDIR --chown=1 /x").message, "unknown flag: chown");
}

//! ARG/ENV scoping and per-instruction expansion, from real Dockerfiles.

use std::collections::BTreeMap;

use kiln_dockerfile::instructions::*;
use kiln_dockerfile::parser::parse;
use kiln_dockerfile::scope::{Expanded, GlobalScope, PlatformArgs, StageEnv};

/// Global scope from the instructions before the first FROM, plus the typed
/// instructions of the first stage (FROM excluded).
fn setup(text: &str, build_args: &[(&str, &str)]) -> (GlobalScope, Vec<Instruction>) {
    let ast = parse(text).expect("parses");
    let build_args: BTreeMap<String, String> = build_args
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut global = GlobalScope::new(
        ast.directives.escape,
        &build_args,
        &PlatformArgs::new("linux/amd64", "linux/arm64/v8"),
    );
    let typed: Vec<Instruction> = ast
        .children
        .iter()
        .map(|n| parse_instruction(n).expect("types"))
        .collect();
    let from = typed
        .iter()
        .position(|i| matches!(i.command, Command::From(_)))
        .expect("has FROM");
    for i in &typed[..from] {
        global.declare(i).unwrap();
    }
    (global, typed[from + 1..].to_vec())
}

/// Apply every stage instruction; returns the expanded list and the end state.
fn run_stage(
    text: &str,
    build_args: &[(&str, &str)],
    image_env: &[(&str, &str)],
) -> (Vec<Expanded>, StageEnv) {
    let (global, stage) = setup(text, build_args);
    let env = image_env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut stage_env = StageEnv::new(&global, env);
    let expanded = stage
        .iter()
        .map(|i| stage_env.apply(i).expect("applies"))
        .collect();
    (expanded, stage_env)
}

fn env_of(expanded: &Expanded) -> Vec<(String, String)> {
    let Command::Env(e) = &expanded.instruction.command else {
        panic!("{expanded:?}")
    };
    e.vars
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn args(p: &[(&str, &str)]) -> BTreeMap<String, String> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn global_arg_used_in_from_but_invisible_in_stage_until_redeclared() {
    let text = "ARG VERSION=3.19\nFROM alpine:$VERSION\nENV A=\"v=$VERSION\"\nARG VERSION\nENV B=\"v=$VERSION\"\n";
    let (global, _) = setup(text, &[]);
    assert_eq!(
        global.expand("alpine:$VERSION", 2).unwrap().0,
        "alpine:3.19"
    );
    let (x, _) = run_stage(text, &[], &[]);
    assert_eq!(env_of(&x[0]), pairs(&[("A", "v=")]));
    assert_eq!(env_of(&x[2]), pairs(&[("B", "v=3.19")]));
    assert_eq!(x[2].used_args, args(&[("VERSION", "3.19")]));
}

#[test]
fn build_arg_overrides_global_and_stage_defaults() {
    let text = "ARG V=1\nFROM scratch\nARG V\nARG W=default\nENV X=$V-$W\n";
    let (x, _) = run_stage(text, &[("V", "9"), ("W", "cli")], &[]);
    assert_eq!(env_of(&x[2]), pairs(&[("X", "9-cli")]));
    let (x, _) = run_stage(text, &[], &[]);
    assert_eq!(env_of(&x[2]), pairs(&[("X", "1-default")]));
}

#[test]
fn arg_without_default_or_build_arg_is_unset() {
    let text = "FROM scratch\nARG NOPE\nENV X=${NOPE:-unset} Y=${NOPE+set}\n";
    let (x, stage) = run_stage(text, &[], &[]);
    let Command::Arg(a) = &x[0].instruction.command else {
        panic!()
    };
    assert_eq!(a.args[0].default, None);
    assert_eq!(env_of(&x[1]), pairs(&[("X", "unset"), ("Y", "")]));
    assert!(stage.run_env().iter().all(|(k, _)| k != "NOPE"));
}

#[test]
fn env_beats_arg_of_the_same_name() {
    let text = "FROM scratch\nARG NAME=fromarg\nENV NAME=fromenv\nENV OUT=$NAME\nRUN echo $NAME\n";
    let (x, stage) = run_stage(text, &[("NAME", "frombuildarg")], &[]);
    assert_eq!(env_of(&x[2]), pairs(&[("OUT", "fromenv")]));
    assert!(
        x[2].used_args.is_empty(),
        "the ARG is shadowed, so not used: {:?}",
        x[2].used_args
    );
    assert!(x[3].used_args.is_empty());
    let run_env = stage.run_env();
    assert_eq!(run_env.iter().filter(|(k, _)| k == "NAME").count(), 1);
    assert!(run_env.contains(&("NAME".into(), "fromenv".into())));
}

#[test]
fn image_env_takes_part_in_expansion() {
    let text = "FROM base\nENV PATH=/opt/bin:$PATH\nWORKDIR $HOME/src\n";
    let (x, stage) = run_stage(text, &[], &[("PATH", "/usr/bin:/bin"), ("HOME", "/root")]);
    assert_eq!(env_of(&x[0]), pairs(&[("PATH", "/opt/bin:/usr/bin:/bin")]));
    assert_eq!(
        stage.image_env()[0],
        ("PATH".into(), "/opt/bin:/usr/bin:/bin".into())
    );
    let Command::Workdir(w) = &x[1].instruction.command else {
        panic!()
    };
    assert_eq!(w.path, "/root/src");
    assert!(x[0].used_args.is_empty(), "image env is not a build arg");
}

#[test]
fn env_pairs_see_the_scope_before_the_instruction() {
    let text = "FROM scratch\nENV abc=hello\nENV abc=bye def=$abc\n";
    let (x, stage) = run_stage(text, &[], &[]);
    assert_eq!(env_of(&x[1]), pairs(&[("abc", "bye"), ("def", "hello")]));
    assert_eq!(
        stage.image_env(),
        pairs(&[("abc", "bye"), ("def", "hello")]).as_slice()
    );
}

#[test]
fn unused_build_arg_changes_no_key() {
    let text = "FROM scratch\nARG USED=1\nCOPY a /dst/$USED\nCOPY b /plain\nRUN make\n";
    let (a, _) = run_stage(text, &[], &[]);
    let (b, _) = run_stage(text, &[("UNDECLARED", "x")], &[]);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y, "an undeclared build arg must not show anywhere");
    }
    assert_eq!(a[1].used_args, args(&[("USED", "1")]));
    assert!(
        a[2].used_args.is_empty(),
        "COPY without variables uses no args"
    );
    assert_eq!(
        a[3].used_args,
        args(&[("USED", "1")]),
        "RUN sees every ARG in scope"
    );
    let (c, _) = run_stage(text, &[("USED", "2")], &[]);
    assert_eq!(c[1].used_args, args(&[("USED", "2")]));
    assert_eq!(
        a[2], c[2],
        "a step that does not use the changed arg is unchanged"
    );
}

#[test]
fn platform_args_need_declaration_in_stage() {
    let text = "FROM scratch\nENV BEFORE=[$TARGETARCH]\nARG TARGETARCH TARGETVARIANT\nENV AFTER=$TARGETARCH/$TARGETVARIANT\n";
    let (x, _) = run_stage(text, &[], &[]);
    assert_eq!(env_of(&x[0]), pairs(&[("BEFORE", "[]")]));
    assert_eq!(env_of(&x[2]), pairs(&[("AFTER", "arm64/v8")]));
    let (global, _) = setup(text, &[]);
    assert_eq!(global.expand("$BUILDPLATFORM", 1).unwrap().0, "linux/amd64");
}

#[test]
fn proxy_args_reach_run_without_declaration_but_not_keys() {
    let text = "FROM scratch\nARG VER=1\nRUN curl x\n";
    let (x, stage) = run_stage(
        text,
        &[("HTTPS_PROXY", "http://proxy:3128"), ("OTHER", "nope")],
        &[],
    );
    let run_env = stage.run_env();
    assert!(run_env.contains(&("HTTPS_PROXY".into(), "http://proxy:3128".into())));
    assert!(run_env.contains(&("VER".into(), "1".into())));
    assert!(
        !run_env.iter().any(|(k, _)| k == "OTHER"),
        "undeclared non-proxy build args stay out"
    );
    assert_eq!(x[1].used_args, args(&[("VER", "1")]));
}

#[test]
fn declared_proxy_arg_stays_out_of_keys() {
    let text = "FROM scratch\nARG http_proxy\nRUN curl x\n";
    let (x, stage) = run_stage(text, &[("http_proxy", "http://p")], &[]);
    assert!(x[1].used_args.is_empty());
    assert!(stage
        .run_env()
        .contains(&("http_proxy".into(), "http://p".into())));
}

#[test]
fn words_expanded_per_instruction() {
    let text = concat!(
        "FROM scratch\n",
        "ARG U=app P=\"80 443/udp\" D=/data SIG=SIGINT M=0755\n",
        "USER $U:$U\n",
        "EXPOSE $P 8080\n",
        "VOLUME $D /logs\n",
        "STOPSIGNAL $SIG\n",
        "LABEL \"$U.version\"=\"1 0\"\n",
        "COPY --chown=$U --chmod=$M src/$U ${D}/\n",
        "RUN echo $U\n",
        "CMD echo $U\n",
    );
    let (x, _) = run_stage(text, &[], &[]);
    let Command::User(u) = &x[1].instruction.command else {
        panic!()
    };
    assert_eq!(u.user, "app:app");
    let Command::Expose(e) = &x[2].instruction.command else {
        panic!()
    };
    assert_eq!(e.ports, vec!["80", "443/udp", "8080"]);
    let Command::Volume(v) = &x[3].instruction.command else {
        panic!()
    };
    assert_eq!(v.paths, vec!["/data", "/logs"]);
    let Command::StopSignal(s) = &x[4].instruction.command else {
        panic!()
    };
    assert_eq!(s.signal, "SIGINT");
    let Command::Label(l) = &x[5].instruction.command else {
        panic!()
    };
    assert_eq!(
        (l.labels[0].key.as_str(), l.labels[0].value.as_str()),
        ("app.version", "1 0")
    );
    let Command::Copy(c) = &x[6].instruction.command else {
        panic!()
    };
    assert_eq!(c.chown.as_deref(), Some("app"));
    assert_eq!(c.chmod.as_deref(), Some("0755"));
    assert_eq!(c.sources, vec![Source::Path("src/app".into())]);
    assert_eq!(c.dest, "/data/");
    let Command::Run(r) = &x[7].instruction.command else {
        panic!()
    };
    assert_eq!(
        r.command,
        CommandLine::Shell("echo $U".into()),
        "RUN is left to the shell"
    );
    let Command::Cmd(c) = &x[8].instruction.command else {
        panic!()
    };
    assert_eq!(c.command, CommandLine::Shell("echo $U".into()));
}

#[test]
fn copy_heredoc_expands_only_when_unquoted() {
    let text = "FROM scratch\nARG WHO=world\nCOPY <<EOF /a\nhello \"$WHO\"\nEOF\nCOPY <<'EOF' /b\nhello $WHO\nEOF\n";
    let (x, _) = run_stage(text, &[], &[]);
    let body = |i: usize| {
        let Command::Copy(c) = &x[i].instruction.command else {
            panic!()
        };
        let Source::Heredoc(h) = &c.sources[0] else {
            panic!()
        };
        h.content.clone()
    };
    assert_eq!(
        body(1),
        "hello \"world\"\n",
        "quotes are kept, variables expand"
    );
    assert_eq!(body(2), "hello $WHO\n");
    assert_eq!(x[1].used_args, args(&[("WHO", "world")]));
}

#[test]
fn workdir_relative_resolves_against_previous() {
    let text = "FROM scratch\nWORKDIR /app\nWORKDIR src/../lib\nWORKDIR /abs\n";
    let (global, stage) = setup(text, &[]);
    let mut env = StageEnv::new(&global, Vec::new()).with_workdir("/base");
    let paths: Vec<String> = stage
        .iter()
        .map(|i| match env.apply(i).unwrap().instruction.command {
            Command::Workdir(w) => w.path,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(paths, vec!["/app", "/app/lib", "/abs"]);
    assert_eq!(env.workdir(), "/abs");
}

#[test]
fn run_mounts_expand_at_build_time() {
    let text = "FROM scratch\nARG CACHE=/root/.cache ID=pip\nRUN --mount=type=cache,target=$CACHE,id=$ID pip install\n";
    let (x, _) = run_stage(text, &[], &[]);
    let Command::Run(r) = &x[1].instruction.command else {
        panic!()
    };
    assert_eq!(r.mounts[0].target.as_deref(), Some("/root/.cache"));
    assert_eq!(r.mounts[0].id.as_deref(), Some("pip"));
}

#[test]
fn errors_after_expansion_carry_the_line() {
    let cases = [
        (
            "FROM scratch\nARG P=http\nEXPOSE $P\n",
            "line 3: invalid containerPort: http",
        ),
        (
            "FROM scratch\nARG S=BOGUS\nSTOPSIGNAL $S\n",
            "line 3: Invalid signal: BOGUS",
        ),
        (
            "FROM scratch\nARG U\nUSER $U\n",
            "line 3: invalid user \"\": expected user[:group]",
        ),
        (
            "FROM scratch\nARG V\nVOLUME $V\n",
            "line 3: VOLUME specified can not be an empty string",
        ),
        (
            "FROM scratch\n\nENV X=${MISSING:?needed}\n",
            "line 3: failed to process \"${MISSING:?needed}\": MISSING: needed",
        ),
        (
            "FROM scratch\nARG T\nRUN --mount=type=cache,target=$T ls\n",
            "line 3: mount type cache requires a target",
        ),
    ];
    for (text, want) in cases {
        let (global, stage) = setup(text, &[]);
        let mut env = StageEnv::new(&global, Vec::new());
        let got = stage
            .iter()
            .map(|i| env.apply(i))
            .find_map(Result::err)
            .expect(text);
        assert_eq!(got.to_string(), want, "{text}");
    }
}

#[test]
fn arg_names_are_expanded() {
    let text = "FROM scratch\nENV name=myarg\nARG ${name}=default\nENV OUT=$myarg\n";
    let (x, stage) = run_stage(text, &[], &[]);
    let Command::Arg(a) = &x[1].instruction.command else {
        panic!("{:?}", x[1])
    };
    assert_eq!(a.args[0].name, "myarg");
    assert_eq!(env_of(&x[2]), pairs(&[("OUT", "default")]));
    assert!(stage
        .run_env()
        .contains(&("myarg".into(), "default".into())));
    // A build arg reaches the ARG by its expanded name.
    let (x, _) = run_stage(text, &[("myarg", "given")], &[]);
    assert_eq!(env_of(&x[2]), pairs(&[("OUT", "given")]));
}

#[test]
fn an_arg_name_that_expands_to_nothing_is_an_error() {
    let (global, stage) = setup("FROM scratch\nARG ${unset}=x\n", &[]);
    let e = StageEnv::new(&global, Vec::new())
        .apply(&stage[0])
        .unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.message.contains("empty name"), "{}", e.message);
}

#[test]
fn an_arg_declared_after_env_wins_until_the_next_env() {
    let text = "FROM scratch\nENV V=env\nARG V=arg\nENV A=$V\nRUN x\nENV V=env2\nENV B=$V\n";
    let (x, stage) = run_stage(text, &[], &[("P", "base")]);
    assert_eq!(env_of(&x[2]), pairs(&[("A", "arg")]));
    assert_eq!(x[2].used_args, args(&[("V", "arg")]));
    assert!(x[3].used_args.contains_key("V"), "{:?}", x[3].used_args);
    assert_eq!(env_of(&x[5]), pairs(&[("B", "env2")]));
    let run_env = stage.run_env();
    assert!(
        run_env.contains(&("V".into(), "env2".into())),
        "{run_env:?}"
    );
    // Before the last ENV, a RUN saw the ARG's value, once.
    let (global, instrs) = setup(text, &[]);
    let mut env = StageEnv::new(&global, Vec::new());
    for i in &instrs[..3] {
        env.apply(i).unwrap();
    }
    let run_env = env.run_env();
    assert_eq!(
        run_env.iter().filter(|(k, _)| k == "V").collect::<Vec<_>>(),
        [&("V".to_string(), "arg".to_string())]
    );
    // A base image variable is shadowed the same way; a bare ARG shadows nothing.
    let (x, _) = run_stage(
        "FROM scratch\nARG P=arg\nARG Q\nENV A=$P B=$Q\n",
        &[],
        &[("P", "base"), ("Q", "baseq")],
    );
    assert_eq!(env_of(&x[2]), pairs(&[("A", "arg"), ("B", "baseq")]));
}

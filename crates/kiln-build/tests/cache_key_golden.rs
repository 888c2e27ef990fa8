//! The cache keys of a fixed set of Dockerfiles and build contexts, pinned.
//!
//! Every key an existing cache holds is only found again if the same build
//! computes the same bytes. A change to any line of `golden/cache_keys.txt`
//! therefore throws away everyone's cache: it must be a decision, made by
//! bumping `KEY_FORMAT_VERSION` in `cache::key` and regenerating the file
//! (the failure message says how), never a side effect of renaming a field.
//!
//! The walk below chains keys the way the build engine does for each
//! instruction kind (`engine::stage::step_body`, `copy_key_inputs`,
//! `run_key_inputs`): the expanded instruction and the args it used, a
//! COPY's planned inputs from the context, a `COPY --from` stage's key, a
//! RUN bind mount's context tree. Base images stand in by a fixed digest.
//! `crates/kiln/tests/cache_build.rs` (`a_build_stores_the_golden_cache_keys`)
//! runs a real build of the "copy-and-add" fixture and finds its keys here.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use kiln_build::cache::{key, CacheKey, StepInputs, Upstream};
use kiln_build::context::BuildContext;
use kiln_build::copy::{plan_copy, Chmod, CopyRequest, CopySource};
use kiln_dockerfile::instructions::{Command, MountType, Source};
use kiln_dockerfile::plan::{Base, StageSelection};
use kiln_dockerfile::scope::{PlatformArgs, StageEnv};
use kiln_dockerfile::LoadOptions;
use kiln_oci::{Digest, Platform};

const GOLDEN: &str = "tests/golden/cache_keys.txt";

/// A fixture: a name, the Dockerfile, and its `--build-arg`s.
type Fixture = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

const FIXTURES: &[Fixture] = &[
    (
        "metadata",
        "FROM scratch\n\
         LABEL a=1 \"b c\"=\"d e\"\n\
         MAINTAINER someone\n\
         ENV PATH=/bin LANG=C.UTF-8\n\
         ENV HOME /root\n\
         EXPOSE 80/tcp 53/udp\n\
         USER 1000:1000\n\
         WORKDIR /app\n\
         WORKDIR sub\n\
         VOLUME /data [\"/logs\"]\n\
         STOPSIGNAL SIGINT\n\
         SHELL [\"/bin/bash\", \"-c\"]\n\
         HEALTHCHECK --interval=5s --timeout=2s --start-period=1s --start-interval=1s --retries=3 CMD curl -f localhost\n\
         HEALTHCHECK NONE\n\
         CMD [\"serve\", \"--port\", \"80\"]\n\
         ENTRYPOINT /entry.sh\n",
        &[],
    ),
    (
        "build-args",
        "ARG VERSION=1.0\n\
         FROM registry.example/base:${VERSION}\n\
         ARG VERSION\n\
         ARG UNUSED=x\n\
         ARG FLAVOUR=plain\n\
         ENV V=$VERSION\n\
         RUN echo $FLAVOUR\n\
         LABEL flavour=${FLAVOUR}\n",
        &[("VERSION", "2.0"), ("FLAVOUR", "spicy"), ("NOT_DECLARED", "y")],
    ),
    (
        "copy-and-add",
        "FROM scratch\n\
         WORKDIR /srv\n\
         COPY a.txt .\n\
         COPY --chown=1000:1000 --chmod=0640 src/ /src/\n\
         COPY --chmod=u+x run.sh /bin/\n\
         COPY --parents --exclude=*_test.go src/**/*.go /tree/\n\
         COPY --link link.txt /l\n\
         ADD --chown=1:2 archive.txt /add/\n",
        &[],
    ),
    (
        "heredocs",
        "FROM scratch\n\
         ARG NAME=world\n\
         COPY <<EOF /hello.txt\nhello $NAME\nEOF\n\
         COPY <<'EOF' /raw.txt\nhello $NAME\nEOF\n\
         RUN <<EOF\necho one\necho two\nEOF\n\
         RUN 3<<-EOF cat <&3\n\tindented\n\tEOF\n",
        &[],
    ),
    (
        "run-mounts",
        "FROM registry.example/base:1\n\
         RUN --mount=type=cache,target=/root/.cache,id=pip,sharing=locked,mode=0700,uid=1,gid=2 pip install x\n\
         RUN --mount=type=tmpfs,target=/tmp,size=1m make\n\
         RUN --mount=type=secret,id=token,env=TOKEN,required make\n\
         RUN --mount=type=ssh,id=default git clone x\n\
         RUN --mount=type=bind,source=src,target=/src make\n\
         RUN --mount=type=bind,source=src,target=/src,rw --network=none --security=insecure make\n\
         RUN [\"/bin/true\", \"a b\"]\n",
        &[],
    ),
    (
        "stages-and-platform",
        "FROM --platform=linux/arm64/v8 registry.example/go:1 AS build\n\
         RUN --mount=type=bind,from=registry.example/tools:1,target=/t true\n\
         RUN go build -o /out/app\n\
         FROM --platform=linux/arm/v7 scratch AS other\n\
         COPY a.txt /\n\
         FROM build AS test\n\
         RUN --mount=type=bind,from=other,target=/o go test\n\
         FROM scratch\n\
         COPY --from=build /out/app /app\n\
         COPY --from=registry.example/tools:1 /bin/tool /tool\n\
         ONBUILD COPY . /app\n\
         ONBUILD RUN make\n",
        &[],
    ),
];

/// The same context for every fixture, with fixed modes and no owner
/// choices (owners come from `--chown`), so keys do not depend on the
/// machine.
fn context() -> (tempfile::TempDir, BuildContext) {
    let t = tempfile::tempdir().unwrap();
    let write = |rel: &str, body: &str, mode: u32| {
        let p = t.path().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, body).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    };
    write("a.txt", "A\n", 0o644);
    write("run.sh", "#!/bin/sh\necho hi\n", 0o755);
    write("archive.txt", "not an archive\n", 0o600);
    write("src/main.go", "package main\n", 0o644);
    write("src/pkg/util.go", "package pkg\n", 0o644);
    write("src/pkg/util_test.go", "package pkg\n", 0o644);
    symlink("a.txt", t.path().join("link.txt")).unwrap();
    for dir in ["src", "src/pkg"] {
        fs::set_permissions(t.path().join(dir), fs::Permissions::from_mode(0o755)).unwrap();
    }
    let ctx = BuildContext::from_dir(t.path()).unwrap();
    (t, ctx)
}

/// The digest a base image reference stands for in these keys.
fn base_digest(reference: &str) -> Digest {
    Digest::sha256_of(reference.as_bytes())
}

/// A COPY/ADD's file inputs from the context, planned as the engine plans
/// them for the key (without the image's answers).
fn copy_inputs(ctx: &BuildContext, env: &StageEnv, command: &Command) -> Option<Digest> {
    let (sources, dest, chown, chmod, add, parents, exclude) = match command {
        Command::Copy(c) if c.from.is_none() => (
            &c.sources, &c.dest, &c.chown, &c.chmod, false, c.parents, &c.exclude,
        ),
        Command::Add(a) => (
            &a.sources, &a.dest, &a.chown, &a.chmod, true, false, &a.exclude,
        ),
        _ => return None,
    };
    let sources = sources
        .iter()
        .map(|s| match s {
            Source::Path(p) => CopySource::Path(p.clone()),
            Source::Heredoc(h) => CopySource::Heredoc {
                name: h.name.clone(),
                body: h.content.clone(),
            },
        })
        .collect();
    let mut req = CopyRequest::new(sources, dest.clone());
    req.workdir = env.workdir().to_string();
    req.add = add;
    req.parents = parents;
    // `--chown` is resolved against the image later; the key has its text.
    let _ = chown;
    req.chmod = chmod.as_deref().map(|c| Chmod::parse(c).unwrap());
    req.exclude = (!exclude.is_empty()).then(|| {
        let m = kiln_dockerfile::ignore::DockerIgnore::from_patterns(exclude).unwrap();
        std::sync::Arc::new(m) as std::sync::Arc<dyn kiln_build::context::PathMatcher>
    });
    Some(
        plan_copy(ctx, &req, &|_| None)
            .unwrap()
            .inputs_digest()
            .unwrap(),
    )
}

/// Every step's key of one fixture, one line each.
fn keys_of(name: &str, text: &str, build_args: &[(&str, &str)], ctx: &BuildContext) -> String {
    let options = LoadOptions {
        build_args: build_args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        platform: PlatformArgs::new("linux/amd64", "linux/amd64"),
        selection: StageSelection::All,
        ..Default::default()
    };
    let dockerfile = kiln_dockerfile::load_with(text, &options)
        .unwrap_or_else(|e| panic!("fixture {name}: {e:?}"));
    let mut out = String::new();
    let mut stage_keys: BTreeMap<usize, CacheKey> = BTreeMap::new();
    for stage in &dockerfile.stages {
        let platform: Platform = stage
            .platform
            .as_deref()
            .unwrap_or("linux/amd64")
            .parse()
            .unwrap();
        let parent = match &stage.base {
            Base::Scratch => "scratch".to_string(),
            Base::Stage(i) => stage_keys[i].to_string(),
            Base::Image(r) => base_digest(r).to_string(),
        };
        let mut key = CacheKey::base(&parent, &platform);
        writeln!(out, "{name} {} FROM {key}", stage.display_name()).unwrap();
        let mut env = StageEnv::new(&dockerfile.global, Vec::new());
        for instruction in &stage.instructions {
            let expanded = env
                .apply(instruction)
                .unwrap_or_else(|e| panic!("fixture {name}: {e:?}"));
            let command = &expanded.instruction.command;
            let inputs = copy_inputs(ctx, &env, command);
            let mut extra = Vec::new();
            match command {
                Command::Copy(c) if c.from.is_some() => {
                    let from = c.from.as_deref().unwrap();
                    match dockerfile
                        .stages
                        .iter()
                        .position(|s| s.name.as_deref() == Some(from))
                    {
                        Some(i) => extra.push(Upstream::CopyFromStage(stage_keys[&i].clone())),
                        None => extra.push(Upstream::CopyFromImage(base_digest(from))),
                    }
                }
                Command::Run(r) => {
                    for m in r.mounts.iter().filter(|m| m.kind == MountType::Bind) {
                        let target = m.target.clone().unwrap_or_default();
                        match m.from.as_deref() {
                            Some(from) => {
                                let stage = dockerfile
                                    .stages
                                    .iter()
                                    .position(|s| s.name.as_deref() == Some(from));
                                extra.push(match stage {
                                    Some(i) => Upstream::MountStage {
                                        target,
                                        key: stage_keys[&i].clone(),
                                    },
                                    None => Upstream::MountImage {
                                        target,
                                        digest: base_digest(from),
                                    },
                                });
                            }
                            None => {
                                let source = m.source.as_deref().unwrap_or("/");
                                let tree = key::tree_digest(&ctx.root().join(source)).unwrap();
                                extra.push(Upstream::MountContext { target, tree });
                            }
                        }
                    }
                }
                _ => {}
            }
            key = key.chain(&StepInputs {
                command,
                args: &expanded.used_args,
                inputs: inputs.as_ref(),
                extra: &extra,
            });
            writeln!(
                out,
                "{name} {} {}:{} {key}",
                stage.display_name(),
                instruction.line(),
                instruction.keyword()
            )
            .unwrap();
        }
        stage_keys.insert(stage.index, key);
    }
    out
}

#[test]
fn cache_keys_match_the_golden_file() {
    let (_t, ctx) = context();
    let mut actual = format!(
        "# Cache keys of tests/cache_key_golden.rs, KEY_FORMAT_VERSION {}\n",
        key::KEY_FORMAT_VERSION
    );
    for (name, text, args) in FIXTURES {
        actual.push_str(&keys_of(name, text, args, &ctx));
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(GOLDEN);
    if std::env::var_os("KILN_UPDATE_GOLDEN").is_some() {
        fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = fs::read_to_string(&path).unwrap_or_default();
    if actual != expected {
        let diff: Vec<String> = expected
            .lines()
            .zip(actual.lines())
            .filter(|(e, a)| e != a)
            .take(10)
            .map(|(e, a)| format!("  was: {e}\n  now: {a}"))
            .collect();
        panic!(
            "cache keys changed ({} lines were, {} now); first differences:\n{}\n\n\
             Every existing cache entry stops matching when a key changes. If that is \
             intended, bump KEY_FORMAT_VERSION in crates/kiln-build/src/cache/key/mod.rs \
             and regenerate the golden file:\n  \
             KILN_UPDATE_GOLDEN=1 cargo test -p kiln-build --test cache_key_golden\n\
             then commit crates/kiln-build/{GOLDEN} with the change.",
            expected.lines().count(),
            actual.lines().count(),
            diff.join("\n")
        );
    }
}

//! Stage graph, target selection, parallel levels, and `load`'s error
//! collection, from real Dockerfiles.

use std::collections::{BTreeMap, BTreeSet};

use kiln_dockerfile::plan::{Base, StageSelection};
use kiln_dockerfile::scope::PlatformArgs;
use kiln_dockerfile::{load, load_with, Dockerfile, FrontendError, LoadOptions};

fn ok(text: &str) -> Dockerfile {
    load(text, &BTreeMap::new(), None).expect("loads")
}

fn errors(text: &str) -> Vec<String> {
    load(text, &BTreeMap::new(), None)
        .expect_err("must fail")
        .iter()
        .map(FrontendError::to_string)
        .collect()
}

fn with(
    text: &str,
    target: Option<&str>,
    selection: StageSelection,
) -> Result<Dockerfile, Vec<FrontendError>> {
    let options = LoadOptions {
        target: target.map(str::to_string),
        selection,
        platform: PlatformArgs::new("linux/amd64", "linux/arm64"),
        ..LoadOptions::default()
    };
    load_with(text, &options)
}

const DIAMOND: &str = "\
FROM alpine AS base
RUN apk add gcc
FROM base AS lib
RUN make lib
FROM base AS tool
RUN make tool
FROM golang AS unused
RUN true
FROM scratch AS final
COPY --from=lib /lib /lib
COPY --from=tool /tool /tool
";

#[test]
fn stages_bases_and_names() {
    let df = ok(DIAMOND);
    assert_eq!(df.stages.len(), 5);
    assert_eq!(df.stages[0].base, Base::Image("alpine".into()));
    assert_eq!(df.stages[1].base, Base::Stage(0));
    assert_eq!(df.stages[4].base, Base::Scratch);
    assert_eq!(df.stages[4].name.as_deref(), Some("final"));
    assert_eq!(df.stages[1].instructions.len(), 1);
    assert_eq!(df.target().index, 4);
}

#[test]
fn target_needs_only_its_dependencies_in_parallel_levels() {
    let df = ok(DIAMOND);
    assert_eq!(df.plan.needed, BTreeSet::from([0, 1, 2, 4]));
    assert_eq!(df.plan.levels, vec![vec![0], vec![1, 2], vec![4]]);
    assert_eq!(df.plan.deps[4].stages, BTreeSet::from([1, 2]));
}

#[test]
fn all_stages_mode_builds_everything() {
    let df = with(DIAMOND, None, StageSelection::All).unwrap();
    assert_eq!(df.plan.needed, BTreeSet::from([0, 1, 2, 3, 4]));
    assert_eq!(df.plan.levels, vec![vec![0, 3], vec![1, 2], vec![4]]);
}

#[test]
fn explicit_target_case_insensitive() {
    let df = with(DIAMOND, Some("Tool"), StageSelection::TargetDeps).unwrap();
    assert_eq!(df.plan.target, 2);
    assert_eq!(df.plan.levels, vec![vec![0], vec![2]]);
}

#[test]
fn unknown_target_lists_stage_names() {
    let e = with(DIAMOND, Some("nope"), StageSelection::TargetDeps).unwrap_err();
    assert_eq!(
        e[0].message,
        "target stage \"nope\" could not be found; the stages are: base, lib, tool, unused, final"
    );
}

#[test]
fn copy_from_index_image_and_mount_from() {
    let text = "\
FROM alpine
RUN echo one
FROM busybox AS two
RUN --mount=type=bind,from=0,target=/mnt ls /mnt
COPY --from=nginx:1.25 /etc/nginx /etc/nginx
FROM scratch
COPY --from=1 /x /x
";
    let df = ok(text);
    assert_eq!(df.plan.deps[1].stages, BTreeSet::from([0]));
    assert_eq!(
        df.plan.deps[1].images,
        BTreeSet::from(["nginx:1.25".to_string()])
    );
    assert_eq!(df.plan.deps[2].stages, BTreeSet::from([1]));
    assert_eq!(df.plan.levels, vec![vec![0], vec![1], vec![2]]);
}

#[test]
fn copy_from_uses_meta_args() {
    let text = "ARG SRC=builder\nFROM alpine AS builder\nFROM scratch\nCOPY --from=$SRC /a /a\n";
    let df = ok(text);
    assert_eq!(df.plan.deps[1].stages, BTreeSet::from([0]));
    let df = load(
        text,
        &BTreeMap::from([("SRC".to_string(), "redis:7".to_string())]),
        None,
    )
    .unwrap();
    assert_eq!(
        df.plan.deps[1].images,
        BTreeSet::from(["redis:7".to_string()])
    );
    assert!(df.plan.deps[1].stages.is_empty());
}

#[test]
fn from_uses_meta_args_and_build_args() {
    let text = "ARG REG=docker.io\nARG TAG=3.19\nFROM --platform=$BUILDPLATFORM $REG/library/alpine:$TAG\n";
    let df = load(
        text,
        &BTreeMap::from([("TAG".to_string(), "edge".to_string())]),
        None,
    )
    .unwrap();
    assert_eq!(
        df.stages[0].base,
        Base::Image("docker.io/library/alpine:edge".into())
    );
    assert!(df.stages[0].platform.is_some());
    let df = with(text, None, StageSelection::TargetDeps).unwrap();
    assert_eq!(df.stages[0].platform.as_deref(), Some("linux/amd64"));
}

#[test]
fn from_sees_only_earlier_stages() {
    // `FROM later` before a stage named `later` is an image, as in BuildKit.
    let df = ok("FROM later AS first\nFROM alpine AS later\n");
    assert_eq!(df.stages[0].base, Base::Image("later".into()));
}

#[test]
fn copy_from_later_stage_by_name_is_allowed_but_cycles_are_not() {
    let df = with(
        "FROM alpine AS a\nCOPY --from=b /x /x\nFROM alpine AS b\n",
        Some("a"),
        StageSelection::TargetDeps,
    )
    .unwrap();
    assert_eq!(df.plan.levels, vec![vec![1], vec![0]]);
    let e = errors("FROM alpine AS a\nCOPY --from=b /x /x\nFROM a AS b\n");
    assert_eq!(e, vec!["line 1: circular dependency detected on stage: a"]);
}

#[test]
fn copy_from_index_must_be_earlier_and_not_self() {
    assert_eq!(
        errors("FROM alpine\nCOPY --from=0 /x /x\n"),
        vec!["line 2: COPY --from=0: stage index 0 does not refer to an earlier stage"]
    );
    assert_eq!(
        errors("FROM alpine\nFROM alpine\nCOPY --from=5 /x /x\n"),
        vec!["line 3: COPY --from=5: stage index 5 does not refer to an earlier stage"]
    );
    assert_eq!(
        errors("FROM alpine AS me\nCOPY --from=me /x /x\n"),
        vec!["line 2: COPY --from=me: circular dependency detected on stage: me"]
    );
    assert_eq!(
        errors("FROM alpine AS me\nRUN --mount=from=me,target=/m ls\n"),
        vec!["line 2: RUN --mount from=me: circular dependency detected on stage: me"]
    );
}

#[test]
fn duplicate_stage_names_and_blank_base() {
    assert_eq!(
        errors("FROM alpine AS x\nFROM alpine AS X\n"),
        vec!["line 2: duplicate stage name \"x\""]
    );
    assert_eq!(
        errors("ARG EMPTY\nFROM $EMPTY\n"),
        vec!["line 2: base name ($EMPTY) should not be blank"]
    );
}

#[test]
fn instructions_before_first_from() {
    assert_eq!(
        errors("ARG OK=1\nRUN echo\nFROM alpine\n"),
        vec!["line 2: RUN instruction is not allowed before the first FROM"]
    );
    assert_eq!(
        errors("ARG ONLY=1\n"),
        vec!["line 0: dockerfile contains no stages to build"]
    );
}

#[test]
fn all_independent_problems_are_reported_in_line_order() {
    let text = "\
FROM alpine AS 9bad
FROMM x
COPY onlyone
EXPOSE 80/icmp
USER --x=y app
HEALTHCHECK --retries=-2 CMD true
STOPSIGNAL NOPE
";
    assert_eq!(
        errors(text),
        vec![
            "line 1: invalid name for build stage: \"9bad\", name can't start with a number or contain symbols",
            "line 2: unknown instruction: FROMM (did you mean from?)",
            "line 3: COPY requires at least two arguments, but only one was provided. Destination could not be determined",
            "line 4: invalid proto: icmp",
            "line 5: unknown flag: x",
            "line 6: --retries cannot be negative (-2)",
            "line 7: Invalid signal: NOPE",
        ]
    );
}

#[test]
fn parse_errors_keep_their_line() {
    let e = load("", &BTreeMap::new(), None).unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].message, "file with no instructions");
}

#[test]
fn unused_build_args_are_listed() {
    let text = "ARG USED_GLOBAL\nFROM alpine\nARG USED_STAGE\n";
    let args: BTreeMap<String, String> = [
        "USED_GLOBAL",
        "USED_STAGE",
        "NOBODY",
        "HTTP_PROXY",
        "TARGETARCH",
    ]
    .iter()
    .map(|k| (k.to_string(), "v".to_string()))
    .collect();
    let df = load(text, &args, None).unwrap();
    assert_eq!(df.unused_build_args(), vec!["NOBODY"]);
}

#[test]
fn an_arg_whose_name_is_a_variable_consumes_what_it_expands_to() {
    let text = "FROM alpine\nENV name=myarg\nARG ${name}=default\n";
    let args: BTreeMap<String, String> = [("myarg", "v"), ("other", "v")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let df = load(text, &args, None).unwrap();
    assert_eq!(df.unused_build_args(), vec!["other"]);
}

#[test]
fn escape_directive_reaches_expansion() {
    let text = "# escape=`\nARG V=1\nFROM alpine:`$V$V\n";
    let df = ok(text);
    assert_eq!(df.directives.escape, '`');
    assert_eq!(df.stages[0].base, Base::Image("alpine:$V1".into()));
}

//! A failed step is a `BuildError::Step` a library user can match on, whose
//! `source()` chain reaches the error beneath it.

use kiln_build::options::{
    AnnotationOptions, AttestOptions, BuildOptions, CacheOptions, ContextSource,
    DockerfileLocation, HostFilesystemFlags, LayerOptions, LogOptions, OutputOptions,
    RegistryOptions, Secret, SecretSource,
};
use kiln_build::BuildError;
use kiln_build::{ContextError, CopyError, StepError};
use kiln_oci::media::Compression;
use kiln_oci::Platform;
use std::error::Error;
use std::fs;
use std::path::Path;

/// Builds the context `dir` (its Dockerfile inside) without pushing, as the
/// command line's defaults would; `secrets` are `(id, file)` pairs. `between`
/// runs after the options are made, before the build.
fn build(
    dir: &Path,
    secrets: Vec<(&str, &Path)>,
    between: impl FnOnce(),
) -> Result<(), BuildError> {
    let options = BuildOptions {
        context: ContextSource::Dir(dir.to_path_buf()),
        dockerfile: DockerfileLocation::InContext("Dockerfile".into()),
        target: None,
        extra_targets: Vec::new(),
        build_args: Vec::new(),
        labels: Vec::new(),
        skip_unused_stages: false,
        platform: Platform::host(),
        platforms: Vec::new(),
        reproducible: false,
        prefetch_bases: true,
        secrets: secrets
            .into_iter()
            .map(|(id, file)| Secret {
                id: id.to_string(),
                source: SecretSource::File(file.to_path_buf()),
            })
            .collect(),
        ssh: Vec::new(),
        isolation: Default::default(),
        work_dir: dir.join(".kiln"),
        layers: LayerOptions {
            compression: Compression::Gzip,
            level: None,
        },
        output: OutputOptions {
            destinations: Vec::new(),
            push: false,
            tar_path: None,
            oci_layout_path: None,
            digest_file: None,
            image_name_with_digest_file: None,
            image_name_tag_with_digest_file: None,
            image_format: None,
            by_digest: false,
            annotations: AnnotationOptions::default(),
            attest: AttestOptions::default(),
            push_ignore_immutable_tag_errors: false,
        },
        cache: CacheOptions {
            enabled: false,
            repo: None,
            push: false,
            dir: dir.join(".cache"),
            ttl: std::time::Duration::from_secs(3600),
            copy_layers: false,
            run_layers: true,
            compressed: true,
        },
        registry: RegistryOptions::default(),
        log: LogOptions {
            verbosity: Default::default(),
            format: Default::default(),
            timestamp: false,
        },
        dryrun: false,
        print_plan: false,
        host_filesystem: HostFilesystemFlags::default(),
    };
    between();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(kiln_build::build(&options)).map(|_| ())
}

/// The errors beneath `e`, nearest first.
fn sources<'e>(e: &'e (dyn Error + 'static)) -> Vec<&'e (dyn Error + 'static)> {
    std::iter::successors(e.source(), |s: &&'e (dyn Error + 'static)| (*s).source()).collect()
}

#[test]
fn a_copy_of_a_missing_file_is_a_step_error_holding_the_context_error() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY missing.txt /\n",
    )
    .unwrap();
    let e = build(dir.path(), Vec::new(), || ()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:2: COPY missing.txt /: \"missing.txt\": not found in the build context",
            dir.path().join("Dockerfile").display()
        )
    );
    let BuildError::Step(step) = &e else {
        panic!("not a step error: {e:?}");
    };
    assert_eq!(step.line, 2);
    assert!(
        matches!(
            &step.source,
            StepError::Copy(CopyError::Context(ContextError::NotFound { path })) if path == "missing.txt"
        ),
        "{step:?}"
    );
    // The first link beneath the build error is the step error itself, so
    // a caller holding only `&dyn Error` can recover it.
    let chain = sources(&e);
    let step = chain
        .first()
        .and_then(|s| s.downcast_ref::<StepError>())
        .unwrap_or_else(|| panic!("no StepError first beneath the build error: {chain:?}"));
    assert!(matches!(step, StepError::Copy(_)), "{step:?}");
    let copy = chain
        .iter()
        .find_map(|s| s.downcast_ref::<CopyError>())
        .unwrap_or_else(|| panic!("no CopyError in {chain:?}"));
    assert!(
        matches!(copy, CopyError::Context(ContextError::NotFound { path }) if path == "missing.txt"),
        "{copy:?}"
    );
}

#[test]
fn a_run_whose_secret_file_vanished_walks_to_the_io_error() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nRUN --mount=type=secret,id=token true\n",
    )
    .unwrap();
    // The file exists when the flags are checked and is gone when the step reads it.
    let secret = dir.path().join("token.txt");
    fs::write(&secret, "s3cr3t").unwrap();
    let e = build(dir.path(), vec![("token", &secret)], || {
        fs::remove_file(&secret).unwrap()
    })
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:2: RUN --mount=type=secret,id=token true: secret token: No such file or directory (os error 2)",
            dir.path().join("Dockerfile").display()
        )
    );
    assert!(
        matches!(&e, BuildError::Step(step) if step.line == 2 && matches!(step.source, StepError::Io { .. })),
        "{e:?}"
    );
    let io = sources(&e)
        .into_iter()
        .find_map(|s| s.downcast_ref::<std::io::Error>())
        .expect("an io::Error beneath the step error");
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    assert!(!format!("{e:?}").contains("s3cr3t"));
}

#[test]
fn an_add_of_an_unreachable_git_source_walks_to_the_git_error() {
    let dir = tempfile::tempdir().unwrap();
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nADD git://127.0.0.1:1/repo.git /src\n",
    )
    .unwrap();
    let e = build(dir.path(), Vec::new(), || ()).unwrap_err();
    let prefix = format!(
        "{}:2: ADD git://127.0.0.1:1/repo.git /src: git source git://127.0.0.1:1/repo.git: ",
        dir.path().join("Dockerfile").display()
    );
    assert!(e.to_string().starts_with(&prefix), "{e}");
    let chain = sources(&e);
    assert!(
        matches!(
            chain.first().and_then(|s| s.downcast_ref::<StepError>()),
            Some(StepError::GitSource { .. })
        ),
        "{chain:?}"
    );
    let source = chain
        .iter()
        .find_map(|s| s.downcast_ref::<kiln_source::SourceError>())
        .unwrap_or_else(|| panic!("no SourceError in {chain:?}"));
    assert!(
        matches!(source, kiln_source::SourceError::Git(_)),
        "{source:?}"
    );
    assert!(
        chain
            .iter()
            .any(|s| s.downcast_ref::<kiln_source::GitError>().is_some()),
        "{chain:?}"
    );
}

//! A failed step is a `BuildError::Step` a library user can match on, whose
//! `source()` chain reaches the error beneath it.

use kiln_build::context::ContextError;
use kiln_build::copy::CopyError;
use kiln_build::engine::error::StepError;
use kiln_build::options::BuildFlags;
use kiln_build::BuildError;
use std::error::Error;
use std::fs;
use std::path::Path;

/// Builds the context `dir` (its Dockerfile inside) without pushing; `between`
/// runs after the flags are checked, before the build.
fn build(dir: &Path, secrets: Vec<String>, between: impl FnOnce()) -> Result<(), BuildError> {
    let flags = BuildFlags {
        context: dir.display().to_string(),
        no_push: Some(true),
        kiln_dir: Some(dir.join(".kiln")),
        secrets,
        ..BuildFlags::default()
    };
    let options = flags.resolve(&|_| None).expect("the flags are valid");
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
    let BuildError::Step { line, source, .. } = &e else {
        panic!("not a step error: {e:?}");
    };
    assert_eq!(*line, 2);
    assert!(
        matches!(
            &**source,
            StepError::Copy(CopyError::Context(ContextError::NotFound { path })) if path == "missing.txt"
        ),
        "{source:?}"
    );
    let chain = sources(&e);
    assert!(
        chain
            .iter()
            .any(|s| s.downcast_ref::<CopyError>().is_some()),
        "{chain:?}"
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
    let flags = vec![format!("id=token,src={}", secret.display())];
    let e = build(dir.path(), flags, || fs::remove_file(&secret).unwrap()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:2: RUN --mount=type=secret,id=token true: secret token: No such file or directory (os error 2)",
            dir.path().join("Dockerfile").display()
        )
    );
    assert!(
        matches!(&e, BuildError::Step { line: 2, source, .. } if matches!(&**source, StepError::Io { .. })),
        "{e:?}"
    );
    let io = sources(&e)
        .into_iter()
        .find_map(|s| s.downcast_ref::<std::io::Error>())
        .expect("an io::Error beneath the step error");
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    assert!(!format!("{e:?}").contains("s3cr3t"));
}

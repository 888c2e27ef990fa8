use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kiln_build::options::{
    CacheRepo, Compression, ContextSource, DockerfileLocation, LogFormat, SecretSource, Verbosity,
};
use kiln_oci::reference::DOCKER_HUB;

use super::env::resolve_work_dir;
use super::*;

/// How the command line, or anything else holding flags, gets a build's options.
#[test]
fn a_filled_in_flag_set_resolves_to_options() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
    let flags = BuildFlags {
        context: dir.path().display().to_string(),
        destinations: vec!["registry.example.com/team/app:1.2".into()],
        cache: true,
        ..BuildFlags::default()
    };
    let options = flags.resolve(&|_| None).unwrap();
    assert_eq!(
        options.cache.repo,
        Some(CacheRepo::Registry(
            "registry.example.com/team/app/cache".into()
        ))
    );
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn context_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
    dir
}

fn flags_in(dir: &tempfile::TempDir) -> BuildFlags {
    BuildFlags {
        context: dir.path().display().to_string(),
        destinations: vec!["localhost:5000/app:v1".into()],
        ..BuildFlags::default()
    }
}

#[test]
fn defaults_match_kaniko() {
    let d = BuildFlags::default();
    assert_eq!(d.context, "/workspace/");
    assert_eq!(d.dockerfile, "Dockerfile");
    assert_eq!(d.cache_dir, PathBuf::from("/cache"));
    assert_eq!(d.cache_ttl, Duration::from_secs(14 * 24 * 3600));
    assert!(d.cache_run_layers && !d.cache_copy_layers && d.compressed_caching);
    assert_eq!(
        (d.compression, d.compression_level),
        (Compression::Gzip, -1)
    );
    assert_eq!(
        (d.verbosity, d.log_format),
        (Verbosity::Info, LogFormat::Color)
    );
    // The one deliberate difference: unused stages are skipped by default.
    assert!(d.skip_unused_stages);
}

#[test]
fn destination_or_no_push_is_required() {
    let dir = context_dir();
    let flags = BuildFlags {
        destinations: vec![],
        ..flags_in(&dir)
    };
    assert_eq!(
        flags.clone().resolve(&no_env),
        Err(OptionsError::NoDestination)
    );
    let ok = BuildFlags {
        no_push: Some(true),
        ..flags
    }
    .resolve(&no_env)
    .unwrap();
    assert!(!ok.output.push);
}

#[test]
fn kaniko_no_push_env_applies_unless_the_flag_is_given() {
    let dir = context_dir();
    let flags = BuildFlags {
        destinations: vec![],
        ..flags_in(&dir)
    };
    let env = |k: &str| (k == "KANIKO_NO_PUSH").then(|| "TRUE".to_string());
    assert!(!flags.clone().resolve(&env).unwrap().output.push);
    let bad = |k: &str| (k == "KANIKO_NO_PUSH").then(|| "yes".to_string());
    assert!(matches!(
        flags.clone().resolve(&bad),
        Err(OptionsError::InvalidEnv { .. })
    ));
    let explicit = BuildFlags {
        no_push: Some(false),
        ..flags
    };
    assert_eq!(explicit.resolve(&env), Err(OptionsError::NoDestination));
}

#[test]
fn name_files_need_a_destination_and_a_tar_path_does_not() {
    let dir = context_dir();
    let base = BuildFlags {
        destinations: vec![],
        no_push: Some(true),
        ..flags_in(&dir)
    };
    let tar = BuildFlags {
        tar_path: Some("out.tar".into()),
        ..base.clone()
    };
    // As BuildKit's `-o type=docker`: the tarball needs no name to push to.
    let resolved = tar.resolve(&no_env).unwrap();
    assert_eq!(resolved.output.tar_path, Some(PathBuf::from("out.tar")));
    let names = BuildFlags {
        image_name_with_digest_file: Some("f".into()),
        ..base.clone()
    };
    assert!(matches!(
        names.resolve(&no_env),
        Err(OptionsError::NeedsDestination { .. })
    ));
    let digest = BuildFlags {
        digest_file: Some("d".into()),
        ..base
    };
    assert!(digest.resolve(&no_env).is_ok());
}

#[test]
fn fork_flags_resolve_with_the_forks_defaults_and_environment() {
    use kiln_oci::builtin_helpers::{BuiltinHelper, ALL};
    let dir = context_dir();
    let d = flags_in(&dir).resolve(&no_env).unwrap();
    assert_eq!(d.registry.credentials.builtin_helpers(), ALL);
    assert!(!d.output.annotations.inherit_base);
    assert!(d.output.annotations.added.is_empty());
    assert_eq!(d.output.image_format, None);
    assert!(!d.dryrun && !d.print_plan);
    assert_eq!(d.host_filesystem, HostFilesystemFlags::default());
    assert!(d.host_filesystem.notices().is_empty());

    let given = BuildFlags {
        annotations: vec!["a=1".into(), "b=x=y".into(), "a=2".into()],
        image_format: Some(ImageFormat::Oci),
        credential_helpers: Some(vec!["gitlab".into(), "env,gitlab".into()]),
        materialize: true,
        ..flags_in(&dir)
    };
    let env = |name: &str| match name {
        "FF_KANIKO_NO_PROPAGATE_ANNOTATIONS" => Some("0".to_string()),
        "KANIKO_PRE_CLEANUP" | "KANIKO_PRESERVE_CONTEXT" | "KANIKO_PRINT_PLAN" => {
            Some("true".to_string())
        }
        _ => None,
    };
    let r = given.resolve(&env).unwrap();
    assert_eq!(
        r.output.annotations.added,
        BTreeMap::from([("a".into(), "2".into()), ("b".into(), "x=y".into())])
    );
    assert!(r.output.annotations.inherit_base);
    assert_eq!(
        r.registry.credentials.builtin_helpers(),
        [BuiltinHelper::Gitlab, BuiltinHelper::Env]
    );
    assert!(r.print_plan);
    assert_eq!(r.host_filesystem.notices().len(), 3);

    // An empty value turns every helper off; a flag beats its variable.
    let off = BuildFlags {
        credential_helpers: Some(vec![String::new()]),
        pre_cleanup: Some(false),
        ..flags_in(&dir)
    }
    .resolve(&env)
    .unwrap();
    assert!(off.registry.credentials.builtin_helpers().is_empty());
    assert!(!off.host_filesystem.pre_cleanup && off.host_filesystem.preserve_context);
}

#[test]
fn fork_flags_reject_bad_values_naming_them() {
    let dir = context_dir();
    let err = |flags: BuildFlags| flags.resolve(&no_env).unwrap_err().to_string();
    let bad_helper = err(BuildFlags {
        credential_helpers: Some(vec!["ecr".into(), "vault".into()]),
        ..flags_in(&dir)
    });
    assert!(
        bad_helper.starts_with("--credential-helpers \"vault\""),
        "{bad_helper}"
    );
    let bad_annotation = err(BuildFlags {
        annotations: vec!["novalue".into()],
        ..flags_in(&dir)
    });
    assert!(
        bad_annotation.contains("--annotation \"novalue\""),
        "{bad_annotation}"
    );
    let zstd_docker = err(BuildFlags {
        image_format: Some(ImageFormat::Docker),
        compression: Compression::Zstd,
        ..flags_in(&dir)
    });
    assert!(zstd_docker.contains("zstd"), "{zstd_docker}");
    let bad_env = BuildFlags { ..flags_in(&dir) }
        .resolve(&|n: &str| (n == "KANIKO_PRE_CLEANUP").then(|| "maybe".to_string()))
        .unwrap_err()
        .to_string();
    assert!(bad_env.contains("KANIKO_PRE_CLEANUP"), "{bad_env}");
    assert_eq!("OCI".parse::<ImageFormat>(), Ok(ImageFormat::Oci));
    assert!("v2".parse::<ImageFormat>().is_err());
}

#[test]
fn several_platforms_need_a_destination_and_no_single_image_output() {
    let dir = context_dir();
    let two = || BuildFlags {
        custom_platform: Some("linux/amd64, linux/arm64,linux/amd64,linux/arm64/v8".into()),
        ..flags_in(&dir)
    };
    let both = two().resolve(&no_env).unwrap();
    assert_eq!(both.platform.to_string(), "linux/amd64");
    let names: Vec<String> = both.platforms.iter().map(ToString::to_string).collect();
    assert_eq!(names, ["linux/amd64", "linux/arm64"]);
    let err = |flags: BuildFlags| flags.resolve(&no_env).unwrap_err().to_string();
    let no_push = err(BuildFlags {
        no_push: Some(true),
        ..two()
    });
    assert!(no_push.contains("give a --destination"), "{no_push}");
    // Statements are attached to each platform's image.
    let sbom = BuildFlags {
        sbom: true,
        ..two()
    }
    .resolve(&no_env)
    .unwrap();
    assert!(sbom.output.attest.sbom && sbom.platforms.len() == 2);
    let one = BuildFlags {
        custom_platform: Some("linux/arm64".into()),
        ..flags_in(&dir)
    }
    .resolve(&no_env)
    .unwrap();
    assert_eq!(one.platform.to_string(), "linux/arm64");
    assert!(one.platforms.is_empty());
}

#[test]
fn cache_repo_is_derived_from_the_first_destination() {
    let dir = context_dir();
    let cases = [
        ("localhost:5000/app:v1", "localhost:5000/app/cache"),
        (
            "registry.example.com/team/app@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "registry.example.com/team/app/cache",
        ),
        ("ubuntu", "docker.io/library/ubuntu/cache"),
        ("me/app:1", "docker.io/me/app/cache"),
        ("index.docker.io/me/app", "docker.io/me/app/cache"),
    ];
    for (dest, repo) in cases {
        let flags = BuildFlags {
            destinations: vec![dest.into(), "other.io/x:y".into()],
            cache: true,
            ..flags_in(&dir)
        };
        let options = flags.resolve(&no_env).unwrap();
        assert_eq!(
            options.cache.repo,
            Some(CacheRepo::Registry(repo.into())),
            "{dest}"
        );
    }
}

#[test]
fn cache_with_no_push_needs_a_cache_repo() {
    let dir = context_dir();
    let flags = BuildFlags {
        no_push: Some(true),
        cache: true,
        ..flags_in(&dir)
    };
    assert_eq!(
        flags.clone().resolve(&no_env),
        Err(OptionsError::CacheRepoRequired)
    );
    let with_repo = BuildFlags {
        cache_repo: Some("oci:/tmp/c".into()),
        ..flags
    };
    let options = with_repo.resolve(&no_env).unwrap();
    assert_eq!(
        options.cache.repo,
        Some(CacheRepo::OciLayout("/tmp/c".into()))
    );
}

#[test]
fn bare_build_arg_takes_the_environment_value() {
    let dir = context_dir();
    let env = |k: &str| (k == "FROM_ENV").then(|| "v a=l".to_string());
    let flags = BuildFlags {
        build_args: vec![
            "A=1".into(),
            "FROM_ENV".into(),
            "UNSET".into(),
            "B=x=y".into(),
        ],
        ..flags_in(&dir)
    };
    let args = flags.resolve(&env).unwrap().build_args;
    let pairs: Vec<(&str, &str)> = args
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("A", "1"),
            ("FROM_ENV", "v a=l"),
            ("UNSET", ""),
            ("B", "x=y")
        ]
    );
}

#[test]
fn compression_level_is_checked_per_compression() {
    let dir = context_dir();
    let with = |compression, level| {
        BuildFlags {
            compression,
            compression_level: level,
            ..flags_in(&dir)
        }
        .resolve(&no_env)
    };
    assert_eq!(with(Compression::Gzip, 9).unwrap().layers.level, Some(9));
    assert!(matches!(
        with(Compression::Gzip, 10),
        Err(OptionsError::CompressionLevel { .. })
    ));
    assert_eq!(with(Compression::Zstd, 19).unwrap().layers.level, Some(19));
    assert!(with(Compression::Zstd, 0).is_err());
    assert!(matches!(
        with(Compression::Xz, -1),
        Err(OptionsError::InvalidValue { .. })
    ));
    assert_eq!(with(Compression::Zstd, -1).unwrap().layers.level, None);
}

#[test]
fn remote_contexts_are_recognised_and_credentials_hidden() {
    for context in [
        "git://github.com/x/y.git#main",
        "s3://bucket/ctx.tgz",
        "gs://b/c",
        "https://x/c.tar.gz",
        "tar://stdin",
    ] {
        let flags = BuildFlags {
            context: context.into(),
            no_push: Some(true),
            git: Some("branch=dev,recurse-submodules=true".into()),
            ..Default::default()
        };
        let options = flags.resolve(&no_env).unwrap();
        match &options.context {
            ContextSource::Remote { git, .. } => {
                assert_eq!(git.branch.as_deref(), Some("dev"));
                assert!(git.recurse_submodules);
            }
            other => panic!("{context}: {other:?}"),
        }
        assert_eq!(
            options.dockerfile,
            DockerfileLocation::InContext("Dockerfile".into())
        );
    }
    let bad_git = BuildFlags {
        context: "git://h/r.git".into(),
        no_push: Some(true),
        git: Some("depth=1".into()),
        ..Default::default()
    };
    let err = bad_git.resolve(&no_env).unwrap_err();
    assert!(err.to_string().contains("--git"), "{err}");
    let secret = BuildFlags {
        context: "https://user:hunter2@h/r.git#main:../up".into(),
        no_push: Some(true),
        ..Default::default()
    };
    let err = secret.resolve(&no_env).unwrap_err().to_string();
    assert!(!err.contains("hunter2"), "{err}");
    assert!(err.contains("relative path"), "{err}");
}

#[test]
fn contexts_sub_paths_and_dockerfiles_are_located() {
    let dir = context_dir();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/Other"), "FROM scratch\n").unwrap();
    let flags = BuildFlags {
        context: format!("dir://{}", dir.path().display()),
        context_sub_path: Some("sub".into()),
        dockerfile: "Other".into(),
        ..flags_in(&dir)
    };
    let options = flags.resolve(&no_env).unwrap();
    assert_eq!(options.context, ContextSource::Dir(dir.path().join("sub")));
    assert_eq!(
        options.dockerfile,
        DockerfileLocation::File(dir.path().join("sub/Other"))
    );

    let missing = BuildFlags {
        dockerfile: "Nope".into(),
        ..flags_in(&dir)
    };
    assert!(matches!(
        missing.resolve(&no_env),
        Err(OptionsError::DockerfileNotFound { .. })
    ));
    let escape = BuildFlags {
        context_sub_path: Some("../x".into()),
        ..flags_in(&dir)
    };
    assert!(matches!(
        escape.resolve(&no_env),
        Err(OptionsError::InvalidValue { .. })
    ));

    let archive = dir.path().join("ctx.tar.gz");
    std::fs::write(&archive, b"").unwrap();
    let tar = BuildFlags {
        context: format!("tar://{}", archive.display()),
        ..flags_in(&dir)
    };
    let options = tar.resolve(&no_env).unwrap();
    assert_eq!(
        options.dockerfile,
        DockerfileLocation::InContext("Dockerfile".into())
    );
}

#[test]
fn registry_settings_are_collected() {
    let dir = context_dir();
    let env = |k: &str| match k {
        "KANIKO_REGISTRY_MIRROR" => Some("m2.io;m3.io".to_string()),
        "KANIKO_REGISTRY_MAP" => Some("quay.io=q.local".to_string()),
        _ => None,
    };
    let flags = BuildFlags {
        registry_mirrors: vec!["m1.io".into()],
        registry_maps: vec!["gcr.io=g1.local;gcr.io=g2.local".into()],
        registry_certificates: vec!["r.io=/certs/ca.pem".into()],
        registry_client_certs: vec!["r.io=/c.pem,/k.pem".into()],
        insecure_registries: vec!["plain.local".into()],
        ..flags_in(&dir)
    };
    let registry = flags.resolve(&env).unwrap().registry;
    assert_eq!(registry.mirrors, ["m1.io", "m2.io", "m3.io"]);
    assert!(!registry.registry_maps.contains_key(DOCKER_HUB));
    assert_eq!(registry.registry_maps["gcr.io"], ["g1.local", "g2.local"]);
    assert_eq!(registry.registry_maps["quay.io"], ["q.local"]);
    assert_eq!(
        registry.ca_certificates["r.io"],
        PathBuf::from("/certs/ca.pem")
    );
    assert_eq!(
        registry.client_certificates["r.io"].key,
        PathBuf::from("/k.pem")
    );
    assert_eq!(registry.insecure_registries, ["plain.local"]);
    assert!(!registry.insecure && !registry.insecure_pull);

    let bad = BuildFlags {
        registry_client_certs: vec!["r.io=/c.pem".into()],
        ..flags_in(&dir)
    };
    assert!(bad.resolve(&no_env).is_err());
}

#[test]
fn secrets_keep_names_not_contents() {
    let dir = context_dir();
    let env = |k: &str| (k == "TOKEN").then(|| "s3cr3t".to_string());
    let file = dir.path().join("Dockerfile").display().to_string();
    let flags = BuildFlags {
        secrets: vec!["id=tok,env=TOKEN".into(), format!("id=f,src={file}")],
        ..flags_in(&dir)
    };
    let options = flags.resolve(&env).unwrap();
    assert_eq!(options.secrets[0].source, SecretSource::Env("TOKEN".into()));
    assert!(!format!("{options:?}").contains("s3cr3t"));
    let missing = BuildFlags {
        secrets: vec!["id=x,env=UNSET".into()],
        ..flags_in(&dir)
    };
    assert!(missing.resolve(&env).is_err());
    let no_id = BuildFlags {
        secrets: vec!["env=TOKEN".into()],
        ..flags_in(&dir)
    };
    assert!(no_id.resolve(&env).is_err());
}

#[test]
fn work_dir_prefers_flag_then_env() {
    let env = |k: &str| match k {
        "KANIKO_DIR" => Some("/from/env".to_string()),
        _ => None,
    };
    assert_eq!(
        resolve_work_dir(Some("/flag".into()), &env),
        PathBuf::from("/flag")
    );
    assert_eq!(resolve_work_dir(None, &env), PathBuf::from("/from/env"));
    let tmp = |k: &str| (k == "TMPDIR").then(|| "/t".to_string());
    let dir = resolve_work_dir(None, &tmp);
    assert!(
        dir == Path::new("/kaniko") || dir == Path::new("/t/kiln"),
        "{dir:?}"
    );
}

#[test]
fn go_bools() {
    for t in ["1", "t", "T", "TRUE", "true", "True"] {
        assert_eq!(parse_go_bool(t), Some(true), "{t}");
    }
    for f in ["0", "f", "F", "FALSE", "false", "False"] {
        assert_eq!(parse_go_bool(f), Some(false), "{f}");
    }
    for bad in ["", "yes", "tRUE", "2"] {
        assert_eq!(parse_go_bool(bad), None, "{bad}");
    }
}

/// Values rejected by a typed parser keep that parser's error as their source, and print
/// as they always have: the flag, the value quoted, and the parser's message.
#[test]
fn rejected_values_keep_the_parsers_error_beneath_the_same_message() {
    use std::error::Error;
    let dir = context_dir();
    let rejected = |flags: BuildFlags| flags.resolve(&no_env).unwrap_err();
    fn source_of<E: Error + 'static>(e: &OptionsError) -> &E {
        e.source()
            .and_then(|s| s.downcast_ref::<E>())
            .unwrap_or_else(|| panic!("{e} keeps no {}", std::any::type_name::<E>()))
    }

    let e = rejected(BuildFlags {
        destinations: vec!["Bad Ref".into()],
        ..flags_in(&dir)
    });
    let parsed = "Bad Ref".parse::<kiln_oci::Reference>().unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("--destination \"Bad Ref\": {parsed}")
    );
    assert_eq!(source_of::<kiln_oci::ReferenceError>(&e), &parsed);

    let e = rejected(BuildFlags {
        custom_platform: Some("linux/amd64,a/b/c/d".into()),
        ..flags_in(&dir)
    });
    let parsed = "a/b/c/d".parse::<Platform>().unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("--custom-platform \"linux/amd64,a/b/c/d\": {parsed}")
    );
    assert_eq!(source_of::<kiln_oci::PlatformError>(&e), &parsed);

    let e = rejected(BuildFlags {
        git: Some("depth=1".into()),
        ..flags_in(&dir)
    });
    let parsed = kiln_source::GitOptions::parse("depth=1").unwrap_err();
    assert_eq!(e.to_string(), format!("--git \"depth=1\": {parsed}"));
    assert_eq!(source_of::<kiln_source::GitOptionsError>(&e), &parsed);

    let context = "https://user:hunter2@h/r.git#main:../up";
    let e = rejected(BuildFlags {
        context: context.into(),
        ..flags_in(&dir)
    });
    let parsed = kiln_source::RemoteContext::parse(context).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("build context {:?}: {}", parsed.context, parsed.reason)
    );
    assert_eq!(source_of::<kiln_source::SpecError>(&e), &parsed);

    let e = rejected(BuildFlags {
        credential_helpers: Some(vec!["vault".into()]),
        ..flags_in(&dir)
    });
    let parsed = "vault"
        .parse::<kiln_oci::builtin_helpers::BuiltinHelper>()
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("--credential-helpers \"vault\": {parsed}")
    );
    assert_eq!(
        source_of::<kiln_oci::builtin_helpers::UnknownHelper>(&e),
        &parsed
    );

    let e = rejected(BuildFlags {
        registry_maps: vec!["no-equals-sign".into()],
        ..flags_in(&dir)
    });
    let OptionsError::InvalidRegistryFlag(parsed) = &e else {
        panic!("{e:?}");
    };
    assert_eq!(
        e.to_string(),
        format!(
            "{} {:?}: expected {}",
            parsed.flag, parsed.value, parsed.expected
        )
    );
    assert_eq!(parsed.value, "no-equals-sign");
}

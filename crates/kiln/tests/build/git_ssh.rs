//! git over ssh end to end, against Debian's OpenSSH server started here on
//! 127.0.0.1 with its own host key and `authorized_keys`, and a key held by
//! an ssh agent also started here (`SSH_AUTH_SOCK`), as Kaniko reads it.
//! sshd only logs in users of this machine, so the context URL names the
//! user running the test; the `ADD git@…` form reaches that user through
//! `GIT_SSH_COMMAND`'s `-l`, which (given first) wins over the URL's `git`.
//! A missing tool fails the test; nothing is skipped.

use crate::build_common;
use crate::remote_contexts::make_repo;
use crate::servers::{login_user, ssh_key, sshd, SshAgent};

use build_common::{stderr, Kiln};
use kiln_testkit::Flattened;
use std::fs;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Builds `context` into an OCI layout with exactly the ssh environment
/// `env` names (`SSH_AUTH_SOCK`, `SSH_KNOWN_HOSTS` and `GIT_SSH_COMMAND`
/// are removed first, so nothing of the caller's leaks in).
fn build(context: &str, env: &[(&str, &str)]) -> (Output, TempDir) {
    let out = tempfile::tempdir().unwrap();
    let mut kiln = Kiln::build(Path::new(context))
        .args(["--no-push"])
        .arg_path("--oci-layout-path", &out.path().join("layout"))
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("SSH_KNOWN_HOSTS")
        .env_remove("GIT_SSH_COMMAND");
    for (k, v) in env {
        kiln = kiln.env(k, v);
    }
    (kiln.output(), out)
}

fn built(context: &str, env: &[(&str, &str)]) -> Flattened {
    let (out, dir) = build(context, env);
    assert!(out.status.success(), "{context}: {}", stderr(&out));
    Flattened::from_layout(&dir.path().join("layout"), "latest").unwrap()
}

/// Fails within a minute (nothing waits on a prompt), names the source and
/// shows no private key.
fn fails(context: &str, env: &[(&str, &str)], private_keys: &[&Path]) -> String {
    let started = Instant::now();
    let (out, _dir) = build(context, env);
    let err = stderr(&out);
    assert!(!out.status.success(), "{context} should fail:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(60), "{err}");
    for key in private_keys {
        let text = fs::read_to_string(key).unwrap();
        let body = text.lines().nth(1).unwrap();
        assert!(!err.contains(body), "a private key was shown:\n{err}");
    }
    err
}

#[test]
fn git_over_ssh_with_a_key_from_an_ssh_agent() {
    let t = TempDir::new().unwrap();
    let repos = t.path().join("repos");
    fs::create_dir_all(&repos).unwrap();
    make_repo(&repos, "repo");
    let keys = t.path().join("keys");
    fs::create_dir_all(&keys).unwrap();
    let (user_key, wrong_key) = (keys.join("user"), keys.join("wrong"));
    ssh_key(&user_key);
    ssh_key(&wrong_key);
    let server = sshd(&t.path().join("sshd"), &keys.join("user.pub"));
    let port = server.server.port;
    // A socket's path must fit in 108 bytes, which a deep TMPDIR may not.
    let sockets = tempfile::Builder::new()
        .prefix("kiln-ssh")
        .tempdir_in("/tmp")
        .unwrap();
    let agent = SshAgent::start(&sockets.path().join("agent"), &[&user_key]);
    let wrong_agent = SshAgent::start(&sockets.path().join("wrong"), &[&wrong_key]);
    let sock = agent.socket.to_str().unwrap();
    // A file name with a space, which ssh's option syntax must keep whole,
    // after one that does not exist.
    let spaced = t.path().join("known hosts");
    fs::copy(&server.known_hosts, &spaced).unwrap();
    let missing = t.path().join("none");
    let known_list = format!("{}:{}", missing.display(), spaced.display());
    let known = server.known_hosts.to_str().unwrap();
    let user = login_user();
    let repo = repos.join("repo.git");
    let url = format!("ssh://{user}@127.0.0.1:{port}{}", repo.display());

    // The context, at a tag and at a branch's sub-directory, with the host
    // key from SSH_KNOWN_HOSTS (go-git's variable, which Kaniko reads).
    let env = [
        ("SSH_AUTH_SOCK", sock),
        ("SSH_KNOWN_HOSTS", known_list.as_str()),
    ];
    let img = built(&format!("{url}#v1"), &env);
    assert_eq!(img.text("/msg.txt").as_deref(), Some("one\n"));
    let img = built(&format!("{url}#main:app"), &env);
    assert_eq!(img.text("/app.txt").as_deref(), Some("in app\n"));

    // BuildKit's `ADD git@host:path`: the port, the login and the host key
    // come from GIT_SSH_COMMAND, the key from the agent.
    let ctx = t.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM scratch\nADD git@127.0.0.1:{}#v1 /src\n",
            repo.display()
        ),
    )
    .unwrap();
    // Run by `sh`, as git runs it: the quotes keep the spaced name whole.
    let command = format!(
        "ssh -p {port} -l {user} -o 'UserKnownHostsFile=\"{}\"'",
        spaced.display()
    );
    let img = built(
        ctx.to_str().unwrap(),
        &[("SSH_AUTH_SOCK", sock), ("GIT_SSH_COMMAND", &command)],
    );
    assert_eq!(img.text("/src/msg.txt").as_deref(), Some("one\n"));
    assert!(img.get("/src/.git").is_none());
    // `ADD ssh://…` with kiln's own ssh command, as for contexts.
    let ssh_ctx = t.path().join("ssh-ctx");
    fs::create_dir_all(&ssh_ctx).unwrap();
    fs::write(
        ssh_ctx.join("Dockerfile"),
        format!("FROM scratch\nADD {url}#main:app /app\n"),
    )
    .unwrap();
    let img = built(ssh_ctx.to_str().unwrap(), &env);
    assert_eq!(img.text("/app/app.txt").as_deref(), Some("in app\n"));

    // No agent, or an agent with a key the server does not know.
    let private = [user_key.as_path(), wrong_key.as_path()];
    for env in [
        vec![("SSH_KNOWN_HOSTS", known)],
        vec![
            ("SSH_KNOWN_HOSTS", known),
            ("SSH_AUTH_SOCK", wrong_agent.socket.to_str().unwrap()),
        ],
    ] {
        let err = fails(&url, &env, &private);
        assert!(err.contains(&url), "the error names the source:\n{err}");
        assert!(
            err.contains("login refused") && err.contains("SSH_AUTH_SOCK"),
            "{err}"
        );
    }
    // The same for ADD, naming the git source.
    let (out, _dir) = build(ctx.to_str().unwrap(), &[("GIT_SSH_COMMAND", &command)]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("git@127.0.0.1:{}#v1", repo.display()))
            && err.contains("login refused"),
        "{err}"
    );
    // A host key kiln cannot check is refused, not accepted.
    let err = fails(&url, &[("SSH_AUTH_SOCK", sock)], &private);
    assert!(err.contains(&url), "{err}");
    assert!(
        err.contains("Host key verification failed"),
        "ssh says why:\n{err}"
    );
    assert!(err.contains("SSH_KNOWN_HOSTS"), "{err}");
    let wrong_hosts = t.path().join("other_known_hosts");
    fs::write(
        &wrong_hosts,
        format!(
            "[127.0.0.1]:{port} {}",
            fs::read_to_string(keys.join("wrong.pub")).unwrap()
        ),
    )
    .unwrap();
    let err = fails(
        &url,
        &[
            ("SSH_AUTH_SOCK", sock),
            ("SSH_KNOWN_HOSTS", wrong_hosts.to_str().unwrap()),
        ],
        &private,
    );
    assert!(err.contains("Host key verification failed"), "{err}");
    assert!(err.contains("SSH_KNOWN_HOSTS"), "{err}");
}

//! Cloning a git context with gix (pure-Rust git): https and http through
//! its reqwest transport, `git://` natively, ssh through the system `ssh`
//! (so an ssh agent and `~/.ssh` work as they do for git).
//!
//! ssh runs in batch mode (it never prompts) and checks the server's host
//! key as Kaniko's go-git does: against the files `SSH_KNOWN_HOSTS` lists
//! (separated by `:`), else `~/.ssh/known_hosts` and
//! `/etc/ssh/ssh_known_hosts`; an unknown or changed key fails the clone.
//! `GIT_SSH_COMMAND` replaces that command (still in batch mode), for
//! example to name a key file or a port, or to accept new host keys.
//!
//! Only the revision being built is fetched, at depth 1 unless a commit id
//! is asked for (a commit is fetched by id, then its history is not needed
//! either). Credentials come from Kaniko's variables only: `GIT_TOKEN`
//! (sent as the user name with an empty password, as Kaniko does), else
//! `GIT_USERNAME`/`GIT_PASSWORD`. No credential helper is run and nothing is
//! ever prompted for, so a private repository without credentials fails at
//! once instead of waiting on a terminal.

use crate::error::{Cause, GitError, GitOptionsError};
use crate::spec::{is_commit_id, GitContext};
use crate::Env;
use gix::credentials::helper::{Action, NextAction};
use gix::credentials::protocol::Outcome;
use gix::remote::fetch::Shallow;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::atomic::AtomicBool;

/// Kaniko's `--git` options.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GitOptions {
    /// `branch=`: the branch (or tag) to check out, overriding the URL's `#ref`.
    pub branch: Option<String>,
    /// `single-branch=`: kiln always fetches only the revision it builds.
    pub single_branch: bool,
    /// `recurse-submodules=`: also clone the submodules at their recorded commits.
    pub recurse_submodules: bool,
    /// `insecure-skip-tls=`: do not verify the server's TLS certificate.
    pub insecure_skip_tls: bool,
}

impl GitOptions {
    /// Parses `branch=main,single-branch=true,recurse-submodules=false,insecure-skip-tls=false`.
    pub fn parse(value: &str) -> Result<GitOptions, GitOptionsError> {
        let mut options = GitOptions::default();
        for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, val) = pair
                .split_once('=')
                .ok_or_else(|| GitOptionsError::NotKeyValue(pair.to_string()))?;
            let flag = || match val.to_ascii_lowercase().as_str() {
                "true" | "1" | "t" => Ok(true),
                "false" | "0" | "f" | "" => Ok(false),
                _ => Err(GitOptionsError::NotBoolean {
                    key: key.to_string(),
                    value: val.to_string(),
                }),
            };
            match key {
                "branch" => options.branch = Some(val.to_string()).filter(|b| !b.is_empty()),
                "single-branch" => options.single_branch = flag()?,
                "recurse-submodules" => options.recurse_submodules = flag()?,
                "insecure-skip-tls" => options.insecure_skip_tls = flag()?,
                _ => return Err(GitOptionsError::UnknownKey(key.to_string())),
            }
        }
        Ok(options)
    }
}

/// Clones `ctx` into `dest` (created, must not exist or be empty) and checks
/// out the asked revision. Returns a description of what was checked out.
pub fn clone(
    ctx: &GitContext,
    options: &GitOptions,
    env: &Env,
    dest: &Path,
) -> Result<String, GitError> {
    let url = ctx.clone_url(env.get("GIT_PULL_METHOD").as_deref());
    // `--git branch=` wins over the URL's ref, as in Kaniko; a commit after a
    // second `#` is checked out after fetching that ref.
    let reference = options.branch.clone().or_else(|| ctx.reference.clone());
    let target = ctx.commit.clone().or(reference.clone());
    let candidates: Vec<String> = match &target {
        None => vec!["HEAD".to_string()],
        Some(r) if r == "HEAD" || r.starts_with("refs/") || is_commit_id(r) => vec![r.clone()],
        Some(name) => vec![format!("refs/heads/{name}"), format!("refs/tags/{name}")],
    };
    let mut last_error: Option<Cause> = None;
    for revision in &candidates {
        match clone_revision(&url, revision, options, env, dest) {
            Ok(()) => {
                if options.recurse_submodules {
                    submodules(dest, options, env)?;
                }
                return Ok(revision.clone());
            }
            Err(CloneError::NotFound(e)) => {
                last_error = Some(e);
                let _ = std::fs::remove_dir_all(dest);
            }
            Err(CloneError::Other(e)) => return Err(e),
        }
    }
    // Every candidate was tried and none was found.
    let last_error = last_error.expect("at least one revision is tried");
    match target {
        Some(name) => Err(GitError::RevisionNotFound {
            name,
            branch_or_tag: candidates.len() > 1,
            source: last_error,
        }),
        None => Err(GitError::Gix(last_error)),
    }
}

/// One attempt's failure: a revision the repository lacks (the next
/// candidate is tried) or anything else (the clone fails).
enum CloneError {
    NotFound(Cause),
    Other(GitError),
}

fn clone_revision(
    url: &str,
    revision: &str,
    options: &GitOptions,
    env: &Env,
    dest: &Path,
) -> Result<(), CloneError> {
    fn other(e: impl std::error::Error + Send + Sync + 'static) -> CloneError {
        CloneError::Other(GitError::gix(e))
    }
    std::fs::create_dir_all(dest).map_err(other)?;
    // Recreated after a failed attempt: private again.
    std::fs::set_permissions(dest, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .map_err(other)?;
    let mut overrides = vec!["protocol.version=2".to_string()];
    overrides.extend(ssh_overrides(env));
    if options.insecure_skip_tls {
        overrides.push("http.sslVerify=false".to_string());
    }
    let open = gix::open::Options::isolated().config_overrides(overrides);
    let credentials = credentials(env);
    let insecure = options.insecure_skip_tls;
    let prepare = gix::clone::PrepareFetch::new(
        url,
        dest,
        gix::create::Kind::WithWorktree,
        gix::create::Options::default(),
        open,
    )
    .map_err(other)?;
    let prepare = if is_commit_id(revision) {
        prepare
    } else {
        prepare.with_shallow(Shallow::DepthAtRemote(NonZeroU32::MIN))
    };
    let mut prepare = prepare
        .with_revision(Some(revision))
        .map_err(other)?
        .configure_connection(move |connection| {
            let credentials = credentials.clone();
            connection.set_credentials(move |action| answer(&credentials, action));
            if insecure {
                connection.set_transport_options(Box::new(insecure_http_options()));
            }
            Ok(())
        });
    let interrupt = AtomicBool::new(false);
    let (mut checkout, _) = prepare
        .fetch_then_checkout(gix::progress::Discard, &interrupt)
        .map_err(|e| {
            let text = kiln_image_spec::error::chain(&e);
            let lower = text.to_ascii_lowercase();
            let source: Cause = Box::new(e);
            if lower.contains("not found")
                || lower.contains("didn't have the requested revision")
                || lower.contains("no match")
                || lower.contains("couldn't find remote ref")
                || lower.contains("not our ref")
                || lower.contains("did not match")
                || lower.contains("could not find")
            {
                CloneError::NotFound(source)
            } else if is_ssh(url) {
                CloneError::Other(GitError::Ssh {
                    advice: ssh_failure(&text, env),
                    source,
                })
            } else if lower.contains("no credentials were returned") {
                CloneError::Other(GitError::NeedsCredentials { source })
            } else if lower.contains("clear text over http") {
                CloneError::Other(GitError::CredentialsOverHttp { source })
            } else {
                CloneError::Other(GitError::Gix(source))
            }
        })?;
    checkout
        .main_worktree(gix::progress::Discard, &interrupt)
        .map_err(other)?;
    Ok(())
}

/// Clones each submodule at the commit its parent records, depth 1.
fn submodules(root: &Path, options: &GitOptions, env: &Env) -> Result<(), GitError> {
    let repo = gix::open_opts(root, gix::open::Options::isolated()).map_err(GitError::gix)?;
    let Some(modules) = repo.submodules().map_err(GitError::gix)? else {
        return Ok(());
    };
    for module in modules {
        let name = module.name().to_string();
        let path = module.path().map_err(GitError::gix)?.to_string();
        // `../lib.git` is relative to the repository's own URL, as in git.
        let url = module.resolved_url().map_err(GitError::gix)?;
        // A path on the build machine is never cloned (git refuses local
        // submodules too): a repository must not reach the builder's files.
        if url.scheme == gix::url::Scheme::File {
            return Err(GitError::LocalSubmodule {
                name,
                url: url.to_bstring().to_string(),
            });
        }
        let url = url.to_bstring().to_string();
        let Some(commit) = module.index_id().map_err(GitError::gix)? else {
            continue;
        };
        if path.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(GitError::SubmoduleEscapes { name, path });
        }
        let dest = root.join(&path);
        let _ = std::fs::remove_dir(&dest);
        let sub = GitContext {
            url: url.clone(),
            reference: None,
            commit: Some(commit.to_string()),
            subdir: None,
        };
        clone(&sub, options, env, &dest).map_err(|e| GitError::Submodule {
            name,
            url,
            source: Box::new(e),
        })?;
    }
    Ok(())
}

/// The variable naming the known-hosts files, as go-git (Kaniko) reads it.
pub const SSH_KNOWN_HOSTS: &str = "SSH_KNOWN_HOSTS";

/// The configuration that makes gix run ssh as kiln does: `core.sshCommand`
/// (and, for kiln's own command, `ssh.variant`, so no probe is run).
fn ssh_overrides(env: &Env) -> Vec<String> {
    let batch = "-o BatchMode=yes";
    match env.get("GIT_SSH_COMMAND").filter(|c| !c.trim().is_empty()) {
        // Options given first win in ssh, so the user's own `-o BatchMode`
        // would still be obeyed.
        Some(command) => vec![format!("core.sshCommand={command} {batch}")],
        None => {
            let mut command = format!("ssh {batch} -o StrictHostKeyChecking=yes");
            let files: Vec<String> = env
                .get(SSH_KNOWN_HOSTS)
                .unwrap_or_default()
                .split(':')
                .filter(|f| !f.is_empty())
                .map(str::to_string)
                .collect();
            if !files.is_empty() {
                command.push_str(" -o ");
                // ssh splits the value at spaces outside double quotes.
                let quoted: Vec<String> = files
                    .iter()
                    .map(|f| format!("\"{}\"", f.replace('"', "")))
                    .collect();
                command.push_str(&shell_quote(&format!(
                    "UserKnownHostsFile={}",
                    quoted.join(" ")
                )));
                command.push_str(" -o GlobalKnownHostsFile=/dev/null");
            }
            vec![
                format!("core.sshCommand={command}"),
                "ssh.variant=ssh".to_string(),
            ]
        }
    }
}

/// True for the URLs gix reaches through ssh: `ssh://`, `git+ssh://` and
/// git's scp-like `user@host:path`.
fn is_ssh(url: &str) -> bool {
    match url.split_once("://") {
        Some((scheme, _)) => matches!(
            scheme.to_ascii_lowercase().as_str(),
            "ssh" | "git+ssh" | "ssh+git"
        ),
        None => url.contains(':'),
    }
}

/// What to do about a failed ssh connection. ssh's own message is on
/// standard error already (gix passes through what it does not recognise),
/// so this says where kiln looks for keys and host keys.
fn ssh_failure(text: &str, env: &Env) -> String {
    let custom = env
        .get("GIT_SSH_COMMAND")
        .is_some_and(|c| !c.trim().is_empty());
    let lower = text.to_ascii_lowercase();
    // A refused login reaches gix as a request for credentials, which kiln
    // never answers for ssh.
    if lower.contains("permission denied") || lower.contains("no credentials were returned") {
        let keys = if env.get("SSH_AUTH_SOCK").is_some_and(|s| !s.is_empty()) {
            "the server accepted none of the keys offered by the ssh agent (SSH_AUTH_SOCK) or ~/.ssh"
        } else {
            "no ssh agent is set (SSH_AUTH_SOCK) and the server accepted no key from ~/.ssh"
        };
        return format!("ssh login refused: {keys}");
    }
    let host_keys = if custom {
        "the host key as GIT_SSH_COMMAND's ssh checks it"
    } else {
        "the server's host key in a file SSH_KNOWN_HOSTS names (else ~/.ssh/known_hosts or /etc/ssh/ssh_known_hosts)"
    };
    format!(
        "ssh failed ({text}; ssh's own message is above). kiln runs ssh in batch mode and needs \
         {host_keys}, and a key the server accepts in the ssh agent (SSH_AUTH_SOCK) or ~/.ssh"
    )
}

/// `text` as one word for `sh`.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

type Credentials = Option<(String, String)>;

fn credentials(env: &Env) -> Credentials {
    if let Some(token) = env.get("GIT_TOKEN").filter(|t| !t.is_empty()) {
        return Some((token, String::new()));
    }
    let user = env.get("GIT_USERNAME").unwrap_or_default();
    let password = env.get("GIT_PASSWORD").unwrap_or_default();
    (!user.is_empty() || !password.is_empty()).then_some((user, password))
}

fn answer(credentials: &Credentials, action: Action) -> gix::Result<Option<Outcome>> {
    match (action, credentials) {
        (Action::Get(context), Some((username, password))) => Ok(Some(Outcome {
            credentials: gix::sec::identity::Credentials::UsernamePassword {
                username: username.clone(),
                password: password.clone(),
                oauth_refresh_token: None,
            },
            next: NextAction::from(context),
        })),
        _ => Ok(None),
    }
}

/// HTTP transport options that accept any server certificate (Kaniko's
/// `insecure-skip-tls`): the reqwest backend reads no `http.sslVerify`, so
/// its client is configured directly.
fn insecure_http_options() -> gix::protocol::transport::client::blocking_io::http::Options {
    use gix::protocol::transport::client::blocking_io::http;
    let backend = http::reqwest::Options {
        configure_client: Some(Box::new(|builder| {
            Ok(builder.tls_danger_accept_invalid_certs(true))
        })),
        ..Default::default()
    };
    http::Options {
        backend: Some(std::sync::Arc::new(std::sync::Mutex::new(backend))),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_runs_in_batch_mode_with_strict_host_keys() {
        let plain = ssh_overrides(&Env::default());
        assert_eq!(
            plain,
            [
                "core.sshCommand=ssh -o BatchMode=yes -o StrictHostKeyChecking=yes",
                "ssh.variant=ssh"
            ]
        );
        // go-git's list, `:`-separated; each name quoted for ssh, the whole
        // option for sh.
        let listed = ssh_overrides(&Env::from_pairs([(
            SSH_KNOWN_HOSTS,
            "/etc/k:/run/it's here",
        )]));
        assert_eq!(
            listed[0],
            "core.sshCommand=ssh -o BatchMode=yes -o StrictHostKeyChecking=yes \
             -o 'UserKnownHostsFile=\"/etc/k\" \"/run/it'\\''s here\"' \
             -o GlobalKnownHostsFile=/dev/null"
        );
        // GIT_SSH_COMMAND replaces the command; its options, given first, win.
        let custom = ssh_overrides(&Env::from_pairs([
            ("GIT_SSH_COMMAND", "ssh -i '/keys/a b'"),
            (SSH_KNOWN_HOSTS, "/ignored"),
        ]));
        assert_eq!(
            custom,
            ["core.sshCommand=ssh -i '/keys/a b' -o BatchMode=yes"]
        );
    }

    #[test]
    fn ssh_urls_are_recognised() {
        assert!(is_ssh("ssh://git@h/r.git"));
        assert!(is_ssh("git+ssh://h/r.git"));
        assert!(is_ssh("git@h:org/r.git"));
        assert!(!is_ssh("https://h/r.git"));
        assert!(!is_ssh("git://h/r.git"));
    }

    #[test]
    fn ssh_failures_say_where_keys_come_from() {
        let refused = ssh_failure("Permission denied (publickey)", &Env::default());
        assert!(
            refused.contains("no ssh agent is set (SSH_AUTH_SOCK)"),
            "{refused}"
        );
        let with_agent = Env::from_pairs([("SSH_AUTH_SOCK", "/run/agent")]);
        let refused = ssh_failure("no credentials were returned", &with_agent);
        assert!(refused.contains("none of the keys"), "{refused}");
        assert!(!refused.contains("credentials were returned"), "{refused}");
        let other = ssh_failure("early EOF", &with_agent);
        assert!(
            other.contains("SSH_KNOWN_HOSTS") && other.contains("early EOF"),
            "{other}"
        );
    }
}

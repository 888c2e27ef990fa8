//! A real CNCF distribution registry (`docker-registry serve`) on a free
//! 127.0.0.1 port, private to one test.

use std::fs::{self, File};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use crate::auth::{self, Credentials};
use crate::tls::{self, TlsFiles};

/// How long a registry may take to answer `GET /v2/` before the start fails.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// Time limit of one readiness probe; short, so a probe that reached the
/// wrong listener cannot eat the whole start budget.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Starts attempted when another process grabs the port between our probe
/// bind and the registry's own bind.
const START_ATTEMPTS: u32 = 5;

/// Options for a [`Registry`]; [`Registry::builder`] starts one.
#[derive(Debug, Clone, Default)]
pub struct RegistryBuilder {
    tls: bool,
    auth: Option<Credentials>,
}

impl RegistryBuilder {
    /// Serve HTTPS with a fresh CA (see [`Registry::ca_cert_path`]).
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = on;
        self
    }

    /// Require basic auth (htpasswd, bcrypt) for this user.
    pub fn auth(mut self, user: &str, pass: &str) -> Self {
        self.auth = Some(Credentials {
            username: user.to_string(),
            password: pass.to_string(),
        });
        self
    }

    /// Starts the registry and waits until it answers.
    ///
    /// # Errors
    /// Fails if the registry cannot be started or does not answer within 15 s;
    /// the error includes the registry's log.
    pub fn start(self) -> Result<Registry> {
        let dir = tempfile::Builder::new()
            .prefix("kiln-registry-")
            .tempdir()
            .context("creating registry temp dir")?;
        let tls = if self.tls {
            Some(tls::generate(&dir.path().join("tls"))?)
        } else {
            None
        };
        let htpasswd = match &self.auth {
            Some(c) => {
                let p = dir.path().join("htpasswd");
                auth::write_htpasswd(&p, c)?;
                Some(p)
            }
            None => None,
        };
        fs::create_dir_all(dir.path().join("storage"))?;

        let mut last_err = None;
        for attempt in 1..=START_ATTEMPTS {
            let port = free_port()?;
            let spec = ConfigSpec {
                root: &dir.path().join("storage"),
                port,
                tls: tls.as_ref(),
                htpasswd: htpasswd.as_deref(),
            };
            let config_path = dir.path().join("config.yml");
            fs::write(&config_path, spec.render())
                .with_context(|| format!("writing {}", config_path.display()))?;
            let log_path = dir.path().join(format!("registry-{attempt}.log"));
            let mut process = Process::spawn(&config_path, log_path)?;
            let url = format!("{}://127.0.0.1:{port}/v2/", scheme(tls.is_some()));
            let agent = agent_for(tls.as_ref(), PROBE_TIMEOUT)?;
            match process.wait_ready(&agent, &url) {
                Ok(()) => {
                    return Ok(Registry {
                        process,
                        port,
                        tls,
                        credentials: self.auth,
                        dir,
                    })
                }
                // Lost the race for the port: pick another one.
                Err(e) if process.log().contains("address already in use") => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.expect("at least one attempt"))
            .with_context(|| format!("registry could not bind a port in {START_ATTEMPTS} attempts"))
    }
}

/// A running registry; the process is killed and its storage deleted on drop.
///
/// ```no_run
/// let reg = kiln_testkit::Registry::plain()?;
/// assert!(reg.url().starts_with("http://127.0.0.1:"));
/// # anyhow::Ok(())
/// ```
#[derive(Debug)]
pub struct Registry {
    // Fields drop in order: the process is killed before its dir is removed.
    process: Process,
    port: u16,
    tls: Option<TlsFiles>,
    credentials: Option<Credentials>,
    dir: TempDir,
}

impl Registry {
    /// Options for a registry with TLS and/or auth.
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder::default()
    }

    /// Plain HTTP, no auth.
    ///
    /// # Errors
    /// See [`RegistryBuilder::start`].
    pub fn plain() -> Result<Self> {
        Self::builder().start()
    }

    /// Plain HTTP, holding the test busybox image as `busybox:latest`: the
    /// base most tests build on.
    ///
    /// # Errors
    /// See [`RegistryBuilder::start`] and [`crate::BaseImage::push_to`].
    pub fn plain_with_busybox() -> Result<Self> {
        let reg = Self::plain()?;
        crate::BaseImage::busybox()?.push_to(&reg, "busybox:latest")?;
        Ok(reg)
    }

    /// HTTPS with a certificate from a fresh CA, no auth.
    ///
    /// # Errors
    /// See [`RegistryBuilder::start`].
    pub fn tls() -> Result<Self> {
        Self::builder().tls(true).start()
    }

    /// HTTPS plus basic auth (htpasswd) for `user` / `pass`.
    ///
    /// # Errors
    /// See [`RegistryBuilder::start`].
    pub fn tls_with_auth(user: &str, pass: &str) -> Result<Self> {
        Self::builder().tls(true).auth(user, pass).start()
    }

    /// `127.0.0.1:PORT`, the registry part of an image reference.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("{}://{}", scheme(self.is_tls()), self.host())
    }

    /// `HOST/name` — a full reference for an image on this registry
    /// (`name` may carry `:tag` or `@digest`).
    pub fn image_ref(&self, name: &str) -> String {
        format!("{}/{name}", self.host())
    }

    /// Whether the registry serves HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The credentials the registry requires, if any.
    pub fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    /// The PEM CA certificate that signed the server's certificate (TLS only).
    pub fn ca_cert_path(&self) -> Option<&Path> {
        self.tls.as_ref().map(|t| t.ca_cert.as_path())
    }

    /// A directory containing only `ca.crt` (TLS only), for skopeo's and
    /// buildah's `--cert-dir`-style flags.
    pub fn cert_dir(&self) -> Option<&Path> {
        self.tls.as_ref().map(|t| t.cert_dir.as_path())
    }

    /// A fresh directory with a Docker `config.json` whose `auths` holds this
    /// registry's credentials (empty `auths` when it has none); point
    /// `DOCKER_CONFIG` at it. Each call rewrites the same directory.
    ///
    /// # Errors
    /// Fails if the file cannot be written.
    pub fn docker_config_dir(&self) -> Result<PathBuf> {
        let dir = self.dir.path().join("docker-config");
        auth::write_docker_config(&dir, &self.host(), self.credentials.as_ref())?;
        Ok(dir)
    }

    /// Where the registry keeps blobs and manifests (filesystem driver root),
    /// for tests that want to inspect or corrupt storage directly.
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Everything the registry has logged so far (level warn and above).
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// An HTTP agent that trusts this registry's CA and does not treat 4xx/5xx
    /// as errors; for probing the API directly from tests.
    ///
    /// # Errors
    /// Fails if the CA certificate cannot be read.
    pub fn http_agent(&self) -> Result<ureq::Agent> {
        agent_for(self.tls.as_ref(), Duration::from_secs(30))
    }
}

fn scheme(tls: bool) -> &'static str {
    if tls {
        "https"
    } else {
        "http"
    }
}

fn agent_for(tls: Option<&TlsFiles>, timeout: Duration) -> Result<ureq::Agent> {
    let mut cfg = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout));
    if let Some(t) = tls {
        let pem =
            fs::read(&t.ca_cert).with_context(|| format!("reading {}", t.ca_cert.display()))?;
        let cert = ureq::tls::Certificate::from_pem(&pem)
            .context("parsing CA certificate")?
            .to_owned();
        let roots = ureq::tls::RootCerts::Specific(Arc::new(vec![cert]));
        cfg = cfg.tls_config(ureq::tls::TlsConfig::builder().root_certs(roots).build());
    }
    Ok(cfg.build().new_agent())
}

/// The registry process; killed on drop.
#[derive(Debug)]
struct Process {
    child: Child,
    log_path: PathBuf,
}

impl Process {
    fn spawn(config: &Path, log_path: PathBuf) -> Result<Self> {
        let out =
            File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let err = out.try_clone()?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .context("starting docker-registry (apt package docker-registry)")?;
        Ok(Self { child, log_path })
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Polls `GET /v2/` until any HTTP answer arrives (401 counts: the server
    /// is up and checking auth), the process exits, or the timeout passes.
    fn wait_ready(&mut self, agent: &ureq::Agent, url: &str) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last = String::from("no attempt made");
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "docker-registry exited early ({status}); its output:\n{}",
                    self.log()
                );
            }
            match agent.get(url).call() {
                Ok(resp) if matches!(resp.status().as_u16(), 200 | 401) => return Ok(()),
                Ok(resp) => last = format!("status {}", resp.status()),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "docker-registry did not answer GET {url} within {READY_TIMEOUT:?} (last: {last}); its output:\n{}",
            self.log()
        )
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // The registry holds no state worth a graceful shutdown.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asks the kernel for a free port by binding :0. Another process can take
/// it before the registry binds, which is why [`RegistryBuilder::start`] retries.
fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0 to find a free port")?;
    Ok(l.local_addr()?.port())
}

/// The parts of the registry configuration that vary per instance.
struct ConfigSpec<'a> {
    root: &'a Path,
    port: u16,
    tls: Option<&'a TlsFiles>,
    htpasswd: Option<&'a Path>,
}

impl ConfigSpec<'_> {
    /// Renders config.yml. Strings are emitted JSON-quoted, which YAML reads
    /// as ordinary double-quoted scalars, so paths need no escaping rules of
    /// their own. The debug server stays off (no `http.debug`), access logs
    /// are disabled and the level is warn to keep test output quiet; the HTTP
    /// secret is fixed to silence the "no secret" warning.
    fn render(&self) -> String {
        let q = |p: &Path| serde_json::to_string(&p.to_string_lossy()).expect("string to JSON");
        let mut y = format!(
            "version: 0.1\n\
             log:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: kiln-testkit-not-secret\n",
            root = q(self.root),
            port = self.port,
        );
        if let Some(t) = self.tls {
            y.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                q(&t.server_cert),
                q(&t.server_key)
            ));
        }
        if let Some(h) = self.htpasswd {
            y.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: kiln-testkit\n    path: {}\n",
                q(h)
            ));
        }
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(reg: &Registry, auth: Option<&Credentials>) -> u16 {
        let agent = reg.http_agent().unwrap();
        let mut req = agent.get(format!("{}/v2/", reg.url()));
        if let Some(c) = auth {
            req = req.header("Authorization", format!("Basic {}", c.basic_auth_token()));
        }
        req.call().unwrap().status().as_u16()
    }

    #[test]
    fn plain_answers_and_stops_on_drop() {
        let reg = Registry::plain().unwrap();
        assert!(reg.url().starts_with("http://127.0.0.1:"));
        assert_eq!(status(&reg, None), 200);
        let storage = reg.storage_dir();
        let port = reg.port();
        drop(reg);
        assert!(!storage.exists(), "registry dir must be removed on drop");
        // Nothing listens any more.
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    }

    #[test]
    fn tls_with_auth_requires_credentials() {
        let reg = Registry::tls_with_auth("kiln", "pw").unwrap();
        assert!(reg.url().starts_with("https://"));
        assert!(reg.ca_cert_path().unwrap().exists());
        assert_eq!(status(&reg, None), 401);
        assert_eq!(status(&reg, reg.credentials()), 200);
        let wrong = Credentials {
            username: "kiln".into(),
            password: "nope".into(),
        };
        assert_eq!(status(&reg, Some(&wrong)), 401);
        let cfg = reg.docker_config_dir().unwrap().join("config.json");
        let text = fs::read_to_string(cfg).unwrap();
        assert!(text.contains(&reg.host()), "{text}");
    }

    #[test]
    fn taken_port_is_reported_as_bind_failure() {
        // The retry loop keys on this message; check docker-registry says it.
        let dir = tempfile::tempdir().unwrap();
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let spec = ConfigSpec {
            root: dir.path(),
            port: taken.local_addr().unwrap().port(),
            tls: None,
            htpasswd: None,
        };
        let config = dir.path().join("config.yml");
        fs::write(&config, spec.render()).unwrap();
        let mut p = Process::spawn(&config, dir.path().join("log")).unwrap();
        let url = format!("http://127.0.0.1:{}/v2/", spec.port);
        let err = p
            .wait_ready(&agent_for(None, PROBE_TIMEOUT).unwrap(), &url)
            .unwrap_err();
        assert!(p.log().contains("address already in use"), "{err:#}");
    }

    #[test]
    fn config_quotes_paths_and_omits_debug() {
        let spec = ConfigSpec {
            root: Path::new("/tmp/a b"),
            port: 1234,
            tls: None,
            htpasswd: None,
        };
        let y = spec.render();
        assert!(y.contains("rootdirectory: \"/tmp/a b\""), "{y}");
        assert!(y.contains("addr: 127.0.0.1:1234"));
        assert!(!y.contains("debug"));
        assert!(!y.contains("auth:"));
    }
}

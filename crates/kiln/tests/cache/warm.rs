//! The first warm rebuild after a cold build, on a fresh runner, downloads
//! no layer, whatever the Dockerfile's shape: every layer the cold build
//! wrote or unpacked has its listing in the cache, so a COPY or WORKDIR
//! that misses learns what the image below holds (directories, links,
//! `/etc/passwd`) from a few kilobytes of listing.
//!
//! Every request goes through a relaying proxy whose log is the evidence:
//! the warm build must not GET any layer blob of the base, of the image, or
//! of any step's cache entry. kiln's own report must not name a pulled
//! layer either, and the image must be the one a full build gives.

use assert_cmd::Command;
use kiln_testkit::{FaultProxy, Flattened, Registry};
use std::collections::BTreeSet;
use std::fs;
use std::time::Duration;

const MANIFEST_ACCEPT: &str =
    "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

struct Fixture {
    reg: Registry,
    proxy: FaultProxy,
    ctx: tempfile::TempDir,
}

/// What one build did.
struct Built {
    /// Dockerfile lines whose step came from the cache.
    cached: BTreeSet<usize>,
    /// kiln's output.
    text: String,
    /// Digests of the blobs the build downloaded (GET through the proxy).
    downloaded: BTreeSet<String>,
    /// Digests of the blobs the build asked about (HEAD through the proxy).
    asked: BTreeSet<String>,
}

impl Fixture {
    /// A context with `dockerfile` (`BASE` stands for the busybox image,
    /// reached through the proxy like everything else).
    fn new(dockerfile: &str) -> Fixture {
        let reg = Registry::plain_with_busybox().unwrap();
        let proxy = FaultProxy::start(&reg.host()).unwrap();
        let ctx = tempfile::tempdir().unwrap();
        let f = Fixture { reg, proxy, ctx };
        let base = format!("{}/busybox:latest", f.proxy.host());
        f.write("Dockerfile", &dockerfile.replace("BASE", &base));
        f.write("src/main.sh", "echo main\n");
        f
    }

    fn write(&self, name: &str, content: &str) {
        let path = self.ctx.path().join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    /// Builds with the registry cache on (COPY layers too), in a fresh
    /// kiln dir, as on a fresh CI runner.
    fn build(&self) -> Built {
        let work = tempfile::tempdir().unwrap();
        let seen = self.proxy.log().len();
        let out = Command::cargo_bin("kiln")
            .unwrap()
            .args(["build", "--context"])
            .arg(self.ctx.path())
            .args(["--destination", &format!("{}/app:1", self.proxy.host())])
            .args([
                "--insecure",
                "--insecure-pull",
                "--isolation",
                "chroot",
                "--cache=true",
                "--cache-copy-layers=true",
                "--cache-run-layers=true",
            ])
            .arg("--kiln-dir")
            .arg(work.path())
            .timeout(Duration::from_secs(300))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "kiln failed:\n{text}");
        let log = self.proxy.log()[seen..].to_vec();
        let blobs = |method: &str| -> BTreeSet<String> {
            log.iter()
                .filter_map(|line| {
                    let path = line.strip_prefix(method)?.split(' ').next()?;
                    let (_, digest) = path.split_once("/blobs/")?;
                    Some(digest.to_string())
                })
                .collect()
        };
        Built {
            cached: cached_lines(&text),
            text,
            downloaded: blobs("GET "),
            asked: blobs("HEAD "),
        }
    }

    /// Every image layer the registry holds: the base's, the built image's,
    /// and the one of every step entry in the cache (listings left out).
    fn layer_blobs(&self) -> BTreeSet<String> {
        let mut layers = BTreeSet::new();
        for image in ["busybox:latest", "app:1"] {
            let manifest = Flattened::from_registry(&self.reg, image).unwrap().manifest;
            for layer in manifest["layers"].as_array().unwrap() {
                layers.insert(layer["digest"].as_str().unwrap().to_string());
            }
        }
        for (by, layer) in cache_entries(&self.reg, "app/cache") {
            if let (false, Some(layer)) = (by.starts_with("listing of "), layer) {
                layers.insert(layer);
            }
        }
        layers
    }

    /// Builds cold, changes the code, builds again on a fresh runner, and
    /// checks that the warm build took `cached` from the cache and
    /// downloaded no layer. Returns the rebuilt image.
    fn cold_then_warm(&self, cached: &[usize]) -> Flattened {
        let cold = self.build();
        assert!(cold.cached.is_empty(), "a cold cache hits nothing");
        self.write("src/main.sh", "echo changed\n");
        let warm = self.build();
        assert_eq!(
            warm.cached,
            cached.iter().copied().collect(),
            "{}",
            warm.text
        );
        let layers = self.layer_blobs();
        let pulled: Vec<&String> = warm.downloaded.intersection(&layers).collect();
        assert!(
            pulled.is_empty(),
            "the warm rebuild downloaded layers {pulled:?}:\n{}",
            warm.text
        );
        assert!(
            !warm.text.contains("pulled sha256:"),
            "kiln reports a pulled layer:\n{}",
            warm.text
        );
        let img = Flattened::from_registry(&self.reg, "app:1").unwrap();
        assert_eq!(img.text("/app/main.sh").as_deref(), Some("echo changed\n"));
        img
    }
}

/// Dockerfile lines reported as `step N: CACHED`.
fn cached_lines(log: &str) -> BTreeSet<usize> {
    log.lines()
        .filter(|l| l.contains("CACHED"))
        .filter_map(|l| {
            let rest = &l[l.find("step ")? + 5..];
            rest.split(':').next()?.trim().parse().ok()
        })
        .collect()
}

/// The entries of cache repository `repo`: (history text, layer digest).
fn cache_entries(reg: &Registry, repo: &str) -> Vec<(String, Option<String>)> {
    let agent = reg.http_agent().unwrap();
    let url = |path: &str| format!("{}/v2/{repo}/{path}", reg.url());
    let read = |path: &str, accept: &str| -> serde_json::Value {
        let body = agent
            .get(url(path))
            .header("Accept", accept)
            .call()
            .unwrap()
            .body_mut()
            .read_to_vec()
            .unwrap();
        serde_json::from_slice(&body).unwrap()
    };
    let tags = read("tags/list", "application/json");
    tags["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tag| {
            let m = read(
                &format!("manifests/{}", tag.as_str().unwrap()),
                MANIFEST_ACCEPT,
            );
            let by = m["annotations"]["dev.kiln.cache.created-by"]
                .as_str()
                .unwrap()
                .to_string();
            let layer = m["layers"][0]["digest"].as_str().map(str::to_string);
            (by, layer)
        })
        .collect()
}

/// A user the RUN steps add, so only a RUN layer can tell who it is.
const ADD_USER: &str = "RUN echo 'svc:x:4321:4321::/home/svc:/bin/sh' >> /etc/passwd && echo 'svc:x:4321:' >> /etc/group";

/// The shape: dependencies installed by RUNs, then the code COPY.
#[test]
fn run_then_copy() {
    let f = Fixture::new(
        "FROM BASE\n\
         RUN mkdir -p /opt/deps && echo lib > /opt/deps/lib.txt\n\
         RUN echo patched >> /opt/deps/lib.txt && ln -s /opt/deps /deps\n\
         COPY src/ /app/\n",
    );
    let img = f.cold_then_warm(&[2, 3]);
    assert_eq!(
        img.text("/opt/deps/lib.txt").as_deref(),
        Some("lib\npatched\n")
    );
    assert!(img.get("/bin/busybox").is_some());
}

/// A listing of a few hundred paths comes with its cache entry's manifest
/// (as its layer's `data`): the warm rebuild's COPY learns what each layer
/// below holds with one request per layer, and GETs no listing blob.
#[test]
fn small_listings_come_with_their_entries() {
    let f = Fixture::new(&format!(
        "FROM BASE
{ADD_USER}
         RUN mkdir -p /opt/deps && echo lib > /opt/deps/lib.txt
         COPY --chown=svc src/ /app/
"
    ));
    f.build();
    let listings: BTreeSet<String> = cache_entries(&f.reg, "app/cache")
        .into_iter()
        .filter(|(by, _)| by.starts_with("listing of "))
        .filter_map(|(_, layer)| layer)
        .collect();
    // The base's layer, the two RUN layers and the COPY's.
    assert_eq!(listings.len(), 4, "{listings:?}");
    f.write("src/main.sh", "echo changed\n");
    let warm = f.build();
    assert_eq!(warm.cached, BTreeSet::from([2, 3]), "{}", warm.text);
    let read: Vec<&String> = warm.downloaded.intersection(&listings).collect();
    assert!(
        read.is_empty(),
        "listing blobs downloaded: {read:?}\n{}",
        warm.text
    );
    let img = Flattened::from_registry(&f.reg, "app:1").unwrap();
    assert_eq!(img.get("/app/main.sh").unwrap().uid, 4321);
    assert_eq!(img.text("/app/main.sh").as_deref(), Some("echo changed\n"));
}

/// `COPY --chown` of a user only a RUN layer's `/etc/passwd` knows, into a
/// directory reached through a link a RUN made.
#[test]
fn copy_chown_with_a_user_from_a_run_layer() {
    let f = Fixture::new(&format!(
        "FROM BASE\n{ADD_USER}\n\
         RUN mkdir -p /srv/real && ln -s /srv/real /srv/link\n\
         COPY --chown=svc:svc src/ /srv/link/\n\
         COPY --chown=svc src/main.sh /app/main.sh\n"
    ));
    let img = f.cold_then_warm(&[2, 3]);
    let copied = img
        .get("/srv/real/main.sh")
        .expect("copied through the link");
    assert_eq!((copied.uid, copied.gid), (4321, 4321));
    assert!(img.get("/srv/link/main.sh").is_none(), "the link is kept");
    assert_eq!(img.get("/app/main.sh").unwrap().uid, 4321);
}

/// A RUN of 40,000 files has its listing stored in three pieces; the
/// warm rebuild's `COPY --chown` reads the one piece its paths and
/// `/etc/passwd` fall in, and neither the others nor the layer.
#[test]
fn a_copy_reads_only_the_listing_pieces_its_paths_fall_in() {
    let f = Fixture::new(
        "FROM BASE\n\
         RUN mkdir /many && cd /many && seq 1 40000 | xargs touch && \
             echo 'svc:x:4321:4321::/home/svc:/bin/sh' >> /etc/passwd && \
             echo 'svc:x:4321:' >> /etc/group\n\
         COPY --chown=svc src/ /app/\n",
    );
    let cold = f.build();
    let pieces: BTreeSet<(String, String)> = cache_entries(&f.reg, "app/cache")
        .into_iter()
        .filter(|(by, _)| by.contains(", piece "))
        .map(|(by, layer)| (by, layer.unwrap()))
        .collect();
    let of_three: Vec<&String> = pieces
        .iter()
        .filter(|(by, _)| by.ends_with(" of 3"))
        .map(|(_, layer)| layer)
        .collect();
    assert_eq!(of_three.len(), 3, "{pieces:?}");
    assert!(of_three.iter().all(|p| !cold.downloaded.contains(*p)));
    f.write("src/main.sh", "echo changed\n");
    let warm = f.build();
    assert_eq!(warm.cached, BTreeSet::from([2]), "{}", warm.text);
    let read: Vec<&&String> = of_three
        .iter()
        .filter(|p| warm.downloaded.contains(**p))
        .collect();
    assert_eq!(
        read.len(),
        1,
        "pieces read: {read:?} of {of_three:?}\n{}",
        warm.text
    );
    // A listing or piece is looked up with its entry's manifest alone: its
    // download checks the blob, so no HEAD asks first.
    let asked_then_read: Vec<&String> = warm.downloaded.intersection(&warm.asked).collect();
    assert!(asked_then_read.is_empty(), "{asked_then_read:?}");
    let layers = f.layer_blobs();
    let pulled: Vec<&String> = warm.downloaded.intersection(&layers).collect();
    assert!(pulled.is_empty(), "layers downloaded: {pulled:?}");
    let img = Flattened::from_registry(&f.reg, "app:1").unwrap();
    assert_eq!(img.get("/app/main.sh").unwrap().uid, 4321);
    assert_eq!(img.text("/app/main.sh").as_deref(), Some("echo changed\n"));
}

/// A stage built entirely from the cache, copied from before the code.
#[test]
fn multi_stage_copy_from_a_cached_stage() {
    let f = Fixture::new(&format!(
        "FROM BASE AS build\n\
         RUN mkdir -p /out && echo built > /out/artifact\n\
         FROM BASE\n{ADD_USER}\n\
         COPY --from=build --chown=svc /out/ /opt/artifacts/\n\
         COPY src/ /app/\n"
    ));
    let img = f.cold_then_warm(&[2, 4, 5]);
    assert_eq!(
        img.text("/opt/artifacts/artifact").as_deref(),
        Some("built\n")
    );
    assert_eq!(img.get("/opt/artifacts/artifact").unwrap().uid, 4321);
}

/// USER names looked up after the code changed: a WORKDIR made for the
/// user, and VOLUME and WORKDIR layers below the code.
#[test]
fn user_lookups_and_directory_layers() {
    let f = Fixture::new(&format!(
        "FROM BASE\n\
         WORKDIR /srv/data\n\
         VOLUME /cache/vol\n\
         {ADD_USER}\n\
         USER svc\n\
         COPY src/ /app/\n\
         WORKDIR /home/svc/work\n"
    ));
    let img = f.cold_then_warm(&[2, 3, 4]);
    let work = img.get("/home/svc/work").expect("WORKDIR made it");
    assert_eq!((work.uid, work.gid), (4321, 4321));
    assert!(img.get("/srv/data").is_some() && img.get("/cache/vol").is_some());
    assert_eq!(img.config["config"]["WorkingDir"], "/home/svc/work");
}

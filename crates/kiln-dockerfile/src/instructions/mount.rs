//! `RUN --mount=type=...,key=value` specs, with BuildKit's keys, defaults
//! and checks (bind/cache/tmpfs/secret/ssh).
//!
//! A spec is read twice: once when the Dockerfile is typed, where values
//! holding `$` are left for later (only `from` must be literal, because the
//! stage graph is built before any stage runs), and once at build time with
//! every value expanded against the stage environment.

use super::suggest::with_suggestion;

/// The kind of a RUN mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MountType {
    /// A read-only (by default) view of a stage, image or the context.
    Bind,
    /// A persistent cache directory keyed by `id`.
    Cache,
    /// An empty in-memory filesystem.
    Tmpfs,
    /// A secret file (or environment variable).
    Secret,
    /// An SSH agent socket.
    Ssh,
}

impl MountType {
    /// The name used in a spec (`bind`, `cache`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

/// How concurrent builds share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// Everyone uses the same directory at once (the default).
    Shared,
    /// A second user gets a fresh directory.
    Private,
    /// A second user waits for the first.
    Locked,
}

/// One parsed `--mount` spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// `type=`; `bind` when absent.
    pub kind: MountType,
    /// `from=`: a stage name or index, or an image reference.
    pub from: Option<String>,
    /// `source=`/`src=`: path inside `from` (bind, cache) or the secret id.
    pub source: Option<String>,
    /// `target=`/`dst=`/`destination=`: where it appears in the container.
    pub target: Option<String>,
    /// `ro`/`readonly`/`rw`/`readwrite`; defaults to read-only for bind,
    /// secret and ssh, writable for cache and tmpfs.
    pub read_only: bool,
    /// `id=`: cache id, secret id or ssh agent id.
    pub id: Option<String>,
    /// `sharing=` (cache only).
    pub sharing: Option<Sharing>,
    /// `required` (secret and ssh only).
    pub required: bool,
    /// `size=` in bytes (tmpfs only).
    pub size: Option<u64>,
    /// `env=`: expose a secret as this environment variable.
    pub env: Option<String>,
    /// `mode=` (octal; cache, secret, ssh).
    pub mode: Option<u32>,
    /// `uid=` (cache, secret, ssh).
    pub uid: Option<u32>,
    /// `gid=` (cache, secret, ssh).
    pub gid: Option<u32>,
}

const ALL_KEYS: &[&str] = &[
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "destination",
    "ro",
    "rw",
    "readwrite",
    "env",
];

/// Expands one value; `None` means "not yet" (typing time).
pub(crate) type Expander<'a> = Option<&'a mut dyn FnMut(&str) -> Result<String, String>>;

/// Parse one `--mount` value. With `expand` = `None`, values that contain
/// `$` are skipped (checked again at build time); `from` must not use variables.
pub(crate) fn parse_mount(spec: &str, mut expand: Expander<'_>) -> Result<Mount, String> {
    let fields = csv_fields(spec)?;
    let mut m = Mount {
        kind: MountType::Bind,
        from: None,
        source: None,
        target: None,
        read_only: true,
        id: None,
        sharing: None,
        required: false,
        size: None,
        env: None,
        mode: None,
        uid: None,
        gid: None,
    };
    let mut ro_auto = true;
    // Presence checks wait for build time when a value was left unexpanded.
    let mut deferred = false;
    for field in &fields {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), v.to_string()),
            None => {
                let key = field.to_ascii_lowercase();
                match key.as_str() {
                    "readonly" | "ro" => {
                        m.read_only = true;
                        ro_auto = false;
                    }
                    "readwrite" | "rw" => {
                        m.read_only = false;
                        ro_auto = false;
                    }
                    "required" if secretish(m.kind) => m.required = true,
                    "required" => return Err(unexpected_for_type(&key, m.kind)),
                    _ => return Err(format!("invalid field '{field}' must be a key=value pair")),
                }
                continue;
            }
        };
        let value = match expand.as_mut() {
            Some(e) => e(&value)?,
            None if key == "from" => {
                if value.find('$').is_some_and(|i| i != value.len() - 1) {
                    return Err(
                        "'from' doesn't support variable expansion, define alias stage instead"
                            .into(),
                    );
                }
                value
            }
            None if value.contains('$') => {
                deferred = true;
                continue;
            }
            None => value,
        };
        match key.as_str() {
            "type" => {
                m.kind = match value.to_ascii_lowercase().as_str() {
                    "bind" => MountType::Bind,
                    "cache" => MountType::Cache,
                    "tmpfs" => MountType::Tmpfs,
                    "secret" => MountType::Secret,
                    "ssh" => MountType::Ssh,
                    _ => {
                        return Err(with_suggestion(
                            format!("unsupported mount type {value:?}"),
                            &value,
                            &["bind", "cache", "tmpfs", "secret", "ssh"],
                            true,
                        ))
                    }
                }
            }
            "from" => m.from = Some(value),
            "source" | "src" => m.source = Some(value),
            "target" | "dst" | "destination" => m.target = Some(value),
            "readonly" | "ro" => {
                m.read_only = go_bool(&value).ok_or_else(|| invalid_value(&key, &value))?;
                ro_auto = false;
            }
            "readwrite" | "rw" => {
                m.read_only = !go_bool(&value).ok_or_else(|| invalid_value(&key, &value))?;
                ro_auto = false;
            }
            "required" if secretish(m.kind) => {
                m.required = go_bool(&value).ok_or_else(|| invalid_value(&key, &value))?
            }
            "required" => return Err(unexpected_for_type(&key, m.kind)),
            "size" if m.kind == MountType::Tmpfs => {
                m.size = Some(ram_in_bytes(&value).ok_or_else(|| invalid_value(&key, &value))?)
            }
            "size" => return Err(unexpected_for_type(&key, m.kind)),
            "id" => m.id = Some(value),
            "sharing" => {
                m.sharing = Some(match value.to_ascii_lowercase().as_str() {
                    "shared" => Sharing::Shared,
                    "private" => Sharing::Private,
                    "locked" => Sharing::Locked,
                    _ => {
                        return Err(with_suggestion(
                            format!("unsupported sharing value {value:?}"),
                            &value,
                            &["shared", "private", "locked"],
                            true,
                        ))
                    }
                })
            }
            "mode" => {
                m.mode = Some(
                    u32::from_str_radix(&value, 8)
                        .map_err(|_| format!("invalid value {value} for mode"))?,
                )
            }
            "uid" => {
                m.uid = Some(
                    value
                        .parse()
                        .map_err(|_| format!("invalid value {value} for uid"))?,
                )
            }
            "gid" => {
                m.gid = Some(
                    value
                        .parse()
                        .map_err(|_| format!("invalid value {value} for gid"))?,
                )
            }
            "env" => m.env = Some(value),
            _ => {
                return Err(with_suggestion(
                    format!("unexpected key '{key}' in '{field}'"),
                    &key,
                    ALL_KEYS,
                    true,
                ))
            }
        }
    }
    check(&mut m, ro_auto, deferred)?;
    Ok(m)
}

/// Cross-key rules, after BuildKit.
fn check(m: &mut Mount, ro_auto: bool, deferred: bool) -> Result<(), String> {
    let file_info_allowed = matches!(
        m.kind,
        MountType::Secret | MountType::Ssh | MountType::Cache
    );
    if !file_info_allowed {
        for (name, set) in [
            ("mode", m.mode.is_some()),
            ("uid", m.uid.is_some()),
            ("gid", m.gid.is_some()),
        ] {
            if set {
                return Err(format!(
                    "{name} not allowed for {:?} type mounts",
                    m.kind.as_str()
                ));
            }
        }
    }
    if ro_auto {
        m.read_only = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
    }
    if m.kind == MountType::Secret {
        if m.from.is_some() {
            return Err("secret mount should not have a from".into());
        }
        if m.sharing.is_some() {
            return Err("secret mount should not define sharing".into());
        }
        if !deferred
            && m.source.is_none()
            && m.target.is_none()
            && m.id.is_none()
            && m.env.is_none()
        {
            return Err("invalid secret mount. one of source, target required".into());
        }
        if m.source.is_some() && m.id.is_some() {
            return Err("both source and id can't be set".into());
        }
    }
    if m.sharing.is_some() && m.kind != MountType::Cache {
        return Err(format!(
            "invalid cache sharing set for {} mount",
            m.kind.as_str()
        ));
    }
    if !deferred
        && matches!(
            m.kind,
            MountType::Bind | MountType::Cache | MountType::Tmpfs
        )
        && m.target.as_deref().is_none_or(str::is_empty)
    {
        return Err(format!("mount type {} requires a target", m.kind.as_str()));
    }
    Ok(())
}

fn secretish(kind: MountType) -> bool {
    matches!(kind, MountType::Secret | MountType::Ssh)
}

fn unexpected_for_type(key: &str, kind: MountType) -> String {
    format!("unexpected key '{key}' for mount type '{}'", kind.as_str())
}

fn invalid_value(key: &str, value: &str) -> String {
    format!("invalid value for {key}: {value}")
}

/// Go's `strconv.ParseBool`.
fn go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// docker/go-units `RAMInBytes`: `64m`, `1.5GiB`, `1024` (binary multiples).
fn ram_in_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num.parse().ok()?;
    let unit = unit.trim_start().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return None,
    };
    Some((num * (1u64 << shift) as f64) as u64)
}

/// Split one CSV record (fields may be quoted, as in `source="a,b"`).
fn csv_fields(spec: &str) -> Result<Vec<String>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(spec.as_bytes());
    match reader.records().next() {
        None => Ok(Vec::new()),
        Some(Ok(record)) => Ok(record.iter().map(str::to_string).collect()),
        Some(Err(e)) => Err(format!("failed to parse csv mounts: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(spec: &str) -> Result<Mount, String> {
        parse_mount(spec, None)
    }

    #[test]
    fn bind_defaults_read_only() {
        let m = parse("target=/src,from=builder,source=/out").unwrap();
        assert_eq!(m.kind, MountType::Bind);
        assert!(m.read_only);
        assert_eq!(m.from.as_deref(), Some("builder"));
        assert_eq!(m.source.as_deref(), Some("/out"));
        assert_eq!(m.target.as_deref(), Some("/src"));
        assert!(!parse("type=bind,dst=/x,rw").unwrap().read_only);
        assert!(
            !parse("type=bind,destination=/x,readwrite=true")
                .unwrap()
                .read_only
        );
    }

    #[test]
    fn cache_keys() {
        let m = parse(
            "type=cache,target=/root/.cache,id=pip,sharing=locked,mode=0755,uid=1000,gid=1000",
        )
        .unwrap();
        assert_eq!(m.kind, MountType::Cache);
        assert!(!m.read_only);
        assert_eq!(m.id.as_deref(), Some("pip"));
        assert_eq!(m.sharing, Some(Sharing::Locked));
        assert_eq!(m.mode, Some(0o755));
        assert_eq!((m.uid, m.gid), (Some(1000), Some(1000)));
        assert!(parse("type=cache,target=/c,ro").unwrap().read_only);
    }

    #[test]
    fn tmpfs_size_and_secret_ssh() {
        assert_eq!(
            parse("type=tmpfs,target=/t,size=64m").unwrap().size,
            Some(64 << 20)
        );
        assert_eq!(
            parse("type=tmpfs,target=/t,size=1GiB").unwrap().size,
            Some(1 << 30)
        );
        let s = parse("type=secret,id=npmrc,target=/root/.npmrc,required").unwrap();
        assert!(s.required && s.read_only);
        let s = parse("type=secret,id=tok,env=TOKEN").unwrap();
        assert_eq!(s.env.as_deref(), Some("TOKEN"));
        let ssh = parse("type=ssh,required=true").unwrap();
        assert_eq!(ssh.kind, MountType::Ssh);
        assert!(ssh.required);
    }

    #[test]
    fn quoted_csv_field() {
        let m = parse(r#"type=bind,"source=a,b",target=/x"#).unwrap();
        assert_eq!(m.source.as_deref(), Some("a,b"));
    }

    #[test]
    fn errors_are_buildkits() {
        assert_eq!(
            parse("type=volume,target=/x").unwrap_err(),
            r#"unsupported mount type "volume""#
        );
        assert_eq!(
            parse("type=cahce,target=/x").unwrap_err(),
            r#"unsupported mount type "cahce" (did you mean cache?)"#
        );
        assert_eq!(
            parse("target=/x,foo=bar").unwrap_err(),
            "unexpected key 'foo' in 'foo=bar'"
        );
        assert_eq!(
            parse("target=/x,targte=/y").unwrap_err(),
            "unexpected key 'targte' in 'targte=/y' (did you mean target?)"
        );
        assert_eq!(
            parse("target=/x,bogus").unwrap_err(),
            "invalid field 'bogus' must be a key=value pair"
        );
        assert_eq!(
            parse("target=/x,required").unwrap_err(),
            "unexpected key 'required' for mount type 'bind'"
        );
        assert_eq!(
            parse("target=/x,size=1m").unwrap_err(),
            "unexpected key 'size' for mount type 'bind'"
        );
        assert_eq!(
            parse("target=/x,mode=0644").unwrap_err(),
            r#"mode not allowed for "bind" type mounts"#
        );
        assert_eq!(
            parse("type=cache,target=/x,mode=9").unwrap_err(),
            "invalid value 9 for mode"
        );
        assert_eq!(
            parse("type=cache,target=/x,uid=me").unwrap_err(),
            "invalid value me for uid"
        );
        assert_eq!(
            parse("type=cache,target=/x,sharing=all").unwrap_err(),
            r#"unsupported sharing value "all""#
        );
        assert_eq!(
            parse("type=tmpfs,target=/x,sharing=locked").unwrap_err(),
            "invalid cache sharing set for tmpfs mount"
        );
        assert_eq!(
            parse("type=secret,from=x,id=a").unwrap_err(),
            "secret mount should not have a from"
        );
        assert_eq!(
            parse("type=secret").unwrap_err(),
            "invalid secret mount. one of source, target required"
        );
        assert_eq!(
            parse("type=secret,src=a,id=b").unwrap_err(),
            "both source and id can't be set"
        );
        assert_eq!(
            parse("type=cache").unwrap_err(),
            "mount type cache requires a target"
        );
        assert_eq!(
            parse("target=/x,ro=maybe").unwrap_err(),
            "invalid value for ro: maybe"
        );
        assert_eq!(
            parse("target=/x,from=$STAGE").unwrap_err(),
            "'from' doesn't support variable expansion, define alias stage instead"
        );
    }

    #[test]
    fn variables_wait_for_expansion() {
        // At typing time a `$` value is skipped, so the missing type check is deferred.
        let m = parse("type=cache,target=$DIR,id=x").unwrap();
        assert_eq!(m.target, None);
        let m = parse("type=cache,target=/c,id=$ID").unwrap();
        assert_eq!(m.id, None);
        let mut expand = |v: &str| Ok::<_, String>(v.replace("$ID", "pip"));
        let m = parse_mount("type=cache,target=/c,id=$ID", Some(&mut expand)).unwrap();
        assert_eq!(m.id.as_deref(), Some("pip"));
    }
}

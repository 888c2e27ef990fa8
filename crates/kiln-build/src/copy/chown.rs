//! `--chown=user[:group]`, resolved against the image's `/etc/passwd` and
//! `/etc/group` text.
//!
//! Hand-written: the two file formats are a few colon-separated fields, and a
//! crate for them would read the host's files rather than the image's.
//!
//! Rules follow BuildKit's file backend: a numeric user without a group uses
//! the same number as gid; a user name without a group uses that user's
//! primary gid from passwd; `root`, as user or group, is id 0 whatever the
//! files say or whether they exist (so `USER root` works in `FROM scratch`).
//! Unlike BuildKit, any other name missing from the files is an error rather
//! than a silent 0.

/// Why an owner could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChownError {
    /// The value is not `user[:group]`.
    #[error("invalid --chown value {value:?}")]
    Malformed {
        /// The value as written.
        value: String,
    },
    /// The user name is not in the image's /etc/passwd.
    #[error("--chown: user {name:?} not found in the image's /etc/passwd")]
    UnknownUser {
        /// The user name.
        name: String,
    },
    /// The group name is not in the image's /etc/group.
    #[error("--chown: group {name:?} not found in the image's /etc/group")]
    UnknownGroup {
        /// The group name.
        name: String,
    },
}

/// A resolved owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

impl Owner {
    /// The root owner, 0:0.
    pub const ROOT: Owner = Owner { uid: 0, gid: 0 };

    /// Resolves `spec` (`user`, `user:group`, names or ids). `passwd` and
    /// `group` are the image's file contents, `None` when the image lacks them.
    pub fn resolve(
        spec: &str,
        passwd: Option<&str>,
        group: Option<&str>,
    ) -> Result<Owner, ChownError> {
        let malformed = || ChownError::Malformed {
            value: spec.to_string(),
        };
        let (user, grp) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        if user.is_empty() || grp.is_some_and(|g| g.is_empty() || g.contains(':')) {
            return Err(malformed());
        }
        let (uid, primary_gid) = match numeric_id(user) {
            Ok(id) => (id, id),
            Err(_) => lookup(passwd, user, 2, 3).ok_or_else(|| ChownError::UnknownUser {
                name: user.to_string(),
            })?,
        };
        let gid = match grp {
            None => primary_gid,
            Some(g) => match numeric_id(g) {
                Ok(id) => id,
                Err(_) => {
                    lookup(group, g, 2, 2)
                        .ok_or_else(|| ChownError::UnknownGroup {
                            name: g.to_string(),
                        })?
                        .0
                }
            },
        };
        Ok(Owner { uid, gid })
    }
}

/// The id a user or group names without a database lookup: a number, or
/// `root` (BuildKit reads `root` as 0 before consulting any file).
fn numeric_id(name: &str) -> Result<u32, std::num::ParseIntError> {
    if name == "root" {
        return Ok(0);
    }
    name.parse::<u32>()
}

/// Finds `name` in a colon-separated database; returns the numeric fields at
/// `a` and `b`. Malformed lines are skipped, as libc does.
fn lookup(db: Option<&str>, name: &str, a: usize, b: usize) -> Option<(u32, u32)> {
    db?.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.first() != Some(&name) || fields.len() <= a.max(b) {
            return None;
        }
        Some((
            fields[a].trim().parse().ok()?,
            fields[b].trim().parse().ok()?,
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/sh\nbroken line\napp:x:1000:1001::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:app\napp:x:1001:\n";

    fn r(spec: &str) -> Result<Owner, ChownError> {
        Owner::resolve(spec, Some(PASSWD), Some(GROUP))
    }

    #[test]
    fn numeric_and_named() {
        assert_eq!(r("42").unwrap(), Owner { uid: 42, gid: 42 });
        assert_eq!(r("42:7").unwrap(), Owner { uid: 42, gid: 7 });
        assert_eq!(
            r("app").unwrap(),
            Owner {
                uid: 1000,
                gid: 1001
            }
        );
        assert_eq!(r("app:staff").unwrap(), Owner { uid: 1000, gid: 50 });
        assert_eq!(r("10:staff").unwrap(), Owner { uid: 10, gid: 50 });
        assert_eq!(r("root:0").unwrap(), Owner::ROOT);
    }

    #[test]
    fn unknown_names_and_bad_values() {
        assert_eq!(
            r("nobody"),
            Err(ChownError::UnknownUser {
                name: "nobody".into()
            })
        );
        assert_eq!(
            r("app:wheel"),
            Err(ChownError::UnknownGroup {
                name: "wheel".into()
            })
        );
        assert!(matches!(r(""), Err(ChownError::Malformed { .. })));
        assert!(matches!(r("app:"), Err(ChownError::Malformed { .. })));
        assert!(matches!(r("a:b:c"), Err(ChownError::Malformed { .. })));
        assert!(matches!(
            Owner::resolve("app", None, None),
            Err(ChownError::UnknownUser { .. })
        ));
    }

    #[test]
    fn root_is_zero_without_or_despite_the_files() {
        for spec in ["root", "root:root", "0:root"] {
            assert_eq!(Owner::resolve(spec, None, None), Ok(Owner::ROOT), "{spec}");
        }
        // BuildKit does not look `root` up: an odd passwd does not move it.
        let odd = "root:x:5:6::/root:/bin/sh\n";
        assert_eq!(Owner::resolve("root", Some(odd), None), Ok(Owner::ROOT));
        assert_eq!(
            Owner::resolve("7:root", None, None),
            Ok(Owner { uid: 7, gid: 0 })
        );
    }
}

//! `WWW-Authenticate` challenges (RFC 7235): `Bearer realm=…,service=…,scope=…`
//! and `Basic realm=…`.
//!
//! Hand-written: the grammar is a few lines, and the HTTP crates in our tree
//! do not parse auth-params.

use std::collections::BTreeMap;

/// What a registry asked for in a 401 answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Challenge {
    /// Get a token from `realm` and send it as `Bearer`.
    Bearer {
        /// The token server URL.
        realm: String,
        /// The `service` parameter to pass to the token server.
        service: Option<String>,
        /// The scope the registry said it needs, if it said.
        scope: Option<String>,
    },
    /// Send username and password as `Basic`.
    Basic {
        /// The realm, for messages.
        realm: Option<String>,
    },
}

impl Challenge {
    /// Parses the challenges in one or more `WWW-Authenticate` values and
    /// picks the one to answer: Bearer over Basic. `None` when none is
    /// usable (unknown scheme, or Bearer without realm).
    pub fn pick<'a>(headers: impl IntoIterator<Item = &'a str>) -> Option<Challenge> {
        let mut basic = None;
        for value in headers {
            for (scheme, params) in parse(value) {
                match scheme.to_ascii_lowercase().as_str() {
                    "bearer" => {
                        if let Some(realm) = params.get("realm") {
                            return Some(Challenge::Bearer {
                                realm: realm.clone(),
                                service: params.get("service").cloned(),
                                scope: params.get("scope").cloned(),
                            });
                        }
                    }
                    "basic" => {
                        basic = Some(Challenge::Basic {
                            realm: params.get("realm").cloned(),
                        })
                    }
                    _ => {}
                }
            }
        }
        basic
    }
}

/// The `error` and `error_description` of a Bearer challenge (RFC 6750),
/// e.g. `invalid_token` when the registry refused the token it was sent.
pub(crate) fn bearer_error<'a>(
    headers: impl IntoIterator<Item = &'a str>,
) -> Option<(String, Option<String>)> {
    headers
        .into_iter()
        .flat_map(parse)
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .find_map(|(_, mut params)| {
            let error = params.remove("error")?;
            Some((error, params.remove("error_description")))
        })
}

/// Splits a header value into (scheme, params) challenges. Parameter names
/// are lowercased; quoted values have their backslash escapes removed.
pub(crate) fn parse(value: &str) -> Vec<(String, BTreeMap<String, String>)> {
    let mut out: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    let mut rest = value.trim();
    while !rest.is_empty() {
        rest = rest.trim_start_matches([' ', ',']);
        let token_end = rest.find([' ', ',', '=']).unwrap_or(rest.len());
        let token = &rest[..token_end];
        let after = rest[token_end..].trim_start_matches(' ');
        if token.is_empty() {
            break;
        }
        if let Some(v) = after.strip_prefix('=') {
            // An auth-param of the current challenge.
            let (val, remaining) = read_value(v.trim_start());
            if let Some((_, params)) = out.last_mut() {
                params.insert(token.to_ascii_lowercase(), val);
            }
            rest = remaining;
        } else {
            out.push((token.to_string(), BTreeMap::new()));
            rest = after;
        }
    }
    out
}

/// Reads a quoted-string or a token; returns it and what follows.
fn read_value(s: &str) -> (String, &str) {
    if let Some(body) = s.strip_prefix('"') {
        let mut val = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        val.push(n);
                    }
                }
                '"' => return (val, &body[i + 1..]),
                c => val.push(c),
            }
        }
        (val, "")
    } else {
        let end = s.find(',').unwrap_or(s.len());
        (s[..end].trim().to_string(), &s[end..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_bearer() {
        let c = Challenge::pick([
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push""#,
        ]);
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:samalba/my-app:pull,push".into()),
            })
        );
    }

    #[test]
    fn bearer_errors() {
        let v = r#"Bearer realm="https://auth.example/token",service="r",error="invalid_token",error_description="token expired""#;
        assert_eq!(
            bearer_error([v]),
            Some(("invalid_token".into(), Some("token expired".into())))
        );
        assert_eq!(
            bearer_error(["Basic realm=x, Bearer realm=y,error=insufficient_scope"]),
            Some(("insufficient_scope".into(), None))
        );
        assert_eq!(bearer_error([r#"Bearer realm="https://a/t""#]), None);
        assert_eq!(bearer_error([r#"Basic error="invalid_token""#]), None);
    }

    #[test]
    fn basic_unquoted_escaped_and_mixed() {
        assert_eq!(
            Challenge::pick([r#"Basic realm="Registry Realm""#]),
            Some(Challenge::Basic {
                realm: Some("Registry Realm".into())
            })
        );
        assert_eq!(
            Challenge::pick(["basic"]),
            Some(Challenge::Basic { realm: None })
        );
        assert_eq!(
            Challenge::pick([r#"Bearer REALM=https://t.example/token , Service = "a\"b""#]),
            Some(Challenge::Bearer {
                realm: "https://t.example/token".into(),
                service: Some("a\"b".into()),
                scope: None
            })
        );
        // Two challenges in one value, and Bearer preferred across values.
        let both = r#"Basic realm="x", Bearer realm="https://r/t",service="s""#;
        assert!(matches!(
            Challenge::pick([both]),
            Some(Challenge::Bearer { .. })
        ));
        assert!(matches!(
            Challenge::pick(["Basic realm=x", r#"Bearer realm="https://r""#]),
            Some(Challenge::Bearer { .. })
        ));
        assert_eq!(
            Challenge::pick(["Negotiate abc", "Bearer service=x", ""]),
            None
        );
    }
}

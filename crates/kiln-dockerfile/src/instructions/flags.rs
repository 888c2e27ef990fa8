//! Instruction flags (`--from=x`, `--link`), with BuildKit's BFlags rules:
//! a bool flag takes `--x`, `--x=true` or `--x=false`; a string flag needs
//! `=value`; a list flag may repeat; anything an instruction does not declare
//! is `unknown flag: x`; a non-list flag given twice is an error.
//!
//! Hand-written rather than a CLI crate: these are Dockerfile flags with
//! BuildKit's exact acceptance rules and messages, not process arguments.

use std::collections::BTreeMap;

use super::suggest::with_suggestion;

/// How a flag takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagKind {
    /// `--x`, `--x=true`, `--x=false`.
    Bool,
    /// `--x=value`, once.
    String,
    /// `--x=value`, any number of times.
    List,
}

/// The flags an instruction declares.
pub(crate) type FlagSpecs = &'static [(&'static str, FlagKind)];

/// Flag values after a successful parse; flags not given are absent.
#[derive(Debug, Default)]
pub(crate) struct ParsedFlags {
    bools: BTreeMap<&'static str, bool>,
    strings: BTreeMap<&'static str, String>,
    lists: BTreeMap<&'static str, Vec<String>>,
}

impl ParsedFlags {
    /// A bool flag's value; false when not given.
    pub(crate) fn bool(&self, name: &str) -> bool {
        self.bools.get(name).copied().unwrap_or(false)
    }

    /// A string flag's value, when given.
    pub(crate) fn string(&self, name: &str) -> Option<String> {
        self.strings.get(name).cloned()
    }

    /// A list flag's values in order (empty when not given).
    pub(crate) fn list(&self, name: &str) -> Vec<String> {
        self.lists.get(name).cloned().unwrap_or_default()
    }
}

/// Parse `raw` flags (as the parser kept them, `--name[=value]`) against `specs`.
///
/// The error is the message only; the caller attaches the line.
pub(crate) fn parse_flags(raw: &[String], specs: FlagSpecs) -> Result<ParsedFlags, String> {
    let mut parsed = ParsedFlags::default();
    let mut seen: Vec<&str> = Vec::new();
    for arg in raw {
        let Some(body) = arg.strip_prefix("--") else {
            return Err(format!("arg should start with -- : {arg}"));
        };
        if body.is_empty() {
            // A bare `--` ends the flags.
            break;
        }
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let Some(&(spec_name, kind)) = specs.iter().find(|(n, _)| *n == name) else {
            let names: Vec<&str> = specs.iter().map(|(n, _)| *n).collect();
            return Err(with_suggestion(
                format!("unknown flag: {name}"),
                name,
                &names,
                true,
            ));
        };
        if kind != FlagKind::List && seen.contains(&spec_name) {
            return Err(format!("duplicate flag specified: {name}"));
        }
        seen.push(spec_name);
        match kind {
            FlagKind::Bool => {
                let v = match value.map(str::to_ascii_lowercase).as_deref() {
                    None => true,
                    Some("") => return Err(format!("missing a value on flag: {name}")),
                    Some("true") => true,
                    Some("false") => false,
                    Some(_) => {
                        return Err(format!(
                            "expecting boolean value for flag {name}, not: {}",
                            value.unwrap_or_default()
                        ))
                    }
                };
                parsed.bools.insert(spec_name, v);
            }
            FlagKind::String => {
                let v = value.ok_or_else(|| format!("missing a value on flag: {name}"))?;
                parsed.strings.insert(spec_name, v.to_string());
            }
            FlagKind::List => {
                let v = value.ok_or_else(|| format!("missing a value on flag: {name}"))?;
                parsed
                    .lists
                    .entry(spec_name)
                    .or_default()
                    .push(v.to_string());
            }
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: FlagSpecs = &[
        ("link", FlagKind::Bool),
        ("from", FlagKind::String),
        ("exclude", FlagKind::List),
    ];

    fn raw(flags: &[&str]) -> Vec<String> {
        flags.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn bool_forms() {
        assert!(parse_flags(&raw(&["--link"]), SPECS).unwrap().bool("link"));
        assert!(parse_flags(&raw(&["--link=TRUE"]), SPECS)
            .unwrap()
            .bool("link"));
        assert!(!parse_flags(&raw(&["--link=false"]), SPECS)
            .unwrap()
            .bool("link"));
        assert!(!parse_flags(&raw(&[]), SPECS).unwrap().bool("link"));
        assert_eq!(
            parse_flags(&raw(&["--link=yes"]), SPECS).unwrap_err(),
            "expecting boolean value for flag link, not: yes"
        );
        assert_eq!(
            parse_flags(&raw(&["--link="]), SPECS).unwrap_err(),
            "missing a value on flag: link"
        );
    }

    #[test]
    fn string_needs_value_and_may_be_empty() {
        assert_eq!(
            parse_flags(&raw(&["--from=a"]), SPECS)
                .unwrap()
                .string("from")
                .as_deref(),
            Some("a")
        );
        assert_eq!(
            parse_flags(&raw(&["--from="]), SPECS)
                .unwrap()
                .string("from")
                .as_deref(),
            Some("")
        );
        assert_eq!(
            parse_flags(&raw(&["--from"]), SPECS).unwrap_err(),
            "missing a value on flag: from"
        );
    }

    #[test]
    fn lists_repeat_others_do_not() {
        let p = parse_flags(&raw(&["--exclude=a", "--exclude=b"]), SPECS).unwrap();
        assert_eq!(p.list("exclude"), vec!["a", "b"]);
        assert_eq!(
            parse_flags(&raw(&["--from=a", "--from=b"]), SPECS).unwrap_err(),
            "duplicate flag specified: from"
        );
    }

    #[test]
    fn unknown_and_malformed() {
        assert_eq!(
            parse_flags(&raw(&["--chown=1"]), SPECS).unwrap_err(),
            "unknown flag: chown"
        );
        assert_eq!(
            parse_flags(&raw(&["--lnk"]), SPECS).unwrap_err(),
            "unknown flag: lnk (did you mean link?)"
        );
        assert_eq!(
            parse_flags(&raw(&["-x"]), SPECS).unwrap_err(),
            "arg should start with -- : -x"
        );
    }

    #[test]
    fn double_dash_ends_flags() {
        let p = parse_flags(&raw(&["--link", "--", "--bogus"]), SPECS).unwrap();
        assert!(p.bool("link"));
    }
}

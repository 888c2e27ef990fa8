//! The global scope: meta args, platform args, build args.

use std::collections::{BTreeMap, BTreeSet};

use crate::instructions::{Command, FrontendError, Instruction};
use crate::shell::{EnvLookup, Lexer};

/// The build and target platforms, from which the automatic platform ARGs
/// are derived (`linux/arm64/v8` gives OS `linux`, ARCH `arm64`, VARIANT `v8`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformArgs {
    /// The platform kiln runs on (`BUILDPLATFORM`).
    pub build: String,
    /// The platform the image is for (`TARGETPLATFORM`).
    pub target: String,
}

impl PlatformArgs {
    /// Build on `build`, for `target` (both `os/arch[/variant]`).
    pub fn new(build: impl Into<String>, target: impl Into<String>) -> Self {
        PlatformArgs {
            build: build.into(),
            target: target.into(),
        }
    }

    /// The eight automatic ARGs with their values.
    pub fn args(&self) -> Vec<(String, String)> {
        let mut out = Vec::with_capacity(8);
        for (prefix, platform) in [("BUILD", &self.build), ("TARGET", &self.target)] {
            let mut parts = platform.splitn(3, '/');
            let os = parts.next().unwrap_or_default();
            let arch = parts.next().unwrap_or_default();
            let variant = parts.next().unwrap_or_default();
            out.push((format!("{prefix}PLATFORM"), platform.clone()));
            out.push((format!("{prefix}OS"), os.to_string()));
            out.push((format!("{prefix}ARCH"), arch.to_string()));
            out.push((format!("{prefix}VARIANT"), variant.to_string()));
        }
        out
    }
}

impl Default for PlatformArgs {
    /// `linux/<this machine's arch>` for both.
    fn default() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        let p = format!("linux/{arch}");
        PlatformArgs::new(p.clone(), p)
    }
}

/// The scope before the first FROM: meta args (global ARGs), automatic
/// platform ARGs and the build args. Built once per Dockerfile.
#[derive(Debug, Clone)]
pub struct GlobalScope {
    lexer: Lexer,
    build_args: BTreeMap<String, String>,
    /// Platform ARGs, with build args already applied over them.
    platform: BTreeMap<String, String>,
    /// Global ARGs in declaration order with their value (`None` = unset).
    meta: Vec<(String, Option<String>)>,
}

impl GlobalScope {
    /// An empty global scope for a Dockerfile whose escape character is
    /// `escape`. A build arg named like a platform ARG overrides it.
    pub fn new(
        escape: char,
        build_args: &BTreeMap<String, String>,
        platform: &PlatformArgs,
    ) -> Self {
        let platform = platform
            .args()
            .into_iter()
            .map(|(k, v)| {
                let v = build_args.get(&k).cloned().unwrap_or(v);
                (k, v)
            })
            .collect();
        GlobalScope {
            lexer: Lexer::new(escape),
            build_args: build_args.clone(),
            platform,
            meta: Vec::new(),
        }
    }

    /// Apply one global `ARG` (an instruction before the first FROM).
    /// Each name takes its build arg, else its default expanded in the scope
    /// so far, else stays unset.
    pub fn declare(&mut self, instruction: &Instruction) -> Result<(), FrontendError> {
        let Command::Arg(arg) = &instruction.command else {
            return Err(FrontendError::new(
                instruction.line(),
                format!(
                    "{} instruction is not allowed before the first FROM",
                    instruction.keyword()
                ),
            ));
        };
        for decl in &arg.args {
            let value = match (self.build_args.get(&decl.name), &decl.default) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(default)) => Some(self.expand(default, instruction.line())?.0),
                (None, None) => None,
            };
            self.meta.retain(|(n, _)| n != &decl.name);
            self.meta.push((decl.name.clone(), value));
        }
        Ok(())
    }

    /// Expand `word` (a FROM image or platform, a `COPY --from`) with the
    /// meta args; also returns the names it used that were set.
    pub fn expand(
        &self,
        word: &str,
        line: usize,
    ) -> Result<(String, BTreeSet<String>), FrontendError> {
        let e = self
            .lexer
            .expand(word, self)
            .map_err(|e| FrontendError::new(line, e.to_string()))?;
        Ok((e.word, e.matched))
    }

    /// The meta args in declaration order, with their values.
    pub fn meta_args(&self) -> &[(String, Option<String>)] {
        &self.meta
    }

    /// True when a global ARG of that name was declared.
    pub fn declares(&self, name: &str) -> bool {
        self.meta.iter().any(|(n, _)| n == name)
    }

    /// The value a stage gets by re-declaring `ARG name` without default:
    /// the global ARG's value, else the platform ARG's.
    pub fn inherited(&self, name: &str) -> Option<String> {
        match self.meta.iter().find(|(n, _)| n == name) {
            Some((_, Some(v))) => Some(v.clone()),
            _ => self.platform.get(name).cloned(),
        }
    }

    /// The build args given on the command line.
    pub fn build_args(&self) -> &BTreeMap<String, String> {
        &self.build_args
    }

    /// The expansion lexer (carries the escape character).
    pub fn lexer(&self) -> Lexer {
        self.lexer
    }
}

impl EnvLookup for GlobalScope {
    fn get(&self, name: &str) -> Option<String> {
        self.inherited(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::Span;
    use crate::instructions::{ArgCommand, ArgDecl};

    fn arg(line: usize, decls: &[(&str, Option<&str>)]) -> Instruction {
        Instruction {
            span: Span {
                start: line,
                end: line,
            },
            original: String::new(),
            json: false,
            command: Command::Arg(ArgCommand {
                args: decls
                    .iter()
                    .map(|(n, d)| ArgDecl {
                        name: n.to_string(),
                        default: d.map(str::to_string),
                    })
                    .collect(),
            }),
        }
    }

    #[test]
    fn platform_args_split() {
        let p = PlatformArgs::new("linux/amd64", "linux/arm64/v8").args();
        let get = |k: &str| p.iter().find(|(n, _)| n == k).unwrap().1.clone();
        assert_eq!(get("TARGETARCH"), "arm64");
        assert_eq!(get("TARGETVARIANT"), "v8");
        assert_eq!(get("BUILDOS"), "linux");
        assert_eq!(get("BUILDVARIANT"), "");
    }

    #[test]
    fn meta_args_chain_and_build_args_win() {
        let build_args = BTreeMap::from([("TAG".to_string(), "edge".to_string())]);
        let mut g = GlobalScope::new(
            '\\',
            &build_args,
            &PlatformArgs::new("linux/amd64", "linux/amd64"),
        );
        g.declare(&arg(
            1,
            &[
                ("REG", Some("docker.io")),
                ("TAG", Some("1.0")),
                ("NONE", None),
            ],
        ))
        .unwrap();
        g.declare(&arg(2, &[("IMG", Some("${REG}/lib/alpine:$TAG"))]))
            .unwrap();
        assert_eq!(
            g.inherited("IMG").as_deref(),
            Some("docker.io/lib/alpine:edge")
        );
        assert_eq!(g.inherited("NONE"), None);
        assert!(g.declares("NONE"));
        let (word, used) = g.expand("$IMG-$TARGETARCH", 3).unwrap();
        assert_eq!(word, "docker.io/lib/alpine:edge-amd64");
        assert_eq!(
            used,
            BTreeSet::from(["IMG".to_string(), "TARGETARCH".to_string()])
        );
    }

    #[test]
    fn build_arg_overrides_platform_arg() {
        let build_args = BTreeMap::from([("TARGETARCH".to_string(), "riscv64".to_string())]);
        let g = GlobalScope::new(
            '\\',
            &build_args,
            &PlatformArgs::new("linux/amd64", "linux/amd64"),
        );
        assert_eq!(g.inherited("TARGETARCH").as_deref(), Some("riscv64"));
    }

    #[test]
    fn non_arg_before_from_is_an_error() {
        let mut g = GlobalScope::new('\\', &BTreeMap::new(), &PlatformArgs::default());
        let mut i = arg(4, &[]);
        i.command = Command::Workdir(crate::instructions::WorkdirCommand { path: "/x".into() });
        assert_eq!(
            g.declare(&i).unwrap_err().to_string(),
            "line 4: WORKDIR instruction is not allowed before the first FROM"
        );
    }
}

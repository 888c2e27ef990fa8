//! One stage's variables while it is built, and per-instruction expansion.

use std::collections::{BTreeMap, BTreeSet};

use super::{is_proxy_arg, GlobalScope};
use crate::instructions::*;
use crate::shell::{EnvLookup, Lexer};

/// An instruction after [`StageEnv::apply`]: every word the instruction
/// expands is expanded, and the build args it used are listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded {
    /// The same instruction with expanded words. Differences from the typed
    /// form: ARG defaults hold the resolved value (`None` = unset); WORKDIR
    /// holds the absolute, cleaned directory; EXPOSE holds one port per
    /// entry; RUN `mounts` are re-read from the expanded specs; COPY/ADD
    /// heredoc bodies are expanded when their delimiter was unquoted.
    pub instruction: Instruction,
    /// The stage ARGs (name → value) this step depends on, for its cache
    /// key: for RUN every ARG in scope (they are in its environment), for
    /// other instructions the ARGs its words referenced. Proxy ARGs, ARGs
    /// shadowed by ENV, and build args the stage never declared are never
    /// listed, so an unused `--build-arg` changes no key.
    pub used_args: BTreeMap<String, String>,
}

/// The variables of one stage during a build, advanced instruction by
/// instruction. Created when the base image's config is known:
///
/// ```
/// use std::collections::BTreeMap;
/// use kiln_dockerfile::scope::{GlobalScope, PlatformArgs, StageEnv};
///
/// let global = GlobalScope::new('\\', &BTreeMap::new(), &PlatformArgs::default());
/// let env = StageEnv::new(&global, vec![("PATH".into(), "/usr/bin".into())]);
/// assert_eq!(env.image_env()[0].1, "/usr/bin");
/// assert_eq!(env.workdir(), "/");
/// ```
#[derive(Debug, Clone)]
pub struct StageEnv {
    lexer: Lexer,
    global: GlobalScope,
    /// The image config `Env`: base image env, then ENV instructions.
    env: Vec<(String, String)>,
    /// ARGs declared in this stage, in order, with their value.
    args: Vec<(String, Option<String>)>,
    /// Names an ARG with a value declared after an ENV (or base image
    /// variable) of the same name: until the next ENV of that name the
    /// ARG's value is what expansion and RUN see, as in BuildKit, which
    /// adds ARGs to the build environment. The image's `Env` keeps the ENV.
    arg_over_env: BTreeSet<String>,
    workdir: String,
}

impl StageEnv {
    /// A stage starting from a base image whose config has `base_image_env`
    /// (empty for `scratch`). The working directory starts at `/`; see
    /// [`StageEnv::with_workdir`].
    pub fn new(global: &GlobalScope, base_image_env: Vec<(String, String)>) -> Self {
        StageEnv {
            lexer: global.lexer(),
            global: global.clone(),
            env: base_image_env,
            args: Vec::new(),
            arg_over_env: BTreeSet::new(),
            workdir: "/".to_string(),
        }
    }

    /// Start from the base image's `WorkingDir` (relative WORKDIRs resolve
    /// against it); an empty value means `/`.
    pub fn with_workdir(mut self, dir: &str) -> Self {
        self.workdir = if dir.is_empty() {
            "/".into()
        } else {
            clean_path(&format!("/{dir}"))
        };
        self
    }

    /// The image config `Env` so far (base image env and ENV; never ARGs).
    pub fn image_env(&self) -> &[(String, String)] {
        &self.env
    }

    /// The working directory so far (absolute).
    pub fn workdir(&self) -> &str {
        &self.workdir
    }

    /// ARGs declared in this stage that have a value and are not shadowed
    /// by ENV, proxy ARGs excluded: what a RUN's cache key must include.
    pub fn args_in_scope(&self) -> BTreeMap<String, String> {
        self.args
            .iter()
            .filter(|(n, _)| {
                !is_proxy_arg(n)
                    && (self.arg_over_env.contains(n) || !self.env.iter().any(|(e, _)| e == n))
            })
            .filter_map(|(n, v)| v.clone().map(|v| (n.clone(), v)))
            .collect()
    }

    /// The environment a RUN sees: image env and ENV, then the stage's ARGs
    /// (an ENV of the same name wins), then proxy build args that were not
    /// declared (they reach RUN without an ARG).
    pub fn run_env(&self) -> Vec<(String, String)> {
        let mut out = self.env.clone();
        for (name, value) in &self.args {
            if let Some(v) = value {
                match out.iter_mut().find(|(n, _)| n == name) {
                    Some(slot) if self.arg_over_env.contains(name) => slot.1 = v.clone(),
                    Some(_) => {}
                    None => out.push((name.clone(), v.clone())),
                }
            }
        }
        for (name, value) in self.global.build_args() {
            if is_proxy_arg(name) && !out.iter().any(|(n, _)| n == name) {
                out.push((name.clone(), value.clone()));
            }
        }
        out
    }

    /// Expand `instruction` in the current scope, then apply its effect on
    /// the scope (ENV sets variables, ARG declares, WORKDIR moves).
    ///
    /// # Errors
    /// Expansion errors (`${x?required}`, unclosed quotes) and checks that
    /// need the expanded value (EXPOSE ports, USER, STOPSIGNAL, `--chmod`,
    /// `--checksum`, mount specs, empty VOLUME), each with the line.
    pub fn apply(&mut self, instruction: &Instruction) -> Result<Expanded, FrontendError> {
        let line = instruction.line();
        let mut x = Expander {
            stage: self,
            line,
            used: BTreeSet::new(),
        };
        let command = match &instruction.command {
            Command::From(f) => Command::From(FromCommand {
                image: x.global(&f.image)?,
                stage_name: f.stage_name.clone(),
                platform: f.platform.as_deref().map(|p| x.global(p)).transpose()?,
            }),
            Command::Run(r) => Command::Run(x.run(r)?),
            Command::Env(e) => Command::Env(EnvCommand {
                vars: x.key_values(&e.vars)?,
            }),
            Command::Label(l) => Command::Label(LabelCommand {
                labels: x.key_values(&l.labels)?,
            }),
            Command::Expose(e) => Command::Expose(x.expose(e)?),
            Command::Add(a) => Command::Add(x.add(a)?),
            Command::Copy(c) => Command::Copy(x.copy(c)?),
            Command::Volume(v) => Command::Volume(x.volume(v)?),
            Command::User(u) => {
                let user = x.word(&u.user)?;
                validate_user(&user).map_err(|m| FrontendError::new(line, m))?;
                Command::User(UserCommand { user })
            }
            Command::Workdir(w) => {
                let dir = x.word(&w.path)?;
                let base = &x.stage.workdir;
                let path = if dir.starts_with('/') {
                    clean_path(&dir)
                } else {
                    clean_path(&format!("{base}/{dir}"))
                };
                Command::Workdir(WorkdirCommand { path })
            }
            Command::StopSignal(s) => {
                let signal = x.word(&s.signal)?;
                validate_stop_signal(&signal).map_err(|m| FrontendError::new(line, m))?;
                Command::StopSignal(StopSignalCommand { signal })
            }
            Command::Arg(a) => Command::Arg(x.arg(a)?),
            other => other.clone(),
        };
        let used = std::mem::take(&mut x.used);
        let mut used_args = self.pick_args(&used);
        if matches!(command, Command::Run(_)) {
            used_args.extend(self.args_in_scope());
        }
        self.commit(&command);
        Ok(Expanded {
            instruction: Instruction {
                command,
                ..instruction.clone()
            },
            used_args,
        })
    }

    /// The stage ARGs among `names` that expansion took from ARGs.
    fn pick_args(&self, names: &BTreeSet<String>) -> BTreeMap<String, String> {
        let in_scope = self.args_in_scope();
        names
            .iter()
            .filter_map(|n| in_scope.get(n).map(|v| (n.clone(), v.clone())))
            .collect()
    }

    /// Record the effect of an expanded instruction on the scope.
    fn commit(&mut self, command: &Command) {
        match command {
            Command::Env(e) => {
                for kv in &e.vars {
                    self.arg_over_env.remove(&kv.key);
                    match self.env.iter_mut().find(|(n, _)| *n == kv.key) {
                        Some(slot) => slot.1 = kv.value.clone(),
                        None => self.env.push((kv.key.clone(), kv.value.clone())),
                    }
                }
            }
            Command::Arg(a) => {
                for decl in &a.args {
                    if decl.default.is_some() && self.env.iter().any(|(n, _)| *n == decl.name) {
                        self.arg_over_env.insert(decl.name.clone());
                    }
                    self.args.retain(|(n, _)| *n != decl.name);
                    self.args.push((decl.name.clone(), decl.default.clone()));
                }
            }
            Command::Workdir(w) => self.workdir = w.path.clone(),
            _ => {}
        }
    }
}

/// What expansion in a stage looks variables up in: ENV first, then ARGs,
/// except for an ARG declared over an ENV.
struct Lookup<'a> {
    env: &'a [(String, String)],
    args: &'a [(String, Option<String>)],
    arg_over_env: &'a BTreeSet<String>,
}

impl EnvLookup for Lookup<'_> {
    fn get(&self, name: &str) -> Option<String> {
        let env = self.env.iter().find(|(n, _)| n == name);
        if let Some((_, v)) = env.filter(|_| !self.arg_over_env.contains(name)) {
            return Some(v.clone());
        }
        self.args
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.clone())
    }
}

/// Expands the words of one instruction, collecting the names used.
struct Expander<'a> {
    stage: &'a StageEnv,
    line: usize,
    used: BTreeSet<String>,
}

impl Expander<'_> {
    fn err(&self, message: impl Into<String>) -> FrontendError {
        FrontendError::new(self.line, message)
    }

    fn lookup(&self) -> Lookup<'_> {
        Lookup {
            env: &self.stage.env,
            args: &self.stage.args,
            arg_over_env: &self.stage.arg_over_env,
        }
    }

    fn expand_with(
        &mut self,
        lexer: Lexer,
        word: &str,
    ) -> Result<crate::shell::Expansion, FrontendError> {
        let e = lexer
            .expand(word, &self.lookup())
            .map_err(|e| self.err(e.to_string()))?;
        self.used.extend(e.matched.iter().cloned());
        Ok(e)
    }

    fn word(&mut self, word: &str) -> Result<String, FrontendError> {
        Ok(self.expand_with(self.stage.lexer, word)?.word)
    }

    fn opt(&mut self, word: &Option<String>) -> Result<Option<String>, FrontendError> {
        word.as_deref().map(|w| self.word(w)).transpose()
    }

    /// A word of the global scope (FROM, `COPY --from`).
    fn global(&mut self, word: &str) -> Result<String, FrontendError> {
        Ok(self.stage.global.expand(word, self.line)?.0)
    }

    fn key_values(&mut self, kvs: &[KeyValue]) -> Result<Vec<KeyValue>, FrontendError> {
        // All pairs see the scope as it was before the instruction (BuildKit).
        kvs.iter()
            .map(|kv| {
                Ok(KeyValue {
                    key: self.word(&kv.key)?,
                    value: self.word(&kv.value)?,
                    legacy: kv.legacy,
                })
            })
            .collect()
    }

    fn run(&mut self, r: &RunCommand) -> Result<RunCommand, FrontendError> {
        let mut mounts = Vec::with_capacity(r.mount_specs.len());
        for spec in &r.mount_specs {
            let mut expand = |v: &str| self.word(v).map_err(|e| e.message);
            mounts.push(parse_mount(spec, Some(&mut expand)).map_err(|m| self.err(m))?);
        }
        Ok(RunCommand {
            mounts,
            ..r.clone()
        })
    }

    fn expose(&mut self, e: &ExposeCommand) -> Result<ExposeCommand, FrontendError> {
        let mut ports = Vec::new();
        for p in &e.ports {
            let words = self.expand_with(self.stage.lexer, p)?.words;
            for w in words {
                validate_port(&w).map_err(|m| self.err(m))?;
                ports.push(w);
            }
        }
        Ok(ExposeCommand { ports })
    }

    fn volume(&mut self, v: &VolumeCommand) -> Result<VolumeCommand, FrontendError> {
        let paths = v
            .paths
            .iter()
            .map(|p| self.word(p))
            .collect::<Result<Vec<_>, _>>()?;
        if paths.iter().any(|p| p.trim().is_empty()) {
            return Err(self.err("VOLUME specified can not be an empty string"));
        }
        Ok(VolumeCommand { paths })
    }

    fn sources(&mut self, sources: &[Source]) -> Result<Vec<Source>, FrontendError> {
        sources
            .iter()
            .map(|s| match s {
                Source::Path(p) => Ok(Source::Path(self.word(p)?)),
                Source::Heredoc(h) if h.expand => {
                    // Heredoc bodies keep their quotes: only variables expand.
                    let lexer = self.stage.lexer.skip_process_quotes(true);
                    let content = self.expand_with(lexer, &h.content)?.word;
                    Ok(Source::Heredoc(crate::ast::Heredoc {
                        content,
                        ..h.clone()
                    }))
                }
                Source::Heredoc(h) => Ok(Source::Heredoc(h.clone())),
            })
            .collect()
    }

    fn chmod(&mut self, chmod: &Option<String>) -> Result<Option<String>, FrontendError> {
        let chmod = self.opt(chmod)?;
        if let Some(m) = &chmod {
            validate_chmod(m).map_err(|e| self.err(e))?;
        }
        Ok(chmod)
    }

    fn add(&mut self, a: &AddCommand) -> Result<AddCommand, FrontendError> {
        let checksum = self.opt(&a.checksum)?;
        if let Some(sum) = &checksum {
            validate_checksum(sum).map_err(|e| self.err(e))?;
        }
        Ok(AddCommand {
            sources: self.sources(&a.sources)?,
            dest: self.word(&a.dest)?,
            chown: self.opt(&a.chown)?,
            chmod: self.chmod(&a.chmod)?,
            checksum,
            exclude: a
                .exclude
                .iter()
                .map(|p| self.word(p))
                .collect::<Result<_, _>>()?,
            ..a.clone()
        })
    }

    fn copy(&mut self, c: &CopyCommand) -> Result<CopyCommand, FrontendError> {
        Ok(CopyCommand {
            sources: self.sources(&c.sources)?,
            dest: self.word(&c.dest)?,
            from: c.from.as_deref().map(|f| self.global(f)).transpose()?,
            chown: self.opt(&c.chown)?,
            chmod: self.chmod(&c.chmod)?,
            exclude: c
                .exclude
                .iter()
                .map(|p| self.word(p))
                .collect::<Result<_, _>>()?,
            ..c.clone()
        })
    }

    /// Resolve each ARG: its name is expanded first (`ARG ${name}=x`, as
    /// BuildKit does), then the value is the build arg, else the expanded
    /// default, else the global (or platform) value when the name is
    /// re-declared bare, else unset.
    fn arg(&mut self, a: &ArgCommand) -> Result<ArgCommand, FrontendError> {
        let mut args = Vec::with_capacity(a.args.len());
        for decl in &a.args {
            let name = self.word(&decl.name)?;
            if name.is_empty() {
                return Err(self.err(format!("ARG name {:?} expands to an empty name", decl.name)));
            }
            let value = match (self.stage.global.build_args().get(&name), &decl.default) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(default)) => Some(self.word(default)?),
                (None, None) => self.stage.global.inherited(&name),
            };
            args.push(ArgDecl {
                name,
                default: value,
            });
        }
        Ok(ArgCommand { args })
    }
}

/// Lexically clean an absolute path (Go's `path.Clean`): no `.`, `..`,
/// empty or trailing components.
fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_paths() {
        assert_eq!(clean_path("/a/./b/../c/"), "/a/c");
        assert_eq!(clean_path("/../x"), "/x");
        assert_eq!(clean_path("//"), "/");
    }
}

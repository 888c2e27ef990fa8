//! The one call the build engine and the CLI make: Dockerfile text in,
//! checked stages and build plan out, or every problem found at once.
//!
//! How a build uses it:
//! 1. [`load_with`] the text; on `Err`, print each error as
//!    `error.with_file("Dockerfile")` and stop.
//! 2. Walk `plan.levels`; the stages of one level may run in parallel.
//! 3. For each stage, resolve its [`crate::plan::Base`] (an image reference,
//!    an earlier stage's result, or scratch) to get the base config, then
//!    create `StageEnv::new(&dockerfile.global, base_env).with_workdir(..)`.
//!    Run the base image's ONBUILD triggers first ([`parse_onbuild_trigger`]).
//! 4. For each instruction, `StageEnv::apply` gives the expanded instruction
//!    and `used_args` for the step's cache key; RUN gets `run_env()`.

use std::collections::BTreeMap;

use crate::ast::{Directives, Warning};
use crate::instructions::{parse_instruction, Command, FrontendError, Instruction};
use crate::plan::{self, Plan, Stage, StageSelection};
use crate::scope::{is_platform_arg, is_proxy_arg, GlobalScope, PlatformArgs};

/// Everything [`load_with`] needs besides the text.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// `--target`; the last stage when `None`.
    pub target: Option<String>,
    /// Build and target platforms, for the automatic platform ARGs.
    pub platform: PlatformArgs,
    /// Build only what the target needs (default), or every stage.
    pub selection: StageSelection,
}

/// A checked Dockerfile ready to build.
#[derive(Debug, Clone)]
pub struct Dockerfile {
    /// Parser directives (escape character, syntax, check).
    pub directives: Directives,
    /// The ARGs before the first FROM, typed.
    pub global_args: Vec<Instruction>,
    /// The global scope (meta args, platform args, build args); start each
    /// stage's [`crate::scope::StageEnv`] from it.
    pub global: GlobalScope,
    /// Every stage in file order.
    pub stages: Vec<Stage>,
    /// Target, dependencies, and the stages to build in parallel levels.
    pub plan: Plan,
    /// Non-fatal parser findings.
    pub warnings: Vec<Warning>,
}

impl Dockerfile {
    /// The stage whose result is the image.
    pub fn target(&self) -> &Stage {
        &self.stages[self.plan.target]
    }

    /// Build args that no ARG anywhere declares (and that are not proxy or
    /// platform ARGs): BuildKit warns that these "were not consumed".
    ///
    /// An ARG whose name holds a variable (`ARG ${name}`) declares what the
    /// name expands to; that is worked out here by expanding each stage
    /// without its base image's ENV (unknown before the build), so a name
    /// built only from base image variables is reported as unused.
    pub fn unused_build_args(&self) -> Vec<String> {
        let mut names: std::collections::BTreeSet<String> = self
            .global_args
            .iter()
            .chain(self.stages.iter().flat_map(|s| &s.instructions))
            .filter_map(|i| match &i.command {
                Command::Arg(a) => Some(a.args.iter().map(|d| d.name.clone())),
                _ => None,
            })
            .flatten()
            .collect();
        for stage in &self.stages {
            let mut env = crate::scope::StageEnv::new(&self.global, Vec::new());
            for i in &stage.instructions {
                if let Ok(e) = env.apply(i) {
                    if let Command::Arg(a) = e.instruction.command {
                        names.extend(a.args.into_iter().map(|d| d.name));
                    }
                }
            }
        }
        let declared = |name: &str| names.contains(name);
        self.global
            .build_args()
            .keys()
            .filter(|k| !is_proxy_arg(k) && !is_platform_arg(k) && !declared(k))
            .cloned()
            .collect()
    }
}

/// Type one ONBUILD trigger stored in a base image's config (`RUN make`),
/// to run at the start of a stage built FROM that image.
///
/// # Errors
/// Parse or typing errors; `ONBUILD`, `FROM` and `MAINTAINER` triggers are refused.
pub fn parse_onbuild_trigger(trigger: &str) -> Result<Instruction, FrontendError> {
    let ast = crate::parser::parse(trigger)
        .map_err(|e| FrontendError::new(e.line, e.kind.to_string()))?;
    let [node] = ast.children.as_slice() else {
        return Err(FrontendError::new(
            1,
            format!("ONBUILD trigger must be one instruction: {trigger:?}"),
        ));
    };
    if matches!(node.keyword.as_str(), "onbuild" | "from" | "maintainer") {
        return Err(FrontendError::new(
            1,
            format!(
                "{} isn't allowed as an ONBUILD trigger",
                node.keyword.to_uppercase()
            ),
        ));
    }
    parse_instruction(node)
}

/// Parse, type, scope and plan `text` with default options (platform of
/// this machine, only the stages the target needs).
///
/// ```
/// use std::collections::BTreeMap;
/// use kiln_dockerfile::plan::Base;
///
/// let text = "ARG GO=1.22\nFROM golang:$GO AS build\nRUN go build\n\
///             FROM scratch\nCOPY --from=build /app /app\n";
/// let df = kiln_dockerfile::load(text, &BTreeMap::new(), None).unwrap();
/// assert_eq!(df.stages[0].base, Base::Image("golang:1.22".into()));
/// assert_eq!(df.plan.levels, vec![vec![0], vec![1]]);
///
/// let errors = kiln_dockerfile::load("FROM a\nFROMM b\nCOPY x\n", &BTreeMap::new(), None).unwrap_err();
/// assert_eq!(errors[0].to_string(), "line 2: unknown instruction: FROMM (did you mean from?)");
/// assert_eq!(errors.len(), 2);
/// ```
///
/// # Errors
/// Every independent problem, each with its line, in line order.
pub fn load(
    text: &str,
    build_args: &BTreeMap<String, String>,
    target: Option<&str>,
) -> Result<Dockerfile, Vec<FrontendError>> {
    load_with(
        text,
        &LoadOptions {
            build_args: build_args.clone(),
            target: target.map(str::to_string),
            ..LoadOptions::default()
        },
    )
}

/// [`load`] with every option.
///
/// # Errors
/// As for [`load`].
pub fn load_with(text: &str, options: &LoadOptions) -> Result<Dockerfile, Vec<FrontendError>> {
    let ast = crate::parser::parse(text)
        .map_err(|e| vec![FrontendError::new(e.line, e.kind.to_string())])?;
    let mut errors = Vec::new();
    let mut typed = Vec::with_capacity(ast.children.len());
    for node in &ast.children {
        match parse_instruction(node) {
            Ok(i) => typed.push(i),
            Err(e) => errors.push(e),
        }
    }
    let first_from = typed
        .iter()
        .position(|i| matches!(i.command, Command::From(_)))
        .unwrap_or(typed.len());
    let mut global = GlobalScope::new(
        ast.directives.escape,
        &options.build_args,
        &options.platform,
    );
    for instruction in &typed[..first_from] {
        if let Err(e) = global.declare(instruction) {
            errors.push(e);
        }
    }
    let global_args = typed[..first_from].to_vec();
    let stages = match plan::stages(&typed, &global) {
        Ok(s) => s,
        Err(e) => {
            errors.extend(e);
            Vec::new()
        }
    };
    if stages.is_empty() && errors.is_empty() {
        errors.push(FrontendError::new(
            0,
            "dockerfile contains no stages to build",
        ));
    }
    let plan = if errors.is_empty() {
        plan::plan(
            &stages,
            &global,
            options.target.as_deref(),
            options.selection,
        )
        .map_err(|e| errors.extend(e))
        .ok()
    } else {
        None
    };
    match plan {
        Some(plan) if errors.is_empty() => Ok(Dockerfile {
            directives: ast.directives,
            global_args,
            global,
            stages,
            plan,
            warnings: ast.warnings,
        }),
        _ => {
            errors.sort_by_key(|e| e.line);
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn onbuild_triggers_from_image_config() {
        let i = parse_onbuild_trigger("COPY --from=build /a /b").unwrap();
        assert!(matches!(i.command, Command::Copy(_)));
        assert_eq!(
            parse_onbuild_trigger("FROM alpine").unwrap_err().message,
            "FROM isn't allowed as an ONBUILD trigger"
        );
        assert_eq!(
            parse_onbuild_trigger("BOGUS x").unwrap_err().message,
            "unknown instruction: BOGUS"
        );
        assert!(parse_onbuild_trigger("RUN a\nRUN b").is_err());
    }
}

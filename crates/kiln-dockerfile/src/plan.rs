//! The stage graph: stages with their bases, what each stage needs, which
//! stages the target needs, and an order in levels so that independent
//! stages can be built in parallel. Pure functions on values.
//!
//! Edges come from `FROM <earlier stage>`, `COPY --from=<stage|index>` and
//! `RUN --mount=from=<stage>`. A `--from` that names no stage is an external
//! image. As in BuildKit, FROM sees only earlier stages, a numeric `--from`
//! must name an earlier stage, and a `--from` name may name any stage; a
//! cycle is an error.

use std::collections::{BTreeMap, BTreeSet};

use crate::instructions::{Command, FrontendError, Instruction};
use crate::scope::GlobalScope;

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// An image reference (meta args already expanded).
    Image(String),
    /// The result of an earlier stage, by index.
    Stage(usize),
    /// `FROM scratch`: an empty filesystem.
    Scratch,
}

/// One `FROM ...` section of the Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Position among the stages, from 0.
    pub index: usize,
    /// `AS name`, lowercased.
    pub name: Option<String>,
    /// What the stage starts from.
    pub base: Base,
    /// `--platform` after meta-arg expansion.
    pub platform: Option<String>,
    /// The FROM instruction itself (unexpanded).
    pub from: Instruction,
    /// The instructions after FROM, in order.
    pub instructions: Vec<Instruction>,
}

impl Stage {
    /// The name, or `stage-N` when the stage has none (as BuildKit shows it).
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("stage-{}", self.index))
    }
}

/// What one stage needs besides its own instructions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageDeps {
    /// Stages whose result it uses (base, `COPY --from`, mount `from`).
    pub stages: BTreeSet<usize>,
    /// External images it copies or mounts from (`COPY --from=alpine`).
    pub images: BTreeSet<String>,
}

/// Which stages a build runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StageSelection {
    /// Only the target and what it needs (Kaniko's `--skip-unused-stages`,
    /// BuildKit's behaviour).
    #[default]
    TargetDeps,
    /// Every stage.
    All,
}

/// The build order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The stage whose result is the image.
    pub target: usize,
    /// Per stage (by index), what it depends on.
    pub deps: Vec<StageDeps>,
    /// The stages to build, ascending.
    pub needed: BTreeSet<usize>,
    /// `needed` in levels: every stage's dependencies are in earlier levels,
    /// so the stages of one level can run in parallel. Ascending inside a level.
    pub levels: Vec<Vec<usize>>,
}

/// Group typed instructions into stages. `global` must already hold the
/// meta args (the ARGs before the first FROM), which FROM lines use.
/// Instructions before the first FROM are skipped here.
///
/// # Errors
/// One error per bad FROM: expansion failures, a blank base, a duplicate stage name.
pub fn stages(
    instructions: &[Instruction],
    global: &GlobalScope,
) -> Result<Vec<Stage>, Vec<FrontendError>> {
    let mut stages: Vec<Stage> = Vec::new();
    let mut errors = Vec::new();
    for instruction in instructions {
        let Command::From(from) = &instruction.command else {
            if let Some(stage) = stages.last_mut() {
                stage.instructions.push(instruction.clone());
            }
            continue;
        };
        let line = instruction.line();
        let index = stages.len();
        if let Some(name) = &from.stage_name {
            if stages.iter().any(|s| s.name.as_ref() == Some(name)) {
                errors.push(FrontendError::new(
                    line,
                    format!("duplicate stage name {name:?}"),
                ));
            }
        }
        let base = match global.expand(&from.image, line) {
            Ok((image, _)) if image.is_empty() => {
                errors.push(FrontendError::new(
                    line,
                    format!("base name ({}) should not be blank", from.image),
                ));
                Base::Scratch
            }
            Ok((image, _)) => resolve_base(&image, &stages),
            Err(e) => {
                errors.push(e);
                Base::Scratch
            }
        };
        let platform = match from
            .platform
            .as_deref()
            .map(|p| global.expand(p, line))
            .transpose()
        {
            Ok(p) => p.map(|(p, _)| p),
            Err(e) => {
                errors.push(e);
                None
            }
        };
        stages.push(Stage {
            index,
            name: from.stage_name.clone(),
            base,
            platform,
            from: instruction.clone(),
            instructions: Vec::new(),
        });
    }
    if errors.is_empty() {
        Ok(stages)
    } else {
        Err(errors)
    }
}

/// A FROM word: an earlier stage by name, scratch, or an image.
fn resolve_base(image: &str, earlier: &[Stage]) -> Base {
    let lower = image.to_lowercase();
    if let Some(s) = earlier
        .iter()
        .find(|s| s.name.as_deref() == Some(lower.as_str()))
    {
        return Base::Stage(s.index);
    }
    if image == "scratch" {
        return Base::Scratch;
    }
    Base::Image(image.to_string())
}

/// What each stage depends on. `COPY --from` is expanded with the meta args.
///
/// # Errors
/// A numeric `--from` that is not an earlier stage, a stage copying from
/// itself, an expansion failure; each with its line.
pub fn dependencies(
    stages: &[Stage],
    global: &GlobalScope,
) -> Result<Vec<StageDeps>, Vec<FrontendError>> {
    let mut errors = Vec::new();
    let mut all = Vec::with_capacity(stages.len());
    for stage in stages {
        let mut deps = StageDeps::default();
        if let Base::Stage(i) = stage.base {
            deps.stages.insert(i);
        }
        for instruction in &stage.instructions {
            let line = instruction.line();
            let froms: Vec<(String, &str)> = match &instruction.command {
                Command::Copy(c) => match c
                    .from
                    .as_deref()
                    .map(|f| global.expand(f, line))
                    .transpose()
                {
                    Ok(f) => f.map(|(f, _)| (f, "COPY --from")).into_iter().collect(),
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                },
                Command::Run(r) => r
                    .mounts
                    .iter()
                    .filter_map(|m| m.from.clone())
                    .map(|f| (f, "RUN --mount from"))
                    .collect(),
                _ => Vec::new(),
            };
            for (from, what) in froms {
                match resolve_from(&from, stage, stages) {
                    Ok(Some(i)) => {
                        deps.stages.insert(i);
                    }
                    Ok(None) => {
                        deps.images.insert(from);
                    }
                    Err(m) => errors.push(FrontendError::new(line, format!("{what}={from}: {m}"))),
                }
            }
        }
        all.push(deps);
    }
    if errors.is_empty() {
        Ok(all)
    } else {
        Err(errors)
    }
}

/// A `--from` value: `Some(stage)`, or `None` for an external image.
fn resolve_from(from: &str, current: &Stage, stages: &[Stage]) -> Result<Option<usize>, String> {
    if let Ok(index) = from.parse::<usize>() {
        return if index < current.index {
            Ok(Some(index))
        } else {
            Err(format!(
                "stage index {index} does not refer to an earlier stage"
            ))
        };
    }
    let lower = from.to_lowercase();
    match stages
        .iter()
        .find(|s| s.name.as_deref() == Some(lower.as_str()))
    {
        Some(s) if s.index == current.index => Err(format!(
            "circular dependency detected on stage: {}",
            s.display_name()
        )),
        Some(s) => Ok(Some(s.index)),
        None => Ok(None),
    }
}

/// The target stage: by name (case-insensitive), else the last stage.
///
/// # Errors
/// An unknown name, with the list of stage names; a Dockerfile without stages.
pub fn target(stages: &[Stage], name: Option<&str>) -> Result<usize, FrontendError> {
    let Some(last) = stages.last() else {
        return Err(FrontendError::new(
            0,
            "dockerfile contains no stages to build",
        ));
    };
    let Some(name) = name else {
        return Ok(last.index);
    };
    let lower = name.to_lowercase();
    stages
        .iter()
        .find(|s| s.name.as_deref() == Some(lower.as_str()))
        .map(|s| s.index)
        .ok_or_else(|| {
            let names: Vec<&str> = stages.iter().filter_map(|s| s.name.as_deref()).collect();
            FrontendError::new(
                0,
                format!(
                    "target stage {name:?} could not be found; the stages are: {}",
                    names.join(", ")
                ),
            )
        })
}

/// The stages to build for `target`: all of them, or the target and
/// everything it reaches.
pub fn needed(deps: &[StageDeps], target: usize, selection: StageSelection) -> BTreeSet<usize> {
    if selection == StageSelection::All {
        return (0..deps.len()).collect();
    }
    let mut needed = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if needed.insert(i) {
            todo.extend(
                deps.get(i)
                    .into_iter()
                    .flat_map(|d| d.stages.iter().copied()),
            );
        }
    }
    needed
}

/// `needed` in dependency levels (Kahn's algorithm).
///
/// # Errors
/// A cycle (`COPY --from` of a later stage that depends back), reported at
/// the FROM line of a stage on the cycle.
pub fn levels(
    stages: &[Stage],
    deps: &[StageDeps],
    needed: &BTreeSet<usize>,
) -> Result<Vec<Vec<usize>>, FrontendError> {
    let mut remaining: BTreeMap<usize, BTreeSet<usize>> = needed
        .iter()
        .map(|&i| {
            (
                i,
                deps[i]
                    .stages
                    .iter()
                    .copied()
                    .filter(|d| needed.contains(d))
                    .collect(),
            )
        })
        .collect();
    let mut levels = Vec::new();
    while !remaining.is_empty() {
        let ready: Vec<usize> = remaining
            .iter()
            .filter(|(_, d)| d.is_empty())
            .map(|(&i, _)| i)
            .collect();
        if ready.is_empty() {
            let (&stuck, _) = remaining.iter().next().expect("non-empty");
            let stage = &stages[stuck];
            return Err(FrontendError::new(
                stage.from.line(),
                format!(
                    "circular dependency detected on stage: {}",
                    stage.display_name()
                ),
            ));
        }
        for i in &ready {
            remaining.remove(i);
        }
        for d in remaining.values_mut() {
            for i in &ready {
                d.remove(i);
            }
        }
        levels.push(ready);
    }
    Ok(levels)
}

/// Dependencies, target, needed stages and levels in one call.
///
/// # Errors
/// Every error of [`dependencies`], or the one of [`target`] or [`levels`].
pub fn plan(
    stages: &[Stage],
    global: &GlobalScope,
    target_name: Option<&str>,
    selection: StageSelection,
) -> Result<Plan, Vec<FrontendError>> {
    let deps = dependencies(stages, global);
    let target = target(stages, target_name);
    let (deps, target) = match (deps, target) {
        (Ok(d), Ok(t)) => (d, t),
        (d, t) => {
            let mut errors = d.err().unwrap_or_default();
            errors.extend(t.err());
            return Err(errors);
        }
    };
    let needed = needed(&deps, target, selection);
    let levels = levels(stages, &deps, &needed).map_err(|e| vec![e])?;
    Ok(Plan {
        target,
        deps,
        needed,
        levels,
    })
}

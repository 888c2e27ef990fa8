//! `--dryrun` (and `KANIKO_PRINT_PLAN`): the stages a build would run, in
//! the order it runs them, with their steps, from the checked Dockerfile.

use kiln_dockerfile::plan::Base;
use kiln_dockerfile::Dockerfile;

/// The plan as text: one block per stage (stages of one level run
/// concurrently), then each step with its Dockerfile line.
pub fn render(dockerfile: &Dockerfile) -> String {
    let plan = &dockerfile.plan;
    let mut out = format!(
        "build plan: {} stage(s), target {}\n",
        plan.needed.len(),
        dockerfile.target().display_name()
    );
    for (level, stages) in plan.levels.iter().enumerate() {
        for &index in stages {
            let stage = &dockerfile.stages[index];
            let base = match &stage.base {
                Base::Image(reference) => reference.clone(),
                Base::Stage(i) => format!("stage {}", dockerfile.stages[*i].display_name()),
                Base::Scratch => "scratch".to_string(),
            };
            let role = if index == plan.target { ", pushed" } else { "" };
            out.push_str(&format!(
                "level {level}: stage {} from {base}{role}\n",
                stage.display_name()
            ));
            for instruction in &stage.instructions {
                let first = instruction.original.lines().next().unwrap_or_default();
                out.push_str(&format!("  {:>4}: {first}\n", instruction.line()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_in_run_order_with_their_steps_and_the_target_marked() {
        let text = "FROM busybox AS build\nRUN make\nFROM scratch AS unused\n\
                    FROM alpine\nCOPY --from=build /out /out\n";
        let df = kiln_dockerfile::load(text, &Default::default(), None).unwrap();
        let plan = render(&df);
        assert_eq!(
            plan,
            "build plan: 2 stage(s), target stage-2\n\
             level 0: stage build from busybox\n     2: RUN make\n\
             level 1: stage stage-2 from alpine, pushed\n     5: COPY --from=build /out /out\n"
        );
    }
}

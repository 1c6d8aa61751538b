//! A build for one platform or several: a plan per target platform, a solver per plan, all
//! solved at once over shared state (`solve::Shared`), and the check that this machine can run
//! every platform's RUN steps.
//!
//! BuildKit's rules, per target platform (`dockerfile2llb`):
//! - the automatic build arguments: `TARGETPLATFORM`, `TARGETOS`, `TARGETARCH`,
//!   `TARGETVARIANT` from the target platform, `BUILDPLATFORM`, `BUILDOS`, `BUILDARCH`,
//!   `BUILDVARIANT` from this machine's;
//! - a stage runs on its `FROM --platform` (expanded), else on the target platform; images
//!   named by `COPY --from` or `RUN --mount from=` are the target platform's;
//! - with `--platform` given, the image's config names the target platform, whatever the
//!   platform of the stage it comes from.

use std::sync::Arc;

use super::{DockerfileText, Error, Request};
use crate::emulation;
use crate::image::config::ImageConfig;
use crate::image::oci::Platform;
use crate::plan::step::{Base, LoweredStage, Op};
use crate::plan::{self, Plan, PlanOptions};
use crate::progress::{Event, Sink};
use crate::solve::{BuildError, Frontend, Solver, StageResult};

/// One plan as a solver sees it.
pub(super) struct PlanFrontend<'a> {
    pub plan: &'a Plan,
    pub target: Platform,
}

impl Frontend for PlanFrontend<'_> {
    fn stage_count(&self) -> usize {
        self.plan.stages.len()
    }
    fn needed(&self, stage: usize) -> bool {
        self.plan.stages[stage].needed
    }
    fn target(&self) -> usize {
        self.plan.target
    }
    fn base(&self, stage: usize) -> Base {
        self.plan.stages[stage].base.clone()
    }
    fn label(&self, stage: usize) -> String {
        self.plan.stages[stage].display_name()
    }
    fn name(&self, stage: usize) -> Option<String> {
        self.plan.stages[stage].name.clone()
    }
    fn platform(&self, stage: usize) -> Platform {
        stage_platform(self.plan, stage)
    }
    fn target_platform(&self) -> Platform {
        self.target.clone()
    }
    fn lower(
        &self,
        stage: usize,
        base: &ImageConfig,
    ) -> Result<LoweredStage, crate::dockerfile::Diagnostics> {
        plan::lower(self.plan, stage, base)
    }
}

/// A stage's platform: its `FROM --platform`, else the plan's target platform.
fn stage_platform(plan: &Plan, stage: usize) -> Platform {
    Platform::from(
        plan.stages[stage]
            .platform
            .as_ref()
            .unwrap_or(&plan.target_platform),
    )
}

/// The target platforms: `--platform`'s, or this machine's.
pub(super) fn targets(req: &Request) -> Vec<plan::Platform> {
    if req.platforms.is_empty() {
        vec![plan::Platform::host()]
    } else {
        req.platforms.clone()
    }
}

/// Plan the Dockerfile for each target platform; errors are rendered with their source lines.
pub(super) fn plans(req: &Request, dockerfile: &DockerfileText) -> Result<Vec<Plan>, Error> {
    targets(req)
        .into_iter()
        .map(|target_platform| {
            let opts = PlanOptions {
                build_args: req.build_args.clone(),
                target: req.target.clone(),
                target_platform,
                ..PlanOptions::default()
            };
            plan::from_text(&dockerfile.name, &dockerfile.text, &opts).map_err(Error::Plan)
        })
        .collect()
}

/// The platforms on which the plans run RUN steps, each once, in order: those are the ones
/// this machine must be able to run. (A RUN step that only an ONBUILD trigger of a pulled
/// image brings is not known before the build; it fails with the kernel's "exec format
/// error" if its platform cannot run.)
pub(super) fn run_platforms(plans: &[Plan]) -> Vec<Platform> {
    let mut out: Vec<Platform> = vec![];
    for plan in plans {
        for (stage, lowered) in plan::lowered(plan) {
            if lowered.steps.iter().any(|s| matches!(s.op, Op::Run(_))) {
                let p = stage_platform(plan, stage.index);
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
    }
    out
}

/// Check that every platform with RUN steps runs here; say for each what is missing.
pub(super) fn check_emulation(
    plans: &[Plan],
    scratch: &std::path::Path,
    progress: &dyn Sink,
) -> Result<(), Error> {
    let platforms = run_platforms(plans);
    let host = Platform::host();
    let foreign: Vec<Platform> = platforms
        .into_iter()
        .filter(|p| !(p.os == host.os && p.architecture == host.architecture))
        .collect();
    if foreign.is_empty() {
        return Ok(());
    }
    match emulation::require(&foreign, scratch) {
        Ok(supports) => {
            for (p, s) in foreign.iter().zip(supports) {
                progress.event(Event::Info {
                    message: format!("RUN steps for {p}: {s}"),
                });
            }
            Ok(())
        }
        Err(missing) => Err(Error::Emulation(missing)),
    }
}

/// One platform of the build, solved.
pub(crate) struct Built<'s, 'a> {
    pub solver: &'s Solver<'a>,
    pub result: Arc<StageResult>,
}

/// Solve every platform at once. The first real failure is the build's (the others are the
/// cancellations it caused).
pub(super) fn solve_all<'s, 'a>(
    solvers: &'s [Solver<'a>],
) -> Result<Vec<Built<'s, 'a>>, BuildError> {
    if let [solver] = solvers {
        let result = solver.solve()?;
        return Ok(vec![Built { solver, result }]);
    }
    let results: Vec<Result<Arc<StageResult>, BuildError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = solvers
            .iter()
            .map(|s| scope.spawn(move || s.solve()))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(BuildError::Io(std::io::Error::other(
                        "a platform's solver panicked",
                    )))
                })
            })
            .collect()
    });
    let mut errors = vec![];
    let mut built = vec![];
    for (solver, r) in solvers.iter().zip(results) {
        match r {
            Ok(result) => built.push(Built { solver, result }),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        return Ok(built);
    }
    let real = errors
        .iter()
        .position(|e| !matches!(e, BuildError::Cancelled | BuildError::Interrupted(_)));
    let interrupted = errors
        .iter()
        .position(|e| matches!(e, BuildError::Interrupted(_)));
    let pick = real.or(interrupted).unwrap_or(0);
    Err(errors.swap_remove(pick))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_for(text: &str, target: &str) -> Plan {
        let opts = PlanOptions {
            target_platform: plan::Platform::parse(target).unwrap(),
            build_platform: plan::Platform::parse("linux/amd64").unwrap(),
            ..PlanOptions::default()
        };
        plan::from_text("Dockerfile", text, &opts).unwrap()
    }

    /// The cross-compilation pattern: the build stage runs on the build platform, the final
    /// stage on each target; only the target's RUN steps need emulation.
    #[test]
    fn stages_run_on_their_from_platform_or_the_target() {
        let text = "FROM --platform=$BUILDPLATFORM busybox AS build\nARG TARGETARCH\nRUN echo $TARGETARCH\nFROM busybox\nCOPY --from=build / /\nRUN true\n";
        let arm = plan_for(text, "linux/arm64");
        assert_eq!(stage_platform(&arm, 0).to_string(), "linux/amd64");
        assert_eq!(stage_platform(&arm, 1).to_string(), "linux/arm64");
        let plans = [plan_for(text, "linux/amd64"), arm];
        let p: Vec<String> = run_platforms(&plans)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(p, ["linux/amd64", "linux/arm64"]);
        // A final stage with no RUN needs no emulation.
        let plans = [plan_for(
            "FROM --platform=$BUILDPLATFORM busybox AS build\nRUN true\nFROM scratch\nCOPY --from=build / /\n",
            "linux/arm64",
        )];
        let p: Vec<String> = run_platforms(&plans)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(p, ["linux/amd64"]);
    }
}

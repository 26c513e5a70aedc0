//! A run's preparation before a person is asked to approve it: its parameters, inputs and secrets
//! read, and every step that will run rendered. What depends on earlier steps' output is left to
//! the run (decided at run time); anything else that cannot be prepared would fail the run after
//! someone approved it, so it fails the run before anyone is asked.

use std::sync::Arc;

use crate::exec::executor::Executor;
use crate::exec::plan::{Plan, PrepareError};
use crate::run::record::RunRecord;
use crate::runbook::model::Runbook;

/// Why a run cannot be prepared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unprepared {
    /// A parameter, input or secret it cannot start without.
    #[error("{0}")]
    Plan(#[from] PrepareError),
    /// A step that would run and cannot be rendered (redacted).
    #[error("step `{step}` cannot run: {problem}")]
    Step {
        /// The step.
        step: String,
        /// What cannot be rendered.
        problem: String,
    },
}

/// Prepares `run` of `runbook` as it would start now. Secrets are read to check they can be,
/// and never leave this function: the steps are rendered with the mask in their place.
pub fn prepare(
    executor: &Executor,
    runbook: &Arc<Runbook>,
    run: &RunRecord,
) -> Result<(), Unprepared> {
    let mut real = run.clone();
    real.dry_run = false;
    drop(Plan::of(Arc::clone(runbook), &real)?);
    let mut preview = run.clone();
    preview.dry_run = true;
    let plan = Plan::of(Arc::clone(runbook), &preview)?;
    // A step whose failure does not fail the run (`continue_on_error`) stops nothing here.
    let planned = executor.preview(&plan).into_iter().zip(&runbook.steps);
    match planned
        .filter(|(_, step)| !step.continue_on_error)
        .find_map(|(s, _)| s.problem.map(|p| (s.name, p)))
    {
        Some((step, problem)) => Err(Unprepared::Step { step, problem }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::status::RunStatus;
    use crate::runbook::plugins::Plugins;

    fn runbook(text: &str) -> Arc<Runbook> {
        crate::runbook::catalog::one(text, &Default::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn manual_run(rb: &Runbook) -> RunRecord {
        let mut run = RunRecord::synthetic(0);
        run.runbook = rb.name.clone();
        run.status = RunStatus::PendingApproval;
        run.params = crate::exec::plan::with_defaults(rb, &Default::default());
        run
    }

    fn executor() -> Executor {
        Executor::new(Plugins::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    const HEAD: &str = "name: r\nowner: t\ntriggers: [{alert: {matchers: ['alertname=\"X\"']}}]\n";

    #[test]
    fn a_missing_secret_or_a_template_that_cannot_render_is_found_before_the_run() {
        let rb = runbook(&format!(
            "{HEAD}secrets: {{hook: {{env: UNTOIL_TEST_NO_SUCH_SECRET_VARIABLE}}}}\nsteps:\n  - name: a\n    run: 'true'\n"
        ));
        let e = prepare(&executor(), &rb, &manual_run(&rb)).err();
        assert!(
            matches!(&e, Some(Unprepared::Plan(PrepareError::Secret { name, .. })) if name == "hook"),
            "{e:?}"
        );
        let rb = runbook(&format!(
            "{HEAD}steps:\n  - name: a\n    run: echo {{{{alert.labels.instance}}}}\n"
        ));
        let e = prepare(&executor(), &rb, &manual_run(&rb)).err();
        assert!(
            matches!(&e, Some(Unprepared::Step { step, problem }) if step == "a" && problem.contains("alert.labels.instance")),
            "{e:?}"
        );
    }

    #[test]
    fn what_depends_on_earlier_output_or_a_skipped_step_is_left_to_the_run() {
        let rb = runbook(&format!(
            "{HEAD}steps:\n  - name: a\n    run: echo 1\n  - name: b\n    run: echo {{{{steps.a.json.count}}}}\n  - name: c\n    run: echo {{{{alert.labels.instance}}}}\n    when: '{{{{eq alert.labels.severity \"critical\"}}}}'\n  - name: d\n    run: echo {{{{alert.labels.instance}}}}\n    when: '{{{{gt steps.a.stdout 0}}}}'\n"
        ));
        assert_eq!(prepare(&executor(), &rb, &manual_run(&rb)), Ok(()));
        let rb = runbook(&format!(
            "{HEAD}steps:\n  - name: a\n    run: echo {{{{alert.labels.instance}}}}\n    continue_on_error: true\n"
        ));
        assert_eq!(prepare(&executor(), &rb, &manual_run(&rb)), Ok(()));
    }
}

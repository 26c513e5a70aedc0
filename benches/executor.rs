//! Executor overhead: a 100-step runbook of `true` against the same 100 commands run by one
//! bash script. Each untoil step is `/bin/sh -c true`, so the like-for-like baseline is a bash
//! script running `/bin/sh -c true` 100 times; bash's builtin `true` (no process at all) is
//! printed for scale. Run with `cargo bench --bench executor`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use untoil::engine::lifecycle;
use untoil::exec::executor::Executor;
use untoil::exec::plan::Plan;
use untoil::exec::recorder::Discard;
use untoil::run::cause::Cause;
use untoil::run::status::RunStatus;
use untoil::runbook::catalog::load_texts;
use untoil::runbook::plugins::Plugins;

const STEPS: usize = 100;
const ROUNDS: usize = 15;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time_bash(script: &str) -> Duration {
    let mut times = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let status = std::process::Command::new("bash")
            .arg("-c")
            .arg(script)
            .status()
            .expect("bash runs");
        assert!(status.success());
        times.push(t.elapsed());
    }
    median(times)
}

fn main() {
    let mut yaml = String::from("name: bench\nowner: bench\ntoil: {manual_minutes: 1}\nsteps:\n");
    for i in 0..STEPS {
        yaml.push_str(&format!("  - name: s{i}\n    run: \"true\"\n"));
    }
    let loaded = load_texts(&[("bench.yaml", &yaml)], &Plugins::default());
    let rb = loaded
        .catalog
        .get("bench")
        .cloned()
        .expect("bench runbook validates");
    let executor = Arc::new(Executor::new(Plugins::default()).expect("executor"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    // Warm up once, then measure.
    let run_once = |rb: &Arc<untoil::runbook::model::Runbook>| {
        let cause = Cause::Manual {
            user: "bench".into(),
            claimed_user: None,
        };
        let now = chrono::Utc::now();
        let mut run = lifecycle::new_run(rb, cause, Default::default(), None, now);
        let plan = Plan::of(rb.clone(), &run).expect("plan");
        lifecycle::start(&mut run, now);
        let t = Instant::now();
        rt.block_on(executor.execute(&plan, &mut run, CancellationToken::new(), &mut Discard));
        lifecycle::conclude(&mut run, chrono::Utc::now());
        assert_eq!(run.status, RunStatus::Succeeded);
        t.elapsed()
    };
    run_once(&rb);
    let untoil = median((0..ROUNDS).map(|_| run_once(&rb)).collect());

    let sh_script = "/bin/sh -c true\n".repeat(STEPS);
    let builtin_script = "true\n".repeat(STEPS);
    let bash_sh = time_bash(&sh_script);
    let bash_builtin = time_bash(&builtin_script);

    println!("executor benchmark: {STEPS} steps of `true`, median of {ROUNDS} rounds");
    println!(
        "  untoil executor            {:>8.2} ms",
        untoil.as_secs_f64() * 1e3
    );
    println!(
        "  bash, 100x /bin/sh -c true {:>8.2} ms",
        bash_sh.as_secs_f64() * 1e3
    );
    println!(
        "  bash, 100x builtin true    {:>8.2} ms",
        bash_builtin.as_secs_f64() * 1e3
    );
    println!(
        "  ratio untoil / bash (same processes): {:.2}x (target <= 1.30x)",
        untoil.as_secs_f64() / bash_sh.as_secs_f64()
    );
}

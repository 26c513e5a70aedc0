//! `untoil plugins`: the installed plugins.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::global::Global;
use crate::report::table::Table;
use crate::runbook::plugins::Plugins;

/// Runs `untoil plugins`.
pub fn run(g: &Global) -> Result<ExitCode> {
    let plugins = Plugins::discover(&g.plugins);
    let mut t = Table::new(["NAME", "DESCRIPTION", "INPUTS", "PATH"]);
    for p in plugins.iter() {
        let (description, inputs) = match &p.manifest {
            Some(m) => (
                m.description.clone(),
                m.inputs
                    .as_ref()
                    .map(|i| {
                        i.iter()
                            .map(|(k, v)| {
                                if v.required {
                                    format!("{k}*")
                                } else {
                                    k.clone()
                                }
                            })
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_else(|| "any".into()),
            ),
            None => (
                p.manifest_error
                    .as_ref()
                    .map(|e| format!("(bad manifest: {e})"))
                    .unwrap_or_else(|| "(no manifest)".into()),
                "any".into(),
            ),
        };
        t.row([
            p.name.clone(),
            description,
            inputs,
            p.path.display().to_string(),
        ]);
    }
    if plugins.iter().next().is_none() {
        eprintln!("no plugins in {}", g.plugins.display());
    } else {
        print!("{}", t.render());
        println!("(* required input)");
    }
    Ok(ExitCode::SUCCESS)
}

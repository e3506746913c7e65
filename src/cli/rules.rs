//! `flowaudit rules [list | explain ID]`: the rule catalogue.

use anyhow::bail;
use clap::{Args, Subcommand};
use comfy_table::{ContentArrangement, Table, presets};

use crate::exit;
use crate::rules::{REGISTRY, meta};

use super::print_stdout;

#[derive(Debug, Clone, Args)]
pub struct RulesArgs {
    #[command(subcommand)]
    pub command: Option<RulesCommand>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum RulesCommand {
    /// List every rule with its default severity and what it flags.
    List,
    /// Print a rule's documentation: what it does, why, an example, the fix, its settings.
    Explain {
        /// The rule id, as `rules list` shows it.
        id: String,
    },
}

pub fn run(args: &RulesArgs) -> anyhow::Result<u8> {
    match &args.command {
        None | Some(RulesCommand::List) => print_stdout(&list()),
        Some(RulesCommand::Explain { id }) => print_stdout(&explain(id)?),
    }?;
    Ok(exit::OK)
}

pub fn list() -> String {
    let mut table = Table::new();
    table
        .load_style(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(79)
        .set_header(["rule", "severity", "flags"]);
    for m in REGISTRY {
        table.add_row([m.id, m.default_severity.as_str(), m.summary]);
    }
    format!(
        "{}\n\n`flowaudit rules explain ID` prints a rule's documentation.\n",
        table
            .to_string()
            .lines()
            .map(str::trim_end)
            .collect::<Vec<_>>()
            .join("\n")
    )
}

pub fn explain(id: &str) -> anyhow::Result<String> {
    let Some(m) = meta(id) else {
        let known: Vec<&str> = REGISTRY.iter().map(|m| m.id).collect();
        bail!(
            "no rule has the id `{id}`\n  hint: known rules: {}",
            known.join(", ")
        );
    };
    Ok(format!(
        "# {} ({} by default)\n\n{}\n\n{}",
        m.id,
        m.default_severity,
        m.summary,
        m.documentation()
    ))
}

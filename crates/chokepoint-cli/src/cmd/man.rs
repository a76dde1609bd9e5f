//! `chokepoint man DIR` and `chokepoint completions SHELL`: man pages and
//! shell completions generated from the command line's own definition, so
//! they can never disagree with `--help`.

use std::path::PathBuf;

use anyhow::{Context, Result};

#[derive(clap::Args)]
pub struct ManArgs {
    /// The directory to write chokepoint.1 and chokepoint-COMMAND.1 into
    /// (created if missing; existing pages are replaced).
    dir: PathBuf,
}

#[derive(clap::Args)]
pub struct CompletionArgs {
    /// The shell to complete for.
    shell: clap_complete::Shell,
}

/// Every page: the command, then each subcommand (nested ones too, as
/// `chokepoint-lab-up.1`), hidden and help commands left out.
pub fn pages(cmd: clap::Command) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut todo = vec![(cmd.get_name().to_string(), cmd)];
    while let Some((name, cmd)) = todo.pop() {
        let cmd = cmd.name(name.clone());
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd.clone())
            .render(&mut page)
            .with_context(|| format!("rendering {name}"))?;
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            todo.push((format!("{name}-{}", sub.get_name()), sub.clone()));
        }
        out.push((format!("{name}.1"), page));
    }
    out.sort();
    Ok(out)
}

pub fn man(a: ManArgs, cmd: clap::Command) -> Result<()> {
    std::fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    let pages = pages(cmd)?;
    for (file, page) in &pages {
        let path = a.dir.join(file);
        chokepoint_rules::outfile::replace_with(
            &path,
            &chokepoint_rules::outfile::Inputs::new(),
            page,
        )?;
    }
    println!("wrote {} man pages to {}", pages.len(), a.dir.display());
    Ok(())
}

pub fn completions(a: CompletionArgs, mut cmd: clap::Command) -> Result<()> {
    let name = cmd.get_name().to_string();
    let mut out = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, name, &mut out);
    super::print_out(&String::from_utf8_lossy(&out))
}

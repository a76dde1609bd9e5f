//! `hosts` format: `ADDRESS NAME [NAME...]`, as in /etc/hosts blocklists.
//! The address is ignored (blocklists point everything at 0.0.0.0); names
//! are exact unless the list says `exact: false`.

use std::net::IpAddr;

use super::{content, Ctx, NameItem, MODE_EXACT, MODE_SUFFIX};
use crate::name::normalize;
use crate::Error;

/// Names every hosts file carries for the machine itself; never entries.
const LOCAL_NAMES: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-mcastprefix",
    "ip6-allnodes",
    "ip6-allrouters",
    "ip6-allhosts",
    "0.0.0.0",
];

pub(super) fn parse(ctx: &mut Ctx<'_>, lines: &[(u32, &str)]) -> Result<(), Error> {
    let mode = if ctx.plain_exact(true) {
        MODE_EXACT
    } else {
        MODE_SUFFIX
    };
    for &(line, raw) in lines {
        let text = content(raw);
        if text.is_empty() {
            continue;
        }
        let mut fields = text.split_whitespace();
        let addr = fields.next().unwrap_or_default();
        if addr.parse::<IpAddr>().is_err() {
            ctx.bad(
                line,
                format!("`{addr}` is not an IP address (hosts lines start with one)"),
            )?;
            continue;
        }
        let names: Vec<&str> = fields.collect();
        if names.is_empty() {
            ctx.bad(line, "address with no names")?;
            continue;
        }
        for n in names {
            if LOCAL_NAMES.contains(&n.to_ascii_lowercase().as_str()) {
                ctx.out.ignored += 1;
                continue;
            }
            match normalize(n) {
                Ok(name) => ctx.out.names.push(NameItem { name, mode, line }),
                Err(e) => ctx.bad(line, format!("bad name `{n}`: {e}"))?,
            }
        }
    }
    Ok(())
}

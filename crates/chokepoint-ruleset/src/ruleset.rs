//! [`Ruleset`]: a compiled policy, the thing the compiler produces, the
//! artifact stores and the packet core queries.
//!
//! Lookups ([`Ruleset::match_name`], [`Ruleset::match_v4`],
//! [`Ruleset::match_v6`]) return a [`Match`]: the deciding rule and a [`Hit`]
//! naming the entry, two integers, no allocation. [`Ruleset::describe`]
//! turns a hit into text for `explain`; only that allocates.

use std::net::IpAddr;

use bytemuck::{Pod, Zeroable};
use serde::{Deserialize, Serialize};

use crate::conditions::{Conditions, Facts, Residual};
use crate::domain_table::{mode_str, DomainTable, MODE_SUBDOMAINS};
use crate::ids::RuleId;
use crate::keyword_table::KeywordTable;
use crate::prefix_table::PrefixTable;
use crate::profile::Profile;
use crate::vocab::{Action, ListFormat, Trigger};

/// `first_rule` value for "no rule uses this list for this trigger".
pub const NO_RULE: u16 = u16::MAX;

/// Columns of `first_rule`: one per trigger, plus TLS and QUIC SNI of a
/// ClientHello carrying ECH, so `ech:` conditions cost nothing at lookup.
pub const COLUMNS: usize = Trigger::COUNT + 2;

/// The `first_rule` column for a trigger and a ClientHello's ECH flag.
#[inline]
pub fn column(trigger: Trigger, ech: bool) -> usize {
    match (trigger, ech) {
        (Trigger::TlsSni, true) => Trigger::COUNT,
        (Trigger::QuicSni, true) => Trigger::COUNT + 1,
        (t, _) => t.index(),
    }
}

/// The most lists a policy may have: list ids are stored in 16 bits.
pub const MAX_LISTS: usize = u16::MAX as usize;

/// `first_rule` as the rules define it: per list, per column, the first
/// rule (policy order) that matches the list there. The compiler builds it
/// and loading recomputes it, so a file cannot attribute a decision to a
/// rule that does not use the list.
pub fn first_rule_table(rules: &[RuleMeta], lists: usize) -> Vec<[u16; COLUMNS]> {
    let mut first_rule = vec![[NO_RULE; COLUMNS]; lists];
    for (ri, r) in rules.iter().enumerate().take(RuleId::MAX_RULES) {
        for &l in &r.lists {
            let Some(row) = first_rule.get_mut(l as usize) else {
                continue;
            };
            for t in r.triggers() {
                // A hello without ECH looks in the plain column, one with
                // ECH in the ECH column; `ech:` picks which a rule fills.
                let cols: &[bool] = match r.ech {
                    None => &[false, true],
                    Some(e) if e => &[true],
                    Some(_) => &[false],
                };
                for &ech in cols {
                    let slot = &mut row[column(t, ech)];
                    if *slot == NO_RULE {
                        *slot = ri as u16;
                    }
                }
            }
        }
    }
    first_rule
}

/// Does a rule with lists fill `first_rule` column `col`?
fn serves(r: &RuleMeta, col: usize) -> bool {
    r.triggers().any(|t| {
        let cols: &[bool] = match r.ech {
            None => &[false, true],
            Some(true) => &[true],
            Some(false) => &[false],
        };
        cols.iter().any(|&e| column(t, e) == col)
    })
}

/// One list's prefixes as a table of their own, each entry's `line`
/// replaced by its index in `main`.
fn member_table<A: crate::prefix_table::Addr>(main: &PrefixTable<A>, l: u16) -> PrefixTable<A> {
    let entries = main
        .entries()
        .iter()
        .enumerate()
        .filter(|(_, e)| e.list == l)
        .map(|(i, e)| crate::prefix_table::PrefixEntry {
            line: i as u32,
            ..*e
        })
        .collect();
    PrefixTable::build(entries, |_| Some(0))
}

/// A dynamic list's key in the stores outside the ruleset: FNV-1a of its
/// name, so entries learnt under one policy are found under the next one
/// whatever ids its lists get.
pub fn list_tag(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Where a source came from and its digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceMeta {
    /// Path as given to the compiler.
    pub path: String,
    /// BLAKE3 of its bytes, hex.
    pub blake3: String,
    /// Its size.
    pub bytes: u64,
}

/// Figures for one list, as compiled.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListStats {
    /// Lines read.
    pub lines: u32,
    /// Names that match themselves only.
    pub names_exact: u64,
    /// Names that match themselves and their subdomains.
    pub names_suffix: u64,
    /// Names whose subdomains match (`*.example.com`).
    pub names_subdomains: u64,
    /// IPv4 prefixes.
    pub v4_prefixes: u64,
    /// IPv6 prefixes.
    pub v6_prefixes: u64,
    /// Substring patterns.
    pub keywords: u64,
    /// Registry records.
    pub records: u64,
    /// Registry records left out by a decision filter.
    pub records_filtered: u64,
    /// Entries listed more than once in this list (kept once).
    pub duplicates: u64,
    /// Entries already covered by a broader entry of this list (kept, so
    /// `explain` can still cite them; counted so nobody is surprised).
    pub shadowed: u64,
    /// Bad lines skipped under `on_error: skip`.
    pub skipped: u64,
    /// The first few skipped lines, as `file:line: reason`.
    pub first_errors: Vec<String>,
    /// Hosts-file names such as `localhost`.
    pub ignored: u64,
    /// IPv4 addresses covered.
    pub v4_addresses: u64,
    #[serde(with = "u128_text")]
    /// IPv6 addresses covered.
    pub v6_addresses: u128,
    /// Lines, not plain ASCII, read as UTF-8.
    #[serde(default)]
    pub lines_utf8: u32,
    /// Lines, not plain ASCII, read as Windows-1251. Beside `lines_utf8`
    /// under `encoding: auto`, a file that mixes the two, decided per line.
    #[serde(default)]
    pub lines_windows1251: u32,
}

/// IPv6 address counts overflow JSON numbers: text in human-readable
/// formats (JSON), a plain integer in the artifact's binary metadata.
mod u128_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(v)
        } else {
            s.serialize_u128(*v)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        if d.is_human_readable() {
            String::deserialize(d)?
                .parse()
                .map_err(serde::de::Error::custom)
        } else {
            u128::deserialize(d)
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
/// One list as compiled.
pub struct ListMeta {
    /// Its name in the policy.
    pub name: String,
    /// Its format.
    pub format: ListFormat,
    /// File path or `POLICY: lists.NAME.entries`.
    pub source: String,
    /// Registry `Updated:` header.
    pub updated: Option<String>,
    /// What it held.
    pub stats: ListStats,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
/// One rule as compiled.
pub struct RuleMeta {
    /// Its name in the policy.
    pub name: String,
    /// What it does.
    pub action: Action,
    /// [`Trigger::bit`] mask.
    pub on: u8,
    /// The lists it matches against.
    pub lists: Vec<u16>,
    /// ECH condition on TLS/QUIC SNI, if any.
    pub ech: Option<bool>,
    /// What else the firing packet must meet.
    pub cond: Conditions,
    /// The block it leaves behind on new flows, if any.
    pub residual: Option<Residual>,
}

impl RuleMeta {
    /// The triggers the rule applies to.
    pub fn triggers(&self) -> impl Iterator<Item = Trigger> + '_ {
        Trigger::ALL.into_iter().filter(|t| self.on & t.bit() != 0)
    }
}

/// Where a flow no rule matched meets a default that does not forward.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefaultAt {
    /// From the flow's first packet (a TCP SYN is dropped).
    #[default]
    FirstPacket,
    /// From its first data packet: the TCP handshake passes, the
    /// ClientHello does not (Russia's 2025 mobile allowlists).
    FirstData,
}

/// Whole-policy figures.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Distinct names.
    pub names: u64,
    /// Substring patterns.
    pub keywords: u64,
    /// IPv4 prefixes.
    pub v4_prefixes: u64,
    /// IPv6 prefixes.
    pub v6_prefixes: u64,
    /// IPv4 addresses that some IP rule decides.
    pub v4_addresses: u64,
    /// IPv6 addresses that some IP rule decides.
    #[serde(with = "u128_text")]
    pub v6_addresses: u128,
    /// Registry records.
    pub records: u64,
    /// Compile time, milliseconds.
    pub compile_ms: u64,
}

/// Everything but the tables.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// When it was compiled (unix seconds).
    pub created_unix: u64,
    /// The policy file.
    pub policy: SourceMeta,
    /// Every list file read.
    pub sources: Vec<SourceMeta>,
    /// Lists, by id.
    pub lists: Vec<ListMeta>,
    /// Rules, in policy order (by [`RuleId`]).
    pub rules: Vec<RuleMeta>,
    /// What happens when no rule matches.
    pub default_action: Action,
    /// Where a flow no rule matched meets the default action.
    pub default_at: DefaultAt,
    /// How the engine inspects.
    pub profile: Profile,
    /// Per list, per trigger: the first rule (policy order) that uses the
    /// list for that trigger, or [`NO_RULE`].
    pub first_rule: Vec<[u16; COLUMNS]>,
    /// Whole-policy figures.
    pub totals: Totals,
}

/// A registry record behind entries of a registry list.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct RecordEntry {
    /// Line of the record in its list.
    pub line: u32,
    /// Offset of its text in the blob.
    pub off: u32,
    /// The list it belongs to.
    pub list: u16,
    /// Length of the decision number.
    pub decision_len: u16,
    /// Length of the decision date.
    pub date_len: u16,
    /// Length of the deciding organisation.
    pub org_len: u16,
}

/// Which entry decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hit {
    /// A domain table slot.
    Name(u32),
    /// A keyword entry.
    Keyword(u32),
    /// An IPv4 prefix entry.
    V4(u32),
    /// An IPv6 prefix entry.
    V6(u32),
    /// No list entry: the rule's conditions alone (a protocol rule, or a
    /// residual block the rule armed).
    Rule,
    /// An entry a `learn` action put in this dynamic list.
    Learned(u16),
}

/// A lookup's answer: the rule (policy index) and the entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Match {
    /// The deciding rule.
    pub rule: RuleId,
    /// The entry that matched.
    pub hit: Hit,
}

/// A hit in words, for `explain`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HitInfo {
    /// The list's name.
    pub list: String,
    /// The entry as listed: `t.me` (suffix), `*.example.com`, `149.154.160.0/20`, keyword `t.co`.
    pub entry: String,
    /// `exact`, `suffix`, `subdomains`, `keyword` or `prefix`.
    pub kind: &'static str,
    /// `file:line`.
    pub source: String,
    /// Registry: the decision number.
    pub decision: Option<String>,
    /// Registry: the decision date.
    pub decision_date: Option<String>,
    /// Registry: the organisation that decided.
    pub org: Option<String>,
}

/// A compiled policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Ruleset {
    /// Everything but the tables.
    pub meta: Meta,
    pub(crate) domains: DomainTable,
    pub(crate) keywords: KeywordTable,
    pub(crate) v4: PrefixTable<u32>,
    pub(crate) v6: PrefixTable<u128>,
    pub(crate) records: Vec<RecordEntry>,
    pub(crate) record_blob: Vec<u8>,
    /// Built from the rest on load, never stored.
    pub(crate) derived: Derived,
}

/// What loading derives from the rules for conditions: nothing at all for
/// a policy without them, so its lookups stay what they were.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Derived {
    /// Some rule has conditions: a candidate rule must be checked, and the
    /// next one tried when it fails.
    conditional: bool,
    /// Some IP rule has conditions: IP lookups walk the IP rules.
    ip_conditional: bool,
    /// Per list and column, the rules that use it, in policy order.
    chains: Vec<Vec<u16>>,
    /// Rules that fire on a protocol, in policy order.
    protocol_rules: Vec<u16>,
    /// Rules on `ip`, in policy order.
    ip_rules: Vec<u16>,
    /// Protocols some protocol rule fires on ([`crate::Protocol::bit`]
    /// mask): the engine runs only their classifiers.
    protocols_wanted: u16,
    /// IP rules on dynamic lists, in policy order: (rule, list, the list's
    /// [`list_tag`]).
    learned_rules: Vec<(u16, u16, u64)>,
    /// Per rule with a `learn` action, the [`list_tag`] of the dynamic
    /// list it fills.
    learn_lists: Vec<(u16, u64)>,
    /// Per-list prefix tables for address conditions (`dst_list`,
    /// `src_list`, `except`) and, when IP rules have conditions, for every
    /// IP rule's lists. An entry's `line` holds its index in the main table.
    members: Vec<(u16, PrefixTable<u32>, PrefixTable<u128>)>,
}

/// The tables a ruleset is made of, as the compiler builds them.
pub struct Parts {
    /// Everything but the tables.
    pub meta: Meta,
    /// Names.
    pub domains: DomainTable,
    /// Substring patterns.
    pub keywords: KeywordTable,
    /// IPv4 prefixes.
    pub v4: PrefixTable<u32>,
    /// IPv6 prefixes.
    pub v6: PrefixTable<u128>,
    /// Registry records, sorted by (list, line).
    pub records: Vec<RecordEntry>,
    /// The records' text.
    pub record_blob: Vec<u8>,
}

impl Ruleset {
    /// Assemble a ruleset, checking that its tables agree with each other.
    pub fn from_parts(p: Parts) -> Result<Ruleset, String> {
        let rs = Ruleset {
            meta: p.meta,
            domains: p.domains,
            keywords: p.keywords,
            v4: p.v4,
            v6: p.v6,
            records: p.records,
            record_blob: p.record_blob,
            derived: Derived::default(),
        };
        rs.validate()?;
        let mut rs = rs;
        rs.derive();
        Ok(rs)
    }

    /// Build what conditions need from the validated rules and tables.
    pub(crate) fn derive(&mut self) {
        let rules = &self.meta.rules;
        let lists = self.meta.lists.len();
        let mut d = Derived {
            conditional: rules.iter().any(|r| !r.cond.is_empty()),
            ..Derived::default()
        };
        d.ip_conditional = rules
            .iter()
            .any(|r| r.on & Trigger::Ip.bit() != 0 && !r.cond.is_empty());
        for (ri, r) in rules.iter().enumerate() {
            if r.on & Trigger::Protocol.bit() != 0 {
                d.protocol_rules.push(ri as u16);
                d.protocols_wanted |= r.cond.protocols;
            }
            if r.on & Trigger::Ip.bit() != 0 {
                d.ip_rules.push(ri as u16);
                for &l in &r.lists {
                    let m = &self.meta.lists[l as usize];
                    if m.format == ListFormat::Dynamic {
                        d.learned_rules.push((ri as u16, l, list_tag(&m.name)));
                    }
                }
            }
            if let Action::Learn { list, .. } = &r.action {
                d.learn_lists.push((ri as u16, list_tag(list)));
            }
        }
        if d.conditional {
            d.chains = vec![Vec::new(); lists * COLUMNS];
            for (ri, r) in rules.iter().enumerate() {
                for &l in &r.lists {
                    for col in 0..COLUMNS {
                        if serves(r, col) {
                            d.chains[l as usize * COLUMNS + col].push(ri as u16);
                        }
                    }
                }
            }
        }
        let mut wanted: Vec<u16> = rules.iter().flat_map(|r| r.cond.lists()).collect();
        if d.ip_conditional {
            for &ri in &d.ip_rules {
                wanted.extend(&rules[ri as usize].lists);
            }
        }
        wanted.sort_unstable();
        wanted.dedup();
        for l in wanted {
            let v4 = member_table(&self.v4, l);
            let v6 = member_table(&self.v6, l);
            d.members.push((l, v4, v6));
        }
        self.derived = d;
    }

    /// Does any rule have conditions?
    pub fn has_conditions(&self) -> bool {
        self.derived.conditional
    }

    /// Does any rule fire on a protocol itself?
    pub fn has_protocol_rules(&self) -> bool {
        !self.derived.protocol_rules.is_empty()
    }

    /// The protocols some protocol rule fires on ([`crate::Protocol::bit`]
    /// mask): only their classifiers are run.
    #[inline]
    pub fn protocols_wanted(&self) -> u16 {
        self.derived.protocols_wanted
    }

    /// Does any IP rule use a dynamic list?
    #[inline]
    pub fn has_learned_rules(&self) -> bool {
        !self.derived.learned_rules.is_empty()
    }

    /// The [`list_tag`] of the dynamic list a `learn` rule fills.
    pub fn learn_list(&self, r: RuleId) -> Option<u64> {
        self.derived
            .learn_lists
            .iter()
            .find(|(rule, _)| *rule == r.stored())
            .map(|&(_, l)| l)
    }

    /// The first IP rule on a dynamic list (policy order) whose list holds
    /// the flow's server now, as `learned(tag)` says for the list's
    /// [`list_tag`], and whose conditions `f` meets. The lists live outside
    /// the ruleset (they outlive a reload), so the caller answers for them.
    pub fn match_learned(&self, f: &Facts<'_>, learned: impl Fn(u64) -> bool) -> Option<Match> {
        self.derived.learned_rules.iter().find_map(|&(r, l, tag)| {
            let r = RuleId::from_stored(r)?;
            (learned(tag) && self.holds(r, f)).then_some(Match {
                rule: r,
                hit: Hit::Learned(l),
            })
        })
    }

    /// Does any rule arm residual blocking?
    pub fn has_residual(&self) -> bool {
        self.meta.rules.iter().any(|r| r.residual.is_some())
    }

    /// Does rule `r` accept the packet `f` describes?
    pub fn holds(&self, r: RuleId, f: &Facts<'_>) -> bool {
        let rule = self.rule(r);
        let c = &rule.cond;
        if !c.packet_holds(f) || rule.ech.is_some_and(|e| e != f.ech) {
            return false;
        }
        if c.probability
            .is_some_and(|p| !p.hit(crate::random::rule_draw(f.draw, r.stored())))
        {
            return false;
        }
        if !c.dst_lists.is_empty() && !c.dst_lists.iter().any(|&l| self.ip_in_list(l, f.server)) {
            return false;
        }
        if !c.src_lists.is_empty() && !c.src_lists.iter().any(|&l| self.ip_in_list(l, f.client)) {
            return false;
        }
        !c.except.iter().any(|&l| {
            self.ip_in_list(l, f.server)
                || self.ip_in_list(l, f.client)
                || (!f.name.is_empty() && self.name_in_list(l, f.name))
        })
    }

    /// The entry of list `l` that holds `ip`, as an index in the main table.
    fn member(&self, l: u16, ip: IpAddr) -> Option<Hit> {
        let (_, v4, v6) = self.derived.members.iter().find(|m| m.0 == l)?;
        match ip {
            IpAddr::V4(a) => v4.lookup(a.into()).map(|i| Hit::V4(v4.entry(i).line)),
            IpAddr::V6(a) => {
                let a = u128::from(a);
                if a >> 32 == 0xffff {
                    return v4.lookup(a as u32).map(|i| Hit::V4(v4.entry(i).line));
                }
                v6.lookup(a).map(|i| Hit::V6(v6.entry(i).line))
            }
        }
    }

    /// Is `ip` in list `l`? (Only for lists conditions name.)
    pub fn ip_in_list(&self, l: u16, ip: IpAddr) -> bool {
        self.member(l, ip).is_some()
    }

    /// Is the normalised `name` matched by an entry of list `l`?
    pub fn name_in_list(&self, l: u16, name: &[u8]) -> bool {
        let mut found = false;
        self.domains
            .for_each_match(name, |_, e, _| found |= e.list == l);
        if !found {
            self.keywords
                .for_each_match(name, |_, e| found |= e.list == l);
        }
        found
    }

    /// The first rule from `first` on, among those using list `l` in
    /// `column`, whose conditions `f` meets.
    #[inline]
    fn first_holding(&self, l: u16, column: usize, first: RuleId, f: &Facts<'_>) -> Option<RuleId> {
        if !self.derived.conditional {
            return Some(first);
        }
        self.derived.chains[l as usize * COLUMNS + column]
            .iter()
            .filter_map(|&r| RuleId::from_stored(r))
            .filter(|&r| r >= first)
            .find(|&r| self.holds(r, f))
    }

    /// [`Ruleset::match_hello`] with the rules' conditions checked against
    /// `f` (whose `name` is the normalised name): a candidate whose rule's
    /// conditions fail yields to the next rule using its list.
    #[inline]
    pub fn match_hello_when(&self, trigger: Trigger, name: &[u8], f: &Facts<'_>) -> Option<Match> {
        let t = column(trigger, f.ech);
        self.best_candidate(t, name, |list, first| self.first_holding(list, t, first, f))
    }

    /// The deciding IP rule for one address of the packet `f` describes,
    /// conditions checked.
    pub fn match_ip_when(&self, ip: IpAddr, f: &Facts<'_>) -> Option<Match> {
        if !self.derived.ip_conditional {
            return self.match_ip(ip);
        }
        // The main table keeps one winner per range; with conditions the
        // winner's rule may fail and a later rule on another list decide,
        // so walk the IP rules in order over their lists' own tables.
        self.derived.ip_rules.iter().find_map(|&r| {
            let r = RuleId::from_stored(r)?;
            let hit = self
                .rule(r)
                .lists
                .iter()
                .find_map(|&l| self.member(l, ip))?;
            self.holds(r, f).then_some(Match { rule: r, hit })
        })
    }

    /// The first protocol rule (policy order) whose conditions `f` meets.
    pub fn match_protocol(&self, f: &Facts<'_>) -> Option<Match> {
        if f.protocol?.bit() & self.derived.protocols_wanted == 0 {
            return None;
        }
        self.derived.protocol_rules.iter().find_map(|&r| {
            let r = RuleId::from_stored(r)?;
            self.holds(r, f).then_some(Match {
                rule: r,
                hit: Hit::Rule,
            })
        })
    }

    /// The deciding rule for a normalised name seen as `trigger`: every
    /// domain entry on a label-boundary suffix and every keyword inside the
    /// name is a candidate; the candidate whose rule comes first wins, ties
    /// going to the more specific name.
    #[inline]
    pub fn match_name(&self, trigger: Trigger, name: &[u8]) -> Option<Match> {
        self.match_hello(trigger, false, name)
    }

    /// Does any list hold domain names (so that a name lookup reads the
    /// domain table)?
    #[inline]
    pub fn has_domains(&self) -> bool {
        !self.domains.is_empty()
    }

    /// Start loading what a lookup of the name `wire` (as sent: any case,
    /// a trailing dot) will read of the domain table, and nothing else:
    /// see [`DomainTable::prefetch`]. A hint; it changes no result.
    #[inline]
    pub fn prefetch_name(&self, wire: &[u8]) {
        if !self.has_domains() {
            return;
        }
        let mut buf = [0u8; crate::name::MAX_NAME_LEN];
        if let Some(name) = crate::name::normalize_wire(wire, &mut buf) {
            self.domains.prefetch(name);
        }
    }

    /// Like [`Ruleset::match_name`] for a ClientHello's SNI, honouring the
    /// rules' `ech:` conditions.
    #[inline]
    pub fn match_hello(&self, trigger: Trigger, ech: bool, name: &[u8]) -> Option<Match> {
        self.best_candidate(column(trigger, ech), name, |_, first| Some(first))
    }

    /// Every domain entry and keyword matching `name` is a candidate with
    /// the first rule using its list in column `t`, which `pick` may move
    /// to a later rule (conditions) or reject; the earliest rule wins, ties
    /// going to the whole name over a suffix. `pick` is a closure so that
    /// the unconditional path compiles to the plain table walk.
    #[inline]
    fn best_candidate(
        &self,
        t: usize,
        name: &[u8],
        pick: impl Fn(u16, RuleId) -> Option<RuleId>,
    ) -> Option<Match> {
        let mut best: Option<(RuleId, bool, Hit)> = None;
        let first = &self.meta.first_rule;
        self.domains.for_each_match(name, |idx, e, whole| {
            let Some(r) =
                RuleId::from_stored(first[e.list as usize][t]).and_then(|r| pick(e.list, r))
            else {
                return;
            };
            let better = match best {
                None => true,
                Some((br, bwhole, _)) => r < br || (r == br && whole && !bwhole),
            };
            if better {
                best = Some((r, whole, Hit::Name(idx)));
            }
        });
        self.keywords.for_each_match(name, |idx, e| {
            let Some(r) =
                RuleId::from_stored(first[e.list as usize][t]).and_then(|r| pick(e.list, r))
            else {
                return;
            };
            if best.is_none_or(|(br, _, _)| r < br) {
                best = Some((r, false, Hit::Keyword(idx)));
            }
        });
        best.map(|(rule, _, hit)| Match { rule, hit })
    }

    #[inline]
    /// The deciding IP rule for an IPv4 address.
    pub fn match_v4(&self, addr: u32) -> Option<Match> {
        let idx = self.v4.lookup(addr)?;
        let e = self.v4.entry(idx);
        Some(Match {
            rule: RuleId::from_stored(self.meta.first_rule[e.list as usize][Trigger::Ip.index()])?,
            hit: Hit::V4(idx),
        })
    }

    /// IPv4-mapped addresses (`::ffff:a.b.c.d`) are matched as IPv4.
    #[inline]
    pub fn match_v6(&self, addr: u128) -> Option<Match> {
        if addr >> 32 == 0xffff {
            return self.match_v4(addr as u32);
        }
        let idx = self.v6.lookup(addr)?;
        let e = self.v6.entry(idx);
        Some(Match {
            rule: RuleId::from_stored(self.meta.first_rule[e.list as usize][Trigger::Ip.index()])?,
            hit: Hit::V6(idx),
        })
    }

    /// The deciding IP rule for an address of either family.
    pub fn match_ip(&self, ip: IpAddr) -> Option<Match> {
        match ip {
            IpAddr::V4(a) => self.match_v4(a.into()),
            IpAddr::V6(a) => self.match_v6(a.into()),
        }
    }

    /// The rule with this id. Every id a lookup returns is valid: loading
    /// checks the tables name only rules that exist.
    pub fn rule(&self, id: RuleId) -> &RuleMeta {
        &self.meta.rules[id.index()]
    }

    /// For a reload from these rules to `new`: each of these rules' id in
    /// `new`, found by its name (names are unique in a policy), or `None`
    /// where `new` has no rule of that name. Indexed by the old id. State
    /// that outlives a reload (residual blocks) keeps naming its rule
    /// through it.
    pub fn renumbering(&self, new: &Ruleset) -> Vec<Option<RuleId>> {
        let by_name: std::collections::HashMap<&str, usize> = new
            .meta
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.as_str(), i))
            .collect();
        self.meta
            .rules
            .iter()
            .map(|r| by_name.get(r.name.as_str()).and_then(|&i| RuleId::new(i)))
            .collect()
    }

    /// The action of a match, or the policy default.
    pub fn action(&self, m: Option<&Match>) -> &Action {
        match m {
            Some(m) => &self.rule(m.rule).action,
            None => &self.meta.default_action,
        }
    }

    /// The list an entry belongs to ([`Hit::Rule`]: none, `u16::MAX`).
    pub fn list_of(&self, hit: Hit) -> u16 {
        match hit {
            Hit::Rule => u16::MAX,
            Hit::Learned(l) => l,
            Hit::Name(i) => self.domains.entry(i).list,
            Hit::Keyword(i) => self.keywords.entry(i).list,
            Hit::V4(i) => self.v4.entry(i).list,
            Hit::V6(i) => self.v6.entry(i).list,
        }
    }

    /// The hit in words: list, entry as listed, file:line, registry decision.
    pub fn describe(&self, hit: Hit) -> HitInfo {
        let list = self.list_of(hit);
        let (entry, kind, line) = match hit {
            Hit::Rule => {
                return HitInfo {
                    list: String::new(),
                    entry: String::new(),
                    kind: "conditions",
                    source: String::new(),
                    decision: None,
                    decision_date: None,
                    org: None,
                }
            }
            Hit::Learned(l) => {
                return HitInfo {
                    list: self.meta.lists[l as usize].name.clone(),
                    entry: String::new(),
                    kind: "learned",
                    source: "learnt at run time".into(),
                    decision: None,
                    decision_date: None,
                    org: None,
                }
            }
            Hit::Name(i) => {
                let e = self.domains.entry(i);
                let name = String::from_utf8_lossy(self.domains.name(i)).into_owned();
                let shown = if e.mode == MODE_SUBDOMAINS {
                    format!("*.{name}")
                } else {
                    name
                };
                (shown, mode_str(e.mode), self.domains.line(i))
            }
            Hit::Keyword(i) => (
                String::from_utf8_lossy(self.keywords.pattern(i)).into_owned(),
                "keyword",
                self.keywords.entry(i).line,
            ),
            Hit::V4(i) => {
                let e = self.v4.entry(i);
                (
                    format!("{}/{}", std::net::Ipv4Addr::from(e.addr), e.len),
                    "prefix",
                    e.line,
                )
            }
            Hit::V6(i) => {
                let e = self.v6.entry(i);
                (
                    format!("{}/{}", std::net::Ipv6Addr::from(e.addr), e.len),
                    "prefix",
                    e.line,
                )
            }
        };
        let lm = &self.meta.lists[list as usize];
        let record = self.record(list, line);
        HitInfo {
            list: lm.name.clone(),
            entry,
            kind,
            source: format!("{}:{}", lm.source, line),
            decision: record.map(|r| r.0.to_string()),
            decision_date: record.map(|r| r.1.to_string()),
            org: record.map(|r| r.2.to_string()),
        }
    }

    /// The registry record (decision, date, organisation) at `line` of `list`.
    pub fn record(&self, list: u16, line: u32) -> Option<(&str, &str, &str)> {
        let i = self
            .records
            .binary_search_by(|r| (r.list, r.line).cmp(&(list, line)))
            .ok()?;
        let r = &self.records[i];
        let s = |off: usize, len: u16| {
            std::str::from_utf8(&self.record_blob[off..off + len as usize]).unwrap_or("?")
        };
        let off = r.off as usize;
        let d = s(off, r.decision_len);
        let off = off + r.decision_len as usize;
        let date = s(off, r.date_len);
        let off = off + r.date_len as usize;
        Some((d, date, s(off, r.org_len)))
    }

    /// Every entry of any list whose name is exactly `name`.
    pub fn name_entries(&self, name: &[u8]) -> Vec<Hit> {
        let mut v = Vec::new();
        self.domains.find_key(name, |i, _| v.push(Hit::Name(i)));
        v
    }

    /// The name table.
    pub fn domain_table(&self) -> &DomainTable {
        &self.domains
    }
    /// The keyword table.
    pub fn keyword_table(&self) -> &KeywordTable {
        &self.keywords
    }
    /// The IPv4 table.
    pub fn v4_table(&self) -> &PrefixTable<u32> {
        &self.v4
    }
    /// The IPv6 table.
    pub fn v6_table(&self) -> &PrefixTable<u128> {
        &self.v6
    }

    /// Bytes the lookup tables hold in memory.
    pub fn memory_bytes(&self) -> usize {
        self.domains.memory_bytes()
            + self.keywords.memory_bytes()
            + self.v4.memory_bytes()
            + self.v6.memory_bytes()
            + self.records.len() * std::mem::size_of::<RecordEntry>()
            + self.record_blob.len()
    }

    /// Cross-table consistency: every index, offset and cross-reference a
    /// lookup, [`Ruleset::describe`] or [`Ruleset::record`] follows, so that
    /// a file with a valid hash but crafted tables is refused, not trusted.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let lists = self.meta.lists.len();
        let rules = self.meta.rules.len();
        if lists > MAX_LISTS {
            return Err(format!(
                "{lists} lists, more than the {MAX_LISTS} list ids can name"
            ));
        }
        if rules > RuleId::MAX_RULES {
            return Err(format!(
                "{rules} rules, more than the {} rule ids can name",
                RuleId::MAX_RULES
            ));
        }
        for r in &self.meta.rules {
            if let Some(l) = r.lists.iter().find(|&&l| l as usize >= lists) {
                return Err(format!(
                    "rule `{}` names list {l}, a list that does not exist ({lists} lists)",
                    r.name
                ));
            }
        }
        for r in &self.meta.rules {
            let c = &r.cond;
            if let Some(l) = c.lists().find(|&l| l as usize >= lists) {
                return Err(format!(
                    "rule `{}` has a condition on list {l}, a list that does not exist ({lists} lists)",
                    r.name
                ));
            }
            if c.dst_ports.iter().chain(&c.src_ports).any(|p| p.lo > p.hi) {
                return Err(format!(
                    "rule `{}` has a port range that ends before it starts",
                    r.name
                ));
            }
            if (r.on & Trigger::Protocol.bit() != 0) != (r.lists.is_empty() && c.protocols != 0)
                || r.on & Trigger::Residual.bit() != 0
            {
                return Err(format!(
                    "rule `{}`: a protocol rule has protocols and no lists, and only it",
                    r.name
                ));
            }
            if let Action::Learn { list, ttl, .. } = &r.action {
                let dynamic = self
                    .meta
                    .lists
                    .iter()
                    .any(|m| &m.name == list && m.format == ListFormat::Dynamic);
                if !dynamic || *ttl == 0 {
                    return Err(format!(
                        "rule `{}` learns into `{list}`, which is not a dynamic list (or for 0 seconds)",
                        r.name
                    ));
                }
            }
            if r.residual.is_some_and(|x| x.seconds == 0) {
                return Err(format!(
                    "rule `{}` has a residual block of 0 seconds",
                    r.name
                ));
            }
        }
        if matches!(self.meta.default_action, Action::Learn { .. }) {
            return Err("the default action cannot be `learn`".into());
        }
        if self.meta.first_rule.len() != lists {
            return Err("first-rule table does not cover every list".into());
        }
        if self.meta.first_rule != first_rule_table(&self.meta.rules, lists) {
            return Err("first-rule table disagrees with the rules' lists and triggers".into());
        }
        let ip_rule = |l: u16| self.meta.first_rule[l as usize][Trigger::Ip.index()] != NO_RULE;
        self.domains.validate(lists)?;
        self.v4.validate(lists, ip_rule)?;
        self.v6.validate(lists, ip_rule)?;
        self.keywords.validate(lists)?;
        for r in &self.records {
            if r.list as usize >= lists {
                return Err(format!(
                    "record at line {} has list {}, which does not exist",
                    r.line, r.list
                ));
            }
            let end =
                r.off as usize + r.decision_len as usize + r.date_len as usize + r.org_len as usize;
            let Some(text) = self.record_blob.get(r.off as usize..end) else {
                return Err(format!("record at line {} points past its text", r.line));
            };
            let (d, rest) = text.split_at(r.decision_len as usize);
            let (date, org) = rest.split_at(r.date_len as usize);
            if [d, date, org]
                .iter()
                .any(|f| std::str::from_utf8(f).is_err())
            {
                return Err(format!("record at line {} is not UTF-8", r.line));
            }
        }
        if self
            .records
            .windows(2)
            .any(|w| (w[0].list, w[0].line) >= (w[1].list, w[1].line))
        {
            return Err("records are not sorted".into());
        }
        Ok(())
    }
}

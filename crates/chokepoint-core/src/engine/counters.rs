//! What the engine counts.

use chokepoint_ruleset::{Protocol, Trigger, Verdict};

use crate::decode::Problem;

/// Everything the engine counts. Plain integers: one engine per worker,
/// summed by whoever reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames seen.
    pub packets: u64,
    /// Bytes of those frames.
    pub bytes: u64,
    /// Packets by the verdict they got.
    pub packets_by_verdict: [u64; Verdict::COUNT],
    /// Bytes by the verdict they got.
    pub bytes_by_verdict: [u64; Verdict::COUNT],
    /// Frames that are not IP (ARP, LLDP...), passed.
    pub not_ip: u64,
    /// Parse problems by kind; the packets still reached the policy.
    pub problems: [u64; Problem::COUNT],
    /// Decisions by what decided them.
    pub decisions_by_trigger: [u64; Trigger::COUNT],
    /// Events beyond the per-packet buffer.
    pub events_dropped: u64,
    /// Reassembly refused data: byte cap.
    pub reassembly_cap_bytes: u64,
    /// Reassembly refused data: segment cap.
    pub reassembly_cap_segments: u64,
    /// Reassembly refused data because all flows' buffers together were
    /// at the memory budget; the flow's buffer was dropped and the flow
    /// passed uninspected.
    pub reassembly_budget_refused: u64,
    /// Bytes the reassembly buffers of all flows hold now (a gauge, as of
    /// the last insert or reading).
    pub reassembly_bytes_held: u64,
    /// Bytes this engine's reassembly buffers may hold: its part of the
    /// box's `reassembly_memory_budget` (a gauge; summed over workers, the
    /// box's budget).
    pub reassembly_budget_bytes: u64,
    /// ClientHellos larger than the engine gathers.
    pub client_hello_too_large: u64,
    /// Flows passed uninspected because the budget ran out first.
    pub inspection_budget_exhausted: u64,
    /// QUIC Initial packets of a known version.
    pub quic_initials: u64,
    /// QUIC Initials that did not decrypt.
    pub quic_decrypt_failures: u64,
    /// DNS questions decided (a query may hold several).
    pub dns_queries: u64,
    /// Flows a reload re-decided.
    pub reevaluated: u64,
    /// Flows a reload could not re-decide, because the name they were
    /// decided on was not kept (re-evaluation was off when they were
    /// decided): they keep their decision.
    pub reevaluate_name_unknown: u64,
    /// Packets dropped because their flow was frozen (`freeze`).
    pub frozen: u64,
    /// Packets dropped by a `degrade` draw.
    pub degraded: u64,
    /// Residual blocks armed by rules with `residual:`.
    pub residual_armed: u64,
    /// New flows a residual block decided.
    pub residual_hits: u64,
    /// Residual blocks pushed out by a full table before their end.
    pub residual_evicted: u64,
    /// Residual blocks that ended.
    pub residual_expired: u64,
    /// Client segments skipped as TTL-limited fakes (`ttl_fakes: ignore`).
    pub ttl_fakes_ignored: u64,
    /// Urgent bytes taken out of client streams (`urgent: strip`).
    pub urgent_bytes_stripped: u64,
    /// Segments that overlapped held stream bytes with different bytes.
    pub overlap_conflicts: u64,
    /// Segments skipped for a bad TCP/UDP checksum (`checksums: verify`).
    pub bad_checksums: u64,
    /// Flows the protocol classifiers of [`crate::classify`] recognised, by
    /// protocol (only protocols some rule asks for are classified; TLS,
    /// QUIC, HTTP and DNS have counters of their own).
    pub protocols: [u64; Protocol::COUNT],
    /// Servers `learn` actions handed to the dynamic lists.
    pub learned: u64,
    /// `learn` decisions with nowhere to learn to (no store was given to
    /// the engine): the flow was forwarded, nothing was learnt.
    pub learn_unstored: u64,
    /// Flows an IP rule on a dynamic list decided (new flows to a learnt
    /// server, and learnt flows once their entry blocks).
    pub learned_hits: u64,
}

impl Counters {
    /// Add another engine's counters (workers are summed for reports; the
    /// gauge `reassembly_bytes_held` sums to all workers' holdings). The
    /// destructuring makes a new field a compile error here until it is
    /// summed too.
    pub fn add(&mut self, other: &Counters) {
        let Counters {
            packets,
            bytes,
            not_ip,
            events_dropped,
            reassembly_cap_bytes,
            reassembly_cap_segments,
            reassembly_budget_refused,
            reassembly_bytes_held,
            reassembly_budget_bytes,
            client_hello_too_large,
            inspection_budget_exhausted,
            quic_initials,
            quic_decrypt_failures,
            dns_queries,
            reevaluated,
            reevaluate_name_unknown,
            frozen,
            degraded,
            residual_armed,
            residual_hits,
            residual_evicted,
            residual_expired,
            ttl_fakes_ignored,
            urgent_bytes_stripped,
            overlap_conflicts,
            bad_checksums,
            protocols,
            learned,
            learn_unstored,
            learned_hits,
            packets_by_verdict,
            bytes_by_verdict,
            problems,
            decisions_by_trigger,
        } = *other;
        self.packets += packets;
        self.bytes += bytes;
        self.not_ip += not_ip;
        self.events_dropped += events_dropped;
        self.reassembly_cap_bytes += reassembly_cap_bytes;
        self.reassembly_cap_segments += reassembly_cap_segments;
        self.reassembly_budget_refused += reassembly_budget_refused;
        self.reassembly_bytes_held += reassembly_bytes_held;
        self.reassembly_budget_bytes += reassembly_budget_bytes;
        self.client_hello_too_large += client_hello_too_large;
        self.inspection_budget_exhausted += inspection_budget_exhausted;
        self.quic_initials += quic_initials;
        self.quic_decrypt_failures += quic_decrypt_failures;
        self.dns_queries += dns_queries;
        self.reevaluated += reevaluated;
        self.reevaluate_name_unknown += reevaluate_name_unknown;
        self.frozen += frozen;
        self.degraded += degraded;
        self.residual_armed += residual_armed;
        self.residual_hits += residual_hits;
        self.residual_evicted += residual_evicted;
        self.residual_expired += residual_expired;
        self.ttl_fakes_ignored += ttl_fakes_ignored;
        self.urgent_bytes_stripped += urgent_bytes_stripped;
        self.overlap_conflicts += overlap_conflicts;
        self.bad_checksums += bad_checksums;
        self.learned += learned;
        self.learn_unstored += learn_unstored;
        self.learned_hits += learned_hits;
        for (sum, n) in self.protocols.iter_mut().zip(protocols) {
            *sum += n;
        }
        for (sum, n) in self.packets_by_verdict.iter_mut().zip(packets_by_verdict) {
            *sum += n;
        }
        for (sum, n) in self.bytes_by_verdict.iter_mut().zip(bytes_by_verdict) {
            *sum += n;
        }
        for (sum, n) in self.problems.iter_mut().zip(problems) {
            *sum += n;
        }
        for (sum, n) in self
            .decisions_by_trigger
            .iter_mut()
            .zip(decisions_by_trigger)
        {
            *sum += n;
        }
    }
}

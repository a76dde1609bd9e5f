//! The engine's [`Profile`]: how the censor inspects traffic. It travels in
//! the artifact with the rules, so a node enforces exactly what was compiled.

use serde::{Deserialize, Serialize};

/// Which directions of a flow are inspected for names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Only what the client (the side that opened the flow) sends.
    ClientToServer,
    /// Both directions (a server's certificate or a DNS answer names too).
    Both,
}

/// TCP urgent data (URG with an urgent pointer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Urgent {
    /// Read the urgent byte inline, as part of the stream (a naive reader:
    /// a name with an urgent byte inside is corrupted).
    Keep,
    /// Drop the urgent byte as a Linux receiver does by default (without
    /// `SO_OOBINLINE`): with urgent pointer `u`, payload byte `u - 1` is
    /// not part of the stream, and later bytes move up one. A pointer past
    /// the segment's end (the byte comes later) is not followed.
    Strip,
}

/// Client segments that arrive with a lower TTL (hop limit) than the
/// flow's first client packet: fakes sent to die before the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TtlFakes {
    /// Inspect them like any other segment.
    Trust,
    /// Skip segments whose TTL is below the first one's by more than
    /// `ttl_margin`: they will not reach the server.
    Ignore,
}

/// Which copy of stream bytes counts when segments overlap with
/// different bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// The bytes received first stay.
    First,
    /// A later copy replaces them (until the stream is read).
    Last,
    /// As `first`; and when a later client segment carries the decided
    /// ClientHello's sequence range whole with different bytes, the flow
    /// is decided again on it (a censor that rereads retransmissions).
    Reinspect,
}

/// TCP and UDP checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Checksums {
    /// Inspect every segment whatever its checksum.
    Trust,
    /// Skip segments with a bad checksum, as the server's stack would.
    Verify,
}

/// How a ClientHello split across TLS records is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsRecords {
    /// Gather the handshake message across records.
    Reassemble,
    /// Read the first record only: a hello that does not fit in it is
    /// not read.
    FirstOnly,
}

/// Idle timeouts per flow state, in seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// TCP before the handshake completes.
    pub syn: u32,
    /// TCP after the handshake.
    pub established: u32,
    /// TCP after a FIN or RST.
    pub fin: u32,
    /// UDP flows.
    pub udp: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            syn: 60,
            established: 300,
            fin: 60,
            udp: 60,
        }
    }
}

/// The realism knobs of the packet core. Later versions add more (residual
/// blocking, RST/TCB behaviours); unknown keys are still errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Profile {
    /// Reassemble a ClientHello (or HTTP request) split over TCP segments.
    /// Off, only names inside the first data segment are seen (old DPI).
    pub reassemble_client_hello: bool,
    /// Data packets per flow inspected before the flow is passed unseen.
    pub max_inspect_packets: u32,
    /// Payload bytes per flow inspected before the flow is passed unseen.
    pub max_inspect_bytes: u32,
    /// TCP/UDP server ports inspected for TLS, QUIC and HTTP; empty = all.
    /// DNS is recognised on port 53 whatever this says.
    pub inspect_ports: Vec<u16>,
    /// Reassemble IP fragments before inspection.
    pub defragment: bool,
    /// Which directions are inspected for names.
    pub direction: Direction,
    /// Flows the box tracks: each of N workers' tables holds `max_flows / N`
    /// (rounded up), sized at start. Beyond it the least recently seen of
    /// a sample is evicted.
    pub max_flows: u32,
    /// Idle timeouts per flow state.
    pub timeouts: Timeouts,
    /// Per-flow cap on bytes held for stream reassembly.
    pub reassembly_max_bytes: u32,
    /// Per-flow cap on out-of-order segments held.
    pub reassembly_max_segments: u32,
    /// Bytes all the box's reassembly buffers may allocate together, split
    /// evenly over its workers; data beyond a worker's part is refused and
    /// its flow passes uninspected. 0 (`auto`, the default): sized for the
    /// machine by [`Profile::reassembly_budget_for`]. Written `auto` where
    /// people read it (YAML, JSON), 0 in the artifact.
    #[serde(with = "bytes_or_auto")]
    pub reassembly_memory_budget: u64,
    /// Datagrams being reassembled from IP fragments at once.
    pub max_fragment_datagrams: u32,
    /// Seconds an incomplete fragmented datagram is kept.
    pub fragment_timeout: u32,
    /// On a rules reload, decide flows already decided again under the new
    /// rules (from their addresses and the name they carried). Off, a flow
    /// keeps the decision it got, as a box that only checks new flows.
    pub reevaluate_on_reload: bool,
    /// Seeds the random draws of `freeze` and `degrade` (with each flow's
    /// serial number): the same capture, policy and seed give the same
    /// packets dropped, run after run.
    pub seed: u64,
    /// Residual blocks held at once (rules with `residual:`); past it the
    /// block armed longest ago is evicted, and counted.
    pub max_residual_entries: u32,
    /// Entries all dynamic lists hold at once (`learn` actions); past it
    /// the entry learnt longest ago is evicted, and counted. The lists
    /// live outside the engine and survive a reload, which applies a new
    /// value.
    pub max_learned_entries: u32,
    /// TCP urgent data: read inline or stripped.
    pub urgent: Urgent,
    /// Client segments with a lower TTL than the flow's first packet.
    pub ttl_fakes: TtlFakes,
    /// How far below the first client packet's TTL a segment may arrive
    /// and still count (routes change, and a fake is usually several hops
    /// short).
    pub ttl_margin: u8,
    /// Which copy wins when TCP segments overlap with different bytes.
    pub overlap: Overlap,
    /// TCP/UDP checksums: trusted or verified.
    pub checksums: Checksums,
    /// Stop inspecting a TCP flow once either side sends RST or FIN.
    pub teardown_on_rst: bool,
    /// A client SYN (or the server's SYN-ACK) moves the client stream's
    /// start, also in a flow whose start is known.
    pub resync_on_syn: bool,
    /// Read client segments only inside the stream's window (from its
    /// start to `reassembly_max_bytes` past it). Off, a segment outside
    /// it (zapret's `badseq` fake, which the server drops) is read on its
    /// own.
    pub in_window_only: bool,
    /// Reassemble a TLS stream only if the first client data segment holds
    /// a TLS record header and the handshake type; otherwise the flow
    /// passes uninspected.
    pub first_segment_gate: bool,
    /// A ClientHello split across TLS records: gathered, or the first
    /// record only.
    pub tls_records: TlsRecords,
}

/// `reassembly_memory_budget: auto`, as the profile stores it.
pub const AUTO: u64 = 0;

/// A byte count that may be [`AUTO`]: the word `auto` in human-readable
/// formats (where a literal 0 is refused: it would read as `auto`), 0 in
/// the artifact's (postcard). The policy's YAML reads its budget with it.
pub mod bytes_or_auto {
    use super::AUTO;
    use serde::{de, Deserializer, Serializer};

    /// `auto` for [`AUTO`] where people read it, else the number.
    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() && *v == AUTO {
            s.serialize_str("auto")
        } else {
            s.serialize_u64(*v)
        }
    }

    /// A number of bytes or `auto`; the number 0 only where no person
    /// wrote it (the artifact).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = u64;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number of bytes or `auto`")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
                match v {
                    AUTO => Err(E::custom("0 bytes: give a budget, or `auto`")),
                    _ => Ok(v),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
                match v {
                    "auto" => Ok(AUTO),
                    _ => Err(E::custom(format!(
                        "`{v}`: give a number of bytes or `auto`"
                    ))),
                }
            }
        }
        if d.is_human_readable() {
            d.deserialize_any(V)
        } else {
            <u64 as serde::Deserialize>::deserialize(d)
        }
    }
}

const MIB: u64 = 1024 * 1024;

impl Profile {
    /// The box's reassembly budget on a machine with `memory` bytes of RAM
    /// (`None`: not known, as in an engine used without a runtime). A set
    /// budget is itself; `auto` is a sixteenth of the memory, at least
    /// 64 MiB and at most 4 GiB, or 256 MiB when the memory is not known.
    /// The sixteenth is a judgement, not a measurement of any censor: the
    /// flow table at the default cap takes ~148 MiB, and a box's memory
    /// is mostly for its lists and flows; reassembly holds only the
    /// handshakes in flight (a ClientHello is 0.3-2 KiB), so even a
    /// 64 MiB budget holds tens of thousands of them.
    pub fn reassembly_budget_for(&self, memory: Option<u64>) -> u64 {
        match self.reassembly_memory_budget {
            AUTO => memory.map_or(256 * MIB, |m| (m / 16).clamp(64 * MIB, 4096 * MIB)),
            set => set,
        }
    }
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            reassemble_client_hello: true,
            max_inspect_packets: 32,
            max_inspect_bytes: 64 * 1024,
            inspect_ports: Vec::new(),
            defragment: true,
            direction: Direction::ClientToServer,
            max_flows: 1 << 20,
            timeouts: Timeouts::default(),
            reassembly_max_bytes: 32 * 1024,
            reassembly_max_segments: 32,
            reassembly_memory_budget: AUTO,
            max_fragment_datagrams: 4096,
            fragment_timeout: 30,
            reevaluate_on_reload: false,
            seed: 0,
            max_residual_entries: 65_536,
            max_learned_entries: 65_536,
            urgent: Urgent::Keep,
            ttl_fakes: TtlFakes::Trust,
            ttl_margin: 1,
            overlap: Overlap::First,
            checksums: Checksums::Trust,
            teardown_on_rst: false,
            resync_on_syn: true,
            in_window_only: true,
            first_segment_gate: false,
            tls_records: TlsRecords::Reassemble,
        }
    }
}

/// Named profiles for censors as measured: `profile: {preset: NAME}`, any
/// knob beside it overriding. Where each value comes from is in
/// docs/POLICY.md ("Presets").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Preset {
    /// One packet at a time, no reassembly, everything trusted: CensorLab
    /// and most teaching censors.
    #[serde(rename = "naive")]
    Naive,
    /// Russia's TSPU as measured in 2022.
    #[serde(rename = "tspu-2022")]
    Tspu2022,
    /// Russia's TSPU as measured in 2024-2025.
    #[serde(rename = "tspu-2025")]
    Tspu2025,
    /// China's GFW as measured up to 2025.
    #[serde(rename = "gfw-2025")]
    Gfw2025,
    /// Sees exactly what the server's TCP stack accepts.
    #[serde(rename = "hardened")]
    Hardened,
}

impl Preset {
    /// Every preset, in the order the docs list them.
    pub const ALL: [Preset; 5] = [
        Preset::Naive,
        Preset::Tspu2022,
        Preset::Tspu2025,
        Preset::Gfw2025,
        Preset::Hardened,
    ];

    /// The name a policy gives it.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Naive => "naive",
            Preset::Tspu2022 => "tspu-2022",
            Preset::Tspu2025 => "tspu-2025",
            Preset::Gfw2025 => "gfw-2025",
            Preset::Hardened => "hardened",
        }
    }

    /// The preset called `name`.
    pub fn from_name(name: &str) -> Option<Preset> {
        Preset::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The profile it stands for; knobs it does not name keep the defaults.
    pub fn profile(self) -> Profile {
        let base = Profile::default();
        match self {
            Preset::Naive => Profile {
                reassemble_client_hello: false,
                defragment: false,
                tls_records: TlsRecords::FirstOnly,
                in_window_only: false,
                ..base
            },
            Preset::Tspu2022 => Profile {
                reassemble_client_hello: false,
                ..base
            },
            Preset::Tspu2025 => Profile {
                first_segment_gate: true,
                ..base
            },
            Preset::Gfw2025 => Profile {
                checksums: Checksums::Verify,
                teardown_on_rst: true,
                resync_on_syn: true,
                ..base
            },
            Preset::Hardened => Profile {
                urgent: Urgent::Strip,
                ttl_fakes: TtlFakes::Ignore,
                ttl_margin: 1,
                overlap: Overlap::Last,
                checksums: Checksums::Verify,
                tls_records: TlsRecords::Reassemble,
                in_window_only: true,
                ..base
            },
        }
    }
}

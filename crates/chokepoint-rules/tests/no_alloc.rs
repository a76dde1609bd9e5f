//! Lookups must not allocate: the packet path calls them per packet.

use chokepoint_testkit::alloc::{allocations_in, Counting};

#[global_allocator]
static A: Counting = Counting;

#[test]
fn the_counter_counts() {
    let ((), n) = allocations_in(|| drop(std::hint::black_box(vec![1u8; 10])));
    assert_eq!(n, 1);
}

#[test]
fn lookups_do_not_allocate() {
    plain_lookups_do_not_allocate();
    lookups_with_conditions_do_not_allocate();
}

fn plain_lookups_do_not_allocate() {
    let yaml = "version: 1\nlists:\n  d: {format: domains, entries: [telegram.org, t.me, '*.wild.example']}\n  k: {format: keywords, entries: [t.co]}\n  n: {format: cidr, entries: [149.154.160.0/20, '2001:67c:4e8::/48']}\nrules:\n  - {name: d, match: {lists: [d, k]}, action: drop}\n  - {name: n, match: {list: n}, action: drop}\n";
    let rs = chokepoint_rules::compile_str(yaml, "t.yaml", std::path::Path::new(".")).unwrap();
    let names: [&[u8]; 5] = [
        b"web.telegram.org",
        b"reddit.com",
        b"a.wild.example",
        b"example.com",
        b"t.me",
    ];
    let v4: u32 = u32::from(std::net::Ipv4Addr::new(149, 154, 167, 99));
    let v6: u128 = "2001:67c:4e8::1"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .into();
    let mapped: u128 = "::ffff:149.154.167.99"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .into();
    let mut hits = 0;
    let ((), allocs) = allocations_in(|| {
        for _ in 0..1000 {
            for n in names {
                for t in chokepoint_rules::Trigger::NAMES {
                    hits += usize::from(rs.match_name(t, std::hint::black_box(n)).is_some());
                }
            }
            hits += usize::from(rs.match_v4(std::hint::black_box(v4)).is_some());
            hits += usize::from(rs.match_v6(std::hint::black_box(v6)).is_some());
            hits += usize::from(rs.match_v6(std::hint::black_box(mapped)).is_some());
        }
    });
    assert_eq!(hits, 1000 * (4 * 4 + 3));
    assert_eq!(allocs, 0, "lookups allocated {allocs} times");
}

fn lookups_with_conditions_do_not_allocate() {
    let yaml = r#"
version: 1
lists:
  names: {format: domains, entries: [blocked.example]}
  allow: {format: domains, entries: [ok.blocked.example]}
  hosting: {format: cidr, entries: [203.0.113.0/24]}
  nets: {format: cidr, entries: [198.51.100.0/24]}
  wide: {format: cidr, entries: [198.51.0.0/16]}
rules:
  - {name: quic, match: {protocols: [quic], quic_versions: [1], dst_ports: [443, "1000-2000"], min_bytes: 1001, first_packet: true}, action: drop}
  - {name: freeze, match: {protocols: [tls], dst_list: hosting, except: [allow]}, action: drop}
  - {name: sni, match: {list: names, on: [tls_sni], except: [allow], src_port_ge_dst_port: true}, action: reset}
  - {name: nets, match: {list: nets, on: [ip], proto: tcp, dst_ports: [8000]}, action: drop}
  - {name: wide, match: {list: wide, on: [ip]}, action: reset}
"#;
    let rs = chokepoint_rules::compile_str(yaml, "t.yaml", std::path::Path::new(".")).unwrap();
    let facts = |name: &'static [u8], protocol, server: &str, port: u16| chokepoint_rules::Facts {
        proto: 6,
        client: "198.18.0.1".parse().unwrap(),
        server: server.parse().unwrap(),
        client_port: 50000,
        server_port: port,
        payload_len: 1200,
        first_packet: true,
        quic_version: Some(1),
        ech: false,
        protocol: Some(protocol),
        name,
        draw: 0,
    };
    use chokepoint_rules::Protocol::{Quic, Tls};
    let cases = [
        facts(b"www.blocked.example", Tls, "203.0.113.9", 443),
        facts(b"ok.blocked.example", Tls, "203.0.113.9", 443),
        facts(b"www.blocked.example", Tls, "192.0.2.1", 443),
        facts(b"", Quic, "192.0.2.1", 443),
        facts(b"", Quic, "192.0.2.1", 80),
    ];
    let ips: [std::net::IpAddr; 2] = [
        "198.51.100.7".parse().unwrap(),
        "198.51.7.7".parse().unwrap(),
    ];
    let mut hits = 0;
    let ((), allocs) = allocations_in(|| {
        for _ in 0..1000 {
            for f in &cases {
                let f = std::hint::black_box(f);
                hits += usize::from(rs.match_protocol(f).is_some());
                if !f.name.is_empty() {
                    hits += usize::from(
                        rs.match_hello_when(chokepoint_rules::Trigger::TlsSni, f.name, f)
                            .is_some(),
                    );
                }
                for ip in ips {
                    hits += usize::from(rs.match_ip_when(ip, f).is_some());
                }
            }
        }
    });
    // protocol: freeze on the 1st, quic on the 4th; names: the 1st and
    // 3rd (the 2nd is excepted); addresses: `wide` for every case.
    assert_eq!(hits, 1000 * (2 + 2 + 5 * 2));
    assert_eq!(
        allocs, 0,
        "lookups with conditions allocated {allocs} times"
    );
}

//! The control helper as OONI's probes talk to it: JSON in, JSON out.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use chokepoint_probe::{failure, serve_helper, Helper};
use serde_json::{json, Value};
use support::{Answer, V4};

/// Sends raw bytes to the helper; the status code and the JSON body.
fn exchange(helper: SocketAddr, request: &[u8]) -> (u16, Value) {
    let mut s = TcpStream::connect(helper).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    let text = String::from_utf8_lossy(&reply);
    let (head, body) = text.split_once("\r\n\r\n").expect("a whole response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn post(helper: SocketAddr, body: &Value) -> (u16, Value) {
    let body = body.to_string();
    let request = format!(
        "POST / HTTP/1.1\r\nHost: th\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    exchange(helper, request.as_bytes())
}

#[test]
fn answers_oonis_control_response() {
    let site = TcpListener::bind((V4, 0)).unwrap();
    let port = site.local_addr().unwrap().port();
    let page = support::Reply::Page(200, "X-Site: 1\r\n", support::html("Hello control", 700));
    let _site = support::http_server(site, page);
    let dns = support::dns_server(&[("site.test", Answer::Addrs(vec![V4]))], false);
    let helper = support::helper(dns.addr, &[]);

    let closed = TcpListener::bind((V4, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let request = json!({
        "http_request": format!("http://site.test:{port}/"),
        "http_request_headers": {"User-Agent": ["test/1"]},
        // An endpoint of the probe's on another port is not connected to.
        "tcp_connect": [format!("127.0.0.1:{port}"), format!("127.0.0.1:{closed}")],
    });
    let (status, v) = post(helper.addr, &request);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["dns"], json!({"failure": null, "addrs": ["127.0.0.1"]}));
    let endpoint = format!("127.0.0.1:{port}");
    assert_eq!(
        v["tcp_connect"],
        json!({ endpoint: {"status": true, "failure": null} })
    );
    assert_eq!(v["tls_handshake"], json!({}));
    let http = &v["http_request"];
    assert_eq!(http["status_code"], 200);
    assert_eq!(http["body_length"], 700);
    assert_eq!(http["title"], "Hello control");
    assert_eq!(http["failure"], Value::Null);
    assert_eq!(http["headers"]["X-Site"], "1");
}

#[test]
fn nxdomain_is_dns_name_error_and_minus_one() {
    let dns = support::dns_server(&[("gone.test", Answer::NxDomain)], false);
    let helper = support::helper(dns.addr, &[]);
    let request = json!({
        "http_request": "https://gone.test/",
        "http_request_headers": {},
        "tcp_connect": [],
    });
    let (status, v) = post(helper.addr, &request);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["dns"]["failure"], failure::DNS_NAME_ERROR);
    assert_eq!(v["http_request"]["status_code"], -1);
    assert_eq!(v["http_request"]["body_length"], -1);
    assert_eq!(v["http_request"]["failure"], failure::DNS_NXDOMAIN);
}

#[test]
fn refuses_what_is_not_a_control_request() {
    let dns = support::dns_server(&[], false);
    let helper = support::helper(dns.addr, &[]);
    let (status, _) = exchange(helper.addr, b"GET / HTTP/1.1\r\nHost: th\r\n\r\n");
    assert_eq!(status, 405);
    let (status, v) = post(helper.addr, &json!({"http_request": "gopher://x/"}));
    assert_eq!(status, 400);
    assert!(v["error"].is_string());
    let (status, _) = post(helper.addr, &json!({"nonsense": true}));
    assert_eq!(status, 400);
}

#[test]
fn ends_by_itself_after_its_lifetime() {
    let dns = support::dns_server(&[], false);
    let cfg = support::config(dns.addr, None, &[]);
    let start = std::time::Instant::now();
    let stats = serve_helper(SocketAddr::new(V4, 0), &cfg, Duration::from_millis(200)).unwrap();
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!((stats.measured, stats.refused), (0, 0));
    // And a stop handle ends it sooner.
    let helper = Helper::bind(SocketAddr::new(V4, 0), &cfg).unwrap();
    helper.stop_handle().stop();
    let start = std::time::Instant::now();
    helper.serve(Duration::from_secs(60));
    assert!(start.elapsed() < Duration::from_secs(2));
}

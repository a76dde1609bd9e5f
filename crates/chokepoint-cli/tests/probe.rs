//! `chokepoint probe` and `chokepoint probe-helper` as a user runs them,
//! on loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chokepoint"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("binary runs")
}

/// A resolver nobody answers on (the discard port); IP URLs never ask it.
const NO_RESOLVER: &str = "127.0.0.1:9";

#[test]
fn bad_arguments_exit_2() {
    for args in [
        &["probe", "--resolver", NO_RESOLVER, "ftp://x.test/"][..],
        &["probe", "--resolver", "not-an-address", "x.test"],
        &[
            "probe",
            "--resolver",
            NO_RESOLVER,
            "--ca",
            "/nonexistent.pem",
            "x.test",
        ],
        &[
            "probe",
            "--resolver",
            NO_RESOLVER,
            "--timeout",
            "0",
            "x.test",
        ],
        &["probe", "--resolver", NO_RESOLVER],
        &[
            "probe",
            "--resolver",
            NO_RESOLVER,
            "--ech",
            "real",
            "x.test",
        ],
        &[
            "probe",
            "--resolver",
            NO_RESOLVER,
            "--quic-version",
            "v7",
            "x.test",
        ],
        &["probe-helper", "--listen", "nowhere"],
    ] {
        let o = run(args);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// Serves one small page to every connection until stopped (at most 16,
/// and for at most 30 s).
struct Site {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Site {
    fn start() -> Site {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut served = 0;
            while !flag.load(Ordering::SeqCst)
                && start.elapsed() < Duration::from_secs(30)
                && served < 16
            {
                let Ok((mut s, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                served += 1;
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                    if s.read(&mut b).unwrap_or(0) == 0 {
                        break;
                    }
                    head.push(b[0]);
                }
                let body = "<html><title>Hello probe</title>hello</html>";
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Site {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn probe_with_a_helper_says_false_for_an_open_site() {
    let site = Site::start();
    let mut helper = bin()
        .args([
            "probe-helper",
            "--listen",
            "127.0.0.1:0",
            "--resolver",
            NO_RESOLVER,
        ])
        .args(["--lifetime", "30"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("helper starts");
    let mut line = String::new();
    BufReader::new(helper.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let helper_addr = line
        .split_whitespace()
        .find_map(|w| w.parse::<SocketAddr>().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));

    let url = format!("http://{}/", site.addr);
    let helper_arg = helper_addr.to_string();
    let common = [
        "probe",
        "--resolver",
        NO_RESOLVER,
        "--helper",
        &helper_arg,
        "--timeout",
        "3",
    ];
    let json = run(&[
        &common[..],
        &["--json", url.as_str(), "ftp-less.test:99999"][..],
    ]
    .concat());
    // An input clap rejects ends the command before anything is measured.
    assert_eq!(json.status.code(), Some(2));

    let json = run(&[&common[..], &["--json", url.as_str()][..]].concat());
    assert!(
        json.status.success(),
        "{}",
        String::from_utf8_lossy(&json.stderr)
    );
    let text = String::from_utf8(json.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    let m: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(m["input"], url.as_str());
    assert_eq!(m["blocking"], serde_json::json!(false), "{m}");
    assert_eq!(m["accessible"], true);
    assert_eq!(m["failure"], serde_json::Value::Null);
    assert_eq!(m["analysis"], serde_json::json!([]));
    assert_eq!(m["control"]["http_request"]["title"], "Hello probe");

    let table = run(&[&common[..], &[url.as_str()][..]].concat());
    assert!(table.status.success());
    let table = String::from_utf8(table.stdout).unwrap();
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["INPUT", "BLOCKING", "FAILURE", "ANALYSIS"]);
    assert_eq!(rows[1], [url.as_str(), "false", "-", "-"]);

    // The helper is this test's child; it would end by itself after 30 s.
    helper.kill().unwrap();
    helper.wait().unwrap();
}

#[test]
fn helper_exits_by_itself() {
    let start = Instant::now();
    let o = run(&[
        "probe-helper",
        "--listen",
        "127.0.0.1:0",
        "--resolver",
        NO_RESOLVER,
        "--lifetime",
        "0.3",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(start.elapsed() < Duration::from_secs(5));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("listening on 127.0.0.1:"), "{err}");
    assert!(err.contains("0 measured"), "{err}");
}

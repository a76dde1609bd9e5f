//! `chokepoint collateral` on the fixtures in tests/data/collateral: the
//! two worked examples of docs/MECHANISMS.md (Twitter 2021's substring,
//! the 2018 cloud prefixes).

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn collateral(args: &[&str]) -> serde_json::Value {
    let o = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .current_dir(repo())
        .arg("collateral")
        .args(args)
        .arg("--json")
        .output()
        .expect("binary runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("JSON")
}

fn names_of(rule: &serde_json::Value) -> Vec<String> {
    rule["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

fn example<'a>(rule: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    rule["examples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {rule}"))
}

fn rule<'a>(report: &'a serde_json::Value, key: &str, name: &str) -> &'a serde_json::Value {
    report[key]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == name)
        .unwrap_or_else(|| panic!("no {name} in {report}"))
}

#[test]
fn the_twitter_substring_catches_reddit_microsoft_and_pinterest() {
    let r = collateral(&[
        "--policy",
        "config/twitter-2021.yaml",
        "--names",
        "tests/data/collateral/top-sites.csv",
    ]);
    assert_eq!(r["names_checked"], 50);
    let t = rule(&r, "name_rules", "twitter-throttle-2021");
    let mut caught = names_of(t);
    caught.sort();
    assert_eq!(
        caught,
        [
            "microsoft.com",
            "pinterest.com",
            "reddit.com",
            "t.co",
            "twimg.com",
            "twitter.com"
        ],
        "{t}"
    );
    assert_eq!(t["by_keyword"], 6);
    assert_eq!(t["action"], "throttle");
    let reddit = example(t, "reddit.com");
    assert_eq!(reddit["entry"], "t.co");
    assert_eq!(reddit["kind"], "keyword");
}

#[test]
fn the_2018_cloud_prefixes_cut_off_sites_no_name_rule_targets() {
    let r = collateral(&[
        "--names",
        "tests/data/collateral/top-sites.csv",
        "--resolutions",
        "tests/data/collateral/resolutions.txt",
    ]);
    let names = rule(&r, "name_rules", "telegram-names");
    let mut caught = names_of(names);
    caught.sort();
    assert_eq!(caught, ["t.me", "telegram.org", "web.telegram.org"]);
    assert_eq!(r["names_blocked"], 3);
    assert_eq!(r["resolved_names"], 8);
    let cloud = rule(&r, "address_rules", "cloud-collateral-2018");
    let mut cut: Vec<String> = names_of(cloud);
    cut.sort();
    // Plain lines, massdns's `name. A addr`, zdns and massdns JSON; t.me
    // is left out (a name rule targets it), the unlisted addresses pass.
    assert_eq!(
        cut,
        [
            "app-on-gcloud.example",
            "game-servers.example",
            "relay.example",
            "shop-on-aws.example",
            "static-assets.example"
        ],
        "{cloud}"
    );
    let shop = example(cloud, "shop-on-aws.example");
    assert_eq!(shop["entry"], "52.58.0.0/15");
    assert_eq!(rule(&r, "address_rules", "telegram-ips")["names"], 0);
}

#[test]
fn the_text_report_names_rules_and_examples() {
    let o = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .current_dir(repo())
        .args([
            "collateral",
            "--policy",
            "config/twitter-2021.yaml",
            "--names",
            "tests/data/collateral/top-sites.csv",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success());
    assert!(text.starts_with("6 of 50 names caught"), "{text}");
    assert!(
        text.contains("rule twitter-throttle-2021 (throttle): 6 names (6 by keyword)"),
        "{text}"
    );
}

#[test]
fn a_missing_names_file_is_an_error_naming_it() {
    let o = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .current_dir(repo())
        .args(["collateral", "--names", "no/such/file.txt"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no/such/file.txt"));
}

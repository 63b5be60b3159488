//! Real public watches whose conditions and transforms are Painless (stored
//! scripts included), from elastic/examples `Alerting/Sample Watches` in
//! `tests/fixtures/watcher/` (see its README): `check` accepts them, and
//! `esalert test` on the search response built for upstream's test events
//! reproduces upstream's expected outcome (condition met, logged text).

mod support;

use serde_json::Value;
use support::{Project, repo};

const WATCHES: &[&str] = &[
    "filesystem_usage",
    "monitoring_free_disk_space",
    "system_fails_to_provide_data",
];

fn dir(w: &str) -> std::path::PathBuf {
    repo().join("tests/fixtures/watcher").join(w)
}

/// A project with the watch in `queries/` and its stored scripts in `scripts/`.
fn project(w: &str) -> Project {
    let p = Project::new();
    p.alert(
        w,
        &std::fs::read_to_string(dir(w).join("watch.json")).unwrap(),
    );
    let scripts = p.path().join("scripts");
    std::fs::create_dir(&scripts).unwrap();
    for e in std::fs::read_dir(dir(w).join("scripts")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), scripts.join(e.file_name())).unwrap();
    }
    p
}

fn esalert(p: &Project) -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("esalert").unwrap();
    c.current_dir(p.path()).env("ESALERT_TEST_PW", "pw");
    c
}

#[test]
fn check_accepts_the_painless_watches() {
    for w in WATCHES {
        let p = project(w);
        let out = esalert(&p)
            .args(["check", "--queries-only"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{w}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Without its stored scripts, the watch is refused by script name.
        std::fs::remove_dir_all(p.path().join("scripts")).unwrap();
        let out = esalert(&p)
            .args(["check", "--queries-only"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{w}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("stored script `"), "{w}: {text}");
    }
}

#[test]
fn test_reproduces_upstream_expected_outcomes() {
    for w in WATCHES {
        let p = project(w);
        let t: Value = serde_json::from_str(
            &std::fs::read_to_string(dir(w).join("tests/test1.json")).unwrap(),
        )
        .unwrap();
        let out = esalert(&p)
            .args(["test", w, "--response"])
            .arg(dir(w).join("response.json"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{w}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let expect_match = t.get("match").and_then(Value::as_bool).unwrap_or(true);
        assert_eq!(v["matched"], expect_match, "{w}: {v:#}");
        let rec = &v["watch_record"]["result"];
        assert_eq!(rec["condition"]["met"], expect_match, "{w}");
        let logged = rec["actions"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|a| a["logging"]["logged_text"].as_str())
            .unwrap_or_else(|| panic!("{w}: no logging action ran: {v:#}"));
        assert_eq!(logged, t["expected_response"].as_str().unwrap(), "{w}");
    }
}

//! The console in a real browser: Debian's chromium driven by
//! playwright-core (tests/browser/console.mjs) against the real daemon and
//! stand-ins. Screenshots go to `<target>/console-screenshots/`.
//!
//! Needs `/usr/bin/chromium` and `npm ci --prefix tests/browser`; without
//! them the test says so loudly and passes, except under `CI=true`, where
//! it fails.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::daemon::{Daemon, has};
use support::{EsStandIn, Project, Reply, SlackStandIn, esalert_in, free_port, repo};

const T: Duration = Duration::from_secs(20);
const CHROMIUM: &str = "/usr/bin/chromium";

/// `<target>/console-screenshots`, from where this test binary runs
/// (`<target>/debug/deps/…`).
fn screenshots() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|e| Some(e.parent()?.parent()?.parent()?.to_owned()))
        .unwrap_or_else(|| repo().join("target"))
        .join("console-screenshots")
}

#[test]
fn the_console_in_chromium() {
    let browser_dir = repo().join("tests/browser");
    let missing: Vec<String> = [
        (PathBuf::from(CHROMIUM), "apt-get install -y chromium"),
        (
            browser_dir.join("node_modules/playwright-core"),
            "npm ci --prefix tests/browser",
        ),
    ]
    .into_iter()
    .filter(|(p, _)| !p.exists())
    .map(|(p, fix)| format!("{} (run `{fix}`)", p.display()))
    .collect();
    let node = Command::new("node").arg("--version").output().is_ok();
    if !missing.is_empty() || !node {
        let why = format!(
            "console browser test NOT RUN: missing {}{}",
            missing.join(", "),
            if node { "" } else { " and node" }
        );
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{why}");
        }
        eprintln!("\n!!!!!!!! {why} !!!!!!!!\n");
        return;
    }

    let es = EsStandIn::start();
    es.set_default(Reply::total_v8(4, "eq"));
    let slack = SlackStandIn::start();
    let p = Project::new();
    let creds = p.credentials_with(&es.url, Some(slack.webhook_credentials()), None);
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&creds).unwrap()).unwrap();
    v["console"] = json!({"token": "${ESALERT_CONSOLE_TOKEN}", "token_name": "browser-test"});
    std::fs::write(&creds, v.to_string()).unwrap();
    for (name, throttle) in [("fires", "0s"), ("throttled", "1h")] {
        p.alert(
            name,
            &json!({"index": format!("{name}-*"), "body": {}, "schedule": "1s",
                "throttle_period": throttle, "media": ["slack"],
                "condition": {"compare": {"hits.total": {"gt": 2}}},
                "message": "{{ hits.total.value }} errors on {{ alert.name }}"})
            .to_string(),
        );
    }
    std::fs::write(
        p.queries().join("broken.json"),
        "{\"index\": \"x\",\n \"body\": {},\n \"mesage\": 1}",
    )
    .unwrap();
    let port = free_port();
    let token = "tok-3f9a1c";
    let d = Daemon::start(
        p.path(),
        &["--listen", &port.to_string()],
        &[("ESALERT_CONSOLE_TOKEN", token)],
    );
    d.wait_line(T, "fires fired", |l| {
        has(l, "alert", "fires") && has(l, "outcome", "fired")
    });
    d.wait_line(T, "throttled throttled", |l| {
        has(l, "alert", "throttled") && has(l, "outcome", "throttled")
    });

    let shots = screenshots();
    let out = Command::new("node")
        .arg(browser_dir.join("console.mjs"))
        .current_dir(&browser_dir)
        .env("CONSOLE_URL", format!("http://127.0.0.1:{port}"))
        .env("CONSOLE_TOKEN", token)
        .env("SCREENSHOTS", &shots)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the browser script failed:\n{stdout}\n{stderr}"
    );
    for shot in [
        "alerts.png",
        "login-refused.png",
        "alert.png",
        "silenced.png",
    ] {
        assert!(shots.join(shot).is_file(), "no screenshot {shot}");
    }

    // The silence made through the button is the CLI's silence, logged with who made it.
    let list = esalert_in(p.path(), "pw")
        .args(["silence", "--list"])
        .output()
        .unwrap();
    let list = String::from_utf8(list.stdout).unwrap();
    assert!(list.contains("\tfires\t"), "{list}");
    let line = d.wait_line(T, "the silence in alerts.log", |l| {
        has(l, "event", "console_action") && has(l, "action", "silence")
    });
    assert_eq!(line["who"], "browser-test");
    assert!(
        d.lines()
            .iter()
            .any(|l| has(l, "event", "console_login_failed"))
    );
}

//! Stored scripts from the cluster: a watch's `{"id": …}` script that is
//! not in `scripts/` is fetched with `GET _scripts/<id>` before the watches
//! load, by `check`, `test` and `once` (and the daemon, at start and on
//! SIGHUP). Runs against the real node of the cluster suite.

mod support;

use serde_json::{Value, json};
use support::opensearch::engine;
use support::{Project, repo};

/// elastic/examples' `filesystem_usage` watch, its transform stored in the
/// cluster under `id` rather than in `scripts/`.
fn project(id: &str, es: &support::opensearch::Engine) -> Project {
    let dir = repo().join("tests/fixtures/watcher/filesystem_usage");
    let watch = std::fs::read_to_string(dir.join("watch.json")).unwrap();
    assert!(watch.contains(r#""id":"transform""#));
    let p = Project::new();
    p.alert(
        "filesystem_usage",
        &watch.replace(r#""id":"transform""#, &format!(r#""id":"{id}""#)),
    );
    let path = p.path().join("credentials.json");
    std::fs::write(
        &path,
        json!({"elasticsearch": es.credentials()}).to_string(),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    p
}

fn esalert(p: &Project) -> assert_cmd::Command {
    support::esalert_in(p.path(), "pw")
}

#[test]
fn watches_run_scripts_stored_in_the_cluster() {
    let Some(es) = engine() else {
        return;
    };
    let id = "esalert_stored_filesystem_usage_transform";
    let fixture = repo().join("tests/fixtures/watcher/filesystem_usage");
    let body: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture.join("scripts/transform.json")).unwrap(),
    )
    .unwrap();
    es.ok("PUT", &format!("/_scripts/{id}"), Some(&body));
    let p = project(id, es);
    assert!(!p.path().join("scripts").exists());

    // `check` finds the script in the cluster: nothing about it is reported.
    let out = esalert(&p).arg("check").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("stored script"), "{text}");
    assert!(!text.contains("filesystem_usage.json"), "{text}");

    // `test` runs the watch with it, reproducing upstream's expected text.
    let t: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("tests/test1.json")).unwrap())
            .unwrap();
    let out = esalert(&p)
        .args(["test", "filesystem_usage", "--response"])
        .arg(fixture.join("response.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["matched"], true, "{v:#}");
    let logged = v["watch_record"]["result"]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|a| a["logging"]["logged_text"].as_str())
        .unwrap_or_else(|| panic!("no logging action ran: {v:#}"));
    assert_eq!(logged, t["expected_response"].as_str().unwrap());

    // Deleted from the cluster and absent from scripts/, it is reported by
    // name.
    es.ok("DELETE", &format!("/_scripts/{id}"), None);
    let out = esalert(&p).arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("stored script `{id}` was not found")),
        "{text}"
    );
}

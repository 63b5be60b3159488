//! Load benchmark: the real `esalert run` with N alerts all due at the same
//! tick, against `es_standin` (a separate process).
//!
//! ```text
//! cargo build --release --bin esalert --example es_standin --example load
//! target/release/examples/load --alerts 1000 --latency-ms 0 [--concurrency 32] [--runs 3]
//! ```
//!
//! Per run it prints the wall time of one full tick (due time to the last
//! outcome line), CPU per evaluation (esalert's user+sys over the tick,
//! divided by N; HTTP included), peak RSS, idle CPU between ticks, and the
//! TCP connections the stand-in accepted.
//!
//! `--deliver 1` measures the delivery path instead: every alert matches and
//! sends to Slack (the stand-in's webhook, limited to `--slack-rate` posts a
//! second) and to a real SMTP server (aiosmtpd), and it reports when the
//! searches, the emails and the Slack posts were all done.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

struct Args {
    alerts: usize,
    latency_ms: u64,
    concurrency: usize,
    runs: usize,
    period: u64,
    deliver: bool,
    slack_rate: u64,
}

fn args() -> Args {
    let mut a = Args {
        alerts: 1000,
        latency_ms: 0,
        concurrency: 32,
        runs: 1,
        period: 20,
        deliver: false,
        slack_rate: 50,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--alerts" => a.alerts = v.parse().expect("number"),
            "--latency-ms" => a.latency_ms = v.parse().expect("number"),
            "--concurrency" => a.concurrency = v.parse().expect("number"),
            "--runs" => a.runs = v.parse().expect("number"),
            "--period" => a.period = v.parse().expect("seconds"),
            "--deliver" => a.deliver = v == "1" || v == "true",
            "--slack-rate" => a.slack_rate = v.parse().expect("number"),
            other => panic!("unknown option {other}"),
        }
    }
    a
}

fn bin_dir() -> PathBuf {
    // target/release/examples/load -> target/release
    std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_owned()
}

/// user+sys CPU seconds of a process.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

fn status_kb(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn outcomes(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .map(|t| t.lines().filter(|l| l.contains(" outcome=")).count())
        .unwrap_or(0)
}

fn stats(port: u16) -> (u64, u64) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET /_stats HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    let json = &body[body.find('{').unwrap()..];
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    (
        v["searches"].as_u64().unwrap(),
        v["connections"].as_u64().unwrap(),
    )
}

fn stat(port: u16, key: &str) -> u64 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET /_stats HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    let v: serde_json::Value = serde_json::from_str(&body[body.find('{').unwrap()..]).unwrap();
    v[key].as_u64().unwrap_or(0)
}

fn python_with_aiosmtpd() -> String {
    for p in ["python3", "/usr/bin/python3"] {
        let ok = Command::new(p)
            .args(["-c", "import aiosmtpd"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return p.into();
        }
    }
    panic!("--deliver needs python3 with aiosmtpd (pip install aiosmtpd)");
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(a: &Args) -> serde_json::Value {
    let dir =
        std::env::temp_dir().join(format!("esalert-load-{}-{}", std::process::id(), a.alerts));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("queries")).unwrap();
    let total = if a.deliver { "1" } else { "0" };
    let mut standin = Command::new(bin_dir().join("examples/es_standin"))
        .args(["--latency-ms", &a.latency_ms.to_string(), "--total", total])
        .args(["--slack-rate", &a.slack_rate.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("es_standin (cargo build --release --example es_standin)");
    let mut line = String::new();
    BufReader::new(standin.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().strip_prefix("PORT ").unwrap().parse().unwrap();
    let _standin = Kill(standin);
    let mail_dir = dir.join("mail");
    std::fs::create_dir_all(&mail_dir).unwrap();
    let smtp_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _smtp = a.deliver.then(|| {
        let mut c = Command::new(python_with_aiosmtpd())
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/support/smtp_server.py"
            ))
            .arg(smtp_port.to_string())
            .arg(&mail_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("smtp_server.py");
        let mut l = String::new();
        BufReader::new(c.stdout.take().unwrap())
            .read_line(&mut l)
            .unwrap();
        assert_eq!(l.trim(), "READY");
        Kill(c)
    });
    let creds = if a.deliver {
        serde_json::json!({"elasticsearch": {"url": format!("http://127.0.0.1:{port}"), "timeout": "30s"},
            "slack": {"webhook_url": format!("http://127.0.0.1:{port}/hooks/T/B/X")},
            "email": {"smtp_host": "127.0.0.1", "smtp_port": smtp_port, "security": "none",
                "from": "esalert@example.com", "to": ["soc@example.com"]}})
    } else {
        serde_json::json!({"elasticsearch": {"url": format!("http://127.0.0.1:{port}"), "timeout": "30s"},
            "slack": {"webhook_url": "https://hooks.slack.com/services/T/B/X"}})
    };
    std::fs::write(dir.join("credentials.json"), creds.to_string()).unwrap();
    let media = if a.deliver {
        serde_json::json!(["slack", "email"])
    } else {
        serde_json::json!(["slack"])
    };
    for i in 0..a.alerts {
        let alert = serde_json::json!({
            "index": format!("winlogbeat-{}", i % 50), "schedule": format!("{}s", a.period), "throttle_period": "15m", "media": media,
            "body": {"size": 0, "query": {"bool": {"filter": [
                {"term": {"event.code": "4624"}},
                {"range": {"@timestamp": {"gte": "{{ window.start }}", "lt": "{{ window.end }}"}}}]}},
                "aggs": {"users": {"terms": {"field": "winlog.event_data.TargetUserName", "size": 20}}}},
            "condition": {"compare": {"hits.total": {"gt": 0}}},
            "message": "{% for b in aggregations.users.buckets %}{{ b.key }}: {{ b.doc_count }}\n{% endfor %}"});
        std::fs::write(
            dir.join(format!("queries/load_{i:05}.json")),
            alert.to_string(),
        )
        .unwrap();
    }
    let esalert = Command::new(bin_dir().join("esalert"))
        .current_dir(&dir)
        .args([
            "run",
            "--max-concurrency",
            &a.concurrency.to_string(),
            "--rescan",
            "1h",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("esalert (cargo build --release --bin esalert)");
    let pid = esalert.id();
    let _esalert = Kill(esalert);
    let log = dir.join("alerts.log");
    let t = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("event=started")
    {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "esalert did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let rss_loaded_kb = status_kb(pid, "VmRSS:");
    // The next tick at least 2 s away.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let mut tick = ((now / a.period as f64).floor() + 1.0) * a.period as f64;
    if tick - now < 2.0 {
        tick += a.period as f64;
    }
    std::thread::sleep(Duration::from_secs_f64(tick - now - 0.5));
    if a.deliver {
        std::thread::sleep(Duration::from_secs_f64(0.5));
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let since = |t: f64| ((t - start) * 1000.0).round() / 1000.0;
        let (mut searches_s, mut email_s, mut slack_s) = (None, None, None);
        // Counters are cumulative: an earlier tick may have run already.
        let (req0, slack0) = (stat(port, "searches"), stat(port, "slack"));
        let deadline = Instant::now() + Duration::from_secs(600);
        let mails = || {
            std::fs::read_dir(&mail_dir)
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json"))
                })
                .count()
        };
        let mail0 = mails();
        while (searches_s.is_none() || email_s.is_none() || slack_s.is_none())
            && Instant::now() < deadline
        {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs_f64();
            if searches_s.is_none() && stat(port, "searches") >= req0 + a.alerts as u64 {
                searches_s = Some(since(now));
            }
            if email_s.is_none() && mails() >= mail0 + a.alerts {
                email_s = Some(since(now));
            }
            if slack_s.is_none() && stat(port, "slack") >= slack0 + a.alerts as u64 {
                slack_s = Some(since(now));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = serde_json::json!({
            "alerts": a.alerts, "slack_rate_per_s": a.slack_rate,
            "searches_done_s": searches_s, "emails_done_s": email_s, "slack_done_s": slack_s,
            "emails_per_s": email_s.map(|t| (a.alerts as f64 / t).round()),
            "slack_per_s": slack_s.map(|t| (a.alerts as f64 / t).round()),
            "slack_posts": stat(port, "slack") - slack0, "emails": mails() - mail0,
            "slack_429s": stat(port, "slack_429"),
            "rss_peak_mb": status_kb(pid, "VmHWM:") as f64 / 1024.0,
        });
        let _ = std::fs::remove_dir_all(&dir);
        return out;
    }
    let before = outcomes(&log);
    let cpu0 = cpu_secs(pid);
    let (req0, conn0) = stats(port);
    let end;
    loop {
        if outcomes(&log) >= before + a.alerts {
            end = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs_f64();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let cpu1 = cpu_secs(pid);
    let (req1, conn1) = stats(port);
    let tick_wall = end - tick;
    // Idle: well after the tick, before the next.
    std::thread::sleep(Duration::from_secs(1));
    let idle_window = (a.period as f64 - tick_wall - 3.0).clamp(2.0, 10.0);
    let c2 = cpu_secs(pid);
    std::thread::sleep(Duration::from_secs_f64(idle_window));
    let c3 = cpu_secs(pid);
    let out = serde_json::json!({
        "alerts": a.alerts, "latency_ms": a.latency_ms, "concurrency": a.concurrency,
        "tick_wall_s": (tick_wall * 1000.0).round() / 1000.0,
        "cpu_per_eval_ms": ((cpu1 - cpu0) / a.alerts as f64 * 1000.0 * 1000.0).round() / 1000.0,
        "rss_loaded_mb": rss_loaded_kb as f64 / 1024.0,
        "rss_peak_mb": status_kb(pid, "VmHWM:") as f64 / 1024.0,
        "idle_cpu_pct": ((c3 - c2) / idle_window * 100.0 * 100.0).round() / 100.0,
        "searches": req1 - req0,
        "tcp_connections": conn1 - conn0 + conn0,
    });
    let _ = std::fs::remove_dir_all(&dir);
    out
}

fn main() {
    let a = args();
    for _ in 0..a.runs {
        println!("{}", run(&a));
    }
}

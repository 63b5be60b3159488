//! The health stage: run bookkeeping, consecutive failures, and notices
//! about alerting itself ("alert is failing", "cluster unreachable" and
//! their recoveries).

use chrono::{DateTime, Utc};

use super::{Outcome, RunError, RunReport, Runner};
use crate::alert::Alert;
use crate::notify::Notification;
use crate::render::{Rendered, Window};
use crate::rule::EvalError;
use crate::throttle::{ClusterDown, StoreFile};

fn notice(alert: &str, subject: String, text: String, now: DateTime<Utc>) -> Notification {
    Notification {
        alert: alert.to_owned(),
        rendered: Rendered::from_data(subject, text),
        hits: 0,
        time: now,
        slack_channel: None,
        email_to: Vec::new(),
        email_cc: Vec::new(),
    }
}

impl Runner {
    /// Records the run: last run and outcome, the searched window on
    /// success, consecutive failures. Returns the notices about alerting
    /// itself that this run calls for.
    pub(super) async fn record_run(
        &self,
        rule: &Alert,
        report: &RunReport,
        failure: Option<&EvalError>,
        window: Window,
        now: DateTime<Utc>,
    ) -> Result<Vec<Notification>, RunError> {
        let notices = self
            .store
            .update(|data| self.account(rule, report, failure, window, now, data));
        // Bookkeeping of an ordinary run need not wait for the disk; a
        // notice about alerting itself should not go out unrecorded.
        if !notices.is_empty() {
            self.store.commit().await?;
        }
        Ok(notices)
    }

    fn account(
        &self,
        rule: &Alert,
        report: &RunReport,
        failure: Option<&EvalError>,
        window: Window,
        now: DateTime<Utc>,
        data: &mut StoreFile,
    ) -> Vec<Notification> {
        let mut notices = Vec::new();
        let name = rule.name.as_str();
        let st = data.alerts.entry(rule.name.clone()).or_default();
        st.last_run = Some(now);
        st.last_outcome = Some(report.outcome.as_str().to_owned());
        if failure.is_none() {
            // The window was searched, whatever happened to deliveries.
            st.last_window_end = Some(st.last_window_end.map_or(window.end, |e| e.max(window.end)));
        }
        // Why this run failed: its evaluation, or every delivery it tried.
        let reason = match (failure, &report.outcome) {
            (Some(e), _) => Some(e.to_string()),
            (None, Outcome::Failed) => Some(format!(
                "every delivery failed: {}",
                report
                    .delivery_errors
                    .values()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
            _ => None,
        };
        let Some(reason) = reason else {
            st.consecutive_failures = 0;
            if std::mem::take(&mut st.failing_notified) {
                notices.push(notice(
                    name,
                    format!("esalert: alert {name} recovered"),
                    format!("esalert: alert {name} runs successfully again."),
                    now,
                ));
            }
            if failure.is_none()
                && let Some(what) = data.cluster_notified.take()
            {
                notices.push(notice(
                    "esalert",
                    format!(
                        "esalert: cluster {} is {} again",
                        self.es.url(),
                        what.recovered()
                    ),
                    format!("esalert: searches on {} succeed again.", self.es.url()),
                    now,
                ));
            }
            return notices;
        };
        st.consecutive_failures = st.consecutive_failures.saturating_add(1);
        let search = failure.and_then(EvalError::search_error);
        // Every failed run is a line (a failed delivery's was logged with
        // the run's outcome).
        if failure.is_some() {
            tracing::error!(alert = name, outcome = "error", failures = st.consecutive_failures, error = %reason);
        }
        if st.consecutive_failures < self.settings.error_alert_after {
            return notices;
        }
        // A failure of the cluster itself fails every rule at once: one
        // notice for the cluster instead of one per rule.
        let cluster = match search {
            Some(se) if se.is_unreachable() => Some(ClusterDown::Unreachable),
            Some(se) if se.is_auth() => Some(ClusterDown::Rejected),
            _ => None,
        };
        if let Some(what) = cluster {
            if data.cluster_notified.is_none() {
                data.cluster_notified = Some(what);
                let cause = strip_rule(&reason, name);
                notices.push(notice(
                    "esalert",
                    format!("esalert: cluster {} {}", self.es.url(), what.describe()),
                    format!(
                        "esalert: cluster {} {}: {cause}",
                        self.es.url(),
                        what.describe()
                    ),
                    now,
                ));
            }
        } else if !st.failing_notified {
            st.failing_notified = true;
            notices.push(notice(
                name,
                format!("esalert: alert {name} is failing"),
                format!(
                    "esalert: alert {name} is failing: {}",
                    strip_rule(&reason, name)
                ),
                now,
            ));
        }
        notices
    }
}

/// An error message without its leading "alert NAME: " (the notice says it).
fn strip_rule<'a>(reason: &'a str, name: &str) -> &'a str {
    reason
        .strip_prefix("alert ")
        .or_else(|| reason.strip_prefix("watch "))
        .and_then(|r| r.strip_prefix(name))
        .and_then(|r| r.strip_prefix(": "))
        .unwrap_or(reason)
}

//! The health stage: run bookkeeping, consecutive failures, and notices
//! about alerting itself ("alert is failing", "cluster unreachable" and
//! their recoveries).

use chrono::{DateTime, Utc};

use super::{Outcome, RunError, RunReport, Runner};
use crate::alert::Alert;
use crate::notify::Notification;
use crate::render::{Rendered, Window};
use crate::rule::EvalError;
use crate::throttle::{AlertState, ClusterDown};

fn notice(alert: &str, subject: String, text: String, now: DateTime<Utc>) -> Notification {
    Notification::of(alert, Rendered::from_data(subject, text), 0, now)
}

/// What a run means for the cluster-wide notice.
enum Cluster {
    /// Nothing to say.
    Quiet,
    /// A search succeeded: a "down" notice, if one was sent, is over.
    Up,
    /// The cluster failed this rule in a way that fails every rule.
    Down(ClusterDown, String),
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
        let mut notices = Vec::new();
        let cluster = self
            .state
            .update_rule(&rule.name, |st| {
                self.account(rule, report, failure, window, now, st, &mut notices)
            })
            .unwrap_or(Cluster::Quiet);
        let url = self.es.url();
        match cluster {
            Cluster::Quiet => {}
            Cluster::Up => self.state.update_cluster(&mut |c| {
                if let Some(what) = c.take() {
                    notices.push(notice(
                        "esalert",
                        format!("esalert: cluster {url} is {} again", what.recovered()),
                        format!("Searches on {url} succeed again."),
                        now,
                    ));
                }
            }),
            Cluster::Down(what, cause) => self.state.update_cluster(&mut |c| {
                if c.is_none() {
                    *c = Some(what);
                    notices.push(notice(
                        "esalert",
                        format!("esalert: cluster {url} {}", what.describe()),
                        cause.clone(),
                        now,
                    ));
                }
            }),
        }
        // Bookkeeping of an ordinary run need not wait for the disk; a
        // notice about alerting itself should not go out unrecorded.
        if !notices.is_empty() {
            self.state.commit().await?;
        }
        Ok(notices)
    }

    #[allow(clippy::too_many_arguments)]
    fn account(
        &self,
        rule: &Alert,
        report: &RunReport,
        failure: Option<&EvalError>,
        window: Window,
        now: DateTime<Utc>,
        st: &mut AlertState,
        notices: &mut Vec<Notification>,
    ) -> Cluster {
        let name = rule.name.as_str();
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
                    "It runs successfully again.".to_owned(),
                    now,
                ));
            }
            return Cluster::Up;
        };
        st.consecutive_failures = st.consecutive_failures.saturating_add(1);
        let search = failure.and_then(EvalError::search_error);
        // Every failed run is a line (a failed delivery's was logged with
        // the run's outcome).
        if failure.is_some() {
            tracing::error!(alert = name, outcome = "error", failures = st.consecutive_failures, error = %reason);
        }
        // A search that worked (only deliveries failed) says the cluster is up.
        let otherwise = if failure.is_none() {
            Cluster::Up
        } else {
            Cluster::Quiet
        };
        if st.consecutive_failures < self.settings.error_alert_after {
            return otherwise;
        }
        // A failure of the cluster itself fails every rule at once: one
        // notice for the cluster instead of one per rule.
        let cause = strip_rule(&reason, name).to_owned();
        match search {
            Some(se) if se.is_unreachable() => Cluster::Down(ClusterDown::Unreachable, cause),
            Some(se) if se.is_auth() => Cluster::Down(ClusterDown::Rejected, cause),
            _ => {
                if !std::mem::replace(&mut st.failing_notified, true) {
                    // The subject names the alert; the text is the reason.
                    notices.push(notice(
                        name,
                        format!("esalert: alert {name} is failing"),
                        cause,
                        now,
                    ));
                }
                otherwise
            }
        }
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

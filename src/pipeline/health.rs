//! The health stage: run bookkeeping, consecutive failures, and notices
//! about alerting itself ("alert is failing", "cluster unreachable" and
//! their recoveries).

use chrono::{DateTime, Utc};

use super::{RunError, RunReport, Runner};
use crate::alert::Alert;
use crate::notify::Notification;
use crate::render::{Rendered, Window};
use crate::rule::EvalError;
use crate::search::SearchError;
use crate::throttle::StoreFile;

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
            .update(|data| self.account(rule, report.outcome.as_str(), failure, window, now, data));
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
        outcome: &str,
        failure: Option<&EvalError>,
        window: Window,
        now: DateTime<Utc>,
        data: &mut StoreFile,
    ) -> Vec<Notification> {
        let mut notices = Vec::new();
        let name = rule.name.as_str();
        let st = data.alerts.entry(rule.name.clone()).or_default();
        st.last_run = Some(now);
        st.last_outcome = Some(outcome.to_owned());
        match failure {
            None => {
                st.last_window_end =
                    Some(st.last_window_end.map_or(window.end, |e| e.max(window.end)));
                st.consecutive_failures = 0;
                st.auth_error_logged = None;
                if std::mem::take(&mut st.failing_notified) {
                    notices.push(notice(
                        name,
                        format!("esalert: alert {name} recovered"),
                        format!("esalert: alert {name} runs successfully again."),
                        now,
                    ));
                }
                if std::mem::take(&mut data.cluster_down_notified) {
                    notices.push(notice(
                        "esalert",
                        format!("esalert: cluster {} is reachable again", self.es.url()),
                        format!("esalert: searches on {} succeed again.", self.es.url()),
                        now,
                    ));
                }
            }
            Some(e) => {
                st.consecutive_failures = st.consecutive_failures.saturating_add(1);
                let search = e.search_error();
                // A bad password fails every run; say so hourly, not every minute.
                let log_it = match search {
                    Some(se) if se.is_auth() => {
                        let due = st.auth_error_logged.is_none_or(|t| {
                            now.signed_duration_since(t) >= chrono::Duration::hours(1)
                        });
                        if due {
                            st.auth_error_logged = Some(now);
                        }
                        due
                    }
                    _ => true,
                };
                if log_it {
                    tracing::error!(alert = name, outcome = "error", failures = st.consecutive_failures, error = %e);
                }
                if st.consecutive_failures >= self.settings.error_alert_after {
                    if search.is_some_and(SearchError::is_unreachable) {
                        // Every rule fails at once: one notice for the cluster.
                        if !data.cluster_down_notified {
                            data.cluster_down_notified = true;
                            notices.push(notice(
                                "esalert",
                                format!("esalert: cluster {} is unreachable", self.es.url()),
                                format!("esalert: cluster {} is unreachable: {e}", self.es.url()),
                                now,
                            ));
                        }
                    } else if !st.failing_notified {
                        st.failing_notified = true;
                        notices.push(notice(
                            name,
                            format!("esalert: alert {name} is failing"),
                            format!("esalert: alert {name} is failing: {e}"),
                            now,
                        ));
                    }
                }
            }
        }
        notices
    }
}

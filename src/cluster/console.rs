//! What the console's Health page shows of the shared state: the live
//! members and the leases this instance holds (each instance's console
//! shows its own; `esalert status --state es://…` reads them all), and
//! its silences and acknowledgements, made in the shared state.

use futures::future::BoxFuture;

use super::Cluster;

impl crate::console::ClusterView for Cluster {
    fn members(&self) -> Vec<(String, String)> {
        let me = self.me.clone();
        let mut rows: Vec<(String, String)> = self
            .live()
            .into_iter()
            .map(|m| {
                let detail = if m == me {
                    "live (this instance)"
                } else {
                    "live"
                };
                (m, detail.to_owned())
            })
            .collect();
        if !rows.iter().any(|(m, _)| *m == me) {
            rows.push((
                me,
                "this instance (not live: shared state unreachable?)".into(),
            ));
        }
        rows
    }

    fn leases(&self) -> Vec<(String, String)> {
        let now = self.mono.now();
        let inner = self.lock();
        let mut rows: Vec<(String, String)> = inner
            .held
            .iter()
            .map(|(rule, h)| {
                let left = h.valid_until.saturating_sub(now);
                let state = if h.releasing {
                    "handing over"
                } else if left.is_zero() {
                    "lapsed"
                } else {
                    "held"
                };
                (
                    rule.clone(),
                    format!(
                        "{state} by this instance, epoch {}, valid {:.1}s more",
                        h.epoch,
                        left.as_secs_f64()
                    ),
                )
            })
            .collect();
        rows.sort();
        rows
    }

    fn add_silence<'a>(
        &'a self,
        rule: &'a str,
        key: Option<String>,
        until: chrono::DateTime<chrono::Utc>,
        reason: Option<String>,
    ) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let now = chrono::Utc::now();
            super::requests::add_silence(self.docs.as_ref(), rule, key, until, reason, now)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn end_silence<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            super::requests::end_silence(self.docs.as_ref(), id, chrono::Utc::now())
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn request_ack<'a>(
        &'a self,
        rule: &'a str,
        actions: &'a [String],
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            super::requests::request_ack(self.docs.as_ref(), rule, actions, chrono::Utc::now())
                .await
                .map_err(|e| e.to_string())
        })
    }
}

//! What the console's Health page shows of the shared state: the live
//! members and the leases this instance holds (each instance's console
//! shows its own; `esalert status --state es://…` reads them all).

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
}

//! Store format migrations. Version 1 kept one notification per alert
//! (`last_match` with deliveries per medium), a whole-alert
//! `throttled_until` and Watcher action states; version 2 keeps an outbox of
//! matches with one delivery per action, and throttles per group key and
//! scope.

use serde_json::{Map, Value, json};

use super::{RULE_SCOPE, WHOLE_RULE};

/// Upgrades a store document in place to the current version. Returns
/// whether anything changed; a document of an unknown version is left for
/// the caller to refuse.
pub fn migrate(doc: &mut Value) -> bool {
    if doc.get("version").and_then(Value::as_u64) != Some(1) {
        return false;
    }
    doc["version"] = json!(2);
    if let Some(top) = doc.as_object_mut()
        && top.remove("cluster_down_notified") == Some(Value::Bool(true))
    {
        top.insert("cluster_notified".into(), json!("unreachable"));
    }
    if let Some(Value::Object(alerts)) = doc.get_mut("alerts") {
        for st in alerts.values_mut() {
            if let Value::Object(st) = st {
                v1_alert(st);
            }
        }
    }
    true
}

fn v1_alert(st: &mut Map<String, Value>) {
    // Version 2 logs every failed run; nothing to remember.
    st.remove("auth_error_logged");
    let mut key = Map::new();
    if let Some(t) = st.remove("throttled_until") {
        key.insert("throttled_until".into(), json!({ RULE_SCOPE: t }));
    }
    if let Some(Value::Object(actions)) = st.remove("actions") {
        // Watcher action throttles were kept as `last_executed` without
        // their period; acks carry over, the short throttles restart.
        let acks: Map<String, Value> = actions
            .into_iter()
            .filter_map(|(id, a)| a.get("ack").cloned().map(|ack| (id, ack)))
            .collect();
        if !acks.is_empty() {
            key.insert("ack".into(), Value::Object(acks));
        }
    }
    if !key.is_empty() {
        st.insert("keys".into(), json!({ WHOLE_RULE: key }));
    }
    if let Some(Value::Object(m)) = st.remove("last_match") {
        let throttle = m.get("throttle_secs").cloned().unwrap_or(json!(0));
        let n = m.get("notification").cloned().unwrap_or(Value::Null);
        let mut deliveries = Map::new();
        if let Some(Value::Object(ds)) = m.get("deliveries") {
            for (medium, d) in ds {
                let mut d = d.as_object().cloned().unwrap_or_default();
                d.insert("action".into(), json!(medium));
                d.insert("throttle_secs".into(), throttle.clone());
                d.insert(
                    "message".into(),
                    json!({"type": "notification", "sink": medium, "notification": n}),
                );
                deliveries.insert(medium.clone(), Value::Object(d));
            }
        }
        st.insert(
            "outbox".into(),
            json!([{"matched_at": m.get("matched_at").cloned().unwrap_or(Value::Null), "deliveries": deliveries}]),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::throttle::{DeliveryStatus, StoreFile};

    #[test]
    fn a_v1_store_keeps_its_throttle_outbox_and_acks() {
        let mut doc = json!({"version": 1, "alerts": {
            "errs": {"last_run": "2026-11-21T20:41:00Z", "throttled_until": "2026-11-21T20:56:00Z",
                "last_match": {"matched_at": "2026-11-21T20:41:00Z", "throttle_secs": 900,
                    "notification": {"alert": "errs", "rendered": {"subject": "s", "text": "t", "slack": "t", "html": "t"}, "hits": 3, "time": "2026-11-21T20:41:00Z"},
                    "deliveries": {"slack": {"status": "sent", "attempts": 1}, "email": {"status": "pending", "attempts": 2, "last_error": "down"}}}},
            "w": {"actions": {"notify": {"ack": "acked", "last_executed": "2026-11-21T20:41:00Z"}}}
        }});
        assert!(migrate(&mut doc));
        let s: StoreFile = serde_json::from_value(doc).unwrap();
        assert_eq!(s.version, 2);
        let errs = &s.alerts["errs"];
        assert_eq!(
            errs.throttled_until().unwrap().to_rfc3339(),
            "2026-11-21T20:56:00+00:00"
        );
        let m = errs.last_match().unwrap();
        assert_eq!(m.deliveries["slack"].status, DeliveryStatus::Sent);
        assert_eq!(m.deliveries["email"].status, DeliveryStatus::Pending);
        assert_eq!(m.deliveries["email"].throttle_secs, 900);
        assert_eq!(m.deliveries["email"].message.sink(), "email");
        assert!(errs.pending());
        assert_eq!(
            s.alerts["w"].ack("", "notify"),
            crate::throttle::AckState::Acked
        );
    }
}

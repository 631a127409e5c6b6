//! Deterministic ids: the same transaction and channel always give the same id, so every sink
//! can recognise a repeat (SMTP `Message-ID`, `webhook-id`, file name, SMS client reference).

use crate::sha256_hex;

fn derived(prefix: &str, parts: &[&str]) -> String {
    let digest = sha256_hex(parts.join("\n").as_bytes());
    format!("{prefix}-{}", &digest[..24])
}

/// The dispatch job of a transaction.
pub fn dispatch_id(transaction_id: &str) -> String {
    derived("dsp", &["dispatch", transaction_id])
}

/// The delivery of a transaction's invoice through one channel instance.
pub fn delivery_id(transaction_id: &str, channel: &str) -> String {
    derived("dlv", &["deliver", transaction_id, channel])
}

/// The `n`th delivery an operator asked for again of a transaction's invoice through one
/// channel instance (counted from 0): a new id, so the sink sends it again, yet the same for
/// a request repeated before the store saw the first.
pub fn redelivery_id(transaction_id: &str, channel: &str, n: u64) -> String {
    derived(
        "rdl",
        &["redeliver", transaction_id, channel, &n.to_string()],
    )
}

/// The cancellation notice of a transaction through one channel instance.
pub fn cancel_id(transaction_id: &str, channel: &str) -> String {
    derived("cnl", &["cancel", transaction_id, channel])
}

/// The job that waits for Dintero to confirm a void of the transaction.
pub fn void_id(transaction_id: &str) -> String {
    derived("vd", &["void", transaction_id])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        assert_eq!(delivery_id("T1.a", "email"), delivery_id("T1.a", "email"));
        assert_ne!(delivery_id("T1.a", "email"), delivery_id("T1.a", "sms"));
        assert_ne!(delivery_id("T1.a", "email"), cancel_id("T1.a", "email"));
        assert_eq!(delivery_id("T1.a", "email").len(), 28);
        assert_ne!(
            redelivery_id("T1.a", "email", 0),
            redelivery_id("T1.a", "email", 1)
        );
        assert_ne!(
            redelivery_id("T1.a", "email", 0),
            delivery_id("T1.a", "email")
        );
    }
}

//! Which shard a channel belongs to: a stable hash of its mailbox (tenant, app, mailbox address,
//! all case-insensitive) onto `store::cluster::SHARDS` shards.
//!
//! Hashing the mailbox rather than the channel id keeps every channel of one mailbox (one per
//! folder) on one node, so the per-(app, mailbox) gate (four requests at a time, the `Retry-After`
//! floor) is one gate, and a grant is only ever refreshed by the node that holds its shard.

use sha2::{Digest, Sha256};

use crate::store::ChannelRecord;
use crate::store::cluster::SHARDS;

/// The shard of a mailbox. Stable across versions and nodes: it decides ownership.
pub fn shard_of_mailbox(tenant: &str, client_id: &str, mailbox: &str) -> u32 {
    let mut hasher = Sha256::new();
    for part in [tenant, client_id, mailbox] {
        hasher.update(part.to_ascii_lowercase().as_bytes());
        hasher.update([0u8]);
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 4];
    first.copy_from_slice(&digest[..4]);
    u32::from_be_bytes(first) % SHARDS
}

/// The shard of a channel.
pub fn shard_of(record: &ChannelRecord) -> u32 {
    shard_of_mailbox(
        record.tenant_id.as_str(),
        record.client_id.as_str(),
        record.mailbox.as_str(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_mailbox_is_one_shard_whatever_the_case() {
        let a = shard_of_mailbox("Contoso-Tenant", "App", "Support@Contoso.com");
        let b = shard_of_mailbox("contoso-tenant", "app", "support@contoso.com");
        assert_eq!(a, b);
        assert!(a < SHARDS);
    }

    #[test]
    fn mailboxes_spread_over_the_shards() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..4096 {
            seen.insert(shard_of_mailbox("t", "a", &format!("user{i}@contoso.com")));
        }
        // 4,096 mailboxes on 1,024 shards: nearly every shard gets some.
        assert!(seen.len() > 950, "only {} shards used", seen.len());
    }

    #[test]
    fn the_parts_do_not_run_into_each_other() {
        assert_ne!(
            shard_of_mailbox("ab", "c", "d@e"),
            shard_of_mailbox("a", "bc", "d@e")
        );
    }
}

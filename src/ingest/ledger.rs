//! The per-message ledger: what inboxd knows about each message of each channel, and the only
//! code that writes ledger entries (a tidy test holds every other module to reading them).
//!
//! A message moves through typed transitions:
//!
//! ```text
//!  (unknown) ──found──► handed over ──sink accepted──► Delivered ──marked read──► MarkedRead ──retention──► pruned
//!                            │
//!                            └─sink refused this message──► Discovered (failures + 1) ──… max──► Quarantined
//!                                                                                                    │
//!                                         replay (operator) ◄────────────────────────────────────────┘
//! ```
//!
//! - Only the processor records [`Ledger::record_delivered`], right after the sink accepted the
//!   mail durably and before anything is acknowledged (the JSONL writer reads each message once
//!   with [`Ledger::known`] and records a whole group of channels' mail with
//!   [`Ledger::record_delivered_known`], one batch); the channel's cycle marks read only what the
//!   processor acknowledged, then records [`Ledger::record_marked_read_after`], once per page,
//!   from the entries the sort read (no second read).
//! - [`Ledger::sort`] is the cycle's one read: it splits what a poll found into mail to deliver,
//!   mail already delivered (only the mark-read is missing) and quarantined mail, and keeps the
//!   entries it read ([`Sorted::prior`]) for the cycle's writes: the cycle is the one writer of
//!   its channel's failures and mark-reads, and the processor's "delivered" keeps what they hold.
//! - A delivered message is also known by its Internet Message-ID (an entry under
//!   [`message_id_key`]), so a channel that moves between Graph and IMAP (Graph ids there, UIDs
//!   here) never delivers a message twice: [`Ledger::sort_known`] looks it up when the
//!   transport's own id is new.
//! - Every write returns the store's error: a caller that cannot record a transition does not
//!   take the step that depends on it (no acknowledgement, no mark-read).

use chrono::{DateTime, Utc};

use crate::domain::ChannelId;
use crate::store::{LedgerBatch, LedgerEntry, LedgerState, Store, StoreError};

/// What the ledger says about the messages one poll found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sorted<T> {
    /// New, or failed before and not yet quarantined: hand these to the sink.
    pub to_deliver: Vec<T>,
    /// Delivered already; only the mark-read is missing (a crash or a throttled `$batch` item).
    pub to_mark: Vec<String>,
    /// Done: delivered and marked read (our own mark-read seen again, or a later change).
    pub done: Vec<String>,
    /// Quarantined: left alone until an operator replays them.
    pub quarantined: usize,
    /// What the ledger held, when sorted, for each message in `to_deliver` and `to_mark` (`None`:
    /// no entry): what [`Ledger::record_marked_read_after`] starts from instead of reading.
    pub prior: std::collections::HashMap<String, Option<LedgerEntry>>,
}

/// The state a message reached after a delivery failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// It stays unread and is tried again by the next poll.
    Retry {
        /// Failures so far.
        failures: u32,
    },
    /// It failed `max_delivery_attempts` times: set aside for an operator.
    Quarantined {
        /// Failures so far.
        failures: u32,
    },
}

/// The entry of a message the sink accepted at `now`, from what the ledger knew of it.
fn delivered_entry(known: Option<&LedgerEntry>, now: DateTime<Utc>) -> LedgerEntry {
    LedgerEntry {
        state: LedgerState::Delivered,
        failures: known.map_or(0, |e| e.failures),
        last_error: None,
        received_at: known.and_then(|e| e.received_at),
        first_seen_at: known.map_or(now, |e| e.first_seen_at),
        updated_at: now,
    }
}

/// The entry of a message marked read (or gone) at `now`, from what the ledger knew of it.
fn marked_read_entry(known: Option<&LedgerEntry>, now: DateTime<Utc>) -> LedgerEntry {
    LedgerEntry {
        state: LedgerState::MarkedRead,
        ..delivered_entry(known, now)
    }
}

/// The ledger key under which a channel remembers that the mail with this Internet Message-ID was
/// delivered, whatever transport delivered it: `mid:<id@host>` (angle brackets and blanks
/// normalised). `None` for an empty id.
pub fn message_id_key(internet_message_id: &str) -> Option<String> {
    let id = internet_message_id
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    (!id.is_empty()).then(|| format!("mid:<{id}>"))
}

/// One delivered message: the transport's id, and its Internet Message-ID when it has one.
pub type DeliveredMail<'a> = (&'a str, Option<&'a str>);

/// A message the sink is about to take, with what the ledger knew of it before (see
/// [`Ledger::known`]): recorded by [`Ledger::record_delivered_known`] without reading it again.
#[derive(Debug, Clone, Copy)]
pub struct KnownMail<'a> {
    /// The channel.
    pub channel: ChannelId,
    /// The transport's message id.
    pub message_id: &'a str,
    /// Its Internet Message-ID, if it has one.
    pub internet_message_id: Option<&'a str>,
    /// Its entry before the delivery (a failure count), if it had one.
    pub known: Option<&'a LedgerEntry>,
}

/// What the ledger knows of a message about to be delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Known {
    /// Delivered already (or delivered and marked read): nothing to do.
    Delivered,
    /// Not delivered yet: its entry, if it has one (failures before).
    Fresh(Option<LedgerEntry>),
}

/// The entry behind a [`message_id_key`]: delivered (and done, so retention prunes it with the
/// rest of the channel's old mail).
fn alias_entry(now: DateTime<Utc>) -> LedgerEntry {
    LedgerEntry {
        state: LedgerState::MarkedRead,
        failures: 0,
        last_error: None,
        received_at: None,
        first_seen_at: now,
        updated_at: now,
    }
}

/// The ledger of every channel. Cheap to clone (it shares the store and the counts).
#[derive(Debug, Clone)]
pub struct Ledger {
    store: Store,
    /// How many messages of each channel are quarantined (channels with none absent): loaded
    /// once from the store ([`load_quarantine_counts`](Self::load_quarantine_counts)), then kept
    /// by this ledger's own transitions, so listings and `/metrics` need no scan.
    quarantined: std::sync::Arc<dashmap::DashMap<ChannelId, u32>>,
}

fn is_delivered(entry: &LedgerEntry) -> bool {
    is_delivered_state(entry.state)
}

fn is_delivered_state(state: LedgerState) -> bool {
    matches!(state, LedgerState::Delivered | LedgerState::MarkedRead)
}

impl Ledger {
    /// The ledger kept in `store`.
    pub fn new(store: Store) -> Self {
        Ledger {
            store,
            quarantined: std::sync::Arc::default(),
        }
    }

    /// Counts every channel's quarantined messages from the store (one scan of the ledger; run it
    /// off the start-up path). A count already raised meanwhile is kept if higher.
    pub fn load_quarantine_counts(&self) -> Result<(), StoreError> {
        for (channel, count) in self.store.ledger_quarantine_counts()? {
            let mut slot = self.quarantined.entry(channel).or_insert(0);
            *slot = (*slot).max(count);
        }
        Ok(())
    }

    /// How many of the channel's messages are quarantined.
    pub fn quarantined_count(&self, channel: ChannelId) -> u32 {
        self.quarantined.get(&channel).map_or(0, |n| *n)
    }

    /// Forgets a removed channel's count.
    pub fn forget(&self, channel: ChannelId) {
        self.quarantined.remove(&channel);
    }

    /// The store behind it (for flushes).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Splits what a poll found (`id_of` gives each item's Graph message id) by what the ledger
    /// knows of it.
    pub fn sort<T>(
        &self,
        channel: ChannelId,
        found: Vec<T>,
        id_of: impl Fn(&T) -> &str,
    ) -> Result<Sorted<T>, StoreError> {
        let mut sorted = Sorted {
            to_deliver: Vec::new(),
            to_mark: Vec::new(),
            done: Vec::new(),
            quarantined: 0,
            prior: std::collections::HashMap::with_capacity(found.len()),
        };
        for item in found {
            match self.store.ledger_sighting(channel, id_of(&item))? {
                Some((LedgerState::Quarantined, _)) => sorted.quarantined += 1,
                Some((LedgerState::Delivered, entry)) => {
                    sorted.prior.insert(id_of(&item).to_owned(), entry);
                    sorted.to_mark.push(id_of(&item).to_owned());
                }
                Some((LedgerState::MarkedRead, _)) => sorted.done.push(id_of(&item).to_owned()),
                sighting => {
                    let entry = sighting.and_then(|(_, entry)| entry);
                    sorted.prior.insert(id_of(&item).to_owned(), entry);
                    sorted.to_deliver.push(item);
                }
            }
        }
        Ok(sorted)
    }

    /// [`sort`](Self::sort), also recognising mail the ledger knows under another transport's id
    /// by its Internet Message-ID (`imid_of`): such mail was delivered already, so it only needs
    /// marking read here (`to_mark`).
    pub fn sort_known<T>(
        &self,
        channel: ChannelId,
        found: Vec<T>,
        id_of: impl Fn(&T) -> &str,
        imid_of: impl Fn(&T) -> Option<&str>,
    ) -> Result<Sorted<T>, StoreError> {
        let mut sorted = self.sort(channel, found, &id_of)?;
        let mut fresh = Vec::with_capacity(sorted.to_deliver.len());
        for item in std::mem::take(&mut sorted.to_deliver) {
            let alias = imid_of(&item).and_then(message_id_key);
            let known = match alias {
                Some(key) => self
                    .store
                    .ledger_state(channel, &key)?
                    .is_some_and(is_delivered_state),
                None => false,
            };
            if known {
                sorted.to_mark.push(id_of(&item).to_owned());
            } else {
                fresh.push(item);
            }
        }
        sorted.to_deliver = fresh;
        Ok(sorted)
    }

    /// Whether the sink accepted this message already (delivered, or delivered and marked read).
    pub fn is_delivered(&self, channel: ChannelId, message_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .store
            .ledger_state(channel, message_id)?
            .is_some_and(is_delivered_state))
    }

    /// Records that the sink accepted these messages of one channel (one atomic batch). Entries
    /// already delivered or marked read are left as they are; answers how many changed.
    pub fn record_delivered<S: AsRef<str>>(
        &self,
        channel: ChannelId,
        message_ids: &[S],
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let mails: Vec<DeliveredMail<'_>> =
            message_ids.iter().map(|id| (id.as_ref(), None)).collect();
        self.record_delivered_mail(channel, &mails, now)
    }

    /// [`record_delivered`](Self::record_delivered), also remembering each message's Internet
    /// Message-ID in the same atomic batch (see [`message_id_key`]).
    pub fn record_delivered_mail(
        &self,
        channel: ChannelId,
        mails: &[DeliveredMail<'_>],
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let mut known = Vec::with_capacity(mails.len());
        for (id, _) in mails {
            known.push(self.known(channel, id)?);
        }
        let fresh: Vec<KnownMail<'_>> = mails
            .iter()
            .zip(&known)
            .filter_map(|((id, imid), known)| match known {
                Known::Delivered => None,
                Known::Fresh(entry) => Some(KnownMail {
                    channel,
                    message_id: id,
                    internet_message_id: *imid,
                    known: entry.as_ref(),
                }),
            })
            .collect();
        self.record_delivered_known(&fresh, now)?;
        Ok(fresh.len())
    }

    /// What the ledger knows of a message about to be delivered: one read, whose answer
    /// [`record_delivered_known`](Self::record_delivered_known) takes.
    pub fn known(&self, channel: ChannelId, message_id: &str) -> Result<Known, StoreError> {
        Ok(match self.store.ledger_get(channel, message_id)? {
            Some(entry) if is_delivered(&entry) => Known::Delivered,
            entry => Known::Fresh(entry),
        })
    }

    /// Records that the sink accepted these messages, of any channels, in one atomic batch (one
    /// per channel in cluster mode), from what [`known`](Self::known) answered for each (the
    /// caller is the one writer of "delivered" for them, so nothing changed in between): no read.
    /// Each message's Internet Message-ID is remembered in the same batch.
    pub fn record_delivered_known(
        &self,
        mails: &[KnownMail<'_>],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if mails.is_empty() {
            return Ok(());
        }
        let mut batch = LedgerBatch::with_capacity(mails.len() * 2);
        let alias = alias_entry(now);
        for mail in mails {
            batch.put(
                mail.channel,
                mail.message_id,
                &delivered_entry(mail.known, now),
            )?;
            if let Some(key) = mail.internet_message_id.and_then(message_id_key) {
                batch.put(mail.channel, &key, &alias)?;
            }
        }
        self.store.ledger_apply(batch)
    }

    /// The PostgreSQL table sink: delivers these mails (message id, record as JSON text) of one
    /// channel into the `mail` table and records them as delivered, in one transaction (fenced in
    /// cluster mode), so a mail is in the table exactly once and the ledger says so, whatever node
    /// delivers it and whatever fails. Mail already delivered is left out; answers how many were
    /// delivered now.
    pub fn deliver_into_table(
        &self,
        channel: ChannelId,
        mails: &[(String, String)],
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        self.deliver_into_table_with_ids(channel, mails, &[], now)
    }

    /// [`deliver_into_table`](Self::deliver_into_table), also remembering the Internet Message-IDs
    /// `imids` (message id, Internet Message-ID) of the delivered mails in the same transaction.
    pub fn deliver_into_table_with_ids(
        &self,
        channel: ChannelId,
        mails: &[(String, String)],
        imids: &[(String, String)],
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let mut entries = Vec::with_capacity(mails.len());
        let mut fresh = Vec::with_capacity(mails.len());
        for (id, record) in mails {
            let known = self.store.ledger_get(channel, id)?;
            if known.as_ref().is_some_and(is_delivered) {
                continue;
            }
            entries.push((id.clone(), delivered_entry(known.as_ref(), now)));
            fresh.push((id.clone(), record.clone()));
            let imid = imids.iter().find(|(m, _)| m == id).map(|(_, i)| i.as_str());
            if let Some(key) = imid.and_then(message_id_key) {
                entries.push((key, alias_entry(now)));
            }
        }
        let delivered = fresh.len();
        if !entries.is_empty() {
            self.store
                .ledger_put_many_with_mail(channel, &entries, &fresh)?;
        }
        Ok(delivered)
    }

    /// Records that these messages are marked read in the mailbox (or gone from it): done. One
    /// read per message (its failure count and first sighting are kept) and one atomic batch.
    pub fn record_marked_read<S: AsRef<str>>(
        &self,
        channel: ChannelId,
        message_ids: &[S],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.record_marked_read_after(channel, message_ids, &std::collections::HashMap::new(), now)
    }

    /// [`record_marked_read`](Self::record_marked_read) from the entries the cycle's sort read
    /// (`prior`, see [`Sorted::prior`]): no read for a message in it, one for any other (mail a
    /// person read, in unread mode). The caller is its channel's cycle: nothing but the
    /// processor's "delivered", which keeps the same failure count, sighting and receipt time,
    /// wrote these entries since the sort.
    pub fn record_marked_read_after<S: AsRef<str>>(
        &self,
        channel: ChannelId,
        message_ids: &[S],
        prior: &std::collections::HashMap<String, Option<LedgerEntry>>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if message_ids.is_empty() {
            return Ok(());
        }
        let mut batch = LedgerBatch::with_capacity(message_ids.len());
        for id in message_ids {
            let id = id.as_ref();
            let read;
            let known = match prior.get(id) {
                Some(entry) => entry.as_ref(),
                None => {
                    read = self.store.ledger_get(channel, id)?;
                    read.as_ref()
                }
            };
            batch.put(channel, id, &marked_read_entry(known, now))?;
        }
        self.store.ledger_apply(batch)
    }

    /// Records that the sink refused these messages for a reason of their own (not an outage):
    /// each counts one more failure and is quarantined at `max_attempts`. Answers each message's
    /// new state, in order.
    pub fn record_failures(
        &self,
        channel: ChannelId,
        failures: &[(String, String)],
        max_attempts: u32,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, AfterFailure)>, StoreError> {
        let mut entries = Vec::with_capacity(failures.len());
        let mut after = Vec::with_capacity(failures.len());
        for (message_id, error) in failures {
            let known = self.store.ledger_get(channel, message_id)?;
            if known.as_ref().is_some_and(is_delivered) {
                // Delivered meanwhile (a repeat of a message another batch carried): not a failure.
                continue;
            }
            let count = known.as_ref().map_or(0, |e| e.failures).saturating_add(1);
            let (state, outcome) = if count >= max_attempts.max(1) {
                (
                    LedgerState::Quarantined,
                    AfterFailure::Quarantined { failures: count },
                )
            } else {
                (
                    LedgerState::Discovered,
                    AfterFailure::Retry { failures: count },
                )
            };
            entries.push((
                message_id.clone(),
                LedgerEntry {
                    state,
                    failures: count,
                    last_error: Some(error.clone()),
                    received_at: known.as_ref().and_then(|e| e.received_at),
                    first_seen_at: known.as_ref().map_or(now, |e| e.first_seen_at),
                    updated_at: now,
                },
            ));
            after.push((message_id.clone(), outcome));
        }
        if !entries.is_empty() {
            self.store.ledger_put_many(channel, &entries)?;
        }
        let newly = after
            .iter()
            .filter(|(_, outcome)| matches!(outcome, AfterFailure::Quarantined { .. }))
            .count();
        if newly > 0 {
            *self.quarantined.entry(channel).or_insert(0) +=
                u32::try_from(newly).unwrap_or(u32::MAX);
        }
        Ok(after)
    }

    /// The quarantined messages of a channel (at most `limit`), with their entries.
    pub fn quarantined(
        &self,
        channel: ChannelId,
        limit: usize,
    ) -> Result<Vec<(String, LedgerEntry)>, StoreError> {
        self.store
            .ledger_list(channel, Some(LedgerState::Quarantined), limit)
    }

    /// Releases a channel's quarantined messages: their entries are forgotten, so they are
    /// delivered again with a fresh failure count (the cycle fetches them by id). Answers their ids.
    pub fn release_quarantine(&self, channel: ChannelId) -> Result<Vec<String>, StoreError> {
        let quarantined = self.quarantined(channel, usize::MAX)?;
        for (message_id, _) in &quarantined {
            self.store.ledger_delete(channel, message_id)?;
        }
        self.quarantined.remove(&channel);
        Ok(quarantined.into_iter().map(|(id, _)| id).collect())
    }

    /// Forgets entries of mail marked read before `older_than`; answers how many.
    pub fn prune(&self, older_than: DateTime<Utc>) -> Result<usize, StoreError> {
        self.store.ledger_prune(older_than)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::domain::secret::MasterKey;
    use crate::store::StoreOptions;

    fn ledger() -> (tempfile::TempDir, Ledger) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &dir.path().join("store"),
            MasterKey::generate(),
            StoreOptions::default(),
        )
        .unwrap();
        (dir, Ledger::new(store))
    }

    #[test]
    fn a_message_goes_from_new_to_delivered_to_marked_read() {
        let (_dir, ledger) = ledger();
        let id = ChannelId::generate();
        let now = Utc::now();
        let sorted = ledger.sort(id, vec!["m1", "m2"], |m| m).unwrap();
        assert_eq!(sorted.to_deliver, vec!["m1", "m2"]);
        assert_eq!(ledger.record_delivered(id, &["m1"], now).unwrap(), 1);
        // A second record of the same delivery changes nothing.
        assert_eq!(ledger.record_delivered(id, &["m1"], now).unwrap(), 0);
        let sorted = ledger.sort(id, vec!["m1", "m2"], |m| m).unwrap();
        assert_eq!(sorted.to_deliver, vec!["m2"]);
        assert_eq!(sorted.to_mark, vec!["m1".to_owned()]);
        ledger.record_marked_read(id, &["m1"], now).unwrap();
        let sorted = ledger.sort(id, vec!["m1"], |m| m).unwrap();
        assert_eq!(sorted.done, vec!["m1".to_owned()]);
        assert!(sorted.to_mark.is_empty() && sorted.to_deliver.is_empty());
        assert!(ledger.is_delivered(id, "m1").unwrap());
        assert!(!ledger.is_delivered(id, "m2").unwrap());
    }

    #[test]
    fn a_mark_read_from_the_sorts_entries_writes_what_one_that_reads_would() {
        // Two ledgers with the same history: a message that failed twice and is then delivered,
        // one delivered by an earlier cycle and one new. One records the mark-read by reading
        // each entry, the other from what its sort read; the entries must be the same, failure
        // count, first sighting and receipt time kept.
        let (_a, reading) = ledger();
        let (_b, sorting) = ledger();
        let id = ChannelId::generate();
        let first = Utc::now() - chrono::Duration::hours(1);
        let later = Utc::now();
        let failed = vec![("failed".to_owned(), "the sink refused it".to_owned())];
        for ledger in [&reading, &sorting] {
            ledger.record_failures(id, &failed, 5, first).unwrap();
            ledger.record_failures(id, &failed, 5, first).unwrap();
            ledger.record_delivered(id, &["earlier"], first).unwrap();
        }
        let sorted = sorting
            .sort(id, vec!["failed", "earlier", "new"], |m| m)
            .unwrap();
        assert_eq!(sorted.to_deliver, vec!["failed", "new"]);
        assert_eq!(sorted.to_mark, vec!["earlier".to_owned()]);
        assert_eq!(sorted.prior.get("new"), Some(&None));
        assert_eq!(
            sorted
                .prior
                .get("failed")
                .and_then(|e| e.as_ref())
                .map(|e| e.failures),
            Some(2)
        );
        for ledger in [&reading, &sorting] {
            ledger
                .record_delivered(id, &["failed", "new"], later)
                .unwrap();
        }
        let ids = ["failed", "earlier", "new"];
        reading.record_marked_read(id, &ids, later).unwrap();
        sorting
            .record_marked_read_after(id, &ids, &sorted.prior, later)
            .unwrap();
        for m in ids {
            let read = reading.store().ledger_get(id, m).unwrap().unwrap();
            let kept = sorting.store().ledger_get(id, m).unwrap().unwrap();
            assert_eq!(read, kept, "{m}");
            assert_eq!(kept.state, LedgerState::MarkedRead);
        }
        let failed = sorting.store().ledger_get(id, "failed").unwrap().unwrap();
        assert_eq!((failed.failures, failed.first_seen_at), (2, first));
        // A message the sort did not see (mail a person read, in unread mode) is read first.
        sorting
            .record_failures(id, &[("other".to_owned(), "no".to_owned())], 5, first)
            .unwrap();
        sorting
            .record_marked_read_after(id, &["other"], &sorted.prior, later)
            .unwrap();
        let other = sorting.store().ledger_get(id, "other").unwrap().unwrap();
        assert_eq!((other.state, other.failures), (LedgerState::MarkedRead, 1));
    }

    #[test]
    fn repeated_failures_quarantine_a_message_and_a_replay_releases_it() {
        let (_dir, ledger) = ledger();
        let id = ChannelId::generate();
        let now = Utc::now();
        let fail = vec![("bad".to_owned(), "the sink refused it".to_owned())];
        assert_eq!(
            ledger.record_failures(id, &fail, 3, now).unwrap(),
            vec![("bad".to_owned(), AfterFailure::Retry { failures: 1 })]
        );
        ledger.record_failures(id, &fail, 3, now).unwrap();
        assert_eq!(
            ledger.record_failures(id, &fail, 3, now).unwrap(),
            vec![("bad".to_owned(), AfterFailure::Quarantined { failures: 3 })]
        );
        let sorted = ledger.sort(id, vec!["bad"], |m| m).unwrap();
        assert!(sorted.to_deliver.is_empty());
        assert_eq!(sorted.quarantined, 1);
        assert_eq!(ledger.quarantined_count(id), 1);
        // A ledger of a restarted daemon counts it from the store.
        let restarted = Ledger::new(ledger.store().clone());
        assert_eq!(restarted.quarantined_count(id), 0);
        restarted.load_quarantine_counts().unwrap();
        assert_eq!(restarted.quarantined_count(id), 1);
        assert_eq!(
            ledger.release_quarantine(id).unwrap(),
            vec!["bad".to_owned()]
        );
        assert_eq!(ledger.quarantined_count(id), 0);
        let sorted = ledger.sort(id, vec!["bad"], |m| m).unwrap();
        assert_eq!(sorted.to_deliver, vec!["bad"]);
    }

    #[test]
    fn mail_delivered_under_one_transport_is_known_by_its_message_id_under_the_other() {
        let (_dir, ledger) = ledger();
        let id = ChannelId::generate();
        let now = Utc::now();
        // Graph delivered it under its Graph id.
        ledger
            .record_delivered_mail(id, &[("AAMkGraphId", Some("<a1@contoso.com>"))], now)
            .unwrap();
        // IMAP finds the same mail (another id, the Message-ID written without brackets) and a
        // new one: only the new one is to deliver; the known one only needs its \Seen.
        let found = vec![
            ("imap:7:1", Some("a1@contoso.com")),
            ("imap:7:2", Some("<b2@x>")),
        ];
        let sorted = ledger.sort_known(id, found, |m| m.0, |m| m.1).unwrap();
        assert_eq!(sorted.to_deliver, vec![("imap:7:2", Some("<b2@x>"))]);
        assert_eq!(sorted.to_mark, vec!["imap:7:1".to_owned()]);
        // Mail without a Message-ID is judged by its own id only.
        let sorted = ledger
            .sort_known(id, vec![("imap:7:3", None)], |m| m.0, |m| m.1)
            .unwrap();
        assert_eq!(sorted.to_deliver.len(), 1);
        assert_eq!(message_id_key(" <> "), None);
    }

    #[test]
    fn deliveries_of_several_channels_are_recorded_in_one_call_from_what_was_known() {
        let (_dir, ledger) = ledger();
        let (a, b) = (ChannelId::generate(), ChannelId::generate());
        let now = Utc::now();
        // b's message failed once before: its count survives the delivery.
        ledger
            .record_failures(b, &[("m".to_owned(), "refused".to_owned())], 3, now)
            .unwrap();
        ledger.record_delivered(a, &["old"], now).unwrap();
        assert_eq!(ledger.known(a, "old").unwrap(), Known::Delivered);
        assert_eq!(ledger.known(a, "m").unwrap(), Known::Fresh(None));
        let Known::Fresh(Some(before)) = ledger.known(b, "m").unwrap() else {
            panic!("b's message has an entry");
        };
        assert_eq!(before.failures, 1);
        ledger
            .record_delivered_known(
                &[
                    KnownMail {
                        channel: a,
                        message_id: "m",
                        internet_message_id: Some("<m@a>"),
                        known: None,
                    },
                    KnownMail {
                        channel: b,
                        message_id: "m",
                        internet_message_id: None,
                        known: Some(&before),
                    },
                ],
                now,
            )
            .unwrap();
        assert!(ledger.is_delivered(a, "m").unwrap());
        assert!(ledger.is_delivered(b, "m").unwrap());
        let entry = ledger.store().ledger_get(b, "m").unwrap().unwrap();
        assert_eq!((entry.state, entry.failures), (LedgerState::Delivered, 1));
        // a's mail is known by its Message-ID too.
        let sorted = ledger
            .sort_known(a, vec![("imap:1:1", Some("m@a"))], |m| m.0, |m| m.1)
            .unwrap();
        assert_eq!(sorted.to_mark, vec!["imap:1:1".to_owned()]);
        // Marked read keeps the failure count and the first sighting.
        ledger.record_marked_read(b, &["m"], Utc::now()).unwrap();
        let read = ledger.store().ledger_get(b, "m").unwrap().unwrap();
        assert_eq!(read.state, LedgerState::MarkedRead);
        assert_eq!(
            (read.failures, read.first_seen_at),
            (1, before.first_seen_at)
        );
    }

    #[test]
    fn a_failure_reported_for_mail_already_delivered_does_not_undo_the_delivery() {
        let (_dir, ledger) = ledger();
        let id = ChannelId::generate();
        let now = Utc::now();
        ledger.record_delivered(id, &["m"], now).unwrap();
        let after = ledger
            .record_failures(id, &[("m".to_owned(), "x".to_owned())], 1, now)
            .unwrap();
        assert!(after.is_empty());
        assert!(ledger.is_delivered(id, "m").unwrap());
    }
}

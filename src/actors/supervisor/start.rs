//! The start of many channel actors: what each needs made ahead from its record alone
//! ([`Arrival`], on the store's decoding threads), the prepared actor handed to its arbiter
//! ([`Launch`]), and the batching of those hand-overs, one message per arbiter per [`START_BATCH`].

use std::sync::Arc;

use crate::actors::channel::ChannelActor;
use crate::ingest::runtime::ChannelRuntime;
use crate::status::ChannelView;
use crate::store::ChannelRecord;

use super::{MailboxIdentity, Started};

/// How many channel actors one message to an arbiter starts (at start-up: a million channels are
/// ~500 messages, not a million closures).
pub(super) const START_BATCH: usize = 2048;

/// A channel actor's mailbox capacity (actix's default).
pub(super) const ACTOR_MAILBOX: usize = 16;

/// A channel read at start-up, with the part of starting it that depends on the record alone done
/// already, on the store's thread that decoded it ([`Store::load_channels_with`]): with these
/// allocations and hashes on its one thread, the supervisor's phase of a fresh process's start took
/// 8.7 s at a million channels (the new pages faulted in one thread at a time), 3.8 s without.
/// `Arrival::of` has no side effects: nothing is registered until the supervisor takes the arrival.
///
/// [`Store::load_channels_with`]: crate::store::Store::load_channels_with
pub struct Arrival {
    pub(super) record: ChannelRecord,
    /// The board's row, without the app's credential expiry (the apps are read beside the
    /// channels: the supervisor fills it in).
    pub(super) row: Box<ChannelView>,
    pub(super) identity: MailboxIdentity,
    pub(super) started: Started,
    /// An enabled channel's actor mailbox and fresh run-time state (used unless the channel has
    /// one already).
    pub(super) premade: Option<Premade>,
}

/// What an actor's start needs that is made the same for every channel.
pub(super) struct Premade {
    pub(super) sender: actix::dev::channel::AddressSender<ChannelActor>,
    pub(super) receiver: actix::dev::channel::AddressReceiver<ChannelActor>,
    pub(super) runtime: Arc<ChannelRuntime>,
}

impl Premade {
    pub(super) fn new() -> Self {
        let (sender, receiver) = actix::dev::channel::channel(ACTOR_MAILBOX);
        Premade {
            sender,
            receiver,
            runtime: Arc::default(),
        }
    }
}

impl Arrival {
    /// Everything of starting `record`'s channel that needs nothing but the record.
    pub fn of(record: ChannelRecord) -> Self {
        Arrival {
            row: Box::new(ChannelView::from_record(&record)),
            identity: MailboxIdentity::of(&record),
            started: Started::of(&record),
            premade: record.enabled.then(Premade::new),
            record,
        }
    }
}

/// A channel actor whose address exists and which its arbiter is still to start.
pub(super) struct Launch {
    pub(super) receiver: actix::dev::channel::AddressReceiver<ChannelActor>,
    pub(super) record: ChannelRecord,
    pub(super) poll_now: bool,
    /// The channel's run-time state, which claimed `generation` (handed over so that the arbiter
    /// does not look it up again among a million).
    pub(super) runtime: Arc<ChannelRuntime>,
    pub(super) generation: u64,
}

/// Items gathered per lane (arbiter), handed out in batches of at most `size`.
pub(super) struct Batches<T> {
    pub(super) lanes: Vec<Vec<T>>,
    pub(super) size: usize,
}

impl<T> Batches<T> {
    pub(super) fn new(lanes: usize, size: usize) -> Self {
        Batches {
            lanes: (0..lanes).map(|_| Vec::new()).collect(),
            size: size.max(1),
        }
    }

    /// Adds `item` to `lane`; answers the lane's batch once it is full.
    pub(super) fn push(&mut self, lane: usize, item: T) -> Option<Vec<T>> {
        let size = self.size;
        let Some(batch) = self.lanes.get_mut(lane) else {
            // No such lane: handed out alone rather than lost.
            return Some(vec![item]);
        };
        if batch.capacity() == 0 {
            batch.reserve_exact(size);
        }
        batch.push(item);
        (batch.len() >= size).then(|| std::mem::take(batch))
    }

    /// The batches not full yet, by lane.
    pub(super) fn finish(self) -> impl Iterator<Item = (usize, Vec<T>)> {
        self.lanes
            .into_iter()
            .enumerate()
            .filter(|(_, batch)| !batch.is_empty())
    }
}

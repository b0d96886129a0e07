//! What the supervisor and every channel actor share: the ingestion context, the processor the
//! mail is handed to, the status board each actor publishes its row on, and (cluster mode) the
//! store's coordination.

use std::sync::Arc;

use actix::Addr;

use crate::actors::messages::ProcessBatch;
use crate::actors::processor::ProcessorActor;
use crate::domain::{ChannelId, MailItem};
use crate::ingest::Ingest;
use crate::ingest::cycle::{Acks, Handover};
use crate::status::StatusBoard;
use crate::store::cluster::Coordination;

/// The actors' shared dependencies.
pub struct Deps {
    /// The ingestion pipeline's context (store, ledger, clients, limiters, runtimes, counters).
    pub ingest: Arc<Ingest>,
    /// Where mail goes.
    pub processor: Addr<ProcessorActor>,
    /// The read model.
    pub board: Arc<StatusBoard>,
    /// Cluster mode: how this node tells the others (a poll asked for on a node that does not own
    /// the channel). `None` on a single node.
    pub coordination: Option<Arc<dyn Coordination>>,
}

/// The processor takes the mail a cycle hands over.
impl Handover for Addr<ProcessorActor> {
    async fn hand_over(&self, channel: ChannelId, items: Vec<MailItem>) -> Result<Acks, String> {
        self.send(ProcessBatch {
            channel_id: channel,
            items,
        })
        .await
        .map_err(|err| format!("the processor is not running: {err}"))
    }
}

//! What the supervisor and every channel actor share: the ingestion context, the processor the
//! mail is handed to, the status board each actor publishes its row on, and (cluster mode) the
//! store's coordination.

use std::sync::Arc;

use crate::actors::processor::Processor;
use crate::ingest::Ingest;
use crate::status::StatusBoard;
use crate::store::cluster::Coordination;

/// The actors' shared dependencies.
pub struct Deps {
    /// The ingestion pipeline's context (store, ledger, clients, limiters, runtimes, counters).
    pub ingest: Arc<Ingest>,
    /// Where mail goes: a handle on the processor's shared core (no actor mailbox in between).
    pub processor: Processor,
    /// The read model.
    pub board: Arc<StatusBoard>,
    /// Cluster mode: how this node tells the others (a poll asked for on a node that does not own
    /// the channel). `None` on a single node.
    pub coordination: Option<Arc<dyn Coordination>>,
}

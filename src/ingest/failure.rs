//! Why a cycle failed, and what an operator is told about it: every failure is classified through
//! the catalogue into a status, a retry policy and a remedy.

use std::time::Duration;

use chrono::Utc;

use crate::catalogue::{self, Classification};
use crate::graph::GraphError;
use crate::imap::ImapError;
use crate::oauth::OAuthError;
use crate::store::{ErrorSource, LastError, StoreError};

/// Why a cycle failed.
#[derive(Debug)]
pub enum Failure {
    /// The identity platform refused or failed a refresh, and the access token is not usable.
    Identity(OAuthError),
    /// Graph refused or failed a request.
    Graph(GraphError),
    /// The IMAP server refused or failed a command (channels on the IMAP transport).
    Imap(ImapError),
    /// The store could not read or record something the cycle needs.
    Store(StoreError),
    /// The processor could not take the mail (it is stopping, or its sink is gone).
    Processor(String),
    /// Cluster mode: this node no longer holds the channel's shard (or its lease deadline passed):
    /// another node runs the channel now, and this one does nothing more for it.
    NotOwned,
}

impl From<GraphError> for Failure {
    fn from(err: GraphError) -> Self {
        Failure::Graph(err)
    }
}

impl From<ImapError> for Failure {
    fn from(err: ImapError) -> Self {
        Failure::Imap(err)
    }
}

impl From<StoreError> for Failure {
    fn from(err: StoreError) -> Self {
        if err.kind() == crate::store::StoreErrorKind::Fenced {
            // The database refused the write: another node holds the channel's shard now.
            Failure::NotOwned
        } else {
            Failure::Store(err)
        }
    }
}

/// A failure as the channel's schedule and status see it.
#[derive(Debug, Clone)]
pub struct Classified {
    /// The catalogue's entry: status, retry policy, remedy.
    pub class: Classification,
    /// What the operator sees.
    pub error: LastError,
    /// Microsoft's `Retry-After`, a floor for the next try.
    pub retry_after: Option<Duration>,
}

/// Builds the operator-facing error from a classification.
pub fn last_error(
    source: ErrorSource,
    class: &Classification,
    message: String,
    trace_id: Option<String>,
    correlation_id: Option<String>,
) -> LastError {
    LastError {
        source,
        code: class.code().to_owned(),
        message,
        remedy: class.remedy().to_owned(),
        at: Utc::now(),
        trace_id,
        correlation_id,
    }
}

/// The store's own failure, as a channel reports it.
fn store_class(err: &StoreError) -> Classification {
    let code = if err.is_disk_full() {
        catalogue::codes::DISK_FULL
    } else if err.is_read_only() {
        catalogue::codes::STORE_READ_ONLY
    } else {
        catalogue::codes::STORE_UNAVAILABLE
    };
    Classification::of(code).unwrap_or_else(|| catalogue::classify_graph_error(503, ""))
}

impl Failure {
    /// Whether Graph refused the access token (a refresh and one retry may fix it).
    pub fn needs_token_refresh(&self) -> bool {
        match self {
            Failure::Graph(err) => err.needs_token_refresh(),
            Failure::Imap(err) => err.needs_token_refresh(),
            _ => false,
        }
    }

    /// Whether the channel is no longer this node's (cluster mode): stop it quietly, it is not a
    /// failure of the channel.
    pub fn is_not_owned(&self) -> bool {
        match self {
            Failure::NotOwned => true,
            Failure::Store(err) => err.kind() == crate::store::StoreErrorKind::Fenced,
            _ => false,
        }
    }

    /// Whether Graph throttled the request.
    pub fn is_throttled(&self) -> bool {
        match self {
            Failure::Graph(err) => err.is_throttled(),
            Failure::Imap(err) => err.is_throttled(),
            _ => false,
        }
    }

    /// Classifies the failure through the catalogue.
    pub fn classify(&self) -> Classified {
        match self {
            Failure::Identity(err) => {
                let class = err.classify();
                let (trace, correlation) = err.ids();
                Classified {
                    error: last_error(
                        ErrorSource::IdentityPlatform,
                        &class,
                        err.message(),
                        trace,
                        correlation,
                    ),
                    class,
                    retry_after: err.retry_after(),
                }
            }
            Failure::Graph(err) => {
                let class =
                    catalogue::classify_graph_error(err.http_status().unwrap_or(503), err.code());
                let ids = err.request_ids().cloned().unwrap_or_default();
                Classified {
                    error: last_error(
                        ErrorSource::Graph,
                        &class,
                        err.to_string(),
                        ids.request_id,
                        ids.client_request_id,
                    ),
                    class,
                    retry_after: err.retry_after(),
                }
            }
            Failure::Imap(err) => {
                let class = Classification::of(err.code())
                    .unwrap_or_else(|| catalogue::classify_graph_error(503, ""));
                Classified {
                    error: last_error(ErrorSource::Imap, &class, err.to_string(), None, None),
                    class,
                    retry_after: err.retry_after(),
                }
            }
            Failure::Store(err) => {
                let class = store_class(err);
                Classified {
                    error: last_error(ErrorSource::Store, &class, err.to_string(), None, None),
                    class,
                    retry_after: None,
                }
            }
            Failure::NotOwned => {
                let class = Classification::of(catalogue::codes::SINK_UNAVAILABLE)
                    .unwrap_or_else(|| catalogue::classify_graph_error(503, ""));
                Classified {
                    error: last_error(
                        ErrorSource::Store,
                        &class,
                        "this node no longer holds the channel's shard; another node runs it now"
                            .to_owned(),
                        None,
                        None,
                    ),
                    class,
                    retry_after: None,
                }
            }
            Failure::Processor(text) => {
                let class = Classification::of(catalogue::codes::SINK_UNAVAILABLE)
                    .unwrap_or_else(|| catalogue::classify_graph_error(503, ""));
                Classified {
                    error: last_error(ErrorSource::Sink, &class, text.clone(), None, None),
                    class,
                    retry_after: None,
                }
            }
        }
    }
}

//! A resumable session's frames kept in the cluster: before a batch goes to the socket,
//! its frames are written where any node can read them, so that the session can be
//! resumed on another node if this one is lost. Nothing the client may have received is
//! missing there.

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::router::{InboxPos, MirroredFrame, Router};

/// Where one resumable session's writer keeps its frames.
pub struct Mirror {
    router: Arc<dyn Router>,
    session: uuid::Uuid,
    /// The last inbox position queued before the last frame kept.
    hw: Mutex<Option<InboxPos>>,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("hw", &*self.hw.lock())
            .finish()
    }
}

/// One frame of a batch, as the writer hands it over.
#[derive(Debug)]
pub struct BatchFrame {
    /// Its payload.
    pub payload: Bytes,
    /// The inbox position marked just before it, if one was.
    pub mark: Option<InboxPos>,
}

impl Mirror {
    pub(crate) fn new(
        router: Arc<dyn Router>,
        session: uuid::Uuid,
        hw: Option<InboxPos>,
    ) -> Arc<Self> {
        Arc::new(Self {
            router,
            session,
            hw: Mutex::new(hw),
        })
    }

    /// Keeps a batch's frames, numbered from `first`, and drops those older than
    /// `oldest`. A failure is logged and counted: the session goes on, and a resume on
    /// another node finds the frames missing and says so.
    pub fn keep(
        &self,
        first: u64,
        frames: Vec<BatchFrame>,
        oldest: u64,
    ) -> impl Future<Output = ()> + Send + 'static {
        let kept: Vec<MirroredFrame> = {
            let mut hw = self.hw.lock();
            frames
                .into_iter()
                .zip(first..)
                .map(|(f, seq)| {
                    if let Some(m) = f.mark {
                        *hw = Some(m);
                    }
                    MirroredFrame {
                        seq,
                        payload: f.payload,
                        hw: *hw,
                    }
                })
                .collect()
        };
        let router = self.router.clone();
        let session = self.session;
        async move {
            if kept.is_empty() {
                return;
            }
            let n = kept.len() as u64;
            if let Err(e) = router.mirror(&session, kept, oldest).await {
                metrics::counter!("signal_resume_mirror_failures_total").increment(1);
                tracing::warn!(error = %e, frames = n, "resume: could not keep a session's frames in the cluster");
            }
        }
    }
}

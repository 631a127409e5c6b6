//! The capture-then-deliver flow as the runner sees it: each job kind goes to its own job, and
//! what one job's end sets off in another (a delivery that finds its invoice voided applies the
//! void) is decided here, so that no job calls another.

use super::{
    delivery::{Delivered, DeliveryJob},
    dispatch::DispatchJob,
    job::{Attempt, Jobs, Routed},
    void::VoidJob,
};
use crate::store::{Finish, JobKind, Lease, StoreError};

/// The three jobs of the flow.
pub(crate) struct Flow {
    /// Reads, decides, captures and routes.
    pub(crate) dispatch: DispatchJob,
    /// Delivers (or sends a cancellation notice) through one channel instance.
    pub(crate) delivery: DeliveryJob,
    /// Applies confirmed voids and waits for accepted ones.
    pub(crate) void: VoidJob,
}

impl Jobs for Flow {
    async fn attempt(&self, lease: &Lease, routed: Option<Routed>) -> Result<Attempt, StoreError> {
        match lease.job.kind {
            JobKind::Dispatch => self.dispatch.attempt(lease).await,
            JobKind::Void => self.void.attempt(lease).await.map(Attempt::from),
            JobKind::Deliver | JobKind::Cancel => {
                match self.delivery.attempt(lease, routed).await? {
                    Delivered::Ended(finish) => Ok(finish.into()),
                    Delivered::VoidedMeanwhile => {
                        self.void.voided(&lease.job.transaction_id).await?;
                        Ok(Finish::Recorded.into())
                    }
                }
            }
        }
    }

    async fn given_up(&self, lease: &Lease, finish: Finish) -> Result<Finish, StoreError> {
        match lease.job.kind {
            JobKind::Dispatch => self.dispatch.given_up(lease, finish).await,
            JobKind::Deliver => self.delivery.failed_for_good(lease, finish).await,
            JobKind::Cancel | JobKind::Void => Ok(finish),
        }
    }
}

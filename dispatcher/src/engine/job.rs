//! What passes between the runner and the jobs it runs: an attempt ends with a [`Finish`] for
//! the runner to record, and perhaps with a delivery handed over to run next in the same worker.

use std::future::Future;

use crate::{
    config::Route,
    store::{Finish, Lease, StoreError},
};
use postbud_channel::Invoice;

/// The jobs a [`Runner`](super::runner::Runner) runs. It claims, leases, renews, catches panics
/// and records; an implementation does one attempt of the job it is given.
pub(crate) trait Jobs: Send + Sync + 'static {
    /// One attempt at the job `lease` holds, with what the dispatch that handed it over stored
    /// (`routed`), if one did.
    fn attempt(
        &self,
        lease: &Lease,
        routed: Option<Routed>,
    ) -> impl Future<Output = Result<Attempt, StoreError>> + Send;

    /// The bookkeeping of a job that ended for good outside its own code (a panic, attempts
    /// that died unrecorded): the end to record, after whatever such an end sets off.
    fn given_up(
        &self,
        lease: &Lease,
        finish: Finish,
    ) -> impl Future<Output = Result<Finish, StoreError>> + Send;
}

/// How one attempt ended.
#[derive(Debug)]
pub(crate) struct Attempt {
    /// The end to record.
    pub(crate) finish: Finish,
    /// A job leased to this worker by the attempt, to run right after it.
    pub(crate) next: Option<Handover>,
}

impl From<Finish> for Attempt {
    fn from(finish: Finish) -> Self {
        Self { finish, next: None }
    }
}

/// A job for this worker to run next: a delivery leased by the dispatch that routed it comes
/// with what that dispatch just stored, so it starts without reading it back.
#[derive(Debug)]
pub(crate) struct Handover {
    /// The job, leased to this worker.
    pub(crate) lease: Lease,
    /// What the dispatch stored with it.
    pub(crate) routed: Option<Routed>,
}

/// What a dispatch stored as it routed the invoice, exactly as stored: the invoice with its PDF
/// and the route chosen.
#[derive(Debug)]
pub(crate) struct Routed {
    /// The invoice the channels get.
    pub(crate) invoice: Invoice,
    /// The route chosen, as configured then.
    pub(crate) route: Route,
}

//! Subscriptions and advertisements: a client's filter compiled (narrowed to what its
//! principal may receive, for subscriptions), checked for cost, and handed to the router.

use palio_filter::CostBudget;
use palio_protocol::{ErrorCode, ServerFrame};
use palio_topology::SharedFilter;
use tokio::sync::oneshot;

use super::requests::{Session, answer_or_error};
use crate::router::{Command, Refusal};

impl Session<'_> {
    /// Compiles a client's filter, narrowed to what its principal may receive if `narrow`
    /// (subscriptions and queues), and checks its evaluation cost: a filter that does not
    /// compile is `invalid_filter`, one over the cost budget `limit_exceeded`
    /// (`palio_limits_hit_total{limit="filter_cost"}`).
    pub(super) fn compile(&self, source: &str, narrow: bool) -> Result<SharedFilter, Refusal> {
        let filter = if narrow {
            self.principal.narrow(source)?
        } else {
            SharedFilter::parse(source).map_err(|e| (ErrorCode::InvalidFilter, e.to_string()))?
        };
        if let Err(e) = filter.filter().check_cost(&CostBudget::default()) {
            self.shared
                .metrics
                .limits_hit
                .with_label_values(&["filter_cost"])
                .inc();
            return Err((ErrorCode::LimitExceeded, e.to_string()));
        }
        Ok(filter)
    }

    /// Compiles a client's filter ([`compile`](Self::compile), not narrowed) and asks the
    /// router the command `make` builds with it; a refused filter is answered without asking.
    async fn with_filter(
        &self,
        source: &str,
        make: impl FnOnce(SharedFilter, oneshot::Sender<Result<u64, Refusal>>) -> Command,
    ) -> Result<Result<u64, Refusal>, Refusal> {
        match self.compile(source, false) {
            Err(refusal) => Ok(Err(refusal)),
            Ok(filter) => self.shared.router.call(|reply| make(filter, reply)).await,
        }
    }

    /// Subscribes the client to `filter`, narrowed to its principal's permission.
    pub(super) async fn subscribe(&mut self, request: u64, filter: String) -> Result<(), Refusal> {
        let answer = match self.compile(&filter, true) {
            Ok(narrowed) => {
                let client = self.client;
                self.shared
                    .router
                    .call(|reply| Command::Subscribe {
                        client,
                        filter: narrowed,
                        reply,
                    })
                    .await?
            }
            Err(refusal) => Err(refusal),
        };
        if let Ok(id) = &answer {
            self.subscriptions.insert(*id, filter);
        }
        self.reply(answer_or_error(request, answer, |subscription| {
            ServerFrame::Subscribed {
                request,
                subscription,
            }
        }))
        .await
    }

    /// Ends one of the client's subscriptions.
    pub(super) async fn unsubscribe(
        &mut self,
        request: u64,
        subscription: u64,
    ) -> Result<(), Refusal> {
        let client = self.client;
        let answer = self
            .shared
            .router
            .call(|reply| Command::Unsubscribe {
                client,
                subscription,
                reply,
            })
            .await?;
        if answer.is_ok() {
            self.subscriptions.remove(&subscription);
        }
        self.reply(answer_or_error(request, answer, |()| ServerFrame::Done {
            request,
        }))
        .await
    }

    /// Advertises what the client will publish.
    pub(super) async fn advertise(&self, request: u64, filter: String) -> Result<(), Refusal> {
        let client = self.client;
        let answer = self
            .with_filter(&filter, |filter, reply| Command::Advertise {
                client,
                filter,
                reply,
            })
            .await?;
        self.reply(answer_or_error(request, answer, |advertisement| {
            ServerFrame::Advertised {
                request,
                advertisement,
            }
        }))
        .await
    }

    /// Withdraws one of the client's advertisements.
    pub(super) async fn unadvertise(
        &self,
        request: u64,
        advertisement: u64,
    ) -> Result<(), Refusal> {
        let client = self.client;
        let answer = self
            .shared
            .router
            .call(|reply| Command::Unadvertise {
                client,
                advertisement,
                reply,
            })
            .await?;
        self.reply(answer_or_error(request, answer, |()| ServerFrame::Done {
            request,
        }))
        .await
    }
}

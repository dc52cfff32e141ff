//! CNI when configured, the built-in bridge otherwise.
//!
//! The choice is made per call: a CNI config dropped into the conf dir takes
//! over new pods at once, while pods set up earlier are torn down by whichever
//! network set them up (the CNI cache says which).

use std::collections::HashSet;

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::bridge::BridgeNetwork;
use crate::error::{Error, Result};
use crate::runner::CniRunner;
use crate::types::{NetworkStatus, OrphanReport, PodNetworkRequest, PodNetworkResult};
use crate::PodNetwork;

/// Picks [`CniRunner`] when its conf dir has a config, else [`BridgeNetwork`].
#[derive(Debug)]
pub struct AutoNetwork {
    pub cni: CniRunner,
    pub builtin: BridgeNetwork,
}

impl AutoNetwork {
    pub fn new(cni: CniRunner, builtin: BridgeNetwork) -> Self {
        AutoNetwork { cni, builtin }
    }

    fn uses_cni(&self, req: &PodNetworkRequest) -> bool {
        self.cni.has_cached(&req.pod_id, &req.ifname)
    }
}

impl PodNetwork for AutoNetwork {
    fn setup<'a>(&'a self, req: &'a PodNetworkRequest) -> BoxFuture<'a, Result<PodNetworkResult>> {
        async move {
            if self.cni.has_config() {
                self.cni.setup(req).await
            } else {
                self.builtin.setup(req).await
            }
        }
        .boxed()
    }

    fn teardown<'a>(&'a self, req: &'a PodNetworkRequest) -> BoxFuture<'a, Result<()>> {
        async move {
            // Both are idempotent and cheap when they never saw the pod.
            let cni = if self.uses_cni(req) {
                self.cni.teardown(req).await
            } else {
                Ok(())
            };
            let builtin = self.builtin.teardown(req).await;
            match (cni, builtin) {
                (Ok(()), Ok(())) => Ok(()),
                (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
                (Err(a), Err(b)) => Err(Error::Rollback {
                    primary: Box::new(a),
                    rollback: Box::new(b),
                }),
            }
        }
        .boxed()
    }

    fn check<'a>(&'a self, req: &'a PodNetworkRequest) -> BoxFuture<'a, Result<()>> {
        async move {
            if self.uses_cni(req) {
                self.cni.check(req).await
            } else {
                self.builtin.check(req).await
            }
        }
        .boxed()
    }

    fn status(&self) -> BoxFuture<'_, NetworkStatus> {
        async move {
            if self.cni.has_config() {
                self.cni.status().await
            } else {
                self.builtin.status().await
            }
        }
        .boxed()
    }

    fn cleanup_orphans<'a>(&'a self, live_pod_ids: &'a HashSet<String>) -> BoxFuture<'a, Result<OrphanReport>> {
        async move {
            let mut report = self.cni.cleanup_orphans(live_pod_ids).await?;
            let builtin = self.builtin.cleanup_orphans(live_pod_ids).await?;
            report.pods.extend(builtin.pods);
            report.failures.extend(builtin.failures);
            Ok(report)
        }
        .boxed()
    }
}

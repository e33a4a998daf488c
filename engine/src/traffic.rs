//! The traffic seam: which set of an app's processes gets its requests. The router's
//! [`RoutingTable`] implements it on this machine; an ingress or a service mesh can later.
//! Weights are part of the seam: a canary sends a share of the traffic to a second set.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::names::{AppName, ServiceName};
use crate::router::{Backend, RoutingTable};
use crate::runtime::SetId;

/// One instance that can take requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub service: ServiceName,
    pub instance: String,
    pub addr: SocketAddr,
}

/// What stopped getting traffic at a switch: wait on it before stopping those processes.
#[derive(Debug, Default)]
pub struct Drain {
    backends: Vec<Arc<Backend>>,
}

impl Drain {
    pub fn new(backends: Vec<Arc<Backend>>) -> Drain {
        Drain { backends }
    }

    /// Waits (bounded) until no request is in flight on what was switched away from;
    /// `false` if some still were when `timeout` passed.
    pub async fn wait(&self, timeout: Duration) -> bool {
        crate::router::drain(&self.backends, timeout).await
    }
}

pub trait Traffic: Send + Sync + 'static {
    /// `app` has a release that is being brought up: answer "starting" (503), not "no app".
    fn starting(&self, app: &AppName);
    /// Sends all of `app`'s traffic to `set`, whose ready instances are `endpoints`.
    fn switch(&self, app: &AppName, set: &SetId, endpoints: Vec<Endpoint>) -> Drain;
    /// Adds `set` next to the one that gets traffic now, with `weight` against the other's.
    fn add_set(&self, app: &AppName, set: &SetId, weight: u32, endpoints: Vec<Endpoint>);
    /// Changes the shares of the app's sets.
    fn set_weights(&self, app: &AppName, weights: &[(SetId, u32)]);
    /// An instance of `set` can take requests (again). Ignored if `set` gets no traffic.
    fn ready(&self, app: &AppName, set: &SetId, endpoint: Endpoint);
    /// An instance of `set` must get no more requests. Ignored if `set` gets no traffic.
    fn down(&self, app: &AppName, set: &SetId, service: &ServiceName, instance: &str);
    /// `app` gets no traffic at all any more.
    fn clear(&self, app: &AppName) -> Drain;
}

fn by_service(endpoints: Vec<Endpoint>) -> HashMap<String, Vec<Arc<Backend>>> {
    let mut routes: HashMap<String, Vec<Arc<Backend>>> = HashMap::new();
    for e in endpoints {
        routes
            .entry(e.service.to_string())
            .or_default()
            .push(Backend::new(e.instance, e.addr));
    }
    routes
}

impl Traffic for RoutingTable {
    fn starting(&self, app: &AppName) {
        RoutingTable::starting(self, app.as_str());
    }

    fn switch(&self, app: &AppName, set: &SetId, endpoints: Vec<Endpoint>) -> Drain {
        Drain::new(self.route_to(app.as_str(), set.as_str(), by_service(endpoints)))
    }

    fn add_set(&self, app: &AppName, set: &SetId, weight: u32, endpoints: Vec<Endpoint>) {
        RoutingTable::add_set(
            self,
            app.as_str(),
            set.as_str(),
            weight,
            by_service(endpoints),
        );
    }

    fn set_weights(&self, app: &AppName, weights: &[(SetId, u32)]) {
        let weights: Vec<(&str, u32)> = weights.iter().map(|(s, w)| (s.as_str(), *w)).collect();
        RoutingTable::set_weights(self, app.as_str(), &weights);
    }

    fn ready(&self, app: &AppName, set: &SetId, endpoint: Endpoint) {
        self.add_backend(
            app.as_str(),
            set.as_str(),
            endpoint.service.as_str(),
            Backend::new(endpoint.instance, endpoint.addr),
        );
    }

    fn down(&self, app: &AppName, set: &SetId, service: &ServiceName, instance: &str) {
        self.remove_backend(app.as_str(), set.as_str(), service.as_str(), instance);
    }

    fn clear(&self, app: &AppName) -> Drain {
        Drain::new(self.remove_app(app.as_str()))
    }
}

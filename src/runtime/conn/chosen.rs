//! What `dispatch::plan` chooses for a request besides its action: the route's style (header
//! rules and error pages of its answers, `config::Style`) and its own timeouts; and the
//! request header rules applied to a head for a backend.

use std::rc::Rc;

use crate::config::{RouteRules, RouteTimeouts, Style, VHost};
use crate::runtime::net::pool;
use crate::runtime::shard::Shard;

/// What `plan` chose besides the action: the route's style and timeouts.
#[derive(Default)]
pub struct Chosen {
    pub style: Option<Rc<Style>>,
    pub timeouts: RouteTimeouts,
}

impl Chosen {
    pub fn vhost(&mut self, shard: &Shard, vhost: &VHost) {
        self.style = vhost.style.map(|i| shard.routes.styles[i].clone());
    }

    pub fn route(&mut self, shard: &Shard, rules: &RouteRules) {
        if let Some(i) = rules.style {
            self.style = Some(shard.routes.styles[i].clone());
        }
        self.timeouts = rules.timeouts;
    }
}

/// `request_headers` (the vhost's, then the route's) on a head for a backend.
pub fn request_rules(head: &mut Vec<u8>, rules: [&crate::config::HeaderRules; 2]) {
    if rules.iter().all(|r| r.is_empty()) {
        return;
    }
    let mut scratch = pool::take_vec();
    crate::policy::headers::rewrite(head, rules, &mut scratch);
    pool::give_vec(scratch);
}

//! The request-id outcome window: what became of the last N commits.
//!
//! Contract: [`StatusWindow::insert`] keeps the first outcome recorded for
//! a request id (a retry never replaces it) and forgets the oldest id once
//! more than `capacity` are held, so memory is bounded by the configured
//! `weasel.status_window`. Entries are inserted only once their batch is
//! durable, and recovery re-inserts them from the log, so an id found here
//! is an outcome that survives a crash.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// A commit's outcome as clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Applied as this version.
    Committed {
        /// The version it created.
        version: u64,
    },
    /// Refused: `key` was at `version`.
    Conflict {
        /// The key whose precondition failed.
        key: String,
        /// Its version then (0: absent).
        version: u64,
    },
}

/// A bounded map from request id to [`Outcome`], oldest evicted first.
#[derive(Debug)]
pub struct StatusWindow {
    map: HashMap<Arc<str>, Outcome>,
    order: VecDeque<Arc<str>>,
    capacity: usize,
}

impl StatusWindow {
    /// An empty window holding at most `capacity` ids (at least 1).
    pub fn new(capacity: usize) -> StatusWindow {
        StatusWindow {
            map: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// The outcome recorded for `id`.
    pub fn get(&self, id: &str) -> Option<&Outcome> {
        self.map.get(id)
    }

    /// Records `outcome` for `id` unless `id` has one already.
    pub fn insert(&mut self, id: &str, outcome: Outcome) {
        if self.map.contains_key(id) {
            return;
        }
        let id: Arc<str> = id.into();
        self.map.insert(id.clone(), outcome);
        self.order.push_back(id);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }

    /// Every id held with its outcome, oldest first (for snapshots).
    pub fn entries(&self) -> impl Iterator<Item = (&Arc<str>, &Outcome)> {
        self.order
            .iter()
            .filter_map(|id| self.map.get(id).map(|o| (id, o)))
    }

    /// Ids held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no id is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_outcome_wins_and_oldest_goes() {
        let mut w = StatusWindow::new(2);
        w.insert("a", Outcome::Committed { version: 1 });
        w.insert("a", Outcome::Committed { version: 9 });
        assert_eq!(w.get("a"), Some(&Outcome::Committed { version: 1 }));
        w.insert("b", Outcome::Committed { version: 2 });
        w.insert("c", Outcome::Committed { version: 3 });
        assert_eq!(w.len(), 2);
        assert_eq!(w.get("a"), None);
        assert!(w.get("b").is_some() && w.get("c").is_some());
    }
}

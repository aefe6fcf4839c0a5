//! The waiting line in front of the decode batch's slots: first come, first served while every waiting
//! request belongs to a different user, and round robin between users when some user has several waiting, so
//! one user's burst cannot hold the others back.

use std::collections::{HashMap, VecDeque};

/// Requests waiting for a slot, per user, and the order users take turns in.
#[derive(Debug)]
pub(crate) struct FairQueue<T> {
    /// Users with at least one waiting request, in turn order: a user joins at the back when their first
    /// waiting request arrives and goes back there after each admission while they still have requests.
    turns: VecDeque<String>,
    waiting: HashMap<String, VecDeque<T>>,
    len: usize,
}

impl<T> Default for FairQueue<T> {
    fn default() -> Self {
        FairQueue { turns: VecDeque::new(), waiting: HashMap::new(), len: 0 }
    }
}

impl<T> FairQueue<T> {
    /// Adds a request of `user` behind that user's earlier ones.
    pub(crate) fn push(&mut self, user: &str, item: T) {
        let line = self.waiting.entry(user.to_string()).or_default();
        if line.is_empty() {
            self.turns.push_back(user.to_string());
        }
        line.push_back(item);
        self.len += 1;
    }

    /// The next request to admit: the oldest of the user whose turn it is.
    pub(crate) fn pop(&mut self) -> Option<T> {
        let user = self.turns.pop_front()?;
        let line = self.waiting.get_mut(&user)?;
        let item = line.pop_front();
        if line.is_empty() {
            self.waiting.remove(&user);
        } else {
            self.turns.push_back(user);
        }
        self.len -= usize::from(item.is_some());
        item
    }

    /// Takes out every request `remove` says yes to (cancelled while waiting); the order of the rest stays.
    pub(crate) fn drain_where(&mut self, mut remove: impl FnMut(&T) -> bool) -> Vec<T> {
        let mut removed = Vec::new();
        for line in self.waiting.values_mut() {
            let mut kept = VecDeque::with_capacity(line.len());
            for item in line.drain(..) {
                if remove(&item) {
                    removed.push(item);
                } else {
                    kept.push_back(item);
                }
            }
            *line = kept;
        }
        self.waiting.retain(|_, line| !line.is_empty());
        let waiting = &self.waiting;
        self.turns.retain(|user| waiting.contains_key(user));
        self.len -= removed.len();
        removed
    }

    /// Requests waiting.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(q: &mut FairQueue<&'static str>) -> Vec<&'static str> {
        std::iter::from_fn(|| q.pop()).collect()
    }

    #[test]
    fn one_request_per_user_is_first_come_first_served() {
        let mut q = FairQueue::default();
        for (user, item) in [("c", "c1"), ("a", "a1"), ("b", "b1")] {
            q.push(user, item);
        }
        assert_eq!(q.len(), 3);
        assert_eq!(order(&mut q), ["c1", "a1", "b1"]);
        assert!(q.is_empty());
    }

    #[test]
    fn a_burst_from_one_user_alternates_with_the_others() {
        let mut q = FairQueue::default();
        for item in ["a1", "a2", "a3"] {
            q.push("a", item);
        }
        q.push("b", "b1");
        q.push("c", "c1");
        q.push("b", "b2");
        assert_eq!(order(&mut q), ["a1", "b1", "c1", "a2", "b2", "a3"]);
    }

    #[test]
    fn a_user_who_comes_back_queues_behind_those_already_waiting() {
        let mut q = FairQueue::default();
        q.push("a", "a1");
        q.push("b", "b1");
        assert_eq!(q.pop(), Some("a1"));
        q.push("a", "a2");
        assert_eq!(order(&mut q), ["b1", "a2"]);
    }

    #[test]
    fn cancelled_requests_leave_without_changing_the_order_of_the_rest() {
        let mut q = FairQueue::default();
        for (user, item) in [("a", "a1"), ("a", "a2"), ("b", "b1"), ("c", "c1")] {
            q.push(user, item);
        }
        let removed = q.drain_where(|item| *item == "a1" || *item == "b1");
        assert_eq!(removed.len(), 2);
        assert_eq!(q.len(), 2);
        assert_eq!(order(&mut q), ["a2", "c1"]);
    }
}

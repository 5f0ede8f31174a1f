//! Single flight: concurrent misses on one key make one call, and the
//! others wait for its result.
//!
//! The first caller for a key becomes the [`Leader`]; later callers get a
//! [`Waiter`]. When the leader finishes it publishes its outcome; if it is
//! dropped first (its request was cancelled, or it failed), its waiters
//! are woken with nothing and try again, so none is stranded. A flight
//! that an invalidation has fenced since it started is not joined: the
//! caller tells [`Flights::join`] how to ask (see `fence.rs`), and a new
//! flight starts instead. An unrelated invalidation splits nothing.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

pub(crate) struct Flights<T> {
    map: Mutex<HashMap<String, Flight<T>>>,
    next_id: AtomicU64,
}

struct Flight<T> {
    id: u64,
    /// Where the leader's fence ticket started.
    start: u64,
    outcome: watch::Receiver<Option<T>>,
}

impl<T> fmt::Debug for Flights<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let in_flight = self.map.lock().map_or(0, |map| map.len());
        f.debug_struct("Flights")
            .field("in_flight", &in_flight)
            .finish()
    }
}

impl<T> Default for Flights<T> {
    fn default() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        }
    }
}

pub(crate) enum Join<T> {
    Leader(Leader<T>),
    Waiter(Waiter<T>),
}

/// The one caller doing the work for a key.
pub(crate) struct Leader<T> {
    flights: Arc<Flights<T>>,
    key: String,
    id: u64,
    outcome: watch::Sender<Option<T>>,
}

/// A caller waiting for a leader's outcome.
pub(crate) struct Waiter<T> {
    outcome: watch::Receiver<Option<T>>,
}

impl<T: Clone + Send + Sync + 'static> Flights<T> {
    /// Joins the flight for `key`, or starts one whose leader's ticket
    /// started at `start`. A flight for which `fenced(its start)` holds (an
    /// invalidation since then names what it fetches) is not joined.
    pub(crate) fn join(
        self: &Arc<Self>,
        key: &str,
        start: u64,
        fenced: impl FnOnce(u64) -> bool,
    ) -> Join<T> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(flight) = map.get(key) {
            let leader_alive = flight.outcome.has_changed().is_ok();
            if leader_alive && !fenced(flight.start) {
                return Join::Waiter(Waiter {
                    outcome: flight.outcome.clone(),
                });
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = watch::channel(None);
        map.insert(
            key.to_owned(),
            Flight {
                id,
                start,
                outcome: receiver,
            },
        );
        Join::Leader(Leader {
            flights: Arc::clone(self),
            key: key.to_owned(),
            id,
            outcome: sender,
        })
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.lock().unwrap().len()
    }
}

impl<T> Leader<T> {
    /// Publishes the outcome to every waiter and ends the flight.
    pub(crate) fn complete(self, outcome: T) {
        self.outcome.send_replace(Some(outcome));
    }
}

impl<T> Drop for Leader<T> {
    fn drop(&mut self) {
        let mut map = self.flights.map.lock().unwrap_or_else(|p| p.into_inner());
        if map
            .get(&self.key)
            .is_some_and(|flight| flight.id == self.id)
        {
            map.remove(&self.key);
        }
    }
}

impl<T: Clone> Waiter<T> {
    /// The leader's outcome, or `None` if the leader went away without one.
    pub(crate) async fn wait(mut self) -> Option<T> {
        match self.outcome.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone(),
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_leader_many_waiters_share_the_outcome() {
        let flights: Arc<Flights<u32>> = Arc::default();
        let Join::Leader(leader) = flights.join("k", 0, |_| false) else {
            panic!("first must lead")
        };
        let waiters: Vec<_> = (0..10)
            .map(|_| match flights.join("k", 0, |_| false) {
                Join::Waiter(waiter) => tokio::spawn(waiter.wait()),
                Join::Leader(_) => panic!("second must wait"),
            })
            .collect();
        leader.complete(7);
        for waiter in waiters {
            assert_eq!(waiter.await.unwrap(), Some(7));
        }
        assert_eq!(flights.len(), 0);
    }

    #[tokio::test]
    async fn a_dropped_leader_wakes_its_waiters_empty_handed() {
        let flights: Arc<Flights<u32>> = Arc::default();
        let Join::Leader(leader) = flights.join("k", 0, |_| false) else {
            panic!()
        };
        let Join::Waiter(waiter) = flights.join("k", 0, |_| false) else {
            panic!()
        };
        let waiting = tokio::spawn(waiter.wait());
        drop(leader);
        assert_eq!(waiting.await.unwrap(), None);
        assert!(matches!(flights.join("k", 0, |_| false), Join::Leader(_)));
    }

    #[test]
    fn a_fenced_flight_is_not_joined_and_an_unfenced_one_is() {
        let flights: Arc<Flights<u32>> = Arc::default();
        let Join::Leader(old) = flights.join("k", 0, |_| false) else {
            panic!()
        };
        assert!(matches!(flights.join("k", 5, |_| false), Join::Waiter(_)));
        let Join::Leader(new) = flights.join("k", 5, |start| start < 3) else {
            panic!("must not join a fenced flight")
        };
        drop(old);
        // The old leader must not remove the new flight.
        assert!(matches!(
            flights.join("k", 9, |start| start < 3),
            Join::Waiter(_)
        ));
        drop(new);
    }
}

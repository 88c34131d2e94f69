//! A board's awareness table (cursors, selections, names): the newest state of every Yjs client
//! on the board, and which connection brought each client in, so its states can be removed for
//! everyone when that connection ends, cleanly or not.
//!
//! The rule for what is newer is y-protocols': a higher clock, or the same clock removing a
//! state. y-websocket clients send every change they apply, others' included, with the clock
//! they got: such a re-send is not newer, changes nothing and is not relayed again, so it
//! cannot echo around the board.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;
use yrs::block::ClientID;
use yrs::sync::awareness::{AwarenessUpdate, AwarenessUpdateEntry};

/// The JSON text y-protocols uses for a removed state.
const REMOVED: &str = "null";

#[derive(Debug, Clone)]
struct Entry {
    clock: u32,
    json: Arc<str>,
    /// The connection that brought this client in (its states go when it leaves).
    owner: u64,
    /// When the state last changed or was renewed (a higher clock).
    renewed: Instant,
}

#[derive(Debug, Default)]
pub struct AwarenessTable {
    states: HashMap<ClientID, Entry>,
    owned: HashMap<u64, HashSet<ClientID>>,
    /// Clocks of removed clients, so a late re-send of an older state does not revive them.
    removed: HashMap<ClientID, u32>,
}

/// Why an awareness update from a connection was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// A state above the size limit.
    TooBig,
    /// More clients than one connection may bring.
    TooManyClients,
}

impl AwarenessTable {
    /// Applies `update` from connection `conn`; returns the entries that were newer (to relay
    /// to every client of the board), or why it was refused (nothing applied then).
    pub fn apply(
        &mut self,
        conn: u64,
        update: AwarenessUpdate,
        max_state: usize,
        max_clients_per_conn: usize,
    ) -> Result<Option<AwarenessUpdate>, Refused> {
        if update.clients.values().any(|e| e.json.len() > max_state) {
            return Err(Refused::TooBig);
        }
        let owned_now = self.owned.get(&conn).map_or(0, HashSet::len);
        let new_clients = update
            .clients
            .keys()
            .filter(|id| !self.states.contains_key(id))
            .count();
        if owned_now + new_clients > max_clients_per_conn {
            return Err(Refused::TooManyClients);
        }
        let mut accepted = HashMap::new();
        let now = Instant::now();
        for (id, entry) in update.clients {
            let removing = &*entry.json == REMOVED;
            let newer = match self.states.get(&id) {
                Some(current) => {
                    current.clock < entry.clock || (current.clock == entry.clock && removing)
                }
                None => self.removed.get(&id).is_none_or(|&gone| gone < entry.clock),
            };
            if !newer {
                continue;
            }
            if removing {
                if let Some(old) = self.states.remove(&id) {
                    self.disown(old.owner, id);
                }
                self.removed.insert(id, entry.clock);
            } else {
                let owner = self.states.get(&id).map_or(conn, |e| e.owner);
                self.removed.remove(&id);
                self.owned.entry(owner).or_default().insert(id);
                self.states.insert(
                    id,
                    Entry {
                        clock: entry.clock,
                        json: entry.json.clone(),
                        owner,
                        renewed: now,
                    },
                );
            }
            accepted.insert(id, entry);
        }
        Ok((!accepted.is_empty()).then_some(AwarenessUpdate { clients: accepted }))
    }

    fn disown(&mut self, conn: u64, id: ClientID) {
        if let Some(set) = self.owned.get_mut(&conn) {
            set.remove(&id);
            if set.is_empty() {
                self.owned.remove(&conn);
            }
        }
    }

    /// Removes the states connection `conn` brought in; returns their removal (a higher clock
    /// and `null`) to send to everyone, or `None` when it brought none.
    pub fn leave(&mut self, conn: u64) -> Option<AwarenessUpdate> {
        let ids = self.owned.remove(&conn)?;
        self.remove(ids, |clock| clock.saturating_add(1))
    }

    /// Removes the states of `ids`; returns their removal, each at the clock `clock_of` gives
    /// from the state's own (and remembered, so an older state cannot come back).
    fn remove(
        &mut self,
        ids: impl IntoIterator<Item = ClientID>,
        clock_of: impl Fn(u32) -> u32,
    ) -> Option<AwarenessUpdate> {
        let mut clients = HashMap::new();
        for id in ids {
            if let Some(entry) = self.states.remove(&id) {
                self.disown(entry.owner, id);
                let clock = clock_of(entry.clock);
                self.removed.insert(id, clock);
                clients.insert(
                    id,
                    AwarenessUpdateEntry {
                        clock,
                        json: Arc::from(REMOVED),
                    },
                );
            }
        }
        (!clients.is_empty()).then_some(AwarenessUpdate { clients })
    }

    /// Removes the states connection `owner` brought that were not renewed since `cutoff`;
    /// returns their removal to send to this node's clients. A live Yjs client renews its
    /// state (a higher clock) every 15 s and drops others' after 30 s without one: this is
    /// that rule on the server, for states whose connection is elsewhere (another node's,
    /// which may have died without saying so). The removal keeps the state's clock, so the
    /// client's next renewal brings it back.
    pub fn expire(&mut self, owner: u64, cutoff: Instant) -> Option<AwarenessUpdate> {
        let stale: Vec<ClientID> = self
            .owned
            .get(&owner)?
            .iter()
            .filter(|id| self.states.get(id).is_some_and(|e| e.renewed < cutoff))
            .copied()
            .collect();
        self.remove(stale, |clock| clock)
    }

    /// Every current state (for a client that joins or asks).
    pub fn all(&self) -> AwarenessUpdate {
        self.matching(|_| true)
    }

    /// Every current state but those connection `owner` brought.
    pub fn all_but(&self, owner: u64) -> AwarenessUpdate {
        self.matching(|entry| entry.owner != owner)
    }

    fn matching(&self, wanted: impl Fn(&Entry) -> bool) -> AwarenessUpdate {
        AwarenessUpdate {
            clients: self
                .states
                .iter()
                .filter(|(_, e)| wanted(e))
                .map(|(id, e)| {
                    (
                        *id,
                        AwarenessUpdateEntry {
                            clock: e.clock,
                            json: e.json.clone(),
                        },
                    )
                })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn update(entries: &[(u64, u32, &str)]) -> AwarenessUpdate {
        AwarenessUpdate {
            clients: entries
                .iter()
                .map(|(id, clock, json)| {
                    (
                        ClientID::new(*id),
                        AwarenessUpdateEntry {
                            clock: *clock,
                            json: Arc::from(*json),
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn resends_are_not_newer_and_leaving_removes_what_a_connection_brought() {
        let mut table = AwarenessTable::default();
        assert!(
            table
                .apply(1, update(&[(7, 1, "{}")]), 100, 4)
                .unwrap()
                .is_some()
        );
        // Connection 2 re-sends client 7's state with the same clock: nothing to relay.
        assert!(
            table
                .apply(2, update(&[(7, 1, "{}")]), 100, 4)
                .unwrap()
                .is_none()
        );
        assert!(
            table
                .apply(2, update(&[(8, 3, "{\"a\":1}")]), 100, 4)
                .unwrap()
                .is_some()
        );
        assert!(table.leave(3).is_none());
        let gone = table.leave(1).unwrap();
        let entry = &gone.clients[&ClientID::new(7)];
        assert_eq!((entry.clock, &*entry.json), (2, "null"));
        // A late re-send of the removed state does not bring it back.
        assert!(
            table
                .apply(2, update(&[(7, 1, "{}")]), 100, 4)
                .unwrap()
                .is_none()
        );
        assert_eq!(table.all().clients.len(), 1);
    }

    #[test]
    fn states_not_renewed_expire_and_a_renewal_brings_them_back() {
        let mut table = AwarenessTable::default();
        table.apply(9, update(&[(7, 4, "{}")]), 100, 4).unwrap();
        table.apply(1, update(&[(8, 1, "{}")]), 100, 4).unwrap();
        assert!(
            table
                .expire(9, Instant::now() - Duration::from_secs(30))
                .is_none()
        );

        let gone = table
            .expire(9, Instant::now() + Duration::from_secs(1))
            .unwrap();
        let entry = &gone.clients[&ClientID::new(7)];
        assert_eq!((entry.clock, &*entry.json), (4, "null"));
        assert_eq!(gone.clients.len(), 1, "only the owner's states expire");
        assert_eq!(table.all().clients.len(), 1);
        // A re-send at the same clock stays gone; the next renewal is back.
        assert!(
            table
                .apply(9, update(&[(7, 4, "{}")]), 100, 4)
                .unwrap()
                .is_none()
        );
        assert!(
            table
                .apply(9, update(&[(7, 5, "{}")]), 100, 4)
                .unwrap()
                .is_some()
        );
        assert_eq!(table.all().clients.len(), 2);
    }

    #[test]
    fn limits_refuse_the_whole_update() {
        let mut table = AwarenessTable::default();
        assert_eq!(
            table.apply(1, update(&[(1, 1, "{\"long\":true}")]), 4, 4),
            Err(Refused::TooBig)
        );
        assert_eq!(
            table.apply(1, update(&[(1, 1, "{}"), (2, 1, "{}")]), 100, 1),
            Err(Refused::TooManyClients)
        );
        assert!(table.is_empty());
    }
}

//! The in-memory engine: one `BTreeMap` per table behind a lock. Nothing survives the process; it
//! backs [`super::Store::in_memory`] for the unit tests of other modules, and runs the store's test
//! suite as the proof that the [`Engine`] interface does not lean on sled.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::store::engine::{Engine, Op, Scan, Table, Visitor, mail_needs_postgres};
use crate::store::error::StoreError;

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// The in-memory engine.
#[derive(Default)]
pub(crate) struct MemoryEngine {
    tables: parking_lot::RwLock<[Map; Table::ALL.len()]>,
}

impl MemoryEngine {
    pub(crate) fn new() -> MemoryEngine {
        MemoryEngine::default()
    }
}

fn table_mut(tables: &mut [Map; Table::ALL.len()], table: Table) -> Result<&mut Map, StoreError> {
    tables
        .get_mut(table.index())
        .ok_or_else(|| StoreError::Engine(format!("no table {}", table.name())))
}

fn table_ref(tables: &[Map; Table::ALL.len()], table: Table) -> Result<&Map, StoreError> {
    tables
        .get(table.index())
        .ok_or_else(|| StoreError::Engine(format!("no table {}", table.name())))
}

impl Engine for MemoryEngine {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(table_ref(&self.tables.read(), table)?.get(key).cloned())
    }

    fn insert(&self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        table_mut(&mut self.tables.write(), table)?.insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn remove(&self, table: Table, key: &[u8]) -> Result<bool, StoreError> {
        Ok(table_mut(&mut self.tables.write(), table)?
            .remove(key)
            .is_some())
    }

    fn compare_and_swap(
        &self,
        table: Table,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, StoreError> {
        let mut tables = self.tables.write();
        let map = table_mut(&mut tables, table)?;
        if map.get(key).map(Vec::as_slice) != expected {
            return Ok(false);
        }
        match new {
            Some(value) => map.insert(key.to_vec(), value.to_vec()),
            None => map.remove(key),
        };
        Ok(true)
    }

    fn scan(
        &self,
        table: Table,
        scan: Scan<'_>,
        visit: &mut Visitor<'_>,
    ) -> Result<(), StoreError> {
        let tables = self.tables.read();
        let map = table_ref(&tables, table)?;
        let lower = match scan {
            Scan::All => Bound::Unbounded,
            Scan::Prefix(prefix) => Bound::Included(prefix),
            Scan::After(after) => Bound::Excluded(after),
        };
        for (key, value) in map.range::<[u8], _>((lower, Bound::Unbounded)) {
            if !scan.contains(key) {
                break;
            }
            if visit(key, value).is_break() {
                break;
            }
        }
        Ok(())
    }

    fn apply(&self, ops: &[Op]) -> Result<(), StoreError> {
        if ops.iter().any(|op| matches!(op, Op::Mail { .. })) {
            return Err(mail_needs_postgres());
        }
        // One write lock for the whole batch: nobody sees half of it.
        let mut tables = self.tables.write();
        for op in ops {
            match op {
                Op::Insert { table, key, value } => {
                    table_mut(&mut tables, *table)?.insert(key.clone(), value.clone());
                }
                Op::Remove { table, key } => {
                    table_mut(&mut tables, *table)?.remove(key);
                }
                Op::Mail { .. } => return Err(mail_needs_postgres()),
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        let tables = self.tables.read();
        let bytes: usize = tables
            .iter()
            .flat_map(|map| map.iter())
            .map(|(k, v)| k.len() + v.len())
            .sum();
        Ok(bytes as u64)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::ops::ControlFlow;

    #[test]
    fn scans_stop_at_the_end_of_their_prefix_and_honour_the_visitor() {
        let engine = MemoryEngine::new();
        for key in [&b"a1"[..], b"b1", b"b2", b"b3", b"c1"] {
            engine.insert(Table::Ledger, key, b"v").unwrap();
        }
        let mut seen = Vec::new();
        engine
            .scan(Table::Ledger, Scan::Prefix(b"b"), &mut |k, _| {
                seen.push(k.to_vec());
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(seen, vec![b"b1".to_vec(), b"b2".to_vec(), b"b3".to_vec()]);
        seen.clear();
        engine
            .scan(Table::Ledger, Scan::After(b"b1"), &mut |k, _| {
                seen.push(k.to_vec());
                if seen.len() == 2 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .unwrap();
        assert_eq!(seen, vec![b"b2".to_vec(), b"b3".to_vec()]);
        // Tables are separate.
        assert_eq!(engine.get(Table::Meta, b"a1").unwrap(), None);
    }
}

//! The groups' log on disk (`DATA_DIR/groups`): group declarations and the records the cores
//! ask to persist, in one [`Log`] (checksummed records, torn tail cut at recovery). The task
//! appends a run of records and syncs once before it carries out anything that followed them.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::store::{Log, LogOptions, Position, StdFs, StoreError};
use crate::wire::GroupDecl;

/// One record of the groups' log.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Record {
    /// A declaration this broker took (its own or a peer's).
    Decl(GroupDecl),
    /// A record of the core of group `group` (of the declaration with `generation`).
    Core {
        group: String,
        generation: u64,
        #[serde(with = "serde_bytes")]
        record: Vec<u8>,
    },
}

/// What the log held at start.
#[derive(Debug, Default)]
pub(super) struct Recovered {
    /// Declarations, in the order they were taken.
    pub(super) decls: Vec<GroupDecl>,
    /// Per `(group, generation)`: the core's records, in order.
    pub(super) cores: HashMap<(String, u64), Vec<Vec<u8>>>,
    /// Records that did not decode (skipped).
    pub(super) undecodable: u64,
}

/// The open log.
pub(super) struct Journal {
    log: Log,
    dirty: bool,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").finish_non_exhaustive()
    }
}

impl Journal {
    /// Opens (or creates) the log in `dir` and reads back every record.
    pub(super) fn open(dir: &Path) -> Result<(Self, Recovered), StoreError> {
        let (log, _report) = Log::open(
            Arc::new(StdFs),
            dir,
            LogOptions::default(),
            Box::new(|_| {}),
        )?;
        let mut rec = Recovered::default();
        log.replay(Position::START, |_, bytes| {
            match rmp_serde::from_slice::<Record>(bytes) {
                Ok(Record::Decl(d)) => rec.decls.push(d),
                Ok(Record::Core {
                    group,
                    generation,
                    record,
                }) => rec
                    .cores
                    .entry((group, generation))
                    .or_default()
                    .push(record),
                Err(_) => rec.undecodable += 1,
            }
            Ok(())
        })?;
        Ok((Journal { log, dirty: false }, rec))
    }

    /// Appends a declaration.
    pub(super) fn decl(&mut self, d: &GroupDecl) -> Result<(), StoreError> {
        self.append(&Record::Decl(d.clone()))
    }

    /// Appends a core's record.
    pub(super) fn core(
        &mut self,
        group: &str,
        generation: u64,
        record: Vec<u8>,
    ) -> Result<(), StoreError> {
        self.append(&Record::Core {
            group: group.to_owned(),
            generation,
            record,
        })
    }

    fn append(&mut self, r: &Record) -> Result<(), StoreError> {
        // Encoding plain data into a Vec cannot fail; an empty record would be skipped at
        // recovery as undecodable rather than stop the broker.
        let bytes = rmp_serde::to_vec(r).unwrap_or_default();
        self.log.append(&bytes)?;
        self.dirty = true;
        Ok(())
    }

    /// Makes everything appended durable (one write and one fdatasync), if anything was;
    /// returns whether there was.
    pub(super) fn sync(&mut self) -> Result<bool, StoreError> {
        if !self.dirty {
            return Ok(false);
        }
        self.log.sync()?;
        self.dirty = false;
        Ok(true)
    }
}

//! Pod and container metadata: `<root>/cri.redb`, one embedded transactional
//! database, with an in-memory copy for reads.
//!
//! | table        | key                                     | value                 |
//! |--------------|-----------------------------------------|-----------------------|
//! | `pods`       | pod sandbox ID                          | [`PodRecord`] JSON    |
//! | `containers` | container ID                            | [`ContainerRecord`]   |
//! | `names`      | `pod/<name key>` or `container/<key>`   | the holder's ID       |
//!
//! Every change is one write transaction that updates a record and its name
//! together, so after a crash a name is held iff its record exists — never a
//! torn pair. The in-memory maps are only updated after the commit.
//!
//! Commits are durable (fsync) before the call returns, except
//! [`CriStore::update_container_derivable`]: for a change that restart
//! recovery derives from the engine anyway, the commit only reaches this
//! process's memory and is persisted by the next durable one (redb's
//! `Durability::None`); a crash in between loses it, and the record reads
//! as before the change until recovery brings it up to date.
//!
//! Name keys follow the kubelet's uniqueness rule: a pod is
//! `name_namespace_uid_attempt`; a container is `name_podname_podnamespace_poduid_attempt`.
//! A second reservation of a held key is refused naming the holder.
//!
//! What restart recovery assumes: records are the truth for *what exists*;
//! the engine's state dir is the truth for *what runs* (the CRI layer
//! reconciles the two at start: see `crate::recovery`).

mod records;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

pub use records::{ContainerRecord, ContainerState, PodRecord, PodState, ProcessUser};

const PODS: TableDefinition<&str, &[u8]> = TableDefinition::new("pods");
const CONTAINERS: TableDefinition<&str, &[u8]> = TableDefinition::new("containers");
const NAMES: TableDefinition<&str, &str> = TableDefinition::new("names");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("metadata store {path}: {detail}")]
    Db { path: PathBuf, detail: String },
    #[error("name {name:?} is reserved by {kind} {holder}")]
    NameInUse {
        kind: &'static str,
        name: String,
        holder: String,
    },
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("record {id}: {detail}")]
    Corrupt { id: String, detail: String },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub struct CriStore {
    db: Database,
    path: PathBuf,
    pods: RwLock<HashMap<String, PodRecord>>,
    containers: RwLock<HashMap<String, ContainerRecord>>,
}

impl CriStore {
    /// Open (or create) the database and load every record.
    pub fn open(path: &Path) -> Result<CriStore> {
        let db = Database::create(path).map_err(|e| db_err(path, e))?;
        let store = CriStore {
            db,
            path: path.to_path_buf(),
            pods: RwLock::new(HashMap::new()),
            containers: RwLock::new(HashMap::new()),
        };
        store.init_tables()?;
        store.load()?;
        Ok(store)
    }

    fn init_tables(&self) -> Result<()> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            txn.open_table(PODS).map_err(|e| self.err(e))?;
            txn.open_table(CONTAINERS).map_err(|e| self.err(e))?;
            txn.open_table(NAMES).map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))
    }

    fn load(&self) -> Result<()> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let pods = txn.open_table(PODS).map_err(|e| self.err(e))?;
        let mut loaded = HashMap::new();
        for row in pods.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            let record: PodRecord = decode(k.value(), v.value())?;
            loaded.insert(record.id.clone(), record);
        }
        *self.pods.write().expect("pods lock") = loaded;
        let containers = txn.open_table(CONTAINERS).map_err(|e| self.err(e))?;
        let mut loaded = HashMap::new();
        for row in containers.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            let record: ContainerRecord = decode(k.value(), v.value())?;
            loaded.insert(record.id.clone(), record);
        }
        *self.containers.write().expect("containers lock") = loaded;
        Ok(())
    }

    /// The ID holding a name key, if any.
    pub fn name_holder(&self, key: &str) -> Result<Option<String>> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let names = txn.open_table(NAMES).map_err(|e| self.err(e))?;
        Ok(names.get(key).map_err(|e| self.err(e))?.map(|v| v.value().to_string()))
    }

    /// Insert a new pod and reserve its name, atomically.
    pub fn insert_pod(&self, record: &PodRecord) -> Result<()> {
        self.insert(PODS, "pod", &pod_name_key(&record.name_key), &record.id, record)?;
        self.pods
            .write()
            .expect("pods lock")
            .insert(record.id.clone(), record.clone());
        Ok(())
    }

    /// Replace an existing pod record.
    pub fn update_pod(&self, record: &PodRecord) -> Result<()> {
        self.put(PODS, &record.id, record, Durability::Immediate)?;
        self.pods
            .write()
            .expect("pods lock")
            .insert(record.id.clone(), record.clone());
        Ok(())
    }

    /// Remove a pod and free its name. Absent is fine.
    pub fn delete_pod(&self, id: &str) -> Result<()> {
        let Some(record) = self.pod(id) else { return Ok(()) };
        self.delete(PODS, &pod_name_key(&record.name_key), id)?;
        self.pods.write().expect("pods lock").remove(id);
        Ok(())
    }

    pub fn pod(&self, id: &str) -> Option<PodRecord> {
        self.pods.read().expect("pods lock").get(id).cloned()
    }

    pub fn pods(&self) -> Vec<PodRecord> {
        self.pods.read().expect("pods lock").values().cloned().collect()
    }

    /// Insert a new container and reserve its name, atomically.
    pub fn insert_container(&self, record: &ContainerRecord) -> Result<()> {
        self.insert(
            CONTAINERS,
            "container",
            &container_name_key(&record.name_key),
            &record.id,
            record,
        )?;
        self.containers
            .write()
            .expect("containers lock")
            .insert(record.id.clone(), record.clone());
        Ok(())
    }

    pub fn update_container(&self, record: &ContainerRecord) -> Result<()> {
        self.put_container(record, Durability::Immediate)
    }

    /// [`CriStore::update_container`] without waiting for the disk (see
    /// the module doc): only for changes the engine's state also records,
    /// such as Created → Running.
    pub fn update_container_derivable(&self, record: &ContainerRecord) -> Result<()> {
        self.put_container(record, Durability::None)
    }

    fn put_container(&self, record: &ContainerRecord, durability: Durability) -> Result<()> {
        self.put(CONTAINERS, &record.id, record, durability)?;
        self.containers
            .write()
            .expect("containers lock")
            .insert(record.id.clone(), record.clone());
        Ok(())
    }

    /// Remove a container and free its name. Absent is fine.
    pub fn delete_container(&self, id: &str) -> Result<()> {
        let Some(record) = self.container(id) else {
            return Ok(());
        };
        self.delete(CONTAINERS, &container_name_key(&record.name_key), id)?;
        self.containers.write().expect("containers lock").remove(id);
        Ok(())
    }

    pub fn container(&self, id: &str) -> Option<ContainerRecord> {
        self.containers.read().expect("containers lock").get(id).cloned()
    }

    pub fn containers(&self) -> Vec<ContainerRecord> {
        self.containers
            .read()
            .expect("containers lock")
            .values()
            .cloned()
            .collect()
    }

    /// Containers of one pod.
    pub fn containers_of(&self, pod_id: &str) -> Vec<ContainerRecord> {
        self.containers
            .read()
            .expect("containers lock")
            .values()
            .filter(|c| c.pod_id == pod_id)
            .cloned()
            .collect()
    }

    fn insert<T: serde::Serialize>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        kind: &'static str,
        name: &str,
        id: &str,
        record: &T,
    ) -> Result<()> {
        let bytes = encode(id, record)?;
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut names = txn.open_table(NAMES).map_err(|e| self.err(e))?;
            let holder = names.get(name).map_err(|e| self.err(e))?.map(|v| v.value().to_string());
            if let Some(holder) = holder {
                return Err(StoreError::NameInUse {
                    kind,
                    name: name.to_string(),
                    holder,
                });
            }
            names.insert(name, id).map_err(|e| self.err(e))?;
            let mut records = txn.open_table(table).map_err(|e| self.err(e))?;
            records.insert(id, bytes.as_slice()).map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))
    }

    fn put<T: serde::Serialize>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        id: &str,
        record: &T,
        durability: Durability,
    ) -> Result<()> {
        let bytes = encode(id, record)?;
        let mut txn = self.db.begin_write().map_err(|e| self.err(e))?;
        txn.set_durability(durability).map_err(|e| self.err(e))?;
        {
            let mut records = txn.open_table(table).map_err(|e| self.err(e))?;
            records.insert(id, bytes.as_slice()).map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))
    }

    fn delete(&self, table: TableDefinition<&str, &[u8]>, name: &str, id: &str) -> Result<()> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut names = txn.open_table(NAMES).map_err(|e| self.err(e))?;
            let held_by_us = names
                .get(name)
                .map_err(|e| self.err(e))?
                .is_some_and(|v| v.value() == id);
            if held_by_us {
                names.remove(name).map_err(|e| self.err(e))?;
            }
            let mut records = txn.open_table(table).map_err(|e| self.err(e))?;
            records.remove(id).map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))
    }

    fn err(&self, e: impl std::fmt::Display) -> StoreError {
        db_err(&self.path, e)
    }
}

pub fn pod_name_key(key: &str) -> String {
    format!("pod/{key}")
}

pub fn container_name_key(key: &str) -> String {
    format!("container/{key}")
}

fn db_err(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Db {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

fn encode<T: serde::Serialize>(id: &str, record: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(record).map_err(|e| StoreError::Corrupt {
        id: id.to_string(),
        detail: e.to_string(),
    })
}

fn decode<T: serde::de::DeserializeOwned>(id: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        id: id.to_string(),
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests;

//! The cluster metadata image: topics (id, partition count, config overrides), the
//! cluster id, the producer-id allocator, group config overrides and the ACLs.
//!
//! On a single node the image is kept in `cluster-metadata.json` in the data folder,
//! replaced atomically (write a temporary file, fsync, rename, fsync the folder)
//! on every change, so that a crash at any moment leaves either the old or the new
//! image, never a torn one.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

const FILE: &str = "cluster-metadata.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TopicMeta {
    pub id: Uuid,
    pub partitions: i32,
    pub replication_factor: i16,
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
    /// Written before the partitions' folders are made and cleared once they
    /// all exist: a topic found still `creating` at start was cut short by a
    /// crash and is removed, so a topic is either fully there or not at all.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub creating: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MetadataImage {
    pub cluster_id: String,
    pub topics: BTreeMap<String, TopicMeta>,
    /// Producer ids below this have been handed out (or reserved) already.
    pub next_producer_id: i64,
    /// Group config overrides (DescribeConfigs / IncrementalAlterConfigs of
    /// ConfigResource type GROUP), by group id. Absent from older files and
    /// left out while empty, so older versions can still read the file.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub group_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// The ACLs (CreateAcls / DeleteAcls). Absent from older files and left
    /// out while empty, like `group_configs`.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub acls: BTreeSet<crate::security::acl::AclBinding>,
    /// Users' SCRAM credentials (salt, iterations, StoredKey, ServerKey;
    /// never a password), by user and mechanism. In a cluster these are the
    /// credentials `sluice scram add` put here for the controller quorum to
    /// take at the next start (see `broker/scram.rs`). Absent from older
    /// files and left out while empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scram_credentials: crate::security::sasl::scram::CredentialMap,
}

/// The image plus where it lives.
#[derive(Debug)]
pub struct MetadataStore {
    path: PathBuf,
    dir: PathBuf,
    pub image: MetadataImage,
}

impl MetadataStore {
    /// Loads the image from `dir`, or starts a new one.
    pub fn open(dir: &Path, cluster_id: Option<&str>) -> std::io::Result<Self> {
        fs::create_dir_all(dir)?;
        let path = dir.join(FILE);
        let image = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => MetadataImage {
                cluster_id: cluster_id.map(str::to_owned).unwrap_or_else(new_cluster_id),
                topics: BTreeMap::new(),
                next_producer_id: 0,
                group_configs: BTreeMap::new(),
                acls: BTreeSet::new(),
                scram_credentials: BTreeMap::new(),
            },
            Err(e) => return Err(e),
        };
        let store = Self {
            path,
            dir: dir.to_owned(),
            image,
        };
        store.persist()?;
        Ok(store)
    }

    /// Writes the current image durably.
    pub fn persist(&self) -> std::io::Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(&self.image).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        fs::rename(&tmp, &self.path)?;
        File::open(&self.dir)?.sync_all()
    }

    /// Applies `change` and persists it; on a write failure the old image is kept.
    pub fn update<T>(
        &mut self,
        change: impl FnOnce(&mut MetadataImage) -> T,
    ) -> std::io::Result<T> {
        let before = self.image.clone();
        let out = change(&mut self.image);
        if let Err(e) = self.persist() {
            self.image = before;
            return Err(e);
        }
        Ok(out)
    }
}

/// A cluster id in Kafka's form: a UUID as 22 characters of URL-safe base64.
fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = Uuid::new_v4().into_bytes();
    let mut out = String::with_capacity(22);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | b as u32;
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(ALPHABET[((acc >> bits) & 63) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (6 - bits)) & 63) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_without_acls_still_loads_and_acls_survive_reopen() {
        use crate::security::acl::*;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE),
            r#"{"cluster_id":"c","topics":{},"next_producer_id":0}"#,
        )
        .unwrap();
        let mut s = MetadataStore::open(dir.path(), None).unwrap();
        assert!(s.image.acls.is_empty());
        let b = AclBinding {
            resource_type: ResourceType::Topic,
            name: "orders".into(),
            pattern_type: PatternType::Prefixed,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: AclOperation::Read,
            permission: PermissionType::Allow,
        };
        s.update(|img| img.acls.insert(b.clone())).unwrap();
        drop(s);
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert!(text.contains("\"PREFIXED\""), "{text}");
        let s = MetadataStore::open(dir.path(), None).unwrap();
        assert_eq!(s.image.acls.iter().collect::<Vec<_>>(), [&b]);
    }

    #[test]
    fn image_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = MetadataStore::open(dir.path(), None).unwrap();
        let id = Uuid::new_v4();
        s.update(|img| {
            img.topics.insert(
                "orders".into(),
                TopicMeta {
                    id,
                    partitions: 3,
                    replication_factor: 1,
                    configs: BTreeMap::new(),
                    creating: false,
                },
            );
        })
        .unwrap();
        let cluster = s.image.cluster_id.clone();
        assert_eq!(cluster.len(), 22);
        drop(s);
        let s = MetadataStore::open(dir.path(), None).unwrap();
        assert_eq!(s.image.cluster_id, cluster);
        assert_eq!(s.image.topics["orders"].id, id);
        assert_eq!(s.image.topics["orders"].partitions, 3);
    }
}

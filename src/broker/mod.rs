//! The broker's shared state: configuration, the metadata image, the open
//! partitions, and the producer-id allocator. Handlers get an `Arc<Broker>`.
//!
//! Alone, the broker keeps its metadata in `cluster-metadata.json`; in a
//! cluster the controller quorum holds it and [`cluster`] routes admin
//! changes through the quorum and opens the replicas the image assigns here.

mod acls;
mod cluster;
mod group_configs;
mod scram;
pub use cluster::{ADMIN_WAIT, admin_wait, follow_image, track_leaders};

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use kafka_protocol::error::ResponseError;
use sluice_protocol::versions::VersionTable;
use sluice_storage::{Clock, SystemClock};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::cluster::Cluster;
use crate::config::Config;
use crate::error::BrokerError;
use crate::group::{GroupCoordinator, OFFSETS_TOPIC};
use crate::metadata::{MetadataStore, TopicMeta};
use crate::partition::{Flusher, Partition};
use crate::topic_config::{self, TopicConfig};

/// An open topic.
#[derive(Debug)]
pub struct Topic {
    pub name: String,
    pub id: Uuid,
    pub partitions: Vec<Arc<Partition>>,
    pub config: TopicConfig,
    pub overrides: BTreeMap<String, String>,
}

impl Topic {
    /// Partition `index`, if the topic has it.
    pub fn partition(&self, index: i32) -> Option<&Arc<Partition>> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }
}

/// A topic-level failure with Kafka's code and a message for the client.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicError {
    pub code: i16,
    pub message: String,
}

impl TopicError {
    pub fn new(e: ResponseError, message: impl Into<String>) -> Self {
        Self {
            code: e.code(),
            message: message.into(),
        }
    }
}

/// Where a new topic's (or new partitions') replicas go.
#[derive(Debug, Clone, PartialEq)]
pub enum Placement {
    /// Spread over the brokers: `partitions` and `replication_factor`, -1
    /// for the broker's default.
    Auto {
        partitions: i32,
        replication_factor: i16,
    },
    /// One replica list per partition as the client gave it (CreateTopics
    /// or CreatePartitions `assignments`), the preferred leader first.
    Explicit(Vec<Vec<u64>>),
}

pub struct Broker {
    pub config: Config,
    pub versions: VersionTable,
    pub data_available: Arc<Notify>,
    /// Makes the writes of every partition stored here alone durable.
    pub flusher: Flusher,
    /// Incremental fetch sessions (KIP-227) of this broker's consumers.
    pub fetch_sessions: crate::handlers::fetch_session::FetchSessions,
    /// Consumer groups and committed offsets.
    pub groups: GroupCoordinator,
    /// Transactional ids and their transactions.
    pub txns: crate::txn::TxnCoordinator,
    clock: Arc<dyn Clock>,
    metadata: Mutex<MetadataStore>,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    /// Serialises topic creation/deletion so that two requests for one name
    /// cannot both create it.
    admin: tokio::sync::Mutex<()>,
    cluster_id: String,
    /// The controller quorum and Raft host, in a cluster.
    cluster: Option<Arc<Cluster>>,
    /// Serialises reconciliations with the cluster image.
    reconciling: Mutex<()>,
    /// The authorizer and (alone) the ACLs.
    acl: acls::AclState,
    /// Counters and histograms for `/metrics`.
    pub metrics: crate::metrics::Metrics,
}

impl Broker {
    pub fn open(config: Config, versions: VersionTable) -> Result<Arc<Self>, BrokerError> {
        Self::open_with_clock(config, versions, Arc::new(SystemClock))
    }

    pub fn open_with_clock(
        config: Config,
        versions: VersionTable,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, BrokerError> {
        Self::open_with(config, versions, clock, None)
    }

    /// Opens the broker; with `cluster`, topics come from the cluster image
    /// (see [`Self::reconcile`]) instead of the local metadata file.
    pub fn open_with(
        config: Config,
        versions: VersionTable,
        clock: Arc<dyn Clock>,
        cluster: Option<Arc<Cluster>>,
    ) -> Result<Arc<Self>, BrokerError> {
        let mut store = MetadataStore::open(&config.data_dir, config.cluster_id.as_deref())
            .map_err(|e| BrokerError::Storage(e.into()))?;
        remove_deleted_folders(&config.data_dir);
        if cluster.is_none() {
            finish_interrupted_creations(&config.data_dir, &mut store)?;
        }
        let data_available = Arc::new(Notify::new());
        // Config::load refused a bad method; a config built in code gets the default.
        let method = config
            .flush_method()
            .unwrap_or(sluice_storage::SyncMethod::Auto);
        let flusher = Flusher::start(method, clock.clone());
        let mut topics = HashMap::new();
        let local_topics = match cluster {
            None => store.image.topics.clone(),
            Some(_) => Default::default(),
        };
        for (name, meta) in &local_topics {
            let topic = open_topic(&config, name, meta, &clock, &data_available, &flusher)?;
            tracing::info!(topic = %name, partitions = meta.partitions, "loaded topic");
            topics.insert(name.clone(), Arc::new(topic));
        }
        let cluster_id = match (&cluster, &config.cluster_id) {
            (Some(c), None) => crate::cluster::derived_cluster_id(&c.voters),
            _ => store.image.cluster_id.clone(),
        };
        let groups = GroupCoordinator::new(
            config.group_config(),
            config.consumer_group_config(),
            config.offsets_topic_num_partitions,
            config.offsets_topic_segment_bytes,
        );
        if let Some(t) = topics.get(OFFSETS_TOPIC) {
            groups.load(t, clock.now_ms())?;
        }
        let txns = crate::txn::TxnCoordinator::new(crate::txn::TxnConfig::from(&config));
        if let Some(t) = topics.get(crate::txn::TXN_TOPIC) {
            txns.load(t)?;
        }
        // A bad authorizer setting (refused by Config::load) fails closed.
        let authorizer = config.authorizer().unwrap_or_else(|e| {
            tracing::error!(error = %e, "authorizer settings refused; authorizing with no super users");
            crate::security::acl::Authorizer {
                enabled: true,
                ..Default::default()
            }
        });
        let acl = acls::AclState::new(authorizer, store.image.acls.clone());
        let metrics = crate::metrics::Metrics::new(config.metrics_topic_labels_enable);
        let broker = Arc::new(Self {
            config,
            versions,
            data_available,
            flusher,
            fetch_sessions: Default::default(),
            groups,
            txns,
            clock,
            metadata: Mutex::new(store),
            topics: RwLock::new(topics),
            admin: tokio::sync::Mutex::new(()),
            cluster_id,
            cluster,
            reconciling: Mutex::new(()),
            acl,
            metrics,
        });
        broker.metrics.attach(&broker);
        Ok(broker)
    }

    /// The controller quorum, in a cluster.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// Wall-clock milliseconds from the broker's clock.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub fn data_dir(&self) -> &PathBuf {
        &self.config.data_dir
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .find(|t| t.id == id)
            .cloned()
    }

    pub fn topics(&self) -> Vec<Arc<Topic>> {
        let mut v: Vec<_> = self
            .topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        self.topic(topic)?.partition(index).cloned()
    }

    /// Creates a topic, or checks that it could be created (`validate_only`);
    /// in a cluster, waits at most `wait` for the quorum and for this
    /// broker to open it (REQUEST_TIMED_OUT then, the creation goes on).
    pub async fn create_topic(
        &self,
        name: &str,
        placement: Placement,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
        wait: std::time::Duration,
    ) -> Result<Arc<Topic>, TopicError> {
        validate_topic_name(name)?;
        if let (Some(c), Placement::Explicit(_)) = (&self.cluster, &placement) {
            // The cluster checks the lists against its brokers.
            return self
                .create_topic_in_cluster(c, name, placement, overrides, validate_only, wait)
                .await;
        }
        let (partitions, replication_factor) = match &placement {
            Placement::Auto {
                partitions,
                replication_factor,
            } => (*partitions, *replication_factor),
            Placement::Explicit(lists) => {
                (lists.len() as i32, lists.first().map_or(0, Vec::len) as i16)
            }
        };
        let partitions = if partitions == -1 {
            self.config.num_partitions
        } else {
            partitions
        };
        if partitions <= 0 {
            return Err(TopicError::new(
                ResponseError::InvalidPartitions,
                format!("number of partitions must be larger than 0, not {partitions}"),
            ));
        }
        let replication_factor = if replication_factor == -1 {
            self.config.default_replication_factor
        } else {
            replication_factor
        };
        if replication_factor <= 0 {
            return Err(TopicError::new(
                ResponseError::InvalidReplicationFactor,
                "replication factor must be larger than 0",
            ));
        }
        if let Some(c) = &self.cluster {
            let placement = Placement::Auto {
                partitions,
                replication_factor,
            };
            return self
                .create_topic_in_cluster(c, name, placement, overrides, validate_only, wait)
                .await;
        }
        if replication_factor > 1 {
            return Err(TopicError::new(
                ResponseError::InvalidReplicationFactor,
                format!(
                    "replication factor {replication_factor} is larger than the 1 available broker"
                ),
            ));
        }
        topic_config::validate(&self.config, &overrides)
            .map_err(|m| TopicError::new(ResponseError::InvalidConfig, m))?;
        let _guard = self.admin.lock().await;
        if self.topic(name).is_some() {
            return Err(TopicError::new(
                ResponseError::TopicAlreadyExists,
                format!("topic '{name}' already exists"),
            ));
        }
        let mut meta = TopicMeta {
            id: Uuid::new_v4(),
            partitions,
            replication_factor,
            configs: overrides,
            creating: true,
        };
        if validate_only {
            let config = TopicConfig::resolve(&self.config, &meta.configs);
            return Ok(Arc::new(Topic {
                name: name.to_owned(),
                id: meta.id,
                partitions: Vec::new(),
                config,
                overrides: meta.configs,
            }));
        }
        let storage_error =
            |e: std::io::Error| TopicError::new(ResponseError::KafkaStorageError, e.to_string());
        // The intent first: a crash before the end leaves a topic marked
        // `creating`, which the next start removes with its folders.
        self.update_metadata(|img| img.topics.insert(name.to_owned(), meta.clone()))
            .map_err(storage_error)?;
        let config = TopicConfig::resolve(&self.config, &meta.configs);
        let opened = self
            .open_partitions_blocking(name, meta.id, &config, 0..partitions)
            .await;
        let opened = match opened {
            Ok(p) => p,
            Err(e) => {
                if let Err(undo) = self.update_metadata(|img| img.topics.remove(name)) {
                    tracing::error!(topic = %name, error = %undo, "could not undo a failed topic creation; the next start removes it");
                }
                return Err(e);
            }
        };
        meta.creating = false;
        if let Err(e) = self.update_metadata(|img| img.topics.insert(name.to_owned(), meta.clone()))
        {
            discard_partitions(&self.config.data_dir, name, meta.id, &opened, 0..partitions);
            return Err(storage_error(e));
        }
        let topic = Arc::new(Topic {
            name: name.to_owned(),
            id: meta.id,
            partitions: opened,
            config,
            overrides: meta.configs,
        });
        self.topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), topic.clone());
        tracing::info!(topic = %name, partitions, id = %meta.id, "created topic");
        Ok(topic)
    }

    fn update_metadata<T>(
        &self,
        change: impl FnOnce(&mut crate::metadata::MetadataImage) -> T,
    ) -> std::io::Result<T> {
        self.metadata
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .update(change)
    }

    /// Opens (creating) partitions `range` of a topic on a blocking thread.
    /// All or nothing: when one fails, those opened are closed and every
    /// folder of the range is removed.
    async fn open_partitions_blocking(
        &self,
        name: &str,
        id: Uuid,
        config: &TopicConfig,
        range: std::ops::Range<i32>,
    ) -> Result<Vec<Arc<Partition>>, TopicError> {
        let (data_dir, name, config) = (
            self.config.data_dir.clone(),
            name.to_owned(),
            config.clone(),
        );
        let (clock, data_available) = (self.clock.clone(), self.data_available.clone());
        let flusher = self.flusher.clone();
        tokio::task::spawn_blocking(move || {
            let wake = (&data_available, &flusher);
            open_partitions(&data_dir, &name, &config, range.clone(), &clock, wake)
                .map_err(|(e, opened)| {
                    tracing::warn!(topic = %name, error = %e, "partitions not created; removing those made");
                    discard_partitions(&data_dir, &name, id, &opened, range);
                    TopicError::new(ResponseError::KafkaStorageError, e.to_string())
                })
        })
        .await
        .unwrap_or_else(|e| {
            Err(TopicError::new(
                ResponseError::KafkaStorageError,
                format!("partition creation failed: {e}"),
            ))
        })
    }

    /// Deletes a topic: out of the metadata image first (durably), then its
    /// partitions are closed and their folders removed. Each folder is renamed
    /// to `{name}-{n}.{uuid}-delete` before removal, so a crash mid-way never
    /// leaves a folder that would be loaded as a partition; leftovers are removed
    /// at the next start.
    pub async fn delete_topic(&self, name: &str) -> Result<Uuid, TopicError> {
        if let Some(c) = &self.cluster {
            return self.delete_topic_in_cluster(c, name).await;
        }
        let _guard = self.admin.lock().await;
        let Some(topic) = self.topic(name) else {
            return Err(TopicError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("topic '{name}' does not exist"),
            ));
        };
        self.metadata
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .update(|img| img.topics.remove(name))
            .map_err(|e| TopicError::new(ResponseError::KafkaStorageError, e.to_string()))?;
        self.topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        self.remove_partitions(&topic, &topic.partitions);
        tracing::info!(topic = %name, id = %topic.id, "deleted topic");
        Ok(topic.id)
    }

    /// Closes partitions of a deleted topic and removes their folders.
    fn remove_partitions(&self, topic: &Topic, partitions: &[Arc<Partition>]) {
        for p in partitions {
            p.detach();
            if !p.is_hosted() {
                continue;
            }
            if let Err(e) = p.close() {
                tracing::warn!(partition = ?p, error = %e, "close before delete failed");
            }
            let doomed = self.config.data_dir.join(format!(
                "{}-{}.{}-delete",
                topic.name,
                p.index,
                topic.id.simple()
            ));
            if let Err(e) =
                std::fs::rename(&p.dir, &doomed).and_then(|_| std::fs::remove_dir_all(&doomed))
            {
                tracing::warn!(partition = ?p, error = %e, "could not remove the partition folder; it is removed at the next start");
            }
        }
    }

    /// Grows a topic to `total` partitions; in a cluster, with the new
    /// partitions' replica lists as given (`assignment`) or spread over the
    /// brokers. A single broker holds every replica itself (the handler
    /// checks an assignment names only it).
    pub async fn create_partitions(
        &self,
        name: &str,
        total: i32,
        assignment: Option<Vec<Vec<u64>>>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        if let Some(c) = &self.cluster {
            return self
                .create_partitions_in_cluster(c, name, total, assignment, validate_only)
                .await;
        }
        let _guard = self.admin.lock().await;
        let Some(topic) = self.topic(name) else {
            return Err(TopicError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("topic '{name}' does not exist"),
            ));
        };
        let current = topic.partitions.len() as i32;
        if total <= current {
            let msg = if total == current {
                format!("topic '{name}' already has {current} partitions")
            } else {
                format!("topic '{name}' has {current} partitions, more than the requested {total}")
            };
            return Err(TopicError::new(ResponseError::InvalidPartitions, msg));
        }
        if validate_only {
            return Ok(());
        }
        let added = self
            .open_partitions_blocking(name, topic.id, &topic.config, current..total)
            .await?;
        let stored = self.update_metadata(|img| {
            if let Some(t) = img.topics.get_mut(name) {
                t.partitions = total;
            }
        });
        if let Err(e) = stored {
            discard_partitions(
                &self.config.data_dir,
                name,
                topic.id,
                &added,
                current..total,
            );
            return Err(TopicError::new(
                ResponseError::KafkaStorageError,
                e.to_string(),
            ));
        }
        let mut partitions = topic.partitions.clone();
        partitions.extend(added);
        let grown = Arc::new(Topic {
            name: topic.name.clone(),
            id: topic.id,
            partitions,
            config: topic.config.clone(),
            overrides: topic.overrides.clone(),
        });
        self.topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), grown);
        tracing::info!(topic = %name, from = current, to = total, "added partitions");
        Ok(())
    }

    /// Replaces a topic's config overrides (AlterConfigs and
    /// IncrementalAlterConfigs): validated, stored durably in the metadata
    /// image, then applied to every partition at once.
    pub async fn alter_topic_config(
        &self,
        name: &str,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        topic_config::validate(&self.config, &overrides)
            .map_err(|m| TopicError::new(ResponseError::InvalidConfig, m))?;
        let _guard = self.admin.lock().await;
        let Some(topic) = self.topic(name) else {
            return Err(TopicError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("topic '{name}' does not exist"),
            ));
        };
        if validate_only {
            return Ok(());
        }
        if let Some(c) = &self.cluster {
            return self.alter_config_in_cluster(c, name, overrides).await;
        }
        self.metadata
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .update(|img| {
                if let Some(t) = img.topics.get_mut(name) {
                    t.configs = overrides.clone();
                }
            })
            .map_err(|e| TopicError::new(ResponseError::KafkaStorageError, e.to_string()))?;
        let config = TopicConfig::resolve(&self.config, &overrides);
        for p in &topic.partitions {
            p.set_config(config.clone());
        }
        let altered = Arc::new(Topic {
            name: topic.name.clone(),
            id: topic.id,
            partitions: topic.partitions.clone(),
            config,
            overrides,
        });
        self.topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), altered);
        tracing::info!(topic = %name, "topic config changed");
        Ok(())
    }

    /// One retention pass over every partition (see [`crate::retention`]).
    pub fn apply_retention(&self) {
        let now = self.clock.now_ms();
        let m = &self.metrics;
        m.retention_passes.inc();
        for topic in self.topics() {
            for p in &topic.partitions {
                let segments = || p.with_log(|l| l.segments().len()).unwrap_or(0);
                let (bytes_before, segments_before) = (p.size_on_disk().unwrap_or(0), segments());
                match p.apply_retention(now) {
                    Ok(Some(_)) => {
                        let bytes_after = p.size_on_disk().unwrap_or(0);
                        m.retention_bytes_reclaimed
                            .inc_by(bytes_before.saturating_sub(bytes_after));
                        m.retention_segments_deleted
                            .inc_by(segments_before.saturating_sub(segments()) as u64);
                    }
                    Ok(None) => {}
                    Err(e) => warn_limited!(partition = ?p, error = %e, "retention pass failed"),
                }
            }
        }
    }

    /// Forgets, on every partition, the idempotent producers idle past
    /// producer.id.expiration.ms.
    pub fn expire_producers(&self) {
        let now = self.clock.now_ms();
        let ms = self.config.producer_id_expiration_ms;
        for topic in self.topics() {
            for p in &topic.partitions {
                match p.expire_producers(now, ms) {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::debug!(partition = ?p, producers = n, "expired idle producer ids")
                    }
                    Err(e) => {
                        warn_limited!(partition = ?p, error = %e, "producer id expiry failed")
                    }
                }
            }
        }
    }

    /// One log-cleaner pass over every compacted partition (see
    /// [`crate::cleaner`]).
    pub fn apply_compaction(&self) {
        let now = self.clock.now_ms();
        let memory = self.config.log_cleaner_dedupe_buffer_size;
        for topic in self.topics() {
            for p in &topic.partitions {
                let started = std::time::Instant::now();
                match p.compact(now, memory) {
                    Ok(Some(s)) => {
                        self.metrics.cleaner_passes.inc();
                        self.metrics
                            .cleaner_bytes_reclaimed
                            .inc_by(s.bytes_before.saturating_sub(s.bytes_after));
                        tracing::info!(
                        partition = ?p,
                        segments = format!("{} -> {}", s.segments_before, s.segments_after),
                        bytes = format!("{} -> {}", s.bytes_before, s.bytes_after),
                        records_removed = s.records_removed,
                        map_keys = s.map_keys,
                        ms = started.elapsed().as_millis() as u64,
                        "log cleaner compacted"
                        )
                    }
                    Ok(None) => {}
                    Err(e) => warn_limited!(partition = ?p, error = %e, "log cleaner pass failed"),
                }
            }
        }
    }

    /// Auto-creates `name` with the broker defaults if allowed.
    /// Creates a coordinator's internal topic (`__consumer_offsets`,
    /// `__transaction_state`) on first use: `rf` capped by the brokers there
    /// are. One that another request created meanwhile is fine;
    /// COORDINATOR_NOT_AVAILABLE otherwise, so the client retries.
    pub async fn create_internal_topic(
        &self,
        name: &str,
        partitions: i32,
        rf: i16,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<Topic>, i16> {
        let unavailable = ResponseError::CoordinatorNotAvailable.code();
        let rf = (rf.max(1) as usize).min(self.broker_count().max(1)) as i16;
        match self
            .create_topic(
                name,
                Placement::Auto {
                    partitions,
                    replication_factor: rf,
                },
                configs,
                false,
                ADMIN_WAIT,
            )
            .await
        {
            Ok(t) => Ok(t),
            Err(e) if e.code == ResponseError::TopicAlreadyExists.code() => {
                self.topic(name).ok_or(unavailable)
            }
            Err(e) => {
                tracing::error!(topic = name, error = %e.message, "could not create an internal topic");
                Err(unavailable)
            }
        }
    }

    pub async fn auto_create(&self, name: &str) -> Option<Arc<Topic>> {
        if !self.config.auto_create_topics_enable {
            return None;
        }
        match self
            .create_topic(
                name,
                Placement::Auto {
                    partitions: -1,
                    replication_factor: -1,
                },
                BTreeMap::new(),
                false,
                ADMIN_WAIT,
            )
            .await
        {
            Ok(t) => Some(t),
            Err(e) if e.code == ResponseError::TopicAlreadyExists.code() => self.topic(name),
            Err(e) => {
                warn_limited!(topic = %name, error = %e.message, "auto-creation failed");
                None
            }
        }
    }

    /// Reserves a fresh producer id.
    /// In a cluster each broker hands out ids from its own range (its node
    /// id in the top bits), so no two brokers give out the same id.
    /// The count lives in this broker's data folder, so a broker that
    /// comes back with a new folder (a new incarnation, see
    /// `replication::raft_id`) starts it again: its incarnation is part of
    /// the id (bits 32 to 39), or it would hand out the ids of its earlier
    /// self again, and a partition leader would take the new producer's
    /// first batches for duplicates of the old one's. Until this broker is
    /// registered with its folder (its incarnation known) it hands out none
    /// (NotLeaderOrFollower: callers answer with a retriable error).
    pub fn allocate_producer_id(&self) -> Result<i64, BrokerError> {
        let incarnation = match &self.cluster {
            Some(c) => {
                let known = c.with_image(|img| {
                    let mine = img.brokers.get(&c.me)?.directory_id.as_deref()
                        == Some(c.directory_id.as_str());
                    mine.then(|| img.incarnations.get(&c.me).copied().unwrap_or(0))
                });
                Some(known.ok_or(BrokerError::NotLeaderOrFollower)?)
            }
            None => None,
        };
        let mut store = self.metadata.lock().unwrap_or_else(|p| p.into_inner());
        let id = store.image.next_producer_id;
        store
            .update(|img| img.next_producer_id = id + 1)
            .map_err(|e| BrokerError::Storage(e.into()))?;
        Ok(match (&self.cluster, incarnation) {
            (Some(c), Some(inc)) => ((c.me as i64) << 40) | ((i64::from(inc) & 0xFF) << 32) | id,
            _ => id,
        })
    }

    /// Flushes every partition and leaves clean-shutdown markers (in a
    /// cluster, after stopping the Raft host that writes to them).
    pub fn shutdown(&self) {
        if let Some(c) = &self.cluster {
            c.stop();
        }
        let partitions: Vec<Arc<Partition>> = self
            .topics()
            .iter()
            .flat_map(|t| t.partitions.iter().cloned())
            .collect();
        // Closing is mostly waiting for fsyncs: a few at once go faster.
        let chunk = partitions.len().div_ceil(4).max(1);
        std::thread::scope(|s| {
            for part in partitions.chunks(chunk) {
                s.spawn(move || {
                    for p in part {
                        if let Err(e) = p.close() {
                            tracing::error!(partition = ?p, error = %e, "close failed");
                        }
                    }
                });
            }
        });
    }
}

fn open_topic(
    config: &Config,
    name: &str,
    meta: &TopicMeta,
    clock: &Arc<dyn Clock>,
    data_available: &Arc<Notify>,
    flusher: &Flusher,
) -> Result<Topic, BrokerError> {
    let tc = TopicConfig::resolve(config, &meta.configs);
    let partitions = open_partitions(
        &config.data_dir,
        name,
        &tc,
        0..meta.partitions,
        clock,
        (data_available, flusher),
    )
    .map_err(|(e, _)| e)?;
    Ok(Topic {
        name: name.to_owned(),
        id: meta.id,
        partitions,
        config: tc,
        overrides: meta.configs.clone(),
    })
}

/// The partitions opened, or the error and those opened before it.
type OpenedPartitions = Result<Vec<Arc<Partition>>, (BrokerError, Vec<Arc<Partition>>)>;

/// Opens partitions `range` of a topic, logging progress every few seconds
/// when there are many. On failure, the error and those already opened.
fn open_partitions(
    data_dir: &std::path::Path,
    name: &str,
    config: &TopicConfig,
    range: std::ops::Range<i32>,
    clock: &Arc<dyn Clock>,
    (data_available, flusher): (&Arc<Notify>, &Flusher),
) -> OpenedPartitions {
    let total = range.len();
    let mut opened = Vec::with_capacity(total);
    let mut report = std::time::Instant::now();
    for i in range {
        match Partition::open(
            data_dir,
            name,
            i,
            config.clone(),
            clock.clone(),
            data_available.clone(),
            flusher.clone(),
        ) {
            Ok(p) => opened.push(p),
            Err(e) => return Err((e, opened)),
        }
        if report.elapsed() >= std::time::Duration::from_secs(5) {
            tracing::info!(topic = %name, opened = opened.len(), of = total, "opening partitions");
            report = std::time::Instant::now();
        }
    }
    Ok(opened)
}

/// Closes `opened` and removes the folders of partitions `range` of a topic
/// whose creation failed (each renamed to `…-delete` first, like a deleted
/// topic's, so a crash midway leaves nothing that loads as a partition).
fn discard_partitions(
    data_dir: &std::path::Path,
    name: &str,
    id: Uuid,
    opened: &[Arc<Partition>],
    range: std::ops::Range<i32>,
) {
    for p in opened {
        p.detach();
        if let Err(e) = p.close() {
            tracing::warn!(partition = ?p, error = %e, "close before removal failed");
        }
    }
    for i in range {
        let dir = data_dir.join(format!("{name}-{i}"));
        if !dir.is_dir() {
            continue;
        }
        let doomed = data_dir.join(format!("{name}-{i}.{}-delete", id.simple()));
        if let Err(e) =
            std::fs::rename(&dir, &doomed).and_then(|_| std::fs::remove_dir_all(&doomed))
        {
            tracing::warn!(path = %dir.display(), error = %e, "could not remove the folder of a partition not created; it is removed at the next start");
        }
    }
}

/// Removes the topics whose creation a crash cut short, and their folders.
fn finish_interrupted_creations(
    data_dir: &std::path::Path,
    store: &mut MetadataStore,
) -> Result<(), BrokerError> {
    let cut_short: Vec<(String, TopicMeta)> = store
        .image
        .topics
        .iter()
        .filter(|(_, m)| m.creating)
        .map(|(n, m)| (n.clone(), m.clone()))
        .collect();
    for (name, meta) in cut_short {
        discard_partitions(data_dir, &name, meta.id, &[], 0..meta.partitions);
        store
            .update(|img| img.topics.remove(&name))
            .map_err(|e| BrokerError::Storage(e.into()))?;
        tracing::warn!(topic = %name, "removed a topic whose creation was interrupted");
    }
    Ok(())
}

/// Finishes topic deletions that a crash interrupted.
fn remove_deleted_folders(data_dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().ends_with("-delete") {
            if let Err(err) = std::fs::remove_dir_all(e.path()) {
                tracing::warn!(path = %e.path().display(), error = %err, "could not remove a deleted partition folder");
            } else {
                tracing::info!(path = %e.path().display(), "removed the folder of a deleted partition");
            }
        }
    }
}

/// Kafka's rules: 1–249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    let bad = |m: String| Err(TopicError::new(ResponseError::InvalidTopicException, m));
    if name.is_empty() {
        return bad("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return bad(format!("topic name cannot be '{name}'"));
    }
    if name.len() > 249 {
        return bad(format!(
            "topic name is {} characters long; the limit is 249",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return bad(format!(
            "topic name '{name}' contains the illegal character {c:?}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafkas_rules() {
        assert!(validate_topic_name("orders.v1_x-y").is_ok());
        for bad in ["", ".", "..", "a b", "ü", &"x".repeat(250)] {
            assert_eq!(
                validate_topic_name(bad).unwrap_err().code,
                ResponseError::InvalidTopicException.code(),
                "{bad:?}"
            );
        }
        assert!(validate_topic_name(&"x".repeat(249)).is_ok());
    }
}

//! `sluice scram add`: a user's SCRAM credential written into a data
//! folder's metadata image while no broker runs on it, like Kafka's
//! `kafka-storage format --add-scram`.
//!
//! Alone, the image is where the broker reads credentials from. In a
//! cluster the broker proposes what it finds there to the controller quorum
//! at its next start, for users that have no credential for that mechanism
//! yet, and removes it from the file (see `broker/scram.rs`): run the same
//! command on each node's folder before the first start, or on any one
//! node to add a user later.

use std::path::Path;

use super::scram::{MAX_ITERATIONS, MIN_ITERATIONS, ScramMechanism};
use crate::metadata::MetadataStore;

/// Arguments of `sluice scram add`.
#[derive(Debug, Clone, clap::Args)]
pub struct AddArgs {
    /// The broker's data folder (defaults to data.dir of --config).
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
    /// The user name.
    #[arg(long)]
    pub user: String,
    /// The password (only its salted keys are stored).
    #[arg(long)]
    pub password: String,
    /// SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(long, default_value = "SCRAM-SHA-512")]
    pub mechanism: String,
    /// PBKDF2 iterations, 4096 to 16384.
    #[arg(long, default_value_t = MIN_ITERATIONS)]
    pub iterations: i32,
}

/// `sluice scram …` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ScramCommand {
    /// Add or replace a user's SCRAM credential in a data folder (with no
    /// broker running on it).
    Add(AddArgs),
}

/// Writes `user`'s credential into the image in `data_dir`, durably.
pub fn add(
    data_dir: &Path,
    cluster_id: Option<&str>,
    user: &str,
    password: &str,
    mechanism: &str,
    iterations: i32,
) -> Result<(), String> {
    let mechanism = ScramMechanism::parse(mechanism).ok_or_else(|| {
        format!("unknown SCRAM mechanism '{mechanism}' (SCRAM-SHA-256 or SCRAM-SHA-512)")
    })?;
    if user.is_empty() {
        return Err("the user name must not be empty".into());
    }
    if password.is_empty() {
        return Err("the password must not be empty".into());
    }
    if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
        return Err(format!(
            "iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}"
        ));
    }
    let credential = mechanism.credential_for_password(password, iterations);
    let mut store = MetadataStore::open(data_dir, cluster_id)
        .map_err(|e| format!("cannot open {}: {e}", data_dir.display()))?;
    store
        .update(|img| {
            img.scram_credentials
                .entry(user.to_owned())
                .or_default()
                .insert(mechanism, credential);
        })
        .map_err(|e| format!("cannot write {}: {e}", data_dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_credentials_land_in_the_image_without_the_password() {
        let dir = tempfile::tempdir().unwrap();
        add(dir.path(), None, "alice", "pw-alice", "SCRAM-SHA-256", 4096).unwrap();
        add(dir.path(), None, "alice", "pw-alice", "SCRAM-SHA-512", 8192).unwrap();
        assert!(add(dir.path(), None, "bob", "pw", "SCRAM-SHA-1", 4096).is_err());
        assert!(add(dir.path(), None, "bob", "pw", "SCRAM-SHA-256", 4095).is_err());
        assert!(add(dir.path(), None, "", "pw", "SCRAM-SHA-256", 4096).is_err());
        let text = std::fs::read_to_string(dir.path().join("cluster-metadata.json")).unwrap();
        assert!(!text.contains("pw-alice"));
        let store = MetadataStore::open(dir.path(), None).unwrap();
        let creds = &store.image.scram_credentials["alice"];
        assert_eq!(creds[&ScramMechanism::Sha512].iterations, 8192);
        assert!(
            creds[&ScramMechanism::Sha256].matches_password(ScramMechanism::Sha256, "pw-alice")
        );
    }
}

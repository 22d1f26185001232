//! A data folder's identity (Kafka's `meta.properties`: `directory.id`,
//! written when the folder is first used). A broker that comes back with a
//! different directory id lost its disk: the controller counts a new
//! incarnation of it (see [`super::raft_id`]), so its empty replicas join
//! their groups as new members instead of voting with a memory they no
//! longer have.

use std::io::Write;
use std::path::Path;

use base64::Engine as _;
use uuid::Uuid;

pub const FILE: &str = "meta.properties";

/// Kafka's text form of a directory id: the UUID's 16 bytes in URL-safe
/// base64 without padding (22 characters).
pub fn format_id(id: Uuid) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.as_bytes())
}

pub fn parse_id(text: &str) -> Option<Uuid> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim())
        .ok()?;
    Uuid::from_slice(&bytes).ok()
}

/// The data folder's directory id, written now if the folder has none (a
/// new folder, a wiped one, or one from a release before directory ids).
/// A folder that belongs to another node id is refused, as Kafka does.
pub fn load_or_create(data_dir: &Path, node_id: u64) -> Result<Uuid, String> {
    let path = data_dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let value = |key: &str| {
                text.lines()
                    .filter_map(|l| l.split_once('='))
                    .find(|(k, _)| k.trim() == key)
                    .map(|(_, v)| v.trim().to_owned())
            };
            if let Some(stored) = value("node.id")
                && stored != node_id.to_string()
            {
                return Err(format!(
                    "{}: the data folder belongs to node {stored}, not {node_id}",
                    path.display()
                ));
            }
            value("directory.id")
                .as_deref()
                .and_then(parse_id)
                .ok_or_else(|| format!("{}: no valid directory.id", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)
                .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
            let id = Uuid::new_v4();
            let held_data = std::fs::read_dir(data_dir).is_ok_and(|mut d| d.next().is_some());
            let text = format!(
                "#\n#{}\nversion=1\nnode.id={node_id}\ndirectory.id={}\n",
                if held_data {
                    "written for a folder that predates directory ids"
                } else {
                    "written when the folder was first used"
                },
                format_id(id)
            );
            let tmp = data_dir.join(format!("{FILE}.tmp"));
            let write = || -> std::io::Result<()> {
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(text.as_bytes())?;
                f.sync_all()?;
                std::fs::rename(&tmp, &path)?;
                std::fs::File::open(data_dir)?.sync_all()
            };
            write().map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            tracing::info!(directory_id = %format_id(id), folder = %data_dir.display(), existing_data = held_data,
                "gave the data folder its directory id");
            Ok(id)
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_keeps_its_id_and_a_wiped_one_gets_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path(), 3).unwrap();
        assert_eq!(load_or_create(dir.path(), 3).unwrap(), first);
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert!(
            text.contains(&format!("directory.id={}", format_id(first))),
            "{text}"
        );
        assert_eq!(format_id(first).len(), 22);
        assert_eq!(parse_id(&format_id(first)), Some(first));
        let err = load_or_create(dir.path(), 4).unwrap_err();
        assert!(err.contains("belongs to node 3"), "{err}");
        std::fs::remove_file(dir.path().join(FILE)).unwrap();
        assert_ne!(load_or_create(dir.path(), 3).unwrap(), first);
    }
}

//! DescribeLogDirs: the broker's log directory, the partitions it holds
//! there and their sizes (`kafka-log-dirs.sh`, admin describeLogDirs). Sluice
//! keeps every partition in its one data directory.

use std::collections::BTreeSet;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};

use super::{RequestContext, str_bytes, topic_name};
use crate::security::acl::AclOperation;

pub async fn handle(ctx: &RequestContext, req: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    if !ctx.authorize_cluster(AclOperation::Describe) {
        // The error field arrived with v3; before, an empty answer.
        let mut resp = DescribeLogDirsResponse::default();
        if ctx.version >= 3 {
            resp.error_code =
                kafka_protocol::error::ResponseError::ClusterAuthorizationFailed.code();
        }
        return resp;
    }
    let broker = &ctx.broker;
    let dir = std::fs::canonicalize(&broker.config.data_dir)
        .unwrap_or_else(|_| broker.config.data_dir.clone());
    // Null asks for every partition; a list for those named (unknown ones are
    // left out, as Kafka does).
    let wanted: Option<BTreeSet<(String, i32)>> = req.topics.map(|ts| {
        ts.iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.to_string(), *p)))
            .collect()
    });
    let mut topics: Vec<_> = broker.topics().into_iter().collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = Vec::new();
    for t in topics {
        let partitions: Vec<DescribeLogDirsPartition> = t
            .partitions
            .iter()
            .filter(|p| {
                wanted
                    .as_ref()
                    .is_none_or(|w| w.contains(&(t.name.clone(), p.index)))
            })
            .filter_map(|p| {
                let size = p.size_on_disk()?;
                // How far this replica's log end is behind the high watermark.
                let lag = (p.high_watermark() - p.log_end_offset()).max(0);
                Some(
                    DescribeLogDirsPartition::default()
                        .with_partition_index(p.index)
                        .with_partition_size(size as i64)
                        .with_offset_lag(lag),
                )
            })
            .collect();
        if !partitions.is_empty() {
            out.push(
                DescribeLogDirsTopic::default()
                    .with_name(topic_name(&t.name))
                    .with_partitions(partitions),
            );
        }
    }
    let mut result = DescribeLogDirsResult::default()
        .with_log_dir(str_bytes(dir.display().to_string()))
        .with_topics(out);
    if ctx.version >= 4
        && let Some((total, usable)) = disk_space(&dir)
    {
        result.total_bytes = total;
        result.usable_bytes = usable;
    }
    DescribeLogDirsResponse::default().with_results(vec![result])
}

/// (total, usable) bytes of the file system holding `dir`.
fn disk_space(dir: &std::path::Path) -> Option<(i64, i64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a zeroed struct to fill.
    if unsafe { libc::statvfs(path.as_ptr(), &mut s) } != 0 {
        return None;
    }
    let frsize = s.f_frsize as i64;
    Some((s.f_blocks as i64 * frsize, s.f_bavail as i64 * frsize))
}

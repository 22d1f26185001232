//! `sluice group list|describe|reset-offsets|delete`.

use std::collections::BTreeMap;

use kafka_protocol::messages::*;
use serde_json::json;

use super::admin::{Node, str_bytes};
use super::offsets::{self, EARLIEST, LATEST, Tp};
use super::output::{CliError, Progress, check, kafka_error, print, table};
use super::{Admin, ClientArgs};

#[derive(Debug, clap::Args)]
pub struct GroupArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub cmd: GroupCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum GroupCommand {
    /// List groups (of every broker).
    List,
    /// A group's state and members, and per partition its committed offset,
    /// end offset and lag.
    Describe { group: String },
    /// Move a group's committed offsets (the group must have no members).
    ResetOffsets(ResetArgs),
    /// Delete groups (they must have no members).
    Delete {
        #[arg(required = true)]
        groups: Vec<String>,
    },
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("to").required(true).multiple(false)))]
#[command(group(clap::ArgGroup::new("which").required(true).multiple(false)))]
pub struct ResetArgs {
    pub group: String,
    /// The partitions to reset: TOPIC (all of its partitions) or
    /// TOPIC:P1,P2 (repeatable).
    #[arg(long, group = "which")]
    pub topic: Vec<String>,
    /// Every topic the group has committed offsets for.
    #[arg(long, group = "which")]
    pub all_topics: bool,
    /// To each partition's earliest offset.
    #[arg(long, group = "to")]
    pub to_earliest: bool,
    /// To each partition's end (latest) offset.
    #[arg(long, group = "to")]
    pub to_latest: bool,
    /// To the first offset at or after this time (ms since the epoch).
    #[arg(long, group = "to")]
    pub to_timestamp: Option<i64>,
    /// To the first offset at or after this time, ISO-8601 as
    /// kafka-consumer-groups takes it: 2026-12-01T10:00:00, optionally .SSS
    /// and a zone (Z, +01:00); without a zone, UTC.
    #[arg(long, group = "to")]
    pub to_datetime: Option<String>,
    /// To this offset (kept within each partition's earliest and end offsets).
    #[arg(long, group = "to")]
    pub to_offset: Option<i64>,
    /// By this many offsets from the committed one (negative: back).
    #[arg(long, group = "to", allow_negative_numbers = true)]
    pub shift_by: Option<i64>,
    /// Show the new offsets without committing them.
    #[arg(long)]
    pub dry_run: bool,
}

pub async fn run(args: &GroupArgs) -> Result<(), CliError> {
    let json = args.client.json;
    let mut admin = Admin::connect(&args.client).await?;
    match &args.cmd {
        GroupCommand::List => list(&mut admin, json).await,
        GroupCommand::Describe { group } => describe(&mut admin, group, json).await,
        GroupCommand::ResetOffsets(r) => reset(&mut admin, r, json).await,
        GroupCommand::Delete { groups } => delete(&mut admin, groups, json).await,
    }
}

async fn list(admin: &mut Admin, json: bool) -> Result<(), CliError> {
    let m = admin.metadata(Some(&[])).await?;
    let mut groups = BTreeMap::new();
    for b in &m.brokers {
        let (r, _): (ListGroupsResponse, _) = admin
            .call(Node::Id(b.node_id.0), ApiKey::ListGroups, 0..=5, |_| {
                ListGroupsRequest::default()
            })
            .await?;
        check(
            || format!("cannot list the groups of broker {}", b.node_id.0),
            r.error_code,
            None,
        )?;
        for g in r.groups {
            groups.insert(
                g.group_id.to_string(),
                (
                    g.group_state.to_string(),
                    g.group_type.to_string(),
                    g.protocol_type.to_string(),
                ),
            );
        }
    }
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|(g, (s, t, p))| vec![g.clone(), s.clone(), t.clone(), p.clone()])
        .collect();
    let value = json!(
        groups
            .iter()
            .map(|(g, (s, t, p))| json!({"group": g, "state": s, "type": t, "protocol_type": p}))
            .collect::<Vec<_>>()
    );
    print(
        json,
        &value,
        &table(&["GROUP", "STATE", "TYPE", "PROTOCOL TYPE"], &rows),
    );
    Ok(())
}

/// A member as either protocol describes it.
struct MemberView {
    member_id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    assigned: Vec<Tp>,
}

/// A group's state and members, either protocol.
struct GroupView {
    state: String,
    /// "consumer" (KIP-848) or "classic".
    kind: &'static str,
    protocol_type: String,
    members: Vec<MemberView>,
}

impl GroupView {
    /// Whether offsets may be committed from outside the group.
    fn is_empty(&self) -> bool {
        matches!(self.state.as_str(), "Empty" | "Dead" | "") && self.members.is_empty()
    }
}

const GROUP_ID_NOT_FOUND: i16 = 69;

/// A group's state and members, from its coordinator: ConsumerGroupDescribe
/// for KIP-848 groups (where the broker has it), else DescribeGroups.
async fn described(
    admin: &mut Admin,
    coordinator: Node,
    group: &str,
) -> Result<GroupView, CliError> {
    if admin
        .version(coordinator, ApiKey::ConsumerGroupDescribe, 0..=1)
        .await
        .is_ok()
    {
        let (r, _): (ConsumerGroupDescribeResponse, _) = admin
            .call(coordinator, ApiKey::ConsumerGroupDescribe, 0..=1, |_| {
                ConsumerGroupDescribeRequest::default()
                    .with_group_ids(vec![GroupId(str_bytes(group))])
            })
            .await?;
        let g =
            r.groups.into_iter().next().ok_or_else(|| {
                CliError::Failed("ConsumerGroupDescribe answered no group".into())
            })?;
        // A classic group (or none): not found here, DescribeGroups tells.
        if g.error_code != GROUP_ID_NOT_FOUND {
            check(
                || format!("cannot describe group {group}"),
                g.error_code,
                g.error_message.as_deref(),
            )?;
            return Ok(GroupView {
                state: g.group_state.to_string(),
                kind: "consumer",
                protocol_type: "consumer".into(),
                members: g
                    .members
                    .into_iter()
                    .map(|m| MemberView {
                        member_id: m.member_id.to_string(),
                        instance_id: m.instance_id.map(|s| s.to_string()),
                        client_id: m.client_id.to_string(),
                        client_host: m.client_host.to_string(),
                        assigned: m
                            .assignment
                            .topic_partitions
                            .iter()
                            .flat_map(|tp| {
                                tp.partitions
                                    .iter()
                                    .map(|p| (tp.topic_name.to_string(), *p))
                            })
                            .collect(),
                    })
                    .collect(),
            });
        }
    }
    let (r, _): (DescribeGroupsResponse, _) = admin
        .call(coordinator, ApiKey::DescribeGroups, 0..=5, |_| {
            DescribeGroupsRequest::default().with_groups(vec![GroupId(str_bytes(group))])
        })
        .await?;
    let g = r
        .groups
        .into_iter()
        .next()
        .ok_or_else(|| CliError::Failed("DescribeGroups answered no group".into()))?;
    check(
        || format!("cannot describe group {group}"),
        g.error_code,
        g.error_message.as_deref(),
    )?;
    let consumer = g.protocol_type.as_str() == crate::group::consumer_protocol::PROTOCOL_TYPE;
    Ok(GroupView {
        state: g.group_state.to_string(),
        kind: "classic",
        protocol_type: g.protocol_type.to_string(),
        members: g
            .members
            .into_iter()
            .map(|m| MemberView {
                member_id: m.member_id.to_string(),
                instance_id: m.group_instance_id.map(|s| s.to_string()),
                client_id: m.client_id.to_string(),
                client_host: m.client_host.to_string(),
                // Only consumers' assignments have a known layout.
                assigned: if consumer {
                    crate::group::consumer_protocol::decode_assignment(&m.member_assignment)
                        .unwrap_or_default()
                        .into_iter()
                        .flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p)))
                        .collect()
                } else {
                    Vec::new()
                },
            })
            .collect(),
    })
}

async fn describe(admin: &mut Admin, group: &str, json: bool) -> Result<(), CliError> {
    let coordinator = admin.coordinator(group).await?;
    let g = described(admin, coordinator, group).await?;
    let committed = offsets::committed(admin, coordinator, group).await?;
    if g.state == "Dead" && g.members.is_empty() && committed.is_empty() {
        return Err(kafka_error(
            &format!("cannot describe group {group}"),
            GROUP_ID_NOT_FOUND,
            Some("the group does not exist"),
        ));
    }
    // Every partition committed or assigned, and who owns it.
    let mut owner: BTreeMap<Tp, &str> = BTreeMap::new();
    for m in &g.members {
        for tp in &m.assigned {
            owner.insert(tp.clone(), &m.member_id);
        }
    }
    let mut tps: Vec<Tp> = committed.keys().chain(owner.keys()).cloned().collect();
    tps.sort();
    tps.dedup();
    let ends = offsets::list_offsets(admin, &tps, LATEST).await?;
    let rows: Vec<(Tp, Option<i64>, i64, Option<i64>)> = tps
        .iter()
        .map(|tp| {
            let end = ends.get(tp).copied().unwrap_or(-1);
            let c = committed.get(tp).copied();
            (tp.clone(), c, end, c.map(|c| (end - c).max(0)))
        })
        .collect();
    let total_lag: i64 = rows.iter().filter_map(|r| r.3).sum();
    let dash = |v: Option<i64>| v.map_or("-".to_owned(), |v| v.to_string());
    let mut human = format!(
        "Group {group}  state {}  type {}  members {}  total lag {total_lag}\n",
        g.state,
        g.kind,
        g.members.len()
    );
    human.push_str(&table(
        &["TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "CONSUMER"],
        &rows
            .iter()
            .map(|(tp, c, e, l)| {
                vec![
                    tp.0.clone(),
                    tp.1.to_string(),
                    dash(*c),
                    e.to_string(),
                    dash(*l),
                    owner.get(tp).map_or("-".to_owned(), |m| m.to_string()),
                ]
            })
            .collect::<Vec<_>>(),
    ));
    if !g.members.is_empty() {
        human.push('\n');
        human.push_str(&table(
            &["MEMBER", "CLIENT ID", "HOST", "PARTITIONS"],
            &g.members
                .iter()
                .map(|m| {
                    vec![
                        m.member_id.clone(),
                        m.client_id.clone(),
                        m.client_host.clone(),
                        m.assigned.len().to_string(),
                    ]
                })
                .collect::<Vec<_>>(),
        ));
    }
    let value = json!({
        "group": group,
        "state": g.state,
        "type": g.kind,
        "protocol_type": g.protocol_type,
        "members": g.members.iter().map(|m| json!({
            "member_id": m.member_id,
            "group_instance_id": m.instance_id,
            "client_id": m.client_id,
            "client_host": m.client_host,
            "assigned": m.assigned.iter().map(|(t, p)| json!({"topic": t, "partition": p})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "total_lag": total_lag,
        "offsets": rows.iter().map(|((t, p), c, e, l)| json!({
            "topic": t, "partition": p, "committed": c, "end": e, "lag": l,
            "consumer": owner.get(&(t.clone(), *p)),
        })).collect::<Vec<_>>(),
    });
    print(json, &value, &human);
    Ok(())
}

/// The partitions a reset names.
async fn reset_partitions(
    admin: &mut Admin,
    args: &ResetArgs,
    committed: &BTreeMap<Tp, i64>,
) -> Result<Vec<Tp>, CliError> {
    if args.all_topics {
        return Ok(committed.keys().cloned().collect());
    }
    let mut out = Vec::new();
    for spec in &args.topic {
        match spec.split_once(':') {
            None => {
                for (p, _) in admin.leaders(spec).await? {
                    out.push((spec.clone(), p));
                }
            }
            Some((t, ps)) => {
                for p in ps.split(',') {
                    let p = p.trim().parse::<i32>().map_err(|_| {
                        CliError::Usage(format!("--topic {spec}: expected TOPIC or TOPIC:P1,P2"))
                    })?;
                    out.push((t.to_owned(), p));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

async fn reset(admin: &mut Admin, args: &ResetArgs, json: bool) -> Result<(), CliError> {
    let group = &args.group;
    let to_time = match &args.to_datetime {
        Some(d) => Some(
            offsets::parse_datetime(d)
                .map_err(|e| CliError::Usage(format!("--to-datetime {e}")))?,
        ),
        None => args.to_timestamp,
    };
    let coordinator = admin.coordinator(group).await?;
    let g = described(admin, coordinator, group).await?;
    if !args.dry_run && !g.is_empty() {
        return Err(CliError::Failed(format!(
            "cannot reset the offsets of group {group}: it is {} with {} member(s); stop its consumers first (or use --dry-run)",
            g.state,
            g.members.len()
        )));
    }
    let committed = offsets::committed(admin, coordinator, group).await?;
    let tps = reset_partitions(admin, args, &committed).await?;
    if tps.is_empty() {
        return Err(CliError::Failed(format!(
            "group {group}: no partitions to reset"
        )));
    }
    let earliest = offsets::list_offsets(admin, &tps, EARLIEST).await?;
    let latest = offsets::list_offsets(admin, &tps, LATEST).await?;
    let by_time = match to_time {
        Some(ts) => Some(offsets::list_offsets(admin, &tps, ts).await?),
        None => None,
    };
    let mut plan: BTreeMap<Tp, i64> = BTreeMap::new();
    for tp in &tps {
        let (lo, hi) = (earliest[tp], latest[tp]);
        let target = if args.to_earliest {
            lo
        } else if args.to_latest {
            hi
        } else if let Some(times) = &by_time {
            // No record at or after the time: the end.
            match times[tp] {
                o if o < 0 => hi,
                o => o,
            }
        } else if let Some(o) = args.to_offset {
            o
        } else {
            let shift = args.shift_by.expect("clap requires one target");
            committed
                .get(tp)
                .copied()
                .unwrap_or(hi)
                .saturating_add(shift)
        };
        plan.insert(tp.clone(), target.clamp(lo, hi));
    }
    if !args.dry_run {
        // Large resets go in chunks, with progress on a terminal.
        let mut progress = Progress::new("committed", Some(plan.len() as u64));
        let entries: Vec<(Tp, i64)> = plan.iter().map(|(k, v)| (k.clone(), *v)).collect();
        for chunk in entries.chunks(500) {
            let part: BTreeMap<Tp, i64> = chunk.iter().cloned().collect();
            offsets::commit(admin, coordinator, group, &part).await?;
            progress.add(chunk.len() as u64);
        }
        progress.finish();
    }
    let rows: Vec<Vec<String>> = plan
        .iter()
        .map(|(tp, n)| {
            vec![
                tp.0.clone(),
                tp.1.to_string(),
                committed.get(tp).map_or("-".into(), |c| c.to_string()),
                n.to_string(),
            ]
        })
        .collect();
    let mut human = table(&["TOPIC", "PARTITION", "OLD OFFSET", "NEW OFFSET"], &rows);
    human.push_str(if args.dry_run {
        "(dry run: nothing committed)\n"
    } else {
        "offsets committed\n"
    });
    let value = json!({
        "group": group,
        "dry_run": args.dry_run,
        "offsets": plan.iter().map(|((t, p), n)| json!({
            "topic": t, "partition": p, "old": committed.get(&(t.clone(), *p)), "new": n,
        })).collect::<Vec<_>>(),
    });
    print(json, &value, &human);
    Ok(())
}

async fn delete(admin: &mut Admin, groups: &[String], json: bool) -> Result<(), CliError> {
    let mut deleted = Vec::new();
    let mut first_error = None;
    for group in groups {
        let coordinator = admin.coordinator(group).await?;
        let (r, _): (DeleteGroupsResponse, _) = admin
            .call(coordinator, ApiKey::DeleteGroups, 0..=2, |_| {
                DeleteGroupsRequest::default().with_groups_names(vec![GroupId(str_bytes(group))])
            })
            .await?;
        for res in &r.results {
            if res.error_code == 0 {
                deleted.push(group.clone());
            } else {
                let e = kafka_error(
                    &format!("cannot delete group {group}"),
                    res.error_code,
                    None,
                );
                eprintln!("error: {e}");
                first_error.get_or_insert(e);
            }
        }
    }
    let human: String = deleted
        .iter()
        .map(|g| format!("group {g} deleted\n"))
        .collect();
    print(json, &json!({"deleted": deleted}), &human);
    first_error.map_or(Ok(()), Err)
}

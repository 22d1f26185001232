//! The cluster image's record application, by scenario.

use super::*;

fn topic(name: &str, assignment: Vec<Vec<u64>>) -> MetadataRecord {
    MetadataRecord::CreateTopic {
        name: name.into(),
        topic_id: format!("id-{name}"),
        assignment,
        configs: BTreeMap::new(),
        dense_offsets: true,
    }
}

/// Broker `id` registering at h:9092, with its internal listener when
/// it does not vote.
fn register(id: u64, internal: Option<&str>) -> MetadataRecord {
    register_from(id, internal, None)
}

/// The same from the data folder with directory id `dir`.
fn register_from(id: u64, internal: Option<&str>, dir: Option<&str>) -> MetadataRecord {
    MetadataRecord::RegisterBroker {
        node_id: id,
        host: "h".into(),
        port: 9092,
        listeners: Vec::new(),
        rack: None,
        internal: internal.map(str::to_owned),
        directory_id: dir.map(str::to_owned),
    }
}

#[test]
fn a_broker_with_a_new_data_folder_is_a_new_incarnation() {
    let with_dir = |id: u64, dir: Option<&str>| register_from(id, None, dir);
    let mut img = ClusterImage::default();
    // A registration from before directory ids, then the same folder
    // with its new id: still the first incarnation.
    img.apply(1, &with_dir(1, None)).unwrap();
    img.apply(2, &with_dir(1, Some("a"))).unwrap();
    img.apply(3, &with_dir(2, Some("b"))).unwrap();
    img.apply(4, &with_dir(1, Some("a"))).unwrap();
    assert_eq!(img.raft_id(1), 1);
    img.apply(5, &topic("t", vec![vec![1, 2]])).unwrap();
    assert_eq!(img.first_voters("t", 0), vec![1, 2]);
    // Broker 1 comes back wiped: a new incarnation, a new Raft id; the
    // partition's first voters stay as they were.
    img.apply(6, &with_dir(1, Some("c"))).unwrap();
    assert_eq!(img.raft_id(1), super::super::raft_id(1, 1));
    assert_eq!(super::super::broker_of(img.raft_id(1)), 1);
    assert_eq!(img.first_voters("t", 0), vec![1, 2]);
    // A registration without an id (an older release) keeps the id.
    img.apply(7, &with_dir(1, None)).unwrap();
    assert_eq!(img.brokers[&1].directory_id.as_deref(), Some("c"));
    img.apply(
        8,
        &MetadataRecord::CreatePartitions {
            name: "t".into(),
            from: 1,
            added: vec![vec![2, 1]],
        },
    )
    .unwrap();
    assert_eq!(img.first_voters("t", 1), vec![2, 1 | (1 << 32)]);
}

#[test]
fn a_voter_votes_from_its_first_folder_until_removed_and_added_again() {
    let mut img = ClusterImage::default();
    img.apply(1, &register_from(1, None, Some("a"))).unwrap();
    assert_eq!(img.voter_directories[&1], "a");
    // Back on a wiped disk: still known by the folder it voted from.
    img.apply(2, &register_from(1, None, Some("b"))).unwrap();
    assert_eq!(img.voter_directories[&1], "a");
    let voters = |before: &[u64], after: &[u64]| MetadataRecord::ControllerVoters {
        before: before.to_vec(),
        after: after.to_vec(),
    };
    img.apply(3, &voters(&[1, 2, 3], &[2, 3])).unwrap();
    assert!(!img.voter_directories.contains_key(&1));
    img.apply(4, &voters(&[2, 3], &[1, 2, 3])).unwrap();
    assert_eq!(img.voter_directories[&1], "b");
}

#[test]
fn a_broker_is_unregistered_only_once_it_holds_no_replica() {
    let mut img = ClusterImage::default();
    let mut index = 0;
    let mut apply = |img: &mut ClusterImage, r: MetadataRecord| {
        index += 1;
        img.apply(index, &r)
    };
    for id in 1..=4 {
        apply(
            &mut img,
            register(id, (id == 4).then_some("127.0.0.1:9999")),
        )
        .unwrap();
    }
    apply(&mut img, topic("t", vec![vec![1, 2, 3], vec![4, 1, 2]])).unwrap();
    let leave = MetadataRecord::UnregisterBroker { node_id: 4 };
    assert_eq!(img.replicas_held(4), 1);
    assert!(
        apply(&mut img, leave.clone())
            .unwrap_err()
            .contains("holds 1 replicas")
    );
    // Moving its replica off: while the move is under way it still holds it.
    let partition = PartitionRef {
        name: "t".into(),
        topic_id: "id-t".into(),
        partition: 1,
    };
    let target = vec![3, 1, 2];
    apply(
        &mut img,
        MetadataRecord::AlterReassignment {
            partition: partition.clone(),
            target: Some(target.clone()),
        },
    )
    .unwrap();
    assert_eq!(img.replicas_held(4), 1);
    assert!(apply(&mut img, leave.clone()).is_err());
    apply(
        &mut img,
        MetadataRecord::CompleteReassignment {
            partition,
            replicas: target,
        },
    )
    .unwrap();
    assert_eq!(img.replicas_held(4), 0);
    apply(&mut img, leave.clone()).unwrap();
    assert!(!img.brokers.contains_key(&4));
    assert!(
        apply(&mut img, leave)
            .unwrap_err()
            .contains("not registered")
    );
    assert_eq!(img.brokers.len(), 3);
}

#[test]
fn records_apply_in_order_and_bad_ones_change_nothing() {
    let mut img = ClusterImage::default();
    let log = [
        MetadataRecord::RegisterBroker {
            node_id: 1,
            host: "a".into(),
            port: 9092,
            listeners: Vec::new(),
            rack: None,
            internal: None,
            directory_id: None,
        },
        topic("orders", vec![vec![1, 2], vec![2, 1]]),
        topic("orders", vec![vec![1]]),
        MetadataRecord::CreatePartitions {
            name: "orders".into(),
            from: 2,
            added: vec![vec![2, 3]],
        },
        MetadataRecord::CreatePartitions {
            name: "orders".into(),
            from: 2,
            added: vec![vec![3, 1]],
        },
        MetadataRecord::AlterTopicConfigs {
            name: "orders".into(),
            configs: [("retention.ms".to_string(), "1000".to_string())].into(),
        },
        MetadataRecord::DeleteTopic {
            name: "missing".into(),
        },
        topic("empty", vec![vec![]]),
    ];
    let results: Vec<bool> = log
        .iter()
        .enumerate()
        .map(|(i, r)| img.apply(i as u64 + 1, r).is_ok())
        .collect();
    assert_eq!(
        results,
        [true, true, false, true, false, true, false, false]
    );
    assert_eq!(img.applied, 8);
    let leader = |epoch, id: &str| MetadataRecord::PartitionLeader {
        name: "orders".into(),
        topic_id: id.into(),
        partition: 2,
        leader: 3,
        epoch,
    };
    let mut probe = img.clone();
    assert!(probe.apply(100, &leader(4, "id-orders")).is_ok());
    assert!(
        probe.apply(101, &leader(4, "id-orders")).is_err(),
        "not newer"
    );
    assert!(
        probe.apply(102, &leader(5, "id-other")).is_err(),
        "another topic's"
    );
    assert_eq!(probe.leaders[&("orders".to_string(), 2)], (3, 4));
    // Many at once: each applies on its own; the record counts as
    // applied when any did, and through its JSON form.
    let of = |partition, epoch, id: &str| LeaderOf {
        name: "orders".into(),
        topic_id: id.into(),
        partition,
        leader: 1,
        epoch,
        isr: None,
        generation: 0,
    };
    let many = MetadataRecord::PartitionLeaders {
        leaders: vec![
            of(0, 2, "id-orders"),
            of(2, 4, "id-orders"),
            of(9, 1, "id-orders"),
        ],
    };
    let many = decode(&bytes::Bytes::from(encode(&many))).unwrap();
    assert!(probe.apply(103, &many).is_ok());
    assert_eq!(probe.leaders[&("orders".to_string(), 0)], (1, 2));
    assert_eq!(
        probe.leaders[&("orders".to_string(), 2)],
        (3, 4),
        "not newer"
    );
    assert!(!probe.leaders.contains_key(&("orders".to_string(), 9)));
    assert!(probe.apply(104, &many).is_err(), "nothing new");
    let t = &img.topics["orders"];
    assert_eq!(t.assignment, vec![vec![1, 2], vec![2, 1], vec![2, 3]]);
    assert_eq!(t.configs["retention.ms"], "1000");
    assert_eq!(img.partitions_of(3), vec![("orders".to_string(), 2)]);
    assert_eq!(img.partitions_of(1).len(), 2);
    // A replay of what was applied changes nothing.
    let before = img.clone();
    img.apply(
        2,
        &MetadataRecord::DeleteTopic {
            name: "orders".into(),
        },
    )
    .unwrap();
    assert_eq!(img, before);
    img.apply(
        9,
        &MetadataRecord::DeleteTopic {
            name: "orders".into(),
        },
    )
    .unwrap();
    assert!(img.topics.is_empty());
}

#[test]
fn acl_records_add_and_remove_bindings() {
    use crate::security::acl::*;
    let b = |name: &str| AclBinding {
        resource_type: ResourceType::Topic,
        name: name.into(),
        pattern_type: PatternType::Literal,
        principal: "User:alice".into(),
        host: "*".into(),
        operation: AclOperation::Read,
        permission: PermissionType::Allow,
    };
    let mut img = ClusterImage::default();
    let create = MetadataRecord::CreateAcls {
        acls: vec![b("a"), b("b")],
    };
    let create = decode(&bytes::Bytes::from(encode(&create))).unwrap();
    img.apply(1, &create).unwrap();
    img.apply(2, &MetadataRecord::CreateAcls { acls: vec![b("a")] })
        .unwrap();
    assert_eq!(img.acls.len(), 2);
    img.apply(
        3,
        &MetadataRecord::DeleteAcls {
            acls: vec![b("a"), b("zzz")],
        },
    )
    .unwrap();
    assert_eq!(img.acls.iter().collect::<Vec<_>>(), [&b("b")]);
}

#[test]
fn scram_credentials_apply_and_bootstrap_ones_never_overwrite() {
    let m = ScramMechanism::Sha256;
    let cred = |pw: &str| m.credential_for_password(pw, 4096);
    let set =
        |user: &str, c: Option<ScramCredential>, if_absent| MetadataRecord::AlterScramCredentials {
            changes: vec![ScramChange {
                user: user.into(),
                mechanism: m,
                credential: c,
            }],
            if_absent,
        };
    let (a, b) = (cred("a"), cred("b"));
    let mut img = ClusterImage::default();
    img.apply(1, &set("alice", Some(a.clone()), false)).unwrap();
    img.apply(2, &set("alice", Some(b.clone()), true)).unwrap();
    assert_eq!(
        img.scram_credentials["alice"][&m], a,
        "bootstrap keeps what is there"
    );
    img.apply(3, &set("alice", Some(b.clone()), false)).unwrap();
    assert_eq!(img.scram_credentials["alice"][&m], b);
    // Through the log's JSON form; a removal drops the user once empty.
    let del = decode(&bytes::Bytes::from(encode(&set("alice", None, false)))).unwrap();
    img.apply(4, &del).unwrap();
    assert!(img.scram_credentials.is_empty());
    img.apply(5, &del).unwrap();
}

#[test]
fn records_round_trip_through_batches() {
    let r = topic("t", vec![vec![3, 1, 2]]);
    let b = bytes::Bytes::from(encode(&r));
    assert_eq!(decode(&b).unwrap(), r);
    assert!(decode(&bytes::Bytes::from(batch::build_simple(2, 10, 0))).is_err());
}

#[test]
fn topics_created_before_dense_offsets_keep_their_numbering() {
    // A record of an earlier release has no `dense_offsets`: its
    // partitions keep taking an offset for each of Raft's own entries.
    let old: MetadataRecord = serde_json::from_str(
        r#"{"type":"CreateTopic","name":"t","topic_id":"id","assignment":[[1,2,3]],"configs":{}}"#,
    )
    .unwrap();
    let mut img = ClusterImage::default();
    img.apply(1, &old).unwrap();
    assert!(!img.topics["t"].dense_offsets);
    img.apply(2, &topic("u", vec![vec![1, 2, 3]])).unwrap();
    assert!(img.topics["u"].dense_offsets);
    let json = serde_json::to_string(&topic("u", vec![vec![1]])).unwrap();
    assert!(json.contains(r#""dense_offsets":true"#), "{json}");
}

#[test]
fn broker_registrations_with_and_without_listeners() {
    // A record written before listeners existed still reads: one
    // PLAINTEXT listener, served to clients of every listener.
    let old: MetadataRecord =
        serde_json::from_str(r#"{"type":"RegisterBroker","node_id":2,"host":"h","port":9092}"#)
            .unwrap();
    let new = MetadataRecord::RegisterBroker {
        node_id: 3,
        host: "h3".into(),
        port: 9092,
        listeners: vec![
            ListenerEndpoint {
                name: "PLAINTEXT".into(),
                host: "h3".into(),
                port: 9092,
            },
            ListenerEndpoint {
                name: "SSL".into(),
                host: "h3.example".into(),
                port: 9093,
            },
        ],
        rack: Some("rack-b".into()),
        internal: Some("10.0.0.3:9093".into()),
        directory_id: Some("J8aAPcfLQt2bqs1JT_rMgQ".into()),
    };
    let json = serde_json::to_string(&new).unwrap();
    assert_eq!(serde_json::from_str::<MetadataRecord>(&json).unwrap(), new);
    let mut img = ClusterImage::default();
    img.apply(1, &old).unwrap();
    img.apply(2, &new).unwrap();
    assert_eq!(img.brokers[&2].endpoint("SSL"), Some(("h".into(), 9092)));
    // A record without a rack (or from before racks): no rack.
    assert_eq!(img.brokers[&2].rack, None);
    assert_eq!(img.brokers[&3].rack.as_deref(), Some("rack-b"));
    assert_eq!(img.brokers[&2].internal, None);
    assert_eq!(img.brokers[&3].internal.as_deref(), Some("10.0.0.3:9093"));
    assert_eq!(
        img.brokers[&3].endpoint("ssl"),
        Some(("h3.example".into(), 9093))
    );
    assert_eq!(
        img.brokers[&3].endpoint("PLAINTEXT"),
        Some(("h3".into(), 9092))
    );
    assert_eq!(img.brokers[&3].endpoint("SASL_SSL"), None);
}

#[test]
fn assignment_spreads_leaders_and_never_repeats_a_broker() {
    let brokers = [1, 2, 3];
    let a = assign("orders", 0, 6, 3, &brokers).unwrap();
    for replicas in &a {
        let mut r = replicas.clone();
        r.sort_unstable();
        r.dedup();
        assert_eq!(r.len(), 3);
    }
    let mut leaders = [0; 3];
    for r in &a {
        leaders[(r[0] - 1) as usize] += 1;
    }
    assert_eq!(leaders, [2, 2, 2]);
    // Added partitions continue the rotation.
    let more = assign("orders", 6, 3, 3, &brokers).unwrap();
    assert_eq!(more[0], a[0]);
    assert!(assign("orders", 0, 1, 4, &brokers).is_err());
    assert!(assign("orders", 0, 1, 0, &brokers).is_err());
    assert_eq!(assign("x", 0, 2, 1, &[7]).unwrap(), vec![vec![7], vec![7]]);
}

#[test]
fn an_unclean_election_starts_a_new_generation_once() {
    let mut img = ClusterImage::default();
    let mut i = 0;
    let mut apply = |img: &mut ClusterImage, r: &MetadataRecord| {
        i += 1;
        img.apply(i, r)
    };
    for id in 1..=4 {
        apply(&mut img, &register(id, None)).unwrap();
    }
    apply(&mut img, &topic("t", vec![vec![3, 2, 4], vec![1, 2, 3]])).unwrap();
    let lead =
        |p: i32, leader: u64, epoch: u64, generation: u32| MetadataRecord::PartitionLeaders {
            leaders: vec![LeaderOf {
                name: "t".into(),
                topic_id: "id-t".into(),
                partition: p,
                leader,
                epoch,
                isr: None,
                generation,
            }],
        };
    apply(&mut img, &lead(0, 3, 7, 0)).unwrap();
    let all = |_: &str, _: i32, _: &TopicInfo| true;
    // Brokers 3 and 4 fenced: partition 0 keeps one of three.
    apply(
        &mut img,
        &MetadataRecord::FenceBrokers { fenced: vec![3, 4] },
    )
    .unwrap();
    let found = img.unclean_candidates(all, |_| true, |_| true, 0, 1000);
    assert_eq!(found.len(), 1, "{found:?}");
    let (p, survivor, seen) = found[0].clone();
    assert_eq!((p.partition, survivor, seen), (0, 2, 0));
    // Not for a topic that does not allow it, nor without a survivor
    // this broker reaches.
    assert!(
        img.unclean_candidates(|_, _, _| false, |_| true, |_| true, 0, 1000)
            .is_empty()
    );
    assert!(
        img.unclean_candidates(all, |_| true, |_| false, 0, 1000)
            .is_empty()
    );
    let elect = MetadataRecord::UncleanElection {
        partition: p.clone(),
        survivor,
        seen,
        at_ms: 100,
    };
    apply(&mut img, &elect).unwrap();
    let g = img.generations[&("t".to_string(), 0)].clone();
    assert_eq!((g.number, g.survivor, g.epoch_floor), (1, 2, 7));
    assert_eq!(img.first_voters("t", 0), vec![2]);
    // Asked twice at once: the second changes nothing.
    assert!(apply(&mut img, &elect).is_err());
    assert_eq!(img.generation("t", 0), 1);
    // The survivor alone is the new group's majority.
    assert!(
        img.unclean_candidates(all, |_| true, |_| true, 40_000, 30_000)
            .is_empty()
    );
    // A leader of the earlier generation is not taken in; the
    // survivor's is, and the replicas it reports in sync (voters) join
    // the members.
    assert!(apply(&mut img, &lead(0, 3, 9, 0)).is_err());
    apply(&mut img, &lead(0, 2, 9, 1)).unwrap();
    assert_eq!(img.leaders[&("t".to_string(), 0)], (2, 9));
    let with_isr = MetadataRecord::PartitionLeaders {
        leaders: vec![LeaderOf {
            name: "t".into(),
            topic_id: "id-t".into(),
            partition: 0,
            leader: 2,
            epoch: 9,
            isr: Some(vec![2, 3, 4]),
            generation: 1,
        }],
    };
    apply(&mut img, &with_isr).unwrap();
    assert_eq!(
        img.generations[&("t".to_string(), 0)].members,
        vec![2, 3, 4]
    );
    // 3 and 4 (fenced) are a majority of the members again: the
    // partition may be elected again, from generation 1.
    let again = img.unclean_candidates(all, |_| true, |_| true, 40_000, 30_000);
    assert_eq!((again[0].1, again[0].2), (2, 1));
    // A survivor that holds no replica is refused.
    let stray = MetadataRecord::UncleanElection {
        partition: p,
        survivor: 1,
        seen: 1,
        at_ms: 200,
    };
    assert!(apply(&mut img, &stray).is_err());
    apply(&mut img, &MetadataRecord::DeleteTopic { name: "t".into() }).unwrap();
    assert!(img.generations.is_empty());
}

#[test]
fn leader_balancing_asks_for_the_partitions_a_broker_does_not_lead() {
    let mut img = ClusterImage::default();
    let mut i = 0;
    let mut apply = |img: &mut ClusterImage, r: MetadataRecord| {
        i += 1;
        img.apply(i, &r)
    };
    for id in 1..=3 {
        apply(&mut img, register(id, None)).unwrap();
    }
    // Broker 1 prefers partitions 0..10, broker 2 partitions 10..20.
    let assignment: Vec<Vec<u64>> = (0..20)
        .map(|p| if p < 10 { vec![1, 2, 3] } else { vec![2, 3, 1] })
        .collect();
    apply(&mut img, topic("t", assignment)).unwrap();
    let lead = |p: i32, leader: u64, epoch: u64| MetadataRecord::PartitionLeaders {
        leaders: vec![LeaderOf {
            name: "t".into(),
            topic_id: "id-t".into(),
            partition: p,
            leader,
            epoch,
            isr: None,
            generation: 0,
        }],
    };
    for p in 0..20 {
        apply(&mut img, lead(p, if p < 10 { 1 } else { 2 }, 1)).unwrap();
    }
    assert!(img.imbalanced(10, |_| true).is_empty());
    // Broker 1 lost one of its ten (10 %, not more than 10 %): balanced.
    apply(&mut img, lead(0, 2, 2)).unwrap();
    assert!(img.imbalanced(10, |_| true).is_empty());
    // Two of ten: out of balance; only broker 1's partitions move.
    apply(&mut img, lead(1, 3, 2)).unwrap();
    let away = img.imbalanced(10, |_| true);
    let parts: Vec<i32> = away.iter().map(|p| p.partition).collect();
    assert_eq!(parts, [0, 1]);
    assert!(img.imbalanced(20, |_| true).is_empty());
    // Nor is one not heard from just now (down, not fenced yet).
    assert!(img.imbalanced(10, |id| id != 1).is_empty());
    // A fenced broker is not given leaderships back.
    apply(&mut img, MetadataRecord::FenceBrokers { fenced: vec![1] }).unwrap();
    assert!(img.imbalanced(10, |_| true).is_empty());
    apply(&mut img, MetadataRecord::FenceBrokers { fenced: vec![] }).unwrap();

    // The election is remembered until the preferred replica leads.
    let ask = MetadataRecord::ElectPreferred {
        partitions: away,
        at_ms: 5,
        seen_epochs: Vec::new(),
    };
    apply(&mut img, ask.clone()).unwrap();
    let asked = img.elections[&("t".to_string(), 0)];
    assert_eq!(asked.at_ms, 5);
    assert_eq!(img.elections.len(), 2);
    apply(&mut img, lead(0, 1, 3)).unwrap();
    assert_eq!(img.elections.len(), 1);
    // Asking for partitions whose preferred replica leads changes nothing.
    let done = MetadataRecord::ElectPreferred {
        partitions: vec![PartitionRef {
            name: "t".into(),
            topic_id: "id-t".into(),
            partition: 0,
        }],
        at_ms: 6,
        seen_epochs: Vec::new(),
    };
    assert!(apply(&mut img, done.clone()).is_err());
    // Unless the proposer saw a newer leadership than the image holds
    // (the new leader's record not in yet): then it is asked for.
    let MetadataRecord::ElectPreferred { partitions, .. } = done else {
        unreachable!()
    };
    let newer = MetadataRecord::ElectPreferred {
        partitions,
        at_ms: 6,
        seen_epochs: vec![4],
    };
    apply(&mut img, newer.clone()).unwrap();
    assert_eq!(img.elections[&("t".to_string(), 0)].at_ms, 6);
    let json = serde_json::to_string(&newer).unwrap();
    assert_eq!(
        serde_json::from_str::<MetadataRecord>(&json).unwrap(),
        newer
    );
    // Nor does a record naming a topic by an old id.
    let stale = MetadataRecord::ElectPreferred {
        partitions: vec![PartitionRef {
            name: "t".into(),
            topic_id: "old".into(),
            partition: 5,
        }],
        at_ms: 7,
        seen_epochs: Vec::new(),
    };
    assert!(apply(&mut img, stale).is_err());
    let json = serde_json::to_string(&ask).unwrap();
    assert_eq!(serde_json::from_str::<MetadataRecord>(&json).unwrap(), ask);
    apply(&mut img, MetadataRecord::DeleteTopic { name: "t".into() }).unwrap();
    assert!(img.elections.is_empty());
}

#[test]
fn rack_aware_placement_spreads_replicas_over_racks() {
    let racks = |r: &[(u64, &str)]| -> Vec<(u64, Option<String>)> {
        r.iter()
            .map(|(id, rack)| (*id, Some(rack.to_string())))
            .collect()
    };
    let spread = |brokers: &[(u64, Option<String>)], rf: usize, want: usize| {
        for topic in ["orders", "payments", "x"] {
            let a = assign_over_racks(topic, 0, 12, rf, brokers).unwrap();
            let mut led = BTreeMap::new();
            for replicas in &a {
                let on: BTreeSet<_> = replicas
                    .iter()
                    .map(|id| brokers.iter().find(|b| b.0 == *id).unwrap().1.clone())
                    .collect();
                assert_eq!(on.len(), want, "{topic}: {replicas:?}");
                let distinct: BTreeSet<_> = replicas.iter().collect();
                assert_eq!(distinct.len(), rf);
                *led.entry(replicas[0]).or_insert(0) += 1;
            }
            // Preferred leaders spread evenly.
            assert_eq!(led.len(), brokers.len(), "{topic}: {led:?}");
            assert!(
                led.values().all(|&c| c == 12 / brokers.len()),
                "{topic}: {led:?}"
            );
        }
    };
    // Six brokers in three racks, numbered so that sorted ids bunch racks.
    let six = racks(&[(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")]);
    assert_eq!(rack_alternated(&six), [1, 3, 5, 2, 4, 6]);
    spread(&six, 3, 3);
    spread(&six, 2, 2);
    // Racks of unequal size: still every rack before any rack twice.
    let three = racks(&[(1, "a"), (2, "a"), (3, "b")]);
    spread(&three, 2, 2);
    spread(&three, 3, 2);
    let four = racks(&[(1, "a"), (2, "a"), (3, "a"), (4, "b")]);
    spread(&four, 2, 2);
    // Without racks: the ids in order, as before racks.
    let plain: Vec<(u64, Option<String>)> = vec![(3, None), (1, None), (2, None)];
    assert_eq!(rack_alternated(&plain), [1, 2, 3]);
    assert_eq!(
        assign_over_racks("orders", 0, 6, 3, &plain).unwrap(),
        assign("orders", 0, 6, 3, &[1, 2, 3]).unwrap()
    );
}

//! Online migration driven by hand: a classic group converted to a consumer
//! group, its classic members served through JoinGroup / SyncGroup /
//! Heartbeat next to a KIP-848 member, and the way back.

use bytes::Bytes;

use super::*;
use crate::group::classic::{
    Group, GroupConfig, GroupSnapshot, GroupState, JoinRequest, MemberSnapshot as ClassicSnapshot,
    SyncRequest,
};
use crate::group::consumer_protocol::{decode_assignment, encode_assignment, encode_subscription};

const HB: ConsumerGroupConfig = ConsumerGroupConfig {
    session_timeout_ms: 45_000,
    heartbeat_interval_ms: 1_000,
};

fn topics() -> BTreeMap<String, i32> {
    BTreeMap::from([("t".to_string(), 4)])
}

fn parts(ps: &[i32]) -> Assignment {
    Assignment::from([("t".to_string(), ps.iter().copied().collect())])
}

/// A stable classic group at generation 3: a owns 0 and 1, b owns 2 and 3.
fn classic(protocol_type: &str) -> Group {
    let member = |id: &str, ps: &[i32]| ClassicSnapshot {
        member_id: id.into(),
        instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        rebalance_timeout_ms: 30_000,
        session_timeout_ms: 10_000,
        subscription: encode_subscription(1, &["t"], &[]),
        assignment: encode_assignment(&parts(ps), 1),
    };
    let snap = GroupSnapshot {
        protocol_type: protocol_type.into(),
        generation: 3,
        protocol: Some("range".into()),
        leader: Some("a".into()),
        state_timestamp: 0,
        members: vec![member("a", &[0, 1]), member("b", &[2, 3])],
    };
    Group::restore("g", GroupConfig::default(), snap, 0)
}

fn rejoin(id: &str, owned: &[i32]) -> JoinRequest {
    JoinRequest {
        member_id: id.into(),
        instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        protocol_type: "consumer".into(),
        protocols: vec![(
            "range".into(),
            encode_subscription(1, &["t"], &[("t", owned)]),
        )],
        require_known_member_id: true,
        new_member_id: "fresh".into(),
    }
}

fn sync(id: &str, generation: i32) -> SyncRequest {
    SyncRequest {
        member_id: id.into(),
        generation,
        protocol_type: Some("consumer".into()),
        protocol: Some("range".into()),
        ..SyncRequest::default()
    }
}

fn join848(id: &str) -> HeartbeatRequest {
    HeartbeatRequest {
        member_id: id.into(),
        epoch: JOIN,
        client_id: "java".into(),
        rebalance_timeout_ms: 30_000,
        subscribed: Some(BTreeSet::from(["t".to_string()])),
        owned: Some(Assignment::new()),
        ..HeartbeatRequest::default()
    }
}

/// No partition is in two members' assignments (given or being given up).
fn owned_once(g: &ConsumerGroup) {
    let mut seen = BTreeSet::new();
    for m in g.members() {
        for (t, ps) in m.assigned.iter().chain(m.revoking.iter()) {
            for p in ps {
                assert!(seen.insert((t.clone(), *p)), "{t}-{p} owned twice");
            }
        }
    }
}

#[test]
fn a_classic_group_converts_with_its_generation_and_assignments() {
    let g = ConsumerGroup::from_classic(&classic("consumer"), HB, &topics(), 0).unwrap();
    assert_eq!((g.epoch(), g.assignment_epoch()), (3, 3));
    let a = g.members().find(|m| m.id == "a").unwrap();
    assert_eq!((a.epoch, a.assigned.clone()), (3, parts(&[0, 1])));
    assert_eq!(g.target("b"), parts(&[2, 3]));
    assert!(g.members().all(|m| m.classic.is_some()));
    assert!(g.only_classic_members_without(&[]));
    assert_eq!(g.state(), "Stable");
    // Snapshots keep the classic members as they are.
    let back = ConsumerGroup::restore("g", HB, g.snapshot(), 0);
    assert_eq!(back.snapshot(), g.snapshot());
}

#[test]
fn groups_of_other_protocol_types_or_bad_metadata_do_not_convert() {
    let err = ConsumerGroup::from_classic(&classic("connect"), HB, &topics(), 0).unwrap_err();
    assert!(err.0.contains("connect"), "{err:?}");
    let mut snap = classic("consumer").snapshot();
    snap.members[0].subscription = Bytes::from_static(&[0, 0, 0, 0, 0, 7]);
    let bad = Group::restore("g", GroupConfig::default(), snap, 0);
    assert!(ConsumerGroup::from_classic(&bad, HB, &topics(), 0).is_err());
}

#[test]
fn classic_members_hand_partitions_over_to_a_new_member_and_get_them_back() {
    let mut g = ConsumerGroup::from_classic(&classic("consumer"), HB, &topics(), 0).unwrap();
    // The KIP-848 member joins: epoch 4, and it waits for what a and b own.
    let out = g.heartbeat(join848("n"), &topics(), 10);
    assert_eq!((out.error, out.epoch), (0, 4));
    assert_eq!(out.assignment, Some(Assignment::new()));
    owned_once(&g);
    // The classic members are told to rejoin; a stale generation is refused.
    assert_eq!(g.classic_heartbeat("a", None, 3, 20), 27);
    assert_eq!(g.classic_heartbeat("a", None, 2, 20), 22);
    assert_eq!(g.classic_heartbeat("x", None, 3, 20), 25);
    assert_eq!(g.classic_sync(sync("a", 3), 20).error, 27);
    // Eager members rejoin owning nothing: they move to epoch 4 at once.
    let mut got = BTreeSet::new();
    for id in ["a", "b"] {
        let out = g.classic_join(rejoin(id, &[]), &topics(), 30);
        assert_eq!((out.error, out.generation, out.leader.as_str()), (0, 4, ""));
        assert_eq!(out.protocol.as_deref(), Some("range"));
        assert_eq!(g.classic_sync(sync(id, 3), 30).error, 22);
        let s = g.classic_sync(sync(id, 4), 30);
        assert_eq!(s.error, 0);
        let a = decode_assignment(&s.assignment).unwrap();
        assert_eq!(a, g.target(id));
        got.extend(a.get("t").cloned().unwrap_or_default());
        assert_eq!(g.classic_heartbeat(id, None, 4, 40), 0);
        // Commits carry the generation: the member epoch.
        assert_eq!(g.validate_commit(id, 4, std::iter::empty()), Ok(()));
        assert_eq!(g.validate_commit(id, 3, std::iter::empty()), Err(22));
    }
    owned_once(&g);
    // The released partitions go to the new member.
    let n = g.heartbeat(beat("n", 4), &topics(), 50).assignment.unwrap();
    assert_eq!(n, g.target("n"));
    got.extend(n["t"].iter().copied());
    assert_eq!(got, (0..4).collect());
    owned_once(&g);
    assert_eq!(g.state(), "Stable");
    // The new member leaves: only classic members remain, and the group goes
    // back to the classic protocol at the group epoch (the one the members
    // are at: their commits still count), rebalancing.
    let leaving = ["n".to_string()];
    assert!(!g.only_classic_members_without(&[]));
    assert!(g.only_classic_members_without(&leaving));
    let back = g.to_classic(&leaving, GroupConfig::default(), 60);
    assert_eq!(back.state(), GroupState::PreparingRebalance);
    assert_eq!(back.generation(), 4);
    assert_eq!(back.members().len(), 2);
    assert_eq!(back.protocol_type(), Some("consumer"));
    assert_eq!(back.protocol(), Some("range"));
    // Stored without a leader: restored, it rebalances again.
    let snap = back.snapshot();
    assert_eq!(snap.leader, None);
    let restored = Group::restore("g", GroupConfig::default(), snap, 70);
    assert_eq!(restored.state(), GroupState::PreparingRebalance);
    assert_eq!(restored.generation(), 4);
    let mut back = back;
    assert_eq!(back.validate_commit("a", None, 4, 60), Ok(()));
    assert_eq!(back.heartbeat("a", None, 4, 60), 27);
    let a = back.members().iter().find(|m| m.id == "a").unwrap();
    assert_eq!(decode_assignment(&a.assignment).unwrap(), g.target("a"));
}

fn beat(id: &str, epoch: i32) -> HeartbeatRequest {
    HeartbeatRequest {
        member_id: id.into(),
        epoch,
        rebalance_timeout_ms: -1,
        ..HeartbeatRequest::default()
    }
}

#[test]
fn a_cooperative_member_keeps_its_epoch_until_it_gives_partitions_up() {
    let mut g = ConsumerGroup::from_classic(&classic("consumer"), HB, &topics(), 0).unwrap();
    g.heartbeat(join848("n"), &topics(), 10);
    // The classic member whose target shrank rejoins still owning its two.
    let (id, owns) = [("a", [0, 1]), ("b", [2, 3])]
        .into_iter()
        .find(|(id, _)| g.target(id)["t"].len() < 2)
        .expect("one of them gives a partition up");
    let out = g.classic_join(rejoin(id, &owns), &topics(), 20);
    assert_eq!(out.generation, 3);
    let s = g.classic_sync(sync(id, 3), 20);
    assert_eq!(s.error, 0);
    let kept = decode_assignment(&s.assignment).unwrap();
    assert_eq!(kept, g.target(id));
    assert_eq!(g.classic_heartbeat(id, None, 3, 30), 27);
    owned_once(&g);
    // It rejoins without the revoked one and moves on.
    let owned: Vec<i32> = kept["t"].iter().copied().collect();
    let out = g.classic_join(rejoin(id, &owned), &topics(), 40);
    assert_eq!(out.generation, 4);
    assert_eq!(g.classic_heartbeat(id, None, 4, 50), 0);
    owned_once(&g);
}

#[test]
fn new_classic_members_need_an_id_and_a_common_protocol() {
    let mut g = ConsumerGroup::from_classic(&classic("consumer"), HB, &topics(), 0).unwrap();
    let out = g.classic_join(rejoin("", &[]), &topics(), 10);
    assert_eq!((out.error, out.member_id.as_str()), (79, "fresh"));
    let mut other = rejoin("fresh", &[]);
    other.protocols[0].0 = "roundrobin".into();
    assert_eq!(g.classic_join(other, &topics(), 10).error, 23);
    let mut connect = rejoin("fresh", &[]);
    connect.protocol_type = "connect".into();
    assert_eq!(g.classic_join(connect, &topics(), 10).error, 23);
    let out = g.classic_join(rejoin("fresh", &[]), &topics(), 10);
    assert_eq!((out.error, out.generation), (0, 4));
    // It leaves again; unknown members are told so.
    assert_eq!(
        g.classic_leave(&[("fresh".into(), None), ("nobody".into(), None)]),
        [0, 25]
    );
    assert_eq!(g.epoch(), 5);
}

//! The state machine driven by hand with an explicit clock: no sockets, no sleeps.

use super::*;

const SESSION: i32 = 10_000;
const REBALANCE: i32 = 30_000;

fn cfg(delay: i64) -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: delay,
        ..GroupConfig::default()
    }
}

fn req(member_id: &str, new_id: &str) -> JoinRequest {
    JoinRequest {
        member_id: member_id.into(),
        instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: SESSION,
        rebalance_timeout_ms: REBALANCE,
        protocol_type: "consumer".into(),
        protocols: vec![
            ("cooperative-sticky".into(), Bytes::from_static(b"meta")),
            ("range".into(), Bytes::from_static(b"meta")),
        ],
        require_known_member_id: false,
        new_member_id: new_id.into(),
    }
}

/// A SyncGroup from `member` at `generation` without instance id or protocol.
fn sync_req(member: &str, generation: i32, assignments: Vec<(String, Bytes)>) -> SyncRequest {
    SyncRequest {
        member_id: member.into(),
        generation,
        assignments,
        ..SyncRequest::default()
    }
}

fn joins(effects: &[Effect]) -> Vec<(String, JoinOutcome)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Join { member_id, outcome } => Some((member_id.clone(), outcome.clone())),
            _ => None,
        })
        .collect()
}

fn syncs(effects: &[Effect]) -> Vec<(String, SyncOutcome)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Sync { member_id, outcome } => Some((member_id.clone(), outcome.clone())),
            _ => None,
        })
        .collect()
}

/// Two members joined and synced: returns the group at generation 1, Stable.
fn stable_pair() -> Group {
    let mut g = Group::new("g", cfg(0), 0);
    assert!(matches!(g.join(req("", "a"), 0), Reply::Parked { .. }));
    // With no initial delay, a lone first member completes the join at once.
    let done = joins(&g.take_effects());
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].1.generation, 1);
    g.sync(
        sync_req("a", 1, vec![("a".into(), Bytes::from_static(b"A"))]),
        1,
    );
    g.take_effects();
    assert_eq!(g.state(), GroupState::Stable);
    // b joins: a must rejoin before the new generation forms.
    assert!(matches!(g.join(req("", "b"), 2), Reply::Parked { .. }));
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat("a", None, 1, 3),
        code(ResponseError::RebalanceInProgress)
    );
    assert!(matches!(g.join(req("a", "x"), 4), Reply::Parked { .. }));
    let done = joins(&g.take_effects());
    assert_eq!(done.len(), 2);
    assert!(done.iter().all(|(_, o)| o.generation == 2 && o.error == 0));
    let leader = done.iter().find(|(id, _)| id == "a").unwrap();
    assert_eq!(leader.1.leader, "a", "the existing leader stays leader");
    assert_eq!(leader.1.members.len(), 2, "the leader sees every member");
    let follower = done.iter().find(|(id, _)| id == "b").unwrap();
    assert!(follower.1.members.is_empty());
    assert_eq!(follower.1.protocol.as_deref(), Some("cooperative-sticky"));
    // The follower's sync waits for the leader's.
    assert!(matches!(
        g.sync(sync_req("b", 2, vec![]), 5),
        Reply::Parked { .. }
    ));
    assert!(g.take_effects().is_empty());
    let r = g.sync(
        SyncRequest {
            member_id: "a".into(),
            instance_id: None,
            generation: 2,
            protocol_type: Some("consumer".into()),
            protocol: Some("cooperative-sticky".into()),
            assignments: vec![
                ("a".into(), Bytes::from_static(b"A")),
                ("b".into(), Bytes::from_static(b"B")),
            ],
        },
        6,
    );
    assert!(matches!(r, Reply::Parked { .. }));
    let effects = g.take_effects();
    assert_eq!(
        effects[0],
        Effect::Persist,
        "stored before anyone is answered"
    );
    let s = syncs(&effects);
    assert_eq!(s.len(), 2);
    assert_eq!(
        s.iter().find(|(id, _)| id == "b").unwrap().1.assignment,
        Bytes::from_static(b"B")
    );
    assert_eq!(g.state(), GroupState::Stable);
    g
}

#[test]
fn members_join_sync_and_get_their_assignments() {
    let g = stable_pair();
    assert_eq!(g.generation(), 2);
    assert_eq!(g.members().len(), 2);
}

#[test]
fn join_v4_hands_out_the_member_id_first() {
    let mut g = Group::new("g", cfg(0), 0);
    let mut r = req("", "m-1");
    r.require_known_member_id = true;
    let Reply::Now(out) = g.join(r.clone(), 0) else {
        panic!("answered at once")
    };
    assert_eq!(out.error, code(ResponseError::MemberIdRequired));
    assert_eq!(out.member_id, "m-1");
    assert_eq!(g.state(), GroupState::Empty);
    // A made-up id is refused; the handed-out one is accepted.
    let Reply::Now(out) = g.join(req("bogus", "z"), 1) else {
        panic!()
    };
    assert_eq!(out.error, code(ResponseError::UnknownMemberId));
    assert!(matches!(g.join(req("m-1", "z"), 1), Reply::Parked { .. }));
    assert_eq!(joins(&g.take_effects())[0].1.member_id, "m-1");
}

#[test]
fn an_unused_handed_out_id_expires_and_stops_blocking_the_join() {
    let mut g = stable_pair();
    let mut r = req("", "p");
    r.require_known_member_id = true;
    g.join(r, 10);
    // a rejoins (say it changed its subscription): the pending id holds the join.
    let mut a = req("a", "x");
    a.protocols[0].1 = Bytes::from_static(b"new");
    assert!(matches!(g.join(a, 11), Reply::Parked { .. }));
    g.take_effects();
    assert!(matches!(g.join(req("b", "x"), 11), Reply::Parked { .. }));
    assert!(
        joins(&g.take_effects()).is_empty(),
        "waits for the pending member"
    );
    g.tick(10 + SESSION as i64);
    let done = joins(&g.take_effects());
    assert_eq!(done.len(), 2);
    assert_eq!(g.generation(), 3);
}

#[test]
fn initial_rebalance_delay_gathers_members_of_a_new_group() {
    let mut g = Group::new("g", cfg(3_000), 0);
    g.join(req("", "a"), 0);
    assert!(
        g.take_effects().is_empty(),
        "the first member waits for others"
    );
    g.tick(2_000);
    g.join(req("", "b"), 2_500);
    // The delay restarts for each newcomer: b arrived at 2.5 s, so 5.5 s.
    g.tick(3_100);
    assert!(g.take_effects().is_empty());
    g.tick(5_500);
    let done = joins(&g.take_effects());
    assert_eq!(done.len(), 2);
    assert_eq!(g.state(), GroupState::CompletingRebalance);
    // Kafka's order: the generation before the state.
    let member = done[0].0.clone();
    assert_eq!(
        g.validate_commit(&member, None, 0, 5_600),
        Err(code(ResponseError::IllegalGeneration)),
        "stale generation while completing the rebalance"
    );
    assert_eq!(
        g.validate_commit(&member, None, 1, 5_600),
        Err(code(ResponseError::RebalanceInProgress)),
        "current generation before its SyncGroup"
    );
}

#[test]
fn initial_delay_never_passes_the_rebalance_timeout() {
    let mut g = Group::new("g", cfg(3_000), 0);
    let mut r = req("", "a");
    r.rebalance_timeout_ms = 4_000;
    g.join(r, 0);
    for (i, t) in [1_000, 2_000, 3_000].into_iter().enumerate() {
        let mut r = req("", &format!("m{i}"));
        r.rebalance_timeout_ms = 4_000;
        g.join(r, t);
    }
    g.tick(3_999);
    assert!(g.take_effects().is_empty());
    g.tick(4_000);
    assert_eq!(joins(&g.take_effects()).len(), 4);
}

#[test]
fn session_expiry_removes_a_member_and_rebalances() {
    let mut g = stable_pair();
    // b heartbeats, a goes silent.
    for t in (1_000..=SESSION as i64 + 5_000).step_by(1_000) {
        assert_eq!(g.heartbeat("b", None, 2, t), 0);
        g.tick(t);
        if g.state() != GroupState::Stable {
            break;
        }
    }
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert!(g.members().iter().all(|m| m.id != "a"));
    assert_eq!(g.leader(), None);
    // b learns of the rebalance from its heartbeat and rejoins; it becomes leader.
    let now = SESSION as i64 + 6_000;
    assert_eq!(
        g.heartbeat("b", None, 2, now),
        code(ResponseError::RebalanceInProgress)
    );
    g.join(req("b", "x"), now);
    let done = joins(&g.take_effects());
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].1.leader, "b");
    assert_eq!(done[0].1.generation, 3);
}

#[test]
fn members_that_do_not_rejoin_are_dropped_at_the_rebalance_timeout() {
    let mut g = stable_pair();
    g.join(req("", "c"), 100);
    g.heartbeat("a", None, 2, 100);
    g.join(req("a", "x"), 200);
    // b neither heartbeats nor rejoins; its session (10 s) is shorter than the
    // rebalance timeout (30 s), so it is removed at expiry and the join completes.
    g.tick(100 + SESSION as i64);
    let done = joins(&g.take_effects());
    assert_eq!(done.len(), 2);
    assert!(g.members().iter().all(|m| m.id != "b"));
}

#[test]
fn leaving_rebalances_and_the_last_leave_empties_the_group() {
    let mut g = stable_pair();
    assert_eq!(g.leave(&[("b".into(), None)], 10), vec![0]);
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(
        g.leave(&[("nope".into(), None)], 10),
        vec![code(ResponseError::UnknownMemberId)]
    );
    // a's heartbeat tells it to rejoin; alone now, the join completes at once.
    g.join(req("a", "x"), 11);
    assert_eq!(joins(&g.take_effects()).len(), 1);
    g.sync(sync_req("a", 3, vec![]), 12);
    g.take_effects();
    g.leave(&[("a".into(), None)], 13);
    assert_eq!(g.state(), GroupState::Empty);
    assert_eq!(g.take_effects(), vec![Effect::Persist]);
    assert_eq!(
        g.heartbeat("a", None, 3, 14),
        code(ResponseError::UnknownMemberId)
    );
}

#[test]
fn stale_generations_and_unknown_members_are_refused() {
    let mut g = stable_pair();
    assert_eq!(
        g.heartbeat("a", None, 1, 10),
        code(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        g.heartbeat("zz", None, 2, 10),
        code(ResponseError::UnknownMemberId)
    );
    let Reply::Now(s) = g.sync(sync_req("a", 1, vec![]), 10) else {
        panic!()
    };
    assert_eq!(s.error, code(ResponseError::IllegalGeneration));
    let Reply::Now(s) = g.sync(
        SyncRequest {
            member_id: "a".into(),
            instance_id: None,
            generation: 2,
            protocol_type: None,
            protocol: Some("range".into()),
            assignments: vec![],
        },
        10,
    ) else {
        panic!()
    };
    assert_eq!(s.error, code(ResponseError::InconsistentGroupProtocol));
    assert_eq!(g.validate_commit("a", None, 2, 10), Ok(()));
    assert_eq!(
        g.validate_commit("a", None, 1, 10),
        Err(code(ResponseError::IllegalGeneration))
    );
    assert_eq!(
        g.validate_commit("", None, -1, 10),
        Err(code(ResponseError::UnknownMemberId))
    );
}

#[test]
fn join_validates_session_timeout_and_protocols() {
    let mut g = stable_pair();
    let mut r = req("", "c");
    r.session_timeout_ms = 10;
    let Reply::Now(o) = g.join(r, 0) else {
        panic!()
    };
    assert_eq!(o.error, code(ResponseError::InvalidSessionTimeout));
    let mut r = req("", "c");
    r.protocols = vec![("roundrobin".into(), Bytes::new())];
    let Reply::Now(o) = g.join(r, 0) else {
        panic!()
    };
    assert_eq!(o.error, code(ResponseError::InconsistentGroupProtocol));
    let mut r = req("", "c");
    r.protocol_type = "connect".into();
    let Reply::Now(o) = g.join(r, 0) else {
        panic!()
    };
    assert_eq!(o.error, code(ResponseError::InconsistentGroupProtocol));
}

#[test]
fn protocol_is_chosen_by_vote_among_common_ones() {
    let mut g = Group::new("g", cfg(0), 0);
    let mut a = req("", "a");
    a.protocols = vec![
        ("range".into(), Bytes::new()),
        ("roundrobin".into(), Bytes::new()),
    ];
    g.join(a, 0);
    g.take_effects();
    g.sync(sync_req("a", 1, vec![]), 0);
    let mut b = req("", "b");
    b.protocols = vec![
        ("roundrobin".into(), Bytes::new()),
        ("range".into(), Bytes::new()),
    ];
    g.join(b, 1);
    let mut c = req("", "c");
    c.protocols = vec![("roundrobin".into(), Bytes::new())];
    g.join(c, 1);
    let mut a = req("a", "x");
    a.protocols = vec![
        ("range".into(), Bytes::new()),
        ("roundrobin".into(), Bytes::new()),
    ];
    g.join(a, 2);
    assert_eq!(
        g.protocol(),
        Some("roundrobin"),
        "only roundrobin is common to all"
    );
}

#[test]
fn follower_rejoin_with_unchanged_metadata_does_not_rebalance() {
    let mut g = stable_pair();
    let Reply::Now(o) = g.join(req("b", "x"), 10) else {
        panic!("answered at once")
    };
    assert_eq!((o.error, o.generation), (0, 2));
    assert_eq!(g.state(), GroupState::Stable);
}

#[test]
fn static_member_restart_keeps_its_assignment_without_rebalance() {
    let mut g = Group::new("g", cfg(0), 0);
    let mut a = req("", "a1");
    a.instance_id = Some("pod-a".into());
    g.join(a.clone(), 0);
    g.take_effects();
    g.sync(
        SyncRequest {
            member_id: "a1".into(),
            instance_id: Some("pod-a".into()),
            generation: 1,
            protocol_type: None,
            protocol: None,
            assignments: vec![("a1".into(), Bytes::from_static(b"A"))],
        },
        0,
    );
    g.take_effects();
    // The process restarts and comes back with the same instance id, no member id.
    let mut again = a.clone();
    again.new_member_id = "a2".into();
    let Reply::Now(o) = g.join(again, 1_000) else {
        panic!("no rebalance")
    };
    assert_eq!((o.error, o.generation, o.member_id.as_str()), (0, 1, "a2"));
    assert_eq!(o.leader, "a1", "the returning leader is not told it leads");
    assert_eq!(g.leader(), Some("a2"));
    assert_eq!(g.state(), GroupState::Stable);
    let Reply::Now(s) = g.sync(
        SyncRequest {
            member_id: "a2".into(),
            instance_id: Some("pod-a".into()),
            generation: 1,
            protocol_type: None,
            protocol: None,
            assignments: vec![],
        },
        1_001,
    ) else {
        panic!()
    };
    assert_eq!(s.assignment, Bytes::from_static(b"A"));
    // The old incarnation is fenced.
    assert_eq!(
        g.heartbeat("a1", Some("pod-a"), 1, 1_002),
        code(ResponseError::FencedInstanceId)
    );
    assert_eq!(g.heartbeat("a2", Some("pod-a"), 1, 1_002), 0);
}

#[test]
fn leader_that_never_syncs_is_dropped_after_the_rebalance_timeout() {
    let mut g = Group::new("g", cfg(0), 0);
    g.join(req("", "a"), 0);
    g.take_effects();
    g.sync(sync_req("a", 1, vec![]), 0);
    g.take_effects();
    g.join(req("", "b"), 1);
    g.join(req("a", "x"), 1);
    g.take_effects();
    assert_eq!(g.state(), GroupState::CompletingRebalance);
    assert!(matches!(
        g.sync(sync_req("b", 2, vec![]), 2),
        Reply::Parked { .. }
    ));
    // Keep b's session alive; the leader a never syncs.
    g.tick(1 + REBALANCE as i64);
    let effects = g.take_effects();
    let s = syncs(&effects);
    assert_eq!(
        s,
        vec![(
            "b".into(),
            SyncOutcome::error(code(ResponseError::RebalanceInProgress))
        )]
    );
    assert!(g.members().iter().all(|m| m.id != "a"));
}

#[test]
fn snapshot_and_restore_round_trip() {
    let g = stable_pair();
    let snap = g.snapshot();
    assert_eq!(snap.members.len(), 2);
    let mut r = Group::restore("g", cfg(0), snap.clone(), 100);
    assert_eq!(r.state(), GroupState::Stable);
    assert_eq!(r.generation(), 2);
    assert_eq!(r.snapshot().members, snap.members);
    // Restored members go on heartbeating at the same generation.
    assert_eq!(r.heartbeat("a", None, 2, 200), 0);
    // ...and expire if they never come back.
    r.tick(100 + SESSION as i64);
    r.tick(100 + SESSION as i64 + 1);
    assert_ne!(r.state(), GroupState::Stable);
}

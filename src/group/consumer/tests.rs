//! The KIP-848 state machine driven by hand: joins, incremental moves, expiry.

use super::*;

const HB: ConsumerGroupConfig = ConsumerGroupConfig {
    session_timeout_ms: 10_000,
    heartbeat_interval_ms: 1_000,
};

fn topics(n: i32) -> BTreeMap<String, i32> {
    BTreeMap::from([("t".to_string(), n)])
}

fn join(id: &str) -> HeartbeatRequest {
    HeartbeatRequest {
        member_id: id.into(),
        epoch: JOIN,
        client_id: "c".into(),
        rebalance_timeout_ms: 5_000,
        subscribed: Some(BTreeSet::from(["t".to_string()])),
        owned: Some(Assignment::new()),
        ..HeartbeatRequest::default()
    }
}

fn beat(id: &str, epoch: i32, owned: Option<&Assignment>) -> HeartbeatRequest {
    HeartbeatRequest {
        member_id: id.into(),
        epoch,
        client_id: "c".into(),
        rebalance_timeout_ms: 5_000,
        owned: owned.cloned(),
        ..HeartbeatRequest::default()
    }
}

fn parts(a: &Assignment) -> BTreeSet<i32> {
    a.get("t").cloned().unwrap_or_default()
}

#[test]
fn a_lone_member_gets_every_partition() {
    let mut g = ConsumerGroup::new("g", HB);
    let out = g.heartbeat(join("a"), &topics(4), 0);
    assert_eq!(out.error, 0);
    assert_eq!(out.epoch, 1);
    assert_eq!(parts(&out.assignment.unwrap()), (0..4).collect());
    // Nothing changed: no assignment in the answer.
    let out = g.heartbeat(beat("a", 1, None), &topics(4), 100);
    assert_eq!((out.error, out.epoch, out.assignment), (0, 1, None));
    assert_eq!(g.state(), "Stable");
}

#[test]
fn partitions_move_only_after_their_owner_released_them() {
    let mut g = ConsumerGroup::new("g", HB);
    let a = g.heartbeat(join("a"), &topics(4), 0).assignment.unwrap();
    // b joins: the target gives it two of a's partitions, which a still owns.
    let out = g.heartbeat(join("b"), &topics(4), 10);
    assert_eq!(out.epoch, 2);
    assert!(
        parts(&out.assignment.unwrap()).is_empty(),
        "nothing until a releases"
    );
    assert_eq!(g.state(), "Reconciling");
    // a is told to give two up and keeps its epoch until it reports them gone.
    let out = g.heartbeat(beat("a", 1, None), &topics(4), 20);
    let a_now = out.assignment.unwrap();
    assert_eq!(out.epoch, 1);
    assert_eq!(parts(&a_now).len(), 2);
    assert!(
        parts(&a_now).is_subset(&parts(&a)),
        "a keeps some of its own"
    );
    // b still gets nothing while a owns them.
    let out = g.heartbeat(beat("b", 2, None), &topics(4), 30);
    assert_eq!(out.assignment, None);
    // a reports the smaller set: it is at epoch 2, and b gets the released two.
    let out = g.heartbeat(beat("a", 1, Some(&a_now)), &topics(4), 40);
    assert_eq!((out.error, out.epoch), (0, 2));
    // A commit a sent at epoch 1 before hearing of epoch 2 counts for what it
    // still holds, not for what it gave up.
    let kept = *parts(&a_now).first().unwrap();
    let given = *parts(&a).difference(&parts(&a_now)).next().unwrap();
    assert_eq!(g.validate_commit("a", 1, [("t", kept)].into_iter()), Ok(()));
    assert_eq!(
        g.validate_commit("a", 1, [("t", kept), ("t", given)].into_iter()),
        Err(ResponseError::StaleMemberEpoch.code())
    );
    assert_eq!(
        g.validate_commit("a", 3, [("t", kept)].into_iter()),
        Err(ResponseError::StaleMemberEpoch.code()),
        "a future epoch"
    );
    let out = g.heartbeat(beat("b", 2, None), &topics(4), 50);
    let b_now = out.assignment.unwrap();
    assert_eq!(parts(&b_now).len(), 2);
    assert!(parts(&b_now).is_disjoint(&parts(&a_now)));
    g.heartbeat(beat("b", 2, Some(&b_now)), &topics(4), 60);
    assert_eq!(g.state(), "Stable");
}

#[test]
fn stale_epochs_and_strangers_are_refused() {
    let mut g = ConsumerGroup::new("g", HB);
    g.heartbeat(join("a"), &topics(2), 0);
    let out = g.heartbeat(beat("a", 7, None), &topics(2), 1);
    assert_eq!(out.error, ResponseError::FencedMemberEpoch.code());
    let out = g.heartbeat(beat("zz", 1, None), &topics(2), 1);
    assert_eq!(out.error, ResponseError::UnknownMemberId.code());
    assert_eq!(g.validate_commit("a", 1, [("t", 0)].into_iter()), Ok(()));
    assert_eq!(
        g.validate_commit("a", 0, [("t", 0)].into_iter()),
        Err(ResponseError::StaleMemberEpoch.code())
    );
    assert_eq!(
        g.validate_commit("zz", 1, [("t", 0)].into_iter()),
        Err(ResponseError::UnknownMemberId.code())
    );
    let mut bad = join("b");
    bad.assignor = Some("sticky-ish".into());
    assert_eq!(
        g.heartbeat(bad, &topics(2), 1).error,
        ResponseError::UnsupportedAssignor.code()
    );
}

#[test]
fn leaving_and_expiry_free_partitions_for_the_others() {
    let mut g = ConsumerGroup::new("g", HB);
    g.heartbeat(join("a"), &topics(4), 0);
    let out = g.heartbeat(join("b"), &topics(4), 0);
    assert!(parts(&out.assignment.unwrap()).is_empty());
    // a leaves: b takes everything at its next heartbeat.
    let out = g.heartbeat(beat("a", LEAVE, None), &topics(4), 10);
    assert_eq!(out.epoch, LEAVE);
    let out = g.heartbeat(beat("b", 2, None), &topics(4), 20);
    assert_eq!(parts(&out.assignment.unwrap()), (0..4).collect());
    assert_eq!(out.epoch, 3);
    // c joins; b goes silent and expires; c ends up with all four.
    g.heartbeat(join("c"), &topics(4), 30);
    g.tick(20 + HB.session_timeout_ms as i64);
    assert_eq!(g.members().count(), 1);
    let c_epoch = g.members().next().unwrap().epoch;
    let out = g.heartbeat(
        beat("c", c_epoch, None),
        &topics(4),
        20 + HB.session_timeout_ms as i64,
    );
    assert_eq!(parts(&out.assignment.unwrap()), (0..4).collect());
}

#[test]
fn a_member_that_keeps_revoked_partitions_is_removed() {
    let mut g = ConsumerGroup::new("g", HB);
    g.heartbeat(join("a"), &topics(2), 0);
    g.heartbeat(join("b"), &topics(2), 0);
    g.heartbeat(beat("a", 1, None), &topics(2), 100); // told to give one up
    // a keeps heartbeating but never reports the partition released.
    for t in (1_000..=5_000).step_by(1_000) {
        g.heartbeat(beat("a", 1, None), &topics(2), t);
        g.heartbeat(beat("b", 2, None), &topics(2), t);
    }
    g.tick(5_100);
    assert!(
        g.members().all(|m| m.id != "a"),
        "fenced after the rebalance timeout"
    );
}

#[test]
fn minus_one_and_null_leave_the_members_settings_unchanged() {
    let mut g = ConsumerGroup::new("g", HB);
    let first = HeartbeatRequest {
        instance_id: Some("i-a".into()),
        rack_id: Some("r1".into()),
        rebalance_timeout_ms: 300_000,
        ..join("a")
    };
    g.heartbeat(first, &topics(2), 0);
    g.heartbeat(join("b"), &topics(2), 0);
    // As the Java client sends them: -1 and nulls once joined.
    let unchanged = || HeartbeatRequest {
        rebalance_timeout_ms: -1,
        ..beat("a", 1, None)
    };
    let out = g.heartbeat(unchanged(), &topics(2), 100); // told to give one up
    assert_eq!(parts(&out.assignment.unwrap()).len(), 1);
    let a = g.members().find(|m| m.id == "a").unwrap();
    assert_eq!(a.rebalance_timeout_ms, 300_000);
    assert_eq!(a.instance_id.as_deref(), Some("i-a"));
    assert_eq!(a.rack_id.as_deref(), Some("r1"));
    assert_eq!(a.subscribed, BTreeSet::from(["t".to_string()]));
    // Still revoking after far more than a default timeout: not fenced.
    for t in (1_000..=60_000).step_by(1_000) {
        g.heartbeat(unchanged(), &topics(2), t);
        g.heartbeat(beat("b", 2, None), &topics(2), t);
    }
    g.tick(60_100);
    assert!(g.members().any(|m| m.id == "a"), "within its own 300 s");
    // An empty list is a value: subscribed to nothing, it owns nothing.
    let none = HeartbeatRequest {
        subscribed: Some(BTreeSet::new()),
        ..unchanged()
    };
    g.heartbeat(none, &topics(2), 61_000);
    let out = g.heartbeat(unchanged(), &topics(2), 61_100);
    assert!(parts(&out.assignment.unwrap_or_default()).is_empty());
}

#[test]
fn new_partitions_reach_the_members() {
    let mut g = ConsumerGroup::new("g", HB);
    g.heartbeat(join("a"), &topics(2), 0);
    let out = g.heartbeat(beat("a", 1, None), &topics(3), 10);
    assert_eq!(out.epoch, 2);
    assert_eq!(parts(&out.assignment.unwrap()), (0..3).collect());
}

#[test]
fn changes_are_flagged_for_storage_and_survive_a_restore() {
    let mut g = ConsumerGroup::new("g", HB);
    g.heartbeat(join("a"), &topics(4), 0);
    assert!(g.take_dirty(), "a join is stored");
    g.heartbeat(beat("a", 1, None), &topics(4), 100);
    assert!(!g.take_dirty(), "a steady heartbeat writes nothing");
    g.heartbeat(join("b"), &topics(4), 200);
    g.heartbeat(beat("a", 1, None), &topics(4), 300);
    assert!(g.take_dirty());
    let snap = g.snapshot();
    let mut r = ConsumerGroup::restore("g", HB, snap.clone(), 1_000);
    assert_eq!(r.snapshot(), snap);
    assert_eq!(r.epoch(), g.epoch());
    // The restored member goes on at its epoch; a reports the revocation and
    // b then gets the partitions a gave up.
    let a_owned = r.members().find(|m| m.id == "a").unwrap().assigned.clone();
    let out = r.heartbeat(beat("a", 1, Some(&a_owned)), &topics(4), 1_100);
    assert_eq!((out.error, out.epoch), (0, 2));
    let out = r.heartbeat(beat("b", 2, None), &topics(4), 1_200);
    assert_eq!(parts(&out.assignment.unwrap()).len(), 2);
}

#[test]
fn regular_expression_subscriptions_follow_new_topics() {
    let mut g = ConsumerGroup::new("g", HB);
    let mut all = BTreeMap::from([
        ("orders-eu".to_string(), 2),
        ("orders-us".to_string(), 1),
        ("payments".to_string(), 1),
    ]);
    let join = HeartbeatRequest {
        member_id: "a".into(),
        epoch: JOIN,
        regex: Some("orders-.*".into()),
        rebalance_timeout_ms: 5_000,
        ..HeartbeatRequest::default()
    };
    let out = g.heartbeat(join, &all, 0);
    let a = out.assignment.unwrap();
    assert_eq!(
        a.keys().cloned().collect::<Vec<_>>(),
        vec!["orders-eu", "orders-us"]
    );
    assert_eq!(a["orders-eu"].len(), 2);
    // A matching topic created later joins the assignment at the next heartbeat.
    all.insert("orders-jp".into(), 1);
    let out = g.heartbeat(beat("a", out.epoch, None), &all, 100);
    assert!(out.assignment.unwrap().contains_key("orders-jp"));
    // The pattern must match whole names: "xorders-eu" does not.
    all.insert("xorders-eu".into(), 1);
    let e = g.members().next().unwrap().epoch;
    assert_eq!(g.heartbeat(beat("a", e, None), &all, 200).assignment, None);
    let bad = HeartbeatRequest {
        member_id: "b".into(),
        epoch: JOIN,
        regex: Some("orders-(".into()),
        ..HeartbeatRequest::default()
    };
    assert_eq!(
        g.heartbeat(bad, &all, 300).error,
        ResponseError::InvalidRegularExpression.code()
    );
}

#[test]
fn a_regular_expression_brings_only_topics_its_principal_may_describe() {
    let mut g = ConsumerGroup::new("g", HB);
    let mut all = BTreeMap::from([
        ("orders-eu".to_string(), 1),
        ("orders-secret".to_string(), 1),
    ]);
    let may = DescribeFilter(std::sync::Arc::new(|t: &str| !t.ends_with("secret")));
    let join = HeartbeatRequest {
        member_id: "a".into(),
        epoch: JOIN,
        regex: Some("orders-.*".into()),
        rebalance_timeout_ms: 5_000,
        may_describe: Some(may.clone()),
        ..HeartbeatRequest::default()
    };
    let out = g.heartbeat(join, &all, 0);
    let keys = |a: Assignment| a.keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(out.assignment.unwrap()), ["orders-eu"]);
    assert!(!g.subscribes_to("orders-secret"));
    // A topic created later is checked at the member's next heartbeat.
    all.insert("orders-us".into(), 1);
    all.insert("orders-us-secret".into(), 1);
    let next = HeartbeatRequest {
        may_describe: Some(may),
        ..beat("a", out.epoch, None)
    };
    let out = g.heartbeat(next, &all, 100);
    assert_eq!(keys(out.assignment.unwrap()), ["orders-eu", "orders-us"]);
}

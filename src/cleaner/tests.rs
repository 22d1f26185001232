use super::*;
use sluice_storage::SegmentInfo;
use sluice_storage::batch::{self, BuildOptions, RecordSpec};
use std::collections::BTreeMap;

fn policy() -> CompactionPolicy {
    CompactionPolicy {
        min_cleanable_dirty_ratio: 0.5,
        min_compaction_lag_ms: 0,
        max_compaction_lag_ms: i64::MAX,
        delete_retention_ms: 1_000,
        segment_bytes: 1 << 20,
    }
}

/// (key, value) records; a None value is a tombstone, a None key is keyless.
type Rec = (Option<&'static str>, Option<String>);

/// Sealed segments of batches, each batch a list of records, at offsets from 0.
fn segments(spec: &[Vec<Vec<Rec>>], timestamp: i64) -> Vec<SealedSegment> {
    let mut next = 0i64;
    spec.iter()
        .map(|batches| {
            let base = next;
            let mut bytes = Vec::new();
            for recs in batches {
                let specs: Vec<RecordSpec<'_>> = recs
                    .iter()
                    .map(|(k, v)| RecordSpec {
                        key: k.map(str::as_bytes),
                        value: v.as_deref().map(str::as_bytes),
                        timestamp,
                    })
                    .collect();
                let mut b = batch::build(&specs, BuildOptions::default());
                b[..8].copy_from_slice(&next.to_be_bytes());
                next += recs.len() as i64;
                bytes.extend(b);
            }
            SealedSegment {
                info: SegmentInfo {
                    base_offset: base,
                    first_entry: 1,
                    next_offset: next,
                    size_bytes: bytes.len() as u64,
                    max_timestamp: timestamp,
                    created_ms: 0,
                },
                bytes: Bytes::from(bytes),
            }
        })
        .collect()
}

fn put(k: &'static str, v: &str) -> Rec {
    (Some(k), Some(v.to_string()))
}

/// offset → (key, value) of every record left, reading the swapped result.
fn contents(original: &[SealedSegment], out: &CleanOutput) -> BTreeMap<i64, Rec> {
    let mut segs: Vec<(i64, Bytes)> = Vec::new();
    let replaced: Vec<i64> = out.groups.iter().flat_map(|g| g.replaces.clone()).collect();
    for s in original {
        if !replaced.contains(&s.info.base_offset) {
            segs.push((s.info.base_offset, s.bytes.clone()));
        }
    }
    for g in &out.groups {
        segs.push((g.replaces[0], Bytes::from(g.to_vec())));
    }
    segs.sort_by_key(|s| s.0);
    let mut all = BTreeMap::new();
    let mut next = 0;
    for (_, bytes) in segs {
        for b in batches(&bytes) {
            let (h, b) = b.unwrap();
            assert_eq!(h.base_offset, next, "batches stay where they were");
            next = h.next_offset();
            h.validate_crc(&b).unwrap();
            for r in records::records(&b, &h).unwrap() {
                let key: Option<&'static str> = r
                    .key
                    .map(|k| &*String::from_utf8(k.to_vec()).unwrap().leak());
                let value = r.value.map(|v| String::from_utf8(v.to_vec()).unwrap());
                all.insert(r.offset, (key, value));
            }
        }
    }
    all
}

#[test]
fn the_plan_waits_for_the_dirty_ratio_the_lag_and_the_high_watermark() {
    let seg = |base, next, size, ts| SegmentStat {
        base_offset: base,
        next_offset: next,
        size_bytes: size,
        first_timestamp: ts,
        max_timestamp: ts,
    };
    let segs = [
        seg(0, 10, 100, 10),
        seg(10, 20, 100, 20),
        seg(20, 30, 100, 30),
    ];
    let p = policy();
    // Never cleaned: all dirty.
    assert_eq!(plan(&segs, 0, 30, &p, 100), Some(30));
    // Below the high watermark only.
    assert_eq!(plan(&segs, 0, 25, &p, 100), Some(20));
    assert_eq!(plan(&segs, 0, 5, &p, 100), None);
    // 1 dirty segment of 3 is under the 0.5 ratio; 2 of 3 is over.
    assert_eq!(plan(&segs, 20, 30, &p, 100), None);
    assert_eq!(plan(&segs, 10, 30, &p, 100), Some(30));
    // Nothing dirty: nothing to do.
    assert_eq!(plan(&segs, 30, 30, &p, 100), None);
    // min.compaction.lag.ms keeps the newest segments out.
    let lagged = CompactionPolicy {
        min_compaction_lag_ms: 75,
        ..p
    };
    assert_eq!(plan(&segs, 0, 30, &lagged, 100), Some(20));
    // max.compaction.lag.ms forces a pass under the ratio.
    let overdue = CompactionPolicy {
        max_compaction_lag_ms: 50,
        ..p
    };
    assert_eq!(plan(&segs, 20, 30, &overdue, 100), Some(30));
    assert_eq!(plan(&segs, 20, 30, &overdue, 60), None);
}

#[test]
fn the_latest_value_per_key_stays_at_its_offset() {
    let sealed = segments(
        &[
            vec![
                vec![put("a", "a1"), put("b", "b1"), put("c", "c1")],
                vec![put("a", "a2"), (None, Some("keyless".into()))],
            ],
            vec![
                vec![put("b", "b2"), (Some("c"), None)],
                vec![put("d", "d1")],
            ],
        ],
        50_000,
    );
    let out = clean(&sealed, (0, 9), &policy(), 1 << 20, 50_500, i64::MAX).unwrap();
    assert_eq!(out.first_dirty, 8);
    let got = contents(&sealed, &out);
    let want: BTreeMap<i64, Rec> = [
        (3, put("a", "a2")),
        (5, put("b", "b2")),
        (6, (Some("c"), None)), // a young tombstone stays
        (7, put("d", "d1")),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want);
    // The two segments are merged into one.
    assert_eq!(out.groups.len(), 1);
    assert_eq!(out.groups[0].replaces, vec![0, 5]);
    assert_eq!((out.stats.records_read, out.stats.records_removed), (8, 4));
    assert_eq!(
        (out.stats.segments_before, out.stats.segments_after),
        (2, 1)
    );
    assert!(out.stats.bytes_after < out.stats.bytes_before);

    // Past delete.retention.ms the tombstone goes too; an emptied batch stays.
    let out = clean(&sealed, (0, 9), &policy(), 1 << 20, 60_000, i64::MAX).unwrap();
    let got = contents(&sealed, &out);
    assert!(!got.contains_key(&6));
    assert_eq!(got.len(), 3);

    // Unless a replica may still lack it (the limit is where every replica's
    // log reaches): then it stays, old as it is, and still shadows "c".
    for limit in [0, 6] {
        let out = clean(&sealed, (0, 9), &policy(), 1 << 20, 60_000, limit).unwrap();
        let got = contents(&sealed, &out);
        assert_eq!(got.get(&6), Some(&(Some("c"), None)), "limit {limit}");
        assert!(!got.contains_key(&2), "the value it deletes goes");
    }
    let out = clean(&sealed, (0, 9), &policy(), 1 << 20, 60_000, 7).unwrap();
    assert!(!contents(&sealed, &out).contains_key(&6));
}

#[test]
fn a_full_map_cleans_what_it_covers_and_the_rest_waits() {
    // Three segments, each one batch of 10 new keys, then updates of all 30.
    let batch_of = |from: usize, tag: &str| -> Vec<Rec> {
        (from..from + 10)
            .map(|k| {
                let key: &'static str = format!("k{k}").leak();
                (Some(key), Some(format!("{tag}{k}")))
            })
            .collect()
    };
    let sealed = segments(
        &[
            vec![batch_of(0, "old")],
            vec![batch_of(10, "old")],
            vec![batch_of(20, "old")],
            vec![batch_of(0, "new"), batch_of(10, "new"), batch_of(20, "new")],
        ],
        1_000,
    );
    // Room for 20 keys at most (24 bytes each, 90% load): the map takes the
    // first two batches only.
    let memory = 24 * 23;
    let out = clean(&sealed, (0, 60), &policy(), memory, 2_000, i64::MAX).unwrap();
    assert_eq!(out.first_dirty, 20, "the map covered offsets below 20");
    let got = contents(&sealed, &out);
    assert_eq!(
        got.len(),
        60,
        "nothing below 20 is superseded by what the map saw"
    );
    // The next pass starts there and removes the old values.
    let out2 = clean(&sealed, (20, 60), &policy(), 1 << 20, 2_000, i64::MAX).unwrap();
    assert_eq!(out2.first_dirty, 60);
    let got2 = contents(&sealed, &out2);
    assert_eq!(got2.len(), 30);
    assert!(
        got2.values()
            .all(|(_, v)| v.as_deref().unwrap().starts_with("new"))
    );
    assert!(
        clean(&sealed, (0, 60), &policy(), 24, 2_000, i64::MAX).is_err(),
        "a map too small for one batch"
    );
}

#[test]
fn control_batches_stay_whole() {
    let mut sealed = segments(&[vec![vec![put("a", "1")], vec![put("a", "2")]]], 0);
    // Turn the first batch into a control batch (attributes bit 5).
    let mut raw = sealed[0].bytes.to_vec();
    let h = BatchHeader::parse(&raw).unwrap();
    let control = batch::with_records(&raw[..h.total_size()], &raw[61..h.total_size()], 1, 1 << 5);
    raw.splice(..h.total_size(), control);
    sealed[0].bytes = Bytes::from(raw);
    let out = clean(&sealed, (0, 2), &policy(), 1 << 20, 0, i64::MAX).unwrap();
    assert!(out.groups.is_empty(), "nothing to remove: {:?}", out.stats);
    assert_eq!(out.stats.records_removed, 0);
}

/// One sealed segment of (producer id, marker, key, value) batches, one
/// record each, at offsets from 0: transactional data when `marker` is
/// None and the producer id is set, a COMMIT/ABORT marker otherwise.
fn txn_segment(spec: &[(i64, Option<crate::txn::partition::Marker>, &str, &str)]) -> SealedSegment {
    let mut bytes = Vec::new();
    for (offset, &(pid, marker, k, v)) in spec.iter().enumerate() {
        let (mk, mv) = crate::txn::partition::marker_record(
            marker.unwrap_or(crate::txn::partition::Marker::Commit),
            0,
        );
        let rec = match marker {
            Some(_) => RecordSpec {
                key: Some(&mk),
                value: Some(&mv),
                timestamp: 1,
            },
            None => RecordSpec {
                key: Some(k.as_bytes()),
                value: Some(v.as_bytes()),
                timestamp: 1,
            },
        };
        let mut b = batch::build(
            &[rec],
            BuildOptions {
                producer_id: pid,
                producer_epoch: 0,
                base_sequence: if pid >= 0 && marker.is_none() { 0 } else { -1 },
                control: marker.is_some(),
                transactional: pid >= 0,
            },
        );
        b[..8].copy_from_slice(&(offset as i64).to_be_bytes());
        bytes.extend(b);
    }
    SealedSegment {
        info: SegmentInfo {
            base_offset: 0,
            first_entry: 1,
            next_offset: spec.len() as i64,
            size_bytes: bytes.len() as u64,
            max_timestamp: 1,
            created_ms: 0,
        },
        bytes: Bytes::from(bytes),
    }
}

#[test]
fn aborted_records_shadow_nothing_and_are_removed() {
    use crate::txn::partition::{AbortedTxn, Marker};
    let seg = txn_segment(&[
        (1, None, "a", "committed"),
        (1, Some(Marker::Commit), "", ""),
        (2, None, "a", "aborted"),
        (2, Some(Marker::Abort), "", ""),
        (-1, None, "b", "plain"),
    ]);
    let aborted = Aborted::new(&[AbortedTxn {
        producer_id: 2,
        first_offset: 2,
        last_offset: 3,
        last_stable_offset: 4,
    }]);
    let sealed = vec![seg];
    let left = |out: &CleanOutput| {
        let bytes = Bytes::from(out.groups[0].to_vec());
        let mut left = Vec::new();
        let mut markers = 0;
        for b in batches(&bytes) {
            let (h, b) = b.unwrap();
            if h.is_control() {
                markers += 1;
                continue;
            }
            for r in records::records(&b, &h).unwrap() {
                left.push((
                    r.offset,
                    String::from_utf8(r.value.unwrap().to_vec()).unwrap(),
                ));
            }
        }
        (left, markers)
    };
    let out = clean_with(&sealed, (0, 5), &policy(), 1 << 20, 0, i64::MAX, &aborted).unwrap();
    let (kept, markers) = left(&out);
    assert_eq!(
        kept,
        vec![(0, "committed".to_owned()), (4, "plain".to_owned())],
        "the committed value is not shadowed by the aborted one, which goes"
    );
    assert_eq!(markers, 2, "markers stay");
    // Not knowing the aborted transaction, the aborted value would shadow
    // the committed one: what happened before the cleaner knew of them.
    let blind = clean(&sealed, (0, 5), &policy(), 1 << 20, 0, i64::MAX).unwrap();
    assert_eq!(
        left(&blind).0,
        vec![(2, "aborted".to_owned()), (4, "plain".to_owned())]
    );
}

#[test]
fn the_cleaner_reads_transactions_from_the_sealed_segments() {
    use crate::txn::partition::Marker;
    let seg = txn_segment(&[
        (1, None, "a", "one"),
        (2, None, "a", "two"),
        (1, Some(Marker::Abort), "", ""),
        (3, None, "b", "open"),
        (2, Some(Marker::Commit), "", ""),
    ]);
    let (aborted, first_open) = sealed_txns(&[seg]).unwrap();
    assert_eq!(first_open, Some(3), "producer 3 has no marker yet");
    let h = |pid: i64, offset: i64| {
        let b = txn_segment(&[(pid, None, "k", "v")]);
        let mut h = BatchHeader::parse(&b.bytes).unwrap();
        h.base_offset = offset;
        h
    };
    assert!(aborted.contains(&h(1, 0)));
    assert!(!aborted.contains(&h(2, 1)), "committed");
    assert!(!aborted.contains(&h(1, 5)), "after its abort marker");
}

#[test]
fn markers_go_once_they_guard_nothing_past_delete_retention() {
    use crate::txn::partition::{AbortedTxn, Marker};
    let sealed = vec![txn_segment(&[
        (1, None, "a", "one"),
        (1, Some(Marker::Commit), "", ""),
        (2, None, "a", "aborted"),
        (2, Some(Marker::Abort), "", ""),
        (3, None, "b", "kept"),
        (3, Some(Marker::Commit), "", ""),
        (-1, None, "a", "two"),
    ])];
    let aborted = Aborted::new(&[AbortedTxn {
        producer_id: 2,
        first_offset: 2,
        last_offset: 3,
        last_stable_offset: 4,
    }]);
    // (records left, markers left, transactional batches left)
    let shape = |out: &CleanOutput| {
        let bytes = Bytes::from(out.groups[0].to_vec());
        let (mut values, mut markers, mut transactional) = (Vec::new(), Vec::new(), 0);
        for b in batches(&bytes) {
            let (h, b) = b.unwrap();
            if h.is_control() {
                markers.push(h.base_offset);
                continue;
            }
            transactional += h.is_transactional() as usize;
            for r in records::records(&b, &h).unwrap() {
                values.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
            }
        }
        (values, markers, transactional)
    };
    // Past delete.retention.ms (1 s) and below what every replica holds:
    // the markers of transactions with nothing left go; the one whose "b"
    // is still there stays.
    let out = clean_with(
        &sealed,
        (0, 7),
        &policy(),
        1 << 20,
        5_000,
        i64::MAX,
        &aborted,
    )
    .unwrap();
    assert_eq!(
        shape(&out),
        (vec!["kept".to_owned(), "two".to_owned()], vec![5], 1)
    );
    // What is left reads as no transaction open and none aborted.
    let cleaned = SealedSegment {
        bytes: Bytes::from(out.groups[0].to_vec()),
        ..sealed[0].clone()
    };
    let (left_aborted, open) = sealed_txns(&[cleaned]).unwrap();
    assert_eq!(open, None);
    assert!(left_aborted.0.is_empty());
    // Too young, or not yet on every replica: every marker stays.
    for (now, limit) in [(500, i64::MAX), (5_000, 0)] {
        let out = clean_with(&sealed, (0, 7), &policy(), 1 << 20, now, limit, &aborted).unwrap();
        assert_eq!(shape(&out).1, vec![1, 3, 5], "now {now}, limit {limit}");
    }
}

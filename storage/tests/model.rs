//! Property test: random append / read / truncate / roll / delete / reopen
//! sequences against a plain in-memory model of the log.
//!
//! The process may keep only 16 segment files open, so segments are closed
//! and reopened all along, and some read slices are held across later
//! operations (truncation, deletion, reopening): they must keep their bytes.

use std::sync::Arc;

use proptest::prelude::*;
use sluice_storage::batch::{self, BuildOptions, RecordSpec};
use sluice_storage::{AppendOptions, BatchHeader, Log, LogConfig, ManualClock};

#[derive(Debug, Clone)]
enum Op {
    Append { records: usize, size: usize },
    Read { at: usize },
    Truncate { keep: usize },
    Roll,
    DeleteBelow { at: usize },
    Reopen { clean: bool },
    Tick,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..5, 0usize..300).prop_map(|(records, size)| Op::Append { records, size }),
        3 => any::<usize>().prop_map(|at| Op::Read { at }),
        1 => any::<usize>().prop_map(|keep| Op::Truncate { keep }),
        1 => Just(Op::Roll),
        1 => any::<usize>().prop_map(|at| Op::DeleteBelow { at }),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
        1 => Just(Op::Tick),
    ]
}

/// One batch as the model knows it.
#[derive(Debug, Clone)]
struct Entry {
    base: i64,
    last: i64,
    payload: Vec<u8>,
}

fn make_batch(records: usize, size: usize, seed: usize) -> Vec<u8> {
    let values: Vec<Vec<u8>> = (0..records).map(|r| vec![(seed + r) as u8; size]).collect();
    let specs: Vec<RecordSpec<'_>> = values
        .iter()
        .enumerate()
        .map(|(r, v)| RecordSpec {
            key: None,
            value: Some(v),
            timestamp: (seed * 10 + r) as i64,
        })
        .collect();
    batch::build(&specs, BuildOptions::default())
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1500,
        segment_ms: 50,
        index_interval_bytes: 200,
        max_index_bytes: 64,
        ..LogConfig::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        sluice_storage::open_files::set_capacity(16);
        let dir = tempfile::tempdir().unwrap();
        let mut held: Vec<(bytes::Bytes, Vec<u8>)> = Vec::new();
        let clock = Arc::new(ManualClock::new(0));
        let mut log = Some(Log::open(dir.path(), config(), clock.clone()).unwrap());
        let mut model: Vec<Entry> = Vec::new();
        let mut log_start = 0i64;
        let mut first_entry = 1u64;
        for (n, op) in ops.iter().enumerate() {
            let l = log.as_mut().unwrap();
            match *op {
                Op::Append { records, size } => {
                    let b = make_batch(records, size, n);
                    let info = l.append(&b, &AppendOptions::default()).unwrap();
                    let base = model.last().map_or(log_start.max(l.log_start_offset()), |e| e.last + 1);
                    prop_assert_eq!(info.first_offset, model.last().map_or(info.first_offset, |e| e.last + 1));
                    let _ = base;
                    prop_assert_eq!(info.last_offset, info.first_offset + records as i64 - 1);
                    prop_assert_eq!(info.entry_index, first_entry + model.len() as u64);
                    model.push(Entry { base: info.first_offset, last: info.last_offset, payload: b[16..].to_vec() });
                }
                Op::Read { at } => {
                    if let Some(e) = (!model.is_empty()).then(|| &model[at % model.len()]) {
                        if e.last >= log_start {
                            let offset = e.last.max(log_start);
                            let r = l.read(offset, 1).unwrap();
                            let h = BatchHeader::parse(&r.records).unwrap();
                            prop_assert_eq!(h.base_offset, e.base);
                            prop_assert_eq!(&r.records[16..h.total_size()], &e.payload[..]);
                            if held.len() < 8 {
                                held.push((r.records.slice(16..h.total_size()), e.payload.clone()));
                            }
                        }
                    }
                }
                Op::Truncate { keep } => {
                    if !model.is_empty() {
                        let keep = keep % (model.len() + 1);
                        if keep < model.len() && model[keep].base >= log_start {
                            l.truncate_to(model[keep].base).unwrap();
                            model.truncate(keep);
                        }
                    }
                }
                Op::Roll => l.roll().unwrap(),
                Op::Tick => clock.advance(30),
                Op::DeleteBelow { at } => {
                    if !model.is_empty() {
                        let e = &model[at % model.len()];
                        let target = e.base;
                        let removed_before = l.segments();
                        l.delete_segments_below(target).unwrap();
                        let after = l.segments();
                        // Whole segments only, never the active one, never past target.
                        prop_assert!(after.len() >= 1);
                        prop_assert!(after[0].base_offset <= target.max(after[0].base_offset));
                        let dropped: Vec<_> = removed_before.iter().filter(|s| !after.contains(s)).collect();
                        for s in &dropped {
                            prop_assert!(s.next_offset <= target);
                        }
                        log_start = l.log_start_offset();
                        let gone = model.iter().take_while(|m| m.last < after[0].base_offset).count();
                        model.drain(..gone);
                        first_entry += gone as u64;
                    }
                }
                Op::Reopen { clean } => {
                    let mut old = log.take().unwrap();
                    if clean {
                        old.close().unwrap();
                    } else {
                        old.flush().unwrap();
                    }
                    drop(old);
                    log = Some(Log::open(dir.path(), config(), clock.clone()).unwrap());
                }
            }
            for (slice, payload) in &held {
                prop_assert_eq!(&slice[..], &payload[..]);
            }
            let l = log.as_ref().unwrap();
            let leo = model.last().map_or(l.log_end_offset(), |e| e.last + 1);
            prop_assert_eq!(l.log_end_offset(), leo);
            prop_assert_eq!(l.log_start_offset(), log_start);
            prop_assert_eq!(l.first_entry_index(), first_entry);
            prop_assert_eq!(l.last_entry_index() + 1, first_entry + model.len() as u64);
            for (i, e) in model.iter().enumerate() {
                let idx = first_entry + i as u64;
                let b = l.entry(idx).unwrap();
                prop_assert_eq!(&b[16..], &e.payload[..]);
                prop_assert_eq!(l.entry_for_offset(e.base).unwrap(), Some(idx));
            }
        }
    }
}

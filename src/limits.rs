//! Process limits the broker adapts to at start.
//!
//! Every partition has at least one segment file, and a broker may host tens
//! of thousands of partitions. Debian gives a process 1024 open files unless
//! told otherwise (the hard limit is usually far higher), so the broker
//! raises its soft `RLIMIT_NOFILE` to the hard limit, as Kafka's packaging
//! asks operators to, and then keeps at most half of it in segment files
//! (the rest serves connections and short-lived files). Each open segment is
//! also one memory map, and the kernel caps maps per process at
//! `vm.max_map_count`: a quarter of that is the other bound.

/// The soft and hard open-file limits after raising the soft one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFileLimit {
    pub before: u64,
    pub now: u64,
    pub hard: u64,
}

/// Raises the soft open-file limit to the hard one (bounded by the kernel's
/// `fs.nr_open` when the hard limit is unlimited).
pub fn raise_open_file_limit() -> std::io::Result<OpenFileLimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = lim.rlim_cur;
    let mut target = lim.rlim_max;
    if target == libc::RLIM_INFINITY {
        target = read_proc_number("/proc/sys/fs/nr_open").unwrap_or(1 << 20);
    }
    if target > before {
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(OpenFileLimit {
        before,
        now: target.max(before),
        hard: lim.rlim_max,
    })
}

fn read_proc_number(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// How many segment files may be open at once under `open_files` and
/// `max_map_count` (the latter unknown: not a bound).
pub fn segment_file_budget(open_files: u64, max_map_count: Option<u64>) -> usize {
    let by_files = open_files / 2;
    let by_maps = max_map_count.map_or(u64::MAX, |m| m / 4);
    by_files.min(by_maps).clamp(16, 1 << 20) as usize
}

/// Raises the open-file limit and sizes the storage's open-segment cache;
/// logs what it did.
pub fn apply() {
    let limit = match raise_open_file_limit() {
        Ok(l) => {
            if l.now > l.before {
                tracing::info!(
                    from = l.before,
                    to = l.now,
                    "raised the open-file limit (RLIMIT_NOFILE) to its hard limit"
                );
            }
            l.now
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the open-file limit; assuming 1024");
            1024
        }
    };
    let maps = read_proc_number("/proc/sys/vm/max_map_count");
    let budget = segment_file_budget(limit, maps);
    sluice_storage::open_files::set_capacity(budget);
    tracing::info!(
        open_files = limit,
        max_map_count = maps.unwrap_or(0),
        segment_files = budget,
        "segment files kept open at most (idle ones are closed and reopened on use)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_half_the_files_and_a_quarter_of_the_maps() {
        assert_eq!(segment_file_budget(20_000, Some(65_530)), 10_000);
        assert_eq!(segment_file_budget(1_048_576, Some(65_530)), 16_382);
        assert_eq!(segment_file_budget(1024, None), 512);
        assert_eq!(segment_file_budget(8, Some(8)), 16);
    }

    #[test]
    fn raising_never_lowers_the_limit() {
        let l = raise_open_file_limit().unwrap();
        assert!(l.now >= l.before);
        assert!(l.now <= l.hard || l.hard == libc::RLIM_INFINITY);
    }
}

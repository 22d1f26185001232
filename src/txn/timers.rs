//! The coordinator's timers: transactions past their timeout aborted (their
//! producer fenced), outstanding markers written, idle transactional ids
//! expired.

use std::sync::Weak;
use std::time::Duration;

use tokio::sync::watch;

use super::{Code, TxnCoordinator, TxnState};
use crate::broker::Broker;

impl TxnCoordinator {
    /// Aborts transactions past their timeout (bumping the epoch, so the
    /// producer that let it run out is fenced), finishes those whose
    /// markers are outstanding, and, when `expire`, forgets ids idle past
    /// transactional.id.expiration.ms.
    pub async fn tick(&self, broker: &Broker, expire: bool) {
        let now = broker.now_ms();
        let (timed_out, completing, expired) = {
            let inner = self.lock();
            let mut timed_out = Vec::new();
            let mut completing = Vec::new();
            let mut expired = Vec::new();
            for (id, m) in &inner.txns {
                if broker.cluster().is_some() && !self.leads_locked(&inner, broker, id) {
                    continue;
                }
                match m.state {
                    TxnState::Ongoing if now - m.start_ms > m.timeout_ms as i64 => {
                        timed_out.push(id.clone())
                    }
                    s if s.preparing() => completing.push(id.clone()),
                    TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                        if expire && now - m.last_update_ms > self.config.id_expiration_ms =>
                    {
                        expired.push(id.clone())
                    }
                    _ => {}
                }
            }
            (timed_out, completing, expired)
        };
        for id in timed_out {
            if let Err(c) = self.abort_timed_out(broker, &id).await {
                tracing::warn!(transactional_id = %id, code = c, "could not abort a timed-out transaction");
            }
        }
        for id in completing {
            if let Err(c) = self.complete(broker, &id).await {
                tracing::warn!(transactional_id = %id, code = c, "could not complete a transaction");
            }
        }
        for id in expired {
            self.expire(broker, &id, now).await;
        }
    }

    pub(super) async fn abort_timed_out(
        &self,
        broker: &Broker,
        transactional_id: &str,
    ) -> Result<(), Code> {
        let p = self.txn_partition(broker, transactional_id).await?;
        let now = broker.now_ms();
        let r = {
            let mut inner = self.lock();
            let Some(m) = inner.txns.get(transactional_id).cloned() else {
                return Ok(());
            };
            if m.state != TxnState::Ongoing || now - m.start_ms <= m.timeout_ms as i64 {
                return Ok(());
            }
            if m.epoch >= i16::MAX - 1 {
                // No epoch left to fence with: abort at this one.
                let mut next = m;
                next.state = TxnState::PrepareAbort;
                self.store(&mut inner, &p, transactional_id, next, now)?
            } else {
                inner
                    .fenced_from
                    .insert(transactional_id.to_owned(), m.epoch);
                let mut next = m;
                next.epoch += 1;
                next.state = TxnState::PrepareAbort;
                self.store(&mut inner, &p, transactional_id, next, now)?
            }
        };
        tracing::info!(
            transactional_id,
            "transaction past its timeout: aborting it"
        );
        Self::durable(&p, &r).await?;
        self.complete(broker, transactional_id).await
    }

    pub(super) async fn expire(&self, broker: &Broker, transactional_id: &str, now: i64) {
        let Ok(p) = self.txn_partition(broker, transactional_id).await else {
            return;
        };
        let mut inner = self.lock();
        let Some(m) = inner.txns.get(transactional_id) else {
            return;
        };
        if m.state.preparing()
            || m.state == TxnState::Ongoing
            || now - m.last_update_ms <= self.config.id_expiration_ms
        {
            return;
        }
        match self.persist(&p, transactional_id, None, now) {
            Ok(_) => {
                inner.txns.remove(transactional_id);
                inner.fenced_from.remove(transactional_id);
                tracing::info!(transactional_id, "transactional id expired");
            }
            Err(c) => tracing::warn!(
                transactional_id,
                code = c,
                "could not expire a transactional id"
            ),
        }
    }
}

/// Runs the coordinator's timers until the broker is gone or shutdown
/// starts: timed-out transactions every
/// transaction.abort.timed.out.transaction.cleanup.interval.ms, expired ids
/// every transaction.remove.expired.transaction.cleanup.interval.ms.
pub async fn run_timers(
    broker: Weak<Broker>,
    abort_interval: Duration,
    expire_interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(abort_interval.max(Duration::from_millis(10)));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_expiry = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.changed() => return,
        }
        let Some(b) = broker.upgrade() else { return };
        let expire = last_expiry.elapsed() >= expire_interval;
        if expire {
            last_expiry = std::time::Instant::now();
        }
        b.txns.tick(&b, expire).await;
    }
}

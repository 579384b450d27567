//! Locks and how long they are held. Every statement is described as operations: a lock mode
//! on a table and the work done while holding it (nothing, a scan, an index build, a rewrite, a
//! backfill). Readers take ACCESS SHARE, which only ACCESS EXCLUSIVE blocks; writers take ROW
//! EXCLUSIVE, which SHARE and every stronger mode block, and a backfill's row locks block the
//! writers of the rows it updates. A transactional file holds every lock until it commits, so
//! a long statement blocks whatever any earlier statement of the file locked.

use std::collections::BTreeMap;

/// PostgreSQL's table lock modes, weakest first (lockdefs.h numbers them 1 to 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Lock {
    AccessShare = 1,
    RowShare,
    RowExclusive,
    ShareUpdateExclusive,
    Share,
    ShareRowExclusive,
    Exclusive,
    AccessExclusive,
}

impl Lock {
    pub fn name(self) -> &'static str {
        match self {
            Lock::AccessShare => "ACCESS SHARE",
            Lock::RowShare => "ROW SHARE",
            Lock::RowExclusive => "ROW EXCLUSIVE",
            Lock::ShareUpdateExclusive => "SHARE UPDATE EXCLUSIVE",
            Lock::Share => "SHARE",
            Lock::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            Lock::Exclusive => "EXCLUSIVE",
            Lock::AccessExclusive => "ACCESS EXCLUSIVE",
        }
    }

    /// LOCK TABLE's mode number.
    pub fn from_mode(mode: i32) -> Lock {
        match mode {
            1 => Lock::AccessShare,
            2 => Lock::RowShare,
            3 => Lock::RowExclusive,
            4 => Lock::ShareUpdateExclusive,
            5 => Lock::Share,
            6 => Lock::ShareRowExclusive,
            7 => Lock::Exclusive,
            _ => Lock::AccessExclusive,
        }
    }

    pub fn blocks_reads(self) -> bool {
        self == Lock::AccessExclusive
    }

    pub fn blocks_writes(self) -> bool {
        self >= Lock::Share
    }

    /// "reads and writes" or "writes", as a lock of this mode blocks them.
    pub fn blocks_what(self) -> &'static str {
        if self.blocks_reads() {
            "reads and writes"
        } else {
            "writes"
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Catalog only: the lock is held for milliseconds.
    Instant,
    /// Reads every row (a validation, a SET NOT NULL check, a SELECT).
    Scan,
    /// Builds an index from every row.
    Build,
    /// Writes a new copy of the table and its indexes.
    Rewrite,
    /// Updates or deletes rows: their row locks block writers until commit.
    Backfill,
}

/// One lock a statement takes and what it does while holding it.
#[derive(Debug, Clone)]
pub struct Op {
    pub table: String,
    pub lock: Lock,
    pub work: Work,
    /// When `work` blocks others: the finding's rule, message and alternative.
    pub rule: &'static str,
    pub message: String,
    pub alternative: String,
}

impl Op {
    pub fn instant(table: &str, lock: Lock) -> Self {
        Op {
            table: table.to_owned(),
            lock,
            work: Work::Instant,
            rule: "",
            message: String::new(),
            alternative: String::new(),
        }
    }

    /// Long work whose own lock blocks neither reads nor writes (CONCURRENTLY, VALIDATE, a
    /// SELECT): it matters only for the locks the file already holds.
    pub fn quiet(table: &str, lock: Lock, work: Work) -> Self {
        Op::long(table, lock, work, "", String::new(), "")
    }

    pub fn long(
        table: &str,
        lock: Lock,
        work: Work,
        rule: &'static str,
        message: String,
        alternative: &str,
    ) -> Self {
        Op {
            table: table.to_owned(),
            lock,
            work,
            rule,
            message,
            alternative: alternative.to_owned(),
        }
    }
}

/// A lock that blocks others for as long as a statement works.
#[derive(Debug, Clone)]
pub struct Blocked {
    pub rule: &'static str,
    pub table: String,
    pub lock: Lock,
    pub rewrite: bool,
    pub scan: bool,
    pub message: String,
    pub alternative: String,
}

/// The locks a file holds so far.
#[derive(Debug, Default)]
pub struct Held {
    locks: BTreeMap<String, (Lock, usize, String)>,
}

impl Held {
    /// Takes the statement's locks (tables created in this file excluded) and returns what its
    /// long work blocks: its own lock, and every lock held from earlier statements.
    pub fn statement(
        &mut self,
        ops: &[Op],
        line: usize,
        what: &str,
        is_new: impl Fn(&str) -> bool,
    ) -> Vec<Blocked> {
        // Long work on a table created in this file still runs under the locks held so far.
        let long = ops.iter().find(|o| o.work != Work::Instant).cloned();
        let ops: Vec<&Op> = ops.iter().filter(|o| !is_new(&o.table)).collect();
        let before = self.locks.clone();
        for o in &ops {
            let e = self
                .locks
                .entry(o.table.clone())
                .or_insert((o.lock, line, what.to_owned()));
            if o.lock > e.0 {
                *e = (o.lock, line, what.to_owned());
            }
        }
        let Some(long) = long else {
            return Vec::new();
        };
        let mut out = Vec::new();
        // The statement's own locks.
        for o in ops.iter().filter(|o| o.work != Work::Instant) {
            let blocks = o.lock.blocks_writes() || o.work == Work::Backfill;
            if blocks && !out.iter().any(|b: &Blocked| b.table == o.table) {
                let own = if o.work == Work::Backfill {
                    o.lock.max(Lock::RowExclusive)
                } else {
                    o.lock
                };
                // A stronger lock an earlier statement took on the same table is held too.
                let (lock, message) = match before.get(&o.table) {
                    Some((held, at, by)) if *held > own && held.blocks_writes() => (
                        *held,
                        format!(
                            "{}; and the {} lock {by} (line {at}) took on it is still held: {} of {} wait",
                            o.message,
                            held.name(),
                            held.blocks_what(),
                            o.table
                        ),
                    ),
                    _ => (own, o.message.clone()),
                };
                out.push(Blocked {
                    rule: o.rule,
                    table: o.table.clone(),
                    lock,
                    rewrite: o.work == Work::Rewrite,
                    scan: matches!(o.work, Work::Scan | Work::Backfill | Work::Build),
                    message,
                    alternative: o.alternative.clone(),
                });
            }
        }
        // Locks taken by earlier statements of the file, still held.
        for (table, (lock, at, by)) in &before {
            if !(lock.blocks_writes()) || out.iter().any(|b| &b.table == table) {
                continue;
            }
            out.push(Blocked {
                rule: "long-statement-under-held-lock",
                table: table.clone(),
                lock: *lock,
                rewrite: false,
                scan: false,
                message: format!(
                    "{} {} while this transaction still holds the {} lock {by} (line {at}) took on {table}: {} of {table} wait until the file commits",
                    what,
                    match long.work {
                        Work::Scan => "scans",
                        Work::Build => "builds an index",
                        Work::Rewrite => "rewrites a table",
                        Work::Backfill => "updates rows",
                        Work::Instant => "runs",
                    },
                    lock.name(),
                    lock.blocks_what()
                ),
                alternative: format!(
                    "move this statement to a later migration, or mark the file `-- no-transaction` so the lock taken at line {at} is released when that statement ends"
                ),
            });
        }
        out
    }

    /// A `-- no-transaction` file: each statement commits on its own.
    pub fn release(&mut self) {
        self.locks.clear();
    }
}

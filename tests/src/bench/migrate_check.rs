//! `cutover-bench --only migrate-check`: how long the migration safety check takes on a folder
//! of 500 migrations (the corpus cases, cycled, after the corpus fixture), in process and as
//! `cutover migrate check DIR --format json` (process start and JSON included). Printed, never
//! asserted; the target is under 1 s.

use std::path::Path;
use std::time::{Duration, Instant};

const FILES: usize = 500;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn run(dir: &Path, runs: usize) {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrate/tests/corpus");
    let cases = migrate::corpus::load(&corpus).expect("the corpus loads");
    let folder = dir.join("migrations");
    std::fs::create_dir_all(&folder).unwrap();
    let fixture = std::fs::read_to_string(corpus.join("fixture.sql")).unwrap();
    std::fs::write(folder.join("1_fixture.up.sql"), &fixture).unwrap();
    std::fs::write(folder.join("1_fixture.down.sql"), "SELECT 1;\n").unwrap();
    let mut bytes = fixture.len();
    for i in 0..FILES - 1 {
        let case = &cases[i % cases.len()];
        let name = format!("{}_{}", i + 2, case.migration.name);
        std::fs::write(
            folder.join(format!("{name}.up.sql")),
            &case.migration.up_sql,
        )
        .unwrap();
        std::fs::write(folder.join(format!("{name}.down.sql")), "SELECT 1;\n").unwrap();
        bytes += case.migration.up_sql.len();
    }
    let mut inproc = Vec::new();
    let mut report = None;
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        report = Some(migrate::check_dir(&folder).expect("the folder is in the layout"));
        inproc.push(t.elapsed());
    }
    let report = report.unwrap();
    let statements: usize = report.files.iter().map(|f| f.statements).sum();
    let mut cli = Vec::new();
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        let out = std::process::Command::new(testkit::bin("cutover"))
            .args(["migrate", "check"])
            .arg(&folder)
            .args(["--format", "json"])
            .output()
            .expect("cutover runs");
        cli.push(t.elapsed());
        assert!(
            !out.stdout.is_empty(),
            "cutover migrate check printed nothing"
        );
    }
    println!(
        "migrate check: {} files, {statements} statements, {} KB, {} findings",
        report.files.len(),
        bytes / 1024,
        report.findings.len()
    );
    println!(
        "  in process:             median {:>7.1} ms, min {:>7.1} ms over {} runs ({:.1} µs per file)",
        median(inproc.clone()).as_secs_f64() * 1e3,
        inproc.iter().min().unwrap().as_secs_f64() * 1e3,
        inproc.len(),
        median(inproc).as_secs_f64() * 1e6 / report.files.len() as f64
    );
    println!(
        "  cutover migrate check:  median {:>7.1} ms, min {:>7.1} ms over {} runs (target: under 1000 ms)",
        median(cli.clone()).as_secs_f64() * 1e3,
        cli.iter().min().unwrap().as_secs_f64() * 1e3,
        cli.len()
    );
}

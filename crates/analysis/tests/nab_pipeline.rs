//! The NAB pipeline on a few real NAB files from `shared/`: the results
//! have the layout and format NAB's scorer reads, and the scorer (run with
//! python3 when present) accepts and scores them. Fails when shared/ is
//! absent (beside the work tree, or `SONDE_SHARED`).

use std::path::{Path, PathBuf};
use std::process::Command;

use sonde_analysis::{nab, DetectorConfig};

const FILES: [&str; 3] = [
    "artificialWithAnomaly/art_daily_jumpsup.csv",
    "realAWSCloudwatch/rds_cpu_utilization_e47b3b.csv",
    "realKnownCause/ec2_request_latency_system_failure.csv",
];

fn shared() -> Option<PathBuf> {
    let dir = match std::env::var_os("SONDE_SHARED") {
        Some(s) => PathBuf::from(s),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    };
    if dir.join("data/nab/data").join(FILES[0]).exists() {
        return Some(dir);
    }
    panic!(
        "{}: no NAB data: the tests need the shared folder beside the work tree, or SONDE_SHARED",
        dir.display()
    );
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sonde-analysis-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn nab_results_have_the_format_the_scorer_reads() {
    let Some(shared) = shared() else { return };
    let nab_dir = shared.join("data/nab");
    // A data folder holding just these files, in NAB's layout.
    let data = scratch("data");
    for f in FILES {
        let to = data.join(f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(nab_dir.join("data").join(f), &to).unwrap();
    }
    let out = scratch("out");
    let summary = nab::run(&data, &out, &DetectorConfig::default()).unwrap();
    assert_eq!(summary.files, FILES.len());

    for f in FILES {
        let input = std::fs::read_to_string(data.join(f)).unwrap();
        let output = std::fs::read_to_string(out.join(f)).unwrap();
        let (in_lines, out_lines): (Vec<&str>, Vec<&str>) =
            (input.lines().collect(), output.lines().collect());
        assert_eq!(out_lines[0], "timestamp,value,anomaly_score", "{f}");
        assert_eq!(
            in_lines.len(),
            out_lines.len(),
            "{f}: one result row per input row"
        );
        for (i, (a, b)) in in_lines.iter().zip(&out_lines).enumerate().skip(1) {
            let cols: Vec<&str> = b.split(',').collect();
            assert_eq!(cols.len(), 3, "{f}:{i}: {b}");
            assert_eq!(
                cols[0],
                a.split(',').next().unwrap(),
                "{f}:{i}: timestamp copied verbatim"
            );
            let s: f64 = cols[2].parse().unwrap();
            assert!((0.0..=1.0).contains(&s), "{f}:{i}: score {s}");
        }
    }
    score_with_nab_scorer(&shared, &nab_dir, &out);
}

/// Runs `shared/tools/nab-score` on the results, with the labels of these
/// files only (the scorer insists on a result for every labelled series).
fn score_with_nab_scorer(shared: &Path, nab_dir: &Path, out: &Path) {
    let scorer = shared.join("tools/nab-score");
    if !scorer.exists() || Command::new("python3").arg("--version").output().is_err() {
        println!("skipped scoring: no python3 or no {}", scorer.display());
        return;
    }
    let labels: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(nab_dir.join("labels/combined_windows.json")).unwrap(),
    )
    .unwrap();
    let subset: serde_json::Map<String, serde_json::Value> = FILES
        .iter()
        .map(|f| (f.to_string(), labels[*f].clone()))
        .collect();
    let labels_path = out.join("labels.json");
    std::fs::write(&labels_path, serde_json::to_string(&subset).unwrap()).unwrap();
    let run = Command::new("python3")
        .arg(&scorer)
        .arg(out)
        .arg("--data")
        .arg(nab_dir)
        .arg("--labels")
        .arg(&labels_path)
        .arg("--json")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "nab-score failed: {stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["files"], FILES.len());
    for profile in ["standard", "reward_low_FP_rate", "reward_low_FN_rate"] {
        let score = report[profile]["score"].as_f64().unwrap();
        println!("{profile}: {score}");
        // These series hold plain spikes and shifts: a working detector
        // finds them (the null detector scores 0, a perfect one 100).
        assert!(score > 50.0, "{profile} score {score} on easy series");
    }
}

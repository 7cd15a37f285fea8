//! The Numenta Anomaly Benchmark (NAB) pipeline: read every
//! `<folder>/<name>.csv` (`timestamp,value`) under a data folder, run one
//! [`Detector`] per file with one configuration, and write
//! `timestamp,value,anomaly_score` files in the same layout, which NAB's
//! scorer (`shared/tools/nab-score`) reads.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{Detector, DetectorConfig, Error, Result};

/// One row of a NAB data file.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The timestamp as written in the file, copied verbatim to the results.
    pub timestamp: String,
    /// The timestamp in milliseconds since the Unix epoch (UTC assumed).
    pub t_ms: i64,
    pub value: f64,
}

/// What a run over a data folder did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub files: usize,
    pub points: usize,
    /// Time spent inside `Detector::update` alone.
    pub detect_time: Duration,
}

/// Parses `YYYY-MM-DD HH:MM:SS[.ffffff]` (or with a `T`) as UTC milliseconds.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    if b.len() < 19 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        std::str::from_utf8(&b[r]).ok()?.parse::<i64>().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[4] != b'-' || b[7] != b'-' || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let mut ms = 0;
    if b.len() > 20 && b[19] == b'.' {
        let frac = std::str::from_utf8(&b[20..]).ok()?;
        let digits: String = frac.chars().take(3).collect();
        ms = format!("{digits:0<3}").parse::<i64>().ok()?;
    }
    let days = sonde_model::time::days_from_civil(y, mo, d);
    Some(((days * 24 + h) * 60 + mi) * 60_000 + sec * 1000 + ms)
}

/// Reads one NAB data file.
pub fn read_series(path: &Path) -> Result<Vec<Row>> {
    let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (i == 0 && line.starts_with("timestamp")) {
            continue;
        }
        let parse_err = |msg: &str| Error::Parse {
            path: path.to_path_buf(),
            line: i + 1,
            msg: msg.to_string(),
        };
        let (ts, val) = line
            .split_once(',')
            .ok_or_else(|| parse_err("expected `timestamp,value`"))?;
        let t_ms =
            parse_timestamp(ts).ok_or_else(|| parse_err("timestamp is not YYYY-MM-DD HH:MM:SS"))?;
        let value = val
            .split(',')
            .next()
            .unwrap_or("")
            .trim()
            .parse::<f64>()
            .map_err(|_| parse_err("value is not a number"))?;
        rows.push(Row {
            timestamp: ts.trim().to_string(),
            t_ms,
            value,
        });
    }
    Ok(rows)
}

/// Runs a fresh detector over `rows`; returns the scores and the time spent
/// in the detector.
pub fn detect_series(rows: &[Row], config: &DetectorConfig) -> (Vec<f64>, Duration) {
    let mut det = Detector::new(config.clone());
    let start = Instant::now();
    let scores = rows
        .iter()
        .map(|r| det.update(r.t_ms, r.value).score)
        .collect();
    (scores, start.elapsed())
}

/// Writes a NAB results file: `timestamp,value,anomaly_score`.
pub fn write_results(path: &Path, rows: &[Row], scores: &[f64]) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let mut out = String::with_capacity(rows.len() * 40);
    out.push_str("timestamp,value,anomaly_score\n");
    for (r, s) in rows.iter().zip(scores) {
        out.push_str(&format!(
            "{},{},{:.6}\n",
            r.timestamp,
            r.value,
            s.clamp(0.0, 1.0)
        ));
    }
    let mut f = fs::File::create(path).map_err(|e| Error::io(path, e))?;
    f.write_all(out.as_bytes()).map_err(|e| Error::io(path, e))
}

/// Every `<folder>/<name>.csv` under `data`, relative to it, sorted.
pub fn list_series(data: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let dirs = fs::read_dir(data).map_err(|e| Error::io(data, e))?;
    for dir in dirs {
        let dir = dir.map_err(|e| Error::io(data, e))?.path();
        if !dir.is_dir() {
            continue;
        }
        for f in fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let f = f.map_err(|e| Error::io(&dir, e))?.path();
            if f.extension().is_some_and(|e| e == "csv") {
                found.push(f.strip_prefix(data).unwrap_or(&f).to_path_buf());
            }
        }
    }
    if found.is_empty() {
        return Err(Error::NoSeries(data.to_path_buf()));
    }
    found.sort();
    Ok(found)
}

/// Runs the detector over every series under `data`, writing results
/// under `out` in the same layout.
pub fn run(data: &Path, out: &Path, config: &DetectorConfig) -> Result<RunSummary> {
    let mut summary = RunSummary::default();
    for rel in list_series(data)? {
        let rows = read_series(&data.join(&rel))?;
        let (scores, took) = detect_series(&rows, config);
        write_results(&out.join(&rel), &rows, &scores)?;
        summary.files += 1;
        summary.points += rows.len();
        summary.detect_time += took;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_as_utc() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:00"), Some(0));
        assert_eq!(
            parse_timestamp("2014-04-01 00:05:00"),
            Some(1_396_310_700_000)
        );
        assert_eq!(
            parse_timestamp("2014-04-10 07:15:00.000000"),
            Some(1_397_114_100_000)
        );
        assert_eq!(
            parse_timestamp("2000-02-29T12:00:00.5"),
            Some(951_825_600_500)
        );
        assert_eq!(parse_timestamp("yesterday"), None);
    }
}

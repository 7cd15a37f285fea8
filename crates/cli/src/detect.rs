//! `sonde detect`: runs the production anomaly detector, with its default
//! configuration, over a folder of NAB-format CSVs (`<folder>/<name>.csv`,
//! `timestamp,value`) and writes NAB-format results
//! (`timestamp,value,anomaly_score`) in the same layout, for
//! `shared/tools/nab-score` to score.

use std::path::PathBuf;

use anyhow::{bail, Context};
use sonde_analysis::{nab, DetectorConfig};

const USAGE: &str = "usage: sonde detect [--data DIR] --out DIR

  --data DIR   NAB data folder holding <folder>/<name>.csv files
               (default $SONDE_SHARED/data/nab/data, else ../shared/data/nab/data)
  --out DIR    where to write <folder>/<name>.csv results";

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let mut data = None;
    let mut out = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (key, inline) = match a.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (a.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .with_context(|| format!("flag {key} needs a value"))
        };
        match key {
            "--data" => data = Some(PathBuf::from(value()?)),
            "--out" => out = Some(PathBuf::from(value()?)),
            "--help" | "-h" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown flag {other:?}\n\n{USAGE}"),
        }
    }
    let data = data.unwrap_or_else(|| match std::env::var_os("SONDE_SHARED") {
        Some(s) => PathBuf::from(s).join("data/nab/data"),
        None => PathBuf::from("../shared/data/nab/data"),
    });
    let Some(out) = out else {
        bail!("--out DIR is required\n\n{USAGE}");
    };
    let summary = nab::run(&data, &out, &DetectorConfig::default())
        .with_context(|| format!("cannot run the detector over {}", data.display()))?;
    let ns = summary.detect_time.as_nanos() as f64 / summary.points.max(1) as f64;
    println!(
        "{} series, {} points, {ns:.0} ns per point in the detector; results in {}",
        summary.files,
        summary.points,
        out.display()
    );
    Ok(())
}

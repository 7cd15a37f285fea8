//! Development loop for the detector: runs it over NAB and scores the
//! result in-process with the same rules as `shared/tools/nab-score` (a
//! port, checked against it), printing the three profiles and, with
//! `--files`, where the standard profile's detections fell.
//!
//!     cargo run --release -p sonde-analysis --example nab_eval -- \
//!         [--nab ../shared/data/nab] [--files] [--half 0|1] \
//!         [--shift-min MINUTES] [--fit-on F1,F2 --score-on F3] [field=value ...]
//!
//! Guards against tuning to these files: `--half 0` and `--half 1` score
//! only the even or odd files (in sorted order; thresholds are chosen per
//! half), to tune on one half and check the other; `--shift-min` moves
//! every timestamp, so the time-of-day bins fall elsewhere in the data (a
//! change that helps only at one shift is luck, not a better detector).
//!
//! `--fit-on` and `--score-on` (NAB folder names) check how a threshold
//! carries over: it is chosen on the first folders and the others are
//! scored at it (leave one folder out).
//!
//! `field=value` overrides a `DetectorConfig` field, for experiments only:
//! the shipped configuration is `DetectorConfig::default()`.

use std::collections::HashMap;
use std::path::PathBuf;

use sonde_analysis::nab::{self, parse_timestamp};
use sonde_analysis::DetectorConfig;

struct Profile {
    name: &'static str,
    tp: f64,
    fn_: f64,
    fp: f64,
}

const PROFILES: [Profile; 3] = [
    Profile {
        name: "standard",
        tp: 1.0,
        fn_: 1.0,
        fp: 0.11,
    },
    Profile {
        name: "reward_low_FP_rate",
        tp: 1.0,
        fn_: 1.0,
        fp: 0.22,
    },
    Profile {
        name: "reward_low_FN_rate",
        tp: 1.0,
        fn_: 2.0,
        fp: 0.11,
    },
];

fn sigmoid(x: f64) -> f64 {
    if x > 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * x).exp()) - 1.0
    }
}

/// (score, reward, window id) of every scored row.
fn file_points(
    n: usize,
    scores: &[f64],
    wins: &[(usize, usize)],
    p: &Profile,
    wid0: usize,
) -> Vec<(f64, f64, Option<usize>)> {
    let probation = ((0.15 * n as f64).floor() as usize).min(750);
    let max_tp = sigmoid(-1.0);
    let mut out = Vec::new();
    let (mut prev_end, mut prev_width): (Option<usize>, usize) = (None, 0);
    for (i, &score) in scores.iter().enumerate().take(n) {
        let w = wins.iter().position(|&(l, r)| l <= i && i <= r);
        let (reward, key) = match w {
            Some(k) => {
                let (l, r) = wins[k];
                let width = (r - l + 1) as f64;
                (
                    sigmoid(-((r - i + 1) as f64) / width) * p.tp / max_tp,
                    Some(wid0 + k),
                )
            }
            None => {
                let base = match prev_end {
                    None => -1.0,
                    Some(e) => sigmoid((i as f64 - e as f64).abs() / (prev_width as f64 - 1.0)),
                };
                (base * p.fp, None)
            }
        };
        if i >= probation {
            out.push((score, reward, key));
        }
        if let Some(k) = w {
            if i == wins[k].1 {
                prev_end = Some(i);
                prev_width = wins[k].1 - wins[k].0 + 1;
            }
        }
    }
    out
}

fn best_threshold(
    mut points: Vec<(f64, f64, Option<usize>)>,
    n_windows: usize,
    p: &Profile,
) -> (f64, f64) {
    points.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap());
    let mut best_in = vec![-p.fn_; n_windows];
    let mut sum_in = -p.fn_ * n_windows as f64;
    let mut fp_total = 0.0;
    let mut best = (sum_in, 1.1);
    let mut current: Option<f64> = None;
    for (s, reward, key) in points {
        if let Some(c) = current {
            if s != c && fp_total + sum_in > best.0 {
                best = (fp_total + sum_in, c);
            }
        }
        current = Some(s);
        match key {
            None => fp_total += reward,
            Some(k) => {
                if reward > best_in[k] {
                    sum_in += reward - best_in[k];
                    best_in[k] = reward;
                }
            }
        }
    }
    if let Some(c) = current {
        if fp_total + sum_in > best.0 {
            best = (fp_total + sum_in, c);
        }
    }
    best
}

/// Standard-style raw score of `points` at a fixed threshold (score >= thr).
fn score_at(points: &[(f64, f64, Option<usize>)], n_windows: usize, p: &Profile, thr: f64) -> f64 {
    let mut best_in: HashMap<usize, f64> = HashMap::new();
    let mut fp_total = 0.0;
    for &(s, reward, key) in points {
        if s < thr {
            continue;
        }
        match key {
            None => fp_total += reward,
            Some(k) => {
                let e = best_in.entry(k).or_insert(-p.fn_);
                if reward > *e {
                    *e = reward;
                }
            }
        }
    }
    let found: f64 = best_in.values().map(|v| v + p.fn_).sum();
    fp_total - p.fn_ * n_windows as f64 + found
}

fn folder_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn main() {
    let mut nab_dir =
        PathBuf::from(std::env::var("SONDE_SHARED").unwrap_or_else(|_| "../shared".into()))
            .join("data/nab");
    let mut cfg = DetectorConfig::default();
    let mut show_files = false;
    let mut detail = false;
    let mut out_dir: Option<PathBuf> = None;
    let mut half: Option<usize> = None;
    let mut shift_ms = 0i64;
    let mut fit_on: Option<Vec<String>> = None;
    let mut score_on: Option<Vec<String>> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--nab" => nab_dir = PathBuf::from(args.next().expect("--nab DIR")),
            "--out" => out_dir = Some(PathBuf::from(args.next().expect("--out DIR"))),
            "--files" => show_files = true,
            "--detail" => detail = true,
            "--half" => half = Some(args.next().expect("--half 0|1").parse().expect("0 or 1")),
            "--fit-on" => fit_on = Some(folder_list(&args.next().expect("--fit-on A,B"))),
            "--score-on" => score_on = Some(folder_list(&args.next().expect("--score-on C"))),
            "--shift-min" => {
                let m: i64 = args
                    .next()
                    .expect("--shift-min N")
                    .parse()
                    .expect("minutes");
                shift_ms = m * 60_000;
            }
            kv => {
                let (k, v) = kv.split_once('=').expect("field=value");
                set(&mut cfg, k, v);
            }
        }
    }
    let labels: HashMap<String, Vec<[String; 2]>> = serde_json::from_str(
        &std::fs::read_to_string(nab_dir.join("labels/combined_windows.json")).unwrap(),
    )
    .unwrap();
    let data = nab_dir.join("data");
    let mut keys: Vec<&String> = labels.keys().collect();
    keys.sort();
    if let Some(h) = half {
        keys = keys
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % 2 == h)
            .map(|(_, k)| k)
            .collect();
    }
    let folder_of = |k: &str| k.split('/').next().unwrap_or("").to_string();
    if let (Some(f), Some(o)) = (&fit_on, &score_on) {
        keys.retain(|k| {
            let d = folder_of(k);
            f.contains(&d) || o.contains(&d)
        });
    }
    let mut per_file = Vec::new();
    let mut n_points = 0usize;
    let mut took = std::time::Duration::ZERO;
    let mut n_windows = 0;
    for rel in &keys {
        let mut rows = nab::read_series(&data.join(rel)).unwrap();
        rows.iter_mut().for_each(|r| r.t_ms += shift_ms);
        let (scores, t) = nab::detect_series(&rows, &cfg);
        took += t;
        n_points += rows.len();
        if let Some(o) = &out_dir {
            nab::write_results(&o.join(rel), &rows, &scores).unwrap();
        }
        let index: HashMap<i64, usize> =
            rows.iter().enumerate().map(|(i, r)| (r.t_ms, i)).collect();
        let wins: Vec<(usize, usize)> = labels[*rel]
            .iter()
            .map(|[a, b]| {
                (
                    index[&(parse_timestamp(a).unwrap() + shift_ms)],
                    index[&(parse_timestamp(b).unwrap() + shift_ms)],
                )
            })
            .collect();
        let wid0 = n_windows;
        n_windows += wins.len();
        per_file.push((rel.to_string(), rows.len(), scores, wins, wid0));
    }
    if detail {
        // Each window's best score, and the peaks outside windows (one per
        // 100 rows), to see how well the score separates the two.
        let mut marks: Vec<(f64, String)> = Vec::new();
        for (rel, n, scores, wins, _) in &per_file {
            let probation = ((0.15 * *n as f64).floor() as usize).min(750);
            let short = rel.split('/').nth(1).unwrap_or(rel);
            for (k, &(l, r)) in wins.iter().enumerate() {
                let (i, m) =
                    (l..=r)
                        .map(|i| (i, scores[i]))
                        .fold((l, -1.0), |b, x| if x.1 > b.1 { x } else { b });
                marks.push((m, format!("WIN  {short} #{k} at {} of [{l},{r}]", i)));
            }
            let inside = |i: usize| wins.iter().any(|&(l, r)| l <= i && i <= r + (r - l) / 4);
            let mut i = probation;
            while i < *n {
                let end = (i + 100).min(*n);
                let (j, m) = (i..end)
                    .filter(|&j| !inside(j))
                    .map(|j| (j, scores[j]))
                    .fold((i, -1.0), |b, x| if x.1 > b.1 { x } else { b });
                if m > 0.15 {
                    marks.push((m, format!("  fp {short} at {j}")));
                }
                i = end;
            }
        }
        marks.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap());
        for (m, what) in &marks {
            println!("{m:.3} {what}");
        }
    }
    if let (Some(f), Some(o)) = (&fit_on, &score_on) {
        // Leave-folders-out: each profile's threshold is chosen on the
        // `--fit-on` folders alone, then the `--score-on` folders are
        // scored at it (normalised over their own windows).
        let mut line = String::new();
        for p in &PROFILES {
            let (mut fit_pts, mut sc_pts, mut sc_w) = (Vec::new(), Vec::new(), 0);
            for (rel, n, scores, wins, wid0) in &per_file {
                let d = folder_of(rel);
                if f.contains(&d) {
                    fit_pts.extend(file_points(*n, scores, wins, p, *wid0));
                }
                if o.contains(&d) {
                    sc_pts.extend(file_points(*n, scores, wins, p, *wid0));
                    sc_w += wins.len();
                }
            }
            // Window ids are global; the windows outside the fit folders
            // only add a constant to best_threshold's objective.
            let (_, thr) = best_threshold(fit_pts, n_windows, p);
            let raw = score_at(&sc_pts, sc_w, p, thr);
            let (null, perfect) = (-p.fn_ * sc_w as f64, p.tp * sc_w as f64);
            let score = if sc_w > 0 {
                100.0 * (raw - null) / (perfect - null)
            } else {
                raw
            };
            line.push_str(&format!("{} {:.2} (thr {:.4})  ", p.name, score, thr));
        }
        println!("lofo {line}");
        return;
    }
    let mut line = String::new();
    for p in &PROFILES {
        let mut pts = Vec::new();
        for (_, n, scores, wins, wid0) in &per_file {
            pts.extend(file_points(*n, scores, wins, p, *wid0));
        }
        let (raw, thr) = best_threshold(pts, n_windows, p);
        let null = -p.fn_ * n_windows as f64;
        let perfect = p.tp * n_windows as f64;
        let score = 100.0 * (raw - null) / (perfect - null);
        line.push_str(&format!("{} {:.2} (thr {:.4})  ", p.name, score, thr));
        if show_files && p.name == "standard" {
            for (rel, n, scores, wins, wid0) in &per_file {
                let pts = file_points(*n, scores, wins, p, *wid0);
                let fps = pts.iter().filter(|q| q.2.is_none() && q.0 >= thr).count();
                let fp_cost: f64 = pts
                    .iter()
                    .filter(|q| q.2.is_none() && q.0 >= thr)
                    .map(|q| q.1)
                    .sum();
                let mut got = vec![None; wins.len()];
                for q in pts.iter().filter(|q| q.0 >= thr) {
                    if let Some(k) = q.2 {
                        let g: &mut Option<f64> = &mut got[k - wid0];
                        *g = Some(g.map_or(q.1, |v: f64| v.max(q.1)));
                    }
                }
                let hits: Vec<String> = got
                    .iter()
                    .map(|g| g.map_or("miss".into(), |v| format!("{v:.2}")))
                    .collect();
                println!(
                    "{rel:60} fp {fps:3} ({fp_cost:6.2})  windows [{}]",
                    hits.join(" ")
                );
            }
        }
    }
    println!("{line}");
    println!(
        "points {n_points}, {:.0} ns/point",
        took.as_nanos() as f64 / n_points as f64
    );
}

#[path = "shared/set.rs"]
mod set;
use set::set;

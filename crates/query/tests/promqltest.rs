//! Runs Prometheus's own PromQL conformance scripts (`promqltest`, see
//! `DSL.md` next to them) against our engine.
//!
//! Cases that do not pass yet are listed, with a reason, in
//! `promqltest-known-failures.txt`. The test fails when an unlisted case
//! fails, and also when a listed case passes, so the list only shrinks.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use sonde_model::{
    is_stale_nan, stale_nan, FloatHistogram, HistogramSample, Labels, Matcher, Sample, Series,
};
use sonde_query::{Engine, EngineOptions, Queryable, Value};

#[path = "promqltest_support/lex.rs"]
mod lex;
#[path = "promqltest_support/nh.rs"]
mod nh;
use lex::{parse_duration, parse_metric, parse_number, parse_quoted, value_items};
use nh::HistPoint;

/// Every `.test` file of the conformance set, by name.
fn test_files(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".test").map(str::to_string)
        })
        .collect();
    files.sort();
    files
}

/// Float comparison as in Prometheus's promqltest (`almostEqual`).
const EPSILON: f64 = 1e-6;
const MIN_NORMAL: f64 = 2.2250738585072014e-308;

#[derive(Default)]
struct MemStorage {
    series: Vec<Series>,
    index: HashMap<Labels, usize>,
}

impl MemStorage {
    fn add(&mut self, labels: Labels, samples: Vec<Sample>, histograms: Vec<HistogramSample>) {
        let i = match self.index.get(&labels) {
            Some(&i) => i,
            None => {
                self.series.push(Series {
                    labels: labels.clone(),
                    samples: Vec::new(),
                    histograms: Vec::new(),
                });
                self.index.insert(labels, self.series.len() - 1);
                self.series.len() - 1
            }
        };
        let s = &mut self.series[i];
        // A later sample for the same timestamp replaces the earlier one,
        // whether float or histogram.
        s.histograms.retain(|h| !samples.iter().any(|p| p.t == h.t));
        s.samples.retain(|p| !histograms.iter().any(|h| h.t == p.t));
        s.samples.extend(samples);
        s.samples.reverse();
        s.samples.sort_by_key(|p| p.t);
        s.samples.dedup_by_key(|p| p.t);
        s.histograms.extend(histograms);
        s.histograms.reverse();
        s.histograms.sort_by_key(|p| p.t);
        s.histograms.dedup_by_key(|p| p.t);
    }
}

impl Queryable for MemStorage {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, String> {
        Ok(self
            .series
            .iter()
            .filter(|s| matchers.iter().all(|m| m.matches(&s.labels)))
            .filter_map(|s| {
                let samples: Vec<Sample> = s
                    .samples
                    .iter()
                    .copied()
                    .filter(|p| p.t >= mint && p.t <= maxt)
                    .collect();
                let histograms: Vec<HistogramSample> = s
                    .histograms
                    .iter()
                    .filter(|p| p.t >= mint && p.t <= maxt)
                    .cloned()
                    .collect();
                (!samples.is_empty() || !histograms.is_empty()).then(|| Series {
                    labels: s.labels.clone(),
                    samples,
                    histograms,
                })
            })
            .collect())
    }
}

/// One point of an expected or loaded series.
#[derive(Debug, Clone, PartialEq)]
enum Point {
    Value(f64),
    Missing,
    Histogram(Box<HistPoint>),
}

#[derive(Debug)]
struct SeriesDesc {
    labels: Labels,
    points: Vec<Point>,
}

fn parse_points(s: &str) -> Option<Vec<Point>> {
    let mut out = Vec::new();
    for item in value_items(s) {
        if item.contains("{{") {
            let points = nh::parse_item(&item)?;
            out.extend(points.into_iter().map(|p| Point::Histogram(Box::new(p))));
            continue;
        }
        if item == "_" {
            out.push(Point::Missing);
            continue;
        }
        if let Some(n) = item.strip_prefix("_x") {
            out.extend(std::iter::repeat_n(Point::Missing, n.parse().ok()?));
            continue;
        }
        // `a+bxn`, `a-bxn`, `axn`, or a plain value.
        let (base, times) = match item.rfind('x') {
            Some(i) if item[i + 1..].chars().all(|c| c.is_ascii_digit()) && i + 1 < item.len() => {
                (&item[..i], Some(item[i + 1..].parse::<usize>().ok()?))
            }
            _ => (item.as_str(), None),
        };
        let Some(times) = times else {
            out.push(Point::Value(parse_number(base)?));
            continue;
        };
        let bytes = base.as_bytes();
        let mut split = None;
        for i in 1..bytes.len() {
            if (bytes[i] == b'+' || bytes[i] == b'-') && !matches!(bytes[i - 1], b'e' | b'E') {
                split = Some(i);
                break;
            }
        }
        let (a, b) = match split {
            Some(i) => (parse_number(&base[..i])?, parse_number(&base[i..])?),
            None => (parse_number(base)?, 0.0),
        };
        if a.to_bits() == stale_nan().to_bits() {
            out.extend(std::iter::repeat_n(Point::Value(a), times + 1));
            continue;
        }
        let mut v = a;
        for _ in 0..=times {
            out.push(Point::Value(v));
            v += b;
        }
    }
    Some(out)
}

fn parse_series_desc(line: &str) -> Option<SeriesDesc> {
    let (labels, rest) = parse_metric(line)?;
    let points = parse_points(rest)?;
    Some(SeriesDesc { labels, points })
}

#[derive(Debug, Default)]
struct Expect {
    fail: bool,
    fail_msg: Option<String>,
    fail_regex: Option<String>,
    ordered: bool,
    string: Option<String>,
    /// An instant query returning a range vector: (start, end, step).
    range_vector: Option<(i64, i64, i64)>,
    /// A bare number: the query returns a scalar.
    scalar: Option<f64>,
    series: Vec<SeriesDesc>,
}

#[derive(Debug)]
enum Kind {
    Instant(i64),
    Range(i64, i64, i64),
}

#[derive(Debug)]
struct Case {
    id: String,
    query: String,
    kind: Kind,
    expect: Expect,
}

enum Outcome {
    Pass,
    Fail(String),
}

fn unquote_expect(s: &str) -> String {
    let s = s.trim();
    match parse_quoted(s) {
        Some((v, rest)) if rest.trim().is_empty() => v,
        _ => s.to_string(),
    }
}

fn parse_eval_header(line: &str) -> Option<(Kind, String, Expect)> {
    let mut expect = Expect::default();
    let (cmd, rest) = line.split_once(char::is_whitespace)?;
    match cmd {
        "eval" => {}
        "eval_fail" => expect.fail = true,
        "eval_ordered" => expect.ordered = true,
        "eval_warn" | "eval_info" => {}
        _ => return None,
    }
    let rest = rest.trim_start();
    if let Some(r) = rest.strip_prefix("instant") {
        let r = r.trim_start().strip_prefix("at")?.trim_start();
        let (t, q) = r.split_once(char::is_whitespace)?;
        Some((
            Kind::Instant(parse_duration(t)?),
            q.trim().to_string(),
            expect,
        ))
    } else if let Some(r) = rest.strip_prefix("range") {
        let r = r.trim_start().strip_prefix("from")?.trim_start();
        let (start, r) = r.split_once(char::is_whitespace)?;
        let r = r.trim_start().strip_prefix("to")?.trim_start();
        let (end, r) = r.split_once(char::is_whitespace)?;
        let r = r.trim_start().strip_prefix("step")?.trim_start();
        let (step, q) = r.split_once(char::is_whitespace)?;
        Some((
            Kind::Range(
                parse_duration(start)?,
                parse_duration(end)?,
                parse_duration(step)?,
            ),
            q.trim().to_string(),
            expect,
        ))
    } else {
        None
    }
}

fn parse_expect_line(line: &str, e: &mut Expect) -> Result<(), String> {
    let body = line.trim();
    if let Some(r) = body.strip_prefix("expected_fail_message") {
        e.fail = true;
        e.fail_msg = Some(r.trim().to_string());
        return Ok(());
    }
    if let Some(r) = body.strip_prefix("expected_fail_regexp") {
        e.fail = true;
        e.fail_regex = Some(r.trim().to_string());
        return Ok(());
    }
    let Some(r) = body.strip_prefix("expect ") else {
        return Err(format!("not an expect line: {line}"));
    };
    let r = r.trim();
    if let Some(f) = r.strip_prefix("fail") {
        e.fail = true;
        let f = f.trim();
        if let Some(m) = f.strip_prefix("msg:") {
            e.fail_msg = Some(unquote_expect(m));
        } else if let Some(m) = f.strip_prefix("regex:") {
            e.fail_regex = Some(unquote_expect(m));
        }
    } else if r == "ordered" {
        e.ordered = true;
    } else if let Some(s) = r.strip_prefix("string") {
        e.string = Some(unquote_expect(s));
    } else if let Some(rv) = r.strip_prefix("range vector") {
        let parts: Vec<&str> = rv.split_whitespace().collect();
        match parts.as_slice() {
            ["from", a, "to", b, "step", c] => {
                let (Some(a), Some(b), Some(c)) =
                    (parse_duration(a), parse_duration(b), parse_duration(c))
                else {
                    return Err(format!("bad range vector line: {line}"));
                };
                e.range_vector = Some((a, b, c));
            }
            _ => return Err(format!("bad range vector line: {line}")),
        }
    }
    // warn/info/no_warn/no_info: we produce no annotations, so ignore them.
    Ok(())
}

/// Parses a test script into load/clear actions and eval cases.
enum Cmd {
    /// Interval, series, and whether classic histograms are also loaded
    /// as native histograms with custom buckets (`load_with_nhcb`).
    Load(i64, Vec<SeriesDesc>, bool),
    Clear,
    Eval(Box<Case>),
    /// A case we could not even parse; reported as a failure.
    Broken(String, String),
}

fn is_command(line: &str) -> bool {
    let l = line.trim_start();
    line.starts_with(|c: char| !c.is_whitespace())
        && (l.starts_with("load") || l.starts_with("clear") || l.starts_with("eval"))
}

fn parse_script(file: &str, text: &str) -> Vec<Cmd> {
    let lines: Vec<&str> = text.lines().collect();
    let mut cmds = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim();
        let lineno = i + 1;
        i += 1;
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        // Gather the command's body: following lines up to a blank line or
        // the next command.
        let mut body = Vec::new();
        while i < lines.len() {
            let l = lines[i];
            if l.trim().is_empty() || is_command(l) {
                break;
            }
            if !l.trim().starts_with('#') {
                body.push(l);
            }
            i += 1;
        }
        let id = format!("{file}:{lineno}");
        if trimmed == "clear" {
            cmds.push(Cmd::Clear);
        } else if trimmed.starts_with("load") {
            let mut parts = trimmed.split_whitespace();
            let _ = parts.next();
            let interval = parts.next().and_then(parse_duration).unwrap_or(60_000);
            let series = body.iter().filter_map(|l| parse_series_desc(l)).collect();
            cmds.push(Cmd::Load(
                interval,
                series,
                trimmed.starts_with("load_with_nhcb"),
            ));
        } else if trimmed.starts_with("eval") {
            let Some((kind, query, mut expect)) = parse_eval_header(trimmed) else {
                cmds.push(Cmd::Broken(
                    id,
                    format!("cannot parse eval line: {trimmed}"),
                ));
                continue;
            };
            let mut broken = None;
            for l in &body {
                let t = l.trim();
                if t.starts_with("expect") {
                    if let Err(e) = parse_expect_line(t, &mut expect) {
                        broken = Some(e);
                    }
                } else if let Some(v) = parse_number(t).filter(|_| !t.contains(char::is_whitespace))
                {
                    expect.scalar = Some(v);
                } else if let Some(sd) = parse_series_desc(t) {
                    expect.series.push(sd);
                } else {
                    broken = Some(format!("cannot parse result line: {t}"));
                }
            }
            match broken {
                Some(b) => cmds.push(Cmd::Broken(id, b)),
                None => cmds.push(Cmd::Eval(Box::new(Case {
                    id,
                    query,
                    kind,
                    expect,
                }))),
            }
        } else {
            cmds.push(Cmd::Broken(id, format!("unknown command: {trimmed}")));
        }
    }
    cmds
}

fn almost_equal(a: f64, b: f64) -> bool {
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < MIN_NORMAL {
        return diff < EPSILON * MIN_NORMAL;
    }
    diff / abs_sum.min(f64::MAX) < EPSILON
}

fn fmt_hists(p: &[HistogramSample]) -> String {
    p.iter()
        .map(|s| format!("{}@{}", nh::describe(&s.h), s.t))
        .collect::<Vec<_>>()
        .join(" ")
}

fn fmt_points(p: &[Sample]) -> String {
    p.iter()
        .map(|s| format!("{}@{}", sonde_query::format_value(s.v), s.t))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Compares expected series (points on a time grid) with actual ones.
fn compare_matrix(
    expected: &[SeriesDesc],
    got: &[Series],
    start: i64,
    step: i64,
) -> Result<(), String> {
    let got_map: HashMap<&Labels, &Series> = got.iter().map(|s| (&s.labels, s)).collect();
    let mut matched = 0;
    for exp in expected {
        let want: Vec<Sample> = exp
            .points
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match p {
                Point::Value(v) => Some(Sample {
                    t: start + step * i as i64,
                    v: *v,
                }),
                _ => None,
            })
            .collect();
        let want_h: Vec<(i64, &HistPoint)> = exp
            .points
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match p {
                Point::Histogram(h) => Some((start + step * i as i64, h.as_ref())),
                _ => None,
            })
            .collect();
        let Some(g) = got_map.get(&exp.labels) else {
            if want.is_empty() && want_h.is_empty() {
                continue;
            }
            return Err(format!("missing series {}", exp.labels));
        };
        matched += 1;
        let hist_ok = g.histograms.len() == want_h.len()
            && g.histograms
                .iter()
                .zip(&want_h)
                .all(|(a, b)| a.t == b.0 && nh::histograms_match(b.1, &a.h, almost_equal));
        if !hist_ok {
            return Err(format!(
                "series {}: expected histograms [{}], got [{}]",
                exp.labels,
                want_h
                    .iter()
                    .map(|(t, h)| format!("{}@{t}", nh::describe(&h.h)))
                    .collect::<Vec<_>>()
                    .join(" "),
                fmt_hists(&g.histograms)
            ));
        }
        let ok = g.samples.len() == want.len()
            && g.samples
                .iter()
                .zip(&want)
                .all(|(a, b)| a.t == b.t && almost_equal(b.v, a.v));
        if !ok {
            return Err(format!(
                "series {}: expected [{}], got [{}]",
                exp.labels,
                fmt_points(&want),
                fmt_points(&g.samples)
            ));
        }
    }
    if matched != got.len() {
        let extra: Vec<String> = got
            .iter()
            .filter(|s| !expected.iter().any(|e| e.labels == s.labels))
            .map(|s| {
                format!(
                    "{} [{}] [{}]",
                    s.labels,
                    fmt_points(&s.samples),
                    fmt_hists(&s.histograms)
                )
            })
            .collect();
        return Err(format!("unexpected series: {}", extra.join("; ")));
    }
    Ok(())
}

fn run_case(engine: &Engine, storage: &MemStorage, case: &Case) -> Outcome {
    let result = match case.kind {
        Kind::Instant(t) => engine.instant(storage, &case.query, t),
        Kind::Range(s, e, step) => engine.range(storage, &case.query, s, e, step),
    };
    let exp = &case.expect;
    let got = match result {
        Err(err) => {
            if !exp.fail {
                return Outcome::Fail(format!("unexpected error: {err}"));
            }
            let msg = err.to_string();
            if let Some(m) = &exp.fail_msg {
                if &msg != m {
                    return Outcome::Fail(format!("expected error {m:?}, got {msg:?}"));
                }
            }
            if let Some(r) = &exp.fail_regex {
                match regex::Regex::new(r) {
                    Ok(re) if re.is_match(&msg) => {}
                    _ => {
                        return Outcome::Fail(format!("expected error matching {r:?}, got {msg:?}"))
                    }
                }
            }
            return Outcome::Pass;
        }
        Ok(v) => v,
    };
    if exp.fail {
        return Outcome::Fail(format!("expected an error, got {}", describe(&got)));
    }
    let res = match (&case.kind, &got) {
        (_, Value::String { v, .. }) => match &exp.string {
            Some(s) if s == v => Ok(()),
            _ => Err(format!("expected {:?}, got string {v:?}", exp.string)),
        },
        (_, Value::Scalar { v, .. }) => match exp.scalar {
            Some(e) if almost_equal(e, *v) => Ok(()),
            _ => Err(format!("expected scalar {:?}, got scalar {v}", exp.scalar)),
        },
        (Kind::Instant(t), Value::Vector(vec)) => compare_vector(exp, vec, *t),
        (Kind::Instant(_), Value::Matrix(m)) => match exp.range_vector {
            Some((s, _, step)) => compare_matrix(&exp.series, m, s, step),
            None if exp.series.is_empty() && m.is_empty() => Ok(()),
            None => Err("got a range vector but no `expect range vector`".into()),
        },
        (Kind::Range(s, _, step), Value::Matrix(m)) => {
            if exp.scalar.is_some() {
                Err("expected a scalar".into())
            } else {
                compare_matrix(&exp.series, m, *s, *step)
            }
        }
        (Kind::Range(..), other) => Err(format!("range query returned {}", describe(other))),
    };
    match res {
        Ok(()) => Outcome::Pass,
        Err(e) => Outcome::Fail(e),
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Scalar { v, .. } => format!("scalar {v}"),
        Value::String { v, .. } => format!("string {v:?}"),
        Value::Vector(vec) => format!(
            "vector [{}]",
            vec.iter()
                .map(|s| format!("{} {}", s.labels, describe_sample(s)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Matrix(m) => format!(
            "matrix [{}]",
            m.iter()
                .map(|s| {
                    format!(
                        "{} [{}] [{}]",
                        s.labels,
                        fmt_points(&s.samples),
                        fmt_hists(&s.histograms)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn describe_sample(s: &sonde_query::InstantSample) -> String {
    match &s.h {
        Some(h) => nh::describe(h),
        None => sonde_query::format_value(s.v),
    }
}

fn compare_vector(exp: &Expect, vec: &[sonde_query::InstantSample], t: i64) -> Result<(), String> {
    if exp.scalar.is_some() {
        return Err(format!(
            "expected a scalar, got {}",
            describe(&Value::Vector(vec.to_vec()))
        ));
    }
    let got = || describe(&Value::Vector(vec.to_vec()));
    if exp.series.len() != vec.len() {
        return Err(format!(
            "expected {} samples, got {}",
            exp.series.len(),
            got()
        ));
    }
    for (i, e) in exp.series.iter().enumerate() {
        let (want, want_h) = match e.points.as_slice() {
            [Point::Value(v)] => (*v, None),
            [Point::Histogram(h)] => (0.0, Some(h.as_ref())),
            _ => return Err(format!("bad expected sample for {}", e.labels)),
        };
        let found = if exp.ordered {
            vec.get(i).filter(|s| s.labels == e.labels)
        } else {
            vec.iter().find(|s| s.labels == e.labels)
        };
        let matches = |s: &sonde_query::InstantSample| match (want_h, &s.h) {
            (None, None) => almost_equal(want, s.v),
            (Some(w), Some(h)) => nh::histograms_match(w, h, almost_equal),
            _ => false,
        };
        match found {
            Some(s) if matches(s) && s.t == t => {}
            Some(s) => {
                return Err(format!(
                    "{}: expected {}, got {} at {}",
                    e.labels,
                    want_h.map_or_else(|| sonde_query::format_value(want), |h| nh::describe(&h.h)),
                    describe_sample(s),
                    s.t
                ))
            }
            None => {
                return Err(format!(
                    "missing (or out of order) {}; got {}",
                    e.labels,
                    got()
                ))
            }
        }
    }
    Ok(())
}

fn shared_dir() -> Option<PathBuf> {
    let dir = match std::env::var("SONDE_SHARED") {
        Ok(s) => PathBuf::from(s),
        Err(_) => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    };
    let dir = dir.join("data/promqltest");
    dir.is_dir().then_some(dir)
}

fn load_known_failures() -> BTreeMap<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/promqltest-known-failures.txt");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once(char::is_whitespace) {
            Some((id, reason)) => (id.to_string(), reason.trim().to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect()
}

#[test]
fn promql_conformance() {
    let Some(dir) = shared_dir() else {
        panic!(
            "shared/data/promqltest not found: the tests need the shared folder beside the \
             work tree, or SONDE_SHARED set to it"
        );
    };
    let known = load_known_failures();
    let engine = Engine::new(EngineOptions::default());
    let mut unexpected_failures = Vec::new();
    let mut unexpected_passes = Vec::new();
    let mut seen_ids = HashSet::new();
    let mut table = Vec::new();
    let files = test_files(&dir);
    assert!(
        files.len() >= 15,
        "only {} conformance files in {}",
        files.len(),
        dir.display()
    );
    for file in &files {
        let file = file.as_str();
        let path = dir.join(format!("{file}.test"));
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => panic!("cannot read {}: {e}", path.display()),
        };
        let mut storage = MemStorage::default();
        let (mut passed, mut total) = (0, 0);
        for cmd in parse_script(file, &text) {
            match cmd {
                Cmd::Clear => storage = MemStorage::default(),
                Cmd::Load(interval, series, with_nhcb) => {
                    let mut classic = Vec::new();
                    for s in series {
                        let samples: Vec<Sample> = s
                            .points
                            .iter()
                            .enumerate()
                            .filter_map(|(i, p)| match p {
                                Point::Value(v) => Some(Sample {
                                    t: interval * i as i64,
                                    v: *v,
                                }),
                                _ => None,
                            })
                            .collect();
                        let mut histograms: Vec<HistogramSample> = s
                            .points
                            .iter()
                            .enumerate()
                            .filter_map(|(i, p)| match p {
                                Point::Histogram(h) => Some(HistogramSample {
                                    t: interval * i as i64,
                                    h: h.h.clone(),
                                }),
                                _ => None,
                            })
                            .collect();
                        nh::storage_hints(&samples, &mut histograms);
                        if with_nhcb {
                            let points = samples
                                .iter()
                                .filter(|p| !is_stale_nan(p.v))
                                .map(|p| (p.t, p.v))
                                .collect();
                            classic.push((s.labels.clone(), points));
                        }
                        if !samples.is_empty() || !histograms.is_empty() {
                            storage.add(s.labels, samples, histograms);
                        }
                    }
                    for (labels, points) in nh::convert_nhcb(&classic) {
                        let mut hs: Vec<HistogramSample> = points
                            .into_iter()
                            .map(|(t, h): (i64, FloatHistogram)| HistogramSample { t, h })
                            .collect();
                        nh::storage_hints(&[], &mut hs);
                        storage.add(labels, Vec::new(), hs);
                    }
                }
                Cmd::Broken(id, why) => {
                    total += 1;
                    seen_ids.insert(id.clone());
                    if !known.contains_key(&id) {
                        unexpected_failures.push(format!("{id}: {why}"));
                    }
                }
                Cmd::Eval(case) => {
                    total += 1;
                    seen_ids.insert(case.id.clone());
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        run_case(&engine, &storage, &case)
                    }))
                    .unwrap_or_else(|_| Outcome::Fail("PANIC during evaluation".into()));
                    match outcome {
                        Outcome::Pass => {
                            passed += 1;
                            if known.contains_key(&case.id) {
                                unexpected_passes.push(case.id.clone());
                            }
                        }
                        Outcome::Fail(why) => {
                            if !known.contains_key(&case.id) {
                                unexpected_failures
                                    .push(format!("{}: {}\n    {}", case.id, case.query, why));
                            }
                        }
                    }
                }
            }
        }
        table.push((file.to_string(), passed, total));
    }
    eprintln!("\n{:<22} {:>7} {:>7}", "file", "passed", "total");
    let (mut p, mut t) = (0, 0);
    for (f, passed, total) in &table {
        eprintln!("{f:<22} {passed:>7} {total:>7}");
        p += passed;
        t += total;
    }
    eprintln!("{:<22} {p:>7} {t:>7}\n", "TOTAL");
    let stale: Vec<&String> = known.keys().filter(|k| !seen_ids.contains(*k)).collect();
    if !stale.is_empty() {
        eprintln!("known failures that name no case: {stale:?}");
    }
    if !unexpected_failures.is_empty() {
        eprintln!("UNEXPECTED FAILURES ({}):", unexpected_failures.len());
        for f in &unexpected_failures {
            eprintln!("  {f}");
        }
    }
    if !unexpected_passes.is_empty() {
        eprintln!(
            "cases listed as known failures now pass; remove them from the list: {unexpected_passes:?}"
        );
    }
    assert!(
        unexpected_failures.is_empty() && unexpected_passes.is_empty() && stale.is_empty(),
        "PromQL conformance has {} unexpected failures and {} unexpected passes",
        unexpected_failures.len(),
        unexpected_passes.len()
    );
}

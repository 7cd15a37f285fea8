use sonde_model::{is_valid_label_name, is_valid_metric_name};

use super::*;

const NOW: i64 = 1_700_000_000_000;

fn opts() -> InfluxOptions {
    InfluxOptions::default()
}

fn parse(body: &str) -> MetricsBatch {
    parse_lines(body.as_bytes(), &opts(), NOW).unwrap()
}

/// The batch as `labels -> [(t, v)]`, sorted, for one-line assertions.
pub(crate) fn dump(batch: &MetricsBatch) -> Vec<(String, Vec<(i64, f64)>)> {
    let mut out: Vec<_> = batch
        .series
        .iter()
        .map(|s| {
            (
                s.labels.to_string(),
                s.samples.iter().map(|x| (x.t, x.v)).collect::<Vec<_>>(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn check(body: &str, expected: &[(&str, &[(i64, f64)])]) {
    let batch = parse(body);
    assert_eq!(batch.rejected_points, 0, "{:?}", batch.first_rejection);
    let expected: Vec<(String, Vec<(i64, f64)>)> = expected
        .iter()
        .map(|(l, s)| (l.to_string(), s.to_vec()))
        .collect();
    assert_eq!(dump(&batch), expected, "{body}");
}

/// The reason a one-bad-line body (with one good line after it) gives.
fn rejection(line: &str) -> String {
    let body = format!("{line}\nok v=1");
    let batch = parse_lines(body.as_bytes(), &opts(), NOW).unwrap();
    assert_eq!(batch.rejected_points, 1, "{line:?} should be rejected");
    assert_eq!(batch.num_samples(), 1, "{line:?}");
    batch.first_rejection.unwrap()
}

#[test]
fn fields_become_series_named_measurement_field() {
    check(
        "cpu,host=a,region=eu usage_idle=93.5,usage_user=2i 1700000000123456789",
        &[
            (
                "cpu_usage_idle{host=\"a\", region=\"eu\"}",
                &[(1_700_000_000_123, 93.5)],
            ),
            (
                "cpu_usage_user{host=\"a\", region=\"eu\"}",
                &[(1_700_000_000_123, 2.0)],
            ),
        ],
    );
}

#[test]
fn a_line_without_timestamp_gets_now() {
    check("mem used=1.5e3", &[("mem_used", &[(NOW, 1500.0)])]);
    check("mem used=1   ", &[("mem_used", &[(NOW, 1.0)])]);
}

#[test]
fn precision_sets_the_timestamp_unit() {
    let cases = [
        (
            Precision::Nanoseconds,
            1_700_000_000_999_999_999i64,
            1_700_000_000_999i64,
        ),
        (
            Precision::Microseconds,
            1_700_000_000_999_999,
            1_700_000_000_999,
        ),
        (
            Precision::Milliseconds,
            1_700_000_000_999,
            1_700_000_000_999,
        ),
        (Precision::Seconds, 1_700_000_000, 1_700_000_000_000),
        // Rounded toward the past, not toward zero.
        (Precision::Nanoseconds, -1, -1),
    ];
    for (precision, t, ms) in cases {
        let o = InfluxOptions {
            precision,
            ..opts()
        };
        let b = parse_lines(format!("m v=1 {t}").as_bytes(), &o, NOW).unwrap();
        assert_eq!(b.series[0].samples[0].t, ms, "{precision:?} {t}");
    }
    assert_eq!(Precision::parse("ns"), Some(Precision::Nanoseconds));
    assert_eq!(Precision::parse("u"), Some(Precision::Microseconds));
    assert_eq!(Precision::parse("ms"), Some(Precision::Milliseconds));
    assert_eq!(Precision::parse("s"), Some(Precision::Seconds));
    assert_eq!(Precision::parse("h"), None);
    assert_eq!(Precision::Seconds.to_ms(i64::MAX), None);
}

#[test]
fn value_types_become_floats() {
    check(
        "m a=-12i,b=18446744073709551615u,c=-1.5E-3,d=+4,e=.5,f=7. 0",
        &[
            ("m_a", &[(0, -12.0)]),
            ("m_b", &[(0, 18446744073709551615u64 as f64)]),
            ("m_c", &[(0, -0.0015)]),
            ("m_d", &[(0, 4.0)]),
            ("m_e", &[(0, 0.5)]),
            ("m_f", &[(0, 7.0)]),
        ],
    );
}

#[test]
fn booleans_become_one_and_zero() {
    for (text, v) in [
        ("t", 1.0),
        ("T", 1.0),
        ("true", 1.0),
        ("True", 1.0),
        ("TRUE", 1.0),
        ("f", 0.0),
        ("F", 0.0),
        ("false", 0.0),
        ("False", 0.0),
        ("FALSE", 0.0),
    ] {
        check(
            &format!("door open={text} 5000000"),
            &[("door_open", &[(5, v)])],
        );
    }
    assert!(rejection("door open=tRUE").contains("invalid value \"tRUE\""));
}

#[test]
fn string_fields_are_skipped_but_must_be_well_formed() {
    check(
        r#"log msg="a \"quoted\", b=c d\\",level=3i,note="",x="\n" 1000000"#,
        &[("log_level", &[(1, 3.0)])],
    );
    // A line of only strings is fine, and gives nothing.
    let b = parse(r#"log msg="hello""#);
    assert_eq!((b.series.len(), b.rejected_points), (0, 0));
    assert!(rejection(r#"log msg="never ends"#).contains("unterminated string"));
    assert!(rejection(r#"log msg="a"b"#).contains("after the closing quote"));
}

#[test]
fn escapes_are_undone_before_names_are_sanitised() {
    check(
        r"my\ meas\,ure,ho\=st=a\ b\,c\=d,path=C:\\dir,raw=C:\dir f\ 1\=x=2 0",
        &[(
            r#"my_meas_ure_f_1_x{ho_st="a b,c=d", path="C:\\dir", raw="C:\\dir"}"#,
            &[(0, 2.0)],
        )],
    );
    // An unescaped `=` in a tag value is taken as is.
    check("m,eq=a=b v=1 0", &[("m_v{eq=\"a=b\"}", &[(0, 1.0)])]);
}

#[test]
fn names_are_made_valid_like_otlp_names() {
    check(
        "disk.io,dev-name=sda read-bytes=1 0\n1m load=2 0\nkafka:x lag=3 0",
        &[
            ("_1m_load", &[(0, 2.0)]),
            ("disk_io_read_bytes{dev_name=\"sda\"}", &[(0, 1.0)]),
            ("kafka:x_lag", &[(0, 3.0)]),
        ],
    );
    assert!(rejection("m,__name__=x v=1").contains("reserved"));
    assert!(rejection("é ü=1").contains("make no metric name"));
}

#[test]
fn comments_blank_lines_crlf_and_indentation_are_skipped() {
    check(
        "# a comment\r\n\r\n   \n\t# indented comment\n  m v=1 0\r\nm v=2 1000000\r\n",
        &[("m_v", &[(0, 1.0), (1, 2.0)])],
    );
    let b = parse("# only comments\n\n");
    assert_eq!(b, MetricsBatch::default());
    assert_eq!(parse(""), MetricsBatch::default());
}

#[test]
fn samples_of_one_series_are_gathered_in_time_order() {
    let b = parse("m,a=1 v=3 3000000\nm,a=1 v=1 1000000\nm,a=2 v=9 0\nm,a=1 v=2 2000000");
    assert_eq!(b.series.len(), 2);
    let d = dump(&b);
    assert_eq!(d[0].1, vec![(1, 1.0), (2, 2.0), (3, 3.0)]);
}

#[test]
fn repeated_keys_keep_the_last() {
    check("m,t=a,t=b v=1,v=2 0", &[("m_v{t=\"b\"}", &[(0, 2.0)])]);
}

#[test]
fn extra_labels_win_over_tags_and_are_sanitised() {
    let o = InfluxOptions {
        extra_labels: vec![
            ("device".into(), "from-topic".into()),
            ("mqtt.topic".into(), "a/b".into()),
            ("__name__".into(), "ignored".into()),
        ],
        ..opts()
    };
    let b = parse_lines(b"m,device=from-payload,x=1 v=1 0", &o, NOW).unwrap();
    assert_eq!(
        b.series[0].labels.to_string(),
        "m_v{device=\"from-topic\", mqtt_topic=\"a/b\", x=\"1\"}"
    );
}

#[test]
fn bad_lines_are_counted_with_their_number_and_the_rest_kept() {
    let body = "m v=1 0\nbad\n# comment\nm v=oops 0\nm v=2 1000000";
    let b = parse_lines(body.as_bytes(), &opts(), NOW).unwrap();
    assert_eq!(b.rejected_points, 2);
    assert_eq!(
        b.first_rejection.as_deref(),
        Some("line 2: missing field set")
    );
    assert_eq!(
        dump(&b),
        vec![("m_v".to_string(), vec![(0, 1.0), (1, 2.0)])]
    );
}

#[test]
fn malformed_lines_say_why() {
    let cases = [
        (",t=1 v=1", "missing measurement"),
        ("m", "missing field set"),
        ("m,t v=1", "expected key=value"),
        ("m,=x v=1", "expected key=value"),
        ("m,t= v=1", "empty value"),
        ("m,t=a", "missing field set"),
        ("m ", "missing field key"),
        ("m v", "has no value"),
        ("m v=", "empty value"),
        ("m =1", "missing field key"),
        ("m v=1,", "missing field key"),
        ("m v=1 12x", "invalid timestamp \"12x\""),
        ("m v=1 1.5", "invalid timestamp"),
        ("m v=1 1 2", "unexpected text \"2\""),
        ("m v=1 99999999999999999999", "invalid timestamp"),
        ("m v=inf", "invalid value"),
        ("m v=NaN", "invalid value"),
        ("m v=-Infinity", "invalid value"),
        ("m v=1e400", "out of range"),
        ("m v=1.2.3", "invalid value"),
        ("m v=12a", "invalid value"),
        ("m v=-1u", "invalid value"),
        ("m v=1.5i", "invalid value"),
        ("m v=9223372036854775808i", "invalid value"),
        ("m v=0x10", "invalid value"),
    ];
    for (line, why) in cases {
        let r = rejection(line);
        assert!(r.starts_with("line 1: "), "{line:?}: {r}");
        assert!(r.contains(why), "{line:?}: {r:?} should say {why:?}");
    }
    let o = InfluxOptions {
        precision: Precision::Seconds,
        ..opts()
    };
    let b = parse_lines(b"m v=1 9223372036854775807\nm v=1", &o, NOW).unwrap();
    assert!(b.first_rejection.unwrap().contains("out of range"));
}

#[test]
fn invalid_utf8_rejects_only_its_line() {
    let b = parse_lines(b"m,t=\xff v=1 0\nm v=2 0", &opts(), NOW).unwrap();
    assert_eq!(b.rejected_points, 1);
    assert_eq!(
        b.first_rejection.as_deref(),
        Some("line 1: not valid UTF-8")
    );
    assert_eq!(b.num_samples(), 1);
}

#[test]
fn a_body_without_one_valid_line_is_an_error() {
    let e = parse_lines(b"garbage\n\n{\"json\": 1}", &opts(), NOW).unwrap_err();
    assert_eq!(
        e,
        Error::LineProtocol("no valid line among 2; first error: line 1: missing field set".into())
    );
}

/// xorshift64*: deterministic, dependency-free randomness for fuzz tests.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub(crate) fn bytes(&mut self, max_len: usize, alphabet: &[u8]) -> Vec<u8> {
        let len = self.below(max_len + 1);
        (0..len)
            .map(|_| match alphabet {
                [] => self.next() as u8,
                a => a[self.below(a.len())],
            })
            .collect()
    }
}

fn assert_valid(batch: &MetricsBatch) {
    for s in &batch.series {
        assert!(is_valid_metric_name(s.labels.metric_name().unwrap()));
        for l in s.labels.iter() {
            assert!(is_valid_label_name(&l.name), "{}", l.name);
        }
        assert!(s.samples.iter().all(|x| x.v.is_finite()));
        assert!(s.samples.windows(2).all(|w| w[0].t <= w[1].t));
    }
}

#[test]
fn random_input_never_panics_and_yields_valid_series() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let alphabet = b"m,=\\\" \t\n#0123456789.eEiutfTF+-xyz\r\xc3\xa9";
    for round in 0..20_000 {
        let body = match round % 3 {
            0 => rng.bytes(64, &[]),
            1 => rng.bytes(64, alphabet),
            // A valid line with a few bytes changed.
            _ => {
                let mut b =
                    b"cpu,host=a\\ b,z=q usage=1.5,n=2i,s=\"x\\\"y\",ok=t 1700000000000000000"
                        .to_vec();
                for _ in 0..3 {
                    let i = rng.below(b.len());
                    b[i] = alphabet[rng.below(alphabet.len())];
                }
                b
            }
        };
        match parse_lines(&body, &opts(), NOW) {
            Ok(batch) => assert_valid(&batch),
            Err(Error::LineProtocol(_)) => {}
            Err(e) => panic!("unexpected error {e:?} for {body:?}"),
        }
    }
}

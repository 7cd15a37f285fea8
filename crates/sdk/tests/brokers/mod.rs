//! Real brokers for the integration tests: Mosquitto (the Debian package)
//! and tansu (a Kafka-compatible broker, `$SONDE_TANSU`), each on a free
//! loopback port, killed when dropped. A missing binary fails the test
//! (scripts/test installs both).

#![allow(dead_code)] // each test binary uses part of it

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use prost::Message;
use sonde_sdk::export::{Signal, Sink};
#[cfg(feature = "mqtt")]
use sonde_sdk::mqtt::rumqttc::{Client, Connection, Event, Incoming, MqttOptions, QoS};

pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";
pub const MOSQUITTO_PUB: &str = "/usr/bin/mosquitto_pub";

pub fn tansu_bin() -> PathBuf {
    std::env::var_os("SONDE_TANSU")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
            PathBuf::from(home).join(".cache/sonde-tools/tansu-0.6.0-libsql/bin/tansu")
        })
}

/// True when every binary is there; a missing one fails the test.
pub fn have(bins: &[&Path]) -> bool {
    let missing: Vec<_> = bins.iter().filter(|b| !b.is_file()).collect();
    assert!(
        missing.is_empty(),
        "broker binaries missing: {missing:?}; scripts/test installs them"
    );
    true
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Polls `ok` every 20 ms until it holds or `timeout` passes.
pub fn wait_for(timeout: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    ok()
}

/// A broker process, killed (and its files removed) when dropped.
pub struct Broker {
    child: Child,
    pub port: u16,
}

impl Broker {
    fn spawn(cmd: &mut Command, port: u16) -> Broker {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let broker = Broker { child, port };
        let up = wait_for(Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "the broker did not listen on {port}");
        broker
    }

    /// Stops it with SIGTERM, so that Mosquitto saves its sessions and
    /// retained messages, and waits for it to exit.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch folder of this test, removed by [`Scratch`]'s drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "sonde-sdk-{name}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Mosquitto on `port`, anonymous, keeping sessions and retained messages
/// in `dir` across restarts.
pub fn mosquitto(port: u16, dir: &Path) -> Broker {
    let conf = dir.join("mosquitto.conf");
    // Started as root, Mosquitto would become the `mosquitto` user, who
    // cannot write its database into our folder; as anyone else `user` is
    // ignored.
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\nuser root\npersistence true\npersistence_location {}/\n",
            dir.display()
        ),
    )
    .expect("write mosquitto.conf");
    Broker::spawn(Command::new(MOSQUITTO).arg("-c").arg(&conf), port)
}

/// tansu on `port`, in memory, with the given topics (one partition each).
pub fn tansu(port: u16, topics: &[&str]) -> Broker {
    let url = format!("tcp://127.0.0.1:{port}");
    let broker = Broker::spawn(
        Command::new(tansu_bin())
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"]),
        port,
    );
    for topic in topics {
        let ok = Command::new(tansu_bin())
            .args([
                "topic",
                "create",
                "--broker",
                &url,
                "--partitions",
                "1",
                topic,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot create topic {topic}");
    }
    broker
}

/// Publishes a retained message with `mosquitto_pub` (`None`: an empty
/// one, which clears the topic).
pub fn publish_retained(port: u16, topic: &str, payload: Option<&str>) {
    let mut cmd = Command::new(MOSQUITTO_PUB);
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "-r"])
        .args(["-t", topic]);
    match payload {
        Some(p) => cmd.args(["-m", p]),
        None => cmd.arg("-n"),
    };
    let ok = cmd.status().is_ok_and(|s| s.success());
    assert!(ok, "mosquitto_pub to {topic} failed");
}

/// An OTLP metrics request with one gauge point: what the tests send.
pub fn gauge_request(name: &str, value: f64) -> Vec<u8> {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "sonde-sdk-tests".into(),
                    ..Default::default()
                }),
                metrics: vec![Metric {
                    name: name.into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            value: Some(number_data_point::Value::AsDouble(value)),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// The gauge (name, value) of a request from [`gauge_request`].
pub fn gauge_of(body: &[u8]) -> (String, f64) {
    let req = ExportMetricsServiceRequest::decode(body).expect("an OTLP metrics request");
    let m = &req.resource_metrics[0].scope_metrics[0].metrics[0];
    let Some(metric::Data::Gauge(g)) = &m.data else {
        panic!("not a gauge: {m:?}");
    };
    let Some(number_data_point::Value::AsDouble(v)) = g.data_points[0].value else {
        panic!("not a double");
    };
    (m.name.clone(), v)
}

/// Sends gauges 1 and 2 to a sink whose broker is not up yet, and checks
/// that it keeps them queued while its connection attempts fail.
pub fn send_while_down(sink: &dyn Sink) {
    sink.send(Signal::Metrics, gauge_request("queued", 1.0));
    sink.send(Signal::Metrics, gauge_request("queued", 2.0));
    let failed = wait_for(Duration::from_secs(10), || {
        sink.stats().failed_attempts >= 2
    });
    assert!(failed, "no failed connection attempt: {:?}", sink.stats());
    let st = sink.stats();
    assert_eq!((st.sent_batches, st.queued_batches), (0, 2), "{st:?}");
    assert!(st.last_error.is_some());
}

/// Inflates a payload that starts with the gzip magic bytes.
pub fn gunzip_if_gzipped(payload: &[u8]) -> Vec<u8> {
    if payload.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(payload), &mut out)
            .expect("gunzip");
        out
    } else {
        payload.to_vec()
    }
}

/// A test subscriber (MQTT 3.1.1, QoS 1).
#[cfg(feature = "mqtt")]
pub struct Subscriber {
    client: Client,
    conn: Connection,
}

#[cfg(feature = "mqtt")]
impl Subscriber {
    /// Connects; `persistent`: a session the broker keeps while it is away.
    pub fn connect(port: u16, id: &str, persistent: bool) -> Subscriber {
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_clean_session(!persistent)
            .set_max_packet_size(1 << 24, 1 << 24);
        let (client, conn) = Client::new(o, 16);
        Subscriber { client, conn }
    }

    pub fn subscribe(&mut self, filter: &str) {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .expect("subscribe");
        let got = self.next_until(Duration::from_secs(10), |e| {
            matches!(e, Event::Incoming(Incoming::SubAck(_)))
        });
        assert!(got.is_some(), "no SUBACK for {filter}");
    }

    /// The next event that `want` accepts, within `timeout`.
    pub fn next_until(
        &mut self,
        timeout: Duration,
        want: impl Fn(&Event) -> bool,
    ) -> Option<Event> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            match self.conn.recv_timeout(left) {
                Ok(Ok(e)) if want(&e) => return Some(e),
                Ok(Ok(_)) => {}
                // Refused or broken: the next call reconnects.
                Ok(Err(_)) => std::thread::sleep(Duration::from_millis(50)),
                Err(_) => return None,
            }
        }
    }

    /// The next `n` messages (topic, payload), within `timeout`.
    pub fn receive(&mut self, n: usize, timeout: Duration) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        while out.len() < n {
            match self.next_until(timeout, |e| {
                matches!(e, Event::Incoming(Incoming::Publish(_)))
            }) {
                Some(Event::Incoming(Incoming::Publish(p))) => {
                    out.push((p.topic, p.payload.to_vec()))
                }
                _ => break,
            }
        }
        out
    }

    pub fn disconnect(mut self) {
        let _ = self.client.disconnect();
        let _ = self.next_until(Duration::from_secs(2), |_| false);
    }
}

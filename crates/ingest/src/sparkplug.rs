//! Sparkplug B 3.0 over MQTT
//! (<https://sparkplug.eclipse.org/specification/version/3.0/>): the
//! protobuf payloads of industrial edge nodes, on topics
//! `spBv1.0/{group}/{type}/{edge node}[/{device}]`.
//!
//! Sparkplug is stateful: a birth (NBIRTH, DBIRTH) names each metric and
//! may give it a numeric alias, and later data (NDATA, DDATA) may carry
//! only the alias and the value, the datatype being also known from the
//! birth alone. [`SparkplugDecoder`] keeps that table per edge node and
//! device, bounded by [`SparkplugOptions::max_entries`]; one decoder must
//! see all messages of a node, in order.
//!
//! What becomes of a message:
//! - births and data: each integer, float and boolean metric is a sample
//!   named after the metric as OTLP names are made valid
//!   (`Node Control/Rebirth` is `Node_Control_Rebirth`), labelled
//!   `sparkplug_group`, `sparkplug_node` and, for devices,
//!   `sparkplug_device`; the metric's timestamp (ms) or else the payload's
//!   or else `now`. Historical metrics are kept (store and forward sends
//!   them). Null and transient metrics (the specification says not to
//!   historise those), strings, bytes, datasets, templates, arrays and
//!   DateTime values are skipped without being counted; so is `bdSeq`,
//!   session bookkeeping rather than a measurement.
//! - deaths (NDEATH, DDEATH): a Prometheus stale marker for each numeric
//!   metric of the births that die, so graphs and alerts stop at once
//!   rather than five minutes later; the tables are forgotten. An NDEATH
//!   whose `bdSeq` is not the current birth's is from an old session and is
//!   ignored, as the specification requires.
//! - STATE, NCMD and DCMD: ignored (no payload decoding).
//!
//! A metric that cannot be used (unknown alias, a value unlike its
//! datatype, non-finite) is counted in `rejected_points`. Data with unknown
//! aliases usually means Sonde started after the node's birth (births are
//! not retained): [`SparkplugDecoded::rebirth`] then asks the caller to
//! send the node a rebirth command, which only the primary host
//! application should do.
//!
//! Errors: a topic that is not a Sparkplug B topic ([`Error::Sparkplug`])
//! and a payload that is not a Sparkplug B protobuf ([`Error::Protobuf`]).

use std::collections::HashMap;

use prost::Message;
use sonde_model::{stale_nan, Labels, Sample};

use crate::influx::{metric_name, sanitized_pairs, with_name, SeriesSet};
use crate::{Error, MetricsBatch, Result};

/// The subset of `sparkplug_b.proto` (proto2) that carries samples. Fields
/// left out (properties, datasets, templates, extensions) are skipped by
/// prost as unknown fields.
pub mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Payload {
        /// Milliseconds since the epoch.
        #[prost(uint64, optional, tag = "1")]
        pub timestamp: Option<u64>,
        #[prost(message, repeated, tag = "2")]
        pub metrics: Vec<Metric>,
        #[prost(uint64, optional, tag = "3")]
        pub seq: Option<u64>,
        #[prost(string, optional, tag = "4")]
        pub uuid: Option<String>,
        #[prost(bytes = "vec", optional, tag = "5")]
        pub body: Option<Vec<u8>>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metric {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        #[prost(uint64, optional, tag = "2")]
        pub alias: Option<u64>,
        #[prost(uint64, optional, tag = "3")]
        pub timestamp: Option<u64>,
        /// A [`super::DataType`] number.
        #[prost(uint32, optional, tag = "4")]
        pub datatype: Option<u32>,
        #[prost(bool, optional, tag = "5")]
        pub is_historical: Option<bool>,
        #[prost(bool, optional, tag = "6")]
        pub is_transient: Option<bool>,
        #[prost(bool, optional, tag = "7")]
        pub is_null: Option<bool>,
        #[prost(message, optional, tag = "8")]
        pub metadata: Option<MetaData>,
        #[prost(oneof = "metric::Value", tags = "10, 11, 12, 13, 14, 15, 16")]
        pub value: Option<metric::Value>,
    }

    pub mod metric {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            /// Int8, Int16, Int32 (two's complement), UInt8, UInt16, UInt32.
            #[prost(uint32, tag = "10")]
            IntValue(u32),
            /// Int64 (two's complement), UInt32, UInt64, DateTime.
            #[prost(uint64, tag = "11")]
            LongValue(u64),
            #[prost(float, tag = "12")]
            FloatValue(f32),
            #[prost(double, tag = "13")]
            DoubleValue(f64),
            #[prost(bool, tag = "14")]
            BooleanValue(bool),
            #[prost(string, tag = "15")]
            StringValue(String),
            #[prost(bytes = "vec", tag = "16")]
            BytesValue(Vec<u8>),
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetaData {
        #[prost(bool, optional, tag = "1")]
        pub is_multi_part: Option<bool>,
        #[prost(string, optional, tag = "2")]
        pub content_type: Option<String>,
        #[prost(uint64, optional, tag = "3")]
        pub size: Option<u64>,
        #[prost(uint64, optional, tag = "4")]
        pub seq: Option<u64>,
        #[prost(string, optional, tag = "5")]
        pub file_name: Option<String>,
        #[prost(string, optional, tag = "6")]
        pub file_type: Option<String>,
        #[prost(string, optional, tag = "7")]
        pub md5: Option<String>,
        #[prost(string, optional, tag = "8")]
        pub description: Option<String>,
    }
}

use proto::metric::Value;

/// Sparkplug datatype numbers (only those this module tells apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum DataType {
    Unknown = 0,
    Int8 = 1,
    Int16 = 2,
    Int32 = 3,
    Int64 = 4,
    UInt8 = 5,
    UInt16 = 6,
    UInt32 = 7,
    UInt64 = 8,
    Float = 9,
    Double = 10,
    Boolean = 11,
    String = 12,
    DateTime = 13,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    NBirth,
    NDeath,
    DBirth,
    DDeath,
    NData,
    DData,
    NCmd,
    DCmd,
    State,
}

impl MessageType {
    fn parse(s: &str) -> Option<MessageType> {
        Some(match s {
            "NBIRTH" => MessageType::NBirth,
            "NDEATH" => MessageType::NDeath,
            "DBIRTH" => MessageType::DBirth,
            "DDEATH" => MessageType::DDeath,
            "NDATA" => MessageType::NData,
            "DDATA" => MessageType::DData,
            "NCMD" => MessageType::NCmd,
            "DCMD" => MessageType::DCmd,
            "STATE" => MessageType::State,
            _ => return None,
        })
    }

    fn is_device(self) -> bool {
        matches!(
            self,
            MessageType::DBirth | MessageType::DDeath | MessageType::DData | MessageType::DCmd
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparkplugOptions {
    /// Labels of every series. The Sparkplug labels win over them: they
    /// are what identifies a series.
    pub extra_labels: Vec<(String, String)>,
    /// Prepended to every metric name, joined with `_`.
    pub metric_prefix: String,
    /// Metrics, nodes and devices remembered from births, all together.
    /// Past it, births are still decoded but not remembered (and counted
    /// as rejected), so their later data is rejected.
    pub max_entries: usize,
    /// Least time between two rebirth requests for one node.
    pub rebirth_interval_ms: i64,
}

impl Default for SparkplugOptions {
    fn default() -> SparkplugOptions {
        SparkplugOptions {
            extra_labels: Vec::new(),
            metric_prefix: String::new(),
            max_entries: 100_000,
            rebirth_interval_ms: 60_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SparkplugDecoded {
    pub message_type: MessageType,
    pub metrics: MetricsBatch,
    /// Set when the node's births should be asked for again.
    pub rebirth: Option<RebirthRequest>,
}

/// The node to send a rebirth command (NCMD `Node Control/Rebirth`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebirthRequest {
    pub group_id: String,
    pub edge_node_id: String,
}

impl RebirthRequest {
    pub fn topic(&self) -> String {
        format!("spBv1.0/{}/NCMD/{}", self.group_id, self.edge_node_id)
    }

    pub fn payload(&self, now_ms: i64) -> Vec<u8> {
        let now = u64::try_from(now_ms).unwrap_or(0);
        proto::Payload {
            timestamp: Some(now),
            metrics: vec![proto::Metric {
                name: Some("Node Control/Rebirth".into()),
                timestamp: Some(now),
                datatype: Some(DataType::Boolean as u32),
                value: Some(Value::BooleanValue(true)),
                ..Default::default()
            }],
            ..Default::default()
        }
        .encode_to_vec()
    }
}

/// A metric known from a birth.
#[derive(Debug)]
struct Known {
    name: String,
    alias: Option<u64>,
    datatype: u32,
}

/// What a node or device said in its birth.
#[derive(Debug, Default)]
struct Entity {
    metrics: Vec<Known>,
    by_alias: HashMap<u64, usize>,
    by_name: HashMap<String, usize>,
    /// The newest sample time given, so a stale marker never precedes it.
    last_t: i64,
}

#[derive(Debug, Default)]
struct Node {
    bd_seq: Option<u64>,
    node: Entity,
    devices: HashMap<String, Entity>,
    last_rebirth_ms: Option<i64>,
}

/// The state of the edge nodes seen; see the module documentation.
#[derive(Debug, Default)]
pub struct SparkplugDecoder {
    opts: SparkplugOptions,
    extra: Vec<(String, String)>,
    nodes: HashMap<(String, String), Node>,
    entries: usize,
}

impl SparkplugDecoder {
    pub fn new(opts: SparkplugOptions) -> SparkplugDecoder {
        SparkplugDecoder {
            extra: sanitized_pairs(&opts.extra_labels),
            opts,
            nodes: HashMap::new(),
            entries: 0,
        }
    }

    /// Entries remembered, to compare with `max_entries`.
    pub fn entries(&self) -> usize {
        self.entries
    }

    pub fn decode(&mut self, topic: &str, payload: &[u8], now_ms: i64) -> Result<SparkplugDecoded> {
        let t = parse_topic(topic)?;
        let mut out = SparkplugDecoded {
            message_type: t.kind,
            metrics: MetricsBatch::default(),
            rebirth: None,
        };
        if matches!(
            t.kind,
            MessageType::State | MessageType::NCmd | MessageType::DCmd
        ) {
            return Ok(out);
        }
        let p = proto::Payload::decode(payload).map_err(|e| Error::Protobuf(e.to_string()))?;
        let key = (t.group.to_string(), t.node.to_string());
        let mut labels = self.extra.clone();
        labels.push(("sparkplug_group".into(), t.group.into()));
        labels.push(("sparkplug_node".into(), t.node.into()));
        if let Some(d) = t.device {
            labels.push(("sparkplug_device".into(), d.into()));
        }
        let base = Labels::from_pairs(labels);
        let prefix = self.opts.metric_prefix.clone();
        let mut cx = Cx {
            base: &base,
            prefix: &prefix,
            batch: &mut out.metrics,
            set: SeriesSet::default(),
            now_ms,
            unknown_alias: false,
        };
        match t.kind {
            MessageType::NBirth => {
                // A node's birth starts a session: its devices must be
                // born again too.
                if let Some(old) = self.nodes.remove(&key) {
                    self.entries -= old.entries();
                }
                let bd_seq = p.metrics.iter().find(|m| is_bd_seq(m)).and_then(integer);
                let mut node = Node {
                    bd_seq,
                    ..Node::default()
                };
                let remembered = self.room(1);
                if remembered {
                    self.entries += 1;
                }
                self.birth(&mut node.node, &p, &mut cx);
                if remembered {
                    self.nodes.insert(key.clone(), node);
                } else {
                    self.entries -= node.node.metrics.len();
                }
            }
            MessageType::DBirth => {
                let device = t.device.unwrap_or_default();
                if let Some(old) = self
                    .nodes
                    .get_mut(&key)
                    .and_then(|n| n.devices.remove(device))
                {
                    self.entries -= 1 + old.metrics.len();
                }
                // The devices of a node whose birth was missed are still
                // remembered.
                let new_node = !self.nodes.contains_key(&key);
                let need = 1 + usize::from(new_node);
                let remembered = self.room(need);
                if remembered {
                    self.entries += need;
                    if new_node {
                        self.nodes.insert(key.clone(), Node::default());
                    }
                }
                let mut entity = Entity::default();
                self.birth(&mut entity, &p, &mut cx);
                match self.nodes.get_mut(&key) {
                    Some(node) if remembered => {
                        node.devices.insert(device.to_string(), entity);
                    }
                    _ => self.entries -= entity.metrics.len(),
                }
            }
            MessageType::NData | MessageType::DData => {
                let mut unknown = Entity::default();
                let entity = match (self.nodes.get_mut(&key), t.device) {
                    (Some(n), None) => Some(&mut n.node),
                    (Some(n), Some(d)) => n.devices.get_mut(d),
                    (None, _) => None,
                };
                let entity = entity.unwrap_or(&mut unknown);
                for m in &p.metrics {
                    cx.metric(m, p.timestamp, entity, false);
                }
            }
            MessageType::NDeath => {
                let death_bd_seq = p.metrics.iter().find(|m| is_bd_seq(m)).and_then(integer);
                let old_session = match self.nodes.get(&key) {
                    Some(n) => {
                        n.bd_seq.is_some() && death_bd_seq.is_some() && n.bd_seq != death_bd_seq
                    }
                    None => false,
                };
                if !old_session {
                    if let Some(node) = self.nodes.remove(&key) {
                        self.entries -= node.entries();
                        cx.stale(&node.node, None);
                        for (device, entity) in &node.devices {
                            cx.stale(entity, Some(device));
                        }
                    }
                }
            }
            MessageType::DDeath => {
                let device = t.device.unwrap_or_default();
                if let Some(entity) = self
                    .nodes
                    .get_mut(&key)
                    .and_then(|n| n.devices.remove(device))
                {
                    self.entries -= 1 + entity.metrics.len();
                    cx.stale(&entity, None);
                }
            }
            MessageType::State | MessageType::NCmd | MessageType::DCmd => {}
        }
        let unknown_alias = cx.unknown_alias;
        let series = cx.set.into_series();
        out.metrics.series = series;
        if unknown_alias {
            out.rebirth = self.rebirth_due(&key, now_ms);
        }
        Ok(out)
    }

    /// Remembers the metrics of a birth in `entity` and gives their samples.
    fn birth(&mut self, entity: &mut Entity, p: &proto::Payload, cx: &mut Cx<'_>) {
        for m in &p.metrics {
            let Some(name) = m.name.as_deref().filter(|n| !n.is_empty()) else {
                cx.batch.reject(|| "birth metric without a name".into());
                continue;
            };
            let idx = match entity.by_name.get(name) {
                Some(&i) => Some(i),
                None if self.room(1) => {
                    self.entries += 1;
                    entity.metrics.push(Known {
                        name: name.to_string(),
                        alias: None,
                        datatype: 0,
                    });
                    entity
                        .by_name
                        .insert(name.to_string(), entity.metrics.len() - 1);
                    Some(entity.metrics.len() - 1)
                }
                None => {
                    cx.batch.reject(|| self.full(&format!("metric {name:?}")));
                    None
                }
            };
            if let (Some(i), Some(alias)) = (idx, m.alias) {
                // One alias per metric and one metric per alias, so the
                // alias map is never larger than what is counted.
                if let Some(old) = entity.metrics[i].alias.replace(alias) {
                    entity.by_alias.remove(&old);
                }
                if let Some(prev) = entity.by_alias.insert(alias, i) {
                    if prev != i {
                        entity.metrics[prev].alias = None;
                    }
                }
            }
            if let Some(i) = idx {
                entity.metrics[i].datatype = m.datatype.unwrap_or(0);
            }
            cx.metric(m, p.timestamp, entity, true);
        }
    }

    fn room(&self, n: usize) -> bool {
        self.entries + n <= self.opts.max_entries
    }

    fn full(&self, what: &str) -> String {
        format!(
            "{what} not remembered: the birth table is full ({} entries); \
             raise max_entries",
            self.opts.max_entries
        )
    }

    fn rebirth_due(&mut self, key: &(String, String), now_ms: i64) -> Option<RebirthRequest> {
        if !self.nodes.contains_key(key) {
            if !self.room(1) {
                return None;
            }
            self.entries += 1;
            self.nodes.insert(key.clone(), Node::default());
        }
        let node = self.nodes.get_mut(key)?;
        let interval = self.opts.rebirth_interval_ms;
        if node
            .last_rebirth_ms
            .is_some_and(|last| now_ms.saturating_sub(last) < interval)
        {
            return None;
        }
        node.last_rebirth_ms = Some(now_ms);
        Some(RebirthRequest {
            group_id: key.0.clone(),
            edge_node_id: key.1.clone(),
        })
    }
}

impl Node {
    fn entries(&self) -> usize {
        1 + self.node.metrics.len()
            + self
                .devices
                .values()
                .map(|d| 1 + d.metrics.len())
                .sum::<usize>()
    }
}

/// Conversion of one message.
struct Cx<'a> {
    base: &'a Labels,
    prefix: &'a str,
    batch: &'a mut MetricsBatch,
    set: SeriesSet,
    now_ms: i64,
    unknown_alias: bool,
}

impl Cx<'_> {
    fn metric(&mut self, m: &proto::Metric, payload_t: Option<u64>, e: &mut Entity, birth: bool) {
        let known = match (&m.name, m.alias) {
            (Some(n), _) if !n.is_empty() => e.by_name.get(n).map(|&i| &e.metrics[i]),
            (_, Some(alias)) => match e.by_alias.get(&alias) {
                Some(&i) => Some(&e.metrics[i]),
                None => {
                    self.unknown_alias = true;
                    return self.batch.reject(|| {
                        format!("unknown alias {alias}: the node's birth was not seen")
                    });
                }
            },
            _ => {
                return self
                    .batch
                    .reject(|| "metric with neither name nor alias".into())
            }
        };
        let name = match (&m.name, known) {
            (Some(n), _) if !n.is_empty() => n.as_str(),
            (_, Some(k)) => k.name.as_str(),
            _ => {
                return self
                    .batch
                    .reject(|| "metric with neither name nor alias".into())
            }
        };
        if m.is_null == Some(true) || m.is_transient == Some(true) || name == "bdSeq" {
            return;
        }
        // The birth's datatype first: data messages should not repeat it.
        let datatype = known
            .map(|k| k.datatype)
            .filter(|d| *d != 0 || birth)
            .or(m.datatype)
            .unwrap_or(0);
        let v = match numeric(datatype, m.value.as_ref()) {
            Ok(Some(v)) if v.is_finite() => v,
            Ok(Some(_)) => {
                return self
                    .batch
                    .reject(|| format!("metric {name:?}: the value is not finite"))
            }
            Ok(None) => return,
            Err(why) => return self.batch.reject(|| format!("metric {name:?}: {why}")),
        };
        let t = match m.timestamp.or(payload_t) {
            None => self.now_ms,
            Some(t) => match i64::try_from(t) {
                Ok(t) => t,
                Err(_) => {
                    return self
                        .batch
                        .reject(|| format!("metric {name:?}: timestamp {t} is out of range"))
                }
            },
        };
        let metric = metric_name(self.prefix, name);
        if metric.is_empty() {
            return self
                .batch
                .reject(|| format!("metric {name:?} makes no metric name"));
        }
        e.last_t = e.last_t.max(t);
        self.set.push(with_name(self.base, metric), Sample { t, v });
    }

    /// Stale markers for the numeric metrics of a birth that died.
    fn stale(&mut self, e: &Entity, device: Option<&str>) {
        let t = self.now_ms.max(e.last_t.saturating_add(1));
        let base = match device {
            Some(d) => {
                let mut b = self.base.clone().into_builder();
                b.set("sparkplug_device", d);
                b.build()
            }
            None => self.base.clone(),
        };
        for k in &e.metrics {
            if k.name == "bdSeq" || !is_numeric(k.datatype) {
                continue;
            }
            let metric = metric_name(self.prefix, &k.name);
            if !metric.is_empty() {
                let v = stale_nan();
                self.set.push(with_name(&base, metric), Sample { t, v });
            }
        }
    }
}

fn is_bd_seq(m: &proto::Metric) -> bool {
    m.name.as_deref() == Some("bdSeq")
}

fn integer(m: &proto::Metric) -> Option<u64> {
    match m.value {
        Some(Value::IntValue(v)) => Some(u64::from(v)),
        Some(Value::LongValue(v)) => Some(v),
        _ => None,
    }
}

fn is_numeric(datatype: u32) -> bool {
    (DataType::Int8 as u32..=DataType::Boolean as u32).contains(&datatype)
}

/// A metric value as a float: `Ok(None)` for datatypes that are not
/// numbers (strings, DateTime, datasets...) and for a missing value.
/// Integers are read per their datatype's width and sign, whichever of
/// `int_value` and `long_value` carries them: implementations disagree on
/// which field UInt32 uses, and on sign-extending Int8 and Int16.
fn numeric(datatype: u32, value: Option<&Value>) -> Result<Option<f64>, String> {
    let Some(value) = value else {
        return Ok(None);
    };
    let raw = match value {
        Value::IntValue(v) => Some(u64::from(*v)),
        Value::LongValue(v) => Some(*v),
        _ => None,
    };
    let signed = |bits: u32| raw.map(|r| (((r << (64 - bits)) as i64) >> (64 - bits)) as f64);
    let unsigned = |bits: u32| raw.map(|r| (r & (u64::MAX >> (64 - bits))) as f64);
    let float = match value {
        Value::FloatValue(f) => Some(f64::from(*f)),
        Value::DoubleValue(d) => Some(*d),
        Value::BooleanValue(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    };
    let v = match datatype {
        1 => signed(8),
        2 => signed(16),
        3 => signed(32),
        4 => signed(64),
        5 => unsigned(8),
        6 => unsigned(16),
        7 => unsigned(32),
        8 => unsigned(64),
        9..=11 => raw.map(|r| r as f64),
        // Unknown: as the value says.
        0 => match value {
            Value::IntValue(v) => Some(f64::from(*v)),
            Value::LongValue(v) => Some(*v as f64),
            Value::StringValue(_) | Value::BytesValue(_) => return Ok(None),
            _ => None,
        },
        _ => return Ok(None),
    };
    match v.or(float) {
        Some(v) if datatype == DataType::Boolean as u32 => Ok(Some(f64::from(u8::from(v != 0.0)))),
        Some(v) => Ok(Some(v)),
        None => Err(format!("a {} value for datatype {datatype}", kind(value))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::IntValue(_) | Value::LongValue(_) => "integer",
        Value::FloatValue(_) | Value::DoubleValue(_) => "float",
        Value::BooleanValue(_) => "boolean",
        Value::StringValue(_) => "string",
        Value::BytesValue(_) => "bytes",
    }
}

struct Topic<'a> {
    group: &'a str,
    kind: MessageType,
    node: &'a str,
    device: Option<&'a str>,
}

fn parse_topic(topic: &str) -> Result<Topic<'_>> {
    let fail = |why: &str| Error::Sparkplug(format!("topic {topic:?}: {why}"));
    let levels: Vec<&str> = topic.split('/').collect();
    if levels[0] != "spBv1.0" {
        return Err(fail("not a Sparkplug B topic (spBv1.0/...)"));
    }
    // Sparkplug 3.0 host state: `spBv1.0/STATE/{host id}`.
    if levels.get(1) == Some(&"STATE") && levels.len() == 3 {
        return Ok(Topic {
            group: "",
            kind: MessageType::State,
            node: levels[2],
            device: None,
        });
    }
    if levels.len() < 4 || levels.len() > 5 {
        return Err(fail(
            "expected spBv1.0/{group}/{message type}/{edge node}[/{device}]",
        ));
    }
    let kind = MessageType::parse(levels[2])
        .filter(|k| *k != MessageType::State)
        .ok_or_else(|| fail("unknown message type"))?;
    let device = levels.get(4).copied();
    if kind.is_device() != device.is_some() {
        return Err(fail(if device.is_some() {
            "a node message type with a device id"
        } else {
            "a device message type without a device id"
        }));
    }
    if levels[1..].iter().any(|l| l.is_empty()) {
        return Err(fail("empty group, node or device id"));
    }
    Ok(Topic {
        group: levels[1],
        kind,
        node: levels[3],
        device,
    })
}

#[cfg(test)]
#[path = "sparkplug_tests.rs"]
mod tests;

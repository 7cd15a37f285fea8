//! `network`: /proc/net/dev (the interfaces of the agent's network
//! namespace).
//!
//! Per interface (`device`) and `direction` (`receive`, `transmit`):
//! `system.network.io` (By), `system.network.packets` ({packets}),
//! `system.network.errors` ({errors}), `system.network.dropped`
//! ({packets}); all cumulative since the interface appeared.

use super::{Collector, Ctx};
use crate::batch::{Attr, Desc, Kind};
use crate::procfs::Roots;

const METRICS: [Desc; 4] = [
    Desc {
        name: "system.network.io",
        unit: "By",
        kind: Kind::Counter,
        description: "Bytes received and transmitted by each interface.",
    },
    Desc {
        name: "system.network.packets",
        unit: "{packets}",
        kind: Kind::Counter,
        description: "Packets received and transmitted by each interface.",
    },
    Desc {
        name: "system.network.errors",
        unit: "{errors}",
        kind: Kind::Counter,
        description: "Receive and transmit errors of each interface.",
    },
    Desc {
        name: "system.network.dropped",
        unit: "{packets}",
        kind: Kind::Counter,
        description: "Packets dropped on receive and transmit by each interface.",
    },
];

/// One interface of /proc/net/dev: bytes, packets, errors and drops, each
/// as (receive, transmit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetDev<'a> {
    pub device: &'a str,
    /// io, packets, errors, dropped; each (receive, transmit).
    pub counters: [(u64, u64); 4],
}

/// The interfaces of /proc/net/dev (after its two header lines).
pub fn parse_net_dev(text: &str) -> impl Iterator<Item = NetDev<'_>> {
    text.lines().skip(2).filter_map(|line| {
        let (device, rest) = line.split_once(':')?;
        let mut v = [0u64; 16];
        let mut f = rest.split_ascii_whitespace();
        for x in v.iter_mut() {
            *x = f.next()?.parse().ok()?;
        }
        // Receive: bytes packets errs drop fifo frame compressed multicast;
        // transmit: bytes packets errs drop fifo colls carrier compressed.
        Some(NetDev {
            device: device.trim(),
            counters: [(v[0], v[8]), (v[1], v[9]), (v[2], v[10]), (v[3], v[11])],
        })
    })
}

pub struct NetworkCollector {
    path: std::path::PathBuf,
}

impl NetworkCollector {
    pub fn new(roots: Roots) -> Self {
        NetworkCollector {
            path: roots.path("/proc/net/dev"),
        }
    }
}

impl Collector for NetworkCollector {
    fn name(&self) -> &'static str {
        "network"
    }

    fn collect(&mut self, ctx: &mut Ctx<'_>) -> std::io::Result<()> {
        let text = ctx.reader.read(&self.path)?;
        for (i, desc) in METRICS.iter().enumerate() {
            let mut m = ctx.out.metric(desc);
            for d in parse_net_dev(text) {
                let (rx, tx) = d.counters[i];
                for (direction, v) in [("receive", rx), ("transmit", tx)] {
                    m.point(
                        &[
                            ("device", Attr::Str(d.device)),
                            ("direction", Attr::Str(direction)),
                        ],
                        v,
                        ctx.boot_ns,
                    );
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 50256071425 9215533    0    0    0     0          0         0 50256071425 9215533    0    0    0     0       0          0
  eth0: 335013309   13979    3    4    0     0          0         0   933399    9211    5    6    0     0       0          0
br-1a2b:1234 5 0 0 0 0 0 0 4321 6 0 0 0 0 0 0
";

    #[test]
    fn parses_each_interface_and_direction() {
        let d: Vec<_> = parse_net_dev(SAMPLE).collect();
        assert_eq!(d.len(), 3);
        assert_eq!(d[0].device, "lo");
        assert_eq!(d[0].counters[0], (50256071425, 50256071425));
        assert_eq!(
            d[1],
            NetDev {
                device: "eth0",
                counters: [(335013309, 933399), (13979, 9211), (3, 5), (4, 6)],
            }
        );
        assert_eq!(d[2].device, "br-1a2b", "no space after the colon");
        assert_eq!(d[2].counters[0], (1234, 4321));
    }
}

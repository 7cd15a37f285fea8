//! The URLs that name an exporter or a policy source:
//! `scheme://[user:password@]host[:port][,host[:port]...][/path][?key=value&...]`.
//! Broker settings travel as query parameters, so one string (a flag, an
//! environment variable) configures a transport.

// Most of it serves the broker transports, which are features.
#![cfg_attr(not(all(feature = "kafka", feature = "mqtt")), allow(dead_code))]

use crate::{Error, Result};

pub(crate) struct Url {
    raw: String,
    /// Lowercase.
    pub scheme: String,
    pub credentials: Option<(String, String)>,
    /// The authority without credentials: `host:port[,host:port]`.
    pub hosts: String,
    /// What follows the authority, before the query (`/`, `/otlp`, or "").
    pub path: String,
    params: Vec<(String, String)>,
}

impl Url {
    pub fn parse(url: &str) -> Result<Url> {
        let raw = url.trim().to_string();
        let bad = |why: &str| Error::BadUrl {
            url: raw.clone(),
            why: why.to_string(),
        };
        let (scheme, rest) = raw
            .split_once("://")
            .ok_or_else(|| bad("give a URL such as http://host:4318 or mqtt://host:1883"))?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (credentials, hosts) = match authority.rsplit_once('@') {
            Some((user, hosts)) => {
                let (name, password) = user.split_once(':').unwrap_or((user, ""));
                (Some((decode(name), decode(password))), hosts)
            }
            None => (None, authority),
        };
        if hosts.is_empty() {
            return Err(bad("the URL has no host"));
        }
        let params = query
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (decode(k), decode(v))
            })
            .collect();
        Ok(Url {
            scheme: scheme.to_ascii_lowercase(),
            credentials,
            hosts: hosts.to_string(),
            path: path.to_string(),
            params,
            raw,
        })
    }

    pub fn bad(&self, why: impl Into<String>) -> Error {
        Error::BadUrl {
            url: self.raw.clone(),
            why: why.into(),
        }
    }

    /// Removes and returns the query parameter `key`.
    pub fn take(&mut self, key: &str) -> Option<String> {
        let i = self.params.iter().position(|(k, _)| k == key)?;
        Some(self.params.remove(i).1)
    }

    /// [`Url::take`], parsed; `expect` says what a valid value looks like.
    pub fn take_parsed<T: std::str::FromStr>(
        &mut self,
        key: &str,
        expect: &str,
    ) -> Result<Option<T>> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| self.bad(format!("{key}={v:?}: give {expect}"))),
        }
    }

    /// Fails on a parameter no one took, and on a path (brokers have none).
    pub fn finish(&self, known: &str) -> Result<()> {
        if !matches!(self.path.as_str(), "" | "/") {
            return Err(self.bad(format!("a {} URL has no path", self.scheme)));
        }
        match self.params.first() {
            Some((k, _)) => Err(self.bad(format!("unknown parameter {k:?}; known: {known}"))),
            None => Ok(()),
        }
    }

    /// Each `host[:port]` of the authority, with `default_port` where none
    /// is given.
    pub fn host_ports(&self, default_port: u16) -> Result<Vec<(String, u16)>> {
        self.hosts
            .split(',')
            .map(|hp| {
                let hp = hp.trim();
                // A bracketed IPv6 address keeps its colons.
                let split = match hp.rfind(':') {
                    Some(i) if !hp[i..].contains(']') => Some(i),
                    _ => None,
                };
                let (host, port) = match split {
                    Some(i) => {
                        let port = hp[i + 1..]
                            .parse::<u16>()
                            .map_err(|_| self.bad(format!("{hp:?}: the port is not a number")))?;
                        (&hp[..i], port)
                    }
                    None => (hp, default_port),
                };
                if host.is_empty() {
                    return Err(self.bad("a host is empty"));
                }
                Ok((host.to_string(), port))
            })
            .collect()
    }
}

/// Decodes `%XX` escapes. A `+` stays a `+`: these values are host names,
/// topic prefixes and ids, not form fields.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts() {
        let mut u = Url::parse(
            "MQTT://dev%40ice:s3cret@broker.local:8883/?protocol=3.1.1&topic_prefix=a/b",
        )
        .unwrap();
        assert_eq!(u.scheme, "mqtt");
        assert_eq!(
            u.credentials,
            Some(("dev@ice".to_string(), "s3cret".to_string()))
        );
        assert_eq!(u.host_ports(1883).unwrap(), [("broker.local".into(), 8883)]);
        assert_eq!(u.take("protocol").as_deref(), Some("3.1.1"));
        assert!(u.finish("protocol").is_err(), "topic_prefix is left");
        assert_eq!(u.take("topic_prefix").as_deref(), Some("a/b"));
        assert!(u.finish("").is_ok());

        let u = Url::parse("kafka://k1,k2:9093,[::1]:9094").unwrap();
        assert_eq!(
            u.host_ports(9092).unwrap(),
            [
                ("k1".to_string(), 9092),
                ("k2".to_string(), 9093),
                ("[::1]".to_string(), 9094)
            ]
        );
    }

    #[test]
    fn mistakes() {
        assert!(Url::parse("localhost:4318").is_err());
        assert!(Url::parse("mqtt://").is_err());
        let u = Url::parse("mqtt://h:x").unwrap();
        assert!(u.host_ports(1883).unwrap_err().to_string().contains("port"));
        let u = Url::parse("kafka://h/topic").unwrap();
        assert!(u.finish("").unwrap_err().to_string().contains("no path"));
        let mut u = Url::parse("mqtt://h?qos=2").unwrap();
        assert!(u.take_parsed::<u8>("qos", "0 or 1").is_ok());
        let mut u = Url::parse("mqtt://h?qos=x").unwrap();
        let e = u.take_parsed::<u8>("qos", "0 or 1").unwrap_err();
        assert!(e.to_string().contains("give 0 or 1"), "{e}");
    }
}

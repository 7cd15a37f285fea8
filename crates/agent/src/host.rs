//! Who is reporting: the host's identity as OpenTelemetry resource
//! attributes, read once at start.

use crate::procfs::Roots;

/// The host as the resource attributes of every batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    pub id: Option<String>,
    pub os_description: Option<String>,
    pub os_version: Option<String>,
    pub arch: &'static str,
}

impl Host {
    /// Reads the host's identity under `roots`.
    pub fn detect(roots: &Roots) -> Host {
        let read = |p: &str| std::fs::read_to_string(roots.path(p)).ok();
        let trimmed = |s: String| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        let name = read("/proc/sys/kernel/hostname")
            .and_then(trimmed)
            .or_else(|| std::env::var("HOSTNAME").ok().and_then(trimmed))
            .unwrap_or_else(|| "localhost".into());
        let id = read("/etc/machine-id")
            .or_else(|| read("/var/lib/dbus/machine-id"))
            .and_then(trimmed);
        let os_description = read("/etc/os-release")
            .or_else(|| read("/usr/lib/os-release"))
            .and_then(|t| os_release_value(&t, "PRETTY_NAME"));
        let os_version = read("/proc/sys/kernel/osrelease").and_then(trimmed);
        Host {
            name,
            id,
            os_description,
            os_version,
            arch: otel_arch(std::env::consts::ARCH),
        }
    }

    /// The resource attributes: the host's, `os.*`, and the service's
    /// (`service.name`; `service.instance.id` is the host name, so Sonde's
    /// `instance` label names the host).
    pub fn resource(&self, service_name: &str) -> Vec<(&'static str, String)> {
        let mut out = vec![
            ("service.name", service_name.to_string()),
            ("service.instance.id", self.name.clone()),
            ("service.version", env!("CARGO_PKG_VERSION").to_string()),
            ("host.name", self.name.clone()),
        ];
        if let Some(id) = &self.id {
            out.push(("host.id", id.clone()));
        }
        out.push(("host.arch", self.arch.to_string()));
        out.push(("os.type", "linux".to_string()));
        if let Some(d) = &self.os_description {
            out.push(("os.description", d.clone()));
        }
        if let Some(v) = &self.os_version {
            out.push(("os.version", v.clone()));
        }
        out
    }
}

/// A value of os-release(5): `KEY=value`, `KEY="quoted value"`.
pub fn os_release_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (k, v) = line.trim().split_once('=')?;
        if k != key {
            return None;
        }
        let v = v.trim();
        let unquoted = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(v);
        let mut out = String::with_capacity(unquoted.len());
        let mut escaped = false;
        for c in unquoted.chars() {
            if c == '\\' && !escaped {
                escaped = true;
                continue;
            }
            escaped = false;
            out.push(c);
        }
        Some(out).filter(|s| !s.is_empty())
    })
}

/// `host.arch` values of the OpenTelemetry conventions.
pub fn otel_arch(rust_arch: &'static str) -> &'static str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "x86",
        "arm" => "arm32",
        "powerpc" => "ppc32",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_os_release_values() {
        let text = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVARIANT='Server \\\"edition\\\"'\n";
        assert_eq!(
            os_release_value(text, "PRETTY_NAME").as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(os_release_value(text, "ID").as_deref(), Some("debian"));
        assert_eq!(
            os_release_value(text, "VARIANT").as_deref(),
            Some("Server \"edition\"")
        );
        assert_eq!(os_release_value(text, "NAM"), None);
    }

    #[test]
    fn detects_a_fake_host() {
        let dir = std::env::temp_dir().join(format!("sonde-agent-host-{}", std::process::id()));
        for d in ["proc/sys/kernel", "etc"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::write(dir.join("proc/sys/kernel/hostname"), "web-1\n").unwrap();
        std::fs::write(
            dir.join("etc/machine-id"),
            "3d1219c7c4c5404aaa1f6d2a48adfda4\n",
        )
        .unwrap();
        std::fs::write(dir.join("etc/os-release"), "PRETTY_NAME=\"Test OS 1\"\n").unwrap();
        let h = Host::detect(&Roots::new(&dir));
        assert_eq!(h.name, "web-1");
        assert_eq!(h.id.as_deref(), Some("3d1219c7c4c5404aaa1f6d2a48adfda4"));
        assert_eq!(h.os_description.as_deref(), Some("Test OS 1"));
        assert_eq!(h.os_version, None);
        let r = h.resource("sonde-agent");
        assert!(r.contains(&("service.instance.id", "web-1".into())));
        assert!(r.contains(&("os.type", "linux".into())));
        assert_eq!(otel_arch("x86_64"), "amd64");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! `filesystem`: statvfs(2) of each real file system in /proc/self/mounts.
//!
//! Real means a type that /proc/filesystems does not mark `nodev` (so
//! backed by a block device), plus `overlay` (a container's root) and
//! `zfs`; `squashfs` images (snaps, always full) are left out. A mount
//! point mounted over is reported once, for what is visible there now.
//!
//! - `system.filesystem.usage{device,mode,mountpoint,type,state}` (By):
//!   `used` (blocks - free), `free` (available to unprivileged users) and
//!   `reserved` (free only to root); they add up to the size.
//! - `system.filesystem.limit{device,mode,mountpoint,type}` (By): the size.
//! - `system.filesystem.inodes.usage{…,state}` ({inodes}): `used`, `free`.

use std::collections::HashSet;
use std::path::PathBuf;

use super::{Collector, Ctx};
use crate::batch::{Attr, Desc, Kind};
use crate::procfs::{unescape_octal, Roots};

const USAGE: Desc = Desc {
    name: "system.filesystem.usage",
    unit: "By",
    kind: Kind::UpDown,
    description: "Bytes of each file system, by state.",
};
const LIMIT: Desc = Desc {
    name: "system.filesystem.limit",
    unit: "By",
    kind: Kind::UpDown,
    description: "Size of each file system in bytes.",
};
const INODES: Desc = Desc {
    name: "system.filesystem.inodes.usage",
    unit: "{inodes}",
    kind: Kind::UpDown,
    description: "Inodes of each file system, by state.",
};

/// One mount of /proc/self/mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub device: String,
    pub mountpoint: String,
    pub fs_type: String,
    /// `ro` or `rw`.
    pub mode: &'static str,
}

/// The mounts of /proc/self/mounts, in order.
pub fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_ascii_whitespace();
            let device = unescape_octal(f.next()?).into_owned();
            let mountpoint = unescape_octal(f.next()?).into_owned();
            let fs_type = f.next()?.to_string();
            let options = f.next().unwrap_or("");
            let mode = if options.split(',').any(|o| o == "ro") {
                "ro"
            } else {
                "rw"
            };
            Some(Mount {
                device,
                mountpoint,
                fs_type,
                mode,
            })
        })
        .collect()
}

/// The `nodev` types of /proc/filesystems: those backed by no device.
pub fn parse_nodev_types(text: &str) -> HashSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("nodev"))
        .map(|t| t.trim().to_string())
        .collect()
}

/// Types that hold data though the kernel marks them `nodev`.
const REAL_NODEV: [&str; 2] = ["overlay", "zfs"];
/// Types not worth reporting though device-backed.
const SKIPPED: [&str; 1] = ["squashfs"];
/// Without /proc/filesystems: types known to be virtual.
const VIRTUAL: [&str; 24] = [
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fusectl",
    "hugetlbfs",
    "mqueue",
    "nsfs",
    "proc",
    "pstore",
    "ramfs",
    "rpc_pipefs",
    "securityfs",
    "sysfs",
    "tmpfs",
    "tracefs",
    "nfs",
    "nfs4",
];

/// The mounts to report: real types, each mount point once (the last
/// mount there is the visible one).
pub fn real_mounts(mounts: Vec<Mount>, nodev: Option<&HashSet<String>>) -> Vec<Mount> {
    let real = |t: &str| {
        if SKIPPED.contains(&t) {
            return false;
        }
        if REAL_NODEV.contains(&t) {
            return true;
        }
        match nodev {
            Some(nodev) => !nodev.contains(t),
            None => !VIRTUAL.contains(&t),
        }
    };
    let mut out: Vec<Mount> = Vec::new();
    for m in mounts {
        out.retain(|o| o.mountpoint != m.mountpoint);
        if real(&m.fs_type) {
            out.push(m);
        }
    }
    out
}

/// Bytes and inodes of one file system by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub used: u64,
    pub free: u64,
    pub reserved: u64,
    pub inodes_used: u64,
    pub inodes_free: u64,
}

impl Usage {
    /// From statvfs fields: `frsize`, `blocks`, `bfree`, `bavail`, `files`,
    /// `ffree`.
    pub fn from_statvfs(
        frsize: u64,
        blocks: u64,
        bfree: u64,
        bavail: u64,
        files: u64,
        ffree: u64,
    ) -> Self {
        Usage {
            used: blocks.saturating_sub(bfree) * frsize,
            free: bavail * frsize,
            reserved: bfree.saturating_sub(bavail) * frsize,
            inodes_used: files.saturating_sub(ffree),
            inodes_free: ffree,
        }
    }

    pub fn size(&self) -> u64 {
        self.used + self.free + self.reserved
    }
}

pub struct FilesystemCollector {
    roots: Roots,
    mounts_path: PathBuf,
    filesystems_path: PathBuf,
    /// The mount table last parsed, to skip parsing an unchanged one.
    last_text: String,
    /// Each mount reported, with the path statvfs is called on.
    mounts: Vec<(Mount, PathBuf)>,
    /// This tick's usage of each mount that answered statvfs (reused).
    usages: Vec<(usize, Usage)>,
}

impl FilesystemCollector {
    pub fn new(roots: Roots) -> Self {
        FilesystemCollector {
            mounts_path: roots.path("/proc/self/mounts"),
            filesystems_path: roots.path("/proc/filesystems"),
            roots,
            last_text: String::new(),
            mounts: Vec::new(),
            usages: Vec::new(),
        }
    }
}

impl Collector for FilesystemCollector {
    fn name(&self) -> &'static str {
        "filesystem"
    }

    fn collect(&mut self, ctx: &mut Ctx<'_>) -> std::io::Result<()> {
        let text = ctx.reader.read(&self.mounts_path)?;
        if text != self.last_text {
            self.last_text.clear();
            self.last_text.push_str(text);
            // A new mount may be of a type whose module just loaded.
            let nodev = std::fs::read_to_string(&self.filesystems_path)
                .ok()
                .map(|t| parse_nodev_types(&t));
            self.mounts = real_mounts(parse_mounts(&self.last_text), nodev.as_ref())
                .into_iter()
                .map(|m| {
                    let path = self.roots.path(&m.mountpoint);
                    (m, path)
                })
                .collect();
        }
        let mut usages = std::mem::take(&mut self.usages);
        usages.clear();
        for (i, (_, path)) in self.mounts.iter().enumerate() {
            match rustix::fs::statvfs(path) {
                Ok(s) => usages.push((
                    i,
                    Usage::from_statvfs(
                        s.f_frsize, s.f_blocks, s.f_bfree, s.f_bavail, s.f_files, s.f_ffree,
                    ),
                )),
                Err(e) => {
                    tracing::debug!(path = %path.display(), error = %e, "statvfs failed; mount skipped")
                }
            }
        }
        {
            let mut w = ctx.out.metric(&USAGE);
            for (i, u) in &usages {
                let [a, b, c, d] = attrs(&self.mounts[*i].0);
                for (state, v) in [("used", u.used), ("free", u.free), ("reserved", u.reserved)] {
                    w.point(&[a, b, c, d, ("state", Attr::Str(state))], v, 0);
                }
            }
        }
        {
            let mut w = ctx.out.metric(&LIMIT);
            for (i, u) in &usages {
                w.point(&attrs(&self.mounts[*i].0), u.size(), 0);
            }
        }
        let mut w = ctx.out.metric(&INODES);
        for (i, u) in &usages {
            let [a, b, c, d] = attrs(&self.mounts[*i].0);
            for (state, v) in [("used", u.inodes_used), ("free", u.inodes_free)] {
                w.point(&[a, b, c, d, ("state", Attr::Str(state))], v, 0);
            }
        }
        drop(w);
        self.usages = usages;
        Ok(())
    }
}

/// The attributes of a mount's points, before `state`.
fn attrs(m: &Mount) -> [(&'static str, Attr<'_>); 4] {
    [
        ("device", Attr::Str(&m.device)),
        ("mode", Attr::Str(m.mode)),
        ("mountpoint", Attr::Str(&m.mountpoint)),
        ("type", Attr::Str(&m.fs_type)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "\
proc /proc proc rw,relatime 0 0
sysfs /sys sysfs rw,relatime 0 0
devtmpfs /dev devtmpfs rw,relatime,size=12334524k,nr_inodes=3083631,mode=755 0 0
/dev/vda / ext4 rw,relatime,discard 0 0
tmpfs /dev/shm tmpfs rw,relatime,size=24684096k 0 0
/dev/vdb1 /mnt/my\\040data xfs ro,noatime 0 0
/dev/loop3 /snap/core/1 squashfs ro,nodev,relatime 0 0
overlay /var/lib/docker/overlay2/x/merged overlay rw,relatime,lowerdir=/a 0 0
/dev/vdc /mnt/stack ext4 rw 0 0
tmpfs /mnt/stack tmpfs rw 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
";
    const FILESYSTEMS: &str = "nodev\tsysfs\nnodev\ttmpfs\nnodev\tproc\nnodev\tdevtmpfs\nnodev\toverlay\nnodev\tcgroup2\n\text4\n\txfs\n\tsquashfs\n";

    #[test]
    fn parses_mounts_with_escapes_and_mode() {
        let m = parse_mounts(MOUNTS);
        assert_eq!(m.len(), 11);
        assert_eq!(
            m[5],
            Mount {
                device: "/dev/vdb1".into(),
                mountpoint: "/mnt/my data".into(),
                fs_type: "xfs".into(),
                mode: "ro",
            }
        );
        assert_eq!(m[3].mode, "rw");
    }

    #[test]
    fn keeps_real_file_systems_once_per_mount_point() {
        let nodev = parse_nodev_types(FILESYSTEMS);
        assert!(nodev.contains("tmpfs") && !nodev.contains("ext4"));
        let points = |nodev: Option<&HashSet<String>>| -> Vec<String> {
            real_mounts(parse_mounts(MOUNTS), nodev)
                .into_iter()
                .map(|m| m.mountpoint)
                .collect()
        };
        let expected = ["/", "/mnt/my data", "/var/lib/docker/overlay2/x/merged"];
        // /mnt/stack is covered by a tmpfs mounted over it.
        assert_eq!(points(Some(&nodev)), expected);
        assert_eq!(points(None), expected, "the built-in list agrees");
    }

    #[test]
    fn usage_states_add_up_to_the_size() {
        let u = Usage::from_statvfs(4096, 1000, 300, 250, 64, 40);
        assert_eq!(u.used, 700 * 4096);
        assert_eq!(u.free, 250 * 4096);
        assert_eq!(u.reserved, 50 * 4096);
        assert_eq!(u.size(), 1000 * 4096);
        assert_eq!((u.inodes_used, u.inodes_free), (24, 40));
    }

    #[test]
    fn statvfs_of_the_root_agrees_with_the_usage() {
        let s = rustix::fs::statvfs("/").unwrap();
        let u = Usage::from_statvfs(
            s.f_frsize, s.f_blocks, s.f_bfree, s.f_bavail, s.f_files, s.f_ffree,
        );
        assert_eq!(u.size(), s.f_blocks * s.f_frsize);
    }
}

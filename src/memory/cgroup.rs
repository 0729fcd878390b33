//! Finding the process's memory cgroup and reading its limit and usage.
//!
//! Read straight from `/proc` and `/sys/fs/cgroup`: `psutil` (and the other
//! system-information crates) report host-wide figures and know nothing of
//! cgroups, which is exactly the figure that gets a container killed.
//!
//! Every parser here takes text and returns `None` or an error for anything
//! it does not understand; none of them panics, whatever the file holds.

use std::path::{Path, PathBuf};

/// Which cgroup interface a figure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    /// The legacy per-controller hierarchy (`memory.limit_in_bytes`).
    V1,
    /// The unified hierarchy (`memory.max`).
    V2,
}

/// What the process's memory cgroup says at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CgroupMemory {
    /// The interface the figures came from.
    pub version: CgroupVersion,
    /// The smallest limit on the path from the process's cgroup up to the
    /// root; `None` when no level sets one.
    pub limit_bytes: Option<u64>,
    /// Memory charged to the cgroup (`memory.current` / `memory.usage_in_bytes`),
    /// page cache included.
    pub usage_bytes: u64,
    /// Inactive file pages, which the kernel reclaims before it kills
    /// (`inactive_file` / `total_inactive_file` in `memory.stat`).
    pub inactive_file_bytes: u64,
}

impl CgroupMemory {
    /// The figures of one reading (for probes of other sources and tests).
    pub fn new(
        version: CgroupVersion,
        limit_bytes: Option<u64>,
        usage_bytes: u64,
        inactive_file_bytes: u64,
    ) -> Self {
        CgroupMemory {
            version,
            limit_bytes,
            usage_bytes,
            inactive_file_bytes,
        }
    }

    /// Usage minus inactive file pages: the "working set" Kubernetes evicts
    /// on, and the part of the usage that cannot simply be dropped.
    pub fn working_set_bytes(&self) -> u64 {
        self.usage_bytes.saturating_sub(self.inactive_file_bytes)
    }
}

/// The memory cgroup directories of a process: where to read its figures.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CgroupPaths {
    /// The interface.
    pub version: CgroupVersion,
    /// The process's own cgroup directory.
    pub leaf: PathBuf,
    /// The mount point: ancestors are read up to and including it.
    pub mount: PathBuf,
}

/// One line of `/proc/self/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcCgroup<'a> {
    pub(crate) hierarchy: &'a str,
    pub(crate) controllers: &'a str,
    pub(crate) path: &'a str,
}

/// Parses `/proc/self/cgroup` (`id:controllers:path` per line); malformed
/// lines are skipped.
pub(crate) fn parse_proc_cgroup(text: &str) -> Vec<ProcCgroup<'_>> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            Some(ProcCgroup {
                hierarchy: parts.next()?,
                controllers: parts.next()?,
                path: parts.next()?,
            })
        })
        .collect()
}

/// A cgroup filesystem mount, from `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CgroupMount {
    /// The part of the hierarchy the mount shows (`/` unless bind-mounted).
    pub(crate) root: String,
    pub(crate) mount_point: PathBuf,
    pub(crate) version: CgroupVersion,
    /// Super options, e.g. `rw,memory` for a v1 memory mount.
    pub(crate) options: String,
}

/// Parses the cgroup mounts out of `/proc/self/mountinfo`.
pub(crate) fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    text.lines()
        .filter_map(|line| {
            // "36 25 0:32 / /sys/fs/cgroup/memory rw,relatime shared:1 - cgroup cgroup rw,memory"
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let mut right = right.split(' ');
            let fstype = right.next()?;
            let _source = right.next()?;
            let options = right.next().unwrap_or("");
            let version = match fstype {
                "cgroup" => CgroupVersion::V1,
                "cgroup2" => CgroupVersion::V2,
                _ => return None,
            };
            Some(CgroupMount {
                root: unescape_mount(left.get(3)?),
                mount_point: PathBuf::from(unescape_mount(left.get(4)?)),
                version,
                options: options.to_string(),
            })
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as octal (`\040`).
fn unescape_mount(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(c as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Works out the process's memory cgroup directory from the contents of
/// `/proc/self/cgroup` and `/proc/self/mountinfo`. A v1 memory controller
/// wins over v2 (on hybrid systems the v2 tree has no memory controller);
/// v2 is used when its mount lists `memory` in `cgroup.controllers`, which
/// `v2_has_memory` checks.
pub(crate) fn locate(
    proc_cgroup: &str,
    mountinfo: &str,
    v2_has_memory: impl Fn(&Path) -> bool,
) -> Option<CgroupPaths> {
    let entries = parse_proc_cgroup(proc_cgroup);
    let mounts = parse_mountinfo(mountinfo);

    let v1 = entries
        .iter()
        .find(|e| e.controllers.split(',').any(|c| c == "memory"))
        .and_then(|e| {
            let m = mounts.iter().find(|m| {
                m.version == CgroupVersion::V1 && m.options.split(',').any(|o| o == "memory")
            })?;
            Some(paths(CgroupVersion::V1, m, e.path))
        });
    if v1.is_some() {
        return v1;
    }
    let e = entries
        .iter()
        .find(|e| e.hierarchy == "0" && e.controllers.is_empty())?;
    let m = mounts
        .iter()
        .find(|m| m.version == CgroupVersion::V2 && v2_has_memory(&m.mount_point))?;
    Some(paths(CgroupVersion::V2, m, e.path))
}

/// The leaf directory: the cgroup path relative to what the mount shows.
fn paths(version: CgroupVersion, mount: &CgroupMount, cgroup_path: &str) -> CgroupPaths {
    // In a container with its own cgroup namespace the path is "/"; without
    // one, the mount may show a sub-tree (root "/docker/abc") of which the
    // process path is a descendant.
    let relative = cgroup_path
        .strip_prefix(mount.root.as_str())
        .unwrap_or(cgroup_path)
        .trim_start_matches('/');
    let mut leaf = mount.mount_point.clone();
    if !relative.is_empty() {
        leaf.push(relative);
    }
    if !leaf.is_dir() && leaf != mount.mount_point {
        // A namespaced path that does not exist under the mount: the mount
        // itself is the process's cgroup.
        leaf = mount.mount_point.clone();
    }
    CgroupPaths {
        version,
        leaf,
        mount: mount.mount_point.clone(),
    }
}

/// The smaller of two optional limits (`None` is no limit).
fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Parses a limit file: `max` (v2) or a value at or above 2^62 (v1's
/// "unlimited" is 2^63 rounded down to a page) means no limit.
pub(crate) fn parse_limit(text: &str) -> Option<Option<u64>> {
    let t = text.trim();
    if t == "max" {
        return Some(None);
    }
    t.parse().ok().map(limit_value)
}

/// A limit value as a limit: v1 writes "unlimited" as 2^63 rounded down to a
/// page, so anything at or above 2^62 is no limit.
fn limit_value(v: u64) -> Option<u64> {
    (v < 1 << 62).then_some(v)
}

/// Reads one `key value` field of `memory.stat`.
pub(crate) fn parse_stat_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

impl CgroupPaths {
    /// The directories of a cgroup at `leaf` under the mount point `mount`
    /// (for unusual mounts, and tests).
    pub fn new(
        version: CgroupVersion,
        leaf: impl Into<PathBuf>,
        mount: impl Into<PathBuf>,
    ) -> Self {
        CgroupPaths {
            version,
            leaf: leaf.into(),
            mount: mount.into(),
        }
    }

    /// Finds the current process's memory cgroup; `None` when it has none
    /// (not Linux, no cgroup filesystem, or no memory controller).
    pub fn discover() -> Option<Self> {
        let proc_cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        locate(&proc_cgroup, &mountinfo, |mount| {
            std::fs::read_to_string(mount.join("cgroup.controllers"))
                .map(|c| c.split_whitespace().any(|c| c == "memory"))
                .unwrap_or(false)
        })
    }

    /// Reads the cgroup's figures now; `None` when the files cannot be read.
    pub fn read(&self) -> Option<CgroupMemory> {
        self.read_with(|p| std::fs::read_to_string(p).ok())
    }

    /// [`read`](Self::read) through a caller's file reader.
    pub(crate) fn read_with(
        &self,
        read_file: impl Fn(&Path) -> Option<String>,
    ) -> Option<CgroupMemory> {
        let (limit_file, usage_file, inactive_key) = match self.version {
            CgroupVersion::V1 => (
                "memory.limit_in_bytes",
                "memory.usage_in_bytes",
                "total_inactive_file",
            ),
            CgroupVersion::V2 => ("memory.max", "memory.current", "inactive_file"),
        };
        let read = |dir: &Path, file: &str| read_file(&dir.join(file));
        let usage_bytes = read(&self.leaf, usage_file)?.trim().parse().ok()?;
        let stat = read(&self.leaf, "memory.stat").unwrap_or_default();
        let inactive_file_bytes = parse_stat_field(&stat, inactive_key).unwrap_or(0);

        let limit = match self.version {
            // v1 reports the effective limit of the whole path (levels above
            // what a container can see included) as hierarchical_memory_limit;
            // the leaf's own file is read too in case use_hierarchy is off.
            CgroupVersion::V1 => {
                let own = read(&self.leaf, limit_file)
                    .as_deref()
                    .and_then(parse_limit)
                    .flatten();
                let hierarchical =
                    parse_stat_field(&stat, "hierarchical_memory_limit").and_then(limit_value);
                min_opt(own, hierarchical)
            }
            // v2 has no such field: walk from the leaf up to the mount point.
            CgroupVersion::V2 => {
                let mut limit = None;
                let mut dir = Some(self.leaf.as_path());
                while let Some(d) = dir {
                    let here = read(d, limit_file)
                        .as_deref()
                        .and_then(parse_limit)
                        .flatten();
                    limit = min_opt(limit, here);
                    if d == self.mount {
                        break;
                    }
                    dir = d.parent();
                }
                limit
            }
        };
        Some(CgroupMemory {
            version: self.version,
            limit_bytes: limit,
            usage_bytes,
            inactive_file_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::write_tree;

    const V1_CGROUP: &str = include_str!("../../tests/fixtures/cgroup/v1/proc_self_cgroup");
    const V1_MOUNTINFO: &str = include_str!("../../tests/fixtures/cgroup/v1/mountinfo");
    const V1_STAT: &str = include_str!("../../tests/fixtures/cgroup/v1/memory.stat");
    const V2_CGROUP: &str = include_str!("../../tests/fixtures/cgroup/v2/proc_self_cgroup");
    const V2_MOUNTINFO: &str = include_str!("../../tests/fixtures/cgroup/v2/mountinfo");
    const V2_STAT: &str = include_str!("../../tests/fixtures/cgroup/v2/memory.stat");

    #[test]
    fn v1_memory_controller_is_found_on_a_hybrid_system() {
        // The fixture machine also mounts a v2 tree; v1 has the memory controller.
        let p = locate(V1_CGROUP, V1_MOUNTINFO, |_| true).unwrap();
        assert_eq!(p.version, CgroupVersion::V1);
        assert_eq!(p.mount, Path::new("/sys/fs/cgroup/memory"));
        assert!(p.leaf.starts_with("/sys/fs/cgroup/memory"));
    }

    #[test]
    fn v2_is_used_when_its_tree_has_the_memory_controller() {
        let p = locate(V2_CGROUP, V2_MOUNTINFO, |_| true).unwrap();
        assert_eq!(p.version, CgroupVersion::V2);
        assert_eq!(p.mount, Path::new("/sys/fs/cgroup"));
        assert!(locate(V2_CGROUP, V2_MOUNTINFO, |_| false).is_none());
    }

    #[test]
    fn a_bind_mounted_subtree_maps_the_path_under_the_mount() {
        let mountinfo =
            "35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let cgroup = "4:memory:/docker/abc\n";
        let p = locate(cgroup, mountinfo, |_| false).unwrap();
        // "/docker/abc" relative to the mount root "/docker/abc" is the mount itself.
        assert_eq!(p.leaf, Path::new("/sys/fs/cgroup/memory"));
    }

    #[test]
    fn stat_fields_are_read_from_real_files() {
        assert_eq!(
            parse_stat_field(V1_STAT, "total_inactive_file"),
            Some(1_220_784_128)
        );
        assert_eq!(
            parse_stat_field(V1_STAT, "hierarchical_memory_limit"),
            Some(9_223_372_036_854_771_712)
        );
        assert_eq!(
            parse_stat_field(V2_STAT, "inactive_file"),
            Some(125_829_120)
        );
        assert_eq!(parse_stat_field(V2_STAT, "no_such_key"), None);
        // A key that is a prefix of another must not match it.
        assert_eq!(
            parse_stat_field("inactive_file_x 5\ninactive_file 7\n", "inactive_file"),
            Some(7)
        );
    }

    #[test]
    fn limits_max_and_near_2_pow_63_are_unlimited() {
        assert_eq!(parse_limit("max\n"), Some(None));
        assert_eq!(parse_limit("9223372036854771712\n"), Some(None));
        assert_eq!(parse_limit("314572800\n"), Some(Some(314_572_800)));
        assert_eq!(parse_limit("garbage"), None);
        assert_eq!(parse_limit(""), None);
        assert_eq!(parse_limit("-1"), None);
    }

    #[test]
    fn garbage_never_panics() {
        for junk in [
            "",
            "\n\n",
            ":::",
            "0::",
            "x",
            "1:memory",
            "\u{0}\u{ff}",
            "a - b",
        ] {
            let _ = parse_proc_cgroup(junk);
            let _ = parse_mountinfo(junk);
            let _ = parse_stat_field(junk, "inactive_file");
            let _ = locate(junk, junk, |_| true);
            let _ = unescape_mount(junk);
        }
        assert_eq!(unescape_mount(r"/a\040b\"), "/a b\\");
    }

    #[test]
    fn v2_effective_limit_is_the_smallest_up_the_hierarchy() {
        let root = write_tree(&[
            ("memory.max", "max\n"),
            ("pod/memory.max", "314572800\n"),
            ("pod/ctr/memory.max", "max\n"),
            ("pod/ctr/memory.current", "209715200\n"),
            ("pod/ctr/memory.stat", V2_STAT),
        ]);
        let paths = CgroupPaths {
            version: CgroupVersion::V2,
            leaf: root.path().join("pod/ctr"),
            mount: root.path().to_path_buf(),
        };
        let m = paths.read().unwrap();
        assert_eq!(m.limit_bytes, Some(314_572_800));
        assert_eq!(m.usage_bytes, 209_715_200);
        assert_eq!(m.inactive_file_bytes, 125_829_120);
        assert_eq!(m.working_set_bytes(), 209_715_200 - 125_829_120);
    }

    #[test]
    fn v1_uses_limit_files_and_the_hierarchical_limit() {
        let stat = "total_inactive_file 100\nhierarchical_memory_limit 536870912\n";
        let root = write_tree(&[
            ("memory.limit_in_bytes", "9223372036854771712\n"),
            ("job/memory.limit_in_bytes", "9223372036854771712\n"),
            ("job/memory.usage_in_bytes", "1000\n"),
            ("job/memory.stat", stat),
        ]);
        let paths = CgroupPaths {
            version: CgroupVersion::V1,
            leaf: root.path().join("job"),
            mount: root.path().to_path_buf(),
        };
        let m = paths.read().unwrap();
        assert_eq!(
            m.limit_bytes,
            Some(536_870_912),
            "limit set above the visible tree"
        );
        assert_eq!(m.working_set_bytes(), 900);
    }

    #[test]
    fn missing_or_garbage_files_read_as_unknown() {
        let root = write_tree(&[("memory.max", "lots\n"), ("memory.current", "12\n")]);
        let paths = CgroupPaths {
            version: CgroupVersion::V2,
            leaf: root.path().to_path_buf(),
            mount: root.path().to_path_buf(),
        };
        let m = paths.read().unwrap();
        assert_eq!(
            (m.limit_bytes, m.usage_bytes, m.inactive_file_bytes),
            (None, 12, 0)
        );

        std::fs::write(root.path().join("memory.current"), "twelve").unwrap();
        assert_eq!(paths.read(), None);
        let gone = CgroupPaths {
            version: CgroupVersion::V1,
            leaf: root.path().join("nope"),
            mount: root.path().join("nope"),
        };
        assert_eq!(gone.read(), None);
    }
}

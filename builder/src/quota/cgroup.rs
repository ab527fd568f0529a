//! One cgroup per build: its process and memory limits, how a build past them is recognised,
//! and how the cgroup is emptied and removed.
//!
//! The unified hierarchy (cgroup v2) is used when this process's cgroup there offers both the
//! `pids` and `memory` controllers; otherwise the v1 `pids` and `memory` hierarchies, each on its
//! own. Build cgroups are made under this process's own cgroup of each hierarchy (read from
//! `/proc/self/cgroup`), so that a server confined by its supervisor confines its builds too.

use super::Exceeded;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use platform::byte_size::ByteSize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One line of `/proc/self/mountinfo` that mounts a cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    /// `None` for the unified hierarchy; the v1 controllers (`pids`, `memory`, …) otherwise.
    pub controllers: Option<Vec<String>>,
    /// The directory of the hierarchy that is mounted (`/` unless in a container).
    pub root: String,
    pub mount_point: PathBuf,
}

/// One line of `/proc/self/cgroup`: a hierarchy and this process's cgroup in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// Empty for the unified hierarchy (`0::/path`).
    pub controllers: Vec<String>,
    pub path: String,
}

/// The cgroup mounts in `/proc/self/mountinfo`.
pub fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    let mut mounts = Vec::new();
    for line in text.lines() {
        // `id parent major:minor root mount_point options [optional…] - fstype source super_options`
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let (Some(root), Some(mount_point), Some(fstype)) = (left.get(3), left.get(4), right.first()) else {
            continue;
        };
        let controllers = match *fstype {
            "cgroup2" => None,
            "cgroup" => Some(
                right
                    .get(2)
                    .unwrap_or(&"")
                    .split(',')
                    .filter(|o| !matches!(*o, "rw" | "ro") && !o.contains('='))
                    .map(str::to_owned)
                    .collect(),
            ),
            _ => continue,
        };
        mounts.push(CgroupMount {
            controllers,
            root: unescape(root),
            mount_point: PathBuf::from(unescape(mount_point)),
        });
    }
    mounts
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The lines of `/proc/self/cgroup`.
pub fn parse_proc_cgroup(text: &str) -> Vec<Membership> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            Some(Membership {
                controllers: controllers
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect(),
                path: path.to_owned(),
            })
        })
        .collect()
}

/// This process's own cgroup directories, where its build cgroups go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    pub unified: Option<PathBuf>,
    pub pids_v1: Option<PathBuf>,
    pub memory_v1: Option<PathBuf>,
}

/// Where this process's cgroups are, from its memberships and the mounts it sees.
pub fn locate(mounts: &[CgroupMount], memberships: &[Membership]) -> Layout {
    let dir = |mount: &CgroupMount, path: &str| -> Option<PathBuf> {
        // Inside a container the mount's root is the container's cgroup, and the membership
        // paths are below it.
        let rel = match mount.root.as_str() {
            "/" => path,
            root => path.strip_prefix(root).filter(|r| r.is_empty() || r.starts_with('/'))?,
        };
        let rel = rel.trim_start_matches('/');
        if rel.split('/').any(|c| c == "..") {
            return None;
        }
        Some(if rel.is_empty() {
            mount.mount_point.clone()
        } else {
            mount.mount_point.join(rel)
        })
    };
    let v1 = |controller: &str| {
        let member = memberships
            .iter()
            .find(|m| m.controllers.iter().any(|c| c == controller))?;
        let mount = mounts.iter().find(|m| {
            m.controllers
                .as_ref()
                .is_some_and(|cs| cs.iter().any(|c| c == controller))
        })?;
        dir(mount, &member.path)
    };
    let unified = memberships
        .iter()
        .find(|m| m.controllers.is_empty())
        .and_then(|member| {
            let mount = mounts.iter().find(|m| m.controllers.is_none())?;
            dir(mount, &member.path)
        });
    Layout {
        unified,
        pids_v1: v1("pids"),
        memory_v1: v1("memory"),
    }
}

/// The value of `key` in a flat-keyed cgroup file (`key value` per line).
pub fn counter(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Unified,
    PidsV1,
    MemoryV1,
}

/// A build's cgroup, one directory per hierarchy in use.
#[derive(Debug)]
pub struct BuildCgroup {
    dirs: Vec<(Kind, PathBuf)>,
    pids_max: u64,
    memory_max: ByteSize,
}

impl BuildCgroup {
    /// Makes the build's cgroup named `name` (replacing a stale one of the same name)
    /// with its limits, in every hierarchy `layout` offers. Fails when none can be made; says
    /// in the second value what is not enforced when only some could.
    pub fn create(
        layout: &Layout,
        name: &str,
        pids_max: u64,
        memory_max: ByteSize,
    ) -> Result<(Self, Option<String>), String> {
        let mut cg = Self {
            dirs: Vec::new(),
            pids_max,
            memory_max,
        };
        let unified = layout.unified.as_deref().map(enable_unified);
        if let Some(Ok(parent)) = &unified {
            cg.add(Kind::Unified, &parent.join(name))?;
            return Ok((cg, None));
        }
        let mut missing = Vec::new();
        for (kind, parent, what) in [
            (Kind::PidsV1, &layout.pids_v1, "processes"),
            (Kind::MemoryV1, &layout.memory_v1, "memory"),
        ] {
            match parent {
                Some(parent) => {
                    if let Err(e) = cg.add(kind, &parent.join(name)) {
                        missing.push(format!("{what} ({e})"));
                    }
                }
                None => missing.push(format!("{what} (no cgroup controller)")),
            }
        }
        let unified_why = match unified {
            Some(Err(e)) => format!("; cgroup v2: {e}"),
            _ => String::new(),
        };
        if cg.dirs.is_empty() {
            return Err(format!("no usable cgroup: {}{unified_why}", missing.join(", ")));
        }
        let partial = (!missing.is_empty()).then(|| format!("not enforced: {}", missing.join(", ")));
        Ok((cg, partial))
    }

    fn add(&mut self, kind: Kind, dir: &Path) -> Result<(), String> {
        if dir.exists() {
            remove_dir(dir);
        }
        std::fs::create_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let limits = match kind {
            Kind::Unified => write(dir, "pids.max", self.pids_max)
                .and_then(|()| write(dir, "memory.max", self.memory_max.bytes()))
                .and_then(|()| write_optional(dir, "memory.swap.max", 0)),
            Kind::PidsV1 => write(dir, "pids.max", self.pids_max),
            // The memory limit first: memsw (memory + swap) may not go below it.
            Kind::MemoryV1 => write(dir, "memory.limit_in_bytes", self.memory_max.bytes())
                .and_then(|()| write_optional(dir, "memory.memsw.limit_in_bytes", self.memory_max.bytes())),
        };
        if let Err(e) = limits {
            let _ = std::fs::remove_dir(dir);
            return Err(e);
        }
        self.dirs.push((kind, dir.to_owned()));
        Ok(())
    }

    /// The `cgroup.procs` files a build's process writes itself into.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|(_, d)| d.join("cgroup.procs")).collect()
    }

    /// Which limit the build went past, if any: a process killed for memory, a fork refused.
    pub fn exceeded(&self) -> Option<Exceeded> {
        for (kind, dir) in &self.dirs {
            let read = |file: &str| std::fs::read_to_string(dir.join(file)).unwrap_or_default();
            let (oom, forks_refused) = match kind {
                Kind::Unified => (
                    counter(&read("memory.events"), "oom_kill"),
                    counter(&read("pids.events"), "max"),
                ),
                Kind::PidsV1 => (None, counter(&read("pids.events"), "max")),
                Kind::MemoryV1 => {
                    let control = read("memory.oom_control");
                    // Kernels before 4.13 have no oom_kill count, only whether it is under OOM.
                    (
                        counter(&control, "oom_kill").or_else(|| counter(&control, "under_oom")),
                        None,
                    )
                }
            };
            if oom.is_some_and(|n| n > 0) {
                return Some(Exceeded::Memory(self.memory_max));
            }
            if forks_refused.is_some_and(|n| n > 0) {
                return Some(Exceeded::Pids(self.pids_max));
            }
        }
        None
    }

    /// Kills every process in the cgroup, again and again until none is left (a process may
    /// fork while the others die; the pids limit bounds how many it can).
    pub fn kill_all(&self) {
        for (kind, dir) in &self.dirs {
            if *kind == Kind::Unified && std::fs::write(dir.join("cgroup.kill"), "1").is_ok() {
                continue;
            }
            for _ in 0..200 {
                let pids = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                let pids: Vec<i32> = pids.lines().filter_map(|l| l.trim().parse().ok()).collect();
                if pids.is_empty() {
                    break;
                }
                for pid in pids {
                    // ESRCH: it died meanwhile.
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    /// Kills what is left and removes the cgroup.
    pub fn remove(&self) {
        self.kill_all();
        for (_, dir) in &self.dirs {
            remove_dir(dir);
        }
    }
}

/// The name of a build's cgroup: of this process (whose pid it carries, so that another can
/// tell when it is stale) and of the build.
pub fn build_cgroup_name(build: &str) -> String {
    format!("cloudrunr-{}-{build}", std::process::id())
}

/// The pid of the process that made the build cgroup `name`.
fn owner_of(name: &str) -> Option<u32> {
    let (pid, _build) = name.strip_prefix("cloudrunr-")?.split_once('-')?;
    pid.parse().ok()
}

/// Removes the build cgroups of processes that are gone (killed before they could clean up):
/// what is left in them is killed first. Those of live processes, this one's included, stay.
pub fn sweep_stale(layout: &Layout) {
    let parents = [&layout.unified, &layout.pids_v1, &layout.memory_v1];
    for parent in parents.into_iter().flatten() {
        let Ok(entries) = std::fs::read_dir(parent) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(owner) = owner_of(&name.to_string_lossy()) else {
                continue;
            };
            if !Path::new(&format!("/proc/{owner}")).exists() && entry.path().is_dir() {
                tracing::info!("removing the stale build cgroup {}", entry.path().display());
                remove_dir(&entry.path());
            }
        }
    }
}

/// Empties and removes a cgroup directory; its killed processes may take a moment to be reaped.
fn remove_dir(dir: &Path) {
    for attempt in 0..100 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                if attempt % 10 == 0 {
                    let pids = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                    for pid in pids.lines().filter_map(|l| l.trim().parse().ok()) {
                        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                    }
                }
                if attempt == 99 {
                    tracing::warn!("cannot remove the build cgroup {}: {e}", dir.display());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn write(dir: &Path, file: &str, value: u64) -> Result<(), String> {
    std::fs::write(dir.join(file), value.to_string()).map_err(|e| format!("cannot set {file}: {e}"))
}

/// Writes a limit that this kernel may not have (swap accounting off, say).
fn write_optional(dir: &Path, file: &str, value: u64) -> Result<(), String> {
    if dir.join(file).exists() {
        write(dir, file, value)
    } else {
        Ok(())
    }
}

/// Makes `pids` and `memory` available to children of this process's unified cgroup: enabled in
/// its `cgroup.subtree_control`. A cgroup with processes of its own cannot enable controllers for
/// its children, so when that is refused this process moves into a leaf (`cloudrunr-server`) of
/// its cgroup first. Returns the directory under which build cgroups go.
fn enable_unified(own: &Path) -> Result<PathBuf, String> {
    let available = std::fs::read_to_string(own.join("cgroup.controllers")).map_err(|e| e.to_string())?;
    let has = |c: &str| available.split_whitespace().any(|a| a == c);
    if !(has("pids") && has("memory")) {
        return Err(format!("the controllers here are {:?}", available.trim()));
    }
    let enabled = |dir: &Path| {
        let s = std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
        s.split_whitespace().any(|c| c == "pids") && s.split_whitespace().any(|c| c == "memory")
    };
    if enabled(own) {
        return Ok(own.to_owned());
    }
    let enable = || std::fs::write(own.join("cgroup.subtree_control"), "+pids +memory");
    if enable().is_ok() {
        return Ok(own.to_owned());
    }
    let leaf = own.join("cloudrunr-server");
    match std::fs::create_dir(&leaf) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e.to_string()),
        _ => {}
    }
    std::fs::write(leaf.join("cgroup.procs"), std::process::id().to_string())
        .map_err(|e| format!("cannot move into {}: {e}", leaf.display()))?;
    enable().map_err(|e| format!("cannot enable pids and memory in {}: {e}", own.display()))?;
    Ok(own.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO_V1: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
22 1 254:0 / / rw,relatime - ext4 /dev/vda rw
";

    const PROC_CGROUP_V1: &str = "\
9:name=systemd:/
8:pids:/
4:memory:/process_api/26b49e
1:cpu:/
0::/
";

    #[test]
    fn finds_v1_hierarchies_under_our_own_cgroup() {
        let mounts = parse_mountinfo(MOUNTINFO_V1);
        assert_eq!(mounts.len(), 5, "{mounts:?}");
        assert_eq!(mounts[1].controllers, Some(vec!["memory".to_owned()]));
        assert_eq!(mounts[4].controllers, None, "the unified hierarchy");
        let layout = locate(&mounts, &parse_proc_cgroup(PROC_CGROUP_V1));
        assert_eq!(layout.pids_v1, Some(PathBuf::from("/sys/fs/cgroup/pids")));
        assert_eq!(
            layout.memory_v1,
            Some(PathBuf::from("/sys/fs/cgroup/memory/process_api/26b49e"))
        );
        assert_eq!(layout.unified, Some(PathBuf::from("/sys/fs/cgroup/unified")));
    }

    #[test]
    fn finds_the_unified_hierarchy() {
        let mounts = parse_mountinfo("29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n");
        let layout = locate(&mounts, &parse_proc_cgroup("0::/system.slice/cloudrunr.service\n"));
        assert_eq!(
            layout.unified,
            Some(PathBuf::from("/sys/fs/cgroup/system.slice/cloudrunr.service"))
        );
        assert_eq!(layout.pids_v1, None);
        assert_eq!(layout.memory_v1, None);
    }

    #[test]
    fn paths_inside_a_container_are_relative_to_the_mount_root() {
        let mounts = parse_mountinfo("50 40 0:30 /docker/abc /sys/fs/cgroup/pids ro - cgroup cgroup rw,pids\n");
        let inside = locate(&mounts, &parse_proc_cgroup("3:pids:/docker/abc/build\n"));
        assert_eq!(inside.pids_v1, Some(PathBuf::from("/sys/fs/cgroup/pids/build")));
        let at_root = locate(&mounts, &parse_proc_cgroup("3:pids:/docker/abc\n"));
        assert_eq!(at_root.pids_v1, Some(PathBuf::from("/sys/fs/cgroup/pids")));
        // A cgroup outside the mounted part cannot be reached.
        let outside = locate(&mounts, &parse_proc_cgroup("3:pids:/docker/abcdef\n"));
        assert_eq!(outside.pids_v1, None);
        let escaping = locate(&mounts, &parse_proc_cgroup("3:pids:/docker/abc/../x\n"));
        assert_eq!(escaping.pids_v1, None);
    }

    #[test]
    fn mount_points_are_unescaped() {
        let mounts = parse_mountinfo("50 40 0:30 / /mnt/cg\\040v1 rw - cgroup cgroup rw,memory\n");
        assert_eq!(mounts[0].mount_point, PathBuf::from("/mnt/cg v1"));
        assert_eq!(unescape("a\\134b\\"), "a\\b\\");
    }

    #[test]
    fn cgroup_names_carry_their_owner() {
        let name = build_cgroup_name("9hp040vbmntpqarq40e0");
        assert_eq!(owner_of(&name), Some(std::process::id()));
        assert_eq!(owner_of("cloudrunr-12-abc"), Some(12));
        assert_eq!(owner_of("cloudrunr-server"), None);
        assert_eq!(owner_of("user.slice"), None);
    }

    #[test]
    fn sweeping_removes_only_the_cgroups_of_dead_processes() {
        let root = tempfile::tempdir().unwrap();
        let layout = Layout {
            unified: None,
            pids_v1: Some(root.path().to_owned()),
            memory_v1: None,
        };
        // Past the largest pid Linux hands out: nobody's.
        let dead = root.path().join("cloudrunr-4194305-b1");
        let ours = root.path().join(build_cgroup_name("b2"));
        let other = root.path().join("cloudrunr-server");
        for d in [&dead, &ours, &other] {
            std::fs::create_dir(d).unwrap();
        }
        sweep_stale(&layout);
        assert!(!dead.exists());
        assert!(ours.exists() && other.exists());
    }

    #[test]
    fn reads_counters() {
        let oom_control = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(counter(oom_control, "oom_kill"), Some(3));
        assert_eq!(counter(oom_control, "under_oom"), Some(0));
        assert_eq!(counter("max 0\n", "max"), Some(0));
        assert_eq!(counter("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n", "max"), Some(12));
        assert_eq!(counter("", "max"), None);
    }

    #[test]
    fn a_fake_v1_hierarchy_gets_limits_and_reports_what_was_exceeded() {
        let root = tempfile::tempdir().unwrap();
        let (pids, memory) = (root.path().join("pids"), root.path().join("memory"));
        std::fs::create_dir_all(&pids).unwrap();
        std::fs::create_dir_all(&memory).unwrap();
        let layout = Layout {
            unified: None,
            pids_v1: Some(pids.clone()),
            memory_v1: Some(memory.clone()),
        };
        // A stale directory of an interrupted attempt is replaced.
        std::fs::create_dir(pids.join("b1")).unwrap();
        let (cg, partial) = BuildCgroup::create(&layout, "b1", 64, ByteSize::mib(32)).unwrap();
        assert_eq!(partial, None);
        assert_eq!(std::fs::read_to_string(pids.join("b1/pids.max")).unwrap(), "64");
        assert_eq!(
            std::fs::read_to_string(memory.join("b1/memory.limit_in_bytes")).unwrap(),
            (32 << 20).to_string()
        );
        assert_eq!(
            cg.procs_files(),
            vec![pids.join("b1/cgroup.procs"), memory.join("b1/cgroup.procs")]
        );
        assert_eq!(cg.exceeded(), None);
        std::fs::write(pids.join("b1/pids.events"), "max 0\n").unwrap();
        std::fs::write(
            memory.join("b1/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
        )
        .unwrap();
        assert_eq!(cg.exceeded(), None);
        std::fs::write(pids.join("b1/pids.events"), "max 7\n").unwrap();
        assert_eq!(cg.exceeded(), Some(Exceeded::Pids(64)));
        std::fs::write(pids.join("b1/pids.events"), "max 0\n").unwrap();
        std::fs::write(
            memory.join("b1/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        )
        .unwrap();
        assert_eq!(cg.exceeded(), Some(Exceeded::Memory(ByteSize::mib(32))));
    }

    #[test]
    fn no_hierarchy_is_an_error_that_says_why() {
        let err = BuildCgroup::create(&Layout::default(), "b", 64, ByteSize::mib(32)).unwrap_err();
        assert!(err.contains("processes (no cgroup controller)"), "{err}");
        assert!(err.contains("memory (no cgroup controller)"), "{err}");
    }
}

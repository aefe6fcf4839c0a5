//! What this machine has left: the disk under a folder and the memory. Read by the alert worker's
//! resource checks and by `/metrics`.

use std::io;
use std::path::Path;

/// Space on the file system that holds a folder, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUsage {
    pub total: u64,
    /// Not in use (including blocks reserved for the superuser).
    pub free: u64,
    /// What an unprivileged process can still write.
    pub available: u64,
}

impl DiskUsage {
    /// The share in use, from 0 to 1, as `df` counts it: used over what is used or available to users.
    pub fn used_ratio(&self) -> f64 {
        let used = self.total.saturating_sub(self.free);
        let usable = used + self.available;
        if usable == 0 {
            return 0.0;
        }
        used as f64 / usable as f64
    }
}

/// The machine's memory, in bytes (Linux `/proc/meminfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryUsage {
    pub total: u64,
    /// What can be given to new work without swapping (`MemAvailable`).
    pub available: u64,
}

impl MemoryUsage {
    pub fn used_ratio(&self) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        1.0 - self.available.min(self.total) as f64 / self.total as f64
    }
}

pub fn disk_usage(folder: &Path) -> io::Result<DiskUsage> {
    Ok(DiskUsage {
        total: fs4::total_space(folder)?,
        free: fs4::free_space(folder)?,
        available: fs4::available_space(folder)?,
    })
}

pub fn memory_usage() -> io::Result<MemoryUsage> {
    parse_meminfo(&std::fs::read_to_string("/proc/meminfo")?)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no MemTotal/MemAvailable in /proc/meminfo"))
}

fn parse_meminfo(text: &str) -> Option<MemoryUsage> {
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib * 1024)
    };
    Some(MemoryUsage { total: field("MemTotal:")?, available: field("MemAvailable:")? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_is_read_in_bytes() {
        let text = "MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    250 kB\n";
        let memory = parse_meminfo(text).unwrap();
        assert_eq!(memory, MemoryUsage { total: 1_024_000, available: 256_000 });
        assert!((memory.used_ratio() - 0.75).abs() < 1e-12);
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn this_machine_has_a_disk_and_memory() {
        let disk = disk_usage(Path::new(".")).unwrap();
        assert!(disk.total > 0 && disk.available <= disk.total, "{disk:?}");
        assert!((0.0..=1.0).contains(&disk.used_ratio()));
        let memory = memory_usage().unwrap();
        assert!(memory.total > 0 && memory.available <= memory.total, "{memory:?}");
        assert_eq!(DiskUsage { total: 0, free: 0, available: 0 }.used_ratio(), 0.0);
        // 100 blocks, 30 used, 70 free of which 10 reserved: 30 / (30 + 60).
        let disk = DiskUsage { total: 100, free: 70, available: 60 };
        assert!((disk.used_ratio() - 1.0 / 3.0).abs() < 1e-12);
    }
}

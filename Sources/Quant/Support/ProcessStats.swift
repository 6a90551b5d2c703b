import Foundation

/// Resident-set numbers of this process, from /proc/self/status (Linux); 0 elsewhere.
public enum ProcessStats {
    /// Peak resident set size (VmHWM) in bytes.
    public static func peakRSS() -> Int { field("VmHWM:") }
    /// Current resident set size (VmRSS) in bytes.
    public static func currentRSS() -> Int { field("VmRSS:") }

    /// Memory this process may use at most: the machine's RAM (MemTotal), or the cgroup v2 limit
    /// (`memory.max` of this process's cgroup) when that is lower. 0 when unknown.
    public static func memoryLimit() -> Int {
        var limit = 0
        if let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) {
            for line in text.split(separator: "\n") where line.hasPrefix("MemTotal:") {
                let parts = line.split(separator: " ", omittingEmptySubsequences: true)
                if parts.count >= 2, let kb = Int(parts[1]) { limit = kb * 1024 }
            }
        }
        // "0::/PATH" names this process's cgroup v2; its memory.max is "max" or a byte count.
        if let cg = try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8),
           let line = cg.split(separator: "\n").first(where: { $0.hasPrefix("0::") }) {
            let rel = String(line.dropFirst(3))
            if let m = try? String(contentsOfFile: "/sys/fs/cgroup" + rel + "/memory.max", encoding: .utf8),
               let bytes = Int(m.trimmingCharacters(in: .whitespacesAndNewlines)), bytes > 0 {
                limit = limit > 0 ? min(limit, bytes) : bytes
            }
        }
        return limit
    }

    /// The memory budget used when the user gives none: half of `memoryLimit()`, between 256 MiB and
    /// 4 GiB, so a large input is tiled (or refused up front) instead of allocating past the machine.
    public static func defaultBudget() -> Int {
        let limit = memoryLimit()
        guard limit > 0 else { return 1 << 30 }
        return min(max(limit / 2, 256 << 20), 4 << 30)
    }

    private static func field(_ key: String) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix(key) {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if parts.count >= 2, let kb = Int(parts[1]) { return kb * 1024 }
        }
        return 0
    }
}

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
        // cgroup v2: "0::/PATH" and PATH/memory.max ("max" or bytes); v1: "N:memory:/PATH" and
        // memory/PATH/memory.limit_in_bytes (a huge number when unlimited).
        if let cg = try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8) {
            for line in cg.split(separator: "\n") {
                let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
                guard parts.count == 3 else { continue }
                let file: String
                if parts[1].isEmpty && parts[0] == "0" { file = "/sys/fs/cgroup\(parts[2])/memory.max" }
                else if parts[1].split(separator: ",").contains("memory") { file = "/sys/fs/cgroup/memory\(parts[2])/memory.limit_in_bytes" }
                else { continue }
                if let m = try? String(contentsOfFile: file, encoding: .utf8),
                   let bytes = Int(m.trimmingCharacters(in: .whitespacesAndNewlines)), bytes > 0 {
                    limit = limit > 0 ? min(limit, bytes) : bytes
                }
            }
        }
        return limit
    }

    /// The memory budget used when the user gives none: half of `memoryLimit()` (at least 256 MiB
    /// unless that is over three quarters of the limit), at most 4 GiB, so a large input is tiled (or
    /// refused up front) instead of allocating past the machine.
    public static func defaultBudget() -> Int {
        let limit = memoryLimit()
        guard limit > 0 else { return 1 << 30 }
        return min(max(limit / 2, 256 << 20), limit / 4 * 3, 4 << 30)
    }

    /// A budget the user asked for, lowered to three quarters of `memoryLimit()` when it is above
    /// that (a budget the machine or cgroup cannot give ends in an OOM kill); the note says so.
    public static func clampBudget(_ bytes: Int) -> (bytes: Int, note: String?) {
        let limit = memoryLimit()
        guard limit > 0, bytes > limit / 4 * 3 else { return (bytes, nil) }
        let use = limit / 4 * 3
        return (use, "--max-ram \(ByteSize.format(bytes)) is more than this process can use (memory limit \(ByteSize.format(limit)), "
                     + "machine or cgroup); using \(ByteSize.format(use))")
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

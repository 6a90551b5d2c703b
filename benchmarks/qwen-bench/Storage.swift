import Foundation
import Quant

/// The page cache, seen from one folder: evict its files (posix_fadvise DONTNEED, which needs no root
/// and drops clean pages that no process maps) and count how much of them is still resident (mincore).
enum PageCache {
    /// Regular files under `path` (or `path` itself), with their sizes.
    static func files(_ path: String) -> [(path: String, bytes: Int)] {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { return [] }
        let paths = isDir.boolValue
            ? (FileManager.default.enumerator(atPath: path)?.compactMap { $0 as? String }.map { path + "/" + $0 } ?? [])
            : [path]
        return paths.compactMap { p in
            var st = stat()
            guard stat(p, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
            return (p, Int(st.st_size))
        }
    }

    static func bytes(_ path: String) -> Int { files(path).reduce(0) { $0 + $1.bytes } }

    /// Drops the cached pages of every file under `path`.
    static func evict(_ path: String) throws {
        for f in files(path) {
            let fd = open(f.path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw BenchError.bad("cannot open \(f.path): \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            let rc = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
            guard rc == 0 else { throw BenchError.bad("posix_fadvise(DONTNEED) on \(f.path): \(String(cString: strerror(rc)))") }
        }
    }

    /// Bytes of the files under `path` that are in the page cache now.
    static func residentBytes(_ path: String) -> Int {
        let page = Int(getpagesize())
        var total = 0
        for f in files(path) where f.bytes > 0 {
            let fd = open(f.path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            guard let p = mmap(nil, f.bytes, PROT_READ, MAP_SHARED, fd, 0), p != MAP_FAILED else { continue }
            defer { munmap(p, f.bytes) }
            var vec = [UInt8](repeating: 0, count: (f.bytes + page - 1) / page)
            guard mincore(p, f.bytes, &vec) == 0 else { continue }
            total += vec.reduce(0) { $0 + Int($1 & 1) } * page
        }
        return total
    }
}

/// The storage's sequential read rate as a cold run sees it: a file written to `dir`, synced, evicted
/// from the page cache, then read front to back with 4 MiB `pread`s (the kernel's read-ahead helps, as
/// it helps a run that maps a pack).
struct DiskRead: Codable {
    var dir: String
    var bytes: Int
    /// MB/s (1e6 bytes) of each repetition.
    var mbPerSecond: [Double]
    var median: Double
    var best: Double
    /// Fraction of the file still cached when a timed read started (0 when the eviction worked).
    var residentAtStart: Double

    static func measure(dir: String, bytes: Int, repeats: Int) throws -> DiskRead {
        let path = dir + "/.qwen-bench-disk-\(getpid()).bin"
        defer { unlink(path) }
        let chunk = 4 << 20
        let buf = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { buf.deallocate() }
        // Incompressible bytes (a virtual disk may compress or deduplicate zeros).
        var s: UInt64 = 0x9E3779B97F4A7C15
        for i in 0..<(chunk / 8) {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17
            buf.storeBytes(of: s, toByteOffset: i * 8, as: UInt64.self)
        }
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw BenchError.bad("cannot create \(path) to measure the disk: \(String(cString: strerror(errno)))") }
        var written = 0
        while written < bytes {
            buf.storeBytes(of: UInt64(written), toByteOffset: 0, as: UInt64.self)
            let n = write(fd, buf, min(chunk, bytes - written))
            guard n > 0 else { close(fd); throw BenchError.bad("cannot write \(path): \(String(cString: strerror(errno)))") }
            written += n
        }
        guard fsync(fd) == 0 else { close(fd); throw BenchError.bad("fsync \(path): \(String(cString: strerror(errno)))") }
        close(fd)
        var rates: [Double] = [], resident: [Double] = []
        for _ in 0..<max(1, repeats) {
            try PageCache.evict(path)
            resident.append(Double(PageCache.residentBytes(path)) / Double(bytes))
            let rfd = open(path, O_RDONLY | O_CLOEXEC)
            guard rfd >= 0 else { throw BenchError.bad("cannot open \(path): \(String(cString: strerror(errno)))") }
            let t0 = DispatchTime.now().uptimeNanoseconds
            var off = 0
            while off < bytes {
                let n = pread(rfd, buf, chunk, off_t(off))
                guard n > 0 else { close(rfd); throw BenchError.bad("read \(path) at \(off): \(String(cString: strerror(errno)))") }
                off += n
            }
            let secs = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            close(rfd)
            rates.append(Double(bytes) / secs / 1e6)
        }
        try PageCache.evict(path)
        let sorted = rates.sorted()
        return DiskRead(dir: dir, bytes: bytes, mbPerSecond: rates, median: sorted[sorted.count / 2], best: sorted.last!,
                        residentAtStart: resident.max() ?? 0)
    }

    var line: String {
        String(format: "disk sequential read (%@, %@ file, page cache evicted): median %.0f MB/s, best %.0f MB/s",
               dir, ByteSize.format(bytes), median, best)
    }
}

/// A memory cgroup with a limit (page cache included), for runs that must behave like a small box:
/// cgroup v2 (`memory.max`) where this process is in a v2 hierarchy with the memory controller,
/// else v1 (`memory.limit_in_bytes`). `make` returns nil with the reason when neither can be created.
final class MemoryCgroup {
    let path: String
    let v2: Bool
    let limit: Int

    private init(path: String, v2: Bool, limit: Int) { self.path = path; self.v2 = v2; self.limit = limit }

    static func make(limit: Int, tag: String) -> (MemoryCgroup?, String) {
        var candidates: [(String, Bool)] = []
        if let c = try? String(contentsOfFile: "/sys/fs/cgroup/cgroup.controllers", encoding: .utf8),
           c.split(separator: " ").contains(where: { $0.trimmingCharacters(in: .whitespacesAndNewlines) == "memory" }) {
            candidates.append(("/sys/fs/cgroup", true))
        }
        if let own = try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8) {
            for line in own.split(separator: "\n") {
                let f = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
                if f.count == 3, f[1].split(separator: ",").contains("memory") {
                    candidates.append(("/sys/fs/cgroup/memory" + f[2], false))
                }
            }
        }
        var why = "no cgroup memory controller found (neither v2 /sys/fs/cgroup/cgroup.controllers nor a v1 memory hierarchy)"
        for (parent, v2) in candidates {
            let dir = parent + "/qwen-bench-\(tag)-\(getpid())"
            if mkdir(dir, 0o755) != 0 && errno != EEXIST {
                why = "cannot create \(dir): \(String(cString: strerror(errno))) (needs root and a writable cgroup memory controller)"
                continue
            }
            let g = MemoryCgroup(path: dir, v2: v2, limit: limit)
            do {
                try g.write(v2 ? "memory.max" : "memory.limit_in_bytes", String(limit))
                if v2 { try? g.write("memory.swap.max", "0") }
                return (g, "")
            } catch {
                why = "\(error)"
                rmdir(dir)
            }
        }
        return (nil, why)
    }

    private func write(_ file: String, _ value: String) throws {
        let p = path + "/" + file
        guard let h = FileHandle(forWritingAtPath: p) else { throw BenchError.bad("cannot open \(p) for writing") }
        defer { try? h.close() }
        do { try h.write(contentsOf: Data(value.utf8)) } catch { throw BenchError.bad("cannot write \(value) to \(p): \(error)") }
    }

    private func read(_ file: String) -> String? { try? String(contentsOfFile: path + "/" + file, encoding: .utf8) }

    /// Highest memory use of the group (page cache included) since the last reset, when the kernel keeps it.
    var peakBytes: Int? {
        (read(v2 ? "memory.peak" : "memory.max_usage_in_bytes")).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// OOM kills inside the group so far (v2 memory.events, v1 memory.oom_control on kernels that count them).
    var oomKills: Int? {
        guard let s = read(v2 ? "memory.events" : "memory.oom_control") else { return nil }
        for line in s.split(separator: "\n") where line.hasPrefix("oom_kill ") {
            return Int(line.split(separator: " ").last ?? "")
        }
        return nil
    }

    func resetPeak() {
        if !v2 { try? write("memory.max_usage_in_bytes", "0") }
    }

    deinit { rmdir(path) }
}

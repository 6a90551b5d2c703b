import Foundation

/// Writes an output file or folder under a temporary name beside the target and renames it into
/// place only when everything succeeded, so an interrupted or failed run never leaves a
/// half-written output that looks complete.
public struct AtomicOutput {
    public let target: URL
    public let temporary: URL

    /// - Parameter force: replace an existing target; otherwise an existing target is an error.
    public init(target: URL, force: Bool) throws {
        self.target = target.standardizedFileURL
        let fm = FileManager.default
        if fm.fileExists(atPath: self.target.path) && !force {
            throw AtomicOutputError.exists(self.target.path)
        }
        let dir = self.target.deletingLastPathComponent()
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: dir.path, isDirectory: &isDir), isDir.boolValue else {
            throw AtomicOutputError.noParent(dir.path)
        }
        AtomicOutput.removeLeftovers(of: self.target)
        let tmpName = ".\(self.target.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        self.temporary = dir.appendingPathComponent(tmpName)
    }

    /// Removes what a killed earlier run left beside `target`: `.NAME.tmp-PID-RAND` (an unfinished
    /// output) and `.NAME.old-PID` (the previous output, moved aside during a replace) of processes
    /// that no longer exist. A live process's temporaries are left alone. If `target` is missing while
    /// a dead process's `.old` copy exists, the replace was interrupted between its two renames: the
    /// old output is put back instead of being deleted.
    public static func removeLeftovers(of target: URL) {
        let fm = FileManager.default
        let dir = target.deletingLastPathComponent()
        let base = "." + target.lastPathComponent
        guard let names = try? fm.contentsOfDirectory(atPath: dir.path) else { return }
        for name in names where name.hasPrefix(base + ".tmp-") || name.hasPrefix(base + ".old-") {
            let rest = name.dropFirst(base.count + 5)
            guard let pid = Int32(rest.split(separator: "-", omittingEmptySubsequences: false).first ?? ""), pid > 0,
                  pid != getpid(), kill(pid, 0) != 0, errno == ESRCH else { continue }
            let url = dir.appendingPathComponent(name)
            if name.hasPrefix(base + ".old-") && !fm.fileExists(atPath: target.path) {
                try? fm.moveItem(at: url, to: target)
            } else {
                try? fm.removeItem(at: url)
            }
        }
    }

    /// Atomically replaces `target` with `temporary`. The temporary's data (every file, for a folder)
    /// is flushed to disk first and the parent folder after the rename, so a power cut leaves either
    /// the old output or the complete new one.
    public func commit() throws {
        let fm = FileManager.default
        try AtomicOutput.sync(temporary)
        if fm.fileExists(atPath: target.path) {
            // Move the old output aside first so a failed rename cannot lose both.
            let old = target.deletingLastPathComponent()
                .appendingPathComponent(".\(target.lastPathComponent).old-\(getpid())")
            try? fm.removeItem(at: old)
            try fm.moveItem(at: target, to: old)
            do { try fm.moveItem(at: temporary, to: target) } catch {
                try? fm.moveItem(at: old, to: target)
                throw error
            }
            try? fm.removeItem(at: old)
        } else {
            guard rename(temporary.path, target.path) == 0 else {
                throw AtomicOutputError.rename(temporary.path, target.path, String(cString: strerror(errno)))
            }
        }
        try AtomicOutput.sync(target.deletingLastPathComponent(), recursive: false)
    }

    /// fsync of a file, or of a folder and (recursively) everything in it.
    static func sync(_ url: URL, recursive: Bool = true) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) else { return }
        if isDir.boolValue && recursive {
            for name in try FileManager.default.contentsOfDirectory(atPath: url.path) {
                try sync(url.appendingPathComponent(name))
            }
        }
        let fd = open(url.path, O_RDONLY)
        guard fd >= 0 else { throw AtomicOutputError.sync(url.path, String(cString: strerror(errno))) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw AtomicOutputError.sync(url.path, String(cString: strerror(errno))) }
    }

    /// Refuses an output that is, contains, or lies inside one of the inputs (symbolic links resolved):
    /// `convert SRC -o SRC --force` would otherwise delete the checkpoint it reads, and
    /// `-o SRC/vae --force` would replace a source component.
    public static func checkDisjoint(output: URL, inputs: [URL]) throws {
        let out = resolved(output)
        for input in inputs {
            let inp = resolved(input)
            func within(_ a: [String], _ b: [String]) -> Bool { a.count >= b.count && Array(a.prefix(b.count)) == b }
            let o = out.pathComponents, i = inp.pathComponents
            let relation = o == i ? "is" : within(i, o) ? "contains" : within(o, i) ? "lies inside" : nil
            if let relation {
                throw QuantError.output("output \(output.path) \(relation) the input \(input.path)\(relation == "is" ? "" : " (\(inp.path))"): "
                    + "writing there could destroy the input; choose an output outside it")
            }
        }
    }

    /// The real path of `url`: its longest existing prefix through realpath, then the rest as given.
    private static func resolved(_ url: URL) -> URL {
        var existing = url.standardizedFileURL
        var rest: [String] = []
        while true {
            if let p = realpath(existing.path, nil) {
                var r = URL(fileURLWithPath: String(cString: p))
                free(p)
                for c in rest { r.appendPathComponent(c) }
                return r.standardizedFileURL
            }
            guard existing.pathComponents.count > 1 else { return url.standardizedFileURL }
            rest.insert(existing.lastPathComponent, at: 0)
            existing.deleteLastPathComponent()
        }
    }

    /// Removes whatever was written under the temporary name.
    public func discard() { try? FileManager.default.removeItem(at: temporary) }

    /// Writes `data` to `target` atomically.
    public static func write(_ data: Data, to target: URL, force: Bool = true) throws {
        let out = try AtomicOutput(target: target, force: force)
        do {
            try data.write(to: out.temporary)
            try out.commit()
        } catch {
            out.discard()
            throw error
        }
    }
}

public enum AtomicOutputError: Error, CustomStringConvertible {
    case exists(String)
    case noParent(String)
    case rename(String, String, String)
    case sync(String, String)

    public var description: String {
        switch self {
        case .exists(let p): return "\(p): already exists (use --force to replace it)"
        case .noParent(let p): return "\(p): output folder does not exist (create it first)"
        case .rename(let a, let b, let e): return "could not rename \(a) to \(b): \(e)"
        case .sync(let p, let e): return "\(p): could not flush to disk (fsync): \(e)"
        }
    }
}

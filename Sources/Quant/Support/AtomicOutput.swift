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
        let tmpName = ".\(self.target.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        self.temporary = dir.appendingPathComponent(tmpName)
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

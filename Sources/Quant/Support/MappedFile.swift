import CMapGuard
import Foundation

/// A whole file mapped read-only into memory. The mapping lives as long as the object.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let size: Int
    /// Start of the mapping (nil for an empty file).
    public let base: UnsafeRawPointer?

    public init(path: String) throws {
        self.path = path
        // O_NONBLOCK: a FIFO named like a shard or checkpoint must not block open() forever.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw QuantError.io(path: path, message: "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        size = try FileBytes.regularFileSize(fd, path: path)
        if size == 0 { base = nil; return }
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else {
            throw QuantError.io(path: path, message: "cannot map \(size) bytes: \(String(cString: strerror(errno)))")
        }
        base = UnsafeRawPointer(p)
        guardSlot = qmg_register(p, size, path)
    }

    /// Slot of this mapping in the SIGBUS guard (a truncated file ends the run with a message naming it).
    private var guardSlot: Int32 = -1

    deinit {
        qmg_unregister(guardSlot)
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), size) }
    }

    /// Bytes [offset, offset + count) (caller checked the range).
    public func bytes(_ offset: Int, _ count: Int) -> UnsafeRawBufferPointer {
        guard let base, count > 0 else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: base + offset, count: count)
    }

    /// Tells the kernel the pages of [offset, offset + count) will be needed soon / are no longer needed.
    public func advise(_ offset: Int, _ count: Int, willNeed: Bool) {
        guard let base, count > 0 else { return }
        let page = Int(getpagesize())
        let start = offset / page * page
        let end = min(size, offset + count)
        guard end > start else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: base + start), end - start,
                    willNeed ? Int32(MADV_WILLNEED) : Int32(MADV_DONTNEED))
    }
}

/// Hands a raw pointer to concurrently running workers that write disjoint parts of it.
public struct SendablePointer<T>: @unchecked Sendable {
    public let p: T
    public init(_ p: T) { self.p = p }
}

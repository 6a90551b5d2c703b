import Foundation

/// Where one tensor goes in a shard being written.
public struct PackTensorSlot: Sendable {
    public let name: String
    public let shape: [Int]
    public let scheme: PackScheme
    public let group: Int
    public let layout: PackLayout
    public let bytes: Int
    public init(name: String, shape: [Int], scheme: PackScheme, group: Int, layout: PackLayout, bytes: Int) {
        self.name = name; self.shape = shape; self.scheme = scheme; self.group = group; self.layout = layout; self.bytes = bytes
    }
}

/// Writes one shard (docs/FORMAT.md §4). Space is reserved up front with posix_fallocate (a full disk
/// is an error at the start); payload pieces are written with pwrite from the caller's buffers (whole
/// pages go straight into the page cache, nothing is read back or zero-filled first); a read-only
/// mapping serves the checksum pass and compression, dropping pages behind it to keep the resident set
/// small. With zstd, the uncompressed file is a temporary that `finish` compresses frame by frame into
/// the final file and deletes.
public final class PackShardWriter: @unchecked Sendable {
    public let name: String
    public let slots: [PackTensorSlot]
    /// Offsets in the uncompressed file (first payload at 64).
    public let offsets: [Int]
    public let fileBytes: Int
    private let rawPath: String
    private let finalPath: String
    private let fileName: String
    private let zstdLevel: Int?
    private let chunkBytes: Int
    private let base: UnsafeMutableRawPointer
    private let fd: Int32
    private var checksums: [String?]
    private var finished = false

    public init(folder: URL, name: String, slots: [PackTensorSlot], zstdLevel: Int?, chunkBytes: Int = PackFormat.defaultChunkBytes) throws {
        self.name = name
        self.slots = slots
        self.zstdLevel = zstdLevel
        self.chunkBytes = chunkBytes
        var offs: [Int] = []
        var at = PackFormat.shardHeaderBytes
        for s in slots { at = PackFormat.align(at); offs.append(at); at += s.bytes }
        offsets = offs
        fileBytes = max(at, PackFormat.shardHeaderBytes)
        checksums = Array(repeating: nil, count: slots.count)
        fileName = name + "." + PackFormat.shardExtension
        finalPath = folder.appendingPathComponent(fileName).path
        rawPath = zstdLevel == nil ? finalPath : finalPath + ".raw"
        fd = open(rawPath, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw QuantError.io(path: rawPath, message: "cannot create: \(String(cString: strerror(errno)))") }
        let r = posix_fallocate(fd, 0, off_t(fileBytes))
        guard r == 0 else {
            close(fd); unlink(rawPath)
            throw QuantError.io(path: rawPath, message: "cannot reserve \(ByteSize.format(fileBytes)): \(String(cString: strerror(r)))")
        }
        guard let p = mmap(nil, fileBytes, PROT_READ, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            close(fd); unlink(rawPath)
            throw QuantError.io(path: rawPath, message: "cannot map: \(String(cString: strerror(errno)))")
        }
        base = p
        // §4 header.
        var header = [UInt8](repeating: 0, count: PackFormat.shardHeaderBytes)
        header.replaceSubrange(0..<8, with: PackFormat.shardMagic)
        header.withUnsafeMutableBytes { h in
            h.storeBytes(of: UInt32(PackFormat.version).littleEndian, toByteOffset: 8, as: UInt32.self)
            h.storeBytes(of: UInt32(zstdLevel == nil ? 0 : 1).littleEndian, toByteOffset: 12, as: UInt32.self)
            h.storeBytes(of: UInt64(payloadBytes).littleEndian, toByteOffset: 16, as: UInt64.self)
        }
        do { try header.withUnsafeBytes { try pwriteAll($0.baseAddress!, $0.count, at: 0) } } catch {
            munmap(base, fileBytes); close(fd); unlink(rawPath)
            throw error
        }
    }

    deinit {
        munmap(base, fileBytes)
        close(fd)
        if !finished { unlink(rawPath) }
    }

    private func pwriteAll(_ p: UnsafeRawPointer, _ n: Int, at offset: Int) throws {
        var done = 0
        while done < n {
            let w = pwrite(fd, p + done, n - done, off_t(offset + done))
            if w < 0 {
                if errno == EINTR { continue }
                throw QuantError.io(path: rawPath, message: "write failed: \(String(cString: strerror(errno)))")
            }
            done += w
        }
    }

    /// Writes `count` bytes of slot i's payload starting `at` bytes into it (thread-safe: pwrite).
    public func write(_ i: Int, at: Int, from p: UnsafeRawPointer, count: Int) throws {
        precondition(at >= 0 && at + count <= slots[i].bytes, "write outside slot \(slots[i].name)")
        try pwriteAll(p, count, at: offsets[i] + at)
    }

    /// Size of the uncompressed payload area (raw: the whole file; zstd: the decompression buffer).
    public var payloadBytes: Int { zstdLevel == nil ? fileBytes : fileBytes - PackFormat.shardHeaderBytes }


    /// Drops mapped pages of slot i (the data stays in the file / page cache).
    public func dropPages(_ i: Int) { dropPages(from: offsets[i], count: slots[i].bytes) }

    private func dropPages(from offset: Int, count: Int) {
        let page = Int(getpagesize())
        let start = offset / page * page
        let end = min(fileBytes, (offset + count + page - 1) / page * page)
        if end > start { madvise(base + start, end - start, MADV_DONTNEED) }
    }

    /// Computes slot i's checksum once its payload is complete (streams, dropping pages behind it).
    public func seal(_ i: Int) {
        var h = XXH64()
        let step = 16 << 20
        var at = 0
        let n = slots[i].bytes
        while at < n {
            let len = min(step, n - at)
            h.update(UnsafeRawBufferPointer(start: base + offsets[i] + at, count: len))
            dropPages(from: offsets[i] + at, count: len)
            at += len
        }
        checksums[i] = XXH64.format(h.digest())
        dropPages(i)
    }

    /// Writes the final shard file (compressing with zstd if asked) and returns its record.
    /// `extra` fills in per-tensor provenance (source, source shape, dtype, error).
    public func finish(threads: Int, extra: (Int, inout TensorRecord) -> Void) throws -> ShardRecord {
        for i in slots.indices where checksums[i] == nil { seal(i) }
        var records: [TensorRecord] = []
        for (i, s) in slots.enumerated() {
            var r = TensorRecord(name: s.name, shape: s.shape, scheme: s.scheme, group: s.group, layout: s.layout,
                                 offset: offsets[i], bytes: s.bytes, checksum: checksums[i]!)
            extra(i, &r)
            records.append(r)
        }
        guard let level = zstdLevel else {
            finished = true
            return ShardRecord(name: name, file: fileName, fileBytes: fileBytes, payloadBytes: payloadBytes,
                               compression: "none", tensors: records)
        }
        let written = try compress(level: level, threads: threads, records: &records)
        finished = true
        unlink(rawPath)
        return ShardRecord(name: name, file: fileName, fileBytes: written, payloadBytes: payloadBytes,
                           compression: "zstd", tensors: records)
    }

    /// §4.2: independent frames of `chunkBytes` uncompressed bytes, compressed in parallel, written in order.
    private func compress(level: Int, threads: Int, records: inout [TensorRecord]) throws -> Int {
        let fd = open(finalPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw QuantError.io(path: finalPath, message: "cannot create: \(String(cString: strerror(errno)))") }
        var ok = false
        defer { close(fd); if !ok { unlink(finalPath) } }
        func writeAll(_ p: UnsafeRawPointer, _ n: Int) throws {
            var done = 0
            while done < n {
                let w = Foundation.write(fd, p + done, n - done)
                if w < 0 {
                    if errno == EINTR { continue }
                    throw QuantError.io(path: finalPath, message: "write failed: \(String(cString: strerror(errno)))")
                }
                done += w
            }
        }
        try writeAll(base, PackFormat.shardHeaderBytes)
        var fileAt = PackFormat.shardHeaderBytes
        // Every frame of the shard, in file order.
        var jobs: [(slot: Int, src: Int, len: Int)] = []
        for (i, s) in slots.enumerated() {
            var at = 0
            while at < s.bytes { let len = min(chunkBytes, s.bytes - at); jobs.append((i, offsets[i] + at, len)); at += len }
            records[i].offset = offsets[i] - PackFormat.shardHeaderBytes
            records[i].frames = []
        }
        let batch = max(1, threads) * 2
        let bound = Zstd.compressBound(chunkBytes)
        let out = UnsafeMutableRawPointer.allocate(byteCount: bound * batch, alignment: 64)
        defer { out.deallocate() }
        var start = 0
        while start < jobs.count {
            let end = min(jobs.count, start + batch)
            let sizes = UnsafeMutablePointer<Int>.allocate(capacity: end - start)
            defer { sizes.deallocate() }
            let failures = FailureBox()
            let slice = Array(jobs[start..<end])
            let src = SendablePointer(UnsafeRawPointer(base)), dst = SendablePointer(out), sz = SendablePointer(sizes)
            DispatchQueue.concurrentPerform(iterations: slice.count) { j in
                let job = slice[j]
                do {
                    sz.p[j] = try Zstd.compress(UnsafeRawBufferPointer(start: src.p + job.src, count: job.len),
                                                into: UnsafeMutableRawBufferPointer(start: dst.p + j * bound, count: bound), level: level)
                } catch {
                    failures.add(QuantError.zstd(file: self.finalPath, tensor: self.slots[job.slot].name, message: (error as? ZstdFailure)?.message ?? "\(error)"))
                }
            }
            if let e = failures.first { throw e }
            for j in 0..<slice.count {
                try writeAll(out + j * bound, sizes[j])
                records[slice[j].slot].frames!.append([fileAt, sizes[j], slice[j].len])
                fileAt += sizes[j]
            }
            for j in Set(slice.map(\.slot)) { dropPages(j) }
            start = end
        }
        ok = true
        return fileAt
    }
}

import CMapGuard
import Foundation
import Kernels

/// A pack folder opened for reading (docs/FORMAT.md). Thread-safe.
public final class Pack: @unchecked Sendable {
    public let path: String
    public let url: URL
    public let manifest: PackManifest
    private var opened: [String: PackComponent] = [:]
    private let lock = NSLock()

    /// Checksums are verified on each tensor's first use unless `verifyChecksums` is false
    /// (`PackShard.verifyAll()` always checks).
    public let verifyChecksums: Bool

    public init(path: String, verifyChecksums: Bool = true) throws {
        self.verifyChecksums = verifyChecksums
        url = URL(fileURLWithPath: path).standardizedFileURL
        self.path = url.path
        let file = url.appendingPathComponent(PackFormat.packFile).path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir), isDir.boolValue else {
            throw QuantError.pack(path: url.path, message: "not a pack folder (does not exist or is not a folder)")
        }
        guard let data = try FileBytes.read(file) else {
            throw QuantError.pack(path: file, message: "missing: not a pack (convert a checkpoint with `qwen-quant convert`)")
        }
        let m: PackManifest
        do { m = try JSONDecoder().decode(PackManifest.self, from: data) } catch {
            throw QuantError.pack(path: file, message: "not a valid pack manifest: \(Pack.describe(error))")
        }
        guard m.format == PackFormat.name else {
            throw QuantError.pack(path: file, message: "format is '\(m.format)', expected '\(PackFormat.name)'")
        }
        guard m.version == PackFormat.version else {
            throw QuantError.pack(path: file,
                message: "pack format version \(m.version), this build reads version \(PackFormat.version): convert the checkpoint again")
        }
        for c in m.components {
            guard Pack.isPlainName(c.name) else { throw QuantError.pack(path: file, message: "bad component name '\(c.name)'") }
            let dir = url.appendingPathComponent(c.name).path
            guard FileManager.default.fileExists(atPath: dir) else {
                throw QuantError.pack(path: dir, message: "component folder listed in pack.json is missing")
            }
        }
        manifest = m
    }

    /// Component names, e.g. ["processor", "text_encoder", "tokenizer", "vae"].
    public var components: [String] { manifest.components.map(\.name).sorted() }

    public func hasComponent(_ name: String) -> Bool { manifest.components.contains { $0.name == name } }
    /// Whether a files component (tokenizer, processor) carries `name`, per pack.json.
    public func hasFile(component: String, name: String) -> Bool {
        manifest.components.first { $0.name == component }?.files?.contains(name) ?? false
    }

    /// A model component (manifest + shards). Opened once and cached.
    public func component(_ name: String) throws -> PackComponent {
        lock.lock(); defer { lock.unlock() }
        if let c = opened[name] { return c }
        guard let entry = manifest.components.first(where: { $0.name == name }) else {
            throw QuantError.missingComponent(pack: path, component: name, available: components)
        }
        guard entry.kind == "model" else {
            throw QuantError.pack(path: path, message: "component \(name) holds files, not tensors (use fileData)")
        }
        let c = try PackComponent(name: name, folder: url.appendingPathComponent(name), verifyChecksums: verifyChecksums)
        opened[name] = c
        return c
    }

    /// A carried file: tokenizer.json, vocab.json, config.json, preprocessor_config.json, ...
    public func fileData(component: String, name: String) throws -> Data {
        guard hasComponent(component) else {
            throw QuantError.missingComponent(pack: path, component: component, available: components)
        }
        guard Pack.isPlainName(name) else { throw QuantError.invalidArgument("bad file name '\(name)'") }
        let p = url.appendingPathComponent(component).appendingPathComponent(name).path
        guard let d = try FileBytes.read(p) else {
            throw QuantError.pack(path: p, message: "missing file \(name) in component \(component)")
        }
        return d
    }

    static func isPlainName(_ s: String) -> Bool { !s.isEmpty && !s.contains("/") && s != "." && s != ".." }

    static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let k, let ctx):
            return "missing key \((ctx.codingPath + [k]).map(\.stringValue).joined(separator: "."))"
        case DecodingError.typeMismatch(_, let ctx), DecodingError.valueNotFound(_, let ctx):
            return "bad value at \(ctx.codingPath.map(\.stringValue).joined(separator: ".")): \(ctx.debugDescription)"
        case DecodingError.dataCorrupted(let ctx):
            return "\(ctx.debugDescription) at \(ctx.codingPath.map(\.stringValue).joined(separator: "."))"
        default: return "\(error)"
        }
    }
}

/// 64-byte aligned memory a compressed shard is decompressed into; reused through the component's pool.
final class ShardBuffer: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let capacity: Int
    init(capacity: Int) {
        self.capacity = max(capacity, PackFormat.alignment)
        // Page-aligned: O_DIRECT reads (PackComponent.prefetch) land in these buffers too.
        base = UnsafeMutableRawPointer.allocate(byteCount: self.capacity, alignment: max(PackFormat.alignment, 4096))
    }
    deinit { base.deallocate() }
}

/// One model component of a pack: its manifest, config and shards.
public final class PackComponent: @unchecked Sendable {
    public let name: String
    public let folder: URL
    public let manifest: ComponentManifest
    public let tensorNames: [String]
    private let index: [String: (shard: Int, record: TensorRecord)]
    private let shardIndex: [String: Int]
    /// Per shard (manifest order): stored as zstd frames (§4.2) rather than raw (§4.1).
    private let compressed: [Bool]
    private var verified = Set<String>()
    private var pool: [ShardBuffer] = []
    /// The largest decompression buffer the pool keeps: the second-largest payload among the
    /// compressed shards. The shards of a layer stream share their size, so this is a layer; a shard
    /// larger than every other one (the embedding table of a pack written before the table was
    /// stored raw: 2.3 decoder layers of the 7B model) is a one-off, and its buffer is freed on
    /// release instead of staying resident for the rest of the run.
    public let poolLimitBytes: Int
    /// The largest raw shard `prefetch` reads into a buffer (page-rounded): the second-largest raw file, so
    /// a layer of the stream and not the one-off embedding table, which stays mapped.
    let directLimitBytes: Int
    /// How `prefetch` brings in a raw shard: nil (the default) reads it with O_DIRECT into a pooled buffer when
    /// the component's raw shards exceed half the memory this process may use (RAM or its cgroup's limit: the
    /// pack cannot stay cached for the next run anyway) and less than half of the shard's file is in the page
    /// cache; otherwise it maps the file. true / false force one way. Reading a cold file through the page
    /// cache costs CPU (page allocation, cache insertion, the faults of the mapping) that on a 2-core box is
    /// taken from the compute threads; a direct read is DMA into memory the run reuses, and its checksums
    /// are computed from that memory.
    public var directReads: Bool? {
        get { lock.lock(); defer { lock.unlock() }; return _directReads }
        set { lock.lock(); _directReads = newValue; lock.unlock() }
    }
    private var _directReads: Bool? = PackComponent.defaultDirectReads

    /// `directReads` of every component opened from now on (qwen-run's `--stream`): nil decides per pack.
    nonisolated(unsafe) public static var defaultDirectReads: Bool?
    private var prefetched: [String: PrefetchSlot] = [:]
    private let lock = NSLock()

    final class PrefetchSlot: @unchecked Sendable {
        let done = DispatchSemaphore(value: 0)
        var result: Result<PackShard, Error> = .failure(QuantError.unsupported("prefetch not finished"))
    }

    let verifyChecksums: Bool

    init(name: String, folder: URL, verifyChecksums: Bool = true) throws {
        self.verifyChecksums = verifyChecksums
        self.name = name
        self.folder = folder
        let file = folder.appendingPathComponent(PackFormat.manifestFile).path
        guard let data = try FileBytes.read(file) else {
            throw QuantError.pack(path: file, message: "missing component manifest")
        }
        let m: ComponentManifest
        do { m = try JSONDecoder().decode(ComponentManifest.self, from: data) } catch {
            throw QuantError.pack(path: file, message: "not a valid component manifest: \(Pack.describe(error))")
        }
        guard m.version == PackFormat.version else {
            throw QuantError.pack(path: file, message: "component format version \(m.version), this build reads \(PackFormat.version)")
        }
        guard m.compression == "none" || m.compression == "zstd" else {
            throw QuantError.pack(path: file, message: "unknown compression '\(m.compression)' (expected none or zstd)")
        }
        var index: [String: (Int, TensorRecord)] = [:]
        var names: [String] = []
        var shardIndex: [String: Int] = [:]
        var compressed: [Bool] = []
        for (si, s) in m.shards.enumerated() {
            guard Pack.isPlainName(s.file) else { throw QuantError.pack(path: file, message: "shard \(s.name): bad file name '\(s.file)'") }
            guard shardIndex[s.name] == nil else { throw QuantError.pack(path: file, message: "shard \(s.name) listed twice") }
            shardIndex[s.name] = si
            let shardPath = folder.appendingPathComponent(s.file).path
            let size = (try? FileManager.default.attributesOfItem(atPath: shardPath)[.size] as? Int) ?? nil
            guard let size else { throw QuantError.pack(path: shardPath, message: "shard file of \(s.name) is missing") }
            guard size == s.fileBytes else {
                throw QuantError.pack(path: shardPath, message: "shard file is \(size) bytes, the manifest says \(s.fileBytes) (truncated or replaced)")
            }
            let compression = m.compression(of: s)
            guard compression == "none" || compression == "zstd" else {
                throw QuantError.pack(path: file, message: "shard \(s.name): unknown compression '\(compression)' (expected none or zstd)")
            }
            compressed.append(compression == "zstd")
            let shardFile = try MappedFile(path: shardPath)
            try Self.checkHeader(shardFile.bytes(0, min(shardFile.size, PackFormat.shardHeaderBytes)), path: shardPath, record: s,
                                 compressed: compressed[si])
            try Self.checkPayloadBytes(s, compressed: compressed[si], path: shardPath)
            for t in s.tensors {
                try Self.validate(t, shard: s, compressed: compressed[si], path: shardPath)
                guard index[t.name] == nil else { throw QuantError.pack(path: file, message: "tensor \(t.name) listed twice") }
                index[t.name] = (si, t)
                names.append(t.name)
            }
        }
        manifest = m
        self.index = index
        self.shardIndex = shardIndex
        self.compressed = compressed
        tensorNames = names
        var zstdPayloads: [Int] = [], rawFiles: [Int] = []
        for (shard, isCompressed) in zip(m.shards, compressed) {
            if isCompressed { zstdPayloads.append(shard.payloadBytes) } else { rawFiles.append(Self.pageRounded(shard.fileBytes)) }
        }
        poolLimitBytes = Self.secondLargest(zstdPayloads)
        directLimitBytes = Self.secondLargest(rawFiles)
        let limit = ProcessStats.memoryLimit()
        tooLargeToCache = limit > 0 && rawFiles.reduce(0, +) * 2 > limit
    }

    /// The largest buffer the pool keeps for shards of one kind: the second-largest size, so a layer of the
    /// stream and not a one-off (the embedding table); 0 for fewer than two shards.
    private static func secondLargest(_ sizes: [Int]) -> Int { sizes.count > 1 ? sizes.sorted(by: >)[1] : 0 }

    /// Bytes rounded up to whole 4 KiB pages (O_DIRECT reads whole pages).
    private static func pageRounded(_ bytes: Int) -> Int { (bytes + 4095) / 4096 * 4096 }

    /// The raw shards exceed half of ProcessStats.memoryLimit() (see `directReads`).
    private let tooLargeToCache: Bool

    /// The payload size decides an allocation (zstd shards are decompressed into a buffer of that
    /// size), so it is bounded by what the shard's tensors can need: a raw shard's payload is the file,
    /// a compressed one's is at most its tensors plus their alignment padding.
    private static func checkPayloadBytes(_ s: ShardRecord, compressed: Bool, path: String) throws {
        var limit = compressed ? PackFormat.alignment : s.fileBytes
        if compressed {
            for t in s.tensors {
                let (a, o1) = limit.addingReportingOverflow(t.bytes)
                let (b, o2) = a.addingReportingOverflow(PackFormat.alignment)
                guard t.bytes >= 0, !o1, !o2 else { limit = -1; break }
                limit = b
            }
        }
        guard s.payloadBytes >= 0, s.fileBytes >= PackFormat.shardHeaderBytes, limit >= 0, s.payloadBytes <= limit else {
            throw QuantError.pack(path: path,
                message: "shard \(s.name): payload of \(s.payloadBytes) bytes does not fit its tensors and file (at most \(max(limit, 0)) bytes expected)")
        }
    }

    private static func validate(_ t: TensorRecord, shard s: ShardRecord, compressed: Bool, path: String) throws {
        func bad(_ msg: String) -> QuantError { .pack(path: path, message: "tensor \(t.name): \(msg)") }
        guard let expected = packPayloadBytes(layout: t.layout, scheme: t.scheme, group: t.group, shape: t.shape) else {
            throw bad("unsupported combination: layout \(t.layout.rawValue), scheme \(t.scheme.rawValue), group \(t.group), shape \(t.shape)")
        }
        guard expected == t.bytes else { throw bad("payload is \(t.bytes) bytes, expected \(expected) for \(t.scheme.rawValue) \(t.shape) group \(t.group)") }
        guard t.offset >= 0, t.offset % PackFormat.alignment == 0 else { throw bad("offset \(t.offset) is not 64-byte aligned") }
        guard XXH64.parse(t.checksum) != nil else { throw bad("bad checksum '\(t.checksum)'") }
        // Every sum below is checked: the values come from a file (offset + bytes near Int.max traps).
        let (end, endOverflow) = t.offset.addingReportingOverflow(t.bytes)
        if compressed {
            guard !endOverflow, end <= s.payloadBytes else {
                throw bad("[\(t.offset), \(t.offset) + \(t.bytes)) outside the shard buffer of \(s.payloadBytes) bytes")
            }
            guard let frames = t.frames, frames.allSatisfy({ $0.count == 3 }) else { throw bad("compressed shard without frame list") }
            var sum = 0
            for f in frames {
                let (frameEnd, o) = f[0].addingReportingOverflow(f[1])
                guard f[0] >= PackFormat.shardHeaderBytes, f[1] > 0, !o, frameEnd <= s.fileBytes, f[2] > 0, f[2] <= t.bytes else {
                    throw bad("frame \(f) outside the shard file (\(s.fileBytes) bytes) or larger than the tensor")
                }
                let (next, so) = sum.addingReportingOverflow(f[2])
                guard !so, next <= t.bytes else { throw bad("frames hold more than the tensor's \(t.bytes) bytes") }
                sum = next
            }
            guard sum == t.bytes else { throw bad("frames hold \(sum) bytes, expected \(t.bytes)") }
        } else {
            guard t.offset >= PackFormat.shardHeaderBytes, !endOverflow, end <= s.fileBytes else {
                throw bad("[\(t.offset), \(t.offset) + \(t.bytes)) outside the shard file (\(s.fileBytes) bytes)")
            }
        }
    }

    /// Whether a shard is stored as zstd frames (its record's compression, else the component's).
    public func isCompressed(_ shard: String) -> Bool { shardIndex[shard].map { compressed[$0] } ?? false }
    public var shardNames: [String] { manifest.shards.map(\.name) }

    /// config.json bytes (verbatim from the source).
    public func configData() throws -> Data {
        let p = folder.appendingPathComponent(PackFormat.configFile).path
        guard let d = try FileBytes.read(p) else { throw QuantError.pack(path: p, message: "missing config.json") }
        return d
    }

    public func tensorInfo(_ name: String) -> PackTensorInfo? {
        guard let (si, r) = index[name] else { return nil }
        return PackTensorInfo(name: r.name, shape: r.shape, scheme: r.scheme, group: r.group, layout: r.layout,
                              shard: manifest.shards[si].name, bytes: r.bytes)
    }

    public func record(_ name: String) -> TensorRecord? { index[name]?.record }

    /// Largest uncompressed shard: what one loaded layer needs resident (two while prefetching).
    public var peakResidentWeightBytes: Int { manifest.shards.map(\.payloadBytes).max() ?? 0 }

    /// Maps (raw) or decompresses (zstd) one shard. A prefetched shard is handed over.
    public func shard(_ name: String) throws -> PackShard {
        lock.lock()
        let slot = prefetched.removeValue(forKey: name)
        lock.unlock()
        if let slot {
            slot.done.wait()
            return try slot.result.get()
        }
        return try load(name)
    }

    /// Starts loading a shard on a background thread; `shard(name)` then picks it up.
    public func prefetch(_ name: String) {
        lock.lock()
        if prefetched[name] != nil { lock.unlock(); return }
        let slot = PrefetchSlot()
        prefetched[name] = slot
        lock.unlock()
        DispatchQueue.global(qos: .userInitiated).async {
            slot.result = Result { () throws -> PackShard in
                let s = try self.load(name, direct: true)
                // Raw shards are checked here, off the compute threads (zstd ones were just decompressed
                // and are checked on first use).
                if s.isMapped { s.adviseWillNeed() }
                if s.isMapped || s.isDirect { for t in s.tensorNames { try s.verifyOnce(t) } }
                return s
            }
            slot.done.signal()
        }
    }

    /// Asks the kernel to start reading a shard's file into the page cache (`POSIX_FADV_WILLNEED`), on a
    /// background thread, without mapping or checking it: `shard(name)` / `prefetch(name)` do that
    /// later and find the pages there. Errors are ignored (the later load reports them).
    public func readAhead(_ name: String) {
        guard let si = shardIndex[name] else { return }
        let path = folder.appendingPathComponent(manifest.shards[si].file).path
        DispatchQueue.global(qos: .utility).async {
            // O_NONBLOCK: a FIFO in place of a shard must not block this thread (the load refuses it).
            let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
            guard fd >= 0 else { return }
            defer { close(fd) }
            var st = stat()
            guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return }
            _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_WILLNEED))
        }
    }

    /// - Parameter direct: a raw shard may be read with O_DIRECT into a buffer (see `directReads`).
    private func load(_ name: String, direct: Bool = false) throws -> PackShard {
        guard let si = shardIndex[name] else {
            throw QuantError.pack(path: folder.path, message: "no shard \(name) in component \(self.name) (shards: \(shardNames.prefix(8).joined(separator: ", "))\(shardNames.count > 8 ? ", ..." : ""))")
        }
        let rec = manifest.shards[si]
        let path = folder.appendingPathComponent(rec.file).path
        let mapped = try MappedFile(path: path)
        // Checked again: the file may have been replaced since the component was opened.
        try Self.checkHeader(mapped.bytes(0, min(mapped.size, PackFormat.shardHeaderBytes)), path: path, record: rec,
                             compressed: compressed[si])
        if !compressed[si] {
            if direct, rec.fileBytes <= directLimitBytes,
               directReads ?? (tooLargeToCache && qmg_resident_bytes(mapped.base, mapped.size) * 2 < mapped.size),
               let s = readDirect(name, record: rec, path: path) {
                return s
            }
            return PackShard(name: name, component: self, record: rec, path: path, storage: mapped,
                             base: UnsafeRawPointer(mapped.base!), mapped: mapped)
        }
        let buffer = acquireBuffer(rec.payloadBytes)
        var jobs: [(tensor: String, src: Int, srcBytes: Int, dst: Int, dstBytes: Int)] = []
        for t in rec.tensors {
            var dst = t.offset
            for f in t.frames ?? [] { jobs.append((t.name, f[0], f[1], dst, f[2])); dst += f[2] }
        }
        let failures = FailureBox()
        let frameJobs = jobs
        DispatchQueue.concurrentPerform(iterations: frameJobs.count) { i in
            let j = frameJobs[i]
            do {
                try Zstd.decompress(mapped.bytes(j.src, j.srcBytes),
                                    into: UnsafeMutableRawBufferPointer(start: buffer.base + j.dst, count: j.dstBytes))
            } catch {
                failures.add(QuantError.zstd(file: path, tensor: j.tensor, message: "\((error as? ZstdFailure)?.message ?? "\(error)") (the pack is corrupted, convert it again)"))
            }
        }
        if let e = failures.first { returnBuffer(buffer); throw e }
        return PackShard(name: name, component: self, record: rec, path: path, storage: buffer,
                         base: UnsafeRawPointer(buffer.base), mapped: nil)
    }

    /// A raw shard's file read with O_DIRECT into a pooled buffer, or nil when that is not possible here
    /// (no O_DIRECT on the file system, a short or failed read, a header that no longer matches): the caller
    /// maps the file instead, and any real problem is reported there.
    private func readDirect(_ name: String, record rec: ShardRecord, path: String) -> PackShard? {
        let fd = qmg_open_direct(path)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let size = rec.fileBytes
        let buffer = acquireBuffer(Self.pageRounded(size))
        var at = 0
        while at < size {
            let n = pread(fd, buffer.base + at, min(16 << 20, buffer.capacity - at), off_t(at))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { returnBuffer(buffer); return nil }
            at += n
        }
        let header = UnsafeRawBufferPointer(start: buffer.base, count: min(size, PackFormat.shardHeaderBytes))
        guard (try? Self.checkHeader(header, path: path, record: rec, compressed: false)) != nil else {
            returnBuffer(buffer)
            return nil
        }
        return PackShard(name: name, component: self, record: rec, path: path, storage: buffer,
                         base: UnsafeRawPointer(buffer.base), mapped: nil, direct: true)
    }

    /// §4.0: the header (at least its first 64 bytes) must agree with the shard's record.
    private static func checkHeader(_ h: UnsafeRawBufferPointer, path: String, record: ShardRecord, compressed: Bool) throws {
        guard h.count >= PackFormat.shardHeaderBytes, Array(h[0 ..< 8]) == PackFormat.shardMagic else {
            throw QuantError.pack(path: path, message: "not a shard file (bad magic)")
        }
        let version = Int(UInt32(littleEndian: h.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
        let code = UInt32(littleEndian: h.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
        // Int(exactly:): a crafted u64 above Int.max must be a mismatch, not a trap.
        let payload = Int(exactly: UInt64(littleEndian: h.loadUnaligned(fromByteOffset: 16, as: UInt64.self))) ?? -1
        let found = code == 0 ? "none" : code == 1 ? "zstd" : "unknown (\(code))"
        let expected = compressed ? "zstd" : "none"
        guard version == PackFormat.version, found == expected, payload == record.payloadBytes else {
            throw QuantError.pack(path: path,
                message: "shard header (version \(version), compression \(found), payload \(payload) bytes) does not match "
                    + "the manifest record of shard \(record.name) (version \(PackFormat.version), compression \(expected), "
                    + "payload \(record.payloadBytes) bytes)")
        }
    }

    // MARK: - buffer pool (two buffers: one in use, one being prefetched; none above poolLimitBytes / directLimitBytes)

    private func acquireBuffer(_ bytes: Int) -> ShardBuffer {
        lock.lock(); defer { lock.unlock() }
        // A pooled buffer is reusable only when nothing else (a live Weight) still holds it.
        for i in pool.indices.reversed() where isKnownUniquelyReferenced(&pool[i]) && pool[i].capacity >= bytes {
            return pool.remove(at: i)
        }
        return ShardBuffer(capacity: bytes)
    }

    fileprivate func returnBuffer(_ b: ShardBuffer) {
        guard b.capacity <= max(poolLimitBytes, directLimitBytes) else { return }   // a one-off: freed with its last reference
        lock.lock(); defer { lock.unlock() }
        pool.append(b)
        if pool.count > 2 {
            // Keep the two largest free ones.
            pool.sort { $0.capacity > $1.capacity }
            pool.removeLast(pool.count - 2)
        }
    }

    /// Capacities of the free buffers the pool holds (tests).
    var pooledBufferBytes: [Int] {
        lock.lock(); defer { lock.unlock() }
        return pool.map(\.capacity)
    }

    // MARK: - checksums

    fileprivate func isVerified(_ tensor: String) -> Bool {
        lock.lock(); defer { lock.unlock() }
        return verified.contains(tensor)
    }

    fileprivate func markVerified(_ tensor: String) {
        lock.lock(); defer { lock.unlock() }
        verified.insert(tensor)
    }
}

final class FailureBox: @unchecked Sendable {
    private var errors: [Error] = []
    private let lock = NSLock()
    func add(_ e: Error) { lock.lock(); errors.append(e); lock.unlock() }
    var first: Error? { lock.lock(); defer { lock.unlock() }; return errors.first }
}

/// One loaded shard: tensors as Weights (zero-copy views) or f32 vectors.
public final class PackShard: @unchecked Sendable {
    public let name: String
    public let path: String
    public let record: ShardRecord
    private let component: PackComponent
    private var storage: AnyObject?
    private let base: UnsafeRawPointer
    private let mapped: MappedFile?
    private let records: [String: TensorRecord]
    /// A raw shard read with O_DIRECT into a buffer (PackComponent.directReads).
    let isDirect: Bool

    init(name: String, component: PackComponent, record: ShardRecord, path: String, storage: AnyObject,
         base: UnsafeRawPointer, mapped: MappedFile?, direct: Bool = false) {
        self.name = name
        self.isDirect = direct
        self.component = component
        self.record = record
        self.path = path
        self.storage = storage
        self.base = base
        self.mapped = mapped
        records = Dictionary(uniqueKeysWithValues: record.tensors.map { ($0.name, $0) })
    }

    public var tensorNames: [String] { record.tensors.map(\.name) }

    private func tensor(_ name: String) throws -> (TensorRecord, AnyObject) {
        guard let storage else { throw QuantError.unsupported("shard \(self.name) of \(path) was released; load it again") }
        guard let r = records[name] else {
            throw QuantError.pack(path: path, message: "tensor \(name) is not in shard \(self.name)")
        }
        try verifyOnce(name)
        return (r, storage)
    }

    /// The uncompressed payload bytes of a tensor (verified).
    public func payload(_ name: String) throws -> UnsafeRawBufferPointer {
        let (r, _) = try tensor(name)
        return UnsafeRawBufferPointer(start: base + r.offset, count: r.bytes)
    }

    /// A matrix for qk_matmul / qk_conv3x3; keeps the shard memory alive.
    public func weight(_ name: String) throws -> Weight {
        let (r, owner) = try tensor(name)
        guard r.layout == .qkWeight else {
            throw QuantError.unsupported("\(path): tensor \(name) is a dense \(r.shape) array, not a matrix (use vector())")
        }
        let raw = qk_weight(scheme: r.scheme.qk, group: Int32(r.group), n: Int64(r.shape[0]), k: Int64(r.shape[1]),
                            data: base + r.offset)
        return Weight(name: name, raw: raw, owner: owner)
    }

    /// Any tensor as f32 (a dense array copied, a matrix dequantized row by row), row-major.
    public func vector(_ name: String) throws -> [Float] {
        let (r, _) = try tensor(name)
        let count = r.elementCount
        let p = base + r.offset
        switch r.layout {
        case .dense:
            return [Float](unsafeUninitializedCapacity: count) { buf, n in
                UnsafeMutableRawPointer(buf.baseAddress!).copyMemory(from: p, byteCount: count * 4)
                n = count
            }
        case .qkWeight:
            var w = qk_weight(scheme: r.scheme.qk, group: Int32(r.group), n: Int64(r.shape[0]), k: Int64(r.shape[1]), data: p)
            let k = r.shape[1]
            return [Float](unsafeUninitializedCapacity: count) { buf, n in
                for row in 0..<r.shape[0] { qk_weight_dequant_row(&w, Int64(row), buf.baseAddress! + row * k) }
                n = count
            }
        }
    }

    /// Verifies a tensor's checksum unless this component already did.
    func verifyOnce(_ name: String) throws {
        guard component.verifyChecksums, !component.isVerified(name), let r = records[name] else { return }
        let h = hashPayload(r)
        guard let want = XXH64.parse(r.checksum), want == h else {
            throw QuantError.checksum(file: path, tensor: name, expected: r.checksum, found: XXH64.format(h))
        }
        component.markVerified(name)
    }

    /// Checks every tensor's checksum now (also ones verified before); returns the failures.
    public func verifyAll() -> [QuantError] {
        var out: [QuantError] = []
        for r in record.tensors {
            let h = hashPayload(r)
            if XXH64.parse(r.checksum) != h {
                out.append(.checksum(file: path, tensor: r.name, expected: r.checksum, found: XXH64.format(h)))
            } else {
                component.markVerified(r.name)
            }
        }
        return out
    }

    /// XXH64 of a payload. For a mapped shard the pages are dropped behind the hash, so verifying a
    /// large tensor (the embedding table) does not leave it all resident.
    private func hashPayload(_ r: TensorRecord) -> UInt64 {
        guard let m = mapped else { return XXH64.hash(UnsafeRawBufferPointer(start: base + r.offset, count: r.bytes)) }
        var h = XXH64()
        let step = 16 << 20
        var at = 0
        while at < r.bytes {
            let len = min(step, r.bytes - at)
            h.update(UnsafeRawBufferPointer(start: base + r.offset + at, count: len))
            if r.bytes > step { m.advise(r.offset + at, len, willNeed: false) }
            at += len
        }
        return h.digest()
    }

    var isMapped: Bool { mapped != nil }

    func adviseWillNeed() { mapped?.advise(0, mapped?.size ?? 0, willNeed: true) }

    /// Drops the shard's pages (raw: madvise DONTNEED) or returns its buffer to the pool (zstd).
    /// Weights taken from the shard stay valid (a mapped page is read again from the file; a buffer
    /// still referenced by a Weight is not reused).
    public func release() {
        guard let s = storage else { return }
        storage = nil
        if let m = s as? MappedFile {
            m.advise(0, m.size, willNeed: false)
        } else if let b = s as? ShardBuffer {
            component.returnBuffer(b)
        }
    }

    deinit { release() }
}

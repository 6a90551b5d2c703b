import Foundation
import Kernels
import Quant

/// Per-tensor result of a conversion.
public struct ConvertedTensor: Codable, Sendable {
    public let component: String
    public let name: String
    public let source: String
    public let shape: [Int]
    public let scheme: String
    public let group: Int
    public let bytes: Int
    public let sourceBytes: Int
    /// ‖stored − source‖₂ / ‖source‖₂ over the whole tensor (0 for a zero tensor stored exactly).
    public let relRMSE: Double
    public let note: String

    enum CodingKeys: String, CodingKey {
        case component, name, source, shape, scheme, group, bytes, note
        case sourceBytes = "source_bytes", relRMSE = "rel_rmse"
    }
}

public struct ConvertedComponent: Codable, Sendable {
    public let name: String
    public let tensors: Int
    public let shards: Int
    public let sourceBytes: Int
    /// Bytes of the component folder's files (shards, manifest, config).
    public let packBytes: Int
    /// Matrices only: elements and stored bytes, and bits per weight = 8·bytes/elements.
    public let weightElements: Int
    public let weightBytes: Int
    public let bitsPerWeight: Double
    public let dropped: [String]

    enum CodingKeys: String, CodingKey {
        case name, tensors, shards, dropped
        case sourceBytes = "source_bytes", packBytes = "pack_bytes", weightElements = "weight_elements"
        case weightBytes = "weight_bytes", bitsPerWeight = "bits_per_weight"
    }
}

public struct ConversionSummary: Codable, Sendable {
    public let output: String
    public let components: [ConvertedComponent]
    public let sourceBytes: Int
    public let packBytes: Int
    /// sourceBytes / packBytes.
    public let compressionRatio: Double
    public let seconds: Double
    public let sourceBytesPerSecond: Double
    public let peakRSSBytes: Int
    /// Worst relative RMSE first.
    public let tensors: [ConvertedTensor]

    enum CodingKeys: String, CodingKey {
        case output, components, seconds, tensors
        case sourceBytes = "source_bytes", packBytes = "pack_bytes", compressionRatio = "compression_ratio"
        case sourceBytesPerSecond = "source_bytes_per_second", peakRSSBytes = "peak_rss_bytes"
    }
}

/// Streams a checkpoint into a pack: tensor by tensor, in row chunks spread over `threads` workers,
/// into a temporary folder beside the target that is renamed into place at the end.
public enum Converter {
    /// Elements of source per chunk (4 MiB of f32): what bounds the working set per worker.
    static let chunkElements = 1 << 20

    public static func convert(checkpoint: Checkpoint, plan: ConversionPlan, output: URL, options: ConvertOptions,
                               toolVersion: String = "qwen-quant") throws -> ConversionSummary {
        let started = Date()
        try AtomicOutput.checkDisjoint(output: output, inputs: [checkpoint.root])
        let out: AtomicOutput
        do { out = try AtomicOutput(target: output, force: options.force) } catch let e as AtomicOutputError {
            throw QuantError.output(e.description)
        }
        let fm = FileManager.default
        do {
            try fm.createDirectory(at: out.temporary, withIntermediateDirectories: false)
        } catch {
            throw QuantError.io(path: output.deletingLastPathComponent().path,
                                message: "cannot create the output folder: \((error as NSError).localizedDescription) (is the folder writable?)")
        }
        do {
            // Source file hashes, in the background while converting.
            let hasher = SourceHasher(checkpoint: checkpoint, plan: plan)
            hasher.start()
            let progress = Quant.Progress("converting", total: plan.totalSourceBytes, unit: .bytes, enabled: options.progress)
            var tensors: [ConvertedTensor] = []
            var comps: [ConvertedComponent] = []
            var entries: [PackComponentEntry] = []
            for pc in plan.components {
                let (c, t) = try convertComponent(pc, checkpoint: checkpoint, into: out.temporary, options: options, progress: progress)
                comps.append(c)
                tensors += t
                entries.append(PackComponentEntry(kind: "model", name: pc.name))
            }
            progress.finish()
            for (name, files) in plan.fileFolders {
                let dst = out.temporary.appendingPathComponent(name)
                try createFolder(dst)
                for f in files {
                    try copyFile(checkpoint.fileFolders[name]!.appendingPathComponent(f), to: dst.appendingPathComponent(f))
                }
                entries.append(PackComponentEntry(kind: "files", name: name, files: files))
            }
            let sources = try hasher.wait()
            var opts = ["scheme": options.scheme.rawValue, "group": String(options.scheme.fixedGroup ?? options.group),
                        "compression": options.zstdLevel.map { "zstd:\($0)" } ?? "none"]
            if !options.rules.isEmpty { opts["rules"] = options.rules.map(\.text).joined(separator: " ") }
            if let preset = options.preset { opts["preset"] = preset }
            if let imp = options.importance {
                opts["importance"] = URL(fileURLWithPath: imp.path).lastPathComponent
                if let p = imp.metadata["prompts"], let n = imp.metadata["tokens"] { opts["importance_calibration"] = "\(p) prompts, \(n) tokens" }
            }
            let manifest = PackManifest(createdBy: toolVersion, components: entries,
                                        source: PackSourceRecord(path: plan.source, files: sources), options: opts)
            try writeJSON(manifest, to: out.temporary.appendingPathComponent(PackFormat.packFile))
            let packBytes = folderBytes(out.temporary)
            try out.commit()
            let seconds = Date().timeIntervalSince(started)
            let src = plan.totalSourceBytes
            return ConversionSummary(
                output: output.path, components: comps, sourceBytes: src, packBytes: packBytes,
                compressionRatio: packBytes > 0 ? Double(src) / Double(packBytes) : 0, seconds: seconds,
                sourceBytesPerSecond: seconds > 0 ? Double(src) / seconds : 0, peakRSSBytes: ProcessStats.peakRSS(),
                tensors: tensors.sorted { $0.relRMSE > $1.relRMSE })
        } catch {
            out.discard()
            throw error
        }
    }

    static func convertComponent(_ pc: PlannedComponent, checkpoint: Checkpoint, into root: URL, options: ConvertOptions,
                                 progress: Quant.Progress) throws -> (ConvertedComponent, [ConvertedTensor]) {
        let comp = try checkpoint.component(pc.name)
        let folder = root.appendingPathComponent(pc.name)
        try createFolder(folder)
        try copyFile(comp.configURL, to: folder.appendingPathComponent(PackFormat.configFile))
        var shards: [ShardRecord] = []
        var results: [ConvertedTensor] = []
        var weightElements = 0, weightBytes = 0, sourceBytes = 0
        for ps in pc.shards {
            let slots = ps.tensors.map {
                PackTensorSlot(name: $0.output.name, shape: $0.output.shape, scheme: $0.choice.scheme, group: $0.choice.group,
                               layout: $0.layout, bytes: $0.bytes)
            }
            let writer = try PackShardWriter(folder: folder, name: ps.name, slots: slots, zstdLevel: ps.zstdLevel(options.zstdLevel),
                                             chunkBytes: options.chunkBytes)
            var errors: [Double] = []
            for (i, t) in ps.tensors.enumerated() {
                let (file, _) = try comp.locate(t.source)
                let e = try convertTensor(t, file: file, writer: writer, slot: i, threads: max(1, options.threads), progress: progress,
                                          importance: t.layout == .qkWeight ? try options.importance?.vector(for: t.output.name, k: t.output.shape[1]) : nil)
                writer.seal(i)
                errors.append(e)
                results.append(ConvertedTensor(component: pc.name, name: t.output.name, source: t.source, shape: t.output.shape,
                                               scheme: t.choice.scheme.rawValue, group: t.choice.group, bytes: t.bytes,
                                               sourceBytes: t.sourceBytes, relRMSE: e, note: t.choice.note))
                if t.layout == .qkWeight { weightElements += t.output.shape.reduce(1, *); weightBytes += t.bytes }
                sourceBytes += t.sourceBytes
            }
            let record = try writer.finish(threads: options.threads) { i, r in
                r.source = ps.tensors[i].source
                r.sourceShape = ps.tensors[i].sourceShape
                r.sourceDtype = ps.tensors[i].sourceDType
                r.relRMSE = errors[i]
            }
            shards.append(record)
        }
        let manifest = ComponentManifest(component: pc.name, compression: options.zstdLevel == nil ? "none" : "zstd",
                                         zstdLevel: options.zstdLevel, chunkBytes: options.zstdLevel == nil ? nil : options.chunkBytes,
                                         shards: shards, dropped: pc.dropped)
        try writeJSON(manifest, to: folder.appendingPathComponent(PackFormat.manifestFile))
        let summary = ConvertedComponent(
            name: pc.name, tensors: results.count, shards: shards.count, sourceBytes: sourceBytes, packBytes: folderBytes(folder),
            weightElements: weightElements, weightBytes: weightBytes,
            bitsPerWeight: weightElements > 0 ? 8 * Double(weightBytes) / Double(weightElements) : 0, dropped: pc.dropped)
        return (summary, results)
    }

    /// Converts one tensor into its slot; returns the relative RMSE of the stored values vs the source.
    static func convertTensor(_ t: PlannedTensor, file: any CheckpointTensorFile, writer: PackShardWriter, slot: Int, threads: Int,
                              progress: Quant.Progress, importance: [Float]? = nil) throws -> Double {
        let count = t.sourceShape.reduce(1, *)
        if t.layout == .dense {
            var v = [Float](repeating: 0, count: count)
            try v.withUnsafeMutableBufferPointer { b in
                try file.floats(t.source, elements: 0..<count, into: b.baseAddress!)
                // The same rule as for matrices (whose packer refuses them): a NaN or infinite bias or
                // norm weight would silently poison every output.
                if let i = b.firstIndex(where: { !$0.isFinite }) {
                    throw QwenImageError.tensor(name: t.output.name,
                        message: "element \(i) of \(t.source) is \(b[i]); expected finite values (the checkpoint is corrupted)")
                }
                try writer.write(slot, at: 0, from: b.baseAddress!, count: count * 4)
            }
            progress.advance(t.sourceBytes)
            return 0  // f32 holds every f32/bf16/f16 value exactly
        }
        let n = t.output.shape[0], k = t.output.shape[1]
        let srcLen = count / max(n, 1)
        let scheme = t.choice.scheme.qk, group = Int32(t.choice.group)
        let align = max(1, Int(qk_weight_row_align(scheme)))
        // The qk_weight layout stores rows in blocks of `align` rows, block b at b·blockBytes (pack format
        // v1, Kernels/include/qk_matmul_internal.h), so a row chunk is one contiguous byte range that a
        // worker packs in its own buffer and writes with pwrite. Checked here, not assumed.
        let blockBytes = Int(qk_weight_bytes(scheme, group, Int64(align), Int64(k)))
        guard blockBytes > 0, blockBytes % PackFormat.alignment == 0, t.bytes == (n + align - 1) / align * blockBytes else {
            throw QwenImageError.tensor(name: t.output.name,
                message: "the kernel's weight layout is not made of \(align)-row blocks of \(blockBytes) bytes (\(t.bytes) bytes for \(n) rows): this converter needs updating")
        }
        let chunkRows = min(n, max(align, Self.chunkElements / max(srcLen, 1) / align * align))
        let chunks = (n + chunkRows - 1) / chunkRows
        let workers = min(threads, chunks)
        let state = ChunkState(chunks: chunks)
        let bytesPerRow = t.sourceTensorBytes / max(n, 1)
        let chunkBytes = (chunkRows + align - 1) / align * blockBytes
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            let src = UnsafeMutablePointer<Float>.allocate(capacity: chunkRows * srcLen)
            let gathered: UnsafeMutablePointer<Float>? = t.output.transform == .identity ? nil
                : UnsafeMutablePointer<Float>.allocate(capacity: chunkRows * k)
            let row = UnsafeMutablePointer<Float>.allocate(capacity: k)
            let packed = UnsafeMutableRawPointer.allocate(byteCount: chunkBytes, alignment: PackFormat.alignment)
            defer { src.deallocate(); gathered?.deallocate(); row.deallocate(); packed.deallocate() }
            while let c = state.next() {
                let row0 = c * chunkRows, nr = min(chunkRows, n - row0)
                do {
                    try file.floats(t.source, elements: row0 * srcLen..<(row0 + nr) * srcLen, into: src)
                } catch { state.fail(error); return }
                file.dropPages(t.source, elements: row0 * srcLen..<(row0 + nr) * srcLen)
                var rows = UnsafePointer(src)
                if case .gather(let g) = t.output.transform, let gp = gathered {
                    g.withUnsafeBufferPointer { gb in
                        for r in 0..<nr {
                            let s = src + r * srcLen, d = gp + r * k
                            for j in 0..<k { d[j] = s[Int(gb[j])] }
                        }
                    }
                    rows = UnsafePointer(gp)
                }
                // The kernel addresses block b at base + b·blockBytes: give it a base such that this
                // chunk's first block lands at the start of `packed` (only these blocks are touched).
                let byteStart = row0 / align * blockBytes
                let byteEnd = min(t.bytes, (row0 + nr + align - 1) / align * blockBytes)
                let base = UnsafeMutableRawPointer(bitPattern: UInt(bitPattern: packed) &- UInt(byteStart))!
                let status = importance.map { imp in
                    imp.withUnsafeBufferPointer { qk_weight_pack_rows_imp(scheme, group, Int64(n), Int64(k), Int64(row0), Int64(nr), rows, $0.baseAddress, base) }
                } ?? qk_weight_pack_rows(scheme, group, Int64(n), Int64(k), Int64(row0), Int64(nr), rows, base)
                if status != 0 {
                    state.fail(QwenImageError.tensor(name: t.output.name,
                        message: "rows \(row0)..<\(row0 + nr) cannot be stored as \(t.choice.scheme.rawValue): a value is not finite or beyond the f16 range (±65504); choose another scheme for it with --rule"))
                    return
                }
                var w = qk_weight(scheme: scheme, group: group, n: Int64(n), k: Int64(k), data: UnsafeRawPointer(base))
                var err = 0.0, ref = 0.0
                for r in 0..<nr {
                    qk_weight_dequant_row(&w, Int64(row0 + r), row)
                    let s = rows + r * k
                    for j in 0..<k {
                        let a = Double(s[j]), d = Double(row[j]) - a
                        err += d * d; ref += a * a
                    }
                }
                do { try writer.write(slot, at: byteStart, from: packed, count: byteEnd - byteStart) } catch {
                    state.fail(error); return
                }
                _ = state.finish(err: err, ref: ref)
                progress.advance(nr * bytesPerRow / t.sourceShare)
            }
        }
        // Each worker drops its chunk's source pages, but fault-around can map a few pages of a
        // neighbouring chunk after that chunk was dropped; drop the whole tensor once more.
        file.dropPages(t.source, elements: 0..<count)
        if let e = state.error { throw e }
        return state.ref > 0 ? (state.err / state.ref).squareRoot() : (state.err > 0 ? .infinity : 0)
    }

    // MARK: - files

    static func createFolder(_ url: URL) throws {
        do { try FileManager.default.createDirectory(at: url, withIntermediateDirectories: false) } catch {
            throw QuantError.io(path: url.path, message: "cannot create folder: \((error as NSError).localizedDescription)")
        }
    }

    static func copyFile(_ src: URL, to dst: URL) throws {
        do { try FileManager.default.copyItem(at: src, to: dst) } catch {
            throw QuantError.io(path: dst.path, message: "cannot copy \(src.path): \((error as NSError).localizedDescription)")
        }
    }

    static func writeJSON<T: Encodable>(_ value: T, to url: URL) throws {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        do { try e.encode(value).write(to: url) } catch {
            throw QuantError.io(path: url.path, message: "cannot write: \((error as NSError).localizedDescription)")
        }
    }

    static func folderBytes(_ url: URL) -> Int {
        let fm = FileManager.default
        guard let en = fm.enumerator(at: url, includingPropertiesForKeys: [.fileSizeKey]) else { return 0 }
        var total = 0
        for case let f as URL in en { total += (try? f.resourceValues(forKeys: [.fileSizeKey]).fileSize ?? 0) ?? 0 }
        return total
    }
}

/// Work distribution and error accumulation for the chunk workers of one tensor.
final class ChunkState: @unchecked Sendable {
    private let lock = NSLock()
    private var nextChunk = 0
    private let chunks: Int
    private var done = 0
    private(set) var err = 0.0
    private(set) var ref = 0.0
    private(set) var error: Error?

    init(chunks: Int) { self.chunks = chunks }

    func next() -> Int? {
        lock.lock(); defer { lock.unlock() }
        guard error == nil, nextChunk < chunks else { return nil }
        nextChunk += 1
        return nextChunk - 1
    }

    /// Adds a chunk's sums; returns how many chunks are done.
    func finish(err e: Double, ref r: Double) -> Int {
        lock.lock(); defer { lock.unlock() }
        err += e; ref += r; done += 1
        return done
    }

    func fail(_ e: Error) {
        lock.lock(); defer { lock.unlock() }
        if error == nil { error = e }
    }
}

/// Hashes every source file (XXH64, streamed with read(2), pages dropped behind) on a background thread.
final class SourceHasher: @unchecked Sendable {
    private let files: [(rel: String, url: URL)]
    private let done = DispatchSemaphore(value: 0)
    private var result: Result<[PackSourceFile], Error> = .success([])

    init(checkpoint: Checkpoint, plan: ConversionPlan) {
        var f: [(String, URL)] = []
        let root = checkpoint.root
        for c in plan.components {
            if let comp = checkpoint.components[c.name] {
                for u in comp.sourceFiles { f.append((Self.relative(u, root), u)) }
            }
        }
        for (name, names) in plan.fileFolders {
            if let dir = checkpoint.fileFolders[name] {
                for n in names { let u = dir.appendingPathComponent(n); f.append((Self.relative(u, root), u)) }
            }
        }
        files = f
    }

    static func relative(_ u: URL, _ root: URL) -> String {
        let p = u.standardizedFileURL.path, r = root.standardizedFileURL.path
        return p.hasPrefix(r + "/") ? String(p.dropFirst(r.count + 1)) : u.lastPathComponent
    }

    func start() {
        Thread.detachNewThread { [self] in
            result = Result { try files.map { try Self.hash($0.rel, $0.url) } }
            done.signal()
        }
    }

    func wait() throws -> [PackSourceFile] {
        done.wait()
        return try result.get()
    }

    static func hash(_ rel: String, _ url: URL) throws -> PackSourceFile {
        let fd = open(url.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw QuantError.io(path: url.path, message: "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let size = 4 << 20
        let buf = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
        defer { buf.deallocate() }
        var h = XXH64()
        var total = 0
        while true {
            let r = read(fd, buf, size)
            if r < 0 { if errno == EINTR { continue }; throw QuantError.io(path: url.path, message: "read failed: \(String(cString: strerror(errno)))") }
            if r == 0 { break }
            h.update(UnsafeRawBufferPointer(start: buf, count: r))
            total += r
        }
        return PackSourceFile(path: rel, bytes: total, xxh64: XXH64.format(h.digest()))
    }
}

import Foundation
import Kernels
import Quant

/// Checks a pack: every checksum, and with the source checkpoint, each tensor's error against it.
public enum PackVerifier {
    public struct TensorResult: Codable, Sendable {
        public let component: String
        public let name: String
        public let shard: String
        public let scheme: String
        public let group: Int
        public let checksumOK: Bool
        /// With a source: ‖stored − source‖ / ‖source‖ (after the layout transform).
        public var relRMSE: Double?
        public var error: String?

        enum CodingKeys: String, CodingKey {
            case component, name, shard, scheme, group, error
            case checksumOK = "checksum_ok", relRMSE = "rel_rmse"
        }
    }

    public struct Report: Encodable, Sendable {
        public let pack: String
        public let tensors: [TensorResult]
        public let failures: [String]
        /// With a source: source files whose size or hash differs from the recorded one.
        public let changedSourceFiles: [String]?
        public var ok: Bool { failures.isEmpty }

        enum CodingKeys: String, CodingKey { case pack, tensors, failures, ok, changedSourceFiles = "changed_source_files" }
        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(pack, forKey: .pack); try c.encode(tensors, forKey: .tensors)
            try c.encode(failures, forKey: .failures); try c.encode(ok, forKey: .ok)
            try c.encodeIfPresent(changedSourceFiles, forKey: .changedSourceFiles)
        }
    }

    public static func verify(pack: Pack, source: Checkpoint?, progress: Bool? = nil) throws -> Report {
        var results: [TensorResult] = []
        var failures: [String] = []
        // Carried files (tokenizer, processor, each config.json) must equal the source files they were
        // copied from, whose hashes pack.json records.
        let recorded = Dictionary(pack.manifest.source.files.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
        func checkCarried(_ component: String, _ name: String) {
            let path = pack.url.appendingPathComponent(component).appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: path.path) else {
                failures.append("\(path.path): carried file is missing")
                return
            }
            // A single-component source records bare file names.
            guard let rec = recorded["\(component)/\(name)"] ?? (recorded.count > 0 && pack.manifest.components.count == 1 ? recorded[name] : nil),
                  let h = try? SourceHasher.hash(name, path) else { return }
            if h.xxh64 != rec.xxh64 || h.bytes != rec.bytes {
                failures.append("\(path.path): differs from the source file it was copied from (expected \(rec.xxh64), \(rec.bytes) bytes; found \(h.xxh64), \(h.bytes) bytes)")
            }
        }
        for entry in pack.manifest.components {
            if entry.kind == "files" {
                for f in entry.files ?? [] { checkCarried(entry.name, f) }
                continue
            }
            checkCarried(entry.name, PackFormat.configFile)
            let comp = try pack.component(entry.name)
            let srcComp = source?.components[entry.name]
            if source != nil && srcComp == nil { failures.append("component \(entry.name): not in the source checkpoint") }
            // What each stored tensor was made from, by the same requests the converter planned with.
            var outputs: [String: NameTableOutput] = [:]
            if let sc = srcComp {
                do {
                    for (_, o) in try ComponentRequests(sc).outputs { outputs[o.name] = o }
                } catch {
                    failures.append("component \(entry.name): the source checkpoint cannot be planned: \(error)")
                }
            }
            let bar = Quant.Progress("verifying \(entry.name)", total: comp.shardNames.count, enabled: progress)
            for shardName in comp.shardNames {
                let shard: PackShard
                do { shard = try comp.shard(shardName) } catch {
                    failures.append("\(error)")
                    bar.advance()
                    continue
                }
                let bad = Dictionary(shard.verifyAll().map { e -> (String, QuantError) in
                    if case .checksum(_, let t, _, _) = e { return (t, e) }
                    return ("", e)
                }, uniquingKeysWith: { a, _ in a })
                for r in shard.record.tensors {
                    var res = TensorResult(component: entry.name, name: r.name, shard: shardName, scheme: r.scheme.rawValue,
                                           group: r.group, checksumOK: bad[r.name] == nil)
                    if let e = bad[r.name] { failures.append(e.description); res.error = e.description }
                    if let sc = srcComp, bad[r.name] == nil {
                        do { res.relRMSE = try compare(r, shard: shard, source: sc, output: outputs[r.name]) } catch {
                            res.error = "\(error)"
                            failures.append("\(entry.name)/\(r.name): \(error)")
                        }
                    }
                    results.append(res)
                }
                shard.release()
                bar.advance()
            }
            bar.finish()
        }
        var changed: [String]?
        if let source {
            changed = []
            for f in pack.manifest.source.files {
                let u = source.root.appendingPathComponent(f.path)
                guard FileManager.default.fileExists(atPath: u.path) else { continue }
                let h = try? SourceHasher.hash(f.path, u)
                if h?.xxh64 != f.xxh64 || h?.bytes != f.bytes { changed!.append(f.path) }
            }
        }
        return Report(pack: pack.path, tensors: results, failures: failures, changedSourceFiles: changed)
    }

    /// Relative RMSE of a stored tensor against its source, row by row (never the whole tensor in f32).
    static func compare(_ r: TensorRecord, shard: PackShard, source: CheckpointComponent, output: NameTableOutput?) throws -> Double {
        guard let srcName = r.source else { throw QuantError.pack(path: shard.path, message: "tensor \(r.name) records no source") }
        let (file, info) = try source.locate(srcName)
        guard let out = output else {
            throw QuantError.pack(path: shard.path, message: "tensor \(r.name): no network of this component reads such a tensor from \(srcName)")
        }
        guard out.shape == r.shape else {
            throw QuantError.shape(file: file.path, tensor: srcName, expected: r.shape, found: out.shape)
        }
        let count = info.elementCount
        if r.layout == .dense {
            let stored = try shard.vector(r.name)
            var src = [Float](repeating: 0, count: count)
            try src.withUnsafeMutableBufferPointer { try file.floats(srcName, elements: 0..<count, into: $0.baseAddress!) }
            return relError(stored, src)
        }
        let w = try shard.weight(r.name)
        let n = r.shape[0], k = r.shape[1], srcLen = count / max(n, 1)
        var srcRow = [Float](repeating: 0, count: srcLen), want = [Float](repeating: 0, count: k), got = [Float](repeating: 0, count: k)
        var err = 0.0, ref = 0.0
        for o in 0..<n {
            try srcRow.withUnsafeMutableBufferPointer { try file.floats(srcName, elements: o * srcLen..<(o + 1) * srcLen, into: $0.baseAddress!) }
            switch out.transform {
            case .identity: want = srcRow
            case .gather(let g): for j in 0..<k { want[j] = srcRow[Int(g[j])] }
            }
            try got.withUnsafeMutableBufferPointer { try w.row(o, into: $0.baseAddress!) }
            for j in 0..<k { let d = Double(got[j]) - Double(want[j]); err += d * d; ref += Double(want[j]) * Double(want[j]) }
        }
        return ref > 0 ? (err / ref).squareRoot() : (err > 0 ? .infinity : 0)
    }

    static func relError(_ a: [Float], _ b: [Float]) -> Double {
        var err = 0.0, ref = 0.0
        for i in 0..<min(a.count, b.count) { let d = Double(a[i]) - Double(b[i]); err += d * d; ref += Double(b[i]) * Double(b[i]) }
        return ref > 0 ? (err / ref).squareRoot() : (err > 0 ? .infinity : 0)
    }
}

import Foundation
import Quant

/// One entry point per parser of untrusted input, for the fuzzers (`Tests/fuzz`) and the corpus
/// replay test. Each takes arbitrary bytes and must only ever return or throw: a crash, a hang or an
/// unbounded allocation is a bug. Inputs that need a file go through a private temporary folder, so
/// the same code paths as the commands run (mmap, size checks, FIFO-safe reads).
public enum ParserHarness: String, CaseIterable, Sendable {
    case safetensors        // a .safetensors file (checkpoint shard or latents), every tensor read as f32
    case index              // model.safetensors.index.json
    case packManifest       // pack.json
    case componentManifest  // a component's manifest.json beside one valid raw shard file
    case shard              // a shard file under a fixed valid manifest
    case textConfig         // text_encoder/config.json (with its vision_config)
    case vaeConfig          // vae/config.json
    case tokenizerJSON      // tokenizer.json, then encode and decode a sentence
    case vocabMerges        // vocab.json NUL merges.txt (the two files split at the first 0 byte)
    case promptsFile        // a --prompts-file
    case image              // PNG or JPEG through our decoders (pixel cap 4M for speed)
    case serveRequest       // a `qwen-run serve` request: byte 0 picks route and content type, then the query line, then the body
    case gguf               // a .gguf file: header, every small tensor decoded, then the Qwen2.5-VL import (names, config, tokenizer)

    /// Runs one input; errors are the expected outcome for bad input and are returned, not thrown.
    @discardableResult
    public func run(_ data: Data) -> Error? {
        do { try body(data); return nil } catch { return error }
    }

    private func body(_ data: Data) throws {
        switch self {
        case .safetensors:
            try withFile("x.safetensors", data) { path in
                let f = try SafetensorsFile(path: path)
                for name in f.tensorNames {
                    let info = try f.info(name)
                    guard info.elementCount <= 1 << 20 else { continue }
                    _ = try f.floats(name)
                }
            }
        case .index:
            try withFile("model.safetensors.index.json", data) { _ = try CheckpointComponent.readIndex($0) }
        case .packManifest:
            try withFolder { dir in
                try data.write(to: dir.appendingPathComponent(PackFormat.packFile))
                let p = try Pack(path: dir.path)
                _ = p.components
            }
        case .componentManifest:
            try withFolder { dir in
                let c = dir.appendingPathComponent("vae")
                try FileManager.default.createDirectory(at: c, withIntermediateDirectories: true)
                try data.write(to: c.appendingPathComponent(PackFormat.manifestFile))
                try ParserHarness.fixedShard.write(to: c.appendingPathComponent("s.qwshard"))
                try readComponent(c)
            }
        case .shard:
            try withFolder { dir in
                let c = dir.appendingPathComponent("vae")
                try FileManager.default.createDirectory(at: c, withIntermediateDirectories: true)
                try ParserHarness.fixedManifest(fileBytes: data.count).write(to: c.appendingPathComponent(PackFormat.manifestFile))
                try data.write(to: c.appendingPathComponent("s.qwshard"))
                try readComponent(c)
            }
        case .textConfig:
            _ = try TextConfig.load(data, file: "config.json")
            _ = try VisionConfig.fromTextEncoderConfig(data, file: "config.json")
        case .vaeConfig:
            _ = try VAEConfig.load(data, file: "config.json")
        case .tokenizerJSON:
            let t = try Qwen2Tokenizer(tokenizerJSON: data, source: "tokenizer.json")
            _ = try t.decode(t.encode("A cat sitting on a red sofa, 12 Ünïcödé 🐈 <|im_start|>"))
        case .vocabMerges:
            let cut = data.firstIndex(of: 0) ?? data.endIndex
            let t = try Qwen2Tokenizer(vocabJSON: data[data.startIndex..<cut], mergesText: cut < data.endIndex ? data[(cut + 1)...] : Data(),
                                       tokenizerConfig: nil, addedTokensJSON: nil, source: "tokenizer")
            _ = try t.decode(t.encode("A cat sitting on a red sofa"))
        case .promptsFile:
            _ = try PromptsFile.parse(data, path: "prompts.jsonl")
        case .image:
            _ = try ImageFile.decode(data, name: "image", keepAlpha: true, maxPixels: 1 << 22)
        case .gguf:
            try withFile("model.gguf", data) { path in
                let f = try GGUFFile(path: path)
                for name in f.tensorNames {
                    let info = try f.info(name)
                    guard info.type != nil, info.elementCount <= 1 << 20 else { continue }
                    var out = [Float](repeating: 0, count: info.elementCount)
                    try out.withUnsafeMutableBufferPointer { try f.floats(name, elements: 0..<info.elementCount, into: $0.baseAddress!) }
                }
                let staging = URL(fileURLWithPath: path).deletingLastPathComponent().appendingPathComponent("staging")
                _ = try GGUFImport.checkpoint(model: path, mmproj: nil, tokenizer: nil, staging: staging)
            }
        case .serveRequest:
            guard let selector = data.first else { return }
            let rest = data.dropFirst()
            let newline = rest.firstIndex(of: 0x0A) ?? rest.endIndex
            let query = String(decoding: rest[..<newline], as: UTF8.self)
            let body = Data(newline < rest.endIndex ? rest[(newline + 1)...] : Data())
            let contentType = selector & 4 == 0 ? "application/json" : "image/png"
            let accept = selector & 8 == 0 ? nil : "application/octet-stream"
            switch selector % 3 {
            case 0: _ = try ServeRequest.encode(body: body, accept: accept)
            case 1: _ = try ServeRequest.vaeEncode(body: body, query: Substring(query), contentType: contentType, accept: accept)
            default: _ = try ServeRequest.vaeDecode(body: body, query: Substring(query), contentType: contentType, accept: accept)
            }
        }
    }

    /// Opens a component folder like the loader does and reads every tensor (checksums verified).
    private func readComponent(_ folder: URL) throws {
        let dir = folder.deletingLastPathComponent()
        let manifest = PackManifest(createdBy: "fuzz", components: [PackComponentEntry(kind: "model", name: "vae")],
                                    source: PackSourceRecord(path: "", files: []), options: [:])
        try JSONEncoder().encode(manifest).write(to: dir.appendingPathComponent(PackFormat.packFile))
        let c = try Pack(path: dir.path).component("vae")
        for s in c.shardNames {
            let shard = try c.shard(s)
            for t in shard.tensorNames where (c.record(t)?.elementCount ?? 0) <= 1 << 20 { _ = try shard.vector(t) }
            shard.release()
        }
    }

    // MARK: - a fixed valid raw shard: one f32 vector of 4 elements and one q8 16x32 matrix

    static let fixedTensors: [(name: String, shape: [Int], layout: PackLayout, scheme: PackScheme)] = [
        ("v", [4], .dense, .f32), ("w", [16, 32], .qkWeight, .q8),
    ]

    // Stored as [UInt8]: LeakSanitizer does not see a Data's buffer through the spare-bit-tagged
    // pointer of a global, and reported it as a leak on every run.
    static var fixedShard: Data { Data(fixedShardBytes) }

    private static let fixedShardBytes: [UInt8] = {
        var d = Data(count: PackFormat.shardHeaderBytes)
        var offsets: [Int] = []
        for t in fixedTensors {
            let bytes = packPayloadBytes(layout: t.layout, scheme: t.scheme, group: 0, shape: t.shape)!
            d.count = PackFormat.align(d.count)
            offsets.append(d.count)
            d.append(Data((0..<bytes).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }))
        }
        d.replaceSubrange(0..<8, with: PackFormat.shardMagic)
        let payload = UInt64(d.count)
        d.withUnsafeMutableBytes { h in
            h.storeBytes(of: UInt32(PackFormat.version).littleEndian, toByteOffset: 8, as: UInt32.self)
            h.storeBytes(of: UInt32(0), toByteOffset: 12, as: UInt32.self)
            h.storeBytes(of: payload.littleEndian, toByteOffset: 16, as: UInt64.self)
        }
        return [UInt8](d)
    }()

    static func fixedManifest(fileBytes: Int) -> Data {
        let shard = fixedShard
        var at = PackFormat.shardHeaderBytes
        var records: [TensorRecord] = []
        for t in fixedTensors {
            let bytes = packPayloadBytes(layout: t.layout, scheme: t.scheme, group: 0, shape: t.shape)!
            at = PackFormat.align(at)
            let sum = shard.withUnsafeBytes { XXH64.hash(UnsafeRawBufferPointer(rebasing: $0[at..<(at + bytes)])) }
            records.append(TensorRecord(name: t.name, shape: t.shape, scheme: t.scheme, group: 0, layout: t.layout,
                                        offset: at, bytes: bytes, checksum: XXH64.format(sum)))
            at += bytes
        }
        let m = ComponentManifest(component: "vae", compression: "none", zstdLevel: nil, chunkBytes: nil,
                                  shards: [ShardRecord(name: "s", file: "s.qwshard", fileBytes: fileBytes, payloadBytes: fileBytes, tensors: records)],
                                  dropped: [])
        return try! JSONEncoder().encode(m)
    }

    /// The manifest.json that matches `fixedShard` (a seed for the componentManifest corpus).
    public static var fixedManifestSeed: Data { fixedManifest(fileBytes: fixedShard.count) }
    /// The shard file that matches the fixed manifest (a seed for the shard corpus).
    public static var fixedShardSeed: Data { fixedShard }

    // MARK: - temporary files

    /// One scratch folder per process (made once, removed at exit): every input rewrites the same file
    /// names in it, so a run costs a few small writes instead of creating and deleting a tree.
    nonisolated(unsafe) private static var scratch: URL?
    private static let scratchLock = NSLock()

    private func withFolder(_ body: (URL) throws -> Void) throws {
        Self.scratchLock.lock()
        defer { Self.scratchLock.unlock() }
        if Self.scratch == nil {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("qwen-parser-\(getpid())")
            try? FileManager.default.removeItem(at: dir)
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            Self.scratch = dir
            atexit { try? FileManager.default.removeItem(at: FileManager.default.temporaryDirectory.appendingPathComponent("qwen-parser-\(getpid())")) }
        }
        try body(Self.scratch!)
    }

    private func withFile(_ name: String, _ data: Data, _ body: (String) throws -> Void) throws {
        try withFolder { dir in
            let url = dir.appendingPathComponent(name)
            try data.write(to: url)
            try body(url.path)
        }
    }
}

import Foundation
import Quant

/// Options of `qwen-quant convert`.
public struct ConvertOptions: Sendable {
    public var scheme: PackScheme = .q8
    public var group: Int = 64
    /// nil: raw (uncompressed, mmap-able) shards. Row-gathered shards stay raw either way
    /// (`PlannedShard.zstdLevel`).
    public var zstdLevel: Int?
    public var rules: [PolicyRule] = []
    /// nil: every component found.
    public var components: Set<String>?
    public var threads: Int = ProcessInfo.processInfo.activeProcessorCount
    public var force = false
    /// nil: a progress bar when stderr is a terminal.
    public var progress: Bool?
    public var chunkBytes = PackFormat.defaultChunkBytes
    /// Per-input-column importance for the integer schemes' scale search (`--importance`).
    public var importance: ImportanceTable?
    /// The `--preset` used (recorded in pack.json's options), if any.
    public var preset: String?
    /// Per source dtype, the default scheme (a GGUF import without --scheme); rules still win.
    public var bySourceDType: [String: SchemeChoice] = [:]
    public init() {}
}

/// One pack tensor to write.
public struct PlannedTensor: Sendable {
    public let output: NameTableOutput
    /// The checkpoint name (as in the file).
    public let source: String
    public let sourceShape: [Int]
    /// The stored type as the checkpoint names it ("BF16", "Q4_K", ...).
    public let sourceDType: String
    /// Bytes of the whole source tensor in its file.
    public let sourceTensorBytes: Int
    public let choice: SchemeChoice
    public let layout: PackLayout
    public let bytes: Int
    /// How many pack tensors share the source tensor (3 for a split 3-D convolution).
    public let sourceShare: Int
    /// This tensor's share of the source bytes (so shares add up to the checkpoint's size).
    public var sourceBytes: Int { sourceTensorBytes / sourceShare }
}

public struct PlannedShard: Sendable {
    public let name: String
    public let tensors: [PlannedTensor]

    /// A shard holding an embedding table is read by row gather: a prompt needs a few rows of it.
    public var isRowGathered: Bool { tensors.contains { $0.output.role == .embedding } }

    /// The zstd level this shard is written with (nil: raw). Row-gathered shards stay raw in a zstd
    /// pack, so a reader maps the rows it needs instead of decompressing the whole table (the 7B
    /// model's is 0.6 GB as q8).
    public func zstdLevel(_ packLevel: Int?) -> Int? { isRowGathered ? nil : packLevel }
}

public struct PlannedComponent: Sendable {
    public let name: String
    public let kind: ComponentKind
    public let shards: [PlannedShard]
    public let dropped: [String]
}

/// What a conversion will write, computed from the checkpoint headers alone (`--dry-run` prints it).
public struct ConversionPlan: Sendable {
    public let source: String
    public let components: [PlannedComponent]
    /// Folders carried verbatim (tokenizer, processor) and their files.
    public let fileFolders: [(name: String, files: [String])]

    public var totalSourceBytes: Int {
        components.flatMap(\.shards).flatMap(\.tensors).reduce(0) { $0 + $1.sourceBytes }
    }
    public var totalPayloadBytes: Int { components.flatMap(\.shards).flatMap(\.tensors).reduce(0) { $0 + $1.bytes } }

    /// Builds the plan: builds every network of every component against the checkpoint's shapes (a
    /// `ShapeOnlySource`), refuses missing, misshapen and unrequested tensors by name, and picks each
    /// requested tensor's scheme with the policy.
    public static func make(checkpoint: Checkpoint, options: ConvertOptions) throws -> ConversionPlan {
        let policy = try ConversionPolicy(scheme: options.scheme, group: options.group, rules: options.rules,
                                              bySourceDType: options.bySourceDType)
        var comps: [PlannedComponent] = []
        for name in checkpoint.componentNames {
            let comp = try checkpoint.component(name)
            let requests = try ComponentRequests(comp)
            var byShard: [String: [PlannedTensor]] = [:]
            for (r, out) in requests.outputs {
                let t = requests.sourceName[r.name]!
                let info = try comp.info(t)
                let choice = policy.choose(out, sourceDType: info.dtype)
                let layout: PackLayout = out.isMatrix ? .qkWeight : .dense
                guard let bytes = packPayloadBytes(layout: layout, scheme: choice.scheme, group: choice.group, shape: out.shape) else {
                    throw QwenImageError.tensor(name: out.name,
                        message: "scheme \(choice.scheme.rawValue) with group \(choice.group) is not supported for shape \(out.shape)")
                }
                byShard[out.shard, default: []].append(PlannedTensor(
                    output: out, source: t, sourceShape: info.shape, sourceDType: info.dtype,
                    sourceTensorBytes: info.byteCount, choice: choice, layout: layout, bytes: bytes, sourceShare: requests.share[r.name]!))
            }
            let shards = byShard.keys.sorted(by: naturalLess).map { s in
                PlannedShard(name: s, tensors: byShard[s]!.sorted { naturalLess($0.output.name, $1.output.name) })
            }
            comps.append(PlannedComponent(name: name, kind: requests.kind, shards: shards, dropped: requests.dropped))
        }
        if let imp = options.importance {
            // Every vector must fit its tensor, and at least one must name a tensor of this conversion.
            var used = 0
            for t in comps.flatMap(\.shards).flatMap(\.tensors) where t.layout == .qkWeight {
                if try imp.vector(for: t.output.name, k: t.output.shape[1]) != nil { used += 1 }
            }
            guard used > 0 else {
                throw QwenImageError.invalidInput("\(imp.path): none of its \(imp.vectors.count) importance vectors names a matrix of this conversion (e.g. \(imp.vectors.keys.sorted().first!)); calibrate on a pack of the same model")
            }
        }
        var folders: [(String, [String])] = []
        for (name, url) in checkpoint.fileFolders.sorted(by: { $0.key < $1.key }) {
            folders.append((name, try carriedFiles(url)))
        }
        return ConversionPlan(source: checkpoint.sourceDescription, components: comps, fileFolders: folders)
    }

    /// Regular, non-hidden files of a folder carried verbatim.
    static func carriedFiles(_ url: URL) throws -> [String] {
        let fm = FileManager.default
        let names = (try? fm.contentsOfDirectory(atPath: url.path)) ?? []
        return names.filter { n in
            var d: ObjCBool = false
            return !n.hasPrefix(".") && fm.fileExists(atPath: url.appendingPathComponent(n).path, isDirectory: &d) && !d.boolValue
        }.sorted()
    }
}

/// "layers.2" < "layers.10": numbers compare as numbers.
public func naturalLess(_ a: String, _ b: String) -> Bool {
    func parts(_ s: String) -> [(String, Int?)] {
        s.split(separator: ".", omittingEmptySubsequences: false).map { (String($0), Int($0)) }
    }
    let pa = parts(a), pb = parts(b)
    for (x, y) in zip(pa, pb) {
        if let i = x.1, let j = y.1 { if i != j { return i < j } else { continue } }
        if x.0 != y.0 { return x.0 < y.0 }
    }
    return pa.count < pb.count
}

/// The pack tensors a checkpoint component becomes: every network it holds built against its
/// safetensors headers (`ShapeOnlySource`), so the names and shapes come from the model code alone.
/// Throws, naming the tensor, for the first missing or misshapen tensor the networks meet, then for a
/// checkpoint tensor that no network reads and that is not on the ignore list (e.g. the layers past
/// `num_hidden_layers`), then for a requested tensor that is not float.
public struct ComponentRequests {
    public let kind: ComponentKind
    /// Each distinct pack tensor and the request it answers, in request order.
    public let outputs: [(request: TensorRequest, output: NameTableOutput)]
    /// Checkpoint name (as in the file) of each requested (hub) name.
    public let sourceName: [String: String]
    /// How many pack tensors share each requested source tensor (3 for a split 3-D convolution).
    public let share: [String: Int]
    /// Ignored checkpoint tensors (names as in the file), in file order.
    public let dropped: [String]

    public init(_ comp: CheckpointComponent) throws {
        let configData = try comp.configData()
        kind = ComponentKind.detect(name: comp.name, configData: configData)
        var sourceName: [String: String] = [:], shapes: [String: [Int]] = [:]
        for t in comp.tensorNames {
            let hub = NameTable.canonicalName(t, kind: kind)
            sourceName[hub] = t
            shapes[hub] = try comp.info(t).shape
        }
        let source = ShapeOnlySource(shapes: shapes, naming: .checkpoint, location: comp.folder.path)
        try kind.requestNetworks(configData: configData, file: comp.configURL.path, from: source)
        try source.throwFirstProblem()

        let requests = source.requests
        let requested = Set(requests.map(\.name))
        var dropped: [String] = [], unread: [String] = []
        for t in comp.tensorNames where !requested.contains(NameTable.canonicalName(t, kind: kind)) {
            if NameTable.ignoreReason(NameTable.canonicalName(t, kind: kind), kind: kind) != nil {
                dropped.append(t)
            } else {
                unread.append(t)
            }
        }
        if let first = unread.sorted().first {
            let more = unread.count > 1 ? " (and \(unread.count - 1) more unread tensor\(unread.count > 2 ? "s" : ""))" : ""
            throw QwenImageError.tensor(name: first, message: "in \(comp.folder.path) but no network reads it with this config.json "
                + "(\(comp.configURL.path)): the checkpoint and its config disagree (e.g. num_hidden_layers, depth or dim_mult "
                + "smaller than the checkpoint's)\(more)")
        }
        for t in comp.tensorNames where requested.contains(NameTable.canonicalName(t, kind: kind)) {
            let info = try comp.info(t)
            guard info.isFloat else {
                throw QwenImageError.tensor(name: t, message: "expected a float tensor (F32, F16, BF16), found \(info.dtype) in \(comp.folder.path)")
            }
        }

        var outputs: [(TensorRequest, NameTableOutput)] = []
        var byPackName: [String: TensorRequest] = [:]
        var share: [String: Int] = [:]
        for r in requests {
            if let earlier = byPackName[r.packName] {
                guard earlier == r else {
                    throw QwenImageError.tensor(name: r.packName, message: "asked for twice with different layouts (\(earlier.kind) and \(r.kind)): a model bug")
                }
                continue
            }
            byPackName[r.packName] = r
            share[r.name, default: 0] += 1
            outputs.append((r, NameTable.output(r, kind: kind)))
        }
        self.outputs = outputs
        self.sourceName = sourceName
        self.share = share
        self.dropped = dropped
    }
}

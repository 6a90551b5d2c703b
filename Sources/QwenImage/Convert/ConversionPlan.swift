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
    public init() {}
}

/// One pack tensor to write.
public struct PlannedTensor: Sendable {
    public let output: NameTableOutput
    /// The checkpoint name (as in the file).
    public let source: String
    public let sourceShape: [Int]
    public let sourceDType: SafetensorsDType
    public let choice: SchemeChoice
    public let layout: PackLayout
    public let bytes: Int
    /// How many pack tensors share the source tensor (3 for a split 3-D convolution).
    public let sourceShare: Int
    /// This tensor's share of the source bytes (so shares add up to the checkpoint's size).
    public var sourceBytes: Int { sourceShape.reduce(1, *) * sourceDType.byteSize / sourceShare }
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

    /// Builds the plan: validates every component against its config.json, maps names through the
    /// name table, and picks each tensor's scheme with the policy.
    public static func make(checkpoint: Checkpoint, options: ConvertOptions) throws -> ConversionPlan {
        let policy = try ConversionPolicy(scheme: options.scheme, group: options.group, rules: options.rules)
        var comps: [PlannedComponent] = []
        for name in checkpoint.componentNames {
            let comp = try checkpoint.component(name)
            let configPath = comp.configURL.path
            let configData = try comp.configData()
            guard let config = (try? JSONSerialization.jsonObject(with: configData)) as? [String: Any] else {
                throw QwenImageError.config(file: configPath, message: "not a JSON object")
            }
            let kind = ComponentKind.detect(name: name, config: config)
            try ExpectedTensors.check(comp, kind: kind, config: config)
            var byShard: [String: [PlannedTensor]] = [:]
            var dropped: [String] = []
            for t in comp.tensorNames {
                let info = try comp.info(t)
                switch try NameTable.entry(kind: kind, name: t, shape: info.shape) {
                case .drop: dropped.append(t)
                case .tensors(let outs):
                    guard info.dtype.isFloat else {
                        throw QwenImageError.tensor(name: t, message: "expected a float tensor (F32, F16, BF16), found \(info.dtype.rawValue) in \(comp.folder.path)")
                    }
                    for o in outs {
                        let choice = policy.choose(o)
                        let layout: PackLayout = o.isMatrix ? .qkWeight : .dense
                        guard let bytes = packPayloadBytes(layout: layout, scheme: choice.scheme, group: choice.group, shape: o.shape) else {
                            throw QwenImageError.tensor(name: o.name,
                                message: "scheme \(choice.scheme.rawValue) with group \(choice.group) is not supported for shape \(o.shape)")
                        }
                        byShard[o.shard, default: []].append(PlannedTensor(
                            output: o, source: t, sourceShape: info.shape, sourceDType: info.dtype,
                            choice: choice, layout: layout, bytes: bytes, sourceShare: outs.count))
                    }
                }
            }
            let shards = byShard.keys.sorted(by: naturalLess).map { s in
                PlannedShard(name: s, tensors: byShard[s]!.sorted { naturalLess($0.output.name, $1.output.name) })
            }
            comps.append(PlannedComponent(name: name, kind: kind, shards: shards, dropped: dropped))
        }
        var folders: [(String, [String])] = []
        for (name, url) in checkpoint.fileFolders.sorted(by: { $0.key < $1.key }) {
            folders.append((name, try carriedFiles(url)))
        }
        return ConversionPlan(source: checkpoint.root.path, components: comps, fileFolders: folders)
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

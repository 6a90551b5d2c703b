import Foundation
import Kernels

// Pack format, version 1. The full specification is docs/FORMAT.md; the section numbers below refer to it.
//
//  §2  A pack is a folder: pack.json (PackManifest) + one folder per component.
//  §3  A model component folder: manifest.json (ComponentManifest), config.json (verbatim), shard files.
//      A shard record may name its own compression; without it the component's applies.
//      A files component folder (tokenizer, processor): the source files, verbatim.
//  §4  A shard file: a 64-byte header (magic "QWPKSHRD", u32 version, u32 compression, u64 payload
//      bytes, zeros), then either raw payloads at 64-byte aligned offsets (compression 0) or
//      independent zstd frames (compression 1).
//  §5  Tensor records: name, shape, scheme, group, layout, offset, bytes, checksum (+ frames, source).
//  §6  Layouts: 0 = dense little-endian f32 array; 1 = qk_weight (the Kernels packed layout).
//  §7  Checksums: XXH64 (seed 0) of the uncompressed payload bytes, "xxh64:%016x".

public enum PackFormat {
    public static let name = "qwen-image-pack"
    public static let version = 1
    /// Every uncompressed payload starts at a multiple of this (file offset for raw shards,
    /// buffer offset for compressed ones).
    public static let alignment = 64
    public static let shardHeaderBytes = 64
    public static let shardMagic: [UInt8] = Array("QWPKSHRD".utf8)
    public static let shardExtension = "qwshard"
    public static let manifestFile = "manifest.json"
    public static let packFile = "pack.json"
    public static let configFile = "config.json"
    /// Uncompressed size of one zstd frame (the last frame of a tensor may be shorter).
    public static let defaultChunkBytes = 4 << 20

    public static func align(_ x: Int) -> Int { (x + alignment - 1) / alignment * alignment }
}

/// §6 payload layouts.
public enum PackLayout: Int, Codable, Sendable {
    /// Little-endian f32, row-major, of the record's shape (vectors, biases, norm weights).
    case dense = 0
    /// A qk_weight: shape [n, k] packed by qk_weight_pack_rows in the record's scheme and group.
    case qkWeight = 1
}

/// Storage schemes. q4c, q5s, q6s and q8s keep their group scales as 8-bit codes under one f32 scale
/// per 256 weights of a row (4.375, 5.375, 6.375 and 8.375 bits per weight); q4c's 16 levels are a
/// fitted codebook, q5s / q6s are uniform 5- and 6-bit levels.
public enum PackScheme: String, Codable, Sendable, CaseIterable {
    case f32, bf16, f16, q8, q4, q4c, q8s, q5s, q6s

    public var qk: qk_scheme {
        switch self {
        case .f32: return QK_F32
        case .bf16: return QK_BF16
        case .f16: return QK_F16
        case .q8: return QK_Q8
        case .q4: return QK_Q4
        case .q4c: return QK_Q4C
        case .q8s: return QK_Q8S
        case .q5s: return QK_Q5S
        case .q6s: return QK_Q6S
        }
    }

    public var isQuantized: Bool { self != .f32 && self != .bf16 && self != .f16 }

    /// The one group size a compact-scale scheme takes (whatever --group-size says); nil for the others.
    public var fixedGroup: Int? { self == .q4c || self == .q8s || self == .q5s || self == .q6s ? 32 : nil }

    /// The scheme used instead where fewer than 8 bits are not offered (VAE convolutions).
    public var eightBitSibling: PackScheme {
        switch self {
        case .q4: return .q8
        case .q4c, .q5s, .q6s: return .q8s
        default: return self
        }
    }

    /// Payload bits per weight when k is a multiple of 256 (group 0: the per-row scale is not counted).
    public func bitsPerWeight(group: Int) -> Double {
        switch self {
        case .f32: return 32
        case .bf16, .f16: return 16
        case .q8: return 8 + (group == 0 ? 0 : 32 / Double(group))
        case .q4: return 4 + (group == 0 ? 0 : 32 / Double(group))
        case .q4c: return 4.375
        case .q8s: return 8.375
        case .q5s: return 5.375
        case .q6s: return 6.375
        }
    }

    /// Group sizes a scheme accepts: 0 (per output row) or 32/64/128 along k for q8/q4; 0 for the others.
    public static let groupSizes = [0, 32, 64, 128]

    public static func parse(_ s: String) throws -> PackScheme {
        guard let v = PackScheme(rawValue: s.lowercased()) else {
            throw QuantError.invalidArgument("unknown scheme '\(s)' (expected one of: \(allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        return v
    }

    public static func validateGroup(_ g: Int) throws {
        guard groupSizes.contains(g) else {
            throw QuantError.invalidArgument("unsupported group size \(g) (expected 0 = per output row, 32, 64 or 128)")
        }
    }

    /// A group given explicitly for this scheme (a rule's `:GROUP`).
    public func validateGroup(_ g: Int) throws {
        try Self.validateGroup(g)
        if let f = fixedGroup, g != f {
            throw QuantError.invalidArgument("\(rawValue) takes group \(f) only, got \(g) (leave the group out)")
        }
    }
}

// MARK: - Manifests (JSON, snake_case keys)

/// §2 pack.json
public struct PackManifest: Codable, Sendable {
    public var format: String
    public var version: Int
    public var createdBy: String
    public var components: [PackComponentEntry]
    public var source: PackSourceRecord
    public var options: [String: String]

    enum CodingKeys: String, CodingKey {
        case format, version, createdBy = "created_by", components, source, options
    }

    public init(createdBy: String, components: [PackComponentEntry], source: PackSourceRecord, options: [String: String]) {
        format = PackFormat.name
        version = PackFormat.version
        self.createdBy = createdBy
        self.components = components
        self.source = source
        self.options = options
    }
}

public struct PackComponentEntry: Codable, Sendable {
    /// "model" (manifest + shards) or "files" (carried verbatim).
    public var kind: String
    public var name: String
    /// For "files": the file names in the folder.
    public var files: [String]?
    public init(kind: String, name: String, files: [String]? = nil) { self.kind = kind; self.name = name; self.files = files }
}

public struct PackSourceRecord: Codable, Sendable {
    public var path: String
    public var files: [PackSourceFile]
    public init(path: String, files: [PackSourceFile]) { self.path = path; self.files = files }
}

public struct PackSourceFile: Codable, Sendable {
    /// Relative to the source root.
    public var path: String
    public var bytes: Int
    public var xxh64: String
    public init(path: String, bytes: Int, xxh64: String) { self.path = path; self.bytes = bytes; self.xxh64 = xxh64 }
}

/// §3 manifest.json of a model component.
public struct ComponentManifest: Codable, Sendable {
    public var component: String
    public var version: Int
    /// "none" or "zstd": the compression of every shard whose record does not name its own.
    public var compression: String
    public var zstdLevel: Int?
    public var chunkBytes: Int?
    public var shards: [ShardRecord]
    /// Tensors of the source deliberately left out (e.g. lm_head.weight).
    public var dropped: [String]

    enum CodingKeys: String, CodingKey {
        case component, version, compression, zstdLevel = "zstd_level", chunkBytes = "chunk_bytes", shards, dropped
    }

    public init(component: String, compression: String, zstdLevel: Int?, chunkBytes: Int?, shards: [ShardRecord], dropped: [String]) {
        self.component = component
        version = PackFormat.version
        self.compression = compression
        self.zstdLevel = zstdLevel
        self.chunkBytes = chunkBytes
        self.shards = shards
        self.dropped = dropped
    }

    /// §3.2: a shard's own compression, else the component's default (packs written before the
    /// per-shard key existed).
    public func compression(of shard: ShardRecord) -> String { shard.compression ?? compression }
}

/// §4 one shard file.
public struct ShardRecord: Codable, Sendable {
    public var name: String
    public var file: String
    /// Size of the shard file.
    public var fileBytes: Int
    /// Size of the uncompressed payload area (raw: the file; zstd: the decompression buffer).
    public var payloadBytes: Int
    /// "none" or "zstd"; nil: the component's `compression`. Read it with `ComponentManifest.compression(of:)`.
    public var compression: String?
    public var tensors: [TensorRecord]

    enum CodingKeys: String, CodingKey {
        case name, file, fileBytes = "file_bytes", payloadBytes = "payload_bytes", compression, tensors
    }

    public init(name: String, file: String, fileBytes: Int, payloadBytes: Int, compression: String? = nil, tensors: [TensorRecord]) {
        self.name = name; self.file = file; self.fileBytes = fileBytes; self.payloadBytes = payloadBytes
        self.compression = compression; self.tensors = tensors
    }
}

/// §5 one tensor.
public struct TensorRecord: Codable, Sendable {
    public var name: String
    /// The logical packed shape: [n, k] for a qk_weight, the dense shape otherwise.
    public var shape: [Int]
    public var scheme: PackScheme
    public var group: Int
    public var layout: PackLayout
    /// Raw shards: byte offset in the file. Compressed shards: byte offset in the decompressed buffer.
    public var offset: Int
    /// Uncompressed payload bytes.
    public var bytes: Int
    public var checksum: String
    /// Compressed shards: [file offset, compressed bytes, uncompressed bytes] per frame, in order.
    public var frames: [[Int]]?
    /// The checkpoint tensor this was made from, its shape and dtype, and the relative RMSE of the
    /// stored values against it (‖stored − source‖ / ‖source‖).
    public var source: String?
    public var sourceShape: [Int]?
    public var sourceDtype: String?
    public var relRMSE: Double?

    enum CodingKeys: String, CodingKey {
        case name, shape, scheme, group, layout, offset, bytes, checksum, frames, source
        case sourceShape = "source_shape", sourceDtype = "source_dtype", relRMSE = "rel_rmse"
    }

    public init(name: String, shape: [Int], scheme: PackScheme, group: Int, layout: PackLayout, offset: Int, bytes: Int,
                checksum: String, frames: [[Int]]? = nil, source: String? = nil, sourceShape: [Int]? = nil,
                sourceDtype: String? = nil, relRMSE: Double? = nil) {
        self.name = name; self.shape = shape; self.scheme = scheme; self.group = group; self.layout = layout
        self.offset = offset; self.bytes = bytes; self.checksum = checksum; self.frames = frames
        self.source = source; self.sourceShape = sourceShape; self.sourceDtype = sourceDtype; self.relRMSE = relRMSE
    }

    /// The product of the dimensions; the loader checked (`packPayloadBytes`) that it neither
    /// overflows nor has a negative factor.
    public var elementCount: Int { shape.reduce(1, *) }
}

/// What the loader tells the models about a tensor.
public struct PackTensorInfo: Sendable {
    public let name: String
    public let shape: [Int]
    public let scheme: PackScheme
    public let group: Int
    public let layout: PackLayout
    public let shard: String
    public let bytes: Int
}

/// Expected payload size of a record, or nil when the (scheme, group, shape) is not supported or
/// does not fit: every dimension must be positive and every product representable (the values come
/// from a manifest that may be corrupted or crafted).
public func packPayloadBytes(layout: PackLayout, scheme: PackScheme, group: Int, shape: [Int]) -> Int? {
    guard shape.allSatisfy({ $0 > 0 }), let group32 = Int32(exactly: group) else { return nil }
    switch layout {
    case .dense:
        guard scheme == .f32, group == 0 else { return nil }
        var bytes = 4
        for d in shape {
            let (m, o) = bytes.multipliedReportingOverflow(by: d)
            if o { return nil }
            bytes = m
        }
        return bytes
    case .qkWeight:
        // qk_weight_bytes computes in size_t: keep n and k small enough that its products cannot wrap
        // (2^40 elements is far beyond any real matrix and leaves 2^23 of headroom per element).
        guard shape.count == 2 else { return nil }
        let (elements, overflow) = shape[0].multipliedReportingOverflow(by: shape[1])
        guard !overflow, elements < 1 << 40 else { return nil }
        let b = qk_weight_bytes(scheme.qk, group32, Int64(shape[0]), Int64(shape[1]))
        return b == 0 ? nil : Int(exactly: b)
    }
}

extension JSONEncoder {
    static var pack: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return e
    }
}

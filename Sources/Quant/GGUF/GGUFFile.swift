import Foundation

// GGUF, the file format of ggml / llama.cpp (version 3; version 2 has the same layout):
//
//   1. header: u32 magic "GGUF" (bytes 47 47 55 46), u32 version, u64 tensor count, u64 metadata count
//   2. metadata: key (string), u32 value type, value; types 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32,
//      6 f32, 7 bool, 8 string, 9 array (u32 item type, u64 count, items), 10 u64, 11 i64, 12 f64;
//      a string is u64 byte length + UTF-8 bytes (no terminator)
//   3. tensor infos: name (string), u32 n_dims (1...4), u64 ne[n_dims] (ne[0] varies fastest: the
//      reverse of a PyTorch shape), u32 ggml type, u64 offset (from the data section, aligned)
//   4. padding to `general.alignment` (u32, a power of two, default 32), then the data section.
//
// The reader is as strict as the safetensors one: every count, length, offset and size is checked
// against the file before it is used, keys and tensor names must be unique, tensors must not overlap,
// and every fault names the file, the key or tensor, what was expected and what was found.

/// A metadata value.
public enum GGUFValue: Sendable, Equatable {
    case uint(UInt64), int(Int64), float(Double), bool(Bool), string(String)
    indirect case array([GGUFValue])

    public var int: Int? {
        switch self {
        case .uint(let v): return v <= UInt64(Int.max) ? Int(v) : nil
        case .int(let v): return Int(v)
        default: return nil
        }
    }
    public var double: Double? {
        switch self {
        case .float(let v): return v
        case .uint(let v): return Double(v)
        case .int(let v): return Double(v)
        default: return nil
        }
    }
    public var string: String? { if case .string(let s) = self { return s }; return nil }
    public var array: [GGUFValue]? { if case .array(let a) = self { return a }; return nil }

    var typeName: String {
        switch self {
        case .uint: return "unsigned integer"
        case .int: return "integer"
        case .float: return "float"
        case .bool: return "bool"
        case .string: return "string"
        case .array: return "array"
        }
    }
}

/// One tensor-info record. `offset` is absolute in the file; `shape` is PyTorch order (ne reversed).
public struct GGUFTensorInfo: Sendable, Equatable {
    public let name: String
    public let typeID: UInt32
    /// nil: a ggml type this reader does not decode (its name is in `typeName`).
    public let type: GGMLType?
    public let typeName: String
    public let shape: [Int]
    public let offset: Int
    public let byteCount: Int
    public var elementCount: Int { shape.reduce(1, *) }
}

/// A GGUF file, memory-mapped.
public final class GGUFFile: @unchecked Sendable {
    public static let maxDims = 4
    /// Bounds that keep a hostile header from allocating without limit (the real files are far below).
    public static let maxStringBytes = 1 << 20
    public static let maxArrayItems = 1 << 24

    public let path: String
    public let version: UInt32
    /// Metadata in file order.
    public let metadataKeys: [String]
    public let metadata: [String: GGUFValue]
    /// Tensor names in file order.
    public let tensorNames: [String]
    public let tensors: [String: GGUFTensorInfo]
    public let alignment: Int
    public let dataStart: Int
    public let mapped: MappedFile

    public init(path: String) throws {
        self.path = path
        mapped = try MappedFile(path: path)
        var r = Reader(mapped: mapped, file: path)
        let magic = try r.u32("magic")
        guard magic == 0x4655_4747 else {
            throw QuantError.gguf(file: path, tensor: nil,
                message: "not a GGUF file: the first 4 bytes are \(String(format: "0x%08x", magic)), expected \"GGUF\"")
        }
        version = try r.u32("version")
        guard version == 2 || version == 3 else {
            throw QuantError.gguf(file: path, tensor: nil,
                message: "GGUF version \(version) is not supported (expected 3, or 2 which has the same layout); convert the model again with a current llama.cpp")
        }
        let nTensors = try r.u64("tensor count"), nKV = try r.u64("metadata count")
        // Every metadata pair takes at least 8 + 1 + 4 + 1 bytes and every tensor info at least 8 + 1 + 4 + 8 + 4 + 8.
        guard nKV <= UInt64(mapped.size / 14), nTensors <= UInt64(mapped.size / 33) else {
            throw QuantError.gguf(file: path, tensor: nil,
                message: "header claims \(nTensors) tensors and \(nKV) metadata pairs, more than a \(mapped.size)-byte file can hold: truncated or not GGUF")
        }
        var keys: [String] = [], meta: [String: GGUFValue] = [:]
        for i in 0..<Int(nKV) {
            let key = try r.string("metadata key \(i)")
            guard !key.isEmpty else { throw QuantError.gguf(file: path, tensor: nil, message: "metadata key \(i) is empty") }
            guard meta[key] == nil else {
                throw QuantError.gguf(file: path, tensor: nil, message: "metadata key \(key) appears twice")
            }
            let type = try r.u32("type of \(key)")
            meta[key] = try r.value(type: type, what: key, nested: false)
            keys.append(key)
        }
        metadataKeys = keys
        metadata = meta

        var align = 32
        if let a = meta["general.alignment"] {
            guard case .uint(let v) = a, v > 0, v <= 1 << 16, v & (v - 1) == 0 else {
                throw QuantError.gguf(file: path, tensor: nil, message: "general.alignment is \(a), expected a power of two up to 65536")
            }
            align = Int(v)
        }
        alignment = align

        struct Raw { let name: String; let ne: [Int]; let type: UInt32; let offset: UInt64 }
        var raws: [Raw] = []
        var seen = Set<String>()
        for i in 0..<Int(nTensors) {
            let name = try r.string("name of tensor \(i)")
            guard !name.isEmpty else { throw QuantError.gguf(file: path, tensor: nil, message: "tensor \(i) has an empty name") }
            guard seen.insert(name).inserted else { throw QuantError.gguf(file: path, tensor: name, message: "appears twice") }
            let nd = try r.u32("n_dims of \(name)")
            guard nd >= 1, nd <= UInt32(Self.maxDims) else {
                throw QuantError.gguf(file: path, tensor: name, message: "has \(nd) dimensions, expected 1 to \(Self.maxDims)")
            }
            var ne: [Int] = []
            for _ in 0..<Int(nd) {
                let d = try r.u64("dimensions of \(name)")
                guard d >= 1, d <= UInt64(Int32.max) else {
                    throw QuantError.gguf(file: path, tensor: name, message: "dimension \(d) is out of range (1 to \(Int32.max))")
                }
                ne.append(Int(d))
            }
            raws.append(Raw(name: name, ne: ne, type: try r.u32("type of \(name)"), offset: try r.u64("offset of \(name)")))
        }
        let infoEnd = r.pos
        dataStart = (infoEnd + align - 1) / align * align
        guard dataStart <= mapped.size else {
            throw QuantError.gguf(file: path, tensor: nil, message: "the data section would start at byte \(dataStart), past the end of the file (\(mapped.size) bytes): truncated?")
        }
        let dataSize = mapped.size - dataStart
        var infos: [GGUFTensorInfo] = []
        for t in raws {
            guard let geo = GGMLType.catalog[t.type] else {
                throw QuantError.gguf(file: path, tensor: t.name, message: "unknown ggml type id \(t.type)")
            }
            guard t.ne[0] % geo.elements == 0 else {
                throw QuantError.gguf(file: path, tensor: t.name,
                    message: "\(geo.name) stores blocks of \(geo.elements), but the row length ne[0] is \(t.ne[0])")
            }
            var count = 1
            for d in t.ne {
                let (m, o) = count.multipliedReportingOverflow(by: d)
                guard !o, m <= 1 << 40 else { throw QuantError.gguf(file: path, tensor: t.name, message: "shape \(t.ne.reversed()) is too large") }
                count = m
            }
            let bytes = count / geo.elements * geo.bytes
            guard t.offset % UInt64(align) == 0 else {
                throw QuantError.gguf(file: path, tensor: t.name, message: "data offset \(t.offset) is not a multiple of the alignment \(align)")
            }
            guard t.offset <= UInt64(dataSize), UInt64(bytes) <= UInt64(dataSize) - t.offset else {
                throw QuantError.gguf(file: path, tensor: t.name,
                    message: "\(geo.name) \(Array(t.ne.reversed())) needs \(bytes) bytes at data offset \(t.offset), past the end of the data section (\(dataSize) bytes): truncated?")
            }
            infos.append(GGUFTensorInfo(name: t.name, typeID: t.type, type: GGMLType(rawValue: t.type), typeName: geo.name,
                                        shape: Array(t.ne.reversed()), offset: dataStart + Int(t.offset), byteCount: bytes))
        }
        let sorted = infos.sorted { ($0.offset, $0.byteCount) < ($1.offset, $1.byteCount) }
        for (a, b) in zip(sorted, sorted.dropFirst()) where b.offset < a.offset + a.byteCount {
            throw QuantError.gguf(file: path, tensor: b.name,
                message: "data [\(b.offset - dataStart), \(b.offset - dataStart + b.byteCount)) overlaps tensor \(a.name) [\(a.offset - dataStart), \(a.offset - dataStart + a.byteCount))")
        }
        tensorNames = infos.map(\.name)
        tensors = Dictionary(uniqueKeysWithValues: infos.map { ($0.name, $0) })
    }

    public func info(_ name: String) throws -> GGUFTensorInfo {
        guard let i = tensors[name] else { throw QuantError.missingTensor(file: path, tensor: name) }
        return i
    }

    /// Elements [range) of a tensor (flat, PyTorch order) decoded to f32 into `out`.
    public func floats(_ name: String, elements range: Range<Int>, into out: UnsafeMutablePointer<Float>) throws {
        let i = try info(name)
        guard let type = i.type else {
            throw QuantError.gguf(file: path, tensor: name,
                message: "is \(i.typeName), which this importer does not decode (supported: \(GGMLType.supportedNames)); requantize the model to one of those with llama-quantize")
        }
        guard range.lowerBound >= 0, range.upperBound <= i.elementCount else {
            throw QuantError.invalidArgument("tensor \(name): element range \(range) outside 0..<\(i.elementCount)")
        }
        guard !range.isEmpty, let base = mapped.base else { return }
        let be = type.blockElements
        let first = range.lowerBound / be, last = (range.upperBound + be - 1) / be
        let src = base + i.offset
        // Whole blocks straight into `out`; a partial block at either end through a scratch block.
        var b = first
        var o = out
        if range.lowerBound % be != 0 || (first == last - 1 && range.upperBound % be != 0) {
            withUnsafeTemporaryAllocation(of: Float.self, capacity: be) { s in
                type.dequantize(blocks: 1, from: src + first * type.blockBytes, into: s.baseAddress!)
                let from = range.lowerBound - first * be, to = min(be, range.upperBound - first * be)
                for j in from..<to { o[j - from] = s[j] }
                o += to - from
            }
            b += 1
        }
        let wholeEnd = range.upperBound / be
        if b < wholeEnd {
            type.dequantize(blocks: wholeEnd - b, from: src + b * type.blockBytes, into: o)
            o += (wholeEnd - b) * be
            b = wholeEnd
        }
        if b < last {
            withUnsafeTemporaryAllocation(of: Float.self, capacity: be) { s in
                type.dequantize(blocks: 1, from: src + b * type.blockBytes, into: s.baseAddress!)
                for j in 0..<(range.upperBound - b * be) { o[j] = s[j] }
            }
        }
    }

    /// Drops the pages of a tensor's elements [range) from the page cache mapping (after reading them).
    public func dropPages(_ name: String, elements range: Range<Int>) {
        guard let i = tensors[name], let type = i.type, !range.isEmpty else { return }
        let be = type.blockElements
        let start = range.lowerBound / be * type.blockBytes, end = (range.upperBound + be - 1) / be * type.blockBytes
        mapped.advise(i.offset + start, end - start, willNeed: false)
    }

    // MARK: - metadata access

    public func string(_ key: String) throws -> String? {
        guard let v = metadata[key] else { return nil }
        guard let s = v.string else { throw badKey(key, "a string", v) }
        return s
    }

    public func int(_ key: String) throws -> Int? {
        guard let v = metadata[key] else { return nil }
        guard let i = v.int else { throw badKey(key, "an integer", v) }
        return i
    }

    public func double(_ key: String) throws -> Double? {
        guard let v = metadata[key] else { return nil }
        guard let d = v.double else { throw badKey(key, "a number", v) }
        return d
    }

    public func strings(_ key: String) throws -> [String]? {
        guard let v = metadata[key] else { return nil }
        guard let a = v.array else { throw badKey(key, "an array of strings", v) }
        return try a.map { guard let s = $0.string else { throw badKey(key, "an array of strings", v) }; return s }
    }

    public func ints(_ key: String) throws -> [Int]? {
        guard let v = metadata[key] else { return nil }
        guard let a = v.array else { throw badKey(key, "an array of integers", v) }
        return try a.map { guard let s = $0.int else { throw badKey(key, "an array of integers", v) }; return s }
    }

    public func doubles(_ key: String) throws -> [Double]? {
        guard let v = metadata[key] else { return nil }
        guard let a = v.array else { throw badKey(key, "an array of numbers", v) }
        return try a.map { guard let s = $0.double else { throw badKey(key, "an array of numbers", v) }; return s }
    }

    func badKey(_ key: String, _ expected: String, _ found: GGUFValue) -> QuantError {
        let shown: String
        if case .array(let a) = found { shown = "an array of \(a.count) \(a.first?.typeName ?? "")" } else { shown = "a \(found.typeName)" }
        return QuantError.gguf(file: path, tensor: nil, message: "metadata \(key) is \(shown), expected \(expected)")
    }
}

/// Bounds-checked little-endian cursor over the mapped header.
private struct Reader {
    let mapped: MappedFile
    let file: String
    var pos = 0

    init(mapped: MappedFile, file: String) { self.mapped = mapped; self.file = file }

    mutating func take(_ n: Int, _ what: String) throws -> UnsafeRawBufferPointer {
        guard n >= 0, n <= mapped.size - pos else {
            throw QuantError.gguf(file: file, tensor: nil,
                message: "\(what): needs \(n) bytes at byte \(pos), but the file ends at \(mapped.size): truncated or not GGUF")
        }
        defer { pos += n }
        return mapped.bytes(pos, n)
    }

    mutating func u8(_ what: String) throws -> UInt8 { try take(1, what).load(as: UInt8.self) }
    mutating func u16(_ what: String) throws -> UInt16 { try take(2, what).loadUnaligned(as: UInt16.self).littleEndian }
    mutating func u32(_ what: String) throws -> UInt32 { try take(4, what).loadUnaligned(as: UInt32.self).littleEndian }
    mutating func u64(_ what: String) throws -> UInt64 { try take(8, what).loadUnaligned(as: UInt64.self).littleEndian }

    mutating func string(_ what: String) throws -> String {
        let n = try u64("length of \(what)")
        guard n <= UInt64(GGUFFile.maxStringBytes) else {
            throw QuantError.gguf(file: file, tensor: nil, message: "\(what): string length \(n) exceeds the limit of \(GGUFFile.maxStringBytes) bytes")
        }
        let bytes = try take(Int(n), what)
        guard let s = String(validating: bytes, as: UTF8.self) else {
            throw QuantError.gguf(file: file, tensor: nil, message: "\(what) is not valid UTF-8")
        }
        return s
    }

    mutating func value(type: UInt32, what: String, nested: Bool) throws -> GGUFValue {
        switch type {
        case 0: return .uint(UInt64(try u8(what)))
        case 1: return .int(Int64(Int8(bitPattern: try u8(what))))
        case 2: return .uint(UInt64(try u16(what)))
        case 3: return .int(Int64(Int16(bitPattern: try u16(what))))
        case 4: return .uint(UInt64(try u32(what)))
        case 5: return .int(Int64(Int32(bitPattern: try u32(what))))
        case 6: return .float(Double(Float(bitPattern: try u32(what))))
        case 7:
            let b = try u8(what)
            guard b <= 1 else { throw QuantError.gguf(file: file, tensor: nil, message: "metadata \(what): bool byte is \(b), expected 0 or 1") }
            return .bool(b == 1)
        case 8: return .string(try string(what))
        case 9:
            guard !nested else { throw QuantError.gguf(file: file, tensor: nil, message: "metadata \(what): arrays of arrays are not supported") }
            let itemType = try u32("item type of \(what)")
            let n = try u64("length of \(what)")
            let minItem = [0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 8: 8, 10: 8, 11: 8, 12: 8][Int(itemType)] ?? 1
            guard n <= UInt64(GGUFFile.maxArrayItems), n * UInt64(minItem) <= UInt64(mapped.size - pos) else {
                throw QuantError.gguf(file: file, tensor: nil,
                    message: "metadata \(what): array of \(n) items does not fit in the rest of the file (or exceeds \(GGUFFile.maxArrayItems) items)")
            }
            var items: [GGUFValue] = []
            items.reserveCapacity(Int(n))
            for _ in 0..<Int(n) { items.append(try value(type: itemType, what: what, nested: true)) }
            return .array(items)
        case 10: return .uint(try u64(what))
        case 11: return .int(Int64(bitPattern: try u64(what)))
        case 12: return .float(Double(bitPattern: try u64(what)))
        default:
            throw QuantError.gguf(file: file, tensor: nil, message: "metadata \(what): unknown value type \(type) (expected 0 to 12)")
        }
    }
}

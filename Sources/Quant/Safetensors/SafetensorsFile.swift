import Foundation

/// Element types of safetensors files (the names are the header strings).
public enum SafetensorsDType: String, Sendable, CaseIterable {
    case F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL

    public var byteSize: Int {
        switch self {
        case .F64, .I64, .U64: return 8
        case .F32, .I32, .U32: return 4
        case .F16, .BF16, .I16, .U16: return 2
        case .I8, .U8, .BOOL: return 1
        }
    }

    public var isFloat: Bool { self == .F64 || self == .F32 || self == .F16 || self == .BF16 }
}

/// One tensor record of a safetensors header. `offset` is absolute in the file.
public struct SafetensorsTensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: SafetensorsDType
    public let shape: [Int]
    public let offset: Int
    public let byteCount: Int
    public var elementCount: Int { shape.reduce(1, *) }
}

/// A safetensors file, memory-mapped; tensors are zero-copy views into the mapping.
///
/// Format: 8-byte little-endian header length N, N bytes of JSON
/// `{"NAME": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}`,
/// then the data; offsets are relative to the first byte after the header.
/// The header is validated strictly; every violation names the file and the tensor.
public final class SafetensorsFile: @unchecked Sendable {
    /// Largest header accepted (the reference implementation uses the same limit).
    public static let maxHeaderBytes = 100 << 20

    public let path: String
    public let metadata: [String: String]
    /// Tensor names in file order (by offset).
    public let tensorNames: [String]
    public let tensors: [String: SafetensorsTensorInfo]
    public let mapped: MappedFile
    /// First byte of the data section.
    public let dataStart: Int

    public init(path: String) throws {
        self.path = path
        mapped = try MappedFile(path: path)
        let file = path
        guard mapped.size >= 8 else {
            throw QuantError.safetensors(file: file, tensor: nil,
                message: "file too short for a safetensors header: \(mapped.size) bytes, need at least 8")
        }
        let n64 = mapped.bytes(0, 8).loadUnaligned(as: UInt64.self).littleEndian
        guard n64 <= UInt64(Self.maxHeaderBytes) else {
            throw QuantError.safetensors(file: file, tensor: nil,
                message: "header length \(n64) exceeds the limit of \(Self.maxHeaderBytes) bytes (not a safetensors file, or corrupted)")
        }
        let n = Int(n64)
        guard 8 + n <= mapped.size else {
            throw QuantError.safetensors(file: file, tensor: nil,
                message: "header length \(n) runs past the end of the file (\(mapped.size) bytes): truncated?")
        }
        dataStart = 8 + n
        let dataSize = mapped.size - dataStart
        // The project's strict reader, not JSONSerialization: a key given twice is an error (it would
        // silently keep the last one), and nesting is bounded.
        let json: Any
        do {
            var scanner = JSONScanner(mapped.bytes(8, n).bindMemory(to: UInt8.self), file: file,
                                      makeError: { QuantError.safetensors(file: file, tensor: nil, message: "header is \($0)") })
            json = try scanner.value()
            try scanner.end()
        }
        guard let dict = json as? [String: Any] else {
            throw QuantError.safetensors(file: file, tensor: nil, message: "header is not a JSON object")
        }
        var meta: [String: String] = [:]
        var infos: [SafetensorsTensorInfo] = []
        for (name, value) in dict {
            if name == "__metadata__" {
                guard let m = value as? [String: Any] else {
                    throw QuantError.safetensors(file: file, tensor: nil, message: "__metadata__ is not an object")
                }
                for (k, v) in m {
                    guard let s = v as? String else {
                        throw QuantError.safetensors(file: file, tensor: nil, message: "__metadata__ value \(k) is not a string")
                    }
                    meta[k] = s
                }
                continue
            }
            infos.append(try Self.parseEntry(name: name, value: value, file: file, dataSize: dataSize, dataStart: dataStart))
        }
        infos.sort { ($0.offset, $0.byteCount, $0.name) < ($1.offset, $1.byteCount, $1.name) }
        // Each non-empty tensor must start at or after the end of every earlier one: compare with the
        // furthest-reaching earlier tensor, not just the previous one (which may be zero-byte).
        var reach: SafetensorsTensorInfo?
        for t in infos where t.byteCount > 0 {
            if let prev = reach, t.offset < prev.offset + prev.byteCount {
                throw QuantError.safetensors(file: file, tensor: t.name,
                    message: "data [\(t.offset - dataStart), \(t.offset - dataStart + t.byteCount)) overlaps tensor \(prev.name) [\(prev.offset - dataStart), \(prev.offset - dataStart + prev.byteCount))")
            }
            if reach.map({ t.offset + t.byteCount > $0.offset + $0.byteCount }) ?? true { reach = t }
        }
        metadata = meta
        tensorNames = infos.map(\.name)
        tensors = Dictionary(uniqueKeysWithValues: infos.map { ($0.name, $0) })
    }

    private static func parseEntry(name: String, value: Any, file: String, dataSize: Int, dataStart: Int) throws
        -> SafetensorsTensorInfo
    {
        guard let e = value as? [String: Any] else {
            throw QuantError.safetensors(file: file, tensor: name, message: "header entry is not an object")
        }
        guard let dtypeName = e["dtype"] as? String else {
            throw QuantError.safetensors(file: file, tensor: name, message: "header entry has no dtype string")
        }
        guard let dtype = SafetensorsDType(rawValue: dtypeName) else {
            throw QuantError.unsupportedDType(file: file, tensor: name, dtype: dtypeName)
        }
        guard let shapeAny = e["shape"] as? [Any] else {
            throw QuantError.safetensors(file: file, tensor: name, message: "header entry has no shape array")
        }
        var shape: [Int] = []
        for d in shapeAny {
            guard let num = d as? NSNumber, let v = Int(exactly: num.doubleValue), v >= 0,
                  num.doubleValue == Double(v) else {
                throw QuantError.safetensors(file: file, tensor: name, message: "shape \(shapeAny) is not a list of non-negative integers")
            }
            shape.append(v)
        }
        guard let offs = e["data_offsets"] as? [Any], offs.count == 2,
              let b = (offs[0] as? NSNumber).flatMap({ Int(exactly: $0.doubleValue) }),
              let en = (offs[1] as? NSNumber).flatMap({ Int(exactly: $0.doubleValue) }) else {
            throw QuantError.safetensors(file: file, tensor: name, message: "data_offsets is not a pair of integers")
        }
        guard b >= 0, en >= b else {
            throw QuantError.safetensors(file: file, tensor: name, message: "data_offsets [\(b), \(en)] are not increasing")
        }
        guard en <= dataSize else {
            throw QuantError.safetensors(file: file, tensor: name,
                message: "data_offsets [\(b), \(en)] run past the end of the data (\(dataSize) bytes): file truncated?")
        }
        var count = 1
        for d in shape {
            let (m, o) = count.multipliedReportingOverflow(by: d)
            guard !o else { throw QuantError.safetensors(file: file, tensor: name, message: "shape \(shape) overflows") }
            count = m
        }
        let (bytes, o) = count.multipliedReportingOverflow(by: dtype.byteSize)
        guard !o, bytes == en - b else {
            throw QuantError.safetensors(file: file, tensor: name,
                message: "\(dtypeName) \(shape) needs \(o ? -1 : bytes) bytes, but data_offsets [\(b), \(en)] hold \(en - b)")
        }
        return SafetensorsTensorInfo(name: name, dtype: dtype, shape: shape, offset: dataStart + b, byteCount: bytes)
    }

    public convenience init(url: URL) throws { try self.init(path: url.path) }

    public func info(_ name: String) throws -> SafetensorsTensorInfo {
        guard let i = tensors[name] else { throw QuantError.missingTensor(file: path, tensor: name) }
        return i
    }

    /// Zero-copy view of a tensor's bytes; valid while this object lives.
    public func rawBytes(_ name: String) throws -> UnsafeRawBufferPointer {
        let i = try info(name)
        return mapped.bytes(i.offset, i.byteCount)
    }

    /// A copy of a tensor's bytes.
    public func data(_ name: String) throws -> Data { Data(try rawBytes(name)) }

    /// Any float or integer tensor converted to f32.
    public func floats(_ name: String) throws -> [Float] {
        let i = try info(name)
        return [Float](unsafeUninitializedCapacity: i.elementCount) { buf, count in
            Self.convert(info: i, raw: mapped.bytes(i.offset, i.byteCount), from: 0, count: i.elementCount, into: buf.baseAddress!)
            count = i.elementCount
        }
    }

    /// Elements [start, start + count) of a tensor converted to f32 into `out` (row chunks of huge tensors).
    public func floats(_ name: String, elements range: Range<Int>, into out: UnsafeMutablePointer<Float>) throws {
        let i = try info(name)
        guard range.lowerBound >= 0, range.upperBound <= i.elementCount else {
            throw QuantError.invalidArgument("tensor \(name): element range \(range) outside 0..<\(i.elementCount)")
        }
        Self.convert(info: i, raw: mapped.bytes(i.offset, i.byteCount), from: range.lowerBound, count: range.count, into: out)
    }

    /// An integer tensor as Int64 (float tensors are an error).
    public func int64s(_ name: String) throws -> [Int64] {
        let i = try info(name)
        let raw = mapped.bytes(i.offset, i.byteCount)
        let n = i.elementCount
        func load<T: BinaryInteger>(_ t: T.Type) -> [Int64] {
            (0..<n).map { Int64(raw.loadUnaligned(fromByteOffset: $0 * MemoryLayout<T>.size, as: T.self)) }
        }
        switch i.dtype {
        case .I64: return load(Int64.self)
        case .I32: return load(Int32.self)
        case .I16: return load(Int16.self)
        case .I8: return load(Int8.self)
        case .U64: return (0..<n).map { Int64(bitPattern: raw.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self)) }
        case .U32: return load(UInt32.self)
        case .U16: return load(UInt16.self)
        case .U8, .BOOL: return load(UInt8.self)
        case .F64, .F32, .F16, .BF16:
            throw QuantError.safetensors(file: path, tensor: name, message: "expected an integer tensor, found \(i.dtype.rawValue)")
        }
    }

    /// Converts `count` elements starting at element `from` of any dtype to f32 (little-endian host).
    static func convert(info i: SafetensorsTensorInfo, raw: UnsafeRawBufferPointer, from: Int, count: Int,
                        into out: UnsafeMutablePointer<Float>) {
        guard count > 0, let base = raw.baseAddress else { return }
        let p = base + from * i.dtype.byteSize
        switch i.dtype {
        case .F32: UnsafeMutableRawPointer(out).copyMemory(from: p, byteCount: count * 4)
        case .BF16: HalfFloat.bf16ToF32(p.assumingMemoryBound(to: UInt16.self), count, out)
        case .F16: HalfFloat.f16ToF32(p.assumingMemoryBound(to: UInt16.self), count, out)
        case .F64: for j in 0..<count { out[j] = Float(p.loadUnaligned(fromByteOffset: j * 8, as: Double.self)) }
        case .I64: for j in 0..<count { out[j] = Float(p.loadUnaligned(fromByteOffset: j * 8, as: Int64.self)) }
        case .U64: for j in 0..<count { out[j] = Float(p.loadUnaligned(fromByteOffset: j * 8, as: UInt64.self)) }
        case .I32: for j in 0..<count { out[j] = Float(p.loadUnaligned(fromByteOffset: j * 4, as: Int32.self)) }
        case .U32: for j in 0..<count { out[j] = Float(p.loadUnaligned(fromByteOffset: j * 4, as: UInt32.self)) }
        case .I16: for j in 0..<count { out[j] = Float(p.loadUnaligned(fromByteOffset: j * 2, as: Int16.self)) }
        case .U16: for j in 0..<count { out[j] = Float(p.loadUnaligned(fromByteOffset: j * 2, as: UInt16.self)) }
        case .I8: for j in 0..<count { out[j] = Float(p.load(fromByteOffset: j, as: Int8.self)) }
        case .U8, .BOOL: for j in 0..<count { out[j] = Float(p.load(fromByteOffset: j, as: UInt8.self)) }
        }
    }
}

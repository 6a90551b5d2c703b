import Foundation

/// Builds a safetensors file in memory and writes it atomically (temporary name, then rename).
/// Meant for outputs and reference files (embeddings, latents), not for multi-GB checkpoints.
public struct SafetensorsWriter {
    public struct Entry: Sendable { public let name: String; public let dtype: SafetensorsDType; public let shape: [Int]; public let bytes: Data }
    /// The tensors added so far, in the order they were added.
    public private(set) var entries: [Entry] = []
    public var metadata: [String: String]

    public init(metadata: [String: String] = [:]) { self.metadata = metadata }

    /// Adds a tensor from raw little-endian bytes.
    public mutating func add(_ name: String, dtype: SafetensorsDType, shape: [Int], bytes: Data) throws {
        guard !name.isEmpty, name != "__metadata__" else { throw QuantError.invalidArgument("invalid tensor name '\(name)'") }
        guard !entries.contains(where: { $0.name == name }) else {
            throw QuantError.invalidArgument("tensor \(name) added twice")
        }
        guard shape.allSatisfy({ $0 >= 0 }) else { throw QuantError.invalidArgument("tensor \(name): negative dimension in \(shape)") }
        // Checked: the shape may come from a request (qwen-run serve), and a product that overflows would trap.
        var expected = dtype.byteSize
        for d in shape {
            let (p, overflow) = expected.multipliedReportingOverflow(by: d)
            guard !overflow else { throw QuantError.invalidArgument("tensor \(name): shape \(shape) is too large (its byte count overflows)") }
            expected = p
        }
        guard expected == bytes.count else {
            throw QuantError.invalidArgument("tensor \(name): shape \(shape) \(dtype.rawValue) needs \(expected) bytes, got \(bytes.count)")
        }
        entries.append(Entry(name: name, dtype: dtype, shape: shape, bytes: bytes))
    }

    public mutating func add(_ name: String, f32 values: [Float], shape: [Int]) throws {
        try add(name, dtype: .F32, shape: shape, bytes: values.withUnsafeBytes { Data($0) })
    }

    /// Stores f32 values as bf16 (round to nearest even).
    public mutating func add(_ name: String, bf16From values: [Float], shape: [Int]) throws {
        let h = values.map(HalfFloat.f32ToBF16)
        try add(name, dtype: .BF16, shape: shape, bytes: h.withUnsafeBytes { Data($0) })
    }

    /// Stores raw bf16 bit patterns.
    public mutating func add(_ name: String, bf16 bits: [UInt16], shape: [Int]) throws {
        try add(name, dtype: .BF16, shape: shape, bytes: bits.withUnsafeBytes { Data($0) })
    }

    public mutating func add(_ name: String, int64 values: [Int64], shape: [Int]) throws {
        try add(name, dtype: .I64, shape: shape, bytes: values.withUnsafeBytes { Data($0) })
    }

    /// The complete file contents.
    public func serialized() throws -> Data {
        var header: [String: Any] = [:]
        var offset = 0
        // Tensors are laid out in name order, like the reference implementation.
        let sorted = entries.sorted { $0.name < $1.name }
        for e in sorted {
            header[e.name] = ["dtype": e.dtype.rawValue, "shape": e.shape, "data_offsets": [offset, offset + e.bytes.count]]
            offset += e.bytes.count
        }
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        // Pad the header with spaces so the data starts 8-byte aligned.
        while (json.count % 8) != 0 { json.append(0x20) }
        var out = Data(capacity: 8 + json.count + offset)
        var n = UInt64(json.count).littleEndian
        withUnsafeBytes(of: &n) { out.append(contentsOf: $0) }
        out.append(json)
        for e in sorted { out.append(e.bytes) }
        return out
    }

    /// Writes the file atomically; an existing file is replaced only when `force` is set.
    public func write(to url: URL, force: Bool = true) throws {
        let data = try serialized()
        do { try AtomicOutput.write(data, to: url, force: force) } catch let e as AtomicOutputError {
            throw QuantError.output(e.description)
        } catch {
            throw QuantError.io(path: url.path, message: "cannot write: \(error.localizedDescription)")
        }
    }

    public func write(toPath path: String, force: Bool = true) throws { try write(to: URL(fileURLWithPath: path), force: force) }
}

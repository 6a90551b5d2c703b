import Kernels

/// A weight matrix W[n, k] in one of the pack schemes, laid out for the kernels.
/// Model code only ever multiplies with it, so a quantized layer is a drop-in for a plain one.
/// `owner` keeps the memory behind `raw.data` alive (a mapped shard or a decompression buffer).
public final class Weight: @unchecked Sendable {
    public let raw: qk_weight
    public let name: String
    let owner: AnyObject?

    public init(name: String, raw: qk_weight, owner: AnyObject?) {
        self.name = name
        self.raw = raw
        self.owner = owner
    }

    public var n: Int { Int(raw.n) }
    public var k: Int { Int(raw.k) }

    /// While set, every product records its input rows (`qwen-quant calibrate`); nil otherwise.
    nonisolated(unsafe) public static var recorder: ActivationRecorder?

    /// y[m, n] = x[m, k] · Wᵀ (+ bias[n]).
    public func matmul(_ x: UnsafePointer<Float>, rows m: Int, bias: UnsafePointer<Float>? = nil,
                       into y: UnsafeMutablePointer<Float>) {
        Self.recorder?.record(name, x, rows: m, cols: k)
        withUnsafePointer(to: raw) { qk_matmul($0, x, Int64(m), bias, y) }
    }

    /// Logical row r as f32 (embedding lookup); `out` holds `k` floats.
    public func row(_ r: Int, into out: UnsafeMutablePointer<Float>) throws {
        guard r >= 0 && r < n else { throw QuantError.invalidArgument("\(name): row \(r) is outside 0..<\(n)") }
        withUnsafePointer(to: raw) { qk_weight_dequant_row($0, Int64(r), out) }
    }
}

// MARK: - Building Weights from f32 arrays (tests, synthetic benchmarks, converted q/k/v slices)

/// Packs a row-major f32 matrix [n, k] as a `Weight` in `scheme` (group 0 = per row).
public func makeWeight(_ name: String, _ values: [Float], rows n: Int, cols k: Int,
                       scheme: qk_scheme = QK_F32, group: Int32 = 0) throws -> Weight {
    guard n >= 0, k >= 0, values.count == n * k else {
        throw QuantError.invalidArgument("\(name): \(values.count) values do not make a [\(n), \(k)] matrix")
    }
    let bytes = qk_weight_bytes(scheme, group, Int64(n), Int64(k))
    let buf = WeightStorage(bytes: bytes)
    let status = values.withUnsafeBufferPointer { p in
        qk_weight_pack_rows(scheme, group, Int64(n), Int64(k), 0, Int64(n), p.baseAddress, buf.ptr)
    }
    guard status == 0 else {
        throw QuantError.invalidArgument("\(name): cannot pack [\(n), \(k)] in scheme \(scheme.rawValue) group \(group) "
            + "(unsupported group, or a value not finite / beyond the f16 range)")
    }
    let raw = qk_weight(scheme: scheme, group: group, n: Int64(n), k: Int64(k), data: UnsafeRawPointer(buf.ptr))
    return Weight(name: name, raw: raw, owner: buf)
}

/// 64-byte aligned memory that owns a packed weight.
final class WeightStorage: @unchecked Sendable {
    let ptr: UnsafeMutableRawPointer
    init(bytes: Int) {
        ptr = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 64), alignment: 64)
    }
    deinit { ptr.deallocate() }
}

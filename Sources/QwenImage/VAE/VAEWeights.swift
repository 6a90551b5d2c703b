import Foundation
import Kernels
import Quant

/// Where the VAE gets its tensors from, by pack name (docs/DESIGN.md, "Tensor names and layout
/// transforms"): `NAME.weight.t0/.t1/.t2` for causal 3-D convolutions ([Cout, 9·Cin], (ky, kx, cin)),
/// time_conv slices [Cout, Cin], 2-D 3×3 convolutions [Cout, 9·Cin], 1×1 convolutions [Cout, Cin],
/// gammas and biases as vectors.
public protocol VAEWeightSource: AnyObject {
    /// A matrix; throws if missing. `rows`/`cols` are the expected logical shape.
    func weight(_ name: String, rows: Int, cols: Int) throws -> Weight
    /// A 1-D tensor as f32; throws if missing or not `count` long.
    func vector(_ name: String, count: Int) throws -> [Float]
    /// Drops whatever the source holds for a top-level block (e.g. a pack shard) until it is needed again.
    func release(block: String)
}

// MARK: - Layers (weights only; the arithmetic is in VAEStages.swift)

/// A causal 3×3×3 convolution, kept as its temporal slices. A still image only ever meets `t2`, so the
/// other two are loaded only for clips.
final class CausalConv3: @unchecked Sendable {
    let name: String
    let cin: Int, cout: Int
    let t2: Weight
    let t1: Weight?
    let t0: Weight?
    let bias: [Float]

    init(_ src: VAEWeightSource, _ name: String, cin: Int, cout: Int, temporal: Bool) throws {
        self.name = name
        self.cin = cin
        self.cout = cout
        t2 = try src.weight(name + ".weight.t2", rows: cout, cols: 9 * cin)
        t1 = temporal ? try src.weight(name + ".weight.t1", rows: cout, cols: 9 * cin) : nil
        t0 = temporal ? try src.weight(name + ".weight.t0", rows: cout, cols: 9 * cin) : nil
        bias = try src.vector(name + ".bias", count: cout)
    }
}

/// A 2-D 3×3 convolution (the resamplers' `resample.1`).
final class Conv2: @unchecked Sendable {
    let name: String
    let cin: Int, cout: Int
    let w: Weight
    let bias: [Float]

    init(_ src: VAEWeightSource, _ name: String, cin: Int, cout: Int) throws {
        self.name = name
        self.cin = cin
        self.cout = cout
        w = try src.weight(name + ".weight", rows: cout, cols: 9 * cin)
        bias = try src.vector(name + ".bias", count: cout)
    }
}

/// A 1×1 convolution: a matmul over pixels.
final class Conv1: @unchecked Sendable {
    let cin: Int, cout: Int
    let w: Weight
    let bias: [Float]

    init(_ src: VAEWeightSource, _ name: String, cin: Int, cout: Int) throws {
        self.cin = cin
        self.cout = cout
        w = try src.weight(name + ".weight", rows: cout, cols: cin)
        bias = try src.vector(name + ".bias", count: cout)
    }
}

/// `time_conv`: a (3, 1, 1) convolution over frames, as three [Cout, Cin] slices.
final class TimeConv: @unchecked Sendable {
    let cin: Int, cout: Int
    let t0: Weight, t1: Weight, t2: Weight
    let bias: [Float]

    init(_ src: VAEWeightSource, _ name: String, cin: Int, cout: Int) throws {
        self.cin = cin
        self.cout = cout
        t0 = try src.weight(name + ".weight.t0", rows: cout, cols: cin)
        t1 = try src.weight(name + ".weight.t1", rows: cout, cols: cin)
        t2 = try src.weight(name + ".weight.t2", rows: cout, cols: cin)
        bias = try src.vector(name + ".bias", count: cout)
    }
}

/// The VAE "RMS norm": `F.normalize(x, dim=C) * sqrt(C) * gamma` (L2 with eps 1e-12).
final class VAENorm: @unchecked Sendable {
    let gamma: [Float]
    init(_ src: VAEWeightSource, _ name: String, dim: Int) throws {
        gamma = try src.vector(name + ".gamma", count: dim)
    }
}

// MARK: - Building Weights from f32 arrays (tests, synthetic benchmarks, converted q/k/v slices)

/// Packs a row-major f32 matrix [n, k] as a `Weight` in `scheme` (group 0 = per row).
public func makeWeight(_ name: String, _ values: [Float], rows n: Int, cols k: Int,
                       scheme: qk_scheme = QK_F32, group: Int32 = 0) -> Weight {
    precondition(values.count == n * k, "makeWeight \(name): \(values.count) values for [\(n), \(k)]")
    let bytes = qk_weight_bytes(scheme, group, Int64(n), Int64(k))
    let buf = WeightStorage(bytes: bytes)
    values.withUnsafeBufferPointer { p in
        _ = qk_weight_pack_rows(scheme, group, Int64(n), Int64(k), 0, Int64(n), p.baseAddress, buf.ptr)
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

/// Dequantizes rows [r0, r0+count) of `w` to f32.
func dequantRows(_ w: Weight, from r0: Int, count: Int) -> [Float] {
    var out = [Float](repeating: 0, count: count * w.k)
    out.withUnsafeMutableBufferPointer { p in
        for r in 0..<count { w.row(r0 + r, into: p.baseAddress! + r * w.k) }
    }
    return out
}

import Foundation
import Kernels
import Quant

// MARK: - Layers (weights only; the arithmetic is in VAEStages.swift)
//
// Each layer reads its tensors from a source scoped to its checkpoint prefix (diffusers names), with
// the shapes the VAE config implies; the pack names and layouts are in MatrixLayout (FORMAT.md §6.3).

/// A causal 3×3×3 convolution, kept as its temporal slices. A still image only ever meets `t2`, so the
/// other two are loaded only for clips. `twoD`: the VAE 2.1's `QwenImage21CausalConv3d`, which is a plain
/// 3×3 Conv2d ([cout, cin, 3, 3]): it is `t2` alone.
final class CausalConv3: @unchecked Sendable {
    let name: String
    let cin: Int, cout: Int
    let t2: Weight
    let t1: Weight?
    let t0: Weight?
    let bias: [Float]

    init(_ src: TensorSource, cin: Int, cout: Int, temporal: Bool, twoD: Bool = false) throws {
        name = src.path
        self.cin = cin
        self.cout = cout
        t2 = try src.matrix("weight", twoD ? .conv3x3(cout: cout, cin: cin)                    // [cout, cin, 3, 3]
                                           : .conv3x3x3(cout: cout, cin: cin, slice: 2))       // [cout, cin, 3, 3, 3]
        t1 = temporal && !twoD ? try src.matrix("weight", .conv3x3x3(cout: cout, cin: cin, slice: 1)) : nil
        t0 = temporal && !twoD ? try src.matrix("weight", .conv3x3x3(cout: cout, cin: cin, slice: 0)) : nil
        bias = try src.vector("bias", count: cout)
    }
}

/// A 2-D 3×3 convolution (the resamplers' `resample.1`).
final class Conv2: @unchecked Sendable {
    let name: String
    let cin: Int, cout: Int
    let w: Weight
    let bias: [Float]

    init(_ src: TensorSource, cin: Int, cout: Int) throws {
        name = src.path
        self.cin = cin
        self.cout = cout
        w = try src.matrix("weight", .conv3x3(cout: cout, cin: cin))                              // [cout, cin, 3, 3]
        bias = try src.vector("bias", count: cout)
    }
}

/// A 1×1 convolution: a matmul over pixels. `spatialDims` is 3 for the Conv3d ones (`quant_conv`,
/// `conv_shortcut`), 2 for the attention's Conv2d ones.
final class Conv1: @unchecked Sendable {
    let cin: Int, cout: Int
    let w: Weight
    let bias: [Float]

    init(_ src: TensorSource, cin: Int, cout: Int, spatialDims: Int) throws {
        self.cin = cin
        self.cout = cout
        w = try src.matrix("weight", .conv1x1(cout: cout, cin: cin, spatialDims: spatialDims))   // [cout, cin, 1, ...]
        bias = try src.vector("bias", count: cout)
    }
}

/// `time_conv`: a (3, 1, 1) convolution over frames, as three [Cout, Cin] slices.
final class TimeConv: @unchecked Sendable {
    let cin: Int, cout: Int
    let t0: Weight, t1: Weight, t2: Weight
    let bias: [Float]

    init(_ src: TensorSource, cin: Int, cout: Int) throws {
        self.cin = cin
        self.cout = cout
        t0 = try src.matrix("weight", .conv3x1x1(cout: cout, cin: cin, slice: 0))                // [cout, cin, 3, 1, 1]
        t1 = try src.matrix("weight", .conv3x1x1(cout: cout, cin: cin, slice: 1))
        t2 = try src.matrix("weight", .conv3x1x1(cout: cout, cin: cin, slice: 2))
        bias = try src.vector("bias", count: cout)
    }
}

/// The VAE "RMS norm": `F.normalize(x, dim=C) * sqrt(C) * gamma` (L2 with eps 1e-12). `gamma` is
/// [C, 1, 1, 1] in the 3-D layers and [C, 1, 1] in the attention (`images`).
final class VAENorm: @unchecked Sendable {
    let gamma: [Float]
    init(_ src: TensorSource, dim: Int, images: Bool = false) throws {
        gamma = try src.vector("gamma", shape: images ? [dim, 1, 1] : [dim, 1, 1, 1])
    }
}

/// Dequantizes rows [r0, r0+count) of `w` to f32.
func dequantRows(_ w: Weight, from r0: Int, count: Int) throws -> [Float] {
    var out = [Float](repeating: 0, count: count * w.k)
    try out.withUnsafeMutableBufferPointer { p in
        for r in 0..<count { try w.row(r0 + r, into: p.baseAddress! + r * w.k) }
    }
    return out
}

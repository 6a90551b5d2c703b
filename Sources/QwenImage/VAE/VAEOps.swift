import Kernels
import Quant

/// Thin wrappers over the kernels for channels-last frames [pixels, C].

/// In place: VAE RMS norm (L2 over channels × √C × γ) then SiLU.
func normSilu(_ x: UnsafeMutablePointer<Float>, pixels: Int, channels c: Int, gamma: [Float]) {
    gamma.withUnsafeBufferPointer { g in
        qk_l2norm(x, g.baseAddress, nil, Int64(pixels), Int64(c), x)
    }
    qk_silu(x, Int64(pixels * c))
}

/// y[pixels, n] = x[pixels, k] · Wᵀ + bias.
func conv1x1(_ w: Weight, _ x: UnsafePointer<Float>, pixels: Int, bias: [Float]?, _ y: UnsafeMutablePointer<Float>) {
    if let bias {
        bias.withUnsafeBufferPointer { b in w.matmul(x, rows: pixels, bias: b.baseAddress, into: y) }
    } else {
        w.matmul(x, rows: pixels, bias: nil, into: y)
    }
}

/// A 3×3 convolution from the dense input `input` region to the dense output `out` region
/// (stride 1: pad-1 semantics at the true border; stride 2: the downsampler's right/bottom pad).
func conv3x3(_ w: Weight, _ x: UnsafePointer<Float>, input: Region, out: Region, cin: Int, cout: Int,
             stride: Int32 = 1, bias: [Float]?, accumulate: Bool, _ y: UnsafeMutablePointer<Float>) {
    var p = qk_conv_params()
    p.h = Int64(input.y.count)
    p.w = Int64(input.x.count)
    p.cin = Int64(cin)
    p.cout = Int64(cout)
    p.stride = stride
    if stride == 1 {
        let pads = conv3Pads(input: input, out: out)
        p.pad_t = pads.t; p.pad_b = pads.b; p.pad_l = pads.l; p.pad_r = pads.r
    } else {
        let pads = downPads(input: input, out: out)
        p.pad_t = 0; p.pad_b = pads.b; p.pad_l = 0; p.pad_r = pads.r
    }
    p.accumulate = accumulate ? 1 : 0
    withUnsafePointer(to: w.raw) { wp in
        if let bias {
            bias.withUnsafeBufferPointer { b in qk_conv3x3(&p, wp, x, b.baseAddress, y) }
        } else {
            qk_conv3x3(&p, wp, x, nil, y)
        }
    }
}

/// y += x (n floats).
func addInPlace(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count n: Int) {
    for i in 0..<n { y[i] += x[i] }
}

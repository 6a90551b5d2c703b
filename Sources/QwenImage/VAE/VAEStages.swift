import Kernels
import Quant

/// One step of a tiled segment. A stage consumes one input frame (a dense buffer over its `input`
/// region) and returns the frames it emits (0, 1 or 2: temporal resampling changes the frame count),
/// each a dense buffer over its `out` region. Caches carry the previous frames of a clip; `reset`
/// starts a new tile.
protocol VAEStage: AnyObject {
    var cin: Int { get }
    var cout: Int { get }
    /// Output size for an input size, or nil when the input is too small for this stage.
    func outSize(_ s: Size) -> Size?
    /// The input region needed to produce `out`.
    func inputRegion(_ out: Region, inSize: Size) -> Region
    /// The largest single buffer this stage takes from the pool for these regions.
    func maxBufferFloats(input: Region, out: Region, inSize: Size) -> Int
    /// Floats kept across frames (clips only) for these regions.
    func cacheFloats(input: Region, out: Region, inSize: Size) -> Int
    /// Multiply-adds per output frame (2-D reduction), for GFLOP/s reports.
    func macs(input: Region, out: Region, inSize: Size) -> Double
    func reset()
    func forward(_ x: FrameBuffer, input: Region, out: Region, inSize: Size, ctx: StageContext) -> [FrameBuffer]
}

final class StageContext: @unchecked Sendable {
    let pool: BufferPool
    /// True when streaming a clip (T > 1): causal caches and time convolutions are live.
    let temporal: Bool
    init(pool: BufferPool, temporal: Bool) {
        self.pool = pool
        self.temporal = temporal
    }
}

/// A causal 3-D convolution on the current frame: t2 · x_t (+ t1 · x_{t-1} + t0 · x_{t-2} for clips;
/// missing frames are the causal zero padding).
private func causalConv(_ c: CausalConv3, _ x: UnsafePointer<Float>, input: Region, out: Region,
                        accumulate: Bool, cache: FrameCache, temporal: Bool, _ y: UnsafeMutablePointer<Float>) {
    conv3x3(c.t2, x, input: input, out: out, cin: c.cin, cout: c.cout, bias: c.bias, accumulate: accumulate, y)
    guard temporal, let t1 = c.t1, let t0 = c.t0 else { return }
    if let p1 = cache.prev1 {
        conv3x3(t1, p1.ptr, input: input, out: out, cin: c.cin, cout: c.cout, bias: nil, accumulate: true, y)
    }
    if let p2 = cache.prev2 {
        conv3x3(t0, p2.ptr, input: input, out: out, cin: c.cin, cout: c.cout, bias: nil, accumulate: true, y)
    }
    cache.push(x, floats: input.pixels * c.cin)
}

private func macs3x3(_ out: Region, _ cin: Int, _ cout: Int) -> Double { Double(out.pixels) * 9 * Double(cin * cout) }

// MARK: - Residual block (QwenImageResidualBlock)

/// x + conv2(silu(norm2(conv1(silu(norm1(x)))))), with a 1×1 `conv_shortcut` when the width changes.
final class ResidualStage: VAEStage {
    let norm1: VAENorm, conv1: CausalConv3, norm2: VAENorm, conv2: CausalConv3
    let shortcut: Conv1?
    private let cache1 = FrameCache(), cache2 = FrameCache()
    var cin: Int { conv1.cin }
    var cout: Int { conv1.cout }

    /// `twoD`: `QwenImage21ResidualBlock` (2-D 3×3 and 1×1 convolutions).
    init(_ src: TensorSource, cin: Int, cout: Int, temporal: Bool, twoD: Bool = false) throws {
        norm1 = try VAENorm(src.prefix("norm1"), dim: cin)
        conv1 = try CausalConv3(src.prefix("conv1"), cin: cin, cout: cout, temporal: temporal, twoD: twoD)
        norm2 = try VAENorm(src.prefix("norm2"), dim: cout)
        conv2 = try CausalConv3(src.prefix("conv2"), cin: cout, cout: cout, temporal: temporal, twoD: twoD)
        shortcut = cin != cout ? try Conv1(src.prefix("conv_shortcut"), cin: cin, cout: cout, spatialDims: twoD ? 2 : 3) : nil
    }

    func outSize(_ s: Size) -> Size? { s }
    func inputRegion(_ out: Region, inSize: Size) -> Region {
        let mid = Region(y: out.y.conv3Input(inSize.h), x: out.x.conv3Input(inSize.w))
        return Region(y: mid.y.conv3Input(inSize.h), x: mid.x.conv3Input(inSize.w))
    }
    private func mid(_ out: Region, _ s: Size) -> Region { Region(y: out.y.conv3Input(s.h), x: out.x.conv3Input(s.w)) }
    func maxBufferFloats(input: Region, out: Region, inSize: Size) -> Int {
        max(input.pixels * cin, mid(out, inSize).pixels * cout, out.pixels * max(cin, cout))
    }
    func cacheFloats(input: Region, out: Region, inSize: Size) -> Int {
        2 * (input.pixels * cin + mid(out, inSize).pixels * cout)
    }
    func macs(input: Region, out: Region, inSize: Size) -> Double {
        macs3x3(mid(out, inSize), cin, cout) + macs3x3(out, cout, cout) + (shortcut != nil ? Double(out.pixels * cin * cout) : 0)
    }
    func reset() { cache1.reset(); cache2.reset() }

    func forward(_ x: FrameBuffer, input: Region, out: Region, inSize: Size, ctx: StageContext) -> [FrameBuffer] {
        let pool = ctx.pool
        let m = mid(out, inSize)
        // The shortcut first, into the output: x is normalized in place right after.
        let o = pool.take(out.pixels * cout)
        if let sc = shortcut {
            let t = pool.take(out.pixels * cin)
            cropCopy(x.ptr, from: input, to: out, channels: cin, into: t.ptr)
            conv1x1(sc.w, t.ptr, pixels: out.pixels, bias: sc.bias, o.ptr)
            pool.give(t)
        } else {
            cropCopy(x.ptr, from: input, to: out, channels: cin, into: o.ptr)
        }
        normSilu(x.ptr, pixels: input.pixels, channels: cin, gamma: norm1.gamma)
        let h = pool.take(m.pixels * cout)
        causalConv(conv1, x.ptr, input: input, out: m, accumulate: false, cache: cache1, temporal: ctx.temporal, h.ptr)
        pool.give(x)
        normSilu(h.ptr, pixels: m.pixels, channels: cout, gamma: norm2.gamma)
        causalConv(conv2, h.ptr, input: m, out: out, accumulate: true, cache: cache2, temporal: ctx.temporal, o.ptr)
        pool.give(h)
        return [o]
    }
}

// MARK: - Head (norm_out, SiLU, conv_out) and the encoder's conv_in

/// [norm → SiLU →] causal 3×3×3 convolution. `norm` nil gives the plain `conv_in`.
final class ConvStage: VAEStage {
    let norm: VAENorm?
    let conv: CausalConv3
    private let cache = FrameCache()
    var cin: Int { conv.cin }
    var cout: Int { conv.cout }

    init(norm: VAENorm?, conv: CausalConv3) {
        self.norm = norm
        self.conv = conv
    }

    func outSize(_ s: Size) -> Size? { s }
    func inputRegion(_ out: Region, inSize: Size) -> Region {
        Region(y: out.y.conv3Input(inSize.h), x: out.x.conv3Input(inSize.w))
    }
    func maxBufferFloats(input: Region, out: Region, inSize: Size) -> Int { max(input.pixels * cin, out.pixels * cout) }
    func cacheFloats(input: Region, out: Region, inSize: Size) -> Int { 2 * input.pixels * cin }
    func macs(input: Region, out: Region, inSize: Size) -> Double { macs3x3(out, cin, cout) }
    func reset() { cache.reset() }

    func forward(_ x: FrameBuffer, input: Region, out: Region, inSize: Size, ctx: StageContext) -> [FrameBuffer] {
        if let norm { normSilu(x.ptr, pixels: input.pixels, channels: cin, gamma: norm.gamma) }
        let o = ctx.pool.take(out.pixels * cout)
        causalConv(conv, x.ptr, input: input, out: out, accumulate: false, cache: cache, temporal: ctx.temporal, o.ptr)
        ctx.pool.give(x)
        return [o]
    }
}

// MARK: - 1×1 convolutions (quant_conv, post_quant_conv)

final class PointwiseStage: VAEStage {
    let conv: Conv1
    var cin: Int { conv.cin }
    var cout: Int { conv.cout }
    init(_ conv: Conv1) { self.conv = conv }

    func outSize(_ s: Size) -> Size? { s }
    func inputRegion(_ out: Region, inSize: Size) -> Region { out }
    func maxBufferFloats(input: Region, out: Region, inSize: Size) -> Int { out.pixels * max(cin, cout) }
    func cacheFloats(input: Region, out: Region, inSize: Size) -> Int { 0 }
    func macs(input: Region, out: Region, inSize: Size) -> Double { Double(out.pixels * cin * cout) }
    func reset() {}

    func forward(_ x: FrameBuffer, input: Region, out: Region, inSize: Size, ctx: StageContext) -> [FrameBuffer] {
        let o = ctx.pool.take(out.pixels * cout)
        conv1x1(conv.w, x.ptr, pixels: out.pixels, bias: conv.bias, o.ptr)
        ctx.pool.give(x)
        return [o]
    }
}

import Kernels
import Quant

/// Adds x·Wᵀ for three temporal slices: y = t2·cur + t1·prev1 + t0·prev2 + bias (missing frames are zero).
private func timeConv(_ tc: TimeConv, cur: UnsafePointer<Float>, prev1: UnsafePointer<Float>?,
                      prev2: UnsafePointer<Float>?, pixels: Int, pool: BufferPool, _ y: UnsafeMutablePointer<Float>) {
    conv1x1(tc.t2, cur, pixels: pixels, bias: tc.bias, y)
    guard prev1 != nil || prev2 != nil else { return }
    let tmp = pool.take(pixels * tc.cout)
    if let p1 = prev1 {
        conv1x1(tc.t1, p1, pixels: pixels, bias: nil, tmp.ptr)
        addInPlace(y, tmp.ptr, count: pixels * tc.cout)
    }
    if let p2 = prev2 {
        conv1x1(tc.t0, p2, pixels: pixels, bias: nil, tmp.ptr)
        addInPlace(y, tmp.ptr, count: pixels * tc.cout)
    }
    pool.give(tmp)
}

/// `QwenImageResample`'s checkpoint keys: `resample` is Sequential(padding or upsampling, Conv2d), so
/// the convolution is `resample.1`; `time_conv` exists in the 3-D variants only.
enum ResampleKeys {
    static let conv = "resample.1"
    static let timeConv = "time_conv"
}

// MARK: - Downsampling (QwenImageResample "downsample2d" / "downsample3d")

/// ZeroPad2d((0, 1, 0, 1)) then a 3×3 stride-2 convolution per frame; side n -> floor((n − 2)/2) + 1.
/// With `time_conv` (clips): frame 0 passes through; later frames are combined in windows
/// (y0, y1, y2), (y2, y3, y4), … by the (3, 1, 1) stride-2 convolution without padding.
final class DownsampleStage: VAEStage {
    let conv: Conv2
    let time: TimeConv?
    private let cache = FrameCache()   // prev2 = last even frame, prev1 = last odd frame
    private var frameIndex = 0
    var cin: Int { conv.cin }
    var cout: Int { conv.cout }

    init(_ src: TensorSource, dim: Int, temporalConv: Bool) throws {
        conv = try Conv2(src.prefix(ResampleKeys.conv), cin: dim, cout: dim)
        time = temporalConv ? try TimeConv(src.prefix(ResampleKeys.timeConv), cin: dim, cout: dim) : nil
    }

    func outSize(_ s: Size) -> Size? {
        guard s.h >= 2 && s.w >= 2 else { return nil }
        return Size(h: (s.h - 2) / 2 + 1, w: (s.w - 2) / 2 + 1)
    }
    func inputRegion(_ out: Region, inSize: Size) -> Region {
        Region(y: out.y.downInput(inSize.h), x: out.x.downInput(inSize.w))
    }
    func maxBufferFloats(input: Region, out: Region, inSize: Size) -> Int { max(input.pixels * cin, out.pixels * cout) }
    func cacheFloats(input: Region, out: Region, inSize: Size) -> Int { time != nil ? 2 * out.pixels * cout : 0 }
    func macs(input: Region, out: Region, inSize: Size) -> Double { Double(out.pixels) * 9 * Double(cin * cout) }
    func reset() { cache.reset(); frameIndex = 0 }

    func forward(_ x: FrameBuffer, input: Region, out: Region, inSize: Size, ctx: StageContext) -> [FrameBuffer] {
        let pool = ctx.pool
        let o = pool.take(out.pixels * cout)
        conv3x3(conv.w, x.ptr, input: input, out: out, cin: cin, cout: cout, stride: 2, bias: conv.bias,
                accumulate: false, o.ptr)
        pool.give(x)
        guard ctx.temporal, let tc = time else { return [o] }
        let t = frameIndex
        frameIndex += 1
        let n = out.pixels * cout
        if t == 0 {
            cache.setSlot(2, o.ptr, floats: n)
            return [o]
        }
        if t % 2 == 1 {
            cache.setSlot(1, o.ptr, floats: n)
            pool.give(o)
            return []
        }
        let r = pool.take(n)
        timeConv(tc, cur: o.ptr, prev1: cache.prev1!.ptr, prev2: cache.prev2!.ptr, pixels: out.pixels, pool: pool, r.ptr)
        cache.setSlot(2, o.ptr, floats: n)
        pool.give(o)
        return [r]
    }
}

// MARK: - Upsampling (QwenImageResample "upsample2d" / "upsample3d")

/// Nearest ×2 then a 3×3 convolution halving the channels, per frame. With `time_conv` (clips): frame 0
/// passes through as one frame; every later frame goes through the (3, 1, 1) causal convolution
/// (C -> 2C) whose context holds frames 1… only (upstream's "Rep" start: frame 0 is NOT in it), and its
/// output becomes two frames, channels [:C] first, [C:] second.
///
/// The ×2 image is never built. Output pixel (2i + py, 2j + px) of a 3×3 convolution over a nearest ×2
/// image reads only low-resolution rows i + {−1, 0} (py = 0: taps {0}, {1, 2}) or i + {0, +1} (py = 1: taps
/// {0, 1}, {2}), likewise columns; so each of the four output parities is a 2×2 convolution of the low-
/// resolution input with summed taps (4/9 of the multiply-adds). Zero padding maps exactly: a ×2 row
/// outside [0, 2n) is a low row outside [0, n).
final class UpsampleStage: VAEStage {
    let conv: Conv2
    let time: TimeConv?
    /// The four parity kernels [cout, (a, b, cin)] (a, b = low-resolution row / column offset index), f32:
    /// the sums of the pack's taps, exact (bf16 under --bf16-dot). (Requantizing them to q8 in groups of 32 made q8s decodes 7.5%
    /// faster but cost 1.2 dB PSNR at full size and 2.1 dB on the tiny model, 46.8 -> 44.7: not kept.)
    private let parity: [Weight]
    /// Bytes of the four parity kernels (the --max-ram planner counts them beside the pack's weights).
    var parityBytes: Int { parity.reduce(0) { $0 + qk_weight_bytes($1.raw.scheme, $1.raw.group, $1.raw.n, $1.raw.k) } }
    private let cache = FrameCache()
    private var frameIndex = 0
    let dim: Int
    var cin: Int { dim }
    var cout: Int { conv.cout }

    /// `outDim`: the convolution's output width (nil: dim / 2, the first generation's; the 2.1 residual
    /// decoder keeps the width, `upsample_out_dim = out_dim`).
    init(_ src: TensorSource, dim: Int, temporalConv: Bool, loadTime: Bool, outDim: Int? = nil) throws {
        self.dim = dim
        let cin = dim, cout = outDim ?? dim / 2
        conv = try Conv2(src.prefix(ResampleKeys.conv), cin: dim, cout: cout)
        time = temporalConv && loadTime ? try TimeConv(src.prefix(ResampleKeys.timeConv), cin: dim, cout: 2 * dim) : nil
        let w = try dequantRows(conv.w, from: 0, count: conv.cout)   // [cout, (ky, kx, cin)]
        // --bf16-dot (qk_bf16_dot_active): rounded to bf16, so they take the bf16 dot product as well
        let scheme = qk_bf16_dot_active() != 0 ? QK_BF16 : QK_F32
        var ws: [Weight] = []
        for py in 0..<2 {
            for px in 0..<2 {
                var v = [Float](repeating: 0, count: cout * 4 * cin)
                for o in 0..<cout {
                    for a in 0..<2 { for b in 0..<2 {
                        for dy in Self.taps[py][a] { for dx in Self.taps[px][b] {
                            let src = o * 9 * cin + (dy * 3 + dx) * cin
                            let dst = o * 4 * cin + (a * 2 + b) * cin
                            for c in 0..<cin { v[dst + c] += w[src + c] }
                        } }
                    } }
                }
                ws.append(try makeWeight(conv.w.name + "[parity \(py)\(px)]", v, rows: cout, cols: 4 * cin, scheme: scheme))
            }
        }
        parity = ws
    }

    /// taps[parity][offset index]: the 3×3 taps that read low-resolution offset `offset(parity, index)`.
    static let taps: [[[Int]]] = [[[0], [1, 2]], [[0, 1], [2]]]
    /// Low-resolution offset of offset index a for parity p: p = 0 reads i − 1, i; p = 1 reads i, i + 1.
    @inline(__always) static func offset(_ p: Int, _ a: Int) -> Int { p == 0 ? a - 1 : a }

    func outSize(_ s: Size) -> Size? { Size(h: 2 * s.h, w: 2 * s.w) }
    func inputRegion(_ out: Region, inSize: Size) -> Region {
        Region(y: out.y.upInput(inSize.h), x: out.x.upInput(inSize.w))
    }
    func maxBufferFloats(input: Region, out: Region, inSize: Size) -> Int {
        max(input.pixels * 2 * cin, out.pixels * cout)
    }
    func cacheFloats(input: Region, out: Region, inSize: Size) -> Int { time != nil ? 2 * input.pixels * cin : 0 }
    func macs(input: Region, out: Region, inSize: Size) -> Double { Double(out.pixels) * 4 * Double(cin * cout) }
    func reset() { cache.reset(); frameIndex = 0 }

    /// The parity convolutions' kernel scratch (qk_conv2x2, per thread: quantized input rows up to
    /// 512 KiB, patch rows about 384 KiB, their results), counted by the --max-ram planner.
    func bandFloats(out: Region, inSize: Size) -> Int {
        let rows = out.y.count / 2 + 1, cols = out.x.count / 2 + 1
        let rowBytes = 16 * cin   // an f32 patch row (an int8 one is smaller)
        let tile = min(max(393_216 / rowBytes / 16 * 16, 16), 512, rows * cols)
        let quantized = min(1 << 19, (rows + 1) * (cols + 1) * (cin + cin / 4))
        return Int(qk_get_threads()) * (quantized + tile * (rowBytes + 4 * cout) + 256) / 4
    }

    func forward(_ x: FrameBuffer, input: Region, out: Region, inSize: Size, ctx: StageContext) -> [FrameBuffer] {
        let pool = ctx.pool
        var frames = [x]
        if ctx.temporal, let tc = time {
            let t = frameIndex
            frameIndex += 1
            if t > 0 {
                let n = input.pixels
                let both = pool.take(n * 2 * dim)
                timeConv(tc, cur: x.ptr, prev1: cache.prev1?.ptr, prev2: cache.prev2?.ptr, pixels: n, pool: pool, both.ptr)
                cache.push(x.ptr, floats: n * dim)
                pool.give(x)
                let a = pool.take(n * dim), b = pool.take(n * dim)
                for p in 0..<n {
                    (a.ptr + p * dim).update(from: both.ptr + p * 2 * dim, count: dim)
                    (b.ptr + p * dim).update(from: both.ptr + p * 2 * dim + dim, count: dim)
                }
                pool.give(both)
                frames = [a, b]
            }
        }
        var outs: [FrameBuffer] = []
        for f in frames {
            let o = pool.take(out.pixels * cout)
            upConv(f.ptr, input: input, out: out, inSize: inSize, ctx: ctx, o.ptr)
            pool.give(f)
            outs.append(o)
        }
        return outs
    }

    /// y[out] = conv3x3(nearest×2(x)) over the output region, one parity at a time: a 2×2 convolution
    /// of the low-resolution input with the parity kernel (qk_conv2x2: 2×2 patches, zero outside the
    /// image, written to every other output pixel).
    private func upConv(_ x: UnsafePointer<Float>, input: Region, out: Region, inSize: Size, ctx: StageContext,
                        _ y: UnsafeMutablePointer<Float>) {
        let inW = input.x.count, outW = out.x.count
        for py in 0..<2 {
            // Low rows i with 2i + py inside the output rows.
            let i0 = (out.y.lo - py + 1) / 2, i1 = (out.y.hi - 1 - py) / 2 + 1
            guard i1 > i0 else { continue }
            for px in 0..<2 {
                let j0 = (out.x.lo - px + 1) / 2, j1 = (out.x.hi - 1 - px) / 2 + 1
                guard j1 > j0 else { continue }
                // Tap (a, b) of output (i, j) reads low pixel (i + offset(py, a), j + offset(px, b)); the
                // buffer holds the input region, and pixels outside the image read zero.
                var p = qk_conv2x2_params(
                    rows: Int64(i1 - i0), cols: Int64(j1 - j0), cin: Int64(cin), cout: Int64(cout),
                    x_row_stride: Int64(inW * cin),
                    dy0: Int64(i0 + Self.offset(py, 0) - input.y.lo), dx0: Int64(j0 + Self.offset(px, 0) - input.x.lo),
                    vh: Int64(inSize.h - input.y.lo), vw: Int64(inSize.w - input.x.lo),
                    y_row_stride: Int64(2 * outW * cout), y_col_stride: Int64(2 * cout))
                let y0 = y + ((2 * i0 + py - out.y.lo) * outW + (2 * j0 + px - out.x.lo)) * cout
                conv.bias.withUnsafeBufferPointer { b in
                    withUnsafePointer(to: parity[py * 2 + px].raw) { w in qk_conv2x2(&p, w, x, b.baseAddress, y0) }
                }
            }
        }
    }
}

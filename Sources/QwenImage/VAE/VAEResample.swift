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

    init(_ src: VAEWeightSource, _ name: String, dim: Int, temporalConv: Bool) throws {
        conv = try Conv2(src, name + ".resample.1", cin: dim, cout: dim)
        time = temporalConv ? try TimeConv(src, name + ".time_conv", cin: dim, cout: dim) : nil
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
/// The ×2 image is never materialized: row bands of it are built just before the convolution reads them.
final class UpsampleStage: VAEStage {
    let conv: Conv2
    let time: TimeConv?
    private let cache = FrameCache()
    private var frameIndex = 0
    let dim: Int
    var cin: Int { dim }
    var cout: Int { conv.cout }

    init(_ src: VAEWeightSource, _ name: String, dim: Int, temporalConv: Bool, loadTime: Bool) throws {
        self.dim = dim
        conv = try Conv2(src, name + ".resample.1", cin: dim, cout: dim / 2)
        time = temporalConv && loadTime ? try TimeConv(src, name + ".time_conv", cin: dim, cout: 2 * dim) : nil
    }

    func outSize(_ s: Size) -> Size? { Size(h: 2 * s.h, w: 2 * s.w) }
    func inputRegion(_ out: Region, inSize: Size) -> Region {
        Region(y: out.y.upInput(inSize.h), x: out.x.upInput(inSize.w))
    }
    func maxBufferFloats(input: Region, out: Region, inSize: Size) -> Int {
        max(input.pixels * 2 * cin, out.pixels * cout)
    }
    func cacheFloats(input: Region, out: Region, inSize: Size) -> Int { time != nil ? 2 * input.pixels * cin : 0 }
    func macs(input: Region, out: Region, inSize: Size) -> Double { Double(out.pixels) * 9 * Double(cin * cout) }
    func reset() { cache.reset(); frameIndex = 0 }

    /// Rows of the ×2 image per band: about 2 M floats of band buffer, at least one row.
    static func bandRows(cols: Int, channels: Int) -> Int { max(1, (1 << 21) / max(1, cols * channels) - 2) }

    func bandFloats(out: Region, inSize: Size) -> Int {
        let cols = out.x.conv3Input(2 * inSize.w).count
        let rows = min(out.y.count, Self.bandRows(cols: cols, channels: cin)) + 2
        return rows * cols * cin
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

    private func upConv(_ x: UnsafePointer<Float>, input: Region, out: Region, inSize: Size, ctx: StageContext,
                        _ y: UnsafeMutablePointer<Float>) {
        let up = Size(h: 2 * inSize.h, w: 2 * inSize.w)
        let cols = out.x.conv3Input(up.w)
        let step = min(out.y.count, Self.bandRows(cols: cols.count, channels: cin))
        let need = (step + 2) * cols.count * cin
        if ctx.band == nil || ctx.band!.capacity < need { ctx.band = FrameBuffer(capacity: need) }
        let band = ctx.band!
        var r0 = out.y.lo
        while r0 < out.y.hi {
            let r1 = min(r0 + step, out.y.hi)
            let rows = Span(lo: r0, hi: r1).conv3Input(up.h)
            upsampleNearest(x, input: input, rows: rows, cols: cols, channels: cin, band.ptr)
            let bandIn = Region(y: rows, x: cols), bandOut = Region(y: Span(lo: r0, hi: r1), x: out.x)
            conv3x3(conv.w, band.ptr, input: bandIn, out: bandOut, cin: cin, cout: cout, bias: conv.bias,
                    accumulate: false, y + (r0 - out.y.lo) * out.x.count * cout)
            r0 = r1
        }
    }
}

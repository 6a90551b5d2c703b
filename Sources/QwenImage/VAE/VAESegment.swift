/// Frames in channels-last layout [T, H, W, C] f32, the VAE's activation format at the API boundary.
/// Files hold [1, C, T, H, W]; convert only there.
public final class VAEFrames: @unchecked Sendable {
    public let frames: Int, height: Int, width: Int, channels: Int
    public let data: UnsafeMutablePointer<Float>
    public var count: Int { frames * height * width * channels }
    public var frameFloats: Int { height * width * channels }

    public init(frames: Int, height: Int, width: Int, channels: Int) {
        self.frames = frames
        self.height = height
        self.width = width
        self.channels = channels
        let n = max(frames * height * width * channels, 1)
        data = UnsafeMutablePointer<Float>.allocate(capacity: n)
        data.initialize(repeating: 0, count: n)
    }
    deinit { data.deallocate() }

    public func frame(_ t: Int) -> UnsafeMutablePointer<Float> { data + t * frameFloats }

    /// From a [C, T, H, W] (batch 1) channels-first array.
    public convenience init(cthw x: [Float], channels c: Int, frames t: Int, height h: Int, width w: Int) {
        precondition(x.count == c * t * h * w, "VAEFrames: \(x.count) values for [\(c), \(t), \(h), \(w)]")
        self.init(frames: t, height: h, width: w, channels: c)
        let hw = h * w
        x.withUnsafeBufferPointer { src in
            for f in 0..<t {
                let dst = frame(f)
                for ch in 0..<c {
                    let s = src.baseAddress! + (ch * t + f) * hw
                    for p in 0..<hw { dst[p * c + ch] = s[p] }
                }
            }
        }
    }

    /// To a [C, T, H, W] channels-first array.
    public func cthw() -> [Float] {
        let c = channels, t = frames, hw = height * width
        var out = [Float](repeating: 0, count: count)
        out.withUnsafeMutableBufferPointer { dst in
            for f in 0..<t {
                let src = frame(f)
                for ch in 0..<c {
                    let d = dst.baseAddress! + (ch * t + f) * hw
                    for p in 0..<hw { d[p] = src[p * c + ch] }
                }
            }
        }
        return out
    }

    /// The values as a buffer; valid only while this object is alive (keep a reference).
    public var values: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: data, count: count) }
    /// A copy of the values, [T, H, W, C].
    public var floats: [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }
}

/// A chain of stages run tile by tile over its output space. For each tile the regions every stage must
/// produce are worked out backwards from the tile (`plan`), then all frames of the clip stream through
/// the chain, frame by frame, with the causal caches reset at the start of the tile.
final class VAESegment: @unchecked Sendable {
    let name: String
    let stages: [VAEStage]
    var cin: Int { stages.first!.cin }
    var cout: Int { stages.last!.cout }

    init(name: String, stages: [VAEStage]) {
        precondition(!stages.isEmpty)
        self.name = name
        self.stages = stages
    }

    /// Sizes at every stage boundary (index 0 = input), or nil if a stage gets too small an input.
    func sizes(_ input: Size) -> [Size]? {
        var s = [input]
        for st in stages {
            guard let o = st.outSize(s.last!), o.h >= 1, o.w >= 1 else { return nil }
            s.append(o)
        }
        return s
    }

    /// Regions at every stage boundary needed to produce `tile` at the output.
    func plan(_ tile: Region, sizes: [Size]) -> [Region] {
        var regs = [Region](repeating: tile, count: stages.count + 1)
        for i in stride(from: stages.count - 1, through: 0, by: -1) {
            regs[i] = stages[i].inputRegion(regs[i + 1], inSize: sizes[i])
        }
        return regs
    }

    struct WorkingSet {
        var slotFloats = 0      // largest activation buffer
        var cacheFloats = 0     // clip caches, largest tile
        var bandFloats = 0      // upsampler band
        var macs: Double = 0    // multiply-adds per frame, all tiles
        /// Buffers live beyond `slots`: a 2.1 residual block holds its shortcut while its chain runs.
        var extraSlots = 0
        /// Bytes for the pool (`slots` buffers), caches and band.
        func bytes(slots: Int) -> Int { 4 * ((slots + extraSlots) * slotFloats + cacheFloats + bandFloats) }
    }

    func workingSet(tiles: [Region], sizes: [Size], temporal: Bool) -> WorkingSet {
        var ws = WorkingSet()
        for tile in tiles {
            let r = plan(tile, sizes: sizes)
            var cache = 0
            for (i, st) in stages.enumerated() {
                ws.slotFloats = max(ws.slotFloats, st.maxBufferFloats(input: r[i], out: r[i + 1], inSize: sizes[i]),
                                    r[i].pixels * st.cin)
                if temporal { cache += st.cacheFloats(input: r[i], out: r[i + 1], inSize: sizes[i]) }
                ws.macs += st.macs(input: r[i], out: r[i + 1], inSize: sizes[i])
                if let up = st as? UpsampleStage { ws.bandFloats = max(ws.bandFloats, up.bandFloats(out: r[i + 1], inSize: sizes[i])) }
                if let block = st as? ShortcutBlockStage {
                    ws.bandFloats = max(ws.bandFloats, block.bandFloats(out: r[i + 1], inSize: sizes[i]))
                    if block.shortcut != nil { ws.extraSlots = 1 }
                }
            }
            ws.cacheFloats = max(ws.cacheFloats, cache)
        }
        return ws
    }

    /// Live pool buffers at most: 3 for a still (a residual block holds its input, output and the
    /// conv1 result), more while a clip's upsampler holds its two output frames.
    static func slots(temporal: Bool) -> Int { temporal ? 7 : 3 }

    /// Output tiles of about `tile` (rows, cols) covering `size`; the last row / column may be smaller.
    static func grid(_ size: Size, tileH: Int, tileW: Int) -> [Region] {
        var out: [Region] = []
        var y = 0
        while y < size.h {
            let y1 = min(y + tileH, size.h)
            var x = 0
            while x < size.w {
                let x1 = min(x + tileW, size.w)
                out.append(Region(y: Span(lo: y, hi: y1), x: Span(lo: x, hi: x1)))
                x = x1
            }
            y = y1
        }
        return out
    }

    /// Runs every tile over every frame of `input`, writing `output` (whose frame count must match what
    /// the chain emits). Returns the pool's peak number of live buffers (for tests).
    @discardableResult
    func run(input: VAEFrames, output: VAEFrames, tiles: [Region], temporal: Bool, onTile: () -> Void) -> Int {
        let sizes = self.sizes(Size(h: input.height, w: input.width))!
        let ws = workingSet(tiles: tiles, sizes: sizes, temporal: temporal)
        let pool = BufferPool(slotFloats: ws.slotFloats)
        let ctx = StageContext(pool: pool, temporal: temporal)
        let outSize = sizes.last!
        for tile in tiles {
            let regs = plan(tile, sizes: sizes)
            for s in stages { s.reset() }
            var emitted = 0
            for t in 0..<input.frames {
                let b = pool.take(regs[0].pixels * cin)
                cropCopy(input.frame(t), from: .full(sizes[0]), to: regs[0], channels: cin, into: b.ptr)
                push(0, b, regs: regs, sizes: sizes, ctx: ctx) { o in
                    precondition(emitted < output.frames, "internal: segment \(name) emitted too many frames")
                    pasteCopy(o.ptr, at: tile, channels: cout, into: output.frame(emitted), full: outSize)
                    emitted += 1
                }
            }
            precondition(emitted == output.frames, "internal: segment \(name) emitted \(emitted) of \(output.frames) frames")
            onTile()
        }
        for s in stages { s.reset() }
        return pool.peakLive
    }

    private func push(_ i: Int, _ x: FrameBuffer, regs: [Region], sizes: [Size], ctx: StageContext,
                      sink: (FrameBuffer) -> Void) {
        if i == stages.count {
            sink(x)
            ctx.pool.give(x)
            return
        }
        let outs = stages[i].forward(x, input: regs[i], out: regs[i + 1], inSize: sizes[i], ctx: ctx)
        for o in outs { push(i + 1, o, regs: regs, sizes: sizes, ctx: ctx, sink: sink) }
    }
}

import Kernels
import Quant

// The VAE 2.1's residual blocks (diffusers 0.42.1, autoencoder_kl_qwenimage21.py):
//
//   QwenImage21ResidualDownBlock: x -> resnets -> downsampler, + AvgDown3D(x)
//   QwenImage21ResidualUpBlock:   x -> resnets -> upsampler,   + DupUp3D(x, first_chunk=True)
//
// The shortcuts have no parameters: they regroup channels and space. For one frame (the only input
// the 2.1 VAE takes) they reduce to the index maps below, taken from the upstream view / permute
// sequences, including the zero frame AvgDown3D pads in front when it folds time (ft = 2).

/// A parameter-free shortcut around a block, on channels-last frames.
enum BlockShortcut {
    /// QwenImage21AvgDown3D(cin, cout, ft, fs): out[o](y, x) = mean over g < group of the value at
    /// channel index k = o·group + g of the (c, t, dy, dx) expansion, k = ((c·ft + t)·fs + dy)·fs + dx,
    /// which is x[c](fs·y + dy, fs·x + dx) for the real frame t = ft − 1 and 0 for the padded frames.
    case avgDown(ft: Int, fs: Int, cin: Int, cout: Int)
    /// QwenImage21DupUp3D(cin, cout, ft, fs) with first_chunk: out[o](fs·y + dy, fs·x + dx) = x[k / r](y, x)
    /// with k = ((o·ft + ft − 1)·fs + dy)·fs + dx and r = cout·ft·fs² / cin (repeat_interleave, then the last
    /// temporal copy kept).
    case dupUp(ft: Int, fs: Int, cin: Int, cout: Int)

    var fs: Int {
        switch self { case .avgDown(_, let fs, _, _), .dupUp(_, let fs, _, _): return fs }
    }

    /// The input span a shortcut output span reads.
    func inputSpan(_ s: Span) -> Span {
        switch self {
        case .avgDown(_, let fs, _, _): return Span(lo: s.lo * fs, hi: s.hi * fs)
        case .dupUp(_, let fs, _, _): return Span(lo: s.lo / fs, hi: (s.hi - 1) / fs + 1)
        }
    }

    /// Adds the shortcut of x (dense over `input`) to y (dense over `out`). The index maps above depend
    /// only on the channel and the position within the fs×fs cell, so they are tabulated once per call.
    func add(_ x: UnsafePointer<Float>, input: Region, out: Region, into y: UnsafeMutablePointer<Float>) {
        let inW = input.x.count, outW = out.x.count
        switch self {
        case .avgDown(let ft, let fs, let cin, let cout):
            let group = cin * ft * fs * fs / cout
            let per = ft * fs * fs   // expansion entries per input channel
            // taps[o]: the real-frame entries (input channel, dy, dx) averaged into output channel o.
            var taps = [[(c: Int, dy: Int, dx: Int)]](repeating: [], count: cout)
            for o in 0..<cout {
                for g in 0..<group {
                    let k = o * group + g
                    let c = k / per, rem = k % per
                    guard rem / (fs * fs) == ft - 1 else { continue }   // the zero frame padded in front
                    taps[o].append((c, (rem / fs) % fs, rem % fs))
                }
            }
            for r in 0..<out.y.count {
                for q in 0..<outW {
                    let iy0 = fs * (out.y.lo + r) - input.y.lo, ix0 = fs * (out.x.lo + q) - input.x.lo
                    let dst = y + (r * outW + q) * cout
                    for o in 0..<cout {
                        var sum: Float = 0
                        for t in taps[o] { sum += x[((iy0 + t.dy) * inW + ix0 + t.dx) * cin + t.c] }
                        dst[o] += sum / Float(group)
                    }
                }
            }
        case .dupUp(let ft, let fs, let cin, let cout):
            let rep = cout * ft * fs * fs / cin
            // source[(dy·fs + dx)·cout + o]: the input channel output channel o reads at cell position (dy, dx).
            var source = [Int](repeating: 0, count: fs * fs * cout)
            for dy in 0..<fs { for dx in 0..<fs { for o in 0..<cout {
                source[(dy * fs + dx) * cout + o] = (((o * ft + ft - 1) * fs + dy) * fs + dx) / rep
            } } }
            source.withUnsafeBufferPointer { sp in
                for r in 0..<out.y.count {
                    for q in 0..<outW {
                        let oy = out.y.lo + r, ox = out.x.lo + q
                        let map = sp.baseAddress! + ((oy % fs) * fs + ox % fs) * cout
                        let src = x + ((oy / fs - input.y.lo) * inW + (ox / fs - input.x.lo)) * cin
                        let dst = y + (r * outW + q) * cout
                        for o in 0..<cout { dst[o] += src[map[o]] }
                    }
                }
            }
        }
    }
}

/// A residual block of the 2.1 VAE: `chain` (resnets, then the resampler if any) plus an optional
/// shortcut from the block's input. Tiled like any stage: the block's input region is what its first
/// stage reads for the chain's regions (a superset of what the shortcut reads: every chain has 3×3
/// halos), and the shortcut is added over the output region.
final class ShortcutBlockStage: VAEStage {
    let chain: [VAEStage]
    let shortcut: BlockShortcut?
    var cin: Int { chain.first!.cin }
    var cout: Int { chain.last!.cout }

    init(chain: [VAEStage], shortcut: BlockShortcut?) {
        precondition(!chain.isEmpty, "internal: an empty block")
        self.chain = chain
        self.shortcut = shortcut
    }

    /// Input size of every chain stage, then the output size; nil when too small or when the
    /// shortcut's grid does not match (AvgDown needs sides divisible by its factor).
    private func sizes(_ s: Size) -> [Size]? {
        var out = [s]
        for st in chain {
            guard let n = st.outSize(out.last!) else { return nil }
            out.append(n)
        }
        if let sc = shortcut {
            let f = sc.fs
            switch sc {
            case .avgDown:
                guard s.h % f == 0, s.w % f == 0, out.last! == Size(h: s.h / f, w: s.w / f) else { return nil }
            case .dupUp:
                guard out.last! == Size(h: s.h * f, w: s.w * f) else { return nil }
            }
        }
        return out
    }

    /// Regions of the chain: [input of stage 0, ..., output].
    private func regions(_ out: Region, inSize: Size) -> (regions: [Region], sizes: [Size]) {
        let sz = sizes(inSize)!
        var regs = [Region](repeating: out, count: chain.count + 1)
        for i in stride(from: chain.count - 1, through: 0, by: -1) {
            regs[i] = chain[i].inputRegion(regs[i + 1], inSize: sz[i])
        }
        return (regs, sz)
    }

    func outSize(_ s: Size) -> Size? { sizes(s)?.last }

    func inputRegion(_ out: Region, inSize: Size) -> Region {
        let r = regions(out, inSize: inSize).regions[0]
        if let sc = shortcut {
            let need = Region(y: sc.inputSpan(out.y), x: sc.inputSpan(out.x))
            precondition(need.y.lo >= r.y.lo && need.y.hi <= r.y.hi && need.x.lo >= r.x.lo && need.x.hi <= r.x.hi,
                         "internal: the shortcut reads outside the block's input region")
        }
        return r
    }

    func maxBufferFloats(input: Region, out: Region, inSize: Size) -> Int {
        let (regs, sz) = regions(out, inSize: inSize)
        var m = out.pixels * cout
        for (i, st) in chain.enumerated() {
            m = max(m, st.maxBufferFloats(input: regs[i], out: regs[i + 1], inSize: sz[i]))
        }
        return m
    }

    func cacheFloats(input: Region, out: Region, inSize: Size) -> Int { 0 }

    /// The band scratch of an upsampler inside the chain (0 without one).
    func bandFloats(out: Region, inSize: Size) -> Int {
        let (regs, sz) = regions(out, inSize: inSize)
        return chain.enumerated().reduce(0) { m, e in
            guard let up = e.element as? UpsampleStage else { return m }
            return max(m, up.bandFloats(out: regs[e.offset + 1], inSize: sz[e.offset]))
        }
    }

    func macs(input: Region, out: Region, inSize: Size) -> Double {
        let (regs, sz) = regions(out, inSize: inSize)
        return chain.enumerated().reduce(0) { $0 + $1.element.macs(input: regs[$1.offset], out: regs[$1.offset + 1], inSize: sz[$1.offset]) }
    }

    func reset() { chain.forEach { $0.reset() } }

    func forward(_ x: FrameBuffer, input: Region, out: Region, inSize: Size, ctx: StageContext) -> [FrameBuffer] {
        let pool = ctx.pool
        let (regs, sz) = regions(out, inSize: inSize)
        // The shortcut first (the chain's first stage consumes x).
        var skip: FrameBuffer?
        if let sc = shortcut {
            let s = pool.take(out.pixels * cout)
            s.ptr.update(repeating: 0, count: out.pixels * cout)
            sc.add(x.ptr, input: input, out: out, into: s.ptr)
            skip = s
        }
        var cur = x
        for (i, st) in chain.enumerated() {
            cur = st.forward(cur, input: regs[i], out: regs[i + 1], inSize: sz[i], ctx: ctx)[0]
        }
        if let skip {
            addInPlace(cur.ptr, skip.ptr, count: out.pixels * cout)
            pool.give(skip)
        }
        return [cur]
    }
}

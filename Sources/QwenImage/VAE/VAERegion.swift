/// Spatial bookkeeping for exact tiling: half-open spans of rows / columns in a layer's own coordinates,
/// and how each kind of layer maps the span it must produce to the span it must read.
///
/// The rule that makes tiles exact: every layer computes exactly the pixels the layers after it need,
/// reading the halo its receptive field requires, and zero-pads only where the span touches the true
/// image border. Then each output pixel sees exactly the numbers it sees untiled.

struct Span: Equatable, Sendable {
    var lo: Int
    var hi: Int
    var count: Int { hi - lo }
    static func full(_ n: Int) -> Span { Span(lo: 0, hi: n) }

    /// What a 3×3, stride-1, pad-1 convolution must read to produce `self` on a side of `n`.
    func conv3Input(_ n: Int) -> Span { Span(lo: max(lo - 1, 0), hi: min(hi + 1, n)) }

    /// What the downsampler (zero pad right/bottom by one, 3×3 stride 2) must read on an input side `n`:
    /// output i reads rows 2i, 2i+1, 2i+2; row n is the zero pad.
    func downInput(_ n: Int) -> Span { Span(lo: 2 * lo, hi: min(2 * hi + 1, n)) }

    /// What the upsampler (nearest ×2 to 2n, then 3×3 pad 1) must read on the low-resolution side `n`.
    func upInput(_ n: Int) -> Span {
        let u = conv3Input(2 * n)
        return Span(lo: u.lo / 2, hi: (u.hi - 1) / 2 + 1)
    }
}

struct Region: Equatable, Sendable {
    var y: Span
    var x: Span
    var pixels: Int { y.count * x.count }
    static func full(_ s: Size) -> Region { Region(y: .full(s.h), x: .full(s.w)) }
}

struct Size: Equatable, Sendable {
    var h: Int
    var w: Int
    var pixels: Int { h * w }
}

/// Zero padding a convolution needs on each side to produce `out` from `input` (pad-1 3×3, stride 1).
func conv3Pads(input: Region, out: Region) -> (t: Int32, b: Int32, l: Int32, r: Int32) {
    let t = input.y.lo - (out.y.lo - 1), b = (out.y.hi + 1) - input.y.hi
    let l = input.x.lo - (out.x.lo - 1), r = (out.x.hi + 1) - input.x.hi
    precondition([t, b, l, r].allSatisfy { $0 == 0 || $0 == 1 }, "internal: bad conv halo \(input) -> \(out)")
    return (Int32(t), Int32(b), Int32(l), Int32(r))
}

/// Zero padding of the stride-2 downsampler (only bottom / right can be padded).
func downPads(input: Region, out: Region) -> (b: Int32, r: Int32) {
    precondition(input.y.lo == 2 * out.y.lo && input.x.lo == 2 * out.x.lo, "internal: bad down halo")
    let b = 2 * out.y.hi + 1 - input.y.hi, r = 2 * out.x.hi + 1 - input.x.hi
    precondition((b == 0 || b == 1) && (r == 0 || r == 1), "internal: bad down pad \(input) -> \(out)")
    return (Int32(b), Int32(r))
}

/// Copies the sub-region `to` of a [from.pixels, c] channels-last buffer into a dense [to.pixels, c] buffer.
func cropCopy(_ src: UnsafePointer<Float>, from: Region, to: Region, channels c: Int, into dst: UnsafeMutablePointer<Float>) {
    let rowFloats = to.x.count * c
    let srcW = from.x.count
    for r in 0..<to.y.count {
        let sy = to.y.lo + r - from.y.lo
        let sx = to.x.lo - from.x.lo
        (dst + r * rowFloats).update(from: src + (sy * srcW + sx) * c, count: rowFloats)
    }
}

/// Writes a dense [src.pixels, c] buffer into the sub-region `at` of a [full.pixels, c] frame.
func pasteCopy(_ src: UnsafePointer<Float>, at: Region, channels c: Int, into dst: UnsafeMutablePointer<Float>, full: Size) {
    let rowFloats = at.x.count * c
    for r in 0..<at.y.count {
        (dst + ((at.y.lo + r) * full.w + at.x.lo) * c).update(from: src + r * rowFloats, count: rowFloats)
    }
}

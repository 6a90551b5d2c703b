import Kernels
import Testing

// qk_conv3x3 (implicit GEMM over qk_matmul) and its naive twin against a Double loop, for stride 1 and 2,
// every padding pattern, bias, accumulate, several weight schemes; 1 vs 2 threads bit-exact; and the
// implicit GEMM against an explicit im2col + qk_matmul (same products, so bit-identical), also on the
// quantize-once path of integer schemes (cin a multiple of 32: bands of rows quantized once).

private struct ConvCase {
    var h: Int, w: Int, cin: Int, cout: Int, stride: Int32
    var pad: (Int32, Int32, Int32, Int32)  // top, bottom, left, right
    var oh: Int { (h + Int(pad.0 + pad.1) - 3) / Int(stride) + 1 }
    var ow: Int { (w + Int(pad.2 + pad.3) - 3) / Int(stride) + 1 }
    func params(accumulate: Bool) -> qk_conv_params {
        qk_conv_params(h: Int64(h), w: Int64(w), cin: Int64(cin), cout: Int64(cout), stride: stride,
                       pad_t: pad.0, pad_b: pad.1, pad_l: pad.2, pad_r: pad.3, accumulate: accumulate ? 1 : 0)
    }
}

/// im2col row of output pixel (oy, ox): [9 * cin] in (ky, kx, cin) order, zeros outside the image.
private func patch(_ c: ConvCase, _ x: [Float], _ oy: Int, _ ox: Int) -> [Float] {
    var r = [Float](repeating: 0, count: 9 * c.cin)
    for ky in 0..<3 {
        let iy = oy * Int(c.stride) - Int(c.pad.0) + ky
        guard iy >= 0 && iy < c.h else { continue }
        for kx in 0..<3 {
            let ix = ox * Int(c.stride) - Int(c.pad.2) + kx
            guard ix >= 0 && ix < c.w else { continue }
            for ch in 0..<c.cin { r[(ky * 3 + kx) * c.cin + ch] = x[(iy * c.w + ix) * c.cin + ch] }
        }
    }
    return r
}

private func naive(_ c: ConvCase, _ x: [Float], _ rows: [[Float]], _ bias: [Float]?) -> [Double] {
    var y = [Double](repeating: 0, count: c.oh * c.ow * c.cout)
    for oy in 0..<c.oh {
        for ox in 0..<c.ow {
            let p = patch(c, x, oy, ox)
            for co in 0..<c.cout {
                var s = bias.map { Double($0[co]) } ?? 0
                for i in 0..<p.count { s += Double(p[i]) * Double(rows[co][i]) }
                y[(oy * c.ow + ox) * c.cout + co] = s
            }
        }
    }
    return y
}

private func conv(_ c: ConvCase, _ wt: MMWeight, _ x: [Float], _ bias: [Float]?, accumulateOnto: [Float]? = nil) -> [Float] {
    var y = accumulateOnto ?? [Float](repeating: .nan, count: c.oh * c.ow * c.cout)
    var p = c.params(accumulate: accumulateOnto != nil)
    withUnsafePointer(to: wt.raw) { w in qk_conv3x3(&p, w, x, bias, &y) }
    return y
}

@Suite struct ConvTests {
    private static let cases: [ConvCase] = [
        ConvCase(h: 1, w: 1, cin: 1, cout: 1, stride: 1, pad: (1, 1, 1, 1)),
        ConvCase(h: 5, w: 7, cin: 3, cout: 5, stride: 1, pad: (1, 1, 1, 1)),     // normal conv
        ConvCase(h: 9, w: 6, cin: 17, cout: 16, stride: 1, pad: (0, 0, 0, 0)),   // valid
        ConvCase(h: 8, w: 11, cin: 8, cout: 7, stride: 2, pad: (0, 1, 0, 1)),    // VAE downsampler
        ConvCase(h: 7, w: 9, cin: 5, cout: 9, stride: 2, pad: (1, 1, 1, 1)),
        ConvCase(h: 6, w: 5, cin: 4, cout: 3, stride: 1, pad: (2, 0, 0, 2)),     // asymmetric
        ConvCase(h: 12, w: 13, cin: 33, cout: 31, stride: 1, pad: (1, 1, 1, 1)), // several pixel tiles
        ConvCase(h: 2, w: 4, cin: 2, cout: 2, stride: 2, pad: (1, 0, 0, 0)),
    ]

    @Test func matchesNaiveEveryStrideAndPadding() {
        var rng = OpsRng(40)
        for (n, c) in Self.cases.enumerated() {
            let x = rng.floats(c.h * c.w * c.cin), wv = rng.floats(c.cout * 9 * c.cin), bias = rng.floats(c.cout)
            let wt = MMWeight(MMScheme(scheme: QK_F32, group: 0), n: c.cout, k: 9 * c.cin, values: wv)
            let rows = (0..<c.cout).map { wt.row($0) }
            for b in [nil, bias] {
                let ref = naive(c, x, rows, b)
                let (y1, y2) = oneAndTwoThreads { conv(c, wt, x, b) }
                #expect(bitsEqual(y1, y2), "case \(n): 1 vs 2 threads")
                let err = relL2(y1, ref)
                #expect(err <= OpsTolerance.convRelL2F32, "case \(n) bias \(b != nil): rel L2 \(err)")
                // the naive C twin over all output rows
                var yr = [Float](repeating: .nan, count: c.oh * c.ow * c.cout)
                var p = c.params(accumulate: false)
                var scratch = [Float](repeating: 0, count: 9 * c.cin)
                withUnsafePointer(to: wt.raw) { w in qk_conv3x3_ref(&p, w, x, b, &yr, 0, Int64(c.oh), &scratch) }
                #expect(relL2(yr, ref) <= OpsTolerance.convRelL2F32, "ref twin case \(n)")
            }
            // accumulate: y += conv(x) + bias
            let prior = rng.floats(c.oh * c.ow * c.cout)
            let acc = conv(c, wt, x, bias, accumulateOnto: prior)
            let ref = naive(c, x, rows, bias)
            #expect(relL2(acc, zip(ref, prior).map { $0 + Double($1) }) <= OpsTolerance.convRelL2F32, "accumulate case \(n)")
        }
    }

    /// The implicit GEMM feeds qk_matmul exactly the im2col rows: identical bits to an explicit im2col.
    @Test func implicitGemmEqualsExplicitIm2col() {
        var rng = OpsRng(41)
        let c = ConvCase(h: 21, w: 19, cin: 24, cout: 20, stride: 1, pad: (1, 1, 1, 1))
        let x = rng.floats(c.h * c.w * c.cin), wv = rng.floats(c.cout * 9 * c.cin), bias = rng.floats(c.cout)
        for s in [MMScheme(scheme: QK_F32, group: 0), MMScheme(scheme: QK_BF16, group: 0), MMScheme(scheme: QK_F16, group: 0),
                  MMScheme(scheme: QK_Q8, group: 0), MMScheme(scheme: QK_Q8, group: 32), MMScheme(scheme: QK_Q4, group: 32)] {
            let wt = MMWeight(s, n: c.cout, k: 9 * c.cin, values: wv)
            let cols = (0..<c.oh).flatMap { oy in (0..<c.ow).flatMap { ox in patch(c, x, oy, ox) } }
            var y = [Float](repeating: 0, count: c.oh * c.ow * c.cout)
            withUnsafePointer(to: wt.raw) { w in qk_matmul(w, cols, Int64(c.oh * c.ow), bias, &y) }
            let got = conv(c, wt, x, bias)
            #expect(bitsEqual(got, y), "\(s)")
            if s.scheme == QK_BF16 || s.scheme == QK_F16 {
                let rows = (0..<c.cout).map { wt.row($0) }
                #expect(relL2(got, naive(c, x, rows, bias)) <= OpsTolerance.convRelL2F32, "\(s) vs naive")
            }
        }
    }

    /// Integer schemes with cin a multiple of 32 quantize each input row once per band and gather int8
    /// patch rows: still the bits of qk_matmul on the explicit im2col rows, for every scheme and group
    /// (k padded to the group: 9 · 32 = 288 under groups of 64 and 128), stride 1 and 2, asymmetric
    /// padding, accumulate, and images of several bands; 1 and 2 threads alike.
    @Test func quantizeOnceEqualsExplicitIm2col() {
        var rng = OpsRng(42)
        let cases = [
            ConvCase(h: 23, w: 9, cin: 32, cout: 20, stride: 1, pad: (1, 1, 1, 1)),
            ConvCase(h: 17, w: 12, cin: 64, cout: 33, stride: 2, pad: (0, 1, 0, 1)),   // VAE downsampler
            ConvCase(h: 9, w: 7, cin: 96, cout: 16, stride: 1, pad: (2, 0, 0, 2)),
            ConvCase(h: 2, w: 3, cin: 32, cout: 5, stride: 1, pad: (1, 1, 1, 1)),
        ]
        let schemes = [MMScheme(scheme: QK_Q8, group: 0), MMScheme(scheme: QK_Q8, group: 32), MMScheme(scheme: QK_Q8, group: 128),
                       MMScheme(scheme: QK_Q4, group: 32), MMScheme(scheme: QK_Q4, group: 64), MMScheme(scheme: QK_Q8S, group: 32),
                       MMScheme(scheme: QK_Q4C, group: 32), MMScheme(scheme: QK_Q5S, group: 32), MMScheme(scheme: QK_Q6S, group: 32)]
        for (n, c) in cases.enumerated() {
            let x = rng.floats(c.h * c.w * c.cin), wv = rng.floats(c.cout * 9 * c.cin), bias = rng.floats(c.cout)
            let cols = (0..<c.oh).flatMap { oy in (0..<c.ow).flatMap { ox in patch(c, x, oy, ox) } }
            let prior = rng.floats(c.oh * c.ow * c.cout)
            for s in schemes {
                let wt = MMWeight(s, n: c.cout, k: 9 * c.cin, values: wv)
                var y = [Float](repeating: 0, count: c.oh * c.ow * c.cout)
                withUnsafePointer(to: wt.raw) { w in qk_matmul(w, cols, Int64(c.oh * c.ow), bias, &y) }
                let (g1, g2) = oneAndTwoThreads { conv(c, wt, x, bias) }
                #expect(bitsEqual(g1, y), "case \(n) \(s): 1 thread")
                #expect(bitsEqual(g2, y), "case \(n) \(s): 2 threads")
                var y0 = [Float](repeating: 0, count: c.oh * c.ow * c.cout)
                withUnsafePointer(to: wt.raw) { w in qk_matmul(w, cols, Int64(c.oh * c.ow), nil, &y0) }
                let acc = conv(c, wt, x, nil, accumulateOnto: prior)
                #expect(bitsEqual(acc, zip(prior, y0).map { $0 + $1 }), "case \(n) \(s): accumulate")
            }
        }
    }

    /// qk_conv2x2 (the upsamplers' parity convolutions): the bits of qk_matmul on the explicitly gathered
    /// 2×2 patch rows (zero outside the valid window), written at the strided output pixels and nowhere
    /// else; f32 and integer schemes (cin a multiple of 32 takes the quantize-once path), offsets that
    /// start outside the window on either side, 1 and 2 threads.
    @Test func conv2x2EqualsGatheredMatmul() {
        var rng = OpsRng(43)
        struct Case { var rows: Int, cols: Int, cin: Int, cout: Int, dy0: Int, dx0: Int, vh: Int, vw: Int }
        let cases = [Case(rows: 13, cols: 9, cin: 32, cout: 24, dy0: -1, dx0: -1, vh: 13, vw: 9),
                     Case(rows: 7, cols: 11, cin: 64, cout: 17, dy0: 0, dx0: 0, vh: 7, vw: 11),
                     Case(rows: 5, cols: 6, cin: 20, cout: 9, dy0: 1, dx0: -1, vh: 6, vw: 6),
                     Case(rows: 19, cols: 3, cin: 96, cout: 16, dy0: 2, dx0: 0, vh: 22, vw: 4)]
        let schemes = [MMScheme(scheme: QK_F32, group: 0), MMScheme(scheme: QK_Q8, group: 0), MMScheme(scheme: QK_Q8S, group: 32),
                       MMScheme(scheme: QK_Q4C, group: 32), MMScheme(scheme: QK_Q4, group: 64)]
        for (n, c) in cases.enumerated() {
            // input buffer: rows 0 ..< max read row, columns 0 ..< max read column (+ 3 extra columns of stride)
            let bufRows = max(c.rows + c.dy0 + 1, 1), bufCols = max(c.cols + c.dx0 + 1, 1) + 3
            let x = rng.floats(bufRows * bufCols * c.cin), wv = rng.floats(c.cout * 4 * c.cin), bias = rng.floats(c.cout)
            var cols = [Float](repeating: 0, count: c.rows * c.cols * 4 * c.cin)
            for r in 0..<c.rows { for q in 0..<c.cols { for a in 0..<2 { for b in 0..<2 {
                let u = r + c.dy0 + a, v = q + c.dx0 + b
                guard u >= 0 && u < c.vh && v >= 0 && v < c.vw else { continue }
                for i in 0..<c.cin { cols[((r * c.cols + q) * 4 + a * 2 + b) * c.cin + i] = x[(u * bufCols + v) * c.cin + i] }
            } } } }
            for s in schemes {
                let wt = MMWeight(s, n: c.cout, k: 4 * c.cin, values: wv)
                var want = [Float](repeating: 0, count: c.rows * c.cols * c.cout)
                withUnsafePointer(to: wt.raw) { w in qk_matmul(w, cols, Int64(c.rows * c.cols), bias, &want) }
                // output: every other pixel of a [2 rows, 2 cols] grid; the others must stay NaN
                let (g1, g2) = oneAndTwoThreads { () -> [Float] in
                    var y = [Float](repeating: .nan, count: 4 * c.rows * c.cols * c.cout)
                    var p = qk_conv2x2_params(rows: Int64(c.rows), cols: Int64(c.cols), cin: Int64(c.cin), cout: Int64(c.cout),
                                              x_row_stride: Int64(bufCols * c.cin), dy0: Int64(c.dy0), dx0: Int64(c.dx0),
                                              vh: Int64(c.vh), vw: Int64(c.vw), y_row_stride: Int64(4 * c.cols * c.cout),
                                              y_col_stride: Int64(2 * c.cout))
                    withUnsafePointer(to: wt.raw) { w in qk_conv2x2(&p, w, x, bias, &y) }
                    return y
                }
                for g in [g1, g2] {
                    var picked: [Float] = [], rest = true
                    for r in 0..<(2 * c.rows) { for q in 0..<(2 * c.cols) {
                        let px = Array(g[((r * 2 * c.cols) + q) * c.cout ..< ((r * 2 * c.cols) + q + 1) * c.cout])
                        if r % 2 == 0 && q % 2 == 0 { picked += px } else if !px.allSatisfy({ $0.isNaN }) { rest = false }
                    } }
                    #expect(bitsEqual(picked, want), "case \(n) \(s)")
                    #expect(rest, "case \(n) \(s): wrote outside the strided pixels")
                }
            }
        }
    }
}

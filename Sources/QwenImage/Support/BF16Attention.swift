import Kernels
import Quant

/// --bf16-dot attention of one head: its keys K [rows, C] and values (as Vᵀ [C, rows]) packed as bf16
/// weights, and the attention of a query chunk as two bf16 dot products, scores = (q / sqrt C)·Kᵀ and
/// out = softmax(scores)·V (queries, probabilities, K and V rounded to bf16, as PyTorch's bf16 attention;
/// sums in f32). Used by the VAE's mid-block attention (one head over a frame) and the vision towers'
/// whole-image attention (one head over an image).
final class BF16KeysValues {
    private var k = qk_weight(), vt = qk_weight()
    private let kbuf: UnsafeMutableRawPointer, vbuf: UnsafeMutableRawPointer
    private let scores: UnsafeMutablePointer<Float>, rows: UnsafeMutablePointer<Float>
    private let dim: Int
    /// The most keys `load` takes.
    let capacity: Int

    /// Floats of working memory for `rows` keys of width `dim` and chunks of `queryRows` queries: K and Vᵀ
    /// in bf16, a chunk's scores and the transposition rows.
    static func workFloats(rows: Int, dim: Int, queryRows: Int) -> Int {
        rows * dim + queryRows * rows + 16 * max(rows, dim)
    }

    /// Buffers for up to `capacity` keys of width `dim`; queryRows: the most queries `attend` takes at once.
    init(capacity L: Int, dim c: Int, queryRows: Int) {
        dim = c
        capacity = L
        kbuf = UnsafeMutableRawPointer.allocate(byteCount: qk_weight_bytes(QK_BF16, 0, Int64(L), Int64(c)), alignment: 64)
        vbuf = UnsafeMutableRawPointer.allocate(byteCount: qk_weight_bytes(QK_BF16, 0, Int64(c), Int64(L)), alignment: 64)
        scores = UnsafeMutablePointer<Float>.allocate(capacity: queryRows * L)
        rows = UnsafeMutablePointer<Float>.allocate(capacity: 16 * max(L, c))
    }

    /// keys / values: `rows` rows of `dim` floats each, `keyStride` / `valueStride` floats apart;
    /// queryRows: the most queries `attend` takes at once.
    convenience init(keys: UnsafePointer<Float>, keyStride: Int, values: UnsafePointer<Float>, valueStride: Int,
                     rows L: Int, dim c: Int, queryRows: Int) {
        self.init(capacity: L, dim: c, queryRows: queryRows)
        load(keys: keys, keyStride: keyStride, values: values, valueStride: valueStride, rows: L)
    }

    /// Packs `L` ≤ `capacity` keys and values (as above); `attend` then attends over them.
    func load(keys: UnsafePointer<Float>, keyStride: Int, values: UnsafePointer<Float>, valueStride: Int, rows L: Int) {
        precondition(L <= capacity, "BF16KeysValues: \(L) keys, capacity \(capacity)")
        let c = dim
        // K: dense keys at once, else 16 rows at a time; Vᵀ: 16 channels at a time, gathered over the rows.
        if keyStride == c {
            qk_weight_pack_rows(QK_BF16, 0, Int64(L), Int64(c), 0, Int64(L), keys, kbuf)
        } else {
            for k0 in stride(from: 0, to: L, by: 16) {
                let nr = min(16, L - k0)
                for r in 0..<nr { (rows + r * c).update(from: keys + (k0 + r) * keyStride, count: c) }
                qk_weight_pack_rows(QK_BF16, 0, Int64(L), Int64(c), Int64(k0), Int64(nr), rows, kbuf)
            }
        }
        // One transposed row at a time: writing the 16 rows in step would put 16 stores L floats apart,
        // which for L a power of two (4,096 patches) all land in one cache set.
        for c0 in stride(from: 0, to: c, by: 16) {
            let nr = min(16, c - c0)
            for r in 0..<nr {
                let dst = rows + r * L, src = values + c0 + r
                for i in 0..<L { dst[i] = src[i * valueStride] }
            }
            qk_weight_pack_rows(QK_BF16, 0, Int64(c), Int64(L), Int64(c0), Int64(nr), rows, vbuf)
        }
        k = qk_weight(scheme: QK_BF16, group: 0, n: Int64(L), k: Int64(c), data: kbuf)
        vt = qk_weight(scheme: QK_BF16, group: 0, n: Int64(c), k: Int64(L), data: vbuf)
    }

    deinit { kbuf.deallocate(); vbuf.deallocate(); scores.deallocate(); rows.deallocate() }

    /// o [m, C] = softmax((q / sqrt C)·Kᵀ)·V for the queries q [m, C] (scaled in place).
    func attend(_ q: UnsafeMutablePointer<Float>, _ m: Int, _ o: UnsafeMutablePointer<Float>) {
        let scale = 1 / Float(dim).squareRoot()
        for i in 0..<(m * dim) { q[i] *= scale }
        withUnsafePointer(to: k) { qk_matmul($0, q, Int64(m), nil, scores) }
        qk_softmax(scores, Int64(m), k.n)
        withUnsafePointer(to: vt) { qk_matmul($0, scores, Int64(m), nil, o) }
    }
}

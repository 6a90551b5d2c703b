// Tolerances of the Ops / Attention / Conv kernel tests (metric and reason beside each).
enum OpsTolerance {
    /// silu / silu_mul / gelu / softmax, SIMD vs ref, |a - b| <= abs + rel |b|: the vector exp and the
    /// erfc fit are within a few ulp of libm (rel 1.2e-7 for the fit); abs covers results near zero,
    /// where ref's 1 + erf(x) cancels (an ulp of 1 times |x|).
    static let elementRel: Float = 2e-6
    static let elementAbs: Float = 1e-7
    /// rmsnorm / l2norm: f32 vector sum of squares vs ref's double sum: a few ulp of the scale factor.
    static let normRel: Float = 1e-5
    static let normAbs: Float = 1e-7
    /// attention vs a Double softmax(QK^T)V: relative L2 over the output; f32 dot products of length
    /// d <= 384 and an f32 running sum.
    static let attentionRelL2 = 2e-6
    /// conv (f32 weights) vs a Double naive loop: relative L2, f32 sums of length 9 cin.
    static let convRelL2F32 = 2e-6
    /// rope tables vs the formula in Double: angles are rounded to f32 as transformers does, so the
    /// table may differ by about (ulp of the angle) + 1 ulp of cos/sin.
    static let ropeAngleUlps: Double = 1.0
}

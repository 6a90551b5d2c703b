// ggml tensor types as they sit in a GGUF file, and their exact dequantization.
//
// Each block layout below is ggml's (ggml-common.h, `block_q4_0` ... `block_q6_K`); the decoders mirror
// ggml's reference `dequantize_row_*` functions operation for operation (same f32 products and sums in
// the same order), so a decoded weight is bit-identical to what llama.cpp's CPU backend computes from it.
// All fields are little-endian; `d`, `dmin`, `m` are IEEE binary16.

/// The ggml type ids of GGUF's tensor-info records (ggml.h `enum ggml_type`).
public enum GGMLType: UInt32, Sendable, CaseIterable {
    case F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8
    case Q4_K = 12, Q5_K = 13, Q6_K = 14, BF16 = 30

    public var name: String { String(describing: self) }

    /// Elements per block (1 for the float types).
    public var blockElements: Int {
        switch self {
        case .F32, .F16, .BF16: return 1
        case .Q4_0, .Q4_1, .Q5_0, .Q5_1, .Q8_0: return 32
        case .Q4_K, .Q5_K, .Q6_K: return 256
        }
    }

    /// Bytes per block.
    public var blockBytes: Int {
        switch self {
        case .F32: return 4
        case .F16, .BF16: return 2
        case .Q4_0: return 18        // f16 d; u8 qs[16]
        case .Q4_1: return 20        // f16 d, m; u8 qs[16]
        case .Q5_0: return 22        // f16 d; u8 qh[4]; u8 qs[16]
        case .Q5_1: return 24        // f16 d, m; u8 qh[4]; u8 qs[16]
        case .Q8_0: return 34        // f16 d; i8 qs[32]
        case .Q4_K: return 144       // f16 d, dmin; u8 scales[12]; u8 qs[128]
        case .Q5_K: return 176       // f16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]
        case .Q6_K: return 210       // u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d
        }
    }

    public var isFloat: Bool { self == .F32 || self == .F16 || self == .BF16 }

    /// Every ggml type id with its name and block geometry (elements, bytes), so a file holding a type
    /// this reader does not decode is still validated and the error names the type.
    static let catalog: [UInt32: (name: String, elements: Int, bytes: Int)] = [
        0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22),
        7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36), 10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110),
        12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
        16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98), 19: ("IQ1_S", 256, 50),
        20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110), 22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136),
        24: ("I8", 1, 1), 25: ("I16", 1, 2), 26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8),
        29: ("IQ1_M", 256, 56), 30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66),
    ]

    public static var supportedNames: String { allCases.map(\.name).joined(separator: ", ") }
}

// MARK: - dequantization

extension GGMLType {
    /// Decodes `blocks` whole blocks starting at `src` into `blocks * blockElements` floats at `dst`.
    public func dequantize(blocks: Int, from src: UnsafeRawPointer, into dst: UnsafeMutablePointer<Float>) {
        for b in 0..<blocks {
            let x = src + b * blockBytes, y = dst + b * blockElements
            switch self {
            case .F32: y.pointee = Float(bitPattern: x.loadUnaligned(as: UInt32.self).littleEndian)
            case .F16: y.pointee = HalfFloat.f16ToF32(x.loadUnaligned(as: UInt16.self).littleEndian)
            case .BF16: y.pointee = HalfFloat.bf16ToF32(x.loadUnaligned(as: UInt16.self).littleEndian)
            case .Q4_0: Self.q4_0(x, y)
            case .Q4_1: Self.q4_1(x, y)
            case .Q5_0: Self.q5_0(x, y)
            case .Q5_1: Self.q5_1(x, y)
            case .Q8_0: Self.q8_0(x, y)
            case .Q4_K: Self.q4_K(x, y)
            case .Q5_K: Self.q5_K(x, y)
            case .Q6_K: Self.q6_K(x, y)
            }
        }
    }

    @inline(__always) static func half(_ p: UnsafeRawPointer, _ at: Int) -> Float {
        HalfFloat.f16ToF32(p.loadUnaligned(fromByteOffset: at, as: UInt16.self).littleEndian)
    }

    @inline(__always) static func byte(_ p: UnsafeRawPointer, _ at: Int) -> Int { Int(p.load(fromByteOffset: at, as: UInt8.self)) }

    // dequantize_row_q4_0: y[j] = (lo - 8)·d, y[j+16] = (hi - 8)·d.
    static func q4_0(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(x, 0)
        for j in 0..<16 {
            let q = byte(x, 2 + j)
            y[j] = Float((q & 0x0F) - 8) * d
            y[j + 16] = Float((q >> 4) - 8) * d
        }
    }

    // dequantize_row_q4_1: y = q·d + m.
    static func q4_1(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(x, 0), m = half(x, 2)
        for j in 0..<16 {
            let q = byte(x, 4 + j)
            y[j] = Float(q & 0x0F) * d + m
            y[j + 16] = Float(q >> 4) * d + m
        }
    }

    // dequantize_row_q5_0: the fifth bit of element j is bit j of qh (j < 16) / bit j+12 -> 16+j.
    static func q5_0(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(x, 0)
        let qh = x.loadUnaligned(fromByteOffset: 2, as: UInt32.self).littleEndian
        for j in 0..<16 {
            let q = byte(x, 6 + j)
            let h0 = Int(((qh >> UInt32(j)) << 4) & 0x10), h1 = Int((qh >> UInt32(j + 12)) & 0x10)
            y[j] = Float(((q & 0x0F) | h0) - 16) * d
            y[j + 16] = Float(((q >> 4) | h1) - 16) * d
        }
    }

    // dequantize_row_q5_1: as q5_0 without the offset, plus m.
    static func q5_1(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(x, 0), m = half(x, 2)
        let qh = x.loadUnaligned(fromByteOffset: 4, as: UInt32.self).littleEndian
        for j in 0..<16 {
            let q = byte(x, 8 + j)
            let h0 = Int(((qh >> UInt32(j)) << 4) & 0x10), h1 = Int((qh >> UInt32(j + 12)) & 0x10)
            y[j] = Float((q & 0x0F) | h0) * d + m
            y[j + 16] = Float((q >> 4) | h1) * d + m
        }
    }

    // dequantize_row_q8_0: y = q·d.
    static func q8_0(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(x, 0)
        for j in 0..<32 { y[j] = Float(x.load(fromByteOffset: 2 + j, as: Int8.self)) * d }
    }

    // get_scale_min_k4: the 6-bit scale and min of sub-block j (0..<8) packed in 12 bytes.
    @inline(__always) static func scaleMinK4(_ j: Int, _ s: UnsafeRawPointer) -> (Float, Float) {
        if j < 4 { return (Float(byte(s, j) & 63), Float(byte(s, j + 4) & 63)) }
        let sc = (byte(s, j + 4) & 0x0F) | ((byte(s, j - 4) >> 6) << 4)
        let m = (byte(s, j + 4) >> 4) | ((byte(s, j) >> 6) << 4)
        return (Float(sc), Float(m))
    }

    // dequantize_row_q4_K: 8 sub-blocks of 32, y = (d·sc)·q - (dmin·m).
    static func q4_K(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(x, 0), dmin = half(x, 2)
        let scales = x + 4, qs = x + 16
        for g in 0..<4 {
            let (sc1, m1) = scaleMinK4(2 * g, scales), (sc2, m2) = scaleMinK4(2 * g + 1, scales)
            let d1 = d * sc1, mn1 = dmin * m1, d2 = d * sc2, mn2 = dmin * m2
            let q = qs + 32 * g, out = y + 64 * g
            for l in 0..<32 {
                let v = byte(q, l)
                out[l] = d1 * Float(v & 0x0F) - mn1
                out[32 + l] = d2 * Float(v >> 4) - mn2
            }
        }
    }

    // dequantize_row_q5_K: as q4_K with a fifth bit from qh (bits 2g and 2g+1 of qh[l]).
    static func q5_K(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(x, 0), dmin = half(x, 2)
        let scales = x + 4, qh = x + 16, qs = x + 48
        for g in 0..<4 {
            let (sc1, m1) = scaleMinK4(2 * g, scales), (sc2, m2) = scaleMinK4(2 * g + 1, scales)
            let d1 = d * sc1, mn1 = dmin * m1, d2 = d * sc2, mn2 = dmin * m2
            let u1 = 1 << (2 * g), u2 = 2 << (2 * g)
            let q = qs + 32 * g, out = y + 64 * g
            for l in 0..<32 {
                let v = byte(q, l), h = byte(qh, l)
                out[l] = d1 * Float((v & 0x0F) + (h & u1 != 0 ? 16 : 0)) - mn1
                out[32 + l] = d2 * Float((v >> 4) + (h & u2 != 0 ? 16 : 0)) - mn2
            }
        }
    }

    // dequantize_row_q6_K: two halves of 128; y = d·sc·(q - 32) with 16 signed 8-bit sub-block scales.
    static func q6_K(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(x, 208)
        for n in 0..<2 {
            let ql = x + 64 * n, qh = x + 128 + 32 * n, sc = x + 192 + 8 * n, out = y + 128 * n
            for l in 0..<32 {
                let i = l / 16
                let a = byte(ql, l), b = byte(ql, l + 32), h = byte(qh, l)
                let q1 = ((a & 0x0F) | ((h & 3) << 4)) - 32
                let q2 = ((b & 0x0F) | (((h >> 2) & 3) << 4)) - 32
                let q3 = ((a >> 4) | (((h >> 4) & 3) << 4)) - 32
                let q4 = ((b >> 4) | (((h >> 6) & 3) << 4)) - 32
                func s(_ k: Int) -> Float { Float(sc.load(fromByteOffset: k, as: Int8.self)) }
                out[l] = d * s(i) * Float(q1)
                out[l + 32] = d * s(i + 2) * Float(q2)
                out[l + 64] = d * s(i + 4) * Float(q3)
                out[l + 96] = d * s(i + 6) * Float(q4)
            }
        }
    }
}

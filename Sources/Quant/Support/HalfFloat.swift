/// bf16 / f16 <-> f32 conversions in Swift (used by the formats code, which must not depend on kernel
/// tiers; both are exact widenings, and the narrowings round to nearest even like `qk_f32_to_bf16`).
public enum HalfFloat {
    @inline(__always) public static func bf16ToF32(_ h: UInt16) -> Float { Float(bitPattern: UInt32(h) << 16) }

    public static func bf16ToF32(_ x: UnsafePointer<UInt16>, _ n: Int, _ y: UnsafeMutablePointer<Float>) {
        for i in 0..<n { y[i] = Float(bitPattern: UInt32(x[i]) << 16) }
    }

    /// Round to nearest even; NaN stays NaN (quiet).
    @inline(__always) public static func f32ToBF16(_ f: Float) -> UInt16 {
        let u = f.bitPattern
        if f.isNaN { return UInt16(u >> 16) | 0x40 }
        let rounded = u &+ 0x7FFF &+ ((u >> 16) & 1)
        return UInt16(rounded >> 16)
    }

    @inline(__always) public static func f16ToF32(_ h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exp = Int((h >> 10) & 0x1F)
        let man = UInt32(h & 0x3FF)
        if exp == 0 {
            if man == 0 { return Float(bitPattern: sign) }
            // Subnormal: man * 2^-24.
            let v = Float(man) * Float(bitPattern: 0x3380_0000)
            return sign != 0 ? -v : v
        }
        if exp == 31 { return Float(bitPattern: sign | 0x7F80_0000 | (man << 13)) }
        return Float(bitPattern: sign | UInt32(exp - 15 + 127) << 23 | (man << 13))
    }

    public static func f16ToF32(_ x: UnsafePointer<UInt16>, _ n: Int, _ y: UnsafeMutablePointer<Float>) {
        for i in 0..<n { y[i] = f16ToF32(x[i]) }
    }
}

import Foundation

/// A minimal safetensors reader/writer for the benchmark's own inputs and outputs (f32, bf16, f16,
/// int64, uint8 -> Float). Small files only: it reads the whole file.
struct STFile {
    struct Entry { let dtype: String; let shape: [Int]; let begin: Int; let end: Int }
    let path: String
    let entries: [String: Entry]
    private let data: Data
    private let base: Int

    init(_ path: String) throws {
        self.path = path
        guard let d = FileManager.default.contents(atPath: path), d.count >= 8 else {
            throw BenchError.bad("\(path): cannot read a safetensors file")
        }
        data = d
        let n = d.prefix(8).withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))) }
        guard n > 0 && 8 + n <= d.count,
              let header = try? JSONSerialization.jsonObject(with: d.subdata(in: 8..<(8 + n))) as? [String: Any] else {
            throw BenchError.bad("\(path): bad safetensors header")
        }
        base = 8 + n
        var e: [String: Entry] = [:]
        for (k, v) in header where k != "__metadata__" {
            guard let o = v as? [String: Any], let dt = o["dtype"] as? String, let sh = o["shape"] as? [Int],
                  let off = o["data_offsets"] as? [Int], off.count == 2 else { continue }
            e[k] = Entry(dtype: dt, shape: sh, begin: off[0], end: off[1])
        }
        entries = e
    }

    func shape(_ name: String) throws -> [Int] {
        guard let e = entries[name] else { throw BenchError.bad("\(path): no tensor '\(name)' (has \(entries.keys.sorted().joined(separator: ", ")))") }
        return e.shape
    }

    func floats(_ name: String) throws -> [Float] {
        guard let e = entries[name] else { throw BenchError.bad("\(path): no tensor '\(name)' (has \(entries.keys.sorted().joined(separator: ", ")))") }
        let bytes = data.subdata(in: (base + e.begin)..<(base + e.end))
        return bytes.withUnsafeBytes { p -> [Float] in
            switch e.dtype {
            case "F32": return (0..<(p.count / 4)).map { p.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) }
            case "BF16": return (0..<(p.count / 2)).map { Float(bitPattern: UInt32(p.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self)) << 16) }
            case "F16": return (0..<(p.count / 2)).map { Float(Float16(bitPattern: p.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self))) }
            case "I64": return (0..<(p.count / 8)).map { Float(p.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) }
            case "U8": return p.map { Float($0) }
            default: return []
            }
        }
    }

    /// Writes f32 tensors (name, shape, values) to a new file.
    static func writeF32(_ tensors: [(String, [Int], [Float])], to path: String) throws {
        var header: [String] = []
        var off = 0
        for (n, s, v) in tensors {
            header.append("\"\(n)\":{\"dtype\":\"F32\",\"shape\":[\(s.map(String.init).joined(separator: ","))],\"data_offsets\":[\(off),\(off + v.count * 4)]}")
            off += v.count * 4
        }
        var h = "{" + header.joined(separator: ",") + "}"
        while (h.utf8.count % 8) != 0 { h += " " }
        var out = Data()
        var len = UInt64(h.utf8.count).littleEndian
        out.append(Data(bytes: &len, count: 8))
        out.append(h.data(using: .utf8)!)
        for (_, _, v) in tensors { v.withUnsafeBytes { out.append(contentsOf: $0) } }
        try AtomicWrite.data(out, to: URL(fileURLWithPath: path))
    }
}

// MARK: - Error metrics

enum Metric {
    /// ‖a − ref‖ / ‖ref‖ in double precision.
    static func relL2(_ a: [Float], _ ref: [Float]) -> Double {
        guard a.count == ref.count, !a.isEmpty else { return .nan }
        var num = 0.0, den = 0.0
        for i in 0..<a.count { let d = Double(a[i]) - Double(ref[i]); num += d * d; den += Double(ref[i]) * Double(ref[i]) }
        return den > 0 ? (num / den).squareRoot() : (num == 0 ? 0 : .infinity)
    }

    /// Mean and minimum cosine similarity over rows of width `dim` (rows of the reference that are
    /// all zero, i.e. padding, are skipped).
    static func rowCosine(_ a: [Float], _ ref: [Float], dim: Int) -> (mean: Double, worst: Double) {
        guard a.count == ref.count, dim > 0, a.count % dim == 0 else { return (.nan, .nan) }
        var sum = 0.0, worst = 1.0, n = 0
        for r in 0..<(a.count / dim) {
            var ab = 0.0, aa = 0.0, bb = 0.0
            for j in (r * dim)..<((r + 1) * dim) {
                ab += Double(a[j]) * Double(ref[j]); aa += Double(a[j]) * Double(a[j]); bb += Double(ref[j]) * Double(ref[j])
            }
            if bb == 0 { continue }
            let c = aa > 0 ? ab / (aa * bb).squareRoot() : 0
            sum += c; worst = min(worst, c); n += 1
        }
        return n > 0 ? (sum / Double(n), worst) : (.nan, .nan)
    }

    /// PSNR in dB of two images given in [-1, 1], compared in [0, 1] after the pipelines'
    /// postprocess clamp(x / 2 + 0.5, 0, 1).
    static func psnr(_ a: [Float], _ ref: [Float]) -> Double {
        guard a.count == ref.count, !a.isEmpty else { return .nan }
        var mse = 0.0
        for i in 0..<a.count {
            let x = Double(min(max(a[i] / 2 + 0.5, 0), 1)), y = Double(min(max(ref[i] / 2 + 0.5, 0), 1))
            mse += (x - y) * (x - y)
        }
        mse /= Double(a.count)
        return mse > 0 ? 10 * log10(1 / mse) : .infinity
    }

    /// Signal-to-noise ratio in dB: 10 log10(‖ref‖² / ‖a − ref‖²).
    static func snr(_ a: UnsafeBufferPointer<Float>, _ ref: UnsafeBufferPointer<Float>) -> Double {
        var num = 0.0, den = 0.0
        for i in 0..<ref.count { let d = Double(a[i]) - Double(ref[i]); num += d * d; den += Double(ref[i]) * Double(ref[i]) }
        return num > 0 ? 10 * log10(den / num) : .infinity
    }
}

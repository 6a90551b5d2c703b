import Foundation
import Quant

/// Runs one benchmark case `repeat` times in fresh child processes and aggregates: median wall
/// time, min/max, the largest peak RSS, and the scalar fields of the median run's `--json` summary.
enum SpeedCase {
    static func measure(_ argv: [String], repeat n: Int, label: String) throws -> [String: Any] {
        var runs: [ChildResult] = []
        for i in 0..<max(1, n) {
            let r = try Child.run(argv)
            if r.status != 0 {
                let status = Child.failureStatus(r, tool: argv[0], subcommand: argv[1])
                note("\(label): \(status)")
                return ["status": status, "command": Child.shellLine(argv.enumerated().map { $0.offset == 0 ? URL(fileURLWithPath: $0.element).lastPathComponent : $0.element })]
            }
            runs.append(r)
            let inner = (r.json?["seconds"] as? Double).map { String(format: " (self-reported %.2f s)", $0) } ?? ""
            note(String(format: "%@ run %d: %.2f s%@, peak RSS %@", label, i + 1, r.seconds, inner, ByteSize.format(r.peakRSS)))
        }
        let times = runs.map(\.seconds)
        let med = median(times)
        let medianRun = runs.min { abs($0.seconds - med) < abs($1.seconds - med) }!
        var rec: [String: Any] = [
            "status": "ok", "repeats": runs.count, "wall_s_median": med, "wall_s_min": times.min()!, "wall_s_max": times.max()!,
            "wall_s_all": times, "peak_rss_bytes": runs.map(\.peakRSS).max()!,
            "cpu_s_median": median(runs.map(\.cpuSeconds)),
            "command": Child.shellLine(argv.enumerated().map { $0.offset == 0 ? URL(fileURLWithPath: $0.element).lastPathComponent : $0.element }),
        ]
        if let j = medianRun.json { rec["summary"] = j.filter { $0.value is NSNumber || $0.value is String } }
        let selfTimes = runs.compactMap { $0.json?["seconds"] as? Double }
        if selfTimes.count == runs.count { rec["self_s_median"] = median(selfTimes) }
        return rec
    }
}

// MARK: - Synthetic inputs

/// A deterministic "photo": smooth gradients, a few discs and mild noise, RGB8.
func syntheticPhoto(width: Int, height: Int, seed: UInt64 = 7) -> [UInt8] {
    var px = [UInt8](repeating: 0, count: width * height * 3)
    var s = seed
    func rnd() -> Double { s = s &* 6364136223846793005 &+ 1442695040888963407; return Double(s >> 11) / Double(1 << 53) }
    let discs = (0..<12).map { _ in (rnd() * Double(width), rnd() * Double(height), 20 + rnd() * Double(min(width, height)) / 4, rnd(), rnd(), rnd()) }
    for y in 0..<height {
        for x in 0..<width {
            var r = Double(x) / Double(width), g = Double(y) / Double(height), b = 0.5 + 0.5 * sin(Double(x + y) / 50)
            for (cx, cy, rad, dr, dg, db) in discs where (Double(x) - cx) * (Double(x) - cx) + (Double(y) - cy) * (Double(y) - cy) < rad * rad {
                r = dr; g = dg; b = db
            }
            let n = (rnd() - 0.5) * 0.06
            let i = (y * width + x) * 3
            px[i] = UInt8(max(0, min(255, (r + n) * 255)))
            px[i + 1] = UInt8(max(0, min(255, (g + n) * 255)))
            px[i + 2] = UInt8(max(0, min(255, (b + n) * 255)))
        }
    }
    return px
}

/// Writes an 8-bit RGB PNG with stored (uncompressed) deflate blocks: no codec dependency. `rgba`:
/// RGBA with an opaque alpha channel.
func writePNG(_ rgb: [UInt8], width: Int, height: Int, to path: String, rgba: Bool = false) throws {
    var raw = [UInt8]()
    let bpp = rgba ? 4 : 3
    raw.reserveCapacity((width * bpp + 1) * height)
    for y in 0..<height {
        raw.append(0)
        if rgba {
            for x in 0..<width { let p = (y * width + x) * 3; raw += [rgb[p], rgb[p + 1], rgb[p + 2], 255] }
        } else {
            raw.append(contentsOf: rgb[(y * width * 3)..<((y + 1) * width * 3)])
        }
    }
    var z: [UInt8] = [0x78, 0x01]
    var pos = 0
    while pos < raw.count || raw.isEmpty {
        let n = min(65535, raw.count - pos)
        let final: UInt8 = pos + n >= raw.count ? 1 : 0
        z += [final, UInt8(n & 0xFF), UInt8(n >> 8), UInt8(~n & 0xFF), UInt8((~n >> 8) & 0xFF)]
        z += raw[pos..<(pos + n)]
        pos += n
        if raw.isEmpty { break }
    }
    var a: UInt32 = 1, b: UInt32 = 0
    for v in raw { a = (a + UInt32(v)) % 65521; b = (b + a) % 65521 }
    let adler = (b << 16) | a
    z += [UInt8(adler >> 24), UInt8((adler >> 16) & 0xFF), UInt8((adler >> 8) & 0xFF), UInt8(adler & 0xFF)]
    func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }
    func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let td = Array(type.utf8) + data
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in td {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = (crc >> 1) ^ (0xEDB8_8320 & (0 &- (crc & 1))) }
        }
        return be32(UInt32(data.count)) + td + be32(~crc)
    }
    var png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
    png += chunk("IHDR", be32(UInt32(width)) + be32(UInt32(height)) + [8, rgba ? 6 : 2, 0, 0, 0])
    png += chunk("IDAT", z)
    png += chunk("IEND", [])
    try AtomicWrite.data(Data(png), to: URL(fileURLWithPath: path))
}

/// N(0, 1) latents (Box-Muller), deterministic.
func syntheticLatents(count: Int, seed: UInt64 = 11) -> [Float] {
    var s = seed
    func rnd() -> Double { s = s &* 6364136223846793005 &+ 1442695040888963407; return (Double(s >> 11) + 0.5) / Double(1 << 53) }
    return (0..<count).map { _ in Float((-2 * log(rnd())).squareRoot() * cos(2 * Double.pi * rnd())) }
}

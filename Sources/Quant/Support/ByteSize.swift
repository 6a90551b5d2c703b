/// Parses sizes such as `512M`, `1.5G`, `800MiB`, `2GB`, `123456` (bytes). Powers of 1024 throughout.
public enum ByteSize {
    public static func parse(_ text: String) -> Int? {
        let s = text.trimmingCharacters(in: .whitespaces).lowercased()
        var digits = s
        var unit = ""
        while let last = digits.last, last.isLetter { unit = String(last) + unit; digits.removeLast() }
        guard let value = Double(digits.trimmingCharacters(in: .whitespaces)), value.isFinite, value >= 0 else { return nil }
        let mult: Double
        switch unit {
        case "", "b": mult = 1
        case "k", "kb", "kib": mult = 1024
        case "m", "mb", "mib": mult = 1024 * 1024
        case "g", "gb", "gib": mult = 1024 * 1024 * 1024
        case "t", "tb", "tib": mult = 1024 * 1024 * 1024 * 1024
        default: return nil
        }
        // Int(exactly:) is not enough: Int(Double) traps above Int.max (e.g. "1e30").
        let bytes = (value * mult).rounded(.down)
        guard bytes < Double(Int.max) else { return nil }
        return Int(bytes)
    }

    public static func format(_ bytes: Int) -> String {
        let b = Double(bytes)
        if b >= 1024 * 1024 * 1024 { return String(format: "%.2f GiB", b / (1024 * 1024 * 1024)) }
        if b >= 1024 * 1024 { return String(format: "%.1f MiB", b / (1024 * 1024)) }
        if b >= 1024 { return String(format: "%.1f KiB", b / 1024) }
        return "\(bytes) B"
    }
}

import Foundation

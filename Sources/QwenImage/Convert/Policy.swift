import Foundation
import Quant

/// A user rule `REGEX=SCHEME[:GROUP]`. The regex is searched anywhere in the pack tensor name
/// (anchor it with ^ and $ for an exact match). Rules apply in order and the LAST matching rule wins,
/// so a general rule goes first and exceptions after it.
public struct PolicyRule: @unchecked Sendable, CustomStringConvertible {
    public let text: String
    public let pattern: String
    public let regex: NSRegularExpression
    public let scheme: PackScheme
    /// nil: the default group size.
    public let group: Int?

    public init(parsing text: String) throws {
        self.text = text
        guard let eq = text.lastIndex(of: "=") else {
            throw QuantError.invalidArgument("--rule '\(text)': expected REGEX=SCHEME[:GROUP], e.g. 'mlp\\.down_proj=q8:32'")
        }
        pattern = String(text[..<eq])
        let rhs = text[text.index(after: eq)...].split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard !pattern.isEmpty, rhs.count == 1 || rhs.count == 2 else {
            throw QuantError.invalidArgument("--rule '\(text)': expected REGEX=SCHEME[:GROUP]")
        }
        do { regex = try NSRegularExpression(pattern: pattern) } catch {
            throw QuantError.invalidArgument("--rule '\(text)': invalid regular expression '\(pattern)'")
        }
        do { scheme = try PackScheme.parse(rhs[0]) } catch let e as QuantError {
            throw QuantError.invalidArgument("--rule '\(text)': \(e.description)")
        }
        if rhs.count == 2 {
            guard let g = Int(rhs[1]) else { throw QuantError.invalidArgument("--rule '\(text)': group '\(rhs[1])' is not a number") }
            do { try scheme.validateGroup(g) } catch let e as QuantError {
                throw QuantError.invalidArgument("--rule '\(text)': \(e.description)")
            }
            group = g
        } else {
            group = nil
        }
    }

    public func matches(_ name: String) -> Bool {
        regex.firstMatch(in: name, range: NSRange(name.startIndex..., in: name)) != nil
    }

    public var description: String { text }
}

/// The scheme chosen for one pack tensor, and why.
public struct SchemeChoice: Sendable, Equatable {
    public let scheme: PackScheme
    public let group: Int
    /// Why the default was not used ("" when it was).
    public let note: String
}

/// Per-tensor scheme policy.
///
/// Defaults: vectors (biases, norm weights, 1-D tensors) are dense f32, always; matrices with fewer
/// than `tinyElements` elements stay f32 (their bytes do not matter and they are often the most
/// sensitive, e.g. the VAE's first and last convolutions); everything else, including the embedding
/// table, uses the chosen scheme. Then the user rules, last match wins. Finally fewer than 8 bits are
/// not offered for VAE convolutions (their error compounds over the decoder's many 3×3 layers: q6s
/// decodes the tiny model's test image at 38.6 dB PSNR against 46.8 for q8s): q4 becomes q8, and q4c,
/// q5s and q6s become q8s. Float schemes always have group 0; q4c, q5s, q6s and q8s always group 32.
public struct ConversionPolicy: Sendable {
    public static let tinyElements = 4096
    public let scheme: PackScheme
    public let group: Int
    public let rules: [PolicyRule]
    /// Per source dtype, the default that replaces `scheme` (a GGUF import keeps each ggml type in the
    /// scheme that holds it best; see `GGUFImport.matchingSchemes`).
    public let bySourceDType: [String: SchemeChoice]

    public init(scheme: PackScheme, group: Int, rules: [PolicyRule], bySourceDType: [String: SchemeChoice] = [:]) throws {
        try PackScheme.validateGroup(group)
        self.scheme = scheme
        self.group = group
        self.rules = rules
        self.bySourceDType = bySourceDType
    }

    public func choose(_ t: NameTableOutput, sourceDType: String? = nil) -> SchemeChoice {
        guard t.isMatrix else { return SchemeChoice(scheme: .f32, group: 0, note: "vector: f32") }
        var scheme = self.scheme
        var group = self.group
        var notes: [String] = []
        if let d = sourceDType, let m = bySourceDType[d] {
            scheme = m.scheme
            group = m.group
            notes.append(m.note)
        }
        let elements = t.shape.reduce(1, *)
        if elements < Self.tinyElements && scheme != .f32 {
            scheme = .f32
            notes.append("tiny (\(elements) < \(Self.tinyElements) elements): f32")
        }
        if let rule = rules.last(where: { $0.matches(t.name) }) {
            scheme = rule.scheme
            group = rule.group ?? self.group
            notes = ["rule '\(rule.text)'"]
        }
        if t.role == .conv && scheme.eightBitSibling != scheme {
            let was = scheme
            scheme = scheme.eightBitSibling
            notes.append("\(was.rawValue) is not offered for VAE convolutions: \(scheme.rawValue)")
        }
        if !scheme.isQuantized { group = 0 }
        if let g = scheme.fixedGroup { group = g }
        return SchemeChoice(scheme: scheme, group: group, note: notes.joined(separator: "; "))
    }
}

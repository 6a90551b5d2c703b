import Foundation
import Quant

/// Named conversion recipes (`qwen-quant convert --preset NAME`): a default scheme and a rule list,
/// chosen from the measured sensitivity of the text encoder (benchmarks/RESULTS.md, "Sensitivity"):
/// quantizing the first decoder layer alone to q4c costs as much accuracy as the other three layers of
/// the 4-layer cut together, and the attention k/v projections (0.8% of the weights each) as much as a
/// whole MLP projection (29%), so those get 8 bits first. The preset's rules come before the user's
/// `--rule`s, so a user rule still wins.
public struct ConversionPreset: Sendable {
    public let name: String
    public let summary: String
    public let scheme: PackScheme
    public let group: Int
    public let rules: [String]

    public static let all: [ConversionPreset] = [
        ConversionPreset(
            name: "q4-lean", summary: "q4c, with q8s for the first decoder layer and the attention k/v projections (4.56 bits/weight on the 7B text encoder)",
            scheme: .q4c, group: 32,
            rules: [#"^model\.layers\.0\."# + "=q8s", #"self_attn\.[kv]_proj\.weight$=q8s"#]),
        ConversionPreset(
            name: "q4-mix", summary: "q4c, with q8s for the first two decoder layers and the attention k/v projections (4.69 bits/weight on the 7B text encoder)",
            scheme: .q4c, group: 32,
            rules: [#"^model\.layers\.[01]\."# + "=q8s", #"self_attn\.[kv]_proj\.weight$=q8s"#]),
        ConversionPreset(
            name: "q8", summary: "q8s everywhere (8.375 bits/weight)",
            scheme: .q8s, group: 32, rules: []),
    ]

    public static func named(_ name: String) throws -> ConversionPreset {
        guard let p = all.first(where: { $0.name == name }) else {
            throw QuantError.invalidArgument("unknown preset '\(name)' (expected one of: \(all.map(\.name).joined(separator: ", ")))")
        }
        return p
    }
}

/// Upper bounds on the sizes a `config.json` may declare. The files are untrusted: a config with 10⁹
/// layers or a 2⁴⁰-wide hidden state must be refused before anything is sized by it. Each bound is
/// far above the largest real model of the family (Qwen2.5-VL-72B: 80 layers, hidden 8192, vocabulary
/// 152,064; the Qwen-Image VAE: base_dim 96, z_dim 16), so no real checkpoint comes near them.
enum ConfigLimits {
    static let layers = 1024
    static let width = 1 << 16          // hidden sizes, channel counts
    static let mlpWidth = 1 << 18       // intermediate sizes
    static let heads = 1024
    static let vocabulary = 1 << 22
    static let patch = 1024

    /// Throws naming the first field above its bound.
    static func check(_ fields: [(name: String, value: Int, limit: Int)], fail: (String) -> QwenImageError) throws {
        for f in fields where f.value > f.limit {
            throw fail("\(f.name) is \(f.value), above this build's limit of \(f.limit) (not a real model of this family: the file is corrupted?)")
        }
    }
}

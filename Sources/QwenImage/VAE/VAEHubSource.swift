import Foundation
import Kernels
import Quant

/// Serves pack-layout VAE tensors from hub-layout ones (diffusers names and shapes), applying the layout
/// transforms of docs/DESIGN.md on the fly. For tests (straight from the fixture checkpoint) and for
/// synthetic benchmark weights; `qwen-run` reads packs.
public final class HubVAESource: VAEWeightSource {
    /// Returns (shape, f32 values) of a hub tensor, or nil if missing.
    public typealias Fetch = (String) throws -> (shape: [Int], values: [Float])?
    private let fetch: Fetch
    public let scheme: qk_scheme
    public let group: Int32

    /// - Parameter scheme: how matrices are packed (conv weights); 1-D tensors are always f32.
    public init(scheme: qk_scheme = QK_F32, group: Int32 = 0, fetch: @escaping Fetch) {
        self.scheme = scheme
        self.group = group
        self.fetch = fetch
    }

    /// From a diffusers VAE folder (config.json + diffusion_pytorch_model.safetensors).
    public convenience init(checkpoint: CheckpointComponent, scheme: qk_scheme = QK_F32, group: Int32 = 0) {
        self.init(scheme: scheme, group: group) { name in
            guard checkpoint.contains(name) else { return nil }
            return (try checkpoint.info(name).shape, try checkpoint.floats(name))
        }
    }

    public func weight(_ name: String, rows: Int, cols: Int) throws -> Weight {
        let values = try matrix(name, rows: rows, cols: cols)
        return makeWeight(name, values, rows: rows, cols: cols, scheme: scheme, group: group)
    }

    /// The pack-layout matrix as f32.
    public func matrix(_ name: String, rows: Int, cols: Int) throws -> [Float] {
        var hubName = name
        var slice: Int?
        if let r = name.range(of: #"\.t[012]$"#, options: .regularExpression) {
            slice = Int(String(name[name.index(r.lowerBound, offsetBy: 2)]))!
            hubName = String(name[..<r.lowerBound])
        }
        guard let (shape, v) = try fetch(hubName) else {
            throw QwenImageError.tensor(name: hubName, message: "missing from the VAE checkpoint")
        }
        func bad() -> QwenImageError {
            .tensor(name: hubName, message: "expected a weight giving [\(rows), \(cols)] for \(name), found shape \(shape)")
        }
        guard shape.count >= 2, shape[0] == rows else { throw bad() }
        let cout = shape[0], cin = shape[1]
        let spatial = shape.count == 5 ? (shape[3], shape[4]) : shape.count == 4 ? (shape[2], shape[3]) : (1, 1)
        let kt = shape.count == 5 ? shape[2] : 1
        guard cin * spatial.0 * spatial.1 == cols, (slice == nil) == (kt == 1) else { throw bad() }
        let t = slice ?? 0
        let kk = spatial.0 * spatial.1
        var out = [Float](repeating: 0, count: rows * cols)
        // hub [cout, cin, kt, ky, kx] -> [cout, (ky, kx, cin)] for slice t.
        for o in 0..<cout {
            for c in 0..<cin {
                for k in 0..<kk {
                    out[o * cols + k * cin + c] = v[((o * cin + c) * kt + t) * kk + k]
                }
            }
        }
        return out
    }

    public func vector(_ name: String, count: Int) throws -> [Float] {
        guard let (shape, v) = try fetch(name) else {
            throw QwenImageError.tensor(name: name, message: "missing from the VAE checkpoint")
        }
        guard v.count == count else {
            throw QwenImageError.tensor(name: name, message: "expected \(count) values, found shape \(shape)")
        }
        return v
    }

    public func release(block: String) {}
}

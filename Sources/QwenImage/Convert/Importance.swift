import Foundation
import Quant

/// Per-input-column importance of weight matrices (`qwen-quant calibrate` writes it, `convert
/// --importance` reads it): a safetensors file with one f32 vector [k] per pack tensor name, the mean
/// square of that matrix's input over the calibration prompts. The packer then minimises the
/// importance-weighted squared error of each scale group instead of the plain one.
public struct ImportanceTable: Sendable {
    public let path: String
    public let vectors: [String: [Float]]
    public let metadata: [String: String]

    public static let producer = "qwen-quant calibrate"

    public init(vectors: [String: [Float]], path: String = "", metadata: [String: String] = [:]) {
        self.vectors = vectors
        self.path = path
        self.metadata = metadata
    }

    /// Reads and checks the file: every tensor a 1-D F32 vector of finite, non-negative values.
    public static func load(path: String) throws -> ImportanceTable {
        let f = try SafetensorsFile(path: path)
        var vectors: [String: [Float]] = [:]
        for name in f.tensorNames {
            let info = try f.info(name)
            guard info.shape.count == 1, info.dtype == .F32 else {
                throw QwenImageError.tensor(name: name, message: "\(path): an importance vector must be 1-D F32, found \(info.dtype) \(info.shape) (was this file written by qwen-quant calibrate?)")
            }
            let v = try f.floats(name)
            if let i = v.firstIndex(where: { !($0 >= 0) || !$0.isFinite }) {
                throw QwenImageError.tensor(name: name, message: "\(path): importance value \(i) is \(v[i]); expected finite values >= 0")
            }
            vectors[name] = v
        }
        guard !vectors.isEmpty else {
            throw QwenImageError.invalidInput("\(path): no importance vectors (expected the output of qwen-quant calibrate)")
        }
        return ImportanceTable(vectors: vectors, path: path, metadata: f.metadata)
    }

    /// The vector for a pack tensor [n, k], checked against k; nil when the table has none for it.
    public func vector(for name: String, k: Int) throws -> [Float]? {
        guard let v = vectors[name] else { return nil }
        guard v.count == k else {
            throw QwenImageError.tensor(name: name, message: "\(path): the importance vector has \(v.count) values, the tensor has \(k) input columns (calibrated on another model?)")
        }
        return v
    }
}

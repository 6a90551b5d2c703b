import Foundation

/// What the converter needs to know about one checkpoint tensor, whatever file it comes from.
public struct CheckpointTensorInfo: Sendable, Equatable {
    public let name: String
    /// The stored type as the file names it ("BF16", "F32", "Q4_K", ...).
    public let dtype: String
    /// PyTorch order.
    public let shape: [Int]
    /// Bytes the tensor occupies in its file(s).
    public let byteCount: Int
    /// Whether the values decode to floating point (F32, F16, BF16, and every ggml quantized type).
    public let isFloat: Bool
    public var elementCount: Int { shape.reduce(1, *) }

    public init(name: String, dtype: String, shape: [Int], byteCount: Int, isFloat: Bool) {
        self.name = name; self.dtype = dtype; self.shape = shape; self.byteCount = byteCount; self.isFloat = isFloat
    }
}

/// A file of checkpoint tensors under their Hugging Face names: a safetensors shard, or a GGUF file
/// seen through the llama.cpp -> Hugging Face name table (`GGUFCheckpointFile`).
public protocol CheckpointTensorFile: AnyObject, Sendable {
    /// The file (for messages and source hashes).
    var path: String { get }
    /// Tensor names in file order.
    var tensorNames: [String] { get }
    func tensorInfo(_ name: String) throws -> CheckpointTensorInfo
    /// Elements [range) of a tensor (flat, row-major PyTorch order) as f32 into `out`.
    func floats(_ name: String, elements: Range<Int>, into out: UnsafeMutablePointer<Float>) throws
    /// The pages holding elements [range) are no longer needed.
    func dropPages(_ name: String, elements: Range<Int>)
}

extension CheckpointTensorFile {
    /// A whole tensor as f32 (for small tensors).
    public func floats(_ name: String) throws -> [Float] {
        let n = try tensorInfo(name).elementCount
        return try [Float](unsafeUninitializedCapacity: n) { buf, count in
            try floats(name, elements: 0..<n, into: buf.baseAddress!)
            count = n
        }
    }
}

extension SafetensorsFile: CheckpointTensorFile {
    public func tensorInfo(_ name: String) throws -> CheckpointTensorInfo {
        let i = try info(name)
        return CheckpointTensorInfo(name: name, dtype: i.dtype.rawValue, shape: i.shape, byteCount: i.byteCount, isFloat: i.dtype.isFloat)
    }

    public func dropPages(_ name: String, elements range: Range<Int>) {
        guard let i = tensors[name] else { return }
        mapped.advise(i.offset + range.lowerBound * i.dtype.byteSize, range.count * i.dtype.byteSize, willNeed: false)
    }
}

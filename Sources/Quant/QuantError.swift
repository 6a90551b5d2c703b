/// Errors of the Quant module. Every message names the file or tensor, what was expected and what
/// was found, and how to fix it when that is not obvious.
public enum QuantError: Error, CustomStringConvertible, Equatable {
    /// A file could not be opened, read, mapped or written.
    case io(path: String, message: String)
    /// A safetensors file is malformed (header, offsets, sizes). `tensor` is nil for file-level faults.
    case safetensors(file: String, tensor: String?, message: String)
    /// A GGUF file is malformed (header, metadata, tensor infos). `tensor` is nil for file-level faults.
    case gguf(file: String, tensor: String?, message: String)
    /// A tensor uses a dtype this reader does not handle.
    case unsupportedDType(file: String, tensor: String, dtype: String)
    /// A `*.safetensors.index.json` is missing, unreadable or inconsistent with the shard files.
    case index(file: String, message: String)
    /// A checkpoint folder does not have the expected layout.
    case layout(path: String, message: String)
    /// A tensor is not where it should be.
    case missingTensor(file: String, tensor: String)
    /// A tensor a model asks for is missing or does not fit the request (tensor sources).
    case tensor(name: String, message: String)
    /// A tensor has the wrong shape.
    case shape(file: String, tensor: String, expected: [Int], found: [Int])
    /// A pack (manifest, shard) is malformed.
    case pack(path: String, message: String)
    /// A payload's checksum does not match its record: the file is corrupted.
    case checksum(file: String, tensor: String, expected: String, found: String)
    /// The pack has no such component.
    case missingComponent(pack: String, component: String, available: [String])
    /// A zstd frame could not be compressed or decompressed.
    case zstd(file: String, tensor: String, message: String)
    /// A bad option or argument (unknown scheme, group size, rule, ...).
    case invalidArgument(String)
    /// An output cannot be written (exists without --force, no parent folder, rename failed).
    case output(String)
    /// A value cannot be represented (e.g. a tensor that is not a matrix asked for as a Weight).
    case unsupported(String)

    public var description: String {
        switch self {
        case .io(let path, let message): return "\(path): \(message)"
        case .safetensors(let file, let tensor, let message):
            if let t = tensor { return "\(file): tensor \(t): \(message)" }
            return "\(file): \(message)"
        case .gguf(let file, let tensor, let message):
            if let t = tensor { return "\(file): tensor \(t): \(message)" }
            return "\(file): \(message)"
        case .unsupportedDType(let file, let tensor, let dtype):
            return "\(file): tensor \(tensor): unsupported dtype \(dtype) "
                + "(supported: F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL)"
        case .index(let file, let message): return "\(file): \(message)"
        case .layout(let path, let message): return "\(path): \(message)"
        case .missingTensor(let file, let tensor): return "\(file): tensor \(tensor) is missing"
        case .tensor(let name, let message): return "tensor \(name): \(message)"
        case .shape(let file, let tensor, let expected, let found):
            return "\(file): tensor \(tensor): expected shape \(expected), found \(found)"
        case .pack(let path, let message): return "\(path): \(message)"
        case .checksum(let file, let tensor, let expected, let found):
            return "\(file): tensor \(tensor): checksum mismatch (expected \(expected), found \(found)); "
                + "the pack is corrupted, convert it again"
        case .missingComponent(let pack, let component, let available):
            return "\(pack): the pack has no \(component) component (it has: "
                + "\(available.isEmpty ? "none" : available.joined(separator: ", ")))"
        case .zstd(let file, let tensor, let message): return "\(file): tensor \(tensor): zstd: \(message)"
        case .invalidArgument(let message): return message
        case .unsupported(let message): return message
        case .output(let message): return message
        }
    }
}

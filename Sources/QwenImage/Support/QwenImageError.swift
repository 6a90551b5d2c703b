/// Errors of the QwenImage module. Every message names the file, tensor or option, what was expected
/// and what was found, and how to fix it when that is not obvious.
public enum QwenImageError: Error, CustomStringConvertible, Equatable {
    /// A config.json field is missing or invalid.
    case config(file: String, message: String)
    /// A tensor is missing or has the wrong shape / dtype for the config.
    case tensor(name: String, message: String)
    /// An image file cannot be read or is not acceptable.
    case image(path: String, message: String)
    /// A prompt, option or input value is invalid.
    case invalidInput(String)
    /// The pack lacks a component this command needs.
    case missingComponent(pack: String, component: String, hint: String)
    /// A memory budget (--max-ram) cannot be met.
    case budget(String)
    /// A file could not be read or written.
    case io(path: String, message: String)

    public var description: String {
        switch self {
        case .config(let file, let message): return "\(file): \(message)"
        case .tensor(let name, let message): return "tensor \(name): \(message)"
        case .image(let path, let message): return "\(path): \(message)"
        case .invalidInput(let message): return message
        case .missingComponent(let pack, let component, let hint):
            return "\(pack): the pack has no \(component) component. \(hint)"
        case .budget(let message): return message
        case .io(let path, let message): return "\(path): \(message)"
        }
    }
}

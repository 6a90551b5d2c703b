import Quant

extension JSONScanner {
    /// A scanner whose errors are `QwenImageError.config` naming `file` (tokenizer files, prompts files).
    init(_ bytes: UnsafeBufferPointer<UInt8>, file: String) {
        self.init(bytes, file: file, makeError: { QwenImageError.config(file: file, message: $0) })
    }
}

import Foundation
import Quant

/// `--prompts-file`: JSON Lines, one JSON string (a prompt) per line. Blank lines are skipped.
public enum PromptsFile {
    /// Largest prompts file read (about 4 million prompts of 256 characters).
    public static let maxFileBytes = 1 << 30
    /// Longest prompt accepted, in UTF-8 bytes: the pipelines truncate at 1,024 tokens (a few KB of text);
    /// a multi-megabyte "prompt" is a wrong file, not a prompt.
    public static let maxPromptBytes = 1 << 20

    /// Parses the file's bytes; `path` names it in errors, which also give the 1-based line number.
    public static func parse(_ data: Data, path: String) throws -> [String] {
        var prompts: [String] = []
        let bytes = [UInt8](data)
        var lineStart = 0
        var lineNumber = 0
        while lineStart <= bytes.count {
            lineNumber += 1
            var lineEnd = lineStart
            while lineEnd < bytes.count && bytes[lineEnd] != 0x0A { lineEnd += 1 }
            var slice = bytes[lineStart ..< lineEnd]
            if slice.last == 0x0D { slice = slice.dropLast() }
            defer { lineStart = lineEnd + 1 }
            guard let line = String(validating: slice, as: UTF8.self) else {
                throw QwenImageError.invalidInput("\(path): line \(lineNumber) is not valid UTF-8")
            }
            if line.allSatisfy(\.isWhitespace) { continue }
            guard slice.count <= maxPromptBytes else {
                throw QwenImageError.invalidInput("\(path): line \(lineNumber) is \(slice.count) bytes long; a prompt may have at most \(maxPromptBytes) bytes")
            }
            // JSONScanner, not JSONSerialization: the latter drops a U+FEFF that starts a string.
            let value: String? = slice.withUnsafeBufferPointer { buf in
                var scanner = JSONScanner(buf, file: path)
                guard scanner.peek() == UInt8(ascii: "\""), let s = try? scanner.string(), (try? scanner.end()) != nil else { return nil }
                return s
            }
            guard let prompt = value else {
                let shown = line.count > 60 ? String(line.prefix(60)) + "…" : line
                throw QwenImageError.invalidInput("\(path): line \(lineNumber): expected a JSON string such as \"a red fox in the snow\", found \(shown)")
            }
            guard !prompt.isEmpty else {
                throw QwenImageError.invalidInput("\(path): line \(lineNumber): the prompt is empty")
            }
            prompts.append(prompt)
        }
        guard !prompts.isEmpty else {
            throw QwenImageError.invalidInput("\(path): no prompts (expected one JSON string per line)")
        }
        return prompts
    }
}

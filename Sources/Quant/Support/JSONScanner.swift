import Foundation

/// A small strict JSON reader over UTF-8 bytes, for tokenizer files and safetensors headers.
/// Foundation's JSONSerialization takes about a second on Qwen2's 7 MB `tokenizer.json` (and drops a
/// U+FEFF that starts a string), and most of that file is one object of 151,643 tokens and one array
/// of 151,387 merges: this reader streams those two straight into the BPE tables (`members`,
/// `elements`, `stringBytes`) and builds ordinary values (`value()`: String, Int, Double, Bool,
/// NSNull, [Any], [String: Any]) for the rest.
///
/// Untrusted input: nesting is limited to `maxDepth` (no stack overflow on `[[[[...`), and an object
/// with the same key twice is an error (JSONSerialization keeps the last one silently).
package struct JSONScanner {
    /// Deepest nesting `value()` accepts; real files nest a few levels.
    package static let maxDepth = 128

    package let bytes: UnsafeBufferPointer<UInt8>
    package let file: String
    package var pos = 0
    private var depth = 0
    private let makeError: (String) -> Error

    /// `makeError` turns a message ("not valid JSON: ... at line L (byte B)") into the caller's error.
    package init(_ bytes: UnsafeBufferPointer<UInt8>, file: String, makeError: @escaping (String) -> Error) {
        self.bytes = bytes
        self.file = file
        self.makeError = makeError
        if bytes.count >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF { pos = 3 }   // BOM
    }

    package func fail(_ what: String) -> Error {
        // Report a line number: the files are big, offsets alone are hard to use.
        var line = 1
        for i in 0..<min(pos, bytes.count) where bytes[i] == 0x0A { line += 1 }
        return makeError("not valid JSON: \(what) at line \(line) (byte \(pos))")
    }

    @inline(__always) package mutating func skipSpace() {
        while pos < bytes.count {
            let c = bytes[pos]
            if c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { pos += 1 } else { break }
        }
    }

    @inline(__always) package mutating func peek() -> UInt8? {
        skipSpace()
        return pos < bytes.count ? bytes[pos] : nil
    }

    package mutating func expect(_ c: UInt8) throws {
        guard peek() == c else {
            throw fail("expected '\(Character(Unicode.Scalar(c)))'" + (pos < bytes.count ? "" : ", found the end"))
        }
        pos += 1
    }

    /// Requires that only whitespace follows.
    package mutating func end() throws {
        if peek() != nil { throw fail("unexpected data after the top-level value") }
    }

    /// Calls `body` for each member of an object with the key's UTF-8 bytes; `body` must consume the value.
    package mutating func members(_ body: (inout JSONScanner, UnsafeBufferPointer<UInt8>) throws -> Void) throws {
        try expect(UInt8(ascii: "{"))
        if peek() == UInt8(ascii: "}") { pos += 1; return }
        var key: [UInt8] = []
        while true {
            guard peek() == UInt8(ascii: "\"") else { throw fail("expected a string key") }
            key.removeAll(keepingCapacity: true)
            try stringBytes(into: &key)
            try expect(UInt8(ascii: ":"))
            try key.withUnsafeBufferPointer { try body(&self, $0) }
            guard let c = peek() else { throw fail("unterminated object") }
            pos += 1
            if c == UInt8(ascii: "}") { return }
            if c != UInt8(ascii: ",") { throw fail("expected ',' or '}'") }
        }
    }

    /// Calls `body` for each element of an array; `body` must consume the element.
    package mutating func elements(_ body: (inout JSONScanner) throws -> Void) throws {
        try expect(UInt8(ascii: "["))
        if peek() == UInt8(ascii: "]") { pos += 1; return }
        while true {
            try body(&self)
            guard let c = peek() else { throw fail("unterminated array") }
            pos += 1
            if c == UInt8(ascii: "]") { return }
            if c != UInt8(ascii: ",") { throw fail("expected ',' or ']'") }
        }
    }

    /// Appends the unescaped UTF-8 bytes of a string value to `out`.
    package mutating func stringBytes(into out: inout [UInt8]) throws {
        try expect(UInt8(ascii: "\""))
        while true {
            guard pos < bytes.count else { throw fail("unterminated string") }
            let c = bytes[pos]
            pos += 1
            if c == UInt8(ascii: "\"") { return }
            if c < 0x20 { throw fail("control character in a string") }
            if c != UInt8(ascii: "\\") { out.append(c); continue }
            guard pos < bytes.count else { throw fail("unterminated escape") }
            let e = bytes[pos]
            pos += 1
            switch e {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var v = try hex4()
                if (0xD800..<0xDC00).contains(v) {
                    // A surrogate pair \uD83D\uDE00.
                    guard pos + 1 < bytes.count, bytes[pos] == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u") else {
                        throw fail("unpaired surrogate escape")
                    }
                    pos += 2
                    let low = try hex4()
                    guard (0xDC00..<0xE000).contains(low) else { throw fail("unpaired surrogate escape") }
                    v = 0x10000 + ((v - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00..<0xE000).contains(v) {
                    throw fail("unpaired surrogate escape")
                }
                out.append(contentsOf: Array(String(Unicode.Scalar(v)!).utf8))
            default:
                throw fail("invalid escape \\\(Character(Unicode.Scalar(e)))")
            }
        }
    }

    private mutating func hex4() throws -> UInt32 {
        guard pos + 4 <= bytes.count else { throw fail("short \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[pos]
            pos += 1
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            case 0x61...0x66: d = UInt32(c - 0x61 + 10)
            default: throw fail("invalid \\u escape")
            }
            v = v << 4 | d
        }
        return v
    }

    package mutating func string() throws -> String {
        var out: [UInt8] = []
        try stringBytes(into: &out)
        guard let s = String(validating: out, as: UTF8.self) else { throw fail("string is not valid UTF-8") }
        return s
    }

    /// A number; Int when it has no fraction or exponent and fits, else Double.
    package mutating func number() throws -> Any {
        skipSpace()
        let start = pos
        var integral = true
        if pos < bytes.count && bytes[pos] == UInt8(ascii: "-") { pos += 1 }
        while pos < bytes.count {
            let c = bytes[pos]
            if c >= 0x30 && c <= 0x39 { pos += 1; continue }
            if c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E") || c == UInt8(ascii: "+")
                || c == UInt8(ascii: "-") { integral = false; pos += 1; continue }
            break
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<pos]), as: UTF8.self)
        if integral, let i = Int(text) { return i }
        guard let d = Double(text), text.first != "+" else { pos = start; throw fail("invalid number") }
        return d
    }

    /// A non-negative integer that fits in Int32 (token ids).
    package mutating func tokenID() throws -> Int {
        skipSpace()
        var v = 0
        let start = pos
        while pos < bytes.count, bytes[pos] >= 0x30, bytes[pos] <= 0x39, v <= Int(Int32.max) {
            v = v * 10 + Int(bytes[pos] - 0x30)
            pos += 1
        }
        if pos == start || v > Int(Int32.max) || (pos < bytes.count && [0x2E, 0x65, 0x45].contains(bytes[pos])) {
            pos = start
            throw fail("expected a non-negative integer token id")
        }
        return v
    }

    /// Any value, as Foundation-style objects.
    package mutating func value() throws -> Any {
        guard let c = peek() else { throw fail("unexpected end of data") }
        switch c {
        case UInt8(ascii: "{"):
            try enter()
            var dict: [String: Any] = [:]
            try members { s, key in
                guard let k = String(validating: key, as: UTF8.self) else { throw s.fail("key is not valid UTF-8") }
                guard dict[k] == nil else { throw s.fail("key \"\(k)\" appears twice in one object") }
                dict[k] = try s.value()
            }
            depth -= 1
            return dict
        case UInt8(ascii: "["):
            try enter()
            var array: [Any] = []
            try elements { s in array.append(try s.value()) }
            depth -= 1
            return array
        case UInt8(ascii: "\""): return try string()
        case UInt8(ascii: "t"): try literal("true"); return true
        case UInt8(ascii: "f"): try literal("false"); return false
        case UInt8(ascii: "n"): try literal("null"); return NSNull()
        default: return try number()
        }
    }

    private mutating func enter() throws {
        guard depth < Self.maxDepth else { throw fail("nested deeper than \(Self.maxDepth) levels") }
        depth += 1
    }

    private mutating func literal(_ word: StaticString) throws {
        let n = word.utf8CodeUnitCount
        guard pos + n <= bytes.count else { throw fail("invalid literal") }
        for i in 0..<n where bytes[pos + i] != word.utf8Start[i] { throw fail("invalid literal") }
        pos += n
    }
}

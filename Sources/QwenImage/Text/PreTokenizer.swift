/// Qwen2's pre-tokenizer: the `Split` step of `tokenizer.json` (behaviour `Isolated`) with the pattern
///
///     (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
///
/// written out by hand as a scanner over Unicode scalars (no regex engine: it is on the hot path and the
/// pattern is fixed). Each branch below is commented with the alternative it implements; the
/// alternatives are tried in order at every position, as Oniguruma does (leftmost, first alternative
/// that matches, greedy quantifiers with backtracking). Every scalar is a letter, a number,
/// whitespace or "other", so some alternative always matches and the pieces cover the text.
enum Qwen2PreTokenizer {
    /// The pattern as it appears in Qwen2's `tokenizer.json`; a tokenizer with another pattern is refused.
    static let pattern = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// Character classes of the pattern. `newline` (CR, LF) is also whitespace.
    enum CharClass: UInt8 {
        case other = 0, letter, number, space, newline
    }

    /// `\p{L}` = general category L*, `\p{N}` = N*, `\s` = the Unicode White_Space property
    /// (what Oniguruma uses for `\s` on Unicode strings).
    @inline(__always)
    static func classify(_ s: Unicode.Scalar) -> CharClass {
        let v = s.value
        if v < 128 { return asciiClasses[Int(v)] }
        let p = s.properties
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            return .letter
        case .decimalNumber, .letterNumber, .otherNumber:
            return .number
        default:
            return p.isWhitespace ? .space : .other
        }
    }

    static let asciiClasses: [CharClass] = (0..<128).map { v -> CharClass in
        let s = Unicode.Scalar(UInt8(v))
        switch v {
        case 0x0A, 0x0D: return .newline
        case 0x09, 0x0B, 0x0C, 0x20: return .space
        case 0x30...0x39: return .number
        case 0x41...0x5A, 0x61...0x7A: return .letter
        default: return s.properties.isWhitespace ? .space : .other
        }
    }

    /// Lower-cases the letters of the contractions for the `(?i:...)` group. `ſ` (U+017F, long s)
    /// case-folds to `s` under Unicode simple case folding, as Oniguruma applies it.
    @inline(__always)
    static func foldASCII(_ v: UInt32) -> UInt32 {
        if v >= 0x41 && v <= 0x5A { return v + 32 }
        if v == 0x17F { return 0x73 }
        return v
    }

    /// Splits `scalars` (classes in `classes`) into pieces; calls `body(start, end)` for each piece in order.
    static func split(_ scalars: UnsafeBufferPointer<Unicode.Scalar>, _ classes: UnsafeBufferPointer<CharClass>,
                      _ body: (Int, Int) -> Void) {
        let n = scalars.count
        var i = 0
        while i < n {
            let end = pieceEnd(at: i, scalars, classes)
            body(i, end)
            i = end
        }
    }

    /// The end (exclusive) of the piece that starts at `i`.
    @inline(__always)
    static func pieceEnd(at i: Int, _ s: UnsafeBufferPointer<Unicode.Scalar>,
                         _ cls: UnsafeBufferPointer<CharClass>) -> Int {
        let n = s.count
        let c = cls[i]

        // (?i:'s|'t|'re|'ve|'m|'ll|'d)
        if s[i].value == 0x27 && i + 1 < n {
            let a = foldASCII(s[i + 1].value)
            if a == 0x73 || a == 0x74 || a == 0x6D || a == 0x64 { return i + 2 }   // s t m d
            if i + 2 < n {
                let b = foldASCII(s[i + 2].value)
                if (a == 0x72 && b == 0x65) || (a == 0x76 && b == 0x65) || (a == 0x6C && b == 0x6C) {
                    return i + 3                                                    // re ve ll
                }
            }
        }

        // [^\r\n\p{L}\p{N}]?\p{L}+
        if c == .letter { return endOfRun(.letter, from: i + 1, cls) }
        if (c == .other || c == .space) && i + 1 < n && cls[i + 1] == .letter {
            return endOfRun(.letter, from: i + 2, cls)
        }

        // \p{N}
        if c == .number { return i + 1 }

        // ' '?[^\s\p{L}\p{N}]+[\r\n]*
        var j = i
        if s[i].value == 0x20 && i + 1 < n && cls[i + 1] == .other { j = i + 1 }
        if cls[j] == .other {
            j = endOfRun(.other, from: j + 1, cls)
            while j < n && cls[j] == .newline { j += 1 }
            return j
        }

        // Only whitespace is left: c is .space or .newline.
        var wsEnd = i + 1
        var lastNewline = c == .newline ? i : -1
        while wsEnd < n {
            let k = cls[wsEnd]
            if k == .newline { lastNewline = wsEnd } else if k != .space { break }
            wsEnd += 1
        }
        // \s*[\r\n]+ : backtracking \s* leaves the match ending after the last CR/LF of the run.
        if lastNewline >= 0 { return lastNewline + 1 }
        // \s+(?!\S) : the whole run at the end of the text, else the run minus its last character.
        if wsEnd == n { return n }
        if wsEnd - i >= 2 { return wsEnd - 1 }
        // \s+
        return wsEnd
    }

    @inline(__always)
    static func endOfRun(_ k: CharClass, from start: Int, _ cls: UnsafeBufferPointer<CharClass>) -> Int {
        var j = start
        while j < cls.count && cls[j] == k { j += 1 }
        return j
    }
}

import Foundation

/// Qwen2's tokenizer (byte-level BPE), as `tokenizers` runs the `tokenizer.json` of Qwen2.5-VL:
///
/// 1. added tokens (`<|endoftext|>`, `<|im_start|>`, ..., special or not) are found in the raw text
///    first, leftmost-longest, also inside user text, and become their ids;
/// 2. every stretch of text between them is NFC-normalized, split by Qwen2's pre-tokenizer pattern
///    (`Qwen2PreTokenizer`), mapped byte by byte to GPT-2's printable characters and BPE-merged.
///
/// No BOS/EOS or other tokens are added. Encoding never fails: every byte has a token.
/// Loading: `tokenizer.json`, or `vocab.json` + `merges.txt` + the added tokens of
/// `tokenizer_config.json` (both give the same ids; see `TokenizerLoading.swift`).
public final class Qwen2Tokenizer: @unchecked Sendable {
    public struct AddedToken: Sendable, Equatable {
        public var id: Int
        public var content: String
        public var special: Bool
    }

    let bpe: BytePairEncoding
    /// Added tokens, by id.
    public let addedTokens: [AddedToken]
    /// Added tokens by first UTF-8 byte, longest first (for leftmost-longest matching).
    private let addedByFirstByte: [[(bytes: [UInt8], id: Int)]]
    private let addedByContent: [String: Int]
    private let addedByID: [Int: String]

    init(bpe: BytePairEncoding, addedTokens: [AddedToken], source: String) throws {
        self.bpe = bpe
        let sorted = addedTokens.sorted { $0.id < $1.id }
        self.addedTokens = sorted
        var buckets = [[(bytes: [UInt8], id: Int)]](repeating: [], count: 256)
        var byContent: [String: Int] = [:]
        var byID: [Int: String] = [:]
        for t in sorted {
            guard !t.content.isEmpty else {
                throw QwenImageError.config(file: source, message: "added token \(t.id) has empty content")
            }
            if let other = byID[t.id], other != t.content {
                throw QwenImageError.config(file: source,
                    message: "added tokens \"\(other)\" and \"\(t.content)\" share id \(t.id)")
            }
            if let bpeToken = bpe.token(for: t.id), bpeToken != t.content {
                throw QwenImageError.config(file: source,
                    message: "added token \"\(t.content)\" has id \(t.id), which the BPE vocabulary already gives to "
                        + "\"\(bpeToken)\"; expected added-token ids after the vocabulary")
            }
            byContent[t.content] = t.id
            byID[t.id] = t.content
            let bytes = Array(t.content.utf8)
            buckets[Int(bytes[0])].append((bytes, t.id))
        }
        for i in 0..<256 { buckets[i].sort { $0.bytes.count > $1.bytes.count } }
        addedByFirstByte = buckets
        addedByContent = byContent
        addedByID = byID
    }

    // MARK: - Queries

    /// The id of an added token or vocabulary token, e.g. `tokenID("<|im_start|>")`.
    public func tokenID(_ content: String) -> Int? {
        addedByContent[content] ?? bpe.id(of: content)
    }

    /// The padding token of the pipelines (`<|endoftext|>`, padding on the right).
    public var padTokenID: Int? { tokenID("<|endoftext|>") }

    /// One more than the largest id (BPE vocabulary and added tokens).
    public var idLimit: Int {
        max(bpe.maxID, addedByID.keys.max() ?? -1) + 1
    }

    /// The token string of an id (byte-level characters for BPE tokens, the content for added ones).
    public func token(for id: Int) -> String? { addedByID[id] ?? bpe.token(for: id) }

    // MARK: - Encoding

    /// Token ids of `text`, with no tokens added.
    public func encode(_ text: String) -> [Int] {
        var ids: [Int] = []
        ids.reserveCapacity(text.utf8.count / 3 + 8)
        var text = text
        text.withUTF8 { utf8 in
            var segmentStart = 0
            var i = 0
            let n = utf8.count
            while i < n {
                if let (length, id) = addedToken(at: i, utf8) {
                    if segmentStart < i { encodeText(UnsafeBufferPointer(rebasing: utf8[segmentStart..<i]), into: &ids) }
                    ids.append(id)
                    i += length
                    segmentStart = i
                } else {
                    i += 1
                }
            }
            if segmentStart < n { encodeText(UnsafeBufferPointer(rebasing: utf8[segmentStart..<n]), into: &ids) }
        }
        return ids
    }

    /// The longest added token starting at byte `i`, if any.
    @inline(__always)
    private func addedToken(at i: Int, _ utf8: UnsafeBufferPointer<UInt8>) -> (Int, Int)? {
        let candidates = addedByFirstByte[Int(utf8[i])]
        if candidates.isEmpty { return nil }
        outer: for c in candidates {
            let len = c.bytes.count
            if i + len > utf8.count { continue }
            for k in 1..<len where utf8[i + k] != c.bytes[k] { continue outer }
            return (len, c.id)
        }
        return nil
    }

    /// Normalizes, pre-tokenizes and BPE-encodes a stretch of text holding no added token.
    private func encodeText(_ utf8: UnsafeBufferPointer<UInt8>, into ids: inout [Int]) {
        var isASCII = true
        for b in utf8 where b >= 0x80 { isASCII = false; break }
        let raw = String(decoding: utf8, as: UTF8.self)
        // NFC (the `normalizer` of tokenizer.json); ASCII is already in NFC.
        let text = isASCII ? raw : raw.precomposedStringWithCanonicalMapping
        let scalars = Array(text.unicodeScalars)
        let classes = scalars.map(Qwen2PreTokenizer.classify)
        var piece: [UInt8] = []
        piece.reserveCapacity(64)
        scalars.withUnsafeBufferPointer { s in
            classes.withUnsafeBufferPointer { c in
                Qwen2PreTokenizer.split(s, c) { start, end in
                    piece.removeAll(keepingCapacity: true)
                    for k in start..<end { appendUTF8(s[k], to: &piece) }
                    bpe.encodePiece(piece, into: &ids)
                }
            }
        }
    }

    @inline(__always)
    private func appendUTF8(_ s: Unicode.Scalar, to out: inout [UInt8]) {
        let v = s.value
        if v < 0x80 {
            out.append(UInt8(v))
        } else if v < 0x800 {
            out.append(UInt8(0xC0 | (v >> 6))); out.append(UInt8(0x80 | (v & 0x3F)))
        } else if v < 0x10000 {
            out.append(UInt8(0xE0 | (v >> 12))); out.append(UInt8(0x80 | ((v >> 6) & 0x3F)))
            out.append(UInt8(0x80 | (v & 0x3F)))
        } else {
            out.append(UInt8(0xF0 | (v >> 18))); out.append(UInt8(0x80 | ((v >> 12) & 0x3F)))
            out.append(UInt8(0x80 | ((v >> 6) & 0x3F))); out.append(UInt8(0x80 | (v & 0x3F)))
        }
    }

    // MARK: - Decoding

    /// The text of `ids` (added tokens written as their content). Unknown ids throw.
    public func decode(_ ids: [Int]) throws -> String {
        var bytes: [UInt8] = []
        for id in ids {
            if let content = addedByID[id] {
                bytes.append(contentsOf: Array(content.utf8))
            } else if !bpe.appendBytes(of: id, to: &bytes) {
                throw QwenImageError.invalidInput("token id \(id) is not in the vocabulary (0..<\(idLimit))")
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

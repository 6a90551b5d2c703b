import Foundation

/// GPT-2 style byte-level BPE: the vocabulary, the merge table and a cache of encoded pieces.
/// Mirrors `tokenizers`' `models::bpe::BPE` with `ignore_merges: false`, no dropout, no byte fallback,
/// no continuing-subword prefix and no end-of-word suffix (Qwen2's settings).
final class BytePairEncoding: @unchecked Sendable {
    /// Token string (byte-level characters) -> id, and back.
    let vocab: [String: Int]
    let idToToken: [Int: String]
    /// Id of each byte's single-character token.
    let byteIDs: [Int32]
    /// (left id, right id) packed as `left << 32 | right` -> merge rank and merged id.
    private let merges: [UInt64: Merge]

    struct Merge { var rank: Int32; var id: Int32 }

    private let cacheLock = NSLock()
    private var cache: [[UInt8]: [Int32]] = [:]
    private static let cacheCapacity = 65_536

    /// - Parameters:
    ///   - merges: pairs of token strings in rank order (rank 0 first).
    ///   - source: the file name used in error messages.
    init(vocab: [String: Int], merges: [(String, String)], source: String) throws {
        self.vocab = vocab
        var reverse: [Int: String] = [:]
        reverse.reserveCapacity(vocab.count)
        for (token, id) in vocab {
            if let other = reverse[id] {
                throw QwenImageError.config(file: source,
                    message: "tokens \"\(other)\" and \"\(token)\" share id \(id); expected one token per id")
            }
            reverse[id] = token
        }
        idToToken = reverse

        var bytes = [Int32](repeating: -1, count: 256)
        for b in 0..<256 {
            let ch = String(ByteLevel.byteToScalar[b])
            guard let id = vocab[ch] else {
                throw QwenImageError.config(file: source,
                    message: "the vocabulary lacks the byte-level token \"\(ch)\" for byte 0x\(String(b, radix: 16)); "
                        + "expected all 256 byte tokens (is this a byte-level BPE tokenizer?)")
            }
            bytes[b] = Int32(id)
        }
        byteIDs = bytes

        var table: [UInt64: Merge] = [:]
        table.reserveCapacity(merges.count)
        for (rank, (a, b)) in merges.enumerated() {
            guard let ia = vocab[a], let ib = vocab[b] else {
                throw QwenImageError.config(file: source,
                    message: "merge \(rank) \"\(a) \(b)\": \(vocab[a] == nil ? a : b) is not in the vocabulary")
            }
            guard let merged = vocab[a + b] else {
                throw QwenImageError.config(file: source,
                    message: "merge \(rank) \"\(a) \(b)\": the merged token \"\(a + b)\" is not in the vocabulary")
            }
            let key = UInt64(UInt32(ia)) << 32 | UInt64(UInt32(ib))
            // A pair listed twice keeps its last rank, as `tokenizers` collects its merge map.
            table[key] = Merge(rank: Int32(rank), id: Int32(merged))
        }
        self.merges = table
    }

    /// Appends the ids of one pre-tokenized piece (its UTF-8 bytes) to `out`.
    func encodePiece(_ bytes: [UInt8], into out: inout [Int]) {
        if bytes.count == 1 { out.append(Int(byteIDs[Int(bytes[0])])); return }
        cacheLock.lock()
        let hit = cache[bytes]
        cacheLock.unlock()
        if let hit {
            for id in hit { out.append(Int(id)) }
            return
        }
        let ids = merge(bytes)
        cacheLock.lock()
        if cache.count >= Self.cacheCapacity { cache.removeAll(keepingCapacity: true) }
        cache[bytes] = ids
        cacheLock.unlock()
        for id in ids { out.append(Int(id)) }
    }

    /// Applies the merges to one piece: repeatedly merges the adjacent pair of lowest rank (leftmost
    /// on ties), as `tokenizers`' `Word::merge_all` does with its priority queue.
    private func merge(_ bytes: [UInt8]) -> [Int32] {
        var symbols = bytes.map { byteIDs[Int($0)] }
        // ranks[i]: rank of the pair (symbols[i], symbols[i+1]), Int32.max if it is no merge.
        var ranks = [Int32](repeating: .max, count: max(symbols.count - 1, 0))
        var mergedIDs = [Int32](repeating: -1, count: ranks.count)
        @inline(__always) func lookup(_ i: Int) {
            let key = UInt64(UInt32(bitPattern: symbols[i])) << 32 | UInt64(UInt32(bitPattern: symbols[i + 1]))
            if let m = merges[key] { ranks[i] = m.rank; mergedIDs[i] = m.id } else { ranks[i] = .max }
        }
        for i in 0..<ranks.count { lookup(i) }
        while !ranks.isEmpty {
            var best = 0
            var bestRank = Int32.max
            for i in 0..<ranks.count where ranks[i] < bestRank { best = i; bestRank = ranks[i] }
            if bestRank == .max { break }
            symbols[best] = mergedIDs[best]
            symbols.remove(at: best + 1)
            ranks.remove(at: best)
            mergedIDs.remove(at: best)
            if best > 0 { lookup(best - 1) }
            if best < ranks.count { lookup(best) }
        }
        return symbols
    }
}

/// GPT-2's reversible map between bytes and printable Unicode characters (`bytes_to_unicode`):
/// printable Latin-1 bytes map to themselves, the other 68 to U+0100 onwards in byte order.
enum ByteLevel {
    static let byteToScalar: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
            if printable {
                table[b] = Unicode.Scalar(UInt32(b))!
            } else {
                table[b] = Unicode.Scalar(next)!
                next += 1
            }
        }
        return table
    }()

    static let scalarToByte: [UInt32: UInt8] = {
        var map: [UInt32: UInt8] = [:]
        for (b, s) in byteToScalar.enumerated() { map[s.value] = UInt8(b) }
        return map
    }()
}

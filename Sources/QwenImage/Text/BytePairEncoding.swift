import Foundation

/// GPT-2 style byte-level BPE: the vocabulary, the merge table and a cache of encoded pieces.
/// Mirrors `tokenizers`' `models::bpe::BPE` with `ignore_merges: false`, no dropout, no byte fallback,
/// no continuing-subword prefix and no end-of-word suffix (Qwen2's settings).
///
/// Tokens are keyed by their raw bytes (the byte-level characters mapped back), in a flat table: with
/// 151k tokens, String keys cost most of the load time (hashing non-ASCII Strings normalizes them).
final class BytePairEncoding: @unchecked Sendable {
    /// Raw token bytes -> id.
    private let table: ByteStringTable
    /// Per id: the entry in `table` holding its bytes, or -1 (no byte-level token with this id).
    private let entryOfID: [Int32]
    /// Vocabulary tokens that are not byte-level strings (never produced by merging bytes; kept for decode).
    let otherTokens: [Int: String]
    /// Id of each byte's single-character token.
    let byteIDs: [Int32]
    /// (left id, right id) packed as `left << 32 | right` -> merge rank and merged id.
    private let merges: [UInt64: Merge]

    struct Merge { var rank: Int32; var id: Int32 }

    private let cacheLock = NSLock()
    private var cache: [[UInt8]: [Int32]] = [:]
    private static let cacheCapacity = 65_536

    init(vocabulary v: Vocabulary, merges list: MergeList, source: String) throws {
        table = v.table
        otherTokens = v.otherTokens
        guard v.table.count > 0 else {
            throw QwenImageError.config(file: source, message: "the vocabulary is empty")
        }
        // The id table is sized by the largest id, which comes from the file: bound it by the token
        // count so one crafted id near Int32.max cannot ask for gigabytes (real vocabularies are dense).
        let tokenCount = v.table.count + v.otherTokens.count
        guard v.maxID < 2 * tokenCount + 65_536 else {
            throw QwenImageError.config(file: source,
                message: "token id \(v.maxID) is far beyond the \(tokenCount) tokens of the vocabulary; "
                    + "expected ids below \(2 * tokenCount + 65_536) (the file is corrupted)")
        }
        var entries = [Int32](repeating: -1, count: v.maxID + 1)
        for e in 0..<v.table.count {
            let id = Int(v.table.values[e])
            if entries[id] >= 0 {
                throw QwenImageError.config(file: source,
                    message: "tokens \"\(v.table.text(entry: Int(entries[id])))\" and \"\(v.table.text(entry: e))\" "
                        + "share id \(id); expected one token per id")
            }
            entries[id] = Int32(e)
        }
        entryOfID = entries

        var bytes = [Int32](repeating: -1, count: 256)
        for b in 0..<256 {
            guard let id = [UInt8(b)].withUnsafeBufferPointer({ v.table.find($0) }) else {
                throw QwenImageError.config(file: source,
                    message: "the vocabulary lacks the byte-level token \"\(ByteLevel.byteToScalar[b])\" for byte "
                        + "0x\(String(b, radix: 16)); expected all 256 byte tokens (is this a byte-level BPE tokenizer?)")
            }
            bytes[b] = id
        }
        byteIDs = bytes

        var mergeTable: [UInt64: Merge] = [:]
        mergeTable.reserveCapacity(list.count)
        var left: [UInt8] = [], right: [UInt8] = []
        try list.forEach { rank, a, b in
            func describe() -> String { "merge \(rank) \"\(list.text(a)) \(list.text(b))\"" }
            left.removeAll(keepingCapacity: true)
            right.removeAll(keepingCapacity: true)
            guard ByteLevel.decode(a, into: &left), ByteLevel.decode(b, into: &right),
                  let ia = left.withUnsafeBufferPointer({ v.table.find($0) }) else {
                throw QwenImageError.config(file: source, message: "\(describe()): \(list.text(a)) is not in the vocabulary")
            }
            guard let ib = right.withUnsafeBufferPointer({ v.table.find($0) }) else {
                throw QwenImageError.config(file: source, message: "\(describe()): \(list.text(b)) is not in the vocabulary")
            }
            left.append(contentsOf: right)
            guard let merged = left.withUnsafeBufferPointer({ v.table.find($0) }) else {
                throw QwenImageError.config(file: source,
                    message: "\(describe()): the merged token \"\(list.text(a))\(list.text(b))\" is not in the vocabulary")
            }
            let key = UInt64(UInt32(ia)) << 32 | UInt64(UInt32(ib))
            // A pair listed twice keeps its last rank, as `tokenizers` collects its merge map.
            mergeTable[key] = Merge(rank: Int32(rank), id: merged)
        }
        merges = mergeTable
    }

    // MARK: - Vocabulary queries

    var maxID: Int { max(entryOfID.count - 1, otherTokens.keys.max() ?? -1) }

    /// The first merge (by rank) that `other` does not have with the same rank and result, as
    /// (rank, left token, right token); nil when both have the same merges.
    func firstMergeDifference(from other: BytePairEncoding) -> (Int, String, String)? {
        var diffs: [(Int32, UInt64)] = []
        for (key, m) in merges where other.merges[key].map({ $0.rank != m.rank || $0.id != m.id }) ?? true { diffs.append((m.rank, key)) }
        if diffs.isEmpty && merges.count == other.merges.count { return nil }
        if let (rank, key) = diffs.min(by: { $0.0 < $1.0 }) {
            return (Int(rank), token(for: Int(key >> 32)) ?? "?", token(for: Int(key & 0xFFFF_FFFF)) ?? "?")
        }
        return (merges.count, "", "")  // `other` has more merges
    }

    var mergeCount: Int { merges.count }

    /// The token string (byte-level characters) of an id.
    func token(for id: Int) -> String? {
        if id >= 0 && id < entryOfID.count && entryOfID[id] >= 0 { return table.text(entry: Int(entryOfID[id])) }
        return otherTokens[id]
    }

    /// The id of a token string (byte-level characters).
    func id(of token: String) -> Int? {
        var raw: [UInt8] = []
        let utf8 = Array(token.utf8)
        if utf8.withUnsafeBufferPointer({ ByteLevel.decode($0, into: &raw) }),
           let id = raw.withUnsafeBufferPointer({ table.find($0) }) {
            return Int(id)
        }
        return otherTokens.first { $0.value == token }?.key
    }

    /// Appends the raw bytes of a token to `out`; false if the id is not a vocabulary token.
    func appendBytes(of id: Int, to out: inout [UInt8]) -> Bool {
        if id >= 0 && id < entryOfID.count && entryOfID[id] >= 0 {
            out.append(contentsOf: table.key(entry: Int(entryOfID[id])))
            return true
        }
        if let text = otherTokens[id] { out.append(contentsOf: Array(text.utf8)); return true }
        return false
    }

    // MARK: - Encoding

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
        let ids = bytes.count < Self.heapThreshold ? mergeByScan(bytes) : mergeByHeap(bytes)
        if bytes.count <= 256 {   // long pieces are rare and would crowd the cache
            cacheLock.lock()
            if cache.count >= Self.cacheCapacity { cache.removeAll(keepingCapacity: true) }
            cache[bytes] = ids
            cacheLock.unlock()
        }
        for id in ids { out.append(Int(id)) }
    }

    /// Pieces at least this long are merged with the priority queue (a run of letters without spaces,
    /// such as CJK text, can be thousands of bytes; the scan is quadratic).
    static let heapThreshold = 64

    /// Applies the merges to one piece: repeatedly merges the adjacent pair of lowest rank (leftmost
    /// on ties), as `tokenizers`' `Word::merge_all` does with its priority queue. Quadratic in the
    /// piece length, fastest for short pieces; `mergeByHeap` is its O(n log n) twin.
    func mergeByScan(_ bytes: [UInt8]) -> [Int32] {
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

    /// The same merges with a priority queue ordered by (rank, position), as `tokenizers` does:
    /// symbols form a linked list over the original byte positions; a queue entry is used only if
    /// the two symbols it was made for are still adjacent and unchanged.
    func mergeByHeap(_ bytes: [UInt8]) -> [Int32] {
        let n = bytes.count
        var ids = bytes.map { byteIDs[Int($0)] }           // the symbol starting at each position
        var next = Array(1...max(n, 1))                     // n: none
        var prev = Array(-1..<max(n - 1, 0))                // -1: none
        var heap = PairHeap()
        @inline(__always) func push(_ p: Int, _ q: Int) {
            let key = UInt64(UInt32(bitPattern: ids[p])) << 32 | UInt64(UInt32(bitPattern: ids[q]))
            if let m = merges[key] {
                heap.push(.init(rank: m.rank, pos: Int32(p), left: ids[p], right: ids[q], merged: m.id))
            }
        }
        for p in 0..<(n - 1) { push(p, p + 1) }
        while let e = heap.pop() {
            let p = Int(e.pos)
            let q = next[p]
            // Stale entries: a symbol that was absorbed has id -1, and a merged symbol has a new (longer)
            // token's id, which no earlier state of that position had; so unchanged ids mean the same pair.
            guard q < n, ids[p] == e.left, ids[q] == e.right else { continue }
            ids[p] = e.merged
            ids[q] = -1
            next[p] = next[q]
            if next[q] < n { prev[next[q]] = p }
            if prev[p] >= 0 { push(prev[p], p) }
            if next[p] < n { push(p, next[p]) }
        }
        var out: [Int32] = []
        var p = 0
        while p < n { out.append(ids[p]); p = next[p] }
        return out
    }
}

/// A binary min-heap of merge candidates ordered by (rank, position).
struct PairHeap {
    struct Entry { var rank: Int32; var pos: Int32; var left: Int32; var right: Int32; var merged: Int32 }
    private var items: [Entry] = []

    @inline(__always) private static func less(_ a: Entry, _ b: Entry) -> Bool {
        a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos
    }

    mutating func push(_ e: Entry) {
        items.append(e)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if !Self.less(items[i], items[parent]) { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> Entry? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < items.count && Self.less(items[l], items[m]) { m = l }
                if r < items.count && Self.less(items[r], items[m]) { m = r }
                if m == i { break }
                items.swapAt(i, m)
                i = m
            }
        }
        return top
    }
}

// MARK: - Loading helpers

/// The vocabulary as it is read: byte-level tokens keyed by raw bytes, the rest kept as text.
struct Vocabulary {
    var table = ByteStringTable(capacity: 1 << 12)
    var otherTokens: [Int: String] = [:]
    var maxID = -1
    private var scratch: [UInt8] = []

    /// Adds a token given as the UTF-8 bytes of its byte-level string.
    mutating func add(token utf8: UnsafeBufferPointer<UInt8>, id: Int) {
        scratch.removeAll(keepingCapacity: true)
        if ByteLevel.decode(utf8, into: &scratch) {
            scratch.withUnsafeBufferPointer { table.set($0, value: Int32(id)) }
        } else {
            otherTokens[id] = String(decoding: utf8, as: UTF8.self)
        }
        maxID = max(maxID, id)
    }
}

/// Merges as read: the two byte-level strings of each, in rank order, in one byte arena.
struct MergeList {
    private var arena: [UInt8] = []
    private var ranges: [(Int32, Int32, Int32)] = []   // left start, split (right start), end

    var count: Int { ranges.count }

    mutating func append(left: UnsafeBufferPointer<UInt8>, right: UnsafeBufferPointer<UInt8>) {
        let start = Int32(arena.count)
        arena.append(contentsOf: left)
        let split = Int32(arena.count)
        arena.append(contentsOf: right)
        ranges.append((start, split, Int32(arena.count)))
    }

    /// Calls `body(rank, left, right)` for each merge in rank order.
    func forEach(_ body: (Int, UnsafeBufferPointer<UInt8>, UnsafeBufferPointer<UInt8>) throws -> Void) rethrows {
        try arena.withUnsafeBufferPointer { p in
            for (i, (a, s, e)) in ranges.enumerated() {
                try body(i, UnsafeBufferPointer(rebasing: p[Int(a)..<Int(s)]), UnsafeBufferPointer(rebasing: p[Int(s)..<Int(e)]))
            }
        }
    }

    func text(_ bytes: UnsafeBufferPointer<UInt8>) -> String { String(decoding: bytes, as: UTF8.self) }
}

/// An open-addressing hash table from byte strings (kept in one arena) to Int32 values.
struct ByteStringTable {
    private var arena: [UInt8] = []
    private var starts: [Int32] = []
    private var lengths: [Int32] = []
    private(set) var values: [Int32] = []
    private var slots: [Int32]          // entry index, -1 when empty
    var count: Int { values.count }

    init(capacity: Int) {
        var n = 16
        while n < capacity * 2 { n <<= 1 }
        slots = [Int32](repeating: -1, count: n)
    }

    @inline(__always) private static func hash(_ key: UnsafeBufferPointer<UInt8>) -> Int {
        var h: UInt64 = 0xcbf29ce484222325            // FNV-1a, then a final mix
        for b in key { h = (h ^ UInt64(b)) &* 0x100000001b3 }
        h ^= h >> 29
        h = h &* 0xbf58476d1ce4e5b9
        return Int(truncatingIfNeeded: h ^ (h >> 32))
    }

    func find(_ key: UnsafeBufferPointer<UInt8>) -> Int32? {
        let mask = slots.count - 1
        var i = Self.hash(key) & mask
        while true {
            let e = slots[i]
            if e < 0 { return nil }
            if equals(entry: Int(e), key) { return values[Int(e)] }
            i = (i + 1) & mask
        }
    }

    @inline(__always) private func equals(entry e: Int, _ key: UnsafeBufferPointer<UInt8>) -> Bool {
        let n = Int(lengths[e])
        guard n == key.count else { return false }
        let s = Int(starts[e])
        return arena.withUnsafeBufferPointer { a in
            for k in 0..<n where a[s + k] != key[k] { return false }
            return true
        }
    }

    /// Inserts `key`, or overwrites its value (a duplicate JSON key: the last one wins).
    mutating func set(_ key: UnsafeBufferPointer<UInt8>, value: Int32) {
        if (values.count + 1) * 2 > slots.count { grow() }
        let mask = slots.count - 1
        var i = Self.hash(key) & mask
        while slots[i] >= 0 {
            let e = Int(slots[i])
            if equals(entry: e, key) { values[e] = value; return }
            i = (i + 1) & mask
        }
        slots[i] = Int32(values.count)
        starts.append(Int32(arena.count))
        lengths.append(Int32(key.count))
        arena.append(contentsOf: key)
        values.append(value)
    }

    private mutating func grow() {
        var bigger = [Int32](repeating: -1, count: slots.count * 2)
        let mask = bigger.count - 1
        arena.withUnsafeBufferPointer { a in
            for e in 0..<values.count {
                let key = UnsafeBufferPointer(rebasing: a[Int(starts[e])..<Int(starts[e] + lengths[e])])
                var i = Self.hash(key) & mask
                while bigger[i] >= 0 { i = (i + 1) & mask }
                bigger[i] = Int32(e)
            }
        }
        slots = bigger
    }

    func key(entry e: Int) -> ArraySlice<UInt8> { arena[Int(starts[e])..<Int(starts[e] + lengths[e])] }

    /// The entry's bytes as a byte-level string.
    func text(entry e: Int) -> String {
        var s = String.UnicodeScalarView()
        for b in key(entry: e) { s.append(ByteLevel.byteToScalar[Int(b)]) }
        return String(s)
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

    /// Scalar value (< 0x144) -> byte, or -1.
    static let scalarToByte: [Int16] = {
        var map = [Int16](repeating: -1, count: 0x144)
        for (b, s) in byteToScalar.enumerated() { map[Int(s.value)] = Int16(b) }
        return map
    }()

    /// Decodes the UTF-8 of a byte-level string into raw bytes; false if it holds another character.
    static func decode(_ utf8: UnsafeBufferPointer<UInt8>, into out: inout [UInt8]) -> Bool {
        var i = 0
        let n = utf8.count
        while i < n {
            let b0 = utf8[i]
            var v: Int
            if b0 < 0x80 {
                v = Int(b0); i += 1
            } else if b0 & 0xE0 == 0xC0 && i + 1 < n && utf8[i + 1] & 0xC0 == 0x80 {
                v = Int(b0 & 0x1F) << 6 | Int(utf8[i + 1] & 0x3F); i += 2   // the alphabet is below U+0800
                if v < 0x80 { return false }                                 // overlong
            } else {
                return false
            }
            guard v < 0x144 else { return false }
            let b = scalarToByte[v]
            if b < 0 { return false }
            out.append(UInt8(b))
        }
        return n > 0
    }
}

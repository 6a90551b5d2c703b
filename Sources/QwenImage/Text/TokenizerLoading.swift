import Foundation
import Quant

// Loading Qwen2Tokenizer from the files of a hub `tokenizer/` folder (or the pack's `tokenizer`
// component, which carries them verbatim). Settings other than Qwen2's are refused with a clear
// error rather than tokenized differently.

extension Qwen2Tokenizer {
    /// Loads from `tokenizer.json` when present, else from `vocab.json` + `merges.txt` + the added
    /// tokens of `tokenizer_config.json` (or `added_tokens.json`).
    /// - Parameters:
    ///   - source: the folder (or pack component) named in error messages.
    ///   - file: returns a file's bytes, or nil when the file does not exist.
    public static func load(source: String, file: (String) throws -> Data?) throws -> Qwen2Tokenizer {
        if let json = try file("tokenizer.json") {
            return try Qwen2Tokenizer(tokenizerJSON: json, source: source + "/tokenizer.json")
        }
        guard let vocab = try file("vocab.json"), let merges = try file("merges.txt") else {
            throw QwenImageError.config(file: source,
                message: "no tokenizer found: expected tokenizer.json, or vocab.json and merges.txt")
        }
        let config = try file("tokenizer_config.json")
        let addedJSON = config == nil ? try file("added_tokens.json") : nil
        return try Qwen2Tokenizer(vocabJSON: vocab, mergesText: merges, tokenizerConfig: config,
                                  addedTokensJSON: addedJSON, source: source)
    }

    /// Loads from a pack's `tokenizer` component (or, without one, its `processor` component, which
    /// carries the same files).
    public static func load(pack: Pack) throws -> Qwen2Tokenizer {
        guard let component = ["tokenizer", "processor"].first(where: pack.hasComponent) else {
            throw QwenImageError.missingComponent(pack: pack.path, component: "tokenizer",
                hint: "Convert the checkpoint again with its tokenizer folder (found: \(pack.components.joined(separator: ", "))).")
        }
        let folder = pack.url.appendingPathComponent(component)
        return try load(source: folder.path) { name in
            guard FileManager.default.fileExists(atPath: folder.appendingPathComponent(name).path) else { return nil }
            return try pack.fileData(component: component, name: name)
        }
    }

    /// Loads from a tokenizer folder (the hub's `tokenizer/` or `processor/`).
    public static func load(directory: String) throws -> Qwen2Tokenizer {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDir), isDir.boolValue else {
            throw QwenImageError.io(path: directory, message: "tokenizer folder not found")
        }
        return try load(source: directory) { name in
            let path = (directory as NSString).appendingPathComponent(name)
            do { return try FileBytes.read(path) } catch let error as QuantError {
                throw QwenImageError.io(path: path, message: "cannot read: \(error.description)")
            }
        }
    }

    /// From the contents of a `tokenizer.json` (`tokenizers` serialization).
    public convenience init(tokenizerJSON data: Data, source: String) throws {
        func fail(_ message: String) -> QwenImageError { .config(file: source, message: message) }
        var root: [String: Any] = [:]
        var model: [String: Any] = [:]
        var vocab = Vocabulary()
        var merges = MergeList()
        var haveVocab = false, haveMerges = false
        try data.withUnsafeBytes { raw in
            var s = JSONScanner(raw.bindMemory(to: UInt8.self), file: source)
            guard s.peek() == UInt8(ascii: "{") else { throw fail("expected a JSON object at the top level") }
            try s.members { s, key in
                guard key.elementsEqual("model".utf8) else { root[String(decoding: key, as: UTF8.self)] = try s.value(); return }
                guard s.peek() == UInt8(ascii: "{") else { throw fail("\"model\" is not an object") }
                root["model"] = true
                try s.members { s, key in
                    if key.elementsEqual("vocab".utf8) {
                        haveVocab = true
                        guard s.peek() == UInt8(ascii: "{") else { throw fail("model.vocab is not an object") }
                        try s.members { s, token in vocab.add(token: token, id: try s.tokenID()) }
                    } else if key.elementsEqual("merges".utf8) {
                        haveMerges = true
                        guard s.peek() == UInt8(ascii: "[") else { throw fail("model.merges is not an array") }
                        try Self.readMerges(&s, into: &merges, fail)
                    } else {
                        model[String(decoding: key, as: UTF8.self)] = try s.value()
                    }
                }
            }
            try s.end()
        }

        guard root["model"] != nil else { throw fail("no \"model\" object") }
        let type = model["type"] as? String ?? "BPE"
        guard type == "BPE" else { throw fail("model type \"\(type)\"; expected \"BPE\" (Qwen2 byte-level BPE)") }
        guard haveVocab else { throw fail("model.vocab is missing") }
        guard haveMerges else { throw fail("model.merges is missing") }
        if let b = model["byte_fallback"] as? Bool, b { throw fail("byte_fallback is true; expected false (Qwen2)") }
        if let d = model["dropout"], !(d is NSNull) { throw fail("BPE dropout is set; expected null") }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let v = model[key] as? String, !v.isEmpty { throw fail("\(key) is \"\(v)\"; expected null") }
        }
        if let ignore = model["ignore_merges"] as? Bool, ignore {
            throw fail("ignore_merges is true; expected false (Qwen2)")
        }
        let normalizerType = (root["normalizer"] as? [String: Any])?["type"] as? String
        guard normalizerType == "NFC" else {
            throw fail("normalizer \(normalizerType.map { "\"\($0)\"" } ?? "null"); expected \"NFC\" (Qwen2)")
        }
        try Self.checkPreTokenizer(root["pre_tokenizer"], fail)

        var added: [AddedToken] = []
        for (i, item) in ((root["added_tokens"] as? [Any]) ?? []).enumerated() {
            guard let t = item as? [String: Any] else { throw fail("added_tokens[\(i)] is not an object") }
            added.append(try Self.addedToken(t, id: t["id"], where: "added_tokens[\(i)]", fail))
        }
        let bpe = try BytePairEncoding(vocabulary: vocab, merges: merges, source: source)
        try self.init(bpe: bpe, addedTokens: added, source: source)
    }

    /// Merges as `"a b"` strings (tokenizers before 0.20) or `["a", "b"]` pairs (0.20 and later).
    private static func readMerges(_ s: inout JSONScanner, into merges: inout MergeList,
                                   _ fail: (String) -> QwenImageError) throws {
        var left: [UInt8] = [], right: [UInt8] = []
        var index = 0
        try s.elements { s in
            left.removeAll(keepingCapacity: true)
            right.removeAll(keepingCapacity: true)
            if s.peek() == UInt8(ascii: "\"") {
                try s.stringBytes(into: &left)
                guard let space = left.firstIndex(of: 0x20), space > 0, space < left.count - 1,
                      !left[(space + 1)...].contains(0x20) else {
                    throw fail("merge \(index) \"\(String(decoding: left, as: UTF8.self))\": expected two tokens separated by one space")
                }
                right.append(contentsOf: left[(space + 1)...])
                left.removeSubrange(space...)
            } else {
                try s.expect(UInt8(ascii: "["))
                try s.stringBytes(into: &left)
                try s.expect(UInt8(ascii: ","))
                try s.stringBytes(into: &right)
                try s.expect(UInt8(ascii: "]"))
            }
            left.withUnsafeBufferPointer { a in right.withUnsafeBufferPointer { b in merges.append(left: a, right: b) } }
            index += 1
        }
    }

    /// From `vocab.json`, `merges.txt` and the added tokens of `tokenizer_config.json`
    /// (`added_tokens_decoder`) or, without it, `added_tokens.json`. The pre-tokenizer and the
    /// normalizer are Qwen2's (what `Qwen2Tokenizer` in transformers hard-codes).
    public convenience init(vocabJSON: Data, mergesText: Data, tokenizerConfig: Data?, addedTokensJSON: Data?,
                            source: String) throws {
        let vocabFile = source + "/vocab.json"
        var vocab = Vocabulary()
        try vocabJSON.withUnsafeBytes { raw in
            var s = JSONScanner(raw.bindMemory(to: UInt8.self), file: vocabFile)
            guard s.peek() == UInt8(ascii: "{") else {
                throw QwenImageError.config(file: vocabFile, message: "expected a JSON object at the top level")
            }
            try s.members { s, token in vocab.add(token: token, id: try s.tokenID()) }
            try s.end()
        }

        let mergesFile = source + "/merges.txt"
        var merges = MergeList()
        try mergesText.withUnsafeBytes { raw in
            let bytes = raw.bindMemory(to: UInt8.self)
            guard String(validating: bytes, as: UTF8.self) != nil else {
                throw QwenImageError.config(file: mergesFile, message: "not valid UTF-8")
            }
            // As transformers' Qwen2Tokenizer: strip each line, skip a "#version:" first line and empty lines.
            var lineStart = 0, lineNumber = 0
            while lineStart < bytes.count {
                var lineEnd = lineStart
                while lineEnd < bytes.count && bytes[lineEnd] != 0x0A { lineEnd += 1 }
                lineNumber += 1
                let isSpace = { (b: UInt8) in b == 0x20 || b == 0x09 || b == 0x0D || b == 0x0B || b == 0x0C }
                var a = lineStart, e = lineEnd
                while a < e && isSpace(bytes[a]) { a += 1 }
                while e > a && isSpace(bytes[e - 1]) { e -= 1 }
                let line = UnsafeBufferPointer(rebasing: bytes[a..<e])
                lineStart = lineEnd + 1
                if line.isEmpty || (lineNumber == 1 && line.starts(with: "#version:".utf8)) { continue }
                let parts = line.split(whereSeparator: isSpace)
                guard parts.count == 2 else {
                    throw QwenImageError.config(file: mergesFile,
                        message: "line \(lineNumber) \"\(String(decoding: line, as: UTF8.self))\": expected two tokens separated by a space")
                }
                merges.append(left: UnsafeBufferPointer(rebasing: parts[0]), right: UnsafeBufferPointer(rebasing: parts[1]))
            }
        }

        var added: [AddedToken] = []
        if let config = tokenizerConfig {
            let file = source + "/tokenizer_config.json"
            let root = try Self.jsonObject(config, file)
            let fail = { (m: String) in QwenImageError.config(file: file, message: m) }
            if let decoder = root["added_tokens_decoder"] as? [String: Any] {
                for (key, value) in decoder {
                    guard let id = Int(key), let t = value as? [String: Any] else {
                        throw fail("added_tokens_decoder[\"\(key)\"]: expected an integer id and an object")
                    }
                    added.append(try Self.addedToken(t, id: id, where: "added_tokens_decoder[\"\(key)\"]", fail))
                }
            }
        } else if let json = addedTokensJSON {
            let file = source + "/added_tokens.json"
            for (content, id) in try Self.jsonObject(json, file) {
                guard let id = Self.intValue(id), id >= 0 else {
                    throw QwenImageError.config(file: file, message: "\"\(content)\": expected an integer id")
                }
                added.append(AddedToken(id: id, content: content, special: true))
            }
        }
        let bpe = try BytePairEncoding(vocabulary: vocab, merges: merges, source: source)
        try self.init(bpe: bpe, addedTokens: added, source: source)
    }

    // MARK: - Helpers

    private static func jsonObject(_ data: Data, _ file: String) throws -> [String: Any] {
        let object = try data.withUnsafeBytes { raw -> Any in
            var s = JSONScanner(raw.bindMemory(to: UInt8.self), file: file)
            let v = try s.value()
            try s.end()
            return v
        }
        guard let dict = object as? [String: Any] else {
            throw QwenImageError.config(file: file, message: "expected a JSON object at the top level")
        }
        return dict
    }

    private static func intValue(_ value: Any?) -> Int? {
        if let i = value as? Int { return i }
        if let d = value as? Double { return Int(exactly: d) }
        return nil
    }

    private static func addedToken(_ t: [String: Any], id: Any?, where location: String,
                                   _ fail: (String) -> QwenImageError) throws -> AddedToken {
        guard let content = t["content"] as? String else { throw fail("\(location): no \"content\" string") }
        guard let i = intValue(id), i >= 0 else {
            throw fail("\(location) \"\(content)\": no integer id")
        }
        for flag in ["lstrip", "rstrip", "single_word"] where (t[flag] as? Bool) == true {
            throw fail("\(location) \"\(content)\": \(flag) is true; only false is supported (as in Qwen2)")
        }
        return AddedToken(id: i, content: content, special: (t["special"] as? Bool) ?? false)
    }

    /// Accepts exactly Qwen2's pre-tokenizer: `Split(pattern, Isolated)` then `ByteLevel` without regex
    /// and without a prefix space.
    private static func checkPreTokenizer(_ value: Any?, _ fail: (String) -> QwenImageError) throws {
        guard let pre = value as? [String: Any], pre["type"] as? String == "Sequence",
              let steps = pre["pretokenizers"] as? [[String: Any]], steps.count == 2 else {
            throw fail("pre_tokenizer: expected a Sequence of Split and ByteLevel (Qwen2)")
        }
        let split = steps[0]
        let pattern = (split["pattern"] as? [String: Any])?["Regex"] as? String
        guard split["type"] as? String == "Split", split["behavior"] as? String == "Isolated",
              (split["invert"] as? Bool) != true else {
            throw fail("pre_tokenizer: expected Split with behavior Isolated first (Qwen2)")
        }
        guard pattern == Qwen2PreTokenizer.pattern else {
            throw fail("pre_tokenizer: Split pattern \(pattern ?? "missing") is not Qwen2's pattern "
                + "\(Qwen2PreTokenizer.pattern); only Qwen2's is implemented")
        }
        let byteLevel = steps[1]
        guard byteLevel["type"] as? String == "ByteLevel", (byteLevel["add_prefix_space"] as? Bool) != true,
              (byteLevel["use_regex"] as? Bool) != true else {
            throw fail("pre_tokenizer: expected ByteLevel with add_prefix_space false and use_regex false second")
        }
    }
}

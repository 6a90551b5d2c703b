import Foundation

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

    /// Loads from a tokenizer folder (the hub's `tokenizer/` or `processor/`).
    public static func load(directory: String) throws -> Qwen2Tokenizer {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDir), isDir.boolValue else {
            throw QwenImageError.io(path: directory, message: "tokenizer folder not found")
        }
        return try load(source: directory) { name in
            let path = (directory as NSString).appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: path) else { return nil }
            do { return try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
                throw QwenImageError.io(path: path, message: "cannot read: \(error.localizedDescription)")
            }
        }
    }

    /// From the contents of a `tokenizer.json` (`tokenizers` serialization).
    public convenience init(tokenizerJSON data: Data, source: String) throws {
        let root = try Self.jsonObject(data, source)
        func fail(_ message: String) -> QwenImageError { .config(file: source, message: message) }

        guard let model = root["model"] as? [String: Any] else { throw fail("no \"model\" object") }
        let type = model["type"] as? String ?? "BPE"
        guard type == "BPE" else { throw fail("model type \"\(type)\"; expected \"BPE\" (Qwen2 byte-level BPE)") }
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

        guard let vocabObject = model["vocab"] as? [String: Any] else { throw fail("model.vocab is not an object") }
        let vocab = try Self.vocabulary(vocabObject, fail)
        guard let mergeList = model["merges"] as? [Any] else { throw fail("model.merges is not an array") }
        var merges: [(String, String)] = []
        merges.reserveCapacity(mergeList.count)
        for (i, m) in mergeList.enumerated() {
            if let s = m as? String {
                let parts = s.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                    throw fail("merge \(i) \"\(s)\": expected two tokens separated by one space")
                }
                merges.append((String(parts[0]), String(parts[1])))
            } else if let pair = m as? [Any], pair.count == 2, let a = pair[0] as? String, let b = pair[1] as? String {
                merges.append((a, b))
            } else {
                throw fail("merge \(i): expected \"a b\" or [\"a\", \"b\"]")
            }
        }

        var added: [AddedToken] = []
        for (i, item) in ((root["added_tokens"] as? [Any]) ?? []).enumerated() {
            guard let t = item as? [String: Any] else { throw fail("added_tokens[\(i)] is not an object") }
            added.append(try Self.addedToken(t, id: t["id"], where: "added_tokens[\(i)]", fail))
        }
        let bpe = try BytePairEncoding(vocab: vocab, merges: merges, source: source)
        try self.init(bpe: bpe, addedTokens: added, source: source)
    }

    /// From `vocab.json`, `merges.txt` and the added tokens of `tokenizer_config.json`
    /// (`added_tokens_decoder`) or, without it, `added_tokens.json`. The pre-tokenizer and the
    /// normalizer are Qwen2's (what `Qwen2Tokenizer` in transformers hard-codes).
    public convenience init(vocabJSON: Data, mergesText: Data, tokenizerConfig: Data?, addedTokensJSON: Data?,
                            source: String) throws {
        let vocabFile = source + "/vocab.json"
        let vocab = try Self.vocabulary(Self.jsonObject(vocabJSON, vocabFile)) {
            QwenImageError.config(file: vocabFile, message: $0)
        }

        let mergesFile = source + "/merges.txt"
        guard let text = String(data: mergesText, encoding: .utf8) else {
            throw QwenImageError.config(file: mergesFile, message: "not valid UTF-8")
        }
        var merges: [(String, String)] = []
        for (i, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            // As transformers' Qwen2Tokenizer: strip, skip a "#version:" first line and empty lines.
            let line = rawLine.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || (i == 0 && line.hasPrefix("#version:")) { continue }
            let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard parts.count == 2 else {
                throw QwenImageError.config(file: mergesFile,
                    message: "line \(i + 1) \"\(line)\": expected two tokens separated by a space")
            }
            merges.append((String(parts[0]), String(parts[1])))
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
                guard let id = (id as? NSNumber)?.intValue else {
                    throw QwenImageError.config(file: file, message: "\"\(content)\": expected an integer id")
                }
                added.append(AddedToken(id: id, content: content, special: true))
            }
        }
        let bpe = try BytePairEncoding(vocab: vocab, merges: merges, source: source)
        try self.init(bpe: bpe, addedTokens: added, source: source)
    }

    // MARK: - Helpers

    private static func jsonObject(_ data: Data, _ file: String) throws -> [String: Any] {
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: data) } catch {
            throw QwenImageError.config(file: file, message: "not valid JSON (\(data.count) bytes): \(error.localizedDescription)")
        }
        guard let dict = object as? [String: Any] else {
            throw QwenImageError.config(file: file, message: "expected a JSON object at the top level")
        }
        return dict
    }

    private static func vocabulary(_ object: [String: Any], _ fail: (String) -> QwenImageError) throws -> [String: Int] {
        var vocab: [String: Int] = [:]
        vocab.reserveCapacity(object.count)
        for (token, value) in object {
            guard let n = value as? NSNumber, let id = Int(exactly: n.doubleValue), id >= 0 else {
                throw fail("vocabulary entry \"\(token)\": expected a non-negative integer id, found \(value)")
            }
            vocab[token] = id
        }
        if vocab.isEmpty { throw fail("the vocabulary is empty") }
        return vocab
    }

    private static func addedToken(_ t: [String: Any], id: Any?, where location: String,
                                   _ fail: (String) -> QwenImageError) throws -> AddedToken {
        guard let content = t["content"] as? String else { throw fail("\(location): no \"content\" string") }
        guard let n = id as? NSNumber ?? (id as? Int).map({ NSNumber(value: $0) }), let i = Int(exactly: n.doubleValue),
              i >= 0 else {
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

import Foundation
import Quant

/// The tokenizer of a GGUF file (`tokenizer.ggml.*`, model "gpt2" = byte-level BPE) as the hub's
/// Qwen2 tokenizer files, and the check of a user's tokenizer folder against it.
///
/// llama.cpp writes one token string per id (the byte-level strings of vocab.json, the contents of the
/// added tokens, and "[PAD<id>]" fillers up to the embedding rows), a type per id (1 normal, 3 control
/// = added special, 4 user-defined = added non-special, 5 unused = filler) and the merges as "a b".
enum GGUFTokenizer {
    static func write(from f: GGUFFile, into folder: URL) throws {
        let model = try f.string("tokenizer.ggml.model")
        guard model == "gpt2" else {
            throw QuantError.gguf(file: f.path, tensor: nil,
                message: "tokenizer.ggml.model is \(model.map { "\"\($0)\"" } ?? "missing"), expected \"gpt2\" (Qwen2's byte-level BPE)")
        }
        if let pre = try f.string("tokenizer.ggml.pre"), pre != "qwen2" {
            throw QuantError.gguf(file: f.path, tensor: nil, message: "tokenizer.ggml.pre is \"\(pre)\", expected \"qwen2\"")
        }
        let tokens = try GGUFImport.require(f.strings("tokenizer.ggml.tokens"), "tokenizer.ggml.tokens", f)
        let types = try f.ints("tokenizer.ggml.token_type") ?? []
        guard types.isEmpty || types.count == tokens.count else {
            throw QuantError.gguf(file: f.path, tensor: nil,
                message: "tokenizer.ggml.token_type has \(types.count) entries, tokenizer.ggml.tokens \(tokens.count)")
        }
        let merges = try GGUFImport.require(f.strings("tokenizer.ggml.merges"), "tokenizer.ggml.merges", f)
        var vocab: [String: Int] = [:]
        var added: [String: Any] = [:]
        for (id, t) in tokens.enumerated() {
            let type = types.isEmpty ? 1 : types[id]
            switch type {
            case 1:
                guard vocab[t] == nil else {
                    throw QuantError.gguf(file: f.path, tensor: nil, message: "tokenizer.ggml.tokens: \"\(t)\" appears twice (ids \(vocab[t]!) and \(id))")
                }
                vocab[t] = id
            case 3, 4:
                added[String(id)] = ["content": t, "special": type == 3, "lstrip": false, "rstrip": false,
                                     "normalized": type == 4, "single_word": false] as [String: Any]
            case 5: continue   // "[PAD<id>]": rows of the embedding no token maps to
            default:
                throw QuantError.gguf(file: f.path, tensor: nil, message: "tokenizer.ggml.token_type of id \(id) (\"\(t)\") is \(type), expected 1, 3, 4 or 5")
            }
        }
        let vocabData = try JSONSerialization.data(withJSONObject: vocab, options: [.sortedKeys, .withoutEscapingSlashes])
        try write(vocabData, folder.appendingPathComponent("vocab.json"))
        try write(Data(("#version: 0.2\n" + merges.joined(separator: "\n") + "\n").utf8), folder.appendingPathComponent("merges.txt"))
        var config: [String: Any] = ["added_tokens_decoder": added, "tokenizer_class": "Qwen2Tokenizer", "add_prefix_space": false,
                                     "clean_up_tokenization_spaces": false, "split_special_tokens": false, "errors": "replace"]
        if let eos = try f.int("tokenizer.ggml.eos_token_id"), eos < tokens.count { config["eos_token"] = tokens[eos] }
        if let pad = try f.int("tokenizer.ggml.padding_token_id"), pad < tokens.count { config["pad_token"] = tokens[pad] }
        try GGUFImport.writeJSON(config, to: folder.appendingPathComponent("tokenizer_config.json"))
    }

    static func write(_ data: Data, _ url: URL) throws {
        do { try data.write(to: url) } catch {
            throw QuantError.io(path: url.path, message: "cannot write: \((error as NSError).localizedDescription)")
        }
    }

    /// Refuses a tokenizer folder whose ids, added tokens or merges differ from the GGUF's.
    static func check(written: String, against folder: String, gguf: String) throws {
        let mine = try Qwen2Tokenizer.load(directory: written)
        let theirs = try Qwen2Tokenizer.load(directory: folder)
        func fail(_ what: String) -> QwenImageError {
            .invalidInput("--tokenizer \(folder) does not match the tokenizer of \(gguf): \(what); give the tokenizer folder of the same model, or leave --tokenizer out to use the GGUF's")
        }
        guard mine.idLimit == theirs.idLimit else { throw fail("ids up to \(theirs.idLimit - 1), the GGUF's up to \(mine.idLimit - 1)") }
        for id in 0..<mine.idLimit where mine.token(for: id) != theirs.token(for: id) {
            throw fail("id \(id) is \(theirs.token(for: id).map { "\"\($0)\"" } ?? "no token"), in the GGUF \(mine.token(for: id).map { "\"\($0)\"" } ?? "no token")")
        }
        if let (rank, a, b) = mine.bpe.firstMergeDifference(from: theirs.bpe) ?? theirs.bpe.firstMergeDifference(from: mine.bpe) {
            throw fail(a.isEmpty ? "\(theirs.bpe.mergeCount) merges, the GGUF has \(mine.bpe.mergeCount)" : "merge \(rank) \"\(a) \(b)\" differs")
        }
    }
}

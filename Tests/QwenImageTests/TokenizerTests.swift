import Foundation
import Testing
import Quant
@testable import QwenImage

/// Fixtures: `Tests/Fixtures` (see MANIFEST.md).
private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures")
private let tokenizerDir = fixtures.appendingPathComponent("tiny-random-qwen-image/tokenizer").path

private func loadJSON(_ relative: String) throws -> [String: Any] {
    let data = try Data(contentsOf: fixtures.appendingPathComponent(relative))
    return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
}

/// The tokenizer from tokenizer.json, and the same from vocab.json + merges.txt + tokenizer_config.json.
private func bothTokenizers() throws -> [(String, Qwen2Tokenizer)] {
    let viaJSON = try Qwen2Tokenizer.load(directory: tokenizerDir)
    let read = { (name: String) in try Data(contentsOf: URL(fileURLWithPath: tokenizerDir + "/" + name)) }
    let viaVocab = try Qwen2Tokenizer(vocabJSON: read("vocab.json"), mergesText: read("merges.txt"),
                                      tokenizerConfig: read("tokenizer_config.json"), addedTokensJSON: nil,
                                      source: tokenizerDir)
    return [("tokenizer.json", viaJSON), ("vocab.json+merges.txt", viaVocab)]
}

private struct TokenizerCase {
    var index: Int
    var text: String
    var tensor: String
    var ids: [Int]
}

private func fixtureCases() throws -> [TokenizerCase] {
    let root = try loadJSON("refs/cases.json")
    let cases = ((root["cases"] as? [String: Any])?["tokenizer"] as? [String: Any])?["cases"] as? [[String: Any]]
    return try #require(cases).map {
        TokenizerCase(index: $0["index"] as! Int, text: $0["text"] as! String, tensor: $0["tensor"] as! String,
                      ids: ($0["ids"] as! [NSNumber]).map(\.intValue))
    }
}

@Test func tokenizerMatchesEveryOracleCase() throws {
    let cases = try fixtureCases()
    #expect(cases.count == 19)
    let refs = try SafetensorsFile(path: fixtures.appendingPathComponent("refs/tokenizer.safetensors").path)
    for (loader, tok) in try bothTokenizers() {
        for c in cases {
            let ids = tok.encode(c.text)
            let expected = try refs.int64s(c.tensor).map { Int($0) }
            #expect(expected == c.ids, "cases.json and tokenizer.safetensors disagree on \(c.tensor)")
            #expect(ids == expected, "\(loader): case \(c.index) \(c.text.debugDescription)")
        }
    }
}

@Test func tokenizerMatchesTokenizersLibraryOnRandomStrings() throws {
    let root = try loadJSON("tokenizer_fuzz.json")
    let cases = try #require(root["cases"] as? [[String: Any]])
    #expect(cases.count > 400)
    for (loader, tok) in try bothTokenizers() {
        var failures = 0
        for c in cases {
            let text = String(decoding: Data(base64Encoded: c["utf8"] as! String)!, as: UTF8.self)
            let expected = (c["ids"] as! [NSNumber]).map(\.intValue)
            let ids = tok.encode(text)
            if ids != expected {
                failures += 1
                if failures <= 5 { Issue.record("\(loader): \(text.debugDescription): got \(ids), expected \(expected)") }
            }
        }
        #expect(failures == 0, "\(loader): \(failures) of \(cases.count) random strings differ")
    }
}

@Test func tokenizerDecodesToNFCText() throws {
    let tok = try Qwen2Tokenizer.load(directory: tokenizerDir)
    for c in try fixtureCases() {
        #expect(try tok.decode(c.ids) == c.text.precomposedStringWithCanonicalMapping)
    }
    #expect(throws: QwenImageError.self) { try tok.decode([tok.idLimit]) }
    #expect(tok.encode("") == [])
    #expect(tok.padTokenID == 3000)
    #expect(tok.tokenID("<|im_start|>") == 3001)
}

// MARK: - Templates

@Test func templatesMatchThePipelines() throws {
    let root = try loadJSON("refs/cases.json")
    let all = try #require(root["cases"] as? [String: Any])
    let t2i = try #require(all["t2i"] as? [String: Any])
    let edit = try #require(all["edit"] as? [String: Any])
    let edit1 = try #require(edit["edit1"] as? [String: Any])
    let editPlus = try #require(edit["editplus2"] as? [String: Any])

    let python = { (template: String, prompt: String) in template.replacingOccurrences(of: "{}", with: prompt) }
    #expect(PromptTemplate.textToImage.format(prompt: "P") == python(t2i["template"] as! String, "P"))
    #expect(PromptTemplate.textToImage.dropIndex == t2i["drop_idx"] as! Int)
    #expect(PromptTemplate.textToImage.tokenizerMaxLength == (t2i["tokenizer_max_length"] as! Int) + 34)
    #expect(PromptTemplate.textToImage.maxSequenceLength == 1024)
    #expect(PromptTemplate.edit.format(prompt: "P") == python(edit1["template"] as! String, "P"))
    #expect(PromptTemplate.edit.dropIndex == edit1["drop_idx"] as! Int)
    #expect(PromptTemplate.edit.tokenizerMaxLength == nil)
    // Edit-Plus: the pipeline puts "Picture i: ..." in front of the prompt inside the template's {}.
    let pictures = "Picture 1: <|vision_start|><|image_pad|><|vision_end|>"
        + "Picture 2: <|vision_start|><|image_pad|><|vision_end|>"
    #expect(PromptTemplate.editPlus(imageCount: 2).format(prompt: "P")
            == python(editPlus["template"] as! String, pictures + "P"))
    #expect(PromptTemplate.editPlus(imageCount: 0).format(prompt: "P") == python(editPlus["template"] as! String, "P"))
    #expect(PromptTemplate.editPlus(imageCount: 2).dropIndex == editPlus["drop_idx"] as! Int)

    // The tokenizer cases that apply a template: the whole text and its ids.
    let cases = try fixtureCases()
    let tok = try Qwen2Tokenizer.load(directory: tokenizerDir)
    let withTemplate: [(Int, PromptTemplate, String)] = [
        (15, .textToImage, cases[12].text), (16, .textToImage, cases[13].text), (17, .edit, cases[14].text),
        (18, .editPlus(imageCount: 2), "Put the object of Picture 1 into the scene of Picture 2"),
    ]
    for (index, template, prompt) in withTemplate {
        let t = template.tokenize(prompt: prompt, with: tok)
        #expect(t.text == cases[index].text)
        #expect(t.ids == cases[index].ids)
        #expect(t.truncatedTokens == 0)
    }
    // The drop index is the system prompt up to and including "<|im_start|>user\n".
    #expect(tok.encode(PromptTemplate.textToImage.prefix).count == 34)
    #expect(tok.encode(PromptTemplate.editPlus(imageCount: 0).prefix).count == 64)
}

@Test func textToImageTemplateTruncatesLikeDiffusers() throws {
    let tok = try Qwen2Tokenizer.load(directory: tokenizerDir)
    let prompt = String(repeating: "a cat 1 ", count: 400)   // "a", " cat", " ", "1", " " ... > 1058 tokens
    let full = tok.encode(PromptTemplate.textToImage.format(prompt: prompt))
    let t = PromptTemplate.textToImage.tokenize(prompt: prompt, with: tok)
    #expect(full.count > 1058)
    #expect(t.ids == Array(full.prefix(1058)))
    #expect(t.truncatedTokens == full.count - 1058)
    // Edit templates are not truncated.
    let e = PromptTemplate.edit.tokenize(prompt: prompt, with: tok)
    #expect(e.truncatedTokens == 0 && e.ids.count > 1058)
}

// MARK: - Bad files

@Test func badTokenizerFilesGiveClearErrors() throws {
    let good = try Data(contentsOf: URL(fileURLWithPath: tokenizerDir + "/tokenizer.json"))
    func message(_ data: Data) -> String {
        do { _ = try Qwen2Tokenizer(tokenizerJSON: data, source: "T/tokenizer.json"); return "no error" } catch {
            return "\(error)"
        }
    }
    #expect(message(Data("{not json".utf8)).hasPrefix("T/tokenizer.json: not valid JSON"))
    #expect(message(Data("[1]".utf8)).contains("expected a JSON object"))
    #expect(message(Data("{}".utf8)).contains("no \"model\" object"))

    var root = try JSONSerialization.jsonObject(with: good) as! [String: Any]
    func mutated(_ change: (inout [String: Any]) -> Void) throws -> Data {
        var copy = root
        change(&copy)
        return try JSONSerialization.data(withJSONObject: copy)
    }
    #expect(message(try mutated { r in
        var m = r["model"] as! [String: Any]; m["type"] = "WordPiece"; r["model"] = m
    }).contains("model type \"WordPiece\"; expected \"BPE\""))
    #expect(message(try mutated { r in r["normalizer"] = ["type": "NFKC"] }).contains("normalizer \"NFKC\""))
    #expect(message(try mutated { r in
        var pre = r["pre_tokenizer"] as! [String: Any]
        var steps = pre["pretokenizers"] as! [[String: Any]]
        steps[0]["pattern"] = ["Regex": "\\w+"]
        pre["pretokenizers"] = steps
        r["pre_tokenizer"] = pre
    }).contains("is not Qwen2's pattern"))
    #expect(message(try mutated { r in
        var m = r["model"] as! [String: Any]; m["merges"] = ["Ġ zzzz"]; r["model"] = m
    }).contains("merge 0 \"Ġ zzzz\": zzzz is not in the vocabulary"))
    #expect(message(try mutated { r in
        var m = r["model"] as! [String: Any]
        var v = m["vocab"] as! [String: Any]; v.removeValue(forKey: "Ġ"); m["vocab"] = v; r["model"] = m
    }).contains("lacks the byte-level token"))
    root["added_tokens"] = [["id": 3000, "content": "<|endoftext|>", "lstrip": true]]
    #expect(message(try JSONSerialization.data(withJSONObject: root)).contains("lstrip is true"))

    // A folder without any tokenizer file, and one that does not exist.
    let empty = FileManager.default.temporaryDirectory.appendingPathComponent("tok-empty-\(getpid())")
    try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: empty) }
    #expect(throws: QwenImageError.config(file: empty.path,
        message: "no tokenizer found: expected tokenizer.json, or vocab.json and merges.txt")) {
        try Qwen2Tokenizer.load(directory: empty.path)
    }
    #expect(throws: QwenImageError.io(path: empty.path + "/missing", message: "tokenizer folder not found")) {
        try Qwen2Tokenizer.load(directory: empty.path + "/missing")
    }
    // A merges.txt with a malformed line.
    let vocab = try Data(contentsOf: URL(fileURLWithPath: tokenizerDir + "/vocab.json"))
    #expect(throws: QwenImageError.self) {
        try Qwen2Tokenizer(vocabJSON: vocab, mergesText: Data("#version: 0.2\nĠ t x\n".utf8), tokenizerConfig: nil,
                           addedTokensJSON: nil, source: "T")
    }
}

// MARK: - From a pack

@Test func tokenizerLoadsFromAPack() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tok-pack-\(getpid())")
    defer { try? FileManager.default.removeItem(at: dir) }
    let root = fixtures.appendingPathComponent("tiny-random-qwen-image").path
    var options = ConvertOptions()
    options.components = ["tokenizer", "vae"]
    options.scheme = .f32
    options.progress = false
    let checkpoint = try Checkpoint(path: root, only: options.components)
    let plan = try ConversionPlan.make(checkpoint: checkpoint, options: options)
    _ = try Converter.convert(checkpoint: checkpoint, plan: plan, output: dir, options: options)
    let pack = try Pack(path: dir.path)
    let fromPack = try Qwen2Tokenizer.load(pack: pack)
    for c in try fixtureCases() { #expect(fromPack.encode(c.text) == c.ids) }

    // A pack without tokenizer (and processor) component.
    let bare = FileManager.default.temporaryDirectory.appendingPathComponent("tok-pack-bare-\(getpid())")
    defer { try? FileManager.default.removeItem(at: bare) }
    options.components = ["vae"]
    let vaeOnly = try Checkpoint(path: root, only: options.components)
    _ = try Converter.convert(checkpoint: vaeOnly, plan: try ConversionPlan.make(checkpoint: vaeOnly, options: options),
                              output: bare, options: options)
    #expect(throws: QwenImageError.self) { try Qwen2Tokenizer.load(pack: try Pack(path: bare.path)) }
}

// MARK: - The BPE twins

/// The quadratic scan and the priority queue give the same merges on every piece of every test string,
/// and on long runs of letters (where only the queue is used in practice).
@Test func bpeScanAndHeapAgree() throws {
    let tok = try Qwen2Tokenizer.load(directory: tokenizerDir)
    var pieces: [[UInt8]] = []
    let root = try loadJSON("tokenizer_fuzz.json")
    for c in try #require(root["cases"] as? [[String: Any]]) {
        let text = String(decoding: Data(base64Encoded: c["utf8"] as! String)!, as: UTF8.self)
        pieces.append(Array(text.utf8))          // whole strings: long, mixed pieces
        for word in text.split(separator: " ") { pieces.append(Array(word.utf8)) }
    }
    let cjk = "一只可爱的小猫坐在窗台上阳光明媚中文测试一只穿着宇航服的熊猫在月球上弹吉他"
    pieces.append(Array(String(repeating: cjk, count: 40).utf8))
    pieces.append(Array(String(repeating: "the", count: 500).utf8))
    pieces.append(Array(String(repeating: "a", count: 1001).utf8))
    for p in pieces where p.count >= 2 {
        #expect(tok.bpe.mergeByScan(p) == tok.bpe.mergeByHeap(p), "\(String(decoding: p, as: UTF8.self).prefix(40))")
    }
}

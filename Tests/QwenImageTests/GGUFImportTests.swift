import Foundation
import Quant
import Testing
@testable import QwenImage

/// GGUF import (`qwen-quant convert MODEL.gguf --mmproj MMPROJ.gguf`) on the fixtures that
/// `Tests/Fixtures/scripts/make_gguf.py` wrote from the tiny model with the `gguf` package: the
/// imported pack gives the same embeddings as a pack converted from the same weights in safetensors.
@Suite("GGUF import", .serialized) struct GGUFImportTests {
    static let dir = TextEncoderFixtures.fixtures.appendingPathComponent("gguf")
    static func gguf(_ name: String) -> String { dir.appendingPathComponent(name).path }
    static let mmproj = gguf("mmproj-f32.gguf")
    static let lmTypes = ["bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1"]

    /// Imports `lm` (+ the mmproj) into a pack; nil scheme: each ggml type in its matching scheme.
    static func importPack(_ lm: String, scheme: PackScheme?, tokenizer: String? = nil, name: String) throws -> (String, ConversionSummary) {
        let out = TextEncoderFixtures.tempRoot.appendingPathComponent("\(name)-\(UInt32.random(in: 0 ... .max))")
        let staging = TextEncoderFixtures.tempRoot.appendingPathComponent(".staging-\(UInt32.random(in: 0 ... .max))")
        defer { try? FileManager.default.removeItem(at: staging) }
        let imported = try GGUFImport.checkpoint(model: gguf(lm), mmproj: mmproj, tokenizer: tokenizer, staging: staging)
        var o = ConvertOptions()
        if let scheme { o.scheme = scheme; o.group = scheme.isQuantized ? 32 : 0 } else { o.bySourceDType = GGUFImport.matchingSchemes }
        o.progress = false
        let plan = try ConversionPlan.make(checkpoint: imported.checkpoint, options: o)
        let summary = try Converter.convert(checkpoint: imported.checkpoint, plan: plan, output: out, options: o)
        return (out.path, summary)
    }

    /// A diffusers root holding the GGUF's weights decoded (by the importer's reader, which
    /// `GGUFTests` checks bit for bit against the `gguf` package) as f32 safetensors, with the tiny
    /// model's own config.json, tokenizer and processor: "the same weights in safetensors".
    static func decodedSafetensorsRoot(_ lm: String) throws -> String {
        let root = TextEncoderFixtures.tempRoot.appendingPathComponent("decoded-\(lm)-\(UInt32.random(in: 0 ... .max))")
        let te = root.appendingPathComponent("text_encoder")
        try FileManager.default.createDirectory(at: te, withIntermediateDirectories: true)
        let tiny = URL(fileURLWithPath: TextEncoderFixtures.model)
        for f in ["tokenizer", "processor"] {
            try FileManager.default.copyItem(at: tiny.appendingPathComponent(f), to: root.appendingPathComponent(f))
        }
        try FileManager.default.copyItem(at: tiny.appendingPathComponent("text_encoder/config.json"), to: te.appendingPathComponent("config.json"))
        let staging = root.appendingPathComponent(".staging")
        defer { try? FileManager.default.removeItem(at: staging) }
        let comp = try GGUFImport.checkpoint(model: gguf(lm), mmproj: mmproj, tokenizer: nil, staging: staging).checkpoint.component("text_encoder")
        var w = SafetensorsWriter()
        for t in comp.tensorNames { try w.add(t, f32: try comp.floats(t), shape: try comp.info(t).shape) }
        try w.write(to: te.appendingPathComponent("model.safetensors"))
        return root.path
    }

    static func convertSafetensors(_ root: String, name: String) throws -> String {
        let out = TextEncoderFixtures.tempRoot.appendingPathComponent("\(name)-\(UInt32.random(in: 0 ... .max))")
        var o = ConvertOptions()
        o.scheme = .f32
        o.group = 0
        o.progress = false
        let checkpoint = try Checkpoint(path: root, only: ["text_encoder"])
        _ = try Converter.convert(checkpoint: checkpoint, plan: try ConversionPlan.make(checkpoint: checkpoint, options: o),
                                  output: out, options: o)
        return out.path
    }

    static let prompts = ["a red fox in the snow", " ", "两只猫 on a sofa, 4K"]

    static func embeddings(_ pack: String) throws -> [[Float]] {
        try prompts.map { try TextEncoderFixtures.encode([$0], pack: pack).embeds }
    }

    /// `qwen-run encode --image` (the vision tower and the Edit template): the prompt_embeds bytes.
    static func editEmbeddings(_ pack: String) throws -> Data {
        let out = TextEncoderFixtures.tempRoot.appendingPathComponent("edit-\(UInt32.random(in: 0 ... .max)).safetensors").path
        let r = try QwenRunProcess.run(["encode", "--pack", pack, "--prompt", "make it blue", "--out", out,
                                        "--image", TextEncoderFixtures.fixtures.appendingPathComponent("images/jpeg444.jpg").path])
        #expect(r.status == 0, "\(r.stderr)")
        return try SafetensorsFile(path: out).data("prompt_embeds")
    }

    @Test("a BF16 GGUF + F32 mmproj imported as f32 = the safetensors checkpoint as f32, bit for bit (text and image prompts)")
    func bf16ImportEqualsSafetensors() throws {
        let (imported, _) = try Self.importPack("lm-bf16.gguf", scheme: .f32, name: "gguf-bf16")
        let reference = try TextEncoderFixtures.pack("f32", components: ["text_encoder", "tokenizer", "processor"])
        let a = try Self.embeddings(imported), b = try Self.embeddings(reference)
        for (i, (x, y)) in zip(a, b).enumerated() {
            #expect(x.count == y.count && x.map(\.bitPattern) == y.map(\.bitPattern), "prompt \(i)")
        }
        #expect(try Self.editEmbeddings(imported) == Self.editEmbeddings(reference))
    }

    @Test("every quantized GGUF type imports to the same embeddings as its decoded weights in safetensors", arguments: ["q8_0", "q4_0", "q4_1", "q5_0", "q5_1"])
    func quantizedImportEqualsDecodedSafetensors(_ type: String) throws {
        let (imported, _) = try Self.importPack("lm-\(type).gguf", scheme: .f32, name: "gguf-\(type)")
        let reference = try Self.convertSafetensors(try Self.decodedSafetensorsRoot("lm-\(type).gguf"), name: "st-\(type)")
        let a = try Self.embeddings(imported), b = try Self.embeddings(reference)
        for (i, (x, y)) in zip(a, b).enumerated() {
            #expect(x.count == y.count && x.map(\.bitPattern) == y.map(\.bitPattern), "\(type) prompt \(i)")
        }
        // The vision tower comes from the same F32 mmproj for every type: its image path is checked once.
        if type == "q4_1" { #expect(try Self.editEmbeddings(imported) == Self.editEmbeddings(reference)) }
    }

    @Test("matching schemes: Q8_0 -> q8:32 and Q4_0 -> q4:32 with error 0; the others re-quantized within their measured bounds")
    func matchingSchemesAndTheirExtraError() throws {
        // Worst matrix error of the tiny model's weights (GGUFImport.matchingSchemes), with headroom.
        let bound: [String: (scheme: String, maxError: Double)] = [
            "q8_0": ("q8", 0), "q4_0": ("q4", 0), "q5_0": ("q5s", 0.004), "q4_1": ("q6s", 0.03), "q5_1": ("q8s", 0.008),
        ]
        for (type, want) in bound.sorted(by: { $0.key < $1.key }) {
            let (_, summary) = try Self.importPack("lm-\(type).gguf", scheme: nil, name: "match-\(type)")
            let matrices = summary.tensors.filter { $0.scheme != "f32" }
            #expect(!matrices.isEmpty)
            for t in matrices {
                #expect(t.scheme == want.scheme && (want.scheme.hasPrefix("q8s") || t.group == 32), "\(type) \(t.name): \(t.scheme):\(t.group)")
                #expect(t.relRMSE <= want.maxError, "\(type) \(t.name): extra error \(t.relRMSE) > \(want.maxError)")
            }
        }
        let (_, bf16) = try Self.importPack("lm-bf16.gguf", scheme: nil, name: "match-bf16")
        #expect(bf16.tensors.allSatisfy { $0.scheme == "bf16" || $0.scheme == "f32" } && bf16.tensors.contains { $0.scheme == "bf16" })
        #expect(bf16.tensors.allSatisfy { $0.relRMSE == 0 })
    }

    @Test("the tokenizer written from the GGUF tokenizes like the hub's tokenizer files")
    func tokenizerFromGGUFMatchesTheHubFiles() throws {
        let staging = TextEncoderFixtures.tempRoot.appendingPathComponent("tok-\(UInt32.random(in: 0 ... .max))")
        defer { try? FileManager.default.removeItem(at: staging) }
        _ = try GGUFImport.checkpoint(model: Self.gguf("lm-q8_0.gguf"), mmproj: nil, tokenizer: nil, staging: staging)
        let written = try Qwen2Tokenizer.load(directory: staging.appendingPathComponent("tokenizer").path)
        let hub = try Qwen2Tokenizer.load(directory: TextEncoderFixtures.model + "/tokenizer")
        #expect(written.idLimit == hub.idLimit)
        for id in 0 ..< hub.idLimit { #expect(written.token(for: id) == hub.token(for: id), "id \(id)") }
        #expect(written.addedTokens.map(\.content) == hub.addedTokens.map(\.content))
        let root = try JSONSerialization.jsonObject(with: Data(contentsOf: TextEncoderFixtures.fixtures.appendingPathComponent("tokenizer_fuzz.json"))) as! [String: Any]
        var differ = 0
        for c in root["cases"] as! [[String: Any]] {
            let text = String(decoding: Data(base64Encoded: c["utf8"] as! String)!, as: UTF8.self)
            if written.encode(text) != hub.encode(text) { differ += 1 }
        }
        #expect(differ == 0)
    }

    @Test("--tokenizer: the hub folder is checked and carried; a folder of another vocabulary is refused, naming the difference")
    func tokenizerCheck() throws {
        let hubDir = TextEncoderFixtures.model + "/tokenizer"
        let (pack, _) = try Self.importPack("lm-q8_0.gguf", scheme: .f32, tokenizer: hubDir, name: "tokcheck")
        #expect(FileManager.default.contentsEqual(atPath: pack + "/tokenizer/tokenizer.json", andPath: hubDir + "/tokenizer.json"))

        let bad = TextEncoderFixtures.tempRoot.appendingPathComponent("badtok-\(UInt32.random(in: 0 ... .max))")
        try FileManager.default.createDirectory(at: bad, withIntermediateDirectories: true)
        // vocab.json + merges.txt with the first two merges swapped.
        for f in ["vocab.json", "tokenizer_config.json"] {
            try FileManager.default.copyItem(atPath: hubDir + "/" + f, toPath: bad.appendingPathComponent(f).path)
        }
        var lines = try String(contentsOfFile: hubDir + "/merges.txt", encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
        lines.swapAt(1, 2)
        try lines.joined(separator: "\n").write(to: bad.appendingPathComponent("merges.txt"), atomically: true, encoding: .utf8)
        let e = errorText { _ = try Self.importPack("lm-q8_0.gguf", scheme: .f32, tokenizer: bad.path, name: "badtok") }
        #expect(e?.contains("does not match the tokenizer of") == true && e?.contains("merge 0") == true, "\(e ?? "no error")")
    }

    @Test("the wrong file in either place is refused with what was expected")
    func wrongFilesAreRefused() throws {
        let staging = TextEncoderFixtures.tempRoot.appendingPathComponent("wrong-\(UInt32.random(in: 0 ... .max))")
        defer { try? FileManager.default.removeItem(at: staging) }
        let swapped = errorText { _ = try GGUFImport.checkpoint(model: Self.mmproj, mmproj: nil, tokenizer: nil, staging: staging) }
        #expect(swapped?.contains("general.architecture is \"clip\", expected \"qwen2vl\"") == true, "\(swapped ?? "no error")")
        let lmAsProjector = errorText {
            _ = try GGUFImport.checkpoint(model: Self.gguf("lm-q8_0.gguf"), mmproj: Self.gguf("lm-q4_0.gguf"), tokenizer: nil, staging: staging)
        }
        #expect(lmAsProjector?.contains("expected a Qwen2.5-VL vision projector") == true, "\(lmAsProjector ?? "no error")")
        let blocks = errorText { _ = try GGUFImport.checkpoint(model: Self.gguf("blocks.gguf"), mmproj: nil, tokenizer: nil, staging: staging) }
        #expect(blocks?.contains("blocks.gguf") == true && blocks?.contains("\"blocks\"") == true, "\(blocks ?? "no error")")
    }

    @Test("qwen-quant convert MODEL.gguf --mmproj: a pack, a JSON summary, no staging folder left; --mmproj without a GGUF is refused")
    func cli() throws {
        let quant = URL(fileURLWithPath: QwenRunProcess.binary).deletingLastPathComponent().appendingPathComponent("qwen-quant").path
        let dir = TextEncoderFixtures.tempRoot.appendingPathComponent("cli-\(UInt32.random(in: 0 ... .max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        func run(_ args: [String]) throws -> QwenRunProcess.Run {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: quant)
            p.arguments = args
            let out = Pipe(), err = Pipe()
            p.standardOutput = out; p.standardError = err
            try p.run()
            let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return .init(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
        }
        let pack = dir.appendingPathComponent("te.pack").path
        let r = try run(["convert", Self.gguf("lm-q4_0.gguf"), "--mmproj", Self.mmproj, "-o", pack, "--json", "--threads", "2"])
        #expect(r.status == 0, "\(r.stderr)")
        let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        #expect((json?["tensors"] as? [[String: Any]])?.contains { $0["scheme"] as? String == "q4" } == true)
        #expect(r.stderr.contains("extra error of the import"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["te.pack"])
        #expect(FileManager.default.fileExists(atPath: pack + "/processor/preprocessor_config.json"))
        let bad = try run(["convert", TextEncoderFixtures.model, "--mmproj", Self.mmproj, "-o", dir.appendingPathComponent("x").path])
        #expect(bad.status != 0 && bad.stderr.contains("--mmproj and --tokenizer go with a .gguf SRC"), "\(bad.stderr)")
    }
}

/// The error message of a throwing expression, or nil when it did not throw.
private func errorText(_ body: () throws -> Void) -> String? {
    do { try body(); return nil } catch { return "\(error)" }
}

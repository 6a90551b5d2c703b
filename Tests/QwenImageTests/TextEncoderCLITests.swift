import Foundation
import Quant
import Testing
@testable import QwenImage

// `qwen-run encode` end to end (the binary `swift test` builds next to the test bundle): outputs match
// the reference, bad input exits non-zero with a clear message and leaves no output file.

@Suite("qwen-run encode", .serialized)
struct TextEncoderCLITests {
    typealias Run = QwenRunProcess.Run

    static let binary = QwenRunProcess.binary

    func run(_ args: [String]) throws -> Run { try QwenRunProcess.run(args) }

    func tempFile(_ name: String) -> String { TF.tempRoot.appendingPathComponent("\(UInt32.random(in: 0 ... .max))-\(name)").path }

    @Test("single prompt with a negative prompt, f32 and bf16 outputs, JSON summary")
    func singlePrompt() throws {
        #expect(FileManager.default.isExecutableFile(atPath: Self.binary), "qwen-run not built at \(Self.binary)")
        let packPath = try TF.pack("f32")
        let refs = try TF.refs()
        let c = try TF.singlePrompts()[1]
        let out = tempFile("p1.safetensors")
        let r = try run(["encode", "--pack", packPath, "--prompt", c.prompt, "--negative-prompt", try TF.singlePrompts()[0].prompt,
                         "--out", out, "--threads", "2", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let f = try SafetensorsFile(path: out)
        #expect(TF.relL2(try f.floats("prompt_embeds"), try refs.floats("\(c.prefix).prompt_embeds")) <= Tolerances.textF32RelL2)
        #expect(try f.int64s("prompt_embeds_mask") == (try refs.int64s("\(c.prefix).prompt_embeds_mask")))
        #expect(TF.relL2(try f.floats("negative_prompt_embeds"), try refs.floats("t2i.p0.prompt_embeds")) <= Tolerances.textF32RelL2)
        #expect(try f.info("prompt_embeds").dtype == .F32)
        #expect(try f.info("prompt_embeds_mask").dtype == .I64)
        let summary = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        #expect(summary?["tokens"] as? Int == 54 + 41)
        print("qwen-run encode (tiny model, f32 pack, 2 prompts): \(summary?["seconds"] ?? "?") s, peak RSS \(summary?["peak_rss"] ?? "?")")

        let outBF16 = tempFile("p1-bf16.safetensors")
        let r2 = try run(["encode", "--pack", packPath, "--prompt", c.prompt, "--out", outBF16, "--dtype", "bf16"])
        #expect(r2.status == 0, "\(r2.stderr)")
        let g = try SafetensorsFile(path: outBF16)
        #expect(try g.info("prompt_embeds").dtype == .BF16)
        #expect(TF.relL2(try g.floats("prompt_embeds"), try refs.floats("\(c.prefix).prompt_embeds")) <= Tolerances.bf16OutputRelL2)
    }

    @Test("--bf16-dot on a bf16 pack: within upstream bf16's error of the reference, and says so in the summary")
    func bf16Dot() throws {
        let packPath = try TF.pack("bf16")
        let refs = try TF.refs()
        let c = try TF.singlePrompts()[1]
        let exact = tempFile("exact.safetensors"), fast = tempFile("fast.safetensors")
        let r0 = try run(["encode", "--pack", packPath, "--prompt", c.prompt, "--out", exact, "--json"])
        let r1 = try run(["encode", "--pack", packPath, "--prompt", c.prompt, "--out", fast, "--json", "--bf16-dot"])
        #expect(r0.status == 0 && r1.status == 0, "\(r0.stderr)\(r1.stderr)")
        let ref = try refs.floats("\(c.prefix).prompt_embeds")
        let e = try SafetensorsFile(path: exact).floats("prompt_embeds"), f = try SafetensorsFile(path: fast).floats("prompt_embeds")
        let s0 = try JSONSerialization.jsonObject(with: Data(r0.stdout.utf8)) as? [String: Any]
        let s1 = try JSONSerialization.jsonObject(with: Data(r1.stdout.utf8)) as? [String: Any]
        #expect(s0?["bf16_dot"] == nil)
        #expect(TF.relL2(e, ref) <= Tolerances.textF32RelL2)
        if s1?["bf16_dot"] as? Bool == true {
            let err = TF.relL2(f, ref)
            print("qwen-run encode --bf16-dot (tiny model, bf16 pack): rel L2 \(err) against the f32 reference")
            #expect(err <= Tolerances.bf16DotRelL2)
            #expect(TF.relL2(f, e) >= Tolerances.bf16DotMinRelL2, "the bf16 dot path gave the exact result: did it run?")
        } else {   // no AVX512-BF16 here: the exact path, with a note
            #expect(r1.stderr.contains("--bf16-dot"), "\(r1.stderr)")
            #expect(TF.relL2(f, ref) <= Tolerances.textF32RelL2)
        }
    }

    @Test("--stream direct and --stream mapped give byte-identical embeddings; a bad mode is refused")
    func streamModes() throws {
        let packPath = try TF.pack("bf16")
        let c = try TF.singlePrompts()[1]
        var outputs: [Data] = []
        for mode in ["direct", "mapped"] {
            let out = tempFile("stream-\(mode).safetensors")
            let r = try run(["encode", "--pack", packPath, "--prompt", c.prompt, "--out", out, "--stream", mode])
            #expect(r.status == 0, "\(r.stderr)")
            outputs.append(try Data(contentsOf: URL(fileURLWithPath: out)))
        }
        #expect(outputs[0] == outputs[1])
        let bad = try run(["encode", "--pack", packPath, "--prompt", c.prompt, "--out", tempFile("bad.safetensors"), "--stream", "fast"])
        #expect(bad.status != 0 && bad.stderr.contains("--stream"), "\(bad.stderr)")
    }

    @Test("prompts file (JSON Lines) reproduces the batched reference")
    func promptsFile() throws {
        let packPath = try TF.pack("bf16")
        let prompts = try TF.singlePrompts().map(\.prompt)
        let file = tempFile("prompts.jsonl")
        let lines = try prompts.map { String(decoding: try JSONSerialization.data(withJSONObject: $0, options: [.fragmentsAllowed]), as: UTF8.self) }
        try (lines.joined(separator: "\n") + "\n").write(toFile: file, atomically: true, encoding: .utf8)
        let out = tempFile("batch.safetensors")
        let r = try run(["encode", "--pack", packPath, "--prompts-file", file, "--out", out, "--max-ram", "1G"])
        #expect(r.status == 0, "\(r.stderr)")
        let f = try SafetensorsFile(path: out), refs = try TF.refs()
        #expect(try f.info("prompt_embeds").shape == (try refs.info("t2i.batch.prompt_embeds")).shape)
        #expect(TF.relL2(try f.floats("prompt_embeds"), try refs.floats("t2i.batch.prompt_embeds")) <= Tolerances.textF32RelL2)
        #expect(try f.int64s("prompt_embeds_mask") == (try refs.int64s("t2i.batch.prompt_embeds_mask")))
        #expect(r.stderr.contains("plan:"))
    }

    @Test("bad input: clear error, non-zero exit, no output file")
    func badInput() throws {
        let packPath = try TF.pack("f32")
        let noText = try TF.pack("f32", components: ["vae"])
        let badFile = tempFile("bad.jsonl")
        var bytes = Data("\"ok\"\n\"bad ".utf8); bytes.append(0xC3); bytes.append(contentsOf: Array("\"\n".utf8))
        try bytes.write(to: URL(fileURLWithPath: badFile))
        let cases: [([String], String)] = [
            (["--prompt", ""], "empty"),
            (["--prompts-file", badFile], "line 2"),
            (["--prompts-file", badFile + ".missing"], "cannot read"),
            (["--prompt", "a cat", "--max-ram", "2M"], "too small"),
            (["--prompt", "a cat", "--image", "x.png"], "x.png: file not found"),  // the vision path reads the image
            (["--prompt", "a cat", "--max-sequence-length", "2000"], "1024"),
            (["--prompt", "a cat", "--negative-prompt", ""], "--negative-prompt is empty"),
        ]
        for (args, message) in cases {
            let out = tempFile("bad.safetensors")
            let r = try run(["encode", "--pack", packPath, "--out", out] + args)
            #expect(r.status != 0, "\(args)")
            #expect(r.stderr.contains(message), "\(args): \(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: out), "\(args) left an output file")
        }
        let out = tempFile("bad.safetensors")
        let r = try run(["encode", "--pack", noText, "--prompt", "a cat", "--out", out])
        #expect(r.status == 1 && r.stderr.contains("text_encoder") && !FileManager.default.fileExists(atPath: out), "\(r.stderr)")
        let r2 = try run(["encode", "--pack", packPath, "--prompt", "a cat", "--out", tempFile("no/such/dir/x.safetensors")])
        #expect(r2.status != 0 && r2.stderr.contains("does not exist (create it first)"), "\(r2.stderr)")
        let r3 = try run(["encode", "--pack", tempFile("no-pack"), "--prompt", "a cat", "--out", out])
        #expect(r3.status == 1 && r3.stderr.hasPrefix("error: ") && !FileManager.default.fileExists(atPath: out), "\(r3.stderr)")
    }

    @Test("1 and 2 threads give bit-identical embeddings (q4 pack)")
    func threadInvariance() throws {
        let packPath = try TF.pack("q4")
        let prompts = try TF.singlePrompts().map(\.prompt)
        let file = tempFile("threads.jsonl")
        let lines = try prompts.map { String(decoding: try JSONSerialization.data(withJSONObject: $0, options: [.fragmentsAllowed]), as: UTF8.self) }
        try lines.joined(separator: "\n").write(toFile: file, atomically: true, encoding: .utf8)
        var outputs: [[Float]] = []
        for t in ["1", "2"] {
            let out = tempFile("threads-\(t).safetensors")
            let r = try run(["encode", "--pack", packPath, "--prompts-file", file, "--out", out, "--threads", t])
            #expect(r.status == 0, "\(r.stderr)")
            outputs.append(try SafetensorsFile(path: out).floats("prompt_embeds"))
        }
        #expect(outputs[0] == outputs[1])
    }

    @Test("a corrupted layer shard: the checksum error names the tensor, no output")
    func corruptedShard() throws {
        let packPath = try TF.copy(pack: try TF.pack("q8"), name: "corrupt")
        let shard = packPath + "/text_encoder/layers.1.qwshard"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: shard))
        bytes[bytes.count - 100] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: shard))
        let out = tempFile("corrupt.safetensors")
        let r = try run(["encode", "--pack", packPath, "--prompt", "a cat", "--out", out])
        #expect(r.status == 1, "\(r.stderr)")
        #expect(r.stderr.contains("checksum") && r.stderr.contains("model.layers.1."), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    @Test("a prompt over the maximum length is truncated with a warning")
    func longPrompt() throws {
        let packPath = try TF.pack("q8")
        let out = tempFile("long.safetensors")
        let r = try run(["encode", "--pack", packPath, "--prompt", String(repeating: "a red fox, ", count: 400),
                         "--out", out, "--max-sequence-length", "512"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("truncated"))
        #expect(try SafetensorsFile(path: out).info("prompt_embeds").shape == [1, 512, 64])
    }
}

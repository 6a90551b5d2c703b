import Foundation
import Quant
import Testing
@testable import QwenImage

// `qwen-run vision` and `qwen-run encode --image` end to end (the binary built beside the test bundle):
// outputs match the oracle; every kind of bad input exits non-zero with a message naming the problem
// and leaves no output file.

@Suite("qwen-run vision / encode --image", .serialized)
struct VisionCLITests {
    typealias Run = QwenRunProcess.Run

    static let binary = QwenRunProcess.binary

    func run(_ args: [String]) throws -> Run { try QwenRunProcess.run(args) }

    func temp(_ name: String) -> String {
        TinyPacks.dir.appendingPathComponent("cli-\(UInt32.random(in: 0 ... .max))-\(name)").path
    }

    var imageA: String { VisionFixtures.ref("images/edit_A.png") }
    var imageB: String { VisionFixtures.ref("images/edit_B.png") }

    @Test func visionWritesImageEmbeds() throws {
        #expect(FileManager.default.isExecutableFile(atPath: Self.binary), "qwen-run not built at \(Self.binary)")
        let out = temp("ab.safetensors")
        let r = try run(["vision", "--pack", try TinyPacks.path(.f32), "--image", imageA, "--image", imageB,
                         "--preresize", "none", "--out", out, "--threads", "2", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let f = try SafetensorsFile(path: out)
        let ref = try VisionFixtures.file("editplus2.safetensors")
        #expect(try f.int64s("image_grid_thw") == (try ref.int64s("editplus2.image_grid_thw")))
        #expect(try f.info("image_embeds").shape == [36, 64])
        let e = Metrics.relL2(try f.floats("image_embeds"), try ref.floats("editplus2.image_embeds"))
        #expect(e <= Tolerances.visionRelL2, "image_embeds rel L2 \(e)")
        let summary = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        #expect(summary?["tokens"] as? Int == 36)
    }

    @Test func encodeWithImageMatchesReference() throws {
        let (prompt, _, _) = try EditCases.info("edit1")
        let out = temp("edit1.safetensors")
        let r = try run(["encode", "--pack", try TinyPacks.path(.bf16), "--prompt", prompt, "--image", imageA,
                         "--preresize", "none", "--negative-prompt", " ", "--out", out, "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let f = try SafetensorsFile(path: out)
        let ref = try VisionFixtures.file("edit1.safetensors")
        let e = Metrics.relL2(try f.floats("prompt_embeds"), try ref.floats("edit1.prompt_embeds"))
        #expect(e <= Tolerances.editPromptRelL2, "prompt_embeds rel L2 \(e)")
        #expect(try f.int64s("prompt_embeds_mask") == (try ref.int64s("edit1.prompt_embeds_mask")))
        #expect(try f.info("negative_prompt_embeds").shape.count == 3)
    }

    /// The default pre-resize (auto). Edit-Plus: 140x112 -> calculate_dimensions(384², 1.25) = 416x352 (Lanczos),
    /// smart_resize -> 420x364 (416/28 = 14.86 -> 15, 352/28 = 12.57 -> 13) = 26x30 patches. (Edit's 1024²
    /// target gives 5,412 patches, too slow for a debug-build test; its geometry is checked in
    /// VisionPreprocessTests against the upstream functions.)
    @Test func visionPreresizeAuto() throws {
        let plus = temp("plus.safetensors")
        let r = try run(["vision", "--pack", try TinyPacks.path(.f32), "--image", imageA, "--mode", "edit-plus", "--out", plus,
                         "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try SafetensorsFile(path: plus).int64s("image_grid_thw") == [1, 26, 30])
        let summary = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        #expect((summary?["resized_hw"] as? [[Int]]) == [[364, 420]])
        let e = VisionGeometry.preresizeTarget(width: 140, height: 112, mode: .edit)
        #expect(e.width == 1152 && e.height == 928)
        let s = try VisionPreprocessor().targetSize(height: e.height, width: e.width, path: "A")
        #expect(s.height == 924 && s.width == 1148)
    }

    func expectFailure(_ args: [String], out: String, status: Int32 = 1, mentions: [String]) throws {
        let r = try run(args)
        #expect(r.status == status, "exit \(r.status) for \(args): \(r.stderr)")
        for m in mentions { #expect(r.stderr.contains(m), "stderr should mention '\(m)': \(r.stderr)") }
        #expect(!FileManager.default.fileExists(atPath: out), "no output on failure")
    }

    @Test func badInputs() throws {
        let pack = try TinyPacks.path(.f32)
        let out = temp("never.safetensors")
        // unreadable
        try expectFailure(["vision", "--pack", pack, "--image", "/nonexistent/x.png", "--out", out], out: out,
                          mentions: ["/nonexistent/x.png", "not found"])
        // truncated
        let truncated = temp("truncated.png")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: imageA))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: truncated))
        try expectFailure(["vision", "--pack", pack, "--image", truncated, "--out", out], out: out, mentions: [truncated, "truncated"])
        // unsupported format
        let text = temp("notes.png")
        try Data("not an image at all".utf8).write(to: URL(fileURLWithPath: text))
        try expectFailure(["encode", "--pack", pack, "--prompt", "x", "--image", text, "--out", out], out: out,
                          mentions: [text, "unsupported format"])
        // too small for the processor (without the pipeline's pre-resize)
        let tiny = temp("tiny.png")
        try ImageFile.writePNG(Image8(width: 20, height: 30, channels: 3, pixels: [UInt8](repeating: 90, count: 20 * 30 * 3)), to: tiny)
        try expectFailure(["vision", "--pack", pack, "--image", tiny, "--preresize", "none", "--out", out], out: out,
                          mentions: [tiny, "too small"])
        // too large for the pixel cap, which --max-pixels raises
        try expectFailure(["vision", "--pack", pack, "--image", imageA, "--max-pixels", "10000", "--out", out], out: out,
                          mentions: ["edit_A.png", "--max-pixels"])
        let ok = temp("raised.safetensors")
        let r = try run(["vision", "--pack", pack, "--image", imageA, "--max-pixels", "15680", "--preresize", "none", "--out", ok])
        #expect(r.status == 0, "\(r.stderr)")
        // more images than the mode allows: a usage error
        try expectFailure(["encode", "--pack", pack, "--prompt", "x", "--image", imageA, "--image", imageB, "--mode", "edit",
                           "--out", out], out: out, status: 64, mentions: ["exactly one"])
        try expectFailure(["vision", "--pack", pack, "--image", imageA, "--image", imageB, "--mode", "edit", "--out", out],
                          out: out, status: 64, mentions: ["exactly one"])
        try expectFailure(["vision", "--pack", pack, "--image", imageA, "--preresize", "sometimes", "--out", out],
                          out: out, status: 64, mentions: ["--preresize"])
        // a pack without a vision tower
        let vaeOnly = try TinyPacks.path(.f32, components: ["vae"])
        try expectFailure(["vision", "--pack", vaeOnly, "--image", imageA, "--out", out], out: out, mentions: ["text_encoder"])
        try expectFailure(["encode", "--pack", vaeOnly, "--prompt", "x", "--image", imageA, "--out", out], out: out,
                          mentions: ["text_encoder"])
    }
}

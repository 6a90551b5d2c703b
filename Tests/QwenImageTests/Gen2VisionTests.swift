import Foundation
import Quant
import Kernels
import Testing
@testable import QwenImage

/// Qwen-Image 2.1's reference images: the Qwen3-VL vision tower, `QwenImage21Pipeline`'s image-conditioned
/// prompts (DeepStack, interleaved 3-D mrope, `image_pad_mask`) and its image preparation, against
/// `Tests/Fixtures/gen2/refs/gen2_ti2i.safetensors` (make_gen2.py, MANIFEST.md).
@Suite("Qwen-Image 2.1 vision and image-conditioned prompts", .serialized) struct Gen2VisionTests {
    static let refsPath = TextEncoderFixtures.fixtures.appendingPathComponent("gen2/refs/gen2_ti2i.safetensors").path
    // make_gen2.py's TI2I_PROMPTS and image sets.
    static let prompts = ["one": ["Make the sofa blue"],
                          "multi": ["Put the cat from <image1> on the sofa of <image2>, lit like <image3>"],
                          "batch": ["a fox", "the same scene at night with long exposure light trails and rain"],
                          "call": ["Remove the background"]]
    static let imageSets = ["one": ["A"], "multi": ["A", "B", "C"], "batch": ["A", "B"]]

    static func pack(_ scheme: PackScheme) throws -> String {
        try Gen2Packs.path(scheme, components: ["text_encoder", "processor"], group: 32)
    }

    static func encoder(_ scheme: PackScheme) throws -> ImagePromptEncoder21 {
        let p = try pack(scheme)
        return try ImagePromptEncoder21(pack: try Pack(path: p), packPath: p)
    }

    static func refs() throws -> SafetensorsFile { try SafetensorsFile(path: refsPath) }

    /// A test image of the references as the decoder would give it (RGB or RGBA straight alpha).
    static func image(_ name: String, _ f: SafetensorsFile) throws -> VisionSourceImage {
        let info = try #require(f.tensors["image.\(name)"])
        let px = try f.floats("image.\(name)").map { UInt8($0) }
        return try VisionSourceImage(width: info.shape[1], height: info.shape[0], channels: info.shape[2], pixels: px)
    }

    static func grids(_ f: SafetensorsFile, _ key: String) throws -> [(t: Int, h: Int, w: Int)] {
        let g = try f.int64s(key).map(Int.init)
        return stride(from: 0, to: g.count, by: 3).map { (g[$0], g[$0 + 1], g[$0 + 2]) }
    }

    @Test("the vision config is read as Qwen3-VL and the converter keeps the whole tower")
    func configAndPack() throws {
        let e = try Self.encoder(.f32)
        let v = e.tower.config
        #expect(v.family == .qwen3vl && v.hiddenAct == "gelu_pytorch_tanh" && v.numPositionEmbeddings == 64)
        #expect(v.positionGridSide == 8 && v.deepstackVisualIndexes == [0, 1, 2] && v.patchSize == 16)
        let pack = try Pack(path: try Self.pack(.f32))
        let names = try pack.component("text_encoder").tensorNames
        #expect(names.contains("visual.pos_embed.weight") && names.contains("visual.deepstack_merger_list.2.linear_fc2.weight"))
        #expect(names.contains("visual.patch_embed.proj.bias") && names.contains("visual.blocks.3.norm2.bias"))
    }

    @Test("a malformed Qwen3-VL vision_config is refused with the field named")
    func badVisionConfig() throws {
        let good = try Data(contentsOf: URL(fileURLWithPath: Gen2Packs.model + "/text_encoder/config.json"))
        let base = try JSONSerialization.jsonObject(with: good) as! [String: Any]
        for (key, value, expect) in [("num_position_embeddings", 60 as Any, "num_position_embeddings"),
                                     ("deepstack_visual_indexes", [0, 4] as Any, "deepstack_visual_indexes"),
                                     ("deepstack_visual_indexes", [1, 1] as Any, "deepstack_visual_indexes"),
                                     ("hidden_act", "silu" as Any, "hidden_act")] {
            var cfg = base
            var v = cfg["vision_config"] as! [String: Any]
            v[key] = value
            cfg["vision_config"] = v
            let data = try JSONSerialization.data(withJSONObject: cfg)
            do {
                _ = try VisionConfig.fromTextEncoderConfig(data, file: "config.json")
                Issue.record("\(key) = \(value) was accepted")
            } catch let e as QwenImageError {
                #expect(e.description.contains(expect) && e.description.contains("config.json"), "\(e.description)")
            }
        }
    }

    @Test("whole-image attention on dense per-head copies equals the segment-id path, and its bf16 form is within bf16 error (two images, 320 and 280 patches)")
    func perSegmentAttention() throws {
        let v = try Self.encoder(.f32).tower.config
        let dv = v.hiddenSize, n = 600
        var rng = SystemRandomNumberGenerator()
        func rand(_ count: Int) -> [Float] { (0..<count).map { _ in Float.random(in: -1...1, using: &rng) } }
        let attn = VisionAttention(qkv: try makeWeight("qkv", rand(3 * dv * dv), rows: 3 * dv, cols: dv), qkvBias: rand(3 * dv),
                                   proj: try makeWeight("proj", rand(dv * dv), rows: dv, cols: dv), projBias: rand(dv))
        let layout = try PatchLayout(grids: [(1, 20, 16), (1, 20, 14)], mergeSize: 2)
        #expect(layout.patchCount == n && VisionAttention.runs(layout.segments).map(\.count) == [320, 280])
        var cos = [Float](repeating: 0, count: n * v.headDim / 2), sin = cos
        qk_rope_table_2d(layout.row, layout.col, Int64(n), Int64(v.headDim), v.ropeTheta, &cos, &sin)
        let x0 = rand(n * dv)
        var outputs: [[Float]] = []
        for (threshold, bf16Dot) in [(1, false), (Int.max, false), (1, true)] {
            var s = BlockScratch(patches: n, config: v, gated: false)
            s.normed = x0
            var x = [Float](repeating: 0, count: n * dv)
            attn.add(to: &x, patches: n, cos: cos, sin: sin, segments: layout.segments, scratch: &s, config: v,
                     wholeSegmentRows: threshold, bf16Dot: bf16Dot)
            outputs.append(x)
        }
        let err = Metrics.relL2(outputs[0], outputs[1])
        #expect(err <= 1e-6, "per-image attention vs segment ids: rel L2 \(err)")
        // The bf16 path (queries of 320 rows in chunks of 256, K and V in bf16): within bf16's error, not exact.
        let dotErr = Metrics.relL2(outputs[2], outputs[1])
        #expect(dotErr <= Tolerances.bf16DotRelL2 && dotErr >= Tolerances.bf16DotMinRelL2, "bf16 attention: rel L2 \(dotErr)")
    }

    @Test("pixel_values: RGBA pasted onto white, smart_resize with factor 32, 16-px patches, as the processor gives them")
    func pixelValues() throws {
        let f = try Self.refs()
        let e = try Self.encoder(.f32)
        let names = Self.imageSets["multi"]!
        let input = try VisionInput.prepare21(images: try names.map { try Self.image($0, f) }, paths: names, outputResolution: nil,
                                              processor: e.processor)
        let want = try Self.grids(f, "ti2i.multi.image_grid_thw")
        #expect(input.grids.map { [$0.t, $0.h, $0.w] } == want.map { [$0.t, $0.h, $0.w] })
        let ref = try f.floats("ti2i.multi.pixel_values")
        #expect(input.pixelValues.count == ref.count)
        let maxAbs = zip(input.pixelValues, ref).map { Double(abs($0 - $1)) }.max() ?? 1
        #expect(maxAbs <= Tolerances.pixelValuesMaxAbs, "max |Δ| \(maxAbs)")
        // Image B's transparency is partial, so the flattening onto white is exercised.
        let alpha = try Self.image("B", f).pixels.enumerated().filter { $0.offset % 4 == 3 }.map(\.element)
        #expect(alpha.contains { $0 > 0 && $0 < 255 })
    }

    @Test("the tower's merger and DeepStack outputs match Qwen3VLVisionModel (f32 and bf16 packs)",
          arguments: [PackScheme.f32, .bf16])
    func tower(_ scheme: PackScheme) throws {
        let f = try Self.refs()
        let tower = try Self.encoder(scheme).tower
        for c in ["one", "multi"] {
            let out = try tower.forward(pixelValues: c == "multi" ? try f.floats("ti2i.multi.pixel_values")
                                            : try Self.pixels(c, f, tower: tower),
                                        grids: try Self.grids(f, "ti2i.\(c).image_grid_thw"))
            let e = Metrics.relL2(out.embeds, try f.floats("ti2i.\(c).image_embeds"))
            print("gen2 vision \(scheme) \(c): image_embeds rel L2 \(e)")
            #expect(e <= Tolerances.visionRelL2, "\(c) \(scheme) image_embeds rel L2 \(e)")
            #expect(out.deepstack.count == 3)
            for k in 0..<3 {
                let d = Metrics.relL2(out.deepstack[k], try f.floats("ti2i.\(c).deepstack\(k)"))
                #expect(d <= Tolerances.visionRelL2, "\(c) \(scheme) deepstack\(k) rel L2 \(d)")
            }
        }
    }

    /// pixel_values of a case from its images (the "multi" references hold the only stored copy).
    static func pixels(_ c: String, _ f: SafetensorsFile, tower: Qwen3VisionTower) throws -> [Float] {
        let names = imageSets[c]!
        let p = try ReferenceImages.processor(pack: try Pack(path: try pack(.f32)))
        return try VisionInput.prepare21(images: try names.map { try image($0, f) }, paths: names, outputResolution: nil,
                                         processor: p).pixelValues
    }

    @Test("token ids and 3-D positions match the processor and get_rope_index")
    func idsAndPositions() throws {
        let f = try Self.refs()
        let e = try Self.encoder(.f32)
        for c in ["one", "multi", "batch"] {
            let grids = try Self.grids(f, "ti2i.\(c).image_grid_thw")
            let fake = VisionFeatures(embeds: [Float](repeating: 0, count: grids.reduce(0) { $0 + $1.h * $1.w / 4 } * 64),
                                      deepstack: [], outHidden: 64)
            let (ids, seq) = try e.sequence(prompt: Self.prompts[c]![0], grids: grids, features: fake)
            #expect(ids == (try f.int64s("ti2i.\(c).input_ids")).map(Int.init), "\(c) ids")
            let pos = try f.int64s("ti2i.\(c).position_ids")
            let l = ids.count
            #expect(pos.count == 3 * l)
            #expect(seq.positions.t == Array(pos[0..<l]) && seq.positions.h == Array(pos[l..<2 * l])
                    && seq.positions.w == Array(pos[2 * l..<3 * l]), "\(c) positions")
        }
    }

    /// Encodes a case from its images, as `qwen-run encode --image` does.
    static func encode(_ c: String, _ e: ImagePromptEncoder21, _ f: SafetensorsFile, deepstack: Bool = true) throws -> PromptEmbeddings {
        let names = imageSets[c]!
        var (features, input) = try e.embed(images: try names.map { try image($0, f) }, names: names, outputResolution: nil)
        if !deepstack { features.deepstack = [] }
        return try e.encode([prompts[c]!], grids: input.grids, features: features).embeddings[0]
    }

    @Test("prompt embeddings, mask and image_pad_mask match _get_qwen_prompt_embeds with images (f32, bf16)",
          arguments: [PackScheme.f32, .bf16])
    func promptEmbeddings(_ scheme: PackScheme) throws {
        let f = try Self.refs()
        let e = try Self.encoder(scheme)
        for c in ["one", "multi", "batch"] {
            let got = try Self.encode(c, e, f)
            let want = try f.floats("ti2i.\(c).prompt_embeds")
            #expect(got.embeds.count == want.count, "\(c): \(got.embeds.count) values, reference \(want.count)")
            guard got.embeds.count == want.count else { continue }
            let err = Metrics.relL2(got.embeds, want)
            print("gen2 image-conditioned \(scheme) \(c): rel L2 \(err)")
            #expect(err <= Tolerances.textF32RelL2, "\(c) \(scheme): rel L2 \(err)")
            #expect(got.mask == (try f.int64s("ti2i.\(c).mask")), "\(c) mask")
            #expect(got.imagePadMask == (try f.floats("ti2i.\(c).image_pad_mask")).map { UInt8($0) }, "\(c) image_pad_mask")
        }
    }

    @Test("without DeepStack the embeddings miss the reference: the injection is exercised")
    func deepstackMatters() throws {
        let f = try Self.refs()
        let got = try Self.encode("one", try Self.encoder(.f32), f, deepstack: false)
        let err = Metrics.relL2(got.embeds, try f.floats("ti2i.one.prompt_embeds"))
        #expect(err > 1e-2, "rel L2 without DeepStack \(err)")
    }

    @Test("__call__'s resize to an output_resolution² area (Lanczos on RGBA) then encode_prompt")
    func pipelineResize() throws {
        let f = try Self.refs()
        let e = try Self.encoder(.f32)
        let d = try Self.image("D", f)
        let cases = try JSONSerialization.jsonObject(with: Data(contentsOf: TextEncoderFixtures.fixtures
            .appendingPathComponent("gen2/refs/gen2_cases.json"))) as! [String: Any]
        let res = try #require(cases["ti2i_call_output_resolution"] as? Int)
        // The RGBA image after the pipeline's resize.
        let info = try #require(f.tensors["ti2i.call.resized"])
        let t = VisionGeometry.calculateDimensions(targetArea: res * res, ratio: Double(d.width) / Double(d.height))
        #expect([t.height, t.width] == Array(info.shape.prefix(2)))
        let resized = try PILResample.resizeRGBA(d.pixels, width: d.width, height: d.height, toWidth: t.width,
                                                 toHeight: t.height, filter: .lanczos)
        #expect(resized == (try f.floats("ti2i.call.resized")).map { UInt8($0) })
        let (features, input) = try e.embed(images: [d], names: ["D"], outputResolution: res)
        let got = try e.encode([Self.prompts["call"]!], grids: input.grids, features: features).embeddings[0]
        let err = Metrics.relL2(got.embeds, try f.floats("ti2i.call.prompt_embeds"))
        #expect(err <= Tolerances.textF32RelL2, "rel L2 \(err)")
        #expect(got.imagePadMask == (try f.floats("ti2i.call.image_pad_mask")).map { UInt8($0) })
    }

    @Test("q8s pack: error measured against the f32 reference (reported; loose sanity bound)")
    func quantized() throws {
        let f = try Self.refs()
        let got = try Self.encode("multi", try Self.encoder(.q8s), f)
        let err = Metrics.relL2(got.embeds, try f.floats("ti2i.multi.prompt_embeds"))
        print("gen2 image-conditioned q8s multi: rel L2 \(err)")
        #expect(err <= Tolerances.textQ8RelL2Sanity)
    }

    // MARK: - CLI

    /// A reference image written as a PNG (RGB, or RGBA with its partial alpha).
    static func png(_ name: String, _ f: SafetensorsFile) throws -> String {
        let im = try image(name, f)
        let path = TextEncoderFixtures.tempRoot.appendingPathComponent("gen2-\(name)-\(UInt32.random(in: 0 ... .max)).png").path
        try ImageFile.writePNG(Image8(width: im.width, height: im.height, channels: im.channels, pixels: im.pixels), to: path)
        return path
    }

    @Test("qwen-run encode --image and qwen-run vision on a Qwen-Image 2.1 pack match the references")
    func cli() throws {
        let f = try Self.refs()
        let pack = try Self.pack(.bf16)
        let images = try Self.imageSets["batch"]!.flatMap { ["--image", try Self.png($0, f)] }
        let prompts = TextEncoderFixtures.tempRoot.appendingPathComponent("gen2-batch.jsonl").path
        try Self.prompts["batch"]!.map { "\"\($0)\"" }.joined(separator: "\n").write(toFile: prompts, atomically: true, encoding: .utf8)
        let out = TextEncoderFixtures.tempRoot.appendingPathComponent("gen2-batch-\(UInt32.random(in: 0 ... .max)).safetensors").path
        let r = try QwenRunProcess.run(["encode", "--pack", pack, "--prompts-file", prompts, "--preresize", "none", "--out", out,
                                        "--json"] + images)
        #expect(r.status == 0, "\(r.stderr)")
        let o = try SafetensorsFile(path: out)
        let err = Metrics.relL2(try o.floats("prompt_embeds"), try f.floats("ti2i.batch.prompt_embeds"))
        #expect(err <= Tolerances.textF32RelL2, "rel L2 \(err)")
        #expect(try o.int64s("prompt_embeds_mask") == (try f.int64s("ti2i.batch.mask")))
        #expect(try o.info("image_pad_mask").dtype == .BOOL)
        #expect(try o.floats("image_pad_mask") == (try f.floats("ti2i.batch.image_pad_mask")))

        let vout = TextEncoderFixtures.tempRoot.appendingPathComponent("gen2-vision-\(UInt32.random(in: 0 ... .max)).safetensors").path
        let v = try QwenRunProcess.run(["vision", "--pack", pack, "--preresize", "none", "--out", vout] + images)
        #expect(v.status == 0, "\(v.stderr)")
        let vo = try SafetensorsFile(path: vout)
        #expect(Metrics.relL2(try vo.floats("image_embeds"), try f.floats("ti2i.batch.image_embeds")) <= Tolerances.visionRelL2)
        #expect(Metrics.relL2(try vo.floats("deepstack_embeds_2"), try f.floats("ti2i.batch.deepstack2")) <= Tolerances.visionRelL2)
        #expect(try vo.int64s("image_grid_thw") == (try f.int64s("ti2i.batch.image_grid_thw")))

        // An output resolution out of range: refused before any work, nothing written.
        let res = try QwenRunProcess.run(["vision", "--pack", pack, "--output-resolution", "8", "--out", out + ".res"] + images)
        #expect(res.status != 0 && res.stderr.contains("--output-resolution") && !FileManager.default.fileExists(atPath: out + ".res"))
        // --max-ram is not planned for image prompts: refused rather than ignored.
        let ram = try QwenRunProcess.run(["encode", "--pack", pack, "--prompt", "x", "--max-ram", "1G", "--out", out + ".ram"] + images)
        #expect(ram.status != 0 && ram.stderr.contains("--max-ram") && !FileManager.default.fileExists(atPath: out + ".ram"))
        // A first-generation Edit mode on a 2.1 pack: refused, nothing written.
        let bad = out + ".mode.safetensors"
        let m = try QwenRunProcess.run(["encode", "--pack", pack, "--prompt", "x", "--mode", "edit-plus", "--out", bad] + images)
        #expect(m.status != 0 && m.stderr.contains("--mode") && !FileManager.default.fileExists(atPath: bad), "\(m.stderr)")
    }
}

import Foundation
import Quant
import Testing
@testable import QwenImage

/// Qwen-Image 2.1's text-to-image prompt encoding (Qwen3-VL language model, `QwenImage21Pipeline`)
/// against the references of `Tests/Fixtures/gen2` (MANIFEST.md): single prompts (one empty), a
/// left-padded batch, and the final-normed state the pipeline does not return.
@Suite("Qwen-Image 2.1 text encoder", .serialized) struct Gen2TextEncoderTests {
    static let refs = TextEncoderFixtures.fixtures.appendingPathComponent("gen2/refs/gen2_t2i.safetensors").path
    // make_gen2.py's PROMPTS and BATCH.
    static let prompts = ["A cat sitting on a red sofa, oil painting", "", "一只在雪地里的红狐狸, 35mm film"]
    static let batch = ["a small red fox", "a much longer prompt about a lighthouse on a rocky coast at dusk, waves, long exposure", "x"]

    static func pack(_ scheme: PackScheme) throws -> String {
        try Gen2Packs.path(scheme, components: ["text_encoder"], group: 32)
    }

    static func encoder(_ scheme: PackScheme) throws -> PromptEncoder {
        let p = try pack(scheme)
        return try PromptEncoder(pack: try Pack(path: p), packPath: p)
    }

    @Test("the config is read as Qwen3-VL and the template's drop index comes from the tokenized system message")
    func configAndTemplate() throws {
        let e = try Self.encoder(.f32)
        #expect(e.model.config.family == .qwen3vl && e.model.config.hasQKNorm && !e.model.config.attentionBias)
        #expect(e.model.config.mropeInterleaved && e.model.config.headDim == 16 && e.model.config.ropeTheta == 5_000_000)
        let cases = try JSONSerialization.jsonObject(with: Data(contentsOf: TextEncoderFixtures.fixtures
            .appendingPathComponent("gen2/refs/gen2_cases.json"))) as! [String: Any]
        #expect(e.template.kind == .textToImage21 && e.template.dropIndex == cases["drop_index"] as? Int)
        let refs = try SafetensorsFile(path: Self.refs)
        for (i, p) in Self.prompts.enumerated() {
            let want = try refs.int64s("t2i.p\(i).input_ids").map(Int.init)
            #expect(try e.tokenize([p])[0].ids == want, "prompt \(i)")
        }
    }

    @Test("single prompts (one empty -> \" \") match QwenImage21Pipeline._get_qwen_prompt_embeds; the final-normed state would not")
    func singlePrompts() throws {
        let e = try Self.encoder(.f32)
        let refs = try SafetensorsFile(path: Self.refs)
        for (i, p) in Self.prompts.enumerated() {
            let got = try e.encode([[p]])[0]
            let want = try refs.floats("t2i.p\(i).prompt_embeds")
            #expect(got.embeds.count == want.count, "prompt \(i): \(got.embeds.count) values, reference \(want.count)")
            guard got.embeds.count == want.count else { continue }
            let err = TextEncoderFixtures.relL2(got.embeds, want)
            print("gen2 text encoder f32, prompt \(i): rel L2 \(err)")
            #expect(err <= Tolerances.textF32RelL2, "prompt \(i): rel L2 \(err)")
            #expect(got.mask == (try refs.int64s("t2i.p\(i).mask")))
            // The pipeline hooks the final norm away: the normed state is a different tensor.
            let normed = try refs.floats("t2i.p\(i).normed_state")
            #expect(TextEncoderFixtures.relL2(got.embeds, normed) > 0.1, "prompt \(i): the output looks final-normed")
        }
        // And with the norm applied, the model gives that normed state.
        e.model.appliesFinalNorm = true
        defer { e.model.appliesFinalNorm = false }
        let normed = try e.encode([[Self.prompts[0]]])[0]
        #expect(TextEncoderFixtures.relL2(normed.embeds, try refs.floats("t2i.p0.normed_state")) <= Tolerances.textF32RelL2)
    }

    @Test("a batch is left-padded with positions counting the padding, then right-padded with zeros")
    func batchMatches() throws {
        let e = try Self.encoder(.f32)
        let refs = try SafetensorsFile(path: Self.refs)
        let got = try e.encode([Self.batch])[0]
        let want = try refs.floats("t2i.batch.prompt_embeds")
        #expect(got.batch == 3 && got.embeds.count == want.count)
        guard got.embeds.count == want.count else { return }
        let err = TextEncoderFixtures.relL2(got.embeds, want)
        print("gen2 text encoder f32, batch: rel L2 \(err)")
        #expect(err <= Tolerances.textF32RelL2, "rel L2 \(err)")
        #expect(got.mask == (try refs.int64s("t2i.batch.mask")))
    }

    @Test("bf16 and q8s packs: error measured against the reference")
    func quantizedError() throws {
        let refs = try SafetensorsFile(path: Self.refs)
        let want = try refs.floats("t2i.p0.prompt_embeds")
        for (scheme, bound) in [(PackScheme.bf16, Tolerances.bf16OutputRelL2 * 5), (.q8s, Tolerances.textQ8RelL2Sanity)] {
            let got = try Self.encoder(scheme).encode([[Self.prompts[0]]])[0].embeds
            let err = TextEncoderFixtures.relL2(got, want)
            print("gen2 text encoder \(scheme.rawValue): rel L2 \(err)")
            #expect(err <= bound, "\(scheme.rawValue): rel L2 \(err)")
        }
    }
}

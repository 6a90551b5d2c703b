import Foundation
import Quant
import Testing
@testable import QwenImage

// Parity of the text encoder with the oracle (`refs/t2i.safetensors`, made by diffusers 0.42.1 /
// transformers 5.24 in float32) on packs converted from the committed tiny model.

typealias TF = TextEncoderFixtures

@Suite("Text encoder vs the PyTorch reference", .serialized)
struct TextEncoderParityTests {
    @Test("token ids of the t2i cases, single and batched")
    func tokenIds() throws {
        let packPath = try TF.pack("f32")
        let encoder = try PromptEncoder(pack: try Pack(path: packPath), packPath: packPath)
        let refs = try TF.refs()
        let cases = try TF.singlePrompts()
        let tokenized = try encoder.tokenize(cases.map(\.prompt))
        for (c, t) in zip(cases, tokenized) {
            #expect(t.ids.map(Int64.init) == (try refs.int64s("\(c.prefix).input_ids")), "\(c.prefix)")
            #expect(t.truncatedTokens == 0)
        }
        // Batched: right padding with <|endoftext|>; the valid part equals each single row.
        let batch = try refs.int64s("t2i.batch.input_ids"), mask = try refs.int64s("t2i.batch.attention_mask")
        let width = batch.count / cases.count
        for (b, t) in tokenized.enumerated() {
            let row = Array(batch[b * width ..< (b + 1) * width]), m = Array(mask[b * width ..< (b + 1) * width])
            #expect(Array(row.prefix(t.ids.count)) == t.ids.map(Int64.init))
            #expect(m == Array(repeating: 1, count: t.ids.count) + Array(repeating: 0, count: width - t.ids.count))
            #expect(row.dropFirst(t.ids.count).allSatisfy { $0 == Int64(encoder.tokenizer.padTokenID!) })
        }
    }

    @Test("every hidden state of t2i.p0 (f32 pack)")
    func hiddenStatesP0() throws {
        let packPath = try TF.pack("f32")
        let encoder = try PromptEncoder(pack: try Pack(path: packPath), packPath: packPath)
        let refs = try TF.refs()
        let prompt = try TF.singlePrompts()[0].prompt
        var states: [Int: [Float]] = [:]
        encoder.model.onHiddenState = { i, rows in states[i] = Array(rows) }
        _ = try encoder.encode([[prompt]])
        let layers = encoder.model.config.numHiddenLayers
        #expect(states.count == layers + 1)
        for i in 0 ... layers {
            let ref = try refs.floats("t2i.p0.hidden_states.\(i)")
            let err = TF.relL2(states[i] ?? [], ref)
            print("t2i.p0.hidden_states.\(i): rel L2 \(err)")
            #expect(err <= Tolerances.textF32RelL2, "hidden_states.\(i)")
        }
        let last = try refs.floats("t2i.p0.last_hidden_state")
        #expect(TF.relL2(states[layers] ?? [], last) <= Tolerances.textF32RelL2)
    }

    @Test("single prompts p0, p1, p2", arguments: ["f32", "bf16"])
    func singlePrompts(scheme: String) throws {
        let packPath = try TF.pack(scheme)
        let refs = try TF.refs()
        for c in try TF.singlePrompts() {
            let e = try TF.encode([c.prompt], pack: packPath)
            let ref = try refs.floats("\(c.prefix).prompt_embeds")
            let refMask = try refs.int64s("\(c.prefix).prompt_embeds_mask")
            #expect([e.batch, e.length, e.hidden] == (try refs.info("\(c.prefix).prompt_embeds")).shape)
            let err = TF.relL2(e.embeds, ref)
            print("\(scheme) \(c.prefix).prompt_embeds: rel L2 \(err)")
            #expect(err <= Tolerances.textF32RelL2, "\(c.prefix)")
            #expect(e.mask == refMask)
        }
    }

    @Test("batch of three prompts, right padded", arguments: ["f32", "bf16"])
    func batch(scheme: String) throws {
        let packPath = try TF.pack(scheme)
        let refs = try TF.refs()
        let cases = try TF.singlePrompts()
        let e = try TF.encode(cases.map(\.prompt), pack: packPath)
        #expect([e.batch, e.length, e.hidden] == (try refs.info("t2i.batch.prompt_embeds")).shape)
        let err = TF.relL2(e.embeds, try refs.floats("t2i.batch.prompt_embeds"))
        print("\(scheme) t2i.batch.prompt_embeds: rel L2 \(err)")
        #expect(err <= Tolerances.textF32RelL2)
        #expect(e.mask == (try refs.int64s("t2i.batch.prompt_embeds_mask")))

        // Each batch row equals the prompt encoded alone (zero padded to the batch length).
        for (b, c) in cases.enumerated() {
            let single = try TF.encode([c.prompt], pack: packPath)
            let row = Array(e.embeds[b * e.length * e.hidden ..< (b + 1) * e.length * e.hidden])
            let padded = single.embeds + [Float](repeating: 0, count: (e.length - single.length) * e.hidden)
            #expect(TF.relL2(row, padded) <= Tolerances.textBatchVsSingleRelL2, "row \(b)")
            #expect(row[(single.length * e.hidden)...].allSatisfy { $0 == 0 })
        }
    }

    @Test("strategies (prefetch, one prompt at a time, MLP chunks, zstd) give the same embeddings")
    func strategiesAgree() throws {
        let prompts = try TF.singlePrompts().map(\.prompt)
        let base = try TF.encode(prompts, pack: try TF.pack("f32"))
        let config = try PromptEncoder(pack: try Pack(path: try TF.pack("f32")), packPath: "").model.config
        // (prefetch, tokens per pass, MLP chunk rows): one pass for all three prompts (41 + 54 + 83
        // tokens), one per prompt, and two passes ([p0, p1], [p2]).
        for (prefetch, rows, chunk) in [(false, Int.max, 512), (true, 1, 16), (false, 1, 7), (true, 100, 33)] {
            let plan = TextEncoderPlan.estimate(config: config, weights: TextWeightFootprint(layerBytes: 0, embedBytes: 0),
                                                sequenceLengths: [1], baselineBytes: 0,
                                                prefetch: prefetch, rowsPerPass: rows, mlpChunkRows: chunk)
            let e = try TF.encode(prompts, pack: try TF.pack("f32"), plan: plan)
            #expect(e.mask == base.mask)
            #expect(TF.relL2(e.embeds, base.embeds) <= Tolerances.textBatchVsSingleRelL2, "\(plan)")
        }
        let z = try TF.encode(prompts, pack: try TF.pack("f32", zstd: 3))
        #expect(z.embeds == base.embeds, "zstd pack gives different numbers than the raw pack")
    }

    @Test("quantized packs: errors reported", arguments: ["q8", "q4"])
    func quantized(scheme: String) throws {
        let packPath = try TF.pack(scheme)
        let refs = try TF.refs()
        var worst = 0.0
        for c in try TF.singlePrompts() {
            let e = try TF.encode([c.prompt], pack: packPath)
            #expect(e.mask == (try refs.int64s("\(c.prefix).prompt_embeds_mask")))
            let err = TF.relL2(e.embeds, try refs.floats("\(c.prefix).prompt_embeds"))
            print("\(scheme) \(c.prefix).prompt_embeds: rel L2 \(err)")
            worst = max(worst, err)
        }
        #expect(worst <= (scheme == "q8" ? Tolerances.textQ8RelL2Sanity : Tolerances.textQ4RelL2Sanity))
    }
}

@Suite("Language model with 3-D mrope positions (edit references)", .serialized)
struct TextEncoderMRopeTests {
    /// The edit cases give the merged `inputs_embeds` (vision rows spliced in) and their 3-D position
    /// ids, so the language model's mrope path is checked without the vision tower. Text-only prompts
    /// cannot catch a wrong `mrope_section`; these can (the seqpos variant differs by ~0.5).
    @Test("inputs_embeds + position ids → last hidden state and prompt_embeds", arguments: ["edit1", "editplus2"])
    func editCase(name: String) throws {
        let refs = try SafetensorsFile(path: TF.fixtures.appendingPathComponent("refs/\(name).safetensors").path)
        let packPath = try TF.pack("f32")
        let model = try LanguageModel(pack: try Pack(path: packPath), packPath: packPath)
        let h = model.config.hiddenSize
        let embeds = try refs.floats("\(name).inputs_embeds")
        let ids = try refs.int64s("\(name).input_ids").map(Int.init)
        let l = ids.count

        // Text rows of inputs_embeds are plain embedding rows.
        let looked = try model.embed(ids)
        let imageToken = model.config.imageTokenId!
        var textRows = 0
        for (r, id) in ids.enumerated() where id != imageToken {
            #expect(Array(looked[r * h ..< (r + 1) * h]) == Array(embeds[r * h ..< (r + 1) * h]), "row \(r)")
            textRows += 1
        }
        #expect(textRows > 0 && textRows < l)

        for variant in ["", "seqpos."] {
            let pos = try refs.int64s("\(name).\(variant)position_ids")   // [3, 1, L]
            let positions = try MRopePositions(t: Array(pos[0 ..< l]), h: Array(pos[l ..< 2 * l]), w: Array(pos[2 * l ..< 3 * l]))
            let out = try model.forward(inputsEmbeds: embeds, positions: positions)
            if variant.isEmpty {
                let err = TF.relL2(out, try refs.floats("\(name).last_hidden_state"))
                print("\(name).last_hidden_state: rel L2 \(err)")
                #expect(err <= Tolerances.textF32RelL2)
            }
            let e = try PromptEmbeddings.assemble(hiddenStates: [out], validLengths: [l], hidden: h, dropIndex: 64)
            let err = TF.relL2(e.embeds, try refs.floats("\(name).\(variant)prompt_embeds"))
            print("\(name).\(variant)prompt_embeds: rel L2 \(err)")
            #expect(err <= Tolerances.textF32RelL2)
            #expect(e.mask == (try refs.int64s("\(name).prompt_embeds_mask")))
        }
    }
}

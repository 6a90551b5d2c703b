import Foundation
import Quant
import Testing
@testable import QwenImage

// Config layouts and bad input for the text encoder: each gives a clear, typed error.

@Suite("Text config layouts")
struct TextConfigTests {
    @Test("hub layout (the tiny model's config.json)")
    func hubLayout() throws {
        let path = TF.model + "/text_encoder/config.json"
        let c = try TextConfig.load(try Data(contentsOf: URL(fileURLWithPath: path)), file: path)
        #expect(c.hiddenSize == 64 && c.intermediateSize == 160 && c.numHiddenLayers == 3)
        #expect(c.numAttentionHeads == 4 && c.numKeyValueHeads == 2 && c.headDim == 16)
        #expect(c.mropeSection == [2, 3, 3] && c.ropeTheta == 1_000_000 && c.rmsNormEps == 1e-6)
        #expect(c.vocabSize == 3072 && c.imageTokenId == 3012 && c.visionStartTokenId == 3009)
    }

    @Test("transformers 5.x layout (text_config only, rope_parameters)")
    func transformers5Layout() throws {
        let json = """
        {"model_type": "qwen2_5_vl", "image_token_id": 151655, "dtype": "bfloat16",
         "text_config": {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
           "num_attention_heads": 28, "num_key_value_heads": 4, "rms_norm_eps": 1e-06, "vocab_size": 152064,
           "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]}},
         "vision_config": {"model_type": "qwen2_5_vl_vision", "hidden_size": 1280}}
        """
        let c = try TextConfig.load(Data(json.utf8), file: "config.json")
        #expect(c.hiddenSize == 3584 && c.headDim == 128 && c.kvDim == 512 && c.mropeSection == [16, 24, 24])
        #expect(c.imageTokenId == 151655)
        // Round trip through our own encoding (the 5.x layout).
        let again = try TextConfig.load(try JSONEncoder().encode(c), file: "re-encoded")
        #expect(again == c)
    }

    @Test("flat layout without text_config, rope_theta at the top")
    func flatLayout() throws {
        let json = """
        {"hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 3, "num_attention_heads": 4,
         "num_key_value_heads": 2, "vocab_size": 3072, "rope_theta": 10000.0,
         "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]}}
        """
        let c = try TextConfig.load(Data(json.utf8), file: "config.json")
        #expect(c.ropeTheta == 10000 && c.mropeSection == [2, 3, 3] && c.rmsNormEps == 1e-5)
    }

    @Test("missing and inconsistent fields are named")
    func badConfigs() throws {
        let missing = #"{"text_config": {"intermediate_size": 160, "num_hidden_layers": 3, "num_attention_heads": 4, "vocab_size": 10}}"#
        #expect { try TextConfig.load(Data(missing.utf8), file: "cfg.json") } throws: { e in
            "\(e)".contains("cfg.json") && "\(e)".contains("hidden_size")
        }
        let mrope = #"{"hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 3, "num_attention_heads": 4, "vocab_size": 10, "rope_scaling": {"mrope_section": [16, 24, 24]}}"#
        #expect { try TextConfig.load(Data(mrope.utf8), file: "cfg.json") } throws: { e in
            "\(e)".contains("mrope_section") && "\(e)".contains("head_dim / 2 = 8")
        }
        let gqa = #"{"hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 3, "vocab_size": 10, "rope_scaling": {"mrope_section": [2, 3, 3]}}"#
        #expect(throws: QwenImageError.self) { try TextConfig.load(Data(gqa.utf8), file: "cfg.json") }
    }
}

@Suite("Text encoder bad input")
struct TextEncoderBadInputTests {
    @Test("empty prompt")
    func emptyPrompt() throws {
        let packPath = try TF.pack("f32")
        let encoder = try PromptEncoder(pack: try Pack(path: packPath), packPath: packPath)
        #expect { try encoder.encode([["a cat", ""]]) } throws: { e in
            "\(e)".contains("prompt 2 is empty")
        }
    }

    @Test("a prompt longer than the maximum is truncated as diffusers does, with a warning")
    func longPrompt() throws {
        let packPath = try TF.pack("f32")
        let encoder = try PromptEncoder(pack: try Pack(path: packPath), packPath: packPath)
        let long = String(repeating: "a cat sat on 1 2 3 mats. ", count: 200)
        var warnings: [String] = []
        let t = try encoder.tokenize([long]) { warnings.append($0) }[0]
        #expect(t.ids.count == 1024 + 34 && t.truncatedTokens > 0)
        #expect(warnings.count == 1 && warnings[0].contains("truncated to 1058"))
        let e = try encoder.encode(tokenized: [t], groups: [1])[0]
        #expect(e.length == 1024 && e.mask.allSatisfy { $0 == 1 })
        let cut = try encoder.encode(tokenized: [t], groups: [1], maxSequenceLength: 512)[0]
        #expect(cut.length == 512)
        #expect(Array(cut.embeds) == Array(e.embeds.prefix(512 * e.hidden)))
        #expect(throws: QwenImageError.self) { try encoder.encode(tokenized: [t], groups: [1], maxSequenceLength: 1025) }
    }

    @Test("prompts file: JSON Lines, invalid UTF-8 and non-strings name the line")
    func promptsFile() throws {
        let ok = Data("\"a cat\"\n\n\"\\u4e00 dog\"\r\n".utf8)
        #expect(try PromptsFile.parse(ok, path: "p.jsonl") == ["a cat", "\u{4e00} dog"])
        // A U+FEFF that starts a prompt is part of it (escaped or literal), as in Python's json.loads.
        let bom = Data("\"\\ufeffa cat\"\n\"\u{FEFF}b\"\n".utf8)
        #expect(try PromptsFile.parse(bom, path: "p.jsonl") == ["\u{FEFF}a cat", "\u{FEFF}b"])
        var bad = Data("\"a cat\"\n\"a ".utf8); bad.append(0xFF); bad.append(contentsOf: Array("\"\n".utf8))
        #expect { try PromptsFile.parse(bad, path: "p.jsonl") } throws: { e in
            "\(e)".contains("p.jsonl") && "\(e)".contains("line 2") && "\(e)".contains("UTF-8")
        }
        #expect { try PromptsFile.parse(Data("\"a\"\n{\"prompt\": 1}\n".utf8), path: "p.jsonl") } throws: { e in
            "\(e)".contains("line 2") && "\(e)".contains("JSON string")
        }
        #expect { try PromptsFile.parse(Data("\"\"\n".utf8), path: "p.jsonl") } throws: { e in "\(e)".contains("empty") }
        #expect { try PromptsFile.parse(Data("\n\n".utf8), path: "p.jsonl") } throws: { e in "\(e)".contains("no prompts") }
    }

    @Test("a pack without a text encoder")
    func noTextEncoder() throws {
        let packPath = try TF.pack("f32", components: ["vae"])
        #expect { try PromptEncoder(pack: try Pack(path: packPath), packPath: packPath) } throws: { e in
            guard case QwenImageError.missingComponent(_, let component, _) = e else { return false }
            return component == "text_encoder"
        }
    }

    @Test("a pack whose config and tensors disagree names the tensor")
    func configTensorMismatch() throws {
        let packPath = try TF.copy(pack: try TF.pack("f32"), name: "mismatch")
        let configPath = packPath + "/text_encoder/config.json"
        var text = try String(contentsOfFile: configPath, encoding: .utf8)
        text = text.replacingOccurrences(of: "\"intermediate_size\": 160", with: "\"intermediate_size\": 128")
        try text.write(toFile: configPath, atomically: true, encoding: .utf8)
        #expect { try LanguageModel(pack: try Pack(path: packPath), packPath: packPath) } throws: { e in
            let s = "\(e)"
            return s.contains("model.layers.0.mlp.gate_proj.weight") && s.contains("[128, 64]") && s.contains("[160, 64]")
        }
    }

    @Test("--max-ram too small is refused up front; a fitting budget picks a plan that fits")
    func budget() throws {
        let packPath = try TF.pack("f32")
        let model = try LanguageModel(pack: try Pack(path: packPath), packPath: packPath)
        let w = model.weightFootprint()
        #expect(w.layerBytes > 0 && w.embedBytes >= 3072 * 64 * 4 && w.embedRowBytes == 64 * 4 && !w.compressed)
        let tiny = TextWeightFootprint(layerBytes: w.layerBytes, embedBytes: 200_000)
        #expect { try TextEncoderPlan.choose(config: model.config, weights: tiny,
                                             sequenceLengths: [41, 54], budget: 1 << 20, baselineBytes: 8 << 20) }
            throws: { e in
                guard case QwenImageError.budget(let m) = e else { return false }
                return m.contains("--max-ram") && m.contains("too small")
            }
        let roomy = try TextEncoderPlan.choose(config: model.config, weights: tiny,
                                               sequenceLengths: [41, 54], budget: 1 << 30, baselineBytes: 8 << 20)
        #expect(roomy.prefetch && roomy.rowsPerPass == Int.max)
        #expect(roomy.passes([41, 54]) == [[0, 1]])
        // Passes: in order, at most rowsPerPass tokens, a longer prompt alone.
        var p = roomy; p.rowsPerPass = 100
        #expect(p.passes([41, 54, 30, 120, 10, 95]) == [[0, 1], [2], [3], [4], [5]])
        p.rowsPerPass = 1
        #expect(p.passes([5, 6, 7]) == [[0], [1], [2]])
        // 7B shapes, q8 with groups of 32 (9 bits per weight), 256-token prompt, zstd pack: fits 1.5 GiB by
        // not prefetching layer 0 while the 585 MiB embedding buffer and its file are resident.
        let big = TextConfig(vocabSize: 152064, hiddenSize: 3584, intermediateSize: 18944, numHiddenLayers: 28,
                             numAttentionHeads: 28, numKeyValueHeads: 4, mropeSection: [16, 24, 24])
        let q8Layer = 233_046_016 * 9 / 8, q8Embed = 152064 * 3584 * 9 / 8
        let zq8 = TextWeightFootprint(layerBytes: q8Layer, embedBytes: q8Embed, embedRowBytes: 3584 * 9 / 8,
                                      layersCompressed: true, embedCompressed: true, layerFileBytes: q8Layer * 9 / 10,
                                      embedFileBytes: q8Embed * 9 / 10, poolLimitBytes: q8Layer)
        let plan = try TextEncoderPlan.choose(config: big, weights: zq8, sequenceLengths: [256 + 39],
                                              budget: 1536 << 20, baselineBytes: 60 << 20)
        #expect(plan.estimatedBytes <= 1536 << 20)
        #expect(plan.prefetch && !plan.prefetchDuringEmbedding && plan.rowsPerPass == Int.max)
        // Raw q8 pack: the embedding costs only the rows read. 10 prompts of 295 tokens under 1 GiB: a
        // few prompts per pass instead of all at once.
        let rq8 = TextWeightFootprint(layerBytes: q8Layer, embedBytes: q8Embed, embedRowBytes: 3584 * 9 / 8)
        #expect(rq8.embeddingResident(tokens: 295) < 32 << 20)
        let single = try TextEncoderPlan.choose(config: big, weights: rq8, sequenceLengths: [295], budget: 1 << 30,
                                                baselineBytes: 60 << 20)
        #expect(single.prefetch && single.prefetchDuringEmbedding && single.estimatedBytes < 800 << 20)
        let many = try TextEncoderPlan.choose(config: big, weights: rq8,
                                              sequenceLengths: Array(repeating: 295, count: 10), budget: 1 << 30,
                                              baselineBytes: 60 << 20)
        #expect(many.estimatedBytes <= 1 << 30 && many.rowsPerPass < 10 * 295 && many.rowsPerPass > 295)
        #expect(many.passes(Array(repeating: 295, count: 10)).count > 1)
        // A zstd table larger than the pool limit (an old pack's: the largest shard) is freed after
        // the lookup: the layers cost two layers and one compressed file.
        let zw = TextWeightFootprint(layerBytes: q8Layer, embedBytes: q8Embed, layersCompressed: true, embedCompressed: true,
                                     layerFileBytes: q8Layer / 2, embedFileBytes: q8Embed / 2, poolLimitBytes: q8Layer)
        let z = TextEncoderPlan.estimate(config: big, weights: zw, sequenceLengths: [295], baselineBytes: 0,
                                         prefetch: true, prefetchDuringEmbedding: true, mlpChunkRows: 512)
        #expect(z.weightBytes == 2 * q8Layer + q8Layer / 2)
        #expect(z.embeddingPhaseBytes >= q8Embed + q8Embed / 2 + q8Layer + q8Layer / 2)
        // A pooled table buffer at least a layer large holds one of the layers; a smaller one sits beside them.
        var pooled = zw
        pooled.poolLimitBytes = q8Embed
        #expect(pooled.layerPhaseBytes(prefetch: true) == q8Embed + q8Layer + q8Layer / 2)
        #expect(pooled.layerPhaseBytes(prefetch: false) == q8Embed + q8Layer / 2)
        pooled.embedBytes = q8Layer / 4
        #expect(pooled.layerPhaseBytes(prefetch: true) == 2 * q8Layer + q8Layer / 4 + q8Layer / 2)
        // A new zstd pack: raw table (rows only), zstd layers.
        let mixed = TextWeightFootprint(layerBytes: q8Layer, embedBytes: q8Embed, embedRowBytes: 3584 * 9 / 8,
                                        layersCompressed: true, layerFileBytes: q8Layer * 9 / 10,
                                        embedFileBytes: q8Embed, poolLimitBytes: q8Layer)
        #expect(mixed.embedFileBytes == 0 && mixed.embeddingResident(tokens: 295) == rq8.embeddingResident(tokens: 295))
        #expect(mixed.layerPhaseBytes(prefetch: true) == 2 * q8Layer + q8Layer * 9 / 10)
        // The issue's target: a 256-token prompt on a zstd q8 pack plans under 1 GiB (the old layout does not).
        #expect(try TextEncoderPlan.choose(config: big, weights: mixed, sequenceLengths: [256 + 39], budget: 1 << 30,
                                           baselineBytes: 60 << 20).estimatedBytes <= 1 << 30)
        #expect(throws: QwenImageError.self) {
            try TextEncoderPlan.choose(config: big, weights: zq8, sequenceLengths: [256 + 39], budget: 1 << 30, baselineBytes: 60 << 20)
        }
        // The footprint of a real zstd pack comes from its manifest.
        let zp = try TF.pack("q8", zstd: 3)
        let zf = try LanguageModel(pack: try Pack(path: zp), packPath: zp).weightFootprint()
        #expect(zf.layersCompressed && !zf.embedCompressed && zf.embedFileBytes == 0 && zf.layerFileBytes > 0)
    }
}

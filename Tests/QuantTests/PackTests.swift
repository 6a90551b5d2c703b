import CMapGuard
import Foundation
import Testing
@testable import Quant
@testable import QwenImage

/// Converts the tiny fixture into `dir/name` with the given options.
func convertTiny(_ dir: TempDir, _ name: String, scheme: PackScheme, group: Int = 0, zstd: Int? = nil,
                 rules: [String] = [], components: Set<String>? = nil, chunkBytes: Int = PackFormat.defaultChunkBytes,
                 source: URL = Fixtures.tinyModel) throws -> (Pack, ConversionSummary) {
    var o = ConvertOptions()
    o.scheme = scheme
    o.group = group
    o.zstdLevel = zstd
    o.rules = try rules.map(PolicyRule.init(parsing:))
    o.components = components
    o.progress = false
    o.chunkBytes = chunkBytes
    let ck = try Checkpoint(path: source.path, only: components)
    let plan = try ConversionPlan.make(checkpoint: ck, options: o)
    let out = dir.url.appendingPathComponent(name)
    let s = try Converter.convert(checkpoint: ck, plan: plan, output: out, options: o)
    return (try Pack(path: out.path), s)
}

@Suite struct PackRoundTripTests {
    @Test func xxh64MatchesReferenceVectors() {
        // Values from the reference xxhash library (python-xxhash 3.x).
        #expect(XXH64.hash([]) == 0xEF46_DB37_51D8_E999)
        #expect(XXH64.hash(Array("a".utf8)) == 0xD24E_C4F1_A98C_6E5B)
        #expect(XXH64.hash(Array("abc".utf8)) == 0x44BC_2CF5_AD77_0999)
        let long = (0..<768).map { UInt8($0 % 256) }
        #expect(XXH64.hash(long) == 0x8E03_C838_C596_036F)
        #expect(XXH64.hash(long, seed: 7) == 0xB1E1_0F6C_5294_CD6B)
        #expect(XXH64.hash(Array("0123456789abcdefghijklmnopqrstuvwxyz".utf8)) == 0x6919_6C1B_3AF0_BFF9)
        // Streaming in odd pieces gives the same digest.
        var h = XXH64()
        long.withUnsafeBytes { b in
            var at = 0
            for step in [1, 7, 31, 33, 5, 64, 100] where at < b.count {
                let n = min(step, b.count - at)
                h.update(UnsafeRawBufferPointer(rebasing: b[at..<at + n])); at += n
            }
            h.update(UnsafeRawBufferPointer(rebasing: b[at...]))
        }
        #expect(h.digest() == 0x8E03_C838_C596_036F)
    }

    @Test("prefetch with O_DIRECT reads (directReads = true): the mapped shards' bytes, checksums still checked")
    func directReads() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let (pack, _) = try convertTiny(dir, "p", scheme: .q8)
        let mapped = try pack.component("text_encoder")
        let te = try Pack(path: pack.path).component("text_encoder")
        te.directReads = true
        let layers = te.shardNames.filter { $0.hasPrefix("layers.") }
        func file(_ shard: String) -> String { te.folder.appendingPathComponent(te.manifest.shards.first { $0.name == shard }!.file).path }
        // Where the file system takes no O_DIRECT (tmpfs) the shard is mapped instead.
        let probe = qmg_open_direct(file(layers[0]))
        let canDirect = probe >= 0
        if canDirect { close(probe) }
        #expect(layers.count >= 2)
        for s in layers {
            te.prefetch(s)
            let d = try te.shard(s), m = try mapped.shard(s)
            #expect(d.isDirect == canDirect, "\(s)")
            for t in d.tensorNames { #expect(try Array(d.payload(t)) == Array(m.payload(t)), "\(t)") }
            d.release()
            m.release()
        }
        // A flipped payload byte is named by the checksum of its tensor and file.
        let rec = te.manifest.shards.first { $0.name == layers[1] }!
        let h = try #require(FileHandle(forUpdatingAtPath: file(layers[1])))
        try h.seek(toOffset: UInt64(rec.tensors[0].offset + 3))
        let byte = try #require(try h.read(upToCount: 1)).first!
        try h.seek(toOffset: UInt64(rec.tensors[0].offset + 3))
        try h.write(contentsOf: Data([byte ^ 0x40]))
        try h.close()
        let bad = try Pack(path: pack.path).component("text_encoder")
        bad.directReads = true
        bad.prefetch(layers[1])
        let message = errorText { _ = try bad.shard(layers[1]) }
        #expect(message?.contains(rec.tensors[0].name) == true && message?.contains(file(layers[1])) == true, "\(message ?? "no error")")
    }

    @Test(arguments: [PackScheme.f32, .bf16])
    func floatPacksAreBitExact(_ scheme: PackScheme) throws {
        let dir = try TempDir()
        let (pack, summary) = try convertTiny(dir, "p", scheme: scheme)
        #expect(pack.components == ["processor", "text_encoder", "tokenizer", "vae", "vae_rgba"])
        #expect(summary.tensors.allSatisfy { $0.relRMSE == 0 })
        // Independent check through the loader: every tensor equals its (transformed) source bit for bit.
        let report = try PackVerifier.verify(pack: pack, source: try Checkpoint(path: Fixtures.tinyModel.path), progress: false)
        #expect(report.ok)
        #expect(report.tensors.count == 704)
        #expect(report.tensors.allSatisfy { $0.relRMSE == 0 })
        // The embedding row by row equals the bf16 source exactly.
        let src = try CheckpointComponent(name: "text_encoder", folder: Fixtures.tinyModel.appendingPathComponent("text_encoder"))
        let emb = try src.floats("model.embed_tokens.weight")
        let te = try pack.component("text_encoder")
        let w = try te.shard("embed").weight("model.embed_tokens.weight")
        var row = [Float](repeating: .nan, count: 64)
        for r in [0, 1, 17, 3071] {
            try row.withUnsafeMutableBufferPointer { try w.row(r, into: $0.baseAddress!) }
            #expect(row.map(\.bitPattern) == emb[r * 64..<(r + 1) * 64].map(\.bitPattern))
        }
        #expect(te.tensorInfo("lm_head.weight") == nil)
        // A prefetched raw shard is handed over already verified.
        te.prefetch("layers.2")
        let s2 = try te.shard("layers.2")
        #expect(s2.tensorNames.allSatisfy { te.tensorInfo($0)?.shard == "layers.2" })
        #expect(try s2.vector("model.layers.2.input_layernorm.weight") == src.floats("model.layers.2.input_layernorm.weight"))
        s2.release()
        #expect(te.manifest.dropped == ["lm_head.weight"])
        // Carried files are verbatim.
        let tok = try pack.fileData(component: "tokenizer", name: "tokenizer.json")
        #expect(tok == FileManager.default.contents(atPath: Fixtures.tinyModel.appendingPathComponent("tokenizer/tokenizer.json").path))
        #expect(try te.configData() == FileManager.default.contents(atPath: src.configURL.path))
        #expect(pack.manifest.source.files.count == 21)
    }

    /// The layout transforms of DESIGN.md, checked against explicit index arithmetic on the source.
    @Test func convolutionLayoutsFollowTheDesign() throws {
        let dir = try TempDir()
        let (pack, _) = try convertTiny(dir, "p", scheme: .f32, components: ["vae", "text_encoder"])
        let srcV = try CheckpointComponent(name: "vae", folder: Fixtures.tinyModel.appendingPathComponent("vae"))
        let vae = try pack.component("vae")
        // 3-D conv [Cout, Cin, 3, 3, 3] -> .t0/.t1/.t2 [Cout, 9·Cin] in (ky, kx, cin) order.
        let name = "encoder.down_blocks.6.conv1.weight"  // [32, 16, 3, 3, 3]
        let src = try srcV.floats(name)
        let (cout, cin) = (32, 16)
        let shard = try vae.shard("encoder.down_blocks.6")
        for t in 0..<3 {
            let v = try shard.vector("\(name).t\(t)")
            #expect(vae.tensorInfo("\(name).t\(t)")?.shape == [cout, 9 * cin])
            var ok = true
            for o in 0..<cout { for c in 0..<cin { for ky in 0..<3 { for kx in 0..<3 {
                let want = src[(((o * cin + c) * 3 + t) * 3 + ky) * 3 + kx]
                if v[o * 9 * cin + (ky * 3 + kx) * cin + c] != want { ok = false }
            } } } }
            #expect(ok, "slice t\(t)")
        }
        // time_conv [Cout, Cin, 3, 1, 1] -> .t0/.t1/.t2 [Cout, Cin].
        let tc = try srcV.floats("encoder.down_blocks.5.time_conv.weight")  // [16, 16, 3, 1, 1]
        let s5 = try vae.shard("encoder.down_blocks.5")
        for t in 0..<3 {
            let v = try s5.vector("encoder.down_blocks.5.time_conv.weight.t\(t)")
            #expect(v == (0..<16 * 16).map { tc[($0 / 16 * 16 + $0 % 16) * 3 + t] })
        }
        // 2-D 3×3 conv [Cout, Cin, 3, 3] -> [Cout, 9·Cin] (ky, kx, cin).
        let rs = try srcV.floats("encoder.down_blocks.5.resample.1.weight")  // [16, 16, 3, 3]
        let v2 = try s5.vector("encoder.down_blocks.5.resample.1.weight")
        #expect(v2 == (0..<16 * 144).map { i in
            let o = i / 144, j = i % 144, kk = j / 16, c = j % 16
            return rs[(o * 16 + c) * 9 + kk]
        })
        // Norm gamma [C, 1, 1, 1] -> [C]; 1×1×1 conv -> [Cout, Cin].
        #expect(vae.tensorInfo("encoder.norm_out.gamma")?.shape == [32])
        #expect(vae.tensorInfo("encoder.norm_out.gamma")?.shard == "encoder.head")
        #expect(vae.tensorInfo("quant_conv.weight")?.shape == [32, 32])
        #expect(vae.tensorInfo("decoder.mid_block.attentions.0.to_qkv.weight")?.shape == [96, 32])
        // Patch embedding [Dv, 3, 2, 14, 14] -> [Dv, 1176], same element order.
        let te = try pack.component("text_encoder")
        #expect(te.tensorInfo("visual.patch_embed.proj.weight")?.shape == [32, 1176])
        let srcT = try CheckpointComponent(name: "text_encoder", folder: Fixtures.tinyModel.appendingPathComponent("text_encoder"))
        #expect(try te.shard("visual.patch_embed").vector("visual.patch_embed.proj.weight")
                == srcT.floats("visual.patch_embed.proj.weight"))
        #expect(Set(te.shardNames) == ["embed", "layers.0", "layers.1", "layers.2", "norm", "visual.patch_embed",
                                       "visual.blocks.0", "visual.blocks.1", "visual.blocks.2", "visual.blocks.3", "visual.merger"])
        #expect(Set(vae.shardNames).isSuperset(of: ["encoder.conv_in", "encoder.down_blocks.0", "encoder.mid_block", "encoder.head",
                                                    "quant_conv", "post_quant_conv", "decoder.conv_in", "decoder.mid_block",
                                                    "decoder.up_blocks.0", "decoder.head"]))
    }

    @Test(arguments: [(PackScheme.q8, 0), (.q8, 32), (.q8, 64), (.q8, 128), (.q4, 0), (.q4, 32), (.q4, 64), (.q4, 128), (.f16, 0),
                      (.q4c, 32), (.q5s, 32), (.q6s, 32), (.q8s, 32)])
    func quantizedErrorsWithinBounds(_ scheme: PackScheme, _ group: Int) throws {
        let dir = try TempDir()
        // The rule forces the scheme on every matrix, tiny ones included, to exercise it everywhere.
        let (pack, summary) = try convertTiny(dir, "p", scheme: scheme, group: group, rules: [".=\(scheme.rawValue):\(group)"],
                                              components: ["text_encoder"])
        let bound = Tolerances.relRMSE(scheme, group: group)
        let matrices = summary.tensors.filter { $0.scheme == scheme.rawValue }
        #expect(matrices.count == 45)
        for t in matrices { #expect(t.relRMSE <= bound, "\(t.name): \(t.relRMSE) > \(bound)") }
        if scheme.isQuantized { #expect(matrices.allSatisfy { $0.relRMSE > 0 }) }
        // The loader's view (Weight.row) gives the same error as the converter measured.
        let report = try PackVerifier.verify(pack: pack, source: try Checkpoint(path: Fixtures.tinyModel.path, only: ["text_encoder"]),
                                             progress: false)
        let byName = Dictionary(uniqueKeysWithValues: summary.tensors.map { ($0.name, $0.relRMSE) })
        for t in report.tensors { #expect(abs((t.relRMSE ?? -1) - byName[t.name]!) <= Tolerances.verifyVsConverterRMSE * max(1, byName[t.name]!)) }
    }

    @Test func policyDefaultsAndRules() throws {
        let dir = try TempDir()
        let (pack, summary) = try convertTiny(dir, "p", scheme: .q4, group: 32,
                                              rules: ["mlp=q8:128", "mlp\\.down_proj=bf16", "^visual\\.merger\\.mlp\\.0=q4:64"])
        let te = try pack.component("text_encoder")
        func choice(_ c: PackComponent, _ n: String) -> String {
            let i = c.tensorInfo(n)!
            return i.scheme.rawValue + (i.group > 0 ? ":\(i.group)" : "") + (i.layout == .dense ? "/dense" : "")
        }
        #expect(choice(te, "model.embed_tokens.weight") == "q4:32")
        #expect(choice(te, "model.layers.0.self_attn.q_proj.weight") == "q4:32")
        #expect(choice(te, "model.layers.0.self_attn.k_proj.weight") == "f32")  // tiny: 32×64
        #expect(choice(te, "model.layers.0.self_attn.q_proj.bias") == "f32/dense")
        #expect(choice(te, "model.layers.0.input_layernorm.weight") == "f32/dense")
        #expect(choice(te, "model.layers.0.mlp.up_proj.weight") == "q8:128")      // first rule
        #expect(choice(te, "model.layers.0.mlp.down_proj.weight") == "bf16")      // last match wins
        #expect(choice(te, "visual.merger.mlp.0.weight") == "q4:64")
        let vae = try pack.component("vae")
        #expect(choice(vae, "decoder.up_blocks.0.resnets.0.conv1.weight.t2") == "q8:32")  // q4 -> q8 for VAE convs
        #expect(summary.tensors.contains { $0.note.contains("q4 is not offered for VAE convolutions") })
        #expect(choice(vae, "encoder.conv_in.weight.t0") == "f32")               // tiny
    }

    @Test("VAE convolutions get 8 bits whatever sub-8-bit scheme is chosen")
    func vaeConvolutionsStayEightBit() {
        #expect(PackScheme.allCases.filter { $0.eightBitSibling != $0 } == [.q4, .q4c, .q5s, .q6s])
        #expect([PackScheme.q4, .q4c, .q5s, .q6s].map(\.eightBitSibling) == [.q8, .q8s, .q8s, .q8s])
    }

    @Test func zstdPacksDecompressToTheRawPayloads() throws {
        let dir = try TempDir()
        let (raw, _) = try convertTiny(dir, "raw", scheme: .q8, group: 32, components: ["text_encoder", "vae"])
        // 4 KiB frames: every sizeable tensor is split into several independent frames.
        let (z, _) = try convertTiny(dir, "z", scheme: .q8, group: 32, zstd: 3, components: ["text_encoder", "vae"], chunkBytes: 4096)
        for name in ["text_encoder", "vae"] {
            let a = try raw.component(name), b = try z.component(name)
            // Every shard zstd, except the row-gathered embedding table: raw in the record and the header.
            for r in b.manifest.shards {
                let zstd = !(name == "text_encoder" && r.name == "embed")
                #expect(r.compression == (zstd ? "zstd" : "none") && b.isCompressed(r.name) == zstd, "\(name)/\(r.name)")
                let header = try Data(contentsOf: b.folder.appendingPathComponent(r.file)).prefix(16)
                #expect(header[12] == (zstd ? 1 : 0) && r.tensors.allSatisfy { ($0.frames != nil) == zstd }, "\(name)/\(r.name)")
                #expect(a.manifest.shards.first { $0.name == r.name }?.compression == "none")
            }
            #expect(b.manifest.compression == "zstd")
            #expect(b.manifest.shards.flatMap(\.tensors).contains { ($0.frames?.count ?? 0) > 1 })
            for s in a.shardNames {
                let sa = try a.shard(s)
                b.prefetch(s)
                let sb = try b.shard(s)
                for t in sa.tensorNames { #expect(try Array(sa.payload(t)) == Array(sb.payload(t))) }
                sb.release()
                #expect(errorText { _ = try sb.vector(sb.tensorNames[0]) }?.contains("was released") == true)
            }
        }
        // Weights stay usable after release (their buffer is not reused while referenced).
        let te = try z.component("text_encoder")
        let s0 = try te.shard("layers.0")
        let w = try s0.weight("model.layers.0.mlp.up_proj.weight")
        var before = [Float](repeating: 0, count: 64)
        try before.withUnsafeMutableBufferPointer { try w.row(5, into: $0.baseAddress!) }
        s0.release()
        _ = try te.shard("layers.1")
        var after = [Float](repeating: 0, count: 64)
        try after.withUnsafeMutableBufferPointer { try w.row(5, into: $0.baseAddress!) }
        #expect(before == after)
    }
}

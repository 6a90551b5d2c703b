import Foundation
import Kernels
import Testing
@testable import Quant
@testable import QwenImage

/// The three tensor sources answer the same requests: a pack, the shapes of a checkpoint (the
/// converter's plan), and a recording source over checkpoint values.
@Suite struct TensorSourceTests {
    @Test func layoutsGiveTheFormatShapesAndNames() {
        let conv = MatrixLayout.conv3x3x3(cout: 4, cin: 3, slice: 1)
        #expect(conv.sourceShape == [4, 3, 3, 3, 3])
        #expect(conv.packShape == [4, 27])
        #expect(conv.packSuffix == ".t1")
        // k = (ky, kx, cin): k 1 is (0, 0, cin 1) = source index ((1·3 + t)·3 + 0)·3 + 0.
        #expect(conv.gather()?[1] == Int32((1 * 3 + 1) * 9))
        #expect(MatrixLayout.conv3x1x1(cout: 8, cin: 2, slice: 2).gather() == [2, 5])
        #expect(MatrixLayout.conv1x1(cout: 8, cin: 2, spatialDims: 3).sourceShape == [8, 2, 1, 1, 1])
        #expect(MatrixLayout.flattened([16, 3, 2, 14, 14]).packShape == [16, 1176])
        #expect(MatrixLayout.linear(rows: 5, cols: 7).gather() == nil)
        #expect(TensorPath.contains("model.layers.1", "model.layers.1.mlp.up_proj.weight"))
        #expect(!TensorPath.contains("model.layers.1", "model.layers.10.mlp.up_proj.weight"))
        #expect(TensorPath.contains("", "anything"))
    }

    @Test func shapeOnlySourceRecordsAndReportsInOrder() throws {
        let src = ShapeOnlySource(shapes: ["a.w": [4, 3], "a.b": [4], "c.w": [2, 2]], naming: .checkpoint, location: "ckpt")
        let a = src.prefix("a")
        let w = try a.matrix("w", .linear(rows: 4, cols: 3))
        #expect(w.n == 4 && w.k == 3)
        var row = [Float](repeating: 1, count: 3)
        try row.withUnsafeMutableBufferPointer { try w.row(3, into: $0.baseAddress!) }
        #expect(row == [0, 0, 0])   // a placeholder reads as zeros
        #expect(throws: QuantError.self) { try row.withUnsafeMutableBufferPointer { try w.row(4, into: $0.baseAddress!) } }
        _ = try a.vector("b", count: 5)
        _ = try src.prefix("x").matrix("w", .linear(rows: 1, cols: 1))
        _ = try a.matrix("w", .linear(rows: 4, cols: 3))   // repeated: recorded once
        #expect(src.requests.map(\.name) == ["a.w", "a.b", "x.w"])
        #expect(src.problems.map(\.name) == ["a.b", "x.w"])
        #expect(throws: QuantError.tensor(name: "a.b", message: "expected shape [5], found [4] (in ckpt; shapes follow config.json) (and 1 more problem)")) {
            try src.throwFirstProblem()
        }
    }

    @Test func shapeOnlySourceOverAPackUsesPackNames() throws {
        let dir = try TempDir()
        let (pack, _) = try convertTiny(dir, "p.pack", scheme: .q8, group: 32, components: ["vae"])
        let check = ShapeOnlySource(pack: try pack.component("vae"))
        let config = try VAEPack(pack: pack, name: "vae").config
        _ = try AutoencoderKLQwenImage(config: config, source: check, temporal: true)
        #expect(check.problems.isEmpty)
        let names = Set(check.requests.map(\.packName))
        #expect(names == Set(try pack.component("vae").tensorNames))
        #expect(names.contains("decoder.conv_in.weight.t0"))
    }

    /// The pack serves, for every VAE request, exactly what the recording source computes from the
    /// checkpoint with the same layout (f32: no rounding), and a tensor's shard comes from the manifest.
    @Test func packAndRecordingSourcesAgree() throws {
        let dir = try TempDir()
        let (pack, _) = try convertTiny(dir, "p.pack", scheme: .f32, components: ["vae"])
        let ck = try CheckpointComponent(name: "vae", folder: Fixtures.tinyModel.appendingPathComponent("vae"))
        let recorder = RecordingTensorSource()
        let config = try VAEPack(pack: pack, name: "vae").config
        _ = try AutoencoderKLQwenImage(config: config, source: recorder, temporal: true)
        let packSource = PackTensorSource(component: try pack.component("vae"))
        let fromCheckpoint = RecordingTensorSource(checkpoint: ck)
        for r in recorder.requests {
            switch r.kind {
            case .matrix(let layout):
                let a = try packSource.matrix(r.name, layout), b = try fromCheckpoint.matrix(r.name, layout)
                var ra = [Float](repeating: 0, count: a.k), rb = ra
                for i in 0..<a.n {
                    try ra.withUnsafeMutableBufferPointer { try a.row(i, into: $0.baseAddress!) }
                    try rb.withUnsafeMutableBufferPointer { try b.row(i, into: $0.baseAddress!) }
                    #expect(ra == rb, "\(r.packName) row \(i)")
                }
            case .vector(let shape):
                #expect(try packSource.vector(r.name, shape: shape) == fromCheckpoint.vector(r.name, shape: shape), "\(r.name)")
            }
        }
        let block = packSource.prefix("decoder").prefix("up_blocks").prefix(1)
        #expect(block.shardRecords.map(\.name) == ["decoder.up_blocks.1"])
        #expect(!block.isEmpty && packSource.prefix("decoder.up_blocks.9").isEmpty)
        #expect(throws: QuantError.self) { try packSource.matrix("decoder.conv_in.weight", .conv3x3x3(cout: 5, cin: 16, slice: 2)) }
        #expect(throws: QuantError.self) { try packSource.vector("decoder.conv_in.nope", count: 3) }
        block.release()
    }
}

/// The converter's pre-check is the networks' own requests against the checkpoint's shapes: a tensor
/// no network reads, or one it needs that is missing, is refused by name.
@Suite struct ConverterRequestTests {
    func plan(_ model: URL, only: Set<String>? = nil) throws -> ConversionPlan {
        try ConversionPlan.make(checkpoint: try Checkpoint(path: model.path, only: only), options: ConvertOptions())
    }

    @Test func oneExtraTensorIsRefusedByName() throws {
        let dir = try TempDir()
        let model = try copyTinyModel(into: dir)
        var w = SafetensorsWriter()
        try w.add("decoder.conv_in.scale", f32: [1, 2, 3], shape: [3])
        try w.write(to: model.appendingPathComponent("vae/extra.safetensors"))
        let msg = errorText { _ = try plan(model, only: ["vae"]) }
        #expect(msg?.hasPrefix("tensor decoder.conv_in.scale: in \(model.appendingPathComponent("vae").path) but no network reads it") == true, "\(msg ?? "")")
        // The untouched checkpoint plans, dropping only lm_head (named in the ignore list).
        let ok = try plan(Fixtures.tinyModel)
        #expect(ok.components.first { $0.name == "text_encoder" }?.dropped == ["lm_head.weight"])
    }

    @Test func oneMissingTensorIsRefusedByName() throws {
        let dir = try TempDir()
        let model = try copyTinyModel(into: dir)
        let index = model.appendingPathComponent("text_encoder/model.safetensors.index.json")
        var j = try JSONSerialization.jsonObject(with: Data(contentsOf: index)) as! [String: Any]
        var map = j["weight_map"] as! [String: Any]
        map.removeValue(forKey: "visual.blocks.1.attn.proj.bias")
        j["weight_map"] = map
        try JSONSerialization.data(withJSONObject: j).write(to: index)
        let msg = errorText { _ = try plan(model, only: ["text_encoder"]) }
        #expect(msg?.hasPrefix("tensor visual.blocks.1.attn.proj.bias: missing from ") == true, "\(msg ?? "")")
    }

    /// A checkpoint saved by transformers 5.x (`model.language_model.*`, `model.visual.*`) is read by the
    /// same requests under its own names and gives the same shards, byte for byte.
    @Test func transformers5NamesGiveTheSameShards() throws {
        let dir = try TempDir()
        let model = try copyTinyModel(into: dir)
        func renamed(_ n: String) -> String {
            if n.hasPrefix("visual.") { return "model." + n }
            if n.hasPrefix("model.") { return "model.language_model." + n.dropFirst("model.".count) }
            return n
        }
        let folder = model.appendingPathComponent("text_encoder")
        for f in try FileManager.default.contentsOfDirectory(atPath: folder.path) where f.hasSuffix(".safetensors") {
            try rewriteHeader(folder.appendingPathComponent(f).path) { h in
                h = Dictionary(uniqueKeysWithValues: h.map { ($0.key == "__metadata__" ? $0.key : renamed($0.key), $0.value) })
            }
        }
        let index = folder.appendingPathComponent("model.safetensors.index.json")
        var j = try JSONSerialization.jsonObject(with: Data(contentsOf: index)) as! [String: Any]
        j["weight_map"] = Dictionary(uniqueKeysWithValues: (j["weight_map"] as! [String: Any]).map { (renamed($0.key), $0.value) })
        try JSONSerialization.data(withJSONObject: j).write(to: index)
        #expect(try CheckpointComponent(name: "text_encoder", folder: folder).tensorNames.contains("model.language_model.norm.weight"))

        let (hub, _) = try convertTiny(dir, "hub.pack", scheme: .q8, group: 32, components: ["text_encoder"])
        let (v5, _) = try convertTiny(dir, "v5.pack", scheme: .q8, group: 32, components: ["text_encoder"], source: model)
        let a = try hub.component("text_encoder"), b = try v5.component("text_encoder")
        #expect(a.tensorNames == b.tensorNames)
        #expect(b.manifest.dropped == ["lm_head.weight"])
        #expect(b.record("model.norm.weight")?.source == "model.language_model.norm.weight")
        for s in a.manifest.shards {
            let x = try Data(contentsOf: a.folder.appendingPathComponent(s.file))
            let y = try Data(contentsOf: b.folder.appendingPathComponent(s.file))
            #expect(x == y, "shard \(s.name)")
        }
    }

    /// The reported bug: a config with fewer layers than the checkpoint stores used to convert (and
    /// run) silently on the first layers. The extra layers' tensors are now unread, and refused.
    @Test func fewerConfigLayersThanStoredLayersIsRefused() throws {
        let dir = try TempDir()
        let model = try copyTinyModel(into: dir)
        let cfg = model.appendingPathComponent("text_encoder/config.json")
        var text = try String(contentsOf: cfg, encoding: .utf8)
        #expect(text.components(separatedBy: "\"num_hidden_layers\": 3").count == 3)
        text = text.replacingOccurrences(of: "\"num_hidden_layers\": 3", with: "\"num_hidden_layers\": 2")
        try text.write(to: cfg, atomically: true, encoding: .utf8)
        let msg = errorText { _ = try plan(model, only: ["text_encoder"]) }
        #expect(msg?.hasPrefix("tensor model.layers.2.input_layernorm.weight: in ") == true, "\(msg ?? "")")
        #expect(msg?.contains("no network reads it") == true && msg?.contains("(and 11 more unread tensors)") == true, "\(msg ?? "")")
    }
}

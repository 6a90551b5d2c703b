import Foundation
import Testing
@testable import Quant
@testable import QwenImage

/// Runs the built qwen-quant binary (next to the test bundle in .build/<config>/).
func runQwenQuant(_ args: [String], fileSizeLimitKiB: Int? = nil) throws -> (code: Int32, stdout: String, stderr: String) {
    var dir = Bundle.main.bundleURL
    var exe = dir.appendingPathComponent("qwen-quant")
    // The test bundle lives in .build/<triple>/debug/; walk up until the binary is found.
    for _ in 0..<4 where !FileManager.default.fileExists(atPath: exe.path) {
        dir.deleteLastPathComponent()
        exe = dir.appendingPathComponent("qwen-quant")
    }
    if !FileManager.default.fileExists(atPath: exe.path) {
        var root = URL(fileURLWithPath: #filePath)
        while root.lastPathComponent != "Tests" { root.deleteLastPathComponent() }
        exe = root.deletingLastPathComponent().appendingPathComponent(".build/debug/qwen-quant")
    }
    let p = Process()
    if let limit = fileSizeLimitKiB {
        // bash's ulimit -f counts 1024-byte blocks.
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = ["-c", "ulimit -f \(limit) && exec \"$0\" \"$@\"", exe.path] + args
    } else {
        p.executableURL = exe
        p.arguments = args
    }
    var env = ProcessInfo.processInfo.environment
    env["QWEN_NO_PROGRESS"] = "1"
    p.environment = env
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
}

/// Rewrites a safetensors header (the data section is kept as is).
func rewriteHeader(_ path: String, _ edit: (inout [String: Any]) -> Void) throws {
    let d = try Data(contentsOf: URL(fileURLWithPath: path))
    let n = Int(d.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
    var h = try JSONSerialization.jsonObject(with: d.subdata(in: 8..<8 + n)) as! [String: Any]
    edit(&h)
    let json = try JSONSerialization.data(withJSONObject: h)
    try rawSafetensors(header: String(decoding: json, as: UTF8.self), data: d.subdata(in: 8 + n..<d.count))
        .write(to: URL(fileURLWithPath: path))
}

/// Folder entries other than the given ones (temporary leftovers).
func leftovers(_ dir: URL, besides keep: Set<String>) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).filter { !keep.contains($0) }
}

@Suite struct CLITests {
    @Test func dryRunInspectAndVerifyJSON() throws {
        let dir = try TempDir()
        let model = Fixtures.tinyModel.path
        let plan = try runQwenQuant(["convert", model, "-o", dir.path("p.pack"), "--dry-run", "--json", "--scheme", "q4"])
        #expect(plan.code == 0)
        #expect(leftovers(dir.url, besides: []).isEmpty)  // a dry run writes nothing
        let pj = try JSONSerialization.jsonObject(with: Data(plan.stdout.utf8)) as! [String: Any]
        let rows = pj["tensors"] as! [[String: Any]]
        #expect(rows.count == 704)
        #expect((pj["dropped"] as! [String]) == ["lm_head.weight"])
        let conv = rows.first { ($0["name"] as! String) == "decoder.up_blocks.0.resnets.0.conv1.weight.t2" }!
        #expect(conv["scheme"] as? String == "q8")
        #expect((conv["note"] as! String).contains("q4 is not offered for VAE convolutions"))
        let human = try runQwenQuant(["convert", model, "--dry-run", "--components", "vae"])
        #expect(human.code == 0 && human.stdout.contains("plan for") && human.stdout.contains("nothing written"))

        let c = try runQwenQuant(["convert", model, "-o", dir.path("p.pack"), "--scheme", "q4", "--zstd", "3", "--json"])
        #expect(c.code == 0, "\(c.stderr)")
        let cj = try JSONSerialization.jsonObject(with: Data(c.stdout.utf8)) as! [String: Any]
        let ts = cj["tensors"] as! [[String: Any]]
        let errs = ts.map { $0["rel_rmse"] as! Double }
        #expect(errs == errs.sorted(by: >))  // worst first
        #expect((cj["compression_ratio"] as! Double) > 1)
        #expect(c.stderr.contains("worst relative RMSE"))
        let i = try runQwenQuant(["inspect", dir.path("p.pack"), "--json"])
        #expect(i.code == 0)
        let ij = try JSONSerialization.jsonObject(with: Data(i.stdout.utf8)) as! [String: Any]
        let comps = ij["components"] as! [[String: Any]]
        #expect(comps.map { $0["name"] as! String } == ["processor", "text_encoder", "tokenizer", "vae", "vae_rgba"])
        let te = comps[1]
        #expect(te["compression"] as? String == "zstd:3")
        // Per shard: the embedding table raw, the rest zstd.
        let shards = te["shard_list"] as! [[String: Any]]
        #expect(shards.filter { $0["compression"] as? String == "none" }.map { $0["name"] as! String } == ["embed"])
        #expect(shards.filter { $0["compression"] as? String == "zstd" }.count == shards.count - 1)
        #expect(try runQwenQuant(["inspect", dir.path("p.pack")]).stdout.contains("      raw shards: embed\n"))
        #expect((te["bits_per_weight"] as! Double) > 4 && (te["bits_per_weight"] as! Double) < 32)
        let v = try runQwenQuant(["verify", dir.path("p.pack"), "--source", model, "--json"])
        #expect(v.code == 0, "\(v.stderr)")
        let vj = try JSONSerialization.jsonObject(with: Data(v.stdout.utf8)) as! [String: Any]
        #expect(vj["ok"] as? Bool == true)
        #expect((vj["changed_source_files"] as! [String]).isEmpty)
        let help = try runQwenQuant(["convert", "--help"])
        #expect(help.stdout.contains("Examples:") && help.stdout.contains("--rule"))
    }
}

@Suite struct BadInputTests {
    @Test func missingTensorForTheConfig() throws {
        let dir = try TempDir()
        let model = try copyTinyModel(into: dir)
        let index = model.appendingPathComponent("text_encoder/model.safetensors.index.json")
        var j = try JSONSerialization.jsonObject(with: Data(contentsOf: index)) as! [String: Any]
        var map = j["weight_map"] as! [String: Any]
        map.removeValue(forKey: "model.layers.1.mlp.up_proj.weight")
        j["weight_map"] = map
        try JSONSerialization.data(withJSONObject: j).write(to: index)
        let r = try runQwenQuant(["convert", model.path, "-o", dir.path("out.pack")])
        #expect(r.code == 1)
        #expect(r.stderr.contains("error: tensor model.layers.1.mlp.up_proj.weight: missing from"))
        #expect(r.stderr.contains("config.json implies shape [160, 64]"))
        #expect(leftovers(dir.url, besides: ["model"]).isEmpty)
    }

    @Test func wrongShapeForTheConfig() throws {
        let dir = try TempDir()
        let model = try copyTinyModel(into: dir)
        let cfg = model.appendingPathComponent("text_encoder/config.json")
        let text = try String(contentsOf: cfg, encoding: .utf8).replacingOccurrences(of: "\"intermediate_size\": 160", with: "\"intermediate_size\": 161")
        try text.write(to: cfg, atomically: true, encoding: .utf8)
        let msg = errorText {
            let ck = try Checkpoint(path: model.path)
            _ = try ConversionPlan.make(checkpoint: ck, options: ConvertOptions())
        }
        // The first tensor the model reads that disagrees (layer 0's MLP, gate_proj first).
        #expect(msg?.hasPrefix("tensor model.layers.0.mlp.gate_proj.weight: expected shape [161, 64], found [160, 64]") == true)
        // A VAE whose config disagrees with conv_in.
        let vcfg = model.appendingPathComponent("vae/config.json")
        try String(contentsOf: vcfg, encoding: .utf8).replacingOccurrences(of: "\"base_dim\": 8", with: "\"base_dim\": 12")
            .write(to: vcfg, atomically: true, encoding: .utf8)
        let r = try runQwenQuant(["convert", model.appendingPathComponent("vae").path, "-o", dir.path("v.pack")])
        #expect(r.code == 1)
        #expect(r.stderr.contains("error: tensor encoder.conv_in.weight: expected shape [12, 3, 3, 3, 3], found [8, 3, 3, 3, 3]"))
    }

    @Test func unknownDTypeAndTruncatedFile() throws {
        let dir = try TempDir()
        let model = try copyTinyModel(into: dir)
        let vae = model.appendingPathComponent("vae/diffusion_pytorch_model.safetensors").path
        try rewriteHeader(vae) { h in
            var e = h["decoder.conv_in.bias"] as! [String: Any]
            e["dtype"] = "F8_E4M3"
            h["decoder.conv_in.bias"] = e
        }
        let r = try runQwenQuant(["convert", model.path, "-o", dir.path("out.pack"), "--components", "vae"])
        #expect(r.code == 1)
        #expect(r.stderr.contains("diffusion_pytorch_model.safetensors: tensor decoder.conv_in.bias: unsupported dtype F8_E4M3"))
        // Truncated: the last tensors' data run past the end.
        let rgba = model.appendingPathComponent("vae_rgba/diffusion_pytorch_model.safetensors")
        let d = try Data(contentsOf: rgba)
        try d.prefix(d.count - 1000).write(to: rgba)
        let r2 = try runQwenQuant(["convert", model.path, "-o", dir.path("out.pack"), "--components", "vae_rgba"])
        #expect(r2.code == 1)
        #expect(r2.stderr.contains("vae_rgba/diffusion_pytorch_model.safetensors: tensor "))
        #expect(r2.stderr.contains("run past the end of the data"))
        #expect(leftovers(dir.url, besides: ["model"]).isEmpty)
    }

    @Test func failureMidConversionLeavesNothing() throws {
        let dir = try TempDir()
        let model = try copyTinyModel(into: dir)
        // Make one sizeable VAE weight too large for f16 (bf16 0x4F00 = 2^31): found only while converting.
        let path = model.appendingPathComponent("vae/diffusion_pytorch_model.safetensors").path
        let f = try SafetensorsFile(path: path)
        let info = try f.info("decoder.up_blocks.0.resnets.1.conv2.weight")
        var d = try Data(contentsOf: URL(fileURLWithPath: path))
        d[info.offset + 1] = 0x4F; d[info.offset] = 0x00
        try d.write(to: URL(fileURLWithPath: path))
        let r = try runQwenQuant(["convert", model.path, "-o", dir.path("out.pack"), "--scheme", "f16", "--components", "vae"])
        #expect(r.code == 1)
        #expect(r.stderr.contains("decoder.up_blocks.0.resnets.1.conv2.weight.t"))
        #expect(!FileManager.default.fileExists(atPath: dir.path("out.pack")))
        #expect(leftovers(dir.url, besides: ["model"]).isEmpty)
    }

    @Test func outputFolderRules() throws {
        let dir = try TempDir()
        let out = dir.path("out.pack")
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: false)
        try "keep".write(toFile: out + "/marker", atomically: true, encoding: .utf8)
        let vae = Fixtures.tinyModel.appendingPathComponent("vae").path
        let r = try runQwenQuant(["convert", vae, "-o", out])
        #expect(r.code == 1)
        #expect(r.stderr.contains("out.pack: already exists (use --force to replace it)"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: out) == ["marker"])
        // --force replaces it with a complete pack.
        let r2 = try runQwenQuant(["convert", vae, "-o", out, "--force", "--scheme", "bf16"])
        #expect(r2.code == 0, "\(r2.stderr)")
        #expect(try Pack(path: out).components == ["vae"])
        #expect(leftovers(dir.url, besides: ["out.pack"]).isEmpty)
        // A folder nobody can write to (even root cannot create folders in /proc).
        let r3 = try runQwenQuant(["convert", vae, "-o", "/proc/qwen-test.pack"])
        #expect(r3.code == 1)
        #expect(r3.stderr.contains("error: /proc: cannot create the output folder"))
        // A parent that does not exist.
        let r4 = try runQwenQuant(["convert", vae, "-o", dir.path("no/such/out.pack")])
        #expect(r4.code == 1)
        #expect(r4.stderr.contains("output folder does not exist"))
    }

    /// A full disk, simulated with a file-size limit: writing a shard fails cleanly, nothing is left.
    @Test func fullDiskLeavesNothing() throws {
        let dir = try TempDir()
        let vae = Fixtures.tinyModel.appendingPathComponent("vae").path
        let out = dir.path("out.pack")
        let r = try runQwenQuant(["convert", vae, "-o", out, "--scheme", "f32"], fileSizeLimitKiB: 64)
        #expect(r.code == 1)
        #expect(r.stderr.contains("error: ") && r.stderr.contains(".qwshard: cannot reserve"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out))
        #expect(leftovers(dir.url, besides: []).isEmpty)
    }

    @Test func unknownSchemeGroupAndRule() throws {
        let dir = try TempDir()
        let vae = Fixtures.tinyModel.appendingPathComponent("vae").path
        let cases: [([String], String)] = [
            (["--scheme", "q3"], "unknown scheme 'q3' (expected one of: f32, bf16, f16, q8, q4, q4c, q8s, q5s, q6s)"),
            (["--preset", "q5-mix"], "unknown preset 'q5-mix' (expected one of: q4-lean, q4-mix, q8)"),
            (["--rule", "conv=q4c:64"], "--rule 'conv=q4c:64': q4c takes group 32 only, got 64"),
            (["--importance", dir.path("missing.safetensors")], "missing.safetensors"),
            (["--group-size", "48"], "unsupported group size 48 (expected 0 = per output row, 32, 64 or 128)"),
            (["--rule", "conv=q5"], "--rule 'conv=q5': unknown scheme 'q5'"),
            (["--rule", "conv"], "--rule 'conv': expected REGEX=SCHEME[:GROUP]"),
            (["--rule", "([=q8"], "invalid regular expression '(['"),
            (["--rule", "conv=q8:17"], "--rule 'conv=q8:17': unsupported group size 17"),
            (["--components", "transformer"], "requested component transformer not found"),
        ]
        for (args, msg) in cases {
            let r = try runQwenQuant(["convert", vae, "-o", dir.path("x.pack")] + args)
            #expect(r.code != 0, "\(args)")
            #expect(r.stderr.contains(msg), "\(args): \(r.stderr)")
        }
        #expect(leftovers(dir.url, besides: []).isEmpty)
        let r = try runQwenQuant(["convert", vae])
        #expect(r.code == 64)
        #expect(r.stderr.contains("missing -o/--output PACK"))
    }

    @Test func flippedByteIsCaughtByTheChecksum() throws {
        let dir = try TempDir()
        _ = try convertTiny(dir, "p", scheme: .q8, group: 32, components: ["text_encoder"])
        let pack = dir.url.appendingPathComponent("p")
        let c = try Pack(path: pack.path).component("text_encoder")
        let rec = c.record("model.layers.1.mlp.gate_proj.weight")!
        let shardFile = pack.appendingPathComponent("text_encoder/layers.1.qwshard")
        var d = try Data(contentsOf: shardFile)
        d[rec.offset + rec.bytes / 2] ^= 0x10
        try d.write(to: shardFile)
        let fresh = try Pack(path: pack.path).component("text_encoder")
        let shard = try fresh.shard("layers.1")
        #expect(try shard.weight("model.layers.1.mlp.up_proj.weight").n == 160)  // other tensors are fine
        let msg = errorText { _ = try shard.weight("model.layers.1.mlp.gate_proj.weight") }
        #expect(msg?.contains("layers.1.qwshard: tensor model.layers.1.mlp.gate_proj.weight: checksum mismatch") == true)
        // Opened without first-use verification the corrupt tensor loads (verify still catches it).
        let unchecked = try Pack(path: pack.path, verifyChecksums: false).component("text_encoder").shard("layers.1")
        #expect(try unchecked.weight("model.layers.1.mlp.gate_proj.weight").n == 160)
        #expect(unchecked.verifyAll().count == 1)
        let r = try runQwenQuant(["verify", pack.path])
        #expect(r.code == 1)
        #expect(r.stderr.contains("FAIL") && r.stderr.contains("tensor model.layers.1.mlp.gate_proj.weight: checksum mismatch"))
        let j = try runQwenQuant(["verify", pack.path, "--json"])
        #expect(j.code == 1)
        let obj = try JSONSerialization.jsonObject(with: Data(j.stdout.utf8)) as! [String: Any]
        #expect(obj["ok"] as? Bool == false)
        // A carried file that changed is reported against the hash recorded at conversion.
        try "{}".write(to: pack.appendingPathComponent("tokenizer/vocab.json"), atomically: true, encoding: .utf8)
        let r2 = try runQwenQuant(["verify", pack.path])
        #expect(r2.code == 1)
        #expect(r2.stderr.contains("tokenizer/vocab.json: differs from the source file it was copied from"))
        // A truncated shard is refused when the component opens.
        try d.prefix(d.count - 10).write(to: shardFile)
        let m2 = errorText { _ = try Pack(path: pack.path).component("text_encoder") }
        #expect(m2?.contains("layers.1.qwshard: shard file is \(d.count - 10) bytes, the manifest says \(d.count)") == true)
    }

    @Test func corruptedCompressedFrameNamesTheTensor() throws {
        let dir = try TempDir()
        _ = try convertTiny(dir, "z", scheme: .q8, group: 64, zstd: 1, components: ["text_encoder"], chunkBytes: 4096)
        let pack = dir.url.appendingPathComponent("z")
        let rec = try Pack(path: pack.path).component("text_encoder").record("model.layers.1.mlp.down_proj.weight")!
        let frame = rec.frames![2]
        let file = pack.appendingPathComponent("text_encoder/layers.1.qwshard")
        var d = try Data(contentsOf: file)
        d[frame[0] + frame[1] / 2] ^= 0x01
        try d.write(to: file)
        let msg = errorText { _ = try Pack(path: pack.path).component("text_encoder").shard("layers.1") }
        #expect(msg?.contains("layers.1.qwshard: tensor model.layers.1.mlp.down_proj.weight: ") == true, "\(msg ?? "")")
    }

    /// Rewrites a component's manifest.json through `edit`.
    private func editManifest(_ folder: URL, _ edit: (inout ComponentManifest) -> Void) throws {
        let url = folder.appendingPathComponent(PackFormat.manifestFile)
        var m = try JSONDecoder().decode(ComponentManifest.self, from: Data(contentsOf: url))
        edit(&m)
        try JSONEncoder.pack.encode(m).write(to: url)
    }

    @Test func shardRecordCompressionMustMatchTheHeader() throws {
        let dir = try TempDir()
        _ = try convertTiny(dir, "z", scheme: .q8, group: 64, zstd: 1, components: ["text_encoder"])
        let te = dir.url.appendingPathComponent("z/text_encoder")
        let good = try Data(contentsOf: te.appendingPathComponent(PackFormat.manifestFile))
        func openError() -> String? { errorText { _ = try Pack(path: dir.path("z")).component("text_encoder") } }
        func set(_ shard: String, _ compression: String?) throws {
            try editManifest(te) { m in m.shards[m.shards.firstIndex { $0.name == shard }!].compression = compression }
        }
        #expect(openError() == nil)
        // A record saying raw for a zstd file, and zstd for the raw embedding table.
        try set("layers.0", "none")
        var msg = openError()
        #expect(msg?.contains("text_encoder/layers.0.qwshard: shard header (version 1, compression zstd, payload ") == true
                && msg?.contains("does not match the manifest record of shard layers.0 (version 1, compression none") == true,
                "\(msg ?? "")")
        try good.write(to: te.appendingPathComponent(PackFormat.manifestFile))
        try set("embed", "zstd")
        msg = openError()
        #expect(msg?.contains("text_encoder/embed.qwshard: shard header (version 1, compression none, payload ") == true
                && msg?.contains("of shard embed (version 1, compression zstd") == true, "\(msg ?? "")")
        // Without its own key the record takes the component's compression (zstd): wrong for the raw table.
        try set("embed", nil)
        #expect(openError()?.contains("embed.qwshard: shard header (version 1, compression none") == true)
        try set("embed", "lz4")
        #expect(openError()?.contains("manifest.json: shard embed: unknown compression 'lz4' (expected none or zstd)") == true)
    }

    @Test func manifestWithoutShardCompressionReadsAsBefore() throws {
        let dir = try TempDir()
        _ = try convertTiny(dir, "p", scheme: .q8, group: 64, components: ["text_encoder"])
        let expected = try Pack(path: dir.path("p")).component("text_encoder").shard("layers.2").vector("model.layers.2.mlp.up_proj.weight")
        // A pack written before records had the key: every shard takes the component's "none".
        try editManifest(dir.url.appendingPathComponent("p/text_encoder")) { m in
            for i in m.shards.indices { m.shards[i].compression = nil }
        }
        let text = try String(contentsOf: dir.url.appendingPathComponent("p/text_encoder/manifest.json"), encoding: .utf8)
        #expect(text.components(separatedBy: "\"compression\"").count == 2)   // the component's key only
        let c = try Pack(path: dir.path("p")).component("text_encoder")
        #expect(c.shardNames.allSatisfy { !c.isCompressed($0) })
        #expect(try c.shard("layers.2").vector("model.layers.2.mlp.up_proj.weight") == expected)
    }

    @Test func badPackManifests() throws {
        let dir = try TempDir()
        _ = try convertTiny(dir, "p", scheme: .bf16, components: ["vae"])
        let pack = dir.url.appendingPathComponent("p")
        #expect(errorText { _ = try Pack(path: dir.path("nothing")) }?.contains("not a pack folder") == true)
        #expect(errorText { _ = try Pack(path: dir.url.path) }?.contains("pack.json: missing") == true)
        #expect(errorText { _ = try Pack(path: pack.path).component("text_encoder") }
                == "\(pack.path): the pack has no text_encoder component (it has: vae)")
        let pj = pack.appendingPathComponent("pack.json")
        let good = try String(contentsOf: pj, encoding: .utf8)
        try good.replacingOccurrences(of: "\"version\" : 1", with: "\"version\" : 7").write(to: pj, atomically: true, encoding: .utf8)
        #expect(errorText { _ = try Pack(path: pack.path) }?.contains("pack format version 7, this build reads version 1") == true)
        try "{".write(to: pj, atomically: true, encoding: .utf8)
        #expect(errorText { _ = try Pack(path: pack.path) }?.contains("not a valid pack manifest") == true)
        try good.write(to: pj, atomically: true, encoding: .utf8)
        let mj = pack.appendingPathComponent("vae/manifest.json")
        let m = try String(contentsOf: mj, encoding: .utf8)
        // A record whose byte length does not fit its scheme and shape.
        try m.replacingOccurrences(of: "\"bytes\" : 128,", with: "\"bytes\" : 96,").write(to: mj, atomically: true, encoding: .utf8)
        let msg = errorText { _ = try Pack(path: pack.path).component("vae") }
        #expect(msg?.contains("payload is 96 bytes, expected 128") == true, "\(msg ?? "")")
    }
}

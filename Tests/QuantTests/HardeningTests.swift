import Foundation
import Testing
@testable import Quant
@testable import QwenImage

/// Regression tests for the classes of bad input found by crafted files and fuzzing (issue 18): each
/// input here crashed, hung, allocated without bound or silently succeeded before the fix.
@Suite struct HardeningTests {
    // MARK: - pack manifests: checked arithmetic

    /// The fixed valid component manifest of the parser harness as a mutable JSON object.
    func fixedManifest() throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: ParserHarness.fixedManifestSeed) as! [String: Any]
    }

    func componentError(_ edit: (inout [String: Any]) -> Void) throws -> String? {
        var m = try fixedManifest()
        edit(&m)
        return ParserHarness.componentManifest.run(try JSONSerialization.data(withJSONObject: m)).map { "\($0)" }
    }

    func editTensor(_ m: inout [String: Any], _ i: Int, _ key: String, _ value: Any) {
        var shards = m["shards"] as! [[String: Any]]
        var tensors = shards[0]["tensors"] as! [[String: Any]]
        tensors[i][key] = value
        shards[0]["tensors"] = tensors
        m["shards"] = shards
    }

    @Test func validManifestSeedLoads() throws {
        #expect(ParserHarness.componentManifest.run(ParserHarness.fixedManifestSeed) == nil)
        #expect(ParserHarness.shard.run(ParserHarness.fixedShardSeed) == nil)
    }

    @Test func hugeOffsetsAndSizesAreErrorsNotTraps() throws {
        let e1 = try componentError { editTensor(&$0, 1, "offset", Int.max - 63) }
        #expect(e1?.contains("outside the shard file") == true)
        let e2 = try componentError { editTensor(&$0, 0, "shape", [Int.max / 2, 4]) }
        #expect(e2?.contains("unsupported combination") == true)
        let e3 = try componentError { editTensor(&$0, 1, "shape", [-16, -32]) }   // product matches, signs do not
        #expect(e3?.contains("unsupported combination") == true)
        let e4 = try componentError { editTensor(&$0, 1, "group", 1 << 40) }
        #expect(e4?.contains("unsupported combination") == true)
        let e5 = try componentError { m in
            var shards = m["shards"] as! [[String: Any]]
            shards[0]["payload_bytes"] = 1 << 60
            m["shards"] = shards
        }
        #expect(e5?.contains("payload") == true)
    }

    @Test func shardHeaderPayloadAboveIntMaxIsAMismatch() {
        var shard = ParserHarness.fixedShardSeed
        shard.withUnsafeMutableBytes { $0.storeBytes(of: UInt64.max, toByteOffset: 16, as: UInt64.self) }
        let e = ParserHarness.shard.run(shard).map { "\($0)" }
        #expect(e?.contains("does not match the manifest record") == true)
    }

    // MARK: - JSON

    @Test func deepNestingIsRefusedWithoutRecursion() {
        let deep = Data(String(repeating: "[", count: 1_000_000).utf8)
        let e = ParserHarness.tokenizerJSON.run(Data("{\"normalizer\": ".utf8) + deep).map { "\($0)" }
        #expect(e?.contains("nested deeper than") == true)
        let e2 = ParserHarness.safetensors.run(rawSafetensors(header: String(repeating: "{\"a\":", count: 100_000), data: Data()))
            .map { "\($0)" }
        #expect(e2?.contains("nested deeper than") == true)
    }

    @Test func duplicateKeysInASafetensorsHeaderAreRefused() {
        let h = #"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}"#
        let e = ParserHarness.safetensors.run(rawSafetensors(header: h, data: Data(count: 8))).map { "\($0)" }
        #expect(e?.contains("appears twice") == true)
    }

    @Test func overlapIsFoundAfterAZeroByteTensor() {
        // a [0, 8), empty e at 4, b [4, 8): b overlaps a; the empty tensor sorted between them hid it.
        let h = #"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "e": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]}, "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}"#
        let e = ParserHarness.safetensors.run(rawSafetensors(header: h, data: Data(count: 8))).map { "\($0)" }
        #expect(e?.contains("overlaps tensor a") == true)
    }

    @Test func aVocabularyIdNearInt32MaxIsRefusedBeforeAllocating() throws {
        var vocab: [String: Int] = [:]
        for b in 0..<256 { vocab[String(ByteLevel.byteToScalar[b])] = b }
        vocab["zz"] = Int(Int32.max) - 1
        let data = try JSONSerialization.data(withJSONObject: vocab) + Data([0]) + Data("#version: 0.2\n".utf8)
        let e = ParserHarness.vocabMerges.run(data).map { "\($0)" }
        #expect(e?.contains("far beyond") == true)
    }

    @Test func configsWithAbsurdSizesAreRefused() throws {
        let url = Fixtures.tinyModel.appendingPathComponent("text_encoder/config.json")
        var cfg = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        cfg["num_hidden_layers"] = 1_000_000_000
        var text = cfg["text_config"] as! [String: Any]   // transformers reads text_config when present
        text["num_hidden_layers"] = 1_000_000_000
        cfg["text_config"] = text
        let e = ParserHarness.textConfig.run(try JSONSerialization.data(withJSONObject: cfg)).map { "\($0)" }
        #expect(e?.contains("num_hidden_layers is 1000000000, above this build's limit") == true)
    }

    @Test func hugePromptsAreRefused() {
        let line = "\"" + String(repeating: "a", count: PromptsFile.maxPromptBytes) + "\"\n"
        let e = ParserHarness.promptsFile.run(Data(line.utf8)).map { "\($0)" }
        #expect(e?.contains("a prompt may have at most") == true)
    }

    // MARK: - numbers from the command line and from decoders

    @Test func sizesThatDoNotFitAnIntAreNotParsed() {
        #expect(ByteSize.parse("1e30") == nil)
        #expect(ByteSize.parse("9e18G") == nil)
        #expect(ByteSize.parse("inf") == nil)
        #expect(ByteSize.parse("nan") == nil)
        #expect(ByteSize.parse("1.5G") == 1_610_612_736)
    }

    @Test func nonFiniteDecodedValuesNeitherTrapNorHide() {
        let f = VAEFrames(frames: 1, height: 1, width: 2, channels: 3)
        for i in 0..<6 { f.data[i] = [Float.nan, .infinity, -.infinity, 0, 1, -1][i] }
        #expect(f.nonFiniteCount == 3)
        #expect(f.image8(frame: 0).pixels == [0, 255, 0, 128, 255, 0])
        #expect(f.samples16(frame: 0).count == 6)
    }

    // MARK: - files that are not regular files

    @Test func aFIFONamedLikeAnInputIsRefusedAtOnce() throws {
        let dir = try TempDir()
        let fifo = dir.path("x.safetensors")
        #expect(mkfifo(fifo, 0o600) == 0)
        let e1 = errorText { _ = try SafetensorsFile(path: fifo) }
        #expect(e1?.contains("FIFO") == true)
        let e2 = errorText { _ = try FileBytes.read(fifo) }
        #expect(e2?.contains("FIFO") == true)
    }

    @Test func filesAboveTheirLimitAreNotRead() throws {
        let dir = try TempDir()
        try Data(count: 2048).write(to: dir.url.appendingPathComponent("big"))
        let e = errorText { _ = try FileBytes.read(dir.path("big"), limit: 1024) }
        #expect(e?.contains("larger than the 1.0 KiB accepted") == true)
        #expect(try FileBytes.read(dir.path("missing")) == nil)
    }

    // MARK: - outputs

    @Test func anOutputThatIsContainsOrLiesInsideAnInputIsRefused() throws {
        let dir = try TempDir()
        let src = dir.url.appendingPathComponent("src")
        try FileManager.default.createDirectory(at: src.appendingPathComponent("vae"), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(at: dir.url.appendingPathComponent("link"), withDestinationURL: src)
        for (out, word) in [(src, "is"), (src.appendingPathComponent("vae"), "lies inside"), (dir.url, "contains"),
                            (dir.url.appendingPathComponent("link/new.pack"), "lies inside")] {
            let e = errorText { try AtomicOutput.checkDisjoint(output: out, inputs: [src]) }
            #expect(e?.contains(" \(word) the input") == true, "\(out.path): \(e ?? "accepted")")
        }
        #expect(errorText { try AtomicOutput.checkDisjoint(output: dir.url.appendingPathComponent("out.pack"), inputs: [src]) } == nil)
    }

    @Test func convertRefusesToReplaceItsOwnSource() throws {
        let dir = try TempDir()
        let model = try copyTinyModel(into: dir)
        let r = try runQwenQuant(["convert", model.path, "-o", model.path, "--force", "--scheme", "q8"])
        #expect(r.code != 0)
        #expect(r.stderr.contains("is the input"))
        #expect(FileManager.default.fileExists(atPath: model.appendingPathComponent("model_index.json").path))
        let r2 = try runQwenQuant(["convert", model.path, "-o", model.appendingPathComponent("vae").path, "--force"])
        #expect(r2.code != 0 && r2.stderr.contains("lies inside the input"))
        #expect(FileManager.default.fileExists(atPath: model.appendingPathComponent("vae/config.json").path))
    }

    @Test func aNaNBiasIsRefusedLikeANaNWeight() throws {
        let dir = try TempDir()
        let model = try copyTinyModel(into: dir)
        // The first f32-stored vector of the VAE: make its first element NaN in the source file.
        let file = model.appendingPathComponent("vae/diffusion_pytorch_model.safetensors")
        let st = try SafetensorsFile(path: file.path)
        guard let name = st.tensorNames.first(where: { $0.hasSuffix(".bias") }), let info = st.tensors[name] else {
            Issue.record("the tiny VAE has no bias"); return
        }
        var d = try Data(contentsOf: file)
        switch info.dtype {
        case .F32: d.withUnsafeMutableBytes { $0.storeBytes(of: Float.nan.bitPattern, toByteOffset: info.offset, as: UInt32.self) }
        case .BF16, .F16: d.withUnsafeMutableBytes { $0.storeBytes(of: UInt16(0x7fc0), toByteOffset: info.offset, as: UInt16.self) }
        default: Issue.record("unexpected dtype \(info.dtype)"); return
        }
        try d.write(to: file)
        let r = try runQwenQuant(["convert", model.path, "-o", dir.path("p.pack"), "--components", "vae"])
        #expect(r.code != 0)
        #expect(r.stderr.contains(name) && r.stderr.contains("expected finite values"), "\(r.stderr)")
    }

    @Test func leftoversOfDeadRunsAreCleanedAndLiveOnesKept() throws {
        let dir = try TempDir()
        let target = dir.url.appendingPathComponent("out.pack")
        // A PID that cannot be alive: above the kernel's pid_max (at most 2^22).
        let dead = dir.url.appendingPathComponent(".out.pack.tmp-99999999-12345")
        let live = dir.url.appendingPathComponent(".out.pack.tmp-\(getppid())-1")
        let other = dir.url.appendingPathComponent(".other.tmp-99999999-1")
        for u in [dead, live, other] { try FileManager.default.createDirectory(at: u, withIntermediateDirectories: false) }
        _ = try AtomicOutput(target: target, force: false)
        #expect(!FileManager.default.fileExists(atPath: dead.path))
        #expect(FileManager.default.fileExists(atPath: live.path))
        #expect(FileManager.default.fileExists(atPath: other.path))
        // An interrupted replace: the target is gone, the old output moved aside by a dead process comes back.
        let old = dir.url.appendingPathComponent(".out.pack.old-99999999")
        try Data("old".utf8).write(to: old)
        AtomicOutput.removeLeftovers(of: target)
        #expect((try? Data(contentsOf: target)) == Data("old".utf8))
    }
}

import Foundation
import Testing
@testable import Quant

@Suite struct SafetensorsTests {
    @Test func readsTheTinyCheckpoint() throws {
        let te = try CheckpointComponent(name: "text_encoder", folder: Fixtures.tinyModel.appendingPathComponent("text_encoder"))
        #expect(te.files.count == 2)
        let info = try te.info("model.layers.0.mlp.up_proj.weight")
        #expect(info.dtype == "BF16")
        #expect(info.shape == [160, 64])
        let w = try te.floats("model.layers.0.mlp.up_proj.weight")
        #expect(w.count == 160 * 64)
        // Raw bf16 bits widen exactly.
        let (file, _) = try te.locate("model.layers.0.mlp.up_proj.weight")
        let raw = try (file as! SafetensorsFile).rawBytes("model.layers.0.mlp.up_proj.weight")
        let bits = raw.loadUnaligned(fromByteOffset: 2 * 77, as: UInt16.self)
        #expect(w[77].bitPattern == UInt32(bits) << 16)
        #expect(w.contains { $0 != 0 })
    }

    @Test func discoversTheDiffusersLayout() throws {
        let ck = try Checkpoint(path: Fixtures.tinyModel.path)
        #expect(ck.componentNames == ["text_encoder", "vae", "vae_rgba"])
        #expect(Set(ck.fileFolders.keys) == ["processor", "tokenizer"])
        #expect(ck.ignored.contains("scheduler"))
        let only = try Checkpoint(path: Fixtures.tinyModel.path, only: ["vae"])
        #expect(only.componentNames == ["vae"])
        #expect(only.fileFolders.isEmpty)
        let te = try Checkpoint(path: Fixtures.tinyModel.path, only: ["text_encoder"])
        #expect(te.componentNames == ["text_encoder"])
        #expect(Set(te.fileFolders.keys) == ["processor", "tokenizer"])
        let single = try Checkpoint(path: Fixtures.tinyModel.appendingPathComponent("vae").path)
        #expect(single.componentNames == ["vae"])
        let msg = errorText { _ = try Checkpoint(path: Fixtures.tinyModel.path, only: ["transformer"]) }
        #expect(msg?.contains("requested component transformer not found") == true)
    }

    @Test func writerRoundTrips() throws {
        let dir = try TempDir()
        var w = SafetensorsWriter(metadata: ["format": "pt"])
        let f: [Float] = [1, -2.5, 3.25, .pi, 0, -0.0]
        try w.add("a.f32", f32: f, shape: [2, 3])
        try w.add("b.bf16", bf16From: [1, 2, 3.14159], shape: [3])
        try w.add("c.i64", int64: [1, -2, Int64.max], shape: [3, 1])
        let p = dir.path("x.safetensors")
        try w.write(toPath: p)
        let r = try SafetensorsFile(path: p)
        #expect(r.metadata == ["format": "pt"])
        #expect(try r.floats("a.f32").map(\.bitPattern) == f.map(\.bitPattern))
        #expect(try r.floats("b.bf16") == [1, 2, Float(bitPattern: 0x4049_0000)])
        #expect(try r.int64s("c.i64") == [1, -2, Int64.max])
        #expect(try r.info("c.i64").shape == [3, 1])
        #expect(r.dataStart % 8 == 0)
        // No temporary files are left beside the output.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.url.path) == ["x.safetensors"])
        #expect(errorText { try w.write(toPath: p, force: false) }?.contains("already exists") == true)
    }

    @Test func f16AndIntegerDTypes() throws {
        let dir = try TempDir()
        var w = SafetensorsWriter()
        let halfs: [UInt16] = [0x3C00, 0xC000, 0x0001, 0x7BFF]  // 1, -2, smallest subnormal, 65504
        try w.add("h", dtype: .F16, shape: [4], bytes: halfs.withUnsafeBytes { Data($0) })
        try w.add("u8", dtype: .U8, shape: [3], bytes: Data([0, 7, 255]))
        try w.add("i32", dtype: .I32, shape: [2], bytes: [Int32(-5), 9].withUnsafeBytes { Data($0) })
        try w.write(toPath: dir.path("t.safetensors"))
        let r = try SafetensorsFile(path: dir.path("t.safetensors"))
        #expect(try r.floats("h") == [1, -2, Float(bitPattern: 0x3380_0000), 65504])
        #expect(try r.int64s("u8") == [0, 7, 255])
        #expect(try r.int64s("i32") == [-5, 9])
        #expect(try r.floats("i32") == [-5, 9])
        #expect(errorText { _ = try r.int64s("h") }?.contains("expected an integer tensor") == true)
    }

    /// Writes a file with a custom header and returns the error opening it produces.
    private func openError(_ header: String, data: Data = Data(count: 16), headerLength: UInt64? = nil,
                           truncateTo: Int? = nil) throws -> String? {
        let dir = try TempDir()
        var bytes = rawSafetensors(header: header, data: data, headerLength: headerLength)
        if let t = truncateTo { bytes = bytes.prefix(t) }
        let p = dir.path("bad.safetensors")
        try bytes.write(to: URL(fileURLWithPath: p))
        return errorText { _ = try SafetensorsFile(path: p) }
    }

    @Test func rejectsCorruptHeaders() throws {
        let ok = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#
        #expect(try openError(ok) == nil)
        let big = try openError(ok, headerLength: 1 << 40)
        #expect(big?.contains("bad.safetensors: header length 1099511627776 exceeds the limit") == true)
        let pastHeader = try openError(ok, headerLength: 4000)
        #expect(pastHeader?.contains("runs past the end of the file") == true)
        let short = try openError(ok, truncateTo: 5)
        #expect(short?.contains("file too short") == true)
        let truncated = try openError(ok, data: Data(count: 12))
        #expect(truncated?.contains("tensor b: data_offsets [8, 16] run past the end of the data (12 bytes)") == true)
        let overlap = try openError(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#)
        #expect(overlap?.contains("tensor b: data [4, 12) overlaps tensor a [0, 8)") == true)
        let wrongLength = try openError(#"{"a":{"dtype":"BF16","shape":[3,2],"data_offsets":[0,8]}}"#)
        #expect(wrongLength?.contains("tensor a: BF16 [3, 2] needs 12 bytes, but data_offsets [0, 8] hold 8") == true)
        let dtype = try openError(#"{"a":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}"#)
        #expect(dtype?.contains("tensor a: unsupported dtype F8_E4M3") == true)
        let notJSON = try openError("{not json}")
        #expect(notJSON?.contains("header is not valid JSON") == true)
        let negShape = try openError(#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#)
        #expect(negShape?.contains("tensor a: shape") == true)
    }

    @Test func rejectsBadIndexes() throws {
        let dir = try TempDir()
        let model = try copyTinyModel(into: dir)
        let te = model.appendingPathComponent("text_encoder")
        let index = te.appendingPathComponent("model.safetensors.index.json")
        let original = try String(contentsOf: index, encoding: .utf8)
        // A tensor mapped to a file that does not hold it.
        try original.replacingOccurrences(of: #""model.norm.weight": "model-00002-of-00002.safetensors""#,
                                          with: #""model.norm.weight": "model-00001-of-00002.safetensors""#)
            .write(to: index, atomically: true, encoding: .utf8)
        let m1 = errorText { _ = try CheckpointComponent(name: "text_encoder", folder: te) }
        #expect(m1?.contains("maps tensor model.norm.weight to model-00001-of-00002.safetensors") == true)
        // A missing shard file.
        try original.replacingOccurrences(of: "model-00002-of-00002", with: "model-00009-of-00009")
            .write(to: index, atomically: true, encoding: .utf8)
        let m2 = errorText { _ = try CheckpointComponent(name: "text_encoder", folder: te) }
        #expect(m2?.contains("refers to model-00009-of-00009.safetensors, which does not exist") == true)
        // Not JSON.
        try "garbage".write(to: index, atomically: true, encoding: .utf8)
        let m3 = errorText { _ = try CheckpointComponent(name: "text_encoder", folder: te) }
        #expect(m3?.contains("model.safetensors.index.json: not valid JSON: invalid number at line 1") == true, "\(m3 ?? "")")
        // No weights at all.
        let empty = dir.url.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        let m4 = errorText { _ = try Checkpoint(path: empty.path) }
        #expect(m4?.contains("no model components found") == true)
    }
}

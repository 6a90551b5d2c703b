import Foundation
import Testing
@testable import Quant

/// The GGUF reader: every decodable ggml type against the `gguf` package's decoder (the fixture's
/// `blocks-ref.safetensors`, see MANIFEST.md), and malformed files built here byte by byte.
@Suite struct GGUFTests {
    static let blocks = Fixtures.root.appendingPathComponent("gguf/blocks.gguf").path
    static let blocksRef = Fixtures.root.appendingPathComponent("gguf/blocks-ref.safetensors").path

    @Test func decodesEveryTypeBitForBitLikeTheReferenceDecoder() throws {
        let f = try GGUFFile(path: Self.blocks)
        let ref = try SafetensorsFile(path: Self.blocksRef)
        #expect(Set(f.tensorNames) == Set(GGMLType.allCases.map(\.name)))
        #expect(try f.string("general.architecture") == "blocks")
        for name in f.tensorNames {
            let info = try f.info(name)
            #expect(info.shape == [2, 512], "\(name)")
            let want = try ref.floats(name)
            var got = [Float](repeating: .nan, count: want.count)
            try got.withUnsafeMutableBufferPointer { try f.floats(name, elements: 0..<want.count, into: $0.baseAddress!) }
            let mismatch = zip(got, want).enumerated().first { $0.element.0.bitPattern != $0.element.1.bitPattern }
            #expect(mismatch == nil, "\(name): element \(mismatch?.offset ?? -1) is \(mismatch?.element.0 ?? 0), the reference \(mismatch?.element.1 ?? 0)")
            // Ranges that start and end inside blocks, cross block and row boundaries, or are one element.
            for r in [0..<1, 5..<300, 31..<33, 255..<257, 511..<513, 700..<1024, 1023..<1024, 1..<2, 32..<64] {
                var part = [Float](repeating: .nan, count: r.count)
                try part.withUnsafeMutableBufferPointer { try f.floats(name, elements: r, into: $0.baseAddress!) }
                #expect(part.map(\.bitPattern) == want[r].map(\.bitPattern), "\(name) \(r)")
            }
        }
    }

    @Test func blockGeometryMatchesGGML() {
        // ggml-common.h's static asserts: sizeof(block_q4_0) == 2 + 16, ..., sizeof(block_q6_K) == 210.
        let expected: [GGMLType: (Int, Int)] = [.Q4_0: (32, 18), .Q4_1: (32, 20), .Q5_0: (32, 22), .Q5_1: (32, 24), .Q8_0: (32, 34),
                                                .Q4_K: (256, 144), .Q5_K: (256, 176), .Q6_K: (256, 210), .F32: (1, 4), .F16: (1, 2), .BF16: (1, 2)]
        for t in GGMLType.allCases {
            #expect(t.blockElements == expected[t]!.0 && t.blockBytes == expected[t]!.1, "\(t)")
            #expect(GGMLType.catalog[t.rawValue]!.name == t.name && GGMLType.catalog[t.rawValue]!.bytes == t.blockBytes)
        }
    }

    // MARK: - malformed files

    /// A GGUF writer for malformed-file tests (the fixtures themselves come from the `gguf` package).
    struct Builder {
        var version: UInt32 = 3
        var kv: [(String, Data)] = []
        var tensors: [(name: String, ne: [UInt64], type: UInt32, offset: UInt64)] = []
        var data = Data(count: 64)
        var alignment = 32
        var tensorCount: UInt64?

        static func u32(_ v: UInt32) -> Data { withUnsafeBytes(of: v.littleEndian) { Data($0) } }
        static func u64(_ v: UInt64) -> Data { withUnsafeBytes(of: v.littleEndian) { Data($0) } }
        static func str(_ s: String) -> Data { u64(UInt64(s.utf8.count)) + Data(s.utf8) }
        static func stringValue(_ s: String) -> Data { u32(8) + str(s) }

        mutating func tensor(_ name: String, _ ne: [UInt64], type: UInt32 = 0, offset: UInt64 = 0) {
            tensors.append((name, ne, type, offset))
        }

        func bytes() -> Data {
            var d = Data("GGUF".utf8) + Self.u32(version) + Self.u64(tensorCount ?? UInt64(tensors.count)) + Self.u64(UInt64(kv.count))
            for (k, v) in kv { d += Self.str(k) + v }
            for t in tensors {
                d += Self.str(t.name) + Self.u32(UInt32(t.ne.count))
                for n in t.ne { d += Self.u64(n) }
                d += Self.u32(t.type) + Self.u64(t.offset)
            }
            while d.count % alignment != 0 { d.append(0) }
            return d + data
        }
    }

    func open(_ b: Builder) throws -> String? {
        let dir = try TempDir()
        let p = dir.path("bad.gguf")
        try b.bytes().write(to: URL(fileURLWithPath: p))
        return errorText { _ = try GGUFFile(path: p) }
    }

    func valid() -> Builder {
        var b = Builder()
        b.kv.append(("general.architecture", Builder.stringValue("qwen2vl")))
        b.tensor("a", [8, 2])          // 16 f32 = 64 bytes at 0
        return b
    }

    @Test func theValidBaseOpens() throws {
        #expect(try open(valid()) == nil)
    }

    @Test func refusesMalformedHeadersNamingWhatIsWrong() throws {
        var cases: [(String, Builder, String)] = []
        var b = valid(); b.version = 1; cases.append(("version 1", b, "GGUF version 1 is not supported"))
        b = valid(); b.tensorCount = 1 << 40; cases.append(("huge count", b, "more than a"))
        b = valid(); b.kv.append(("general.architecture", Builder.stringValue("x"))); cases.append(("dup key", b, "metadata key general.architecture appears twice"))
        b = valid(); b.tensor("a", [16]); cases.append(("dup tensor", b, "tensor a: appears twice"))
        b = valid(); b.tensors[0].ne = [1, 1, 1, 1, 1]; cases.append(("5 dims", b, "has 5 dimensions"))
        b = valid(); b.tensors[0].ne = [0, 2]; cases.append(("zero dim", b, "dimension 0 is out of range"))
        b = valid(); b.tensors[0].type = 99; cases.append(("type 99", b, "unknown ggml type id 99"))
        b = valid(); b.tensors[0].type = 8; b.tensors[0].ne = [31, 1]; cases.append(("q8_0 row 31", b, "Q8_0 stores blocks of 32, but the row length ne[0] is 31"))
        b = valid(); b.tensors[0].offset = 4; cases.append(("misaligned", b, "not a multiple of the alignment 32"))
        b = valid(); b.tensors[0].offset = 32; cases.append(("past end", b, "past the end of the data section"))
        b = valid(); b.tensor("b", [8], offset: 32); cases.append(("overlap", b, "overlaps tensor a"))
        b = valid(); b.kv.append(("general.alignment", Builder.u32(4) + Builder.u32(24))); cases.append(("alignment 24", b, "general.alignment is"))
        b = valid(); b.kv.append(("flag", Builder.u32(7) + Data([2]))); cases.append(("bool 2", b, "bool byte is 2"))
        b = valid(); b.kv.append(("nest", Builder.u32(9) + Builder.u32(9) + Builder.u64(1) + Builder.u32(4) + Builder.u64(0)))
        cases.append(("nested array", b, "arrays of arrays are not supported"))
        b = valid(); b.kv.append(("big", Builder.u32(8) + Builder.u64(1 << 30))); cases.append(("long string", b, "exceeds the limit"))
        b = valid(); b.kv.append(("utf", Builder.u32(8) + Builder.u64(2) + Data([0xC3, 0x28]))); cases.append(("bad utf8", b, "is not valid UTF-8"))
        b = valid(); b.kv.append(("t13", Builder.u32(13) + Builder.u32(0))); cases.append(("value type 13", b, "unknown value type 13"))
        b = valid(); b.kv.append(("arr", Builder.u32(9) + Builder.u32(4) + Builder.u64(1 << 40))); cases.append(("huge array", b, "does not fit in the rest of the file"))
        b = valid(); b.kv.append(("", Builder.stringValue("x"))); cases.append(("empty key", b, "is empty"))
        b = valid(); b.tensors[0].name = ""; cases.append(("empty name", b, "has an empty name"))
        for (what, builder, phrase) in cases {
            let e = try open(builder)
            #expect(e?.contains("bad.gguf") == true && e?.contains(phrase) == true, "\(what): \(e ?? "no error")")
        }
    }

    @Test func refusesTruncationsAtEveryByteOfTheHeader() throws {
        let full = valid().bytes()
        let dir = try TempDir()
        let p = dir.path("cut.gguf")
        for n in stride(from: 0, to: full.count - 64, by: 1) {
            try full.prefix(n).write(to: URL(fileURLWithPath: p))
            let e = errorText { _ = try GGUFFile(path: p) }
            #expect(e?.contains("cut.gguf") == true, "cut at \(n): \(e ?? "no error")")
        }
        try Data("GGUG".utf8).write(to: URL(fileURLWithPath: p))
        #expect(errorText { _ = try GGUFFile(path: p) }?.contains("not a GGUF file") == true)
    }

    @Test func aTypeItDoesNotDecodeIsNamedWhenRead() throws {
        var b = valid()
        b.tensors[0] = ("iq", [256], 23, 0)   // IQ4_XS: 136 bytes per 256
        b.data = Data(count: 160)
        let dir = try TempDir()
        let p = dir.path("iq.gguf")
        try b.bytes().write(to: URL(fileURLWithPath: p))
        let f = try GGUFFile(path: p)
        #expect(try f.info("iq").typeName == "IQ4_XS")
        var out = [Float](repeating: 0, count: 256)
        let e = errorText { try out.withUnsafeMutableBufferPointer { try f.floats("iq", elements: 0..<256, into: $0.baseAddress!) } }
        #expect(e?.contains("IQ4_XS") == true && e?.contains("llama-quantize") == true, "\(e ?? "no error")")
    }

    @Test func metadataOfTheWrongTypeIsNamed() throws {
        var b = valid()
        b.kv.append(("qwen2vl.block_count", Builder.stringValue("three")))
        let dir = try TempDir()
        let p = dir.path("m.gguf")
        try b.bytes().write(to: URL(fileURLWithPath: p))
        let f = try GGUFFile(path: p)
        let e = errorText { _ = try f.int("qwen2vl.block_count") }
        #expect(e?.contains("metadata qwen2vl.block_count is a string, expected an integer") == true, "\(e ?? "no error")")
    }
}

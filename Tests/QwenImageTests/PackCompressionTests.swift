import Foundation
@testable import Quant
import Testing
@testable import QwenImage

// Per-shard compression (docs/FORMAT.md §3.2): a zstd pack keeps the row-gathered embedding table
// raw, and packs written before that (every shard zstd, no per-shard key) still read the same.

@Suite("Per-shard compression of the text encoder", .serialized)
struct PackCompressionTests {
    /// A copy of the zstd `scheme` pack made the way packs were before per-shard compression: the
    /// embedding shard zstd too, and no shard record naming its own compression.
    static func oldStyleZstdPack(_ scheme: String) throws -> String {
        let path = try TF.copy(pack: try TF.pack(scheme, zstd: 3), name: "old-zstd-\(scheme)")
        let folder = URL(fileURLWithPath: path).appendingPathComponent("text_encoder")
        let manifestURL = folder.appendingPathComponent(PackFormat.manifestFile)
        var m = try JSONDecoder().decode(ComponentManifest.self, from: Data(contentsOf: manifestURL))
        let i = m.shards.firstIndex { $0.name == "embed" }!
        let raw = m.shards[i]
        let rawFile = folder.appendingPathComponent(raw.file)
        let scratch = folder.appendingPathComponent("scratch")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: false)
        let slots = raw.tensors.map {
            PackTensorSlot(name: $0.name, shape: $0.shape, scheme: $0.scheme, group: $0.group, layout: $0.layout, bytes: $0.bytes)
        }
        let writer = try PackShardWriter(folder: scratch, name: raw.name, slots: slots, zstdLevel: m.zstdLevel ?? 3,
                                         chunkBytes: m.chunkBytes ?? PackFormat.defaultChunkBytes)
        do {
            let mapped = try MappedFile(path: rawFile.path)
            for (j, t) in raw.tensors.enumerated() { try writer.write(j, at: 0, from: mapped.base! + t.offset, count: t.bytes) }
        }
        m.shards[i] = try writer.finish(threads: 1) { _, _ in }
        try FileManager.default.removeItem(at: rawFile)
        try FileManager.default.moveItem(at: scratch.appendingPathComponent(raw.file), to: rawFile)
        try FileManager.default.removeItem(at: scratch)
        for k in m.shards.indices { m.shards[k].compression = nil }
        try JSONEncoder().encode(m).write(to: manifestURL)
        return path
    }

    @Test("a zstd pack stores the embedding raw and encodes bit-identically to the raw pack", arguments: ["q8", "bf16"])
    func mixedPackEncodesLikeRaw(scheme: String) throws {
        let rawPath = try TF.pack(scheme), zstdPath = try TF.pack(scheme, zstd: 3)
        let te = try Pack(path: zstdPath).component("text_encoder")
        #expect(te.manifest.compression == "zstd")
        #expect(te.shardNames.filter { !te.isCompressed($0) } == ["embed"])
        let header = try Data(contentsOf: te.folder.appendingPathComponent("embed.qwshard")).prefix(16)
        #expect(header[12] == 0)   // §4.0 compression: none
        let prompts = try TF.singlePrompts().map(\.prompt)
        let base = try TF.encode(prompts, pack: rawPath)
        let z = try TF.encode(prompts, pack: zstdPath)
        #expect(z.mask == base.mask)
        #expect(z.embeds == base.embeds, "zstd pack gives different numbers than the raw pack")
    }

    @Test("an old zstd pack (embedding compressed, no per-shard keys) reads as before")
    func oldStylePack() throws {
        let old = try Self.oldStyleZstdPack("q8")
        let te = try Pack(path: old).component("text_encoder")
        #expect(te.manifest.shards.allSatisfy { $0.compression == nil })
        #expect(te.shardNames.allSatisfy { te.isCompressed($0) })
        let prompts = try TF.singlePrompts().map(\.prompt)
        #expect(try TF.encode(prompts, pack: old).embeds == (try TF.encode(prompts, pack: try TF.pack("q8"))).embeds)

        // The planner sees the compressed table (whole buffer + file while the rows are read)...
        let model = try LanguageModel(pack: try Pack(path: old), packPath: old)
        let w = model.weightFootprint()
        let embed = te.manifest.shards.first { $0.name == "embed" }!
        #expect(w.embedCompressed && w.layersCompressed && w.embedFileBytes == embed.fileBytes)
        #expect(w.embeddingResident(tokens: 1) == embed.payloadBytes + embed.fileBytes)
        // ...and that the loader frees it afterwards: it is the one shard larger than all others.
        let others = te.manifest.shards.filter { $0.name != "embed" }.map(\.payloadBytes)
        #expect(embed.payloadBytes > others.max()! && te.poolLimitBytes == others.max()!)
        #expect(w.pooledEmbedBytes == 0 && w.layerPhaseBytes(prefetch: true) == 2 * w.layerBytes + w.layerFileBytes)
        let table = try te.shard("embed")
        _ = try table.weight("model.embed_tokens.weight")
        table.release()
        #expect(te.pooledBufferBytes.isEmpty)
        let layer = try te.shard("layers.0")
        layer.release()
        #expect(te.pooledBufferBytes == [layer.record.payloadBytes])
    }
}

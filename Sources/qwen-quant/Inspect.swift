import ArgumentParser
import Foundation
import Quant
import QwenImage

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List a pack's components, tensors, schemes, sizes, bits per weight and compression.",
        discussion: """
        Examples:
          qwen-quant inspect qwen-image-q8.pack
          qwen-quant inspect qwen-image-q8.pack --tensors
          qwen-quant inspect qwen-image-q8.pack --json
        """)

    @Argument(help: "Pack folder.")
    var pack: String

    @Flag(help: "List every tensor.")
    var tensors = false

    @Flag(help: "Print JSON on stdout.")
    var json = false

    struct TensorRow: Encodable {
        let name, shard, scheme, layout: String
        let shape: [Int]; let group, bytes: Int
        let source: String?; let rel_rmse: Double?
    }
    struct ShardRow: Encodable {
        let name, compression: String
        let payload_bytes, file_bytes: Int
    }
    struct ComponentRow: Encodable {
        let name, kind, compression: String
        let tensors, shards, payload_bytes, file_bytes, weight_elements, weight_bytes: Int
        let bits_per_weight, compression_ratio: Double
        let schemes: [String: Int]
        let dropped: [String]
        let shard_list: [ShardRow]?
        let tensor_list: [TensorRow]?
        let files: [String]?
    }
    struct Report: Encodable {
        let pack: String; let format_version: Int; let created_by: String; let source: String
        let options: [String: String]; let components: [ComponentRow]; let total_file_bytes: Int
    }

    func run() throws {
        try runReportingErrors {
            let p = try Pack(path: pack)
            var rows: [ComponentRow] = []
            for entry in p.manifest.components.sorted(by: { $0.name < $1.name }) {
                if entry.kind == "files" {
                    let bytes = (entry.files ?? []).reduce(0) { $0 + ((try? p.fileData(component: entry.name, name: $1).count) ?? 0) }
                    rows.append(ComponentRow(name: entry.name, kind: "files", compression: "none", tensors: 0, shards: 0,
                                             payload_bytes: bytes, file_bytes: bytes, weight_elements: 0, weight_bytes: 0,
                                             bits_per_weight: 0, compression_ratio: 1, schemes: [:], dropped: [],
                                             shard_list: nil, tensor_list: nil, files: entry.files))
                    continue
                }
                let c = try p.component(entry.name)
                let m = c.manifest
                var schemes: [String: Int] = [:]
                var we = 0, wb = 0, payload = 0, fileBytes = 0
                var list: [TensorRow] = []
                var shardRows: [ShardRow] = []
                for s in m.shards {
                    fileBytes += s.fileBytes
                    shardRows.append(ShardRow(name: s.name, compression: m.compression(of: s), payload_bytes: s.payloadBytes,
                                              file_bytes: s.fileBytes))
                    for t in s.tensors {
                        let key = t.scheme.rawValue + (t.group > 0 ? ":\(t.group)" : "") + (t.layout == .dense ? " (vector)" : "")
                        schemes[key, default: 0] += 1
                        payload += t.bytes
                        if t.layout == .qkWeight { we += t.elementCount; wb += t.bytes }
                        list.append(TensorRow(name: t.name, shard: s.name, scheme: t.scheme.rawValue,
                                              layout: t.layout == .dense ? "dense" : "qk_weight", shape: t.shape, group: t.group,
                                              bytes: t.bytes, source: t.source, rel_rmse: t.relRMSE))
                    }
                }
                rows.append(ComponentRow(
                    name: entry.name, kind: "model", compression: m.compression + (m.zstdLevel.map { ":\($0)" } ?? ""),
                    tensors: list.count, shards: m.shards.count, payload_bytes: payload, file_bytes: fileBytes,
                    weight_elements: we, weight_bytes: wb, bits_per_weight: we > 0 ? 8 * Double(wb) / Double(we) : 0,
                    compression_ratio: fileBytes > 0 ? Double(payload) / Double(fileBytes) : 1, schemes: schemes,
                    dropped: m.dropped, shard_list: shardRows, tensor_list: (tensors || json) ? list : nil, files: nil))
            }
            let report = Report(pack: p.path, format_version: p.manifest.version, created_by: p.manifest.createdBy,
                                source: p.manifest.source.path, options: p.manifest.options, components: rows,
                                total_file_bytes: rows.reduce(0) { $0 + $1.file_bytes })
            if json { try printJSON(report); return }
            var lines = ["pack \(p.path) (format \(p.manifest.version), \(p.manifest.createdBy))",
                         "  source: \(p.manifest.source.path) (\(p.manifest.source.files.count) files hashed)",
                         "  options: " + p.manifest.options.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")]
            for r in rows {
                if r.kind == "files" {
                    lines.append("  \(pad(r.name, 13)) files: \((r.files ?? []).joined(separator: ", "))")
                    continue
                }
                lines.append("  \(pad(r.name, 13)) \(r.tensors) tensors in \(r.shards) shards, "
                             + "\(ByteSize.format(r.payload_bytes)) payload, \(ByteSize.format(r.file_bytes)) on disk "
                             + String(format: "(%@, ratio %.2f), %.2f bits/weight", r.compression, r.compression_ratio, r.bits_per_weight))
                lines.append("      schemes: " + r.schemes.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", "))
                // Shards stored otherwise than the component's default compression (a zstd pack's raw embedding).
                let byDefault = r.compression.prefix { $0 != ":" }   // "zstd:3" -> "zstd"
                for (c, shards) in Dictionary(grouping: r.shard_list ?? [], by: \.compression).sorted(by: { $0.key < $1.key })
                where c != byDefault {
                    lines.append("      \(c == "none" ? "raw" : c) shards: \(shards.map(\.name).joined(separator: ", "))")
                }
                if !r.dropped.isEmpty { lines.append("      dropped: \(r.dropped.joined(separator: ", "))") }
                for t in r.tensor_list ?? [] {
                    lines.append("      \(pad(t.name, 58)) \(pad(shapeText(t.shape), 14)) \(pad(t.scheme + (t.group > 0 ? ":\(t.group)" : ""), 7)) "
                                 + "\(lpad(ByteSize.format(t.bytes), 11))  \(pad(t.shard, 20)) rmse \(t.rel_rmse.map(rmseText) ?? "-")")
                }
            }
            lines.append("  total on disk: \(ByteSize.format(report.total_file_bytes))")
            print(lines.joined(separator: "\n"))
        }
    }
}

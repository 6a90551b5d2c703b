import ArgumentParser
import Foundation
import Quant
import QwenImage

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check every checksum of a pack; with --source, also each tensor's error against the checkpoint.",
        discussion: """
        Exit code 1 when any checksum fails or a tensor cannot be compared.

        Examples:
          qwen-quant verify qwen-image-q8.pack
          qwen-quant verify qwen-image-q8.pack --source Qwen-Image --json
        """)

    @Argument(help: "Pack folder.")
    var pack: String

    @Option(help: "The checkpoint the pack was made from (per-tensor relative RMSE).")
    var source: String?

    @Option(help: "Worker threads (default: all cores).")
    var threads: Int?

    @Flag(help: "Print JSON on stdout.")
    var json = false

    func run() throws {
        var failed = false
        try runReportingErrors {
            _ = try applyThreads(threads)
            let p = try Pack(path: pack)
            let src = try source.map { try Checkpoint(path: $0) }
            let report = try PackVerifier.verify(pack: p, source: src)
            if json { try printJSON(report) }
            var lines = ["verified \(report.tensors.count) tensors of \(p.path): "
                         + (report.ok ? "all checksums match" : "\(report.failures.count) failure(s)")]
            for f in report.failures.prefix(20) { lines.append("  FAIL \(f)") }
            if src != nil {
                let worst = report.tensors.filter { $0.relRMSE != nil }.sorted { $0.relRMSE! > $1.relRMSE! }
                lines.append("  relative RMSE vs source, worst first:")
                for t in worst.prefix(10) {
                    lines.append("    \(pad(rmseText(t.relRMSE!), 10)) \(pad(t.scheme + (t.group > 0 ? ":\(t.group)" : ""), 7)) \(t.component)/\(t.name)")
                }
                if let changed = report.changedSourceFiles, !changed.isEmpty {
                    lines.append("  note: \(changed.count) source file(s) differ from the ones converted: \(changed.prefix(5).joined(separator: ", "))")
                }
            }
            note(lines.joined(separator: "\n"))
            failed = !report.ok
        }
        if failed { throw ExitCode(1) }
    }
}

import ArgumentParser
import Foundation
import Quant
import QwenImage

/// `qwen-bench dataset`: `qwen-run encode --out-dir` on a prompts file of captions, as a dataset job runs
/// it: prompts per second, tokens per second and peak RSS per pack and chunk size (warm page cache).
struct DatasetBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dataset",
        abstract: "Dataset mode (encode --out-dir): prompts per second for a file of short captions.",
        discussion: """
        The prompts are the bundled calibration set (256 varied image prompts, English and Chinese) repeated
        up to --prompts. Each case runs one untimed warm-up job of --chunk-size prompts (so the pack is in the
        page cache), then --repeat timed jobs into a fresh folder. Results: benchmarks/results/dataset.json,
        section "Dataset mode" of RESULTS.md.

        Examples:
          qwen-bench dataset --packs /work/bench-data/packs --cases q4c,q8s --prompts 1000
          qwen-bench dataset --packs /work/bench-data/packs --cases q4c --prompts 256 --chunk-sizes 16,64,256
        """)

    @Option(name: .long, help: "Folder holding one pack per case.")
    var packs: String

    @Option(name: .long, help: "Comma-separated pack cases (sub-folders of --packs).")
    var cases = "q4c,q8s"

    @Option(name: .long, help: "Number of prompts in the file.")
    var prompts = 1000

    @Option(name: .customLong("chunk-sizes"), help: "Comma-separated --chunk-size values.")
    var chunkSizes = "64"

    @Option(name: .long, help: "Timed jobs per case (the median is reported).")
    var `repeat` = 1

    @Option(name: .long, help: "Threads.")
    var threads = 2

    @Option(name: .customLong("shared-prefix"), help: "on: the template's prefix is computed once (the default of qwen-run); off: every prompt runs its own template rows (QWEN_SHARED_PREFIX=0), for A/B runs.")
    var sharedPrefix = "on"

    @Option(name: .long, help: "Results file name under benchmarks/results.")
    var name = "dataset"

    func run() throws {
        guard sharedPrefix == "on" || sharedPrefix == "off" else { throw ValidationError("--shared-prefix: on or off, found \(sharedPrefix)") }
        let qwenRun = try Paths.tool("qwen-run")
        let sizes = chunkSizes.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !sizes.isEmpty, sizes.allSatisfy({ $0 >= 1 }) else { throw ValidationError("--chunk-sizes: expected counts like 64, found \(chunkSizes)") }
        guard prompts >= 1 else { throw ValidationError("--prompts must be at least 1") }
        let work = NSTemporaryDirectory() + "qwen-bench-dataset-\(getpid())"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        let set = CalibrationPrompts.all
        let texts = (0 ..< prompts).map { set[$0 % set.count] }
        let file = work + "/prompts.jsonl"
        let lines = try texts.map { String(decoding: try JSONSerialization.data(withJSONObject: $0, options: [.fragmentsAllowed]), as: UTF8.self) }
        try (lines.joined(separator: "\n") + "\n").write(toFile: file, atomically: true, encoding: .utf8)

        var records: [[String: Any]] = []
        for c in cases.split(separator: ",").map(String.init) {
            let pack = URL(fileURLWithPath: packs).appendingPathComponent(c).path
            guard FileManager.default.fileExists(atPath: pack) else {
                records.append(["case": c, "status": "not measured (pack \(pack) missing)"]); continue
            }
            for size in sizes {
                func job(_ promptsFile: String) throws -> ChildResult {
                    let dir = work + "/out-\(UInt32.random(in: 0 ... .max))"
                    defer { try? FileManager.default.removeItem(atPath: dir) }
                    return try Child.run([qwenRun, "encode", "--pack", pack, "--prompts-file", promptsFile, "--out-dir", dir,
                                          "--chunk-size", String(size), "--threads", String(threads), "--json"],
                                         env: ["QWEN_SHARED_PREFIX": sharedPrefix == "off" ? "0" : "1"])
                }
                let warmFile = work + "/warm.jsonl"
                try (lines.prefix(size).joined(separator: "\n") + "\n").write(toFile: warmFile, atomically: true, encoding: .utf8)
                _ = try job(warmFile)
                var rec: [String: Any] = ["case": c, "prompts": prompts, "chunk_size": size, "threads": threads,
                                          "shared_prefix": sharedPrefix != "off"]
                var times: [Double] = [], rss: [Int] = []
                var summary: [String: Any] = [:]
                for i in 0 ..< max(1, self.repeat) {
                    let r = try job(file)
                    guard r.status == 0, let s = r.json else {
                        rec["status"] = "failed: exit \(r.status): \(lastLine(r.stderr))"; break
                    }
                    times.append(r.seconds); rss.append(r.peakRSS); summary = s.filter { $0.value is NSNumber || $0.value is String }
                    note(String(format: "%@ chunk %d, %d prompts, run %d: %.1f s, %.2f prompts/s, peak RSS %@", c, size, prompts, i + 1,
                                r.seconds, Double(prompts) / r.seconds, ByteSize.format(r.peakRSS)))
                }
                if !times.isEmpty {
                    let med = median(times)
                    rec.merge([
                        "status": "ok", "repeats": times.count, "wall_s_median": med, "wall_s_min": times.min()!, "wall_s_max": times.max()!,
                        "prompts_per_second": Double(prompts) / med, "tokens": summary["tokens"] ?? 0,
                        "tokens_per_second": Double(summary["tokens"] as? Int ?? 0) / med, "peak_rss_bytes": rss.max()!,
                        "summary": summary,
                        "command": "qwen-run encode --pack \(c) --prompts-file prompts.jsonl --out-dir DIR --chunk-size \(size) --threads \(threads) --json",
                    ]) { a, _ in a }
                }
                records.append(rec)
                try ResultsFile.write(name, records: records, extra: ["prompt_set": "CalibrationPrompts.all repeated to \(prompts)"])
            }
        }
    }
}

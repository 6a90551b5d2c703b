import ArgumentParser
import Foundation
import Quant

/// `qwen-bench text`: prompt encoding speed and peak RSS of the full-size text encoder, one child
/// process per run (`qwen-run encode --json`), for several packs and prompt lengths.
struct TextBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "text",
        abstract: "Text encoder speed and peak RSS on full-size packs (64/256/1024-token prompts).",
        discussion: """
        The prompt has exactly N tokens (checked with `qwen-run tokenize`); the text-to-image template
        adds its own tokens around it (the encoder processes N + 39 tokens; the summary's `tokens`).
        Packs are read from --packs/<case> (see `qwen-bench convert --keep`); a case ending in +dot runs
        that pack with --bf16-dot (bf16 packs: bf16 activations and the CPU's bf16 dot product).

        Examples:
          qwen-bench text --packs /work/bench-data/packs
          qwen-bench text --packs /work/bench-data/packs --cases q4-g32 --tokens 256 --repeat 1
          qwen-bench text --packs /work/bench-data/packs --cases bf16,bf16+dot --tokens 256
        """)

    @Option(name: .long, help: "Folder holding one pack per case (from `qwen-bench convert`).")
    var packs: String

    @Option(name: .long, help: "Comma-separated pack cases.")
    var cases = "bf16,q8-pc,q4-g32,q4-g32-zstd3"

    @Option(name: .long, help: "Comma-separated prompt lengths in tokens.")
    var tokens = "64,256,1024"

    @Option(name: .long, help: "Runs per case (the median is reported).")
    var `repeat` = 3

    @Option(name: .long, help: "Threads.")
    var threads = 2

    @Option(name: .long, help: "Untimed runs per pack before measuring (the first reads the pack from disk; its time is recorded as cold_first_run_s).")
    var warmup = 1

    @Flag(name: .long, help: "One run of 256 tokens per pack.")
    var quick = false

    @Option(name: .long, help: "Results file name under benchmarks/results.")
    var name = "text"

    func run() throws {
        let qwenRun = try Paths.tool("qwen-run")
        let lengths = quick ? [256] : tokens.split(separator: ",").compactMap { Int($0) }
        let reps = quick ? 1 : self.repeat
        let work = NSTemporaryDirectory() + "qwen-bench-text-\(getpid())"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        var records: [[String: Any]] = []
        var prompts: [Int: String] = [:]
        for c in cases.split(separator: ",").map(String.init) {
            let (packName, runFlags) = RunVariant.split(c)
            let pack = URL(fileURLWithPath: packs).appendingPathComponent(packName).path
            guard FileManager.default.fileExists(atPath: pack) else {
                records.append(["case": c, "status": "not measured (pack \(pack) missing)"]); continue
            }
            func argv(_ n: Int) throws -> [String] {
                if prompts[n] == nil { prompts[n] = try PromptMaker.prompt(tokens: n, pack: pack, qwenRun: qwenRun) }
                return [qwenRun, "encode", "--pack", pack, "--prompt", prompts[n]!, "--out", work + "/out.safetensors", "--force",
                        "--threads", String(threads), "--json"] + runFlags
            }
            // Another pack may have pushed this one out of the page cache: the first run reads it from disk.
            var cold: Double?
            for i in 0..<max(0, warmup) {
                let w = try SpeedCase.measure(try argv(lengths[0]), repeat: 1, label: "text \(c) \(lengths[0]) tokens (warm-up \(i + 1))")
                if i == 0 { cold = w["wall_s_median"] as? Double }
            }
            for n in lengths {
                var rec = try SpeedCase.measure(try argv(n), repeat: reps, label: "text \(c) \(n) tokens")
                if let t = cold { rec["cold_first_run_s"] = t; rec["cold_first_run_tokens"] = lengths[0]; cold = nil }
                rec["case"] = c
                rec["prompt_tokens"] = n
                rec["threads"] = threads
                if let s = rec["summary"] as? [String: Any], let t = s["tokens"] as? Int, let med = rec["wall_s_median"] as? Double {
                    rec["tokens_per_s"] = Double(t) / med
                    // 2 · (linear weights of the 28 layers: 28 · 233,046,016) · tokens: the prefill's matrix products.
                    rec["gemm_gflop"] = 2 * 6_525_288_448 * Double(t) / 1e9
                }
                records.append(rec)
                try ResultsFile.write(name, records: records)
            }
        }
        try ResultsFile.write(name, records: records)
    }
}

/// Builds prompts of an exact token count from single-token words of the pack's vocabulary.
enum PromptMaker {
    static func prompt(tokens n: Int, pack: String, qwenRun: String) throws -> String {
        let words = ["red", "fox", "snow", "dawn", "soft", "light", "cat", "photo", "of", "the", "in", "at", "and", "a",
                     "water", "style", "blue", "sky", "tree", "house", "river", "stone", "green", "old", "small", "big"]
        var text = (0..<n).map { words[$0 % words.count] }.joined(separator: " ")
        for _ in 0..<4 {
            let count = try count(text, pack: pack, qwenRun: qwenRun)
            if count == n { return text }
            if count > n {
                var w = text.split(separator: " ")
                w.removeLast(min(w.count - 1, count - n))
                text = w.joined(separator: " ")
            } else {
                text += String(repeating: " cat", count: n - count)
            }
        }
        let final = try count(text, pack: pack, qwenRun: qwenRun)
        guard final == n else { throw BenchError.bad("could not build a \(n)-token prompt (got \(final))") }
        return text
    }

    static func count(_ text: String, pack: String, qwenRun: String) throws -> Int {
        let r = try Child.run([qwenRun, "tokenize", "--pack", pack, "--text", text], echo: false)
        guard r.status == 0, let d = r.stdout.data(using: .utf8),
              let ids = try? JSONSerialization.jsonObject(with: d) as? [Any] else {
            throw BenchError.bad("qwen-run tokenize failed: \(lastLine(r.stderr))")
        }
        return ids.count
    }
}

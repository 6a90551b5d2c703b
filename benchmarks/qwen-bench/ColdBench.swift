import ArgumentParser
import Foundation
import Quant

/// `qwen-bench cold`: what a user on a small box sees. The text encoder run from a pack that is not in
/// the page cache (evicted before every run), inside memory cgroups of a few GiB (page cache included),
/// and batches of prompts read cold, against the warm runs and the storage's own sequential read rate.
struct ColdBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cold",
        abstract: "Text encoder runs with the pack evicted from the page cache, in memory cgroups, and cold batches.",
        discussion: """
        For each pack case: warm runs (after one untimed warm-up), then for each --memory-limits entry
        --repeat runs that each start with the pack evicted from the page cache (posix_fadvise DONTNEED on
        every file; no root needed), inside a memory cgroup of that size when the entry is not `none`
        (needs root and a cgroup memory controller; skipped with the reason otherwise). Then cold batches:
        `--prompts-file` with N short prompts for each --batches entry, to show that a batch reads the
        weights once. Every run records wall time, peak RSS, the bytes it read from storage (ru_inblock)
        and the cgroup's peak (page cache included).

        The storage's sequential read rate is measured first on the packs' file system (a --disk-bytes
        file, evicted before each read), so cold runs can be reported against max(pack bytes / read rate,
        warm time). Results: benchmarks/results/cold.json, section "Cold cache and small RAM" of RESULTS.md.

        Examples:
          qwen-bench cold --packs /work/bench-data/packs --cases q4c,q8s
          qwen-bench cold --packs /work/bench-data/packs --cases q4c --memory-limits none,2G --batches 1,8,64 --repeat 3
        """)

    @Option(name: .long, help: "Folder holding one pack per case.")
    var packs: String

    @Option(name: .long, help: "Comma-separated pack cases (sub-folders of --packs; a case ending in +direct or +mapped runs it with --stream direct / mapped).")
    var cases = "q4c,q8s"

    @Option(name: .long, help: "Prompt length in tokens for the single-prompt runs.")
    var tokens = 256

    @Option(name: .long, help: "Runs per case and mode (the median is reported).")
    var `repeat` = 3

    @Option(name: .long, help: "Threads.")
    var threads = 2

    @Option(name: .customLong("memory-limits"), help: "Comma-separated cgroup limits for the cold runs (`none` = no cgroup), e.g. none,4G,2G.")
    var memoryLimits = "none,4G,2G"

    @Option(name: .long, help: "Comma-separated batch sizes for the cold batch runs (empty: none).")
    var batches = "1,8,64"

    @Option(name: .customLong("batch-tokens"), help: "Tokens per prompt in the batch runs (short captions).")
    var batchTokens = 24

    @Option(name: .customLong("batch-repeat"), help: "Runs per batch size.")
    var batchRepeat = 2

    @Option(name: .customLong("batch-limit"), help: "cgroup limit for the batch runs (`none` = no cgroup).")
    var batchLimit = "none"

    @Option(name: .customLong("disk-bytes"), help: "Size of the file that measures the storage's read rate (0: skip).")
    var diskBytes = "2G"

    @Option(name: .long, help: "Results file name under benchmarks/results.")
    var name = "cold"

    func run() throws {
        let qwenRun = try Paths.tool("qwen-run")
        let limits = try memoryLimits.split(separator: ",").map { s -> Int in
            let t = s.trimmingCharacters(in: .whitespaces)
            if t == "none" || t == "0" { return 0 }
            guard let b = ByteSize.parse(t), b >= 64 << 20 else {
                throw ValidationError("--memory-limits: expected sizes like 2G or `none`, found \(t)")
            }
            return Int(b)
        }
        let batchSizes = batches.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard batchSizes.allSatisfy({ $0 >= 1 && $0 <= 10_000 }) else { throw ValidationError("--batches: expected counts 1...10000, found \(batches)") }
        let batchLimitBytes: Int
        if batchLimit == "none" { batchLimitBytes = 0 } else {
            guard let b = ByteSize.parse(batchLimit) else { throw ValidationError("--batch-limit: expected a size like 4G or `none`, found \(batchLimit)") }
            batchLimitBytes = Int(b)
        }
        guard let diskSize = ByteSize.parse(diskBytes) else { throw ValidationError("--disk-bytes: expected a size like 2G or 0, found \(diskBytes)") }

        let work = NSTemporaryDirectory() + "qwen-bench-cold-\(getpid())"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }

        var extra: [String: Any] = [:]
        var disk: DiskRead?
        if diskSize > 0 {
            disk = try DiskRead.measure(dir: packs, bytes: Int(diskSize), repeats: 3)
            note(disk!.line)
            extra["disk_read"] = ["dir": disk!.dir, "bytes": disk!.bytes, "mb_per_s": disk!.mbPerSecond,
                                  "median_mb_per_s": disk!.median, "best_mb_per_s": disk!.best,
                                  "resident_at_start": disk!.residentAtStart]
        }

        var cgroups: [Int: MemoryCgroup] = [:]
        var skipped: [Int: String] = [:]
        func cgroup(_ limit: Int) -> MemoryCgroup? {
            guard limit > 0 else { return nil }
            if let g = cgroups[limit] { return g }
            if skipped[limit] != nil { return nil }
            let (g, why) = MemoryCgroup.make(limit: limit, tag: "\(limit >> 20)m")
            if let g { cgroups[limit] = g } else { skipped[limit] = why; note("cgroup of \(ByteSize.format(limit)): skipped: \(why)") }
            return g
        }

        var records: [[String: Any]] = []
        for c in cases.split(separator: ",").map(String.init) {
            let (packName, flags) = RunVariant.split(c)
            let pack = URL(fileURLWithPath: packs).appendingPathComponent(packName).path
            guard FileManager.default.fileExists(atPath: pack) else {
                records.append(["case": c, "status": "not measured (pack \(pack) missing)"]); continue
            }
            // What `encode` reads: the text encoder's shards and the tokenizer.
            let textDir = pack + "/text_encoder"
            let textBytes = PageCache.bytes(FileManager.default.fileExists(atPath: textDir) ? textDir : pack)
            let prompt = try PromptMaker.prompt(tokens: tokens, pack: pack, qwenRun: qwenRun)
            let argv = [qwenRun, "encode", "--pack", pack, "--prompt", prompt, "--out", work + "/out.safetensors", "--force",
                        "--threads", String(threads), "--json"] + flags
            func base(_ mode: String, _ limit: Int, prompts: Int, tokens: Int) -> [String: Any] {
                ["case": c, "mode": mode, "memory_limit_bytes": limit, "prompts": prompts, "prompt_tokens": tokens,
                 "threads": threads, "pack_text_bytes": textBytes]
            }

            // Warm: one untimed run fills the cache, then the timed ones.
            _ = try measure(argv, mode: "warm", limit: 0, group: nil, pack: pack, repeat: 1, label: "\(c) warm-up")
            var warm = try measure(argv, mode: "warm", limit: 0, group: nil, pack: pack, repeat: self.repeat, label: "\(c) warm")
            warm.merge(base("warm", 0, prompts: 1, tokens: tokens)) { a, _ in a }
            records.append(warm)
            try ResultsFile.write(name, records: records, extra: extra)

            for limit in limits {
                let g = cgroup(limit)
                var rec = base("cold", limit, prompts: 1, tokens: tokens)
                if limit > 0, g == nil {
                    rec["status"] = "not measured (\(skipped[limit] ?? "no cgroup"))"
                } else {
                    rec = try measure(argv, mode: "cold", limit: limit, group: g, pack: pack, repeat: self.repeat,
                                      label: "\(c) cold\(limit > 0 ? " in \(ByteSize.format(limit))" : "")")
                        .merging(rec) { a, _ in a }
                }
                records.append(rec)
                try ResultsFile.write(name, records: records, extra: extra)
            }

            for n in batchSizes {
                let words = ["a red fox in snow at dawn", "an old stone house by a river", "a small green tree on a hill",
                             "a blue sky over the sea", "a cat asleep in soft light", "a photo of a big city at night"]
                let file = work + "/prompts-\(n).jsonl"
                let one = try PromptMaker.prompt(tokens: batchTokens, pack: pack, qwenRun: qwenRun)
                let lines = (0..<n).map { i -> String in
                    let p = "\(words[i % words.count]) \(i), " + one
                    let d = try! JSONSerialization.data(withJSONObject: [p], options: [])
                    return String(String(decoding: d, as: UTF8.self).dropFirst().dropLast())
                }
                try (lines.joined(separator: "\n") + "\n").write(toFile: file, atomically: true, encoding: .utf8)
                let bargv = [qwenRun, "encode", "--pack", pack, "--prompts-file", file, "--out", work + "/out.safetensors", "--force",
                             "--threads", String(threads), "--json"] + flags
                let g = cgroup(batchLimitBytes)
                var rec = base("cold-batch", batchLimitBytes, prompts: n, tokens: batchTokens)
                if batchLimitBytes > 0, g == nil {
                    rec["status"] = "not measured (\(skipped[batchLimitBytes] ?? "no cgroup"))"
                } else {
                    rec = try measure(bargv, mode: "cold", limit: batchLimitBytes, group: g, pack: pack, repeat: batchRepeat,
                                      label: "\(c) cold batch of \(n)").merging(rec) { a, _ in a }
                    if let med = rec["wall_s_median"] as? Double { rec["seconds_per_prompt"] = med / Double(n) }
                }
                records.append(rec)
                try ResultsFile.write(name, records: records, extra: extra)
            }
        }

        // Cold runs against the issue's bound: 1.1 × max(text encoder bytes ÷ read rate, warm time).
        for i in records.indices where records[i]["mode"] as? String == "cold" && records[i]["prompts"] as? Int == 1 {
            let c = records[i]["case"] as? String
            guard let med = records[i]["wall_s_median"] as? Double,
                  let warmMed = records.first(where: { $0["case"] as? String == c && $0["mode"] as? String == "warm" })?["wall_s_median"] as? Double
            else { continue }
            var bound = warmMed
            if let d = disk, let bytes = records[i]["pack_text_bytes"] as? Int {
                let diskS = Double(bytes) / (d.median * 1e6)
                records[i]["disk_s"] = diskS
                bound = max(bound, diskS)
            }
            records[i]["warm_s"] = warmMed
            records[i]["bound_s"] = bound
            records[i]["cold_over_bound"] = med / bound
        }
        try ResultsFile.write(name, records: records, extra: extra)
    }

    /// `repeat` runs of argv, each with the pack evicted first when mode is "cold", in `group` if given.
    private func measure(_ argv: [String], mode: String, limit: Int, group: MemoryCgroup?, pack: String,
                         repeat n: Int, label: String) throws -> [String: Any] {
        var times: [Double] = [], rss: [Int] = [], reads: [Int] = [], peaks: [Int] = [], resident: [Int] = []
        var summary: [String: Any]?
        let ooms0 = group?.oomKills ?? 0
        for i in 0..<max(1, n) {
            if mode == "cold" {
                try PageCache.evict(pack)
                resident.append(PageCache.residentBytes(pack))
            }
            group?.resetPeak()
            let r = try Child.run(argv, cgroup: group?.path)
            if r.status != 0 {
                let killed = (group?.oomKills ?? 0) > ooms0 ? " (OOM-killed in the cgroup)" : ""
                let status = "failed: exit \(r.status)\(killed): \(lastLine(r.stderr))"
                note("\(label): \(status)")
                return ["status": status, "command": Child.shellLine(argv.map { $0 == argv[0] ? "qwen-run" : $0 })]
            }
            times.append(r.seconds); rss.append(r.peakRSS); reads.append(r.readBytes)
            if let p = group?.peakBytes { peaks.append(p) }
            if summary == nil || i == n / 2 { summary = r.json?.filter { $0.value is NSNumber || $0.value is String } }
            note(String(format: "%@ run %d: %.2f s, peak RSS %@, read %@ from storage%@", label, i + 1, r.seconds,
                        ByteSize.format(r.peakRSS), ByteSize.format(r.readBytes),
                        group?.peakBytes.map { ", cgroup peak \(ByteSize.format($0))" } ?? ""))
        }
        var rec: [String: Any] = [
            "status": "ok", "repeats": times.count, "wall_s_median": median(times), "wall_s_min": times.min()!,
            "wall_s_max": times.max()!, "wall_s_all": times, "peak_rss_bytes": rss.max()!,
            "read_bytes_median": Int(median(reads.map(Double.init))),
            "command": Child.shellLine(argv.map { $0 == argv[0] ? "qwen-run" : $0 }),
        ]
        if !peaks.isEmpty { rec["cgroup_peak_bytes"] = peaks.max()! }
        if !resident.isEmpty { rec["resident_after_evict_bytes"] = resident.max()! }
        if let summary { rec["summary"] = summary }
        return rec
    }
}

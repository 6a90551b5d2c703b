import Foundation

/// Issue 13's targets in one table: each row names the results file its figure comes from (the newest file
/// that measured it) and says met or missed; the sections below hold the full tables.
extension ReportWriter {
    /// The newest file (by its recorded date) among `names` with a successful record that `pick` accepts, and that record.
    private func newest(_ names: [String], _ pick: ([String: Any]) -> Bool) -> (file: String, record: [String: Any])? {
        names.compactMap { name -> (String, String, [String: Any])? in
            guard let r = data.records(name).first(where: { $0["status"] as? String == "ok" && pick($0) }) else { return nil }
            return (data.files[name]?["date"] as? String ?? "", name, r)
        }.max { $0.0 < $1.0 }.map { ($0.1, $0.2) }
    }

    private func verdict(_ met: Bool) -> String { met ? "met" : "**missed**" }

    func issue13Section() -> String {
        var rows: [[String]] = []
        // The first generation's text encoder (text_gen2 is the 2.1 model's).
        let textFiles = data.family("text").filter { !$0.contains("gen2") }
        for c in ["q4c", "q8s"] {
            for tokens in [256, 1024] {
                guard let (f, r) = newest(textFiles, { $0["case"] as? String == c && $0["prompt_tokens"] as? Int == tokens }),
                      let wall = r["wall_s_median"] as? Double else { continue }
                let sm = r["summary"] as? [String: Any] ?? [:]
                if tokens == 256 {
                    rows.append(["text \(tokens) tokens, \(c), warm", "≤ 5.5 s", F.secs(wall) + " (×\(r["repeats"] ?? 1))", "`\(f)`", verdict(wall <= 5.5)])
                }
                if let g = r["gemm_gflop"] as? Double, let mm = sm["matmul_seconds"] as? Double, mm > 0,
                   let limit = measuredLimit("int8GOPs", threads: r["threads"] as? Int ?? 2) {
                    let share = g / mm / limit
                    rows.append(["text \(tokens) tokens, \(c): matrix products' share of the int8 dot limit", "≥ 80%",
                                 "\(F.num(g / mm, 0)) GOP/s of \(F.num(limit, 0)): \(F.num(100 * share, 0))%", "`\(f)`, `limits`", verdict(share >= 0.8)])
                    rows.append(["text \(tokens) tokens, \(c): wall ÷ matrix-product time", "≤ 1.2×",
                                 "\(F.secs(wall)) ÷ \(F.secs(mm)) = \(F.num(wall / mm, 2))×", "`\(f)`", verdict(wall / mm <= 1.2)])
                }
            }
        }
        if let (f, dot) = newest(textFiles, { $0["case"] as? String == "bf16+dot" && $0["prompt_tokens"] as? Int == 256 }),
           let t = dot["wall_s_median"] as? Double,
           let exact = data.records(f).first(where: { $0["case"] as? String == "bf16" && $0["prompt_tokens"] as? Int == 256 })?["wall_s_median"] as? Double {
            rows.append(["text 256 tokens, bf16 with --bf16-dot", "≤ 12 s and ≥ 1.8× exact bf16",
                         "\(F.secs(t)), \(F.num(exact / t, 2))× (\(F.secs(exact)) exact, same run)", "`\(f)`", verdict(t <= 12 && exact / t >= 1.8)])
        }
        let coldFiles = data.family("cold")
        for (c, gib) in [("q4c", 4), ("q4c", 2), ("q8s", 4), ("q8s", 2)] {
            guard let (f, r) = newest(coldFiles, { $0["case"] as? String == c && $0["mode"] as? String == "cold" && $0["memory_limit_bytes"] as? Int == gib << 30 }),
                  let ratio = r["cold_over_bound"] as? Double else { continue }
            rows.append(["text 256 tokens, \(c), cold cache, \(gib) GiB cgroup", c == "q4c" && gib == 4 ? "≤ 1.1 × max(disk, warm)" : "(no target)",
                         "\(F.secs(r["wall_s_median"])) = \(F.num(ratio, 2))× of \(F.secs(r["bound_s"]))", "`\(f)`",
                         c == "q4c" && gib == 4 ? verdict(ratio <= 1.1) : "–"])
        }
        // The batch rows: the file with the most batch sizes (the newest of those), one row per pack.
        let batchFile = coldFiles.map { f in (f, Set(data.records(f).filter { $0["mode"] as? String == "cold-batch" }.compactMap { $0["prompts"] as? Int })) }
            .filter { !$0.1.isEmpty }
            .max { ($0.1.count, data.files[$0.0]?["date"] as? String ?? "") < ($1.1.count, data.files[$1.0]?["date"] as? String ?? "") }?.0
        if let f = batchFile {
            let batches = data.records(f).filter { $0["mode"] as? String == "cold-batch" && $0["status"] as? String == "ok" }
            for c in Set(batches.compactMap { $0["case"] as? String }).sorted() {
                let rs = batches.filter { $0["case"] as? String == c }.sorted { ($0["prompts"] as? Int ?? 0) < ($1["prompts"] as? Int ?? 0) }
                let reads = rs.compactMap { r in F.double(r["read_bytes_median"]).flatMap { b in F.double(r["pack_text_bytes"]).map { b / $0 } } }
                guard let worst = reads.max() else { continue }
                let perPrompt = rs.map { "\($0["prompts"] ?? "?"): \(F.secs($0["seconds_per_prompt"]))" }.joined(separator: ", ")
                rows.append(["\(c): a batch reads each layer once (cold cache)", "one pack read per batch",
                             "read ≤ \(F.num(worst, 2))× the text encoder; per prompt at N = \(perPrompt)", "`\(f)`", verdict(worst <= 1.1)])
            }
        }
        let visionFiles = data.family("vision").filter { !$0.contains("gen2") }
        if let (f, _) = newest(visionFiles, { ($0["case"] as? String ?? "").hasPrefix("q4c") && $0["input"] as? String == "edit 1008x1008" }) {
            let best = data.records(f).filter { ($0["case"] as? String ?? "").hasPrefix("q4c") && $0["input"] as? String == "edit 1008x1008" && $0["status"] as? String == "ok" }
                .min { ($0["wall_s_median"] as? Double ?? .infinity) < ($1["wall_s_median"] as? Double ?? .infinity) }
            if let best, let t = best["wall_s_median"] as? Double {
                rows.append(["vision tower 1008², q4", "≤ 9 s", "\(F.secs(t)) (\(best["case"] ?? "?"), ×\(best["repeats"] ?? 1))", "`\(f)`", verdict(t <= 9)])
            }
        }
        if let set = Self.vaeQualitySets.last(where: { $0.targets && !data.records($0.file).isEmpty }) {
            let speed = vaeSpeedRecords(set.speed)
            for (job, limit, psnrKey) in [("decode", 10.0, "decode_psnr_db"), ("encode", 6.0, "encode_psnr_db")] {
                let runs = data.records(set.file).filter { $0["size"] as? Int == 1024 && ($0[psnrKey] as? Double ?? 0) >= 45 }
                    .compactMap { r -> (String, Double, Double)? in
                        let c = r["case"] as? String ?? "?"
                        let t = vaeFastest(speed, case: c) { job == "decode" ? $0.hasPrefix("decode ") && $0.hasSuffix("-> 1024x1024") : $0 == "encode 1024x1024" }
                        return t.map { (c, $0, r[psnrKey] as? Double ?? 0) }
                    }
                guard let best = runs.min(by: { $0.1 < $1.1 }) else { continue }
                rows.append(["VAE \(job) 1024², fastest pack at ≥ 45 dB", "≤ \(F.secs(limit))", "\(F.secs(best.1)) (\(best.0), \(F.num(best.2, 2)) dB)",
                             "`\(set.file)` and its speed files", verdict(best.1 <= limit)])
            }
        }
        guard !rows.isEmpty else { return "" }
        var s = "## Issue 13 targets at a glance\n\n"
        s += "Each figure is the newest recorded run that measured it (2 threads, full-size synthetic weights, warm page cache unless the row says cold); the sections below hold the full tables. "
        s += "Why the int8 rows stop short: the section \"What the int8 kernels' block epilogue costs\" times the same kernels with the per-block scale arithmetic replaced.\n\n"
        s += F.table(["target", "wanted", "measured", "from", "status"], rows)
        return s + "\n"
    }
}

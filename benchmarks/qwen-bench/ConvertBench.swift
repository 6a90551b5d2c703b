import ArgumentParser
import Foundation
import Quant

/// One pack scheme as the benchmarks name it: "q4-g32", "q8-pc" (per output channel), "bf16", with
/// an optional "-zstd3" suffix.
struct SchemeCase: Hashable {
    let scheme: String      // f32 bf16 f16 q8 q4
    let group: Int?         // nil: not quantized; 0: per output channel
    let zstd: Int?

    var name: String {
        var s = scheme
        if let g = group { s += g == 0 ? "-pc" : "-g\(g)" }
        if let z = zstd { s += "-zstd\(z)" }
        return s
    }

    var rawName: String { SchemeCase(scheme: scheme, group: group, zstd: nil).name }

    /// Nominal bits per weight of the payload, for sorting and plotting.
    var nominalBits: Double {
        switch scheme {
        case "f32": return 32
        case "bf16", "f16": return 16
        case "q8": return 8 + (group.map { $0 == 0 ? 0 : 16 / Double($0) } ?? 0)
        case "q4": return 4 + (group.map { $0 == 0 ? 0 : 16 / Double($0) } ?? 0)
        case "q4c": return 4.375
        case "q5s": return 5.375
        case "q6s": return 6.375
        case "q8s": return 8.375
        default: return .nan
        }
    }

    /// The `qwen-quant convert` flags for this case.
    var convertFlags: [String] {
        var f = ["--scheme", scheme]
        if let g = group { f += ["--group-size", String(g)] }
        if let z = zstd { f += ["--zstd", String(z)] }
        return f
    }

    static func parse(_ text: String) throws -> SchemeCase {
        var parts = text.split(separator: "-").map(String.init)
        var zstd: Int?
        if let last = parts.last, last.hasPrefix("zstd"), let z = Int(last.dropFirst(4)) { zstd = z; parts.removeLast() }
        guard let scheme = parts.first, ["f32", "bf16", "f16", "q8", "q4", "q4c", "q8s", "q5s", "q6s"].contains(scheme) else {
            throw ValidationError("unknown scheme case '\(text)' (examples: bf16, q8-pc, q4-g32, q4-g32-zstd3)")
        }
        var group: Int?
        if parts.count > 1 {
            if parts[1] == "pc" { group = 0 } else if parts[1].hasPrefix("g"), let g = Int(parts[1].dropFirst()) { group = g } else {
                throw ValidationError("unknown group '\(parts[1])' in '\(text)' (pc, g32, g64, g128)")
            }
        }
        if (scheme == "q8" || scheme == "q4") && group == nil { group = 32 }
        return SchemeCase(scheme: scheme, group: group, zstd: zstd)
    }

    /// Every case: f32, bf16, f16; q8 per-channel and g32/64/128; q8s; q4 g32/64/128; q4c; q5s; q6s; raw and zstd.
    static func all(zstdLevel: Int) -> [SchemeCase] {
        var raw: [SchemeCase] = ["f32", "bf16", "f16"].map { SchemeCase(scheme: $0, group: nil, zstd: nil) }
        raw += [0, 32, 64, 128].map { SchemeCase(scheme: "q8", group: $0, zstd: nil) }
        raw.append(SchemeCase(scheme: "q8s", group: nil, zstd: nil))
        raw += [32, 64, 128].map { SchemeCase(scheme: "q4", group: $0, zstd: nil) }
        raw.append(SchemeCase(scheme: "q4c", group: nil, zstd: nil))
        raw.append(SchemeCase(scheme: "q5s", group: nil, zstd: nil))
        raw.append(SchemeCase(scheme: "q6s", group: nil, zstd: nil))
        return raw.flatMap { [$0, SchemeCase(scheme: $0.scheme, group: $0.group, zstd: zstdLevel)] }
    }

    static let quick: [String] = ["bf16", "q8-pc", "q4-g32", "q4-g32-zstd3"]
}

/// Total bytes of the regular files under a folder.
func folderBytes(_ url: URL) -> Int {
    guard let e = FileManager.default.enumerator(at: url, includingPropertiesForKeys: [.fileSizeKey, .isRegularFileKey]) else { return 0 }
    var total = 0
    for case let f as URL in e {
        if let v = try? f.resourceValues(forKeys: [.fileSizeKey, .isRegularFileKey]), v.isRegularFile == true { total += v.fileSize ?? 0 }
    }
    return total
}

func freeDiskBytes(_ path: String) -> Int {
    var s = statvfs()
    guard statvfs(path, &s) == 0 else { return 0 }
    return Int(s.f_bavail) * Int(s.f_frsize)
}

/// Parameters per component of a diffusers-layout checkpoint that a pack keeps (lm_head dropped).
func checkpointParams(_ root: URL, components: [String]) throws -> [String: Int] {
    var out: [String: Int] = [:]
    for c in components {
        let dir = root.appendingPathComponent(c)
        let files = (try? FileManager.default.contentsOfDirectory(atPath: dir.path))?.filter { $0.hasSuffix(".safetensors") } ?? []
        var n = 0
        for f in files {
            let st = try STHeader(dir.appendingPathComponent(f).path)
            for (name, shape) in st.shapes where name != "lm_head.weight" { n += shape.reduce(1, *) }
        }
        out[c] = n
    }
    return out
}

/// Reads only a safetensors header (the checkpoint files are large).
struct STHeader {
    let shapes: [String: [Int]]
    init(_ path: String) throws {
        guard let h = FileHandle(forReadingAtPath: path) else { throw BenchError.bad("\(path): cannot open") }
        defer { try? h.close() }
        let lenData = h.readData(ofLength: 8)
        guard lenData.count == 8 else { throw BenchError.bad("\(path): truncated") }
        let n = lenData.withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))) }
        guard n < 100_000_000, let obj = try? JSONSerialization.jsonObject(with: h.readData(ofLength: n)) as? [String: Any] else {
            throw BenchError.bad("\(path): bad safetensors header")
        }
        var s: [String: [Int]] = [:]
        for (k, v) in obj where k != "__metadata__" { if let shape = (v as? [String: Any])?["shape"] as? [Int] { s[k] = shape } }
        shapes = s
    }
}

struct ConvertBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Convert a full-size checkpoint to every pack scheme: time, peak RSS, size, bits/weight, zstd ratio.",
        discussion: """
        Each conversion runs `qwen-quant convert` as a child process; its peak RSS is the child's own
        (wait4 rusage). Packs are deleted after measuring unless listed in --keep (kept packs go to
        --work/<case> for the speed benchmarks). Results: benchmarks/results/convert.json.

        Examples:
          qwen-bench convert --src /work/bench-data/synth --work /work/bench-data/packs
          qwen-bench convert --src /work/bench-data/synth --work /work/bench-data/packs --quick
          qwen-bench convert --src /work/bench-data/synth --work /work/bench-data/packs --cases q4-g32,q4-g32-zstd3
          qwen-bench convert --src /work/bench-data/synth --work /work/bench-data/packs --accuracy text,vae-encode,vae-decode
        """)

    @Option(name: .long, help: "Full-size checkpoint (diffusers layout), e.g. from `qwen-bench synth`.")
    var src: String

    @Option(name: .long, help: "Folder for the packs (outside the repository).")
    var work: String

    @Option(name: .long, help: "Comma-separated cases (default: all 20; see --help).")
    var cases: String?

    @Flag(name: .long, help: "A subset: \(SchemeCase.quick.joined(separator: ", ")).")
    var quick = false

    @Option(name: .long, help: "Cases whose packs are kept for the speed benchmarks.")
    var keep = "bf16,q8-pc,q8-pc-zstd3,q4-g32,q4-g32-zstd3"

    @Option(name: .long, help: "Components to convert (default: all, incl. tokenizer and processor).")
    var components: String?

    @Option(name: .long, help: "zstd level of the compressed cases.")
    var zstdLevel = 3

    @Option(name: .long, help: "Threads given to the converter.")
    var threads = 2

    @Option(name: .long, help: "Results file name under benchmarks/results.")
    var resultName = "convert"

    @Option(name: .long, help: "After converting each case, measure these components' error against --baseline on the oracle's inputs (text, vision, edit, vae-encode, vae-decode); the baseline case is converted first. Saves converting the full-size model twice.")
    var accuracy: String?

    @Option(name: .long, help: "Baseline case of --accuracy (bf16 for synthetic bf16 checkpoints: the same weights as f32).")
    var baseline = "bf16"

    @Option(name: .long, help: "Which cases --accuracy runs on (default: every raw case; zstd packs are lossless).")
    var accuracyCases: String?

    @Option(name: .long, help: "Results file name of --accuracy under benchmarks/results.")
    var accuracyName = "accuracy_synth"

    @Flag(name: .long, help: "Only plan every case (`qwen-quant convert --dry-run --json`): payload bytes and bits per weight per component, written to results/convert_sizes.json. Takes seconds.")
    var sizesOnly = false

    func run() throws {
        if sizesOnly { return try planSizes() }
        var list: [SchemeCase]
        if let c = cases { list = try c.split(separator: ",").map { try SchemeCase.parse(String($0)) } }
        else if quick { list = try SchemeCase.quick.map(SchemeCase.parse) }
        else { list = SchemeCase.all(zstdLevel: zstdLevel) }
        let keepSet = Set(try keep.split(separator: ",").map { try SchemeCase.parse(String($0)).name })
        var probe: AccuracyProbe?
        var accuracySet: Set<SchemeCase> = []
        var accuracyRecords: [[String: Any]] = []
        if let a = accuracy {
            let base = try SchemeCase.parse(baseline)
            list.removeAll { $0 == base }
            list.insert(base, at: 0)
            accuracySet = Set(try accuracyCases.map { try $0.split(separator: ",").map { try SchemeCase.parse(String($0)) } }
                              ?? list.filter { $0.zstd == nil })
            accuracySet.insert(base)
            let dir = URL(fileURLWithPath: work).appendingPathComponent("accuracy-io").path
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            probe = try AccuracyProbe(components: a, baseline: base, refs: Paths.fixtures.appendingPathComponent("refs").path,
                                      compareWithRefs: false, work: dir, threads: threads)
        }
        let comps = (components ?? "text_encoder,vae").split(separator: ",").map(String.init)
            .filter { $0 == "text_encoder" || $0.hasPrefix("vae") }
        let srcURL = URL(fileURLWithPath: src)
        let params = try checkpointParams(srcURL, components: comps)
        let srcBytes = comps.reduce(0) { $0 + folderBytes(srcURL.appendingPathComponent($1)) }
        let quant = try Paths.tool("qwen-quant")
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)

        // Merge into an existing results file so cases can be measured in several runs.
        var byCase: [String: [String: Any]] = [:]
        if let old = ResultsFile.read(resultName)?["records"] as? [[String: Any]] {
            for r in old { if let c = r["case"] as? String { byCase[c] = r } }
        }
        for sc in list {
            let pack = URL(fileURLWithPath: work).appendingPathComponent(sc.name)
            try? FileManager.default.removeItem(at: pack)
            let need = Int(Double(params.values.reduce(0, +)) * sc.nominalBits / 8 * 1.1) + (2 << 30)
            let free = freeDiskBytes(work)
            var rec: [String: Any] = ["case": sc.name, "scheme": sc.scheme, "group": sc.group ?? -1,
                                      "zstd": sc.zstd ?? 0, "components": components ?? "all",
                                      "source_bytes": srcBytes, "threads": threads]
            if free < need {
                rec["status"] = "not measured (needs ~\(ByteSize.format(need)) of disk, \(ByteSize.format(free)) free)"
                byCase[sc.name] = rec
                note("\(sc.name): skipped, not enough disk")
                continue
            }
            // Drop the page cache's copy of nothing: the source stays cached between cases (24 GiB RAM),
            // so times after the first case measure conversion, not the disk.
            let argv = [quant, "convert", src, "-o", pack.path] + sc.convertFlags +
                (components.map { ["--components", $0] } ?? []) + ["--threads", String(threads), "--force", "--json"]
            let r = try Child.run(argv)
            rec["command"] = Child.shellLine(["qwen-quant"] + argv.dropFirst())
            rec["exit"] = Int(r.status)
            rec["wall_s"] = r.seconds
            rec["cpu_s"] = r.cpuSeconds
            rec["peak_rss_bytes"] = r.peakRSS
            if r.status != 0 {
                rec["status"] = "failed: " + (r.stderr.split(separator: "\n").last.map(String.init) ?? "exit \(r.status)")
                note("\(sc.name): FAILED (exit \(r.status)): \(r.stderr.suffix(800))")
                byCase[sc.name] = rec
                try? FileManager.default.removeItem(at: pack)
                try save(byCase)
                continue
            }
            rec["status"] = "ok"
            let total = folderBytes(pack)
            rec["pack_bytes"] = total
            let allParams = params.values.reduce(0, +)
            rec["params"] = allParams
            rec["bits_per_weight"] = Double(total) * 8 / Double(allParams)
            rec["source_read_MBps"] = Double(srcBytes) / r.seconds / 1e6
            var per: [String: Any] = [:]
            for c in comps {
                let b = folderBytes(pack.appendingPathComponent(c))
                per[c] = ["pack_bytes": b, "params": params[c] ?? 0, "bits_per_weight": Double(b) * 8 / Double(max(1, params[c] ?? 1))]
            }
            rec["per_component"] = per
            if let j = r.json {
                // Keep the converter's scalar summary fields (sizes, worst errors), not per-tensor lists.
                rec["converter_summary"] = j.filter { !($0.value is [Any]) && !($0.value is [String: Any]) }
            }
            byCase[sc.name] = rec
            note(String(format: "%@: %.1f s, peak RSS %@, %@ (%.2f bits/weight)", sc.name, r.seconds,
                        ByteSize.format(r.peakRSS), ByteSize.format(total), Double(total) * 8 / Double(allParams)))
            if var p = probe, accuracySet.contains(sc) {
                accuracyRecords += try p.measure(sc, pack: pack.path)
                probe = p
                try ResultsFile.write(accuracyName, records: accuracyRecords,
                                      extra: ["model": src, "baseline": p.baseline.name, "converted_by": "qwen-bench convert --accuracy"])
            }
            if !keepSet.contains(sc.name) { try? FileManager.default.removeItem(at: pack) }
            try save(byCase)
        }
        // zstd ratio = raw pack / compressed pack of the same scheme.
        for (name, var rec) in byCase where (rec["zstd"] as? Int ?? 0) > 0 {
            let raw = try SchemeCase.parse(name).rawName
            if let rb = byCase[raw]?["pack_bytes"] as? Int, let zb = rec["pack_bytes"] as? Int, zb > 0 {
                rec["zstd_ratio"] = Double(rb) / Double(zb)
                byCase[name] = rec
            }
        }
        try save(byCase)
    }

    /// Payload bytes of every case from the converter's plan (no conversion): exact for raw packs
    /// (the plan is what the writer writes, minus manifests); zstd sizes need a real conversion.
    private func planSizes() throws {
        let quant = try Paths.tool("qwen-quant")
        var records: [[String: Any]] = []
        for sc in SchemeCase.all(zstdLevel: zstdLevel) where sc.zstd == nil {
            let r = try Child.run([quant, "convert", src, "-o", NSTemporaryDirectory() + "qwen-bench-plan", "--dry-run", "--json"] +
                                  sc.convertFlags + (components.map { ["--components", $0] } ?? []))
            guard r.status == 0, let j = r.json, let tensors = j["tensors"] as? [[String: Any]] else {
                records.append(["case": sc.name, "status": "failed: \(lastLine(r.stderr))"]); continue
            }
            var bytes: [String: Int] = [:], params: [String: Int] = [:]
            var schemes: [String: [String: Int]] = [:]
            for t in tensors {
                let c = t["component"] as? String ?? "?"
                let b = t["bytes"] as? Int ?? 0
                bytes[c, default: 0] += b
                params[c, default: 0] += (t["shape"] as? [Int] ?? []).reduce(1, *)
                let key = "\(t["scheme"] as? String ?? "?")" + ((t["group"] as? Int).map { $0 > 0 ? "-g\($0)" : "" } ?? "")
                schemes[c, default: [:]][key, default: 0] += (t["shape"] as? [Int] ?? []).reduce(1, *)
            }
            var per: [String: Any] = [:]
            for (c, b) in bytes {
                per[c] = ["payload_bytes": b, "params": params[c] ?? 0,
                          "bits_per_weight": Double(b) * 8 / Double(max(1, params[c] ?? 1)), "params_by_scheme": schemes[c] ?? [:]]
            }
            let total = bytes.values.reduce(0, +), n = params.values.reduce(0, +)
            records.append(["case": sc.name, "status": "ok", "scheme": sc.scheme, "group": sc.group ?? -1,
                            "payload_bytes": total, "params": n, "bits_per_weight": Double(total) * 8 / Double(max(1, n)),
                            "per_component": per, "command": Child.shellLine(["qwen-quant", "convert", src, "--dry-run", "--json"] + sc.convertFlags)])
            note("\(sc.name): \(ByteSize.format(total)) planned, \(String(format: "%.3f", Double(total) * 8 / Double(max(1, n)))) bits/weight")
        }
        try ResultsFile.write("convert_sizes", records: records, extra: ["source": src])
    }

    private func save(_ byCase: [String: [String: Any]]) throws {
        let order = SchemeCase.all(zstdLevel: zstdLevel).map(\.name)
        let recs = byCase.values.sorted {
            (order.firstIndex(of: $0["case"] as! String) ?? 99, $0["case"] as! String) <
                (order.firstIndex(of: $1["case"] as! String) ?? 99, $1["case"] as! String)
        }
        try ResultsFile.write(resultName, records: recs, extra: ["source": src])
    }
}

func note(_ s: String) { FileHandle.standardError.write((s + "\n").data(using: .utf8)!) }

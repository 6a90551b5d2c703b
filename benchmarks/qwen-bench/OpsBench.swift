import ArgumentParser
import Foundation
import Kernels

// `qwen-bench ops`: the non-matmul kernels at the real model shapes. Convolutions at Qwen-Image VAE
// sizes (channels 96 / 192 / 384 from the VAE config: base_dim 96, dim_mult [1, 2, 4, 4]), attention at
// vision-tower, VAE mid-block and text-model sizes, and the row / element-wise operations.
// Reports median ms, GFLOP/s (or GB/s for memory-bound ops) and % of the measured f32 peak.

struct OpsBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ops",
        abstract: "Benchmark conv3x3, attention, norms, rope and the other non-matmul kernels.",
        discussion: """
        Writes benchmarks/results/ops.json and ops.md (or --out DIR). The f32 peak comes from
        benchmarks/results/limits.json (`qwen-bench limits`) when present.

        Examples:
          qwen-bench ops --quick
          qwen-bench ops --threads 1,2 --repeats 5
          qwen-bench ops --only attention --json
        """)

    @Flag(help: "Smaller shapes and fewer repeats (about a minute).") var quick = false
    @Option(help: "Comma-separated thread counts.") var threads = "1,2"
    @Option(help: "Timed runs per case (the median is reported).") var repeats = 5
    @Option(help: "Only cases whose group or name contains this text.") var only: String?
    @Option(help: "Output directory.") var out = "benchmarks/results"
    @Flag(help: "Print the JSON summary on stdout.") var json = false

    func run() throws {
        let threadCounts = threads.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !threadCounts.isEmpty, threadCounts.allSatisfy({ $0 >= 1 }) else {
            throw ValidationError("--threads: expected comma-separated positive integers, found '\(threads)'")
        }
        let peak = OpsPeak.load(from: URL(fileURLWithPath: out).appendingPathComponent("limits.json"))
        let cases = opsBenchCases(quick: quick).filter { c in only.map { c.group.contains($0) || c.name.contains($0) } ?? true }
        var rows: [[String: Any]] = []
        var md = "# qwen-bench ops\n\nTier `\(String(cString: qk_isa_name()))`, \(quick ? "quick" : "full") shapes, median of \(repeats) runs. "
        md += "f32 peak: \(peak.describe()). Read bandwidth (by CPU time): "
        md += peak.readByThreads.keys.sorted().map { "\($0) thread(s) \(String(format: "%.1f", peak.readByThreads[$0]!)) GB/s" }.joined(separator: ", ") + ".\n\n"
        md += "Wall-time figures include time other processes held the cores (the machine is shared); \"by CPU\" rates divide the "
        md += "work by the process CPU time per thread, and the % of the f32 FMA peak (and of the read bandwidth: bytes read + written vs the measured read-only rate) compares CPU-time rates on both sides "
        md += "(as `qwen-bench limits` does).\n\n"
        md += "| group | case | shape | threads | ms (median) | ms (min) | GFLOP/s | GFLOP/s by CPU | % f32 peak | GB/s | GB/s by CPU | % read BW |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        for c in cases {
            let run = c.setup()
            defer { run.teardown() }
            for t in threadCounts {
                qk_set_threads(Int32(t))
                let times = opsTime(run.body, repeats: quick ? max(2, repeats / 2) : repeats, threads: t)
                let walls = times.map(\.wall).sorted(), cpus = times.map(\.cpu).sorted()
                let med = walls[walls.count / 2], best = walls[0], cpuMed = max(cpus[cpus.count / 2], 1e-6)
                let gflops = c.flops > 0 ? c.flops / med / 1e6 : nil
                let gflopsCPU = c.flops > 0 ? c.flops / cpuMed / 1e6 : nil
                let pct = gflopsCPU.flatMap { g in peak.gflops(threads: t).map { 100 * g / $0 } }
                let gbps = c.bytes > 0 ? c.bytes / med / 1e6 : nil
                let gbpsCPU = c.bytes > 0 ? c.bytes / cpuMed / 1e6 : nil
                let pctRead = gbpsCPU.flatMap { g in peak.readGBs(threads: t).map { 100 * g / $0 } }
                var row: [String: Any] = ["group": c.group, "name": c.name, "shape": c.shape, "threads": t,
                                          "ms": med, "ms_min": best, "cpu_ms_per_thread": cpuMed]
                if let g = gflops { row["gflops"] = g }
                if let g = gflopsCPU { row["gflops_cpu"] = g }
                if let p = pct { row["pct_f32_peak_cpu"] = p }
                if let b = gbps { row["gbps"] = b }
                if let b = gbpsCPU { row["gbps_cpu"] = b }
                if let p = pctRead { row["pct_read_bw_cpu"] = p }
                rows.append(row)
                let f = { (v: Double?, d: Int) in v.map { String(format: "%.\(d)f", $0) } ?? "" }
                md += "| \(c.group) | \(c.name) | \(c.shape) | \(t) | \(f(med, 2)) | \(f(best, 2)) | \(f(gflops, 1)) | \(f(gflopsCPU, 1)) | \(f(pct, 0)) | \(f(gbps, 1)) | \(f(gbpsCPU, 1)) | \(f(pctRead, 0)) |\n"
                var line = "\(c.group) \(c.name) [\(c.shape)] threads=\(t): \(f(med, 2)) ms"
                if let g = gflops, let gc = gflopsCPU { line += String(format: ", %.1f GFLOP/s (%.1f by CPU time)", g, gc) }
                if let p = pct { line += String(format: ", %.0f%% of the f32 peak", p) }
                if let b = gbps, let bc = gbpsCPU { line += String(format: ", %.1f GB/s (%.1f by CPU time)", b, bc) }
                FileHandle.standardError.write(Data((line + "\n").utf8))
            }
        }
        let summary: [String: Any] = [
            "command": "qwen-bench ops" + (quick ? " --quick" : ""), "isa": String(cString: qk_isa_name()),
            "date": ISO8601DateFormatter().string(from: Date()), "repeats": repeats,
            "f32_peak_gflops": peak.json(), "results": rows,
        ]
        let data = try JSONSerialization.data(withJSONObject: summary, options: [.prettyPrinted, .sortedKeys])
        let dir = URL(fileURLWithPath: out)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try opsWriteAtomically(data, to: dir.appendingPathComponent("ops.json"))
        try opsWriteAtomically(Data(md.utf8), to: dir.appendingPathComponent("ops.md"))
        if json { print(String(decoding: data, as: UTF8.self)) }
        else { FileHandle.standardError.write(Data("wrote \(dir.path)/ops.json and ops.md\n".utf8)) }
    }
}

private func opsWriteAtomically(_ data: Data, to url: URL) throws {
    let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp")
    try data.write(to: tmp)
    guard rename(tmp.path, url.path) == 0 else {
        throw ValidationError("could not rename \(tmp.path) to \(url.path): \(String(cString: strerror(errno)))")
    }
}

/// (wall ms, CPU ms per thread) of `repeats` runs after one warm-up run. CPU time is the process's user +
/// system time divided by the thread count: on a shared machine, wall time includes the time other
/// processes held the cores, CPU time does not (the pool's brief spin-waits count as busy).
private func opsTime(_ body: () -> Void, repeats: Int, threads: Int) -> [(wall: Double, cpu: Double)] {
    body()
    return (0..<max(1, repeats)).map { _ in
        let c0 = opsProcessCPUSeconds(), t0 = DispatchTime.now().uptimeNanoseconds
        body()
        let t1 = DispatchTime.now().uptimeNanoseconds, c1 = opsProcessCPUSeconds()
        return (Double(t1 - t0) / 1e6, (c1 - c0) * 1e3 / Double(threads))
    }
}

private func opsProcessCPUSeconds() -> Double {
    var ru = rusage()
    getrusage(RUSAGE_SELF.rawValue, &ru)
    return Double(ru.ru_utime.tv_sec) + Double(ru.ru_utime.tv_usec) / 1e6 + Double(ru.ru_stime.tv_sec) + Double(ru.ru_stime.tv_usec) / 1e6
}

/// The measured f32 FMA peak per thread count from limits.json (`qwen-bench limits`): in every object with
/// a "threads" number, a key mentioning fma/f32 and gflop, either a number or a rate object (its
/// "cpuMedian", else "median").
struct OpsPeak {
    var byThreads: [Int: Double] = [:]
    var readByThreads: [Int: Double] = [:]
    var source = "not measured (run `qwen-bench limits`)"

    static func load(from url: URL) -> OpsPeak {
        var p = OpsPeak()
        guard let data = try? Data(contentsOf: url), let obj = try? JSONSerialization.jsonObject(with: data) else { return p }
        func walk(_ o: Any) {
            if let d = o as? [String: Any] {
                if let t = (d["threads"] as? NSNumber)?.intValue {
                    for (k, v) in d {
                        let key = k.lowercased()
                        var value = (v as? NSNumber)?.doubleValue
                        if let r = v as? [String: Any] { value = (r["cpuMedian"] as? NSNumber ?? r["median"] as? NSNumber)?.doubleValue }
                        guard let n = value else { continue }
                        if key.contains("gflop"), key.contains("fma") || key.contains("f32") { p.byThreads[t] = n }
                        if key.contains("read"), key.contains("gb") { p.readByThreads[t] = n }
                    }
                }
                d.values.forEach(walk)
            } else if let a = o as? [Any] { a.forEach(walk) }
        }
        walk(obj)
        if !p.byThreads.isEmpty { p.source = url.relativePath }
        return p
    }
    func gflops(threads: Int) -> Double? { byThreads[threads] }
    func readGBs(threads: Int) -> Double? { readByThreads[threads] }
    func describe() -> String {
        byThreads.isEmpty ? source : byThreads.keys.sorted().map { "\($0) thread(s) \(String(format: "%.0f", byThreads[$0]!)) GFLOP/s" }.joined(separator: ", ") + " (by CPU time, \(source))"
    }
    func json() -> [String: Double] { Dictionary(uniqueKeysWithValues: byThreads.map { ("\($0.key)", $0.value) }) }
}

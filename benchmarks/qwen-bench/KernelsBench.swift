import ArgumentParser
import Foundation
import Kernels
import Quant

/// `qwen-bench kernels`: qk_matmul for every weight scheme at the real model shapes, M = 1 (GEMV on
/// weights rotated through > 1 GiB of copies, so DRAM is measured, not the cache) up to M = 1024,
/// 1 and 2 threads; ms, GB/s, GOP/s and % of the limits measured by `qwen-bench limits`.
struct KernelsBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "Benchmark qk_matmul for every scheme at the text / vision shapes (1 and 2 threads).",
        discussion: """
        Writes benchmarks/results/kernels.json and kernels.md (runs `limits` first when limits.json is
        missing). Times are medians of --repeats runs; the % of the limit compares CPU-time rates on both
        sides (see `qwen-bench limits --help`), so a shared CPU distorts it less than wall time.

        Examples:
          qwen-bench kernels --quick
          qwen-bench kernels --numpy            # also time numpy/OpenBLAS f32 matmul on the same shapes
          qwen-bench kernels --schemes q8/0,q4/32 --m 1,256 --threads 2
        """)

    @Flag(help: "Short run: 3 shapes, 5 schemes, M = 1 and 256.")
    var quick = false
    @Option(help: "Schemes as scheme/group, comma separated (f32/0, bf16/0, f16/0, q8/0, q8/32, q4/128, ...).")
    var schemes: String?
    @Option(help: "Row counts M, comma separated.")
    var m: String?
    @Option(help: "Thread counts, comma separated.")
    var threads: String = "1,2"
    @Option(help: "Repetitions per measurement (GEMV runs at least once over every weight copy).")
    var repeats: Int = 5
    @Option(help: "Bytes of weight copies to rotate through for M <= 64.")
    var rotate: String = "1152M"
    @Flag(help: "Also time numpy (OpenBLAS) f32 matmul on the same shapes (needs python3 + numpy).")
    var numpy = false
    @Option(help: "Output folder.")
    var outDir: String = "benchmarks/results"
    @Flag(help: "Print the JSON summary on stdout.")
    var json = false

    func run() throws {
        let threadList = try parseThreads(threads)
        let schemeList = try (schemes ?? (quick ? "f32/0,bf16/0,q8/0,q8/32,q4/32" : "f32/0,bf16/0,f16/0,q8/0,q8/32,q8/128,q4/0,q4/32,q4/128"))
            .split(separator: ",").map { try BenchScheme(String($0)) }
        let mList = try (m ?? (quick ? "1,256" : "1,64,256,1024")).split(separator: ",").map { s -> Int in
            guard let v = Int(s), v >= 1 else { throw ValidationError("--m: expected positive integers, found \(s)") }
            return v
        }
        guard let rotateBytes = ByteSize.parse(rotate) else { throw ValidationError("--rotate: expected a size like 1152M, found \(rotate)") }
        let shapes = quick ? BenchShape.quick : BenchShape.all
        try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true)
        let limits: LimitsResult
        if let l = LimitsResult.load(dir: outDir) { limits = l } else {
            FileHandle.standardError.write(Data("no \(outDir)/limits.json yet: measuring the limits first\n".utf8))
            limits = LimitsResult.measure(bufferBytes: 1536 << 20, repeats: 5, threads: threadList)
            try AtomicOutput.write(try JSONEncoder.pretty.encode(limits), to: URL(fileURLWithPath: outDir + "/limits.json"))
        }
        FileHandle.standardError.write(Data(limits.table().utf8))

        var runner = MatmulBench(limits: limits, repeats: max(1, repeats), rotateBytes: Int(rotateBytes))
        let total = shapes.count * schemeList.count
        var done = 0
        for shape in shapes {
            let w = shape.randomWeights()
            for s in schemeList {
                done += 1
                FileHandle.standardError.write(Data("[\(done)/\(total)] \(shape.label) \(s.label)\n".utf8))
                try runner.run(shape: shape, scheme: s, weights: w, ms: mList, threads: threadList)
            }
        }
        var numpyRows: [NumpyRow] = []
        if numpy { numpyRows = runNumpy(shapes: shapes, ms: mList, threads: threadList, repeats: max(1, repeats)) }
        let report = KernelsReport(isa: String(cString: qk_isa_name()), cpu: cpuName(),
                                   date: ISO8601DateFormatter().string(from: Date()), limits: limits,
                                   results: runner.rows, numpy: numpyRows)
        let data = try JSONEncoder.pretty.encode(report)
        try AtomicOutput.write(data, to: URL(fileURLWithPath: outDir + "/kernels.json"))
        let md = report.markdown(threads: threadList)
        try AtomicOutput.write(Data(md.utf8), to: URL(fileURLWithPath: outDir + "/kernels.md"))
        FileHandle.standardError.write(Data(md.utf8))
        if json { print(String(decoding: data, as: UTF8.self)) }
    }
}

struct BenchScheme {
    let scheme: qk_scheme
    let group: Int32
    let label: String
    init(_ s: String) throws {
        let parts = s.split(separator: "/")
        let names: [String: qk_scheme] = ["f32": QK_F32, "bf16": QK_BF16, "f16": QK_F16, "q8": QK_Q8, "q4": QK_Q4, "q4c": QK_Q4C, "q8s": QK_Q8S, "q5s": QK_Q5S, "q6s": QK_Q6S]
        guard let name = parts.first, let sc = names[String(name)], parts.count <= 2,
              let g = parts.count == 2 ? Int32(parts[1]) : 0, qk_weight_bytes(sc, g, 16, 64) > 0 else {
            throw ValidationError("--schemes: expected scheme/group like q8/32 (schemes f32 bf16 f16 q8 q4 q4c q8s q5s q6s; group 0, 32, 64, 128; float schemes group 0; q4c, q5s, q6s and q8s group 32), found \(s)")
        }
        scheme = sc; group = g; label = "\(name)/g\(g)"
    }
    var isInt: Bool { scheme == QK_Q8 || scheme == QK_Q4 || scheme == QK_Q4C || scheme == QK_Q8S }
}

struct BenchShape {
    let k: Int, n: Int, model: String
    var label: String { "\(model) \(k)x\(n)" }
    static let all: [BenchShape] = [
        .init(k: 3584, n: 3584, model: "text"), .init(k: 3584, n: 512, model: "text"),
        .init(k: 3584, n: 18944, model: "text"), .init(k: 18944, n: 3584, model: "text"),
        .init(k: 1280, n: 3840, model: "vision"), .init(k: 1280, n: 1280, model: "vision"),
        .init(k: 1280, n: 3420, model: "vision"), .init(k: 3420, n: 1280, model: "vision"),
        .init(k: 5120, n: 5120, model: "vision"), .init(k: 5120, n: 3584, model: "vision"),
    ]
    static let quick: [BenchShape] = [all[0], all[3], all[7]]

    /// W [n, k], uniform with std ~ 1/sqrt(k) (like trained linear layers).
    func randomWeights() -> [Float] {
        var state: UInt64 = UInt64(k * 7919 + n)
        let scale = Float(1.7 / Double(k).squareRoot())
        return (0..<(n * k)).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return (Float(Int32(truncatingIfNeeded: state >> 32)) / Float(Int32.max)) * scale
        }
    }
}

struct KernelRow: Codable {
    var scheme: String, k: Int, n: Int, m: Int, threads: Int
    var weightBytes: Int, copies: Int
    var msMedian: Double, msBest: Double
    var gbs: Double, gops: Double           // from the median wall time
    var cpuGBs: Double, cpuGOPs: Double      // from the median CPU time per thread
    var limitKind: String                   // "read" (M = 1), "int8" or "fma"
    var percentOfLimit: Double              // CPU-time rate / CPU-time limit (median)
}

struct NumpyRow: Codable {
    var k: Int, n: Int, m: Int, threads: Int
    var msMedian: Double, gops: Double, cpuGOPs: Double
}

struct MatmulBench {
    let limits: LimitsResult
    let repeats: Int
    let rotateBytes: Int
    var rows: [KernelRow] = []

    mutating func run(shape: BenchShape, scheme: BenchScheme, weights: [Float], ms: [Int], threads: [Int]) throws {
        let n = shape.n, k = shape.k
        let bytes = qk_weight_bytes(scheme.scheme, scheme.group, Int64(n), Int64(k))
        let copies = ms.min()! <= 64 ? max(1, min(1024, (rotateBytes + bytes - 1) / bytes)) : 1
        var bufs: [UnsafeMutableRawPointer] = []
        defer { bufs.forEach { $0.deallocate() } }
        let first = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        bufs.append(first)
        try packParallel(scheme, n: n, k: k, weights, into: first)
        for _ in 1..<copies {
            let b = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
            memcpy(b, first, bytes)
            bufs.append(b)
        }
        let saved = qk_get_threads()
        defer { qk_set_threads(saved) }
        for m in ms {
            var x = BenchShape(k: k, n: m, model: "").randomWeights().map { $0 * Float(k).squareRoot() }
            for r in 0..<m { x[r * k + 7] *= 100; x[r * k + k / 2] *= 300 }   // outlier channels
            var y = [Float](repeating: 0, count: m * n)
            let useCopies = m <= 64 ? copies : 1
            let runs = m == 1 ? max(repeats * 4, 2 * useCopies) : m <= 64 ? max(repeats, useCopies) : repeats
            for t in threads {
                qk_set_threads(Int32(t))
                var wall: [Double] = [], cpu: [Double] = []
                var w = qk_weight(scheme: scheme.scheme, group: scheme.group, n: Int64(n), k: Int64(k), data: UnsafeRawPointer(first))
                x.withUnsafeBufferPointer { xp in
                    y.withUnsafeMutableBufferPointer { yp in
                        qk_matmul(&w, xp.baseAddress, Int64(m), nil, yp.baseAddress)   // warm-up
                        for i in 0..<runs {
                            w.data = UnsafeRawPointer(bufs[(i + 1) % useCopies])
                            let tm = timeRun { qk_matmul(&w, xp.baseAddress, Int64(m), nil, yp.baseAddress) }
                            wall.append(tm.wall); cpu.append(tm.cpu / Double(t))
                        }
                    }
                }
                wall.sort(); cpu.sort()
                let med = wall[wall.count / 2], cmed = cpu[cpu.count / 2]
                let ops = 2.0 * Double(m) * Double(n) * Double(k)
                let lim = limits.forThreads(t)
                let kind = m == 1 ? "read" : scheme.isInt ? "int8" : "fma"
                let cpuGBs = Double(bytes) / cmed / 1e9, cpuGOPs = ops / cmed / 1e9
                let limit = kind == "read" ? lim?.readGBs.cpuMedian : kind == "int8" ? lim?.int8GOPs.cpuMedian : lim?.fmaGFLOPs.cpuMedian
                let pct = (limit ?? 0) > 0 ? 100 * (kind == "read" ? cpuGBs : cpuGOPs) / limit! : 0
                rows.append(KernelRow(scheme: scheme.label, k: k, n: n, m: m, threads: t, weightBytes: bytes, copies: useCopies,
                                      msMedian: med * 1e3, msBest: wall[0] * 1e3, gbs: Double(bytes) / med / 1e9,
                                      gops: ops / med / 1e9, cpuGBs: cpuGBs, cpuGOPs: cpuGOPs, limitKind: kind,
                                      percentOfLimit: pct))
                FileHandle.standardError.write(Data(String(format: "  M=%-5d %dT  %9.3f ms  %7.1f GB/s  %7.1f GOP/s  (CPU-time rate %.1f GB/s %.1f GOP/s = %.0f%% of %@)\n",
                                                           m, t, med * 1e3, Double(bytes) / med / 1e9, ops / med / 1e9, cpuGBs, cpuGOPs, pct, kind).utf8))
            }
        }
    }

    /// Packs in 16-row chunks over the thread pool (chunks are independent by contract).
    func packParallel(_ s: BenchScheme, n: Int, k: Int, _ w: [Float], into out: UnsafeMutableRawPointer) throws {
        let chunk = 256
        let failed = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
        failed.pointee = 0
        defer { failed.deallocate() }
        w.withUnsafeBufferPointer { wp in
            _ = timeParallel(tasks: (n + chunk - 1) / chunk) { c in
                let r0 = c * chunk, nr = min(chunk, n - r0)
                if qk_weight_pack_rows(s.scheme, s.group, Int64(n), Int64(k), Int64(r0), Int64(nr), wp.baseAddress! + r0 * k, out) != 0 {
                    failed.pointee = 1
                }
            }
        }
        if failed.pointee != 0 { throw ValidationError("packing \(s.label) \(n)x\(k) failed") }
    }
}

/// numpy/OpenBLAS f32 x @ w.T on the same shapes (OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset for it).
func runNumpy(shapes: [BenchShape], ms: [Int], threads: [Int], repeats: Int) -> [NumpyRow] {
    let script = """
    import json, sys, time, os
    import numpy as np
    shapes = json.loads(sys.argv[1]); ms = json.loads(sys.argv[2]); reps = int(sys.argv[3]); t = int(sys.argv[4])
    for k, n in shapes:
        w = (np.random.rand(n, k).astype(np.float32) - 0.5)
        for m in ms:
            x = np.random.rand(m, k).astype(np.float32)
            x @ w.T
            wall, cpu = [], []
            for _ in range(reps):
                c0, t0 = time.process_time(), time.perf_counter()
                x @ w.T
                wall.append(time.perf_counter() - t0); cpu.append((time.process_time() - c0) / t)
            wall.sort(); cpu.sort()
            print(json.dumps({"k": k, "n": n, "m": m, "threads": t, "wall": wall[len(wall)//2], "cpu": cpu[len(cpu)//2]}), flush=True)
    """
    var rows: [NumpyRow] = []
    let shapesJSON = "[" + shapes.map { "[\($0.k),\($0.n)]" }.joined(separator: ",") + "]"
    let msJSON = "[" + ms.filter { $0 > 1 }.map(String.init).joined(separator: ",") + "]"
    for t in threads {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", script, shapesJSON, msJSON, String(repeats), String(t)]
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "OPENBLAS_CORETYPE"); env.removeValue(forKey: "OPENBLAS_L2_SIZE")
        env["OPENBLAS_NUM_THREADS"] = String(t); env["OMP_NUM_THREADS"] = String(t)
        p.environment = env
        let pipe = Pipe()
        p.standardOutput = pipe
        do { try p.run() } catch {
            FileHandle.standardError.write(Data("numpy comparison skipped: \(error)\n".utf8))
            return rows
        }
        let out = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        for line in String(decoding: out, as: UTF8.self).split(separator: "\n") {
            struct L: Decodable { var k: Int; var n: Int; var m: Int; var threads: Int; var wall: Double; var cpu: Double }
            guard let l = try? JSONDecoder().decode(L.self, from: Data(line.utf8)) else { continue }
            let ops = 2.0 * Double(l.m * l.n * l.k)
            rows.append(NumpyRow(k: l.k, n: l.n, m: l.m, threads: l.threads, msMedian: l.wall * 1e3,
                                 gops: ops / l.wall / 1e9, cpuGOPs: ops / l.cpu / 1e9))
        }
    }
    return rows
}

struct KernelsReport: Codable {
    var isa: String, cpu: String, date: String
    var limits: LimitsResult
    var results: [KernelRow]
    var numpy: [NumpyRow]

    func markdown(threads: [Int]) -> String {
        var s = "# qk_matmul benchmark (\(cpu), tier \(isa), \(date))\n\n"
        s += "Each cell: median wall ms, then the CPU-time rate as % of the measured limit (M = 1: read bandwidth; "
        s += "int schemes: int8 GEMM-like dot peak; float schemes: f32 FMA peak). The machine is shared by other jobs, "
        s += "so wall times are noisy; CPU-time rates (work / (process CPU seconds / threads)) are the steadier figure. "
        s += "GEMV (M = 1) rotates through > 1 GiB of weight copies (DRAM, not cache).\n\n"
        s += "Limits (CPU-time medians): " + limits.results.map {
            String(format: "%d thread(s): read %.1f GB/s, f32 FMA %.0f GFLOP/s, int8 %.0f GOP/s", $0.threads,
                   $0.readGBs.cpuMedian, $0.fmaGFLOPs.cpuMedian, $0.int8GOPs.cpuMedian)
        }.joined(separator: "; ") + "\n\n"
        let schemes = results.reduce(into: [String]()) { if !$0.contains($1.scheme) { $0.append($1.scheme) } }
        let hasNumpy = !numpy.isEmpty
        for t in threads {
            s += "## \(t) thread\(t > 1 ? "s" : "")\n\n| K x N | M | " + schemes.joined(separator: " | ") + (hasNumpy ? " | numpy f32 |" : " |") + "\n"
            s += "|---|---|" + String(repeating: "---|", count: schemes.count + (hasNumpy ? 1 : 0)) + "\n"
            var keys: [(Int, Int, Int)] = []
            for r in results where r.threads == t && !keys.contains(where: { $0 == (r.k, r.n, r.m) }) { keys.append((r.k, r.n, r.m)) }
            for (k, n, m) in keys {
                s += "| \(k)x\(n) | \(m) |"
                for sc in schemes {
                    if let r = results.first(where: { $0.threads == t && $0.k == k && $0.n == n && $0.m == m && $0.scheme == sc }) {
                        s += String(format: " %.2f (%.0f%%) |", r.msMedian, r.percentOfLimit)
                    } else { s += " |" }
                }
                if hasNumpy {
                    if let r = numpy.first(where: { $0.threads == t && $0.k == k && $0.n == n && $0.m == m }) {
                        let lim = limits.forThreads(t)?.fmaGFLOPs.cpuMedian ?? 0
                        s += String(format: " %.2f (%.0f%%) |", r.msMedian, lim > 0 ? 100 * r.cpuGOPs / lim : 0)
                    } else { s += " |" }
                }
                s += "\n"
            }
            s += "\n"
        }
        return s
    }
}

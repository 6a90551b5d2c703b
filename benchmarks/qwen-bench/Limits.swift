import ArgumentParser
import Foundation
import Kernels
import Quant

/// `qwen-bench limits`: this machine's limits, measured with simple loops (C, limits.c): read bandwidth
/// on a buffer far larger than the last-level cache, peak f32 FMA rate, peak int8 dot rate (VNNI), for
/// 1 and 2 threads. The kernels benchmark reports its numbers as a percentage of these.
struct Limits: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "limits",
        abstract: "Measure memory read bandwidth, peak f32 FMA and int8 dot rates (1 and 2 threads).",
        discussion: """
        Writes benchmarks/results/limits.json and prints a table. Each figure is the median and the best of
        --repeats runs; the CPU may be shared, so the best run is the closest to the machine's limit.

        Examples:
          qwen-bench limits
          qwen-bench limits --buffer 2G --repeats 9 --json
        """)

    @Option(help: "Read-bandwidth buffer size (must exceed the last-level cache by far).")
    var buffer: String = "1536M"
    @Option(help: "Repetitions per measurement.")
    var repeats: Int = 7
    @Option(help: "Thread counts to measure, comma separated.")
    var threads: String = "1,2"
    @Option(help: "Output folder.")
    var outDir: String = Paths.results.path
    @Option(help: "Folder on the storage to measure (sequential read rate with the page cache evicted; use the packs' file system).")
    var diskDir: String = NSTemporaryDirectory()
    @Option(help: "Size of the file that measures the storage's read rate (0: skip).")
    var diskBytes: String = "1G"
    @Flag(help: "Print the JSON summary on stdout.")
    var json = false

    func run() throws {
        guard let bytes = ByteSize.parse(buffer), bytes >= 64 << 20 else {
            throw ValidationError("--buffer: expected a size like 1536M or 2G (at least 64M), found \(buffer)")
        }
        let threadList = try parseThreads(threads)
        guard let diskSize = ByteSize.parse(diskBytes) else {
            throw ValidationError("--disk-bytes: expected a size like 1G, or 0 to skip, found \(diskBytes)")
        }
        var result = LimitsResult.measure(bufferBytes: Int(bytes), repeats: max(1, repeats), threads: threadList)
        if diskSize > 0 { result.diskRead = try DiskRead.measure(dir: diskDir, bytes: diskSize, repeats: 3) }
        FileHandle.standardError.write(Data(result.table().utf8))
        let data = try JSONEncoder.pretty.encode(result)
        try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true)
        try AtomicOutput.write(data, to: URL(fileURLWithPath: outDir).appendingPathComponent("limits.json"))
        if json { print(String(decoding: data, as: UTF8.self)) }
    }
}

func parseThreads(_ s: String) throws -> [Int] {
    let list = s.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
    guard !list.isEmpty, list.allSatisfy({ $0 >= 1 && $0 <= 256 }) else {
        throw ValidationError("--threads: expected a comma-separated list like 1,2, found \(s)")
    }
    return list
}

extension JSONEncoder {
    static var pretty: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        return e
    }
}

/// Median and best of repeated measurements of a rate (higher is better), by wall time and by CPU
/// time per thread. The machine is shared: when other processes take the cores, wall-time rates drop
/// while CPU-time rates (work / (process CPU seconds / threads)) still show what the code does with
/// the cores it gets. Percentages of the limits use the CPU-time rates on both sides.
struct Rate: Codable {
    var median: Double
    var best: Double
    var cpuMedian: Double
    var cpuBest: Double
}

struct Samples {
    var wall: [Double] = [], cpu: [Double] = []
    /// One run: `amount` units of work in `time` (wall and CPU seconds), with `threads` threads.
    mutating func add(amount: Double, threads: Int, _ time: RunTime) {
        wall.append(amount / time.wall)
        cpu.append(amount / max(time.cpu / Double(threads), 1e-9))
    }
    mutating func add(_ r: (amount: Double, time: RunTime), threads: Int) { add(amount: r.amount, threads: threads, r.time) }
    var rate: Rate {
        let w = wall.sorted(), c = cpu.sorted()
        return Rate(median: w[w.count / 2], best: w.last ?? 0, cpuMedian: c[c.count / 2], cpuBest: c.last ?? 0)
    }
}

struct RunTime { var wall: Double; var cpu: Double }

func processCPUSeconds() -> Double {
    var ru = rusage()
    getrusage(RUSAGE_SELF.rawValue, &ru)
    return Double(ru.ru_utime.tv_sec) + Double(ru.ru_utime.tv_usec) / 1e6 + Double(ru.ru_stime.tv_sec) + Double(ru.ru_stime.tv_usec) / 1e6
}

struct LimitsResult: Codable {
    struct PerThreads: Codable {
        var threads: Int
        var readGBs: Rate          // GB/s (1e9 bytes)
        var fmaGFLOPs: Rate        // f32 FMA, 2 flops each
        var int8GOPs: Rate         // int8 multiply-adds x 2, GEMM-like operand pattern (the limit we use)
        var int8SameOperandGOPs: Rate   // the textbook loop repeating one operand pair (upper bound)
        var bf16DotGFLOPs: Rate?   // vdpbf16ps, GEMM-like operands (nil: not measured, or no AVX512-BF16)
    }
    var isa: String
    var cpu: String
    var onlineCPUs: Int
    var bufferBytes: Int
    var date: String
    var results: [PerThreads]
    /// The storage's sequential read rate with the page cache evicted (what a cold run reads at).
    var diskRead: DiskRead?

    func forThreads(_ t: Int) -> PerThreads? { results.first { $0.threads == t } ?? results.last }

    static func measure(bufferBytes: Int, repeats: Int, threads: [Int]) -> LimitsResult {
        let saved = qk_get_threads()
        defer { qk_set_threads(saved) }
        let buf = UnsafeMutableRawPointer.allocate(byteCount: bufferBytes, alignment: 4096)
        defer { buf.deallocate() }
        memset(buf, 1, bufferBytes)   // fault every page in before timing
        var out: [PerThreads] = []
        for t in threads {
            qk_set_threads(Int32(t))
            var read = Samples(), fma = Samples(), i8 = Samples(), i8s = Samples(), bd = Samples()
            let hasBF16Dot = qk_limits_bf16dot(8) > 0
            let chunk = bufferBytes / (t * 16) / 4096 * 4096
            let iters: Int64 = 4_000_000
            for _ in 0..<repeats {
                read.add(amount: Double(chunk * t * 16) / 1e9, threads: t, timeParallel(tasks: t * 16) { task in
                    _ = qk_limits_read(buf + task * chunk, chunk)
                })
                fma.add(opsRun(threads: t) { qk_limits_fma(iters) }, threads: t)
                i8.add(opsRun(threads: t) { qk_limits_int8_gemm(iters) }, threads: t)
                i8s.add(opsRun(threads: t) { qk_limits_int8(iters) }, threads: t)
                if hasBF16Dot { bd.add(opsRun(threads: t) { qk_limits_bf16dot(iters) }, threads: t) }
            }
            out.append(.init(threads: t, readGBs: read.rate, fmaGFLOPs: fma.rate, int8GOPs: i8.rate,
                             int8SameOperandGOPs: i8s.rate, bf16DotGFLOPs: hasBF16Dot ? bd.rate : nil))
        }
        return LimitsResult(isa: String(cString: qk_isa_name()), cpu: cpuName(), onlineCPUs: Int(qk_get_threads()),
                            bufferBytes: bufferBytes, date: ISO8601DateFormatter().string(from: Date()), results: out)
    }

    func table() -> String {
        var s = "machine limits (\(cpu), \(isa)); median / best of runs, wall time | by CPU time per thread\n"
        s += "threads | read GB/s                   | f32 FMA GFLOP/s             | int8 GOP/s (GEMM-like)      | int8 GOP/s (same operands)  | bf16 dot GFLOP/s (GEMM-like)\n"
        func f(_ r: Rate) -> String { String(format: "%6.1f/%6.1f | %6.1f/%6.1f", r.median, r.best, r.cpuMedian, r.cpuBest) }
        for r in results {
            s += String(format: "%7d", r.threads) + " | \(f(r.readGBs)) | \(f(r.fmaGFLOPs)) | \(f(r.int8GOPs)) | \(f(r.int8SameOperandGOPs)) | \(r.bf16DotGFLOPs.map(f) ?? "–")\n"
        }
        if let d = diskRead { s += d.line + "\n" }
        return s
    }

    static func load(dir: String) -> LimitsResult? {
        guard let d = FileManager.default.contents(atPath: dir + "/limits.json") else { return nil }
        return try? JSONDecoder().decode(LimitsResult.self, from: d)
    }
}

func cpuName() -> String {
    guard let s = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown" }
    for line in s.split(separator: "\n") where line.hasPrefix("model name") {
        return line.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "unknown"
    }
    return "unknown"
}

/// Times `body`: wall and process CPU seconds.
func timeRun(_ body: () -> Void) -> RunTime {
    let c0 = processCPUSeconds(), t0 = DispatchTime.now().uptimeNanoseconds
    body()
    let t1 = DispatchTime.now().uptimeNanoseconds, c1 = processCPUSeconds()
    return RunTime(wall: Double(t1 - t0) / 1e9, cpu: c1 - c0)
}

/// Runs body(task) for every task over the kernel thread pool, timed.
func timeParallel(tasks: Int, _ body: (Int) -> Void) -> RunTime {
    withoutActuallyEscaping(body) { b in
        var box = b
        return withUnsafeMutablePointer(to: &box) { p in
            timeRun {
                qk_parallel_for(Int64(tasks), { ctx, task, _ in
                    ctx!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(Int(task))
                }, p)
            }
        }
    }
}

/// Runs `loop` once per thread concurrently; returns (G operations, time).
func opsRun(threads: Int, _ loop: @escaping () -> Double) -> (amount: Double, time: RunTime) {
    let ops = UnsafeMutablePointer<Double>.allocate(capacity: threads)
    defer { ops.deallocate() }
    let time = timeParallel(tasks: threads) { ops[$0] = loop() }
    return ((0..<threads).reduce(0.0) { $0 + ops[$1] } / 1e9, time)
}

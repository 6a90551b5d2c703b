import ArgumentParser
import Foundation
import Quant
import QwenImage

/// `qwen-bench serve`: `qwen-run serve` under load from curl's parallel transfers: requests per second,
/// latency (median, p90, max) and the batch sizes the server formed, per number of concurrent clients;
/// beside one `qwen-run encode` process per prompt (what a script without the server does).
struct ServeBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "The encoding server under concurrent clients: requests/s, latency, batch sizes, peak RSS.",
        discussion: """
        For each pack: start `qwen-run serve --port 0`, send one untimed request (page cache warm), time GET
        /health, then for each --clients level C send max(--min-requests, 2C) short captions with curl
        --parallel --parallel-max C (curl's own time_total per request). The server's peak RSS is read from
        /proc (VmHWM) before it is stopped. Baseline: `qwen-run encode --prompt` as one process per prompt
        (model opened each time), --baseline runs. Results: benchmarks/results/serve.json.

        Examples:
          qwen-bench serve --packs /work/bench-data/packs --cases q4c --clients 1,4,16
        """)

    @Option(name: .long, help: "Folder holding one pack per case.")
    var packs: String

    @Option(name: .long, help: "Comma-separated pack cases (sub-folders of --packs).")
    var cases = "q4c"

    @Option(name: .long, help: "Comma-separated numbers of concurrent clients.")
    var clients = "1,4,16"

    @Option(name: .customLong("min-requests"), help: "Requests per level at least (2 per client otherwise).")
    var minRequests = 6

    @Option(name: .long, help: "Server --max-batch.")
    var maxBatch = 16

    @Option(name: .long, help: "Baseline runs of one `qwen-run encode` process per prompt.")
    var baseline = 3

    @Option(name: .long, help: "Threads.")
    var threads = 2

    @Option(name: .long, help: "Results file name under benchmarks/results.")
    var name = "serve"

    func run() throws {
        let qwenRun = try Paths.tool("qwen-run")
        let levels = clients.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !levels.isEmpty, levels.allSatisfy({ $0 >= 1 }) else { throw ValidationError("--clients: expected counts like 1,4,16") }
        let work = NSTemporaryDirectory() + "qwen-bench-serve-\(getpid())"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        let captions = CalibrationPrompts.all
        var next = 0
        func requestFile() throws -> String {
            let p = captions[next % captions.count]
            next += 1
            let f = work + "/req-\(next).json"
            try JSONSerialization.data(withJSONObject: ["prompt": p]).write(to: URL(fileURLWithPath: f))
            return f
        }

        var records: [[String: Any]] = []
        for c in cases.split(separator: ",").map(String.init) {
            let pack = URL(fileURLWithPath: packs).appendingPathComponent(c).path
            guard FileManager.default.fileExists(atPath: pack) else {
                records.append(["case": c, "status": "not measured (pack \(pack) missing)"]); continue
            }
            let server = try ServerProcess(argv: [qwenRun, "serve", "--pack", pack, "--port", "0", "--json",
                                                  "--threads", String(threads), "--max-batch", String(maxBatch)], work: work)
            defer { server.stop() }
            let url = "http://127.0.0.1:\(server.port)"
            _ = try curlParallel(url + "/v1/encode", files: [try requestFile()], parallel: 1)   // warm-up
            let health = try curlParallel(url + "/health", files: Array(repeating: nil, count: 50), parallel: 1)
            var rec: [String: Any] = ["case": c, "threads": threads, "max_batch": maxBatch, "status": "ok", "shared_prefix": true,
                                      "health_latency_ms_median": median(health.latencies) * 1000]
            var levelRecords: [[String: Any]] = []
            for level in levels {
                let n = max(minRequests, 2 * level)
                let files = try (0 ..< n).map { _ in try requestFile() }
                let r = try curlParallel(url + "/v1/encode", files: files, parallel: level)
                let ok = r.statuses.filter { $0 == 200 }.count
                let sorted = r.latencies.sorted()
                let lr: [String: Any] = [
                    "clients": level, "requests": n, "ok": ok, "wall_s": r.wall,
                    "requests_per_second": Double(ok) / r.wall,
                    "latency_s_median": median(r.latencies), "latency_s_p90": sorted[min(sorted.count - 1, Int(Double(sorted.count) * 0.9))],
                    "latency_s_max": sorted.last ?? 0, "batch_sizes": r.batchSizes,
                    "batch_size_mean": Double(r.batchSizes.reduce(0, +)) / Double(max(1, r.batchSizes.count)),
                ]
                note(String(format: "%@ %d clients: %d/%d ok in %.1f s, %.2f requests/s, latency median %.2f s, mean batch %.1f",
                            c, level, ok, n, r.wall, Double(ok) / r.wall, median(r.latencies), lr["batch_size_mean"] as! Double))
                levelRecords.append(lr)
            }
            rec["levels"] = levelRecords
            rec["server_peak_rss_bytes"] = server.peakRSS()
            server.stop()
            // Baseline: one process per prompt, as a script calling the CLI would.
            var times: [Double] = [], rss: [Int] = []
            for _ in 0 ..< baseline {
                let prompt = captions[next % captions.count]
                next += 1
                let r = try Child.run([qwenRun, "encode", "--pack", pack, "--prompt", prompt, "--out", work + "/cli.safetensors",
                                       "--force", "--threads", String(threads), "--json"])
                guard r.status == 0 else { rec["baseline_status"] = "failed: \(lastLine(r.stderr))"; break }
                times.append(r.seconds); rss.append(r.peakRSS)
            }
            if !times.isEmpty {
                rec["baseline_cli_s_median"] = median(times)
                rec["baseline_cli_s_min"] = times.min()!
                rec["baseline_cli_s_max"] = times.max()!
                rec["baseline_cli_peak_rss_bytes"] = rss.max()!
                rec["baseline_runs"] = times.count
            }
            records.append(rec)
            try ResultsFile.write(name, records: records, extra: ["prompt_set": "CalibrationPrompts.all in order, one caption per request"])
        }
    }

    struct Load {
        var statuses: [Int] = []
        var latencies: [Double] = []
        var batchSizes: [Int] = []
        var wall = 0.0
    }

    /// One curl process, `files.count` transfers (POST of each file, or GET for nil), at most `parallel` at once.
    func curlParallel(_ url: String, files: [String?], parallel: Int) throws -> Load {
        var args = ["/usr/bin/curl", "-s", "--parallel", "--parallel-immediate", "--parallel-max", String(parallel)]
        for (i, f) in files.enumerated() {
            if i > 0 { args.append("--next") }
            args += ["-o", "/dev/null", "-w", "%{http_code} %{time_total} %header{x-batch-size}\\n"]
            if let f { args += ["--data-binary", "@" + f] }
            args.append(url)
        }
        let r = try Child.run(args, echo: false)
        var load = Load(wall: r.seconds)
        for line in r.stdout.split(separator: "\n") {
            let p = line.split(separator: " ")
            guard p.count >= 2 else { continue }
            load.statuses.append(Int(p[0]) ?? 0)
            load.latencies.append(Double(p[1]) ?? 0)
            if p.count > 2, let b = Int(p[2]) { load.batchSizes.append(b) }
        }
        guard load.statuses.count == files.count else {
            throw BenchError.bad("curl reported \(load.statuses.count) of \(files.count) transfers: \(lastLine(r.stderr))")
        }
        return load
    }
}

/// A `qwen-run serve` child: started, its port read from the first stdout line, stopped with SIGINT.
final class ServerProcess {
    let process = Process()
    let port: Int

    init(argv: [String], work: String) throws {
        FileHandle.standardError.write(("$ " + Child.shellLine(argv) + "\n").data(using: .utf8)!)
        process.executableURL = URL(fileURLWithPath: argv[0])
        process.arguments = Array(argv.dropFirst())
        var env = ProcessInfo.processInfo.environment
        env["QWEN_NO_PROGRESS"] = "1"
        process.environment = env
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try process.run()
        var line = Data()
        while !line.contains(0x0A) {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            line.append(chunk)
        }
        guard let o = try? JSONSerialization.jsonObject(with: line.prefix { $0 != 0x0A }) as? [String: Any], let port = o["port"] as? Int else {
            process.terminate()
            throw BenchError.bad("qwen-run serve did not start: \(String(decoding: line, as: UTF8.self))")
        }
        self.port = port
    }

    /// VmHWM of the server process.
    func peakRSS() -> Int {
        guard let s = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8),
              let line = s.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kb = Int(line.split(separator: " ").dropFirst().first ?? "") else { return 0 }
        return kb * 1024
    }

    func stop() {
        guard process.isRunning else { return }
        process.interrupt()
        process.waitUntilExit()
    }
}

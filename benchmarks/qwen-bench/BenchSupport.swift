import Foundation

/// A lock-protected task counter and first error, shared by the workers of concurrentPerform.
final class WorkQueue: @unchecked Sendable {
    private let lock = NSLock()
    private var next = 0
    private var error: Error?
    let count: Int

    init(count: Int) { self.count = count }

    /// The next task index, or nil when all are taken or a worker failed.
    func take() -> Int? {
        lock.lock(); defer { lock.unlock() }
        if error != nil || next >= count { return nil }
        next += 1
        return next - 1
    }

    func fail(_ e: Error) {
        lock.lock(); defer { lock.unlock() }
        if error == nil { error = e }
    }

    var failure: Error? {
        lock.lock(); defer { lock.unlock() }
        return error
    }
}

// MARK: - Child processes with their own peak RSS

/// The outcome of one child process: exit status, wall time, peak RSS (ru_maxrss) and its stdout.
struct ChildResult {
    let status: Int32
    let seconds: Double
    let peakRSS: Int
    /// User + system CPU time of the child (steadier than wall time on a shared machine).
    let cpuSeconds: Double
    /// Bytes the child read from storage (`ru_inblock` × 512: file reads and page faults that went to the disk).
    var readBytes: Int = 0
    let stdout: String
    let stderr: String

    /// The last line of stdout parsed as a JSON object (the `--json` summary), if any.
    var json: [String: Any]? {
        if let d = stdout.data(using: .utf8), let o = try? JSONSerialization.jsonObject(with: d) as? [String: Any] { return o }
        for line in stdout.split(separator: "\n").reversed() {
            if let d = line.data(using: .utf8), let o = try? JSONSerialization.jsonObject(with: d) as? [String: Any] {
                return o
            }
        }
        return nil
    }
}

enum Child {
    /// Why a qwen-run subcommand failed, in report words: a stub subcommand (its --help still says
    /// "not implemented") is "not measured (component not landed)", anything else "failed: <last line>".
    static func failureStatus(_ r: ChildResult, tool: String, subcommand: String) -> String {
        let why = lastLine(r.stderr)
        if why.contains("not implemented") { return "not measured (component not landed)" }
        if let h = try? run([tool, subcommand, "--help"], echo: false),
           (h.stdout + h.stderr).contains("not implemented") {
            return "not measured (component not landed)"
        }
        return "failed: \(why)"
    }

    /// Runs `argv` (argv[0] a path) with stdout/stderr captured to files, waits with wait4 and returns
    /// the child's own rusage peak RSS. `echo` prints the command line to stderr first.
    /// `cgroup`: a cgroup folder the child joins before it execs (a shell writes its pid to cgroup.procs).
    static func run(_ argv: [String], env extra: [String: String] = [:], echo: Bool = true, cgroup: String? = nil) throws -> ChildResult {
        if echo { FileHandle.standardError.write(("$ " + shellLine(argv) + (cgroup.map { "   (in cgroup \($0))" } ?? "") + "\n").data(using: .utf8)!) }
        let argv = cgroup.map { ["/bin/sh", "-c", "echo $$ > \"$0/cgroup.procs\" && exec \"$@\"", $0] + argv } ?? argv
        let tmp = FileManager.default.temporaryDirectory
        let tag = "\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let outPath = tmp.appendingPathComponent("qb-\(tag).out").path
        let errPath = tmp.appendingPathComponent("qb-\(tag).err").path
        defer { unlink(outPath); unlink(errPath) }
        var actions: posix_spawn_file_actions_t = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        var env = ProcessInfo.processInfo.environment
        env["QWEN_NO_PROGRESS"] = "1"
        for (k, v) in extra { env[k] = v }
        let envStrings = env.map { "\($0.key)=\($0.value)" }
        var cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        var cEnv: [UnsafeMutablePointer<CChar>?] = envStrings.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) }; cEnv.forEach { free($0) } }
        var pid: pid_t = 0
        let start = Date()
        let rc = posix_spawn(&pid, argv[0], &actions, nil, &cArgs, &cEnv)
        guard rc == 0 else { throw BenchError.bad("cannot start \(argv[0]): \(String(cString: strerror(rc)))") }
        var status: Int32 = 0
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
        let secs = Date().timeIntervalSince(start)
        let out = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        // WIFEXITED / WEXITSTATUS by hand (macros are not imported).
        let code: Int32 = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
        let cpu = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 +
            Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
        return ChildResult(status: code, seconds: secs, peakRSS: Int(usage.ru_maxrss) * 1024, cpuSeconds: cpu,
                           readBytes: Int(usage.ru_inblock) * 512, stdout: out, stderr: err)
    }

    static func shellLine(_ argv: [String]) -> String {
        argv.map { a in
            a.allSatisfy({ $0.isLetter || $0.isNumber || "-_./=:,".contains($0) }) ? a : "'" + a.replacingOccurrences(of: "'", with: "'\\''") + "'"
        }.joined(separator: " ")
    }
}

// MARK: - Tools and paths

/// A case name with run flags: "bf16+dot" is the pack "bf16" run with `--bf16-dot` (qwen-run's fast bf16
/// arithmetic), "q8s+direct" / "q8s+mapped" the pack "q8s" with `--stream direct` / `mapped`, so one results
/// file can hold both sides of a comparison.
enum RunVariant {
    static let suffixes: [(String, [String])] = [("+dot", ["--bf16-dot"]), ("+direct", ["--stream", "direct"]),
                                                  ("+mapped", ["--stream", "mapped"])]
    static func split(_ name: String) -> (pack: String, flags: [String]) {
        for (suffix, flags) in suffixes where name.hasSuffix(suffix) { return (String(name.dropLast(suffix.count)), flags) }
        return (name, [])
    }
}

enum Paths {
    /// The repository root (from this source file's location).
    static var repo: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }
    /// benchmarks/results, or $QWEN_BENCH_RESULTS (the quick mode of run_all.sh records elsewhere so it
    /// never overwrites the full run's numbers).
    static var results: URL {
        if let d = ProcessInfo.processInfo.environment["QWEN_BENCH_RESULTS"], !d.isEmpty { return URL(fileURLWithPath: d) }
        return repo.appendingPathComponent("benchmarks/results")
    }
    static var fixtures: URL { repo.appendingPathComponent("Tests/Fixtures") }

    /// A sibling executable of this one (qwen-quant, qwen-run), built in the same configuration.
    static func tool(_ name: String) throws -> String {
        let me = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var candidates = [me.deletingLastPathComponent().appendingPathComponent(name).path]
        candidates.append(repo.appendingPathComponent(".build/release/\(name)").path)
        for c in candidates where FileManager.default.isExecutableFile(atPath: c) { return c }
        throw BenchError.bad("\(name) not found next to qwen-bench (\(candidates[0])): build it first (swift build -c release)")
    }
}

// MARK: - Recorded results

/// One results file: benchmarks/results/NAME.json = {"bench", "date", "machine", "command", "records": [...]}.
enum ResultsFile {
    static func write(_ name: String, records: [[String: Any]], extra: [String: Any] = [:], dir: URL = Paths.results) throws {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var obj: [String: Any] = [
            "bench": name,
            "date": ISO8601DateFormatter().string(from: Date()),
            "machine": Machine.line,
            "command": "qwen-bench " + CommandLine.arguments.dropFirst().joined(separator: " "),
            "records": records,
        ]
        for (k, v) in extra { obj[k] = v }
        let data = try JSONSerialization.data(withJSONObject: sanitize(obj), options: [.prettyPrinted, .sortedKeys])
        try AtomicWrite.data(data, to: dir.appendingPathComponent("\(name).json"))
    }

    /// JSON has no inf/nan: they are written as the strings "inf", "-inf", "nan".
    static func sanitize(_ v: Any) -> Any {
        if let d = v as? [String: Any] { return d.mapValues(sanitize) }
        if let a = v as? [Any] { return a.map(sanitize) }
        if let x = v as? Double, !x.isFinite { return x.isNaN ? "nan" : (x > 0 ? "inf" : "-inf") }
        return v
    }

    static func read(_ name: String, dir: URL = Paths.results) -> [String: Any]? {
        try? readJSON(dir.appendingPathComponent("\(name).json"))
    }
}

enum AtomicWrite {
    static func data(_ data: Data, to url: URL) throws {
        let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
        try data.write(to: tmp)
        guard rename(tmp.path, url.path) == 0 else { throw BenchError.bad("cannot rename \(tmp.path) to \(url.path)") }
    }
}

enum Machine {
    static var cpuModel: String {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown CPU" }
        for line in text.split(separator: "\n") where line.hasPrefix("model name") {
            return line.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "unknown CPU"
        }
        return "unknown CPU"
    }
    static var line: String {
        let mem = Double(ProcessInfo.processInfo.physicalMemory) / 1_073_741_824
        return "\(cpuModel), \(ProcessInfo.processInfo.activeProcessorCount) logical CPUs, \(String(format: "%.0f", mem)) GiB RAM"
    }
}

// MARK: - Statistics

func median(_ xs: [Double]) -> Double {
    guard !xs.isEmpty else { return .nan }
    let s = xs.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

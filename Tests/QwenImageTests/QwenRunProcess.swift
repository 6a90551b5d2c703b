import Foundation

/// Runs the `qwen-run` binary that `swift test` builds beside the test bundle, for the end-to-end CLI
/// tests (exit status, stdout, stderr).
enum QwenRunProcess {
    struct Run { let status: Int32; let stdout: String; let stderr: String }

    static let binary: String = {
        // The test bundle lives in the build products folder, beside the executables.
        var url = URL(fileURLWithPath: CommandLine.arguments.first ?? "")
        for _ in 0 ..< 4 where !FileManager.default.fileExists(atPath: url.appendingPathComponent("qwen-run").path) {
            url.deleteLastPathComponent()
        }
        let candidate = url.appendingPathComponent("qwen-run").path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        // Fall back to the package's debug build folder.
        var root = URL(fileURLWithPath: #filePath)
        while root.lastPathComponent != "Tests" { root.deleteLastPathComponent() }
        return root.deletingLastPathComponent().appendingPathComponent(".build/debug/qwen-run").path
    }()

    static func run(_ args: [String]) throws -> Run {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = args
        var env = ProcessInfo.processInfo.environment
        env["QWEN_NO_PROGRESS"] = "1"
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardOutput = out; p.standardError = err
        try p.run()
        // Drain stderr on another thread so a chatty child cannot block on a full pipe.
        nonisolated(unsafe) var e = Data()
        let drained = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            e = err.fileHandleForReading.readDataToEndOfFile()
            drained.signal()
        }
        let o = out.fileHandleForReading.readDataToEndOfFile()
        drained.wait()
        p.waitUntilExit()
        return Run(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
    }
}

import ArgumentParser
import Foundation
import Kernels
import Quant

/// Options every qwen-run command shares.
struct CommonOptions: ParsableArguments {
    @Option(name: .long, help: "Worker threads, including the calling one (default: all cores).")
    var threads: Int?

    @Flag(name: .long, help: "Print a machine-readable JSON summary on stdout (messages go to stderr).")
    var json = false

    func apply() throws {
        if let t = threads {
            guard t >= 1 && t <= 1024 else { throw ValidationError("--threads must be between 1 and 1024, got \(t)") }
            qk_set_threads(Int32(t))
        }
    }
}

/// Writes a message line to stderr.
func note(_ text: String) {
    FileHandle.standardError.write((text + "\n").data(using: .utf8)!)
}

/// Prints a summary: JSON on stdout with --json, else human lines on stderr.
func printSummary(_ fields: [(String, Any)], json: Bool) {
    if json {
        var dict: [String: Any] = [:]
        for (k, v) in fields { dict[k] = v }
        if let data = try? JSONSerialization.data(withJSONObject: dict, options: [.sortedKeys]),
           let s = String(data: data, encoding: .utf8) {
            print(s)
        }
    } else {
        for (k, v) in fields { note("  \(k): \(v)") }
    }
}

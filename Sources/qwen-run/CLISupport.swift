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

/// Checks an output path before any work, the same way for every command: the extension, no existing
/// file unless --force (the file is then replaced atomically), an existing writable folder, and no
/// overlap with an input (writing inside the pack, or over the latents being read, is refused).
func checkOutput(_ path: String, force: Bool, extensions: [String], inputs: [String]) throws {
    let ext = (path as NSString).pathExtension.lowercased()
    guard extensions.contains(ext) else {
        throw ValidationError("--out \(path): expected a .\(extensions.joined(separator: " or ."))" + " file")
    }
    if FileManager.default.fileExists(atPath: path) && !force {
        throw ValidationError("--out \(path) already exists (use --force to replace it)")
    }
    let dir = (path as NSString).deletingLastPathComponent
    var isDir: ObjCBool = false
    if !dir.isEmpty && !(FileManager.default.fileExists(atPath: dir, isDirectory: &isDir) && isDir.boolValue) {
        throw ValidationError("--out \(path): folder \(dir) does not exist (create it first)")
    }
    if !FileManager.default.isWritableFile(atPath: dir.isEmpty ? "." : dir) {
        throw ValidationError("--out \(path): folder \(dir.isEmpty ? "." : dir) is not writable")
    }
    do {
        try AtomicOutput.checkDisjoint(output: URL(fileURLWithPath: path), inputs: inputs.map { URL(fileURLWithPath: $0) })
    } catch let e as QuantError {
        throw ValidationError("--out: \(e.description)")
    }
}

/// A --max-ram budget, lowered (with a note) when the machine or cgroup cannot give it.
func usableBudget(_ bytes: Int) -> Int {
    let (use, warning) = ProcessStats.clampBudget(bytes)
    if let warning { note("note: " + warning) }
    return use
}

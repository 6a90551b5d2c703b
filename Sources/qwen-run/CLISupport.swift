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

    @Flag(name: .customLong("bf16-dot"), help: ArgumentHelp(
        "bf16 weights: round the activations to bf16 and use the CPU's bf16 dot product (AVX512-BF16).",
        discussion: "About twice as fast on bf16 packs, with the rounding error of bf16 activations (relative L2 about 1e-3, as PyTorch's bf16 inference) instead of the exact f32 result. With any pack, the VAE's upsampler kernels (built in f32 at load) become bf16, and its mid-block attention and the vision towers' whole-image attention run as two bf16 dot products. Other weights are unaffected; on a CPU without AVX512-BF16 the exact path runs (with a note)."))
    var bf16Dot = false

    @Option(name: .long, help: ArgumentHelp(
        "How layers stream from a raw pack: auto, direct or mapped.",
        discussion: "direct: each streamed layer is read with O_DIRECT, bypassing the page cache, into one of two reused buffers while the previous layer computes (no page-cache work on the compute cores; nothing stays cached for the next run). mapped: layers are memory-mapped and stay in the page cache. auto (default): direct for the layers not already cached when the pack's text encoder is larger than half the RAM or the cgroup's memory limit (it could not stay cached anyway), else mapped. The embedding table is always mapped; zstd packs decompress into buffers either way."))
    var stream: StreamMode = .auto

    enum StreamMode: String, ExpressibleByArgument, CaseIterable { case auto, direct, mapped }

    func apply() throws {
        switch stream {
        case .auto: PackComponent.defaultDirectReads = nil
        case .direct: PackComponent.defaultDirectReads = true
        case .mapped: PackComponent.defaultDirectReads = false
        }
        if let t = threads {
            guard t >= 1 && t <= 1024 else { throw ValidationError("--threads must be between 1 and 1024, got \(t)") }
            qk_set_threads(Int32(t))
        }
        if bf16Dot && qk_set_bf16_dot(1) == 0 {
            note("note: --bf16-dot: the \(String(cString: qk_isa_name())) kernels have no bf16 dot product (needs AVX512-BF16); bf16 weights take the exact f32 path")
        }
    }
}

/// Writes a message line to stderr.
func note(_ text: String) {
    FileHandle.standardError.write((text + "\n").data(using: .utf8)!)
}

/// Prints a summary: JSON on stdout with --json, else human lines on stderr.
/// With --bf16-dot in force the summary says so (its numbers are not the exact path's).
func printSummary(_ fields: [(String, Any)], json: Bool) {
    let fields = qk_bf16_dot_active() != 0 ? fields + [("bf16_dot", true)] : fields
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

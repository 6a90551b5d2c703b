import ArgumentParser
import Foundation
import Quant

/// `qwen-bench vision`: the full-size vision tower on the Edit path (1008×1008, 5,184 patches) and the
/// Edit-Plus condition size (392×392, 784 patches), one child process per run (`qwen-run vision --json`).
struct VisionBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vision",
        abstract: "Vision tower speed and peak RSS on full-size packs (Edit 1008² and Edit-Plus 392² images).",
        discussion: """
        The images are synthetic photos already at the size the pipelines' pre-resize and smart_resize
        produce for a 1024×1024 input (Edit: 1008×1008) and for the Edit-Plus 384² condition area
        (392×392), passed with --preresize none so the tower sees exactly those patch grids.

        Qwen-Image 2.1 packs (Qwen3-VL tower, 16-px patches): --sizes 1024,2048 --patch 16. With --prompt, each
        run is `qwen-run encode --image` with that prompt instead (the tower, then the image-conditioned prompt
        through the language model).

        Examples:
          qwen-bench vision --packs /work/bench-data/packs
          qwen-bench vision --packs /work/bench-data/packs --cases q8-pc --repeat 1
          qwen-bench vision --packs /work/bench-data/packs21 --cases q8s,q4c --sizes 1024,2048 --patch 16 --name vision_gen2
          qwen-bench vision --packs /work/bench-data/packs21 --cases q8s --sizes 1024 --patch 16 --prompt "make it night"
        """)

    @Option(name: .long, help: "Folder holding one pack per case (from `qwen-bench convert`).")
    var packs: String

    @Option(name: .long, help: "Comma-separated pack cases (a case ending in +dot runs that pack with --bf16-dot).")
    var cases = "bf16,q8-pc,q4-g32"

    @Option(name: .long, help: "Runs per case (the median is reported).")
    var `repeat` = 3

    @Option(name: .long, help: "Threads.")
    var threads = 2

    @Flag(name: .long, help: "One run per pack, 392² only.")
    var quick = false

    @Option(name: .long, help: "Comma-separated square image sides, in pixels (given to the tower as they are).")
    var sizes = "1008,392"

    @Option(name: .long, help: "Patch size of the tower (14: Qwen2.5-VL; 16: Qwen3-VL), for the patch counts.")
    var patch = 14

    @Option(name: .long, help: "Run `qwen-run encode --image` with this prompt instead of `qwen-run vision`.")
    var prompt: String?

    @Option(name: .long, help: "Results file name under benchmarks/results.")
    var name = "vision"

    func run() throws {
        let qwenRun = try Paths.tool("qwen-run")
        let work = NSTemporaryDirectory() + "qwen-bench-vision-\(getpid())"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        let names = [1008: "edit 1008x1008", 392: "edit-plus 392x392"]
        let sides = try sizes.split(separator: ",").map { s -> Int in
            guard let v = Int(s), v >= 32, v <= 8192 else { throw BenchError.bad("--sizes: '\(s)' is not a side in 32...8192") }
            return v
        }
        let sizes: [(String, Int)] = quick ? [("edit-plus 392x392", 392)] : sides.map { (names[$0] ?? "\($0)x\($0)", $0) }
        for (_, s) in sizes { try writePNG(syntheticPhoto(width: s, height: s), width: s, height: s, to: "\(work)/photo\(s).png") }
        var records: [[String: Any]] = []
        for c in cases.split(separator: ",").map(String.init) {
            let (packName, flags) = RunVariant.split(c)
            let pack = URL(fileURLWithPath: packs).appendingPathComponent(packName).path
            guard FileManager.default.fileExists(atPath: pack) else {
                records.append(["case": c, "status": "not measured (pack \(pack) missing)"]); continue
            }
            for (label, s) in sizes {
                let command = prompt.map { ["encode", "--prompt", $0] } ?? ["vision"]
                var rec = try SpeedCase.measure(
                    [qwenRun] + command + ["--pack", pack, "--image", "\(work)/photo\(s).png", "--preresize", "none",
                     "--out", work + "/out.safetensors", "--force", "--threads", String(threads), "--json"] + flags,
                    repeat: quick ? 1 : self.repeat, label: "\(command[0]) \(c) \(label)")
                rec["case"] = c
                rec["input"] = label
                rec["command"] = command[0]
                rec["patches"] = (s / patch) * (s / patch)
                rec["threads"] = threads
                records.append(rec)
                try ResultsFile.write(name, records: records)
            }
        }
        try ResultsFile.write(name, records: records)
    }
}

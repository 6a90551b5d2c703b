import ArgumentParser
import Foundation
import Quant
import QwenImage

/// `qwen-bench vae`: the full-size VAE (decode 128×128 latents → 1024², encode 1024², decode → 2048²),
/// one child process per run (`qwen-run vae-decode|vae-encode --json`).
struct VAEBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vae",
        abstract: "VAE encode/decode speed and peak RSS on full-size packs (f32, bf16, q8).",
        discussion: """
        Converts the synthetic checkpoint's VAE itself (--components vae, a few hundred MB per scheme)
        unless --packs already holds vae-<case>. Latents are N(0, 1), the image a synthetic photo.

        Examples:
          qwen-bench vae --src /work/bench-data/synth --packs /work/bench-data/packs
          qwen-bench vae --src /work/bench-data/synth --packs /work/bench-data/packs --quick
        """)

    @Option(name: .long, help: "Full-size checkpoint (diffusers layout) to convert the VAE from.")
    var src: String

    @Option(name: .long, help: "Folder for the VAE packs (vae-<case>).")
    var packs: String

    @Option(name: .long, help: "Comma-separated pack cases (a case ending in +dot runs that pack with --bf16-dot).")
    var cases = "f32,bf16,q8-pc"

    @Option(name: .long, help: "Runs per case (the median is reported).")
    var `repeat` = 3

    @Option(name: .long, help: "Threads.")
    var threads = 2

    @Option(name: .long, help: "Extra qwen-run flags for every run, e.g. '--max-ram 512M'.")
    var extra = ""

    @Flag(name: .long, help: "One run per pack, decode 1024² only.")
    var quick = false

    @Flag(name: .customLong("only-1024"), help: "Decode and encode 1024² only (no 2048² decode).")
    var only1024 = false

    @Option(name: .long, help: "Results file name under benchmarks/results.")
    var name = "vae"

    func run() throws {
        let qwenRun = try Paths.tool("qwen-run")
        let qwenQuant = try Paths.tool("qwen-quant")
        let work = NSTemporaryDirectory() + "qwen-bench-vae-\(getpid())"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        // Latent shape from the checkpoint's VAE: 16 channels at 1/8 (Qwen-Image), 64 at 1/16 (Qwen-Image 2.1).
        let cfgPath = URL(fileURLWithPath: src).appendingPathComponent("vae/config.json").path
        let vae = try VAEConfig.load(try Data(contentsOf: URL(fileURLWithPath: cfgPath)), file: cfgPath)
        let gen2 = vae.isResidual, z = vae.zDim, f = vae.spatialCompression
        for side in [1024, 2048] {
            let h = side / f
            try STFile.writeF32([("latents", [1, z, 1, h, h], syntheticLatents(count: z * h * h))], to: "\(work)/latents\(side).safetensors")
        }
        // The 2.1 VAE reads RGBA: the photo with an opaque alpha, as the pipeline's convert("RGBA").
        try writePNG(syntheticPhoto(width: 1024, height: 1024), width: 1024, height: 1024, to: "\(work)/photo1024.png", rgba: gen2)
        let extraFlags = extra.split(separator: " ").map(String.init)
        let l1 = 1024 / f, l2 = 2048 / f
        var jobs: [(String, [String], Double)] = [("decode \(l1)x\(l1) -> 1024x1024", ["vae-decode", "--latents", "\(work)/latents1024.safetensors", "--out", "\(work)/out.png", "--force"], 1024 * 1024)]
        if !quick {
            jobs.append(("encode 1024x1024", ["vae-encode", "--image", "\(work)/photo1024.png", "--out", "\(work)/lat.safetensors", "--force"], 1024 * 1024))
            if !only1024 { jobs.append(("decode \(l2)x\(l2) -> 2048x2048", ["vae-decode", "--latents", "\(work)/latents2048.safetensors", "--out", "\(work)/out.png", "--force"], 2048 * 2048)) }
        }
        try FileManager.default.createDirectory(atPath: packs, withIntermediateDirectories: true)
        var records: [[String: Any]] = []
        for c in cases.split(separator: ",").map(String.init) {
            let (caseName, runFlags) = RunVariant.split(c)
            let sc = try SchemeCase.parse(caseName)
            let pack = URL(fileURLWithPath: packs).appendingPathComponent("vae-" + sc.name).path
            if !FileManager.default.fileExists(atPath: pack) {
                let r = try Child.run([qwenQuant, "convert", src, "-o", pack, "--components", "vae", "--threads", String(threads)] + sc.convertFlags)
                if r.status != 0 {
                    records.append(["case": c, "status": "convert failed: \(lastLine(r.stderr))"]); continue
                }
            }
            for (label, args, pixels) in jobs {
                var rec = try SpeedCase.measure([qwenRun] + args.prefix(1) + ["--pack", pack] + args.dropFirst() +
                                                ["--threads", String(threads), "--json"] + extraFlags + runFlags,
                                                repeat: quick ? 1 : self.repeat, label: "vae \(c) \(label)")
                rec["case"] = c
                rec["job"] = label
                rec["pixels"] = pixels
                rec["threads"] = threads
                if !extra.isEmpty { rec["extra_flags"] = extra }
                records.append(rec)
                try ResultsFile.write(name, records: records)
            }
        }
        try ResultsFile.write(name, records: records)
    }
}

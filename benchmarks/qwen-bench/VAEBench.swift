import ArgumentParser
import Foundation
import Kernels
import Quant
import QwenImage

/// `qwen-bench vae`: the full-size VAE (the real config, synthetic weights) through `qwen-run`, one child
/// process per case so peak RSS is per case. Cases: decode 128×128 latents -> 1024², encode 1024²,
/// decode 256×256 -> 2048², for f32 / bf16 / q8 packs, under --max-ram (tiled).
struct VAEBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vae",
        abstract: "VAE encode/decode at full size: time, CPU time, peak RSS, GFLOP/s vs the f32 peak.",
        discussion: """
        Makes (once, in --work) a synthetic checkpoint with the real Qwen-Image VAE config and seeded random
        bf16 weights, converts it to f32 / bf16 / q8 packs with the real converter, then runs each case as
        `qwen-run vae-decode|vae-encode ... --json` in its own process. Wall time depends on how busy the
        machine is; CPU seconds and GFLOP per CPU-second do not (much).

        Examples:
          qwen-bench vae
          qwen-bench vae --schemes f32 --cases dec1024 --max-ram 512M --threads 2
        """)

    @Option(help: "Scratch folder for the synthetic checkpoint, packs and inputs.")
    var work = "/tmp/qwen-vae-bench"
    @Option(help: "Comma-separated pack schemes: f32, bf16, q8.")
    var schemes = "f32,bf16,q8"
    @Option(help: "Comma-separated cases: dec1024, enc1024, dec2048, dec1024-whole.")
    var cases = "dec1024,enc1024,dec2048"
    @Option(help: "--max-ram for the tiled cases.")
    var maxRAM = "512M"
    @Option(help: "Threads for qwen-run.")
    var threads = 2
    @Option(help: "Where to write the JSON results (a Markdown table goes next to it).")
    var out = "benchmarks/results/vae.json"
    @Option(help: "The f32 FMA peak in GFLOP/s (default: benchmarks/results/limits.json, threads = --threads, cpuBest).")
    var peak: Double?

    func run() throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: work, withIntermediateDirectories: true)
        let qwenRun = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("qwen-run").path
        guard fm.isExecutableFile(atPath: qwenRun) else { throw ValidationError("qwen-run not found next to qwen-bench (\(qwenRun)); build it first") }
        let config = try VAEConfig.load(Data(Self.realConfig.utf8), file: "real config")
        let ckpt = work + "/ckpt"
        try makeCheckpoint(config, at: ckpt)
        try makeInputs(config)
        let peakGF = peak ?? Self.readPeak(threads: threads)
        var rows: [[String: Any]] = []
        for scheme in schemes.split(separator: ",").map(String.init) {
            guard let s = PackScheme(rawValue: scheme) else { throw ValidationError("unknown scheme \(scheme)") }
            let pack = try makePack(ckpt, scheme: s)
            for c in cases.split(separator: ",").map(String.init) {
                var args: [String]
                let tiled = !c.hasSuffix("-whole")
                switch c {
                case "dec1024", "dec1024-whole": args = ["vae-decode", "--latents", work + "/lat128.safetensors", "--out", work + "/out1024.png"]
                case "dec2048": args = ["vae-decode", "--latents", work + "/lat256.safetensors", "--out", work + "/out2048.png"]
                case "enc1024": args = ["vae-encode", "--image", work + "/img1024.png", "--out", work + "/enc1024.safetensors"]
                default: throw ValidationError("unknown case \(c)")
                }
                args += ["--pack", pack, "--threads", String(threads), "--json", "--force"]
                if tiled { args += ["--max-ram", maxRAM] }
                FileHandle.standardError.write("qwen-bench vae: \(scheme) \(c) ...\n".data(using: .utf8)!)
                let r = try Self.runChild(qwenRun, args)
                var row: [String: Any] = ["scheme": scheme, "case": c, "max_ram": tiled ? maxRAM : "none", "threads": threads,
                                          "wall_seconds": r.wall, "cpu_seconds": r.cpu]
                for key in ["seconds", "gflop", "gflop_per_second", "peak_rss_bytes", "tiles", "estimated_peak_bytes"] {
                    row[key] = r.json[key]
                }
                if let g = r.json["gflop"] as? Double, r.cpu > 0 {
                    row["gflop_per_cpu_second"] = g / r.cpu
                    if peakGF > 0 { row["fraction_of_f32_peak_per_cpu"] = g / r.cpu / (peakGF / Double(threads)) }
                }
                rows.append(row)
                FileHandle.standardError.write("  \(Self.line(row))\n".data(using: .utf8)!)
            }
        }
        let result: [String: Any] = [
            "date": ISO8601DateFormatter().string(from: Date()), "isa": String(cString: qk_isa_name()),
            "cpus": ProcessInfo.processInfo.activeProcessorCount, "f32_peak_gflops": peakGF,
            "load_average": (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "",
            "pytorch_reference": Self.pytorchNote, "rows": rows,
        ]
        let data = try JSONSerialization.data(withJSONObject: result, options: [.prettyPrinted, .sortedKeys])
        try AtomicOutput.write(data, to: URL(fileURLWithPath: out))
        var md = "| scheme | case | max-ram | wall s | CPU s | GFLOP | GFLOP/CPU-s | peak RSS | tiles |\n|---|---|---|---|---|---|---|---|---|\n"
        for r in rows { md += Self.line(r, markdown: true) + "\n" }
        md += "\nPyTorch: \(Self.pytorchNote)\n"
        try AtomicOutput.write(Data(md.utf8), to: URL(fileURLWithPath: (out as NSString).deletingPathExtension + ".md"))
        print(md)
    }

    static let pytorchNote = "diffusers 0.42.1 / torch 2.15 fp32, 2 threads, this machine (issue 6): decode 1024² untiled ~93 s at 9.4 GiB, "
        + "tiled ~132 s at 2.2 GiB; encode 1024² ~51 s at 6.5 GiB (full 3-D convolutions: 3× the work of the 2-D reduction)"

    static func line(_ r: [String: Any], markdown: Bool = false) -> String {
        func f(_ k: String, _ p: Int = 1) -> String { (r[k] as? Double).map { String(format: "%.\(p)f", $0) } ?? "-" }
        let rss = (r["peak_rss_bytes"] as? Int).map { ByteSize.format($0) } ?? "-"
        let cells = ["\(r["scheme"]!)", "\(r["case"]!)", "\(r["max_ram"]!)", f("wall_seconds"), f("cpu_seconds"), f("gflop", 0),
                     f("gflop_per_cpu_second"), rss, "\(r["tiles"] ?? "-")"]
        return markdown ? "| " + cells.joined(separator: " | ") + " |" : cells.joined(separator: "  ")
    }

    static func readPeak(threads: Int) -> Double {
        guard let d = try? Data(contentsOf: URL(fileURLWithPath: "benchmarks/results/limits.json")),
              let j = try? JSONSerialization.jsonObject(with: d) as? [String: Any], let rs = j["results"] as? [[String: Any]] else { return 0 }
        for r in rs where (r["threads"] as? Int) == threads {
            if let f = r["fmaGFLOPs"] as? [String: Any], let v = f["cpuBest"] as? Double { return v }
        }
        return 0
    }

    static func runChild(_ exe: String, _ args: [String]) throws -> (json: [String: Any], wall: Double, cpu: Double) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        var env = ProcessInfo.processInfo.environment
        env["QWEN_NO_PROGRESS"] = "1"
        p.environment = env
        let pipe = Pipe()
        p.standardOutput = pipe
        var before = rusage(), after = rusage()
        getrusage(RUSAGE_CHILDREN.rawValue, &before)
        let start = Date()
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let wall = Date().timeIntervalSince(start)
        getrusage(RUSAGE_CHILDREN.rawValue, &after)
        func secs(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        let cpu = secs(after.ru_utime) + secs(after.ru_stime) - secs(before.ru_utime) - secs(before.ru_stime)
        guard p.terminationStatus == 0 else { throw ValidationError("qwen-run \(args.joined(separator: " ")) failed (exit \(p.terminationStatus))") }
        let json = (try? JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:]
        return (json, wall, cpu)
    }

    // MARK: - Synthetic inputs

    /// Seeded values in [-1, 1).
    struct Rng {
        var s: UInt64
        mutating func next() -> Float {
            s &+= 0x9E37_79B9_7F4A_7C15
            var z = s
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            return Float(z >> 40) / Float(1 << 23) - 1
        }
    }

    func makeCheckpoint(_ config: VAEConfig, at dir: String) throws {
        let file = dir + "/vae/diffusion_pytorch_model.safetensors"
        if FileManager.default.fileExists(atPath: file) { return }
        try FileManager.default.createDirectory(atPath: dir + "/vae", withIntermediateDirectories: true)
        var w = SafetensorsWriter(metadata: ["producer": "qwen-bench vae (synthetic weights)"])
        var rng = Rng(s: 1234)
        for (name, shape) in config.hubTensorShapes() {
            let n = shape.reduce(1, *)
            var v = [Float](repeating: 0, count: n)
            if name.hasSuffix(".gamma") {
                for i in 0..<n { v[i] = 1 + 0.1 * rng.next() }
            } else if name.hasSuffix(".bias") {
                for i in 0..<n { v[i] = 0.02 * rng.next() }
            } else {
                // Uniform with variance 1 / fan_in: keeps activations O(1) through the residual stack.
                let fanIn = Float(shape.dropFirst().reduce(1, *))
                let a = (3 / fanIn).squareRoot()
                for i in 0..<n { v[i] = a * rng.next() }
            }
            try w.add(name, bf16From: v, shape: shape)
        }
        try w.write(to: URL(fileURLWithPath: file))
        try Data(Self.realConfig.utf8).write(to: URL(fileURLWithPath: dir + "/vae/config.json"))
    }

    func makePack(_ ckpt: String, scheme: PackScheme) throws -> String {
        let out = work + "/\(scheme.rawValue).pack"
        if FileManager.default.fileExists(atPath: out + "/pack.json") { return out }
        var opts = ConvertOptions()
        opts.scheme = scheme
        opts.components = ["vae"]
        opts.progress = false
        let ck = try Checkpoint(path: ckpt, only: ["vae"])
        let plan = try ConversionPlan.make(checkpoint: ck, options: opts)
        _ = try Converter.convert(checkpoint: ck, plan: plan, output: URL(fileURLWithPath: out), options: opts)
        return out
    }

    func makeInputs(_ config: VAEConfig) throws {
        var rng = Rng(s: 99)
        for side in [128, 256] where !FileManager.default.fileExists(atPath: work + "/lat\(side).safetensors") {
            // Latents as the decoder sees them (de-normalized): smooth plus noise.
            var v = [Float](repeating: 0, count: config.zDim * side * side)
            for c in 0..<config.zDim {
                for y in 0..<side { for x in 0..<side {
                    let s = sin(Float(x) * 0.05 + Float(c)) * cos(Float(y) * 0.07)
                    v[(c * side + y) * side + x] = config.latentsMean[c] + config.latentsStd[c] * (s + 0.3 * rng.next())
                } }
            }
            var w = SafetensorsWriter()
            try w.add("latents", f32: v, shape: [1, config.zDim, 1, side, side])
            try w.write(to: URL(fileURLWithPath: work + "/lat\(side).safetensors"))
        }
        if !FileManager.default.fileExists(atPath: work + "/img1024.png") {
            var px = [UInt8](repeating: 0, count: 1024 * 1024 * 3)
            for y in 0..<1024 { for x in 0..<1024 { for c in 0..<3 {
                let s = 127.5 + 100 * sin(Float(x) * 0.02 * Float(c + 1)) * cos(Float(y) * 0.015) + 20 * rng.next()
                px[(y * 1024 + x) * 3 + c] = UInt8(max(0, min(255, s)))
            } } }
            try ImageFile.writePNG(Image8(width: 1024, height: 1024, channels: 3, pixels: px), to: work + "/img1024.png")
        }
    }

    /// /work/shared/real-configs/vae/config.json (Qwen/Qwen-Image vae, as diffusers 0.42.1 writes it).
    static let realConfig = """
    {"_class_name": "AutoencoderKLQwenImage", "_diffusers_version": "0.42.1", "attn_scales": [], "base_dim": 96,
     "dim_mult": [1, 2, 4, 4], "dropout": 0.0, "input_channels": 3,
     "latents_mean": [-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508, 0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921],
     "latents_std": [2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743, 3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.916],
     "num_res_blocks": 2, "temperal_downsample": [false, true, true], "z_dim": 16}
    """
}

import ArgumentParser
import Foundation
import Quant

/// `qwen-bench accuracy`: for every pack scheme, convert a model, run each component through
/// `qwen-run` (child processes) on fixed inputs and compare with the baseline pack (f32 for the tiny
/// model, bf16 for full-size synthetic ones) and, when given, with the PyTorch references.
struct Accuracy: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "accuracy",
        abstract: "Error of every pack scheme against the f32/bf16 pack and the PyTorch references.",
        discussion: """
        Inputs (the oracle's cases, Tests/Fixtures/refs): the three text-to-image prompts as one batch
        (t2i.batch), image A through the vision tower (edit1.image_embeds) and as an Edit prompt
        (edit1.prompt_embeds), vae_enc0.png through the VAE encoder (vae.enc0.posterior_mean) and the
        latents vae.dec0.latents through the decoder (vae.dec0.sample). zstd packs are lossless, so only
        raw cases are run, plus one zstd case to show it gives identical outputs.

        Examples:
          qwen-bench accuracy                                   # tiny model, every scheme, vs f32 + refs
          qwen-bench accuracy --quick
          qwen-bench accuracy --model /work/bench-data/synth --baseline bf16 --no-refs \\
              --cases q8-pc,q4-g32 --name accuracy_synth --work /work/bench-data/acc
        """)

    @Option(name: .long, help: "Model folder (diffusers layout).")
    var model = Paths.fixtures.appendingPathComponent("tiny-random-qwen-image").path

    @Option(name: .long, help: "Reference outputs folder (Tests/Fixtures/refs).")
    var refs = Paths.fixtures.appendingPathComponent("refs").path

    @Flag(name: .long, help: "Do not compare with the PyTorch references (full-size synthetic models).")
    var noRefs = false

    @Option(name: .long, help: "The scheme every other one is compared with.")
    var baseline = "f32"

    @Option(name: .long, help: "Comma-separated cases (default: every raw scheme plus q4-g32-zstd3).")
    var cases: String?

    @Flag(name: .long, help: "A subset: f32, bf16, q8-pc, q4-g32.")
    var quick = false

    @Option(name: .long, help: "Components: text, vision, edit, vae-encode, vae-decode.")
    var components = "text,vision,edit,vae-encode,vae-decode"

    @Option(name: .long, help: "Components to convert (qwen-quant convert --components), default: all.")
    var convertComponents: String?

    @Option(name: .long, help: "Work folder for packs and outputs (deleted case by case).")
    var work = NSTemporaryDirectory() + "qwen-bench-accuracy"

    @Option(name: .long, help: "Results file name under benchmarks/results.")
    var name = "accuracy_tiny"

    @Option(name: .long, help: "Threads for the converter and the runner.")
    var threads = 2

    func run() throws {
        var list: [SchemeCase]
        if let c = cases { list = try c.split(separator: ",").map { try SchemeCase.parse(String($0)) } }
        else if quick { list = try ["f32", "bf16", "q8-pc", "q4-g32"].map(SchemeCase.parse) }
        else { list = SchemeCase.all(zstdLevel: 3).filter { $0.zstd == nil } + [try SchemeCase.parse("q4-g32-zstd3")] }
        let base = try SchemeCase.parse(baseline)
        list.removeAll { $0 == base }
        list.insert(base, at: 0)
        let fm = FileManager.default
        try? fm.removeItem(atPath: work)
        try fm.createDirectory(atPath: work, withIntermediateDirectories: true)
        var probe = try AccuracyProbe(components: components, baseline: base, refs: refs, compareWithRefs: !noRefs,
                                      work: work, threads: threads)
        var records: [[String: Any]] = []
        for sc in list {
            let pack = URL(fileURLWithPath: work).appendingPathComponent("pack-" + sc.name).path
            let conv = try Child.run([try Paths.tool("qwen-quant"), "convert", model, "-o", pack] + sc.convertFlags +
                                     ["--threads", String(threads), "--force"] +
                                     (convertComponents.map { ["--components", $0] } ?? []))
            if conv.status != 0 {
                let why = lastLine(conv.stderr)
                for c in probe.components { records.append(["case": sc.name, "component": c, "status": "convert failed: \(why)"]) }
                note("\(sc.name): convert failed: \(why)")
                continue
            }
            records += try probe.measure(sc, pack: pack)
            try? fm.removeItem(atPath: pack)
            try ResultsFile.write(name, records: records, extra: ["model": model, "baseline": base.name])
        }
        try ResultsFile.write(name, records: records, extra: ["model": model, "baseline": base.name])
    }
}

/// Runs the accuracy components on one converted pack and compares them with the baseline case (which
/// must be measured first) and, when `refs` is given, with the PyTorch references. Shared by
/// `qwen-bench accuracy` and `qwen-bench convert --accuracy`.
struct AccuracyProbe {
    let components: [String]
    let baseline: SchemeCase
    let compareWithRefs: Bool
    let inputs: AccuracyInputs
    let runner: ComponentRunner
    private var baseOut: [String: [Float]] = [:]

    /// `refs`: the oracle folder the inputs are read from (Tests/Fixtures/refs).
    init(components: String, baseline: SchemeCase, refs: String, compareWithRefs: Bool, work: String, threads: Int) throws {
        self.components = components.split(separator: ",").map(String.init)
        self.baseline = baseline
        self.compareWithRefs = compareWithRefs
        inputs = try AccuracyInputs(refs: refs, work: work)
        runner = try ComponentRunner(threads: threads)
    }

    /// One record per component (the results-file format of `accuracy_*`).
    mutating func measure(_ sc: SchemeCase, pack: String) throws -> [[String: Any]] {
        let packBytes = folderBytes(URL(fileURLWithPath: pack))
        var records: [[String: Any]] = []
        for c in components {
            var rec: [String: Any] = ["case": sc.name, "component": c, "scheme": sc.scheme,
                                      "group": sc.group ?? -1, "zstd": sc.zstd ?? 0,
                                      "nominal_bits": sc.nominalBits, "pack_bytes": packBytes]
            let out = try runner.run(component: c, pack: pack, inputs: inputs, tag: sc.name)
            rec["status"] = out.status
            if let r = out.child { rec["seconds"] = r.seconds; rec["peak_rss_bytes"] = r.peakRSS }
            guard let values = out.values else { records.append(rec); note("\(sc.name) \(c): \(out.status)"); continue }
            if sc == baseline { baseOut[c] = values }
            if let b = baseOut[c] { addMetrics(&rec, values, b, component: c, suffix: "vs_\(baseline.name)", dim: out.dim) }
            if compareWithRefs, let ref = out.reference { addMetrics(&rec, values, ref, component: c, suffix: "vs_ref", dim: out.dim) }
            records.append(rec)
            note("\(sc.name) \(c): " + rec.filter { $0.key.contains("_vs_") }.sorted { $0.key < $1.key }
                .map { "\($0.key)=\(fmt($0.value))" }.joined(separator: " "))
        }
        return records
    }

    private func addMetrics(_ rec: inout [String: Any], _ a: [Float], _ ref: [Float], component: String, suffix: String, dim: Int) {
        guard a.count == ref.count else { rec["shape_mismatch_\(suffix)"] = "\(a.count) vs \(ref.count) values"; return }
        rec["rel_l2_\(suffix)"] = Metric.relL2(a, ref)
        if component == "text" || component == "edit" || component == "vision" {
            let (m, w) = Metric.rowCosine(a, ref, dim: dim)
            rec["cos_mean_\(suffix)"] = m
            rec["cos_worst_\(suffix)"] = w
        }
        if component == "vae-decode" { rec["psnr_db_\(suffix)"] = Metric.psnr(a, ref) }
    }
}

func fmt(_ v: Any) -> String {
    if let d = v as? Double { return abs(d) >= 0.01 && abs(d) < 1e5 ? String(format: "%.4g", d) : String(format: "%.3e", d) }
    return "\(v)"
}

func lastLine(_ s: String) -> String {
    s.split(separator: "\n").last(where: { !$0.trimmingCharacters(in: .whitespaces).isEmpty }).map(String.init) ?? ""
}

/// The fixed inputs, read from the oracle's reference files.
struct AccuracyInputs {
    let prompts: [String]
    let promptsFile: String
    let editPrompt: String
    let imageA: String
    let vaeImage: String
    let latentsFile: String
    let refs: [String: [Float]]

    init(refs dir: String, work: String) throws {
        let cases = try readJSON(URL(fileURLWithPath: dir).appendingPathComponent("cases.json"))
        guard let c = cases["cases"] as? [String: Any], let t2i = c["t2i"] as? [String: Any],
              let singles = t2i["singles"] as? [[String: Any]], let edit = c["edit"] as? [String: Any],
              let e1 = edit["edit1"] as? [String: Any], let ep = e1["prompt"] as? String else {
            throw BenchError.bad("\(dir)/cases.json: missing cases.t2i.singles or cases.edit.edit1")
        }
        prompts = singles.compactMap { $0["prompt"] as? String }
        editPrompt = ep
        promptsFile = work + "/prompts.jsonl"
        let lines = try prompts.map { p -> String in
            let array = String(data: try JSONSerialization.data(withJSONObject: [p], options: []), encoding: .utf8)!
            return String(array.dropFirst().dropLast())   // the JSON string of p
        }
        try (lines.joined(separator: "\n") + "\n").write(toFile: promptsFile, atomically: true, encoding: .utf8)
        imageA = dir + "/images/edit_A.png"
        vaeImage = dir + "/images/vae_enc0.png"
        let t2iFile = try STFile(dir + "/t2i.safetensors")
        let editFile = try STFile(dir + "/edit1.safetensors")
        let vaeFile = try STFile(dir + "/vae.safetensors")
        latentsFile = work + "/latents.safetensors"
        try STFile.writeF32([("latents", try vaeFile.shape("vae.dec0.latents"), try vaeFile.floats("vae.dec0.latents"))], to: latentsFile)
        refs = [
            "text": try t2iFile.floats("t2i.batch.prompt_embeds"),
            "vision": try editFile.floats("edit1.image_embeds"),
            "edit": try editFile.floats("edit1.prompt_embeds"),
            "vae-encode": try vaeFile.floats("vae.enc0.posterior_mean"),
            "vae-decode": try vaeFile.floats("vae.dec0.sample"),
        ]
    }
}

/// Runs one component from a pack through qwen-run and reads its output tensor.
struct ComponentRunner {
    let qwenRun: String
    let threads: Int

    init(threads: Int) throws {
        qwenRun = try Paths.tool("qwen-run")
        self.threads = threads
    }

    struct Output {
        var status: String
        var values: [Float]?
        var reference: [Float]?
        var dim = 1
        var child: ChildResult?
    }

    func run(component: String, pack: String, inputs: AccuracyInputs, tag: String) throws -> Output {
        let out = (inputs.promptsFile as NSString).deletingLastPathComponent + "/\(tag)-\(component).safetensors"
        let t = ["--threads", String(threads), "--json"]
        let (argv, tensor): ([String], String)
        switch component {
        case "text": (argv, tensor) = (["encode", "--pack", pack, "--prompts-file", inputs.promptsFile, "--out", out] + t, "prompt_embeds")
        case "edit": (argv, tensor) = (["encode", "--pack", pack, "--prompt", inputs.editPrompt, "--image", inputs.imageA,
                                        "--mode", "edit", "--preresize", "none", "--out", out] + t, "prompt_embeds")
        case "vision": (argv, tensor) = (["vision", "--pack", pack, "--image", inputs.imageA, "--preresize", "none", "--out", out] + t, "image_embeds")
        case "vae-encode": (argv, tensor) = (["vae-encode", "--pack", pack, "--image", inputs.vaeImage, "--out", out] + t, "latents")
        case "vae-decode": (argv, tensor) = (["vae-decode", "--pack", pack, "--latents", inputs.latentsFile, "--out", out] + t, "sample")
        default: throw ValidationError("unknown component '\(component)' (text, vision, edit, vae-encode, vae-decode)")
        }
        let r = try Child.run([qwenRun] + argv)
        defer { unlink(out) }
        var o = Output(status: "ok", child: r)
        if r.status != 0 {
            o.status = Child.failureStatus(r, tool: qwenRun, subcommand: argv[0])
            return o
        }
        let f = try STFile(out)
        o.values = try f.floats(tensor)
        o.dim = try f.shape(tensor).last ?? 1
        o.reference = inputs.refs[component]
        return o
    }
}

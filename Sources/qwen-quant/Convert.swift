import ArgumentParser
import Foundation
import Kernels
import Quant
import QwenImage

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert a diffusers-layout checkpoint (or one component folder) into a pack.",
        discussion: HelpText.reflow("""
        SRC is a diffusers root (model_index.json, text_encoder/, vae/, tokenizer/, processor/, and any
        other VAE folder such as vae_rgba/) or a single component folder. The pack is written into a
        temporary folder beside PACK and renamed into place at the end.

        Policy: vectors (biases, norms) are always f32; matrices under 4096 elements stay f32;
        lm_head.weight is dropped; fewer than 8 bits are not offered for VAE convolutions (q4 becomes q8; q4c,
        q5s and q6s become q8s).
        --rule 'REGEX=SCHEME[:GROUP]' overrides the scheme of matching pack tensors (the regex is
        searched anywhere in the name); rules apply in order and the LAST match wins.

        Presets (--preset NAME: a default scheme and rules; --scheme replaces the default, and --rule
        rules come after the preset's, so they win):
        \(ConversionPreset.all.map { "  \($0.name): \($0.summary)" }.joined(separator: "\n"))

        GGUF (SRC is a .gguf file of a Qwen2.5-VL language model, from llama.cpp; --mmproj adds its vision
        projector): every ggml type is decoded exactly (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1,
        Q4_K, Q5_K, Q6_K). Without --scheme each tensor keeps the pack scheme that holds its type best:
        Q8_0 -> q8:32 and Q4_0 -> q4:32 bit for bit (error 0), Q5_0 -> q5s, Q4_1 and Q4_K -> q6s,
        Q5_1, Q5_K and Q6_K -> q8s, float types as they are; the summary's errors are then against the
        decoded GGUF (the extra error of the import). The tokenizer is written from the GGUF metadata, or
        --tokenizer DIR (the hub's tokenizer/ folder) is checked against it and carried.

        Importance (--importance FILE from `qwen-quant calibrate`): each scale group of the integer
        schemes minimises the error weighted by the calibration activations' mean squares per input column.

        Examples:
          qwen-quant convert Qwen-Image -o qwen-image-q8.pack
          qwen-quant convert Qwen-Image -o te-q4.pack --components text_encoder --scheme q4 --group-size 32
          qwen-quant convert Qwen-Image -o mixed.pack --scheme q4 --rule 'embed_tokens=q8' --rule '^visual\\.=bf16'
          qwen-quant convert Qwen-Image -o small.pack --zstd 3 --threads 8
          qwen-quant convert Qwen-Image -o x.pack --dry-run --json
          qwen-quant convert Qwen-Image -o q4c.pack --scheme q4c --importance importance.safetensors
          qwen-quant convert Qwen-Image -o mix.pack --preset q4-mix --importance importance.safetensors
          qwen-quant convert Qwen2.5-VL-7B-Instruct-Q4_K_M.gguf --mmproj mmproj-Qwen2.5-VL-7B-Instruct-f16.gguf -o te.pack
          qwen-quant convert model-Q8_0.gguf --tokenizer Qwen-Image/tokenizer -o te-q8.pack
        """))

    @Argument(help: "Checkpoint folder (diffusers root or one component), or a Qwen2.5-VL language model .gguf file.")
    var source: String

    @Option(help: "With a .gguf SRC: the vision projector (mmproj) .gguf to import too.")
    var mmproj: String?

    @Option(help: "With a .gguf SRC: a tokenizer folder (the hub's tokenizer/) to check against the GGUF vocabulary and carry.")
    var tokenizer: String?

    @Option(name: [.short, .customLong("output")], help: "Pack folder to write.")
    var output: String?

    @Option(help: "Default scheme: q4c (4.375 bits/weight), q4, q5s (5.375), q6s (6.375), q8s (8.375), q8, bf16, f16 or f32 (default q8, or the preset's).")
    var scheme: String?

    @Option(help: ArgumentHelp("A named recipe: \(ConversionPreset.all.map(\.name).joined(separator: ", ")) (see the discussion above); --rule still overrides it."))
    var preset: String?

    @Option(name: .customLong("group-size"), help: "Quantization group along k for q8/q4: 0 (per output row), 32, 64 or 128 (q4c, q5s, q6s and q8s: always 32).")
    var groupSize: Int = 64

    @Option(help: "Compress shards with zstd at this level (1-19; the embedding table stays raw); default: raw, mmap-able shards.")
    var zstd: Int?

    @Option(name: .customLong("rule"), help: "REGEX=SCHEME[:GROUP]; repeatable; last match wins.")
    var rules: [String] = []

    @Option(help: "Importance file from `qwen-quant calibrate`: scale groups minimise the activation-weighted error.")
    var importance: String?

    @Option(help: "Comma-separated components to convert (e.g. text_encoder,vae); tokenizer and processor come with text_encoder; default: all.")
    var components: String?

    @Option(help: "Worker threads (default: all cores).")
    var threads: Int?

    @Flag(help: "Replace an existing PACK.")
    var force = false

    @Flag(name: .customLong("dry-run"), help: "Print the plan (tensor, shape, scheme, bytes) and write nothing.")
    var dryRun = false

    @Flag(help: "Print a JSON summary on stdout.")
    var json = false

    func validate() throws {
        if output == nil && !dryRun { throw ValidationError("missing -o/--output PACK") }
        if let z = zstd, !(1...22).contains(z) { throw ValidationError("--zstd level must be between 1 and 22, got \(z)") }
        if !isGGUF && (mmproj != nil || tokenizer != nil) {
            throw ValidationError("--mmproj and --tokenizer go with a .gguf SRC (\(source) is not one)")
        }
    }

    /// A .gguf file (by name, or by its magic for a file named otherwise).
    var isGGUF: Bool {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: source, isDirectory: &isDir), !isDir.boolValue else { return false }
        if source.lowercased().hasSuffix(".gguf") { return true }
        guard let h = FileHandle(forReadingAtPath: source) else { return false }
        defer { try? h.close() }
        return (try? h.read(upToCount: 4)) == Data("GGUF".utf8)
    }

    func run() throws {
        qk_return_large_blocks_to_system(256 << 10)
        // A file-size limit (ulimit -f) then fails writes with EFBIG, reported like a full disk.
        signal(SIGXFSZ, SIG_IGN)
        try runReportingErrors {
            var opts = ConvertOptions()
            let recipe = try preset.map(ConversionPreset.named)
            opts.scheme = try scheme.map(PackScheme.parse) ?? recipe?.scheme ?? .q8
            try PackScheme.validateGroup(groupSize)
            opts.group = groupSize
            opts.zstdLevel = zstd
            opts.rules = try ((recipe?.rules ?? []) + rules).map(PolicyRule.init(parsing:))
            if let recipe { opts.preset = recipe.name }
            opts.importance = try importance.map { try ImportanceTable.load(path: $0) }
            opts.threads = try applyThreads(threads)
            opts.force = force
            if let c = components {
                opts.components = Set(c.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
            }
            if let o = output, !dryRun, !force, FileManager.default.fileExists(atPath: o) {
                throw QuantError.output("\(URL(fileURLWithPath: o).standardizedFileURL.path): already exists (use --force to replace it)")
            }
            var staging: URL?
            defer { if let staging { try? FileManager.default.removeItem(at: staging) } }
            let checkpoint: Checkpoint
            let fromGGUF = isGGUF
            if fromGGUF {
                if let c = opts.components, !c.isSubset(of: ["text_encoder", "tokenizer", "processor"]) {
                    throw QuantError.invalidArgument("--components \(components!): a GGUF holds only the text encoder (text_encoder, tokenizer, processor)")
                }
                opts.components = nil
                if scheme == nil && preset == nil { opts.bySourceDType = GGUFImport.matchingSchemes }
                // Beside the output and named like its temporary folder, so an interrupt removes it too.
                let dir = output.map { URL(fileURLWithPath: $0).standardizedFileURL.deletingLastPathComponent() }
                    ?? FileManager.default.temporaryDirectory
                let base = output.map { URL(fileURLWithPath: $0).lastPathComponent } ?? "qwen-quant"
                staging = dir.appendingPathComponent(".\(base).tmp-\(getpid())-gguf-import")
                try? FileManager.default.removeItem(at: staging!)
                let imported = try GGUFImport.checkpoint(model: source, mmproj: mmproj, tokenizer: tokenizer, staging: staging!)
                imported.notes.forEach { note("note: \($0)") }
                checkpoint = imported.checkpoint
            } else {
                checkpoint = try Checkpoint(path: source, only: opts.components)
            }
            let plan = try ConversionPlan.make(checkpoint: checkpoint, options: opts)
            if dryRun { try printPlan(plan); return }
            let interrupt = removeTemporaryOnInterrupt(output: URL(fileURLWithPath: output!))
            defer { interrupt.forEach { $0.cancel() } }
            let schemeText = opts.bySourceDType.isEmpty
                ? "\(opts.scheme.rawValue)\(opts.scheme.isQuantized ? " group \(opts.scheme.fixedGroup ?? opts.group)" : "")"
                : "each ggml type in its matching scheme"
            note("converting \(checkpoint.sourceDescription) -> \(output!) (\(ByteSize.format(plan.totalSourceBytes)) of tensors, "
                 + "\(schemeText)\(zstd.map { ", zstd \($0)" } ?? ""), \(opts.threads) threads)")
            let summary = try Converter.convert(checkpoint: checkpoint, plan: plan, output: URL(fileURLWithPath: output!),
                                                options: opts, toolVersion: "qwen-quant (pack format \(PackFormat.version))")
            if json { try printJSON(summary) }
            printSummary(summary, againstGGUF: fromGGUF)
        }
    }

    func printPlan(_ plan: ConversionPlan) throws {
        struct Row: Encodable {
            let component, shard, name, source, scheme, note: String
            let shape: [Int]; let group, bytes: Int
        }
        var rows: [Row] = []
        for c in plan.components {
            for s in c.shards {
                for t in s.tensors {
                    rows.append(Row(component: c.name, shard: s.name, name: t.output.name, source: t.source,
                                    scheme: t.choice.scheme.rawValue, note: t.choice.note, shape: t.output.shape,
                                    group: t.choice.group, bytes: t.bytes))
                }
            }
        }
        if json {
            struct Plan: Encodable {
                let source: String; let tensors: [Row]; let dropped: [String]; let files: [String: [String]]
                let source_bytes: Int; let pack_payload_bytes: Int
            }
            try printJSON(Plan(source: plan.source, tensors: rows, dropped: plan.components.flatMap(\.dropped),
                               files: Dictionary(uniqueKeysWithValues: plan.fileFolders.map { ($0.name, $0.files) }),
                               source_bytes: plan.totalSourceBytes, pack_payload_bytes: plan.totalPayloadBytes))
            return
        }
        var lines = ["plan for \(plan.source) (nothing written):"]
        for r in rows {
            lines.append("  \(pad(r.component, 13)) \(pad(r.name, 58)) \(pad(shapeText(r.shape), 14)) "
                         + "\(pad(r.scheme + (r.group > 0 ? ":\(r.group)" : ""), 7)) \(lpad(ByteSize.format(r.bytes), 11))"
                         + (r.note.isEmpty || r.note == "vector: f32" ? "" : "  (\(r.note))"))
        }
        for c in plan.components where !c.dropped.isEmpty {
            lines.append("  \(c.name): dropped \(c.dropped.joined(separator: ", "))")
        }
        for f in plan.fileFolders { lines.append("  \(f.name)/: \(f.files.count) files carried verbatim") }
        lines.append("  total: \(rows.count) tensors, \(ByteSize.format(plan.totalSourceBytes)) of source tensors -> "
                     + "\(ByteSize.format(plan.totalPayloadBytes)) of payload (before compression)")
        print(lines.joined(separator: "\n"))
    }

    func printSummary(_ s: ConversionSummary, againstGGUF: Bool = false) {
        var lines = ["wrote \(s.output) in \(String(format: "%.1f", s.seconds)) s "
                     + "(\(ByteSize.format(Int(s.sourceBytesPerSecond)))/s, peak RSS \(ByteSize.format(s.peakRSSBytes)))"]
        for c in s.components {
            lines.append("  \(pad(c.name, 13)) \(lpad(String(c.tensors), 5)) tensors \(lpad(String(c.shards), 4)) shards  "
                         + "\(lpad(ByteSize.format(c.sourceBytes), 11)) -> \(lpad(ByteSize.format(c.packBytes), 11))  "
                         + String(format: "%.2f bits/weight", c.bitsPerWeight))
        }
        lines.append("  total \(ByteSize.format(s.sourceBytes)) -> \(ByteSize.format(s.packBytes)) "
                     + String(format: "(compression ratio %.2f)", s.compressionRatio))
        lines.append(againstGGUF ? "  worst relative RMSE (stored vs the decoded GGUF: the extra error of the import):"
                                 : "  worst relative RMSE (stored vs source):")
        for t in s.tensors.prefix(10) {
            lines.append("    \(pad(rmseText(t.relRMSE), 10)) \(pad(t.scheme + (t.group > 0 ? ":\(t.group)" : ""), 7)) \(t.component)/\(t.name)")
        }
        note(lines.joined(separator: "\n"))
    }
}

/// On SIGINT / SIGTERM, removes the temporary folder this process is writing beside `output`
/// (`.NAME.tmp-PID-*`, see AtomicOutput) and exits 130, so an interrupted conversion leaves nothing.
func removeTemporaryOnInterrupt(output: URL) -> [DispatchSourceSignal] {
    let dir = output.standardizedFileURL.deletingLastPathComponent()
    let prefix = ".\(output.standardizedFileURL.lastPathComponent).tmp-\(getpid())-"
    return [SIGINT, SIGTERM].map { sig in
        signal(sig, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
        source.setEventHandler {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
            for n in names where n.hasPrefix(prefix) { try? FileManager.default.removeItem(at: dir.appendingPathComponent(n)) }
            note("\ninterrupted: removed the partial output")
            exit(130)
        }
        source.resume()
        return source
    }
}

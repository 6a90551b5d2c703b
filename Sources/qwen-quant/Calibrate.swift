import ArgumentParser
import Foundation
import Quant
import QwenImage

struct Calibrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Record the text encoder's activation statistics on prompts, for importance-aware quantization.",
        discussion: HelpText.reflow("""
        Runs the pack's text encoder on the prompts and writes, for every matrix it multiplies, the mean
        square of each input column over all prompt tokens (a safetensors file, one F32 vector per pack
        tensor name). `qwen-quant convert --importance FILE` then chooses each group's scale to minimise
        the error weighted by these values: columns that carry large activations (Qwen's outlier
        channels) are reproduced more closely.

        Calibrate on a bf16 or f32 pack of the model you will quantize (its activations are the ones the
        quantized model should reproduce). Without --prompts the bundled set of 256 varied image prompts
        is used; --limit takes the first N.

        Examples:
          qwen-quant convert Qwen-Image -o bf16.pack --scheme bf16 --components text_encoder
          qwen-quant calibrate bf16.pack -o importance.safetensors
          qwen-quant convert Qwen-Image -o q4c.pack --scheme q4c --importance importance.safetensors
          qwen-quant calibrate bf16.pack --prompts my-prompts.jsonl --limit 64 -o imp.safetensors --json
        """))

    @Argument(help: "Pack folder with text_encoder and tokenizer components.")
    var pack: String

    @Option(name: [.short, .customLong("output")], help: "Importance file to write (.safetensors).")
    var output: String

    @Option(help: "JSON Lines file, one prompt (a JSON string) per line; default: the bundled 256 prompts.")
    var prompts: String?

    @Option(help: "Use only the first N prompts.")
    var limit: Int?

    @Option(help: "Worker threads (default: all cores).")
    var threads: Int?

    @Flag(help: "Replace an existing output file.")
    var force = false

    @Flag(help: "Print a JSON summary on stdout.")
    var json = false

    func validate() throws {
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1, got \(limit)") }
        guard output.hasSuffix(".safetensors") else {
            throw ValidationError("-o/--output must name a .safetensors file, got '\(output)'")
        }
    }

    func run() throws {
        try runReportingErrors {
            _ = try applyThreads(threads)
            let start = Date()
            if !force, FileManager.default.fileExists(atPath: output) {
                throw QuantError.output("\(output): already exists (use --force to replace it)")
            }
            var list: [String]
            if let prompts {
                let url = URL(fileURLWithPath: prompts)
                guard let data = try? Data(contentsOf: url) else {
                    throw QwenImageError.invalidInput("\(prompts): cannot read the prompts file")
                }
                list = try PromptsFile.parse(data, path: prompts)
                guard !list.isEmpty else { throw QwenImageError.invalidInput("\(prompts): no prompts (expected one JSON string per line)") }
            } else {
                list = CalibrationPrompts.all
            }
            if let limit { list = Array(list.prefix(limit)) }

            let p = try Pack(path: pack)
            let encoder = try PromptEncoder(pack: p, packPath: pack)
            encoder.sharesTemplatePrefix = false   // every prompt's own template rows count, as before
            let tokenized = try encoder.tokenize(list)
            let tokens = tokenized.reduce(0) { $0 + $1.ids.count }
            note("calibrating on \(list.count) prompts (\(tokens) tokens) with \(pack)")
            let recorder = ActivationRecorder()
            Weight.recorder = recorder
            defer { Weight.recorder = nil }
            // Batches of 64 prompts (the outputs, which calibration does not need, stay small), each in
            // the encoder's default plan; a progress step per layer of each pass.
            let batches = stride(from: 0, to: tokenized.count, by: 64).map { Array(tokenized[$0 ..< min($0 + 64, tokenized.count)]) }
            let plans = try batches.map { b in
                try TextEncoderPlan.choose(config: encoder.model.config, weights: encoder.model.weightFootprint(),
                                           sequenceLengths: b.map { $0.ids.count }, budget: nil, baselineBytes: ProcessStats.currentRSS())
            }
            let steps = zip(batches, plans).reduce(0) { $0 + $1.1.passes($1.0.map { $0.ids.count }).count }
            let progress = Quant.Progress("calibrate", total: encoder.model.config.numHiddenLayers * steps)
            encoder.model.onLayerDone = { _ in progress.advance() }
            for (b, plan) in zip(batches, plans) {
                _ = try encoder.encode(tokenized: b, groups: [b.count], plan: plan)
            }
            progress.finish()

            let stats = recorder.meanSquares()
            var writer = SafetensorsWriter(metadata: [
                "producer": ImportanceTable.producer, "format": "pt", "statistic": "mean of x^2 per input column",
                "prompts": String(list.count), "tokens": String(tokens),
                "pack": URL(fileURLWithPath: pack).standardizedFileURL.lastPathComponent,
            ])
            for s in stats { try writer.add(s.name, f32: s.values, shape: [s.values.count]) }
            try writer.write(to: URL(fileURLWithPath: output), force: force)
            let seconds = Date().timeIntervalSince(start)
            if json {
                struct Summary: Encodable { let output: String; let prompts, tokens, matrices: Int; let seconds: Double; let peak_rss_bytes: Int }
                try printJSON(Summary(output: output, prompts: list.count, tokens: tokens, matrices: stats.count,
                                      seconds: (seconds * 100).rounded() / 100, peak_rss_bytes: ProcessStats.peakRSS()))
            }
            note("wrote \(output): \(stats.count) matrices, \(list.count) prompts, \(tokens) tokens, \(String(format: "%.1f", seconds)) s, peak RSS \(ByteSize.format(ProcessStats.peakRSS()))")
        }
    }
}

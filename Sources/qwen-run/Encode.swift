import ArgumentParser
import Foundation
import Quant
import QwenImage

/// `qwen-run encode`: prompts → `prompt_embeds` / `prompt_embeds_mask` as diffusers'
/// `QwenImagePipeline.encode_prompt` returns them.
///
/// With `--image`, Edit / Edit-Plus prompts go through the vision tower (`encodeEditPrompts`,
/// `EditPromptEncoder`), which splices the image embeddings into the `LanguageModel.embed` rows.
struct Encode: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "encode",
        abstract: "Encode prompts into Qwen-Image prompt embeddings with the pack's text encoder.",
        discussion: """
        Writes prompt_embeds [B, L, hidden] and prompt_embeds_mask [B, L] (int64), plus negative_prompt_embeds / negative_prompt_embeds_mask with --negative-prompt, named and shaped for QwenImagePipeline(prompt_embeds=..., prompt_embeds_mask=..., ...). The numbers are those of diffusers' QwenImagePipeline.encode_prompt.

        A prompts file is JSON Lines: one JSON string per line. All its prompts go through each layer together, so the weights are streamed once (unless --max-ram forces one prompt at a time).

        Dataset mode (--out-dir DIR): prompt i (0-based, blank lines skipped) goes to chunk floor(i / chunk size), written as DIR/chunk-NNNNNN.safetensors in the --out layout (prompt_embeds padded to the chunk's longest prompt). --shard K/N takes the chunks c with c mod N = K, so a Slurm array (--shard $SLURM_ARRAY_TASK_ID/N), a Kubernetes Indexed Job ($JOB_COMPLETION_INDEX) or GNU parallel can run N workers on one folder. --resume keeps finished chunks (each is written atomically and checked to come from the same prompts, pack and options) and encodes the rest. Each shard ends by writing DIR/index.jsonl (index-K-of-N.jsonl with --shard): one line per prompt, {"id", "file", "row", "length"}.

        Examples:
          qwen-run encode --pack pack/ --prompt "a red fox in the snow" --out embeds.safetensors
          qwen-run encode --pack pack/ --prompt "a cat" --negative-prompt " " --dtype bf16 --out e.safetensors
          qwen-run encode --pack pack/ --prompts-file prompts.jsonl --max-ram 1G --threads 2 --json --out batch.safetensors
          qwen-run encode --pack pack/ --prompts-file captions.jsonl --out-dir embeds/ --chunk-size 64 --resume
          qwen-run encode --pack pack/ --prompts-file captions.jsonl --out-dir embeds/ --shard 3/16 --resume
          qwen-run encode --pack pack/ --prompt "make it night" --image photo.jpg --out edit.safetensors
          qwen-run encode --pack pack-2.1/ --prompt "the cat of <image1> on the sofa of <image2>" --image cat.png --image sofa.jpg --out e.safetensors

        With --image on a Qwen-Image 2.1 pack, the output also holds image_pad_mask [B, L] (bool), for QwenImage21Pipeline.encode_prompt(prompt_embeds=..., prompt_embeds_mask=..., image_pad_mask=...).
        """)

    enum OutputDType: String, ExpressibleByArgument, CaseIterable { case f32, bf16 }
    enum EditMode: String, ExpressibleByArgument, CaseIterable { case edit, editPlus = "edit-plus" }

    @Option(help: "Pack folder (from qwen-quant convert) with text_encoder and tokenizer components.")
    var pack: String

    @Option(help: "The prompt.")
    var prompt: String?

    @Option(name: .customLong("prompts-file"), help: "JSON Lines file, one JSON string (a prompt) per line.")
    var promptsFile: String?

    @Option(name: .customLong("negative-prompt"), help: "Negative prompt (repeated for every prompt of the batch).")
    var negativePrompt: String?

    @Option(help: "Output .safetensors file (written atomically).")
    var out: String?

    @Option(name: .customLong("out-dir"), help: "Dataset mode: a folder of chunk-NNNNNN.safetensors files (one per --chunk-size prompts of --prompts-file) and an index.jsonl.")
    var outDir: String?

    @Option(name: .customLong("chunk-size"), help: "Dataset mode: prompts per chunk file (default 64); all of a chunk's prompts share one pass over the weights.")
    var chunkSize: Int?

    @Option(help: "Dataset mode: encode only shard K of N (0 <= K < N): the chunks c with c mod N = K, so N workers can share one --out-dir.")
    var shard: String?

    @Flag(help: "Dataset mode: keep the chunks already in --out-dir (checked to be this job's) and encode the rest.")
    var resume = false

    @Flag(name: .long, help: "Replace an existing output file.")
    var force = false

    @Option(help: "Output dtype of the embeddings: f32 or bf16 (masks are int64).")
    var dtype: OutputDType = .f32

    @Option(name: .customLong("max-ram"), help: "Memory budget, e.g. 800M or 1.5G: picks the strategy, or refuses up front.")
    var maxRam: String?

    @Option(name: .customLong("max-sequence-length"), help: "Cut the embeddings to this many tokens, 1...1024 (encode_prompt's max_sequence_length).")
    var maxSequenceLength: Int = 1024

    // Image prompts (Edit / Edit-Plus): the vision tower of the pack's text encoder.
    @Option(name: .customLong("image"), help: "Reference image for Edit prompts (repeatable; uses the text encoder's vision tower).")
    var images: [String] = []

    @Option(help: "Edit template: edit or edit-plus (default: edit for one image, edit-plus for several).")
    var mode: EditMode?

    @Option(help: "Pipeline pre-resize of the reference images: auto (Edit: Lanczos to a 1024x1024 area, Edit-Plus: 384x384) or none.")
    var preresize: String?

    @Option(name: .customLong("max-pixels"), help: "Refuse reference images with more pixels than this (default 67108864).")
    var maxPixels: Int?

    @Option(name: .customLong("output-resolution"), help: "Qwen-Image 2.1 packs: --preresize auto resizes each reference image to about this many pixels squared (QwenImage21Pipeline's output_resolution; default 1024).")
    var outputResolution: Int?

    @OptionGroup var common: CommonOptions

    func validate() throws {
        guard (prompt == nil) != (promptsFile == nil) else {
            throw ValidationError("give exactly one of --prompt TEXT or --prompts-file FILE")
        }
        guard (out == nil) != (outDir == nil) else {
            throw ValidationError("give exactly one of --out FILE or --out-dir DIR (dataset mode, with --prompts-file)")
        }
        try validateDatasetOptions()
        guard (1 ... 1024).contains(maxSequenceLength) else {
            throw ValidationError("--max-sequence-length must be between 1 and 1024 (diffusers' limit), got \(maxSequenceLength)")
        }
        if let maxRam, ByteSize.parse(maxRam) == nil {
            throw ValidationError("--max-ram: cannot read '\(maxRam)' as a size (examples: 800M, 1.5G)")
        }
        if let negativePrompt, negativePrompt.isEmpty {
            throw ValidationError("--negative-prompt is empty (diffusers' convention for \"no negative prompt\" is a single space: --negative-prompt \" \")")
        }
        if mode != nil || preresize != nil || maxPixels != nil || outputResolution != nil, images.isEmpty {
            throw ValidationError("--mode, --preresize, --max-pixels and --output-resolution need at least one --image")
        }
        if !images.isEmpty { try validateImageOptions() }
    }

    func run() throws {
        do { try encode() } catch let error as ExitCode { throw error } catch {
            note("error: \(error)")
            throw ExitCode(1)
        }
    }

    private func encode() throws {
        try common.apply()
        let start = WallClock()
        guard let out else { return try encodeDataset(try readPrompts(), outDir: outDir!) }
        try checkOutput(out, force: force, extensions: ["safetensors"], inputs: [pack] + images + (promptsFile.map { [$0] } ?? []))
        let prompts = try readPrompts()
        if !images.isEmpty { return try encodeEditPrompts(prompts, out: out) }

        let pack = try Pack(path: self.pack)
        let encoder = try PromptEncoder(pack: pack, packPath: self.pack)
        let model = encoder.model

        // Tokenize first: the lengths decide the strategy under --max-ram.
        let negatives = negativePrompt.map { [$0] } ?? []
        let tokenized = try encoder.tokenize(prompts + negatives, warn: note)
        let plan = try choosePlan(model, lengths: tokenized.map { $0.ids.count })
        if !common.json { note("plan: \(plan)") }

        let layers = model.config.numHiddenLayers
        let passes = plan.passes(tokenized.map { $0.ids.count }).count
        let progress = Progress("encode", total: layers * passes)
        model.onLayerDone = { _ in progress.advance() }
        let groups = negatives.isEmpty ? [prompts] : [prompts, negatives]
        let results = try encoder.encode(tokenized: tokenized, groups: groups.map(\.count),
                                         maxSequenceLength: maxSequenceLength, plan: plan)
        progress.finish()

        try write(results, prompts: prompts.count, to: URL(fileURLWithPath: out), force: force)

        let seconds = start.elapsed()
        let tokens = tokenized.reduce(0) { $0 + $1.ids.count }
        let t = model.timings
        printSummary([
            ("output", out), ("prompts", prompts.count), ("negative_prompt", negativePrompt != nil),
            ("shape", [results[0].batch, results[0].length, results[0].hidden]),
            ("tokens", tokens), ("seconds", rounded(seconds)),
            ("tokens_per_second", rounded(Double(tokens) / max(seconds, 1e-9))),
            ("peak_rss_bytes", ProcessStats.peakRSS()), ("peak_rss", ByteSize.format(ProcessStats.peakRSS())),
            ("matmul_seconds", rounded(t.matmul)), ("attention_seconds", rounded(t.attention)),
            ("streaming_seconds", rounded(t.streaming)), ("rest_seconds", rounded(max(0, seconds - t.matmul - t.attention - t.streaming))),
        ] + (common.json ? [("plan", plan.description)] : []), json: common.json)
    }

    /// The strategy for these sequence lengths under --max-ram (or none).
    func choosePlan(_ model: LanguageModel, lengths: [Int]) throws -> TextEncoderPlan {
        try TextEncoderPlan.choose(config: model.config, weights: model.weightFootprint(), sequenceLengths: lengths,
                                   budget: maxRam.flatMap(ByteSize.parse).map(usableBudget), baselineBytes: ProcessStats.currentRSS())
    }

    /// Writes `results[0]` as prompt_embeds / prompt_embeds_mask and, with a negative prompt, `results[1]`
    /// repeated for every prompt as negative_*, atomically.
    func write(_ results: [PromptEmbeddings], prompts: Int, metadata: [String: String] = [:], to url: URL, force: Bool) throws {
        var writer = SafetensorsWriter(metadata: ["producer": "qwen-run encode", "format": "pt"].merging(metadata) { _, b in b })
        try add(results[0], prefix: "", to: &writer)
        if results.count > 1 { try add(results[1].repeated(prompts), prefix: "negative_", to: &writer) }
        try writer.write(to: url, force: force)
    }

    func add(_ e: PromptEmbeddings, prefix: String, to writer: inout SafetensorsWriter) throws {
        try writer.add(e, prefix: prefix, bf16: dtype == .bf16)
    }

    private func readPrompts() throws -> [String] {
        if let prompt {
            guard !prompt.isEmpty else { throw QwenImageError.invalidInput("--prompt is empty (use \" \" for an empty prompt, as diffusers does)") }
            guard prompt.utf8.count <= PromptsFile.maxPromptBytes else {
                throw QwenImageError.invalidInput("--prompt is \(prompt.utf8.count) bytes long; at most \(PromptsFile.maxPromptBytes) are accepted")
            }
            return [prompt]
        }
        let path = promptsFile!
        guard let data = try FileBytes.read(path, limit: PromptsFile.maxFileBytes) else {
            throw QwenImageError.io(path: path, message: "cannot read the prompts file: it does not exist")
        }
        return try PromptsFile.parse(data, path: path)
    }

    private func rounded(_ x: Double) -> Double { (x * 1000).rounded() / 1000 }
}

/// Monotonic clock for the summary.
struct WallClock {
    let t0 = Date()
    func elapsed() -> Double { Date().timeIntervalSince(t0) }
}
